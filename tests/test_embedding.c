/*
 * test_embedding.c - what an application that embeds weft relies on: its
 * own allocator (weft/alloc.h), worker pinning (pin_workers) and the fork
 * policy of docs/embedding.md.
 */
#include <weft.h>

#include "executor/pin.h"

#include <criterion/criterion.h>

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Distinct cores (package, core id) among the CPUs of set; 0 if unknown. */
static int
pin_count_cores(const cpu_set_t *set)
{
    long seen[CPU_SETSIZE];
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, set)) {
            continue;
        }
        long id[2];
        const char *leaf[2] = {"physical_package_id", "core_id"};
        for (int k = 0; k < 2; k++) {
            char path[96];
            snprintf(path, sizeof(path),
                     "/sys/devices/system/cpu/cpu%d/topology/%s", cpu, leaf[k]);
            FILE *fp = fopen(path, "r");
            if (fp == NULL || fscanf(fp, "%ld", &id[k]) != 1) {
                if (fp != NULL) {
                    fclose(fp);
                }
                return 0;
            }
            fclose(fp);
        }
        long key = id[0] * 65536 + id[1];
        int dup = 0;
        for (int i = 0; i < n; i++) {
            dup |= seen[i] == key;
        }
        if (!dup) {
            seen[n++] = key;
        }
    }
    return n;
}

Test(embedding, pin_workers_binds_within_the_creators_mask_or_says_enotsup)
{
    static struct pin_seen s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(sched_getaffinity(0, sizeof(s.creator), &s.creator), 0);
    unsigned int cpus = (unsigned int)CPU_COUNT(&s.creator);
    unsigned int n = cpus < 4 ? cpus : 4;

    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = n;
    cfg.pin_workers = true;
    cfg.on_worker_start = pin_on_start;
    cfg.user_data = &s;
    weft_executor_t *ex = NULL;
    weft_status_t want = weft__pin_check();
    cr_assert_eq(weft_executor_create(&cfg, &ex), want, "create: %s",
                 weft_status_name(want));
    if (want != WEFT_OK) {
        cr_assert_eq(want, WEFT_ENOTSUP, "a build without hwloc says so");
        cr_assert_null(ex);
        return;
    }
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, fib, (void *)(intptr_t)15, &v), WEFT_OK);
    cr_assert_eq(v.i64, 610);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);

    int single = 1;
    int narrowed = 0;
    for (unsigned int i = 0; i < n; i++) {
        cr_assert(atomic_load(&s.got[i]), "worker %u ran its hook", i);
        cpu_set_t both;
        CPU_AND(&both, &s.worker[i], &s.creator);
        cr_assert(CPU_EQUAL(&both, &s.worker[i]),
                  "worker %u stays inside the creator's mask", i);
        cr_assert_gt(CPU_COUNT(&s.worker[i]), 0);
        single &= CPU_COUNT(&s.worker[i]) == 1;
        narrowed |= !CPU_EQUAL(&s.worker[i], &s.creator);
    }
    if (pin_count_cores(&s.creator) > 1) {
        cr_assert(narrowed, "with several cores, pinning narrows a mask");
    }
    /*
     * When every worker got a single CPU, each usable core has one allowed
     * CPU, so there are at least n cores and no two workers share one.
     */
    if (single) {
        for (unsigned int i = 0; i < n; i++) {
            for (unsigned int j = i + 1; j < n; j++) {
                cr_assert(!CPU_EQUAL(&s.worker[i], &s.worker[j]),
                          "workers %u and %u share a CPU", i, j);
            }
        }
    }
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
