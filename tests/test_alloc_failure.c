/*
 * test_alloc_failure.c - allocation failure at every site of a scenario.
 *
 * For each k = 0, 1, 2, ... the k-th allocation of the scenario fails
 * (weft__alloc_set_fail_after), until a run no longer reaches k (the
 * injector's failure count does not move). Every run must:
 *   - return only documented statuses (WEFT_ENOMEM where it failed);
 *   - end every accepted task exactly once (its body ran, or it ended
 *     cancelled without running) and run every release hook exactly once,
 *     for accepted and refused spawns alike;
 *   - leak nothing (weft__alloc_live() back to its value before the run);
 *   - leave the executor usable (a later task on it still succeeds);
 *   - not hang (the suite's timeout guards it).
 * The scenario touches every allocation site of the executor: the
 * executor and its worker array, deque buffers (initial and grown), pool
 * slabs (on a worker and from outside), task errors, token callbacks,
 * continuations, and the deadline timer's heap.
 */
#include <criterion/criterion.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <weft.h>

#include "primitives/alloc.h"

TestSuite(alloc_failure, .timeout = 120.0);

/* More than one pool slab (256 objects) and more than the initial deque
 * buffer (1024 slots), so slab refills and deque growth are both hit. */
#define FANOUT 1500

static atomic_int bodies;
static atomic_int hooks;
static atomic_int spawn_calls;

static void
hook(void *arg)
{
    (void)arg;
    atomic_fetch_add(&hooks, 1);
}

static weft_status_t
leaf(weft_task_t *self, void *arg, weft_value_t *out)
{
    atomic_fetch_add(&bodies, 1);
    intptr_t i = (intptr_t)arg;
    if (i % 7 == 3) {
        /* Makes an error value: an allocation site. */
        return weft_task_fail(self, WEFT_EUSER, "leaf %ld failed", (long)i);
    }
    out->i64 = i;
    return WEFT_OK;
}

static weft_status_t
cont(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    atomic_fetch_add(&bodies, 1);
    out->i64 = weft_future_is_done(weft_task_antecedent(self));
    return WEFT_OK;
}

struct tally {
    int accepted; /* spawns that returned WEFT_OK */
    int ended;    /* of those, futures seen ended */
};

/* Root task: fan out with hooks and names, join everything. */
static weft_status_t
root(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct tally *t = arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t **fs = calloc(FANOUT, sizeof(*fs));
    if (fs == NULL) {
        return WEFT_ENOMEM;
    }
    /* Leaves carry a token (a reference per task, dropped when the task
     * ends or its spawn is refused). Without one if it cannot be made. */
    weft_token_t *tok = NULL;
    weft_status_t ts = weft_token_create(NULL, &tok);
    cr_assert(ts == WEFT_OK || ts == WEFT_ENOMEM);
    for (intptr_t i = 0; i < FANOUT; i++) {
        weft_spawn_opts_t o = {.release = hook, .name = "leaf", .token = tok,
                               WEFT_SPAWN_SITE};
        atomic_fetch_add(&spawn_calls, 1);
        weft_status_t st = weft_spawn_ex(ex, &o, leaf, (void *)i, &fs[i]);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "spawn: %s",
                  weft_status_name(st));
        if (st == WEFT_OK) {
            t->accepted++;
        }
    }
    for (intptr_t i = FANOUT - 1; i >= 0; i--) {
        if (fs[i] == NULL) {
            continue;
        }
        weft_status_t st = weft_future_wait(fs[i]);
        cr_assert(st == WEFT_OK || st == WEFT_EUSER, "wait: %s",
                  weft_status_name(st));
        t->ended += weft_future_is_done(fs[i]);
        cr_assert(st == WEFT_OK || weft_future_error(fs[i]) != NULL,
                  "a failed future always has an error (static ENOMEM at "
                  "worst)");
        weft_future_release(fs[i]);
    }
    if (tok != NULL) {
        weft_token_release(tok);
    }
    free(fs);
    out->i64 = t->accepted;
    return WEFT_OK;
}

/* One run of the scenario, with the injector armed by the caller. */
static void
scenario(unsigned int workers)
{
    atomic_store(&bodies, 0);
    atomic_store(&hooks, 0);
    atomic_store(&spawn_calls, 0);
    int64_t live = weft__alloc_live();

    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = workers;
    weft_executor_t *ex = NULL;
    weft_status_t st = weft_executor_create(&c, &ex);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "create: %s",
              weft_status_name(st));
    if (st != WEFT_OK) {
        cr_assert_null(ex);
        cr_assert_eq(weft__alloc_live(), live, "failed create leaked");
        return;
    }

    /* Outside spawns (injection queue, external pool slab). */
    struct tally t = {0, 0};
    int outside_accepted = 0;
    weft_future_t *rf = NULL;
    atomic_fetch_add(&spawn_calls, 1);
    weft_spawn_opts_t ro = {.release = hook, WEFT_SPAWN_SITE};
    st = weft_spawn_ex(ex, &ro, root, &t, &rf);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "root spawn: %s",
              weft_status_name(st));
    if (st == WEFT_OK) {
        outside_accepted++;
        /* A continuation on the root (pool object from outside). */
        weft_future_t *cf = NULL;
        weft_status_t cs = weft_future_then(rf, cont, NULL, &cf);
        cr_assert(cs == WEFT_OK || cs == WEFT_ENOMEM, "then: %s",
                  weft_status_name(cs));
        /* A token with a deadline, waited for with wait_for (token
         * callback registration) and armed on the timer (heap). */
        weft_token_t *tok = NULL;
        weft_status_t ts = weft_token_create_with_deadline(
            NULL, weft_clock_now_ns() + 3600ull * 1000000000ull, &tok);
        cr_assert(ts == WEFT_OK || ts == WEFT_ENOMEM, "token: %s",
                  weft_status_name(ts));
        if (ts == WEFT_OK) {
            weft_status_t ws = weft_executor_watch_deadline(ex, tok);
            cr_assert(ws == WEFT_OK || ws == WEFT_ENOMEM, "watch: %s",
                      weft_status_name(ws));
            weft_status_t wf = weft_future_wait_for(rf, tok, 0);
            cr_assert(wf == WEFT_OK || wf == WEFT_ENOMEM, "wait_for: %s",
                      weft_status_name(wf));
            weft_token_release(tok);
        }
        cr_assert_eq(weft_future_wait(rf), WEFT_OK);
        weft_future_release(rf);
        if (cf != NULL) {
            weft_status_t s2 = weft_future_wait(cf);
            /* A continuation that could not be queued ends cancelled with
             * an ENOMEM reason; otherwise it ran. */
            cr_assert(s2 == WEFT_OK || s2 == WEFT_ECANCELED, "cont: %s",
                      weft_status_name(s2));
            weft_future_release(cf);
        }
        cr_assert_eq(t.ended, t.accepted, "every accepted task ended");
    }

    /* The executor is still usable. */
    weft__alloc_set_fail_after(-1);
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, leaf, (void *)(intptr_t)8, &v),
                 WEFT_OK);
    cr_assert_eq(v.i64, 8);

    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    /* Hooks: one per spawn call, accepted or refused (the last run has no
     * hook). Bodies: every accepted leaf and root ran (nothing is
     * cancelled in this scenario), plus the continuation and the final
     * task when they ran. */
    cr_assert_eq(atomic_load(&hooks), atomic_load(&spawn_calls),
                 "release hooks ran exactly once per spawn");
    cr_assert_geq(atomic_load(&bodies), t.accepted + outside_accepted + 1);
    cr_assert_eq(weft__alloc_live(), live, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live));
}

static void
sweep(unsigned int workers)
{
    long k = 0;
    for (;; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        scenario(workers);
        weft__alloc_set_fail_after(-1);
        if (weft__alloc_failures() == before) {
            break; /* the scenario made fewer than k + 1 allocations */
        }
    }
    cr_log_info("%u worker(s): %ld allocation sites failed in turn", workers,
                k);
    cr_assert_gt(k, 5, "the sweep reached the executor's allocations");
}

Test(alloc_failure, every_allocation_fails_in_turn_on_one_worker)
{
    sweep(1);
}

Test(alloc_failure, every_allocation_fails_in_turn_on_two_workers)
{
    sweep(2);
}
