/*
 * debug.c - debug mode: the registry of live futures and groups, the
 * end-of-life report and the task-tree dump. API in include/weft/debug.h.
 *
 * DESIGN
 *
 * A debug-mode executor owns a registry (ex->debug): a mutex, the list of
 * records of its live objects, and the list of entries of the report.
 * A record is allocated when a future or group is made (spawn_slow,
 * weft_future_then, weft__future_make, a group's or combinator's promise)
 * and linked under the mutex; the object points at it (f->dbg) and
 * carries the kind bit WEFT__K_DEBUG. When the object goes back to a pool
 * (the pool put, which runs once per object: future.c invariant 3) the
 * record is unlinked under the mutex and either freed or, when the object
 * was never observed, kept as an entry of the report, with a reference to
 * the failure's error. A record is also a node of the task tree: its
 * parent is the record of the task that was running on the spawning
 * thread (a thread-local set by debug_body(), the trampoline that runs a
 * tracked task's own function) or, for a group's child, the group's.
 *
 * Zero cost when off. The spawn fast path (weft_spawn) runs only when the
 * calling worker's free list is not empty, and the join fast path
 * (weft_join, the only caller of weft__pool_put_local) only for an object
 * whose refs word is exactly 1, i.e. without kind bits. A debug-mode
 * executor keeps every worker's free list empty for good:
 *   - weft__pool_refill() hands out one object from the executor-wide
 *     pool (weft__pool_get_external) instead of filling the list
 *     (weft__debug_pool_bypass);
 *   - its workers' free_count starts at WEFT__LOCAL_FREE_MAX and is only
 *     ever reset by a refill, which no longer happens, so weft__pool_put()
 *     sends every object to the free stack;
 *   - every object it hands out gets WEFT__K_DEBUG (also when its record
 *     cannot be allocated), so the join fast path never puts one on a
 *     free list.
 * So every spawn of a debug-mode executor takes spawn_slow(), where the
 * hook is, and the fast paths are the same instructions as before: the
 * executor without debug mode pays nothing there. What it does pay is one
 * test of the kind bit, already loaded with the refs word's line, in the
 * waits and inspection calls (weft__debug_seen) and in the pool put (in a
 * branch taken only for objects with kind bits).
 *
 * Observation. weft__debug_seen() sets the record's observed flag when
 * the future has ended and somebody waited for it or read its outcome,
 * status, value or error. The flag is a relaxed store: it is read after
 * the last release (ordered by the reference count's read-modify-writes
 * or the DETACHED/outcome CAS pair, future.c) or as a snapshot.
 *
 * Invariants:
 *  1. A record is on the live list exactly while its object is not freed
 *     (linked while the object is private, unlinked by the pool put), so
 *     r->f may be read under the mutex and points at a live object.
 *  2. A record is freed once: by the pool put when it is no entry, else
 *     by weft__debug_destroying() (delivered) or weft__debug_fini().
 *  3. The tree links (parent, child, sibling) join live records only: an
 *     unlinked record's children become roots (they keep parent_id).
 *  4. The mutex is a leaf: nothing that takes another lock or calls user
 *     code runs under it, except writing to the caller's FILE.
 *  5. Failing to allocate a record only leaves the object untracked
 *     (f->dbg NULL, counted): the task runs and ends as usual.
 */
#include "executor/debug.h"

#include <weft/cancel.h>
#include <weft/error.h>

#include "executor/executor.h"
#include "primitives/alloc.h"
#include "primitives/atomics.h"
#include "primitives/cancel.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most entries the report keeps; later ones are only counted. */
#define WEFT__DEBUG_ENTRIES_MAX 4096

/* What a record stands for. */
enum debug_kind {
    DEBUG_TASK,
    DEBUG_CONTINUATION,
    DEBUG_COMBINATOR,
    DEBUG_GROUP
};

/* What the report says about a record. */
enum debug_finding {
    DEBUG_NONE,
    DEBUG_NOT_AWAITED,
    DEBUG_ERROR_NOT_OBSERVED,
    DEBUG_GROUP_NOT_JOINED
};

struct weft__debug_rec {
    /* Live list or entry list; reg->lock. */
    struct weft__debug_rec *prev;
    struct weft__debug_rec *next;
    /* Task tree over live records (invariant 3); reg->lock. */
    struct weft__debug_rec *parent;
    struct weft__debug_rec *child;
    struct weft__debug_rec *child_last;
    struct weft__debug_rec *sib_prev;
    struct weft__debug_rec *sib_next;
    struct weft_future *f; /* the live object; NULL once freed;
                                    reg->lock */
    /* Set while the object is private; immutable afterwards. */
    struct weft__debug *reg;
    weft_fn_t fn;        /* the task's own function */
    weft_token_t *token; /* spawn or group token; retained */
    const char *name;
    const char *file;
    const char *func;
    int line;
    enum debug_kind kind;
    bool detached; /* spawned with out == NULL */
    uint64_t id;
    uint64_t after_id;  /* a continuation's antecedent */
    uint64_t parent_id; /* 0: none; reg->lock after linking */
    uint32_t observed;  /* relaxed flag (see the file comment) */
    /* reg->lock. */
    bool unjoined;              /* group destroyed before its join */
    bool delivered;             /* reported alive by a destroy call */
    weft_status_t group_status; /* the join status destroy got */
    /* The entry, once freed (reg->lock). */
    enum debug_finding finding;
    uint32_t phase;
    weft_error_t *error; /* retained */
};

struct weft__debug {
    /*
     * lock protects: the live and entry lists, every record's list and
     * tree links, r->f, r->parent_id after linking, r->unjoined,
     * r->group_status and the entry fields, nentries and omitted.
     */
    pthread_mutex_t lock;
    struct weft__debug_rec *live_head;
    struct weft__debug_rec *live_tail;
    struct weft__debug_rec *entry_head;
    struct weft__debug_rec *entry_tail;
    size_t nentries;
    size_t omitted;
    uint64_t untracked; /* faa: objects without a record */
    /* Immutable after weft__debug_init(). */
    weft_debug_report_fn_t sink;
    void *user;
    bool to_stderr; /* WEFT_DEBUG_TASKS and no sink */
};

/* The record of the tracked task running on this thread, or NULL. */
static __thread struct weft__debug_rec *debug_current;

/* ---- life cycle -------------------------------------------------------- */

static bool
debug_env_on(void)
{
    const char *env = getenv("WEFT_DEBUG_TASKS");
    return env != NULL && env[0] != '\0' && strcmp(env, "0") != 0;
}

weft_status_t
weft__debug_init(weft_executor_t *ex)
{
    bool from_env = debug_env_on();
    if (!ex->cfg.debug_tasks && !from_env) {
        return WEFT_OK;
    }
    struct weft__debug *reg = WEFT__ALLOC(sizeof(*reg));
    if (reg == NULL) {
        return WEFT_ENOMEM;
    }
    memset(reg, 0, sizeof(*reg));
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        weft__free(reg);
        return WEFT_ESYS;
    }
    reg->sink = ex->cfg.on_debug_report;
    reg->user = ex->cfg.user_data;
    reg->to_stderr = reg->sink == NULL && from_env;
    /* Pin every worker's pool put to the free stack (file comment). */
    for (unsigned int i = 0; i < ex->nworkers; i++) {
        ex->workers[i].free_count = WEFT__LOCAL_FREE_MAX;
    }
    ex->debug = reg;
    return WEFT_OK;
}

static void
rec_free(struct weft__debug_rec *r)
{
    if (r->error != NULL) {
        weft_error_release(r->error);
    }
    if (r->token != NULL) {
        weft_token_release(r->token);
    }
    weft__free(r);
}

static void
rec_free_list(struct weft__debug_rec *r)
{
    while (r != NULL) {
        struct weft__debug_rec *next = r->next;
        rec_free(r);
        r = next;
    }
}

void
weft__debug_fini(weft_executor_t *ex)
{
    struct weft__debug *reg = ex->debug;
    if (reg == NULL) {
        return;
    }
    /* Every object is freed by now (destroy found none outstanding), so
     * the live list is empty; free what is there all the same. */
    rec_free_list(reg->live_head);
    rec_free_list(reg->entry_head);
    pthread_mutex_destroy(&reg->lock);
    weft__free(reg);
    ex->debug = NULL;
}

bool
weft__debug_pool_bypass(const weft_executor_t *ex)
{
    return ex->debug != NULL;
}

/* ---- registration ------------------------------------------------------ */

static void
tree_attach(struct weft__debug_rec *p, struct weft__debug_rec *c)
{
    c->parent = p;
    c->sib_next = NULL;
    c->sib_prev = p->child_last;
    if (p->child_last != NULL) {
        p->child_last->sib_next = c;
    } else {
        p->child = c;
    }
    p->child_last = c;
}

static void
tree_detach(struct weft__debug_rec *c)
{
    struct weft__debug_rec *p = c->parent;
    if (p == NULL) {
        return;
    }
    if (c->sib_prev != NULL) {
        c->sib_prev->sib_next = c->sib_next;
    } else {
        p->child = c->sib_next;
    }
    if (c->sib_next != NULL) {
        c->sib_next->sib_prev = c->sib_prev;
    } else {
        p->child_last = c->sib_prev;
    }
    c->parent = NULL;
    c->sib_prev = NULL;
    c->sib_next = NULL;
}

/* Link r (fully set up) on the live list, under parent when given. */
static void
rec_link(struct weft__debug *reg, struct weft__debug_rec *r,
         struct weft__debug_rec *parent)
{
    pthread_mutex_lock(&reg->lock);
    r->prev = reg->live_tail;
    r->next = NULL;
    if (reg->live_tail != NULL) {
        reg->live_tail->next = r;
    } else {
        reg->live_head = r;
    }
    reg->live_tail = r;
    if (parent != NULL) {
        /* parent runs on this thread, so it is live (invariant 1). */
        tree_attach(parent, r);
        r->parent_id = parent->id;
    }
    pthread_mutex_unlock(&reg->lock);
}

/* Take r off the live list and out of the tree (its children become
 * roots). Under reg->lock. */
static void
rec_unlink(struct weft__debug *reg, struct weft__debug_rec *r)
{
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        reg->live_head = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    } else {
        reg->live_tail = r->prev;
    }
    r->prev = NULL;
    r->next = NULL;
    tree_detach(r);
    for (struct weft__debug_rec *c = r->child; c != NULL;) {
        struct weft__debug_rec *next = c->sib_next;
        c->parent = NULL;
        c->sib_prev = NULL;
        c->sib_next = NULL;
        c = next;
    }
    r->child = NULL;
    r->child_last = NULL;
    r->f = NULL;
}

/* Mark f (still private) as made by a debug-mode executor. */
static void
debug_mark(struct weft_future *f)
{
    /* Unpaired: f is private to its maker until it is queued or handed
     * out, whose release publishes the kind bits. */
    weft__store_relaxed_u32(&f->refs, weft__load_relaxed_u32(&f->refs) |
                                          WEFT__K_DEBUG << WEFT__KIND_SHIFT);
}

/* A zeroed record for f, or NULL (counted) when memory runs out. */
static struct weft__debug_rec *
rec_new(struct weft__debug *reg, struct weft_future *f, enum debug_kind kind)
{
    struct weft__debug_rec *r = WEFT__ALLOC(sizeof(*r));
    if (r == NULL) {
        /* Unpaired: a statistic (invariant 5); read as a snapshot. */
        (void)weft__faa_u64(&reg->untracked, 1);
        return NULL;
    }
    memset(r, 0, sizeof(*r));
    r->reg = reg;
    r->f = f;
    r->kind = kind;
    r->id = weft_future_id(f);
    return r;
}

/* The task running on this thread, when it belongs to reg. */
static struct weft__debug_rec *
debug_parent(struct weft__debug *reg)
{
    struct weft__debug_rec *cur = debug_current;
    return cur != NULL && cur->reg == reg ? cur : NULL;
}

/*
 * A tracked task's function: run the task's own with this thread's
 * current task set to it, so that what it spawns is listed under it.
 */
static weft_status_t
debug_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct weft__debug_rec *r = ((struct weft_future *)self)->dbg;
    struct weft__debug_rec *prev = debug_current;
    debug_current = r;
    weft_status_t st = r->fn(self, arg, result);
    debug_current = prev;
    return st;
}

void
weft__debug_track_slow(struct weft__debug *reg, struct weft_future *f,
                       const weft_spawn_opts_t *opts, unsigned int how)
{
    debug_mark(f);
    struct weft__debug_rec *r = rec_new(
        reg, f,
        (how & WEFT__DBG_CONTINUATION) != 0 ? DEBUG_CONTINUATION : DEBUG_TASK);
    if (r == NULL) {
        return;
    }
    r->detached = (how & WEFT__DBG_DETACHED) != 0;
    if (opts != NULL) {
        r->name = opts->name;
        r->file = opts->file;
        r->func = opts->func;
        r->line = opts->file != NULL || opts->func != NULL ? opts->line : 0;
        if (opts->token != NULL) {
            (void)weft_token_retain(opts->token);
            r->token = opts->token;
        }
    }
    if (f->antecedent != NULL) {
        r->after_id = weft_future_id(f->antecedent);
    }
    r->fn = f->fn;
    f->fn = debug_body;
    f->dbg = r;
    rec_link(reg, r, debug_parent(reg));
}

/* Record promise p (private) of the given kind. */
static void
debug_track_promise(struct weft_future *p, enum debug_kind kind,
                    weft_token_t *token, const char *name, const char *file,
                    int line, const char *func)
{
    struct weft__debug *reg = p->ex->debug;
    debug_mark(p);
    struct weft__debug_rec *r = rec_new(reg, p, kind);
    if (r == NULL) {
        return;
    }
    r->name = name;
    r->file = file;
    r->func = func;
    r->line = file != NULL || func != NULL ? line : 0;
    if (token != NULL) {
        (void)weft_token_retain(token);
        r->token = token;
    }
    p->dbg = r;
    rec_link(reg, r, debug_parent(reg));
}

void
weft__debug_track_group(struct weft_future *p, weft_token_t *token,
                        const weft_group_opts_t *opts)
{
    if (p == NULL || p->ex->debug == NULL) {
        return;
    }
    debug_track_promise(
        p, DEBUG_GROUP, token, p->name, opts != NULL ? opts->file : NULL,
        opts != NULL ? opts->line : 0, opts != NULL ? opts->func : NULL);
}

void
weft__debug_track_combinator(struct weft_future *p,
                             const weft_combine_opts_t *opts)
{
    if (p == NULL || p->ex->debug == NULL) {
        return;
    }
    debug_track_promise(
        p, DEBUG_COMBINATOR, NULL, p->name, opts != NULL ? opts->file : NULL,
        opts != NULL ? opts->line : 0, opts != NULL ? opts->func : NULL);
}

void
weft__debug_adopt_slow(struct weft_future *child, struct weft_future *group)
{
    struct weft__debug_rec *c = child->dbg;
    struct weft__debug_rec *g = group->dbg;
    if (c == NULL || g == NULL) {
        return;
    }
    pthread_mutex_lock(&c->reg->lock);
    tree_detach(c);
    tree_attach(g, c);
    c->parent_id = g->id;
    pthread_mutex_unlock(&c->reg->lock);
}

void
weft__debug_group_unjoined_slow(struct weft_future *group, weft_status_t st)
{
    struct weft__debug_rec *r = group->dbg;
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->reg->lock);
    r->unjoined = true;
    r->group_status = st;
    pthread_mutex_unlock(&r->reg->lock);
}

void
weft__debug_seen_slow(struct weft_future *f)
{
    struct weft__debug_rec *r = f->dbg;
    if (r == NULL) {
        return;
    }
    /* Pairs with: the outcome CAS in weft__future_complete_shared(); only
     * an ended future's outcome can have been read. */
    if (!weft__future_state_done(weft__load_acq_u32(&f->state))) {
        return;
    }
    /* Relaxed: a flag; the pool put reads it after the last release,
     * which the reference count orders after this store (file comment). */
    weft__store_relaxed_u32(&r->observed, 1);
}

/* ---- classification ---------------------------------------------------- */

/* The finding for r, whose object is in phase (ended, or a live group).
 * Under reg->lock. */
static enum debug_finding
rec_classify(const struct weft__debug_rec *r, uint32_t phase, bool alive)
{
    /* Relaxed: see weft__debug_seen_slow(). */
    bool observed = weft__load_relaxed_u32(&r->observed) != 0;
    if (r->kind == DEBUG_GROUP) {
        /* A live group is joined once its promise was waited for. */
        return r->unjoined || (alive && !observed) ? DEBUG_GROUP_NOT_JOINED
                                                   : DEBUG_NONE;
    }
    if (observed || phase == WEFT__QUEUED) {
        return DEBUG_NONE;
    }
    if (phase == WEFT__FAILED) {
        return DEBUG_ERROR_NOT_OBSERVED;
    }
    return r->detached ? DEBUG_NONE : DEBUG_NOT_AWAITED;
}

void
weft__debug_freed(struct weft_future *f)
{
    struct weft__debug_rec *r = f->dbg;
    if (r == NULL) {
        return;
    }
    f->dbg = NULL;
    struct weft__debug *reg = r->reg;
    /*
     * Relaxed: the freeing thread ended f or saw it ended with acquire
     * (future.c invariant 3). A phase still QUEUED means f never ran: a
     * refused spawn, an unsettled promise, or a task its sole holder
     * joined inline (observed by definition); none is an entry.
     */
    uint32_t phase = weft__future_phase(weft__load_relaxed_u32(&f->state));
    bool keep = false;
    pthread_mutex_lock(&reg->lock);
    rec_unlink(reg, r);
    /* An object a destroy call already reported alive is not reported
     * twice when it is released afterwards. */
    enum debug_finding finding =
        (phase == WEFT__QUEUED && r->kind != DEBUG_GROUP) || r->delivered
            ? DEBUG_NONE
            : rec_classify(r, phase, false);
    if (finding != DEBUG_NONE) {
        if (reg->nentries < WEFT__DEBUG_ENTRIES_MAX) {
            r->finding = finding;
            r->phase = phase;
            if (finding == DEBUG_ERROR_NOT_OBSERVED && f->error != NULL) {
                (void)weft_error_retain(f->error);
                r->error = f->error;
            }
            if (reg->entry_tail != NULL) {
                reg->entry_tail->next = r;
            } else {
                reg->entry_head = r;
            }
            reg->entry_tail = r;
            reg->nentries++;
            keep = true;
        } else {
            reg->omitted++;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    if (!keep) {
        rec_free(r);
    }
}

/* ---- output ------------------------------------------------------------ */

/* Where the JSON goes: a FILE, a growing buffer, or nowhere. */
struct debug_out {
    FILE *fp;    /* write here when set */
    bool to_buf; /* else append to buf when set */
    char *buf;   /* WEFT__REALLOC'ed, NUL-terminated */
    size_t len;
    size_t cap;
    bool failed; /* a write or an allocation failed */
};

static void
out_write(struct debug_out *o, const char *s, size_t n)
{
    if (o->failed || n == 0) {
        return;
    }
    if (o->fp != NULL) {
        if (fwrite(s, 1, n, o->fp) != n) {
            o->failed = true;
        }
        return;
    }
    if (!o->to_buf) {
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t ncap = o->cap != 0 ? o->cap : 1024;
        while (ncap < o->len + n + 1) {
            ncap *= 2;
        }
        char *nb = WEFT__REALLOC(o->buf, ncap);
        if (nb == NULL) {
            o->failed = true;
            return;
        }
        o->buf = nb;
        o->cap = ncap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void
out_lit(struct debug_out *o, const char *s)
{
    out_write(o, s, strlen(s));
}

static void
out_u64(struct debug_out *o, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    out_write(o, tmp, (size_t)n);
}

/* The characters of s, escaped for a JSON string (no quotes). */
static void
out_chars(struct debug_out *o, const char *s)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        out_write(o, run, (size_t)(s - run));
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            esc[2] = '\0';
        } else {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
        }
        out_lit(o, esc);
        run = s + 1;
    }
    out_write(o, run, (size_t)(s - run));
}

/* s as a JSON string, or null. */
static void
out_str(struct debug_out *o, const char *s)
{
    if (s == NULL) {
        out_lit(o, "null");
        return;
    }
    out_lit(o, "\"");
    out_chars(o, s);
    out_lit(o, "\"");
}

static const char *const debug_kind_names[] = {"task", "continuation",
                                               "combinator", "group"};

/* "outcome" of a phase. */
static const char *
phase_name(uint32_t phase)
{
    switch (phase) {
    case WEFT__SUCCEEDED:
        return "succeeded";
    case WEFT__FAILED:
        return "failed";
    case WEFT__CANCELLED:
        return "cancelled";
    default:
        return "pending";
    }
}

/* The fields every entry and node start with: kind, id, name, site,
 * where, parent. */
static void
out_common(struct debug_out *o, const struct weft__debug_rec *r)
{
    out_lit(o, "\"kind\":\"");
    out_lit(o, debug_kind_names[r->kind]);
    out_lit(o, "\",\"id\":");
    out_u64(o, r->id);
    out_lit(o, ",\"name\":");
    out_str(o, r->name);
    if (r->file != NULL || r->func != NULL) {
        out_lit(o, ",\"site\":{\"file\":");
        out_str(o, r->file);
        out_lit(o, ",\"line\":");
        out_u64(o, (uint64_t)(r->line > 0 ? r->line : 0));
        out_lit(o, ",\"func\":");
        out_str(o, r->func);
        out_lit(o, "},\"where\":\"");
        out_chars(o, r->file != NULL ? r->file : "?");
        out_lit(o, ":");
        out_u64(o, (uint64_t)(r->line > 0 ? r->line : 0));
        if (r->func != NULL) {
            out_lit(o, " (");
            out_chars(o, r->func);
            out_lit(o, ")");
        }
        out_lit(o, "\"");
    } else {
        out_lit(o, ",\"site\":null,\"where\":\"unknown: no spawn site was "
                   "given (WEFT_SPAWN_SITE)\"");
    }
    out_lit(o, ",\"parent\":");
    if (r->parent_id != 0) {
        out_u64(o, r->parent_id);
    } else {
        out_lit(o, "null");
    }
    if (r->after_id != 0) {
        out_lit(o, ",\"after\":");
        out_u64(o, r->after_id);
    }
}

/* {"status": ..., "message": ...} of e. */
static void
out_error(struct debug_out *o, const weft_error_t *e)
{
    out_lit(o, "{\"status\":");
    out_str(o, weft_status_name(weft_error_status(e)));
    out_lit(o, ",\"message\":");
    out_str(o, weft_error_message(e));
    out_lit(o, "}");
}

static const char *const debug_finding_names[] = {
    "none", "not_awaited", "error_not_observed", "group_not_joined"};

static void
out_entry(struct debug_out *o, const struct weft__debug_rec *r,
          enum debug_finding finding, uint32_t phase, const weft_error_t *e,
          bool alive, bool *first)
{
    out_lit(o, *first ? "{\"finding\":\"" : ",{\"finding\":\"");
    *first = false;
    out_lit(o, debug_finding_names[finding]);
    out_lit(o, "\",");
    out_common(o, r);
    out_lit(o, ",\"outcome\":\"");
    if (r->kind == DEBUG_GROUP) {
        /* A group's promise only settles; its outcome is its join's. */
        out_lit(o, !r->unjoined                        ? "pending"
                   : r->group_status == WEFT_OK        ? "succeeded"
                   : r->group_status == WEFT_ECANCELED ? "cancelled"
                                                       : "failed");
    } else {
        out_lit(o, phase_name(phase));
    }
    out_lit(o, alive ? "\",\"alive\":true" : "\",\"alive\":false");
    if (e != NULL) {
        out_lit(o, ",\"error\":");
        out_error(o, e);
    }
    out_lit(o, "}");
}

static void
summary_count(weft_debug_summary_t *sum, enum debug_finding finding, bool alive)
{
    switch (finding) {
    case DEBUG_NOT_AWAITED:
        sum->not_awaited++;
        break;
    case DEBUG_ERROR_NOT_OBSERVED:
        sum->errors_not_observed++;
        break;
    case DEBUG_GROUP_NOT_JOINED:
        sum->groups_not_joined++;
        break;
    case DEBUG_NONE:
        return;
    }
    sum->alive += alive;
}

/* The report (see weft_executor_debug_report); deliver marks the live
 * objects it reports as delivered. Under reg->lock. */
static void
report_write(struct weft__debug *reg, struct debug_out *o,
             weft_debug_summary_t *sum, bool deliver)
{
    memset(sum, 0, sizeof(*sum));
    bool first = true;
    out_lit(o, "{\"entries\":[");
    for (const struct weft__debug_rec *r = reg->entry_head; r != NULL;
         r = r->next) {
        out_entry(o, r, r->finding, r->phase, r->error, false, &first);
        summary_count(sum, r->finding, false);
    }
    for (struct weft__debug_rec *r = reg->live_head; r != NULL; r = r->next) {
        const struct weft_future *f = r->f;
        /* Pairs with: the outcome CAS in weft__future_complete_shared(),
         * so status and error are read after they were written. */
        uint32_t phase = weft__future_phase(weft__load_acq_u32(&f->state));
        if ((phase == WEFT__QUEUED && r->kind != DEBUG_GROUP) ||
            (deliver && r->delivered)) {
            continue; /* not ended: not an entry yet; or delivered */
        }
        enum debug_finding finding = rec_classify(r, phase, true);
        if (finding == DEBUG_NONE) {
            continue;
        }
        out_entry(o, r, finding, phase,
                  finding == DEBUG_ERROR_NOT_OBSERVED ? f->error : NULL, true,
                  &first);
        summary_count(sum, finding, true);
        r->delivered = r->delivered || deliver;
    }
    /* Relaxed: a statistic (invariant 5). */
    sum->untracked = (size_t)weft__load_relaxed_u64(&reg->untracked);
    sum->omitted = reg->omitted;
    out_lit(o, "],\"summary\":{\"not_awaited\":");
    out_u64(o, sum->not_awaited);
    out_lit(o, ",\"errors_not_observed\":");
    out_u64(o, sum->errors_not_observed);
    out_lit(o, ",\"groups_not_joined\":");
    out_u64(o, sum->groups_not_joined);
    out_lit(o, ",\"alive\":");
    out_u64(o, sum->alive);
    out_lit(o, ",\"untracked\":");
    out_u64(o, sum->untracked);
    out_lit(o, ",\"omitted\":");
    out_u64(o, sum->omitted);
    out_lit(o, "}}");
}

/* "token" of a live record: the cancel request, else the task's own
 * token, else the spawn or group token. Under reg->lock. */
static void
node_token(struct debug_out *o, const struct weft__debug_rec *r)
{
    const struct weft_future *f = r->f;
    weft_error_t *reason = NULL;
    enum weft__token_peek_state ts = WEFT__TOKEN_ACTIVE;
    bool any = false;
    if (r->kind == DEBUG_TASK || r->kind == DEBUG_CONTINUATION) {
        /* Pairs with: the CAS in weft_future_cancel() that set it; f
         * owns the reason until it is freed, after our unlock. */
        reason = weft__load_acq_ptr((void *const *)&f->cancel_req);
        if (reason != NULL) {
            any = true;
            ts = WEFT__TOKEN_CANCELLED;
        }
    }
    if (!any) {
        weft_token_t *t = NULL;
        if (r->kind == DEBUG_TASK || r->kind == DEBUG_CONTINUATION) {
            /* Pairs with: the fas in weft_task_token(); f owns the token
             * until it is freed, after our unlock. */
            t = weft__load_acq_ptr((void *const *)&f->ttoken);
        }
        if (t == NULL) {
            t = r->token;
        }
        if (t != NULL) {
            any = true;
            ts = weft__token_peek(t, &reason);
        }
    }
    if (!any) {
        out_lit(o, ",\"token\":{\"state\":\"none\"}");
        return;
    }
    out_lit(o,
            ts == WEFT__TOKEN_CANCELLED ? ",\"token\":{\"state\":\"cancelled\""
            : ts == WEFT__TOKEN_EXPIRED ? ",\"token\":{\"state\":\"expired\""
                                        : ",\"token\":{\"state\":\"active\"");
    if (ts == WEFT__TOKEN_CANCELLED && reason != NULL) {
        out_lit(o, ",\"reason\":");
        out_error(o, reason);
    }
    out_lit(o, "}");
}

/* Open r's node, up to its "children" array. Under reg->lock. */
static void
node_open(struct debug_out *o, const struct weft__debug_rec *r)
{
    const struct weft_future *f = r->f;
    /* Pairs with: the outcome CAS in weft__future_complete_shared(), so
     * the error is read after it was written. */
    uint32_t phase = weft__future_phase(weft__load_acq_u32(&f->state));
    const char *state = phase_name(phase);
    if (phase == WEFT__QUEUED) {
        if (r->kind == DEBUG_GROUP || r->kind == DEBUG_COMBINATOR) {
            state = "pending";
        } else {
            /* Relaxed: a snapshot of "did the body start". */
            state = (weft__load_relaxed_u32(&f->started) & WEFT__STARTED) != 0
                        ? "running"
                        : "queued";
        }
    }
    out_lit(o, "{");
    out_common(o, r);
    out_lit(o, ",\"state\":\"");
    out_lit(o, state);
    out_lit(o, "\"");
    node_token(o, r);
    if (phase == WEFT__FAILED && f->error != NULL) {
        out_lit(o, ",\"error\":");
        out_error(o, f->error);
    }
    out_lit(o, ",\"children\":[");
}

/* root's subtree, depth first without recursion (the tree links lead back
 * up). Under reg->lock. */
static void
dump_tree(struct debug_out *o, const struct weft__debug_rec *root)
{
    const struct weft__debug_rec *n = root;
    node_open(o, n);
    for (;;) {
        if (n->child != NULL) {
            n = n->child;
            node_open(o, n);
            continue;
        }
        for (;;) {
            out_lit(o, "]}");
            if (n == root) {
                return;
            }
            if (n->sib_next != NULL) {
                n = n->sib_next;
                out_lit(o, ",");
                node_open(o, n);
                break;
            }
            n = n->parent;
        }
    }
}

/* ---- public API --------------------------------------------------------- */

bool
weft_executor_is_debugging(const weft_executor_t *ex)
{
    return ex != NULL && ex->debug != NULL;
}

weft_status_t
weft_executor_debug_report(weft_executor_t *ex, FILE *out,
                           weft_debug_summary_t *summary)
{
    if (ex == NULL || (out == NULL && summary == NULL)) {
        return WEFT_EINVAL;
    }
    struct weft__debug *reg = ex->debug;
    if (reg == NULL) {
        return WEFT_ENOTSUP;
    }
    struct debug_out o = {0};
    o.fp = out;
    weft_debug_summary_t sum;
    pthread_mutex_lock(&reg->lock);
    report_write(reg, &o, &sum, false);
    pthread_mutex_unlock(&reg->lock);
    if (summary != NULL) {
        *summary = sum;
    }
    return o.failed ? WEFT_ESYS : WEFT_OK;
}

weft_status_t
weft_executor_dump_tasks(weft_executor_t *ex, FILE *out)
{
    if (ex == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    struct weft__debug *reg = ex->debug;
    if (reg == NULL) {
        return WEFT_ENOTSUP;
    }
    struct debug_out o = {0};
    o.fp = out;
    bool first = true;
    pthread_mutex_lock(&reg->lock);
    out_lit(&o, "{\"tasks\":[");
    for (const struct weft__debug_rec *r = reg->live_head; r != NULL;
         r = r->next) {
        if (r->parent != NULL) {
            continue;
        }
        if (!first) {
            out_lit(&o, ",");
        }
        first = false;
        dump_tree(&o, r);
    }
    out_lit(&o, "]}");
    pthread_mutex_unlock(&reg->lock);
    return o.failed ? WEFT_ESYS : WEFT_OK;
}

/* ---- the report at destroy --------------------------------------------- */

static void
debug_deliver(const struct weft__debug *reg, const char *report)
{
    if (reg->sink != NULL) {
        reg->sink(report, reg->user);
    } else {
        fputs(report, stderr);
        fputc('\n', stderr);
    }
}

void
weft__debug_destroying(weft_executor_t *ex)
{
    struct weft__debug *reg = ex->debug;
    if (reg == NULL || (reg->sink == NULL && !reg->to_stderr)) {
        return;
    }
    struct debug_out o = {0};
    o.to_buf = true;
    weft_debug_summary_t sum;
    pthread_mutex_lock(&reg->lock);
    report_write(reg, &o, &sum, true);
    size_t n = sum.not_awaited + sum.errors_not_observed +
               sum.groups_not_joined + sum.omitted;
    /* Delivered once: a later destroy call reports only what is new. */
    struct weft__debug_rec *delivered = NULL;
    if (n > 0) {
        delivered = reg->entry_head;
        reg->entry_head = NULL;
        reg->entry_tail = NULL;
        reg->nentries = 0;
        reg->omitted = 0;
    }
    pthread_mutex_unlock(&reg->lock);
    if (n > 0 && !o.failed) {
        debug_deliver(reg, o.buf);
    } else if (n > 0) {
        /* Out of memory while building it: the counts, without entries. */
        char small[320];
        snprintf(small, sizeof(small),
                 "{\"entries\":null,\"truncated\":true,\"summary\":{"
                 "\"not_awaited\":%zu,\"errors_not_observed\":%zu,"
                 "\"groups_not_joined\":%zu,\"alive\":%zu,\"untracked\":%zu,"
                 "\"omitted\":%zu}}",
                 sum.not_awaited, sum.errors_not_observed,
                 sum.groups_not_joined, sum.alive, sum.untracked, sum.omitted);
        debug_deliver(reg, small);
    }
    weft__free(o.buf);
    rec_free_list(delivered);
}
