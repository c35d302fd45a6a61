/*
 * test_deque.c - Criterion suite for the Chase-Lev deque (primitives/).
 *
 * Single-thread tests pin down the sequential contract (LIFO pop, FIFO
 * steal, growth keeps contents and order, argument checks). The
 * concurrent tests account for every item with a per-item atomic counter
 * and assert each counter is exactly 1 at the end; they never depend on
 * timing (the suite timeout only guards against a hang).
 *
 * Items are (void *)(id + 1), so an item is never NULL.
 */
#include "primitives/deque.h"

#include <weft/status.h>

#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

TestSuite(deque, .timeout = 30.0);

static void *
item_of(uint32_t id)
{
    return (void *)((uintptr_t)id + 1);
}

static uint32_t
id_of(void *item)
{
    return (uint32_t)((uintptr_t)item - 1);
}

static int64_t
capacity_of(const struct weft__deque *dq)
{
    return dq->buf->mask + 1;
}

/* Steal until an item or EMPTY; RETRY is a lost race, so try again. */
static enum weft__steal
steal_settled(struct weft__deque *dq, void **out)
{
    enum weft__steal r;
    do {
        r = weft__deque_steal(dq, out);
    } while (r == WEFT__STEAL_RETRY);
    return r;
}

Test(deque, push_then_pop_returns_the_item)
{
    struct weft__deque dq;
    cr_assert_eq(weft__deque_init(&dq, 4), WEFT_OK);
    cr_assert_eq(weft__deque_size_hint(&dq), 0);
    cr_assert_null(weft__deque_pop(&dq));

    cr_assert_eq(weft__deque_push(&dq, item_of(7)), WEFT_OK);
    cr_assert_eq(weft__deque_size_hint(&dq), 1);
    cr_assert_eq(weft__deque_pop(&dq), item_of(7));
    cr_assert_null(weft__deque_pop(&dq));
    cr_assert_eq(weft__deque_size_hint(&dq), 0);

    weft__deque_fini(&dq);
    /* fini twice is harmless: the buffer pointer is cleared. */
    weft__deque_fini(&dq);
}

Test(deque, owner_pop_returns_newest_first)
{
    struct weft__deque dq;
    cr_assert_eq(weft__deque_init(&dq, 4), WEFT_OK);
    for (uint32_t i = 0; i < 10; i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
    }
    for (uint32_t i = 10; i-- > 0;) {
        void *it = weft__deque_pop(&dq);
        cr_assert_eq(it, item_of(i), "popped %u, expected %u", id_of(it), i);
    }
    cr_assert_null(weft__deque_pop(&dq));
    weft__deque_fini(&dq);
}

struct fifo_thief {
    struct weft__deque *dq;
    uint32_t n;
    uint32_t got[64];
    enum weft__steal last;
};

static void *
fifo_thief_main(void *arg)
{
    struct fifo_thief *ft = arg;
    void *it = NULL;
    for (uint32_t i = 0; i < ft->n; i++) {
        if (steal_settled(ft->dq, &it) != WEFT__STEAL_OK) {
            ft->got[i] = UINT32_MAX;
            continue;
        }
        ft->got[i] = id_of(it);
    }
    ft->last = steal_settled(ft->dq, &it);
    return NULL;
}

Test(deque, thief_steals_oldest_first)
{
    struct weft__deque dq;
    cr_assert_eq(weft__deque_init(&dq, 3), WEFT_OK);
    for (uint32_t i = 0; i < 40; i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
    }
    /* The owner takes the newest ten; a thief then drains the rest. */
    for (uint32_t i = 40; i-- > 30;) {
        cr_assert_eq(weft__deque_pop(&dq), item_of(i));
    }
    struct fifo_thief ft = {.dq = &dq, .n = 30};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fifo_thief_main, &ft), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    for (uint32_t i = 0; i < 30; i++) {
        cr_assert_eq(ft.got[i], i, "steal %u returned %u", i, ft.got[i]);
    }
    cr_assert_eq(ft.last, WEFT__STEAL_EMPTY);
    cr_assert_null(weft__deque_pop(&dq));
    weft__deque_fini(&dq);
}

Test(deque, steal_on_empty_returns_empty)
{
    struct weft__deque dq;
    void *it = item_of(99);
    cr_assert_eq(weft__deque_init(&dq, 1), WEFT_OK);
    cr_assert_eq(weft__deque_steal(&dq, &it), WEFT__STEAL_EMPTY);
    cr_assert_eq(it, item_of(99), "EMPTY must not write *out");

    /* Emptied by the owner. */
    cr_assert_eq(weft__deque_push(&dq, item_of(1)), WEFT_OK);
    cr_assert_eq(weft__deque_pop(&dq), item_of(1));
    cr_assert_eq(weft__deque_steal(&dq, &it), WEFT__STEAL_EMPTY);

    /* Emptied by a steal. */
    cr_assert_eq(weft__deque_push(&dq, item_of(2)), WEFT_OK);
    cr_assert_eq(weft__deque_steal(&dq, &it), WEFT__STEAL_OK);
    cr_assert_eq(it, item_of(2));
    cr_assert_eq(weft__deque_steal(&dq, &it), WEFT__STEAL_EMPTY);
    cr_assert_null(weft__deque_pop(&dq));
    cr_assert_eq(weft__deque_size_hint(&dq), 0);
    weft__deque_fini(&dq);
}

Test(deque, push_beyond_capacity_grows_and_keeps_order)
{
    struct weft__deque dq;
    void *it = NULL;
    cr_assert_eq(weft__deque_init(&dq, 1), WEFT_OK);
    cr_assert_eq(capacity_of(&dq), 2);

    /*
     * Move top off zero first, so that the live range wraps around the
     * 2-slot buffer when it fills and the copy in grow must unwrap it.
     */
    cr_assert_eq(weft__deque_push(&dq, item_of(1000)), WEFT_OK);
    cr_assert_eq(weft__deque_steal(&dq, &it), WEFT__STEAL_OK);
    cr_assert_eq(it, item_of(1000));

    const uint32_t n = 1000;
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
        cr_assert_eq(weft__deque_size_hint(&dq), (int64_t)i + 1);
    }
    cr_assert_geq(capacity_of(&dq), n);
    cr_assert_lt(capacity_of(&dq), 2 * (int64_t)n,
                 "grow doubles only when full");
    cr_assert_not_null(dq.retired, "the old buffers are kept until fini");

    /* Oldest half from the top, in push order... */
    for (uint32_t i = 0; i < n / 2; i++) {
        cr_assert_eq(steal_settled(&dq, &it), WEFT__STEAL_OK);
        cr_assert_eq(it, item_of(i), "steal got %u, expected %u", id_of(it), i);
    }
    /* ...newest half from the bottom, in reverse. */
    for (uint32_t i = n; i-- > n / 2;) {
        it = weft__deque_pop(&dq);
        cr_assert_eq(it, item_of(i), "pop got %u, expected %u", id_of(it), i);
    }
    cr_assert_null(weft__deque_pop(&dq));
    cr_assert_eq(weft__deque_steal(&dq, &it), WEFT__STEAL_EMPTY);
    weft__deque_fini(&dq);
}

Test(deque, init_rejects_bad_arguments)
{
    struct weft__deque dq;
    cr_assert_eq(weft__deque_init(NULL, 4), WEFT_EINVAL);
    cr_assert_eq(weft__deque_init(&dq, 0), WEFT_EINVAL);
    cr_assert_eq(weft__deque_init(&dq, 31), WEFT_EINVAL);
    cr_assert_eq(weft__deque_init(&dq, 1), WEFT_OK);
    cr_assert_eq(capacity_of(&dq), 2);
    weft__deque_fini(&dq);
    weft__deque_fini(NULL);
}

/*
 * Shared harness of the concurrent tests: one owner (the test thread) and
 * some thieves. count[id] is how many times item id was taken, by anyone.
 */
struct race {
    struct weft__deque dq;
    uint32_t *count;  /* faa by every taker */
    uint32_t nitems;  /* immutable */
    uint32_t done;    /* owner store-releases 1 after its last push */
    uint32_t stolen;  /* faa by thieves: items stolen so far */
    uint32_t running; /* faa by thieves as they start */
    uint32_t bad;     /* faa: invalid items seen (out of range) */
};

static void
race_take(struct race *r, void *it)
{
    uint32_t id = id_of(it);
    if (it == NULL || id >= r->nitems) {
        (void)weft__faa_u32(&r->bad, 1);
        return;
    }
    /* Unpaired: pthread_join orders every count before the check. */
    (void)weft__faa_u32(&r->count[id], 1);
}

static void
race_init(struct race *r, unsigned int log2_capacity, uint32_t nitems)
{
    cr_assert_eq(weft__deque_init(&r->dq, log2_capacity), WEFT_OK);
    r->count = calloc(nitems, sizeof(*r->count));
    cr_assert_not_null(r->count);
    r->nitems = nitems;
    r->done = 0;
    r->stolen = 0;
    r->bad = 0;
    r->running = 0;
}

/* Thief: steal until the owner is done and the deque is empty. */
static void *
race_thief_main(void *arg)
{
    struct race *r = arg;
    /* Unpaired: only lets the owner wait until the thieves are up. */
    (void)weft__faa_u32(&r->running, 1);
    for (;;) {
        void *it = NULL;
        enum weft__steal s = weft__deque_steal(&r->dq, &it);
        if (s == WEFT__STEAL_OK) {
            race_take(r, it);
            (void)weft__faa_u32(&r->stolen, 1);
        } else if (s == WEFT__STEAL_EMPTY) {
            /*
             * Pairs with: the store-release of done by the owner after its
             * last push; once seen, an EMPTY deque stays empty for thieves.
             */
            if (weft__load_acq_u32(&r->done) != 0) {
                return NULL;
            }
            sched_yield();
        }
    }
}

static void
race_start(struct race *r, pthread_t *th, int nthieves)
{
    for (int i = 0; i < nthieves; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, race_thief_main, r), 0);
    }
    /* Relaxed: a start gate so that the owner races live thieves. */
    while (weft__load_relaxed_u32(&r->running) < (uint32_t)nthieves) {
        sched_yield();
    }
}

/* Owner's end: drain, release the thieves, join, check every item. */
static void
race_finish(struct race *r, pthread_t *th, int nthieves)
{
    void *it;
    while ((it = weft__deque_pop(&r->dq)) != NULL) {
        race_take(r, it);
    }
    /* Pairs with: weft__load_acq_u32(&r->done) in race_thief_main(). */
    weft__store_rel_u32(&r->done, 1);
    for (int i = 0; i < nthieves; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    }
    cr_assert_eq(r->bad, 0, "%u invalid items taken", r->bad);
    uint32_t lost = 0, dup = 0, first_bad = UINT32_MAX;
    for (uint32_t i = 0; i < r->nitems; i++) {
        if (r->count[i] != 1 && first_bad == UINT32_MAX) {
            first_bad = i;
        }
        lost += r->count[i] == 0;
        dup += r->count[i] > 1;
    }
    cr_assert(lost == 0 && dup == 0,
              "%u items lost, %u taken twice (first: id %u, count %u)", lost,
              dup, first_bad,
              first_bad == UINT32_MAX ? 0 : r->count[first_bad]);
    cr_assert_eq(weft__deque_size_hint(&r->dq), 0);
    cr_log_info("%u of %u items stolen", r->stolen, r->nitems);
    free(r->count);
    weft__deque_fini(&r->dq);
}

/* Small deterministic generator for the owner's push/pop mix. */
static uint64_t
rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(deque, stampede_every_item_taken_exactly_once)
{
    enum {
        THIEVES = 3
    };
    struct race r;
    pthread_t th[THIEVES];
    const uint32_t n = 2000000;
    uint64_t rng = 0x9e3779b97f4a7c15u;

    race_init(&r, 4, n);
    race_start(&r, th, THIEVES);
    uint32_t pushed = 0;
    while (pushed < n) {
        /* Bursts of 1..16 pushes, then 0..15 pops: the size stays small
         * so the last-item race between pop and steal is frequent. */
        uint32_t burst = (uint32_t)(rng_next(&rng) % 16) + 1;
        for (uint32_t i = 0; i < burst && pushed < n; i++, pushed++) {
            cr_assert_eq(weft__deque_push(&r.dq, item_of(pushed)), WEFT_OK);
        }
        uint32_t pops = (uint32_t)(rng_next(&rng) % 16);
        for (uint32_t i = 0; i < pops; i++) {
            void *it = weft__deque_pop(&r.dq);
            if (it == NULL) {
                break;
            }
            race_take(&r, it);
        }
    }
    race_finish(&r, th, THIEVES);
}

Test(deque, grows_from_two_slots_under_concurrent_thieves)
{
    enum {
        THIEVES = 3
    };
    struct race r;
    pthread_t th[THIEVES];
    const uint32_t n = 2000000;
    uint64_t rng = 0x2545f4914f6cdd1du;
    unsigned int restarts = 0, grown = 0;

    race_init(&r, 1, n);
    race_start(&r, th, THIEVES);
    uint32_t pushed = 0;
    while (pushed < n) {
        /*
         * A burst of 3 to 4098 pushes grows the buffer while thieves
         * read it; popping the burst back to empty keeps much of the
         * work on the grow path rather than on reuse.
         */
        uint32_t burst = 2 + (1u << (rng_next(&rng) % 13));
        for (uint32_t i = 0; i < burst && pushed < n; i++, pushed++) {
            cr_assert_eq(weft__deque_push(&r.dq, item_of(pushed)), WEFT_OK);
        }
        void *it;
        while ((it = weft__deque_pop(&r.dq)) != NULL) {
            race_take(&r, it);
        }
        /* Start the next round on a fresh 2-slot deque now and then, so
         * that growth runs many times, not once. */
        if (rng_next(&rng) % 8 == 0 && pushed < n) {
            /*
             * Thieves may hold the old buffers: stop them first. Join,
             * then restart the harness on a new deque with the same
             * counters (ids keep increasing).
             */
            weft__store_rel_u32(&r.done, 1);
            for (int i = 0; i < THIEVES; i++) {
                cr_assert_eq(pthread_join(th[i], NULL), 0);
            }
            /* Whether it grew depends on how fast the thieves were, so
             * it is counted, not asserted. */
            grown += capacity_of(&r.dq) > 2;
            restarts++;
            weft__deque_fini(&r.dq);
            cr_assert_eq(weft__deque_init(&r.dq, 1), WEFT_OK);
            r.done = 0;
            r.running = 0;
            race_start(&r, th, THIEVES);
        }
    }
    cr_log_info("%u of %u fresh deques grew", grown, restarts);
    race_finish(&r, th, THIEVES);
}

struct starve {
    struct weft__deque dq;
    uint32_t want;   /* immutable: items the thief must get */
    uint32_t stolen; /* thief store-releases; owner loads */
};

static void *
starve_thief_main(void *arg)
{
    struct starve *s = arg;
    uint32_t got = 0;
    while (got < s->want) {
        void *it = NULL;
        if (weft__deque_steal(&s->dq, &it) == WEFT__STEAL_OK) {
            got++;
            /* Pairs with: weft__load_acq_u32(&s->stolen) in the owner. */
            weft__store_rel_u32(&s->stolen, got);
        }
    }
    return NULL;
}

Test(deque, thief_gets_items_while_owner_keeps_pushing)
{
    struct starve s = {.want = 2000, .stolen = 0};
    pthread_t th;
    uint32_t next = 0;

    cr_assert_eq(weft__deque_init(&s.dq, 1), WEFT_OK);
    cr_assert_eq(pthread_create(&th, NULL, starve_thief_main, &s), 0);
    /*
     * The owner never stops pushing and pops only to keep the deque at a
     * few dozen items; the thief must still make progress. Termination
     * is the assertion: the loop ends only when the thief got all it
     * wanted (the suite timeout catches starvation).
     */
    /* Pairs with: weft__store_rel_u32(&s->stolen) in the thief. */
    while (weft__load_acq_u32(&s.stolen) < s.want) {
        cr_assert_eq(weft__deque_push(&s.dq, item_of(next++)), WEFT_OK);
        if (weft__deque_size_hint(&s.dq) > 32) {
            (void)weft__deque_pop(&s.dq);
        }
    }
    cr_assert_eq(pthread_join(th, NULL), 0);
    while (weft__deque_pop(&s.dq) != NULL) {
    }
    weft__deque_fini(&s.dq);
}

/* ---- the private part (Lace's split, deque.h) -------------------------- */

Test(deque, private_items_are_invisible_until_published)
{
    struct weft__deque dq;
    void *it = NULL;
    cr_assert_eq(weft__deque_init(&dq, 2), WEFT_OK);
    /* A fresh deque asks for its first private push to be published. */
    cr_assert(weft__deque_should_publish(&dq));
    weft__deque_publish(&dq); /* nothing private: the request stays */
    cr_assert(weft__deque_should_publish(&dq));
    cr_assert_eq(weft__deque_push_private(&dq, item_of(0)), WEFT_OK);
    weft__deque_publish(&dq);
    cr_assert(!weft__deque_should_publish(&dq));
    cr_assert_eq(weft__deque_size_hint(&dq), 1);
    /* Ten more private items (grows from 4 slots): invisible. */
    for (uint32_t i = 1; i <= 10; i++) {
        cr_assert_eq(weft__deque_push_private(&dq, item_of(i)), WEFT_OK);
    }
    cr_assert(!weft__deque_should_publish(&dq));
    cr_assert_eq(weft__deque_private_count(&dq), 10);
    cr_assert_eq(weft__deque_size_hint(&dq), 1);
    cr_assert_eq(steal_settled(&dq, &it), WEFT__STEAL_OK);
    cr_assert_eq(it, item_of(0));
    cr_assert_eq(steal_settled(&dq, &it), WEFT__STEAL_EMPTY,
                 "a thief saw a private item");
    /* The thief asks; the owner publishes the older half, rounded up. */
    weft__deque_request(&dq);
    cr_assert(weft__deque_should_publish(&dq));
    weft__deque_publish(&dq);
    cr_assert(!weft__deque_should_publish(&dq));
    cr_assert_eq(weft__deque_size_hint(&dq), 5);
    cr_assert_eq(weft__deque_private_count(&dq), 5);
    /* Thieves take the oldest; the owner pops newest first, private
     * items with no atomics, then the public ones. */
    cr_assert_eq(steal_settled(&dq, &it), WEFT__STEAL_OK);
    cr_assert_eq(it, item_of(1));
    for (uint32_t i = 10; i >= 2; i--) {
        cr_assert_eq(weft__deque_pop(&dq), item_of(i), "pop %u", i);
    }
    cr_assert_null(weft__deque_pop(&dq));
    cr_assert_eq(weft__deque_private_count(&dq), 0);
    /* Emptied by the owner's pop: the next private push is public. */
    cr_assert(weft__deque_should_publish(&dq));
    weft__deque_fini(&dq);
}

Test(deque, public_push_publishes_the_private_items_under_it)
{
    struct weft__deque dq;
    void *it = NULL;
    cr_assert_eq(weft__deque_init(&dq, 3), WEFT_OK);
    cr_assert_eq(weft__deque_push_private(&dq, item_of(1)), WEFT_OK);
    cr_assert_eq(weft__deque_push_private(&dq, item_of(2)), WEFT_OK);
    cr_assert_eq(weft__deque_size_hint(&dq), 0);
    cr_assert_eq(weft__deque_push(&dq, item_of(3)), WEFT_OK);
    cr_assert_eq(weft__deque_private_count(&dq), 0);
    cr_assert_eq(weft__deque_size_hint(&dq), 3);
    cr_assert_eq(steal_settled(&dq, &it), WEFT__STEAL_OK);
    cr_assert_eq(it, item_of(1));
    /* publish_all on top of a private item. */
    cr_assert_eq(weft__deque_push_private(&dq, item_of(4)), WEFT_OK);
    weft__deque_publish_all(&dq);
    cr_assert_eq(weft__deque_size_hint(&dq), 3);
    for (uint32_t i = 4; i >= 2; i--) {
        cr_assert_eq(weft__deque_pop(&dq), item_of(i));
    }
    cr_assert_null(weft__deque_pop(&dq));
    weft__deque_fini(&dq);
}

/* A thief that asks keeps asking until it is answered; the owner pushes
 * privately and publishes on request; every item is taken exactly once. */
struct split_ctx {
    struct weft__deque dq;
    atomic_int done;
    atomic_uint taken[4096];
    atomic_uint stolen;
};

static void *
split_thief(void *arg)
{
    struct split_ctx *c = arg;
    while (!atomic_load(&c->done) || weft__deque_size_hint(&c->dq) > 0) {
        void *it = NULL;
        enum weft__steal r = weft__deque_steal(&c->dq, &it);
        if (r == WEFT__STEAL_OK) {
            atomic_fetch_add(&c->taken[(uintptr_t)it - 1], 1);
            atomic_fetch_add(&c->stolen, 1);
        } else if (r == WEFT__STEAL_EMPTY) {
            weft__deque_request(&c->dq);
            sched_yield();
        }
    }
    return NULL;
}

Test(deque, split_requests_are_answered_and_nothing_is_lost)
{
    struct split_ctx *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    cr_assert_eq(weft__deque_init(&c->dq, 2), WEFT_OK);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, split_thief, c), 0);
    }
    uint32_t next = 0;
    for (int round = 0; round < 200; round++) {
        /* Push a burst privately, publishing when asked; pop part. */
        for (int k = 0; k < 16 && next < 4096; k++) {
            cr_assert_eq(weft__deque_push_private(&c->dq,
                                                  (void *)(uintptr_t)(++next)),
                         WEFT_OK);
            if (weft__deque_should_publish(&c->dq)) {
                weft__deque_publish(&c->dq);
            }
        }
        for (int k = 0; k < 8; k++) {
            void *it = weft__deque_pop(&c->dq);
            if (it == NULL) {
                break;
            }
            atomic_fetch_add(&c->taken[(uintptr_t)it - 1], 1);
        }
    }
    /* Drain: the owner pops what is left (private first, then public). */
    for (;;) {
        void *it = weft__deque_pop(&c->dq);
        if (it == NULL) {
            break;
        }
        atomic_fetch_add(&c->taken[(uintptr_t)it - 1], 1);
    }
    atomic_store(&c->done, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    for (uint32_t i = 0; i < next; i++) {
        cr_assert_eq(atomic_load(&c->taken[i]), 1, "item %u taken %u times",
                     i + 1, atomic_load(&c->taken[i]));
    }
    weft__deque_fini(&c->dq);
    free(c);
}

/* The owner takes back the newest public items: thieves no longer see
 * them, the owner pops them newest first, and a public push or a
 * publish makes them public again. Too small a public part is left as
 * it was. */
Test(deque, unpublish_takes_the_newest_items_private)
{
    struct weft__deque dq;
    void *it = NULL;
    cr_assert_eq(weft__deque_init(&dq, 4), WEFT_OK);
    for (uint32_t i = 0; i < 10; i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
    }
    cr_assert_eq(weft__deque_unpublish(&dq, 4), 4);
    cr_assert_eq(weft__deque_size_hint(&dq), 6);
    cr_assert_eq(weft__deque_private_count(&dq), 4);
    /* Thieves take the oldest public items and never a private one. */
    for (uint32_t i = 0; i < 5; i++) {
        cr_assert_eq(steal_settled(&dq, &it), WEFT__STEAL_OK);
        cr_assert_eq(it, item_of(i));
    }
    /* One public item is left: taking 4 (or 1) more would empty the
     * public part, so nothing changes. */
    cr_assert_eq(weft__deque_unpublish(&dq, 1), 0);
    cr_assert_eq(weft__deque_unpublish(&dq, 0), 0);
    cr_assert_eq(weft__deque_unpublish(&dq, -3), 0);
    cr_assert_eq(weft__deque_size_hint(&dq), 1);
    cr_assert_eq(weft__deque_private_count(&dq), 4);
    /* The owner pops the private ones newest first, then the public. */
    for (uint32_t i = 9; i >= 6; i--) {
        cr_assert_eq(weft__deque_pop(&dq), item_of(i), "pop %u", i);
    }
    cr_assert_eq(weft__deque_private_count(&dq), 0);
    cr_assert_eq(weft__deque_pop(&dq), item_of(5));
    cr_assert_null(weft__deque_pop(&dq));

    /* Taken private, then handed back by publish_all or by a push. */
    for (uint32_t i = 20; i < 26; i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
    }
    cr_assert_eq(weft__deque_unpublish(&dq, 3), 3);
    cr_assert_eq(weft__deque_size_hint(&dq), 3);
    weft__deque_publish_all(&dq);
    cr_assert_eq(weft__deque_size_hint(&dq), 6);
    cr_assert_eq(weft__deque_private_count(&dq), 0);
    cr_assert_eq(weft__deque_unpublish(&dq, 2), 2);
    cr_assert_eq(weft__deque_push(&dq, item_of(26)), WEFT_OK);
    cr_assert_eq(weft__deque_size_hint(&dq), 7);
    cr_assert_eq(weft__deque_private_count(&dq), 0);
    for (uint32_t i = 26; i >= 20; i--) {
        cr_assert_eq(weft__deque_pop(&dq), item_of(i), "pop %u", i);
    }
    cr_assert_null(weft__deque_pop(&dq));
    weft__deque_fini(&dq);
}

/* The race tests' shared steps. */
static uint64_t
xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The owner pops what is left, counting each item. */
static void
drain_counting(struct weft__deque *dq, atomic_uint *taken)
{
    for (;;) {
        void *it = weft__deque_pop(dq);
        if (it == NULL) {
            return;
        }
        atomic_fetch_add(&taken[id_of(it)], 1);
    }
}

/* Stop the thieves (after *done is set) and check that every item below
 * n was taken exactly once. */
static void
join_and_check(pthread_t *th, int nth, atomic_uint *taken, uint32_t n)
{
    for (int i = 0; i < nth; i++) {
        pthread_join(th[i], NULL);
    }
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(atomic_load(&taken[i]), 1, "item %u taken %u times", i,
                     atomic_load(&taken[i]));
    }
}

/* Thieves steal while the owner keeps taking chunks private and popping
 * them: every item is taken exactly once (a thief and the owner never
 * both get one), and the owner's pops stay newest first. */
struct unpub_ctx {
    struct weft__deque dq;
    atomic_int done;
    atomic_uint taken[1 << 16];
};

static void *
unpub_thief(void *arg)
{
    struct unpub_ctx *c = arg;
    while (!atomic_load(&c->done)) {
        void *it = NULL;
        if (weft__deque_steal(&c->dq, &it) == WEFT__STEAL_OK) {
            atomic_fetch_add(&c->taken[id_of(it)], 1);
        }
    }
    return NULL;
}

Test(deque, unpublish_races_thieves_and_loses_nothing)
{
    struct unpub_ctx *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    cr_assert_eq(weft__deque_init(&c->dq, 3), WEFT_OK);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, unpub_thief, c), 0);
    }
    uint32_t next = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    while (next < (1u << 16)) {
        xorshift(&rng);
        /* A burst of pushes, then a chunk taken private (sizes 1..16,
         * often with thieves right at it), then pops: the pops of a
         * private chunk must come out newest first. */
        uint32_t n = 1 + (uint32_t)(rng & 31);
        for (uint32_t k = 0; k < n && next < (1u << 16); k++) {
            cr_assert_eq(weft__deque_push(&c->dq, item_of(next++)), WEFT_OK);
        }
        int64_t k = 1 + (int64_t)((rng >> 8) & 15);
        int64_t got = weft__deque_unpublish(&c->dq, k);
        cr_assert(got == 0 || got == k);
        void *prev = NULL;
        for (int64_t i = 0; i < got; i++) {
            void *it = weft__deque_pop(&c->dq);
            cr_assert_not_null(it, "a private item was gone");
            cr_assert(prev == NULL || id_of(it) < id_of(prev),
                      "private pops out of order");
            prev = it;
            atomic_fetch_add(&c->taken[id_of(it)], 1);
        }
        if ((rng >> 20) & 1) {
            void *it = weft__deque_pop(&c->dq);
            if (it != NULL) {
                atomic_fetch_add(&c->taken[id_of(it)], 1);
            }
        }
    }
    drain_counting(&c->dq, c->taken);
    atomic_store(&c->done, 1);
    join_and_check(th, 3, c->taken, next);
    weft__deque_fini(&c->dq);
    free(c);
}

/* A batch steal takes the oldest min(n / 2, cap, WEFT__STEAL_BATCH_MAX)
 * items in order with one CAS, one item when fewer than
 * WEFT__STEAL_BATCH_MIN are public or the cap is 1; the owner's pops
 * stay newest first (no thief inside a batch). */
Test(deque, batch_steal_takes_the_oldest_half_up_to_the_cap)
{
    struct weft__deque dq;
    void *its[WEFT__STEAL_BATCH_MAX];
    int64_t k = -1;
    cr_assert_eq(weft__deque_init(&dq, 3), WEFT_OK);
    cr_assert_eq(weft__deque_steal_batch(&dq, its, 8, &k), WEFT__STEAL_EMPTY);
    cr_assert_eq(k, 0);
    /* Enough public items that n / 2 exceeds the build's cap. */
    uint32_t many = (WEFT__STEAL_BATCH_MIN > 2 * WEFT__STEAL_BATCH_MAX
                         ? WEFT__STEAL_BATCH_MIN
                         : 2 * WEFT__STEAL_BATCH_MAX) +
                    24;
    for (uint32_t i = 0; i < many; i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
    }
    uint32_t next = 0;
    /* The cap of the build (n / 2 is more). */
    cr_assert_eq(weft__deque_steal_batch(&dq, its, 64, &k), WEFT__STEAL_OK);
    cr_assert_eq(k, WEFT__STEAL_BATCH_MAX);
    for (int64_t i = 0; i < k; i++) {
        cr_assert_eq(its[i], item_of(next++), "batch item %ld", (long)i);
    }
    /* The caller's cap. */
    cr_assert_eq(weft__deque_steal_batch(&dq, its, 3, &k), WEFT__STEAL_OK);
    cr_assert_eq(k, 3);
    for (int64_t i = 0; i < k; i++) {
        cr_assert_eq(its[i], item_of(next++));
    }
    /* Exactly WEFT__STEAL_BATCH_MIN public: still a batch, of half of
     * them (or the cap). */
    while (weft__deque_size_hint(&dq) > WEFT__STEAL_BATCH_MIN) {
        cr_assert_not_null(weft__deque_pop(&dq));
    }
    cr_assert_eq(weft__deque_steal_batch(&dq, its, 64, &k), WEFT__STEAL_OK);
    cr_assert_eq(k, WEFT__STEAL_BATCH_MIN / 2 < WEFT__STEAL_BATCH_MAX
                        ? WEFT__STEAL_BATCH_MIN / 2
                        : WEFT__STEAL_BATCH_MAX);
    for (int64_t i = 0; i < k; i++) {
        cr_assert_eq(its[i], item_of(next++));
    }
    /* Fewer public than that: one item. */
    cr_assert_eq(weft__deque_steal_batch(&dq, its, 64, &k), WEFT__STEAL_OK);
    cr_assert_eq(k, 1);
    cr_assert_eq(its[0], item_of(next++));
    /* Enough again, but a cap of 1: one item. */
    for (uint32_t i = 1000; weft__deque_size_hint(&dq) < WEFT__STEAL_BATCH_MIN;
         i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
    }
    cr_assert_eq(weft__deque_steal_batch(&dq, its, 1, &k), WEFT__STEAL_OK);
    cr_assert_eq(k, 1);
    cr_assert_eq(its[0], item_of(next++));
    cr_assert_eq(dq.batchers, 0);
    /* Down to two: the owner pops the newer first. */
    while (weft__deque_size_hint(&dq) > 2) {
        cr_assert_not_null(weft__deque_pop(&dq));
    }
    void *a = weft__deque_pop(&dq);
    void *b = weft__deque_pop(&dq);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_gt(id_of(a), id_of(b));
    cr_assert_null(weft__deque_pop(&dq));
    weft__deque_fini(&dq);
}

/* While a thief is inside a batch (white box: the count raised by
 * hand), the owner keeps WEFT__STEAL_BATCH_MAX items from top: a pop
 * closer than that takes the oldest item by CAS instead of the newest,
 * and unpublish refuses. Far from top, and once the count is back to 0,
 * pops are newest first again. */
Test(deque, pop_keeps_a_margin_while_a_batch_is_announced)
{
    struct weft__deque dq;
    cr_assert_eq(weft__deque_init(&dq, 6), WEFT_OK);
    uint32_t n = WEFT__STEAL_BATCH_MAX + 4;
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(weft__deque_push(&dq, item_of(i)), WEFT_OK);
    }
    dq.batchers = 1;
    /* Far from top: the newest. */
    uint32_t newest = n - 1;
    while (weft__deque_size_hint(&dq) > WEFT__STEAL_BATCH_MAX) {
        cr_assert_eq(weft__deque_pop(&dq), item_of(newest));
        newest--;
    }
    /* Within the margin: unpublish refuses, pops take the oldest. */
    cr_assert_eq(weft__deque_unpublish(&dq, 1), 0);
    cr_assert_eq(weft__deque_size_hint(&dq), WEFT__STEAL_BATCH_MAX);
    cr_assert_eq(weft__deque_pop(&dq), item_of(0));
    cr_assert_eq(weft__deque_pop(&dq), item_of(1));
    /* The batch has left: newest first again, down to the last item. */
    dq.batchers = 0;
    while (newest >= 2) {
        cr_assert_eq(weft__deque_pop(&dq), item_of(newest), "pop %u", newest);
        newest--;
    }
    cr_assert_null(weft__deque_pop(&dq));
    cr_assert_eq(weft__deque_size_hint(&dq), 0);
    weft__deque_fini(&dq);
}

/* Three thieves take batches (and single items) while the owner pushes
 * bursts, pops, and takes chunks private: every item is taken exactly
 * once, each batch comes out oldest first, and no thief is left inside
 * a batch. */
struct batch_ctx {
    struct weft__deque dq;
    atomic_int done;
    atomic_ulong batches;
    atomic_ulong bad; /* batches of a bad size or out of order */
    atomic_uint taken[1 << 16];
};

static void *
batch_thief(void *arg)
{
    struct batch_ctx *c = arg;
    unsigned int round = 0;
    while (!atomic_load(&c->done)) {
        void *its[WEFT__STEAL_BATCH_MAX];
        int64_t k = 0;
        int64_t cap = (round++ & 3) == 0 ? 1 : WEFT__STEAL_BATCH_MAX;
        if (weft__deque_steal_batch(&c->dq, its, cap, &k) != WEFT__STEAL_OK) {
            continue;
        }
        /* Criterion asserts only on the test's own thread: count. A
         * higher index holds a later push, so a batch's ids rise (not
         * by one: the owner reuses the slots it popped). */
        if (k < 1 || k > cap) {
            atomic_fetch_add(&c->bad, 1);
            continue;
        }
        for (int64_t i = 0; i < k; i++) {
            if (i > 0 && id_of(its[i]) <= id_of(its[i - 1])) {
                atomic_fetch_add(&c->bad, 1);
            }
            atomic_fetch_add(&c->taken[id_of(its[i])], 1);
        }
        if (k > 1) {
            atomic_fetch_add(&c->batches, 1);
        }
    }
    return NULL;
}

Test(deque, batch_steals_race_the_owner_and_lose_nothing)
{
    struct batch_ctx *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    cr_assert_eq(weft__deque_init(&c->dq, 3), WEFT_OK);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, batch_thief, c), 0);
    }
    uint32_t next = 0;
    uint64_t rng = 0x2545f4914f6cdd1dull;
    const uint32_t last = (1u << 16) - 64;
    while (next < last) {
        xorshift(&rng);
        /* A burst (16..47: enough for a batch), sometimes a chunk taken
         * private, then pops down to the last few items, where a batch
         * thief's reach matters. */
        uint32_t n = 16 + (uint32_t)(rng & 31);
        for (uint32_t k = 0; k < n && next < last; k++) {
            cr_assert_eq(weft__deque_push(&c->dq, item_of(next++)), WEFT_OK);
        }
        if ((rng >> 12) & 1) {
            int64_t k = 1 + (int64_t)((rng >> 8) & 7);
            int64_t got = weft__deque_unpublish(&c->dq, k);
            cr_assert(got == 0 || got == k);
        }
        int64_t keep = (int64_t)((rng >> 16) & 7);
        while (weft__deque_size_hint(&c->dq) > keep) {
            void *it = weft__deque_pop(&c->dq);
            if (it == NULL) {
                break;
            }
            atomic_fetch_add(&c->taken[id_of(it)], 1);
        }
    }
    /* Last, 64 items the owner leaves to the thieves: the first steal
     * then sees 64 public items (at least WEFT__STEAL_BATCH_MIN, which
     * tests/CMakeLists.txt sets to 16 here) and takes a batch, however
     * the threads were scheduled before. */
    drain_counting(&c->dq, c->taken);
    while (next < (1u << 16)) {
        cr_assert_eq(weft__deque_push(&c->dq, item_of(next++)), WEFT_OK);
    }
    while (weft__deque_size_hint(&c->dq) > 0) {
        sched_yield();
    }
    atomic_store(&c->done, 1);
    join_and_check(th, 3, c->taken, next);
    cr_assert_eq(atomic_load(&c->bad), 0, "%lu bad batches",
                 (unsigned long)atomic_load(&c->bad));
    cr_assert_gt(atomic_load(&c->batches), 0, "no batch of two or more");
    cr_assert_eq(c->dq.batchers, 0);
    weft__deque_fini(&c->dq);
    free(c);
}
