/**
 * @file
 * weft/combine.h - combinators: futures made of futures.
 *
 * Each combinator takes n child futures and returns one future (the
 * "combined" future) that ends according to the combinator's rule. The
 * rules, as docs/semantics.md tabulates them:
 *
 *   weft_gather          all succeed: SUCCEEDED, values in input order.
 *                        Fail-fast: the first child that fails (or ends
 *                        cancelled without the gather asking for it)
 *                        becomes the trigger; every sibling still running
 *                        is cancelled at once with a reason that wraps the
 *                        trigger's error; the gather ends FAILED as soon
 *                        as every sibling has stopped, never earlier.
 *   weft_gather_settled  nothing is cancelled; ends SUCCEEDED when every
 *                        child has ended, whatever their outcomes.
 *   weft_any             ends with the first child to end, whatever its
 *                        outcome: SUCCEEDED with that child's value, or
 *                        FAILED (a child cancelled from elsewhere counts
 *                        as a failure: the combined future is CANCELLED
 *                        only when it was cancelled itself); cancels
 *                        nothing.
 *   weft_first_success   ends SUCCEEDED with the first child value, after
 *                        the others (cancelled at once) have stopped; if
 *                        every child fails or is cancelled, FAILED with
 *                        the first failure (in the order they happened).
 *   weft_quorum          SUCCEEDED once k children have succeeded (the
 *                        rest cancelled); FAILED once k can no longer be
 *                        reached (the rest cancelled), with the first
 *                        failure.
 *
 * The caller's token and deadline (weft_combine_opts_t): when the token is
 * cancelled or the deadline passes before the combinator has decided,
 * every child still running is cancelled with that reason and the
 * combined future ends CANCELLED once they have stopped (its error is the
 * token's reason, of code WEFT_EDEADLINE for a deadline). Cancelling the
 * combined future itself (weft_future_cancel()) does the same.
 *
 * Nothing is dropped. When a combined future fails, weft_future_error()
 * is the trigger: the first failure (for gather, the one that set off the
 * fail-fast). Its status is the child's own status; for a child that was
 * cancelled from elsewhere, the trigger is an error of code WEFT_EFAILED
 * caused by the child's reason. weft_combine_errors() returns an error
 * group holding every failure: its first entry is the trigger, the others
 * follow in the order they happened. Children cancelled by the
 * combinator's own fail-fast are not failures: they are recorded in the
 * outcome ledger, with a reason whose cause is the trigger.
 *
 * Outcome ledger: after the combined future has ended, every child's
 * outcome is readable in input order with weft_combine_child(): value,
 * failure, cancellation (with its reason) or "never started" (cancelled
 * before its body ran). weft_any() ends before the others; their entries
 * read PENDING until they end. The combined future keeps every child
 * alive until the combined future itself is freed.
 *
 * Children may belong to any executor; the combined future belongs to ex
 * (awaiting it on one of ex's workers helps, as for any future). A child
 * must not be the combined future of a combinator it is a child of (no
 * cycles; that could never end).
 *
 * Cost: one allocation per combinator (its ledger, about 28 bytes per
 * child) and one registration (two atomic operations) per child; no task
 * per child: the rule runs inline on the thread that ends each child.
 */
#ifndef WEFT_COMBINE_H
#define WEFT_COMBINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/cancel.h>
#include <weft/errgroup.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/export.h>
#include <weft/future.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Options for every combinator. Zero-initialize, then set what you need. */
typedef struct weft_combine_opts {
    /** The caller's token (NULL: none). Its cancellation (and its own
     * deadline) cancels the children still running and ends the combined
     * future CANCELLED. The combinator holds a reference until it ends. */
    weft_token_t *token;
    /** Absolute CLOCK_MONOTONIC deadline in ns (weft_clock_now_ns()); 0 for
     * none. Passing it acts like a cancellation with a WEFT_EDEADLINE
     * reason. */
    uint64_t deadline_ns;
    /** Static name of the combined future (errors report it); not copied. */
    const char *name;
    /** true: the combinator takes over the caller's reference to each
     * child (also when it fails: the references are then released), so
     * the caller does not release them. false: it takes its own. */
    bool adopt;
    /** Where the combinator was called, for the debug-mode report and
     * task dump (weft/debug.h), as for a group (weft_group_opts_t). Fill
     * with WEFT_SPAWN_SITE; NULL/0 when unknown. Not copied (use string
     * literals, as __FILE__ and __func__ are). */
    const char *file;
    int line;         /**< call site line, 0 when unknown */
    const char *func; /**< call site function (not copied), or NULL */
} weft_combine_opts_t;

/**
 * The combinators. Each makes the combined future of children[0..n) on ex
 * and stores it in *out.
 * Returns: WEFT_OK; WEFT_EINVAL (ex or out NULL, children NULL with n > 0,
 * a NULL child, n above UINT32_MAX, k out of 1..n for weft_quorum, or
 * n == 0 for weft_any and weft_first_success, which could never end);
 * WEFT_ENOMEM. A combined future is not a task: an executor that is
 * shutting down still accepts it. On failure *out is NULL and no child
 * was touched, except that with opts->adopt every child reference was
 * released. With n == 0, weft_gather and weft_gather_settled end
 * SUCCEEDED at once.
 * Thread-safety: any thread holding references to the children.
 * Blocking: never. Children that have already ended are processed before
 * the call returns (a fail-fast may cancel siblings from this thread).
 * Ownership: the caller owns one reference to *out.
 */
WEFT_API weft_status_t weft_gather(weft_executor_t *ex,
                                   weft_future_t *const *children, size_t n,
                                   const weft_combine_opts_t *opts,
                                   weft_future_t **out);
/** weft_gather_settled(): see weft_gather() for the contract and the file
 * comment for the rule (waits for all, cancels nothing). */
WEFT_API weft_status_t weft_gather_settled(weft_executor_t *ex,
                                           weft_future_t *const *children,
                                           size_t n,
                                           const weft_combine_opts_t *opts,
                                           weft_future_t **out);
/** weft_any(): see weft_gather() for the contract and the file comment
 * for the rule (the first child to end decides). */
WEFT_API weft_status_t weft_any(weft_executor_t *ex,
                                weft_future_t *const *children, size_t n,
                                const weft_combine_opts_t *opts,
                                weft_future_t **out);
/** weft_first_success(): see weft_gather() for the contract and the file
 * comment for the rule (first value wins, the rest are cancelled). */
WEFT_API weft_status_t weft_first_success(weft_executor_t *ex,
                                          weft_future_t *const *children,
                                          size_t n,
                                          const weft_combine_opts_t *opts,
                                          weft_future_t **out);
/** weft_quorum(): see weft_gather() for the contract and the file comment
 * for the rule (k successes win, the rest are cancelled). */
WEFT_API weft_status_t weft_quorum(weft_executor_t *ex,
                                   weft_future_t *const *children, size_t n,
                                   size_t k, const weft_combine_opts_t *opts,
                                   weft_future_t **out);

/** ---- Bulk gathers: the indices of one function ------------------------ */

/**
 * Body of a bulk gather: index i's work. Store the index's value in
 * *value (it starts zeroed) and return WEFT_OK; or fail (a failure code,
 * best with weft_task_fail(self, ...), whose error names the index), or
 * return WEFT_ECANCELED after seeing weft_task_is_cancelled(self).
 * self is the piece of the gather that runs the index (a task or one of
 * its frames), shared with the other indices that piece runs: its token
 * (weft_task_token()) is the piece's, and it is cancelled with the
 * gather.
 */
typedef weft_status_t (*weft_each_fn_t)(weft_task_t *self, void *arg,
                                        size_t i, weft_value_t *value);

/**
 * Gather over the indices 0..n-1 of one function: index i plays child i
 * of weft_gather() (fail-fast) or weft_gather_settled() (waits for all),
 * with the same rules, ledger and errors, but no future per child. The
 * combined future, made on ex, is stored in *out.
 *
 * How it runs: fn(self, arg, i, &value) is called once for every index
 * that starts, on ex's workers. The range is cut into one piece (a task)
 * per worker; each piece runs its indices in increasing order and halves
 * what it has left, as a fork-join frame, only when an idle worker asks
 * for work (lazy binary splitting, like weft_parallel_for() with grain
 * 1). An index that has not started when the gather is decided (fail-fast,
 * the caller's token or deadline, weft_future_cancel() on the combined
 * future) never starts: it ends CANCELLED, never started, cancelled by the
 * combinator. Running indices see weft_task_is_cancelled(self) turn true.
 * An index body may make and wait for other combinators, nested bulk
 * gathers included. If the executor is shut down in cancel mode, pieces
 * that never run end their indices CANCELLED, never started (a
 * cancellation from elsewhere: for weft_gather_each() the first such
 * range is the trigger).
 *
 * The ledger (weft_combine_size(), weft_combine_child(),
 * weft_combine_values(), weft_combine_errors(), weft_combine_decider())
 * works on the combined future as on a gather's, index i for child i,
 * with two differences: an entry's `future` is NULL, and every entry
 * reads PENDING (nothing else set) until the combined future has ended.
 * The value of the combined future is n for weft_gather_each() and the
 * number of indices that succeeded for weft_gather_each_settled(), as for
 * the gathers. A failure's error names the index: its task name is
 * "NAME[i]", NAME being opts->name or "gather_each" /
 * "gather_each_settled" (an error passed in with weft_task_fail_with()
 * is kept as it is). A range of indices cancelled from elsewhere
 * without starting (executor shutdown) is one entry of the error group,
 * keyed by its first index. If memory runs out while a failure is
 * recorded, that index's ledger error is NULL and weft_combine_errors()
 * answers WEFT_ENOMEM; the outcomes and the trigger are still exact.
 *
 * Memory: one allocation per call (header, one piece per worker, and per
 * index an 8-byte value and a status byte), none per index; a failed or
 * separately cancelled index adds one entry to a side table. ex keeps the
 * block of its last large bulk gather (up to 16 MiB) for the next one,
 * and frees it at weft_executor_destroy().
 *
 * Returns: WEFT_OK; WEFT_EINVAL (ex, fn or out NULL, or n above
 * UINT32_MAX - 1); WEFT_ENOMEM (nothing was called, nothing leaked). As
 * for the gathers, an executor that is shutting down still accepts the
 * call, and its indices then end CANCELLED without starting. With n == 0
 * the combined future ends SUCCEEDED at once (value 0) and fn is never
 * called. On failure *out is NULL. opts->adopt is ignored.
 * Thread-safety: any thread; fn and arg must stay usable until the
 * combined future has ended.
 * Blocking: never (the indices run on ex's workers; wait on *out).
 * Ownership: the caller owns one reference to *out.
 */
WEFT_API weft_status_t weft_gather_each(weft_executor_t *ex, size_t n,
                                        weft_each_fn_t fn, void *arg,
                                        const weft_combine_opts_t *opts,
                                        weft_future_t **out);

/** weft_gather_each_settled(): weft_gather_each() with the rule of
 * weft_gather_settled(): nothing is cancelled by a failure, every index
 * runs (unless the caller cancels), and the combined future ends
 * SUCCEEDED with the number of indices that succeeded. */
WEFT_API weft_status_t weft_gather_each_settled(weft_executor_t *ex, size_t n,
                                                weft_each_fn_t fn, void *arg,
                                                const weft_combine_opts_t *opts,
                                                weft_future_t **out);

/** ---- The outcome ledger ---------------------------------------------- */

/** One child's entry, as weft_combine_child() reports it. */
typedef struct weft_child_result {
    weft_outcome_t outcome; /**< PENDING while it has not ended */
    bool started;           /**< its body was entered (false: never ran) */
    /** Cancelled by this combinator (fail-fast, first success, quorum or
     * the caller's token), rather than from elsewhere. */
    bool cancelled_by_combinator;
    weft_value_t value;    /**< SUCCEEDED: the value; else zero */
    weft_error_t *error;   /**< FAILED: the failure; CANCELLED: the reason;
                               else NULL. Borrowed from the child. */
    weft_future_t *future; /**< the child (borrowed); NULL for an index
                               of a bulk gather */
} weft_child_result_t;

/**
 * Number of children of a combined future; 0 for NULL or for a future
 * that is not a combined one. Any thread holding a reference. Never blocks.
 */
WEFT_API size_t weft_combine_size(const weft_future_t *combined);

/**
 * Entry `index` (input order) of the ledger of a combined future.
 * Returns: WEFT_OK; WEFT_EINVAL (NULL, not a combined future, or out
 * NULL); WEFT_ERANGE (index >= size).
 * Ownership: the pointers in *out are borrowed from combined and valid
 * while the caller holds its reference to it.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_combine_child(const weft_future_t *combined,
                                          size_t index,
                                          weft_child_result_t *out);

/**
 * Copy the children's values, in input order, into out[0..n) (n at most
 * the size; entries of children that did not succeed are zero).
 * Returns: WEFT_OK; WEFT_EINVAL (NULL, not combined, n > size);
 * WEFT_ESTATE (combined has not ended).
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_combine_values(const weft_future_t *combined,
                                           weft_value_t *out, size_t n);

/**
 * Every failure of the children, as an error group whose first entry is
 * the trigger (see the file comment), each keyed by the order in which
 * it happened; empty when nothing failed. The group's message names the
 * combinator and counts the outcomes.
 * For weft_any(), which ends before its other children, the group holds
 * the failures so far until every child has ended.
 * Returns: WEFT_OK and *out (a new reference: release it);
 * WEFT_EINVAL (NULL, not combined, out NULL); WEFT_ESTATE (not ended).
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_combine_errors(const weft_future_t *combined,
                                           weft_errgroup_t **out);

/**
 * Index of the child that decided the outcome: the trigger of a failed
 * gather, the winner of weft_any() / weft_first_success(), the child that
 * completed a quorum; SIZE_MAX when none did (all succeeded, settled, or
 * cancelled by the caller) or for a future that is not combined.
 * Thread-safety: any thread holding a reference, after it ended.
 */
WEFT_API size_t weft_combine_decider(const weft_future_t *combined);

/** ---- Waiting on several futures --------------------------------------- */

/** When weft_wait() returns. */
typedef enum weft_wait_mode {
    WEFT_WAIT_FIRST_COMPLETED = 1, /* one child has ended */
    WEFT_WAIT_FIRST_FAILURE = 2,   /* one child failed or was cancelled,
                                      or all have ended */
    WEFT_WAIT_ALL_COMPLETED = 3    /* every child has ended */
} weft_wait_mode_t;

/**
 * Wait until the condition of `mode` holds over children[0..n), the
 * token (may be NULL) is cancelled, or the absolute deadline_ns (0: none)
 * passes. Cancels nothing, ever. Then report which children had ended:
 * done[0..*ndone) and pending[0..*npending) receive their indices in
 * input order (done/pending may be NULL when not wanted; each must have
 * room for n; ndone/npending may be NULL).
 * Returns: WEFT_OK (the condition holds); WEFT_ETIMEDOUT;
 * WEFT_EINTERRUPTED (the token); WEFT_EINVAL (children NULL with n > 0, a
 * NULL child, a bad mode); WEFT_ENOMEM. With n == 0 it returns WEFT_OK at
 * once. The sets are filled for every return except WEFT_EINVAL.
 * Thread-safety: any thread holding references to the children.
 * Blocking: yes; on a worker it helps instead of blocking the thread.
 * Ownership: the children stay owned by the caller.
 */
WEFT_API weft_status_t weft_wait(weft_future_t *const *children, size_t n,
                                 weft_wait_mode_t mode, weft_token_t *token,
                                 uint64_t deadline_ns, size_t *done,
                                 size_t *ndone, size_t *pending,
                                 size_t *npending);

/** Iterator over futures in completion order. */
typedef struct weft_as_completed weft_as_completed_t;

/**
 * Start iterating over children[0..n) in the order they end. The
 * iterator takes its own references to the children.
 * Returns: WEFT_OK and *out; WEFT_EINVAL (out NULL, children NULL with
 * n > 0, a NULL child, n above UINT32_MAX); WEFT_ENOMEM.
 * Thread-safety: any thread. Blocking: never.
 * Ownership: the caller owns *out; free it with
 * weft_as_completed_destroy().
 */
WEFT_API weft_status_t weft_as_completed_create(weft_future_t *const *children,
                                                size_t n,
                                                weft_as_completed_t **out);

/**
 * Wait for the next child to end and store its input index in *index.
 * Returns: WEFT_OK; WEFT_EEXHAUSTED (every child was already returned);
 * WEFT_ETIMEDOUT (deadline_ns, absolute, 0 for none, passed);
 * WEFT_EINTERRUPTED (token, may be NULL, cancelled); WEFT_EINVAL (NULL
 * argument); WEFT_ENOMEM. After a timeout or an interruption the
 * iteration may go on with another call.
 * Thread-safety: one thread at a time per iterator. Blocking: yes; on a
 * worker it helps.
 */
WEFT_API weft_status_t weft_as_completed_next(weft_as_completed_t *it,
                                              weft_token_t *token,
                                              uint64_t deadline_ns,
                                              size_t *index);

/**
 * The child at input index `index` (borrowed; valid until the iterator is
 * destroyed); NULL for a bad index or NULL iterator. Never blocks.
 */
WEFT_API weft_future_t *weft_as_completed_future(const weft_as_completed_t *it,
                                                 size_t index);

/**
 * Free the iterator and release its references to the children (those
 * still running go on running). Returns WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: the iterating thread, once. Blocking: never.
 */
WEFT_API weft_status_t weft_as_completed_destroy(weft_as_completed_t *it);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_COMBINE_H */
