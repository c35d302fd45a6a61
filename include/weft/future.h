/**
 * @file
 * weft/future.h - tasks and the futures they return.
 *
 * A task is a function and an argument. Spawning it returns a future, a
 * reference-counted handle that reaches exactly one terminal outcome
 * exactly once:
 *
 *   WEFT_OUTCOME_SUCCEEDED  the function returned WEFT_OK; the value is set
 *   WEFT_OUTCOME_FAILED     it returned any other status except
 *                           WEFT_ECANCELED; that status is the failure
 *   WEFT_OUTCOME_CANCELLED  it returned WEFT_ECANCELED, or it never ran
 *                           because cancellation was requested first (for
 *                           example by a WEFT_SHUTDOWN_CANCEL shutdown)
 *
 * Cancelled is never reported as failed, nor failed as cancelled. A
 * failed future carries an error value (weft_future_error()) naming the
 * task that produced it and where it was spawned; a cancelled one carries
 * the reason for the cancellation (the token's reason, a deadline, or the
 * executor's shutdown).
 *
 * Cancellation is cooperative. A task spawned with a token (see
 * weft_spawn_opts_t) that is cancelled before the task starts never runs:
 * it ends CANCELLED with the token's reason and its release hook runs. A
 * running task polls weft_task_is_cancelled(self) and returns
 * WEFT_ECANCELED to end cancelled; if it returns a failure instead it has
 * failed. Once weft_token_cancel() has returned, each worker starts at
 * most one more body under that token (one that already passed its check).
 *
 * Awaiting a future on one of the executor's workers never blocks the
 * thread: if the task has not started and sits in the waiter's own deque,
 * the waiter runs it inline; otherwise it helps by running other work,
 * preferring the deque of the worker that stole the awaited task
 * (leapfrogging), and only parks when there is nothing to help with.
 * Awaiting from any other thread parks that thread.
 */
#ifndef WEFT_FUTURE_H
#define WEFT_FUTURE_H

#include <stdbool.h>
#include <stdint.h>

#include <weft/cancel.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque future handle. */
typedef struct weft_future weft_future_t;

/** The running task, as seen from inside its function. Valid only during
 * that call. */
typedef struct weft_task weft_task_t;

/** A task's result: at least a 64-bit integer or a pointer, stored inline
 * in the future (no allocation). */
typedef union weft_value {
    int64_t i64;  /**< signed integer result */
    uint64_t u64; /**< unsigned integer result */
    double f64;   /**< floating-point result */
    void *ptr;    /**< pointer result */
} weft_value_t;

/**
 * A task body. Return WEFT_OK after storing the result in *result (it
 * starts zeroed), WEFT_ECANCELED after observing cancellation, or any
 * other status to fail. arg is the pointer given at spawn.
 */
typedef weft_status_t (*weft_fn_t)(weft_task_t *self, void *arg,
                                   weft_value_t *result);

/** Release hook for a task's argument: runs exactly once per accepted or
 * refused spawn, whether or not the body ever runs. */
typedef void (*weft_release_fn_t)(void *arg);

/** Terminal outcome of a future, or PENDING while it has not ended. */
typedef enum weft_outcome {
    WEFT_OUTCOME_PENDING = 0,
    WEFT_OUTCOME_SUCCEEDED = 1,
    WEFT_OUTCOME_FAILED = 2,
    WEFT_OUTCOME_CANCELLED = 3
} weft_outcome_t;

/**
 * Name of an outcome ("pending", "succeeded", "failed", "cancelled").
 * Returns a static string, "invalid" for other values. Any thread.
 */
WEFT_API const char *weft_outcome_name(weft_outcome_t outcome);

/** Options for weft_spawn_ex(). Zero-initialize, then set what you need. */
typedef struct weft_spawn_opts {
    weft_release_fn_t release; /**< NULL: none */
    const char *name;          /**< static string or NULL; not copied */
    /** Cancellation token of the task, or NULL. The task holds a reference
     * until it ends; cancelled before it starts, the task never runs. */
    weft_token_t *token;
    /** Spawn site, reported by the task's errors. Fill with
     * WEFT_SPAWN_SITE; NULL/0 when unknown. file and func are not
     * copied (use string literals, as __FILE__ and __func__ are). */
    const char *file;
    int line;         /**< spawn site line, 0 when unknown */
    const char *func; /**< spawn site function (not copied), or NULL */
} weft_spawn_opts_t;

/** Designated-initializer fragment recording the current source position:
 * weft_spawn_opts_t o = { .name = "fetch", WEFT_SPAWN_SITE }; */
#define WEFT_SPAWN_SITE .file = __FILE__, .line = __LINE__, .func = __func__

/**
 * Spawn fn(arg) on ex and return its future in *out.
 * From one of ex's workers the task goes on that worker's deque (no
 * allocation, no system call, no locked instruction on the fast path);
 * from any other thread it goes through ex's injection queue.
 * out may be NULL to detach the task: it still runs, and its future is
 * freed when it ends.
 * Returns: WEFT_OK; WEFT_EINVAL (ex or fn NULL); WEFT_ESHUTDOWN (from a
 * thread that is not a worker of ex, after weft_executor_shutdown() was
 * called); WEFT_ENOMEM. On failure the task never runs and *out is NULL.
 * Thread-safety: any thread. Blocking: never (an injection takes a mutex).
 * Ownership: the caller owns one reference to *out; release it with
 * weft_future_release() or weft_join().
 */
WEFT_API weft_status_t weft_spawn(weft_executor_t *ex, weft_fn_t fn, void *arg,
                                  weft_future_t **out);

/**
 * weft_spawn() with options. opts may be NULL. If opts->release is set it
 * runs exactly once: after the body (or instead of it, when the task is
 * cancelled before it starts), or before this call returns when the spawn
 * is refused. Returns and thread-safety as weft_spawn().
 */
WEFT_API weft_status_t weft_spawn_ex(weft_executor_t *ex,
                                     const weft_spawn_opts_t *opts,
                                     weft_fn_t fn, void *arg,
                                     weft_future_t **out);

/**
 * Wait until f has ended and return the task's status: WEFT_OK when it
 * succeeded, its failure status when it failed, WEFT_ECANCELED when it was
 * cancelled; WEFT_EINVAL for NULL. On a worker of f's executor it helps
 * (see the file comment); elsewhere it parks.
 * Thread-safety: any thread holding a reference. Blocking: yes.
 * Ownership: f stays owned by the caller.
 */
WEFT_API weft_status_t weft_future_wait(weft_future_t *f);

/**
 * weft_future_wait() with a deadline: an absolute CLOCK_MONOTONIC time in
 * nanoseconds (see weft_clock_now_ns()). Returns WEFT_ETIMEDOUT if f has
 * not ended by then; f goes on running.
 * Thread-safety and blocking as weft_future_wait().
 */
WEFT_API weft_status_t weft_future_wait_until(weft_future_t *f,
                                              uint64_t deadline_ns);

/**
 * weft_future_wait() that gives up early: when token (may be NULL) is
 * cancelled, including by its deadline, it returns WEFT_EINTERRUPTED; when
 * the absolute CLOCK_MONOTONIC time deadline_ns (0: none) passes, it
 * returns WEFT_ETIMEDOUT. In both cases f goes on running (unless it was
 * spawned with the same token) and stays owned by the caller. Otherwise it
 * returns f's status as weft_future_wait() does. These two codes never
 * describe f itself: a task that was cancelled yields WEFT_ECANCELED.
 * Thread-safety: any thread holding a reference. Blocking: yes, bounded
 * by the token and the deadline. A worker that waits may run f inline
 * when f is in its own deque; it returns once that run ends.
 */
WEFT_API weft_status_t weft_future_wait_for(weft_future_t *f,
                                            weft_token_t *token,
                                            uint64_t deadline_ns);

/**
 * The error of an ended future: for FAILED, the failure (code, message,
 * producing task's name and id, spawn site, cause); for CANCELLED, the
 * reason (for example the token's reason, an error of code WEFT_EDEADLINE,
 * or one of code WEFT_ESHUTDOWN), even if the body recorded a failure
 * before it saw the cancellation. NULL while pending, when it succeeded,
 * or for NULL. If memory ran out while the error was being made, this is
 * the static out-of-memory error (weft_future_status() still gives the
 * task's own code).
 * Ownership: borrowed; valid while the caller holds its reference to f
 * (retain it with weft_error_retain() to keep it longer).
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_error_t *weft_future_error(const weft_future_t *f);

/**
 * Wait for f, store its value in *value (may be NULL; set only when it
 * succeeded) and release the caller's reference.
 * Returns: as weft_future_wait(). f must not be used afterwards.
 * Thread-safety: any thread holding the reference it gives up.
 * Blocking: yes. This is the fork-join fast path: when f's task is still
 * in the caller's own deque it runs inline, with no locked instruction
 * beyond the deque pop.
 */
WEFT_API weft_status_t weft_join(weft_future_t *f, weft_value_t *value);

/**
 * True when f has ended. Never blocks; any thread holding a reference.
 * Returns false for NULL.
 */
WEFT_API bool weft_future_is_done(const weft_future_t *f);

/**
 * Outcome of f now: PENDING until it ends. Never blocks; any thread
 * holding a reference. PENDING for NULL.
 */
WEFT_API weft_outcome_t weft_future_outcome(const weft_future_t *f);

/**
 * The task's status once ended (as weft_future_wait() returns it), or
 * WEFT_EAGAIN while pending; WEFT_EINVAL for NULL. Never blocks.
 */
WEFT_API weft_status_t weft_future_status(const weft_future_t *f);

/**
 * Read the value of a future that succeeded.
 * Returns: WEFT_OK and *out set; WEFT_EAGAIN (pending); the failure
 * status (failed); WEFT_ECANCELED (cancelled); WEFT_EINVAL (NULL args).
 * Never blocks; any thread holding a reference.
 */
WEFT_API weft_status_t weft_future_value(const weft_future_t *f,
                                         weft_value_t *out);

/**
 * Whether f's body was entered. Once f has ended this tells a task that
 * ended CANCELLED without running (false: cancelled before it started)
 * from one whose body ran and returned WEFT_ECANCELED (true). While f is
 * pending it is a hint. False for NULL. Never blocks; any thread holding a
 * reference.
 */
WEFT_API bool weft_future_has_started(const weft_future_t *f);

/**
 * Take another reference to f (to hand it to another thread).
 * Returns WEFT_OK; WEFT_EINVAL for NULL. Any thread holding a reference.
 */
WEFT_API weft_status_t weft_future_retain(weft_future_t *f);

/**
 * Give up one reference. The future is freed once the last reference is
 * released and the task has ended; releasing before the task ends
 * detaches it (it still runs). Releasing more references than were taken
 * is undefined behaviour (caught by an assertion in debug builds).
 * Returns WEFT_OK; WEFT_EINVAL for NULL. Any thread. Never blocks.
 */
WEFT_API weft_status_t weft_future_release(weft_future_t *f);

/**
 * Ask f to stop. A task that has not started never runs: it ends
 * CANCELLED with `reason` (its release hook still runs). A running task
 * sees weft_task_is_cancelled() become true, and its own token
 * (weft_task_token()) is cancelled, which reaches every group and
 * combinator made under it; it ends CANCELLED if it returns
 * WEFT_ECANCELED. A combined future (weft/combine.h, weft/group.h) passes
 * the request to its children. reason (may be NULL: a generic
 * cancellation error) is retained; only the first request's reason is
 * kept.
 * Returns: WEFT_OK (request recorded); WEFT_EALREADY (f had already ended,
 * or was already asked to stop; nothing changed); WEFT_EINVAL (NULL).
 * Thread-safety: any thread holding a reference. Blocking: never (it may
 * run token callbacks, see weft_token_cancel()).
 */
WEFT_API weft_status_t weft_future_cancel(weft_future_t *f,
                                          weft_error_t *reason);

/** Name given at spawn (NULL if none). Borrowed for the future's life. */
WEFT_API const char *weft_future_name(const weft_future_t *f);

/** Executor-unique, nonzero id of the task; 0 for NULL. */
WEFT_API uint64_t weft_future_id(const weft_future_t *f);

/**
 * Register a continuation: when f ends (whatever its outcome), fn(arg)
 * runs once as a new task on f's executor. Inside fn,
 * weft_task_antecedent(self) returns f. If f has already ended the
 * continuation is scheduled at once. The continuation's own future is
 * returned in *out (NULL to detach it).
 * Returns: WEFT_OK; WEFT_EINVAL (f or fn NULL); WEFT_ENOMEM. On failure
 * fn never runs. A continuation that cannot be queued when f ends (the
 * executor is shut down and f ended on a thread that is not one of its
 * workers, or memory ran out) ends CANCELLED without running, with reason
 * WEFT_ESHUTDOWN or WEFT_ENOMEM; its future is still returned in *out.
 * Thread-safety: any thread holding a reference to f. Blocking: never.
 * Ownership: the continuation holds its own reference to f until it ends.
 */
WEFT_API weft_status_t weft_future_then(weft_future_t *f, weft_fn_t fn,
                                        void *arg, weft_future_t **out);

/**
 * Spawn fn(arg) on ex, wait for it and store its value: the usual way to
 * enter an executor from main(). Returns as weft_join(), or a status from
 * weft_spawn(). Thread-safety: any thread. Blocking: yes.
 */
WEFT_API weft_status_t weft_executor_run(weft_executor_t *ex, weft_fn_t fn,
                                         void *arg, weft_value_t *value);

/* ---- Inside a task ---------------------------------------------------- */

/** Executor the task runs on. Valid during the task's call. */
WEFT_API weft_executor_t *weft_task_executor(const weft_task_t *self);

/** For a continuation: the future it continues (borrowed; alive while the
 * continuation runs). NULL for other tasks. */
WEFT_API weft_future_t *weft_task_antecedent(const weft_task_t *self);

/** Executor-unique, nonzero id of the running task. */
WEFT_API uint64_t weft_task_id(const weft_task_t *self);

/**
 * The running task's own cancellation token: a child of the token it was
 * spawned with (if any), cancelled when that one is or when the task's
 * future is cancelled (weft_future_cancel(), for example by a combinator's
 * fail-fast), in both cases by the time the cancelling call returns
 * (weft_task_is_cancelled() may turn true a moment earlier). Pass it as the parent token of groups and combinators made
 * inside the task, so that cancelling the task cancels the whole tree
 * below it. Made on first use (one allocation); if memory runs out it
 * returns the spawn token instead (which may be NULL).
 * Ownership: borrowed; alive while the task runs (retain it to keep it).
 * Thread-safety: the task's own thread, during the task's call.
 */
WEFT_API weft_token_t *weft_task_token(weft_task_t *self);

/**
 * Whether the task should stop: its spawn token is cancelled (or its
 * deadline passed), or its future was cancelled (weft_future_cancel()).
 * Two relaxed loads when nothing is cancelled; false for NULL.
 * Thread-safety: any thread while the task runs.
 */
WEFT_API bool weft_task_is_cancelled(const weft_task_t *self);

/**
 * Record why the running task fails and return code, so that a body can
 * end with `return weft_task_fail(self, WEFT_EUSER, "no record %d", id);`.
 * The error records code, the formatted message, the task's name and id
 * and its spawn site; it replaces one recorded before. code must be a
 * positive failure code other than WEFT_ECANCELED; otherwise nothing is
 * recorded and WEFT_EINVAL is returned. (A body that returns a code <= 0
 * other than WEFT_OK still fails, with an error of code WEFT_EINVAL that
 * says so.) If memory runs out, the static
 * out-of-memory error is recorded instead and code is still returned.
 * Thread-safety: only from inside the task's own body.
 */
WEFT_API weft_status_t weft_task_fail(weft_task_t *self, int code,
                                      const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Like weft_task_fail() with an existing error, recorded as is (the task
 * takes its own reference; the caller keeps its). err keeps its own
 * origin, so propagating a child's failure names the child; to add this
 * task as context, wrap it first (weft_error_wrap) and record the wrapper.
 * Returns weft_error_status(err); WEFT_EINVAL for NULL arguments or when
 * err's code is <= 0 or WEFT_ECANCELED.
 */
WEFT_API weft_status_t weft_task_fail_with(weft_task_t *self,
                                           weft_error_t *err);

/** Current CLOCK_MONOTONIC time in nanoseconds. Any thread. */
WEFT_API uint64_t weft_clock_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_FUTURE_H */
