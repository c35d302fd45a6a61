/*
 * cancel.c - cancellation tokens: a tree of tokens with reasons,
 * deadlines, shields and callbacks.
 *
 * DESIGN
 *
 * State word. Everything a poller needs is in one 32-bit word, `state`:
 * CANCELLED (set once, under the token's lock, with a release store) and
 * HAS_DEADLINE (set at creation, never changed). A token that is neither
 * cancelled nor has a deadline reads 0, so weft_token_is_cancelled() is
 * one relaxed load on its fast path. A deadline costs a clock read per
 * poll; the deadline value and the clock pointer are immutable after
 * creation, so reading them needs no synchronization beyond the hand-off
 * that gave the poller its reference.
 *
 * Lock. Each token has a mutex, `lock`, which protects its callback list,
 * the reason (written once, before CANCELLED is published), the states of
 * the registrations on it, and the "running" record (which registration
 * is running its function now, on which thread, and where to flag that it
 * deregistered itself). A condition variable, `done`, is signalled when a
 * running function returns, for deregistrations waiting on another
 * thread. No thread ever holds two token locks at once: creating a child
 * takes only the parent's lock, cancelling takes one token's lock at a
 * time, and freeing a child takes the parent's lock after the child is
 * unreachable. So there is no lock order to get wrong.
 *
 * Callbacks (after C++ std::stop_callback and the kernel's
 * del_timer_sync()). The canceller marks the token cancelled, then pops
 * registrations off the list one at a time: it marks one RUNNING, records
 * itself as the runner, drops the lock, calls the function, retakes the
 * lock and marks it DONE. Deregistration under the lock then sees one of:
 *
 *   LINKED   unlink it; it will never run (returns WEFT_OK);
 *   RUNNING  on this thread (the function deregisters itself, or
 *            something it calls does): set the canceller's "removed" flag
 *            so the canceller never touches the storage again, and return
 *            at once; on another thread: wait on `done` until the
 *            canceller has finished with it;
 *   DONE     nothing to do.
 *
 * Cancel against register, the lost-callback interleaving:
 *
 *   canceller                          registrant
 *   ---------                          ----------
 *   lock                               lock
 *   set CANCELLED, record reason       if CANCELLED: unlock, run fn now
 *   pop and run each LINKED entry      else: link, unlock (the canceller
 *   unlock                               pops it later)
 *
 * Both sides decide under the same lock, so a registration is either on
 * the list before CANCELLED is set (the canceller runs it) or sees
 * CANCELLED (the registrant runs it); never neither, never both.
 *
 * Tree. A child's link to its parent is itself a registration on the
 * parent (fn NULL marks it), embedded in the child. The canceller does not
 * call anything for a link: under the parent's lock it marks it DONE,
 * takes a reference to the child with try-retain (which fails only when
 * the child's last reference is already gone and the child is being
 * freed) and pushes the child on a work list local to the cancelling
 * call. After the parent's own callbacks, the call cancels each child on
 * the list, with the parent's recorded reason, which may push
 * grandchildren. This keeps propagation iterative (no recursion over the
 * depth of the tree) and runs no callback under any lock. A token is
 * pushed at most once in its life (its link is popped at most once), so
 * one intrusive `work_next` field suffices.
 *
 * Freeing a child: its last release unlinks the child's registration from
 * the parent under the parent's lock (if the canceller has not popped it
 * yet), then releases the child's reference to the parent. A parent
 * therefore never points to a freed child, and a child's parent outlives
 * it. Chains of releases up the tree run in a loop.
 *
 * Deadlines. A token's effective deadline is the earlier of its own and
 * its parent's (shielded tokens: their own only). Every observation first
 * checks it when HAS_DEADLINE is set; once the clock has reached it, the
 * observing call cancels the token with the immortal WEFT_EDEADLINE error
 * (so a poll never allocates). A cancellation of a token whose deadline
 * has passed records the deadline reason instead of the one it carries,
 * so the outcome does not depend on whether anyone polled in between.
 *
 * Invariants:
 *  1. CANCELLED is set at most once per token, under its lock, after the
 *     reason was stored; a load-acquire that sees it sees the reason.
 *  2. A registration's function runs at most once: it leaves LINKED only
 *     under the lock, to RUNNING (the canceller runs it) or to DONE
 *     (removed), and a registration made on a cancelled token goes
 *     straight to DONE and runs once on the registrant's thread.
 *  3. Every registration linked when CANCELLED is set is run or removed
 *     before the cancelling call returns (see the interleaving above).
 *  4. After weft__token_deregister() returns on a thread that is not the
 *     runner, the canceller no longer touches the registration.
 *  5. At most one thread drains a token: the one that set CANCELLED. So
 *     `running` names at most one registration per token.
 *  6. No thread holds two token locks at once, and no lock is held while
 *     a callback runs.
 *  7. A token on a linked child registration is alive: its last release
 *     unlinks it first, under the same lock the canceller pops it under,
 *     and the canceller keeps it alive with a successful try-retain.
 *  8. refs counts references: the caller's, one per public registration,
 *     one per child (to its parent), one per work-list entry. The release
 *     that takes it to zero is the only one that touches the token after.
 */
#include "cancel.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#include "alloc.h"
#include "atomics.h"
#include "error.h"

#define TOKEN_CANCELLED 1u    /* state: cancellation requested */
#define TOKEN_HAS_DEADLINE 2u /* state: deadline_ns is a real deadline */
#define TOKEN_SHIELDED 1u     /* flags */

#if defined(__GNUC__) || defined(__clang__)
#define TOKEN_COLD __attribute__((noinline, cold))
#else
#define TOKEN_COLD
#endif

struct weft_token {
    /* Read by pollers; written once. */
    uint32_t state;                  /* see the file comment; store-rel
                                        under lock, loads lock-free */
    uint32_t flags;                  /* immutable */
    uint64_t deadline_ns;            /* immutable: effective deadline */
    const struct weft__clock *clock; /* immutable; NULL: monotonic */
    weft_token_t *parent;            /* immutable; holds a reference */
    /* Lock to write; immutable once CANCELLED is set (invariant 1). On
     * the pollers' line, away from refs: every task that ends cancelled
     * reads it, while holders' faa on refs would take the line away. */
    weft_error_t *reason;
    char pad0[WEFT__CACHELINE - 2 * sizeof(uint32_t) - sizeof(uint64_t) -
              3 * sizeof(void *)];
    /* Written by holders and under the lock. */
    uint32_t refs;                /* faa by holders; see invariant 8 */
    uint32_t waiters;             /* lock: deregistrations waiting */
    pthread_mutex_t lock;         /* protects the fields marked "lock" */
    pthread_cond_t done;          /* a running callback returned */
    struct weft__token_cb *head;  /* lock: LINKED registrations, FIFO */
    struct weft__token_cb *tail;  /* lock */
    size_t nlinked;               /* lock: length of the list */
    struct weft__token_cb *running; /* lock: RUNNING registration */
    pthread_t runner;             /* lock: the thread draining the list */
    bool *running_removed;        /* lock: the runner's "removed" flag */
    struct weft__token_cb link;   /* this token's registration on parent;
                                     parent's lock */
    weft_token_t *work_next;      /* the cancelling thread's work list */
};

/* The public registration: an intrusive one plus a token reference. */
struct weft_cancel_cb {
    struct weft__token_cb node;
};

static weft_token_t *
token_of_link(struct weft__token_cb *link)
{
    return (weft_token_t *)((char *)link - offsetof(weft_token_t, link));
}

/* Take a reference unless the count already reached zero. */
static bool
token_try_retain(weft_token_t *t)
{
    /* Relaxed: a first guess; the CAS below re-checks it. */
    uint32_t r = weft__load_relaxed_u32(&t->refs);
    while (r != 0) {
        /*
         * Pairs with: the faa in weft_token_release(); a count seen at
         * zero is never raised again (invariant 7).
         */
        if (weft__cas_value_u32(&t->refs, r, r + 1, &r)) {
            return true;
        }
    }
    return false;
}

static void
token_lock(weft_token_t *t)
{
    if (pthread_mutex_lock(&t->lock) != 0) {
        abort(); /* a default mutex fails only on a broken invariant */
    }
}

static void
token_unlock(weft_token_t *t)
{
    if (pthread_mutex_unlock(&t->lock) != 0) {
        abort();
    }
}

/* Append cb to t's list. Lock held. */
static void
token_link(weft_token_t *t, struct weft__token_cb *cb)
{
    cb->next = NULL;
    cb->prev = t->tail;
    if (t->tail != NULL) {
        t->tail->next = cb;
    } else {
        t->head = cb;
    }
    t->tail = cb;
    t->nlinked++;
    cb->state = WEFT__TOKEN_CB_LINKED;
}

/* Remove a LINKED cb from t's list. Lock held. */
static void
token_unlink(weft_token_t *t, struct weft__token_cb *cb)
{
    if (cb->prev != NULL) {
        cb->prev->next = cb->next;
    } else {
        t->head = cb->next;
    }
    if (cb->next != NULL) {
        cb->next->prev = cb->prev;
    } else {
        t->tail = cb->prev;
    }
    cb->next = NULL;
    cb->prev = NULL;
    t->nlinked--;
}

/* True when t has a deadline and the clock has reached it. */
static bool
token_deadline_passed(const weft_token_t *t)
{
    return t->deadline_ns != WEFT_DEADLINE_NONE &&
           weft__clock_read(t->clock) >= t->deadline_ns;
}

/*
 * Run t's registrations after CANCELLED was set by this thread; children
 * found on the list are pushed on *work with a reference each. Called
 * with the lock held; returns with it released.
 */
static void
token_drain(weft_token_t *t, weft_error_t *reason, weft_token_t **work)
{
    t->runner = pthread_self();
    struct weft__token_cb *cb;
    while ((cb = t->head) != NULL) {
        token_unlink(t, cb);
        if (cb->fn == NULL) {
            weft_token_t *child = token_of_link(cb);
            cb->state = WEFT__TOKEN_CB_DONE;
            /* A failed try-retain means the child is being freed. */
            if (token_try_retain(child)) {
                child->work_next = *work;
                *work = child;
            }
            continue;
        }
        bool removed = false;
        cb->state = WEFT__TOKEN_CB_RUNNING;
        t->running = cb;
        t->running_removed = &removed;
        token_unlock(t);

        cb->fn(cb->arg, reason);

        token_lock(t);
        if (!removed) {
            cb->state = WEFT__TOKEN_CB_DONE;
        }
        t->running = NULL;
        t->running_removed = NULL;
        if (t->waiters != 0) {
            (void)pthread_cond_broadcast(&t->done);
        }
    }
    token_unlock(t);
}

/*
 * Cancel t alone (its children go on *work). The caller holds a reference
 * to t. Returns WEFT_OK when `reason` was recorded, WEFT_EALREADY when t
 * was cancelled already or its deadline had passed.
 */
static weft_status_t
token_cancel_one(weft_token_t *t, weft_error_t *reason, weft_token_t **work)
{
    weft_status_t st = WEFT_OK;
    if (token_deadline_passed(t)) {
        reason = weft__error_deadline();
        st = WEFT_EALREADY;
    }
    token_lock(t);
    /* Relaxed: the lock is held, and CANCELLED changes only under it. */
    uint32_t s = weft__load_relaxed_u32(&t->state);
    if ((s & TOKEN_CANCELLED) != 0) {
        token_unlock(t);
        return WEFT_EALREADY;
    }
    (void)weft_error_retain(reason);
    t->reason = reason;
    /*
     * Publish the cancellation after the reason (invariant 1).
     * Pairs with: weft__load_acq_u32(&t->state) in weft_token_reason(),
     * in weft_token_cancel() and in weft__token_peek().
     */
    weft__store_rel_u32(&t->state, s | TOKEN_CANCELLED);
    token_drain(t, reason, work);
    return st;
}

/* Cancel every token on the work list, each with its parent's reason. */
static void
token_run_work(weft_token_t *work)
{
    while (work != NULL) {
        weft_token_t *c = work;
        work = c->work_next;
        c->work_next = NULL;
        /*
         * c->parent set c's link and is cancelled by this thread, which
         * wrote its reason, so the read needs no ordering.
         */
        (void)token_cancel_one(c, c->parent->reason, &work);
        (void)weft_token_release(c);
    }
}

/* Cancel t and its subtree; the caller holds a reference to t. */
static weft_status_t
token_cancel_tree(weft_token_t *t, weft_error_t *reason)
{
    weft_token_t *work = NULL;
    weft_status_t st = token_cancel_one(t, reason, &work);
    token_run_work(work);
    return st;
}

/*
 * Slow path of polling: state is not 0. Kept out of line so that the fast
 * path of weft_token_is_cancelled() stays a load, a test and a return.
 */
static TOKEN_COLD bool
token_poll_slow(const weft_token_t *ct, uint32_t s)
{
    if ((s & TOKEN_CANCELLED) != 0) {
        return true;
    }
    if (!token_deadline_passed(ct)) {
        return false;
    }
    /*
     * The caller holds a reference; tokens are never defined const, so
     * observing one may cancel it.
     */
    (void)token_cancel_tree((weft_token_t *)ct, weft__error_deadline());
    return true;
}

bool
weft_token_is_cancelled(const weft_token_t *t)
{
    if (t == NULL) {
        return false;
    }
    /*
     * Relaxed: the poll needs the flag only, not the data published with
     * it (the reason); weft_token_reason() load-acquires before reading
     * that. This is the whole fast path: one load that finds 0.
     */
    uint32_t s = weft__load_relaxed_u32(&t->state);
    if (s == 0) {
        return false;
    }
    return token_poll_slow(t, s);
}

weft_status_t
weft_token_check(const weft_token_t *t)
{
    return weft_token_is_cancelled(t) ? WEFT_ECANCELED : WEFT_OK;
}

/* Allocate and initialize a token; not linked to any parent yet. */
static weft_status_t
token_new(const struct weft__clock *clock, uint64_t deadline_ns,
          uint32_t flags, weft_token_t **out)
{
    weft_token_t *t = WEFT__ALLOC(sizeof(*t));
    if (t == NULL) {
        return WEFT_ENOMEM;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        weft__free(t);
        return WEFT_ESYS;
    }
    if (pthread_cond_init(&t->done, NULL) != 0) {
        (void)pthread_mutex_destroy(&t->lock);
        weft__free(t);
        return WEFT_ESYS;
    }
    t->flags = flags;
    t->deadline_ns = deadline_ns;
    t->clock = clock;
    t->parent = NULL;
    t->waiters = 0;
    t->reason = NULL;
    t->head = NULL;
    t->tail = NULL;
    t->nlinked = 0;
    t->running = NULL;
    t->running_removed = NULL;
    t->link.next = NULL;
    t->link.prev = NULL;
    t->link.fn = NULL;
    t->link.arg = NULL;
    t->link.token = NULL;
    t->link.state = WEFT__TOKEN_CB_IDLE;
    t->work_next = NULL;
    /* Unpaired: initialization before the token is handed out. */
    weft__store_relaxed_u32(&t->refs, 1);
    /* Unpaired: initialization before the token is handed out. */
    weft__store_relaxed_u32(&t->state, deadline_ns != WEFT_DEADLINE_NONE
                                           ? TOKEN_HAS_DEADLINE
                                           : 0);
    *out = t;
    return WEFT_OK;
}

/*
 * Mark an unshared token cancelled at birth. Nobody else can see t yet,
 * so neither the lock nor a drain is needed (no registration exists).
 */
static void
token_born_cancelled(weft_token_t *t, weft_error_t *reason)
{
    (void)weft_error_retain(reason);
    t->reason = reason;
    /* Unpaired: t is not shared yet; its hand-off publishes this. */
    weft__store_relaxed_u32(&t->state,
                            weft__load_relaxed_u32(&t->state) |
                                TOKEN_CANCELLED);
}

static weft_status_t
token_create(weft_token_t *parent, const struct weft__clock *clock,
             uint64_t deadline_ns, bool shielded, weft_token_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (parent != NULL) {
        clock = parent->clock;
        if (!shielded && parent->deadline_ns < deadline_ns) {
            deadline_ns = parent->deadline_ns;
        }
    }
    weft_token_t *t;
    weft_status_t st =
        token_new(clock, deadline_ns, shielded ? TOKEN_SHIELDED : 0, &t);
    if (st != WEFT_OK) {
        return st;
    }
    if (token_deadline_passed(t)) {
        token_born_cancelled(t, weft__error_deadline());
    }
    if (parent != NULL && !shielded) {
        /* Notice a passed deadline of the parent before reading it. */
        (void)weft_token_is_cancelled(parent);
        (void)weft_token_retain(parent);
        t->parent = parent;
        t->link.token = parent;
        token_lock(parent);
        /* Relaxed: the lock is held; CANCELLED changes only under it. */
        uint32_t ps = weft__load_relaxed_u32(&parent->state);
        if ((ps & TOKEN_CANCELLED) != 0) {
            if (t->reason == NULL) {
                token_born_cancelled(t, parent->reason);
            }
            t->link.state = WEFT__TOKEN_CB_DONE;
        } else if (t->reason != NULL) {
            /* Born cancelled by its deadline: no link needed. */
            t->link.state = WEFT__TOKEN_CB_DONE;
        } else {
            token_link(parent, &t->link);
        }
        token_unlock(parent);
    }
    *out = t;
    return WEFT_OK;
}

weft_status_t
weft_token_create(weft_token_t *parent, weft_token_t **out)
{
    return token_create(parent, NULL, WEFT_DEADLINE_NONE, false, out);
}

weft_status_t
weft_token_create_with_deadline(weft_token_t *parent, uint64_t deadline_ns,
                                weft_token_t **out)
{
    return token_create(parent, NULL, deadline_ns, false, out);
}

weft_status_t
weft_token_create_shielded(weft_token_t *parent, uint64_t deadline_ns,
                           weft_token_t **out)
{
    return token_create(parent, NULL, deadline_ns, true, out);
}

weft_status_t
weft__token_create_root(const struct weft__clock *clock, uint64_t deadline_ns,
                        weft_token_t **out)
{
    return token_create(NULL, clock, deadline_ns, false, out);
}

weft_status_t
weft_token_retain(weft_token_t *t)
{
    if (t == NULL) {
        return WEFT_EINVAL;
    }
    /*
     * Unpaired: a new reference is made from one the caller holds, so
     * nothing needs ordering (seq_cst only because atomics.h offers no
     * weaker faa).
     */
    (void)weft__faa_u32(&t->refs, 1);
    return WEFT_OK;
}

weft_status_t
weft_token_release(weft_token_t *t)
{
    if (t == NULL) {
        return WEFT_EINVAL;
    }
    while (t != NULL) {
        /*
         * Drop one reference; the full barrier orders this holder's
         * accesses before the free by whichever release reaches zero.
         * Pairs with: this same faa in other threads' weft_token_release()
         * and the CAS in token_try_retain() (invariant 8).
         */
        uint32_t old = weft__faa_u32(&t->refs, (uint32_t)-1);
        if (old != 1) {
            if (old == 0) {
                abort(); /* over-release: a broken caller invariant */
            }
            return WEFT_OK;
        }
        weft_token_t *parent = t->parent;
        if (parent != NULL) {
            /* Invariant 7: unlink before the storage goes. */
            token_lock(parent);
            if (t->link.state == WEFT__TOKEN_CB_LINKED) {
                token_unlink(parent, &t->link);
                t->link.state = WEFT__TOKEN_CB_DONE;
            }
            token_unlock(parent);
        }
        if (t->nlinked != 0) {
            /*
             * An intrusive registration outlived its token: a broken
             * caller invariant (cancel.h), and freeing would leave it
             * dangling.
             */
            abort();
        }
        if (t->reason != NULL) {
            (void)weft_error_release(t->reason);
        }
        (void)pthread_cond_destroy(&t->done);
        (void)pthread_mutex_destroy(&t->lock);
        weft__free(t);
        t = parent; /* give up t's reference to its parent */
    }
    return WEFT_OK;
}

weft_status_t
weft_token_cancel(weft_token_t *t, weft_error_t *reason)
{
    if (t == NULL) {
        return WEFT_EINVAL;
    }
    /*
     * A cheap early answer for repeated cancels; token_cancel_one()
     * re-checks under the lock.
     * Pairs with: weft__store_rel_u32(&t->state) in token_cancel_one().
     */
    if ((weft__load_acq_u32(&t->state) & TOKEN_CANCELLED) != 0) {
        return WEFT_EALREADY;
    }
    return token_cancel_tree(t, reason != NULL ? reason
                                               : weft__error_canceled());
}

weft_status_t
weft_token_reason(const weft_token_t *t, weft_error_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (t == NULL) {
        return WEFT_EINVAL;
    }
    (void)weft_token_is_cancelled(t);
    /*
     * Order the read of the reason after its write (invariant 1).
     * Pairs with: weft__store_rel_u32(&t->state) in token_cancel_one().
     */
    if ((weft__load_acq_u32(&t->state) & TOKEN_CANCELLED) == 0) {
        return WEFT_ESTATE;
    }
    *out = t->reason;
    return WEFT_OK;
}

weft_error_t *
weft__token_reason_if_cancelled(const weft_token_t *t)
{
    /*
     * Order the read of the reason after its write (invariant 1).
     * Pairs with: weft__store_rel_u32(&t->state) in token_cancel_one().
     */
    if ((weft__load_acq_u32(&t->state) & TOKEN_CANCELLED) == 0) {
        return NULL;
    }
    return t->reason;
}

weft_status_t
weft_token_deadline(const weft_token_t *t, uint64_t *out)
{
    if (t == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    *out = t->deadline_ns;
    return WEFT_OK;
}

bool
weft_token_is_shielded(const weft_token_t *t)
{
    return t != NULL && (t->flags & TOKEN_SHIELDED) != 0;
}

uint64_t
weft__token_next_deadline(const weft_token_t *t)
{
    if (t == NULL) {
        return WEFT_DEADLINE_NONE;
    }
    /*
     * Relaxed: a timer hint; a stale "not cancelled" only makes the timer
     * fire once more and find the token cancelled.
     */
    if ((weft__load_relaxed_u32(&t->state) & TOKEN_CANCELLED) != 0) {
        return WEFT_DEADLINE_NONE;
    }
    return t->deadline_ns;
}

enum weft__token_peek_state
weft__token_peek(const weft_token_t *t, weft_error_t **reason)
{
    *reason = NULL;
    if (t == NULL) {
        return WEFT__TOKEN_ACTIVE;
    }
    /*
     * Order the read of the reason after its write (invariant 1), without
     * observing the deadline (which could cancel t and run callbacks).
     * Pairs with: weft__store_rel_u32(&t->state) in token_cancel_one().
     */
    if ((weft__load_acq_u32(&t->state) & TOKEN_CANCELLED) != 0) {
        *reason = t->reason;
        return WEFT__TOKEN_CANCELLED;
    }
    return token_deadline_passed(t) ? WEFT__TOKEN_EXPIRED : WEFT__TOKEN_ACTIVE;
}

size_t
weft__token_registrations(const weft_token_t *t)
{
    if (t == NULL) {
        return 0;
    }
    weft_token_t *mt = (weft_token_t *)t;
    token_lock(mt);
    size_t n = mt->nlinked;
    token_unlock(mt);
    return n;
}

size_t
weft__token_waiters(const weft_token_t *t)
{
    if (t == NULL) {
        return 0;
    }
    weft_token_t *mt = (weft_token_t *)t;
    token_lock(mt);
    size_t n = mt->waiters;
    token_unlock(mt);
    return n;
}

weft_status_t
weft__token_register(weft_token_t *t, struct weft__token_cb *cb,
                     weft_cancel_fn_t fn, void *arg)
{
    if (t == NULL || cb == NULL || fn == NULL ||
        cb->state == WEFT__TOKEN_CB_LINKED ||
        cb->state == WEFT__TOKEN_CB_RUNNING) {
        return WEFT_EINVAL;
    }
    cb->fn = fn;
    cb->arg = arg;
    cb->token = t;
    cb->next = NULL;
    cb->prev = NULL;
    /* Notice a passed deadline first, so fn sees its reason. */
    (void)weft_token_is_cancelled(t);
    token_lock(t);
    /* Relaxed: the lock is held; CANCELLED changes only under it. */
    if ((weft__load_relaxed_u32(&t->state) & TOKEN_CANCELLED) != 0) {
        weft_error_t *reason = t->reason;
        cb->state = WEFT__TOKEN_CB_DONE;
        token_unlock(t);
        /* Invariant 2: DONE before it runs, so it runs only here. */
        fn(arg, reason);
        return WEFT_OK;
    }
    token_link(t, cb);
    token_unlock(t);
    return WEFT_OK;
}

weft_status_t
weft__token_deregister(struct weft__token_cb *cb)
{
    if (cb == NULL || cb->token == NULL) {
        return WEFT_EINVAL;
    }
    weft_token_t *t = cb->token;
    weft_status_t st = WEFT_EALREADY;
    token_lock(t);
    switch (cb->state) {
    case WEFT__TOKEN_CB_IDLE:
        st = WEFT_EINVAL;
        break;
    case WEFT__TOKEN_CB_LINKED:
        token_unlink(t, cb);
        cb->state = WEFT__TOKEN_CB_DONE;
        st = WEFT_OK;
        break;
    case WEFT__TOKEN_CB_RUNNING:
        if (pthread_equal(t->runner, pthread_self())) {
            /* Self-deregistration: the runner must not touch cb again. */
            *t->running_removed = true;
            cb->state = WEFT__TOKEN_CB_DONE;
            break;
        }
        t->waiters++;
        while (t->running == cb) {
            (void)pthread_cond_wait(&t->done, &t->lock);
        }
        t->waiters--;
        break;
    default:
        break;
    }
    token_unlock(t);
    return st;
}

weft_status_t
weft_token_register(weft_token_t *t, weft_cancel_fn_t fn, void *arg,
                    weft_cancel_cb_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (t == NULL || fn == NULL) {
        return WEFT_EINVAL;
    }
    weft_cancel_cb_t *cb = WEFT__ALLOC(sizeof(*cb));
    if (cb == NULL) {
        return WEFT_ENOMEM;
    }
    cb->node.state = WEFT__TOKEN_CB_IDLE;
    (void)weft_token_retain(t);
    (void)weft__token_register(t, &cb->node, fn, arg);
    *out = cb;
    return WEFT_OK;
}

weft_status_t
weft_token_deregister(weft_cancel_cb_t *cb)
{
    if (cb == NULL) {
        return WEFT_EINVAL;
    }
    weft_token_t *t = cb->node.token;
    weft_status_t st = weft__token_deregister(&cb->node);
    weft__free(cb);
    (void)weft_token_release(t);
    return st;
}
