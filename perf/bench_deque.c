/* cc -O2 -std=c11 -D_GNU_SOURCE -I. -Iinclude perf/bench_deque.c primitives/deque.c -lck -lpthread -o /tmp/bench_deque */
/*
 * bench_deque.c - micro-benchmark of the Chase-Lev deque. Not a test: it
 * checks nothing beyond item accounting and never gates CI.
 *
 * Modes (default: all but --pairs-only):
 *
 *   pairs   owner push+pop pairs on a private deque (the executor's cost
 *           per task spawned and joined inline): ns per pair, median of
 *           --runs runs of --pairs pairs.
 *   steal   one owner pushing, one thief stealing, pinned to CPUs 0 and 1
 *           when there are two: items/s and the thief's share, against the
 *           single-thread baseline (the owner pushing and popping alone).
 *   fence   the store->load barrier that pop needs, both ways: a store
 *           followed by ck_pr_fence_store_load() (mfence on x86) against
 *           one xchg (weft__fas_i64), and a copy of pop built each way.
 *
 *   --pairs-only N   only N push+pop pairs, nothing printed but a checksum:
 *                    the mode for `valgrind --tool=callgrind`; run it with
 *                    two values of N and divide the difference of the
 *                    instruction counts by the difference of the Ns.
 *
 * Options: --pairs N (default 10000000), --runs R (11), --items N for the
 * steal mode (20000000), --only pairs|steal|fence. The seed (WEFT_SEED or
 * the clock) varies the owner's batch sizes in the steal mode; it is
 * printed so that a run can be repeated.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "primitives/deque.h"

#include <weft/status.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 101

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t
rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static void
pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void
die(const char *what)
{
    fprintf(stderr, "bench_deque: %s\n", what);
    exit(2);
}

static void
print_machine(uint64_t seed)
{
    struct utsname u;
    char cpu[128] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[256];
        while (fgets(line, sizeof(line), f) != NULL) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
                snprintf(cpu, sizeof(cpu), "%s", colon + 2);
                cpu[strcspn(cpu, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    if (uname(&u) != 0) {
        memset(&u, 0, sizeof(u));
    }
    printf("# machine: %s %s %s, nproc=%ld, cpu=\"%s\"\n", u.sysname, u.release,
           u.machine, sysconf(_SC_NPROCESSORS_ONLN), cpu);
    printf("# atomics: %s\n",
#ifdef WEFT_ATOMICS_BUILTIN
           "__atomic builtins"
#else
           "ck_pr"
#endif
    );
    printf("# seed=%" PRIu64 "\n", seed);
}

/* ---- pairs: push+pop on a private deque ------------------------------ */

static uintptr_t
run_pairs(struct weft__deque *dq, uint64_t n)
{
    uintptr_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        (void)weft__deque_push(dq, (void *)(uintptr_t)(i | 1));
        sum += (uintptr_t)weft__deque_pop(dq);
    }
    return sum;
}

/*
 * One item stays in the deque during the pairs, so that every pop takes
 * the "more than one item" path (no CAS), as in an executor whose worker
 * spawns a child and joins it while older tasks wait to be stolen.
 * Returns the median ns per pair.
 */
static double
bench_pairs(uint64_t n, int runs, uintptr_t *sink)
{
    struct weft__deque dq;
    double ns[MAX_RUNS];
    if (weft__deque_init(&dq, 8) != WEFT_OK) {
        die("deque_init failed");
    }
    (void)weft__deque_push(&dq, (void *)1);
    *sink += run_pairs(&dq, n / 10); /* warm-up */
    for (int r = 0; r < runs; r++) {
        uint64_t t0 = now_ns();
        *sink += run_pairs(&dq, n);
        ns[r] = (double)(now_ns() - t0) / (double)n;
    }
    (void)weft__deque_pop(&dq);
    weft__deque_fini(&dq);
    return median(ns, runs);
}

/* Same, but with the deque empty before each push: pop takes the last-item
 * path and its CAS on top. */
static double
bench_pairs_last(uint64_t n, int runs, uintptr_t *sink)
{
    struct weft__deque dq;
    double ns[MAX_RUNS];
    if (weft__deque_init(&dq, 8) != WEFT_OK) {
        die("deque_init failed");
    }
    *sink += run_pairs(&dq, n / 10);
    for (int r = 0; r < runs; r++) {
        uint64_t t0 = now_ns();
        *sink += run_pairs(&dq, n);
        ns[r] = (double)(now_ns() - t0) / (double)n;
    }
    weft__deque_fini(&dq);
    return median(ns, runs);
}

/* ---- steal: one owner, one thief ------------------------------------- */

struct steal_ctx {
    struct weft__deque dq;
    uint32_t done;   /* owner store-releases 1 after its last push */
    uint32_t ready;  /* thief store-releases 1 once it is running */
    uint64_t stolen; /* thief only; read after join */
    uint64_t attempts;
    int pin;
};

static void *
steal_thief(void *arg)
{
    struct steal_ctx *c = arg;
    uint64_t stolen = 0, attempts = 0;
    if (c->pin) {
        pin_self(1);
    }
    /* Pairs with: the load of ready in steal_round(). */
    weft__store_rel_u32(&c->ready, 1);
    for (;;) {
        void *it;
        attempts++;
        enum weft__steal r = weft__deque_steal(&c->dq, &it);
        if (r == WEFT__STEAL_OK) {
            stolen++;
        } else if (r == WEFT__STEAL_EMPTY) {
            /* Pairs with: the store-release of done in steal_round(). */
            if (weft__load_acq_u32(&c->done) != 0) {
                break;
            }
            weft__cpu_relax();
        }
    }
    c->stolen = stolen;
    c->attempts = attempts;
    return NULL;
}

struct steal_result {
    double items_per_s;
    double thief_share;
    uint64_t attempts;
    uint64_t stolen;
};

/*
 * The owner pushes `items` items in batches (1..2*batch, seeded) and after
 * each batch pops back down to keep, or to empty when keep is 0, while the
 * thief (if any) steals from the top.
 */
static void
steal_round(uint64_t items, int with_thief, int pin, uint64_t batch,
            uint64_t keep, uint64_t seed, struct steal_result *res)
{
    struct steal_ctx *c = calloc(1, sizeof(*c));
    pthread_t th;
    uint64_t popped = 0, pushed = 0, rng = seed;
    if (c == NULL || weft__deque_init(&c->dq, 10) != WEFT_OK) {
        die("out of memory");
    }
    c->pin = pin;
    if (pin) {
        pin_self(0);
    }
    if (with_thief) {
        if (pthread_create(&th, NULL, steal_thief, c) != 0) {
            die("pthread_create failed");
        }
        /* Pairs with: the store-release of ready in steal_thief(). */
        while (weft__load_acq_u32(&c->ready) == 0) {
            sched_yield();
        }
    }
    uint64_t t0 = now_ns();
    while (pushed < items) {
        uint64_t len = 1 + rng_next(&rng) % (2 * batch);
        for (uint64_t i = 0; i < len && pushed < items; i++, pushed++) {
            if (weft__deque_push(&c->dq, (void *)(uintptr_t)(pushed + 1)) !=
                WEFT_OK) {
                die("push failed");
            }
        }
        while (weft__deque_size_hint(&c->dq) > (int64_t)keep) {
            if (weft__deque_pop(&c->dq) == NULL) {
                break;
            }
            popped++;
        }
    }
    while (weft__deque_pop(&c->dq) != NULL) {
        popped++;
    }
    /* Pairs with: the load of done in steal_thief(). */
    weft__store_rel_u32(&c->done, 1);
    if (with_thief) {
        pthread_join(th, NULL);
    }
    uint64_t t1 = now_ns();
    if (popped + c->stolen != items) {
        fprintf(stderr,
                "bench_deque: %" PRIu64 " popped + %" PRIu64
                " stolen != %" PRIu64 " pushed\n",
                popped, c->stolen, items);
        exit(1);
    }
    res->items_per_s = (double)items * 1e9 / (double)(t1 - t0);
    res->thief_share = (double)c->stolen / (double)items;
    res->attempts = c->attempts;
    res->stolen = c->stolen;
    weft__deque_fini(&c->dq);
    free(c);
}

static void
bench_steal(uint64_t items, int runs, uint64_t seed)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int pin = ncpu >= 2;
    struct steal_result r;
    double v[MAX_RUNS], share[MAX_RUNS];
    static const struct {
        const char *name;
        uint64_t batch, keep;
    } cfg[] = {
        {"batches of ~16, owner pops to empty", 16, 0},
        {"batches of ~256, owner pops to 64", 256, 64},
        {"owner only pushes (thief takes all it can)", 1u << 20, 1u << 30},
    };

    printf("\n# steal: 1 owner%s + 1 thief%s, %" PRIu64
           " items per run, median of %d runs\n",
           pin ? " (cpu 0)" : "", pin ? " (cpu 1)" : "", items, runs);
    for (size_t k = 0; k < sizeof(cfg) / sizeof(cfg[0]); k++) {
        for (int with_thief = 0; with_thief <= 1; with_thief++) {
            uint64_t attempts = 0, stolen = 0;
            for (int i = 0; i < runs; i++) {
                steal_round(items, with_thief, pin, cfg[k].batch, cfg[k].keep,
                            seed + (uint64_t)i, &r);
                v[i] = r.items_per_s;
                share[i] = r.thief_share;
                attempts += r.attempts;
                stolen += r.stolen;
            }
            double med = median(v, runs);
            double lo = v[0], hi = v[runs - 1]; /* sorted by median() */
            double sh = median(share, runs);
            if (with_thief) {
                printf("steal  %-44s %7.1f M items/s (%.1f-%.1f), thief share"
                       " %5.1f%% (%.1f M stolen/s, %.2f attempts per "
                       "steal)\n",
                       cfg[k].name, med / 1e6, lo / 1e6, hi / 1e6, sh * 100.0,
                       med * sh / 1e6,
                       stolen > 0 ? (double)attempts / (double)stolen : 0.0);
            } else {
                printf("steal  %-44s %7.1f M items/s (%.1f-%.1f), owner "
                       "only (baseline)\n",
                       cfg[k].name, med / 1e6, lo / 1e6, hi / 1e6);
            }
        }
    }
    if (pin) {
        cpu_set_t all;
        CPU_ZERO(&all);
        for (long i = 0; i < ncpu && i < CPU_SETSIZE; i++) {
            CPU_SET((int)i, &all);
        }
        (void)pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
    }
}

/* ---- fence: mfence against xchg --------------------------------------- */

/*
 * Shared words for the fence loops; only this thread touches them, the
 * point is the barrier's own cost.
 */
static int64_t fence_x, fence_y;

static double
loop_store_mfence(uint64_t n, int64_t *sink)
{
    int64_t s = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        /* Unpaired: a benchmark of the barrier itself. */
        weft__store_relaxed_i64(&fence_x, (int64_t)i);
        weft__fence_store_load(); /* Unpaired: what is measured. */
        s += weft__load_relaxed_i64(&fence_y);
    }
    double ns = (double)(now_ns() - t0) / (double)n;
    *sink += s;
    return ns;
}

static double
loop_xchg(uint64_t n, int64_t *sink)
{
    int64_t s = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        /* Unpaired: a benchmark of the barrier itself. */
        (void)weft__fas_i64(&fence_x, (int64_t)i);
        s += weft__load_relaxed_i64(&fence_y);
    }
    double ns = (double)(now_ns() - t0) / (double)n;
    *sink += s;
    return ns;
}

static double
loop_plain(uint64_t n, int64_t *sink)
{
    int64_t s = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        weft__store_relaxed_i64(&fence_x, (int64_t)i);
        s += weft__load_relaxed_i64(&fence_y);
    }
    double ns = (double)(now_ns() - t0) / (double)n;
    *sink += s;
    return ns;
}

/*
 * weft__deque_pop() as Le et al. write it: store bottom, then a
 * stand-alone store->load fence. Everything else is the same as the real
 * pop, so the difference of the two pair timings is the barrier's.
 */
static void *
pop_with_mfence(struct weft__deque *dq)
{
    int64_t b = weft__load_relaxed_i64(&dq->bottom) - 1;
    struct weft__deque_buf *a = dq->buf;
    if (b < dq->top_cache) {
        return NULL;
    }
    weft__store_relaxed_i64(&dq->bottom, b);
    /* Unpaired: private deque; the barrier is what is measured. */
    weft__fence_store_load();
    int64_t t = weft__load_relaxed_i64(&dq->top);
    if (t < b) {
        dq->top_cache = t;
        return weft__load_relaxed_ptr(&a->slot[b & a->mask]);
    }
    void *item = NULL;
    if (t == b) {
        item = weft__load_relaxed_ptr(&a->slot[b & a->mask]);
        /* Unpaired: private deque, no thief. */
        if (!weft__cas_i64(&dq->top, t, t + 1)) {
            item = NULL;
        }
        dq->top_cache = t + 1;
    }
    weft__store_relaxed_i64(&dq->bottom, b + 1);
    return item;
}

static double
bench_pairs_mfence(uint64_t n, int runs, uintptr_t *sink)
{
    struct weft__deque dq;
    double ns[MAX_RUNS];
    if (weft__deque_init(&dq, 8) != WEFT_OK) {
        die("deque_init failed");
    }
    (void)weft__deque_push(&dq, (void *)1);
    for (int r = -1; r < runs; r++) {
        uint64_t m = r < 0 ? n / 10 : n;
        uintptr_t sum = 0;
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < m; i++) {
            (void)weft__deque_push(&dq, (void *)(uintptr_t)(i | 1));
            sum += (uintptr_t)pop_with_mfence(&dq);
        }
        if (r >= 0) {
            ns[r] = (double)(now_ns() - t0) / (double)m;
        }
        *sink += sum;
    }
    (void)weft__deque_pop(&dq);
    weft__deque_fini(&dq);
    return median(ns, runs);
}

static void
bench_fence(uint64_t n, int runs, uintptr_t *psink)
{
    double a[MAX_RUNS], b[MAX_RUNS], c[MAX_RUNS];
    int64_t sink = 0;
    for (int r = 0; r < runs; r++) {
        c[r] = loop_plain(n, &sink);
        a[r] = loop_store_mfence(n, &sink);
        b[r] = loop_xchg(n, &sink);
    }
    double plain = median(c, runs), mf = median(a, runs), xc = median(b, runs);
    printf("\n# fence: store + load with the store->load barrier between, "
           "%" PRIu64 " iterations, median of %d runs\n",
           n, runs);
    printf("fence  store; load (no barrier, reference)   %6.2f ns\n", plain);
    printf("fence  store; ck_pr_fence_store_load; load   %6.2f ns\n", mf);
    printf("fence  xchg (weft__fas_i64); load             %6.2f ns\n", xc);
    printf("fence  mfence / xchg                          %6.2f x\n", mf / xc);
    double pm = bench_pairs_mfence(n, runs, psink);
    double px = bench_pairs(n, runs, psink);
    printf("fence  push+pop pair, pop with store+mfence  %6.2f ns\n", pm);
    printf("fence  push+pop pair, pop with xchg (weft)   %6.2f ns\n", px);
    *psink += (uintptr_t)sink;
}

/* ---- main -------------------------------------------------------------- */

static uint64_t
arg_u64(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        die("option needs a value");
    }
    return strtoull(argv[++*i], NULL, 0);
}

int
main(int argc, char **argv)
{
    uint64_t pairs = 10000000, items = 20000000;
    uint64_t pairs_only = 0;
    int runs = 11, have_pairs_only = 0;
    const char *only = NULL;
    uintptr_t sink = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pairs-only") == 0) {
            pairs_only = arg_u64(argc, argv, &i);
            have_pairs_only = 1;
        } else if (strcmp(argv[i], "--pairs") == 0) {
            pairs = arg_u64(argc, argv, &i);
        } else if (strcmp(argv[i], "--items") == 0) {
            items = arg_u64(argc, argv, &i);
        } else if (strcmp(argv[i], "--runs") == 0) {
            runs = (int)arg_u64(argc, argv, &i);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: bench_deque [--pairs N] [--runs R] [--items N] "
                    "[--only pairs|steal|fence] | --pairs-only N\n");
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || pairs < 10 || items < 1) {
        die("bad arguments");
    }

    if (have_pairs_only) {
        /* Nothing but the pairs: callgrind's Ir difference between two
         * values of N is the cost of the pairs alone. */
        struct weft__deque dq;
        if (weft__deque_init(&dq, 8) != WEFT_OK) {
            die("deque_init failed");
        }
        (void)weft__deque_push(&dq, (void *)1);
        sink = run_pairs(&dq, pairs_only);
        weft__deque_fini(&dq);
        printf("%" PRIuPTR "\n", sink);
        return 0;
    }

    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    const char *env = getenv("WEFT_SEED");
    uint64_t seed =
        env != NULL && *env != '\0'
            ? strtoull(env, NULL, 0)
            : (uint64_t)rt.tv_sec * 1000000007ULL ^ (uint64_t)rt.tv_nsec;
    print_machine(seed);

    if (only == NULL || strcmp(only, "pairs") == 0) {
        printf("\n# pairs: owner push+pop on a private deque, 1 thread, "
               "%" PRIu64 " pairs per run, median of %d runs\n",
               pairs, runs);
        printf("pairs  push+pop, pop leaves 1 item (no CAS)  %6.2f ns\n",
               bench_pairs(pairs, runs, &sink));
        printf("pairs  push+pop, pop takes the last (CAS)    %6.2f ns\n",
               bench_pairs_last(pairs, runs, &sink));
    }
    if (only == NULL || strcmp(only, "steal") == 0) {
        bench_steal(items, runs, seed);
    }
    if (only == NULL || strcmp(only, "fence") == 0) {
        bench_fence(pairs, runs, &sink);
    }
    printf("\n# checksum %" PRIuPTR "\n", sink);
    return 0;
}
