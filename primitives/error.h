/*
 * error.h - private side of <weft/error.h>: what the executor calls to
 * fill in an error's origin, the immortal errors, and the small text
 * builder that error and errgroup formatting share.
 *
 * Filling in an error's origin (executor):
 *
 *     weft_error_t *e;
 *     weft_error_create(&e, status, NULL);          // or the task's own
 *     weft__error_set_task(e, task_name, task_id);  // while e is unshared
 *     weft__error_set_site(e, __FILE__, __LINE__, __func__); // from spawn
 *
 * The setters work only while the caller holds the one and only reference
 * (they return WEFT_EBUSY otherwise), because an error is read without
 * locks once shared. They return WEFT_ESTATE on an immortal error, which
 * has no origin; the executor may ignore both statuses: the error stays
 * valid, it just lacks the origin.
 *
 * Immortal errors: static objects whose retain and release do nothing, used
 * where making an error must not fail or allocate: out of memory
 * (weft__error_enomem()), a passed deadline (weft__error_deadline(), the
 * reason tokens use, so a poll never allocates) and a cancellation with no
 * reason given (weft__error_canceled()).
 */
#ifndef WEFT_PRIMITIVES_ERROR_H
#define WEFT_PRIMITIVES_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <weft/error.h>

/* Capacity of the inline task-name copy, including the NUL. */
#define WEFT__ERROR_TASK_NAME_MAX 48

/*
 * Record the producing task. name is copied (truncated to 47 bytes); NULL
 * clears it. id 0 means none.
 * Returns: WEFT_OK; WEFT_EINVAL (e NULL); WEFT_ESTATE (immortal error);
 * WEFT_EBUSY (the caller does not hold the only reference).
 * Thread-safety: the sole owner of e. Blocking: never.
 */
weft_status_t weft__error_set_task(weft_error_t *e, const char *name,
                                   uint64_t id);

/*
 * Record the spawn site. file and func must be static strings
 * (__FILE__, __func__); they are not copied. NULL file clears the site.
 * Returns and thread-safety: as weft__error_set_task().
 */
weft_status_t weft__error_set_site(weft_error_t *e, const char *file,
                                   int line, const char *func);

/* The immortal errors (see the file comment). Never NULL; any thread. */
weft_error_t *weft__error_enomem(void);
weft_error_t *weft__error_deadline(void);
weft_error_t *weft__error_canceled(void);

/* True for an immortal error. Any thread. */
bool weft__error_is_immortal(const weft_error_t *e);

/*
 * Text builder with snprintf semantics over a caller buffer, or a writer
 * to a FILE*. `len` counts every byte appended, including those that did
 * not fit, so the final length is what the whole text needs.
 * Thread-safety: one thread at a time per builder.
 */
struct weft__strbuf {
    char *buf;   /* memory mode: destination; NULL in file mode */
    size_t cap;  /* memory mode: bytes available, NUL included */
    size_t len;  /* bytes appended so far (may exceed cap) */
    FILE *fp;    /* file mode: destination */
    bool failed; /* file mode: a write failed */
};

/* Start a builder over buf[0..cap); buf may be NULL when cap is 0. */
void weft__strbuf_init_mem(struct weft__strbuf *sb, char *buf, size_t cap);

/* Start a builder that writes through to fp. */
void weft__strbuf_init_file(struct weft__strbuf *sb, FILE *fp);

/* Append formatted text. */
void weft__strbuf_printf(struct weft__strbuf *sb, const char *fmt, ...)
    WEFT__PRINTF(2, 3);

/* Append e in weft_error_format()'s one-line format. */
void weft__strbuf_error(struct weft__strbuf *sb, const weft_error_t *e);

#endif /* WEFT_PRIMITIVES_ERROR_H */
