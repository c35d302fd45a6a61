/*
 * combine.h - combinator state shared by combine.c and group.c (internal).
 *
 * A combinator is a promise (executor/future.h) plus a ledger: the
 * children, one watch node per child, and the order in which children
 * ended. Each child's watch runs the combinator's rule inline on the
 * thread that ended the child; the thread whose watch ends the last child
 * finalizes: it settles the promise and builds the error group.
 *
 * Decisions. The outcome is decided at most once, by a CAS on `decided`
 * from NONE to BUSY; the winner writes decider/reason and then stores the
 * final kind with release. Readers that see BUSY wait for the store (a
 * few instructions). The finalizer closes an undecided combinator with
 * FINAL, so a caller's cancellation that comes later changes nothing.
 *
 * Lifetime. The state is reference-counted: one reference for the
 * promise (dropped when the promise object is freed), one for the
 * creating call, and one reserved for the finalizer. A watch touches the
 * state only before its faa on `ended`; the one that takes it to n
 * finalizes and then drops the finalizer's reference. So a child's end
 * costs the combinator one atomic (that faa) when the child succeeded.
 * The children are released when the state is freed, so the ledger can
 * be read as long as the combined future lives.
 */
#ifndef WEFT_EXECUTOR_COMBINE_H
#define WEFT_EXECUTOR_COMBINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/combine.h>

#include "executor/future.h"
#include "primitives/cancel.h"

/*
 * Ledger entry of future c, which was cancelled by us if its error is
 * `ours` (pointer identity: the reason we passed on is the error the
 * child ends with). Fills *out from an ended or pending child.
 */
void weft__child_result(struct weft_future *c, const weft_error_t *ours,
                        weft_child_result_t *out);

/*
 * Reason given to children cancelled because child `index` (named
 * `name`, may be NULL) failed with trigger: an error of code
 * WEFT_ECANCELED caused by trigger. Never NULL (the out-of-memory error
 * at worst). The caller owns it.
 */
weft_error_t *weft__sibling_reason(weft_error_t *trigger, size_t index,
                                   const char *name, const char *what);

/*
 * ---- Pieces shared with the bulk gathers (executor/each.c) ----------
 */

/* Values of a decision word (struct weft__decision.decided). */
enum {
    WEFT__D_NONE = 0,
    WEFT__D_BUSY = 1,    /* a decider is writing decider/reason */
    WEFT__D_TRIGGER = 2, /* a child's failure decided: the combinator fails */
    WEFT__D_WIN = 3,     /* a child (or k of them) decided success / the wait */
    WEFT__D_CANCEL = 4,  /* the caller cancelled (token, deadline, cancel()) */
    WEFT__D_FINAL = 5    /* closed undecided by the finalizer */
};

/*
 * The once-only decision of a combinator (see the file comment): a CAS on
 * decided from NONE to BUSY, the winner's fields, then a release store of
 * the kind. decider is the deciding child's index (UINT32_MAX: none);
 * reason (owned) is what the combinator cancels its children with.
 */
struct weft__decision {
    uint32_t decided; /* WEFT__D_*; CAS NONE -> BUSY, then release store */
    uint32_t decider;
    weft_error_t *reason;
};

/* Wait out a decider that is writing its fields; return the kind. */
uint32_t weft__decision_wait(struct weft__decision *d);

/*
 * Decide: kind WEFT__D_TRIGGER, _WIN, _CANCEL or _FINAL, by child `who`
 * (UINT32_MAX: none), with reason (owned; may be NULL). Returns false
 * (and releases reason) if already decided.
 */
bool weft__decision_take(struct weft__decision *d, uint32_t kind,
                         uint32_t who, weft_error_t *reason);

/* A new reference to e; the immortal "cancelled" error for NULL. */
weft_error_t *weft__error_retained(weft_error_t *e);

/*
 * The failure a combinator ends with when child `idx` decided it: for a
 * failure (failed true, status st), the child's own error e (retained)
 * and st (WEFT_EFAILED for a code out of contract); for a child cancelled
 * from elsewhere, a new WEFT_EFAILED error caused by its reason e, whose
 * message calls the child "<what> <idx>". Returns the status.
 */
weft_status_t weft__trigger_error(bool failed, weft_status_t st,
                                  weft_error_t *e, size_t idx,
                                  const char *what, weft_error_t **err);

/*
 * The error group of a combinator's failures, empty, with the message
 * every combinator uses ("<kind> <name>: F of N <what> failed, C
 * cancelled"). name may be NULL.
 */
weft_status_t weft__combine_errgroup(const char *kind, const char *name,
                                     size_t nfailed, size_t n,
                                     size_t ncancelled, const char *what,
                                     weft_errgroup_t **out);

/*
 * The token a combinator watches for the caller's cancellation: a child
 * of opts->token with opts->deadline_ns, armed on ex's deadline timer;
 * *out NULL when opts asks for neither, unless `always`.
 * Returns: WEFT_OK; WEFT_ENOMEM.
 */
weft_status_t weft__combine_token(weft_executor_t *ex,
                                  const weft_combine_opts_t *opts,
                                  bool always, weft_token_t **out);

#endif /* WEFT_EXECUTOR_COMBINE_H */
