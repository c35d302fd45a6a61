/*
 * frame.h - fork-join frames (internal; the public API is
 * include/weft/frame.h, the object layout is struct weft__frame in
 * future.h).
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

#endif /* WEFT_EXECUTOR_FRAME_H */
