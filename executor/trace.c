/*
 * trace.c - recording task executions into per-lane buffers and writing
 * them as Chrome Trace Event JSON (include/weft/trace.h).
 *
 * DESIGN
 *
 * A trace session is one allocation: a header, the WEFT_TRACE file name
 * (if the environment began it) and one buffer per lane, each a 64-byte
 * header and cap 64-byte events. Lane i < nworkers is worker i's; the
 * last lane is for threads that are not workers. A lane
 * (struct weft__trace_lane, embedded in the worker or the executor) holds
 * a lock word and a pointer to its buffer while the session records.
 *
 * The lock word makes "read the buffer pointer, append an event" atomic
 * with respect to attaching and detaching that buffer:
 *
 *   recorder (the lane's worker)         begin / end (any thread)
 *   -------------------------------      ------------------------------
 *   buf != NULL (hint)? t0 = clock       lock(lane)      CAS 0 -> 1, spin
 *   ... the task body ...; t1 = clock    lane->buf = b or NULL
 *   try-lock(lane): CAS 0 -> 1           unlock(lane)    store-release 0
 *     (fails: begin/end holds it;
 *      the event is dropped)
 *   b = lane->buf; append to *b
 *   unlock(lane)   store-release 0
 *
 * Each critical section begins with a successful CAS (acquire) and ends
 * with a release store of the same word, so critical sections are
 * totally ordered and each sees everything the previous holder wrote: a
 * recorder after an attach sees the buffer's initialized header; an end
 * after a recorder's append sees the event and the counters. After end()
 * has detached every lane, no thread can reach the buffers again (a
 * recorder that read the old pointer as its hint re-reads it, NULL, under
 * the lock), so write() reads them with plain loads. A worker never waits:
 * its try-lock fails only while begin or end holds the lane for a few
 * stores, and the event then falls outside the trace. Threads that are not
 * workers share the outside lane, so they spin on its lock instead (they
 * reach it only to end a never-queued task: a cold path).
 *
 * The public calls (begin, end, write, save) serialize on the executor's
 * op word, taken by CAS: a call that finds another one running returns
 * WEFT_EBUSY rather than waiting for it. The session pointer and a
 * session's state are read and written only while op is held (or by
 * executor create/destroy, when no call can be running).
 *
 * One worker's events are properly nested in time: a task that runs other
 * tasks while it waits (help, the fork-join fast path) brackets them with
 * its own body's call on the same thread. write() sorts each lane by
 * start (longer first on a tie) so viewers that expect begin-ordered
 * events build the right stacks.
 *
 * Invariants:
 *  1. A buffer is written only by the holder of its lane's lock, and only
 *     while the lane points at it.
 *  2. When weft_executor_trace_end() returns, no thread writes to the
 *     session's buffers again: every lane was set to NULL under its lock.
 *  3. A session is freed only when no lane points at it: by a later begin
 *     (the old one is ended) or at executor teardown (workers joined).
 *  4. A worker never blocks on tracing; it takes no lock that another
 *     worker holds and never allocates.
 */
#include "trace.h"

#include <weft/future.h>
#include <weft/trace.h>

#include "executor.h"
#include "future.h"
#include "primitives/alloc.h"
#include "primitives/clock.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What an event is (struct weft__trace_event.kind). */
enum {
    EV_TASK = 0,  /* a task's body, or a task ended without running */
    EV_FRAME = 1, /* a fork-join frame run off its join */
    EV_PARK = 2   /* the worker slept (WEFT_TRACE_PARKS): idle, or in a
                     wait; id is the awaited task's, 0 when idle */
};

/* One task execution (or park); 64 bytes, a cache line. */
struct weft__trace_event {
    uint64_t start_ns; /* since the trace began */
    uint64_t dur_ns;
    uint64_t id;      /* weft_future_id() */
    weft_fn_t fn;     /* the body, named when the task has no name */
    const char *name; /* weft_spawn_opts_t.name (static) or NULL */
    const char *file; /* spawn site (static strings) or NULL */
    const char *func;
    int32_t line;
    uint8_t outcome; /* WEFT__SUCCEEDED, WEFT__FAILED or WEFT__CANCELLED */
    uint8_t ran;     /* the body ran */
    uint8_t kind;    /* EV_*; a frame's id is its enclosing task's */
};

_Static_assert(sizeof(struct weft__trace_event) == 64,
               "a trace event is one cache line");

/* One lane's buffer. Every field is accessed under the lane lock while
 * attached, and under the executor's op word once detached. */
struct weft__trace_buf {
    uint64_t t_begin; /* the session's begin time; constant */
    uint32_t cap;     /* events that fit; constant */
    uint32_t len;     /* events recorded */
    bool parks;       /* record parks too (WEFT_TRACE_PARKS); constant */
    uint64_t dropped; /* events that did not fit */
    _Alignas(WEFT__CACHELINE) struct weft__trace_event ev[];
};

struct weft__trace_session {
    uint64_t t_begin;    /* clock at begin */
    uint64_t t_end;      /* clock at end (valid once !recording) */
    uint32_t cap;        /* events per lane */
    unsigned int nlanes; /* workers + 1 */
    bool recording;      /* lanes point at the buffers */
    char *path;          /* WEFT_TRACE's file, not yet written; or NULL */
    size_t stride;       /* bytes per lane buffer */
    char *lanes;         /* lane 0's buffer; the rest follow */
};

static size_t
round_up_line(size_t n)
{
    return (n + WEFT__CACHELINE - 1) & ~(size_t)(WEFT__CACHELINE - 1);
}

static struct weft__trace_buf *
session_buf(const struct weft__trace_session *s, unsigned int i)
{
    return (struct weft__trace_buf *)(void *)(s->lanes + s->stride * i);
}

static struct weft__trace_lane *
exec_lane(weft_executor_t *ex, unsigned int i)
{
    return i < ex->nworkers ? &ex->workers[i].trace : &ex->trace.outside;
}

/* ---- lanes ----------------------------------------------------------- */

static bool
lane_try_lock(struct weft__trace_lane *lane)
{
    /*
     * Pairs with: the release store in lane_unlock() by the previous
     * holder, whose attach, detach or appended event this section sees.
     */
    return weft__cas_u32(&lane->lock, 0, 1);
}

/* Take the lock, spinning (begin/end, and threads that are not workers). */
static void
lane_lock(struct weft__trace_lane *lane)
{
    for (unsigned int spins = 0; !lane_try_lock(lane); spins++) {
        if (spins < 64) {
            weft__cpu_relax();
        } else {
            /* The holder may be preempted between two stores. */
            sched_yield();
        }
    }
}

static void
lane_unlock(struct weft__trace_lane *lane)
{
    /*
     * Pairs with: the CAS in lane_try_lock() of the next holder: this
     * section's stores (buffer pointer, event, counters) happen before it.
     */
    weft__store_rel_u32(&lane->lock, 0);
}

/* Point lane at b (attach) or at nothing (detach). */
static void
lane_set(struct weft__trace_lane *lane, struct weft__trace_buf *b)
{
    lane_lock(lane);
    /* Relaxed: under the lane lock, whose release publishes it to the next
     * holder; weft__trace_body() reads it only as a hint. */
    weft__store_relaxed_ptr((void **)&lane->buf, b);
    lane_unlock(lane);
}

/*
 * The next event of lane, with its times, id, fn and outcome filled in
 * and the rest zeroed; NULL when the trace ended (or the buffer is full:
 * counted as dropped). The caller holds the lane lock.
 */
static struct weft__trace_event *
lane_next(struct weft__trace_lane *lane, weft_fn_t fn, uint64_t id, uint64_t t0,
          uint64_t t1, weft_status_t st, bool ran)
{
    /* Relaxed: read under the lane lock (see lane_set()). */
    struct weft__trace_buf *b =
        weft__load_relaxed_ptr((void *const *)&lane->buf);
    if (b == NULL) {
        return NULL; /* the trace ended between the hint and the lock */
    }
    if (b->len == b->cap) {
        b->dropped++;
        return NULL;
    }
    struct weft__trace_event *e = &b->ev[b->len++];
    /* A span that began before the trace did is clipped to its start. */
    uint64_t start = t0 > b->t_begin ? t0 : b->t_begin;
    *e = (struct weft__trace_event){
        .start_ns = start - b->t_begin,
        .dur_ns = t1 > start ? t1 - start : 0,
        .id = id,
        .fn = fn,
        .outcome = (uint8_t)weft__phase_of_status(st),
        .ran = ran,
    };
    return e;
}

/* Append one event for task f; the caller holds the lane lock. */
static void
lane_append(struct weft__trace_lane *lane, const struct weft_future *f,
            uint64_t id, uint64_t t0, uint64_t t1, weft_status_t st, bool ran)
{
    struct weft__trace_event *e = lane_next(lane, f->fn, id, t0, t1, st, ran);
    if (e != NULL) {
        /* Cold fields are NULL/0 when unset (the free-object invariant). */
        e->name = f->name;
        e->file = f->file;
        e->func = f->func;
        e->line = f->line;
    }
}

weft_status_t
weft__trace_body_slow(struct weft__trace_lane *lane, struct weft_future *f)
{
    uint64_t t0 = weft__clock_now_ns();
    weft_status_t st = f->fn((weft_task_t *)f, f->arg, &f->value);
    uint64_t t1 = weft__clock_now_ns();
    /* A frame has no id, name or site of its own (no cold fields): its
     * event carries its enclosing task's id. Assigned (one faa) outside
     * the lane lock, the first time only. */
    bool frame = weft__is_frame(f);
    uint64_t id =
        weft_future_id(frame ? weft__frame_root((struct weft__frame *)f) : f);
    if (lane_try_lock(lane)) {
        if (frame) {
            struct weft__trace_event *e =
                lane_next(lane, f->fn, id, t0, t1, st, true);
            if (e != NULL) {
                e->kind = EV_FRAME;
            }
        } else {
            lane_append(lane, f, id, t0, t1, st, true);
        }
        lane_unlock(lane);
    }
    /* else begin or end holds the lane: the event is outside the trace. */
    return st;
}

void
weft__trace_ended_unrun_slow(struct weft__trace_lane *lane, bool shared,
                             struct weft_future *f)
{
    uint64_t t = weft__clock_now_ns();
    uint64_t id = weft_future_id(f);
    if (shared) {
        lane_lock(lane); /* shared by every thread that is not a worker */
    } else if (!lane_try_lock(lane)) {
        return;
    }
    lane_append(lane, f, id, t, t, WEFT_ECANCELED, false);
    lane_unlock(lane);
}

void
weft__trace_park_slow(struct weft__trace_lane *lane, uint64_t t0, uint64_t t1,
                      uint64_t id)
{
    if (!lane_try_lock(lane)) {
        return; /* begin or end holds the lane */
    }
    /* Relaxed: read under the lane lock (see lane_set()). */
    struct weft__trace_buf *b =
        weft__load_relaxed_ptr((void *const *)&lane->buf);
    if (b != NULL && b->parks) {
        struct weft__trace_event *e =
            lane_next(lane, NULL, id, t0, t1, WEFT_OK, false);
        if (e != NULL) {
            e->kind = EV_PARK;
        }
    }
    lane_unlock(lane);
}

/* ---- sessions -------------------------------------------------------- */

/*
 * Write tmpl with each "%p" replaced by the process id into out (n bytes,
 * NUL-terminated when n > 0). Returns the length of the whole expansion.
 */
static size_t
path_expand(const char *tmpl, char *out, size_t n)
{
    char pid[24];
    int pl = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    size_t len = 0;
    for (const char *p = tmpl; *p != '\0'; p++) {
        const char *piece = p;
        size_t plen = 1;
        if (p[0] == '%' && p[1] == 'p') {
            piece = pid;
            plen = (size_t)pl;
            p++;
        }
        for (size_t i = 0; i < plen; i++, len++) {
            if (len + 1 < n) {
                out[len] = piece[i];
            }
        }
    }
    if (n > 0) {
        out[len < n ? len : n - 1] = '\0';
    }
    return len;
}

/* Allocate a recording session of cap events per lane. NULL: no memory. */
static struct weft__trace_session *
session_new(weft_executor_t *ex, uint32_t cap, const char *path_tmpl)
{
    unsigned int nlanes = ex->nworkers + 1;
    size_t stride = sizeof(struct weft__trace_buf) +
                    (size_t)cap * sizeof(struct weft__trace_event);
    size_t plen = path_tmpl != NULL ? path_expand(path_tmpl, NULL, 0) + 1 : 0;
    size_t path_off = round_up_line(sizeof(struct weft__trace_session));
    size_t lanes_off = round_up_line(path_off + plen);
    if (stride > (SIZE_MAX - lanes_off) / nlanes) {
        return NULL;
    }
    char *block =
        WEFT__ALLOC_ALIGNED(WEFT__CACHELINE, lanes_off + stride * nlanes);
    if (block == NULL) {
        return NULL;
    }
    struct weft__trace_session *s = (struct weft__trace_session *)block;
    memset(s, 0, sizeof(*s));
    s->cap = cap;
    s->nlanes = nlanes;
    s->stride = stride;
    s->lanes = block + lanes_off;
    if (path_tmpl != NULL) {
        s->path = block + path_off;
        (void)path_expand(path_tmpl, s->path, plen);
    }
    const char *parks = getenv("WEFT_TRACE_PARKS");
    s->t_begin = weft__clock_now_ns();
    for (unsigned int i = 0; i < nlanes; i++) {
        struct weft__trace_buf *b = session_buf(s, i);
        b->t_begin = s->t_begin;
        b->cap = cap;
        b->len = 0;
        b->parks = parks != NULL && strcmp(parks, "1") == 0;
        b->dropped = 0;
    }
    s->recording = true;
    return s;
}

/* Begin a session; the caller holds op (or is executor create). */
static weft_status_t
trace_start(weft_executor_t *ex, uint32_t cap, const char *path_tmpl)
{
    struct weft__trace_session *old = ex->trace.session;
    if (old != NULL && old->recording) {
        return WEFT_EBUSY;
    }
    struct weft__trace_session *s = session_new(ex, cap, path_tmpl);
    if (s == NULL) {
        return WEFT_ENOMEM;
    }
    /* No lane points at old (it ended), so no thread can reach it. */
    weft__free(old);
    ex->trace.session = s;
    for (unsigned int i = 0; i < s->nlanes; i++) {
        lane_set(exec_lane(ex, i), session_buf(s, i));
    }
    return WEFT_OK;
}

/* End the recording session; the caller holds op (or is destroy). */
static weft_status_t
trace_stop(weft_executor_t *ex)
{
    struct weft__trace_session *s = ex->trace.session;
    if (s == NULL || !s->recording) {
        return WEFT_ESTATE;
    }
    for (unsigned int i = 0; i < s->nlanes; i++) {
        lane_set(exec_lane(ex, i), NULL);
    }
    s->t_end = weft__clock_now_ns();
    s->recording = false;
    return WEFT_OK;
}

/* ---- JSON ------------------------------------------------------------ */

static void
json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                fprintf(out, "\\u%04x", (unsigned int)*p);
            } else {
                fputc(*p, out);
            }
        }
    }
    fputc('"', out);
}

/* Nanoseconds as microseconds with three decimals, exactly. */
static void
json_us(FILE *out, uint64_t ns)
{
    fprintf(out, "%" PRIu64 ".%03u", ns / 1000, (unsigned int)(ns % 1000));
}

static int
event_cmp(const void *a, const void *b)
{
    const struct weft__trace_event *x = a;
    const struct weft__trace_event *y = b;
    if (x->start_ns != y->start_ns) {
        return x->start_ns < y->start_ns ? -1 : 1;
    }
    /* Same start: the enclosing (longer) span first. */
    if (x->dur_ns != y->dur_ns) {
        return x->dur_ns > y->dur_ns ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

/* A park: "park (idle)" or "park (wait)", the awaited task's id. */
static void
json_park(FILE *out, long pid, unsigned int tid,
          const struct weft__trace_event *e)
{
    fprintf(out,
            ",\n{\"name\":\"park (%s)\",\"cat\":\"park\",\"ph\":\"X\","
            "\"pid\":%ld,\"tid\":%u,\"ts\":",
            e->id != 0 ? "wait" : "idle", pid, tid);
    json_us(out, e->start_ns);
    fputs(",\"dur\":", out);
    json_us(out, e->dur_ns);
    fprintf(out, ",\"args\":{\"reason\":\"%s\",\"id\":%" PRIu64 "}}",
            e->id != 0 ? "wait" : "idle", e->id);
}

static void
json_event(FILE *out, long pid, unsigned int tid,
           const struct weft__trace_event *e)
{
    if (e->kind == EV_PARK) {
        json_park(out, pid, tid, e);
        return;
    }
    char fn[2 + 2 * sizeof(uintptr_t) + 8];
    snprintf(fn, sizeof(fn), "0x%" PRIxPTR, (uintptr_t)e->fn);
    fputs(",\n{\"name\":", out);
    if (e->name != NULL) {
        json_string(out, e->name);
    } else {
        fprintf(out, "\"%s@%s\"", e->kind == EV_FRAME ? "frame" : "task", fn);
    }
    fprintf(out, ",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%ld,\"tid\":%u,\"ts\":",
            e->kind == EV_FRAME ? "frame" : "task", pid, tid);
    json_us(out, e->start_ns);
    fputs(",\"dur\":", out);
    json_us(out, e->dur_ns);
    fprintf(out,
            ",\"args\":{\"id\":%" PRIu64 ",\"outcome\":\"%s\",\"ran\":%s,"
            "\"fn\":\"%s\"",
            e->id, weft_outcome_name((weft_outcome_t)e->outcome),
            e->ran ? "true" : "false", fn);
    if (e->file != NULL) {
        fputs(",\"site\":", out);
        json_string(out, e->file);
        fprintf(out, ",\"line\":%d", (int)e->line);
    }
    if (e->func != NULL) {
        fputs(",\"func\":", out);
        json_string(out, e->func);
    }
    fputs("}}", out);
}

static void
json_lane_meta(FILE *out, long pid, unsigned int tid, const char *name)
{
    fprintf(out,
            ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%ld,"
            "\"tid\":%u,\"args\":{\"name\":",
            pid, tid);
    json_string(out, name);
    fprintf(out,
            "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%ld,"
            "\"tid\":%u,\"args\":{\"sort_index\":%u}}",
            pid, tid, tid);
}

/* Write ended session s of ex to out. */
static weft_status_t
trace_json(weft_executor_t *ex, struct weft__trace_session *s, FILE *out)
{
    long pid = (long)getpid();
    unsigned int nw = s->nlanes - 1;
    uint64_t recorded = 0;
    uint64_t dropped = 0;
    fprintf(out,
            "{\"traceEvents\":[\n{\"name\":\"process_name\",\"ph\":\"M\","
            "\"pid\":%ld,\"tid\":0,\"args\":{\"name\":\"weft executor\"}}",
            pid);
    for (unsigned int i = 0; i < s->nlanes; i++) {
        struct weft__trace_buf *b = session_buf(s, i);
        recorded += b->len;
        dropped += b->dropped;
        if (i == nw && b->len == 0 && b->dropped == 0) {
            continue; /* no outside thread recorded anything */
        }
        char name[48];
        if (i < nw) {
            snprintf(name, sizeof(name), "%s-%u", ex->name_prefix, i);
        } else {
            snprintf(name, sizeof(name), "outside workers");
        }
        json_lane_meta(out, pid, i, name);
        qsort(b->ev, b->len, sizeof(b->ev[0]), event_cmp);
        for (uint32_t k = 0; k < b->len; k++) {
            json_event(out, pid, i, &b->ev[k]);
        }
    }
    fprintf(out,
            "\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":{"
            "\"producer\":\"weft\",\"workers\":%u,\"events_per_worker\":%u,"
            "\"duration_us\":",
            nw, s->cap);
    json_us(out, s->t_end - s->t_begin);
    fprintf(out,
            ",\"recorded\":%" PRIu64 ",\"dropped\":%" PRIu64
            ",\"dropped_by_lane\":[",
            recorded, dropped);
    for (unsigned int i = 0; i < s->nlanes; i++) {
        fprintf(out, "%s%" PRIu64, i == 0 ? "" : ",",
                session_buf(s, i)->dropped);
    }
    fputs("]}}\n", out);
    if (fflush(out) != 0 || ferror(out)) {
        return WEFT_ESYS;
    }
    return WEFT_OK;
}

/* ---- public API ------------------------------------------------------ */

/* Serialize the trace calls on ex; false: another one is running. */
static bool
ctl_enter(weft_executor_t *ex)
{
    /*
     * Pairs with: the release store in ctl_leave(): this call sees the
     * session as the previous call left it.
     */
    return weft__cas_u32(&ex->trace.op, 0, 1);
}

static void
ctl_leave(weft_executor_t *ex)
{
    /* Pairs with: the CAS in ctl_enter() of the next trace call. */
    weft__store_rel_u32(&ex->trace.op, 0);
}

/* Whether the trace of ex can be written: WEFT_OK, ESTATE or EBUSY. */
static weft_status_t
trace_writable(const weft_executor_t *ex)
{
    const struct weft__trace_session *s = ex->trace.session;
    if (s == NULL) {
        return WEFT_ESTATE;
    }
    return s->recording ? WEFT_EBUSY : WEFT_OK;
}

weft_status_t
weft_executor_trace_begin(weft_executor_t *ex, size_t events_per_worker)
{
    if (ex == NULL || events_per_worker == 0 ||
        events_per_worker > WEFT_TRACE_MAX_EVENTS) {
        return WEFT_EINVAL;
    }
    if (!ctl_enter(ex)) {
        return WEFT_EBUSY;
    }
    weft_status_t st = trace_start(ex, (uint32_t)events_per_worker, NULL);
    ctl_leave(ex);
    return st;
}

weft_status_t
weft_executor_trace_end(weft_executor_t *ex)
{
    if (ex == NULL) {
        return WEFT_EINVAL;
    }
    if (!ctl_enter(ex)) {
        return WEFT_EBUSY;
    }
    weft_status_t st = trace_stop(ex);
    ctl_leave(ex);
    return st;
}

weft_status_t
weft_executor_trace_write(weft_executor_t *ex, FILE *out)
{
    if (ex == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    if (!ctl_enter(ex)) {
        return WEFT_EBUSY;
    }
    weft_status_t st = trace_writable(ex);
    if (st == WEFT_OK) {
        st = trace_json(ex, ex->trace.session, out);
    }
    ctl_leave(ex);
    return st;
}

weft_status_t
weft_executor_trace_save(weft_executor_t *ex, const char *path)
{
    if (ex == NULL || path == NULL) {
        return WEFT_EINVAL;
    }
    if (!ctl_enter(ex)) {
        return WEFT_EBUSY;
    }
    weft_status_t st = trace_writable(ex);
    if (st == WEFT_OK) {
        FILE *fp = fopen(path, "w");
        if (fp == NULL) {
            st = WEFT_ESYS;
        } else {
            st = trace_json(ex, ex->trace.session, fp);
            if (fclose(fp) != 0 && st == WEFT_OK) {
                st = WEFT_ESYS;
            }
        }
    }
    ctl_leave(ex);
    return st;
}

/* ---- executor lifecycle ---------------------------------------------- */

weft_status_t
weft__trace_exec_created(weft_executor_t *ex)
{
    const char *path = getenv("WEFT_TRACE");
    if (path == NULL || path[0] == '\0') {
        return WEFT_OK;
    }
    uint32_t cap = WEFT_TRACE_DEFAULT_EVENTS;
    const char *env = getenv("WEFT_TRACE_EVENTS");
    if (env != NULL) {
        char *end = NULL;
        unsigned long long v = strtoull(env, &end, 10);
        if (end != env && *end == '\0' && v > 0 && v <= WEFT_TRACE_MAX_EVENTS) {
            cap = (uint32_t)v;
        }
    }
    return trace_start(ex, cap, path);
}

void
weft__trace_exec_stopped(weft_executor_t *ex)
{
    struct weft__trace_session *s = ex->trace.session;
    if (s == NULL || s->path == NULL) {
        return;
    }
    if (s->recording) {
        (void)trace_stop(ex);
    }
    /* No caller to return a status to: a file that cannot be written is
     * reported on stderr, with the reason, and the destroy goes on. */
    int err = 0;
    FILE *fp = fopen(s->path, "w");
    if (fp == NULL) {
        err = errno;
    } else {
        errno = 0;
        if (trace_json(ex, s, fp) != WEFT_OK) {
            err = errno != 0 ? errno : EIO;
        }
        if (fclose(fp) != 0 && err == 0) {
            err = errno != 0 ? errno : EIO;
        }
    }
    if (err != 0) {
        fprintf(stderr, "weft: WEFT_TRACE: cannot write the trace to %s: %s\n",
                s->path, strerror(err));
    }
    s->path = NULL; /* written once, even if destroy is called again */
}

void
weft__trace_exec_free(weft_executor_t *ex)
{
    weft__free(ex->trace.session);
    ex->trace.session = NULL;
}
