/*
 * atomics.h - the one place where weft names its memory orderings.
 *
 * Every cross-thread access in weft goes through the small set of
 * named-ordering operations below. There are two mappings:
 *
 *  - Normal builds map them to Concurrency Kit's ck_pr. On x86-64 (ck's
 *    CK_MD_TSO) acquire and release cost nothing beyond a compiler barrier,
 *    and the only expensive ordering is store->load.
 *
 *  - ThreadSanitizer builds (and builds with WEFT_ATOMICS_BUILTIN defined)
 *    map them to the compiler's __atomic builtins with the ordering on the
 *    access itself. TSan cannot see through ck_pr's inline assembly and
 *    ignores stand-alone fences, so a correct ck_pr message-passing program
 *    produces false race reports, while the same algorithm written with
 *    acquire/release on the access is clean and a deliberate race is still
 *    reported. This is why weft does not use WEFT__TSAN_ACQUIRE/RELEASE
 *    annotations at each sync point as STYLE.md section 6 suggests: putting
 *    the ordering on the access gives TSan the real happens-before edge
 *    instead of a hand-written copy of it that can drift.
 *
 * Unpaired: this file only defines the orderings; each call site says
 * what it pairs with (tests/lint_sync_comments.sh checks the callers).
 *
 * The store->load barrier is the hot cost. On the AMD EPYC machines weft is
 * developed on, ck_pr_fence_store_load() is an mfence at about 17 ns, while
 * a lock-prefixed read-modify-write (xchg, lock xadd, lock cmpxchg) gives
 * the same ordering for about 2.7 ns. weft therefore never uses a
 * stand-alone store->load fence on a hot path: weft__fas_*() (an xchg) is
 * the store that must be ordered before a later load.
 * weft__fence_store_load() exists for cold paths and for the benchmark that
 * shows the difference.
 *
 * Perturbation builds (WEFT_PERTURB defined) call weft__perturb() before
 * every operation here; it yields the thread at seeded random points, the C
 * stand-in for a model checker's preemption (see tests/).
 *
 * Model-checking builds (WEFT_MODEL_RELACY defined; only the C++ harnesses
 * in tests/model/ define it) take a third mapping,
 * tests/model/relacy/weft_model_atomics.hpp, which turns every operation
 * here into an operation of the Relacy memory-model simulator, so that the
 * real deque and parker code is model-checked (docs/memory-model.md,
 * "Model checking"). The two mappings below are not compiled in that
 * build.
 *
 * Naming: weft__<op>_<type>, type one of u32, u64, i64, ptr.
 */
#ifndef WEFT_PRIMITIVES_ATOMICS_H
#define WEFT_PRIMITIVES_ATOMICS_H

#ifdef WEFT_MODEL_RELACY
#include "weft_model_atomics.hpp"
#else /* the ck_pr and __atomic mappings */

#include <stdbool.h>
#include <stdint.h>

#include <ck_pr.h>

#if defined(__SANITIZE_THREAD__)
#define WEFT__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT__TSAN 1
#endif
#endif

#if defined(WEFT__TSAN) && !defined(WEFT_ATOMICS_BUILTIN)
#define WEFT_ATOMICS_BUILTIN 1
#endif

#ifdef WEFT_PERTURB
void weft__perturb(void);
#define WEFT__PERTURB() weft__perturb()
#else
#define WEFT__PERTURB() ((void)0)
#endif

#define WEFT__CACHELINE 64

/* Spin-wait hint (pause). Not a synchronization operation. */
static inline void
weft__cpu_relax(void)
{
    ck_pr_stall();
}

#ifdef WEFT_ATOMICS_BUILTIN

#define WEFT__ATOMIC_OPS(T, type)                                             \
    static inline type weft__load_relaxed_##T(const type *p)                  \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        return __atomic_load_n(p, __ATOMIC_RELAXED);                          \
    }                                                                         \
    static inline type weft__load_acq_##T(const type *p)                      \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);                          \
    }                                                                         \
    static inline void weft__store_relaxed_##T(type *p, type v)               \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        __atomic_store_n(p, v, __ATOMIC_RELAXED);                             \
    }                                                                         \
    static inline void weft__store_rel_##T(type *p, type v)                   \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        __atomic_store_n(p, v, __ATOMIC_RELEASE);                             \
    }                                                                         \
    static inline bool weft__cas_##T(type *p, type old, type nv)              \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        return __atomic_compare_exchange_n(p, &old, nv, false,                \
                                           __ATOMIC_SEQ_CST,                  \
                                           __ATOMIC_ACQUIRE);                 \
    }                                                                         \
    static inline bool weft__cas_value_##T(type *p, type old, type nv,        \
                                           type *seen)                        \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        bool ok = __atomic_compare_exchange_n(p, &old, nv, false,             \
                                              __ATOMIC_SEQ_CST,               \
                                              __ATOMIC_ACQUIRE);              \
        *seen = old;                                                          \
        return ok;                                                            \
    }                                                                         \
    static inline type weft__fas_##T(type *p, type v)                         \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);                   \
    }

WEFT__ATOMIC_OPS(u32, uint32_t)
WEFT__ATOMIC_OPS(u64, uint64_t)
WEFT__ATOMIC_OPS(i64, int64_t)
/* A typedef, so that `const type *` means `void *const *`. */
typedef void *weft__ptr_t;
WEFT__ATOMIC_OPS(ptr, weft__ptr_t)

static inline uint32_t
weft__faa_u32(uint32_t *p, uint32_t d)
{
    WEFT__PERTURB();
    return __atomic_fetch_add(p, d, __ATOMIC_SEQ_CST);
}

static inline uint64_t
weft__faa_u64(uint64_t *p, uint64_t d)
{
    WEFT__PERTURB();
    return __atomic_fetch_add(p, d, __ATOMIC_SEQ_CST);
}

static inline uint32_t
weft__fetch_or_u32(uint32_t *p, uint32_t bits)
{
    WEFT__PERTURB();
    return __atomic_fetch_or(p, bits, __ATOMIC_SEQ_CST);
}

static inline void
weft__fence_store_load(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Order a preceding read-modify-write before later loads. */
static inline void
weft__fence_rmw_load(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/*
 * Sequentially consistent fence between two loads (the thief's fence in the
 * Chase-Lev steal). See the ck mapping below for why it is free on TSO.
 */
static inline void
weft__fence_sc_loads(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static inline void
weft__fence_acq(void)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
}

static inline void
weft__fence_rel(void)
{
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

#else /* ck_pr mapping */

/*
 * ck_pr loads and stores are single-copy-atomic and compiler-ordered; the
 * acquire/release variants add ck's load/store fences, which are compiler
 * barriers on TSO and real fences elsewhere.
 */
#define WEFT__ATOMIC_OPS(T, type, ck)                                         \
    static inline type weft__load_relaxed_##T(const type *p)                  \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        return (type)ck_pr_load_##ck(p);                        \
    }                                                                         \
    static inline type weft__load_acq_##T(const type *p)                      \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        /* Unpaired: a definition; the caller's comment pairs it. */     \
        type v = (type)ck_pr_load_##ck(p);                      \
        ck_pr_fence_acquire();                                                \
        return v;                                                             \
    }                                                                         \
    static inline void weft__store_relaxed_##T(type *p, type v)               \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        ck_pr_store_##ck(p, v);                                       \
    }                                                                         \
    static inline void weft__store_rel_##T(type *p, type v)                   \
    {                                                                         \
        /* Unpaired: a definition; the caller's comment pairs it. */     \
        WEFT__PERTURB();                                                      \
        ck_pr_fence_release();                                                \
        ck_pr_store_##ck(p, v);                                       \
    }

#define WEFT__ATOMIC_RMW(T, type, ck)                                         \
    static inline bool weft__cas_##T(type *p, type old, type nv)              \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        /* Unpaired: a definition; the caller's comment pairs it. */     \
        return ck_pr_cas_##ck(p, old, nv);                            \
    }                                                                         \
    static inline bool weft__cas_value_##T(type *p, type old, type nv,        \
                                           type *seen)                        \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        /* Unpaired: a definition; the caller's comment pairs it. */     \
        return ck_pr_cas_##ck##_value(p, old, nv, seen);      \
    }                                                                         \
    static inline type weft__fas_##T(type *p, type v)                         \
    {                                                                         \
        WEFT__PERTURB();                                                      \
        /* Unpaired: a definition; the caller's comment pairs it. */     \
        return (type)ck_pr_fas_##ck(p, v);                            \
    }

/* ck_pr's ptr functions take void * and so need their own wrappers. */
static inline void *
weft__load_relaxed_ptr(void *const *p)
{
    WEFT__PERTURB();
    return ck_pr_load_ptr(p);
}

static inline void *
weft__load_acq_ptr(void *const *p)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    void *v = ck_pr_load_ptr(p);
    ck_pr_fence_acquire();
    return v;
}

static inline void
weft__store_relaxed_ptr(void **p, void *v)
{
    WEFT__PERTURB();
    ck_pr_store_ptr(p, v);
}

static inline void
weft__store_rel_ptr(void **p, void *v)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_release();
    ck_pr_store_ptr(p, v);
}

static inline bool
weft__cas_ptr(void **p, void *old, void *nv)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    return ck_pr_cas_ptr(p, old, nv);
}

static inline bool
weft__cas_value_ptr(void **p, void *old, void *nv, void **seen)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    return ck_pr_cas_ptr_value(p, old, nv, seen);
}

static inline void *
weft__fas_ptr(void **p, void *v)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    return ck_pr_fas_ptr(p, v);
}

WEFT__ATOMIC_OPS(u32, uint32_t, 32)
WEFT__ATOMIC_RMW(u32, uint32_t, 32)
WEFT__ATOMIC_OPS(u64, uint64_t, 64)
WEFT__ATOMIC_RMW(u64, uint64_t, 64)

static inline int64_t
weft__load_relaxed_i64(const int64_t *p)
{
    WEFT__PERTURB();
    return (int64_t)ck_pr_load_64((const uint64_t *)p);
}

static inline int64_t
weft__load_acq_i64(const int64_t *p)
{
    WEFT__PERTURB();
    int64_t v = (int64_t)ck_pr_load_64((const uint64_t *)p);
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_acquire();
    return v;
}

static inline void
weft__store_relaxed_i64(int64_t *p, int64_t v)
{
    WEFT__PERTURB();
    ck_pr_store_64((uint64_t *)p, (uint64_t)v);
}

static inline void
weft__store_rel_i64(int64_t *p, int64_t v)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_release();
    ck_pr_store_64((uint64_t *)p, (uint64_t)v);
}

static inline bool
weft__cas_i64(int64_t *p, int64_t old, int64_t nv)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    return ck_pr_cas_64((uint64_t *)p, (uint64_t)old, (uint64_t)nv);
}

static inline int64_t
weft__fas_i64(int64_t *p, int64_t v)
{
    WEFT__PERTURB();
    /* Unpaired: a definition; the caller's comment pairs it. */
    return (int64_t)ck_pr_fas_64((uint64_t *)p, (uint64_t)v);
}

static inline uint32_t
weft__faa_u32(uint32_t *p, uint32_t d)
{
    WEFT__PERTURB();
    return ck_pr_faa_32(p, d);
}

static inline uint64_t
weft__faa_u64(uint64_t *p, uint64_t d)
{
    WEFT__PERTURB();
    return ck_pr_faa_64(p, d);
}

static inline uint32_t
weft__fetch_or_u32(uint32_t *p, uint32_t bits)
{
    uint32_t old = weft__load_relaxed_u32(p);
    /* Relaxed: the CAS below is the ordering point and re-checks old. */
    while (!ck_pr_cas_32_value(p, old, old | bits, &old)) {
        weft__cpu_relax();
    }
    return old;
}

/*
 * Order a preceding read-modify-write (such as weft__fas_*) before later
 * loads. Free on TSO, where locked instructions are full barriers; a real
 * fence on weaker models, where an exchange alone does not order a later
 * (Unpaired: a definition; the caller's comment pairs it.)
 * relaxed load (ck_pr_fence_atomic_load is ck's name for exactly this).
 */
static inline void
weft__fence_rmw_load(void)
{
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_atomic_load();
}

/* A stand-alone store->load fence: mfence on x86. Cold paths only. */
static inline void
weft__fence_store_load(void)
{
    ck_pr_fence_store_load();
}

/*
 * The fence between the thief's load of top and its load of bottom in the
 * Chase-Lev steal (Le et al. 2013 use a seq_cst fence there). On TSO
 * hardware loads are not reordered with older loads, and the thief has no
 * pending store whose order matters (its previous top CAS was a locked
 * instruction and has drained), so a compiler barrier is enough; on weaker
 * (Unpaired: a definition; the caller's comment pairs it.)
 * models ck_pr_fence_memory() is the full fence the paper asks for.
 */
static inline void
weft__fence_sc_loads(void)
{
#if defined(CK_MD_TSO)
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_load();
#else
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_memory();
#endif
}

static inline void
weft__fence_acq(void)
{
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_acquire();
}

static inline void
weft__fence_rel(void)
{
    /* Unpaired: a definition; the caller's comment pairs it. */
    ck_pr_fence_release();
}

#endif /* WEFT_ATOMICS_BUILTIN */

#endif /* WEFT_MODEL_RELACY */

#endif /* WEFT_PRIMITIVES_ATOMICS_H */
