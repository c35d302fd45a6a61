/**
 * @file
 * weft.h - umbrella header of weft, a work-stealing executor for C11.
 *
 * Include this file only; it includes the module headers in include/weft/.
 * Each declaration there documents its return values, thread-safety,
 * blocking behaviour and pointer ownership: the headers are the reference.
 */
#ifndef WEFT_H
#define WEFT_H

#include <weft/status.h>
#include <weft/alloc.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/error.h>
#include <weft/errgroup.h>
#include <weft/cancel.h>
#include <weft/combine.h>
#include <weft/group.h>
#include <weft/frame.h>
#include <weft/trace.h>
#include <weft/debug.h>

/** Major version of these headers. */
#define WEFT_VERSION_MAJOR 0
/** Minor version of these headers (before 1.0, a new minor version may
 * change the API). */
#define WEFT_VERSION_MINOR 1
/** Patch version of these headers. */
#define WEFT_VERSION_PATCH 0

#endif /* WEFT_H */
