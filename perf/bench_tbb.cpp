/*
 * bench_tbb.cpp - the workloads on oneTBB task_group.
 *
 * One tbb::task_group per fork point (the oneTBB fib example's shape):
 * run() the children, compute inline what the other runtimes compute
 * inline, wait(). The timed region is one task_arena(P)::execute, so P
 * counts the calling thread, as OpenMP's team and weft's P workers do.
 * The arena is created once per process and reused across repetitions.
 */
#include "workloads.h"

#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#include <tbb/version.h>

#include <vector>

static uint64_t
fib(long n)
{
    uint64_t x, y;
    tbb::task_group g;

    if (n < 2) {
        return (uint64_t)n;
    }
    g.run([&x, n] { x = fib(n - 1); });
    y = fib(n - 2);
    g.wait();
    return x + y;
}

static uint64_t
nqueens(const bench_nq &s)
{
    bench_nq kids[BENCH_NQUEENS_MAX];
    uint64_t counts[BENCH_NQUEENS_MAX];
    tbb::task_group g;
    uint32_t free_cols;
    int k = 0;
    uint64_t sum = 0;

    if (s.row == s.n) {
        return 1;
    }
    free_cols = bench_nq_free(&s);
    while (free_cols != 0) {
        uint32_t bit = free_cols & (0u - free_cols);

        free_cols ^= bit;
        kids[k] = bench_nq_place(&s, bit);
        g.run([&kids, &counts, k] { counts[k] = nqueens(kids[k]); });
        k++;
    }
    g.wait();
    for (int i = 0; i < k; i++) {
        sum += counts[i];
    }
    return sum;
}

static uint64_t
uts(bench_uts node, int nkids)
{
    uint64_t digest = bench_uts_digest(node.state);
    int k = nkids > 0 ? nkids : bench_uts_children(digest, node.depth);
    uint64_t local[BENCH_UTS_M];
    std::vector<uint64_t> heap;
    uint64_t *sums = local;
    uint64_t sum = digest;
    tbb::task_group g;

    if (k > BENCH_UTS_M) {
        heap.resize((size_t)k);
        sums = heap.data();
    }
    for (int i = 0; i < k; i++) {
        g.run([sums, i, digest, node] {
            sums[i] = uts(bench_uts_child(digest, node.depth, i), 0);
        });
    }
    g.wait();
    for (int i = 0; i < k; i++) {
        sum += sums[i];
    }
    return sum;
}

static uint64_t
fanout(long n, uint64_t *out, bool empty)
{
    tbb::task_group g;
    uint64_t sum = 0;

    for (long i = 0; i < n; i++) {
        if (empty) {
            g.run([out, i] { out[i] = (uint64_t)i; });
        } else {
            g.run([out, i] { out[i] = bench_fanout_work(i); });
        }
    }
    g.wait();
    for (long i = 0; i < n; i++) {
        sum += out[i];
    }
    return sum;
}

static uint64_t
gather(long index, int depth)
{
    uint64_t sums[BENCH_GATHER_FANOUT];
    tbb::task_group g;
    uint64_t sum = 0;

    if (depth == 0) {
        return bench_gather_leaf(index);
    }
    for (int c = 0; c < BENCH_GATHER_FANOUT; c++) {
        g.run([&sums, c, index, depth] {
            sums[c] = gather(index * BENCH_GATHER_FANOUT + c, depth - 1);
        });
    }
    g.wait();
    for (int c = 0; c < BENCH_GATHER_FANOUT; c++) {
        sum += sums[c];
    }
    return sum;
}

static double
reduce(const double *x, long lo, long hi)
{
    double a, b;
    long mid;
    tbb::task_group g;

    if (hi - lo <= BENCH_REDUCE_CHUNK) {
        return bench_reduce_leaf(x, lo, hi);
    }
    mid = lo + (hi - lo) / 2;
    g.run([&a, x, lo, mid] { a = reduce(x, lo, mid); });
    b = reduce(x, mid, hi);
    g.wait();
    return a + b;
}

static uint64_t
matmul(bench_data *d)
{
    long nb = d->n / BENCH_MATMUL_BLOCK;
    tbb::task_group g;

    for (long b = 0; b < nb * nb; b++) {
        g.run([d, b] { bench_matmul_block(d->a, d->b, d->c, d->n, b); });
    }
    g.wait();
    return bench_matmul_checksum(d->c, d->n);
}

static uint64_t
run_root(const bench_opts &o, bench_data *d, uint64_t *out)
{
    bench_nq q0 = {0, 0, 0, 0, (int)o.param};
    bench_uts root = {BENCH_UTS_SEED, 0};

    switch (o.workload) {
    case BENCH_FIB:
        return fib(o.param);
    case BENCH_NQUEENS:
        return nqueens(q0);
    case BENCH_UTS:
        return uts(root, (int)o.param);
    case BENCH_FANOUT:
        return fanout(o.param, out, false);
    case BENCH_FANOUT_EMPTY:
        return fanout(o.param, out, true);
    case BENCH_GATHER:
        return gather(0, (int)o.param);
    case BENCH_REDUCE:
        return bench_reduce_checksum(reduce(d->x, 0, d->nx));
    case BENCH_MATMUL:
        return matmul(d);
    default:
        bench_die("unknown workload");
    }
}

int
main(int argc, char **argv)
{
    bench_opts o;
    bench_data d;
    std::vector<uint64_t> out;
    char version[64];

    bench_parse(argc, argv, "tbb", &o);
    snprintf(version, sizeof(version), "oneTBB %s", TBB_VERSION_STRING);
    bench_print_header(&o, version);
    bench_data_setup(&o, &d);
    if (o.workload == BENCH_FANOUT || o.workload == BENCH_FANOUT_EMPTY) {
        out.resize((size_t)o.param);
    }
    tbb::task_arena arena((int)o.threads);
    for (int rep = -o.warmup; rep < o.reps; rep++) {
        uint64_t t0, c0, t1, c1, sum = 0;

        bench_data_reset(&d);
        t0 = bench_now_ns();
        c0 = bench_cpu_ns();
        arena.execute([&] { sum = run_root(o, &d, out.data()); });
        c1 = bench_cpu_ns();
        t1 = bench_now_ns();
        bench_emit(&o, rep < 0 ? -1 : rep, t1 - t0, c1 - c0, sum, "");
    }
    bench_data_free(&d);
    return 0;
}
