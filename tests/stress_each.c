/*
 * stress_each.c - random bulk gathers (weft_gather_each,
 * weft_gather_each_settled) for ThreadSanitizer and the other sanitizers.
 *
 * Each round makes one outer bulk gather (fail-fast or settled, at random)
 * over up to 96 indices. An index succeeds, fails (weft_task_fail or a
 * bare code), cancels itself, spins for a while polling
 * weft_task_is_cancelled(self), asks for its task token, or runs a nested
 * bulk gather (under weft_task_token(self)) of up to 40 indices of its
 * own, which it waits for and checks. Some rounds cancel the caller's
 * token or weft_future_cancel() the combined future from the main thread
 * while the indices run. Checks, for every gather at every level: each
 * index ran at most once; its ledger entry's `started` says whether it
 * ran; a started entry's outcome is what its body returned (a
 * cancellation by the gather reads cancelled by the combinator); an
 * unstarted one is CANCELLED; a settled gather that nobody cancelled ran
 * everything and counts the successes; a fail-fast gather ends with the
 * failure of its decider, first in its error group.
 *
 * Then a shutdown round per executor size: a fresh executor is destroyed
 * in cancel mode while bulk gathers (nested ones too) are in flight, and
 * every index must still end exactly once.
 *
 * Executors of 1, 2 and 4 workers. Seed: WEFT_SEED if set, else the clock;
 * printed first. Rounds per executor: WEFT_STRESS_ROUNDS if set, else 300
 * (200 under sanitizers; a few seconds either way on 2 cores). The
 * last line is "N passed, N failed".
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>
#include <weft/combine.h>

#include "primitives/alloc.h"
#include "stress_common.h"

#ifdef STRESS_SANITIZED
#define DEFAULT_ROUNDS 200
#else
#define DEFAULT_ROUNDS 300
#endif

#define OUTER_MAX 96
#define INNER_MAX 40

enum act {
    A_OK,
    A_FAIL,
    A_CODE,
    A_CANCEL,
    A_SPIN,
    A_TOKEN,
    A_NEST,
    A_N
};

/* One gather's plan and what its bodies did. */
struct level {
    size_t n;
    bool settled;
    uint8_t act[OUTER_MAX];
    uint32_t spin[OUTER_MAX];
    atomic_uint calls[OUTER_MAX];
    atomic_int ret[OUTER_MAX]; /* status the body returned */
    uint64_t rs;               /* seed for nested plans */
};

static uint64_t seed;
static atomic_ulong failures;
static atomic_ulong c_indices, c_ran, c_nested;

static uint64_t
rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define FAIL(...)                                                              \
    do {                                                                       \
        fprintf(stderr, "FAIL (seed %llu) %s:%d: ", (unsigned long long)seed,  \
                __FILE__, __LINE__);                                           \
        fprintf(stderr, __VA_ARGS__);                                          \
        fputc('\n', stderr);                                                   \
        atomic_fetch_add(&failures, 1);                                        \
    } while (0)

static void
plan(struct level *lv, size_t max, uint64_t *s, int depth)
{
    memset(lv, 0, sizeof(*lv));
    lv->n = (size_t)(rnd(s) % (max + 1));
    lv->settled = rnd(s) % 2;
    lv->rs = rnd(s);
    for (size_t i = 0; i < lv->n; i++) {
        uint64_t r = rnd(s) % 100;
        enum act a = r < 55   ? A_OK
                     : r < 62 ? A_FAIL
                     : r < 66 ? A_CODE
                     : r < 70 ? A_CANCEL
                     : r < 80 ? A_SPIN
                     : r < 85 ? A_TOKEN
                              : (depth == 0 ? A_NEST : A_OK);
        lv->act[i] = (uint8_t)a;
        lv->spin[i] = (uint32_t)(rnd(s) % 2000);
        atomic_store(&lv->ret[i], -1);
    }
}

static weft_status_t body(weft_task_t *self, void *arg, size_t i,
                          weft_value_t *value);

static weft_status_t
make(weft_executor_t *ex, struct level *lv, weft_token_t *tok,
     weft_future_t **out)
{
    weft_combine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.token = tok;
    o.name = lv->settled ? "st" : "ff";
    return lv->settled ? weft_gather_each_settled(ex, lv->n, body, lv, &o, out)
                       : weft_gather_each(ex, lv->n, body, lv, &o, out);
}

/*
 * Check gather g over lv once it has ended. caller_cancel: the caller may
 * have cancelled it (token or weft_future_cancel); shutdown: the executor
 * may have cancelled pieces.
 */
static void
check(weft_future_t *g, struct level *lv, bool caller_cancel, bool shutdown)
{
    if (!weft_future_is_done(g)) {
        FAIL("checked before the end");
        return;
    }
    if (weft_combine_size(g) != lv->n) {
        FAIL("size %zu, want %zu", weft_combine_size(g), lv->n);
    }
    size_t ok = 0, unstarted = 0;
    for (size_t i = 0; i < lv->n; i++) {
        atomic_fetch_add(&c_indices, 1);
        unsigned int calls = atomic_load(&lv->calls[i]);
        weft_child_result_t r;
        if (weft_combine_child(g, i, &r) != WEFT_OK) {
            FAIL("combine_child %zu", i);
            continue;
        }
        if (calls > 1) {
            FAIL("index %zu ran %u times", i, calls);
        }
        if (r.started != (calls == 1)) {
            FAIL("index %zu: started %d, calls %u", i, r.started, calls);
        }
        if (r.future != NULL) {
            FAIL("index %zu: a future", i);
        }
        if (calls == 0) {
            unstarted++;
            if (r.outcome != WEFT_OUTCOME_CANCELLED) {
                FAIL("index %zu never ran but reads %d", i, r.outcome);
            }
            continue;
        }
        atomic_fetch_add(&c_ran, 1);
        int ret = atomic_load(&lv->ret[i]);
        weft_outcome_t want = ret == WEFT_OK          ? WEFT_OUTCOME_SUCCEEDED
                              : ret == WEFT_ECANCELED ? WEFT_OUTCOME_CANCELLED
                                                      : WEFT_OUTCOME_FAILED;
        if (r.outcome != want) {
            FAIL("index %zu returned %d but reads %d", i, ret, r.outcome);
        }
        if (want == WEFT_OUTCOME_SUCCEEDED) {
            ok++;
            if (lv->act[i] != A_NEST && r.value.u64 != 7 * i + 1) {
                FAIL("index %zu value %llu", i,
                     (unsigned long long)r.value.u64);
            }
        } else if (r.error == NULL && want == WEFT_OUTCOME_FAILED) {
            FAIL("index %zu failed without an error", i);
        }
        if (want == WEFT_OUTCOME_FAILED && r.cancelled_by_combinator) {
            FAIL("index %zu failed but reads cancelled by us", i);
        }
    }
    weft_outcome_t o = weft_future_outcome(g);
    if (lv->settled && !caller_cancel && !shutdown) {
        weft_value_t v;
        if (o != WEFT_OUTCOME_SUCCEEDED || unstarted != 0) {
            FAIL("settled: outcome %d, %zu unstarted", o, unstarted);
        } else if (weft_future_value(g, &v) != WEFT_OK || v.u64 != ok) {
            FAIL("settled: value %llu, want %zu", (unsigned long long)v.u64,
                 ok);
        }
    }
    if (o == WEFT_OUTCOME_FAILED) {
        size_t d = weft_combine_decider(g);
        if (lv->settled || d >= lv->n) {
            FAIL("failed with decider %zu", d);
        } else {
            weft_child_result_t r;
            (void)weft_combine_child(g, d, &r);
            if (r.outcome == WEFT_OUTCOME_SUCCEEDED ||
                r.cancelled_by_combinator) {
                FAIL("decider %zu reads %d", d, r.outcome);
            }
            weft_errgroup_t *eg = NULL;
            weft_status_t st = weft_combine_errors(g, &eg);
            if (st == WEFT_OK) {
                weft_errgroup_entry_t ent;
                if (weft_errgroup_entry(eg, 0, &ent) != WEFT_OK ||
                    ent.error != weft_future_error(g)) {
                    FAIL("the trigger is not first in the group");
                }
                weft_errgroup_release(eg);
            } else if (st != WEFT_ENOMEM) {
                FAIL("combine_errors %d", st);
            }
        }
    } else if (o == WEFT_OUTCOME_SUCCEEDED && !lv->settled && ok != lv->n) {
        FAIL("gather succeeded with %zu of %zu", ok, lv->n);
    } else if (o == WEFT_OUTCOME_CANCELLED && !caller_cancel) {
        FAIL("cancelled without a caller cancellation");
    }
}

static weft_status_t
body(weft_task_t *self, void *arg, size_t i, weft_value_t *value)
{
    struct level *lv = arg;
    atomic_fetch_add(&lv->calls[i], 1);
    weft_status_t st = WEFT_OK;
    switch (lv->act[i]) {
    case A_FAIL:
        st = weft_task_fail(self, WEFT_EUSER + 1, "index %zu", i);
        break;
    case A_CODE:
        st = WEFT_EUSER + 2;
        break;
    case A_CANCEL:
        st = WEFT_ECANCELED;
        break;
    case A_SPIN:
        for (uint32_t k = 0; k < lv->spin[i]; k++) {
            if (weft_task_is_cancelled(self)) {
                st = WEFT_ECANCELED;
                break;
            }
            sched_yield();
        }
        break;
    case A_TOKEN:
        /* Installs the piece's task token: racing frames of one piece. */
        if (weft_task_token(self) == NULL) {
            FAIL("no task token");
        }
        break;
    case A_NEST: {
        atomic_fetch_add(&c_nested, 1);
        struct level *in = malloc(sizeof(*in));
        if (in == NULL) {
            st = WEFT_ENOMEM;
            break;
        }
        uint64_t s = lv->rs ^ (i * 0x2545F4914F6CDD1Dull);
        plan(in, INNER_MAX, &s, 1);
        weft_future_t *g = NULL;
        st = make(weft_task_executor(self), in, weft_task_token(self), &g);
        if (st == WEFT_OK) {
            (void)weft_future_wait(g);
            check(g, in, true, true);
            weft_outcome_t o = weft_future_outcome(g);
            if (o == WEFT_OUTCOME_FAILED) {
                st = weft_task_fail_with(self, weft_future_error(g));
            } else if (o == WEFT_OUTCOME_CANCELLED) {
                st = WEFT_ECANCELED;
            } else {
                value->u64 = weft_future_status(g) == WEFT_OK ? 1 : 0;
            }
            weft_future_release(g);
        }
        free(in);
        atomic_store(&lv->ret[i], (int)st);
        return st;
    }
    default:
        break;
    }
    if (st == WEFT_OK) {
        value->u64 = 7 * i + 1;
    }
    atomic_store(&lv->ret[i], (int)st);
    return st;
}

static struct level round_lv;

static void
run_round(weft_executor_t *ex, uint64_t rs)
{
    struct level *lv = &round_lv;
    plan(lv, OUTER_MAX, &rs, 0);
    uint64_t how = rnd(&rs) % 16;
    weft_token_t *tok = NULL;
    if (how < 3 && weft_token_create(NULL, &tok) != WEFT_OK) {
        FAIL("token");
        return;
    }
    weft_future_t *g = NULL;
    if (make(ex, lv, tok, &g) != WEFT_OK) {
        FAIL("make");
        return;
    }
    bool caller = false;
    if (how < 3 || how == 3) {
        uint32_t spins = (uint32_t)(rnd(&rs) % 200);
        for (uint32_t k = 0; k < spins && !weft_future_is_done(g); k++) {
            sched_yield();
        }
        caller = true;
        if (how == 3) {
            (void)weft_future_cancel(g, NULL);
        } else {
            (void)weft_token_cancel(tok, NULL);
        }
    }
    (void)weft_future_wait(g);
    check(g, lv, caller, false);
    weft_future_release(g);
    if (tok != NULL) {
        weft_token_release(tok);
    }
}

/* Shutdown in cancel mode while bulk gathers are in flight. */
#define SHUT_G 6

static void
shutdown_round(unsigned int workers, uint64_t rs)
{
    static struct level lvs[SHUT_G];
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = workers;
    weft_executor_t *ex = NULL;
    if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
        FAIL("create");
        return;
    }
    weft_future_t *g[SHUT_G] = {0};
    for (int k = 0; k < SHUT_G; k++) {
        plan(&lvs[k], OUTER_MAX, &rs, 0);
        if (make(ex, &lvs[k], NULL, &g[k]) != WEFT_OK) {
            FAIL("make");
        }
    }
    uint32_t spins = (uint32_t)(rnd(&rs) % 500);
    for (uint32_t k = 0; k < spins; k++) {
        sched_yield();
    }
    (void)weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL);
    for (int k = 0; k < SHUT_G; k++) {
        if (g[k] == NULL) {
            continue;
        }
        (void)weft_future_wait(g[k]);
        check(g[k], &lvs[k], false, true);
        weft_future_release(g[k]);
    }
    weft_status_t ds = weft_executor_destroy(ex);
    if (ds != WEFT_OK) {
        FAIL("destroy after shutdown: %s", weft_status_name(ds));
    }
}

int
main(void)
{
    seed = stress_seed();
    long rounds = stress_rounds(DEFAULT_ROUNDS);
    printf("stress_each: seed %llu, %ld rounds per executor\n",
           (unsigned long long)seed, rounds);
    fflush(stdout);
    int64_t live0 = weft__alloc_live();
    long passed = 0, failed = 0;
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        weft_executor_config_t cfg;
        weft_executor_config_init(&cfg);
        cfg.num_workers = workers[w];
        weft_executor_t *ex = NULL;
        if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
            fprintf(stderr, "setup failed\n");
            return 1;
        }
        for (long r = 0; r < rounds; r++) {
            unsigned long before = atomic_load(&failures);
            uint64_t rs = stress_round_seed(seed, r, w);
            run_round(ex, rs);
            if (atomic_load(&failures) == before) {
                passed++;
            } else {
                failed++;
            }
        }
        if (weft_executor_destroy(ex) != WEFT_OK) {
            fprintf(stderr, "FAIL: destroy (a future was leaked)\n");
            failed++;
        }
        for (int k = 0; k < 8; k++) {
            unsigned long before = atomic_load(&failures);
            shutdown_round(workers[w], seed ^ (0xABCDull + (uint64_t)k) ^
                                           ((uint64_t)w << 48));
            if (atomic_load(&failures) == before) {
                passed++;
            } else {
                failed++;
            }
        }
        failed += stress_leak_check(live0, NULL, seed);
        printf("  %u workers done: %ld passed, %ld failed so far\n", workers[w],
               passed, failed);
        fflush(stdout);
    }
    printf("indices checked %lu (ran %lu), nested gathers %lu\n",
           atomic_load(&c_indices), atomic_load(&c_ran),
           atomic_load(&c_nested));
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
