/*
 * combine_fixture.h - fixtures shared by tests/test_combine.c and
 * tests/test_group.c: leak check, hang guard, executors, tokens and the
 * gate-controlled "leaf" tasks whose outcomes the tests script. Included
 * once per test program (after the Criterion and weft headers);
 * functions are static inline so that each program may use a subset.
 */
#ifndef WEFT_TESTS_COMBINE_FIXTURE_H
#define WEFT_TESTS_COMBINE_FIXTURE_H

/* ---- common: leak check, hang guard ---------------------------------- */

#define HANG_NS (20ull * 1000000000ull)
#define SEC_NS 1000000000ull
#define MS_NS 1000000ull

static int64_t live_at_start;
static atomic_uint hang_hits; /* gate bodies that gave up */
static atomic_uint run_seq;   /* order in which gate bodies start */

static inline void
begin(void)
{
    live_at_start = weft__alloc_live();
    atomic_store(&hang_hits, 0);
    atomic_store(&run_seq, 0);
}

/* Call with every executor destroyed. */
static inline void
finish(void)
{
    cr_assert_eq(atomic_load(&hang_hits), 0,
                 "a gate task hit its hang guard (something never ended)");
    int64_t now = weft__alloc_live();
    cr_assert_eq(now, live_at_start, "leaked %lld blocks",
                 (long long)(now - live_at_start));
}

static inline weft_executor_t *
ex_new(unsigned int nworkers)
{
    weft_executor_config_t cfg;
    weft_executor_config_init(&cfg);
    cfg.num_workers = nworkers;
    weft_executor_t *ex = NULL;
    cr_assert_eq(weft_executor_create(&cfg, &ex), WEFT_OK);
    return ex;
}

static inline void
ex_end(weft_executor_t *ex)
{
    cr_assert_eq(weft_executor_destroy(ex), WEFT_OK,
                 "executor destroy: a future is still held");
}

static inline weft_token_t *
tok_new(void)
{
    weft_token_t *t = NULL;
    cr_assert_eq(weft_token_create(NULL, &t), WEFT_OK);
    return t;
}

static inline weft_error_t *
err_new(int code, const char *msg)
{
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_create(&e, code, "%s", msg), WEFT_OK);
    return e;
}

static inline uint64_t
deadline_in(uint64_t ns)
{
    return weft_clock_now_ns() + ns;
}

#define FAR_PAST 1ull

/* Spin (yielding) until *p is nonzero; a hang fails the test. */
static inline void
await_flag(atomic_uint *p, const char *what)
{
    uint64_t guard = deadline_in(HANG_NS);
    while (atomic_load_explicit(p, memory_order_acquire) == 0) {
        cr_assert(weft_clock_now_ns() < guard, "hang waiting for %s", what);
        sched_yield();
    }
}

/* Wait for f to end (hang-guarded); returns its status. */
static inline weft_status_t
wait_end(weft_future_t *f)
{
    weft_status_t st = weft_future_wait_until(f, deadline_in(HANG_NS));
    cr_assert_neq(st, WEFT_ETIMEDOUT, "hang waiting for a future");
    return st;
}

/* The same error: the same object, or a copy (code, message, task). */
static inline bool
same_error(const weft_error_t *a, const weft_error_t *b)
{
    if (a == b) {
        return true;
    }
    if (a == NULL || b == NULL) {
        return false;
    }
    return weft_error_status(a) == weft_error_status(b) &&
           strcmp(weft_error_message(a), weft_error_message(b)) == 0 &&
           weft_error_task_id(a) == weft_error_task_id(b);
}

/* One line for an assertion message (static buffer: one use per call). */
static inline const char *
fmt_err(const weft_error_t *e, char *buf, size_t n)
{
    weft_error_format(e, buf, n);
    return buf;
}
#define FMT(e) fmt_err((e), (char[512]){0}, 512)

/* e, or one of its causes, is root. */
static inline bool
caused_by(const weft_error_t *e, const weft_error_t *root)
{
    for (int depth = 0; e != NULL && depth < 32; depth++) {
        if (same_error(e, root)) {
            return true;
        }
        e = weft_error_cause(e);
    }
    return false;
}

/* ---- gate tasks ---------------------------------------------------------- */

enum leaf_mode {
    L_OK = 0,         /* on go: succeed with value */
    L_FAIL = 1,       /* on go: fail with code */
    L_SELF_CANCEL = 2 /* on go: return WEFT_ECANCELED of its own */
};
#define ON_CANCEL_STOP 0    /* on cancellation: return WEFT_ECANCELED */
#define ON_CANCEL_IGNORE -1 /* note it, keep waiting for go */
/* on_cancel > 0: fail with that code after seeing cancellation */

struct leaf {
    int id;
    enum leaf_mode mode;
    int code;
    int64_t value;
    int on_cancel;
    atomic_uint go;
    atomic_uint ran;
    atomic_uint released;
    atomic_uint started;
    atomic_uint saw_cancel;
    atomic_uint finished;
    atomic_uint seq; /* 1 + order of start among all gate bodies */
};

static inline void
leaf_init(struct leaf *l, int id, enum leaf_mode mode, int code, int64_t value,
          int on_cancel)
{
    memset(l, 0, sizeof(*l));
    l->id = id;
    l->mode = mode;
    l->code = code;
    l->value = value;
    l->on_cancel = on_cancel;
}

static inline void
leaf_open(struct leaf *l)
{
    atomic_store_explicit(&l->go, 1, memory_order_release);
}

static inline void
leaf_release(void *arg)
{
    atomic_fetch_add(&((struct leaf *)arg)->released, 1);
}

static inline weft_status_t
leaf_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct leaf *l = arg;
    weft_status_t st;
    atomic_fetch_add(&l->ran, 1);
    atomic_store(&l->seq, atomic_fetch_add(&run_seq, 1) + 1);
    atomic_store_explicit(&l->started, 1, memory_order_release);
    uint64_t guard = weft_clock_now_ns() + HANG_NS;
    for (;;) {
        if (atomic_load_explicit(&l->go, memory_order_acquire) != 0) {
            if (l->mode == L_OK) {
                result->i64 = l->value;
                st = WEFT_OK;
            } else if (l->mode == L_FAIL) {
                st = weft_task_fail(self, l->code, "leaf %d failed", l->id);
            } else {
                st = WEFT_ECANCELED;
            }
            break;
        }
        if (weft_task_is_cancelled(self)) {
            atomic_store(&l->saw_cancel, 1);
            if (l->on_cancel == ON_CANCEL_STOP) {
                st = WEFT_ECANCELED;
                break;
            }
            if (l->on_cancel > 0) {
                st = weft_task_fail(self, l->on_cancel,
                                    "leaf %d failed after cancellation", l->id);
                break;
            }
        }
        if (weft_clock_now_ns() > guard) {
            atomic_fetch_add(&hang_hits, 1);
            st = weft_task_fail(self, WEFT_EUSER + 99, "hang guard");
            break;
        }
        sched_yield();
    }
    atomic_store_explicit(&l->finished, 1, memory_order_release);
    return st;
}

static inline weft_error_t *
entry_error(const weft_errgroup_t *g, size_t i)
{
    weft_errgroup_entry_t e;
    cr_assert_eq(weft_errgroup_entry(g, i, &e), WEFT_OK);
    cr_assert_eq(e.kind, WEFT_ERRGROUP_ERROR, "entry %zu is not an error", i);
    return e.error;
}

#endif /* WEFT_TESTS_COMBINE_FIXTURE_H */
