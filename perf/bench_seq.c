/*
 * bench_seq.c - the sequential baseline: every workload as plain C calls.
 *
 * Each function has the same shape as its task-parallel versions in
 * bench_weft.c, bench_omp.c and bench_tbb.cpp, with every spawn replaced
 * by a direct call and every join by nothing, so Tseq is the cost of the
 * work alone and (T1 - Tseq) / tasks is a runtime's overhead per task.
 *
 * `bench_seq --print-expected` recomputes the expected checksums and task
 * counts of workloads.h at both sizes.
 */
#include "workloads.h"

static uint64_t
fib(long n)
{
    if (n < 2) {
        return (uint64_t)n;
    }
    return fib(n - 1) + fib(n - 2);
}

/* tasks: the number of placements the parallel versions spawn. */
static uint64_t
nqueens(const struct bench_nq *s, uint64_t *tasks)
{
    uint32_t free_cols;
    uint64_t count = 0;

    if (s->row == s->n) {
        return 1;
    }
    free_cols = bench_nq_free(s);
    while (free_cols != 0) {
        uint32_t bit = free_cols & (0u - free_cols);
        struct bench_nq c = bench_nq_place(s, bit);

        free_cols ^= bit;
        if (tasks != NULL) {
            ++*tasks;
        }
        count += nqueens(&c, tasks);
    }
    return count;
}

static uint64_t
uts(struct bench_uts node, int nkids, uint64_t *tasks)
{
    uint64_t digest = bench_uts_digest(node.state);
    uint64_t sum = digest;
    int k = nkids > 0 ? nkids : bench_uts_children(digest, node.depth);

    for (int i = 0; i < k; i++) {
        if (tasks != NULL) {
            ++*tasks;
        }
        sum += uts(bench_uts_child(digest, node.depth, i), 0, tasks);
    }
    return sum;
}

static uint64_t
fanout(long n)
{
    uint64_t sum = 0;

    for (long i = 0; i < n; i++) {
        sum += bench_fanout_work(i);
    }
    return sum;
}

/* The empty task returns its index; keep the loop from being folded into
 * a closed form so the baseline still visits every task. */
static uint64_t
fanout_empty(long n)
{
    uint64_t sum = 0;

    for (long i = 0; i < n; i++) {
        uint64_t v = (uint64_t)i;
        __asm__ volatile("" : "+r"(v));
        sum += v;
    }
    return sum;
}

static uint64_t
gather(long index, int depth)
{
    uint64_t sum = 0;

    if (depth == 0) {
        return bench_gather_leaf(index);
    }
    for (int c = 0; c < BENCH_GATHER_FANOUT; c++) {
        sum += gather(index * BENCH_GATHER_FANOUT + c, depth - 1);
    }
    return sum;
}

static double
reduce(const double *x, long lo, long hi)
{
    long mid;

    if (hi - lo <= BENCH_REDUCE_CHUNK) {
        return bench_reduce_leaf(x, lo, hi);
    }
    mid = lo + (hi - lo) / 2;
    return reduce(x, lo, mid) + reduce(x, mid, hi);
}

static uint64_t
matmul(struct bench_data *d)
{
    long nb = d->n / BENCH_MATMUL_BLOCK;

    for (long b = 0; b < nb * nb; b++) {
        bench_matmul_block(d->a, d->b, d->c, d->n, b);
    }
    return bench_matmul_checksum(d->c, d->n);
}

/*
 * failfast: the same tree, depth first; the leaf that is the rank-th to
 * start fails and every call above it returns at once (the sequential
 * stand-in for cancelling the rest: nothing after it runs). The latency
 * is from the failure to the root's return.
 */
struct failfast_seq {
    long started, rank;
    uint64_t t_fail, sink;
};

static int
failfast(struct failfast_seq *s, int depth)
{
    if (depth == 0) {
        if (s->started++ == s->rank) {
            s->t_fail = bench_now_ns();
            return -1;
        }
        for (int i = 0; i < BENCH_FAILFAST_STEPS; i++) {
            s->sink = bench_failfast_step(s->sink);
        }
        return 0;
    }
    for (int c = 0; c < BENCH_FAILFAST_FANOUT; c++) {
        if (failfast(s, depth - 1) != 0) {
            return -1;
        }
    }
    return 0;
}

static uint64_t
failfast_run(int depth, uint64_t *latency)
{
    struct failfast_seq s = {0, bench_failfast_rank(depth), 0, 0};
    int rc = failfast(&s, depth);
    uint64_t t1 = bench_now_ns();

    __asm__ volatile("" : : "r"(s.sink));
    *latency = t1 - s.t_fail;
    return rc != 0 && s.started == s.rank + 1 ? (uint64_t)s.rank : 0;
}

/* cancel: the first of n queued items "cancels", the others each check
 * the flag and are skipped: the floor of draining n queued tasks. */
static uint64_t
cancel_run(long n, uint64_t *latency)
{
    volatile int cancelled = 0;
    long skipped = 0;
    uint64_t t0 = bench_now_ns();

    cancelled = 1;
    for (long i = 1; i < n; i++) {
        if (cancelled) {
            skipped++;
        }
    }
    *latency = bench_now_ns() - t0;
    return skipped == n - 1 ? (uint64_t)n : 0;
}

static uint64_t
run_once(const struct bench_opts *o, struct bench_data *d, uint64_t *tasks,
         uint64_t *latency)
{
    struct bench_nq q0 = {0, 0, 0, 0, (int)o->param};
    struct bench_uts root = {BENCH_UTS_SEED, 0};

    switch (o->workload) {
    case BENCH_FIB:
        return fib(o->param);
    case BENCH_NQUEENS:
        return nqueens(&q0, tasks);
    case BENCH_UTS:
        return uts(root, (int)o->param, tasks);
    case BENCH_FANOUT:
        return fanout(o->param);
    case BENCH_FANOUT_EMPTY:
    case BENCH_GATHER_EMPTY:
    case BENCH_PFOR_EMPTY:
    case BENCH_GATHER_EACH:
        return fanout_empty(o->param);
    case BENCH_GATHER:
        return gather(0, (int)o->param);
    case BENCH_FAILFAST:
        return failfast_run((int)o->param, latency);
    case BENCH_CANCEL:
        return cancel_run(o->param, latency);
    case BENCH_REDUCE:
        return bench_reduce_checksum(reduce(d->x, 0, d->nx));
    case BENCH_MATMUL:
        return matmul(d);
    default:
        bench_die("unknown workload");
    }
}

/* Recompute the table in workloads.h (slow at the full sizes). */
static void
print_expected(void)
{
    for (int w = 0; w < BENCH_NWORKLOADS; w++) {
        uint64_t sum[2], tasks[2], lat;

        for (int full = 0; full < 2; full++) {
            struct bench_opts o;
            struct bench_data d;

            memset(&o, 0, sizeof(o));
            o.runtime = "seq";
            o.workload = w;
            o.full = full;
            o.param = full ? bench_workloads[w].full : bench_workloads[w].quick;
            bench_data_setup(&o, &d);
            bench_data_reset(&d);
            tasks[full] = 0;
            sum[full] = run_once(&o, &d, &tasks[full], &lat);
            if (w != BENCH_NQUEENS && w != BENCH_UTS) {
                tasks[full] = bench_tasks_formula(&o);
            }
            bench_data_free(&d);
        }
        printf("    {\"%s\", ..., 0x%llxULL, 0x%llxULL, %lluULL, %lluULL},\n",
               bench_workloads[w].name, (unsigned long long)sum[0],
               (unsigned long long)sum[1], (unsigned long long)tasks[0],
               (unsigned long long)tasks[1]);
    }
}

int
main(int argc, char **argv)
{
    struct bench_opts o;
    struct bench_data d;

    bench_parse(argc, argv, "seq", &o);
    if (o.print_expected) {
        print_expected();
        return 0;
    }
    bench_print_header(&o, "plain C");
    bench_data_setup(&o, &d);
    for (int rep = -o.warmup; rep < o.reps; rep++) {
        uint64_t t0, c0, t1, c1, sum, lat = 0;
        char extra[64] = "";

        bench_data_reset(&d);
        t0 = bench_now_ns();
        c0 = bench_cpu_ns();
        sum = run_once(&o, &d, NULL, &lat);
        c1 = bench_cpu_ns();
        t1 = bench_now_ns();
        if (bench_workloads[o.workload].latency) {
            /* time_ns is the latency; the run's wall time goes along. */
            snprintf(extra, sizeof(extra), "metric=latency total_ns=%llu",
                     (unsigned long long)(t1 - t0));
            t1 = t0 + lat;
        }
        bench_emit(&o, rep < 0 ? -1 : rep, t1 - t0, c1 - c0, sum, extra);
    }
    bench_data_free(&d);
    return 0;
}
