#!/bin/sh
# lint_sync_comments.sh - every sync point says what it synchronizes with.
#
# Usage:
#   tests/lint_sync_comments.sh REPO_ROOT   self-test, then lint REPO_ROOT
#   tests/lint_sync_comments.sh --self-test  self-test only
#
# The sync-comment rule (CONTRIBUTING.md): every fence, CAS and other
# ordering operation in primitives/ and executor/ carries a comment in one
# of three forms,
#
#   Pairs with: <the counterpart access, by function and access>
#   Relaxed: <why no ordering is needed>
#   Unpaired: <why there is no counterpart, e.g. init before sharing>
#
# within the 6 lines above it (or at the end of its own line). A tag with
# nothing after it does not count, so a bare "Pairs with:" fails just like
# a comment such as "barrier". The rule is modelled on checkpatch.pl's
# "memory barrier without comment", but asks for the counterpart.
#
# Sync points are calls of
#   ck_pr_fence_*, ck_pr_cas_*, ck_pr_fas_*, ck_pr_faa_*
# and of the named-ordering layer in primitives/atomics.h:
#   weft__fence_*, weft__cas_*, weft__fas_*, weft__faa_*, weft__fetch_or_*,
#   weft__store_rel_*, weft__load_acq_*
# primitives/atomics.h itself is skipped: it defines those helpers, and
# their callers carry the comments. Text inside comments and string
# literals is ignored, so a "Pairs with: weft__fence_sc_loads()" line is
# not itself a sync point.
#
# Exit status: 0 clean, 1 findings (printed as file:line) or a failed
# self-test, 2 usage error. POSIX sh and awk only (Debian's mawk is fine).
# Registered in CTest by tests/CMakeLists.txt under the label "lint"; the
# self-test runs first so that a lint that has silently stopped matching
# anything fails instead of passing.

LINT_WINDOW=6

# lint_file PATH NAME: print findings for one file as NAME:LINE: ...,
# then a line "@@ N" with the number of sync points seen. Exit 1 when a
# sync point lacks its comment.
lint_file()
{
    awk -v name="$2" -v window="$LINT_WINDOW" '
    function issync(s) {
        return match(s, /(^|[^A-Za-z0-9_])(ck_pr_(fence|cas|fas|faa)_|weft__(fence|cas|fas|faa|fetch_or|store_rel|load_acq)_)[A-Za-z0-9_]*/)
    }
    # A tag counts when text follows it, on its line or (when the tag ends
    # the line) on the next comment line, but not past the sync point.
    function tagged(j, k,    s, rest) {
        s = cmts[j]
        if (!match(s, /(Pairs with|Relaxed|Unpaired):/)) {
            return 0
        }
        rest = substr(s, RSTART + RLENGTH)
        if (rest ~ /[^ \t*\/]/) {
            return 1
        }
        return j < k && cmts[j + 1] ~ /[^ \t*\/]/
    }
    BEGIN { incomment = 0 }
    {
        line = $0
        code = ""
        cmt = ""
        n = length(line)
        i = 1
        while (i <= n) {
            c = substr(line, i, 1)
            if (incomment) {
                if (c == "*" && substr(line, i + 1, 1) == "/") {
                    incomment = 0
                    cmt = cmt " "
                    i += 2
                    continue
                }
                cmt = cmt c
                i++
                continue
            }
            if (c == "/" && substr(line, i + 1, 1) == "*") {
                incomment = 1
                code = code " "
                i += 2
                continue
            }
            if (c == "/" && substr(line, i + 1, 1) == "/") {
                cmt = cmt substr(line, i + 2)
                break
            }
            if (c == "\"" || c == "\047") {
                # A string or character literal: skip it, escapes included.
                q = c
                code = code " "
                i++
                while (i <= n) {
                    d = substr(line, i, 1)
                    if (d == "\\") {
                        i += 2
                        continue
                    }
                    i++
                    if (d == q) {
                        break
                    }
                }
                continue
            }
            code = code c
            i++
        }
        codes[NR] = code
        cmts[NR] = cmt
        src[NR] = line
    }
    END {
        bad = 0
        count = 0
        for (k = 1; k <= NR; k++) {
            if (!issync(codes[k])) {
                continue
            }
            count++
            what = substr(codes[k], RSTART, RLENGTH)
            sub(/^[^A-Za-z_]/, "", what)
            ok = 0
            for (j = k; j >= 1 && j >= k - window; j--) {
                if (tagged(j, k)) {
                    ok = 1
                    break
                }
            }
            if (!ok) {
                text = src[k]
                sub(/^[ \t]+/, "", text)
                printf "%s:%d: %s has no \"Pairs with:\", \"Relaxed:\" or \"Unpaired:\" comment in the %d lines above: %s\n", name, k, what, window, text
                bad = 1
            }
        }
        printf "@@ %d\n", count
        exit bad
    }' "$1"
}

# lint_tree ROOT: lint primitives/ and executor/ under ROOT.
lint_tree()
{
    lt_root=$1
    if [ ! -d "$lt_root/primitives" ]; then
        echo "lint_sync_comments: $lt_root/primitives: no such directory" >&2
        return 2
    fi
    lt_dirs="$lt_root/primitives"
    if [ -d "$lt_root/executor" ]; then
        lt_dirs="$lt_dirs $lt_root/executor"
    fi
    lt_status=0
    lt_files=0
    lt_points=0
    lt_out=$(mktemp) || return 2
    # Paths under primitives/ and executor/ never contain newlines.
    # shellcheck disable=SC2086
    for f in $(find $lt_dirs -type f \( -name '*.c' -o -name '*.h' \) | sort); do
        rel=${f#"$lt_root"/}
        if [ "$rel" = "primitives/atomics.h" ]; then
            continue
        fi
        lt_files=$((lt_files + 1))
        if ! lint_file "$f" "$rel" >"$lt_out"; then
            lt_status=1
        fi
        grep -v '^@@ ' "$lt_out"
        n=$(sed -n 's/^@@ //p' "$lt_out")
        lt_points=$((lt_points + ${n:-0}))
    done
    rm -f "$lt_out"
    if [ "$lt_status" -eq 0 ]; then
        echo "lint_sync_comments: $lt_points sync points in $lt_files files, all commented"
    else
        echo "lint_sync_comments: the sync points above need a" \
            "Pairs with:/Relaxed:/Unpaired: comment (CONTRIBUTING.md)"
    fi
    return "$lt_status"
}

# self_test: a tree with known good and bad sync points must give exactly
# the expected findings, and the good half alone must pass.
self_test()
{
    st_dir=$(mktemp -d) || return 1
    mkdir -p "$st_dir/primitives" "$st_dir/executor"

    # Definitions of the helpers: skipped, so never flagged.
    cat >"$st_dir/primitives/atomics.h" <<'EOF'
static inline void
weft__fence_rel(void)
{
    ck_pr_fence_release();
}
EOF

    cat >"$st_dir/primitives/good.c" <<'EOF'
void
good(void)
{
    /*
     * Publish the slot before the index.
     * Pairs with: weft__load_acq_u32(&q->tail) in q_take(); the tag is
     * six lines above the store, the edge of the window.
     * (padding)
     */
    weft__store_rel_u32(&q->tail, t + 1);
    (void)ck_pr_fas_32(&w, 1); /* Unpaired: nobody reads w yet. */
    /* Relaxed: a statistics counter. */
    ck_pr_faa_64(&stats, 1);
    /*
     * Pairs with:
     * the xchg in q_pop() (a tag may end its line).
     */
    ck_pr_fence_store_load();
    /* A comment that names weft__cas_u32() is not a sync point. */
    puts("neither is a string: ck_pr_fence_memory()");
}
EOF

    cat >"$st_dir/primitives/bad.c" <<'EOF'
void
bad(void)
{
    ck_pr_fence_store_load();
    /* barrier */
    if (weft__cas_u32(&q->top, t, t + 1)) {
        return;
    }
    /* Pairs with: */
    weft__fetch_or_u32(&f->state, 1);
    /* Relaxed: seven lines above is too far. */
    x = 1;
    x = 2;
    x = 3;
    x = 4;
    x = 5;
    x = 6;
    ck_pr_cas_ptr(&p, NULL, q);
    puts("Relaxed: a string is not a comment");
    weft__load_acq_u64(&q->head);
}
EOF

    cat >"$st_dir/executor/bad.h" <<'EOF'
#define WEFT__PUBLISH(p, v) weft__store_rel_ptr((p), (v))
EOF

    cat >"$st_dir/expected" <<'EOF'
executor/bad.h:1
primitives/bad.c:10
primitives/bad.c:18
primitives/bad.c:20
primitives/bad.c:4
primitives/bad.c:6
EOF

    st_ok=1
    lint_tree "$st_dir" >"$st_dir/out" 2>&1
    st_rc=$?
    if [ "$st_rc" -ne 1 ]; then
        echo "self-test: expected exit 1 on the bad tree, got $st_rc" >&2
        st_ok=0
    fi
    grep -E '^[a-z]+/[a-z]+\.[ch]:[0-9]+:' "$st_dir/out" | cut -d: -f1,2 |
        sort >"$st_dir/got"
    if ! cmp -s "$st_dir/expected" "$st_dir/got"; then
        echo "self-test: findings differ from the expected ones" >&2
        echo "--- expected" >&2
        cat "$st_dir/expected" >&2
        echo "--- got" >&2
        cat "$st_dir/out" >&2
        st_ok=0
    fi

    rm -f "$st_dir/primitives/bad.c" "$st_dir/executor/bad.h"
    if ! lint_tree "$st_dir" >"$st_dir/out" 2>&1; then
        echo "self-test: the good tree was flagged:" >&2
        cat "$st_dir/out" >&2
        st_ok=0
    elif ! grep -q '^lint_sync_comments: 4 sync points in 1 files' \
        "$st_dir/out"; then
        echo "self-test: expected 4 sync points in good.c:" >&2
        cat "$st_dir/out" >&2
        st_ok=0
    fi

    rm -rf "$st_dir"
    [ "$st_ok" -eq 1 ]
}

case "${1:-}" in
--self-test)
    if self_test; then
        echo "lint_sync_comments: self-test passed"
        exit 0
    fi
    echo "lint_sync_comments: self-test FAILED" >&2
    exit 1
    ;;
"" | -h | --help)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    [ -n "${1:-}" ] && exit 0
    exit 2
    ;;
esac

if [ ! -d "$1" ]; then
    echo "lint_sync_comments: $1: not a directory" >&2
    exit 2
fi
if ! self_test; then
    echo "lint_sync_comments: self-test FAILED; the lint cannot be trusted" >&2
    exit 1
fi
lint_tree "$(cd "$1" && pwd)"
