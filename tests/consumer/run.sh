#!/usr/bin/env bash
# tests/consumer/run.sh - install a weft build and consume it as an
# application would.
#
# Usage: tests/consumer/run.sh BUILD_DIR
#
# BUILD_DIR is a configured and built weft tree with WEFT_INSTALL on (the
# default at top level). In a temporary directory this script
#
#   1. installs BUILD_DIR into a fresh prefix (cmake --install --prefix)
#      and checks the installed files, the SONAME and the exported
#      symbols of libweft.so (every public weft_* function of libweft.a,
#      nothing else);
#   2. builds tests/consumer with find_package(weft CONFIG), against
#      weft::weft (shared) and weft::weft_static;
#   3. builds consumer.c with a plain cc line from
#      `pkg-config --cflags --libs weft`, shared, and static from the
#      --static flags (Libs.private);
#   4. builds tests/consumer with add_subdirectory() of this source tree;
#
# and runs each program, which must print "task value 42" and report its
# workers pinned: on Linux pin_workers works with hwloc (WEFT_WITH_HWLOC
# on) and without it (sysfs), so the embedded build of step 4, which has
# no hwloc, pins too. Exit status 0 when every step passed. CTest
# runs it as install_consumer (label install; tests/run.sh install).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -f "$1/CMakeCache.txt" ]; then
    echo "usage: $0 BUILD_DIR (a configured and built weft tree)" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-consumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cc=${CC:-cc}
jobs=$(nproc 2>/dev/null || echo 2)

steps=0
fail()
{
    echo "FAILED: $*" >&2
    exit 1
}
step()
{
    steps=$((steps + 1))
    echo "== $steps. $*"
}

want_workers="workers pinned"

# run_consumer PROGRAM [ENV...]: run it and check its line.
run_consumer()
{
    local prog=$1 out
    shift
    out=$(env "$@" "$prog") || fail "$prog exited non-zero: $out"
    echo "   $out"
    case "$out" in
    *"task value 42; $want_workers;"*) ;;
    *) fail "$prog printed '$out', expected 'task value 42; $want_workers'" ;;
    esac
}

# ---------------------------------------------------------------------------
step "install $build into $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
    { cat "$tmp/install.log"; fail "cmake --install"; }
so=$(find "$prefix" -name 'libweft.so.*.*.*' -type f | head -n 1)
[ -n "$so" ] || fail "no libweft.so.X.Y.Z installed"
libdir=$(dirname "$so")
for f in "$prefix/include/weft.h" "$prefix/include/weft/export.h" \
    "$prefix/include/weft/alloc.h" "$libdir/libweft.a" \
    "$libdir/libweft.so" "$libdir/libweft.so.0" \
    "$libdir/pkgconfig/weft.pc" "$libdir/cmake/weft/weftConfig.cmake" \
    "$libdir/cmake/weft/weftConfigVersion.cmake" \
    "$libdir/cmake/weft/weftTargets.cmake"; do
    [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
for h in "$root"/include/weft/*.h; do
    [ -e "$prefix/include/weft/$(basename "$h")" ] ||
        fail "header not installed: weft/$(basename "$h")"
done
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libweft.so.0 ] || fail "SONAME is '$soname', not libweft.so.0"
echo "   $(basename "$so"), SONAME $soname, libweft.a, headers, CMake package, weft.pc"

step "exports of libweft.so"
nm -D --defined-only "$so" | awk '{ print $3 }' | sort -u >"$tmp/exported"
nm "$libdir/libweft.a" 2>/dev/null | awk '$2 == "T" { print $3 }' |
    grep -E '^weft_[a-z]' | sort -u >"$tmp/public"
# The three internal symbols that weft/frame.h's inline fork and join
# reach (ABI, not API; CONTRIBUTING.md) are the only other exports.
printf '%s\n' weft__frame_fork_publish weft__frame_join_settle \
    weft__tls_frame_worker >>"$tmp/public"
sort -u -o "$tmp/public" "$tmp/public"
missing=$(comm -13 "$tmp/exported" "$tmp/public")
extra=$(comm -23 "$tmp/exported" "$tmp/public")
[ -z "$missing" ] || fail "public functions not exported (WEFT_API missing?): $missing"
[ -z "$extra" ] || fail "exported but not public: $extra"
echo "   $(wc -l <"$tmp/exported") functions, all weft_*, none missing"

# ---------------------------------------------------------------------------
for link in shared static; do
    step "find_package(weft CONFIG), weft::$([ $link = shared ] && echo weft || echo weft_static)"
    b=$tmp/find-$link
    static=$([ $link = static ] && echo ON || echo OFF)
    cmake -S "$here" -B "$b" -DCMAKE_PREFIX_PATH="$prefix" \
        -DWEFT_CONSUMER_STATIC="$static" >"$b.log" 2>&1 ||
        { cat "$b.log"; fail "configure ($link)"; }
    cmake --build "$b" -j"$jobs" >>"$b.log" 2>&1 ||
        { cat "$b.log"; fail "build ($link)"; }
    if readelf -d "$b/consumer" | grep -q 'libweft\.so'; then
        [ $link = shared ] || fail "the static consumer needs libweft.so"
    else
        [ $link = static ] || fail "the shared consumer does not use libweft.so"
    fi
    run_consumer "$b/consumer"
done

# ---------------------------------------------------------------------------
step "pkg-config, shared: $cc \$(pkg-config --cflags --libs weft)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
cflags=$(pkg-config --cflags weft)
libs=$(pkg-config --libs weft)
case " $cflags " in
*" -D__x86_64__ "*) fail "weft.pc leaks ck's Cflags: $cflags" ;;
esac
echo "   cflags: $cflags"
echo "   libs:   $libs"
# shellcheck disable=SC2086 # word splitting of pkg-config output is intended
"$cc" -std=c11 "$here/consumer.c" $cflags $libs -Wl,-rpath,"$libdir" \
    -o "$tmp/pc-shared" || fail "cc with pkg-config (shared)"
run_consumer "$tmp/pc-shared"

step "pkg-config, static: libweft.a and pkg-config --static --libs"
slibs=$(pkg-config --static --libs weft)
echo "   libs:   $slibs"
# -l:libweft.a picks the archive even though libweft.so sits beside it.
static_libs=()
for w in $slibs; do
    if [ "$w" = -lweft ]; then
        static_libs+=(-l:libweft.a)
    else
        static_libs+=("$w")
    fi
done
# shellcheck disable=SC2086
"$cc" -std=c11 "$here/consumer.c" $cflags "${static_libs[@]}" \
    -o "$tmp/pc-static" || fail "cc with pkg-config --static"
if readelf -d "$tmp/pc-static" | grep -q 'libweft\.so'; then
    fail "the static pkg-config build needs libweft.so"
fi
run_consumer "$tmp/pc-static"

# ---------------------------------------------------------------------------
step "add_subdirectory($root)"
b=$tmp/subdir
cmake -S "$here" -B "$b" -DWEFT_CONSUMER_SUBDIRECTORY=ON \
    -DWEFT_SOURCE_DIR="$root" >"$b.log" 2>&1 ||
    { cat "$b.log"; fail "configure (add_subdirectory)"; }
cmake --build "$b" -j"$jobs" >>"$b.log" 2>&1 ||
    { cat "$b.log"; fail "build (add_subdirectory)"; }
[ ! -d "$b/weft/tests" ] || fail "an embedded weft built its tests"
# An embedded weft has no hwloc unless the parent asks for it, and still
# pins its workers (sysfs).
grep -q '^WEFT_WITH_HWLOC:BOOL=OFF' "$b/CMakeCache.txt" ||
    fail "an embedded weft turned hwloc on by itself"
run_consumer "$b/consumer"

echo "consumer: $steps steps passed"
