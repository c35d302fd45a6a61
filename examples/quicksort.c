/*
 * quicksort.c - parallel quicksort with weft_spawn and weft_join.
 *
 * Usage: example_quicksort [--trace FILE] [N [SEED]]   (default N = 1000000)
 *
 * Each task partitions its range around a median of three, spawns the left
 * part as a child task, sorts the right part itself and joins the child:
 * fork-join, so a join usually finds the child still in the worker's own
 * deque and runs it inline. Ranges below CUTOFF elements are sorted
 * sequentially, which bounds the number of tasks (and their overhead) by
 * about 2N/CUTOFF.
 *
 * The argument of a child is a range on its parent's stack: the parent
 * joins the child before it returns, so the frame outlives the task.
 *
 * The program checks its result against qsort() on a copy of the input
 * and ends with an accounting line: every spawned task was joined once and
 * ran its body once.
 *
 * With --trace FILE it records a task trace (weft/trace.h) around the
 * sort and saves it to FILE as Chrome Trace Event JSON: open it in
 * speedscope (npx speedscope FILE), chrome://tracing or Perfetto, or draw
 * it with perf/trace_timeline.py FILE --out trace.png. The tasks are then
 * spawned with a name and a spawn site, which the trace shows. (Setting
 * WEFT_TRACE=FILE in the environment traces any weft program, this one
 * included, from executor creation to destruction, without names.)
 */
#include <weft.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUTOFF 4096
#define TRACE_EVENTS 65536 /* per worker; about 2N/CUTOFF tasks in all */

struct range {
    uint64_t *a;
    size_t lo; /* first element */
    size_t hi; /* one past the last */
};

static atomic_long spawned;
static atomic_long bodies;
static atomic_long joined;
static bool tracing; /* --trace: spawn named tasks */

static int
cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x;
    uint64_t b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static void
swap(uint64_t *a, size_t i, size_t j)
{
    uint64_t t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/*
 * Hoare partition of a[lo, hi) (at least 3 elements) around the median of
 * the first, middle and last elements. Returns p with lo < p < hi such
 * that every element of [lo, p) is <= every element of [p, hi).
 */
static size_t
partition(uint64_t *a, size_t lo, size_t hi)
{
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid] < a[lo]) {
        swap(a, mid, lo);
    }
    if (a[hi - 1] < a[lo]) {
        swap(a, hi - 1, lo);
    }
    if (a[hi - 1] < a[mid]) {
        swap(a, hi - 1, mid);
    }
    uint64_t pivot = a[mid];
    size_t i = lo;
    size_t j = hi - 1;
    for (;;) {
        while (a[i] < pivot) {
            i++;
        }
        while (a[j] > pivot) {
            j--;
        }
        if (i >= j) {
            return j + 1;
        }
        swap(a, i, j);
        i++;
        j--;
    }
}

static weft_status_t sort_task(weft_task_t *self, void *arg, weft_value_t *out);

/* Sort r: children for the left parts, this thread for the right ones. */
static weft_status_t
sort_range(weft_task_t *self, struct range r)
{
    if (r.hi - r.lo <= CUTOFF) {
        qsort(r.a + r.lo, r.hi - r.lo, sizeof(uint64_t), cmp_u64);
        return WEFT_OK;
    }
    size_t p = partition(r.a, r.lo, r.hi);
    struct range left = {r.a, r.lo, p};
    weft_future_t *f;
    weft_executor_t *ex = weft_task_executor(self);
    weft_spawn_opts_t named = {.name = "sort", WEFT_SPAWN_SITE};
    weft_status_t st = tracing ? weft_spawn_ex(ex, &named, sort_task, &left, &f)
                               : weft_spawn(ex, sort_task, &left, &f);
    if (st != WEFT_OK) {
        return st; /* the child never runs; nothing to join */
    }
    atomic_fetch_add(&spawned, 1);
    weft_status_t sr = sort_range(self, (struct range){r.a, p, r.hi});
    /* Always join, even after a failure: left lives in this frame. */
    weft_status_t sl = weft_join(f, NULL);
    atomic_fetch_add(&joined, 1);
    return sl != WEFT_OK ? sl : sr;
}

static weft_status_t
sort_task(weft_task_t *self, void *arg, weft_value_t *out)
{
    (void)out;
    atomic_fetch_add(&bodies, 1);
    return sort_range(self, *(struct range *)arg);
}

int
main(int argc, char **argv)
{
    const char *trace_path = NULL;
    int argi = 1;
    if (argc > 1 && strcmp(argv[1], "--trace") == 0) {
        if (argc < 3) {
            fprintf(stderr, "usage: %s [--trace FILE] [N [SEED]]\n", argv[0]);
            return 2;
        }
        trace_path = argv[2];
        tracing = true;
        argi = 3;
    }
    size_t n = argc > argi ? strtoull(argv[argi], NULL, 10) : 1000000;
    uint64_t seed = argc > argi + 1 ? strtoull(argv[argi + 1], NULL, 10) : 42;
    if (n == 0) {
        fprintf(stderr, "usage: %s [--trace FILE] [N [SEED]] with N > 0\n",
                argv[0]);
        return 2;
    }
    uint64_t *a = malloc(n * sizeof(*a));
    uint64_t *ref = malloc(n * sizeof(*ref));
    if (a == NULL || ref == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13; /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        a[i] = x % (n * 4); /* duplicates on purpose */
    }
    memcpy(ref, a, n * sizeof(*a));

    weft_executor_t *ex;
    weft_status_t st = weft_executor_create(NULL, &ex);
    if (st != WEFT_OK) {
        fprintf(stderr, "executor: %s\n", weft_status_str(st));
        return 1;
    }
    weft_status_t tr = WEFT_OK;
    if (trace_path != NULL) {
        tr = weft_executor_trace_begin(ex, TRACE_EVENTS);
    }
    struct range all = {a, 0, n};
    uint64_t t0 = weft_clock_now_ns();
    st = weft_executor_run(ex, sort_task, &all, NULL);
    uint64_t t1 = weft_clock_now_ns();
    if (trace_path != NULL && tr == WEFT_OK) {
        tr = weft_executor_trace_end(ex);
    }
    if (trace_path != NULL && tr == WEFT_OK) {
        tr = weft_executor_trace_save(ex, trace_path);
    }
    if (trace_path != NULL) {
        printf("trace: %s (%s)\n", trace_path, weft_status_name(tr));
    }
    unsigned int workers = weft_executor_num_workers(ex);
    weft_status_t sd = weft_executor_destroy(ex);
    if (st != WEFT_OK) {
        fprintf(stderr, "sort: %s\n", weft_status_str(st));
        return 1;
    }

    qsort(ref, n, sizeof(*ref), cmp_u64);
    size_t unsorted = 0;
    for (size_t i = 1; i < n; i++) {
        unsorted += a[i - 1] > a[i];
    }
    int same = memcmp(a, ref, n * sizeof(*a)) == 0;
    long sp = atomic_load(&spawned);
    long bo = atomic_load(&bodies);
    long jo = atomic_load(&joined);

    printf("sorted %zu keys on %u workers in %.1f ms: %s, %s\n", n, workers,
           (double)(t1 - t0) / 1e6, unsorted == 0 ? "in order" : "OUT OF ORDER",
           same ? "same keys as qsort" : "KEYS DIFFER FROM qsort");
    /* The root task is run by weft_executor_run, not spawned here. */
    printf("accounting: %ld spawned, %ld joined, %ld bodies ran (spawned + "
           "root), destroy %s\n",
           sp, jo, bo, weft_status_name(sd));
    int ok = unsorted == 0 && same && sp == jo && bo == sp + 1 &&
             sd == WEFT_OK && tr == WEFT_OK;
    free(a);
    free(ref);
    if (!ok) {
        printf("FAILED\n");
        return 1;
    }
    return 0;
}
