/*
 * stress_combine.c - randomized trees of nested combinators and task
 * groups with failures and cancellations (plain C: runs under
 * ThreadSanitizer, where Criterion cannot).
 *
 * Each round builds a tree three combinators deep: a root combinator made
 * by the main thread (gather, gather_settled, any, first_success, quorum
 * or a task group) over 2..4 "mid" tasks; each mid task makes its own
 * combinator or group, with weft_task_token(self) as its token / parent,
 * over 2..4 "inner" tasks; each inner task does the same over 2..4 leaves.
 * Leaves spin a random amount of work, polling for cancellation, and then
 * succeed, or fail (~20%); ~10% are cancelled through a token of their
 * own: cancelled before they are spawned (never run), by themselves while
 * running, by the main thread at a random moment (before, during or
 * after the run), or after their body finished its work (which must not
 * change a success). Leaves under a group poll that token instead (a
 * group child's token is the group's). Some rounds also cancel the root's
 * token, or weft_future_cancel() a mid task, at a random moment; some
 * combinators adopt their children's references.
 *
 * Checked for every round, once every task of the tree has ended:
 *   - exactly once: each body ran at most once, each release hook ran
 *     exactly once for each spawned task (and never for one that was not
 *     spawned), every kept future has ended;
 *   - each future's outcome agrees with what its body returned (never ran:
 *     CANCELLED and not started; returned OK: SUCCEEDED with the value;
 *     WEFT_ECANCELED: CANCELLED; otherwise FAILED with that status);
 *   - every ledger (weft_combine_child, weft_group_child) agrees with
 *     the children: outcome, started, value; cancelled_by_combinator only
 *     on a cancelled child, and never on one whose reason is the leaf's
 *     own token's;
 *   - each combinator's outcome obeys its rule (gather succeeded iff all
 *     did; settled never fails and cancels nothing unless its caller
 *     cancelled; any/first_success's value is the decider's; first_success
 *     fails only if no child succeeded; quorum succeeded iff k did; a
 *     CANCELLED combinator had its caller cancelled; a group's join is OK
 *     only with no failure, a failure status only with one) and its error
 *     group holds every failed child;
 *   - after each executor is destroyed, weft__alloc_live() is back at its
 *     starting value.
 *
 * Runs on executors of 1, 2 and 4 workers in turn. Seed: WEFT_SEED if set,
 * else the clock; printed first and with each failure. Rounds per
 * executor: WEFT_STRESS_ROUNDS if set, else 10000 (default build: over
 * 200k leaf tasks spawned in all) or 3000 under sanitizers (about 10 s
 * under TSan on 2 cores). Prints counts; the last line is "N passed, N
 * failed" (rounds); exit status 0 only when none failed.
 */
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cancel.h>
#include <weft/combine.h>
#include <weft/errgroup.h>
#include <weft/error.h>
#include <weft/executor.h>
#include <weft/future.h>
#include <weft/group.h>
#include <weft/status.h>

#include "primitives/alloc.h"
#include "stress_common.h"

#ifdef STRESS_SANITIZED
#define DEFAULT_ROUNDS 3000
#define MAX_WORK 100
#else
#define DEFAULT_ROUNDS 10000
#define MAX_WORK 400
#endif

#define DEPTH 3   /* combinator levels */
#define MAXF 4    /* fan-out */
#define MAXNODES (1 + MAXF + MAXF * MAXF + MAXF * MAXF * MAXF)
#define HANG_NS (60ull * 1000000000ull)

enum kind {
    K_GATHER,
    K_SETTLED,
    K_ANY,
    K_FIRST,
    K_QUORUM,
    K_GROUP,
    K_NKINDS
};
static const char *const kind_names[K_NKINDS] = {
    "gather", "settled", "any", "first_success", "quorum", "group"};

enum plan {
    P_OK,
    P_FAIL,
    P_CANCEL_BEFORE, /* token cancelled before the round starts */
    P_CANCEL_SELF,   /* the body cancels its token mid-work */
    P_CANCEL_ASYNC,  /* the main thread cancels it at a random moment */
    P_CANCEL_AFTER,  /* the body cancels its token after its work, then
                        succeeds */
    P_NPLANS
};

struct node {
    int depth; /* 0: leaf */
    enum kind kind;
    size_t k; /* quorum */
    bool adopt;
    int nch;
    struct node *ch[MAXF];
    struct node *parent;
    /* leaf */
    enum plan plan;
    uint32_t work;
    weft_token_t *tok; /* leaves with a cancelling plan */
    /* accounting */
    atomic_uint spawned;  /* a spawn of it was attempted */
    atomic_uint ran;
    atomic_uint released;
    weft_status_t ret;    /* what the body returned */
    int64_t value;        /* its value when it returned OK */
    /* set by the parent when it spawned it into a combinator */
    weft_future_t *fut;
    /* internal nodes: their combinator or group (body-written) */
    weft_future_t *comb;
    bool caller_cancelled; /* its token was cancelled when it ended */
    weft_status_t join_status;
    weft_errgroup_t *gerrs;         /* group: retained errors */
    weft_child_result_t gl[MAXF];   /* group: ledger snapshot */
    bool gl_reason_is_tok[MAXF];    /* group: reason is the leaf's token's */
    bool made;                      /* the combinator/group was made */
};

static uint64_t seed;
static struct node nodes[MAXNODES];
static int nnodes;
static weft_error_t *leaf_reason; /* reason of every leaf token cancel */
static atomic_uint tree_spawned;
static atomic_uint tree_released;
static weft_executor_t *cur_ex;

/* counters, printed at the end */
static uint64_t c_leaves, c_leaf_spawned, c_leaf_ran, c_leaf_ok, c_leaf_failed,
    c_leaf_cancelled, c_never_started, c_tasks, c_rounds_by_kind[K_NKINDS],
    c_root_outcome[4], c_cancel_root, c_cancel_mid, c_by_comb,
    c_ledger_checked;

static uint64_t
rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t
rnd(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rng_next(s) % n);
}

static void
spin(uint32_t n)
{
    for (volatile uint32_t i = 0; i < n; i++) {
    }
}

static const char *cur_what;
static long cur_round;
static int round_bad;

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
failf(const char *fmt, ...)
{
    if (round_bad < 5) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "FAIL %s round %ld (seed %llu): ", cur_what,
                cur_round, (unsigned long long)seed);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    round_bad++;
}
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            failf(__VA_ARGS__);                                                \
        }                                                                      \
    } while (0)

/* ---- task bodies -------------------------------------------------------- */

static void
node_release(void *arg)
{
    struct node *n = arg;
    atomic_fetch_add(&n->released, 1);
    atomic_fetch_add(&tree_released, 1);
}

static weft_status_t
leaf_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct node *n = arg;
    atomic_fetch_add(&n->ran, 1);
    bool under_group = n->parent->kind == K_GROUP;
    weft_status_t st = WEFT_OK;
    uint32_t cancel_at = n->work / 2;
    for (uint32_t i = 0; i <= n->work; i++) {
        if (n->plan == P_CANCEL_SELF && i == cancel_at) {
            weft_token_cancel(n->tok, leaf_reason);
        }
        if ((i & 7) == 0 &&
            (weft_task_is_cancelled(self) ||
             (under_group && weft_token_is_cancelled(n->tok)))) {
            st = WEFT_ECANCELED;
            break;
        }
        spin(16);
    }
    if (st == WEFT_OK) {
        if (n->plan == P_CANCEL_AFTER) {
            weft_token_cancel(n->tok, leaf_reason);
        }
        if (n->plan == P_FAIL) {
            st = weft_task_fail(self, WEFT_EUSER + 1, "leaf %d failed",
                                (int)(n - nodes));
        } else {
            result->i64 = n->value;
        }
    }
    n->ret = st;
    return st;
}

static weft_status_t node_body(weft_task_t *self, void *arg,
                               weft_value_t *result);

static weft_status_t
make_combinator(struct node *n, weft_executor_t *ex, weft_future_t **f,
                weft_token_t *tok)
{
    weft_combine_opts_t o;
    memset(&o, 0, sizeof(o));
    o.token = tok;
    o.adopt = n->adopt;
    o.name = kind_names[n->kind];
    switch (n->kind) {
    case K_GATHER:
        return weft_gather(ex, f, (size_t)n->nch, &o, &n->comb);
    case K_SETTLED:
        return weft_gather_settled(ex, f, (size_t)n->nch, &o, &n->comb);
    case K_ANY:
        return weft_any(ex, f, (size_t)n->nch, &o, &n->comb);
    case K_FIRST:
        return weft_first_success(ex, f, (size_t)n->nch, &o, &n->comb);
    case K_QUORUM:
        return weft_quorum(ex, f, (size_t)n->nch, n->k, &o, &n->comb);
    default:
        return WEFT_EINVAL;
    }
}

/*
 * Run node n's combinator or group over its children, with tok as the
 * caller's token / parent. Used by node bodies (tok = own task token) and
 * by the main thread for the root. Returns what a body should return;
 * *value gets the value on WEFT_OK.
 */
static weft_status_t
run_node(struct node *n, weft_executor_t *ex, weft_token_t *tok,
         weft_task_t *self, int64_t *value)
{
    weft_future_t *f[MAXF];
    if (n->kind == K_GROUP) {
        weft_group_opts_t go;
        memset(&go, 0, sizeof(go));
        go.parent = tok;
        go.name = "stress";
        weft_group_t *g = NULL;
        if (weft_group_create(ex, &go, &g) != WEFT_OK) {
            return WEFT_EUSER + 40;
        }
        n->made = true;
        for (int i = 0; i < n->nch; i++) {
            struct node *c = n->ch[i];
            weft_spawn_opts_t so = {.release = node_release,
                                    .name = c->depth == 0 ? "leaf" : "node"};
            atomic_store(&c->spawned, 1);
            atomic_fetch_add(&tree_spawned, 1);
            size_t idx = SIZE_MAX;
            weft_status_t st =
                weft_group_spawn(g, &so, c->depth == 0 ? leaf_body : node_body,
                                 c, &idx);
            if (st != WEFT_OK || idx != (size_t)i) {
                failf("group spawn %s (index %ld, want %d)",
                      weft_status_name(st), (long)idx, i);
            }
        }
        n->join_status = weft_group_join(g);
        n->caller_cancelled = weft_token_is_cancelled(tok);
        for (int i = 0; i < n->nch; i++) {
            if (weft_group_child(g, (size_t)i, &n->gl[i]) != WEFT_OK) {
                failf("weft_group_child %d", i);
            }
            n->gl_reason_is_tok[i] = n->gl[i].error == leaf_reason;
            n->gl[i].error = NULL; /* borrowed: gone with the group */
            n->gl[i].future = NULL;
        }
        if (weft_group_errors(g, &n->gerrs) != WEFT_OK) {
            failf("weft_group_errors after join");
        }
        weft_status_t st = n->join_status;
        if (st != WEFT_OK && st != WEFT_ECANCELED && self != NULL) {
            weft_error_t *first = NULL;
            if (n->gerrs != NULL &&
                weft_errgroup_first_leaf(n->gerrs, &first) == WEFT_OK) {
                st = weft_task_fail_with(self, first);
            }
        }
        weft_group_destroy(g);
        *value = 1;
        return st;
    }
    for (int i = 0; i < n->nch; i++) {
        struct node *c = n->ch[i];
        weft_spawn_opts_t so = {
            .release = node_release,
            .name = c->depth == 0 ? "leaf" : "node",
            .token = c->depth == 0 ? c->tok : NULL};
        atomic_store(&c->spawned, 1);
        atomic_fetch_add(&tree_spawned, 1);
        weft_status_t st = weft_spawn_ex(
            ex, &so, c->depth == 0 ? leaf_body : node_body, c, &f[i]);
        if (st != WEFT_OK) {
            failf("spawn %s", weft_status_name(st));
            return WEFT_EUSER + 41;
        }
        c->fut = f[i];
    }
    if (make_combinator(n, ex, f, tok) != WEFT_OK) {
        failf("combinator refused %s", kind_names[n->kind]);
        return WEFT_EUSER + 42;
    }
    n->made = true;
    weft_status_t st = weft_future_wait(n->comb);
    n->caller_cancelled = weft_token_is_cancelled(tok);
    weft_outcome_t oc = weft_future_outcome(n->comb);
    if (oc == WEFT_OUTCOME_SUCCEEDED) {
        if (n->kind == K_ANY || n->kind == K_FIRST) {
            weft_value_t v = {.i64 = 0};
            weft_future_value(n->comb, &v);
            *value = v.i64;
        } else {
            *value = (int64_t)n->nch;
        }
        return WEFT_OK;
    }
    if (oc == WEFT_OUTCOME_CANCELLED) {
        return WEFT_ECANCELED;
    }
    if (self != NULL) {
        return weft_task_fail_with(self, weft_future_error(n->comb));
    }
    return st;
}

static weft_status_t
node_body(weft_task_t *self, void *arg, weft_value_t *result)
{
    struct node *n = arg;
    atomic_fetch_add(&n->ran, 1);
    int64_t v = 0;
    weft_status_t st =
        run_node(n, weft_task_executor(self), weft_task_token(self), self, &v);
    if (st == WEFT_OK) {
        result->i64 = v;
        n->value = v;
    }
    n->ret = st;
    return st;
}

/* ---- building a round ------------------------------------------------- */

static struct node *
new_node(int depth, struct node *parent, uint64_t *rs)
{
    struct node *n = &nodes[nnodes++];
    memset(n, 0, sizeof(*n));
    n->depth = depth;
    n->parent = parent;
    if (depth == 0) {
        uint32_t r = rnd(rs, 100);
        n->plan = r < 20   ? P_FAIL
                  : r < 23 ? P_CANCEL_BEFORE
                  : r < 26 ? P_CANCEL_SELF
                  : r < 29 ? P_CANCEL_ASYNC
                  : r < 30 ? P_CANCEL_AFTER
                           : P_OK;
        n->work = rnd(rs, MAX_WORK);
        n->value = (int64_t)rnd(rs, 1000000) + 1;
        if (n->plan >= P_CANCEL_BEFORE &&
            weft_token_create(NULL, &n->tok) != WEFT_OK) {
            abort();
        }
        return n;
    }
    n->kind = (enum kind)rnd(rs, K_NKINDS);
    n->nch = 2 + (int)rnd(rs, MAXF - 1);
    n->k = 1 + rnd(rs, (uint32_t)n->nch);
    n->adopt = rnd(rs, 4) == 0;
    for (int i = 0; i < n->nch; i++) {
        n->ch[i] = new_node(depth - 1, n, rs);
    }
    return n;
}

static weft_outcome_t
actual_outcome(const struct node *c)
{
    if (atomic_load(&c->ran) == 0) {
        return WEFT_OUTCOME_CANCELLED;
    }
    return c->ret == WEFT_OK          ? WEFT_OUTCOME_SUCCEEDED
           : c->ret == WEFT_ECANCELED ? WEFT_OUTCOME_CANCELLED
                                      : WEFT_OUTCOME_FAILED;
}

/* ---- checks ------------------------------------------------------------- */

static void
check_child_future(struct node *c)
{
    weft_future_t *f = c->fut;
    if (f == NULL) {
        return;
    }
    CHECK(weft_future_is_done(f), "node %ld: future not ended",
          (long)(c - nodes));
    weft_outcome_t want = actual_outcome(c);
    weft_outcome_t got = weft_future_outcome(f);
    CHECK(got == want, "node %ld: future %s, body says %s", (long)(c - nodes),
          weft_outcome_name(got), weft_outcome_name(want));
    if (atomic_load(&c->ran) == 0) {
        CHECK(!weft_future_has_started(f), "node %ld: never ran but started%s%s",
              (long)(c - nodes), "", "");
    }
    if (want == WEFT_OUTCOME_SUCCEEDED) {
        weft_value_t v = {.i64 = -1};
        weft_future_value(f, &v);
        CHECK(v.i64 == c->value, "node %ld: value %lld want %lld",
              (long)(c - nodes), (long long)v.i64, (long long)c->value);
    }
    if (want == WEFT_OUTCOME_FAILED) {
        CHECK(weft_future_status(f) == c->ret, "node %ld: status %d want %d",
              (long)(c - nodes), (int)weft_future_status(f), (int)c->ret);
    }
}

/* Ledger entry r of child c. */
static void
check_entry(struct node *c, const weft_child_result_t *r, bool reason_is_tok)
{
    weft_outcome_t want = actual_outcome(c);
    c_ledger_checked++;
    CHECK(r->outcome == want, "node %ld: ledger %s, body says %s",
          (long)(c - nodes), weft_outcome_name(r->outcome),
          weft_outcome_name(want));
    CHECK(r->started == (atomic_load(&c->ran) != 0),
          "node %ld: ledger started %d, ran %d", (long)(c - nodes),
          (int)r->started, (int)atomic_load(&c->ran));
    if (want == WEFT_OUTCOME_SUCCEEDED) {
        CHECK(r->value.i64 == c->value, "node %ld: ledger value %lld want %lld",
              (long)(c - nodes), (long long)r->value.i64, (long long)c->value);
    }
    if (r->cancelled_by_combinator) {
        c_by_comb++;
        CHECK(r->outcome == WEFT_OUTCOME_CANCELLED,
              "node %ld: cancelled_by_combinator on a %s child%s",
              (long)(c - nodes), weft_outcome_name(r->outcome), "");
        CHECK(!reason_is_tok,
              "node %ld: cancelled_by_combinator but the reason is the "
              "leaf's own token's%s%s",
              (long)(c - nodes), "", "");
    }
}

static void
check_comb(struct node *n)
{
    size_t nch = (size_t)n->nch;
    int S = 0, F = 0, Cext = 0, Cby = 0;
    for (int i = 0; i < n->nch; i++) {
        struct node *c = n->ch[i];
        check_child_future(c);
        weft_child_result_t r;
        if (weft_combine_child(n->comb, (size_t)i, &r) != WEFT_OK) {
            failf("weft_combine_child %d", i);
            continue;
        }
        CHECK(r.future == c->fut, "node %ld: ledger future %s%s",
              (long)(n - nodes), "", "");
        check_entry(c, &r, r.error != NULL && r.error == leaf_reason);
        switch (r.outcome) {
        case WEFT_OUTCOME_SUCCEEDED:
            S++;
            break;
        case WEFT_OUTCOME_FAILED:
            F++;
            break;
        case WEFT_OUTCOME_CANCELLED:
            if (r.cancelled_by_combinator) {
                Cby++;
            } else {
                Cext++;
            }
            break;
        default:
            failf("node %ld: child %d pending at the end",
                  (long)(n - nodes), i);
        }
    }
    weft_outcome_t oc = weft_future_outcome(n->comb);
    size_t d = weft_combine_decider(n->comb);
    long id = (long)(n - nodes);
    if (oc == WEFT_OUTCOME_CANCELLED) {
        /* Only the caller (or, for any, a cancelled decider) cancels. */
        bool ok = n->caller_cancelled ||
                  (n->kind == K_ANY && d < nch &&
                   actual_outcome(n->ch[d]) == WEFT_OUTCOME_CANCELLED);
        CHECK(ok, "node %ld (%s): CANCELLED but its caller was not%s", id,
              kind_names[n->kind], "");
    }
    switch (n->kind) {
    case K_GATHER:
        CHECK((oc == WEFT_OUTCOME_SUCCEEDED) == (S == n->nch) ||
                  oc == WEFT_OUTCOME_CANCELLED,
              "node %ld gather: %s with %d successes", id,
              weft_outcome_name(oc), S);
        if (oc == WEFT_OUTCOME_FAILED) {
            CHECK(F + Cext >= 1 && d < nch &&
                      (actual_outcome(n->ch[d]) != WEFT_OUTCOME_SUCCEEDED),
                  "node %ld gather: failed, decider %ld, failures %ld", id,
                  (long)d, (long)(F + Cext));
        }
        break;
    case K_SETTLED:
        CHECK(oc != WEFT_OUTCOME_FAILED, "node %ld settled: %s%s", id,
              weft_outcome_name(oc), "");
        if (oc == WEFT_OUTCOME_SUCCEEDED) {
            CHECK(Cby == 0, "node %ld settled: cancelled %ld children%s", id,
                  (long)Cby, "");
        }
        break;
    case K_ANY:
    case K_FIRST:
        if (oc == WEFT_OUTCOME_SUCCEEDED) {
            CHECK(d < nch && actual_outcome(n->ch[d]) ==
                                 WEFT_OUTCOME_SUCCEEDED,
                  "node %ld %s: decider %ld did not succeed", id,
                  kind_names[n->kind], (long)d);
            if (d < nch) {
                weft_value_t v = {.i64 = -1};
                weft_future_value(n->comb, &v);
                CHECK(v.i64 == n->ch[d]->value,
                      "node %ld: value %lld, decider's %lld", id,
                      (long long)v.i64, (long long)n->ch[d]->value);
            }
        }
        if (n->kind == K_FIRST && oc == WEFT_OUTCOME_FAILED) {
            CHECK(S == 0, "node %ld first_success: failed with %ld "
                          "successes%s",
                  id, (long)S, "");
        }
        if (n->kind == K_ANY && oc == WEFT_OUTCOME_FAILED) {
            CHECK(d < nch && actual_outcome(n->ch[d]) !=
                                 WEFT_OUTCOME_SUCCEEDED,
                  "node %ld any: failed, decider %ld succeeded%s", id,
                  (long)d, "");
        }
        break;
    case K_QUORUM:
        if (oc == WEFT_OUTCOME_SUCCEEDED) {
            CHECK((size_t)S >= n->k, "node %ld quorum: %ld of %ld", id,
                  (long)S, (long)n->k);
        }
        if (oc == WEFT_OUTCOME_FAILED) {
            CHECK((size_t)S < n->k, "node %ld quorum: failed with %ld of %ld",
                  id, (long)S, (long)n->k);
        }
        break;
    default:
        break;
    }
    weft_errgroup_t *eg = NULL;
    weft_status_t es = weft_combine_errors(n->comb, &eg);
    if (es != WEFT_OK) {
        failf("weft_combine_errors at the end");
    } else {
        size_t cnt = weft_errgroup_leaf_count(eg);
        CHECK(cnt >= (size_t)F && cnt <= (size_t)(F + Cext),
              "node %ld (%s, %s, decider %ld, depth %d): %ld errors for %d "
              "failed and %d externally cancelled children",
              id, kind_names[n->kind], weft_outcome_name(oc), (long)d,
              n->depth, (long)cnt, F, Cext);
        if (!(cnt >= (size_t)F && cnt <= (size_t)(F + Cext)) &&
            round_bad <= 5) {
            fprintf(stderr, "  the group: ");
            weft_errgroup_print(eg, stderr);
        }
        weft_errgroup_release(eg);
    }
}

static void
check_group(struct node *n)
{
    int F = 0;
    long id = (long)(n - nodes);
    for (int i = 0; i < n->nch; i++) {
        struct node *c = n->ch[i];
        check_entry(c, &n->gl[i], n->gl_reason_is_tok[i]);
        if (n->gl[i].outcome == WEFT_OUTCOME_FAILED) {
            F++;
        }
        if (n->gl[i].outcome == WEFT_OUTCOME_PENDING) {
            failf("group child %d pending after join", i);
        }
    }
    weft_status_t js = n->join_status;
    if (js == WEFT_OK) {
        CHECK(F == 0, "node %ld group: join OK with %ld failures%s", id,
              (long)F, "");
    } else if (js == WEFT_ECANCELED) {
        CHECK(F == 0, "node %ld group: join ECANCELED with %ld failures%s", id,
              (long)F, "");
    } else {
        CHECK(F >= 1, "node %ld group: join %ld without a failure%s", id,
              (long)js, "");
    }
    size_t cnt = weft_errgroup_leaf_count(n->gerrs);
    CHECK(cnt == (size_t)F, "node %ld group: %ld errors, %ld failures", id,
          (long)cnt, (long)F);
    if (F > 0 && n->gerrs != NULL) {
        weft_error_t *first = NULL;
        weft_errgroup_first_leaf(n->gerrs, &first);
        CHECK(weft_error_status(first) == (int)js,
              "node %ld group: join %ld, first error %ld", id, (long)js,
              (long)weft_error_status(first));
    }
}

/* Exactly-once accounting and the checks of n's subtree. */
static void
check_tree(struct node *n, bool is_root)
{
    long id = (long)(n - nodes);
    unsigned ran = atomic_load(&n->ran), rel = atomic_load(&n->released);
    bool spawned = atomic_load(&n->spawned) != 0;
    if (!is_root) {
        CHECK(ran <= 1, "node %ld ran %ld times%s", id, (long)ran, "");
        CHECK(rel == (spawned ? 1u : 0u), "node %ld: %ld release hooks%s", id,
              (long)rel, "");
        if (!spawned || ran == 0) {
            /* Nothing below it may have been spawned. */
            for (int i = 0; i < n->nch; i++) {
                CHECK(!atomic_load(&n->ch[i]->spawned),
                      "node %ld: child %ld of an unrun node spawned%s", id,
                      (long)i, "");
            }
        }
    }
    if (n->depth == 0) {
        c_leaves++;
        c_leaf_spawned += spawned;
        if (ran) {
            c_leaf_ran++;
        } else if (spawned) {
            c_never_started++;
        }
        if (spawned) {
            weft_outcome_t o = actual_outcome(n);
            c_leaf_ok += o == WEFT_OUTCOME_SUCCEEDED;
            c_leaf_failed += o == WEFT_OUTCOME_FAILED;
            c_leaf_cancelled += o == WEFT_OUTCOME_CANCELLED;
            if (n->plan == P_CANCEL_AFTER && ran &&
                n->ret != WEFT_ECANCELED) {
                CHECK(o == WEFT_OUTCOME_SUCCEEDED,
                      "leaf %ld: cancelled after its work, ended %s%s", id,
                      weft_outcome_name(o), "");
            }
            if (n->plan == P_CANCEL_BEFORE && n->parent->kind != K_GROUP) {
                CHECK(ran == 0, "leaf %ld: token cancelled before the spawn, "
                                "yet it ran%s%s",
                      id, "", "");
            }
        }
        return;
    }
    c_tasks += spawned;
    if (n->made) {
        if (n->kind == K_GROUP) {
            check_group(n);
        } else {
            check_comb(n);
        }
    }
    for (int i = 0; i < n->nch; i++) {
        check_tree(n->ch[i], false);
    }
}

static void
free_tree(struct node *n, bool is_root)
{
    for (int i = 0; i < n->nch; i++) {
        free_tree(n->ch[i], false);
    }
    if (is_root && n->fut != NULL) {
        weft_future_release(n->fut);
    }
    if (n->comb != NULL) {
        if (!n->adopt) {
            for (int i = 0; i < n->nch; i++) {
                if (n->ch[i]->fut != NULL) {
                    weft_future_release(n->ch[i]->fut);
                }
            }
        }
        weft_future_release(n->comb);
    } else {
        /* A combinator never made: the spawned children are ours. */
        for (int i = 0; i < n->nch; i++) {
            if (n->ch[i]->fut != NULL) {
                weft_future_release(n->ch[i]->fut);
            }
        }
    }
    if (n->gerrs != NULL) {
        weft_errgroup_release(n->gerrs);
    }
    if (n->tok != NULL) {
        weft_token_release(n->tok);
    }
}

/* ---- a round ------------------------------------------------------------- */

static int
run_round(weft_executor_t *ex, long round, uint64_t rs)
{
    cur_round = round;
    round_bad = 0;
    nnodes = 0;
    atomic_store(&tree_spawned, 0);
    atomic_store(&tree_released, 0);
    struct node *root = new_node(DEPTH, NULL, &rs);
    /* The root is run by the main thread, not spawned. */
    c_rounds_by_kind[root->kind]++;
    weft_token_t *rtok = NULL;
    if (weft_token_create(NULL, &rtok) != WEFT_OK) {
        abort();
    }
    /* Leaves whose token is cancelled before the round; async ones. */
    struct node *async[MAXNODES];
    int nasync = 0;
    for (int i = 0; i < nnodes; i++) {
        if (nodes[i].depth == 0 && nodes[i].plan == P_CANCEL_BEFORE) {
            weft_token_cancel(nodes[i].tok, leaf_reason);
        }
        if (nodes[i].depth == 0 && nodes[i].plan == P_CANCEL_ASYNC) {
            async[nasync++] = &nodes[i];
        }
    }
    uint32_t r = rnd(&rs, 100);
    bool cancel_root = r < 5;
    bool cancel_mid = r >= 5 && r < 10 && root->kind != K_GROUP;

    int64_t v = 0;
    weft_status_t st = WEFT_OK;
    bool root_is_task = false;
    if (root->kind == K_GROUP) {
        /* A group root runs as a task under rtok: the main thread cancels
         * things while it runs, then waits for it. */
        root_is_task = true;
        weft_spawn_opts_t so = {.release = node_release, .name = "root",
                                .token = rtok};
        atomic_store(&root->spawned, 1);
        atomic_fetch_add(&tree_spawned, 1);
        if (weft_spawn_ex(ex, &so, node_body, root, &root->fut) != WEFT_OK) {
            abort();
        }
        for (int i = 0; i < nasync; i++) {
            spin(rnd(&rs, 20000));
            weft_token_cancel(async[i]->tok, leaf_reason);
        }
        if (cancel_root) {
            c_cancel_root++;
            spin(rnd(&rs, 40000));
            weft_token_cancel(rtok, NULL);
        }
        if (r >= 5 && r < 10) {
            c_cancel_mid++;
            spin(rnd(&rs, 40000));
            weft_future_cancel(root->fut, NULL);
        }
        st = weft_future_wait(root->fut);
    } else if (nasync == 0 && !cancel_root && !cancel_mid) {
        /* The main thread runs the root combinator to its end. */
        st = run_node(root, ex, rtok, NULL, &v);
    } else {
        /* Spawn the root's children, then cancel things at random moments
         * while they run, then make the combinator and wait. */
        weft_future_t *f[MAXF];
        for (int i = 0; i < root->nch; i++) {
            struct node *c = root->ch[i];
            weft_spawn_opts_t so = {.release = node_release, .name = "mid"};
            atomic_store(&c->spawned, 1);
            atomic_fetch_add(&tree_spawned, 1);
            if (weft_spawn_ex(ex, &so, node_body, c, &f[i]) != WEFT_OK) {
                abort();
            }
            c->fut = f[i];
        }
        if (make_combinator(root, ex, f, rtok) != WEFT_OK) {
            abort();
        }
        root->made = true;
        for (int i = 0; i < nasync; i++) {
            spin(rnd(&rs, 20000));
            weft_token_cancel(async[i]->tok, leaf_reason);
        }
        if (cancel_root) {
            c_cancel_root++;
            spin(rnd(&rs, 40000));
            weft_token_cancel(rtok, NULL);
        }
        if (cancel_mid) {
            c_cancel_mid++;
            spin(rnd(&rs, 40000));
            weft_future_cancel(f[rnd(&rs, (uint32_t)root->nch)], NULL);
        }
        st = weft_future_wait(root->comb);
        root->caller_cancelled = weft_token_is_cancelled(rtok);
    }
    (void)st;
    (void)v;
    /* Wait until every spawned task has ended (any() ends early). */
    uint64_t guard = weft_clock_now_ns() + HANG_NS;
    while (atomic_load(&tree_released) != atomic_load(&tree_spawned)) {
        if (weft_clock_now_ns() > guard) {
            failf("hang: %u of %u tasks ended", atomic_load(&tree_released),
                  atomic_load(&tree_spawned));
            return 1;
        }
        sched_yield();
    }
    /* Release hooks may run before a future is published as ended: wait
     * for every kept future too. */
    for (int i = 0; i < nnodes; i++) {
        if (nodes[i].fut != NULL) {
            weft_future_wait(nodes[i].fut);
        }
    }
    if (root_is_task) {
        c_root_outcome[weft_future_outcome(root->fut)]++;
        check_child_future(root);
    } else if (root->comb != NULL) {
        c_root_outcome[weft_future_outcome(root->comb)]++;
    }
    check_tree(root, !root_is_task);
    free_tree(root, true);
    weft_token_release(rtok);
    return round_bad != 0;
}

int
main(void)
{
    seed = stress_seed();
    long rounds = stress_rounds(DEFAULT_ROUNDS);
    printf("stress_combine: seed %llu, %ld rounds per executor\n",
           (unsigned long long)seed, rounds);
    fflush(stdout);

    int64_t live0 = weft__alloc_live();
    long passed = 0, failed = 0;
    static const unsigned int workers[] = {1, 2, 4};
    for (size_t w = 0; w < 3; w++) {
        char what[32];
        snprintf(what, sizeof(what), "%u workers", workers[w]);
        cur_what = what;
        weft_executor_config_t cfg;
        weft_executor_config_init(&cfg);
        cfg.num_workers = workers[w];
        weft_executor_t *ex = NULL;
        if (weft_executor_create(&cfg, &ex) != WEFT_OK ||
            weft_error_create(&leaf_reason, WEFT_EUSER + 2,
                              "leaf token cancelled") != WEFT_OK) {
            fprintf(stderr, "setup failed\n");
            return 1;
        }
        cur_ex = ex;
        for (long r = 0; r < rounds; r++) {
            uint64_t rs = stress_round_seed(seed, r, w);
            if (rs == 0) {
                rs = 1;
            }
            if (run_round(ex, r, rs) == 0) {
                passed++;
            } else {
                failed++;
            }
        }
        weft_error_release(leaf_reason);
        weft_status_t ds = weft_executor_destroy(ex);
        if (ds != WEFT_OK) {
            fprintf(stderr, "FAIL %s: destroy %s (a future was leaked)\n",
                    what, weft_status_name(ds));
            failed++;
        }
        failed += stress_leak_check(live0, what, seed);
        printf("  %-9s done: %ld passed, %ld failed so far\n", what, passed,
               failed);
        fflush(stdout);
    }
    printf("leaves: %llu planned, %llu spawned, %llu ran, %llu never "
           "started; %llu succeeded, %llu failed, %llu cancelled\n",
           (unsigned long long)c_leaves, (unsigned long long)c_leaf_spawned,
           (unsigned long long)c_leaf_ran,
           (unsigned long long)c_never_started,
           (unsigned long long)c_leaf_ok, (unsigned long long)c_leaf_failed,
           (unsigned long long)c_leaf_cancelled);
    printf("tasks above the leaves: %llu; ledger entries checked: %llu "
           "(%llu cancelled by their combinator)\n",
           (unsigned long long)c_tasks, (unsigned long long)c_ledger_checked,
           (unsigned long long)c_by_comb);
    printf("root kinds:");
    for (int k = 0; k < K_NKINDS; k++) {
        printf(" %s %llu", kind_names[k],
               (unsigned long long)c_rounds_by_kind[k]);
    }
    printf("\nroot outcomes: succeeded %llu, failed %llu, cancelled %llu; "
           "root token cancelled %llu, mid future cancelled %llu\n",
           (unsigned long long)c_root_outcome[1],
           (unsigned long long)c_root_outcome[2],
           (unsigned long long)c_root_outcome[3],
           (unsigned long long)c_cancel_root,
           (unsigned long long)c_cancel_mid);
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
