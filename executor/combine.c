/*
 * combine.c - gather, gather_settled, any, first_success, quorum, wait and
 * as-completed over one engine (see combine.h for the state and its
 * rules; docs/semantics.md for the table).
 */
#include "executor/combine.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <weft/combine.h>

#include "executor/each.h"
#include "executor/executor.h"
#include "executor/future.h"
#include "primitives/alloc.h"
#include "primitives/atomics.h"
#include "primitives/cancel.h"
#include "primitives/error.h"

enum combine_kind {
    CK_GATHER = 1,
    CK_SETTLED,
    CK_ANY,
    CK_FIRST,
    CK_QUORUM,
    CK_WAIT,
    CK_ITER
};


struct weft__combine {
    const struct weft__promise_ops *ops; /* first: see future.h */
    uint32_t refs;                       /* atomic; see combine.h */
    uint32_t kind;
    uint32_t n;
    uint32_t k; /* quorum size; wait mode */
    weft_executor_t *ex;
    struct weft_future *result; /* the promise; NULL for CK_ITER */
    const char *name;

    uint32_t seq;       /* faa: next order[] slot */
    uint32_t ended;     /* faa: children whose watch ran */
    uint32_t succeeded; /* faa */
    uint32_t unsucc;    /* faa: failed or cancelled */

    /* The decision (combine.h): decider is the deciding child's index or
     * UINT32_MAX; reason is passed to the children we cancel; owned. */
    struct weft__decision dec;

    weft_token_t *token; /* caller's token or our deadline token; owned */
    struct weft__token_cb cb;
    bool cb_registered;

    /* The failure the combined future reports (first entry of its error
     * group): set by the gather decider, or by the finalizer for
     * first_success/quorum (the first failure in completion order). */
    uint32_t trigger_idx; /* UINT32_MAX: none */
    weft_status_t trigger_st;
    weft_error_t *trigger_err; /* owned */

    weft_errgroup_t *errors; /* built by the finalizer; NULL: none/ENOMEM */
    uint32_t built;          /* 1 once errors is final; release-stored */
    bool errors_nomem;

    /* CK_ITER: the consumer's parked promise, handed over by fas. */
    struct weft_future *waiter;
    uint32_t consumed;

    weft__watch_fn_t watch_fn; /* every node's callback slot (future.h) */
    struct weft_future **children;
    struct weft__watch *nodes;
    uint32_t *order; /* order[seq] = index + 1, release-stored */
};

static weft_status_t combine_cancel_op(void *state, weft_error_t *reason);
static void combine_release_op(void *state);

static const struct weft__promise_ops combine_ops = {
    combine_cancel_op,
    combine_release_op,
};

/* ---- state lifetime ---------------------------------------------------- */

/*
 * How many children ahead the passes over all children prefetch. Those
 * passes touch one line of each 192-byte object, a stride the hardware
 * prefetchers follow poorly, and their locked instructions keep the core
 * from running ahead on its own; prefetches are not ordered by them.
 */
#define PREFETCH_AHEAD 16

static void
combine_free(struct weft__combine *c)
{
    /*
     * Newest first: weft_combine_values() and the LIFO run of a gather
     * end at one end of the children, and a sweep that starts where the
     * last one stopped finds those objects still in cache; the pool then
     * hands them out again in that order.
     */
    for (uint32_t i = c->n; i-- > 0;) {
        if (i >= PREFETCH_AHEAD) {
            __builtin_prefetch(c->children[i - PREFETCH_AHEAD], 1);
        }
        (void)weft_future_release(c->children[i]);
    }
    if (c->dec.reason != NULL) {
        weft_error_release(c->dec.reason);
    }
    if (c->token != NULL) {
        weft_token_release(c->token);
    }
    if (c->errors != NULL) {
        weft_errgroup_release(c->errors);
    }
    if (c->trigger_err != NULL) {
        weft_error_release(c->trigger_err);
    }
    weft__block_put(c->ex, c);
}

static void
combine_unref(struct weft__combine *c)
{
    /* Pairs with: the other unrefs (acq_rel RMW): the last one sees every
     * write made before any earlier unref. */
    if (weft__faa_u32(&c->refs, (uint32_t)-1) == 1) {
        combine_free(c);
    }
}

static void
combine_release_op(void *state)
{
    combine_unref(state);
}

/* ---- decisions --------------------------------------------------------- */

uint32_t
weft__decision_wait(struct weft__decision *d)
{
    for (;;) {
        /* Pairs with: the release store in weft__decision_take(). */
        uint32_t k = weft__load_acq_u32(&d->decided);
        if (k != WEFT__D_BUSY) {
            return k;
        }
        sched_yield();
    }
}

bool
weft__decision_take(struct weft__decision *d, uint32_t kind, uint32_t who,
                    weft_error_t *reason)
{
    /*
     * One decision. Pairs with: the acquire loads in
     * weft__decision_wait(). Relaxed would do for the CAS itself; it is a
     * full barrier anyway.
     */
    if (!weft__cas_u32(&d->decided, WEFT__D_NONE, WEFT__D_BUSY)) {
        if (reason != NULL) {
            weft_error_release(reason);
        }
        return false;
    }
    d->decider = who;
    d->reason = reason;
    /* Pairs with: the acquire loads in weft__decision_wait(). */
    weft__store_rel_u32(&d->decided, kind);
    return true;
}

/* Ask every child that has not ended to stop, with c->dec.reason. */
static void
combine_cancel_children(struct weft__combine *c)
{
    for (uint32_t i = 0; i < c->n; i++) {
        struct weft_future *ch = c->children[i];
        if (!weft_future_is_done(ch)) {
            (void)weft_future_cancel(ch, c->dec.reason);
        }
    }
}

weft_error_t *
weft__sibling_reason(weft_error_t *trigger, size_t index, const char *name,
                     const char *what)
{
    weft_error_t *e = NULL;
    if (name != NULL) {
        (void)weft_error_wrap(&e, trigger, WEFT_ECANCELED,
                              "cancelled: %s child %zu ('%s') failed", what,
                              index, name);
    } else {
        (void)weft_error_wrap(&e, trigger, WEFT_ECANCELED,
                              "cancelled: %s child %zu failed", what, index);
    }
    return e; /* the out-of-memory error when that failed */
}

/* The caller's cancellation: token callback, deadline, or cancel(). */
static weft_status_t
combine_cancel_with(struct weft__combine *c, weft_error_t *reason)
{
    if (!weft__decision_take(&c->dec, WEFT__D_CANCEL, UINT32_MAX, reason)) {
        return WEFT_EALREADY;
    }
    combine_cancel_children(c);
    return WEFT_OK;
}

static weft_status_t
combine_cancel_op(void *state, weft_error_t *reason)
{
    struct weft__combine *c = state;
    weft_error_t *e = reason;
    if (e != NULL) {
        (void)weft_error_retain(e);
    } else {
        (void)weft_error_create(&e, WEFT_ECANCELED,
                                "combined future cancelled");
    }
    return combine_cancel_with(c, e);
}

/* Token callback: the caller's token was cancelled or its deadline came. */
static void
combine_token_fired(void *arg, weft_error_t *reason)
{
    struct weft__combine *c = arg;
    weft_error_t *e = reason;
    if (e != NULL) {
        (void)weft_error_retain(e);
    } else {
        e = weft__error_canceled();
    }
    (void)combine_cancel_with(c, e);
}

/* ---- the ledger -------------------------------------------------------- */

void
weft__child_result(struct weft_future *ch, const weft_error_t *ours,
                   weft_child_result_t *out)
{
    memset(out, 0, sizeof(*out));
    out->future = ch;
    out->outcome = weft_future_outcome(ch);
    out->started = weft_future_has_started(ch);
    if (out->outcome == WEFT_OUTCOME_SUCCEEDED) {
        (void)weft_future_value(ch, &out->value);
    } else if (out->outcome != WEFT_OUTCOME_PENDING) {
        out->error = weft_future_error(ch);
        out->cancelled_by_combinator = out->outcome == WEFT_OUTCOME_CANCELLED &&
                                       ours != NULL && out->error == ours;
    }
}

static struct weft__combine *
combine_of(const weft_future_t *f)
{
    if (f == NULL || !(weft__future_kind(f) & WEFT__K_PROMISE)) {
        return NULL;
    }
    struct weft__combine *c = f->arg;
    if (c->ops != &combine_ops) {
        return NULL; /* a group's promise */
    }
    return c;
}

/* Whether child ch's cancellation is one we asked for (or the caller's). */
static bool
combine_cancel_is_ours(struct weft__combine *c, const weft_error_t *err)
{
    return err != NULL && c->dec.reason != NULL && err == c->dec.reason;
}

weft_status_t
weft__combine_errgroup(const char *kind, const char *name, size_t nfailed,
                       size_t n, size_t ncancelled, const char *what,
                       weft_errgroup_t **out)
{
    return weft_errgroup_create(out, "%s%s%s: %zu of %zu %s failed, %zu "
                                     "cancelled",
                                kind, name ? " " : "", name ? name : "",
                                nfailed, n, what, ncancelled);
}

/*
 * Build the error group: the trigger first (key 0), then every other
 * failure in the order it happened (key seq + 1). For gather, children
 * cancelled from elsewhere count as failures; children cancelled by us or
 * by the caller never do.
 */
static void
combine_build_errors(struct weft__combine *c, uint32_t decision)
{
    /* Relaxed: the finalizer's faa on ended ordered every slot claim. */
    uint32_t nslots = weft__load_relaxed_u32(&c->seq);
    if (nslots == 0) {
        return; /* every child succeeded */
    }
    static const char *const names[] = {
        [CK_GATHER] = "gather",     [CK_SETTLED] = "gather_settled",
        [CK_ANY] = "any",           [CK_FIRST] = "first_success",
        [CK_QUORUM] = "quorum",     [CK_WAIT] = "wait",
        [CK_ITER] = "as_completed",
    };
    uint32_t nfailed = 0, ncancelled = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        weft_outcome_t o = weft_future_outcome(c->children[i]);
        nfailed += o == WEFT_OUTCOME_FAILED;
        ncancelled += o == WEFT_OUTCOME_CANCELLED;
    }
    weft_errgroup_t *g = NULL;
    if (weft__combine_errgroup(names[c->kind], c->name, nfailed, c->n,
                               ncancelled, "children", &g) != WEFT_OK) {
        c->errors_nomem = true;
        return;
    }
    uint32_t trig = c->trigger_idx;
    if (trig != UINT32_MAX && c->trigger_err != NULL &&
        weft_errgroup_add_error(g, 0, c->trigger_err) != WEFT_OK) {
        c->errors_nomem = true;
    }
    for (uint32_t s = 0; s < nslots; s++) {
        /* Pairs with: the release store in combine_child_ended(); the
         * finalizer's faa on ended already ordered it, the acquire is
         * belt and braces for the ledger readers. */
        uint32_t idx = weft__load_acq_u32(&c->order[s]) - 1;
        struct weft_future *ch = c->children[idx];
        weft_outcome_t o = weft_future_outcome(ch);
        weft_error_t *e = weft_future_error(ch);
        /* A gather the caller cancelled reports no cancellation as a
         * failure, whoever asked for it first. */
        bool include = o == WEFT_OUTCOME_FAILED ||
                       (o == WEFT_OUTCOME_CANCELLED && c->kind == CK_GATHER &&
                        decision != WEFT__D_CANCEL && !combine_cancel_is_ours(c, e));
        if (!include || e == NULL || idx == trig) {
            continue;
        }
        if (weft_errgroup_add_error(g, (uint64_t)s + 1, e) != WEFT_OK) {
            c->errors_nomem = true;
        }
    }
    c->errors = g;
}

/* ---- settling ---------------------------------------------------------- */

weft_error_t *
weft__error_retained(weft_error_t *e)
{
    if (e == NULL) {
        return weft__error_canceled();
    }
    (void)weft_error_retain(e);
    return e;
}

weft_status_t
weft__trigger_error(bool failed, weft_status_t st, weft_error_t *e,
                    size_t idx, const char *what, weft_error_t **err)
{
    if (failed) {
        *err = weft__error_retained(e);
        return st == WEFT_OK || st == WEFT_ECANCELED ? WEFT_EFAILED : st;
    }
    (void)weft_error_wrap(err, e, WEFT_EFAILED,
                          "%s %zu was cancelled from elsewhere", what, idx);
    return WEFT_EFAILED;
}

/*
 * The failure a combinator ends with when child idx decided it
 * (weft__trigger_error()).
 */
static weft_status_t
combine_trigger_error(struct weft__combine *c, uint32_t idx, weft_error_t **err)
{
    struct weft_future *ch = c->children[idx];
    return weft__trigger_error(
        weft_future_outcome(ch) == WEFT_OUTCOME_FAILED,
        weft_future_status(ch), weft_future_error(ch), idx, "child", err);
}

/* Record child idx as the trigger (once, before the finalizer runs). */
static void
combine_set_trigger(struct weft__combine *c, uint32_t idx)
{
    c->trigger_idx = idx;
    c->trigger_st = combine_trigger_error(c, idx, &c->trigger_err);
}

/* The first child, in completion order, that did not succeed. */
static uint32_t
combine_first_unsucc(struct weft__combine *c)
{
    /* Relaxed: the finalizer's faa on ended ordered every slot claim. */
    uint32_t nslots = weft__load_relaxed_u32(&c->seq);
    for (uint32_t s = 0; s < nslots; s++) {
        /* Pairs with: the release store of order[] in
         * combine_child_ended(). */
        uint32_t idx = weft__load_acq_u32(&c->order[s]) - 1;
        if (weft_future_outcome(c->children[idx]) != WEFT_OUTCOME_SUCCEEDED) {
            return idx;
        }
    }
    return UINT32_MAX;
}

/* End the promise per the decision; called once, by the finalizer, or
 * at the decision for any/wait. */
static void
combine_settle(struct weft__combine *c, struct weft__worker *w,
               uint32_t decision)
{
    weft_value_t v = {.u64 = 0};
    weft_error_t *err = NULL;
    weft_status_t st = WEFT_OK;
    if (decision == WEFT__D_CANCEL) {
        st = WEFT_ECANCELED;
        err = weft__error_retained(c->dec.reason);
    } else if (decision == WEFT__D_TRIGGER) {
        st = c->trigger_st;
        err = weft__error_retained(c->trigger_err);
    } else {
        switch (c->kind) {
        case CK_ANY:
        case CK_FIRST: {
            struct weft_future *ch = c->children[c->dec.decider];
            weft_outcome_t o = weft_future_outcome(ch);
            if (o == WEFT_OUTCOME_SUCCEEDED) {
                (void)weft_future_value(ch, &v);
            } else {
                /* A child that failed, or was cancelled from elsewhere:
                 * a failure of any() (it was not cancelled itself). */
                st = combine_trigger_error(c, c->dec.decider, &err);
            }
            break;
        }
        case CK_SETTLED:
        case CK_QUORUM:
            /* How many succeeded (every child has ended). */
            for (uint32_t i = 0; i < c->n; i++) {
                v.u64 += weft_future_outcome(c->children[i]) ==
                         WEFT_OUTCOME_SUCCEEDED;
            }
            break;
        default:
            v.u64 = c->n;
            break;
        }
    }
    weft__promise_settle(w, c->result, st, v, err);
}

/*
 * The last child ended: decide what is undecided, build, settle; and drop
 * the reference reserved for the finalizer (see combine_make).
 *
 * That reference goes before the settle whenever the settle is still to
 * come: the promise holds its own reference to c until it is freed, and it
 * cannot be freed before it is settled, so c stays alive through
 * combine_settle(). Dropping it after the settle would let the waiter wake,
 * release the promise and return while c (and so every child) was still
 * held by this thread: a waiter that then destroys a child's executor
 * would see EBUSY.
 */
static void
combine_finalize(struct weft__combine *c, struct weft__worker *w)
{
    if (c->cb_registered) {
        /* From here the token callback is not running and never will
         * (it may be running on this very thread, which is fine). */
        (void)weft__token_deregister(&c->cb);
        c->cb_registered = false;
    }
    if (c->kind == CK_ITER) {
        combine_unref(c);
        return;
    }
    uint32_t decision = weft__decision_wait(&c->dec);
    bool settled_early = false;
    if (decision == WEFT__D_NONE) {
        /* first_success/quorum with nobody winning: every child failed
         * or was cancelled. */
        uint32_t kind =
            c->kind == CK_FIRST || c->kind == CK_QUORUM ? WEFT__D_TRIGGER : WEFT__D_FINAL;
        if (weft__decision_take(&c->dec, kind, UINT32_MAX, NULL)) {
            decision = kind;
        } else {
            decision = weft__decision_wait(&c->dec);
        }
    } else if (c->kind == CK_ANY || c->kind == CK_WAIT) {
        /* any and wait settle at the decision, unless it was the
         * caller's cancellation, which waits for the children. */
        settled_early = decision != WEFT__D_CANCEL;
    }
    if (decision == WEFT__D_TRIGGER && c->trigger_idx == UINT32_MAX) {
        /* first_success / quorum: the failure they report is the first
         * one that happened. */
        uint32_t first = combine_first_unsucc(c);
        if (first != UINT32_MAX) {
            combine_set_trigger(c, first);
        }
    }
    combine_build_errors(c, decision);
    /* Pairs with: the acquire load in weft_combine_errors() (any()
     * settles before this point, so its readers need the flag). */
    weft__store_rel_u32(&c->built, 1);
    if (settled_early) {
        /* The promise may be gone already: ours may be the last. */
        combine_unref(c);
        return;
    }
    if (c->kind == CK_WAIT) {
        /* The wait condition holds once everything ended. */
        decision = decision == WEFT__D_CANCEL ? WEFT__D_CANCEL : WEFT__D_FINAL;
    }
    /* Not the last reference: the unsettled promise holds one (above). */
    combine_unref(c);
    combine_settle(c, w, decision);
}

/*
 * Outcome of child ch, which has ended: its phase (the outcome values are
 * the phase values), except for a debug-mode child, which the getter
 * marks observed.
 */
static inline weft_outcome_t
combine_child_outcome(struct weft_future *ch)
{
    _Static_assert(WEFT_OUTCOME_SUCCEEDED == WEFT__SUCCEEDED &&
                       WEFT_OUTCOME_FAILED == WEFT__FAILED &&
                       WEFT_OUTCOME_CANCELLED == WEFT__CANCELLED &&
                       WEFT_OUTCOME_PENDING == WEFT__QUEUED,
                   "outcomes are phases");
    if (__builtin_expect(weft__future_kind(ch) & WEFT__K_DEBUG, 0)) {
        return weft_future_outcome(ch);
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(). */
    return (weft_outcome_t)weft__future_phase(weft__load_acq_u32(&ch->state));
}

/* The rule, run on the thread that ended child idx (ch). */
static void
combine_child_ended(struct weft__combine *c, struct weft__worker *w,
                    uint32_t idx, struct weft_future *ch)
{
    weft_outcome_t o = combine_child_outcome(ch);
    /*
     * A slot in completion order: every child for as-completed, only the
     * ones that did not succeed otherwise (they are all the finalizer
     * orders), so a success costs one atomic here: the faa on ended.
     * Pairs with: the acquire loads of order[] (as-completed consumer,
     * finalizer).
     */
    if (c->kind == CK_ITER || o != WEFT_OUTCOME_SUCCEEDED) {
        uint32_t s = weft__faa_u32(&c->seq, 1);
        weft__store_rel_u32(&c->order[s], idx + 1);
    }
    if (c->kind == CK_QUORUM) {
        /* Relaxed: counts for the quorum rule; the faa on ended orders
         * them for the finalizer. */
        (void)weft__faa_u32(
            o == WEFT_OUTCOME_SUCCEEDED ? &c->succeeded : &c->unsucc, 1);
    }

    switch (c->kind) {
    case CK_GATHER:
        if (o != WEFT_OUTCOME_SUCCEEDED) {
            /* A child cancelled while the caller's token is cancelled is
             * the caller's cancellation, not a failure. */
            if (o == WEFT_OUTCOME_CANCELLED && c->token != NULL &&
                weft_token_is_cancelled(c->token)) {
                weft_error_t *r = NULL;
                (void)weft_token_reason(c->token, &r);
                if (weft__decision_take(&c->dec, WEFT__D_CANCEL, UINT32_MAX,
                                   weft__error_retained(r))) {
                    combine_cancel_children(c);
                }
                break;
            }
            weft_error_t *terr = NULL;
            weft_status_t tst = combine_trigger_error(c, idx, &terr);
            if (weft__decision_take(&c->dec, WEFT__D_TRIGGER, idx,
                               weft__sibling_reason(terr, idx,
                                                    weft_future_name(ch),
                                                    "gather"))) {
                /* Read by the finalizer after our faa on ended. */
                c->trigger_idx = idx;
                c->trigger_st = tst;
                c->trigger_err = terr;
                combine_cancel_children(c);
            } else {
                weft_error_release(terr);
            }
        }
        break;
    case CK_ANY:
        if (weft__decision_take(&c->dec, WEFT__D_WIN, idx, NULL)) {
            combine_settle(c, w, WEFT__D_WIN);
        }
        break;
    case CK_FIRST:
        if (o == WEFT_OUTCOME_SUCCEEDED) {
            weft_error_t *r = NULL;
            (void)weft_error_create(&r, WEFT_ECANCELED,
                                    "cancelled: first_success child %u won",
                                    idx);
            if (weft__decision_take(&c->dec, WEFT__D_WIN, idx, r)) {
                combine_cancel_children(c);
            }
        }
        break;
    case CK_QUORUM: {
        /* Relaxed: counts only; the faa's above are the sync points. */
        uint32_t ok = weft__load_relaxed_u32(&c->succeeded);
        uint32_t bad = weft__load_relaxed_u32(&c->unsucc);
        if (o == WEFT_OUTCOME_SUCCEEDED && ok >= c->k) {
            weft_error_t *r = NULL;
            (void)weft_error_create(&r, WEFT_ECANCELED,
                                    "cancelled: quorum of %u reached", c->k);
            if (weft__decision_take(&c->dec, WEFT__D_WIN, idx, r)) {
                combine_cancel_children(c);
            }
        } else if (o != WEFT_OUTCOME_SUCCEEDED && c->n - bad < c->k) {
            /*
             * The trigger is the first failure: slot 0 (only children
             * that did not succeed take slots, and ours is taken). Its
             * claimer may not have stored it yet: a few instructions.
             * Pairs with: the release store of order[] above.
             */
            uint32_t v;
            while ((v = weft__load_acq_u32(&c->order[0])) == 0) {
                sched_yield();
            }
            uint32_t first = v - 1;
            weft_error_t *terr = NULL;
            weft_status_t tst = combine_trigger_error(c, first, &terr);
            if (weft__decision_take(&c->dec, WEFT__D_TRIGGER, idx,
                    weft__sibling_reason(terr, first,
                                         weft_future_name(c->children[first]),
                                         "quorum"))) {
                /* Read by the finalizer after our faa on ended. */
                c->trigger_idx = first;
                c->trigger_st = tst;
                c->trigger_err = terr;
                combine_cancel_children(c);
            } else {
                weft_error_release(terr);
            }
        }
        break;
    }
    case CK_WAIT:
        if (c->k == WEFT_WAIT_FIRST_COMPLETED ||
            (c->k == WEFT_WAIT_FIRST_FAILURE && o != WEFT_OUTCOME_SUCCEEDED)) {
            if (weft__decision_take(&c->dec, WEFT__D_WIN, idx, NULL)) {
                combine_settle(c, w, WEFT__D_WIN);
            }
        }
        break;
    case CK_ITER: {
        /* Hand the parked consumer its wake-up. Full barrier (RMW).
         * Pairs with: the CAS that installs the waiter in
         * weft_as_completed_next(). */
        struct weft_future *p = weft__fas_ptr((void **)&c->waiter, NULL);
        if (p != NULL) {
            weft__promise_settle(w, p, WEFT_OK, (weft_value_t){.u64 = 0}, NULL);
        }
        break;
    }
    default:
        break;
    }

    /*
     * Pairs with: the other children's faa (release sequence): the one
     * that sees n - 1 sees every child's outcome and order[] slot. After
     * this faa a watch that is not the last must not touch c: the
     * finalizer may free it. The finalizer drops the reference reserved
     * for it (see combine_make).
     */
    uint32_t last = c->n - 1; /* read before: c may go right after */
    /* Pairs with: the other watches' faa on ended (see above). */
    if (weft__faa_u32(&c->ended, 1) == last) {
        combine_finalize(c, w); /* drops the finalizer's reference */
    }
}

static void
combine_watch_fired(struct weft__watch *node, struct weft__worker *w,
                    struct weft_future *f)
{
    /* The node points at c->watch_fn (see future.h). */
    struct weft__combine *c =
        (struct weft__combine *)((char *)node->fn -
                                 offsetof(struct weft__combine, watch_fn));
    combine_child_ended(c, w, (uint32_t)(node - c->nodes), f);
}

/* ---- construction ------------------------------------------------------ */

static void
release_adopted(weft_future_t *const *children, size_t n,
                const weft_combine_opts_t *opts)
{
    if (opts != NULL && opts->adopt && children != NULL) {
        for (size_t i = 0; i < n; i++) {
            if (children[i] != NULL) {
                (void)weft_future_release(children[i]);
            }
        }
    }
}

static weft_status_t
combine_make(weft_executor_t *ex, uint32_t kind, weft_future_t *const *ch,
             size_t n, uint32_t k, const weft_combine_opts_t *opts,
             struct weft__combine **out)
{
    size_t sz = sizeof(struct weft__combine) +
                n * (sizeof(struct weft_future *) + sizeof(struct weft__watch) +
                     sizeof(uint32_t));
    struct weft__combine *c = weft__block_get(ex, sz);
    if (c == NULL) {
        return WEFT_ENOMEM;
    }
    memset(c, 0, sizeof(*c));
    c->ops = &combine_ops;
    c->kind = kind;
    c->n = (uint32_t)n;
    c->k = k;
    c->ex = ex;
    c->dec.decider = UINT32_MAX;
    c->trigger_idx = UINT32_MAX;
    c->watch_fn = combine_watch_fired;
    c->name = opts != NULL ? opts->name : NULL;
    c->children = (struct weft_future **)(c + 1);
    c->nodes = (struct weft__watch *)(c->children + n);
    c->order = (uint32_t *)(c->nodes + n);
    memset(c->order, 0, n * sizeof(uint32_t));
    bool adopt = opts != NULL && opts->adopt;
    for (size_t i = 0; i < n; i++) {
        c->children[i] = ch[i];
        if (!adopt) {
            (void)weft_future_retain(ch[i]);
        }
        c->nodes[i].next = NULL;
        c->nodes[i].fn = &c->watch_fn;
    }
    /* The setup reference, plus one reserved for the finalizer (the
     * watch of the last child), which watches before it never touch;
     * the promise's is added by the caller once it exists. */
    c->refs = n > 0 ? 2 : 1;
    *out = c;
    return WEFT_OK;
}

weft_status_t
weft__combine_token(weft_executor_t *ex, const weft_combine_opts_t *opts,
                    bool always, weft_token_t **out)
{
    *out = NULL;
    if (!always &&
        (opts == NULL || (opts->token == NULL && opts->deadline_ns == 0))) {
        return WEFT_OK;
    }
    uint64_t dl = opts != NULL && opts->deadline_ns != 0 ? opts->deadline_ns
                                                         : WEFT_DEADLINE_NONE;
    weft_token_t *t = NULL;
    weft_status_t st = weft_token_create_with_deadline(
        opts != NULL ? opts->token : NULL, dl, &t);
    if (st != WEFT_OK) {
        return st;
    }
    if (weft__token_next_deadline(t) != WEFT_DEADLINE_NONE) {
        /* Make the deadline act even if nobody polls the token. A refusal
         * (executor being destroyed) leaves the deadline lazy. */
        (void)weft_executor_watch_deadline(ex, t);
    }
    *out = t;
    return WEFT_OK;
}

/* Watch every child; those already ended run the rule here. */
static void
combine_arm(struct weft__combine *c)
{
    struct weft__worker *w = weft__tls_worker;
    if (c->token != NULL) {
        c->cb_registered = true;
        if (weft__token_register(c->token, &c->cb, combine_token_fired, c) !=
            WEFT_OK) {
            c->cb_registered = false;
        }
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (i + PREFETCH_AHEAD < c->n) {
            __builtin_prefetch(c->children[i + PREFETCH_AHEAD], 1);
        }
        if (!weft__future_watch(c->children[i], &c->nodes[i])) {
            combine_watch_fired(&c->nodes[i], w, c->children[i]);
        }
    }
}

static weft_status_t
combine_start(weft_executor_t *ex, uint32_t kind, weft_future_t *const *ch,
              size_t n, size_t k, const weft_combine_opts_t *opts,
              weft_future_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    bool bad = ex == NULL || out == NULL || (ch == NULL && n > 0) ||
               n > UINT32_MAX - 1;
    for (size_t i = 0; !bad && i < n; i++) {
        bad = ch[i] == NULL;
    }
    if (!bad && kind == CK_QUORUM) {
        bad = k < 1 || k > n;
    }
    if (!bad && (kind == CK_ANY || kind == CK_FIRST)) {
        bad = n == 0;
    }
    if (bad) {
        release_adopted(ch, n, opts);
        return WEFT_EINVAL;
    }
    struct weft__combine *c = NULL;
    weft_status_t st = combine_make(ex, kind, ch, n, (uint32_t)k, opts, &c);
    if (st == WEFT_OK) {
        st = weft__combine_token(c->ex, opts, false, &c->token);
        if (st == WEFT_OK) {
            c->result = weft__promise_create(ex, c, c->name);
            weft__debug_track_combinator(c->result, opts);
            st = c->result == NULL ? WEFT_ENOMEM : WEFT_OK;
        }
        if (st != WEFT_OK) {
            /* Nothing is watched yet: undo by hand. The children are
             * released by combine_free (retained or adopted). */
            combine_free(c);
            return st;
        }
    } else {
        release_adopted(ch, n, opts);
        return st;
    }
    /* The promise's reference to the state. Unpaired: c is private. */
    weft__store_relaxed_u32(&c->refs, weft__load_relaxed_u32(&c->refs) + 1);
    /* The caller's reference to the promise, taken before anything can
     * settle it. */
    *out = c->result;
    if (n == 0) {
        combine_settle(c, weft__tls_worker, WEFT__D_FINAL);
        combine_unref(c);
        return WEFT_OK;
    }
    combine_arm(c);
    combine_unref(c); /* setup reference */
    return WEFT_OK;
}

weft_status_t
weft_gather(weft_executor_t *ex, weft_future_t *const *children, size_t n,
            const weft_combine_opts_t *opts, weft_future_t **out)
{
    return combine_start(ex, CK_GATHER, children, n, 0, opts, out);
}

weft_status_t
weft_gather_settled(weft_executor_t *ex, weft_future_t *const *children,
                    size_t n, const weft_combine_opts_t *opts,
                    weft_future_t **out)
{
    return combine_start(ex, CK_SETTLED, children, n, 0, opts, out);
}

weft_status_t
weft_any(weft_executor_t *ex, weft_future_t *const *children, size_t n,
         const weft_combine_opts_t *opts, weft_future_t **out)
{
    return combine_start(ex, CK_ANY, children, n, 0, opts, out);
}

weft_status_t
weft_first_success(weft_executor_t *ex, weft_future_t *const *children,
                   size_t n, const weft_combine_opts_t *opts,
                   weft_future_t **out)
{
    return combine_start(ex, CK_FIRST, children, n, 0, opts, out);
}

weft_status_t
weft_quorum(weft_executor_t *ex, weft_future_t *const *children, size_t n,
            size_t k, const weft_combine_opts_t *opts, weft_future_t **out)
{
    return combine_start(ex, CK_QUORUM, children, n, k, opts, out);
}

/* ---- ledger accessors -------------------------------------------------- */

size_t
weft_combine_size(const weft_future_t *combined)
{
    struct weft__each *e = weft__each_of(combined);
    if (e != NULL) {
        return weft__each_size(e);
    }
    struct weft__combine *c = combine_of(combined);
    return c != NULL ? c->n : 0;
}

weft_status_t
weft_combine_child(const weft_future_t *combined, size_t index,
                   weft_child_result_t *out)
{
    struct weft__each *e = weft__each_of(combined);
    if (e != NULL) {
        return weft__each_child(e, combined, index, out);
    }
    struct weft__combine *c = combine_of(combined);
    if (c == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    if (index >= c->n) {
        return WEFT_ERANGE;
    }
    /* A reason exists only once decided; wait out a decider mid-write. */
    uint32_t d = weft__decision_wait(&c->dec);
    weft__child_result(c->children[index], d != WEFT__D_NONE ? c->dec.reason : NULL, out);
    return WEFT_OK;
}

weft_status_t
weft_combine_values(const weft_future_t *combined, weft_value_t *out, size_t n)
{
    struct weft__each *e = weft__each_of(combined);
    if (e != NULL) {
        return weft__each_values(e, combined, out, n);
    }
    struct weft__combine *c = combine_of(combined);
    if (c == NULL || (out == NULL && n > 0) || n > c->n) {
        return WEFT_EINVAL;
    }
    if (!weft_future_is_done(combined)) {
        return WEFT_ESTATE;
    }
    for (size_t i = 0; i < n; i++) {
        struct weft_future *ch = c->children[i];
        if (i + PREFETCH_AHEAD < n) {
            __builtin_prefetch(c->children[i + PREFETCH_AHEAD], 0);
        }
        if (__builtin_expect(weft__future_kind(ch) & WEFT__K_DEBUG, 0)) {
            /* Through the getters, which mark the child observed. */
            out[i].u64 = 0;
            if (weft_future_outcome(ch) == WEFT_OUTCOME_SUCCEEDED) {
                (void)weft_future_value(ch, &out[i]);
            }
            continue;
        }
        /*
         * The phase alone says whether the child succeeded (status is
         * WEFT_OK exactly then), and the value sits on the hot line, so
         * status is not read. A child still running (any() settles
         * early) reads QUEUED: zero, as weft_future_outcome() would say.
         * Pairs with: the outcome CAS in weft__future_complete_shared().
         */
        uint32_t s = weft__load_acq_u32(&ch->state);
        out[i] = weft__future_phase(s) == WEFT__SUCCEEDED
                     ? ch->value
                     : (weft_value_t){.u64 = 0};
    }
    return WEFT_OK;
}

weft_status_t
weft_combine_errors(const weft_future_t *combined, weft_errgroup_t **out)
{
    struct weft__each *e = weft__each_of(combined);
    if (e != NULL) {
        return weft__each_errors(e, combined, out);
    }
    struct weft__combine *c = combine_of(combined);
    if (c == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (!weft_future_is_done(combined)) {
        return WEFT_ESTATE;
    }
    /*
     * any settles before the finalizer builds the group; the group
     * appears once every child ended. Pairs with: the finalizer's faa on
     * ended (release sequence); errors is written before it returns...
     * so wait for the last child rather than read a half-built field.
     */
    /* Pairs with: the release store of built in combine_finalize(). */
    if (c->kind == CK_ANY && weft__load_acq_u32(&c->built) == 0) {
        /* Ended, but some children still run: the failures so far,
         * the winner's first. */
        weft_errgroup_t *g = NULL;
        weft_status_t st = weft_errgroup_create(
            &g, "any: failures so far (some children still running)");
        if (st != WEFT_OK) {
            return st;
        }
        for (uint32_t i = 0; i < c->n; i++) {
            struct weft_future *ch = c->children[i];
            if (weft_future_outcome(ch) == WEFT_OUTCOME_FAILED &&
                weft_future_error(ch) != NULL) {
                (void)weft_errgroup_add_error(g, i == c->dec.decider ? 0 : i + 1,
                                              weft_future_error(ch));
            }
        }
        *out = g;
        return WEFT_OK;
    }
    if (c->errors_nomem) {
        return WEFT_ENOMEM;
    }
    if (c->errors != NULL) {
        (void)weft_errgroup_retain(c->errors);
        *out = c->errors;
        return WEFT_OK;
    }
    return weft_errgroup_create(out, "no child failed");
}

size_t
weft_combine_decider(const weft_future_t *combined)
{
    struct weft__each *e = weft__each_of(combined);
    if (e != NULL) {
        return weft__each_decider(e);
    }
    struct weft__combine *c = combine_of(combined);
    if (c == NULL) {
        return SIZE_MAX;
    }
    uint32_t d = weft__decision_wait(&c->dec);
    if ((d == WEFT__D_TRIGGER || d == WEFT__D_WIN) && c->dec.decider != UINT32_MAX) {
        return c->dec.decider;
    }
    return SIZE_MAX;
}

/* ---- weft_wait --------------------------------------------------------- */

static void
wait_sets(weft_future_t *const *ch, size_t n, size_t *done, size_t *ndone,
          size_t *pending, size_t *npending)
{
    size_t nd = 0, np = 0;
    for (size_t i = 0; i < n; i++) {
        if (weft_future_is_done(ch[i])) {
            if (done != NULL) {
                done[nd] = i;
            }
            nd++;
        } else {
            if (pending != NULL) {
                pending[np] = i;
            }
            np++;
        }
    }
    if (ndone != NULL) {
        *ndone = nd;
    }
    if (npending != NULL) {
        *npending = np;
    }
}

weft_status_t
weft_wait(weft_future_t *const *children, size_t n, weft_wait_mode_t mode,
          weft_token_t *token, uint64_t deadline_ns, size_t *done,
          size_t *ndone, size_t *pending, size_t *npending)
{
    bool bad =
        (children == NULL && n > 0) || n > UINT32_MAX - 1 ||
        (mode != WEFT_WAIT_FIRST_COMPLETED && mode != WEFT_WAIT_FIRST_FAILURE &&
         mode != WEFT_WAIT_ALL_COMPLETED);
    for (size_t i = 0; !bad && i < n; i++) {
        bad = children[i] == NULL;
    }
    if (bad) {
        return WEFT_EINVAL;
    }
    weft_status_t st = WEFT_OK;
    if (n > 0) {
        weft_future_t *p = NULL;
        st = combine_start(children[0]->ex, CK_WAIT, children, n, (size_t)mode,
                           NULL, &p);
        if (st == WEFT_OK) {
            /* WEFT_OK when the condition holds (the promise never fails). */
            st = weft_future_wait_for(p, token, deadline_ns);
            (void)weft_future_release(p);
        }
    }
    wait_sets(children, n, done, ndone, pending, npending);
    return st == WEFT_ENOMEM || st == WEFT_ETIMEDOUT || st == WEFT_EINTERRUPTED
               ? st
               : WEFT_OK;
}

/* ---- as-completed ------------------------------------------------------ */

struct weft_as_completed {
    struct weft__combine *c;
};

weft_status_t
weft_as_completed_create(weft_future_t *const *children, size_t n,
                         weft_as_completed_t **out)
{
    bool bad = out == NULL || (children == NULL && n > 0) || n > UINT32_MAX - 1;
    for (size_t i = 0; !bad && i < n; i++) {
        bad = children[i] == NULL;
    }
    if (bad) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    weft_as_completed_t *it = WEFT__ALLOC(sizeof(*it));
    if (it == NULL) {
        return WEFT_ENOMEM;
    }
    struct weft__combine *c = NULL;
    weft_status_t st = combine_make(n > 0 ? children[0]->ex : NULL, CK_ITER,
                                    children, n, 0, NULL, &c);
    if (st != WEFT_OK) {
        weft__free(it);
        return st;
    }
    /* The iterator's reference to the state (instead of a promise's).
     * Unpaired: c is private. */
    weft__store_relaxed_u32(&c->refs, weft__load_relaxed_u32(&c->refs) + 1);
    it->c = c;
    combine_arm(c);
    combine_unref(c); /* setup reference */
    *out = it;
    return WEFT_OK;
}

/* Take back an installed waiter promise; end it ourselves if no child
 * took it (it was never settled). */
static void
iter_drop_waiter(struct weft__combine *c, struct weft_future *p)
{
    /* Full barrier (RMW). Pairs with: the fas in combine_child_ended(). */
    struct weft_future *mine = weft__fas_ptr((void **)&c->waiter, NULL);
    if (mine == p) {
        weft__promise_settle(weft__tls_worker, p, WEFT_OK,
                             (weft_value_t){.u64 = 0}, NULL);
    }
    /* else a child's watch took it and settles it (or did). */
    (void)weft_future_release(p);
}

weft_status_t
weft_as_completed_next(weft_as_completed_t *it, weft_token_t *token,
                       uint64_t deadline_ns, size_t *index)
{
    if (it == NULL || index == NULL) {
        return WEFT_EINVAL;
    }
    struct weft__combine *c = it->c;
    if (c->consumed == c->n) {
        return WEFT_EEXHAUSTED;
    }
    for (;;) {
        /* Pairs with: the faa on seq in combine_child_ended(). */
        if (c->consumed < weft__load_acq_u32(&c->seq)) {
            uint32_t v;
            /* The slot is written right after the faa that claimed it. */
            /* Pairs with: the release store of order[] there. */
            while ((v = weft__load_acq_u32(&c->order[c->consumed])) == 0) {
                sched_yield();
            }
            c->consumed++;
            *index = v - 1;
            return WEFT_OK;
        }
        if (token != NULL && weft_token_is_cancelled(token)) {
            return WEFT_EINTERRUPTED;
        }
        if (deadline_ns != 0 && weft_clock_now_ns() >= deadline_ns) {
            return WEFT_ETIMEDOUT;
        }
        struct weft_future *p = weft__promise_create(c->ex, c, NULL);
        if (p == NULL) {
            return WEFT_ENOMEM;
        }
        /* The promise holds a state reference like any promise of ours.
         * Relaxed: we hold one already; RMW on the count. */
        (void)weft__faa_u32(&c->refs, 1);
        /*
         * Install the waiter, then re-check. Full barrier (RMW): pairs
         * with the fas in combine_child_ended(): either that watch sees
         * p, or we see its seq increment below.
         * Pairs with: the fas in combine_child_ended() (see above).
         */
        (void)weft__cas_ptr((void **)&c->waiter, NULL, p);
        /* Pairs with: the faa on seq in combine_child_ended(). */
        if (c->consumed < weft__load_acq_u32(&c->seq)) {
            iter_drop_waiter(c, p);
            continue;
        }
        weft_status_t st = weft_future_wait_for(p, token, deadline_ns);
        iter_drop_waiter(c, p);
        if (st == WEFT_ETIMEDOUT || st == WEFT_EINTERRUPTED) {
            /* One more look: a child may have ended meanwhile. */
            /* Pairs with: the faa on seq in combine_child_ended(). */
            if (c->consumed < weft__load_acq_u32(&c->seq)) {
                continue;
            }
            return st;
        }
    }
}

weft_future_t *
weft_as_completed_future(const weft_as_completed_t *it, size_t index)
{
    if (it == NULL || index >= it->c->n) {
        return NULL;
    }
    return it->c->children[index];
}

weft_status_t
weft_as_completed_destroy(weft_as_completed_t *it)
{
    if (it == NULL) {
        return WEFT_EINVAL;
    }
    combine_unref(it->c);
    weft__free(it);
    return WEFT_OK;
}
