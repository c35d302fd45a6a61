#!/usr/bin/env bash
# tests/run.sh - build weft in every test configuration and run its suites.
#
# Usage: tests/run.sh [quick | all | CONFIG...]
#
#   (none), all  every configuration below, in this order
#   quick        the default configuration only
#   CONFIG...    the named ones: default asan tsan tsan-gcc small perturb
#                install fuzz model
#
# Configurations (each in its own build directory at the repository root):
#
#   default   build-ci           RelWithDebInfo, -Werror; ctest: every label
#                                (unit, stress, lint)
#   asan      build-ci-asan      ASan+UBSan (gcc); ctest -L 'unit|stress'
#   tsan      build-ci-tsan      TSan with clang; only the stress programs
#                                are built (Criterion 2.4.1 aborts under
#                                TSan, Snaipe/Criterion#274); ctest -L stress
#   tsan-gcc  build-ci-tsan-gcc  TSan with gcc 12; ctest -L stress
#   small     build-ci-small     WEFT_TEST_SMALL_CAPACITY=ON (deques start at
#                                2 slots, so grow and wrap-around paths run
#                                all the time); ctest -L 'unit|stress'
#   perturb   build-ci-perturb   WEFT_PERTURB=ON: every atomic operation may
#                                yield the thread (seeded, WEFT_SEED), the C
#                                stand-in for a model checker's preemption;
#                                ctest -L stress
#   install   build-ci-install   the libraries alone, with hwloc
#                                (WEFT_WITH_HWLOC=ON); ctest -L install:
#                                tests/consumer/run.sh installs the build
#                                into a temporary prefix and builds and runs
#                                a consumer through find_package (shared and
#                                static), pkg-config (shared and static) and
#                                add_subdirectory; Doxygen builds the API
#                                reference from include/ with warnings as
#                                errors. Selecting it also installs Open
#                                MPI, so a full run builds and runs
#                                examples/mpi_fanout.c in the default
#                                configuration.
#   fuzz      build-ci-fuzz      clang, ASan+UBSan, WEFT_FUZZ=ON: builds only
#                                the libFuzzer targets of tests/fuzz/ and
#                                runs each for WEFT_FUZZ_SECONDS (20 s) from
#                                its committed seed corpus (tests/fuzz/
#                                corpus/<target>/) and the corpus earlier
#                                runs left in the build tree; ctest -L fuzz.
#                                A crash fails the test and leaves its input
#                                in build-ci-fuzz/tests/fuzz/crash-*.
#   model     build-ci-model     WEFT_BUILD_MODEL=ON (g++, relacy-dev): builds
#                                only the Relacy model programs of
#                                tests/model/ (the real deque and parker
#                                sources compiled against a Relacy mapping
#                                of primitives/atomics.h, plus seeded
#                                mutants); ctest -L model: each real model
#                                must pass, each mutant must be caught, and
#                                model_drift checks that the models still
#                                match the code (docs/memory-model.md,
#                                "Model checking")
#
# As root on Debian (CI, a fresh container) it installs the packages it
# needs with apt-get; otherwise it prints the apt-get line and exits 1.
# Build directories are reused, so a second run only rebuilds what changed.
#
# Output: each configuration's configure/build/ctest output, then a summary
# with one line per configuration, and finally one line of the form
#
#   T passed, F failed
#
# counting CTest tests over all configurations (taken from each ctest
# run's "NN% tests passed, F tests failed out of N" line). A configuration
# that fails to configure or build, or whose ctest run ends without that
# line, counts as one failed test, so F is 0 exactly when everything
# passed. Exit status: 0 when F is 0, 1 otherwise.
#
# Nothing here depends on timing: no step is killed after a deadline
# except by the per-test TIMEOUT properties in tests/CMakeLists.txt, and
# pass/fail is whatever the tests report.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

all_configs=(default asan tsan tsan-gcc small perturb install fuzz model)

usage()
{
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

configs=()
if [ $# -eq 0 ]; then
    configs=("${all_configs[@]}")
fi
for arg in "$@"; do
    case "$arg" in
    quick) configs+=(default) ;;
    all) configs+=("${all_configs[@]}") ;;
    default | asan | tsan | tsan-gcc | small | perturb | install | fuzz | model)
        configs+=("$arg")
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "tests/run.sh: unknown argument '$arg'" >&2
        usage >&2
        exit 2
        ;;
    esac
done

# ---------------------------------------------------------------------------
# Packages (Debian bookworm names).
#
# libclang-rt-dev holds clang's sanitizer runtimes; clang only recommends
# it, so an install without recommends would leave TSan unable to link.
# valgrind is part of the documented tool set for the suites and perf/.
# gcc's own ASan/UBSan/TSan runtimes come with build-essential (gcc-12).

need_pkgs=(build-essential cmake pkg-config libck-dev libcriterion-dev)
for c in "${configs[@]}"; do
    if [ "$c" != default ] && [ "$c" != install ] && [ "$c" != model ]; then
        need_pkgs+=(clang libclang-rt-dev valgrind)
        break
    fi
done
# default: matplotlib for /usr/bin/python3, so the trace_timeline test
# (perf/trace_timeline.py on a trace an example wrote) runs instead of
# skipping.
for c in "${configs[@]}"; do
    if [ "$c" = default ]; then
        need_pkgs+=(python3-matplotlib)
        break
    fi
done
# install: hwloc for pinning, Doxygen for the docs check, and Open MPI
# (about 60 MB installed) for examples/mpi_fanout.c.
for c in "${configs[@]}"; do
    if [ "$c" = install ]; then
        need_pkgs+=(libhwloc-dev doxygen libopenmpi-dev openmpi-bin)
        break
    fi
done

# model: Relacy, header-only C++ (g++ comes with build-essential).
for c in "${configs[@]}"; do
    if [ "$c" = model ]; then
        need_pkgs+=(relacy-dev)
        break
    fi
done

if command -v dpkg >/dev/null 2>&1; then
    missing=()
    for p in "${need_pkgs[@]}"; do
        if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -eq 0 ]; then
            echo "== installing: ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            if ! apt-get update || ! apt-get install -y "${missing[@]}"; then
                echo "tests/run.sh: apt-get failed" >&2
                exit 1
            fi
        else
            echo "tests/run.sh: missing packages. Install them with:" >&2
            echo "sudo apt-get install -y ${missing[*]}"
            exit 1
        fi
    fi
else
    echo "== no dpkg: not Debian; assuming these are installed:" \
        "${need_pkgs[*]}" >&2
fi

# ---------------------------------------------------------------------------
# Sanitizer settings.

asan_env=(
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
)
# halt_on_error: stop at the first report, so a race fails the test
# instead of scrolling past. second_deadlock_stack: lock-order reports
# show both acquisitions.
tsan_opts="halt_on_error=1:second_deadlock_stack=1"
if [ -s "$root/tests/tsan.supp" ]; then
    tsan_opts="$tsan_opts:suppressions=$root/tests/tsan.supp"
fi
tsan_env=("TSAN_OPTIONS=$tsan_opts")

# TSan (gcc 12, clang 14) cannot map its shadow memory when the kernel
# randomizes mmap with more than 28 bits (vm.mmap_rnd_bits = 32 on some
# newer kernels): it dies with "unexpected memory mapping" before main.
# Bookworm's own kernel uses 28. Where it is higher, run the sanitizer
# suites with address-space randomization off for that process tree
# (setarch -R) instead of changing the machine's sysctl.
san_wrap=()
rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)
if [ "$rnd_bits" -gt 28 ]; then
    if setarch "$(uname -m)" -R true 2>/dev/null; then
        san_wrap=(setarch "$(uname -m)" -R)
        echo "== vm.mmap_rnd_bits=$rnd_bits: sanitizer suites run under setarch -R"
    else
        echo "== warning: vm.mmap_rnd_bits=$rnd_bits and setarch -R is not" \
            "allowed here; TSan may fail at start-up" >&2
    fi
fi

jobs=$(nproc 2>/dev/null || echo 2)

# ---------------------------------------------------------------------------
# One configuration: configure, build, ctest.
#
# ctest runs with -j1: the stress programs and concurrency tests start
# several threads each and are written to use the whole machine; two at
# once on a 2-core runner halve each one's CPU, turn real parallel races
# into time-sliced ones (fewer interleavings of the kind the tests look
# for) and stretch the run towards the per-test timeouts. One test at a
# time keeps their results meaningful; the Criterion suites likewise run
# with --jobs 1 (tests/CMakeLists.txt).

names=()
results=()
passed_counts=()
failed_counts=()
secs=()

# A configuration may build a single target (fuzz: weft_fuzz) instead of
# everything; empty means everything.
build_target=

run_config()
{
    local name=$1 dir=$2 labels=$3
    shift 3
    local -a cmake_args=() env_args=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        cmake_args+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    env_args=("$@")

    local start=$SECONDS result passed=0 failed=0
    local log="$root/$dir/ci-ctest.log"
    echo
    echo "======== $name: $dir"
    echo "== cmake -S . -B $dir ${cmake_args[*]}"
    if ! cmake -S "$root" -B "$root/$dir" "${cmake_args[@]}"; then
        result="FAILED (configure)"
        failed=1
    elif ! cmake --build "$root/$dir" -j"$jobs" \
        ${build_target:+--target "$build_target"}; then
        result="FAILED (build)"
        failed=1
    else
        local -a ctest_args=(--test-dir "$root/$dir" --output-on-failure -j1)
        if [ -n "$labels" ]; then
            ctest_args+=(-L "$labels")
        fi
        local -a wrap=()
        if [ "$name" != default ] && [ "$name" != small ] &&
            [ "$name" != install ] && [ "$name" != model ]; then
            wrap=("${san_wrap[@]}")
        fi
        echo "== ${env_args[*]} ctest ${ctest_args[*]}"
        env "${env_args[@]}" "${wrap[@]}" ctest "${ctest_args[@]}" 2>&1 |
            tee "$log"
        local rc=${PIPESTATUS[0]}
        local line
        line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
        if [ -n "$line" ]; then
            failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
            local total
            total=$(sed -E 's/.*failed out of ([0-9]+).*/\1/' <<<"$line")
            passed=$((total - failed))
        fi
        if [ -z "$line" ] && grep -q 'No tests were found' "$log" && [ "$rc" -eq 0 ]; then
            result="ok (no tests yet)"
        elif [ -z "$line" ]; then
            result="FAILED (ctest rc=$rc, no summary)"
            failed=1
        elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
            result="FAILED (ctest rc=$rc)"
            failed=1
        elif [ "$failed" -ne 0 ]; then
            result="FAILED"
        else
            result="ok"
        fi
    fi
    names+=("$name")
    results+=("$result")
    passed_counts+=("$passed")
    failed_counts+=("$failed")
    secs+=($((SECONDS - start)))
}

common=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_WERROR=ON)
# Sanitizer and small-capacity builds turn on the library's debug checks
# and skip what they do not run (benchmarks, examples): the default build
# already compiles those with -Werror.
checked=("${common[@]}" -DWEFT_DEBUG=1 -DWEFT_BUILD_PERF=OFF
    -DWEFT_BUILD_EXAMPLES=OFF)

total_start=$SECONDS
for c in "${configs[@]}"; do
    case "$c" in
    default)
        run_config default build-ci "" "${common[@]}" -DWEFT_DEBUG=0
        ;;
    asan)
        run_config asan build-ci-asan 'unit|stress' "${checked[@]}" \
            -DCMAKE_C_COMPILER=gcc '-DWEFT_SANITIZE=address;undefined' \
            -- "${asan_env[@]}"
        ;;
    tsan)
        run_config tsan build-ci-tsan stress "${checked[@]}" \
            -DCMAKE_C_COMPILER=clang -DWEFT_SANITIZE=thread \
            -- "${tsan_env[@]}"
        ;;
    tsan-gcc)
        # gcc 12's TSan works on bookworm, but gcc warns (-Wtsan) that it
        # does not instrument atomic_thread_fence. weft's TSan mapping of
        # primitives/atomics.h puts the ordering on the accesses, and the
        # remaining stand-alone fences (the Chase-Lev thief's seq_cst fence,
        # the parker's store->load fence) order accesses that are atomic
        # anyway, so the warning is expected and must not break -Werror.
        run_config tsan-gcc build-ci-tsan-gcc stress "${checked[@]}" \
            -DCMAKE_C_COMPILER=gcc -DWEFT_SANITIZE=thread \
            -DCMAKE_C_FLAGS=-Wno-error=tsan \
            -- "${tsan_env[@]}"
        ;;
    small)
        run_config small build-ci-small 'unit|stress' "${checked[@]}" \
            -DWEFT_TEST_SMALL_CAPACITY=ON
        ;;
    perturb)
        # Found two shutdown-accounting races this project had (a task
        # counted only after it became visible; cancel flags set after
        # run_state) that plain stress runs on 2 cores did not.
        run_config perturb build-ci-perturb stress "${checked[@]}" \
            -DWEFT_PERTURB=ON
        ;;
    install)
        run_config install build-ci-install install "${common[@]}" \
            -DWEFT_DEBUG=0 -DWEFT_WITH_HWLOC=ON -DWEFT_TEST_INSTALL=ON \
            -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_PERF=OFF \
            -DWEFT_BUILD_EXAMPLES=OFF
        ;;
    fuzz)
        # Only the fuzz targets are built (build_target); the library is
        # instrumented for coverage by tests/fuzz/CMakeLists.txt.
        build_target=weft_fuzz
        run_config fuzz build-ci-fuzz fuzz "${checked[@]}" \
            -DCMAKE_C_COMPILER=clang '-DWEFT_SANITIZE=address;undefined' \
            -DWEFT_FUZZ=ON -- "${asan_env[@]}"
        build_target=
        ;;
    model)
        build_target=weft_model
        run_config model build-ci-model model "${common[@]}" -DWEFT_DEBUG=0 \
            -DWEFT_BUILD_MODEL=ON -DWEFT_BUILD_PERF=OFF \
            -DWEFT_BUILD_EXAMPLES=OFF
        build_target=
        ;;
    esac
done

# ---------------------------------------------------------------------------
# Summary.

total_passed=0
total_failed=0
echo
echo "======== summary"
printf '%-9s %-34s %7s %7s %8s\n' config result passed failed seconds
for i in "${!names[@]}"; do
    printf '%-9s %-34s %7s %7s %8s\n' "${names[$i]}" "${results[$i]}" \
        "${passed_counts[$i]}" "${failed_counts[$i]}" "${secs[$i]}"
    total_passed=$((total_passed + passed_counts[i]))
    total_failed=$((total_failed + failed_counts[i]))
done
echo "total time: $((SECONDS - total_start)) s on $jobs cores"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
