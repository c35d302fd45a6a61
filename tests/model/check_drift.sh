#!/bin/sh
# check_drift.sh - fail when the Relacy models no longer match the code.
#
# Usage: tests/model/check_drift.sh REPO_ROOT [CK_EC_H]
#
# The models compile the real primitives/deque.{h,c} and primitives/
# parker.c, so those cannot drift from the model. What can drift, and is
# checked here:
#
#  1. The seeded mutants: each one replaces exact lines in a named
#     function (tests/model/mutate.sh). Every mutant must still apply, and
#     must change the file, or a change in primitives/ has made the
#     mutant meaningless.
#  2. The named-ordering layer: every operation that primitives/atomics.h
#     defines (in its ck_pr mapping and in its __atomic mapping, found by
#     preprocessing the header both ways with $CC, default cc) must have a
#     Relacy mapping, a "#define NAME(" in
#     tests/model/relacy/weft_model_atomics.hpp. A new operation without
#     one fails here before some primitive starts using it.
#  3. The ck_ec64 mirror (tests/model/relacy/ck_ec.h): the SHA-256 of the
#     installed <ck_ec.h> (CK_EC_H, default: found through pkg-config ck,
#     else /usr/include/ck_ec.h) must equal WEFT_MODEL_CK_EC_H_SHA256 in
#     the mirror. A new ck release fails here until someone re-reads ck's
#     ck_ec.h and src/ck_ec.c against the mirror and updates the hash.
#
# Registered in CTest as model_drift (labels "model" and "lint") by
# tests/model/CMakeLists.txt. Exit status: 0 clean, 1 drift (each finding
# printed), 2 usage. POSIX sh.

if [ $# -lt 1 ] || [ ! -d "$1/primitives" ]; then
    sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
root=$(cd "$1" && pwd)
model=$root/tests/model
ck_ec_h=${2:-}
if [ -z "$ck_ec_h" ]; then
    inc=$(pkg-config --variable=includedir ck 2>/dev/null)
    ck_ec_h=${inc:-/usr/include}/ck_ec.h
fi
cc=${CC:-cc}

bad=0
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

# 1. Mutants.
nmut=0
for m in $(sh "$model/mutate.sh" --list); do
    if ! sh "$model/mutate.sh" "$m" "$root/primitives" "$tmp/$m" \
        2>"$tmp/err"; then
        cat "$tmp/err"
        echo "check_drift: mutant $m no longer applies"
        bad=1
        continue
    fi
    changed=0
    for f in "$tmp/$m"/*; do
        if ! cmp -s "$f" "$root/primitives/${f##*/}"; then
            changed=1
        fi
    done
    if [ "$changed" -eq 0 ]; then
        echo "check_drift: mutant $m changes nothing"
        bad=1
    fi
    nmut=$((nmut + 1))
done

# 2. Operations of atomics.h without a Relacy mapping.
ck_cflags=$(pkg-config --cflags-only-I ck 2>/dev/null)
: >"$tmp/ops"
for variant in "" -DWEFT_ATOMICS_BUILTIN; do
    # shellcheck disable=SC2086
    if ! "$cc" -E -P $ck_cflags $variant -I"$root/primitives" \
        "$root/primitives/atomics.h" >"$tmp/pp" 2>"$tmp/err"; then
        cat "$tmp/err"
        echo "check_drift: cannot preprocess primitives/atomics.h with" \
            "$cc $variant"
        bad=1
        continue
    fi
    grep -o 'weft__[a-z0-9_]*[ ]*(' "$tmp/pp" | sed 's/[ (]*$//' >>"$tmp/ops"
done
sort -u "$tmp/ops" | grep -v '^weft__perturb$' >"$tmp/ops.sorted"
nops=0
while read -r op; do
    nops=$((nops + 1))
    if ! grep -q "^#define $op(" "$model/relacy/weft_model_atomics.hpp"; then
        echo "check_drift: primitives/atomics.h defines $op, which" \
            "tests/model/relacy/weft_model_atomics.hpp does not map"
        bad=1
    fi
done <"$tmp/ops.sorted"
if [ "$nops" -lt 20 ]; then
    echo "check_drift: found only $nops operations in atomics.h; the" \
        "extraction is broken"
    bad=1
fi

# 3. The ck_ec64 mirror.
want=$(sed -n 's/^#define WEFT_MODEL_CK_EC_H_SHA256 "\([0-9a-f]*\)"$/\1/p' \
    "$model/relacy/ck_ec.h")
if [ ! -f "$ck_ec_h" ]; then
    echo "check_drift: $ck_ec_h: no such file (libck-dev)"
    bad=1
else
    got=$(sha256sum "$ck_ec_h" | cut -d' ' -f1)
    if [ -z "$want" ] || [ "$got" != "$want" ]; then
        echo "check_drift: $ck_ec_h has SHA-256 $got, but the mirror" \
            "tests/model/relacy/ck_ec.h was written against ${want:-?}:" \
            "re-read ck's ck_ec.h and src/ck_ec.c against the mirror," \
            "then update WEFT_MODEL_CK_EC_H_SHA256"
        bad=1
    fi
fi

if [ "$bad" -ne 0 ]; then
    echo "check_drift: the models have drifted from the code (see above)"
    exit 1
fi
echo "check_drift: $nmut mutants apply; $nops atomics.h operations all" \
    "mapped; $ck_ec_h matches the ck_ec64 mirror"
exit 0
