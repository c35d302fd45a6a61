/*
 * each.c - bulk gathers: weft_gather_each() and weft_gather_each_settled(),
 * gathers whose children are the indices of one function.
 *
 * A gather of 10^6 futures touches a 128-byte object per child about five
 * times (spawn, run, complete, ledger read, free) and is bound by memory.
 * Here no object exists per child: index i is one call fn(self, arg, i,
 * &value), and its ledger entry is an 8-byte value and a status byte in
 * the gather's own block.
 *
 * DESIGN
 *
 * State. One block (weft__block_get()): the header (struct weft__each),
 * one struct each_piece per worker, values[n] and status[n]. The executor
 * keeps the last large block given back (ex->spare) for the next call,
 * so a gather of 10^6 does not fault in ~2,200 fresh pages.
 *
 * Pieces. The call cuts [0, n) into one range per worker and makes one
 * task per range (weft__future_make(), borrowing the gather's token), puts
 * a watch on each and submits them. A piece runs its range in index order
 * and, when an idle worker has asked for work (its deque's `want` flag),
 * forks the right half of what is left as a frame, runs the left half the
 * same way and joins (Tzannes et al., "Lazy Binary Splitting", PPoPP
 * 2010; group.c's pfor_range() does the same for parallel-for).
 *
 * Rule. The decision is combine.h's (struct weft__decision). Before each
 * index a piece polls the decision word; once it is decided the rest of
 * its range is left unstarted. An index that fails (or ends cancelled
 * while nothing is decided and the caller's token is not cancelled)
 * records an entry in the side table and, for weft_gather_each(), tries
 * to decide TRIGGER; the winner cancels the gather's token, which every
 * piece's task and every frame of it sees through
 * weft_task_is_cancelled(self). The caller's token (a parent of ours),
 * its deadline and weft_future_cancel() on the combined future decide
 * CANCEL. A piece that never ran (cancelled while queued: by our token,
 * or by executor shutdown) and a stolen frame that never ran leave their
 * indices unstarted; when nothing is decided then, that is a cancellation
 * from elsewhere, recorded as one range entry.
 *
 * Status byte of index i: 0 while it has not started (and forever if it
 * never does: CANCELLED, never started); else its outcome phase (future.h
 * WEFT__SUCCEEDED / FAILED / CANCELLED) | EACH_STARTED, | EACH_OURS when
 * it returned WEFT_ECANCELED after the gather was decided.
 *
 * Finalization and lifetime are combine.c's: references for the promise,
 * the creating call and the finalizer; the watch of the piece that ends
 * last builds the error group, sorts the side table by index, drops the
 * finalizer's reference and settles the promise.
 *
 * Invariants:
 *  1. Every index is run at most once: the ranges of the pieces partition
 *     [0, n), and a split hands [mid, hi) to exactly one frame, whose body
 *     runs it or does not run at all (its joiner then records it unrun).
 *  2. values[i] and status[i] are written only by the thread running the
 *     range that holds i, before that range's piece ends; they are read
 *     only by the finalizer (after the pieces' faa chain on `ended`,
 *     a release sequence) and by the ledger accessors after the combined
 *     future ended (acquire on its state, released by the finalizer's
 *     settle). Frames add the join's acquire (frame.c).
 *  3. The decision is taken once (combine.h); a token cancel by us always
 *     follows our decision, so a piece that finds the gather's token
 *     cancelled while nothing is decided is looking at the caller's
 *     cancellation and decides CANCEL itself (each_cancel_is_ours()).
 *  4. An index's outcome is final once its status byte is written; every
 *     index ends exactly once: started indices write their byte, and an
 *     unstarted one keeps 0, which reads CANCELLED.
 *  5. A piece's watch touches the state only before its faa on `ended`;
 *     the watch that takes it to the number of pieces finalizes.
 */
#include "executor/each.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/combine.h>
#include <weft/frame.h>

#include "executor/combine.h"
#include "executor/debug.h"
#include "executor/executor.h"
#include "executor/future.h"
#include "primitives/alloc.h"
#include "primitives/atomics.h"
#include "primitives/cancel.h"
#include "primitives/deque.h"
#include "primitives/error.h"

/* Bits of a status byte (the low two are the outcome phase). */
#define EACH_PHASE 0x3u
#define EACH_STARTED 0x4u
#define EACH_OURS 0x8u

enum {
    EK_GATHER = 1,
    EK_SETTLED = 2
};

struct weft__each;

/* One piece: a task running [lo, hi). */
struct each_piece {
    struct weft__watch node; /* first: each_piece_ended() casts back */
    struct weft_future *f;   /* the task; a reference held until free */
    struct weft__each *e;
    size_t lo, hi;
};

/* The right half of a split, run by a frame. */
struct each_range {
    struct weft__each *e;
    size_t lo, hi;
    bool ran; /* set by the frame's body; read by the joiner after join */
};

/* A failed index, or indices cancelled from elsewhere, in the order they
 * happened (sorted by lo once finalized). */
struct each_entry {
    size_t lo, hi;     /* [lo, hi): one index, or an unrun range */
    weft_error_t *err; /* owned; NULL when memory ran out */
    uint32_t seq;      /* order in which it happened */
    uint8_t phase;     /* WEFT__FAILED or WEFT__CANCELLED */
    bool started;
};

struct weft__each {
    const struct weft__promise_ops *ops; /* first: see future.h */
    uint32_t refs;                       /* atomic; see combine.h */
    uint32_t kind;                       /* EK_* */
    /* Read by every index: written once before the pieces start, except
     * dec, which is decided once. */
    weft_each_fn_t fn;
    void *arg;
    weft_value_t *values; /* [n]: see invariant 2 */
    uint8_t *status;      /* [n]: see invariant 2 */
    size_t n;
    struct weft__decision dec;
    weft_executor_t *ex;
    const char *name;  /* opts->name or the combinator's */
    const char *uname; /* opts->name (NULL: none) */
    uint32_t npieces;
    struct each_piece *pieces;
    weft__watch_fn_t watch_fn; /* every piece node's callback slot */
    struct weft_future *result;
    weft_token_t *token; /* ours: a child of the caller's; owned; the
                            pieces borrow it */
    struct weft__token_cb cb;
    bool cb_registered;

    /* Written by the pieces. */
    uint64_t succeeded __attribute__((aligned(64))); /* faa per range */
    uint32_t ended;       /* faa: pieces whose watch ran */
    pthread_mutex_t lock; /* entries, nentries, cap, entries_nomem */
    struct each_entry *entries;
    size_t nentries, cap;
    bool entries_nomem;

    /* The trigger: written by the TRIGGER decider, read by the
     * finalizer after the faa chain. */
    size_t trigger_idx; /* SIZE_MAX: none */
    weft_status_t trigger_st;
    weft_error_t *trigger_err; /* owned */

    weft_errgroup_t *errors; /* built by the finalizer; NULL: none */
    bool errors_nomem;
};

static weft_status_t each_cancel_op(void *state, weft_error_t *reason);
static void each_release_op(void *state);

static const struct weft__promise_ops each_ops = {
    each_cancel_op,
    each_release_op,
};

/* ---- state lifetime --------------------------------------------------- */

static void
each_free(struct weft__each *e)
{
    for (uint32_t k = 0; k < e->npieces; k++) {
        (void)weft_future_release(e->pieces[k].f);
    }
    for (size_t j = 0; j < e->nentries; j++) {
        if (e->entries[j].err != NULL) {
            weft_error_release(e->entries[j].err);
        }
    }
    weft__free(e->entries);
    if (e->dec.reason != NULL) {
        weft_error_release(e->dec.reason);
    }
    if (e->trigger_err != NULL) {
        weft_error_release(e->trigger_err);
    }
    if (e->errors != NULL) {
        weft_errgroup_release(e->errors);
    }
    weft_token_release(e->token);
    pthread_mutex_destroy(&e->lock);
    weft__block_put(e->ex, e);
}

static void
each_unref(struct weft__each *e)
{
    /* Pairs with: the other unrefs (acq_rel RMW): the last one sees every
     * write made before any earlier unref. */
    if (weft__faa_u32(&e->refs, (uint32_t)-1) == 1) {
        each_free(e);
    }
}

static void
each_release_op(void *state)
{
    each_unref(state);
}

struct weft__each *
weft__each_of(const weft_future_t *f)
{
    if (f == NULL || !(weft__future_kind(f) & WEFT__K_PROMISE)) {
        return NULL;
    }
    struct weft__each *e = f->arg;
    return e->ops == &each_ops ? e : NULL;
}

/* ---- the caller's cancellation ---------------------------------------- */

/* Decide CANCEL with reason (owned) and stop the indices. */
static weft_status_t
each_cancel_with(struct weft__each *e, weft_error_t *reason)
{
    if (!weft__decision_take(&e->dec, WEFT__D_CANCEL, UINT32_MAX, reason)) {
        return WEFT_EALREADY;
    }
    (void)weft_token_cancel(e->token, e->dec.reason);
    return WEFT_OK;
}

static weft_status_t
each_cancel_op(void *state, weft_error_t *reason)
{
    weft_error_t *r = reason;
    if (r != NULL) {
        (void)weft_error_retain(r);
    } else {
        (void)weft_error_create(&r, WEFT_ECANCELED,
                                "combined future cancelled");
    }
    return each_cancel_with(state, r);
}

/* Callback on our token: the caller's token or the deadline fired (or we
 * cancelled it after a decision: then this decides nothing). */
static void
each_token_fired(void *arg, weft_error_t *reason)
{
    struct weft__each *e = arg;
    (void)weft__decision_take(&e->dec, WEFT__D_CANCEL, UINT32_MAX,
                              weft__error_retained(reason));
}

/*
 * Whether an index or range that ended cancelled was cancelled by the
 * gather: decided already, or our token is cancelled while nothing is
 * decided, which is the caller's cancellation (invariant 3): decide it.
 */
static bool
each_cancel_is_ours(struct weft__each *e)
{
    if (weft__decision_wait(&e->dec) != WEFT__D_NONE) {
        return true;
    }
    if (weft_token_is_cancelled(e->token)) {
        weft_error_t *r = NULL;
        (void)weft_token_reason(e->token, &r);
        (void)each_cancel_with(e, weft__error_retained(r));
        return true;
    }
    return false;
}

/* ---- failures --------------------------------------------------------- */

/*
 * Record [lo, hi) in the side table with err (taken over; may be NULL).
 * The caller holds no lock.
 */
static void
each_record(struct weft__each *e, size_t lo, size_t hi, uint8_t phase,
            bool started, weft_error_t *err)
{
    pthread_mutex_lock(&e->lock);
    if (e->nentries == e->cap) {
        size_t ncap = e->cap != 0 ? e->cap * 2 : 8;
        struct each_entry *ne = WEFT__REALLOC(e->entries, ncap * sizeof(*ne));
        if (ne == NULL) {
            e->entries_nomem = true;
            pthread_mutex_unlock(&e->lock);
            if (err != NULL) {
                weft_error_release(err);
            }
            return;
        }
        e->entries = ne;
        e->cap = ncap;
    }
    e->entries[e->nentries] = (struct each_entry){
        .lo = lo,
        .hi = hi,
        .err = err,
        .seq = (uint32_t)e->nentries,
        .phase = phase,
        .started = started,
    };
    e->nentries++;
    pthread_mutex_unlock(&e->lock);
}

/*
 * [lo, hi) failed (failed true, status st) or was cancelled from
 * elsewhere, with err (taken over): record it and, for a fail-fast
 * gather, try to make it the trigger.
 */
static void
each_failed(struct weft__each *e, size_t lo, size_t hi, bool failed,
            weft_status_t st, bool started, weft_error_t *err)
{
    weft_error_t *terr = NULL;
    weft_status_t tst = WEFT_OK;
    if (e->kind == EK_GATHER) {
        tst = weft__trigger_error(failed, st, err, lo, "index", &terr);
    }
    each_record(e, lo, hi, failed ? WEFT__FAILED : WEFT__CANCELLED, started,
                err);
    if (terr == NULL) {
        return;
    }
    if (weft__decision_take(
            &e->dec, WEFT__D_TRIGGER, (uint32_t)lo,
            weft__sibling_reason(terr, lo, e->name, "gather_each"))) {
        /* Read by the finalizer after our piece's faa on ended. */
        e->trigger_idx = lo;
        e->trigger_st = tst;
        e->trigger_err = terr;
        (void)weft_token_cancel(e->token, e->dec.reason);
    } else {
        weft_error_release(terr);
    }
}

/* Name err (if we hold it alone) after index i: "NAME[i]". */
static void
each_name_error(struct weft__each *e, weft_error_t *err, size_t i)
{
    char name[WEFT__ERROR_TASK_NAME_MAX];
    (void)snprintf(name, sizeof(name), "%s[%zu]", e->name, i);
    /* WEFT_EBUSY when the body passed a shared error in (fail_with): it
     * keeps the origin it has. */
    (void)weft__error_set_task(err, name, weft_error_task_id(err));
}

/* Index i ended with status st, which is not a plain success (a failure,
 * or a success that left an error recorded); slot is the task's error
 * slot (weft_task_fail() records there). Slow path of each_range().
 * Returns 1 when the index succeeded, else 0. */
static unsigned int __attribute__((noinline))
each_index_ended(struct weft__each *e, size_t i, weft_status_t st,
                 weft_value_t v, weft_error_t **slot)
{
    e->values[i].u64 = 0;
    weft_error_t *err = *slot;
    *slot = NULL;
    if (st == WEFT_OK) {
        /* Succeeded after recording an error: the error goes. */
        weft_error_release(err);
        e->values[i] = v;
        e->status[i] = WEFT__SUCCEEDED | EACH_STARTED;
        return 1;
    }
    if (st == WEFT_ECANCELED) {
        /* A cancelled index reports why it was cancelled. */
        if (err != NULL) {
            weft_error_release(err);
        }
        if (each_cancel_is_ours(e)) {
            e->status[i] = WEFT__CANCELLED | EACH_STARTED | EACH_OURS;
            return 0;
        }
        err = NULL;
        if (weft_error_create(&err, WEFT_ECANCELED,
                              "index %zu cancelled itself", i) == WEFT_OK) {
            each_name_error(e, err, i);
        }
        e->status[i] = WEFT__CANCELLED | EACH_STARTED;
        each_failed(e, i, i + 1, false, st, true, err);
        return 0;
    }
    if (err == NULL) {
        weft_status_t cs;
        if ((int)st > 0) {
            cs = weft_error_create(&err, st, "%s", weft_status_str(st));
        } else {
            /* Out of contract: still a failure, and explained. */
            cs = weft_error_create(&err, WEFT_EINVAL,
                                   "index body returned invalid status %d",
                                   (int)st);
            st = WEFT_EINVAL;
        }
        (void)cs; /* on ENOMEM err is the immortal error */
    }
    each_name_error(e, err, i);
    e->status[i] = WEFT__FAILED | EACH_STARTED;
    each_failed(e, i, i + 1, true, st, true, err);
    return 0;
}

/* [lo, hi) never started: a piece or a frame that did not run, for the
 * reason err (taken over; may be NULL). */
static void
each_unrun(struct weft__each *e, size_t lo, size_t hi, weft_error_t *err)
{
    if (lo >= hi || each_cancel_is_ours(e)) {
        if (err != NULL) {
            weft_error_release(err);
        }
        return;
    }
    each_failed(e, lo, hi, false, WEFT_ECANCELED, false,
                err != NULL ? err : weft__error_canceled());
}

/* ---- running the indices ---------------------------------------------- */

static weft_status_t each_frame_task(weft_task_t *self, void *arg,
                                     weft_value_t *result);

/*
 * Run [lo, hi) in index order on the calling task, splitting lazily
 * (see the file comment). Stops at the first index that finds the gather
 * decided; the rest stays unstarted.
 */
static void
each_range(weft_task_t *self, struct weft__each *e, size_t lo, size_t hi)
{
    struct weft__worker *w = weft__tls_worker;
    weft_error_t **slot = weft__task_error_slot((struct weft_future *)self);
    weft_each_fn_t fn = e->fn;
    void *arg = e->arg;
    uint64_t ok = 0;
    while (lo < hi) {
        /* Relaxed: a poll; an index that starts just after the decision
         * is a running index that sees the token cancelled. */
        if (__builtin_expect(
                weft__load_relaxed_u32(&e->dec.decided) != WEFT__D_NONE, 0)) {
            break;
        }
        if (__builtin_expect(w != NULL && hi - lo > 1 &&
                                 weft__deque_should_publish(&w->dq),
                             0)) {
            size_t mid = lo + (hi - lo) / 2;
            struct each_range right = {e, mid, hi, false};
            weft_frame_t fr;
            if (weft_frame_fork(self, &fr, each_frame_task, &right) ==
                WEFT_OK) {
                each_range(self, e, lo, mid);
                weft_error_t *err = NULL;
                (void)weft_frame_join(&fr, NULL, &err);
                if (!right.ran) {
                    each_unrun(e, mid, hi, err);
                } else if (err != NULL) {
                    weft_error_release(err);
                }
                break;
            }
        }
        weft_value_t v = {.u64 = 0};
        weft_status_t st = fn(self, arg, lo, &v);
        if (__builtin_expect(st == WEFT_OK && *slot == NULL, 1)) {
            e->values[lo] = v;
            e->status[lo] = WEFT__SUCCEEDED | EACH_STARTED;
            ok++;
        } else {
            ok += each_index_ended(e, lo, st, v, slot);
        }
        lo++;
    }
    if (ok != 0) {
        /* Relaxed would do: a count; the pieces' faa on ended orders it
         * for the finalizer. Pairs with: the finalizer's read of
         * succeeded in each_finalize(). */
        (void)weft__faa_u64(&e->succeeded, ok);
    }
}

static weft_status_t
each_frame_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct each_range *r = arg;
    r->ran = true;
    each_range(self, r->e, r->lo, r->hi);
    return WEFT_OK;
}

static weft_status_t
each_piece_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct each_piece *p = arg;
    each_range(self, p->e, p->lo, p->hi);
    return WEFT_OK;
}

/* ---- finalizing ------------------------------------------------------- */

static const char *
each_kind_name(const struct weft__each *e)
{
    return e->kind == EK_GATHER ? "gather_each" : "gather_each_settled";
}

/* The error group: the trigger first (key 0), then every other failure
 * in the order it happened (key seq + 1). As for gather, ranges cancelled
 * from elsewhere count unless the caller cancelled. */
static void
each_build_errors(struct weft__each *e, uint32_t decision, uint64_t nok)
{
    if (e->nentries == 0 && e->trigger_err == NULL) {
        return;
    }
    size_t nfailed = 0;
    for (size_t j = 0; j < e->nentries; j++) {
        nfailed += e->entries[j].phase == WEFT__FAILED;
    }
    weft_errgroup_t *g = NULL;
    if (weft__combine_errgroup(each_kind_name(e), e->uname, nfailed, e->n,
                               e->n - (size_t)nok - nfailed, "indices",
                               &g) != WEFT_OK) {
        e->errors_nomem = true;
        return;
    }
    if (e->trigger_err != NULL &&
        weft_errgroup_add_error(g, 0, e->trigger_err) != WEFT_OK) {
        e->errors_nomem = true;
    }
    for (size_t j = 0; j < e->nentries; j++) {
        const struct each_entry *en = &e->entries[j];
        bool include = en->phase == WEFT__FAILED ||
                       (e->kind == EK_GATHER && decision != WEFT__D_CANCEL);
        if (!include || en->err == NULL || en->lo == e->trigger_idx) {
            continue;
        }
        if (weft_errgroup_add_error(g, (uint64_t)en->seq + 1, en->err) !=
            WEFT_OK) {
            e->errors_nomem = true;
        }
    }
    e->errors = g;
}

static int
each_entry_cmp(const void *a, const void *b)
{
    const struct each_entry *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The last piece ended: decide what is undecided, build, settle (see
 * combine_finalize() for why the finalizer's reference goes first). */
static void
each_finalize(struct weft__each *e, struct weft__worker *w)
{
    if (e->cb_registered) {
        (void)weft__token_deregister(&e->cb);
        e->cb_registered = false;
    }
    uint32_t d = weft__decision_wait(&e->dec);
    if (d == WEFT__D_NONE) {
        d = weft__decision_take(&e->dec, WEFT__D_FINAL, UINT32_MAX, NULL)
                ? WEFT__D_FINAL
                : weft__decision_wait(&e->dec);
    }
    /* Relaxed: the faa chain on ended ordered every range's count. */
    uint64_t nok = weft__load_relaxed_u64(&e->succeeded);
    /* The pieces are done: the side table is ours (no lock needed, but
     * the last writer's unlock and our faa order it anyway). */
    each_build_errors(e, d, nok);
    if (e->entries_nomem) {
        e->errors_nomem = true;
    }
    if (e->nentries > 1) {
        qsort(e->entries, e->nentries, sizeof(e->entries[0]), each_entry_cmp);
    }
    weft_value_t v = {.u64 = e->kind == EK_GATHER ? e->n : nok};
    weft_error_t *err = NULL;
    weft_status_t st = WEFT_OK;
    if (d == WEFT__D_CANCEL) {
        st = WEFT_ECANCELED;
        err = weft__error_retained(e->dec.reason);
    } else if (d == WEFT__D_TRIGGER) {
        st = e->trigger_st;
        err = weft__error_retained(e->trigger_err);
    }
    struct weft_future *p = e->result;
    /* Not the last reference: the unsettled promise holds one. */
    each_unref(e);
    weft__promise_settle(w, p, st, v, err);
}

/* Watch of piece p: it ended (ran its range, or was cancelled unrun). */
static void
each_piece_ended(struct weft__watch *node, struct weft__worker *w,
                 struct weft_future *f)
{
    struct each_piece *p = (struct each_piece *)node;
    struct weft__each *e = p->e;
    if (weft_future_outcome(f) != WEFT_OUTCOME_SUCCEEDED &&
        !weft_future_has_started(f)) {
        each_unrun(e, p->lo, p->hi, weft__error_retained(weft_future_error(f)));
    }
    uint32_t last = e->npieces - 1; /* read before: e may go right after */
    /*
     * Pairs with: the other pieces' faa on ended (release sequence): the
     * one that sees npieces - 1 sees every index's value and status byte,
     * the side table and the trigger. After it a watch that is not the
     * last must not touch e.
     */
    if (weft__faa_u32(&e->ended, 1) == last) {
        each_finalize(e, w);
    }
}

/* ---- construction ----------------------------------------------------- */

static weft_status_t
each_start(weft_executor_t *ex, uint32_t kind, size_t n, weft_each_fn_t fn,
           void *arg, const weft_combine_opts_t *opts, weft_future_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (ex == NULL || fn == NULL || out == NULL || n > UINT32_MAX - 1) {
        return WEFT_EINVAL;
    }
    size_t np = weft_executor_num_workers(ex);
    if (np > n) {
        np = n;
    }
    size_t size = sizeof(struct weft__each) + np * sizeof(struct each_piece) +
                  n * (sizeof(weft_value_t) + 1);
    struct weft__each *e = weft__block_get(ex, size);
    if (e == NULL) {
        return WEFT_ENOMEM;
    }
    memset(e, 0, sizeof(*e));
    e->ops = &each_ops;
    e->kind = kind;
    e->fn = fn;
    e->arg = arg;
    e->n = n;
    e->ex = ex;
    e->name = opts != NULL && opts->name != NULL
                  ? opts->name
                  : (kind == EK_GATHER ? "gather_each" : "gather_each_settled");
    e->uname = opts != NULL ? opts->name : NULL;
    e->dec.decider = UINT32_MAX;
    e->trigger_idx = SIZE_MAX;
    e->watch_fn = each_piece_ended;
    e->pieces = (struct each_piece *)(e + 1);
    e->values = (weft_value_t *)(e->pieces + np);
    e->status = (uint8_t *)(e->values + n);
    memset(e->status, 0, n);
    pthread_mutex_init(&e->lock, NULL);
    weft_status_t st = weft__combine_token(ex, opts, true, &e->token);
    if (st != WEFT_OK) {
        pthread_mutex_destroy(&e->lock);
        weft__block_put(ex, e);
        return st;
    }
    /* The pieces, made but not queued. A piece that cannot be made
     * hands its range to the one before; without a first one, no call. */
    weft_spawn_opts_t so = {.token = e->token};
    for (size_t k = 0; k < np; k++) {
        struct each_piece *p = &e->pieces[k];
        p->e = e;
        p->lo = k * n / np;
        p->hi = (k + 1) * n / np;
        p->node.next = NULL;
        p->node.fn = &e->watch_fn;
        /* The pieces borrow our token: it is released after they end. */
        p->f = weft__future_make(ex, &so, each_piece_task, p, true);
        if (p->f == NULL) {
            if (k > 0) {
                e->pieces[k - 1].hi = n;
            }
            break;
        }
        e->npieces++;
    }
    if (n == 0 || e->npieces > 0) {
        e->result = weft__promise_create(ex, e, e->name);
    }
    if (e->result == NULL) {
        for (uint32_t k = 0; k < e->npieces; k++) {
            /* Never queued, never watched: end it unrun and forget it. */
            weft__future_submit_refused(e->pieces[k].f, WEFT_ENOMEM);
            (void)weft_future_release(e->pieces[k].f);
        }
        weft_token_release(e->token);
        pthread_mutex_destroy(&e->lock);
        weft__block_put(ex, e);
        return WEFT_ENOMEM;
    }
    weft__debug_track_combinator(e->result, opts);
    /* The creating call's, the promise's, and (with pieces) the
     * finalizer's. Unpaired: e is private until the pieces are queued. */
    weft__store_relaxed_u32(&e->refs, e->npieces > 0 ? 3 : 2);
    *out = e->result;
    if (n == 0) {
        weft__promise_settle(weft__tls_worker, e->result, WEFT_OK,
                             (weft_value_t){.u64 = 0}, NULL);
        each_unref(e);
        return WEFT_OK;
    }
    /* Runs at once, on this thread, when the token is cancelled already:
     * the pieces then end unrun. */
    e->cb_registered = true;
    if (weft__token_register(e->token, &e->cb, each_token_fired, e) !=
        WEFT_OK) {
        e->cb_registered = false;
    }
    for (uint32_t k = 0; k < e->npieces; k++) {
        bool watched = weft__future_watch(e->pieces[k].f, &e->pieces[k].node);
        WEFT__ASSERT(watched); /* not queued: it cannot have ended */
        (void)watched;
        weft__debug_adopt(e->pieces[k].f, e->result);
    }
    /* Newest first on a worker's deque: the caller's wait pops piece 0,
     * thieves take the last ones. */
    for (uint32_t k = e->npieces; k-- > 0;) {
        weft__future_submit(e->pieces[k].f);
    }
    each_unref(e); /* the creating call's */
    return WEFT_OK;
}

weft_status_t
weft_gather_each(weft_executor_t *ex, size_t n, weft_each_fn_t fn, void *arg,
                 const weft_combine_opts_t *opts, weft_future_t **out)
{
    return each_start(ex, EK_GATHER, n, fn, arg, opts, out);
}

weft_status_t
weft_gather_each_settled(weft_executor_t *ex, size_t n, weft_each_fn_t fn,
                         void *arg, const weft_combine_opts_t *opts,
                         weft_future_t **out)
{
    return each_start(ex, EK_SETTLED, n, fn, arg, opts, out);
}

/* ---- ledger accessors ------------------------------------------------- */

size_t
weft__each_size(const struct weft__each *e)
{
    return e->n;
}

/* The side-table entry holding index i, or NULL (entries are sorted and
 * disjoint once the combined future has ended). */
static const struct each_entry *
each_entry_of(const struct weft__each *e, size_t i)
{
    size_t lo = 0, hi = e->nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->entries[mid].lo <= i) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return NULL;
    }
    const struct each_entry *en = &e->entries[lo - 1];
    return i < en->hi ? en : NULL;
}

weft_status_t
weft__each_child(struct weft__each *e, const weft_future_t *f, size_t index,
                 weft_child_result_t *out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    if (index >= e->n) {
        return WEFT_ERANGE;
    }
    memset(out, 0, sizeof(*out));
    if (!weft_future_is_done(f)) {
        out->outcome = WEFT_OUTCOME_PENDING;
        return WEFT_OK;
    }
    uint8_t b = e->status[index];
    out->started = (b & EACH_STARTED) != 0;
    uint32_t phase = b & EACH_PHASE;
    if (phase == WEFT__SUCCEEDED) {
        out->outcome = WEFT_OUTCOME_SUCCEEDED;
        out->value = e->values[index];
        return WEFT_OK;
    }
    out->outcome =
        phase == WEFT__FAILED ? WEFT_OUTCOME_FAILED : WEFT_OUTCOME_CANCELLED;
    const struct each_entry *en =
        (b & EACH_OURS) ? NULL : each_entry_of(e, index);
    if (en != NULL) {
        out->error = en->err;
    } else if (phase != WEFT__FAILED) {
        /* Unstarted, or stopped by us: cancelled by the combinator. */
        out->cancelled_by_combinator = true;
        out->error = e->dec.reason;
    }
    return WEFT_OK;
}

weft_status_t
weft__each_values(struct weft__each *e, const weft_future_t *f,
                  weft_value_t *out, size_t n)
{
    if ((out == NULL && n > 0) || n > e->n) {
        return WEFT_EINVAL;
    }
    if (!weft_future_is_done(f)) {
        return WEFT_ESTATE;
    }
    const uint8_t *s = e->status;
    const weft_value_t *v = e->values;
    for (size_t i = 0; i < n; i++) {
        out[i].u64 = (s[i] & EACH_PHASE) == WEFT__SUCCEEDED ? v[i].u64 : 0;
    }
    return WEFT_OK;
}

weft_status_t
weft__each_errors(struct weft__each *e, const weft_future_t *f,
                  weft_errgroup_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (!weft_future_is_done(f)) {
        return WEFT_ESTATE;
    }
    if (e->errors_nomem) {
        return WEFT_ENOMEM;
    }
    if (e->errors != NULL) {
        (void)weft_errgroup_retain(e->errors);
        *out = e->errors;
        return WEFT_OK;
    }
    return weft_errgroup_create(out, "no index failed");
}

size_t
weft__each_decider(struct weft__each *e)
{
    uint32_t d = weft__decision_wait(&e->dec);
    if (d == WEFT__D_TRIGGER && e->dec.decider != UINT32_MAX) {
        return e->dec.decider;
    }
    return SIZE_MAX;
}
