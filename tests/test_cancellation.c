/*
 * test_cancellation.c - executor-level cancellation and errors: tokens on
 * tasks, cancelled vs failed outcomes, errors with origin, shutdown
 * reasons, token-aware waits (weft_future_wait_for) and continuations of
 * cancelled tasks. The contract under test is the doc comments of
 * <weft/future.h>, <weft/cancel.h> and <weft/error.h>.
 *
 * No test depends on timing. Workers are held busy with tasks that spin
 * on an atomic flag; "the waiter is waiting" is learned from the token's
 * registration count (weft__token_registrations()), "shutdown has begun"
 * from the worker's cancelling flag, and the one scenario that needs a
 * pause at an exact point inside a wait uses a token on a test clock
 * whose read blocks until the test has acted. Deadlines are far in the
 * past or far in the future. Real time appears only in hang guards, which
 * turn a hang into a failure message instead of a Criterion timeout.
 *
 * Every test compares weft__alloc_live() (errors, tokens, registrations)
 * before and after, with every executor destroyed, so a leaked reason or
 * token reference fails the test.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <weft/cancel.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/status.h>

#include "executor/executor.h"
#include "executor/future.h"
#include "primitives/alloc.h"
#include "primitives/cancel.h"
#include "primitives/clock.h"

TestSuite(cancellation, .timeout = 30.0);

/* ---- leak check, executors, tokens, errors ---------------------------- */

static int64_t live_at_start;

static void
leak_check_begin(void)
{
    live_at_start = weft__alloc_live();
}

static void
leak_check_end(void)
{
    int64_t now = weft__alloc_live();
    cr_assert_eq(now, live_at_start,
                 "leaked %lld primitive blocks (errors, tokens, "
                 "registrations)",
                 (long long)(now - live_at_start));
}

static weft_executor_t *
ex_new(unsigned int nworkers)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = nworkers;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    return ex;
}

static void
ex_end(weft_executor_t *ex)
{
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK,
                 "destroy: a future is still held");
}

static weft_token_t *
tok_new(void)
{
    weft_token_t *t = NULL;
    cr_assert_eq(weft_token_create(NULL, &t), WEFT_OK);
    return t;
}

static weft_token_t *
tok_child(weft_token_t *parent)
{
    weft_token_t *t = NULL;
    cr_assert_eq(weft_token_create(parent, &t), WEFT_OK);
    return t;
}

static weft_error_t *
err_new(int code, const char *msg)
{
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_create(&e, code, "%s", msg), WEFT_OK);
    return e;
}

/* A deadline far in the future (an hour from now). */
static uint64_t
far_future(void)
{
    return weft_clock_now_ns() + 3600ull * 1000000000ull;
}

/* A deadline far in the past (1 ns after the clock's origin). */
#define FAR_PAST 1ull

static const unsigned int worker_counts[] = {1, 2};
#define FOR_EACH_WORKER_COUNT(n)                                               \
    for (size_t n##_i = 0;                                                     \
         n##_i < sizeof(worker_counts) / sizeof(worker_counts[0]); n##_i++)    \
        for (unsigned int n = worker_counts[n##_i], n##_once = 1; n##_once;    \
             n##_once = 0)

static void
spin_until(atomic_uint *p, unsigned int v)
{
    while (atomic_load_explicit(p, memory_order_acquire) < v) {
        sched_yield();
    }
}

static uint64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- probes: task bodies that record what happened --------------------- */

struct probe {
    atomic_uint ran;           /* body entries */
    atomic_uint released;      /* release hook calls */
    atomic_uint started;       /* blocking bodies: 1 once inside */
    atomic_uint go;            /* blocking bodies: return when set */
    atomic_uint saw_cancel;    /* polling bodies: saw the token cancelled */
    int after_cancel;          /* polling bodies: status to return then
                               (0: WEFT_ECANCELED) */
    uint64_t task_id;          /* weft_task_id(self), seen inside */
    weft_token_t *token_seen;  /* weft_task_token(self), seen inside */
    weft_future_t *antecedent; /* weft_task_antecedent(self) */
    weft_outcome_t ante_outcome;
    weft_status_t ante_status;
    weft_error_t *ante_error; /* borrowed; compared by pointer only */
};

static void
probe_release(void *arg)
{
    atomic_fetch_add(&((struct probe *)arg)->released, 1);
}

static void
probe_enter(weft_task_t *self, struct probe *p)
{
    atomic_fetch_add(&p->ran, 1);
    p->task_id = weft_task_id(self);
    p->token_seen = weft_task_token(self);
}

/* Succeeds with 42. */
static weft_status_t
body_ok(weft_task_t *self, void *arg, weft_value_t *result)
{
    probe_enter(self, arg);
    result->i64 = 42;
    return WEFT_OK;
}

/* Spins until go, then succeeds with 7. Ignores cancellation. */
static weft_status_t
body_block(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct probe *p = arg;
    probe_enter(self, p);
    atomic_store_explicit(&p->started, 1, memory_order_release);
    while (atomic_load_explicit(&p->go, memory_order_acquire) == 0) {
        sched_yield();
    }
    result->i64 = 7;
    return WEFT_OK;
}

/*
 * Spins until its token is cancelled (then returns after_cancel, or
 * WEFT_ECANCELED) or until go (then succeeds with 9).
 */
static weft_status_t
body_poll(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct probe *p = arg;
    probe_enter(self, p);
    atomic_store_explicit(&p->started, 1, memory_order_release);
    for (;;) {
        if (weft_task_is_cancelled(self)) {
            atomic_store(&p->saw_cancel, 1);
            return p->after_cancel != 0 ? (weft_status_t)p->after_cancel
                                        : WEFT_ECANCELED;
        }
        if (atomic_load_explicit(&p->go, memory_order_acquire) != 0) {
            result->i64 = 9;
            return WEFT_OK;
        }
        sched_yield();
    }
}

static weft_future_t *
spawn_probe(weft_executor_t *ex, weft_fn_t fn, struct probe *p,
            weft_token_t *tok, const char *name)
{
    weft_spawn_opts_t o = {
        .release = probe_release, .name = name, .token = tok};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, fn, p, &f), WEFT_OK);
    cr_assert_not_null(f);
    return f;
}

/* ---- blockers: occupy every worker ------------------------------------ */

struct blockers {
    atomic_uint started;
    atomic_uint go;
    unsigned int n;
    weft_future_t *f[2];
    /* Optionally, the first blocker to start spawns `inner` from inside
     * (onto its own deque) before reporting started, and waits for it
     * after go. */
    atomic_uint claim;
    weft_fn_t inner_fn;
    struct probe *inner_probe;
    weft_token_t *inner_token;
    _Atomic(weft_future_t *) inner;
    atomic_uint inner_ready;
    weft_status_t inner_spawn_status;
    weft_status_t inner_wait_status;
    /* Optionally wait for shutdown(CANCEL) instead of go. */
    int until_cancelling;
};

static weft_status_t
body_blocker(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct blockers *b = arg;
    weft_future_t *inner = NULL;
    bool mine = b->inner_fn != NULL && atomic_fetch_add(&b->claim, 1) == 0;
    atomic_fetch_add_explicit(&b->started, 1, memory_order_release);
    if (mine && !b->until_cancelling) {
        /* Only once every worker is held, so nobody can steal it. */
        spin_until(&b->started, b->n);
        weft_spawn_opts_t o = {
            .release = probe_release, .name = "inner", .token = b->inner_token};
        b->inner_spawn_status = weft_spawn_ex(
            weft_task_executor(self), &o, b->inner_fn, b->inner_probe, &inner);
        atomic_store_explicit(&b->inner, inner, memory_order_release);
        atomic_store_explicit(&b->inner_ready, 1, memory_order_release);
    }
    if (b->until_cancelling) {
        /* White-box: shutdown(CANCEL) has reached this worker. */
        while (!weft__worker_cancelling(weft__tls_worker)) {
            sched_yield();
        }
        if (mine) {
            /* A child spawned while the executor cancels. */
            weft_spawn_opts_t o = {.release = probe_release,
                                   .name = "late-child"};
            b->inner_spawn_status =
                weft_spawn_ex(weft_task_executor(self), &o, b->inner_fn,
                              b->inner_probe, &inner);
            atomic_store_explicit(&b->inner, inner, memory_order_release);
        }
    } else {
        while (atomic_load_explicit(&b->go, memory_order_acquire) == 0) {
            sched_yield();
        }
    }
    if (inner != NULL) {
        b->inner_wait_status = weft_future_wait(inner);
    }
    return WEFT_OK;
}

/* Start one blocker per worker and wait until all of them run. */
static void
block_workers(weft_executor_t *ex, struct blockers *b, unsigned int n)
{
    b->n = n;
    for (unsigned int i = 0; i < n; i++) {
        cr_assert_eq(weft_spawn(ex, body_blocker, b, &b->f[i]), WEFT_OK);
    }
    spin_until(&b->started, n);
    if (b->inner_fn != NULL && !b->until_cancelling) {
        spin_until(&b->inner_ready, 1);
    }
}

static void
unblock_workers(struct blockers *b)
{
    atomic_store_explicit(&b->go, 1, memory_order_release);
    for (unsigned int i = 0; i < b->n; i++) {
        cr_assert_eq(weft_future_wait(b->f[i]), WEFT_OK);
        cr_assert_eq(weft_future_release(b->f[i]), WEFT_OK);
    }
}

/* Checks shared by every "cancelled before it started" scenario. */
static void
assert_cancelled_unrun(weft_future_t *f, struct probe *p,
                       const weft_error_t *reason)
{
    cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
    cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED, "got %s",
                 weft_outcome_name(weft_future_outcome(f)));
    cr_assert_eq(weft_future_status(f), WEFT_ECANCELED);
    weft_value_t v = {.i64 = -1};
    cr_assert_eq(weft_future_value(f, &v), WEFT_ECANCELED);
    cr_assert_eq(v.i64, -1, "value must not be set for a cancelled task");
    cr_assert_eq(atomic_load(&p->ran), 0, "the body ran");
    cr_assert_eq(atomic_load(&p->released), 1, "release hook ran %u times",
                 atomic_load(&p->released));
    weft_error_t *e = weft_future_error(f);
    cr_assert_not_null(e, "a cancelled future carries its reason");
    if (reason != NULL) {
        cr_assert(e == reason ||
                      (weft_error_status(e) == weft_error_status(reason) &&
                       strcmp(weft_error_message(e),
                              weft_error_message(reason)) == 0),
                  "reason: got code %d '%s', want code %d '%s'",
                  weft_error_status(e), weft_error_message(e),
                  weft_error_status(reason), weft_error_message(reason));
    }
}

/* ---- cancelled before start ------------------------------------------- */

struct inside_spawn {
    weft_token_t *tok;
    struct probe *p;
    int use_join;
    weft_status_t spawn_st;
    weft_status_t wait_st;
    weft_outcome_t outcome;
    weft_error_t *error; /* compared by pointer; the future is gone */
    int error_code;
};

static weft_status_t
body_spawn_cancelled_inside(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct inside_spawn *s = arg;
    weft_spawn_opts_t o = {
        .release = probe_release, .name = "doomed-inner", .token = s->tok};
    weft_future_t *f = NULL;
    s->spawn_st =
        weft_spawn_ex(weft_task_executor(self), &o, body_ok, s->p, &f);
    if (s->spawn_st != WEFT_OK) {
        return WEFT_OK;
    }
    if (s->use_join) {
        s->wait_st = weft_join(f, NULL);
        return WEFT_OK;
    }
    s->wait_st = weft_future_wait(f);
    s->outcome = weft_future_outcome(f);
    s->error = weft_future_error(f);
    s->error_code = weft_error_status(s->error);
    (void)weft_future_release(f);
    return WEFT_OK;
}

Test(cancellation, task_cancelled_before_start_never_runs)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        weft_token_t *tok = tok_new();
        weft_error_t *reason = err_new(WEFT_EUSER + 1, "operator said stop");
        cr_assert_eq(weft_token_cancel(tok, reason), WEFT_OK);

        /* From outside: through the injection queue. */
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_ok, &p, tok, "doomed");
        assert_cancelled_unrun(f, &p, reason);
        cr_assert_eq(weft_future_error(f), reason,
                     "the reason is the token's own error object");
        cr_assert_eq(weft_future_release(f), WEFT_OK);

        /* From a worker: own deque, awaited (and run inline or stolen). */
        struct probe q = {0};
        struct inside_spawn s = {.tok = tok, .p = &q};
        cr_assert_eq(
            weft_executor_run(ex, body_spawn_cancelled_inside, &s, NULL),
            WEFT_OK);
        cr_assert_eq(s.spawn_st, WEFT_OK);
        cr_assert_eq(s.wait_st, WEFT_ECANCELED);
        cr_assert_eq(s.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert_eq(s.error, reason);
        cr_assert_eq(atomic_load(&q.ran), 0, "[%u workers] body ran", n);
        cr_assert_eq(atomic_load(&q.released), 1);

        /* From a worker through weft_join. */
        struct probe r = {0};
        struct inside_spawn sj = {.tok = tok, .p = &r, .use_join = 1};
        cr_assert_eq(
            weft_executor_run(ex, body_spawn_cancelled_inside, &sj, NULL),
            WEFT_OK);
        cr_assert_eq(sj.wait_st, WEFT_ECANCELED);
        cr_assert_eq(atomic_load(&r.ran), 0);
        cr_assert_eq(atomic_load(&r.released), 1);

        weft_error_release(reason);
        weft_token_release(tok);
        ex_end(ex);
    }
    leak_check_end();
}

/* ---- cancelled while queued ------------------------------------------- */

Test(cancellation, task_cancelled_while_queued_never_runs)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);

        /* Queued in the injection queue behind busy workers. */
        {
            struct blockers b = {0};
            block_workers(ex, &b, n);
            weft_token_t *tok = tok_new();
            struct probe p = {0};
            weft_future_t *f = spawn_probe(ex, body_ok, &p, tok, "queued");
            weft_error_t *reason = err_new(WEFT_EUSER, "changed my mind");
            cr_assert_eq(weft_token_cancel(tok, reason), WEFT_OK);
            unblock_workers(&b);
            assert_cancelled_unrun(f, &p, reason);
            cr_assert_eq(weft_future_error(f), reason);
            cr_assert_eq(weft_future_release(f), WEFT_OK);
            weft_error_release(reason);
            weft_token_release(tok);
        }

        /* Queued in a busy worker's own deque, then awaited by it. */
        {
            struct probe p = {0};
            weft_token_t *tok = tok_new();
            struct blockers b = {
                .inner_fn = body_ok, .inner_probe = &p, .inner_token = tok};
            block_workers(ex, &b, n);
            weft_future_t *f = atomic_load(&b.inner);
            cr_assert_eq(b.inner_spawn_status, WEFT_OK);
            cr_assert_not_null(f);
            cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
            cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
            unblock_workers(&b);
            cr_assert_eq(b.inner_wait_status, WEFT_ECANCELED);
            assert_cancelled_unrun(f, &p, NULL);
            cr_assert_eq(weft_error_status(weft_future_error(f)),
                         WEFT_ECANCELED, "generic reason: code %d",
                         weft_error_status(weft_future_error(f)));
            cr_assert_eq(weft_future_release(f), WEFT_OK);
            weft_token_release(tok);
        }
        ex_end(ex);
    }
    leak_check_end();
}

/* ---- cancelled through its future, then joined by its spawner ---------- */

struct cancel_join {
    struct probe p;
    weft_error_t *reason;
    weft_status_t cancel_st, join_st;
    int64_t value;
};

/* Spawn a plain task (no token, no options) and, before anything can run
 * it, cancel it through its only handle and join it: the join's inline
 * path must see the request. */
static weft_status_t
body_cancel_then_join(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct cancel_join *cj = arg;
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(weft_task_executor(self), body_ok, &cj->p, &f),
                 WEFT_OK);
    cj->cancel_st = weft_future_cancel(f, cj->reason);
    weft_value_t v = {.i64 = -1};
    cj->join_st = weft_join(f, &v); /* consumes the handle */
    cj->value = v.i64;
    return WEFT_OK;
}

Test(cancellation, task_cancelled_through_its_future_then_joined_never_runs)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        for (int i = 0; i < 50; i++) {
            struct cancel_join cj = {0};
            cj.reason = err_new(WEFT_EUSER, "not needed");
            cr_assert_eq(
                weft_executor_run(ex, body_cancel_then_join, &cj, NULL),
                WEFT_OK);
            /* A thief may have started it first (2+ workers): then it ran
             * and succeeded; otherwise it must not have run at all. */
            if (atomic_load(&cj.p.ran) == 0) {
                cr_assert_eq(cj.cancel_st, WEFT_OK);
                cr_assert_eq(cj.join_st, WEFT_ECANCELED);
                cr_assert_eq(cj.value, -1, "value written on cancel");
            } else {
                cr_assert_neq(n, 1, "ran after its cancel on 1 worker");
                cr_assert_eq(atomic_load(&cj.p.ran), 1);
            }
            weft_error_release(cj.reason);
        }
        ex_end(ex);
    }
    leak_check_end();
}

/* ---- observed cancellation -------------------------------------------- */

Test(cancellation, task_observing_cancellation_ends_cancelled_not_failed)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        weft_token_t *tok = tok_new();
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_poll, &p, tok, "poller");
        spin_until(&p.started, 1);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
        weft_error_t *reason = err_new(WEFT_EUSER + 2, "user pressed stop");
        cr_assert_eq(weft_token_cancel(tok, reason), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED,
                     "[%u workers] got %s", n,
                     weft_outcome_name(weft_future_outcome(f)));
        cr_assert_eq(weft_future_status(f), WEFT_ECANCELED);
        cr_assert_eq(atomic_load(&p.ran), 1);
        cr_assert_eq(atomic_load(&p.saw_cancel), 1);
        cr_assert_eq(atomic_load(&p.released), 1);
        /* The task's own token is a child of its spawn token: cancelled
         * with it (alive until f is released). */
        cr_assert_not_null(p.token_seen);
        cr_assert_neq(p.token_seen, tok);
        cr_assert(weft_token_is_cancelled(p.token_seen),
                  "the task token follows its spawn token");
        cr_assert_eq(weft_future_error(f), reason,
                     "reason of an observed cancellation: the token's");
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_error_release(reason);
        weft_token_release(tok);

        /* A generic cancellation (no reason given): code WEFT_ECANCELED. */
        tok = tok_new();
        struct probe q = {0};
        f = spawn_probe(ex, body_poll, &q, tok, "poller2");
        spin_until(&q.started, 1);
        cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED);
        cr_assert_eq(weft_error_status(weft_future_error(f)), WEFT_ECANCELED);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(tok);
        ex_end(ex);
    }
    leak_check_end();
}

Test(cancellation, task_returning_error_after_cancel_ends_failed)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        weft_token_t *tok = tok_new();
        struct probe p = {.after_cancel = WEFT_EUSER};
        weft_future_t *f = spawn_probe(ex, body_poll, &p, tok, "stubborn");
        spin_until(&p.started, 1);
        weft_error_t *reason = err_new(WEFT_EUSER + 9, "stop");
        cr_assert_eq(weft_token_cancel(tok, reason), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_EUSER);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_FAILED,
                     "[%u workers] got %s", n,
                     weft_outcome_name(weft_future_outcome(f)));
        cr_assert_eq(weft_future_status(f), WEFT_EUSER);
        cr_assert_eq(atomic_load(&p.saw_cancel), 1);
        weft_error_t *e = weft_future_error(f);
        cr_assert_not_null(e);
        cr_assert_neq(e, reason, "a failure is not reported as the reason");
        cr_assert_eq(weft_error_status(e), WEFT_EUSER);
        cr_assert_eq(weft_error_task_id(e), weft_future_id(f));
        cr_assert_str_eq(weft_error_task_name(e), "stubborn");
        cr_assert_eq(atomic_load(&p.released), 1);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_error_release(reason);
        weft_token_release(tok);
        ex_end(ex);
    }
    leak_check_end();
}

/* ---- errors with origin ------------------------------------------------ */

struct failer {
    int code;
    int first_code;    /* nonzero: record this failure first */
    weft_status_t ret; /* what weft_task_fail returned */
    uint64_t task_id;
};

static weft_status_t
body_fail(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct failer *fl = arg;
    fl->task_id = weft_task_id(self);
    if (fl->first_code != 0) {
        (void)weft_task_fail(self, fl->first_code, "first try %d", 1);
    }
    fl->ret = weft_task_fail(self, fl->code, "record %d not found", 3);
    return fl->ret;
}

/* Spawned from inside a worker with a spawn site; future handed out. */
struct site_spawn {
    struct failer fl;
    weft_future_t *f;
    int line;
    const char *func;
    weft_status_t st;
};

static weft_status_t
body_spawn_failer_inside(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct site_spawn *s = arg;
    s->func = __func__;
    s->line = __LINE__ + 1; /* the line of the next statement */
    weft_spawn_opts_t o = {.name = "fetch-inner", WEFT_SPAWN_SITE};
    s->st =
        weft_spawn_ex(weft_task_executor(self), &o, body_fail, &s->fl, &s->f);
    if (s->st == WEFT_OK) {
        (void)weft_future_wait(s->f);
    }
    return WEFT_OK;
}

static void
assert_origin(const weft_error_t *e, weft_future_t *f, const char *name,
              const char *file, int line, const char *func)
{
    cr_assert_not_null(e);
    cr_assert_str_eq(weft_error_task_name(e), name);
    cr_assert_eq(weft_error_task_id(e), weft_future_id(f),
                 "error task id %llu, future id %llu",
                 (unsigned long long)weft_error_task_id(e),
                 (unsigned long long)weft_future_id(f));
    cr_assert_neq(weft_error_task_id(e), 0);
    cr_assert_not_null(weft_error_file(e));
    cr_assert_str_eq(weft_error_file(e), file);
    cr_assert_eq(weft_error_line(e), line);
    cr_assert_str_eq(weft_error_func(e), func);
}

Test(cancellation, failed_task_error_carries_origin)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct failer fl = {.code = WEFT_EUSER};
        weft_future_t *f = NULL;
        const int line = __LINE__ + 1; /* the line of the next statement */
        weft_spawn_opts_t o = {.name = "fetch", WEFT_SPAWN_SITE};
        cr_assert_eq(weft_spawn_ex(ex, &o, body_fail, &fl, &f), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_EUSER);
        cr_assert_eq(fl.ret, WEFT_EUSER, "weft_task_fail returns its code");
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_FAILED);
        cr_assert_eq(weft_future_status(f), WEFT_EUSER);
        weft_error_t *e = weft_future_error(f);
        cr_assert_eq(weft_error_status(e), WEFT_EUSER);
        cr_assert_str_eq(weft_error_message(e), "record 3 not found");
        assert_origin(e, f, "fetch", __FILE__, line, __func__);
        cr_assert_eq(weft_error_task_id(e), fl.task_id,
                     "the id seen inside the task");
        cr_assert_null(weft_error_cause(e));

        char want[512];
        int wl = snprintf(want, sizeof want,
                          "WEFT_EUSER: record 3 not found [task fetch#%llu at "
                          "%s:%d (%s)]",
                          (unsigned long long)weft_future_id(f), __FILE__, line,
                          __func__);
        cr_assert(wl > 0 && (size_t)wl < sizeof want);
        char got[512];
        size_t gl = weft_error_format(e, got, sizeof got);
        cr_assert_str_eq(got, want);
        cr_assert_eq(gl, strlen(want));
        cr_assert_eq(weft_future_release(f), WEFT_OK);

        /* A later weft_task_fail replaces an earlier one (no leak). */
        struct failer f2 = {.code = WEFT_EUSER + 2,
                            .first_code = WEFT_EUSER + 1};
        f = NULL;
        cr_assert_eq(weft_spawn_ex(ex, &o, body_fail, &f2, &f), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_EUSER + 2);
        cr_assert_eq(weft_error_status(weft_future_error(f)), WEFT_EUSER + 2);
        cr_assert_str_eq(weft_error_message(weft_future_error(f)),
                         "record 3 not found");
        cr_assert_eq(weft_future_release(f), WEFT_OK);

        /* Spawned from a worker (deque path), site of that spawn. */
        struct site_spawn s = {.fl = {.code = WEFT_ENOTFOUND}};
        cr_assert_eq(weft_executor_run(ex, body_spawn_failer_inside, &s, NULL),
                     WEFT_OK);
        cr_assert_eq(s.st, WEFT_OK);
        cr_assert_eq(weft_future_status(s.f), WEFT_ENOTFOUND);
        cr_assert_eq(weft_future_outcome(s.f), WEFT_OUTCOME_FAILED);
        e = weft_future_error(s.f);
        cr_assert_eq(weft_error_status(e), WEFT_ENOTFOUND);
        assert_origin(e, s.f, "fetch-inner", __FILE__, s.line, s.func);
        gl = weft_error_format(e, got, sizeof got);
        cr_assert(strncmp(got,
                          "WEFT_ENOTFOUND: record 3 not found [task "
                          "fetch-inner#",
                          strlen("WEFT_ENOTFOUND: record 3 not found [task "
                                 "fetch-inner#")) == 0,
                  "format: %s", got);
        cr_assert_eq(gl, strlen(got));
        cr_assert_eq(weft_future_release(s.f), WEFT_OK);
        ex_end(ex);
    }
    leak_check_end();
}

static weft_status_t
body_return_code(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    return (weft_status_t)(intptr_t)arg;
}

Test(cancellation, bare_failure_status_gets_error_with_origin)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        const int code = WEFT_EUSER + 3;
        weft_future_t *f = NULL;
        const int line = __LINE__ + 1; /* the line of the next statement */
        weft_spawn_opts_t o = {.name = "bare", WEFT_SPAWN_SITE};
        cr_assert_eq(
            weft_spawn_ex(ex, &o, body_return_code, (void *)(intptr_t)code, &f),
            WEFT_OK);
        cr_assert_eq(weft_future_wait(f), code);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_FAILED);
        weft_error_t *e = weft_future_error(f);
        cr_assert_not_null(e, "a bare failure status still gets an error");
        cr_assert_eq(weft_error_status(e), code);
        cr_assert(strcmp(weft_error_message(e), "") == 0 ||
                      strcmp(weft_error_message(e), weft_status_str(code)) == 0,
                  "message: '%s'", weft_error_message(e));
        assert_origin(e, f, "bare", __FILE__, line, __func__);
        char got[512];
        (void)weft_error_format(e, got, sizeof got);
        cr_assert(strncmp(got, "WEFT_UNKNOWN(67): ", 18) == 0, "format: %s",
                  got);
        char tail[256];
        snprintf(tail, sizeof tail, "[task bare#%llu at %s:%d (%s)]",
                 (unsigned long long)weft_future_id(f), __FILE__, line,
                 __func__);
        cr_assert_not_null(strstr(got, tail), "format: %s\nwant: %s", got,
                           tail);
        cr_assert_eq(weft_future_release(f), WEFT_OK);

        /* No options at all: the id is still recorded, nothing else. */
        f = NULL;
        cr_assert_eq(weft_spawn(ex, body_return_code,
                                (void *)(intptr_t)WEFT_EFAILED, &f),
                     WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_EFAILED);
        e = weft_future_error(f);
        cr_assert_not_null(e);
        cr_assert_eq(weft_error_status(e), WEFT_EFAILED);
        cr_assert_eq(weft_error_task_id(e), weft_future_id(f));
        cr_assert_null(weft_error_task_name(e));
        cr_assert_null(weft_error_file(e));
        cr_assert_eq(weft_error_line(e), 0);
        cr_assert_null(weft_error_func(e));
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        ex_end(ex);
    }
    leak_check_end();
}

struct fail_with_arg {
    weft_error_t *shared; /* non-NULL: fail with this (own reference) */
    weft_status_t ret;
};

static weft_status_t
body_fail_with(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct fail_with_arg *a = arg;
    if (a->shared != NULL) {
        a->ret = weft_task_fail_with(self, a->shared);
        weft_error_release(a->shared); /* the reference it was handed */
        return a->ret;
    }
    weft_error_t *cause = NULL;
    weft_error_t *err = NULL;
    if (weft_error_create(&cause, WEFT_EUSER + 1, "disk %s", "full") !=
        WEFT_OK) {
        return WEFT_ENOMEM;
    }
    (void)weft_error_wrap(&err, cause, WEFT_EUSER + 2, "save %s", "failed");
    weft_error_release(cause);
    a->ret = weft_task_fail_with(self, err);
    weft_error_release(err);
    return a->ret;
}

Test(cancellation, task_fail_with_keeps_cause)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct fail_with_arg a = {0};
        weft_future_t *f = NULL;
        const int line = __LINE__ + 1; /* the line of the next statement */
        weft_spawn_opts_t o = {.name = "saver", WEFT_SPAWN_SITE};
        cr_assert_eq(weft_spawn_ex(ex, &o, body_fail_with, &a, &f), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_EUSER + 2);
        cr_assert_eq(a.ret, WEFT_EUSER + 2,
                     "weft_task_fail_with returns the error's code");
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_FAILED);
        weft_error_t *e = weft_future_error(f);
        cr_assert_eq(weft_error_status(e), WEFT_EUSER + 2);
        cr_assert_str_eq(weft_error_message(e), "save failed");
        weft_error_t *cause = weft_error_cause(e);
        cr_assert_not_null(cause, "the cause is kept");
        cr_assert_eq(weft_error_status(cause), WEFT_EUSER + 1);
        cr_assert_str_eq(weft_error_message(cause), "disk full");
        /* Recorded as is: weft_task_fail_with never writes an origin
         * (the error may be borrowed from another future). */
        cr_assert_null(weft_error_task_name(e));
        (void)line;
        char got[512];
        (void)weft_error_format(e, got, sizeof got);
        cr_assert_not_null(strstr(got, " caused by: WEFT_UNKNOWN(65): disk "
                                       "full"),
                           "format: %s", got);
        cr_assert_eq(weft_future_release(f), WEFT_OK);

        /* A shared error is attached as is (same object, origin not
         * written, since other holders may be reading it). */
        weft_error_t *shared = err_new(WEFT_EUSER + 4, "shared failure");
        weft_error_retain(shared); /* the task's copy */
        struct fail_with_arg b = {.shared = shared};
        f = NULL;
        cr_assert_eq(weft_spawn_ex(ex, &o, body_fail_with, &b, &f), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_EUSER + 4);
        cr_assert_eq(weft_future_error(f), shared);
        cr_assert_null(weft_error_task_name(shared));
        cr_assert_eq(weft_error_task_id(shared), 0);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_error_release(shared);
        ex_end(ex);
    }
    leak_check_end();
}

/*
 * Propagating a child's failure: the parent passes the child future's
 * error (borrowed from weft_future_error(); the parent holds no reference
 * of its own to it) to weft_task_fail_with(). The error was made by the
 * child and is shared by the child's future, so its origin must stay the
 * child's: weft_future_error(child) describes the producing task, and an
 * error is read-only once shared (<weft/error.h>).
 */
struct propagate {
    weft_future_t *child;
    struct failer fl;
    weft_status_t ret;
};

static weft_status_t
body_propagate(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct propagate *pr = arg;
    weft_spawn_opts_t o = {.name = "child", WEFT_SPAWN_SITE};
    if (weft_spawn_ex(weft_task_executor(self), &o, body_fail, &pr->fl,
                      &pr->child) != WEFT_OK) {
        return WEFT_EFAILED;
    }
    (void)weft_future_wait(pr->child);
    pr->ret = weft_task_fail_with(self, weft_future_error(pr->child));
    return pr->ret;
}

Test(cancellation, task_fail_with_propagated_error_keeps_child_origin)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct propagate pr = {.fl = {.code = WEFT_EUSER + 5}};
        weft_future_t *parent = NULL;
        weft_spawn_opts_t o = {.name = "parent", WEFT_SPAWN_SITE};
        cr_assert_eq(weft_spawn_ex(ex, &o, body_propagate, &pr, &parent),
                     WEFT_OK);
        cr_assert_eq(weft_future_wait(parent), WEFT_EUSER + 5);
        cr_assert_eq(pr.ret, WEFT_EUSER + 5);
        weft_error_t *ce = weft_future_error(pr.child);
        weft_error_t *pe = weft_future_error(parent);
        cr_assert_not_null(ce);
        cr_assert_not_null(pe);
        cr_assert_eq(weft_error_status(pe), WEFT_EUSER + 5);
        const char *cname = weft_error_task_name(ce);
        uint64_t cid = weft_error_task_id(ce);
        uint64_t child_id = weft_future_id(pr.child);
        uint64_t parent_id = weft_future_id(parent);
        cr_expect(cname != NULL && strcmp(cname, "child") == 0 &&
                      cid == child_id,
                  "[%u workers] weft_future_error(child) now names task "
                  "'%s'#%llu (child is #%llu, parent #%llu): "
                  "weft_task_fail_with() stamped the parent's origin on an "
                  "error it only borrowed from the child's future",
                  n, cname != NULL ? cname : "(null)", (unsigned long long)cid,
                  (unsigned long long)child_id, (unsigned long long)parent_id);
        const char *pname = weft_error_task_name(pe);
        cr_expect(pname != NULL && strcmp(pname, "child") == 0,
                  "the propagated error keeps its producer; got '%s'",
                  pname != NULL ? pname : "(null)");
        cr_assert_eq(weft_future_release(pr.child), WEFT_OK);
        cr_assert_eq(weft_future_release(parent), WEFT_OK);
        ex_end(ex);
    }
    leak_check_end();
}

struct reject {
    weft_status_t r_ok, r_canceled, r_with_canceled, r_with_null;
    int then_return;
};

static weft_status_t
body_reject(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct reject *r = arg;
    r->r_ok = weft_task_fail(self, WEFT_OK, "not a failure %d", 0);
    r->r_canceled = weft_task_fail(self, WEFT_ECANCELED, "not a failure %d", 4);
    weft_error_t *ce = NULL;
    if (weft_error_create(&ce, WEFT_ECANCELED, "cancelled %s", "error") ==
        WEFT_OK) {
        r->r_with_canceled = weft_task_fail_with(self, ce);
        weft_error_release(ce);
    }
    r->r_with_null = weft_task_fail_with(self, NULL);
    return (weft_status_t)r->then_return;
}

Test(cancellation, task_fail_rejects_ok_and_canceled)
{
    leak_check_begin();
    weft_executor_t *ex = ex_new(1);
    struct reject r = {.then_return = WEFT_OK};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_reject, &r, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(r.r_ok, WEFT_EINVAL);
    cr_assert_eq(r.r_canceled, WEFT_EINVAL);
    cr_assert_eq(r.r_with_canceled, WEFT_EINVAL);
    cr_assert_eq(r.r_with_null, WEFT_EINVAL);
    cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
    cr_assert_null(weft_future_error(f), "nothing was recorded");
    cr_assert_eq(weft_future_release(f), WEFT_OK);

    /* Nothing recorded: a later bare failure gets its own error. */
    struct reject r2 = {.then_return = WEFT_EUSER + 1};
    f = NULL;
    cr_assert_eq(weft_spawn(ex, body_reject, &r2, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_EUSER + 1);
    weft_error_t *e = weft_future_error(f);
    cr_assert_eq(weft_error_status(e), WEFT_EUSER + 1);
    cr_assert_null(strstr(weft_error_message(e), "not a failure"),
                   "a rejected weft_task_fail recorded '%s'",
                   weft_error_message(e));
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    leak_check_end();
}

/*
 * A body that recorded a failure with weft_task_fail() (say, for a step it
 * then retried) and later ends WEFT_ECANCELED after seeing its token has
 * been cancelled, not failed: its error must be the cancellation reason,
 * not the stale failure ("Cancelled is never reported as failed";
 * weft_future_error: "for CANCELLED, the reason").
 */
static weft_status_t
body_fail_then_poll(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)weft_task_fail(self, WEFT_EUSER + 6, "step %d failed, retrying", 1);
    return body_poll(self, arg, result);
}

Test(cancellation, cancelled_task_reports_reason_not_earlier_failure)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        weft_token_t *tok = tok_new();
        struct probe p = {0};
        weft_future_t *f =
            spawn_probe(ex, body_fail_then_poll, &p, tok, "retrier");
        spin_until(&p.started, 1);
        weft_error_t *reason = err_new(WEFT_EUSER + 2, "user pressed stop");
        cr_assert_eq(weft_token_cancel(tok, reason), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED);
        weft_error_t *e = weft_future_error(f);
        cr_expect_eq(e, reason,
                     "[%u workers] CANCELLED future (status WEFT_ECANCELED) "
                     "reports error code %d '%s', the failure recorded "
                     "before the body saw the cancellation, instead of the "
                     "token's reason (future_finish_error keeps any "
                     "recorded f->error when the status is WEFT_ECANCELED)",
                     n, weft_error_status(e),
                     e != NULL ? weft_error_message(e) : "(null)");
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_error_release(reason);
        weft_token_release(tok);
        ex_end(ex);
    }
    leak_check_end();
}

/*
 * "A failed future carries an error value": also when the body's failure
 * status is not a positive code (a C habit: return -1), and when
 * weft_task_fail() is given such a code after an earlier failure was
 * recorded.
 */
static weft_status_t
body_fail_then_negative(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)arg;
    (void)result;
    (void)weft_task_fail(self, WEFT_EUSER, "first %s", "failure");
    return weft_task_fail(self, -5, "negative %d", -5);
}

Test(cancellation, failure_with_status_below_zero_still_carries_an_error)
{
    leak_check_begin();
    weft_executor_t *ex = ex_new(1);
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, body_return_code, (void *)(intptr_t)-1, &f),
                 WEFT_OK);
    cr_assert_eq(weft_future_wait(f), (weft_status_t)-1);
    cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_FAILED);
    cr_expect_not_null(weft_future_error(f),
                       "a body that returned -1 ended FAILED with no error "
                       "(future_finish_error: weft_error_create rejects "
                       "codes <= 0, and f->error stays NULL)");
    cr_assert_eq(weft_future_release(f), WEFT_OK);

    f = NULL;
    cr_assert_eq(weft_spawn(ex, body_fail_then_negative, NULL, &f), WEFT_OK);
    weft_status_t st = weft_future_wait(f);
    cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_FAILED, "status %d",
                 (int)st);
    cr_expect_not_null(weft_future_error(f),
                       "weft_task_fail(self, -5, ...) returned %d and "
                       "replaced the recorded error with nothing "
                       "(task_record_error(f, NULL) after "
                       "weft_error_createv failed with WEFT_EINVAL)",
                       (int)st);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    leak_check_end();
}

/* ---- no error for success or pending ----------------------------------- */

static weft_status_t
body_fail_then_succeed(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)arg;
    (void)weft_task_fail(self, WEFT_EUSER, "transient %d", 1);
    result->i64 = 5;
    return WEFT_OK;
}

Test(cancellation, succeeded_future_has_no_error)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct probe p = {0};
        weft_token_t *tok = tok_new();
        weft_future_t *f = spawn_probe(ex, body_ok, &p, tok, "fine");
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
        cr_assert_null(weft_future_error(f));
        weft_value_t v = {0};
        cr_assert_eq(weft_future_value(f, &v), WEFT_OK);
        cr_assert_eq(v.i64, 42);
        cr_assert_eq(atomic_load(&p.released), 1);
        /* Cancelling the token after the end changes nothing. */
        cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
        cr_assert_null(weft_future_error(f));
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(tok);

        /* A failure recorded and then not returned is dropped. */
        f = NULL;
        cr_assert_eq(weft_spawn(ex, body_fail_then_succeed, NULL, &f), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
        cr_assert_null(weft_future_error(f));
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        ex_end(ex);
    }
    leak_check_end();
}

Test(cancellation, pending_future_has_no_error)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct probe p = {0};
        weft_token_t *tok = tok_new();
        weft_future_t *f = spawn_probe(ex, body_block, &p, tok, "slow");
        spin_until(&p.started, 1);
        cr_assert_null(weft_future_error(f));
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
        cr_assert_eq(weft_future_status(f), WEFT_EAGAIN);
        cr_assert(!weft_future_is_done(f));
        /* A running task that ignores its token is not cut short. */
        cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
        cr_assert_null(weft_future_error(f));
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
        atomic_store_explicit(&p.go, 1, memory_order_release);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
        cr_assert_null(weft_future_error(f));
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(tok);
        ex_end(ex);
    }
    leak_check_end();
}

/* ---- shutdown ---------------------------------------------------------- */

static void *
thread_shutdown_cancel(void *arg)
{
    return (void *)(intptr_t)weft_executor_shutdown(arg, WEFT_SHUTDOWN_CANCEL);
}

Test(cancellation, shutdown_cancel_reason_is_eshutdown)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct probe child = {0};
        struct blockers b = {
            .until_cancelling = 1, .inner_fn = body_ok, .inner_probe = &child};
        block_workers(ex, &b, n);

        enum {
            QUEUED = 8
        };
        static const char *const names[QUEUED] = {"q0", "q1", "q2", "q3",
                                                  "q4", "q5", "q6", "q7"};
        struct probe qp[QUEUED];
        weft_future_t *qf[QUEUED];
        memset(qp, 0, sizeof qp);
        for (int i = 0; i < QUEUED; i++) {
            qf[i] = spawn_probe(ex, body_ok, &qp[i], NULL, names[i]);
        }

        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_shutdown_cancel, ex), 0);
        void *ret = NULL;
        cr_assert_eq(pthread_join(th, &ret), 0);
        cr_assert_eq((weft_status_t)(intptr_t)ret, WEFT_OK);

        for (int i = 0; i < QUEUED; i++) {
            assert_cancelled_unrun(qf[i], &qp[i], NULL);
            weft_error_t *e = weft_future_error(qf[i]);
            cr_assert_eq(weft_error_status(e), WEFT_ESHUTDOWN,
                         "[%u workers] task %d: reason code %s", n, i,
                         weft_status_name(weft_error_status(e)));
            cr_assert_str_eq(weft_error_task_name(e), names[i]);
            cr_assert_eq(weft_error_task_id(e), weft_future_id(qf[i]));
            cr_assert_eq(weft_future_release(qf[i]), WEFT_OK);
        }
        /* The child spawned by a running task during CANCEL. */
        weft_future_t *cf = atomic_load(&b.inner);
        cr_assert_eq(b.inner_spawn_status, WEFT_OK);
        cr_assert_not_null(cf);
        cr_assert_eq(b.inner_wait_status, WEFT_ECANCELED);
        assert_cancelled_unrun(cf, &child, NULL);
        cr_assert_eq(weft_error_status(weft_future_error(cf)), WEFT_ESHUTDOWN);
        cr_assert_str_eq(weft_error_task_name(weft_future_error(cf)),
                         "late-child");
        cr_assert_eq(weft_future_release(cf), WEFT_OK);
        for (unsigned int i = 0; i < n; i++) {
            /* Running tasks are not interrupted. */
            cr_assert_eq(weft_future_outcome(b.f[i]), WEFT_OUTCOME_SUCCEEDED);
            cr_assert_eq(weft_future_release(b.f[i]), WEFT_OK);
        }

        /* After shutdown, an outside spawn with a token is refused, runs
         * its release hook and keeps no token reference. */
        weft_token_t *tok = tok_new();
        struct probe late = {0};
        weft_spawn_opts_t o = {.release = probe_release, .token = tok};
        weft_future_t *lf = (weft_future_t *)&o; /* must be reset */
        cr_assert_eq(weft_spawn_ex(ex, &o, body_ok, &late, &lf),
                     WEFT_ESHUTDOWN);
        cr_assert_null(lf);
        cr_assert_eq(atomic_load(&late.released), 1);
        cr_assert_eq(atomic_load(&late.ran), 0);
        weft_token_release(tok);
        ex_end(ex);
    }
    leak_check_end();
}

/*
 * An outside spawn that passes the early run-state check and is refused
 * under ext_lock (shutdown began in between) must give back the token
 * reference it took. The interleaving is forced, not raced: the test
 * holds ext_lock, waits until the spawner is blocked on it (glibc marks a
 * contended mutex with lock word 2), flips run_state exactly as
 * weft_executor_shutdown() does under that lock, and lets go.
 */
struct racing_spawn {
    weft_executor_t *ex;
    weft_token_t *tok;
    struct probe p;
    weft_future_t *f;
    weft_status_t st;
};

static void *
thread_spawn_with_token(void *arg)
{
    struct racing_spawn *rs = arg;
    weft_spawn_opts_t o = {
        .release = probe_release, .token = rs->tok, .name = "refused"};
    rs->st = weft_spawn_ex(rs->ex, &o, body_ok, &rs->p, &rs->f);
    return NULL;
}

Test(cancellation, spawn_refused_by_racing_shutdown_releases_token)
{
#if !defined(__GLIBC__)
    cr_skip_test("needs glibc's mutex lock word to see the spawner block");
#else
    leak_check_begin();
    weft_executor_t *ex = ex_new(1);
    weft_token_t *tok = tok_new();
    struct racing_spawn rs = {.ex = ex, .tok = tok};

    pthread_mutex_lock(&ex->ext_lock);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_spawn_with_token, &rs), 0);
    /* The spawner passed the early check and waits for ext_lock. */
    while (__atomic_load_n(&ex->ext_lock.__data.__lock, __ATOMIC_ACQUIRE) !=
           2) {
        sched_yield();
    }
    /* What weft_executor_shutdown(DRAIN) does under ext_lock. */
    __atomic_store_n(&ex->run_state, WEFT__RUN_DRAINING, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&ex->ext_lock);
    cr_assert_eq(pthread_join(th, NULL), 0);

    cr_assert_eq(rs.st, WEFT_ESHUTDOWN);
    cr_assert_null(rs.f);
    cr_assert_eq(atomic_load(&rs.p.released), 1);
    cr_assert_eq(atomic_load(&rs.p.ran), 0);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    ex_end(ex);
    int64_t before = weft__alloc_live();
    weft_token_release(tok);
    int64_t after = weft__alloc_live();
    cr_expect_eq(before - after, 1,
                 "releasing the caller's only reference did not free the "
                 "token: the refused spawn kept a reference (spawn_external "
                 "puts the object back with weft__pool_put, whose "
                 "weft__future_reset_cold clears f->token without "
                 "weft_token_release)");
    if (before - after == 1) {
        leak_check_end();
    }
#endif
}

/* ---- weft_future_wait_for ---------------------------------------------- */

struct canceller {
    weft_token_t *tok; /* cancelled once a wait registered on it */
    weft_error_t *reason;
    atomic_uint *go; /* or: set this instead of cancelling */
};

static void *
thread_cancel_when_waited(void *arg)
{
    struct canceller *c = arg;
    /* Handshake: weft_future_wait_for registers its wake-up first. */
    while (weft__token_registrations(c->tok) == 0) {
        sched_yield();
    }
    if (c->go != NULL) {
        atomic_store_explicit(c->go, 1, memory_order_release);
    } else {
        (void)weft_token_cancel(c->tok, c->reason);
    }
    return NULL;
}

struct worker_wait {
    weft_future_t *target;
    weft_token_t *tok;
    uint64_t deadline;
    weft_status_t st;
    int spawn_child;    /* spawn a blocked child and wait for it instead */
    struct probe child; /* the child, when spawn_child */
    weft_outcome_t child_outcome; /* right after the wait returned */
    weft_status_t child_st;
};

static weft_status_t
body_wait_for(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct worker_wait *ww = arg;
    if (ww->spawn_child) {
        weft_future_t *c = NULL;
        if (weft_spawn(weft_task_executor(self), body_block, &ww->child, &c) !=
            WEFT_OK) {
            return WEFT_EFAILED;
        }
        ww->st = weft_future_wait_for(c, ww->tok, ww->deadline);
        ww->child_outcome = weft_future_outcome(c);
        atomic_store_explicit(&ww->child.go, 1, memory_order_release);
        ww->child_st = weft_join(c, NULL);
        return WEFT_OK;
    }
    ww->st = weft_future_wait_for(ww->target, ww->tok, ww->deadline);
    return WEFT_OK;
}

Test(cancellation, wait_for_returns_interrupted_when_token_cancelled)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);

        /* Cancelled before waiting (outside thread). */
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_block, &p, NULL, "busy");
        spin_until(&p.started, 1);
        weft_token_t *wt = tok_new();
        cr_assert_eq(weft_token_cancel(wt, NULL), WEFT_OK);
        cr_assert_eq(weft_future_wait_for(f, wt, 0), WEFT_EINTERRUPTED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING,
                     "the awaited task goes on");
        weft_token_release(wt);

        /* Cancelled by another thread while this one waits. */
        wt = tok_new();
        struct canceller c = {.tok = wt};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_cancel_when_waited, &c),
                     0);
        cr_assert_eq(weft_future_wait_for(f, wt, 0), WEFT_EINTERRUPTED);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(weft__token_registrations(wt), 0);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
        weft_token_release(wt);

        if (n >= 2) {
            /* From inside a worker, cancelled by another thread. */
            wt = tok_new();
            struct worker_wait ww = {.target = f, .tok = wt};
            weft_future_t *w = NULL;
            cr_assert_eq(weft_spawn(ex, body_wait_for, &ww, &w), WEFT_OK);
            while (weft__token_registrations(wt) == 0) {
                sched_yield();
            }
            cr_assert_eq(weft_token_cancel(wt, NULL), WEFT_OK);
            cr_assert_eq(weft_future_wait(w), WEFT_OK);
            cr_assert_eq(ww.st, WEFT_EINTERRUPTED, "worker wait_for: %s",
                         weft_status_name(ww.st));
            cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
            cr_assert_eq(weft_future_release(w), WEFT_OK);
            weft_token_release(wt);
        }

        /* The awaited task still completes, and succeeds. */
        atomic_store_explicit(&p.go, 1, memory_order_release);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
        weft_value_t v = {0};
        cr_assert_eq(weft_future_value(f, &v), WEFT_OK);
        cr_assert_eq(v.i64, 7);
        cr_assert_eq(atomic_load(&p.released), 1);
        cr_assert_eq(weft_future_release(f), WEFT_OK);

        /* From a worker, on its own still-queued child, with a token
         * cancelled before the wait: it does not run the child inline. */
        wt = tok_new();
        cr_assert_eq(weft_token_cancel(wt, NULL), WEFT_OK);
        struct worker_wait wc = {.tok = wt, .spawn_child = 1};
        cr_assert_eq(weft_executor_run(ex, body_wait_for, &wc, NULL), WEFT_OK);
        cr_assert_eq(wc.st, WEFT_EINTERRUPTED);
        cr_assert_eq(wc.child_outcome, WEFT_OUTCOME_PENDING,
                     "the queued child was not run by the interrupted wait");
        cr_assert_eq(wc.child_st, WEFT_OK);
        weft_token_release(wt);
        ex_end(ex);
    }
    leak_check_end();
}

Test(cancellation, wait_for_token_deadline_in_past_returns_interrupted)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_block, &p, NULL, "busy");
        spin_until(&p.started, 1);

        weft_token_t *dt = NULL;
        cr_assert_eq(weft_token_create_with_deadline(NULL, FAR_PAST, &dt),
                     WEFT_OK);
        cr_assert_eq(weft_future_wait_for(f, dt, 0), WEFT_EINTERRUPTED);
        /* Even with a wait deadline of its own far in the future. */
        cr_assert_eq(weft_future_wait_for(f, dt, far_future()),
                     WEFT_EINTERRUPTED);
        weft_token_release(dt);

        /* A child whose own deadline passed, under a live parent. */
        weft_token_t *parent = tok_new();
        weft_token_t *ct = NULL;
        cr_assert_eq(weft_token_create_with_deadline(parent, FAR_PAST, &ct),
                     WEFT_OK);
        cr_assert_eq(weft_future_wait_for(f, ct, 0), WEFT_EINTERRUPTED);
        weft_token_release(ct);
        weft_token_release(parent);

        if (n >= 2) {
            cr_assert_eq(weft_token_create_with_deadline(NULL, FAR_PAST, &dt),
                         WEFT_OK);
            struct worker_wait ww = {.target = f, .tok = dt};
            cr_assert_eq(weft_executor_run(ex, body_wait_for, &ww, NULL),
                         WEFT_OK);
            cr_assert_eq(ww.st, WEFT_EINTERRUPTED);
            weft_token_release(dt);
        }
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
        atomic_store_explicit(&p.go, 1, memory_order_release);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        ex_end(ex);
    }
    leak_check_end();
}

Test(cancellation, wait_for_deadline_in_past_returns_timedout)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_block, &p, NULL, "busy");
        spin_until(&p.started, 1);

        cr_assert_eq(weft_future_wait_for(f, NULL, FAR_PAST), WEFT_ETIMEDOUT);
        weft_token_t *live = tok_new();
        cr_assert_eq(weft_future_wait_for(f, live, FAR_PAST), WEFT_ETIMEDOUT);
        cr_assert_eq(weft__token_registrations(live), 0,
                     "the wait's registration was removed");
        /* A future token deadline does not interrupt it either. */
        weft_token_t *later = NULL;
        cr_assert_eq(
            weft_token_create_with_deadline(NULL, far_future(), &later),
            WEFT_OK);
        cr_assert_eq(weft_future_wait_for(f, later, FAR_PAST), WEFT_ETIMEDOUT);
        if (n >= 2) {
            struct worker_wait ww = {
                .target = f, .tok = live, .deadline = FAR_PAST};
            cr_assert_eq(weft_executor_run(ex, body_wait_for, &ww, NULL),
                         WEFT_OK);
            cr_assert_eq(ww.st, WEFT_ETIMEDOUT);
        }
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING,
                     "the awaited task goes on");
        cr_assert(!weft_token_is_cancelled(live));
        atomic_store_explicit(&p.go, 1, memory_order_release);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(live);
        weft_token_release(later);
        ex_end(ex);
    }
    leak_check_end();
}

Test(cancellation, wait_for_returns_task_status_when_done_first)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        weft_token_t *dead = tok_new();
        cr_assert_eq(weft_token_cancel(dead, NULL), WEFT_OK);

        /* Succeeded, failed, cancelled: each reports its own status even
         * with a cancelled token and a passed deadline. */
        weft_future_t *ok = NULL;
        weft_future_t *bad = NULL;
        cr_assert_eq(weft_spawn(ex, body_return_code, (void *)(intptr_t)0, &ok),
                     WEFT_OK);
        cr_assert_eq(weft_spawn(ex, body_return_code,
                                (void *)(intptr_t)(WEFT_EUSER + 1), &bad),
                     WEFT_OK);
        struct probe cp = {0};
        weft_future_t *cancelled = spawn_probe(ex, body_ok, &cp, dead, "c");
        cr_assert_eq(weft_future_wait(ok), WEFT_OK);
        cr_assert_eq(weft_future_wait(bad), WEFT_EUSER + 1);
        cr_assert_eq(weft_future_wait(cancelled), WEFT_ECANCELED);

        cr_assert_eq(weft_future_wait_for(ok, dead, FAR_PAST), WEFT_OK);
        cr_assert_eq(weft_future_wait_for(bad, dead, FAR_PAST), WEFT_EUSER + 1);
        cr_assert_eq(weft_future_wait_for(cancelled, dead, FAR_PAST),
                     WEFT_ECANCELED,
                     "a cancelled task yields WEFT_ECANCELED, never "
                     "WEFT_EINTERRUPTED");
        cr_assert_eq(weft_future_wait_for(cancelled, NULL, 0), WEFT_ECANCELED);
        cr_assert_eq(weft_future_release(ok), WEFT_OK);
        cr_assert_eq(weft_future_release(bad), WEFT_OK);
        cr_assert_eq(weft_future_release(cancelled), WEFT_OK);

        /* Ends while waited for, with a live token and a far deadline. */
        weft_token_t *live = tok_new();
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_block, &p, NULL, "slow");
        struct canceller c = {.tok = live, .go = &p.go};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_cancel_when_waited, &c),
                     0);
        cr_assert_eq(weft_future_wait_for(f, live, far_future()), WEFT_OK);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(weft__token_registrations(live), 0);
        cr_assert(!weft_token_is_cancelled(live));
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(live);
        weft_token_release(dead);
        ex_end(ex);
    }
    leak_check_end();
}

Test(cancellation, awaited_task_goes_on_unless_it_shares_the_token)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);

        /* Same token: the cancellation that interrupts the wait also
         * cancels the (polling) task. */
        weft_token_t *tok = tok_new();
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_poll, &p, tok, "shared");
        spin_until(&p.started, 1);
        struct canceller c = {.tok = tok};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_cancel_when_waited, &c),
                     0);
        weft_status_t st = weft_future_wait_for(f, tok, 0);
        cr_assert(st == WEFT_EINTERRUPTED || st == WEFT_ECANCELED,
                  "wait_for: %s", weft_status_name(st));
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED);
        cr_assert_eq(atomic_load(&p.saw_cancel), 1);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(tok);

        /* Different tokens: the task goes on and succeeds. */
        weft_token_t *task_tok = tok_new();
        weft_token_t *wait_tok = tok_new();
        struct probe q = {0};
        f = spawn_probe(ex, body_poll, &q, task_tok, "independent");
        spin_until(&q.started, 1);
        struct canceller c2 = {.tok = wait_tok};
        cr_assert_eq(pthread_create(&th, NULL, thread_cancel_when_waited, &c2),
                     0);
        cr_assert_eq(weft_future_wait_for(f, wait_tok, 0), WEFT_EINTERRUPTED);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_PENDING);
        atomic_store_explicit(&q.go, 1, memory_order_release);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_SUCCEEDED);
        cr_assert_eq(atomic_load(&q.saw_cancel), 0);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(task_tok);
        weft_token_release(wait_tok);
        ex_end(ex);
    }
    leak_check_end();
}

/*
 * Lost wake-up check for an outside waiter. The waiter's token reads a
 * test clock; on the waiter's k-th read the clock blocks until the test
 * has cancelled the token, then answers "deadline not reached". So the
 * cancellation lands exactly after the waiter's k-th check of its token.
 * Sweeping k over every check the wait makes before it parks puts the
 * cancellation, in turn, just before each park: every k must end in
 * WEFT_EINTERRUPTED while the awaited task is still blocked.
 */
static struct {
    atomic_uint k;           /* the read that blocks (1-based) */
    atomic_uint calls;       /* reads by the waiter thread */
    atomic_uint at_k;        /* the waiter is blocked in read k */
    atomic_uint cancel_done; /* the test cancelled: read k may return */
} lw;

static _Thread_local int lw_is_waiter;

static uint64_t
lw_clock_read(const struct weft__clock *c)
{
    (void)c;
    if (lw_is_waiter) {
        unsigned int call = atomic_fetch_add(&lw.calls, 1) + 1;
        if (call == atomic_load(&lw.k)) {
            atomic_store_explicit(&lw.at_k, 1, memory_order_release);
            while (atomic_load_explicit(&lw.cancel_done,
                                        memory_order_acquire) == 0) {
                sched_yield();
            }
        }
    }
    return 0;
}

static struct weft__clock lw_clock = {.now_ns = lw_clock_read};

struct lw_waiter {
    weft_future_t *f;
    weft_token_t *tok;
    weft_status_t st;
    atomic_uint returned;
};

static void *
thread_lw_wait(void *arg)
{
    struct lw_waiter *w = arg;
    lw_is_waiter = 1;
    w->st = weft_future_wait_for(w->f, w->tok, 0);
    atomic_store_explicit(&w->returned, 1, memory_order_release);
    return NULL;
}

#define LW_MAX_K 256
#define LW_GUARD_NS (3ull * 1000000000ull)

Test(cancellation, wait_for_outside_worker_wakes_on_cancel_before_park)
{
    leak_check_begin();
    weft_executor_t *ex = ex_new(1);
    unsigned int hung_k = 0;
    weft_status_t hung_st = WEFT_OK;
    unsigned int k;
    for (k = 1; k <= LW_MAX_K; k++) {
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_block, &p, NULL, "blocked");
        spin_until(&p.started, 1);
        weft_token_t *tok = NULL;
        /* A real (far) deadline, so every check reads the clock. */
        cr_assert_eq(weft__token_create_root(&lw_clock, 1ull << 62, &tok),
                     WEFT_OK);
        atomic_store(&lw.calls, 0);
        atomic_store(&lw.at_k, 0);
        atomic_store(&lw.cancel_done, 0);
        atomic_store(&lw.k, k);
        struct lw_waiter w = {.f = f, .tok = tok};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_lw_wait, &w), 0);

        bool cancelled = false;
        bool parked_first = false;
        bool hung = false;
        uint64_t t_cancel = 0;
        struct weft_future *pf = (struct weft_future *)f;
        while (atomic_load_explicit(&w.returned, memory_order_acquire) == 0) {
            if (!cancelled) {
                bool at =
                    atomic_load_explicit(&lw.at_k, memory_order_acquire) != 0;
                bool waiter_bit =
                    (__atomic_load_n(&pf->state, __ATOMIC_ACQUIRE) &
                     WEFT__F_WAITER) != 0;
                if (at || waiter_bit) {
                    /* At check k, or parked before reaching it (k is
                     * past the last check: this is the sweep's end). */
                    parked_first = !at;
                    cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
                    atomic_store_explicit(&lw.cancel_done, 1,
                                          memory_order_release);
                    cancelled = true;
                    t_cancel = mono_ns();
                }
            } else if (!hung && mono_ns() - t_cancel > LW_GUARD_NS) {
                /* Hang guard: let the task end, which wakes the waiter. */
                hung = true;
                atomic_store_explicit(&p.go, 1, memory_order_release);
            }
            sched_yield();
        }
        cr_assert_eq(pthread_join(th, NULL), 0);
        atomic_store_explicit(&p.go, 1, memory_order_release);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(tok);
        if (hung) {
            hung_k = k;
            hung_st = w.st;
            break;
        }
        cr_assert_eq(w.st, WEFT_EINTERRUPTED, "k=%u: %s", k,
                     weft_status_name(w.st));
        if (parked_first) {
            break;
        }
    }
    ex_end(ex);
    cr_expect_eq(hung_k, 0,
                 "lost wake-up: the token was cancelled right after the "
                 "waiter's check #%u of it (the last before it parks); "
                 "weft_future_wait_for on a non-worker thread then slept on "
                 "the future's state word and returned (%s) only when the "
                 "awaited task ended, %llu s later (hang guard). The wait's "
                 "token callback (wait_token_wake) does futex_wake without "
                 "changing f->state, so a wake that comes between "
                 "wait_check_limits() and futex_wait is lost "
                 "(external_await parks with no timeout)",
                 hung_k, weft_status_name(hung_st),
                 (unsigned long long)(LW_GUARD_NS / 1000000000ull));
    cr_expect(hung_k != 0 || k <= LW_MAX_K, "the waiter never parked");
    leak_check_end();
}

/* ---- token trees and deadlines ---------------------------------------- */

Test(cancellation, child_token_of_cancelled_parent_cancels_tasks)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);

        /* Parent cancelled before the spawn: never runs, parent's reason. */
        weft_token_t *parent = tok_new();
        weft_token_t *child = tok_child(parent);
        weft_error_t *reason = err_new(WEFT_EUSER + 7, "scope closed");
        cr_assert_eq(weft_token_cancel(parent, reason), WEFT_OK);
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_ok, &p, child, "kid");
        assert_cancelled_unrun(f, &p, reason);
        cr_assert_eq(weft_future_error(f), reason);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        /* A child made after the parent was cancelled: born cancelled. */
        weft_token_t *late = tok_child(parent);
        struct probe pl = {0};
        f = spawn_probe(ex, body_ok, &pl, late, "late-kid");
        assert_cancelled_unrun(f, &pl, reason);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(late);
        weft_token_release(child);
        weft_token_release(parent);
        weft_error_release(reason);

        /* Parent cancelled while a task polls its child token. */
        parent = tok_new();
        child = tok_child(parent);
        reason = err_new(WEFT_EUSER + 8, "parent stopped");
        struct probe q = {0};
        f = spawn_probe(ex, body_poll, &q, child, "kid-poll");
        spin_until(&q.started, 1);
        cr_assert_eq(weft_token_cancel(parent, reason), WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED);
        cr_assert_eq(weft_future_error(f), reason);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(child);
        weft_token_release(parent);
        weft_error_release(reason);

        /* Cancelling the child leaves tasks on the parent alone. */
        parent = tok_new();
        child = tok_child(parent);
        cr_assert_eq(weft_token_cancel(child, NULL), WEFT_OK);
        struct probe pc = {0};
        struct probe pp = {0};
        weft_future_t *fc = spawn_probe(ex, body_ok, &pc, child, "kid");
        weft_future_t *fp = spawn_probe(ex, body_ok, &pp, parent, "parent");
        assert_cancelled_unrun(fc, &pc, NULL);
        cr_assert_eq(weft_future_wait(fp), WEFT_OK);
        cr_assert_eq(atomic_load(&pp.ran), 1);
        cr_assert_eq(weft_future_release(fc), WEFT_OK);
        cr_assert_eq(weft_future_release(fp), WEFT_OK);
        weft_token_release(child);
        weft_token_release(parent);
        ex_end(ex);
    }
    leak_check_end();
}

Test(cancellation, deadline_token_in_past_cancels_task_before_start)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        weft_token_t *dt = NULL;
        cr_assert_eq(weft_token_create_with_deadline(NULL, FAR_PAST, &dt),
                     WEFT_OK);
        struct probe p = {0};
        weft_future_t *f = spawn_probe(ex, body_ok, &p, dt, "too-late");
        assert_cancelled_unrun(f, &p, NULL);
        cr_assert_eq(weft_error_status(weft_future_error(f)), WEFT_EDEADLINE,
                     "[%u workers] reason %s", n,
                     weft_status_name(weft_error_status(weft_future_error(f))));
        cr_assert_eq(weft_future_release(f), WEFT_OK);

        /* Inherited: a child of a token whose deadline passed. */
        weft_token_t *kid = tok_child(dt);
        struct probe pk = {0};
        f = spawn_probe(ex, body_ok, &pk, kid, "too-late-kid");
        assert_cancelled_unrun(f, &pk, NULL);
        cr_assert_eq(weft_error_status(weft_future_error(f)), WEFT_EDEADLINE);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(kid);
        weft_token_release(dt);

        /* A deadline far in the future: runs, not cancelled inside. */
        cr_assert_eq(weft_token_create_with_deadline(NULL, far_future(), &dt),
                     WEFT_OK);
        struct probe q = {0};
        f = spawn_probe(ex, body_poll, &q, dt, "in-time");
        spin_until(&q.started, 1);
        atomic_store_explicit(&q.go, 1, memory_order_release);
        cr_assert_eq(weft_future_wait(f), WEFT_OK);
        cr_assert_eq(atomic_load(&q.saw_cancel), 0);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        /* Cancelled explicitly before its deadline: the explicit reason. */
        weft_error_t *reason = err_new(WEFT_EUSER, "explicit");
        cr_assert_eq(weft_token_cancel(dt, reason), WEFT_OK);
        struct probe r = {0};
        f = spawn_probe(ex, body_ok, &r, dt, "explicit");
        assert_cancelled_unrun(f, &r, reason);
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_error_release(reason);
        weft_token_release(dt);
        ex_end(ex);
    }
    leak_check_end();
}

/* ---- continuations ------------------------------------------------------ */

static weft_status_t
body_continuation(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct probe *p = arg;
    atomic_fetch_add(&p->ran, 1);
    weft_future_t *a = weft_task_antecedent(self);
    p->antecedent = a;
    p->ante_outcome = weft_future_outcome(a);
    p->ante_status = weft_future_status(a);
    p->ante_error = weft_future_error(a);
    result->i64 = 5;
    return WEFT_OK;
}

Test(cancellation, continuation_of_cancelled_antecedent_runs)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);

        /* Antecedent already ended cancelled. */
        weft_token_t *tok = tok_new();
        weft_error_t *reason = err_new(WEFT_EUSER + 1, "no longer needed");
        cr_assert_eq(weft_token_cancel(tok, reason), WEFT_OK);
        struct probe ap = {0};
        weft_future_t *a = spawn_probe(ex, body_ok, &ap, tok, "ante");
        cr_assert_eq(weft_future_wait(a), WEFT_ECANCELED);
        struct probe cp = {0};
        weft_future_t *c = NULL;
        cr_assert_eq(weft_future_then(a, body_continuation, &cp, &c), WEFT_OK);
        weft_value_t v = {0};
        cr_assert_eq(weft_future_wait(c), WEFT_OK);
        cr_assert_eq(weft_future_value(c, &v), WEFT_OK);
        cr_assert_eq(v.i64, 5);
        cr_assert_eq(atomic_load(&cp.ran), 1);
        cr_assert_eq(cp.antecedent, a);
        cr_assert_eq(cp.ante_outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert_eq(cp.ante_status, WEFT_ECANCELED);
        cr_assert_eq(cp.ante_error, reason);
        cr_assert_eq(atomic_load(&ap.ran), 0);
        cr_assert_eq(weft_future_release(c), WEFT_OK);
        cr_assert_eq(weft_future_release(a), WEFT_OK);
        weft_token_release(tok);
        weft_error_release(reason);

        /* Registered while the antecedent is queued; cancelled after. */
        struct blockers b = {0};
        block_workers(ex, &b, n);
        tok = tok_new();
        struct probe aq = {0};
        a = spawn_probe(ex, body_ok, &aq, tok, "ante-queued");
        struct probe cq = {0};
        c = NULL;
        cr_assert_eq(weft_future_then(a, body_continuation, &cq, &c), WEFT_OK);
        cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
        unblock_workers(&b);
        cr_assert_eq(weft_future_wait(c), WEFT_OK);
        cr_assert_eq(atomic_load(&cq.ran), 1);
        cr_assert_eq(cq.ante_outcome, WEFT_OUTCOME_CANCELLED,
                     "[%u workers] continuation saw %s", n,
                     weft_outcome_name(cq.ante_outcome));
        cr_assert_eq(cq.ante_status, WEFT_ECANCELED);
        cr_assert_eq(weft_error_status(cq.ante_error), WEFT_ECANCELED);
        assert_cancelled_unrun(a, &aq, NULL);
        cr_assert_eq(weft_future_release(c), WEFT_OK);
        cr_assert_eq(weft_future_release(a), WEFT_OK);
        weft_token_release(tok);
        ex_end(ex);
    }
    leak_check_end();
}

/* ---- bad input ---------------------------------------------------------- */

struct inside_bad {
    weft_status_t with_null;
    weft_token_t *tok_seen;
    bool cancelled_seen;
};

static weft_status_t
body_bad_inside(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct inside_bad *ib = arg;
    ib->with_null = weft_task_fail_with(self, NULL);
    ib->tok_seen = weft_task_token(self);
    ib->cancelled_seen = weft_task_is_cancelled(self);
    return WEFT_OK;
}

Test(cancellation, bad_input_is_rejected)
{
    leak_check_begin();
    weft_token_t *tok = tok_new();
    weft_error_t *e = err_new(WEFT_EUSER, "x");

    cr_assert_eq(weft_future_wait_for(NULL, NULL, 0), WEFT_EINVAL);
    cr_assert_eq(weft_future_wait_for(NULL, tok, 0), WEFT_EINVAL);
    cr_assert_eq(weft_future_wait_for(NULL, tok, FAR_PAST), WEFT_EINVAL);
    cr_assert_null(weft_future_error(NULL));
    cr_assert_eq(weft_task_fail(NULL, WEFT_EUSER, "no task %d", 1),
                 WEFT_EINVAL);
    cr_assert_eq(weft_task_fail_with(NULL, e), WEFT_EINVAL);
    cr_assert(!weft_task_is_cancelled(NULL));
    cr_assert_null(weft_task_token(NULL));
    cr_assert_eq(weft_task_id(NULL), 0);
    cr_assert_null(weft_task_antecedent(NULL));

    /* Refused spawns run the release hook once and keep no token. */
    weft_executor_t *ex = ex_new(1);
    struct probe p = {0};
    weft_spawn_opts_t o = {.release = probe_release, .token = tok};
    weft_future_t *f = (weft_future_t *)&o;
    cr_assert_eq(weft_spawn_ex(NULL, &o, body_ok, &p, &f), WEFT_EINVAL);
    cr_assert_null(f);
    f = (weft_future_t *)&o;
    cr_assert_eq(weft_spawn_ex(ex, &o, NULL, &p, &f), WEFT_EINVAL);
    cr_assert_null(f);
    cr_assert_eq(atomic_load(&p.released), 2);
    cr_assert_eq(atomic_load(&p.ran), 0);

    /* Inside a task: NULL error; the token and no cancellation. */
    struct inside_bad ib = {0};
    weft_spawn_opts_t oi = {.token = tok};
    f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &oi, body_bad_inside, &ib, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(ib.with_null, WEFT_EINVAL);
    cr_assert_not_null(ib.tok_seen);
    cr_assert_neq(ib.tok_seen, tok, "the task's own token, a child of tok");
    cr_assert(!weft_token_is_cancelled(ib.tok_seen));
    cr_assert(!ib.cancelled_seen);
    cr_assert_null(weft_future_error(f));
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    /* Without a spawn token: never cancelled; its own token is a root. */
    struct inside_bad ib2 = {.cancelled_seen = true};
    f = NULL;
    cr_assert_eq(weft_spawn(ex, body_bad_inside, &ib2, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_not_null(ib2.tok_seen);
    cr_assert(!ib2.cancelled_seen);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);

    weft_error_release(e);
    weft_token_release(tok);
    leak_check_end();
}

static weft_status_t
body_returns_canceled(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    (void)out;
    return WEFT_ECANCELED;
}

Test(cancellation, has_started_tells_cancelled_before_start_from_body_cancel)
{
    leak_check_begin();
    FOR_EACH_WORKER_COUNT(n)
    {
        weft_executor_t *ex = ex_new(n);
        /* Cancelled before it started: never ran. */
        weft_token_t *tok = NULL;
        cr_assert_eq(weft_token_create(NULL, &tok), WEFT_OK);
        cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
        weft_spawn_opts_t o = {.token = tok};
        weft_future_t *f = NULL;
        cr_assert_eq(weft_spawn_ex(ex, &o, body_returns_canceled, NULL, &f),
                     WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED);
        cr_assert(!weft_future_has_started(f), "never ran");
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(tok);
        /* Ran, then returned WEFT_ECANCELED: same outcome, but started. */
        f = NULL;
        cr_assert_eq(weft_spawn(ex, body_returns_canceled, NULL, &f),
                     WEFT_OK);
        cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
        cr_assert_eq(weft_future_outcome(f), WEFT_OUTCOME_CANCELLED);
        cr_assert(weft_future_has_started(f), "its body ran");
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
    cr_assert(!weft_future_has_started(NULL));
    leak_check_end();
}
