/**
 * @file
 * weft/error.h - error values: what a failed or cancelled task reports.
 *
 * An error is an immutable, reference-counted value holding:
 *
 *   - a status code: a weft_status_t from <weft/status.h>, or an
 *     application code at or above WEFT_EUSER;
 *   - a message, formatted printf-style when the error is made;
 *   - the task that produced it (name and id), filled in by the executor;
 *   - the site where that task was spawned (file, line, function), filled
 *     in by the executor from its spawn macro;
 *   - an optional cause: another error, which this one keeps alive.
 *
 * Ownership: every constructor hands the caller one reference; give it up
 * with weft_error_release(). Getters return borrowed pointers that stay
 * valid while the caller holds a reference to the error they came from.
 *
 * Out of memory: making an error never leaves the caller without one. When
 * the allocation fails, the constructor returns WEFT_ENOMEM and still sets
 * *out, to a static, immortal out-of-memory error (code WEFT_ENOMEM, no
 * task, no cause). Retaining and releasing it do nothing, so callers treat
 * it like any other error and need no special case.
 *
 * Thread-safety: an error is read-only once made, so any thread holding a
 * reference may read it, retain it or release it concurrently.
 */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define WEFT__PRINTF(fmt_index, first_arg)                                    \
    __attribute__((format(printf, fmt_index, first_arg)))
#else
#define WEFT__PRINTF(fmt_index, first_arg)
#endif

/** Opaque error value. */
typedef struct weft_error weft_error_t;

/**
 * Make an error with status code `code` and a printf-style message. fmt
 * may be NULL for no message (formatting then shows the code's standard
 * text, weft_status_str(code)).
 * Returns: WEFT_OK and *out set to a new error; WEFT_ENOMEM and *out set
 * to the immortal out-of-memory error; WEFT_EINVAL (out NULL, or code <= 0:
 * WEFT_OK is not an error) with *out untouched.
 * Thread-safety: any thread. Blocking: never (allocates).
 * Ownership: the caller owns one reference to *out.
 */
WEFT_API weft_status_t weft_error_create(weft_error_t **out, int code,
                                         const char *fmt, ...)
    WEFT__PRINTF(3, 4);

/** weft_error_create() with a va_list. Same contract. */
WEFT_API weft_status_t weft_error_createv(weft_error_t **out, int code,
                                          const char *fmt, va_list ap)
    WEFT__PRINTF(3, 0);

/**
 * Make an error caused by `cause`: weft_error_create() plus a cause link.
 * The new error takes its own reference to cause (the caller keeps its
 * reference). cause may be NULL (then this is weft_error_create()).
 * Returns: as weft_error_create(). On WEFT_ENOMEM *out is the immortal
 * out-of-memory error, which carries no cause: the cause is not retained.
 * Thread-safety: any thread holding a reference to cause. Blocking: never.
 */
WEFT_API weft_status_t weft_error_wrap(weft_error_t **out, weft_error_t *cause,
                                       int code, const char *fmt, ...)
    WEFT__PRINTF(4, 5);

/**
 * Take another reference to e. No-op for the immortal out-of-memory error.
 * Returns: WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_error_retain(weft_error_t *e);

/**
 * Give up one reference; the last one frees e and releases its cause.
 * No-op for the immortal out-of-memory error. Releasing more references
 * than were taken is undefined behaviour.
 * Returns: WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_error_release(weft_error_t *e);

/**
 * Status code of e (a weft_status_t value, or an application code).
 * Returns: the code; WEFT_OK (0), which no error carries, for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API int weft_error_status(const weft_error_t *e);

/**
 * Message of e as formatted at creation, "" when it had none.
 * Returns: a borrowed string, valid while the caller holds a reference to
 * e; NULL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API const char *weft_error_message(const weft_error_t *e);

/**
 * Name of the task that produced e, as the executor recorded it (names
 * longer than 47 bytes are truncated).
 * Returns: a borrowed string valid while the caller holds a reference to
 * e; NULL when no task was recorded or e is NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API const char *weft_error_task_name(const weft_error_t *e);

/**
 * Executor-unique id of the task that produced e.
 * Returns: the id; 0 when none was recorded or e is NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API uint64_t weft_error_task_id(const weft_error_t *e);

/**
 * The error that caused e.
 * Returns: a borrowed pointer, valid while the caller holds a reference
 * to e (retain it to keep it longer); NULL when e has no cause or is NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_error_t *weft_error_cause(const weft_error_t *e);

/**
 * Spawn site of the task that produced e: __FILE__, __LINE__ and __func__
 * of the spawn call, as the executor recorded them.
 * Returns: the file and function are static strings (never freed); NULL
 * and 0 when no site was recorded or e is NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API const char *weft_error_file(const weft_error_t *e);
/** Line of the spawn site: see weft_error_file(). */
WEFT_API int weft_error_line(const weft_error_t *e);
/** Function of the spawn site: see weft_error_file(). */
WEFT_API const char *weft_error_func(const weft_error_t *e);

/**
 * Write e as one line into buf, with snprintf semantics: at most n bytes
 * including the terminating NUL are written (nothing when n is 0, and buf
 * may then be NULL), and the return value is the length the whole text
 * needs, so a return >= n means it was truncated. The format is
 *
 *   NAME: message [task NAME#ID at FILE:LINE (FUNC)] caused by: ...
 *
 * for example
 *
 *   WEFT_EUSER: record 3 not found [task fetch#12 at main.c:40 (main)]
 *
 * where the bracket holds only the parts that were recorded (and is left
 * out when none was), an empty message is replaced by the code's standard
 * text, a code outside the status table shows as WEFT_UNKNOWN(<code>),
 * and each cause follows as " caused by: " plus the same format.
 * Returns: the needed length; for NULL e the text is "(null)".
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API size_t weft_error_format(const weft_error_t *e, char *buf, size_t n);

/**
 * Write weft_error_format()'s text and a newline to fp.
 * Returns: WEFT_OK; WEFT_EINVAL (e or fp NULL); WEFT_ESYS when writing
 * failed. Thread-safety: any thread holding a reference; stdio locks fp.
 * Blocking: as the stdio write.
 */
WEFT_API weft_status_t weft_error_print(const weft_error_t *e, FILE *fp);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_ERROR_H */
