/*
 * parker.h - sleep and wake for idle threads, on a ck_ec64 event count
 * with Linux futex operations (internal).
 *
 * Protocol (one parker, any number of sleepers and wakers):
 *
 *   sleeper                                waker
 *   -------                                -----
 *   t = weft__parker_prepare(p)            make the condition true
 *     (registers, full barrier,            weft__parker_wake(p)
 *      then reads the event count)           (full barrier, then: if a
 *   if condition is true:                     sleeper is registered,
 *       weft__parker_cancel(p)                increment the event count
 *   else                                      and futex-wake if flagged)
 *       weft__parker_park(p, t, deadline)
 *
 * No lost wake-up: the sleeper registers before it re-checks the
 * condition, and the waker makes the condition true before it looks for
 * sleepers, each with a store->load barrier in between (a Dekker pair).
 * So either the waker sees the sleeper and bumps the event count (and the
 * park returns, because the count moved past t), or the sleeper's re-check
 * sees the condition. docs/memory-model.md draws the interleavings.
 *
 * weft__parker_wake_hint() is the variant without the waker's barrier, for
 * the executor's push fast path: it may miss a sleeper that is registering
 * at that instant. Its callers document why that costs latency only.
 */
#ifndef WEFT_PRIMITIVES_PARKER_H
#define WEFT_PRIMITIVES_PARKER_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <ck_ec.h>

#include "atomics.h"

struct weft__parker {
    struct ck_ec64 ec;   /* the event count; futex word in its low half */
    uint32_t sleepers;   /* threads between prepare and the end of park;
                            faa by sleepers, loaded by wakers */
    uint64_t wakes;      /* statistics: event-count increments (faa) */
} __attribute__((aligned(WEFT__CACHELINE)));

/* Initialize. Thread-safety: before the parker is shared. */
void weft__parker_init(struct weft__parker *p);

/*
 * Register as a sleeper and return the ticket to pass to park.
 * Thread-safety: any thread. Blocking: never.
 */
uint64_t weft__parker_prepare(struct weft__parker *p);

/* Undo prepare when the re-check found the condition true. */
void weft__parker_cancel(struct weft__parker *p);

/*
 * Sleep until the event count moves past ticket, or until the absolute
 * CLOCK_MONOTONIC deadline (NULL: none). May return early (spuriously);
 * the caller re-checks its condition. Unregisters the sleeper.
 * Returns: true when woken (count moved), false on deadline.
 * Thread-safety: the thread that called prepare. Blocking: yes.
 */
bool weft__parker_park(struct weft__parker *p, uint64_t ticket,
                       const struct timespec *deadline);

/*
 * Wake every registered sleeper, after a store->load barrier that orders
 * the caller's condition write before the look for sleepers.
 * Thread-safety: any thread. Blocking: never (one futex syscall when a
 * sleeper is parked, none otherwise).
 */
void weft__parker_wake(struct weft__parker *p);

/* Wake every sleeper unconditionally once they are seen (slow path). */
void weft__parker_wake_slow(struct weft__parker *p);

/*
 * Fast-path wake: no barrier. Wakes sleepers that are visibly registered;
 * may miss one that registers concurrently (see the file comment).
 */
static inline void
weft__parker_wake_hint(struct weft__parker *p)
{
    /*
     * Relaxed: a hint. A sleeper registering concurrently may be missed;
     * callers that cannot tolerate that use weft__parker_wake().
     */
    if (weft__load_relaxed_u32(&p->sleepers) != 0) {
        weft__parker_wake_slow(p);
    }
}

/* Number of registered sleepers now (a hint). */
static inline uint32_t
weft__parker_sleepers(struct weft__parker *p)
{
    /* Relaxed: statistics and heuristics only. */
    return weft__load_relaxed_u32(&p->sleepers);
}

#endif /* WEFT_PRIMITIVES_PARKER_H */
