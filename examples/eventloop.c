/*
 * eventloop.c - an application with its own poll() loop that embeds weft.
 *
 * Usage: example_eventloop [JOBS [IN_FLIGHT]]   (defaults 24 and 8)
 *
 * The application's thread owns the loop and sleeps in poll(); weft's
 * workers do the computing (counting primes in ranges). The bridge from
 * the executor back to the loop is a continuation: every job's future gets
 * one (weft_future_then) which runs on a worker when the job ends, puts the
 * job on a completion list and writes to an eventfd. poll() wakes up, the
 * loop takes the whole list, records the outcomes and submits more jobs,
 * keeping at most IN_FLIGHT running. Nothing spins: between completions
 * the loop thread sleeps in poll(), and an eventfd folds any number of
 * writes into one wake-up. Job 5 fails on purpose, to show that failures
 * reach the loop as outcomes like any other.
 *
 * The loop never waits on a future, so it never blocks on weft; the only
 * lock it shares with the workers guards the completion list. The program
 * checks the prime counts against a sequential count and ends with an
 * accounting line: every job was submitted, continued and collected
 * exactly once.
 */
#define _GNU_SOURCE /* eventfd, poll */

#include <weft.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_JOBS 1024
#define RANGE 20000
#define FAILING_JOB 5

struct job {
    int id;
    uint64_t lo, hi;        /* count the primes in [lo, hi) */
    weft_outcome_t outcome; /* written by the continuation */
    int64_t primes;
    char why[96];     /* the failure message, if it failed */
    int collected;    /* loop thread only */
    struct job *next; /* completion list link, under done_lock */
};

static struct job jobs[MAX_JOBS];

/* The completion list and the eventfd that announces it. done_lock
 * protects done_head. */
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job *done_head;
static int done_fd = -1;

static atomic_int continuations;

static int
is_prime(uint64_t n)
{
    if (n < 2) {
        return 0;
    }
    for (uint64_t d = 2; d * d <= n; d++) {
        if (n % d == 0) {
            return 0;
        }
    }
    return 1;
}

static int64_t
count_primes(uint64_t lo, uint64_t hi)
{
    int64_t c = 0;
    for (uint64_t n = lo; n < hi; n++) {
        c += is_prime(n);
    }
    return c;
}

static weft_status_t
job_body(weft_task_t *self, void *arg, weft_value_t *out)
{
    struct job *j = arg;
    if (j->id == FAILING_JOB) {
        return weft_task_fail(self, WEFT_EUSER, "job %d: disk on fire", j->id);
    }
    out->i64 = count_primes(j->lo, j->hi);
    return WEFT_OK;
}

/* Runs on a worker once the job has ended, whatever its outcome. */
static weft_status_t
job_done(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)out;
    struct job *j = arg;
    weft_future_t *f = weft_task_antecedent(self);
    weft_value_t v = {.i64 = 0};
    j->outcome = weft_future_outcome(f);
    if (weft_future_value(f, &v) == WEFT_OK) {
        j->primes = v.i64;
    } else if (weft_future_error(f) != NULL) {
        snprintf(j->why, sizeof(j->why), "%s",
                 weft_error_message(weft_future_error(f)));
    }
    atomic_fetch_add(&continuations, 1);

    /* Publish the job, then wake the loop; the mutex orders the writes to
     * *j before the loop's reads. */
    pthread_mutex_lock(&done_lock);
    j->next = done_head;
    done_head = j;
    pthread_mutex_unlock(&done_lock);
    uint64_t one = 1;
    while (write(done_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    return WEFT_OK;
}

/* Submit job j: spawn it and chain the continuation; the loop keeps no
 * reference (the continuation holds its own on the job's future). */
static weft_status_t
submit(weft_executor_t *ex, struct job *j)
{
    weft_future_t *f;
    weft_spawn_opts_t o = {.name = "primes", WEFT_SPAWN_SITE};
    weft_status_t st = weft_spawn_ex(ex, &o, job_body, j, &f);
    if (st != WEFT_OK) {
        return st;
    }
    st = weft_future_then(f, job_done, j, NULL);
    weft_future_release(f);
    return st;
}

int
main(int argc, char **argv)
{
    int njobs = argc > 1 ? atoi(argv[1]) : 24;
    int window = argc > 2 ? atoi(argv[2]) : 8;
    if (njobs <= FAILING_JOB || njobs > MAX_JOBS || window < 1) {
        fprintf(stderr, "usage: %s [JOBS (%d..%d) [IN_FLIGHT >= 1]]\n", argv[0],
                FAILING_JOB + 1, MAX_JOBS);
        return 2;
    }
    done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (done_fd < 0) {
        perror("eventfd");
        return 1;
    }
    weft_executor_t *ex;
    weft_status_t st = weft_executor_create(NULL, &ex);
    if (st != WEFT_OK) {
        fprintf(stderr, "executor: %s\n", weft_status_str(st));
        return 1;
    }
    for (int i = 0; i < njobs; i++) {
        jobs[i].id = i;
        jobs[i].lo = (uint64_t)i * RANGE;
        jobs[i].hi = (uint64_t)(i + 1) * RANGE;
    }

    int submitted = 0, collected = 0, in_flight = 0;
    int succeeded = 0, failed = 0, twice = 0;
    long wakeups = 0, notes = 0, timeouts = 0;
    int64_t primes = 0;
    while (collected < njobs) {
        while (in_flight < window && submitted < njobs) {
            st = submit(ex, &jobs[submitted]);
            if (st != WEFT_OK) {
                fprintf(stderr, "submit: %s\n", weft_status_str(st));
                goto out;
            }
            submitted++;
            in_flight++;
        }
        struct pollfd p = {.fd = done_fd, .events = POLLIN};
        /* The timeout only turns a lost wake-up (a bug) into a failure. */
        int r = poll(&p, 1, 30000);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            timeouts++;
            fprintf(stderr, "poll: %s\n", r == 0 ? "timed out" : "failed");
            goto out;
        }
        uint64_t n;
        if (read(done_fd, &n, sizeof(n)) != (ssize_t)sizeof(n)) {
            perror("read eventfd");
            goto out;
        }
        wakeups++;
        notes += (long)n;
        pthread_mutex_lock(&done_lock);
        struct job *list = done_head;
        done_head = NULL;
        pthread_mutex_unlock(&done_lock);
        for (struct job *j = list; j != NULL; j = j->next) {
            twice += j->collected;
            j->collected = 1;
            collected++;
            in_flight--;
            if (j->outcome == WEFT_OUTCOME_SUCCEEDED) {
                succeeded++;
                primes += j->primes;
            } else {
                failed++;
                printf("job %d %s: %s\n", j->id, weft_outcome_name(j->outcome),
                       j->why);
            }
        }
    }
out:;
    weft_status_t sd = weft_executor_destroy(ex);
    /* A continuation may publish its job and be collected through an
     * earlier wake-up before its own write lands; once destroy has
     * drained the executor, every write has landed. */
    uint64_t late;
    if (read(done_fd, &late, sizeof(late)) == (ssize_t)sizeof(late)) {
        notes += (long)late;
    }
    close(done_fd);

    int64_t expect = count_primes(0, (uint64_t)njobs * RANGE) -
                     count_primes(FAILING_JOB * (uint64_t)RANGE,
                                  (FAILING_JOB + 1) * (uint64_t)RANGE);
    printf("primes below %llu, except job %d's range: %lld (sequential "
           "count: %lld)\n",
           (unsigned long long)njobs * RANGE, FAILING_JOB, (long long)primes,
           (long long)expect);
    printf("accounting: %d submitted, %d continuations, %d collected (%d "
           "succeeded, %d failed, %d twice), %ld notifications in %ld "
           "wake-ups, %ld poll timeouts, destroy %s\n",
           submitted, atomic_load(&continuations), collected, succeeded, failed,
           twice, notes, wakeups, timeouts, weft_status_name(sd));
    int ok = submitted == njobs && collected == njobs &&
             atomic_load(&continuations) == njobs && failed == 1 &&
             twice == 0 && notes == njobs && timeouts == 0 &&
             primes == expect && sd == WEFT_OK;
    if (!ok) {
        printf("FAILED\n");
        return 1;
    }
    return 0;
}
