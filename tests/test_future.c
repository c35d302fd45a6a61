/*
 * test_future.c - Criterion suite for weft/future.h: spawning, joining and
 * waiting (inline, helping, nested, out of order, from outside), outcomes
 * (succeeded / failed / cancelled never confused), values, references,
 * detaching, continuations, deadlines, release hooks, names and ids, and
 * bad input.
 *
 * Concurrency checks count events with atomics and compare at the end; no
 * test waits on a timer. Tasks that must stay pending spin on an atomic
 * flag that the test sets once it has checked what it needs; deadlines are
 * only ever in the past or far in the future. Criterion's asserts run on
 * the test's main thread only: bodies record what they saw in atomics.
 */
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/status.h>

#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

TestSuite(future, .timeout = 30.0);

/* ---- helpers --------------------------------------------------------- */

static weft_executor_t *
make_ex(unsigned int n)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = n;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    cr_assert_not_null(ex);
    return ex;
}

static void
spin_until_int(atomic_int *v, int at_least)
{
    while (atomic_load(v) < at_least) {
        sched_yield();
    }
}

static weft_status_t
body_return_arg(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    result->i64 = (int64_t)(intptr_t)arg;
    return WEFT_OK;
}

static weft_status_t
body_noop(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)arg;
    (void)result;
    return WEFT_OK;
}

/* Returns the status given as arg (and a value that must not leak out). */
static weft_status_t
body_return_status(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    result->i64 = 999;
    return (weft_status_t)(intptr_t)arg;
}

/* A task that stays pending until *gate is set. */
struct gate {
    atomic_int open;
    atomic_int started;
    atomic_int finished;
    weft_status_t ret;
    int64_t value;
};

static weft_status_t
body_gated(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    struct gate *g = arg;
    atomic_fetch_add(&g->started, 1);
    while (atomic_load(&g->open) == 0) {
        sched_yield();
    }
    result->i64 = g->value;
    atomic_fetch_add(&g->finished, 1);
    return g->ret;
}

/* ---- fork-join -------------------------------------------------------- */

static int64_t
fib_seq(int n)
{
    return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2);
}

static weft_status_t
body_fib(weft_task_t *self, void *arg, weft_value_t *result)
{
    int n = (int)(intptr_t)arg;
    if (n < 2) {
        result->i64 = n;
        return WEFT_OK;
    }
    weft_future_t *f = NULL;
    weft_status_t st = weft_spawn(weft_task_executor(self), body_fib,
                                  (void *)(intptr_t)(n - 1), &f);
    if (st != WEFT_OK) {
        return st;
    }
    weft_value_t b = {0};
    st = body_fib(self, (void *)(intptr_t)(n - 2), &b);
    weft_value_t a = {0};
    weft_status_t sj = weft_join(f, &a);
    if (st != WEFT_OK) {
        return st;
    }
    if (sj != WEFT_OK) {
        return sj;
    }
    result->i64 = a.i64 + b.i64;
    return WEFT_OK;
}

Test(future, fib_25_one_task_per_call_on_1_2_4_workers)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        weft_executor_t *ex = make_ex(ns[k]);
        weft_value_t v = {.i64 = -1};
        cr_assert_eq(weft_executor_run(ex, body_fib, (void *)(intptr_t)25, &v),
                     WEFT_OK);
        cr_assert_eq(v.i64, 75025, "%u workers: fib(25) = %lld", ns[k],
                     (long long)v.i64);
        cr_assert_eq(v.i64, fib_seq(25));
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

/*
 * Nested waits: level d spawns level d-1 and waits for it (weft_future_wait
 * on even levels, weft_join on odd ones), 40 levels deep. In the "forced
 * steal" variant each level spins until its child has started before it
 * waits, so the child runs on another worker and every wait goes through
 * helping (leapfrogging) instead of the inline pop; that needs at least 2
 * workers.
 */
#define NEST_DEPTH 40

struct nest {
    atomic_int started[NEST_DEPTH + 1];
    atomic_int ran[NEST_DEPTH + 1];
    int force_steal;
};

struct nest_arg {
    struct nest *n;
    int depth;
};

static weft_status_t
body_nest(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct nest_arg *a = arg;
    struct nest *n = a->n;
    atomic_fetch_add(&n->started[a->depth], 1);
    atomic_fetch_add(&n->ran[a->depth], 1);
    if (a->depth == 0) {
        result->i64 = 1;
        return WEFT_OK;
    }
    struct nest_arg child = {.n = n, .depth = a->depth - 1};
    weft_future_t *f = NULL;
    weft_status_t st =
        weft_spawn(weft_task_executor(self), body_nest, &child, &f);
    if (st != WEFT_OK) {
        return st;
    }
    if (n->force_steal) {
        while (atomic_load(&n->started[a->depth - 1]) == 0) {
            sched_yield();
        }
    }
    weft_value_t v = {0};
    if (a->depth % 2 == 0) {
        st = weft_future_wait(f);
        if (st == WEFT_OK) {
            st = weft_future_value(f, &v);
        }
        weft_future_release(f);
    } else {
        st = weft_join(f, &v);
    }
    if (st != WEFT_OK) {
        return st;
    }
    result->i64 = v.i64 + 1;
    return WEFT_OK;
}

static void
run_nest(unsigned int workers, int force_steal)
{
    weft_executor_t *ex = make_ex(workers);
    struct nest *n = calloc(1, sizeof(*n));
    n->force_steal = force_steal;
    struct nest_arg root = {.n = n, .depth = NEST_DEPTH};
    weft_value_t v = {0};
    cr_assert_eq(weft_executor_run(ex, body_nest, &root, &v), WEFT_OK);
    cr_assert_eq(v.i64, NEST_DEPTH + 1);
    for (int d = 0; d <= NEST_DEPTH; d++) {
        cr_assert_eq(atomic_load(&n->ran[d]), 1, "level %d ran %d times", d,
                     atomic_load(&n->ran[d]));
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    free(n);
}

Test(future, waits_nested_40_deep_do_not_deadlock)
{
    run_nest(1, 0);
    run_nest(2, 0);
    run_nest(4, 0);
}

Test(future, waits_nested_40_deep_across_workers_do_not_deadlock)
{
    run_nest(2, 1);
    run_nest(4, 1);
}

/*
 * Fib-style recursion 40 deep with linear size: level d spawns level d-1
 * and a leaf, calls level d-2's leaf directly, and joins the leaf first,
 * then level d-1 (so the join of d-1 is not the bottom of the deque).
 */
static weft_status_t
body_chain(weft_task_t *self, void *arg, weft_value_t *result)
{
    int d = (int)(intptr_t)arg;
    if (d <= 0) {
        result->i64 = 1;
        return WEFT_OK;
    }
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t *deep = NULL;
    weft_future_t *leaf = NULL;
    if (weft_spawn(ex, body_chain, (void *)(intptr_t)(d - 1), &deep) !=
        WEFT_OK) {
        return WEFT_EFAILED;
    }
    if (weft_spawn(ex, body_chain, (void *)(intptr_t)0, &leaf) != WEFT_OK) {
        weft_join(deep, NULL);
        return WEFT_EFAILED;
    }
    weft_value_t direct = {0};
    body_chain(self, (void *)(intptr_t)0, &direct);
    weft_value_t a = {0}, b = {0};
    weft_status_t s1 = weft_join(leaf, &b);
    weft_status_t s2 = weft_join(deep, &a);
    if (s1 != WEFT_OK || s2 != WEFT_OK) {
        return WEFT_EFAILED;
    }
    result->i64 = a.i64 + b.i64 + direct.i64;
    return WEFT_OK;
}

Test(future, fib_style_recursion_40_deep_does_not_deadlock)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        weft_executor_t *ex = make_ex(ns[k]);
        for (int rep = 0; rep < 20; rep++) {
            weft_value_t v = {0};
            cr_assert_eq(
                weft_executor_run(ex, body_chain, (void *)(intptr_t)40, &v),
                WEFT_OK);
            cr_assert_eq(v.i64, 1 + 2 * 40);
        }
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

/* Spawn A, B, C; join A first, then C, then B. */
struct ooo_rec {
    atomic_int bad;
};

static weft_status_t
body_out_of_order(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct ooo_rec *r = arg;
    weft_executor_t *ex = weft_task_executor(self);
    for (int rep = 0; rep < 200; rep++) {
        weft_future_t *a = NULL, *b = NULL, *c = NULL;
        if (weft_spawn(ex, body_return_arg, (void *)(intptr_t)1, &a) ||
            weft_spawn(ex, body_return_arg, (void *)(intptr_t)2, &b) ||
            weft_spawn(ex, body_return_arg, (void *)(intptr_t)3, &c)) {
            atomic_fetch_add(&r->bad, 1);
            return WEFT_EFAILED;
        }
        weft_value_t va = {0}, vb = {0}, vc = {0};
        if (weft_join(a, &va) != WEFT_OK || weft_join(c, &vc) != WEFT_OK ||
            weft_join(b, &vb) != WEFT_OK) {
            atomic_fetch_add(&r->bad, 1);
        }
        if (va.i64 != 1 || vb.i64 != 2 || vc.i64 != 3) {
            atomic_fetch_add(&r->bad, 1);
        }
    }
    result->i64 = 0;
    return WEFT_OK;
}

Test(future, out_of_order_joins_return_each_value)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        weft_executor_t *ex = make_ex(ns[k]);
        struct ooo_rec r;
        atomic_store(&r.bad, 0);
        cr_assert_eq(weft_executor_run(ex, body_out_of_order, &r, NULL),
                     WEFT_OK);
        cr_assert_eq(atomic_load(&r.bad), 0);
        /* The same from outside the executor. */
        weft_future_t *a = NULL, *b = NULL, *c = NULL;
        cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)1, &a),
                     WEFT_OK);
        cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)2, &b),
                     WEFT_OK);
        cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)3, &c),
                     WEFT_OK);
        weft_value_t va = {0}, vb = {0}, vc = {0};
        cr_assert_eq(weft_join(a, &va), WEFT_OK);
        cr_assert_eq(weft_join(c, &vc), WEFT_OK);
        cr_assert_eq(weft_join(b, &vb), WEFT_OK);
        cr_assert_eq(va.i64, 1);
        cr_assert_eq(vb.i64, 2);
        cr_assert_eq(vc.i64, 3);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

/* ---- 100k tasks from 8 outside threads -------------------------------- */

#define MANY_TASKS 100000
#define MANY_THREADS 8

struct many {
    weft_executor_t *ex;
    atomic_uchar count[MANY_TASKS];
    atomic_int ready;
    atomic_int bad;
};

struct many_thread {
    struct many *m;
    int first;
    int n;
};

static weft_status_t
body_many(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    /* arg = &m->count[id]; the value is the id. */
    atomic_fetch_add((atomic_uchar *)arg, 1);
    result->u64 = (uint64_t)(uintptr_t)arg;
    return WEFT_OK;
}

static void *
many_submitter(void *p)
{
    struct many_thread *t = p;
    struct many *m = t->m;
    weft_future_t **fs = malloc(sizeof(*fs) * (size_t)t->n);
    atomic_fetch_add(&m->ready, 1);
    while (atomic_load(&m->ready) < MANY_THREADS) {
        sched_yield();
    }
    for (int i = 0; i < t->n; i++) {
        if (weft_spawn(m->ex, body_many, &m->count[t->first + i], &fs[i]) !=
            WEFT_OK) {
            atomic_fetch_add(&m->bad, 1);
            fs[i] = NULL;
        }
    }
    for (int i = 0; i < t->n; i++) {
        if (fs[i] == NULL) {
            continue;
        }
        weft_value_t v = {0};
        if (weft_join(fs[i], &v) != WEFT_OK ||
            v.u64 != (uint64_t)(uintptr_t)&m->count[t->first + i]) {
            atomic_fetch_add(&m->bad, 1);
        }
    }
    free(fs);
    return NULL;
}

Test(future, tasks_from_8_outside_threads_each_complete_exactly_once)
{
    struct many *m = calloc(1, sizeof(*m));
    m->ex = make_ex(4);
    pthread_t th[MANY_THREADS];
    struct many_thread t[MANY_THREADS];
    for (int i = 0; i < MANY_THREADS; i++) {
        t[i].m = m;
        t[i].first = i * (MANY_TASKS / MANY_THREADS);
        t[i].n = MANY_TASKS / MANY_THREADS;
        cr_assert_eq(pthread_create(&th[i], NULL, many_submitter, &t[i]), 0);
    }
    for (int i = 0; i < MANY_THREADS; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    }
    cr_assert_eq(atomic_load(&m->bad), 0);
    int wrong = 0;
    for (int i = 0; i < MANY_TASKS; i++) {
        wrong += atomic_load(&m->count[i]) != 1;
    }
    cr_assert_eq(wrong, 0, "%d tasks did not run exactly once", wrong);
    cr_assert_eq(weft_executor_destroy(m->ex), WEFT_OK);
    free(m);
}

/* ---- outcomes -------------------------------------------------------- */

static void
expect_outcome(weft_future_t *f, weft_status_t want_st, int64_t want_val)
{
    weft_outcome_t want_oc = want_st == WEFT_OK ? WEFT_OUTCOME_SUCCEEDED
                             : want_st == WEFT_ECANCELED
                                 ? WEFT_OUTCOME_CANCELLED
                                 : WEFT_OUTCOME_FAILED;
    cr_assert(weft_future_is_done(f));
    cr_assert_eq(weft_future_outcome(f), want_oc, "outcome %s, want %s",
                 weft_outcome_name(weft_future_outcome(f)),
                 weft_outcome_name(want_oc));
    cr_assert_eq(weft_future_status(f), want_st, "status %s, want %s",
                 weft_status_name(weft_future_status(f)),
                 weft_status_name(want_st));
    weft_value_t v = {.i64 = -12345};
    cr_assert_eq(weft_future_value(f, &v), want_st);
    if (want_st == WEFT_OK) {
        cr_assert_eq(v.i64, want_val);
        cr_assert_null(weft_future_error(f), "a success carries no error");
    } else {
        cr_assert_eq(v.i64, -12345, "value must be untouched on %s",
                     weft_status_name(want_st));
        /* A failure carries its error, a cancellation its reason. */
        weft_error_t *e = weft_future_error(f);
        cr_assert_not_null(e, "%s without an error value",
                           weft_status_name(want_st));
        cr_assert_eq(weft_error_status(e), (int)want_st,
                     "error code %d, status %d", weft_error_status(e),
                     (int)want_st);
    }
}

static void
check_outcome_from_outside(weft_executor_t *ex, weft_status_t ret)
{
    weft_future_t *f = NULL;
    if (ret == WEFT_OK) {
        cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)77, &f),
                     WEFT_OK);
    } else {
        cr_assert_eq(
            weft_spawn(ex, body_return_status, (void *)(intptr_t)ret, &f),
            WEFT_OK);
    }
    cr_assert_eq(weft_future_wait(f), ret);
    expect_outcome(f, ret, 77);
    /* Waiting again returns the same. */
    cr_assert_eq(weft_future_wait(f), ret);
    cr_assert_eq(weft_future_wait_until(f, 1), ret);
    cr_assert_eq(weft_future_release(f), WEFT_OK);

    /* weft_join returns the same status and sets the value only on OK. */
    if (ret == WEFT_OK) {
        cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)77, &f),
                     WEFT_OK);
    } else {
        cr_assert_eq(
            weft_spawn(ex, body_return_status, (void *)(intptr_t)ret, &f),
            WEFT_OK);
    }
    weft_value_t v = {.i64 = -5};
    cr_assert_eq(weft_join(f, &v), ret);
    cr_assert_eq(v.i64, ret == WEFT_OK ? 77 : -5);
}

static const weft_status_t outcome_cases[] = {
    WEFT_OK,        WEFT_EUSER,     WEFT_ECANCELED,
    WEFT_EINVAL,    WEFT_ETIMEDOUT, WEFT_EFAILED,
    WEFT_EDEADLINE, WEFT_ESHUTDOWN, (weft_status_t)200};

Test(future, outcome_of_ok_fail_and_cancel_from_outside)
{
    weft_executor_t *ex = make_ex(2);
    for (size_t i = 0; i < sizeof(outcome_cases) / sizeof(outcome_cases[0]);
         i++) {
        check_outcome_from_outside(ex, outcome_cases[i]);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* The same checks from inside a task (inline join/wait paths). */
struct inside_outcomes {
    atomic_int bad;
    atomic_int checked;
};

static int
inside_check(weft_future_t *f, weft_status_t want)
{
    weft_outcome_t want_oc = want == WEFT_OK          ? WEFT_OUTCOME_SUCCEEDED
                             : want == WEFT_ECANCELED ? WEFT_OUTCOME_CANCELLED
                                                      : WEFT_OUTCOME_FAILED;
    int bad = 0;
    bad += weft_future_outcome(f) != want_oc;
    bad += weft_future_status(f) != want;
    bad += !weft_future_is_done(f);
    weft_value_t v = {.i64 = -1};
    bad += weft_future_value(f, &v) != want;
    bad += want == WEFT_OK ? v.i64 != 5 : v.i64 != -1;
    weft_error_t *e = weft_future_error(f);
    bad += want == WEFT_OK ? e != NULL
                           : (e == NULL || weft_error_status(e) != (int)want);
    return bad;
}

static weft_status_t
body_inside_outcomes(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct inside_outcomes *r = arg;
    weft_executor_t *ex = weft_task_executor(self);
    (void)result;
    for (size_t i = 0; i < sizeof(outcome_cases) / sizeof(outcome_cases[0]);
         i++) {
        weft_status_t want = outcome_cases[i];
        weft_fn_t fn = want == WEFT_OK ? body_return_arg : body_return_status;
        void *a =
            want == WEFT_OK ? (void *)(intptr_t)5 : (void *)(intptr_t)want;
        weft_future_t *f = NULL;
        /* wait (inline), then read. */
        if (weft_spawn(ex, fn, a, &f) != WEFT_OK) {
            atomic_fetch_add(&r->bad, 1);
            continue;
        }
        if (weft_future_wait(f) != want) {
            atomic_fetch_add(&r->bad, 1);
        }
        atomic_fetch_add(&r->bad, inside_check(f, want));
        weft_future_release(f);
        /* join (inline fast path). */
        if (weft_spawn(ex, fn, a, &f) != WEFT_OK) {
            atomic_fetch_add(&r->bad, 1);
            continue;
        }
        weft_value_t v = {.i64 = -1};
        if (weft_join(f, &v) != want) {
            atomic_fetch_add(&r->bad, 1);
        }
        if (want == WEFT_OK ? v.i64 != 5 : v.i64 != -1) {
            atomic_fetch_add(&r->bad, 1);
        }
        /* With a second reference (not the inline fast path). */
        if (weft_spawn(ex, fn, a, &f) != WEFT_OK) {
            atomic_fetch_add(&r->bad, 1);
            continue;
        }
        weft_future_retain(f);
        if (weft_join(f, NULL) != want) {
            atomic_fetch_add(&r->bad, 1);
        }
        atomic_fetch_add(&r->bad, inside_check(f, want));
        weft_future_release(f);
        atomic_fetch_add(&r->checked, 1);
    }
    return WEFT_OK;
}

Test(future, outcome_of_ok_fail_and_cancel_from_inside_a_task)
{
    const unsigned int ns[] = {1, 4};
    for (size_t k = 0; k < 2; k++) {
        weft_executor_t *ex = make_ex(ns[k]);
        struct inside_outcomes r;
        atomic_store(&r.bad, 0);
        atomic_store(&r.checked, 0);
        cr_assert_eq(weft_executor_run(ex, body_inside_outcomes, &r, NULL),
                     WEFT_OK);
        cr_assert_eq(atomic_load(&r.bad), 0);
        cr_assert_eq(atomic_load(&r.checked),
                     (int)(sizeof(outcome_cases) / sizeof(outcome_cases[0])));
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

Test(future, pending_future_reports_pending)
{
    weft_executor_t *ex = make_ex(2);
    struct gate g = {.ret = WEFT_OK, .value = 8};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &f), WEFT_OK);
    cr_assert_not(weft_future_is_done(f));
    cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
    cr_assert_eq(weft_future_status(f), WEFT_EAGAIN);
    cr_assert_null(weft_future_error(f));
    weft_value_t v = {.i64 = -3};
    cr_assert_eq(weft_future_value(f, &v), WEFT_EAGAIN);
    cr_assert_eq(v.i64, -3);
    atomic_store(&g.open, 1);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_future_value(f, &v), WEFT_OK);
    cr_assert_eq(v.i64, 8);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(future, wait_then_value_then_release)
{
    weft_executor_t *ex = make_ex(2);
    for (int i = 0; i < 1000; i++) {
        weft_future_t *f = NULL;
        cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)i, &f),
                     WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        weft_value_t v = {0};
        cr_assert_eq(weft_future_value(f, &v), WEFT_OK);
        cr_assert_eq(v.i64, i);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- references ------------------------------------------------------ */

struct ref_thread {
    weft_future_t *f;
    int64_t want;
    atomic_int ok;
};

static void *
ref_waiter(void *p)
{
    struct ref_thread *t = p;
    weft_value_t v = {0};
    if (weft_future_wait(t->f) == WEFT_OK &&
        weft_future_value(t->f, &v) == WEFT_OK && v.i64 == t->want &&
        weft_future_outcome(t->f) == WEFT_OUTCOME_SUCCEEDED) {
        atomic_store(&t->ok, 1);
    }
    weft_future_release(t->f);
    return NULL;
}

Test(future, retain_and_release_from_another_thread)
{
    weft_executor_t *ex = make_ex(2);
    /* (a) the other thread releases last, after completion. */
    struct gate g = {.ret = WEFT_OK, .value = 31};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &f), WEFT_OK);
    cr_assert_eq(weft_future_retain(f), WEFT_OK);
    struct ref_thread t = {.f = f, .want = 31};
    atomic_store(&t.ok, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, ref_waiter, &t), 0);
    atomic_store(&g.open, 1);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(atomic_load(&t.ok), 1);

    /* (b) 4 threads, each with its own reference; the owner releases
     * first, before completion. */
    struct gate g2 = {.ret = WEFT_OK, .value = 32};
    cr_assert_eq(weft_spawn(ex, body_gated, &g2, &f), WEFT_OK);
    struct ref_thread ts[4];
    pthread_t ths[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(weft_future_retain(f), WEFT_OK);
        ts[i].f = f;
        ts[i].want = 32;
        atomic_store(&ts[i].ok, 0);
        cr_assert_eq(pthread_create(&ths[i], NULL, ref_waiter, &ts[i]), 0);
    }
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    atomic_store(&g2.open, 1);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pthread_join(ths[i], NULL), 0);
        cr_assert_eq(atomic_load(&ts[i].ok), 1);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

static atomic_int detached_runs;
static atomic_int detached_hooks;

static weft_status_t
body_detached(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)arg;
    (void)result;
    atomic_fetch_add(&detached_runs, 1);
    return WEFT_OK;
}

static void
hook_detached(void *arg)
{
    (void)arg;
    atomic_fetch_add(&detached_hooks, 1);
}

static weft_status_t
body_spawn_detached(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)arg;
    (void)result;
    weft_executor_t *ex = weft_task_executor(self);
    weft_spawn_opts_t opts = {.release = hook_detached};
    for (int i = 0; i < 500; i++) {
        if (weft_spawn(ex, body_detached, NULL, NULL) != WEFT_OK ||
            weft_spawn_ex(ex, &opts, body_detached, NULL, NULL) != WEFT_OK) {
            return WEFT_EFAILED;
        }
    }
    return WEFT_OK;
}

Test(future, detached_spawn_runs_exactly_once)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        atomic_store(&detached_runs, 0);
        atomic_store(&detached_hooks, 0);
        weft_executor_t *ex = make_ex(ns[k]);
        weft_spawn_opts_t opts = {.release = hook_detached};
        for (int i = 0; i < 500; i++) {
            cr_assert_eq(weft_spawn(ex, body_detached, NULL, NULL), WEFT_OK);
            cr_assert_eq(weft_spawn_ex(ex, &opts, body_detached, NULL, NULL),
                         WEFT_OK);
        }
        cr_assert_eq(weft_executor_run(ex, body_spawn_detached, NULL, NULL),
                     WEFT_OK);
        cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
        cr_assert_eq(atomic_load(&detached_runs), 2000);
        cr_assert_eq(atomic_load(&detached_hooks), 1000);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

Test(future, release_before_completion_detaches_and_frees)
{
    weft_executor_t *ex = make_ex(2);
    struct gate gs[50];
    memset(gs, 0, sizeof(gs));
    atomic_store(&detached_hooks, 0);
    weft_spawn_opts_t opts = {.release = hook_detached};
    for (int i = 0; i < 50; i++) {
        weft_future_t *f = NULL;
        gs[i].ret = i % 3 == 0   ? WEFT_OK
                    : i % 3 == 1 ? WEFT_EUSER
                                 : WEFT_ECANCELED;
        cr_assert_eq(weft_spawn_ex(ex, &opts, body_gated, &gs[i], &f), WEFT_OK);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
    }
    for (int i = 0; i < 50; i++) {
        atomic_store(&gs[i].open, 1);
    }
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(atomic_load(&gs[i].finished), 1);
    }
    cr_assert_eq(atomic_load(&detached_hooks), 50);
    /* Nothing is held: destroy frees everything (ASan checks for leaks). */
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- continuations --------------------------------------------------- */

struct cont_rec {
    weft_executor_t *ex;
    weft_future_t *antecedent;
    struct gate *g;      /* the antecedent's gate, or NULL */
    weft_outcome_t want; /* the antecedent's outcome */
    atomic_int runs;
    atomic_int bad_antecedent;
    atomic_int bad_outcome;
    atomic_int not_on_worker;
    atomic_int before_antecedent;
};

static weft_status_t
body_cont(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct cont_rec *r = arg;
    atomic_fetch_add(&r->runs, 1);
    weft_future_t *a = weft_task_antecedent(self);
    if (a != r->antecedent) {
        atomic_fetch_add(&r->bad_antecedent, 1);
    } else if (weft_future_outcome(a) != r->want || !weft_future_is_done(a)) {
        atomic_fetch_add(&r->bad_outcome, 1);
    }
    int idx = weft_executor_worker_index(r->ex);
    if (idx < 0 || weft_task_executor(self) != r->ex) {
        atomic_fetch_add(&r->not_on_worker, 1);
    }
    if (r->g != NULL && atomic_load(&r->g->finished) != 1) {
        atomic_fetch_add(&r->before_antecedent, 1);
    }
    result->i64 = 1000 + atomic_load(&r->runs);
    return WEFT_OK;
}

static void
cont_rec_init(struct cont_rec *r, weft_executor_t *ex, weft_future_t *a,
              struct gate *g, weft_outcome_t want)
{
    r->ex = ex;
    r->antecedent = a;
    r->g = g;
    r->want = want;
    atomic_store(&r->runs, 0);
    atomic_store(&r->bad_antecedent, 0);
    atomic_store(&r->bad_outcome, 0);
    atomic_store(&r->not_on_worker, 0);
    atomic_store(&r->before_antecedent, 0);
}

static void
cont_rec_check(struct cont_rec *r, int runs)
{
    cr_assert_eq(atomic_load(&r->runs), runs, "continuation ran %d times",
                 atomic_load(&r->runs));
    cr_assert_eq(atomic_load(&r->bad_antecedent), 0);
    cr_assert_eq(atomic_load(&r->bad_outcome), 0);
    cr_assert_eq(atomic_load(&r->not_on_worker), 0);
    cr_assert_eq(atomic_load(&r->before_antecedent), 0);
}

static weft_outcome_t
outcome_of_status(weft_status_t st)
{
    return st == WEFT_OK          ? WEFT_OUTCOME_SUCCEEDED
           : st == WEFT_ECANCELED ? WEFT_OUTCOME_CANCELLED
                                  : WEFT_OUTCOME_FAILED;
}

Test(future, then_runs_once_after_antecedent_for_every_outcome)
{
    const weft_status_t rets[] = {WEFT_OK, WEFT_EUSER, WEFT_ECANCELED};
    weft_executor_t *ex = make_ex(2);
    for (int i = 0; i < 3; i++) {
        for (int after = 0; after < 2; after++) {
            struct gate g = {.ret = rets[i], .value = 4};
            weft_future_t *f = NULL;
            cr_assert_eq(weft_spawn(ex, body_gated, &g, &f), WEFT_OK);
            struct cont_rec r;
            cont_rec_init(&r, ex, f, &g, outcome_of_status(rets[i]));
            if (after) {
                atomic_store(&g.open, 1);
                cr_assert_eq(weft_future_wait(f), rets[i]);
            }
            weft_future_t *c = (weft_future_t *)(uintptr_t)1;
            cr_assert_eq(weft_future_then(f, body_cont, &r, &c), WEFT_OK);
            cr_assert_not_null(c);
            cr_assert_neq(c, f);
            if (!after) {
                /* Registered while the antecedent is pending. */
                cr_assert_eq(atomic_load(&g.finished), 0);
                cr_assert_eq(atomic_load(&r.runs), 0);
                atomic_store(&g.open, 1);
            }
            weft_value_t v = {0};
            cr_assert_eq(weft_join(c, &v), WEFT_OK);
            cr_assert_eq(v.i64, 1001);
            cont_rec_check(&r, 1);
            /* The antecedent stays readable by its holder. */
            cr_assert_eq(weft_future_status(f), rets[i]);
            cr_assert_eq(weft_future_release(f), WEFT_OK);
        }
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(future, then_with_detached_continuation_and_released_antecedent)
{
    weft_executor_t *ex = make_ex(2);
    struct gate g = {.ret = WEFT_EUSER};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &f), WEFT_OK);
    struct cont_rec r;
    cont_rec_init(&r, ex, f, &g, WEFT_OUTCOME_FAILED);
    cr_assert_eq(weft_future_then(f, body_cont, &r, NULL), WEFT_OK);
    /* The continuation holds its own reference to f. */
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    atomic_store(&g.open, 1);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    cont_rec_check(&r, 1);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* Continuations registered from inside a task (on a worker). */
struct then_inside {
    struct cont_rec r[2];
    struct gate g;
    atomic_int bad;
};

static weft_status_t
body_then_inside(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct then_inside *t = arg;
    weft_executor_t *ex = weft_task_executor(self);
    (void)result;
    weft_future_t *f = NULL;
    /* Antecedent already done. */
    if (weft_spawn(ex, body_return_status, (void *)(intptr_t)WEFT_ECANCELED,
                   &f) != WEFT_OK) {
        return WEFT_EFAILED;
    }
    if (weft_future_wait(f) != WEFT_ECANCELED) {
        atomic_fetch_add(&t->bad, 1);
    }
    cont_rec_init(&t->r[0], ex, f, NULL, WEFT_OUTCOME_CANCELLED);
    weft_future_t *c = NULL;
    if (weft_future_then(f, body_cont, &t->r[0], &c) != WEFT_OK) {
        return WEFT_EFAILED;
    }
    weft_future_release(f);
    if (weft_join(c, NULL) != WEFT_OK) {
        atomic_fetch_add(&t->bad, 1);
    }
    /* Antecedent still in our own deque: then, then join the antecedent
     * (it cannot take the inline path: the continuation holds a ref). */
    if (weft_spawn(ex, body_return_arg, (void *)(intptr_t)9, &f) != WEFT_OK) {
        return WEFT_EFAILED;
    }
    cont_rec_init(&t->r[1], ex, f, NULL, WEFT_OUTCOME_SUCCEEDED);
    if (weft_future_then(f, body_cont, &t->r[1], &c) != WEFT_OK) {
        return WEFT_EFAILED;
    }
    weft_value_t v = {0};
    if (weft_future_wait(f) != WEFT_OK || weft_future_value(f, &v) ||
        v.i64 != 9) {
        atomic_fetch_add(&t->bad, 1);
    }
    if (weft_join(c, NULL) != WEFT_OK) {
        atomic_fetch_add(&t->bad, 1);
    }
    weft_future_release(f);
    return WEFT_OK;
}

Test(future, then_from_inside_a_task)
{
    const unsigned int ns[] = {1, 2};
    for (int k = 0; k < 2; k++) {
        weft_executor_t *ex = make_ex(ns[k]);
        struct then_inside *t = calloc(1, sizeof(*t));
        cr_assert_eq(weft_executor_run(ex, body_then_inside, t, NULL), WEFT_OK);
        cr_assert_eq(atomic_load(&t->bad), 0);
        cont_rec_check(&t->r[0], 1);
        cont_rec_check(&t->r[1], 1);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
        free(t);
    }
}

/* Many continuations on one future, registered by outside threads while
 * the antecedent is pending and after it completed. */
#define MANY_CONTS 2000

struct many_conts {
    weft_executor_t *ex;
    weft_future_t *f;
    struct gate g;
    atomic_uchar runs[MANY_CONTS];
    atomic_int bad;
    atomic_int registered;
};

struct mc_arg {
    struct many_conts *m;
    int i;
};

static weft_status_t
body_mc(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct mc_arg *a = arg;
    (void)result;
    atomic_fetch_add(&a->m->runs[a->i], 1);
    if (weft_task_antecedent(self) != a->m->f ||
        atomic_load(&a->m->g.finished) != 1 ||
        weft_executor_worker_index(a->m->ex) < 0) {
        atomic_fetch_add(&a->m->bad, 1);
    }
    return WEFT_OK;
}

struct mc_thread {
    struct many_conts *m;
    struct mc_arg *args;
    int first, n;
};

static void *
mc_registrar(void *p)
{
    struct mc_thread *t = p;
    for (int i = 0; i < t->n; i++) {
        t->args[i].m = t->m;
        t->args[i].i = t->first + i;
        if (weft_future_then(t->m->f, body_mc, &t->args[i], NULL) != WEFT_OK) {
            atomic_fetch_add(&t->m->bad, 1);
        }
        atomic_fetch_add(&t->m->registered, 1);
    }
    return NULL;
}

Test(future, many_continuations_on_one_future_all_run_once)
{
    struct many_conts *m = calloc(1, sizeof(*m));
    struct mc_arg *args = calloc(MANY_CONTS, sizeof(*args));
    m->ex = make_ex(2);
    m->g.ret = WEFT_OK;
    cr_assert_eq(weft_spawn(m->ex, body_gated, &m->g, &m->f), WEFT_OK);
    pthread_t th[4];
    struct mc_thread t[4];
    for (int i = 0; i < 4; i++) {
        t[i].m = m;
        t[i].first = i * (MANY_CONTS / 4);
        t[i].n = MANY_CONTS / 4;
        t[i].args = args + t[i].first;
        cr_assert_eq(pthread_create(&th[i], NULL, mc_registrar, &t[i]), 0);
    }
    /* Complete the antecedent after half were registered, so the rest
     * race with completion or come after it. */
    spin_until_int(&m->registered, MANY_CONTS / 2);
    atomic_store(&m->g.open, 1);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    }
    cr_assert_eq(weft_future_release(m->f), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(m->ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    cr_assert_eq(atomic_load(&m->bad), 0);
    int wrong = 0;
    for (int i = 0; i < MANY_CONTS; i++) {
        wrong += atomic_load(&m->runs[i]) != 1;
    }
    cr_assert_eq(wrong, 0, "%d continuations did not run exactly once", wrong);
    cr_assert_eq(weft_executor_destroy(m->ex), WEFT_OK);
    free(args);
    free(m);
}

Test(future, then_of_a_continuation_chains)
{
    weft_executor_t *ex = make_ex(2);
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)1, &f),
                 WEFT_OK);
    struct cont_rec r[10];
    weft_future_t *cur = f;
    for (int i = 0; i < 10; i++) {
        cont_rec_init(&r[i], ex, cur, NULL, WEFT_OUTCOME_SUCCEEDED);
        weft_future_t *c = NULL;
        cr_assert_eq(weft_future_then(cur, body_cont, &r[i], &c), WEFT_OK);
        cr_assert_eq(weft_future_release(cur), WEFT_OK);
        cur = c;
    }
    weft_value_t v = {0};
    cr_assert_eq(weft_join(cur, &v), WEFT_OK);
    cr_assert_eq(v.i64, 1001);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(atomic_load(&r[i].runs), 1);
        cr_assert_eq(atomic_load(&r[i].not_on_worker), 0);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- deadlines -------------------------------------------------------- */

Test(future, wait_until_past_deadline_on_blocked_task_times_out)
{
    weft_executor_t *ex = make_ex(2);
    struct gate g = {.ret = WEFT_OK, .value = 6};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait_until(f, 1), WEFT_ETIMEDOUT);
    cr_assert_eq(weft_future_wait_until(f, 0), WEFT_ETIMEDOUT);
    uint64_t now = weft_clock_now_ns();
    cr_assert(now > 0);
    cr_assert_eq(weft_future_wait_until(f, now), WEFT_ETIMEDOUT);
    cr_assert_eq(weft_future_wait_until(f, now - 1000), WEFT_ETIMEDOUT);
    cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
    atomic_store(&g.open, 1);
    /* Far-future deadline: the task ends long before it. */
    cr_assert_eq(weft_future_wait_until(f, now + 3600ull * 1000000000ull),
                 WEFT_OK);
    cr_assert_eq(atomic_load(&g.finished), 1);
    weft_value_t v = {0};
    cr_assert_eq(weft_join(f, &v), WEFT_OK);
    cr_assert_eq(v.i64, 6);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

struct wait_inside {
    weft_future_t *blocked;
    atomic_int st_past;
    atomic_int st_zero;
    atomic_int pending_after;
};

static weft_status_t
body_wait_until_inside(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    struct wait_inside *w = arg;
    atomic_store(&w->st_past, weft_future_wait_until(w->blocked, 1));
    atomic_store(&w->st_zero,
                 weft_future_wait_until(w->blocked, weft_clock_now_ns() - 1));
    atomic_store(&w->pending_after, !weft_future_is_done(w->blocked));
    return WEFT_OK;
}

Test(future, wait_until_past_deadline_inside_a_worker_times_out)
{
    weft_executor_t *ex = make_ex(2);
    struct gate g = {.ret = WEFT_OK, .value = 6};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &f), WEFT_OK);
    /* The blocked task runs on one worker; the waiter on the other. */
    spin_until_int(&g.started, 1);
    struct wait_inside w = {.blocked = f};
    atomic_store(&w.st_past, -1);
    atomic_store(&w.st_zero, -1);
    cr_assert_eq(weft_executor_run(ex, body_wait_until_inside, &w, NULL),
                 WEFT_OK);
    cr_assert_eq(atomic_load(&w.st_past), WEFT_ETIMEDOUT);
    cr_assert_eq(atomic_load(&w.st_zero), WEFT_ETIMEDOUT);
    cr_assert_eq(atomic_load(&w.pending_after), 1);
    atomic_store(&g.open, 1);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(atomic_load(&g.finished), 1);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- executor_run ----------------------------------------------------- */

static weft_status_t
body_nested_run(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)arg;
    weft_value_t v = {0};
    weft_status_t st = weft_executor_run(
        weft_task_executor(self), body_return_arg, (void *)(intptr_t)21, &v);
    result->i64 = v.i64 * 2;
    return st;
}

Test(future, executor_run_returns_the_value_and_status)
{
    weft_executor_t *ex = make_ex(2);
    weft_value_t v = {0};
    cr_assert_eq(
        weft_executor_run(ex, body_return_arg, (void *)(intptr_t)-9, &v),
        WEFT_OK);
    cr_assert_eq(v.i64, -9);
    cr_assert_eq(
        weft_executor_run(ex, body_return_arg, (void *)(intptr_t)3, NULL),
        WEFT_OK);
    v.i64 = -1;
    cr_assert_eq(weft_executor_run(ex, body_return_status,
                                   (void *)(intptr_t)WEFT_EUSER, &v),
                 WEFT_EUSER);
    cr_assert_eq(v.i64, -1);
    cr_assert_eq(weft_executor_run(ex, body_return_status,
                                   (void *)(intptr_t)WEFT_ECANCELED, &v),
                 WEFT_ECANCELED);
    cr_assert_eq(weft_executor_run(ex, body_nested_run, NULL, &v), WEFT_OK);
    cr_assert_eq(v.i64, 42);
    cr_assert_eq(weft_executor_run(ex, NULL, NULL, &v), WEFT_EINVAL);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- release hooks ---------------------------------------------------- */

struct hook_arg {
    atomic_int body;
    atomic_int hook;
    atomic_int hook_before_body_end; /* hook saw body not finished */
    atomic_int body_done;
};

static void
hook_count(void *p)
{
    struct hook_arg *h = p;
    atomic_fetch_add(&h->hook, 1);
    if (atomic_load(&h->body) != atomic_load(&h->body_done)) {
        atomic_fetch_add(&h->hook_before_body_end, 1);
    }
}

static weft_status_t
body_hooked(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    struct hook_arg *h = arg;
    atomic_fetch_add(&h->body, 1);
    atomic_fetch_add(&h->body_done, 1);
    return WEFT_OK;
}

Test(future, spawn_ex_hook_runs_once_after_the_body)
{
    weft_executor_t *ex = make_ex(2);
    weft_spawn_opts_t opts = {.release = hook_count, .name = "hooked"};
    struct hook_arg h[100];
    memset(h, 0, sizeof(h));
    weft_future_t *fs[100];
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(weft_spawn_ex(ex, &opts, body_hooked, &h[i], &fs[i]),
                     WEFT_OK);
    }
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(weft_join(fs[i], NULL), WEFT_OK);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(atomic_load(&h[i].body), 1);
        cr_assert_eq(atomic_load(&h[i].hook), 1);
        cr_assert_eq(atomic_load(&h[i].hook_before_body_end), 0);
    }
}

struct shutdown_call {
    weft_executor_t *ex;
    weft_shutdown_mode_t mode;
    weft_status_t st;
};

static void *
shutdown_thread(void *p)
{
    struct shutdown_call *c = p;
    c->st = weft_executor_shutdown(c->ex, c->mode);
    return NULL;
}

/* Spawn probes from outside until one is refused (shutdown has begun). */
static void
wait_for_refusal(weft_executor_t *ex)
{
    for (;;) {
        weft_future_t *f = NULL;
        weft_status_t st = weft_spawn(ex, body_noop, NULL, &f);
        if (st == WEFT_ESHUTDOWN) {
            cr_assert_null(f);
            return;
        }
        cr_assert_eq(st, WEFT_OK);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        sched_yield();
    }
}

Test(future, spawn_ex_hook_runs_once_when_cancelled_by_shutdown)
{
    weft_executor_t *ex = make_ex(1);
    struct gate g = {.ret = WEFT_OK};
    weft_future_t *blocker = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &blocker), WEFT_OK);
    spin_until_int(&g.started, 1);
    /* The only worker is blocked: these wait in the injection queue and
     * have not started when shutdown(CANCEL) is called. */
    weft_spawn_opts_t opts = {.release = hook_count};
    struct hook_arg h[20];
    memset(h, 0, sizeof(h));
    weft_future_t *fs[20] = {NULL};
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(
            weft_spawn_ex(ex, &opts, body_hooked, &h[i], i % 2 ? &fs[i] : NULL),
            WEFT_OK);
    }
    struct shutdown_call call = {.ex = ex, .mode = WEFT_SHUTDOWN_CANCEL};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, shutdown_thread, &call), 0);
    wait_for_refusal(ex);
    atomic_store(&g.open, 1);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(call.st, WEFT_OK);
    /* The running task was not interrupted. */
    cr_assert_eq(weft_future_wait(blocker), WEFT_OK);
    cr_assert_eq(weft_future_release(blocker), WEFT_OK);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(atomic_load(&h[i].body), 0, "task %d ran", i);
        cr_assert_eq(atomic_load(&h[i].hook), 1, "task %d: %d hooks", i,
                     atomic_load(&h[i].hook));
        if (fs[i] != NULL) {
            cr_assert(weft_future_is_done(fs[i]));
            cr_assert_eq(weft_future_outcome(fs[i]), WEFT_OUTCOME_CANCELLED);
            cr_assert_eq(weft_future_status(fs[i]), WEFT_ECANCELED);
            cr_assert_eq(weft_future_wait(fs[i]), WEFT_ECANCELED);
            weft_value_t v = {.i64 = -2};
            cr_assert_eq(weft_future_value(fs[i], &v), WEFT_ECANCELED);
            cr_assert_eq(v.i64, -2);
            /* The reason names the shutdown. */
            weft_error_t *e = weft_future_error(fs[i]);
            cr_assert_not_null(e);
            cr_assert_eq(weft_error_status(e), WEFT_ESHUTDOWN, "reason %s",
                         weft_status_name(weft_error_status(e)));
            cr_assert_eq(weft_future_release(fs[i]), WEFT_OK);
        }
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(future, spawn_ex_hook_runs_once_when_the_spawn_is_refused)
{
    weft_executor_t *ex = make_ex(2);
    weft_spawn_opts_t opts = {.release = hook_count};
    struct hook_arg h;
    memset(&h, 0, sizeof(h));
    weft_future_t *f = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_spawn_ex(ex, &opts, NULL, &h, &f), WEFT_EINVAL);
    cr_assert_null(f);
    cr_assert_eq(atomic_load(&h.hook), 1);
    cr_assert_eq(weft_spawn_ex(ex, &opts, NULL, &h, NULL), WEFT_EINVAL);
    cr_assert_eq(atomic_load(&h.hook), 2);
    cr_assert_eq(weft_spawn_ex(NULL, &opts, body_hooked, &h, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(atomic_load(&h.hook), 3);
    /* opts NULL: no hook, plain spawn. */
    cr_assert_eq(weft_spawn_ex(ex, NULL, body_hooked, &h, &f), WEFT_OK);
    cr_assert_eq(weft_join(f, NULL), WEFT_OK);
    cr_assert_eq(atomic_load(&h.body), 1);
    cr_assert_eq(atomic_load(&h.hook), 3);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    f = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_spawn_ex(ex, &opts, body_hooked, &h, &f), WEFT_ESHUTDOWN);
    cr_assert_null(f);
    cr_assert_eq(atomic_load(&h.hook), 4);
    cr_assert_eq(atomic_load(&h.body), 1);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* From a worker: refused spawns (NULL fn) run the hook before returning. */
static weft_status_t
body_refused_inside(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct hook_arg *h = arg;
    weft_spawn_opts_t opts = {.release = hook_count};
    weft_future_t *f = (weft_future_t *)(uintptr_t)1;
    weft_status_t st =
        weft_spawn_ex(weft_task_executor(self), &opts, NULL, h, &f);
    result->i64 =
        (st == WEFT_EINVAL && f == NULL && atomic_load(&h->hook) == 1);
    return WEFT_OK;
}

Test(future, spawn_ex_refused_on_a_worker_runs_hook_before_returning)
{
    weft_executor_t *ex = make_ex(1);
    struct hook_arg h;
    memset(&h, 0, sizeof(h));
    weft_value_t v = {0};
    cr_assert_eq(weft_executor_run(ex, body_refused_inside, &h, &v), WEFT_OK);
    cr_assert_eq(v.i64, 1);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/*
 * After shutdown a continuation cannot run on the executor any more; then()
 * either refuses it (fn never runs) or accepts it, and then its future
 * must still end (cancelled, fn not run): it is never left pending.
 */
Test(future, then_after_shutdown_never_leaves_a_pending_continuation)
{
    weft_executor_t *ex = make_ex(2);
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)1, &f),
                 WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    struct cont_rec r;
    cont_rec_init(&r, ex, f, NULL, WEFT_OUTCOME_SUCCEEDED);
    weft_future_t *c = NULL;
    weft_status_t st = weft_future_then(f, body_cont, &r, &c);
    if (st == WEFT_OK) {
        cr_assert_not_null(c);
        cr_assert(weft_future_is_done(c),
                  "continuation accepted after shutdown is still pending");
        cr_assert_eq(weft_future_wait(c), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(c), WEFT_OUTCOME_CANCELLED);
        cr_assert_eq(weft_future_release(c), WEFT_OK);
    } else {
        cr_assert_eq(st, WEFT_ESHUTDOWN, "then: %s", weft_status_name(st));
        cr_assert_null(c);
    }
    cr_assert_eq(atomic_load(&r.runs), 0);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* shutdown(CANCEL) with a queued antecedent: the antecedent ends cancelled
 * without running, and so does its continuation; nothing stays pending. */
Test(future, then_on_a_task_cancelled_by_shutdown_ends_cancelled)
{
    weft_executor_t *ex = make_ex(1);
    struct gate g = {.ret = WEFT_OK};
    weft_future_t *blocker = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &blocker), WEFT_OK);
    spin_until_int(&g.started, 1);
    struct hook_arg h;
    memset(&h, 0, sizeof(h));
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_hooked, &h, &f), WEFT_OK);
    struct cont_rec r;
    cont_rec_init(&r, ex, f, NULL, WEFT_OUTCOME_CANCELLED);
    weft_future_t *c = NULL;
    cr_assert_eq(weft_future_then(f, body_cont, &r, &c), WEFT_OK);
    struct shutdown_call call = {.ex = ex, .mode = WEFT_SHUTDOWN_CANCEL};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, shutdown_thread, &call), 0);
    wait_for_refusal(ex);
    atomic_store(&g.open, 1);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(call.st, WEFT_OK);
    cr_assert(weft_future_is_done(f));
    cr_assert(weft_future_is_done(c));
    cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED);
    cr_assert_eq(atomic_load(&h.body), 0);
    /* The continuation ran (seeing a cancelled antecedent) or was itself
     * cancelled; either way it ended exactly once. */
    weft_outcome_t oc = weft_future_outcome(c);
    cr_assert(oc == WEFT_OUTCOME_CANCELLED || oc == WEFT_OUTCOME_SUCCEEDED,
              "continuation %s", weft_outcome_name(oc));
    cr_assert_eq(atomic_load(&r.runs), oc == WEFT_OUTCOME_SUCCEEDED ? 1 : 0);
    cont_rec_check(&r, oc == WEFT_OUTCOME_SUCCEEDED ? 1 : 0);
    cr_assert_eq(weft_future_release(c), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_join(blocker, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- names and ids ---------------------------------------------------- */

Test(future, name_is_the_pointer_given_at_spawn)
{
    static const char name[] = "my-task";
    weft_executor_t *ex = make_ex(2);
    weft_spawn_opts_t opts = {.name = name};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &opts, body_noop, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_name(f), name);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_future_name(f), name);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    /* A recycled object must not keep an old name. */
    for (int i = 0; i < 600; i++) {
        cr_assert_eq(weft_spawn(ex, body_noop, NULL, &f), WEFT_OK);
        cr_assert_null(weft_future_name(f));
        cr_assert_eq(weft_future_release(f), WEFT_OK);
    }
    cr_assert_null(weft_future_name(NULL));
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

#define ID_TASKS 10000

struct id_rec {
    atomic_uint_fast64_t inside[ID_TASKS];
    atomic_uint_fast64_t inside_again[ID_TASKS];
};

struct id_arg {
    struct id_rec *r;
    int i;
};

static weft_status_t
body_id(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct id_arg *a = arg;
    uint64_t id = weft_task_id(self);
    atomic_store(&a->r->inside[a->i], id);
    atomic_store(&a->r->inside_again[a->i], weft_task_id(self));
    result->u64 = id;
    return WEFT_OK;
}

/* Spawn half of the id tasks from a worker. */
struct id_spawner {
    struct id_arg *args;
    weft_future_t **fs;
    int first, n;
};

static weft_status_t
body_id_spawner(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct id_spawner *s = arg;
    (void)result;
    for (int i = 0; i < s->n; i++) {
        if (weft_spawn(weft_task_executor(self), body_id,
                       &s->args[s->first + i],
                       &s->fs[s->first + i]) != WEFT_OK) {
            return WEFT_EFAILED;
        }
    }
    return WEFT_OK;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(future, ids_are_nonzero_unique_and_match_inside_and_outside)
{
    weft_executor_t *ex = make_ex(4);
    struct id_rec *r = calloc(1, sizeof(*r));
    struct id_arg *args = calloc(ID_TASKS, sizeof(*args));
    weft_future_t **fs = calloc(ID_TASKS, sizeof(*fs));
    uint64_t *outside = calloc(ID_TASKS, sizeof(*outside));
    for (int i = 0; i < ID_TASKS; i++) {
        args[i].r = r;
        args[i].i = i;
    }
    /* First half from outside; ask for the id of every other one before
     * the task can have run (the id is assigned on first use). */
    for (int i = 0; i < ID_TASKS / 2; i++) {
        cr_assert_eq(weft_spawn(ex, body_id, &args[i], &fs[i]), WEFT_OK);
        if (i % 2 == 0) {
            outside[i] = weft_future_id(fs[i]);
        }
    }
    struct id_spawner sp = {
        .args = args, .fs = fs, .first = ID_TASKS / 2, .n = ID_TASKS / 2};
    cr_assert_eq(weft_executor_run(ex, body_id_spawner, &sp, NULL), WEFT_OK);
    for (int i = 0; i < ID_TASKS; i++) {
        cr_assert_eq(weft_future_wait(fs[i]), WEFT_OK);
        uint64_t id = weft_future_id(fs[i]);
        cr_assert_neq(id, 0u);
        cr_assert_eq(weft_future_id(fs[i]), id, "the id is stable");
        if (outside[i] != 0) {
            cr_assert_eq(outside[i], id);
        }
        cr_assert_eq(atomic_load(&r->inside[i]), id,
                     "task %d: weft_task_id %llu != weft_future_id %llu", i,
                     (unsigned long long)atomic_load(&r->inside[i]),
                     (unsigned long long)id);
        cr_assert_eq(atomic_load(&r->inside_again[i]), id);
        weft_value_t v = {0};
        cr_assert_eq(weft_future_value(fs[i], &v), WEFT_OK);
        cr_assert_eq(v.u64, id);
        outside[i] = id;
    }
    /* Unique while all are held. */
    qsort(outside, ID_TASKS, sizeof(*outside), cmp_u64);
    for (int i = 1; i < ID_TASKS; i++) {
        cr_assert_neq(outside[i], outside[i - 1], "duplicate id %llu",
                      (unsigned long long)outside[i]);
    }
    for (int i = 0; i < ID_TASKS; i++) {
        cr_assert_eq(weft_future_release(fs[i]), WEFT_OK);
    }
    cr_assert_eq(weft_future_id(NULL), 0u);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    free(outside);
    free(fs);
    free(args);
    free(r);
}

/* Ids of tasks that ended and were recycled are not handed out again. */
Test(future, ids_stay_unique_across_recycled_objects)
{
    weft_executor_t *ex = make_ex(2);
    uint64_t *ids = calloc(ID_TASKS, sizeof(*ids));
    for (int i = 0; i < ID_TASKS; i++) {
        weft_future_t *f = NULL;
        cr_assert_eq(weft_spawn(ex, body_noop, NULL, &f), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        ids[i] = weft_future_id(f);
        cr_assert_neq(ids[i], 0u);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
    }
    qsort(ids, ID_TASKS, sizeof(*ids), cmp_u64);
    for (int i = 1; i < ID_TASKS; i++) {
        cr_assert_neq(ids[i], ids[i - 1]);
    }
    free(ids);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- task context ----------------------------------------------------- */

struct ctx_rec {
    weft_executor_t *ex;
    atomic_int ok;
};

static weft_status_t
body_ctx(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct ctx_rec *r = arg;
    (void)result;
    atomic_store(&r->ok, weft_task_executor(self) == r->ex &&
                             weft_task_antecedent(self) == NULL &&
                             weft_task_id(self) != 0);
    return WEFT_OK;
}

Test(future, task_context_accessors)
{
    weft_executor_t *ex = make_ex(1);
    struct ctx_rec r = {.ex = ex};
    atomic_store(&r.ok, 0);
    cr_assert_eq(weft_executor_run(ex, body_ctx, &r, NULL), WEFT_OK);
    cr_assert_eq(atomic_load(&r.ok), 1);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- names of outcomes ------------------------------------------------ */

Test(future, outcome_names)
{
    cr_assert_str_eq(weft_outcome_name(WEFT_OUTCOME_PENDING), "pending");
    cr_assert_str_eq(weft_outcome_name(WEFT_OUTCOME_SUCCEEDED), "succeeded");
    cr_assert_str_eq(weft_outcome_name(WEFT_OUTCOME_FAILED), "failed");
    cr_assert_str_eq(weft_outcome_name(WEFT_OUTCOME_CANCELLED), "cancelled");
    cr_assert_str_eq(weft_outcome_name((weft_outcome_t)4), "invalid");
    cr_assert_str_eq(weft_outcome_name((weft_outcome_t)-1), "invalid");
    cr_assert_str_eq(weft_outcome_name((weft_outcome_t)1000), "invalid");
}

/* ---- bad input -------------------------------------------------------- */

Test(future, null_arguments_return_documented_values)
{
    weft_executor_t *ex = make_ex(1);
    weft_value_t v = {.i64 = 1};
    weft_future_t *out = (weft_future_t *)(uintptr_t)1;

    cr_assert_eq(weft_spawn(NULL, body_noop, NULL, &out), WEFT_EINVAL);
    cr_assert_null(out);
    out = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_spawn(ex, NULL, NULL, &out), WEFT_EINVAL);
    cr_assert_null(out);
    cr_assert_eq(weft_spawn(ex, NULL, NULL, NULL), WEFT_EINVAL);
    out = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_spawn_ex(NULL, NULL, body_noop, NULL, &out), WEFT_EINVAL);
    cr_assert_null(out);
    out = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_spawn_ex(ex, NULL, NULL, NULL, &out), WEFT_EINVAL);
    cr_assert_null(out);

    cr_assert_eq(weft_future_wait(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_future_wait_until(NULL, 0), WEFT_EINVAL);
    cr_assert_eq(weft_future_wait_until(NULL, UINT64_MAX), WEFT_EINVAL);
    cr_assert_eq(weft_join(NULL, &v), WEFT_EINVAL);
    cr_assert_eq(weft_join(NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(v.i64, 1);
    cr_assert_not(weft_future_is_done(NULL));
    cr_assert_eq(weft_future_outcome(NULL), WEFT_OUTCOME_PENDING);
    cr_assert_eq(weft_future_status(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_future_value(NULL, &v), WEFT_EINVAL);
    cr_assert_eq(weft_future_retain(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_future_release(NULL), WEFT_EINVAL);
    cr_assert_null(weft_future_name(NULL));
    cr_assert_eq(weft_future_id(NULL), 0u);
    cr_assert_null(weft_future_error(NULL));
    out = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_future_then(NULL, body_noop, NULL, &out), WEFT_EINVAL);
    cr_assert_null(out);
    cr_assert_eq(weft_future_then(NULL, body_noop, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_run(NULL, body_noop, NULL, &v), WEFT_EINVAL);
    cr_assert_eq(weft_executor_run(ex, NULL, NULL, &v), WEFT_EINVAL);
    cr_assert_null(weft_task_executor(NULL));
    cr_assert_null(weft_task_antecedent(NULL));
    cr_assert_eq(weft_task_id(NULL), 0u);

    /* A valid future with NULL companions. */
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)4, &f),
                 WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_future_value(f, NULL), WEFT_EINVAL);
    out = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_future_then(f, NULL, NULL, &out), WEFT_EINVAL);
    cr_assert_null(out);
    cr_assert_eq(weft_join(f, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/*
 * Releasing more references than were taken is caught by an assertion in
 * debug builds (WEFT_DEBUG >= 1; the library uses WEFT__ASSERT, which does
 * not depend on NDEBUG). The library's WEFT_DEBUG is private to its
 * target, so this test is compiled only when the test itself is built
 * with WEFT_DEBUG >= 1 too.
 */
#if defined(WEFT_DEBUG) && WEFT_DEBUG >= 1
Test(future, release_twice_aborts, .signal = SIGABRT)
{
    weft_executor_t *ex = make_ex(1);
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_noop, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    weft_future_release(f); /* aborts */
}

Test(future, release_twice_of_a_pending_future_aborts, .signal = SIGABRT)
{
    weft_executor_t *ex = make_ex(1);
    static struct gate g;
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_gated, &g, &f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    weft_future_release(f); /* aborts: no reference is left */
}
#endif
