/*
 * stress_parker.c - randomized lost-wake-up hunt for the parker.
 *
 * A plain C program (no Criterion, so that it runs under ThreadSanitizer).
 * Rounds of a generation counter: in round i a waker makes the condition
 * "gen >= i" true and calls weft__parker_wake(); the sleeper(s) wait for
 * it with the prepare / re-check / park-or-cancel protocol of parker.h,
 * then acknowledge, and the next round starts. Seeded random
 * sched_yield() calls and short spins sit in both race windows: between
 * prepare and the re-check on the sleeper side, and between making the
 * condition true and the wake on the waker side.
 *
 *  - Phase 1: one sleeper, one waker. When each has a CPU, the waker
 *    spins for the sleeper's ack and then for a random 0-511 pauses, so
 *    that its store and wake land inside the sleeper's prepare / re-check
 *    (this is the phase that catches a wake without its store->load
 *    barrier: see the mutant record in the commit that added this file).
 *  - Phase 2: one sleeper, W wakers taking turns (round i belongs to
 *    waker i % W).
 *  - Phase 3: S sleepers, one waker whose single wake must release all.
 *
 * A lost wake-up leaves a sleeper parked with the condition true. Every
 * park carries a long deadline used ONLY as a watchdog: a park that times
 * out while the condition is already true counts as a stuck sleeper (a
 * failure). Nothing else depends on time.
 *
 * Environment:
 *   WEFT_SEED            seed (default: from the clock); printed
 *   WEFT_PARK_ROUNDS     phase 1 rounds; default 200000, 100000 under
 *                        TSan, 150000 under ASan (phase 2 runs half as
 *                        many, phase 3 a third)
 *   WEFT_PARK_WAKERS     wakers in phase 2 (default 2)
 *   WEFT_PARK_SLEEPERS   sleepers in phase 3 (default 2)
 *   WEFT_PARK_GUARD_MS   watchdog deadline per park (default 5000)
 *
 * Prints one closing line "N passed, N failed" (one per sub-check) and
 * exits non-zero on any failure.
 */
#include "primitives/parker.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define STRESS_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define STRESS_ASAN 1
#endif
#endif

#if defined(STRESS_TSAN)
#define DEFAULT_ROUNDS 100000ULL
#elif defined(STRESS_ASAN)
#define DEFAULT_ROUNDS 150000ULL
#else
#define DEFAULT_ROUNDS 200000ULL
#endif

#define MAX_THREADS 32
/* A run with this many stuck sleepers is already a failure; stop early
 * instead of paying the watchdog for each further one. */
#define MAX_STUCK 3

struct shared {
    struct weft__parker p;
    uint32_t gen;              /* wakers store-release; sleepers load */
    uint32_t stuck;            /* faa by sleepers: watchdog firings */
    uint32_t abort_run;        /* store-release 1 when MAX_STUCK hit */
    uint32_t ack[MAX_THREADS]; /* sleeper k store-releases its round */
    uint64_t rounds;           /* immutable */
    uint64_t guard_ns;         /* immutable */
    unsigned int nsleepers;    /* immutable */
    unsigned int nwakers;      /* immutable */
    unsigned int spin_limit;   /* immutable: ack spins before a yield */
};

struct worker {
    pthread_t th;
    struct shared *sh;
    unsigned int index;
    uint64_t rng;
    /* Thread-local statistics, read after join. */
    uint64_t parks, woken, timeouts, cancels, early_returns, wakes;
};

static uint64_t
rng_next(uint64_t *s)
{
    /* splitmix64: any seed is fine. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    return strtoull(v, NULL, 0);
}

/* Widen a race window now and then: a yield (1 in 4) or a short spin. */
static void
maybe_yield(uint64_t *rng)
{
    uint64_t x = rng_next(rng);
    if ((x & 3) == 0) {
        sched_yield();
    } else if ((x & 12) == 0) {
        for (uint64_t i = (x >> 4) & 63; i > 0; i--) {
            weft__cpu_relax();
        }
    }
}

/*
 * Three times in four, spin 0-511 pauses while reading *poll; returns
 * whether it spun. Reading keeps *poll's cache line shared in this CPU's
 * cache, which is what lets a load that lacks its store->load barrier
 * return a stale value quickly while the store before it still waits for
 * its own cache line (this widens the race window from nanoseconds to a
 * cache-line transfer).
 */
static int
spin_random(uint64_t *rng, const uint32_t *poll)
{
    uint64_t x = rng_next(rng);
    if ((x & 3) == 0) {
        return 0;
    }
    for (uint64_t k = (x >> 8) & 511; k > 0; k--) {
        /* Relaxed: the value is not used; only the cached line matters. */
        (void)weft__load_relaxed_u32(poll);
        weft__cpu_relax();
    }
    return 1;
}

static struct timespec
deadline_after(uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t total = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(total / 1000000000ULL);
    ts.tv_nsec = (long)(total % 1000000000ULL);
    return ts;
}

static int
run_aborted(struct shared *sh)
{
    /* Pairs with: weft__store_rel_u32(&sh->abort_run) in sleeper_main(). */
    return weft__load_acq_u32(&sh->abort_run) != 0;
}

static void *
sleeper_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;

    for (uint32_t i = 1; i <= sh->rounds && !run_aborted(sh); i++) {
        /* Pairs with: weft__store_rel_u32(&sh->gen) in waker_main(). */
        while (weft__load_acq_u32(&sh->gen) < i && !run_aborted(sh)) {
            /*
             * A random 0-511 pauses before registering, so that the
             * waker's own random delay puts its store on either side of
             * the prepare as often as inside it.
             */
            spin_random(&w->rng, &sh->gen);
            uint64_t t = weft__parker_prepare(&sh->p);
            maybe_yield(&w->rng);
            /* The re-check. Pairs with: the store of gen in the waker. */
            if (weft__load_acq_u32(&sh->gen) >= i) {
                weft__parker_cancel(&sh->p);
                w->cancels++;
                break;
            }
            maybe_yield(&w->rng);
            struct timespec guard = deadline_after(sh->guard_ns);
            w->parks++;
            if (weft__parker_park(&sh->p, t, &guard)) {
                w->woken++;
                /* Pairs with: the store of gen in the waker. */
                if (weft__load_acq_u32(&sh->gen) < i) {
                    /* A late wake of an earlier round: allowed. */
                    w->early_returns++;
                }
                continue;
            }
            w->timeouts++;
            /* Pairs with: the store of gen in the waker. */
            if (weft__load_acq_u32(&sh->gen) >= i) {
                fprintf(stderr,
                        "stress_parker: sleeper %u stuck in round %u "
                        "with the condition true\n",
                        w->index, i);
                if (weft__faa_u32(&sh->stuck, 1) + 1 >= MAX_STUCK) {
                    /* Pairs with: the load in run_aborted(). */
                    weft__store_rel_u32(&sh->abort_run, 1);
                }
            }
        }
        /* Pairs with: the load of ack[] in waker_main(). */
        weft__store_rel_u32(&sh->ack[w->index], i);
    }
    return NULL;
}

/* Wait until every sleeper has acknowledged round i - 1. */
static int
wait_acks(struct shared *sh, uint32_t round)
{
    for (unsigned int k = 0; k < sh->nsleepers; k++) {
        /* Pairs with: the store of ack[k] in sleeper_main(). */
        unsigned int spins = 0;
        while (weft__load_acq_u32(&sh->ack[k]) + 1 < round) {
            if (run_aborted(sh)) {
                return 0;
            }
            /*
             * Spin a while before yielding: a waker that reacts within
             * nanoseconds of the ack can hit the sleeper's prepare and
             * re-check head on, which is where a missing barrier shows.
             */
            if (++spins < sh->spin_limit) {
                weft__cpu_relax();
            } else {
                sched_yield();
            }
        }
    }
    return 1;
}

static void *
waker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;

    for (uint64_t r = w->index + 1; r <= sh->rounds; r += sh->nwakers) {
        uint32_t i = (uint32_t)r;
        if (!wait_acks(sh, i)) {
            break;
        }
        /*
         * Land the store at a random point of the sleeper's next
         * prepare / re-check: mostly a spin of 0-511 pauses, sometimes a
         * yield.
         */
        if (!spin_random(&w->rng, &sh->p.sleepers)) {
            maybe_yield(&w->rng);
        }
        /*
         * Make the condition true, then wake. Pairs with: the loads of
         * gen in sleeper_main(), before and after its prepare.
         */
        weft__store_rel_u32(&sh->gen, i);
        maybe_yield(&w->rng);
        weft__parker_wake(&sh->p);
        w->wakes++;
    }
    return NULL;
}

struct phase_result {
    uint64_t parks, woken, timeouts, cancels, early, wakes;
    uint32_t stuck;
    uint32_t min_ack;
    uint32_t sleepers_left;
    double secs;
};

static void
run_phase(unsigned int nsleepers, unsigned int nwakers, uint64_t rounds,
          uint64_t guard_ns, uint64_t seed, struct phase_result *res)
{
    struct shared *sh = calloc(1, sizeof(*sh));
    struct worker *w = calloc(nsleepers + nwakers, sizeof(*w));
    if (sh == NULL || w == NULL) {
        fprintf(stderr, "stress_parker: out of memory\n");
        exit(2);
    }
    weft__parker_init(&sh->p);
    sh->rounds = rounds;
    sh->guard_ns = guard_ns;
    sh->nsleepers = nsleepers;
    sh->nwakers = nwakers;
    /* Spin only when every thread has a CPU of its own; otherwise a
     * spinning waker would only delay the thread it waits for. */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    sh->spin_limit = (long)(nsleepers + nwakers) <= ncpu ? 4096 : 0;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned int k = 0; k < nsleepers + nwakers; k++) {
        w[k].sh = sh;
        w[k].index = k < nsleepers ? k : k - nsleepers;
        w[k].rng = seed ^ (0xd1342543de82ef95ULL * (k + 1));
        void *(*fn)(void *) = k < nsleepers ? sleeper_main : waker_main;
        if (pthread_create(&w[k].th, NULL, fn, &w[k]) != 0) {
            fprintf(stderr, "stress_parker: pthread_create failed\n");
            exit(2);
        }
    }
    memset(res, 0, sizeof(*res));
    res->min_ack = UINT32_MAX;
    for (unsigned int k = 0; k < nsleepers + nwakers; k++) {
        pthread_join(w[k].th, NULL);
        res->parks += w[k].parks;
        res->woken += w[k].woken;
        res->timeouts += w[k].timeouts;
        res->cancels += w[k].cancels;
        res->early += w[k].early_returns;
        res->wakes += w[k].wakes;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->secs = (double)(t1.tv_sec - t0.tv_sec) +
                (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    for (unsigned int k = 0; k < nsleepers; k++) {
        uint32_t a = weft__load_acq_u32(&sh->ack[k]);
        if (a < res->min_ack) {
            res->min_ack = a;
        }
    }
    res->stuck = weft__load_acq_u32(&sh->stuck);
    res->sleepers_left = weft__parker_sleepers(&sh->p);
    free(w);
    free(sh);
}

static int npass, nfail;

static void
check(int ok, uint64_t seed, const char *what)
{
    if (ok) {
        npass++;
        printf("ok   %s\n", what);
    } else {
        nfail++;
        printf("FAIL %s (seed=%" PRIu64 ")\n", what, seed);
    }
}

static void
report(const char *name, const struct phase_result *r, uint64_t rounds)
{
    printf("%s: %" PRIu64 " rounds in %.2f s: %" PRIu64 " parks (%" PRIu64
           " woken, %" PRIu64 " early, %" PRIu64 " timed out), %" PRIu64
           " cancels, %" PRIu64 " wakes, %u stuck\n",
           name, rounds, r->secs, r->parks, r->woken, r->early, r->timeouts,
           r->cancels, r->wakes, r->stuck);
}

/* Run one phase and record its sub-checks. */
static uint64_t
phase(const char *name, unsigned int nsleepers, unsigned int nwakers,
      uint64_t rounds, uint64_t guard_ms, uint64_t seed)
{
    struct phase_result r;
    char what[160];

    run_phase(nsleepers, nwakers, rounds, guard_ms * 1000000ULL, seed, &r);
    report(name, &r, rounds);
    snprintf(what, sizeof(what), "%s: no sleeper stuck", name);
    check(r.stuck == 0, seed, what);
    snprintf(what, sizeof(what), "%s: every sleeper saw every round", name);
    check(r.min_ack == rounds, seed, what);
    snprintf(what, sizeof(what), "%s: sleepers count back to 0", name);
    check(r.sleepers_left == 0, seed, what);
    return r.parks;
}

int
main(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t clock_seed =
        (uint64_t)now.tv_sec * 1000000007ULL ^ (uint64_t)now.tv_nsec;
    uint64_t seed = env_u64("WEFT_SEED", clock_seed);
    uint64_t rounds = env_u64("WEFT_PARK_ROUNDS", DEFAULT_ROUNDS);
    uint64_t nwakers = env_u64("WEFT_PARK_WAKERS", 2);
    uint64_t nsleepers = env_u64("WEFT_PARK_SLEEPERS", 2);
    uint64_t guard_ms = env_u64("WEFT_PARK_GUARD_MS", 5000);

    if (rounds < 3 || rounds > UINT32_MAX / 2 || nwakers < 1 ||
        nwakers > MAX_THREADS || nsleepers < 1 || nsleepers > MAX_THREADS ||
        guard_ms < 1) {
        fprintf(stderr, "stress_parker: bad configuration\n");
        return 2;
    }
    uint64_t rounds2 = rounds / 2, rounds3 = rounds / 3;
    printf("seed=%" PRIu64 "\n", seed);
    printf("stress_parker: phase 1: %" PRIu64 " rounds, 1 sleeper, 1 waker;"
           " phase 2: %" PRIu64 " rounds, 1 sleeper, %" PRIu64
           " wakers; phase 3: %" PRIu64 " rounds, %" PRIu64
           " sleepers, 1 waker; watchdog %" PRIu64 " ms\n",
           rounds, rounds2, nwakers, rounds3, nsleepers, guard_ms);
    fflush(stdout);

    uint64_t parks = 0;
    parks += phase("phase 1", 1, 1, rounds, guard_ms, seed);
    parks += phase("phase 2", 1, (unsigned int)nwakers, rounds2, guard_ms,
                   seed ^ 0x2545f4914f6cdd1dULL);
    parks += phase("phase 3", (unsigned int)nsleepers, 1, rounds3, guard_ms,
                   seed ^ 0x9e3779b97f4a7c15ULL);
    printf("park/wake cycles: %" PRIu64 " sleeper-rounds, %" PRIu64 " parks\n",
           rounds + rounds2 + rounds3 * nsleepers, parks);
    if (nfail != 0) {
        printf("seed=%" PRIu64 "\n", seed);
    }
    printf("%d passed, %d failed\n", npass, nfail);
    return nfail == 0 ? 0 : 1;
}
