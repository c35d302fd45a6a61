/*
 * stress_cancel.c - randomized races of cancel, register and deregister
 * across threads (plain C: runs under ThreadSanitizer, where Criterion
 * cannot).
 *
 * Each round makes a root token and an error to cancel it with, then five
 * threads race, each after a seeded random delay:
 *
 *   canceller    cancels the root;
 *   registrar    registers slots 0..7 on the root and deregisters the
 *                "immediate" ones at once (racing the cancel);
 *   deregistrar  deregisters the "self" slots, racing their callbacks,
 *                which try to deregister themselves (one claim decides
 *                who does it), and the "race" slots, whose callbacks
 *                dawdle; half the time it first waits for the callback
 *                to start, so deregistration meets it running on the
 *                canceller's thread and must wait for it;
 *   child        makes a child of the root, registers on it, makes and
 *                drops a grandchild (link/unlink racing propagation),
 *                registers on a second child and deregisters at once, and
 *                drops its child references (registrations keep them);
 *   main         after the round, deregisters the "late" slots.
 *
 * Checks per slot: its callback ran at most once; it ran exactly when its
 * deregistration reported WEFT_EALREADY (so every callback still
 * registered when the root was cancelled ran exactly once, and every
 * removed one never ran); it got the round's reason; and no callback was
 * still running after a deregistration of it returned. At the end nothing
 * may be left allocated.
 *
 * Seed: WEFT_SEED if set, else the clock; printed first. Rounds:
 * WEFT_STRESS_ROUNDS if set, else 100000 (10000 under sanitizers). The
 * last line is "N passed, N failed" (rounds); the exit status is 0 only
 * when none failed.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cancel.h>
#include <weft/error.h>

#include "primitives/alloc.h"
#include "primitives/atomics.h"
#include "stress_common.h"

#ifdef STRESS_SANITIZED
#define DEFAULT_ROUNDS 10000
#else
#define DEFAULT_ROUNDS 100000
#endif

enum slot_kind {
    SLOT_IMMEDIATE, /* registrar deregisters at once */
    SLOT_SELF,      /* callback or deregistrar deregisters (claim) */
    SLOT_RACE,      /* deregistrar deregisters; the callback dawdles */
    SLOT_LATE,      /* main deregisters after the round */
    SLOT_CHILD,     /* on a child token; main deregisters after */
    SLOT_CHILD_NOW  /* on a second child; deregistered at once */
};

#define ROOT_SLOTS 8
#define NSLOTS (ROOT_SLOTS + 2)

struct slot {
    enum slot_kind kind;
    weft_cancel_cb_t *handle; /* store-rel once registered */
    uint32_t ran;             /* faa by the callback */
    uint32_t claim;           /* SLOT_SELF: CAS 0 -> 1 by the deregisterer */
    uint32_t dereg_done;      /* store-rel after deregister returned */
    uint32_t late_run;        /* callback saw dereg_done: a violation */
    uint32_t bad_reason;      /* callback got another reason */
    weft_status_t dereg_st;   /* written by whoever deregistered */
    uint32_t spin;            /* SLOT_RACE: how long the callback dawdles */
    uint32_t started;         /* SLOT_RACE: store-rel when it starts */
};

struct round {
    weft_token_t *root;
    weft_error_t *reason;
    struct slot slots[NSLOTS];
};

static struct round cur;
static pthread_barrier_t start_barrier;
static pthread_barrier_t end_barrier;
static long rounds;
static uint64_t seed;
static uint32_t stop;

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

static void
jitter(uint64_t *rng)
{
    unsigned int n = (unsigned int)(rng_next(rng) % 256);
    for (unsigned int i = 0; i < n; i++) {
        weft__cpu_relax();
    }
}

static void
slot_deregister(struct slot *s, weft_cancel_cb_t *h)
{
    s->dereg_st = weft_token_deregister(h);
    /* Pairs with: the load-acquire of dereg_done in slot_fn(). */
    weft__store_rel_u32(&s->dereg_done, 1);
}

static void
slot_fn(void *arg, weft_error_t *reason)
{
    struct slot *s = arg;
    /* Unpaired: a counter read after the round's end barrier. */
    (void)weft__faa_u32(&s->ran, 1);
    if (reason != cur.reason) {
        /* Unpaired: read after the end barrier. */
        weft__store_relaxed_u32(&s->bad_reason, 1);
    }
    if (s->kind == SLOT_SELF) {
        /* Pairs with: the store-release of handle in registrar(). */
        weft_cancel_cb_t *h = weft__load_acq_ptr((void *const *)&s->handle);
        /*
         * Claim the deregistration. Pairs with: the same CAS in
         * deregistrar(); exactly one of the two deregisters.
         */
        if (h != NULL && weft__cas_u32(&s->claim, 0, 1)) {
            slot_deregister(s, h);
            return;
        }
    }
    /* Pairs with: the load-acquire of started in deregistrar(). */
    weft__store_rel_u32(&s->started, 1);
    for (uint32_t i = 0; i < s->spin; i++) {
        weft__cpu_relax();
    }
    /*
     * A deregistration that returned while this callback still runs is a
     * bug. Pairs with: the store-release in slot_deregister().
     */
    if (weft__load_acq_u32(&s->dereg_done) != 0) {
        /* Unpaired: read after the end barrier. */
        weft__store_relaxed_u32(&s->late_run, 1);
    }
}

static void
publish(struct slot *s, weft_cancel_cb_t *h)
{
    /* Pairs with: the load-acquire of handle in slot_fn()/deregistrar(). */
    weft__store_rel_ptr((void **)&s->handle, h);
}

static void
must_register(weft_token_t *t, struct slot *s, weft_cancel_cb_t **h)
{
    if (weft_token_register(t, slot_fn, s, h) != WEFT_OK) {
        fprintf(stderr, "register failed (seed %llu)\n",
                (unsigned long long)seed);
        abort();
    }
}

static void
canceller(uint64_t *rng)
{
    jitter(rng);
    (void)weft_token_cancel(cur.root, cur.reason);
}

static void
registrar(uint64_t *rng)
{
    for (int i = 0; i < ROOT_SLOTS; i++) {
        struct slot *s = &cur.slots[i];
        weft_cancel_cb_t *h = NULL;
        must_register(cur.root, s, &h);
        publish(s, h);
        if (s->kind == SLOT_IMMEDIATE) {
            slot_deregister(s, h);
        }
        if (rng_next(rng) % 4 == 0) {
            jitter(rng);
        }
    }
}

static void
deregistrar(uint64_t *rng)
{
    jitter(rng);
    for (int i = 0; i < ROOT_SLOTS; i++) {
        struct slot *s = &cur.slots[i];
        if (s->kind != SLOT_SELF && s->kind != SLOT_RACE) {
            continue;
        }
        weft_cancel_cb_t *h;
        /* Pairs with: the store-release of handle in publish(). */
        while ((h = weft__load_acq_ptr((void *const *)&s->handle)) == NULL) {
            weft__cpu_relax();
        }
        if (s->kind == SLOT_RACE && rng_next(rng) % 2 == 0) {
            /*
             * Half the time, meet the callback running: it always runs
             * (nobody else deregisters it and the root is always
             * cancelled), so this wait ends.
             * Pairs with: the store-release of started in slot_fn().
             */
            while (weft__load_acq_u32(&s->started) == 0) {
                weft__cpu_relax();
            }
        }
        /* Pairs with: the claim CAS in slot_fn(). */
        if (s->kind == SLOT_RACE || weft__cas_u32(&s->claim, 0, 1)) {
            slot_deregister(s, h);
        }
    }
}

static void
child(uint64_t *rng)
{
    jitter(rng);
    weft_token_t *c = NULL;
    weft_token_t *g = NULL;
    weft_token_t *c2 = NULL;
    weft_cancel_cb_t *h = NULL;
    if (weft_token_create(cur.root, &c) != WEFT_OK ||
        weft_token_create(cur.root, &c2) != WEFT_OK) {
        abort();
    }
    must_register(c, &cur.slots[ROOT_SLOTS], &h);
    publish(&cur.slots[ROOT_SLOTS], h);
    if (weft_token_create(c, &g) != WEFT_OK) {
        abort();
    }
    (void)weft_token_release(g);
    must_register(c2, &cur.slots[ROOT_SLOTS + 1], &h);
    publish(&cur.slots[ROOT_SLOTS + 1], h);
    slot_deregister(&cur.slots[ROOT_SLOTS + 1], h);
    (void)weft_token_release(c2);
    (void)weft_token_release(c);
}

#define NTHREADS 4

static void *
worker(void *arg)
{
    int role = (int)(intptr_t)arg;
    for (long r = 0;; r++) {
        pthread_barrier_wait(&start_barrier);
        /* Pairs with: the store-release of stop in main(). */
        if (weft__load_acq_u32(&stop) != 0) {
            return NULL;
        }
        uint64_t rng = seed ^ ((uint64_t)(role + 1) * 0x9E3779B97F4A7C15ULL) ^
                       ((uint64_t)r << 20);
        rng_next(&rng);
        switch (role) {
        case 0:
            canceller(&rng);
            break;
        case 1:
            registrar(&rng);
            break;
        case 2:
            deregistrar(&rng);
            break;
        default:
            child(&rng);
            break;
        }
        pthread_barrier_wait(&end_barrier);
    }
}

/* Check a finished round; returns the number of violations. */
static int
check_round(long r)
{
    int bad = 0;
    for (int i = 0; i < NSLOTS; i++) {
        struct slot *s = &cur.slots[i];
        const char *why = NULL;
        if (s->ran > 1) {
            why = "callback ran more than once";
        } else if ((s->ran == 1) != (s->dereg_st == WEFT_EALREADY)) {
            why = "ran does not match the deregistration status";
        } else if (s->dereg_st != WEFT_OK && s->dereg_st != WEFT_EALREADY) {
            why = "unexpected deregistration status";
        } else if (s->late_run) {
            why = "callback still ran after deregister returned";
        } else if (s->bad_reason) {
            why = "callback got a reason other than the root's";
        } else if ((s->kind == SLOT_LATE || s->kind == SLOT_CHILD) &&
                   s->ran != 1) {
            why = "registered through the cancel but never ran";
        }
        if (why != NULL) {
            fprintf(stderr,
                    "round %ld slot %d (kind %d): %s (ran %u, status %s)\n",
                    r, i, (int)s->kind, why, s->ran,
                    weft_status_name(s->dereg_st));
            bad++;
        }
    }
    return bad;
}

int
main(void)
{
    seed = stress_seed();
    rounds = stress_rounds(DEFAULT_ROUNDS);
    printf("stress_cancel: seed %llu, %ld rounds, %d threads\n",
           (unsigned long long)seed, rounds, NTHREADS + 1);
    fflush(stdout);

    pthread_barrier_init(&start_barrier, NULL, NTHREADS + 1);
    pthread_barrier_init(&end_barrier, NULL, NTHREADS + 1);
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    }

    long passed = 0;
    long failed = 0;
    for (long r = 0; r < rounds; r++) {
        memset(&cur, 0, sizeof(cur));
        for (int i = 0; i < ROOT_SLOTS; i++) {
            static const enum slot_kind kinds[] = {SLOT_IMMEDIATE, SLOT_SELF,
                                                   SLOT_RACE, SLOT_LATE};
            cur.slots[i].kind = kinds[i % 4];
            cur.slots[i].spin =
                kinds[i % 4] == SLOT_RACE ? (uint32_t)(r % 7) * 300 : 0;
        }
        cur.slots[ROOT_SLOTS].kind = SLOT_CHILD;
        cur.slots[ROOT_SLOTS + 1].kind = SLOT_CHILD_NOW;
        if (weft_token_create(NULL, &cur.root) != WEFT_OK ||
            weft_error_create(&cur.reason, WEFT_EUSER, "round %ld", r) !=
                WEFT_OK) {
            abort();
        }
        pthread_barrier_wait(&start_barrier);
        pthread_barrier_wait(&end_barrier);
        for (int i = 0; i < NSLOTS; i++) {
            struct slot *s = &cur.slots[i];
            if (s->kind == SLOT_LATE || s->kind == SLOT_CHILD) {
                slot_deregister(s, s->handle);
            }
        }
        int bad = check_round(r);
        (void)weft_token_release(cur.root);
        (void)weft_error_release(cur.reason);
        if (bad == 0) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "round %ld failed; rerun with WEFT_SEED=%llu\n",
                    r, (unsigned long long)seed);
        }
    }
    /* Pairs with: the load-acquire of stop in worker(). */
    weft__store_rel_u32(&stop, 1);
    pthread_barrier_wait(&start_barrier);
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&start_barrier);
    pthread_barrier_destroy(&end_barrier);

    if (weft__alloc_live() != 0) {
        fprintf(stderr, "leak: %lld blocks still allocated (seed %llu)\n",
                (long long)weft__alloc_live(), (unsigned long long)seed);
        failed++;
    }
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
