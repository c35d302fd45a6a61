/*
 * stress_lifecycle.c - the task lifecycle matrix, exactly-once accounting
 * in every cell (plain C: runs under ThreadSanitizer, where Criterion
 * cannot; tests/test_lifecycle.c runs the same cells as named Criterion
 * tests).
 *
 * The matrix, 5 x 2 x 2 x 2 x 3 = 120 cases:
 *
 *   how the task ends   succeed, fail (weft_task_fail), cancel before start,
 *                       cancel while running, cancel after completion
 *   observer            awaited (a waiter holding its own reference waits
 *                       for the task while it is pending) or detached
 *                       (nobody waits on the task's future)
 *   continuation        weft_future_then() registered while the task is
 *                       pending, or after it ended
 *   the caller's handle released while the task is pending, or after it
 *                       ended
 *   workers             1, 2, 4
 *
 * plus 30 fire-and-forget cases (every end x {spawned with out == NULL,
 * handle released while pending with no continuation, so the task runs
 * truly detached} x workers), where the release hook is the only witness.
 *
 * Every case checks:
 *   - the body runs exactly once, or never when cancelled before start;
 *   - the future ends once, with the expected outcome, status, value,
 *     error (code, message, origin) and has_started, as seen by the caller,
 *     the waiter and the continuation alike; cancel after completion
 *     returns WEFT_OK from weft_token_cancel and changes nothing;
 *   - the continuation runs exactly once, after the task ended (the release
 *     hook has already run by then), and its own future (kept when the case
 *     is awaited, detached otherwise) succeeds;
 *   - the release hook runs exactly once, and has run when the future ends;
 *   - weft_executor_destroy returns WEFT_OK (no future left held) and
 *     weft__alloc_live() is back where it was before the executor was made
 *     (no leak, without relying on LSan).
 *
 * Determinism, no timing: "pending" is a state the test holds the task in,
 * not a race it hopes to win. Either the body has announced that it runs
 * and blocks on a gate the test opens ("running"), or every worker is held
 * by a gate task and the task sits in the injection queue ("queued"; the
 * only way to be sure a cancel lands before the start). Cancel while
 * running: the body announces itself, the test cancels, the body polls its
 * token. Succeed, fail and cancel-after alternate between the running and
 * queued forms from round to round, awaited cases alternate between a
 * waiter thread (weft_future_wait) and a waiter task (weft_join, helping on
 * a worker), and cancellation alternates between the token
 * (weft_token_cancel) and, where the test still holds a reference, the
 * future (weft_future_cancel; after completion it must say WEFT_EALREADY).
 * Clocks only bound the waits (HANG_S), so a lost wake-up fails the case
 * instead of hanging the run.
 *
 * Rounds: WEFT_STRESS_TRIALS if set, else 16 (8 under sanitizers or
 * WEFT_PERTURB); each round runs every case once, and 8 consecutive rounds
 * cover every variant. The program prints the case counts and ends with
 * "N passed, N failed" (case runs); exit status 0 only when none failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/cancel.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/status.h>

#include "primitives/alloc.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define LC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define LC_SANITIZED 1
#endif
#endif
#if defined(WEFT_PERTURB) && !defined(LC_SANITIZED)
#define LC_SANITIZED 1
#endif

#ifdef LC_SANITIZED
#define LC_DEFAULT_ROUNDS 8
#else
#define LC_DEFAULT_ROUNDS 16
#endif

#define LC_HANG_S 60 /* bound on every wait; never reached when correct */
#define LC_VALUE 42
#define LC_CONT_VALUE 7
#define LC_REASON_CODE (WEFT_EUSER + 1)
#define LC_FAIL_CODE WEFT_EUSER
#define LC_NAME "lifecycle"

enum lc_end {
    LC_SUCCEED,
    LC_FAIL,
    LC_CANCEL_BEFORE_START,
    LC_CANCEL_WHILE_RUNNING,
    LC_CANCEL_AFTER_COMPLETION,
    LC_NENDS
};

static const char *const lc_end_names[LC_NENDS] = {
    "succeed", "fail", "cancel-before-start", "cancel-while-running",
    "cancel-after-completion"};

static const unsigned int lc_workers[3] = {1, 2, 4};

/* One cell of the matrix. fire_and_forget cells ignore awaited and
 * cont_before; for them release_before picks "released while pending"
 * (true) or "spawned with out == NULL" (false). */
struct lc_case {
    enum lc_end end;
    bool awaited;
    bool cont_before;
    bool release_before;
    bool fire_and_forget;
    unsigned int workers;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t
lc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A counter threads can wait on: mutex + condition variable. */
struct lc_event {
    pthread_mutex_t m;
    pthread_cond_t c;
    int n;
};

static void
lc_event_init(struct lc_event *e)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_mutex_init(&e->m, NULL);
    pthread_cond_init(&e->c, &a);
    pthread_condattr_destroy(&a);
    e->n = 0;
}

static void
lc_event_fini(struct lc_event *e)
{
    pthread_cond_destroy(&e->c);
    pthread_mutex_destroy(&e->m);
}

static void
lc_event_add(struct lc_event *e)
{
    pthread_mutex_lock(&e->m);
    e->n++;
    pthread_cond_broadcast(&e->c);
    pthread_mutex_unlock(&e->m);
}

/* Wait until e->n >= n; false if LC_HANG_S passed first. */
static bool
lc_event_wait(struct lc_event *e, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += LC_HANG_S;
    bool ok = true;
    pthread_mutex_lock(&e->m);
    while (e->n < n) {
        if (pthread_cond_timedwait(&e->c, &e->m, &ts) != 0 && e->n < n) {
            ok = false;
            break;
        }
    }
    pthread_mutex_unlock(&e->m);
    return ok;
}

static int
lc_event_count(struct lc_event *e)
{
    pthread_mutex_lock(&e->m);
    int n = e->n;
    pthread_mutex_unlock(&e->m);
    return n;
}

/* ---- one run of one case ------------------------------------------------ */

/* Mismatch bits, recorded by bodies, continuations and waiters (which
 * must not print through a test framework) and decoded by the caller. */
enum {
    LC_BAD_OUTCOME = 1 << 0,
    LC_BAD_STATUS = 1 << 1,
    LC_BAD_VALUE = 1 << 2,
    LC_BAD_ERROR = 1 << 3,
    LC_BAD_STARTED = 1 << 4,
    LC_BAD_HOOK = 1 << 5,
    LC_BAD_BODY = 1 << 6,
    LC_BAD_TOKEN = 1 << 7,
    LC_BAD_HANG = 1 << 8,
    LC_BAD_ANTECEDENT = 1 << 9,
    LC_BAD_WAIT = 1 << 10,
};

static const char *const lc_bad_names[] = {
    "outcome", "status", "value", "error", "has_started", "release hook",
    "body ran when it must not", "task token", "hang guard", "antecedent",
    "wait status"};

struct lc_run {
    const struct lc_case *c;
    unsigned int variant;
    bool queued; /* pending as queued (worker gates), not running */
    bool waiter_task;
    bool by_future; /* cancelled with weft_future_cancel() */
    const char *label;
    weft_executor_t *ex;
    weft_token_t *tok;
    weft_error_t *reason;
    weft_future_t *wait_ref; /* the waiter's own reference */
    struct lc_event gates_started;
    struct lc_event worker_gate;
    struct lc_event body_started;
    struct lc_event body_gate;
    struct lc_event cont_done;
    struct lc_event waiter_done;
    struct lc_event hook_done;
    atomic_int body_runs;
    atomic_int hook_runs;
    atomic_int cont_runs;
    atomic_int body_bad;
    atomic_int cont_bad;
    atomic_int waiter_bad;
    int failures; /* main thread only */
};

static weft_outcome_t
lc_expected_outcome(enum lc_end end)
{
    switch (end) {
    case LC_SUCCEED:
    case LC_CANCEL_AFTER_COMPLETION:
        return WEFT_OUTCOME_SUCCEEDED;
    case LC_FAIL:
        return WEFT_OUTCOME_FAILED;
    default:
        return WEFT_OUTCOME_CANCELLED;
    }
}

static weft_status_t
lc_expected_status(enum lc_end end)
{
    switch (lc_expected_outcome(end)) {
    case WEFT_OUTCOME_SUCCEEDED:
        return WEFT_OK;
    case WEFT_OUTCOME_FAILED:
        return LC_FAIL_CODE;
    default:
        return WEFT_ECANCELED;
    }
}

static int
lc_expected_body_runs(enum lc_end end)
{
    return end == LC_CANCEL_BEFORE_START ? 0 : 1;
}

/* Everything an ended future must say; returns mismatch bits. Any thread
 * holding a reference to f. */
static int
lc_check_future(struct lc_run *r, const weft_future_t *f)
{
    enum lc_end end = r->c->end;
    int bad = 0;
    if (!weft_future_is_done(f)) {
        return LC_BAD_OUTCOME;
    }
    if (weft_future_outcome(f) != lc_expected_outcome(end)) {
        bad |= LC_BAD_OUTCOME;
    }
    if (weft_future_status(f) != lc_expected_status(end)) {
        bad |= LC_BAD_STATUS;
    }
    weft_value_t v = {.i64 = -1};
    weft_status_t vs = weft_future_value(f, &v);
    if (vs != lc_expected_status(end) ||
        (vs == WEFT_OK && v.i64 != LC_VALUE)) {
        bad |= LC_BAD_VALUE;
    }
    if (weft_future_has_started(f) != (lc_expected_body_runs(end) == 1)) {
        bad |= LC_BAD_STARTED;
    }
    weft_error_t *e = weft_future_error(f);
    switch (lc_expected_outcome(end)) {
    case WEFT_OUTCOME_SUCCEEDED:
        if (e != NULL) {
            bad |= LC_BAD_ERROR;
        }
        break;
    case WEFT_OUTCOME_FAILED:
        if (e == NULL || weft_error_status(e) != LC_FAIL_CODE ||
            strcmp(weft_error_message(e), "lifecycle failure 7") != 0 ||
            weft_error_task_id(e) != weft_future_id(f) ||
            weft_error_task_name(e) == NULL ||
            strcmp(weft_error_task_name(e), LC_NAME) != 0 ||
            weft_error_line(e) == 0) {
            bad |= LC_BAD_ERROR;
        }
        break;
    default:
        /* Cancelled: the token's reason, never a failure of its own. */
        if (e == NULL || weft_error_status(e) != LC_REASON_CODE ||
            strcmp(weft_error_message(e), "lifecycle reason") != 0) {
            bad |= LC_BAD_ERROR;
        }
        break;
    }
    /* The release hook runs before the outcome is published. */
    if (atomic_load(&r->hook_runs) != 1) {
        bad |= LC_BAD_HOOK;
    }
    if (atomic_load(&r->body_runs) != lc_expected_body_runs(end)) {
        bad |= LC_BAD_BODY;
    }
    return bad;
}

static bool
lc_hung(uint64_t since)
{
    return lc_now_ns() - since > (uint64_t)LC_HANG_S * 1000000000ull;
}

static weft_status_t
lc_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct lc_run *r = arg;
    atomic_fetch_add(&r->body_runs, 1);
    if (r->c->end == LC_CANCEL_BEFORE_START) {
        atomic_fetch_or(&r->body_bad, LC_BAD_BODY);
    }
    /* The task's own token: a child of the spawn token (or that token
     * itself when the child could not be made). */
    weft_token_t *own = weft_task_token(self);
    if (own == NULL || weft_token_is_cancelled(own)) {
        atomic_fetch_or(&r->body_bad, LC_BAD_TOKEN);
    }
    if (!r->queued) {
        lc_event_add(&r->body_started);
    }
    switch (r->c->end) {
    case LC_CANCEL_WHILE_RUNNING: {
        /* Poll the token as a cooperative body does. */
        uint64_t t0 = lc_now_ns();
        while (!weft_task_is_cancelled(self)) {
            if (lc_hung(t0)) {
                atomic_fetch_or(&r->body_bad, LC_BAD_HANG);
                break;
            }
            sched_yield();
        }
        /* Not checked here: own is cancelled too, but a token cancel
         * reaches children after the parent's flag is set, so a poll that
         * sees the spawn token cancelled may still see own pending. */
        return WEFT_ECANCELED;
    }
    case LC_FAIL:
        if (!r->queued && !lc_event_wait(&r->body_gate, 1)) {
            atomic_fetch_or(&r->body_bad, LC_BAD_HANG);
        }
        return weft_task_fail(self, LC_FAIL_CODE, "lifecycle failure %d", 7);
    default:
        if (!r->queued && !lc_event_wait(&r->body_gate, 1)) {
            atomic_fetch_or(&r->body_bad, LC_BAD_HANG);
        }
        if (weft_task_is_cancelled(self)) {
            /* Cancel-after-completion cancels only after the end. */
            atomic_fetch_or(&r->body_bad, LC_BAD_TOKEN);
        }
        out->i64 = LC_VALUE;
        return WEFT_OK;
    }
}

static void
lc_hook(void *arg)
{
    struct lc_run *r = arg;
    atomic_fetch_add(&r->hook_runs, 1);
    /* The hook runs after the body, or instead of it. */
    if (atomic_load(&r->body_runs) != lc_expected_body_runs(r->c->end)) {
        atomic_fetch_or(&r->body_bad, LC_BAD_HOOK);
    }
    lc_event_add(&r->hook_done);
}

/* Worker gate: holds one worker until the test opens the gate. */
static weft_status_t
lc_gate(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)out;
    struct lc_run *r = arg;
    lc_event_add(&r->gates_started);
    if (!lc_event_wait(&r->worker_gate, 1)) {
        atomic_fetch_or(&r->body_bad, LC_BAD_HANG);
    }
    return WEFT_OK;
}

static weft_status_t
lc_cont(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct lc_run *r = arg;
    atomic_fetch_add(&r->cont_runs, 1);
    weft_future_t *a = weft_task_antecedent(self);
    if (a == NULL) {
        atomic_fetch_or(&r->cont_bad, LC_BAD_ANTECEDENT);
    } else {
        atomic_fetch_or(&r->cont_bad, lc_check_future(r, a));
    }
    out->i64 = LC_CONT_VALUE;
    lc_event_add(&r->cont_done);
    return WEFT_OK;
}

/* Waiter thread: weft_future_wait on its own reference, then release. */
static void *
lc_waiter_thread(void *arg)
{
    struct lc_run *r = arg;
    weft_status_t st = weft_future_wait(r->wait_ref);
    int bad = lc_check_future(r, r->wait_ref);
    if (st != lc_expected_status(r->c->end)) {
        bad |= LC_BAD_WAIT;
    }
    atomic_fetch_or(&r->waiter_bad, bad);
    weft_future_release(r->wait_ref);
    lc_event_add(&r->waiter_done);
    return NULL;
}

/* Waiter task: weft_join (waits helping, then releases) on a worker. */
static weft_status_t
lc_waiter_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)out;
    struct lc_run *r = arg;
    weft_value_t v = {.i64 = -1};
    weft_status_t st = weft_join(r->wait_ref, &v);
    int bad = 0;
    if (st != lc_expected_status(r->c->end)) {
        bad |= LC_BAD_WAIT;
    }
    if (st == WEFT_OK && v.i64 != LC_VALUE) {
        bad |= LC_BAD_VALUE;
    }
    if (atomic_load(&r->hook_runs) != 1) {
        bad |= LC_BAD_HOOK;
    }
    atomic_fetch_or(&r->waiter_bad, bad);
    lc_event_add(&r->waiter_done);
    return WEFT_OK;
}

/* Print a failure of this run (main thread). */
static void lc_fail(struct lc_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
lc_fail(struct lc_run *r, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL [%s, variant %u]: ", r->label, r->variant);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    r->failures++;
}

#define LC_CHECK(r, cond, ...)                                                \
    do {                                                                      \
        if (!(cond)) {                                                        \
            lc_fail((r), __VA_ARGS__);                                        \
        }                                                                     \
    } while (0)

static void
lc_report_bits(struct lc_run *r, const char *who, int bits)
{
    for (size_t i = 0; i < sizeof(lc_bad_names) / sizeof(lc_bad_names[0]);
         i++) {
        if (bits & (1 << i)) {
            lc_fail(r, "%s saw a wrong %s", who, lc_bad_names[i]);
        }
    }
}

/* Wait until f is done by polling (detached: nobody calls wait on it). */
static bool
lc_poll_done(const weft_future_t *f)
{
    uint64_t t0 = lc_now_ns();
    while (!weft_future_is_done(f)) {
        if (lc_hung(t0)) {
            return false;
        }
        sched_yield();
    }
    return true;
}

static void
lc_label(const struct lc_case *c, char *buf, size_t n)
{
    if (c->fire_and_forget) {
        snprintf(buf, n, "%s, fire-and-forget %s, %u worker(s)",
                 lc_end_names[c->end],
                 c->release_before ? "(handle released while pending)"
                                   : "(spawned with out == NULL)",
                 c->workers);
        return;
    }
    snprintf(buf, n,
             "%s, %s, continuation %s completion, handle released %s "
             "completion, %u worker(s)",
             lc_end_names[c->end], c->awaited ? "awaited" : "detached",
             c->cont_before ? "before" : "after",
             c->release_before ? "before" : "after", c->workers);
}

static weft_executor_t *
lc_make_executor(struct lc_run *r, unsigned int workers)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = workers;
    cfg.thread_name_prefix = "lc";
    weft_executor_t *ex = NULL;
    weft_status_t st = weft_executor_create(&cfg, &ex);
    LC_CHECK(r, st == WEFT_OK, "executor_create: %s", weft_status_name(st));
    return st == WEFT_OK ? ex : NULL;
}

/* Hold every worker with a gate task; the task spawned next stays queued. */
static void
lc_hold_workers(struct lc_run *r)
{
    for (unsigned int i = 0; i < r->c->workers; i++) {
        weft_status_t st = weft_spawn(r->ex, lc_gate, r, NULL);
        LC_CHECK(r, st == WEFT_OK, "gate spawn: %s", weft_status_name(st));
    }
    LC_CHECK(r, lc_event_wait(&r->gates_started, (int)r->c->workers),
             "hang: the gate tasks did not all start (%d of %u)",
             lc_event_count(&r->gates_started), r->c->workers);
}

/* Run one case; returns the number of failed checks. */
static int
lc_run_case(const struct lc_case *c, unsigned int variant)
{
    char label[200];
    lc_label(c, label, sizeof(label));
    struct lc_run run;
    memset(&run, 0, sizeof(run));
    struct lc_run *r = &run;
    r->c = c;
    r->variant = variant;
    r->label = label;
    r->queued = c->end == LC_CANCEL_BEFORE_START ||
                (c->end != LC_CANCEL_WHILE_RUNNING && (variant & 1) != 0);
    r->waiter_task = (variant & 2) != 0;
    lc_event_init(&r->gates_started);
    lc_event_init(&r->worker_gate);
    lc_event_init(&r->body_started);
    lc_event_init(&r->body_gate);
    lc_event_init(&r->cont_done);
    lc_event_init(&r->waiter_done);
    lc_event_init(&r->hook_done);
    /* Counters start at zero (memset); nothing else runs yet. */
    enum lc_end end = c->end;

    int64_t live0 = weft__alloc_live();
    r->ex = lc_make_executor(r, c->workers);
    if (r->ex == NULL) {
        return r->failures;
    }
    weft_status_t st = weft_token_create(NULL, &r->tok);
    LC_CHECK(r, st == WEFT_OK, "token_create: %s", weft_status_name(st));
    st = weft_error_create(&r->reason, LC_REASON_CODE, "lifecycle reason");
    LC_CHECK(r, st == WEFT_OK, "error_create: %s", weft_status_name(st));

    if (r->queued) {
        lc_hold_workers(r);
    }

    weft_spawn_opts_t o = {.release = lc_hook, .name = LC_NAME,
                           .token = r->tok, WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    bool keep = !(c->fire_and_forget && !c->release_before);
    st = weft_spawn_ex(r->ex, &o, lc_body, r, keep ? &f : NULL);
    LC_CHECK(r, st == WEFT_OK, "spawn: %s", weft_status_name(st));
    if (st != WEFT_OK) {
        lc_event_add(&r->worker_gate);
        (void)weft_executor_destroy(r->ex);
        return r->failures;
    }
    LC_CHECK(r, keep == (f != NULL), "spawn's *out");

    pthread_t waiter;
    memset(&waiter, 0, sizeof(waiter));
    bool waiter_thread = false;
    if (c->awaited && !c->fire_and_forget) {
        weft_future_retain(f);
        r->wait_ref = f;
        if (r->waiter_task) {
            st = weft_spawn(r->ex, lc_waiter_task, r, NULL);
            LC_CHECK(r, st == WEFT_OK, "waiter spawn: %s",
                     weft_status_name(st));
        } else {
            waiter_thread =
                pthread_create(&waiter, NULL, lc_waiter_thread, r) == 0;
            LC_CHECK(r, waiter_thread, "pthread_create");
        }
    }

    /* Bring the task to its pending state. */
    if (!r->queued) {
        LC_CHECK(r, lc_event_wait(&r->body_started, 1),
                 "hang: the body never started");
    }

    /* ---- while pending ---- */
    weft_future_t *held = f;      /* the caller's handle */
    weft_future_t *then_ref = NULL; /* kept to register "then" later */
    weft_future_t *cf = NULL;     /* the continuation's future */
    if (f != NULL) {
        LC_CHECK(r, weft_future_outcome(f) == WEFT_OUTCOME_PENDING &&
                        !weft_future_is_done(f),
                 "not pending while held pending");
        LC_CHECK(r, weft_future_has_started(f) == !r->queued,
                 "has_started while pending: %d",
                 (int)weft_future_has_started(f));
    }
    if (!c->fire_and_forget) {
        if (c->cont_before) {
            st = weft_future_then(f, lc_cont, r, c->awaited ? &cf : NULL);
            LC_CHECK(r, st == WEFT_OK, "then (before): %s",
                     weft_status_name(st));
        }
        if (c->release_before) {
            if (!c->cont_before) {
                weft_future_retain(f);
                then_ref = f;
            }
            weft_future_release(f);
            held = NULL;
        }
    } else if (c->release_before) {
        weft_future_release(f); /* the only reference: truly detached */
        held = NULL;
    }

    /* ---- drive it to its end ---- */
    /* Cancel through the token, or (variants 4-7, when the test still
     * holds a reference) through the future: weft_future_cancel(). */
    weft_future_t *handle = held != NULL ? held : then_ref;
    r->by_future = (variant & 4) != 0 && handle != NULL;
    switch (end) {
    case LC_CANCEL_BEFORE_START:
        st = r->by_future ? weft_future_cancel(handle, r->reason)
                          : weft_token_cancel(r->tok, r->reason);
        LC_CHECK(r, st == WEFT_OK, "cancel before start (%s): %s",
                 r->by_future ? "future" : "token", weft_status_name(st));
        lc_event_add(&r->worker_gate);
        break;
    case LC_CANCEL_WHILE_RUNNING:
        st = r->by_future ? weft_future_cancel(handle, r->reason)
                          : weft_token_cancel(r->tok, r->reason);
        LC_CHECK(r, st == WEFT_OK, "cancel while running (%s): %s",
                 r->by_future ? "future" : "token", weft_status_name(st));
        break;
    default:
        lc_event_add(r->queued ? &r->worker_gate : &r->body_gate);
        break;
    }

    /* ---- wait for the end without waiting on the future ---- */
    weft_future_t *observer = held != NULL ? held : then_ref;
    if (observer != NULL) {
        LC_CHECK(r, lc_poll_done(observer), "hang: the task never ended");
    } else if (!c->fire_and_forget) {
        LC_CHECK(r, lc_event_wait(&r->cont_done, 1),
                 "hang: the continuation never ran");
    } else {
        LC_CHECK(r, lc_event_wait(&r->hook_done, 1),
                 "hang: the release hook never ran");
    }

    /* ---- after the end ---- */
    if (end == LC_CANCEL_AFTER_COMPLETION) {
        if (r->by_future) {
            /* Too late: the future has ended; nothing changes. */
            st = weft_future_cancel(handle, r->reason);
            LC_CHECK(r, st == WEFT_EALREADY,
                     "cancel after completion (future): %s",
                     weft_status_name(st));
        } else {
            st = weft_token_cancel(r->tok, r->reason);
            LC_CHECK(r, st == WEFT_OK, "cancel after completion: %s",
                     weft_status_name(st));
        }
    }
    if (observer != NULL) {
        lc_report_bits(r, "the caller", lc_check_future(r, observer));
    }
    if (!c->fire_and_forget && !c->cont_before) {
        st = weft_future_then(observer, lc_cont, r, c->awaited ? &cf : NULL);
        LC_CHECK(r, st == WEFT_OK, "then (after): %s", weft_status_name(st));
    }
    if (held != NULL) {
        weft_future_release(held);
    }
    if (then_ref != NULL) {
        weft_future_release(then_ref);
    }

    /* ---- collect ---- */
    if (waiter_thread) {
        pthread_join(waiter, NULL);
    }
    if (c->awaited && !c->fire_and_forget) {
        LC_CHECK(r, lc_event_wait(&r->waiter_done, 1),
                 "hang: the waiter never returned");
        if (cf != NULL) {
            weft_value_t v = {.i64 = -1};
            st = weft_join(cf, &v);
            LC_CHECK(r, st == WEFT_OK && v.i64 == LC_CONT_VALUE,
                     "continuation's future: %s, %lld",
                     weft_status_name(st), (long long)v.i64);
        } else {
            lc_fail(r, "no continuation future for an awaited case");
        }
    } else if (!c->fire_and_forget) {
        LC_CHECK(r, lc_event_wait(&r->cont_done, 1),
                 "hang: the continuation never ran");
    }
    /* Open every gate that is still shut, then tear down. */
    if (lc_event_count(&r->worker_gate) == 0) {
        lc_event_add(&r->worker_gate);
    }
    if (lc_event_count(&r->body_gate) == 0) {
        lc_event_add(&r->body_gate);
    }
    st = weft_executor_destroy(r->ex);
    LC_CHECK(r, st == WEFT_OK, "executor_destroy: %s (a future still held?)",
             weft_status_name(st));

    /* ---- exactly once ---- */
    LC_CHECK(r, atomic_load(&r->body_runs) == lc_expected_body_runs(end),
             "body ran %d times, expected %d", atomic_load(&r->body_runs),
             lc_expected_body_runs(end));
    LC_CHECK(r, atomic_load(&r->hook_runs) == 1,
             "release hook ran %d times", atomic_load(&r->hook_runs));
    int conts = c->fire_and_forget ? 0 : 1;
    LC_CHECK(r, atomic_load(&r->cont_runs) == conts,
             "continuation ran %d times, expected %d",
             atomic_load(&r->cont_runs), conts);
    lc_report_bits(r, "the body", atomic_load(&r->body_bad));
    lc_report_bits(r, "the continuation", atomic_load(&r->cont_bad));
    lc_report_bits(r, r->waiter_task ? "the waiter task" : "the waiter thread",
                   atomic_load(&r->waiter_bad));

    weft_token_release(r->tok);
    weft_error_release(r->reason);
    int64_t leaked = weft__alloc_live() - live0;
    LC_CHECK(r, leaked == 0, "%lld block(s) leaked", (long long)leaked);

    lc_event_fini(&r->gates_started);
    lc_event_fini(&r->worker_gate);
    lc_event_fini(&r->body_started);
    lc_event_fini(&r->body_gate);
    lc_event_fini(&r->cont_done);
    lc_event_fini(&r->waiter_done);
    lc_event_fini(&r->hook_done);
    return r->failures;
}

/* ---- the matrix --------------------------------------------------------- */

#define LC_MATRIX_CASES 120
#define LC_FAF_CASES 30

/* Fill cases[] with the 120 matrix cells then the 30 fire-and-forget
 * cells; returns the number written (150). */
static size_t
lc_build_cases(struct lc_case *cases)
{
    size_t n = 0;
    for (unsigned int w = 0; w < 3; w++) {
        for (int end = 0; end < LC_NENDS; end++) {
            for (int bits = 0; bits < 8; bits++) {
                cases[n++] = (struct lc_case){
                    .end = (enum lc_end)end,
                    .awaited = (bits & 1) != 0,
                    .cont_before = (bits & 2) != 0,
                    .release_before = (bits & 4) != 0,
                    .fire_and_forget = false,
                    .workers = lc_workers[w]};
            }
        }
    }
    for (unsigned int w = 0; w < 3; w++) {
        for (int end = 0; end < LC_NENDS; end++) {
            for (int rel = 0; rel < 2; rel++) {
                cases[n++] = (struct lc_case){
                    .end = (enum lc_end)end,
                    .release_before = rel != 0,
                    .fire_and_forget = true,
                    .workers = lc_workers[w]};
            }
        }
    }
    return n;
}

/* Run every case matching (end, workers) (end < 0 or workers == 0: all)
 * for `rounds` rounds; returns the number of failed case runs. */
static long
lc_run_matrix(int end, unsigned int workers, long rounds, long *runs)
{
    static struct lc_case cases[LC_MATRIX_CASES + LC_FAF_CASES];
    size_t n = lc_build_cases(cases);
    long failed = 0;
    for (long round = 0; round < rounds; round++) {
        for (size_t i = 0; i < n; i++) {
            if ((end >= 0 && (int)cases[i].end != end) ||
                (workers != 0 && cases[i].workers != workers)) {
                continue;
            }
            (*runs)++;
            failed += lc_run_case(&cases[i], (unsigned int)round % 8) != 0;
        }
    }
    return failed;
}

#ifndef LC_NO_MAIN
int
main(void)
{
    long rounds = LC_DEFAULT_ROUNDS;
    const char *env = getenv("WEFT_STRESS_TRIALS");
    if (env != NULL && atol(env) > 0) {
        rounds = atol(env);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("stress_lifecycle: %d matrix cases (5 ends x awaited/detached x "
           "continuation before/after x release before/after x 1/2/4 "
           "workers) + %d fire-and-forget cases, %ld round(s)\n",
           LC_MATRIX_CASES, LC_FAF_CASES, rounds);
    uint64_t t0 = lc_now_ns();
    long runs = 0;
    long failed = lc_run_matrix(-1, 0, rounds, &runs);
    printf("stress_lifecycle: %ld case runs (%ld per round) in %.2f s\n",
           runs, runs / rounds, (double)(lc_now_ns() - t0) / 1e9);
    printf("%ld passed, %ld failed\n", runs - failed, failed);
    return failed == 0 ? 0 : 1;
}
#endif
