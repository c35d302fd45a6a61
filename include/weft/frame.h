/**
 * @file
 * weft/frame.h - fork-join frames: the fastest way to run a call in
 * parallel with its caller.
 *
 * A frame is caller-owned storage (usually a local variable) for one
 * forked call. weft_frame_fork() makes fn(arg) available to other workers
 * and returns at once; the caller goes on with its own work and then calls
 * weft_frame_join(), which returns the call's status and value. If no
 * other worker took the call in between, the join runs it inline on the
 * caller's thread, like a plain function call; if one did, the join helps
 * with other work until the call has ended (it never blocks the thread).
 *
 * Frames are the strict fork-join subset of futures, with none of a
 * future's costs: no object from a pool, no reference count, no atomic
 * read-modify-write on the way in or out when nobody steals. Until a
 * thief asks for work, a forked frame sits in a part of the worker's deque
 * that only the owner touches (Lace's split deque); idle workers ask, and
 * the owner makes the older half of its frames stealable at its next
 * fork. Use a future (weft_spawn()) when the result must outlive the
 * forking call, be awaited by another task or thread, be combined, or be
 * cancelled on its own.
 *
 * Rules (the price of the speed):
 *  - Fork and join only from inside a running task (a future's body or a
 *    frame's body), on that task's thread; self is that task.
 *  - Every forked frame must be joined, exactly once, by the task that
 *    forked it, before that task returns: the frame's storage is the
 *    caller's and a thief may write into it until the join returns. Joins
 *    are cheapest newest first (LIFO), but any order works.
 *  - The code between a fork and its join must not block waiting for an
 *    effect of the forked call (a lock the call releases, a flag it sets):
 *    the call may run only at the join. Waiting through weft (futures,
 *    combinators, groups) is fine: that helps, and may run the frame.
 *
 * Inside a frame's body, self is the frame: weft_task_executor(),
 * weft_task_id(), weft_task_token() and weft_task_is_cancelled() answer
 * for the enclosing future task (a frame shares its cancellation scope),
 * weft_task_antecedent() is NULL, and weft_task_fail() records the
 * failure on the frame, where weft_frame_join() hands it to the joiner.
 *
 * Outcomes are those of futures: succeeded (WEFT_OK), failed (any other
 * code but WEFT_ECANCELED, with an error value) or cancelled
 * (WEFT_ECANCELED: the body returned it, or the frame had not started
 * when a WEFT_SHUTDOWN_CANCEL shutdown began). A frame's failure does not
 * cancel its siblings by itself; the forking task decides (parallel_for,
 * groups and gather do that for you).
 */
#ifndef WEFT_FRAME_H
#define WEFT_FRAME_H

#include <stdint.h>

#include <weft/error.h>
#include <weft/export.h>
#include <weft/future.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Size of weft_frame_t in 64-bit words. */
#define WEFT_FRAME_WORDS 12

/**
 * Storage for one forked call. Its contents are private to weft; declare
 * one (a local variable is the usual place), pass its address to
 * weft_frame_fork() and then to weft_frame_join(), and do not touch it in
 * between. It may be reused after the join returns.
 */
typedef struct weft_frame {
    uint64_t opaque_[WEFT_FRAME_WORDS]; /**< private */
} weft_frame_t;

/**
 * Fork fn(arg) into frame: queue it on the calling worker's deque and
 * return at once. The call's self is the frame (see the file comment).
 * Returns: WEFT_OK; WEFT_EINVAL when self, frame or fn is NULL, or the
 * calling thread is not a worker of self's executor (then fn never runs
 * and frame needs no join). If the deque cannot grow (memory), the frame
 * is kept back instead and runs inline at the join: WEFT_OK either way.
 * Thread-safety: the thread running self, inside self's body.
 * Blocking: never. No allocation, no system call and no atomic
 * read-modify-write unless the deque must grow.
 * Ownership: frame is the caller's; it must stay valid until
 * weft_frame_join() on it has returned.
 */
WEFT_API weft_status_t weft_frame_fork(weft_task_t *self, weft_frame_t *frame,
                                       weft_fn_t fn, void *arg);

/**
 * Wait for the call forked into frame and collect its outcome: run it
 * inline if nobody took it, else help with other work until it ends.
 * Returns the call's status: WEFT_OK (then *value, if value is non-NULL,
 * holds the call's value), WEFT_ECANCELED (the body returned it, or the
 * frame never ran because the executor is cancelling), or the failure
 * code. WEFT_EINVAL when frame is NULL, was not forked from the calling
 * thread, or was already joined (a frame joined twice is detected until
 * it is forked again; one never forked is undefined behaviour).
 * Errors: on a failure or cancellation, *err (if err is non-NULL)
 * receives the error value (the failure, naming the enclosing task, or
 * the cancellation's reason), which the caller then owns and releases
 * with weft_error_release(); with err NULL it is released here. On
 * WEFT_OK, *err is set to NULL.
 * Thread-safety: the thread that forked frame. Blocking: never blocks
 * the thread; it helps (and, with nothing to help with for a while,
 * parks briefly, as weft_future_wait() does on a worker).
 */
WEFT_API weft_status_t weft_frame_join(weft_frame_t *frame,
                                       weft_value_t *value,
                                       weft_error_t **err);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_FRAME_H */
