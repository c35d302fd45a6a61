/*
 * debug.h - debug mode: the registry of live futures and groups, the
 * end-of-life report and the task-tree dump (internal; API in
 * include/weft/debug.h).
 *
 * Hook points. Each is one call in the file named, and each costs nothing
 * (or one test of a bit the caller has at hand) while debug mode is off:
 *
 *   executor.c  weft__debug_init / _fini (create, free), weft__debug_
 *               destroying (destroy), weft__debug_pool_bypass (refill)
 *   executor.h  weft__debug_freed (the pool put, K_DEBUG objects only)
 *   future.c    weft__debug_track (spawn_slow, then, future_make),
 *               weft__debug_seen (wait, join_slow, outcome, status,
 *               value, error, submit_refused)
 *   group.c     weft__debug_track_group (create), weft__debug_adopt
 *               (spawn), weft__debug_group_unjoined (destroy)
 *   combine.c   weft__debug_track_combinator (the combined future)
 *
 * See debug.c for the design, the zero-cost argument and the invariants.
 */
#ifndef WEFT_EXECUTOR_DEBUG_H
#define WEFT_EXECUTOR_DEBUG_H

#include <weft/combine.h>
#include <weft/debug.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/group.h>

#include "executor/future.h"

struct weft__debug;     /* one per debug-mode executor (ex->debug) */
struct weft__debug_rec; /* one per tracked future or group */
struct weft__worker;

/* How weft__debug_track() records a new future. */
#define WEFT__DBG_DETACHED 0x1u     /* spawned with out == NULL */
#define WEFT__DBG_CONTINUATION 0x2u /* made by weft_future_then() */

/*
 * Make ex's registry when ex->cfg.debug_tasks or WEFT_DEBUG_TASKS asks for
 * one, and keep its workers' free lists empty from then on (see debug.c).
 * Call after the workers are set up, before their threads start.
 * Returns: WEFT_OK (also when debug mode is off); WEFT_ENOMEM.
 */
weft_status_t weft__debug_init(weft_executor_t *ex);

/* Free ex's registry and every entry left in it (exec_free). */
void weft__debug_fini(weft_executor_t *ex);

/*
 * weft_executor_destroy(), after the workers have exited: deliver the
 * report to the configured sink when it has an entry, then forget the
 * entries about released objects (they were delivered once).
 */
void weft__debug_destroying(weft_executor_t *ex);

/* Whether the pools of ex must bypass the per-worker free lists (debug
 * mode; see debug.c). Thread-safety: any thread; ex->debug is immutable
 * once the workers run. */
bool weft__debug_pool_bypass(const weft_executor_t *ex);

void weft__debug_track_slow(struct weft__debug *reg, struct weft_future *f,
                            const weft_spawn_opts_t *opts, unsigned int how);

/*
 * Record a task future that is still private to its maker (after its
 * fields are set, before it is queued or handed out): mark it K_DEBUG,
 * make its record (when memory allows) and link it under the task running
 * on this thread. reg is f->ex->debug (NULL: debug mode off, nothing
 * happens). opts may be NULL; how is WEFT__DBG_* bits.
 */
static inline void
weft__debug_track(struct weft__debug *reg, struct weft_future *f,
                  const weft_spawn_opts_t *opts, unsigned int how)
{
    if (__builtin_expect(reg != NULL, 0)) {
        weft__debug_track_slow(reg, f, opts, how);
    }
}

/*
 * Record a promise that is still private: a task group's (its token and
 * creation options) or a combinator's combined future. p may be NULL
 * (nothing happens); so may opts. Nothing happens when p's executor is not
 * in debug mode.
 */
void weft__debug_track_group(struct weft_future *p, weft_token_t *token,
                             const weft_group_opts_t *opts);
void weft__debug_track_combinator(struct weft_future *p,
                                  const weft_combine_opts_t *opts);

void weft__debug_seen_slow(struct weft_future *f);

/*
 * Somebody read f's outcome (waited for it, joined it, asked its status,
 * value or error): if f has ended, it is observed. Returns st, so a
 * wait can return through it. The caller holds a reference to f.
 */
static inline weft_status_t
weft__debug_seen(const struct weft_future *f, weft_status_t st)
{
    if (__builtin_expect((weft__future_kind(f) & WEFT__K_DEBUG) != 0, 0)) {
        weft__debug_seen_slow((struct weft_future *)f);
    }
    return st;
}

void weft__debug_adopt_slow(struct weft_future *child,
                            struct weft_future *group);

/* child (just made by weft__future_make()) belongs to the group whose
 * promise is group: list it under the group in the task tree. */
static inline void
weft__debug_adopt(struct weft_future *child, struct weft_future *group)
{
    if (__builtin_expect((weft__future_kind(child) & WEFT__K_DEBUG) != 0, 0)) {
        weft__debug_adopt_slow(child, group);
    }
}

void weft__debug_group_unjoined_slow(struct weft_future *group,
                                     weft_status_t st);

/* The group whose promise is group is being destroyed without having been
 * joined by its owner; st is the status of the join destroy made. */
static inline void
weft__debug_group_unjoined(struct weft_future *group, weft_status_t st)
{
    if (__builtin_expect((weft__future_kind(group) & WEFT__K_DEBUG) != 0, 0)) {
        weft__debug_group_unjoined_slow(group, st);
    }
}

/*
 * f (K_DEBUG) is being freed to a pool: it has ended (or was never
 * queued) and no handle is left. Its record leaves the live registry and
 * becomes an entry of the report when f was not observed. Called from the
 * pool put, before the cold fields are reset. Any thread.
 */
void weft__debug_freed(struct weft_future *f);

#endif /* WEFT_EXECUTOR_DEBUG_H */
