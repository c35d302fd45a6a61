/*
 * frame.c - fork-join frames: weft_frame_fork() and weft_frame_join().
 *
 * DESIGN
 *
 * A frame is the strict fork-join special case of a task: the forking
 * task itself joins it, before it returns, on the same thread. That is
 * what lets a frame live in the caller's storage (no pool object, no
 * reference count) and sit in the private part of the worker's deque
 * (primitives/deque.h) where the owner pushes and pops it with plain
 * loads and stores. The fast path, fork then join of an item nobody
 * stole, has no atomic read-modify-write, no fence and no call other
 * than the body's.
 *
 * Who runs a frame is decided as for any task, by whoever takes it out of
 * the deque: the join's own pop (run inline, outcome written with plain
 * stores, because only this thread knows the frame), a thief's steal CAS
 * or a helping pop of the owner (weft__frame_run(): the outcome is
 * published with an exchange on frame->state, which the joiner reads with
 * acquire in weft__future_await_worker()). A frame never published stays
 * private, so only the owner can take it.
 *
 * Frames are not counted in the workers' spawned/ended counters: a frame
 * lives inside its root task's run, which is counted, so the quiescence
 * check (executor.c) cannot see an executor idle while a frame is pending.
 *
 * The frame's own failure (weft_task_fail() with self the frame) lives in
 * frame->error until the join hands it to the caller.
 */
#include "frame.h"

#include <weft/frame.h>

#include <stddef.h>

#include "executor.h"
#include "primitives/error.h"

/*
 * weft/frame.h's inline fork and join read a worker through struct
 * weft__frame_worker and its deque buffer through struct weft__frame_buf:
 * those views must match the real layouts (this is libweft's ABI).
 */
_Static_assert(offsetof(struct weft__worker, dq.bottom) ==
                       offsetof(struct weft__frame_worker, bottom) &&
                   offsetof(struct weft__worker, dq.buf) ==
                       offsetof(struct weft__frame_worker, buf) &&
                   offsetof(struct weft__worker, dq.top_cache) ==
                       offsetof(struct weft__frame_worker, top_cache) &&
                   offsetof(struct weft__worker, dq.head) ==
                       offsetof(struct weft__frame_worker, head) &&
                   offsetof(struct weft__worker, dq.push_limit) ==
                       offsetof(struct weft__frame_worker, push_limit) &&
                   offsetof(struct weft__worker, dq.want) ==
                       offsetof(struct weft__frame_worker, want) &&
                   offsetof(struct weft__worker, ex) ==
                       offsetof(struct weft__frame_worker, ex) &&
                   sizeof(((struct weft__worker *)0)->dq.head) ==
                       sizeof(int64_t) &&
                   sizeof(((struct weft__worker *)0)->dq.want) ==
                       sizeof(uint32_t) &&
                   offsetof(struct weft__deque_buf, mask) ==
                       offsetof(struct weft__frame_buf, mask) &&
                   offsetof(struct weft__deque_buf, slot) ==
                       offsetof(struct weft__frame_buf, slot),
               "weft/frame.h's worker and deque views are out of date");

/*
 * Off the workers, weft__tls_frame_worker points at this stand-in: its
 * push_limit of -1 makes every inline fork see a full deque, and no frame
 * names it as spawner, so both inline paths fall back to the exported
 * functions. Nothing ever writes it.
 */
static struct weft__frame_worker frame_no_worker = {.push_limit = -1};

__thread struct weft__frame_worker *weft__tls_frame_worker
    __attribute__((tls_model("initial-exec"))) = &frame_no_worker;

void
weft__frame_set_worker(struct weft__worker *w)
{
    weft__tls_frame_worker =
        w != NULL ? (struct weft__frame_worker *)w : &frame_no_worker;
}

/* weft__frame_join_inline() tests st != WEFT_OK as st | error != 0. */
_Static_assert(WEFT_OK == 0, "WEFT_OK must be 0");

_Static_assert(sizeof(struct weft__frame) <= sizeof(weft_frame_t),
               "weft_frame_t is too small for struct weft__frame");
_Static_assert(offsetof(struct weft__frame, fn) ==
                       offsetof(struct weft_future, fn) &&
                   offsetof(struct weft__frame, arg) ==
                       offsetof(struct weft_future, arg) &&
                   offsetof(struct weft__frame, spawner) ==
                       offsetof(struct weft_future, spawner) &&
                   offsetof(struct weft__frame, ex) ==
                       offsetof(struct weft_future, ex) &&
                   offsetof(struct weft__frame, state) ==
                       offsetof(struct weft_future, state) &&
                   offsetof(struct weft__frame, refs) ==
                       offsetof(struct weft_future, refs) &&
                   offsetof(struct weft__frame, thief) ==
                       offsetof(struct weft_future, thief) &&
                   offsetof(struct weft__frame, started) ==
                       offsetof(struct weft_future, started) &&
                   offsetof(struct weft__frame, value) ==
                       offsetof(struct weft_future, value) &&
                   offsetof(struct weft__frame, slot) ==
                       offsetof(struct weft_future, slot) &&
                   offsetof(struct weft__frame, status) ==
                       offsetof(struct weft_future, status),
               "struct weft__frame must share struct weft_future's hot "
               "line and status");

/*
 * Settle fr's outcome: status st, and fr->error made to agree with it by
 * the same rule as a future's (weft__task_settle_error(), with why
 * WEFT_ESHUTDOWN when it never ran because the executor is cancelling).
 */
static void __attribute__((noinline)) /* cold: keep it out of the join */
frame_settle(struct weft__frame *fr, weft_status_t st, weft_status_t why)
{
    fr->status = st;
    weft__task_settle_error(&fr->error, weft__frame_root(fr), "frame", st,
                            why);
}

/*
 * Every run but the join's fast path: the body, or a cancellation when
 * the executor is cancelling (or w is NULL), then the settled outcome.
 * traced: a run off its join (weft__frame_run()), which a recording trace
 * shows as an event of its own.
 */
static weft_status_t
frame_execute(struct weft__worker *w, struct weft__frame *fr, bool traced)
{
    weft_status_t st;
    weft_status_t why = WEFT_OK;
    if (w == NULL || weft__worker_cancelling(w)) {
        st = WEFT_ECANCELED;
        why = WEFT_ESHUTDOWN;
        if (w != NULL) {
            weft__counter_inc(&w->cancelled);
        }
    } else {
        /* Relaxed: informational, like a future's. */
        weft__store_relaxed_u32(&fr->started, 1);
        /* Its own join's run is part of the forking task's span. */
        st = traced ? weft__trace_body(&w->trace, (struct weft_future *)fr)
                    : fr->fn((weft_task_t *)fr, fr->arg, &fr->value);
    }
    frame_settle(fr, st, why);
    return st;
}

void
weft__frame_run(struct weft__worker *w, struct weft_future *f)
{
    struct weft__frame *fr = (struct weft__frame *)f;
    if (w != NULL && fr->spawner == w) {
        /*
         * A pop of the owner's own (helping inside a wait of the task that
         * forked fr, or the pop-down of another frame's join): mark it so
         * that the inline join's test head == slot + 1 fails from now on
         * (the index may be reused by a later fork). Only this thread
         * reads fr->slot now: the joiner is this thread, and no thief
         * reads it.
         */
        fr->slot = WEFT__FRAME_SLOT_RAN;
    }
    weft_status_t st = frame_execute(w, fr, true);
    /*
     * Publish the outcome (value, status, error written above) and learn
     * whether the joiner parked. After this exchange fr may be gone.
     * Pairs with: the acquire loads of the state in worker_await()
     * (future.c, via weft__future_await_worker()) and the WAITER CAS in
     * future_park().
     */
    uint32_t old = weft__fas_u32(&fr->state, weft__phase_of_status(st));
    if (old & WEFT__F_WAITER) {
        /* The address may be reused by now: a futex wake there is only a
         * spurious wake-up for whoever waits on it, which every waiter
         * tolerates. */
        weft__futex_wake_all(&fr->state);
    }
}

/* Cold part of the fork: publish for a thief that asked, and wake one. */
static weft_status_t __attribute__((noinline))
frame_fork_publish(struct weft__worker *w)
{
    weft__deque_publish(&w->dq);
    /*
     * A thief that asked registered as a sleeper before its request (see
     * weft__deque_request()), so this finds it if it parked.
     */
    weft__parker_wake_hint(&w->ex->idle);
    return WEFT_OK;
}

/* Cold part of the fork: bad input, or the deque could not grow. */
static weft_status_t __attribute__((noinline))
frame_fork_slow(struct weft__worker *w, struct weft_future *self,
                struct weft__frame *fr, weft_fn_t fn)
{
    if (w == NULL || self == NULL || fr == NULL || fn == NULL) {
        return WEFT_EINVAL;
    }
    /* The fast path filled the frame; the push found the buffer full. */
    if (weft__deque_push_private(&w->dq, fr) != WEFT_OK) {
        /* No memory to grow: keep it back; the join runs it inline. */
        fr->slot = WEFT__FRAME_SLOT_KEPT;
        return WEFT_OK;
    }
    if (weft__deque_should_publish(&w->dq)) {
        return frame_fork_publish(w);
    }
    return WEFT_OK;
}

/*
 * The exported fork: the reference for weft__frame_fork_inline() in
 * weft/frame.h (the parentheses keep the macro of that name away), which
 * calls it for everything but the fast path.
 */
weft_status_t
(weft_frame_fork)(weft_task_t *self, weft_frame_t *frame, weft_fn_t fn,
                  void *arg)
{
    struct weft__worker *w = weft__tls_worker;
    struct weft_future *s = (struct weft_future *)self;
    struct weft__frame *fr = (struct weft__frame *)frame;
    if (__builtin_expect(w == NULL || s == NULL || fr == NULL || fn == NULL,
                         0)) {
        return frame_fork_slow(w, s, fr, fn);
    }
    fr->fn = fn;
    fr->arg = arg;
    fr->spawner = w;
    /* fr->ex stays unset: a frame's executor is its root's. */
    /*
     * Unpaired: fr is private until a publish (release store of the
     * deque's bottom) makes it stealable.
     */
    fr->state = WEFT__QUEUED;
    fr->refs = WEFT__FRAME_KIND;
    fr->thief = 0;
    fr->started = 0;
    fr->slot = w->dq.head;
    fr->root = s; /* resolved when needed: weft__frame_root() */
    fr->error = NULL;
    if (__builtin_expect(!weft__deque_try_push_private(&w->dq, fr), 0)) {
        return frame_fork_slow(w, s, fr, fn);
    }
    if (__builtin_expect(weft__deque_should_publish(&w->dq), 0)) {
        return frame_fork_publish(w);
    }
    return WEFT_OK;
}

/* Hand the settled outcome of fr to the joiner. */
static weft_status_t
frame_deliver(struct weft__frame *fr, weft_value_t *value, weft_error_t **err)
{
    weft_status_t st = fr->status;
    if (st == WEFT_OK && value != NULL) {
        *value = fr->value;
    }
    if (err != NULL) {
        *err = fr->error;
    } else if (fr->error != NULL) {
        weft_error_release(fr->error);
    }
    fr->error = NULL;
    /* Every other runner is done with fr (see the callers); only the
     * joining thread reads slot. */
    fr->slot = WEFT__FRAME_SLOT_JOINED;
    return st;
}

/* Run fr inline in its join (only this thread knows it), from the slow
 * path: here a cancelling executor ends it cancelled. */
static weft_status_t
frame_run_inline(struct weft__worker *w, struct weft__frame *fr,
                 weft_value_t *value, weft_error_t **err)
{
    (void)frame_execute(w, fr, false);
    return frame_deliver(fr, value, err);
}

static weft_status_t __attribute__((noinline))
frame_join_slow(struct weft__worker *w, struct weft__frame *fr,
                weft_value_t *value, weft_error_t **err)
{
    if (err != NULL) {
        *err = NULL;
    }
    if (fr == NULL || w == NULL || fr->spawner != w ||
        fr->slot == WEFT__FRAME_SLOT_JOINED) {
        return WEFT_EINVAL;
    }
    if (fr->slot == WEFT__FRAME_SLOT_KEPT) {
        /* Kept back by the fork (no memory to grow the deque). */
        return frame_run_inline(w, fr, value, err);
    }
    /*
     * Pop down to fr's slot, running what was pushed after it (futures
     * spawned and not yet joined, frames joined out of order). A frame
     * that a pop of this worker ran (SLOT_RAN) skips this.
     */
    while (fr->slot >= 0 && w->dq.head > fr->slot) {
        struct weft_future *t = weft__deque_pop(&w->dq);
        if (t == NULL) {
            break;
        }
        if (t == (struct weft_future *)fr) {
            return frame_run_inline(w, fr, value, err);
        }
        weft__task_run(w, t);
    }
    /*
     * Taken by a thief or already run by a helping pop of this worker:
     * wait (helping) for the outcome that weft__frame_run() publishes.
     */
    (void)weft__future_await_worker(w, (struct weft_future *)fr);
    return frame_deliver(fr, value, err);
}

/*
 * The join fast path: fr is the newest private item of the caller's own
 * deque (the LIFO order of strict fork-join), so take it with plain
 * loads and stores and run it. Everything else goes to frame_join_slow().
 *
 * Why the two tests suffice to know that index head - 1 holds fr and
 * that only this thread can take it: head > bottom makes the index
 * private (no thief reads it). head == slot + 1 means the push at index
 * slot was fr's and nothing has popped it since: every way out of the
 * deque but a steal rewrites slot (a pop of this worker that runs fr sets
 * WEFT__FRAME_SLOT_RAN, a join WEFT__FRAME_SLOT_JOINED, both negative,
 * while head never is), so a later fork that reuses the index cannot make
 * an old frame pass. A stolen fr cannot pass either: a steal of index
 * slot leaves top, and so bottom, above slot for good (the owner's pop
 * that finds the deque empty puts bottom back to top), so head == slot +
 * 1 would not exceed bottom. weft__frame_join_inline() in weft/frame.h
 * makes the same tests.
 *
 * A frame run here is part of the joining task's run: like the rest of
 * that task, it is not interrupted by a WEFT_SHUTDOWN_CANCEL shutdown
 * (frames that a thief or a helping pop takes end cancelled).
 */
weft_status_t
(weft_frame_join)(weft_frame_t *frame, weft_value_t *value,
                  weft_error_t **err)
{
    struct weft__frame *fr = (struct weft__frame *)frame;
    struct weft__worker *w = weft__tls_worker;
    int64_t h;
    if (__builtin_expect(fr != NULL && w != NULL && fr->spawner == w &&
                             (h = w->dq.head) == fr->slot + 1 &&
                             /* Unpaired: the owner's own word. */
                             h > weft__load_relaxed_i64(&w->dq.bottom),
                         1)) {
        w->dq.head = h - 1;
        weft_status_t st = fr->fn((weft_task_t *)fr, fr->arg, &fr->value);
        if (__builtin_expect(st == WEFT_OK && fr->error == NULL, 1)) {
            if (value != NULL) {
                *value = fr->value;
            }
            if (err != NULL) {
                *err = NULL;
            }
            fr->slot = WEFT__FRAME_SLOT_JOINED; /* see frame_deliver() */
            return WEFT_OK;
        }
        frame_settle(fr, st, WEFT_OK);
        return frame_deliver(fr, value, err);
    }
    return frame_join_slow(w, fr, value, err);
}

/* Cold half of weft__frame_fork_inline(): a thief asked for work. */
weft_status_t
weft__frame_fork_publish(void)
{
    return frame_fork_publish(weft__tls_worker);
}

/* Cold half of weft__frame_join_inline(): the inline run of frame ended
 * with status st other than a clean success. */
weft_status_t
weft__frame_join_settle(weft_frame_t *frame, weft_status_t st,
                        weft_value_t *value, weft_error_t **err)
{
    struct weft__frame *fr = (struct weft__frame *)frame;
    frame_settle(fr, st, WEFT_OK);
    return frame_deliver(fr, value, err);
}
