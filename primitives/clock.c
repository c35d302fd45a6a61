/*
 * clock.c - CLOCK_MONOTONIC in nanoseconds and the virtual test clock.
 *
 * DESIGN
 *
 * A clock is a function pointer plus, for the virtual clock, one 64-bit
 * word of time. The virtual time is written by the test (store-release or
 * fetch-and-add) and read by pollers on any thread (load-acquire), so a
 * poller that sees the new time also sees whatever the test wrote before
 * moving the clock (for example, a flag saying "time has moved"). Time
 * carries no other data; the pairing is kept so tests can reason with it.
 *
 * Invariants:
 *  1. now_ns is immutable after init, so readers call it without
 *     synchronization once the clock was published.
 *  2. weft__clock_read(NULL) is the monotonic clock, the same time line
 *     as the public weft_clock_now_ns().
 */
#include "clock.h"

#include <time.h>

#include "atomics.h"

uint64_t
weft__clock_now_ns(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
clock_virtual_now(const struct weft__clock *self)
{
    /*
     * Pairs with: weft__store_rel_u64() in weft__clock_set() and the faa
     * in weft__clock_advance().
     */
    return weft__load_acq_u64(&self->virtual_ns);
}

uint64_t
weft__clock_read(const struct weft__clock *c)
{
    if (c == NULL) {
        return weft__clock_now_ns();
    }
    return c->now_ns(c);
}

void
weft__clock_init_virtual(struct weft__clock *c, uint64_t start_ns)
{
    c->now_ns = clock_virtual_now;
    /* Unpaired: initialization before the clock is shared. */
    weft__store_relaxed_u64(&c->virtual_ns, start_ns);
}

void
weft__clock_set(struct weft__clock *c, uint64_t now_ns)
{
    /* Pairs with: weft__load_acq_u64() in clock_virtual_now(). */
    weft__store_rel_u64(&c->virtual_ns, now_ns);
}

void
weft__clock_advance(struct weft__clock *c, uint64_t delta_ns)
{
    /* Pairs with: weft__load_acq_u64() in clock_virtual_now(). */
    (void)weft__faa_u64(&c->virtual_ns, delta_ns);
}
