/**
 * @file
 * weft/status.h - status codes returned by every fallible weft call.
 *
 * The enum, weft_status_name() and weft_status_str() are generated from the
 * single X-macro table WEFT_STATUS_MAP below, so the three cannot drift.
 * Values are append-only: WEFT_OK is 0 and every other code is positive and
 * keeps its number forever.
 */
#ifndef WEFT_STATUS_H
#define WEFT_STATUS_H

#include <weft/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * X(name, value, message). weft's own codes are 0..63 and only ever get
 * added (never renumbered); 64 (WEFT_EUSER) and above belong to
 * applications, which may return any value >= WEFT_EUSER from a task to
 * mean their own failure kinds.
 */
#define WEFT_STATUS_MAP(X)                                                  \
    X(OK, 0, "success")                                                     \
    X(EINVAL, 1, "invalid argument")                                        \
    X(ENOMEM, 2, "out of memory")                                           \
    X(ESHUTDOWN, 3, "executor is shutting down or shut down")               \
    X(ECANCELED, 4, "operation was cancelled")                              \
    X(ETIMEDOUT, 5, "deadline passed before the operation completed")       \
    X(EAGAIN, 6, "resource temporarily unavailable; try again")             \
    X(EBUSY, 7, "object is in use")                                         \
    X(ESTATE, 8, "object is in the wrong state for this call")              \
    X(ESYS, 9, "an operating-system call failed")                           \
    X(EFAILED, 10, "task failed")                                           \
    X(EDEADLINE, 11, "cancelled because a deadline passed")                 \
    X(ENOTFOUND, 12, "not found")                                           \
    X(ERANGE, 13, "value out of range")                                     \
    X(EALREADY, 14, "already done; this call came too late")                \
    X(EINTERRUPTED, 15, "wait abandoned: the waiter's token was cancelled") \
    X(EEXHAUSTED, 16, "nothing left: every item was already returned")     \
    X(ENOTSUP, 17, "not supported by this build of weft")                   \
    X(EUSER, 64, "application-defined failure")

/** Status code. WEFT_OK is 0; failures are positive. */
typedef enum weft_status {
#define WEFT__STATUS_ENUM(name, value, msg) WEFT_##name = value,
    WEFT_STATUS_MAP(WEFT__STATUS_ENUM)
#undef WEFT__STATUS_ENUM
} weft_status_t;

/**
 * Name of a status code, such as "WEFT_EINVAL".
 * Returns: a static string; "WEFT_UNKNOWN" for a value not in the table.
 * Thread-safety: any thread. Blocking: never. Ownership: static storage,
 * never freed.
 */
WEFT_API const char *weft_status_name(int status);

/**
 * Human-readable message of a status code, such as "invalid argument".
 * Returns: a static string; "unknown status" for a value not in the table.
 * Values at or above WEFT_EUSER that are not in the table are
 * "application-defined failure".
 * Thread-safety: any thread. Blocking: never. Ownership: static storage.
 */
WEFT_API const char *weft_status_str(int status);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_STATUS_H */
