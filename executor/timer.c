/*
 * timer.c - one thread per executor (started on first use) that observes
 * armed tokens at their deadlines.
 *
 * DESIGN
 *
 * A binary min-heap of (deadline, token) under one mutex. The thread
 * sleeps on a CLOCK_MONOTONIC condition variable until the earliest
 * deadline, pops every entry that is due, and for each one drops the lock
 * and calls weft_token_is_cancelled(): that observation is what applies a
 * lazy deadline, cancelling the token with the WEFT_EDEADLINE reason and
 * running its callbacks on this thread (primitives/cancel.h). Arming an
 * earlier deadline than the current head signals the thread. No callback
 * ever runs under the timer's lock, so callbacks may arm again.
 *
 * The deadline is read from the token once, at arm time, on the monotonic
 * clock; a token on a virtual clock (tests) is observed once, at that
 * real time, and then dropped whatever it reports.
 *
 * Invariants:
 *  1. Every armed token is released exactly once: after it was observed,
 *     or by weft__timer_fini().
 *  2. The thread holds lock except while it observes a token or sleeps.
 *  3. stop is set only by weft__timer_stop(), which then joins the
 *     thread; afterwards arms return WEFT_ESHUTDOWN.
 */
#include "timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primitives/alloc.h"
#include "primitives/cancel.h"
#include "primitives/clock.h"

static void
heap_swap(struct weft__timer_entry *a, struct weft__timer_entry *b)
{
    struct weft__timer_entry x = *a;
    *a = *b;
    *b = x;
}

static void
heap_push(struct weft__timer *t, struct weft__timer_entry e)
{
    size_t i = t->n++;
    t->heap[i] = e;
    while (i > 0 && t->heap[(i - 1) / 2].when > t->heap[i].when) {
        heap_swap(&t->heap[(i - 1) / 2], &t->heap[i]);
        i = (i - 1) / 2;
    }
}

static struct weft__timer_entry
heap_pop(struct weft__timer *t)
{
    struct weft__timer_entry top = t->heap[0];
    t->heap[0] = t->heap[--t->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        size_t r = l + 1;
        size_t m = i;
        if (l < t->n && t->heap[l].when < t->heap[m].when) {
            m = l;
        }
        if (r < t->n && t->heap[r].when < t->heap[m].when) {
            m = r;
        }
        if (m == i) {
            break;
        }
        heap_swap(&t->heap[i], &t->heap[m]);
        i = m;
    }
    return top;
}

static void
ns_to_timespec(uint64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000ull);
    ts->tv_nsec = (long)(ns % 1000000000ull);
}

static void *
timer_main(void *arg)
{
    struct weft__timer *t = arg;
    pthread_setname_np(pthread_self(), t->name);
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        if (t->n == 0) {
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        }
        uint64_t now = weft__clock_now_ns();
        if (t->heap[0].when <= now) {
            struct weft__timer_entry e = heap_pop(t);
            pthread_mutex_unlock(&t->lock);
            /* Observing the token applies its deadline and runs its
             * callbacks here, outside the lock. */
            (void)weft_token_is_cancelled(e.tok);
            weft_token_release(e.tok);
            pthread_mutex_lock(&t->lock);
            continue;
        }
        struct timespec ts;
        ns_to_timespec(t->heap[0].when, &ts);
        (void)pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

weft_status_t
weft__timer_init(struct weft__timer *t, const char *prefix)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->name, sizeof(t->name), "%.10s-tmr", prefix);
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        return WEFT_ESYS;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) {
        return WEFT_ESYS;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        pthread_cond_destroy(&t->cond);
        return WEFT_ESYS;
    }
    return WEFT_OK;
}

weft_status_t
weft__timer_arm(struct weft__timer *t, weft_token_t *tok)
{
    uint64_t when = weft__token_next_deadline(tok);
    if (when == WEFT_DEADLINE_NONE) {
        return WEFT_OK;
    }
    pthread_mutex_lock(&t->lock);
    if (t->stop) {
        pthread_mutex_unlock(&t->lock);
        return WEFT_ESHUTDOWN;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap != 0 ? t->cap * 2 : 16;
        struct weft__timer_entry *h =
            WEFT__REALLOC(t->heap, cap * sizeof(*t->heap));
        if (h == NULL) {
            pthread_mutex_unlock(&t->lock);
            return WEFT_ENOMEM;
        }
        t->heap = h;
        t->cap = cap;
    }
    if (!t->running) {
        if (pthread_create(&t->thread, NULL, timer_main, t) != 0) {
            pthread_mutex_unlock(&t->lock);
            return WEFT_ESYS;
        }
        t->running = true;
    }
    (void)weft_token_retain(tok);
    heap_push(t, (struct weft__timer_entry){.when = when, .tok = tok});
    if (t->heap[0].tok == tok) {
        pthread_cond_signal(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
    return WEFT_OK;
}

void
weft__timer_stop(struct weft__timer *t)
{
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_signal(&t->cond);
    bool running = t->running;
    t->running = false;
    pthread_mutex_unlock(&t->lock);
    if (running) {
        pthread_join(t->thread, NULL);
    }
    /* The thread is gone and arms are refused: the heap is ours. */
    for (size_t i = 0; i < t->n; i++) {
        weft_token_release(t->heap[i].tok);
    }
    t->n = 0;
}

void
weft__timer_fini(struct weft__timer *t)
{
    weft__timer_stop(t);
    weft__free(t->heap);
    t->heap = NULL;
    t->n = t->cap = 0;
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
}
