/*
 * deque.h - Chase-Lev work-stealing deque of pointers (internal).
 *
 * One owner thread pushes and pops at the bottom; any number of thieves
 * take from the top with a CAS. The buffer is circular and grows by
 * doubling; a retired buffer is kept until the deque is finalized, because
 * a thief may still be reading a slot of it (the retired buffers together
 * are smaller than the live one, so this at most doubles the footprint).
 *
 * The push/pop/steal fast paths are inline here because they are the
 * executor's per-task cost; the cold paths live in deque.c, whose opening
 * comment holds the correctness argument and its invariants.
 *
 * The owner may also keep a private region at the bottom (Lace's split
 * deque, van Dijk and van de Pol, Euro-Par 2014, on a Chase-Lev deque):
 * items in [bottom, head) were pushed with weft__deque_try_push_private()
 * and are invisible to thieves, so the owner pushes and pops them with
 * plain loads and stores, no locked instruction. A thief that finds the
 * public part empty raises `want`; the owner, at its next private push,
 * publishes the older half of its private items with one release store of
 * bottom (weft__deque_publish()). The public part [top, bottom) is the
 * Chase-Lev deque below, unchanged; a public push (weft__deque_try_push())
 * publishes every private item under it too.
 *
 * Orderings follow Le, Pop, Cohen and Zappa Nardelli, "Correct and
 * Efficient Work-Stealing for Weak Memory Models", PPoPP 2013, figure 1,
 * with one substitution: the owner's "store bottom; seq_cst fence" in take()
 * is a single exchange (weft__fas_i64, a lock-prefixed xchg on x86) because
 * a stand-alone mfence costs about 6x more here (see atomics.h).
 * docs/memory-model.md has the owner/thief step table.
 */
#ifndef WEFT_PRIMITIVES_DEQUE_H
#define WEFT_PRIMITIVES_DEQUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/status.h>

#include "atomics.h"

struct weft__deque_buf {
    int64_t mask;                        /* capacity - 1; immutable */
    struct weft__deque_buf *retired_next; /* owner only: retired list */
    void *slot[];                        /* relaxed atomic accesses */
};

struct weft__deque {
    /* Owner's cache line: written by the owner, read by thieves. */
    int64_t bottom;              /* end of the public part; owner stores,
                                    thieves load-acquire */
    struct weft__deque_buf *buf; /* owner store-releases on grow;
                                    thieves load-acquire */
    int64_t top_cache;           /* owner only: a lower bound of top */
    struct weft__deque_buf *retired; /* owner only */
    int64_t head;                /* owner only: end of the private part;
                                    bottom <= head */
    int64_t push_limit;          /* owner only: a push at an index above
                                    it may find the buffer full; a past
                                    top_cache + buf->mask, so at most the
                                    true bound (see weft__deque_make_room) */
    char pad0[WEFT__CACHELINE - 4 * sizeof(int64_t) - 2 * sizeof(void *)];
    /* Thieves' cache line. */
    int64_t top; /* CAS by thieves, and by the owner for the last item */
    uint32_t want; /* a thief found the public part empty: publish */
    uint32_t batchers; /* thieves inside a batch steal (faa +1, -1) */
    char pad1[WEFT__CACHELINE - sizeof(int64_t) - 2 * sizeof(uint32_t)];
};

/*
 * Batch steals. A thief that finds n >= WEFT__STEAL_BATCH_MIN public
 * items takes min(n / 2, WEFT__STEAL_BATCH_MAX) of the oldest with one
 * CAS of top (weft__deque_steal_batch()), so that a flat fan-out of fine
 * tasks costs its thieves one CAS and one look at bottom per batch
 * instead of per task. A batch thief may hold a stale bottom while the owner pops
 * below it, so the owner's pop and unpublish keep a margin from top of
 * WEFT__STEAL_BATCH_MAX items instead of one while any thief is inside
 * a batch (the `batchers` count, on the thieves' line the owner reads
 * anyway). memory-model.md 1.7 has the argument. The model checker
 * builds with a margin of 2 (tests/model).
 *
 * 32, not the first version's 8 (session 13, 2-core VM, interleaved, 18
 * runs each, 8 / 32 / 64): fanout at 2 workers 111.9 / 109.3 / 108.2 ms,
 * fanout_empty 64.7 / 41.9 / 39.2 ns per task, gather_empty 68.9 / 59.9
 * / 57.5 ns; uts, cancel and failfast unchanged. Each batch costs both
 * sides a few transfers of the deque's two lines, which that VM makes
 * slow (a round trip of 0.5 to 1 us). 64 gained little more and keeps a
 * margin as wide as the batch threshold; 16 cores were not re-measured.
 */
#ifndef WEFT__STEAL_BATCH_MAX
#define WEFT__STEAL_BATCH_MAX 32
#endif

/*
 * A batch only from a deque with at least this many public items: a flat
 * fan-out's. A recursive task's deque holds a few siblings per level, and
 * its oldest items are its biggest subtrees. At 16 workers, batches from
 * 16 items held the failfast benchmark's first failure for 2 to 5 ms
 * (median; 0.6 ms with single steals, p90 up to 15 ms at 4 workers): most
 * likely a helping wait on the failure's way to the root stole one of
 * those subtrees and could not return before it ended. A thief's own
 * waits leaving its batch alone did not help; this threshold did (64
 * and 128 measured the same). The failfast tree's deques hold about 45
 * items; fanout, fanout_empty, gather_empty, cancel and uts (8000
 * children at its root) keep their batches. docs/design.md 3.2.
 */
#ifndef WEFT__STEAL_BATCH_MIN
#define WEFT__STEAL_BATCH_MIN 64
#endif

/* Result of weft__deque_steal(). */
enum weft__steal {
    WEFT__STEAL_EMPTY = 0, /* nothing to take */
    WEFT__STEAL_OK = 1,    /* *out holds the item */
    WEFT__STEAL_RETRY = 2  /* lost a race with another thief or the owner */
};

/*
 * Initialize with a capacity of 2^log2_capacity slots (1..30).
 * Returns: WEFT_OK, WEFT_EINVAL for a bad capacity or NULL dq, WEFT_ENOMEM.
 * Thread-safety: before the deque is shared.
 */
weft_status_t weft__deque_init(struct weft__deque *dq,
                               unsigned int log2_capacity);

/*
 * Free the live and retired buffers. Items still inside are not touched.
 * Thread-safety: after every thief has stopped using the deque.
 */
void weft__deque_fini(struct weft__deque *dq);

/* Cold path of push: double the buffer, copying [top, head). Owner
 * only. */
weft_status_t weft__deque_grow(struct weft__deque *dq, int64_t head,
                               int64_t top);

/*
 * Make the older half (rounded up) of the private items public and clear
 * `want`. Owner only. Never blocks; no locked instruction.
 */
void weft__deque_publish(struct weft__deque *dq);

/* Make every private item public. Owner only. */
void weft__deque_publish_all(struct weft__deque *dq);

/*
 * Number of public items, as seen now; exact only for the owner with no
 * thief running. Any thread; a hint. Private items are not counted.
 */
static inline int64_t
weft__deque_size_hint(const struct weft__deque *dq)
{
    /* Relaxed: a hint; callers re-check with pop or steal. */
    int64_t b = weft__load_relaxed_i64(&dq->bottom);
    int64_t t = weft__load_relaxed_i64(&dq->top);
    return b > t ? b - t : 0;
}

/*
 * Push at the bottom if the buffer has room. Owner only.
 * Returns: true when pushed; false when the buffer is full (nothing was
 * pushed; call weft__deque_push(), which grows it). Never blocks, never
 * allocates: this is the executor's spawn fast path.
 */
static inline bool
weft__deque_try_push(struct weft__deque *dq, void *item)
{
    /* head and buf are written only by this thread. */
    int64_t b = dq->head;
    struct weft__deque_buf *a = dq->buf;
    if (__builtin_expect(b > dq->push_limit, 0)) {
        return false;
    }
    /* Relaxed: published by the release store of bottom just below. */
    weft__store_relaxed_ptr(&a->slot[b & a->mask], item);
    dq->head = b + 1;
    /*
     * Publish the item (and any private items under it): the slots must
     * be visible before the new bottom.
     * Pairs with: weft__load_acq_i64(&dq->bottom) in weft__deque_steal().
     */
    weft__store_rel_i64(&dq->bottom, b + 1);
    return true;
}

/*
 * Push at the bottom of the private part if the buffer has room. Owner
 * only. The item stays invisible to thieves until a publish; call
 * weft__deque_should_publish() after the push. Returns false when the
 * buffer is full (nothing was pushed; weft__deque_push_private() grows
 * it). Never blocks, never allocates, no atomic read-modify-write.
 */
static inline bool
weft__deque_try_push_private(struct weft__deque *dq, void *item)
{
    int64_t h = dq->head;
    struct weft__deque_buf *a = dq->buf;
    if (__builtin_expect(h > dq->push_limit, 0)) {
        return false;
    }
    /*
     * Relaxed: no thief reads index h until a publish moves bottom past
     * it with a release store (weft__deque_publish()).
     */
    weft__store_relaxed_ptr(&a->slot[h & a->mask], item);
    dq->head = h + 1;
    return true;
}

/*
 * Whether the owner should publish now: a thief asked, or the owner
 * itself found its public part empty (it raises want in
 * weft__deque_pop_public() when it takes or loses the last public item,
 * and weft__deque_init() starts with it raised), so that the first fork
 * after that is stealable at once. Owner only.
 */
static inline bool
weft__deque_should_publish(const struct weft__deque *dq)
{
    /*
     * Relaxed: a hint, polled at every private push; weft__deque_publish()
     * re-reads it with acquire.
     */
    return weft__load_relaxed_u32(&dq->want) != 0;
}

/*
 * Ask the owner of dq to publish private items. Thieves only (any thread
 * but the owner), after finding the public part empty. A store only when
 * the flag is clear, so idle thieves polling a victim do not keep
 * invalidating the owner's copy of the line.
 */
static inline void
weft__deque_request(struct weft__deque *dq)
{
    /* Relaxed: a check before the store below. */
    if (weft__load_relaxed_u32(&dq->want) == 0) {
        /*
         * Release: a parking thief registered as a sleeper before this
         * store, so an owner that sees it also sees the registration.
         * Pairs with: the acquire load of want in weft__deque_publish().
         */
        weft__store_rel_u32(&dq->want, 1);
    }
}

/*
 * Cold path of both pushes: the buffer looked full by top_cache. Refresh
 * top_cache and grow when the buffer really is full. Owner only.
 * Returns: WEFT_OK (there is room now) or WEFT_ENOMEM.
 */
static inline weft_status_t
weft__deque_make_room(struct weft__deque *dq)
{
    int64_t h = dq->head;
    /*
     * Pairs with: the CAS on top in weft__deque_steal(); a fresh top
     * tells whether the buffer is really full.
     */
    dq->top_cache = weft__load_acq_i64(&dq->top);
    weft_status_t st = WEFT_OK;
    if (h - dq->top_cache > dq->buf->mask) {
        st = weft__deque_grow(dq, h, dq->top_cache);
    }
    /*
     * The pushes test h > push_limit only. top never decreases and buf
     * only grows, so a limit made of a past top_cache and the current
     * mask never exceeds the true bound: pop_public() may refresh
     * top_cache without touching it (a stale limit costs one more trip
     * here, never an overwrite).
     */
    dq->push_limit = dq->top_cache + dq->buf->mask;
    return st;
}

/*
 * Push at the bottom, growing the buffer when it is full. Owner only.
 * Returns: WEFT_OK, or WEFT_ENOMEM when the buffer had to grow and could
 * not (the item was not pushed). Never blocks.
 */
static inline weft_status_t
weft__deque_push(struct weft__deque *dq, void *item)
{
    if (__builtin_expect(weft__deque_try_push(dq, item), 1)) {
        return WEFT_OK;
    }
    weft_status_t st = weft__deque_make_room(dq);
    if (st == WEFT_OK) {
        (void)weft__deque_try_push(dq, item);
    }
    return st;
}

/*
 * Private push, growing the buffer when it is full. Owner only.
 * Returns: WEFT_OK, or WEFT_ENOMEM (the item was not pushed).
 */
static inline weft_status_t
weft__deque_push_private(struct weft__deque *dq, void *item)
{
    if (__builtin_expect(weft__deque_try_push_private(dq, item), 1)) {
        return WEFT_OK;
    }
    weft_status_t st = weft__deque_make_room(dq);
    if (st == WEFT_OK) {
        (void)weft__deque_try_push_private(dq, item);
    }
    return st;
}

/*
 * Whether no thief can reach index i, for the owner after its exchange of
 * bottom reserved [i, ...) (and the fence after it); *t gets the value of
 * top it read. A single steal reaches only index top; a batch thief, if
 * one is announced, may hold the old bottom and reach fewer than
 * WEFT__STEAL_BATCH_MAX items from top.
 */
static inline bool
weft__deque_out_of_reach(struct weft__deque *dq, int64_t i, int64_t *t)
{
    /*
     * Before the look at top: a batch thief that left before this load
     * took its CAS with it.
     * Pairs with: the faa(+1) in weft__deque_steal_batch() (one of the
     * two sees the other: each is ordered after a locked instruction)
     * and its release faa(-1) after its CAS.
     */
    uint32_t batchers = weft__load_acq_u32(&dq->batchers);
    /* Ordered after the exchange (see weft__deque_pop_public()) and the
     * acquire load above. */
    *t = weft__load_relaxed_i64(&dq->top);
    return *t < i && (batchers == 0 || *t + WEFT__STEAL_BATCH_MAX <= i);
}

/*
 * Cold path of the public pop: bottom is already b (reserved), top read
 * t < b, and an announced batch thief may reach slot b. Waits a moment
 * for it to leave and then takes slot b; if it stays (preempted), takes
 * index t by CAS instead and puts bottom back. Owner only. deque.c.
 */
void *weft__deque_pop_near_batch(struct weft__deque *dq, int64_t b, int64_t t);

/*
 * Pop from the bottom of the public part (Chase-Lev), given the value of
 * bottom the owner just read (the owner is its only writer, so it cannot
 * be stale). Owner only, and only with no private item (head == bottom).
 * Returns: the item (the newest; the oldest when a batch thief stays
 * announced within reach of the newest), or NULL when the deque is empty
 * or a thief took the last item. Never blocks (near an announced batch
 * it waits a bounded moment); one locked instruction (xchg) per call on
 * a non-empty deque, a second one (CAS) for the last item.
 */
static inline void *
weft__deque_pop_public(struct weft__deque *dq, int64_t bottom)
{
    int64_t b = bottom - 1;
    struct weft__deque_buf *a = dq->buf;

    /*
     * top never decreases and top_cache is a value top once had, so
     * b < top_cache proves the deque empty without the exchange below.
     */
    if (b < dq->top_cache) {
        return NULL;
    }
    /*
     * Reserve slot b before looking at top: the store of bottom must be
     * globally visible before the load of top, or a thief and the owner
     * could both take the last item. The exchange is the store->load
     * barrier (an xchg, 2.7 ns, instead of store + mfence, 17 ns).
     * Pairs with: weft__fence_sc_loads() in weft__deque_steal(), between
     * its load of top and its load of bottom.
     */
    (void)weft__fas_i64(&dq->bottom, b);
    /*
     * Free on x86 (the xchg is a full barrier); a real fence where an
     * exchange does not order a later load (AArch64, POWER).
     * Pairs with: the same counterpart as the exchange above.
     */
    weft__fence_rmw_load();
    int64_t t;
    if (__builtin_expect(weft__deque_out_of_reach(dq, b, &t), 1)) {
        /* More than one item, and no thief can reach slot b. */
        dq->top_cache = t;
        dq->head = b;
        return weft__load_relaxed_ptr(&a->slot[b & a->mask]);
    }
    if (t < b) {
        /* Within an announced batch's reach. */
        return weft__deque_pop_near_batch(dq, b, t);
    }
    void *item = NULL;
    if (t == b) {
        /* The last item: race the thieves for it on top. */
        item = weft__load_relaxed_ptr(&a->slot[b & a->mask]);
        /*
         * Claim the last item. Pairs with: the CAS on top in
         * weft__deque_steal() and weft__deque_steal_batch(); exactly one
         * succeeds.
         */
        if (!weft__cas_i64(&dq->top, t, t + 1)) {
            item = NULL;
        }
        dq->top_cache = t + 1;
    }
    /*
     * Empty (or the last item is settled): restore bottom = top.
     * Relaxed: thieves that read the transient b see t >= b and back off;
     * this store only has to become visible eventually.
     */
    weft__store_relaxed_i64(&dq->bottom, b + 1);
    dq->head = b + 1;
    /*
     * The public part is empty now: make the next private push public.
     * Relaxed: the owner's own hint (see weft__deque_should_publish()).
     */
    weft__store_relaxed_u32(&dq->want, 1);
    return item;
}

/*
 * Pop from the bottom (LIFO), given head as the owner just read it: a
 * private item with plain loads and stores, else the public pop above.
 * Owner only. Returns the item or NULL (empty, or a thief took the last
 * public item).
 */
static inline void *
weft__deque_pop_known(struct weft__deque *dq, int64_t head)
{
    /* Unpaired: bottom is written only by this thread. */
    if (head > weft__load_relaxed_i64(&dq->bottom)) {
        /* A private item: no thief can see index head - 1. */
        struct weft__deque_buf *a = dq->buf;
        dq->head = head - 1;
        /* Relaxed: written by this thread. */
        return weft__load_relaxed_ptr(&a->slot[(head - 1) & a->mask]);
    }
    return weft__deque_pop_public(dq, head);
}

/* Pop from the bottom (LIFO). Owner only. See weft__deque_pop_known(). */
static inline void *
weft__deque_pop(struct weft__deque *dq)
{
    return weft__deque_pop_known(dq, dq->head);
}

/*
 * Take back the newest k public items into the private part, when at
 * least one public item would be left above them: the owner then pops
 * them with plain loads and stores (weft__deque_pop_known()), no locked
 * instruction each, and thieves no longer see them until a publish.
 * Owner only. Returns k when done, 0 when the public part was too small
 * by top_cache or a thief was seen at the items (nothing changes then).
 * One locked instruction (xchg) per call.
 *
 * The protocol is the public pop's with k slots instead of one: reserve
 * [b - k, b) by storing bottom = b - k before looking at top; a thief
 * that claims an index at or above b - k must have read a top at or
 * above it, after the owner's look at top in the total order, and so
 * reads the new bottom and finds nothing. When top < b - k no thief can
 * reach the k slots; otherwise some thief may, and bottom goes back.
 */
static inline int64_t
weft__deque_unpublish(struct weft__deque *dq, int64_t k)
{
    /* Unpaired: bottom is written only by this thread. */
    int64_t b = weft__load_relaxed_i64(&dq->bottom);
    int64_t nb = b - k;
    if (k <= 0 || nb <= dq->top_cache) {
        return 0;
    }
    /*
     * Reserve the k slots before looking at top, as in the public pop.
     * Pairs with: weft__fence_sc_loads() in weft__deque_steal(), between
     * its load of top and its load of bottom.
     */
    (void)weft__fas_i64(&dq->bottom, nb);
    /*
     * Free on x86 (the xchg is a full barrier); a real fence elsewhere.
     * Pairs with: the same counterpart as the exchange above.
     */
    weft__fence_rmw_load();
    int64_t t;
    bool clear = weft__deque_out_of_reach(dq, nb, &t);
    dq->top_cache = t;
    if (clear) {
        /* [nb, head) is private now; head is unchanged. */
        return k;
    }
    /*
     * A thief may hold an index in [nb, b): give the slots back, as the
     * public pop restores bottom. Relaxed: thieves that read the
     * transient nb only saw fewer items.
     */
    weft__store_relaxed_i64(&dq->bottom, b);
    return 0;
}

/* Items the owner holds privately (head - bottom). Owner only. */
static inline int64_t
weft__deque_private_count(const struct weft__deque *dq)
{
    /* Unpaired: bottom is written only by this thread. */
    return dq->head - weft__load_relaxed_i64(&dq->bottom);
}

/*
 * Steal from the top (FIFO). Any thread but the owner.
 * Returns: WEFT__STEAL_OK with *out set, WEFT__STEAL_EMPTY, or
 * WEFT__STEAL_RETRY when a concurrent pop or steal won the race. Never
 * blocks; one CAS when the deque is not empty.
 */
static inline enum weft__steal
weft__deque_steal(struct weft__deque *dq, void **out)
{
    /* Pairs with: the CAS on top by other thieves and the owner. */
    int64_t t = weft__load_acq_i64(&dq->top);
    /*
     * Load top before bottom, totally ordered with the owner's
     * exchange of bottom.
     * Pairs with: weft__fas_i64(&dq->bottom) in weft__deque_pop().
     */
    weft__fence_sc_loads();
    /* Pairs with: weft__store_rel_i64(&dq->bottom) in weft__deque_push(). */
    int64_t b = weft__load_acq_i64(&dq->bottom);
    if (t >= b) {
        return WEFT__STEAL_EMPTY;
    }
    /* Pairs with: weft__store_rel_ptr(&dq->buf) in weft__deque_grow(). */
    struct weft__deque_buf *a =
        weft__load_acq_ptr((void *const *)&dq->buf);
    /* Relaxed: the acquire load of bottom above ordered it after push. */
    void *item = weft__load_relaxed_ptr(&a->slot[t & a->mask]);
    /*
     * Claim slot t. Pairs with: the CAS on top in weft__deque_pop() and
     * in other thieves; the loser returns RETRY and drops item unread.
     */
    if (!weft__cas_i64(&dq->top, t, t + 1)) {
        return WEFT__STEAL_RETRY;
    }
    *out = item;
    return WEFT__STEAL_OK;
}

/*
 * Steal up to cap items from the top (FIFO), the oldest first in out[]:
 * min(n / 2, cap, WEFT__STEAL_BATCH_MAX) of the n public items when n >=
 * WEFT__STEAL_BATCH_MIN and cap >= 2, else one (weft__deque_steal()).
 * Any thread but the owner.
 * Returns: WEFT__STEAL_OK with *taken >= 1 items in out[0..*taken),
 * WEFT__STEAL_EMPTY, or WEFT__STEAL_RETRY when a concurrent pop or steal
 * won the race (nothing in out[] is the caller's). Never blocks; a batch costs
 * three locked instructions on the thieves' line (the announce, the CAS,
 * the leave), a single steal one.
 */
static inline enum weft__steal
weft__deque_steal_batch(struct weft__deque *dq, void **out, int64_t cap,
                        int64_t *taken)
{
    if (cap > WEFT__STEAL_BATCH_MAX) {
        cap = WEFT__STEAL_BATCH_MAX;
    }
    /* Relaxed: a hint that picks the protocol; the steal re-reads both
     * (not read at all when the cap allows one item). */
    if (cap < 2 ||
        weft__load_relaxed_i64(&dq->bottom) - weft__load_relaxed_i64(&dq->top) <
            WEFT__STEAL_BATCH_MIN) {
        enum weft__steal r1 = weft__deque_steal(dq, out);
        *taken = r1 == WEFT__STEAL_OK;
        return r1;
    }
    /*
     * Announce the batch before looking at bottom, so that an owner
     * whose exchange of bottom we miss sees us and keeps its margin.
     * Pairs with: the acquire load of batchers after the exchange in
     * weft__deque_pop_public() and weft__deque_unpublish() (one of the
     * two sees the other: both are ordered after a locked instruction).
     */
    (void)weft__faa_u32(&dq->batchers, 1);
    /*
     * Free on x86; orders the announce before the loads below.
     * Pairs with: the same counterpart as the faa above.
     */
    weft__fence_rmw_load();
    /* Pairs with: the CAS on top by other thieves and the owner. */
    int64_t t = weft__load_acq_i64(&dq->top);
    /* Load top before bottom, as in weft__deque_steal(). Pairs with:
     * weft__fas_i64(&dq->bottom) in weft__deque_pop_public(). */
    weft__fence_sc_loads();
    /* Pairs with: weft__store_rel_i64(&dq->bottom) in the pushes and
     * publishes. */
    int64_t b = weft__load_acq_i64(&dq->bottom);
    enum weft__steal r = WEFT__STEAL_EMPTY;
    int64_t k = (b - t) / 2;
    if (k > cap) {
        k = cap;
    }
    if (k < 1) {
        k = b > t ? 1 : 0;
    }
    if (k > 0) {
        /* Pairs with: weft__store_rel_ptr(&dq->buf) in
         * weft__deque_grow(). */
        struct weft__deque_buf *a = weft__load_acq_ptr((void *const *)&dq->buf);
        for (int64_t i = 0; i < k; i++) {
            /* Relaxed: the acquire load of bottom ordered it after the
             * push; the CAS below proves nobody took it meanwhile. */
            out[i] = weft__load_relaxed_ptr(&a->slot[(t + i) & a->mask]);
        }
        /*
         * Claim [t, t + k). Pairs with: the CAS on top in the pops and
         * in other thieves; the owner keeps its margin (see above) while
         * we are announced, so it takes no index in the range unless by
         * this same CAS on top.
         */
        r = weft__cas_i64(&dq->top, t, t + k) ? WEFT__STEAL_OK
                                              : WEFT__STEAL_RETRY;
    }
    /*
     * Leave. Release: an owner that reads the count after this sees our
     * CAS in its load of top. Pairs with: the acquire load of batchers in
     * weft__deque_pop_public() and weft__deque_unpublish().
     */
    (void)weft__faa_u32(&dq->batchers, (uint32_t)-1);
    *taken = r == WEFT__STEAL_OK ? k : 0;
    return r;
}

#endif /* WEFT_PRIMITIVES_DEQUE_H */
