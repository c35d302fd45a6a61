/*
 * each.h - bulk gathers: weft_gather_each() and weft_gather_each_settled()
 * (internal).
 *
 * A bulk gather is a promise (executor/future.h) whose children are the
 * indices of one function. Its state is one block: a header, one piece
 * per worker, and a ledger of one 8-byte value and one status byte per
 * index. The pieces are tasks that run their index ranges and split them
 * lazily on frames; a watch on each piece counts the pieces that ended,
 * and the one that ends the last finalizes, as a combinator's last child
 * does (combine.h). each.c opens with the protocol and its invariants.
 *
 * combine.c's ledger accessors hand a bulk gather's combined future to
 * the functions below.
 */
#ifndef WEFT_EXECUTOR_EACH_H
#define WEFT_EXECUTOR_EACH_H

#include <stddef.h>

#include <weft/combine.h>

#include "executor/future.h"

struct weft__each;

/* The bulk-gather state of f, or NULL when f is not a bulk gather's
 * combined future. */
struct weft__each *weft__each_of(const weft_future_t *f);

/* The ledger accessors of include/weft/combine.h for bulk gather e,
 * whose combined future is f. Same returns. */
size_t weft__each_size(const struct weft__each *e);
weft_status_t weft__each_child(struct weft__each *e, const weft_future_t *f,
                               size_t index, weft_child_result_t *out);
weft_status_t weft__each_values(struct weft__each *e, const weft_future_t *f,
                                weft_value_t *out, size_t n);
weft_status_t weft__each_errors(struct weft__each *e, const weft_future_t *f,
                                weft_errgroup_t **out);
size_t weft__each_decider(struct weft__each *e);

#endif /* WEFT_EXECUTOR_EACH_H */
