/*
 * pin.c - pinning worker threads to cores (hwloc, or Linux sysfs).
 *
 * DESIGN
 *
 * A worker pins itself, at the top of its thread, before the executor's
 * on_worker_start hook runs: worker i takes the i-th core (modulo the
 * count) among the cores that its inherited affinity mask allows, which
 * is the mask of the thread that called weft_executor_create(), and is
 * bound to every allowed CPU of that core. Using the creator's mask
 * rather than the whole machine keeps `taskset`, cgroup cpusets and an
 * application's own partitioning in force: two executors created from
 * threads with disjoint masks get disjoint cores.
 *
 * Two backends implement that rule:
 *
 *  - hwloc (WEFT_WITH_HWLOC): the cores are hwloc's core objects (or the
 *    level below them when the machine reports none), in hwloc's order.
 *    The topology is loaded once per process and then only read, which
 *    hwloc allows from any number of threads at once. It is never freed:
 *    it is a cache of the machine's shape, reachable for the life of the
 *    process, and its memory comes from hwloc's own malloc, not from the
 *    allocator hooks (include/weft/alloc.h).
 *  - sysfs (Linux without hwloc): a core is a set of SMT siblings, as the
 *    kernel lists them in /sys/devices/system/cpu/cpuN/topology/
 *    thread_siblings_list (the lists hwloc reads too); a list is in
 *    ascending order, so its first CPU names the core. That is sturdier
 *    than (physical_package_id, core_id) pairs, which repeat across the
 *    clusters of some ARM packages. A CPU whose list cannot be read is a
 *    core of its own, so with sysfs unreadable every allowed CPU is one
 *    core (tests/test_embedding.c checks both on made-up directories,
 *    through weft__pin_set_sysfs_root()). The names are read once per process into pin_rep[], with
 *    open() and read(), so no memory is allocated at all. Cores are
 *    ordered by their lowest allowed CPU. Masks are cpu_set_t
 *    (CPU_SETSIZE CPUs): on a machine whose masks do not fit, reading the
 *    mask fails and the worker stays unpinned.
 *
 * Any other system has no backend: weft__pin_check() says WEFT_ENOTSUP.
 *
 * Invariants:
 *  1. The topology (pin_topo and pin_status, or pin_rep[]) is written only
 *     inside pin_load(), which pthread_once runs once; every reader calls
 *     weft__pin_check() first, so pthread_once orders the load before the
 *     read, and nothing writes it afterwards.
 *  2. A worker changes only its own binding (HWLOC_CPUBIND_THREAD, or
 *     pthread_setaffinity_np() on pthread_self()).
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

bool
weft__pin_set_sysfs_root(const char *dir)
{
    (void)dir;
    return false;
}

#elif defined(__linux__)

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;
/* Each CPU's core, named by the lowest-numbered CPU among its SMT
 * siblings; the CPU itself when its siblings are unknown. */
static uint16_t pin_rep[CPU_SETSIZE]; /* invariant 1 */
/* Where the topology files are; only tests change it, before the load. */
static const char *pin_sysfs = "/sys/devices/system/cpu";

bool
weft__pin_set_sysfs_root(const char *dir)
{
    pin_sysfs = dir;
    return true;
}

/* The leading integer of a topology file of cpu (for a CPU list, its
 * first and lowest CPU); false if missing or malformed. */
static bool
pin_read_id(int cpu, const char *leaf, long *out)
{
    char path[256];
    if ((size_t)snprintf(path, sizeof(path), "%s/cpu%d/topology/%s", pin_sysfs,
                         cpu, leaf) >= sizeof(path)) {
        return false;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    char buf[32];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    buf[n] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (end == buf || errno != 0) {
        return false;
    }
    *out = v;
    return true;
}

static void
pin_load(void)
{
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        long first;
        pin_rep[cpu] = (uint16_t)cpu;
        if (pin_read_id(cpu, "thread_siblings_list", &first) && first >= 0 &&
            first <= cpu) {
            pin_rep[cpu] = (uint16_t)first;
        }
    }
}

weft_status_t
weft__pin_check(void)
{
    if (pthread_once(&pin_once, pin_load) != 0) {
        return WEFT_ESYS;
    }
    return WEFT_OK;
}

void
weft__pin_self(unsigned int index)
{
    if (weft__pin_check() != WEFT_OK) {
        return;
    }
    cpu_set_t allowed, seen, target;
    if (pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) !=
        0) {
        return;
    }
    /* A core is counted at its lowest allowed CPU: the first time its
     * representative is seen. */
    unsigned int usable = 0;
    CPU_ZERO(&seen);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &allowed) && !CPU_ISSET(pin_rep[cpu], &seen)) {
            CPU_SET(pin_rep[cpu], &seen);
            usable++;
        }
    }
    if (usable == 0) {
        return;
    }
    unsigned int want = index % usable;
    CPU_ZERO(&seen);
    int rep = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && rep < 0; cpu++) {
        if (CPU_ISSET(cpu, &allowed) && !CPU_ISSET(pin_rep[cpu], &seen)) {
            CPU_SET(pin_rep[cpu], &seen);
            if (want-- == 0) {
                rep = pin_rep[cpu];
            }
        }
    }
    CPU_ZERO(&target);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &allowed) && pin_rep[cpu] == rep) {
            CPU_SET(cpu, &target);
        }
    }
    (void)pthread_setaffinity_np(pthread_self(), sizeof(target), &target);
}

#else /* neither hwloc nor Linux */

bool
weft__pin_set_sysfs_root(const char *dir)
{
    (void)dir;
    return false;
}

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
