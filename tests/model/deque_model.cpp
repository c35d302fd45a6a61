/*
 * deque_model.cpp - Relacy model checking of the real Chase-Lev deque.
 *
 * This file #includes primitives/deque.c (and through it deque.h), the
 * same source the library is built from, compiled as C++ with
 * WEFT_MODEL_RELACY defined: primitives/atomics.h then maps every
 * named-ordering operation to Relacy's C11 memory-model simulator
 * (tests/model/relacy/weft_model_atomics.hpp). A mutant build puts a
 * copy of deque.{h,c} with one seeded bug (tests/model/mutate.sh) first
 * on the include path instead; the harness is the same.
 *
 * Each scenario is a Relacy test: a fixed program per thread (thread 0 is
 * the owner; the others are thieves), run in every interleaving and with
 * every value each load may return under the C11 model (Relacy's full
 * search, which lets a load return the latest store or the one before it).
 * The harness checks, in every execution:
 *
 *  - no item is taken twice (by two thieves, or by a thief and the owner);
 *  - no item is lost: after the threads finish, the owner pops what is
 *    left, and every pushed item has been taken exactly once;
 *  - a take returns a pointer that was pushed, and the item's contents,
 *    written with a plain (rl::var) store before the push, are visible to
 *    whoever took it: a missing happens-before edge is a data race, which
 *    Relacy reports on the rl::var;
 *  - Relacy's own checks: uninitialized loads, leaks (the deque is
 *    finalized at the end, and its buffers come from Relacy's heap).
 *
 * docs/memory-model.md, "Model checking", lists the scenarios, the mutants and
 * what each mutant produces.
 */
#include "weft_model_relacy.hpp"

#include "weft_model_atomics.hpp"

#include "model_driver.hpp"

#include "alloc.h"

/*
 * The model's allocator. deque.c allocates with WEFT__ALLOC() (alloc.h);
 * the model replaces that macro, because the real one registers an
 * allocation site and calls the fault injector, and because in C++ its
 * void * would not convert to struct weft__deque_buf * as it does in C.
 * Plain calloc/free, not Relacy's heap: Relacy makes every free a two-way
 * scheduling choice, which would double the search per buffer freed at
 * fini for nothing (buffers are freed only after the threads stop). The
 * harness checks for leaks itself (model_live).
 */
static long model_live = 0;

static void *
model_alloc(size_t n)
{
    model_live++;
    return (::calloc)(1, n != 0 ? n : 1);
}

void
weft__free(void *p)
{
    if (p != NULL) {
        model_live--;
        (::free)(p);
    }
}

#undef WEFT__ALLOC
#define WEFT__ALLOC(n) (weft_model::anyptr{model_alloc(n)})

#include "deque.c"

#ifndef WEFT_MODEL_VARIANT
#define WEFT_MODEL_VARIANT "deque_model"
#endif

namespace {

const int NOT_TAKEN = -1;
const int OWNER = 0;

struct item {
    rl::var<int> payload; /* plain data the taker reads */
};

template <class Derived, int Threads, int MaxItems>
struct deque_test : rl::test_suite<Derived, Threads> {
    /* First member: its registry outlives every other member. */
    weft_model::registry_scope shadows;
    struct weft__deque dq;
    item items[MaxItems];
    int taken_by[MaxItems]; /* harness bookkeeping, not shared memory */
    int pushed = 0;

    deque_test()
    {
        for (int i = 0; i < MaxItems; i++) {
            taken_by[i] = NOT_TAKEN;
        }
    }

    void init(unsigned log2_capacity)
    {
        weft_status_t st = weft__deque_init(&dq, log2_capacity);
        RL_ASSERT(st == WEFT_OK);
        /* init writes dq->buf with a plain store before sharing. */
        weft_model::adopt(reinterpret_cast<void **>(&dq.buf), $);
    }

    /* Owner: write the next item's contents, then push it. */
    void push_next()
    {
        RL_ASSERT(pushed < MaxItems);
        int i = pushed++;
        items[i].payload($) = i + 1;
        weft_status_t st = weft__deque_push(&dq, &items[i]);
        RL_ASSERT(st == WEFT_OK);
    }

    /* Owner: n pushes. */
    void push_n(int n)
    {
        for (int i = 0; i < n; i++) {
            push_next();
        }
    }

    /* Owner: a private push (a frame), publishing when asked. */
    void push_private_next()
    {
        RL_ASSERT(pushed < MaxItems);
        int i = pushed++;
        items[i].payload($) = i + 1;
        weft_status_t st = weft__deque_push_private(&dq, &items[i]);
        RL_ASSERT(st == WEFT_OK);
        if (weft__deque_should_publish(&dq)) {
            weft__deque_publish(&dq);
        }
    }

    void took(void *it, int who)
    {
        RL_ASSERT(it != NULL && "a successful take returned NULL");
        item *x = static_cast<item *>(it);
        ptrdiff_t i = x - items;
        RL_ASSERT(i >= 0 && i < MaxItems && "a take returned a pointer "
                                            "that was never pushed");
        int v = x->payload($);
        RL_ASSERT(v == i + 1 && "the taker does not see the item's contents");
        RL_ASSERT(taken_by[i] == NOT_TAKEN && "an item was taken twice");
        taken_by[i] = who;
    }

    void owner_pop()
    {
        void *it = weft__deque_pop(&dq);
        if (it != NULL) {
            took(it, OWNER);
        }
    }

    void thief_steal(int who)
    {
        void *it = NULL;
        enum weft__steal r = weft__deque_steal(&dq, &it);
        if (r == WEFT__STEAL_OK) {
            took(it, who);
        } else if (r == WEFT__STEAL_EMPTY) {
            /* As the executor's thieves do: ask for private items. */
            weft__deque_request(&dq);
        }
    }

    /* A batch steal of up to cap items (WEFT__STEAL_BATCH_MAX is 2 in
     * the model: tests/model/CMakeLists.txt). */
    void thief_steal_batch(int who, int64_t cap)
    {
        void *its[WEFT__STEAL_BATCH_MAX];
        int64_t k = 0;
        enum weft__steal r = weft__deque_steal_batch(&dq, its, cap, &k);
        if (r == WEFT__STEAL_OK) {
            RL_ASSERT(k >= 1 && k <= cap && "a batch of a bad size");
            for (int64_t i = 0; i < k; i++) {
                took(its[i], who);
            }
        } else {
            RL_ASSERT(k == 0);
            if (r == WEFT__STEAL_EMPTY) {
                weft__deque_request(&dq);
            }
        }
    }

    void after()
    {
        /* Single-threaded now: the owner drains what is left. */
        RL_ASSERT(dq.batchers == 0 && "a batch thief did not leave");
        void *it;
        while ((it = weft__deque_pop(&dq)) != NULL) {
            took(it, OWNER);
        }
        for (int i = 0; i < pushed; i++) {
            RL_ASSERT(taken_by[i] != NOT_TAKEN && "an item was lost");
        }
        weft__deque_fini(&dq);
        RL_ASSERT(model_live == 0 && "a deque buffer leaked");
    }
};

/*
 * last_item: the owner pushes one item and pops it while a thief steals
 * (docs/memory-model.md 1.5: the last-element race, plus publication of
 * the item by push).
 */
struct last_item : deque_test<last_item, 2, 1> {
    void before() { init(2); }
    void thread(unsigned t)
    {
        if (t == 0) {
            push_next();
            owner_pop();
        } else {
            thief_steal(1);
            thief_steal(1);
        }
    }
};

/*
 * pop_vs_two_steals: two items; the owner pops while two thieves each
 * steal once. The interleaving that needs the store->load barrier in pop:
 * thief 1 takes item 0 (top 0 -> 1); thief 2 reads top = 1 and the old
 * bottom = 2; the owner decrements bottom to 1 and must not read the old
 * top = 0, or it takes item 1 without a CAS while thief 2's CAS succeeds.
 */
struct pop_vs_two_steals : deque_test<pop_vs_two_steals, 3, 2> {
    void before()
    {
        init(2);
        push_next();
        push_next();
    }
    void thread(unsigned t)
    {
        if (t == 0) {
            owner_pop();
        } else {
            thief_steal((int)t);
        }
    }
};

/*
 * grow: capacity 2, full; the owner pushes a third item (weft__deque_grow
 * copies [top, bottom) into a 4-slot buffer and store-releases it) and
 * pops, while a thief steals twice: its steals may read the old buffer
 * pointer, the new one, or race the owner's fresh load of top in push.
 */
struct grow : deque_test<grow, 2, 3> {
    void before()
    {
        init(1);
        push_next();
        push_next();
    }
    void thread(unsigned t)
    {
        if (t == 0) {
            push_next();
            owner_pop();
        } else {
            thief_steal(1);
            thief_steal(1);
        }
    }
};

/*
 * push_steal_wrap: capacity 2; the owner pushes, pops and pushes again,
 * so the second push may reuse a slot (index 1 after pop restores bottom;
 * wrap-around at index 2) while a thief steals twice.
 */
struct push_steal_wrap : deque_test<push_steal_wrap, 2, 3> {
    void before() { init(1); }
    void thread(unsigned t)
    {
        if (t == 0) {
            push_next();
            push_next();
            owner_pop();
            push_next();
        } else {
            thief_steal(1);
            thief_steal(1);
        }
    }
};

/*
 * split: the private part (Lace's split). The owner pushes two items
 * privately (the first is published at once: the public part starts
 * empty; the second when a thief has asked), then pops twice, private
 * items with plain accesses, public ones with the Chase-Lev pop, while a
 * thief steals, asks when it finds nothing, and steals again. Checks
 * that a published item's contents are visible to the thief (the release
 * store of bottom in weft__deque_publish()) and that no private item is
 * ever stolen (taken twice).
 */
struct split : deque_test<split, 2, 3> {
    void before() { init(2); }
    void thread(unsigned t)
    {
        if (t == 0) {
            push_private_next();
            push_private_next();
            owner_pop();
            push_private_next();
            owner_pop();
        } else {
            thief_steal(1);
            thief_steal(1);
            thief_steal(1);
        }
    }
};

/*
 * unpublish: the owner pushes two items, takes the newer one private
 * (weft__deque_unpublish, k = 1: the older stays public above it) and
 * pops twice, while two thieves steal once each: one takes the older
 * item, and the other reaches for the newer one with the old bottom.
 * The owner's private pop must never get an item a thief also took:
 * that needs the exchange of bottom before the look at top, and the look
 * itself (the two mutants below remove one each).
 */
struct unpublish : deque_test<unpublish, 3, 2> {
    void before() { init(2); }
    void thread(unsigned t)
    {
        if (t == 0) {
            push_next();
            push_next();
            (void)weft__deque_unpublish(&dq, 1);
            owner_pop();
            owner_pop();
        } else {
            thief_steal((int)t);
        }
    }
};

/*
 * batch_pop: four items; the owner pops three times while one thief
 * takes a batch (two items, the model's WEFT__STEAL_BATCH_MAX) and
 * another steals once. The interleaving that needs the owner's margin:
 * the batch thief reads top 0 and bottom 4, and before its CAS the owner
 * pops index 3, then 2, then reaches for index 1, inside the batch; it
 * must see the announced batch and take index 0 by CAS instead (the
 * mutants below drop the margin or the announce).
 */
struct batch_pop : deque_test<batch_pop, 3, 4> {
    void before()
    {
        init(3);
        push_n(4);
    }
    void thread(unsigned t)
    {
        if (t == 0) {
            owner_pop();
            owner_pop();
            owner_pop();
        } else if (t == 1) {
            thief_steal_batch(1, 2);
        } else {
            thief_steal(2);
        }
    }
};

/*
 * batch_unpublish: four items; the owner pops two, then takes the newest
 * of the two left private (weft__deque_unpublish, k = 1) and pops twice,
 * while a thief takes a batch with the bottom it read before the pops:
 * the owner may keep index 1 private only when no batch can reach it.
 */
struct batch_unpublish : deque_test<batch_unpublish, 2, 4> {
    void before()
    {
        init(3);
        push_n(4);
    }
    void thread(unsigned t)
    {
        if (t == 0) {
            owner_pop();
            owner_pop();
            (void)weft__deque_unpublish(&dq, 1);
            owner_pop();
            owner_pop();
        } else {
            thief_steal_batch(1, 2);
        }
    }
};

const weft_model::scenario scenarios[] = {
    {"batch_pop", "4 items, 3 pops vs a batch steal and a steal",
     weft_model::run_test<batch_pop>},
    {"batch_unpublish", "4 items, 2 pops, unpublish, 2 pops vs a batch",
     weft_model::run_test<batch_unpublish>},
    {"unpublish", "2 items, the newer taken private, 2 pops vs 2 steals",
     weft_model::run_test<unpublish>},
    {"split", "private pushes published on request vs 3 steals",
     weft_model::run_test<split>},
    {"last_item", "push 1, then pop vs 1 steal",
     weft_model::run_test<last_item>},
    {"pop_vs_two_steals", "2 items; pop vs 2 thieves stealing once each",
     weft_model::run_test<pop_vs_two_steals>},
    {"grow", "capacity 2, full: push (grows) + pop vs 2 steals",
     weft_model::run_test<grow>},
    {"push_steal_wrap", "capacity 2: push, push, pop, push vs 2 steals",
     weft_model::run_test<push_steal_wrap>},
};

} /* namespace */

int
main(int argc, char **argv)
{
    return weft_model::drive(argc, argv, WEFT_MODEL_VARIANT, scenarios,
                             sizeof(scenarios) / sizeof(scenarios[0]));
}
