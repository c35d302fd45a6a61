/*
 * fuzz_deadline.c - libFuzzer target: cancellation-token trees with
 * deadlines, on a virtual clock, against a reference model.
 *
 * The script makes root tokens on a virtual clock (weft__token_create_root)
 * or on the real monotonic clock (public API with a NULL parent), children
 * with and without deadlines, shielded tokens; moves the virtual clock
 * (advance and set, up to UINT64_MAX); cancels tokens with a reason, a
 * NULL reason, or by letting deadlines pass; observes them (is_cancelled,
 * check, reason); reads deadlines; registers and deregisters callbacks;
 * and releases tokens in any order. Deadlines are picked around the edges
 * of the arithmetic: 0, now - 1, now, now + 1, far future, UINT64_MAX - 1,
 * WEFT_DEADLINE_NONE (UINT64_MAX) and arbitrary 64-bit values. Real-clock
 * deadlines are only ever in the past or an hour ahead, so nothing depends
 * on how fast the script runs.
 *
 * The model applies the documented rules, lazily as the library does:
 * effective deadline = min(own, parent's) (a shielded token: its own);
 * a token is cancelled when an observing call finds now >= its effective
 * deadline (reason WEFT_EDEADLINE) or when it or a non-shielded ancestor is
 * cancelled (the first reason wins, except that a cancellation reaching a
 * token whose deadline has passed records the deadline reason); a token
 * born past its deadline or under a cancelled parent is cancelled at
 * birth. Checked after every step: is_cancelled, check, reason (pointer or
 * code), weft_token_deadline, weft__token_next_deadline, is_shielded, the
 * status of every cancel (OK / EALREADY), each callback running exactly
 * once with the model's reason (at registration when already cancelled),
 * callbacks of a token in registration order and before those of its
 * descendants, deregister's OK / EALREADY; and that nothing leaks.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cancel.h>
#include <weft/error.h>

#include "primitives/alloc.h"
#include "primitives/cancel.h"
#include "primitives/clock.h"

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_deadline: check failed: %s (line %d)\n",   \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define MAX_TOKENS 48
#define MAX_REGS 64
#define MAX_REASONS 6
#define HOUR_NS (3600ull * 1000000000ull)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rd {
    const uint8_t *p;
    size_t n;
};

static uint8_t
rd_u8(struct rd *r)
{
    if (r->n == 0) {
        return 0;
    }
    r->n--;
    return *r->p++;
}

static uint64_t
rd_u64(struct rd *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | rd_u8(r);
    }
    return v;
}

struct m_tok {
    weft_token_t *t;   /* our reference; NULL once released */
    weft_token_t *ptr; /* identity */
    int parent;        /* model index, -1 for none */
    bool shielded;
    bool real_clock;
    uint64_t eff; /* effective deadline */
    bool cancelled;
    weft_error_t *reason; /* explicit reason object, or NULL */
    int reason_code;
};

struct m_reg {
    weft_cancel_cb_t *cb; /* NULL once deregistered */
    int tok;
    int expect_runs; /* model */
    weft_error_t *expect_reason;
    int expect_code;
    int runs; /* actual */
    weft_error_t *seen_reason;
    long seq; /* when it ran (log position) */
    bool immediate; /* ran inside weft_token_register (already cancelled) */
};

static struct weft__clock vclock;
static uint64_t vnow;
static struct m_tok toks[MAX_TOKENS];
static int ntoks;
static struct m_reg regs[MAX_REGS];
static int nregs;
static weft_error_t *reasons[MAX_REASONS];
static long seq_now;

static void
on_cancel(void *arg, weft_error_t *reason)
{
    struct m_reg *g = arg;
    g->runs++;
    g->seen_reason = reason;
    g->seq = seq_now++;
}

static uint64_t
tok_now(const struct m_tok *m)
{
    return m->real_clock ? weft__clock_now_ns() : vnow;
}

static bool
m_past(const struct m_tok *m)
{
    return m->eff != WEFT_DEADLINE_NONE && tok_now(m) >= m->eff;
}

/* Model: cancel token u and its non-shielded descendants. */
static void
m_cancel_tree(int u, weft_error_t *reason, int code)
{
    struct m_tok *m = &toks[u];
    if (m->cancelled) {
        return;
    }
    if (m_past(m)) {
        reason = NULL;
        code = WEFT_EDEADLINE;
    }
    m->cancelled = true;
    m->reason = reason;
    m->reason_code = code;
    for (int i = 0; i < nregs; i++) {
        if (regs[i].tok == u && regs[i].cb != NULL &&
            regs[i].expect_runs == 0) {
            regs[i].expect_runs = 1;
            regs[i].expect_reason = reason;
            regs[i].expect_code = code;
        }
    }
    for (int c = 0; c < ntoks; c++) {
        if (toks[c].parent == u && !toks[c].shielded) {
            m_cancel_tree(c, reason, code);
        }
    }
}

/* Model of an observing call on u. */
static void
m_observe(int u)
{
    if (!toks[u].cancelled && m_past(&toks[u])) {
        m_cancel_tree(u, NULL, WEFT_EDEADLINE);
    }
}

/* Is a an ancestor of c through links that propagate cancellation? */
static bool
is_ancestor(int a, int c)
{
    int x = c;
    while (!toks[x].shielded && toks[x].parent >= 0) {
        x = toks[x].parent;
        if (x == a) {
            return true;
        }
    }
    return false;
}

/* Every callback ran as the model says; runs of this step are ordered. */
static void
check_regs(long step_start)
{
    for (int i = 0; i < nregs; i++) {
        struct m_reg *g = &regs[i];
        CHECK(g->runs == g->expect_runs);
        if (g->runs == 1) {
            CHECK(weft_error_status(g->seen_reason) == g->expect_code);
            if (g->expect_reason != NULL) {
                CHECK(g->seen_reason == g->expect_reason);
            }
        }
        if (g->runs != 1 || g->seq < step_start || g->immediate) {
            continue;
        }
        /* Among the callbacks one cancellation ran (a registration on a
         * token that was already cancelled runs on its own, after any
         * cancellation its own observation triggered): */
        for (int j = 0; j < nregs; j++) {
            struct m_reg *h = &regs[j];
            if (j == i || h->runs != 1 || h->seq < step_start ||
                h->immediate) {
                continue;
            }
            /* Same token: registration order. */
            if (h->tok == g->tok && j < i) {
                CHECK(h->seq < g->seq);
            }
            /* An ancestor's callbacks run before a descendant's. */
            if (is_ancestor(h->tok, g->tok)) {
                CHECK(h->seq < g->seq);
            }
        }
    }
}

/* Check everything observable of token u (and observe it). */
static void
check_token(int u)
{
    struct m_tok *m = &toks[u];
    weft_token_t *t = m->t;
    uint64_t d = 0;
    CHECK(weft_token_deadline(t, &d) == WEFT_OK);
    CHECK(d == m->eff);
    CHECK(weft_token_is_shielded(t) == m->shielded);
    /* next_deadline does not observe: NONE once cancelled, else eff. */
    CHECK(weft__token_next_deadline(t) ==
          (m->cancelled ? WEFT_DEADLINE_NONE : m->eff));
    m_observe(u);
    CHECK(weft_token_is_cancelled(t) == m->cancelled);
    CHECK(weft_token_check(t) == (m->cancelled ? WEFT_ECANCELED : WEFT_OK));
    weft_error_t *why = NULL;
    weft_status_t st = weft_token_reason(t, &why);
    if (m->cancelled) {
        CHECK(st == WEFT_OK);
        CHECK(weft_error_status(why) == m->reason_code);
        if (m->reason != NULL) {
            CHECK(why == m->reason);
        }
        CHECK(weft__token_next_deadline(t) == WEFT_DEADLINE_NONE);
    } else {
        CHECK(st == WEFT_ESTATE && why == NULL);
    }
}

/* A deadline for a token on the virtual clock. */
static uint64_t
pick_virtual_deadline(struct rd *r)
{
    uint8_t k = rd_u8(r) % 12;
    switch (k) {
    case 0:
        return WEFT_DEADLINE_NONE;
    case 1:
        return 0;
    case 2:
        return vnow > 0 ? vnow - 1 : 0;
    case 3:
        return vnow;
    case 4:
        return vnow < UINT64_MAX ? vnow + 1 : vnow;
    case 5: {
        uint64_t dl = rd_u8(r);
        return vnow <= UINT64_MAX - dl ? vnow + dl : UINT64_MAX;
    }
    case 6:
        return UINT64_MAX - 1;
    case 7:
        return UINT64_MAX - 1 - rd_u8(r);
    case 8:
        return rd_u64(r);
    default: {
        uint64_t dl = (uint64_t)1 << (rd_u8(r) % 64);
        return vnow <= UINT64_MAX - dl ? vnow + dl : UINT64_MAX;
    }
    }
}

/* A deadline for a token on the real clock: past, or an hour ahead. */
static uint64_t
pick_real_deadline(struct rd *r)
{
    uint64_t now = weft__clock_now_ns();
    switch (rd_u8(r) % 7) {
    case 0:
        return WEFT_DEADLINE_NONE;
    case 1:
        return 0;
    case 2:
        return 1;
    case 3:
        return now - 1;
    case 4:
        return now + HOUR_NS;
    case 5:
        return UINT64_MAX - 1;
    default:
        return now - rd_u8(r);
    }
}

static int
pick_token(struct rd *r)
{
    if (ntoks == 0) {
        return -1;
    }
    int u = rd_u8(r) % ntoks;
    return toks[u].t != NULL ? u : -1;
}

/* Create a token: kind 0 virtual root, 1 real root, 2 child, 3 shielded
 * child (or a real-clock shielded root when no parent is picked). */
static void
op_create(struct rd *r, int kind)
{
    if (ntoks == MAX_TOKENS) {
        return;
    }
    int p = kind >= 2 ? pick_token(r) : -1;
    bool real = kind == 1 || (p >= 0 ? toks[p].real_clock : kind >= 2);
    uint64_t own = real ? pick_real_deadline(r) : pick_virtual_deadline(r);
    if (kind == 2 && (rd_u8(r) & 1)) {
        own = WEFT_DEADLINE_NONE; /* weft_token_create() */
    }
    if (kind == 2 && p < 0) {
        return;
    }
    weft_token_t *t = NULL;
    weft_status_t st;
    bool shielded = kind == 3;
    switch (kind) {
    case 0:
        st = weft__token_create_root(&vclock, own, &t);
        break;
    case 1:
        st = weft_token_create_with_deadline(NULL, own, &t);
        break;
    case 2:
        st = own == WEFT_DEADLINE_NONE
                 ? weft_token_create(toks[p].t, &t)
                 : weft_token_create_with_deadline(toks[p].t, own, &t);
        break;
    default:
        st = weft_token_create_shielded(p >= 0 ? toks[p].t : NULL, own, &t);
        break;
    }
    CHECK(st == WEFT_OK && t != NULL);
    int u = ntoks++;
    struct m_tok *m = &toks[u];
    memset(m, 0, sizeof(*m));
    m->t = t;
    m->ptr = t;
    m->parent = p;
    m->shielded = shielded;
    m->real_clock = real;
    m->eff = own;
    if (p >= 0 && !shielded && toks[p].eff < own) {
        m->eff = toks[p].eff;
    }
    /* Birth: past its deadline, else under a cancelled parent. */
    if (m_past(m)) {
        m->cancelled = true;
        m->reason_code = WEFT_EDEADLINE;
    }
    if (p >= 0 && !shielded) {
        m_observe(p);
        if (!m->cancelled && toks[p].cancelled) {
            m->cancelled = true;
            m->reason = toks[p].reason;
            m->reason_code = toks[p].reason_code;
        }
    }
    check_token(u);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd r = {data, size};
    int64_t live = weft__alloc_live();
    vnow = rd_u64(&r) >> (rd_u8(&r) % 64);
    weft__clock_init_virtual(&vclock, vnow);
    ntoks = 0;
    nregs = 0;
    seq_now = 0;
    for (int i = 0; i < MAX_REASONS; i++) {
        CHECK(weft_error_create(&reasons[i], 64 + i, "reason %d", i) ==
              WEFT_OK);
    }

    while (r.n > 0) {
        long step = seq_now;
        uint8_t op = rd_u8(&r);
        switch (op % 12) {
        case 0:
        case 1:
        case 2:
        case 3:
            op_create(&r, op % 12);
            break;
        case 4: { /* advance the virtual clock */
            uint8_t k = rd_u8(&r);
            uint64_t dl = k < 128 ? k : (uint64_t)1 << (k % 64);
            if (dl > UINT64_MAX - vnow) {
                dl = UINT64_MAX - vnow; /* the test clock must not wrap */
            }
            weft__clock_advance(&vclock, dl);
            vnow += dl;
            CHECK(weft__clock_read(&vclock) == vnow);
            break;
        }
        case 5: { /* set the virtual clock (never backwards) */
            uint64_t to = rd_u64(&r);
            if (rd_u8(&r) & 1) {
                to = UINT64_MAX - (to & 0xff);
            }
            if (to < vnow) {
                break;
            }
            weft__clock_set(&vclock, to);
            vnow = to;
            CHECK(weft__clock_read(&vclock) == vnow);
            break;
        }
        case 6: { /* cancel */
            int u = pick_token(&r);
            uint8_t k = rd_u8(&r) % (MAX_REASONS + 1);
            if (u < 0) {
                break;
            }
            weft_error_t *reason = k < MAX_REASONS ? reasons[k] : NULL;
            int code = k < MAX_REASONS ? 64 + k : WEFT_ECANCELED;
            weft_status_t want;
            if (toks[u].cancelled) {
                want = WEFT_EALREADY;
            } else if (m_past(&toks[u])) {
                want = WEFT_EALREADY; /* the deadline got there first */
                m_cancel_tree(u, NULL, WEFT_EDEADLINE);
            } else {
                want = WEFT_OK;
                m_cancel_tree(u, reason, code);
            }
            CHECK(weft_token_cancel(toks[u].t, reason) == want);
            check_regs(step);
            check_token(u);
            break;
        }
        case 7:
        case 8: { /* observe */
            int u = pick_token(&r);
            if (u >= 0) {
                check_token(u);
            }
            break;
        }
        case 9: { /* register a callback */
            int u = pick_token(&r);
            if (u < 0 || nregs == MAX_REGS) {
                break;
            }
            struct m_reg *g = &regs[nregs++];
            memset(g, 0, sizeof(*g));
            g->tok = u;
            m_observe(u);
            if (toks[u].cancelled) {
                g->immediate = true;
                g->expect_runs = 1;
                g->expect_reason = toks[u].reason;
                g->expect_code = toks[u].reason_code;
            }
            g->cb = (weft_cancel_cb_t *)1; /* live, for m_cancel_tree */
            weft_cancel_cb_t *cb = NULL;
            CHECK(weft_token_register(toks[u].t, on_cancel, g, &cb) ==
                  WEFT_OK);
            CHECK(cb != NULL);
            g->cb = cb;
            break;
        }
        case 10: { /* deregister */
            if (nregs == 0) {
                break;
            }
            struct m_reg *g = &regs[rd_u8(&r) % nregs];
            if (g->cb == NULL) {
                break;
            }
            weft_status_t st = weft_token_deregister(g->cb);
            CHECK(st == (g->expect_runs ? WEFT_EALREADY : WEFT_OK));
            g->cb = NULL;
            break;
        }
        case 11: { /* release our reference */
            int u = pick_token(&r);
            if (u >= 0) {
                CHECK(weft_token_release(toks[u].t) == WEFT_OK);
                toks[u].t = NULL;
            }
            break;
        }
        }
        check_regs(step);
    }
    /* Observe every token we hold, then let everything go. */
    long step = seq_now;
    for (int u = 0; u < ntoks; u++) {
        if (toks[u].t != NULL) {
            check_token(u);
        }
    }
    check_regs(step);
    for (int i = 0; i < nregs; i++) {
        if (regs[i].cb != NULL) {
            weft_status_t st = weft_token_deregister(regs[i].cb);
            CHECK(st == (regs[i].expect_runs ? WEFT_EALREADY : WEFT_OK));
        }
    }
    for (int u = 0; u < ntoks; u++) {
        if (toks[u].t != NULL) {
            CHECK(weft_token_release(toks[u].t) == WEFT_OK);
        }
    }
    for (int i = 0; i < MAX_REASONS; i++) {
        weft_error_release(reasons[i]);
    }
    CHECK(weft__alloc_live() == live);
    return 0;
}
