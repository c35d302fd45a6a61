/*
 * parker.c - ck_ec64 event count plus futex operations for idle threads.
 *
 * DESIGN
 *
 * ck_ec64 keeps a 63-bit counter and a "waiters" flag in one 64-bit word.
 * A sleeper that saw value v flags the word and futex-waits on its low half
 * while the value is still v; an increment that finds the flag set clears
 * it and futex-wakes. ck supplies that protocol; weft supplies the ops and
 * the registration counter that lets wakers skip the increment (and its
 * locked instruction) when nobody sleeps.
 *
 * Pitfalls of ck 0.7.1 handled here:
 *  - Its own test ops pass the deadline pointer as the futex bitset; the
 *    bitset must be FUTEX_BITSET_MATCH_ANY, and FUTEX_WAIT_BITSET takes an
 *    absolute CLOCK_MONOTONIC deadline, which is what ck hands us.
 *  - ck_ec32 counts only 31 bits, so weft uses ck_ec64.
 *  - The default busy loop (100 iterations inside ck_ec_wait) makes
 *    throughput collapse once one side parks, because every wait spins on
 *    a cache line the waker is hammering; the executor spins with
 *    ck_backoff before it parks, so ck's own spin is set to 1 iteration.
 *
 * Invariants:
 *  1. sleepers counts threads between prepare() and the end of park() or
 *     cancel(); it is changed only by faa (full barrier on x86).
 *  2. A waker that finds sleepers > 0 after its barrier increments the
 *     event count, so every registered sleeper's ticket is stale.
 *  3. ck_ec64_wait returns immediately when the count differs from the
 *     ticket, so a wake between prepare and park is never lost.
 */
#include "parker.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

static int
parker_gettime(const struct ck_ec_ops *ops, struct timespec *out)
{
    (void)ops;
    return clock_gettime(CLOCK_MONOTONIC, out);
}

static void
parker_wait64(const struct ck_ec_wait_state *state, const uint64_t *addr,
              uint64_t expected, const struct timespec *deadline)
{
    (void)state;
    /* The futex word is the low half of the 64-bit count (x86-64 is
     * little-endian), as ck_ec.h documents. */
    syscall(SYS_futex, (const uint32_t *)addr,
            FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, (uint32_t)expected,
            deadline, NULL, FUTEX_BITSET_MATCH_ANY);
}

static void
parker_wait32(const struct ck_ec_wait_state *state, const uint32_t *addr,
              uint32_t expected, const struct timespec *deadline)
{
    (void)state;
    syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG,
            expected, deadline, NULL, FUTEX_BITSET_MATCH_ANY);
}

static void
parker_wake64(const struct ck_ec_ops *ops, const uint64_t *addr)
{
    (void)ops;
    syscall(SYS_futex, (const uint32_t *)addr,
            FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL, NULL, 0);
}

static void
parker_wake32(const struct ck_ec_ops *ops, const uint32_t *addr)
{
    (void)ops;
    syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, NULL,
            NULL, 0);
}

static const struct ck_ec_ops parker_ops = {
    .gettime = parker_gettime,
    .wait32 = parker_wait32,
    .wait64 = parker_wait64,
    .wake32 = parker_wake32,
    .wake64 = parker_wake64,
    .busy_loop_iter = 1,
    /* 0 keeps ck's defaults for the timed back-off of a long wait. */
    .initial_wait_ns = 0,
    .wait_scale_factor = 0,
    .wait_shift_count = 0,
};

static const struct ck_ec_mode parker_mode = {
    .ops = &parker_ops,
    .single_producer = false,
};

void
weft__parker_init(struct weft__parker *p)
{
    ck_ec64_init(&p->ec, 0);
    /* Unpaired: initialization before the parker is shared. */
    weft__store_relaxed_u32(&p->sleepers, 0);
    p->wakes = 0;
}

uint64_t
weft__parker_prepare(struct weft__parker *p)
{
    /*
     * Register before re-checking the condition. The faa is a full
     * barrier. Pairs with: the barrier in weft__parker_wake() before its
     * load of sleepers (Dekker: one side sees the other).
     */
    (void)weft__faa_u32(&p->sleepers, 1);
    /*
     * Free on x86 (the faa is a full barrier); a real fence where an
     * atomic add does not order a later load.
     * Pairs with: the barrier in weft__parker_wake(), as the faa above.
     */
    weft__fence_rmw_load();
    return ck_ec64_value(&p->ec);
}

void
weft__parker_cancel(struct weft__parker *p)
{
    /* Unpaired: unregistering only makes wakers skip work. */
    (void)weft__faa_u32(&p->sleepers, (uint32_t)-1);
}

bool
weft__parker_park(struct weft__parker *p, uint64_t ticket,
                  const struct timespec *deadline)
{
    int r = ck_ec64_wait(&p->ec, &parker_mode, ticket, deadline);
    /* Unpaired: see weft__parker_cancel(). */
    (void)weft__faa_u32(&p->sleepers, (uint32_t)-1);
    return r == 0;
}

void
weft__parker_wake_slow(struct weft__parker *p)
{
    /* The xadd inside is a full barrier and pairs with ck_ec64_wait's
     * flag-setting CAS (ck's own protocol). */
    ck_ec64_inc(&p->ec, &parker_mode);
    /* Unpaired: statistics only; faa so concurrent wakers all count. */
    (void)weft__faa_u64(&p->wakes, 1);
}

void
weft__parker_wake(struct weft__parker *p)
{
    /*
     * Order the caller's condition write before the load of sleepers.
     * Pairs with: the faa in weft__parker_prepare() (Dekker pair).
     */
    weft__fence_store_load();
    /* Ordered by the fence just above. */
    if (weft__load_relaxed_u32(&p->sleepers) != 0) {
        weft__parker_wake_slow(p);
    }
}
