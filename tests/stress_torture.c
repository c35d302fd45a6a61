/*
 * stress_torture.c - seeded random task trees with exactly-once accounting
 * (plain C: runs under ThreadSanitizer).
 *
 * Each tree starts at a root task spawned from outside. A node expands
 * into 1-64 children (spawned from inside the task, on its worker's deque)
 * while it is shallower than depth 8 and the tree's task budget lasts;
 * otherwise it is a leaf. Every child gets a role drawn from the seed:
 *
 *   ~70% succeed   (leaves count 1, inner nodes the sum of their children)
 *   ~20% fail      (weft_task_fail, after joining its own children)
 *   ~10% cancelled, a third each:
 *     before  spawned with a token cancelled before the spawn: never runs
 *     while   spawned with a token the parent cancels once all its
 *             children are spawned; the body polls its token until it
 *             is cancelled, so it ends CANCELLED, having started (a thief
 *             ran it before the cancel) or not (has_started says which)
 *     after   spawned with a token the parent cancels after the child
 *             ended: the child keeps its own outcome
 *
 * and a way to be awaited: weft_join in reverse spawn order (the fork-join
 * fast path), weft_future_wait then release in spawn order, or detached
 * (out == NULL; only its release hook witnesses it). Every node has a
 * release hook.
 *
 * Checked, per node: the body ran at most once, and exactly once unless
 * the node was cancelled before it started; the release hook ran exactly
 * once; the future ended with the outcome its role and its body's own
 * record imply (succeeded with the right subtree count, failed with its
 * code, cancelled with has_started matching whether the body ran), never
 * another; and per tree the root's count equals the number of succeeding
 * leaves the body records say ran. Nothing may leak (weft__alloc_live()).
 *
 * Size: WEFT_TORTURE_TASKS tasks in all if set, else 2,000,000 (1,000,000
 * under TSan, ASan or WEFT_PERTURB), in trees of at most
 * 20,000 tasks, on executors of 1, 2 and 4 workers in turn. Seed: WEFT_SEED
 * if set, else the clock; printed first. No sleeps; the only clock read
 * (besides the seed) is the hang guard of the "while" bodies. The last
 * line is "N passed, N failed" (trees).
 *
 * Each body sums the values its awaited children's futures carried
 * (weft_join / weft_future_value); after the tree, that sum is recomputed
 * from the children's own records, so a value lost or misdelivered by a
 * future shows up as a wrong subtree count.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

#include "primitives/alloc.h"

#if defined(__SANITIZE_THREAD__)
#define TT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TT_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TT_SLOW 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TT_SLOW 1
#endif
#endif
#if defined(WEFT_PERTURB)
#define TT_SLOW 1
#endif

#if defined(TT_TSAN)
#define TT_DEFAULT_TASKS 1000000L
#elif defined(TT_SLOW)
#define TT_DEFAULT_TASKS 1000000L
#else
#define TT_DEFAULT_TASKS 2000000L
#endif

#define TT_TREE_MAX 20000 /* tasks per tree at most */
#define TT_MAX_DEPTH 8
#define TT_MAX_FANOUT 64
#define TT_FAIL_CODE (WEFT_EUSER + 3)
#define TT_HANG_NS (60ull * 1000000000ull) /* hang guard of every wait */

enum tt_role { R_SUCCEED, R_FAIL, R_CANCEL_BEFORE, R_CANCEL_WHILE,
               R_CANCEL_AFTER };
enum tt_wait { W_JOIN_REVERSE, W_WAIT_FORWARD, W_DETACHED };

/* One node of the tree; the array is reused by every tree. */
struct tt_node {
    uint8_t role;
    uint8_t wait;
    uint8_t depth;
    atomic_int body_runs;
    atomic_int hook_runs;
    atomic_int body_status; /* what the body returned (if it ran) */
    atomic_llong body_value;
    int first;  /* its children are nodes [first, first + nchild) */
    int nchild;
};

static struct tt_node nodes[TT_TREE_MAX];
static atomic_int next_node; /* nodes used by this tree */
static atomic_int failures;  /* checks failed in this tree */
static uint64_t seed;
static uint64_t tree_seed; /* written before each tree's root is spawned */

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
tt_fail(int id, const char *what)
{
    if (atomic_fetch_add(&failures, 1) < 10) {
        fprintf(stderr, "FAIL node %d (role %d, wait %d, depth %d): %s\n",
                id, nodes[id].role, nodes[id].wait, nodes[id].depth, what);
    }
}

/*
 * Tasks of the current tree whose release hook has not run yet: raised
 * before each spawn, lowered by the hook. A task can only spawn while its
 * own hook is pending, so zero means the whole tree, detached subtrees
 * included, has ended (the per-node hook counts cannot say that: a
 * detached subtree may still reserve and reset nodes after the root ends,
 * and a node not yet reset still shows the previous tree's count).
 */
static atomic_long tt_outstanding;

static void
tt_hook(void *arg)
{
    int id = (int)(intptr_t)arg;
    atomic_fetch_add(&nodes[id].hook_runs, 1);
    atomic_fetch_sub(&tt_outstanding, 1);
}

static weft_status_t tt_body(weft_task_t *self, void *arg,
                             weft_value_t *out);

/* Reserve up to `want` node ids; returns the first, and *got. */
static int
tt_reserve(int want, int *got)
{
    int first = atomic_fetch_add(&next_node, want);
    if (first >= TT_TREE_MAX) {
        *got = 0;
        return -1;
    }
    *got = first + want <= TT_TREE_MAX ? want : TT_TREE_MAX - first;
    return first;
}

/* Check the ended future of child id (before it is released). */
static void
tt_check_child(int id, weft_future_t *f)
{
    struct tt_node *n = &nodes[id];
    if (!weft_future_is_done(f)) {
        tt_fail(id, "awaited future not done");
        return;
    }
    /* The release hook runs before the outcome is published. */
    if (atomic_load(&n->hook_runs) != 1) {
        tt_fail(id, "release hook not run exactly once at the end");
    }
    int ran = atomic_load(&n->body_runs);
    weft_outcome_t o = weft_future_outcome(f);
    if (ran > 1) {
        tt_fail(id, "body ran twice");
    }
    if (weft_future_has_started(f) != (ran == 1)) {
        tt_fail(id, "has_started disagrees with the body");
    }
    if (ran == 0) {
        if (o != WEFT_OUTCOME_CANCELLED) {
            tt_fail(id, "body never ran, yet not cancelled");
        }
        if (n->role != R_CANCEL_BEFORE && n->role != R_CANCEL_WHILE) {
            tt_fail(id, "a task nobody cancelled never ran");
        }
        return;
    }
    weft_status_t st = atomic_load(&n->body_status);
    weft_value_t v = {.i64 = -1};
    switch (st) {
    case WEFT_OK:
        if (o != WEFT_OUTCOME_SUCCEEDED ||
            weft_future_value(f, &v) != WEFT_OK ||
            v.i64 != atomic_load(&n->body_value)) {
            tt_fail(id, "returned OK, future does not say so");
        }
        break;
    case WEFT_ECANCELED:
        if (o != WEFT_OUTCOME_CANCELLED || n->role != R_CANCEL_WHILE) {
            tt_fail(id, "cancelled outcome wrong");
        }
        break;
    default:
        if (o != WEFT_OUTCOME_FAILED || weft_future_status(f) != st ||
            weft_error_status(weft_future_error(f)) != (int)st) {
            tt_fail(id, "failed outcome wrong");
        }
        break;
    }
    if (n->role == R_CANCEL_BEFORE) {
        tt_fail(id, "ran although cancelled before the spawn");
    }
}

static weft_status_t
tt_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    int id = (int)(intptr_t)arg;
    struct tt_node *n = &nodes[id];
    atomic_fetch_add(&n->body_runs, 1);
    uint64_t rng = mix(tree_seed ^ ((uint64_t)id * 0x9e3779b97f4a7c15ull));

    if (n->role == R_CANCEL_WHILE) {
        /* Poll the token until it is cancelled. The parent cancels it as
         * soon as it has spawned all its children, without waiting for
         * anything, so this can only be running before the cancel when
         * another worker stole it; run by the parent itself (while it
         * awaits) it is cancelled before it starts and never runs. */
        uint64_t t0 = 0;
        for (unsigned i = 0;; i++) {
            if (weft_task_is_cancelled(self)) {
                atomic_store(&n->body_status, WEFT_ECANCELED);
                return WEFT_ECANCELED;
            }
            if ((i & 255) == 255) {
                uint64_t t = now_ns();
                if (t0 == 0) {
                    t0 = t;
                } else if (t - t0 > TT_HANG_NS) {
                    tt_fail(id, "hang: token never seen cancelled");
                    atomic_store(&n->body_status, WEFT_ECANCELED);
                    return WEFT_ECANCELED;
                }
                sched_yield();
            }
        }
    }

    /* Expand? Probability falls with depth; the budget caps the tree. */
    int nchild = 0;
    int first = -1;
    if (n->depth < TT_MAX_DEPTH && (rng % 8) < (uint64_t)(8 - n->depth)) {
        int want = 1 + (int)(mix(rng) % TT_MAX_FANOUT);
        first = tt_reserve(want, &nchild);
    }
    int64_t sum = 0;
    if (nchild == 0) {
        sum = 1; /* a leaf */
    } else {
        weft_executor_t *ex = weft_task_executor(self);
        weft_future_t *fs[TT_MAX_FANOUT];
        weft_token_t *toks[TT_MAX_FANOUT];
        for (int k = 0; k < nchild; k++) {
            int cid = first + k;
            struct tt_node *c = &nodes[cid];
            uint64_t r = mix(rng ^ (uint64_t)(k + 1) * 0xd1b54a32d192ed03ull);
            int p = (int)(r % 100);
            c->role = p < 70   ? R_SUCCEED
                      : p < 90 ? R_FAIL
                      : p < 93 ? R_CANCEL_BEFORE
                      : p < 97 ? R_CANCEL_WHILE
                               : R_CANCEL_AFTER;
            c->wait = (uint8_t)((r >> 8) % 3);
            if (c->role == R_CANCEL_AFTER && c->wait == W_DETACHED) {
                c->wait = W_WAIT_FORWARD; /* needs to know when it ended */
            }
            c->depth = (uint8_t)(n->depth + 1);
            atomic_store(&c->body_runs, 0);
            atomic_store(&c->hook_runs, 0);
            c->first = 0;
            c->nchild = 0;
            toks[k] = NULL;
            if (c->role >= R_CANCEL_BEFORE) {
                if (weft_token_create(NULL, &toks[k]) != WEFT_OK) {
                    tt_fail(cid, "token_create");
                }
                if (c->role == R_CANCEL_BEFORE) {
                    weft_token_cancel(toks[k], NULL);
                }
            }
            weft_spawn_opts_t o = {.release = tt_hook, .name = "tt",
                                   .token = toks[k], WEFT_SPAWN_SITE};
            fs[k] = NULL;
            atomic_fetch_add(&tt_outstanding, 1);
            weft_status_t st =
                weft_spawn_ex(ex, &o, tt_body, (void *)(intptr_t)cid,
                              c->wait == W_DETACHED ? NULL : &fs[k]);
            if (st != WEFT_OK) {
                tt_fail(cid, "spawn refused");
            }
        }
        for (int k = 0; k < nchild; k++) {
            if (nodes[first + k].role == R_CANCEL_WHILE) {
                weft_token_cancel(toks[k], NULL);
            }
        }
        /* Await: forward waits first, then reverse joins. */
        for (int k = 0; k < nchild; k++) {
            int cid = first + k;
            if (nodes[cid].wait != W_WAIT_FORWARD) {
                continue;
            }
            weft_future_wait(fs[k]);
            tt_check_child(cid, fs[k]);
            weft_value_t v;
            if (weft_future_value(fs[k], &v) == WEFT_OK) {
                sum += v.i64;
            }
            if (nodes[cid].role == R_CANCEL_AFTER) {
                if (weft_token_cancel(toks[k], NULL) != WEFT_OK) {
                    tt_fail(cid, "cancel after: token was cancelled");
                }
                tt_check_child(cid, fs[k]); /* nothing changed */
            }
            weft_future_release(fs[k]);
        }
        for (int k = nchild - 1; k >= 0; k--) {
            int cid = first + k;
            if (nodes[cid].wait != W_JOIN_REVERSE) {
                continue;
            }
            /* Half the joins check through a second reference; the
             * others hold the only one, so the fork-join fast path (run
             * inline, recycle) can take them. */
            bool second = (mix(rng ^ (uint64_t)cid) & 1) != 0;
            if (second) {
                weft_future_retain(fs[k]);
            }
            weft_value_t v = {.i64 = -1};
            weft_status_t st = weft_join(fs[k], &v);
            if (st == WEFT_OK) {
                sum += v.i64;
            }
            struct tt_node *c = &nodes[cid];
            if (atomic_load(&c->hook_runs) != 1) {
                tt_fail(cid, "joined, release hook not run once");
            }
            int ran = atomic_load(&c->body_runs);
            if (ran == 1 ? st != (weft_status_t)atomic_load(&c->body_status)
                         : st != WEFT_ECANCELED) {
                tt_fail(cid, "join status disagrees with the body");
            }
            if (st == WEFT_OK && v.i64 != atomic_load(&c->body_value)) {
                tt_fail(cid, "join value disagrees with the body");
            }
            if (second) {
                tt_check_child(cid, fs[k]);
            }
            if (c->role == R_CANCEL_AFTER) {
                if (weft_token_cancel(toks[k], NULL) != WEFT_OK) {
                    tt_fail(cid, "cancel after: token was cancelled");
                }
                if (second) {
                    tt_check_child(cid, fs[k]); /* nothing changed */
                }
            }
            if (second) {
                weft_future_release(fs[k]);
            }
        }
        for (int k = 0; k < nchild; k++) {
            if (toks[k] != NULL) {
                weft_token_release(toks[k]);
            }
        }
        n->first = first;
        n->nchild = nchild;
    }
    if (n->role == R_FAIL) {
        atomic_store(&n->body_status, TT_FAIL_CODE);
        return weft_task_fail(self, TT_FAIL_CODE, "node %d failed", id);
    }
    atomic_store(&n->body_value, sum);
    atomic_store(&n->body_status, WEFT_OK);
    out->i64 = sum;
    return WEFT_OK;
}

static long
env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v != NULL && atol(v) > 0 ? atol(v) : def;
}

int
main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *sv = getenv("WEFT_SEED");
    seed = sv != NULL ? strtoull(sv, NULL, 0) : now_ns();
    long total = env_long("WEFT_TORTURE_TASKS", TT_DEFAULT_TASKS);
    printf("stress_torture: seed %llu (WEFT_SEED), %ld tasks\n",
           (unsigned long long)seed, total);
    static const unsigned int worker_counts[] = {1, 2, 4};
    long tasks = 0;
    long trees = 0;
    long failed_trees = 0;
    long counts[5] = {0, 0, 0, 0, 0};
    long started_cancelled = 0;
    long saw_cancel = 0;
    uint64_t t0 = now_ns();
    int64_t live0 = weft__alloc_live();
    for (unsigned int wi = 0; tasks < total; wi++) {
        weft_executor_config_t cfg;
        weft_executor_config_init(&cfg);
        cfg.num_workers = worker_counts[wi % 3];
        weft_executor_t *ex = NULL;
        if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
            fprintf(stderr, "executor_create failed\n");
            return 1;
        }
        /* A batch of trees per executor. */
        for (int b = 0; b < 8 && tasks < total; b++) {
            uint64_t tseed = mix(seed + (uint64_t)trees);
            atomic_store(&failures, 0);
            atomic_store(&next_node, 1);
            struct tt_node *root = &nodes[0];
            root->role = R_SUCCEED;
            root->wait = W_JOIN_REVERSE;
            root->depth = 0;
            atomic_store(&root->body_runs, 0);
            atomic_store(&root->hook_runs, 0);
            tree_seed = tseed;
            root->first = 0;
            root->nchild = 0;
            weft_spawn_opts_t o = {.release = tt_hook, .name = "root",
                                   WEFT_SPAWN_SITE};
            weft_future_t *rf = NULL;
            atomic_fetch_add(&tt_outstanding, 1);
            if (weft_spawn_ex(ex, &o, tt_body, (void *)(intptr_t)0, &rf) !=
                WEFT_OK) {
                tt_fail(0, "root spawn");
            } else {
                weft_future_wait(rf);
                tt_check_child(0, rf);
                weft_future_release(rf);
            }
            /* Quiesce: detached children may still run (and spawn); a
             * shutdown-free way is to wait for every hook. */
            uint64_t w0 = now_ns();
            while (atomic_load(&tt_outstanding) != 0) {
                if (now_ns() - w0 > TT_HANG_NS) {
                    tt_fail(0, "hang: some release hook never ran");
                    break;
                }
                sched_yield();
            }
            int used = atomic_load(&next_node);
            if (used > TT_TREE_MAX) {
                used = TT_TREE_MAX;
            }
            for (int id = 0; id < used; id++) {
                while (atomic_load(&nodes[id].hook_runs) == 0) {
                    if (now_ns() - w0 > TT_HANG_NS) {
                        tt_fail(id, "hang: release hook never ran");
                        break;
                    }
                    sched_yield();
                }
            }
            for (int id = 0; id < used; id++) {
                struct tt_node *n = &nodes[id];
                if (atomic_load(&n->hook_runs) != 1) {
                    tt_fail(id, "release hook count");
                }
                int ran = atomic_load(&n->body_runs);
                if (ran > 1 || (ran == 0 && n->role != R_CANCEL_BEFORE &&
                                n->role != R_CANCEL_WHILE)) {
                    tt_fail(id, "body count");
                }
                if (ran == 1 && n->role == R_CANCEL_BEFORE) {
                    tt_fail(id, "cancelled before start, yet ran");
                }
                /* The value it returned is what its awaited children's
                 * futures carried: recompute it from their records. */
                if (ran == 1 &&
                    atomic_load(&n->body_status) == WEFT_OK) {
                    long long want = n->nchild == 0 ? 1 : 0;
                    for (int k = 0; k < n->nchild; k++) {
                        struct tt_node *c = &nodes[n->first + k];
                        if (c->wait != W_DETACHED &&
                            atomic_load(&c->body_runs) == 1 &&
                            atomic_load(&c->body_status) == WEFT_OK) {
                            want += atomic_load(&c->body_value);
                        }
                    }
                    if (atomic_load(&n->body_value) != want) {
                        tt_fail(id, "subtree count");
                    }
                }
                counts[n->role]++;
                started_cancelled += n->role == R_CANCEL_WHILE && ran == 1;
                saw_cancel += n->role == R_CANCEL_WHILE && ran == 1 &&
                              atomic_load(&n->body_status) == WEFT_ECANCELED;
            }
            tasks += used;
            trees++;
            failed_trees += atomic_load(&failures) != 0;
        }
        if (weft_executor_destroy(ex) != WEFT_OK) {
            fprintf(stderr, "executor_destroy failed\n");
            failed_trees++;
        }
    }
    int64_t leaked = weft__alloc_live() - live0;
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("stress_torture: %ld tasks in %ld trees in %.2f s (%.0f tasks/s)\n",
           tasks, trees, secs, (double)tasks / secs);
    printf("stress_torture: roles: %ld succeed, %ld fail, %ld cancelled "
           "before start, %ld cancel-while-running (%ld started, %ld saw the "
           "cancel), "
           "%ld cancelled after the end\n",
           counts[R_SUCCEED], counts[R_FAIL], counts[R_CANCEL_BEFORE],
           counts[R_CANCEL_WHILE], started_cancelled, saw_cancel,
           counts[R_CANCEL_AFTER]);
    if (leaked != 0) {
        fprintf(stderr, "FAIL: %lld blocks leaked\n", (long long)leaked);
        failed_trees++;
    }
    printf("%ld passed, %ld failed\n", trees - failed_trees, failed_trees);
    return failed_trees == 0 ? 0 : 1;
}
