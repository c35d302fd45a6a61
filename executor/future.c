/*
 * future.c - spawning, running, completing and awaiting tasks.
 *
 * DESIGN
 *
 * The object and its state word are described in future.h. This file holds
 * the three protocols that touch the state word from several threads:
 *
 * Completion vs waiting (futex on f->state):
 *
 *   completer                              waiter (holds a reference)
 *   ---------                              --------------------------
 *   write f->status, f->value              s = load_acq(state)
 *   old = CAS(state, old, old|outcome)     if done(s): read status; return
 *   if old & WAITER:                       CAS(state, s, s|WAITER)
 *       futex_wake(&state)                 futex_wait(&state, s|WAITER)
 *
 * The CAS that publishes the outcome and the CAS that sets WAITER are
 * read-modify-writes of one word, so they are totally ordered: either the
 * waiter's CAS comes first (the completer sees WAITER and wakes), or the
 * completer's comes first (the waiter's CAS fails on the changed word, or
 * futex_wait returns at once because the word no longer equals s|WAITER).
 * No wake-up is lost. After its CAS the completer touches f only to wake
 * (a syscall on the address; if the waiter already freed f the wake is a
 * harmless spurious one, since pool memory stays mapped) and, when CONT
 * was set, to take f->conts and f->watches and clear them (a queued
 * continuation and a watcher each hold a reference, so f is alive until
 * the completer has scheduled the one and run the other).
 *
 * Release vs completion: the last release sets DETACHED with a CAS unless
 * the task has ended (then it frees); the completer frees if its CAS saw
 * DETACHED. One word, so exactly one of them frees.
 *
 * Continuation registration takes the LOCK bit with a CAS while the task
 * has not ended, links the continuation, and clears LOCK while setting
 * CONT. The completer spins while LOCK is set, so a continuation is either
 * linked before the outcome is published (and scheduled by the completer)
 * or sees the outcome and is scheduled by the registrant.
 *
 * Awaiting on a worker (weft_join, weft_future_wait):
 *   1. If the task was pushed on the waiter's own deque, pop down to its
 *      slot, running what was pushed after it; the pop that returns the
 *      task itself runs it inline. With the only reference held, no other
 *      thread can observe it, so it completes with plain stores.
 *   2. Otherwise help until it ends: steal from the worker that stole it
 *      (leapfrogging: its deque holds the task's descendants, so this
 *      helps the awaited task and keeps the stack bounded), else run any
 *      task while the nesting of unrelated help stays under
 *      WEFT__HELP_DEPTH_MAX, else spin with ck_backoff, else park on the
 *      state word (waking idle workers first if the own deque holds work).
 *   Stack depth is bounded: phase 1 runs only tasks younger than the
 *   awaited one (as the sequential program would), leapfrogging runs only
 *   its descendants, and other help nests at most WEFT__HELP_DEPTH_MAX
 *   deep; a waiter whose help depth is exhausted parks for at most 1 ms
 *   and then helps once more past the limit, so a task that only it could
 *   still reach (for example in the injection queue of a 1-worker
 *   executor) is never stranded: the stack grows by one frame per
 *   millisecond of such waiting, not unboundedly fast. Awaiting unrelated
 *   work from deep inside nested waits is the pattern to avoid.
 *
 * Invariants:
 *  1. f->state's phase leaves QUEUED exactly once, by a CAS (shared path)
 *     or a plain store when the sole holder ran the task inline.
 *  2. status/value are written before that publish and read after an
 *     acquire load of state that saw it.
 *  3. An object is returned to a pool exactly once: by the completer (saw
 *     DETACHED), by the last release (saw an ended task), or by the inline
 *     joiner that held the only reference.
 *  4. A continuation is scheduled exactly once: by the completer (linked
 *     before the outcome) or by its registrant (saw the outcome).
 */
#include "future.h"

#include <weft/future.h>

#include "executor.h"
#include "frame.h"
#include "primitives/cancel.h"
#include "primitives/debug.h"
#include "primitives/error.h"

#include <limits.h>
#include <stdarg.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WEFT__AWAIT_SPIN_ROUNDS 64
#define WEFT__AWAIT_PARK_NS 1000000ull

/* ---- futex on the state word ---------------------------------------- */

static void
futex_wake_all(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL,
            NULL, 0);
}

void
weft__futex_wake_all(uint32_t *addr)
{
    futex_wake_all(addr);
}

static void
futex_wait_until(uint32_t *addr, uint32_t expected, uint64_t deadline_ns)
{
    struct timespec ts;
    struct timespec *tsp = NULL;
    if (deadline_ns != 0) {
        ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
        ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
        tsp = &ts;
    }
    syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected,
            tsp, NULL, FUTEX_BITSET_MATCH_ANY);
}

/* ---- names ----------------------------------------------------------- */

const char *
weft_outcome_name(weft_outcome_t outcome)
{
    switch (outcome) {
    case WEFT_OUTCOME_PENDING:
        return "pending";
    case WEFT_OUTCOME_SUCCEEDED:
        return "succeeded";
    case WEFT_OUTCOME_FAILED:
        return "failed";
    case WEFT_OUTCOME_CANCELLED:
        return "cancelled";
    }
    return "invalid";
}

/* ---- init and run ---------------------------------------------------- */

/*
 * Fill the hot line of a fresh object (cold fields are already zero: the
 * free-object invariant in future.h).
 */
static inline void
future_init(struct weft_future *f, weft_fn_t fn, void *arg, bool detached)
{
    f->fn = fn;
    f->arg = arg;
    /*
     * Unpaired: the object is private to the spawner until the enqueue,
     * whose release (deque push or ext_lock) publishes these fields.
     */
    weft__store_relaxed_u32(&f->state,
                            detached ? WEFT__F_DETACHED : WEFT__QUEUED);
    /* Unpaired: as above. */
    weft__store_relaxed_u32(&f->refs, detached ? 0 : 1);
    /* Unpaired: as above. */
    weft__store_relaxed_u32(&f->thief, 0);
    /* Unpaired: as above. */
    weft__store_relaxed_u32(&f->started, 0);
    f->value.u64 = 0;
}

/* Set the optional cold fields of a fresh, still private object. */
static inline void
future_set_cold(struct weft_future *f, const weft_spawn_opts_t *opts,
                bool borrow_token)
{
    if (opts == NULL) {
        return;
    }
    uint32_t kind = 0;
    if (opts->release != NULL) {
        f->release = opts->release;
        kind |= WEFT__K_RELEASE;
    }
    if (opts->name != NULL) {
        f->name = opts->name;
        kind |= WEFT__K_NAME;
    }
    if (opts->token != NULL) {
        if (borrow_token) {
            /* Unpaired: f is still private (see future_init). */
            weft__store_relaxed_u32(&f->state,
                                    weft__load_relaxed_u32(&f->state) |
                                        WEFT__F_TOKEN_BORROWED);
        } else {
            (void)weft_token_retain(opts->token);
        }
        f->token = opts->token;
        kind |= WEFT__K_TOKEN;
    }
    if (opts->file != NULL || opts->func != NULL) {
        f->file = opts->file;
        f->func = opts->func;
        f->line = opts->line;
        kind |= WEFT__K_SITE;
    }
    /* Unpaired: f is still private (see future_init). */
    weft__store_relaxed_u32(&f->refs, weft__load_relaxed_u32(&f->refs) |
                                          kind << WEFT__KIND_SHIFT);
}

/*
 * Run the body unless cancellation was requested first (inline join
 * paths; weft__task_run is the general one). On a worker.
 */
static inline weft_status_t
task_body(struct weft__worker *w, struct weft_future *f)
{
    if (__builtin_expect(weft__worker_cancelling(w), 0)) {
        weft__counter_inc(&w->cancelled);
        weft__trace_ended_unrun(w, f);
        return WEFT_ECANCELED;
    }
    return weft__trace_body(&w->trace, f);
}

/*
 * Work done after the body (or instead of it) in every path: the arg
 * hook, the continuation's reference to its antecedent, the token.
 */
static inline void
task_after_body(struct weft_future *f)
{
    if (__builtin_expect(weft__future_kind(f) != 0, 0)) {
        if (f->release != NULL) {
            f->release(f->arg);
        }
        if (f->antecedent != NULL) {
            struct weft_future *a = f->antecedent;
            f->antecedent = NULL;
            (void)weft_future_release(a);
        }
        if (f->token != NULL) {
            weft__future_drop_token(f);
        }
    }
}

static uint64_t future_id(struct weft_future *f);

/* Record origin (task name, id, spawn site) on an error only f holds. */
static void
future_stamp_error(struct weft_future *f, weft_error_t *e)
{
    (void)weft__error_set_task(e, f->name, future_id(f));
    if (weft__future_kind(f) & WEFT__K_SITE) {
        (void)weft__error_set_site(e, f->file, f->line, f->func);
    }
}

/* Make the reason of a cancellation that f did not record itself. */
static weft_error_t *
future_cancel_reason(struct weft_future *f, weft_status_t why)
{
    weft_error_t *e =
        /* Pairs with: the CAS in weft_future_cancel() that set it. */
        weft__load_acq_ptr((void *const *)&f->cancel_req);
    if (e != NULL) {
        (void)weft_error_retain(e);
        return e;
    }
    /* A body that cancelled its own token (weft_task_token) gave the
     * reason there; it is also where a spawn token's reason propagates. */
    /* Pairs with: the CAS that installs it in weft_task_token(), which
     * another thread running a part of the same task (a stolen frame)
     * may be doing right now. */
    weft_token_t *tt = weft__load_acq_ptr((void *const *)&f->ttoken);
    if (tt != NULL && weft_token_is_cancelled(tt) &&
        weft_token_reason(tt, &e) == WEFT_OK && e != NULL) {
        (void)weft_error_retain(e);
        return e;
    }
    if (f->token != NULL && weft_token_is_cancelled(f->token) &&
        weft_token_reason(f->token, &e) == WEFT_OK && e != NULL) {
        (void)weft_error_retain(e);
        return e;
    }
    if (why == WEFT_ENOMEM) {
        return weft__error_enomem();
    }
    if (why == WEFT_ESHUTDOWN) {
        if (weft_error_create(&e, WEFT_ESHUTDOWN,
                              "cancelled by executor shutdown") == WEFT_OK) {
            future_stamp_error(f, e);
        }
        return e;
    }
    return weft__error_canceled();
}

void
weft__task_settle_error(weft_error_t **slot, struct weft_future *root,
                        const char *what, weft_status_t st, weft_status_t why)
{
    if (st == WEFT_OK) {
        if (__builtin_expect(*slot != NULL, 0)) {
            weft_error_release(*slot);
            *slot = NULL;
        }
        return;
    }
    if (st == WEFT_ECANCELED) {
        /* A cancelled task reports why it was cancelled, even if its
         * body recorded a failure before it saw the cancellation. */
        if (*slot != NULL) {
            weft_error_release(*slot);
        }
        *slot = future_cancel_reason(root, why);
        return;
    }
    if (*slot != NULL) {
        return;
    }
    weft_error_t *e = NULL;
    weft_status_t cs;
    if ((int)st > 0) {
        cs = weft_error_create(&e, st, "%s", weft_status_str(st));
    } else {
        /* Out of contract: failures are positive codes. Still a failure,
         * and still explained. */
        cs = weft_error_create(&e, WEFT_EINVAL, "%s returned invalid status %d",
                               what, (int)st);
    }
    if (cs == WEFT_OK) {
        future_stamp_error(root, e);
    }
    *slot = e; /* on ENOMEM, the static out-of-memory error */
}

/*
 * The reason of a cancellation that comes from f's borrowed token (as
 * future_cancel_reason() would find it: no cancel request, no task token
 * of its own), or NULL. polled: the run path has just polled the token
 * (why == WEFT_ECANCELED in task_execute()), so a passed deadline has
 * already cancelled it; else one poll here does that.
 */
static weft_error_t *
future_borrowed_reason(struct weft_future *f, bool polled)
{
    weft_error_t *e = NULL;
    if (!(weft__load_relaxed_u32(&f->state) & WEFT__F_TOKEN_BORROWED) ||
        f->token == NULL ||
        /* Pairs with: the CAS in weft_future_cancel() that set it. */
        weft__load_acq_ptr((void *const *)&f->cancel_req) != NULL ||
        /* Pairs with: the CAS that installs it in weft_task_token(). */
        weft__load_acq_ptr((void *const *)&f->ttoken) != NULL ||
        (!polled && !weft_token_is_cancelled(f->token)) ||
        (e = weft__token_reason_if_cancelled(f->token)) == NULL) {
        return NULL;
    }
    return e;
}

/*
 * Make f->error agree with status st (weft__task_settle_error()). A task
 * cancelled through a borrowed token (a group's child, a bulk gather's
 * piece) points at the token's reason without retaining it: the token's
 * maker keeps the token, and so its reason, until after f is freed, and a
 * mass cancellation then does not have every worker write the reason's
 * reference count twice per task.
 */
static void
future_finish_error(struct weft_future *f, weft_status_t st, weft_status_t why)
{
    if (st == WEFT_ECANCELED) {
        weft_error_t *e = future_borrowed_reason(f, why == WEFT_ECANCELED);
        if (e != NULL) {
            if (f->error != NULL) {
                weft__future_drop_error(f);
            }
            f->error = e;
            /* Relaxed: written by the runner only (see future.h). */
            weft__store_relaxed_u32(&f->started,
                                    weft__load_relaxed_u32(&f->started) |
                                        WEFT__ERROR_BORROWED);
            return;
        }
    }
    weft__task_settle_error(&f->error, f, "task", st, why);
}

/*
 * Whether a cancel request is set on f (a hint, for the run paths). The
 * request sits on a cold line; the COLD bit of the hot state word says
 * whether to look.
 */
static inline bool
future_cancel_requested(const struct weft_future *f)
{
    /* Pairs with: the fetch_or of COLD in weft_future_cancel(), made
     * after its CAS of f->cancel_req: seeing the bit, we see the
     * request. */
    if (__builtin_expect(
            !(weft__load_acq_u32(&f->state) & WEFT__F_COLD), 1)) {
        return false;
    }
    /* Relaxed: a hint; the reason is read with acquire in
     * future_cancel_reason(). */
    return weft__load_relaxed_ptr((void *const *)&f->cancel_req) != NULL;
}

/*
 * Why f must end without running its body: WEFT_ESHUTDOWN (the executor
 * is cancelling), WEFT_ECANCELED (its token or a cancel request), or
 * WEFT_OK to run it. On a worker.
 */
static inline weft_status_t
task_skip_reason(struct weft__worker *w, struct weft_future *f)
{
    if (__builtin_expect(weft__worker_cancelling(w), 0)) {
        return WEFT_ESHUTDOWN;
    }
    if (__builtin_expect(((weft__future_kind(f) & WEFT__K_TOKEN) &&
                          weft_token_is_cancelled(f->token)) ||
                             future_cancel_requested(f),
                         0)) {
        return WEFT_ECANCELED;
    }
    return WEFT_OK;
}

/*
 * Run f's body, or end it cancelled without running when the executor is
 * cancelling or f's token is cancelled; then settle f->error and run the
 * after-body work. Returns the status. A success is not stored in
 * f->status (see weft__future_status_of()), so a task with no token,
 * request or recorded error touches only its hot line here. Every run
 * path except the fork-join fast path in weft_join() goes through here.
 * On a worker.
 */
static weft_status_t
task_execute(struct weft__worker *w, struct weft_future *f)
{
    weft_status_t why = task_skip_reason(w, f);
    weft_status_t st;
    if (why != WEFT_OK) {
        weft__counter_inc(&w->cancelled);
        st = WEFT_ECANCELED;
        f->status = st;
        weft__trace_ended_unrun(w, f);
    } else {
        /* Relaxed: informational ("did the body start"). */
        weft__store_relaxed_u32(&f->started, WEFT__STARTED);
        st = weft__trace_body(&w->trace, f);
        if (__builtin_expect(st != WEFT_OK, 0)) {
            f->status = st;
        }
    }
    /* Relaxed: written by this thread (task_record_error). */
    if (__builtin_expect(st != WEFT_OK || (weft__load_relaxed_u32(&f->started) &
                                           WEFT__STARTED_ERROR),
                         0)) {
        future_finish_error(f, st, why);
    }
    task_after_body(f);
    return st;
}

static void cont_schedule(struct weft__worker *w, struct weft_future *c);

/* weft__future_complete_shared() with the phase given. */
static void
future_complete(struct weft__worker *w, struct weft_future *f, uint32_t phase)
{
    /* Relaxed: the CAS below re-checks the value it builds on. */
    uint32_t old = weft__load_relaxed_u32(&f->state);
    for (;;) {
        if (old & WEFT__F_LOCK) {
            weft__cpu_relax();
            /* Relaxed: re-read for the CAS below. */
            old = weft__load_relaxed_u32(&f->state);
            continue;
        }
        uint32_t nv = (old & ~WEFT__PHASE_MASK) | phase;
        /*
         * Publish the outcome (status and value written before).
         * Pairs with: the acquire loads of f->state in the waiters
         * (future_await, weft_future_is_done, ...), the WAITER CAS in
         * future_park(), the DETACHED CAS in weft_future_release() and
         * the LOCK CAS in weft_future_then().
         */
        if (weft__cas_value_u32(&f->state, old, nv, &old)) {
            break;
        }
    }
    /* After the CAS: see the file comment for what may still be read. */
    struct weft_future *conts = NULL;
    struct weft__watch *watches = NULL;
    if (old & WEFT__F_CONT) {
        conts = f->conts;
        watches = f->watches;
        if (((uintptr_t)conts | (uintptr_t)watches) != 0) {
            /*
             * Clear the lists while their lines are in cache, so the pool
             * put need not touch them (weft__future_reset_cold). f is
             * alive: each queued continuation and each watcher holds a
             * reference, dropped only after the loops below; and no
             * other thread writes the lists once the outcome is out.
             */
            f->conts = NULL;
            f->watches = NULL;
        }
    }
    if (old & WEFT__F_WAITER) {
        futex_wake_all(&f->state);
    }
    while (conts != NULL) {
        struct weft_future *next = conts->next;
        cont_schedule(w, conts);
        conts = next;
    }
    if (old & WEFT__F_DETACHED) {
        /* No watch can be registered: a watcher holds a reference, so
         * the object is never detached while one is pending. */
        weft__pool_put(w, f);
        return;
    }
    /*
     * Watches run last. Each watcher holds its own reference to f until
     * its fn has run, so f stays alive through the loop; next is read
     * first because a fn may free its own node.
     */
    while (watches != NULL) {
        struct weft__watch *next = watches->next;
        (*watches->fn)(watches, w, f);
        watches = next;
    }
}

void
weft__future_complete_shared(struct weft__worker *w, struct weft_future *f)
{
    future_complete(w, f, weft__phase_of_status(f->status));
}

void
weft__task_run(struct weft__worker *w, struct weft_future *f)
{
    if (__builtin_expect(weft__is_frame(f), 0)) {
        /* A forked frame taken by a thief or by a helping pop. */
        weft__frame_run(w, f);
        return;
    }
    weft_status_t st = task_execute(w, f);
    future_complete(w, f, weft__phase_of_status(st));
    weft__counter_inc(&w->ended);
}

/*
 * End a task that was never queued (so never counted) as cancelled
 * without running it; st says why (WEFT_ESHUTDOWN or WEFT_ENOMEM).
 */
static void
future_end_unqueued(struct weft__worker *w, struct weft_future *f,
                    weft_status_t st)
{
    f->status = WEFT_ECANCELED;
    weft__trace_ended_unrun(w, f);
    future_finish_error(f, WEFT_ECANCELED, st);
    task_after_body(f);
    weft__future_complete_shared(w, f);
}

/* Queue continuation c now that its antecedent has ended. */
static void
cont_schedule(struct weft__worker *w, struct weft_future *c)
{
    weft_executor_t *ex = c->ex;
    struct weft__worker *cw = (w != NULL && w->ex == ex) ? w : NULL;
    /* c->spawner stays NULL (set in weft_future_then before c was
     * published): its holder may be reading it, and a continuation is
     * never joined through the fork-join fast path. */
    weft_status_t st = weft__exec_enqueue(ex, cw, c);
    if (st != WEFT_OK) {
        /* Refused (shutdown) or no memory to queue it: it ends
         * cancelled, with a reason saying which. */
        future_end_unqueued(cw, c, st);
    }
}

/* ---- spawning -------------------------------------------------------- */

/* A spawn that is refused still runs the release hook, exactly once. */
static weft_status_t
spawn_refuse(weft_release_fn_t rel, void *arg, weft_status_t st)
{
    if (rel != NULL) {
        rel(arg);
    }
    return st;
}

/*
 * Every spawn but the fast path: options, outside threads, a full deque,
 * an empty pool, bad input. weft__exec_enqueue() does the queueing for
 * both a worker's deque and the injection queue.
 */
static weft_status_t __attribute__((noinline))
spawn_slow(weft_executor_t *ex, const weft_spawn_opts_t *opts, weft_fn_t fn,
           void *arg, weft_future_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    weft_release_fn_t rel = opts != NULL ? opts->release : NULL;
    if (ex == NULL || fn == NULL) {
        return spawn_refuse(rel, arg, WEFT_EINVAL);
    }
    struct weft__worker *w = weft__worker_of(ex);
    /* Relaxed: an early refusal for outside spawns; weft__exec_enqueue()
     * re-checks under ext_lock. */
    if (w == NULL &&
        weft__load_relaxed_u32(&ex->run_state) != WEFT__RUN_ACCEPTING) {
        return spawn_refuse(rel, arg, WEFT_ESHUTDOWN);
    }
    struct weft_future *f =
        w != NULL ? weft__pool_get(w) : weft__pool_get_external(ex);
    if (f == NULL) {
        return spawn_refuse(rel, arg, WEFT_ENOMEM);
    }
    future_init(f, fn, arg, out == NULL);
    future_set_cold(f, opts, false);
    weft__debug_track(ex->debug, f, opts, out == NULL ? WEFT__DBG_DETACHED : 0);
    f->spawner = w;
    /* Unpaired: the owner reads its own bottom. */
    f->slot = w != NULL ? w->dq.head : 0;
    weft_status_t st = weft__exec_enqueue(ex, w, f);
    if (st != WEFT_OK) {
        /* Never queued: the pool put drops the token reference. */
        weft__pool_put(w, f);
        return spawn_refuse(rel, arg, st);
    }
    if (out != NULL) {
        *out = f;
    }
    return WEFT_OK;
}

static weft_status_t __attribute__((noinline))
spawn_wake(weft_executor_t *ex)
{
    weft__parker_wake_slow(&ex->idle);
    return WEFT_OK;
}

/*
 * The spawn fast path: a worker of ex with a free object and room in its
 * deque. No call, no locked instruction, no allocation; every other case
 * is a tail call to spawn_slow(), so no register is saved here.
 */
weft_status_t
weft_spawn(weft_executor_t *ex, weft_fn_t fn, void *arg, weft_future_t **out)
{
    struct weft__worker *w = weft__tls_worker;
    if (__builtin_expect(w == NULL || w->ex != ex || fn == NULL ||
                             out == NULL,
                         0)) {
        return spawn_slow(ex, NULL, fn, arg, out);
    }
    struct weft_future *f = w->free_list;
    if (__builtin_expect(f == NULL, 0)) {
        return spawn_slow(ex, NULL, fn, arg, out);
    }
    /* Off the list first: the link shares its word with f->slot. */
    w->free_list = f->pool_next;
    w->free_count -= w->free_count != 0; /* see weft__pool_get() */
    /* The owner's own push index (head: see deque.h). */
    int64_t b = w->dq.head;
    f->fn = fn;
    f->arg = arg;
    f->spawner = w;
    f->slot = b;
    f->value.u64 = 0;
    /*
     * Unpaired: f is private until the push below publishes it (release
     * store of bottom). One store sets state = QUEUED and refs = 1, one
     * sets thief = started = 0 (little-endian layout, see future.h).
     */
    f->state_refs_init = (uint64_t)1 << 32;
    f->thief_started_init = 0;
    /* Counted before it is visible (see weft__counter_inc). */
    weft__counter_inc(&w->spawned);
    if (__builtin_expect(!weft__deque_try_push(&w->dq, f), 0)) {
        weft__counter_dec(&w->spawned);
        f->pool_next = w->free_list; /* back on the list, unused */
        w->free_list = f;
        w->free_count++;
        return spawn_slow(ex, NULL, fn, arg, out);
    }
    *out = f;
    if (__builtin_expect(weft__parker_sleepers(&ex->idle) != 0, 0)) {
        return spawn_wake(ex);
    }
    return WEFT_OK;
}

weft_status_t
weft_spawn_ex(weft_executor_t *ex, const weft_spawn_opts_t *opts,
              weft_fn_t fn, void *arg, weft_future_t **out)
{
    return spawn_slow(ex, opts, fn, arg, out);
}

/* ---- awaiting -------------------------------------------------------- */

/*
 * What a wait gives up on: an explicit deadline (WEFT_ETIMEDOUT) and a
 * token (WEFT_EINTERRUPTED, also when the token's own deadline passes).
 */
struct wait_limits {
    uint64_t deadline_ns; /* 0: none */
    weft_token_t *token;  /* NULL: none */
};

/* WEFT_OK to keep waiting, else the status the wait returns. */
static inline weft_status_t
wait_check_limits(const struct wait_limits *lim)
{
    if (lim->token != NULL && weft_token_is_cancelled(lim->token)) {
        return WEFT_EINTERRUPTED;
    }
    if (lim->deadline_ns != 0 && weft_clock_now_ns() >= lim->deadline_ns) {
        return WEFT_ETIMEDOUT;
    }
    return WEFT_OK;
}

/* The earliest time a park must end to re-check the limits. */
static inline uint64_t
wait_park_until(const struct wait_limits *lim, uint64_t cap_ns)
{
    uint64_t until = cap_ns;
    if (lim->deadline_ns != 0 && (until == 0 || lim->deadline_ns < until)) {
        until = lim->deadline_ns;
    }
    if (lim->token != NULL) {
        uint64_t td = weft__token_next_deadline(lim->token);
        if (td != WEFT_DEADLINE_NONE && (until == 0 || td < until)) {
            until = td == 0 ? 1 : td;
        }
    }
    return until;
}

/*
 * Park on f's state word until it changes or the deadline passes. When
 * lim is given, its token is re-checked after the word was read: a token
 * callback (wait_token_wake) that ran before that read had already seen
 * CANCELLED set, and our read of its kick orders that before the re-check;
 * one that runs after it changes the word, so futex_wait returns at once.
 */
static void
future_park(struct weft_future *f, uint64_t deadline_ns,
            const struct wait_limits *lim)
{
    /* Pairs with: the outcome CAS in weft__future_complete_shared() and
     * the kick faa in wait_token_wake(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    if (weft__future_state_done(s)) {
        return;
    }
    if (!(s & WEFT__F_WAITER)) {
        /*
         * Announce the waiter on the same word the completer CASes.
         * Pairs with: the outcome CAS in weft__future_complete_shared().
         */
        if (!weft__cas_u32(&f->state, s, s | WEFT__F_WAITER)) {
            return; /* the word changed; the caller re-checks */
        }
        s |= WEFT__F_WAITER;
    }
    if (lim != NULL && lim->token != NULL &&
        weft_token_is_cancelled(lim->token)) {
        return;
    }
    futex_wait_until(&f->state, s, deadline_ns);
}

/*
 * Whether a wait that this one runs inside (further up w's stack) has its
 * future done already. Its waiter cannot return before we do, so taking
 * unrelated work here would only delay it: a first failure would wait,
 * on its way to the root, for whatever unrelated subtree its worker had
 * picked up while it helped. The futures are alive: their waiters hold
 * references.
 */
static bool
await_outer_done(const struct weft__await_rec *rec)
{
    for (const struct weft__await_rec *r = rec->up; r != NULL; r = r->up) {
        /* Relaxed: a hint; the outer waiter re-reads with acquire. */
        if (weft__future_state_done(weft__load_relaxed_u32(&r->f->state))) {
            return true;
        }
    }
    return false;
}

/*
 * Whether run would end t without running its body (task_execute()'s
 * test, as a hint: a token cancelled after this look still ends t unrun,
 * and that only means we published early). On a worker.
 */
static bool
task_will_end_unrun(struct weft__worker *w, struct weft_future *t)
{
    return !weft__is_frame(t) && task_skip_reason(w, t) != WEFT_OK;
}

/*
 * A task popped from our own deque while we wait ended without running
 * (cancelled): most likely its queued siblings will too, as when a
 * cancelled group's join drains its children. Take the newest
 * WEFT__DRAIN_CHUNK of our public items private, when as many more stay
 * public for thieves: our next pops of them need no exchange. Called
 * after each such task, so while the drain goes on the private part
 * grows until only about 2 * WEFT__DRAIN_CHUNK items stay public (taking
 * a chunk only once the last one was used up measured twice as slow at
 * two workers: every pop between chunks met the thief again). Without
 * this, at two workers each pop's exchange met the thief's steal on the
 * deque's lines, and a drain of 10^4 cancelled children took 1.2 to 1.9
 * ms against 0.21 ms on one worker. The wait hands back what it took
 * (publish) before it runs a task that will run its body, before it
 * spins or parks, and when it returns, so thieves lose sight only of
 * tasks that end without running. Returns whether it took any.
 */
#define WEFT__DRAIN_CHUNK 64

static bool
await_drain_privately(struct weft__worker *w)
{
    return weft__deque_size_hint(&w->dq) > 2 * WEFT__DRAIN_CHUNK &&
           weft__deque_unpublish(&w->dq, WEFT__DRAIN_CHUNK) != 0;
}

static weft_status_t worker_await_loop(struct weft__worker *w,
                                       struct weft_future *f,
                                       const struct wait_limits *lim,
                                       const struct weft__await_rec *rec);

/* Phase 2 of a worker's wait (see the file comment). The wait is linked
 * on w's stack of helping waits for await_outer_done(). */
static weft_status_t
worker_await(struct weft__worker *w, struct weft_future *f,
             const struct wait_limits *lim)
{
    struct weft__await_rec rec = {f, w->await_top};
    w->await_top = &rec;
    weft_status_t st = worker_await_loop(w, f, lim, &rec);
    w->await_top = rec.up;
    return st;
}

static weft_status_t
worker_await_loop(struct weft__worker *w, struct weft_future *f,
                  const struct wait_limits *lim,
                  const struct weft__await_rec *rec)
{
    weft_executor_t *ex = w->ex;
    ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;
    unsigned int idle_rounds = 0;
    bool force_help = false;
    bool drained = false; /* we took public items private (see below) */
    for (;;) {
        /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
        uint32_t s = weft__load_acq_u32(&f->state);
        if (weft__future_state_done(s)) {
            if (drained) {
                weft__deque_publish_all(&w->dq);
            }
            return weft__future_status_of(f, s);
        }
        struct weft_future *t = NULL;
        bool own = false;
        /* Relaxed: a hint; the steal itself is a CAS. */
        uint32_t thief = weft__load_relaxed_u32(&f->thief);
        if (thief != 0 && thief - 1 != w->index &&
            (weft__is_frame(f) || f->ex == ex)) { /* a frame: w's deque's */
            t = weft__worker_steal_from(w, &ex->workers[thief - 1]);
        }
        if (t == NULL &&
            (w->help_depth < WEFT__HELP_DEPTH_MAX || force_help)) {
            /* Our own deque first: it holds what this wait needs. Then
             * other work, unless an outer wait is already satisfied. */
            t = weft__deque_pop(&w->dq);
            own = t != NULL;
            if (t == NULL &&
                (force_help || rec->up == NULL || !await_outer_done(rec))) {
                t = weft__worker_find(w);
            }
        }
        force_help = false;
        if (t != NULL) {
            if (drained && !task_will_end_unrun(w, t)) {
                /* Real work: give the thieves back what we took. */
                weft__deque_publish_all(&w->dq);
                drained = false;
            }
            /* Relaxed: our own counter. */
            uint64_t unrun = weft__load_relaxed_u64(&w->cancelled);
            w->help_depth++;
            weft__task_run(w, t);
            w->help_depth--;
            if (own && weft__load_relaxed_u64(&w->cancelled) != unrun) {
                drained |= await_drain_privately(w);
            }
            idle_rounds = 0;
            backoff = CK_BACKOFF_INITIALIZER;
            continue;
        }
        if (drained) {
            /* Nothing of ours left to pop: hand back any leftovers. */
            weft__deque_publish_all(&w->dq);
            drained = false;
        }
        weft_status_t lst = wait_check_limits(lim);
        if (lst != WEFT_OK) {
            return lst;
        }
        if (++idle_rounds < WEFT__AWAIT_SPIN_ROUNDS) {
            ck_backoff_eb(&backoff);
            continue;
        }
        /* About to block: make sure our own queued work gets taken,
         * private frames included. */
        weft__deque_publish_all(&w->dq);
        if (weft__deque_size_hint(&w->dq) > 0) {
            weft__parker_wake(&ex->idle);
        }
        /*
         * A worker parks for at most WEFT__AWAIT_PARK_NS, then helps once
         * even past the depth limit: if every worker waited with its help
         * depth exhausted, the task they wait for could otherwise sit in
         * a deque nobody looks at.
         */
        uint64_t t0 = weft_clock_now_ns();
        future_park(f, wait_park_until(lim, t0 + WEFT__AWAIT_PARK_NS), lim);
        if (weft__trace_recording(&w->trace)) {
            /* A frame has no id of its own: its task's, as in its events
             * (the frame is alive: we are the join that waits for it). */
            weft__trace_park_slow(&w->trace, t0, weft_clock_now_ns(),
                                  weft_future_id(weft__task_root(f)));
        }
        force_help = true;
        idle_rounds = 0;
    }
}

weft_status_t
weft__future_await_worker(struct weft__worker *w, struct weft_future *f)
{
    struct wait_limits lim = {0, NULL};
    return worker_await(w, f, &lim);
}

static weft_status_t
external_await(struct weft_future *f, const struct wait_limits *lim)
{
    ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;
    for (int i = 0;; i++) {
        /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
        uint32_t s = weft__load_acq_u32(&f->state);
        if (weft__future_state_done(s)) {
            return weft__future_status_of(f, s);
        }
        weft_status_t lst = wait_check_limits(lim);
        if (lst != WEFT_OK) {
            return lst;
        }
        if (i < 16) {
            ck_backoff_eb(&backoff);
        } else {
            future_park(f, wait_park_until(lim, 0), lim);
        }
    }
}

/*
 * Phase 1: if f sits in w's own deque, pop down to it. Returns true when f
 * was run inline by its sole holder; then *st holds its status and, if
 * free_it, the object is already back in the pool (value copied first).
 */
static bool
await_own_deque(struct weft__worker *w, struct weft_future *f, bool free_it,
                weft_value_t *value, weft_status_t *st)
{
    int64_t slot = f->slot;
    while (w->dq.head > slot) {
        struct weft_future *t = weft__deque_pop(&w->dq);
        if (t == NULL) {
            return false;
        }
        if (t != f) {
            weft__task_run(w, t);
            continue;
        }
        /* Relaxed: with one reference, held by us, nobody can change it. */
        if ((weft__load_relaxed_u32(&f->refs) & WEFT__REFS_MASK) != 1) {
            weft__task_run(w, f);
            return false;
        }
        /* Sole holder: nobody else can observe f, so no atomics. */
        weft_status_t fst = task_execute(w, f);
        weft__counter_inc(&w->ended);
        *st = fst;
        if (value != NULL && fst == WEFT_OK) {
            *value = f->value;
        }
        if (free_it) {
            weft__pool_put(w, f);
        } else {
            /*
             * Sole holder, but a token callback of our own
             * weft_future_wait_for may kick the word meanwhile, so the
             * outcome goes in with an atomic or.
             * Pairs with: the faa in wait_token_wake(); the acquire loads
             * of later readers (this thread) need no more.
             */
            (void)weft__fetch_or_u32(&f->state, weft__phase_of_status(fst));
        }
        return true;
    }
    return false;
}

static weft_status_t
future_wait_common(struct weft_future *f, const struct wait_limits *lim)
{
    WEFT__ASSERT(weft__future_live(f));
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    if (weft__future_state_done(s)) {
        return weft__future_status_of(f, s);
    }
    struct weft__worker *w = weft__worker_of(f->ex);
    if (w == NULL) {
        return external_await(f, lim);
    }
    weft_status_t st;
    if (f->spawner == w && await_own_deque(w, f, false, NULL, &st)) {
        return st;
    }
    return worker_await(w, f, lim);
}

weft_status_t
weft_future_wait(weft_future_t *f)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    struct wait_limits lim = {0, NULL};
    return weft__debug_seen(f, future_wait_common(f, &lim));
}

weft_status_t
weft_future_wait_until(weft_future_t *f, uint64_t deadline_ns)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    /* 0 means "no deadline" internally; time 0 has passed anyway. */
    struct wait_limits lim = {deadline_ns == 0 ? 1 : deadline_ns, NULL};
    return weft__debug_seen(f, future_wait_common(f, &lim));
}

/*
 * Token callback of weft_future_wait_for: wake the waiter parked on f.
 * Changing the word first means a waiter that read it before the kick
 * and is about to futex_wait on that older value returns at once.
 */
static void
wait_token_wake(void *arg, weft_error_t *reason)
{
    (void)reason;
    struct weft_future *f = arg;
    /*
     * Pairs with: the WAITER CAS and futex_wait in future_park() (the
     * kick makes the value it waits on stale); the outcome CAS preserves
     * the kick bits.
     */
    (void)weft__faa_u32(&f->state, WEFT__KICK_ONE);
    futex_wake_all(&f->state);
}

weft_status_t
weft_future_wait_for(weft_future_t *f, weft_token_t *token,
                     uint64_t deadline_ns)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    struct wait_limits lim = {deadline_ns, token};
    if (token == NULL) {
        return weft__debug_seen(f, future_wait_common(f, &lim));
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    if (weft__future_state_done(s)) {
        return weft__debug_seen(f, weft__future_status_of(f, s));
    }
    if (weft_token_is_cancelled(token)) {
        return WEFT_EINTERRUPTED;
    }
    /*
     * The callback wakes a park on f->state when the token is cancelled
     * (a spurious wake for other waiters, which re-check). We hold a
     * reference to f until after the deregistration, which waits for a
     * running callback, so the callback never touches a freed f.
     */
    /* Zeroed (IDLE), as cancel.h requires: stack garbage that reads as
     * LINKED or RUNNING would make the registration fail with EINVAL,
     * and the wait would then not see the token's cancellation. */
    struct weft__token_cb cb = {0};
    weft_status_t rs = weft__token_register(token, &cb, wait_token_wake, f);
    weft_status_t st = future_wait_common(f, &lim);
    if (rs == WEFT_OK) {
        (void)weft__token_deregister(&cb);
    }
    return weft__debug_seen(f, st);
}

static weft_status_t __attribute__((noinline))
join_slow(struct weft_future *f, weft_value_t *value)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    WEFT__ASSERT(weft__future_live(f));
    struct weft__worker *w = weft__worker_of(f->ex);
    weft_status_t st;
    if (w != NULL && f->spawner == w) {
        /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
        if (!weft__future_state_done(weft__load_acq_u32(&f->state)) &&
            await_own_deque(w, f, true, value, &st)) {
            return st;
        }
    }
    struct wait_limits lim = {0, NULL};
    st = weft__debug_seen(f, future_wait_common(f, &lim));
    if (value != NULL && st == WEFT_OK) {
        *value = f->value;
    }
    (void)weft_future_release(f);
    return st;
}

/*
 * The fork-join fast path: f is the bottom item of the caller's own deque
 * (the LIFO order of strict fork-join), so pop it and, holding the only
 * reference and no cold fields (refs == 1), run it and recycle it with no
 * atomics beyond the pop. Everything else goes to join_slow().
 */
weft_status_t
weft_join(weft_future_t *f, weft_value_t *value)
{
    struct weft__worker *w = weft__tls_worker;
    WEFT__ASSERT(f == NULL || weft__future_live(f));
    int64_t b;
    if (__builtin_expect(f != NULL && w != NULL && f->spawner == w &&
                             (b = w->dq.head) == f->slot + 1,
                         1)) {
        struct weft_future *t = weft__deque_pop_known(&w->dq, b);
        /* Relaxed: refs == 1 means one handle (ours, so nobody can change
         * it) and no cold fields (see future.h); and with that one handle
         * only this thread can have set COLD (a weft_future_cancel()
         * request, an id), which task_execute() must see. */
        if (__builtin_expect(t == f && weft__load_relaxed_u32(&f->refs) == 1 &&
                                 !(weft__load_relaxed_u32(&f->state) &
                                   WEFT__F_COLD),
                             1)) {
            weft_status_t st = task_body(w, f);
            weft__counter_inc(&w->ended);
            if (value != NULL && st == WEFT_OK) {
                *value = f->value;
            }
            weft__pool_put_local(w, f);
            return st;
        }
        if (t != NULL) {
            /* f itself with company, or a younger task that reused f's
             * slot after f was run by a helping pop. */
            weft__task_run(w, t);
        }
    }
    return join_slow(f, value);
}

/* ---- inspection ------------------------------------------------------ */

bool
weft_future_is_done(const weft_future_t *f)
{
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    return f != NULL && weft__future_state_done(weft__load_acq_u32(&f->state));
}

weft_outcome_t
weft_future_outcome(const weft_future_t *f)
{
    if (f == NULL) {
        return WEFT_OUTCOME_PENDING;
    }
    (void)weft__debug_seen(f, WEFT_OK);
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    switch (weft__future_phase(weft__load_acq_u32(&f->state))) {
    case WEFT__SUCCEEDED:
        return WEFT_OUTCOME_SUCCEEDED;
    case WEFT__FAILED:
        return WEFT_OUTCOME_FAILED;
    case WEFT__CANCELLED:
        return WEFT_OUTCOME_CANCELLED;
    default:
        return WEFT_OUTCOME_PENDING;
    }
}

weft_status_t
weft_future_status(const weft_future_t *f)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    if (!weft__future_state_done(s)) {
        return WEFT_EAGAIN;
    }
    return weft__debug_seen(f, weft__future_status_of(f, s));
}

weft_status_t
weft_future_value(const weft_future_t *f, weft_value_t *out)
{
    if (f == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    if (!weft__future_state_done(s)) {
        return WEFT_EAGAIN;
    }
    weft_status_t st = weft__future_status_of(f, s);
    if (st == WEFT_OK) {
        *out = f->value;
    }
    return weft__debug_seen(f, st);
}

bool
weft_future_has_started(const weft_future_t *f)
{
    if (f == NULL) {
        return false;
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(); an
     * ended future's started flag was written before its outcome. */
    (void)weft__load_acq_u32(&f->state);
    /* Relaxed: ordered by the acquire load above once f has ended. */
    return (weft__load_relaxed_u32(&f->started) & WEFT__STARTED) != 0;
}

const char *
weft_future_name(const weft_future_t *f)
{
    return f != NULL ? f->name : NULL;
}

/* Lazily assigned executor-unique id (one faa, once per task). */
static uint64_t
future_id(struct weft_future *f)
{
    /* Pairs with: the CAS below by another thread asking at once. */
    uint64_t id = weft__load_acq_u64(&f->id);
    if (id != 0) {
        return id;
    }
    /* Relaxed use: only uniqueness matters for the counter. */
    uint64_t nid = weft__faa_u64(&f->ex->next_task_id, 1) + 1;
    /* Publish the id once. Pairs with: the acquire load above. */
    if (weft__cas_value_u64(&f->id, 0, nid, &id)) {
        /*
         * The pool put must clear the id (see WEFT__F_COLD).
         * Pairs with: the acquire loads of f->state by the last holder
         * (weft_future_release) and the completer's CAS, which keep the
         * bit.
         */
        (void)weft__fetch_or_u32(&f->state, WEFT__F_COLD);
        return nid;
    }
    return id;
}

uint64_t
weft_future_id(const weft_future_t *f)
{
    return f != NULL ? future_id((struct weft_future *)f) : 0;
}

/* ---- references ------------------------------------------------------ */

weft_status_t
weft_future_retain(weft_future_t *f)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    /* Unpaired: the caller holds a reference, so the count cannot reach
     * zero concurrently; the faa only has to be atomic. */
    WEFT__ASSERT(weft__future_live(f));
    uint32_t old = weft__faa_u32(&f->refs, 1);
    WEFT__ASSERT((old & WEFT__REFS_MASK) != 0);
    (void)old;
    return WEFT_OK;
}

weft_status_t
weft_future_release(weft_future_t *f)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    WEFT__ASSERT(weft__future_live(f));
    /*
     * The last handle (a gather releasing its adopted children) needs no
     * locked instruction: nobody else can retain or release, so a plain
     * store drops the count.
     * Pairs with: the faa below of another holder that released before
     * us (acquire: its writes to f happen before our free).
     */
    uint32_t old = weft__load_acq_u32(&f->refs);
    if ((old & WEFT__REFS_MASK) == 1) {
        /* Unpaired: no other thread writes refs now (see above); the
         * completer reads only the kind bits, which do not change. */
        weft__store_relaxed_u32(&f->refs, old - 1);
    } else {
        /*
         * Drop our reference. Pairs with: the faa of other holders and
         * the acquire load above; the one that sees 1 is the last and
         * decides below.
         */
        old = weft__faa_u32(&f->refs, (uint32_t)-1);
    }
    /* More releases than references: caller misuse. */
    WEFT__ASSERT((old & WEFT__REFS_MASK) != 0);
    if ((old & WEFT__REFS_MASK) != 1) {
        return WEFT_OK;
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    for (;;) {
        if (weft__future_state_done(s)) {
            weft__pool_put(weft__worker_of(f->ex), f);
            return WEFT_OK;
        }
        /*
         * Hand the object to the completer.
         * Pairs with: the outcome CAS in weft__future_complete_shared(),
         * which frees when it sees DETACHED.
         */
        if (weft__cas_value_u32(&f->state, s, s | WEFT__F_DETACHED, &s)) {
            return WEFT_OK;
        }
    }
}

/* ---- continuations and watches ---------------------------------------- */

/*
 * Take f's registration lock unless f has ended. Returns false when it
 * has ended (no lock taken), true with F_LOCK held otherwise.
 */
static bool
future_lock_unless_done(struct weft_future *f)
{
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    for (;;) {
        if (weft__future_state_done(s)) {
            return false;
        }
        if (s & WEFT__F_LOCK) {
            weft__cpu_relax();
            /* Pairs with: the unlock CAS in future_unlock_cont(). */
            s = weft__load_acq_u32(&f->state);
            continue;
        }
        /*
         * Take the registration lock while the task has not ended.
         * Pairs with: the outcome CAS in weft__future_complete_shared(),
         * which waits for LOCK to clear.
         */
        if (weft__cas_value_u32(&f->state, s, s | WEFT__F_LOCK, &s)) {
            return true;
        }
    }
}

/* Drop the registration lock and mark CONT (something is queued). */
static void
future_unlock_cont(struct weft_future *f)
{
    /* Relaxed: re-checked by the CAS; only flag bits change under us. */
    uint32_t s = weft__load_relaxed_u32(&f->state);
    for (;;) {
        /*
         * Unlock and mark CONT, keeping a WAITER or kick bit set
         * meanwhile. Pairs with: the outcome CAS in
         * weft__future_complete_shared(), which reads f->conts and
         * f->watches after seeing CONT.
         */
        if (weft__cas_value_u32(&f->state, s,
                                (s & ~WEFT__F_LOCK) | WEFT__F_CONT, &s)) {
            return;
        }
    }
}


weft_status_t
weft_future_then(weft_future_t *f, weft_fn_t fn, void *arg,
                 weft_future_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (f == NULL || fn == NULL) {
        return WEFT_EINVAL;
    }
    WEFT__ASSERT(weft__future_live(f));
    weft_executor_t *ex = f->ex;
    struct weft__worker *w = weft__worker_of(ex);
    struct weft_future *c =
        w != NULL ? weft__pool_get(w) : weft__pool_get_external(ex);
    if (c == NULL) {
        return WEFT_ENOMEM;
    }
    future_init(c, fn, arg, out == NULL);
    c->spawner = NULL;
    c->slot = 0;
    /* Unpaired: c is still private. */
    weft__store_relaxed_u32(&c->refs,
                            weft__load_relaxed_u32(&c->refs) |
                                WEFT__K_CONTINUATION << WEFT__KIND_SHIFT);
    c->antecedent = f;
    (void)weft_future_retain(f);
    weft__debug_track(ex->debug, c, NULL,
                      WEFT__DBG_CONTINUATION |
                          (out == NULL ? WEFT__DBG_DETACHED : 0u));
    if (out != NULL) {
        *out = c;
    }

    if (!future_lock_unless_done(f)) {
        cont_schedule(w, c);
        return WEFT_OK;
    }
    c->next = f->conts;
    f->conts = c;
    future_unlock_cont(f);
    return WEFT_OK;
}

bool
weft__future_watch(struct weft_future *f, struct weft__watch *node)
{
    /*
     * Relaxed: with one handle, held by the caller, nobody else can
     * change the count (retaining needs a handle of one's own).
     */
    if ((weft__load_relaxed_u32(&f->refs) & WEFT__REFS_MASK) == 1) {
        /*
         * Sole holder (an adopted child): nobody else can register a
         * watch or continuation (both need a handle), wait on f (no
         * WAITER bit), kick it or detach it, so the only other writer of
         * the word is the completer, and no earlier registration is
         * pending (f->watches and f->conts are NULL). The link needs no
         * lock: write it, then set CONT with one CAS.
         * Pairs with: the outcome CAS in weft__future_complete_shared().
         */
        uint32_t s = weft__load_acq_u32(&f->state);
        if (weft__future_state_done(s)) {
            return false;
        }
        WEFT__ASSERT(!(s & (WEFT__F_LOCK | WEFT__F_CONT)));
        node->next = NULL;
        f->watches = node;
        for (;;) {
            /*
             * Set CONT after the link. Pairs with: the outcome CAS in
             * weft__future_complete_shared(), which reads f->watches
             * once it sees CONT; if it came first, this CAS fails on the
             * ended word and the link is never read.
             */
            if (weft__cas_value_u32(&f->state, s, s | WEFT__F_CONT, &s)) {
                return true;
            }
            if (weft__future_state_done(s)) {
                f->watches = NULL;
                return false;
            }
        }
    }
    if (!future_lock_unless_done(f)) {
        return false;
    }
    node->next = f->watches;
    f->watches = node;
    future_unlock_cont(f);
    return true;
}

/* ---- promises -------------------------------------------------------- */

/* A promise's fn: never called (no task runs a promise); it only keeps
 * fn non-NULL, which the debug liveness check relies on. */
static weft_status_t
promise_fn(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)arg;
    (void)result;
    return WEFT_EINVAL;
}

struct weft_future *
weft__promise_create(weft_executor_t *ex, void *state, const char *name)
{
    struct weft__worker *w = weft__worker_of(ex);
    struct weft_future *p =
        w != NULL ? weft__pool_get(w) : weft__pool_get_external(ex);
    if (p == NULL) {
        return NULL;
    }
    future_init(p, promise_fn, state, false);
    p->spawner = NULL;
    p->slot = 0;
    uint32_t kind = WEFT__K_PROMISE;
    if (name != NULL) {
        p->name = name;
        kind |= WEFT__K_NAME;
    }
    /* Unpaired: p is private until the caller hands it out. */
    weft__store_relaxed_u32(&p->started, 1);
    /* Unpaired: as above. */
    weft__store_relaxed_u32(&p->refs, weft__load_relaxed_u32(&p->refs) |
                                          kind << WEFT__KIND_SHIFT);
    return p;
}

void
weft__promise_settle(struct weft__worker *w, struct weft_future *p,
                     weft_status_t st, weft_value_t value, weft_error_t *err)
{
    WEFT__ASSERT(st == WEFT_OK || err != NULL);
    p->status = st;
    p->value = st == WEFT_OK ? value : (weft_value_t){.u64 = 0};
    if (st == WEFT_OK && err != NULL) {
        weft_error_release(err);
        err = NULL;
    }
    p->error = err;
    weft__future_complete_shared(w, p);
}

void
weft__future_reset_cancel(struct weft_future *f)
{
    if (f->cancel_req != NULL) {
        weft_error_release(f->cancel_req);
        f->cancel_req = NULL;
    }
    if (f->ttoken != NULL) {
        weft_token_release(f->ttoken);
        f->ttoken = NULL;
    }
}

struct weft_future *
weft__future_make(weft_executor_t *ex, const weft_spawn_opts_t *opts,
                  weft_fn_t fn, void *arg, bool borrow_token)
{
    struct weft__worker *w = weft__worker_of(ex);
    struct weft_future *f =
        w != NULL ? weft__pool_get(w) : weft__pool_get_external(ex);
    if (f == NULL) {
        return NULL;
    }
    future_init(f, fn, arg, false);
    future_set_cold(f, opts, borrow_token);
    weft__debug_track(ex->debug, f, opts, 0);
    f->spawner = NULL; /* set by weft__future_submit() */
    f->slot = 0;
    return f;
}

void
weft__future_submit(struct weft_future *f)
{
    weft_executor_t *ex = f->ex;
    struct weft__worker *w = weft__worker_of(ex);
    /*
     * The submitter holds a reference, so the object stays alive; it
     * was private until now, so spawner/slot are plain stores published
     * by the enqueue. A worker's slot lets a later join by that worker
     * use the own-deque path.
     */
    f->spawner = w;
    /* Unpaired: the owner reads its own bottom. */
    f->slot = w != NULL ? w->dq.head : 0;
    weft_status_t st = weft__exec_enqueue(ex, w, f);
    if (st != WEFT_OK) {
        f->spawner = NULL;
        future_end_unqueued(w, f, st);
    }
}

void
weft__future_submit_refused(struct weft_future *f, weft_status_t why)
{
    future_end_unqueued(weft__worker_of(f->ex), f, why);
    /* The caller reported the refusal: nobody else needs to await f. */
    (void)weft__debug_seen(f, WEFT_OK);
}

/* ---- cancelling one future ------------------------------------------- */

weft_status_t
weft_future_cancel(weft_future_t *f, weft_error_t *reason)
{
    if (f == NULL) {
        return WEFT_EINVAL;
    }
    WEFT__ASSERT(weft__future_live(f));
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    if (weft__future_state_done(weft__load_acq_u32(&f->state))) {
        return WEFT_EALREADY;
    }
    if (weft__future_kind(f) & WEFT__K_PROMISE) {
        void *state = f->arg;
        return (*(const struct weft__promise_ops *const *)state)
            ->cancel(state, reason);
    }
    weft_error_t *e = reason;
    if (e != NULL) {
        (void)weft_error_retain(e);
    } else if (weft_error_create(&e, WEFT_ECANCELED,
                                 "cancelled by weft_future_cancel") !=
               WEFT_OK) {
        /* e is the static out-of-memory error; still a valid reason. */
    }
    /*
     * One request wins. Full barrier (RMW): pairs with the fas of
     * f->ttoken in weft_task_token(): either we see the token below, or
     * the task sees our request after installing it (Dekker).
     * Pairs with: the acquire load in future_cancel_reason() and the fas
     * in weft_task_token(); the acquire load in node_token() (debug.c).
     */
    if (!weft__cas_ptr((void **)&f->cancel_req, NULL, e)) {
        weft_error_release(e);
        return WEFT_EALREADY;
    }
    /*
     * Tell the hot line that a cold field is set (see WEFT__F_COLD).
     * Pairs with: the acquire load in future_cancel_requested(); every
     * CAS on the word keeps the bit.
     */
    (void)weft__fetch_or_u32(&f->state, WEFT__F_COLD);
    /* Pairs with: the fas in weft_task_token() (see above). */
    weft_token_t *t = weft__load_acq_ptr((void *const *)&f->ttoken);
    if (t != NULL) {
        (void)weft_token_cancel(t, e);
    }
    return WEFT_OK;
}

/* ---- entry from outside and task context ----------------------------- */

weft_status_t
weft_executor_run(weft_executor_t *ex, weft_fn_t fn, void *arg,
                  weft_value_t *value)
{
    weft_future_t *f = NULL;
    weft_status_t st = weft_spawn(ex, fn, arg, &f);
    if (st != WEFT_OK) {
        return st;
    }
    return weft_join(f, value);
}

weft_executor_t *
weft_task_executor(const weft_task_t *self)
{
    /* A frame's ex is not set: its executor is its root's. */
    return self != NULL
               ? weft__task_root((struct weft_future *)self)->ex
               : NULL;
}

weft_future_t *
weft_task_antecedent(const weft_task_t *self)
{
    const struct weft_future *f = (const struct weft_future *)self;
    return f != NULL && !weft__is_frame(f) ? f->antecedent : NULL;
}

uint64_t
weft_task_id(const weft_task_t *self)
{
    return self != NULL
               ? future_id(weft__task_root((struct weft_future *)self))
               : 0;
}

weft_token_t *
weft_task_token(weft_task_t *self)
{
    if (self == NULL) {
        return NULL;
    }
    /* A frame shares its enclosing task's token (weft/frame.h). */
    struct weft_future *f = weft__task_root((struct weft_future *)self);
    /*
     * Pairs with: the CAS below, by a frame of this task running on
     * another worker that installed it first.
     */
    weft_token_t *t = weft__load_acq_ptr((void *const *)&f->ttoken);
    if (t != NULL) {
        return t;
    }
    if (weft_token_create(f->token, &t) != WEFT_OK) {
        return f->token;
    }
    /*
     * Publish the task token; frames of the task running on other
     * workers may race to install theirs, and the loser drops its own.
     * Full barrier (RMW): pairs with the CAS of f->cancel_req in
     * weft_future_cancel(): either it sees the token and cancels it, or
     * we see its request below (Dekker).
     * Pairs with: the CAS of f->cancel_req in weft_future_cancel(), the
     * acquire load above, and the acquire load in node_token() (debug.c)
     * that reads the token.
     */
    weft_token_t *seen = NULL;
    if (!weft__cas_value_ptr((void **)&f->ttoken, NULL, t, (void **)&seen)) {
        weft_token_release(t);
        return seen;
    }
    /*
     * The pool put must release the token (see WEFT__F_COLD).
     * Pairs with: the acquire loads of f->state by the last holder
     * (weft_future_release) and the completer's CAS, which keep the bit.
     */
    (void)weft__fetch_or_u32(&f->state, WEFT__F_COLD);
    /* Pairs with: the CAS in weft_future_cancel() (see above). */
    weft_error_t *req = weft__load_acq_ptr((void *const *)&f->cancel_req);
    if (req != NULL) {
        (void)weft_token_cancel(t, req);
    }
    return t;
}

bool
weft_task_is_cancelled(const weft_task_t *self)
{
    if (self == NULL) {
        return false;
    }
    const struct weft_future *f =
        weft__task_root((struct weft_future *)self);
    /* Relaxed: a poll; the reason is read with acquire where it is
     * used (future_cancel_reason). */
    if (weft__load_relaxed_ptr((void *const *)&f->cancel_req) != NULL) {
        return true;
    }
    return f->token != NULL && weft_token_is_cancelled(f->token);
}

/* Attach e (a reference the task now owns) as the task's failure (a
 * frame's own, for a frame). */
static void
task_record_error(struct weft_future *f, weft_error_t *e)
{
    weft_error_t **slot = weft__task_error_slot(f);
    if (*slot != NULL) {
        weft_error_release(*slot);
    }
    *slot = e;
    if (!weft__is_frame(f)) {
        /* Relaxed: only the runner (this thread) writes started; the run
         * path reads the flag after the body (task_execute). */
        weft__store_relaxed_u32(&f->started,
                                weft__load_relaxed_u32(&f->started) |
                                    WEFT__STARTED_ERROR);
    }
}

weft_status_t
weft_task_fail(weft_task_t *self, int code, const char *fmt, ...)
{
    if (self == NULL || code <= 0 || code == WEFT_ECANCELED) {
        return WEFT_EINVAL;
    }
    struct weft_future *f = (struct weft_future *)self;
    weft_error_t *e = NULL;
    weft_status_t st;
    if (fmt == NULL) {
        st = weft_error_create(&e, code, "%s", weft_status_str(code));
    } else {
        va_list ap;
        va_start(ap, fmt);
        st = weft_error_createv(&e, code, fmt, ap);
        va_end(ap);
    }
    if (st == WEFT_OK) {
        future_stamp_error(weft__task_root(f), e);
    }
    /* On ENOMEM, e is the static out-of-memory error (never NULL). */
    task_record_error(f, e);
    return (weft_status_t)code;
}

weft_status_t
weft_task_fail_with(weft_task_t *self, weft_error_t *err)
{
    if (self == NULL || err == NULL) {
        return WEFT_EINVAL;
    }
    int code = weft_error_status(err);
    if (code <= 0 || code == WEFT_ECANCELED) {
        return WEFT_EINVAL;
    }
    struct weft_future *f = (struct weft_future *)self;
    /* Recorded as is: err may be borrowed from another future (a child's
     * failure being propagated), whose origin must not change. */
    (void)weft_error_retain(err);
    task_record_error(f, err);
    return (weft_status_t)code;
}

weft_error_t *
weft_future_error(const weft_future_t *f)
{
    if (f == NULL) {
        return NULL;
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    uint32_t s = weft__load_acq_u32(&f->state);
    if (!weft__future_state_done(s)) {
        return NULL;
    }
    (void)weft__debug_seen(f, WEFT_OK);
    return f->error;
}
