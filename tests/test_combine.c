/*
 * test_combine.c - combinators (<weft/combine.h>): gather, gather_settled,
 * any, first_success, quorum, weft_wait, as-completed, the outcome ledger,
 * weft_future_cancel() on combined futures, adopt, nesting and misuse.
 *
 * Suite `semantics` holds one test per cell of the semantics table in
 * docs/semantics.md (named there); the other suites check the ledger
 * rules, cancellation of combined futures, nesting, adopt and bad input.
 *
 * No test depends on timing for ordering. Children are "gate" tasks that
 * spin (yielding) until the test opens their gate, or until they see
 * cancellation; the test learns that a gate task runs from its `started`
 * flag, and that it ended from weft_future_wait*(). Real time appears only
 * in hang guards (a gate that spins for HANG_NS gives up with a failure
 * the test then reports) and in deadline cells, where the gate stays shut
 * until after the combinator ended, so the only possible result is the
 * deadline's. Every test compares weft__alloc_live() before and after
 * (every executor destroyed) so a leaked reference fails it.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <weft/cancel.h>
#include <weft/combine.h>
#include <weft/errgroup.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/status.h>

#include "primitives/alloc.h"

#include "combine_fixture.h"

TestSuite(semantics, .init = begin, .timeout = 60.0);
TestSuite(ledger, .init = begin, .timeout = 60.0);
TestSuite(combine_cancel, .init = begin, .timeout = 60.0);
TestSuite(nesting, .init = begin, .timeout = 60.0);
TestSuite(adopt, .init = begin, .timeout = 60.0);
TestSuite(combine_misuse, .init = begin, .timeout = 60.0);
TestSuite(wait, .init = begin, .timeout = 60.0);
TestSuite(as_completed, .init = begin, .timeout = 60.0);

static weft_future_t *
spawn_leaf(weft_executor_t *ex, struct leaf *l, weft_token_t *tok)
{
    weft_spawn_opts_t o = {.release = leaf_release,
                           .name = "leaf",
                           .token = tok,
                           WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, leaf_body, l, &f), WEFT_OK);
    cr_assert_not_null(f);
    return f;
}

/* A leaf whose gate is open from the start; waits for it to end. */
static weft_future_t *
spawn_done(weft_executor_t *ex, struct leaf *l, weft_token_t *tok)
{
    leaf_open(l);
    weft_future_t *f = spawn_leaf(ex, l, tok);
    wait_end(f);
    return f;
}

static void
release_all(weft_future_t **f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(weft_future_release(f[i]), WEFT_OK);
    }
}

/* Each body ran at most `ran_max` times (0 or 1) and released once. */
static void
assert_accounting(struct leaf *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cr_assert_leq(atomic_load(&l[i].ran), 1, "leaf %zu ran twice", i);
        cr_assert_eq(atomic_load(&l[i].released), 1,
                     "leaf %zu: release hook ran %u times", i,
                     atomic_load(&l[i].released));
    }
}

/* ---- ledger helpers ------------------------------------------------------ */

static weft_child_result_t
child(const weft_future_t *c, size_t i)
{
    weft_child_result_t r;
    memset(&r, 0xab, sizeof(r));
    cr_assert_eq(weft_combine_child(c, i, &r), WEFT_OK, "ledger entry %zu",
                 i);
    return r;
}

static void
assert_child_succeeded(const weft_future_t *c, size_t i, weft_future_t *f,
                       int64_t value)
{
    weft_child_result_t r = child(c, i);
    cr_assert_eq(r.outcome, WEFT_OUTCOME_SUCCEEDED, "entry %zu: %s", i,
                 weft_outcome_name(r.outcome));
    cr_assert(r.started, "entry %zu: started", i);
    cr_assert_not(r.cancelled_by_combinator, "entry %zu", i);
    cr_assert_eq(r.value.i64, value, "entry %zu value", i);
    cr_assert_null(r.error, "entry %zu error", i);
    cr_assert_eq(r.future, f, "entry %zu future", i);
}

static void
assert_child_failed(const weft_future_t *c, size_t i, weft_future_t *f,
                    int code)
{
    weft_child_result_t r = child(c, i);
    cr_assert_eq(r.outcome, WEFT_OUTCOME_FAILED, "entry %zu: %s", i,
                 weft_outcome_name(r.outcome));
    cr_assert(r.started, "entry %zu: started", i);
    cr_assert_not_null(r.error);
    cr_assert_eq(r.error, weft_future_error(f), "entry %zu: borrowed error",
                 i);
    cr_assert_eq(weft_error_status(r.error), code, "entry %zu code %d", i,
                 weft_error_status(r.error));
    cr_assert_eq(r.value.i64, 0);
    cr_assert_eq(r.future, f);
}

/* Cancelled; by_us: cancelled_by_combinator expected. Returns the reason. */
/* started: 1 or 0 as expected, -1 unchecked (a combined child). */
static weft_error_t *
assert_child_cancelled(const weft_future_t *c, size_t i, weft_future_t *f,
                       bool by_us, int started)
{
    weft_child_result_t r = child(c, i);
    cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED, "entry %zu: %s", i,
                 weft_outcome_name(r.outcome));
    cr_assert_eq(r.cancelled_by_combinator, by_us,
                 "entry %zu: cancelled_by_combinator %d", i,
                 r.cancelled_by_combinator);
    if (started >= 0) {
        cr_assert_eq(r.started, started != 0, "entry %zu: started %d", i,
                     r.started);
    }
    cr_assert_not_null(r.error, "entry %zu: reason", i);
    cr_assert_eq(r.error, weft_future_error(f), "entry %zu: borrowed reason",
                 i);
    cr_assert_eq(r.value.i64, 0);
    cr_assert_eq(r.future, f);
    return r.error;
}

static void
assert_child_pending(const weft_future_t *c, size_t i, weft_future_t *f)
{
    weft_child_result_t r = child(c, i);
    cr_assert_eq(r.outcome, WEFT_OUTCOME_PENDING, "entry %zu: %s", i,
                 weft_outcome_name(r.outcome));
    cr_assert_null(r.error);
    cr_assert_eq(r.future, f);
}

static weft_errgroup_t *
errors_of(const weft_future_t *c)
{
    weft_errgroup_t *g = NULL;
    weft_status_t st = weft_combine_errors(c, &g);
    cr_assert_eq(st, WEFT_OK, "weft_combine_errors: %s", weft_status_name(st));
    cr_assert_not_null(g);
    return g;
}

static void
assert_no_errors(const weft_future_t *c)
{
    weft_errgroup_t *g = errors_of(c);
    cr_assert_eq(weft_errgroup_count(g), 0, "expected no failures, got %zu",
                 weft_errgroup_count(g));
    weft_errgroup_release(g);
}

static void
assert_values(const weft_future_t *c, const int64_t *want, size_t n)
{
    weft_value_t v[8];
    cr_assert_leq(n, 8);
    memset(v, 0xcd, sizeof(v));
    cr_assert_eq(weft_combine_values(c, v, n), WEFT_OK);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(v[i].i64, want[i], "value %zu: %lld, want %lld", i,
                     (long long)v[i].i64, (long long)want[i]);
    }
}

static weft_combine_opts_t
opts_of(weft_token_t *tok, uint64_t deadline, const char *name)
{
    weft_combine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.token = tok;
    o.deadline_ns = deadline;
    o.name = name;
    return o;
}

/* ---- the five combinators behind one signature ----------------------- */

enum kind { K_GATHER, K_SETTLED, K_ANY, K_FIRST, K_QUORUM2 };

static const char *const kind_names[] = {"gather", "settled", "any",
                                         "first_success", "quorum"};

static weft_status_t
combine(enum kind k, weft_executor_t *ex, weft_future_t *const *f, size_t n,
        const weft_combine_opts_t *o, weft_future_t **out)
{
    switch (k) {
    case K_GATHER:
        return weft_gather(ex, f, n, o, out);
    case K_SETTLED:
        return weft_gather_settled(ex, f, n, o, out);
    case K_ANY:
        return weft_any(ex, f, n, o, out);
    case K_FIRST:
        return weft_first_success(ex, f, n, o, out);
    case K_QUORUM2:
        return weft_quorum(ex, f, n, 2, o, out);
    }
    return WEFT_EINVAL;
}

/* =========================================================================
 * semantics: gather
 * ========================================================================= */

Test(semantics, gather_all_succeed)
{
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        struct leaf L[4];
        weft_future_t *f[4];
        /* They end in reverse input order before the gather exists. */
        for (int i = 3; i >= 0; i--) {
            leaf_init(&L[i], i, L_OK, 0, 100 + i, ON_CANCEL_STOP);
            f[i] = spawn_done(ex, &L[i], NULL);
        }
        weft_combine_opts_t o = opts_of(NULL, 0, "all");
        weft_future_t *g = NULL;
        cr_assert_eq(weft_gather(ex, f, 4, &o, &g), WEFT_OK);
        cr_assert_eq(wait_end(g), WEFT_OK);
        cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
        cr_assert_null(weft_future_error(g));
        cr_assert_str_eq(weft_future_name(g), "all");
        cr_assert_eq(weft_combine_size(g), 4);
        int64_t want[4] = {100, 101, 102, 103};
        assert_values(g, want, 4);
        for (size_t i = 0; i < 4; i++) {
            assert_child_succeeded(g, i, f[i], 100 + (int64_t)i);
        }
        assert_no_errors(g);
        cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
        cr_assert_eq(weft_future_release(g), WEFT_OK);
        release_all(f, 4);
        ex_end(ex);
        assert_accounting(L, 4);
    }
    finish();
}

Test(semantics, gather_child_fails)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[4];
    weft_future_t *f[4];
    leaf_init(&L[0], 0, L_OK, 0, 10, ON_CANCEL_STOP);   /* cancelled */
    leaf_init(&L[1], 1, L_FAIL, WEFT_EUSER + 1, 0, 0);  /* the trigger */
    leaf_init(&L[2], 2, L_OK, 0, 12, WEFT_EUSER + 2);   /* fails when told */
    leaf_init(&L[3], 3, L_OK, 0, 13, ON_CANCEL_IGNORE); /* stubborn */
    for (int i = 0; i < 4; i++) {
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, "g");
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 4, &o, &g), WEFT_OK);
    for (int i = 0; i < 4; i++) {
        await_flag(&L[i].started, "a leaf to start");
    }
    cr_assert_not(weft_future_is_done(g));
    leaf_open(&L[1]);
    /* Siblings are cancelled at once... */
    await_flag(&L[0].finished, "leaf 0 to stop");
    await_flag(&L[2].finished, "leaf 2 to stop");
    await_flag(&L[3].saw_cancel, "leaf 3 to see the cancellation");
    /* ...and the gather ends only once every sibling has stopped. */
    cr_assert_not(weft_future_is_done(g),
                  "gather ended while a sibling was still running");
    leaf_open(&L[3]);
    cr_assert_eq(wait_end(g), WEFT_EUSER + 1);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
    weft_error_t *trig = weft_future_error(f[1]);
    cr_assert(same_error(weft_future_error(g), trig),
              "the gather's error is the trigger's");
    cr_assert_eq(weft_combine_decider(g), 1);
    weft_error_t *r0 = assert_child_cancelled(g, 0, f[0], true, true);
    cr_assert(caused_by(weft_error_cause(r0), trig),
              "a fail-fast reason is caused by the trigger");
    assert_child_failed(g, 1, f[1], WEFT_EUSER + 1);
    assert_child_failed(g, 2, f[2], WEFT_EUSER + 2);
    assert_child_succeeded(g, 3, f[3], 13);
    int64_t want[4] = {0, 0, 0, 13};
    assert_values(g, want, 4);
    weft_errgroup_t *eg = errors_of(g);
    cr_assert_eq(weft_errgroup_count(eg), 2, "failures: %zu",
                 weft_errgroup_count(eg));
    cr_assert(same_error(entry_error(eg, 0), trig), "first entry: trigger");
    cr_assert_eq(entry_error(eg, 1), weft_future_error(f[2]));
    cr_assert_not_null(strstr(weft_errgroup_message(eg), "gather"),
                       "message names the combinator: %s",
                       weft_errgroup_message(eg));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 4);
    ex_end(ex);
    assert_accounting(L, 4);
    finish();
}

Test(semantics, gather_child_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 10 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], i == 1 ? tk : NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 3, &o, &g), WEFT_OK);
    for (int i = 0; i < 3; i++) {
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_error_t *R = err_new(WEFT_EUSER + 5, "cancelled from elsewhere");
    cr_assert_eq(weft_token_cancel(tk, R), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_EFAILED);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
    weft_error_t *ge = weft_future_error(g);
    cr_assert_eq(weft_error_status(ge), WEFT_EFAILED);
    cr_assert(same_error(weft_error_cause(ge), R),
              "EFAILED caused by the child's reason");
    cr_assert_eq(weft_combine_decider(g), 1);
    weft_error_t *r1 = assert_child_cancelled(g, 1, f[1], false, true);
    cr_assert(same_error(r1, R));
    for (size_t i = 0; i < 3; i += 2) {
        weft_error_t *ri = assert_child_cancelled(g, i, f[i], true, true);
        cr_assert(caused_by(weft_error_cause(ri), ge),
                  "sibling reason caused by the trigger: reason %s; "
                  "trigger %s",
                  FMT(ri), FMT(ge));
    }
    weft_errgroup_t *eg = errors_of(g);
    cr_assert_eq(weft_errgroup_count(eg), 1);
    cr_assert(same_error(entry_error(eg, 0), ge),
              "first entry %s; the combined future's error %s",
              FMT(entry_error(eg, 0)), FMT(ge));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    weft_error_release(R);
    weft_token_release(tk);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, gather_token_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *T = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    leaf_init(&L[0], 0, L_OK, 0, 50, ON_CANCEL_STOP);
    f[0] = spawn_done(ex, &L[0], NULL); /* already succeeded */
    for (int i = 1; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 50 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(T, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 3, &o, &g), WEFT_OK);
    weft_error_t *R = err_new(WEFT_EUSER + 6, "caller gave up");
    cr_assert_eq(weft_token_cancel(T, R), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_ECANCELED);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_CANCELLED);
    cr_assert(same_error(weft_future_error(g), R), "error: token's reason");
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    assert_child_succeeded(g, 0, f[0], 50);
    for (size_t i = 1; i < 3; i++) {
        weft_error_t *ri = assert_child_cancelled(g, i, f[i], true, true);
        cr_assert(same_error(ri, R), "children cancelled with the reason");
    }
    int64_t want[3] = {50, 0, 0};
    assert_values(g, want, 3);
    assert_no_errors(g);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    weft_error_release(R);
    weft_token_release(T);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

/*
 * Shared by the "caller's token / deadline" cells of the combinators other
 * than gather: three gate children that stop on cancellation; the gates
 * never open. how: 0 token, 1 deadline in the past, 2 deadline 20 ms out.
 */
static void
caller_cancel_scenario(enum kind k, int how)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *T = how == 0 ? tok_new() : NULL;
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 70 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
        if (how != 1) {
            await_flag(&L[i].started, "a leaf to start");
        }
    }
    uint64_t dl = how == 1 ? FAR_PAST : how == 2 ? deadline_in(20 * MS_NS) : 0;
    weft_combine_opts_t o = opts_of(T, dl, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(combine(k, ex, f, 3, &o, &g), WEFT_OK, "%s", kind_names[k]);
    weft_error_t *R = NULL;
    if (how == 0) {
        R = err_new(WEFT_EUSER + 6, "caller gave up");
        cr_assert_eq(weft_token_cancel(T, R), WEFT_OK);
    }
    cr_assert_eq(wait_end(g), WEFT_ECANCELED, "%s (how %d)", kind_names[k],
                 how);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_CANCELLED);
    weft_error_t *ge = weft_future_error(g);
    if (how == 0) {
        cr_assert(same_error(ge, R), "%s: error is the token's reason",
                  kind_names[k]);
    } else {
        cr_assert_eq(weft_error_status(ge), WEFT_EDEADLINE,
                     "%s: deadline reason, got %s", kind_names[k],
                     weft_status_name(weft_error_status(ge)));
    }
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX, "%s", kind_names[k]);
    for (size_t i = 0; i < 3; i++) {
        wait_end(f[i]);
        weft_child_result_t r = child(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED, "%s entry %zu: %s",
                     kind_names[k], i, weft_outcome_name(r.outcome));
        cr_assert(r.cancelled_by_combinator, "%s entry %zu", kind_names[k],
                  i);
        cr_assert_eq(r.error, weft_future_error(f[i]));
        if (how == 0) {
            cr_assert(same_error(r.error, R));
        } else {
            cr_assert_eq(weft_error_status(r.error), WEFT_EDEADLINE);
        }
    }
    assert_no_errors(g);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    if (R != NULL) {
        weft_error_release(R);
    }
    if (T != NULL) {
        weft_token_release(T);
    }
    ex_end(ex);
    assert_accounting(L, 3);
}

Test(semantics, gather_deadline)
{
    caller_cancel_scenario(K_GATHER, 1);
    caller_cancel_scenario(K_GATHER, 2);
    finish();
}

/* =========================================================================
 * semantics: gather_settled
 * ========================================================================= */

Test(semantics, settled_all_succeed)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 20 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_settled(ex, f, 3, &o, &g), WEFT_OK);
    for (int i = 2; i >= 0; i--) { /* end in reverse order */
        cr_assert_not(weft_future_is_done(g));
        leaf_open(&L[i]);
        wait_end(f[i]);
    }
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    int64_t want[3] = {20, 21, 22};
    assert_values(g, want, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_child_succeeded(g, i, f[i], 20 + (int64_t)i);
    }
    assert_no_errors(g);
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, settled_child_fails)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 1 ? L_FAIL : L_OK, WEFT_EUSER + 1, 20 + i,
                  ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_settled(ex, f, 3, &o, &g), WEFT_OK);
    leaf_open(&L[1]);
    wait_end(f[1]);
    /* Nothing is cancelled: the others run on and succeed when let go
     * (they would return WEFT_ECANCELED had they been cancelled). */
    cr_assert_not(weft_future_is_done(g), "settled must wait for all");
    leaf_open(&L[0]);
    leaf_open(&L[2]);
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    assert_child_succeeded(g, 0, f[0], 20);
    assert_child_failed(g, 1, f[1], WEFT_EUSER + 1);
    assert_child_succeeded(g, 2, f[2], 22);
    cr_assert_eq(atomic_load(&L[0].saw_cancel), 0);
    cr_assert_eq(atomic_load(&L[2].saw_cancel), 0);
    int64_t want[3] = {20, 0, 22};
    assert_values(g, want, 3);
    weft_errgroup_t *eg = errors_of(g);
    cr_assert_eq(weft_errgroup_count(eg), 1, "the failure is recorded");
    cr_assert_eq(entry_error(eg, 0), weft_future_error(f[1]));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, settled_child_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 20 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], i == 1 ? tk : NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_settled(ex, f, 3, &o, &g), WEFT_OK);
    weft_error_t *R = err_new(WEFT_EUSER + 5, "cancelled from elsewhere");
    cr_assert_eq(weft_token_cancel(tk, R), WEFT_OK);
    wait_end(f[1]);
    cr_assert_not(weft_future_is_done(g));
    leaf_open(&L[0]);
    leaf_open(&L[2]);
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    assert_child_succeeded(g, 0, f[0], 20);
    weft_error_t *r1 = assert_child_cancelled(g, 1, f[1], false, -1);
    cr_assert(same_error(r1, R));
    assert_child_succeeded(g, 2, f[2], 22);
    int64_t want[3] = {20, 0, 22};
    assert_values(g, want, 3);
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    weft_error_release(R);
    weft_token_release(tk);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, settled_token_cancelled)
{
    caller_cancel_scenario(K_SETTLED, 0);
    finish();
}

Test(semantics, settled_deadline)
{
    caller_cancel_scenario(K_SETTLED, 1);
    caller_cancel_scenario(K_SETTLED, 2);
    finish();
}

/* =========================================================================
 * semantics: any
 * ========================================================================= */

/* any with three gate children; `first` ends first as `mode`. The others
 * are never cancelled: their entries read PENDING until they end, and
 * they succeed once let go. */
static void
any_scenario(enum leaf_mode mode, bool external_cancel)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 2 ? mode : L_OK, WEFT_EUSER + 2, 30 + i,
                  ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], i == 2 ? tk : NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, "any");
    weft_future_t *g = NULL;
    cr_assert_eq(weft_any(ex, f, 3, &o, &g), WEFT_OK);
    cr_assert_not(weft_future_is_done(g));
    weft_error_t *R = NULL;
    if (external_cancel) {
        R = err_new(WEFT_EUSER + 5, "cancelled from elsewhere");
        cr_assert_eq(weft_token_cancel(tk, R), WEFT_OK);
    } else {
        leaf_open(&L[2]);
    }
    weft_status_t st = wait_end(g);
    cr_assert_eq(weft_combine_decider(g), 2);
    if (external_cancel) {
        cr_assert_eq(st, WEFT_EFAILED, "got %s (%s), error %s",
                     weft_status_name(st),
                     weft_outcome_name(weft_future_outcome(g)),
                     FMT(weft_future_error(g)));
        cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
        weft_error_t *ge = weft_future_error(g);
        cr_assert_eq(weft_error_status(ge), WEFT_EFAILED);
        cr_assert(same_error(weft_error_cause(ge), R));
        weft_error_t *r2 = assert_child_cancelled(g, 2, f[2], false, true);
        cr_assert(same_error(r2, R));
    } else if (mode == L_OK) {
        cr_assert_eq(st, WEFT_OK);
        weft_value_t v = {.i64 = -1};
        cr_assert_eq(weft_future_value(g, &v), WEFT_OK);
        cr_assert_eq(v.i64, 32, "any's value is the winner's");
        assert_child_succeeded(g, 2, f[2], 32);
    } else {
        cr_assert_eq(st, WEFT_EUSER + 2);
        cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
        cr_assert(same_error(weft_future_error(g), weft_future_error(f[2])));
        assert_child_failed(g, 2, f[2], WEFT_EUSER + 2);
    }
    /* The others: not cancelled, still pending. */
    assert_child_pending(g, 0, f[0]);
    assert_child_pending(g, 1, f[1]);
    weft_value_t vals[3];
    cr_assert_eq(weft_combine_values(g, vals, 3), WEFT_OK);
    cr_assert_eq(vals[0].i64, 0);
    cr_assert_eq(vals[1].i64, 0);
    leaf_open(&L[0]);
    leaf_open(&L[1]);
    cr_assert_eq(wait_end(f[0]), WEFT_OK, "any must cancel nothing");
    cr_assert_eq(wait_end(f[1]), WEFT_OK, "any must cancel nothing");
    assert_child_succeeded(g, 0, f[0], 30);
    assert_child_succeeded(g, 1, f[1], 31);
    /* The error group of an any() is checked in
     * ledger::any_errors_readable_when_ended. */
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    if (R != NULL) {
        weft_error_release(R);
    }
    weft_token_release(tk);
    ex_end(ex);
    assert_accounting(L, 3);
}

Test(semantics, any_all_succeed)
{
    any_scenario(L_OK, false);
    finish();
}

Test(semantics, any_child_fails)
{
    any_scenario(L_FAIL, false);
    finish();
}

Test(semantics, any_child_cancelled)
{
    any_scenario(L_OK, true);
    finish();
}

Test(semantics, any_token_cancelled)
{
    caller_cancel_scenario(K_ANY, 0);
    finish();
}

Test(semantics, any_deadline)
{
    caller_cancel_scenario(K_ANY, 1);
    caller_cancel_scenario(K_ANY, 2);
    finish();
}

/* =========================================================================
 * semantics: first_success
 * ========================================================================= */

Test(semantics, first_success_all_succeed)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 40 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_first_success(ex, f, 3, &o, &g), WEFT_OK);
    leaf_open(&L[1]);
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    weft_value_t v = {.i64 = -1};
    cr_assert_eq(weft_future_value(g, &v), WEFT_OK);
    cr_assert_eq(v.i64, 41);
    cr_assert_eq(weft_combine_decider(g), 1);
    /* It ended after the others stopped: they are final now. */
    assert_child_cancelled(g, 0, f[0], true, true);
    assert_child_succeeded(g, 1, f[1], 41);
    assert_child_cancelled(g, 2, f[2], true, true);
    int64_t want[3] = {0, 41, 0};
    assert_values(g, want, 3);
    assert_no_errors(g);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

static void
first_success_after_loss(bool external_cancel)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 0 ? L_FAIL : L_OK, WEFT_EUSER + 1, 40 + i,
                  ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], i == 0 ? tk : NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_first_success(ex, f, 3, &o, &g), WEFT_OK);
    weft_error_t *R = NULL;
    if (external_cancel) {
        R = err_new(WEFT_EUSER + 5, "cancelled from elsewhere");
        cr_assert_eq(weft_token_cancel(tk, R), WEFT_OK);
    } else {
        leaf_open(&L[0]);
    }
    wait_end(f[0]);
    cr_assert_not(weft_future_is_done(g), "first_success keeps waiting");
    cr_assert_eq(atomic_load(&L[1].saw_cancel), 0);
    leaf_open(&L[1]);
    cr_assert_eq(wait_end(g), WEFT_OK);
    weft_value_t v = {.i64 = -1};
    cr_assert_eq(weft_future_value(g, &v), WEFT_OK);
    cr_assert_eq(v.i64, 41);
    cr_assert_eq(weft_combine_decider(g), 1);
    if (external_cancel) {
        weft_error_t *r0 = assert_child_cancelled(g, 0, f[0], false, true);
        cr_assert(same_error(r0, R));
    } else {
        assert_child_failed(g, 0, f[0], WEFT_EUSER + 1);
        /* Nothing is dropped: the loss is still in the error group. */
        weft_errgroup_t *eg = errors_of(g);
        cr_assert_eq(weft_errgroup_count(eg), 1);
        cr_assert_eq(entry_error(eg, 0), weft_future_error(f[0]));
        weft_errgroup_release(eg);
    }
    assert_child_succeeded(g, 1, f[1], 41);
    assert_child_cancelled(g, 2, f[2], true, true);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    if (R != NULL) {
        weft_error_release(R);
    }
    weft_token_release(tk);
    ex_end(ex);
    assert_accounting(L, 3);
}

Test(semantics, first_success_child_fails)
{
    first_success_after_loss(false);
    finish();
}

Test(semantics, first_success_child_cancelled)
{
    first_success_after_loss(true);
    finish();
}

Test(semantics, first_success_token_cancelled)
{
    caller_cancel_scenario(K_FIRST, 0);
    finish();
}

Test(semantics, first_success_deadline)
{
    caller_cancel_scenario(K_FIRST, 1);
    caller_cancel_scenario(K_FIRST, 2);
    finish();
}

/* =========================================================================
 * semantics: quorum
 * ========================================================================= */

Test(semantics, quorum_all_succeed)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    leaf_init(&L[2], 2, L_OK, 0, 62, ON_CANCEL_STOP);
    f[2] = spawn_done(ex, &L[2], NULL); /* one success before the call */
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, 60 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_quorum(ex, f, 3, 2, &o, &g), WEFT_OK);
    cr_assert_not(weft_future_is_done(g), "1 of 2 is not a quorum");
    leaf_open(&L[0]);
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    cr_assert_eq(weft_combine_decider(g), 0, "child 0 completed the quorum");
    assert_child_succeeded(g, 0, f[0], 60);
    assert_child_cancelled(g, 1, f[1], true, true);
    assert_child_succeeded(g, 2, f[2], 62);
    int64_t want[3] = {60, 0, 62};
    assert_values(g, want, 3);
    assert_no_errors(g);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, quorum_child_fails)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    leaf_init(&L[0], 0, L_FAIL, WEFT_EUSER + 1, 0, ON_CANCEL_STOP);
    f[0] = spawn_done(ex, &L[0], NULL); /* first failure: 2 of 2 left */
    for (int i = 1; i < 3; i++) {
        leaf_init(&L[i], i, L_FAIL, WEFT_EUSER + (int)i + 1, 0,
                  ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_quorum(ex, f, 3, 2, &o, &g), WEFT_OK);
    cr_assert_not(weft_future_is_done(g), "2 of 3 is still reachable");
    leaf_open(&L[1]); /* now it is not */
    weft_status_t st = wait_end(g);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
    cr_expect_eq(st, WEFT_EUSER + 1, "status %d: the first failure's (%d)",
                 (int)st, WEFT_EUSER + 1);
    cr_expect(same_error(weft_future_error(g), weft_future_error(f[0])),
              "the error is the first failure's: got %s",
              FMT(weft_future_error(g)));
    assert_child_failed(g, 0, f[0], WEFT_EUSER + 1);
    assert_child_failed(g, 1, f[1], WEFT_EUSER + 2);
    assert_child_cancelled(g, 2, f[2], true, true);
    weft_errgroup_t *eg = errors_of(g);
    cr_assert_eq(weft_errgroup_count(eg), 2);
    cr_assert_eq(entry_error(eg, 0), weft_future_error(f[0]));
    cr_assert_eq(entry_error(eg, 1), weft_future_error(f[1]));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, quorum_child_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 60 + i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], i == 1 ? tk : NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    /* k == n: one cancellation makes the quorum unreachable. */
    cr_assert_eq(weft_quorum(ex, f, 3, 3, &o, &g), WEFT_OK);
    weft_error_t *R = err_new(WEFT_EUSER + 5, "cancelled from elsewhere");
    cr_assert_eq(weft_token_cancel(tk, R), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_EFAILED);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
    weft_error_t *ge = weft_future_error(g);
    cr_assert_eq(weft_error_status(ge), WEFT_EFAILED);
    cr_assert(same_error(weft_error_cause(ge), R));
    weft_error_t *r1 = assert_child_cancelled(g, 1, f[1], false, true);
    cr_assert(same_error(r1, R));
    assert_child_cancelled(g, 0, f[0], true, true);
    assert_child_cancelled(g, 2, f[2], true, true);
    weft_errgroup_t *eg = errors_of(g);
    cr_assert_eq(weft_errgroup_count(eg), 1);
    cr_assert(same_error(entry_error(eg, 0), ge),
              "first entry %s; the combined future's error %s",
              FMT(entry_error(eg, 0)), FMT(ge));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 3);
    weft_error_release(R);
    weft_token_release(tk);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, quorum_token_cancelled)
{
    caller_cancel_scenario(K_QUORUM2, 0);
    finish();
}

Test(semantics, quorum_deadline)
{
    caller_cancel_scenario(K_QUORUM2, 1);
    caller_cancel_scenario(K_QUORUM2, 2);
    finish();
}

/* =========================================================================
 * semantics: weft_wait (three modes)
 * ========================================================================= */

struct sets {
    size_t done[8], pending[8];
    size_t ndone, npending;
};

static weft_status_t
wait_sets(weft_future_t **f, size_t n, weft_wait_mode_t mode,
          weft_token_t *tok, uint64_t deadline, struct sets *s)
{
    memset(s, 0xee, sizeof(*s));
    if (deadline == 0) {
        deadline = deadline_in(HANG_NS);
    }
    return weft_wait(f, n, mode, tok, deadline, s->done, &s->ndone,
                     s->pending, &s->npending);
}

/* Expect the index sets as bit masks (input order is checked too). */
static void
assert_sets(const struct sets *s, unsigned done_mask, unsigned pending_mask)
{
    size_t nd = (size_t)__builtin_popcount(done_mask);
    size_t np = (size_t)__builtin_popcount(pending_mask);
    cr_assert_eq(s->ndone, nd, "ndone %zu, want %zu", s->ndone, nd);
    cr_assert_eq(s->npending, np, "npending %zu, want %zu", s->npending, np);
    size_t j = 0;
    for (size_t i = 0; i < 8; i++) {
        if (done_mask & (1u << i)) {
            cr_assert_eq(s->done[j], i, "done[%zu] = %zu, want %zu", j,
                         s->done[j], i);
            j++;
        }
    }
    j = 0;
    for (size_t i = 0; i < 8; i++) {
        if (pending_mask & (1u << i)) {
            cr_assert_eq(s->pending[j], i, "pending[%zu] = %zu, want %zu", j,
                         s->pending[j], i);
            j++;
        }
    }
}

/* Open every gate; each child must then succeed (nothing was cancelled). */
static void
wait_cleanup(weft_executor_t *ex, struct leaf *L, weft_future_t **f, size_t n,
             unsigned not_ok_mask)
{
    for (size_t i = 0; i < n; i++) {
        leaf_open(&L[i]);
    }
    for (size_t i = 0; i < n; i++) {
        weft_status_t st = wait_end(f[i]);
        if (!(not_ok_mask & (1u << i))) {
            cr_assert_eq(st, WEFT_OK, "child %zu: weft_wait cancels nothing",
                         i);
            cr_assert_eq(atomic_load(&L[i].saw_cancel), 0);
        }
    }
    release_all(f, n);
    ex_end(ex);
    assert_accounting(L, n);
}

Test(semantics, wait_first_completed_all_succeed)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    leaf_open(&L[1]);
    struct sets s;
    cr_assert_eq(wait_sets(f, 3, WEFT_WAIT_FIRST_COMPLETED, NULL, 0, &s),
                 WEFT_OK);
    assert_sets(&s, 0x2, 0x5);
    wait_cleanup(ex, L, f, 3, 0);
    finish();
}

Test(semantics, wait_first_completed_child_fails)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 2 ? L_FAIL : L_OK, WEFT_EUSER + 1, i,
                  ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    leaf_open(&L[2]);
    struct sets s;
    cr_assert_eq(wait_sets(f, 3, WEFT_WAIT_FIRST_COMPLETED, NULL, 0, &s),
                 WEFT_OK);
    assert_sets(&s, 0x4, 0x3);
    cr_assert_eq(weft_future_outcome(f[2]), WEFT_OUTCOME_FAILED);
    wait_cleanup(ex, L, f, 3, 0x4);
    finish();
}

Test(semantics, wait_first_completed_child_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], i == 0 ? tk : NULL);
    }
    cr_assert_eq(weft_token_cancel(tk, NULL), WEFT_OK);
    struct sets s;
    cr_assert_eq(wait_sets(f, 3, WEFT_WAIT_FIRST_COMPLETED, NULL, 0, &s),
                 WEFT_OK);
    assert_sets(&s, 0x1, 0x6);
    cr_assert_eq(weft_future_outcome(f[0]), WEFT_OUTCOME_CANCELLED);
    weft_token_release(tk);
    wait_cleanup(ex, L, f, 3, 0x1);
    finish();
}

/*
 * Token and deadline cells of weft_wait, for one mode: children that
 * never end while it waits. Child 0 has already succeeded (and, for
 * FIRST_FAILURE / ALL_COMPLETED, that does not satisfy the mode).
 * 1: pre-cancelled token; 2: token cancelled by another thread while it
 * waits (or before: the result is the same); 3: deadline in the past;
 * 4: deadline 20 ms out.
 */
struct canceller {
    weft_token_t *tok;
    atomic_uint go;
};

static void *
canceller_main(void *arg)
{
    struct canceller *c = arg;
    while (atomic_load_explicit(&c->go, memory_order_acquire) == 0) {
        sched_yield();
    }
    weft_token_cancel(c->tok, NULL);
    return NULL;
}

static void
wait_gives_up(weft_wait_mode_t mode)
{
    for (int how = 1; how <= 4; how++) {
        weft_executor_t *ex = ex_new(4);
        struct leaf L[3];
        weft_future_t *f[3];
        leaf_init(&L[0], 0, L_OK, 0, 0, ON_CANCEL_STOP);
        f[0] = spawn_done(ex, &L[0], NULL);
        for (int i = 1; i < 3; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            f[i] = spawn_leaf(ex, &L[i], NULL);
        }
        weft_token_t *tok = how <= 2 ? tok_new() : NULL;
        struct canceller c = {.tok = tok};
        pthread_t th;
        if (how == 1) {
            weft_token_cancel(tok, NULL);
        } else if (how == 2) {
            cr_assert_eq(pthread_create(&th, NULL, canceller_main, &c), 0);
            atomic_store_explicit(&c.go, 1, memory_order_release);
        }
        uint64_t dl = how == 3 ? FAR_PAST
                               : how == 4 ? deadline_in(20 * MS_NS) : 0;
        struct sets s;
        weft_status_t st = wait_sets(f, 3, mode, tok, dl, &s);
        if (mode == WEFT_WAIT_FIRST_COMPLETED) {
            /* Child 0 has ended: the condition holds at once. */
            cr_assert_eq(st, WEFT_OK, "how %d: %s", how,
                         weft_status_name(st));
        } else {
            cr_assert_eq(st, how <= 2 ? WEFT_EINTERRUPTED : WEFT_ETIMEDOUT,
                         "how %d: %s", how, weft_status_name(st));
        }
        assert_sets(&s, 0x1, 0x6);
        if (how == 2) {
            pthread_join(th, NULL);
        }
        if (tok != NULL) {
            weft_token_release(tok);
        }
        wait_cleanup(ex, L, f, 3, 0);
    }
    if (mode == WEFT_WAIT_FIRST_COMPLETED) {
        /* Nothing ended yet: then it does give up. */
        for (int how = 1; how <= 4; how++) {
            weft_executor_t *ex = ex_new(4);
            struct leaf L[2];
            weft_future_t *f[2];
            for (int i = 0; i < 2; i++) {
                leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
                f[i] = spawn_leaf(ex, &L[i], NULL);
            }
            weft_token_t *tok = how <= 2 ? tok_new() : NULL;
            struct canceller c = {.tok = tok};
            pthread_t th;
            if (how == 1) {
                weft_token_cancel(tok, NULL);
            } else if (how == 2) {
                cr_assert_eq(pthread_create(&th, NULL, canceller_main, &c),
                             0);
                atomic_store_explicit(&c.go, 1, memory_order_release);
            }
            uint64_t dl = how == 3 ? FAR_PAST
                                   : how == 4 ? deadline_in(20 * MS_NS) : 0;
            struct sets s;
            weft_status_t st = wait_sets(f, 2, mode, tok, dl, &s);
            cr_assert_eq(st, how <= 2 ? WEFT_EINTERRUPTED : WEFT_ETIMEDOUT,
                         "how %d: %s", how, weft_status_name(st));
            assert_sets(&s, 0x0, 0x3);
            if (how == 2) {
                pthread_join(th, NULL);
            }
            if (tok != NULL) {
                weft_token_release(tok);
            }
            wait_cleanup(ex, L, f, 2, 0);
        }
    }
}

Test(semantics, wait_first_completed_token_or_deadline)
{
    wait_gives_up(WEFT_WAIT_FIRST_COMPLETED);
    finish();
}

Test(semantics, wait_first_failure_all_succeed)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = i < 2 ? spawn_done(ex, &L[i], NULL) : spawn_leaf(ex, &L[i], NULL);
    }
    struct sets s;
    /* Two successes do not satisfy FIRST_FAILURE... */
    cr_assert_eq(wait_sets(f, 3, WEFT_WAIT_FIRST_FAILURE, NULL,
                           deadline_in(30 * MS_NS), &s),
                 WEFT_ETIMEDOUT);
    assert_sets(&s, 0x3, 0x4);
    /* ...all three ending does. */
    leaf_open(&L[2]);
    cr_assert_eq(wait_sets(f, 3, WEFT_WAIT_FIRST_FAILURE, NULL, 0, &s),
                 WEFT_OK);
    assert_sets(&s, 0x7, 0x0);
    wait_cleanup(ex, L, f, 3, 0);
    finish();
}

Test(semantics, wait_first_failure_child_fails)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 1 ? L_FAIL : L_OK, WEFT_EUSER + 1, i,
                  ON_CANCEL_STOP);
    }
    f[0] = spawn_done(ex, &L[0], NULL);
    f[1] = spawn_leaf(ex, &L[1], NULL);
    f[2] = spawn_leaf(ex, &L[2], NULL);
    leaf_open(&L[1]);
    struct sets s;
    cr_assert_eq(wait_sets(f, 3, WEFT_WAIT_FIRST_FAILURE, NULL, 0, &s),
                 WEFT_OK);
    assert_sets(&s, 0x3, 0x4);
    wait_cleanup(ex, L, f, 3, 0x2);
    finish();
}

Test(semantics, wait_first_failure_child_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
    }
    f[0] = spawn_done(ex, &L[0], NULL);
    f[1] = spawn_leaf(ex, &L[1], NULL);
    f[2] = spawn_leaf(ex, &L[2], tk);
    await_flag(&L[2].started, "leaf 2 to start");
    cr_assert_eq(weft_token_cancel(tk, NULL), WEFT_OK);
    struct sets s;
    cr_assert_eq(wait_sets(f, 3, WEFT_WAIT_FIRST_FAILURE, NULL, 0, &s),
                 WEFT_OK);
    assert_sets(&s, 0x5, 0x2);
    cr_assert_eq(weft_future_outcome(f[2]), WEFT_OUTCOME_CANCELLED);
    weft_token_release(tk);
    wait_cleanup(ex, L, f, 3, 0x4);
    finish();
}

Test(semantics, wait_first_failure_token_or_deadline)
{
    wait_gives_up(WEFT_WAIT_FIRST_FAILURE);
    finish();
}

/* ALL_COMPLETED: one child has ended as `mode` (or cancelled), the other
 * is still running: not yet; then it ends: done. */
static void
wait_all_scenario(enum leaf_mode mode, bool cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[2];
    weft_future_t *f[2];
    leaf_init(&L[0], 0, L_OK, 0, 0, ON_CANCEL_STOP);
    leaf_init(&L[1], 1, mode, WEFT_EUSER + 1, 1, ON_CANCEL_STOP);
    f[0] = spawn_leaf(ex, &L[0], NULL);
    if (cancelled) {
        f[1] = spawn_leaf(ex, &L[1], tk);
        cr_assert_eq(weft_token_cancel(tk, NULL), WEFT_OK);
        wait_end(f[1]);
    } else {
        f[1] = spawn_done(ex, &L[1], NULL);
    }
    struct sets s;
    cr_assert_eq(wait_sets(f, 2, WEFT_WAIT_ALL_COMPLETED, NULL,
                           deadline_in(30 * MS_NS), &s),
                 WEFT_ETIMEDOUT);
    assert_sets(&s, 0x2, 0x1);
    leaf_open(&L[0]);
    cr_assert_eq(wait_sets(f, 2, WEFT_WAIT_ALL_COMPLETED, NULL, 0, &s),
                 WEFT_OK);
    assert_sets(&s, 0x3, 0x0);
    weft_token_release(tk);
    wait_cleanup(ex, L, f, 2, mode == L_OK && !cancelled ? 0 : 0x2);
}

Test(semantics, wait_all_completed_all_succeed)
{
    wait_all_scenario(L_OK, false);
    finish();
}

Test(semantics, wait_all_completed_child_fails)
{
    wait_all_scenario(L_FAIL, false);
    finish();
}

Test(semantics, wait_all_completed_child_cancelled)
{
    wait_all_scenario(L_OK, true);
    finish();
}

Test(semantics, wait_all_completed_token_or_deadline)
{
    wait_gives_up(WEFT_WAIT_ALL_COMPLETED);
    finish();
}

/* =========================================================================
 * semantics: as-completed
 * ========================================================================= */

static weft_status_t
next_index(weft_as_completed_t *it, weft_token_t *tok, uint64_t dl, size_t *i)
{
    *i = SIZE_MAX;
    return weft_as_completed_next(it, tok, dl == 0 ? deadline_in(HANG_NS) : dl,
                                  i);
}

/* Children end one at a time in the order 2, 0, 1; `mode` and `cancel`
 * say how child 0 ends. */
static void
as_completed_scenario(enum leaf_mode mode, bool cancel)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 0 ? mode : L_OK, WEFT_EUSER + 1, i,
                  ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], i == 0 ? tk : NULL);
    }
    weft_as_completed_t *it = NULL;
    cr_assert_eq(weft_as_completed_create(f, 3, &it), WEFT_OK);
    release_all(f, 3); /* the iterator holds its own references */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(weft_as_completed_future(it, (size_t)i), f[i]);
    }
    size_t idx;
    leaf_open(&L[2]);
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_OK);
    cr_assert_eq(idx, 2);
    if (cancel) {
        cr_assert_eq(weft_token_cancel(tk, NULL), WEFT_OK);
    } else {
        leaf_open(&L[0]);
    }
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_OK);
    cr_assert_eq(idx, 0);
    weft_outcome_t want = cancel            ? WEFT_OUTCOME_CANCELLED
                          : mode == L_FAIL ? WEFT_OUTCOME_FAILED
                                            : WEFT_OUTCOME_SUCCEEDED;
    cr_assert_eq(weft_future_outcome(weft_as_completed_future(it, 0)), want);
    leaf_open(&L[1]);
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_OK);
    cr_assert_eq(idx, 1);
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_EEXHAUSTED);
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_EEXHAUSTED);
    cr_assert_eq(weft_as_completed_destroy(it), WEFT_OK);
    weft_token_release(tk);
    ex_end(ex);
    assert_accounting(L, 3);
}

Test(semantics, as_completed_all_succeed)
{
    as_completed_scenario(L_OK, false);
    finish();
}

Test(semantics, as_completed_child_fails)
{
    as_completed_scenario(L_FAIL, false);
    finish();
}

Test(semantics, as_completed_child_cancelled)
{
    as_completed_scenario(L_OK, true);
    finish();
}

Test(semantics, as_completed_token_or_deadline)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_as_completed_t *it = NULL;
    cr_assert_eq(weft_as_completed_create(f, 2, &it), WEFT_OK);
    size_t idx;
    /* Pre-cancelled token. */
    weft_token_t *t1 = tok_new();
    weft_token_cancel(t1, NULL);
    cr_assert_eq(next_index(it, t1, 0, &idx), WEFT_EINTERRUPTED);
    /* Token cancelled by another thread. */
    weft_token_t *t2 = tok_new();
    struct canceller c = {.tok = t2};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, canceller_main, &c), 0);
    atomic_store_explicit(&c.go, 1, memory_order_release);
    cr_assert_eq(next_index(it, t2, 0, &idx), WEFT_EINTERRUPTED);
    pthread_join(th, NULL);
    /* Deadlines. */
    cr_assert_eq(next_index(it, NULL, FAR_PAST, &idx), WEFT_ETIMEDOUT);
    cr_assert_eq(next_index(it, NULL, deadline_in(20 * MS_NS), &idx),
                 WEFT_ETIMEDOUT);
    /* The children were not cancelled, and the iteration goes on. */
    leaf_open(&L[1]);
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_OK);
    cr_assert_eq(idx, 1);
    leaf_open(&L[0]);
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_OK);
    cr_assert_eq(idx, 0);
    cr_assert_eq(weft_future_outcome(f[0]), WEFT_OUTCOME_SUCCEEDED);
    cr_assert_eq(weft_future_outcome(f[1]), WEFT_OUTCOME_SUCCEEDED);
    cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_EEXHAUSTED);
    cr_assert_eq(weft_as_completed_destroy(it), WEFT_OK);
    release_all(f, 2);
    weft_token_release(t1);
    weft_token_release(t2);
    ex_end(ex);
    assert_accounting(L, 2);
    finish();
}

/* =========================================================================
 * ledger: outcome-ledger rules
 * ========================================================================= */

/* Busy 1-worker executor: a gate task holds its only worker. */
struct busy {
    weft_executor_t *ex;
    struct leaf blocker;
    weft_future_t *bf;
};

static void
busy_start(struct busy *b)
{
    b->ex = ex_new(1);
    leaf_init(&b->blocker, 99, L_OK, 0, 0, ON_CANCEL_IGNORE);
    b->bf = spawn_leaf(b->ex, &b->blocker, NULL);
    await_flag(&b->blocker.started, "the blocker to start");
}

static void
busy_stop(struct busy *b)
{
    leaf_open(&b->blocker);
    cr_assert_eq(wait_end(b->bf), WEFT_OK);
    cr_assert_eq(weft_future_release(b->bf), WEFT_OK);
}

Test(ledger, fail_fast_never_started)
{
    struct busy b;
    busy_start(&b);
    weft_executor_t *ex2 = ex_new(1);
    struct leaf L[4];
    weft_future_t *f[4];
    leaf_init(&L[0], 0, L_FAIL, WEFT_EUSER + 1, 0, ON_CANCEL_STOP);
    f[0] = spawn_done(ex2, &L[0], NULL); /* the trigger, on another executor */
    for (int i = 1; i < 4; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        leaf_open(&L[i]);
        f[i] = spawn_leaf(b.ex, &L[i], NULL); /* queued behind the blocker */
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    /* The failure already happened: processed before the call returns. */
    cr_assert_eq(weft_gather(b.ex, f, 4, &o, &g), WEFT_OK);
    busy_stop(&b);
    cr_assert_eq(wait_end(g), WEFT_EUSER + 1);
    cr_assert_eq(weft_combine_decider(g), 0);
    weft_error_t *trig = weft_future_error(f[0]);
    for (size_t i = 1; i < 4; i++) {
        weft_error_t *r = assert_child_cancelled(g, i, f[i], true, false);
        cr_assert(caused_by(weft_error_cause(r), trig));
        cr_assert_not(weft_future_has_started(f[i]));
        cr_assert_eq(atomic_load(&L[i].ran), 0, "leaf %zu never runs", i);
    }
    weft_errgroup_t *eg = errors_of(g);
    cr_assert_eq(weft_errgroup_count(eg), 1, "never-started are no failures");
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 4);
    ex_end(b.ex);
    ex_end(ex2);
    assert_accounting(L, 4);
    finish();
}

Test(ledger, token_cancel_never_started)
{
    for (int k = K_GATHER; k <= K_QUORUM2; k++) {
        struct busy b;
        busy_start(&b);
        weft_token_t *T = tok_new();
        struct leaf L[3];
        weft_future_t *f[3];
        for (int i = 0; i < 3; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            leaf_open(&L[i]);
            f[i] = spawn_leaf(b.ex, &L[i], NULL);
        }
        weft_combine_opts_t o = opts_of(T, 0, NULL);
        weft_future_t *g = NULL;
        cr_assert_eq(combine((enum kind)k, b.ex, f, 3, &o, &g), WEFT_OK);
        cr_assert_eq(weft_token_cancel(T, NULL), WEFT_OK);
        busy_stop(&b);
        cr_assert_eq(wait_end(g), WEFT_ECANCELED, "%s", kind_names[k]);
        for (size_t i = 0; i < 3; i++) {
            assert_child_cancelled(g, i, f[i], true, false);
            cr_assert_eq(atomic_load(&L[i].ran), 0);
        }
        cr_assert_eq(weft_future_release(g), WEFT_OK);
        release_all(f, 3);
        weft_token_release(T);
        ex_end(b.ex);
        assert_accounting(L, 3);
    }
    finish();
}

Test(ledger, already_ended_failure_cancels_at_call)
{
    /* Child 1 never gets its gate opened: only the fail-fast that the
     * call itself runs can stop it. */
    weft_executor_t *ex = ex_new(2);
    struct leaf L[2];
    weft_future_t *f[2];
    leaf_init(&L[0], 0, L_FAIL, WEFT_EUSER + 3, 0, ON_CANCEL_STOP);
    f[0] = spawn_done(ex, &L[0], NULL);
    leaf_init(&L[1], 1, L_OK, 0, 1, ON_CANCEL_STOP);
    f[1] = spawn_leaf(ex, &L[1], NULL);
    await_flag(&L[1].started, "leaf 1 to start");
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 2, &o, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_EUSER + 3);
    assert_child_cancelled(g, 1, f[1], true, true);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 2);
    ex_end(ex);
    assert_accounting(L, 2);
    finish();
}

/* weft_combine_errors() answers WEFT_ESTATE only while the combined future
 * has not ended; an any() that ended with its other children running has
 * ended. */
Test(ledger, any_errors_readable_when_ended)
{
    weft_executor_t *ex = ex_new(2);
    struct leaf L[2];
    weft_future_t *f[2];
    leaf_init(&L[0], 0, L_FAIL, WEFT_EUSER + 4, 0, ON_CANCEL_STOP);
    leaf_init(&L[1], 1, L_OK, 0, 1, ON_CANCEL_STOP);
    f[0] = spawn_done(ex, &L[0], NULL);
    f[1] = spawn_leaf(ex, &L[1], NULL);
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_any(ex, f, 2, &o, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_EUSER + 4);
    assert_child_pending(g, 1, f[1]);
    weft_errgroup_t *eg = NULL;
    weft_status_t st = weft_combine_errors(g, &eg);
    leaf_open(&L[1]);
    wait_end(f[1]);
    cr_assert_eq(st, WEFT_OK,
                 "weft_combine_errors on an ended any(): %s (the header "
                 "allows WEFT_ESTATE only before the combined future ends)",
                 weft_status_name(st));
    cr_assert_geq(weft_errgroup_count(eg), 1);
    cr_assert_eq(entry_error(eg, 0), weft_future_error(f[0]));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 2);
    ex_end(ex);
    finish();
}

Test(ledger, values_in_input_order)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[4];
    weft_future_t *f[4];
    for (int i = 0; i < 4; i++) {
        leaf_init(&L[i], i, L_OK, 0, 1000 * (i + 1), ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 4, &o, &g), WEFT_OK);
    static const int order[4] = {2, 0, 3, 1};
    for (int j = 0; j < 4; j++) {
        leaf_open(&L[order[j]]);
        wait_end(f[order[j]]);
    }
    cr_assert_eq(wait_end(g), WEFT_OK);
    int64_t want[4] = {1000, 2000, 3000, 4000};
    assert_values(g, want, 4);
    /* A prefix is fine too. */
    weft_value_t two[2];
    cr_assert_eq(weft_combine_values(g, two, 2), WEFT_OK);
    cr_assert_eq(two[0].i64, 1000);
    cr_assert_eq(two[1].i64, 2000);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 4);
    ex_end(ex);
    finish();
}

/*
 * Errors follow the order in which failures happened. Children on a
 * 1-worker executor run one at a time (in whatever order it picks); each
 * ends, and the rule runs on that worker, before the next starts. So the
 * group's order must be the order of run_seq.
 */
Test(ledger, first_success_all_fail_order)
{
    struct busy b;
    busy_start(&b);
    struct leaf L[4];
    weft_future_t *f[4];
    for (int i = 0; i < 4; i++) {
        leaf_init(&L[i], i, L_FAIL, WEFT_EUSER + 10 + i, 0, ON_CANCEL_STOP);
        leaf_open(&L[i]);
        f[i] = spawn_leaf(b.ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_first_success(b.ex, f, 4, &o, &g), WEFT_OK);
    busy_stop(&b);
    weft_status_t st = wait_end(g);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
    size_t by_seq[4];
    for (size_t i = 0; i < 4; i++) {
        unsigned s = atomic_load(&L[i].seq);
        cr_assert(s >= 2 && s <= 5, "seq %u", s); /* blocker was 1 */
        by_seq[s - 2] = i;
    }
    cr_assert_eq(st, WEFT_EUSER + 10 + (int)by_seq[0],
                 "status: the first failure's (%d), got %d; error %s",
                 WEFT_EUSER + 10 + (int)by_seq[0], (int)st,
                 FMT(weft_future_error(g)));
    cr_assert(same_error(weft_future_error(g), weft_future_error(f[by_seq[0]])));
    weft_errgroup_t *eg = errors_of(g);
    cr_assert_eq(weft_errgroup_count(eg), 4);
    for (size_t j = 0; j < 4; j++) {
        cr_assert_eq(entry_error(eg, j), weft_future_error(f[by_seq[j]]),
                     "entry %zu in the order the failures happened", j);
    }
    weft_errgroup_release(eg);
    for (size_t i = 0; i < 4; i++) {
        assert_child_failed(g, i, f[i], WEFT_EUSER + 10 + (int)i);
    }
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 4);
    ex_end(b.ex);
    assert_accounting(L, 4);
    finish();
}

Test(ledger, first_success_all_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *tk = tok_new();
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], tk);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_first_success(ex, f, 2, &o, &g), WEFT_OK);
    weft_error_t *R = err_new(WEFT_EUSER + 5, "elsewhere");
    cr_assert_eq(weft_token_cancel(tk, R), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_EFAILED);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_FAILED);
    weft_error_t *ge = weft_future_error(g);
    cr_assert_eq(weft_error_status(ge), WEFT_EFAILED);
    cr_assert(same_error(weft_error_cause(ge), R));
    for (size_t i = 0; i < 2; i++) {
        assert_child_cancelled(g, i, f[i], false, true);
    }
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 2);
    weft_error_release(R);
    weft_token_release(tk);
    ex_end(ex);
    assert_accounting(L, 2);
    finish();
}

Test(ledger, readable_while_combined_lives)
{
    /* adopt: the caller holds no child; the ledger still reads them. */
    weft_executor_t *ex = ex_new(2);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 1 ? L_FAIL : L_OK, WEFT_EUSER + 1, i,
                  ON_CANCEL_STOP);
        f[i] = spawn_done(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    o.adopt = true;
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather_settled(ex, f, 3, &o, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    for (size_t i = 0; i < 3; i++) {
        weft_child_result_t r = child(g, i);
        cr_assert_eq(r.future, f[i]);
        cr_assert_eq(weft_future_outcome(r.future),
                     i == 1 ? WEFT_OUTCOME_FAILED : WEFT_OUTCOME_SUCCEEDED);
        if (i == 1) {
            cr_assert_eq(weft_error_status(r.error), WEFT_EUSER + 1);
            cr_assert_str_eq(weft_error_message(r.error), "leaf 1 failed");
        }
    }
    weft_child_result_t r;
    cr_assert_eq(weft_combine_child(g, 3, &r), WEFT_ERANGE);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(ledger, empty_gathers_succeed_at_once)
{
    weft_executor_t *ex = ex_new(1);
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, NULL, 0, &o, &g), WEFT_OK);
    cr_assert(weft_future_is_done(g));
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    cr_assert_eq(weft_combine_size(g), 0);
    cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
    assert_no_errors(g);
    cr_assert_eq(weft_combine_values(g, NULL, 0), WEFT_OK);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    g = NULL;
    cr_assert_eq(weft_gather_settled(ex, NULL, 0, &o, &g), WEFT_OK);
    cr_assert(weft_future_is_done(g));
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(ledger, children_of_other_executors)
{
    weft_executor_t *a = ex_new(1), *b = ex_new(2);
    struct leaf L[2];
    weft_future_t *f[2];
    leaf_init(&L[0], 0, L_OK, 0, 5, ON_CANCEL_STOP);
    leaf_init(&L[1], 1, L_OK, 0, 6, ON_CANCEL_STOP);
    f[0] = spawn_leaf(a, &L[0], NULL);
    f[1] = spawn_leaf(b, &L[1], NULL);
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    weft_executor_t *c = ex_new(1);
    cr_assert_eq(weft_gather(c, f, 2, &o, &g), WEFT_OK);
    leaf_open(&L[0]);
    leaf_open(&L[1]);
    cr_assert_eq(wait_end(g), WEFT_OK);
    int64_t want[2] = {5, 6};
    assert_values(g, want, 2);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 2);
    ex_end(c);
    ex_end(a);
    ex_end(b);
    finish();
}

Test(ledger, shutting_down_executor_accepts_combined)
{
    weft_executor_t *ex = ex_new(1);
    struct leaf L[1];
    weft_future_t *f[1];
    leaf_init(&L[0], 0, L_OK, 0, 8, ON_CANCEL_STOP);
    f[0] = spawn_done(ex, &L[0], NULL);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 1, &o, &g), WEFT_OK,
                 "a combined future is not a task");
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 1);
    ex_end(ex);
    finish();
}

/* =========================================================================
 * combine_cancel: weft_future_cancel() on combined futures and tasks
 * ========================================================================= */

Test(combine_cancel, combined_future_each_kind)
{
    for (int k = K_GATHER; k <= K_QUORUM2; k++) {
        weft_executor_t *ex = ex_new(4);
        struct leaf L[3];
        weft_future_t *f[3];
        for (int i = 0; i < 3; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            f[i] = spawn_leaf(ex, &L[i], NULL);
            await_flag(&L[i].started, "a leaf to start");
        }
        weft_combine_opts_t o = opts_of(NULL, 0, NULL);
        weft_future_t *g = NULL;
        cr_assert_eq(combine((enum kind)k, ex, f, 3, &o, &g), WEFT_OK);
        weft_error_t *R = err_new(WEFT_EUSER + 7, "stop it");
        cr_assert_eq(weft_future_cancel(g, R), WEFT_OK, "%s", kind_names[k]);
        cr_assert_eq(weft_future_cancel(g, NULL), WEFT_EALREADY);
        cr_assert_eq(wait_end(g), WEFT_ECANCELED, "%s", kind_names[k]);
        cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_CANCELLED);
        cr_assert(same_error(weft_future_error(g), R));
        cr_assert_eq(weft_combine_decider(g), SIZE_MAX);
        for (size_t i = 0; i < 3; i++) {
            wait_end(f[i]);
            weft_error_t *r = assert_child_cancelled(g, i, f[i], true, true);
            cr_assert(same_error(r, R), "%s: children get the reason",
                      kind_names[k]);
        }
        assert_no_errors(g);
        cr_assert_eq(weft_future_cancel(g, NULL), WEFT_EALREADY);
        cr_assert_eq(weft_future_release(g), WEFT_OK);
        release_all(f, 3);
        weft_error_release(R);
        ex_end(ex);
        assert_accounting(L, 3);
    }
    finish();
}

Test(combine_cancel, after_decision_is_too_late)
{
    weft_executor_t *ex = ex_new(2);
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, 3 + i, ON_CANCEL_STOP);
    }
    f[0] = spawn_done(ex, &L[0], NULL);
    f[1] = spawn_leaf(ex, &L[1], NULL);
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_any(ex, f, 2, &o, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_future_cancel(g, NULL), WEFT_EALREADY);
    cr_assert_eq(weft_future_outcome(g), WEFT_OUTCOME_SUCCEEDED);
    leaf_open(&L[1]);
    cr_assert_eq(wait_end(f[1]), WEFT_OK, "nothing was passed on");
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 2);
    ex_end(ex);
    finish();
}

Test(combine_cancel, token_already_cancelled)
{
    weft_executor_t *ex = ex_new(2);
    weft_token_t *T = tok_new();
    weft_error_t *R = err_new(WEFT_EUSER + 8, "before");
    cr_assert_eq(weft_token_cancel(T, R), WEFT_OK);
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(T, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 2, &o, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_ECANCELED);
    cr_assert(same_error(weft_future_error(g), R));
    for (size_t i = 0; i < 2; i++) {
        wait_end(f[i]);
        weft_child_result_t r = child(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert(r.cancelled_by_combinator);
    }
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 2);
    weft_error_release(R);
    weft_token_release(T);
    ex_end(ex);
    assert_accounting(L, 2);
    finish();
}

Test(combine_cancel, plain_task_queued_and_running)
{
    struct busy b;
    busy_start(&b);
    struct leaf q;
    leaf_init(&q, 1, L_OK, 0, 1, ON_CANCEL_STOP);
    leaf_open(&q);
    weft_future_t *fq = spawn_leaf(b.ex, &q, NULL);
    weft_error_t *R = err_new(WEFT_EUSER + 9, "no longer wanted");
    cr_assert_eq(weft_future_cancel(fq, R), WEFT_OK);
    cr_assert_eq(weft_future_cancel(fq, NULL), WEFT_EALREADY);
    /* The running blocker sees it too (it ignores it until let go). */
    cr_assert_eq(weft_future_cancel(b.bf, NULL), WEFT_OK);
    await_flag(&b.blocker.saw_cancel, "the blocker to see cancellation");
    busy_stop(&b); /* returns WEFT_OK anyway: it succeeded */
    cr_assert_eq(wait_end(fq), WEFT_ECANCELED);
    cr_assert_not(weft_future_has_started(fq));
    cr_assert_eq(atomic_load(&q.ran), 0);
    cr_assert_eq(atomic_load(&q.released), 1);
    cr_assert(same_error(weft_future_error(fq), R));
    cr_assert_eq(weft_future_cancel(fq, NULL), WEFT_EALREADY);
    cr_assert_eq(weft_future_cancel(NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_future_release(fq), WEFT_OK);
    weft_error_release(R);
    ex_end(b.ex);
    finish();
}

/* =========================================================================
 * nesting: first failure through nested combinators
 * ========================================================================= */

Test(nesting, gather_of_gathers)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf A[2], B[2];
    weft_future_t *fa[2], *fb[2];
    leaf_init(&A[0], 0, L_FAIL, WEFT_EUSER + 1, 0, ON_CANCEL_STOP);
    leaf_init(&A[1], 1, L_OK, 0, 1, ON_CANCEL_STOP);
    leaf_init(&B[0], 2, L_OK, 0, 2, ON_CANCEL_STOP);
    leaf_init(&B[1], 3, L_OK, 0, 3, ON_CANCEL_STOP);
    for (int i = 0; i < 2; i++) {
        fa[i] = spawn_leaf(ex, &A[i], NULL);
        fb[i] = spawn_leaf(ex, &B[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *inner[2], *outer = NULL;
    cr_assert_eq(weft_gather(ex, fa, 2, &o, &inner[0]), WEFT_OK);
    cr_assert_eq(weft_gather(ex, fb, 2, &o, &inner[1]), WEFT_OK);
    cr_assert_eq(weft_gather(ex, inner, 2, &o, &outer), WEFT_OK);
    await_flag(&A[1].started, "A1");
    await_flag(&B[0].started, "B0");
    await_flag(&B[1].started, "B1");
    leaf_open(&A[0]);
    cr_assert_eq(wait_end(outer), WEFT_EUSER + 1);
    weft_error_t *leaf_err = weft_future_error(fa[0]);
    cr_assert(same_error(weft_future_error(outer), leaf_err),
              "the leaf's failure propagates unchanged to the root");
    cr_assert_eq(weft_combine_decider(outer), 0);
    weft_child_result_t r0 = child(outer, 0);
    cr_assert_eq(r0.outcome, WEFT_OUTCOME_FAILED);
    weft_error_t *rb = assert_child_cancelled(outer, 1, inner[1], true, -1);
    cr_assert(caused_by(weft_error_cause(rb), leaf_err));
    /* The cancelled inner gather passed the request on to its leaves. */
    for (size_t i = 0; i < 2; i++) {
        weft_error_t *r = assert_child_cancelled(inner[1], i, fb[i], true,
                                                 true);
        cr_assert(caused_by(r, leaf_err), "the leaf's reason leads to A0");
    }
    assert_child_cancelled(inner[0], 1, fa[1], true, true);
    weft_errgroup_t *eg = errors_of(outer);
    cr_assert_eq(weft_errgroup_leaf_count(eg), 1);
    weft_error_t *first = NULL;
    cr_assert_eq(weft_errgroup_first_leaf(eg, &first), WEFT_OK);
    cr_assert(same_error(first, leaf_err));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(outer), WEFT_OK);
    release_all(inner, 2);
    release_all(fa, 2);
    release_all(fb, 2);
    ex_end(ex);
    assert_accounting(A, 2);
    assert_accounting(B, 2);
    finish();
}

/*
 * outer = gather(G1, T), G1 = gather(x0, x1) of leaves, T = a task whose
 * body makes inner = gather(y0, y1) with opts.token = weft_task_token(self)
 * and waits for it. x0 fails: G1 fails, the outer gather cancels T, T's
 * own token cancels inner, inner cancels y0 and y1. Leaves run on their
 * own executor so no worker helping in a wait can be stuck in one.
 */
struct tree_task {
    weft_executor_t *leaf_ex;
    struct leaf *y;
    weft_future_t *fy[2];
    weft_future_t *inner;
    atomic_uint made;
    weft_status_t inner_status;
    weft_outcome_t y_outcome[2];
    bool y_by_comb[2];
    bool token_cancelled;
};

static weft_status_t
tree_task_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct tree_task *t = arg;
    weft_token_t *mine = weft_task_token(self);
    for (int i = 0; i < 2; i++) {
        weft_spawn_opts_t so = {.release = leaf_release, .name = "y"};
        if (weft_spawn_ex(t->leaf_ex, &so, leaf_body, &t->y[i], &t->fy[i]) !=
            WEFT_OK) {
            return WEFT_EUSER + 50;
        }
    }
    weft_combine_opts_t o = opts_of(mine, 0, "inner");
    if (weft_gather(weft_task_executor(self), t->fy, 2, &o, &t->inner) !=
        WEFT_OK) {
        return WEFT_EUSER + 51;
    }
    atomic_store_explicit(&t->made, 1, memory_order_release);
    t->inner_status = weft_future_wait(t->inner);
    t->token_cancelled = weft_token_is_cancelled(mine);
    for (size_t i = 0; i < 2; i++) {
        weft_child_result_t r;
        if (weft_combine_child(t->inner, i, &r) == WEFT_OK) {
            t->y_outcome[i] = r.outcome;
            t->y_by_comb[i] = r.cancelled_by_combinator;
        }
    }
    if (t->inner_status == WEFT_ECANCELED) {
        return WEFT_ECANCELED;
    }
    return t->inner_status == WEFT_OK
               ? WEFT_OK
               : weft_task_fail_with(self, weft_future_error(t->inner));
}

Test(nesting, task_token_tree)
{
    weft_executor_t *ex = ex_new(2);
    weft_executor_t *lex = ex_new(4);
    struct leaf X[2], Y[2];
    leaf_init(&X[0], 0, L_FAIL, WEFT_EUSER + 1, 0, ON_CANCEL_STOP);
    leaf_init(&X[1], 1, L_OK, 0, 1, ON_CANCEL_STOP);
    leaf_init(&Y[0], 2, L_OK, 0, 2, ON_CANCEL_STOP);
    leaf_init(&Y[1], 3, L_OK, 0, 3, ON_CANCEL_STOP);
    weft_future_t *fx[2];
    for (int i = 0; i < 2; i++) {
        fx[i] = spawn_leaf(lex, &X[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, "outer");
    weft_future_t *top[2], *outer = NULL;
    cr_assert_eq(weft_gather(ex, fx, 2, &o, &top[0]), WEFT_OK);
    struct tree_task t;
    memset(&t, 0, sizeof(t));
    t.leaf_ex = lex;
    t.y = Y;
    weft_spawn_opts_t so = {.name = "T", WEFT_SPAWN_SITE};
    cr_assert_eq(weft_spawn_ex(ex, &so, tree_task_body, &t, &top[1]),
                 WEFT_OK);
    cr_assert_eq(weft_gather(ex, top, 2, &o, &outer), WEFT_OK);
    await_flag(&t.made, "T to make its inner gather");
    await_flag(&Y[0].started, "y0");
    await_flag(&Y[1].started, "y1");
    await_flag(&X[1].started, "x1");
    leaf_open(&X[0]);
    cr_assert_eq(wait_end(outer), WEFT_EUSER + 1);
    weft_error_t *leaf_err = weft_future_error(fx[0]);
    cr_assert(same_error(weft_future_error(outer), leaf_err));
    assert_child_cancelled(outer, 1, top[1], true, true);
    cr_assert(t.token_cancelled, "T's own token was cancelled");
    cr_assert_eq(t.inner_status, WEFT_ECANCELED);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(t.y_outcome[i], WEFT_OUTCOME_CANCELLED);
        cr_assert(t.y_by_comb[i]);
        cr_assert_eq(atomic_load(&Y[i].saw_cancel), 1);
        cr_assert(caused_by(weft_future_error(t.fy[i]), leaf_err),
                  "y%d's reason leads back to x0's failure", i);
    }
    cr_assert_eq(weft_future_release(outer), WEFT_OK);
    release_all(top, 2);
    release_all(fx, 2);
    cr_assert_eq(weft_future_release(t.inner), WEFT_OK);
    release_all(t.fy, 2);
    ex_end(ex);
    ex_end(lex);
    assert_accounting(X, 2);
    assert_accounting(Y, 2);
    finish();
}

/* Nested first_success(gather, gather): one inner gather fails, the other
 * succeeds; the root succeeds and still reports the failure. */
Test(nesting, first_success_of_gathers)
{
    weft_executor_t *ex = ex_new(2);
    struct leaf A[2], B[2];
    weft_future_t *fa[2], *fb[2];
    leaf_init(&A[0], 0, L_FAIL, WEFT_EUSER + 1, 0, ON_CANCEL_STOP);
    leaf_init(&A[1], 1, L_OK, 0, 1, ON_CANCEL_STOP);
    leaf_init(&B[0], 2, L_OK, 0, 2, ON_CANCEL_STOP);
    leaf_init(&B[1], 3, L_OK, 0, 3, ON_CANCEL_STOP);
    fa[0] = spawn_done(ex, &A[0], NULL);
    fa[1] = spawn_done(ex, &A[1], NULL);
    fb[0] = spawn_done(ex, &B[0], NULL);
    fb[1] = spawn_done(ex, &B[1], NULL);
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *inner[2], *root = NULL;
    cr_assert_eq(weft_gather(ex, fa, 2, &o, &inner[0]), WEFT_OK);
    cr_assert_eq(weft_gather(ex, fb, 2, &o, &inner[1]), WEFT_OK);
    wait_end(inner[0]);
    wait_end(inner[1]);
    cr_assert_eq(weft_first_success(ex, inner, 2, &o, &root), WEFT_OK);
    cr_assert_eq(wait_end(root), WEFT_OK);
    cr_assert_eq(weft_combine_decider(root), 1);
    weft_errgroup_t *eg = errors_of(root);
    cr_assert_eq(weft_errgroup_leaf_count(eg), 1);
    weft_error_t *first = NULL;
    cr_assert_eq(weft_errgroup_first_leaf(eg, &first), WEFT_OK);
    cr_assert(same_error(first, weft_future_error(fa[0])));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_future_release(root), WEFT_OK);
    release_all(inner, 2);
    release_all(fa, 2);
    release_all(fb, 2);
    ex_end(ex);
    finish();
}

/* =========================================================================
 * adopt
 * ========================================================================= */

Test(adopt, true_takes_the_references)
{
    for (int k = K_GATHER; k <= K_QUORUM2; k++) {
        weft_executor_t *ex = ex_new(2);
        struct leaf L[3];
        weft_future_t *f[3];
        for (int i = 0; i < 3; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            f[i] = spawn_leaf(ex, &L[i], NULL);
        }
        weft_combine_opts_t o = opts_of(NULL, 0, NULL);
        o.adopt = true;
        weft_future_t *g = NULL;
        cr_assert_eq(combine((enum kind)k, ex, f, 3, &o, &g), WEFT_OK);
        for (int i = 0; i < 3; i++) {
            leaf_open(&L[i]);
        }
        wait_end(g);
        /* The caller gave up its child references: only g is held. */
        cr_assert_eq(weft_future_release(g), WEFT_OK);
        ex_end(ex);
        assert_accounting(L, 3);
    }
    finish();
}

Test(adopt, false_keeps_them)
{
    for (int k = K_GATHER; k <= K_QUORUM2; k++) {
        weft_executor_t *ex = ex_new(2);
        struct leaf L[3];
        weft_future_t *f[3];
        for (int i = 0; i < 3; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            f[i] = spawn_leaf(ex, &L[i], NULL);
        }
        weft_combine_opts_t o = opts_of(NULL, 0, NULL);
        weft_future_t *g = NULL;
        cr_assert_eq(combine((enum kind)k, ex, f, 3, &o, &g), WEFT_OK);
        /* Release g first: the children must stay usable. */
        cr_assert_eq(weft_future_release(g), WEFT_OK);
        for (int i = 0; i < 3; i++) {
            leaf_open(&L[i]);
            weft_status_t st = wait_end(f[i]);
            /* first_success and quorum cancel the rest once decided. */
            bool may_cancel = k == K_FIRST || k == K_QUORUM2;
            cr_assert(st == WEFT_OK || (may_cancel && st == WEFT_ECANCELED),
                      "%s: child %d ended %s after the combined future was "
                      "released", kind_names[k], i, weft_status_name(st));
        }
        release_all(f, 3);
        ex_end(ex);
        assert_accounting(L, 3);
    }
    finish();
}

Test(adopt, detached_combined_future_with_running_children)
{
    weft_executor_t *ex = ex_new(4);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
        await_flag(&L[i].started, "a leaf to start");
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    o.adopt = true;
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 3, &o, &g), WEFT_OK);
    cr_assert_eq(weft_future_release(g), WEFT_OK); /* nobody holds anything */
    for (int i = 0; i < 3; i++) {
        leaf_open(&L[i]);
        await_flag(&L[i].finished, "a leaf to finish");
    }
    ex_end(ex); /* drains; then nothing may be left */
    assert_accounting(L, 3);
    finish();
}

Test(adopt, refused_call_releases_adopted_children)
{
    weft_executor_t *ex = ex_new(2);
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_done(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    o.adopt = true;
    weft_future_t *g = (weft_future_t *)&o; /* must become NULL */
    cr_assert_eq(weft_quorum(ex, f, 2, 3, &o, &g), WEFT_EINVAL);
    cr_assert_null(g);
    /* adopt: the references are gone even though the call failed. */
    ex_end(ex);

    ex = ex_new(1);
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_done(ex, &L[i], NULL);
    }
    o.adopt = false;
    g = (weft_future_t *)&o;
    cr_assert_eq(weft_quorum(ex, f, 2, 0, &o, &g), WEFT_EINVAL);
    cr_assert_null(g);
    /* not adopted: still ours, untouched. */
    cr_assert_eq(weft_future_outcome(f[0]), WEFT_OUTCOME_SUCCEEDED);
    release_all(f, 2);
    ex_end(ex);
    finish();
}

/* =========================================================================
 * combine_misuse
 * ========================================================================= */

Test(combine_misuse, bad_arguments_every_combinator)
{
    weft_executor_t *ex = ex_new(1);
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_done(ex, &L[i], NULL);
    }
    weft_future_t *with_null[2] = {f[0], NULL};
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    for (int k = K_GATHER; k <= K_QUORUM2; k++) {
        weft_future_t *g = (weft_future_t *)&o;
        cr_assert_eq(combine((enum kind)k, NULL, f, 2, &o, &g), WEFT_EINVAL,
                     "%s: NULL ex", kind_names[k]);
        cr_assert_null(g, "%s: *out NULL on failure", kind_names[k]);
        cr_assert_eq(combine((enum kind)k, ex, f, 2, &o, NULL), WEFT_EINVAL,
                     "%s: NULL out", kind_names[k]);
        g = (weft_future_t *)&o;
        cr_assert_eq(combine((enum kind)k, ex, NULL, 2, &o, &g), WEFT_EINVAL,
                     "%s: NULL children", kind_names[k]);
        cr_assert_null(g);
        g = (weft_future_t *)&o;
        cr_assert_eq(combine((enum kind)k, ex, with_null, 2, &o, &g),
                     WEFT_EINVAL, "%s: a NULL child", kind_names[k]);
        cr_assert_null(g);
    }
    weft_future_t *g = NULL;
    cr_assert_eq(weft_any(ex, NULL, 0, &o, &g), WEFT_EINVAL, "any, n == 0");
    cr_assert_eq(weft_any(ex, f, 0, &o, &g), WEFT_EINVAL, "any, n == 0");
    cr_assert_eq(weft_first_success(ex, f, 0, &o, &g), WEFT_EINVAL);
    cr_assert_eq(weft_quorum(ex, f, 0, 0, &o, &g), WEFT_EINVAL);
    cr_assert_eq(weft_quorum(ex, f, 2, 0, &o, &g), WEFT_EINVAL, "k = 0");
    cr_assert_eq(weft_quorum(ex, f, 2, 3, &o, &g), WEFT_EINVAL, "k > n");
    cr_assert_eq(weft_quorum(ex, f, 2, SIZE_MAX, &o, &g), WEFT_EINVAL);
    cr_assert_null(g);
    /* k at both ends of 1..n is fine. */
    cr_assert_eq(weft_quorum(ex, f, 2, 1, &o, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    weft_future_release(g);
    cr_assert_eq(weft_quorum(ex, f, 2, 2, &o, &g), WEFT_OK);
    cr_assert_eq(wait_end(g), WEFT_OK);
    weft_future_release(g);
    release_all(f, 2);
    ex_end(ex);
    finish();
}

Test(combine_misuse, n_above_uint32_max)
{
    weft_executor_t *ex = ex_new(1);
    struct leaf L;
    leaf_init(&L, 0, L_OK, 0, 0, ON_CANCEL_STOP);
    weft_future_t *f0 = spawn_done(ex, &L, NULL);
    /* A huge array whose entries are never touched: the size check has
     * to come first. A reserve-less mapping keeps it cheap. */
    size_t n = (size_t)UINT32_MAX + 1;
    size_t bytes = n * sizeof(weft_future_t *);
    weft_future_t **big = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                               -1, 0);
    cr_assert_neq(big, MAP_FAILED, "mmap of %zu bytes", bytes);
    for (size_t i = 0; i < 512; i++) {
        big[i] = f0;
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    for (int k = K_GATHER; k <= K_QUORUM2; k++) {
        weft_future_t *g = (weft_future_t *)&o;
        cr_assert_eq(combine((enum kind)k, ex, big, n, &o, &g), WEFT_EINVAL,
                     "%s", kind_names[k]);
        cr_assert_null(g);
    }
    weft_as_completed_t *it = (weft_as_completed_t *)&o;
    cr_assert_eq(weft_as_completed_create(big, n, &it), WEFT_EINVAL);
    munmap(big, bytes);
    cr_assert_eq(weft_future_release(f0), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(combine_misuse, ledger_accessors)
{
    weft_executor_t *ex = ex_new(2);
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_combine_opts_t o = opts_of(NULL, 0, NULL);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, f, 2, &o, &g), WEFT_OK);
    weft_child_result_t r;
    weft_value_t v[3];
    weft_errgroup_t *eg = NULL;
    /* Not combined / NULL. */
    cr_assert_eq(weft_combine_size(NULL), 0);
    cr_assert_eq(weft_combine_size(f[0]), 0);
    cr_assert_eq(weft_combine_child(NULL, 0, &r), WEFT_EINVAL);
    cr_assert_eq(weft_combine_child(f[0], 0, &r), WEFT_EINVAL);
    cr_assert_eq(weft_combine_child(g, 0, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_combine_child(g, 2, &r), WEFT_ERANGE);
    cr_assert_eq(weft_combine_child(g, SIZE_MAX, &r), WEFT_ERANGE);
    cr_assert_eq(weft_combine_values(NULL, v, 1), WEFT_EINVAL);
    cr_assert_eq(weft_combine_values(f[0], v, 1), WEFT_EINVAL);
    cr_assert_eq(weft_combine_errors(NULL, &eg), WEFT_EINVAL);
    cr_assert_eq(weft_combine_errors(f[0], &eg), WEFT_EINVAL);
    cr_assert_eq(weft_combine_errors(g, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_combine_decider(f[0]), SIZE_MAX);
    cr_assert_eq(weft_combine_decider(NULL), SIZE_MAX);
    /* Before the end. */
    cr_assert_eq(weft_combine_size(g), 2);
    cr_assert_eq(weft_combine_values(g, v, 2), WEFT_ESTATE);
    cr_assert_eq(weft_combine_errors(g, &eg), WEFT_ESTATE);
    cr_assert_null(eg);
    assert_child_pending(g, 0, f[0]);
    for (int i = 0; i < 2; i++) {
        leaf_open(&L[i]);
    }
    cr_assert_eq(wait_end(g), WEFT_OK);
    cr_assert_eq(weft_combine_values(g, v, 3), WEFT_EINVAL, "n > size");
    cr_assert_eq(weft_combine_values(g, v, 2), WEFT_OK);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    release_all(f, 2);
    ex_end(ex);
    finish();
}

Test(combine_misuse, wait_bad_arguments)
{
    weft_executor_t *ex = ex_new(1);
    struct leaf L;
    leaf_init(&L, 0, L_OK, 0, 0, ON_CANCEL_STOP);
    weft_future_t *f[2];
    f[0] = spawn_done(ex, &L, NULL);
    f[1] = NULL;
    size_t d[2], p[2], nd = 77, np = 77;
    cr_assert_eq(weft_wait(NULL, 1, WEFT_WAIT_ALL_COMPLETED, NULL, 0, d, &nd,
                           p, &np),
                 WEFT_EINVAL);
    cr_assert_eq(weft_wait(f, 2, WEFT_WAIT_ALL_COMPLETED, NULL, 0, d, &nd, p,
                           &np),
                 WEFT_EINVAL, "a NULL child");
    cr_assert_eq(weft_wait(f, 1, (weft_wait_mode_t)0, NULL, 0, d, &nd, p,
                           &np),
                 WEFT_EINVAL, "bad mode");
    cr_assert_eq(weft_wait(f, 1, (weft_wait_mode_t)4, NULL, 0, d, &nd, p,
                           &np),
                 WEFT_EINVAL, "bad mode");
    /* n == 0: at once, even with NULL children. */
    cr_assert_eq(weft_wait(NULL, 0, WEFT_WAIT_ALL_COMPLETED, NULL, 0, d, &nd,
                           p, &np),
                 WEFT_OK);
    cr_assert_eq(nd, 0);
    cr_assert_eq(np, 0);
    /* Sets are optional. */
    cr_assert_eq(weft_wait(f, 1, WEFT_WAIT_ALL_COMPLETED, NULL, 0, NULL, NULL,
                           NULL, NULL),
                 WEFT_OK);
    cr_assert_eq(weft_wait(f, 1, WEFT_WAIT_FIRST_COMPLETED, NULL, 0, d, NULL,
                           NULL, &np),
                 WEFT_OK);
    cr_assert_eq(np, 0);
    cr_assert_eq(d[0], 0);
    cr_assert_eq(weft_future_release(f[0]), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(combine_misuse, as_completed_bad_arguments)
{
    weft_executor_t *ex = ex_new(1);
    struct leaf L;
    leaf_init(&L, 0, L_OK, 0, 0, ON_CANCEL_STOP);
    weft_future_t *f[2];
    f[0] = spawn_done(ex, &L, NULL);
    f[1] = NULL;
    weft_as_completed_t *it = NULL;
    size_t idx;
    cr_assert_eq(weft_as_completed_create(f, 1, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_as_completed_create(NULL, 1, &it), WEFT_EINVAL);
    cr_assert_eq(weft_as_completed_create(f, 2, &it), WEFT_EINVAL);
    cr_assert_eq(weft_as_completed_next(NULL, NULL, 0, &idx), WEFT_EINVAL);
    cr_assert_eq(weft_as_completed_future(NULL, 0), NULL);
    cr_assert_eq(weft_as_completed_destroy(NULL), WEFT_EINVAL);
    /* Empty iteration: exhausted at once. */
    cr_assert_eq(weft_as_completed_create(NULL, 0, &it), WEFT_OK);
    cr_assert_eq(weft_as_completed_next(it, NULL, 0, &idx), WEFT_EEXHAUSTED);
    cr_assert_eq(weft_as_completed_destroy(it), WEFT_OK);
    cr_assert_eq(weft_as_completed_create(f, 1, &it), WEFT_OK);
    cr_assert_eq(weft_as_completed_next(it, NULL, 0, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_as_completed_future(it, 1), NULL);
    cr_assert_eq(weft_as_completed_future(it, SIZE_MAX), NULL);
    cr_assert_eq(weft_as_completed_next(it, NULL, 0, &idx), WEFT_OK);
    cr_assert_eq(idx, 0);
    cr_assert_eq(weft_as_completed_next(it, NULL, 0, &idx), WEFT_EEXHAUSTED);
    /* The iterator's references are its own. */
    cr_assert_eq(weft_future_release(f[0]), WEFT_OK);
    cr_assert_eq(weft_future_outcome(weft_as_completed_future(it, 0)),
                 WEFT_OUTCOME_SUCCEEDED);
    cr_assert_eq(weft_as_completed_destroy(it), WEFT_OK);
    ex_end(ex);
    finish();
}

/* =========================================================================
 * wait / as_completed: extra behaviour
 * ========================================================================= */

struct waiter_ctx {
    struct leaf *L;
    weft_executor_t *ex;
    weft_status_t st;
    size_t ndone;
    int spawn_failed;
};

/* Spawns three open leaves onto its own worker, then waits for them all
 * with weft_wait: on a 1-worker executor it can only return by helping. */
static weft_status_t
waiter_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct waiter_ctx *c = arg;
    weft_future_t *f[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        weft_spawn_opts_t so = {.release = leaf_release};
        if (weft_spawn_ex(weft_task_executor(self), &so, leaf_body, &c->L[i],
                          &f[i]) != WEFT_OK) {
            c->spawn_failed = 1;
        }
    }
    size_t done[3];
    c->st = weft_wait(f, 3, WEFT_WAIT_ALL_COMPLETED, NULL, 0, done, &c->ndone,
                      NULL, NULL);
    for (int i = 0; i < 3; i++) {
        weft_future_release(f[i]);
    }
    return WEFT_OK;
}

Test(wait, helps_on_a_worker)
{
    weft_executor_t *ex = ex_new(1);
    struct leaf L[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        leaf_open(&L[i]);
    }
    struct waiter_ctx c = {.L = L, .ex = ex};
    weft_future_t *wf = NULL;
    cr_assert_eq(weft_spawn(ex, waiter_body, &c, &wf), WEFT_OK);
    cr_assert_eq(wait_end(wf), WEFT_OK);
    cr_assert_eq(c.spawn_failed, 0);
    cr_assert_eq(c.st, WEFT_OK);
    cr_assert_eq(c.ndone, 3);
    cr_assert_eq(weft_future_release(wf), WEFT_OK);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(wait, already_ended_children)
{
    weft_executor_t *ex = ex_new(2);
    struct leaf L[3];
    weft_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 1 ? L_FAIL : L_OK, WEFT_EUSER + 1, i,
                  ON_CANCEL_STOP);
        f[i] = spawn_done(ex, &L[i], NULL);
    }
    static const weft_wait_mode_t modes[3] = {WEFT_WAIT_FIRST_COMPLETED,
                                              WEFT_WAIT_FIRST_FAILURE,
                                              WEFT_WAIT_ALL_COMPLETED};
    for (int m = 0; m < 3; m++) {
        struct sets s;
        /* Even with a past deadline: the condition holds. */
        cr_assert_eq(wait_sets(f, 3, modes[m], NULL, FAR_PAST, &s), WEFT_OK,
                     "mode %d", (int)modes[m]);
        assert_sets(&s, 0x7, 0x0);
    }
    release_all(f, 3);
    ex_end(ex);
    finish();
}

Test(as_completed, each_child_exactly_once)
{
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        enum { N = 64 };
        struct leaf L[N];
        weft_future_t *f[N];
        for (int i = 0; i < N; i++) {
            leaf_init(&L[i], i, i % 5 == 0 ? L_FAIL : L_OK, WEFT_EUSER + 1, i,
                      ON_CANCEL_STOP);
            leaf_open(&L[i]);
            f[i] = spawn_leaf(ex, &L[i], NULL);
        }
        weft_as_completed_t *it = NULL;
        cr_assert_eq(weft_as_completed_create(f, N, &it), WEFT_OK);
        release_all(f, N);
        unsigned seen[N];
        memset(seen, 0, sizeof(seen));
        for (int j = 0; j < N; j++) {
            size_t idx;
            cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_OK);
            cr_assert_lt(idx, (size_t)N);
            seen[idx]++;
            cr_assert(weft_future_is_done(weft_as_completed_future(it, idx)),
                      "yielded before it ended");
        }
        for (int i = 0; i < N; i++) {
            cr_assert_eq(seen[i], 1, "child %d yielded %u times", i, seen[i]);
        }
        size_t idx;
        cr_assert_eq(next_index(it, NULL, 0, &idx), WEFT_EEXHAUSTED);
        cr_assert_eq(weft_as_completed_destroy(it), WEFT_OK);
        ex_end(ex);
        assert_accounting(L, N);
    }
    finish();
}

Test(as_completed, destroy_with_children_running)
{
    weft_executor_t *ex = ex_new(2);
    struct leaf L[2];
    weft_future_t *f[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        f[i] = spawn_leaf(ex, &L[i], NULL);
    }
    weft_as_completed_t *it = NULL;
    cr_assert_eq(weft_as_completed_create(f, 2, &it), WEFT_OK);
    cr_assert_eq(weft_as_completed_destroy(it), WEFT_OK);
    /* They go on running and are not cancelled. */
    for (int i = 0; i < 2; i++) {
        leaf_open(&L[i]);
        cr_assert_eq(wait_end(f[i]), WEFT_OK);
    }
    release_all(f, 2);
    ex_end(ex);
    assert_accounting(L, 2);
    finish();
}
