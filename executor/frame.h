/*
 * frame.h - fork-join frames (internal; the public API is
 * include/weft/frame.h, which also holds struct weft__frame and the
 * inline fork and join).
 */
#ifndef WEFT_EXECUTOR_FRAME_H
#define WEFT_EXECUTOR_FRAME_H

#include "executor/future.h"

struct weft__worker;

/*
 * Run frame f (a struct weft__frame seen as a task) that a thief stole or
 * a helping pop took, not its join: the body (or a cancellation when the
 * executor is cancelling or w is NULL), then publish the outcome on
 * f->state and wake a parked joiner. f must not be touched afterwards:
 * its storage belongs to the joiner, who may return at once.
 */
void weft__frame_run(struct weft__worker *w, struct weft_future *f);

/*
 * Point this thread's weft__tls_frame_worker (weft/frame.h) at w, or with
 * w NULL back at the stand-in of threads that are not workers. Called by
 * a worker thread on start and exit, next to weft__tls_worker.
 */
void weft__frame_set_worker(struct weft__worker *w);

#endif /* WEFT_EXECUTOR_FRAME_H */
