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
    int fcancel;         /* weft_future_cancel reason code, 0: none */
    weft_future_t *f;    /* our reference, NULL when none / released */
    int phase;           /* run phase it was queued in */
    /* model outcome, fixed at the run step */
    bool decided;
    weft_outcome_t outcome;
    weft_status_t status;
    int err_code;
    int alt_code; /* a second acceptable error code */
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
};

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
    if (m->fcancel != 0 || (m->tok >= 0 && toks[m->tok].cancelled)) {
        m->outcome = WEFT_OUTCOME_CANCELLED;
        m->status = WEFT_ECANCELED;
        /* Both asked: either reason may be the one reported. */
        m->err_code = m->fcancel != 0 ? m->fcancel : toks[m->tok].reason_code;
        m->alt_code = m->tok >= 0 && toks[m->tok].cancelled
                          ? toks[m->tok].reason_code
                          : m->err_code;
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
        m->err_code = FAIL_CODE;
        break;
    case B_RET_CANCELED:
        m->outcome = WEFT_OUTCOME_CANCELLED;
        m->status = WEFT_ECANCELED;
        m->err_code = WEFT_ECANCELED;
        break;
    default: {
        int n = (m->fork & 3) + 1;
        int fails = (m->fork >> 2) & ((1 << n) - 1);
        if (fails != 0) {
            m->outcome = WEFT_OUTCOME_FAILED;
            m->status = CHILD_FAIL_CODE;
            m->err_code = CHILD_FAIL_CODE;
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
    return m->phase < phase;
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
        CHECK(e != NULL);
        CHECK(weft_error_status(e) == m->err_code ||
              (m->alt_code != 0 && weft_error_status(e) == m->alt_code));
        if (m->outcome == WEFT_OUTCOME_FAILED) {
            CHECK(weft_error_task_id(e) != 0);
        }
    }
    CHECK(weft_future_id(f) != 0);
}

/* Open the gate, wait for every queued task to end, close it again. */
static void
run_step(void)
{
    for (int i = 0; i < nfuts; i++) {
        if (!m_ended(&futs[i])) {
            m_decide(&futs[i]);
        }
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
m_cancel(int t, int code)
{
    if (toks[t].cancelled) {
        return;
    }
    toks[t].cancelled = true;
    toks[t].reason_code = code;
    for (int c = 0; c < ntoks; c++) {
        if (toks[c].parent == t && !toks[c].shielded) {
            m_cancel(c, code);
        }
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
    phase = 0;
    finished = 0;
    child_hooks = 0;
    child_spawns = 0;
    gate_started = 0;
    gate_gen = 0;
    gate_opened = 0;
    for (int i = 0; i < MAX_REASONS; i++) {
        CHECK(weft_error_create(&reasons[i], 100 + i, "reason") == WEFT_OK);
    }
    close_gate();

    while (r.n > 0) {
        uint8_t op = rd_u8(&r);
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
            m_cancel(t, k < MAX_REASONS ? 100 + k : WEFT_ECANCELED);
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
            if (m_ended(m) || m->fcancel != 0) {
                want = WEFT_EALREADY;
            } else {
                m->fcancel = k < MAX_REASONS ? 100 + k : WEFT_ECANCELED;
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
