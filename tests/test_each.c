/*
 * test_each.c - bulk gathers (weft_gather_each, weft_gather_each_settled):
 * the semantics cells of docs/semantics.md (suite `semantics`, names
 * gather_each_* / each_settled_*) and the rest of the contract (suite
 * `each`). No test depends on timing: bodies that must be running when
 * something happens wait on flags, and every wait has a hang guard.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>
#include <weft/combine.h>
#include <weft/debug.h>

#include "primitives/alloc.h"

#define HANG_NS (20ull * 1000000000ull)

static int64_t live_at_start;

static void
begin(void)
{
    live_at_start = weft__alloc_live();
}

TestSuite(each, .init = begin, .timeout = 60.0);
TestSuite(semantics, .init = begin, .timeout = 60.0);

static void
finish(void)
{
    int64_t now = weft__alloc_live();
    cr_assert_eq(now, live_at_start, "leaked %lld blocks",
                 (long long)(now - live_at_start));
}

static weft_executor_t *
ex_new(unsigned int nworkers, bool debug)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = nworkers;
    cfg.debug_tasks = debug;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    return ex;
}

static void
ex_end(weft_executor_t *ex)
{
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- scripted bodies --------------------------------------------------- */

enum act {
    A_OK = 0,      /* value = 3 * i */
    A_FAIL,        /* weft_task_fail(WEFT_EUSER + 1) */
    A_CODE,        /* return WEFT_EUSER + 2 without recording */
    A_CANCEL_SELF, /* return WEFT_ECANCELED on its own */
    A_WAIT_CANCEL  /* mark started, spin until cancelled, WEFT_ECANCELED */
};

#define NMAX 4096

struct script {
    size_t n;
    uint8_t act[NMAX];
    atomic_uint calls[NMAX];
    atomic_uint started_waiters; /* A_WAIT_CANCEL bodies that began */
    atomic_uint saw_cancel;      /* of those, the ones that saw it */
    atomic_uint failers_go;      /* A_FAIL/A_CODE wait for this to be
                                    >= fail_after (0: at once) */
    unsigned int fail_after;
};

static void
script_init(struct script *s, size_t n)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
}

static bool
hang_guard(uint64_t t0)
{
    return weft_clock_now_ns() - t0 > HANG_NS;
}

static weft_status_t
script_body(weft_task_t *self, void *arg, size_t i, weft_value_t *value)
{
    struct script *s = arg;
    cr_assert_lt(i, s->n);
    atomic_fetch_add(&s->calls[i], 1);
    uint64_t t0 = weft_clock_now_ns();
    switch (s->act[i]) {
    case A_FAIL:
    case A_CODE:
    case A_CANCEL_SELF:
        while (atomic_load(&s->started_waiters) < s->fail_after &&
               !hang_guard(t0)) {
            sched_yield();
        }
        if (s->act[i] == A_CODE) {
            return WEFT_EUSER + 2;
        }
        if (s->act[i] == A_CANCEL_SELF) {
            return WEFT_ECANCELED;
        }
        return weft_task_fail(self, WEFT_EUSER + 1, "index %zu failed", i);
    case A_WAIT_CANCEL:
        atomic_fetch_add(&s->started_waiters, 1);
        while (!weft_task_is_cancelled(self) && !hang_guard(t0)) {
            sched_yield();
        }
        if (weft_task_is_cancelled(self)) {
            atomic_fetch_add(&s->saw_cancel, 1);
        }
        return WEFT_ECANCELED;
    default:
        value->u64 = 3 * (uint64_t)i;
        return WEFT_OK;
    }
}

static weft_status_t
wait_end(weft_future_t *f)
{
    weft_status_t st = weft_future_wait_until(f, weft_clock_now_ns() + HANG_NS);
    cr_assert_neq(st, WEFT_ETIMEDOUT, "the combined future never ended");
    return st;
}

static void
await_count(atomic_uint *c, unsigned int want)
{
    uint64_t t0 = weft_clock_now_ns();
    while (atomic_load(c) < want) {
        cr_assert(!hang_guard(t0), "waited too long for %u", want);
        sched_yield();
    }
}

static unsigned int
total_calls(struct script *s)
{
    unsigned int t = 0;
    for (size_t i = 0; i < s->n; i++) {
        unsigned int c = atomic_load(&s->calls[i]);
        cr_assert_leq(c, 1, "index %zu ran %u times", i, c);
        t += c;
    }
    return t;
}

static weft_child_result_t
child(weft_future_t *g, size_t i)
{
    weft_child_result_t r;
    cr_assert_eq(weft_combine_child(g, i, &r), WEFT_OK);
    cr_assert_null(r.future);
    return r;
}

/* Every entry agrees with the script and with whether its body ran;
 * returns the number of successes. */
static size_t
check_ledger(weft_future_t *g, struct script *s)
{
    size_t ok = 0;
    for (size_t i = 0; i < s->n; i++) {
        weft_child_result_t r = child(g, i);
        bool ran = atomic_load(&s->calls[i]) == 1;
        cr_assert_eq(r.started, ran, "index %zu started flag", i);
        if (!ran) {
            cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED, "index %zu", i);
            continue;
        }
        switch (s->act[i]) {
        case A_OK:
            cr_assert_eq(r.outcome, WEFT_OUTCOME_SUCCEEDED, "index %zu", i);
            cr_assert_eq(r.value.u64, 3 * (uint64_t)i);
            ok++;
            break;
        case A_FAIL:
        case A_CODE:
            cr_assert_eq(r.outcome, WEFT_OUTCOME_FAILED, "index %zu", i);
            cr_assert_not_null(r.error);
            cr_assert_eq(weft_error_status(r.error),
                         s->act[i] == A_FAIL ? WEFT_EUSER + 1 : WEFT_EUSER + 2);
            cr_assert(!r.cancelled_by_combinator);
            break;
        default:
            cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED, "index %zu", i);
            cr_assert_not_null(r.error);
            break;
        }
    }
    return ok;
}

static weft_combine_opts_t
opts_named(const char *name)
{
    weft_combine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.name = name;
    return o;
}

/* ---- semantics cells --------------------------------------------------- */

static void
all_succeed(bool settled)
{
    weft_executor_t *ex = ex_new(2, false);
    static struct script s;
    script_init(&s, 1000);
    weft_future_t *g = NULL;
    cr_assert_eq(
        settled ? weft_gather_each_settled(ex, s.n, script_body, &s, NULL, &g)
                : weft_gather_each(ex, s.n, script_body, &s, NULL, &g),
        WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    weft_value_t v;
    cr_assert_eq(weft_future_value(g, &v), WEFT_OK);
    cr_assert_eq(v.u64, 1000);
    cr_assert_eq(total_calls(&s), 1000);
    cr_assert_eq(check_ledger(g, &s), 1000);
    static weft_value_t vals[1000];
    cr_assert_eq(weft_combine_values(g, vals, 1000), WEFT_OK);
    for (size_t i = 0; i < 1000; i++) {
        cr_assert_eq(vals[i].u64, 3 * i);
    }
    cr_assert_eq(weft_combine_size(g), 1000);
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_combine_errors(g, &eg), WEFT_OK);
    cr_assert_eq(weft_errgroup_count(eg), 0);
    weft_errgroup_release(eg);
    weft_future_release(g);
    ex_end(ex);
    finish();
}

Test(semantics, gather_each_all_succeed)
{
    all_succeed(false);
}

Test(semantics, each_settled_all_succeed)
{
    all_succeed(true);
}

/*
 * Fail-fast on 2 workers, one piece each: every index but 500 (the first
 * of the second piece) waits for cancellation; index 500 fails once one
 * of them runs. However the pieces are split, the indices that start are
 * waiters, which must all see the cancellation, and index 500; the
 * others never start.
 */
static void
fail_fast(enum act how)
{
    weft_executor_t *ex = ex_new(2, false);
    static struct script s;
    script_init(&s, 1000);
    for (size_t i = 0; i < s.n; i++) {
        s.act[i] = A_WAIT_CANCEL;
    }
    s.act[500] = how;
    s.fail_after = 1;
    weft_combine_opts_t o = opts_named("ff");
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_each(ex, s.n, script_body, &s, &o, &g), WEFT_OK);
    weft_status_t st = wait_end(g);
    unsigned int waiters = atomic_load(&s.started_waiters);
    cr_assert_geq(waiters, 1);
    cr_assert_eq(atomic_load(&s.saw_cancel), waiters,
                 "the running indices saw the cancellation");
    cr_assert_eq(total_calls(&s), waiters + 1, "nothing else started");
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
    cr_assert_eq(weft_combine_decider(g), 500);
    weft_child_result_t trig = child(g, 500);
    cr_assert(trig.started);
    if (how == A_CANCEL_SELF) {
        cr_assert_eq(st, WEFT_EFAILED);
        cr_assert_eq(trig.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert(!trig.cancelled_by_combinator);
        cr_assert_eq(weft_error_cause(weft_future_error(g)), trig.error,
                     "trigger: EFAILED caused by the index's reason");
    } else {
        cr_assert_eq(st, WEFT_EUSER + 1);
        cr_assert_eq(trig.outcome, WEFT_OUTCOME_FAILED);
        cr_assert_eq(weft_future_error(g), trig.error,
                     "the gather's error is the index's own");
        cr_assert_str_eq(weft_error_task_name(trig.error), "ff[500]");
    }
    for (size_t i = 0; i < s.n; i++) {
        if (i == 500) {
            continue;
        }
        weft_child_result_t r = child(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED, "index %zu", i);
        cr_assert(r.cancelled_by_combinator, "index %zu by us", i);
        cr_assert_eq(r.started, atomic_load(&s.calls[i]) == 1,
                     "index %zu started", i);
        cr_assert_not_null(r.error);
        cr_assert_eq(weft_error_status(r.error), WEFT_ECANCELED);
        cr_assert_eq(weft_error_cause(r.error), weft_future_error(g),
                     "the siblings' reason is caused by the trigger");
    }
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_combine_errors(g, &eg), WEFT_OK);
    cr_assert_eq(weft_errgroup_count(eg), 1);
    weft_errgroup_entry_t ent;
    cr_assert_eq(weft_errgroup_entry(eg, 0, &ent), WEFT_OK);
    cr_assert_eq(ent.error, weft_future_error(g),
                 "the trigger is the group's first entry");
    weft_errgroup_release(eg);
    weft_future_release(g);
    ex_end(ex);
    finish();
}

Test(semantics, gather_each_child_fails)
{
    fail_fast(A_FAIL);
}

Test(semantics, gather_each_child_cancelled)
{
    fail_fast(A_CANCEL_SELF);
}

/* Settled: every index runs; failures and cancellations recorded. */
static void
settled_mixed(enum act how)
{
    weft_executor_t *ex = ex_new(2, false);
    static struct script s;
    script_init(&s, 1000);
    size_t bad = 0;
    for (size_t i = 3; i < s.n; i += 10) {
        s.act[i] = how;
        bad++;
    }
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_each_settled(ex, s.n, script_body, &s, NULL, &g),
                 WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(total_calls(&s), 1000, "nothing is cancelled");
    weft_value_t v;
    cr_assert_eq(weft_future_value(g, &v), WEFT_OK);
    cr_assert_eq(v.u64, 1000 - bad, "value: the number of successes");
    cr_assert_eq(check_ledger(g, &s), 1000 - bad);
    for (size_t i = 3; i < s.n; i += 10) {
        weft_child_result_t r = child(g, i);
        cr_assert(!r.cancelled_by_combinator);
    }
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_combine_errors(g, &eg), WEFT_OK);
    cr_assert_eq(weft_errgroup_count(eg), how == A_FAIL ? bad : 0);
    weft_errgroup_release(eg);
    weft_future_release(g);
    ex_end(ex);
    finish();
}

Test(semantics, each_settled_child_fails)
{
    settled_mixed(A_FAIL);
}

Test(semantics, each_settled_child_cancelled)
{
    settled_mixed(A_CANCEL_SELF);
}

/* The caller's token, cancelled before the call, or a deadline already
 * passed: nothing starts; CANCELLED with the reason. */
static void
caller_cancelled(bool settled, bool deadline)
{
    weft_executor_t *ex = ex_new(2, false);
    static struct script s;
    script_init(&s, 300);
    weft_token_t *T = NULL;
    weft_error_t *R = NULL;
    weft_combine_opts_t o = opts_named(NULL);
    if (deadline) {
        o.deadline_ns = weft_clock_now_ns() - 1;
    } else {
        cr_assert_eq(weft_token_create(NULL, &T), WEFT_OK);
        cr_assert_eq(weft_error_create(&R, WEFT_EUSER + 9, "gave up"), WEFT_OK);
        cr_assert_eq(weft_token_cancel(T, R), WEFT_OK);
        o.token = T;
    }
    weft_future_t *g = NULL;
    cr_assert_eq(
        settled ? weft_gather_each_settled(ex, s.n, script_body, &s, &o, &g)
                : weft_gather_each(ex, s.n, script_body, &s, &o, &g),
        WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_ECANCELED);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_CANCELLED);
    if (deadline) {
        cr_assert_eq(weft_error_status(weft_future_error(g)), WEFT_EDEADLINE);
    } else {
        cr_assert_eq(weft_future_error(g), R, "error: the token's reason");
    }
    cr_assert_eq(total_calls(&s), 0, "nothing started");
    for (size_t i = 0; i < s.n; i++) {
        weft_child_result_t r = child(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert(!r.started);
        cr_assert(r.cancelled_by_combinator);
        cr_assert_eq(r.error, weft_future_error(g));
    }
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_combine_errors(g, &eg), WEFT_OK);
    cr_assert_eq(weft_errgroup_count(eg), 0);
    weft_errgroup_release(eg);
    weft_future_release(g);
    if (T != NULL) {
        weft_token_release(T);
        weft_error_release(R);
    }
    ex_end(ex);
    finish();
}

Test(semantics, gather_each_token_cancelled)
{
    caller_cancelled(false, false);
}

Test(semantics, gather_each_deadline)
{
    caller_cancelled(false, true);
}

Test(semantics, each_settled_token_cancelled)
{
    caller_cancelled(true, false);
}

Test(semantics, each_settled_deadline)
{
    caller_cancelled(true, true);
}

/* ---- the rest of the contract ------------------------------------------ */

/* The caller's token cancelled while indices run, and
 * weft_future_cancel() on the combined future: running ones see it. */
static void
cancel_while_running(bool by_future, bool settled)
{
    weft_executor_t *ex = ex_new(2, false);
    static struct script s;
    script_init(&s, 4);
    for (size_t i = 0; i < s.n; i++) {
        s.act[i] = A_WAIT_CANCEL;
    }
    weft_token_t *T = NULL;
    cr_assert_eq(weft_token_create(NULL, &T), WEFT_OK);
    weft_combine_opts_t o = opts_named(NULL);
    o.token = T;
    weft_future_t *g = NULL;
    cr_assert_eq(
        settled ? weft_gather_each_settled(ex, s.n, script_body, &s, &o, &g)
                : weft_gather_each(ex, s.n, script_body, &s, &o, &g),
        WEFT_OK);
    await_count(&s.started_waiters, 2); /* one per piece at least */
    weft_error_t *R = NULL;
    cr_assert_eq(weft_error_create(&R, WEFT_EUSER + 4, "stop"), WEFT_OK);
    if (by_future) {
        cr_assert_eq(weft_future_cancel(g, R), WEFT_OK);
    } else {
        cr_assert_eq(weft_token_cancel(T, R), WEFT_OK);
    }
    cr_assert_eq(wait_end(g), WEFT_ECANCELED);
    cr_assert_eq(weft_future_error(g), R);
    unsigned int waiters = atomic_load(&s.started_waiters);
    cr_assert_geq(waiters, 2);
    cr_assert_eq(atomic_load(&s.saw_cancel), waiters);
    cr_assert_eq(total_calls(&s), waiters);
    for (size_t i = 0; i < s.n; i++) {
        weft_child_result_t r = child(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert_eq(r.started, atomic_load(&s.calls[i]) == 1);
        cr_assert(r.cancelled_by_combinator);
        cr_assert_eq(r.error, R);
    }
    if (by_future) {
        cr_assert_eq(weft_future_cancel(g, NULL), WEFT_EALREADY);
    }
    weft_future_release(g);
    weft_error_release(R);
    weft_token_release(T);
    ex_end(ex);
    finish();
}

Test(each, caller_token_cancelled_while_running)
{
    cancel_while_running(false, false);
    cancel_while_running(false, true);
}

Test(each, future_cancel_stops_the_indices)
{
    cancel_while_running(true, false);
    cancel_while_running(true, true);
}

/* Errors name the index, whether recorded or made from a code; every
 * failure is kept (settled, so nothing stops them). */
Test(each, errors_name_the_index)
{
    weft_executor_t *ex = ex_new(1, false);
    static struct script s;
    script_init(&s, 20);
    s.act[7] = A_FAIL;
    s.act[12] = A_CODE;
    weft_combine_opts_t o = opts_named("job");
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_each_settled(ex, s.n, script_body, &s, &o, &g),
                 WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_str_eq(weft_error_task_name(child(g, 7).error), "job[7]");
    cr_assert_str_eq(weft_error_task_name(child(g, 12).error), "job[12]");
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_combine_errors(g, &eg), WEFT_OK);
    cr_assert_eq(weft_errgroup_count(eg), 2);
    weft_errgroup_release(eg);
    weft_future_release(g);
    /* Without a name: the combinator's. */
    cr_assert_eq(weft_gather_each(ex, s.n, script_body, &s, NULL, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_EUSER + 1);
    cr_assert_str_eq(weft_error_task_name(weft_future_error(g)),
                     "gather_each[7]");
    weft_future_release(g);
    ex_end(ex);
    finish();
}

/* Nesting: each outer index runs a bulk gather of its own and joins it. */
static weft_status_t
inner_body(weft_task_t *self, void *arg, size_t i, weft_value_t *value)
{
    (void)self;
    value->u64 = (uint64_t)(uintptr_t)arg * 1000 + i;
    return WEFT_OK;
}

static weft_status_t
outer_body(weft_task_t *self, void *arg, size_t i, weft_value_t *value)
{
    (void)arg;
    weft_combine_opts_t o = opts_named("inner");
    o.token = weft_task_token(self);
    weft_future_t *g = NULL;
    weft_status_t st =
        weft_gather_each(weft_task_executor(self), 300, inner_body,
                         (void *)(uintptr_t)i, &o, &g);
    if (st != WEFT_OK) {
        return st;
    }
    st = weft_future_wait(g);
    uint64_t sum = 0;
    for (size_t j = 0; st == WEFT_OK && j < 300; j++) {
        weft_child_result_t r;
        (void)weft_combine_child(g, j, &r);
        sum += r.value.u64;
    }
    weft_future_release(g);
    value->u64 = sum;
    return st;
}

Test(each, nested_bulk_gathers)
{
    for (unsigned int p = 1; p <= 3; p++) {
        weft_executor_t *ex = ex_new(p, false);
        weft_future_t *g = NULL;
        cr_assert_eq(weft_gather_each(ex, 40, outer_body, NULL, NULL, &g),
                     WEFT_OK);
        cr_assert_eq(wait_end(g), WEFT_OK);
        for (size_t i = 0; i < 40; i++) {
            uint64_t want = 300 * 1000 * i + 300 * 299 / 2;
            cr_assert_eq(child(g, i).value.u64, want, "outer %zu", i);
        }
        weft_future_release(g);
        ex_end(ex);
    }
    finish();
}

/* Executor shutdown in cancel mode while the pieces are queued: every
 * index ends exactly once, CANCELLED, never started. */
static atomic_int gate_go;
static weft_future_t *shut_g;
static struct script shut_s;

static weft_status_t
gate_body(weft_task_t *self, void *arg, weft_value_t *value)
{
    (void)arg;
    (void)value;
    cr_assert_eq(weft_gather_each(weft_task_executor(self), shut_s.n,
                                  script_body, &shut_s, NULL, &shut_g),
                 WEFT_OK);
    uint64_t t0 = weft_clock_now_ns();
    while (!atomic_load(&gate_go) && !hang_guard(t0)) {
        sched_yield();
    }
    return WEFT_OK;
}

static weft_status_t
noop_body(weft_task_t *self, void *arg, weft_value_t *value)
{
    (void)self;
    (void)arg;
    (void)value;
    return WEFT_OK;
}

static void *
shutdown_thread(void *arg)
{
    (void)weft_executor_shutdown(arg, WEFT_SHUTDOWN_CANCEL);
    return NULL;
}

Test(each, shutdown_cancel_ends_every_index_once)
{
    weft_executor_t *ex = ex_new(1, false);
    script_init(&shut_s, 500);
    atomic_store(&gate_go, 0);
    weft_future_t *gate = NULL;
    cr_assert_eq(weft_spawn(ex, gate_body, NULL, &gate), WEFT_OK);
    uint64_t t0 = weft_clock_now_ns();
    /* The gather exists once the gate runs; then shut down. */
    while (weft_future_is_done(gate) == false &&
           __atomic_load_n(&shut_g, __ATOMIC_ACQUIRE) == NULL) {
        cr_assert(!hang_guard(t0));
        sched_yield();
    }
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, shutdown_thread, ex), 0);
    for (;;) {
        weft_future_t *f = NULL;
        weft_status_t st = weft_spawn(ex, noop_body, NULL, &f);
        if (st == WEFT_ESHUTDOWN) {
            break;
        }
        cr_assert_eq(st, WEFT_OK);
        weft_future_release(f);
        cr_assert(!hang_guard(t0));
        sched_yield();
    }
    atomic_store(&gate_go, 1);
    pthread_join(th, NULL);
    cr_assert_eq(wait_end(gate), WEFT_OK);
    weft_future_t *g = shut_g;
    cr_assert_eq(wait_end(g), WEFT_EFAILED, "cancelled from elsewhere");
    cr_assert_eq(total_calls(&shut_s), 0);
    for (size_t i = 0; i < shut_s.n; i++) {
        weft_child_result_t r = child(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert(!r.started);
        cr_assert_not_null(r.error);
    }
    cr_assert_eq(weft_error_status(child(g, 0).error), WEFT_ESHUTDOWN);
    weft_future_release(g);
    weft_future_release(gate);
    ex_end(ex);
    finish();
}

Test(each, bad_input_and_empty)
{
    weft_executor_t *ex = ex_new(2, false);
    weft_future_t *g = (weft_future_t *)&g;
    cr_assert_eq(weft_gather_each(NULL, 3, inner_body, NULL, NULL, &g),
                 WEFT_EINVAL);
    cr_assert_null(g);
    g = (weft_future_t *)&g;
    cr_assert_eq(weft_gather_each(ex, 3, NULL, NULL, NULL, &g), WEFT_EINVAL);
    cr_assert_null(g);
    cr_assert_eq(weft_gather_each(ex, 3, inner_body, NULL, NULL, NULL),
                 WEFT_EINVAL);
    g = (weft_future_t *)&g;
    cr_assert_eq(weft_gather_each_settled(ex, (size_t)UINT32_MAX, inner_body,
                                          NULL, NULL, &g),
                 WEFT_EINVAL);
    cr_assert_null(g);
    for (int settled = 0; settled < 2; settled++) {
        cr_assert_eq(
            settled
                ? weft_gather_each_settled(ex, 0, inner_body, NULL, NULL, &g)
                : weft_gather_each(ex, 0, inner_body, NULL, NULL, &g),
            WEFT_OK);
        cr_assert(weft_future_is_done(g), "n == 0 ends at once");
        cr_assert_eq(weft_future_status(g), WEFT_OK);
        cr_assert_eq(weft_combine_size(g), 0);
        weft_child_result_t r;
        cr_assert_eq(weft_combine_child(g, 0, &r), WEFT_ERANGE);
        weft_future_release(g);
    }
    ex_end(ex);
    finish();
}

/* Before the end: entries PENDING, values and errors ESTATE. */
Test(each, ledger_accessors)
{
    weft_executor_t *ex = ex_new(2, false);
    static struct script s;
    script_init(&s, 10);
    s.act[0] = A_WAIT_CANCEL;
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_each(ex, s.n, script_body, &s, NULL, &g), WEFT_OK);
    await_count(&s.started_waiters, 1);
    weft_child_result_t r;
    cr_assert_eq(weft_combine_child(g, 9, &r), WEFT_OK);
    cr_assert_eq(r.outcome, WEFT_OUTCOME_PENDING);
    cr_assert_eq(weft_combine_child(g, 10, &r), WEFT_ERANGE);
    cr_assert_eq(weft_combine_child(g, 0, NULL), WEFT_EINVAL);
    weft_value_t v[10];
    cr_assert_eq(weft_combine_values(g, v, 10), WEFT_ESTATE);
    cr_assert_eq(weft_combine_values(g, v, 11), WEFT_EINVAL);
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_combine_errors(g, &eg), WEFT_ESTATE);
    cr_assert_eq(weft_future_cancel(g, NULL), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_ECANCELED);
    cr_assert_eq(weft_combine_values(g, v, 10), WEFT_OK);
    for (size_t i = 0; i < 10; i++) {
        cr_assert_eq(v[i].u64,
                     child(g, i).outcome == WEFT_OUTCOME_SUCCEEDED ? 3 * i : 0);
    }
    weft_future_release(g);
    ex_end(ex);
    finish();
}

/* Two large gathers in a row (the second reuses the first's block), and
 * one larger than the spare. */
Test(each, large_gathers_reuse_the_block)
{
    weft_executor_t *ex = ex_new(2, false);
    size_t sizes[] = {100000, 100000, 200000, 50};
    for (size_t k = 0; k < 4; k++) {
        weft_future_t *g = NULL;
        cr_assert_eq(weft_gather_each_settled(ex, sizes[k], inner_body,
                                              (void *)(uintptr_t)k, NULL, &g),
                     WEFT_OK);
        cr_assert_eq(wait_end(g), WEFT_OK);
        weft_value_t v;
        cr_assert_eq(weft_future_value(g, &v), WEFT_OK);
        cr_assert_eq(v.u64, sizes[k]);
        cr_assert_eq(child(g, sizes[k] - 1).value.u64, k * 1000 + sizes[k] - 1);
        weft_future_release(g);
    }
    ex_end(ex);
    finish();
}

/* Debug mode: tracked pieces and combined future; clean destroy. */
static atomic_int reports;

static void
count_report(const char *report, void *user)
{
    (void)report;
    (void)user;
    atomic_fetch_add(&reports, 1);
}

Test(each, debug_mode)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    cfg.debug_tasks = true;
    cfg.on_debug_report = count_report;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    static struct script s;
    script_init(&s, 200);
    s.act[150] = A_FAIL;
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_each(ex, s.n, script_body, &s, NULL, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_EUSER + 1);
    weft_future_release(g);
    cr_assert_eq(weft_gather_each(ex, 30, outer_body, NULL, NULL, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    weft_future_release(g);
    ex_end(ex);
    cr_assert_eq(atomic_load(&reports), 0, "nothing to report");
    finish();
}
