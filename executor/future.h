/*
 * future.h - the task/future object and its state machine (internal).
 *
 * A task and its future are one object, struct weft_future; the public
 * weft_task_t is the same object seen from inside the running body. It
 * comes from a per-worker pool (executor.h) and goes back there when the
 * task has ended and no handle is left.
 *
 * The state word (f->state) carries the outcome and three flags:
 *
 *   bits 0-2  phase: QUEUED (not ended) or SUCCEEDED / FAILED / CANCELLED
 *   WAITER    a thread may be futex-waiting on f->state
 *   DETACHED  every handle was released before the end: the completer
 *             frees the object
 *   LOCK      a continuation is being registered (short spin lock)
 *   CONT      continuations are queued on f->conts
 *   bits 16+  kick counter (weft_future_wait_for's token callback)
 *
 * Who runs a task is decided by whoever takes it out of a deque (pop or
 * steal CAS) or out of the injection queue: exactly one taker, so no
 * per-task claim word is needed. How it ends is decided by one of two
 * paths:
 *
 *  - shared completion (future_complete_shared): a CAS on f->state that
 *    publishes the outcome with release semantics and returns the flags
 *    seen, which say whether to wake waiters, schedule continuations or
 *    free the object;
 *
 *  - the inline fast path in weft_join()/weft_future_wait(): the waiter
 *    took its own task from its own deque and holds the only reference
 *    (refs == 1). No other thread can know the object (waiting, retaining
 *    and registering continuations all need a reference), so the outcome
 *    is stored with plain stores and no locked instruction.
 *
 * docs/memory-model.md draws the completion/wait interleaving.
 */
#ifndef WEFT_EXECUTOR_FUTURE_H
#define WEFT_EXECUTOR_FUTURE_H

#include <stdint.h>

#include <weft/frame.h>
#include <weft/future.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "weft's future layout assumes a little-endian target"
#endif

#include "primitives/atomics.h"

#define WEFT__PHASE_MASK 0x7u
#define WEFT__QUEUED 0u
#define WEFT__SUCCEEDED 1u
#define WEFT__FAILED 2u
#define WEFT__CANCELLED 3u
#define WEFT__F_WAITER 0x10u
#define WEFT__F_DETACHED 0x20u
#define WEFT__F_LOCK 0x40u
#define WEFT__F_CONT 0x80u
/*
 * COLD: a dynamic cold field may be set: a cancel request
 * (f->cancel_req), a task token (f->ttoken) or an id (f->id). Set with an
 * atomic or right after the field is installed, so that the run path's
 * cancel hint and the pool put look at the cold lines only when it is
 * set (with CONT, a failed or cancelled outcome, or a kind bit).
 */
#define WEFT__F_COLD 0x100u
/*
 * TOKEN_BORROWED: f->token is not retained by f. Its maker guarantees the
 * token outlives the object: a group's child borrows the group's token,
 * which the group releases only after it has released every child (a
 * bulk gather's pieces the same), so a mass cancellation does not have
 * every worker write the token's reference count; and a child cancelled
 * through it points f->error at the token's reason without a reference
 * (WEFT__ERROR_BORROWED). Set before publication; never changes.
 */
#define WEFT__F_TOKEN_BORROWED 0x200u
/*
 * Bits 16-31: a kick counter. A token callback of weft_future_wait_for()
 * adds WEFT__KICK_ONE before its futex wake, so a waiter about to park
 * with an older value of the word returns at once (no lost wake-up). It
 * wraps harmlessly; every CAS on the word preserves it.
 */
#define WEFT__KICK_ONE 0x10000u

/*
 * f->refs holds the number of handles (bits 0-23) and, in bits 24-31,
 * which cold fields are in use (WEFT__K_*). The kind bits are written
 * before the object is published and never change while it lives, so the
 * inline join's single test "refs == 1" means "one handle and no cold
 * fields". The pool put resets the cold fields the kind bits name.
 */
#define WEFT__REFS_MASK 0x00FFFFFFu
#define WEFT__KIND_SHIFT 24
#define WEFT__K_CONTINUATION 0x1u /* f->antecedent is set and retained */
#define WEFT__K_RELEASE 0x2u      /* f->release is set */
#define WEFT__K_NAME 0x4u         /* f->name is set */
#define WEFT__K_TOKEN 0x8u        /* f->token is set and retained */
#define WEFT__K_SITE 0x10u        /* f->file/line/func are set */
#define WEFT__K_PROMISE 0x20u     /* no task: f->arg is the state of a
                                     combinator or group (combine.h) */
#define WEFT__K_DEBUG 0x40u       /* made by a debug-mode executor; f->dbg
                                     is its registry record or NULL
                                     (debug.h) */
#define WEFT__K_FRAME 0x80u       /* not a future: a struct weft__frame
                                     (weft/frame.h), which shares only the
                                     hot line and status */

/* Bits of f->started (a frame's started is 0 or 1). */
#define WEFT__STARTED 0x1u
#define WEFT__STARTED_ERROR 0x2u /* the body recorded f->error
                                    (weft_task_fail): the run path must
                                    look at it even on success */
#define WEFT__ERROR_BORROWED 0x4u /* f->error is its borrowed token's
                                     reason, not retained: the token's
                                     maker keeps it alive until f is freed
                                     (future_finish_error) */

struct weft__worker;
struct weft__watch;
struct weft__debug_rec;

/*
 * A watch: a callback that the thread ending a future runs inline, right
 * after the outcome is published (no task, no allocation). Combinators
 * and groups put one on each child; the node lives in their storage and
 * must stay alive until the callback has run. It must be short and must
 * not wait.
 *
 * A node is two words, because a gather holds one per child (10^6 of
 * them for a gather of 10^6 futures): the link, and the address of the
 * callback, which the owner keeps in its own state (one slot shared by
 * all its nodes), so the callback finds the owner from that address
 * (container_of) and, for an array of nodes, the child from the node's
 * index.
 */
typedef void (*weft__watch_fn_t)(struct weft__watch *node,
                                 struct weft__worker *w,
                                 struct weft_future *f);
struct weft__watch {
    struct weft__watch *next;     /* f->watches link, under F_LOCK */
    const weft__watch_fn_t *fn;   /* the owner's callback slot */
};

/*
 * What a promise (a future ended by a combinator or group rather than by
 * a task body) needs from its owner: the promise's f->arg points at a
 * state whose first member is a pointer to this.
 */
struct weft__promise_ops {
    /* weft_future_cancel() on the promise: pass it on to the children.
     * Returns WEFT_OK or WEFT_EALREADY. */
    weft_status_t (*cancel)(void *state, weft_error_t *reason);
    /* The promise object is being freed: drop its hold on the state. */
    void (*release)(void *state);
};

struct weft_future {
    /* Hot line: written at spawn by the spawner, read by the runner. */
    weft_fn_t fn;
    void *arg;
    struct weft__worker *spawner; /* worker whose deque got it, or NULL */
    weft_executor_t *ex;          /* set when the slab is made; constant */
    /*
     * state and refs are separate atomic words; the union only lets the
     * spawner initialize both with one store while f is still private.
     * Same for thief and started.
     */
    union {
        struct {
            uint32_t state; /* see above; atomic */
            uint32_t refs;  /* handles | kind << 24; atomic */
        };
        uint64_t state_refs_init;
    };
    union {
        struct {
            uint32_t thief;   /* index + 1 of the worker that stole it;
                                 relaxed hint for leapfrogging */
            uint32_t started; /* WEFT__STARTED once the body was entered,
                                 | WEFT__STARTED_ERROR once it recorded
                                 an error, | WEFT__ERROR_BORROWED; written
                                 by the runner only; relaxed */
        };
        uint64_t thief_started_init;
    };
    weft_value_t value;           /* written by the runner before publish */
    union {
        int64_t slot;             /* deque index it was pushed at */
        struct weft_future *pool_next; /* free-list link while in a pool,
                                          so the pool never touches the
                                          cold lines */
    };
    /* Cold lines. */
    weft_status_t status;         /* written before the outcome publish,
                                     only when it is not WEFT_OK (a
                                     SUCCEEDED phase says WEFT_OK; see
                                     weft__future_status_of()) */
    weft_release_fn_t release;    /* arg release hook (K_RELEASE) */
    struct weft_future *next;     /* injection queue / cont links */
    struct weft_future *conts;    /* continuation list, under F_LOCK */
    struct weft_future *antecedent; /* K_CONTINUATION: retained */
    const char *name;             /* K_NAME */
    uint64_t id;                  /* 0 until first asked for (lazy) */
    weft_token_t *token;          /* K_TOKEN: retained until the end */
    weft_error_t *error;          /* failure or cancellation reason;
                                     written by the runner before the
                                     outcome publish, owned by f */
    const char *file;             /* K_SITE */
    const char *func;             /* K_SITE */
    int line;                     /* K_SITE */
    struct weft__watch *watches;  /* watch list, under F_LOCK (with CONT) */
    weft_error_t *cancel_req;     /* weft_future_cancel() reason: set once
                                     by CAS from NULL, owned by f */
    weft_token_t *ttoken;         /* weft_task_token(): made on first use,
                                     owned by f until it is freed */
    struct weft__debug_rec *dbg;  /* K_DEBUG: registry record or NULL;
                                     set while private, cleared when f is
                                     freed (debug.c) */
};

/*
 * A fork-join frame (include/weft/frame.h): caller storage laid out like
 * the hot line of struct weft_future plus status, so that the deques, the
 * steal path, weft__task_run()'s dispatch and worker_await() can treat a
 * frame as a task. It has no cold fields: its refs word holds only the
 * kind bit WEFT__K_FRAME (no handles), and every function that reads a
 * cold field of a task checks that bit first (weft__task_root(),
 * weft__task_error_slot()).
 *
 * state: QUEUED until the frame ends on a path other than its join's
 * inline run; then the outcome phase, published with an exchange by the
 * runner (weft__frame_run()), with WAITER set by a parked joiner.
 * slot: the deque index of the fork, until a pop of the forking worker
 * runs the frame (WEFT__FRAME_SLOT_RAN) or the join returns
 * (WEFT__FRAME_SLOT_JOINED: a second join is refused); only the forking
 * thread reads it. ex is not set (weft_task_executor() asks the root).
 */
/* struct weft__frame and its constants: include/weft/frame.h (the
 * inline fork and join read the layout). */
_Static_assert(WEFT__FRAME_KIND == WEFT__K_FRAME << WEFT__KIND_SHIFT &&
                   WEFT__FRAME_QUEUED == WEFT__QUEUED,
               "weft/frame.h's frame constants");

/* Whether task object f is a frame. */
static inline bool
weft__is_frame(const struct weft_future *f)
{
    /* Relaxed: the kind bits were written before f was published. */
    return (weft__load_relaxed_u32(&f->refs) >>
            WEFT__KIND_SHIFT) & WEFT__K_FRAME;
}

/*
 * The enclosing future task of frame fr. A fork stores its self in
 * fr->root, and self may be a frame too; the first lookup walks up the
 * chain and caches the future in fr->root. Every frame on the chain is
 * alive: each one is still running the body that forked the next (its
 * join cannot have returned while a frame it forked is unjoined).
 * Relaxed loads and store: after the fork (a plain store while fr is
 * private), fr->root is written only with the future that every lookup
 * computes, and a lookup on another thread (from a descendant stolen
 * there) may see either value: both lead to that future.
 */
static inline struct weft_future *
weft__frame_root(struct weft__frame *fr)
{
    struct weft_future *r =
        weft__load_relaxed_ptr((void *const *)&fr->root);
    if (__builtin_expect(weft__is_frame(r), 0)) {
        do {
            r = weft__load_relaxed_ptr(
                (void *const *)&((struct weft__frame *)r)->root);
        } while (weft__is_frame(r));
        weft__store_relaxed_ptr((void **)&fr->root, r);
    }
    return r;
}

/* The future task a task object stands for: itself, or a frame's root.
 * Call it only from the task's own run (see weft__frame_root()). */
static inline struct weft_future *
weft__task_root(struct weft_future *f)
{
    return weft__is_frame(f) ? weft__frame_root((struct weft__frame *)f)
                             : f;
}

/* Where a running task's recorded failure lives (weft_task_fail). */
static inline weft_error_t **
weft__task_error_slot(struct weft_future *f)
{
    return weft__is_frame(f) ? &((struct weft__frame *)f)->error
                             : &f->error;
}

/*
 * Debug builds poison a future's fn when it goes back to a pool, so a use
 * after the last release is caught by WEFT__ASSERT(weft__future_live(f))
 * at the API entry points (as long as the object was not reused yet).
 */
static inline bool
weft__future_live(const struct weft_future *f)
{
    return f->fn != NULL;
}

/* Cold-field kind bits of f (immutable while f lives). */
static inline uint32_t
weft__future_kind(const struct weft_future *f)
{
    /* Relaxed: the kind bits were written before f was published. */
    return weft__load_relaxed_u32(&f->refs) >> WEFT__KIND_SHIFT;
}

static inline uint32_t
weft__future_phase(uint32_t state)
{
    return state & WEFT__PHASE_MASK;
}

static inline bool
weft__future_state_done(uint32_t state)
{
    return (state & WEFT__PHASE_MASK) != WEFT__QUEUED;
}

/*
 * The status of ended task object f whose state word read s (with
 * acquire): a SUCCEEDED phase means WEFT_OK, which the run paths do not
 * store, so reading a success touches only the hot line.
 */
static inline weft_status_t
weft__future_status_of(const struct weft_future *f, uint32_t s)
{
    return weft__future_phase(s) == WEFT__SUCCEEDED ? WEFT_OK : f->status;
}

/* Phase for a status returned by a task body. */
static inline uint32_t
weft__phase_of_status(weft_status_t st)
{
    if (st == WEFT_OK) {
        return WEFT__SUCCEEDED;
    }
    return st == WEFT_ECANCELED ? WEFT__CANCELLED : WEFT__FAILED;
}

/*
 * Publish the outcome stored in f->status/f->value and act on the flags
 * seen: wake waiters, schedule continuations, free a detached object.
 * Called by whoever ran (or cancelled) the task. w is the calling worker
 * or NULL. f must not be touched by the caller afterwards.
 */
void weft__future_complete_shared(struct weft__worker *w,
                                  struct weft_future *f);

/*
 * Run a task that was taken from a deque or the injection queue and is
 * not being awaited inline: the body (unless cancellation was requested
 * first), the release hook, then shared completion; or, for a frame
 * (WEFT__K_FRAME), weft__frame_run(). w may be NULL (a non-worker thread
 * cancelling tasks at shutdown): a frame then ends cancelled.
 */
void weft__task_run(struct weft__worker *w, struct weft_future *f);

/*
 * Put watch node on f. Returns true when it is registered (*node->fn will
 * run once, on the thread that ends f), false when f has already ended
 * (the caller handles that case itself; node is untouched). The caller
 * must hold a reference to f until *node->fn has run or false came back.
 * When that reference is the only one (an adopted child), the
 * registration is one CAS instead of two (see the function).
 * Thread-safety: any thread. Blocking: a short spin on F_LOCK.
 */
bool weft__future_watch(struct weft_future *f, struct weft__watch *node);

/*
 * Make a promise on ex: a future in the QUEUED phase that no task runs;
 * state (whose first member is a const struct weft__promise_ops *) is
 * stored in f->arg and released through ops->release when the object is
 * freed. name may be NULL. The caller owns one reference.
 * Returns NULL when memory runs out.
 */
struct weft_future *weft__promise_create(weft_executor_t *ex, void *state,
                                         const char *name);

/*
 * End promise p with status st (WEFT_OK: SUCCEEDED with value;
 * WEFT_ECANCELED: CANCELLED; else FAILED), taking over the reference to
 * err (must be non-NULL unless st is WEFT_OK). Exactly once per promise;
 * w is the calling worker or NULL. p must not be touched afterwards
 * unless the caller holds a reference.
 */
void weft__promise_settle(struct weft__worker *w, struct weft_future *p,
                          weft_status_t st, weft_value_t value,
                          weft_error_t *err);

/* Free-object reset of the dynamic cancellation fields (pool put). */
void weft__future_reset_cancel(struct weft_future *f);

/*
 * Make a task future on ex without queueing it (for groups with a
 * concurrency limit). opts as weft_spawn_ex() (its release hook is NOT
 * run on failure here). With borrow_token, opts->token is not retained
 * (WEFT__F_TOKEN_BORROWED): the caller guarantees it outlives the object
 * (its last release). Returns NULL when memory runs out. The caller owns the reference
 * and must pass f to weft__future_submit() exactly once.
 */
struct weft_future *weft__future_make(weft_executor_t *ex,
                                      const weft_spawn_opts_t *opts,
                                      weft_fn_t fn, void *arg,
                                      bool borrow_token);

/*
 * Queue a future made by weft__future_make(). If it cannot be queued
 * (shutdown, no memory) it ends CANCELLED without running, with its
 * release hook run and a reason saying why. Never fails.
 */
void weft__future_submit(struct weft_future *f);

/*
 * End a future made by weft__future_make() CANCELLED without queueing it,
 * with reason `why` (WEFT_ENOMEM, WEFT_ESHUTDOWN); its release hook runs.
 * The caller keeps its reference. Instead of weft__future_submit().
 */
void weft__future_submit_refused(struct weft_future *f, weft_status_t why);

/*
 * A worker's wait for task object f (a future or a frame) to end: help
 * with other work, leapfrog to f's thief, park briefly when idle. Returns
 * f->status once f's state is terminal (read with acquire). On w.
 */
weft_status_t weft__future_await_worker(struct weft__worker *w,
                                        struct weft_future *f);

/* Wake every thread futex-waiting on *addr (FUTEX_WAKE, private). */
void weft__futex_wake_all(uint32_t *addr);

/*
 * Make *slot, the error of a task that ended with status st, agree with
 * st: released for a success; for a cancellation, the reason (root's
 * cancel request, its token's reason, or one made for why: WEFT_ESHUTDOWN,
 * WEFT_ENOMEM); for a failure that recorded none, an error for st naming
 * root ("<what> returned invalid status" for a code out of contract).
 * root is the future the task is or belongs to (a frame's root); what
 * names the kind in that message. On the runner's thread, before the
 * outcome is published.
 */
void weft__task_settle_error(weft_error_t **slot, struct weft_future *root,
                             const char *what, weft_status_t st,
                             weft_status_t why);

#endif /* WEFT_EXECUTOR_FUTURE_H */
