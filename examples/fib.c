/*
 * fib.c - the README example: fib(n) with one task per call.
 * Usage: fib [n]   (default 30)
 */
#include <weft.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* fib(n), one task per call: spawn fib(n-1), compute fib(n-2) here, join. */
static weft_status_t
fib(weft_task_t *self, void *arg, weft_value_t *out)
{
    intptr_t n = (intptr_t)arg;
    weft_future_t *f;
    weft_value_t a, b;

    if (n < 2) {
        out->i64 = n;
        return WEFT_OK;
    }
    weft_status_t st =
        weft_spawn(weft_task_executor(self), fib, (void *)(n - 1), &f);
    if (st != WEFT_OK) {
        return st;
    }
    weft_status_t sb = fib(self, (void *)(n - 2), &b);
    st = weft_join(f, &a); /* waits (helping, never blocking) and releases f */
    if (st != WEFT_OK || sb != WEFT_OK) {
        return st != WEFT_OK ? st : sb;
    }
    out->i64 = a.i64 + b.i64;
    return WEFT_OK;
}

int
main(int argc, char **argv)
{
    weft_executor_t *ex;
    weft_value_t v;
    intptr_t n = argc > 1 ? (intptr_t)atol(argv[1]) : 30;

    if (weft_executor_create(NULL, &ex) != WEFT_OK) {
        return 1;
    }
    weft_status_t st = weft_executor_run(ex, fib, (void *)n, &v);
    weft_executor_destroy(ex);
    if (st != WEFT_OK) {
        fprintf(stderr, "fib: %s\n", weft_status_str(st));
        return 1;
    }
    printf("fib(%ld) = %lld\n", (long)n, (long long)v.i64);
    return 0;
}
