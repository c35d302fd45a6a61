/*
 * tsan_canary.c - a deliberate data race, to prove ThreadSanitizer is on.
 *
 * Two threads meet at a barrier and then both increment one plain int with
 * no synchronization. Under TSan that is a data race on every run: the two
 * sets of accesses are unordered by happens-before (the barrier orders
 * only what came before it), whatever the actual timing, so detection does
 * not depend on the threads overlapping in time; the barrier just makes
 * them overlap in practice too. With TSAN_OPTIONS=halt_on_error=1
 * (tests/run.sh) TSan stops the program at the first report with its exit
 * code (66); without it, TSan still exits 66 at the end.
 *
 * tests/CMakeLists.txt registers it only in TSan builds, in the "stress"
 * label that the tsan configurations run, with WILL_FAIL: the test passes
 * when this program fails. If a change to the build, the flags or the
 * runtime ever leaves TSan silently off, this program exits 0 and the
 * test fails, instead of every stress test passing without checking
 * anything.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>

#define ROUNDS 100000

static pthread_barrier_t start;
static int counter; /* the race: plain int, no lock, no atomics */

/* noinline keeps the loop's loads and stores as real accesses. */
__attribute__((noinline)) static void
bump(int *p)
{
    for (int i = 0; i < ROUNDS; i++) {
        *(volatile int *)p += 1;
    }
}

static void *
racer(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    bump(&counter);
    return NULL;
}

int
main(void)
{
    pthread_t t[2];
    if (pthread_barrier_init(&start, NULL, 2) != 0) {
        fprintf(stderr, "tsan_canary: pthread_barrier_init failed\n");
        return 0; /* exit 0 fails the WILL_FAIL test: loud, not silent */
    }
    for (int i = 0; i < 2; i++) {
        if (pthread_create(&t[i], NULL, racer, NULL) != 0) {
            fprintf(stderr, "tsan_canary: pthread_create failed\n");
            return 0;
        }
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    pthread_barrier_destroy(&start);
    /* Reaching this line under TSan means no race was reported. */
    printf("tsan_canary: counter = %d after a data race that nothing "
           "reported: ThreadSanitizer is not active\n",
           counter);
    return 0;
}
