/*
 * timer.h - the executor's deadline timer (internal).
 *
 * Token deadlines are lazy (primitives/cancel.h): a passed deadline takes
 * effect when something observes the token. The timer is that something
 * for tokens handed to weft_executor_watch_deadline(): at the deadline it
 * calls weft_token_is_cancelled() from its own thread, which cancels the
 * token with the deadline reason and runs its callbacks there.
 */
#ifndef WEFT_EXECUTOR_TIMER_H
#define WEFT_EXECUTOR_TIMER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/cancel.h>
#include <weft/status.h>

struct weft__timer_entry {
    uint64_t when;     /* CLOCK_MONOTONIC ns */
    weft_token_t *tok; /* one reference, held until fired or fini */
};

/*
 * lock protects every field below it: the heap, the thread's state and
 * the stop flag. The timer thread sleeps on cond (CLOCK_MONOTONIC).
 */
struct weft__timer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct weft__timer_entry *heap; /* min-heap by when */
    size_t n;
    size_t cap;
    bool running; /* the thread was started (lazily, on first arm) */
    bool stop;
    pthread_t thread;
    char name[16];
};

/* Initialize. Returns WEFT_OK or WEFT_ESYS. Before the timer is shared. */
weft_status_t weft__timer_init(struct weft__timer *t, const char *prefix);

/*
 * Observe tok at its deadline. Takes a reference to tok. A token without
 * a deadline, or already cancelled, is left alone (WEFT_OK).
 * Returns WEFT_OK, WEFT_ENOMEM, WEFT_ESYS (the thread could not start).
 * Thread-safety: any thread. Blocking: takes lock briefly.
 */
weft_status_t weft__timer_arm(struct weft__timer *t, weft_token_t *tok);

/* Stop and join the thread and drop every pending token; later arms
 * return WEFT_ESHUTDOWN. Idempotent. One thread at a time. */
void weft__timer_stop(struct weft__timer *t);

/* weft__timer_stop(), then free everything. One thread. */
void weft__timer_fini(struct weft__timer *t);

#endif /* WEFT_EXECUTOR_TIMER_H */
