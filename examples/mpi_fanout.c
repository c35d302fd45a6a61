/*
 * mpi_fanout.c - one weft executor per MPI rank: distributed fan-out and
 * reduce.
 *
 * Usage: mpiexec -n RANKS example_mpi_fanout [N]   (default N = 4000000)
 *
 * MPI splits [0, N) into one contiguous block per rank; inside its rank,
 * weft splits the block again, recursively, into tasks of at most LEAF
 * items (fan-out with weft_spawn, fan-in with weft_join), and each rank's
 * sum then meets the others' in MPI_Reduce. Two levels, each doing what it
 * is good at: MPI moves data between processes (and machines), weft
 * balances the work among the cores of one process by stealing.
 *
 * Threading: only the main thread of each rank calls MPI, before and after
 * the executor runs, so MPI_THREAD_FUNNELED is all this needs. Tasks must
 * not call MPI themselves unless the MPI library provides
 * MPI_THREAD_MULTIPLE.
 *
 * CPUs: each rank gives its executor the CPUs that the launcher bound the
 * rank to (Open MPI binds each rank to one core by default for up to two
 * ranks, and to a socket beyond that; choose with --bind-to and --map-by).
 * A rank that was not bound (--bind-to none) sees the whole node, which
 * it shares with the other ranks there, so it takes its share of it.
 *
 * Rank 0 checks the reduced sum against a sequential sum and prints an
 * accounting line: over all ranks, every task spawned was joined once and
 * every item was visited once.
 */
#define _GNU_SOURCE /* sched_getaffinity, sysconf */

#include <weft.h>

#include <mpi.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LEAF 16384

/* Workers for this rank: see the file comment. */
static unsigned int
rank_workers(void)
{
    cpu_set_t mask;
    long allowed = 1;
    if (sched_getaffinity(0, sizeof(mask), &mask) == 0) {
        allowed = CPU_COUNT(&mask);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int local = 1;
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0,
                            MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    if (allowed >= online && local > 1) {
        allowed /= local;
    }
    return allowed > 0 ? (unsigned int)allowed : 1;
}

struct span {
    uint64_t lo, hi;
};

static atomic_long spawned;
static atomic_long joined;
static atomic_long visited;

/* The work per item: a hash, so that the sum checks every item. */
static uint64_t
item(uint64_t i)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    return x % 1000003;
}

static weft_status_t
sum_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct span s = *(struct span *)arg;
    if (s.hi - s.lo <= LEAF) {
        uint64_t sum = 0;
        for (uint64_t i = s.lo; i < s.hi; i++) {
            sum += item(i);
        }
        atomic_fetch_add(&visited, (long)(s.hi - s.lo));
        out->u64 = sum;
        return WEFT_OK;
    }
    uint64_t mid = s.lo + (s.hi - s.lo) / 2;
    struct span left = {s.lo, mid};
    struct span right = {mid, s.hi};
    weft_future_t *f;
    weft_status_t st =
        weft_spawn(weft_task_executor(self), sum_task, &left, &f);
    if (st != WEFT_OK) {
        return st;
    }
    atomic_fetch_add(&spawned, 1);
    weft_value_t a, b;
    weft_status_t sb = sum_task(self, &right, &b);
    st = weft_join(f, &a); /* left lives in this frame: always join */
    atomic_fetch_add(&joined, 1);
    if (st != WEFT_OK || sb != WEFT_OK) {
        return st != WEFT_OK ? st : sb;
    }
    out->u64 = a.u64 + b.u64;
    return WEFT_OK;
}

int
main(int argc, char **argv)
{
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) !=
        MPI_SUCCESS) {
        fprintf(stderr, "MPI_Init_thread failed\n");
        return 1;
    }
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4000000;

    /* This rank's block of [0, n). */
    struct span mine = {n * (uint64_t)rank / (uint64_t)size,
                        n * (uint64_t)(rank + 1) / (uint64_t)size};

    weft_executor_t *ex = NULL;
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = rank_workers();
    weft_status_t st = weft_executor_create(&cfg, &ex);
    weft_value_t v = {.u64 = 0};
    if (st == WEFT_OK) {
        st = weft_executor_run(ex, sum_task, &mine, &v);
    }
    weft_status_t sd = ex != NULL ? weft_executor_destroy(ex) : WEFT_OK;
    if (st != WEFT_OK || sd != WEFT_OK) {
        fprintf(stderr, "rank %d: %s / %s\n", rank, weft_status_str(st),
                weft_status_str(sd));
    }

    /* Reduce: the sum, the task counts, the workers and the failures of
     * every rank. */
    unsigned long long local[6] = {
        (unsigned long long)v.u64,
        (unsigned long long)atomic_load(&spawned),
        (unsigned long long)atomic_load(&joined),
        (unsigned long long)atomic_load(&visited),
        (unsigned long long)(st != WEFT_OK || sd != WEFT_OK),
        (unsigned long long)cfg.num_workers};
    unsigned long long total[6] = {0, 0, 0, 0, 0, 0};
    MPI_Reduce(local, total, 6, MPI_UNSIGNED_LONG_LONG, MPI_SUM, 0,
               MPI_COMM_WORLD);

    int ok = 1;
    if (rank == 0) {
        uint64_t expect = 0;
        for (uint64_t i = 0; i < n; i++) {
            expect += item(i);
        }
        printf("%d ranks, %llu workers in all: sum of %llu items = %llu "
               "(sequential %llu)\n",
               size, total[5], (unsigned long long)n, total[0],
               (unsigned long long)expect);
        printf("accounting: %llu spawned, %llu joined, %llu items visited, "
               "%llu ranks failed\n",
               total[1], total[2], total[3], total[4]);
        ok = total[0] == expect && total[1] == total[2] && total[3] == n &&
             total[4] == 0;
        if (!ok) {
            printf("FAILED\n");
        }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return ok ? 0 : 1;
}
