#!/bin/sh
# mutate.sh - write a copy of real primitives/ sources with one seeded bug,
# for the model checker to find.
#
# Usage:
#   tests/model/mutate.sh MUTANT PRIMITIVES_DIR OUT_DIR   write the mutant
#   tests/model/mutate.sh --list                          list the mutants
#
# Each mutant copies the files a model harness compiles (deque.h and
# deque.c, or parker.h and parker.c) from PRIMITIVES_DIR into OUT_DIR and
# replaces exact source lines inside one named function. The harness is
# then built with OUT_DIR first on its include path (tests/model/
# CMakeLists.txt), so the model checks the real code with only that
# change. The mutants:
#
#   deque_no_sl_barrier    pop: the exchange of bottom becomes a relaxed
#                          store and the fence after it goes (no store->load
#                          barrier between the store of bottom and the load
#                          of top)
#   deque_no_last_cas      pop: the last item is taken without the CAS on
#                          top (top is advanced with a plain store)
#   deque_no_push_release  push: bottom is published with a relaxed store
#                          instead of a release store
#   deque_no_publish_release  publish: the private items are made public
#                          with a relaxed store of bottom instead of a
#                          release store
#   deque_private_visible  push_private: the item is made visible to
#                          thieves at once with a relaxed store of bottom
#                          (a private push that leaks into the public part)
#   deque_no_grow_release  grow: the new buffer is published with a relaxed
#                          store instead of a release store
#   deque_unpublish_no_check  unpublish: the k items are taken private
#                          whatever top says (no look for a thief)
#   deque_unpublish_no_barrier  unpublish: the exchange of bottom becomes
#                          a relaxed store and the fence after it goes
#   deque_batch_no_margin  pop and unpublish: the owner keeps a margin of
#                          one item from top even while a batch thief is
#                          announced
#   deque_batch_no_announce  steal_batch: the batch thief does not announce
#                          itself (no faa on batchers)
#   parker_no_waker_fence  weft__parker_wake: no store->load fence between
#                          the caller's condition write and the load of
#                          sleepers (what weft__parker_wake_hint does)
#   parker_no_sleeper_fence  weft__parker_prepare: no fence after the
#                          registering faa (free on x86, needed on weaker
#                          models)
#
# A replacement that does not match exactly once in its function is an
# error (exit 1, naming the line): when the real source changes, the
# mutant must be updated by hand, never silently become the real code.
# tests/model/check_drift.sh runs every mutant this way as a lint.
# POSIX sh and awk.
set -eu

mutants="deque_no_sl_barrier deque_no_last_cas deque_no_push_release
deque_no_publish_release deque_private_visible deque_no_grow_release
deque_unpublish_no_check deque_unpublish_no_barrier deque_batch_no_margin
deque_batch_no_announce parker_no_waker_fence
parker_no_sleeper_fence"

if [ "${1:-}" = --list ]; then
    for m in $mutants; do echo "$m"; done
    exit 0
fi
if [ $# -ne 3 ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
mutant=$1
src=$2
out=$3

# replace FILE FUNCTION OLD NEW: in OUT_DIR/FILE, inside the definition of
# FUNCTION (from the line that starts with "FUNCTION(" to the next line
# that is "}"), replace the line whose text without leading blanks is
# exactly OLD by NEW (same indentation). Fails unless exactly one line
# matched.
replace()
{
    r_file=$out/$1
    awk -v fn="$2" -v old="$3" -v new="$4" '
    BEGIN { infn = 0; hits = 0 }
    {
        line = $0
        if (index(line, fn "(") == 1 && line !~ /;[ \t]*$/) { infn = 1 }
        if (infn) {
            body = line
            sub(/^[ \t]+/, "", body)
            if (body == old) {
                indent = substr(line, 1, length(line) - length(body))
                line = indent new
                hits++
            }
            if (line == "}") { infn = 0 }
        }
        print line
    }
    END { if (hits != 1) { exit 3 } }' "$r_file" >"$r_file.tmp" || {
        echo "mutate.sh: $mutant: in $1, function $2: expected exactly one" \
            "line '$3'; the real source changed: update" \
            "tests/model/mutate.sh" >&2
        rm -f "$r_file.tmp"
        exit 1
    }
    mv "$r_file.tmp" "$r_file"
}

copy()
{
    mkdir -p "$out"
    for f in "$@"; do
        if [ ! -f "$src/$f" ]; then
            echo "mutate.sh: $src/$f: no such file" >&2
            exit 1
        fi
        cp "$src/$f" "$out/$f"
    done
}

case "$mutant" in
deque_no_sl_barrier)
    copy deque.h deque.c
    replace deque.h weft__deque_pop_public \
        '(void)weft__fas_i64(&dq->bottom, b);' \
        'weft__store_relaxed_i64(&dq->bottom, b); /* MUTANT: was an exchange */'
    replace deque.h weft__deque_pop_public \
        'weft__fence_rmw_load();' \
        '/* MUTANT: weft__fence_rmw_load() removed */'
    ;;
deque_no_last_cas)
    copy deque.h deque.c
    replace deque.h weft__deque_pop_public \
        'if (!weft__cas_i64(&dq->top, t, t + 1)) {' \
        'if ((weft__store_relaxed_i64(&dq->top, t + 1), false)) { /* MUTANT */'
    ;;
deque_no_push_release)
    copy deque.h deque.c
    replace deque.h weft__deque_try_push \
        'weft__store_rel_i64(&dq->bottom, b + 1);' \
        'weft__store_relaxed_i64(&dq->bottom, b + 1); /* MUTANT: was release */'
    ;;
deque_no_publish_release)
    copy deque.h deque.c
    replace deque.c deque_publish_to \
        'weft__store_rel_i64(&dq->bottom, nb);' \
        'weft__store_relaxed_i64(&dq->bottom, nb); /* MUTANT: was release */'
    ;;
deque_private_visible)
    copy deque.h deque.c
    replace deque.h weft__deque_try_push_private \
        'dq->head = h + 1;' \
        'dq->head = h + 1; weft__store_relaxed_i64(&dq->bottom, h + 1); /* MUTANT */'
    ;;
deque_no_grow_release)
    copy deque.h deque.c
    replace deque.c weft__deque_grow \
        'weft__store_rel_ptr((void **)&dq->buf, a);' \
        'weft__store_relaxed_ptr((void **)&dq->buf, a); /* MUTANT: release */'
    ;;
deque_unpublish_no_check)
    copy deque.h deque.c
    replace deque.h weft__deque_unpublish \
        'if (clear) {' \
        'if (true) { /* MUTANT: no look for a thief */'
    ;;
deque_unpublish_no_barrier)
    copy deque.h deque.c
    replace deque.h weft__deque_unpublish \
        '(void)weft__fas_i64(&dq->bottom, nb);' \
        'weft__store_relaxed_i64(&dq->bottom, nb); /* MUTANT: was an exchange */'
    replace deque.h weft__deque_unpublish \
        'weft__fence_rmw_load();' \
        '/* MUTANT: weft__fence_rmw_load() removed */'
    ;;
deque_batch_no_margin)
    copy deque.h deque.c
    replace deque.h weft__deque_out_of_reach \
        'return *t < i && (batchers == 0 || *t + WEFT__STEAL_BATCH_MAX <= i);' \
        'return *t < i; /* MUTANT: no margin for a batch thief */'
    ;;
deque_batch_no_announce)
    copy deque.h deque.c
    replace deque.h weft__deque_steal_batch \
        '(void)weft__faa_u32(&dq->batchers, 1);' \
        '/* MUTANT: the batch is not announced */'
    replace deque.h weft__deque_steal_batch \
        '(void)weft__faa_u32(&dq->batchers, (uint32_t)-1);' \
        '/* MUTANT: nor left */'
    ;;
parker_no_waker_fence)
    copy parker.h parker.c
    replace parker.c weft__parker_wake \
        'weft__fence_store_load();' \
        '/* MUTANT: weft__fence_store_load() removed */'
    ;;
parker_no_sleeper_fence)
    copy parker.h parker.c
    replace parker.c weft__parker_prepare \
        'weft__fence_rmw_load();' \
        '/* MUTANT: weft__fence_rmw_load() removed */'
    ;;
*)
    echo "mutate.sh: unknown mutant '$mutant' (--list)" >&2
    exit 2
    ;;
esac
