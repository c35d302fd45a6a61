/*
 * stress_debug.c - debug mode under concurrency (plain C: runs under
 * ThreadSanitizer, where Criterion cannot; tests/test_debug.c holds the
 * behaviour-named cases).
 *
 * Each round makes a debug-mode executor (2 or 4 workers) and, while a
 * binary tree of tasks runs on it, two observer threads read the registry
 * as fast as they can: one dumps the live task tree, the other takes the
 * report. The tree exercises every registry path at once: spawns from
 * workers (records linked under their parent task), futures cancelled
 * with weft_future_cancel() while the dump may read their request, tasks
 * that make their own token (weft_task_token), continuations, a group
 * destroyed without join, futures released without being awaited
 * (freed by whichever thread ends them) and detached failures.
 *
 * Checked per round, after the tree is joined and the executor shut down:
 *   - every body ran exactly once and every release hook ran once;
 *   - the report counts exactly the leaks the tree made: one
 *     "not_awaited" per leaf, one "error_not_observed" per detached
 *     failure, one "group_not_joined" per round; nothing else and nothing
 *     untracked;
 *   - the dump and the report wrote well-formed output (balanced braces
 *     and strings) every time, and each observer ran at least once;
 *   - destroy returns WEFT_OK and weft__alloc_live() is back where it was.
 * Which internal nodes cancel a child, make their own token or register a
 * continuation is drawn from the seed (WEFT_SEED, else the clock; printed)
 * and the node's position, so a failing round can be replayed.
 *
 * Rounds: WEFT_STRESS_TRIALS if set, else 12 (4 under sanitizers or
 * WEFT_PERTURB). Ends with "N passed, N failed" (rounds); exit status 0
 * only when none failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft.h>

#include "primitives/alloc.h"

#include "stress_common.h" /* STRESS_SANITIZED */

#define DEPTH 9 /* 2^9 leaves per round */

static uint64_t seed;
static atomic_long bodies;
static atomic_long spawned; /* accepted spawns, continuations included */
static atomic_long hooks;
static atomic_long hook_spawns; /* spawns that carry the release hook */
static atomic_long leaks;
static atomic_long detached_failures;
static atomic_long unstarted; /* victims cancelled before they started */
static long failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr,                                                    \
                    "stress_debug: %s:%d: check failed: %s: ", __FILE__,       \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, " (WEFT_SEED=%llu)\n", (unsigned long long)seed);  \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static uint64_t
mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void
hook(void *arg)
{
    (void)arg;
    atomic_fetch_add(&hooks, 1);
}

static weft_status_t
leaf_ok(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    atomic_fetch_add(&bodies, 1);
    out->i64 = 1;
    return WEFT_OK;
}

static weft_status_t
leaf_fail(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    atomic_fetch_add(&bodies, 1);
    return weft_task_fail(self, WEFT_EUSER, "detached failure");
}

/* Runs until cancelled or for a bounded number of polls. */
static weft_status_t
victim(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    atomic_fetch_add(&bodies, 1);
    for (int i = 0; i < 1000; i++) {
        if (weft_task_is_cancelled(self)) {
            return WEFT_ECANCELED;
        }
    }
    out->i64 = 1;
    return WEFT_OK;
}

static weft_status_t
member_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 1;
    return WEFT_OK;
}

static weft_status_t
cont_ok(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    atomic_fetch_add(&bodies, 1);
    out->i64 = 1;
    return WEFT_OK;
}

static bool
spawn_named(weft_executor_t *ex, const char *name, weft_fn_t fn, void *arg,
            weft_token_t *tok, weft_future_t **out)
{
    weft_spawn_opts_t o = {
        .release = hook, .name = name, .token = tok, WEFT_SPAWN_SITE};
    atomic_fetch_add(&hook_spawns, 1);
    weft_status_t st = weft_spawn_ex(ex, &o, fn, arg, out);
    CHECK(st == WEFT_OK, "spawn %s: %s", name, weft_status_name(st));
    if (st == WEFT_OK) {
        atomic_fetch_add(&spawned, 1);
    }
    return st == WEFT_OK;
}

static weft_status_t node(weft_task_t *self, void *arg, weft_value_t *out);

/* arg encodes depth (low 8 bits) and position. */
static weft_status_t
node(weft_task_t *self, void *arg, weft_value_t *out)
{
    atomic_fetch_add(&bodies, 1);
    uintptr_t a = (uintptr_t)arg;
    unsigned int depth = (unsigned int)(a & 0xff);
    uint64_t pos = a >> 8;
    weft_executor_t *ex = weft_task_executor(self);
    uint64_t r = mix(seed ^ (pos * 131 + depth));
    out->i64 = 1;
    if (depth == DEPTH) {
        weft_future_t *f = NULL;
        if (spawn_named(ex, "leak", leaf_ok, NULL, NULL, &f)) {
            atomic_fetch_add(&leaks, 1);
            (void)weft_future_release(f); /* never awaited */
        }
        if ((r & 7) == 0 &&
            spawn_named(ex, "detached-failure", leaf_fail, NULL, NULL, NULL)) {
            atomic_fetch_add(&detached_failures, 1);
        }
        return WEFT_OK;
    }
    weft_token_t *own = (r & 1) != 0 ? weft_task_token(self) : NULL;
    weft_future_t *kids[2] = {NULL, NULL};
    for (uintptr_t i = 0; i < 2; i++) {
        uintptr_t ca = ((pos * 2 + i) << 8) | (depth + 1);
        (void)spawn_named(ex, i == 0 ? "left" : "right", node, (void *)ca, own,
                          &kids[i]);
    }
    weft_future_t *v = NULL;
    if ((r & 2) != 0 && spawn_named(ex, "victim", victim, NULL, NULL, &v)) {
        (void)weft_future_cancel(v, NULL);
    }
    weft_future_t *c = NULL;
    if ((r & 4) != 0 && kids[0] != NULL &&
        weft_future_then(kids[0], cont_ok, NULL, &c) == WEFT_OK) {
        atomic_fetch_add(&spawned, 1);
    }
    if (depth == 1 && pos == 0) {
        weft_group_t *g = NULL;
        weft_group_opts_t go;
        memset(&go, 0, sizeof(go));
        go.name = "unjoined";
        CHECK(weft_group_create(ex, &go, &g) == WEFT_OK, "group");
        if (g != NULL) {
            /* The member may never start (destroy cancels the group);
             * only its release hook is counted. */
            atomic_fetch_add(&hook_spawns, 1);
            weft_spawn_opts_t o = {.release = hook, .name = "member"};
            (void)weft_group_spawn(g, &o, member_body, NULL, NULL);
            (void)weft_group_destroy(g); /* no join */
        }
    }
    for (int i = 0; i < 2; i++) {
        if (kids[i] != NULL) {
            CHECK(weft_join(kids[i], NULL) == WEFT_OK, "join child");
        }
    }
    if (v != NULL) {
        weft_status_t vs = weft_future_wait(v);
        CHECK(vs == WEFT_OK || vs == WEFT_ECANCELED, "victim: %s",
              weft_status_name(vs));
        if (!weft_future_has_started(v)) {
            atomic_fetch_add(&unstarted, 1);
        }
        (void)weft_future_release(v);
    }
    if (c != NULL) {
        CHECK(weft_join(c, NULL) == WEFT_OK, "continuation");
    }
    return WEFT_OK;
}

/* Output sink that checks the braces balance and counts bytes. */
struct observer {
    weft_executor_t *ex;
    atomic_int stop;
    long dumps;
    long reports;
    bool bad;
    bool report;
};

static bool
balanced(const char *s, size_t n)
{
    long depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0) {
                return false;
            }
        }
    }
    return depth == 0 && !in_str && n > 0;
}

static void *
observe(void *arg)
{
    struct observer *o = arg;
    do {
        char *buf = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&buf, &len);
        if (fp == NULL) {
            o->bad = true;
            return NULL;
        }
        weft_status_t st;
        if (o->report) {
            weft_debug_summary_t sum;
            st = weft_executor_debug_report(o->ex, fp, &sum);
            o->reports++;
        } else {
            st = weft_executor_dump_tasks(o->ex, fp);
            o->dumps++;
        }
        fclose(fp);
        if (st != WEFT_OK || !balanced(buf, len)) {
            o->bad = true;
        }
        free(buf);
    } while (!atomic_load(&o->stop));
    return NULL;
}

static void
round_run(unsigned int workers, long round)
{
    int64_t live = weft__alloc_live();
    atomic_store(&bodies, 0);
    atomic_store(&spawned, 0);
    atomic_store(&hooks, 0);
    atomic_store(&hook_spawns, 0);
    atomic_store(&leaks, 0);
    atomic_store(&detached_failures, 0);
    atomic_store(&unstarted, 0);
    long before = failures;

    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = workers;
    c.debug_tasks = true;
    weft_executor_t *ex = NULL;
    CHECK(weft_executor_create(&c, &ex) == WEFT_OK, "create");
    if (ex == NULL) {
        return;
    }
    struct observer od = {.ex = ex, .report = false};
    struct observer orp = {.ex = ex, .report = true};
    pthread_t td, tr;
    pthread_create(&td, NULL, observe, &od);
    pthread_create(&tr, NULL, observe, &orp);

    weft_value_t v;
    CHECK(weft_executor_run(ex, node, (void *)(uintptr_t)0, &v) == WEFT_OK,
          "root");
    atomic_fetch_add(&spawned, 1);
    CHECK(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN) == WEFT_OK,
          "shutdown");
    atomic_store(&od.stop, 1);
    atomic_store(&orp.stop, 1);
    pthread_join(td, NULL);
    pthread_join(tr, NULL);
    CHECK(!od.bad && !orp.bad, "observer saw a bad dump or report");

    weft_debug_summary_t sum;
    CHECK(weft_executor_debug_report(ex, NULL, &sum) == WEFT_OK, "report");
    CHECK(sum.not_awaited == (size_t)atomic_load(&leaks),
          "not_awaited %zu, leaks %ld", sum.not_awaited, atomic_load(&leaks));
    CHECK(sum.errors_not_observed == (size_t)atomic_load(&detached_failures),
          "errors_not_observed %zu, detached failures %ld",
          sum.errors_not_observed, atomic_load(&detached_failures));
    CHECK(sum.groups_not_joined == 1, "groups_not_joined %zu",
          sum.groups_not_joined);
    CHECK(sum.alive == 0 && sum.untracked == 0 && sum.omitted == 0,
          "alive %zu untracked %zu omitted %zu", sum.alive, sum.untracked,
          sum.omitted);
    CHECK(atomic_load(&bodies) + atomic_load(&unstarted) ==
              atomic_load(&spawned),
          "bodies %ld, unstarted %ld, spawned %ld", atomic_load(&bodies),
          atomic_load(&unstarted), atomic_load(&spawned));
    CHECK(atomic_load(&hooks) == atomic_load(&hook_spawns),
          "hooks %ld, spawns with a hook %ld", atomic_load(&hooks),
          atomic_load(&hook_spawns));
    CHECK(weft_executor_destroy(ex) == WEFT_OK, "destroy");
    CHECK(weft__alloc_live() == live, "leaked %lld blocks",
          (long long)(weft__alloc_live() - live));
    if (failures != before) {
        fprintf(stderr, "stress_debug: round %ld (%u workers) failed\n", round,
                workers);
    }
    CHECK(od.dumps > 0 && orp.reports > 0, "observers ran");
}

int
main(void)
{
    const char *s = getenv("WEFT_SEED");
    seed = s != NULL ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    long rounds = 12;
#if defined(STRESS_SANITIZED) || defined(WEFT_PERTURB)
    rounds = 4;
#endif
    const char *t = getenv("WEFT_STRESS_TRIALS");
    if (t != NULL && atol(t) > 0) {
        rounds = atol(t);
    }
    printf("stress_debug: seed %llu, %ld rounds, tree depth %d\n",
           (unsigned long long)seed, rounds, DEPTH);
    long failed_rounds = 0;
    for (long i = 0; i < rounds; i++) {
        long before = failures;
        round_run(i % 2 == 0 ? 2u : 4u, i);
        failed_rounds += failures != before;
    }
    printf("%ld passed, %ld failed\n", rounds - failed_rounds, failed_rounds);
    return failed_rounds == 0 ? 0 : 1;
}
