/**
 * @file
 * weft/group.h - task groups (scopes), retries, parallel-for and reduce.
 *
 * A task group is a scope for tasks: spawn children into it, then join it.
 *
 *   - Join waits for every child, then returns WEFT_OK, or the first
 *     failure's status with every failure in weft_group_errors() (first
 *     entry: the trigger), or WEFT_ECANCELED when the group itself was
 *     cancelled (its parent token, its deadline, weft_group_cancel()) and
 *     nothing failed.
 *   - The first failure cancels the group's token, and so every child's
 *     (children run under the group's token) and every group or combinator
 *     made under it: a failure deep in a tree of nested groups cancels the
 *     whole tree. Children that end cancelled because of it are recorded
 *     in the ledger, not reported as failures. A child that ends cancelled
 *     for a reason of its own is not a failure of the group either.
 *   - A group cannot leak: destroying one that was not joined cancels it
 *     and joins it. Every child ends exactly once, its release hook runs
 *     once, and its outcome stays readable until the group is destroyed.
 *   - A concurrency limit (opts.limit) keeps at most k children running;
 *     the others wait inside the group (no worker blocks for them) and
 *     start, in spawn order, as running ones end.
 *
 * A group is used by one "owner" thread (the one that creates, spawns
 * into, joins and destroys it), though children may spawn into their own
 * group too: weft_group_spawn() is safe from any thread until the join
 * has returned.
 */
#ifndef WEFT_GROUP_H
#define WEFT_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/cancel.h>
#include <weft/combine.h>
#include <weft/errgroup.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/export.h>
#include <weft/future.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque task group (scope). */
typedef struct weft_group weft_group_t;

/** Options for weft_group_create(). Zero-initialize. */
typedef struct weft_group_opts {
    /** Parent token (NULL: none): its cancellation cancels the group. Use
     * weft_task_token(self) inside a task to nest under that task. */
    weft_token_t *parent;
    /** Absolute CLOCK_MONOTONIC deadline in ns for the whole group (0:
     * none); passing it cancels the group with a WEFT_EDEADLINE reason. */
    uint64_t deadline_ns;
    /** At most this many children running at once (0: no limit). */
    size_t limit;
    /** Static name, used in the error group's message; not copied. */
    const char *name;
    /** Where the group was made, for the debug-mode report and task dump
     * (weft/debug.h). Fill with WEFT_SPAWN_SITE; NULL/0 when unknown.
     * Not copied (use string literals, as __FILE__ and __func__ are). */
    const char *file;
    int line;         /**< creation site line, 0 when unknown */
    const char *func; /**< creation site function (not copied), or NULL */
} weft_group_opts_t;

/**
 * Make a group on ex. opts may be NULL.
 * Returns: WEFT_OK and *out; WEFT_EINVAL (ex or out NULL); WEFT_ENOMEM.
 * Thread-safety: any thread. Blocking: never.
 * Ownership: the caller owns *out and must destroy it.
 */
WEFT_API weft_status_t weft_group_create(weft_executor_t *ex,
                                         const weft_group_opts_t *opts,
                                         weft_group_t **out);

/**
 * Spawn fn(arg) into g. The child runs under g's token (opts->token must
 * be NULL); opts (may be NULL) gives its name, release hook and spawn
 * site. If g is already cancelled the child is still accepted and ends
 * CANCELLED without running (its release hook runs).
 * Returns: WEFT_OK; WEFT_EINVAL (g or fn NULL, opts->token set);
 * WEFT_ESTATE (g was already joined); WEFT_ESHUTDOWN, WEFT_ENOMEM (the
 * child was refused: it never runs, its release hook ran, and g records
 * nothing). The child's index (for weft_group_child()) is the number of
 * children accepted before it; it is stored in *index when index is not
 * NULL.
 * Thread-safety: any thread, until weft_group_join() has returned.
 * Blocking: never.
 */
WEFT_API weft_status_t weft_group_spawn(weft_group_t *g,
                                        const weft_spawn_opts_t *opts,
                                        weft_fn_t fn, void *arg, size_t *index);

/**
 * Wait for every child of g (helping on a worker), then report:
 * WEFT_OK (nothing failed and g was not cancelled); the first failure's
 * status (see weft_group_errors() for all of them); WEFT_ECANCELED (g was
 * cancelled and nothing failed); WEFT_EINVAL (NULL); WEFT_ESTATE (already
 * joined). Later spawns into g are refused.
 * Thread-safety: the owner thread, once. Blocking: yes.
 */
WEFT_API weft_status_t weft_group_join(weft_group_t *g);

/**
 * Cancel g: its token is cancelled with `reason` (may be NULL), which
 * stops the children that poll it and keeps waiting children from
 * starting. Returns WEFT_OK, WEFT_EALREADY (already cancelled), WEFT_EINVAL.
 * Thread-safety: any thread. Blocking: never (runs token callbacks).
 */
WEFT_API weft_status_t weft_group_cancel(weft_group_t *g, weft_error_t *reason);

/**
 * g's token (borrowed, alive until g is destroyed): pass it as the parent
 * of nested groups and combinators made outside g's children.
 */
WEFT_API weft_token_t *weft_group_token(const weft_group_t *g);

/**
 * Every failure of g's children, as a new reference to an error group
 * (first entry: the failure that triggered the cancellation; then the
 * others in the order they happened). Returns WEFT_OK; WEFT_EINVAL;
 * WEFT_ESTATE (not joined yet). Owner thread, after the join.
 */
WEFT_API weft_status_t weft_group_errors(const weft_group_t *g,
                                         weft_errgroup_t **out);

/** Number of children accepted so far; 0 for NULL. Owner thread. */
WEFT_API size_t weft_group_size(const weft_group_t *g);

/**
 * Ledger entry of child `index` (spawn order). Returns WEFT_OK,
 * WEFT_EINVAL, WEFT_ERANGE. Pointers are borrowed until g is destroyed.
 * Owner thread; entries are final after the join.
 */
WEFT_API weft_status_t weft_group_child(const weft_group_t *g, size_t index,
                                        weft_child_result_t *out);

/**
 * Destroy g. If it was not joined, cancel it (reason: "group destroyed
 * before join") and join it first, so no child outlives it.
 * Returns WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: the owner thread, once. Blocking: yes when not joined.
 */
WEFT_API weft_status_t weft_group_destroy(weft_group_t *g);

/** ---- Retries ----------------------------------------------------------- */

/** Whether a failure is worth another attempt. */
typedef bool (*weft_retry_pred_t)(const weft_error_t *e, void *ctx);

/** Retry policy. Zero-initialize, then set what you need. */
typedef struct weft_retry_opts {
    unsigned int max_attempts;   /**< total attempts, >= 1 (0 means 1) */
    uint64_t initial_delay_ns;   /**< wait before the 2nd attempt */
    uint64_t max_delay_ns;       /**< cap on one wait (0: no cap) */
    double multiplier;           /**< growth per attempt (< 1 means 2.0) */
    double jitter;               /**< 0..1: each wait is scaled by a random
                                   factor in [1 - jitter, 1] */
    uint64_t seed;               /**< jitter seed (0: a fixed default) */
    weft_retry_pred_t retryable; /**< NULL: every failure is retryable */
    void *ctx;                   /**< passed to retryable */
    uint64_t deadline_ns;        /**< absolute; no attempt starts after it */
} weft_retry_opts_t;

/**
 * Run fn(self, arg, result) as the body of the calling task, retrying per
 * policy: after a failure that `retryable` accepts, wait (backoff with
 * jitter; the wait ends early when the task is cancelled) and run it
 * again. Every attempt's error is kept: when the last attempt fails,
 * weft_retry returns its status and, if errors is not NULL, *errors is a
 * new error group holding every attempt's failure in order (release it).
 * Returns: WEFT_OK (an attempt succeeded; earlier failures are still in
 * *errors); the last failure's status; WEFT_ECANCELED (the task was
 * cancelled between attempts); WEFT_ETIMEDOUT (the deadline came before
 * an attempt could start; the previous failures are in *errors);
 * WEFT_EINVAL. Between attempts a worker runs other tasks while it waits
 * (it never sleeps with work queued); such a task runs to its end, so a
 * wait can last longer than its backoff, and the deadline is checked
 * again before each attempt.
 * Thread-safety: call from inside a task, with that task's self.
 * Blocking: yes, for the backoff waits.
 */
WEFT_API weft_status_t weft_retry(weft_task_t *self,
                                  const weft_retry_opts_t *policy, weft_fn_t fn,
                                  void *arg, weft_value_t *result,
                                  weft_errgroup_t **errors);

/** ---- Data-parallel helpers --------------------------------------------- */

/**
 * Body of a parallel-for: process indices [lo, hi). Return WEFT_OK, a
 * failure, or WEFT_ECANCELED after seeing weft_task_is_cancelled(self).
 */
typedef weft_status_t (*weft_range_fn_t)(weft_task_t *self, void *arg,
                                         size_t lo, size_t hi);

/** Options for the data-parallel helpers. Zero-initialize. */
typedef struct weft_for_opts {
    /** Largest chunk one body call gets; 0: automatic (about 8 chunks per
     * worker, at least 1 index). */
    size_t grain;
    /** Token (NULL: none); e.g. weft_task_token(self). Cancelling it stops
     * the loop: no new chunk starts. */
    weft_token_t *token;
} weft_for_opts_t;

/**
 * Run fn over [lo, hi) in chunks of at most `grain` indices, split
 * across the workers on demand: a worker runs its range's chunks in
 * index order and halves the rest (the right half goes to the thief)
 * each time an idle worker asks it for work. The first failing chunk
 * cancels the rest (chunks not started never start). Returns WEFT_OK, the first
 * failure's status (every failure is in *errors when errors is not NULL:
 * a new reference), WEFT_ECANCELED (the token was cancelled and nothing
 * failed), WEFT_EINVAL (ex or fn NULL, lo > hi), WEFT_ENOMEM,
 * WEFT_ESHUTDOWN.
 * Thread-safety: any thread. Blocking: yes; on a worker it helps.
 */
WEFT_API weft_status_t weft_parallel_for(weft_executor_t *ex, size_t lo,
                                         size_t hi, const weft_for_opts_t *opts,
                                         weft_range_fn_t fn, void *arg,
                                         weft_errgroup_t **errors);

/** Body of a parallel-reduce: fold [lo, hi) into *acc (which starts as
 * the identity). */
typedef weft_status_t (*weft_reduce_fn_t)(weft_task_t *self, void *arg,
                                          size_t lo, size_t hi,
                                          weft_value_t *acc);
/** Associative combine of two partial results: *a = *a op b. */
typedef void (*weft_combine_fn_t)(void *arg, weft_value_t *a, weft_value_t b);

/**
 * Parallel reduce over [lo, hi): each chunk folds into a partial result
 * starting from `identity`, partials are combined in index order with
 * `combine` (so a non-commutative but associative combine is fine), and
 * the total is stored in *result on WEFT_OK. Failure and cancellation as
 * weft_parallel_for().
 */
WEFT_API weft_status_t weft_parallel_reduce(
    weft_executor_t *ex, size_t lo, size_t hi, const weft_for_opts_t *opts,
    weft_value_t identity, weft_reduce_fn_t fn, weft_combine_fn_t combine,
    void *arg, weft_value_t *result, weft_errgroup_t **errors);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_GROUP_H */
