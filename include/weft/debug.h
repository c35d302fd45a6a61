/**
 * @file
 * weft/debug.h - debug mode: the end-of-life report and the live task
 * tree.
 *
 * Debug mode is off by default. It is turned on per executor by
 * weft_executor_config_t.debug_tasks, or for every executor by the
 * environment variable WEFT_DEBUG_TASKS (any value but "" or "0"). While
 * it is on, the executor keeps a registry of its live futures (tasks,
 * continuations, combined futures) and task groups: their name, id,
 * spawn site (weft_spawn_opts_t.file/line/func, filled by
 * WEFT_SPAWN_SITE; weft_group_opts_t and weft_combine_opts_t have the
 * same fields), the task that was running on the spawning thread (the
 * parent), and their token.
 * While it is off, nothing is recorded and the spawn fast path runs
 * unchanged.
 *
 * **What is reported.** An entry is made for
 *
 *  - a future whose last handle was released, or that is still held, when
 *    it has ended and nobody waited for it (weft_future_wait(),
 *    weft_future_wait_until(), weft_future_wait_for() returning its
 *    status, weft_join()) or read its outcome, status, value or error:
 *    "not_awaited". A detached spawn (out == NULL) is not an entry unless
 *    it failed. A future handed to a combinator or group counts as
 *    observed by it (the combinator reads every child's outcome); its
 *    combined future must then be observed in turn;
 *  - a failed future (task, continuation or combined future) whose status
 *    or error nobody read: "error_not_observed", with the error's status
 *    and message, also for a detached spawn;
 *  - a group destroyed without weft_group_join(), or still alive and not
 *    joined: "group_not_joined".
 *
 * Each entry has the finding, the object's kind ("task", "continuation",
 * "combinator" or "group"), its id, name, spawn site (null when none was
 * given, and a "where" text that says so), its parent's id and its
 * outcome. Objects still alive are marked "alive": true; a future that has
 * not ended yet is never an entry.
 *
 * **Where it goes.** The library never prints on its own. At
 * weft_executor_destroy() the report, when it has an entry, goes to
 * weft_executor_config_t.on_debug_report; when there is no callback and
 * debug mode came from WEFT_DEBUG_TASKS, it goes to stderr. It can also be
 * read at any time with weft_executor_debug_report().
 *
 * **Cost.** Off: none on the spawn and join fast paths (a debug-mode
 * executor keeps its workers' free lists empty, so its spawns all take the
 * slow path; the executor without debug mode never looks), one test of a
 * bit on the wait and inspection calls. On: a mutex and one allocation per
 * spawn, and every spawn and join takes its slow path.
 */
#ifndef WEFT_DEBUG_H
#define WEFT_DEBUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <weft/executor.h>
#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Entry counts of a debug-mode report; see weft_executor_debug_report(). */
typedef struct weft_debug_summary {
    size_t not_awaited;         /**< futures ended but never awaited */
    size_t errors_not_observed; /**< failures whose error nobody read */
    size_t groups_not_joined;   /**< groups never joined */
    size_t alive;               /**< of the entries above, those whose
                                     object is still alive (not released
                                     or not destroyed yet) */
    size_t untracked;           /**< futures and groups the registry could
                                     not record (out of memory); they ran
                                     as usual */
    size_t omitted;             /**< entries dropped because the report
                                     already held its maximum (4096) */
} weft_debug_summary_t;

/**
 * Whether ex runs in debug mode (weft_executor_config_t.debug_tasks or
 * WEFT_DEBUG_TASKS). False for NULL.
 * Thread-safety: any thread. Blocking: never.
 */
WEFT_API bool weft_executor_is_debugging(const weft_executor_t *ex);

/**
 * The debug-mode report of ex as it stands now: entries for the objects
 * already released (since the executor was created, less those a
 * weft_executor_destroy() call already delivered) and for the live ones
 * that would be entries if they were released now (see the file comment).
 * Writes one JSON object to out (may be NULL) and fills *summary (may be
 * NULL) with the counts. Call it after weft_executor_shutdown() for the
 * final picture: before, tasks still running are not entries yet.
 * The JSON object has the members "entries" (an array; each entry has
 * "finding", "kind", "id", "name", "site" ({"file", "line", "func"} or
 * null), "where", "parent", "outcome", "alive" and, for failures,
 * "error" ({"status", "message"})) and "summary" (the counts).
 * Returns: WEFT_OK; WEFT_EINVAL (ex NULL, or out and summary both NULL);
 * WEFT_ENOTSUP (debug mode is off for ex: no registry exists);
 * WEFT_ESYS (writing to out failed; *summary is still filled).
 * Thread-safety: any thread, while tasks run; entries about live objects
 * are a racy snapshot. Blocking: holds the registry's mutex while it
 * writes to out, so the executor's spawns wait for a slow stream.
 * Ownership: out stays the caller's; nothing is retained.
 */
WEFT_API weft_status_t weft_executor_debug_report(
    weft_executor_t *ex, FILE *out, weft_debug_summary_t *summary);

/**
 * Write ex's live task tree to out as one JSON object: "tasks" is an array
 * of the roots, each a node with "id", "kind" ("task", "continuation",
 * "combinator" or "group"), "name", "state" ("queued": not started,
 * "running", "pending": a combined future or group not settled yet,
 * "succeeded", "failed", "cancelled"), "site" (or null), "parent" (the id
 * of the task that was running on the spawning thread, or null), "token"
 * ({"state": "none" | "active" | "expired" (its deadline passed, not yet
 * observed) | "cancelled", plus "reason" {"status", "message"} when
 * cancelled}), "error" for a failed one, and "children" (nodes spawned
 * while it ran, or made in a group, in spawn order). A node whose parent
 * is gone is listed as a root and keeps its "parent" id. Live means: not
 * yet freed, so ended futures still held appear with their outcome.
 * Returns: WEFT_OK; WEFT_EINVAL (NULL argument); WEFT_ENOTSUP (debug mode
 * is off for ex); WEFT_ESYS (writing to out failed).
 * Thread-safety: any thread, while tasks run (also from inside a task).
 * The states are a racy snapshot: each node is read once, and tasks go on
 * running meanwhile. Blocking: holds the registry's mutex while it writes
 * (no allocation), so the executor's spawns wait for a slow stream.
 * Ownership: out stays the caller's.
 */
WEFT_API weft_status_t weft_executor_dump_tasks(weft_executor_t *ex, FILE *out);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_DEBUG_H */
