/*
 * debug.h - internal assertions (header only).
 *
 * WEFT__ASSERT(cond) checks caller misuse and internal invariants in
 * builds with WEFT_DEBUG >= 1, independently of NDEBUG (CMake's release
 * build types define NDEBUG, which must not silence weft's debug build).
 * A failed assertion writes one line to stderr and aborts; this is the
 * only place the library prints, and only in debug builds.
 * WEFT__ASSERT_EXPENSIVE(cond) is for WEFT_DEBUG >= 2.
 */
#ifndef WEFT_PRIMITIVES_DEBUG_H
#define WEFT_PRIMITIVES_DEBUG_H

#include <stdio.h>
#include <stdlib.h>

#ifndef WEFT_DEBUG
#define WEFT_DEBUG 0
#endif

#if WEFT_DEBUG >= 1
#define WEFT__ASSERT(cond)                                                    \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "weft: assertion failed: %s (%s:%d)\n", #cond,    \
                    __FILE__, __LINE__);                                      \
            abort();                                                          \
        }                                                                     \
    } while (0)
#else
#define WEFT__ASSERT(cond) ((void)0)
#endif

#if WEFT_DEBUG >= 2
#define WEFT__ASSERT_EXPENSIVE(cond) WEFT__ASSERT(cond)
#else
#define WEFT__ASSERT_EXPENSIVE(cond) ((void)0)
#endif

#endif /* WEFT_PRIMITIVES_DEBUG_H */
