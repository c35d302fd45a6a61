/*
 * consumer.c - a program that uses weft the way an application would:
 * through <weft.h> only, linked against an installed (or embedded) weft.
 *
 * It spawns one task, joins it and prints the value. The task computes
 * fib(15) with fork-join frames, whose inline fast paths (weft/frame.h)
 * read the calling worker through libweft's exported thread-local
 * variable, so a shared-library link checks that export too. It asks
 * for pinned workers, which Linux gives with or without hwloc (sysfs),
 * and falls back to unpinned ones where the library says WEFT_ENOTSUP,
 * so the output also says whether pinning worked.
 */
#include <weft.h>

#include <stdint.h>
#include <stdio.h>

static weft_status_t
fib(weft_task_t *self, void *arg, weft_value_t *out)
{
    long n = (long)(intptr_t)arg;
    if (n < 2) {
        out->i64 = n;
        return WEFT_OK;
    }
    weft_frame_t fr;
    weft_value_t a, b;
    weft_status_t st =
        weft_frame_fork(self, &fr, fib, (void *)(intptr_t)(n - 1));
    if (st != WEFT_OK) {
        return st;
    }
    (void)fib(self, (void *)(intptr_t)(n - 2), &b);
    st = weft_frame_join(&fr, &a, NULL);
    out->i64 = a.i64 + b.i64;
    return st;
}

static weft_status_t
answer(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_value_t f15;
    weft_status_t st = fib(self, (void *)(intptr_t)15, &f15);
    /* fib(15) = 610 */
    out->i64 = st == WEFT_OK && f15.i64 == 610 ? 6 * 7 : -1;
    return st;
}

int
main(void)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = 2;
    cfg.pin_workers = true;
    weft_executor_t *ex;
    weft_status_t pin = weft_executor_create(&cfg, &ex);
    if (pin == WEFT_ENOTSUP) {
        cfg.pin_workers = false;
        pin = weft_executor_create(&cfg, &ex);
        if (pin == WEFT_OK) {
            pin = WEFT_ENOTSUP;
        }
    }
    if (pin != WEFT_OK && pin != WEFT_ENOTSUP) {
        fprintf(stderr, "consumer: %s\n", weft_status_name(pin));
        return 1;
    }

    weft_future_t *f;
    weft_value_t v = {.i64 = 0};
    weft_status_t st = weft_spawn(ex, answer, NULL, &f);
    if (st == WEFT_OK) {
        st = weft_join(f, &v);
    }
    weft_status_t sd = weft_executor_destroy(ex);
    if (st != WEFT_OK || sd != WEFT_OK) {
        fprintf(stderr, "consumer: %s, destroy %s\n", weft_status_name(st),
                weft_status_name(sd));
        return 1;
    }
    printf("consumer: task value %lld; workers %s; weft %d.%d.%d\n",
           (long long)v.i64,
           pin == WEFT_OK ? "pinned" : "unpinned (WEFT_ENOTSUP)",
           WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH);
    return v.i64 == 42 ? 0 : 1;
}
