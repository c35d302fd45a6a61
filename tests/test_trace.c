/*
 * test_trace.c - the task trace (weft/trace.h): what a trace holds, how
 * it is written, and how bad calls are refused.
 *
 * Every check reads the JSON that weft_executor_trace_write() produced,
 * through the small JSON parser below (a complete parser of the format,
 * so a malformed document fails the test rather than slipping past a
 * substring search). Nothing here depends on timing: durations are checked
 * only for sign and for nesting, which the structure of the run decides.
 */
#include <weft.h>

#include <criterion/criterion.h>

#include "executor/future.h" /* WEFT__F_WAITER: the park test's handshake */

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(trace, .timeout = 30.0);

/* ---- a small JSON parser ------------------------------------------------ */

enum jkind {
    J_NULL,
    J_BOOL,
    J_NUM,
    J_STR,
    J_ARR,
    J_OBJ
};

struct jv {
    enum jkind kind;
    bool b;
    char *s;       /* J_STR: the decoded string; J_NUM: the number's text */
    size_t n;      /* J_ARR, J_OBJ: entries */
    char **keys;   /* J_OBJ */
    struct jv **v; /* J_ARR items, J_OBJ values */
};

struct jp {
    const char *p;
};

static void
jfree(struct jv *v)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys != NULL) {
            free(v->keys[i]);
        }
        jfree(v->v[i]);
    }
    free(v->keys);
    free(v->v);
    free(v->s);
    free(v);
}

static void
jws(struct jp *j)
{
    while (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t') {
        j->p++;
    }
}

static bool
jput(char **out, size_t *len, size_t *cap, char c)
{
    if (*len + 2 > *cap) {
        size_t nc = *cap * 2 + 16;
        char *n = realloc(*out, nc);
        if (n == NULL) {
            return false;
        }
        *out = n;
        *cap = nc;
    }
    (*out)[(*len)++] = c;
    (*out)[*len] = '\0';
    return true;
}

static int
jhex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* A string at j->p (the opening quote); NULL if malformed. */
static char *
jstring(struct jp *j)
{
    if (*j->p != '"') {
        return NULL;
    }
    j->p++;
    char *out = NULL;
    size_t len = 0;
    size_t cap = 0;
    if (!jput(&out, &len, &cap, 'x')) {
        return NULL;
    }
    len = 0;
    out[0] = '\0';
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '\0' || c < 0x20) {
            free(out);
            return NULL; /* unterminated, or a raw control character */
        }
        if (c == '\\') {
            char e = *j->p++;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                c = (unsigned char)e;
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            case 'u': {
                unsigned int code = 0;
                for (int k = 0; k < 4; k++) {
                    int h = jhex(*j->p++);
                    if (h < 0) {
                        free(out);
                        return NULL;
                    }
                    code = code * 16 + (unsigned int)h;
                }
                if (code >= 0x80) {
                    /* Two or three UTF-8 bytes (no surrogates here). */
                    if (code >= 0x800) {
                        (void)jput(&out, &len, &cap,
                                   (char)(0xE0 | (code >> 12)));
                        (void)jput(&out, &len, &cap,
                                   (char)(0x80 | ((code >> 6) & 0x3F)));
                    } else {
                        (void)jput(&out, &len, &cap,
                                   (char)(0xC0 | (code >> 6)));
                    }
                    c = (unsigned char)(0x80 | (code & 0x3F));
                } else {
                    c = (unsigned char)code;
                }
                break;
            }
            default:
                free(out);
                return NULL;
            }
        }
        if (!jput(&out, &len, &cap, (char)c)) {
            free(out);
            return NULL;
        }
    }
    j->p++;
    return out;
}

static struct jv *jvalue(struct jp *j, int depth);

static struct jv *
jnew(enum jkind k)
{
    struct jv *v = calloc(1, sizeof(*v));
    cr_assert_not_null(v);
    v->kind = k;
    return v;
}

static bool
jpush(struct jv *c, char *key, struct jv *item)
{
    struct jv **nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
    if (nv == NULL) {
        return false;
    }
    c->v = nv;
    if (c->kind == J_OBJ) {
        char **nk = realloc(c->keys, (c->n + 1) * sizeof(*nk));
        if (nk == NULL) {
            return false;
        }
        c->keys = nk;
        c->keys[c->n] = key;
    }
    c->v[c->n++] = item;
    return true;
}

static struct jv *
jcontainer(struct jp *j, int depth, bool obj)
{
    struct jv *c = jnew(obj ? J_OBJ : J_ARR);
    j->p++;
    jws(j);
    if (*j->p == (obj ? '}' : ']')) {
        j->p++;
        return c;
    }
    for (;;) {
        char *key = NULL;
        jws(j);
        if (obj) {
            key = jstring(j);
            jws(j);
            if (key == NULL || *j->p != ':') {
                free(key);
                jfree(c);
                return NULL;
            }
            j->p++;
        }
        struct jv *item = jvalue(j, depth + 1);
        if (item == NULL || !jpush(c, key, item)) {
            free(key);
            jfree(item);
            jfree(c);
            return NULL;
        }
        jws(j);
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == (obj ? '}' : ']')) {
            j->p++;
            return c;
        }
        jfree(c);
        return NULL;
    }
}

static struct jv *
jvalue(struct jp *j, int depth)
{
    jws(j);
    if (depth > 64) {
        return NULL;
    }
    const char *p = j->p;
    if (*p == '{' || *p == '[') {
        return jcontainer(j, depth, *p == '{');
    }
    if (*p == '"') {
        char *s = jstring(j);
        if (s == NULL) {
            return NULL;
        }
        struct jv *v = jnew(J_STR);
        v->s = s;
        return v;
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
        struct jv *v = jnew(J_BOOL);
        v->b = *p == 't';
        j->p += v->b ? 4 : 5;
        return v;
    }
    if (strncmp(p, "null", 4) == 0) {
        j->p += 4;
        return jnew(J_NULL);
    }
    /* A number: -?digits(.digits)?([eE][+-]?digits)? */
    const char *q = p;
    if (*q == '-') {
        q++;
    }
    if (*q < '0' || *q > '9') {
        return NULL;
    }
    while (*q >= '0' && *q <= '9') {
        q++;
    }
    if (*q == '.') {
        q++;
        if (*q < '0' || *q > '9') {
            return NULL;
        }
        while (*q >= '0' && *q <= '9') {
            q++;
        }
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-') {
            q++;
        }
        if (*q < '0' || *q > '9') {
            return NULL;
        }
        while (*q >= '0' && *q <= '9') {
            q++;
        }
    }
    struct jv *v = jnew(J_NUM);
    v->s = strndup(p, (size_t)(q - p));
    cr_assert_not_null(v->s);
    j->p = q;
    return v;
}

/* Parse a whole document; NULL when it is not exactly one JSON value. */
static struct jv *
jparse(const char *text)
{
    struct jp j = {text};
    struct jv *v = jvalue(&j, 0);
    if (v == NULL) {
        return NULL;
    }
    jws(&j);
    if (*j.p != '\0') {
        jfree(v);
        return NULL;
    }
    return v;
}

static struct jv *
jget(const struct jv *o, const char *key)
{
    if (o == NULL || o->kind != J_OBJ) {
        return NULL;
    }
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->keys[i], key) == 0) {
            return o->v[i];
        }
    }
    return NULL;
}

static const char *
jstr(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    return v != NULL && v->kind == J_STR ? v->s : NULL;
}

/* An integer member; fails the test if missing or not an integer. */
static long long
jint(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    cr_assert(v != NULL && v->kind == J_NUM, "member %s is a number", key);
    char *end = NULL;
    long long x = strtoll(v->s, &end, 10);
    cr_assert_eq(*end, '\0', "member %s is an integer (%s)", key, v->s);
    return x;
}

/* A time member ("us.nnn", as weft writes it) in nanoseconds; fails the
 * test if it is negative or not in that form. */
static uint64_t
jns(const struct jv *o, const char *key)
{
    const struct jv *v = jget(o, key);
    cr_assert(v != NULL && v->kind == J_NUM, "member %s is a number", key);
    cr_assert_neq(v->s[0], '-', "%s is not negative (%s)", key, v->s);
    char *end = NULL;
    unsigned long long us = strtoull(v->s, &end, 10);
    cr_assert(end[0] == '.' && strlen(end) == 4, "%s has three decimals (%s)",
              key, v->s);
    return (uint64_t)us * 1000 + strtoull(end + 1, NULL, 10);
}

/* ---- the trace as a test sees it --------------------------------------- */

struct span {
    const char *name;
    const char *cat;     /* "task", "frame" or "park" */
    const char *outcome; /* NULL for a park */
    const char *reason;  /* a park's: "idle" or "wait" */
    unsigned int tid;
    uint64_t id;
    bool ran;
    uint64_t ts_ns;
    uint64_t dur_ns;
    const char *site;
    long long line;
    const char *func;
};

struct trace {
    struct jv *doc;
    struct span *spans;
    size_t nspans;
    const struct jv *other;
    char lane_names[8][32]; /* thread_name by tid, "" when none */
};

static void
trace_free(struct trace *t)
{
    jfree(t->doc);
    free(t->spans);
}

/* Check the document's frame and collect its spans and lane names. */
static void
trace_parse(struct trace *t, const char *text)
{
    memset(t, 0, sizeof(*t));
    t->doc = jparse(text);
    cr_assert_not_null(t->doc, "the trace is well-formed JSON:\n%s", text);
    cr_assert_eq(t->doc->kind, J_OBJ, "the trace is a JSON object");
    cr_assert_str_eq(jstr(t->doc, "displayTimeUnit"), "ns");
    t->other = jget(t->doc, "otherData");
    cr_assert(t->other != NULL && t->other->kind == J_OBJ);
    const struct jv *evs = jget(t->doc, "traceEvents");
    cr_assert(evs != NULL && evs->kind == J_ARR, "traceEvents is an array");
    t->spans = calloc(evs->n + 1, sizeof(*t->spans));
    cr_assert_not_null(t->spans);
    for (size_t i = 0; i < evs->n; i++) {
        const struct jv *e = evs->v[i];
        const char *ph = jstr(e, "ph");
        cr_assert_not_null(ph, "every event has a phase");
        cr_assert_eq(jint(e, "pid"), (long long)getpid());
        long long tid = jint(e, "tid");
        cr_assert(tid >= 0 && tid < 8);
        const struct jv *args = jget(e, "args");
        cr_assert(args != NULL && args->kind == J_OBJ, "every event has args");
        if (strcmp(ph, "M") == 0) {
            const char *what = jstr(e, "name");
            cr_assert_not_null(what);
            if (strcmp(what, "thread_name") == 0) {
                cr_assert_str_empty(t->lane_names[tid], "one name per lane");
                snprintf(t->lane_names[tid], sizeof(t->lane_names[tid]), "%s",
                         jstr(args, "name"));
            }
            continue;
        }
        cr_assert_str_eq(ph, "X", "only metadata and complete events");
        struct span *s = &t->spans[t->nspans++];
        s->name = jstr(e, "name");
        cr_assert_not_null(s->name);
        s->cat = jstr(e, "cat");
        cr_assert(s->cat != NULL && (strcmp(s->cat, "task") == 0 ||
                                     strcmp(s->cat, "frame") == 0 ||
                                     strcmp(s->cat, "park") == 0));
        s->tid = (unsigned int)tid;
        s->ts_ns = jns(e, "ts");
        s->dur_ns = jns(e, "dur");
        if (strcmp(s->cat, "park") == 0) {
            /* A park: its reason and the awaited task's id (0: idle). */
            s->reason = jstr(args, "reason");
            cr_assert(s->reason != NULL && (strcmp(s->reason, "idle") == 0 ||
                                            strcmp(s->reason, "wait") == 0));
            s->id = (uint64_t)jint(args, "id");
            cr_assert_eq(s->id == 0, strcmp(s->reason, "idle") == 0);
            continue;
        }
        s->outcome = jstr(args, "outcome");
        cr_assert_not_null(s->outcome);
        s->id = (uint64_t)jint(args, "id");
        const struct jv *ran = jget(args, "ran");
        cr_assert(ran != NULL && ran->kind == J_BOOL);
        s->ran = ran->b;
        s->site = jstr(args, "site");
        s->line = s->site != NULL ? jint(args, "line") : 0;
        s->func = jstr(args, "func");
        cr_assert_not_null(jstr(args, "fn"));
    }
}

/* Write ex's trace through weft_executor_trace_write() and parse it. */
static void
trace_read(weft_executor_t *ex, struct trace *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    cr_assert_not_null(fp);
    cr_assert_eq(weft_executor_trace_write(ex, fp), WEFT_OK);
    cr_assert_eq(fclose(fp), 0);
    trace_parse(t, buf);
    free(buf);
}

static void
trace_read_file(const char *path, struct trace *t)
{
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s exists", path);
    char *buf = NULL;
    size_t cap = 0;
    size_t len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = (len + 4096 + 1) * 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        size_t got = fread(buf + len, 1, cap - len - 1, fp);
        len += got;
        if (got == 0) {
            break;
        }
    }
    buf[len] = '\0';
    fclose(fp);
    trace_parse(t, buf);
    free(buf);
}

/* The spans named name; the first one in *first. */
static size_t
spans_named(const struct trace *t, const char *name, const struct span **first)
{
    size_t n = 0;
    for (size_t i = 0; i < t->nspans; i++) {
        if (strcmp(t->spans[i].name, name) == 0) {
            if (n++ == 0 && first != NULL) {
                *first = &t->spans[i];
            }
        }
    }
    return n;
}

static weft_executor_t *
make_executor(unsigned int workers)
{
    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = workers;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&c, &ex), WEFT_OK);
    return ex;
}

static weft_status_t
ok_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    out->i64 = (intptr_t)arg;
    return WEFT_OK;
}

static void
fn_name(weft_fn_t fn, char *buf, size_t n)
{
    snprintf(buf, n, "task@0x%" PRIxPTR, (uintptr_t)fn);
}

/* ---- bad calls ----------------------------------------------------------- */

Test(trace, bad_arguments_return_einval)
{
    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_trace_begin(NULL, 8), WEFT_EINVAL);
    cr_assert_eq(weft_executor_trace_begin(ex, 0), WEFT_EINVAL);
    cr_assert_eq(
        weft_executor_trace_begin(ex, (size_t)WEFT_TRACE_MAX_EVENTS + 1),
        WEFT_EINVAL);
    cr_assert_eq(weft_executor_trace_end(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_trace_write(NULL, stdout), WEFT_EINVAL);
    cr_assert_eq(weft_executor_trace_write(ex, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_executor_trace_save(NULL, "x.json"), WEFT_EINVAL);
    cr_assert_eq(weft_executor_trace_save(ex, NULL), WEFT_EINVAL);
    /* None of them started a trace. */
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_ESTATE);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(trace, calls_out_of_order_return_estate_or_ebusy)
{
    weft_executor_t *ex = make_executor(1);
    char path[] = "/tmp/weft-trace-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(unlink(path), 0);

    cr_assert_eq(weft_executor_trace_end(ex), WEFT_ESTATE, "nothing begun");
    cr_assert_eq(weft_executor_trace_write(ex, stdout), WEFT_ESTATE);
    cr_assert_eq(weft_executor_trace_save(ex, path), WEFT_ESTATE);
    cr_assert_neq(access(path, F_OK), 0, "a refused save creates no file");

    cr_assert_eq(weft_executor_trace_begin(ex, 16), WEFT_OK);
    cr_assert_eq(weft_executor_trace_begin(ex, 16), WEFT_EBUSY, "begin twice");
    cr_assert_eq(weft_executor_trace_write(ex, stdout), WEFT_EBUSY,
                 "write while recording");
    cr_assert_eq(weft_executor_trace_save(ex, path), WEFT_EBUSY);
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_ESTATE, "end twice");

    /* An ended trace can be written again and again, unchanged. */
    char *a = NULL;
    char *b = NULL;
    size_t la = 0;
    size_t lb = 0;
    FILE *fa = open_memstream(&a, &la);
    FILE *fb = open_memstream(&b, &lb);
    cr_assert_eq(weft_executor_trace_write(ex, fa), WEFT_OK);
    cr_assert_eq(weft_executor_trace_write(ex, fb), WEFT_OK);
    fclose(fa);
    fclose(fb);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(a, b, la), 0);
    free(a);
    free(b);

    /* And begun again after the end. */
    cr_assert_eq(weft_executor_trace_begin(ex, 16), WEFT_OK);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(trace, save_reports_a_file_it_cannot_open)
{
    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_trace_begin(ex, 16), WEFT_OK);
    cr_assert_eq(weft_executor_run(ex, ok_task, (void *)1, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    cr_assert_eq(weft_executor_trace_save(ex, "/nonexistent-dir/t.json"),
                 WEFT_ESYS);

    char path[] = "/tmp/weft-trace-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(weft_executor_trace_save(ex, path), WEFT_OK);
    struct trace t;
    trace_read_file(path, &t);
    cr_assert_eq(t.nspans, 1);
    trace_free(&t);
    unlink(path);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* ---- what a trace holds -------------------------------------------------- */

#define NAMED 96

static char names[NAMED][16];

/*
 * Kinds by i % 4: 0 succeeds, 1 fails, 2 is spawned with a cancelled
 * token (never runs), 3 returns WEFT_ECANCELED from its body.
 */
static weft_status_t
kind_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    intptr_t i = (intptr_t)arg;
    switch (i % 4) {
    case 1:
        return weft_task_fail(self, WEFT_EUSER, "task %ld fails", (long)i);
    case 3:
        return WEFT_ECANCELED;
    default:
        out->i64 = i;
        return WEFT_OK;
    }
}

static const char *const expected_outcome[4] = {"succeeded", "failed",
                                                "cancelled", "cancelled"};

static weft_future_t *
spawn_named(weft_executor_t *ex, intptr_t i, weft_token_t *cancelled)
{
    weft_spawn_opts_t o = {.name = names[i],
                           .token = i % 4 == 2 ? cancelled : NULL,
                           WEFT_SPAWN_SITE};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, kind_task, (void *)i, &f), WEFT_OK);
    return f;
}

Test(trace, every_task_appears_once_with_its_name_and_outcome)
{
    const unsigned int workers = 2;
    weft_executor_t *ex = make_executor(workers);
    weft_token_t *tok = NULL;
    cr_assert_eq(weft_token_create(NULL, &tok), WEFT_OK);
    cr_assert_eq(weft_token_cancel(tok, NULL), WEFT_OK);

    cr_assert_eq(weft_executor_trace_begin(ex, 4 * NAMED), WEFT_OK);
    weft_future_t *fs[NAMED];
    uint64_t ids[NAMED];
    for (intptr_t i = 0; i < NAMED; i++) {
        snprintf(names[i], sizeof(names[i]), "task-%02ld", (long)i);
        fs[i] = spawn_named(ex, i, tok);
    }
    for (intptr_t i = 0; i < NAMED; i++) {
        (void)weft_future_wait(fs[i]);
        ids[i] = weft_future_id(fs[i]);
    }
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);

    struct trace t;
    trace_read(ex, &t);
    cr_assert_eq(t.nspans, NAMED, "one span per task, nothing else ran");
    for (intptr_t i = 0; i < NAMED; i++) {
        const struct span *s = NULL;
        cr_assert_eq(spans_named(&t, names[i], &s), 1, "%s appears once",
                     names[i]);
        cr_assert_str_eq(s->outcome, expected_outcome[i % 4], "%s: %s",
                         names[i], s->outcome);
        cr_assert_eq(s->ran, i % 4 != 2, "%s: ran", names[i]);
        cr_assert_eq(s->id, ids[i], "%s: the future's id", names[i]);
        cr_assert_lt(s->tid, workers, "%s ran on a worker lane", names[i]);
        if (!s->ran) {
            cr_assert_eq(s->dur_ns, 0, "a task that did not run is a point");
        }
        cr_assert_not_null(s->site);
        cr_assert(strstr(s->site, "test_trace.c") != NULL, "site %s", s->site);
        cr_assert_gt(s->line, 0);
        cr_assert_str_eq(s->func, "spawn_named");
    }
    for (unsigned int i = 0; i < workers; i++) {
        cr_assert_str_not_empty(t.lane_names[i], "worker lane %u is named", i);
    }
    cr_assert_str_empty(t.lane_names[workers],
                        "no outside lane when no outside thread recorded");
    cr_assert_eq(jint(t.other, "workers"), workers);
    cr_assert_eq(jint(t.other, "recorded"), NAMED);
    cr_assert_eq(jint(t.other, "dropped"), 0);
    trace_free(&t);

    for (intptr_t i = 0; i < NAMED; i++) {
        weft_future_release(fs[i]);
    }
    weft_token_release(tok);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* Root of the fork-join test: spawns children and joins each at once, so
 * with one worker every join takes the inline fast path of weft_join(). */
#define CHILDREN 20

static weft_status_t
fork_join_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    int64_t sum = 0;
    for (intptr_t i = 0; i < CHILDREN; i++) {
        weft_future_t *f = NULL;
        weft_status_t st =
            weft_spawn(weft_task_executor(self), ok_task, (void *)i, &f);
        if (st != WEFT_OK) {
            return st;
        }
        weft_value_t v;
        st = weft_join(f, &v);
        if (st != WEFT_OK) {
            return st;
        }
        sum += v.i64;
    }
    out->i64 = sum;
    return WEFT_OK;
}

Test(trace, fork_join_children_nest_inside_their_parent)
{
    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_trace_begin(ex, 64), WEFT_OK);
    weft_value_t v;
    cr_assert_eq(weft_executor_run(ex, fork_join_root, NULL, &v), WEFT_OK);
    cr_assert_eq(v.i64, CHILDREN * (CHILDREN - 1) / 2);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);

    struct trace t;
    trace_read(ex, &t);
    char child[64];
    char root[64];
    fn_name(ok_task, child, sizeof(child));
    fn_name(fork_join_root, root, sizeof(root));
    const struct span *r = NULL;
    cr_assert_eq(spans_named(&t, root, &r), 1, "the root, unnamed: %s", root);
    cr_assert_eq(spans_named(&t, child, NULL), CHILDREN,
                 "every child, named by its function: %s", child);
    cr_assert_eq(t.nspans, CHILDREN + 1);
    for (size_t i = 0; i < t.nspans; i++) {
        const struct span *s = &t.spans[i];
        cr_assert_eq(s->tid, 0);
        cr_assert_str_eq(s->outcome, "succeeded");
        cr_assert(s->ran);
        cr_assert_null(s->site, "no spawn site was given");
        /* The children ran inside the root's body, on the same thread. */
        cr_assert_geq(s->ts_ns, r->ts_ns);
        cr_assert_leq(s->ts_ns + s->dur_ns, r->ts_ns + r->dur_ns);
    }
    cr_assert_eq(&t.spans[0], r, "a lane lists the enclosing span first");
    trace_free(&t);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/* B's own function, so that its event is told from A's and C's
 * (ok_task, value 1) by name. */
static weft_status_t
frame_b_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    out->i64 = 2;
    return WEFT_OK;
}

/* Forks A, B and C; joins C (inline), then A before B: A's join pops B
 * down and runs it on the frame run path, then runs A inline. */
static weft_status_t
frames_out_of_order_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_frame_t a, b, c;
    weft_value_t va, vb, vc;
    cr_assert_eq(weft_frame_fork(self, &a, ok_task, (void *)1), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &b, frame_b_task, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_fork(self, &c, ok_task, (void *)1), WEFT_OK);
    cr_assert_eq(weft_frame_join(&c, &vc, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_join(&a, &va, NULL), WEFT_OK);
    cr_assert_eq(weft_frame_join(&b, &vb, NULL), WEFT_OK);
    out->i64 = va.i64 * 100 + vb.i64 * 10 + vc.i64;
    return WEFT_OK;
}

Test(trace, a_frame_run_off_its_join_is_an_event_of_its_task)
{
    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_trace_begin(ex, 64), WEFT_OK);
    weft_spawn_opts_t o = {.name = "forker"};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, frames_out_of_order_root, NULL, &f),
                 WEFT_OK);
    weft_value_t v;
    cr_assert_eq(weft_join(f, &v), WEFT_OK);
    cr_assert_eq(v.i64, 121);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);

    struct trace t;
    trace_read(ex, &t);
    const struct span *r = NULL;
    cr_assert_eq(spans_named(&t, "forker", &r), 1);
    cr_assert_str_eq(r->cat, "task");
    char b_name[64];
    snprintf(b_name, sizeof(b_name), "frame@0x%" PRIxPTR,
             (uintptr_t)frame_b_task);
    const struct span *fb = NULL;
    cr_assert_eq(spans_named(&t, b_name, &fb), 1,
                 "B, popped down by A's join: %s", b_name);
    cr_assert_eq(t.nspans, 2, "frames joined inline (A, C) are not events");
    cr_assert_str_eq(fb->cat, "frame");
    cr_assert_eq(fb->id, r->id, "a frame carries its enclosing task's id");
    cr_assert_neq(fb->id, 0);
    cr_assert_str_eq(fb->outcome, "succeeded");
    cr_assert(fb->ran);
    cr_assert_null(fb->site);
    cr_assert_eq(fb->tid, 0);
    cr_assert_geq(fb->ts_ns, r->ts_ns, "inside the task that forked it");
    cr_assert_leq(fb->ts_ns + fb->dur_ns, r->ts_ns + r->dur_ns);
    trace_free(&t);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(trace, full_buffer_counts_dropped_events)
{
    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_trace_begin(ex, 4), WEFT_OK);
    for (intptr_t i = 0; i < 10; i++) {
        cr_assert_eq(weft_executor_run(ex, ok_task, (void *)i, NULL), WEFT_OK);
    }
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    struct trace t;
    trace_read(ex, &t);
    cr_assert_eq(t.nspans, 4, "as many events as fit");
    cr_assert_eq(jint(t.other, "events_per_worker"), 4);
    cr_assert_eq(jint(t.other, "recorded"), 4);
    cr_assert_eq(jint(t.other, "dropped"), 6);
    const struct jv *by_lane = jget(t.other, "dropped_by_lane");
    cr_assert(by_lane != NULL && by_lane->kind == J_ARR && by_lane->n == 2,
              "one count per worker and one for the outside lane");
    cr_assert_str_eq(by_lane->v[0]->s, "6");
    cr_assert_str_eq(by_lane->v[1]->s, "0");
    trace_free(&t);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(trace, refused_continuation_is_recorded_on_the_outside_lane)
{
    const unsigned int workers = 2;
    weft_executor_t *ex = make_executor(workers);
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn(ex, ok_task, (void *)1, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    cr_assert_eq(weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN), WEFT_OK);

    cr_assert_eq(weft_executor_trace_begin(ex, 8), WEFT_OK);
    /* From this (outside) thread, after shutdown: never queued, so it
     * ends cancelled here, without running. */
    weft_future_t *c = NULL;
    cr_assert_eq(weft_future_then(f, ok_task, NULL, &c), WEFT_OK);
    cr_assert_eq(weft_future_wait(c), WEFT_ECANCELED);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);

    struct trace t;
    trace_read(ex, &t);
    cr_assert_eq(t.nspans, 1);
    const struct span *s = &t.spans[0];
    cr_assert_eq(s->tid, workers, "the lane after the workers' lanes");
    cr_assert_str_eq(t.lane_names[workers], "outside workers");
    cr_assert_str_eq(s->outcome, "cancelled");
    cr_assert(!s->ran);
    cr_assert_eq(s->dur_ns, 0);
    cr_assert_eq(s->id, weft_future_id(c));
    trace_free(&t);
    weft_future_release(c);
    weft_future_release(f);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(trace, names_are_escaped_as_json_strings)
{
    static const char odd[] = "q\"uote b\\ack\nnl\ttab\x01ctl /sl\xc3\xa9";
    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_trace_begin(ex, 8), WEFT_OK);
    weft_spawn_opts_t o = {.name = odd};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_spawn_ex(ex, &o, ok_task, NULL, &f), WEFT_OK);
    cr_assert_eq(weft_future_wait(f), WEFT_OK);
    weft_future_release(f);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    struct trace t;
    trace_read(ex, &t);
    cr_assert_eq(t.nspans, 1);
    cr_assert_str_eq(t.spans[0].name, odd, "the name survives the round trip");
    trace_free(&t);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

Test(trace, a_new_trace_discards_the_previous_one)
{
    weft_executor_t *ex = make_executor(1);
    /* Not recording: nothing is kept. */
    cr_assert_eq(weft_executor_run(ex, ok_task, (void *)1, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_trace_begin(ex, 8), WEFT_OK);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    struct trace t;
    trace_read(ex, &t);
    cr_assert_eq(t.nspans, 0, "tasks before the trace are not in it");
    trace_free(&t);

    weft_spawn_opts_t a = {.name = "first"};
    weft_spawn_opts_t b = {.name = "second"};
    weft_future_t *f = NULL;
    cr_assert_eq(weft_executor_trace_begin(ex, 8), WEFT_OK);
    cr_assert_eq(weft_spawn_ex(ex, &a, ok_task, NULL, &f), WEFT_OK);
    (void)weft_future_wait(f);
    weft_future_release(f);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    /* Not recording again: this task is in neither trace. */
    cr_assert_eq(weft_executor_run(ex, ok_task, (void *)2, NULL), WEFT_OK);
    cr_assert_eq(weft_executor_trace_begin(ex, 8), WEFT_OK);
    cr_assert_eq(weft_spawn_ex(ex, &b, ok_task, NULL, &f), WEFT_OK);
    (void)weft_future_wait(f);
    weft_future_release(f);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    trace_read(ex, &t);
    cr_assert_eq(t.nspans, 1);
    cr_assert_str_eq(t.spans[0].name, "second");
    trace_free(&t);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
}

/*
 * Parks. A root task waits on a child that another worker runs and that
 * ends only when the test says so; the test says so once the root's
 * worker has gone to sleep in that wait (the WAITER bit on the child's
 * state word is set right before the futex wait). Before the run, both
 * workers (idle_spin_us = 1) have gone to sleep idle, so the one that
 * takes the root wakes from an idle park while the trace records.
 */
static weft_future_t *_Atomic park_child;
static atomic_int park_child_started;
static atomic_int park_child_release;

static weft_status_t
park_child_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)self;
    (void)arg;
    atomic_store(&park_child_started, 1);
    while (!atomic_load(&park_child_release)) {
        sched_yield();
    }
    out->i64 = 7;
    return WEFT_OK;
}

static weft_status_t
park_root(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)arg;
    weft_future_t *c = NULL;
    weft_status_t st =
        weft_spawn(weft_task_executor(self), park_child_body, NULL, &c);
    if (st != WEFT_OK) {
        atomic_store(&park_child_release, 1);
        return st;
    }
    atomic_store(&park_child, c);
    /* Let the other worker take it, so that the wait below cannot run it
     * inline and has to sleep. */
    while (!atomic_load(&park_child_started)) {
        sched_yield();
    }
    weft_value_t v = {0};
    st = weft_join(c, &v);
    out->i64 = v.i64;
    return st;
}

/* Run the park scenario on a 2-worker executor with a trace begun with
 * WEFT_TRACE_PARKS as parks says; fill *t, *root_id and *child_id. */
static void
park_scenario(bool parks, struct trace *t, uint64_t *root_id,
              uint64_t *child_id)
{
    atomic_store(&park_child, NULL);
    atomic_store(&park_child_started, 0);
    atomic_store(&park_child_release, 0);
    if (parks) {
        cr_assert_eq(setenv("WEFT_TRACE_PARKS", "1", 1), 0);
    } else {
        unsetenv("WEFT_TRACE_PARKS");
    }
    weft_executor_config_t c;
    weft_executor_config_init(&c);
    c.num_workers = 2;
    c.idle_spin_us = 1;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&c, &ex), WEFT_OK);
    cr_assert_eq(weft_executor_trace_begin(ex, 1024), WEFT_OK);
    unsetenv("WEFT_TRACE_PARKS");
    /* Both workers idle and asleep (their counters move before they
     * sleep; a worker still on its way wakes later from the same park). */
    for (;;) {
        weft_worker_stats_t st[2];
        cr_assert_eq(weft_executor_stats(ex, 0, &st[0]), WEFT_OK);
        cr_assert_eq(weft_executor_stats(ex, 1, &st[1]), WEFT_OK);
        if (st[0].parks > 0 && st[1].parks > 0) {
            break;
        }
        sched_yield();
    }
    weft_future_t *root = NULL;
    cr_assert_eq(weft_spawn(ex, park_root, NULL, &root), WEFT_OK);
    weft_future_t *child;
    while ((child = atomic_load(&park_child)) == NULL) {
        sched_yield();
    }
    /* Wait for the root's worker to sleep in its wait on the child. */
    while (!(__atomic_load_n(&((struct weft_future *)child)->state,
                             __ATOMIC_ACQUIRE) &
             WEFT__F_WAITER)) {
        sched_yield();
    }
    atomic_store(&park_child_release, 1);
    cr_assert_eq(weft_future_wait(root), WEFT_OK);
    weft_value_t v = {0};
    cr_assert_eq(weft_future_value(root, &v), WEFT_OK);
    cr_assert_eq(v.i64, 7);
    *root_id = weft_future_id(root);
    cr_assert_eq(weft_executor_trace_end(ex), WEFT_OK);
    trace_read(ex, t);
    cr_assert_eq(weft_future_release(root), WEFT_OK);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    /* The child's id, from its span (the join released the child). */
    char name[64];
    fn_name(park_child_body, name, sizeof(name));
    const struct span *cs = NULL;
    cr_assert_eq(spans_named(t, name, &cs), 1, "the child ran once");
    *child_id = cs->id;
}

Test(trace, with_weft_trace_parks_a_worker_s_sleeps_are_events)
{
    struct trace t;
    uint64_t root_id = 0;
    uint64_t child_id = 0;
    park_scenario(true, &t, &root_id, &child_id);

    char name[64];
    fn_name(park_root, name, sizeof(name));
    const struct span *rs = NULL;
    cr_assert_eq(spans_named(&t, name, &rs), 1, "the root ran once");
    size_t idle = 0;
    size_t waits = 0;
    for (size_t i = 0; i < t.nspans; i++) {
        const struct span *s = &t.spans[i];
        if (strcmp(s->cat, "park") != 0) {
            continue;
        }
        cr_assert_lt(s->tid, 2, "a park is on a worker's lane");
        if (strcmp(s->reason, "idle") == 0) {
            cr_assert_str_eq(s->name, "park (idle)");
            idle++;
            continue;
        }
        cr_assert_str_eq(s->name, "park (wait)");
        cr_assert_eq(s->id, child_id, "a wait park names the awaited task");
        cr_assert_eq(s->tid, rs->tid, "on the waiting root's lane");
        cr_assert(s->ts_ns >= rs->ts_ns &&
                      s->ts_ns + s->dur_ns <= rs->ts_ns + rs->dur_ns,
                  "inside the root's span");
        waits++;
    }
    cr_assert_geq(idle, 1, "the worker woken for the root slept idle");
    cr_assert_geq(waits, 1, "the root slept in its wait");
    cr_assert_neq(child_id, root_id);
    trace_free(&t);
}

Test(trace, without_weft_trace_parks_no_park_is_recorded)
{
    struct trace t;
    uint64_t root_id = 0;
    uint64_t child_id = 0;
    park_scenario(false, &t, &root_id, &child_id);
    for (size_t i = 0; i < t.nspans; i++) {
        cr_assert_str_neq(t.spans[i].cat, "park", "%s", t.spans[i].name);
    }
    cr_assert_eq(jint(t.other, "recorded"), 2, "the root and the child");
    trace_free(&t);
}

Test(trace, environment_variable_traces_from_create_to_destroy)
{
    char dir[] = "/tmp/weft-trace-env-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char tmpl[128];
    char path[128];
    snprintf(tmpl, sizeof(tmpl), "%s/run-%%p.json", dir);
    snprintf(path, sizeof(path), "%s/run-%ld.json", dir, (long)getpid());
    cr_assert_eq(setenv("WEFT_TRACE", tmpl, 1), 0);
    cr_assert_eq(setenv("WEFT_TRACE_EVENTS", "3", 1), 0);

    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_trace_begin(ex, 8), WEFT_EBUSY,
                 "the environment's trace is recording");
    for (intptr_t i = 0; i < 5; i++) {
        cr_assert_eq(weft_executor_run(ex, ok_task, (void *)i, NULL), WEFT_OK);
    }
    cr_assert_neq(access(path, F_OK), 0, "written at destroy, not before");
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    unsetenv("WEFT_TRACE");
    unsetenv("WEFT_TRACE_EVENTS");

    struct trace t;
    trace_read_file(path, &t);
    cr_assert_eq(t.nspans, 3, "WEFT_TRACE_EVENTS events per worker");
    cr_assert_eq(jint(t.other, "dropped"), 2);
    trace_free(&t);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(rmdir(dir), 0, "nothing else was written");
}

Test(trace, a_bad_events_variable_falls_back_to_the_default)
{
    char dir[] = "/tmp/weft-trace-env-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/run.json", dir);
    cr_assert_eq(setenv("WEFT_TRACE", path, 1), 0);
    cr_assert_eq(setenv("WEFT_TRACE_EVENTS", "lots", 1), 0);
    weft_executor_t *ex = make_executor(1);
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK);
    unsetenv("WEFT_TRACE");
    unsetenv("WEFT_TRACE_EVENTS");
    struct trace t;
    trace_read_file(path, &t);
    cr_assert_eq(jint(t.other, "events_per_worker"), WEFT_TRACE_DEFAULT_EVENTS);
    trace_free(&t);
    unlink(path);
    rmdir(dir);
}

/*
 * Destroy with WEFT_TRACE set to path, stderr sent to a scratch file;
 * returns what destroy wrote there (static buffer).
 */
static const char *
destroy_capturing_stderr(const char *path)
{
    static char out[512];
    char errtmpl[] = "/tmp/weft-trace-stderr-XXXXXX";
    int fd = mkstemp(errtmpl);
    cr_assert_geq(fd, 0);
    cr_assert_eq(setenv("WEFT_TRACE", path, 1), 0);
    weft_executor_t *ex = make_executor(1);
    unsetenv("WEFT_TRACE");
    cr_assert_eq(weft_executor_run(ex, ok_task, NULL, NULL), WEFT_OK);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
    weft_status_t st = weft_executor_destroy(ex);
    fflush(stderr);
    cr_assert_geq(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    cr_assert_eq(st, WEFT_OK, "a trace that cannot be written fails nothing");
    ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
    cr_assert_geq(n, 0);
    out[n] = '\0';
    close(fd);
    unlink(errtmpl);
    return out;
}

Test(trace, an_unwritable_trace_file_is_reported_on_stderr)
{
    char dir[] = "/tmp/weft-trace-gone-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(rmdir(dir), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/run.json", dir); /* no such directory */
    char want[256];
    snprintf(want, sizeof(want),
             "weft: WEFT_TRACE: cannot write the trace to %s: %s\n", path,
             strerror(ENOENT));
    cr_assert_str_eq(destroy_capturing_stderr(path), want);
    cr_assert_neq(access(dir, F_OK), 0, "nothing was created");
}

Test(trace, a_trace_file_on_a_full_device_is_reported_on_stderr)
{
    /* Linux's device that accepts the open and fails every write. */
    cr_assert_eq(access("/dev/full", W_OK), 0);
    char want[256];
    snprintf(want, sizeof(want),
             "weft: WEFT_TRACE: cannot write the trace to /dev/full: %s\n",
             strerror(ENOSPC));
    cr_assert_str_eq(destroy_capturing_stderr("/dev/full"), want);
}
