/*
 * weft_model_atomics.hpp - the Relacy mapping of primitives/atomics.h.
 *
 * primitives/atomics.h includes this file instead of its ck_pr and
 * __atomic mappings when WEFT_MODEL_RELACY is defined (only the C++
 * harnesses in tests/model/ define it). The real primitives/deque.{h,c}
 * and primitives/parker.c are then compiled unchanged, and every
 * named-ordering operation they perform becomes an operation of Relacy's
 * C++11 memory-model simulator:
 *
 *   weft__load_relaxed_*, weft__store_relaxed_*   relaxed load / store
 *   weft__load_acq_*                              acquire load
 *   weft__store_rel_*                             release store
 *   weft__cas_*, weft__cas_value_*                strong CAS, seq_cst on
 *                                                 success, acquire on failure
 *   weft__fas_*, weft__faa_*, weft__fetch_or_*    seq_cst RMW
 *   weft__fence_store_load, weft__fence_rmw_load,
 *   weft__fence_sc_loads                          seq_cst fence
 *   weft__fence_acq, weft__fence_rel              acquire / release fence
 *   weft__cpu_relax                               a Relacy yield
 *
 * That is the same C11 mapping as atomics.h's __atomic (TSan) backend. It
 * is weaker than x86-TSO, so the model checks the portable reading of the
 * orderings; where atomics.h relies on TSO to make a fence free
 * (weft__fence_sc_loads, weft__fence_rmw_load), the model keeps the fence
 * that the TSO argument stands in for (docs/memory-model.md, "Model
 * checking").
 *
 * Shadows. The primitives keep their shared words in plain C memory
 * (int64_t bottom, void *slot[]), but Relacy needs an rl::atomic<T> per
 * word. Each address therefore gets a shadow rl::atomic<T> in a per-
 * iteration registry, created at its first access. Loads return the
 * shadow's value, which may be any value the memory model allows, not
 * only the latest one. Stores and successful RMWs also write the plain
 * word, so that the owner-only plain reads in the real code (dq->buf in
 * push, dq->top_cache) see the latest value; since Relacy runs its
 * threads as fibers of one OS thread, the plain word always holds the
 * newest value in modification order.
 *
 * A shadow starts uninitialized, and Relacy reports "ACCESS TO
 * UNINITIALIZED VARIABLE" for a load that can see no store to it. Words
 * that the real code initializes with plain stores before sharing
 * (dq->buf, parker->wakes) are handed to weft_model::adopt() by the
 * harness after init.
 *
 * Every operation is a macro, so that Relacy's `$` (function, file and
 * line) names the call site in primitives/ in the execution histories
 * that a failed run prints.
 *
 * tests/model/check_drift.sh fails when atomics.h defines an operation
 * that this file does not map.
 */
#ifndef WEFT_MODEL_ATOMICS_HPP
#define WEFT_MODEL_ATOMICS_HPP

#include "weft_model_relacy.hpp"

#include <new>

#define WEFT__CACHELINE 64

namespace weft_model {

/* The value of a pointer load: converts to any object pointer, as void *
 * does in C (the real code assigns weft__load_acq_ptr() to a typed
 * pointer). */
struct anyptr {
    void *p;
    template <class T> operator T *() const { return static_cast<T *>(p); }
};

struct shadow_base {
    virtual ~shadow_base() {}
};

template <class T> struct shadow : shadow_base {
    rl::atomic<T> a;
};

/*
 * The shadows of one iteration; a harness test owns one (see
 * registry_scope) and it dies with the test object. Deliberately no
 * operator new and no std::map: inside a run those allocate from Relacy's
 * heap, and Relacy turns every free into a two-way scheduling choice (to
 * catch ABA through address reuse), which would multiply the search by
 * two for every shadow. A small table and malloc'd shadows add none.
 */
struct registry {
    enum { CAPACITY = 128 };
    const void *addr[CAPACITY];
    shadow_base *obj[CAPACITY];
    size_t n = 0;
    ~registry()
    {
        while (n > 0) {
            n--;
            obj[n]->~shadow_base();
            (::free)(obj[n]);
        }
    }
};

inline registry *&current_registry()
{
    static registry *r = nullptr;
    return r;
}

/* Member of a harness test: installs its registry for the iteration. */
struct registry_scope {
    registry reg;
    registry_scope() { current_registry() = &reg; }
    ~registry_scope() { current_registry() = nullptr; }
};

[[noreturn]] inline void misuse(const char *what, const void *p,
                                rl::debug_info_param info)
{
    std::fprintf(stderr, "weft model: %s (address %p) at %s:%d in %s\n",
                 what, p, info.file_, info.line_, info.func_);
    std::abort();
}

template <class T> rl::atomic<T> &atom(const T *p, rl::debug_info_param info)
{
    registry *r = current_registry();
    if (r == nullptr) {
        misuse("atomic access outside a model test", p, info);
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->addr[i] == p) {
            shadow<T> *s = dynamic_cast<shadow<T> *>(r->obj[i]);
            if (s == nullptr) {
                misuse("one word accessed as two types", p, info);
            }
            return s->a;
        }
    }
    if (r->n == registry::CAPACITY) {
        misuse("too many shared words for the shadow table", p, info);
    }
    void *mem = (::malloc)(sizeof(shadow<T>));
    if (mem == nullptr) {
        misuse("out of memory", p, info);
    }
    shadow<T> *s = ::new (mem) shadow<T>;
    r->addr[r->n] = p;
    r->obj[r->n] = s;
    r->n++;
    return s->a;
}

/* Give the shadow of *p the value that plain code stored before the
 * object was shared (a relaxed store by the calling thread). */
template <class T> void adopt(T *p, rl::debug_info_param info)
{
    atom<T>(p, info).store(*p, rl::mo_relaxed, info);
}

template <class T>
T load(const T *p, rl::memory_order mo, rl::debug_info_param info)
{
    return atom<T>(p, info).load(mo, info);
}

inline anyptr load_ptr(void *const *p, rl::memory_order mo,
                       rl::debug_info_param info)
{
    return anyptr{atom<void *>(p, info).load(mo, info)};
}

template <class T>
void store(T *p, T v, rl::memory_order mo, rl::debug_info_param info)
{
    atom<T>(p, info).store(v, mo, info);
    *p = v;
}

template <class T>
bool cas_value(T *p, T old, T nv, T *seen, rl::debug_info_param info)
{
    T cmp = old;
    bool ok = atom<T>(p, info).compare_exchange_strong(
        cmp, nv, rl::mo_seq_cst, info, rl::mo_acquire, info);
    if (ok) {
        *p = nv;
    }
    if (seen != nullptr) {
        *seen = cmp;
    }
    return ok;
}

template <class T> T exchange(T *p, T v, rl::debug_info_param info)
{
    T old = atom<T>(p, info).exchange(v, rl::mo_seq_cst, info);
    *p = v;
    return old;
}

template <class T> T fetch_add(T *p, T d, rl::debug_info_param info)
{
    T old = atom<T>(p, info).fetch_add(d, rl::mo_seq_cst, info);
    *p = (T)(old + d);
    return old;
}

template <class T> T fetch_or(T *p, T bits, rl::debug_info_param info)
{
    T old = atom<T>(p, info).fetch_or(bits, rl::mo_seq_cst, info);
    *p = (T)(old | bits);
    return old;
}

template <class T> T fetch_and(T *p, T bits, rl::debug_info_param info)
{
    T old = atom<T>(p, info).fetch_and(bits, rl::mo_seq_cst, info);
    *p = (T)(old & bits);
    return old;
}

inline void fence(rl::memory_order mo, rl::debug_info_param info)
{
    rl::atomic_thread_fence(mo, info);
}

} /* namespace weft_model */

/* Spin-wait hint: a scheduling point in the model. */
#define weft__cpu_relax() rl::yield(1, $)

/* Helpers for the table below; `$` still names the caller's line. */
#define WEFT_MODEL_LD(T, p, mo) weft_model::load<T>((p), rl::mo, $)
#define WEFT_MODEL_LDP(p, mo) weft_model::load_ptr((p), rl::mo, $)
#define WEFT_MODEL_ST(T, p, v, mo) weft_model::store<T>((p), (v), rl::mo, $)
#define WEFT_MODEL_CAS(T, p, o, n, s)                                        \
    weft_model::cas_value<T>((p), (o), (n), (s), $)

#define weft__load_relaxed_u32(p) WEFT_MODEL_LD(uint32_t, p, mo_relaxed)
#define weft__load_relaxed_u64(p) WEFT_MODEL_LD(uint64_t, p, mo_relaxed)
#define weft__load_relaxed_i64(p) WEFT_MODEL_LD(int64_t, p, mo_relaxed)
#define weft__load_relaxed_ptr(p) WEFT_MODEL_LDP(p, mo_relaxed)

#define weft__load_acq_u32(p) WEFT_MODEL_LD(uint32_t, p, mo_acquire)
#define weft__load_acq_u64(p) WEFT_MODEL_LD(uint64_t, p, mo_acquire)
#define weft__load_acq_i64(p) WEFT_MODEL_LD(int64_t, p, mo_acquire)
#define weft__load_acq_ptr(p) WEFT_MODEL_LDP(p, mo_acquire)

#define weft__store_relaxed_u32(p, v) WEFT_MODEL_ST(uint32_t, p, v, mo_relaxed)
#define weft__store_relaxed_u64(p, v) WEFT_MODEL_ST(uint64_t, p, v, mo_relaxed)
#define weft__store_relaxed_i64(p, v) WEFT_MODEL_ST(int64_t, p, v, mo_relaxed)
#define weft__store_relaxed_ptr(p, v) WEFT_MODEL_ST(void *, p, v, mo_relaxed)

#define weft__store_rel_u32(p, v) WEFT_MODEL_ST(uint32_t, p, v, mo_release)
#define weft__store_rel_u64(p, v) WEFT_MODEL_ST(uint64_t, p, v, mo_release)
#define weft__store_rel_i64(p, v) WEFT_MODEL_ST(int64_t, p, v, mo_release)
#define weft__store_rel_ptr(p, v) WEFT_MODEL_ST(void *, p, v, mo_release)

#define weft__cas_u32(p, o, n) WEFT_MODEL_CAS(uint32_t, p, o, n, nullptr)
#define weft__cas_u64(p, o, n) WEFT_MODEL_CAS(uint64_t, p, o, n, nullptr)
#define weft__cas_i64(p, o, n) WEFT_MODEL_CAS(int64_t, p, o, n, nullptr)
#define weft__cas_ptr(p, o, n) WEFT_MODEL_CAS(void *, p, o, n, nullptr)

#define weft__cas_value_u32(p, o, n, s) WEFT_MODEL_CAS(uint32_t, p, o, n, s)
#define weft__cas_value_u64(p, o, n, s) WEFT_MODEL_CAS(uint64_t, p, o, n, s)
#define weft__cas_value_i64(p, o, n, s) WEFT_MODEL_CAS(int64_t, p, o, n, s)
#define weft__cas_value_ptr(p, o, n, s) WEFT_MODEL_CAS(void *, p, o, n, s)

#define weft__fas_u32(p, v) weft_model::exchange<uint32_t>((p), (v), $)
#define weft__fas_u64(p, v) weft_model::exchange<uint64_t>((p), (v), $)
#define weft__fas_i64(p, v) weft_model::exchange<int64_t>((p), (v), $)
#define weft__fas_ptr(p, v) weft_model::exchange<void *>((p), (v), $)

#define weft__faa_u32(p, d) weft_model::fetch_add<uint32_t>((p), (d), $)
#define weft__faa_u64(p, d) weft_model::fetch_add<uint64_t>((p), (d), $)
#define weft__fetch_or_u32(p, b) weft_model::fetch_or<uint32_t>((p), (b), $)

#define weft__fence_store_load() weft_model::fence(rl::mo_seq_cst, $)
#define weft__fence_rmw_load() weft_model::fence(rl::mo_seq_cst, $)
#define weft__fence_sc_loads() weft_model::fence(rl::mo_seq_cst, $)
#define weft__fence_acq() weft_model::fence(rl::mo_acquire, $)
#define weft__fence_rel() weft_model::fence(rl::mo_release, $)

#endif /* WEFT_MODEL_ATOMICS_HPP */
