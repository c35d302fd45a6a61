/*
 * cancel.h - private side of <weft/cancel.h>: intrusive callback
 * registration, the virtual-clock root, and the deadline hook the
 * executor's timers use.
 *
 * Waking a waiter on cancellation (executor). The registration lives in
 * the waiter's own storage, so waiting allocates nothing:
 *
 *     struct waiter {
 *         struct weft__token_cb cb;
 *         struct weft__parker *parker;
 *     };
 *
 *     static void
 *     waiter_wake(void *arg, weft_error_t *reason)
 *     {
 *         (void)reason;
 *         weft__parker_wake(((struct waiter *)arg)->parker);
 *     }
 *
 *     weft__token_register(tok, &w.cb, waiter_wake, &w);
 *     ... loop: prepare; if (done || weft_token_is_cancelled(tok))
 *         cancel the park, else park ...
 *     weft__token_deregister(&w.cb);
 *     // From here waiter_wake() is not running and never will, so w may
 *     // leave scope.
 *
 * If tok is already cancelled, register runs waiter_wake() at once, which
 * is harmless (the loop's check sees the cancellation). The caller must
 * keep tok alive until deregister returns (the public registration takes
 * a reference for that; the intrusive one leaves it to the caller, who
 * usually holds one already).
 *
 * Deadlines on time (executor). Deadlines are checked lazily, when the
 * token is observed. To make a token's callbacks run when its deadline
 * passes, even if no task polls it, arm a timer for
 * weft__token_next_deadline(tok) and, when it fires, call
 * weft_token_is_cancelled(tok) from the timer's thread: that call notices
 * the deadline and runs the callbacks (including the waiters' wake-ups)
 * on that thread. weft__token_next_deadline() returns WEFT_DEADLINE_NONE
 * once the token is cancelled, so a timer loop can drop it then.
 *
 * Virtual time (tests). weft__token_create_root() makes a root token that
 * reads a given struct weft__clock; every descendant, shielded or not,
 * reads the same clock. The clock must outlive the tree.
 */
#ifndef WEFT_PRIMITIVES_CANCEL_H
#define WEFT_PRIMITIVES_CANCEL_H

#include <stddef.h>
#include <stdint.h>

#include <weft/cancel.h>

#include "clock.h"

/* State of a registration; changed only under the token's lock. */
enum weft__token_cb_state {
    WEFT__TOKEN_CB_IDLE = 0,    /* never registered */
    WEFT__TOKEN_CB_LINKED = 1,  /* waiting on the token's list */
    WEFT__TOKEN_CB_RUNNING = 2, /* its function is running now */
    WEFT__TOKEN_CB_DONE = 3     /* ran, or was removed: never runs again */
};

/*
 * An intrusive registration in caller storage. Fields are private to
 * cancel.c. Zero-initialize it before its first registration (so that a
 * double registration is caught); it may be registered again after it was
 * deregistered.
 */
struct weft__token_cb {
    struct weft__token_cb *next; /* token lock: list links */
    struct weft__token_cb *prev; /* token lock */
    weft_cancel_fn_t fn;         /* set before linking; NULL marks the
                                    link of a child token */
    void *arg;                   /* set before linking */
    weft_token_t *token;         /* the token it is registered on */
    uint32_t state;              /* token lock: enum weft__token_cb_state */
};

/*
 * Make a root token that reads `clock` (NULL: the monotonic clock), with
 * a deadline (WEFT_DEADLINE_NONE for none). Children and shielded tokens
 * made from it read the same clock.
 * Returns: as weft_token_create(). Thread-safety: any thread.
 * Ownership: the caller owns one reference to *out and keeps clock alive
 * while any token of the tree lives.
 */
weft_status_t weft__token_create_root(const struct weft__clock *clock,
                                      uint64_t deadline_ns,
                                      weft_token_t **out);

/*
 * Register fn(arg) on t using cb's storage. If t is already cancelled,
 * fn runs at once on the calling thread and cb ends in state DONE.
 * Returns: WEFT_OK; WEFT_EINVAL (t, cb or fn NULL, or cb registered
 * already).
 * Thread-safety: any thread holding a reference to t, which must stay
 * alive until weft__token_deregister(cb) returns. Blocking: takes t's
 * lock briefly; runs fn when t is already cancelled.
 */
weft_status_t weft__token_register(weft_token_t *t, struct weft__token_cb *cb,
                                   weft_cancel_fn_t fn, void *arg);

/*
 * Deregister cb (see weft_token_deregister() for the waiting rules: from
 * the thread running cb's function it returns at once; from another
 * thread it waits for the function to return). Afterwards cb's storage
 * may be reused or freed, except when this was called on the thread that
 * is running cb's function: the storage is then free to reuse as soon as
 * that function returns.
 * Returns: WEFT_OK (removed before it ran); WEFT_EALREADY (it ran, or is
 * running on this thread); WEFT_EINVAL (NULL, or never registered).
 * Thread-safety: any thread, once per registration. Blocking: as above.
 */
weft_status_t weft__token_deregister(struct weft__token_cb *cb);

/*
 * The time at which t's deadline will cancel it: its effective deadline
 * while it is not cancelled, else WEFT_DEADLINE_NONE (also with no
 * deadline, or for NULL). Reading it does not check the clock.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
uint64_t weft__token_next_deadline(const weft_token_t *t);

/* What weft__token_peek() saw. */
enum weft__token_peek_state {
    WEFT__TOKEN_ACTIVE = 0,    /* not cancelled (or NULL) */
    WEFT__TOKEN_CANCELLED = 1, /* cancelled; *reason is set */
    WEFT__TOKEN_EXPIRED = 2    /* its deadline passed, but nothing has
                                  observed it yet, so not cancelled yet */
};

/*
 * t's cancellation state, read without observing t: unlike
 * weft_token_is_cancelled() it never cancels a token whose deadline has
 * passed, so it never runs callbacks and takes no lock (for inspection,
 * such as the debug-mode task dump, from under another lock).
 * *reason is set to the borrowed reason when cancelled, else NULL; it
 * stays valid while t lives.
 * Thread-safety: any thread holding a reference (or otherwise keeping t
 * alive). Blocking: never.
 */
enum weft__token_peek_state weft__token_peek(const weft_token_t *t,
                                             weft_error_t **reason);

/*
 * t's reason when t is cancelled, else NULL: one acquire load of the
 * state, no deadline check (call weft_token_is_cancelled() first when a
 * passed deadline must count). Borrowed: valid while t lives.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
weft_error_t *weft__token_reason_if_cancelled(const weft_token_t *t);

/*
 * Number of registrations linked on t and waiting to run, child links
 * included. For white-box tests (a destroyed child must leave none).
 * Thread-safety: any thread holding a reference; takes t's lock.
 */
size_t weft__token_registrations(const weft_token_t *t);

/*
 * Number of deregistrations blocked waiting for one of t's callbacks to
 * return. For white-box tests that must know a waiter is really waiting.
 * Thread-safety: any thread holding a reference; takes t's lock.
 */
size_t weft__token_waiters(const weft_token_t *t);

#endif /* WEFT_PRIMITIVES_CANCEL_H */
