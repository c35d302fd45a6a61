/*
 * alloc.c - the allocator hooks (malloc and free unless the application
 * set its own, include/weft/alloc.h) behind one entry point, with a
 * test-only fault injector and leak counters.
 *
 * DESIGN
 *
 * The injector is a countdown. weft__alloc_set_fail_after(n) stores n;
 * each allocation call that finds the countdown non-negative decrements it
 * with a CAS, and the call that moves it from 0 to -1 fails. A negative
 * countdown means disarmed, so the fast path is one relaxed load that
 * finds it negative. The counters are two monotonic totals (allocated and
 * freed) rather than one signed live count, so each is a plain
 * fetch-and-add.
 *
 * Invariants:
 *  1. At most one allocation call fails per arming: only the CAS that
 *     takes the countdown from 0 to -1 fails its call, and -1 disarms.
 *  2. weft__alloc_live() == blocks returned non-NULL by weft__alloc() or
 *     by weft__realloc(NULL, n), minus non-NULL blocks passed to
 *     weft__free().
 *  3. None of these counters orders any other memory access; they are
 *     statistics, read exactly only when the process is quiescent.
 *  4. Each call adds 1 to its site's calls, and each injected failure adds
 *     1 to its site's failed, so summed over the sites failed equals
 *     weft__alloc_failures() (since the last weft__alloc_sites_reset()).
 *  5. The allocator hooks (weft_allocator_set(), include/weft/alloc.h)
 *     change only while weft__alloc_live() is 0, so every live block was
 *     made by the hooks that will free it.
 *
 * The hooks are a plain struct, read without synchronization on every
 * call: weft_allocator_set() is documented not to run concurrently with
 * any other weft call, so the thread that sets them happens-before every
 * thread that later allocates (it creates them, or hands them weft
 * objects through its own synchronization).
 *
 * The site list is the ELF section weft_alloc_sites, which the allocation
 * macros in alloc.h fill with one pointer per call site. The linker
 * defines __start_weft_alloc_sites and __stop_weft_alloc_sites around it
 * (these two names break the no-leading-underscore rule because the linker
 * chooses them). They are weak so that a program with no site at all
 * still links, with both NULL.
 */
#include "alloc.h"

#include <weft/alloc.h>

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "atomics.h"

/* Injector countdown; -1 when disarmed. CAS by allocating threads. */
static int64_t alloc_countdown = -1;
/* Totals for the leak count and the injector. faa by any thread. */
static uint64_t alloc_allocated;
static uint64_t alloc_freed;
static uint64_t alloc_injected;

/* The default allocator: the C library's. */
static void *
alloc_sys_alloc(void *ctx, size_t size, size_t align)
{
    (void)ctx;
    if (align <= alignof(max_align_t)) {
        return malloc(size);
    }
    return aligned_alloc(align, size);
}

static void *
alloc_sys_realloc(void *ctx, void *p, size_t size)
{
    (void)ctx;
    return realloc(p, size);
}

static void
alloc_sys_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

/* Current hooks. Written only by weft_allocator_set() (invariant 5). */
static weft_allocator_t alloc_hooks = {alloc_sys_alloc, alloc_sys_realloc,
                                       alloc_sys_free, NULL};

/* Bounds of the site list, defined by the linker (see the top comment). */
extern struct weft__alloc_site *__start_weft_alloc_sites[]
    __attribute__((weak));
extern struct weft__alloc_site *__stop_weft_alloc_sites[]
    __attribute__((weak));

/* True when the injector says this call must fail. */
static bool
alloc_inject(struct weft__alloc_site *site)
{
    /* Unpaired: a statistic (invariant 3). */
    (void)weft__faa_u64(&site->calls, 1);
    /* Relaxed: the countdown orders nothing; the CAS below decides. */
    int64_t c = weft__load_relaxed_i64(&alloc_countdown);
    while (c >= 0) {
        /*
         * Take one step of the countdown; exactly one caller moves it
         * from 0 to -1 and fails (invariant 1).
         * Unpaired: the CAS only has to be atomic, it publishes no data
         * (it is seq_cst because that is the CAS atomics.h offers).
         */
        if (weft__cas_i64(&alloc_countdown, c, c - 1)) {
            if (c == 0) {
                /* Unpaired: a statistic (invariant 3). */
                (void)weft__faa_u64(&alloc_injected, 1);
                /* Unpaired: a statistic (invariants 3 and 4). */
                (void)weft__faa_u64(&site->failed, 1);
                return true;
            }
            return false;
        }
        /* Relaxed: lost the CAS; reload and retry. */
        c = weft__load_relaxed_i64(&alloc_countdown);
    }
    return false;
}

void *
weft__alloc_at(struct weft__alloc_site *site, size_t n)
{
    if (alloc_inject(site)) {
        return NULL;
    }
    void *p = alloc_hooks.alloc(alloc_hooks.ctx, n == 0 ? 1 : n,
                                alignof(max_align_t));
    if (p != NULL) {
        /* Unpaired: a statistic (invariant 3). */
        (void)weft__faa_u64(&alloc_allocated, 1);
    }
    return p;
}

void *
weft__alloc_aligned_at(struct weft__alloc_site *site, size_t align, size_t n)
{
    if (alloc_inject(site)) {
        return NULL;
    }
    size_t sz = n == 0 ? align : (n + align - 1) / align * align;
    void *p = alloc_hooks.alloc(alloc_hooks.ctx, sz, align);
    if (p != NULL) {
        /* Unpaired: a statistic (invariant 3). */
        (void)weft__faa_u64(&alloc_allocated, 1);
    }
    return p;
}

void *
weft__realloc_at(struct weft__alloc_site *site, void *p, size_t n)
{
    if (alloc_inject(site)) {
        return NULL;
    }
    size_t sz = n == 0 ? 1 : n;
    void *q = p == NULL
                  ? alloc_hooks.alloc(alloc_hooks.ctx, sz, alignof(max_align_t))
                  : alloc_hooks.realloc(alloc_hooks.ctx, p, sz);
    if (q != NULL && p == NULL) {
        /* Unpaired: a statistic (invariant 3). */
        (void)weft__faa_u64(&alloc_allocated, 1);
    }
    return q;
}

void
weft__free(void *p)
{
    if (p == NULL) {
        return;
    }
    /* Unpaired: a statistic (invariant 3). */
    (void)weft__faa_u64(&alloc_freed, 1);
    alloc_hooks.free(alloc_hooks.ctx, p);
}

void
weft__alloc_prefault(void *p, size_t n)
{
#ifdef MADV_POPULATE_WRITE
    long page = sysconf(_SC_PAGESIZE);
    if (p == NULL || page <= 0) {
        return;
    }
    uintptr_t lo =
        ((uintptr_t)p + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (hi > lo) {
        /* A hint: EINVAL (an older kernel) or a refusal leaves the pages
         * to fault in one by one, as without the call. */
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
    }
#else
    (void)p;
    (void)n;
#endif
}

weft_status_t
weft_allocator_set(const weft_allocator_t *a)
{
    if (a != NULL &&
        (a->alloc == NULL || a->realloc == NULL || a->free == NULL)) {
        return WEFT_EINVAL;
    }
    if (weft__alloc_live() != 0) {
        return WEFT_EBUSY;
    }
    if (a == NULL) {
        alloc_hooks = (weft_allocator_t){alloc_sys_alloc, alloc_sys_realloc,
                                         alloc_sys_free, NULL};
    } else {
        alloc_hooks = *a;
    }
    return WEFT_OK;
}

weft_status_t
weft_allocator_get(weft_allocator_t *out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = alloc_hooks;
    return WEFT_OK;
}

void
weft__alloc_set_fail_after(long n)
{
    /*
     * Unpaired: arming is a test-only action made while no other thread
     * allocates (see alloc.h); the value carries no other data.
     */
    weft__store_rel_i64(&alloc_countdown, n < 0 ? -1 : (int64_t)n);
}

int64_t
weft__alloc_live(void)
{
    /* Relaxed: statistics, exact only when quiescent (invariant 3). */
    uint64_t freed = weft__load_relaxed_u64(&alloc_freed);
    /* Relaxed: as above. */
    uint64_t allocated = weft__load_relaxed_u64(&alloc_allocated);
    return (int64_t)(allocated - freed);
}

size_t
weft__alloc_sites(struct weft__alloc_site_info *out, size_t n)
{
    struct weft__alloc_site **b = __start_weft_alloc_sites;
    struct weft__alloc_site **e = __stop_weft_alloc_sites;
    size_t count = 0;
    if (b == NULL || e == NULL) {
        return 0;
    }
    for (struct weft__alloc_site **p = b; p < e; p++) {
        struct weft__alloc_site *s = *p;
        if (s == NULL) {
            continue; /* padding, should a linker ever insert any */
        }
        if (count < n) {
            out[count].file = s->file;
            out[count].line = s->line;
            out[count].func = s->func;
            out[count].kind = s->kind;
            /* Relaxed: statistics (invariant 3). */
            out[count].calls = weft__load_relaxed_u64(&s->calls);
            /* Relaxed: statistics (invariant 3). */
            out[count].failed = weft__load_relaxed_u64(&s->failed);
        }
        count++;
    }
    return count;
}

void
weft__alloc_sites_reset(void)
{
    struct weft__alloc_site **b = __start_weft_alloc_sites;
    struct weft__alloc_site **e = __stop_weft_alloc_sites;
    if (b == NULL || e == NULL) {
        return;
    }
    for (struct weft__alloc_site **p = b; p < e; p++) {
        if (*p != NULL) {
            /* Relaxed: statistics reset while nothing allocates. */
            weft__store_relaxed_u64(&(*p)->calls, 0);
            /* Relaxed: as above. */
            weft__store_relaxed_u64(&(*p)->failed, 0);
        }
    }
}

uint64_t
weft__alloc_failures(void)
{
    /* Relaxed: a statistic (invariant 3). */
    return weft__load_relaxed_u64(&alloc_injected);
}
