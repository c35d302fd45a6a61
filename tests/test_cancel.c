/*
 * test_cancel.c - cancellation tokens: reasons, the token tree, deadlines
 * on a virtual clock, callbacks, shields, bad input and out-of-memory.
 *
 * No test depends on timing: deadlines use a virtual clock, and the one
 * cross-thread wait test synchronizes on weft__token_waiters(), not on
 * sleeps. Timeouts only guard against hangs.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#include <weft/cancel.h>
#include <weft/error.h>

#include "primitives/alloc.h"
#include "primitives/atomics.h"
#include "primitives/cancel.h"
#include "primitives/clock.h"
#include "primitives/error.h"

TestSuite(cancel, .timeout = 10.0);

static int64_t live_at_start;

static void
leak_check_begin(void)
{
    live_at_start = weft__alloc_live();
}

static void
leak_check_end(void)
{
    cr_assert_eq(weft__alloc_live(), live_at_start, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live_at_start));
}

static weft_token_t *
root(void)
{
    weft_token_t *t = NULL;
    cr_assert_eq(weft_token_create(NULL, &t), WEFT_OK);
    return t;
}

static weft_token_t *
child_of(weft_token_t *parent)
{
    weft_token_t *t = NULL;
    cr_assert_eq(weft_token_create(parent, &t), WEFT_OK);
    return t;
}

static weft_error_t *
user_error(const char *msg)
{
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_create(&e, WEFT_EUSER, "%s", msg), WEFT_OK);
    return e;
}

static weft_error_t *
reason_of(const weft_token_t *t)
{
    weft_error_t *r = NULL;
    cr_assert_eq(weft_token_reason(t, &r), WEFT_OK);
    return r;
}

/* ---- Callback recorders ---------------------------------------------- */

struct rec {
    int calls;
    weft_error_t *reason;
    pthread_t thread;
};

static void
rec_fn(void *arg, weft_error_t *reason)
{
    struct rec *r = arg;
    r->calls++;
    r->reason = reason;
    r->thread = pthread_self();
}

/* Callback order log: each callback appends its tag. */
static char order_log[64];

static void
order_fn(void *arg, weft_error_t *reason)
{
    (void)reason;
    strncat(order_log, (const char *)arg,
            sizeof(order_log) - strlen(order_log) - 1);
}

/* ---- Cancel and reasons ------------------------------------------------ */

Test(cancel, root_token_starts_not_cancelled)
{
    leak_check_begin();
    weft_token_t *t = root();
    cr_assert_not(weft_token_is_cancelled(t));
    cr_assert_eq(weft_token_check(t), WEFT_OK);
    weft_error_t *r = (weft_error_t *)0x1;
    cr_assert_eq(weft_token_reason(t, &r), WEFT_ESTATE);
    cr_assert_null(r);
    uint64_t d = 0;
    cr_assert_eq(weft_token_deadline(t, &d), WEFT_OK);
    cr_assert_eq(d, WEFT_DEADLINE_NONE);
    cr_assert_not(weft_token_is_shielded(t));
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, cancel_records_reason_seen_by_poll)
{
    leak_check_begin();
    weft_token_t *t = root();
    weft_error_t *why = user_error("sibling failed");
    cr_assert_eq(weft_token_cancel(t, why), WEFT_OK);
    cr_assert(weft_token_is_cancelled(t));
    cr_assert_eq(weft_token_check(t), WEFT_ECANCELED);
    cr_assert_eq(reason_of(t), why);
    weft_error_release(why);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, token_keeps_its_own_reference_to_the_reason)
{
    leak_check_begin();
    weft_token_t *t = root();
    weft_error_t *why = user_error("kept by the token");
    weft_token_cancel(t, why);
    weft_error_release(why);
    cr_assert_str_eq(weft_error_message(reason_of(t)), "kept by the token");
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, second_cancel_is_late_and_first_reason_wins)
{
    leak_check_begin();
    weft_token_t *t = root();
    weft_error_t *first = user_error("first");
    weft_error_t *second = user_error("second");
    cr_assert_eq(weft_token_cancel(t, first), WEFT_OK);
    cr_assert_eq(weft_token_cancel(t, second), WEFT_EALREADY);
    cr_assert_eq(weft_token_cancel(t, NULL), WEFT_EALREADY);
    cr_assert_eq(reason_of(t), first);
    weft_error_release(first);
    weft_error_release(second); /* not retained by the late cancel */
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, cancel_without_reason_uses_generic_ecanceled)
{
    leak_check_begin();
    weft_token_t *t = root();
    cr_assert_eq(weft_token_cancel(t, NULL), WEFT_OK);
    cr_assert_eq(weft_error_status(reason_of(t)), WEFT_ECANCELED);
    cr_assert(weft__error_is_immortal(reason_of(t)));
    weft_token_release(t);
    leak_check_end();
}

/* ---- The tree ----------------------------------------------------------- */

Test(cancel, child_cancelled_with_parent)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *c = child_of(p);
    cr_assert_not(weft_token_is_cancelled(c));
    weft_error_t *why = user_error("parent reason");
    cr_assert_eq(weft_token_cancel(p, why), WEFT_OK);
    cr_assert(weft_token_is_cancelled(c));
    cr_assert_eq(reason_of(c), why, "the child carries the parent's reason");
    weft_error_release(why);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, cancelling_child_leaves_parent_alone)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *c = child_of(p);
    weft_token_t *sibling = child_of(p);
    cr_assert_eq(weft_token_cancel(c, NULL), WEFT_OK);
    cr_assert(weft_token_is_cancelled(c));
    cr_assert_not(weft_token_is_cancelled(p));
    cr_assert_not(weft_token_is_cancelled(sibling));
    weft_token_release(sibling);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, cancellation_reaches_every_descendant)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *a = child_of(p);
    weft_token_t *b = child_of(p);
    weft_token_t *a1 = child_of(a);
    weft_token_t *a2 = child_of(a);
    weft_token_t *a11 = child_of(a1);
    weft_token_t *all[] = {a, b, a1, a2, a11};
    weft_token_cancel(p, NULL);
    for (size_t i = 0; i < 5; i++) {
        cr_assert(weft_token_is_cancelled(all[i]), "token %zu", i);
        cr_assert_eq(reason_of(all[i]), reason_of(p));
    }
    for (size_t i = 5; i-- > 0;) {
        weft_token_release(all[i]);
    }
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, child_of_cancelled_parent_is_born_cancelled)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_error_t *why = user_error("too late");
    weft_token_cancel(p, why);
    weft_token_t *c = child_of(p);
    cr_assert(weft_token_is_cancelled(c));
    cr_assert_eq(reason_of(c), why);
    cr_assert_eq(weft__token_registrations(p), 0, "no link was made");
    weft_error_release(why);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, destroyed_child_is_unlinked_from_parent)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *c1 = child_of(p);
    weft_token_t *c2 = child_of(p);
    cr_assert_eq(weft__token_registrations(p), 2);
    weft_token_release(c1);
    cr_assert_eq(weft__token_registrations(p), 1);
    weft_token_release(c2);
    cr_assert_eq(weft__token_registrations(p), 0);
    /* Cancelling afterwards touches no freed child (ASan would say). */
    cr_assert_eq(weft_token_cancel(p, NULL), WEFT_OK);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, child_keeps_parent_alive_until_released)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *c = child_of(p);
    int64_t live = weft__alloc_live();
    weft_token_release(p); /* the child still holds the parent */
    cr_assert_eq(weft__alloc_live(), live);
    cr_assert_not(weft_token_is_cancelled(c));
    weft_token_release(c); /* frees the child, then the parent */
    leak_check_end();
}

Test(cancel, child_cancelled_first_keeps_its_own_reason)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *c = child_of(p);
    weft_error_t *own = user_error("own");
    weft_error_t *parents = user_error("parent's");
    weft_token_cancel(c, own);
    cr_assert_eq(weft_token_cancel(p, parents), WEFT_OK);
    cr_assert_eq(reason_of(c), own);
    cr_assert_eq(reason_of(p), parents);
    weft_error_release(own);
    weft_error_release(parents);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, deep_chain_cancels_and_frees_without_recursion)
{
    leak_check_begin();
    /* Deep enough to overflow the stack if either path recursed. */
    enum { DEPTH = 100000 };
    weft_token_t *top = root();
    weft_token_t *t = top;
    weft_token_retain(top);
    for (int i = 0; i < DEPTH; i++) {
        weft_token_t *c = child_of(t);
        weft_token_release(t); /* each child holds its parent */
        t = c;
    }
    struct rec r = {0};
    weft_cancel_cb_t *cb = NULL;
    weft_token_register(t, rec_fn, &r, &cb);
    cr_assert_eq(weft_token_cancel(top, NULL), WEFT_OK);
    cr_assert(weft_token_is_cancelled(t));
    cr_assert_eq(r.calls, 1, "the leaf's callback ran");
    weft_token_deregister(cb);
    weft_token_release(top);
    weft_token_release(t); /* frees the whole chain, leaf to root */
    leak_check_end();
}

Test(cancel, many_children_all_cancelled_and_unlinked)
{
    leak_check_begin();
    enum { N = 1000 };
    static weft_token_t *kids[N];
    weft_token_t *p = root();
    for (int i = 0; i < N; i++) {
        kids[i] = child_of(p);
    }
    /* Drop every third child before the cancel. */
    for (int i = 0; i < N; i += 3) {
        weft_token_release(kids[i]);
        kids[i] = NULL;
    }
    cr_assert_eq(weft__token_registrations(p), N - (N + 2) / 3);
    weft_token_cancel(p, NULL);
    cr_assert_eq(weft__token_registrations(p), 0);
    for (int i = 0; i < N; i++) {
        if (kids[i] != NULL) {
            cr_assert(weft_token_is_cancelled(kids[i]));
            weft_token_release(kids[i]);
        }
    }
    weft_token_release(p);
    leak_check_end();
}

/* ---- Deadlines (virtual clock) ---------------------------------------- */

Test(cancel, deadline_cancels_at_first_poll_after_it_passes)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 1000);
    weft_token_t *t = NULL;
    cr_assert_eq(weft__token_create_root(&clk, 5000, &t), WEFT_OK);
    cr_assert_not(weft_token_is_cancelled(t));
    weft__clock_set(&clk, 4999);
    cr_assert_not(weft_token_is_cancelled(t));
    weft__clock_set(&clk, 5000);
    cr_assert(weft_token_is_cancelled(t));
    weft_error_t *r = reason_of(t);
    cr_assert_eq(weft_error_status(r), WEFT_EDEADLINE);
    cr_assert_eq(r, weft__error_deadline(), "no allocation on the poll");
    /* Time moving back does not un-cancel. */
    weft__clock_set(&clk, 0);
    cr_assert(weft_token_is_cancelled(t));
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, deadline_not_in_the_future_cancels_at_creation)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 1000);
    uint64_t deadlines[] = {0, 999, 1000};
    for (size_t i = 0; i < 3; i++) {
        weft_token_t *t = NULL;
        cr_assert_eq(weft__token_create_root(&clk, deadlines[i], &t),
                     WEFT_OK);
        cr_assert(weft_token_is_cancelled(t), "deadline %llu",
                  (unsigned long long)deadlines[i]);
        cr_assert_eq(weft_error_status(reason_of(t)), WEFT_EDEADLINE);
        weft_token_release(t);
    }
    leak_check_end();
}

Test(cancel, past_deadline_on_the_real_clock_cancels_at_creation)
{
    leak_check_begin();
    weft_token_t *t = NULL;
    cr_assert_eq(weft_token_create_with_deadline(NULL, 0, &t), WEFT_OK);
    cr_assert(weft_token_is_cancelled(t));
    cr_assert_eq(weft_error_status(reason_of(t)), WEFT_EDEADLINE);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, child_inherits_earlier_parent_deadline)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *p = NULL;
    weft__token_create_root(&clk, 100, &p);
    weft_token_t *c = NULL;
    cr_assert_eq(weft_token_create_with_deadline(p, 500, &c), WEFT_OK);
    uint64_t d = 0;
    weft_token_deadline(c, &d);
    cr_assert_eq(d, 100);
    weft_token_t *plain = child_of(p);
    weft_token_deadline(plain, &d);
    cr_assert_eq(d, 100);
    weft__clock_set(&clk, 100);
    /* The child notices on its own poll, before anyone polls p. */
    cr_assert(weft_token_is_cancelled(c));
    cr_assert_eq(weft_error_status(reason_of(c)), WEFT_EDEADLINE);
    weft_token_release(plain);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, child_keeps_its_own_earlier_deadline)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *p = NULL;
    weft__token_create_root(&clk, 500, &p);
    weft_token_t *c = NULL;
    weft_token_create_with_deadline(p, 100, &c);
    uint64_t d = 0;
    weft_token_deadline(c, &d);
    cr_assert_eq(d, 100);
    weft__clock_set(&clk, 200);
    cr_assert(weft_token_is_cancelled(c));
    cr_assert_not(weft_token_is_cancelled(p), "the parent's is later");
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, passing_deadline_runs_callbacks_in_the_polling_call)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *p = NULL;
    weft__token_create_root(&clk, 50, &p);
    weft_token_t *c = child_of(p);
    struct rec rp = {0};
    struct rec rc = {0};
    weft_cancel_cb_t *cbp = NULL;
    weft_cancel_cb_t *cbc = NULL;
    weft_token_register(p, rec_fn, &rp, &cbp);
    weft_token_register(c, rec_fn, &rc, &cbc);
    weft__clock_set(&clk, 60);
    cr_assert_eq(rp.calls, 0, "nothing happens until someone observes");
    cr_assert(weft_token_is_cancelled(p));
    cr_assert_eq(rp.calls, 1);
    cr_assert_eq(rc.calls, 1, "and the child is cancelled through the tree");
    cr_assert_eq(weft_error_status(rc.reason), WEFT_EDEADLINE);
    cr_assert(pthread_equal(rp.thread, pthread_self()));
    weft_token_deregister(cbp);
    weft_token_deregister(cbc);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, cancel_after_deadline_passed_records_deadline_reason)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *t = NULL;
    weft__token_create_root(&clk, 10, &t);
    weft__clock_set(&clk, 20);
    weft_error_t *why = user_error("explicit");
    cr_assert_eq(weft_token_cancel(t, why), WEFT_EALREADY);
    cr_assert_eq(weft_error_status(reason_of(t)), WEFT_EDEADLINE);
    weft_error_release(why);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, parent_cancel_after_child_deadline_passed_gives_deadline_reason)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *p = NULL;
    weft__token_create_root(&clk, WEFT_DEADLINE_NONE, &p);
    weft_token_t *c = NULL;
    weft_token_create_with_deadline(p, 10, &c);
    weft__clock_set(&clk, 20);
    weft_error_t *why = user_error("parent");
    cr_assert_eq(weft_token_cancel(p, why), WEFT_OK);
    cr_assert_eq(reason_of(p), why);
    cr_assert_eq(weft_error_status(reason_of(c)), WEFT_EDEADLINE,
                 "the child's deadline came first");
    weft_error_release(why);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, next_deadline_is_reported_until_cancelled)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *t = NULL;
    weft__token_create_root(&clk, 77, &t);
    cr_assert_eq(weft__token_next_deadline(t), 77);
    weft__clock_set(&clk, 80);
    cr_assert_eq(weft__token_next_deadline(t), 77, "no clock check");
    weft_token_is_cancelled(t);
    cr_assert_eq(weft__token_next_deadline(t), WEFT_DEADLINE_NONE);
    weft_token_t *none = root();
    cr_assert_eq(weft__token_next_deadline(none), WEFT_DEADLINE_NONE);
    cr_assert_eq(weft__token_next_deadline(NULL), WEFT_DEADLINE_NONE);
    weft_token_release(none);
    weft_token_release(t);
    leak_check_end();
}

struct counting_clock {
    struct weft__clock base;
    int reads;
    uint64_t now;
};

static uint64_t
counting_now(const struct weft__clock *c)
{
    struct counting_clock *cc = (struct counting_clock *)c;
    cc->reads++;
    return cc->now;
}

Test(cancel, poll_without_deadline_never_reads_the_clock)
{
    leak_check_begin();
    struct counting_clock clk = {{counting_now, 0}, 0, 0};
    weft_token_t *t = NULL;
    weft__token_create_root(&clk.base, WEFT_DEADLINE_NONE, &t);
    weft_token_t *c = child_of(t);
    int before = clk.reads;
    for (int i = 0; i < 1000; i++) {
        cr_assert_not(weft_token_is_cancelled(t));
        cr_assert_not(weft_token_is_cancelled(c));
    }
    cr_assert_eq(clk.reads, before);
    weft_token_release(c);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, poll_with_deadline_reads_the_clock_until_cancelled)
{
    leak_check_begin();
    struct counting_clock clk = {{counting_now, 0}, 0, 0};
    weft_token_t *t = NULL;
    weft__token_create_root(&clk.base, 10, &t);
    int before = clk.reads;
    for (int i = 0; i < 5; i++) {
        cr_assert_not(weft_token_is_cancelled(t));
    }
    cr_assert_eq(clk.reads, before + 5);
    clk.now = 10;
    cr_assert(weft_token_is_cancelled(t));
    int at_cancel = clk.reads;
    for (int i = 0; i < 5; i++) {
        cr_assert(weft_token_is_cancelled(t));
    }
    cr_assert_eq(clk.reads, at_cancel, "a cancelled token reads no clock");
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, reason_notices_a_passed_deadline)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *t = NULL;
    weft__token_create_root(&clk, 5, &t);
    weft__clock_advance(&clk, 5);
    weft_error_t *r = NULL;
    cr_assert_eq(weft_token_reason(t, &r), WEFT_OK);
    cr_assert_eq(weft_error_status(r), WEFT_EDEADLINE);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, registering_after_deadline_passed_runs_with_deadline_reason)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *t = NULL;
    weft__token_create_root(&clk, 5, &t);
    weft__clock_set(&clk, 9);
    struct rec r = {0};
    weft_cancel_cb_t *cb = NULL;
    cr_assert_eq(weft_token_register(t, rec_fn, &r, &cb), WEFT_OK);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(weft_error_status(r.reason), WEFT_EDEADLINE);
    weft_token_deregister(cb);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, child_made_after_parent_deadline_passed_is_born_cancelled)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *p = NULL;
    weft__token_create_root(&clk, 5, &p);
    weft__clock_set(&clk, 6);
    weft_token_t *c = child_of(p);
    cr_assert(weft_token_is_cancelled(c));
    cr_assert_eq(weft_error_status(reason_of(c)), WEFT_EDEADLINE);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

/* ---- Callbacks --------------------------------------------------------- */

Test(cancel, callback_runs_exactly_once_with_the_reason)
{
    leak_check_begin();
    weft_token_t *t = root();
    struct rec r = {0};
    weft_cancel_cb_t *cb = NULL;
    cr_assert_eq(weft_token_register(t, rec_fn, &r, &cb), WEFT_OK);
    cr_assert_not_null(cb);
    cr_assert_eq(r.calls, 0);
    weft_error_t *why = user_error("why");
    weft_token_cancel(t, why);
    weft_token_cancel(t, NULL);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.reason, why);
    cr_assert(pthread_equal(r.thread, pthread_self()));
    cr_assert_eq(weft_token_deregister(cb), WEFT_EALREADY);
    cr_assert_eq(r.calls, 1);
    weft_error_release(why);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, callbacks_run_in_registration_order)
{
    leak_check_begin();
    weft_token_t *t = root();
    weft_cancel_cb_t *cb[4];
    static const char *tags[] = {"a", "b", "c", "d"};
    order_log[0] = '\0';
    for (int i = 0; i < 4; i++) {
        weft_token_register(t, order_fn, (void *)tags[i], &cb[i]);
    }
    weft_token_cancel(t, NULL);
    cr_assert_str_eq(order_log, "abcd");
    for (int i = 0; i < 4; i++) {
        weft_token_deregister(cb[i]);
    }
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, parent_callbacks_run_before_child_callbacks)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_cancel_cb_t *cb1 = NULL;
    weft_cancel_cb_t *cb2 = NULL;
    weft_cancel_cb_t *cb3 = NULL;
    order_log[0] = '\0';
    weft_token_register(p, order_fn, "P", &cb1);
    weft_token_t *c = child_of(p); /* linked between P and Q */
    weft_token_register(c, order_fn, "C", &cb2);
    weft_token_register(p, order_fn, "Q", &cb3);
    weft_token_cancel(p, NULL);
    cr_assert_str_eq(order_log, "PQC");
    weft_token_deregister(cb1);
    weft_token_deregister(cb2);
    weft_token_deregister(cb3);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, register_on_cancelled_token_runs_callback_before_returning)
{
    leak_check_begin();
    weft_token_t *t = root();
    weft_error_t *why = user_error("earlier");
    weft_token_cancel(t, why);
    struct rec r = {0};
    weft_cancel_cb_t *cb = NULL;
    cr_assert_eq(weft_token_register(t, rec_fn, &r, &cb), WEFT_OK);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.reason, why);
    cr_assert(pthread_equal(r.thread, pthread_self()));
    cr_assert_not_null(cb, "still a registration to deregister");
    cr_assert_eq(weft__token_registrations(t), 0);
    cr_assert_eq(weft_token_deregister(cb), WEFT_EALREADY);
    weft_error_release(why);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, deregistered_callback_never_runs)
{
    leak_check_begin();
    weft_token_t *t = root();
    struct rec r = {0};
    weft_cancel_cb_t *cb = NULL;
    weft_token_register(t, rec_fn, &r, &cb);
    cr_assert_eq(weft__token_registrations(t), 1);
    cr_assert_eq(weft_token_deregister(cb), WEFT_OK);
    cr_assert_eq(weft__token_registrations(t), 0);
    weft_token_cancel(t, NULL);
    cr_assert_eq(r.calls, 0);
    weft_token_release(t);
    leak_check_end();
}

struct self_dereg {
    weft_cancel_cb_t *cb;
    weft_status_t st;
    int calls;
};

static void
self_dereg_fn(void *arg, weft_error_t *reason)
{
    (void)reason;
    struct self_dereg *s = arg;
    s->calls++;
    s->st = weft_token_deregister(s->cb);
}

Test(cancel, callback_can_deregister_itself_without_deadlock)
{
    leak_check_begin();
    weft_token_t *t = root();
    struct self_dereg s = {NULL, WEFT_OK, 0};
    struct rec after = {0};
    weft_cancel_cb_t *later = NULL;
    weft_token_register(t, self_dereg_fn, &s, &s.cb);
    weft_token_register(t, rec_fn, &after, &later);
    cr_assert_eq(weft_token_cancel(t, NULL), WEFT_OK);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.st, WEFT_EALREADY, "it is running: too late to stop");
    cr_assert_eq(after.calls, 1, "later callbacks still run");
    weft_token_deregister(later);
    weft_token_release(t);
    leak_check_end();
}

struct dereg_other {
    weft_cancel_cb_t *victim;
    weft_status_t st;
};

static void
dereg_other_fn(void *arg, weft_error_t *reason)
{
    (void)reason;
    struct dereg_other *d = arg;
    d->st = weft_token_deregister(d->victim);
}

Test(cancel, callback_can_deregister_a_later_callback)
{
    leak_check_begin();
    weft_token_t *t = root();
    struct dereg_other d = {NULL, WEFT_EINVAL};
    struct rec victim = {0};
    weft_cancel_cb_t *first = NULL;
    weft_token_register(t, dereg_other_fn, &d, &first);
    weft_token_register(t, rec_fn, &victim, &d.victim);
    weft_token_cancel(t, NULL);
    cr_assert_eq(d.st, WEFT_OK, "removed before it ran");
    cr_assert_eq(victim.calls, 0);
    weft_token_deregister(first);
    weft_token_release(t);
    leak_check_end();
}

struct reenter {
    weft_token_t *t;
    weft_status_t cancel_st;
    struct rec inner;
    weft_cancel_cb_t *inner_cb;
};

static void
reenter_fn(void *arg, weft_error_t *reason)
{
    (void)reason;
    struct reenter *r = arg;
    r->cancel_st = weft_token_cancel(r->t, NULL);
    (void)weft_token_register(r->t, rec_fn, &r->inner, &r->inner_cb);
}

Test(cancel, callback_may_cancel_and_register_on_its_own_token)
{
    leak_check_begin();
    weft_token_t *t = root();
    struct reenter r = {t, WEFT_OK, {0}, NULL};
    weft_cancel_cb_t *cb = NULL;
    weft_token_register(t, reenter_fn, &r, &cb);
    weft_token_cancel(t, NULL);
    cr_assert_eq(r.cancel_st, WEFT_EALREADY);
    cr_assert_eq(r.inner.calls, 1, "ran at once: the token is cancelled");
    weft_token_deregister(r.inner_cb);
    weft_token_deregister(cb);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, registration_keeps_token_alive)
{
    leak_check_begin();
    weft_token_t *t = root();
    struct rec r = {0};
    weft_cancel_cb_t *cb = NULL;
    weft_token_register(t, rec_fn, &r, &cb);
    int64_t live = weft__alloc_live();
    weft_token_release(t);
    cr_assert_eq(weft__alloc_live(), live, "the registration holds t");
    cr_assert_eq(weft_token_deregister(cb), WEFT_OK);
    cr_assert_eq(r.calls, 0);
    leak_check_end();
}

Test(cancel, callback_on_child_runs_when_parent_cancelled)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *c = child_of(p);
    weft_token_t *gc = child_of(c);
    struct rec r = {0};
    weft_cancel_cb_t *cb = NULL;
    weft_token_register(gc, rec_fn, &r, &cb);
    weft_error_t *why = user_error("root cause");
    weft_token_cancel(p, why);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.reason, why);
    weft_token_deregister(cb);
    weft_error_release(why);
    weft_token_release(gc);
    weft_token_release(c);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, intrusive_registration_runs_once_and_can_be_reused)
{
    leak_check_begin();
    weft_token_t *t = root();
    struct weft__token_cb node;
    memset(&node, 0, sizeof(node));
    struct rec r = {0};
    cr_assert_eq(weft__token_register(t, &node, rec_fn, &r), WEFT_OK);
    cr_assert_eq(weft__token_register(t, &node, rec_fn, &r), WEFT_EINVAL,
                 "already registered");
    cr_assert_eq(weft__token_deregister(&node), WEFT_OK);
    cr_assert_eq(weft__token_register(t, &node, rec_fn, &r), WEFT_OK);
    weft_token_cancel(t, NULL);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(weft__token_deregister(&node), WEFT_EALREADY);
    cr_assert_eq(weft__token_deregister(&node), WEFT_EALREADY,
                 "deregistering twice is harmless for intrusive nodes");
    /* Reused on a cancelled token: runs at once. */
    cr_assert_eq(weft__token_register(t, &node, rec_fn, &r), WEFT_OK);
    cr_assert_eq(r.calls, 2);
    cr_assert_eq(weft__token_deregister(&node), WEFT_EALREADY);
    weft_token_release(t);
    leak_check_end();
}

Test(cancel, intrusive_deregister_of_unregistered_node_is_rejected)
{
    struct weft__token_cb node;
    memset(&node, 0, sizeof(node));
    cr_assert_eq(weft__token_deregister(&node), WEFT_EINVAL);
    cr_assert_eq(weft__token_deregister(NULL), WEFT_EINVAL);
    weft_token_t *t = root();
    cr_assert_eq(weft__token_register(NULL, &node, rec_fn, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(weft__token_register(t, NULL, rec_fn, NULL), WEFT_EINVAL);
    cr_assert_eq(weft__token_register(t, &node, NULL, NULL), WEFT_EINVAL);
    weft_token_release(t);
}

/*
 * Deregistration from another thread while the callback runs must wait
 * for it. The callback does not return until the deregistering thread is
 * seen blocked inside weft_token_deregister() (weft__token_waiters()), so
 * the test has no timing assumption: if deregister did not wait, the
 * callback would spin until the suite's timeout and the test would fail.
 */
struct blocking {
    weft_token_t *t;
    weft_cancel_cb_t *cb;
    uint32_t started;
    uint32_t finished;
    uint32_t finished_seen_by_dereg;
    weft_status_t dereg_st;
};

static void
blocking_fn(void *arg, weft_error_t *reason)
{
    (void)reason;
    struct blocking *b = arg;
    /* Pairs with: the load-acquire of started in dereg_thread(). */
    weft__store_rel_u32(&b->started, 1);
    while (weft__token_waiters(b->t) != 1) {
        sched_yield();
    }
    /* Pairs with: the load-acquire of finished in dereg_thread(). */
    weft__store_rel_u32(&b->finished, 1);
}

static void *
cancel_thread(void *arg)
{
    struct blocking *b = arg;
    weft_token_cancel(b->t, NULL);
    return NULL;
}

static void *
dereg_thread(void *arg)
{
    struct blocking *b = arg;
    /* Pairs with: the store-release of started in blocking_fn(). */
    while (weft__load_acq_u32(&b->started) == 0) {
        sched_yield();
    }
    b->dereg_st = weft_token_deregister(b->cb);
    /* Pairs with: the store-release of finished in blocking_fn(). */
    b->finished_seen_by_dereg = weft__load_acq_u32(&b->finished);
    return NULL;
}

Test(cancel, deregister_from_another_thread_waits_for_running_callback)
{
    leak_check_begin();
    struct blocking b;
    memset(&b, 0, sizeof(b));
    b.t = root();
    cr_assert_eq(weft_token_register(b.t, blocking_fn, &b, &b.cb), WEFT_OK);
    pthread_t c;
    pthread_t d;
    pthread_create(&c, NULL, cancel_thread, &b);
    pthread_create(&d, NULL, dereg_thread, &b);
    pthread_join(c, NULL);
    pthread_join(d, NULL);
    cr_assert_eq(b.finished_seen_by_dereg, 1,
                 "deregister returned while the callback ran");
    cr_assert_eq(b.dereg_st, WEFT_EALREADY);
    cr_assert_eq(weft__token_waiters(b.t), 0);
    weft_token_release(b.t);
    leak_check_end();
}

/* ---- Shields ----------------------------------------------------------- */

Test(cancel, shielded_child_ignores_parent_cancellation)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *s = NULL;
    cr_assert_eq(weft_token_create_shielded(p, WEFT_DEADLINE_NONE, &s),
                 WEFT_OK);
    cr_assert(weft_token_is_shielded(s));
    cr_assert_eq(weft__token_registrations(p), 0, "no link to the parent");
    weft_token_cancel(p, NULL);
    cr_assert_not(weft_token_is_cancelled(s));
    cr_assert_eq(weft_token_cancel(s, NULL), WEFT_OK, "cancellable itself");
    weft_token_release(p);
    weft_token_release(s);
    leak_check_end();
}

Test(cancel, shielded_child_of_cancelled_parent_starts_clean)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_cancel(p, NULL);
    weft_token_t *s = NULL;
    weft_token_create_shielded(p, WEFT_DEADLINE_NONE, &s);
    cr_assert_not(weft_token_is_cancelled(s), "clean-up can still run");
    weft_token_release(s);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, shielded_child_ignores_parent_deadline_but_keeps_its_own)
{
    leak_check_begin();
    struct weft__clock clk;
    weft__clock_init_virtual(&clk, 0);
    weft_token_t *p = NULL;
    weft__token_create_root(&clk, 10, &p);
    weft_token_t *s = NULL;
    weft_token_create_shielded(p, 100, &s);
    uint64_t d = 0;
    weft_token_deadline(s, &d);
    cr_assert_eq(d, 100);
    weft__clock_set(&clk, 50);
    cr_assert(weft_token_is_cancelled(p));
    cr_assert_not(weft_token_is_cancelled(s));
    weft__clock_set(&clk, 100); /* the shield reads the parent's clock */
    cr_assert(weft_token_is_cancelled(s));
    cr_assert_eq(weft_error_status(reason_of(s)), WEFT_EDEADLINE);
    weft_token_release(s);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, nested_shields_each_cut_off_their_ancestors)
{
    leak_check_begin();
    /* p -> s1 (shield) -> c1 -> s2 (shield) -> c2 */
    weft_token_t *p = root();
    weft_token_t *s1 = NULL;
    weft_token_create_shielded(p, WEFT_DEADLINE_NONE, &s1);
    weft_token_t *c1 = child_of(s1);
    weft_token_t *s2 = NULL;
    weft_token_create_shielded(c1, WEFT_DEADLINE_NONE, &s2);
    weft_token_t *c2 = child_of(s2);

    weft_token_cancel(p, NULL);
    cr_assert_not(weft_token_is_cancelled(s1));
    cr_assert_not(weft_token_is_cancelled(c1));
    cr_assert_not(weft_token_is_cancelled(s2));
    cr_assert_not(weft_token_is_cancelled(c2));

    weft_token_cancel(s1, NULL);
    cr_assert(weft_token_is_cancelled(c1), "a child follows its shield");
    cr_assert_not(weft_token_is_cancelled(s2));
    cr_assert_not(weft_token_is_cancelled(c2));

    weft_token_cancel(s2, NULL);
    cr_assert(weft_token_is_cancelled(c2));

    weft_token_release(c2);
    weft_token_release(s2);
    weft_token_release(c1);
    weft_token_release(s1);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, shield_directly_under_shield_ignores_both)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *s1 = NULL;
    weft_token_t *s2 = NULL;
    weft_token_create_shielded(p, WEFT_DEADLINE_NONE, &s1);
    weft_token_create_shielded(s1, WEFT_DEADLINE_NONE, &s2);
    weft_token_cancel(p, NULL);
    weft_token_cancel(s1, NULL);
    cr_assert_not(weft_token_is_cancelled(s2));
    weft_token_release(s2);
    weft_token_release(s1);
    weft_token_release(p);
    leak_check_end();
}

Test(cancel, shielded_token_without_parent_is_a_root)
{
    leak_check_begin();
    weft_token_t *s = NULL;
    cr_assert_eq(weft_token_create_shielded(NULL, WEFT_DEADLINE_NONE, &s),
                 WEFT_OK);
    cr_assert(weft_token_is_shielded(s));
    cr_assert_not(weft_token_is_cancelled(s));
    weft_token_release(s);
    leak_check_end();
}

/* ---- Bad input --------------------------------------------------------- */

Test(cancel, null_token_is_never_cancelled)
{
    cr_assert_not(weft_token_is_cancelled(NULL));
    cr_assert_eq(weft_token_check(NULL), WEFT_OK);
    cr_assert_not(weft_token_is_shielded(NULL));
}

Test(cancel, null_arguments_are_rejected)
{
    leak_check_begin();
    weft_token_t *t = root();
    weft_token_t *out = (weft_token_t *)0x1;
    weft_cancel_cb_t *cb = (weft_cancel_cb_t *)0x1;
    weft_error_t *r = (weft_error_t *)0x1;
    uint64_t d = 0;
    struct rec rr = {0};

    cr_assert_eq(weft_token_create(NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_create(t, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_create_with_deadline(t, 5, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_create_shielded(t, 5, NULL), WEFT_EINVAL);
    cr_assert_eq(weft__token_create_root(NULL, 5, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_retain(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_release(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_cancel(NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_reason(NULL, &r), WEFT_EINVAL);
    cr_assert_null(r);
    cr_assert_eq(weft_token_reason(t, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_deadline(NULL, &d), WEFT_EINVAL);
    cr_assert_eq(weft_token_deadline(t, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_register(NULL, rec_fn, &rr, &cb), WEFT_EINVAL);
    cr_assert_null(cb);
    cr_assert_eq(weft_token_register(t, NULL, &rr, &cb), WEFT_EINVAL);
    cr_assert_eq(weft_token_register(t, rec_fn, &rr, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_token_deregister(NULL), WEFT_EINVAL);
    cr_assert_eq(weft__token_registrations(NULL), 0);
    cr_assert_eq(weft__token_waiters(NULL), 0);
    (void)out;
    cr_assert_eq(weft__token_registrations(t), 0, "nothing registered");
    weft_token_cancel(t, NULL);
    cr_assert_eq(rr.calls, 0, "failed registrations never run");
    weft_token_release(t);
    leak_check_end();
}

/* ---- Out of memory ----------------------------------------------------- */

Test(cancel, create_out_of_memory_leaves_parent_untouched)
{
    leak_check_begin();
    weft_token_t *p = root();
    weft_token_t *c = (weft_token_t *)0x1;
    weft__alloc_set_fail_after(0);
    cr_assert_eq(weft_token_create(p, &c), WEFT_ENOMEM);
    cr_assert_null(c);
    cr_assert_eq(weft__token_registrations(p), 0);
    weft__alloc_set_fail_after(0);
    cr_assert_eq(weft_token_create_shielded(p, 1, &c), WEFT_ENOMEM);
    cr_assert_null(c);
    weft_token_release(p); /* frees it: the failed child took no ref */
    leak_check_end();
}

Test(cancel, register_out_of_memory_never_runs_the_callback)
{
    leak_check_begin();
    weft_token_t *t = root();
    weft_token_cancel(t, NULL);
    struct rec r = {0};
    weft_cancel_cb_t *cb = (weft_cancel_cb_t *)0x1;
    weft__alloc_set_fail_after(0);
    cr_assert_eq(weft_token_register(t, rec_fn, &r, &cb), WEFT_ENOMEM);
    cr_assert_null(cb);
    cr_assert_eq(r.calls, 0, "a failed call never runs its callback");
    weft_token_release(t);
    leak_check_end();
}

/*
 * A small tree (root, child, grandchild, two registrations), failing the
 * k-th allocation for every k: the failing call reports WEFT_ENOMEM, the
 * rest of the scenario still works, and nothing leaks.
 */
Test(cancel, every_allocation_failure_in_a_tree_is_reported_without_leak)
{
    leak_check_begin();
    bool reached_end = false;
    long k;
    for (k = 0; k < 20 && !reached_end; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        int failed = 0;
        weft_token_t *r = NULL;
        weft_token_t *c = NULL;
        weft_token_t *g = NULL;
        weft_cancel_cb_t *cb1 = NULL;
        weft_cancel_cb_t *cb2 = NULL;
        struct rec r1 = {0};
        struct rec r2 = {0};
        weft_status_t st = weft_token_create(NULL, &r);
        failed += st == WEFT_ENOMEM;
        if (r != NULL) {
            failed += weft_token_create(r, &c) == WEFT_ENOMEM;
        }
        if (c != NULL) {
            failed += weft_token_create(c, &g) == WEFT_ENOMEM;
            failed += weft_token_register(c, rec_fn, &r1, &cb1) ==
                      WEFT_ENOMEM;
        }
        if (g != NULL) {
            failed += weft_token_register(g, rec_fn, &r2, &cb2) ==
                      WEFT_ENOMEM;
        }
        weft__alloc_set_fail_after(-1);
        bool fired = weft__alloc_failures() != before;
        cr_assert_eq(failed, fired ? 1 : 0, "k=%ld", k);
        if (r != NULL) {
            weft_token_cancel(r, NULL);
        }
        cr_assert_eq(r1.calls, cb1 != NULL ? 1 : 0, "k=%ld", k);
        cr_assert_eq(r2.calls, cb2 != NULL ? 1 : 0, "k=%ld", k);
        if (cb1 != NULL) {
            weft_token_deregister(cb1);
        }
        if (cb2 != NULL) {
            weft_token_deregister(cb2);
        }
        if (g != NULL) {
            weft_token_release(g);
        }
        if (c != NULL) {
            weft_token_release(c);
        }
        if (r != NULL) {
            weft_token_release(r);
        }
        leak_check_end();
        reached_end = !fired;
    }
    cr_assert(reached_end);
    cr_assert_eq(k, 6, "five allocations: three tokens, two registrations");
}

/* ---- Concurrency -------------------------------------------------------- */

#define RACERS 8

struct race {
    weft_token_t *t;
    weft_error_t *reasons[RACERS];
    weft_status_t st[RACERS];
    uint32_t go;
};

struct racer {
    struct race *race;
    int index;
};

static void *
racer_thread(void *arg)
{
    struct racer *r = arg;
    /* Pairs with: the store-release of go in the test body. */
    while (weft__load_acq_u32(&r->race->go) == 0) {
        sched_yield();
    }
    r->race->st[r->index] =
        weft_token_cancel(r->race->t, r->race->reasons[r->index]);
    return NULL;
}

Test(cancel, concurrent_cancels_pick_exactly_one_winner, .timeout = 30.0)
{
    leak_check_begin();
    for (int round = 0; round < 200; round++) {
        struct race race;
        memset(&race, 0, sizeof(race));
        race.t = root();
        struct rec rec = {0};
        weft_cancel_cb_t *cb = NULL;
        weft_token_register(race.t, rec_fn, &rec, &cb);
        pthread_t th[RACERS];
        struct racer rs[RACERS];
        for (int i = 0; i < RACERS; i++) {
            race.reasons[i] = user_error("racer");
            rs[i].race = &race;
            rs[i].index = i;
            pthread_create(&th[i], NULL, racer_thread, &rs[i]);
        }
        /* Pairs with: the load-acquire of go in racer_thread(). */
        weft__store_rel_u32(&race.go, 1);
        int winners = 0;
        int winner = -1;
        for (int i = 0; i < RACERS; i++) {
            pthread_join(th[i], NULL);
        }
        for (int i = 0; i < RACERS; i++) {
            if (race.st[i] == WEFT_OK) {
                winners++;
                winner = i;
            } else {
                cr_assert_eq(race.st[i], WEFT_EALREADY);
            }
        }
        cr_assert_eq(winners, 1);
        cr_assert_eq(reason_of(race.t), race.reasons[winner]);
        cr_assert_eq(rec.calls, 1);
        cr_assert_eq(rec.reason, race.reasons[winner]);
        weft_token_deregister(cb);
        for (int i = 0; i < RACERS; i++) {
            weft_error_release(race.reasons[i]);
        }
        weft_token_release(race.t);
    }
    leak_check_end();
}
