/*
 * bench_tbb.cpp - the workloads on oneTBB task_group.
 *
 * One tbb::task_group per fork point (the oneTBB fib example's shape):
 * run() the children, compute inline what the other runtimes compute
 * inline, wait(). The timed region is one task_arena(P)::execute, so P
 * counts the calling thread, as OpenMP's team and weft's P workers do.
 * The arena is created once per process and reused across repetitions.
 *
 * The combinator set: failfast propagates the leaf's failure as a C++
 * exception through the nested task_groups (each wait() rethrows it, which
 * cancels the enclosing group; nested groups' contexts are bound to their
 * parent task's, so cancelling one cancels its subtree); leaves poll
 * tbb::is_current_task_group_canceling(). cancel uses task_group::cancel().
 * gather_empty and gather_each are the fan-out of empty tasks (TBB has no
 * gather object);
 * pfor_empty is tbb::parallel_for with grain 1 and simple_partitioner.
 */
#include "workloads.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#include <tbb/version.h>

#include <atomic>
#include <exception>
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
    g.run([&b, x, mid, hi] { b = reduce(x, mid, hi); });
    a = reduce(x, lo, mid);
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

/* ---- The combinator set ---------------------------------------------- */

static struct {
    std::atomic<long> started, exited;
    long rank, fail_index;
    std::atomic<uint64_t> t_fail;
    uint64_t t0, t_end;
    unsigned int threads;
} g_lat;

struct leaf_failure : std::exception {
    long index;
    explicit leaf_failure(long i) : index(i)
    {
    }
    const char *what() const noexcept override
    {
        return "leaf failed";
    }
};

static uint64_t
failfast(long index, int depth)
{
    uint64_t sums[BENCH_FAILFAST_FANOUT];
    tbb::task_group g;
    uint64_t sum = 0;

    if (depth == 0) {
        long r = g_lat.started.fetch_add(1);
        uint64_t x = (uint64_t)index;

        if (r == g_lat.rank) {
            leaf_failure e(index);
            g_lat.fail_index = index;
            g_lat.exited.fetch_add(1);
            g_lat.t_fail.store(bench_now_ns());
            throw e;
        }
        for (int i = 0; i < BENCH_FAILFAST_STEPS; i++) {
            if (tbb::is_current_task_group_canceling()) {
                g_lat.exited.fetch_add(1);
                return 0;
            }
            x = bench_failfast_step(x);
        }
        g_lat.exited.fetch_add(1);
        __asm__ volatile("" : : "r"(x));
        return 1;
    }
    for (int c = 0; c < BENCH_FAILFAST_FANOUT; c++) {
        g.run([&sums, c, index, depth] {
            sums[c] = failfast(index * BENCH_FAILFAST_FANOUT + c, depth - 1);
        });
    }
    /* Rethrows a child's exception; returns canceled when an ancestor's
     * group was cancelled (then the sums are not used). */
    g.wait();
    for (int c = 0; c < BENCH_FAILFAST_FANOUT; c++) {
        sum += sums[c];
    }
    return sum;
}

static uint64_t
failfast_root(int depth)
{
    tbb::task_group g;
    long caught = -1;

    g.run([depth] { failfast(0, depth); });
    try {
        g.wait();
    } catch (const leaf_failure &e) {
        caught = e.index;
    }
    g_lat.t_end = bench_now_ns();
    bool ok = caught == g_lat.fail_index &&
              g_lat.started.load() == g_lat.exited.load() &&
              g_lat.started.load() > g_lat.rank;
    if (!ok) {
        fprintf(stderr,
                "failfast: caught leaf %ld (want %ld), leaves started %ld, "
                "exited %ld\n",
                caught, g_lat.fail_index, g_lat.started.load(),
                g_lat.exited.load());
    }
    return ok ? (uint64_t)g_lat.rank : 0;
}

static uint64_t
cancel(long n)
{
    tbb::task_group g;

    for (long i = 0; i < n; i++) {
        g.run([&g] {
            long r = g_lat.started.fetch_add(1) + 1;
            if (r == (long)g_lat.threads) {
                g_lat.t0 = bench_now_ns();
                g.cancel();
            }
            while (!tbb::is_current_task_group_canceling()) {
            }
            g_lat.exited.fetch_add(1);
        });
    }
    tbb::task_group_status st = g.wait();
    g_lat.t_end = bench_now_ns();
    bool ok =
        st == tbb::canceled && g_lat.started.load() == g_lat.exited.load();
    if (!ok) {
        fprintf(stderr, "cancel: status %d, started %ld, exited %ld\n", (int)st,
                g_lat.started.load(), g_lat.exited.load());
    }
    return ok ? (uint64_t)n : 0;
}

static uint64_t
pfor_empty(long n, uint64_t *out)
{
    uint64_t sum = 0;

    tbb::parallel_for(
        tbb::blocked_range<long>(0, n, 1),
        [out](const tbb::blocked_range<long> &r) {
            for (long i = r.begin(); i != r.end(); ++i) {
                out[i] = (uint64_t)i;
            }
        },
        tbb::simple_partitioner());
    for (long i = 0; i < n; i++) {
        sum += out[i];
    }
    return sum;
}

static void
latency_reset(const bench_opts &o)
{
    g_lat.started.store(0);
    g_lat.exited.store(0);
    g_lat.t_fail.store(0);
    g_lat.rank =
        o.workload == BENCH_FAILFAST ? bench_failfast_rank((int)o.param) : 0;
    g_lat.fail_index = -1;
    g_lat.t0 = g_lat.t_end = 0;
    g_lat.threads = o.threads;
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
    case BENCH_FAILFAST:
        return failfast_root((int)o.param);
    case BENCH_CANCEL:
        return cancel(o.param);
    case BENCH_GATHER_EMPTY:
        return fanout(o.param, out, true);
    case BENCH_PFOR_EMPTY:
        return pfor_empty(o.param, out);
    case BENCH_GATHER_EACH:
        return fanout(o.param, out, true);
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
    if (o.workload == BENCH_FANOUT || o.workload == BENCH_FANOUT_EMPTY ||
        o.workload == BENCH_GATHER_EMPTY || o.workload == BENCH_PFOR_EMPTY ||
        o.workload == BENCH_GATHER_EACH) {
        out.resize((size_t)o.param);
    }
    tbb::task_arena arena((int)o.threads);
    for (int rep = -o.warmup; rep < o.reps; rep++) {
        uint64_t t0, c0, t1, c1, sum = 0, time_ns;
        char extra[64] = "";

        bench_data_reset(&d);
        latency_reset(o);
        t0 = bench_now_ns();
        c0 = bench_cpu_ns();
        arena.execute([&] { sum = run_root(o, &d, out.data()); });
        c1 = bench_cpu_ns();
        t1 = bench_now_ns();
        time_ns = t1 - t0;
        if (bench_workloads[o.workload].latency) {
            uint64_t from =
                o.workload == BENCH_FAILFAST ? g_lat.t_fail.load() : g_lat.t0;
            if (from == 0 || g_lat.t_end < from) {
                bench_die("%s: no latency recorded",
                          bench_workloads[o.workload].name);
            }
            time_ns = g_lat.t_end - from;
            snprintf(extra, sizeof(extra), "metric=latency total_ns=%llu",
                     (unsigned long long)(t1 - t0));
        }
        bench_emit(&o, rep < 0 ? -1 : rep, time_ns, c1 - c0, sum, extra);
    }
    bench_data_free(&d);
    return 0;
}
