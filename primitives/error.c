/*
 * error.c - immutable, reference-counted error values.
 *
 * DESIGN
 *
 * An error is one allocation: the fixed fields, then the formatted message
 * in a trailing array. The producing task's name is copied into a fixed
 * inline buffer so that recording it cannot fail (an error is usually made
 * on a path that is already failing); the spawn site's file and function
 * are static strings (__FILE__, __func__) and are only pointed to.
 *
 * Lifetime is a reference count changed with fetch-and-add. The release
 * that takes the count to zero frees the error and then releases its
 * cause; the cause chain is walked in a loop, not by recursion, so a long
 * chain cannot exhaust the stack.
 *
 * Immortal errors are static objects marked `immortal`; retain and release
 * return at once for them, so a constructor that runs out of memory can
 * hand one out and every caller releases it like any other error.
 *
 * Invariants:
 *  1. Every field except refs is written only before the error is shared:
 *     by the constructor, or by the weft__error_set_*() setters, which
 *     refuse to run unless the caller holds the only reference. Readers
 *     therefore need no synchronization beyond the hand-off that gave
 *     them their reference.
 *  2. refs counts the references held; the release that moves it from 1
 *     to 0 is the only one that touches the error afterwards (to free it),
 *     and its fetch-and-add orders every other holder's reads before the
 *     free.
 *  3. An error holds exactly one reference to its cause, taken at
 *     construction and given up when the error is freed. Causes are set
 *     only at construction, so the cause graph is acyclic.
 *  4. Immortal errors are never written after static initialization.
 */
#include "error.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "atomics.h"

struct weft_error {
    uint32_t refs;       /* faa by holders; unused when immortal */
    int code;            /* immutable */
    bool immortal;       /* immutable */
    int line;            /* spawn site; set by the sole owner (inv. 1) */
    const char *file;    /* static string or NULL; as line */
    const char *func;    /* static string or NULL; as line */
    uint64_t task_id;    /* 0: none; as line */
    weft_error_t *cause; /* one reference held (inv. 3); immutable */
    const char *message; /* immutable; points at text[] or a literal */
    char task_name[WEFT__ERROR_TASK_NAME_MAX]; /* "" when none; as line */
    char text[];         /* the formatted message */
};

static weft_error_t error_enomem = {
    .code = WEFT_ENOMEM,
    .immortal = true,
    .message = "out of memory while making an error",
};

static weft_error_t error_deadline = {
    .code = WEFT_EDEADLINE,
    .immortal = true,
    .message = "deadline passed",
};

static weft_error_t error_canceled = {
    .code = WEFT_ECANCELED,
    .immortal = true,
    .message = "cancelled without a reason",
};

weft_error_t *
weft__error_enomem(void)
{
    return &error_enomem;
}

weft_error_t *
weft__error_deadline(void)
{
    return &error_deadline;
}

weft_error_t *
weft__error_canceled(void)
{
    return &error_canceled;
}

bool
weft__error_is_immortal(const weft_error_t *e)
{
    return e != NULL && e->immortal;
}

/* Allocate and fill an error; *out is NULL on failure. */
static weft_status_t WEFT__PRINTF(4, 0)
error_make(weft_error_t **out, weft_error_t *cause, int code,
           const char *fmt, va_list ap)
{
    size_t len = 0;
    if (fmt != NULL) {
        va_list measure;
        va_copy(measure, ap);
        int n = vsnprintf(NULL, 0, fmt, measure);
        va_end(measure);
        /* A format error (n < 0) keeps an empty message. */
        len = n > 0 ? (size_t)n : 0;
    }
    weft_error_t *e = WEFT__ALLOC(sizeof(*e) + len + 1);
    if (e == NULL) {
        *out = NULL;
        return WEFT_ENOMEM;
    }
    memset(e, 0, sizeof(*e));
    e->code = code;
    e->text[0] = '\0';
    if (len > 0) {
        (void)vsnprintf(e->text, len + 1, fmt, ap);
    }
    e->message = e->text;
    if (cause != NULL) {
        (void)weft_error_retain(cause);
        e->cause = cause;
    }
    /* Unpaired: initialization before the error is handed out (inv. 1). */
    weft__store_relaxed_u32(&e->refs, 1);
    *out = e;
    return WEFT_OK;
}

weft_status_t
weft_error_createv(weft_error_t **out, int code, const char *fmt,
                   va_list ap)
{
    if (out == NULL || code <= 0) {
        return WEFT_EINVAL;
    }
    if (error_make(out, NULL, code, fmt, ap) != WEFT_OK) {
        *out = &error_enomem;
        return WEFT_ENOMEM;
    }
    return WEFT_OK;
}

weft_status_t
weft_error_create(weft_error_t **out, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    weft_status_t st = weft_error_createv(out, code, fmt, ap);
    va_end(ap);
    return st;
}

weft_status_t
weft_error_wrap(weft_error_t **out, weft_error_t *cause, int code,
                const char *fmt, ...)
{
    if (out == NULL || code <= 0) {
        return WEFT_EINVAL;
    }
    va_list ap;
    va_start(ap, fmt);
    weft_status_t st = error_make(out, cause, code, fmt, ap);
    va_end(ap);
    if (st != WEFT_OK) {
        *out = &error_enomem;
        return WEFT_ENOMEM;
    }
    return WEFT_OK;
}

weft_status_t
weft_error_retain(weft_error_t *e)
{
    if (e == NULL) {
        return WEFT_EINVAL;
    }
    if (e->immortal) {
        return WEFT_OK;
    }
    /*
     * Unpaired: a new reference is made from one the caller already holds,
     * so nothing needs ordering (the faa is seq_cst only because that is
     * the one atomics.h offers).
     */
    (void)weft__faa_u32(&e->refs, 1);
    return WEFT_OK;
}

weft_status_t
weft_error_release(weft_error_t *e)
{
    if (e == NULL) {
        return WEFT_EINVAL;
    }
    while (e != NULL && !e->immortal) {
        /*
         * Drop one reference. The full barrier orders this holder's reads
         * of e before the free done by whichever release reaches zero.
         * Pairs with: this same faa in other threads' weft_error_release()
         * (invariant 2).
         */
        uint32_t old = weft__faa_u32(&e->refs, (uint32_t)-1);
        if (old != 1) {
            if (old == 0) {
                abort(); /* over-release: a broken caller invariant */
            }
            break;
        }
        weft_error_t *cause = e->cause;
        weft__free(e);
        e = cause; /* give up the reference e held (invariant 3) */
    }
    return WEFT_OK;
}

/* Common checks of the sole-owner setters. */
static weft_status_t
error_check_owned(const weft_error_t *e)
{
    if (e == NULL) {
        return WEFT_EINVAL;
    }
    if (e->immortal) {
        return WEFT_ESTATE;
    }
    /*
     * Relaxed: only the sole owner may pass this check, and nobody else
     * can raise a count of 1 without a reference the owner handed out.
     */
    if (weft__load_relaxed_u32(&e->refs) != 1) {
        return WEFT_EBUSY;
    }
    return WEFT_OK;
}

weft_status_t
weft__error_set_task(weft_error_t *e, const char *name, uint64_t id)
{
    weft_status_t st = error_check_owned(e);
    if (st != WEFT_OK) {
        return st;
    }
    e->task_name[0] = '\0';
    if (name != NULL) {
        (void)snprintf(e->task_name, sizeof(e->task_name), "%s", name);
    }
    e->task_id = id;
    return WEFT_OK;
}

weft_status_t
weft__error_set_site(weft_error_t *e, const char *file, int line,
                     const char *func)
{
    weft_status_t st = error_check_owned(e);
    if (st != WEFT_OK) {
        return st;
    }
    e->file = file;
    e->line = file != NULL ? line : 0;
    e->func = file != NULL ? func : NULL;
    return WEFT_OK;
}

int
weft_error_status(const weft_error_t *e)
{
    return e != NULL ? e->code : WEFT_OK;
}

const char *
weft_error_message(const weft_error_t *e)
{
    return e != NULL ? e->message : NULL;
}

const char *
weft_error_task_name(const weft_error_t *e)
{
    if (e == NULL || e->task_name[0] == '\0') {
        return NULL;
    }
    return e->task_name;
}

uint64_t
weft_error_task_id(const weft_error_t *e)
{
    return e != NULL ? e->task_id : 0;
}

weft_error_t *
weft_error_cause(const weft_error_t *e)
{
    return e != NULL ? e->cause : NULL;
}

const char *
weft_error_file(const weft_error_t *e)
{
    return e != NULL ? e->file : NULL;
}

int
weft_error_line(const weft_error_t *e)
{
    return e != NULL ? e->line : 0;
}

const char *
weft_error_func(const weft_error_t *e)
{
    return e != NULL ? e->func : NULL;
}

/* ---- Text builder ----------------------------------------------------- */

void
weft__strbuf_init_mem(struct weft__strbuf *sb, char *buf, size_t cap)
{
    sb->buf = cap > 0 ? buf : NULL;
    sb->cap = buf != NULL ? cap : 0;
    sb->len = 0;
    sb->fp = NULL;
    sb->failed = false;
    if (sb->cap > 0) {
        sb->buf[0] = '\0';
    }
}

void
weft__strbuf_init_file(struct weft__strbuf *sb, FILE *fp)
{
    sb->buf = NULL;
    sb->cap = 0;
    sb->len = 0;
    sb->fp = fp;
    sb->failed = false;
}

static void WEFT__PRINTF(2, 0)
strbuf_vprintf(struct weft__strbuf *sb, const char *fmt, va_list ap)
{
    int n;
    if (sb->fp != NULL) {
        n = vfprintf(sb->fp, fmt, ap);
        if (n < 0) {
            sb->failed = true;
            return;
        }
    } else if (sb->len < sb->cap) {
        /* vsnprintf truncates and always NUL-terminates inside buf. */
        n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
    } else {
        n = vsnprintf(NULL, 0, fmt, ap);
    }
    if (n > 0) {
        sb->len += (size_t)n;
    }
}

void
weft__strbuf_printf(struct weft__strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vprintf(sb, fmt, ap);
    va_end(ap);
}

/* One error of a chain, without its causes. */
static void
strbuf_error_one(struct weft__strbuf *sb, const weft_error_t *e)
{
    const char *name = weft_status_name(e->code);
    if (strcmp(name, "WEFT_UNKNOWN") == 0) {
        weft__strbuf_printf(sb, "WEFT_UNKNOWN(%d)", e->code);
    } else {
        weft__strbuf_printf(sb, "%s", name);
    }
    const char *msg = e->message[0] != '\0' ? e->message
                                            : weft_status_str(e->code);
    weft__strbuf_printf(sb, ": %s", msg);

    bool has_task = e->task_name[0] != '\0' || e->task_id != 0;
    bool has_site = e->file != NULL;
    if (!has_task && !has_site) {
        return;
    }
    weft__strbuf_printf(sb, " [");
    if (has_task) {
        weft__strbuf_printf(sb, "task %s", e->task_name);
        if (e->task_id != 0) {
            weft__strbuf_printf(sb, "#%llu", (unsigned long long)e->task_id);
        }
    }
    if (has_site) {
        weft__strbuf_printf(sb, "%sat %s:%d", has_task ? " " : "", e->file,
                            e->line);
        if (e->func != NULL) {
            weft__strbuf_printf(sb, " (%s)", e->func);
        }
    }
    weft__strbuf_printf(sb, "]");
}

void
weft__strbuf_error(struct weft__strbuf *sb, const weft_error_t *e)
{
    if (e == NULL) {
        weft__strbuf_printf(sb, "(null)");
        return;
    }
    strbuf_error_one(sb, e);
    for (const weft_error_t *c = e->cause; c != NULL; c = c->cause) {
        weft__strbuf_printf(sb, " caused by: ");
        strbuf_error_one(sb, c);
    }
}

size_t
weft_error_format(const weft_error_t *e, char *buf, size_t n)
{
    struct weft__strbuf sb;
    weft__strbuf_init_mem(&sb, buf, n);
    weft__strbuf_error(&sb, e);
    return sb.len;
}

weft_status_t
weft_error_print(const weft_error_t *e, FILE *fp)
{
    if (e == NULL || fp == NULL) {
        return WEFT_EINVAL;
    }
    struct weft__strbuf sb;
    weft__strbuf_init_file(&sb, fp);
    weft__strbuf_error(&sb, e);
    weft__strbuf_printf(&sb, "\n");
    return sb.failed ? WEFT_ESYS : WEFT_OK;
}
