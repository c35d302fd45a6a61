/**
 * @file
 * weft/cancel.h - cooperative cancellation tokens.
 *
 * A token says whether some work should stop, and why. Cancelling a token
 * records a reason (an error value) and runs the callbacks registered on
 * it; code that does the work polls the token (weft_token_is_cancelled(),
 * one load when nothing has happened) or registers a callback. Nothing is
 * interrupted asynchronously.
 *
 * One type, not a source/token pair. Every token in a tree plays both
 * roles: a scope cancels its own token and observes its parent's. A
 * C++-style split (stop_source and stop_token) would double the objects
 * and reference counts of every node for a capability boundary that C
 * cannot enforce anyway. The boundary weft keeps is the tree itself:
 * cancelling a token affects only that token and its descendants, never
 * its parent. To hand out a view that cannot cancel your token, hand out a
 * child of it: the receiver can cancel only the child.
 *
 * Tree. weft_token_create(parent, ...) makes a child that is cancelled
 * when its parent is, with the parent's reason (the same error object).
 * Cancelling a child leaves the parent alone. A child holds a reference to
 * its parent; the parent holds none to its children, only a link that the
 * child removes when its last reference goes, so a parent never points to
 * a freed child and a destroyed child costs the parent nothing. A child of
 * an already-cancelled parent is born cancelled with the parent's reason.
 *
 * Deadlines are absolute times in nanoseconds on CLOCK_MONOTONIC (the
 * clock of weft_clock_now_ns()). A token's effective deadline is the
 * earlier of its own and its parent's. Deadlines are checked lazily: once
 * the deadline has passed, the next call that observes the token
 * (weft_token_is_cancelled(), weft_token_check(), weft_token_reason(),
 * weft_token_register(), weft_token_cancel(), creating a child) cancels
 * it with an error of code WEFT_EDEADLINE, and that call runs the
 * callbacks. Until something observes it, nothing happens. Observers
 * are: tasks spawned with the token (checked before the body starts, and
 * by weft_task_is_cancelled() polls), weft_future_wait_for() (which parks
 * no longer than the token's deadline), and an executor's timer, armed
 * with weft_executor_watch_deadline(), which observes the token at its
 * deadline so that callbacks run on time with nobody polling. A deadline that
 * has already passed when the token is created gives a token that is
 * cancelled at birth. A cancellation applied after the deadline passed,
 * even one that arrives from the parent, records the deadline reason.
 *
 * Shielding. weft_token_create_shielded(parent, ...) makes a token that
 * ignores its parent's cancellation and deadline (Trio's shield), for
 * clean-up work that must run after the surrounding scope was cancelled.
 * It can still be cancelled directly and can have its own deadline, and
 * its own children are cancelled with it. Shields nest: a shielded token
 * under a shielded token ignores both ancestors, and a plain child of a
 * shielded token follows that shielded token only.
 *
 * Callbacks run at most once, on the thread that cancels the token (or on
 * the thread whose poll noticed the deadline), outside any lock, in
 * registration order; a token's own callbacks run before those of its
 * descendants. A callback may call any function in this file, including
 * deregistering itself. Registering on a token that is already cancelled
 * runs the callback at once, on the registering thread, before
 * weft_token_register() returns.
 *
 * Reference counting: tokens are created with one reference owned by the
 * caller; weft_token_retain/release manage more. A NULL token is never
 * cancelled (weft_token_is_cancelled(NULL) is false), so "no token" needs
 * no special case in polling code; every other function rejects NULL with
 * WEFT_EINVAL.
 */
#ifndef WEFT_CANCEL_H
#define WEFT_CANCEL_H

#include <stdbool.h>
#include <stdint.h>

#include <weft/error.h>
#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque cancellation token. */
typedef struct weft_token weft_token_t;

/** Opaque callback registration. */
typedef struct weft_cancel_cb weft_cancel_cb_t;

/** "No deadline": later than every time. */
#define WEFT_DEADLINE_NONE UINT64_MAX

/**
 * A cancellation callback. reason is borrowed: valid during the call, and
 * for as long as the caller holds a reference to the token (retain it to
 * keep it longer). arg is the pointer given at registration.
 */
typedef void (*weft_cancel_fn_t)(void *arg, weft_error_t *reason);

/**
 * Make a token. With parent NULL it is a root token; otherwise it is a
 * child of parent (see the file comment) and inherits its deadline.
 * Returns: WEFT_OK and *out set; WEFT_EINVAL (out NULL); WEFT_ENOMEM or
 * WEFT_ESYS (*out NULL, nothing leaked).
 * Thread-safety: any thread holding a reference to parent.
 * Blocking: takes parent's lock briefly; may run parent's callbacks when
 * this call is the one that notices parent's deadline has passed.
 * Ownership: the caller owns one reference to *out. The child holds its
 * own reference to parent until the child is freed.
 */
WEFT_API weft_status_t weft_token_create(weft_token_t *parent,
                                         weft_token_t **out);

/**
 * weft_token_create() with a deadline (absolute ns, WEFT_DEADLINE_NONE for
 * none). The effective deadline is the earlier of deadline_ns and
 * parent's. A deadline not in the future gives a token cancelled at birth
 * with reason WEFT_EDEADLINE.
 * Returns, thread-safety, blocking, ownership: as weft_token_create().
 */
WEFT_API weft_status_t weft_token_create_with_deadline(weft_token_t *parent,
                                                       uint64_t deadline_ns,
                                                       weft_token_t **out);

/**
 * Make a shielded token: it takes parent's clock but neither its
 * cancellation nor its deadline, only its own deadline_ns
 * (WEFT_DEADLINE_NONE for none). parent may be NULL (then this is a root
 * token with a deadline) or cancelled (the usual case: clean-up after a
 * cancellation).
 * Returns: as weft_token_create(). Thread-safety: any thread holding a
 * reference to parent. Blocking: never.
 * Ownership: the caller owns one reference to *out; a shielded token
 * holds no reference to parent.
 */
WEFT_API weft_status_t weft_token_create_shielded(weft_token_t *parent,
                                                  uint64_t deadline_ns,
                                                  weft_token_t **out);

/**
 * Take another reference to t.
 * Returns: WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_token_retain(weft_token_t *t);

/**
 * Give up one reference. The last one unlinks t from its parent, gives up
 * t's reference to the parent (which may free it in turn) and frees t.
 * Registered callbacks each hold a reference, so the last release happens
 * only after every callback was deregistered. Releasing more references
 * than were taken is undefined behaviour.
 * Returns: WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: the last
 * release takes the parent's lock briefly.
 */
WEFT_API weft_status_t weft_token_release(weft_token_t *t);

/**
 * Cancel t and, through the tree, its descendants (except shielded ones),
 * with `reason`. The first cancellation wins: later calls change nothing.
 * reason may be NULL for a generic reason (code WEFT_ECANCELED).
 * Returns: WEFT_OK when this call cancelled t; WEFT_EALREADY when t was
 * already cancelled, by an earlier call, by its parent or by its deadline
 * (this call's reason is then not recorded); WEFT_EINVAL (t NULL).
 * Thread-safety: any thread holding a reference to t (and to reason).
 * Blocking: runs every callback of t and of its descendants on the
 * calling thread before returning (callbacks run outside any lock).
 * Ownership: t takes its own reference to reason; the caller keeps its.
 */
WEFT_API weft_status_t weft_token_cancel(weft_token_t *t, weft_error_t *reason);

/**
 * True when t is cancelled. The fast path, when t is not cancelled and
 * has no deadline, is one relaxed load. With a deadline it also reads the
 * clock, and if the deadline has passed it cancels t (see the file
 * comment) and returns true. false for NULL.
 * A true result does not order the caller after the canceller: to read
 * the reason use weft_token_reason(), which does.
 * Thread-safety: any thread holding a reference. Blocking: never, except
 * when this call is the one that notices the deadline: it then runs the
 * callbacks as weft_token_cancel() does.
 */
WEFT_API bool weft_token_is_cancelled(const weft_token_t *t);

/**
 * Polling in status form, for returning straight out of a task body.
 * Returns: WEFT_ECANCELED when t is cancelled (whatever the reason), else
 * WEFT_OK (also for NULL). Thread-safety and blocking: as
 * weft_token_is_cancelled().
 */
WEFT_API weft_status_t weft_token_check(const weft_token_t *t);

/**
 * The reason t was cancelled with.
 * Returns: WEFT_OK and *out set to the reason, borrowed: valid while the
 * caller holds a reference to t; WEFT_ESTATE when t is not cancelled
 * (*out NULL); WEFT_EINVAL (t or out NULL).
 * Thread-safety: any thread holding a reference; a WEFT_OK result is
 * ordered after the cancellation (acquire), so the reason is fully
 * visible. Blocking: as weft_token_is_cancelled().
 */
WEFT_API weft_status_t weft_token_reason(const weft_token_t *t,
                                         weft_error_t **out);

/**
 * t's effective deadline (WEFT_DEADLINE_NONE when it has none).
 * Returns: WEFT_OK and *out set; WEFT_EINVAL (t or out NULL).
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_token_deadline(const weft_token_t *t,
                                           uint64_t *out);

/**
 * True when t was made by weft_token_create_shielded(); false for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API bool weft_token_is_shielded(const weft_token_t *t);

/**
 * Register fn(arg) to run once when t is cancelled. If t is already
 * cancelled, fn runs now, on this thread, before this call returns.
 * Returns: WEFT_OK and *out set to the registration, which the caller
 * must pass to weft_token_deregister() exactly once, whether or not fn
 * has run; WEFT_EINVAL (t, fn or out NULL); WEFT_ENOMEM. On failure fn
 * never runs and *out is NULL.
 * Thread-safety: any thread holding a reference to t. Blocking: takes t's
 * lock briefly; runs fn when t is already cancelled.
 * Ownership: the registration holds a reference to t until it is
 * deregistered.
 */
WEFT_API weft_status_t weft_token_register(weft_token_t *t, weft_cancel_fn_t fn,
                                           void *arg, weft_cancel_cb_t **out);

/**
 * Remove a registration and free it. When this returns, fn is not running
 * and will never run again, with one exception: called from inside fn
 * itself, it returns at once without waiting (fn is running: the caller).
 * Called from another thread while fn is running, it waits for fn to
 * return. It never deadlocks on weft's own locks; a wait can only hang if
 * fn itself waits for the deregistering thread.
 * Returns: WEFT_OK when fn had not run and now never will; WEFT_EALREADY
 * when fn had already run (or is running on this thread). In both cases
 * cb is freed and must not be used again. WEFT_EINVAL for NULL.
 * Thread-safety: any thread, once per registration.
 * Blocking: waits while fn runs on another thread.
 */
WEFT_API weft_status_t weft_token_deregister(weft_cancel_cb_t *cb);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_CANCEL_H */
