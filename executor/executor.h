/*
 * executor.h - workers, pools, the injection queue (internal).
 *
 * See executor.c for the scheduling design and its invariants.
 */
#ifndef WEFT_EXECUTOR_EXECUTOR_H
#define WEFT_EXECUTOR_EXECUTOR_H

#include <pthread.h>
#include <stdint.h>

#include <weft/cancel.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/future.h>

/*
 * ck_backoff's default ceiling (2^20 iterations per round) would make an
 * idle worker spin for milliseconds before it parks; 2^13 caps one round
 * at a few microseconds, so the spin phases below last tens of
 * microseconds (WEFT__IDLE_SPINS, WEFT__AWAIT_SPIN_ROUNDS).
 */
#define CK_BACKOFF_CEILING ((1 << 13) - 1)
#include <ck_backoff.h>

#include "executor/debug.h"
#include "executor/future.h"
#include "executor/timer.h"
#include "executor/trace.h"
#include "primitives/atomics.h"
#include "primitives/debug.h"
#include "primitives/deque.h"
#include "primitives/parker.h"

/*
 * Objects in a pool's first slab, and the most in any later one: each new
 * slab of a worker (or of the outside spawners' list) holds twice as many
 * objects as the one before, up to the cap, so a pool that grows to n
 * objects makes O(log n) slabs below the cap and n / cap above it (a
 * fan-out of 10^6 futures: 127 slabs, not 3,907, and as many frees at
 * destroy, each of which glibc answered with a madvise and its TLB
 * shootdown), while a small program still starts with one 48 KiB slab.
 * The small-capacity test build keeps every slab at the first size, so
 * its refills stay frequent.
 */
#define WEFT__SLAB_OBJECTS 256
#ifdef WEFT_TEST_SMALL_CAPACITY
#define WEFT__SLAB_OBJECTS_MAX WEFT__SLAB_OBJECTS
#else
#define WEFT__SLAB_OBJECTS_MAX 8192
#endif
/* The most a worker keeps in its free list before it hands objects to the
 * executor-wide free stack. */
#define WEFT__LOCAL_FREE_MAX 4096

/* How deep a worker nests unrelated tasks while it waits (see
 * worker_await_loop() in future.c). */
#define WEFT__HELP_DEPTH_MAX 16

/* One helping wait on a worker's stack, linked to the one it runs
 * inside (worker_await() in future.c). */
struct weft__await_rec {
    struct weft_future *f;
    struct weft__await_rec *up;
};

struct weft__slab {
    struct weft__slab *next;
    uint32_t nobj; /* objects in this slab */
    /* objects follow, cache-line aligned */
};

struct weft__worker {
    struct weft__deque dq; /* own deque: owner pushes/pops, others steal */

    /* Owner-only fields (read by others only as statistics). */
    weft_executor_t *ex;
    unsigned int index;
    unsigned int help_depth;         /* nested helping (await) depth */
    struct weft__await_rec *await_top; /* innermost helping wait (future.c) */
    uint32_t cancelling;             /* copy of "run_state == CANCELLING",
                                        set by shutdown; relaxed */
    struct weft_future *free_list;   /* pool: owner only */
    unsigned int free_count;         /* what the free list gained
                                        since the last refill: puts
                                        minus gets, floored at 0; puts
                                        past WEFT__LOCAL_FREE_MAX spill */
    unsigned int spill_count;        /* objects on spill */
    struct weft_future *spill;       /* puts past WEFT__LOCAL_FREE_MAX,
                                        bound for the free stack in
                                        batches; owner only */
    struct weft_future *spill_tail;  /* its last object */
    struct weft__slab *slabs;        /* slabs this worker allocated */
    uint64_t rng;                    /* victim selection */
    pthread_t thread;
    int started;
    struct weft__trace_lane trace;   /* task trace (trace.h): buf set by
                                        trace begin/end under its lock */

    /* Counters: written by the owner with relaxed stores, read by
     * anyone (weft_executor_stats, quiescence detection). */
    uint64_t spawned;   /* tasks pushed on dq */
    uint64_t ended;     /* tasks this worker completed (ran or cancelled) */
    uint64_t cancelled; /* tasks ended cancelled without running */
    uint64_t stolen;
    uint64_t steal_failed;
    uint64_t injected;
    uint64_t parks;
    uint64_t idle_ns;   /* time spent parked */
} __attribute__((aligned(WEFT__CACHELINE)));

/* Executor run state (ex->run_state). */
#define WEFT__RUN_ACCEPTING 0u
#define WEFT__RUN_DRAINING 1u  /* shutdown(DRAIN): refuse outside spawns */
#define WEFT__RUN_CANCELLING 2u /* shutdown(CANCEL): unstarted end cancelled */

struct weft_executor {
    unsigned int nworkers;
    struct weft__worker *workers; /* array of nworkers */
    struct weft__parker idle;     /* idle workers sleep here */
    uint32_t run_state;           /* WEFT__RUN_*; written under ext_lock
                                     with release, read relaxed/acquire */
    uint32_t stop;                /* workers exit when set (destroy) */
    uint64_t idle_spin_ns;        /* idle spin before parking (config) */
    int64_t steal_batch;          /* most tasks per steal, 1..32 (config) */

    /*
     * ext_lock protects: the injection queue (inj_head, inj_tail), the
     * executor-level slab list (ext_slabs) and free list (ext_free), ext_submitted
     * updates from non-worker threads, and the run_state transitions.
     */
    pthread_mutex_t ext_lock;
    struct weft_future *inj_head;
    struct weft_future *inj_tail;
    uint64_t inj_count;           /* written under ext_lock; read relaxed
                                     as an emptiness hint */
    struct weft__slab *ext_slabs;
    struct weft_future *ext_free; /* free objects for outside spawns */
    uint64_t ext_submitted;       /* tasks injected from outside */
    uint64_t next_task_id;        /* faa: lazily assigned task ids */

    /* Executor-wide free stack: Treiber push (CAS), pop-all (fas), so no
     * ABA. Fed by non-worker frees and by workers with full free lists. */
    struct weft_future *free_stack;

    struct weft__parker quiet;    /* shutdown and create waiters sleep
                                     here */
    uint32_t nstarted;            /* workers past their start hook; faa */

    struct weft__timer timer;     /* deadline observer (timer.c) */
    struct weft__trace_ctl trace; /* task trace (trace.c) */

    weft_executor_config_t cfg;
    char name_prefix[16];
    struct weft__debug *debug;    /* debug-mode registry, or NULL when
                                     off; immutable once workers run */
    void *spare;                  /* fas: the last large combinator
                                     block given back, kept for the
                                     next one (weft__block_get());
                                     freed by exec_free */
};

/* The worker running on this thread, or NULL. */
extern __thread struct weft__worker *weft__tls_worker
    __attribute__((tls_model("initial-exec")));

/* The calling thread's worker if it belongs to ex, else NULL. */
static inline struct weft__worker *
weft__worker_of(const weft_executor_t *ex)
{
    struct weft__worker *w = weft__tls_worker;
    return (w != NULL && w->ex == ex) ? w : NULL;
}

/* Slow paths of the pool. */
struct weft_future *weft__pool_refill(struct weft__worker *w);
struct weft_future *weft__pool_get_external(weft_executor_t *ex);
/* Push f on its executor's free stack (any thread). */
void weft__pool_put_slow(struct weft_future *f);
/* Objects a worker's spill collects (weft__pool_spill_add()) before they
 * go to the free stack, with one CAS. */
#define WEFT__SPILL_BATCH 256
/* Push w's full spill on the free stack (weft__pool_spill_add()). */
void weft__pool_spill_flush(struct weft__worker *w);

/*
 * Large per-call blocks (a gather's children and watch nodes, a bulk
 * gather's ledger). weft__block_get() returns at least size bytes, aligned
 * to a cache line, or NULL: ex's spare when one is kept and big enough, else
 * a new allocation. weft__block_put() gives the block back; the executor
 * keeps one block between WEFT__SPARE_MIN and WEFT__SPARE_MAX bytes for
 * the next call, so a gather of 10^6 children does not fault in thousands
 * of fresh pages every time. Any thread; lock-free (one fas each).
 */
#define WEFT__SPARE_MIN ((size_t)64 * 1024)
#define WEFT__SPARE_MAX ((size_t)64 * 1024 * 1024)
void *weft__block_get(weft_executor_t *ex, size_t size);
void weft__block_put(weft_executor_t *ex, void *block);

/* Take a future object for a new task. NULL on allocation failure. */
static inline struct weft_future *
weft__pool_get(struct weft__worker *w)
{
    struct weft_future *f = w->free_list;
    if (__builtin_expect(f == NULL, 0)) {
        return weft__pool_refill(w);
    }
    w->free_list = f->pool_next;
    w->free_count -= w->free_count != 0;
    return f;
}

/*
 * Give up f's hold on f->token, if any (none when the token is borrowed:
 * WEFT__F_TOKEN_BORROWED), and clear the field. f->token is set.
 */
static inline void
weft__future_drop_token(struct weft_future *f)
{
    /* Relaxed: the bit was set before f was published and never
     * changes. */
    if (!(weft__load_relaxed_u32(&f->state) & WEFT__F_TOKEN_BORROWED)) {
        weft_token_release(f->token);
    }
    f->token = NULL;
}

/* Give up f->error: release it unless it is borrowed (future.h). Leaves
 * f->started (and so the BORROWED bit) to the caller. */
static inline void
weft__future_drop_error(struct weft_future *f)
{
    /* Relaxed: written by the runner before the outcome publish that the
     * caller (f's last holder or completer) has seen. */
    if (!(weft__load_relaxed_u32(&f->started) & WEFT__ERROR_BORROWED)) {
        weft_error_release(f->error);
    }
    f->error = NULL;
}

/* Restore the free-object invariant: cold fields zero (future.h). */
static inline void
weft__future_reset_cold(struct weft_future *f)
{
    /*
     * A plain task that succeeded, with no request, task token or id (no
     * kind bit, no COLD: see future.h), set no cold field: leave its cold
     * lines alone. Continuations and watches (CONT) need nothing here:
     * the completer cleared both lists (future_complete()).
     * Relaxed: f is dead; its last holder or completer, which is us, saw
     * the final word.
     */
    if (__builtin_expect(weft__future_kind(f) == 0 &&
                             (weft__load_relaxed_u32(&f->state) &
                              (WEFT__PHASE_MASK | WEFT__F_COLD)) ==
                                 WEFT__SUCCEEDED,
                         1)) {
        return;
    }
    if (__builtin_expect(weft__future_kind(f) != 0, 0)) {
        if (weft__future_kind(f) & WEFT__K_DEBUG) {
            weft__debug_freed(f);
        }
        if (weft__future_kind(f) & WEFT__K_PROMISE) {
            /* The promise's hold on its combinator/group state. */
            void *state = f->arg;
            (*(const struct weft__promise_ops *const *)state)->release(state);
        }
        f->release = NULL;
        f->name = NULL;
        f->antecedent = NULL;
        /* Still set only when the task never ran (a refused spawn):
         * task_after_body() releases and clears it otherwise. */
        if (f->token != NULL) {
            weft__future_drop_token(f);
        }
        f->file = NULL;
        f->func = NULL;
        f->line = 0;
    }
    if (__builtin_expect(f->error != NULL, 0)) {
        weft__future_drop_error(f);
    }
    if (__builtin_expect(((uintptr_t)f->cancel_req | (uintptr_t)f->ttoken) !=
                             0,
                         0)) {
        weft__future_reset_cancel(f);
    }
    f->id = 0;
    f->started = 0;
}

/* f to w's spill (w is f's executor's worker, the caller); the spill
 * goes to the free stack WEFT__SPILL_BATCH at a time. Not in debug mode,
 * whose objects go to the stack one by one (weft__pool_keep()). */
static inline void
weft__pool_spill_add(struct weft__worker *w, struct weft_future *f)
{
    f->pool_next = w->spill;
    if (w->spill == NULL) {
        w->spill_tail = f;
    }
    w->spill = f;
    if (__builtin_expect(++w->spill_count >= WEFT__SPILL_BATCH, 0)) {
        weft__pool_spill_flush(w);
    }
}

/*
 * f (dead, cold fields reset) to w, the caller, which is a worker of f's
 * executor: its free list while the list has gained fewer than
 * WEFT__LOCAL_FREE_MAX since the last refill, else its spill; in debug
 * mode (free_count pinned at the cap) straight to the free stack.
 */
static inline void
weft__pool_keep(struct weft__worker *w, struct weft_future *f)
{
    if (__builtin_expect(w->free_count < WEFT__LOCAL_FREE_MAX, 1)) {
        w->free_count++;
        f->pool_next = w->free_list;
        w->free_list = f;
        return;
    }
    if (__builtin_expect(w->ex->debug != NULL, 0)) {
        /* Debug mode: every object straight to the stack (debug.c). */
        weft__pool_put_slow(f);
        return;
    }
    weft__pool_spill_add(w, f);
}

/* Return an object to the calling worker's own list: the inline join
 * path, where w spawned f, and f has only hot fields in use. */
static inline void
weft__pool_put_local(struct weft__worker *w, struct weft_future *f)
{
#if WEFT_DEBUG >= 1
    f->fn = NULL;
#endif
    /* One test for both: an error, or a token the body made for itself
     * (weft_task_token). */
    if (__builtin_expect(((uintptr_t)f->error | (uintptr_t)f->ttoken) != 0,
                         0)) {
        if (f->error != NULL) {
            weft__future_drop_error(f);
        }
        weft__future_reset_cancel(f);
    }
    f->id = 0;
    /* Bounded like weft__pool_put(): a worker that joins what another
     * worker's pool will need (a fan-out whose spawner changes from one
     * run to the next) does not hoard it. */
    weft__pool_keep(w, f);
}

/* Return a future object. w is the calling worker (any executor's) or
 * NULL; objects go to the caller's own pool when it belongs to f's
 * executor (while its list has gained fewer than WEFT__LOCAL_FREE_MAX
 * since the last refill; the rest through its spill), else to the
 * executor-wide free stack. */
static inline void
weft__pool_put(struct weft__worker *w, struct weft_future *f)
{
    weft__future_reset_cold(f);
#if WEFT_DEBUG >= 1
    f->fn = NULL;
#endif
    if (__builtin_expect(w != NULL && w->ex == f->ex, 1)) {
        weft__pool_keep(w, f);
        return;
    }
    weft__pool_put_slow(f);
}

/*
 * Counter bump by the single writer (the owning worker). A task is
 * counted in "spawned" before the push that makes it visible, so no
 * thread can end (and count) it before it is counted as queued.
 * Pairs with: the acquire loads in exec_quiescent() (executor.c): a task's
 * "spawned" count is visible before anything that observed the task's end.
 * Release is free on x86; other readers (statistics) need no ordering.
 */
static inline void
weft__counter_inc(uint64_t *c)
{
    /* Pairs with: the acquire loads in exec_quiescent() (see above). */
    weft__store_rel_u64(c, weft__load_relaxed_u64(c) + 1);
}

/* weft__counter_inc() by n (a batch steal). */
static inline void
weft__counter_add(uint64_t *c, uint64_t n)
{
    /* Pairs with: the acquire loads in exec_quiescent(), as above. */
    weft__store_rel_u64(c, weft__load_relaxed_u64(c) + n);
}

/* Undo weft__counter_inc() for a task whose push failed (never visible). */
static inline void
weft__counter_dec(uint64_t *c)
{
    /* Pairs with: the acquire loads in exec_quiescent(), as above. */
    weft__store_rel_u64(c, weft__load_relaxed_u64(c) - 1);
}

/*
 * Queue f for execution: on w's deque (w must be the caller's worker of
 * f->ex) or, with w NULL, on the injection queue.
 * Returns WEFT_OK, WEFT_ENOMEM (deque growth failed), WEFT_ESHUTDOWN
 * (injection refused). On failure f was not queued.
 */
weft_status_t weft__exec_enqueue(weft_executor_t *ex, struct weft__worker *w,
                                 struct weft_future *f);

/*
 * Find one task to run for w: own deque, then a random victim, then the
 * injection queue. Returns NULL if nothing was found in one pass.
 */
struct weft_future *weft__worker_find(struct weft__worker *w);

/* Try to steal from victim worker v on behalf of w. NULL if none. */
struct weft_future *weft__worker_steal_from(struct weft__worker *w,
                                            struct weft__worker *v);

/* Take one task from the injection queue, or NULL. */
struct weft_future *weft__inject_take(weft_executor_t *ex);

/* Whether unstarted tasks must end cancelled (shutdown CANCEL). */
static inline bool
weft__worker_cancelling(const struct weft__worker *w)
{
    /* Relaxed: a late view runs one more task body, which the shutdown
     * contract allows (cancellation is cooperative); the per-worker copy
     * saves a pointer chase on every task. */
    return weft__load_relaxed_u32(&w->cancelling) != 0;
}

/* Trace f's end without running (trace.h), on w's lane, or on the
 * executor's outside lane when w is NULL. */
static inline void
weft__trace_ended_unrun(struct weft__worker *w, struct weft_future *f)
{
    if (w != NULL) {
        weft__trace_ended_unrun_lane(&w->trace, false, f);
    } else {
        weft__trace_ended_unrun_lane(&f->ex->trace.outside, true, f);
    }
}

#endif /* WEFT_EXECUTOR_EXECUTOR_H */
