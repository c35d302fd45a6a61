/*
 * test_debug.c - debug mode (<weft/debug.h>): the report of futures never
 * awaited, failures never observed and groups never joined, with their
 * spawn sites; the live task-tree dump; debug mode off and bad arguments.
 *
 * Every JSON document the library writes is parsed by the small parser
 * below, so a test fails on malformed output, and assertions are made on
 * the parsed tree (nesting, names, states, token states), not on text.
 * Running and queued states are pinned with gates (tasks that spin until
 * the test opens them) on a 2-worker executor whose workers are both
 * held: no sleeps, no timing. Each test checks weft__alloc_live() after
 * its executors are destroyed.
 */
#include <criterion/criterion.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft.h>

#include "primitives/alloc.h"

static int64_t live_at_start;

static void
begin(void)
{
    unsetenv("WEFT_DEBUG_TASKS");
    live_at_start = weft__alloc_live();
}

static void
end(void)
{
    cr_assert_eq(weft__alloc_live(), live_at_start, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live_at_start));
}

TestSuite(debug, .init = begin, .fini = end, .timeout = 30.0);

/* ---- a small JSON parser ------------------------------------------------ */

enum jtype {
    J_NULL,
    J_BOOL,
    J_NUM,
    J_STR,
    J_ARR,
    J_OBJ
};

struct jv {
    enum jtype t;
    bool b;
    double num;
    char *str;         /* J_STR */
    size_t n;          /* J_ARR, J_OBJ */
    struct jv **items; /* J_ARR, J_OBJ values */
    char **keys;       /* J_OBJ */
};

static void
jfree(struct jv *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        jfree(v->items[i]);
        if (v->keys != NULL) {
            free(v->keys[i]);
        }
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

static void
jws(const char **p)
{
    while (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r') {
        (*p)++;
    }
}

static char *
jstring(const char **p)
{
    if (**p != '"') {
        return NULL;
    }
    (*p)++;
    size_t cap = 16, len = 0;
    char *s = malloc(cap);
    for (;;) {
        char c = **p;
        if (c == '\0' || (unsigned char)c < 0x20) {
            free(s);
            return NULL;
        }
        (*p)++;
        if (c == '"') {
            break;
        }
        if (c == '\\') {
            char e = *(*p)++;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                c = e;
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'u': {
                unsigned int u = 0;
                if (sscanf(*p, "%4x", &u) != 1 || u > 0x7f) {
                    free(s);
                    return NULL;
                }
                *p += 4;
                c = (char)u;
                break;
            }
            default:
                free(s);
                return NULL;
            }
        }
        if (len + 2 > cap) {
            cap *= 2;
            s = realloc(s, cap);
        }
        s[len++] = c;
    }
    s[len] = '\0';
    return s;
}

static struct jv *jvalue(const char **p);

static bool
jpush(struct jv *v, char *key, struct jv *item)
{
    v->items = realloc(v->items, (v->n + 1) * sizeof(*v->items));
    if (v->t == J_OBJ) {
        v->keys = realloc(v->keys, (v->n + 1) * sizeof(*v->keys));
        v->keys[v->n] = key;
    }
    v->items[v->n++] = item;
    return true;
}

static struct jv *
jcontainer(const char **p, enum jtype t)
{
    struct jv *v = calloc(1, sizeof(*v));
    v->t = t;
    char close = t == J_ARR ? ']' : '}';
    (*p)++;
    jws(p);
    if (**p == close) {
        (*p)++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        if (t == J_OBJ) {
            jws(p);
            key = jstring(p);
            jws(p);
            if (key == NULL || **p != ':') {
                free(key);
                jfree(v);
                return NULL;
            }
            (*p)++;
        }
        struct jv *item = jvalue(p);
        if (item == NULL) {
            free(key);
            jfree(v);
            return NULL;
        }
        jpush(v, key, item);
        jws(p);
        if (**p == ',') {
            (*p)++;
            continue;
        }
        if (**p == close) {
            (*p)++;
            return v;
        }
        jfree(v);
        return NULL;
    }
}

static struct jv *
jvalue(const char **p)
{
    jws(p);
    const char *s = *p;
    if (*s == '{') {
        return jcontainer(p, J_OBJ);
    }
    if (*s == '[') {
        return jcontainer(p, J_ARR);
    }
    struct jv *v = calloc(1, sizeof(*v));
    if (*s == '"') {
        v->t = J_STR;
        v->str = jstring(p);
        if (v->str == NULL) {
            free(v);
            return NULL;
        }
    } else if (strncmp(s, "null", 4) == 0) {
        v->t = J_NULL;
        *p += 4;
    } else if (strncmp(s, "true", 4) == 0) {
        v->t = J_BOOL;
        v->b = true;
        *p += 4;
    } else if (strncmp(s, "false", 5) == 0) {
        v->t = J_BOOL;
        *p += 5;
    } else {
        char *endp = NULL;
        v->t = J_NUM;
        v->num = strtod(s, &endp);
        if (endp == s) {
            free(v);
            return NULL;
        }
        *p = endp;
    }
    return v;
}

/* Parse a whole document; fails the test when it is not valid JSON. */
static struct jv *
jparse(const char *text)
{
    cr_assert_not_null(text);
    const char *p = text;
    struct jv *v = jvalue(&p);
    cr_assert_not_null(v, "not JSON: %s", text);
    jws(&p);
    cr_assert_eq(*p, '\0', "trailing text after JSON: %s", p);
    return v;
}

static struct jv *
jget(const struct jv *o, const char *key)
{
    if (o == NULL || o->t != J_OBJ) {
        return NULL;
    }
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->keys[i], key) == 0) {
            return o->items[i];
        }
    }
    return NULL;
}

static const char *
jstr(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    return v != NULL && v->t == J_STR ? v->str : NULL;
}

static double
jnum(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    cr_assert(v != NULL && v->t == J_NUM, "no number \"%s\"", key);
    return v->num;
}

static bool
jis_null(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    return v != NULL && v->t == J_NULL;
}

/* The element of array a whose "name" is name (NULL if none). */
static const struct jv *
jfind_named(const struct jv *a, const char *name)
{
    cr_assert(a != NULL && a->t == J_ARR);
    for (size_t i = 0; i < a->n; i++) {
        const char *s = jstr(a->items[i], "name");
        if (s != NULL && strcmp(s, name) == 0) {
            return a->items[i];
        }
    }
    return NULL;
}

/* ---- helpers ------------------------------------------------------------ */

/* What a sink received. */
struct sink {
    int calls;
    char *last; /* copy of the last report */
};

static void
sink_fn(const char *report, void *user)
{
    struct sink *s = user;
    s->calls++;
    free(s->last);
    s->last = strdup(report);
}

static weft_executor_t *
make_ex(unsigned int workers, bool debug, struct sink *s)
{
    weft_executor_config_t c;
    weft_executor_config_init(&c);
    cr_assert(!c.debug_tasks, "config_init leaves debug mode off");
    cr_assert_null(c.on_debug_report);
    c.num_workers = workers;
    c.debug_tasks = debug;
    if (s != NULL) {
        c.on_debug_report = sink_fn;
        c.user_data = s;
    }
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&c, &ex), WEFT_OK);
    return ex;
}

/* The report as a string and parsed, plus its summary. */
static struct jv *
report_of(weft_executor_t *ex, weft_debug_summary_t *sum)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    cr_assert_not_null(fp);
    cr_assert_eq(weft_executor_debug_report(ex, fp, sum), WEFT_OK);
    fclose(fp);
    struct jv *v = jparse(buf);
    free(buf);
    return v;
}

static struct jv *
dump_of(weft_executor_t *ex)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    cr_assert_not_null(fp);
    cr_assert_eq(weft_executor_dump_tasks(ex, fp), WEFT_OK);
    fclose(fp);
    struct jv *v = jparse(buf);
    free(buf);
    return v;
}

static weft_status_t
ok_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 7;
    return WEFT_OK;
}

static weft_status_t
fail_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    (void)out;
    return weft_task_fail(self, WEFT_EUSER, "boom \"%d\"", 42);
}

/* ---- debug mode off, bad arguments ---------------------------------- */

Test(debug, off_by_default_has_no_registry)
{
    weft_executor_t *ex = make_ex(1, false, NULL);
    cr_assert(!weft_executor_is_debugging(ex));
    weft_debug_summary_t sum;
    cr_assert_eq(weft_executor_debug_report(ex, NULL, &sum), WEFT_ENOTSUP);
    cr_assert_eq(weft_executor_dump_tasks(ex, stdout), WEFT_ENOTSUP);
    /* A leak goes unreported: nothing is recorded. */
    weft_future_t *f = NULL;
    weft_spawn_opts_t o = {.name = "leaky", WEFT_SPAWN_SITE};
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(debug, null_arguments_are_einval)
{
    weft_debug_summary_t sum;
    cr_assert(!weft_executor_is_debugging(NULL));
    cr_assert_eq(weft_executor_debug_report(NULL, stdout, &sum), WEFT_EINVAL);
    cr_assert_eq(weft_executor_dump_tasks(NULL, stdout), WEFT_EINVAL);
    weft_executor_t *ex = make_ex(1, true, NULL);
    cr_assert(weft_executor_is_debugging(ex));
    cr_assert_eq(weft_executor_dump_tasks(ex, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_debug_report(ex, NULL, NULL), WEFT_EINVAL);
    /* Also off: EINVAL comes first. */
    weft_executor_t *off = make_ex(1, false, NULL);
    cr_assert_eq(weft_executor_dump_tasks(off, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_destroy(off), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- the report ----------------------------------------------------- */

Test(debug, leaked_future_is_reported_with_its_spawn_site)
{
    struct sink s = {0, NULL};
    weft_executor_t *ex = make_ex(2, true, &s);
    weft_future_t *f = NULL;
    weft_spawn_opts_t o = {.name = "leaky", WEFT_SPAWN_SITE};
    int line = __LINE__ - 1;
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    uint64_t id = weft_future_id(f);
    cr_assert_eq(weft_future_release(f), WEFT_OK); /* never awaited */
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);

    weft_debug_summary_t sum;
    struct jv *r = report_of(ex, &sum);
    cr_assert_eq(sum.not_awaited, 1);
    cr_assert_eq(sum.errors_not_observed, 0);
    cr_assert_eq(sum.groups_not_joined, 0);
    cr_assert_eq(sum.alive, 0);
    cr_assert_eq(sum.untracked, 0);
    const struct jv *e = jfind_named(jget(r, "entries"), "leaky");
    cr_assert_not_null(e);
    cr_assert_str_eq(jstr(e, "finding"), "not_awaited");
    cr_assert_str_eq(jstr(e, "kind"), "task");
    cr_assert_str_eq(jstr(e, "outcome"), "succeeded");
    cr_assert_eq((uint64_t)jnum(e, "id"), id);
    const struct jv *site = jget(e, "site");
    cr_assert_str_eq(jstr(site, "file"), __FILE__);
    cr_assert_eq((int)jnum(site, "line"), line);
    cr_assert_str_eq(jstr(site, "func"), __func__);
    cr_assert(jis_null(e, "parent"), "spawned from outside: no parent");
    cr_assert_eq(jnum(jget(r, "summary"), "not_awaited"), 1);
    jfree(r);

    /* destroy delivers the same entry to the sink, once. */
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(s.calls, 1);
    struct jv *d = jparse(s.last);
    cr_assert_not_null(jfind_named(jget(d, "entries"), "leaky"));
    jfree(d);
    free(s.last);
}

Test(debug, spawn_without_site_says_so)
{
    weft_executor_t *ex = make_ex(1, true, NULL);
    weft_future_t *f = NULL;
    weft_spawn_opts_t o = {.name = "nosite"};
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_debug_summary_t sum;
    struct jv *r = report_of(ex, &sum);
    const struct jv *e = jfind_named(jget(r, "entries"), "nosite");
    cr_assert_not_null(e);
    cr_assert(jis_null(e, "site"));
    cr_assert_not_null(strstr(jstr(e, "where"), "no spawn site"));
    jfree(r);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(debug, awaited_futures_are_not_reported)
{
    struct sink s = {0, NULL};
    weft_executor_t *ex = make_ex(2, true, &s);
    weft_spawn_opts_t o = {.name = "fine", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    /* wait + release */
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    /* join */
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_join(f, NULL), WEFT_OK);
    /* executor_run */
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, ok_task, NULL, &v), WEFT_OK);
    /* a detached spawn that succeeds is nobody's to await */
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_debug_summary_t sum;
    struct jv *r = report_of(ex, &sum);
    cr_assert_eq(
        sum.not_awaited + sum.errors_not_observed + sum.groups_not_joined, 0);
    cr_assert_eq(jget(r, "entries")->n, 0);
    jfree(r);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(s.calls, 0, "an empty report is not delivered");
}

Test(debug, unobserved_failure_is_reported_with_its_error)
{
    weft_executor_t *ex = make_ex(2, true, NULL);
    weft_spawn_opts_t o = {.name = "failing", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, fail_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    /* A detached failure is reported as well. */
    weft_spawn_opts_t o2 = {.name = "detached-failing", WEFT_SPAWN_SITE};
    cr_assert_eq(weft_spawn_ex(ex, &o2, fail_task, NULL, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_debug_summary_t sum;
    struct jv *r = report_of(ex, &sum);
    cr_assert_eq(sum.errors_not_observed, 2);
    cr_assert_eq(sum.not_awaited, 0);
    const struct jv *e = jfind_named(jget(r, "entries"), "failing");
    cr_assert_not_null(e);
    cr_assert_str_eq(jstr(e, "finding"), "error_not_observed");
    cr_assert_str_eq(jstr(e, "outcome"), "failed");
    cr_assert_str_eq(jstr(jget(e, "site"), "file"), __FILE__);
    const struct jv *err = jget(e, "error");
    cr_assert_str_eq(jstr(err, "status"), "WEFT_EUSER");
    cr_assert_str_eq(jstr(err, "message"), "boom \"42\"");
    cr_assert_not_null(jfind_named(jget(r, "entries"), "detached-failing"));
    jfree(r);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(debug, failure_that_was_waited_for_is_not_reported)
{
    weft_executor_t *ex = make_ex(2, true, NULL);
    weft_spawn_opts_t o = {.name = "failing", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, fail_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_EUSER);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_debug_summary_t sum;
    cr_assert_eq(weft_executor_debug_report(ex, NULL, &sum), WEFT_OK);
    cr_assert_eq(sum.errors_not_observed + sum.not_awaited, 0);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* A continuation that reads (or not) its antecedent's error: the failing
 * antecedent itself is never waited for. */
static weft_status_t
read_error_cont(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_error_t *e = weft_future_error(weft_task_antecedent(self));
    out->i64 = e != NULL && weft_error_status(e) == WEFT_EUSER;
    return WEFT_OK;
}

static weft_status_t
ignore_error_cont(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 1;
    return WEFT_OK;
}

static weft_debug_summary_t
failure_then(weft_fn_t cont)
{
    weft_executor_t *ex = make_ex(2, true, NULL);
    weft_spawn_opts_t o = {.name = "failing", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    weft_future_t *c = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, fail_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_then(f, cont, NULL, &c), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    weft_value_t v;
    cr_assert_eq(weft_join(c, &v), WEFT_OK);
    cr_assert_eq(v.i64, 1);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_debug_summary_t sum;
    cr_assert_eq(weft_executor_debug_report(ex, NULL, &sum), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    return sum;
}

Test(debug, failure_whose_error_was_read_is_not_reported)
{
    weft_debug_summary_t sum = failure_then(read_error_cont);
    cr_assert_eq(sum.errors_not_observed, 0);
    cr_assert_eq(sum.not_awaited, 0);
}

Test(debug, failure_whose_error_nobody_read_is_reported)
{
    weft_debug_summary_t sum = failure_then(ignore_error_cont);
    cr_assert_eq(sum.errors_not_observed, 1);
    cr_assert_eq(sum.not_awaited, 0);
}

Test(debug, unobserved_gather_failure_is_reported_but_its_children_not)
{
    weft_executor_t *ex = make_ex(2, true, NULL);
    weft_future_t *kids[2] = {NULL, NULL};
    weft_spawn_opts_t o = {.name = "kid", WEFT_SPAWN_SITE};
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &kids[0]), WEFT_OK);
    cr_assert_eq(weft_spawn_ex(ex, &o, fail_task, NULL, &kids[1]), WEFT_OK);
    weft_combine_opts_t co = {.name = "all", WEFT_SPAWN_SITE};
    int line = __LINE__ - 1;
    weft_future_t *all = NULL;
    cr_assert_eq(weft_gather(ex, kids, 2, &co, &all), WEFT_OK);
    cr_assert_eq(weft_future_release(kids[0]), WEFT_OK);
    cr_assert_eq(weft_future_release(kids[1]), WEFT_OK);
    cr_assert_eq(weft_future_release(all), WEFT_OK); /* never awaited */
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_debug_summary_t sum;
    struct jv *r = report_of(ex, &sum);
    cr_assert_eq(sum.errors_not_observed, 1, "the gather's failure");
    cr_assert_eq(sum.not_awaited, 0, "the gather observed its children");
    const struct jv *e = jfind_named(jget(r, "entries"), "all");
    cr_assert_not_null(e);
    cr_assert_str_eq(jstr(e, "kind"), "combinator");
    const struct jv *site = jget(e, "site");
    cr_assert_not_null(site, "the combinator's call site");
    cr_assert_str_eq(jstr(site, "file"), __FILE__);
    cr_assert_eq((int)jnum(site, "line"), line);
    cr_assert_str_eq(jstr(site, "func"), __func__);
    jfree(r);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

static weft_status_t
member(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 1;
    return WEFT_OK;
}

Test(debug, group_destroyed_without_join_is_reported)
{
    struct sink s = {0, NULL};
    weft_executor_t *ex = make_ex(2, true, &s);
    weft_group_opts_t go;
    memset(&go, 0, sizeof(go));
    go.name = "forgotten";
    go.file = __FILE__;
    go.line = __LINE__;
    go.func = __func__;
    weft_group_t *g = NULL;
    cr_assert_eq(weft_group_create(ex, &go, &g), WEFT_OK);
    cr_assert_eq(weft_group_spawn(g, NULL, member, NULL, NULL), WEFT_OK);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK); /* no join */
    /* A joined group is fine. */
    weft_group_opts_t go2;
    memset(&go2, 0, sizeof(go2));
    go2.name = "joined";
    cr_assert_eq(weft_group_create(ex, &go2, &g), WEFT_OK);
    cr_assert_eq(weft_group_spawn(g, NULL, member, NULL, NULL), WEFT_OK);
    cr_assert_eq(weft_group_join(g), WEFT_OK);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    weft_debug_summary_t sum;
    struct jv *r = report_of(ex, &sum);
    cr_assert_eq(sum.groups_not_joined, 1);
    cr_assert_eq(sum.not_awaited + sum.errors_not_observed, 0,
                 "group children are observed by their group");
    const struct jv *e = jfind_named(jget(r, "entries"), "forgotten");
    cr_assert_not_null(e);
    cr_assert_str_eq(jstr(e, "finding"), "group_not_joined");
    cr_assert_str_eq(jstr(e, "kind"), "group");
    cr_assert_str_eq(jstr(jget(e, "site"), "func"), __func__);
    cr_assert_null(jfind_named(jget(r, "entries"), "joined"));
    jfree(r);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(s.calls, 1);
    free(s.last);
}

Test(debug, live_group_and_held_future_make_destroy_report_and_ebusy)
{
    struct sink s = {0, NULL};
    weft_executor_t *ex = make_ex(1, true, &s);
    weft_group_opts_t go;
    memset(&go, 0, sizeof(go));
    go.name = "alive";
    weft_group_t *g = NULL;
    cr_assert_eq(weft_group_create(ex, &go, &g), WEFT_OK);
    weft_spawn_opts_t o = {.name = "held", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    /* Both objects are still alive: destroy refuses, and says why. */
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    cr_assert_eq(s.calls, 1);
    struct jv *r = jparse(s.last);
    const struct jv *eg = jfind_named(jget(r, "entries"), "alive");
    const struct jv *ef = jfind_named(jget(r, "entries"), "held");
    cr_assert_not_null(eg);
    cr_assert_not_null(ef);
    cr_assert(jget(eg, "alive")->b);
    cr_assert(jget(ef, "alive")->b);
    cr_assert_str_eq(jstr(eg, "finding"), "group_not_joined");
    cr_assert_str_eq(jstr(ef, "finding"), "not_awaited");
    cr_assert_eq(jnum(jget(r, "summary"), "alive"), 2);
    jfree(r);
    /* Observe both now: the next destroy has nothing to say. */
    cr_assert_eq(weft_future_status(f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_group_join(g), WEFT_OK);
    cr_assert_eq(weft_group_destroy(g), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(s.calls, 1);
    free(s.last);
}

Test(debug, environment_variable_turns_it_on)
{
    setenv("WEFT_DEBUG_TASKS", "0", 1);
    weft_executor_t *ex = make_ex(1, false, NULL);
    cr_assert(!weft_executor_is_debugging(ex), "\"0\" means off");
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);

    setenv("WEFT_DEBUG_TASKS", "1", 1);
    struct sink s = {0, NULL};
    ex = make_ex(1, false, &s);
    cr_assert(weft_executor_is_debugging(ex));
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(s.calls, 1, "a configured sink wins over stderr");
    free(s.last);
    unsetenv("WEFT_DEBUG_TASKS");
}

/* Run destroy with stderr captured; return what was written. */
static char *
destroy_capturing_stderr(weft_executor_t *ex)
{
    fflush(stderr);
    int saved = dup(2);
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    dup2(fileno(tmp), 2);
    weft_status_t st = weft_executor_destroy(ex);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cr_assert_eq(st, WEFT_OK);
    fseek(tmp, 0, SEEK_END);
    long n = ftell(tmp);
    rewind(tmp);
    char *buf = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return buf;
}

static void
leak_one(weft_executor_t *ex)
{
    weft_future_t *f = NULL;
    weft_spawn_opts_t o = {.name = "stderr-leak", WEFT_SPAWN_SITE};
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
}

Test(debug, report_goes_to_stderr_only_when_the_environment_asked)
{
    /* Turned on by the config, no sink: the library prints nothing. */
    weft_executor_t *ex = make_ex(1, true, NULL);
    leak_one(ex);
    char *out = destroy_capturing_stderr(ex);
    cr_assert_str_eq(out, "");
    free(out);

    /* Turned on by the environment, no sink: stderr. */
    setenv("WEFT_DEBUG_TASKS", "yes", 1);
    ex = make_ex(1, false, NULL);
    unsetenv("WEFT_DEBUG_TASKS");
    leak_one(ex);
    out = destroy_capturing_stderr(ex);
    cr_assert_not_null(strstr(out, "stderr-leak"), "stderr got: %s", out);
    char *nl = strchr(out, '\n');
    cr_assert_not_null(nl);
    *nl = '\0';
    struct jv *r = jparse(out);
    cr_assert_eq(jnum(jget(r, "summary"), "not_awaited"), 1);
    jfree(r);
    free(out);
}

/* ---- the task tree ----------------------------------------------------- */

static atomic_int gate_open;
static atomic_int holding; /* tasks spinning at the gate */

static weft_status_t
gate_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 1;
    atomic_fetch_add(&holding, 1);
    while (!atomic_load(&gate_open)) {
        sched_yield();
    }
    return WEFT_OK;
}

struct tree_ctx {
    weft_token_t *cancel_me; /* the running child's token */
    weft_future_t *kids[2];
    weft_group_t *grp;
    atomic_int ready;
};

/* Runs on one worker and holds it; its first child is stolen by the other
 * worker, which it holds too, so everything else stays queued. */
static weft_status_t
tree_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct tree_ctx *c = arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_spawn_opts_t o1 = {
        .name = "running-child", .token = c->cancel_me, WEFT_SPAWN_SITE};
    cr_assert_eq(weft_spawn_ex(ex, &o1, gate_task, NULL, &c->kids[0]), WEFT_OK);
    weft_spawn_opts_t o2 = {.name = "queued-child"}; /* no site, no token */
    cr_assert_eq(weft_spawn_ex(ex, &o2, gate_task, NULL, &c->kids[1]), WEFT_OK);
    weft_group_opts_t go;
    memset(&go, 0, sizeof(go));
    go.name = "grp";
    go.parent = weft_task_token(self);
    cr_assert_eq(weft_group_create(ex, &go, &c->grp), WEFT_OK);
    weft_spawn_opts_t om = {.name = "member", WEFT_SPAWN_SITE};
    cr_assert_eq(weft_group_spawn(c->grp, &om, gate_task, NULL, NULL), WEFT_OK);
    atomic_store(&c->ready, 1);
    (void)gate_task(self, NULL, out);
    cr_assert_eq(weft_join(c->kids[0], NULL), WEFT_OK);
    cr_assert_eq(weft_join(c->kids[1], NULL), WEFT_OK);
    cr_assert_eq(weft_group_join(c->grp), WEFT_OK);
    cr_assert_eq(weft_group_destroy(c->grp), WEFT_OK);
    return WEFT_OK;
}

static const struct jv *
child_named(const struct jv *node, const char *name)
{
    const struct jv *kids = jget(node, "children");
    cr_assert_not_null(kids, "node has no children array");
    return jfind_named(kids, name);
}

Test(debug, dump_shows_the_live_tree_with_states_and_tokens)
{
    atomic_store(&gate_open, 0);
    atomic_store(&holding, 0);
    weft_executor_t *ex = make_ex(2, true, NULL);
    struct tree_ctx c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(weft_token_create(NULL, &c.cancel_me), WEFT_OK);
    weft_token_t *root_tok = NULL;
    cr_assert_eq(weft_token_create(NULL, &root_tok), WEFT_OK);
    weft_spawn_opts_t ro = {.name = "root", .token = root_tok, WEFT_SPAWN_SITE};
    weft_future_t *root = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &ro, tree_root, &c, &root), WEFT_OK);
    /* Root and the running child each hold a worker. */
    while (!atomic_load(&c.ready) || atomic_load(&holding) < 2) {
        sched_yield();
    }
    weft_error_t *why = NULL;
    cr_assert_eq(weft_error_create(&why, WEFT_EUSER, "stop \"now\""), WEFT_OK);
    cr_assert_eq(weft_token_cancel(c.cancel_me, why), WEFT_OK);
    weft_error_release(why);

    struct jv *d = dump_of(ex);
    const struct jv *tasks = jget(d, "tasks");
    cr_assert_not_null(tasks);
    cr_assert_eq(tasks->n, 1, "one root: everything else is below it");
    const struct jv *r = jfind_named(tasks, "root");
    cr_assert_not_null(r);
    cr_assert_str_eq(jstr(r, "state"), "running");
    cr_assert_str_eq(jstr(r, "kind"), "task");
    cr_assert_eq((uint64_t)jnum(r, "id"), weft_future_id(root));
    cr_assert(jis_null(r, "parent"));
    cr_assert_str_eq(jstr(jget(r, "site"), "file"), __FILE__);
    /* root's own token (made by weft_task_token) is active. */
    cr_assert_str_eq(jstr(jget(r, "token"), "state"), "active");
    cr_assert_eq(jget(r, "children")->n, 3);

    const struct jv *run = child_named(r, "running-child");
    cr_assert_not_null(run);
    cr_assert_str_eq(jstr(run, "state"), "running");
    cr_assert_eq((uint64_t)jnum(run, "parent"), weft_future_id(root));
    cr_assert_eq((uint64_t)jnum(run, "id"), weft_future_id(c.kids[0]));
    const struct jv *tok = jget(run, "token");
    cr_assert_str_eq(jstr(tok, "state"), "cancelled");
    cr_assert_str_eq(jstr(jget(tok, "reason"), "message"), "stop \"now\"");
    cr_assert_str_eq(jstr(jget(tok, "reason"), "status"), "WEFT_EUSER");

    const struct jv *q = child_named(r, "queued-child");
    cr_assert_not_null(q);
    cr_assert_str_eq(jstr(q, "state"), "queued");
    cr_assert(jis_null(q, "site"));
    cr_assert_str_eq(jstr(jget(q, "token"), "state"), "none");
    cr_assert_eq(jget(q, "children")->n, 0);

    const struct jv *g = child_named(r, "grp");
    cr_assert_not_null(g);
    cr_assert_str_eq(jstr(g, "kind"), "group");
    cr_assert_str_eq(jstr(g, "state"), "pending");
    cr_assert_str_eq(jstr(jget(g, "token"), "state"), "active");
    const struct jv *m = child_named(g, "member");
    cr_assert_not_null(m, "a group's child is listed under the group");
    cr_assert_str_eq(jstr(m, "state"), "queued");
    cr_assert_eq((uint64_t)jnum(m, "parent"), (uint64_t)jnum(g, "id"));
    cr_assert_str_eq(jstr(jget(m, "token"), "state"), "active");
    jfree(d);

    atomic_store(&gate_open, 1);
    cr_assert_eq(weft_join(root, NULL), WEFT_OK);
    /* Ended children still held by nobody are gone from the tree. */
    d = dump_of(ex);
    cr_assert_eq(jget(d, "tasks")->n, 0);
    jfree(d);
    weft_token_release(c.cancel_me);
    weft_token_release(root_tok);
    weft_debug_summary_t sum;
    cr_assert_eq(weft_executor_debug_report(ex, NULL, &sum), WEFT_OK);
    cr_assert_eq(
        sum.not_awaited + sum.errors_not_observed + sum.groups_not_joined, 0);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(debug, dump_lists_ended_futures_still_held_and_escapes_names)
{
    weft_executor_t *ex = make_ex(1, true, NULL);
    weft_spawn_opts_t o = {.name = "odd \"name\"\n\\", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    weft_future_t *g = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, fail_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_spawn_ex(ex, NULL, ok_task, NULL, &g), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_EUSER);
    cr_assert_eq(weft_future_wait(g), WEFT_OK);
    struct jv *d = dump_of(ex);
    const struct jv *tasks = jget(d, "tasks");
    cr_assert_eq(tasks->n, 2);
    const struct jv *n = jfind_named(tasks, "odd \"name\"\n\\");
    cr_assert_not_null(n);
    cr_assert_str_eq(jstr(n, "state"), "failed");
    cr_assert_str_eq(jstr(jget(n, "error"), "status"), "WEFT_EUSER");
    cr_assert(jis_null(tasks->items[1], "name"));
    cr_assert_str_eq(jstr(tasks->items[1], "state"), "succeeded");
    jfree(d);
    cr_assert_eq(weft_future_release(f), WEFT_OK);
    cr_assert_eq(weft_future_release(g), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* The dump from a task of the same executor does not deadlock. */
static weft_status_t
dump_from_inside(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    out->i64 = weft_executor_dump_tasks(weft_task_executor(self), fp);
    fclose(fp);
    struct jv *d = jparse(buf);
    const struct jv *me = jfind_named(jget(d, "tasks"), "inside");
    if (me == NULL || strcmp(jstr(me, "state"), "running") != 0) {
        out->i64 = -1;
    }
    jfree(d);
    free(buf);
    return WEFT_OK;
}

Test(debug, dump_works_from_inside_a_task)
{
    weft_executor_t *ex = make_ex(2, true, NULL);
    weft_spawn_opts_t o = {.name = "inside", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, dump_from_inside, NULL, &f), WEFT_OK);
    weft_value_t v;
    cr_assert_eq(weft_join(f, &v), WEFT_OK);
    cr_assert_eq(v.i64, WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(debug, entry_reported_alive_by_a_busy_destroy_is_not_repeated)
{
    struct sink s = {0, NULL};
    weft_executor_t *ex = make_ex(1, true, &s);
    weft_spawn_opts_t o = {.name = "held", WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_EBUSY);
    cr_assert_eq(s.calls, 1, "still alive, already delivered");
    cr_assert_eq(weft_future_release(f), WEFT_OK); /* still unobserved */
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    cr_assert_eq(s.calls, 1, "released unobserved, already delivered");
    free(s.last);
}
