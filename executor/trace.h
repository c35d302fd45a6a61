/*
 * trace.h - task trace lanes and the hooks the run paths call (internal).
 *
 * The public API is include/weft/trace.h; trace.c holds the protocol and
 * its invariants. A lane is where one thread's events go: each worker
 * embeds one (struct weft__worker.trace), and the executor embeds one
 * for threads that are not workers (struct weft__trace_ctl.outside).
 *
 * The run paths in future.c and frame.c call a task's body (a frame's,
 * off its join) through weft__trace_body() and report a task that ends
 * without running through weft__trace_ended_unrun(). With no trace
 * recording, each is one relaxed load of lane->buf and a predictable
 * branch (in front of the body's call for the first); everything else is
 * out of line in trace.c.
 */
#ifndef WEFT_EXECUTOR_TRACE_H
#define WEFT_EXECUTOR_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include <weft/status.h>

#include "executor/future.h"
#include "primitives/atomics.h"

struct weft_executor;
struct weft__worker;
struct weft__trace_buf;
struct weft__trace_session;

/* One lane: where one worker's (or the outside threads') events go. */
struct weft__trace_lane {
    uint32_t lock;               /* 1 while held; CAS by the recording
                                    thread and by begin/end (trace.c) */
    struct weft__trace_buf *buf; /* the buffer while a trace records,
                                    else NULL; stored by begin/end under
                                    lock, read relaxed as a hint */
};

/* An executor's trace state (struct weft_executor.trace). */
struct weft__trace_ctl {
    uint32_t op; /* 1 while a trace API call runs on the executor: CAS */
    struct weft__trace_session *session; /* the current or last trace;
                                            read and written under op */
    struct weft__trace_lane outside;     /* threads that are not workers */
};

/* The out-of-line half of weft__trace_body(): time and record the body. */
weft_status_t weft__trace_body_slow(struct weft__trace_lane *lane,
                                    struct weft_future *f);

/*
 * Run f's body (what the run paths would call directly) and, while a
 * trace records, record it on lane with its outcome. f may be a frame
 * (a struct weft__frame shares the hot line: fn, arg, value) that runs
 * off its join (weft__frame_run()): its event carries its enclosing
 * task's id. With no trace recording this is one relaxed load of a lane
 * field, one predictable branch, and the body's call (a tail call where
 * the caller's was).
 * Thread-safety: the lane's owner, with f taken for running.
 */
static inline weft_status_t
weft__trace_body(struct weft__trace_lane *lane, struct weft_future *f)
{
    /* Relaxed: a hint only; weft__trace_body_slow() reads it again under
     * the lane lock, so a stale view at most misses or drops one event. */
    if (__builtin_expect(
            weft__load_relaxed_ptr((void *const *)&lane->buf) == NULL, 1)) {
        return f->fn((weft_task_t *)f, f->arg, &f->value);
    }
    return weft__trace_body_slow(lane, f);
}

void weft__trace_ended_unrun_slow(struct weft__trace_lane *lane, bool shared,
                                  struct weft_future *f);

/*
 * Record f, which ends cancelled without its body running (a cancelled
 * token, a cancelling shutdown, or never queued), as a zero-length span
 * on lane: a worker's own (shared false: the lock is only tried) or the
 * executor's outside lane (shared true: a short spin). Call before f's
 * outcome is published. One relaxed load and a predictable branch while
 * no trace records (weft__trace_ended_unrun() in executor.h picks the
 * lane). Thread-safety: the lane's owner, or any thread for the outside
 * lane.
 */
static inline void
weft__trace_ended_unrun_lane(struct weft__trace_lane *lane, bool shared,
                             struct weft_future *f)
{
    /* Relaxed: a hint, as in weft__trace_body(). */
    if (__builtin_expect(
            weft__load_relaxed_ptr((void *const *)&lane->buf) == NULL, 1)) {
        return;
    }
    weft__trace_ended_unrun_slow(lane, shared, f);
}

/*
 * Whether a trace records on lane now (a hint): a worker about to sleep
 * reads the clock only then, and reports its park with
 * weft__trace_park(). One relaxed load.
 */
static inline bool
weft__trace_recording(const struct weft__trace_lane *lane)
{
    /* Relaxed: a hint, as in weft__trace_body(). */
    return weft__load_relaxed_ptr((void *const *)&lane->buf) != NULL;
}

void weft__trace_park_slow(struct weft__trace_lane *lane, uint64_t t0,
                           uint64_t t1, uint64_t id);

/*
 * Record that the lane's worker slept from t0 to t1 (clock ns): idle (id
 * 0), or in a wait on the task whose id is id. Recorded only when the
 * trace was begun with WEFT_TRACE_PARKS=1 in the environment (include/
 * weft/trace.h); a lane its begin or end holds drops it. Never blocks.
 * Thread-safety: the lane's worker.
 */
static inline void
weft__trace_park(struct weft__trace_lane *lane, uint64_t t0, uint64_t t1,
                 uint64_t id)
{
    if (weft__trace_recording(lane)) {
        weft__trace_park_slow(lane, t0, t1, id);
    }
}

/*
 * weft_executor_create(): begin the trace that the WEFT_TRACE environment
 * variable asks for, if any. ex's workers must exist (their threads need
 * not run yet). Returns WEFT_OK (also with no WEFT_TRACE) or WEFT_ENOMEM.
 */
weft_status_t weft__trace_exec_created(struct weft_executor *ex);

/*
 * weft_executor_destroy(), after the workers have been joined: end a
 * trace begun by WEFT_TRACE and write it to its file (best effort: destroy
 * cannot report a failed write). Does nothing otherwise, or the second
 * time.
 */
void weft__trace_exec_stopped(struct weft_executor *ex);

/* Free ex's trace buffers (executor teardown; nothing records any more). */
void weft__trace_exec_free(struct weft_executor *ex);

#endif /* WEFT_EXECUTOR_TRACE_H */
