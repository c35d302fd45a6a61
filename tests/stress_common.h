/*
 * stress_common.h - the preamble the seeded stress programs share
 * (stress_cancel.c, stress_combine.c, stress_each.c, stress_frame.c):
 * sanitizer detection for their default round counts, the run's seed,
 * the round count, each round's seed and the leak check after an
 * executor is destroyed. Functions are static inline so that each
 * program may use a subset.
 */
#ifndef WEFT_TESTS_STRESS_COMMON_H
#define WEFT_TESTS_STRESS_COMMON_H

#include "primitives/alloc.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Defined under ThreadSanitizer and AddressSanitizer, where the programs
 * default to fewer rounds. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define STRESS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define STRESS_SANITIZED 1
#endif
#endif

/* The run's seed: WEFT_SEED if set (strtoull, base 0: decimal, 0x... or
 * 0...), else the clock; never 0. */
static inline uint64_t
stress_seed(void)
{
    const char *env = getenv("WEFT_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 0)
                                : (uint64_t)time(NULL) ^ (uint64_t)clock();
    if (seed == 0) {
        seed = 1;
    }
    return seed;
}

/* Rounds (per executor, where there are several): WEFT_STRESS_ROUNDS if
 * set (atol), else dflt. */
static inline long
stress_rounds(long dflt)
{
    const char *env = getenv("WEFT_STRESS_ROUNDS");
    return env != NULL ? atol(env) : dflt;
}

/* The seed of round r (from 0) on the w-th executor of the run (w < 256).
 * May be 0. */
static inline uint64_t
stress_round_seed(uint64_t seed, long r, size_t w)
{
    return seed ^ ((uint64_t)(r + 1) * 0x9E3779B97F4A7C15ULL) ^
           ((uint64_t)w << 56);
}

/* After an executor is destroyed: 0 if weft__alloc_live() is back at
 * live0, else 1, with "FAIL[ what]: N blocks leaked (seed S)" on stderr
 * (what may be NULL). Add the result to the failed count. */
static inline long
stress_leak_check(int64_t live0, const char *what, uint64_t seed)
{
    int64_t live = weft__alloc_live();
    if (live == live0) {
        return 0;
    }
    fprintf(stderr, "FAIL%s%s: %lld blocks leaked (seed %llu)\n",
            what != NULL ? " " : "", what != NULL ? what : "",
            (long long)(live - live0), (unsigned long long)seed);
    return 1;
}

#endif
