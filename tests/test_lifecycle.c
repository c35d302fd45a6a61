/*
 * test_lifecycle.c - the task lifecycle matrix of stress_lifecycle.c as
 * named Criterion tests, one per (how the task ends, worker count): each
 * runs that group's 8 matrix cells (awaited/detached x continuation
 * before/after x handle released before/after) and its 2 fire-and-forget
 * cells, in all 8 variants (pending as running or queued; waiter thread or
 * waiter task; cancelled through the token or the future). The cells, their checks and the determinism argument are
 * in stress_lifecycle.c, which this file includes (without its main) so
 * both run the same code; failures are printed with the cell's name.
 */
#define LC_NO_MAIN 1
#include "stress_lifecycle.c"

#include <criterion/criterion.h>

TestSuite(lifecycle, .timeout = 120.0);

static void
lc_group(enum lc_end end, unsigned int workers)
{
    long runs = 0;
    long failed = lc_run_matrix((int)end, workers, 8, &runs);
    cr_assert_eq(runs, 8 * 10, "ran %ld case runs", runs);
    cr_assert_eq(failed, 0, "%ld of %ld case runs failed (see stderr)",
                 failed, runs);
}

#define LC_GROUP(name, end)                                                   \
    Test(lifecycle, name##_on_1_worker) { lc_group(end, 1); }                 \
    Test(lifecycle, name##_on_2_workers) { lc_group(end, 2); }                \
    Test(lifecycle, name##_on_4_workers) { lc_group(end, 4); }

LC_GROUP(succeed, LC_SUCCEED)
LC_GROUP(fail, LC_FAIL)
LC_GROUP(cancel_before_start, LC_CANCEL_BEFORE_START)
LC_GROUP(cancel_while_running, LC_CANCEL_WHILE_RUNNING)
LC_GROUP(cancel_after_completion, LC_CANCEL_AFTER_COMPLETION)
