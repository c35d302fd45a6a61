/*
 * weft_model_futex.hpp - the Linux futex, as the Relacy model of
 * primitives/parker.c sees it.
 *
 * The parker harness compiles parker.c with syscall defined as
 * weft_model::futex_syscall, so parker.c's own futex calls (parker_wait64,
 * parker_wake64) arrive here. The futex word is the low half of the
 * event count's 64-bit counter (parker.c passes (const uint32_t *)addr),
 * and its shadow is the counter's rl::atomic<uint64_t>.
 *
 * The semantics are Relacy's own futex model (relacy/stdlib/pthread.hpp,
 * rl_int_futex_impl), on a 64-bit word:
 *
 *   FUTEX_WAIT(_BITSET) addr, val: a scheduling point, a seq_cst fence,
 *       then, with preemption off, an acquire load of the word; if its low
 *       32 bits differ from val, return EAGAIN; otherwise block on the
 *       word until a FUTEX_WAKE (timed only when a timeout is passed;
 *       never a spurious wake-up).
 *   FUTEX_WAKE addr, n: a scheduling point, a seq_cst fence, then wake up
 *       to n waiters (a wake synchronizes with the wait it ends).
 *
 * The load and the block happen with no scheduling point between them,
 * which is the kernel's guarantee: a FUTEX_WAKE cannot fall between the
 * value check and the sleep. A thread that blocks and is never woken is
 * reported by Relacy as DEADLOCK once every other thread has finished:
 * that is how a lost wake-up shows.
 */
#ifndef WEFT_MODEL_FUTEX_HPP
#define WEFT_MODEL_FUTEX_HPP

#include "weft_model_atomics.hpp"

namespace weft_model {

inline long futex_syscall(long nr, ...)
{
    if (nr != SYS_futex) {
        misuse("syscall other than futex in the model", nullptr, $);
    }
    va_list ap;
    va_start(ap, nr);
    const uint32_t *uaddr = va_arg(ap, const uint32_t *);
    int op = va_arg(ap, int);
    unsigned val = va_arg(ap, unsigned);
    const struct timespec *timeout = va_arg(ap, const struct timespec *);
    va_end(ap);

    /* The futex word is the low half of a 64-bit event-count word. */
    rl::atomic<uint64_t> &w =
        atom<uint64_t>(reinterpret_cast<const uint64_t *>(uaddr), $);
    rl::context &c = rl::ctx();
    int cmd = op & ~FUTEX_PRIVATE_FLAG;
    if (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) {
        c.sched();
        c.atomic_thread_fence_seq_cst();
        uint64_t v0;
        {
            rl::preemption_disabler pd(c);
            v0 = w.load(rl::mo_acquire, $);
        }
        if ((uint32_t)v0 != (uint32_t)val) {
            errno = EAGAIN;
            return -1;
        }
        rl::unpark_reason r = w.wait(c, timeout != NULL, false, $);
        if (r == rl::unpark_reason_timeout) {
            errno = ETIMEDOUT;
            return -1;
        }
        return 0;
    }
    if (cmd == FUTEX_WAKE) {
        if ((int)val <= 0) {
            return 0;
        }
        c.sched();
        c.atomic_thread_fence_seq_cst();
        return (long)w.wake(c, (rl::thread_id_t)val, $);
    }
    misuse("futex operation not modelled", uaddr, $);
}

} /* namespace weft_model */

#endif /* WEFT_MODEL_FUTEX_HPP */
