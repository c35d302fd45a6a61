/*
 * group.c - task groups (scopes) with fail-fast and concurrency limits,
 * retries with backoff, parallel-for and parallel-reduce. See group.h.
 *
 * The ledger's memory: a child's record (its watch node, future and
 * index) is carved from a slab that the group owns, under the lock that
 * the spawn holds anyway to append the child to children[]. Slabs double
 * from GROUP_SLAB_FIRST records up to GROUP_SLAB_MAX, sit on a list, and
 * are freed all at once by weft_group_destroy(); records never move, so
 * children[index] and a watch node stay valid until then. A spawn so
 * costs no allocation of its own: the allocator is called once per slab
 * and once per doubling of children[].
 */
#include "executor/group.h"

#include <weft/frame.h>

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "executor/combine.h"
#include "executor/debug.h"
#include "executor/executor.h"
#include "executor/future.h"
#include "primitives/alloc.h"
#include "primitives/atomics.h"
#include "primitives/cancel.h"
#include "primitives/error.h"

struct group_child {
    struct weft__watch node; /* first: group_child_ended() casts back */
    struct weft_future *f;
    struct weft_group *g;
    uint32_t index;
    uint32_t seq; /* failure order (failed children only); its watch */
};

/* First slab's records, and the most records one slab holds. */
#define GROUP_SLAB_FIRST 16
#define GROUP_SLAB_MAX 1024

/* A block of child records; records are carved in order and never freed
 * one by one. */
struct group_slab {
    struct group_slab *next; /* the slab carved before this one */
    size_t cap, used;
    struct group_child rec[];
};

struct weft_group {
    const struct weft__promise_ops *ops; /* first: see future.h */
    uint32_t refs; /* owner + promise; atomic */
    weft_executor_t *ex;
    weft_token_t *token; /* the group's token; owned */
    const char *name;
    size_t limit;

    uint64_t outstanding; /* see group.h; atomic */
    uint32_t seq;         /* faa: order of the failures */
    uint32_t decided;     /* 0, then 1 once a failure triggered; CAS */
    uint32_t trigger;     /* index of the triggering child */
    weft_error_t *reason; /* the siblings' reason; owned; set once */
    bool joined;          /* owner only: weft_group_join() was called */
    bool drained;         /* owner only: it returned; children[] and count
                             are final (the group accepts no more), so the
                             owner reads them without the lock */
    weft_status_t join_status;
    weft_errgroup_t *errors;

    /* lock protects children[], count, cap, slab, next_start, running. */
    pthread_mutex_t lock;
    struct group_child **children; /* records, by index; in the slabs */
    size_t count, cap;
    struct group_slab *slab; /* the one records are carved from; list */
    size_t next_start;       /* first child not yet submitted */
    size_t running;

    struct weft_future *done; /* promise: settled when drained */
};

static weft_status_t group_cancel_op(void *state, weft_error_t *reason);
static void group_release_op(void *state);

static const struct weft__promise_ops group_ops = {
    group_cancel_op,
    group_release_op,
};

static void
group_unref(struct weft_group *g)
{
    /* Pairs with: the other unrefs (acq_rel RMW); the last one frees. */
    if (weft__faa_u32(&g->refs, (uint32_t)-1) == 1) {
        pthread_mutex_destroy(&g->lock);
        weft__free(g);
    }
}

static void
group_release_op(void *state)
{
    group_unref(state);
}

static weft_status_t
group_cancel_op(void *state, weft_error_t *reason)
{
    return weft_group_cancel(state, reason);
}

/* One accepted child (or the open bias) is gone. */
static void
group_drop_outstanding(struct weft_group *g, struct weft__worker *w)
{
    /* Pairs with: the CAS in group_accept() and the other decrements
     * (release sequence): the thread that reaches zero sees every
     * child's outcome and seq before it settles the promise. */
    if (weft__faa_u64(&g->outstanding, (uint64_t)-1) == 1) {
        weft__promise_settle(w, g->done, WEFT_OK, (weft_value_t){.u64 = 0},
                             NULL);
    }
}

/* Count one more child in, unless the group has drained. */
static bool
group_accept(struct weft_group *g)
{
    /* Relaxed: the CAS below re-checks. */
    uint64_t o = weft__load_relaxed_u64(&g->outstanding);
    for (;;) {
        if (o == 0) {
            return false;
        }
        /* Pairs with: the decrement in group_drop_outstanding(). */
        if (weft__cas_value_u64(&g->outstanding, o, o + 1, &o)) {
            return true;
        }
    }
}

static void
group_child_ended(struct weft__watch *node, struct weft__worker *w,
                  struct weft_future *f)
{
    /* The node is the first member of its group_child. */
    struct group_child *gc = (struct group_child *)node;
    struct weft_group *g = gc->g;
    /* The group reads the child's outcome (debug mode: observed, as by
     * weft_future_outcome()). Pairs with: the outcome CAS of f's
     * completer, which runs this watch after it. */
    (void)weft__debug_seen(f, WEFT_OK);
    if (weft__future_phase(weft__load_acq_u32(&f->state)) == WEFT__FAILED) {
        /* Only failures need their place in the order (the error
         * group's); a success or cancellation touches one shared word,
         * the drain count, so a mass cancellation does not serialize
         * the workers on a ticket.
         * Relaxed would do: a ticket; the drain count publishes it.
         * Pairs with: the drain faa in group_drop_outstanding(). */
        gc->seq = weft__faa_u32(&g->seq, 1);
        /* First failure: cancel the group's token, and so every child.
         * Pairs with: the acquire load of decided in weft_group_join()
         * (ordered by the drain count) and the other deciders' CAS. */
        if (weft__cas_u32(&g->decided, 0, 1)) {
            g->trigger = gc->index;
            g->reason = weft__sibling_reason(weft_future_error(f), gc->index,
                                             weft_future_name(f), "group");
            (void)weft_token_cancel(g->token, g->reason);
        }
    }
    struct group_child *next = NULL;
    if (g->limit != 0) {
        pthread_mutex_lock(&g->lock);
        g->running--;
        if (g->next_start < g->count) {
            next = g->children[g->next_start++];
            g->running++;
        }
        pthread_mutex_unlock(&g->lock);
    }
    if (next != NULL) {
        weft__future_submit(next->f);
    }
    /*
     * The last touch of g and gc: once the count reaches zero the owner's
     * join may return and destroy free both. Until then the open count
     * keeps the owner in join or before it, so no per-child reference
     * to g is needed (the watch loop read its next node before calling
     * us).
     */
    group_drop_outstanding(g, w);
}

/* The watch callback slot of every group child's node (future.h). */
static const weft__watch_fn_t group_watch_fn = group_child_ended;

/*
 * A record for the next child, with room for it in children[], or NULL
 * when memory for either cannot be had (the group is as it was, save a
 * slab or a larger children[] kept for the next spawn). Caller holds
 * g->lock; the record is not yet counted.
 */
static struct group_child *
group_record(struct weft_group *g)
{
    if (g->count == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : GROUP_SLAB_FIRST;
        struct group_child **nc =
            WEFT__REALLOC(g->children, ncap * sizeof(*nc));
        if (nc == NULL) {
            return NULL;
        }
        g->children = nc;
        g->cap = ncap;
    }
    struct group_slab *s = g->slab;
    if (s == NULL || s->used == s->cap) {
        size_t n = GROUP_SLAB_FIRST;
        if (s != NULL) {
            n = s->cap < GROUP_SLAB_MAX / 2 ? s->cap * 2 : GROUP_SLAB_MAX;
        }
        struct group_slab *ns =
            WEFT__ALLOC(sizeof(*ns) + n * sizeof(ns->rec[0]));
        if (ns == NULL) {
            return NULL;
        }
        ns->next = s;
        ns->cap = n;
        ns->used = 0;
        g->slab = s = ns;
    }
    return &s->rec[s->used++];
}

weft_status_t
weft_group_create(weft_executor_t *ex, const weft_group_opts_t *opts,
                  weft_group_t **out)
{
    if (ex == NULL || out == NULL) {
        if (out != NULL) {
            *out = NULL;
        }
        return WEFT_EINVAL;
    }
    *out = NULL;
    struct weft_group *g = WEFT__ALLOC(sizeof(*g));
    if (g == NULL) {
        return WEFT_ENOMEM;
    }
    memset(g, 0, sizeof(*g));
    g->ops = &group_ops;
    g->ex = ex;
    g->name = opts != NULL ? opts->name : NULL;
    g->limit = opts != NULL ? opts->limit : 0;
    uint64_t dl = opts != NULL && opts->deadline_ns != 0 ? opts->deadline_ns
                                                         : WEFT_DEADLINE_NONE;
    weft_status_t st = weft_token_create_with_deadline(
        opts != NULL ? opts->parent : NULL, dl, &g->token);
    if (st != WEFT_OK) {
        weft__free(g);
        return st;
    }
    if (weft__token_next_deadline(g->token) != WEFT_DEADLINE_NONE) {
        (void)weft_executor_watch_deadline(ex, g->token);
    }
    g->done = weft__promise_create(ex, g, g->name);
    if (g->done == NULL) {
        weft_token_release(g->token);
        weft__free(g);
        return WEFT_ENOMEM;
    }
    pthread_mutex_init(&g->lock, NULL);
    weft__debug_track_group(g->done, g->token, opts);
    g->refs = 2;        /* owner, promise */
    g->outstanding = 1; /* open */
    *out = g;
    return WEFT_OK;
}

weft_status_t
weft_group_spawn(weft_group_t *g, const weft_spawn_opts_t *opts, weft_fn_t fn,
                 void *arg, size_t *index)
{
    weft_release_fn_t rel = opts != NULL ? opts->release : NULL;
    weft_status_t st = WEFT_OK;
    if (g == NULL || fn == NULL || (opts != NULL && opts->token != NULL)) {
        st = WEFT_EINVAL;
    } else if (weft__worker_of(g->ex) == NULL &&
               /* Relaxed: an early refusal, as in weft_spawn(). */
               weft__load_relaxed_u32(&g->ex->run_state) !=
                   WEFT__RUN_ACCEPTING) {
        st = WEFT_ESHUTDOWN;
    } else if (!group_accept(g)) {
        st = WEFT_ESTATE;
    }
    if (st != WEFT_OK) {
        if (rel != NULL) {
            rel(arg);
        }
        return st;
    }
    weft_spawn_opts_t o = {0};
    if (opts != NULL) {
        o = *opts;
    }
    o.token = g->token;
    struct weft_future *f =
        /* The group's token outlives its children: destroy releases
         * it only after the join saw every child end. */
        weft__future_make(g->ex, &o, fn, arg, true);
    if (f == NULL) {
        group_drop_outstanding(g, weft__tls_worker);
        if (rel != NULL) {
            rel(arg);
        }
        return WEFT_ENOMEM;
    }
    weft__debug_adopt(f, g->done);

    bool start = true;
    pthread_mutex_lock(&g->lock);
    struct group_child *gc = group_record(g);
    if (gc == NULL) {
        pthread_mutex_unlock(&g->lock);
        /* Never queued, never watched, never seen: end it without
         * running (its release hook runs) and forget it. */
        weft__future_submit_refused(f, WEFT_ENOMEM);
        (void)weft_future_release(f);
        group_drop_outstanding(g, weft__tls_worker);
        return WEFT_ENOMEM;
    }
    gc->f = f;
    gc->g = g;
    gc->node.fn = &group_watch_fn;
    gc->node.next = NULL;
    /*
     * Watch before the child is visible in children[]: once it is there,
     * another child's end may submit it (the limit's hand-off), and it
     * could end before a later registration. It is not queued yet, so
     * the registration cannot find it ended. The child's accepted count
     * (group_accept) keeps g alive until its watch has run.
     */
    bool watched = weft__future_watch(f, &gc->node);
    WEFT__ASSERT(watched);
    (void)watched;
    gc->index = (uint32_t)g->count;
    g->children[g->count++] = gc;
    if (g->limit != 0) {
        if (g->running < g->limit && g->next_start == g->count - 1) {
            g->running++;
            g->next_start++;
        } else {
            start = false;
        }
    } else {
        g->next_start++;
    }
    pthread_mutex_unlock(&g->lock);
    if (index != NULL) {
        *index = gc->index;
    }
    if (start) {
        weft__future_submit(f);
    }
    return WEFT_OK;
}

static void
group_build_errors(struct weft_group *g)
{
    weft_errgroup_t *eg = NULL;
    if (weft_errgroup_create(&eg, "group%s%s: children failed",
                             g->name ? " " : "",
                             g->name ? g->name : "") != WEFT_OK) {
        return;
    }
    /* Every failed child set decided (group_child_ended()); without one
     * the ledger needs no pass. Relaxed: the drain ordered it before the
     * join's return from its wait, our caller. */
    size_t n = weft__load_relaxed_u32(&g->decided) ? g->count : 0;
    for (size_t i = 0; i < n; i++) {
        struct group_child *gc = g->children[i];
        if (weft_future_outcome(gc->f) != WEFT_OUTCOME_FAILED) {
            continue;
        }
        weft_error_t *e = weft_future_error(gc->f);
        if (e == NULL) {
            continue;
        }
        uint64_t key =
            (g->decided && gc->index == g->trigger) ? 0 : (uint64_t)gc->seq + 1;
        (void)weft_errgroup_add_error(eg, key, e);
    }
    g->errors = eg;
}

weft_status_t
weft_group_join(weft_group_t *g)
{
    if (g == NULL) {
        return WEFT_EINVAL;
    }
    if (g->joined) {
        return WEFT_ESTATE;
    }
    g->joined = true;
    group_drop_outstanding(g, weft__tls_worker); /* close */
    (void)weft_future_wait(g->done);
    /* The drain (acquire through the promise's outcome) ordered every
     * child's outcome, seq and the trigger before this point. */
    group_build_errors(g);
    weft_status_t st = WEFT_OK;
    /* Pairs with: the CAS in group_child_ended() (already ordered by the
     * drain; the acquire documents it). */
    if (weft__load_acq_u32(&g->decided)) {
        st = weft_future_status(g->children[g->trigger]->f);
        if (st == WEFT_OK || st == WEFT_ECANCELED) {
            st = WEFT_EFAILED;
        }
    } else if (weft_token_is_cancelled(g->token)) {
        st = WEFT_ECANCELED;
    }
    g->join_status = st;
    g->drained = true;
    return st;
}

weft_status_t
weft_group_cancel(weft_group_t *g, weft_error_t *reason)
{
    if (g == NULL) {
        return WEFT_EINVAL;
    }
    if (weft_token_is_cancelled(g->token)) {
        return WEFT_EALREADY;
    }
    return weft_token_cancel(g->token, reason) == WEFT_OK ? WEFT_OK
                                                          : WEFT_EALREADY;
}

weft_token_t *
weft_group_token(const weft_group_t *g)
{
    return g != NULL ? g->token : NULL;
}

weft_status_t
weft_group_errors(const weft_group_t *g, weft_errgroup_t **out)
{
    if (g == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (!g->joined) {
        return WEFT_ESTATE;
    }
    if (g->errors == NULL) {
        return weft_errgroup_create(out, "group: nothing failed");
    }
    (void)weft_errgroup_retain(g->errors);
    *out = g->errors;
    return WEFT_OK;
}

size_t
weft_group_size(const weft_group_t *g)
{
    if (g == NULL) {
        return 0;
    }
    if (g->drained) {
        return g->count;
    }
    pthread_mutex_lock((pthread_mutex_t *)&g->lock);
    size_t n = g->count;
    pthread_mutex_unlock((pthread_mutex_t *)&g->lock);
    return n;
}

weft_status_t
weft_group_child(const weft_group_t *g, size_t index, weft_child_result_t *out)
{
    if (g == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    struct group_child *gc;
    if (g->drained) {
        gc = index < g->count ? g->children[index] : NULL;
    } else {
        pthread_mutex_lock((pthread_mutex_t *)&g->lock);
        gc = index < g->count ? g->children[index] : NULL;
        pthread_mutex_unlock((pthread_mutex_t *)&g->lock);
    }
    if (gc == NULL) {
        return WEFT_ERANGE;
    }
    weft_error_t *ours = NULL;
    if (weft_token_is_cancelled(g->token)) {
        (void)weft_token_reason(g->token, &ours);
    }
    weft__child_result(gc->f, ours, out);
    return WEFT_OK;
}

weft_status_t
weft_group_destroy(weft_group_t *g)
{
    if (g == NULL) {
        return WEFT_EINVAL;
    }
    if (!g->joined) {
        weft_error_t *r = NULL;
        (void)weft_error_create(&r, WEFT_ECANCELED,
                                "group destroyed before join");
        (void)weft_group_cancel(g, r);
        weft_error_release(r);
        weft__debug_group_unjoined(g->done, weft_group_join(g));
    }
    for (size_t i = 0; i < g->count; i++) {
        (void)weft_future_release(g->children[i]->f);
    }
    weft__free(g->children);
    while (g->slab != NULL) {
        struct group_slab *s = g->slab;
        g->slab = s->next;
        weft__free(s);
    }
    if (g->reason != NULL) {
        weft_error_release(g->reason);
    }
    if (g->errors != NULL) {
        weft_errgroup_release(g->errors);
    }
    weft_token_release(g->token);
    (void)weft_future_release(g->done); /* drops the promise's reference */
    group_unref(g);                     /* the owner's */
    return WEFT_OK;
}

/* ---- retries ------------------------------------------------------------ */

/* splitmix64: the jitter's random source. */
static uint64_t
retry_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/*
 * Wait until `until` while helping: run other tasks when there are any,
 * else sleep in slices of at most 100 us. Returns WEFT_ECANCELED when the
 * task is cancelled meanwhile.
 */
static weft_status_t
retry_pause(weft_task_t *self, uint64_t until)
{
    struct weft__worker *w = weft__tls_worker;
    for (;;) {
        if (weft_task_is_cancelled(self)) {
            return WEFT_ECANCELED;
        }
        uint64_t now = weft_clock_now_ns();
        if (now >= until) {
            return WEFT_OK;
        }
        struct weft_future *t = NULL;
        if (w != NULL && w->help_depth < WEFT__HELP_DEPTH_MAX) {
            t = weft__worker_find(w);
        }
        if (t != NULL) {
            w->help_depth++;
            weft__task_run(w, t);
            w->help_depth--;
            continue;
        }
        uint64_t slice = until - now;
        if (slice > 100000) {
            slice = 100000;
        }
        struct timespec ts = {0, (long)slice};
        nanosleep(&ts, NULL);
    }
}

weft_status_t
weft_retry(weft_task_t *self, const weft_retry_opts_t *policy, weft_fn_t fn,
           void *arg, weft_value_t *result, weft_errgroup_t **errors)
{
    if (errors != NULL) {
        *errors = NULL;
    }
    if (self == NULL || fn == NULL || result == NULL) {
        return WEFT_EINVAL;
    }
    weft_retry_opts_t p = {0};
    if (policy != NULL) {
        p = *policy;
    }
    unsigned int max = p.max_attempts ? p.max_attempts : 1;
    double mult = p.multiplier >= 1.0 ? p.multiplier : 2.0;
    double jitter = p.jitter < 0 ? 0 : (p.jitter > 1 ? 1 : p.jitter);
    uint64_t rs = p.seed ? p.seed : 0x5EEDu;
    double delay = (double)p.initial_delay_ns;
    /* Where the body records its failure (a frame's own, for a frame). */
    weft_error_t **me_error = weft__task_error_slot((struct weft_future *)self);
    weft_errgroup_t *eg = NULL;
    if (errors != NULL &&
        weft_errgroup_create(&eg, "retry: attempts that failed") != WEFT_OK) {
        return WEFT_ENOMEM;
    }
    weft_status_t st = WEFT_EINVAL;
    for (unsigned int attempt = 1;; attempt++) {
        if (weft_task_is_cancelled(self)) {
            st = WEFT_ECANCELED;
            break;
        }
        if (p.deadline_ns != 0 && weft_clock_now_ns() >= p.deadline_ns) {
            st = WEFT_ETIMEDOUT;
            break;
        }
        result->u64 = 0;
        st = fn(self, arg, result);
        if (st == WEFT_OK || st == WEFT_ECANCELED) {
            break;
        }
        /* Keep this attempt's error (the one the body recorded on the
         * task, or one made from its status). */
        weft_error_t *e = *me_error;
        *me_error = NULL;
        if (e == NULL) {
            (void)weft_error_create(&e, (int)st > 0 ? (int)st : WEFT_EINVAL,
                                    "attempt %u failed: %s", attempt,
                                    weft_status_str(st));
        }
        bool again =
            attempt < max && (p.retryable == NULL || p.retryable(e, p.ctx));
        if (eg != NULL) {
            (void)weft_errgroup_add_error(eg, attempt, e);
        }
        if (!again) {
            /* The task ends with the last attempt's error. */
            *me_error = e;
            break;
        }
        weft_error_release(e);
        double d = delay;
        if (p.max_delay_ns != 0 && d > (double)p.max_delay_ns) {
            d = (double)p.max_delay_ns;
        }
        if (jitter > 0) {
            double u = (double)(retry_rand(&rs) >> 11) / 9007199254740992.0;
            d *= 1.0 - jitter * u;
        }
        uint64_t until = weft_clock_now_ns() + (uint64_t)d;
        if (p.deadline_ns != 0 && until > p.deadline_ns) {
            until = p.deadline_ns;
        }
        weft_status_t ps = retry_pause(self, until);
        if (ps != WEFT_OK) {
            st = ps;
            break;
        }
        delay *= mult;
    }
    if (errors != NULL) {
        *errors = eg;
    }
    return st;
}

/* ---- parallel-for and parallel-reduce ---------------------------------- */

struct pfor {
    weft_executor_t *ex;
    weft_range_fn_t fn;
    weft_reduce_fn_t rfn;
    weft_combine_fn_t combine;
    void *arg;
    weft_value_t identity;
    size_t grain;
    weft_token_t *token;  /* ours: child of the caller's; owned */
    uint32_t failed;      /* CAS: first failure */
    pthread_mutex_t lock; /* errors */
    weft_errgroup_t *errors;
    weft_status_t first; /* status of the first failure */
};

struct prange {
    struct pfor *p;
    size_t lo, hi;
    weft_value_t acc;
};

static void
pfor_fail(struct pfor *p, weft_task_t *self, size_t lo, weft_status_t st)
{
    weft_error_t **me_error = weft__task_error_slot((struct weft_future *)self);
    weft_error_t *e = *me_error;
    *me_error = NULL;
    if (e == NULL) {
        (void)weft_error_create(&e, (int)st > 0 ? (int)st : WEFT_EINVAL,
                                "chunk at %zu failed: %s", lo,
                                weft_status_str(st));
    }
    /* The first one records the status and cancels. Pairs with: the
     * other chunks' CAS; the root's join orders p->first before its read. */
    if (weft__cas_u32(&p->failed, 0, 1)) {
        p->first = st;
        (void)weft_token_cancel(p->token, e);
    }
    pthread_mutex_lock(&p->lock);
    if (p->errors != NULL) {
        (void)weft_errgroup_add_error(p->errors, lo, e);
    }
    pthread_mutex_unlock(&p->lock);
    weft_error_release(e);
}

static weft_status_t pfor_task(weft_task_t *self, void *arg,
                               weft_value_t *result);

/*
 * Whether an idle worker asked the calling worker for work: the `want`
 * flag of its deque (primitives/deque.h), which a thief raises when it
 * finds the public part empty and the next fork (the split below)
 * clears by publishing. Off the workers (a fork would fail anyway),
 * never.
 */
static inline bool
pfor_demand(void)
{
    struct weft__worker *w = weft__tls_worker;
    return w != NULL && weft__deque_should_publish(&w->dq);
}

/* Fold the partial of the next range to the right into *acc with
 * combine; *acc_set says whether *acc holds anything yet. */
static inline void
pfor_fold(struct pfor *p, weft_value_t *acc, bool *acc_set,
          weft_value_t part)
{
    if (*acc_set) {
        p->combine(p->arg, acc, part);
    } else {
        *acc = part;
        *acc_set = true;
    }
}

/* Run one chunk [lo, hi) and, for a reduce, fold its partial (which
 * starts from the identity) into *acc (pfor_fold()). */
static weft_status_t
pfor_chunk(weft_task_t *self, struct pfor *p, size_t lo, size_t hi,
           weft_value_t *acc, bool *acc_set)
{
    if (weft_token_is_cancelled(p->token)) {
        return WEFT_ECANCELED;
    }
    weft_status_t st;
    if (p->rfn != NULL) {
        weft_value_t part = p->identity;
        st = p->rfn(self, p->arg, lo, hi, &part);
        if (st == WEFT_OK) {
            pfor_fold(p, acc, acc_set, part);
        }
    } else {
        st = p->fn(self, p->arg, lo, hi);
    }
    if (st != WEFT_OK && st != WEFT_ECANCELED) {
        pfor_fail(p, self, lo, st);
    }
    return st;
}

/*
 * Run [r->lo, r->hi) in the calling task, splitting lazily (Tzannes et
 * al., "Lazy Binary Splitting", PPoPP 2010): chunks of `grain` run in
 * index order on this worker until an idle worker asks for work
 * (pfor_demand()); then the rest is halved, the right half forked as a
 * frame (the fork publishes it for the thief that asked), the left half
 * run the same way, and the two joined. With nobody asking, a loop costs
 * one flag load per chunk instead of a fork and join per chunk; with
 * thieves asking, it splits as often as they ask. Partials are combined
 * in index order: the chunks run so far, then the left half, then the
 * right. Recursion depth: one level per split on the path, at most
 * log2((hi - lo) / grain).
 */
static weft_status_t
pfor_range(weft_task_t *self, struct prange *r)
{
    struct pfor *p = r->p;
    size_t lo = r->lo, hi = r->hi;
    bool acc_set = false;
    r->acc = p->identity;
    while (hi - lo > p->grain) {
        if (__builtin_expect(pfor_demand(), 0)) {
            size_t mid = lo + (hi - lo) / 2;
            struct prange right = {p, mid, hi, p->identity};
            weft_frame_t fr;
            weft_status_t sst =
                weft_frame_fork(self, &fr, pfor_task, &right);
            struct prange left = {p, lo, mid, p->identity};
            weft_status_t ls = pfor_range(self, &left);
            weft_status_t rs;
            if (sst == WEFT_OK) {
                /* A failure was recorded in p's error group by
                 * pfor_fail(). */
                rs = weft_frame_join(&fr, NULL, NULL);
            } else {
                /* Could not fork (not on a worker of p's executor): run
                 * it here. */
                rs = pfor_range(self, &right);
            }
            if (ls == WEFT_OK && rs == WEFT_OK) {
                if (p->combine != NULL) {
                    pfor_fold(p, &r->acc, &acc_set, left.acc);
                    pfor_fold(p, &r->acc, &acc_set, right.acc);
                }
                return WEFT_OK;
            }
            if (ls != WEFT_OK && ls != WEFT_ECANCELED) {
                return ls;
            }
            if (rs != WEFT_OK && rs != WEFT_ECANCELED) {
                return rs;
            }
            return WEFT_ECANCELED;
        }
        weft_status_t st = pfor_chunk(self, p, lo, lo + p->grain, &r->acc,
                                      &acc_set);
        if (st != WEFT_OK) {
            return st;
        }
        lo += p->grain;
    }
    return pfor_chunk(self, p, lo, hi, &r->acc, &acc_set);
}

static weft_status_t
pfor_task(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    return pfor_range(self, arg);
}

static weft_status_t
pfor_run(weft_executor_t *ex, size_t lo, size_t hi, const weft_for_opts_t *opts,
         struct pfor *p, weft_value_t *result, weft_errgroup_t **errors)
{
    if (errors != NULL) {
        *errors = NULL;
    }
    size_t n = hi - lo;
    if (n == 0) {
        if (result != NULL) {
            *result = p->identity;
        }
        return WEFT_OK;
    }
    p->ex = ex;
    p->grain = opts != NULL ? opts->grain : 0;
    if (p->grain == 0) {
        size_t chunks = 8 * (size_t)weft_executor_num_workers(ex);
        p->grain = chunks > 0 ? n / chunks : n;
        if (p->grain == 0) {
            p->grain = 1;
        }
    }
    weft_status_t st =
        weft_token_create(opts != NULL ? opts->token : NULL, &p->token);
    if (st != WEFT_OK) {
        return st;
    }
    if (weft_errgroup_create(&p->errors, "parallel_for: chunks failed") !=
        WEFT_OK) {
        weft_token_release(p->token);
        return WEFT_ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    struct prange root = {p, lo, hi, p->identity};
    weft_future_t *f = NULL;
    st = weft_spawn(ex, pfor_task, &root, &f);
    if (st == WEFT_OK) {
        st = weft_join(f, NULL);
    }
    pthread_mutex_destroy(&p->lock);
    if (st == WEFT_OK && result != NULL) {
        *result = root.acc;
    }
    if (p->failed) {
        st = p->first;
    } else if (st == WEFT_ECANCELED) {
        st = WEFT_ECANCELED;
    }
    if (errors != NULL && st != WEFT_EINVAL) {
        *errors = p->errors;
    } else {
        weft_errgroup_release(p->errors);
    }
    weft_token_release(p->token);
    return st;
}

weft_status_t
weft_parallel_for(weft_executor_t *ex, size_t lo, size_t hi,
                  const weft_for_opts_t *opts, weft_range_fn_t fn, void *arg,
                  weft_errgroup_t **errors)
{
    if (ex == NULL || fn == NULL || lo > hi) {
        if (errors != NULL) {
            *errors = NULL;
        }
        return WEFT_EINVAL;
    }
    struct pfor p;
    memset(&p, 0, sizeof(p));
    p.fn = fn;
    p.arg = arg;
    return pfor_run(ex, lo, hi, opts, &p, NULL, errors);
}

weft_status_t
weft_parallel_reduce(weft_executor_t *ex, size_t lo, size_t hi,
                     const weft_for_opts_t *opts, weft_value_t identity,
                     weft_reduce_fn_t fn, weft_combine_fn_t combine, void *arg,
                     weft_value_t *result, weft_errgroup_t **errors)
{
    if (ex == NULL || fn == NULL || combine == NULL || result == NULL ||
        lo > hi) {
        if (errors != NULL) {
            *errors = NULL;
        }
        return WEFT_EINVAL;
    }
    struct pfor p;
    memset(&p, 0, sizeof(p));
    p.rfn = fn;
    p.combine = combine;
    p.arg = arg;
    p.identity = identity;
    return pfor_run(ex, lo, hi, opts, &p, result, errors);
}
