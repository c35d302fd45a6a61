/*
 * test_timer.c - weft_executor_watch_deadline(): deadlines that take
 * effect on time with nobody polling the token.
 *
 * No assertion depends on timing: a deadline is either already due (the
 * timer must observe it, eventually) or an hour away (it must not fire
 * before the executor is destroyed). Waits are bounded by hang guards.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <weft.h>

#include "primitives/alloc.h"

TestSuite(timer, .timeout = 30.0);

#define HOUR_NS (3600ull * 1000000000ull)

struct fired {
    atomic_int count;
    atomic_int code;
    pthread_t thread;
    char name[16];
};

static void
on_cancel(void *arg, weft_error_t *reason)
{
    struct fired *f = arg;
    atomic_store(&f->code, reason != NULL ? weft_error_status(reason) : -1);
    f->thread = pthread_self();
    pthread_getname_np(pthread_self(), f->name, sizeof(f->name));
    atomic_fetch_add(&f->count, 1);
}

static weft_status_t
held_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 1;
    return WEFT_OK;
}

static weft_executor_t *
ex_new(void)
{
    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = 1;
    c.thread_name_prefix = "tt";
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&c, &ex), WEFT_OK);
    return ex;
}

/* Spin until *v != 0, yielding; the bound is a hang guard only. */
static bool
await_nonzero(atomic_int *v)
{
    uint64_t guard = weft_clock_now_ns() + 20ull * 1000000000ull;
    while (atomic_load(v) == 0) {
        if (weft_clock_now_ns() > guard) {
            return false;
        }
        sched_yield();
    }
    return true;
}

Test(timer, due_deadline_fires_callbacks_without_polling)
{
    int64_t live = weft__alloc_live();
    weft_executor_t *ex = ex_new();
    struct fired fd = {0};
    weft_token_t *tok = NULL;
    /* Due in 1 ms: registered before it passes, so only an observer can
     * make the callback run; this test never polls the token. */
    cr_assert_eq(weft_token_create_with_deadline(
                     NULL, weft_clock_now_ns() + 1000000ull, &tok),
                 WEFT_OK);
    weft_cancel_cb_t *cb = NULL;
    cr_assert_eq(weft_token_register(tok, on_cancel, &fd, &cb), WEFT_OK);
    cr_assert_eq(weft_executor_watch_deadline(ex, tok), WEFT_OK);
    cr_assert(await_nonzero(&fd.count), "the timer never observed the token");
    cr_assert_eq(atomic_load(&fd.count), 1);
    cr_assert_eq(atomic_load(&fd.code), WEFT_EDEADLINE);
    cr_assert(!pthread_equal(fd.thread, pthread_self()),
              "callbacks run on the timer thread");
    cr_assert_str_eq(fd.name, "tt-tmr");
    (void)weft_token_deregister(cb);
    weft_token_release(tok);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(weft__alloc_live(), live, "tokens and errors all freed");
}

Test(timer, earliest_of_many_deadlines_fires_first_and_all_fire)
{
    weft_executor_t *ex = ex_new();
    enum { N = 8 };
    struct fired fd[N];
    weft_token_t *tok[N];
    weft_cancel_cb_t *cb[N];
    memset(fd, 0, sizeof(fd));
    uint64_t now = weft_clock_now_ns();
    for (int i = 0; i < N; i++) {
        /* Armed in decreasing order of deadline to exercise the heap. */
        cr_assert_eq(weft_token_create_with_deadline(
                         NULL, now + (uint64_t)(N - i) * 100000ull, &tok[i]),
                     WEFT_OK);
        cr_assert_eq(weft_token_register(tok[i], on_cancel, &fd[i], &cb[i]),
                     WEFT_OK);
        cr_assert_eq(weft_executor_watch_deadline(ex, tok[i]), WEFT_OK);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(await_nonzero(&fd[i].count), "token %d never fired", i);
        cr_assert_eq(atomic_load(&fd[i].count), 1);
        (void)weft_token_deregister(cb[i]);
        weft_token_release(tok[i]);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(timer, far_deadline_does_not_fire_and_destroy_releases_it)
{
    int64_t live = weft__alloc_live();
    weft_executor_t *ex = ex_new();
    struct fired fd = {0};
    weft_token_t *tok = NULL;
    cr_assert_eq(weft_token_create_with_deadline(
                     NULL, weft_clock_now_ns() + HOUR_NS, &tok),
                 WEFT_OK);
    weft_cancel_cb_t *cb = NULL;
    cr_assert_eq(weft_token_register(tok, on_cancel, &fd, &cb), WEFT_OK);
    cr_assert_eq(weft_executor_watch_deadline(ex, tok), WEFT_OK);
    /* Arming twice is harmless. */
    cr_assert_eq(weft_executor_watch_deadline(ex, tok), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(atomic_load(&fd.count), 0, "an hour away: never fired");
    cr_assert(!weft_token_is_cancelled(tok));
    (void)weft_token_deregister(cb);
    weft_token_release(tok);
    cr_assert_eq(weft__alloc_live(), live,
                 "the executor dropped its references at destroy");
}

struct arm_arg {
    weft_executor_t *ex;
    weft_token_t *next;
    atomic_int rc;
    atomic_int done;
};

static void
arm_next(void *arg, weft_error_t *reason)
{
    (void)reason;
    struct arm_arg *a = arg;
    atomic_store(&a->rc, weft_executor_watch_deadline(a->ex, a->next));
    atomic_store(&a->done, 1);
}

Test(timer, callback_may_arm_another_token)
{
    weft_executor_t *ex = ex_new();
    uint64_t now = weft_clock_now_ns();
    struct fired second = {0};
    weft_token_t *t2 = NULL;
    cr_assert_eq(weft_token_create_with_deadline(NULL, now + 1000000ull, &t2),
                 WEFT_OK);
    weft_cancel_cb_t *cb2 = NULL;
    cr_assert_eq(weft_token_register(t2, on_cancel, &second, &cb2), WEFT_OK);
    /* t1's callback arms t2 from the timer thread: no callback runs under
     * the timer's lock, so this must not deadlock. */
    struct arm_arg aa = {.ex = ex, .next = t2};
    atomic_init(&aa.rc, -1);
    atomic_init(&aa.done, 0);
    weft_token_t *t1 = NULL;
    cr_assert_eq(weft_token_create_with_deadline(NULL, now + 500000ull, &t1),
                 WEFT_OK);
    weft_cancel_cb_t *cb1 = NULL;
    cr_assert_eq(weft_token_register(t1, arm_next, &aa, &cb1), WEFT_OK);
    cr_assert_eq(weft_executor_watch_deadline(ex, t1), WEFT_OK);
    cr_assert(await_nonzero(&aa.done), "t1 never fired");
    cr_assert_eq(atomic_load(&aa.rc), WEFT_OK);
    cr_assert(await_nonzero(&second.count), "t2, armed by t1, never fired");
    cr_assert_eq(atomic_load(&second.code), WEFT_EDEADLINE);
    (void)weft_token_deregister(cb1);
    (void)weft_token_deregister(cb2);
    weft_token_release(t1);
    weft_token_release(t2);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(timer, arming_after_destroy_began_is_refused)
{
    /* A destroy that finds a future still held returns WEFT_EBUSY with the
     * executor shut down: arming then reports WEFT_ESHUTDOWN. */
    weft_executor_t *ex = ex_new();
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, held_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    weft_token_t *tok = NULL;
    cr_assert_eq(weft_token_create_with_deadline(
                     NULL, weft_clock_now_ns() + HOUR_NS, &tok),
                 WEFT_OK);
    cr_assert_eq(weft_executor_watch_deadline(ex, tok), WEFT_ESHUTDOWN);
    weft_token_release(tok);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(timer, no_deadline_or_cancelled_token_is_left_alone)
{
    weft_executor_t *ex = ex_new();
    weft_token_t *plain = NULL;
    cr_assert_eq(weft_token_create(NULL, &plain), WEFT_OK);
    cr_assert_eq(weft_executor_watch_deadline(ex, plain), WEFT_OK);
    weft_token_t *done = NULL;
    cr_assert_eq(weft_token_create(NULL, &done), WEFT_OK);
    cr_assert_eq(weft_token_cancel(done, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_watch_deadline(ex, done), WEFT_OK);
    cr_assert(!weft_token_is_cancelled(plain));
    weft_token_release(plain);
    weft_token_release(done);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(timer, bad_input_is_rejected)
{
    weft_executor_t *ex = ex_new();
    weft_token_t *tok = NULL;
    cr_assert_eq(weft_token_create(NULL, &tok), WEFT_OK);
    cr_assert_eq(weft_executor_watch_deadline(NULL, tok), WEFT_EINVAL);
    cr_assert_eq(weft_executor_watch_deadline(ex, NULL), WEFT_EINVAL);
    weft_token_release(tok);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}
