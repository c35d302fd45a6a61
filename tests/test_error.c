/*
 * test_error.c - error values: construction, ownership, origin, causes,
 * formatting, and the out-of-memory path.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <weft/error.h>
#include <weft/status.h>

#include "primitives/alloc.h"
#include "primitives/error.h"

TestSuite(error, .timeout = 10.0);

static int64_t live_at_start;

static void
leak_check_begin(void)
{
    live_at_start = weft__alloc_live();
}

static void
leak_check_end(void)
{
    cr_assert_eq(weft__alloc_live(), live_at_start, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live_at_start));
}

static char *
fmt(const weft_error_t *e)
{
    static char buf[1024];
    size_t n = weft_error_format(e, buf, sizeof(buf));
    cr_assert_lt(n, sizeof(buf));
    return buf;
}

Test(error, create_sets_code_and_formatted_message)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_create(&e, WEFT_EUSER, "record %d not found", 3),
                 WEFT_OK);
    cr_assert_not_null(e);
    cr_assert_eq(weft_error_status(e), WEFT_EUSER);
    cr_assert_str_eq(weft_error_message(e), "record 3 not found");
    cr_assert_null(weft_error_task_name(e));
    cr_assert_eq(weft_error_task_id(e), 0);
    cr_assert_null(weft_error_cause(e));
    cr_assert_null(weft_error_file(e));
    cr_assert_eq(weft_error_line(e), 0);
    cr_assert_null(weft_error_func(e));
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: record 3 not found");
    cr_assert_eq(weft_error_release(e), WEFT_OK);
    leak_check_end();
}

Test(error, null_format_uses_the_code_standard_text)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_create(&e, WEFT_ETIMEDOUT, NULL), WEFT_OK);
    cr_assert_str_eq(weft_error_message(e), "");
    cr_assert_str_eq(fmt(e), "WEFT_ETIMEDOUT: deadline passed before the "
                             "operation completed");
    weft_error_release(e);
    leak_check_end();
}

Test(error, create_rejects_null_out_and_non_error_codes)
{
    leak_check_begin();
    weft_error_t *e = (weft_error_t *)0x1;
    cr_assert_eq(weft_error_create(NULL, WEFT_EUSER, "x"), WEFT_EINVAL);
    cr_assert_eq(weft_error_create(&e, WEFT_OK, "x"), WEFT_EINVAL);
    cr_assert_eq(weft_error_create(&e, -5, "x"), WEFT_EINVAL);
    cr_assert_eq(e, (weft_error_t *)0x1, "*out must be untouched");
    cr_assert_eq(weft_error_wrap(NULL, NULL, WEFT_EUSER, "x"), WEFT_EINVAL);
    cr_assert_eq(weft_error_wrap(&e, NULL, 0, "x"), WEFT_EINVAL);
    cr_assert_eq(e, (weft_error_t *)0x1);
    leak_check_end();
}

Test(error, getters_and_refcount_calls_accept_null)
{
    cr_assert_eq(weft_error_retain(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_error_release(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_error_status(NULL), WEFT_OK);
    cr_assert_null(weft_error_message(NULL));
    cr_assert_null(weft_error_task_name(NULL));
    cr_assert_eq(weft_error_task_id(NULL), 0);
    cr_assert_null(weft_error_cause(NULL));
    cr_assert_null(weft_error_file(NULL));
    cr_assert_eq(weft_error_line(NULL), 0);
    cr_assert_null(weft_error_func(NULL));
    cr_assert_eq(weft_error_print(NULL, stdout), WEFT_EINVAL);
    cr_assert_eq(weft__error_set_task(NULL, "x", 1), WEFT_EINVAL);
    cr_assert_eq(weft__error_set_site(NULL, "f.c", 1, "g"), WEFT_EINVAL);
}

Test(error, retained_error_lives_until_last_release)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, "shared");
    int64_t with_one = weft__alloc_live();
    cr_assert_eq(weft_error_retain(e), WEFT_OK);
    cr_assert_eq(weft_error_release(e), WEFT_OK);
    cr_assert_eq(weft__alloc_live(), with_one, "freed while still held");
    cr_assert_str_eq(weft_error_message(e), "shared");
    cr_assert_eq(weft_error_release(e), WEFT_OK);
    leak_check_end();
}

Test(error, wrap_keeps_cause_alive_and_releases_it_with_the_error)
{
    leak_check_begin();
    weft_error_t *cause = NULL;
    weft_error_t *e = NULL;
    weft_error_create(&cause, WEFT_ENOTFOUND, "no file %s", "a.txt");
    cr_assert_eq(weft_error_wrap(&e, cause, WEFT_EUSER, "load failed"),
                 WEFT_OK);
    weft_error_release(cause); /* the wrapper keeps its own reference */
    cr_assert_eq(weft_error_cause(e), cause);
    cr_assert_str_eq(weft_error_message(weft_error_cause(e)),
                     "no file a.txt");
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: load failed caused by: "
                             "WEFT_ENOTFOUND: no file a.txt");
    weft_error_release(e);
    leak_check_end();
}

Test(error, wrap_with_null_cause_is_create)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_wrap(&e, NULL, WEFT_EUSER, "%s", "plain"),
                 WEFT_OK);
    cr_assert_null(weft_error_cause(e));
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: plain");
    weft_error_release(e);
    leak_check_end();
}

Test(error, long_cause_chain_is_released_without_recursion)
{
    leak_check_begin();
    /* Deep enough to overflow the stack if release recursed. */
    enum { DEPTH = 200000 };
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, "root");
    for (int i = 0; i < DEPTH; i++) {
        weft_error_t *w = NULL;
        cr_assert_eq(weft_error_wrap(&w, e, WEFT_EUSER, NULL), WEFT_OK);
        weft_error_release(e);
        e = w;
    }
    weft_error_release(e);
    leak_check_end();
}

Test(error, format_shows_task_site_and_cause)
{
    leak_check_begin();
    weft_error_t *cause = NULL;
    weft_error_t *e = NULL;
    weft_error_create(&cause, WEFT_ETIMEDOUT, "db slow");
    weft__error_set_task(cause, "query", 7);
    weft_error_wrap(&e, cause, WEFT_EUSER, "record %d not found", 3);
    weft_error_release(cause);
    cr_assert_eq(weft__error_set_task(e, "fetch", 12), WEFT_OK);
    cr_assert_eq(weft__error_set_site(e, "main.c", 40, "main"), WEFT_OK);
    cr_assert_str_eq(weft_error_task_name(e), "fetch");
    cr_assert_eq(weft_error_task_id(e), 12);
    cr_assert_str_eq(weft_error_file(e), "main.c");
    cr_assert_eq(weft_error_line(e), 40);
    cr_assert_str_eq(weft_error_func(e), "main");
    cr_assert_str_eq(fmt(e),
                     "WEFT_EUSER: record 3 not found [task fetch#12 at "
                     "main.c:40 (main)] caused by: WEFT_ETIMEDOUT: db slow "
                     "[task query#7]");
    weft_error_release(e);
    leak_check_end();
}

Test(error, format_brackets_only_what_was_recorded)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, "m");
    weft__error_set_task(e, NULL, 5);
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: m [task #5]");
    weft__error_set_task(e, "named", 0);
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: m [task named]");
    weft__error_set_task(e, NULL, 0);
    weft__error_set_site(e, "x.c", 9, NULL);
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: m [at x.c:9]");
    weft__error_set_site(e, "x.c", 9, "fn");
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: m [at x.c:9 (fn)]");
    weft__error_set_site(e, NULL, 9, "fn");
    cr_assert_null(weft_error_file(e));
    cr_assert_eq(weft_error_line(e), 0);
    cr_assert_null(weft_error_func(e));
    cr_assert_str_eq(fmt(e), "WEFT_EUSER: m");
    weft_error_release(e);
    leak_check_end();
}

Test(error, format_names_codes_outside_the_table)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, 1000, "custom");
    cr_assert_eq(weft_error_status(e), 1000);
    cr_assert_str_eq(fmt(e), "WEFT_UNKNOWN(1000): custom");
    weft_error_release(e);
    weft_error_create(&e, 30, NULL);
    cr_assert_str_eq(fmt(e), "WEFT_UNKNOWN(30): unknown status");
    weft_error_release(e);
    leak_check_end();
}

Test(error, format_has_snprintf_semantics)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, "abcdef");
    const char *full = "WEFT_EUSER: abcdef";
    size_t len = strlen(full);

    char small[8];
    memset(small, 'x', sizeof(small));
    cr_assert_eq(weft_error_format(e, small, sizeof(small)), len);
    cr_assert_str_eq(small, "WEFT_EU", "truncated and NUL-terminated");

    char one[1] = {'x'};
    cr_assert_eq(weft_error_format(e, one, 1), len);
    cr_assert_eq(one[0], '\0');

    char untouched[4] = {'q', 'q', 'q', 'q'};
    cr_assert_eq(weft_error_format(e, untouched, 0), len);
    cr_assert_eq(untouched[0], 'q', "n == 0 writes nothing");
    cr_assert_eq(weft_error_format(e, NULL, 0), len);

    char exact[32];
    cr_assert_eq(weft_error_format(e, exact, len + 1), len);
    cr_assert_str_eq(exact, full);
    weft_error_release(e);
    leak_check_end();
}

Test(error, format_of_null_is_a_placeholder)
{
    char buf[16];
    cr_assert_eq(weft_error_format(NULL, buf, sizeof(buf)), 6);
    cr_assert_str_eq(buf, "(null)");
}

Test(error, task_name_is_copied_and_truncated)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, NULL);
    char name[100];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    cr_assert_eq(weft__error_set_task(e, name, 1), WEFT_OK);
    name[0] = 'Z'; /* the error holds a copy */
    cr_assert_eq(strlen(weft_error_task_name(e)),
                 WEFT__ERROR_TASK_NAME_MAX - 1);
    cr_assert_eq(weft_error_task_name(e)[0], 'n');
    weft_error_release(e);
    leak_check_end();
}

Test(error, origin_setters_refuse_a_shared_error)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, NULL);
    weft_error_retain(e);
    cr_assert_eq(weft__error_set_task(e, "t", 1), WEFT_EBUSY);
    cr_assert_eq(weft__error_set_site(e, "f.c", 1, "g"), WEFT_EBUSY);
    cr_assert_null(weft_error_task_name(e));
    cr_assert_null(weft_error_file(e));
    weft_error_release(e);
    cr_assert_eq(weft__error_set_task(e, "t", 1), WEFT_OK);
    weft_error_release(e);
    leak_check_end();
}

Test(error, immortal_errors_ignore_refcounting_and_setters)
{
    weft_error_t *imm[] = {weft__error_enomem(), weft__error_deadline(),
                           weft__error_canceled()};
    int codes[] = {WEFT_ENOMEM, WEFT_EDEADLINE, WEFT_ECANCELED};
    for (size_t i = 0; i < 3; i++) {
        cr_assert(weft__error_is_immortal(imm[i]));
        for (int k = 0; k < 5; k++) {
            cr_assert_eq(weft_error_release(imm[i]), WEFT_OK);
        }
        cr_assert_eq(weft_error_retain(imm[i]), WEFT_OK);
        cr_assert_eq(weft_error_status(imm[i]), codes[i]);
        cr_assert_eq(weft__error_set_task(imm[i], "t", 1), WEFT_ESTATE);
        cr_assert_eq(weft__error_set_site(imm[i], "f", 1, "g"), WEFT_ESTATE);
        cr_assert_null(weft_error_task_name(imm[i]));
    }
    cr_assert_str_eq(fmt(weft__error_deadline()),
                     "WEFT_EDEADLINE: deadline passed");
    cr_assert_not(weft__error_is_immortal(NULL));
}

Test(error, out_of_memory_yields_the_immortal_enomem_error)
{
    leak_check_begin();
    uint64_t failures = weft__alloc_failures();
    weft_error_t *e = NULL;
    weft__alloc_set_fail_after(0);
    cr_assert_eq(weft_error_create(&e, WEFT_EUSER, "lost %d", 1),
                 WEFT_ENOMEM);
    cr_assert_eq(weft__alloc_failures(), failures + 1);
    cr_assert_eq(e, weft__error_enomem());
    cr_assert_eq(weft_error_status(e), WEFT_ENOMEM);
    cr_assert_str_eq(fmt(e),
                     "WEFT_ENOMEM: out of memory while making an error");
    /* Usable like any error: retain and release are harmless. */
    cr_assert_eq(weft_error_retain(e), WEFT_OK);
    cr_assert_eq(weft_error_release(e), WEFT_OK);
    cr_assert_eq(weft_error_release(e), WEFT_OK);
    /* The injector fails one allocation only. */
    cr_assert_eq(weft_error_create(&e, WEFT_EUSER, "ok"), WEFT_OK);
    cr_assert_not(weft__error_is_immortal(e));
    weft_error_release(e);
    leak_check_end();
}

Test(error, wrap_out_of_memory_does_not_keep_the_cause)
{
    leak_check_begin();
    weft_error_t *cause = NULL;
    weft_error_t *e = NULL;
    weft_error_create(&cause, WEFT_EUSER, "cause");
    weft__alloc_set_fail_after(0);
    cr_assert_eq(weft_error_wrap(&e, cause, WEFT_EUSER, "w"), WEFT_ENOMEM);
    cr_assert_eq(e, weft__error_enomem());
    cr_assert_null(weft_error_cause(e));
    weft_error_release(e);
    weft_error_release(cause); /* frees it: the wrap took no reference */
    leak_check_end();
}

Test(error, every_allocation_failure_in_a_chain_is_reported_without_leak)
{
    leak_check_begin();
    /* Build a three-level chain, failing the k-th allocation each time. */
    int reached_end = 0;
    for (long k = 0; k < 10 && !reached_end; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        weft_error_t *a = NULL;
        weft_error_t *b = NULL;
        weft_error_t *c = NULL;
        weft_status_t sa = weft_error_create(&a, WEFT_EUSER, "a");
        weft_status_t sb = weft_error_wrap(&b, a, WEFT_EUSER, "b");
        weft_status_t sc = weft_error_wrap(&c, b, WEFT_EUSER, "c");
        weft__alloc_set_fail_after(-1);
        bool fired = weft__alloc_failures() != before;
        weft_status_t st[] = {sa, sb, sc};
        for (long i = 0; i < 3; i++) {
            cr_assert_eq(st[i], fired && i == k ? WEFT_ENOMEM : WEFT_OK,
                         "k=%ld call %ld", k, i);
        }
        cr_assert_eq(weft_error_status(c), fired && k == 2 ? WEFT_ENOMEM
                                                           : WEFT_EUSER);
        weft_error_release(c);
        weft_error_release(b);
        weft_error_release(a);
        leak_check_end();
        reached_end = !fired;
    }
    cr_assert(reached_end, "the scenario has more allocations than tried");
}

Test(error, print_writes_the_formatted_line)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, "to file");
    weft__error_set_site(e, "p.c", 3, "f");
    char buf[256] = {0};
    FILE *fp = fmemopen(buf, sizeof(buf), "w");
    cr_assert_not_null(fp);
    cr_assert_eq(weft_error_print(e, fp), WEFT_OK);
    fclose(fp);
    cr_assert_str_eq(buf, "WEFT_EUSER: to file [at p.c:3 (f)]\n");
    cr_assert_eq(weft_error_print(e, NULL), WEFT_EINVAL);
    weft_error_release(e);
    leak_check_end();
}

Test(error, status_table_names_the_late_call_code)
{
    cr_assert_eq(WEFT_EALREADY, 14);
    cr_assert(WEFT_EALREADY < WEFT_EUSER);
    cr_assert_str_eq(weft_status_name(WEFT_EALREADY), "WEFT_EALREADY");
}

#define SHARE_THREADS 4
#define SHARE_ROUNDS 20000

static void *
share_worker(void *arg)
{
    weft_error_t *e = arg;
    for (int i = 0; i < SHARE_ROUNDS; i++) {
        weft_error_retain(e);
        if (weft_error_status(e) != WEFT_EUSER) {
            return (void *)1;
        }
        weft_error_release(e);
    }
    weft_error_release(e); /* the reference main handed over */
    return NULL;
}

Test(error, concurrent_retain_release_frees_exactly_once, .timeout = 30.0)
{
    leak_check_begin();
    weft_error_t *e = NULL;
    weft_error_create(&e, WEFT_EUSER, "shared");
    pthread_t th[SHARE_THREADS];
    for (int i = 0; i < SHARE_THREADS; i++) {
        weft_error_retain(e);
        cr_assert_eq(pthread_create(&th[i], NULL, share_worker, e), 0);
    }
    weft_error_release(e);
    for (int i = 0; i < SHARE_THREADS; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_null(r);
    }
    leak_check_end();
}
