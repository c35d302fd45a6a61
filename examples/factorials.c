/*
 * factorials.c - weft_gather against weft_gather_settled, the weft version
 * of the asyncio.gather factorial example.
 *
 * Three tasks compute factorials step by step and poll their token between
 * steps: A to 5!, B to 10! (it fails at step 4), C to 2!. A is slow: its
 * step 4 waits for an input that main provides (a flag), so A is still
 * running when B fails.
 *
 *   1. weft_gather: B's failure is the trigger. The gather cancels A at
 *      once (A sees weft_task_is_cancelled() and stops) with a reason whose
 *      cause is B's error, and ends FAILED only after A has stopped. main
 *      provides A's input only after the gather has ended, so A cannot
 *      finish first. C had already finished and keeps its value.
 *   2. weft_gather_settled: nothing is cancelled. main provides A's input
 *      once B has failed; the result is 120, error, 2.
 *
 * The program checks its own accounting (every task ended once, every
 * argument released once, no body still running) and the outcomes above,
 * and exits non-zero when anything is off.
 */
#include <weft.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A safety net, not part of the demonstration: a step that waits gives up
 * after this long (so a bug shows as a failure, never as a hang). */
#define WAIT_LIMIT_NS (30ull * 1000000000ull)

static atomic_int spawned, released, running;
static atomic_int n_succeeded, n_failed, n_cancelled;

/* Shared by the three tasks of one round. */
struct round {
    atomic_int a_step;   /* last step A finished */
    atomic_bool c_done;  /* C has computed its value */
    atomic_bool a_input; /* A's input for step 4 is there */
};

struct job {
    const char *name;
    int upto;    /* compute upto! */
    int fail_at; /* 0: never fails */
    struct round *r;
};

static void
release_job(void *arg)
{
    free(arg);
    atomic_fetch_add(&released, 1);
}

/* Spin (polling the task's token) until *flag is set or the task is
 * cancelled. Returns WEFT_OK when the flag was set, WEFT_ECANCELED when
 * cancelled, WEFT_ETIMEDOUT after WAIT_LIMIT_NS. */
static weft_status_t
wait_flag(weft_task_t *self, atomic_bool *flag)
{
    uint64_t limit = weft_clock_now_ns() + WAIT_LIMIT_NS;
    while (!atomic_load(flag)) {
        if (weft_task_is_cancelled(self)) {
            return WEFT_ECANCELED;
        }
        if (weft_clock_now_ns() > limit) {
            return WEFT_ETIMEDOUT;
        }
    }
    return WEFT_OK;
}

static weft_status_t
factorial(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct job *j = arg;
    struct round *r = j->r;
    int64_t f = 1;
    weft_status_t st = WEFT_OK;

    atomic_fetch_add(&running, 1);
    for (int i = 1; i <= j->upto; i++) {
        if (weft_task_is_cancelled(self)) {
            printf("  %s: cancelled before step %d, stops\n", j->name, i);
            st = WEFT_ECANCELED;
            goto done;
        }
        if (j->name[0] == 'A' && i == 4) {
            /* A's slow step: its input arrives from main. */
            st = wait_flag(self, &r->a_input);
            if (st == WEFT_ECANCELED) {
                printf("  %s: cancelled while waiting at step %d, stops\n",
                       j->name, i);
                goto done;
            }
            if (st != WEFT_OK) {
                st = weft_task_fail(self, WEFT_ETIMEDOUT,
                                    "step %d: input never came", i);
                goto done;
            }
        }
        if (i == j->fail_at) {
            /* B fails only once A is mid-way and C has its value, so both
             * gathers see the same, deterministic situation. */
            uint64_t limit = weft_clock_now_ns() + WAIT_LIMIT_NS;
            while ((atomic_load(&r->a_step) < 3 || !atomic_load(&r->c_done)) &&
                   weft_clock_now_ns() < limit) {
                if (weft_task_is_cancelled(self)) {
                    st = WEFT_ECANCELED;
                    goto done;
                }
            }
            printf("  %s: step %d fails\n", j->name, i);
            st = weft_task_fail(self, WEFT_EUSER, "step %d of %d failed", i,
                                j->upto);
            goto done;
        }
        f *= i;
        if (j->name[0] == 'A') {
            atomic_store(&r->a_step, i);
        }
    }
    printf("  %s: %d! = %" PRId64 "\n", j->name, j->upto, f);
    out->i64 = f;
    if (j->name[0] == 'C') {
        atomic_store(&r->c_done, true);
    }
done:
    atomic_fetch_sub(&running, 1);
    return st;
}

static int
spawn_three(weft_executor_t *ex, struct round *r, weft_future_t *f[3])
{
    static const char *const names[3] = {"A", "B", "C"};
    static const int upto[3] = {5, 10, 2};
    static const int fail_at[3] = {0, 4, 0};

    for (int i = 0; i < 3; i++) {
        struct job *j = malloc(sizeof(*j));
        if (j == NULL) {
            return -1;
        }
        *j = (struct job){names[i], upto[i], fail_at[i], r};
        weft_spawn_opts_t o = {
            .name = names[i], .release = release_job, WEFT_SPAWN_SITE};
        atomic_fetch_add(&spawned, 1);
        if (weft_spawn_ex(ex, &o, factorial, j, &f[i]) != WEFT_OK) {
            return -1; /* the release hook already ran */
        }
    }
    return 0;
}

static void
count_outcome(weft_outcome_t o)
{
    if (o == WEFT_OUTCOME_SUCCEEDED) {
        atomic_fetch_add(&n_succeeded, 1);
    } else if (o == WEFT_OUTCOME_FAILED) {
        atomic_fetch_add(&n_failed, 1);
    } else if (o == WEFT_OUTCOME_CANCELLED) {
        atomic_fetch_add(&n_cancelled, 1);
    }
}

/* Print the ledger of a combined future; count every child's outcome. */
static void
print_ledger(const weft_future_t *g)
{
    static const char *const names[3] = {"A", "B", "C"};
    printf("ledger:\n");
    for (size_t i = 0; i < weft_combine_size(g); i++) {
        weft_child_result_t c;
        if (weft_combine_child(g, i, &c) != WEFT_OK) {
            printf("  %s: (no entry)\n", names[i]);
            continue;
        }
        count_outcome(c.outcome);
        printf("  %s: %-9s", names[i], weft_outcome_name(c.outcome));
        if (c.outcome == WEFT_OUTCOME_SUCCEEDED) {
            printf(" value %" PRId64, c.value.i64);
        }
        if (c.outcome == WEFT_OUTCOME_CANCELLED) {
            printf(" %s%s", c.started ? "(was running)" : "(never started)",
                   c.cancelled_by_combinator ? " by the gather" : "");
        }
        if (c.error != NULL) {
            char buf[256];
            weft_error_format(c.error, buf, sizeof(buf));
            printf("\n     %s: %s",
                   c.outcome == WEFT_OUTCOME_CANCELLED ? "reason" : "error",
                   buf);
        }
        printf("\n");
    }
}

/* Whether `e` or one of its causes is `target` (or was made by the same
 * task with the same code). */
static bool
caused_by(const weft_error_t *e, const weft_error_t *target)
{
    for (; e != NULL; e = weft_error_cause(e)) {
        if (e == target ||
            (weft_error_task_id(e) == weft_error_task_id(target) &&
             weft_error_task_id(e) != 0 &&
             weft_error_status(e) == weft_error_status(target))) {
            return true;
        }
    }
    return false;
}

int
main(void)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 3; /* one per task: all three can run at once */
    weft_executor_t *ex;
    if (weft_executor_create(&cfg, &ex) != WEFT_OK) {
        return 1;
    }
    int bad = 0;

    /* ---- 1. gather: fail fast ------------------------------------------ */
    printf("1. weft_gather(A, B, C)\n");
    struct round r1 = {0};
    weft_future_t *f1[3], *g1;
    weft_combine_opts_t o1 = {.name = "factorials"};
    if (spawn_three(ex, &r1, f1) != 0 ||
        weft_gather(ex, f1, 3, &o1, &g1) != WEFT_OK) {
        return 1;
    }
    weft_status_t st1 = weft_future_wait(g1);
    atomic_store(&r1.a_input, true); /* too late: the gather has ended */
    printf("gather: %s (%s)\n", weft_outcome_name(weft_future_outcome(g1)),
           weft_status_name(st1));
    weft_error_t *trigger = weft_future_error(g1);
    printf("trigger: ");
    weft_error_print(trigger, stdout);
    weft_errgroup_t *errs = NULL;
    if (weft_combine_errors(g1, &errs) == WEFT_OK) {
        printf("error group:\n");
        weft_errgroup_print(errs, stdout);
        weft_errgroup_release(errs);
    } else {
        bad |= 1;
    }
    print_ledger(g1);

    /* What the gather promised: B failed, A was cancelled because of it
     * (and stopped before the gather ended), C kept its value. */
    weft_error_t *b_err = weft_future_error(f1[1]);
    weft_error_t *a_reason = weft_future_error(f1[0]);
    bool a_cancelled = weft_future_outcome(f1[0]) == WEFT_OUTCOME_CANCELLED;
    if (!a_cancelled) {
        printf("!! A %s instead of being cancelled\n",
               weft_outcome_name(weft_future_outcome(f1[0])));
    } else if (!caused_by(a_reason, b_err)) {
        printf("!! A's cancellation reason does not lead back to B's "
               "error\n");
    } else {
        printf("A was cancelled because B failed (its reason's cause is "
               "B's error) and stopped at step 4.\n");
    }
    weft_value_t c_val = {0};
    bad |= st1 != WEFT_EUSER || !a_cancelled || !caused_by(a_reason, b_err) ||
           weft_future_outcome(f1[1]) != WEFT_OUTCOME_FAILED ||
           weft_future_value(f1[2], &c_val) != WEFT_OK || c_val.i64 != 2 ||
           weft_combine_decider(g1) != 1 || atomic_load(&running) != 0;
    for (int i = 0; i < 3; i++) {
        weft_future_release(f1[i]);
    }
    weft_future_release(g1);

    /* ---- 2. gather_settled: nothing is cancelled -------------------- */
    printf("\n2. weft_gather_settled(A, B, C)\n");
    struct round r2 = {0};
    weft_future_t *f2[3], *g2;
    weft_combine_opts_t o2 = {.name = "factorials (settled)"};
    if (spawn_three(ex, &r2, f2) != 0 ||
        weft_gather_settled(ex, f2, 3, &o2, &g2) != WEFT_OK) {
        return 1;
    }
    weft_future_wait(f2[1]);         /* B has failed ... */
    atomic_store(&r2.a_input, true); /* ... and A goes on regardless */
    weft_status_t st2 = weft_future_wait(g2);
    printf("gather_settled: %s (%s)\n",
           weft_outcome_name(weft_future_outcome(g2)), weft_status_name(st2));
    print_ledger(g2);
    printf("result: ");
    int expect[3] = {120, -1, 2};
    for (size_t i = 0; i < 3; i++) {
        weft_child_result_t c;
        weft_combine_child(g2, i, &c);
        if (c.outcome == WEFT_OUTCOME_SUCCEEDED) {
            printf("%s%" PRId64, i ? ", " : "", c.value.i64);
            bad |= c.value.i64 != expect[i];
        } else {
            printf("%serror", i ? ", " : "");
            bad |= expect[i] != -1 || c.outcome != WEFT_OUTCOME_FAILED;
        }
    }
    printf("\n");
    bad |= st2 != WEFT_OK || atomic_load(&running) != 0;
    for (int i = 0; i < 3; i++) {
        weft_future_release(f2[i]);
    }
    weft_future_release(g2);

    weft_status_t dst = weft_executor_destroy(ex);
    int sp = atomic_load(&spawned), rel = atomic_load(&released);
    int s = atomic_load(&n_succeeded), fl = atomic_load(&n_failed),
        c = atomic_load(&n_cancelled);
    printf("\naccounting: %d spawned, %d ended (%d succeeded, %d failed, %d "
           "cancelled), %d released, %d leaked, %d still running, destroy "
           "%s\n",
           sp, s + fl + c, s, fl, c, rel, sp - rel, atomic_load(&running),
           weft_status_name(dst));
    bad |= sp != 6 || s + fl + c != 6 || s != 3 || fl != 2 || c != 1 ||
           rel != 6 || dst != WEFT_OK;
    if (bad) {
        printf("FAILED: the outcomes or the accounting are not what "
               "weft_gather / weft_gather_settled promise\n");
    }
    return bad ? 1 : 0;
}
