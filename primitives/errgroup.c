/*
 * errgroup.c - ordered, nestable groups of errors.
 *
 * DESIGN
 *
 * A group is a message plus a sorted array of entries (key, error or
 * nested group). Adding an entry finds its place by binary search for the
 * first key greater than the new one, so equal keys keep insertion order
 * and WEFT_ERRGROUP_APPEND (the largest key) appends in O(1).
 *
 * A group that is added to another becomes frozen. Because nested groups
 * can no longer change, every group can cache its leaf count and depth
 * exactly, and no cycle can form: to close a cycle some group would have
 * to be added to one of its own descendants, but every descendant is
 * frozen. Depth is capped (WEFT_ERRGROUP_MAX_DEPTH), so the recursive
 * walks below (release, split, flatten, find, format) use bounded stack.
 *
 * split/subgroup follow Python's ExceptionGroup.split(): the predicate
 * sees each error once, depth-first; each side keeps the original shape
 * with empty nested groups dropped, and a side with no error is NULL. New
 * groups are created lazily, only when the first entry for them appears,
 * so an all-or-nothing split allocates nothing for the empty side.
 *
 * Concurrency: a group is written by one builder thread and read by many
 * once published. Only the reference count is shared-mutable.
 *
 * Invariants:
 *  1. entries[0..count) is sorted by key, ties in insertion order.
 *  2. The group holds one reference to each entry's error or group.
 *  3. A frozen group is never modified again (except its refs).
 *  4. leaves == number of error entries + sum of the nested groups'
 *     leaves; depth == 1 + max nested depth (1 with no nested group);
 *     both are exact because nested groups are frozen (invariant 3).
 *  5. depth <= WEFT_ERRGROUP_MAX_DEPTH.
 *  6. refs counts references; the release that takes it to zero is the
 *     only one that touches the group afterwards.
 */
#include "errgroup.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "atomics.h"
#include "error.h"

struct errgroup_entry {
    uint64_t key;
    weft_error_t *error;    /* exactly one of error and group is set */
    weft_errgroup_t *group;
};

struct weft_errgroup {
    uint32_t refs;          /* faa by holders */
    bool frozen;            /* builder: set when added to a parent */
    unsigned int depth;     /* builder; see invariant 4 */
    size_t leaves;          /* builder; see invariant 4 */
    size_t count;           /* builder: entries in use */
    size_t cap;             /* builder: entries allocated */
    struct errgroup_entry *entries; /* builder; sorted (invariant 1) */
    char message[];         /* immutable */
};

/* A group with a copy of msg[0..len). */
static weft_errgroup_t *
errgroup_new(const char *msg, size_t len)
{
    weft_errgroup_t *g = WEFT__ALLOC(sizeof(*g) + len + 1);
    if (g == NULL) {
        return NULL;
    }
    memset(g, 0, sizeof(*g));
    g->depth = 1;
    memcpy(g->message, msg, len);
    g->message[len] = '\0';
    /* Unpaired: initialization before the group is handed out. */
    weft__store_relaxed_u32(&g->refs, 1);
    return g;
}

weft_status_t
weft_errgroup_create(weft_errgroup_t **out, const char *fmt, ...)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    size_t len = 0;
    va_list ap;
    if (fmt != NULL) {
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        len = n > 0 ? (size_t)n : 0;
    }
    weft_errgroup_t *g = WEFT__ALLOC(sizeof(*g) + len + 1);
    if (g == NULL) {
        return WEFT_ENOMEM;
    }
    memset(g, 0, sizeof(*g));
    g->depth = 1;
    g->message[0] = '\0';
    if (len > 0) {
        va_start(ap, fmt);
        (void)vsnprintf(g->message, len + 1, fmt, ap);
        va_end(ap);
    }
    /* Unpaired: initialization before the group is handed out. */
    weft__store_relaxed_u32(&g->refs, 1);
    *out = g;
    return WEFT_OK;
}

weft_status_t
weft_errgroup_retain(weft_errgroup_t *g)
{
    if (g == NULL) {
        return WEFT_EINVAL;
    }
    /*
     * Unpaired: a new reference is made from one the caller holds, so
     * nothing needs ordering (seq_cst only because atomics.h offers no
     * weaker faa).
     */
    (void)weft__faa_u32(&g->refs, 1);
    return WEFT_OK;
}

weft_status_t
weft_errgroup_release(weft_errgroup_t *g)
{
    if (g == NULL) {
        return WEFT_EINVAL;
    }
    /*
     * Drop one reference; the full barrier orders this holder's reads
     * before the free by whichever release reaches zero.
     * Pairs with: this same faa in other threads' weft_errgroup_release()
     * (invariant 6).
     */
    uint32_t old = weft__faa_u32(&g->refs, (uint32_t)-1);
    if (old != 1) {
        if (old == 0) {
            abort(); /* over-release: a broken caller invariant */
        }
        return WEFT_OK;
    }
    for (size_t i = 0; i < g->count; i++) {
        if (g->entries[i].error != NULL) {
            (void)weft_error_release(g->entries[i].error);
        } else {
            /* Recursion bounded by invariant 5. */
            (void)weft_errgroup_release(g->entries[i].group);
        }
    }
    weft__free(g->entries);
    weft__free(g);
    return WEFT_OK;
}

/*
 * Insert an entry at its sorted place, without touching reference counts.
 * Returns WEFT_OK or WEFT_ENOMEM (g unchanged).
 */
static weft_status_t
errgroup_insert(weft_errgroup_t *g, uint64_t key, weft_error_t *e,
                weft_errgroup_t *child)
{
    if (g->count == g->cap) {
        size_t ncap = g->cap == 0 ? 4 : g->cap * 2;
        struct errgroup_entry *ne =
            WEFT__REALLOC(g->entries, ncap * sizeof(*ne));
        if (ne == NULL) {
            return WEFT_ENOMEM;
        }
        g->entries = ne;
        g->cap = ncap;
    }
    /* First index whose key is greater than key (invariant 1). */
    size_t lo = 0;
    size_t hi = g->count;
    if (key == WEFT_ERRGROUP_APPEND) {
        lo = hi;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->entries[mid].key <= key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    memmove(&g->entries[lo + 1], &g->entries[lo],
            (g->count - lo) * sizeof(g->entries[0]));
    g->entries[lo].key = key;
    g->entries[lo].error = e;
    g->entries[lo].group = child;
    g->count++;
    return WEFT_OK;
}

weft_status_t
weft_errgroup_add_error(weft_errgroup_t *g, uint64_t key, weft_error_t *e)
{
    if (g == NULL || e == NULL) {
        return WEFT_EINVAL;
    }
    if (g->frozen) {
        return WEFT_ESTATE;
    }
    weft_status_t st = errgroup_insert(g, key, e, NULL);
    if (st != WEFT_OK) {
        return st;
    }
    (void)weft_error_retain(e);
    g->leaves++;
    return WEFT_OK;
}

weft_status_t
weft_errgroup_add_group(weft_errgroup_t *g, uint64_t key,
                        weft_errgroup_t *child)
{
    if (g == NULL || child == NULL || child == g) {
        return WEFT_EINVAL;
    }
    if (g->frozen) {
        return WEFT_ESTATE;
    }
    if (child->depth + 1 > WEFT_ERRGROUP_MAX_DEPTH) {
        return WEFT_ERANGE;
    }
    weft_status_t st = errgroup_insert(g, key, NULL, child);
    if (st != WEFT_OK) {
        return st;
    }
    (void)weft_errgroup_retain(child);
    child->frozen = true;
    g->leaves += child->leaves;
    if (child->depth + 1 > g->depth) {
        g->depth = child->depth + 1;
    }
    return WEFT_OK;
}

const char *
weft_errgroup_message(const weft_errgroup_t *g)
{
    return g != NULL ? g->message : NULL;
}

size_t
weft_errgroup_count(const weft_errgroup_t *g)
{
    return g != NULL ? g->count : 0;
}

size_t
weft_errgroup_leaf_count(const weft_errgroup_t *g)
{
    return g != NULL ? g->leaves : 0;
}

unsigned int
weft__errgroup_depth(const weft_errgroup_t *g)
{
    return g != NULL ? g->depth : 0;
}

bool
weft__errgroup_is_frozen(const weft_errgroup_t *g)
{
    return g != NULL && g->frozen;
}

weft_status_t
weft_errgroup_entry(const weft_errgroup_t *g, size_t index,
                    weft_errgroup_entry_t *out)
{
    if (g == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    if (index >= g->count) {
        return WEFT_ERANGE;
    }
    const struct errgroup_entry *en = &g->entries[index];
    out->kind = en->error != NULL ? WEFT_ERRGROUP_ERROR : WEFT_ERRGROUP_GROUP;
    out->key = en->key;
    out->error = en->error;
    out->group = en->group;
    return WEFT_OK;
}

/* Append g's errors depth-first to dst, keyed by position. */
static weft_status_t
errgroup_flatten_into(weft_errgroup_t *dst, const weft_errgroup_t *g)
{
    for (size_t i = 0; i < g->count; i++) {
        const struct errgroup_entry *en = &g->entries[i];
        weft_status_t st;
        if (en->error != NULL) {
            st = weft_errgroup_add_error(dst, dst->count, en->error);
        } else {
            st = errgroup_flatten_into(dst, en->group);
        }
        if (st != WEFT_OK) {
            return st;
        }
    }
    return WEFT_OK;
}

weft_status_t
weft_errgroup_flatten(const weft_errgroup_t *g, weft_errgroup_t **out)
{
    if (g == NULL || out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    weft_errgroup_t *flat = errgroup_new(g->message, strlen(g->message));
    if (flat == NULL) {
        return WEFT_ENOMEM;
    }
    weft_status_t st = errgroup_flatten_into(flat, g);
    if (st != WEFT_OK) {
        (void)weft_errgroup_release(flat);
        return st;
    }
    *out = flat;
    return WEFT_OK;
}

/* Make *side (lazily, with g's message) and add an error to it. */
static weft_status_t
errgroup_side_add(weft_errgroup_t **side, const weft_errgroup_t *g,
                  uint64_t key, weft_error_t *e, weft_errgroup_t *child)
{
    if (*side == NULL) {
        *side = errgroup_new(g->message, strlen(g->message));
        if (*side == NULL) {
            return WEFT_ENOMEM;
        }
    }
    if (e != NULL) {
        return weft_errgroup_add_error(*side, key, e);
    }
    return weft_errgroup_add_group(*side, key, child);
}

/*
 * Split g into *m and *r (either pointer NULL: that side not wanted). On
 * success each wanted side is a new group holding at least one error, or
 * NULL. On failure both are NULL and nothing leaks.
 */
static weft_status_t
errgroup_split_rec(const weft_errgroup_t *g, weft_error_pred_t pred,
                   void *ctx, weft_errgroup_t **m, weft_errgroup_t **r)
{
    weft_errgroup_t *mg = NULL;
    weft_errgroup_t *rg = NULL;
    weft_status_t st = WEFT_OK;

    for (size_t i = 0; i < g->count && st == WEFT_OK; i++) {
        const struct errgroup_entry *en = &g->entries[i];
        if (en->error != NULL) {
            bool hit = pred(en->error, ctx);
            if (hit && m != NULL) {
                st = errgroup_side_add(&mg, g, en->key, en->error, NULL);
            } else if (!hit && r != NULL) {
                st = errgroup_side_add(&rg, g, en->key, en->error, NULL);
            }
            continue;
        }
        weft_errgroup_t *cm = NULL;
        weft_errgroup_t *cr = NULL;
        /* Recursion bounded by invariant 5. */
        st = errgroup_split_rec(en->group, pred, ctx, m != NULL ? &cm : NULL,
                                r != NULL ? &cr : NULL);
        if (st == WEFT_OK && cm != NULL) {
            st = errgroup_side_add(&mg, g, en->key, NULL, cm);
        }
        if (st == WEFT_OK && cr != NULL) {
            st = errgroup_side_add(&rg, g, en->key, NULL, cr);
        }
        /* The sides hold their own references now (or failed to). */
        if (cm != NULL) {
            (void)weft_errgroup_release(cm);
        }
        if (cr != NULL) {
            (void)weft_errgroup_release(cr);
        }
    }
    if (st != WEFT_OK) {
        if (mg != NULL) {
            (void)weft_errgroup_release(mg);
        }
        if (rg != NULL) {
            (void)weft_errgroup_release(rg);
        }
        mg = NULL;
        rg = NULL;
    }
    if (m != NULL) {
        *m = mg;
    }
    if (r != NULL) {
        *r = rg;
    }
    return st;
}

weft_status_t
weft_errgroup_split(const weft_errgroup_t *g, weft_error_pred_t pred,
                    void *ctx, weft_errgroup_t **match,
                    weft_errgroup_t **rest)
{
    if (match != NULL) {
        *match = NULL;
    }
    if (rest != NULL) {
        *rest = NULL;
    }
    if (g == NULL || pred == NULL || (match == NULL && rest == NULL)) {
        return WEFT_EINVAL;
    }
    return errgroup_split_rec(g, pred, ctx, match, rest);
}

weft_status_t
weft_errgroup_subgroup(const weft_errgroup_t *g, weft_error_pred_t pred,
                       void *ctx, weft_errgroup_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    return weft_errgroup_split(g, pred, ctx, out, NULL);
}

/* Depth-first search; code < 0 matches any error. */
static weft_error_t *
errgroup_find_rec(const weft_errgroup_t *g, int code, bool any)
{
    for (size_t i = 0; i < g->count; i++) {
        const struct errgroup_entry *en = &g->entries[i];
        if (en->error != NULL) {
            if (any || weft_error_status(en->error) == code) {
                return en->error;
            }
            continue;
        }
        /* Recursion bounded by invariant 5. */
        weft_error_t *e = errgroup_find_rec(en->group, code, any);
        if (e != NULL) {
            return e;
        }
    }
    return NULL;
}

weft_status_t
weft_errgroup_find(const weft_errgroup_t *g, int code, weft_error_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (g == NULL) {
        return WEFT_EINVAL;
    }
    *out = errgroup_find_rec(g, code, false);
    return *out != NULL ? WEFT_OK : WEFT_ENOTFOUND;
}

weft_status_t
weft_errgroup_first_leaf(const weft_errgroup_t *g, weft_error_t **out)
{
    if (out == NULL) {
        return WEFT_EINVAL;
    }
    *out = NULL;
    if (g == NULL) {
        return WEFT_EINVAL;
    }
    *out = errgroup_find_rec(g, 0, true);
    return *out != NULL ? WEFT_OK : WEFT_ENOTFOUND;
}

/* ---- Printing --------------------------------------------------------- */

/* "message (N errors)", without the newline. */
static void
errgroup_header(struct weft__strbuf *sb, const weft_errgroup_t *g)
{
    const char *msg = g->message[0] != '\0' ? g->message : "error group";
    weft__strbuf_printf(sb, "%s (%zu error%s)", msg, g->leaves,
                        g->leaves == 1 ? "" : "s");
}

/*
 * The entries of g, whose header line was already written; `ind` spaces
 * of indentation is where g's own "+" column sits.
 */
static void
errgroup_tree(struct weft__strbuf *sb, const weft_errgroup_t *g, int ind)
{
    if (g->count == 0) {
        return;
    }
    for (size_t i = 0; i < g->count; i++) {
        const struct errgroup_entry *en = &g->entries[i];
        weft__strbuf_printf(sb, "%*s%s---------------- %zu ----------------\n",
                            ind, "", i == 0 ? "+-+" : "  +", i + 1);
        weft__strbuf_printf(sb, "%*s  | ", ind, "");
        if (en->error != NULL) {
            weft__strbuf_error(sb, en->error);
            weft__strbuf_printf(sb, "\n");
        } else {
            errgroup_header(sb, en->group);
            weft__strbuf_printf(sb, "\n");
            /* Recursion bounded by invariant 5. */
            errgroup_tree(sb, en->group, ind + 2);
        }
    }
    weft__strbuf_printf(sb, "%*s  +------------------------------------\n",
                        ind, "");
}

static void
errgroup_write(struct weft__strbuf *sb, const weft_errgroup_t *g)
{
    if (g == NULL) {
        weft__strbuf_printf(sb, "(null)\n");
        return;
    }
    errgroup_header(sb, g);
    weft__strbuf_printf(sb, "\n");
    errgroup_tree(sb, g, 0);
}

size_t
weft_errgroup_format(const weft_errgroup_t *g, char *buf, size_t n)
{
    struct weft__strbuf sb;
    weft__strbuf_init_mem(&sb, buf, n);
    errgroup_write(&sb, g);
    return sb.len;
}

weft_status_t
weft_errgroup_print(const weft_errgroup_t *g, FILE *fp)
{
    if (g == NULL || fp == NULL) {
        return WEFT_EINVAL;
    }
    struct weft__strbuf sb;
    weft__strbuf_init_file(&sb, fp);
    errgroup_write(&sb, g);
    return sb.failed ? WEFT_ESYS : WEFT_OK;
}
