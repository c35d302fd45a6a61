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

#endif /* WEFT_EXECUTOR_COMBINE_H */
