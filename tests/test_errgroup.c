/*
 * test_errgroup.c - error groups: order, nesting, flatten, split,
 * subgroup, search, printing, bad input and out-of-memory paths.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <weft/errgroup.h>
#include <weft/error.h>

#include "primitives/alloc.h"
#include "primitives/errgroup.h"
#include "primitives/error.h"

TestSuite(errgroup, .timeout = 10.0);

static int64_t live_at_start;

static void
leak_check_begin(void)
{
    live_at_start = weft__alloc_live();
}

static void
leak_check_end(void)
{
    cr_assert_eq(weft__alloc_live(), live_at_start, "leaked %lld blocks",
                 (long long)(weft__alloc_live() - live_at_start));
}

/* A new error that the caller owns. */
static weft_error_t *
err(int code, const char *msg)
{
    weft_error_t *e = NULL;
    cr_assert_eq(weft_error_create(&e, code, "%s", msg), WEFT_OK);
    return e;
}

/* Add a fresh error to g and drop the local reference. */
static void
add(weft_errgroup_t *g, uint64_t key, int code, const char *msg)
{
    weft_error_t *e = err(code, msg);
    cr_assert_eq(weft_errgroup_add_error(g, key, e), WEFT_OK);
    weft_error_release(e);
}

static weft_errgroup_t *
group(const char *msg)
{
    weft_errgroup_t *g = NULL;
    cr_assert_eq(weft_errgroup_create(&g, "%s", msg), WEFT_OK);
    return g;
}

/* Messages of g's direct error entries, joined by ','. */
static const char *
messages(const weft_errgroup_t *g)
{
    static char buf[512];
    buf[0] = '\0';
    for (size_t i = 0; i < weft_errgroup_count(g); i++) {
        weft_errgroup_entry_t en;
        cr_assert_eq(weft_errgroup_entry(g, i, &en), WEFT_OK);
        if (i > 0) {
            strcat(buf, ",");
        }
        strcat(buf, en.kind == WEFT_ERRGROUP_ERROR
                        ? weft_error_message(en.error)
                        : weft_errgroup_message(en.group));
    }
    return buf;
}

static char *
tree(const weft_errgroup_t *g)
{
    static char buf[4096];
    size_t n = weft_errgroup_format(g, buf, sizeof(buf));
    cr_assert_lt(n, sizeof(buf));
    return buf;
}

/*
 * The shape most tests use:
 *   top: [0] A (EUSER), [1] nested{ [0] B (ETIMEDOUT), [1] C (EUSER) },
 *        [2] D (ETIMEDOUT)
 */
static weft_errgroup_t *
sample(void)
{
    weft_errgroup_t *top = group("gather failed");
    weft_errgroup_t *nested = group("nested");
    add(nested, 0, WEFT_ETIMEDOUT, "B");
    add(nested, 1, WEFT_EUSER, "C");
    add(top, 0, WEFT_EUSER, "A");
    cr_assert_eq(weft_errgroup_add_group(top, 1, nested), WEFT_OK);
    weft_errgroup_release(nested);
    add(top, 2, WEFT_ETIMEDOUT, "D");
    return top;
}

Test(errgroup, new_group_is_empty_with_its_message)
{
    leak_check_begin();
    weft_errgroup_t *g = NULL;
    cr_assert_eq(weft_errgroup_create(&g, "gather of %d failed", 3), WEFT_OK);
    cr_assert_str_eq(weft_errgroup_message(g), "gather of 3 failed");
    cr_assert_eq(weft_errgroup_count(g), 0);
    cr_assert_eq(weft_errgroup_leaf_count(g), 0);
    cr_assert_eq(weft__errgroup_depth(g), 1);
    cr_assert_not(weft__errgroup_is_frozen(g));
    weft_errgroup_release(g);
    cr_assert_eq(weft_errgroup_create(&g, NULL), WEFT_OK);
    cr_assert_str_eq(weft_errgroup_message(g), "");
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, entries_come_out_in_key_order_when_added_out_of_order)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    add(g, 3, WEFT_EUSER, "d");
    add(g, 0, WEFT_EUSER, "a");
    add(g, 2, WEFT_EUSER, "c");
    add(g, 1, WEFT_EUSER, "b");
    add(g, 10, WEFT_EUSER, "e");
    add(g, 5, WEFT_EUSER, "x");
    cr_assert_str_eq(messages(g), "a,b,c,d,x,e");
    weft_errgroup_entry_t en;
    weft_errgroup_entry(g, 4, &en);
    cr_assert_eq(en.key, 5);
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, equal_keys_keep_insertion_order)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    add(g, 1, WEFT_EUSER, "1a");
    add(g, 0, WEFT_EUSER, "0a");
    add(g, 1, WEFT_EUSER, "1b");
    add(g, 0, WEFT_EUSER, "0b");
    add(g, 1, WEFT_EUSER, "1c");
    cr_assert_str_eq(messages(g), "0a,0b,1a,1b,1c");
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, append_key_goes_after_every_keyed_entry)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    add(g, WEFT_ERRGROUP_APPEND, WEFT_EUSER, "p");
    add(g, 7, WEFT_EUSER, "k7");
    add(g, WEFT_ERRGROUP_APPEND, WEFT_EUSER, "q");
    add(g, 0, WEFT_EUSER, "k0");
    cr_assert_str_eq(messages(g), "k0,k7,p,q");
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, group_keeps_its_own_reference_to_each_error)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    weft_error_t *e = err(WEFT_EUSER, "kept");
    weft_errgroup_add_error(g, 0, e);
    weft_error_release(e);
    weft_errgroup_entry_t en;
    cr_assert_eq(weft_errgroup_entry(g, 0, &en), WEFT_OK);
    cr_assert_eq(en.kind, WEFT_ERRGROUP_ERROR);
    cr_assert_eq(en.error, e);
    cr_assert_null(en.group);
    cr_assert_str_eq(weft_error_message(en.error), "kept");
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, same_error_may_appear_twice)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    weft_error_t *e = err(WEFT_EUSER, "twice");
    weft_errgroup_add_error(g, 0, e);
    weft_errgroup_add_error(g, 1, e);
    weft_error_release(e);
    cr_assert_eq(weft_errgroup_leaf_count(g), 2);
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, nested_groups_count_leaves_recursively)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    cr_assert_eq(weft_errgroup_count(top), 3);
    cr_assert_eq(weft_errgroup_leaf_count(top), 4);
    cr_assert_eq(weft__errgroup_depth(top), 2);
    weft_errgroup_entry_t en;
    cr_assert_eq(weft_errgroup_entry(top, 1, &en), WEFT_OK);
    cr_assert_eq(en.kind, WEFT_ERRGROUP_GROUP);
    cr_assert_null(en.error);
    cr_assert_eq(en.key, 1);
    cr_assert_eq(weft_errgroup_count(en.group), 2);
    cr_assert_str_eq(messages(top), "A,nested,D");
    cr_assert_str_eq(messages(en.group), "B,C");
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, entry_index_past_the_end_is_out_of_range)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    add(g, 0, WEFT_EUSER, "only");
    weft_errgroup_entry_t en;
    cr_assert_eq(weft_errgroup_entry(g, 1, &en), WEFT_ERANGE);
    cr_assert_eq(weft_errgroup_entry(g, SIZE_MAX, &en), WEFT_ERANGE);
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, added_child_is_frozen)
{
    leak_check_begin();
    weft_errgroup_t *top = group("top");
    weft_errgroup_t *child = group("child");
    add(child, 0, WEFT_EUSER, "c");
    cr_assert_eq(weft_errgroup_add_group(top, 0, child), WEFT_OK);
    cr_assert(weft__errgroup_is_frozen(child));
    cr_assert_not(weft__errgroup_is_frozen(top));
    weft_error_t *e = err(WEFT_EUSER, "late");
    cr_assert_eq(weft_errgroup_add_error(child, 1, e), WEFT_ESTATE);
    cr_assert_eq(weft_errgroup_add_group(child, 1, top), WEFT_ESTATE,
                 "a cycle top -> child -> top must be impossible");
    cr_assert_eq(weft_errgroup_leaf_count(top), 1);
    weft_error_release(e);
    weft_errgroup_release(child);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, group_cannot_contain_itself)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    cr_assert_eq(weft_errgroup_add_group(g, 0, g), WEFT_EINVAL);
    cr_assert_not(weft__errgroup_is_frozen(g));
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, nesting_deeper_than_the_limit_is_refused)
{
    leak_check_begin();
    weft_errgroup_t *g = group("leaf");
    add(g, 0, WEFT_EUSER, "deep");
    for (unsigned int d = 2; d <= WEFT_ERRGROUP_MAX_DEPTH; d++) {
        weft_errgroup_t *p = group("level");
        cr_assert_eq(weft_errgroup_add_group(p, 0, g), WEFT_OK);
        weft_errgroup_release(g);
        g = p;
        cr_assert_eq(weft__errgroup_depth(g), d);
    }
    weft_errgroup_t *over = group("over");
    cr_assert_eq(weft_errgroup_add_group(over, 0, g), WEFT_ERANGE);
    cr_assert_eq(weft_errgroup_count(over), 0);
    /* The caller's fallback: add the flattened child. */
    weft_errgroup_t *flat = NULL;
    cr_assert_eq(weft_errgroup_flatten(g, &flat), WEFT_OK);
    cr_assert_eq(weft_errgroup_add_group(over, 0, flat), WEFT_OK);
    cr_assert_eq(weft_errgroup_leaf_count(over), 1);
    weft_error_t *first = NULL;
    cr_assert_eq(weft_errgroup_first_leaf(g, &first), WEFT_OK);
    cr_assert_str_eq(weft_error_message(first), "deep");
    weft_errgroup_release(flat);
    weft_errgroup_release(over);
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, flatten_lists_leaves_depth_first_with_position_keys)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    weft_errgroup_t *flat = NULL;
    cr_assert_eq(weft_errgroup_flatten(top, &flat), WEFT_OK);
    cr_assert_str_eq(weft_errgroup_message(flat), "gather failed");
    cr_assert_str_eq(messages(flat), "A,B,C,D");
    cr_assert_eq(weft__errgroup_depth(flat), 1);
    for (size_t i = 0; i < 4; i++) {
        weft_errgroup_entry_t en;
        weft_errgroup_entry(flat, i, &en);
        cr_assert_eq(en.kind, WEFT_ERRGROUP_ERROR);
        cr_assert_eq(en.key, i);
    }
    /* The same error objects, not copies. */
    weft_error_t *a0 = NULL;
    weft_error_t *a1 = NULL;
    weft_errgroup_find(top, WEFT_ETIMEDOUT, &a0);
    weft_errgroup_find(flat, WEFT_ETIMEDOUT, &a1);
    cr_assert_eq(a0, a1);
    weft_errgroup_release(top);
    cr_assert_str_eq(messages(flat), "A,B,C,D", "flat outlives its source");
    weft_errgroup_release(flat);
    leak_check_end();
}

Test(errgroup, flatten_of_empty_group_is_empty)
{
    leak_check_begin();
    weft_errgroup_t *g = group("none");
    weft_errgroup_t *flat = NULL;
    cr_assert_eq(weft_errgroup_flatten(g, &flat), WEFT_OK);
    cr_assert_not_null(flat);
    cr_assert_eq(weft_errgroup_count(flat), 0);
    weft_errgroup_release(flat);
    weft_errgroup_release(g);
    leak_check_end();
}

static bool
is_timeout(const weft_error_t *e, void *ctx)
{
    (void)ctx;
    return weft_error_status(e) == WEFT_ETIMEDOUT;
}

static bool
never(const weft_error_t *e, void *ctx)
{
    (void)e;
    (void)ctx;
    return false;
}

static bool
always(const weft_error_t *e, void *ctx)
{
    (void)e;
    (void)ctx;
    return true;
}

Test(errgroup, split_keeps_shape_and_shares_errors)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    weft_errgroup_t *m = NULL;
    weft_errgroup_t *r = NULL;
    cr_assert_eq(weft_errgroup_split(top, is_timeout, NULL, &m, &r),
                 WEFT_OK);
    cr_assert_str_eq(tree(m), "gather failed (2 errors)\n"
                              "+-+---------------- 1 ----------------\n"
                              "  | nested (1 error)\n"
                              "  +-+---------------- 1 ----------------\n"
                              "    | WEFT_ETIMEDOUT: B\n"
                              "    +------------------------------------\n"
                              "  +---------------- 2 ----------------\n"
                              "  | WEFT_ETIMEDOUT: D\n"
                              "  +------------------------------------\n");
    cr_assert_str_eq(tree(r), "gather failed (2 errors)\n"
                              "+-+---------------- 1 ----------------\n"
                              "  | WEFT_EUSER: A\n"
                              "  +---------------- 2 ----------------\n"
                              "  | nested (1 error)\n"
                              "  +-+---------------- 1 ----------------\n"
                              "    | WEFT_EUSER: C\n"
                              "    +------------------------------------\n"
                              "  +------------------------------------\n");
    /* Keys survive, and the errors are the originals. */
    weft_errgroup_entry_t src;
    weft_errgroup_entry_t got;
    weft_errgroup_entry(top, 2, &src);
    weft_errgroup_entry(m, 1, &got);
    cr_assert_eq(got.key, 2);
    cr_assert_eq(got.error, src.error);
    weft_errgroup_entry(m, 0, &got);
    cr_assert_eq(got.key, 1);
    cr_assert(weft__errgroup_is_frozen(got.group));
    cr_assert_not(weft__errgroup_is_frozen(m));
    weft_errgroup_release(top);
    weft_errgroup_release(m);
    weft_errgroup_release(r);
    leak_check_end();
}

Test(errgroup, split_side_without_errors_is_null)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    weft_errgroup_t *m = (weft_errgroup_t *)0x1;
    weft_errgroup_t *r = (weft_errgroup_t *)0x1;
    cr_assert_eq(weft_errgroup_split(top, never, NULL, &m, &r), WEFT_OK);
    cr_assert_null(m);
    cr_assert_str_eq(tree(r), tree(top));
    weft_errgroup_release(r);
    cr_assert_eq(weft_errgroup_split(top, always, NULL, &m, &r), WEFT_OK);
    cr_assert_null(r);
    cr_assert_eq(weft_errgroup_leaf_count(m), 4);
    weft_errgroup_release(m);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, split_of_group_without_errors_gives_two_nulls)
{
    leak_check_begin();
    weft_errgroup_t *top = group("top");
    weft_errgroup_t *empty = group("empty");
    weft_errgroup_add_group(top, 0, empty);
    weft_errgroup_release(empty);
    weft_errgroup_t *m = (weft_errgroup_t *)0x1;
    weft_errgroup_t *r = (weft_errgroup_t *)0x1;
    cr_assert_eq(weft_errgroup_split(top, always, NULL, &m, &r), WEFT_OK);
    cr_assert_null(m);
    cr_assert_null(r);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, split_drops_nested_groups_left_empty)
{
    leak_check_begin();
    weft_errgroup_t *top = group("top");
    weft_errgroup_t *users = group("users");
    add(users, 0, WEFT_EUSER, "u1");
    add(users, 1, WEFT_EUSER, "u2");
    add(top, 0, WEFT_ETIMEDOUT, "t");
    weft_errgroup_add_group(top, 1, users);
    weft_errgroup_release(users);
    weft_errgroup_t *m = NULL;
    cr_assert_eq(weft_errgroup_subgroup(top, is_timeout, NULL, &m), WEFT_OK);
    cr_assert_eq(weft_errgroup_count(m), 1, "empty 'users' was dropped");
    cr_assert_str_eq(messages(m), "t");
    weft_errgroup_release(m);
    weft_errgroup_release(top);
    leak_check_end();
}

struct seen {
    char order[64];
    int calls;
};

static bool
record(const weft_error_t *e, void *ctx)
{
    struct seen *s = ctx;
    strcat(s->order, weft_error_message(e));
    s->calls++;
    return s->calls % 2 == 0;
}

Test(errgroup, split_calls_the_predicate_once_per_error_in_order)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    struct seen s = {{0}, 0};
    weft_errgroup_t *m = NULL;
    cr_assert_eq(weft_errgroup_split(top, record, &s, &m, NULL), WEFT_OK);
    cr_assert_str_eq(s.order, "ABCD");
    cr_assert_eq(s.calls, 4);
    /* Even calls matched: B (2nd) and D (4th). */
    weft_errgroup_t *flat = NULL;
    weft_errgroup_flatten(m, &flat);
    cr_assert_str_eq(messages(flat), "B,D");
    weft_errgroup_release(flat);
    weft_errgroup_release(m);
    /* Only the rest wanted: the predicate still sees every error. */
    memset(&s, 0, sizeof(s));
    weft_errgroup_t *r = NULL;
    cr_assert_eq(weft_errgroup_split(top, record, &s, NULL, &r), WEFT_OK);
    cr_assert_str_eq(s.order, "ABCD");
    weft_errgroup_flatten(r, &flat);
    cr_assert_str_eq(messages(flat), "A,C");
    weft_errgroup_release(flat);
    weft_errgroup_release(r);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, subgroup_without_match_is_null)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    weft_errgroup_t *m = (weft_errgroup_t *)0x1;
    cr_assert_eq(weft_errgroup_subgroup(top, never, NULL, &m), WEFT_OK);
    cr_assert_null(m);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, find_returns_first_match_depth_first)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    weft_error_t *e = NULL;
    cr_assert_eq(weft_errgroup_find(top, WEFT_ETIMEDOUT, &e), WEFT_OK);
    cr_assert_str_eq(weft_error_message(e), "B", "B (nested) precedes D");
    cr_assert_eq(weft_errgroup_find(top, WEFT_EUSER, &e), WEFT_OK);
    cr_assert_str_eq(weft_error_message(e), "A");
    cr_assert_eq(weft_errgroup_find(top, WEFT_ENOMEM, &e), WEFT_ENOTFOUND);
    cr_assert_null(e);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, find_does_not_look_at_causes)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    weft_error_t *cause = err(WEFT_ETIMEDOUT, "inner");
    weft_error_t *e = NULL;
    weft_error_wrap(&e, cause, WEFT_EUSER, "outer");
    weft_errgroup_add_error(g, 0, e);
    weft_error_t *found = NULL;
    cr_assert_eq(weft_errgroup_find(g, WEFT_ETIMEDOUT, &found),
                 WEFT_ENOTFOUND);
    weft_error_release(e);
    weft_error_release(cause);
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, first_leaf_descends_into_leading_nested_group)
{
    leak_check_begin();
    weft_errgroup_t *top = group("top");
    weft_errgroup_t *empty = group("empty");
    weft_errgroup_t *inner = group("inner");
    add(inner, 0, WEFT_EUSER, "first");
    weft_errgroup_add_group(top, 0, empty);
    weft_errgroup_add_group(top, 1, inner);
    add(top, 2, WEFT_EUSER, "later");
    weft_errgroup_release(empty);
    weft_errgroup_release(inner);
    weft_error_t *e = NULL;
    cr_assert_eq(weft_errgroup_first_leaf(top, &e), WEFT_OK);
    cr_assert_str_eq(weft_error_message(e), "first");
    weft_errgroup_release(top);
    top = group("none");
    cr_assert_eq(weft_errgroup_first_leaf(top, &e), WEFT_ENOTFOUND);
    cr_assert_null(e);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, format_prints_the_expected_tree)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    /* Give A an origin, as the executor would. */
    weft_errgroup_entry_t en;
    weft_errgroup_entry(top, 0, &en);
    weft_error_t *a = err(WEFT_EUSER, "B failed at step 4");
    weft__error_set_task(a, "B", 3);
    weft__error_set_site(a, "ex.c", 10, "main");
    weft_errgroup_add_error(top, 0, a);
    weft_error_release(a);
    cr_assert_str_eq(tree(top),
                     "gather failed (5 errors)\n"
                     "+-+---------------- 1 ----------------\n"
                     "  | WEFT_EUSER: A\n"
                     "  +---------------- 2 ----------------\n"
                     "  | WEFT_EUSER: B failed at step 4 [task B#3 at "
                     "ex.c:10 (main)]\n"
                     "  +---------------- 3 ----------------\n"
                     "  | nested (2 errors)\n"
                     "  +-+---------------- 1 ----------------\n"
                     "    | WEFT_ETIMEDOUT: B\n"
                     "    +---------------- 2 ----------------\n"
                     "    | WEFT_EUSER: C\n"
                     "    +------------------------------------\n"
                     "  +---------------- 4 ----------------\n"
                     "  | WEFT_ETIMEDOUT: D\n"
                     "  +------------------------------------\n");
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, format_of_three_levels_indents_each_level)
{
    leak_check_begin();
    weft_errgroup_t *l3 = group("l3");
    add(l3, 0, WEFT_EUSER, "x");
    weft_errgroup_t *l2 = group("");
    weft_errgroup_add_group(l2, 0, l3);
    weft_errgroup_t *l1 = group("l1");
    weft_errgroup_add_group(l1, 0, l2);
    weft_errgroup_release(l3);
    weft_errgroup_release(l2);
    cr_assert_str_eq(tree(l1), "l1 (1 error)\n"
                               "+-+---------------- 1 ----------------\n"
                               "  | error group (1 error)\n"
                               "  +-+---------------- 1 ----------------\n"
                               "    | l3 (1 error)\n"
                               "    +-+---------------- 1 ----------------\n"
                               "      | WEFT_EUSER: x\n"
                               "      +------------------------------------\n"
                               "    +------------------------------------\n"
                               "  +------------------------------------\n");
    weft_errgroup_release(l1);
    leak_check_end();
}

Test(errgroup, format_of_empty_group_is_its_header)
{
    leak_check_begin();
    weft_errgroup_t *g = group("nothing failed");
    cr_assert_str_eq(tree(g), "nothing failed (0 errors)\n");
    weft_errgroup_release(g);
    char buf[16];
    cr_assert_eq(weft_errgroup_format(NULL, buf, sizeof(buf)), 7);
    cr_assert_str_eq(buf, "(null)\n");
    leak_check_end();
}

Test(errgroup, format_has_snprintf_semantics)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    size_t need = weft_errgroup_format(top, NULL, 0);
    cr_assert_eq(need, strlen(tree(top)));
    char small[20];
    cr_assert_eq(weft_errgroup_format(top, small, sizeof(small)), need);
    cr_assert_eq(strlen(small), sizeof(small) - 1);
    cr_assert_eq(strncmp(small, tree(top), sizeof(small) - 1), 0);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, print_writes_the_formatted_tree)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    char buf[4096] = {0};
    FILE *fp = fmemopen(buf, sizeof(buf), "w");
    cr_assert_not_null(fp);
    cr_assert_eq(weft_errgroup_print(top, fp), WEFT_OK);
    fclose(fp);
    cr_assert_str_eq(buf, tree(top));
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, bad_input_is_rejected)
{
    leak_check_begin();
    weft_errgroup_t *g = group("g");
    weft_error_t *e = err(WEFT_EUSER, "e");
    weft_errgroup_t *out = (weft_errgroup_t *)0x1;
    weft_errgroup_t *out2 = (weft_errgroup_t *)0x1;
    weft_error_t *eo = (weft_error_t *)0x1;
    weft_errgroup_entry_t en;

    cr_assert_eq(weft_errgroup_create(NULL, "x"), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_retain(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_release(NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_add_error(NULL, 0, e), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_add_error(g, 0, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_add_group(NULL, 0, g), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_add_group(g, 0, NULL), WEFT_EINVAL);
    cr_assert_null(weft_errgroup_message(NULL));
    cr_assert_eq(weft_errgroup_count(NULL), 0);
    cr_assert_eq(weft_errgroup_leaf_count(NULL), 0);
    cr_assert_eq(weft_errgroup_entry(NULL, 0, &en), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_entry(g, 0, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_flatten(NULL, &out), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_flatten(g, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_split(NULL, always, NULL, &out, &out2),
                 WEFT_EINVAL);
    cr_assert_null(out, "outputs are cleared on failure");
    cr_assert_null(out2);
    cr_assert_eq(weft_errgroup_split(g, NULL, NULL, &out, &out2),
                 WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_split(g, always, NULL, NULL, NULL),
                 WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_subgroup(g, always, NULL, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_subgroup(NULL, always, NULL, &out),
                 WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_find(NULL, WEFT_EUSER, &eo), WEFT_EINVAL);
    cr_assert_null(eo);
    cr_assert_eq(weft_errgroup_find(g, WEFT_EUSER, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_first_leaf(NULL, &eo), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_first_leaf(g, NULL), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_print(NULL, stdout), WEFT_EINVAL);
    cr_assert_eq(weft_errgroup_print(g, NULL), WEFT_EINVAL);
    cr_assert_eq(weft__errgroup_depth(NULL), 0);
    cr_assert_not(weft__errgroup_is_frozen(NULL));
    cr_assert_eq(weft_errgroup_count(g), 0, "nothing was added");
    weft_error_release(e);
    weft_errgroup_release(g);
    leak_check_end();
}

Test(errgroup, create_out_of_memory_returns_null)
{
    leak_check_begin();
    weft_errgroup_t *g = (weft_errgroup_t *)0x1;
    weft__alloc_set_fail_after(0);
    cr_assert_eq(weft_errgroup_create(&g, "x"), WEFT_ENOMEM);
    cr_assert_null(g);
    leak_check_end();
}

/*
 * Build a group of 9 errors and a nested group (the entry array grows
 * from 4 to 8 to 16, so adds allocate too), failing allocation k; every
 * failing call must report WEFT_ENOMEM and change nothing.
 */
Test(errgroup, every_allocation_failure_while_building_is_reported)
{
    leak_check_begin();
    weft_error_t *errs[9];
    for (int i = 0; i < 9; i++) {
        errs[i] = err(WEFT_EUSER, "e");
    }
    int64_t base = weft__alloc_live();
    bool reached_end = false;
    long k;
    for (k = 0; k < 50 && !reached_end; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        int failures = 0;
        size_t added = 0;
        weft_errgroup_t *g = NULL;
        weft_errgroup_t *child = NULL;
        weft_status_t st = weft_errgroup_create(&g, "top");
        if (st == WEFT_OK) {
            for (int i = 0; i < 9; i++) {
                st = weft_errgroup_add_error(g, (uint64_t)(8 - i), errs[i]);
                cr_assert(st == WEFT_OK || st == WEFT_ENOMEM);
                failures += st != WEFT_OK;
                added += st == WEFT_OK;
                cr_assert_eq(weft_errgroup_count(g), added);
            }
            st = weft_errgroup_create(&child, "child");
            if (st == WEFT_OK) {
                st = weft_errgroup_add_group(g, 0, child);
                failures += st != WEFT_OK;
                cr_assert_eq(weft__errgroup_is_frozen(child), st == WEFT_OK);
                weft_errgroup_release(child);
            } else {
                cr_assert_eq(st, WEFT_ENOMEM);
                cr_assert_null(child);
                failures++;
            }
        } else {
            cr_assert_eq(st, WEFT_ENOMEM);
            cr_assert_null(g);
            failures++;
        }
        weft__alloc_set_fail_after(-1);
        bool fired = weft__alloc_failures() != before;
        cr_assert_eq(failures, fired ? 1 : 0, "k=%ld", k);
        if (g != NULL) {
            weft_errgroup_release(g);
        }
        cr_assert_eq(weft__alloc_live(), base, "k=%ld leaked", k);
        reached_end = !fired;
    }
    cr_assert(reached_end);
    cr_assert_gt(k, 5, "the scenario allocates several times");
    for (int i = 0; i < 9; i++) {
        weft_error_release(errs[i]);
    }
    leak_check_end();
}

/* split and flatten under every allocation failure: all or nothing. */
Test(errgroup, split_and_flatten_fail_cleanly_at_every_allocation)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    /* Widen the sample so the entry arrays of the results grow. */
    for (int i = 0; i < 6; i++) {
        add(top, (uint64_t)(10 + i), i % 2 ? WEFT_EUSER : WEFT_ETIMEDOUT,
            "w");
    }
    char expect_m[4096];
    char expect_r[4096];
    char expect_f[4096];
    weft_errgroup_t *m = NULL;
    weft_errgroup_t *r = NULL;
    weft_errgroup_t *f = NULL;
    weft_errgroup_split(top, is_timeout, NULL, &m, &r);
    weft_errgroup_flatten(top, &f);
    weft_errgroup_format(m, expect_m, sizeof(expect_m));
    weft_errgroup_format(r, expect_r, sizeof(expect_r));
    weft_errgroup_format(f, expect_f, sizeof(expect_f));
    weft_errgroup_release(m);
    weft_errgroup_release(r);
    weft_errgroup_release(f);
    int64_t base = weft__alloc_live();

    int fired_count = 0;
    for (long k = 0; k < 100; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        weft_status_t st = weft_errgroup_split(top, is_timeout, NULL, &m, &r);
        weft__alloc_set_fail_after(-1);
        bool fired = weft__alloc_failures() != before;
        if (!fired) {
            cr_assert_eq(st, WEFT_OK);
            cr_assert_str_eq(tree(m), expect_m);
            cr_assert_str_eq(tree(r), expect_r);
            weft_errgroup_release(m);
            weft_errgroup_release(r);
            cr_assert_eq(weft__alloc_live(), base);
            break;
        }
        fired_count++;
        cr_assert_eq(st, WEFT_ENOMEM, "k=%ld", k);
        cr_assert_null(m);
        cr_assert_null(r);
        cr_assert_eq(weft__alloc_live(), base, "k=%ld leaked", k);
    }
    cr_assert_gt(fired_count, 4);

    fired_count = 0;
    for (long k = 0; k < 100; k++) {
        uint64_t before = weft__alloc_failures();
        weft__alloc_set_fail_after(k);
        weft_status_t st = weft_errgroup_flatten(top, &f);
        weft__alloc_set_fail_after(-1);
        if (weft__alloc_failures() == before) {
            cr_assert_eq(st, WEFT_OK);
            cr_assert_str_eq(tree(f), expect_f);
            weft_errgroup_release(f);
            break;
        }
        fired_count++;
        cr_assert_eq(st, WEFT_ENOMEM, "k=%ld", k);
        cr_assert_null(f);
        cr_assert_eq(weft__alloc_live(), base, "k=%ld leaked", k);
    }
    cr_assert_gt(fired_count, 2);
    weft_errgroup_release(top);
    leak_check_end();
}

Test(errgroup, shared_group_outlives_its_builder_reference)
{
    leak_check_begin();
    weft_errgroup_t *top = sample();
    weft_errgroup_retain(top);
    weft_errgroup_release(top);
    cr_assert_eq(weft_errgroup_leaf_count(top), 4);
    weft_errgroup_release(top);
    leak_check_end();
}
