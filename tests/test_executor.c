/*
 * test_executor.c - Criterion suite for weft/executor.h: creation and
 * configuration, worker hooks and names, worker indices, statistics,
 * shutdown (DRAIN and CANCEL) under load, destroy, and bad input.
 *
 * Every concurrent check counts events with atomics and compares sums at
 * the end; nothing waits on a timer. A spin-wait below always waits for a
 * state another thread is guaranteed to reach (the suite timeout only
 * guards against a hang). Criterion's asserts are only used on the test's
 * main thread: task bodies and hooks record what they saw in atomics.
 */
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/status.h>

#include <criterion/criterion.h>

#include "executor/executor.h" /* WEFT__SLAB_OBJECTS, WEFT__SLAB_OBJECTS_MAX */
#include "primitives/alloc.h"  /* weft__alloc_live() */

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(executor, .timeout = 30.0);

#define MAX_W 8

/* ---- helpers --------------------------------------------------------- */

static weft_executor_t *
make_ex(unsigned int n)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = n;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    cr_assert_not_null(ex);
    return ex;
}

static void
spin_until_int(atomic_int *v, int at_least)
{
    while (atomic_load(v) < at_least) {
        sched_yield();
    }
}

static weft_status_t
body_return_arg(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    result->i64 = (int64_t)(intptr_t)arg;
    return WEFT_OK;
}

static weft_status_t
body_noop(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)arg;
    (void)result;
    return WEFT_OK;
}

/* ---- creation -------------------------------------------------------- */

Test(executor, create_with_null_config_uses_defaults)
{
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(NULL, &ex), WEFT_OK);
    cr_assert_not_null(ex);
    unsigned int n = weft_executor_num_workers(ex);
    cr_assert(n >= 1 && n <= 4096, "num_workers %u", n);
    weft_value_t v = {0};
    cr_assert_eq(
        weft_executor_run(ex, body_return_arg, (void *)(intptr_t)7, &v),
        WEFT_OK);
    cr_assert_eq(v.i64, 7);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, create_with_initialized_config_uses_defaults)
{
    weft_executor_config_t cfg;
    memset(&cfg, 0xA5, sizeof(cfg));
    weft_executor_config_init(&cfg);
    cr_assert_eq(cfg.num_workers, 0u);
    cr_assert_null(cfg.thread_name_prefix);
    cr_assert_null(cfg.on_worker_start);
    cr_assert_null(cfg.on_worker_stop);
    cr_assert_null(cfg.user_data);
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    cr_assert(weft_executor_num_workers(ex) >= 1);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, create_with_n_workers_has_n_workers_that_run_tasks)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        weft_executor_t *ex = make_ex(ns[k]);
        cr_assert_eq(weft_executor_num_workers(ex), ns[k]);
        for (int i = 0; i < 100; i++) {
            weft_value_t v = {0};
            cr_assert_eq(
                weft_executor_run(ex, body_return_arg, (void *)(intptr_t)i, &v),
                WEFT_OK);
            cr_assert_eq(v.i64, i);
        }
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

Test(executor, env_num_threads_is_honored_when_num_workers_is_zero)
{
    cr_assert_eq(setenv("WEFT_NUM_THREADS", "3", 1), 0);
    weft_executor_t *ex = make_ex(0);
    cr_assert_eq(weft_executor_num_workers(ex), 3u);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);

    ex = NULL;
    cr_assert_eq(weft_executor_create(NULL, &ex), WEFT_OK);
    cr_assert_eq(weft_executor_num_workers(ex), 3u);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, env_num_threads_is_ignored_when_num_workers_is_set)
{
    cr_assert_eq(setenv("WEFT_NUM_THREADS", "3", 1), 0);
    weft_executor_t *ex = make_ex(2);
    cr_assert_eq(weft_executor_num_workers(ex), 2u);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, env_num_threads_that_is_not_positive_falls_back_to_default)
{
    cr_assert_eq(unsetenv("WEFT_NUM_THREADS"), 0);
    weft_executor_t *ex = make_ex(0);
    unsigned int dflt = weft_executor_num_workers(ex);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);

    const char *bad[] = {"0", "-2", "abc", "3x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(setenv("WEFT_NUM_THREADS", bad[i], 1), 0);
        ex = make_ex(0);
        cr_assert_eq(weft_executor_num_workers(ex), dflt,
                     "WEFT_NUM_THREADS=\"%s\" gave %u workers, default %u",
                     bad[i], weft_executor_num_workers(ex), dflt);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

Test(executor, config_init_null_is_harmless)
{
    weft_executor_config_init(NULL);
}

Test(executor, create_with_null_out_is_einval)
{
    cr_assert_eq(weft_executor_create(NULL, NULL), WEFT_EINVAL);
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    cr_assert_eq(weft_executor_create(&cfg, NULL), WEFT_EINVAL);
}

Test(executor, create_with_more_than_4096_workers_is_einval)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    weft_executor_t *sentinel = (weft_executor_t *)(uintptr_t)0x1234;
    weft_executor_t *ex = sentinel;
    cfg.num_workers = 4097;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_EINVAL);
    cr_assert_eq(ex, sentinel, "*out must be untouched on failure");
    cfg.num_workers = 0xFFFFFFFFu;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_EINVAL);
    cr_assert_eq(ex, sentinel);
}

/*
 * A bounded unsigned field of the config: max + 1 and UINT_MAX are
 * refused with *out untouched, max is accepted. field points into cfg.
 */
static void
check_config_bound(weft_executor_config_t *cfg, unsigned int *field,
                   unsigned int max)
{
    weft_executor_t *sentinel = (weft_executor_t *)(uintptr_t)0x1234;
    weft_executor_t *ex = sentinel;
    *field = max + 1;
    cr_assert_eq(weft_executor_create(cfg, &ex), WEFT_EINVAL);
    cr_assert_eq(ex, sentinel, "*out must be untouched on failure");
    *field = 0xFFFFFFFFu;
    cr_assert_eq(weft_executor_create(cfg, &ex), WEFT_EINVAL);
    cr_assert_eq(ex, sentinel);
    *field = max; /* the largest accepted */
    cr_assert_eq(weft_executor_create(cfg, &ex), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, create_with_an_idle_spin_over_a_second_is_einval)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 1;
    check_config_bound(&cfg, &cfg.idle_spin_us, 1000000u);
}

Test(executor, create_with_a_steal_batch_over_32_is_einval)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 1;
    check_config_bound(&cfg, &cfg.steal_batch, 32);
}

/* A flat fan-out from one worker, with batch steals off (1) and at the
 * default (0: 32): every task runs exactly once, whichever worker ran it
 * and whether it came in a batch. */
#define FAN_N 20000
static atomic_int fan_runs[FAN_N];
static atomic_int fan_errors; /* a spawn or join that failed (worker side) */

static weft_status_t
fan_leaf(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    atomic_fetch_add(&fan_runs[(intptr_t)arg], 1);
    return WEFT_OK;
}

static weft_status_t
fan_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    static weft_future_t *futs[FAN_N];
    (void)arg;
    (void)result;
    weft_executor_t *ex = weft_task_executor(self);
    /* Criterion asserts only on the test's own thread: count. */
    for (intptr_t i = 0; i < FAN_N; i++) {
        if (weft_spawn(ex, fan_leaf, (void *)i, &futs[i]) != WEFT_OK) {
            atomic_fetch_add(&fan_errors, 1);
            futs[i] = NULL;
        }
    }
    for (intptr_t i = FAN_N - 1; i >= 0; i--) {
        if (futs[i] != NULL && weft_join(futs[i], NULL) != WEFT_OK) {
            atomic_fetch_add(&fan_errors, 1);
        }
    }
    return WEFT_OK;
}

Test(executor, a_fan_out_runs_each_task_once_with_and_without_batches)
{
    static const unsigned int batches[] = {1, 0};
    for (size_t b = 0; b < 2; b++) {
        weft_executor_config_t cfg;
        weft_executor_config_init(&cfg);
        cfg.num_workers = 3;
        cfg.steal_batch = batches[b];
        weft_executor_t *ex;
        cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
        for (int i = 0; i < FAN_N; i++) {
            atomic_store(&fan_runs[i], 0);
        }
        atomic_store(&fan_errors, 0);
        cr_assert_eq(weft_executor_run(ex, fan_root, NULL, NULL), WEFT_OK);
        cr_assert_eq(atomic_load(&fan_errors), 0);
        for (int i = 0; i < FAN_N; i++) {
            cr_assert_eq(atomic_load(&fan_runs[i]), 1,
                         "steal_batch %u: task %d ran %d times", batches[b], i,
                         atomic_load(&fan_runs[i]));
        }
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

/* ---- hooks and thread names ------------------------------------------ */

struct hook_rec {
    atomic_int start_calls[MAX_W];
    atomic_int stop_calls[MAX_W];
    atomic_int total_start;
    atomic_int total_stop;
    atomic_int bad_user;
    atomic_int bad_index;
    atomic_int stop_before_start;
    atomic_uintptr_t seen_ex[MAX_W];
    atomic_int index_in_hook[MAX_W]; /* worker_index(ex) seen in the hook */
    char names[MAX_W][32];           /* written by worker i only */
    unsigned int n;
};

static void
hook_start(weft_executor_t *ex, unsigned int index, void *user)
{
    struct hook_rec *r = user;
    if (r == NULL || r->n == 0) {
        return; /* user_data missing: counted as bad below */
    }
    if (index >= r->n) {
        atomic_fetch_add(&r->bad_index, 1);
        return;
    }
    atomic_store(&r->seen_ex[index], (uintptr_t)ex);
    atomic_store(&r->index_in_hook[index], weft_executor_worker_index(ex));
    char buf[32] = {0};
    if (pthread_getname_np(pthread_self(), buf, sizeof(buf)) == 0) {
        memcpy(r->names[index], buf, sizeof(buf));
    }
    atomic_fetch_add(&r->start_calls[index], 1);
    atomic_fetch_add(&r->total_start, 1);
}

static void
hook_stop(weft_executor_t *ex, unsigned int index, void *user)
{
    (void)ex;
    struct hook_rec *r = user;
    if (index >= r->n) {
        atomic_fetch_add(&r->bad_index, 1);
        return;
    }
    if (atomic_load(&r->start_calls[index]) != 1) {
        atomic_fetch_add(&r->stop_before_start, 1);
    }
    atomic_fetch_add(&r->stop_calls[index], 1);
    atomic_fetch_add(&r->total_stop, 1);
}

static atomic_int opaque_calls;
static atomic_uintptr_t opaque_user;

/* Records the user pointer it is given without dereferencing it. */
static void
hook_ignoring_user(weft_executor_t *ex, unsigned int index, void *user)
{
    (void)ex;
    (void)index;
    atomic_store(&opaque_user, (uintptr_t)user);
    atomic_fetch_add(&opaque_calls, 1);
}

static weft_executor_t *
make_hooked(struct hook_rec *r, unsigned int n, const char *prefix)
{
    memset(r, 0, sizeof(*r));
    r->n = n;
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = n;
    cfg.thread_name_prefix = prefix;
    cfg.on_worker_start = hook_start;
    cfg.on_worker_stop = hook_stop;
    cfg.user_data = r;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    return ex;
}

Test(executor, start_and_stop_hooks_run_once_per_worker_with_index_and_user)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        struct hook_rec r;
        unsigned int n = ns[k];
        weft_executor_t *ex = make_hooked(&r, n, NULL);
        spin_until_int(&r.total_start, (int)n);
        cr_assert_eq(atomic_load(&r.total_stop), 0,
                     "stop hook ran before destroy");
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
        cr_assert_eq(atomic_load(&r.bad_index), 0);
        cr_assert_eq(atomic_load(&r.stop_before_start), 0);
        cr_assert_eq(atomic_load(&r.total_start), (int)n);
        cr_assert_eq(atomic_load(&r.total_stop), (int)n);
        for (unsigned int i = 0; i < n; i++) {
            cr_assert_eq(atomic_load(&r.start_calls[i]), 1, "worker %u", i);
            cr_assert_eq(atomic_load(&r.stop_calls[i]), 1, "worker %u", i);
            cr_assert_eq(atomic_load(&r.seen_ex[i]), (uintptr_t)ex,
                         "hook got another executor pointer");
            cr_assert_eq(atomic_load(&r.index_in_hook[i]), (int)i,
                         "worker_index inside start hook of worker %u", i);
        }
    }
}

/*
 * weft_executor_create() is documented as "Blocking: until every worker
 * has started", and the start hook runs "right after it starts". So once
 * create returns, every start hook has run. The hook yields for a while to
 * make a create that returns early visible; a correct create passes
 * whatever the timing.
 */
static void
hook_start_slow(weft_executor_t *ex, unsigned int index, void *user)
{
    (void)ex;
    (void)index;
    for (int i = 0; i < 2000; i++) {
        sched_yield();
    }
    atomic_fetch_add((atomic_int *)user, 1);
}

Test(executor, create_returns_after_every_worker_started)
{
    atomic_int started = 0;
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 4;
    cfg.on_worker_start = hook_start_slow;
    cfg.user_data = &started;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    int seen = atomic_load(&started);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_expect_eq(seen, 4, "create returned when %d of 4 start hooks had run",
                 seen);
}

Test(executor, hooks_may_be_null_and_user_data_is_not_dereferenced)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    cfg.on_worker_start = hook_ignoring_user;
    cfg.user_data = (void *)(uintptr_t)0xdead; /* never dereferenced */
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    cr_assert_eq(weft_executor_run(ex, body_noop, NULL, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(atomic_load(&opaque_calls), 2);
    cr_assert_eq(atomic_load(&opaque_user), (uintptr_t)0xdead);
}

static void
expect_names(struct hook_rec *r, const char *prefix_used)
{
    for (unsigned int i = 0; i < r->n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "%s-%u", prefix_used, i);
        cr_assert_str_eq(r->names[i], want, "worker %u", i);
    }
}

Test(executor, worker_threads_are_named_prefix_dash_index)
{
    struct hook_rec r;
    weft_executor_t *ex = make_hooked(&r, 4, "pool");
    spin_until_int(&r.total_start, 4);
    expect_names(&r, "pool");

    /* The same names are visible in /proc/self/task/.../comm. */
    int found[4] = {0};
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char path[300];
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        FILE *fp = fopen(path, "r");
        if (fp == NULL) {
            continue;
        }
        char comm[64] = {0};
        if (fgets(comm, sizeof(comm), fp) != NULL) {
            comm[strcspn(comm, "\n")] = '\0';
            for (int i = 0; i < 4; i++) {
                char want[32];
                snprintf(want, sizeof(want), "pool-%d", i);
                if (strcmp(comm, want) == 0) {
                    found[i]++;
                }
            }
        }
        fclose(fp);
    }
    closedir(d);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(found[i], 1, "comm pool-%d seen %d times", i, found[i]);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, default_thread_name_prefix_is_weft)
{
    struct hook_rec r;
    weft_executor_t *ex = make_hooked(&r, 2, NULL);
    spin_until_int(&r.total_start, 2);
    expect_names(&r, "weft");
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, thread_name_prefix_is_cut_to_10_chars_and_copied)
{
    struct hook_rec r;
    char prefix[32];
    strcpy(prefix, "abcdefghijKLMNOP");
    weft_executor_t *ex = make_hooked(&r, 2, prefix);
    memset(prefix, 'z', sizeof(prefix) - 1); /* the string is copied */
    spin_until_int(&r.total_start, 2);
    expect_names(&r, "abcdefghij");
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- worker index ---------------------------------------------------- */

struct index_probe {
    weft_executor_t *ex;
    weft_executor_t *other;
    atomic_int idx;
    atomic_int other_idx;
};

static weft_status_t
body_index(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct index_probe *p = arg;
    (void)result;
    atomic_store(&p->idx, weft_executor_worker_index(p->ex));
    atomic_store(&p->other_idx, weft_executor_worker_index(p->other));
    if (weft_task_executor(self) != p->ex) {
        atomic_store(&p->idx, -100);
    }
    return WEFT_OK;
}

Test(executor, worker_index_is_minus_one_outside_and_in_range_inside)
{
    weft_executor_t *ex = make_ex(4);
    weft_executor_t *other = make_ex(1);
    cr_assert_eq(weft_executor_worker_index(ex), -1);
    cr_assert_eq(weft_executor_worker_index(NULL), -1);
    for (int i = 0; i < 200; i++) {
        struct index_probe p = {.ex = ex, .other = other};
        atomic_store(&p.idx, -7);
        atomic_store(&p.other_idx, -7);
        cr_assert_eq(weft_executor_run(ex, body_index, &p, NULL), WEFT_OK);
        int idx = atomic_load(&p.idx);
        cr_assert(idx >= 0 && idx < 4, "index %d", idx);
        cr_assert_eq(atomic_load(&p.other_idx), -1,
                     "a worker of ex is not a worker of another executor");
    }
    cr_assert_eq(weft_executor_destroy(other), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- statistics ------------------------------------------------------ */

#define STATS_CHILDREN 5000

static atomic_int stats_bodies;

static weft_status_t
body_count(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)arg;
    (void)result;
    atomic_fetch_add(&stats_bodies, 1);
    return WEFT_OK;
}

static weft_status_t
body_stats_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)arg;
    (void)result;
    weft_executor_t *ex = weft_task_executor(self);
    atomic_fetch_add(&stats_bodies, 1);
    weft_future_t *fs[100];
    int bad = 0;
    for (int k = 0; k < STATS_CHILDREN / 100; k++) {
        for (int i = 0; i < 100; i++) {
            if (weft_spawn(ex, body_count, NULL, &fs[i]) != WEFT_OK) {
                bad++;
                fs[i] = NULL;
            }
        }
        for (int i = 99; i >= 0; i--) {
            if (fs[i] != NULL && weft_join(fs[i], NULL) != WEFT_OK) {
                bad++;
            }
        }
    }
    return bad == 0 ? WEFT_OK : WEFT_EFAILED;
}

Test(executor, stats_counters_add_up)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        unsigned int n = ns[k];
        atomic_store(&stats_bodies, 0);
        weft_executor_t *ex = make_ex(n);
        cr_assert_eq(weft_executor_run(ex, body_stats_root, NULL, NULL),
                     WEFT_OK);
        /* After shutdown the executor is quiescent: counters are final. */
        cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
        uint64_t spawned = 0, executed = 0, injected = 0;
        for (unsigned int i = 0; i < n; i++) {
            weft_worker_stats_t st;
            memset(&st, 0xff, sizeof(st));
            cr_assert_eq(weft_executor_stats(ex, i, &st), WEFT_OK);
            cr_assert(st.executed <= (uint64_t)STATS_CHILDREN + 1,
                      "worker %u executed %llu", i,
                      (unsigned long long)st.executed);
            spawned += st.spawned;
            executed += st.executed;
            injected += st.injected;
        }
        cr_assert_eq(atomic_load(&stats_bodies), STATS_CHILDREN + 1);
        cr_assert_eq(spawned, (uint64_t)STATS_CHILDREN,
                     "%u workers: spawned sum %llu", n,
                     (unsigned long long)spawned);
        cr_assert(executed >= (uint64_t)STATS_CHILDREN,
                  "%u workers: executed sum %llu", n,
                  (unsigned long long)executed);
        cr_assert_eq(executed, (uint64_t)STATS_CHILDREN + 1,
                     "%u workers: executed sum %llu", n,
                     (unsigned long long)executed);
        cr_assert_eq(injected, 1u, "the root came from outside");
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

Test(executor, stats_rejects_bad_input)
{
    weft_executor_t *ex = make_ex(2);
    weft_worker_stats_t st;
    cr_assert_eq(weft_executor_stats(NULL, 0, &st), WEFT_EINVAL);
    cr_assert_eq(weft_executor_stats(ex, 0, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_stats(ex, 2, &st), WEFT_EINVAL);
    cr_assert_eq(weft_executor_stats(ex, 0xFFFFFFFFu, &st), WEFT_EINVAL);
    cr_assert_eq(weft_executor_stats(ex, 1, &st), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* A worker that has slept and woken up reports the time it slept: wait
 * (no timing assumption: the idle backstop wakes it) until one worker has
 * parked twice, so its first park has ended and been accounted. With
 * every idle spin setting (the default, the shortest, a longer one), the
 * spin ends and the worker sleeps. */
Test(executor, stats_count_idle_time)
{
    const unsigned int spins[] = {0, 1, 20000};
    for (size_t k = 0; k < sizeof(spins) / sizeof(spins[0]); k++) {
        weft_executor_config_t cfg;
        weft_executor_config_init(&cfg);
        cfg.num_workers = 1;
        cfg.idle_spin_us = spins[k];
        weft_executor_t *ex = NULL;
        cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
        weft_worker_stats_t st;
        do {
            cr_assert_eq(weft_executor_stats(ex, 0, &st), WEFT_OK);
            sched_yield();
        } while (st.parks < 2);
        cr_assert_gt(st.idle_ns, 0,
                     "idle_spin_us %u: parked %llu times, "
                     "idle %llu ns",
                     spins[k], (unsigned long long)st.parks,
                     (unsigned long long)st.idle_ns);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

/* ---- shutdown under load --------------------------------------------- */

/*
 * A load of task trees, every task spawned with weft_spawn_ex and a
 * release hook. Each task has an id; bodies[id], hooks[id] and
 * cancelled[id] count what happened to it (cancelled[id] is recorded by
 * whoever holds its future and saw it end CANCELLED). "Gated" roots block
 * their worker until the test opens the gate, which it does only after
 * shutdown has begun (an outside spawn was refused); then they spawn
 * children: the children spawned while the executor shuts down. With
 * every worker blocked in a gated root, the other roots wait in the
 * injection queue until the gate opens, so they have certainly not
 * started when shutdown is called.
 */
#define LOAD_MAX_IDS 100000
#define LOAD_FANOUT 3

struct load {
    weft_executor_t *ex;
    atomic_int next_id;
    atomic_uchar bodies[LOAD_MAX_IDS];
    atomic_uchar hooks[LOAD_MAX_IDS];
    atomic_uchar cancelled[LOAD_MAX_IDS];
    atomic_uchar gated_child[LOAD_MAX_IDS]; /* spawned by a gated root */
    atomic_int gate;
    atomic_int gated_waiting;
    atomic_int spawn_errors;
    atomic_int bad_status;
    atomic_int probe_bodies;
    atomic_int probe_hooks;
    int probes_accepted;
    int probes_refused;
};

struct load_arg {
    struct load *l;
    int id;
    int depth;
    int gated;
};

static void
load_release(void *p)
{
    struct load_arg *a = p;
    atomic_fetch_add(&a->l->hooks[a->id], 1);
    free(a);
}

static weft_status_t load_body(weft_task_t *self, void *arg,
                               weft_value_t *result);

/* Spawn a load task; *id gets its id. */
static weft_status_t
load_spawn(struct load *l, int depth, int gated, weft_future_t **out,
           int *id_out)
{
    int id = atomic_fetch_add(&l->next_id, 1);
    if (id >= LOAD_MAX_IDS) {
        return WEFT_ERANGE;
    }
    struct load_arg *a = malloc(sizeof(*a));
    if (a == NULL) {
        return WEFT_ENOMEM;
    }
    a->l = l;
    a->id = id;
    a->depth = depth;
    a->gated = gated;
    *id_out = id;
    weft_spawn_opts_t opts = {.release = load_release, .name = "load"};
    return weft_spawn_ex(l->ex, &opts, load_body, a, out);
}

static weft_status_t
load_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    struct load_arg *a = arg;
    struct load *l = a->l;
    atomic_fetch_add(&l->bodies[a->id], 1);
    if (a->gated) {
        atomic_fetch_add(&l->gated_waiting, 1);
        while (atomic_load(&l->gate) == 0) {
            sched_yield();
        }
    }
    int nchild = a->depth > 0 ? LOAD_FANOUT : 0;
    weft_future_t *fs[LOAD_FANOUT] = {NULL};
    int ids[LOAD_FANOUT] = {0};
    for (int i = 0; i < nchild; i++) {
        weft_status_t st = load_spawn(l, a->depth - 1, 0, &fs[i], &ids[i]);
        if (st != WEFT_OK) {
            fs[i] = NULL;
            atomic_fetch_add(&l->spawn_errors, 1);
        } else if (a->gated) {
            atomic_store(&l->gated_child[ids[i]], 1);
        }
    }
    /* Join in the order 1, 0, 2 so that not every join is the bottom. */
    static const int order[LOAD_FANOUT] = {1, 0, 2};
    for (int k = 0; k < nchild; k++) {
        int i = order[k];
        if (fs[i] == NULL) {
            continue;
        }
        weft_status_t st = weft_future_wait(fs[i]);
        weft_outcome_t oc = weft_future_outcome(fs[i]);
        if (st == WEFT_ECANCELED && oc == WEFT_OUTCOME_CANCELLED) {
            atomic_fetch_add(&l->cancelled[ids[i]], 1);
        } else if (st != WEFT_OK || oc != WEFT_OUTCOME_SUCCEEDED) {
            atomic_fetch_add(&l->bad_status, 1);
        }
        weft_future_release(fs[i]);
    }
    result->i64 = a->id;
    return WEFT_OK;
}

struct shutdown_call {
    weft_executor_t *ex;
    weft_shutdown_mode_t mode;
    weft_status_t st;
};

static void *
shutdown_thread(void *p)
{
    struct shutdown_call *c = p;
    c->st = weft_executor_shutdown(c->ex, c->mode);
    return NULL;
}

static void
probe_release(void *p)
{
    atomic_fetch_add(&((struct load *)p)->probe_hooks, 1);
}

static weft_status_t
probe_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    atomic_fetch_add(&((struct load *)arg)->probe_bodies, 1);
    return WEFT_OK;
}

struct load_sums {
    int tasks;       /* ids handed out and accepted */
    int ran;         /* bodies[id] == 1 */
    int cancelled;   /* cancelled[id] == 1 */
    int ended_twice; /* bodies + cancelled > 1 */
    int never_ended; /* bodies + cancelled == 0 */
    int hooks_bad;   /* hooks[id] != 1 */
    int gated_children;
    int gated_children_ran;
};

static struct load_sums
load_sum(struct load *l)
{
    struct load_sums s = {0};
    int n = atomic_load(&l->next_id);
    if (n > LOAD_MAX_IDS) {
        n = LOAD_MAX_IDS;
    }
    for (int id = 0; id < n; id++) {
        int b = atomic_load(&l->bodies[id]);
        int c = atomic_load(&l->cancelled[id]);
        s.tasks++;
        s.ran += b == 1;
        s.cancelled += c == 1;
        s.ended_twice += b + c > 1;
        s.never_ended += b + c == 0;
        s.hooks_bad += atomic_load(&l->hooks[id]) != 1;
        if (atomic_load(&l->gated_child[id])) {
            s.gated_children++;
            s.gated_children_ran += b;
        }
    }
    return s;
}

#define LOAD_ROOTS 40

/*
 * Run the load on n workers: n gated roots, then LOAD_ROOTS - n ungated
 * roots from outside, then shutdown(mode) from a helper thread. When it
 * returns, records the roots' outcomes and returns the sums seen right
 * after shutdown returned, in *at_shutdown.
 */
static struct load *
run_load(unsigned int n, weft_shutdown_mode_t mode,
         struct load_sums *at_shutdown, int *roots_pending)
{
    struct load *l = calloc(1, sizeof(*l));
    cr_assert_not_null(l);
    l->ex = make_ex(n);
    weft_future_t *roots[LOAD_ROOTS];
    int root_ids[LOAD_ROOTS];
    for (unsigned int i = 0; i < n; i++) {
        cr_assert_eq(load_spawn(l, 3, 1, &roots[i], &root_ids[i]), WEFT_OK);
    }
    spin_until_int(&l->gated_waiting, (int)n);
    for (int i = (int)n; i < LOAD_ROOTS; i++) {
        cr_assert_eq(load_spawn(l, 5, 0, &roots[i], &root_ids[i]), WEFT_OK);
    }
    struct shutdown_call call = {.ex = l->ex, .mode = mode, .st = WEFT_EFAILED};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, shutdown_thread, &call), 0);
    /* Wait until shutdown has begun: an outside spawn is refused. */
    for (;;) {
        weft_spawn_opts_t opts = {.release = probe_release};
        weft_future_t *pf = (weft_future_t *)(uintptr_t)1;
        weft_status_t st = weft_spawn_ex(l->ex, &opts, probe_body, l, &pf);
        if (st == WEFT_ESHUTDOWN) {
            cr_assert_null(pf, "*out must be NULL on a refused spawn");
            l->probes_refused++;
            break;
        }
        cr_assert_eq(st, WEFT_OK);
        l->probes_accepted++;
        weft_future_release(pf);
        sched_yield();
    }
    atomic_store(&l->gate, 1);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(call.st, WEFT_OK);
    /* Right after shutdown returned, every accepted task has ended. */
    *roots_pending = 0;
    for (int i = 0; i < LOAD_ROOTS; i++) {
        *roots_pending += !weft_future_is_done(roots[i]);
    }
    *at_shutdown = load_sum(l);
    for (int i = 0; i < LOAD_ROOTS; i++) {
        weft_status_t st = weft_future_wait(roots[i]);
        weft_outcome_t oc = weft_future_outcome(roots[i]);
        if (st == WEFT_ECANCELED && oc == WEFT_OUTCOME_CANCELLED) {
            atomic_fetch_add(&l->cancelled[root_ids[i]], 1);
        } else if (st != WEFT_OK || oc != WEFT_OUTCOME_SUCCEEDED) {
            atomic_fetch_add(&l->bad_status, 1);
        } else {
            weft_value_t v = {.i64 = -1};
            cr_assert_eq(weft_future_value(roots[i], &v), WEFT_OK);
            cr_assert_eq(v.i64, root_ids[i]);
        }
        cr_assert_eq(weft_future_release(roots[i]), WEFT_OK);
    }
    return l;
}

Test(executor, shutdown_drain_under_load_runs_every_accepted_task_once)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        unsigned int n = ns[k];
        struct load_sums at;
        int pending = -1;
        struct load *l = run_load(n, WEFT_SHUTDOWN_DRAIN, &at, &pending);
        cr_assert_eq(pending, 0,
                     "%u workers: %d roots pending after "
                     "shutdown(DRAIN) returned",
                     n, pending);
        cr_assert_eq(weft_executor_destroy(l->ex), WEFT_OK);
        struct load_sums s = load_sum(l);
        cr_assert_eq(atomic_load(&l->spawn_errors), 0);
        cr_assert_eq(atomic_load(&l->bad_status), 0);
        cr_assert(s.tasks > LOAD_ROOTS * 100, "load too small: %d", s.tasks);
        cr_assert_eq(s.ran, s.tasks, "%u workers: %d of %d tasks ran", n, s.ran,
                     s.tasks);
        cr_assert_eq(s.cancelled, 0);
        cr_assert_eq(s.ended_twice, 0);
        cr_assert_eq(s.hooks_bad, 0, "%d tasks without exactly one hook",
                     s.hooks_bad);
        cr_assert_eq(at.ran, s.ran,
                     "shutdown(DRAIN) returned with %d bodies run, %d later",
                     at.ran, s.ran);
        /* Children spawned by the gated roots after shutdown began. */
        cr_assert_eq(s.gated_children, (int)n * LOAD_FANOUT);
        cr_assert_eq(s.gated_children_ran, s.gated_children);
        cr_assert_eq(atomic_load(&l->probe_bodies), l->probes_accepted);
        cr_assert_eq(atomic_load(&l->probe_hooks),
                     l->probes_accepted + l->probes_refused);
        free(l);
    }
}

Test(executor, shutdown_cancel_under_load_ends_every_task_exactly_once)
{
    const unsigned int ns[] = {1, 2, 4};
    for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
        unsigned int n = ns[k];
        struct load_sums at;
        int pending = -1;
        struct load *l = run_load(n, WEFT_SHUTDOWN_CANCEL, &at, &pending);
        cr_assert_eq(pending, 0,
                     "%u workers: %d roots pending after "
                     "shutdown(CANCEL) returned",
                     n, pending);
        cr_assert_eq(weft_executor_destroy(l->ex), WEFT_OK);
        struct load_sums s = load_sum(l);
        cr_assert_eq(atomic_load(&l->spawn_errors), 0);
        cr_assert_eq(atomic_load(&l->bad_status), 0);
        cr_assert_eq(s.ended_twice, 0,
                     "%d tasks both ran and were "
                     "cancelled",
                     s.ended_twice);
        cr_assert_eq(s.never_ended, 0);
        cr_assert_eq(s.ran + s.cancelled, s.tasks,
                     "%u workers: ran %d + "
                     "cancelled %d != %d",
                     n, s.ran, s.cancelled, s.tasks);
        cr_assert_eq(s.hooks_bad, 0, "%d tasks without exactly one hook",
                     s.hooks_bad);
        /* Only the gated roots had started when shutdown was called; the
         * other roots end cancelled without running, and so do the
         * children the gated roots spawn afterwards. */
        cr_assert_eq(s.ran, (int)n,
                     "%u workers: %d bodies ran, expected "
                     "only the %u gated roots",
                     n, s.ran, n);
        cr_assert_eq(s.gated_children, (int)n * LOAD_FANOUT);
        cr_assert_eq(s.gated_children_ran, 0);
        cr_assert_eq(at.ran, s.ran);
        cr_assert_eq(atomic_load(&l->probe_hooks),
                     l->probes_accepted + l->probes_refused);
        cr_assert_eq(atomic_load(&l->probe_bodies), 0,
                     "probes queued before shutdown must not run");
        free(l);
    }
}

/* ---- shutdown and destroy: state and misuse --------------------------- */

static atomic_int hook_runs;

static void
count_hook(void *arg)
{
    (void)arg;
    atomic_fetch_add(&hook_runs, 1);
}

Test(executor, spawn_from_outside_after_shutdown_is_refused_and_runs_hook)
{
    const weft_shutdown_mode_t modes[] = {WEFT_SHUTDOWN_DRAIN,
                                          WEFT_SHUTDOWN_CANCEL};
    for (int m = 0; m < 2; m++) {
        weft_executor_t *ex = make_ex(2);
        cr_assert_eq(weft_executor_shutdown(ex, modes[m]), WEFT_OK);
        atomic_store(&hook_runs, 0);
        weft_spawn_opts_t opts = {.release = count_hook};
        weft_future_t *f = (weft_future_t *)(uintptr_t)1;
        cr_assert_eq(weft_spawn_ex(ex, &opts, body_noop, NULL, &f),
                     WEFT_ESHUTDOWN);
        cr_assert_null(f);
        cr_assert_eq(atomic_load(&hook_runs), 1);
        cr_assert_eq(weft_spawn_ex(ex, &opts, body_noop, NULL, NULL),
                     WEFT_ESHUTDOWN);
        cr_assert_eq(atomic_load(&hook_runs), 2);
        f = (weft_future_t *)(uintptr_t)1;
        cr_assert_eq(weft_spawn(ex, body_noop, NULL, &f), WEFT_ESHUTDOWN);
        cr_assert_null(f);
        cr_assert_eq(weft_executor_run(ex, body_noop, NULL, NULL),
                     WEFT_ESHUTDOWN);
        cr_assert_eq(atomic_load(&hook_runs), 2);
        cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    }
}

Test(executor, shutdown_twice_and_cancel_after_drain_are_ok)
{
    weft_executor_t *ex = make_ex(2);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(executor, destroy_without_shutdown_drains_queued_work)
{
    atomic_store(&stats_bodies, 0);
    weft_executor_t *ex = make_ex(2);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(weft_spawn(ex, body_count, NULL, NULL), WEFT_OK);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(atomic_load(&stats_bodies), 1000);
}

struct inside_rec {
    weft_executor_t *ex;
    weft_executor_t *other;
    atomic_int shutdown_st;
    atomic_int shutdown_cancel_st;
    atomic_int destroy_st;
    atomic_int other_shutdown_st;
};

static weft_status_t
body_inside_calls(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    struct inside_rec *r = arg;
    atomic_store(&r->shutdown_st,
                 weft_executor_shutdown(r->ex, WEFT_SHUTDOWN_DRAIN));
    atomic_store(&r->shutdown_cancel_st,
                 weft_executor_shutdown(r->ex, WEFT_SHUTDOWN_CANCEL));
    atomic_store(&r->destroy_st, weft_executor_destroy(r->ex));
    /* A worker of ex may shut down a different executor. */
    atomic_store(&r->other_shutdown_st,
                 weft_executor_shutdown(r->other, WEFT_SHUTDOWN_DRAIN));
    return WEFT_OK;
}

Test(executor, shutdown_and_destroy_from_a_worker_return_estate)
{
    struct inside_rec r;
    r.ex = make_ex(2);
    r.other = make_ex(1);
    atomic_store(&r.shutdown_st, -1);
    atomic_store(&r.shutdown_cancel_st, -1);
    atomic_store(&r.destroy_st, -1);
    atomic_store(&r.other_shutdown_st, -1);
    cr_assert_eq(weft_executor_run(r.ex, body_inside_calls, &r, NULL), WEFT_OK);
    cr_assert_eq(atomic_load(&r.shutdown_st), WEFT_ESTATE);
    cr_assert_eq(atomic_load(&r.shutdown_cancel_st), WEFT_ESTATE);
    cr_assert_eq(atomic_load(&r.destroy_st), WEFT_ESTATE);
    cr_assert_eq(atomic_load(&r.other_shutdown_st), WEFT_OK);
    /* ex is still accepting and working. */
    weft_value_t v = {0};
    cr_assert_eq(
        weft_executor_run(r.ex, body_return_arg, (void *)(intptr_t)11, &v),
        WEFT_OK);
    cr_assert_eq(v.i64, 11);
    cr_assert_eq(weft_executor_destroy(r.ex), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(r.other), WEFT_OK);
}

Test(executor, destroy_with_a_held_future_is_ebusy_then_ok_after_release)
{
    weft_executor_t *ex = make_ex(2);
    weft_future_t *held = NULL;
    weft_future_t *also = NULL;
    cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)42, &held),
                 WEFT_OK);
    cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)(intptr_t)43, &also),
                 WEFT_OK);
    cr_assert_eq(weft_join(also, NULL), WEFT_OK);
    /* Detached tasks do not count as held. */
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(weft_spawn(ex, body_noop, NULL, NULL), WEFT_OK);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    /* The executor was shut down but not freed: the future is usable. */
    cr_assert(weft_future_is_done(held));
    cr_assert_eq(weft_future_outcome(held), WEFT_OUTCOME_SUCCEEDED);
    weft_value_t v = {0};
    cr_assert_eq(weft_future_value(held, &v), WEFT_OK);
    cr_assert_eq(v.i64, 42);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    cr_assert_eq(weft_future_retain(held), WEFT_OK);
    cr_assert_eq(weft_future_release(held), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    cr_assert_eq(weft_future_release(held), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

static weft_status_t
body_spawn_and_hold(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)arg;
    weft_future_t *f = NULL;
    weft_status_t st = weft_spawn(weft_task_executor(self), body_return_arg,
                                  (void *)(intptr_t)5, &f);
    result->ptr = f; /* handed to the test, which releases it */
    return st;
}

Test(executor, destroy_is_ebusy_for_a_future_spawned_on_a_worker)
{
    weft_executor_t *ex = make_ex(2);
    weft_value_t v = {0};
    cr_assert_eq(weft_executor_run(ex, body_spawn_and_hold, NULL, &v), WEFT_OK);
    weft_future_t *f = v.ptr;
    cr_assert_not_null(f);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* A fan-out of POOL_N futures, all alive at once, on one worker. */
#define POOL_N 50000
static weft_future_t *pool_futs[POOL_N];

/* Spawn POOL_N futures, join all but the first (newest first), and leave
 * pool_futs[0] to the test. result: the sum of the joined values, or -1
 * if a spawn or join failed. */
static weft_status_t
body_fan_out_and_hold_one(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)arg;
    weft_executor_t *ex = weft_task_executor(self);
    int64_t sum = 0;
    for (intptr_t i = 0; i < POOL_N; i++) {
        if (weft_spawn(ex, body_return_arg, (void *)i, &pool_futs[i]) !=
            WEFT_OK) {
            result->i64 = -1;
            return WEFT_OK; /* the test fails on -1; held futures leak */
        }
    }
    for (intptr_t i = POOL_N - 1; i > 0; i--) {
        weft_value_t v = {0};
        if (weft_join(pool_futs[i], &v) != WEFT_OK) {
            sum = -1;
        } else if (sum >= 0) {
            sum += v.i64;
        }
    }
    result->i64 = sum;
    return WEFT_OK;
}

/*
 * The pool grows by slabs that double up to WEFT__SLAB_OBJECTS_MAX
 * objects (executor.h), so a fan-out of POOL_N live futures makes a few
 * slabs, not POOL_N / WEFT__SLAB_OBJECTS; and the count of objects still
 * held, which destroy reports as WEFT_EBUSY, adds up over slabs of
 * different sizes.
 */
Test(executor, pool_slabs_double_and_destroy_sees_one_held_future_among_them)
{
    int64_t live0 = weft__alloc_live();
    weft_executor_t *ex = make_ex(1);
    int64_t live1 = weft__alloc_live();
    weft_value_t v = {0};
    cr_assert_eq(weft_executor_run(ex, body_fan_out_and_hold_one, NULL, &v),
                 WEFT_OK);
    cr_assert_eq(v.i64, (int64_t)POOL_N * (POOL_N - 1) / 2,
                 "a spawn or join failed, or a value was wrong: %lld",
                 (long long)v.i64);

    /* Slabs the policy makes for POOL_N + 1 objects (the root task too),
     * whichever list each comes from. */
    long slabs = 0;
    long objects = 0;
    long next = WEFT__SLAB_OBJECTS;
    while (objects < POOL_N + 1) {
        objects += next;
        slabs++;
        next = next * 2 <= WEFT__SLAB_OBJECTS_MAX ? next * 2
                                                  : WEFT__SLAB_OBJECTS_MAX;
    }
    /* Besides slabs, the run allocates the deque's grown buffers (at most
     * one per doubling from 2 slots to POOL_N) and a slab for the root,
     * which comes from the outside spawners' list. */
    int64_t grown = weft__alloc_live() - live1;
    cr_assert_leq(grown, slabs + 17 + 1,
                  "%lld blocks for a pool of %d futures; the doubling "
                  "policy needs %ld slabs",
                  (long long)grown, POOL_N, slabs);

    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    cr_assert_eq(weft_future_wait(pool_futs[0]), WEFT_OK);
    cr_assert_eq(weft_future_value(pool_futs[0], &v), WEFT_OK);
    cr_assert_eq(v.i64, 0);
    cr_assert_eq(weft_future_release(pool_futs[0]), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(weft__alloc_live(), live0);
}

/*
 * A doubled slab that cannot be allocated falls back to one of the first
 * size: the spawn that needed it succeeds. Spawns from outside the
 * workers take objects from the executor's own list, whose first slab
 * holds WEFT__SLAB_OBJECTS; holding every future keeps them all in use,
 * so the next spawn needs a second slab, and that allocation is the one
 * the injector fails. The small-capacity build does not grow slabs, so
 * there the spawn has nothing to fall back to and reports WEFT_ENOMEM.
 */
Test(executor, a_doubled_slab_that_cannot_be_had_falls_back_to_the_first_size)
{
    weft_executor_t *ex = make_ex(1);
    static weft_future_t *fs[WEFT__SLAB_OBJECTS + 1];
    for (intptr_t i = 0; i < WEFT__SLAB_OBJECTS; i++) {
        cr_assert_eq(weft_spawn(ex, body_return_arg, (void *)i, &fs[i]),
                     WEFT_OK);
    }
    int64_t live = weft__alloc_live();
    uint64_t failures = weft__alloc_failures();
    weft__alloc_set_fail_after(0);
    weft_status_t st =
        weft_spawn(ex, body_return_arg, (void *)(intptr_t)WEFT__SLAB_OBJECTS,
                   &fs[WEFT__SLAB_OBJECTS]);
    weft__alloc_set_fail_after(-1);
    cr_assert_eq(weft__alloc_failures(), failures + 1,
                 "the second slab was refused");
#if WEFT__SLAB_OBJECTS_MAX > WEFT__SLAB_OBJECTS
    cr_assert_eq(st, WEFT_OK, "the spawn got a slab of the first size: %s",
                 weft_status_name(st));
    cr_assert_eq(weft__alloc_live(), live + 1, "one slab instead");
    int n = WEFT__SLAB_OBJECTS + 1;
#else
    cr_assert_eq(st, WEFT_ENOMEM, "no smaller slab to fall back to: %s",
                 weft_status_name(st));
    cr_assert_eq(weft__alloc_live(), live);
    int n = WEFT__SLAB_OBJECTS;
#endif
    for (intptr_t i = 0; i < n; i++) {
        weft_value_t v = {0};
        cr_assert_eq(weft_join(fs[i], &v), WEFT_OK);
        cr_assert_eq(v.i64, i);
    }
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- bad input ------------------------------------------------------- */

Test(executor, null_executor_is_rejected_everywhere)
{
    weft_worker_stats_t st;
    weft_future_t *f = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_executor_shutdown(NULL, WEFT_SHUTDOWN_DRAIN),
                 WEFT_EINVAL);
    cr_assert_eq(weft_executor_shutdown(NULL, WEFT_SHUTDOWN_CANCEL),
                 WEFT_EINVAL);
    cr_assert_eq(weft_executor_destroy(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_num_workers(NULL), 0u);
    cr_assert_eq(weft_executor_worker_index(NULL), -1);
    cr_assert_eq(weft_executor_stats(NULL, 0, &st), WEFT_EINVAL);
    cr_assert_eq(weft_spawn(NULL, body_noop, NULL, &f), WEFT_EINVAL);
    cr_assert_null(f);
    atomic_store(&hook_runs, 0);
    weft_spawn_opts_t opts = {.release = count_hook};
    f = (weft_future_t *)(uintptr_t)1;
    cr_assert_eq(weft_spawn_ex(NULL, &opts, body_noop, NULL, &f), WEFT_EINVAL);
    cr_assert_null(f);
    cr_assert_eq(atomic_load(&hook_runs), 1);
    cr_assert_eq(weft_executor_run(NULL, body_noop, NULL, NULL), WEFT_EINVAL);
}

Test(executor, bad_shutdown_mode_is_einval_and_changes_nothing)
{
    weft_executor_t *ex = make_ex(2);
    cr_assert_eq(weft_executor_shutdown(ex, (weft_shutdown_mode_t)2),
                 WEFT_EINVAL);
    cr_assert_eq(weft_executor_shutdown(ex, (weft_shutdown_mode_t)-1),
                 WEFT_EINVAL);
    cr_assert_eq(weft_executor_shutdown(ex, (weft_shutdown_mode_t)1000),
                 WEFT_EINVAL);
    /* Still accepting. */
    weft_value_t v = {0};
    cr_assert_eq(
        weft_executor_run(ex, body_return_arg, (void *)(intptr_t)3, &v),
        WEFT_OK);
    cr_assert_eq(v.i64, 3);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}
