/*
 * restart.c - a supervisor that restarts a pair of tasks, and no task
 * survives a round.
 *
 * Each round runs two tasks in a task group: a worker that loops forever
 * (polling its token between steps) and a checker that fails at its third
 * step. The checker's failure cancels the group, which stops the looping
 * worker; weft_group_join() returns only once both have ended. The
 * supervisor then prints the round and starts the next one, five times.
 *
 * Live tasks are counted with atomics (+1 when a body starts, -1 when it
 * returns): after every join the count must be 0, so nothing from an old
 * round is still running when the next starts. The checker fails only
 * once the looper has started (it waits for it), so every round really
 * has to stop a running task.
 */
#include <weft.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#define ROUNDS 5
/* Safety net: the checker gives up waiting for the looper after this. */
#define WAIT_LIMIT_NS (30ull * 1000000000ull)

static atomic_int live; /* bodies running right now */
static atomic_int spawned, released;
static atomic_int n_succeeded, n_failed, n_cancelled;
static atomic_bool looper_started;

static void
release_hook(void *arg)
{
    (void)arg;
    atomic_fetch_add(&released, 1);
}

static weft_status_t
looper(weft_task_t *self, void *arg, weft_value_t *out)
{
    volatile unsigned long steps = 0;
    (void)arg;
    (void)out;
    atomic_fetch_add(&live, 1);
    atomic_store(&looper_started, true);
    while (!weft_task_is_cancelled(self)) {
        steps++; /* one step of work per poll, forever */
    }
    atomic_fetch_sub(&live, 1);
    return WEFT_ECANCELED;
}

static weft_status_t
checker(weft_task_t *self, void *arg, weft_value_t *out)
{
    int round = *(const int *)arg;
    weft_status_t st = WEFT_OK;
    (void)out;
    atomic_fetch_add(&live, 1);
    uint64_t limit = weft_clock_now_ns() + WAIT_LIMIT_NS;
    for (int step = 1; step <= 3; step++) {
        if (weft_task_is_cancelled(self)) {
            st = WEFT_ECANCELED;
            break;
        }
        if (step == 3) {
            while (!atomic_load(&looper_started) &&
                   weft_clock_now_ns() < limit &&
                   !weft_task_is_cancelled(self)) {
            }
            st = weft_task_fail(self, WEFT_EUSER,
                                "round %d: check failed at step %d", round,
                                step);
        }
    }
    atomic_fetch_sub(&live, 1);
    return st;
}

static void
count_outcome(weft_outcome_t o)
{
    atomic_fetch_add(o == WEFT_OUTCOME_SUCCEEDED ? &n_succeeded
                     : o == WEFT_OUTCOME_FAILED  ? &n_failed
                                                 : &n_cancelled,
                     1);
}

int
main(void)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2; /* both tasks can run at once */
    weft_executor_t *ex;
    if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
        return 1;
    }
    int bad = 0;
    static const char *const names[2] = {"looper", "checker"};

    for (int round = 1; round <= ROUNDS; round++) {
        weft_group_t *g;
        weft_group_opts_t go = {.name = "pair"};
        atomic_store(&looper_started, false);
        if (weft_group_create(ex, &go, &g) != WEFT_OK) {
            return 1;
        }
        weft_spawn_opts_t ol = {
            .name = "looper", .release = release_hook, WEFT_SPAWN_SITE};
        weft_spawn_opts_t oc = {
            .name = "checker", .release = release_hook, WEFT_SPAWN_SITE};
        atomic_fetch_add(&spawned, 2);
        if (weft_group_spawn(g, &ol, looper, NULL, NULL) != WEFT_OK ||
            weft_group_spawn(g, &oc, checker, &round, NULL) != WEFT_OK) {
            printf("round %d: spawn refused\n", round);
            bad = 1;
        }
        weft_status_t st = weft_group_join(g);
        int live_now = atomic_load(&live);

        printf("round %d: join %s, live tasks after join: %d\n", round,
               weft_status_name(st), live_now);
        for (size_t i = 0; i < weft_group_size(g); i++) {
            weft_child_result_t c;
            if (weft_group_child(g, i, &c) != WEFT_OK) {
                bad = 1;
                continue;
            }
            count_outcome(c.outcome);
            char buf[200] = "";
            if (c.error != NULL) {
                weft_error_format(c.error, buf, sizeof(buf));
            }
            printf("  %-7s %-9s %s\n", names[i], weft_outcome_name(c.outcome),
                   buf);
            weft_outcome_t want =
                i == 0 ? WEFT_OUTCOME_CANCELLED : WEFT_OUTCOME_FAILED;
            bad |= c.outcome != want || (i == 0 && !c.started);
        }
        bad |= st != WEFT_EUSER || live_now != 0 || weft_group_size(g) != 2;
        weft_group_destroy(g);
    }

    weft_status_t dst = weft_executor_destroy(ex);
    int sp = atomic_load(&spawned), rel = atomic_load(&released);
    int s = atomic_load(&n_succeeded), f = atomic_load(&n_failed),
        c = atomic_load(&n_cancelled);
    printf("accounting: %d spawned, %d ended (%d succeeded, %d failed, %d "
           "cancelled), %d released, %d leaked, %d live, destroy %s\n",
           sp, s + f + c, s, f, c, rel, sp - rel, atomic_load(&live),
           weft_status_name(dst));
    bad |= sp != 2 * ROUNDS || s + f + c != sp || f != ROUNDS || c != ROUNDS ||
           rel != sp || atomic_load(&live) != 0 || dst != WEFT_OK;
    if (bad) {
        printf("FAILED: a round did not end as the task group promises\n");
    }
    return bad ? 1 : 0;
}
