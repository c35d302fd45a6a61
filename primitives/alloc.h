/*
 * alloc.h - the one allocation entry point of weft's primitives (internal).
 *
 * Every heap allocation weft makes (errors, groups, tokens, deque buffers,
 * the executor, its pool slabs and its timer) goes through WEFT__ALLOC() /
 * WEFT__ALLOC_ALIGNED() / WEFT__REALLOC() / weft__free(), so that the
 * application's allocator (weft_allocator_set(), include/weft/alloc.h)
 * and fault injection have one place to attach to. They call the
 * allocator's hooks (malloc, aligned_alloc, realloc and free by default)
 * plus these test aids:
 *
 *  - a fault injector, weft__alloc_set_fail_after(), which makes one
 *    chosen allocation fail so that every ENOMEM path can be tested by
 *    failing the k-th allocation of a scenario for each k in turn;
 *  - counters of live blocks and injected failures, so tests can assert
 *    that nothing leaked without relying on a sanitizer;
 *  - a registry of allocation sites with per-site counters (below), so
 *    the sweep can prove that it failed every site.
 *
 * The injector and the counters are process-wide. That is the one piece of
 * global mutable state in primitives/ and it exists for tests only: a
 * test that arms the injector must not run concurrently with other work
 * that allocates (Criterion runs each test in its own process).
 *
 * Cost: one relaxed load of the injector and one fetch-and-add on a shared
 * counter per call. The executor keeps malloc off its spawn fast path
 * (per-worker pools, docs/design.md 4.2), so this is not a hot path.
 */
#ifndef WEFT_PRIMITIVES_ALLOC_H
#define WEFT_PRIMITIVES_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/*
 * ALLOCATION SITES
 *
 * Every call site names itself: code allocates with the macros
 *
 *   WEFT__ALLOC(n)                 instead of malloc(n)
 *   WEFT__ALLOC_ALIGNED(align, n)  instead of aligned_alloc(align, n)
 *   WEFT__REALLOC(p, n)            instead of realloc(p, n)
 *
 * and frees with weft__free(). Each macro expansion defines a static
 * struct weft__alloc_site holding __FILE__, __LINE__ and __func__, and puts
 * a pointer to it in the ELF section "weft_alloc_sites", so the linker
 * builds the list of every allocation site linked into the program,
 * whether or not it ever runs. The alloc layer counts calls and injected
 * failures per site, and weft__alloc_sites() reads the list back: the
 * allocation-failure sweep (tests/test_alloc_failure.c) checks that each
 * site was failed at least once and names the ones that were not.
 *
 * The tag is mandatory: the untagged names weft__alloc, weft__alloc_aligned
 * and weft__realloc are poisoned below, so a new call site that uses them
 * does not compile, and weft__alloc_at() and its siblings are meant to be
 * called only through the macros (the sweep test also greps executor/ and
 * primitives/ for direct calls and for raw malloc/calloc/realloc/free).
 *
 * Cost: one more relaxed fetch-and-add on the site's own counter per call.
 */
struct weft__alloc_site {
    const char *file; /* __FILE__ of the call */
    int line;         /* __LINE__ of the call */
    const char *func; /* __func__ of the call */
    const char *kind; /* "alloc", "alloc_aligned" or "realloc" */
    uint64_t calls;   /* calls made here (faa; statistics) */
    uint64_t failed;  /* of those, failed by the injector (faa) */
};

/* One site's counters, as weft__alloc_sites() copies them out. */
struct weft__alloc_site_info {
    const char *file;
    int line;
    const char *func;
    const char *kind;
    uint64_t calls;
    uint64_t failed;
};

/*
 * The site record of one macro expansion (GNU statement expression, which
 * gcc and clang accept in C11 mode; __extension__ keeps -pedantic quiet).
 * The pointer in section weft_alloc_sites is what registers the site; it
 * is "used" so the compiler keeps it although nothing reads it by name.
 */
#define WEFT__ALLOC_SITE_(kind_)                                              \
    __extension__({                                                           \
        static struct weft__alloc_site weft__alloc_site_ = {                  \
            __FILE__, __LINE__, __func__, kind_, 0, 0};                       \
        static struct weft__alloc_site *weft__alloc_site_ref_                 \
            __attribute__((used, section("weft_alloc_sites"))) =              \
                &weft__alloc_site_;                                           \
        (void)weft__alloc_site_ref_;                                          \
        &weft__alloc_site_;                                                   \
    })

/* Allocate n bytes at a registered site; see weft__alloc_at(). */
#define WEFT__ALLOC(n) weft__alloc_at(WEFT__ALLOC_SITE_("alloc"), (n))
/* Allocate n bytes aligned to align; see weft__alloc_aligned_at(). */
#define WEFT__ALLOC_ALIGNED(align, n)                                         \
    weft__alloc_aligned_at(WEFT__ALLOC_SITE_("alloc_aligned"), (align), (n))
/* Resize p to n bytes; see weft__realloc_at(). */
#define WEFT__REALLOC(p, n)                                                   \
    weft__realloc_at(WEFT__ALLOC_SITE_("realloc"), (p), (n))

/*
 * Allocate n bytes (n == 0 is treated as 1, so that NULL always means
 * failure). site is the caller's WEFT__ALLOC_SITE_ record: use WEFT__ALLOC().
 * Returns: the block, or NULL when out of memory or when the injector fails
 * this call. Thread-safety: any thread. Blocking: as malloc.
 */
void *weft__alloc_at(struct weft__alloc_site *site, size_t n);

/*
 * Allocate n bytes aligned to align (a power of two, at most a page),
 * rounding n up to a multiple of align as aligned_alloc requires. Free
 * with weft__free(). Use WEFT__ALLOC_ALIGNED(). Returns and thread-safety
 * as weft__alloc_at().
 */
void *weft__alloc_aligned_at(struct weft__alloc_site *site, size_t align,
                             size_t n);

/*
 * Resize p to n bytes, as realloc (p == NULL allocates). Counts as one
 * allocation for the injector. On failure p is left untouched and still
 * owned by the caller. Use WEFT__REALLOC(). Thread-safety: any thread.
 */
void *weft__realloc_at(struct weft__alloc_site *site, void *p, size_t n);

/* The untagged entry points are gone; allocate through the macros above. */
#pragma GCC poison weft__alloc weft__alloc_aligned weft__realloc

/* Free a block from the allocation macros. NULL is a no-op. */
void weft__free(void *p);

/*
 * Fault in, writable, the whole pages inside [p, p + n) with one call
 * (madvise MADV_POPULATE_WRITE, Linux 5.14), for a large block the caller
 * is about to write from end to end: the kernel maps the pages in one
 * pass instead of taking one page fault each (on the project's 2-core VM,
 * 80 MiB in 56 ms against 228 ms). Partial pages at either end are left
 * alone. A hint: where the kernel or the C library lacks the call, or
 * refuses it for this memory (an application allocator's own mapping),
 * nothing happens; never fails, never blocks beyond the faults it takes
 * on the caller's behalf. Thread-safety: any thread.
 */
void weft__alloc_prefault(void *p, size_t n);

/*
 * Arm the fault injector: the (n+1)-th allocation call from now (counting
 * every allocation macro's calls) fails, once; later calls
 * succeed again. n == 0 fails the very next call. n == -1 (any negative n)
 * disarms it.
 * Thread-safety: any thread, but see the file comment: tests only.
 */
void weft__alloc_set_fail_after(long n);

/*
 * Number of blocks allocated and not yet freed, process-wide.
 * Thread-safety: any thread; exact only when no other thread allocates.
 */
int64_t weft__alloc_live(void);

/*
 * Copy the registered allocation sites (every WEFT__ALLOC* expansion
 * linked into the program) into out[0..n-1], in link order.
 * Returns: the number of sites (which may exceed n; out may be NULL when n
 * is 0). A site in a static inline function of a header appears once per
 * object file that uses it, with the same file and line.
 * Thread-safety: any thread; counters exact only when quiescent.
 */
size_t weft__alloc_sites(struct weft__alloc_site_info *out, size_t n);

/* Zero every site's counters. Tests only, while nothing allocates. */
void weft__alloc_sites_reset(void);

/*
 * Number of failures the injector has produced since the process started.
 * A test compares it before and after a scenario to learn whether the
 * scenario reached the armed allocation at all (and so when to stop
 * raising k).
 */
uint64_t weft__alloc_failures(void);

#endif /* WEFT_PRIMITIVES_ALLOC_H */
