/*
 * executor.c - worker threads, scheduling, pools, injection, shutdown.
 *
 * DESIGN
 *
 * Each worker owns a Chase-Lev deque (primitives/deque.h). A worker looks
 * for work in this order: its own deque (LIFO pop), then one round of
 * stealing starting at a random victim (FIFO steal), then the injection
 * queue; about one look in 64 (chosen at random) starts with the injection
 * queue so that outside submissions are not starved by a worker that
 * keeps feeding itself. When a
 * whole pass finds nothing the worker spins (worker_idle_spin(): backoff,
 * then yields, for idle_spin_us), then parks on the executor's idle
 * parker (primitives/parker.h, a ck_ec64).
 *
 * Spawning from a worker pushes on its own deque and then checks, with one
 * relaxed load and no barrier, whether any worker sleeps
 * (weft__parker_wake_hint). That check can miss a worker that is
 * registering as a sleeper at the same instant; the miss costs latency,
 * never a stranded task, because:
 *   - the pusher is awake and will pop its own task unless it blocks;
 *   - a worker blocks only in future_park(), which first wakes sleepers
 *     with a full barrier (weft__parker_wake) when its deque is not empty;
 *   - a sleeping worker also wakes on its own after WEFT__IDLE_BACKSTOP_MS
 *     and looks again, which bounds the latency of a miss even if a task
 *     body blocks the pusher in user code.
 * Submissions from other threads go through the injection queue (a mutex
 * and an intrusive FIFO: outside submission is not the fast path, and a
 * mutex gives the simple FIFO fairness and shutdown check those callers
 * need) and always wake with the barrier.
 *
 * Pools: a task/future object comes from the spawning worker's free list
 * (no malloc, no atomic). Objects freed on a worker go to that worker's
 * list (up to WEFT__LOCAL_FREE_MAX), others to the executor-wide Treiber
 * stack, which is only ever emptied whole (fas), so it has no ABA. Slabs
 * (WEFT__SLAB_OBJECTS objects, doubling per slab up to
 * WEFT__SLAB_OBJECTS_MAX) are malloc'ed when both are empty and freed at
 * destroy: memory is bounded by the peak number of live tasks plus the
 * per-worker caches, plus the last slab's unused part (less than half of
 * the pool, and less than WEFT__SLAB_OBJECTS_MAX objects past the cap).
 *
 * Shutdown and quiescence: every task is counted once when queued
 * (w->spawned on a worker, ex->ext_submitted from outside) and once when it
 * ends (w->ended: only workers end tasks). After shutdown begins no outside
 * submission is accepted, so only running tasks can create tasks. The
 * shutdown caller reads all "ended" counters (acquire), then all "spawned"
 * counters (acquire). A task counted as ended was counted as spawned
 * before (release/acquire along the deque or queue hand-off), so E <= S;
 * if E == S, no task was live at the instant between the two passes, and
 * since only live tasks spawn, none will ever be again.
 *
 * Invariants:
 *  1. A task is taken for running exactly once: by the deque pop, a steal
 *     CAS, or the injection queue under ext_lock.
 *  2. Every queued task ends exactly once (future.c), and its end is
 *     counted after any continuation it schedules is counted as queued.
 *  3. Outside submissions are checked against run_state under ext_lock,
 *     and run_state only moves forward (ACCEPTING -> DRAINING ->
 *     CANCELLING) under ext_lock.
 *  4. No thread parks with tasks in its deque without first waking idle
 *     workers with a full barrier.
 *  5. Future objects are freed to a pool only when ended and unreferenced;
 *     slabs are freed only at destroy after every worker has exited.
 */
#include "executor.h"
#include "executor/each.h"
#include "executor/frame.h"
#include "executor/pin.h"
#include "primitives/alloc.h"
#include "primitives/clock.h"

#include <weft/executor.h>
#include <weft/future.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WEFT__MAX_WORKERS 4096
#define WEFT__IDLE_SPINS 20
#define WEFT__IDLE_SPIN_US_DEFAULT 1000u
#define WEFT__IDLE_SPIN_US_MAX 1000000u
#define WEFT__IDLE_BACKSTOP_MS 100
#define WEFT__STEAL_RETRIES 4

__thread struct weft__worker *weft__tls_worker
    __attribute__((tls_model("initial-exec")));

#ifdef WEFT_TEST_SMALL_CAPACITY
#define WEFT__DEQUE_LOG2 1
#else
#define WEFT__DEQUE_LOG2 10
#endif

/* ---- pools ----------------------------------------------------------- */

static size_t
pool_object_size(void)
{
    size_t s = sizeof(struct weft_future);
    return (s + WEFT__CACHELINE - 1) & ~(size_t)(WEFT__CACHELINE - 1);
}

/* Slabs this large are prefaulted in one call before they are written. */
#define WEFT__SLAB_PREFAULT_BYTES ((size_t)256 * 1024)

/*
 * Allocate the next slab of the list whose newest slab is prev_slab (NULL
 * for the first) and thread its objects into a list; NULL on failure.
 * When a slab larger than the first size cannot be had, one of the first
 * size is tried before giving up (the list's growth starts over from it).
 */
static struct weft__slab *
pool_slab_new(weft_executor_t *ex, const struct weft__slab *prev_slab,
              struct weft_future **first, struct weft_future **last)
{
    uint32_t n = WEFT__SLAB_OBJECTS;
    if (prev_slab != NULL) {
        n = prev_slab->nobj < WEFT__SLAB_OBJECTS_MAX / 2
                ? prev_slab->nobj * 2
                : WEFT__SLAB_OBJECTS_MAX;
    }
    size_t osz = pool_object_size();
    size_t total;
    struct weft__slab *s;
    for (;;) {
        /* One allocation site for both sizes (the failure sweep fails
         * each site once; tests/test_alloc_failure.c). */
        total = WEFT__CACHELINE + osz * n;
        s = WEFT__ALLOC_ALIGNED(WEFT__CACHELINE, total);
        if (s != NULL || n == WEFT__SLAB_OBJECTS) {
            break;
        }
        n = WEFT__SLAB_OBJECTS;
    }
    if (s == NULL) {
        return NULL;
    }
    if (total >= WEFT__SLAB_PREFAULT_BYTES) {
        /* Every byte is written below: take the page faults in one go. */
        weft__alloc_prefault(s, total);
    }
    s->nobj = n;
    char *base = (char *)s + WEFT__CACHELINE;
    struct weft_future *prev = NULL;
    for (int i = (int)n - 1; i >= 0; i--) {
        struct weft_future *f = (struct weft_future *)(base + osz * i);
        memset(f, 0, sizeof(*f));
        f->ex = ex;
        f->pool_next = prev;
        prev = f;
    }
    *first = prev;
    *last = (struct weft_future *)(base + osz * (n - 1));
    return s;
}

/* Take every object from the executor-wide free stack. */
static struct weft_future *
pool_take_stack(weft_executor_t *ex)
{
    /* Relaxed: a cheap emptiness check before the locked exchange. */
    if (weft__load_relaxed_ptr((void *const *)&ex->free_stack) == NULL) {
        return NULL;
    }
    /*
     * Take the whole stack: pop-all cannot suffer ABA.
     * Pairs with: the CAS push in pool_push_chain(); acquiring the
     * objects' contents written before they were pushed.
     */
    return weft__fas_ptr((void **)&ex->free_stack, NULL);
}

struct weft_future *
weft__pool_refill(struct weft__worker *w)
{
    if (__builtin_expect(weft__debug_pool_bypass(w->ex), 0)) {
        /* Debug mode keeps w's free list empty (debug.c). */
        return weft__pool_get_external(w->ex);
    }
    /* The spill first: it is ours, and the most recently used. */
    struct weft_future *list = w->spill;
    if (list != NULL) {
        w->spill = NULL;
        w->spill_count = 0;
    } else {
        list = pool_take_stack(w->ex);
    }
    if (list == NULL) {
        struct weft_future *last;
        struct weft__slab *s = pool_slab_new(w->ex, w->slabs, &list, &last);
        if (s == NULL) {
            return NULL;
        }
        s->next = w->slabs;
        w->slabs = s;
    }
    w->free_count = 0;
    w->free_list = list->pool_next;
    return list;
}

struct weft_future *
weft__pool_get_external(weft_executor_t *ex)
{
    pthread_mutex_lock(&ex->ext_lock);
    if (ex->ext_free == NULL) {
        ex->ext_free = pool_take_stack(ex);
    }
    if (ex->ext_free == NULL) {
        struct weft_future *last;
        struct weft__slab *s =
            pool_slab_new(ex, ex->ext_slabs, &ex->ext_free, &last);
        if (s != NULL) {
            s->next = ex->ext_slabs;
            ex->ext_slabs = s;
        }
    }
    struct weft_future *f = ex->ext_free;
    if (f != NULL) {
        ex->ext_free = f->pool_next;
    }
    pthread_mutex_unlock(&ex->ext_lock);
    return f;
}

/* Push the chain first..last (linked by pool_next) on ex's free stack. */
static void
pool_push_chain(weft_executor_t *ex, struct weft_future *first,
                struct weft_future *last)
{
    void *head = weft__load_relaxed_ptr((void *const *)&ex->free_stack);
    for (;;) {
        last->pool_next = head;
        /*
         * Publish the chain (and its links) on the stack.
         * Pairs with: the fas in pool_take_stack().
         */
        if (weft__cas_value_ptr((void **)&ex->free_stack, head, first, &head)) {
            return;
        }
    }
}

void
weft__pool_put_slow(struct weft_future *f)
{
    pool_push_chain(f->ex, f, f);
}

void
weft__pool_spill_flush(struct weft__worker *w)
{
    pool_push_chain(w->ex, w->spill, w->spill_tail);
    w->spill = NULL;
    w->spill_count = 0;
}

/* ---- large blocks and the spare --------------------------------------- */

/* In front of every block of weft__block_get(); one cache line, so the
 * block after it is line-aligned (struct weft__each asks for that). */
union block_hdr {
    size_t size; /* usable bytes after the header */
    char line_[WEFT__CACHELINE];
};

void *
weft__block_get(weft_executor_t *ex, size_t size)
{
    union block_hdr *h = NULL;
    if (size >= WEFT__SPARE_MIN) {
        /* Take the spare. Pairs with: the fas in weft__block_put() that
         * left it (its header was written before). */
        h = weft__fas_ptr(&ex->spare, NULL);
        if (h != NULL && h->size >= size) {
            return h + 1;
        }
        weft__free(h);
    }
    if (size > SIZE_MAX - sizeof(*h)) {
        return NULL;
    }
    h = WEFT__ALLOC_ALIGNED(WEFT__CACHELINE, sizeof(*h) + size);
    if (h == NULL) {
        return NULL;
    }
    h->size = size;
    return h + 1;
}

void
weft__block_put(weft_executor_t *ex, void *block)
{
    union block_hdr *h = (union block_hdr *)block - 1;
    if (h->size < WEFT__SPARE_MIN || h->size > WEFT__SPARE_MAX) {
        weft__free(h);
        return;
    }
    /* Pairs with: the fas in weft__block_get() (the next call takes it,
     * and sees h->size). */
    weft__free(weft__fas_ptr(&ex->spare, h));
}

/* ---- scheduling ------------------------------------------------------ */

static inline uint64_t
worker_rand(struct weft__worker *w)
{
    /* xorshift64: victim selection needs speed, not quality. */
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w->rng = x;
    return x;
}

weft_status_t
weft__exec_enqueue(weft_executor_t *ex, struct weft__worker *w,
                   struct weft_future *f)
{
    if (w != NULL) {
        /* Counted before it is visible (see weft__counter_inc). */
        weft__counter_inc(&w->spawned);
        weft_status_t st = weft__deque_push(&w->dq, f);
        if (st != WEFT_OK) {
            weft__counter_dec(&w->spawned);
            return st;
        }
        weft__parker_wake_hint(&ex->idle);
        return WEFT_OK;
    }
    pthread_mutex_lock(&ex->ext_lock);
    if (ex->run_state != WEFT__RUN_ACCEPTING) {
        pthread_mutex_unlock(&ex->ext_lock);
        return WEFT_ESHUTDOWN;
    }
    f->next = NULL;
    if (ex->inj_tail != NULL) {
        ex->inj_tail->next = f;
    } else {
        ex->inj_head = f;
    }
    ex->inj_tail = f;
    /* Relaxed: inj_count is a hint; the queue itself is read under
     * ext_lock, whose unlock/lock pair orders f's fields. */
    weft__store_relaxed_u64(&ex->inj_count, ex->inj_count + 1);
    /* Release (the lock alone would do for readers that take it): the
     * count goes up before the task can run and be counted ended.
     * Pairs with: the acquire load of ext_submitted in the quiescence
     * check (exec_quiescent()'s sums), which reads the ended counters
     * first. */
    weft__store_rel_u64(&ex->ext_submitted, ex->ext_submitted + 1);
    pthread_mutex_unlock(&ex->ext_lock);
    /* Full-barrier wake: outside submitters are not on the fast path. */
    weft__parker_wake(&ex->idle);
    return WEFT_OK;
}

struct weft_future *
weft__inject_take(weft_executor_t *ex)
{
    /* Relaxed: a hint; the queue is re-read under ext_lock. */
    if (weft__load_relaxed_u64(&ex->inj_count) == 0) {
        return NULL;
    }
    pthread_mutex_lock(&ex->ext_lock);
    struct weft_future *f = ex->inj_head;
    if (f != NULL) {
        ex->inj_head = f->next;
        if (ex->inj_head == NULL) {
            ex->inj_tail = NULL;
        }
        /* Relaxed: see weft__exec_enqueue(). */
        weft__store_relaxed_u64(&ex->inj_count, ex->inj_count - 1);
    }
    pthread_mutex_unlock(&ex->ext_lock);
    return f;
}

struct weft_future *
weft__worker_steal_from(struct weft__worker *w, struct weft__worker *v)
{
    for (int i = 0; i < WEFT__STEAL_RETRIES; i++) {
        void *items[WEFT__STEAL_BATCH_MAX];
        int64_t k = 0;
        /*
         * A batch goes to our own deque, public (the thieves' order kept:
         * the oldest nearest our top), past the one we run: only as many
         * as fit, so the pushes below cannot fail. push_limit and head
         * are ours; push_limit lags (our top moves when our pops take
         * the last item), so refresh it when it looks short: that grows
         * the buffer only when it is really full.
         */
        int64_t room = w->dq.push_limit - w->dq.head + 1;
        if (w->await_top != NULL) {
            /*
             * Inside a helping wait, one item: a batch would go on top of
             * this worker's deque, and the wait pops its own deque first,
             * so the outer subtrees a batch brings (the oldest items of
             * the victim) would run inline before the wait's own work
             * and delay it (the failfast benchmark's waits went from
             * 40 us to 28 ms in a quarter of its runs).
             */
            room = 0;
        } else if (room < w->ex->steal_batch - 1 &&
                   weft__deque_make_room(&w->dq) == WEFT_OK) {
            room = w->dq.push_limit - w->dq.head + 1;
        }
        enum weft__steal r = weft__deque_steal_batch(
            &v->dq, items,
            room + 1 < w->ex->steal_batch ? room + 1 : w->ex->steal_batch, &k);
        if (r == WEFT__STEAL_OK) {
            for (int64_t j = 0; j < k; j++) {
                struct weft_future *g = items[j];
                /* Relaxed: a hint for leapfrogging waiters
                 * (worker_await()), which look in our deque. */
                weft__store_relaxed_u32(&g->thief, w->index + 1);
                if (j > 0) {
                    (void)weft__deque_try_push(&w->dq, g);
                }
            }
            weft__counter_add(&w->stolen, (uint64_t)k);
            return items[0];
        }
        if (r == WEFT__STEAL_EMPTY) {
            /* The owner may hold private frames: ask it to publish. */
            weft__deque_request(&v->dq);
            break;
        }
    }
    weft__counter_inc(&w->steal_failed);
    return NULL;
}

static struct weft_future *
worker_steal_any(struct weft__worker *w)
{
    weft_executor_t *ex = w->ex;
    unsigned int n = ex->nworkers;
    if (n < 2) {
        return NULL;
    }
    unsigned int start = (unsigned int)(worker_rand(w) % n);
    for (unsigned int i = 0; i < n; i++) {
        unsigned int v = start + i;
        if (v >= n) {
            v -= n;
        }
        if (v == w->index) {
            continue;
        }
        struct weft__worker *victim = &ex->workers[v];
        if (weft__deque_size_hint(&victim->dq) == 0) {
            /* The owner may hold private frames: ask it to publish. */
            weft__deque_request(&victim->dq);
            continue;
        }
        struct weft_future *f = weft__worker_steal_from(w, victim);
        if (f != NULL) {
            return f;
        }
    }
    return NULL;
}

static struct weft_future *
worker_take_injected(struct weft__worker *w)
{
    struct weft_future *f = weft__inject_take(w->ex);
    if (f != NULL) {
        weft__counter_inc(&w->injected);
    }
    return f;
}

struct weft_future *
weft__worker_find(struct weft__worker *w)
{
    struct weft_future *f = weft__deque_pop(&w->dq);
    if (f != NULL) {
        return f;
    }
    if ((worker_rand(w) & 63) == 0 && (f = worker_take_injected(w)) != NULL) {
        return f;
    }
    f = worker_steal_any(w);
    if (f != NULL) {
        return f;
    }
    return worker_take_injected(w);
}

static bool
exec_quiescent(weft_executor_t *ex)
{
    uint64_t ended = 0;
    uint64_t spawned = 0;
    /*
     * Ended counters first, then spawned ones (see the file comment).
     * Only workers end tasks, so only their counters hold ends.
     */
    for (unsigned int i = 0; i < ex->nworkers; i++) {
        /* Pairs with: weft__counter_inc(&w->ended). */
        ended += weft__load_acq_u64(&ex->workers[i].ended);
    }
    /* Pairs with: the release store in weft__exec_enqueue(). */
    spawned += weft__load_acq_u64(&ex->ext_submitted);
    for (unsigned int i = 0; i < ex->nworkers; i++) {
        /* Pairs with: weft__counter_inc(&w->spawned). */
        spawned += weft__load_acq_u64(&ex->workers[i].spawned);
    }
    return ended == spawned;
}

static void
deadline_after_ms(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static bool
worker_should_stop(struct weft__worker *w)
{
    /* Pairs with: the release store of ex->stop in weft_executor_destroy. */
    return weft__load_acq_u32(&w->ex->stop) != 0;
}

/*
 * The idle spin before a worker parks: WEFT__IDLE_SPINS rounds of backoff
 * (about 50 us), then rounds that also yield the CPU, until the
 * configured idle_spin_us (default 1 ms) have passed since the worker ran
 * out of work.
 *
 * Why a millisecond: waking a parked worker costs the waker a futex call
 * and the sleeper tens of microseconds, and on a virtual machine whose
 * vCPU halted while its threads slept, hundreds of microseconds to
 * milliseconds. With the old 50 us spin, a job made of short bursts (a
 * benchmark's repetitions, a request's fork-join) found its workers
 * parked at every burst: on 16 vCPUs nqueens with futures took 3.9 ms
 * (median) against 0.49 ms with this spin. The yield matters beside a
 * busy core: a worker that shares its CPU with a preempted one must let
 * it run (without the yield, fib with futures stayed at 7.8 ms there;
 * with it, 2.5 ms). docs/design.md 4.1 has the figures. OpenMP runtimes
 * spin far longer before they sleep (libomp's KMP_BLOCKTIME is 200 ms).
 *
 * Ends early, returning NULL, when the executor stops accepting or is
 * being destroyed: both wait on what the park path signals.
 */
static struct weft_future *
worker_idle_spin(struct weft__worker *w)
{
    weft_executor_t *ex = w->ex;
    ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;
    uint64_t end = 0;
    for (int i = 0;; i++) {
        ck_backoff_eb(&backoff);
        struct weft_future *f = weft__worker_find(w);
        if (f != NULL) {
            return f;
        }
        if (i < WEFT__IDLE_SPINS) {
            continue;
        }
        /* Relaxed: hints; the park path re-reads both with the
         * orderings it needs. */
        if (weft__load_relaxed_u32(&ex->stop) != 0 ||
            weft__load_relaxed_u32(&ex->run_state) != WEFT__RUN_ACCEPTING) {
            return NULL;
        }
        uint64_t now = weft__clock_now_ns();
        if (end == 0) {
            end = now + ex->idle_spin_ns;
        } else if (now >= end) {
            return NULL;
        }
        sched_yield();
    }
}

static void
worker_loop(struct weft__worker *w)
{
    weft_executor_t *ex = w->ex;
    for (;;) {
        struct weft_future *f = weft__worker_find(w);
        if (f != NULL) {
            weft__task_run(w, f);
            continue;
        }
        f = worker_idle_spin(w);
        if (f != NULL) {
            weft__task_run(w, f);
            continue;
        }
        if (worker_should_stop(w)) {
            return;
        }
        uint64_t ticket = weft__parker_prepare(&ex->idle);
        f = weft__worker_find(w);
        if (f != NULL) {
            weft__parker_cancel(&ex->idle);
            weft__task_run(w, f);
            continue;
        }
        if (worker_should_stop(w)) {
            weft__parker_cancel(&ex->idle);
            return;
        }
        /* Relaxed: a late view only delays a shutdown waiter until its
         * own backstop. */
        if (weft__load_relaxed_u32(&ex->run_state) != WEFT__RUN_ACCEPTING) {
            weft__parker_wake(&ex->quiet);
        }
        weft__counter_inc(&w->parks);
        struct timespec dl;
        deadline_after_ms(&dl, WEFT__IDLE_BACKSTOP_MS);
        uint64_t t0 = weft__clock_now_ns();
        (void)weft__parker_park(&ex->idle, ticket, &dl);
        uint64_t t1 = weft__clock_now_ns();
        /* Relaxed: statistics, single writer. */
        weft__store_relaxed_u64(
            &w->idle_ns, weft__load_relaxed_u64(&w->idle_ns) + (t1 - t0));
        weft__trace_park(&w->trace, t0, t1, 0);
        f = weft__worker_find(w);
        if (f != NULL) {
            /*
             * Woken and found work: wake one more sleeper, so that a thief
             * is on its way while this task starts forking (Go's
             * scheduler does the same). A wake-up takes tens to hundreds
             * of microseconds (much more on a virtual machine), and a
             * sleeping worker never asks anyone to publish, so without
             * this the second worker of a freshly woken executor arrives
             * only after the first fork's publish woke it, if at all
             * before a short job ends. A woken worker that finds nothing
             * parks again after its spin.
             */
            weft__parker_wake_hint(&ex->idle);
            weft__task_run(w, f);
        }
    }
}

static void *
worker_main(void *arg)
{
    struct weft__worker *w = arg;
    weft_executor_t *ex = w->ex;
    weft__tls_worker = w;
    weft__frame_set_worker(w);
    char name[32];
    snprintf(name, sizeof(name), "%.10s-%u", ex->name_prefix, w->index);
    name[15] = '\0'; /* the kernel keeps 15 characters */
    pthread_setname_np(pthread_self(), name);
    if (ex->cfg.pin_workers) {
        /* Before the start hook, so the hook sees the final binding. */
        weft__pin_self(w->index);
    }
    if (ex->cfg.on_worker_start != NULL) {
        ex->cfg.on_worker_start(ex, w->index, ex->cfg.user_data);
    }
    /*
     * Count this worker as started (its hook has returned).
     * Pairs with: the acquire load in exec_all_started().
     */
    (void)weft__faa_u32(&ex->nstarted, 1);
    weft__parker_wake(&ex->quiet);
    worker_loop(w);
    if (ex->cfg.on_worker_stop != NULL) {
        ex->cfg.on_worker_stop(ex, w->index, ex->cfg.user_data);
    }
    weft__tls_worker = NULL;
    weft__frame_set_worker(NULL);
    return NULL;
}

/* ---- configuration --------------------------------------------------- */

void
weft_executor_config_init(weft_executor_config_t *cfg)
{
    if (cfg == NULL) {
        return;
    }
    memset(cfg, 0, sizeof(*cfg));
}

/* CPUs allowed by the cgroup v2 quota, or 0 when unlimited/unknown. */
static unsigned int
cgroup_cpu_limit(void)
{
    FILE *fp = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (fp == NULL) {
        return 0;
    }
    char quota[32] = {0};
    unsigned long period = 0;
    unsigned int n = 0;
    if (fscanf(fp, "%31s %lu", quota, &period) == 2 && period > 0 &&
        strcmp(quota, "max") != 0) {
        unsigned long q = strtoul(quota, NULL, 10);
        n = (unsigned int)((q + period - 1) / period);
    }
    fclose(fp);
    return n;
}

static unsigned int
default_num_workers(void)
{
    const char *env = getenv("WEFT_NUM_THREADS");
    if (env != NULL) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (end != env && *end == '\0' && v > 0 && v <= WEFT__MAX_WORKERS) {
            return (unsigned int)v;
        }
    }
    unsigned int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        n = (unsigned int)CPU_COUNT(&set);
    }
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned int)c : 1;
    }
    unsigned int q = cgroup_cpu_limit();
    if (q > 0 && q < n) {
        n = q;
    }
    return n;
}

/* ---- lifecycle ------------------------------------------------------- */

static void
slabs_free(struct weft__slab *s)
{
    while (s != NULL) {
        struct weft__slab *next = s->next;
        weft__free(s);
        s = next;
    }
}

static void
exec_free(weft_executor_t *ex)
{
    for (unsigned int i = 0; i < ex->nworkers; i++) {
        slabs_free(ex->workers[i].slabs);
        weft__deque_fini(&ex->workers[i].dq);
    }
    slabs_free(ex->ext_slabs);
    /* Pairs with: the fas in weft__block_put(); every worker has stopped
     * and the last combined future is gone. */
    weft__free(weft__fas_ptr(&ex->spare, NULL));
    weft__trace_exec_free(ex);
    weft__debug_fini(ex);
    pthread_mutex_destroy(&ex->ext_lock);
    weft__timer_fini(&ex->timer);
    weft__free(ex->workers);
    weft__free(ex);
}

static void
exec_stop_and_join(weft_executor_t *ex)
{
    /* Pairs with: weft__load_acq_u32(&ex->stop) in worker_should_stop(). */
    weft__store_rel_u32(&ex->stop, 1);
    weft__parker_wake(&ex->idle);
    for (unsigned int i = 0; i < ex->nworkers; i++) {
        if (ex->workers[i].started) {
            pthread_join(ex->workers[i].thread, NULL);
            ex->workers[i].started = 0;
        }
    }
}

/*
 * Sleep on ex->quiet until done(ex) holds: prepare, re-check, park (the
 * parker's no-lost-wake-up protocol; whoever makes done() true wakes
 * ex->quiet after doing so). backstop_ms > 0 bounds each park, for a
 * condition whose wakers may miss us (see weft_executor_shutdown).
 */
static void
exec_wait_quiet(weft_executor_t *ex, bool (*done)(weft_executor_t *),
                long backstop_ms)
{
    while (!done(ex)) {
        uint64_t ticket = weft__parker_prepare(&ex->quiet);
        if (done(ex)) {
            weft__parker_cancel(&ex->quiet);
            break;
        }
        struct timespec dl;
        if (backstop_ms > 0) {
            deadline_after_ms(&dl, backstop_ms);
        }
        (void)weft__parker_park(&ex->quiet, ticket,
                                backstop_ms > 0 ? &dl : NULL);
    }
}

/* Every worker has run its start hook (create's promise). */
static bool
exec_all_started(weft_executor_t *ex)
{
    /* Pairs with: the faa on nstarted in worker_main(). */
    return weft__load_acq_u32(&ex->nstarted) >= ex->nworkers;
}

weft_status_t
weft_executor_create(const weft_executor_config_t *cfg, weft_executor_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    weft_executor_config_t c;
    if (cfg != NULL) {
        c = *cfg;
    } else {
        weft_executor_config_init(&c);
    }
    if (c.num_workers > WEFT__MAX_WORKERS ||
        c.idle_spin_us > WEFT__IDLE_SPIN_US_MAX ||
        c.steal_batch > WEFT__STEAL_BATCH_MAX) {
        return WEFT_EINVAL;
    }
    if (c.pin_workers) {
        /* WEFT_ENOTSUP with neither hwloc nor Linux; WEFT_ESYS when
         * hwloc cannot read the topology. */
        weft_status_t ps = weft__pin_check();
        if (ps != WEFT_OK) {
            return ps;
        }
    }
    unsigned int n = c.num_workers != 0 ? c.num_workers : default_num_workers();

    weft_executor_t *ex = WEFT__ALLOC_ALIGNED(WEFT__CACHELINE, sizeof(*ex));
    if (ex == NULL) {
        return WEFT_ENOMEM;
    }
    memset(ex, 0, sizeof(*ex));
    ex->cfg = c;
    snprintf(ex->name_prefix, sizeof(ex->name_prefix), "%.10s",
             c.thread_name_prefix != NULL ? c.thread_name_prefix : "weft");
    ex->cfg.thread_name_prefix = ex->name_prefix;
    ex->idle_spin_ns =
        1000ull *
        (c.idle_spin_us != 0 ? c.idle_spin_us : WEFT__IDLE_SPIN_US_DEFAULT);
    ex->steal_batch =
        c.steal_batch != 0 ? (int64_t)c.steal_batch : WEFT__STEAL_BATCH_MAX;
    weft__parker_init(&ex->idle);
    weft__parker_init(&ex->quiet);
    if (weft__timer_init(&ex->timer, ex->name_prefix) != WEFT_OK) {
        weft__free(ex);
        return WEFT_ESYS;
    }
    if (pthread_mutex_init(&ex->ext_lock, NULL) != 0) {
        weft__timer_fini(&ex->timer);
        weft__free(ex);
        return WEFT_ESYS;
    }
    ex->workers =
        WEFT__ALLOC_ALIGNED(WEFT__CACHELINE, sizeof(struct weft__worker) * n);
    if (ex->workers == NULL) {
        pthread_mutex_destroy(&ex->ext_lock);
        weft__timer_fini(&ex->timer);
        weft__free(ex);
        return WEFT_ENOMEM;
    }
    memset(ex->workers, 0, sizeof(struct weft__worker) * n);
    ex->nworkers = n;
    for (unsigned int i = 0; i < n; i++) {
        struct weft__worker *w = &ex->workers[i];
        w->ex = ex;
        w->index = i;
        w->rng = 0x9E3779B97F4A7C15ull * (i + 1) ^ (uintptr_t)ex;
        if (w->rng == 0) {
            w->rng = 1;
        }
        if (weft__deque_init(&w->dq, WEFT__DEQUE_LOG2) != WEFT_OK) {
            ex->nworkers = i;
            exec_free(ex);
            return WEFT_ENOMEM;
        }
    }
    if (weft__trace_exec_created(ex) != WEFT_OK) { /* WEFT_TRACE is set */
        exec_free(ex);
        return WEFT_ENOMEM;
    }
    weft_status_t ds = weft__debug_init(ex);
    if (ds != WEFT_OK) {
        exec_free(ex);
        return ds;
    }
    for (unsigned int i = 0; i < n; i++) {
        struct weft__worker *w = &ex->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            exec_stop_and_join(ex);
            exec_free(ex);
            return WEFT_ESYS;
        }
        w->started = 1;
    }
    exec_wait_quiet(ex, exec_all_started, 0);
    *out = ex;
    return WEFT_OK;
}

weft_status_t
weft_executor_shutdown(weft_executor_t *ex, weft_shutdown_mode_t mode)
{
    if (ex == NULL ||
        (mode != WEFT_SHUTDOWN_DRAIN && mode != WEFT_SHUTDOWN_CANCEL)) {
        return WEFT_EINVAL;
    }
    if (weft__worker_of(ex) != NULL) {
        return WEFT_ESTATE;
    }
    uint32_t target = mode == WEFT_SHUTDOWN_CANCEL ? WEFT__RUN_CANCELLING
                                                   : WEFT__RUN_DRAINING;
    pthread_mutex_lock(&ex->ext_lock);
    if (ex->run_state < target) {
        /*
         * Cancelling: every worker's flag is set before run_state says
         * so, all under ext_lock, so a task still queued cannot start
         * after this section (a worker checks its flag right before each
         * body; at most the body it already checked may still start).
         */
        if (target == WEFT__RUN_CANCELLING) {
            for (unsigned int i = 0; i < ex->nworkers; i++) {
                /* Relaxed: see weft__worker_cancelling(); the unlock
                 * below publishes it with everything else. */
                weft__store_relaxed_u32(&ex->workers[i].cancelling, 1);
            }
        }
        /* Pairs with: the relaxed loads in spawn_slow() (future.c),
         * weft_group_spawn() (group.c), worker_idle_spin() and
         * worker_loop(); ordering with outside submissions is given by
         * ext_lock. */
        weft__store_rel_u32(&ex->run_state, target);
    }
    pthread_mutex_unlock(&ex->ext_lock);
    /* Let sleeping workers see the new state and drain or cancel. */
    weft__parker_wake(&ex->idle);
    /* Workers wake ex->quiet when they go idle during a shutdown; the
     * 10 ms backstop covers a worker that is busy in user code then. */
    exec_wait_quiet(ex, exec_quiescent, 10);
    return WEFT_OK;
}

/* Objects not in any free list: futures still held by the user. */
static size_t
exec_outstanding(weft_executor_t *ex)
{
    size_t total = 0;
    size_t free_objs = 0;
    for (unsigned int i = 0; i < ex->nworkers; i++) {
        struct weft__worker *w = &ex->workers[i];
        for (struct weft__slab *s = w->slabs; s != NULL; s = s->next) {
            total += s->nobj;
        }
        for (struct weft_future *f = w->free_list; f != NULL;
             f = f->pool_next) {
            free_objs++;
        }
        free_objs += w->spill_count;
    }
    for (struct weft__slab *s = ex->ext_slabs; s != NULL; s = s->next) {
        total += s->nobj;
    }
    for (struct weft_future *f = ex->ext_free; f != NULL; f = f->pool_next) {
        free_objs++;
    }
    /* Pairs with: the CAS push in pool_push_chain(). */
    for (struct weft_future *f =
             weft__load_acq_ptr((void *const *)&ex->free_stack);
         f != NULL; f = f->pool_next) {
        free_objs++;
    }
    return total - free_objs;
}

weft_status_t
weft_executor_destroy(weft_executor_t *ex)
{
    if (ex == NULL) {
        return WEFT_EINVAL;
    }
    if (weft__worker_of(ex) != NULL) {
        return WEFT_ESTATE;
    }
    weft_status_t st = weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN);
    if (st != WEFT_OK) {
        return st;
    }
    exec_stop_and_join(ex);
    weft__timer_stop(&ex->timer);
    weft__trace_exec_stopped(ex); /* writes the WEFT_TRACE file, once */
    weft__debug_destroying(ex);
    if (exec_outstanding(ex) != 0) {
        return WEFT_EBUSY;
    }
    exec_free(ex);
    return WEFT_OK;
}

weft_status_t
weft_executor_watch_deadline(weft_executor_t *ex, weft_token_t *token)
{
    if (ex == NULL || token == NULL) {
        return WEFT_EINVAL;
    }
    return weft__timer_arm(&ex->timer, token);
}

unsigned int
weft_executor_num_workers(const weft_executor_t *ex)
{
    return ex != NULL ? ex->nworkers : 0;
}

int
weft_executor_worker_index(const weft_executor_t *ex)
{
    struct weft__worker *w = ex != NULL ? weft__worker_of(ex) : NULL;
    return w != NULL ? (int)w->index : -1;
}

weft_status_t
weft_executor_stats(const weft_executor_t *ex, unsigned int index,
                    weft_worker_stats_t *out)
{
    if (ex == NULL || out == NULL || index >= ex->nworkers) {
        return WEFT_EINVAL;
    }
    const struct weft__worker *w = &ex->workers[index];
    /* Relaxed: statistics. */
    out->spawned = weft__load_relaxed_u64(&w->spawned);
    /* Every task a worker ended either ran or was cancelled unstarted. */
    out->executed = weft__load_relaxed_u64(&w->ended) -
                    weft__load_relaxed_u64(&w->cancelled);
    out->stolen = weft__load_relaxed_u64(&w->stolen);
    out->steal_failed = weft__load_relaxed_u64(&w->steal_failed);
    out->injected = weft__load_relaxed_u64(&w->injected);
    out->parks = weft__load_relaxed_u64(&w->parks);
    out->idle_ns = weft__load_relaxed_u64(&w->idle_ns);
    return WEFT_OK;
}

uint64_t
weft_clock_now_ns(void)
{
    return weft__clock_now_ns();
}
