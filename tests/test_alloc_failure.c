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
 * continuations, and the deadline timer's heap. A second scenario does the
 * same for combinators and task groups (gather, as-completed, a group
 * with more children than its first ledger) and for error groups (create,
 * add, nest, flatten, split), a third for task traces (begin through
 * the API and through WEFT_TRACE at create).
 * A fourth runs an executor in debug mode
 * (weft/debug.h): its registry, the record of each task, group and
 * combined future, and the report buffer that destroy hands to the sink;
 * a record that cannot be made leaves its task untracked, never lost.
 *
 * Site coverage: every allocation call is tagged with its site
 * (WEFT__ALLOC* in primitives/alloc.h, which registers each call site at
 * link time). every_registered_site_fails runs both sweeps and asserts that
 * each registered site had its allocation failed at least once, naming
 * those that did not; sources_use_tagged_allocation checks from the
 * source tree that no allocation in executor/ or primitives/ bypasses the
 * macros and that every macro use is a site this test program links (so a
 * new site in a new file is not silently left out of the sweep).
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft.h>
#include <weft/combine.h>
#include <weft/group.h>

#include "primitives/alloc.h"

TestSuite(alloc_failure, .timeout = 120.0);

/* More than one pool slab (256 objects) and more than the initial deque
 * buffer (1024 slots), so slab refills and deque growth are both hit. */
#define FANOUT 1500
/* Frames forked after the fan-out: more than the 2048 slots the fan-out
 * grew the deque to, so the private pushes grow it again. */
#define FRAMES 2200

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

static void
on_cancel(void *arg, weft_error_t *reason)
{
    (void)arg;
    (void)reason;
    cr_assert_fail("no token is cancelled in this scenario");
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
    /* Fork-join frames, more than the deque holds: the private push must
     * grow the buffer, and when it cannot, the frame is kept back and its
     * join runs it inline. Each frame runs exactly once either way. */
    weft_frame_t *frs = calloc(FRAMES, sizeof(*frs));
    if (frs == NULL) {
        return WEFT_ENOMEM;
    }
    int before = atomic_load(&bodies);
    for (intptr_t i = 0; i < FRAMES; i++) {
        cr_assert_eq(weft_frame_fork(self, &frs[i], leaf, (void *)i),
                     WEFT_OK, "a fork never fails for lack of memory");
    }
    for (intptr_t i = FRAMES - 1; i >= 0; i--) {
        weft_value_t v = {0};
        weft_error_t *e = NULL;
        weft_status_t st = weft_frame_join(&frs[i], &v, &e);
        if (i % 7 == 3) {
            cr_assert_eq(st, WEFT_EUSER, "frame %ld: %s", (long)i,
                         weft_status_name(st));
            cr_assert_not_null(e, "a failed frame has an error (static "
                                  "ENOMEM at worst)");
            weft_error_release(e);
        } else {
            cr_assert_eq(st, WEFT_OK);
            cr_assert_eq(v.i64, i);
        }
    }
    cr_assert_eq(atomic_load(&bodies) - before, FRAMES,
                 "every frame ran exactly once");
    free(frs);
    out->i64 = t->accepted;
    return WEFT_OK;
}

/* One run of the scenario, with the injector armed by the caller. */
static void
scenario(unsigned int workers, const void *ctx)
{
    (void)ctx;
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

    /*
     * A token with a deadline, armed on the timer (heap). Made before any
     * task runs: the k-th allocation of a run must be the same site in
     * every run, and a worker allocating concurrently would shift the
     * main thread's allocations by a varying amount (the sweep then missed
     * the timer's heap in some runs).
     */
    weft_token_t *tok = NULL;
    weft_status_t ts = weft_token_create_with_deadline(
        NULL, weft_clock_now_ns() + 3600ull * 1000000000ull, &tok);
    cr_assert(ts == WEFT_OK || ts == WEFT_ENOMEM, "token: %s",
              weft_status_name(ts));
    if (ts == WEFT_OK) {
        /* A user callback registration (the executor's own waits use
         * intrusive registrations that do not allocate). */
        weft_cancel_cb_t *cb = NULL;
        weft_status_t rs = weft_token_register(tok, on_cancel, NULL, &cb);
        cr_assert(rs == WEFT_OK || rs == WEFT_ENOMEM, "register: %s",
                  weft_status_name(rs));
        if (rs == WEFT_OK) {
            cr_assert_eq(weft_token_deregister(cb), WEFT_OK,
                         "the callback never ran: nothing cancelled");
        } else {
            cr_assert_null(cb);
        }
        weft_status_t ws = weft_executor_watch_deadline(ex, tok);
        cr_assert(ws == WEFT_OK || ws == WEFT_ENOMEM, "watch: %s",
                  weft_status_name(ws));
    } else {
        cr_assert_null(tok);
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
        if (tok != NULL) {
            /* Waited for with wait_for (token callback registration). */
            weft_status_t wf = weft_future_wait_for(rf, tok, 0);
            cr_assert(wf == WEFT_OK || wf == WEFT_ENOMEM, "wait_for: %s",
                      weft_status_name(wf));
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
    if (tok != NULL) {
        weft_token_release(tok);
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

/*
 * Fail the k-th allocation of run(workers, ctx) for k = 0, 1, ... until a
 * run no longer reaches k (the injector's failure count does not move).
 * Returns the number of allocations failed in turn.
 */
static long
sweep_runs(void (*run)(unsigned int workers, const void *ctx),
           unsigned int workers, const void *ctx)
{
    long k = 0;
    for (;; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        run(workers, ctx);
        weft__alloc_set_fail_after(-1);
        if (weft__alloc_failures() == before) {
            break; /* the run made fewer than k + 1 allocations */
        }
    }
    return k;
}

static void
sweep(unsigned int workers)
{
    long k = sweep_runs(scenario, workers, NULL);
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

/* ---- combinators and task groups ------------------------------------- */

static bool
status_in(weft_status_t st, const weft_status_t *ok, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (st == ok[i]) {
            return true;
        }
    }
    return false;
}

/* Index body of the bulk gathers: every fourth index fails (an error
 * value, and an entry of the gather's side table). */
static weft_status_t
each_leaf(weft_task_t *self, void *arg, size_t i, weft_value_t *value)
{
    (void)arg;
    if (i % 4 == 1) {
        return weft_task_fail(self, WEFT_EUSER, "index %zu failed", i);
    }
    value->u64 = i;
    return WEFT_OK;
}

/* gather, as-completed and a task group (more children than its initial
 * ledger), every allocation of which may fail. */
static void
combine_scenario(unsigned int workers, const void *ctx)
{
    (void)ctx;
    static const weft_status_t ended[] = {WEFT_OK, WEFT_EUSER, WEFT_ECANCELED,
                                          WEFT_ENOMEM};
    atomic_store(&hooks, 0);
    atomic_store(&spawn_calls, 0);
    int64_t live = weft__alloc_live();
    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = workers;
    weft_executor_t *ex = NULL;
    weft_status_t st = weft_executor_create(&c, &ex);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
    if (st != WEFT_OK) {
        cr_assert_eq(weft__alloc_live(), live, "failed create leaked");
        return;
    }
    weft_future_t *kids[4];
    size_t nk = 0;
    for (intptr_t i = 0; i < 4; i++) {
        weft_spawn_opts_t o = {.release = hook, .name = "kid",
                               WEFT_SPAWN_SITE};
        atomic_fetch_add(&spawn_calls, 1);
        st = weft_spawn_ex(ex, &o, leaf, (void *)i, &kids[nk]);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "spawn: %s",
                  weft_status_name(st));
        nk += st == WEFT_OK;
    }
    weft_future_t *all = NULL;
    st = weft_gather(ex, kids, nk, NULL, &all);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "gather: %s",
              weft_status_name(st));
    if (st == WEFT_OK) {
        st = weft_future_wait(all);
        cr_assert(status_in(st, ended, 4), "gather ended: %s",
                  weft_status_name(st));
        weft_future_release(all);
    } else {
        cr_assert_null(all);
    }
    weft_as_completed_t *it = NULL;
    st = weft_as_completed_create(kids, nk, &it);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "as_completed: %s",
              weft_status_name(st));
    if (st == WEFT_OK) {
        size_t seen = 0;
        size_t index = 0;
        while ((st = weft_as_completed_next(it, NULL, 0, &index)) ==
               WEFT_OK) {
            seen++;
        }
        cr_assert(st == WEFT_EEXHAUSTED || st == WEFT_ENOMEM, "next: %s",
                  weft_status_name(st));
        cr_assert(st != WEFT_EEXHAUSTED || seen == nk);
        weft_as_completed_destroy(it);
    }
    for (size_t i = 0; i < nk; i++) {
        weft_future_release(kids[i]);
    }

    /* Bulk gathers: the ledger block, the pieces, the side table of
     * failures (each.c). */
    for (int settled = 0; settled < 2; settled++) {
        weft_future_t *each = NULL;
        st = settled ? weft_gather_each_settled(ex, 40, each_leaf, NULL,
                                                NULL, &each)
                     : weft_gather_each(ex, 40, each_leaf, NULL, NULL, &each);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "gather_each: %s",
                  weft_status_name(st));
        if (st != WEFT_OK) {
            cr_assert_null(each);
            continue;
        }
        st = weft_future_wait(each);
        cr_assert(status_in(st, ended, 4), "gather_each ended: %s",
                  weft_status_name(st));
        weft_errgroup_t *errs = NULL;
        st = weft_combine_errors(each, &errs);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "each errors: %s",
                  weft_status_name(st));
        if (errs != NULL) {
            weft_errgroup_release(errs);
        }
        weft_future_release(each);
    }

    weft_group_t *grp = NULL;
    weft_group_opts_t go;
    memset(&go, 0, sizeof(go));
    go.name = "sweep";
    st = weft_group_create(ex, &go, &grp);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "group_create: %s",
              weft_status_name(st));
    if (st == WEFT_OK) {
        for (intptr_t i = 0; i < 20; i++) {
            weft_spawn_opts_t o = {.release = hook, .name = "member",
                                   WEFT_SPAWN_SITE};
            atomic_fetch_add(&spawn_calls, 1);
            st = weft_group_spawn(grp, &o, leaf, (void *)i, NULL);
            cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "group_spawn: %s",
                      weft_status_name(st));
        }
        st = weft_group_join(grp);
        cr_assert(status_in(st, ended, 4), "group_join: %s",
                  weft_status_name(st));
        weft_errgroup_t *errs = NULL;
        st = weft_group_errors(grp, &errs);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "group_errors: %s",
                  weft_status_name(st));
        weft_errgroup_release(errs);
        cr_assert_eq(weft_group_destroy(grp), WEFT_OK);
    }

    weft__alloc_set_fail_after(-1);
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, leaf, (void *)(intptr_t)8, &v),
                 WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(atomic_load(&hooks), atomic_load(&spawn_calls),
                 "release hooks ran exactly once per spawn");
    cr_assert_eq(weft__alloc_live(), live, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live));
}

static long
combine_sweep(unsigned int workers)
{
    return sweep_runs(combine_scenario, workers, NULL);
}

Test(alloc_failure, every_combinator_allocation_fails_in_turn)
{
    long k1 = combine_sweep(1);
    long k2 = combine_sweep(2);
    cr_log_info("combinators: %ld / %ld allocations failed in turn on 1 / 2 "
                "worker(s)",
                k1, k2);
    cr_assert_gt(k1, 5);
}

/* ---- debug mode ------------------------------------------------------- */

static atomic_int sink_calls;

static void
debug_sink(const char *report, void *user)
{
    (void)user;
    size_t n = strlen(report);
    cr_assert(n >= 2 && report[0] == '{' && report[n - 1] == '}',
              "report is one JSON object: %s", report);
    atomic_fetch_add(&sink_calls, 1);
}

/* What the debug root made, for the accounting. */
struct debug_tally {
    int accepted; /* spawns (and then) accepted */
    int leaked;   /* of those, released without being observed */
};

static weft_status_t
debug_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct debug_tally *t = arg;
    weft_executor_t *ex = weft_task_executor(self);
    for (intptr_t i = 0; i < 6; i++) {
        weft_spawn_opts_t o = {.release = hook, .name = "dbg",
                               WEFT_SPAWN_SITE};
        weft_future_t *f = NULL;
        atomic_fetch_add(&spawn_calls, 1);
        weft_status_t st = weft_spawn_ex(ex, &o, leaf, (void *)i, &f);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "spawn: %s",
                  weft_status_name(st));
        if (st != WEFT_OK) {
            continue;
        }
        t->accepted++;
        if (i % 2 == 0) {
            (void)weft_future_wait(f); /* observed */
        } else {
            t->leaked++; /* never awaited (i == 3 fails: never observed) */
        }
        weft_future_release(f);
    }
    /* A continuation, awaited. */
    weft_future_t *c = NULL;
    weft_future_t *a = NULL;
    atomic_fetch_add(&spawn_calls, 1);
    weft_spawn_opts_t ao = {.release = hook, WEFT_SPAWN_SITE};
    if (weft_spawn_ex(ex, &ao, leaf, (void *)(intptr_t)2, &a) == WEFT_OK) {
        t->accepted++;
        weft_status_t cs = weft_future_then(a, cont, NULL, &c);
        cr_assert(cs == WEFT_OK || cs == WEFT_ENOMEM);
        (void)weft_future_wait(a);
        weft_future_release(a);
        if (c != NULL) {
            (void)weft_future_wait(c);
            weft_future_release(c);
        }
    }
    /* A group destroyed without join. */
    weft_group_t *g = NULL;
    weft_group_opts_t go;
    memset(&go, 0, sizeof(go));
    go.name = "dbg-group";
    weft_status_t gs = weft_group_create(ex, &go, &g);
    cr_assert(gs == WEFT_OK || gs == WEFT_ENOMEM);
    if (gs == WEFT_OK) {
        for (intptr_t i = 0; i < 2; i++) {
            weft_spawn_opts_t o = {.release = hook, .name = "dbg-member",
                                   WEFT_SPAWN_SITE};
            atomic_fetch_add(&spawn_calls, 1);
            gs = weft_group_spawn(g, &o, leaf, (void *)i, NULL);
            cr_assert(gs == WEFT_OK || gs == WEFT_ENOMEM);
        }
        cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    }
    out->i64 = t->accepted;
    return WEFT_OK;
}

/* A debug-mode executor: every registry allocation may fail. */
static void
debug_scenario(unsigned int workers, const void *ctx)
{
    (void)ctx;
    atomic_store(&hooks, 0);
    atomic_store(&spawn_calls, 0);
    atomic_store(&sink_calls, 0);
    uint64_t fails_at_start = weft__alloc_failures();
    int64_t live = weft__alloc_live();
    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = workers;
    c.debug_tasks = true;
    c.on_debug_report = debug_sink;
    weft_executor_t *ex = NULL;
    weft_status_t st = weft_executor_create(&c, &ex);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "create: %s",
              weft_status_name(st));
    if (st != WEFT_OK) {
        cr_assert_null(ex);
        cr_assert_eq(weft__alloc_live(), live, "failed create leaked");
        return;
    }
    struct debug_tally t = {0, 0};
    weft_spawn_opts_t ro = {.release = hook, .name = "dbg-root",
                            WEFT_SPAWN_SITE};
    weft_future_t *rf = NULL;
    atomic_fetch_add(&spawn_calls, 1);
    st = weft_spawn_ex(ex, &ro, debug_root, &t, &rf);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
    if (st == WEFT_OK) {
        cr_assert_eq(weft_future_wait(rf), WEFT_OK);
        weft_future_release(rf);
    }
    /* Once the armed failure has happened, everything works again. */
    bool failed_already = weft__alloc_failures() != fails_at_start;
    weft_value_t v;
    weft_status_t rs = weft_executor_run(ex, leaf, (void *)(intptr_t)8, &v);
    cr_assert(rs == WEFT_OK || (!failed_already && rs == WEFT_ENOMEM),
              "run: %s", weft_status_name(rs));
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    /* Reading the registry allocates nothing of weft's. */
    FILE *null = fopen("/dev/null", "w");
    cr_assert_not_null(null);
    weft_debug_summary_t sum;
    cr_assert_eq(weft_executor_debug_report(ex, null, &sum), WEFT_OK);
    cr_assert_eq(weft_executor_dump_tasks(ex, null), WEFT_OK);
    fclose(null);
    /* Every leaked future is an entry, unless the registry could not
     * record something (then it says how many). */
    size_t entries = sum.not_awaited + sum.errors_not_observed;
    cr_assert_leq(entries, (size_t)t.leaked);
    cr_assert_geq(entries + sum.untracked, (size_t)t.leaked,
                  "%zu entries, %zu untracked, %d leaked", entries,
                  sum.untracked, t.leaked);
    cr_assert_leq(sum.groups_not_joined, 1);
    /* destroy builds the report for the sink: that buffer may fail too
     * (the sink then gets the counts alone). */
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_leq(atomic_load(&sink_calls), 1);
    cr_assert(atomic_load(&sink_calls) == 1 || entries == 0,
              "a report with entries is delivered");
    cr_assert_eq(atomic_load(&hooks), atomic_load(&spawn_calls),
                 "release hooks ran exactly once per spawn");
    cr_assert_eq(weft__alloc_live(), live, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live));
}

static long
debug_sweep(unsigned int workers)
{
    return sweep_runs(debug_scenario, workers, NULL);
}

Test(alloc_failure, every_debug_mode_allocation_fails_in_turn)
{
    long k1 = debug_sweep(1);
    long k2 = debug_sweep(2);
    cr_log_info("debug mode: %ld / %ld allocations failed in turn on 1 / 2 "
                "worker(s)",
                k1, k2);
    cr_assert_gt(k1, 10);
}

/* ---- error groups ----------------------------------------------------- */

static bool
pred_even(const weft_error_t *e, void *ctx)
{
    (void)ctx;
    return weft_error_status(e) % 2 == 0;
}

/* Build, nest, flatten and split groups; every step may fail with ENOMEM
 * and must then leave things as they were. */
static void
errgroup_scenario(void)
{
    int64_t live = weft__alloc_live();
    weft_errgroup_t *outer = NULL;
    weft_status_t st = weft_errgroup_create(&outer, "outer %d", 1);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
    if (st != WEFT_OK) {
        cr_assert_null(outer);
        cr_assert_eq(weft__alloc_live(), live);
        return;
    }
    size_t leaves = 0;
    for (int i = 0; i < 3; i++) {
        weft_errgroup_t *inner = NULL;
        st = weft_errgroup_create(&inner, "inner %d", i);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
        if (st != WEFT_OK) {
            continue;
        }
        size_t inner_leaves = 0;
        /* More than the initial 4 entries: the entry array grows. */
        for (int j = 0; j < 6; j++) {
            weft_error_t *e = NULL;
            weft_status_t es =
                weft_error_create(&e, WEFT_EUSER + j, "e%d.%d", i, j);
            cr_assert(es == WEFT_OK || es == WEFT_ENOMEM);
            st = weft_errgroup_add_error(inner, (uint64_t)(6 - j), e);
            cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
            inner_leaves += st == WEFT_OK;
            weft_error_release(e);
        }
        cr_assert_eq(weft_errgroup_leaf_count(inner), inner_leaves);
        st = weft_errgroup_add_group(outer, (uint64_t)i, inner);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
        if (st == WEFT_OK) {
            leaves += inner_leaves;
        }
        weft_errgroup_release(inner);
    }
    cr_assert_eq(weft_errgroup_leaf_count(outer), leaves);

    weft_errgroup_t *flat = NULL;
    st = weft_errgroup_flatten(outer, &flat);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
    if (st == WEFT_OK) {
        cr_assert_eq(weft_errgroup_leaf_count(flat), leaves);
        cr_assert_eq(weft_errgroup_count(flat), leaves);
        weft_errgroup_release(flat);
    } else {
        cr_assert_null(flat);
    }
    weft_errgroup_t *match = NULL;
    weft_errgroup_t *rest = NULL;
    st = weft_errgroup_split(outer, pred_even, NULL, &match, &rest);
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
    if (st == WEFT_OK) {
        cr_assert_eq(weft_errgroup_leaf_count(match) +
                         weft_errgroup_leaf_count(rest),
                     leaves);
    } else {
        cr_assert_null(match);
        cr_assert_null(rest);
    }
    weft_errgroup_release(match);
    weft_errgroup_release(rest);
    /* Format needs no allocation; it must work whatever happened. */
    char buf[64];
    size_t need = weft_errgroup_format(outer, buf, sizeof(buf));
    cr_assert_gt(need, 0);
    weft_errgroup_release(outer);
    cr_assert_eq(weft__alloc_live(), live, "errgroup scenario leaked %lld",
                 (long long)(weft__alloc_live() - live));
}

static long
errgroup_sweep(void)
{
    long k = 0;
    for (;; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        errgroup_scenario();
        weft__alloc_set_fail_after(-1);
        if (weft__alloc_failures() == before) {
            break;
        }
    }
    return k;
}

Test(alloc_failure, every_errgroup_allocation_fails_in_turn)
{
    long k = errgroup_sweep();
    cr_log_info("error groups: %ld allocations failed in turn", k);
    cr_assert_gt(k, 10);
}

/* ---- trace buffers ------------------------------------------------------ */

/* Write ex's ended trace to memory (libc's allocations, not weft's). */
static weft_status_t
trace_write_discard(weft_executor_t *ex)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    cr_assert_not_null(fp);
    weft_status_t st = weft_executor_trace_write(ex, fp);
    fclose(fp);
    free(buf);
    return st;
}

/*
 * A trace's buffers are one allocation, made by weft_executor_trace_begin()
 * or, with WEFT_TRACE set (env_path), by weft_executor_create(). A failed
 * begin returns WEFT_ENOMEM, starts nothing and keeps the previous trace
 * readable; a failed create leaks nothing.
 */
static void
trace_scenario(unsigned int workers, const void *ctx)
{
    const char *env_path = ctx;
    int64_t live = weft__alloc_live();
    if (env_path != NULL) {
        cr_assert_eq(setenv("WEFT_TRACE", env_path, 1), 0);
    }
    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = workers;
    weft_executor_t *ex = NULL;
    weft_status_t st = weft_executor_create(&c, &ex);
    unsetenv("WEFT_TRACE");
    cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "create: %s",
              weft_status_name(st));
    if (st != WEFT_OK) {
        cr_assert_null(ex);
        cr_assert_eq(weft__alloc_live(), live, "failed create leaked");
        return;
    }
    st = weft_executor_trace_begin(ex, 32);
    if (env_path != NULL) {
        cr_assert_eq(st, WEFT_EBUSY, "WEFT_TRACE's trace is recording");
    } else {
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "begin: %s",
                  weft_status_name(st));
    }
    bool recording = st != WEFT_ENOMEM;
    if (!recording) {
        cr_assert_eq(weft_executor_trace_end(ex), WEFT_ESTATE,
                     "a failed begin starts nothing");
        cr_assert_eq(trace_write_discard(ex), WEFT_ESTATE);
    }
    weft_value_t v;
    st = weft_executor_run(ex, leaf, (void *)(intptr_t)3, &v);
    cr_assert(st == WEFT_EUSER || st == WEFT_ENOMEM, "run: %s",
              weft_status_name(st));
    if (recording) {
        cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
        cr_assert_eq(trace_write_discard(ex), WEFT_OK);
        /* A second trace: if its buffers cannot be had, the first one
         * stays readable. */
        st = weft_executor_trace_begin(ex, 16);
        cr_assert(st == WEFT_OK || st == WEFT_ENOMEM, "begin again: %s",
                  weft_status_name(st));
        if (st == WEFT_OK) {
            cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
        }
        cr_assert_eq(trace_write_discard(ex), WEFT_OK);
    }
    weft__alloc_set_fail_after(-1);
    cr_assert_eq(weft_executor_run(ex, leaf, (void *)(intptr_t)8, &v), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(weft__alloc_live(), live, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live));
}

static long
trace_sweep(unsigned int workers, const char *env_path)
{
    return sweep_runs(trace_scenario, workers, env_path);
}

/* Both trace sweeps; the WEFT_TRACE file goes to a scratch directory. */
static long
trace_sweeps(unsigned int workers)
{
    char dir[] = "/tmp/weft-alloc-trace-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/trace.json", dir);
    long k = trace_sweep(workers, NULL) + trace_sweep(workers, path);
    unlink(path);
    cr_assert_eq(rmdir(dir), 0);
    return k;
}

Test(alloc_failure, every_trace_allocation_fails_in_turn)
{
    long k1 = trace_sweeps(1);
    long k2 = trace_sweeps(2);
    cr_log_info("traces: %ld / %ld allocations failed in turn on 1 / 2 "
                "worker(s)",
                k1, k2);
    cr_assert_gt(k1, 5);
}

/* ---- site registry ---------------------------------------------------- */

#define MAX_SITES 512

/* Every registered site (primitives/ and executor/ alike) must have had
 * its allocation failed by one of the sweeps. Sites that appear more than
 * once (an inline function in a header) count as one, by file and line. */
Test(alloc_failure, every_registered_site_fails)
{
    static struct weft__alloc_site_info sites[MAX_SITES];
    weft__alloc_sites_reset();
    uint64_t before = weft__alloc_failures();
    sweep(1);
    sweep(2);
    (void)combine_sweep(1);
    (void)combine_sweep(2);
    (void)debug_sweep(1);
    (void)debug_sweep(2);
    (void)errgroup_sweep();
    (void)trace_sweeps(1);
    (void)trace_sweeps(2);
    uint64_t failures = weft__alloc_failures() - before;

    size_t n = weft__alloc_sites(sites, MAX_SITES);
    cr_assert_leq(n, MAX_SITES, "raise MAX_SITES");
    cr_assert_geq(n, 11, "the registry sees the library's sites (got %zu)",
                  n);
    uint64_t sum_failed = 0;
    int missed = 0;
    for (size_t i = 0; i < n; i++) {
        sum_failed += sites[i].failed;
        bool failed = false;
        for (size_t j = 0; j < n; j++) {
            if (sites[j].line == sites[i].line &&
                strcmp(sites[j].file, sites[i].file) == 0 &&
                sites[j].failed > 0) {
                failed = true;
            }
        }
        cr_log_info("site %s:%d (%s, %s): %llu calls, %llu failed",
                    sites[i].file, sites[i].line, sites[i].func,
                    sites[i].kind, (unsigned long long)sites[i].calls,
                    (unsigned long long)sites[i].failed);
        if (!failed) {
            cr_log_error("allocation site never failed by the sweep: %s:%d "
                         "in %s (%s, %llu calls); extend the scenarios in "
                         "tests/test_alloc_failure.c to reach it",
                         sites[i].file, sites[i].line, sites[i].func,
                         sites[i].kind, (unsigned long long)sites[i].calls);
            missed++;
        }
    }
    cr_assert_eq(sum_failed, failures,
                 "every injected failure is charged to one site");
    cr_assert_eq(missed, 0, "%d of %zu allocation sites were never failed",
                 missed, n);
}

/* Is `name(` at s[i] a call of name (not part of a longer identifier)? */
static bool
is_call(const char *line, const char *at, const char *name)
{
    size_t len = strlen(name);
    if (at > line) {
        char c = at[-1];
        if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9')) {
            return false;
        }
    }
    const char *p = at + len;
    while (*p == ' ') {
        p++;
    }
    return *p == '(';
}

/* Scan one source file: count tagged macro uses and check each against the
 * registry; report raw allocator calls and direct *_at calls. */
static void
scan_file(const char *dir, const char *name,
          const struct weft__alloc_site_info *sites, size_t nsites,
          int *uses, int *bad)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s/%s", WEFT_SOURCE_DIR, dir, name);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "open %s", path);
    char rel[256];
    snprintf(rel, sizeof(rel), "%s/%s", dir, name);
    static const char *const raw[] = {
        "malloc", "calloc", "realloc", "aligned_alloc", "posix_memalign",
        "strdup", "strndup", "free", "weft__alloc_at",
        "weft__alloc_aligned_at", "weft__realloc_at"};
    static const char *const tagged[] = {"WEFT__ALLOC", "WEFT__ALLOC_ALIGNED",
                                         "WEFT__REALLOC"};
    char line[4096];
    int lineno = 0;
    bool in_comment = false;
    while (fgets(line, sizeof(line), fp) != NULL) {
        lineno++;
        /* Blank out comments and string literals, so prose that names
         * malloc() is not a finding. */
        char code[4096];
        size_t o = 0;
        for (size_t i = 0; line[i] != '\0'; i++) {
            if (in_comment) {
                if (line[i] == '*' && line[i + 1] == '/') {
                    in_comment = false;
                    i++;
                }
                code[o++] = ' ';
                continue;
            }
            if (line[i] == '/' && line[i + 1] == '*') {
                in_comment = true;
                i++;
                code[o++] = ' ';
                continue;
            }
            if (line[i] == '/' && line[i + 1] == '/') {
                break;
            }
            if (line[i] == '"') {
                code[o++] = ' ';
                for (i++; line[i] != '\0' && line[i] != '"'; i++) {
                    if (line[i] == '\\' && line[i + 1] != '\0') {
                        i++;
                    }
                }
                if (line[i] == '\0') {
                    break;
                }
                continue;
            }
            code[o++] = line[i];
        }
        code[o] = '\0';
        for (size_t r = 0; r < sizeof(raw) / sizeof(raw[0]); r++) {
            for (const char *at = strstr(code, raw[r]); at != NULL;
                 at = strstr(at + 1, raw[r])) {
                if (is_call(code, at, raw[r])) {
                    cr_log_error("%s:%d: %s() bypasses the allocation-site "
                                 "macros (primitives/alloc.h)",
                                 rel, lineno, raw[r]);
                    (*bad)++;
                }
            }
        }
        for (size_t t = 0; t < sizeof(tagged) / sizeof(tagged[0]); t++) {
            for (const char *at = strstr(code, tagged[t]); at != NULL;
                 at = strstr(at + 1, tagged[t])) {
                if (!is_call(code, at, tagged[t])) {
                    continue;
                }
                (*uses)++;
                bool found = false;
                for (size_t i = 0; i < nsites && !found; i++) {
                    size_t fl = strlen(sites[i].file);
                    size_t rl = strlen(rel);
                    found = sites[i].line == lineno && fl >= rl &&
                            strcmp(sites[i].file + fl - rl, rel) == 0;
                }
                if (!found) {
                    cr_log_error("%s:%d: allocation site not linked into "
                                 "this test, so the sweep cannot fail it; "
                                 "reach it from a scenario here",
                                 rel, lineno);
                    (*bad)++;
                }
            }
        }
    }
    fclose(fp);
}

Test(alloc_failure, sources_use_tagged_allocation)
{
    static struct weft__alloc_site_info sites[MAX_SITES];
    size_t n = weft__alloc_sites(sites, MAX_SITES);
    cr_assert_leq(n, MAX_SITES);
    static const char *const dirs[] = {"primitives", "executor"};
    int uses = 0;
    int bad = 0;
    for (size_t d = 0; d < 2; d++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", WEFT_SOURCE_DIR, dirs[d]);
        DIR *dp = opendir(path);
        cr_assert_not_null(dp, "open %s", path);
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            size_t len = strlen(de->d_name);
            bool is_c = len > 2 && strcmp(de->d_name + len - 2, ".c") == 0;
            bool is_h = len > 2 && strcmp(de->d_name + len - 2, ".h") == 0;
            /* alloc.[ch] define the layer: they call malloc and free. */
            if ((!is_c && !is_h) || strcmp(de->d_name, "alloc.c") == 0 ||
                strcmp(de->d_name, "alloc.h") == 0) {
                continue;
            }
            scan_file(dirs[d], de->d_name, sites, n, &uses, &bad);
        }
        closedir(dp);
    }
    cr_log_info("%d tagged allocation sites in the sources", uses);
    cr_assert_geq(uses, 11);
    cr_assert_eq(bad, 0, "%d allocation call(s) outside the registry", bad);
}
