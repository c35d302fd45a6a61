/**
 * @file
 * weft/trace.h - a timeline of task executions, exported as Chrome Trace
 * Event JSON.
 *
 * While a trace records, every task execution on ex appends one event to
 * a fixed-size buffer of the lane it ran on: one lane per worker, and one
 * for threads that are not workers (which only ever end tasks that were
 * never queued, such as a continuation refused by a shut-down executor,
 * as cancelled without running them). An event holds the start time, the
 * duration, the task's id (weft_future_id()), its name
 * (weft_spawn_opts_t.name), its outcome, whether its body ran, and its
 * spawn site when one was given (WEFT_SPAWN_SITE). A task that runs
 * other tasks while it waits (weft_join() and weft_future_wait() help)
 * contains their events on its own lane, so lanes show nesting.
 *
 * Fork-join frames (weft/frame.h): a frame that runs anywhere but in its
 * own join (taken by a thief, or popped by a helping wait or by the join
 * of an older frame) is an event too, with "cat":"frame" (tasks have
 * "cat":"task"), named "frame@<fn address>", and with the id of the task
 * that forked it (frames have no id, name or site of their own). A frame
 * that its own join runs is part of the forking task's span and is not
 * recorded: that is the fork-join fast path, and it stays untouched.
 *
 * Parks: when WEFT_TRACE_PARKS=1 is in the environment as a trace begins,
 * that trace also records every time a worker went to sleep: "cat":"park",
 * named "park (idle)" (it ran out of work; args "reason":"idle", "id":0)
 * or "park (wait)" (it waited on a task that another worker runs and had
 * nothing to help with; args "reason":"wait" and the awaited task's id, a
 * frame's being its task's). A wait park lies inside the span of the task
 * that waited. The event is recorded when the worker wakes, so a worker
 * still asleep when the trace ends is not in it. Parks share the lane's
 * buffer with the tasks.
 *
 * weft_executor_trace_write() renders a finished trace in the JSON object
 * format of the Trace Event Format, which speedscope, chrome://tracing and
 * Perfetto open offline: one thread per lane (tid = worker index; the
 * outside lane is tid = number of workers), named by "thread_name"
 * metadata events, one complete event (`"ph":"X"`) per task execution with
 * ts and dur in microseconds (fractional, nanosecond resolution, relative
 * to weft_executor_trace_begin()), and the recording parameters and drop
 * counts under "otherData".
 *
 * Environment: when WEFT_TRACE names a file, weft_executor_create() begins
 * a trace on the new executor (WEFT_TRACE_EVENTS events per worker, or
 * WEFT_TRACE_DEFAULT_EVENTS when that variable is unset or not a number in
 * 1..WEFT_TRACE_MAX_EVENTS), and weft_executor_destroy() ends it and
 * writes it to that file (a file that cannot be written is reported on
 * stderr, see weft_executor_destroy()). Each `%p` in the file name is
 * replaced by the process id. With several executors in one process each one writes the
 * same file in turn; use the functions below to keep their traces apart.
 *
 * Cost: while no trace records, a task execution (and a worker's sleep)
 * pays one load of a worker field and one predictable branch. While one records, it pays two
 * clock reads, one or two locked instructions (a flag of its own lane,
 * and the task id's first assignment) and a 64-byte store into the
 * worker's own buffer: no allocation, and no worker ever waits for
 * another.
 * A full buffer counts the events it drops instead of recording them.
 */
#ifndef WEFT_TRACE_H
#define WEFT_TRACE_H

#include <stddef.h>
#include <stdio.h>

#include <weft/executor.h>
#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Events per worker of a trace begun through the WEFT_TRACE environment
 * variable when WEFT_TRACE_EVENTS does not say otherwise (64 bytes each). */
#define WEFT_TRACE_DEFAULT_EVENTS 65536u

/** The largest events_per_worker that weft_executor_trace_begin()
 * accepts (1 GiB of buffer per worker). */
#define WEFT_TRACE_MAX_EVENTS (1u << 24)

/**
 * Start recording task executions on ex, into buffers of
 * events_per_worker events for each worker and for the outside lane,
 * allocated here (64 bytes an event). Tasks that end after this returns
 * are recorded; a task that is running when it is called is recorded
 * with its start clipped to the beginning of the trace. The previous,
 * ended trace of ex (if any) is discarded, but only once the new buffers
 * are allocated: a failed begin leaves it readable.
 * Returns: WEFT_OK; WEFT_EINVAL (ex NULL, events_per_worker 0 or above
 * WEFT_TRACE_MAX_EVENTS); WEFT_EBUSY (a trace is already recording, or
 * another trace call on ex is running at this moment); WEFT_ENOMEM.
 * Thread-safety: any thread, including ex's workers.
 * Blocking: allocates; never waits for tasks (attaching a buffer waits at
 * most for the worker to finish writing the event it is writing).
 * Ownership: the buffers belong to ex until the next begin or
 * weft_executor_destroy().
 */
WEFT_API weft_status_t weft_executor_trace_begin(weft_executor_t *ex,
                                                 size_t events_per_worker);

/**
 * Stop recording. When this returns, no event is added any more, and the
 * trace can be written (weft_executor_trace_write()) as often as wanted
 * until the next weft_executor_trace_begin() or weft_executor_destroy().
 * A task that ends while this call detaches its lane may be left out.
 * Returns: WEFT_OK; WEFT_EINVAL (ex NULL); WEFT_ESTATE (no trace is
 * recording); WEFT_EBUSY (another trace call on ex is running at this
 * moment).
 * Thread-safety: any thread, including ex's workers.
 * Blocking: waits at most for each worker to finish writing the event it
 * is writing (a few stores), never for tasks.
 */
WEFT_API weft_status_t weft_executor_trace_end(weft_executor_t *ex);

/**
 * Write the ended trace of ex to out as Chrome Trace Event JSON, in the
 * object format
 * `{"traceEvents":[...],"displayTimeUnit":"ns","otherData":{...}}`.
 * Events of one lane are written in start order (an enclosing task
 * before the tasks it ran while waiting). A task without a name is named
 * "task@" and its function's address; names, files and functions are
 * escaped as JSON strings. "otherData" holds
 * "workers", "events_per_worker", "recorded", "dropped" (events that did
 * not fit, in total) and "dropped_by_lane".
 * Returns: WEFT_OK; WEFT_EINVAL (ex or out NULL); WEFT_ESTATE (no trace was
 * begun since ex was created); WEFT_EBUSY (the trace is still recording:
 * call weft_executor_trace_end() first; or another trace call on ex is
 * running at this moment); WEFT_ESYS (writing to out failed: ferror(out)
 * is set, and part of the JSON may have been written).
 * Thread-safety: any thread, including ex's workers.
 * Blocking: as the writes to out. Ownership: out stays the caller's; it is
 * flushed, not closed.
 */
WEFT_API weft_status_t weft_executor_trace_write(weft_executor_t *ex,
                                                 FILE *out);

/**
 * weft_executor_trace_write() into the file path, created or truncated.
 * Returns: as weft_executor_trace_write(), plus WEFT_EINVAL for a NULL
 * path and WEFT_ESYS when the file cannot be opened, written or closed
 * (errno tells why). On WEFT_ESTATE or WEFT_EBUSY the file is not touched.
 * Thread-safety: any thread, including ex's workers.
 * Blocking: file I/O. Ownership: path is read during the call only.
 */
WEFT_API weft_status_t weft_executor_trace_save(weft_executor_t *ex,
                                                const char *path);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_TRACE_H */
