/*
 * debug_report.c - debug mode: what weft reports about futures nobody
 * awaited, failures nobody looked at and groups nobody joined, and what
 * the live task tree looks like.
 *
 * A task "parent" makes four mistakes on purpose: it releases the future
 * of "forgotten" without waiting for it, spawns "lost-failure" detached
 * (its failure goes nowhere), destroys the group "unjoined" without
 * joining it, and keeps "sleeper" running while main dumps the live task
 * tree. Main then prints the report (weft_executor_debug_report), and the
 * executor's destroy hands the same report to on_debug_report. Running
 * any program with WEFT_DEBUG_TASKS=1 in its environment turns debug mode
 * on for every executor it makes, and the report then goes to stderr.
 * The last line checks the counts: one of each mistake.
 */
#include <weft.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static atomic_int sleeper_running;
static atomic_int wake_sleeper;
static int reports_delivered;

static void
print_report(const char *report, void *user)
{
    (void)user;
    reports_delivered++;
    printf("on_debug_report at destroy:\n%s\n", report);
}

static weft_status_t
fine(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 1;
    return WEFT_OK;
}

static weft_status_t
failing(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    return weft_task_fail(self, WEFT_EUSER, "disk %d is full", 3);
}

static weft_status_t
sleeper(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    atomic_store(&sleeper_running, 1);
    while (!atomic_load(&wake_sleeper)) {
        sched_yield();
    }
    out->i64 = 1;
    return WEFT_OK;
}

static weft_status_t
parent(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t *f = NULL;

    /* Mistake 1: a future released without anyone awaiting it. */
    weft_spawn_opts_t o1 = {.name = "forgotten", WEFT_SPAWN_SITE};
    if (weft_spawn_ex(ex, &o1, fine, NULL, &f) == WEFT_OK) {
        weft_future_release(f);
    }
    /* Mistake 2: a detached task whose failure nobody will see. */
    weft_spawn_opts_t o2 = {.name = "lost-failure", WEFT_SPAWN_SITE};
    (void)weft_spawn_ex(ex, &o2, failing, NULL, NULL);
    /* Mistake 3: a group destroyed without weft_group_join(). */
    weft_group_opts_t go;
    memset(&go, 0, sizeof(go));
    go.name = "unjoined";
    go.file = __FILE__;
    go.line = __LINE__;
    go.func = __func__;
    weft_group_t *g = NULL;
    if (weft_group_create(ex, &go, &g) == WEFT_OK) {
        weft_spawn_opts_t om = {.name = "member", WEFT_SPAWN_SITE};
        (void)weft_group_spawn(g, &om, fine, NULL, NULL);
        (void)weft_group_destroy(g);
    }
    /* Done right: spawned, awaited, released. And one that main sees
     * running in the tree dump. */
    weft_spawn_opts_t o3 = {.name = "sleeper", WEFT_SPAWN_SITE};
    if (weft_spawn_ex(ex, &o3, sleeper, NULL, &f) != WEFT_OK) {
        return WEFT_ENOMEM;
    }
    weft_status_t st = weft_join(f, NULL);
    out->i64 = 1;
    return st;
}

int
main(void)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    cfg.debug_tasks = true;
    cfg.on_debug_report = print_report;
    weft_executor_t *ex = NULL;
    if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
        return 1;
    }
    weft_spawn_opts_t po = {.name = "parent", WEFT_SPAWN_SITE};
    weft_future_t *pf = NULL;
    if (weft_spawn_ex(ex, &po, parent, NULL, &pf) != WEFT_OK) {
        return 1;
    }
    while (!atomic_load(&sleeper_running)) {
        sched_yield();
    }
    printf("live task tree while \"sleeper\" runs:\n");
    (void)weft_executor_dump_tasks(ex, stdout);
    printf("\n\n");
    atomic_store(&wake_sleeper, 1);
    weft_status_t st = weft_join(pf, NULL);

    (void)weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN);
    weft_debug_summary_t sum;
    printf("weft_executor_debug_report after shutdown:\n");
    (void)weft_executor_debug_report(ex, stdout, &sum);
    printf("\n\n");
    if (weft_executor_destroy(ex) != WEFT_OK) {
        return 1;
    }
    int ok = st == WEFT_OK && sum.not_awaited == 1 &&
             sum.errors_not_observed == 1 && sum.groups_not_joined == 1 &&
             reports_delivered == 1;
    printf("not awaited %zu, errors not observed %zu, groups not joined %zu, "
           "reports delivered %d: %s\n",
           sum.not_awaited, sum.errors_not_observed, sum.groups_not_joined,
           reports_delivered, ok ? "as expected" : "UNEXPECTED");
    return ok ? 0 : 1;
}
