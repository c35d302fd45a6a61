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
 * With GCC or Clang this name is also a macro whose common case runs
 * inline in the caller (same behaviour); `(weft_frame_fork)(...)`, a
 * function pointer, or defining WEFT_NO_INLINE_FRAMES calls the function.
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
 * Also a macro with an inline common case, as weft_frame_fork().
 */
WEFT_API weft_status_t weft_frame_join(weft_frame_t *frame,
                                       weft_value_t *value,
                                       weft_error_t **err);

/** @cond WEFT_INTERNAL */
/* ------------------------------------------------------------------------
 * Inline fast paths. Not API: nothing below may be used directly.
 *
 * weft_frame_fork() and weft_frame_join() are also macros over the static
 * inline functions below, which do the common case (a fork with room in
 * the deque; the join of the newest frame, still private, whose body
 * succeeds) in the caller's code and call the exported functions for
 * everything else. They read the calling worker's deque and the frame
 * through the layouts below, which executor/frame.c checks against the
 * library's own structs with _Static_assert: this is ABI, not API, and
 * it changes only with libweft's SONAME. The exported functions stay the
 * reference behaviour; the macros behave identically.
 *
 * Define WEFT_NO_INLINE_FRAMES before including any weft header to call
 * the exported functions always (also what compilers other than GCC and
 * Clang get); (weft_frame_fork)(...) calls the function for one call.
 * ------------------------------------------------------------------------
 */
struct weft__worker;
struct weft_future;

/*
 * The layout of a frame: the hot line of a future (the library treats a
 * stolen frame as a task) plus its status, root and error. Library code
 * uses it under this name (executor/future.h).
 */
#if defined(__GNUC__) || defined(__clang__)
/* A weft_frame_t is accessed as a struct weft__frame: may_alias keeps
 * type-based alias analysis from separating the two. */
#define WEFT__FRAME_MAY_ALIAS __attribute__((may_alias))
#else
#define WEFT__FRAME_MAY_ALIAS
#endif

struct WEFT__FRAME_MAY_ALIAS weft__frame {
    weft_fn_t fn;
    void *arg;
    struct weft__worker *spawner; /* the forking worker */
    weft_executor_t *ex;
    uint32_t state;   /* atomic: QUEUED, then the outcome phase */
    uint32_t refs;    /* WEFT__FRAME_KIND; constant (a future's: atomic) */
    uint32_t thief;   /* as in a future: index + 1 of a thief, relaxed */
    uint32_t started; /* 1 once a runner other than the join entered */
    weft_value_t value;
    int64_t slot;             /* deque index, or WEFT__FRAME_SLOT_* */
    weft_status_t status;     /* settled outcome (slow paths only) */
    struct weft_future *root; /* the forking task (a future or a frame);
                                 the library resolves it to the
                                 enclosing future and caches that */
    weft_error_t *error;      /* owned until handed to the joiner */
};

/* frame->refs of every frame: the kind bit that tells frames from futures
 * (bits 24-31 of refs hold a task's kind; 0x80 is "frame"). */
#define WEFT__FRAME_KIND 0x80000000u
#define WEFT__FRAME_QUEUED 0u /* state: not ended */
/* frame->slot below 0: */
#define WEFT__FRAME_SLOT_KEPT (-1)   /* kept back by the fork: never pushed */
#define WEFT__FRAME_SLOT_RAN (-2)    /* run by a pop of its own worker */
#define WEFT__FRAME_SLOT_JOINED (-3) /* the join returned */

/*
 * Cold halves of the inline paths (exported, not API): the publish that
 * a thief asked for, after an inline fork's push; and the settling of a
 * frame whose inline run failed, was cancelled or recorded an error.
 */
WEFT_API weft_status_t weft__frame_fork_publish(void);
WEFT_API weft_status_t weft__frame_join_settle(weft_frame_t *frame,
                                               weft_status_t st,
                                               weft_value_t *value,
                                               weft_error_t **err);

#if defined(__GNUC__) || defined(__clang__)

/* A deque buffer (primitives/deque.h struct weft__deque_buf). */
struct weft__frame_buf {
    int64_t mask; /* capacity - 1 */
    void *retired_next_;
    void *slot[]; /* relaxed atomic accesses */
};

/*
 * The first three cache lines of a worker (executor/executor.h struct
 * weft__worker): its deque's owner line, its thieves' line, and the
 * executor. may_alias: the library writes the same words through its
 * own struct types.
 */
struct __attribute__((may_alias)) weft__frame_worker {
    int64_t bottom; /* end of the public part; only the owner stores */
    struct weft__frame_buf *buf;
    int64_t top_cache; /* owner only: a lower bound of top */
    void *retired_;
    int64_t head; /* owner only: end of the private part */
    int64_t push_limit; /* owner only: a push above it may not fit */
    char pad0_[64 - 4 * sizeof(int64_t) - 2 * sizeof(void *)];
    int64_t top_;
    uint32_t want; /* a thief asked the owner to publish */
    char pad1_[64 - sizeof(int64_t) - sizeof(uint32_t)];
    weft_executor_t *ex;
};

/*
 * The worker running the calling thread; off the workers, a stand-in
 * whose deque always looks full and which no frame names as its spawner,
 * so that both inline paths fall back to the exported functions (which
 * answer WEFT_EINVAL) without a test of their own.
 */
WEFT_API extern __thread struct weft__frame_worker *weft__tls_frame_worker;

#endif /* GCC or Clang: the layouts the inline paths read */

#if (defined(__GNUC__) || defined(__clang__)) && \
    !defined(WEFT_NO_INLINE_FRAMES)

static inline __attribute__((always_inline)) weft_status_t
weft__frame_fork_inline(weft_task_t *self, weft_frame_t *frame,
                        weft_fn_t fn, void *arg)
{
    struct weft__frame_worker *w = weft__tls_frame_worker;
    struct weft__frame *fr = (struct weft__frame *)frame;
    if (__builtin_expect(self == NULL || fr == NULL || fn == NULL, 0)) {
        return (weft_frame_fork)(self, frame, fn, arg);
    }
    /* The worker's words first: stores through fr may alias them. */
    int64_t h = w->head;
    if (__builtin_expect(h > w->push_limit, 0)) {
        /* Full (grow), or not a worker (the stand-in). */
        return (weft_frame_fork)(self, frame, fn, arg);
    }
    /* Relaxed: a hint polled at every fork; the publish re-reads it with
     * acquire (weft__deque_publish()). */
    uint32_t want = __atomic_load_n(&w->want, __ATOMIC_RELAXED);
    /* Unpaired: fr is private until a publish (release store of the
     * deque's bottom) makes it stealable. fr->ex is left unset: a frame's
     * executor is its root's. */
    fr->fn = fn;
    fr->arg = arg;
    /* Relaxed atomic only to keep compilers from pairing it with arg
     * through a vector register (two more instructions). */
    __atomic_store_n(&fr->spawner, (struct weft__worker *)w,
                     __ATOMIC_RELAXED);
    fr->state = WEFT__FRAME_QUEUED;
    fr->refs = WEFT__FRAME_KIND;
    fr->thief = 0;
    fr->started = 0;
    fr->slot = h;
    fr->root = (struct weft_future *)self; /* resolved when needed */
    fr->error = NULL;
    /* Relaxed: no thief reads index h until a publish moves bottom past
     * it with a release store (primitives/deque.h). */
    struct weft__frame_buf *b = w->buf;
    __atomic_store_n(&b->slot[h & b->mask], (void *)fr, __ATOMIC_RELAXED);
    w->head = h + 1;
    if (__builtin_expect(want != 0, 0)) {
        return weft__frame_fork_publish();
    }
    return WEFT_OK;
}

static inline __attribute__((always_inline)) weft_status_t
weft__frame_join_inline(weft_frame_t *frame, weft_value_t *value,
                        weft_error_t **err)
{
    struct weft__frame *fr = (struct weft__frame *)frame;
    struct weft__frame_worker *w = weft__tls_frame_worker;
    int64_t top; /* index of the newest item */
    /*
     * fr is the newest private item of this worker's deque: see
     * weft_frame_join() in executor/frame.c for why two tests suffice.
     * bottom: relaxed, the owner's own word.
     */
    if (__builtin_expect(
            fr != NULL && fr->spawner == (struct weft__worker *)w &&
                (top = w->head - 1) == fr->slot &&
                top >= __atomic_load_n(&w->bottom, __ATOMIC_RELAXED),
            1)) {
        w->head = top;
        weft_status_t st = fr->fn((weft_task_t *)fr, fr->arg, &fr->value);
        /* One test for st != WEFT_OK || fr->error != NULL. */
        if (__builtin_expect(((uintptr_t)fr->error | (uintptr_t)(unsigned)st) !=
                                 0,
                             0)) {
            return weft__frame_join_settle(frame, st, value, err);
        }
        if (value != NULL) {
            *value = fr->value;
        }
        if (err != NULL) {
            *err = NULL;
        }
        fr->slot = WEFT__FRAME_SLOT_JOINED; /* only this thread reads it */
        return WEFT_OK;
    }
    return (weft_frame_join)(frame, value, err);
}

#define weft_frame_fork(self, frame, fn, arg) \
    weft__frame_fork_inline((self), (frame), (fn), (arg))
#define weft_frame_join(frame, value, err) \
    weft__frame_join_inline((frame), (value), (err))

#endif /* inline fast paths */
/** @endcond */

#ifdef __cplusplus
}
#endif

#endif /* WEFT_FRAME_H */
