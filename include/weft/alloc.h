/**
 * @file
 * weft/alloc.h - where weft gets its memory.
 *
 * Every heap block weft allocates (executors, their task pools and deque
 * buffers, futures' slabs, errors, error groups, tokens, timers) comes from
 * one process-wide allocator, malloc and free by default.
 * weft_allocator_set() replaces it: with an arena, a tracking allocator, a
 * NUMA-aware one, or one that fails on purpose. Memory that libraries under
 * weft allocate for themselves (the C library's thread stacks, hwloc's
 * topology when workers are pinned) does not go through it.
 *
 * Rules:
 *
 *   - Set the allocator at start-up, before weft has allocated anything,
 *     or later only while nothing weft allocated is alive (no executor,
 *     future, token, error or error group exists). weft checks this: while
 *     any block from the current allocator is live, weft_allocator_set()
 *     returns WEFT_EBUSY and changes nothing, so a block is never freed by
 *     an allocator other than the one that made it.
 *   - weft_allocator_set() must not run concurrently with any other weft
 *     call, in any thread (the check above cannot see an allocation that
 *     another thread is making at the same instant). Calling it from
 *     main() before creating the first executor satisfies this.
 *   - The hooks must be thread-safe: worker threads call them
 *     concurrently. They must not call back into weft. They run on worker
 *     threads, but never on the spawn fast path (tasks come from
 *     per-worker pools), so a lock inside them costs little.
 *   - Returning NULL means out of memory: the weft call that needed the
 *     block fails with WEFT_ENOMEM and leaks nothing.
 */
#ifndef WEFT_ALLOC_H
#define WEFT_ALLOC_H

#include <stddef.h>

#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * An allocator: three hooks and the context pointer passed to each. All
 * three hooks are required.
 */
typedef struct weft_allocator {
    /**
     * Allocate size bytes (size > 0) aligned to align, a power of two:
     * alignof(max_align_t) for ordinary blocks, a cache line (64) or more
     * for blocks that must not share one; size is then a multiple of
     * align. Return the block, or NULL when out of memory.
     */
    void *(*alloc)(void *ctx, size_t size, size_t align);
    /**
     * Resize block p (never NULL) to size bytes (size > 0), as realloc():
     * return the moved or grown block, or NULL with p left untouched.
     * weft resizes only blocks it allocated with align ==
     * alignof(max_align_t), and the result needs that alignment only.
     */
    void *(*realloc)(void *ctx, void *p, size_t size);
    /** Free block p (never NULL), from alloc or realloc. */
    void (*free)(void *ctx, void *p);
    /** Passed to every hook; weft never dereferences it. */
    void *ctx;
} weft_allocator_t;

/**
 * Make a the allocator of every later weft allocation in this process.
 * a is copied; NULL restores the default (malloc, aligned_alloc, realloc
 * and free).
 * Returns: WEFT_OK; WEFT_EINVAL (a hook is NULL); WEFT_EBUSY (a block
 * from the current allocator is still live: some weft object exists;
 * nothing changed).
 * Thread-safety: not concurrently with any other weft call (see the file
 * comment). Blocking: never.
 * Ownership: the caller keeps ownership of a->ctx, which must stay valid
 * until the allocator is replaced and every block it made is freed.
 */
WEFT_API weft_status_t weft_allocator_set(const weft_allocator_t *a);

/**
 * Copy the current allocator into *out (the default one's hooks when none
 * was set), for example so that a tracking allocator can forward to it.
 * Returns: WEFT_OK; WEFT_EINVAL (out NULL).
 * Thread-safety: any thread, but not concurrently with
 * weft_allocator_set(). Blocking: never.
 */
WEFT_API weft_status_t weft_allocator_get(weft_allocator_t *out);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_ALLOC_H */
