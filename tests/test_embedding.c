/*
 * test_embedding.c - what an application that embeds weft relies on: its
 * own allocator (weft/alloc.h), worker pinning (pin_workers) and the fork
 * policy of docs/embedding.md.
 */
#include <weft.h>

#include "executor/pin.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(embedding, .timeout = 30.0);

/* ---- allocator hooks --------------------------------------------------- */

/* A tracking allocator over the default one: counts and checks alignment. */
struct track {
    weft_allocator_t next; /* the allocator it forwards to */
    atomic_long allocs;    /* alloc calls that returned a block */
    atomic_long frees;
    atomic_long reallocs;
    atomic_long misaligned; /* blocks not as asked (alignment, size) */
    atomic_long fail_next;  /* > 0: that many alloc calls return NULL */
};

static void *
track_alloc(void *ctx, size_t size, size_t align)
{
    struct track *t = ctx;
    if (atomic_load(&t->fail_next) > 0) {
        atomic_fetch_sub(&t->fail_next, 1);
        return NULL;
    }
    void *p = t->next.alloc(t->next.ctx, size, align);
    if (p != NULL) {
        atomic_fetch_add(&t->allocs, 1);
        if ((uintptr_t)p % align != 0 ||
            (align > alignof(max_align_t) && size % align != 0)) {
            atomic_fetch_add(&t->misaligned, 1);
        }
    }
    return p;
}

static void *
track_realloc(void *ctx, void *p, size_t size)
{
    struct track *t = ctx;
    atomic_fetch_add(&t->reallocs, 1);
    return t->next.realloc(t->next.ctx, p, size);
}

static void
track_free(void *ctx, void *p)
{
    struct track *t = ctx;
    atomic_fetch_add(&t->frees, 1);
    t->next.free(t->next.ctx, p);
}

static void
track_install(struct track *t)
{
    memset(t, 0, sizeof(*t));
    cr_assert_eq(weft_allocator_get(&t->next), WEFT_OK);
    weft_allocator_t a = {track_alloc, track_realloc, track_free, t};
    cr_assert_eq(weft_allocator_set(&a), WEFT_OK);
}

static weft_status_t
fib(weft_task_t *self, void *arg, weft_value_t *out)
{
    intptr_t n = (intptr_t)arg;
    if (n < 2) {
        out->i64 = n;
        return WEFT_OK;
    }
    weft_future_t *f;
    weft_value_t a, b;
    weft_status_t st =
        weft_spawn(weft_task_executor(self), fib, (void *)(n - 1), &f);
    if (st != WEFT_OK) {
        return st;
    }
    weft_status_t sb = fib(self, (void *)(n - 2), &b);
    st = weft_join(f, &a);
    if (st != WEFT_OK || sb != WEFT_OK) {
        return st != WEFT_OK ? st : sb;
    }
    out->i64 = a.i64 + b.i64;
    return WEFT_OK;
}

Test(embedding, allocator_sees_every_block_and_every_free)
{
    struct track t;
    track_install(&t);

    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    weft_executor_t *ex;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, fib, (void *)(intptr_t)18, &v), WEFT_OK);
    cr_assert_eq(v.i64, 2584);
    weft_token_t *tok;
    cr_assert_eq(weft_token_create(NULL, &tok), WEFT_OK);
    weft_error_t *e;
    cr_assert_eq(weft_error_create(&e, WEFT_EUSER, "x%d", 1), WEFT_OK);
    cr_assert_eq(weft_token_cancel(tok, e), WEFT_OK);
    weft_error_release(e);
    weft_token_release(tok);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);

    cr_assert_gt(atomic_load(&t.allocs), 3,
                 "the executor, its workers, "
                 "deques, error and token");
    cr_assert_eq(atomic_load(&t.allocs), atomic_load(&t.frees),
                 "%ld blocks allocated, %ld freed", atomic_load(&t.allocs),
                 atomic_load(&t.frees));
    cr_assert_eq(atomic_load(&t.misaligned), 0);
    cr_assert_eq(weft_allocator_set(NULL), WEFT_OK);
}

enum {
    HOARD_N = 4 * 4096,
    HOARD_OUTSIDE = 2048
};

static weft_status_t
hoard_leaf(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    out->i64 = (intptr_t)arg;
    return WEFT_OK;
}

/* Spawns HOARD_N futures and joins them newest first: every join takes
 * the fast path, which runs the task inline and recycles its object on
 * this worker's own free list. */
static weft_status_t
hoard_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    weft_future_t **f = arg;
    weft_executor_t *ex = weft_task_executor(self);
    for (intptr_t i = 0; i < HOARD_N; i++) {
        cr_assert_eq(weft_spawn(ex, hoard_leaf, (void *)i, &f[i]), WEFT_OK);
    }
    int64_t sum = 0;
    for (intptr_t i = HOARD_N - 1; i >= 0; i--) {
        weft_value_t v;
        cr_assert_eq(weft_join(f[i], &v), WEFT_OK);
        sum += v.i64;
    }
    out->i64 = sum;
    return WEFT_OK;
}

/*
 * A worker's own free list is bounded also on the join fast path: what a
 * fan-out returns past the bound goes to the executor-wide pool, where
 * other threads' spawns find it instead of allocating (before, the worker
 * kept all of it, and a fan-out whose root landed on another worker paid
 * for a second copy of the pool).
 */
Test(embedding, a_worker_keeps_a_bounded_share_of_the_objects_it_joins)
{
    struct track t;
    track_install(&t);
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 1;
    weft_executor_t *ex;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    static weft_future_t *f[HOARD_N];
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, hoard_root, f, &v), WEFT_OK);
    cr_assert_eq(v.i64, (int64_t)HOARD_N * (HOARD_N - 1) / 2);

    /* Spawns from this thread (not a worker) draw on the shared pool. */
    long before = atomic_load(&t.allocs);
    for (intptr_t i = 0; i < HOARD_OUTSIDE; i++) {
        cr_assert_eq(weft_spawn(ex, hoard_leaf, (void *)i, &f[i]), WEFT_OK);
    }
    for (intptr_t i = 0; i < HOARD_OUTSIDE; i++) {
        cr_assert_eq(weft_join(f[i], &v), WEFT_OK);
        cr_assert_eq(v.i64, i);
    }
    cr_assert_eq(atomic_load(&t.allocs), before,
                 "%ld blocks allocated for %d futures that the worker's "
                 "returns could have served",
                 atomic_load(&t.allocs) - before, HOARD_OUTSIDE);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(atomic_load(&t.allocs), atomic_load(&t.frees));
    cr_assert_eq(weft_allocator_set(NULL), WEFT_OK);
}

Test(embedding, allocator_cannot_change_while_a_block_lives)
{
    struct track t;
    track_install(&t);
    weft_error_t *e;
    cr_assert_eq(weft_error_create(&e, WEFT_EUSER, NULL), WEFT_OK);

    cr_assert_eq(weft_allocator_set(NULL), WEFT_EBUSY);
    weft_allocator_t cur;
    cr_assert_eq(weft_allocator_get(&cur), WEFT_OK);
    cr_assert_eq(cur.ctx, &t, "a refused change leaves the allocator as is");

    weft_error_release(e);
    cr_assert_eq(atomic_load(&t.frees), 1,
                 "freed by the allocator that "
                 "made it");
    cr_assert_eq(weft_allocator_set(NULL), WEFT_OK);
    cr_assert_eq(weft_allocator_get(&cur), WEFT_OK);
    cr_assert_neq(cur.ctx, &t);
}

Test(embedding, allocator_needs_every_hook)
{
    weft_allocator_t def;
    cr_assert_eq(weft_allocator_get(&def), WEFT_OK);
    weft_allocator_t a = def;
    a.realloc = NULL;
    cr_assert_eq(weft_allocator_set(&a), WEFT_EINVAL);
    a = def;
    a.free = NULL;
    cr_assert_eq(weft_allocator_set(&a), WEFT_EINVAL);
    cr_assert_eq(weft_allocator_get(NULL), WEFT_EINVAL);
}

Test(embedding, allocator_returning_null_is_out_of_memory)
{
    struct track t;
    track_install(&t);
    atomic_store(&t.fail_next, 1);
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(NULL, &ex), WEFT_ENOMEM);
    cr_assert_null(ex);

    atomic_store(&t.fail_next, 1);
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_create(&e, WEFT_EUSER, "lost"), WEFT_ENOMEM);
    cr_assert_eq(weft_error_status(e), WEFT_ENOMEM, "the immortal error");
    weft_error_release(e);

    cr_assert_eq(atomic_load(&t.allocs), atomic_load(&t.frees));
    cr_assert_eq(weft_allocator_set(NULL), WEFT_OK);
}

/* ---- pinning ----------------------------------------------------------- */

#define PIN_MAX_WORKERS 64

struct pin_seen {
    cpu_set_t creator;
    cpu_set_t worker[PIN_MAX_WORKERS];
    atomic_int got[PIN_MAX_WORKERS];
    /* What a task saw: the worker it ran on and that thread's mask. */
    int task_worker;
    cpu_set_t task_mask;
};

static void
pin_on_start(weft_executor_t *ex, unsigned int index, void *user)
{
    (void)ex;
    struct pin_seen *s = user;
    if (index < PIN_MAX_WORKERS &&
        sched_getaffinity(0, sizeof(s->worker[index]), &s->worker[index]) ==
            0) {
        atomic_store(&s->got[index], 1);
    }
}

struct pin_probe_arg {
    weft_executor_t *ex;
    struct pin_seen *s;
};

/* Records, from inside a task, its worker and that thread's affinity. */
static weft_status_t
pin_probe(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)out;
    struct pin_probe_arg *pa = arg;
    pa->s->task_worker = weft_executor_worker_index(pa->ex);
    if (sched_getaffinity(0, sizeof(pa->s->task_mask), &pa->s->task_mask) !=
        0) {
        return WEFT_ESYS;
    }
    return WEFT_OK;
}

/* Where pin_cpu_core() reads the topology: sysfs, or a test's copy
 * (weft__pin_set_sysfs_root()). */
static const char *pin_root = "/sys/devices/system/cpu";

/* The first (lowest) CPU of cpu's SMT siblings from sysfs, which names
 * its core; cpu itself when unreadable. */
static long
pin_cpu_core(int cpu)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/cpu%d/topology/thread_siblings_list",
             pin_root, cpu);
    FILE *fp = fopen(path, "r");
    long first = cpu;
    if (fp != NULL) {
        if (fscanf(fp, "%ld", &first) != 1) {
            first = cpu;
        }
        fclose(fp);
    }
    return first;
}

/*
 * The cores of set, each as the CPUs of set it holds: a core is the set
 * of CPUs that share the first CPU of their sibling list, and a CPU whose
 * list cannot be read is a core of its own (as in executor/pin.c without
 * hwloc; hwloc reads the same lists). Returns how many (at most max,
 * which is at most CPU_SETSIZE).
 */
static int
pin_cores(const cpu_set_t *set, cpu_set_t *cores, int max)
{
    static long key[CPU_SETSIZE];
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, set)) {
            continue;
        }
        long id = pin_cpu_core(cpu);
        int c = 0;
        while (c < n && key[c] != id) {
            c++;
        }
        if (c == n) {
            if (n == max) {
                continue;
            }
            CPU_ZERO(&cores[n]);
            key[n] = id;
            n++;
        }
        CPU_SET(cpu, &cores[c]);
    }
    return n;
}

/* Which of cores[0..n) mask is exactly; -1 if none. */
static int
pin_core_of(const cpu_set_t *mask, const cpu_set_t *cores, int n)
{
    for (int c = 0; c < n; c++) {
        if (CPU_EQUAL(mask, &cores[c])) {
            return c;
        }
    }
    return -1;
}

/*
 * Create a pinned executor with one more worker than the creator's
 * allowed CPUs form cores (as pin_cores() reads them), and check that
 * each worker is bound to exactly one core's allowed CPUs, round robin.
 */
static void
pin_check_round_robin(void)
{
    static struct pin_seen s;
    static cpu_set_t cores[CPU_SETSIZE];
    memset(&s, 0, sizeof(s));
    cr_assert_eq(sched_getaffinity(0, sizeof(s.creator), &s.creator), 0);
    int ncores = pin_cores(&s.creator, cores, CPU_SETSIZE);
    cr_assert_gt(ncores, 0);
    /* One more worker than cores, so the round robin wraps once. */
    unsigned int n =
        ncores < PIN_MAX_WORKERS ? (unsigned int)ncores + 1 : PIN_MAX_WORKERS;

    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = n;
    cfg.pin_workers = true;
    cfg.on_worker_start = pin_on_start;
    cfg.user_data = &s;
    weft_executor_t *ex = NULL;
    weft_status_t want = weft__pin_check();
#ifdef __linux__
    cr_assert_eq(want, WEFT_OK, "Linux pins with or without hwloc: %s",
                 weft_status_name(want));
#endif
    cr_assert_eq(weft_executor_create(&cfg, &ex), want, "create: %s",
                 weft_status_name(want));
    if (want != WEFT_OK) {
        cr_assert_eq(want, WEFT_ENOTSUP, "a build without a backend says so");
        cr_assert_null(ex);
        return;
    }
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, fib, (void *)(intptr_t)15, &v), WEFT_OK);
    cr_assert_eq(v.i64, 610);
    struct pin_probe_arg pa = {ex, &s};
    cr_assert_eq(weft_executor_run(ex, pin_probe, &pa, &v), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);

    /*
     * Each worker may run on exactly the allowed CPUs of one core; the
     * first ncores workers take distinct cores, and worker i + ncores
     * shares worker i's (whatever order the backend gives the cores).
     */
    static int used[CPU_SETSIZE];
    memset(used, 0, sizeof(used));
    for (unsigned int i = 0; i < n; i++) {
        cr_assert(atomic_load(&s.got[i]), "worker %u ran its hook", i);
        int c = pin_core_of(&s.worker[i], cores, ncores);
        cr_assert_geq(c, 0, "worker %u is bound to one core's CPUs (%d CPUs)",
                      i, CPU_COUNT(&s.worker[i]));
        if (i < (unsigned int)ncores) {
            cr_assert_eq(used[c]++, 0, "worker %u takes a core already taken",
                         i);
        } else {
            cr_assert(CPU_EQUAL(&s.worker[i], &s.worker[i - ncores]),
                      "worker %u wraps around to worker %u's core", i,
                      i - ncores);
        }
    }
    /* The binding a task sees is its worker's. */
    cr_assert(s.task_worker >= 0 && (unsigned int)s.task_worker < n,
              "the probe ran on a worker (%d)", s.task_worker);
    cr_assert(CPU_EQUAL(&s.task_mask, &s.worker[s.task_worker]),
              "a task runs with its worker's binding");
    cr_assert_geq(pin_core_of(&s.task_mask, cores, ncores), 0);
}

Test(embedding, pin_workers_binds_each_worker_to_one_core_round_robin)
{
    pin_check_round_robin();
}

/*
 * The sysfs backend on made-up topologies. Points the backend at a new
 * directory dir, whose files the caller writes before anything pins (the
 * first weft__pin_check() reads them); false in a build that does not
 * read sysfs (hwloc), where the cores come from hwloc and the test above
 * covers them.
 */
static bool
pin_use_root(char *dir)
{
    cr_assert_not_null(mkdtemp(dir));
    /* The load comes later: pin_check_round_robin()'s weft__pin_check(). */
    return weft__pin_set_sysfs_root(dir);
}

Test(embedding, pin_workers_takes_every_cpu_as_a_core_when_sysfs_is_unreadable)
{
    char dir[] = "/tmp/weft-pin-none-XXXXXX";
    if (!pin_use_root(dir)) {
        cr_assert_eq(rmdir(dir), 0);
        return;
    }
    pin_root = dir; /* empty: no CPU's siblings can be read */
    cpu_set_t allowed;
    static cpu_set_t cores[CPU_SETSIZE];
    cr_assert_eq(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    cr_assert_eq(pin_cores(&allowed, cores, CPU_SETSIZE), CPU_COUNT(&allowed),
                 "every allowed CPU is a core");
    pin_check_round_robin();
    cr_assert_eq(rmdir(dir), 0);
}

Test(embedding, pin_workers_keeps_smt_siblings_together_as_sysfs_lists_them)
{
    char dir[] = "/tmp/weft-pin-smt-XXXXXX";
    if (!pin_use_root(dir)) {
        cr_assert_eq(rmdir(dir), 0);
        return;
    }
    /* A made-up machine: every allowed CPU lists the lowest allowed one
     * first among its siblings, so all of them form a single core. */
    cpu_set_t allowed;
    cr_assert_eq(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    int lowest = -1;
    static char path[CPU_SETSIZE][256];
    int made = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) {
            continue;
        }
        if (lowest < 0) {
            lowest = cpu;
        }
        char d[128];
        snprintf(d, sizeof(d), "%s/cpu%d", dir, cpu);
        cr_assert_eq(mkdir(d, 0700), 0);
        snprintf(d, sizeof(d), "%s/cpu%d/topology", dir, cpu);
        cr_assert_eq(mkdir(d, 0700), 0);
        snprintf(path[made], sizeof(path[made]), "%s/thread_siblings_list", d);
        FILE *fp = fopen(path[made++], "w");
        cr_assert_not_null(fp);
        fprintf(fp, "%d,%d\n", lowest, cpu);
        cr_assert_eq(fclose(fp), 0);
    }
    pin_root = dir;
    static cpu_set_t cores[CPU_SETSIZE];
    cr_assert_eq(pin_cores(&allowed, cores, CPU_SETSIZE), 1, "one core");
    cr_assert(CPU_EQUAL(&cores[0], &allowed));
    pin_check_round_robin(); /* every worker gets every allowed CPU */
    for (int i = made - 1; i >= 0; i--) {
        char d[256];
        cr_assert_eq(unlink(path[i]), 0);
        snprintf(d, sizeof(d), "%s", path[i]);
        *strrchr(d, '/') = '\0';
        cr_assert_eq(rmdir(d), 0); /* topology */
        *strrchr(d, '/') = '\0';
        cr_assert_eq(rmdir(d), 0); /* cpuN */
    }
    cr_assert_eq(rmdir(dir), 0);
}

/* Creates a pinned executor from a thread narrowed to one allowed CPU. */
struct pin_narrow {
    int cpu;
    struct pin_seen s;
    weft_status_t create, run, destroy;
};

static void *
pin_narrow_main(void *arg)
{
    struct pin_narrow *pn = arg;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(pn->cpu, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) != 0) {
        pn->create = WEFT_ESYS;
        return NULL;
    }
    (void)sched_getaffinity(0, sizeof(pn->s.creator), &pn->s.creator);
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 3;
    cfg.pin_workers = true;
    cfg.on_worker_start = pin_on_start;
    cfg.user_data = &pn->s;
    weft_executor_t *ex = NULL;
    pn->create = weft_executor_create(&cfg, &ex);
    if (pn->create != WEFT_OK) {
        return NULL;
    }
    struct pin_probe_arg pa = {ex, &pn->s};
    weft_value_t v;
    pn->run = weft_executor_run(ex, pin_probe, &pa, &v);
    pn->destroy = weft_executor_destroy(ex);
    return NULL;
}

Test(embedding, pin_workers_binds_within_the_creators_mask)
{
    cpu_set_t all;
    cr_assert_eq(sched_getaffinity(0, sizeof(all), &all), 0);
    /* The highest allowed CPU: the creator's mask holds it alone. */
    int cpu = CPU_SETSIZE - 1;
    while (!CPU_ISSET(cpu, &all)) {
        cpu--;
    }
    static struct pin_narrow pn;
    memset(&pn, 0, sizeof(pn));
    pn.cpu = cpu;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, pin_narrow_main, &pn), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    weft_status_t want = weft__pin_check();
    cr_assert_eq(pn.create, want, "create: %s", weft_status_name(pn.create));
    if (want != WEFT_OK) {
        return;
    }
    cr_assert_eq(pn.run, WEFT_OK);
    cr_assert_eq(pn.destroy, WEFT_OK);
    cr_assert_eq(CPU_COUNT(&pn.s.creator), 1);
    for (unsigned int i = 0; i < 3; i++) {
        cr_assert(atomic_load(&pn.s.got[i]), "worker %u ran its hook", i);
        cr_assert(CPU_EQUAL(&pn.s.worker[i], &pn.s.creator),
                  "worker %u stays on the creator's only CPU", i);
    }
    cr_assert(CPU_EQUAL(&pn.s.task_mask, &pn.s.creator),
              "a task runs on the creator's only CPU");
}

/* ---- fork -------------------------------------------------------------- */

/*
 * docs/embedding.md: a child of a process with running executors must not
 * touch the inherited ones, but may create its own.
 */
Test(embedding, forked_child_creates_its_own_executor)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    weft_executor_t *ex;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, fib, (void *)(intptr_t)12, &v), WEFT_OK);

    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        weft_executor_t *mine;
        weft_value_t w;
        int ok =
            weft_executor_create(&cfg, &mine) == WEFT_OK &&
            weft_executor_run(mine, fib, (void *)(intptr_t)16, &w) == WEFT_OK &&
            w.i64 == 987 && weft_executor_destroy(mine) == WEFT_OK;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child ran its own executor");

    cr_assert_eq(weft_executor_run(ex, fib, (void *)(intptr_t)12, &v), WEFT_OK,
                 "the parent's executor is unaffected");
    cr_assert_eq(v.i64, 144);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}
