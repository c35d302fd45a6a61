/*
 * parker_model.cpp - Relacy model checking of the park/wake protocol.
 *
 * This file #includes primitives/parker.c (and through it parker.h), the
 * same source the library is built from, compiled as C++ with
 * WEFT_MODEL_RELACY defined, so that parker.c's own atomics (the faa on
 * sleepers, its fences, the load of sleepers) run on Relacy's C11
 * simulator. Two things around it are models:
 *
 *  - ck_ec64 (the event count parker.c sleeps on): tests/model/relacy/
 *    ck_ec.h mirrors ck 0.7.1's multiple-producer algorithm;
 *  - the futex: parker.c's syscall() goes to weft_model::futex_syscall
 *    (tests/model/relacy/weft_model_futex.hpp).
 *
 * The protocol under test is the caller's (docs/memory-model.md,
 * section 2):
 *
 *   sleeper                                  waker
 *   for (;;) {                               cond = n       (release)
 *     if (cond >= want) return;  (acquire)   weft__parker_wake(p)
 *     t = weft__parker_prepare(p)
 *     if (cond >= want) { cancel; return; }
 *     weft__parker_park(p, t, NULL)          (no deadline: a missed
 *   }                                         wake-up sleeps forever)
 *
 * A lost wake-up is a sleeper blocked in the futex after the waker has
 * finished: Relacy reports it as DEADLOCK. After the threads finish, the
 * harness also checks that every sleeper has unregistered (sleepers == 0).
 *
 * Caller-side mutants (the order of the caller's steps; a template
 * parameter of the scenario, so each is a separately compiled variant of
 * the harness code, run as its own scenario "one_sleeper.<mutant>"):
 *   wake_before_publish  the waker looks for sleepers (weft__parker_wake)
 *       before it publishes the condition
 *   no_recheck  the sleeper does not re-check the condition between
 *       prepare and park
 *   wake_hint  the waker uses weft__parker_wake_hint(), the documented
 *       fast path without the barrier (docs/memory-model.md 2.3): it must
 *       lose wake-ups, which is why its callers need their own backstop
 * Source mutants of parker.c (parker_no_waker_fence,
 * parker_no_sleeper_fence) come from tests/model/mutate.sh.
 */
#include "weft_model_relacy.hpp"

#include "weft_model_atomics.hpp"
#include "weft_model_futex.hpp"

#include "model_driver.hpp"

/* parker.c's futex calls go to the model futex. <unistd.h> is already
 * included (weft_model_relacy.hpp), so its declaration is untouched. */
#define syscall weft_model::futex_syscall

#include "parker.c"

#undef syscall

#ifndef WEFT_MODEL_VARIANT
#define WEFT_MODEL_VARIANT "parker_model"
#endif

namespace {

/* How the caller uses the parker: the real order, or a mutant. */
enum caller {
    CALLER_REAL,
    CALLER_WAKE_BEFORE_PUBLISH,
    CALLER_NO_RECHECK,
    CALLER_WAKE_HINT,
};

template <class Derived, int Threads, caller C>
struct parker_test : rl::test_suite<Derived, Threads> {
    /* First member: its registry outlives every other member. */
    weft_model::registry_scope shadows;
    struct weft__parker p;
    uint32_t cond; /* the caller's condition: items published so far */

    void before()
    {
        weft__parker_init(&p);
        /* init writes wakes with a plain store before sharing. */
        weft_model::adopt(&p.wakes, $);
        weft__store_relaxed_u32(&cond, 0);
    }

    /* Sleeper: return once cond >= want. */
    void sleep_until(uint32_t want)
    {
        for (;;) {
            if (weft__load_acq_u32(&cond) >= want) {
                return;
            }
            uint64_t ticket = weft__parker_prepare(&p);
            if (C != CALLER_NO_RECHECK && weft__load_acq_u32(&cond) >= want) {
                weft__parker_cancel(&p);
                return;
            }
            (void)weft__parker_park(&p, ticket, NULL);
        }
    }

    /* Waker: publish cond = n and wake the sleepers. */
    void publish(uint32_t n)
    {
        if (C == CALLER_WAKE_BEFORE_PUBLISH) {
            weft__parker_wake(&p);
            weft__store_rel_u32(&cond, n);
        } else if (C == CALLER_WAKE_HINT) {
            weft__store_rel_u32(&cond, n);
            weft__parker_wake_hint(&p);
        } else {
            weft__store_rel_u32(&cond, n);
            weft__parker_wake(&p);
        }
    }

    void after()
    {
        RL_ASSERT(weft__load_relaxed_u32(&p.sleepers) == 0 &&
                  "a sleeper is still registered");
    }
};

/* one_sleeper: one sleeper, one waker publishing once. */
template <caller C>
struct one_sleeper : parker_test<one_sleeper<C>, 2, C> {
    void thread(unsigned t)
    {
        if (t == 0) {
            this->sleep_until(1);
        } else {
            this->publish(1);
        }
    }
};

/* two_sleepers: two sleepers on one parker, one wake for both (the wake
 * must reach every registered sleeper, and the event-count flag is set
 * by whichever sleeper upgrades it first). */
struct two_sleepers : parker_test<two_sleepers, 3, CALLER_REAL> {
    void thread(unsigned t)
    {
        if (t < 2) {
            sleep_until(1);
        } else {
            publish(1);
        }
    }
};

/* two_rounds: the sleeper waits twice on the same parker (the second wait
 * starts from a moved event count whose flag may still be set or cleared)
 * while the waker publishes twice. */
struct two_rounds : parker_test<two_rounds, 2, CALLER_REAL> {
    void thread(unsigned t)
    {
        if (t == 0) {
            sleep_until(1);
            sleep_until(2);
        } else {
            publish(1);
            publish(2);
        }
    }
};

const weft_model::scenario scenarios[] = {
    {"one_sleeper", "1 sleeper, 1 waker",
     weft_model::run_test<one_sleeper<CALLER_REAL>>},
    {"two_sleepers", "2 sleepers, 1 waker (wake all)",
     weft_model::run_test<two_sleepers>},
    {"two_rounds", "1 sleeper waiting twice, 1 waker publishing twice",
     weft_model::run_test<two_rounds>},
    {"one_sleeper.wake_before_publish",
     "mutant: the waker looks for sleepers before publishing",
     weft_model::run_test<one_sleeper<CALLER_WAKE_BEFORE_PUBLISH>>},
    {"one_sleeper.no_recheck",
     "mutant: the sleeper does not re-check after prepare",
     weft_model::run_test<one_sleeper<CALLER_NO_RECHECK>>},
    {"one_sleeper.wake_hint",
     "the documented lossy fast path (weft__parker_wake_hint)",
     weft_model::run_test<one_sleeper<CALLER_WAKE_HINT>>},
};

} /* namespace */

int
main(int argc, char **argv)
{
    return weft_model::drive(argc, argv, WEFT_MODEL_VARIANT, scenarios,
                             sizeof(scenarios) / sizeof(scenarios[0]));
}
