/*
 * errgroup.h - private side of <weft/errgroup.h>.
 *
 * How the executor builds the group of a gather or a task group:
 *
 *  - Make the group when the first child fails (weft_errgroup_create),
 *    then add each failed child's error with its spawn index as key
 *    (weft_errgroup_add_error(g, index, err)). Adds are not synchronized:
 *    do them under the gather's own lock, or after every child has ended.
 *    A child that is itself a gather contributes its group with
 *    weft_errgroup_add_group(g, index, child_group).
 *  - If the triggering failure must come first whatever its index
 *    (the fail-fast gather, docs/design.md 7), give it key 0 and the others
 *    index + 1: keys only have to sort, they need not be dense.
 *  - On WEFT_ENOMEM from an add, the group is unchanged; report the
 *    failure that could not be added some other way (for example make the
 *    gather fail with weft__error_enomem()).
 *  - Publish the finished group with the future's completion; after that
 *    nobody adds to it.
 */
#ifndef WEFT_PRIMITIVES_ERRGROUP_H
#define WEFT_PRIMITIVES_ERRGROUP_H

#include <stdbool.h>

#include <weft/errgroup.h>

/*
 * Nesting depth of g: 1 for a group without nested groups (also when
 * empty), 1 + the deepest nested group otherwise; 0 for NULL.
 * Thread-safety: as the other readers.
 */
unsigned int weft__errgroup_depth(const weft_errgroup_t *g);

/* True once g has been added to another group. */
bool weft__errgroup_is_frozen(const weft_errgroup_t *g);

#endif /* WEFT_PRIMITIVES_ERRGROUP_H */
