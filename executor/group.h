/*
 * group.h - task groups, retries, parallel-for/reduce (internal).
 *
 * A group is a token (children run under it), a promise that ends when
 * the group has drained, and a ledger of children, each with a watch. The
 * drain count `outstanding` is the number of accepted children that have
 * not ended, plus one while the group is open (before the join): it
 * reaches zero exactly once, and whoever takes it there settles the
 * promise. A spawn increments it with a CAS that refuses zero, so no child
 * is ever accepted after the group drained.
 *
 * The concurrency limit: children past the limit are made (not queued)
 * and wait in spawn order; each child's watch submits the next waiting
 * one. A waiting child of a cancelled group is still submitted and ends
 * CANCELLED without running, so each child ends exactly once.
 */
#ifndef WEFT_EXECUTOR_GROUP_H
#define WEFT_EXECUTOR_GROUP_H

#include <weft/group.h>

#include "executor/combine.h"

#endif /* WEFT_EXECUTOR_GROUP_H */
