/*
 * stress_cancellation.c - randomized races of token cancellation against
 * running, queued and awaited tasks on a 2-worker executor (plain C: runs
 * under ThreadSanitizer, where Criterion cannot).
 *
 * Part A, late starts (<weft/future.h>: "Once weft_token_cancel() has
 * returned, each worker starts at most one more body under that token").
 * Each trial makes a fresh token; the main thread spawns EXT_TASKS tasks
 * under it from outside (injection queue, detached), then a root task
 * spawns ROOT_TASKS more from a worker (every fourth detached; the rest
 * awaited with weft_future_wait or weft_join, so they run stolen, inline
 * or from the deque) while a canceller thread, after a seeded random delay,
 * calls weft_token_cancel() and then sets the flag cancel_returned
 * (release). Every body reads the flag (acquire) first thing and, if it
 * is set, counts a late start for the worker it runs on. A body that
 * passed its check just before the cancel may start late, one per worker;
 * a second late start on one worker would be a body started after that
 * worker had already seen the flag, so after the cancel. Checked: at most
 * one late start per worker in every trial. Printed: how many trials had
 * 0 / 1 / 2 late starts in all, the largest per-worker count, and how
 * many trials ran none / some / all of their bodies (so the cancel point
 * is seen to move through the whole trial).
 *
 * Part B, exactly once (same trials): every task's release hook runs
 * exactly once and its body at most once; a kept future ends SUCCEEDED
 * exactly when its body ran and returned WEFT_OK, CANCELLED when the body
 * never ran or returned WEFT_ECANCELED after seeing the token, never
 * FAILED; a cancelled one carries a reason of code WEFT_ECANCELED.
 *
 * Part C, cancel vs wait_for. Each trial blocks one task T on a flag and
 * has it awaited with weft_future_wait_for() by WAITERS outside threads
 * and one task on the other worker, each with its own token (some are
 * children of a trial root token). Two canceller threads cancel tokens
 * (individually and through the root) at random points; in half of the
 * trials one of them first waits until a waiter has announced itself on
 * T's state word (white-box: WEFT__F_WAITER), to aim its cancels at a
 * waiter that is parking. In a "release" trial T is let go at a random
 * point too, and every wait must return T's own status or
 * WEFT_EINTERRUPTED. In a "cancel-first" trial T is let go only after
 * every wait returned, so every wait must return WEFT_EINTERRUPTED; a
 * wait still blocked HANG_GUARD_S seconds after its token was cancelled
 * counts as a hang (lost wake-up), after which T is let go to unblock it.
 * (test_cancellation.c forces that lost wake-up deterministically; here
 * the race is only sampled.)
 *
 * No sleeps: threads meet on atomics; real time is read only by the hang
 * guard and once, to size the random cancel delay of part A. Seed: WEFT_SEED if set, else the clock; printed first, and again
 * with each failure. Trials: WEFT_STRESS_TRIALS if set, else 10000 (1000
 * under sanitizers) for parts A and B, a fifth of that for part C. The
 * last line is "N passed, N failed" (trials of all parts); the exit status
 * is 0 only when none failed. At the end nothing may be left allocated.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/cancel.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/status.h>

#include "executor/future.h"
#include "primitives/alloc.h"
#include "primitives/atomics.h"

#include "stress_common.h" /* STRESS_SANITIZED */

#ifdef STRESS_SANITIZED
#define DEFAULT_TRIALS 1000
#else
#define DEFAULT_TRIALS 10000
#endif

#define NWORKERS 2
#define ROOT_TASKS 64 /* spawned by the root task, on a worker */
#define EXT_TASKS 8   /* spawned from outside first (injection queue) */
#define TASKS (ROOT_TASKS + EXT_TASKS)
#define DETACH_EVERY 4 /* every 4th root task is detached */
#define WAITERS 3      /* outside waiter threads in part C */
#define HANG_GUARD_S 5

static uint64_t seed;
static long passed;
static long failed;

static uint64_t
rng_next(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t
rng_for(uint64_t trial, uint64_t stream)
{
    uint64_t s = seed ^ (trial * 0x9E3779B97F4A7C15ULL) ^
                 (stream * 0xC2B2AE3D27D4EB4FULL);
    return s != 0 ? s : 0x1234567ULL;
}

static void
spin(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        weft__cpu_relax();
    }
}

static uint64_t
mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
fail(const char *part, long trial, const char *what)
{
    fprintf(stderr, "FAIL part %s trial %ld (seed %llu): %s\n", part, trial,
            (unsigned long long)seed, what);
}

/* ---- parts A and B ------------------------------------------------------ */

struct slot {
    atomic_uint ran;        /* body entries */
    atomic_uint released;   /* release hook calls */
    atomic_uint ret_cancel; /* the body returned WEFT_ECANCELED */
    uint32_t work;          /* spin iterations in the body */
    uint32_t polls;         /* the body polls its token */
};

static struct {
    struct slot slots[TASKS];
    atomic_uint cancel_returned; /* set right after weft_token_cancel */
    atomic_uint late[NWORKERS];  /* bodies that started after it */
    atomic_uint late_bad_index;  /* a body ran on no worker?! */
    atomic_uint released_total;
    weft_executor_t *ex;
} ta;

/* Canceller of part A: waits for a trial number, then cancels. */
static struct {
    atomic_uint trial; /* trial to act on (0: none yet) */
    atomic_uint done;  /* last trial acted on */
    atomic_uint quit;
    _Atomic(weft_token_t *) tok;
    atomic_uint delay; /* spin iterations before the cancel */
    atomic_int cancel_st;
} cx;

static void *
canceller_a(void *arg)
{
    (void)arg;
    unsigned int seen = 0;
    for (;;) {
        unsigned int t;
        while ((t = atomic_load_explicit(&cx.trial, memory_order_acquire)) ==
               seen) {
            if (atomic_load_explicit(&cx.quit, memory_order_acquire)) {
                return NULL;
            }
            sched_yield();
        }
        seen = t;
        weft_token_t *tok = atomic_load_explicit(&cx.tok, memory_order_acquire);
        spin(atomic_load_explicit(&cx.delay, memory_order_relaxed));
        weft_status_t st = weft_token_cancel(tok, NULL);
        atomic_store_explicit(&ta.cancel_returned, 1, memory_order_release);
        atomic_store_explicit(&cx.cancel_st, (int)st, memory_order_relaxed);
        atomic_store_explicit(&cx.done, t, memory_order_release);
    }
}

static void
slot_release(void *arg)
{
    atomic_fetch_add(&((struct slot *)arg)->released, 1);
    atomic_fetch_add(&ta.released_total, 1);
}

static weft_status_t
body_a(weft_task_t *self, void *arg, weft_value_t *result)
{
    /* First thing: did this body start after the cancel returned? */
    bool late =
        atomic_load_explicit(&ta.cancel_returned, memory_order_acquire) != 0;
    struct slot *s = arg;
    int idx = weft_executor_worker_index(weft_task_executor(self));
    if (late) {
        if (idx >= 0 && idx < NWORKERS) {
            atomic_fetch_add(&ta.late[idx], 1);
        } else {
            atomic_fetch_add(&ta.late_bad_index, 1);
        }
    }
    atomic_fetch_add(&s->ran, 1);
    for (uint32_t i = 0; i < s->work; i += 64) {
        spin(64);
        if (s->polls && weft_task_is_cancelled(self)) {
            atomic_store(&s->ret_cancel, 1);
            return WEFT_ECANCELED;
        }
    }
    result->u64 = 1;
    return WEFT_OK;
}

struct root_a {
    weft_token_t *tok;
    uint64_t rng;
    /* results, read by main after the root ended */
    unsigned int spawn_failures;
    unsigned int bad_outcome;
    unsigned int bad_reason;
    char detail[160];
};

static void
root_note(struct root_a *r, const char *what, int i, weft_outcome_t o,
          weft_status_t st)
{
    if (r->detail[0] == '\0') {
        snprintf(r->detail, sizeof r->detail,
                 "%s: task %d outcome %s status %s ran %u ret_cancel %u", what,
                 i, weft_outcome_name(o), weft_status_name(st),
                 atomic_load(&ta.slots[i].ran),
                 atomic_load(&ta.slots[i].ret_cancel));
    }
}

static weft_status_t
root_body_a(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct root_a *r = arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t *fut[ROOT_TASKS];
    for (int i = 0; i < ROOT_TASKS; i++) {
        weft_spawn_opts_t o = {
            .release = slot_release, .token = r->tok, .name = "a"};
        bool detach = i % DETACH_EVERY == DETACH_EVERY - 1;
        fut[i] = NULL;
        weft_status_t st = weft_spawn_ex(ex, &o, body_a, &ta.slots[i],
                                         detach ? NULL : &fut[i]);
        if (st != WEFT_OK) {
            r->spawn_failures++;
        }
        if ((rng_next(&r->rng) & 7) == 0) {
            spin(rng_next(&r->rng) % 256);
        }
    }
    for (int i = 0; i < ROOT_TASKS; i++) {
        if (fut[i] == NULL) {
            continue;
        }
        if (i % 8 == 1) {
            /* weft_join: the status alone must match what the body did. */
            weft_status_t js = weft_join(fut[i], NULL);
            struct slot *s = &ta.slots[i];
            unsigned int ran = atomic_load(&s->ran);
            unsigned int rc = atomic_load(&s->ret_cancel);
            if (!((js == WEFT_OK && ran == 1 && rc == 0) ||
                  (js == WEFT_ECANCELED &&
                   (ran == 0 || (ran == 1 && rc == 1))))) {
                r->bad_outcome++;
                root_note(r, "join status", i, WEFT_OUTCOME_PENDING, js);
            }
            continue;
        }
        weft_status_t st = weft_future_wait(fut[i]);
        weft_outcome_t o = weft_future_outcome(fut[i]);
        struct slot *s = &ta.slots[i];
        unsigned int ran = atomic_load(&s->ran);
        unsigned int rc = atomic_load(&s->ret_cancel);
        bool ok;
        switch (o) {
        case WEFT_OUTCOME_SUCCEEDED:
            ok = st == WEFT_OK && ran == 1 && rc == 0;
            break;
        case WEFT_OUTCOME_CANCELLED:
            ok = st == WEFT_ECANCELED && (ran == 0 || (ran == 1 && rc == 1));
            if (ok) {
                weft_error_t *e = weft_future_error(fut[i]);
                if (weft_error_status(e) != WEFT_ECANCELED) {
                    r->bad_reason++;
                    root_note(r, "cancel reason code", i, o, st);
                }
            }
            break;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            r->bad_outcome++;
            root_note(r, "outcome", i, o, st);
        }
        (void)weft_future_release(fut[i]);
    }
    return WEFT_OK;
}

static long hist_total_late[4]; /* trials with 0, 1, 2, 3+ late starts */
static long hist_max_worker[3]; /* trials whose per-worker max is 0/1/2+ */
static long hist_ran[3];        /* trials that ran none / some / all */
static unsigned int max_late_per_worker;

static bool
trial_a(long trial, uint64_t max_delay)
{
    uint64_t rng = rng_for((uint64_t)trial, 1);
    weft_token_t *tok = NULL;
    if (weft_token_create(NULL, &tok) != WEFT_OK) {
        fail("A", trial, "weft_token_create");
        return false;
    }
    for (int i = 0; i < TASKS; i++) {
        struct slot *s = &ta.slots[i];
        atomic_store(&s->ran, 0);
        atomic_store(&s->released, 0);
        atomic_store(&s->ret_cancel, 0);
        s->work = (uint32_t)(rng_next(&rng) % 512);
        s->polls = (uint32_t)(rng_next(&rng) & 1);
    }
    atomic_store(&ta.cancel_returned, 0);
    for (int w = 0; w < NWORKERS; w++) {
        atomic_store(&ta.late[w], 0);
    }
    atomic_store(&ta.released_total, 0);

    /* Hand the trial to the canceller; it cancels after a random delay. */
    uint64_t d = rng_next(&rng);
    uint64_t delay = (d & 15) == 0 ? 0 : d % max_delay;
    atomic_store_explicit(&cx.tok, tok, memory_order_relaxed);
    atomic_store_explicit(&cx.delay, (unsigned int)delay, memory_order_relaxed);
    atomic_store_explicit(&cx.trial, (unsigned int)trial, memory_order_release);

    struct root_a r = {.tok = tok, .rng = rng_for((uint64_t)trial, 2)};
    for (int i = ROOT_TASKS; i < TASKS; i++) {
        weft_spawn_opts_t o = {
            .release = slot_release, .token = tok, .name = "ext"};
        if (weft_spawn_ex(ta.ex, &o, body_a, &ta.slots[i], NULL) != WEFT_OK) {
            r.spawn_failures++;
        }
    }
    weft_status_t st = weft_executor_run(ta.ex, root_body_a, &r, NULL);
    while (atomic_load_explicit(&cx.done, memory_order_acquire) !=
           (unsigned int)trial) {
        sched_yield();
    }
    /* Detached tasks: wait until every release hook ran. */
    while (atomic_load_explicit(&ta.released_total, memory_order_acquire) <
           TASKS) {
        sched_yield();
    }

    bool ok = true;
    char msg[256];
    if (st != WEFT_OK || r.spawn_failures != 0) {
        snprintf(msg, sizeof msg, "root %s, %u spawns refused",
                 weft_status_name(st), r.spawn_failures);
        fail("A", trial, msg);
        ok = false;
    }
    if (atomic_load(&cx.cancel_st) != WEFT_OK) {
        fail("A", trial, "weft_token_cancel did not return WEFT_OK");
        ok = false;
    }
    unsigned int total_late = 0;
    unsigned int max_w = 0;
    for (int w = 0; w < NWORKERS; w++) {
        unsigned int l = atomic_load(&ta.late[w]);
        total_late += l;
        if (l > max_w) {
            max_w = l;
        }
    }
    if (atomic_load(&ta.late_bad_index) != 0) {
        fail("A", trial, "a body ran off the executor's workers");
        ok = false;
    }
    if (max_w > max_late_per_worker) {
        max_late_per_worker = max_w;
    }
    hist_total_late[total_late < 3 ? total_late : 3]++;
    hist_max_worker[max_w < 2 ? max_w : 2]++;
    if (max_w > 1) {
        snprintf(msg, sizeof msg,
                 "%u bodies started on one worker after weft_token_cancel "
                 "returned (late starts per worker: %u, %u)",
                 max_w, atomic_load(&ta.late[0]), atomic_load(&ta.late[1]));
        fail("A", trial, msg);
        ok = false;
    }
    unsigned int ran_total = 0;
    for (int i = 0; i < TASKS; i++) {
        struct slot *s = &ta.slots[i];
        unsigned int ran = atomic_load(&s->ran);
        unsigned int rel = atomic_load(&s->released);
        ran_total += ran;
        if (ran > 1 || rel != 1) {
            snprintf(msg, sizeof msg,
                     "task %d: body ran %u times, release hook %u times", i,
                     ran, rel);
            fail("B", trial, msg);
            ok = false;
        }
    }
    hist_ran[ran_total == 0 ? 0 : ran_total == TASKS ? 2 : 1]++;
    if (r.bad_outcome != 0 || r.bad_reason != 0) {
        fail("B", trial, r.detail);
        ok = false;
    }
    weft_token_release(tok);
    return ok;
}

/* ---- part C ------------------------------------------------------------- */

enum {
    MODE_RELEASE = 0,
    MODE_CANCEL_FIRST = 1
};

static struct {
    weft_future_t *t; /* the awaited task */
    atomic_uint t_started;
    atomic_uint t_go;
    int t_status;                       /* what T returns when let go */
    weft_token_t *root;                 /* trial root token */
    weft_token_t *tok[WAITERS + 1];     /* [WAITERS]: the worker waiter's */
    atomic_uint cancelled[WAITERS + 1]; /* store-rel once cancelled */
    uint64_t cancel_ns[WAITERS + 1];    /* when (hang guard only) */
    atomic_uint returned[WAITERS + 1];
    weft_status_t result[WAITERS + 1];
    atomic_uint start; /* threads spin until set */
    uint64_t delay[WAITERS + 1];
    int root_children; /* tokens 0..root_children-1 are children */
} tc;

static weft_status_t
body_t(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)arg;
    atomic_store_explicit(&tc.t_started, 1, memory_order_release);
    while (atomic_load_explicit(&tc.t_go, memory_order_acquire) == 0) {
        sched_yield();
    }
    result->u64 = 3;
    return (weft_status_t)tc.t_status;
}

static void *
waiter_c(void *arg)
{
    int i = (int)(intptr_t)arg;
    while (atomic_load_explicit(&tc.start, memory_order_acquire) == 0) {
        sched_yield();
    }
    tc.result[i] = weft_future_wait_for(tc.t, tc.tok[i], 0);
    atomic_store_explicit(&tc.returned[i], 1, memory_order_release);
    return NULL;
}

static weft_status_t
body_worker_waiter(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)arg;
    (void)result;
    tc.result[WAITERS] = weft_future_wait_for(tc.t, tc.tok[WAITERS], 0);
    atomic_store_explicit(&tc.returned[WAITERS], 1, memory_order_release);
    return WEFT_OK;
}

/* Mark token i (and, for the root, its children) cancelled for the hang
 * guard, after the cancel call returned. */
static void
mark_cancelled(int i)
{
    if (atomic_load_explicit(&tc.cancelled[i], memory_order_relaxed) == 0) {
        tc.cancel_ns[i] = mono_ns();
        atomic_store_explicit(&tc.cancelled[i], 1, memory_order_release);
    }
}

struct canceller_c {
    uint64_t rng;
    int first, last; /* token range it cancels */
    int cancel_root; /* also cancel the root first */
    int at_park;     /* wait until a waiter parks on T first */
    pthread_mutex_t *mark_lock;
};

static bool all_returned(void);

/* White-box: a waiter has announced itself on T's state word (it is
 * parking or parked), or there is nothing left to wait for. */
static atomic_long park_aligned; /* cancels that followed a parked waiter */

static void
wait_for_a_parked_waiter(void)
{
    const struct weft_future *f = (const struct weft_future *)tc.t;
    for (;;) {
        uint32_t s = __atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
        if ((s & WEFT__F_WAITER) != 0) {
            atomic_fetch_add(&park_aligned, 1);
            return;
        }
        if (weft__future_state_done(s) || all_returned()) {
            return;
        }
        weft__cpu_relax();
    }
}

static void *
canceller_c(void *arg)
{
    struct canceller_c *c = arg;
    while (atomic_load_explicit(&tc.start, memory_order_acquire) == 0) {
        sched_yield();
    }
    if (c->at_park) {
        wait_for_a_parked_waiter();
    }
    if (c->cancel_root) {
        spin(rng_next(&c->rng) % 4096);
        (void)weft_token_cancel(tc.root, NULL);
        pthread_mutex_lock(c->mark_lock);
        for (int i = 0; i < tc.root_children; i++) {
            mark_cancelled(i);
        }
        pthread_mutex_unlock(c->mark_lock);
    }
    for (int i = c->first; i <= c->last; i++) {
        if (!c->at_park) {
            spin(rng_next(&c->rng) % 4096);
        }
        (void)weft_token_cancel(tc.tok[i], NULL);
        pthread_mutex_lock(c->mark_lock);
        mark_cancelled(i);
        pthread_mutex_unlock(c->mark_lock);
    }
    return NULL;
}

static bool
all_returned(void)
{
    for (int i = 0; i <= WAITERS; i++) {
        if (atomic_load_explicit(&tc.returned[i], memory_order_acquire) == 0) {
            return false;
        }
    }
    return true;
}

static long hangs;
static long c_interrupted;
static long c_task_status;

static bool
trial_c(long trial, weft_executor_t *ex)
{
    uint64_t rng = rng_for((uint64_t)trial, 3);
    int mode = (int)(rng_next(&rng) % 2);
    static const int statuses[3] = {WEFT_OK, WEFT_EUSER + 1, WEFT_ECANCELED};
    tc.t_status = statuses[rng_next(&rng) % 3];
    atomic_store(&tc.t_started, 0);
    atomic_store(&tc.t_go, 0);
    atomic_store(&tc.start, 0);
    tc.root_children = (int)(rng_next(&rng) % (WAITERS + 2));
    char msg[256];
    bool ok = true;

    if (weft_token_create(NULL, &tc.root) != WEFT_OK) {
        fail("C", trial, "weft_token_create");
        return false;
    }
    for (int i = 0; i <= WAITERS; i++) {
        weft_token_t *parent = i < tc.root_children ? tc.root : NULL;
        if (weft_token_create(parent, &tc.tok[i]) != WEFT_OK) {
            fail("C", trial, "weft_token_create");
            return false;
        }
        atomic_store(&tc.cancelled[i], 0);
        atomic_store(&tc.returned[i], 0);
        tc.result[i] = WEFT_EAGAIN;
    }

    /* T runs on one worker before anyone waits for it. */
    tc.t = NULL;
    if (weft_spawn(ex, body_t, NULL, &tc.t) != WEFT_OK) {
        fail("C", trial, "spawn T");
        return false;
    }
    while (atomic_load_explicit(&tc.t_started, memory_order_acquire) == 0) {
        sched_yield();
    }
    weft_future_t *ww = NULL;
    if (weft_spawn(ex, body_worker_waiter, NULL, &ww) != WEFT_OK) {
        fail("C", trial, "spawn worker waiter");
        return false;
    }

    pthread_t wt[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
        if (pthread_create(&wt[i], NULL, waiter_c, (void *)(intptr_t)i) != 0) {
            fail("C", trial, "pthread_create");
            exit(2);
        }
    }
    pthread_mutex_t mark_lock = PTHREAD_MUTEX_INITIALIZER;
    /* Two cancellers over overlapping ranges: some tokens are cancelled
     * twice, concurrently. */
    struct canceller_c c0 = {.rng = rng_for((uint64_t)trial, 4),
                             .first = 0,
                             .last = WAITERS / 2 + 1,
                             .cancel_root = (int)(rng_next(&rng) & 1),
                             .at_park = (int)(rng_next(&rng) & 1),
                             .mark_lock = &mark_lock};
    struct canceller_c c1 = {.rng = rng_for((uint64_t)trial, 5),
                             .first = WAITERS / 2,
                             .last = WAITERS,
                             .mark_lock = &mark_lock};
    pthread_t ct[2];
    if (pthread_create(&ct[0], NULL, canceller_c, &c0) != 0 ||
        pthread_create(&ct[1], NULL, canceller_c, &c1) != 0) {
        fail("C", trial, "pthread_create");
        exit(2);
    }
    atomic_store_explicit(&tc.start, 1, memory_order_release);

    bool released = false;
    uint64_t release_at = rng_next(&rng) % 8192;
    uint64_t spins = 0;
    bool hung = false;
    while (!all_returned()) {
        if (mode == MODE_RELEASE && !released && spins++ >= release_at) {
            atomic_store_explicit(&tc.t_go, 1, memory_order_release);
            released = true;
        }
        if (!released) {
            /* Hang guard: a wait that outlives its token's cancel. */
            pthread_mutex_lock(&mark_lock);
            /* Read under the lock: no cancel_ns is later than now. */
            uint64_t now = mono_ns();
            for (int i = 0; i <= WAITERS; i++) {
                if (atomic_load_explicit(&tc.cancelled[i],
                                         memory_order_acquire) != 0 &&
                    atomic_load_explicit(&tc.returned[i],
                                         memory_order_acquire) == 0 &&
                    now - tc.cancel_ns[i] >
                        (uint64_t)HANG_GUARD_S * 1000000000ull) {
                    snprintf(msg, sizeof msg,
                             "weft_future_wait_for (%s waiter %d) still "
                             "blocked %d s after its token was cancelled "
                             "(lost wake-up); letting the task end",
                             i == WAITERS ? "worker" : "outside", i,
                             HANG_GUARD_S);
                    fail("C", trial, msg);
                    hung = true;
                }
            }
            pthread_mutex_unlock(&mark_lock);
            if (hung) {
                hangs++;
                ok = false;
                atomic_store_explicit(&tc.t_go, 1, memory_order_release);
                released = true;
            }
        }
        sched_yield();
    }
    for (int i = 0; i < WAITERS; i++) {
        pthread_join(wt[i], NULL);
    }
    pthread_join(ct[0], NULL);
    pthread_join(ct[1], NULL);
    atomic_store_explicit(&tc.t_go, 1, memory_order_release);
    weft_status_t tst = weft_future_wait(tc.t);
    if (tst != (weft_status_t)tc.t_status) {
        snprintf(msg, sizeof msg, "T ended with %s, returned %s",
                 weft_status_name(tst), weft_status_name(tc.t_status));
        fail("C", trial, msg);
        ok = false;
    }
    (void)weft_future_wait(ww);
    for (int i = 0; i <= WAITERS; i++) {
        weft_status_t r = tc.result[i];
        bool good;
        if (hung) {
            good = true; /* already reported */
        } else if (mode == MODE_CANCEL_FIRST) {
            good = r == WEFT_EINTERRUPTED;
        } else {
            good = r == WEFT_EINTERRUPTED || r == tst;
        }
        if (r == WEFT_EINTERRUPTED) {
            c_interrupted++;
        } else {
            c_task_status++;
        }
        if (!good) {
            snprintf(msg, sizeof msg,
                     "%s trial: waiter %d got %s (task status %s)",
                     mode == MODE_CANCEL_FIRST ? "cancel-first" : "release", i,
                     weft_status_name(r), weft_status_name(tst));
            fail("C", trial, msg);
            ok = false;
        }
    }
    (void)weft_future_release(ww);
    (void)weft_future_release(tc.t);
    for (int i = 0; i <= WAITERS; i++) {
        weft_token_release(tc.tok[i]);
    }
    weft_token_release(tc.root);
    pthread_mutex_destroy(&mark_lock);
    return ok;
}

/* ---- main --------------------------------------------------------------- */

static long
env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    char *end = NULL;
    long n = strtol(v, &end, 10);
    return (end != v && n > 0) ? n : dflt;
}

int
main(void)
{
    const char *sv = getenv("WEFT_SEED");
    if (sv != NULL && *sv != '\0') {
        seed = strtoull(sv, NULL, 0);
    } else {
        seed = mono_ns() ^ ((uint64_t)time(NULL) << 20);
    }
    long trials = env_long("WEFT_STRESS_TRIALS", DEFAULT_TRIALS);
    long trials_c = trials / 5 > 0 ? trials / 5 : 1;
    printf("stress_cancellation: seed %llu, %ld trials (A+B), %ld (C), "
           "%d workers, %d tasks per trial\n",
           (unsigned long long)seed, trials, trials_c, NWORKERS, TASKS);
    fflush(stdout);

    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = NWORKERS;
    if (weft_executor_create(&cfg, &ta.ex) != WEFT_OK) {
        fprintf(stderr, "weft_executor_create failed\n");
        return 2;
    }

    /* Calibrate the cancel delay to span a trial: spins per trial time. */
    uint64_t max_delay;
    {
        uint64_t t0 = mono_ns();
        spin(100000);
        uint64_t per_spin_ps = (mono_ns() - t0) * 1000 / 100000 + 1;
        /* A trial runs for some tens of microseconds; aim the cancel at
         * up to ~150 us after the hand-off. */
        max_delay = 150000000ull / per_spin_ps + 1;
    }

    pthread_t canceller;
    if (pthread_create(&canceller, NULL, canceller_a, NULL) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 2;
    }
    long a_failed = 0;
    for (long t = 1; t <= trials; t++) {
        if (trial_a(t, max_delay)) {
            passed++;
        } else {
            failed++;
            a_failed++;
        }
    }
    atomic_store_explicit(&cx.quit, 1, memory_order_release);
    pthread_join(canceller, NULL);

    printf("A: late starts per trial (all workers): 0: %ld, 1: %ld, 2: %ld, "
           "3+: %ld\n",
           hist_total_late[0], hist_total_late[1], hist_total_late[2],
           hist_total_late[3]);
    printf("A: largest per-worker late starts per trial: 0: %ld, 1: %ld, "
           "2+: %ld; max over all trials: %u (bound: 1)\n",
           hist_max_worker[0], hist_max_worker[1], hist_max_worker[2],
           max_late_per_worker);
    printf("A: cancel point: trials that ran no body: %ld, some: %ld, all "
           "%d: %ld\n",
           hist_ran[0], hist_ran[1], TASKS, hist_ran[2]);
    printf("A+B: %ld of %ld trials failed\n", a_failed, trials);
    fflush(stdout);

    long c_failed = 0;
    for (long t = 1; t <= trials_c; t++) {
        if (trial_c(t, ta.ex)) {
            passed++;
        } else {
            failed++;
            c_failed++;
        }
    }
    printf("C: waits interrupted: %ld, returned the task's status: %ld, "
           "hangs: %ld; cancels aimed at a parking waiter: %ld; %ld of %ld "
           "trials failed\n",
           c_interrupted, c_task_status, hangs, atomic_load(&park_aligned),
           c_failed, trials_c);

    if (weft_executor_destroy(ta.ex) != WEFT_OK) {
        fprintf(stderr, "weft_executor_destroy failed\n");
        failed++;
    }
    if (weft__alloc_live() != 0) {
        fprintf(stderr, "FAIL: %lld blocks still allocated (seed %llu)\n",
                (long long)weft__alloc_live(), (unsigned long long)seed);
        failed++;
    }
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
