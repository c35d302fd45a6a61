/*
 * bench_weft.c - the workloads on weft: fork, then join.
 *
 * Built twice (perf/CMakeLists.txt): bench_weft runs the fork-join
 * workloads (fib, nqueens, uts, gather, reduce) on frames (weft/frame.h:
 * weft_frame_fork/weft_frame_join, the Lace-style path), bench_weftfut
 * (BENCH_WEFT_FUTURES, runtime "weftfut") runs them on futures
 * (weft_spawn/weft_join), so one run shows what each API costs. The text
 * below says "spawn" for both.
 *
 * Each fork point spawns its children with weft_spawn() and joins them
 * with weft_join(). Where a parent has one child to fork and one to run
 * itself (fib, reduce), it spawns one, calls the other's task function
 * directly with its own self, then joins: the fork-join fast path. fib
 * spawns fib(n-1) and calls fib(n-2); reduce spawns its right half and
 * sums its left half itself, so one worker reads the array in ascending
 * order, as the sequential version does (every runtime's reduce does the
 * same). Where it fans out (nqueens, uts, fanout, gather, matmul) it spawns
 * all children, then joins them newest first: that order finds each child
 * still at the bottom of the joiner's own deque unless a thief took it,
 * so the join pops it and runs it inline (the LIFO-friendly order).
 * The core fan-outs stay spawn-all and join-all by hand (they measure the
 * spawn/join path); the combinator set uses weft_gather, task groups and
 * weft_parallel_for (see the section below).
 *
 * The executor is created once per process with P workers and reused for
 * every repetition; the timed region is one weft_executor_run() from
 * main(), which is not a worker and parks while the P workers run.
 * Per-repetition counters are the difference of weft_executor_stats()
 * snapshots taken around the timed region.
 */
#include "workloads.h"

#include <stdatomic.h>

#include <weft.h>

static void
check(weft_status_t st, const char *what)
{
    if (st != WEFT_OK) {
        bench_die("%s: %s (%s)", what, weft_status_name(st),
                  weft_status_str(st));
    }
}

/* Shared read-only state of the running workload (set before the run). */
static struct bench_data *g_data;
static weft_future_t **g_futs; /* fanout: one slot per task */

/*
 * fib is written as a leaf test that tail-calls the fork (fib_split).
 * Written as one function, the leaf and the fork share the store of the
 * result, and gcc then saves five callee-saved registers and sets up the
 * fork's stack frame before the n < 2 test: 12 instructions on every
 * leaf, half the calls. Split, a leaf is a compare, a store and a return.
 * Same work, same task count; docs/design.md (frames) says why a user's
 * task function gains from the same shape.
 */
static weft_status_t fib_task(weft_task_t *self, void *arg,
                              weft_value_t *result);

#ifdef BENCH_WEFT_FUTURES
static __attribute__((noinline)) weft_status_t
fib_split(weft_task_t *self, long n, weft_value_t *result)
{
    weft_future_t *f;
    weft_value_t x, y;

    check(weft_spawn(weft_task_executor(self), fib_task,
                     (void *)(intptr_t)(n - 1), &f),
          "weft_spawn");
    fib_task(self, (void *)(intptr_t)(n - 2), &y);
    check(weft_join(f, &x), "weft_join");
    result->u64 = x.u64 + y.u64;
    return WEFT_OK;
}
#else
static __attribute__((noinline)) weft_status_t
fib_split(weft_task_t *self, long n, weft_value_t *result)
{
    weft_frame_t fr;
    weft_value_t x, y;

    check(weft_frame_fork(self, &fr, fib_task, (void *)(intptr_t)(n - 1)),
          "weft_frame_fork");
    fib_task(self, (void *)(intptr_t)(n - 2), &y);
    check(weft_frame_join(&fr, &x, NULL), "weft_frame_join");
    result->u64 = x.u64 + y.u64;
    return WEFT_OK;
}
#endif

static weft_status_t
fib_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    long n = (long)(intptr_t)arg;

    if (n < 2) {
        result->u64 = (uint64_t)n;
        return WEFT_OK;
    }
    return fib_split(self, n, result);
}

static weft_status_t
nqueens_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    const struct bench_nq *s = (const struct bench_nq *)arg;
    struct bench_nq kids[BENCH_NQUEENS_MAX];
#ifdef BENCH_WEFT_FUTURES
    weft_future_t *futs[BENCH_NQUEENS_MAX];
    weft_executor_t *ex = weft_task_executor(self);
#else
    weft_frame_t frs[BENCH_NQUEENS_MAX];
#endif
    uint32_t free_cols;
    uint64_t sum = 0;
    int k = 0;

    if (s->row == s->n) {
        result->u64 = 1;
        return WEFT_OK;
    }
    free_cols = bench_nq_free(s);
    while (free_cols != 0) {
        uint32_t bit = free_cols & (0u - free_cols);

        free_cols ^= bit;
        kids[k] = bench_nq_place(s, bit);
#ifdef BENCH_WEFT_FUTURES
        check(weft_spawn(ex, nqueens_task, &kids[k], &futs[k]), "weft_spawn");
#else
        check(weft_frame_fork(self, &frs[k], nqueens_task, &kids[k]),
              "weft_frame_fork");
#endif
        k++;
    }
    while (k-- > 0) {
        weft_value_t v;

#ifdef BENCH_WEFT_FUTURES
        check(weft_join(futs[k], &v), "weft_join");
#else
        check(weft_frame_join(&frs[k], &v, NULL), "weft_frame_join");
#endif
        sum += v.u64;
    }
    result->u64 = sum;
    return WEFT_OK;
}

/* uts: the root carries its child count in a separate argument. */
struct uts_arg {
    struct bench_uts node;
    int nkids; /* 0: decided by the node's digest */
};

static weft_status_t
uts_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    const struct uts_arg *a = (const struct uts_arg *)arg;
    uint64_t digest = bench_uts_digest(a->node.state);
    int k = a->nkids > 0 ? a->nkids : bench_uts_children(digest, a->node.depth);
    struct uts_arg local_args[BENCH_UTS_M];
#ifdef BENCH_WEFT_FUTURES
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t *local_futs[BENCH_UTS_M];
    weft_future_t **futs = local_futs;
#else
    weft_frame_t local_futs[BENCH_UTS_M];
    weft_frame_t *futs = local_futs;
#endif
    struct uts_arg *args = local_args;
    uint64_t sum = digest;

    if (k > BENCH_UTS_M) {
        args = (struct uts_arg *)malloc((size_t)k * sizeof(*args));
        futs = malloc((size_t)k * sizeof(*futs));
        if (args == NULL || futs == NULL) {
            bench_die("out of memory");
        }
    }
    for (int i = 0; i < k; i++) {
        args[i].node = bench_uts_child(digest, a->node.depth, i);
        args[i].nkids = 0;
#ifdef BENCH_WEFT_FUTURES
        check(weft_spawn(ex, uts_task, &args[i], &futs[i]), "weft_spawn");
#else
        check(weft_frame_fork(self, &futs[i], uts_task, &args[i]),
              "weft_frame_fork");
#endif
    }
    for (int i = k - 1; i >= 0; i--) {
        weft_value_t v;

#ifdef BENCH_WEFT_FUTURES
        check(weft_join(futs[i], &v), "weft_join");
#else
        check(weft_frame_join(&futs[i], &v, NULL), "weft_frame_join");
#endif
        sum += v.u64;
    }
    if (args != local_args) {
        free(args);
        free(futs);
    }
    result->u64 = sum;
    return WEFT_OK;
}

static weft_status_t
fanout_work_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    result->u64 = bench_fanout_work((long)(intptr_t)arg);
    return WEFT_OK;
}

static weft_status_t
empty_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    result->u64 = (uint64_t)(uintptr_t)arg;
    return WEFT_OK;
}

struct fanout_arg {
    long n;
    weft_fn_t fn;
};

static weft_status_t
fanout_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    const struct fanout_arg *a = (const struct fanout_arg *)arg;
    weft_executor_t *ex = weft_task_executor(self);
    uint64_t sum = 0;

    for (long i = 0; i < a->n; i++) {
        check(weft_spawn(ex, a->fn, (void *)(intptr_t)i, &g_futs[i]),
              "weft_spawn");
    }
    for (long i = a->n - 1; i >= 0; i--) {
        weft_value_t v;

        check(weft_join(g_futs[i], &v), "weft_join");
        sum += v.u64;
    }
    result->u64 = sum;
    return WEFT_OK;
}

static weft_status_t
gather_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    intptr_t packed = (intptr_t)arg;
    long index = bench_gather_index(packed);
    int depth = bench_gather_depth(packed);
#ifdef BENCH_WEFT_FUTURES
    weft_future_t *futs[BENCH_GATHER_FANOUT];
    weft_executor_t *ex;
#else
    weft_frame_t frs[BENCH_GATHER_FANOUT];
#endif
    uint64_t sum = 0;

    if (depth == 0) {
        result->u64 = bench_gather_leaf(index);
        return WEFT_OK;
    }
#ifdef BENCH_WEFT_FUTURES
    ex = weft_task_executor(self);
#endif
    for (int c = 0; c < BENCH_GATHER_FANOUT; c++) {
        intptr_t child =
            bench_gather_pack(index * BENCH_GATHER_FANOUT + c, depth - 1);
#ifdef BENCH_WEFT_FUTURES
        check(weft_spawn(ex, gather_task, (void *)child, &futs[c]),
              "weft_spawn");
#else
        check(weft_frame_fork(self, &frs[c], gather_task, (void *)child),
              "weft_frame_fork");
#endif
    }
    for (int c = BENCH_GATHER_FANOUT - 1; c >= 0; c--) {
        weft_value_t v;

#ifdef BENCH_WEFT_FUTURES
        check(weft_join(futs[c], &v), "weft_join");
#else
        check(weft_frame_join(&frs[c], &v, NULL), "weft_frame_join");
#endif
        sum += v.u64;
    }
    result->u64 = sum;
    return WEFT_OK;
}

struct range {
    long lo, hi;
};

static weft_status_t
reduce_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    const struct range *r = (const struct range *)arg;
    struct range left, right;
#ifdef BENCH_WEFT_FUTURES
    weft_future_t *f;
#else
    weft_frame_t fr;
#endif
    weft_value_t a, b;

    if (r->hi - r->lo <= BENCH_REDUCE_CHUNK) {
        result->f64 = bench_reduce_leaf(g_data->x, r->lo, r->hi);
        return WEFT_OK;
    }
    left.lo = r->lo;
    left.hi = r->lo + (r->hi - r->lo) / 2;
    right.lo = left.hi;
    right.hi = r->hi;
#ifdef BENCH_WEFT_FUTURES
    check(weft_spawn(weft_task_executor(self), reduce_task, &right, &f),
          "weft_spawn");
    reduce_task(self, &left, &a);
    check(weft_join(f, &b), "weft_join");
#else
    check(weft_frame_fork(self, &fr, reduce_task, &right), "weft_frame_fork");
    reduce_task(self, &left, &a);
    check(weft_frame_join(&fr, &b, NULL), "weft_frame_join");
#endif
    result->f64 = a.f64 + b.f64;
    return WEFT_OK;
}

static weft_status_t
matmul_block_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    bench_matmul_block(g_data->a, g_data->b, g_data->c, g_data->n,
                       (long)(intptr_t)arg);
    return WEFT_OK;
}

static weft_status_t
matmul_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    long nb = g_data->n / BENCH_MATMUL_BLOCK;
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t **futs = g_futs;

    (void)arg;
    for (long b = 0; b < nb * nb; b++) {
        check(weft_spawn(ex, matmul_block_task, (void *)(intptr_t)b, &futs[b]),
              "weft_spawn");
    }
    for (long b = nb * nb - 1; b >= 0; b--) {
        check(weft_join(futs[b], NULL), "weft_join");
    }
    result->u64 = bench_matmul_checksum(g_data->c, g_data->n);
    return WEFT_OK;
}

/* ---- The combinator set ------------------------------------------------
 *
 * failfast: every inner node spawns BENCH_FAILFAST_FANOUT children, makes
 * one weft_gather of them under its own task token (so that its being
 * cancelled cancels the gather and, through it, the subtree) and waits
 * for it; a failure is passed up as is (weft_task_fail_with keeps the
 * leaf's origin). Leaves poll weft_task_is_cancelled() between steps. The
 * leaf that is the rank-th to start fails; t_fail is taken just before it
 * returns, t_end in the root task right after the tree's future has ended
 * (the gather guarantees every child had stopped by then).
 */
static struct {
    atomic_long started; /* leaves whose body began */
    atomic_long exited;  /* leaves whose body returned */
    long rank;
    uint64_t fail_task_id;
    atomic_uint_fast64_t t_fail;
    uint64_t t0, t_end; /* cancel: t0 = the cancel, t_end = join return */
    weft_group_t *group;
    unsigned int threads;
} g_lat;

static weft_status_t
failfast_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    intptr_t packed = (intptr_t)arg;
    int depth = bench_gather_depth(packed);
    long index = bench_gather_index(packed);
    weft_future_t *futs[BENCH_FAILFAST_FANOUT];
    weft_value_t vals[BENCH_FAILFAST_FANOUT];
    weft_executor_t *ex;
    weft_future_t *g;
    weft_status_t st;

    if (depth == 0) {
        long r = atomic_fetch_add(&g_lat.started, 1);
        uint64_t x = (uint64_t)index;

        if (r == g_lat.rank) {
            g_lat.fail_task_id = weft_task_id(self);
            st = weft_task_fail(self, WEFT_EUSER, "leaf %ld failed", index);
            atomic_fetch_add(&g_lat.exited, 1);
            atomic_store(&g_lat.t_fail, bench_now_ns());
            return st;
        }
        for (int i = 0; i < BENCH_FAILFAST_STEPS; i++) {
            if (weft_task_is_cancelled(self)) {
                atomic_fetch_add(&g_lat.exited, 1);
                return WEFT_ECANCELED;
            }
            x = bench_failfast_step(x);
        }
        atomic_fetch_add(&g_lat.exited, 1);
        __asm__ volatile("" : : "r"(x)); /* keep the steps */
        result->u64 = 1;
        return WEFT_OK;
    }
    ex = weft_task_executor(self);
    for (int c = 0; c < BENCH_FAILFAST_FANOUT; c++) {
        intptr_t child =
            bench_gather_pack(index * BENCH_FAILFAST_FANOUT + c, depth - 1);
        check(weft_spawn(ex, failfast_task, (void *)child, &futs[c]),
              "weft_spawn");
    }
    weft_combine_opts_t co = {.token = weft_task_token(self), .adopt = true};
    check(weft_gather(ex, futs, BENCH_FAILFAST_FANOUT, &co, &g), "weft_gather");
    st = weft_future_wait(g);
    if (st == WEFT_OK) {
        check(weft_combine_values(g, vals, BENCH_FAILFAST_FANOUT),
              "weft_combine_values");
        result->u64 = 0;
        for (int c = 0; c < BENCH_FAILFAST_FANOUT; c++) {
            result->u64 += vals[c].u64;
        }
    } else if (st != WEFT_ECANCELED) {
        st = weft_task_fail_with(self, weft_future_error(g));
    }
    weft_future_release(g);
    return st;
}

static weft_status_t
failfast_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    weft_future_t *f;
    weft_status_t st;
    weft_error_t *e;
    int ok;

    check(weft_spawn(weft_task_executor(self), failfast_task, arg, &f),
          "weft_spawn");
    st = weft_future_wait(f);
    g_lat.t_end = bench_now_ns();
    e = weft_future_error(f);
    /* The root failed, with the leaf's own error (origin kept through every
     * level), and no leaf body is still running. */
    ok = st == WEFT_EUSER && e != NULL &&
         weft_error_task_id(e) == g_lat.fail_task_id &&
         atomic_load(&g_lat.started) == atomic_load(&g_lat.exited) &&
         atomic_load(&g_lat.started) > g_lat.rank;
    if (!ok) {
        fprintf(stderr,
                "failfast: root %s, error from task %llu (want %llu), "
                "leaves started %ld, exited %ld\n",
                weft_status_name(st),
                (unsigned long long)(e ? weft_error_task_id(e) : 0),
                (unsigned long long)g_lat.fail_task_id,
                (long)atomic_load(&g_lat.started),
                (long)atomic_load(&g_lat.exited));
    }
    weft_future_release(f);
    result->u64 = ok ? (uint64_t)g_lat.rank : 0;
    return WEFT_OK;
}

/*
 * cancel: a task group of n children that spin, polling
 * weft_task_is_cancelled(), until cancelled. The child that is the P-th to
 * start (so every worker is running one) takes t0 and cancels the group
 * with weft_group_cancel(); the root, which joined the group right after
 * spawning every child (and so runs children itself while it waits),
 * takes t_end when weft_group_join() returns. Children that had not
 * started end cancelled without running.
 */
static weft_status_t
cancel_child(weft_task_t *self, void *arg, weft_value_t *result)
{
    long r = atomic_fetch_add(&g_lat.started, 1) + 1;

    (void)arg;
    (void)result;
    if (r == (long)g_lat.threads) {
        g_lat.t0 = bench_now_ns();
        check(weft_group_cancel(g_lat.group, NULL), "weft_group_cancel");
    }
    while (!weft_task_is_cancelled(self)) {
    }
    atomic_fetch_add(&g_lat.exited, 1);
    return WEFT_ECANCELED;
}

static weft_status_t
cancel_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    long n = (long)(intptr_t)arg;
    weft_group_opts_t go = {.name = "cancel"};
    weft_status_t st;
    long cancelled = 0;

    check(weft_group_create(weft_task_executor(self), &go, &g_lat.group),
          "weft_group_create");
    for (long i = 0; i < n; i++) {
        check(weft_group_spawn(g_lat.group, NULL, cancel_child, NULL, NULL),
              "weft_group_spawn");
    }
    st = weft_group_join(g_lat.group);
    g_lat.t_end = bench_now_ns();
    for (size_t i = 0; i < weft_group_size(g_lat.group); i++) {
        weft_child_result_t c;

        check(weft_group_child(g_lat.group, i, &c), "weft_group_child");
        cancelled += c.outcome == WEFT_OUTCOME_CANCELLED;
    }
    if (st != WEFT_ECANCELED || cancelled != n ||
        atomic_load(&g_lat.started) != atomic_load(&g_lat.exited)) {
        fprintf(stderr,
                "cancel: join %s, %ld of %ld cancelled, started %ld, "
                "exited %ld\n",
                weft_status_name(st), cancelled, n,
                (long)atomic_load(&g_lat.started),
                (long)atomic_load(&g_lat.exited));
        cancelled = 0;
    }
    check(weft_group_destroy(g_lat.group), "weft_group_destroy");
    g_lat.group = NULL;
    result->u64 = (uint64_t)cancelled;
    return WEFT_OK;
}

/* gather_empty: n empty tasks, one weft_gather (adopting every future),
 * wait, read the values from the ledger. */
static weft_value_t *g_vals;

static weft_status_t
gather_empty_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    long n = (long)(intptr_t)arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_combine_opts_t co = {.adopt = true};
    weft_future_t *g;
    uint64_t sum = 0;

    for (long i = 0; i < n; i++) {
        check(weft_spawn(ex, empty_task, (void *)(intptr_t)i, &g_futs[i]),
              "weft_spawn");
    }
    check(weft_gather(ex, g_futs, (size_t)n, &co, &g), "weft_gather");
    check(weft_future_wait(g), "gather");
    check(weft_combine_values(g, g_vals, (size_t)n), "weft_combine_values");
    check(weft_future_release(g), "weft_future_release");
    for (long i = 0; i < n; i++) {
        sum += g_vals[i].u64;
    }
    result->u64 = sum;
    return WEFT_OK;
}

/* gather_each: one weft_gather_each over n indices of an empty body
 * (value = i), wait, read the values from the ledger. */
static weft_status_t
each_body(weft_task_t *self, void *arg, size_t i, weft_value_t *value)
{
    (void)self;
    (void)arg;
    value->u64 = (uint64_t)i;
    return WEFT_OK;
}

static weft_status_t
gather_each_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    long n = (long)(intptr_t)arg;
    weft_future_t *g;
    uint64_t sum = 0;

    check(weft_gather_each(weft_task_executor(self), (size_t)n, each_body,
                           NULL, NULL, &g),
          "weft_gather_each");
    check(weft_future_wait(g), "gather_each");
    check(weft_combine_values(g, g_vals, (size_t)n), "weft_combine_values");
    check(weft_future_release(g), "weft_future_release");
    for (long i = 0; i < n; i++) {
        sum += g_vals[i].u64;
    }
    result->u64 = sum;
    return WEFT_OK;
}

/* pfor_empty: weft_parallel_for with grain 1, so every index is one body
 * call, over a body that writes out[i] = i (as the TBB and OpenMP
 * fan-outs do); the sum is taken afterwards. */
static weft_status_t
pfor_body(weft_task_t *self, void *arg, size_t lo, size_t hi)
{
    uint64_t *out = (uint64_t *)arg;

    (void)self;
    for (size_t i = lo; i < hi; i++) {
        out[i] = (uint64_t)i;
    }
    return WEFT_OK;
}

static weft_status_t
pfor_empty_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    long n = (long)(intptr_t)arg;
    uint64_t *out = (uint64_t *)g_vals;
    weft_for_opts_t fo = {.grain = 1};
    uint64_t sum = 0;

    check(weft_parallel_for(weft_task_executor(self), 0, (size_t)n, &fo,
                            pfor_body, out, NULL),
          "weft_parallel_for");
    for (long i = 0; i < n; i++) {
        sum += out[i];
    }
    result->u64 = sum;
    return WEFT_OK;
}

static void
latency_reset(unsigned int threads, long param)
{
    atomic_store(&g_lat.started, 0);
    atomic_store(&g_lat.exited, 0);
    atomic_store(&g_lat.t_fail, 0);
    g_lat.rank = bench_failfast_rank((int)param);
    g_lat.fail_task_id = 0;
    g_lat.t0 = g_lat.t_end = 0;
    g_lat.threads = threads;
}

static uint64_t
run_root(weft_executor_t *ex, const struct bench_opts *o)
{
    struct bench_nq q0 = {0, 0, 0, 0, (int)o->param};
    struct uts_arg root = {{BENCH_UTS_SEED, 0}, (int)o->param};
    struct fanout_arg fan = {o->param, fanout_work_task};
    struct range all = {0, g_data->nx};
    weft_value_t v;

    v.u64 = 0;
    switch (o->workload) {
    case BENCH_FIB:
        check(weft_executor_run(ex, fib_task, (void *)(intptr_t)o->param, &v),
              "weft_executor_run");
        return v.u64;
    case BENCH_NQUEENS:
        check(weft_executor_run(ex, nqueens_task, &q0, &v), "run");
        return v.u64;
    case BENCH_UTS:
        check(weft_executor_run(ex, uts_task, &root, &v), "run");
        return v.u64;
    case BENCH_FANOUT_EMPTY:
        fan.fn = empty_task;
        /* fall through */
    case BENCH_FANOUT:
        check(weft_executor_run(ex, fanout_root, &fan, &v), "run");
        return v.u64;
    case BENCH_GATHER:
        check(weft_executor_run(ex, gather_task,
                                (void *)bench_gather_pack(0, (int)o->param),
                                &v),
              "run");
        return v.u64;
    case BENCH_REDUCE:
        check(weft_executor_run(ex, reduce_task, &all, &v), "run");
        return bench_reduce_checksum(v.f64);
    case BENCH_MATMUL:
        check(weft_executor_run(ex, matmul_root, NULL, &v), "run");
        return v.u64;
    case BENCH_FAILFAST:
        latency_reset(o->threads, o->param);
        check(weft_executor_run(ex, failfast_root,
                                (void *)bench_gather_pack(0, (int)o->param),
                                &v),
              "run");
        return v.u64;
    case BENCH_CANCEL:
        latency_reset(o->threads, o->param);
        check(
            weft_executor_run(ex, cancel_root, (void *)(intptr_t)o->param, &v),
            "run");
        return v.u64;
    case BENCH_GATHER_EMPTY:
        check(weft_executor_run(ex, gather_empty_root,
                                (void *)(intptr_t)o->param, &v),
              "run");
        return v.u64;
    case BENCH_PFOR_EMPTY:
        check(weft_executor_run(ex, pfor_empty_root, (void *)(intptr_t)o->param,
                                &v),
              "run");
        return v.u64;
    case BENCH_GATHER_EACH:
        check(weft_executor_run(ex, gather_each_root,
                                (void *)(intptr_t)o->param, &v),
              "run");
        return v.u64;
    default:
        bench_die("unknown workload");
    }
}

static void
snapshot(weft_executor_t *ex, weft_worker_stats_t *st, unsigned int n)
{
    for (unsigned int i = 0; i < n; i++) {
        check(weft_executor_stats(ex, i, &st[i]), "weft_executor_stats");
    }
}

/* Render per-repetition counters: totals, then one group per worker,
 * spawned:executed:stolen:steal_failed:injected:parks. */
static void
format_stats(char *buf, size_t len, const weft_worker_stats_t *a,
             const weft_worker_stats_t *b, unsigned int n)
{
    uint64_t t[6] = {0, 0, 0, 0, 0, 0};
    size_t off;

    for (unsigned int i = 0; i < n; i++) {
        t[0] += b[i].spawned - a[i].spawned;
        t[1] += b[i].executed - a[i].executed;
        t[2] += b[i].stolen - a[i].stolen;
        t[3] += b[i].steal_failed - a[i].steal_failed;
        t[4] += b[i].injected - a[i].injected;
        t[5] += b[i].parks - a[i].parks;
    }
    off = (size_t)snprintf(buf, len,
                           "spawned=%llu executed=%llu stolen=%llu "
                           "steal_failed=%llu injected=%llu parks=%llu "
                           "workers=",
                           (unsigned long long)t[0], (unsigned long long)t[1],
                           (unsigned long long)t[2], (unsigned long long)t[3],
                           (unsigned long long)t[4], (unsigned long long)t[5]);
    for (unsigned int i = 0; i < n && off < len; i++) {
        off += (size_t)snprintf(
            buf + off, len - off, "%s%llu:%llu:%llu:%llu:%llu:%llu",
            i == 0 ? "" : ",",
            (unsigned long long)(b[i].spawned - a[i].spawned),
            (unsigned long long)(b[i].executed - a[i].executed),
            (unsigned long long)(b[i].stolen - a[i].stolen),
            (unsigned long long)(b[i].steal_failed - a[i].steal_failed),
            (unsigned long long)(b[i].injected - a[i].injected),
            (unsigned long long)(b[i].parks - a[i].parks));
    }
}

int
main(int argc, char **argv)
{
    struct bench_opts o;
    struct bench_data d;
    weft_executor_config_t cfg;
    weft_executor_t *ex;
    weft_worker_stats_t *before, *after;
    char version[32];
    char *extra;
    size_t extra_len;

#ifdef BENCH_WEFT_FUTURES
    bench_parse(argc, argv, "weftfut", &o);
#else
    bench_parse(argc, argv, "weft", &o);
#endif
    snprintf(version, sizeof(version), "weft %d.%d.%d", WEFT_VERSION_MAJOR,
             WEFT_VERSION_MINOR, WEFT_VERSION_PATCH);
    bench_print_header(&o, version);
    bench_data_setup(&o, &d);
    g_data = &d;
    if (o.workload == BENCH_GATHER_EMPTY || o.workload == BENCH_PFOR_EMPTY ||
        o.workload == BENCH_GATHER_EACH) {
        g_vals = (weft_value_t *)calloc((size_t)o.param, sizeof(*g_vals));
        if (g_vals == NULL) {
            bench_die("out of memory");
        }
    }
    if (o.workload == BENCH_FANOUT || o.workload == BENCH_FANOUT_EMPTY ||
        o.workload == BENCH_MATMUL || o.workload == BENCH_GATHER_EMPTY) {
        long n = o.workload == BENCH_MATMUL ? (o.param / BENCH_MATMUL_BLOCK) *
                                                  (o.param / BENCH_MATMUL_BLOCK)
                                            : o.param;
        g_futs = (weft_future_t **)calloc((size_t)n, sizeof(*g_futs));
        if (g_futs == NULL) {
            bench_die("out of memory");
        }
    }

    weft_executor_config_init(&cfg);
    cfg.num_workers = o.threads;
    cfg.thread_name_prefix = "bench";
    /* BENCH_STEAL_BATCH=1 turns batch steals off, for an A/B in one
     * binary (perf/README.md); unset or 0: the executor's default. */
    if (getenv("BENCH_STEAL_BATCH") != NULL) {
        cfg.steal_batch =
            (unsigned int)strtoul(getenv("BENCH_STEAL_BATCH"), NULL, 10);
    }
    /* BENCH_PIN=1 pins the workers (pin_workers: worker i on the i-th
     * core of our CPU mask), for an A/B of what the OS's placement of
     * the threads costs (perf/README.md). */
    if (getenv("BENCH_PIN") != NULL && strcmp(getenv("BENCH_PIN"), "1") == 0) {
        cfg.pin_workers = true;
    }
    check(weft_executor_create(&cfg, &ex), "weft_executor_create");
    before = (weft_worker_stats_t *)calloc(o.threads, sizeof(*before));
    after = (weft_worker_stats_t *)calloc(o.threads, sizeof(*after));
    extra_len = 224 + (size_t)o.threads * 130;
    extra = (char *)malloc(extra_len);
    if (before == NULL || after == NULL || extra == NULL) {
        bench_die("out of memory");
    }

    for (int rep = -o.warmup; rep < o.reps; rep++) {
        uint64_t t0, c0, t1, c1, sum, time_ns;
        int off = 0;

        bench_data_reset(&d);
        snapshot(ex, before, o.threads);
        t0 = bench_now_ns();
        c0 = bench_cpu_ns();
        sum = run_root(ex, &o);
        c1 = bench_cpu_ns();
        t1 = bench_now_ns();
        snapshot(ex, after, o.threads);
        time_ns = t1 - t0;
        if (bench_workloads[o.workload].latency) {
            /* time_ns is the latency; the run's wall time goes along. */
            uint64_t from = o.workload == BENCH_FAILFAST
                                ? (uint64_t)atomic_load(&g_lat.t_fail)
                                : g_lat.t0;
            if (from == 0 || g_lat.t_end < from) {
                bench_die("%s: no latency recorded",
                          bench_workloads[o.workload].name);
            }
            time_ns = g_lat.t_end - from;
            off = snprintf(extra, extra_len, "metric=latency total_ns=%llu ",
                           (unsigned long long)(t1 - t0));
        }
        format_stats(extra + off, extra_len - (size_t)off, before, after,
                     o.threads);
        bench_emit(&o, rep < 0 ? -1 : rep, time_ns, c1 - c0, sum, extra);
    }

    check(weft_executor_destroy(ex), "weft_executor_destroy");
    free(extra);
    free(before);
    free(after);
    free(g_futs);
    free(g_vals);
    bench_data_free(&d);
    return 0;
}
