/*
 * bench_omp.c - the workloads as OpenMP tasks (`omp task` / `taskwait`).
 *
 * Built twice: with gcc -fopenmp against libgomp (runtime "gomp") and,
 * when clang and LLVM's libomp are installed, with clang -fopenmp=libomp
 * (runtime "libomp"). The same source, so the two differ only in the
 * runtime and the compiler.
 *
 * Every timed region is one `parallel num_threads(P)` region whose
 * `single` thread runs the root, as OpenMP fork-join programs are
 * written; entering that region (waking the team) is part of the time,
 * as entering weft_executor_run() is for weft. Results are written into
 * variables or arrays shared with the parent task and summed after its
 * taskwait (OpenMP tasks have no return value). No omp.h: only pragmas,
 * so the default wait policy and stack size of each runtime apply.
 *
 * The combinator set: OpenMP's own `cancel taskgroup` needs
 * OMP_CANCELLATION=true at start-up and cancels only the tasks of the
 * innermost taskgroup, not those of taskgroups nested in its tasks, so
 * failfast and cancel use what OpenMP programs do instead: one shared
 * flag, polled by every task when it starts and by the leaves between
 * steps, with failures passed up as return codes after each taskwait.
 * That is a floor for hand-rolled cancellation (one global flag, no
 * scoping). gather_empty is the fan-out of empty tasks; pfor_empty is
 * `taskloop grainsize(1)`.
 */
#include "workloads.h"

#ifndef BENCH_OMP_NAME
#define BENCH_OMP_NAME "gomp"
#endif

static uint64_t
fib(long n)
{
    uint64_t x, y;

    if (n < 2) {
        return (uint64_t)n;
    }
#pragma omp task shared(x) firstprivate(n)
    x = fib(n - 1);
    y = fib(n - 2);
#pragma omp taskwait
    return x + y;
}

static uint64_t
nqueens(const struct bench_nq *s)
{
    struct bench_nq kids[BENCH_NQUEENS_MAX];
    uint64_t counts[BENCH_NQUEENS_MAX];
    uint32_t free_cols;
    int k = 0;
    uint64_t sum = 0;

    if (s->row == s->n) {
        return 1;
    }
    free_cols = bench_nq_free(s);
    while (free_cols != 0) {
        uint32_t bit = free_cols & (0u - free_cols);

        free_cols ^= bit;
        kids[k] = bench_nq_place(s, bit);
#pragma omp task shared(kids, counts) firstprivate(k)
        counts[k] = nqueens(&kids[k]);
        k++;
    }
#pragma omp taskwait
    for (int i = 0; i < k; i++) {
        sum += counts[i];
    }
    return sum;
}

static uint64_t
uts(struct bench_uts node, int nkids)
{
    uint64_t digest = bench_uts_digest(node.state);
    int k = nkids > 0 ? nkids : bench_uts_children(digest, node.depth);
    uint64_t local[BENCH_UTS_M];
    uint64_t *sums = local;
    uint64_t sum = digest;

    if (k > BENCH_UTS_M) {
        sums = (uint64_t *)malloc((size_t)k * sizeof(uint64_t));
        if (sums == NULL) {
            bench_die("out of memory");
        }
    }
    for (int i = 0; i < k; i++) {
#pragma omp task shared(sums) firstprivate(i, digest, node)
        sums[i] = uts(bench_uts_child(digest, node.depth, i), 0);
    }
#pragma omp taskwait
    for (int i = 0; i < k; i++) {
        sum += sums[i];
    }
    if (sums != local) {
        free(sums);
    }
    return sum;
}

static uint64_t
fanout(long n, uint64_t *out, int empty)
{
    uint64_t sum = 0;

    for (long i = 0; i < n; i++) {
        if (empty) {
#pragma omp task firstprivate(i) shared(out)
            out[i] = (uint64_t)i;
        } else {
#pragma omp task firstprivate(i) shared(out)
            out[i] = bench_fanout_work(i);
        }
    }
#pragma omp taskwait
    for (long i = 0; i < n; i++) {
        sum += out[i];
    }
    return sum;
}

static uint64_t
gather(long index, int depth)
{
    uint64_t sums[BENCH_GATHER_FANOUT];
    uint64_t sum = 0;

    if (depth == 0) {
        return bench_gather_leaf(index);
    }
    for (int c = 0; c < BENCH_GATHER_FANOUT; c++) {
#pragma omp task shared(sums) firstprivate(c, index, depth)
        sums[c] = gather(index * BENCH_GATHER_FANOUT + c, depth - 1);
    }
#pragma omp taskwait
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

    if (hi - lo <= BENCH_REDUCE_CHUNK) {
        return bench_reduce_leaf(x, lo, hi);
    }
    mid = lo + (hi - lo) / 2;
#pragma omp task shared(b) firstprivate(x, mid, hi)
    b = reduce(x, mid, hi);
    a = reduce(x, lo, mid);
#pragma omp taskwait
    return a + b;
}

static uint64_t
matmul(struct bench_data *d)
{
    long nb = d->n / BENCH_MATMUL_BLOCK;

    for (long b = 0; b < nb * nb; b++) {
#pragma omp task firstprivate(b) shared(d)
        bench_matmul_block(d->a, d->b, d->c, d->n, b);
    }
#pragma omp taskwait
    return bench_matmul_checksum(d->c, d->n);
}

/* ---- The combinator set ---------------------------------------------- */

static struct {
    long started, exited; /* __atomic builtins */
    long rank, fail_index;
    int flag; /* failed (failfast) or cancelled (cancel) */
    uint64_t t0, t_fail, t_end;
    unsigned int threads;
} g_lat;

static int
stopped(void)
{
    return __atomic_load_n(&g_lat.flag, __ATOMIC_ACQUIRE);
}

/* Returns 0 and the leaf count in *out, or -1 when failed or skipped. */
static int
failfast(long index, int depth, uint64_t *out)
{
    uint64_t sums[BENCH_FAILFAST_FANOUT];
    int rc[BENCH_FAILFAST_FANOUT];
    uint64_t sum = 0;

    if (stopped()) {
        return -1; /* a task that starts after the failure does nothing */
    }
    if (depth == 0) {
        long r = __atomic_fetch_add(&g_lat.started, 1, __ATOMIC_RELAXED);
        uint64_t x = (uint64_t)index;

        if (r == g_lat.rank) {
            g_lat.fail_index = index;
            __atomic_fetch_add(&g_lat.exited, 1, __ATOMIC_RELAXED);
            g_lat.t_fail = bench_now_ns();
            __atomic_store_n(&g_lat.flag, 1, __ATOMIC_RELEASE);
            return -1;
        }
        for (int i = 0; i < BENCH_FAILFAST_STEPS; i++) {
            if (stopped()) {
                __atomic_fetch_add(&g_lat.exited, 1, __ATOMIC_RELAXED);
                return -1;
            }
            x = bench_failfast_step(x);
        }
        __atomic_fetch_add(&g_lat.exited, 1, __ATOMIC_RELAXED);
        __asm__ volatile("" : : "r"(x));
        *out = 1;
        return 0;
    }
    for (int c = 0; c < BENCH_FAILFAST_FANOUT; c++) {
#pragma omp task shared(sums, rc) firstprivate(c, index, depth)
        rc[c] =
            failfast(index * BENCH_FAILFAST_FANOUT + c, depth - 1, &sums[c]);
    }
#pragma omp taskwait
    for (int c = 0; c < BENCH_FAILFAST_FANOUT; c++) {
        if (rc[c] != 0) {
            return -1;
        }
        sum += sums[c];
    }
    *out = sum;
    return 0;
}

static uint64_t
failfast_root(int depth)
{
    uint64_t v = 0;
    int rc = failfast(0, depth, &v);
    long started, exited;

    g_lat.t_end = bench_now_ns();
    started = __atomic_load_n(&g_lat.started, __ATOMIC_RELAXED);
    exited = __atomic_load_n(&g_lat.exited, __ATOMIC_RELAXED);
    if (rc == 0 || started != exited || started <= g_lat.rank ||
        g_lat.fail_index < 0) {
        fprintf(stderr, "failfast: rc %d, leaves started %ld, exited %ld\n", rc,
                started, exited);
        return 0;
    }
    return (uint64_t)g_lat.rank;
}

static uint64_t
cancel(long n)
{
    long started, exited;

    for (long i = 0; i < n; i++) {
#pragma omp task
        {
            long r = __atomic_fetch_add(&g_lat.started, 1, __ATOMIC_RELAXED);
            if (r + 1 == (long)g_lat.threads) {
                g_lat.t0 = bench_now_ns();
                __atomic_store_n(&g_lat.flag, 1, __ATOMIC_RELEASE);
            }
            while (!stopped()) {
            }
            __atomic_fetch_add(&g_lat.exited, 1, __ATOMIC_RELAXED);
        }
    }
#pragma omp taskwait
    g_lat.t_end = bench_now_ns();
    started = __atomic_load_n(&g_lat.started, __ATOMIC_RELAXED);
    exited = __atomic_load_n(&g_lat.exited, __ATOMIC_RELAXED);
    if (started != exited || !stopped()) {
        fprintf(stderr, "cancel: started %ld, exited %ld\n", started, exited);
        return 0;
    }
    return (uint64_t)n;
}

static uint64_t
pfor_empty(long n, uint64_t *out)
{
    uint64_t sum = 0;

#pragma omp taskloop grainsize(1) shared(out)
    for (uint64_t i = 0; i < (uint64_t)n; i++) {
        out[i] = i;
    }
    for (long i = 0; i < n; i++) {
        sum += out[i];
    }
    return sum;
}

static void
latency_reset(const struct bench_opts *o)
{
    g_lat.started = g_lat.exited = 0;
    g_lat.rank =
        o->workload == BENCH_FAILFAST ? bench_failfast_rank((int)o->param) : 0;
    g_lat.fail_index = -1;
    g_lat.flag = 0;
    g_lat.t0 = g_lat.t_fail = g_lat.t_end = 0;
    g_lat.threads = o->threads;
}

static uint64_t
run_root(const struct bench_opts *o, struct bench_data *d, uint64_t *out)
{
    struct bench_nq q0 = {0, 0, 0, 0, (int)o->param};
    struct bench_uts root = {BENCH_UTS_SEED, 0};

    switch (o->workload) {
    case BENCH_FIB:
        return fib(o->param);
    case BENCH_NQUEENS:
        return nqueens(&q0);
    case BENCH_UTS:
        return uts(root, (int)o->param);
    case BENCH_FANOUT:
        return fanout(o->param, out, 0);
    case BENCH_FANOUT_EMPTY:
        return fanout(o->param, out, 1);
    case BENCH_GATHER:
        return gather(0, (int)o->param);
    case BENCH_REDUCE:
        return bench_reduce_checksum(reduce(d->x, 0, d->nx));
    case BENCH_MATMUL:
        return matmul(d);
    case BENCH_FAILFAST:
        return failfast_root((int)o->param);
    case BENCH_CANCEL:
        return cancel(o->param);
    case BENCH_GATHER_EMPTY:
        return fanout(o->param, out, 1);
    case BENCH_PFOR_EMPTY:
        return pfor_empty(o->param, out);
    case BENCH_GATHER_EACH:
        return fanout(o->param, out, 1);
    default:
        bench_die("unknown workload");
    }
}

int
main(int argc, char **argv)
{
    struct bench_opts o;
    struct bench_data d;
    uint64_t *out = NULL;
    char version[64];

    bench_parse(argc, argv, BENCH_OMP_NAME, &o);
    snprintf(version, sizeof(version), "OpenMP %d", _OPENMP);
    bench_print_header(&o, version);
    bench_data_setup(&o, &d);
    if (o.workload == BENCH_FANOUT || o.workload == BENCH_FANOUT_EMPTY ||
        o.workload == BENCH_GATHER_EMPTY || o.workload == BENCH_PFOR_EMPTY ||
        o.workload == BENCH_GATHER_EACH) {
        out = (uint64_t *)calloc((size_t)o.param, sizeof(uint64_t));
        if (out == NULL) {
            bench_die("out of memory");
        }
    }
    for (int rep = -o.warmup; rep < o.reps; rep++) {
        uint64_t t0, c0, t1, c1, sum = 0, time_ns;
        char extra[64] = "";

        bench_data_reset(&d);
        latency_reset(&o);
        t0 = bench_now_ns();
        c0 = bench_cpu_ns();
#pragma omp parallel num_threads(o.threads) shared(sum, o, d, out)
        {
#pragma omp single
            sum = run_root(&o, &d, out);
        }
        c1 = bench_cpu_ns();
        t1 = bench_now_ns();
        time_ns = t1 - t0;
        if (bench_workloads[o.workload].latency) {
            uint64_t from =
                o.workload == BENCH_FAILFAST ? g_lat.t_fail : g_lat.t0;
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
    free(out);
    bench_data_free(&d);
    return 0;
}
