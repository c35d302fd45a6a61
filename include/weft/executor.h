/**
 * @file
 * weft/executor.h - creating, configuring and shutting down an executor.
 *
 * An executor owns a fixed set of worker threads, each with its own
 * lock-free work-stealing deque. Several executors may live in one process
 * and share nothing: the only process-wide setting is the allocator
 * (weft/alloc.h). docs/embedding.md gives the rules for several executors,
 * for awaiting a future of one executor on another's worker, and for
 * fork().
 */
#ifndef WEFT_EXECUTOR_H
#define WEFT_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/cancel.h>
#include <weft/export.h>
#include <weft/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque executor handle. */
typedef struct weft_executor weft_executor_t;

/** Called on each worker thread right after it starts / right before it
 * exits. index is 0..num_workers-1; user is the config's user_data. */
typedef void (*weft_worker_hook_t)(weft_executor_t *ex, unsigned int index,
                                   void *user);

/**
 * Receives the debug-mode report (see weft_executor_config_t.debug_tasks
 * and weft/debug.h): report is a NUL-terminated JSON object, valid only
 * during the call; user is the config's user_data. It runs on the thread
 * that called weft_executor_destroy(), after every worker has exited, so
 * it must not call into the executor being destroyed.
 */
typedef void (*weft_debug_report_fn_t)(const char *report, void *user);

/**
 * Executor configuration. Initialize with weft_executor_config_init() and
 * then set the fields you care about; fields added later are appended and
 * get their defaults from the init function.
 */
typedef struct weft_executor_config {
    /**
     * Number of worker threads. 0 (the default) means: the environment
     * variable WEFT_NUM_THREADS if set to a positive integer, else the
     * CPUs in this process's affinity mask, capped by the cgroup v2 CPU
     * quota (cpu.max) when one is set. At most 4096.
     */
    unsigned int num_workers;
    /** Thread-name prefix (at most 10 characters are used); workers are
     * named "<prefix>-<index>". NULL means "weft". The string is copied. */
    const char *thread_name_prefix;
    weft_worker_hook_t on_worker_start; /**< NULL: none */
    weft_worker_hook_t on_worker_stop;  /**< NULL: none */
    void *user_data; /**< passed to the hooks; weft never dereferences it */
    /**
     * Pin each worker to one core (default false). Worker i binds itself,
     * before on_worker_start runs, to the i-th core (round robin when
     * there are more workers than cores) among the cores that the
     * affinity mask of the thread calling weft_executor_create() allows;
     * the worker is allowed every CPU of that core that the mask allows
     * (its hyperthreads). Executors created from threads with disjoint
     * masks therefore get disjoint cores, and two pinned executors
     * created from the same thread share cores. Binding is best effort
     * per worker: a worker the operating system refuses to bind runs
     * unpinned. The cores come from hwloc in a build with the CMake
     * option WEFT_WITH_HWLOC=ON (in hwloc's order). Without it, on Linux
     * they come from sysfs: a core is a set of SMT siblings
     * (/sys/devices/system/cpu/cpuN/topology/thread_siblings_list), cores are
     * taken in the order of their lowest allowed CPU, and when sysfs
     * cannot be read each allowed CPU counts as a core. On other systems
     * without hwloc weft_executor_create() returns WEFT_ENOTSUP.
     */
    bool pin_workers;
    /**
     * Debug mode (default false): the executor keeps a registry of its
     * live futures and groups, reports at weft_executor_destroy() the
     * futures never awaited, the groups never joined and the failures
     * nobody observed, each with its spawn site, and can dump its live
     * task tree (weft/debug.h). It costs a lock and an allocation per
     * spawn while on, and nothing while off. The environment variable
     * WEFT_DEBUG_TASKS, set to anything but "" or "0", turns it on for
     * every executor created while it is set, whatever this field says.
     */
    bool debug_tasks;
    /**
     * Where weft_executor_destroy() sends the debug-mode report, when it
     * has at least one entry (NULL: nowhere, unless debug mode was turned
     * on by WEFT_DEBUG_TASKS, in which case the report goes to stderr,
     * the one place weft ever writes to on its own). Ignored while debug
     * mode is off. weft_executor_debug_report() gives the same report on
     * demand.
     */
    weft_debug_report_fn_t on_debug_report;
    /**
     * How long a worker that has run out of work keeps looking for more
     * before it sleeps, in microseconds. 0 (the default) means 1000 (one
     * millisecond); at most 1000000, larger values make
     * weft_executor_create() return WEFT_EINVAL. Each worker first spins
     * about 50 us whatever this says; past that it looks again between
     * sched_yield() calls until the time is up, so a runnable thread on
     * its CPU gets the CPU. Longer spins cost idle CPU time after every
     * burst of work (up to this long per worker); shorter ones make the
     * next burst wait for sleeping workers to wake up, which takes tens of
     * microseconds on bare metal and up to milliseconds on a virtual
     * machine. Set 1 for the least idle spinning.
     */
    unsigned int idle_spin_us;
    /**
     * The most tasks a worker takes from another worker's deque in one
     * steal. 0 (the default) means 32; 1 takes one task per steal; at most
     * 32, larger values make weft_executor_create() return WEFT_EINVAL. A
     * worker takes a batch only from a deque holding at least 64 tasks (a
     * flat fan-out: in a recursive tree the oldest tasks are the biggest
     * subtrees, and one thief should not hold several), only when it is
     * not inside a wait, and keeps the rest of the batch in its own
     * deque, where others can steal them. Batches let a flat fan-out of
     * short tasks cost its thieves one steal per batch instead of per
     * task (docs/design.md 3.2).
     */
    unsigned int steal_batch;
} weft_executor_config_t;

/**
 * Fill cfg with defaults (every field zero: debug mode off, no hooks).
 * Thread-safety: any thread. Blocking: never. Does nothing if cfg is NULL.
 */
WEFT_API void weft_executor_config_init(weft_executor_config_t *cfg);

/**
 * Create an executor and start its workers.
 * cfg may be NULL for defaults; it is read during the call only. When the
 * environment variable WEFT_TRACE names a file, the executor also begins
 * a task trace that weft_executor_destroy() writes there (weft/trace.h).
 * Returns: WEFT_OK and *out set; WEFT_EINVAL (out NULL, more than 4096
 * workers, idle_spin_us over 1000000, steal_batch over 32); WEFT_ENOMEM (also when WEFT_TRACE is set and the trace
 * buffers cannot be allocated); WEFT_ESYS (a thread could not be started; any
 * started threads are joined and nothing leaks; or pin_workers is set and
 * hwloc could not read the machine's topology, or debug mode is on and its
 * registry's mutex could not be made); WEFT_ENOTSUP (pin_workers
 * is set in a build without hwloc on a system other than Linux). *out is
 * untouched on failure.
 * Thread-safety: any thread. Blocking: until every worker has started.
 * Ownership: the caller owns *out and must weft_executor_destroy() it.
 */
WEFT_API weft_status_t weft_executor_create(const weft_executor_config_t *cfg,
                                            weft_executor_t **out);

/** How weft_executor_shutdown() treats tasks that have not started. */
typedef enum weft_shutdown_mode {
    /** Every task already accepted runs, including the children those
     * tasks spawn while the executor drains. */
    WEFT_SHUTDOWN_DRAIN = 0,
    /** Tasks that have not started end cancelled (reason WEFT_ESHUTDOWN)
     * without running; their release hooks run. Running tasks are not
     * interrupted (cancellation is cooperative); children they spawn end
     * cancelled. */
    WEFT_SHUTDOWN_CANCEL = 1
} weft_shutdown_mode_t;

/**
 * Stop accepting submissions from outside the workers and wait until
 * every accepted task has ended (succeeded, failed or cancelled). From the
 * moment this is called, weft_spawn() from a thread that is not one of
 * this executor's workers returns WEFT_ESHUTDOWN; tasks running on the
 * workers may still spawn children, which run (DRAIN) or end cancelled
 * (CANCEL). Calling it again is allowed; a later CANCEL upgrades a DRAIN
 * in progress.
 * Returns: WEFT_OK; WEFT_EINVAL for NULL or a bad mode; WEFT_ESTATE when
 * called from one of this executor's own workers (it would wait for
 * itself).
 * Thread-safety: any thread except this executor's workers.
 * Blocking: yes, until the executor is quiescent.
 */
WEFT_API weft_status_t weft_executor_shutdown(weft_executor_t *ex,
                                              weft_shutdown_mode_t mode);

/**
 * Shut down (DRAIN, unless a shutdown already ran), join every worker and
 * free the executor.
 * Every future obtained from this executor must have been released first:
 * if some are still held, this returns WEFT_EBUSY after the shutdown and
 * frees nothing; release them and call destroy again. A trace begun
 * through WEFT_TRACE is ended and written to its file once the workers
 * have been joined (once, even if destroy is called again; a file that
 * cannot be written is reported with one line on stderr, "weft:
 * WEFT_TRACE: cannot write the trace to PATH: REASON", and the destroy
 * goes on).
 * In debug mode (debug_tasks), each call that gets past the shutdown hands
 * the report (weft/debug.h), when it has an entry, to on_debug_report (or
 * stderr, see there) before it checks for held futures, so a WEFT_EBUSY
 * comes with a report naming what is still alive; an entry is delivered
 * once, also across such calls.
 * Returns: WEFT_OK (ex is gone); WEFT_EINVAL (NULL); WEFT_ESTATE (called
 * from one of its own workers); WEFT_EBUSY (futures still held).
 * Thread-safety: one thread, not a worker of ex. Blocking: yes.
 */
WEFT_API weft_status_t weft_executor_destroy(weft_executor_t *ex);

/**
 * Number of worker threads. Returns 0 for NULL.
 * Thread-safety: any thread. Blocking: never.
 */
WEFT_API unsigned int weft_executor_num_workers(const weft_executor_t *ex);

/**
 * Index of the calling thread among ex's workers, or -1 when the caller
 * is not one of them (or ex is NULL).
 * Thread-safety: any thread. Blocking: never.
 */
WEFT_API int weft_executor_worker_index(const weft_executor_t *ex);

/**
 * Have ex observe token when its deadline passes, so that the deadline
 * takes effect on time (the token is cancelled with an error of code
 * WEFT_EDEADLINE and its callbacks run) even when no task or waiter polls
 * it. Deadlines are otherwise lazy: they take effect when something
 * observes the token (weft/cancel.h). The observation and the callbacks
 * run on the executor's timer thread, which starts on the first call.
 * A token without a deadline, or one already cancelled, is left alone.
 * Arming the same token twice is harmless.
 * Returns: WEFT_OK; WEFT_EINVAL (NULL); WEFT_ESHUTDOWN (after
 * weft_executor_destroy began); WEFT_ENOMEM; WEFT_ESYS (the timer thread
 * could not start).
 * Thread-safety: any thread. Blocking: never (a short internal lock).
 * Ownership: the executor holds a reference to token until its deadline
 * has been observed or the executor is destroyed.
 */
WEFT_API weft_status_t weft_executor_watch_deadline(weft_executor_t *ex,
                                                    weft_token_t *token);

/** Per-worker counters; see weft_executor_stats(). */
typedef struct weft_worker_stats {
    uint64_t spawned;      /**< tasks this worker pushed on its deque */
    uint64_t executed;     /**< task bodies this worker ran */
    uint64_t stolen;       /**< tasks this worker stole from another (a
                                task taken in a batch may be stolen again
                                from the thief: each steal counts) */
    uint64_t steal_failed; /**< steal attempts on a victim whose deque
                              looked non-empty that came back empty-
                              handed (emptied meanwhile, or lost every
                              race); victims that look empty are skipped
                              and not counted */
    uint64_t injected;     /**< tasks taken from the injection queue */
    uint64_t parks;        /**< times this worker went to sleep */
    uint64_t idle_ns;      /**< nanoseconds this worker spent asleep
                              (parked with nothing to run) */
} weft_worker_stats_t;

/**
 * Copy worker index's counters into *out. The counters are written by the
 * worker without synchronization, so a snapshot taken while it runs is
 * approximate (each field is read atomically).
 * Returns: WEFT_OK; WEFT_EINVAL (NULL, index out of range).
 * Thread-safety: any thread. Blocking: never.
 */
WEFT_API weft_status_t weft_executor_stats(const weft_executor_t *ex,
                                           unsigned int index,
                                           weft_worker_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_EXECUTOR_H */
