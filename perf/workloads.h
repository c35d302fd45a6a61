/*
 * workloads.h - workload definitions shared by every benchmark runtime.
 *
 * Each runtime (bench_seq.c, bench_weft.c, bench_omp.c, bench_tbb.cpp)
 * implements the same workloads with the same task structure and the
 * same leaf kernels, all defined here, so the only thing that differs
 * between two binaries is how tasks are spawned and joined. Every run
 * computes a checksum that must match the expected value below (or, for a
 * size given with --param, the sequential binary's value, checked by
 * run.sh); a mismatch exits with status 2 and a loud message.
 *
 * DESIGN
 * Header-only (static functions) so that it compiles as C11 and as C++17,
 * except the heavy leaf kernels, which kernels.c compiles once for every
 * binary (see "Leaf kernels" below). Every random choice comes from splitmix64
 * of a fixed seed, so each workload is a deterministic tree of tasks.
 *
 * Output: lines starting with '#' are machine information for humans and
 * the driver; every timed repetition prints one "RESULT key=value ..."
 * line that perf/report.py parses.
 *
 * Benchmarks are not tests: nothing here gates CI.
 */
#ifndef WEFT_PERF_WORKLOADS_H
#define WEFT_PERF_WORKLOADS_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* ---- Fixed parameters (printed by bench_print_header) ----------------- */

/* Spin iterations of a flat fan-out task: about 1 us on a 2.6 GHz EPYC. */
#define BENCH_FANOUT_WORK 600
#define BENCH_FANOUT_SEED 0xFA0F0A11ULL
/* Unbalanced tree search: binomial tree (UTS "T3" shape). The root has
 * param children; every other node has UTS_M children with probability
 * UTS_Q (m*q = 0.994, so each root child's subtree has about 170 nodes
 * on average and a long tail), or none. */
#define BENCH_UTS_M 4
#define BENCH_UTS_Q 0.2485
#define BENCH_UTS_WORK 120 /* spin iterations per node, about 0.2 us */
#define BENCH_UTS_DEPTH_CAP 2000
#define BENCH_UTS_SEED 0x5EEDULL
/* Gather-heavy: every inner node fans out to this many children. */
#define BENCH_GATHER_FANOUT 8
#define BENCH_GATHER_SEED 0x6A7E5EEDULL
/* Parallel reduce: leaves sum this many doubles. Every runtime forks the
 * right half of a range and sums the left half itself, so with one
 * thread the array is read in ascending order, as bench_seq reads it:
 * forking the left half instead read it leaf by leaf from the top down,
 * which cost 20 to 25% at one thread on the 2-core VM (the prefetcher
 * starts over at every leaf) and looked like runtime overhead. */
#define BENCH_REDUCE_CHUNK 16384
#define BENCH_REDUCE_SEED 0xD0B1E5ULL
/* Blocked matrix multiply: one task per BLOCK x BLOCK block of C. */
#define BENCH_MATMUL_BLOCK 64
/* matmul: the k dimension is walked in panels of this many rows of B. */
#define BENCH_MATMUL_KPANEL 32
#define BENCH_MATMUL_SEED 0x3A73ULL
#define BENCH_NQUEENS_MAX 16
/* First-failure propagation: a tree of nested gathers, every inner node
 * fans out to this many children; param = depth, so 10^depth leaves. Each
 * leaf runs STEPS steps of SPIN iterations (about 1 us in all), polling
 * its cancellation between steps; the leaf that is the (leaves/2)-th to
 * start fails instead. */
#define BENCH_FAILFAST_FANOUT 10
#define BENCH_FAILFAST_STEPS 8
#define BENCH_FAILFAST_SPIN 75

enum bench_workload_id {
    BENCH_FIB,
    BENCH_NQUEENS,
    BENCH_UTS,
    BENCH_FANOUT,
    BENCH_FANOUT_EMPTY,
    BENCH_GATHER,
    BENCH_REDUCE,
    BENCH_MATMUL,
    /* The combinator set (run.sh combinators; not in quick). */
    BENCH_FAILFAST,
    BENCH_CANCEL,
    BENCH_GATHER_EMPTY,
    BENCH_PFOR_EMPTY,
    BENCH_GATHER_EACH,
    BENCH_NWORKLOADS
};

/* Workload sets, chosen with --list-set. */
#define BENCH_SET_CORE 0
#define BENCH_SET_COMBINATORS 1

struct bench_workload {
    const char *name;
    const char *param_name;
    long quick, full;
    /* Expected checksum and task count at the quick and full sizes. */
    uint64_t sum_quick, sum_full;
    uint64_t tasks_quick, tasks_full;
    const char *what;
    int set;     /* BENCH_SET_CORE or BENCH_SET_COMBINATORS */
    int latency; /* 1: time_ns is a latency, not the run's wall time */
};

/*
 * The expected values were produced by `bench_seq --print-expected`
 * (which recomputes them from the sequential code) and are checked on
 * every run of every binary. Change a size, rerun that, paste the lines.
 */
static const struct bench_workload bench_workloads[BENCH_NWORKLOADS] = {
    {"fib", "n", 30, 35, 0xcb228ULL, 0x8cccc9ULL, 1346268ULL, 14930351ULL,
     "fib(n), one task per call, no cutoff", BENCH_SET_CORE, 0},
    {"nqueens", "n", 11, 12, 0xa78ULL, 0x3778ULL, 166925ULL, 856188ULL,
     "n-queens solutions, one task per placement", BENCH_SET_CORE, 0},
    {"uts", "root_children", 8000, 80000, 0x55df39d446a859bfULL,
     0xd3e4a9f8d50e084aULL, 1146768ULL, 13138684ULL,
     "unbalanced binomial tree, one task per node, ~0.2 us per node",
     BENCH_SET_CORE, 0},
    {"fanout", "tasks", 200000, 1000000, 0x6f1993b6161757fULL,
     0xa0e89161e75be78fULL, 200000ULL, 1000000ULL,
     "flat fan-out of ~1 us tasks, gathered at the end", BENCH_SET_CORE, 0},
    {"fanout_empty", "tasks", 1000000, 1000000, 0x746a4ae6e0ULL,
     0x746a4ae6e0ULL, 1000000ULL, 1000000ULL,
     "flat fan-out of empty tasks, gathered at the end", BENCH_SET_CORE, 0},
    {"gather", "depth", 6, 7, 0x48f40f8b25b93d38ULL, 0x4889967b24c2d58dULL,
     299592ULL, 2396744ULL,
     "nested fan-outs of 8 children, each gathered by its parent",
     BENCH_SET_CORE, 0},
    {"reduce", "doubles", 10000000, 100000000, 0x4c49ce1df3ULL,
     0x2fae6f80160ULL, 1023ULL, 8191ULL,
     "recursive parallel sum of doubles, 16384-element leaves", BENCH_SET_CORE,
     0},
    {"matmul", "n", 512, 2048, 0xc4798cce3f58ULL, 0x30fcba8c3339014ULL, 64ULL,
     1024ULL, "blocked n x n matrix multiply, one task per 64x64 block of C",
     BENCH_SET_CORE, 0},
    {"failfast", "depth", 5, 6, 50000ULL, 500000ULL, 111110ULL, 1111110ULL,
     "first-failure latency: tree of nested gathers, 10^depth leaves, the "
     "(leaves/2)-th leaf to start fails; time = its failure to the root's "
     "end",
     BENCH_SET_COMBINATORS, 1},
    {"cancel", "tasks", 10000, 100000, 10000ULL, 100000ULL, 10000ULL, 100000ULL,
     "cancellation latency: group of polling tasks, cancelled once P "
     "run; time = cancel to join",
     BENCH_SET_COMBINATORS, 1},
    {"gather_empty", "tasks", 1000000, 1000000, 0x746a4ae6e0ULL,
     0x746a4ae6e0ULL, 1000000ULL, 1000000ULL,
     "fan-out of empty tasks joined by one gather combinator",
     BENCH_SET_COMBINATORS, 0},
    {"pfor_empty", "indices", 1000000, 1000000, 0x746a4ae6e0ULL,
     0x746a4ae6e0ULL, 1000000ULL, 1000000ULL,
     "parallel-for with grain 1 over an empty body (out[i] = i)",
     BENCH_SET_COMBINATORS, 0},
    {"gather_each", "indices", 1000000, 1000000, 0x746a4ae6e0ULL,
     0x746a4ae6e0ULL, 1000000ULL, 1000000ULL,
     "bulk gather (weft_gather_each) of an empty body, value = i",
     BENCH_SET_COMBINATORS, 0},
};

struct bench_opts {
    const char *runtime; /* set by the binary: "seq", "weft", ... */
    int workload;
    unsigned int threads;
    int full;
    long param;
    int param_overridden;
    int reps;
    int warmup;
    int print_expected;
};

/* ---- Small helpers ---------------------------------------------------- */

static void bench_die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

static void
bench_die(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "bench: FATAL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static inline uint64_t
bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* CPU time of the whole process (all threads): shows spinning. */
static inline uint64_t
bench_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* splitmix64 finalizer: the only source of randomness in the workloads. */
static inline uint64_t
bench_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A dependent multiply/xor chain: fixed work the compiler cannot fold. */
static inline uint64_t
bench_spin(uint64_t x, int iters)
{
    for (int i = 0; i < iters; i++) {
        x = x * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
        x ^= x >> 29;
    }
    return x;
}

/* ---- Leaf kernels, identical for every runtime ------------------------ */

/*
 * The heavy leaf kernels are compiled once, by the C compiler, in
 * kernels.c (the bench_kernels library), and every runtime's binary calls
 * the same machine code out of line. Inlined into each binary, they came
 * out differently per compiler: g++ compiled reduce's leaf loop with a
 * round trip through a general register on every addition, and oneTBB's
 * reduce read 3.5x slower than plain C at one thread for that reason
 * alone. A call per leaf costs about a nanosecond, the same for every
 * runtime, plain C included.
 */
#ifdef __cplusplus
extern "C" {
#endif
/* uts: the node's digest, about 0.2 us of hashing. */
uint64_t bench_uts_digest(uint64_t state);
/* fanout: task i's work, about 1 us. */
uint64_t bench_fanout_work(long i);
/* One step of a failfast leaf's work (the leaf polls between steps). */
uint64_t bench_failfast_step(uint64_t x);
/* reduce: the sum of x[lo, hi); values k/16 with k < 2^16, so every
 * partial sum is exact and the result does not depend on the order the
 * tasks finish in. */
double bench_reduce_leaf(const double *x, long lo, long hi);
/*
 * matmul: C[block] += A[rows, :] * B[:, cols] for one BENCH_MATMUL_BLOCK
 * square block of C, through a per-thread packed panel of B (kernels.c
 * says why); thread-safe for distinct blocks.
 */
void bench_matmul_block(const double *a, const double *b, double *c, long n,
                        long block);
/* Free every thread's packed panel (bench_data_free()). */
void bench_matmul_free_packs(void);
#ifdef __cplusplus
}
#endif

/* nqueens: a partial board as three bitmasks; row is the next row. */
struct bench_nq {
    uint32_t cols, d1, d2;
    int row, n;
};

static inline uint32_t
bench_nq_free(const struct bench_nq *s)
{
    return ~(s->cols | s->d1 | s->d2) & ((1u << s->n) - 1u);
}

static inline struct bench_nq
bench_nq_place(const struct bench_nq *s, uint32_t bit)
{
    struct bench_nq c;

    c.cols = s->cols | bit;
    c.d1 = (s->d1 | bit) << 1;
    c.d2 = (s->d2 | bit) >> 1;
    c.row = s->row + 1;
    c.n = s->n;
    return c;
}

/* uts: a node is (state, depth); its digest decides its children. */
struct bench_uts {
    uint64_t state;
    int depth;
};

static inline int
bench_uts_children(uint64_t digest, int depth)
{
    if (depth >= BENCH_UTS_DEPTH_CAP) {
        return 0;
    }
    return (double)(digest >> 11) * 0x1p-53 < BENCH_UTS_Q ? BENCH_UTS_M : 0;
}

static inline struct bench_uts
bench_uts_child(uint64_t digest, int depth, int i)
{
    struct bench_uts c;

    c.state = bench_mix(digest ^ (uint64_t)(i + 1) * 0xD1B54A32D192ED03ULL);
    c.depth = depth + 1;
    return c;
}

static inline uint64_t
bench_gather_leaf(long index)
{
    return bench_mix((uint64_t)index ^ BENCH_GATHER_SEED);
}

/* gather node argument: index in its level, depth left; fits in a pointer
 * for every depth up to 9. */
static inline intptr_t
bench_gather_pack(long index, int depth)
{
    return (intptr_t)(((uint64_t)index << 8) | (uint64_t)depth);
}

static inline long
bench_gather_index(intptr_t packed)
{
    return (long)((uint64_t)packed >> 8);
}

static inline int
bench_gather_depth(intptr_t packed)
{
    return (int)((uint64_t)packed & 0xff);
}

/* failfast: leaves of a tree of the given depth, and the start rank of
 * the leaf that fails (0-based: that many leaves started before it). */
static inline long
bench_failfast_leaves(int depth)
{
    long n = 1;

    for (int d = 0; d < depth; d++) {
        n *= BENCH_FAILFAST_FANOUT;
    }
    return n;
}

static inline long
bench_failfast_rank(int depth)
{
    return bench_failfast_leaves(depth) / 2;
}

static inline uint64_t
bench_reduce_checksum(double sum)
{
    return (uint64_t)(sum * 16.0);
}

/* Entries of C are integers below n * 49, so this is exact. */
static inline uint64_t
bench_matmul_checksum(const double *c, long n)
{
    uint64_t s = 0;

    for (long i = 0; i < n * n; i++) {
        s += (uint64_t)c[i] * ((uint64_t)i | 1u);
    }
    return s;
}

/* ---- Shared data (set up outside the timed region) -------------------- */

struct bench_data {
    double *x; /* reduce input */
    long nx;
    double *a, *b, *c; /* matmul */
    long n;
};

/*
 * malloc(bytes) for input data that the caller writes from end to end
 * next: the pages are faulted in with one madvise(MADV_POPULATE_WRITE)
 * where the kernel has it (Linux 5.14), which on the 2-core VM takes 56
 * instead of 228 ms for reduce's 80 MB. Set-up only, outside the timed
 * region: it shortens each process, not what is measured.
 */
static inline void *
bench_alloc_data(size_t bytes)
{
    void *p = malloc(bytes);
#ifdef MADV_POPULATE_WRITE
    long page = sysconf(_SC_PAGESIZE);
    if (p != NULL && page > 0) {
        uintptr_t lo =
            ((uintptr_t)p + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
        uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(page - 1);
        if (hi > lo) {
            (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
        }
    }
#endif
    return p;
}

static inline void
bench_data_setup(const struct bench_opts *o, struct bench_data *d)
{
    memset(d, 0, sizeof(*d));
    if (o->workload == BENCH_REDUCE) {
        d->nx = o->param;
        d->x = (double *)bench_alloc_data((size_t)d->nx * sizeof(double));
        if (d->x == NULL) {
            bench_die("out of memory for %ld doubles", d->nx);
        }
        for (long i = 0; i < d->nx; i++) {
            uint64_t k = bench_mix((uint64_t)i ^ BENCH_REDUCE_SEED) & 0xffff;
            d->x[i] = (double)k * 0.0625;
        }
    } else if (o->workload == BENCH_MATMUL) {
        size_t bytes;

        d->n = o->param;
        if (d->n <= 0 || d->n % BENCH_MATMUL_BLOCK != 0 ||
            d->n % BENCH_MATMUL_KPANEL != 0) {
            bench_die("matmul n must be a multiple of %d", BENCH_MATMUL_BLOCK);
        }
        bytes = (size_t)(d->n * d->n) * sizeof(double);
        d->a = (double *)bench_alloc_data(bytes);
        d->b = (double *)bench_alloc_data(bytes);
        d->c = (double *)bench_alloc_data(bytes);
        if (d->a == NULL || d->b == NULL || d->c == NULL) {
            bench_die("out of memory for three %ldx%ld matrices", d->n, d->n);
        }
        for (long i = 0; i < d->n * d->n; i++) {
            uint64_t h = bench_mix((uint64_t)i ^ BENCH_MATMUL_SEED);
            d->a[i] = (double)(h & 7);
            d->b[i] = (double)((h >> 3) & 7);
        }
    }
}

/* Called before every repetition, outside the timed region. */
static inline void
bench_data_reset(struct bench_data *d)
{
    if (d->c != NULL) {
        memset(d->c, 0, (size_t)(d->n * d->n) * sizeof(double));
    }
}

static inline void
bench_data_free(struct bench_data *d)
{
    bench_matmul_free_packs();
    free(d->x);
    free(d->a);
    free(d->b);
    free(d->c);
}

/* ---- Expected values -------------------------------------------------- */

static inline uint64_t
bench_fib_value(long n)
{
    uint64_t a = 0, b = 1;

    for (long i = 0; i < n; i++) {
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    return a;
}

/*
 * Expected checksum and task count of the chosen workload and size.
 * Returns 1 when known, 0 when only run.sh's cross-check against the
 * sequential binary applies (a size given with --param).
 */
static inline int
bench_expected(const struct bench_opts *o, uint64_t *sum, uint64_t *tasks)
{
    const struct bench_workload *w = &bench_workloads[o->workload];

    if (o->workload == BENCH_FIB) {
        *sum = bench_fib_value(o->param);
        *tasks = o->param < 2 ? 0 : bench_fib_value(o->param + 1) - 1;
        return 1;
    }
    if (o->param_overridden || (o->full ? w->sum_full : w->sum_quick) == 0) {
        return 0;
    }
    *sum = o->full ? w->sum_full : w->sum_quick;
    *tasks = o->full ? w->tasks_full : w->tasks_quick;
    return 1;
}

/* Spawned tasks of the recursive reduce over [lo, hi): one per split. */
static inline uint64_t
bench_reduce_tasks(long lo, long hi)
{
    long mid;

    if (hi - lo <= BENCH_REDUCE_CHUNK) {
        return 0;
    }
    mid = lo + (hi - lo) / 2;
    return 1 + bench_reduce_tasks(lo, mid) + bench_reduce_tasks(mid, hi);
}

/* Task count for sizes the table does not cover, where it is cheap. */
static inline uint64_t
bench_tasks_formula(const struct bench_opts *o)
{
    uint64_t t = 0, level = 1;

    switch (o->workload) {
    case BENCH_FIB:
        return o->param < 2 ? 0 : bench_fib_value(o->param + 1) - 1;
    case BENCH_FANOUT:
    case BENCH_FANOUT_EMPTY:
    case BENCH_CANCEL:
    case BENCH_GATHER_EMPTY:
    case BENCH_PFOR_EMPTY:
    case BENCH_GATHER_EACH:
        return (uint64_t)o->param;
    case BENCH_FAILFAST:
        for (long d = 0; d < o->param; d++) {
            level *= BENCH_FAILFAST_FANOUT;
            t += level;
        }
        return t;
    case BENCH_GATHER:
        for (long d = 0; d < o->param; d++) {
            level *= BENCH_GATHER_FANOUT;
            t += level;
        }
        return t;
    case BENCH_REDUCE:
        return bench_reduce_tasks(0, o->param);
    case BENCH_MATMUL:
        return (uint64_t)((o->param / BENCH_MATMUL_BLOCK) *
                          (o->param / BENCH_MATMUL_BLOCK));
    default:
        return 0;
    }
}

/* ---- Command line, header and result lines ---------------------------- */

static void
bench_usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --workload W [--threads P] [--size quick|full]\n"
            "          [--param N] [--reps K] [--warmup W]\n"
            "       %s --list | --list-set core|combinators\n"
            "workloads:\n",
            prog, prog);
    for (int i = 0; i < BENCH_NWORKLOADS; i++) {
        fprintf(stderr, "  %-13s %s (%s: quick %ld, full %ld)\n",
                bench_workloads[i].name, bench_workloads[i].what,
                bench_workloads[i].param_name, bench_workloads[i].quick,
                bench_workloads[i].full);
    }
    exit(64);
}

static inline void
bench_parse(int argc, char **argv, const char *runtime, struct bench_opts *o)
{
    const char *size = "quick";
    const char *param = NULL;

    memset(o, 0, sizeof(*o));
    o->runtime = runtime;
    o->workload = -1;
    o->threads = 1;
    o->reps = 1;
    o->warmup = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--list") == 0) {
            for (int k = 0; k < BENCH_NWORKLOADS; k++) {
                printf("%s\n", bench_workloads[k].name);
            }
            exit(0);
        } else if (strcmp(a, "--list-set") == 0 && i + 1 < argc) {
            int set = strcmp(argv[i + 1], "combinators") == 0
                          ? BENCH_SET_COMBINATORS
                          : BENCH_SET_CORE;
            for (int k = 0; k < BENCH_NWORKLOADS; k++) {
                if (bench_workloads[k].set == set) {
                    printf("%s\n", bench_workloads[k].name);
                }
            }
            exit(0);
        } else if (strcmp(a, "--print-expected") == 0) {
            o->print_expected = 1;
            continue;
        }
        if (v == NULL) {
            bench_usage(argv[0]);
        }
        i++;
        if (strcmp(a, "--workload") == 0) {
            for (int k = 0; k < BENCH_NWORKLOADS; k++) {
                if (strcmp(v, bench_workloads[k].name) == 0) {
                    o->workload = k;
                }
            }
            if (o->workload < 0) {
                fprintf(stderr, "unknown workload '%s'\n", v);
                bench_usage(argv[0]);
            }
        } else if (strcmp(a, "--threads") == 0) {
            o->threads = (unsigned int)strtoul(v, NULL, 10);
        } else if (strcmp(a, "--size") == 0) {
            size = v;
        } else if (strcmp(a, "--param") == 0) {
            param = v;
        } else if (strcmp(a, "--reps") == 0) {
            o->reps = atoi(v);
        } else if (strcmp(a, "--warmup") == 0) {
            o->warmup = atoi(v);
        } else {
            bench_usage(argv[0]);
        }
    }
    if (o->print_expected) {
        return;
    }
    if (o->workload < 0 || o->threads < 1 || o->reps < 1 || o->warmup < 0) {
        bench_usage(argv[0]);
    }
    if (strcmp(size, "quick") == 0) {
        o->full = 0;
    } else if (strcmp(size, "full") == 0) {
        o->full = 1;
    } else {
        bench_usage(argv[0]);
    }
    o->param = o->full ? bench_workloads[o->workload].full
                       : bench_workloads[o->workload].quick;
    if (param != NULL) {
        o->param = strtol(param, NULL, 10);
        o->param_overridden = 1;
    }
    if (o->workload == BENCH_NQUEENS &&
        (o->param < 1 || o->param > BENCH_NQUEENS_MAX)) {
        bench_die("nqueens n must be 1..%d", BENCH_NQUEENS_MAX);
    }
    if (o->workload == BENCH_GATHER && (o->param < 1 || o->param > 9)) {
        bench_die("gather depth must be 1..9");
    }
    if (o->workload == BENCH_FAILFAST && (o->param < 1 || o->param > 7)) {
        bench_die("failfast depth must be 1..7");
    }
    if ((o->workload == BENCH_CANCEL || o->workload == BENCH_GATHER_EMPTY ||
         o->workload == BENCH_PFOR_EMPTY ||
         o->workload == BENCH_GATHER_EACH) &&
        o->param < 1) {
        bench_die("%s needs at least 1 task",
                  bench_workloads[o->workload].name);
    }
    if (o->workload == BENCH_CANCEL && o->param < (long)o->threads) {
        bench_die("cancel needs at least as many tasks as threads");
    }
}

static inline void
bench_cpu_model(char *buf, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];

    snprintf(buf, len, "unknown");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            colon++;
            while (*colon == ' ' || *colon == '\t') {
                colon++;
            }
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static inline void
bench_print_header(const struct bench_opts *o, const char *runtime_version)
{
    struct utsname u;
    char cpu[256];

    bench_cpu_model(cpu, sizeof(cpu));
    if (uname(&u) != 0) {
        memset(&u, 0, sizeof(u));
    }
    printf("# machine nproc=%ld cpu=\"%s\" kernel=%s\n",
           sysconf(_SC_NPROCESSORS_ONLN), cpu, u.release);
    printf("# runtime=%s version=\"%s\" compiler=\"%s\"\n", o->runtime,
           runtime_version, __VERSION__);
    printf("# workload=%s %s=%ld size=%s threads=%u reps=%d warmup=%d\n",
           bench_workloads[o->workload].name,
           bench_workloads[o->workload].param_name, o->param,
           o->full ? "full" : "quick", o->threads, o->reps, o->warmup);
    printf("# seeds uts=0x%llx fanout=0x%llx gather=0x%llx reduce=0x%llx "
           "matmul=0x%llx\n",
           (unsigned long long)BENCH_UTS_SEED,
           (unsigned long long)BENCH_FANOUT_SEED,
           (unsigned long long)BENCH_GATHER_SEED,
           (unsigned long long)BENCH_REDUCE_SEED,
           (unsigned long long)BENCH_MATMUL_SEED);
}

/*
 * Check a run's checksum, then print its RESULT line unless it was a
 * warm-up run. extra is appended verbatim (runtime-specific counters).
 */
static inline void
bench_emit(const struct bench_opts *o, int rep, uint64_t time_ns,
           uint64_t cpu_ns, uint64_t checksum, const char *extra)
{
    uint64_t want_sum = 0, tasks = 0;
    int known = bench_expected(o, &want_sum, &tasks);

    if (!known) {
        tasks = bench_tasks_formula(o);
    }
    if (known && checksum != want_sum) {
        fflush(stdout);
        fprintf(stderr,
                "\n*** CHECKSUM MISMATCH *** runtime=%s workload=%s "
                "%s=%ld threads=%u rep=%d: got %llu (0x%llx), expected "
                "%llu (0x%llx)\n\n",
                o->runtime, bench_workloads[o->workload].name,
                bench_workloads[o->workload].param_name, o->param, o->threads,
                rep, (unsigned long long)checksum, (unsigned long long)checksum,
                (unsigned long long)want_sum, (unsigned long long)want_sum);
        exit(2);
    }
    if (rep < 0) {
        return;
    }
    printf("RESULT runtime=%s workload=%s size=%s param=%ld threads=%u "
           "rep=%d time_ns=%llu cpu_ns=%llu tasks=%llu checksum=%llu "
           "verified=%d%s%s\n",
           o->runtime, bench_workloads[o->workload].name,
           o->full ? "full" : "quick", o->param, o->threads, rep,
           (unsigned long long)time_ns, (unsigned long long)cpu_ns,
           (unsigned long long)tasks, (unsigned long long)checksum, known,
           extra != NULL && extra[0] != '\0' ? " " : "",
           extra != NULL ? extra : "");
    fflush(stdout);
}

#endif /* WEFT_PERF_WORKLOADS_H */
