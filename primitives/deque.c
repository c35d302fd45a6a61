/*
 * deque.c - cold paths of the Chase-Lev deque: init, grow, fini.
 *
 * DESIGN
 *
 * The deque is the one from Chase and Lev, "Dynamic Circular Work-Stealing
 * Deque", SPAA 2005, with the C11 orderings of Le, Pop, Cohen and Zappa
 * Nardelli, PPoPP 2013. Indices are signed 64-bit and never wrap in
 * practice (2^63 pushes). The owner works at `bottom`, thieves at `top`;
 * the live items are the slots [top, bottom).
 *
 * Correctness argument, in short:
 *
 *  - A push writes the slot, then store-releases bottom. A thief
 *    load-acquires bottom, so when it sees index b+1 it also sees slot b.
 *
 *  - A pop first decrements bottom with an exchange (store + full barrier),
 *    then reads top. A steal reads top, then (fence) bottom, then CASes top.
 *    If the owner's read of top and a thief's read of bottom could both be
 *    stale, both could take the same last item; the exchange in pop and the
 *    fence in steal make the two reads totally ordered, so at least one of
 *    them sees the other's write. When only one item is left (t == b) the
 *    owner also CASes top, so owner and thief settle the last item on the
 *    same word and exactly one wins.
 *
 *  - With two or more items (t < b after the owner's exchange), a thief
 *    can advance top at most to b (it reads bottom == b at best), so slot
 *    b is the owner's alone.
 *
 *  - The buffer grows only in push, by the owner, which copies [top,
 *    bottom) into a buffer of twice the size and store-releases the new
 *    buffer pointer. A thief that loaded the old pointer reads a slot of
 *    the old buffer: still valid, because index t < bottom was copied, not
 *    moved, and the old buffer is kept until weft__deque_fini().
 *
 * To summarize the invariants:
 *
 *  1. Every pushed item is taken exactly once: by the owner's pop or by
 *     exactly one thief's successful CAS on top.
 *  2. top never decreases; bottom changes only in the owner's thread.
 *  3. The owner writes a slot only at index bottom, which no thief can
 *     claim (thieves take t < bottom), and push grows the buffer before
 *     index bottom would alias a live index (bottom - top > mask).
 *  4. A retired buffer is never freed while the deque is live.
 *  5. The owner's only locked instructions are the exchange in pop (on a
 *     non-empty deque) and the CAS for the last item.
 */
#include "deque.h"

#include <stdlib.h>

#include "alloc.h"

static struct weft__deque_buf *
deque_buf_new(int64_t capacity)
{
    struct weft__deque_buf *a =
        WEFT__ALLOC(sizeof(*a) + (size_t)capacity * sizeof(void *));
    if (a == NULL) {
        return NULL;
    }
    a->mask = capacity - 1;
    a->retired_next = NULL;
    return a;
}

weft_status_t
weft__deque_init(struct weft__deque *dq, unsigned int log2_capacity)
{
    if (dq == NULL || log2_capacity < 1 || log2_capacity > 30) {
        return WEFT_EINVAL;
    }
    struct weft__deque_buf *a = deque_buf_new((int64_t)1 << log2_capacity);
    if (a == NULL) {
        return WEFT_ENOMEM;
    }
    /* Unpaired: initialization before the deque is shared. */
    weft__store_relaxed_i64(&dq->bottom, 0);
    weft__store_relaxed_i64(&dq->top, 0);
    dq->buf = a;
    dq->top_cache = 0;
    dq->retired = NULL;
    return WEFT_OK;
}

weft_status_t
weft__deque_grow(struct weft__deque *dq, int64_t bottom, int64_t top)
{
    struct weft__deque_buf *old = dq->buf;
    int64_t cap = (old->mask + 1) * 2;
    if (cap > ((int64_t)1 << 40)) {
        return WEFT_ENOMEM;
    }
    struct weft__deque_buf *a = deque_buf_new(cap);
    if (a == NULL) {
        return WEFT_ENOMEM;
    }
    for (int64_t i = top; i < bottom; i++) {
        /* Relaxed: copied before the release store of dq->buf below. */
        weft__store_relaxed_ptr(&a->slot[i & a->mask],
                                weft__load_relaxed_ptr(&old->slot[i & old->mask]));
    }
    /*
     * Publish the copy before the pointer.
     * Pairs with: weft__load_acq_ptr(&dq->buf) in weft__deque_steal().
     */
    weft__store_rel_ptr((void **)&dq->buf, a);
    old->retired_next = dq->retired;
    dq->retired = old;
    return WEFT_OK;
}

void
weft__deque_fini(struct weft__deque *dq)
{
    if (dq == NULL || dq->buf == NULL) {
        return;
    }
    struct weft__deque_buf *r = dq->retired;
    while (r != NULL) {
        struct weft__deque_buf *next = r->retired_next;
        weft__free(r);
        r = next;
    }
    weft__free(dq->buf);
    dq->buf = NULL;
    dq->retired = NULL;
}
