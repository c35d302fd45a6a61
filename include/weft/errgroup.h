/**
 * @file
 * weft/errgroup.h - error groups: every failure of a set of tasks, in a
 * defined order.
 *
 * A group has a message ("gather failed") and an ordered list of entries;
 * each entry is either an error or a nested group (a gather inside a
 * gather). It is weft's ExceptionGroup: it can be counted, iterated,
 * flattened, split by a predicate, searched for a code and printed as a
 * tree.
 *
 * Order: each entry carries a 64-bit ordering key, and the group keeps its
 * entries sorted by key; entries with equal keys keep the order in which
 * they were added. The executor uses a child's spawn index as key, so a
 * group lists failures in spawn order even when children fail out of
 * order. WEFT_ERRGROUP_APPEND (the largest key) puts an entry after every
 * keyed one.
 *
 * Ownership: groups are reference-counted. A group holds one reference to
 * each of its errors and nested groups. Accessors return borrowed pointers
 * valid while the caller holds a reference to the group they came from.
 * split, subgroup and flatten make new groups but never copy errors: the
 * new groups hold references to the same error objects.
 *
 * Thread-safety: a group is built by one thread at a time (adds are not
 * synchronized) and is then shared read-only: any number of threads that
 * hold a reference may read it, retain it and release it concurrently.
 * Handing a group from the builder to readers needs a synchronizing
 * hand-off (a future's completion, a mutex) like any other data.
 * Once a group has been added to another group it is frozen: further adds
 * to it fail with WEFT_ESTATE. This keeps nested groups immutable, makes
 * cycles impossible, and keeps the counts cached in each group exact.
 *
 * Nesting is limited to WEFT_ERRGROUP_MAX_DEPTH levels, so that the
 * recursive operations (split, flatten, print, release) use bounded stack.
 * A caller that hits the limit can add the flattened child instead.
 */
#ifndef WEFT_ERRGROUP_H
#define WEFT_ERRGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <weft/error.h>
#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque error group. */
typedef struct weft_errgroup weft_errgroup_t;

/** Key that sorts after every other key: "append at the end". */
#define WEFT_ERRGROUP_APPEND UINT64_MAX

/** Deepest allowed nesting: a group of errors only has depth 1. */
#define WEFT_ERRGROUP_MAX_DEPTH 256

/** What an entry holds. */
typedef enum weft_errgroup_kind {
    WEFT_ERRGROUP_ERROR = 1, /**< an error */
    WEFT_ERRGROUP_GROUP = 2  /**< a nested group */
} weft_errgroup_kind_t;

/** One entry, as returned by weft_errgroup_entry(). */
typedef struct weft_errgroup_entry {
    weft_errgroup_kind_t kind; /**< error or nested group */
    uint64_t key;              /**< its ordering key */
    weft_error_t *error;       /**< kind ERROR: borrowed; NULL otherwise */
    weft_errgroup_t *group;    /**< kind GROUP: borrowed; NULL otherwise */
} weft_errgroup_entry_t;

/** Predicate over errors for split and subgroup; ctx is passed through. */
typedef bool (*weft_error_pred_t)(const weft_error_t *e, void *ctx);

/**
 * Make an empty group with a printf-style message (fmt may be NULL: no
 * message; printing then says "error group").
 * Returns: WEFT_OK and *out set; WEFT_EINVAL (out NULL); WEFT_ENOMEM.
 * *out is NULL on failure.
 * Thread-safety: any thread. Blocking: never.
 * Ownership: the caller owns one reference to *out.
 */
WEFT_API weft_status_t weft_errgroup_create(weft_errgroup_t **out,
                                            const char *fmt, ...)
    WEFT__PRINTF(2, 3);

/**
 * Take another reference to g.
 * Returns: WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_errgroup_retain(weft_errgroup_t *g);

/**
 * Give up one reference; the last one frees g and releases its entries.
 * Returns: WEFT_OK; WEFT_EINVAL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_errgroup_release(weft_errgroup_t *g);

/**
 * Add error e with ordering key `key` (WEFT_ERRGROUP_APPEND: at the end).
 * The group takes its own reference to e.
 * Returns: WEFT_OK; WEFT_EINVAL (g or e NULL); WEFT_ESTATE (g is frozen:
 * it was added to another group); WEFT_ENOMEM (nothing added, e not
 * retained).
 * Thread-safety: the one thread building g. Blocking: never.
 */
WEFT_API weft_status_t weft_errgroup_add_error(weft_errgroup_t *g, uint64_t key,
                                               weft_error_t *e);

/**
 * Add group child as a nested entry with ordering key `key`. The parent
 * takes its own reference to child, and child becomes frozen.
 * Returns: WEFT_OK; WEFT_EINVAL (g or child NULL, or child == g);
 * WEFT_ESTATE (g is frozen); WEFT_ERANGE (the nesting would exceed
 * WEFT_ERRGROUP_MAX_DEPTH); WEFT_ENOMEM. On failure nothing is added,
 * child is not retained and not frozen.
 * Thread-safety: the one thread building g, after child's builder is done
 * with it. Blocking: never.
 */
WEFT_API weft_status_t weft_errgroup_add_group(weft_errgroup_t *g, uint64_t key,
                                               weft_errgroup_t *child);

/**
 * Message of g ("" when it has none).
 * Returns: a borrowed string valid while the caller holds a reference to
 * g; NULL for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API const char *weft_errgroup_message(const weft_errgroup_t *g);

/**
 * Number of direct entries (errors and nested groups).
 * Returns: the count; 0 for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API size_t weft_errgroup_count(const weft_errgroup_t *g);

/**
 * Number of errors in g and in all nested groups, in O(1).
 * Returns: the count; 0 for NULL.
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API size_t weft_errgroup_leaf_count(const weft_errgroup_t *g);

/**
 * Read entry `index` (0-based, in key order) into *out.
 * Returns: WEFT_OK; WEFT_EINVAL (g or out NULL); WEFT_ERANGE (index >=
 * count). The pointers in *out are borrowed: valid while the caller holds
 * a reference to g.
 * Thread-safety: any thread holding a reference, once g is shared
 * read-only. Blocking: never.
 */
WEFT_API weft_status_t weft_errgroup_entry(const weft_errgroup_t *g,
                                           size_t index,
                                           weft_errgroup_entry_t *out);

/**
 * Make a new group with g's message whose entries are all of g's errors,
 * depth-first in order, with no nesting. Their keys are their positions
 * (0, 1, ...). An empty g gives an empty group.
 * Returns: WEFT_OK and *out set; WEFT_EINVAL (g or out NULL);
 * WEFT_ENOMEM (*out NULL, nothing leaked).
 * Thread-safety: any thread holding a reference. Blocking: never.
 * Ownership: the caller owns one reference to *out; errors are shared.
 */
WEFT_API weft_status_t weft_errgroup_flatten(const weft_errgroup_t *g,
                                             weft_errgroup_t **out);

/**
 * Split g by pred into two new groups, as Python's ExceptionGroup.split():
 * *match holds the errors for which pred returns true, *rest the others.
 * Both keep g's shape: each nested group that keeps at least one error
 * appears as a new nested group with the same message and key, and the
 * errors keep their keys. A side with no error is NULL (so a group
 * with no errors gives NULL and NULL). pred runs exactly once per error,
 * depth-first in order, on the calling thread. Errors are not copied.
 * match or rest may be NULL when that side is not wanted.
 * Returns: WEFT_OK; WEFT_EINVAL (g or pred NULL, or both match and rest
 * NULL); WEFT_ENOMEM (both outputs NULL, nothing leaked).
 * Thread-safety: any thread holding a reference. Blocking: never.
 * Ownership: the caller owns one reference to each non-NULL result.
 */
WEFT_API weft_status_t weft_errgroup_split(const weft_errgroup_t *g,
                                           weft_error_pred_t pred, void *ctx,
                                           weft_errgroup_t **match,
                                           weft_errgroup_t **rest);

/**
 * The matching side of weft_errgroup_split() alone (Python's subgroup()).
 * *out is NULL when no error matches. Returns as weft_errgroup_split().
 */
WEFT_API weft_status_t weft_errgroup_subgroup(const weft_errgroup_t *g,
                                              weft_error_pred_t pred, void *ctx,
                                              weft_errgroup_t **out);

/**
 * First error of g (depth-first, in order) whose status code is `code`.
 * Only the errors in the group are compared, not their causes.
 * Returns: WEFT_OK and *out set to a borrowed pointer (valid while the
 * caller holds a reference to g); WEFT_ENOTFOUND (*out NULL);
 * WEFT_EINVAL (g or out NULL).
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API weft_status_t weft_errgroup_find(const weft_errgroup_t *g, int code,
                                          weft_error_t **out);

/**
 * First error of g, depth-first: for a gather, the earliest-spawned
 * failure. Returns as weft_errgroup_find() (WEFT_ENOTFOUND when g holds
 * no error at all).
 */
WEFT_API weft_status_t weft_errgroup_first_leaf(const weft_errgroup_t *g,
                                                weft_error_t **out);

/**
 * Write g as an indented tree into buf, with snprintf semantics (at most
 * n bytes including the NUL; returns the length the whole text needs).
 * Every line ends with '\n'. For a group "gather failed" holding an error
 * and a nested group "retries" of one error:
 *
 *   gather failed (2 errors)
 *   +-+---------------- 1 ----------------
 *     | WEFT_EUSER: B failed at step 4 [task B#3 at ex.c:10 (main)]
 *     +---------------- 2 ----------------
 *     | retries (1 error)
 *     +-+---------------- 1 ----------------
 *       | WEFT_ETIMEDOUT: deadline passed before the operation completed
 *       +------------------------------------
 *     +------------------------------------
 *
 * A group's header line is its message (or "error group") followed by
 * its leaf count; its entries follow numbered from 1 in key order, each
 * error on one line as weft_error_format() writes it; nested groups are
 * indented two more columns. An empty group is its header line alone.
 * Returns: the needed length; for NULL g the text is "(null)\n".
 * Thread-safety: any thread holding a reference. Blocking: never.
 */
WEFT_API size_t weft_errgroup_format(const weft_errgroup_t *g, char *buf,
                                     size_t n);

/**
 * Write weft_errgroup_format()'s text to fp (no allocation).
 * Returns: WEFT_OK; WEFT_EINVAL (g or fp NULL); WEFT_ESYS when writing
 * failed. Thread-safety: any thread holding a reference. Blocking: as the
 * stdio writes.
 */
WEFT_API weft_status_t weft_errgroup_print(const weft_errgroup_t *g, FILE *fp);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_ERRGROUP_H */
