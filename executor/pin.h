/*
 * pin.h - pinning worker threads to cores (internal).
 *
 * Used by executor.c when weft_executor_config_t.pin_workers is set. The
 * topology comes from hwloc in a build with WEFT_WITH_HWLOC, and from
 * Linux's sysfs otherwise (pin.c); on any other system without hwloc
 * pinning is not supported and these functions say so.
 */
#ifndef WEFT_EXECUTOR_PIN_H
#define WEFT_EXECUTOR_PIN_H

#include <weft/status.h>

#include <stdbool.h>

/*
 * Whether pinning can work in this process: the first call loads the
 * machine's topology (once per process).
 * Returns: WEFT_OK; WEFT_ENOTSUP (built without hwloc on a system other
 * than Linux); WEFT_ESYS (hwloc could not read the topology, or the
 * once-only load could not run). Without hwloc on Linux an unreadable
 * sysfs is not an error: every CPU then counts as a core of its own.
 * Thread-safety: any thread. Blocking: the first call reads /sys.
 */
weft_status_t weft__pin_check(void);

/*
 * Bind the calling thread to core number index (round robin) among the
 * cores its current affinity mask allows: the i-th core that has at least
 * one allowed CPU (in hwloc's order, or without hwloc in the order of
 * each core's lowest allowed CPU), restricted to those CPUs.
 * Best effort: when the topology, the mask or the binding fails, the
 * thread stays as it was.
 * Thread-safety: any thread; it changes only the calling thread.
 * Blocking: one sched_setaffinity system call.
 */
void weft__pin_self(unsigned int index);

/*
 * Tests only: read the CPUs' topology from dir (laid out like
 * /sys/devices/system/cpu: cpuN/topology/thread_siblings_list) instead
 * of sysfs. Takes effect only before the process's first
 * weft__pin_check(); dir must stay valid until then.
 * Returns: true; false when this build does not read sysfs (hwloc, or a
 * system other than Linux), and nothing changes.
 * Thread-safety: one thread, before any executor pins.
 */
bool weft__pin_set_sysfs_root(const char *dir);

#endif /* WEFT_EXECUTOR_PIN_H */
