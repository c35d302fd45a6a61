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
 *
 * The private part (deque.h): the owner's slots [bottom, head). Thieves
 * read only bottom, so these slots are the owner's alone, and the owner
 * pushes and pops them with plain accesses. Publishing raises bottom with
 * a release store, exactly as a public push does, so a thief that sees
 * the new bottom sees the slots under it (invariant 3 holds with head in
 * place of bottom: the owner writes only at index head >= bottom, and grow
 * copies [top, head)). The Chase-Lev pop runs only when head == bottom,
 * so the public protocol above is unchanged; it leaves head == bottom.
 *
 *  6. bottom <= head; [bottom, head) is never read by a thief.
 *  7. A thief asks for work with `want` (release store, only when clear);
 *     the owner clears it (relaxed) before it publishes (release store of
 *     bottom), so a request made after the thief saw the old bottom is
 *     either answered by this publish or left set for the next one.
 */
#include "deque.h"

#include <stdlib.h>

#include "alloc.h"

/* weft__deque_pop_near_batch(): how long the owner waits for a batch
 * thief to leave before it takes the top item instead (a pause each). */
#ifndef WEFT__DEQUE_NEAR_BATCH_SPINS
#define WEFT__DEQUE_NEAR_BATCH_SPINS 1024
#endif

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
    /* Unpaired: as above. Raised: the first private push is public. */
    weft__store_relaxed_u32(&dq->want, 1);
    /* Unpaired: as above; no thief is inside a batch steal yet. */
    weft__store_relaxed_u32(&dq->batchers, 0);
    dq->head = 0;
    dq->buf = a;
    dq->top_cache = 0;
    dq->push_limit = a->mask;
    dq->retired = NULL;
    return WEFT_OK;
}

weft_status_t
weft__deque_grow(struct weft__deque *dq, int64_t head, int64_t top)
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
    for (int64_t i = top; i < head; i++) {
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

static void
deque_publish_to(struct weft__deque *dq, int64_t nb)
{
    /*
     * Clear the request before the new bottom is visible: a thief that
     * read the old bottom and raises want again after this store keeps
     * its request for the next publish (invariant 7).
     * Relaxed: the release store of bottom below orders it first.
     */
    weft__store_relaxed_u32(&dq->want, 0);
    /*
     * Publish the slots under nb, written by this thread earlier.
     * Pairs with: weft__load_acq_i64(&dq->bottom) in weft__deque_steal().
     */
    weft__store_rel_i64(&dq->bottom, nb);
}

void
weft__deque_publish(struct weft__deque *dq)
{
    /* Unpaired: bottom is written only by this thread. */
    int64_t b = weft__load_relaxed_i64(&dq->bottom);
    int64_t h = dq->head;
    /*
     * Pairs with: the release store in weft__deque_request(): seeing the
     * request means seeing what the thief did before it (its sleeper
     * registration), so the caller's wake that follows finds it.
     */
    (void)weft__load_acq_u32(&dq->want);
    if (h == b) {
        /* Nothing private; leave the request for the next push. */
        return;
    }
    /* The older half, rounded up: the largest pieces of a fork tree. */
    deque_publish_to(dq, b + (h - b + 1) / 2);
}

void
weft__deque_publish_all(struct weft__deque *dq)
{
    /* Unpaired: bottom is written only by this thread. */
    if (dq->head != weft__load_relaxed_i64(&dq->bottom)) {
        deque_publish_to(dq, dq->head);
    }
}

void *
weft__deque_pop_near_batch(struct weft__deque *dq, int64_t b, int64_t t)
{
    /*
     * A batch thief announced itself and slot b is within its reach: it
     * may have read the old bottom and be about to claim [t, t + k).
     * A batch takes a few hundred nanoseconds: wait a little for the
     * count to drop, looking again at the count and then at top (still
     * after our exchange of bottom, so the test of the public pop holds
     * as it did there), and take slot b as usual once it is out of
     * reach. That keeps the owner's LIFO order, which a helping wait
     * needs: an older item may be an outer subtree, and running it
     * inline delays the wait (the failfast benchmark's waits went from
     * 40 us to 28 ms in a quarter of the runs when this path went
     * straight to the CAS below).
     */
    for (int i = 0; i < WEFT__DEQUE_NEAR_BATCH_SPINS; i++) {
        weft__cpu_relax();
        int64_t t2;
        bool clear = weft__deque_out_of_reach(dq, b, &t2);
        if (!clear && t2 >= b) {
            /* Thieves took the rest down to slot b: put bottom back
             * (relaxed, as below) and pop again from the start. */
            weft__store_relaxed_i64(&dq->bottom, b + 1);
            return weft__deque_pop_public(dq, b + 1);
        }
        if (clear) {
            struct weft__deque_buf *a = dq->buf;
            dq->top_cache = t2;
            dq->head = b;
            /* Relaxed: written by this thread. */
            return weft__load_relaxed_ptr(&a->slot[b & a->mask]);
        }
        t = t2;
    }
    /*
     * Still announced (a thief preempted inside its batch): take index t
     * by the thieves' own CAS instead. Once top moves, every pending CAS
     * from t fails, so nothing is taken twice, and a thief that reads
     * the new top then reads a bottom of at most b + 1. The owner gets
     * an older item than it asked for (FIFO). Relaxed slot: written by
     * this thread.
     */
    struct weft__deque_buf *a = dq->buf;
    void *item = weft__load_relaxed_ptr(&a->slot[t & a->mask]);
    /*
     * Claim index t. Pairs with: the CAS on top in weft__deque_steal()
     * and weft__deque_steal_batch(); exactly one of them succeeds.
     */
    bool won = weft__cas_i64(&dq->top, t, t + 1);
    dq->top_cache = t + 1;
    /*
     * Items stay public: put bottom back. Relaxed: thieves that read the
     * transient b only saw fewer items, as in weft__deque_pop_public().
     */
    weft__store_relaxed_i64(&dq->bottom, b + 1);
    dq->head = b + 1;
    /* A thief won index t: try again from the top of the pop. */
    return won ? item : weft__deque_pop_public(dq, b + 1);
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
