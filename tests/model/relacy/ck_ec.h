/*
 * ck_ec.h (model) - a mirror of Concurrency Kit 0.7.1's ck_ec64 event count
 * for the Relacy model of primitives/parker.c.
 *
 * The parker model compiles the real primitives/parker.c. parker.h
 * includes <ck_ec.h>, and tests/model/CMakeLists.txt puts this directory
 * first on the include path, so the model gets this file instead of ck's.
 * ck's own header cannot be used: its operations are ck_pr inline assembly
 * that Relacy cannot see, and ck_ec64_wait_slow lives in libck.so.
 *
 * What is mirrored (the parts parker.c uses, multiple-producer mode, which
 * is parker.c's mode: single_producer = false), from ck 0.7.1's
 * include/ck_ec.h and src/ck_ec.c:
 *
 *   ck_ec64_init      counter = value << 1 (bit 0 is the "waiters" flag)
 *   ck_ec64_value     load counter, >> 1, acquire fence
 *   ck_ec64_inc       = ck_ec64_add_mp(1): store->atomic fence, faa(counter,
 *                     2); if the old word had the flag: ck_ec64_wake, which
 *                     clears the flag (atomic and) and calls ops->wake64
 *   ck_ec64_wait      value != old_value: return 0; otherwise
 *                     ck_ec64_wait_pred_slow: loop { wait_easy (spin
 *                     ops->busy_loop_iter loads); upgrade (CAS unflagged ->
 *                     flagged; a changed counter returns 0); wait_easy on
 *                     the flagged word; exponential_backoff, whose every
 *                     step is wait_slow_once: re-check the word, then
 *                     ops->wait64(flagged word), then re-check; value
 *                     changed: return 0 }
 *
 * ck_pr operations map as atomics.h's C11 backend maps weft's: plain ck_pr
 * loads are relaxed, ck_pr_fence_acquire an acquire fence,
 * ck_pr_fence_store_atomic a release fence, and the locked
 * read-modify-writes (faa, cas, and) are seq_cst.
 *
 * One simplification: exponential_backoff passes ops->wait64 a sequence of
 * finite partial deadlines during the first second and the caller's
 * deadline after that. The model passes the caller's deadline every time.
 * A partial deadline can only end a wait early, and every early return
 * goes back through the re-checks above, so it can hide a lost wake-up
 * for at most a second; it cannot create or prevent one. The model's
 * futex (tests/model/relacy/weft_model_futex.hpp) never wakes spuriously,
 * which likewise only removes early returns.
 *
 * ops->wait64 and ops->wake64 are parker.c's own functions (parker_wait64,
 * parker_wake64), so the futex calls the model makes are the ones parker.c
 * makes; their syscall() goes to the model futex.
 *
 * Drift: tests/model/check_drift.sh compares the SHA-256 of the installed
 * <ck_ec.h> with WEFT_MODEL_CK_EC_H_SHA256 below and fails when ck changes;
 * re-read ck's ck_ec.h and src/ck_ec.c against this file, then update it.
 */
#ifndef WEFT_MODEL_CK_EC_H
#define WEFT_MODEL_CK_EC_H

#include "weft_model_atomics.hpp"

/* The installed ck header this file mirrors (libck-dev 0.7.1-10). */
#define WEFT_MODEL_CK_EC_H_SHA256 "5e039e5c98a9bd7e7fe11b6cc9b6f605adaec6441b185bf1b31edfef2ac04849"

struct ck_ec_ops;

struct ck_ec_wait_state {
    struct timespec start;
    struct timespec now;
    const struct ck_ec_ops *ops;
    void *data;
};

struct ck_ec_ops {
    int (*gettime)(const struct ck_ec_ops *, struct timespec *out);
    void (*wait32)(const struct ck_ec_wait_state *, const uint32_t *,
                   uint32_t expected, const struct timespec *deadline);
    void (*wait64)(const struct ck_ec_wait_state *, const uint64_t *,
                   uint64_t expected, const struct timespec *deadline);
    void (*wake32)(const struct ck_ec_ops *, const uint32_t *address);
    void (*wake64)(const struct ck_ec_ops *, const uint64_t *address);
    uint32_t busy_loop_iter;
    uint32_t initial_wait_ns;
    uint32_t wait_scale_factor;
    uint32_t wait_shift_count;
};

struct ck_ec_mode {
    const struct ck_ec_ops *ops;
    bool single_producer;
};

struct ck_ec64 {
    uint64_t counter; /* flag in bit 0, value in bits 1..63 */
};

#define WEFT_MODEL_CK_DEFAULT_BUSY_LOOP_ITER 100U

static inline void
ck_ec64_init(struct ck_ec64 *ec, uint64_t value)
{
    /* ck: a plain store before the event count is shared. */
    weft_model::store<uint64_t>(&ec->counter, value << 1, rl::mo_relaxed, $);
}

static inline uint64_t
ck_ec64_value(const struct ck_ec64 *ec)
{
    uint64_t ret =
        weft_model::load<uint64_t>(&ec->counter, rl::mo_relaxed, $) >> 1;
    weft_model::fence(rl::mo_acquire, $);
    return ret;
}

static inline void
weft_model_ck_ec64_wake(struct ck_ec64 *ec, const struct ck_ec_ops *ops)
{
    /* ck_ec64_wake: clear the flag, then futex-wake every waiter. */
    (void)weft_model::fetch_and<uint64_t>(&ec->counter, ~(uint64_t)1, $);
    ops->wake64(ops, &ec->counter);
}

static inline uint64_t
ck_ec64_add(struct ck_ec64 *ec, const struct ck_ec_mode *mode, uint64_t delta)
{
    /* ck_ec64_add_mp; the model has no single-producer mode. */
    if (mode->single_producer) {
        weft_model::misuse("ck_ec single-producer mode is not modelled", ec,
                           $);
    }
    weft_model::fence(rl::mo_release, $); /* ck_pr_fence_store_atomic */
    uint64_t old = weft_model::fetch_add<uint64_t>(&ec->counter, 2 * delta, $);
    /* ck_ec_add64_epilogue */
    if (old & 1) {
        weft_model_ck_ec64_wake(ec, mode->ops);
    }
    return old >> 1;
}

static inline void
ck_ec64_inc(struct ck_ec64 *ec, const struct ck_ec_mode *mode)
{
    (void)ck_ec64_add(ec, mode, 1);
}

/* wait_easy: spin up to busy_loop_iter more loads while the word is
 * still `expected`; returns the last word read. */
static inline uint64_t
weft_model_ck_ec64_wait_easy(struct ck_ec64 *ec, const struct ck_ec_ops *ops,
                             uint64_t expected)
{
    uint64_t current =
        weft_model::load<uint64_t>(&ec->counter, rl::mo_relaxed, $);
    size_t n = ops->busy_loop_iter != 0 ? ops->busy_loop_iter
                                        : WEFT_MODEL_CK_DEFAULT_BUSY_LOOP_ITER;
    for (size_t i = 0; i < n && current == expected; i++) {
        current = weft_model::load<uint64_t>(&ec->counter, rl::mo_relaxed, $);
    }
    return current;
}

/* upgrade: true when the event count has changed; otherwise the word is
 * (or was at some point) the flagged one. */
static inline bool
weft_model_ck_ec64_upgrade(struct ck_ec64 *ec, uint64_t current,
                           uint64_t unflagged, uint64_t flagged)
{
    if (current == flagged) {
        return false;
    }
    if (current != unflagged) {
        return true;
    }
    uint64_t old_word;
    return !weft_model::cas_value<uint64_t>(&ec->counter, unflagged, flagged,
                                            &old_word, $) &&
           old_word != flagged;
}

/* wait_slow_once: true when the word has changed. */
static inline bool
weft_model_ck_ec64_wait_slow_once(struct ck_ec64 *ec,
                                  const struct ck_ec_wait_state *ws,
                                  uint64_t flagged,
                                  const struct timespec *deadline)
{
    if (weft_model::load<uint64_t>(&ec->counter, rl::mo_relaxed, $) !=
        flagged) {
        return true;
    }
    ws->ops->wait64(ws, &ec->counter, flagged, deadline);
    return weft_model::load<uint64_t>(&ec->counter, rl::mo_relaxed, $) !=
           flagged;
}

static inline int
ck_ec64_wait(struct ck_ec64 *ec, const struct ck_ec_mode *mode,
             uint64_t old_value, const struct timespec *deadline)
{
    if (ck_ec64_value(ec) != old_value) {
        return 0;
    }
    /* ck_ec64_wait_pred_slow with no predicate. */
    const struct ck_ec_ops *ops = mode->ops;
    const uint64_t unflagged = old_value << 1;
    const uint64_t flagged = unflagged | 1;
    if (ck_ec64_value(ec) != old_value) {
        return 0;
    }
    struct ck_ec_wait_state ws;
    std::memset(&ws, 0, sizeof(ws));
    ws.ops = ops;
    for (;;) {
        uint64_t current = weft_model_ck_ec64_wait_easy(ec, ops, unflagged);
        if (weft_model_ck_ec64_upgrade(ec, current, unflagged, flagged)) {
            weft_model::fence(rl::mo_acquire, $);
            return 0;
        }
        current = weft_model_ck_ec64_wait_easy(ec, ops, flagged);
        if (current != flagged) {
            weft_model::fence(rl::mo_acquire, $);
            return 0;
        }
        /* exponential_backoff: sleep until the word changes. A deadline
         * would make the futex wait timed; the scenarios pass none. */
        while (!weft_model_ck_ec64_wait_slow_once(ec, &ws, flagged,
                                                  deadline)) {
            if (deadline != NULL) {
                return -1;
            }
        }
        if (ck_ec64_value(ec) != old_value) {
            weft_model::fence(rl::mo_acquire, $);
            return 0;
        }
        /* Spurious wake-up: redo the slow path. */
    }
}

#endif /* WEFT_MODEL_CK_EC_H */
