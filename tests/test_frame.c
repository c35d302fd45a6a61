/*
 * test_frame.c - fork-join frames (<weft/frame.h>).
 *
 * Suite `frame`: results on 1, 2 and 4 workers (fib with one frame per
 * call, n-ary fan-outs), join orders (LIFO, FIFO, mixed with futures),
 * the stolen path (the first fork of a fresh worker is public, and the
 * forking task waits until a thief has started it), outcomes and error
 * ownership (failed, cancelled by the body, a frame's self answering for
 * its root task), nesting frames, futures and combinators, and misuse.
 * No sleeps for ordering; spins wait for events that must happen (a thief
 * starting a public frame) and are bounded by a hang guard. Every test
 * checks that no allocation is left live after the executor is gone.
 */
#include <criterion/criterion.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <weft.h>

#include "primitives/alloc.h"

#define HANG_NS (20ull * 1000000000ull)

static int64_t live_at_start;

static void
begin(void)
{
    live_at_start = weft__alloc_live();
}

static void
finish(void)
{
    int64_t now = weft__alloc_live();
    cr_assert_eq(now, live_at_start, "leaked %lld blocks",
                 (long long)(now - live_at_start));
}

static weft_executor_t *
ex_new(unsigned int n)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = n;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    return ex;
}

TestSuite(frame, .init = begin, .timeout = 120.0);

/* ---- fib, one frame per call ----------------------------------------- */

static weft_status_t
fib(weft_task_t *self, void *arg, weft_value_t *out)
{
    long n = (long)(intptr_t)arg;
    if (n < 2) {
        out->u64 = (uint64_t)n;
        return WEFT_OK;
    }
    weft_frame_t fr;
    weft_value_t a, b;
    weft_status_t st = weft_frame_fork(self, &fr, fib, (void *)(n - 1));
    if (st != WEFT_OK) {
        return st;
    }
    weft_status_t sb = fib(self, (void *)(n - 2), &b);
    st = weft_frame_join(&fr, &a, NULL);
    if (st != WEFT_OK || sb != WEFT_OK) {
        return st != WEFT_OK ? st : sb;
    }
    out->u64 = a.u64 + b.u64;
    return WEFT_OK;
}

static void
fib_on(unsigned int workers)
{
    weft_executor_t *ex = ex_new(workers);
    for (int round = 0; round < 3; round++) {
        weft_value_t v = {0};
        cr_assert_eq(weft_executor_run(ex, fib, (void *)(intptr_t)25, &v),
                     WEFT_OK);
        cr_assert_eq(v.u64, 75025, "fib(25) on %u workers: %llu", workers,
                     (unsigned long long)v.u64);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    finish();
}

Test(frame, fib25_on_1_worker) { fib_on(1); }
Test(frame, fib25_on_2_workers) { fib_on(2); }
Test(frame, fib25_on_4_workers) { fib_on(4); }

/*
 * The exported functions, called around the macros of weft/frame.h (the
 * parentheses), as a program built with WEFT_NO_INLINE_FRAMES or a
 * binding from another language does: their own fast paths, not only
 * the fallbacks of the inline ones.
 */
static weft_status_t
fib_exported(weft_task_t *self, void *arg, weft_value_t *out)
{
    long n = (long)(intptr_t)arg;
    if (n < 2) {
        out->u64 = (uint64_t)n;
        return WEFT_OK;
    }
    weft_frame_t fr;
    weft_value_t a, b;
    weft_status_t st =
        (weft_frame_fork)(self, &fr, fib_exported, (void *)(n - 1));
    if (st != WEFT_OK) {
        return st;
    }
    weft_status_t sb = fib_exported(self, (void *)(n - 2), &b);
    st = (weft_frame_join)(&fr, &a, NULL);
    if (st != WEFT_OK || sb != WEFT_OK) {
        return st != WEFT_OK ? st : sb;
    }
    /* Joined: the exported join refuses a second one. */
    cr_assert_eq((weft_frame_join)(&fr, NULL, NULL), WEFT_EINVAL);
    out->u64 = a.u64 + b.u64;
    return WEFT_OK;
}

Test(frame, exported_functions_without_the_inline_paths)
{
    for (unsigned int n = 1; n <= 2; n++) {
        weft_executor_t *ex = ex_new(n);
        weft_value_t v = {0};
        cr_assert_eq(
            weft_executor_run(ex, fib_exported, (void *)(intptr_t)22, &v),
            WEFT_OK);
        cr_assert_eq(v.u64, 17711, "fib(22) on %u workers: %llu", n,
                     (unsigned long long)v.u64);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
    /* Off the workers: refused, as by the inline path. */
    weft_frame_t fr;
    memset(&fr, 0, sizeof(fr));
    cr_assert_eq((weft_frame_fork)((weft_task_t *)&fr, &fr, fib_exported,
                                   NULL),
                 WEFT_EINVAL);
    cr_assert_eq((weft_frame_join)(&fr, NULL, NULL), WEFT_EINVAL);
    finish();
}

/* ---- n-ary fan-outs and join orders ---------------------------------- */

enum order { LIFO, FIFO, ODD_EVEN };

struct fan {
    int depth;
    enum order order;
};

static weft_status_t fan_node(weft_task_t *self, void *arg,
                              weft_value_t *out);

struct fan_arg {
    struct fan cfg;
    int depth;
};

#define FAN 5

/* Each node returns the number of leaves under it (FAN^depth). */
static weft_status_t
fan_node(weft_task_t *self, void *arg, weft_value_t *out)
{
    const struct fan_arg *a = arg;
    if (a->depth == 0) {
        out->u64 = 1;
        return WEFT_OK;
    }
    weft_frame_t fr[FAN];
    struct fan_arg kids[FAN];
    for (int i = 0; i < FAN; i++) {
        kids[i].cfg = a->cfg;
        kids[i].depth = a->depth - 1;
        cr_assert_eq(weft_frame_fork(self, &fr[i], fan_node, &kids[i]),
                     WEFT_OK);
    }
    uint64_t sum = 0;
    int idx[FAN];
    for (int i = 0; i < FAN; i++) {
        switch (a->cfg.order) {
        case LIFO:
            idx[i] = FAN - 1 - i;
            break;
        case FIFO:
            idx[i] = i;
            break;
        default:
            idx[i] = i < (FAN + 1) / 2 ? 2 * i : 2 * (i - (FAN + 1) / 2) + 1;
            break;
        }
    }
    for (int i = 0; i < FAN; i++) {
        weft_value_t v = {0};
        weft_error_t *e = (weft_error_t *)1;
        cr_assert_eq(weft_frame_join(&fr[idx[i]], &v, &e), WEFT_OK);
        cr_assert_null(e, "a successful join sets *err to NULL");
        sum += v.u64;
    }
    out->u64 = sum;
    return WEFT_OK;
}

static void
fan_on(unsigned int workers, enum order order)
{
    weft_executor_t *ex = ex_new(workers);
    struct fan_arg root = {{6, order}, 6};
    weft_value_t v = {0};
    cr_assert_eq(weft_executor_run(ex, fan_node, &root, &v), WEFT_OK);
    cr_assert_eq(v.u64, 15625, "5^6 leaves, got %llu",
                 (unsigned long long)v.u64);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    finish();
}

Test(frame, fanout_lifo_joins_on_2_workers) { fan_on(2, LIFO); }
Test(frame, fanout_fifo_joins_on_2_workers) { fan_on(2, FIFO); }
Test(frame, fanout_mixed_joins_on_4_workers) { fan_on(4, ODD_EVEN); }
Test(frame, fanout_fifo_joins_on_1_worker) { fan_on(1, FIFO); }

/* ---- frames mixed with futures --------------------------------------- */

static weft_status_t
value_of_arg(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    out->u64 = (uint64_t)(uintptr_t)arg;
    return WEFT_OK;
}

/* Fork A, spawn future F (above A in the deque), fork B; join A first
 * (runs B and F on the way down), then B (already ended), then F. */
static weft_status_t
mixed_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_frame_t a, b;
    weft_future_t *f = NULL;
    cr_assert_eq(weft_frame_fork(self, &a, value_of_arg, (void *)1), WEFT_OK);
    cr_assert_eq(weft_spawn(weft_task_executor(self), value_of_arg,
                            (void *)10, &f),
                 WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &b, value_of_arg, (void *)100),
                 WEFT_OK);
    weft_value_t va = {0}, vb = {0}, vf = {0};
    cr_assert_eq(weft_frame_join(&a, &va, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_join(&b, &vb, NULL), WEFT_OK);
    cr_assert_eq(weft_join(f, &vf), WEFT_OK);
    out->u64 = va.u64 + vb.u64 + vf.u64;
    return WEFT_OK;
}

Test(frame, out_of_order_join_with_a_future_above)
{
    for (unsigned int n = 1; n <= 2; n++) {
        weft_executor_t *ex = ex_new(n);
        for (int i = 0; i < 200; i++) {
            weft_value_t v = {0};
            cr_assert_eq(weft_executor_run(ex, mixed_root, NULL, &v), WEFT_OK);
            cr_assert_eq(v.u64, 111);
        }
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
    finish();
}

/* ---- a deque index reused after a pop ran the frame --------------------- */

static atomic_uint reuse_runs[6];
static atomic_int reuse_single_worker;

static weft_status_t
count_arg(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    uintptr_t i = (uintptr_t)arg;
    atomic_fetch_add(&reuse_runs[i], 1);
    out->u64 = 1000 + i;
    return WEFT_OK;
}

/*
 * Make a frame that a pop of its own worker ran, then put another frame
 * on its old deque index as the newest private item, and join the first:
 * the join must hand its own outcome (its slot no longer names that
 * index) and not run the newcomer. Deque at each step (1 worker):
 *   fork P0, P1      public P0 (the first fork publishes), private P1
 *   spawn F          a future push publishes everything: P0 P1 F public
 *   fork A           private, index a
 *   wait F           pops A (runs it) and F: head = a - 1, P0 P1 public
 *   fork B, C        private, B at a - 1, C at a: C is on A's index
 * With 2 workers thieves may change the picture; the values and the
 * run counts must hold anyway.
 */
static weft_status_t
reuse_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_future_t *f = NULL;
    weft_frame_t p0, p1, a, b, c;
    cr_assert_eq(weft_frame_fork(self, &p0, count_arg, (void *)4), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &p1, count_arg, (void *)5), WEFT_OK);
    cr_assert_eq(weft_spawn(weft_task_executor(self), count_arg, (void *)0,
                            &f),
                 WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &a, count_arg, (void *)1), WEFT_OK);
    int64_t a_index = ((struct weft__frame *)&a)->slot;
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &b, count_arg, (void *)2), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &c, count_arg, (void *)3), WEFT_OK);
    if (atomic_load(&reuse_single_worker)) {
        /* The scenario happened: nobody could steal, the wait's pop ran
         * A, and C is the newest private item, on A's old index. */
        cr_assert_eq(atomic_load(&reuse_runs[1]), 1);
        cr_assert_eq(((struct weft__frame *)&c)->slot, a_index);
        cr_assert_geq(a_index, weft__tls_frame_worker->bottom);
        cr_assert_eq(weft__tls_frame_worker->head, a_index + 1);
    }
    weft_value_t va = {0}, vb = {0}, vc = {0}, v0 = {0}, v1 = {0};
    cr_assert_eq(weft_frame_join(&a, &va, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_join(&c, &vc, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_join(&b, &vb, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_join(&p1, &v1, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_join(&p0, &v0, NULL), WEFT_OK);
    /* Joined already: refused, whichever path joined it. */
    cr_assert_eq(weft_frame_join(&a, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_frame_join(&c, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    out->u64 = va.u64 == 1001 && vb.u64 == 1002 && vc.u64 == 1003 &&
               v1.u64 == 1005 && v0.u64 == 1004;
    return WEFT_OK;
}

Test(frame, join_after_a_pop_ran_the_frame_and_its_index_was_reused)
{
    for (unsigned int n = 1; n <= 2; n++) {
        weft_executor_t *ex = ex_new(n);
        atomic_store(&reuse_single_worker, n == 1);
        for (int i = 0; i < 200; i++) {
            for (int k = 0; k < 6; k++) {
                atomic_store(&reuse_runs[k], 0);
            }
            weft_value_t v = {0};
            cr_assert_eq(weft_executor_run(ex, reuse_root, NULL, &v),
                         WEFT_OK);
            cr_assert_eq(v.u64, 1, "a join handed another frame's value");
            for (int k = 0; k < 6; k++) {
                cr_assert_eq(atomic_load(&reuse_runs[k]), 1,
                             "body %d ran %u times", k,
                             atomic_load(&reuse_runs[k]));
            }
        }
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
    finish();
}

/* A frame whose body waits on a future and runs a gather: helping from
 * inside a frame, and combinators keyed on the frame's token. */
static weft_status_t
frame_with_gather(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t *kids[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(weft_spawn(ex, value_of_arg, (void *)(uintptr_t)(i + 1),
                                &kids[i]),
                     WEFT_OK);
    }
    weft_combine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.token = weft_task_token(self);
    weft_future_t *g = NULL;
    cr_assert_eq(weft_gather(ex, kids, 4, &o, &g), WEFT_OK);
    cr_assert_eq(weft_future_wait(g), WEFT_OK);
    uint64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        weft_value_t v = {0};
        cr_assert_eq(weft_future_value(kids[i], &v), WEFT_OK);
        sum += v.u64;
        weft_future_release(kids[i]);
    }
    weft_future_release(g);
    out->u64 = sum;
    return WEFT_OK;
}

static weft_status_t
gather_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_frame_t fr[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(weft_frame_fork(self, &fr[i], frame_with_gather, NULL),
                     WEFT_OK);
    }
    uint64_t sum = 0;
    for (int i = 2; i >= 0; i--) {
        weft_value_t v = {0};
        cr_assert_eq(weft_frame_join(&fr[i], &v, NULL), WEFT_OK);
        sum += v.u64;
    }
    out->u64 = sum;
    return WEFT_OK;
}

Test(frame, frames_wait_on_futures_and_gathers)
{
    weft_executor_t *ex = ex_new(2);
    for (int i = 0; i < 50; i++) {
        weft_value_t v = {0};
        cr_assert_eq(weft_executor_run(ex, gather_root, NULL, &v), WEFT_OK);
        cr_assert_eq(v.u64, 30);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    finish();
}

/* ---- the stolen path -------------------------------------------------- */

static atomic_int stolen_started;
static atomic_int stolen_worker;

static weft_status_t
note_start(weft_task_t *self, void *arg, weft_value_t *out)
{
    atomic_store(&stolen_worker,
                 weft_executor_worker_index(weft_task_executor(self)));
    atomic_store(&stolen_started, 1);
    out->u64 = (uint64_t)(uintptr_t)arg;
    if ((uintptr_t)arg == 13) {
        return weft_task_fail(self, WEFT_EUSER, "stolen frame %d failed", 13);
    }
    return WEFT_OK;
}

/*
 * The first fork on a worker whose public part is empty is published at
 * once (deque.h), so a thief can take it while the forking task spins.
 * (Spinning on the frame's effect breaks the rule in weft/frame.h on
 * purpose: this test knows the frame is public.)
 */
static weft_status_t
steal_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    weft_frame_t fr;
    atomic_store(&stolen_started, 0);
    cr_assert_eq(weft_frame_fork(self, &fr, note_start, arg), WEFT_OK);
    uint64_t t0 = weft_clock_now_ns();
    while (!atomic_load(&stolen_started)) {
        cr_assert_lt(weft_clock_now_ns() - t0, HANG_NS,
                     "no thief took the public frame");
        sched_yield();
    }
    int me = weft_executor_worker_index(weft_task_executor(self));
    cr_assert_neq(atomic_load(&stolen_worker), me,
                  "the frame ran on the forking worker");
    weft_value_t v = {0};
    weft_error_t *e = NULL;
    weft_status_t st = weft_frame_join(&fr, &v, &e);
    if ((uintptr_t)arg == 13) {
        cr_assert_eq(st, WEFT_EUSER);
        cr_assert_not_null(e);
        cr_assert_eq(weft_error_status(e), WEFT_EUSER);
        cr_assert(strstr(weft_error_message(e), "stolen frame 13") != NULL);
        cr_assert_eq(weft_error_task_id(e), weft_task_id(self),
                     "a frame's error names its enclosing task");
        weft_error_release(e);
        out->u64 = 13;
        return WEFT_OK;
    }
    cr_assert_eq(st, WEFT_OK);
    cr_assert_null(e);
    out->u64 = v.u64;
    return WEFT_OK;
}

Test(frame, a_stolen_frame_delivers_its_value_and_error)
{
    weft_executor_t *ex = ex_new(2);
    for (uintptr_t i = 1; i <= 20; i++) {
        weft_value_t v = {0};
        cr_assert_eq(weft_executor_run(ex, steal_root, (void *)i, &v),
                     WEFT_OK);
        cr_assert_eq(v.u64, i);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    finish();
}

/* ---- outcomes --------------------------------------------------------- */

static weft_status_t
fail_frame(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)out;
    int how = (int)(intptr_t)arg;
    if (how == 0) {
        return weft_task_fail(self, WEFT_EUSER, "frame says no");
    }
    if (how == 1) {
        return WEFT_ESYS; /* a failure with no recorded error */
    }
    return WEFT_ECANCELED;
}

static weft_status_t
outcome_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    weft_frame_t a, b, c, d;
    cr_assert_eq(weft_frame_fork(self, &a, fail_frame, (void *)0), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &b, fail_frame, (void *)1), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &c, fail_frame, (void *)2), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &d, fail_frame, (void *)0), WEFT_OK);
    /* d: failure with err NULL, released by the join (checked by the
     * leak count at the end). */
    cr_assert_eq(weft_frame_join(&d, NULL, NULL), WEFT_EUSER);
    weft_error_t *e = NULL;
    cr_assert_eq(weft_frame_join(&c, NULL, &e), WEFT_ECANCELED);
    cr_assert_not_null(e, "a cancelled frame reports a reason");
    weft_error_release(e);
    e = NULL;
    cr_assert_eq(weft_frame_join(&b, NULL, &e), WEFT_ESYS);
    cr_assert_not_null(e);
    cr_assert_eq(weft_error_status(e), WEFT_ESYS);
    weft_error_release(e);
    e = NULL;
    weft_value_t v = {.u64 = 77};
    cr_assert_eq(weft_frame_join(&a, &v, &e), WEFT_EUSER);
    cr_assert_eq(v.u64, 77, "a failed join leaves *value alone");
    cr_assert_not_null(e);
    cr_assert(strcmp(weft_error_message(e), "frame says no") == 0);
    weft_error_release(e);
    /* Joined twice: refused. */
    e = (weft_error_t *)1;
    cr_assert_eq(weft_frame_join(&a, NULL, &e), WEFT_EINVAL);
    cr_assert_null(e);
    return WEFT_OK;
}

Test(frame, failed_and_cancelled_frames_and_error_ownership)
{
    for (unsigned int n = 1; n <= 2; n++) {
        weft_executor_t *ex = ex_new(n);
        cr_assert_eq(weft_executor_run(ex, outcome_root, NULL, NULL), WEFT_OK);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
    finish();
}

/* ---- a frame's self --------------------------------------------------- */

static atomic_uintptr_t root_token;
static atomic_int token_mismatch;
static atomic_int cancel_seen;
static atomic_int spinner_started;

static weft_status_t
token_leaf(weft_task_t *self, void *arg, weft_value_t *out)
{
    long n = (long)(intptr_t)arg;
    if (n < 2) {
        uintptr_t t = (uintptr_t)weft_task_token(self);
        uintptr_t want = atomic_load(&root_token);
        if (want != 0 && t != want) {
            atomic_fetch_add(&token_mismatch, 1);
        }
        out->u64 = 1;
        return WEFT_OK;
    }
    weft_frame_t fr;
    weft_value_t a = {0}, b = {0};
    cr_assert_eq(weft_frame_fork(self, &fr, token_leaf, (void *)(n - 1)),
                 WEFT_OK);
    cr_assert_eq(token_leaf(self, (void *)(n - 2), &b), WEFT_OK);
    cr_assert_eq(weft_frame_join(&fr, &a, NULL), WEFT_OK);
    out->u64 = a.u64 + b.u64;
    return WEFT_OK;
}

/* Frames on several workers ask for the task token at once: one token is
 * installed (a CAS), every frame gets the root's. */
static weft_status_t
token_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_frame_t fr;
    atomic_store(&root_token, 0);
    cr_assert_eq(weft_frame_fork(self, &fr, token_leaf, (void *)(intptr_t)18),
                 WEFT_OK);
    weft_value_t a = {0};
    cr_assert_eq(weft_frame_join(&fr, &a, NULL), WEFT_OK);
    /* The first frames raced to install it; later ones compared. */
    weft_token_t *mine = weft_task_token(self);
    cr_assert_not_null(mine);
    atomic_store(&root_token, (uintptr_t)mine);
    cr_assert_eq(weft_frame_fork(self, &fr, token_leaf, (void *)(intptr_t)18),
                 WEFT_OK);
    cr_assert_eq(weft_frame_join(&fr, &a, NULL), WEFT_OK);
    out->u64 = a.u64;
    return WEFT_OK;
}

Test(frame, frames_share_their_root_task_token)
{
    weft_executor_t *ex = ex_new(4);
    atomic_store(&token_mismatch, 0);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(weft_executor_run(ex, token_root, NULL, NULL), WEFT_OK);
    }
    cr_assert_eq(atomic_load(&token_mismatch), 0,
                 "a frame saw a token other than its root task's");
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    finish();
}

static weft_status_t
spin_until_cancelled(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    cr_assert_null(weft_task_antecedent(self));
    atomic_store(&spinner_started, 1);
    uint64_t t0 = weft_clock_now_ns();
    while (!weft_task_is_cancelled(self)) {
        cr_assert_lt(weft_clock_now_ns() - t0, HANG_NS, "never cancelled");
        sched_yield();
    }
    atomic_store(&cancel_seen, 1);
    return WEFT_ECANCELED;
}

static weft_status_t
cancel_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    weft_frame_t fr;
    uint64_t id = weft_task_id(self);
    cr_assert_eq(weft_frame_fork(self, &fr, spin_until_cancelled, NULL),
                 WEFT_OK);
    weft_error_t *e = NULL;
    weft_status_t st = weft_frame_join(&fr, NULL, &e);
    cr_assert_eq(st, WEFT_ECANCELED);
    cr_assert_not_null(e);
    cr_assert_eq(weft_error_status(e), WEFT_EUSER,
                 "the reason is the one given to weft_future_cancel");
    weft_error_release(e);
    cr_assert_neq(id, 0);
    return WEFT_ECANCELED;
}

Test(frame, cancelling_the_root_future_reaches_its_frames)
{
    weft_executor_t *ex = ex_new(2);
    atomic_store(&spinner_started, 0);
    atomic_store(&cancel_seen, 0);
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, cancel_root, NULL, &f), WEFT_OK);
    uint64_t t0 = weft_clock_now_ns();
    while (!atomic_load(&spinner_started)) {
        cr_assert_lt(weft_clock_now_ns() - t0, HANG_NS);
        sched_yield();
    }
    weft_error_t *why = NULL;
    cr_assert_eq(weft_error_create(&why, WEFT_EUSER, "stop now"), WEFT_OK);
    cr_assert_eq(weft_future_cancel(f, why), WEFT_OK);
    weft_error_release(why);
    cr_assert_eq(weft_future_wait(f), WEFT_ECANCELED);
    cr_assert_eq(atomic_load(&cancel_seen), 1);
    weft_future_release(f);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    finish();
}

/* ---- misuse ----------------------------------------------------------- */

static weft_status_t
misuse_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    weft_frame_t fr;
    cr_assert_eq(weft_frame_fork(NULL, &fr, value_of_arg, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_frame_fork(self, NULL, value_of_arg, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(weft_frame_fork(self, &fr, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_frame_join(NULL, NULL, NULL), WEFT_EINVAL);
    /* A frame reused after its join is a fresh frame. */
    for (uintptr_t i = 0; i < 3; i++) {
        weft_value_t v = {0};
        cr_assert_eq(weft_frame_fork(self, &fr, value_of_arg, (void *)i),
                     WEFT_OK);
        cr_assert_eq(weft_frame_join(&fr, &v, NULL), WEFT_OK);
        cr_assert_eq(v.u64, i);
        cr_assert_eq(weft_frame_join(&fr, &v, NULL), WEFT_EINVAL);
    }
    return WEFT_OK;
}

Test(frame, misuse_gets_einval)
{
    weft_executor_t *ex = ex_new(1);
    cr_assert_eq(weft_executor_run(ex, misuse_root, NULL, NULL), WEFT_OK);
    /* Not on a worker: refused, and fn never runs. */
    weft_frame_t fr;
    memset(&fr, 0, sizeof(fr));
    cr_assert_eq(weft_frame_fork((weft_task_t *)&fr, &fr, value_of_arg, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(weft_frame_join(&fr, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    finish();
}
