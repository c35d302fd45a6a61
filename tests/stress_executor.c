/*
 * stress_executor.c - randomized stress of the executor and futures.
 *
 * A plain C program (no Criterion, so that it runs under ThreadSanitizer).
 * Every task carries an id; per-id atomic counters record how often its
 * body and its release hook ran and whether its holder saw it end
 * cancelled, and each scenario checks "exactly once" at the end. Timing
 * never decides the outcome: threads wait for states, never for clocks.
 *
 * Scenarios (each configuration of each one is one check):
 *  (a) trees: random task trees (fan-out 1-8, depth up to 6) with random
 *      joins (join, wait+value+release, retain+wait_until+release+join,
 *      detach) in random order, some failing or cancelling bodies, on 1, 2
 *      and 4 workers; bodies and release hooks exactly once, values and
 *      statuses as the body returned them. Ends with shutdown(DRAIN),
 *      after which every task must have run.
 *  (b) shutdown race: 4 outside submitters race shutdown(DRAIN) and
 *      shutdown(CANCEL); accepted tasks (and the children they spawn) end
 *      exactly once (DRAIN: ran; CANCEL: ran or cancelled), refused spawns
 *      return WEFT_ESHUTDOWN, run their hook once, and once a thread saw a
 *      refusal it sees only refusals.
 *  (c) continuations: several outside threads and a worker register
 *      continuations while the antecedent completes; each runs exactly
 *      once, after the antecedent, and sees its outcome.
 *  (d) references: several threads (and a worker) retain, release, wait
 *      and join one future while it completes; every reference count
 *      balances (destroy returns WEFT_OK at the end).
 *  (e) lifecycle: create and destroy executors 50 times with work in
 *      flight; destroy drains it (or, after shutdown(CANCEL), every task
 *      ran or was cancelled); a held future makes destroy return
 *      WEFT_EBUSY until it is released.
 *  (f) shutdown(DRAIN) does not return while a task is still spawning
 *      children that other workers steal and finish.
 *  (g) shutdown(CANCEL): tasks queued before the call never run.
 *  Under TSan or ASan one more check counts sanitizer reports, and under
 *  ASan a last one runs LeakSanitizer once every executor is gone.
 *
 * Scenarios f and g only rarely meet their interleavings on their own;
 * build with -DWEFT_PERTURB=ON to make them common (see weft__perturb
 * below).
 *
 * Environment:
 *   WEFT_SEED          seed (default: from the clock); printed at start
 *                      and with every failure
 *   WEFT_STRESS_TASKS  tasks in scenario (a), over all worker counts;
 *                      default 6000000, 2000000 under TSan, 3000000 under
 *                      ASan (about 25 s, 80 s and 25 s on 2 cores); the
 *                      rounds of the other scenarios scale with it
 *
 * Prints one closing line "N passed, N failed" and exits non-zero on any
 * failure.
 */
#include <weft/cancel.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/status.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define STRESS_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define STRESS_ASAN 1
#endif
#endif

#if defined(STRESS_TSAN)
#define DEFAULT_TASKS 2000000ULL
#elif defined(STRESS_ASAN)
#define DEFAULT_TASKS 3000000ULL
#else
#define DEFAULT_TASKS 6000000ULL
#endif

/* ---- harness ---------------------------------------------------------- */

static uint64_t g_seed;
static uint64_t g_tasks;
static int g_passed;
static int g_failed;
static int g_check_ok; /* the check in progress has not failed yet */
static const char *g_check_name;

static uint64_t
mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* splitmix64 state; one per thread or per task. */
static uint64_t
rng_next(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    return mix64(*s);
}

static uint64_t
rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
check_begin(const char *name)
{
    g_check_name = name;
    g_check_ok = 1;
}

static void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "FAIL [%s] (WEFT_SEED=%" PRIu64 "): ", g_check_name,
            g_seed);
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    fflush(stdout);
    va_end(ap);
    g_check_ok = 0;
}

static void __attribute__((format(printf, 2, 3)))
check_end(double t0, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %-28s ", g_check_ok ? "ok  " : "FAIL", g_check_name);
    vprintf(fmt, ap);
    printf(" (%.2f s)\n", now_s() - t0);
    fflush(stdout);
    va_end(ap);
    if (g_check_ok) {
        g_passed++;
    } else {
        g_failed++;
    }
}

static weft_executor_t *
make_ex(unsigned int n)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = n;
    weft_executor_t *ex = NULL;
    weft_status_t st = weft_executor_create(&cfg, &ex);
    if (st != WEFT_OK) {
        fprintf(stderr, "weft_executor_create(%u): %s\n", n,
                weft_status_name(st));
        exit(2);
    }
    return ex;
}

static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void
spin_pause(uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        atomic_signal_fence(memory_order_seq_cst);
    }
}

/*
 * Perturbation builds (-DWEFT_PERTURB=ON) call weft__perturb() before
 * every operation of the atomics layer. primitives/perturb.c yields at
 * seeded random points; this program brings its own definition, which the
 * linker takes instead (the library's is then not linked from the static
 * archive; being weak, this one loses to it wherever both are linked, and
 * scenario f just sees no pauses). It yields the same way, and a thread
 * that set t_pause_here (scenario f) sleeps at some points instead, which
 * stands for the OS preempting it there: the sleep never decides an
 * outcome, it only makes a rare interleaving common.
 */
static __thread int t_pause_here;
static atomic_uint_fast64_t g_pauses;
#ifdef WEFT_PERTURB
#define STRESS_PERTURB 1
static __thread uint64_t t_prng;

void weft__perturb(void) __attribute__((weak));

void
weft__perturb(void)
{
    if (t_prng == 0) {
        t_prng = mix64(g_seed ^ (uint64_t)(uintptr_t)&t_prng) | 1;
    }
    uint64_t r = rng_next(&t_prng);
    if (t_pause_here) {
        /* 1: now and then for 20 ms; 2: every other point for 2 ms. */
        if (t_pause_here == 1 ? r % 64 == 0 : r % 2 == 0) {
            atomic_fetch_add(&g_pauses, 1);
            struct timespec ts = {0, t_pause_here == 1 ? 20000000 : 2000000};
            nanosleep(&ts, NULL);
        }
        return;
    }
    if (r % 256 == 0) {
        sched_yield();
    }
}
#else
#define STRESS_PERTURB 0
#endif

/*
 * Sanitizer reports (TSan goes on after a report) count as one failed
 * check in the closing line, not only in the exit status. The sanitizer
 * runtime calls this weak hook once per report with its summary line.
 */
#if defined(STRESS_ASAN)
#include <sanitizer/lsan_interface.h>
#endif
#if defined(STRESS_TSAN) || defined(STRESS_ASAN)
static atomic_int g_sanitizer_reports;
void __sanitizer_report_error_summary(const char *summary);
void
__sanitizer_report_error_summary(const char *summary)
{
    atomic_fetch_add(&g_sanitizer_reports, 1);
    fprintf(stderr, "%s\n", summary);
}
#endif

/* Per-id exactly-once accounting. */
struct ledger {
    uint64_t cap;
    atomic_uint_fast64_t next_id;
    atomic_uchar *body;
    atomic_uchar *hook;
    atomic_uchar *cancelled; /* holder saw it end CANCELLED, not run */
    atomic_uchar *accepted;  /* spawn returned OK */
    atomic_uchar *refused;   /* spawn returned WEFT_ESHUTDOWN */
    atomic_uchar *held;      /* someone holds (held) its future */
    atomic_uint_fast64_t bad;
    atomic_uint_fast64_t first_bad_kind;
};

static void
ledger_init(struct ledger *l, uint64_t cap)
{
    memset(l, 0, sizeof(*l));
    l->cap = cap;
    l->body = xcalloc(cap, 1);
    l->hook = xcalloc(cap, 1);
    l->cancelled = xcalloc(cap, 1);
    l->accepted = xcalloc(cap, 1);
    l->refused = xcalloc(cap, 1);
    l->held = xcalloc(cap, 1);
}

static void
ledger_fini(struct ledger *l)
{
    free(l->body);
    free(l->hook);
    free(l->cancelled);
    free(l->accepted);
    free(l->refused);
    free(l->held);
}

/* Record an anomaly seen on a worker or helper thread (kind: a small
 * code naming the first one, reported at the end). */
static void
ledger_bad(struct ledger *l, uint64_t kind)
{
    if (atomic_fetch_add(&l->bad, 1) == 0) {
        atomic_store(&l->first_bad_kind, kind);
    }
}

static uint64_t
ledger_ids(struct ledger *l)
{
    uint64_t n = atomic_load(&l->next_id);
    return n < l->cap ? n : l->cap;
}

/* ---- (a) random task trees ------------------------------------------- */

#define TREE_MAX_FANOUT 8
#define TREE_MAX_DEPTH 6

/* Bad kinds (first one is printed). */
enum {
    BAD_STATUS = 1,
    BAD_VALUE = 2,
    BAD_SPAWN = 3,
    BAD_OUTCOME = 4,
    BAD_ANTECEDENT = 5,
    BAD_ORDER = 6,
    BAD_NOT_WORKER = 7,
    BAD_REFUSAL_ORDER = 8,
    BAD_AFTER_CANCEL = 9
};

struct node {
    struct ledger *l;
    uint64_t id;
    int depth;
};

static void
node_release(void *p)
{
    struct node *n = p;
    atomic_fetch_add(&n->l->hook[n->id], 1);
    free(n);
}

/* What the body of task id returns, and its value. */
static weft_status_t
node_status(uint64_t id)
{
    uint64_t h = mix64(id ^ g_seed) % 64;
    return h == 0 ? WEFT_EUSER : h == 1 ? WEFT_ECANCELED : WEFT_OK;
}

static int64_t
node_value(uint64_t id)
{
    return (int64_t)(mix64(id * 31 + 7) >> 1);
}

static weft_status_t node_body(weft_task_t *self, void *arg,
                               weft_value_t *result);

static const char *const node_names[4] = {NULL, "a", "bb", "node"};

/* Spawn a tree node; returns its id or UINT64_MAX when the id budget is
 * spent (nothing spawned then). */
static uint64_t
node_spawn(weft_executor_t *ex, struct ledger *l, int depth,
           weft_future_t **out, weft_status_t *st)
{
    uint64_t id = atomic_fetch_add(&l->next_id, 1);
    if (id >= l->cap) {
        return UINT64_MAX;
    }
    struct node *n = malloc(sizeof(*n));
    if (n == NULL) {
        abort();
    }
    n->l = l;
    n->id = id;
    n->depth = depth;
    weft_spawn_opts_t opts = {.release = node_release,
                              .name = node_names[id % 4]};
    if (out != NULL) {
        atomic_store(&l->held[id], 1);
    }
    *st = weft_spawn_ex(ex, &opts, node_body, n, out);
    if (*st == WEFT_OK) {
        atomic_store(&l->accepted[id], 1);
    } else if (*st == WEFT_ESHUTDOWN) {
        atomic_store(&l->refused[id], 1);
    }
    return id;
}

/* Check a joined child's status/value/outcome against what its body does. */
static void
node_check_joined(struct ledger *l, uint64_t id, weft_status_t st,
                  const weft_value_t *v, int value_valid)
{
    weft_status_t want = node_status(id);
    if (st == WEFT_ECANCELED && want != WEFT_ECANCELED) {
        /* Only possible when the task never ran (CANCEL shutdown). */
        atomic_fetch_add(&l->cancelled[id], 1);
        return;
    }
    if (st != want) {
        ledger_bad(l, BAD_STATUS);
        return;
    }
    if (want == WEFT_OK && value_valid && v->i64 != node_value(id)) {
        ledger_bad(l, BAD_VALUE);
    }
}

static weft_status_t
node_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct node *n = arg;
    struct ledger *l = n->l;
    weft_executor_t *ex = weft_task_executor(self);
    atomic_fetch_add(&l->body[n->id], 1);
    uint64_t rng = mix64(n->id ^ (g_seed << 1));
    if (rng_below(&rng, 8) == 0) {
        spin_pause(rng_below(&rng, 20000)); /* uneven work: more steals */
    }
    int nchild = 0;
    if (n->depth > 0) {
        nchild = 1 + (int)rng_below(&rng, TREE_MAX_FANOUT);
    }
    weft_future_t *fs[TREE_MAX_FANOUT];
    uint64_t ids[TREE_MAX_FANOUT];
    int held = 0;
    for (int i = 0; i < nchild; i++) {
        int detach = rng_below(&rng, 8) == 0;
        weft_status_t st;
        weft_future_t *f = NULL;
        uint64_t id = node_spawn(ex, l, n->depth - 1 - (int)rng_below(&rng, 2),
                                 detach ? NULL : &f, &st);
        if (id == UINT64_MAX) {
            break;
        }
        if (st != WEFT_OK) {
            ledger_bad(l, BAD_SPAWN);
            continue;
        }
        if (!detach) {
            fs[held] = f;
            ids[held] = id;
            held++;
        }
    }
    /* Shuffle the join order. */
    for (int i = held - 1; i > 0; i--) {
        int j = (int)rng_below(&rng, (uint64_t)i + 1);
        weft_future_t *tf = fs[i];
        fs[i] = fs[j];
        fs[j] = tf;
        uint64_t ti = ids[i];
        ids[i] = ids[j];
        ids[j] = ti;
    }
    for (int i = 0; i < held; i++) {
        weft_value_t v = {.i64 = -1};
        weft_status_t st;
        switch (rng_below(&rng, 5)) {
        case 0:
        case 1:
            st = weft_join(fs[i], &v);
            node_check_joined(l, ids[i], st, &v, 1);
            break;
        case 2:
            st = weft_future_wait(fs[i]);
            if (weft_future_value(fs[i], &v) != st) {
                ledger_bad(l, BAD_STATUS);
            }
            node_check_joined(l, ids[i], st, &v, 1);
            weft_future_release(fs[i]);
            break;
        case 3:
            weft_future_retain(fs[i]);
            st = weft_future_wait_until(fs[i], UINT64_MAX);
            weft_future_release(fs[i]);
            if (weft_join(fs[i], &v) != st) {
                ledger_bad(l, BAD_STATUS);
            }
            node_check_joined(l, ids[i], st, &v, 1);
            break;
        default:
            weft_future_release(fs[i]); /* detach after the fact */
            break;
        }
    }
    result->i64 = node_value(n->id);
    return node_status(n->id);
}

static void
report_bad(struct ledger *l)
{
    uint64_t bad = atomic_load(&l->bad);
    if (bad != 0) {
        fail("%" PRIu64 " anomalies on workers, first of kind %" PRIu64, bad,
             (uint64_t)atomic_load(&l->first_bad_kind));
    }
}

/* Run trees on ex until the ledger's ids are spent. Roots come from the
 * main thread, `batch` at a time, joined in random order. */
static void
trees_run(weft_executor_t *ex, struct ledger *l, uint64_t *rng, int batch)
{
    for (;;) {
        weft_future_t *fs[16];
        uint64_t ids[16];
        int n = 0;
        for (int i = 0; i < batch; i++) {
            weft_status_t st;
            uint64_t id = node_spawn(
                ex, l, 1 + (int)rng_below(rng, TREE_MAX_DEPTH), &fs[n], &st);
            if (id == UINT64_MAX) {
                break;
            }
            if (st != WEFT_OK) {
                fail("root spawn: %s", weft_status_name(st));
                continue;
            }
            ids[n++] = id;
        }
        if (n == 0) {
            return;
        }
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_below(rng, (uint64_t)i + 1);
            weft_future_t *tf = fs[i];
            fs[i] = fs[j];
            fs[j] = tf;
            uint64_t ti = ids[i];
            ids[i] = ids[j];
            ids[j] = ti;
        }
        for (int i = 0; i < n; i++) {
            weft_value_t v = {.i64 = -1};
            weft_status_t st = weft_join(fs[i], &v);
            node_check_joined(l, ids[i], st, &v, 1);
        }
    }
}

/* Every id: body once, hook once (DRAIN: nothing may be cancelled). */
static void
ledger_check_all_ran(struct ledger *l, const char *when)
{
    uint64_t n = ledger_ids(l);
    uint64_t body_bad = 0, hook_bad = 0, canc = 0, first = UINT64_MAX;
    for (uint64_t id = 0; id < n; id++) {
        int b = atomic_load(&l->body[id]);
        int h = atomic_load(&l->hook[id]);
        body_bad += b != 1;
        hook_bad += h != 1;
        canc += atomic_load(&l->cancelled[id]) != 0;
        if ((b != 1 || h != 1) && first == UINT64_MAX) {
            first = id;
        }
    }
    if (body_bad || hook_bad || canc) {
        fail("%s: of %" PRIu64 " tasks, %" PRIu64 " bodies != 1, %" PRIu64
             " hooks != 1, %" PRIu64 " cancelled; first bad id %" PRIu64
             " (body %d, hook %d)",
             when, n, body_bad, hook_bad, canc, first,
             first == UINT64_MAX ? -1 : atomic_load(&l->body[first]),
             first == UINT64_MAX ? -1 : atomic_load(&l->hook[first]));
    }
}

static void
scenario_trees(void)
{
    static const unsigned int workers[3] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof(name), "a.trees/%uw", workers[k]);
        check_begin(name);
        double t0 = now_s();
        uint64_t rng = mix64(g_seed ^ (0xA0 + (uint64_t)k));
        struct ledger l;
        ledger_init(&l, g_tasks / 3 + 1);
        weft_executor_t *ex = make_ex(workers[k]);
        trees_run(ex, &l, &rng, 1 + (int)rng_below(&rng, 16));
        /* Detached children may still be running: shutdown waits. */
        weft_status_t st = weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN);
        if (st != WEFT_OK) {
            fail("shutdown: %s", weft_status_name(st));
        }
        ledger_check_all_ran(&l, "right after shutdown(DRAIN)");
        uint64_t stolen = 0, spawned = 0, executed = 0;
        for (unsigned int i = 0; i < workers[k]; i++) {
            weft_worker_stats_t ws;
            if (weft_executor_stats(ex, i, &ws) == WEFT_OK) {
                stolen += ws.stolen;
                spawned += ws.spawned;
                executed += ws.executed;
            }
        }
        st = weft_executor_destroy(ex);
        if (st != WEFT_OK) {
            fail("destroy: %s", weft_status_name(st));
        }
        ledger_check_all_ran(&l, "after destroy");
        report_bad(&l);
        uint64_t n = ledger_ids(&l);
        if (executed != n) {
            fail("stats: executed %" PRIu64 " != %" PRIu64 " tasks", executed,
                 n);
        }
        check_end(t0,
                  "%" PRIu64 " tasks, %" PRIu64 " spawned on workers, %" PRIu64
                  " stolen",
                  n, spawned, stolen);
        ledger_fini(&l);
    }
}

/* ---- (b) outside submitters racing shutdown ---------------------------- */

#define RACE_THREADS 4

struct race {
    weft_executor_t *ex;
    struct ledger l;
    atomic_int started;
    atomic_uint_fast64_t accepted_total;
    atomic_int refusal_seen_by;
    uint64_t seed;
};

struct race_thread {
    struct race *r;
    pthread_t th;
    weft_future_t **held;
    uint64_t *held_ids;
    size_t nheld, capheld;
    uint64_t accepted, refused;
};

struct race_node {
    struct ledger *l;
    uint64_t id;
    int children;
};

static void
race_release(void *p)
{
    struct race_node *n = p;
    atomic_fetch_add(&n->l->hook[n->id], 1);
    free(n);
}

static weft_status_t race_body(weft_task_t *self, void *arg,
                               weft_value_t *result);

static weft_status_t
race_spawn(weft_executor_t *ex, struct ledger *l, int children, int hold,
           weft_token_t *token, weft_future_t **out, uint64_t *id_out)
{
    uint64_t id = atomic_fetch_add(&l->next_id, 1);
    if (id >= l->cap) {
        return WEFT_ERANGE;
    }
    struct race_node *n = malloc(sizeof(*n));
    if (n == NULL) {
        abort();
    }
    n->l = l;
    n->id = id;
    n->children = children;
    *id_out = id;
    if (hold) {
        atomic_store(&l->held[id], 1);
    }
    weft_spawn_opts_t opts = {.release = race_release, .token = token};
    weft_status_t st =
        weft_spawn_ex(ex, &opts, race_body, n, hold ? out : NULL);
    if (st == WEFT_OK) {
        atomic_store(&l->accepted[id], 1);
    } else if (st == WEFT_ESHUTDOWN) {
        atomic_store(&l->refused[id], 1);
    }
    return st;
}

static weft_status_t
race_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct race_node *n = arg;
    struct ledger *l = n->l;
    atomic_fetch_add(&l->body[n->id], 1);
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t *fs[4];
    uint64_t ids[4];
    int held = 0;
    for (int i = 0; i < n->children && i < 4; i++) {
        int hold = (n->id + (uint64_t)i) % 3 != 0;
        weft_future_t *f = NULL;
        uint64_t id;
        weft_status_t st = race_spawn(ex, l, 0, hold, NULL, &f, &id);
        if (st == WEFT_ERANGE) {
            break;
        }
        if (st != WEFT_OK) {
            /* A worker's spawn is never refused at shutdown. */
            ledger_bad(l, BAD_SPAWN);
            continue;
        }
        if (hold) {
            fs[held] = f;
            ids[held] = id;
            held++;
        }
    }
    for (int i = held - 1; i >= 0; i--) {
        weft_status_t st = weft_future_wait(fs[i]);
        if (st == WEFT_ECANCELED &&
            weft_future_outcome(fs[i]) == WEFT_OUTCOME_CANCELLED) {
            atomic_fetch_add(&l->cancelled[ids[i]], 1);
        } else if (st != WEFT_OK ||
                   weft_future_outcome(fs[i]) != WEFT_OUTCOME_SUCCEEDED) {
            ledger_bad(l, BAD_STATUS);
        }
        weft_future_release(fs[i]);
    }
    result->u64 = n->id;
    return WEFT_OK;
}

static void *
race_submitter(void *p)
{
    struct race_thread *t = p;
    struct race *r = t->r;
    uint64_t rng = mix64(r->seed ^ (uint64_t)(uintptr_t)t);
    /* Half of the spawns carry a token (never cancelled): a refused spawn
     * must give the task's token reference back too, or the token leaks
     * (LeakSanitizer reports it at exit in the ASan build). */
    weft_token_t *tok = NULL;
    if (weft_token_create(NULL, &tok) != WEFT_OK) {
        ledger_bad(&r->l, BAD_SPAWN);
        tok = NULL;
    }
    atomic_fetch_add(&r->started, 1);
    int after_refusal = 0;
    while (after_refusal < 64) {
        int hold = rng_below(&rng, 2) == 0;
        weft_token_t *use = rng_below(&rng, 2) == 0 ? tok : NULL;
        weft_future_t *f = (weft_future_t *)(uintptr_t)1;
        uint64_t id;
        weft_status_t st = race_spawn(r->ex, &r->l, (int)rng_below(&rng, 4),
                                      hold, use, &f, &id);
        if (st == WEFT_ERANGE) {
            break; /* id budget spent before shutdown: the main thread
                      shuts down anyway */
        }
        if (st == WEFT_OK) {
            if (after_refusal > 0) {
                ledger_bad(&r->l, BAD_REFUSAL_ORDER);
            }
            t->accepted++;
            atomic_fetch_add(&r->accepted_total, 1);
            if (hold) {
                if (t->nheld == t->capheld) {
                    t->capheld = t->capheld ? t->capheld * 2 : 256;
                    t->held = realloc(t->held, t->capheld * sizeof(*t->held));
                    t->held_ids =
                        realloc(t->held_ids, t->capheld * sizeof(uint64_t));
                    if (t->held == NULL || t->held_ids == NULL) {
                        abort();
                    }
                }
                t->held[t->nheld] = f;
                t->held_ids[t->nheld] = id;
                t->nheld++;
            }
        } else if (st == WEFT_ESHUTDOWN) {
            if (hold && f != NULL) {
                ledger_bad(&r->l, BAD_SPAWN); /* *out must be NULL */
            }
            t->refused++;
            after_refusal++;
            atomic_fetch_add(&r->refusal_seen_by, after_refusal == 1);
        } else {
            ledger_bad(&r->l, BAD_SPAWN);
        }
        if (rng_below(&rng, 64) == 0) {
            sched_yield();
        }
    }
    if (tok != NULL) {
        weft_token_release(tok);
    }
    return NULL;
}

static void
race_round(unsigned int nworkers, weft_shutdown_mode_t mode, uint64_t *rng,
           uint64_t cap, uint64_t *tot_acc, uint64_t *tot_ref,
           uint64_t *tot_canc)
{
    struct race *r = xcalloc(1, sizeof(*r));
    ledger_init(&r->l, cap);
    r->ex = make_ex(nworkers);
    r->seed = rng_next(rng);
    struct race_thread t[RACE_THREADS];
    memset(t, 0, sizeof(t));
    for (int i = 0; i < RACE_THREADS; i++) {
        t[i].r = r;
        if (pthread_create(&t[i].th, NULL, race_submitter, &t[i]) != 0) {
            abort();
        }
    }
    /* Shut down once a random number of spawns were accepted (or the id
     * budget is nearly spent). */
    uint64_t threshold = rng_below(rng, cap / 2);
    while (atomic_load(&r->accepted_total) < threshold &&
           atomic_load(&r->l.next_id) < cap) {
        sched_yield();
    }
    weft_status_t st = weft_executor_shutdown(r->ex, mode);
    if (st != WEFT_OK) {
        fail("shutdown: %s", weft_status_name(st));
    }
    /* Snapshot right after shutdown returned: every accepted task (the
     * ones known so far and those whose submitter has not recorded it
     * yet) must have ended. */
    uint64_t n_snap = ledger_ids(&r->l);
    unsigned char *body_snap = xcalloc(n_snap + 1, 1);
    unsigned char *hook_snap = xcalloc(n_snap + 1, 1);
    for (uint64_t id = 0; id < n_snap; id++) {
        body_snap[id] = atomic_load(&r->l.body[id]);
        hook_snap[id] = atomic_load(&r->l.hook[id]);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(t[i].th, NULL);
    }
    /* Outcomes of the futures the submitters held. */
    for (int i = 0; i < RACE_THREADS; i++) {
        for (size_t k = 0; k < t[i].nheld; k++) {
            weft_future_t *f = t[i].held[k];
            uint64_t id = t[i].held_ids[k];
            if (!weft_future_is_done(f)) {
                fail("held task %" PRIu64 " pending after shutdown", id);
            }
            weft_status_t fst = weft_future_wait(f);
            if (fst == WEFT_ECANCELED &&
                weft_future_outcome(f) == WEFT_OUTCOME_CANCELLED) {
                atomic_fetch_add(&r->l.cancelled[id], 1);
            } else if (fst != WEFT_OK ||
                       weft_future_outcome(f) != WEFT_OUTCOME_SUCCEEDED) {
                ledger_bad(&r->l, BAD_STATUS);
            } else {
                weft_value_t v = {0};
                if (weft_future_value(f, &v) != WEFT_OK || v.u64 != id) {
                    ledger_bad(&r->l, BAD_VALUE);
                }
            }
            weft_future_release(f);
        }
        free(t[i].held);
        free(t[i].held_ids);
    }
    st = weft_executor_destroy(r->ex);
    if (st != WEFT_OK) {
        fail("destroy: %s", weft_status_name(st));
    }
    /* Final accounting. */
    uint64_t n = ledger_ids(&r->l);
    uint64_t acc = 0, ref = 0, canc = 0, bad_once = 0, bad_hook = 0,
             bad_refused = 0, bad_drain = 0, bad_snap = 0, neither = 0;
    uint64_t first = UINT64_MAX;
    for (uint64_t id = 0; id < n; id++) {
        int a = atomic_load(&r->l.accepted[id]);
        int rf = atomic_load(&r->l.refused[id]);
        int b = atomic_load(&r->l.body[id]);
        int h = atomic_load(&r->l.hook[id]);
        int c = atomic_load(&r->l.cancelled[id]);
        int held = atomic_load(&r->l.held[id]);
        int bad = 0;
        if (a + rf != 1) {
            neither++; /* spawn returned something else */
            bad = 1;
        }
        if (h != 1) {
            bad_hook++;
            bad = 1;
        }
        if (rf) {
            ref++;
            if (b != 0 || c != 0) {
                bad_refused++;
                bad = 1;
            }
        }
        if (a) {
            acc++;
            canc += c;
            if (b + c > 1 || (held && b + c != 1)) {
                bad_once++;
                bad = 1;
            }
            if (mode == WEFT_SHUTDOWN_DRAIN && b != 1) {
                bad_drain++;
                bad = 1;
            }
            /* Ended by the time shutdown returned. */
            if (id < n_snap && (hook_snap[id] != 1 || body_snap[id] != b)) {
                bad_snap++;
                bad = 1;
            }
        }
        if (bad && first == UINT64_MAX) {
            first = id;
        }
    }
    if (neither || bad_hook || bad_refused || bad_once || bad_drain ||
        bad_snap) {
        fail("%uw %s: %" PRIu64 " ids: %" PRIu64 " neither accepted nor "
             "refused, %" PRIu64 " hooks != 1, %" PRIu64 " refused but ran, "
             "%" PRIu64 " not ended exactly once, %" PRIu64 " not run "
             "(DRAIN), %" PRIu64 " not ended when shutdown returned; first "
             "bad id %" PRIu64,
             nworkers, mode == WEFT_SHUTDOWN_DRAIN ? "DRAIN" : "CANCEL", n,
             neither, bad_hook, bad_refused, bad_once, bad_drain, bad_snap,
             first);
    }
    if (mode == WEFT_SHUTDOWN_DRAIN && canc != 0) {
        fail("%" PRIu64 " tasks cancelled by shutdown(DRAIN)", canc);
    }
    if (atomic_load(&r->l.next_id) < cap &&
        atomic_load(&r->refusal_seen_by) != RACE_THREADS) {
        fail("only %d of %d submitters saw a refusal",
             atomic_load(&r->refusal_seen_by), RACE_THREADS);
    }
    report_bad(&r->l);
    *tot_acc += acc;
    *tot_ref += ref;
    *tot_canc += canc;
    free(body_snap);
    free(hook_snap);
    ledger_fini(&r->l);
    free(r);
}

static void
scenario_shutdown_race(void)
{
    static const unsigned int workers[3] = {1, 2, 4};
    static const weft_shutdown_mode_t modes[2] = {WEFT_SHUTDOWN_DRAIN,
                                                  WEFT_SHUTDOWN_CANCEL};
    int rounds = (int)(g_tasks / 60000);
    if (rounds < 2) {
        rounds = 2;
    }
    uint64_t cap = 20000;
    for (int m = 0; m < 2; m++) {
        for (int k = 0; k < 3; k++) {
            char name[64];
            snprintf(name, sizeof(name), "b.shutdown-race/%s/%uw",
                     m == 0 ? "drain" : "cancel", workers[k]);
            check_begin(name);
            double t0 = now_s();
            uint64_t rng = mix64(g_seed ^ (0xB0 + (uint64_t)(m * 3 + k)));
            uint64_t acc = 0, ref = 0, canc = 0;
            for (int i = 0; i < rounds && g_check_ok; i++) {
                race_round(workers[k], modes[m], &rng, cap, &acc, &ref, &canc);
            }
            check_end(t0,
                      "%d rounds: %" PRIu64 " accepted, %" PRIu64
                      " refused, %" PRIu64 " seen cancelled",
                      rounds, acc, ref, canc);
        }
    }
}

/* ---- (c) continuations registered while the antecedent completes ------ */

#define CONT_THREADS 4

struct cont_round {
    weft_executor_t *ex;
    weft_future_t *f;
    weft_status_t ret;
    atomic_int gate;
    atomic_int ante_done;
    atomic_int registered;
    atomic_int ready;
    int per_thread;
    atomic_uchar *runs; /* [CONT_THREADS + 1][per_thread] */
    struct ledger *l;   /* anomalies */
    uint64_t seed;
};

static weft_status_t
cont_ante_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    struct cont_round *c = arg;
    while (atomic_load(&c->gate) == 0) {
        sched_yield();
    }
    result->i64 = 77;
    atomic_store(&c->ante_done, 1);
    return c->ret;
}

struct cont_arg {
    struct cont_round *c;
    int slot;
};

static weft_status_t
cont_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct cont_arg *a = arg;
    struct cont_round *c = a->c;
    atomic_fetch_add(&c->runs[a->slot], 1);
    weft_future_t *ante = weft_task_antecedent(self);
    if (ante != c->f) {
        ledger_bad(c->l, BAD_ANTECEDENT);
    } else {
        weft_outcome_t want = c->ret == WEFT_OK ? WEFT_OUTCOME_SUCCEEDED
                              : c->ret == WEFT_ECANCELED
                                  ? WEFT_OUTCOME_CANCELLED
                                  : WEFT_OUTCOME_FAILED;
        if (weft_future_outcome(ante) != want ||
            weft_future_status(ante) != c->ret) {
            ledger_bad(c->l, BAD_OUTCOME);
        }
        weft_value_t v = {0};
        if (c->ret == WEFT_OK &&
            (weft_future_value(ante, &v) != WEFT_OK || v.i64 != 77)) {
            ledger_bad(c->l, BAD_VALUE);
        }
    }
    if (atomic_load(&c->ante_done) != 1) {
        ledger_bad(c->l, BAD_ORDER);
    }
    if (weft_executor_worker_index(c->ex) < 0) {
        ledger_bad(c->l, BAD_NOT_WORKER);
    }
    result->i64 = a->slot;
    return WEFT_OK;
}

/* Register per_thread continuations for row `row`; join the held ones. */
static void
cont_register_row(struct cont_round *c, int row, struct cont_arg *args)
{
    uint64_t rng = mix64(c->seed ^ (uint64_t)row);
    weft_future_t **held = malloc(sizeof(*held) * (size_t)c->per_thread);
    int *slots = malloc(sizeof(int) * (size_t)c->per_thread);
    int nheld = 0;
    for (int i = 0; i < c->per_thread; i++) {
        int slot = row * c->per_thread + i;
        args[i].c = c;
        args[i].slot = slot;
        int hold = rng_below(&rng, 2) == 0;
        weft_future_t *out = NULL;
        weft_status_t st =
            weft_future_then(c->f, cont_body, &args[i], hold ? &out : NULL);
        if (st != WEFT_OK) {
            ledger_bad(c->l, BAD_SPAWN);
        } else if (hold) {
            held[nheld] = out;
            slots[nheld] = slot;
            nheld++;
        }
        atomic_fetch_add(&c->registered, 1);
        if (rng_below(&rng, 32) == 0) {
            sched_yield();
        }
    }
    for (int i = 0; i < nheld; i++) {
        weft_value_t v = {0};
        if (weft_join(held[i], &v) != WEFT_OK || v.i64 != slots[i]) {
            ledger_bad(c->l, BAD_VALUE);
        }
    }
    free(held);
    free(slots);
}

struct cont_thread {
    struct cont_round *c;
    int row;
    struct cont_arg *args;
    pthread_t th;
};

static void *
cont_registrar(void *p)
{
    struct cont_thread *t = p;
    atomic_fetch_add(&t->c->ready, 1);
    while (atomic_load(&t->c->ready) < CONT_THREADS) {
        sched_yield();
    }
    cont_register_row(t->c, t->row, t->args);
    return NULL;
}

/* The same from a worker (the task holds its own reference to f). */
static weft_status_t
cont_worker_registrar(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    struct cont_thread *t = arg;
    cont_register_row(t->c, t->row, t->args);
    weft_future_release(t->c->f);
    return WEFT_OK;
}

static void
scenario_continuations(void)
{
    static const unsigned int workers[2] = {2, 4};
    static const weft_status_t rets[3] = {WEFT_OK, WEFT_EUSER, WEFT_ECANCELED};
    int rounds = (int)(g_tasks / 12000);
    if (rounds < 10) {
        rounds = 10;
    }
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof(name), "c.continuations/%uw", workers[k]);
        check_begin(name);
        double t0 = now_s();
        uint64_t rng = mix64(g_seed ^ (0xC0 + (uint64_t)k));
        struct ledger l;
        ledger_init(&l, 1);
        uint64_t total = 0;
        for (int r = 0; r < rounds && g_check_ok; r++) {
            struct cont_round *c = xcalloc(1, sizeof(*c));
            weft_executor_t *ex = make_ex(workers[k]);
            c->ex = ex;
            c->l = &l;
            c->ret = rets[rng_below(&rng, 3)];
            c->per_thread = 1 + (int)rng_below(&rng, 64);
            c->seed = rng_next(&rng);
            int rows = CONT_THREADS + 1;
            size_t nslots = (size_t)rows * (size_t)c->per_thread;
            c->runs = xcalloc(nslots, 1);
            struct cont_arg *args = xcalloc(nslots, sizeof(*args));
            if (weft_spawn(ex, cont_ante_body, c, &c->f) != WEFT_OK) {
                fail("spawn antecedent");
                break;
            }
            struct cont_thread t[CONT_THREADS + 1];
            for (int i = 0; i < rows; i++) {
                t[i].c = c;
                t[i].row = i;
                t[i].args = args + (size_t)i * (size_t)c->per_thread;
            }
            for (int i = 0; i < CONT_THREADS; i++) {
                if (pthread_create(&t[i].th, NULL, cont_registrar, &t[i])) {
                    abort();
                }
            }
            /* One registrant runs on a worker (with 2 workers, the other
             * one runs the antecedent). Its task releases this ref. */
            weft_future_t *wreg = NULL;
            weft_future_retain(c->f);
            if (weft_spawn(ex, cont_worker_registrar, &t[CONT_THREADS],
                           &wreg) != WEFT_OK) {
                fail("spawn registrar");
            }
            /* Complete the antecedent after a random number of
             * registrations: some come before, some race, some after. */
            int threshold = (int)rng_below(
                &rng, (uint64_t)(CONT_THREADS * c->per_thread) + 1);
            while (atomic_load(&c->registered) < threshold) {
                sched_yield();
            }
            atomic_store(&c->gate, 1);
            for (int i = 0; i < CONT_THREADS; i++) {
                pthread_join(t[i].th, NULL);
            }
            if (wreg != NULL && weft_join(wreg, NULL) != WEFT_OK) {
                fail("worker registrar failed");
            }
            if (weft_future_wait(c->f) != c->ret) {
                fail("antecedent status");
            }
            weft_future_release(c->f);
            /* Detached continuations may still be queued: DRAIN runs
             * them; destroy then proves every reference was dropped. */
            weft_status_t st = weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN);
            if (st != WEFT_OK) {
                fail("shutdown: %s", weft_status_name(st));
            }
            for (size_t s = 0; s < nslots; s++) {
                if (atomic_load(&c->runs[s]) != 1) {
                    fail("round %d: continuation %zu of %zu ran %d times", r, s,
                         nslots, atomic_load(&c->runs[s]));
                    break;
                }
            }
            st = weft_executor_destroy(ex);
            if (st != WEFT_OK) {
                fail("destroy: %s", weft_status_name(st));
            }
            total += nslots;
            free(args);
            free(c->runs);
            free(c);
        }
        report_bad(&l);
        ledger_fini(&l);
        check_end(t0, "%d rounds, %" PRIu64 " continuations", rounds, total);
    }
}

/* ---- (d) one future shared by several threads -------------------------- */

#define REF_THREADS 4

struct ref_round {
    weft_future_t *f;
    weft_status_t ret;
    atomic_int gate;
    atomic_int ready;
    atomic_int go;
    atomic_int body;
    atomic_int hook;
    atomic_int ok; /* holders that saw the right result */
    atomic_int holders_done;
    uint64_t seed;
    struct ledger *l;
};

static void
ref_hook(void *p)
{
    struct ref_round *r = p;
    atomic_fetch_add(&r->hook, 1);
}

static weft_status_t
ref_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    struct ref_round *r = arg;
    atomic_fetch_add(&r->body, 1);
    while (atomic_load(&r->gate) == 0) {
        sched_yield();
    }
    result->i64 = 4242;
    return r->ret;
}

/* One holder: churn references, then give its own up in a random way. */
static void
ref_holder(struct ref_round *r, uint64_t salt)
{
    uint64_t rng = mix64(r->seed ^ salt);
    weft_future_t *f = r->f;
    int churn = (int)rng_below(&rng, 50);
    for (int i = 0; i < churn; i++) {
        weft_future_retain(f);
        if (rng_below(&rng, 4) == 0) {
            (void)weft_future_is_done(f);
            (void)weft_future_outcome(f);
        }
        weft_future_release(f);
    }
    weft_value_t v = {.i64 = -1};
    weft_status_t st;
    int checked = 1;
    switch (rng_below(&rng, 4)) {
    case 0:
        st = weft_join(f, &v);
        break;
    case 1:
        st = weft_future_wait(f);
        if (weft_future_value(f, &v) != st) {
            ledger_bad(r->l, BAD_STATUS);
        }
        weft_future_release(f);
        break;
    case 2:
        st = weft_future_wait_until(f, UINT64_MAX);
        if (weft_future_value(f, &v) != st) {
            ledger_bad(r->l, BAD_STATUS);
        }
        weft_future_release(f);
        break;
    default:
        weft_future_release(f); /* give it up without waiting */
        checked = 0;
        st = r->ret;
        v.i64 = 4242;
        break;
    }
    if (st == r->ret && (st != WEFT_OK || v.i64 == 4242)) {
        atomic_fetch_add(&r->ok, 1);
    } else if (checked) {
        ledger_bad(r->l, BAD_VALUE);
    }
    atomic_fetch_add(&r->holders_done, 1);
}

static void *
ref_thread(void *p)
{
    struct ref_round *r = ((void **)p)[0];
    uint64_t salt = (uint64_t)(uintptr_t)((void **)p)[1];
    atomic_fetch_add(&r->ready, 1);
    while (atomic_load(&r->go) == 0) {
        sched_yield();
    }
    ref_holder(r, salt);
    return NULL;
}

static weft_status_t
ref_worker_holder(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    ref_holder(arg, 99);
    return WEFT_OK;
}

static void
scenario_references(void)
{
    static const unsigned int workers[3] = {1, 2, 4};
    static const weft_status_t rets[3] = {WEFT_OK, WEFT_EUSER, WEFT_ECANCELED};
    int rounds = (int)(g_tasks / 4000);
    if (rounds < 20) {
        rounds = 20;
    }
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof(name), "d.references/%uw", workers[k]);
        check_begin(name);
        double t0 = now_s();
        uint64_t rng = mix64(g_seed ^ (0xD0 + (uint64_t)k));
        struct ledger l;
        ledger_init(&l, 1);
        weft_executor_t *ex = make_ex(workers[k]);
        struct ref_round *rs = xcalloc((size_t)rounds, sizeof(*rs));
        for (int i = 0; i < rounds && g_check_ok; i++) {
            struct ref_round *r = &rs[i];
            r->ret = rets[rng_below(&rng, 3)];
            r->seed = rng_next(&rng);
            r->l = &l;
            weft_spawn_opts_t opts = {.release = ref_hook};
            if (weft_spawn_ex(ex, &opts, ref_body, r, &r->f) != WEFT_OK) {
                fail("spawn");
                break;
            }
            for (int t = 0; t < REF_THREADS + 1; t++) {
                weft_future_retain(r->f);
            }
            pthread_t th[REF_THREADS];
            void *targs[REF_THREADS][2];
            for (int t = 0; t < REF_THREADS; t++) {
                targs[t][0] = r;
                targs[t][1] = (void *)(uintptr_t)(t + 1);
                if (pthread_create(&th[t], NULL, ref_thread, targs[t])) {
                    abort();
                }
            }
            weft_future_t *wh = NULL;
            if (weft_spawn(ex, ref_worker_holder, r, &wh) != WEFT_OK) {
                fail("spawn holder");
            }
            while (atomic_load(&r->ready) < REF_THREADS) {
                sched_yield();
            }
            atomic_store(&r->go, 1);
            /* Open the gate and drop the main reference in a random
             * order; a random number of yields first lets some holders
             * get ahead (variety only: nothing depends on it). */
            int before = (int)rng_below(&rng, 3);
            int yields = (int)rng_below(&rng, 8);
            for (int y = 0; y < yields; y++) {
                sched_yield();
            }
            if (before == 0) {
                weft_future_release(r->f);
            }
            atomic_store(&r->gate, 1);
            if (before == 1) {
                weft_future_release(r->f);
            }
            for (int t = 0; t < REF_THREADS; t++) {
                pthread_join(th[t], NULL);
            }
            if (wh != NULL && weft_join(wh, NULL) != WEFT_OK) {
                fail("worker holder");
            }
            if (before == 2) {
                if (weft_future_wait(r->f) != r->ret) {
                    fail("main wait");
                }
                weft_future_release(r->f);
            }
        }
        /* Every reference was given up: once drained, nothing is held. */
        weft_status_t st = weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN);
        if (st != WEFT_OK) {
            fail("shutdown: %s", weft_status_name(st));
        }
        for (int i = 0; i < rounds; i++) {
            if (rs[i].f == NULL) {
                continue;
            }
            if (atomic_load(&rs[i].body) != 1 ||
                atomic_load(&rs[i].hook) != 1 ||
                atomic_load(&rs[i].ok) != REF_THREADS + 1) {
                fail("round %d: body %d, hook %d, %d of %d holders ok", i,
                     atomic_load(&rs[i].body), atomic_load(&rs[i].hook),
                     atomic_load(&rs[i].ok), REF_THREADS + 1);
                break;
            }
        }
        st = weft_executor_destroy(ex);
        if (st != WEFT_OK) {
            fail("destroy: %s (a reference was lost or leaked)",
                 weft_status_name(st));
        }
        report_bad(&l);
        ledger_fini(&l);
        free(rs);
        check_end(t0, "%d rounds, %d holders each", rounds, REF_THREADS + 2);
    }
}

/* ---- (e) create/destroy with work in flight ---------------------------- */

static void
scenario_lifecycle(void)
{
    check_begin("e.lifecycle");
    double t0 = now_s();
    uint64_t rng = mix64(g_seed ^ 0xE0);
    uint64_t cap = g_tasks / 400;
    if (cap < 500) {
        cap = 500;
    }
    uint64_t tasks = 0, ebusy = 0, cancels = 0;
    for (int it = 0; it < 50 && g_check_ok; it++) {
        unsigned int nw = 1 + (unsigned int)rng_below(&rng, 4);
        weft_executor_t *ex = make_ex(nw);
        struct ledger l;
        ledger_init(&l, cap);
        int hold_one = it % 10 == 9;
        int cancel = it % 3 == 1;
        weft_future_t *held = NULL;
        uint64_t held_id = 0;
        /* Roots from outside, all detached but (maybe) one. */
        for (;;) {
            weft_status_t st;
            weft_future_t *f = NULL;
            int keep = hold_one && held == NULL;
            uint64_t id =
                node_spawn(ex, &l, 1 + (int)rng_below(&rng, 4),
                           rng_below(&rng, 2) || keep ? &f : NULL, &st);
            if (id == UINT64_MAX) {
                break;
            }
            if (st != WEFT_OK) {
                fail("spawn: %s", weft_status_name(st));
                break;
            }
            if (keep) {
                held = f;
                held_id = id;
            } else if (f != NULL) {
                weft_future_release(f); /* detach while in flight */
            }
        }
        if (cancel) {
            weft_status_t st = weft_executor_shutdown(ex, WEFT_SHUTDOWN_CANCEL);
            if (st != WEFT_OK) {
                fail("shutdown(CANCEL): %s", weft_status_name(st));
            }
            cancels++;
        }
        weft_status_t st = weft_executor_destroy(ex);
        if (held != NULL) {
            if (st != WEFT_EBUSY) {
                fail("destroy with a held future: %s, want WEFT_EBUSY",
                     weft_status_name(st));
            } else {
                ebusy++;
                weft_status_t fst = weft_future_status(held);
                if (fst == WEFT_EAGAIN) {
                    fail("held future pending after destroy");
                }
                if (fst == WEFT_ECANCELED &&
                    node_status(held_id) != WEFT_ECANCELED) {
                    atomic_fetch_add(&l.cancelled[held_id], 1);
                }
                weft_future_release(held);
                st = weft_executor_destroy(ex);
            }
        }
        if (st != WEFT_OK) {
            fail("destroy: %s", weft_status_name(st));
            break;
        }
        uint64_t n = ledger_ids(&l);
        tasks += n;
        if (!cancel) {
            ledger_check_all_ran(&l, "after destroy");
        } else {
            for (uint64_t id = 0; id < n; id++) {
                int b = atomic_load(&l.body[id]);
                int c = atomic_load(&l.cancelled[id]);
                if (atomic_load(&l.hook[id]) != 1 || b + c > 1) {
                    fail("iteration %d (CANCEL): id %" PRIu64 " body %d, "
                         "cancelled %d, hook %d",
                         it, id, b, c, atomic_load(&l.hook[id]));
                    break;
                }
            }
        }
        report_bad(&l);
        ledger_fini(&l);
    }
    check_end(t0,
              "50 executors, %" PRIu64 " tasks, %" PRIu64 " EBUSY, %" PRIu64
              " cancelled shutdowns",
              tasks, ebusy, cancels);
}

/* ---- (f) shutdown waits for running spawners ------------------------- */

/*
 * shutdown(DRAIN) is called while one task (the root) spawns children on
 * a 2-worker executor: detached (weft_spawn_ex), held (weft_spawn fast
 * path) and continuations of finished futures (weft_future_then from a
 * worker). The other worker steals and runs the children. shutdown must
 * not return before the root has ended: after it returns the root's
 * "done" flag must be set and every child must have run. In a
 * WEFT_PERTURB build the root's thread is paused at random atomics-layer
 * points (see weft__perturb above), which makes a pause between a
 * child's push and the spawner's bookkeeping likely.
 */
struct quiet_round {
    atomic_int root_done;
    atomic_int children_spawned;
    atomic_int children_ran;
    atomic_int bad;
};

static weft_status_t
quiet_child(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    atomic_fetch_add(&((struct quiet_round *)arg)->children_ran, 1);
    return WEFT_OK;
}

#define QUIET_CHILDREN 48

static weft_status_t
quiet_root(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)result;
    struct quiet_round *q = arg;
    weft_executor_t *ex = weft_task_executor(self);
    weft_future_t *held[QUIET_CHILDREN];
    int nheld = 0;
    weft_future_t *done = NULL;
    if (weft_spawn(ex, quiet_child, q, &done) != WEFT_OK) {
        atomic_fetch_add(&q->bad, 1);
        return WEFT_EFAILED;
    }
    atomic_fetch_add(&q->children_spawned, 1);
    if (weft_future_wait(done) != WEFT_OK) {
        atomic_fetch_add(&q->bad, 1);
    }
    t_pause_here = 1;
    for (int i = 0; i < QUIET_CHILDREN; i++) {
        weft_status_t st;
        switch (i % 3) {
        case 0:
            st = weft_spawn_ex(ex, NULL, quiet_child, q, NULL);
            break;
        case 1:
            st = weft_spawn(ex, quiet_child, q, &held[nheld]);
            if (st == WEFT_OK) {
                nheld++;
            }
            break;
        default:
            st = weft_future_then(done, quiet_child, q, NULL);
            break;
        }
        if (st != WEFT_OK) {
            atomic_fetch_add(&q->bad, 1);
        } else {
            atomic_fetch_add(&q->children_spawned, 1);
        }
    }
    t_pause_here = 0;
    /* Join the held ones oldest first (most were stolen). */
    for (int i = 0; i < nheld; i++) {
        if (weft_join(held[i], NULL) != WEFT_OK) {
            atomic_fetch_add(&q->bad, 1);
        }
    }
    weft_future_release(done);
    atomic_store(&q->root_done, 1);
    return WEFT_OK;
}

static void
scenario_quiescence(void)
{
    check_begin("f.shutdown-waits-for-spawner");
    double t0 = now_s();
    int rounds = STRESS_PERTURB ? 20 : 200;
    int early = 0, lost = 0;
    for (int r = 0; r < rounds; r++) {
        struct quiet_round q;
        memset(&q, 0, sizeof(q));
        weft_executor_t *ex = make_ex(2);
        if (weft_spawn(ex, quiet_root, &q, NULL) != WEFT_OK) {
            fail("spawn root");
            break;
        }
        weft_status_t st = weft_executor_shutdown(ex, WEFT_SHUTDOWN_DRAIN);
        if (st != WEFT_OK) {
            fail("shutdown: %s", weft_status_name(st));
        }
        int root_done = atomic_load(&q.root_done);
        int spawned = atomic_load(&q.children_spawned);
        int ran = atomic_load(&q.children_ran);
        if (!root_done) {
            if (early++ == 0) {
                fail("round %d: shutdown(DRAIN) returned while the root "
                     "task was still running (%d children spawned, %d "
                     "ran so far)",
                     r, spawned, ran);
            }
        } else if (ran != spawned) {
            if (lost++ == 0) {
                fail("round %d: shutdown(DRAIN) returned with %d of %d "
                     "children run",
                     r, ran, spawned);
            }
        }
        /* destroy waits for the root in any case (the workers exit only
         * once idle), so the round's memory stays valid. */
        st = weft_executor_destroy(ex);
        if (st != WEFT_OK) {
            fail("destroy: %s", weft_status_name(st));
        }
        if (atomic_load(&q.bad) != 0) {
            fail("round %d: %d spawn/join errors", r, atomic_load(&q.bad));
        }
    }
    check_end(t0,
              "%d rounds, %d early returns, %d with children not run, "
              "%" PRIu64 " injected pauses",
              rounds, early, lost, (uint64_t)atomic_load(&g_pauses));
}

/* ---- (g) shutdown(CANCEL) cancels what has not started --------------- */

/*
 * On a 1-worker executor a gated task blocks the worker while queued
 * tasks wait in the injection queue. shutdown(CANCEL) is called from a
 * helper thread; once an outside spawn is refused (shutdown has begun),
 * the gate opens. The queued tasks had not started when shutdown was
 * called, so none may run: each ends cancelled and its hook runs. In a
 * WEFT_PERTURB build the thread calling shutdown is paused at random
 * atomics-layer points inside the call.
 */
#define PROMPT_QUEUED 16

struct prompt_round {
    weft_executor_t *ex;
    atomic_int gate;
    atomic_int gate_started;
    atomic_int bodies;
    atomic_int hooks;
    weft_status_t shutdown_st;
};

static weft_status_t
prompt_gate_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    struct prompt_round *p = arg;
    atomic_store(&p->gate_started, 1);
    while (atomic_load(&p->gate) == 0) {
        sched_yield();
    }
    return WEFT_OK;
}

static weft_status_t
prompt_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    (void)self;
    (void)result;
    atomic_fetch_add(&((struct prompt_round *)arg)->bodies, 1);
    return WEFT_OK;
}

static void
prompt_hook(void *arg)
{
    atomic_fetch_add(&((struct prompt_round *)arg)->hooks, 1);
}

static void *
prompt_shutdown_thread(void *arg)
{
    struct prompt_round *p = arg;
    t_pause_here = 2;
    p->shutdown_st = weft_executor_shutdown(p->ex, WEFT_SHUTDOWN_CANCEL);
    t_pause_here = 0;
    return NULL;
}

static void
scenario_cancel_prompt(void)
{
    check_begin("g.cancel-unstarted");
    double t0 = now_s();
    int rounds = STRESS_PERTURB ? 10 : 50;
    int ran_rounds = 0;
    for (int r = 0; r < rounds; r++) {
        struct prompt_round *p = xcalloc(1, sizeof(*p));
        p->ex = make_ex(1);
        weft_future_t *g = NULL;
        if (weft_spawn(p->ex, prompt_gate_body, p, &g) != WEFT_OK) {
            fail("spawn gate");
            break;
        }
        while (atomic_load(&p->gate_started) == 0) {
            sched_yield();
        }
        int queued = 0;
        weft_spawn_opts_t opts = {.release = prompt_hook};
        for (int i = 0; i < PROMPT_QUEUED; i++) {
            if (weft_spawn_ex(p->ex, &opts, prompt_body, p, NULL) == WEFT_OK) {
                queued++;
            }
        }
        pthread_t th;
        if (pthread_create(&th, NULL, prompt_shutdown_thread, p) != 0) {
            abort();
        }
        for (;;) {
            weft_status_t st =
                weft_spawn_ex(p->ex, &opts, prompt_body, p, NULL);
            if (st == WEFT_ESHUTDOWN) {
                break;
            }
            if (st == WEFT_OK) {
                queued++; /* queued before shutdown began: not started */
            }
            sched_yield();
        }
        atomic_store(&p->gate, 1);
        pthread_join(th, NULL);
        if (p->shutdown_st != WEFT_OK) {
            fail("shutdown: %s", weft_status_name(p->shutdown_st));
        }
        if (weft_join(g, NULL) != WEFT_OK) {
            fail("gate task");
        }
        weft_status_t st = weft_executor_destroy(p->ex);
        if (st != WEFT_OK) {
            fail("destroy: %s", weft_status_name(st));
        }
        int bodies = atomic_load(&p->bodies);
        int hooks = atomic_load(&p->hooks);
        if (bodies != 0 && ran_rounds++ == 0) {
            fail("round %d: %d of %d tasks queued before shutdown(CANCEL) "
                 "ran their body",
                 r, bodies, queued);
        }
        if (hooks != queued + 1) {
            fail("round %d: %d hooks for %d queued + 1 refused", r, hooks,
                 queued);
        }
        free(p);
    }
    check_end(t0, "%d rounds, %d with a queued task that ran", rounds,
              ran_rounds);
}

/* ---- main -------------------------------------------------------------- */

static uint64_t
env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0') {
        return dflt;
    }
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 0);
    if (end == s || *end != '\0') {
        fprintf(stderr, "bad %s=%s\n", name, s);
        exit(2);
    }
    return (uint64_t)v;
}

int
main(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g_seed = env_u64("WEFT_SEED", mix64((uint64_t)ts.tv_sec * 1000000000ull +
                                        (uint64_t)ts.tv_nsec));
    g_tasks = env_u64("WEFT_STRESS_TASKS", DEFAULT_TASKS);
    if (g_tasks < 1000) {
        g_tasks = 1000;
    }
    printf("stress_executor: WEFT_SEED=%" PRIu64 " WEFT_STRESS_TASKS=%" PRIu64
           "\n",
           g_seed, g_tasks);
    fflush(stdout);
    double t0 = now_s();
    scenario_trees();
    scenario_shutdown_race();
    scenario_continuations();
    scenario_references();
    scenario_lifecycle();
    scenario_quiescence();
    scenario_cancel_prompt();
#if defined(STRESS_TSAN) || defined(STRESS_ASAN)
    check_begin("sanitizer-reports");
    if (atomic_load(&g_sanitizer_reports) != 0) {
        fail("%d sanitizer reports (see stderr)",
             atomic_load(&g_sanitizer_reports));
    }
    check_end(now_s(), "%d reports", atomic_load(&g_sanitizer_reports));
#endif
#if defined(STRESS_ASAN)
    /* Every executor, token and argument is gone by now: anything still
     * allocated leaked (the report goes to stderr). */
    check_begin("leak-check");
    if (__lsan_do_recoverable_leak_check() != 0) {
        fail("LeakSanitizer found leaks (see stderr)");
    }
    check_end(now_s(), "after every executor was destroyed");
#endif
    printf("stress_executor: %.1f s, WEFT_SEED=%" PRIu64 "\n", now_s() - t0,
           g_seed);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed != 0;
}
