/*
 * clock.h - monotonic time in nanoseconds, and a virtual clock for tests
 * (internal).
 *
 * Deadlines in weft are absolute times on CLOCK_MONOTONIC in nanoseconds.
 * weft__clock_now_ns() reads that clock. The public weft_clock_now_ns()
 * (declared in <weft/future.h>) belongs to the executor; it should simply
 * return weft__clock_now_ns() so that both name the same time line.
 *
 * A struct weft__clock is a time source. A NULL clock pointer means "the
 * monotonic clock" everywhere a clock is taken, so production code never
 * builds one. Tests build a virtual clock, whose time moves only when the
 * test moves it, and hand it to the root of a token tree
 * (weft__token_create_root() in cancel.h); every descendant reads the same
 * clock, so no test of deadlines depends on real timing.
 *
 * The layout is visible so that a clock can live in caller storage (on a
 * test's stack, inside an executor); only the functions below touch it.
 */
#ifndef WEFT_PRIMITIVES_CLOCK_H
#define WEFT_PRIMITIVES_CLOCK_H

#include <stdint.h>

struct weft__clock {
    /* Reads the time; immutable after init. */
    uint64_t (*now_ns)(const struct weft__clock *self);
    /* Virtual clocks only: the current time. Store-release by
       weft__clock_set(), faa by weft__clock_advance(), load-acquire by
       readers. */
    uint64_t virtual_ns;
};

/*
 * Current CLOCK_MONOTONIC time in nanoseconds.
 * Thread-safety: any thread. Blocking: never (a vDSO call).
 */
uint64_t weft__clock_now_ns(void);

/*
 * Read clock c; NULL reads the monotonic clock.
 * Thread-safety: any thread. Blocking: never.
 */
uint64_t weft__clock_read(const struct weft__clock *c);

/*
 * Make c a virtual clock that reads start_ns until moved.
 * Thread-safety: before c is shared.
 */
void weft__clock_init_virtual(struct weft__clock *c, uint64_t start_ns);

/*
 * Set a virtual clock to now_ns. Time should not move backwards; the
 * clock does not check, because tests own it.
 * Thread-safety: any thread; readers on other threads see the new time
 * after their next read (store-release, load-acquire).
 */
void weft__clock_set(struct weft__clock *c, uint64_t now_ns);

/* Move a virtual clock forward by delta_ns. Thread-safety: any thread. */
void weft__clock_advance(struct weft__clock *c, uint64_t delta_ns);

#endif /* WEFT_PRIMITIVES_CLOCK_H */
