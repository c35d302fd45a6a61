/*
 * alloc.h - the one allocation entry point of weft's primitives (internal).
 *
 * Every heap allocation weft makes (errors, groups, tokens, deque buffers,
 * the executor, its pool slabs and its timer) goes through weft__alloc() /
 * weft__alloc_aligned() / weft__realloc() / weft__free(), so that a later
 * allocation hook (user-supplied allocators, fault injection in the
 * executor) has one place to attach to. Today they are malloc, realloc and
 * free plus two test aids:
 *
 *  - a fault injector, weft__alloc_set_fail_after(), which makes one
 *    chosen allocation fail so that every ENOMEM path can be tested by
 *    failing the k-th allocation of a scenario for each k in turn;
 *  - counters of live blocks and injected failures, so tests can assert
 *    that nothing leaked without relying on a sanitizer.
 *
 * The injector and the counters are process-wide. That is the one piece of
 * global mutable state in primitives/ and it exists for tests only: a
 * test that arms the injector must not run concurrently with other work
 * that allocates (Criterion runs each test in its own process).
 *
 * Cost: one relaxed load of the injector and one fetch-and-add on a shared
 * counter per call. The executor keeps malloc off its spawn fast path
 * (DESIGN.md section 3, per-worker pools), so this is not a hot path.
 */
#ifndef WEFT_PRIMITIVES_ALLOC_H
#define WEFT_PRIMITIVES_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/*
 * Allocate n bytes (n == 0 is treated as 1, so that NULL always means
 * failure). Returns: the block, or NULL when out of memory or when the
 * injector fails this call. Thread-safety: any thread. Blocking: as malloc.
 */
void *weft__alloc(size_t n);

/*
 * Allocate n bytes aligned to align (a power of two, at most a page),
 * rounding n up to a multiple of align as aligned_alloc requires. Free
 * with weft__free(). Returns and thread-safety as weft__alloc().
 */
void *weft__alloc_aligned(size_t align, size_t n);

/*
 * Resize p to n bytes, as realloc (p == NULL allocates). Counts as one
 * allocation for the injector. On failure p is left untouched and still
 * owned by the caller. Thread-safety: any thread.
 */
void *weft__realloc(void *p, size_t n);

/* Free a block from weft__alloc() / weft__realloc(). NULL is a no-op. */
void weft__free(void *p);

/*
 * Arm the fault injector: the (n+1)-th allocation call from now (counting
 * weft__alloc() and weft__realloc() calls) fails, once; later calls
 * succeed again. n == 0 fails the very next call. n == -1 (any negative n)
 * disarms it.
 * Thread-safety: any thread, but see the file comment: tests only.
 */
void weft__alloc_set_fail_after(long n);

/*
 * Number of blocks allocated and not yet freed, process-wide.
 * Thread-safety: any thread; exact only when no other thread allocates.
 */
int64_t weft__alloc_live(void);

/*
 * Number of failures the injector has produced since the process started.
 * A test compares it before and after a scenario to learn whether the
 * scenario reached the armed allocation at all (and so when to stop
 * raising k).
 */
uint64_t weft__alloc_failures(void);

#endif /* WEFT_PRIMITIVES_ALLOC_H */
