/*
 * pin.c - pinning worker threads to cores (hwloc).
 *
 * DESIGN
 *
 * A worker pins itself, at the top of its thread, before the executor's
 * on_worker_start hook runs: worker i takes the i-th core (modulo the
 * count) among the cores that its inherited affinity mask allows, which
 * is the mask of the thread that called weft_executor_create(). Using the
 * creator's mask rather than the whole machine keeps `taskset`, cgroup
 * cpusets and an application's own partitioning in force: two executors
 * created from threads with disjoint masks get disjoint cores.
 *
 * The topology is loaded once per process (pthread_once) and then only
 * read, which hwloc allows from any number of threads at once. It is never
 * freed: it is a cache of the machine's shape, reachable for the life of
 * the process, and its memory comes from hwloc's own malloc, not from the
 * allocator hooks (include/weft/alloc.h).
 *
 * Invariants:
 *  1. pin_topo is written only inside pin_load(), which pthread_once runs
 *     once; every reader calls weft__pin_check() first, so pthread_once
 *     orders the load before the read.
 *  2. A worker changes only its own binding (HWLOC_CPUBIND_THREAD).
 */
#include "pin.h"

#ifdef WEFT_WITH_HWLOC

#include <hwloc.h>
#include <pthread.h>

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t pin_topo;            /* invariant 1 */
static weft_status_t pin_status = WEFT_ESYS; /* invariant 1 */

static void
pin_load(void)
{
    if (hwloc_topology_init(&pin_topo) != 0) {
        return;
    }
    if (hwloc_topology_load(pin_topo) != 0) {
        hwloc_topology_destroy(pin_topo);
        return;
    }
    pin_status = WEFT_OK;
}

weft_status_t
weft__pin_check(void)
{
    if (pthread_once(&pin_once, pin_load) != 0) {
        return WEFT_ESYS;
    }
    return pin_status;
}

void
weft__pin_self(unsigned int index)
{
    if (weft__pin_check() != WEFT_OK) {
        return;
    }
    hwloc_bitmap_t allowed = hwloc_bitmap_alloc();
    hwloc_bitmap_t target = hwloc_bitmap_alloc();
    if (allowed == NULL || target == NULL) {
        goto out;
    }
    if (hwloc_get_cpubind(pin_topo, allowed, HWLOC_CPUBIND_THREAD) != 0) {
        goto out;
    }
    /* Cores, or the level below them when the machine reports none. */
    int depth = hwloc_get_type_or_below_depth(pin_topo, HWLOC_OBJ_CORE);
    int n = hwloc_get_nbobjs_by_depth(pin_topo, depth);
    unsigned int usable = 0;
    for (int i = 0; i < n; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_depth(pin_topo, depth, (unsigned)i);
        if (o != NULL && hwloc_bitmap_intersects(o->cpuset, allowed)) {
            usable++;
        }
    }
    if (usable == 0) {
        goto out;
    }
    unsigned int want = index % usable;
    for (int i = 0; i < n; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_depth(pin_topo, depth, (unsigned)i);
        if (o == NULL || !hwloc_bitmap_intersects(o->cpuset, allowed)) {
            continue;
        }
        if (want-- == 0) {
            hwloc_bitmap_and(target, o->cpuset, allowed);
            (void)hwloc_set_cpubind(pin_topo, target, HWLOC_CPUBIND_THREAD);
            break;
        }
    }
out:
    hwloc_bitmap_free(allowed);
    hwloc_bitmap_free(target);
}

#else /* !WEFT_WITH_HWLOC */

weft_status_t
weft__pin_check(void)
{
    return WEFT_ENOTSUP;
}

void
weft__pin_self(unsigned int index)
{
    (void)index;
}

#endif
