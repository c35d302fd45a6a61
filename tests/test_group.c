/*
 * test_group.c - task groups, retries, parallel-for and parallel-reduce
 * (<weft/group.h>).
 *
 * Suite `semantics` holds the task-group row of the semantics table in
 * docs/semantics.md (tests named semantics::group_*); `group` the rest of
 * the group contract (destroy without join, misuse, spawning from
 * children, refused spawns), `group_nesting` first-failure propagation
 * through groups nested with weft_task_token(self), `group_limit` the
 * concurrency limit, `retry` weft_retry, `parallel_for` and
 * `parallel_reduce` the data-parallel helpers.
 *
 * As in test_combine.c: gate tasks that spin until opened or cancelled,
 * no sleeps for ordering, real time only in hang guards, deadline cells
 * and retry backoffs (which are tiny, or so long that only an early end
 * can finish the test in time); assertions are on counts and outcomes,
 * never on durations. Every test checks weft__alloc_live() after every
 * executor is destroyed.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cancel.h>
#include <weft/combine.h>
#include <weft/errgroup.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/group.h>
#include <weft/future.h>
#include <weft/status.h>

#include "primitives/alloc.h"

#include "combine_fixture.h"

TestSuite(semantics, .init = begin, .timeout = 60.0);
TestSuite(group, .init = begin, .timeout = 60.0);
TestSuite(group_nesting, .init = begin, .timeout = 60.0);
TestSuite(group_limit, .init = begin, .timeout = 120.0);
TestSuite(retry, .init = begin, .timeout = 60.0);
TestSuite(parallel_for, .init = begin, .timeout = 120.0);
TestSuite(parallel_reduce, .init = begin, .timeout = 120.0);

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


/* ---- group helpers ------------------------------------------------------- */

static weft_group_t *
group_new(weft_executor_t *ex, weft_token_t *parent, uint64_t deadline,
          size_t limit)
{
    weft_group_opts_t o;
    memset(&o, 0, sizeof(o));
    o.parent = parent;
    o.deadline_ns = deadline;
    o.limit = limit;
    o.name = "grp";
    weft_group_t *g = NULL;
    cr_assert_eq(weft_group_create(ex, &o, &g), WEFT_OK);
    cr_assert_not_null(g);
    return g;
}

static size_t
gspawn(weft_group_t *g, struct leaf *l)
{
    weft_spawn_opts_t so = {.release = leaf_release, .name = "child",
                            WEFT_SPAWN_SITE};
    size_t idx = SIZE_MAX;
    cr_assert_eq(weft_group_spawn(g, &so, leaf_body, l, &idx), WEFT_OK);
    return idx;
}

static weft_child_result_t
gchild(const weft_group_t *g, size_t i)
{
    weft_child_result_t r;
    memset(&r, 0xab, sizeof(r));
    cr_assert_eq(weft_group_child(g, i, &r), WEFT_OK, "group entry %zu", i);
    return r;
}

static weft_errgroup_t *
gerrors(const weft_group_t *g)
{
    weft_errgroup_t *eg = NULL;
    weft_status_t st = weft_group_errors(g, &eg);
    cr_assert_eq(st, WEFT_OK, "weft_group_errors: %s", weft_status_name(st));
    cr_assert_not_null(eg);
    return eg;
}

static weft_status_t
join_guarded(weft_group_t *g)
{
    /* A join has no deadline; the gate bodies' own hang guards end them,
     * so a hang shows up as hang_hits in finish(). */
    return weft_group_join(g);
}

/* =========================================================================
 * semantics: the task-group row
 * ========================================================================= */

Test(semantics, group_all_succeed)
{
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        weft_group_t *g = group_new(ex, NULL, 0, 0);
        struct leaf L[10];
        for (int i = 0; i < 10; i++) {
            leaf_init(&L[i], i, L_OK, 0, 100 + i, ON_CANCEL_STOP);
            leaf_open(&L[i]);
            cr_assert_eq(gspawn(g, &L[i]), (size_t)i, "index: spawn order");
        }
        cr_assert_eq(weft_group_size(g), 10);
        cr_assert_eq(join_guarded(g), WEFT_OK);
        for (size_t i = 0; i < 10; i++) {
            weft_child_result_t r = gchild(g, i);
            cr_assert_eq(r.outcome, WEFT_OUTCOME_SUCCEEDED);
            cr_assert(r.started);
            cr_assert_not(r.cancelled_by_combinator);
            cr_assert_eq(r.value.i64, 100 + (int64_t)i);
            cr_assert_null(r.error);
            cr_assert_not_null(r.future);
        }
        weft_errgroup_t *eg = gerrors(g);
        cr_assert_eq(weft_errgroup_count(eg), 0);
        weft_errgroup_release(eg);
        cr_assert_eq(weft_group_destroy(g), WEFT_OK);
        ex_end(ex);
        assert_accounting(L, 10);
    }
    finish();
}

/* Helper thread: once `watch` saw the cancellation, open `open`. */
struct opener {
    struct leaf *watch;
    struct leaf *open;
};

static void *
opener_main(void *arg)
{
    struct opener *o = arg;
    uint64_t guard = weft_clock_now_ns() + HANG_NS;
    while (atomic_load(&o->watch->saw_cancel) == 0 &&
           weft_clock_now_ns() < guard) {
        sched_yield();
    }
    leaf_open(o->open);
    return NULL;
}

Test(semantics, group_child_fails)
{
    weft_executor_t *ex = ex_new(4);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    struct leaf L[4];
    leaf_init(&L[0], 0, L_OK, 0, 10, ON_CANCEL_STOP);   /* cancelled */
    leaf_init(&L[1], 1, L_FAIL, WEFT_EUSER + 1, 0, 0);  /* the trigger */
    leaf_init(&L[2], 2, L_OK, 0, 12, WEFT_EUSER + 2);   /* fails after */
    leaf_init(&L[3], 3, L_OK, 0, 13, ON_CANCEL_IGNORE); /* stubborn */
    for (int i = 0; i < 4; i++) {
        gspawn(g, &L[i]);
    }
    for (int i = 0; i < 4; i++) {
        await_flag(&L[i].started, "a child to start");
    }
    leaf_open(&L[1]);
    /* The stubborn child is let go only after it saw the cancellation;
     * the join must wait for it. */
    struct opener op = {.watch = &L[3], .open = &L[3]};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, opener_main, &op), 0);
    weft_status_t st = join_guarded(g);
    pthread_join(th, NULL);
    cr_assert_eq(st, WEFT_EUSER + 1, "join: the first failure's status, got %d",
                 (int)st);
    cr_assert_eq(atomic_load(&L[3].finished), 1, "join waited for every child");
    weft_child_result_t r1 = gchild(g, 1);
    cr_assert_eq(r1.outcome, WEFT_OUTCOME_FAILED);
    weft_error_t *trig = r1.error;
    cr_assert_eq(weft_error_status(trig), WEFT_EUSER + 1);
    weft_child_result_t r0 = gchild(g, 0);
    cr_assert_eq(r0.outcome, WEFT_OUTCOME_CANCELLED);
    cr_assert(r0.cancelled_by_combinator);
    cr_assert(r0.started);
    cr_assert(caused_by(r0.error, trig),
              "a cancelled child's reason leads to the trigger: %s",
              FMT(r0.error));
    weft_child_result_t r2 = gchild(g, 2);
    cr_assert_eq(r2.outcome, WEFT_OUTCOME_FAILED);
    weft_child_result_t r3 = gchild(g, 3);
    cr_assert_eq(r3.outcome, WEFT_OUTCOME_SUCCEEDED);
    cr_assert_eq(r3.value.i64, 13);
    weft_errgroup_t *eg = gerrors(g);
    cr_assert_eq(weft_errgroup_count(eg), 2,
                 "two failures (the cancelled child is none): %zu",
                 weft_errgroup_count(eg));
    cr_assert(same_error(entry_error(eg, 0), trig), "first entry: the trigger");
    cr_assert(same_error(entry_error(eg, 1), r2.error));
    cr_assert_not_null(strstr(weft_errgroup_message(eg), "grp"),
                       "message names the group: %s",
                       weft_errgroup_message(eg));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    assert_accounting(L, 4);
    finish();
}

Test(semantics, group_child_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    struct leaf L[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, i == 1 ? L_SELF_CANCEL : L_OK, 0, 20 + i,
                  ON_CANCEL_STOP);
        gspawn(g, &L[i]);
        await_flag(&L[i].started, "a child to start");
    }
    leaf_open(&L[1]); /* ends cancelled for a reason of its own */
    await_flag(&L[1].finished, "child 1 to end");
    leaf_open(&L[0]);
    leaf_open(&L[2]);
    cr_assert_eq(join_guarded(g), WEFT_OK,
                 "a child cancelled on its own is no failure of the group");
    weft_child_result_t r1 = gchild(g, 1);
    cr_assert_eq(r1.outcome, WEFT_OUTCOME_CANCELLED);
    cr_assert_not(r1.cancelled_by_combinator);
    cr_assert(r1.started);
    for (size_t i = 0; i < 3; i += 2) {
        weft_child_result_t r = gchild(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_SUCCEEDED,
                     "child %zu: the group was not cancelled", i);
        cr_assert_eq(r.value.i64, 20 + (int64_t)i);
        cr_assert_eq(atomic_load(&L[i].saw_cancel), 0);
    }
    weft_errgroup_t *eg = gerrors(g);
    cr_assert_eq(weft_errgroup_count(eg), 0);
    weft_errgroup_release(eg);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

Test(semantics, group_parent_cancelled)
{
    weft_executor_t *ex = ex_new(4);
    weft_token_t *P = tok_new();
    weft_group_t *g = group_new(ex, P, 0, 0);
    struct leaf L[3];
    leaf_init(&L[0], 0, L_OK, 0, 30, ON_CANCEL_STOP);
    leaf_open(&L[0]);
    gspawn(g, &L[0]);
    await_flag(&L[0].finished, "child 0 to end");
    for (int i = 1; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, 30 + i, ON_CANCEL_STOP);
        gspawn(g, &L[i]);
        await_flag(&L[i].started, "a child to start");
    }
    weft_error_t *R = err_new(WEFT_EUSER + 6, "parent gave up");
    cr_assert_eq(weft_token_cancel(P, R), WEFT_OK);
    cr_assert(weft_token_is_cancelled(weft_group_token(g)));
    cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
    weft_child_result_t r0 = gchild(g, 0);
    cr_assert_eq(r0.outcome, WEFT_OUTCOME_SUCCEEDED);
    for (size_t i = 1; i < 3; i++) {
        weft_child_result_t r = gchild(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert(r.cancelled_by_combinator);
        cr_assert(same_error(r.error, R), "reason: the parent's: %s",
                  FMT(r.error));
    }
    weft_errgroup_t *eg = gerrors(g);
    cr_assert_eq(weft_errgroup_count(eg), 0);
    weft_errgroup_release(eg);
    /* Joined: later spawns are refused. */
    struct leaf late;
    leaf_init(&late, 9, L_OK, 0, 0, ON_CANCEL_STOP);
    weft_spawn_opts_t so = {.release = leaf_release};
    cr_assert_eq(weft_group_spawn(g, &so, leaf_body, &late, NULL),
                 WEFT_ESTATE);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    weft_error_release(R);
    weft_token_release(P);
    ex_end(ex);
    assert_accounting(L, 3);
    cr_assert_eq(atomic_load(&late.ran), 0);
    finish();
}

Test(semantics, group_deadline)
{
    /* A deadline in the past: children are accepted and end cancelled
     * without running. */
    weft_executor_t *ex = ex_new(2);
    weft_group_t *g = group_new(ex, NULL, FAR_PAST, 0);
    struct leaf L[3];
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        leaf_open(&L[i]);
        gspawn(g, &L[i]);
    }
    cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
    for (size_t i = 0; i < 3; i++) {
        weft_child_result_t r = gchild(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert_not(r.started);
        cr_assert_eq(weft_error_status(r.error), WEFT_EDEADLINE, "%s",
                     FMT(r.error));
        cr_assert_eq(atomic_load(&L[i].ran), 0);
    }
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    assert_accounting(L, 3);

    /* A deadline 20 ms out, children that run until cancelled. */
    g = group_new(ex, NULL, deadline_in(20 * MS_NS), 0);
    for (int i = 0; i < 3; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        gspawn(g, &L[i]);
    }
    cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
    for (size_t i = 0; i < 3; i++) {
        weft_child_result_t r = gchild(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert(r.cancelled_by_combinator);
        cr_assert_eq(weft_error_status(r.error), WEFT_EDEADLINE, "%s",
                     FMT(r.error));
    }
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    assert_accounting(L, 3);
    finish();
}

/* =========================================================================
 * group: the rest of the contract
 * ========================================================================= */

Test(group, cancel_by_call)
{
    weft_executor_t *ex = ex_new(2);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    struct leaf L[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        gspawn(g, &L[i]);
    }
    weft_error_t *R = err_new(WEFT_EUSER + 3, "stop");
    cr_assert_eq(weft_group_cancel(g, R), WEFT_OK);
    cr_assert_eq(weft_group_cancel(g, NULL), WEFT_EALREADY);
    cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
    for (size_t i = 0; i < 2; i++) {
        weft_child_result_t r = gchild(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert(same_error(r.error, R));
    }
    cr_assert_eq(weft_group_cancel(NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    weft_error_release(R);
    ex_end(ex);
    assert_accounting(L, 2);
    finish();
}

/*
 * Children cancelled through the group's token point at its reason
 * without a reference of their own (WEFT__ERROR_BORROWED): the reason must
 * stay readable for as long as the group holds the children, also after
 * the caller let go of it at once, and every reference must be dropped
 * exactly once (the leak count in finish(); ASan's use-after-free check).
 * Many queued children on 1 and 2 workers, so most end without running.
 */
Test(group, cancelled_children_share_the_reason)
{
    for (unsigned int nw = 1; nw <= 2; nw++) {
        weft_executor_t *ex = ex_new(nw);
        weft_group_t *g = group_new(ex, NULL, 0, 0);
        enum { N = 64 };
        struct leaf L[N];
        for (int i = 0; i < N; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            gspawn(g, &L[i]);
        }
        weft_error_t *R = err_new(WEFT_EUSER + 4, "shared stop");
        cr_assert_eq(weft_group_cancel(g, R), WEFT_OK);
        weft_error_release(R); /* the token holds the only reference now */
        cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
        size_t cancelled = 0;
        for (size_t i = 0; i < N; i++) {
            weft_child_result_t r = gchild(g, i);
            if (r.outcome == WEFT_OUTCOME_CANCELLED) {
                cancelled++;
                cr_assert_not_null(r.error, "child %zu", i);
                cr_assert_eq(weft_error_status(r.error), WEFT_EUSER + 4);
                cr_assert_str_eq(weft_error_message(r.error), "shared stop");
            }
        }
        cr_assert_gt(cancelled, 0, "no child ended cancelled");
        cr_assert_eq(weft_group_destroy(g), WEFT_OK);
        ex_end(ex);
        assert_accounting(L, N);
    }
    finish();
}

/*
 * A cancelled group's join on a worker drains its queued children from
 * the worker's own deque, taking chunks of them private so its pops need
 * no exchange (future.c, await_drain_privately). Plain futures queued
 * among the children must still run, each exactly once, and every child
 * must end exactly once: cancelled unless a thief ran it before the
 * cancel. 2,000 queued tasks, so the drain takes several chunks, on 1
 * and 2 workers.
 */
enum {
    MIX_N = 2000,
    MIX_STRIDE = 16
};

struct mix {
    atomic_uint ran_child;
    atomic_uint ran_plain;
    weft_future_t *plain[MIX_N / MIX_STRIDE + 1];
    size_t nplain;
    size_t nchildren;
    size_t succeeded;
    size_t cancelled;
    weft_status_t join_st;
};

static weft_status_t
mix_child(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    atomic_fetch_add(&((struct mix *)arg)->ran_child, 1);
    return WEFT_OK;
}

static weft_status_t
mix_plain(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    result->u64 = 7;
    atomic_fetch_add(&((struct mix *)arg)->ran_plain, 1);
    return WEFT_OK;
}

static weft_status_t
mix_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct mix *m = arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    for (size_t i = 0; i < MIX_N; i++) {
        if (i % MIX_STRIDE == 7) {
            cr_assert_eq(weft_spawn(ex, mix_plain, m, &m->plain[m->nplain]),
                         WEFT_OK);
            m->nplain++;
        } else {
            cr_assert_eq(weft_group_spawn(g, NULL, mix_child, m, NULL),
                         WEFT_OK);
            m->nchildren++;
        }
    }
    cr_assert_eq(weft_group_cancel(g, NULL), WEFT_OK);
    m->join_st = weft_group_join(g);
    for (size_t i = 0; i < weft_group_size(g); i++) {
        weft_child_result_t r = gchild(g, i);
        m->succeeded += r.outcome == WEFT_OUTCOME_SUCCEEDED;
        m->cancelled += r.outcome == WEFT_OUTCOME_CANCELLED;
    }
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    for (size_t i = 0; i < m->nplain; i++) {
        cr_assert_eq(weft_future_wait(m->plain[i]), WEFT_OK, "plain %zu", i);
        weft_value_t pv = {.u64 = 0};
        cr_assert_eq(weft_future_value(m->plain[i], &pv), WEFT_OK);
        cr_assert_eq(pv.u64, 7u);
        cr_assert_eq(weft_future_release(m->plain[i]), WEFT_OK);
    }
    return WEFT_OK;
}

Test(group, cancelled_join_drains_its_children_and_runs_the_rest)
{
    for (unsigned int nw = 1; nw <= 2; nw++) {
        weft_executor_t *ex = ex_new(nw);
        struct mix *m = calloc(1, sizeof(*m));
        cr_assert_not_null(m);
        weft_value_t v;
        cr_assert_eq(weft_executor_run(ex, mix_root, m, &v), WEFT_OK);
        cr_assert_eq(m->join_st, WEFT_ECANCELED);
        cr_assert_eq(m->nchildren + m->nplain, (size_t)MIX_N);
        cr_assert_eq(m->succeeded + m->cancelled, m->nchildren,
                     "%u workers: %zu succeeded + %zu cancelled of %zu", nw,
                     m->succeeded, m->cancelled, m->nchildren);
        cr_assert_eq(atomic_load(&m->ran_child), m->succeeded,
                     "%u workers: a child ran but did not succeed, or the "
                     "other way round",
                     nw);
        cr_assert_eq(atomic_load(&m->ran_plain), m->nplain,
                     "%u workers: %u of %zu plain tasks ran", nw,
                     atomic_load(&m->ran_plain), m->nplain);
        if (nw == 1) {
            /* One worker: nothing ran before the cancel. */
            cr_assert_eq(m->cancelled, m->nchildren);
        }
        ex_end(ex);
        free(m);
    }
    finish();
}

/*
 * Children borrow the group's token (no reference of their own): the
 * group must keep it, and its parent, alive until the last child has
 * ended. Here the caller lets go of the parent token at once; running
 * children make task tokens from the borrowed one, queued ones end
 * cancelled with the group's reason, and the leak count at the end
 * (finish) and ASan's use-after-free check see every release exactly
 * once, on 1 and 2 workers.
 */
static weft_status_t
token_child_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    weft_token_t *t = weft_task_token(self);
    cr_assert_not_null(t);
    return leaf_body(self, arg, result);
}

Test(group, children_borrow_the_group_token)
{
    static const unsigned int workers[] = {1, 2};
    for (size_t w = 0; w < 2; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        weft_token_t *parent = tok_new();
        weft_group_t *g = group_new(ex, parent, 0, 0);
        weft_token_release(parent); /* the group's token holds it now */
        enum { N = 40 };
        struct leaf L[N];
        weft_spawn_opts_t so = {.release = leaf_release, .name = "child"};
        for (int i = 0; i < N; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            cr_assert_eq(weft_group_spawn(g, &so, token_child_body, &L[i],
                                          NULL),
                         WEFT_OK);
        }
        await_flag(&L[0].started, "a child to start");
        weft_error_t *R = err_new(WEFT_EUSER + 4, "enough");
        cr_assert_eq(weft_group_cancel(g, R), WEFT_OK);
        cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
        for (size_t i = 0; i < N; i++) {
            weft_child_result_t r = gchild(g, i);
            cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED, "child %zu", i);
            cr_assert(same_error(r.error, R), "child %zu: %s", i,
                      FMT(r.error));
        }
        weft_error_release(R);
        cr_assert_eq(weft_group_destroy(g), WEFT_OK);
        ex_end(ex);
        assert_accounting(L, N);
    }
    finish();
}

Test(group, destroy_without_join)
{
    static const unsigned int workers[] = {1, 2};
    for (size_t w = 0; w < 2; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        /* limit 1: child 0 runs, 1..5 wait inside the group. */
        weft_group_t *g = group_new(ex, NULL, 0, 1);
        struct leaf L[6];
        for (int i = 0; i < 6; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            gspawn(g, &L[i]);
        }
        await_flag(&L[0].started, "child 0 to start");
        cr_assert_eq(weft_group_destroy(g), WEFT_OK);
        /* No child outlives the group: all ended, each hook ran once. */
        for (int i = 0; i < 6; i++) {
            cr_assert_eq(atomic_load(&L[i].released), 1,
                         "child %d: release hook %u times", i,
                         atomic_load(&L[i].released));
        }
        cr_assert_eq(atomic_load(&L[0].ran), 1);
        cr_assert_eq(atomic_load(&L[0].saw_cancel), 1);
        for (int i = 1; i < 6; i++) {
            cr_assert_eq(atomic_load(&L[i].ran), 0,
                         "waiting child %d must not start once cancelled", i);
        }
        ex_end(ex);
        assert_accounting(L, 6);
    }
    /* Nothing spawned, never joined. */
    weft_executor_t *ex = ex_new(1);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(group, join_and_accessor_states)
{
    weft_executor_t *ex = ex_new(2);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    struct leaf L[2];
    leaf_init(&L[0], 0, L_OK, 0, 1, ON_CANCEL_STOP);
    gspawn(g, &L[0]);
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_group_errors(g, &eg), WEFT_ESTATE, "before the join");
    weft_child_result_t r;
    cr_assert_eq(weft_group_child(g, 1, &r), WEFT_ERANGE);
    cr_assert_eq(weft_group_child(g, 0, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_group_child(NULL, 0, &r), WEFT_EINVAL);
    leaf_open(&L[0]);
    cr_assert_eq(join_guarded(g), WEFT_OK);
    cr_assert_eq(weft_group_join(g), WEFT_ESTATE, "joined twice");
    leaf_init(&L[1], 1, L_OK, 0, 1, ON_CANCEL_STOP);
    weft_spawn_opts_t so = {.release = leaf_release};
    size_t idx = 77;
    cr_assert_eq(weft_group_spawn(g, &so, leaf_body, &L[1], &idx),
                 WEFT_ESTATE, "spawn after join");
    cr_assert_eq(weft_group_size(g), 1);
    cr_assert_eq(weft_group_errors(g, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_group_errors(NULL, &eg), WEFT_EINVAL);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    cr_assert_eq(atomic_load(&L[1].ran), 0);
    cr_assert_leq(atomic_load(&L[1].released), 1);
    finish();
}

Test(group, bad_arguments)
{
    weft_executor_t *ex = ex_new(1);
    weft_group_t *g = NULL;
    cr_assert_eq(weft_group_create(NULL, NULL, &g), WEFT_EINVAL);
    cr_assert_eq(weft_group_create(ex, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_group_create(ex, NULL, &g), WEFT_OK, "opts may be NULL");
    struct leaf L;
    leaf_init(&L, 0, L_OK, 0, 0, ON_CANCEL_STOP);
    leaf_open(&L);
    cr_assert_eq(weft_group_spawn(NULL, NULL, leaf_body, &L, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(weft_group_spawn(g, NULL, NULL, &L, NULL), WEFT_EINVAL);
    weft_token_t *t = tok_new();
    weft_spawn_opts_t so = {.token = t};
    cr_assert_eq(weft_group_spawn(g, &so, leaf_body, &L, NULL), WEFT_EINVAL,
                 "a child's token is the group's");
    cr_assert_eq(weft_group_spawn(g, NULL, leaf_body, &L, NULL), WEFT_OK,
                 "opts may be NULL");
    cr_assert_eq(weft_group_join(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_group_destroy(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_group_size(NULL), 0);
    cr_assert_null(weft_group_token(NULL));
    cr_assert_not_null(weft_group_token(g));
    cr_assert_eq(join_guarded(g), WEFT_OK);
    cr_assert_eq(weft_group_size(g), 1);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    weft_token_release(t);
    ex_end(ex);
    cr_assert_eq(atomic_load(&L.ran), 1);
    finish();
}

/* A child that spawns more children into its own group. */
struct fan {
    weft_group_t *g;
    struct leaf *kids;
    int nkids;
    atomic_uint spawned_ok;
};

static weft_status_t
fan_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    struct fan *fa = arg;
    for (int i = 0; i < fa->nkids; i++) {
        weft_spawn_opts_t so = {.release = leaf_release};
        if (weft_group_spawn(fa->g, &so, leaf_body, &fa->kids[i], NULL) ==
            WEFT_OK) {
            atomic_fetch_add(&fa->spawned_ok, 1);
        }
    }
    return WEFT_OK;
}

Test(group, spawn_from_child)
{
    static const unsigned int workers[] = {1, 2};
    for (size_t w = 0; w < 2; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        weft_group_t *g = group_new(ex, NULL, 0, 0);
        struct leaf kids[8];
        for (int i = 0; i < 8; i++) {
            leaf_init(&kids[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            leaf_open(&kids[i]);
        }
        struct fan fa = {.g = g, .kids = kids, .nkids = 8};
        cr_assert_eq(weft_group_spawn(g, NULL, fan_body, &fa, NULL), WEFT_OK);
        cr_assert_eq(join_guarded(g), WEFT_OK);
        cr_assert_eq(atomic_load(&fa.spawned_ok), 8);
        cr_assert_eq(weft_group_size(g), 9);
        for (int i = 0; i < 8; i++) {
            cr_assert_eq(atomic_load(&kids[i].ran), 1,
                         "the join waited for child %d", i);
        }
        cr_assert_eq(weft_group_destroy(g), WEFT_OK);
        ex_end(ex);
        assert_accounting(kids, 8);
    }
    finish();
}

Test(group, spawn_refused_after_shutdown)
{
    weft_executor_t *ex = ex_new(1);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    struct leaf L;
    leaf_init(&L, 0, L_OK, 0, 0, ON_CANCEL_STOP);
    leaf_open(&L);
    weft_spawn_opts_t so = {.release = leaf_release};
    size_t idx = 77;
    weft_status_t st = weft_group_spawn(g, &so, leaf_body, &L, &idx);
    cr_assert_eq(st, WEFT_ESHUTDOWN, "got %s", weft_status_name(st));
    cr_assert_eq(atomic_load(&L.released), 1, "refused: the hook ran");
    cr_assert_eq(atomic_load(&L.ran), 0);
    cr_assert_eq(weft_group_size(g), 0, "the group records nothing");
    cr_assert_eq(join_guarded(g), WEFT_OK);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(group, spawn_into_cancelled_group)
{
    weft_executor_t *ex = ex_new(1);
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    cr_assert_eq(weft_group_cancel(g, NULL), WEFT_OK);
    struct leaf L;
    leaf_init(&L, 0, L_OK, 0, 0, ON_CANCEL_STOP);
    leaf_open(&L);
    cr_assert_eq(gspawn(g, &L), 0, "still accepted");
    cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
    weft_child_result_t r = gchild(g, 0);
    cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
    cr_assert_not(r.started);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    cr_assert_eq(atomic_load(&L.ran), 0);
    cr_assert_eq(atomic_load(&L.released), 1);
    finish();
}

/* =========================================================================
 * group_nesting: a deep failure cancels the whole tree
 * ========================================================================= */

/*
 * Root group G (on ex) with children C2 then C1; each Ci makes a subgroup
 * on lex with parent weft_task_token(self) and leaves in it, and joins it.
 * C2's leaves run until cancelled; C1's leaf x0 fails at once. The failure
 * reaches G only through C1's return, so C1 must not sit below C2 on a
 * worker's stack: C2 is spawned first and is inside its join before C1
 * exists (a worker that helps in C2's join may run C1 on top of it,
 * which is fine).
 */
struct sub_task {
    weft_executor_t *lex;
    struct leaf *leaves;
    int n;
    atomic_uint joining;
    weft_status_t join_status;
    bool token_cancelled;
    weft_outcome_t outcome[2];
    bool by_comb[2];
    weft_error_t *reason[2]; /* retained */
    weft_error_t *first;     /* retained: the subgroup's first failure */
};

static weft_status_t
sub_task_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct sub_task *s = arg;
    weft_group_opts_t o;
    memset(&o, 0, sizeof(o));
    o.parent = weft_task_token(self);
    o.name = "sub";
    weft_group_t *sub = NULL;
    if (weft_group_create(s->lex, &o, &sub) != WEFT_OK) {
        return WEFT_EUSER + 50;
    }
    for (int i = 0; i < s->n; i++) {
        weft_spawn_opts_t so = {.release = leaf_release, .name = "leaf"};
        if (weft_group_spawn(sub, &so, leaf_body, &s->leaves[i], NULL) !=
            WEFT_OK) {
            weft_group_destroy(sub);
            return WEFT_EUSER + 51;
        }
    }
    atomic_store_explicit(&s->joining, 1, memory_order_release);
    s->join_status = weft_group_join(sub);
    s->token_cancelled = weft_token_is_cancelled(weft_task_token(self));
    for (int i = 0; i < s->n && i < 2; i++) {
        weft_child_result_t r;
        if (weft_group_child(sub, (size_t)i, &r) == WEFT_OK) {
            s->outcome[i] = r.outcome;
            s->by_comb[i] = r.cancelled_by_combinator;
            if (r.error != NULL) {
                weft_error_retain(r.error);
                s->reason[i] = r.error;
            }
        }
    }
    weft_status_t st = s->join_status;
    if (st != WEFT_OK && st != WEFT_ECANCELED) {
        weft_errgroup_t *eg = NULL;
        if (weft_group_errors(sub, &eg) == WEFT_OK &&
            weft_errgroup_first_leaf(eg, &s->first) == WEFT_OK) {
            weft_error_retain(s->first);
            st = weft_task_fail_with(self, s->first);
        }
        weft_errgroup_release(eg);
    }
    weft_group_destroy(sub);
    return st;
}

Test(group_nesting, deep_failure_cancels_tree)
{
    weft_executor_t *ex = ex_new(2);
    weft_executor_t *lex = ex_new(4);
    struct leaf X[2], Y[2];
    leaf_init(&X[0], 0, L_FAIL, WEFT_EUSER + 7, 0, ON_CANCEL_STOP);
    leaf_open(&X[0]);
    leaf_init(&X[1], 1, L_OK, 0, 1, ON_CANCEL_STOP);
    leaf_init(&Y[0], 2, L_OK, 0, 2, ON_CANCEL_STOP);
    leaf_init(&Y[1], 3, L_OK, 0, 3, ON_CANCEL_STOP);
    struct sub_task c1, c2;
    memset(&c1, 0, sizeof(c1));
    memset(&c2, 0, sizeof(c2));
    c1.lex = c2.lex = lex;
    c1.leaves = X;
    c2.leaves = Y;
    c1.n = c2.n = 2;
    weft_group_t *G = group_new(ex, NULL, 0, 0);
    weft_spawn_opts_t so = {.name = "C2", WEFT_SPAWN_SITE};
    cr_assert_eq(weft_group_spawn(G, &so, sub_task_body, &c2, NULL), WEFT_OK);
    await_flag(&c2.joining, "C2 to join its subgroup");
    await_flag(&Y[0].started, "y0");
    await_flag(&Y[1].started, "y1");
    so.name = "C1";
    cr_assert_eq(weft_group_spawn(G, &so, sub_task_body, &c1, NULL), WEFT_OK);
    weft_status_t st = join_guarded(G);
    cr_assert_eq(st, WEFT_EUSER + 7, "root join: the leaf's failure, got %d",
                 (int)st);
    cr_assert_eq(c1.join_status, WEFT_EUSER + 7);
    cr_assert_eq(c2.join_status, WEFT_ECANCELED, "C2's subgroup cancelled");
    cr_assert(c2.token_cancelled);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(c2.outcome[i], WEFT_OUTCOME_CANCELLED);
        cr_assert(c2.by_comb[i]);
        cr_assert_eq(atomic_load(&Y[i].saw_cancel), 1);
        cr_assert(caused_by(c2.reason[i], c1.first),
                  "y%d's reason leads back to x0's failure: %s", i,
                  FMT(c2.reason[i]));
    }
    cr_assert_eq(c1.outcome[1], WEFT_OUTCOME_CANCELLED);
    weft_child_result_t r;
    cr_assert_eq(weft_group_child(G, 0, &r), WEFT_OK); /* C2 */
    cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
    cr_assert(r.cancelled_by_combinator);
    cr_assert_eq(weft_group_child(G, 1, &r), WEFT_OK); /* C1 */
    cr_assert_eq(r.outcome, WEFT_OUTCOME_FAILED);
    weft_errgroup_t *eg = gerrors(G);
    cr_assert_eq(weft_errgroup_leaf_count(eg), 1);
    weft_error_t *first = NULL;
    cr_assert_eq(weft_errgroup_first_leaf(eg, &first), WEFT_OK);
    cr_assert(same_error(first, c1.first));
    weft_errgroup_release(eg);
    cr_assert_eq(weft_group_destroy(G), WEFT_OK);
    for (int i = 0; i < 2; i++) {
        if (c1.reason[i] != NULL) {
            weft_error_release(c1.reason[i]);
        }
        if (c2.reason[i] != NULL) {
            weft_error_release(c2.reason[i]);
        }
    }
    weft_error_release(c1.first);
    ex_end(ex);
    ex_end(lex);
    assert_accounting(X, 2);
    assert_accounting(Y, 2);
    finish();
}

/* A gather made inside a group child, under weft_task_token(self): the
 * group's cancellation reaches the gather's children. */
struct gather_in_child {
    weft_executor_t *lex;
    struct leaf *leaves;
    atomic_uint waiting;
    weft_status_t st;
};

static weft_status_t
gather_child_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct gather_in_child *c = arg;
    weft_future_t *f[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        weft_spawn_opts_t so = {.release = leaf_release};
        if (weft_spawn_ex(c->lex, &so, leaf_body, &c->leaves[i], &f[i]) !=
            WEFT_OK) {
            return WEFT_EUSER + 50;
        }
    }
    weft_combine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.token = weft_task_token(self);
    o.adopt = true;
    weft_future_t *g = NULL;
    if (weft_gather(weft_task_executor(self), f, 2, &o, &g) != WEFT_OK) {
        return WEFT_EUSER + 51;
    }
    atomic_store_explicit(&c->waiting, 1, memory_order_release);
    c->st = weft_future_wait(g);
    weft_future_release(g);
    return c->st == WEFT_ECANCELED ? WEFT_ECANCELED : c->st;
}

Test(group_nesting, combinator_under_group_child)
{
    weft_executor_t *ex = ex_new(2);
    weft_executor_t *lex = ex_new(2);
    struct leaf L[2];
    for (int i = 0; i < 2; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
    }
    struct gather_in_child c = {.lex = lex, .leaves = L};
    weft_group_t *g = group_new(ex, NULL, 0, 0);
    cr_assert_eq(weft_group_spawn(g, NULL, gather_child_body, &c, NULL),
                 WEFT_OK);
    await_flag(&c.waiting, "the child to wait on its gather");
    await_flag(&L[0].started, "leaf 0");
    await_flag(&L[1].started, "leaf 1");
    cr_assert_eq(weft_group_cancel(g, NULL), WEFT_OK);
    cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
    cr_assert_eq(c.st, WEFT_ECANCELED);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(atomic_load(&L[i].saw_cancel), 1);
    }
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    ex_end(lex);
    assert_accounting(L, 2);
    finish();
}

/* =========================================================================
 * group_limit
 * ========================================================================= */

struct lim {
    atomic_uint running;
    atomic_uint max;
    atomic_uint ran;
    atomic_uint seq;
    atomic_uint released;
    unsigned int order[128];
    int yields;
};

struct lim_child {
    struct lim *lm;
    unsigned int idx;
};

static void
lim_release(void *arg)
{
    atomic_fetch_add(&((struct lim_child *)arg)->lm->released, 1);
}

static weft_status_t
lim_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    result->u64 = 0;
    struct lim_child *c = arg;
    struct lim *lm = c->lm;
    unsigned int now = atomic_fetch_add(&lm->running, 1) + 1;
    unsigned int m = atomic_load(&lm->max);
    while (now > m && !atomic_compare_exchange_weak(&lm->max, &m, now)) {
    }
    unsigned int s = atomic_fetch_add(&lm->seq, 1);
    if (s < 128) {
        lm->order[s] = c->idx;
    }
    atomic_fetch_add(&lm->ran, 1);
    for (int i = 0; i < lm->yields; i++) {
        sched_yield();
    }
    atomic_fetch_sub(&lm->running, 1);
    return WEFT_OK;
}

static void
limit_scenario(unsigned int nworkers, size_t k, unsigned int n)
{
    weft_executor_t *ex = ex_new(nworkers);
    weft_group_t *g = group_new(ex, NULL, 0, k);
    struct lim lm;
    memset(&lm, 0, sizeof(lm));
    lm.yields = 20;
    struct lim_child kids[128];
    cr_assert_leq(n, 128);
    for (unsigned int i = 0; i < n; i++) {
        kids[i].lm = &lm;
        kids[i].idx = i;
        weft_spawn_opts_t so = {.release = lim_release};
        cr_assert_eq(weft_group_spawn(g, &so, lim_body, &kids[i], NULL),
                     WEFT_OK);
    }
    cr_assert_eq(join_guarded(g), WEFT_OK);
    cr_assert_eq(atomic_load(&lm.ran), n, "all ran: %u of %u",
                 atomic_load(&lm.ran), n);
    cr_assert_eq(atomic_load(&lm.released), n);
    cr_assert_leq(atomic_load(&lm.max), k,
                  "%u running at once with limit %zu on %u workers",
                  atomic_load(&lm.max), k, nworkers);
    cr_assert_geq(atomic_load(&lm.max), 1);
    if (k == 1) {
        for (unsigned int i = 0; i < n; i++) {
            cr_assert_eq(lm.order[i], i, "limit 1 starts in spawn order: "
                         "position %u ran child %u", i, lm.order[i]);
        }
    }
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
}

Test(group_limit, at_most_k_running)
{
    static const size_t ks[] = {1, 2, 5};
    for (size_t i = 0; i < 3; i++) {
        limit_scenario(8, ks[i], 100);
        limit_scenario(2, ks[i], 100);
        limit_scenario(1, ks[i], 100); /* waiting children block no worker */
    }
    finish();
}

Test(group_limit, failure_stops_waiting_children)
{
    /* limit 1: children run one at a time in spawn order; child 3 fails,
     * so children 4..9 never start. */
    weft_executor_t *ex = ex_new(2);
    weft_group_t *g = group_new(ex, NULL, 0, 1);
    struct leaf L[10];
    for (int i = 0; i < 10; i++) {
        leaf_init(&L[i], i, i == 3 ? L_FAIL : L_OK, WEFT_EUSER + 3, i,
                  ON_CANCEL_STOP);
        leaf_open(&L[i]);
        gspawn(g, &L[i]);
    }
    cr_assert_eq(join_guarded(g), WEFT_EUSER + 3);
    for (size_t i = 0; i < 10; i++) {
        weft_child_result_t r = gchild(g, i);
        if (i < 3) {
            cr_assert_eq(r.outcome, WEFT_OUTCOME_SUCCEEDED);
        } else if (i == 3) {
            cr_assert_eq(r.outcome, WEFT_OUTCOME_FAILED);
        } else {
            cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED, "child %zu: %s",
                         i, weft_outcome_name(r.outcome));
            cr_assert_not(r.started, "child %zu never started", i);
            cr_assert(r.cancelled_by_combinator);
            cr_assert_eq(atomic_load(&L[i].ran), 0);
        }
    }
    weft_errgroup_t *eg = gerrors(g);
    cr_assert_eq(weft_errgroup_count(eg), 1);
    weft_errgroup_release(eg);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    assert_accounting(L, 10);
    finish();
}

/*
 * Regression: a child spawned into a limited group while running children
 * end could be started by one of them (the limit's hand-off) and end
 * before the spawn had put its watch on it; the group then never drained
 * and the join hung. Many rounds of spawning while earlier children end
 * exercise that window (the old code hung here within a few runs; the
 * CTest timeout turns a hang into a failure).
 */
Test(group_limit, spawn_races_the_handoff)
{
    weft_executor_t *ex = ex_new(2);
    for (int round = 0; round < 300; round++) {
        weft_group_t *g = group_new(ex, NULL, 0, 2);
        struct leaf L[24];
        for (int i = 0; i < 24; i++) {
            leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
            leaf_open(&L[i]);
            gspawn(g, &L[i]);
        }
        cr_assert_eq(join_guarded(g), WEFT_OK, "round %d", round);
        for (size_t i = 0; i < 24; i++) {
            cr_assert_eq(gchild(g, i).outcome, WEFT_OUTCOME_SUCCEEDED);
        }
        cr_assert_eq(weft_group_destroy(g), WEFT_OK);
        assert_accounting(L, 24);
    }
    ex_end(ex);
    finish();
}

Test(group_limit, cancelled_child_frees_its_slot)
{
    /* limit 1: child 0 ends cancelled on its own; that is no failure, and
     * the others still start, one at a time. */
    weft_executor_t *ex = ex_new(2);
    weft_group_t *g = group_new(ex, NULL, 0, 1);
    struct leaf L[5];
    for (int i = 0; i < 5; i++) {
        leaf_init(&L[i], i, i == 0 ? L_SELF_CANCEL : L_OK, 0, i,
                  ON_CANCEL_STOP);
        leaf_open(&L[i]);
        gspawn(g, &L[i]);
    }
    cr_assert_eq(join_guarded(g), WEFT_OK);
    cr_assert_eq(gchild(g, 0).outcome, WEFT_OUTCOME_CANCELLED);
    for (size_t i = 1; i < 5; i++) {
        weft_child_result_t r = gchild(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_SUCCEEDED, "child %zu: %s", i,
                     weft_outcome_name(r.outcome));
        cr_assert_eq(atomic_load(&L[i].seq), (unsigned)i + 1,
                     "spawn order under limit 1");
    }
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    ex_end(ex);
    assert_accounting(L, 5);
    finish();
}

Test(group_limit, parent_cancel_stops_waiting_children)
{
    weft_executor_t *ex = ex_new(2);
    weft_token_t *P = tok_new();
    weft_group_t *g = group_new(ex, P, 0, 1);
    struct leaf L[5];
    for (int i = 0; i < 5; i++) {
        leaf_init(&L[i], i, L_OK, 0, i, ON_CANCEL_STOP);
        gspawn(g, &L[i]);
    }
    await_flag(&L[0].started, "child 0 to start");
    cr_assert_eq(weft_token_cancel(P, NULL), WEFT_OK);
    cr_assert_eq(join_guarded(g), WEFT_ECANCELED);
    weft_child_result_t r0 = gchild(g, 0);
    cr_assert_eq(r0.outcome, WEFT_OUTCOME_CANCELLED);
    cr_assert(r0.started);
    for (size_t i = 1; i < 5; i++) {
        weft_child_result_t r = gchild(g, i);
        cr_assert_eq(r.outcome, WEFT_OUTCOME_CANCELLED);
        cr_assert_not(r.started, "waiting child %zu never starts", i);
        cr_assert(r.cancelled_by_combinator);
        cr_assert_eq(atomic_load(&L[i].ran), 0);
    }
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    weft_token_release(P);
    ex_end(ex);
    assert_accounting(L, 5);
    finish();
}

/* =========================================================================
 * retry
 * ========================================================================= */

struct rctx {
    weft_retry_opts_t policy;
    unsigned int fail_until;  /* attempts 1..fail_until fail */
    unsigned int cancel_on;   /* attempt that cancels `tok` (0: none) */
    unsigned int signal_on;   /* attempt that sets `signal` */
    uint64_t spin_until_ns;   /* attempts spin until then (0: no) */
    weft_token_t *tok;
    atomic_uint attempts;
    atomic_uint signal;
    atomic_uint pred_calls;
    void *pred_ctx_seen;
    int reject_code;
    bool want_errors;
    weft_status_t st;
    weft_value_t value;
    weft_errgroup_t *errors;
};

static weft_status_t
attempt_fn(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct rctx *c = arg;
    unsigned int n = atomic_fetch_add(&c->attempts, 1) + 1;
    if (c->spin_until_ns != 0) {
        while (weft_clock_now_ns() < c->spin_until_ns) {
            sched_yield();
        }
    }
    if (c->cancel_on == n) {
        weft_token_cancel(c->tok, NULL);
    }
    if (n > c->fail_until) {
        result->i64 = 1000 + n;
        if (c->signal_on == n) {
            atomic_store_explicit(&c->signal, 1, memory_order_release);
        }
        return WEFT_OK;
    }
    weft_status_t st =
        weft_task_fail(self, WEFT_EUSER + (int)n, "attempt %u failed", n);
    if (c->signal_on == n) {
        atomic_store_explicit(&c->signal, 1, memory_order_release);
    }
    return st;
}

static bool
reject_pred(const weft_error_t *e, void *ctx)
{
    struct rctx *c = ctx;
    atomic_fetch_add(&c->pred_calls, 1);
    c->pred_ctx_seen = ctx;
    return weft_error_status(e) != c->reject_code;
}

static weft_status_t
retry_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct rctx *c = arg;
    c->st = weft_retry(self, &c->policy, attempt_fn, c, &c->value,
                       c->want_errors ? &c->errors : NULL);
    return WEFT_OK;
}

static void
rctx_init(struct rctx *c)
{
    memset(c, 0, sizeof(*c));
    c->policy.initial_delay_ns = 1000; /* 1 us: tiny */
    c->policy.max_delay_ns = 100000;
    c->want_errors = true;
}

static weft_future_t *
run_retry(weft_executor_t *ex, struct rctx *c, weft_token_t *tok)
{
    weft_spawn_opts_t so = {.name = "retrying", .token = tok,
                            WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &so, retry_task, c, &f), WEFT_OK);
    return f;
}

static void
assert_attempt_errors(struct rctx *c, unsigned int n)
{
    cr_assert_not_null(c->errors, "an error group is returned");
    cr_assert_eq(weft_errgroup_count(c->errors), n, "errors: %zu, want %u",
                 weft_errgroup_count(c->errors), n);
    for (unsigned int i = 0; i < n; i++) {
        weft_error_t *e = entry_error(c->errors, i);
        cr_assert_eq(weft_error_status(e), WEFT_EUSER + (int)i + 1,
                     "entry %u: %s", i, FMT(e));
        char want[32];
        snprintf(want, sizeof(want), "attempt %u failed", i + 1);
        cr_assert_str_eq(weft_error_message(e), want);
    }
}

Test(retry, succeeds_after_failures)
{
    weft_executor_t *ex = ex_new(2);
    struct rctx c;
    rctx_init(&c);
    c.policy.max_attempts = 5;
    c.policy.jitter = 0.5;
    c.policy.seed = 42;
    c.fail_until = 2;
    weft_future_t *f = run_retry(ex, &c, NULL);
    cr_assert_eq(wait_end(f), WEFT_OK);
    cr_assert_eq(c.st, WEFT_OK);
    cr_assert_eq(atomic_load(&c.attempts), 3);
    cr_assert_eq(c.value.i64, 1003, "the successful attempt's value");
    assert_attempt_errors(&c, 2);
    weft_errgroup_release(c.errors);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(retry, exhausted)
{
    weft_executor_t *ex = ex_new(1);
    struct rctx c;
    rctx_init(&c);
    c.policy.max_attempts = 4;
    c.policy.multiplier = 3.0;
    c.fail_until = 100;
    weft_future_t *f = run_retry(ex, &c, NULL);
    cr_assert_eq(wait_end(f), WEFT_OK);
    cr_assert_eq(c.st, WEFT_EUSER + 4, "the last failure's status, got %d",
                 (int)c.st);
    cr_assert_eq(atomic_load(&c.attempts), 4);
    assert_attempt_errors(&c, 4);
    weft_errgroup_release(c.errors);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    /* errors == NULL is fine. */
    rctx_init(&c);
    c.policy.max_attempts = 2;
    c.fail_until = 100;
    c.want_errors = false;
    f = run_retry(ex, &c, NULL);
    wait_end(f);
    cr_assert_eq(c.st, WEFT_EUSER + 2);
    cr_assert_eq(atomic_load(&c.attempts), 2);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(retry, zero_attempts_means_one)
{
    weft_executor_t *ex = ex_new(1);
    struct rctx c;
    rctx_init(&c);
    c.policy.max_attempts = 0;
    c.fail_until = 100;
    weft_future_t *f = run_retry(ex, &c, NULL);
    wait_end(f);
    cr_assert_eq(c.st, WEFT_EUSER + 1);
    cr_assert_eq(atomic_load(&c.attempts), 1);
    assert_attempt_errors(&c, 1);
    weft_errgroup_release(c.errors);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(retry, predicate_rejects)
{
    weft_executor_t *ex = ex_new(1);
    struct rctx c;
    rctx_init(&c);
    c.policy.max_attempts = 10;
    c.policy.retryable = reject_pred;
    c.policy.ctx = &c;
    c.reject_code = WEFT_EUSER + 2;
    c.fail_until = 100;
    weft_future_t *f = run_retry(ex, &c, NULL);
    wait_end(f);
    cr_assert_eq(c.st, WEFT_EUSER + 2, "stops at the rejected failure");
    cr_assert_eq(atomic_load(&c.attempts), 2);
    cr_assert_geq(atomic_load(&c.pred_calls), 2);
    cr_assert_eq(c.pred_ctx_seen, &c);
    assert_attempt_errors(&c, 2);
    weft_errgroup_release(c.errors);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(retry, cancel_between_attempts)
{
    weft_executor_t *ex = ex_new(2);
    /* (a) the first attempt cancels the task's token as it fails. */
    weft_token_t *tok = tok_new();
    struct rctx c;
    rctx_init(&c);
    c.policy.max_attempts = 5;
    c.fail_until = 100;
    c.cancel_on = 1;
    c.tok = tok;
    weft_future_t *f = run_retry(ex, &c, tok);
    wait_end(f);
    cr_assert_eq(c.st, WEFT_ECANCELED, "got %s", weft_status_name(c.st));
    cr_assert_eq(atomic_load(&c.attempts), 1);
    if (c.errors != NULL) {
        cr_assert_eq(weft_errgroup_count(c.errors), 1);
        weft_errgroup_release(c.errors);
    }
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    weft_token_release(tok);

    /* (b) cancelled while it backs off for a minute: only an early end of
     * the wait can finish before the hang guard. */
    for (int how = 0; how < 2; how++) {
        tok = tok_new();
        rctx_init(&c);
        c.policy.max_attempts = 5;
        c.policy.initial_delay_ns = 60 * SEC_NS;
        c.policy.max_delay_ns = 0;
        c.fail_until = 100;
        c.signal_on = 1;
        f = run_retry(ex, &c, tok);
        await_flag(&c.signal, "the first attempt");
        if (how == 0) {
            cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);
        } else {
            cr_assert_eq(weft_future_cancel(f, NULL), WEFT_OK);
        }
        wait_end(f);
        cr_assert_eq(c.st, WEFT_ECANCELED, "how %d: got %s", how,
                     weft_status_name(c.st));
        cr_assert_eq(atomic_load(&c.attempts), 1);
        if (c.errors != NULL) {
            weft_errgroup_release(c.errors);
        }
        cr_assert_eq(weft_future_release(f), WEFT_OK);
        weft_token_release(tok);
    }
    ex_end(ex);
    finish();
}

Test(retry, deadline)
{
    weft_executor_t *ex = ex_new(1);
    /* Already passed: no attempt starts. */
    struct rctx c;
    rctx_init(&c);
    c.policy.max_attempts = 5;
    c.policy.deadline_ns = FAR_PAST;
    weft_future_t *f = run_retry(ex, &c, NULL);
    wait_end(f);
    cr_assert_eq(c.st, WEFT_ETIMEDOUT, "got %s", weft_status_name(c.st));
    cr_assert_eq(atomic_load(&c.attempts), 0);
    if (c.errors != NULL) {
        cr_assert_eq(weft_errgroup_count(c.errors), 0);
        weft_errgroup_release(c.errors);
    }
    cr_assert_eq(weft_future_release(f), WEFT_OK);

    /* 5 ms out; an attempt outlasts it and fails: none starts after. */
    rctx_init(&c);
    c.policy.max_attempts = 5;
    c.policy.deadline_ns = deadline_in(5 * MS_NS);
    c.spin_until_ns = c.policy.deadline_ns + MS_NS;
    c.fail_until = 100;
    f = run_retry(ex, &c, NULL);
    wait_end(f);
    cr_assert_eq(c.st, WEFT_ETIMEDOUT, "got %s", weft_status_name(c.st));
    unsigned int a = atomic_load(&c.attempts);
    cr_assert_leq(a, 1, "no attempt starts after the deadline (%u)", a);
    if (a == 1) {
        assert_attempt_errors(&c, 1);
    }
    if (c.errors != NULL) {
        weft_errgroup_release(c.errors);
    }
    cr_assert_eq(weft_future_release(f), WEFT_OK);

    /* A backoff that would cross the deadline: ETIMEDOUT, earlier
     * failures kept. */
    rctx_init(&c);
    c.policy.max_attempts = 5;
    c.policy.initial_delay_ns = 60 * SEC_NS;
    c.policy.max_delay_ns = 0;
    c.policy.deadline_ns = deadline_in(20 * MS_NS);
    c.fail_until = 100;
    f = run_retry(ex, &c, NULL);
    wait_end(f);
    cr_assert_eq(c.st, WEFT_ETIMEDOUT, "got %s", weft_status_name(c.st));
    a = atomic_load(&c.attempts);
    cr_assert_leq(a, 1);
    if (a == 1) {
        assert_attempt_errors(&c, 1);
    }
    if (c.errors != NULL) {
        weft_errgroup_release(c.errors);
    }
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    finish();
}

Test(retry, bad_arguments)
{
    weft_retry_opts_t p;
    memset(&p, 0, sizeof(p));
    weft_value_t v;
    weft_errgroup_t *eg = NULL;
    cr_assert_eq(weft_retry(NULL, &p, attempt_fn, NULL, &v, &eg),
                 WEFT_EINVAL);
    cr_assert_null(eg);
    finish();
}

struct retry_null_fn {
    weft_retry_opts_t p;
    weft_status_t st;
};

static weft_status_t
retry_null_fn_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct retry_null_fn *r = arg;
    r->st = weft_retry(self, &r->p, NULL, NULL, result, NULL);
    return WEFT_OK;
}

Test(retry, null_fn)
{
    weft_executor_t *ex = ex_new(1);
    struct retry_null_fn r;
    memset(&r, 0, sizeof(r));
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, retry_null_fn_task, &r, &f), WEFT_OK);
    wait_end(f);
    cr_assert_eq(r.st, WEFT_EINVAL);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    ex_end(ex);
    finish();
}

/* =========================================================================
 * parallel_for
 * ========================================================================= */

struct pf {
    size_t lo, hi, grain;
    atomic_uchar *hits;
    atomic_uint bad_chunk; /* empty, inverted, too large or out of range */
    atomic_size_t chunks;
    atomic_size_t calls;
    /* failure / cancellation injection */
    int fail_code;          /* the first call fails with it (0: never) */
    weft_token_t *cancel;   /* the first call cancels it (NULL: never) */
    atomic_uint tripped;    /* set by the first call before it returns */
    atomic_size_t after;    /* calls that started after `tripped` */
};

static weft_status_t
pf_body(weft_task_t *self, void *arg, size_t lo, size_t hi)
{
    struct pf *p = arg;
    if (atomic_load_explicit(&p->tripped, memory_order_acquire) != 0) {
        atomic_fetch_add(&p->after, 1);
    }
    size_t call = atomic_fetch_add(&p->calls, 1);
    atomic_fetch_add(&p->chunks, 1);
    if (hi <= lo || lo < p->lo || hi > p->hi ||
        (p->grain != 0 && hi - lo > p->grain)) {
        atomic_fetch_add(&p->bad_chunk, 1);
        return WEFT_OK;
    }
    for (size_t i = lo; i < hi; i++) {
        atomic_fetch_add_explicit(&p->hits[i - p->lo], 1,
                                  memory_order_relaxed);
    }
    if (call == 0 && p->cancel != NULL) {
        weft_token_cancel(p->cancel, NULL);
        atomic_store_explicit(&p->tripped, 1, memory_order_release);
        return WEFT_OK;
    }
    if (call == 0 && p->fail_code != 0) {
        weft_status_t st = weft_task_fail(self, p->fail_code,
                                          "chunk [%zu, %zu) failed", lo, hi);
        atomic_store_explicit(&p->tripped, 1, memory_order_release);
        return st;
    }
    return WEFT_OK;
}

static void
pf_init(struct pf *p, size_t lo, size_t hi, size_t grain)
{
    memset(p, 0, sizeof(*p));
    p->lo = lo;
    p->hi = hi;
    p->grain = grain;
    p->hits = calloc(hi - lo + 1, sizeof(atomic_uchar));
    cr_assert_not_null(p->hits);
}

static void
pf_check_once(struct pf *p)
{
    cr_assert_eq(atomic_load(&p->bad_chunk), 0,
                 "[%zu, %zu) grain %zu: a chunk was empty, too large or out "
                 "of range",
                 p->lo, p->hi, p->grain);
    for (size_t i = 0; i < p->hi - p->lo; i++) {
        cr_assert_eq(atomic_load(&p->hits[i]), 1,
                     "[%zu, %zu) grain %zu: index %zu covered %u times",
                     p->lo, p->hi, p->grain, p->lo + i,
                     (unsigned)atomic_load(&p->hits[i]));
    }
}

struct pf_case {
    size_t lo, hi, grain;
};

/* Empty ranges are in parallel_for::empty_range. */
static const struct pf_case pf_cases[] = {
    {0, 1, 0},        {0, 1, 1},          {0, 1, 100},
    {0, 10, 3},       {0, 10, 10},        {0, 10, 11},
    {5, 1005, 0},     {0, 1000, 1},       {3, 1003, 7},
    {0, 4096, 64},    {100, 100100, 0},   {0, 100000, 997},
    {0, 65537, 4096}, {SIZE_MAX - 100, SIZE_MAX, 7},
    {SIZE_MAX - 1000, SIZE_MAX, 0},
};
#define NPF (sizeof(pf_cases) / sizeof(pf_cases[0]))

/* Runs one parallel_for from inside a task (a worker that helps). */
struct pf_in_task {
    struct pf *p;
    weft_status_t st;
};

static weft_status_t
pf_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct pf_in_task *t = arg;
    weft_for_opts_t o;
    memset(&o, 0, sizeof(o));
    o.grain = t->p->grain;
    t->st = weft_parallel_for(weft_task_executor(self), t->p->lo, t->p->hi,
                              &o, pf_body, t->p, NULL);
    return WEFT_OK;
}

Test(parallel_for, covers_every_index_once)
{
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        for (size_t c = 0; c < NPF; c++) {
            for (int inside = 0; inside < 2; inside++) {
                struct pf p;
                pf_init(&p, pf_cases[c].lo, pf_cases[c].hi,
                        pf_cases[c].grain);
                weft_status_t st;
                if (inside) {
                    struct pf_in_task t = {.p = &p};
                    weft_future_t *f = NULL;
                    cr_assert_eq(weft_spawn(ex, pf_task, &t, &f), WEFT_OK);
                    wait_end(f);
                    weft_future_release(f);
                    st = t.st;
                } else {
                    weft_for_opts_t o;
                    memset(&o, 0, sizeof(o));
                    o.grain = p.grain;
                    weft_errgroup_t *eg = NULL;
                    st = weft_parallel_for(ex, p.lo, p.hi, &o, pf_body, &p,
                                           &eg);
                    if (eg != NULL) {
                        cr_assert_eq(weft_errgroup_count(eg), 0);
                        weft_errgroup_release(eg);
                    }
                }
                cr_assert_eq(st, WEFT_OK, "[%zu, %zu) grain %zu: %s", p.lo,
                             p.hi, p.grain, weft_status_name(st));
                pf_check_once(&p);
                size_t n = p.hi - p.lo;
                if (p.grain == 0 && n >= 1000) {
                    cr_assert_geq(atomic_load(&p.chunks), 2,
                                  "automatic grain splits a large range");
                }
                if (p.grain != 0 && n > 0) {
                    cr_assert_geq(atomic_load(&p.chunks),
                                  (n + p.grain - 1) / p.grain);
                }
                free(p.hits);
            }
        }
        ex_end(ex);
    }
    /* opts may be NULL. */
    weft_executor_t *ex = ex_new(2);
    struct pf p;
    pf_init(&p, 0, 5000, 0);
    cr_assert_eq(weft_parallel_for(ex, 0, 5000, NULL, pf_body, &p, NULL),
                 WEFT_OK);
    pf_check_once(&p);
    free(p.hits);
    ex_end(ex);
    finish();
}

Test(parallel_for, empty_range)
{
    static const struct pf_case empty[] = {
        {0, 0, 0}, {0, 0, 5}, {7, 7, 3}, {SIZE_MAX, SIZE_MAX, 0}};
    static const unsigned int workers[] = {1, 2};
    for (size_t w = 0; w < 2; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        for (size_t c = 0; c < 4; c++) {
            struct pf p;
            pf_init(&p, empty[c].lo, empty[c].hi, empty[c].grain);
            weft_for_opts_t o = {.grain = p.grain};
            weft_status_t st =
                weft_parallel_for(ex, p.lo, p.hi, &o, pf_body, &p, NULL);
            cr_assert_eq(st, WEFT_OK);
            cr_assert_eq(atomic_load(&p.calls), 0,
                         "[%zu, %zu): the body is never called for an "
                         "empty range (called %zu times)",
                         p.lo, p.hi, atomic_load(&p.calls));
            free(p.hits);
        }
        ex_end(ex);
    }
    finish();
}

Test(parallel_for, bad_arguments)
{
    weft_executor_t *ex = ex_new(1);
    struct pf p;
    pf_init(&p, 0, 10, 1);
    cr_assert_eq(weft_parallel_for(NULL, 0, 10, NULL, pf_body, &p, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(weft_parallel_for(ex, 0, 10, NULL, NULL, &p, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(weft_parallel_for(ex, 10, 9, NULL, pf_body, &p, NULL),
                 WEFT_EINVAL, "lo > hi");
    cr_assert_eq(atomic_load(&p.calls), 0);
    free(p.hits);
    ex_end(ex);
    finish();
}

Test(parallel_for, failing_chunk)
{
    static const unsigned int workers[] = {1, 2};
    for (size_t w = 0; w < 2; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        struct pf p;
        pf_init(&p, 0, 1000, 1);
        p.fail_code = WEFT_EUSER + 3;
        weft_for_opts_t o = {.grain = 1};
        weft_errgroup_t *eg = NULL;
        weft_status_t st =
            weft_parallel_for(ex, 0, 1000, &o, pf_body, &p, &eg);
        cr_assert_eq(st, WEFT_EUSER + 3, "first failure's status, got %d",
                     (int)st);
        cr_assert_not_null(eg);
        cr_assert_geq(weft_errgroup_count(eg), 1);
        weft_error_t *first = NULL;
        cr_assert_eq(weft_errgroup_first_leaf(eg, &first), WEFT_OK);
        cr_assert_eq(weft_error_status(first), WEFT_EUSER + 3);
        weft_errgroup_release(eg);
        /* The rest were cancelled: each worker may start at most one chunk
         * that had passed its check when the failure happened. */
        size_t after = atomic_load(&p.after);
        cr_assert_leq(after, workers[w],
                      "%zu chunks started after the failure on %u workers "
                      "(of %zu calls)",
                      after, workers[w], atomic_load(&p.calls));
        /* No bound on calls before the failure: the failing call may be
         * preempted while the other worker runs every other chunk (seen
         * on a loaded CI machine), so only "after" is a real invariant. */
        cr_assert_leq(atomic_load(&p.calls), 1000);
        cr_assert_eq(atomic_load(&p.bad_chunk), 0);
        free(p.hits);
        ex_end(ex);
    }
    finish();
}

Test(parallel_for, token_cancel_stops_new_chunks)
{
    static const unsigned int workers[] = {1, 2};
    for (size_t w = 0; w < 2; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        weft_token_t *tok = tok_new();
        struct pf p;
        pf_init(&p, 0, 1000, 1);
        p.cancel = tok;
        weft_for_opts_t o = {.grain = 1, .token = tok};
        weft_errgroup_t *eg = NULL;
        weft_status_t st =
            weft_parallel_for(ex, 0, 1000, &o, pf_body, &p, &eg);
        cr_assert_eq(st, WEFT_ECANCELED, "got %s", weft_status_name(st));
        if (eg != NULL) {
            cr_assert_eq(weft_errgroup_count(eg), 0, "nothing failed");
            weft_errgroup_release(eg);
        }
        size_t after = atomic_load(&p.after);
        cr_assert_leq(after, workers[w],
                      "%zu chunks started after the cancel on %u workers",
                      after, workers[w]);
        /* As in failing_chunk: only "after" is an invariant. */
        cr_assert_leq(atomic_load(&p.calls), 1000);
        free(p.hits);
        weft_token_release(tok);
        ex_end(ex);
    }
    /* Cancelled before the call: nothing runs. */
    weft_executor_t *ex = ex_new(2);
    weft_token_t *tok = tok_new();
    weft_token_cancel(tok, NULL);
    struct pf p;
    pf_init(&p, 0, 1000, 10);
    weft_for_opts_t o = {.grain = 10, .token = tok};
    cr_assert_eq(weft_parallel_for(ex, 0, 1000, &o, pf_body, &p, NULL),
                 WEFT_ECANCELED);
    cr_assert_eq(atomic_load(&p.calls), 0);
    free(p.hits);
    weft_token_release(tok);
    ex_end(ex);
    finish();
}

/* =========================================================================
 * parallel_reduce
 * ========================================================================= */

static weft_status_t
sum_fold(weft_task_t *self, void *arg, size_t lo, size_t hi,
         weft_value_t *acc)
{
    (void)self;
    (void)arg;
    for (size_t i = lo; i < hi; i++) {
        acc->u64 += i;
    }
    return WEFT_OK;
}

static void
sum_combine(void *arg, weft_value_t *a, weft_value_t b)
{
    (void)arg;
    a->u64 += b.u64;
}

/* 2x2 matrices mod P packed in 16-bit fields: a non-commutative monoid. */
#define MP 65521u

static uint64_t
mat_pack(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    return a | b << 16 | c << 32 | d << 48;
}

static uint64_t
mat_mul(uint64_t x, uint64_t y)
{
    uint64_t a = x & 0xffff, b = x >> 16 & 0xffff, c = x >> 32 & 0xffff,
             d = x >> 48;
    uint64_t e = y & 0xffff, f = y >> 16 & 0xffff, g = y >> 32 & 0xffff,
             h = y >> 48;
    return mat_pack((a * e + b * g) % MP, (a * f + b * h) % MP,
                    (c * e + d * g) % MP, (c * f + d * h) % MP);
}

static uint64_t
mat_of(size_t i)
{
    uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return mat_pack(h % MP, (h >> 16) % MP, (h >> 32) % MP, (h >> 48) % MP);
}

static weft_status_t
mat_fold(weft_task_t *self, void *arg, size_t lo, size_t hi,
         weft_value_t *acc)
{
    (void)self;
    (void)arg;
    for (size_t i = lo; i < hi; i++) {
        acc->u64 = mat_mul(acc->u64, mat_of(i));
    }
    return WEFT_OK;
}

static void
mat_combine(void *arg, weft_value_t *a, weft_value_t b)
{
    (void)arg;
    a->u64 = mat_mul(a->u64, b.u64);
}

/* Strings as (length, polynomial hash mod Q): concatenation. */
#define HQ 2147483629ull
#define HB 131ull

static uint64_t
pow_mod(uint64_t b, uint64_t e)
{
    uint64_t r = 1;
    b %= HQ;
    while (e != 0) {
        if (e & 1) {
            r = r * b % HQ;
        }
        b = b * b % HQ;
        e >>= 1;
    }
    return r;
}

static uint64_t
str_cat(uint64_t x, uint64_t y)
{
    uint64_t lx = x >> 32, hx = x & 0xffffffffu;
    uint64_t ly = y >> 32, hy = y & 0xffffffffu;
    uint64_t h = (hx * pow_mod(HB, ly) + hy) % HQ;
    return (lx + ly) << 32 | h;
}

static uint64_t
str_of(size_t i)
{
    return 1ull << 32 | (uint64_t)('a' + i % 26);
}

static weft_status_t
str_fold(weft_task_t *self, void *arg, size_t lo, size_t hi,
         weft_value_t *acc)
{
    (void)self;
    (void)arg;
    for (size_t i = lo; i < hi; i++) {
        acc->u64 = str_cat(acc->u64, str_of(i));
    }
    return WEFT_OK;
}

static void
str_combine(void *arg, weft_value_t *a, weft_value_t b)
{
    (void)arg;
    a->u64 = str_cat(a->u64, b.u64);
}

static const size_t red_sizes[] = {0, 1, 2, 7, 100, 1000, 100003};
static const size_t red_grains[] = {0, 1, 13, 4096};

Test(parallel_reduce, sum_matches_sequential)
{
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        for (size_t s = 0; s < 7; s++) {
            for (size_t gi = 0; gi < 4; gi++) {
                size_t lo = 17, hi = 17 + red_sizes[s];
                if (red_grains[gi] == 1 && red_sizes[s] > 1000) {
                    continue; /* 100k one-index chunks: slow, no news */
                }
                uint64_t want = 0;
                for (size_t i = lo; i < hi; i++) {
                    want += i;
                }
                weft_for_opts_t o = {.grain = red_grains[gi]};
                weft_value_t id = {.u64 = 0}, res = {.u64 = 12345};
                weft_status_t st = weft_parallel_reduce(
                    ex, lo, hi, &o, id, sum_fold, sum_combine, NULL, &res,
                    NULL);
                cr_assert_eq(st, WEFT_OK);
                cr_assert_eq(res.u64, want,
                             "n %zu grain %zu: %llu, want %llu",
                             red_sizes[s], red_grains[gi],
                             (unsigned long long)res.u64,
                             (unsigned long long)want);
            }
        }
        ex_end(ex);
    }
    finish();
}

static void
ordered_reduce(weft_reduce_fn_t fold, weft_combine_fn_t comb, uint64_t idv,
               uint64_t (*seq)(size_t lo, size_t hi), const char *what)
{
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        weft_executor_t *ex = ex_new(workers[w]);
        for (size_t s = 0; s < 7; s++) {
            for (size_t gi = 0; gi < 4; gi++) {
                if (red_grains[gi] == 1 && red_sizes[s] > 1000) {
                    continue;
                }
                size_t lo = 3, hi = 3 + red_sizes[s];
                uint64_t want = seq(lo, hi);
                weft_for_opts_t o = {.grain = red_grains[gi]};
                weft_value_t id = {.u64 = idv}, res = {.u64 = 0};
                weft_status_t st = weft_parallel_reduce(
                    ex, lo, hi, &o, id, fold, comb, NULL, &res, NULL);
                cr_assert_eq(st, WEFT_OK);
                cr_assert_eq(res.u64, want,
                             "%s: n %zu grain %zu workers %u: out of order",
                             what, red_sizes[s], red_grains[gi], workers[w]);
            }
        }
        ex_end(ex);
    }
}

static uint64_t
mat_seq(size_t lo, size_t hi)
{
    uint64_t m = mat_pack(1, 0, 0, 1);
    for (size_t i = lo; i < hi; i++) {
        m = mat_mul(m, mat_of(i));
    }
    return m;
}

static uint64_t
str_seq(size_t lo, size_t hi)
{
    uint64_t m = 0;
    for (size_t i = lo; i < hi; i++) {
        m = str_cat(m, str_of(i));
    }
    return m;
}

Test(parallel_reduce, matrix_product_in_order)
{
    /* Sanity: the monoid really is non-commutative. */
    cr_assert_neq(mat_mul(mat_of(1), mat_of(2)), mat_mul(mat_of(2), mat_of(1)));
    ordered_reduce(mat_fold, mat_combine, mat_pack(1, 0, 0, 1), mat_seq,
                   "matrix");
    finish();
}

Test(parallel_reduce, concatenation_in_order)
{
    cr_assert_neq(str_cat(str_of(0), str_of(1)), str_cat(str_of(1), str_of(0)));
    ordered_reduce(str_fold, str_combine, 0, str_seq, "concat");
    finish();
}

static weft_status_t
fail_fold(weft_task_t *self, void *arg, size_t lo, size_t hi,
          weft_value_t *acc)
{
    atomic_uint *calls = arg;
    if (atomic_fetch_add(calls, 1) == 3) {
        return weft_task_fail(self, WEFT_EUSER + 8, "fold [%zu, %zu)", lo,
                              hi);
    }
    acc->u64 += hi - lo;
    return WEFT_OK;
}

Test(parallel_reduce, failing_chunk)
{
    weft_executor_t *ex = ex_new(2);
    atomic_uint calls = 0;
    weft_for_opts_t o = {.grain = 10};
    weft_value_t id = {.u64 = 0}, res = {.u64 = 777};
    weft_errgroup_t *eg = NULL;
    weft_status_t st = weft_parallel_reduce(ex, 0, 1000, &o, id, fail_fold,
                                            sum_combine, &calls, &res, &eg);
    cr_assert_eq(st, WEFT_EUSER + 8, "got %d", (int)st);
    cr_assert_not_null(eg);
    cr_assert_geq(weft_errgroup_count(eg), 1);
    weft_error_t *first = NULL;
    cr_assert_eq(weft_errgroup_first_leaf(eg, &first), WEFT_OK);
    cr_assert_eq(weft_error_status(first), WEFT_EUSER + 8);
    weft_errgroup_release(eg);
    /* No bound on calls before the failure (the failing call may be
     * preempted while the other worker folds every other chunk). */
    cr_assert_leq(atomic_load(&calls), 100);
    /* Cancelled before: identity untouched, ECANCELED. */
    weft_token_t *tok = tok_new();
    weft_token_cancel(tok, NULL);
    o.token = tok;
    atomic_store(&calls, 0);
    st = weft_parallel_reduce(ex, 0, 1000, &o, id, fail_fold, sum_combine,
                              &calls, &res, NULL);
    cr_assert_eq(st, WEFT_ECANCELED);
    cr_assert_eq(atomic_load(&calls), 0);
    weft_token_release(tok);
    /* Empty range: the identity. */
    o.token = NULL;
    weft_value_t id9 = {.u64 = 9};
    cr_assert_eq(weft_parallel_reduce(ex, 5, 5, &o, id9, sum_fold,
                                      sum_combine, NULL, &res, NULL),
                 WEFT_OK);
    cr_assert_eq(res.u64, 9);
    cr_assert_eq(weft_parallel_reduce(ex, 6, 5, &o, id9, sum_fold,
                                      sum_combine, NULL, &res, NULL),
                 WEFT_EINVAL);
    ex_end(ex);
    finish();
}
