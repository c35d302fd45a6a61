/*
 * stress_trace.c - task tracing while the executor is busy (plain C: runs
 * under ThreadSanitizer, where Criterion cannot; tests/test_trace.c checks
 * what a trace holds).
 *
 * Each round, on 1, 2 and 4 workers in turn:
 *   - a driver thread runs fork-join trees without pause: children named
 *     or not, some spawned with a cancelled token (they end without
 *     running), some leaves failing, joins on the fast path and helping;
 *   - a leaf in 61 ends the trace itself, from inside a task on a worker;
 *   - a writer thread calls weft_executor_trace_write() in a loop;
 *   - the main thread begins a trace with a random buffer size, recording
 *     the workers' parks (WEFT_TRACE_PARKS) or not at random, lets the
 *     trees run for a random number of yields, ends it, and writes it
 *     twice.
 * Checks: every trace call returns one of the statuses its contract
 * allows for the race it is in (OK, or EBUSY while another trace call
 * runs, or ESTATE when a task ended the trace first); the two writes
 * after the end are byte for byte the same (nothing is recorded once end
 * has returned); the number of complete events equals "recorded" in the
 * JSON and fits the buffers; every tree ends with a documented status.
 * Under TSan the lane lock and the op word are what keep the buffers free
 * of races, so a missing edge there shows up as a report.
 *
 * Seed: WEFT_SEED if set, else the clock; printed first. Rounds per worker
 * count: WEFT_STRESS_TRIALS if set, else 150 (40 under sanitizers or
 * WEFT_PERTURB). Ends with "N passed, N failed" (rounds); exit status 0
 * only when none failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <weft.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define ST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define ST_SANITIZED 1
#endif
#endif
#if defined(WEFT_PERTURB) && !defined(ST_SANITIZED)
#define ST_SANITIZED 1
#endif

#ifdef ST_SANITIZED
#define ST_DEFAULT_ROUNDS 40
#else
#define ST_DEFAULT_ROUNDS 150
#endif

#define ST_DEPTH 7 /* 2^7 leaves a tree */

static weft_executor_t *ex;
static weft_token_t *cancelled;
static atomic_bool stop;
static atomic_long bad_status; /* trace calls with an unexpected status */
static atomic_long trees;
static long spans_seen; /* main thread only: events in the traces read */
static long parks_seen; /* main thread only: of those, parks */

static uint64_t
rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static bool
status_ok(weft_status_t st, bool estate_allowed)
{
    return st == WEFT_OK || st == WEFT_EBUSY ||
           (estate_allowed && st == WEFT_ESTATE);
}

static weft_status_t
tree(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)out;
    uintptr_t a = (uintptr_t)arg;
    unsigned int depth = (unsigned int)(a >> 16);
    unsigned int salt = (unsigned int)(a & 0xFFFF);
    if (depth == 0) {
        if (salt % 61 == 0) {
            /* A task ends the trace: the main thread's end then finds
             * none (ESTATE), or someone else's call running (EBUSY). */
            if (!status_ok(weft_executor_trace_end(ex), true)) {
                atomic_fetch_add(&bad_status, 1);
            }
        }
        return salt % 7 == 0 ? WEFT_EUSER : WEFT_OK;
    }
    uintptr_t left =
        ((uintptr_t)(depth - 1) << 16) | ((salt * 31 + 1) & 0xFFFF);
    uintptr_t right =
        ((uintptr_t)(depth - 1) << 16) | ((salt * 17 + 2) & 0xFFFF);
    weft_future_t *f = NULL;
    weft_status_t st;
    weft_executor_t *e = weft_task_executor(self);
    if (salt % 3 == 0) {
        weft_spawn_opts_t o = {.name = "left", WEFT_SPAWN_SITE};
        st = weft_spawn_ex(e, &o, tree, (void *)left, &f);
    } else if (salt % 5 == 1) {
        weft_spawn_opts_t o = {.name = "doomed", .token = cancelled};
        st = weft_spawn_ex(e, &o, tree, (void *)left, &f);
    } else {
        st = weft_spawn(e, tree, (void *)left, &f);
    }
    if (st != WEFT_OK) {
        return st;
    }
    weft_value_t v;
    (void)tree(self, (void *)right, &v);
    (void)weft_join(f, NULL);
    return WEFT_OK;
}

static void *
driver(void *arg)
{
    uint64_t s = (uint64_t)(uintptr_t)arg | 1;
    while (!atomic_load(&stop)) {
        uintptr_t a = ((uintptr_t)ST_DEPTH << 16) | (rng_next(&s) & 0xFFFF);
        weft_status_t st = weft_executor_run(ex, tree, (void *)a, NULL);
        if (st != WEFT_OK && st != WEFT_EUSER) {
            atomic_fetch_add(&bad_status, 1);
        }
        atomic_fetch_add(&trees, 1);
    }
    return NULL;
}

static void *
writer(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        char *buf = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&buf, &len);
        if (fp == NULL) {
            continue;
        }
        /* OK (an ended trace), EBUSY (recording, or another call runs),
         * ESTATE (no trace yet). */
        if (!status_ok(weft_executor_trace_write(ex, fp), true)) {
            atomic_fetch_add(&bad_status, 1);
        }
        fclose(fp);
        free(buf);
        sched_yield();
    }
    return NULL;
}

/* Write the ended trace; retries while the writer thread holds the op. */
static char *
write_trace(size_t *len)
{
    for (;;) {
        char *buf = NULL;
        FILE *fp = open_memstream(&buf, len);
        if (fp == NULL) {
            return NULL;
        }
        weft_status_t st = weft_executor_trace_write(ex, fp);
        fclose(fp);
        if (st == WEFT_OK) {
            return buf;
        }
        free(buf);
        if (st != WEFT_EBUSY) {
            atomic_fetch_add(&bad_status, 1);
            return NULL;
        }
        sched_yield();
    }
}

static size_t
count(const char *s, const char *what)
{
    size_t n = 0;
    for (const char *p = strstr(s, what); p != NULL; p = strstr(p + 1, what)) {
        n++;
    }
    return n;
}

/* One round; returns true when every check passed. */
static bool
round_run(uint64_t *s, unsigned int workers)
{
    size_t cap = 1 + rng_next(s) % 512;
    weft_status_t st;
    /* Every other trace also records the workers' parks (read at begin;
     * only this thread reads or writes the environment). */
    if (setenv("WEFT_TRACE_PARKS", rng_next(s) & 1 ? "1" : "0", 1) != 0) {
        return false;
    }
    while ((st = weft_executor_trace_begin(ex, cap)) == WEFT_EBUSY) {
        sched_yield();
    }
    if (st != WEFT_OK) {
        fprintf(stderr, "begin: %s\n", weft_status_name(st));
        return false;
    }
    for (uint64_t y = rng_next(s) % 400; y > 0; y--) {
        sched_yield();
    }
    while ((st = weft_executor_trace_end(ex)) == WEFT_EBUSY) {
        sched_yield();
    }
    if (st != WEFT_OK && st != WEFT_ESTATE) {
        fprintf(stderr, "end: %s\n", weft_status_name(st));
        return false;
    }
    size_t la = 0;
    size_t lb = 0;
    char *a = write_trace(&la);
    char *b = write_trace(&lb);
    bool ok = a != NULL && b != NULL;
    if (ok && (la != lb || memcmp(a, b, la) != 0)) {
        fprintf(stderr, "the trace changed after its end\n");
        ok = false;
    }
    if (ok) {
        size_t spans = count(a, "\"ph\":\"X\"");
        spans_seen += (long)spans;
        parks_seen += (long)count(a, "\"cat\":\"park\"");
        const char *r = strstr(a, "\"recorded\":");
        unsigned long long rec =
            r != NULL ? strtoull(r + strlen("\"recorded\":"), NULL, 10) : 0;
        if (r == NULL || rec != spans || spans > cap * (workers + 1) ||
            strncmp(a, "{\"traceEvents\":[", 16) != 0) {
            fprintf(stderr, "%zu spans, recorded %llu, cap %zu x %u lanes\n",
                    spans, rec, cap, workers + 1);
            ok = false;
        }
    }
    free(a);
    free(b);
    return ok;
}

int
main(void)
{
    uint64_t seed;
    const char *env = getenv("WEFT_SEED");
    if (env != NULL) {
        seed = strtoull(env, NULL, 10);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
    }
    if (seed == 0) {
        seed = 1;
    }
    long rounds = ST_DEFAULT_ROUNDS;
    const char *tr = getenv("WEFT_STRESS_TRIALS");
    if (tr != NULL && atol(tr) > 0) {
        rounds = atol(tr);
    }
    printf("stress_trace: seed %" PRIu64 ", %ld rounds per worker count\n",
           seed, rounds);
    fflush(stdout);

    long passed = 0;
    long failed = 0;
    static const unsigned int worker_counts[] = {1, 2, 4};
    for (size_t wi = 0; wi < 3; wi++) {
        unsigned int workers = worker_counts[wi];
        weft_executor_config_t c;
        weft_executor_config_init(&c);
        c.num_workers = workers;
        if (weft_executor_create(&c, &ex) != WEFT_OK ||
            weft_token_create(NULL, &cancelled) != WEFT_OK) {
            fprintf(stderr, "setup failed\n");
            return 1;
        }
        (void)weft_token_cancel(cancelled, NULL);
        atomic_store(&stop, false);
        uint64_t s = seed * (wi + 1) | 1;
        pthread_t d;
        pthread_t w;
        if (pthread_create(&d, NULL, driver, (void *)(uintptr_t)s) != 0 ||
            pthread_create(&w, NULL, writer, NULL) != 0) {
            fprintf(stderr, "threads failed\n");
            return 1;
        }
        for (long r = 0; r < rounds; r++) {
            long before = atomic_load(&bad_status);
            bool ok = round_run(&s, workers);
            if (ok && atomic_load(&bad_status) == before) {
                passed++;
            } else {
                failed++;
                fprintf(stderr,
                        "stress_trace: round %ld on %u workers failed; rerun "
                        "with WEFT_SEED=%" PRIu64 "\n",
                        r, workers, seed);
            }
        }
        atomic_store(&stop, true);
        pthread_join(d, NULL);
        pthread_join(w, NULL);
        /* Leave a trace recording: destroy must free it. */
        (void)weft_executor_trace_begin(ex, 8);
        weft_status_t ds = weft_executor_destroy(ex);
        weft_token_release(cancelled);
        if (ds != WEFT_OK || atomic_load(&bad_status) != 0) {
            fprintf(stderr, "destroy: %s, %ld unexpected statuses\n",
                    weft_status_name(ds), atomic_load(&bad_status));
            failed++;
            atomic_store(&bad_status, 0);
        }
        printf("%u worker(s): %ld trees, %ld events in the traces (%ld "
               "parks)\n",
               workers, atomic_load(&trees), spans_seen, parks_seen);
        atomic_store(&trees, 0);
        spans_seen = 0;
        parks_seen = 0;
    }
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
