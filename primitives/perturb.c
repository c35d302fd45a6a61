/*
 * perturb.c - seeded random yields inside the atomics layer (perturbation
 * builds only, -DWEFT_PERTURB=ON).
 *
 * The C stand-in for a model checker's preemption: every named atomic
 * operation in primitives/atomics.h calls weft__perturb() first, which
 * yields the thread with probability 1/WEFT__PERTURB_ODDS. Stress programs
 * built this way explore interleavings that a 2-core machine rarely
 * produces. The seed comes from WEFT_SEED (else a fixed default) mixed
 * with a per-thread counter, so a failing run can be repeated.
 */
#include "perturb.h"

#ifdef WEFT_PERTURB

#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#define WEFT__PERTURB_ODDS 64

static __thread uint64_t perturb_state;
static uint64_t perturb_threads;

static uint64_t
perturb_seed(void)
{
    const char *s = getenv("WEFT_SEED");
    uint64_t seed = s != NULL ? strtoull(s, NULL, 0) : 0x5eedu;
    /* Unpaired: a per-thread counter only needs to be unique. */
    uint64_t n = __atomic_add_fetch(&perturb_threads, 1, __ATOMIC_RELAXED);
    return (seed ^ (n * 0x9E3779B97F4A7C15ull)) | 1u;
}

void
weft__perturb(void)
{
    uint64_t x = perturb_state;
    if (x == 0) {
        x = perturb_seed();
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    perturb_state = x;
    if (x % WEFT__PERTURB_ODDS == 0) {
        sched_yield();
    }
}

#endif /* WEFT_PERTURB */
