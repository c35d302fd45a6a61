/*
 * fuzz_errgroup.c - libFuzzer target: error groups built, nested, split,
 * flattened, searched and printed from byte scripts, against a model.
 *
 * The script is a sequence of operations, each an opcode byte and its
 * argument bytes (missing bytes read as 0): make a group or an error (with
 * a message over a small alphabet, a code from a fixed set, optionally a
 * cause), add an error or a group with a key (small keys collide on
 * purpose; WEFT_ERRGROUP_APPEND too), build a chain of nested groups up to
 * and past WEFT_ERRGROUP_MAX_DEPTH, flatten, split, subgroup, find,
 * first_leaf, format into exact-size heap buffers, print, release, and arm
 * the allocation injector so the next allocations fail.
 *
 * The model keeps each group's entries (sorted by key, ties in insertion
 * order), frozen flag, depth and leaf count. Checked: every status against
 * the model (ENOMEM only while the injector is armed, and then nothing
 * changed); entries, counts and leaf counts after every change; flatten
 * gives the depth-first errors keyed 0..n-1; split calls the predicate once
 * per error and keeps the shape minus empty groups, subgroup equals the
 * match side, find and first_leaf return the depth-first first match;
 * format never writes past n bytes (ASan: the buffer is exactly n bytes),
 * returns the full length whatever n is, writes a NUL-terminated prefix of
 * the full text, and the full text's header and nested headers say the
 * model's leaf counts and holds exactly one error line per leaf; print
 * writes the same text; error_format likewise; nothing leaks.
 */
#define _GNU_SOURCE 1

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/errgroup.h>
#include <weft/error.h>

#include "primitives/alloc.h"

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz_errgroup: check failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define MAX_GROUPS 64
#define MAX_ERRORS 64
#define MAX_ENTRIES 96
#define MAX_CHAIN 300

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

/* Model of an entry: an error index or a group index. */
struct m_entry {
    uint64_t key;
    bool is_group;
    int idx;
};

struct m_group {
    weft_errgroup_t *g; /* NULL once our reference is gone */
    weft_errgroup_t *ptr; /* identity, kept for entry checks */
    bool frozen;
    unsigned int depth;
    size_t leaves;
    int n;
    struct m_entry ents[MAX_ENTRIES];
};

struct m_error {
    weft_error_t *e;   /* NULL once our reference is gone */
    weft_error_t *ptr; /* identity */
    int code;
};

static struct m_group groups[MAX_GROUPS];
static int ngroups;
static struct m_error errors[MAX_ERRORS];
static int nerrors;
static bool armed; /* the allocation injector may fail calls now */

static const int codes[] = {1,  2,  4,  5,  9,  11, 13,
                            15, 64, 65, 66, 200, 100000};

static void
make_msg(struct rd *r, char *buf, size_t cap)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789 ";
    size_t len = rd_u8(r) % 16;
    if (len >= cap) {
        len = cap - 1;
    }
    for (size_t i = 0; i < len; i++) {
        buf[i] = alpha[rd_u8(r) % (sizeof(alpha) - 1)];
    }
    buf[len] = '\0';
}

static uint64_t
pick_key(struct rd *r)
{
    uint8_t b = rd_u8(r);
    if (b >= 250) {
        return WEFT_ERRGROUP_APPEND;
    }
    if (b >= 240) {
        return WEFT_ERRGROUP_APPEND - 1;
    }
    return b % 8;
}

/* Insert position: after every entry whose key is <= key. */
static int
m_insert_pos(const struct m_group *mg, uint64_t key)
{
    int i = 0;
    while (i < mg->n && mg->ents[i].key <= key) {
        i++;
    }
    return i;
}

static void
m_insert(struct m_group *mg, uint64_t key, bool is_group, int idx)
{
    int pos = m_insert_pos(mg, key);
    memmove(&mg->ents[pos + 1], &mg->ents[pos],
            (size_t)(mg->n - pos) * sizeof(mg->ents[0]));
    mg->ents[pos] = (struct m_entry){key, is_group, idx};
    mg->n++;
}

/* Check one group against its model (entries, count, leaves). */
static void
check_group(int gi)
{
    struct m_group *mg = &groups[gi];
    weft_errgroup_t *g = mg->g;
    CHECK(weft_errgroup_count(g) == (size_t)mg->n);
    CHECK(weft_errgroup_leaf_count(g) == mg->leaves);
    for (int i = 0; i < mg->n; i++) {
        weft_errgroup_entry_t en;
        CHECK(weft_errgroup_entry(g, (size_t)i, &en) == WEFT_OK);
        CHECK(en.key == mg->ents[i].key);
        if (mg->ents[i].is_group) {
            CHECK(en.kind == WEFT_ERRGROUP_GROUP);
            CHECK(en.group == groups[mg->ents[i].idx].ptr);
            CHECK(en.error == NULL);
        } else {
            CHECK(en.kind == WEFT_ERRGROUP_ERROR);
            CHECK(en.error == errors[mg->ents[i].idx].ptr);
            CHECK(en.group == NULL);
        }
    }
    weft_errgroup_entry_t en;
    CHECK(weft_errgroup_entry(g, (size_t)mg->n, &en) == WEFT_ERANGE);
}

/* Depth-first errors of a modelled group. */
static void
m_dfs(int gi, int *out, size_t *n)
{
    const struct m_group *mg = &groups[gi];
    for (int i = 0; i < mg->n; i++) {
        if (mg->ents[i].is_group) {
            m_dfs(mg->ents[i].idx, out, n);
        } else {
            out[(*n)++] = mg->ents[i].idx;
        }
    }
}

/* Depth-first errors of a real group (for split results). */
static void
real_dfs(const weft_errgroup_t *g, weft_error_t **out, size_t *n, size_t cap)
{
    for (size_t i = 0; i < weft_errgroup_count(g); i++) {
        weft_errgroup_entry_t en;
        CHECK(weft_errgroup_entry(g, i, &en) == WEFT_OK);
        if (en.kind == WEFT_ERRGROUP_GROUP) {
            CHECK(weft_errgroup_count(en.group) > 0); /* empty groups drop */
            real_dfs(en.group, out, n, cap);
        } else {
            CHECK(*n < cap);
            out[(*n)++] = en.error;
        }
    }
}

/* The predicate: a bit of a salted code; counts its calls. */
struct pred_ctx {
    unsigned int salt;
    size_t calls;
};

static bool
pred(const weft_error_t *e, void *ctx)
{
    struct pred_ctx *pc = ctx;
    pc->calls++;
    return ((unsigned int)weft_error_status(e) * 2654435761u >> pc->salt) & 1;
}

/* Largest leaf count a flattened group can have here. */
#define MAX_LEAVES (MAX_GROUPS * MAX_ENTRIES)

static int dfs_idx[MAX_LEAVES * 4];
static weft_error_t *dfs_ptr[MAX_LEAVES * 4];

/* Check the printed tree of group gi (full text). */
static void
check_text(int gi, const char *text, size_t len)
{
    CHECK(strlen(text) == len);
    CHECK(len > 0 && text[len - 1] == '\n');
    /* Header: "<msg or error group> (N error[s])". */
    const char *nl = strchr(text, '\n');
    char want[64];
    size_t leaves = groups[gi].leaves;
    snprintf(want, sizeof(want), " (%zu error%s)\n", leaves,
             leaves == 1 ? "" : "s");
    size_t wl = strlen(want);
    CHECK((size_t)(nl + 1 - text) >= wl);
    CHECK(memcmp(nl + 1 - wl, want, wl) == 0);
    /* One error line per leaf: "| WEFT_..." (group and error messages
     * use a lower-case alphabet, so only error lines start that way). */
    size_t err_lines = 0;
    for (const char *p = text; (p = strstr(p, "| ")) != NULL; p += 2) {
        if (strncmp(p + 2, "WEFT_", 5) == 0) {
            err_lines++;
        }
    }
    CHECK(err_lines == leaves);
}

/* format with an n-byte heap buffer, every n the script asks for. */
static void
check_format(struct rd *r, int gi)
{
    weft_errgroup_t *g = groups[gi].g;
    size_t full = weft_errgroup_format(g, NULL, 0);
    char *text = malloc(full + 1);
    CHECK(text != NULL);
    CHECK(weft_errgroup_format(g, text, full + 1) == full);
    check_text(gi, text, full);
    for (int k = 0; k < 3; k++) {
        uint8_t b = rd_u8(r);
        size_t n = b < 128 ? b : (b < 200 ? full + 1 - (b - 128) % 4
                                          : full * (b - 200) / 55);
        if (n > full + 1) {
            n = full + 1;
        }
        char *buf = n > 0 ? malloc(n) : NULL;
        CHECK(n == 0 || buf != NULL);
        if (n > 0) {
            memset(buf, 'x', n);
        }
        CHECK(weft_errgroup_format(g, buf, n) == full);
        if (n > 0) {
            size_t w = n - 1 < full ? n - 1 : full;
            CHECK(buf[w] == '\0');
            CHECK(memcmp(buf, text, w) == 0);
        }
        free(buf);
    }
    /* print writes the same text. */
    char *ms = NULL;
    size_t mlen = 0;
    FILE *fp = open_memstream(&ms, &mlen);
    CHECK(fp != NULL);
    CHECK(weft_errgroup_print(g, fp) == WEFT_OK);
    CHECK(fclose(fp) == 0);
    CHECK(mlen == full && memcmp(ms, text, full) == 0);
    free(ms);
    free(text);
}

static void
check_error_format(struct rd *r, weft_error_t *e)
{
    size_t full = weft_error_format(e, NULL, 0);
    char *text = malloc(full + 1);
    CHECK(text != NULL);
    CHECK(weft_error_format(e, text, full + 1) == full);
    CHECK(strlen(text) == full);
    CHECK(strncmp(text, "WEFT_", 5) == 0);
    CHECK(strchr(text, '\n') == NULL);
    size_t n = rd_u8(r) % (full + 2);
    char *buf = n > 0 ? malloc(n) : NULL;
    CHECK(weft_error_format(e, buf, n) == full);
    if (n > 0) {
        size_t w = n - 1 < full ? n - 1 : full;
        CHECK(buf[w] == '\0');
        CHECK(memcmp(buf, text, w) == 0);
    }
    free(buf);
    free(text);
}

/* Check a split side against the model: the errors of gi that pred puts
 * on `side`, depth-first, with the shape kept. */
static void
check_split_side(int gi, const weft_errgroup_t *res, bool side,
                 unsigned int salt)
{
    size_t n = 0;
    m_dfs(gi, dfs_idx, &n);
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
        struct pred_ctx pc = {salt, 0};
        if (pred(errors[dfs_idx[i]].ptr, &pc) == side) {
            dfs_idx[want++] = dfs_idx[i];
        }
    }
    if (want == 0) {
        CHECK(res == NULL);
        return;
    }
    CHECK(res != NULL);
    CHECK(weft_errgroup_leaf_count(res) == want);
    CHECK(strcmp(weft_errgroup_message(res),
                 weft_errgroup_message(groups[gi].ptr)) == 0);
    size_t got = 0;
    real_dfs(res, dfs_ptr, &got, MAX_LEAVES * 4);
    CHECK(got == want);
    for (size_t i = 0; i < want; i++) {
        CHECK(dfs_ptr[i] == errors[dfs_idx[i]].ptr);
    }
}

/* Pick a group we still hold a reference to, or -1. */
static int
pick_group(struct rd *r)
{
    if (ngroups == 0) {
        return -1;
    }
    int gi = rd_u8(r) % ngroups;
    return groups[gi].g != NULL ? gi : -1;
}

static int
pick_error(struct rd *r)
{
    if (nerrors == 0) {
        return -1;
    }
    int ei = rd_u8(r) % nerrors;
    return errors[ei].e != NULL ? ei : -1;
}

/* A chain of `len` groups, each nested in the next; checks ERANGE at the
 * depth limit. Uses no model slots. */
static void
deep_chain(struct rd *r)
{
    size_t len = (size_t)rd_u8(r) + ((size_t)(rd_u8(r) % 2) << 8);
    if (len > MAX_CHAIN) {
        len = MAX_CHAIN;
    }
    weft_errgroup_t *cur = NULL;
    weft_status_t st = weft_errgroup_create(&cur, "chain %d", 0);
    if (st != WEFT_OK) {
        CHECK(armed && st == WEFT_ENOMEM && cur == NULL);
        return;
    }
    weft_error_t *e = NULL;
    st = weft_error_create(&e, 64, "leaf");
    CHECK(st == WEFT_OK || (armed && st == WEFT_ENOMEM));
    st = weft_errgroup_add_error(cur, 0, e);
    CHECK(st == WEFT_OK || (armed && st == WEFT_ENOMEM));
    size_t leaves = st == WEFT_OK ? 1 : 0;
    weft_error_release(e);
    unsigned int depth = 1;
    for (size_t i = 1; i < len; i++) {
        weft_errgroup_t *up = NULL;
        st = weft_errgroup_create(&up, NULL);
        if (st != WEFT_OK) {
            CHECK(armed && st == WEFT_ENOMEM);
            break;
        }
        st = weft_errgroup_add_group(up, WEFT_ERRGROUP_APPEND, cur);
        if (depth + 1 > WEFT_ERRGROUP_MAX_DEPTH) {
            CHECK(st == WEFT_ERANGE);
            CHECK(weft_errgroup_count(up) == 0);
            weft_errgroup_release(up);
            break;
        }
        if (st != WEFT_OK) {
            CHECK(armed && st == WEFT_ENOMEM);
            weft_errgroup_release(up);
            break;
        }
        weft_errgroup_release(cur);
        cur = up;
        depth++;
        CHECK(weft_errgroup_leaf_count(cur) == leaves);
    }
    /* Walk the whole depth with the recursive operations. */
    size_t full = weft_errgroup_format(cur, NULL, 0);
    CHECK(full > 0);
    weft_errgroup_t *flat = NULL;
    st = weft_errgroup_flatten(cur, &flat);
    CHECK(st == WEFT_OK || (armed && st == WEFT_ENOMEM));
    if (st == WEFT_OK) {
        CHECK(weft_errgroup_leaf_count(flat) == leaves);
        weft_errgroup_release(flat);
    }
    weft_error_t *first = NULL;
    st = weft_errgroup_first_leaf(cur, &first);
    CHECK(st == (leaves > 0 ? WEFT_OK : WEFT_ENOTFOUND));
    weft_errgroup_release(cur);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd r = {data, size};
    int64_t live = weft__alloc_live();
    ngroups = 0;
    nerrors = 0;
    armed = false;
    char msg[32];

    while (r.n > 0) {
        uint8_t op = rd_u8(&r);
        switch (op % 14) {
        case 0: { /* make a group */
            if (ngroups == MAX_GROUPS) {
                break;
            }
            make_msg(&r, msg, sizeof(msg));
            weft_errgroup_t *g = NULL;
            weft_status_t st = msg[0] != '\0' && (op & 0x80)
                                   ? weft_errgroup_create(&g, "%s", msg)
                                   : weft_errgroup_create(&g, NULL);
            if (st != WEFT_OK) {
                CHECK(armed && st == WEFT_ENOMEM && g == NULL);
                break;
            }
            struct m_group *mg = &groups[ngroups++];
            memset(mg, 0, sizeof(*mg));
            mg->g = g;
            mg->ptr = g;
            mg->depth = 1;
            CHECK(strcmp(weft_errgroup_message(g),
                         msg[0] != '\0' && (op & 0x80) ? msg : "") == 0);
            check_group(ngroups - 1);
            break;
        }
        case 1:   /* make an error */
        case 2: { /* make an error with a cause */
            if (nerrors == MAX_ERRORS) {
                break;
            }
            int code = codes[rd_u8(&r) % (sizeof(codes) / sizeof(codes[0]))];
            make_msg(&r, msg, sizeof(msg));
            weft_error_t *e = NULL;
            weft_status_t st;
            int ci = op % 14 == 2 ? pick_error(&r) : -1;
            if (ci >= 0) {
                st = weft_error_wrap(&e, errors[ci].e, code, "%s", msg);
            } else {
                st = weft_error_create(&e, code, "%s", msg);
            }
            if (st != WEFT_OK) {
                CHECK(armed && st == WEFT_ENOMEM && e != NULL);
                CHECK(weft_error_status(e) == WEFT_ENOMEM);
                code = WEFT_ENOMEM;
            } else {
                CHECK(weft_error_status(e) == code);
                CHECK(strcmp(weft_error_message(e), msg) == 0);
                CHECK(weft_error_cause(e) ==
                      (ci >= 0 ? errors[ci].ptr : NULL));
            }
            errors[nerrors++] = (struct m_error){e, e, code};
            break;
        }
        case 3: { /* add an error */
            int gi = pick_group(&r);
            int ei = pick_error(&r);
            uint64_t key = pick_key(&r);
            if (gi < 0 || ei < 0) {
                break;
            }
            struct m_group *mg = &groups[gi];
            weft_status_t st = weft_errgroup_add_error(mg->g, key, errors[ei].e);
            if (mg->frozen) {
                CHECK(st == WEFT_ESTATE);
            } else if (mg->n == MAX_ENTRIES) {
                /* The model is full: undo by not modelling; stop using g. */
                CHECK(st == WEFT_OK || (armed && st == WEFT_ENOMEM));
                if (st == WEFT_OK) {
                    mg->frozen = true; /* hide it from further adds... */
                    weft_errgroup_release(mg->g); /* ...and from checks */
                    mg->g = NULL;
                }
                break;
            } else if (st == WEFT_OK) {
                m_insert(mg, key, false, ei);
                mg->leaves++;
            } else {
                CHECK(armed && st == WEFT_ENOMEM);
            }
            check_group(gi);
            break;
        }
        case 4: { /* add a group */
            int gi = pick_group(&r);
            int ci = pick_group(&r);
            uint64_t key = pick_key(&r);
            if (gi < 0 || ci < 0) {
                break;
            }
            struct m_group *mg = &groups[gi];
            struct m_group *mc = &groups[ci];
            weft_status_t st = weft_errgroup_add_group(mg->g, key, mc->g);
            if (gi == ci) {
                CHECK(st == WEFT_EINVAL);
            } else if (mg->frozen) {
                CHECK(st == WEFT_ESTATE);
            } else if (mc->depth + 1 > WEFT_ERRGROUP_MAX_DEPTH) {
                CHECK(st == WEFT_ERANGE);
            } else if (mg->n == MAX_ENTRIES) {
                CHECK(st == WEFT_OK || (armed && st == WEFT_ENOMEM));
                if (st == WEFT_OK) {
                    mc->frozen = true;
                    mg->frozen = true;
                    weft_errgroup_release(mg->g);
                    mg->g = NULL;
                }
                break;
            } else if (st == WEFT_OK) {
                m_insert(mg, key, true, ci);
                mc->frozen = true;
                mg->leaves += mc->leaves;
                if (mc->depth + 1 > mg->depth) {
                    mg->depth = mc->depth + 1;
                }
            } else {
                CHECK(armed && st == WEFT_ENOMEM);
            }
            check_group(gi);
            /* Adding a frozen group again must fail; the child is frozen
             * whenever some group holds it. */
            if (mc->frozen) {
                weft_error_t *e = NULL;
                weft_status_t es = weft_error_create(&e, 64, NULL);
                CHECK(es == WEFT_OK || (armed && es == WEFT_ENOMEM));
                CHECK(weft_errgroup_add_error(mc->g, 0, e) == WEFT_ESTATE);
                weft_error_release(e);
            }
            break;
        }
        case 5:
            deep_chain(&r);
            break;
        case 6: { /* flatten */
            int gi = pick_group(&r);
            if (gi < 0) {
                break;
            }
            weft_errgroup_t *flat = NULL;
            weft_status_t st = weft_errgroup_flatten(groups[gi].g, &flat);
            if (st != WEFT_OK) {
                CHECK(armed && st == WEFT_ENOMEM && flat == NULL);
                break;
            }
            size_t n = 0;
            m_dfs(gi, dfs_idx, &n);
            CHECK(weft_errgroup_count(flat) == n);
            CHECK(weft_errgroup_leaf_count(flat) == n);
            for (size_t i = 0; i < n; i++) {
                weft_errgroup_entry_t en;
                CHECK(weft_errgroup_entry(flat, i, &en) == WEFT_OK);
                CHECK(en.kind == WEFT_ERRGROUP_ERROR);
                CHECK(en.key == i);
                CHECK(en.error == errors[dfs_idx[i]].ptr);
            }
            weft_errgroup_release(flat);
            break;
        }
        case 7:   /* split */
        case 8: { /* subgroup */
            int gi = pick_group(&r);
            unsigned int salt = rd_u8(&r) % 32;
            uint8_t sides = rd_u8(&r) % 3; /* both, match only, rest only */
            if (gi < 0) {
                break;
            }
            struct pred_ctx pc = {salt, 0};
            weft_errgroup_t *match = NULL;
            weft_errgroup_t *rest = NULL;
            weft_status_t st;
            if (op % 14 == 8) {
                st = weft_errgroup_subgroup(groups[gi].g, pred, &pc, &match);
                sides = 1;
            } else {
                st = weft_errgroup_split(groups[gi].g, pred, &pc,
                                         sides != 2 ? &match : NULL,
                                         sides != 1 ? &rest : NULL);
            }
            if (st != WEFT_OK) {
                CHECK(armed && st == WEFT_ENOMEM);
                CHECK(match == NULL && rest == NULL);
                break;
            }
            CHECK(pc.calls == groups[gi].leaves);
            if (sides != 2) {
                check_split_side(gi, match, true, salt);
            }
            if (sides != 1) {
                check_split_side(gi, rest, false, salt);
            }
            weft_errgroup_release(match);
            weft_errgroup_release(rest);
            break;
        }
        case 9: { /* find and first_leaf */
            int gi = pick_group(&r);
            int code = codes[rd_u8(&r) % (sizeof(codes) / sizeof(codes[0]))];
            if (gi < 0) {
                break;
            }
            size_t n = 0;
            m_dfs(gi, dfs_idx, &n);
            weft_error_t *got = NULL;
            weft_status_t st = weft_errgroup_find(groups[gi].g, code, &got);
            weft_error_t *want = NULL;
            for (size_t i = 0; i < n && want == NULL; i++) {
                if (errors[dfs_idx[i]].code == code) {
                    want = errors[dfs_idx[i]].ptr;
                }
            }
            CHECK(st == (want != NULL ? WEFT_OK : WEFT_ENOTFOUND));
            CHECK(got == want);
            st = weft_errgroup_first_leaf(groups[gi].g, &got);
            CHECK(st == (n > 0 ? WEFT_OK : WEFT_ENOTFOUND));
            CHECK(got == (n > 0 ? errors[dfs_idx[0]].ptr : NULL));
            break;
        }
        case 10: { /* format and print */
            int gi = pick_group(&r);
            if (gi >= 0) {
                check_format(&r, gi);
            }
            int ei = pick_error(&r);
            if (ei >= 0) {
                check_error_format(&r, errors[ei].e);
            }
            break;
        }
        case 11: { /* release our reference to a group */
            int gi = pick_group(&r);
            if (gi >= 0) {
                weft_errgroup_release(groups[gi].g);
                groups[gi].g = NULL;
            }
            break;
        }
        case 12: { /* release our reference to an error */
            int ei = pick_error(&r);
            if (ei >= 0) {
                weft_error_release(errors[ei].e);
                errors[ei].e = NULL;
            }
            break;
        }
        case 13: { /* arm or disarm the allocation injector */
            uint8_t k = rd_u8(&r);
            if (k < 128) {
                weft__alloc_set_fail_after(k % 8);
                armed = true;
            } else {
                weft__alloc_set_fail_after(-1);
                armed = false;
            }
            break;
        }
        }
    }
    weft__alloc_set_fail_after(-1);
    for (int i = 0; i < ngroups; i++) {
        if (groups[i].g != NULL) {
            check_group(i);
            weft_errgroup_release(groups[i].g);
        }
    }
    for (int i = 0; i < nerrors; i++) {
        if (errors[i].e != NULL) {
            weft_error_release(errors[i].e);
        }
    }
    CHECK(weft__alloc_live() == live);
    return 0;
}
