/*
 * fuzz_deque.c - libFuzzer target: Chase-Lev deque operation scripts,
 * single-threaded, against an array model.
 *
 * Input: byte 0 picks the initial capacity (2^1 .. 2^6 slots, so grows
 * happen early and often); every following byte is one operation:
 *
 *   op % 8 == 0..2  push (weft__deque_push, growing as needed)
 *   op % 8 == 3     try_push (never grows; may refuse when "full")
 *   op % 8 == 4     pop (owner, LIFO)
 *   op % 8 == 5     steal (thief side, FIFO; run on the same thread, so it
 *                   never loses a race and must not return RETRY)
 *   op % 8 == 6     pop_known with the owner's bottom
 *   op % 8 == 7     arm the allocation injector for the next allocation,
 *                   so the next grow fails (push must return WEFT_ENOMEM
 *                   and push nothing); op / 8 odd pushes a burst of
 *                   op / 16 + 1 items at once (forcing grows)
 *
 * Checked after every operation: each item comes out exactly once, pops
 * in LIFO and steals in FIFO order, empty means NULL / STEAL_EMPTY,
 * size_hint equals the model's size, the buffer never holds more than its
 * capacity. At the end the deque is finalized and every block it
 * allocated is freed (weft__alloc_live()).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primitives/alloc.h"
#include "primitives/deque.h"

#define MODEL_MAX 8192

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_deque: check failed: %s (line %d)\n",       \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* The model: items [head, tail) of a ring; item values are
 * sequence numbers + 1, so no item is NULL and each is unique. */
static uintptr_t model[MODEL_MAX]; /* ring: index % MODEL_MAX */
static size_t head;
static size_t tail;
static uintptr_t next_item;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
model_reset(void)
{
    head = 0;
    tail = 0;
    next_item = 1;
}

static size_t
model_size(void)
{
    return tail - head;
}

static void
do_push(struct weft__deque *dq, bool fail_grow)
{
    if (model_size() >= MODEL_MAX) {
        return;
    }
    uintptr_t item = next_item++;
    if (fail_grow) {
        weft__alloc_set_fail_after(0);
    }
    uint64_t failures = weft__alloc_failures();
    weft_status_t st = weft__deque_push(dq, (void *)item);
    bool injected = weft__alloc_failures() != failures;
    weft__alloc_set_fail_after(-1);
    if (st == WEFT_OK) {
        CHECK(!injected); /* a failed grow must not report success */
        model[tail++ % MODEL_MAX] = item;
    } else {
        CHECK(st == WEFT_ENOMEM);
        CHECK(injected);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    int64_t live = weft__alloc_live();
    struct weft__deque dq;
    unsigned int log2 = 1 + data[0] % 6;
    CHECK(weft__deque_init(&dq, log2) == WEFT_OK);
    model_reset();

    for (size_t i = 1; i < size; i++) {
        uint8_t op = data[i];
        switch (op % 8) {
        case 0:
        case 1:
        case 2:
            do_push(&dq, false);
            break;
        case 3: {
            if (model_size() >= MODEL_MAX) {
                break;
            }
            uintptr_t item = next_item;
            if (weft__deque_try_push(&dq, (void *)item)) {
                next_item++;
                model[tail++ % MODEL_MAX] = item;
            }
            break;
        }
        case 4:
        case 6: {
            void *got = (op % 8 == 4)
                            ? weft__deque_pop(&dq)
                            : weft__deque_pop_known(
                                  &dq, weft__load_relaxed_i64(&dq.bottom));
            if (model_size() == 0) {
                CHECK(got == NULL);
            } else {
                CHECK(got == (void *)model[(tail - 1) % MODEL_MAX]);
                tail--;
            }
            break;
        }
        case 5: {
            void *got = NULL;
            enum weft__steal r = weft__deque_steal(&dq, &got);
            CHECK(r != WEFT__STEAL_RETRY);
            if (model_size() == 0) {
                CHECK(r == WEFT__STEAL_EMPTY);
            } else {
                CHECK(r == WEFT__STEAL_OK);
                CHECK(got == (void *)model[head % MODEL_MAX]);
                head++;
            }
            break;
        }
        case 7:
            if ((op / 8) % 2 == 0) {
                do_push(&dq, true);
            } else {
                for (int k = 0; k < op / 16 + 1; k++) {
                    do_push(&dq, false);
                }
            }
            break;
        }
        CHECK(weft__deque_size_hint(&dq) == (int64_t)model_size());
        CHECK((int64_t)model_size() <= dq.buf->mask + 1);
    }
    /* Drain by alternating pops and steals; every item comes out once. */
    for (bool from_top = false; model_size() > 0; from_top = !from_top) {
        void *got = NULL;
        if (from_top) {
            CHECK(weft__deque_steal(&dq, &got) == WEFT__STEAL_OK);
            CHECK(got == (void *)model[head++ % MODEL_MAX]);
        } else {
            got = weft__deque_pop(&dq);
            CHECK(got == (void *)model[--tail % MODEL_MAX]);
        }
    }
    CHECK(weft__deque_pop(&dq) == NULL);
    weft__deque_fini(&dq);
    CHECK(weft__alloc_live() == live);
    return 0;
}
