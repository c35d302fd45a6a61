/*
 * fuzz_future.c - libFuzzer target: future and cancellation scripts on a
 * 1-worker executor, against a single-threaded reference model.
 *
 * Determinism with a real worker thread: the worker is held by a gate task
 * while the script spawns tasks (from outside: the injection queue), makes
 * and cancels tokens in a tree, registers continuations, releases and
 * queries futures and makes non-blocking waits. Only a "run" step opens the
 * gate; the test then waits until every task so far has ended and closes
 * the gate again with a new gate task. Token state cannot change while the
 * worker runs, so each task's outcome is fixed by its script and by the
 * model's token state at the run step.
 *
 * Tasks may also be cancelled through their future (weft_future_cancel)
 * while queued: they then end CANCELLED with that reason without running,
 * and a second request, or one after the end, says WEFT_EALREADY.
 * Tasks: succeed with a value, fail (weft_task_fail), return WEFT_ECANCELED
 * on their own, or fork 1-4 children on the worker's deque (same token),
 * join them (in or against spawn order) and fail if one failed. Each has
 * a release hook; futures are kept or detached (out == NULL).
 * Waits while gated: weft_future_wait_until with a past deadline
 * (ETIMEDOUT while pending), weft_future_wait_for with a cancelled token
 * (EINTERRUPTED) or a past deadline; blocking waits and joins only on
 * futures the model says have ended.
 *
 * Checked: every status, outcome, value, error code and has_started
 * against the model; each body runs at most once and never when its token
 * was cancelled before the run; each release hook runs exactly once;
 * each continuation runs once and sees its antecedent ended with the
 * model's outcome; destroy returns WEFT_OK; nothing leaks.
 *
 * Combinators (issue #7). Op bytes 208..255 select the combinator ops
 * (bytes below 208 keep the original 13 ops): make a gather /
 * gather_settled / any / first_success / quorum(k) over 1..6 of the
 * script's task futures and earlier combined futures (a child may repeat;
 * adopt=false; optionally opts.token from the token tree), cancel a
 * combined future (weft_future_cancel), query one, release one, or run.
 * The model runs each run step in the order the single worker does: the
 * tasks queued in FIFO (spawn) order, each ending as the model's token
 * and cancel-request state says at the moment the worker reaches it;
 * each end fires the watches on that future last-registered first (the
 * library's watch list is LIFO), and a combinator's rule then runs inline
 * exactly as combine.c does: fail-fast / first success / quorum cancel
 * the children still queued (they then end CANCELLED without running,
 * with the combinator's reason), a combined future settles when its last
 * child ends (any: at its first), and a settled combined future fires
 * the watches of the combinators it is a child of. Token cancellations
 * decide the combinators registered under them at once (every callback
 * of one weft_token_cancel gets the same reason, so their order does not
 * matter). Cancellation reasons are tracked by identity ("rid"): each
 * error the model predicts has a code, an optional cause and one pointer
 * that every later observation must match.
 * Checked for each combined future we hold, after every run step, on a
 * query and at the end: is_done / outcome / status / value / error (code,
 * identity, cause chain); weft_combine_size; every ledger entry (outcome
 * or PENDING, started, cancelled_by_combinator, value, error pointer ==
 * the child's weft_future_error, future); weft_combine_values;
 * weft_combine_errors: ESTATE before the end, then the count and every
 * entry's error by identity (so its first entry is the combined future's
 * error whenever a trigger exists), any()'s "failures so far" group while
 * its other children run; weft_combine_decider; wait / wait_until.
 * Not modelled, so not checked: the position of continuations in the run
 * order (a worker pops its own deque first, where a continuation lands,
 * but takes an injected task first 1 time in 64 at random), so
 * continuations are never combinator children; the started flag of a
 * combined future used as a child (unspecified); the group's message
 * text; pointer distinctness between different predicted errors (freed
 * errors' addresses are reused).
 */
#define _GNU_SOURCE 1

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

#include "primitives/alloc.h"

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_future: check failed: %s (line %d)\n",     \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define MAX_FUTS 48
#define MAX_TOKS 8
#define MAX_REASONS 4
#define HANG_S 30
#define FAIL_CODE (WEFT_EUSER + 1)
#define CHILD_FAIL_CODE (WEFT_EUSER + 2)
#define MAX_COMBS 16
#define MAX_KIDS 6
#define MAX_RIDS 512
#define COMB_OPS_FROM 208 /* op bytes from here: combinator ops */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rd {
    const uint8_t *p;
    size_t n;
};

static uint8_t
rd_u8(struct rd *r)
{
    if (r->n == 0) {
        return 0;
    }
    r->n--;
    return *r->p++;
}

enum beh { B_SUCCEED, B_FAIL, B_RET_CANCELED, B_FORK, B_NBEH };

/* One future of the script: a task or a continuation. */
struct m_fut {
    bool is_cont;
    int antecedent; /* continuations: index of the antecedent */
    enum beh beh;
    int64_t value;       /* B_SUCCEED's value */
    uint8_t fork;        /* B_FORK: bits 0-1 children - 1, 2-5 fail mask,
                            6 join in spawn order */
    int tok;             /* -1: none */
    int creq;            /* rid of the first weft_future_cancel, 0: none */
    weft_future_t *f;    /* our reference, NULL when none / released */
    int phase;           /* run phase it was queued in */
    /* model outcome, fixed when the model's worker reaches it */
    bool decided;
    bool done;
    weft_outcome_t outcome;
    weft_status_t status;
    int err_rid; /* its error, by identity (see rid_*) */
    bool started;
    int64_t out_value;
    /* observed by the task side (read after the run step) */
    int body_runs;
    int hook_runs;
    int cont_bad;
};

struct m_tok {
    weft_token_t *t;
    int parent;
    bool shielded;
    bool cancelled;
    int reason_code;
    int reason_rid;
};

/* Combinators, as executor/combine.c runs them (D_* as there). */
enum ckind { K_GATHER, K_SETTLED, K_ANY, K_FIRST, K_QUORUM, K_NKIND };
enum { D_NONE, D_TRIGGER, D_WIN, D_CANCEL, D_FINAL };

/* A node: a task future (index into futs) or a combined future
 * (MAX_FUTS + index into combs). */
#define COMB_NODE(j) (MAX_FUTS + (j))

struct m_comb {
    enum ckind kind;
    int n, k, tok;
    int kid[MAX_KIDS];           /* nodes, input order */
    weft_future_t *kidf[MAX_KIDS]; /* the children (the combinator holds
                                      a reference to each) */
    weft_future_t *f;            /* our reference; NULL once released */
    int dec, decider, reason;    /* decision, deciding index, rid */
    int trig, trig_st, trig_rid; /* the trigger (index, status, rid) */
    int order[MAX_KIDS];         /* non-successes in completion order */
    int nslots, nended, nsucc, nunsucc;
    bool built;
    bool done;
    weft_status_t status;
    int err_rid;
    uint64_t value;
};

static struct m_comb combs[MAX_COMBS];
static int ncombs;
static struct {
    int node, comb, idx;
} watches[MAX_COMBS * MAX_KIDS];
static int nwatches;

/*
 * Error identities. rid 1..4: reasons[0..3]; RID_CANCELED: the library's
 * shared "cancelled" error (a token cancelled with NULL, a body that
 * returned WEFT_ECANCELED); RID_DEADLINE: its shared deadline error;
 * then one per error the library makes fresh.
 */
enum { RID_CANCELED = MAX_REASONS + 1, RID_DEADLINE, RID_FIRST_FRESH };
static int rcode[MAX_RIDS];
static int rcause[MAX_RIDS];
static const weft_error_t *rptr[MAX_RIDS];
static int nrids;

static int
rid_new(int code, int cause)
{
    CHECK(nrids < MAX_RIDS);
    rcode[nrids] = code;
    rcause[nrids] = cause;
    rptr[nrids] = NULL;
    return nrids++;
}

/* e is the error the model calls rid: code, identity, cause chain. */
static void
check_err(const weft_error_t *e, int rid)
{
    for (int depth = 0; depth < 8 && rid > 0; depth++) {
        CHECK(rid < nrids);
        CHECK(e != NULL);
        CHECK(weft_error_status(e) == rcode[rid]);
        if (rptr[rid] == NULL) {
            rptr[rid] = e;
        } else {
            CHECK(rptr[rid] == e);
        }
        rid = rcause[rid];
        e = weft_error_cause(e);
    }
}

static weft_executor_t *ex;
static struct m_fut futs[MAX_FUTS];
static int nfuts;
static struct m_tok toks[MAX_TOKS];
static int ntoks;
static weft_error_t *reasons[MAX_REASONS];
static int phase;

/* Gate and completion counting (mutex + condition variable). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static bool cv_ready;
static int gate_gen;    /* generation of the newest gate task */
static int gate_opened; /* gates up to this generation may pass */
static int gate_started;
static int finished; /* hooks of tasks + bodies of continuations */
static int child_hooks;
static int child_spawns;

static void
signal_locked(void)
{
    pthread_cond_broadcast(&cv);
}

static void
wait_until(const int *counter, int target)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += HANG_S;
    pthread_mutex_lock(&mu);
    while (*counter < target) {
        if (pthread_cond_timedwait(&cv, &mu, &ts) != 0 && *counter < target) {
            fprintf(stderr, "fuzz_future: hang: counter %d < %d\n", *counter,
                    target);
            abort();
        }
    }
    pthread_mutex_unlock(&mu);
}

static weft_status_t
gate_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)out;
    int gen = (int)(intptr_t)arg;
    pthread_mutex_lock(&mu);
    gate_started++;
    signal_locked();
    while (gate_opened < gen) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    return WEFT_OK;
}

/* Hold the worker: spawn a gate task and wait until it runs. */
static void
close_gate(void)
{
    pthread_mutex_lock(&mu);
    int gen = ++gate_gen;
    int target = gate_started + 1;
    pthread_mutex_unlock(&mu);
    CHECK(weft_spawn(ex, gate_body, (void *)(intptr_t)gen, NULL) == WEFT_OK);
    wait_until(&gate_started, target);
}

static void
open_gate(void)
{
    pthread_mutex_lock(&mu);
    gate_opened = gate_gen;
    signal_locked();
    pthread_mutex_unlock(&mu);
}

static void
count_finished(void)
{
    pthread_mutex_lock(&mu);
    finished++;
    signal_locked();
    pthread_mutex_unlock(&mu);
}

static void
task_hook(void *arg)
{
    struct m_fut *m = arg;
    m->hook_runs++; /* ordered before the count by the mutex */
    count_finished();
}

static void
child_hook(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    child_hooks++;
    pthread_mutex_unlock(&mu);
}

static weft_status_t
child_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    intptr_t v = (intptr_t)arg;
    if (v < 0) {
        return weft_task_fail(self, CHILD_FAIL_CODE, "child failed");
    }
    out->i64 = v;
    return WEFT_OK;
}

static weft_status_t
task_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct m_fut *m = arg;
    m->body_runs++;
    switch (m->beh) {
    case B_SUCCEED:
        out->i64 = m->value;
        return WEFT_OK;
    case B_FAIL:
        return weft_task_fail(self, FAIL_CODE, "fuzz %d", (int)(m - futs));
    case B_RET_CANCELED:
        return WEFT_ECANCELED;
    default: {
        int n = (m->fork & 3) + 1;
        weft_future_t *kids[4] = {NULL, NULL, NULL, NULL};
        for (int i = 0; i < n; i++) {
            intptr_t v = (m->fork >> (2 + i)) & 1 ? -1 : i + 1;
            weft_spawn_opts_t o = {.release = child_hook,
                                   .token = weft_task_token(self),
                                   .name = "child", WEFT_SPAWN_SITE};
            pthread_mutex_lock(&mu);
            child_spawns++;
            pthread_mutex_unlock(&mu);
            CHECK(weft_spawn_ex(weft_task_executor(self), &o, child_body,
                                (void *)v, &kids[i]) == WEFT_OK);
        }
        int64_t sum = 0;
        weft_status_t worst = WEFT_OK;
        for (int k = 0; k < n; k++) {
            int i = (m->fork & 0x40) ? k : n - 1 - k;
            weft_value_t v = {.i64 = 0};
            weft_status_t st = weft_join(kids[i], &v);
            CHECK(st == WEFT_OK || st == CHILD_FAIL_CODE);
            if (st == WEFT_OK) {
                sum += v.i64;
            } else if (worst == WEFT_OK) {
                worst = st;
            }
        }
        if (worst != WEFT_OK) {
            return weft_task_fail(self, worst, "a child failed");
        }
        out->i64 = sum;
        return WEFT_OK;
    }
    }
}

static weft_status_t
cont_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct m_fut *m = arg;
    m->body_runs++;
    const struct m_fut *a = &futs[m->antecedent];
    weft_future_t *af = weft_task_antecedent(self);
    if (af == NULL || !weft_future_is_done(af) ||
        weft_future_outcome(af) != a->outcome ||
        weft_future_status(af) != a->status) {
        m->cont_bad++;
    }
    out->i64 = 1000 + (m - futs);
    count_finished();
    return WEFT_OK;
}

/* Model: the outcome of task i when the worker reaches it. */
static void
m_decide(struct m_fut *m)
{
    if (m->decided) {
        return;
    }
    m->decided = true;
    if (m->is_cont) {
        m->outcome = WEFT_OUTCOME_SUCCEEDED;
        m->status = WEFT_OK;
        m->started = true;
        m->out_value = 1000 + (m - futs);
        return;
    }
    if (m->creq != 0 || (m->tok >= 0 && toks[m->tok].cancelled)) {
        m->outcome = WEFT_OUTCOME_CANCELLED;
        m->status = WEFT_ECANCELED;
        /* The future's own request wins over its token's reason. */
        m->err_rid = m->creq != 0 ? m->creq : toks[m->tok].reason_rid;
        m->started = false;
        return;
    }
    m->started = true;
    switch (m->beh) {
    case B_SUCCEED:
        m->outcome = WEFT_OUTCOME_SUCCEEDED;
        m->status = WEFT_OK;
        m->out_value = m->value;
        break;
    case B_FAIL:
        m->outcome = WEFT_OUTCOME_FAILED;
        m->status = FAIL_CODE;
        m->err_rid = rid_new(FAIL_CODE, 0);
        break;
    case B_RET_CANCELED:
        m->outcome = WEFT_OUTCOME_CANCELLED;
        m->status = WEFT_ECANCELED;
        m->err_rid = RID_CANCELED;
        break;
    default: {
        int n = (m->fork & 3) + 1;
        int fails = (m->fork >> 2) & ((1 << n) - 1);
        if (fails != 0) {
            m->outcome = WEFT_OUTCOME_FAILED;
            m->status = CHILD_FAIL_CODE;
            m->err_rid = rid_new(CHILD_FAIL_CODE, 0);
        } else {
            m->outcome = WEFT_OUTCOME_SUCCEEDED;
            m->status = WEFT_OK;
            m->out_value = (int64_t)n * (n + 1) / 2;
        }
        break;
    }
    }
}

static bool
m_ended(const struct m_fut *m)
{
    return m->done;
}

/* Query a future we hold; compare with the model. */
static void
check_future(int i)
{
    struct m_fut *m = &futs[i];
    weft_future_t *f = m->f;
    if (!m_ended(m)) {
        CHECK(!weft_future_is_done(f));
        CHECK(weft_future_outcome(f) == WEFT_OUTCOME_PENDING);
        CHECK(weft_future_status(f) == WEFT_EAGAIN);
        CHECK(weft_future_error(f) == NULL);
        weft_value_t v;
        CHECK(weft_future_value(f, &v) == WEFT_EAGAIN);
        CHECK(!weft_future_has_started(f));
        return;
    }
    CHECK(weft_future_is_done(f));
    CHECK(weft_future_outcome(f) == m->outcome);
    CHECK(weft_future_status(f) == m->status);
    CHECK(weft_future_has_started(f) == m->started);
    weft_value_t v = {.i64 = -1};
    CHECK(weft_future_value(f, &v) == m->status);
    if (m->status == WEFT_OK) {
        CHECK(v.i64 == m->out_value);
        CHECK(weft_future_error(f) == NULL);
    } else {
        weft_error_t *e = weft_future_error(f);
        check_err(e, m->err_rid);
        if (m->outcome == WEFT_OUTCOME_FAILED) {
            CHECK(weft_error_task_id(e) != 0);
        }
    }
    CHECK(weft_future_id(f) != 0);
}

/* ---- the combinator model -------------------------------------------- */

static bool
node_done(int nd)
{
    return nd < MAX_FUTS ? futs[nd].done : combs[nd - MAX_FUTS].done;
}

static weft_status_t
node_status(int nd)
{
    return nd < MAX_FUTS ? futs[nd].status : combs[nd - MAX_FUTS].status;
}

static weft_outcome_t
node_outcome(int nd)
{
    if (!node_done(nd)) {
        return WEFT_OUTCOME_PENDING;
    }
    if (nd < MAX_FUTS) {
        return futs[nd].outcome;
    }
    weft_status_t st = combs[nd - MAX_FUTS].status;
    return st == WEFT_OK          ? WEFT_OUTCOME_SUCCEEDED
           : st == WEFT_ECANCELED ? WEFT_OUTCOME_CANCELLED
                                  : WEFT_OUTCOME_FAILED;
}

static int
node_err(int nd)
{
    return nd < MAX_FUTS ? futs[nd].err_rid : combs[nd - MAX_FUTS].err_rid;
}

static uint64_t
node_value(int nd)
{
    return nd < MAX_FUTS ? (uint64_t)futs[nd].out_value
                         : combs[nd - MAX_FUTS].value;
}

static void node_end(int nd);

static bool
comb_decide(struct m_comb *c, int dec, int who, int reason)
{
    if (c->dec != D_NONE) {
        return false;
    }
    c->dec = dec;
    c->decider = who;
    c->reason = reason;
    return true;
}

static void comb_cancel_with(int j, int rid);

/* combine_cancel_children(): weft_future_cancel on every child not ended. */
static void
comb_cancel_children(int j)
{
    struct m_comb *c = &combs[j];
    for (int i = 0; i < c->n; i++) {
        int nd = c->kid[i];
        if (node_done(nd)) {
            continue;
        }
        if (nd < MAX_FUTS) {
            if (futs[nd].creq == 0) {
                futs[nd].creq = c->reason;
            }
        } else {
            comb_cancel_with(nd - MAX_FUTS, c->reason);
        }
    }
}

/* The caller's cancellation (token, weft_future_cancel): ends nothing. */
static void
comb_cancel_with(int j, int rid)
{
    if (comb_decide(&combs[j], D_CANCEL, -1, rid)) {
        comb_cancel_children(j);
    }
}

/* combine_trigger_error(): the failure child nd stands for. */
static void
trigger_error(int nd, int *st, int *rid)
{
    if (node_outcome(nd) == WEFT_OUTCOME_FAILED) {
        weft_status_t s = node_status(nd);
        *st = s == WEFT_OK || s == WEFT_ECANCELED ? WEFT_EFAILED : s;
        *rid = node_err(nd);
    } else {
        *st = WEFT_EFAILED;
        *rid = rid_new(WEFT_EFAILED, node_err(nd));
    }
}

static void
comb_settle(int j)
{
    struct m_comb *c = &combs[j];
    c->value = 0;
    c->err_rid = 0;
    c->status = WEFT_OK;
    if (c->dec == D_CANCEL) {
        c->status = WEFT_ECANCELED;
        c->err_rid = c->reason;
    } else if (c->dec == D_TRIGGER) {
        CHECK(c->trig >= 0);
        c->status = c->trig_st;
        c->err_rid = c->trig_rid;
    } else if (c->kind == K_ANY || c->kind == K_FIRST) {
        int nd = c->kid[c->decider];
        if (node_outcome(nd) == WEFT_OUTCOME_SUCCEEDED) {
            c->value = node_value(nd);
        } else {
            int st = WEFT_OK;
            trigger_error(nd, &st, &c->err_rid);
            c->status = (weft_status_t)st;
        }
    } else if (c->kind == K_SETTLED || c->kind == K_QUORUM) {
        for (int i = 0; i < c->n; i++) {
            c->value += node_outcome(c->kid[i]) == WEFT_OUTCOME_SUCCEEDED;
        }
    } else {
        c->value = (uint64_t)c->n;
    }
    c->done = true;
    node_end(COMB_NODE(j));
}

static void
comb_finalize(int j)
{
    struct m_comb *c = &combs[j];
    bool early = false;
    if (c->dec == D_NONE) {
        (void)comb_decide(c,
                          c->kind == K_FIRST || c->kind == K_QUORUM ? D_TRIGGER
                                                                   : D_FINAL,
                          -1, 0);
    } else if (c->kind == K_ANY) {
        early = c->dec != D_CANCEL;
    }
    if (c->dec == D_TRIGGER && c->trig < 0) {
        for (int s = 0; s < c->nslots; s++) {
            if (node_outcome(c->kid[c->order[s]]) !=
                WEFT_OUTCOME_SUCCEEDED) {
                c->trig = c->order[s];
                trigger_error(c->kid[c->trig], &c->trig_st, &c->trig_rid);
                break;
            }
        }
    }
    c->built = true;
    if (!early) {
        comb_settle(j);
    }
}

/* combine_child_ended(): child i of combinator j has ended. */
static void
comb_child_ended(int j, int i)
{
    struct m_comb *c = &combs[j];
    int nd = c->kid[i];
    weft_outcome_t o = node_outcome(nd);
    CHECK(o != WEFT_OUTCOME_PENDING);
    bool ok = o == WEFT_OUTCOME_SUCCEEDED;
    if (!ok) {
        c->order[c->nslots++] = i;
    }
    if (c->kind == K_QUORUM) {
        ok ? c->nsucc++ : c->nunsucc++;
    }
    switch (c->kind) {
    case K_GATHER:
        if (ok) {
            break;
        }
        if (o == WEFT_OUTCOME_CANCELLED && c->tok >= 0 &&
            toks[c->tok].cancelled) {
            comb_cancel_with(j, toks[c->tok].reason_rid);
            break;
        }
        if (comb_decide(c, D_TRIGGER, i, 0)) {
            c->trig = i;
            trigger_error(nd, &c->trig_st, &c->trig_rid);
            c->reason = rid_new(WEFT_ECANCELED, c->trig_rid);
            comb_cancel_children(j);
        }
        break;
    case K_ANY:
        if (comb_decide(c, D_WIN, i, 0)) {
            comb_settle(j);
        }
        break;
    case K_FIRST:
        if (ok && comb_decide(c, D_WIN, i, 0)) {
            c->reason = rid_new(WEFT_ECANCELED, 0);
            comb_cancel_children(j);
        }
        break;
    case K_QUORUM:
        if (ok && c->nsucc >= c->k) {
            if (comb_decide(c, D_WIN, i, 0)) {
                c->reason = rid_new(WEFT_ECANCELED, 0);
                comb_cancel_children(j);
            }
        } else if (!ok && c->n - c->nunsucc < c->k) {
            if (comb_decide(c, D_TRIGGER, i, 0)) {
                /* The trigger is the first failure (order[0]); the
                 * siblings' reason is caused by it. */
                c->trig = c->order[0];
                trigger_error(c->kid[c->trig], &c->trig_st, &c->trig_rid);
                c->reason = rid_new(WEFT_ECANCELED, c->trig_rid);
                comb_cancel_children(j);
            }
        }
        break;
    default:
        break;
    }
    if (++c->nended == c->n) {
        comb_finalize(j);
    }
}

/* A future ended: its watches run, the last registered first. */
static void
node_end(int nd)
{
    for (int w = nwatches - 1; w >= 0; w--) {
        if (watches[w].node == nd) {
            comb_child_ended(watches[w].comb, watches[w].idx);
        }
    }
}

/* The model's worker reaches task (or continuation) i. */
static void
m_run(int i)
{
    struct m_fut *m = &futs[i];
    m_decide(m);
    m->done = true;
    if (!m->is_cont) {
        node_end(i);
    }
}

/* Expected entries of weft_combine_errors(), as rids; returns the count. */
static int
comb_expected_errors(const struct m_comb *c, int *rids)
{
    int cnt = 0;
    if (c->kind == K_ANY && !c->built) {
        /* Failures so far, keyed by input index + 1, the decider's 0. */
        int keys[MAX_KIDS];
        for (int i = 0; i < c->n; i++) {
            if (node_outcome(c->kid[i]) != WEFT_OUTCOME_FAILED) {
                continue;
            }
            int key = i == c->decider ? 0 : i + 1;
            int at = cnt;
            while (at > 0 && keys[at - 1] > key) {
                keys[at] = keys[at - 1];
                rids[at] = rids[at - 1];
                at--;
            }
            keys[at] = key;
            rids[at] = node_err(c->kid[i]);
            cnt++;
        }
        return cnt;
    }
    if (c->nslots == 0) {
        return 0;
    }
    if (c->trig >= 0) {
        rids[cnt++] = c->trig_rid;
    }
    for (int s = 0; s < c->nslots; s++) {
        int i = c->order[s];
        int nd = c->kid[i];
        weft_outcome_t o = node_outcome(nd);
        int e = node_err(nd);
        bool ours = c->reason != 0 && e == c->reason;
        bool include = o == WEFT_OUTCOME_FAILED ||
                       (o == WEFT_OUTCOME_CANCELLED && c->kind == K_GATHER &&
                        c->dec != D_CANCEL && !ours);
        if (include && i != c->trig) {
            rids[cnt++] = e;
        }
    }
    return cnt;
}

/* Query a combined future we hold; compare with the model. */
static void
check_comb(int j)
{
    struct m_comb *c = &combs[j];
    weft_future_t *f = c->f;
    CHECK(weft_combine_size(f) == (size_t)c->n);
    CHECK(weft_future_id(f) != 0);
    for (int i = 0; i < c->n; i++) {
        int nd = c->kid[i];
        weft_child_result_t r;
        memset(&r, 0xa5, sizeof(r));
        CHECK(weft_combine_child(f, (size_t)i, &r) == WEFT_OK);
        CHECK(r.future == c->kidf[i]);
        weft_outcome_t o = node_outcome(nd);
        CHECK(r.outcome == o);
        if (nd < MAX_FUTS && o != WEFT_OUTCOME_PENDING) {
            CHECK(r.started == futs[nd].started);
        }
        if (o == WEFT_OUTCOME_PENDING || o == WEFT_OUTCOME_SUCCEEDED) {
            CHECK(r.error == NULL);
            CHECK(!r.cancelled_by_combinator);
            CHECK(r.value.u64 ==
                  (o == WEFT_OUTCOME_SUCCEEDED ? node_value(nd) : 0));
            continue;
        }
        CHECK(r.value.u64 == 0);
        check_err(r.error, node_err(nd));
        CHECK(r.error == weft_future_error(c->kidf[i]));
        bool cbc = o == WEFT_OUTCOME_CANCELLED && c->dec != D_NONE &&
                   c->reason != 0 && node_err(nd) == c->reason;
        CHECK(r.cancelled_by_combinator == cbc);
    }
    weft_child_result_t r;
    CHECK(weft_combine_child(f, (size_t)c->n, &r) == WEFT_ERANGE);
    weft_value_t vals[MAX_KIDS];
    weft_errgroup_t *g = NULL;
    if (!c->done) {
        CHECK(!weft_future_is_done(f));
        CHECK(weft_future_outcome(f) == WEFT_OUTCOME_PENDING);
        CHECK(weft_future_status(f) == WEFT_EAGAIN);
        CHECK(weft_future_error(f) == NULL);
        CHECK(weft_future_wait_until(f, 1) == WEFT_ETIMEDOUT);
        CHECK(weft_combine_values(f, vals, (size_t)c->n) == WEFT_ESTATE);
        CHECK(weft_combine_errors(f, &g) == WEFT_ESTATE);
        CHECK(g == NULL);
        return;
    }
    CHECK(weft_future_is_done(f));
    CHECK(weft_future_outcome(f) == node_outcome(COMB_NODE(j)));
    CHECK(weft_future_status(f) == c->status);
    CHECK(weft_future_wait(f) == c->status);
    weft_value_t v = {.u64 = 12345};
    CHECK(weft_future_value(f, &v) == c->status);
    if (c->status == WEFT_OK) {
        CHECK(v.u64 == c->value);
        CHECK(weft_future_error(f) == NULL);
    } else {
        check_err(weft_future_error(f), c->err_rid);
    }
    CHECK(weft_combine_values(f, vals, (size_t)c->n) == WEFT_OK);
    for (int i = 0; i < c->n; i++) {
        int nd = c->kid[i];
        CHECK(vals[i].u64 == (node_outcome(nd) == WEFT_OUTCOME_SUCCEEDED
                                  ? node_value(nd)
                                  : 0));
    }
    size_t want_dec = (c->dec == D_TRIGGER || c->dec == D_WIN) &&
                              c->decider >= 0
                          ? (size_t)c->decider
                          : SIZE_MAX;
    CHECK(weft_combine_decider(f) == want_dec);
    int rids[MAX_KIDS + 1];
    int cnt = comb_expected_errors(c, rids);
    CHECK(weft_combine_errors(f, &g) == WEFT_OK);
    CHECK(g != NULL);
    CHECK(weft_errgroup_count(g) == (size_t)cnt);
    for (int e = 0; e < cnt; e++) {
        weft_errgroup_entry_t ent;
        CHECK(weft_errgroup_entry(g, (size_t)e, &ent) == WEFT_OK);
        CHECK(ent.kind == WEFT_ERRGROUP_ERROR);
        check_err(ent.error, rids[e]);
    }
    if (c->dec == D_TRIGGER && cnt > 0) {
        weft_errgroup_entry_t ent;
        CHECK(weft_errgroup_entry(g, 0, &ent) == WEFT_OK);
        CHECK(ent.error == weft_future_error(f));
    }
    CHECK(weft_errgroup_release(g) == WEFT_OK);
}

/* Make combinator `kind` over the chosen nodes; the model arms it. */
static void
make_comb(enum ckind kind, const int *kid, int n, int k, int tok)
{
    int j = ncombs;
    struct m_comb *c = &combs[j];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->n = n;
    c->k = k;
    c->tok = tok;
    c->decider = -1;
    c->trig = -1;
    for (int i = 0; i < n; i++) {
        c->kid[i] = kid[i];
        c->kidf[i] = kid[i] < MAX_FUTS ? futs[kid[i]].f
                                       : combs[kid[i] - MAX_FUTS].f;
        CHECK(c->kidf[i] != NULL);
    }
    weft_combine_opts_t o = {.token = tok >= 0 ? toks[tok].t : NULL,
                             .name = (kind & 1) ? "fzc" : NULL,
                             .adopt = false};
    weft_status_t st = WEFT_EINVAL;
    switch (kind) {
    case K_GATHER:
        st = weft_gather(ex, c->kidf, (size_t)n, &o, &c->f);
        break;
    case K_SETTLED:
        st = weft_gather_settled(ex, c->kidf, (size_t)n, &o, &c->f);
        break;
    case K_ANY:
        st = weft_any(ex, c->kidf, (size_t)n, &o, &c->f);
        break;
    case K_FIRST:
        st = weft_first_success(ex, c->kidf, (size_t)n, &o, &c->f);
        break;
    default:
        st = weft_quorum(ex, c->kidf, (size_t)n, (size_t)k, &o, &c->f);
        break;
    }
    CHECK(st == WEFT_OK);
    CHECK(c->f != NULL);
    ncombs++;
    /* combine_arm(): the token callback first, then each child in input
     * order: processed now if it has ended, else watched. */
    if (tok >= 0 && toks[tok].cancelled) {
        comb_cancel_with(j, toks[tok].reason_rid);
    }
    for (int i = 0; i < n; i++) {
        if (node_done(kid[i])) {
            comb_child_ended(j, i);
        } else {
            CHECK(nwatches < MAX_COMBS * MAX_KIDS);
            watches[nwatches].node = kid[i];
            watches[nwatches].comb = j;
            watches[nwatches].idx = i;
            nwatches++;
        }
    }
    check_comb(j);
}

/* Open the gate, wait for every queued task to end, close it again. */
static void
run_step(void)
{
    /* The worker takes the injected tasks in FIFO order (continuations
     * never change what the combinators see: they are no children). */
    for (int i = 0; i < nfuts; i++) {
        if (!m_ended(&futs[i])) {
            m_run(i);
        }
    }
    for (int j = 0; j < ncombs; j++) {
        CHECK(combs[j].done); /* every child has ended */
    }
    phase++;
    open_gate();
    wait_until(&finished, nfuts);
    close_gate();
    for (int i = 0; i < nfuts; i++) {
        struct m_fut *m = &futs[i];
        CHECK(m->body_runs == (m->started ? 1 : 0));
        CHECK(m->is_cont || m->hook_runs == 1);
        CHECK(m->cont_bad == 0);
    }
    pthread_mutex_lock(&mu);
    CHECK(child_hooks == child_spawns);
    pthread_mutex_unlock(&mu);
}

static int
pick_fut(struct rd *r)
{
    if (nfuts == 0) {
        return -1;
    }
    int i = rd_u8(r) % nfuts;
    return futs[i].f != NULL ? i : -1;
}

static int
pick_tok(struct rd *r)
{
    uint8_t b = rd_u8(r);
    if (ntoks == 0 || b % (ntoks + 1) == (unsigned)ntoks) {
        return -1;
    }
    int t = b % (ntoks + 1);
    return toks[t].t != NULL ? t : -1;
}

static void
m_cancel(int t, int code, int rid)
{
    if (toks[t].cancelled) {
        return;
    }
    toks[t].cancelled = true;
    toks[t].reason_code = code;
    toks[t].reason_rid = rid;
    for (int c = 0; c < ntoks; c++) {
        if (toks[c].parent == t && !toks[c].shielded) {
            m_cancel(c, code, rid);
        }
    }
}

/* Pick a combined future we still hold; -1 when none. */
static int
pick_comb(struct rd *r)
{
    uint8_t b = rd_u8(r);
    if (ncombs == 0) {
        return -1;
    }
    int j = b % ncombs;
    return combs[j].f != NULL ? j : -1;
}

/* The combinator ops (op bytes COMB_OPS_FROM..255). */
static void
comb_op(struct rd *r, uint8_t op)
{
    switch ((op - COMB_OPS_FROM) % 6) {
    case 0:
    case 1: { /* make a combinator over 1..6 futures */
        uint8_t kb = rd_u8(r);
        int want = 1 + rd_u8(r) % MAX_KIDS;
        int kid[MAX_KIDS];
        int n = 0;
        for (int i = 0; i < want; i++) {
            uint8_t b = rd_u8(r);
            int nd = -1;
            if ((b & 0x80) && ncombs > 0) {
                int j = (b & 0x7f) % ncombs;
                nd = combs[j].f != NULL ? COMB_NODE(j) : -1;
            } else if (nfuts > 0) {
                int t = b % nfuts;
                nd = futs[t].f != NULL && !futs[t].is_cont ? t : -1;
            }
            if (nd >= 0) {
                kid[n++] = nd;
            }
        }
        int tok = pick_tok(r);
        if (n == 0 || ncombs == MAX_COMBS) {
            break;
        }
        enum ckind kind = (enum ckind)(kb % K_NKIND);
        make_comb(kind, kid, n, 1 + (kb / K_NKIND) % n, tok);
        break;
    }
    case 2: { /* weft_future_cancel on a combined future */
        int j = pick_comb(r);
        uint8_t k = rd_u8(r) % (MAX_REASONS + 1);
        if (j < 0) {
            break;
        }
        struct m_comb *c = &combs[j];
        weft_status_t want = WEFT_EALREADY;
        if (!c->done && c->dec == D_NONE) {
            want = WEFT_OK;
            comb_cancel_with(j, k < MAX_REASONS ? 1 + k
                                                : rid_new(WEFT_ECANCELED, 0));
        }
        CHECK(weft_future_cancel(c->f, k < MAX_REASONS ? reasons[k] : NULL) ==
              want);
        check_comb(j);
        break;
    }
    case 3: { /* query */
        int j = pick_comb(r);
        if (j >= 0) {
            check_comb(j);
        }
        break;
    }
    case 4: { /* release */
        int j = pick_comb(r);
        if (j >= 0) {
            CHECK(weft_future_release(combs[j].f) == WEFT_OK);
            combs[j].f = NULL;
        }
        break;
    }
    default:
        run_step();
        for (int i = 0; i < nfuts; i++) {
            if (futs[i].f != NULL) {
                check_future(i);
            }
        }
        for (int j = 0; j < ncombs; j++) {
            if (combs[j].f != NULL) {
                check_comb(j);
            }
        }
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd r = {data, size};
    if (!cv_ready) {
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(&cv, &a);
        pthread_condattr_destroy(&a);
        cv_ready = true;
    }
    int64_t live = weft__alloc_live();
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 1;
    CHECK(weft_executor_create(&cfg, &ex) == WEFT_OK);
    nfuts = 0;
    ntoks = 0;
    ncombs = 0;
    nwatches = 0;
    nrids = RID_FIRST_FRESH;
    rcode[RID_CANCELED] = WEFT_ECANCELED;
    rcode[RID_DEADLINE] = WEFT_EDEADLINE;
    rptr[RID_CANCELED] = NULL;
    rptr[RID_DEADLINE] = NULL;
    rcause[RID_CANCELED] = 0;
    rcause[RID_DEADLINE] = 0;
    phase = 0;
    finished = 0;
    child_hooks = 0;
    child_spawns = 0;
    gate_started = 0;
    gate_gen = 0;
    gate_opened = 0;
    for (int i = 0; i < MAX_REASONS; i++) {
        CHECK(weft_error_create(&reasons[i], 100 + i, "reason") == WEFT_OK);
        rcode[1 + i] = 100 + i;
        rcause[1 + i] = 0;
        rptr[1 + i] = reasons[i];
    }
    close_gate();

    while (r.n > 0) {
        uint8_t op = rd_u8(&r);
        if (op >= COMB_OPS_FROM) {
            comb_op(&r, op);
            continue;
        }
        switch (op % 13) {
        case 0:
        case 1:
        case 2: { /* spawn a task */
            if (nfuts == MAX_FUTS) {
                break;
            }
            struct m_fut *m = &futs[nfuts];
            memset(m, 0, sizeof(*m));
            m->beh = (enum beh)(rd_u8(&r) % B_NBEH);
            m->value = rd_u8(&r);
            m->fork = rd_u8(&r);
            m->tok = pick_tok(&r);
            m->phase = phase;
            bool keep = (rd_u8(&r) & 3) != 0;
            weft_spawn_opts_t o = {.release = task_hook, .name = "fz",
                                   .token = m->tok >= 0 ? toks[m->tok].t
                                                        : NULL,
                                   WEFT_SPAWN_SITE};
            nfuts++;
            CHECK(weft_spawn_ex(ex, &o, task_body, m, keep ? &m->f : NULL) ==
                  WEFT_OK);
            CHECK(keep == (m->f != NULL));
            if (keep) {
                check_future(nfuts - 1);
            }
            break;
        }
        case 3: { /* continuation */
            int a = pick_fut(&r);
            bool keep = rd_u8(&r) & 1;
            if (a < 0 || nfuts == MAX_FUTS) {
                break;
            }
            struct m_fut *m = &futs[nfuts];
            memset(m, 0, sizeof(*m));
            m->is_cont = true;
            m->antecedent = a;
            m->tok = -1;
            m->phase = phase;
            nfuts++;
            CHECK(weft_future_then(futs[a].f, cont_body, m,
                                   keep ? &m->f : NULL) == WEFT_OK);
            break;
        }
        case 4: { /* make a token */
            if (ntoks == MAX_TOKS) {
                break;
            }
            int p = pick_tok(&r);
            uint8_t k = rd_u8(&r) % 4;
            struct m_tok *mt = &toks[ntoks];
            memset(mt, 0, sizeof(*mt));
            mt->parent = p;
            weft_status_t st;
            if (k == 3) { /* deadline already passed: born cancelled */
                st = weft_token_create_with_deadline(
                    p >= 0 ? toks[p].t : NULL, 1, &mt->t);
                mt->cancelled = true;
                mt->reason_code = WEFT_EDEADLINE;
                mt->reason_rid = RID_DEADLINE;
            } else if (k == 2) {
                st = weft_token_create_shielded(p >= 0 ? toks[p].t : NULL,
                                                WEFT_DEADLINE_NONE, &mt->t);
                mt->shielded = true;
            } else {
                st = weft_token_create(p >= 0 ? toks[p].t : NULL, &mt->t);
            }
            CHECK(st == WEFT_OK);
            if (!mt->cancelled && !mt->shielded && p >= 0 &&
                toks[p].cancelled) {
                mt->cancelled = true;
                mt->reason_code = toks[p].reason_code;
                mt->reason_rid = toks[p].reason_rid;
            }
            ntoks++;
            CHECK(weft_token_is_cancelled(mt->t) == mt->cancelled);
            break;
        }
        case 5: { /* cancel a token */
            int t = pick_tok(&r);
            uint8_t k = rd_u8(&r) % (MAX_REASONS + 1);
            if (t < 0) {
                break;
            }
            weft_status_t want =
                toks[t].cancelled ? WEFT_EALREADY : WEFT_OK;
            m_cancel(t, k < MAX_REASONS ? 100 + k : WEFT_ECANCELED,
                     k < MAX_REASONS ? 1 + k : RID_CANCELED);
            /* The callbacks of the combinators under the cancelled
             * tokens decide them now, all with the same reason. */
            for (int j = 0; j < ncombs; j++) {
                if (combs[j].tok >= 0 && toks[combs[j].tok].cancelled) {
                    comb_cancel_with(j, toks[combs[j].tok].reason_rid);
                }
            }
            CHECK(weft_token_cancel(toks[t].t,
                                    k < MAX_REASONS ? reasons[k] : NULL) ==
                  want);
            for (int c = 0; c < ntoks; c++) {
                if (toks[c].t != NULL) {
                    CHECK(weft_token_is_cancelled(toks[c].t) ==
                          toks[c].cancelled);
                }
            }
            break;
        }
        case 6: { /* non-blocking waits */
            int i = pick_fut(&r);
            int t = pick_tok(&r);
            uint8_t k = rd_u8(&r) % 3;
            if (i < 0) {
                break;
            }
            struct m_fut *m = &futs[i];
            weft_status_t st;
            weft_status_t want;
            if (k == 0) {
                st = weft_future_wait_until(m->f, rd_u8(&r));
                want = m_ended(m) ? m->status : WEFT_ETIMEDOUT;
            } else if (t >= 0 && toks[t].cancelled) {
                st = weft_future_wait_for(m->f, toks[t].t,
                                          k == 1 ? 0 : 1);
                want = m_ended(m) ? m->status : WEFT_EINTERRUPTED;
            } else {
                st = weft_future_wait_for(
                    m->f, t >= 0 ? toks[t].t : NULL, 1 + rd_u8(&r));
                want = m_ended(m) ? m->status : WEFT_ETIMEDOUT;
            }
            CHECK(st == want);
            check_future(i);
            break;
        }
        case 7: { /* blocking wait or join of an ended future */
            int i = pick_fut(&r);
            bool join = rd_u8(&r) & 1;
            if (i < 0 || !m_ended(&futs[i])) {
                break;
            }
            struct m_fut *m = &futs[i];
            if (join) {
                weft_value_t v = {.i64 = -1};
                CHECK(weft_join(m->f, &v) == m->status);
                if (m->status == WEFT_OK) {
                    CHECK(v.i64 == m->out_value);
                }
                m->f = NULL;
            } else {
                CHECK(weft_future_wait(m->f) == m->status);
                check_future(i);
            }
            break;
        }
        case 8: { /* query */
            int i = pick_fut(&r);
            if (i >= 0) {
                check_future(i);
            }
            break;
        }
        case 9: { /* release */
            int i = pick_fut(&r);
            if (i >= 0) {
                CHECK(weft_future_release(futs[i].f) == WEFT_OK);
                futs[i].f = NULL;
            }
            break;
        }
        case 10: { /* release a token */
            int t = pick_tok(&r);
            if (t >= 0) {
                CHECK(weft_token_release(toks[t].t) == WEFT_OK);
                toks[t].t = NULL;
            }
            break;
        }
        case 12: { /* weft_future_cancel on a task */
            int i = pick_fut(&r);
            uint8_t k = rd_u8(&r) % (MAX_REASONS + 1);
            if (i < 0 || futs[i].is_cont) {
                break;
            }
            struct m_fut *m = &futs[i];
            weft_status_t want = WEFT_OK;
            if (m_ended(m) || m->creq != 0) {
                want = WEFT_EALREADY;
            } else {
                m->creq = k < MAX_REASONS ? 1 + k
                                          : rid_new(WEFT_ECANCELED, 0);
            }
            CHECK(weft_future_cancel(m->f, k < MAX_REASONS ? reasons[k]
                                                           : NULL) == want);
            check_future(i);
            break;
        }
        case 11:
            run_step();
            for (int i = 0; i < nfuts; i++) {
                if (futs[i].f != NULL) {
                    check_future(i);
                }
            }
            for (int j = 0; j < ncombs; j++) {
                if (combs[j].f != NULL) {
                    check_comb(j);
                }
            }
            break;
        }
    }
    /* Finish: run what is queued, release everything, tear down. */
    run_step();
    for (int i = 0; i < nfuts; i++) {
        if (futs[i].f != NULL) {
            check_future(i);
            CHECK(weft_future_release(futs[i].f) == WEFT_OK);
        }
    }
    for (int j = 0; j < ncombs; j++) {
        if (combs[j].f != NULL) {
            check_comb(j);
            CHECK(weft_future_release(combs[j].f) == WEFT_OK);
        }
    }
    open_gate();
    CHECK(weft_executor_destroy(ex) == WEFT_OK);
    ex = NULL;
    for (int t = 0; t < ntoks; t++) {
        if (toks[t].t != NULL) {
            CHECK(weft_token_release(toks[t].t) == WEFT_OK);
        }
    }
    for (int i = 0; i < MAX_REASONS; i++) {
        weft_error_release(reasons[i]);
    }
    CHECK(weft__alloc_live() == live);
    return 0;
}
