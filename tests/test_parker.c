/*
 * test_parker.c - Criterion suite for the ck_ec64 parker (primitives/).
 *
 * Each test follows the protocol of parker.h: the sleeper prepares,
 * re-checks its condition, then parks or cancels; the waker makes the
 * condition true, then wakes. No test relies on timing: deadlines here
 * are hang guards, and the tests assert on the value park returns. The
 * one test about deadlines uses a deadline already in the past.
 */
#include "primitives/parker.h"

#include <criterion/criterion.h>

#include <ck_ec.h>

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

TestSuite(parker, .timeout = 30.0);

/* Hang guard for parks that must be woken: far beyond any wake latency. */
#define GUARD_SEC 20

static struct timespec
deadline_in(time_t sec)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += sec;
    return ts;
}

struct sleeper {
    struct weft__parker *p;
    uint32_t *cond; /* waker store-releases 1; sleeper loads */
    int parks;      /* sleeper only, read after join */
    int woken;      /* sleeper only: parks that returned true */
    int timeouts;   /* sleeper only: parks that returned false */
};

/* The sleeper side of the protocol, until the condition holds. */
static void *
sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    for (;;) {
        /* Pairs with: weft__store_rel_u32(cond) by the waker. */
        if (weft__load_acq_u32(s->cond) != 0) {
            break;
        }
        uint64_t t = weft__parker_prepare(s->p);
        /* Pairs with: weft__store_rel_u32(cond) by the waker. */
        if (weft__load_acq_u32(s->cond) != 0) {
            weft__parker_cancel(s->p);
            break;
        }
        struct timespec guard = deadline_in(GUARD_SEC);
        s->parks++;
        if (weft__parker_park(s->p, t, &guard)) {
            s->woken++;
        } else {
            s->timeouts++;
        }
    }
    return NULL;
}

static void
wait_for_sleepers(struct weft__parker *p, uint32_t n)
{
    while (weft__parker_sleepers(p) < n) {
        sched_yield();
    }
}

/* Spin until a registered sleeper has flagged the event count, that is,
 * until it is inside ck_ec64_wait's slow path, about to sleep. */
static void
wait_for_flag(struct weft__parker *p)
{
    while (!ck_ec64_has_waiters(&p->ec)) {
        sched_yield();
    }
}

Test(parker, park_returns_true_when_woken_while_asleep)
{
    struct weft__parker p;
    uint32_t cond = 0;
    struct sleeper s = {.p = &p, .cond = &cond};
    pthread_t th;

    weft__parker_init(&p);
    cr_assert_eq(weft__parker_sleepers(&p), 0);
    cr_assert_eq(pthread_create(&th, NULL, sleeper_main, &s), 0);
    wait_for_sleepers(&p, 1);
    wait_for_flag(&p);
    /* Pairs with: the loads of cond in sleeper_main(). */
    weft__store_rel_u32(&cond, 1);
    weft__parker_wake(&p);
    cr_assert_eq(pthread_join(th, NULL), 0);

    cr_assert_eq(s.parks, 1, "one park, then the condition was true");
    cr_assert_eq(s.woken, 1);
    cr_assert_eq(s.timeouts, 0, "the hang guard fired: a lost wake-up");
    cr_assert_eq(weft__parker_sleepers(&p), 0);
    cr_assert_eq(p.wakes, 1);
}

struct waker {
    struct weft__parker *p;
    uint32_t *cond;
};

static void *
waker_main(void *arg)
{
    struct waker *w = arg;
    /* Pairs with: the load of cond after prepare in the test. */
    weft__store_rel_u32(w->cond, 1);
    weft__parker_wake(w->p);
    return NULL;
}

Test(parker, wake_between_prepare_and_park_is_not_lost)
{
    struct weft__parker p;
    uint32_t cond = 0;
    struct waker w = {.p = &p, .cond = &cond};
    pthread_t th;

    weft__parker_init(&p);
    uint64_t t = weft__parker_prepare(&p);
    cr_assert_eq(weft__parker_sleepers(&p), 1);
    /* The whole wake happens after prepare and before park. */
    cr_assert_eq(pthread_create(&th, NULL, waker_main, &w), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(p.wakes, 1, "the waker must see the registered sleeper");

    struct timespec guard = deadline_in(GUARD_SEC);
    cr_assert(weft__parker_park(&p, t, &guard),
              "park must return woken, not time out");
    cr_assert_eq(weft__parker_sleepers(&p), 0);
    cr_assert_eq(weft__load_acq_u32(&cond), 1);
}

Test(parker, park_with_past_deadline_returns_false)
{
    struct weft__parker p;
    weft__parker_init(&p);

    uint64_t t = weft__parker_prepare(&p);
    struct timespec past = deadline_in(-1);
    cr_assert_not(weft__parker_park(&p, t, &past));
    cr_assert_eq(weft__parker_sleepers(&p), 0, "park unregisters");

    /* The epoch of CLOCK_MONOTONIC is the furthest past there is. */
    t = weft__parker_prepare(&p);
    struct timespec zero = {0, 0};
    cr_assert_not(weft__parker_park(&p, t, &zero));
    cr_assert_eq(weft__parker_sleepers(&p), 0);
    cr_assert_eq(p.wakes, 0);
}

Test(parker, park_with_stale_ticket_returns_true_at_once)
{
    struct weft__parker p;
    weft__parker_init(&p);

    uint64_t t = weft__parker_prepare(&p);
    weft__parker_wake(&p);
    /* Even with a deadline in the past, a moved count means woken. */
    struct timespec past = deadline_in(-1);
    cr_assert(weft__parker_park(&p, t, &past));
    cr_assert_eq(weft__parker_sleepers(&p), 0);
}

Test(parker, cancel_unregisters_the_sleeper)
{
    struct weft__parker p;
    weft__parker_init(&p);

    uint64_t t1 = weft__parker_prepare(&p);
    uint64_t t2 = weft__parker_prepare(&p);
    cr_assert_eq(t1, t2, "prepare alone does not move the count");
    cr_assert_eq(weft__parker_sleepers(&p), 2);
    weft__parker_cancel(&p);
    cr_assert_eq(weft__parker_sleepers(&p), 1);
    weft__parker_cancel(&p);
    cr_assert_eq(weft__parker_sleepers(&p), 0);

    /* With nobody registered, wake skips the event count entirely. */
    uint64_t before = ck_ec64_value(&p.ec);
    weft__parker_wake(&p);
    weft__parker_wake_hint(&p);
    cr_assert_eq(ck_ec64_value(&p.ec), before);
    cr_assert_eq(p.wakes, 0);
}

Test(parker, wake_releases_every_parked_sleeper)
{
    enum {
        N = 3
    };
    struct weft__parker p;
    uint32_t cond = 0;
    struct sleeper s[N];
    pthread_t th[N];

    weft__parker_init(&p);
    for (int i = 0; i < N; i++) {
        s[i] = (struct sleeper){.p = &p, .cond = &cond};
        cr_assert_eq(pthread_create(&th[i], NULL, sleeper_main, &s[i]), 0);
    }
    /* All three are registered; one wake must release all of them. */
    wait_for_sleepers(&p, N);
    wait_for_flag(&p);
    /* Pairs with: the loads of cond in sleeper_main(). */
    weft__store_rel_u32(&cond, 1);
    weft__parker_wake(&p);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(s[i].timeouts, 0, "sleeper %d: lost wake-up", i);
        cr_assert_leq(s[i].parks, 1);
    }
    cr_assert_eq(weft__parker_sleepers(&p), 0);
    cr_assert_eq(p.wakes, 1);
}

Test(parker, wake_hint_wakes_a_visibly_registered_sleeper)
{
    struct weft__parker p;
    uint32_t cond = 0;
    struct sleeper s = {.p = &p, .cond = &cond};
    pthread_t th;

    weft__parker_init(&p);
    cr_assert_eq(pthread_create(&th, NULL, sleeper_main, &s), 0);
    wait_for_sleepers(&p, 1);
    wait_for_flag(&p);
    /* Pairs with: the loads of cond in sleeper_main(). */
    weft__store_rel_u32(&cond, 1);
    /* The registration is visible (we saw it above), so the hint is
     * enough here. */
    weft__parker_wake_hint(&p);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(s.woken, 1);
    cr_assert_eq(s.timeouts, 0);
    cr_assert_eq(weft__parker_sleepers(&p), 0);
}

struct pingpong {
    struct weft__parker p;
    uint32_t gen;    /* waker store-releases; sleeper load-acquires */
    uint32_t ack;    /* sleeper store-releases; waker load-acquires */
    uint32_t rounds; /* immutable */
    int timeouts;    /* sleeper only, read after join */
};

static void *
pingpong_sleeper(void *arg)
{
    struct pingpong *pp = arg;
    for (uint32_t i = 1; i <= pp->rounds; i++) {
        /* Pairs with: weft__store_rel_u32(&pp->gen) in the test. */
        while (weft__load_acq_u32(&pp->gen) < i) {
            uint64_t t = weft__parker_prepare(&pp->p);
            /* Pairs with: weft__store_rel_u32(&pp->gen) in the test. */
            if (weft__load_acq_u32(&pp->gen) >= i) {
                weft__parker_cancel(&pp->p);
                break;
            }
            struct timespec guard = deadline_in(GUARD_SEC);
            if (!weft__parker_park(&pp->p, t, &guard)) {
                pp->timeouts++;
            }
        }
        /* Pairs with: weft__load_acq_u32(&pp->ack) in the test. */
        weft__store_rel_u32(&pp->ack, i);
    }
    return NULL;
}

Test(parker, ping_pong_never_loses_a_wake)
{
    struct pingpong pp = {.rounds = 20000};
    pthread_t th;

    weft__parker_init(&pp.p);
    cr_assert_eq(pthread_create(&th, NULL, pingpong_sleeper, &pp), 0);
    for (uint32_t i = 1; i <= pp.rounds; i++) {
        /* Pairs with: weft__store_rel_u32(&pp->ack) in the sleeper. */
        while (weft__load_acq_u32(&pp.ack) < i - 1) {
            sched_yield();
        }
        /* Pairs with: the loads of gen in pingpong_sleeper(). */
        weft__store_rel_u32(&pp.gen, i);
        weft__parker_wake(&pp.p);
    }
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(pp.timeouts, 0, "the hang guard fired: a lost wake-up");
    cr_assert_eq(weft__load_acq_u32(&pp.ack), pp.rounds);
    cr_assert_eq(weft__parker_sleepers(&pp.p), 0);
}
