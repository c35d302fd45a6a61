/*
 * stress_deque.c - randomized owner/thieves stress of the Chase-Lev deque.
 *
 * A plain C program (no Criterion, so that it runs under ThreadSanitizer):
 * one owner pushes and pops a seeded random mix while N thieves steal, on
 * a deque that starts at 2 slots so that grow runs under the thieves. Every
 * item carries an id; a per-item atomic counter records how many times it
 * was taken, and the end checks that each was taken exactly once. The
 * owner also checks that every pop returned the item at bottom - 1 (LIFO)
 * and each thief that its ids only increase (FIFO along top).
 *
 * Environment:
 *   WEFT_SEED          seed (default: from the clock); printed at start
 *                      and on failure
 *   WEFT_STRESS_OPS    owner operations (pushes + pops); default 50M,
 *                      20M under ASan or TSan
 *   WEFT_STRESS_THIEVES  number of thieves (default 3)
 *   WEFT_STRESS_LOG2   log2 of the initial capacity (default 1)
 *   WEFT_STRESS_BURST  log2 of the longest push burst (default 12)
 *
 * Prints one closing line "N passed, N failed" (one per sub-check) and
 * exits non-zero on any failure. Timing never decides the outcome.
 */
#include "primitives/deque.h"

#include <weft/status.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#if defined(STRESS_TSAN) || defined(STRESS_ASAN)
#define DEFAULT_OPS 20000000ULL
#else
#define DEFAULT_OPS 50000000ULL
#endif

#define MAX_THIEVES 64
#define SHADOW_LOG2 20

struct thief {
    pthread_t th;
    struct stress *s;
    uint64_t rng;
    uint64_t attempts, ok, empty, retry;
    uint64_t fifo_violations;
    uint64_t first_bad_prev, first_bad_id;
    char pad[WEFT__CACHELINE];
};

struct stress {
    struct weft__deque dq;
    uint32_t *count;  /* faa by every taker; index = item id */
    uint64_t nitems;  /* immutable: pushes the owner will make */
    uint32_t done;    /* owner store-releases 1 after its last push */
    uint32_t running; /* faa by thieves as they start */
    uint32_t bad;     /* faa: NULL or out-of-range items taken */
    char pad[WEFT__CACHELINE];
};

static uint64_t
rng_next(uint64_t *s)
{
    /* splitmix64: any 64-bit seed, including 0, is fine. */
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

/* C11 aligned_alloc wants a size that is a multiple of the alignment. */
static void *
alloc_lines(size_t size)
{
    size_t rounded =
        (size + WEFT__CACHELINE - 1) & ~(size_t)(WEFT__CACHELINE - 1);
    void *p = aligned_alloc(WEFT__CACHELINE, rounded);
    if (p != NULL) {
        memset(p, 0, rounded);
    }
    return p;
}

static void *
item_of(uint64_t id)
{
    return (void *)(uintptr_t)(id + 1);
}

static uint64_t
id_of(void *item)
{
    return (uint64_t)(uintptr_t)item - 1;
}

/* Record one take; returns false for an item that was never pushed. */
static int
take(struct stress *s, void *it)
{
    uint64_t id = id_of(it);
    if (it == NULL || id >= s->nitems) {
        (void)weft__faa_u32(&s->bad, 1);
        return 0;
    }
    /* Unpaired: pthread_join orders every count before the check. */
    (void)weft__faa_u32(&s->count[id], 1);
    return 1;
}

static void *
thief_main(void *arg)
{
    struct thief *t = arg;
    struct stress *s = t->s;
    uint64_t prev = 0;
    int have_prev = 0;

    /* Unpaired: a start gate, so that the owner races live thieves. */
    (void)weft__faa_u32(&s->running, 1);
    for (;;) {
        void *it = NULL;
        t->attempts++;
        enum weft__steal r = weft__deque_steal(&s->dq, &it);
        if (r == WEFT__STEAL_OK) {
            t->ok++;
            if (take(s, it)) {
                uint64_t id = id_of(it);
                /*
                 * Steals are totally ordered by the CAS on top and items
                 * at increasing indices were pushed in increasing id
                 * order, so one thief's ids must increase.
                 */
                if (have_prev && id <= prev) {
                    if (t->fifo_violations++ == 0) {
                        t->first_bad_prev = prev;
                        t->first_bad_id = id;
                    }
                }
                prev = id;
                have_prev = 1;
            }
        } else if (r == WEFT__STEAL_EMPTY) {
            t->empty++;
            /*
             * Pairs with: weft__store_rel_u32(&s->done) in owner_run();
             * once it is seen, the deque only drains.
             */
            if (weft__load_acq_u32(&s->done) != 0) {
                return NULL;
            }
            /* Vary the interleavings a little, deterministically per
             * seed: sometimes yield, sometimes spin a few pauses. */
            uint64_t x = rng_next(&t->rng);
            if ((x & 63) == 0) {
                sched_yield();
            } else {
                for (uint64_t i = x & 7; i > 0; i--) {
                    weft__cpu_relax();
                }
            }
        } else {
            t->retry++;
        }
    }
}

struct owner_stats {
    uint64_t pushes, pops, pop_null, lifo_violations;
    uint64_t first_bad_expected, first_bad_got;
    int64_t max_size;
};

/*
 * The owner: a random walk of push bursts and pop bursts. Most bursts are
 * short (the deque hovers around 0-2 items, where pop and steal race for
 * the last item); some are long (up to 2^burst_log2, so that grow runs).
 * shadow[i] is the id the owner pushed at index i, so each pop can be
 * checked against the item at bottom - 1.
 */
static void
owner_run(struct stress *s, uint64_t ops, uint64_t seed,
          unsigned int burst_log2, struct owner_stats *st)
{
    const uint64_t smask = ((uint64_t)1 << SHADOW_LOG2) - 1;
    uint64_t *shadow = calloc(smask + 1, sizeof(*shadow));
    uint64_t rng = seed;
    uint64_t done_ops = 0;
    if (shadow == NULL) {
        fprintf(stderr, "stress_deque: out of memory\n");
        exit(2);
    }
    memset(st, 0, sizeof(*st));

    while (done_ops < ops) {
        uint64_t x = rng_next(&rng);
        uint64_t len;
        if ((x & 15) == 0) {
            len = 1 + ((x >> 8) & (((uint64_t)1 << burst_log2) - 1));
        } else {
            len = 1 + ((x >> 8) & 3);
        }
        int push = (x >> 4) & 1;
        /* Keep the walk bounded (and within the shadow array). */
        if (weft__deque_size_hint(&s->dq) > ((int64_t)1 << (burst_log2 + 2))) {
            push = 0;
        }
        /*
         * Now and then let the thieves catch up, so that steals land
         * between the owner's operations and not only during bursts.
         */
        if (((x >> 32) & 3) == 0) {
            for (uint64_t i = (x >> 40) & 63; i > 0; i--) {
                weft__cpu_relax();
            }
        }
        for (uint64_t k = 0; k < len && done_ops < ops; k++, done_ops++) {
            if (push && st->pushes < s->nitems) {
                /* Unpaired: the owner reads its own bottom. */
                int64_t b = weft__load_relaxed_i64(&s->dq.bottom);
                shadow[(uint64_t)b & smask] = st->pushes;
                if (weft__deque_push(&s->dq, item_of(st->pushes)) != WEFT_OK) {
                    fprintf(stderr, "stress_deque: push failed\n");
                    exit(2);
                }
                st->pushes++;
                int64_t size = weft__deque_size_hint(&s->dq);
                if (size > st->max_size) {
                    st->max_size = size;
                }
            } else {
                /* Unpaired: the owner reads its own bottom. */
                int64_t b = weft__load_relaxed_i64(&s->dq.bottom);
                void *it = weft__deque_pop(&s->dq);
                st->pops++;
                if (it == NULL) {
                    st->pop_null++;
                    continue;
                }
                uint64_t want = shadow[(uint64_t)(b - 1) & smask];
                if (take(s, it) && id_of(it) != want) {
                    if (st->lifo_violations++ == 0) {
                        st->first_bad_expected = want;
                        st->first_bad_got = id_of(it);
                    }
                }
            }
        }
    }
    /* The items left: pop them all; NULL means the deque is empty. */
    for (;;) {
        int64_t b = weft__load_relaxed_i64(&s->dq.bottom);
        void *it = weft__deque_pop(&s->dq);
        st->pops++;
        if (it == NULL) {
            st->pop_null++;
            break;
        }
        uint64_t want = shadow[(uint64_t)(b - 1) & smask];
        if (take(s, it) && id_of(it) != want) {
            if (st->lifo_violations++ == 0) {
                st->first_bad_expected = want;
                st->first_bad_got = id_of(it);
            }
        }
    }
    /* Pairs with: weft__load_acq_u32(&s->done) in thief_main(). */
    weft__store_rel_u32(&s->done, 1);
    free(shadow);
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

int
main(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t clock_seed =
        (uint64_t)now.tv_sec * 1000000007ULL ^ (uint64_t)now.tv_nsec;
    uint64_t seed = env_u64("WEFT_SEED", clock_seed);
    uint64_t ops = env_u64("WEFT_STRESS_OPS", DEFAULT_OPS);
    uint64_t nthieves = env_u64("WEFT_STRESS_THIEVES", 3);
    unsigned int log2cap = (unsigned int)env_u64("WEFT_STRESS_LOG2", 1);
    unsigned int burst_log2 = (unsigned int)env_u64("WEFT_STRESS_BURST", 12);

    if (nthieves < 1 || nthieves > MAX_THIEVES || burst_log2 < 1 ||
        burst_log2 >= SHADOW_LOG2 || ops < 2) {
        fprintf(stderr, "stress_deque: bad configuration\n");
        return 2;
    }
    printf("seed=%" PRIu64 "\n", seed);
    printf("stress_deque: %" PRIu64 " owner ops, %" PRIu64
           " thieves, initial capacity %u, bursts up to %u\n",
           ops, nthieves, 1u << log2cap, 1u << burst_log2);
    fflush(stdout);

    struct stress *s = alloc_lines(sizeof(*s));
    struct thief *t = alloc_lines(sizeof(*t) * (size_t)nthieves);
    if (s == NULL || t == NULL) {
        fprintf(stderr, "stress_deque: out of memory\n");
        return 2;
    }
    if (weft__deque_init(&s->dq, log2cap) != WEFT_OK) {
        fprintf(stderr, "stress_deque: deque_init(%u) failed\n", log2cap);
        return 2;
    }
    /* At most one push per op; about half of the ops push. */
    s->nitems = ops / 2;
    s->count = calloc((size_t)s->nitems, sizeof(*s->count));
    if (s->count == NULL) {
        fprintf(stderr, "stress_deque: out of memory\n");
        return 2;
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = 0; i < nthieves; i++) {
        t[i].s = s;
        t[i].rng = seed ^ (0x5851f42d4c957f2dULL * (i + 1));
        if (pthread_create(&t[i].th, NULL, thief_main, &t[i]) != 0) {
            fprintf(stderr, "stress_deque: pthread_create failed\n");
            return 2;
        }
    }
    /* Relaxed: the start gate only. */
    while (weft__load_relaxed_u32(&s->running) < (uint32_t)nthieves) {
        sched_yield();
    }
    struct owner_stats st;
    owner_run(s, ops, seed, burst_log2, &st);
    uint64_t attempts = 0, stolen = 0, empty = 0, retry = 0, fifo = 0;
    for (uint64_t i = 0; i < nthieves; i++) {
        pthread_join(t[i].th, NULL);
        attempts += t[i].attempts;
        stolen += t[i].ok;
        empty += t[i].empty;
        retry += t[i].retry;
        if (t[i].fifo_violations != 0 && fifo == 0) {
            printf("thief %" PRIu64 ": id %" PRIu64 " after id %" PRIu64 "\n",
                   i, t[i].first_bad_id, t[i].first_bad_prev);
        }
        fifo += t[i].fifo_violations;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;

    uint64_t lost = 0, dup = 0, first_lost = UINT64_MAX, first_dup = UINT64_MAX;
    for (uint64_t i = 0; i < st.pushes; i++) {
        if (s->count[i] == 0) {
            if (lost++ == 0) {
                first_lost = i;
            }
        } else if (s->count[i] > 1) {
            if (dup++ == 0) {
                first_dup = i;
            }
        }
    }
    int64_t cap = s->dq.buf->mask + 1;
    void *it = NULL;
    int empty_at_end = weft__deque_size_hint(&s->dq) == 0 &&
                       weft__deque_pop(&s->dq) == NULL &&
                       weft__deque_steal(&s->dq, &it) == WEFT__STEAL_EMPTY;

    printf("owner: %" PRIu64 " pushes, %" PRIu64 " pops (%" PRIu64
           " empty), max size %" PRId64 ", final capacity %" PRId64 "\n",
           st.pushes, st.pops, st.pop_null, st.max_size, cap);
    printf("thieves: %" PRIu64 " steal attempts, %" PRIu64 " stolen, %" PRIu64
           " empty, %" PRIu64 " retry\n",
           attempts, stolen, empty, retry);
    printf("total operations: %" PRIu64 " in %.2f s\n",
           st.pushes + st.pops + attempts, secs);
    printf("items: %" PRIu64 " pushed, %" PRIu64 " lost, %" PRIu64
           " taken more than once, %u invalid\n",
           st.pushes, lost, dup, s->bad);
    if (lost != 0) {
        printf("first lost id %" PRIu64 "\n", first_lost);
    }
    if (dup != 0) {
        printf("first duplicated id %" PRIu64 " (taken %u times)\n", first_dup,
               s->count[first_dup]);
    }
    if (st.lifo_violations != 0) {
        printf("owner pop: got id %" PRIu64 ", expected %" PRIu64 "\n",
               st.first_bad_got, st.first_bad_expected);
    }

    check(lost == 0, seed, "no item lost");
    check(dup == 0, seed, "no item taken twice");
    check(s->bad == 0, seed, "every taken item was a pushed item");
    check(st.lifo_violations == 0, seed,
          "owner pops return the item at bottom - 1 (LIFO)");
    check(fifo == 0, seed, "each thief's steals are in push order (FIFO)");
    check(cap > ((int64_t)1 << log2cap), seed,
          "the deque grew from its initial capacity");
    check(empty_at_end, seed, "the deque is empty after the drain");
    if (nfail != 0) {
        printf("seed=%" PRIu64 "\n", seed);
    }
    printf("%d passed, %d failed\n", npass, nfail);

    weft__deque_fini(&s->dq);
    free(s->count);
    free(t);
    free(s);
    return nfail == 0 ? 0 : 1;
}
