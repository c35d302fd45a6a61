#!/usr/bin/env bash
# perf/run.sh - weft against OpenMP (libgomp, LLVM libomp) and oneTBB.
#
# usage: perf/run.sh [quick|full|combinators|callgrind|busy]
#
#   quick      quick sizes, threads 1, 2 and nproc, 5 interleaved rounds,
#              plus the callgrind count; about 2 minutes on 2 cores
#   full       full sizes, every thread count 1..nproc, 10 rounds; every
#              workload, the combinator set included
#   combinators  the combinator set (failfast and cancel latency,
#              gather_empty, pfor_empty, gather_each) and fanout_empty to compare
#              with, quick sizes, threads as quick, 5 rounds of 3
#              repetitions per process (INNER_REPS); about 2 minutes
#   callgrind  only the noise-free count: instructions per fib spawn
#   busy       fib at nproc threads with and without one core kept busy
#              by a spinning process (yes > /dev/null)
#
# Environment overrides (space-separated lists):
#   THREADS="1 2 4"    thread counts          REPS=K      rounds
#   RUNTIMES="seq weft weftfut gomp libomp tbb"  WORKLOADS="fib uts ..."
#   SIZE=quick|full    WARMUP=W (untimed runs per process, default 1)
#   INNER_REPS=R       timed repetitions per process (default 1; 3 in
#                      combinators mode, whose latencies are short)
#   BUILD_DIR=dir      (default build-perf)   OUT=dir (results folder)
#   PERF_NO_APT=1      skip the Debian package check
#   PERF_PREBUILT=1    do not configure or build: run the bench_* binaries
#                      already in BUILD_DIR (those missing are skipped), for
#                      a machine without the toolchain (see perf/README.md)
#   PY=python3         the Python for the report (default /usr/bin/python3)
#   BUSY_N=n           fib(n) for the busy mode (default: the size's n)
#   QUIET_WAIT=S       before the first and every later round, wait up to S
#                      seconds for the CPUs to be at most QUIET_PCT (default
#                      10) percent busy (for shared machines)
#
# Results go to perf/results/<timestamp>-<mode>/ (git-ignored): raw.txt,
# table.txt, results.csv, results.json (Google Benchmark schema),
# weft_workers.csv, callgrind.txt, *.png. Benchmarks never gate CI.
set -euo pipefail

MODE=${1:-quick}
case "$MODE" in
quick | full | combinators | callgrind | busy) ;;
-h | --help | help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [quick|full|combinators|callgrind|busy]" >&2
    exit 64
    ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PY:-/usr/bin/python3}
if [ ! -x "$PY" ]; then
    PY=$(command -v python3 || echo /usr/bin/python3)
fi
NPROC=$(nproc)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-perf}
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$ROOT/perf/results/$STAMP-$MODE}

# ---- Debian packages -----------------------------------------------------
# Everything the harness uses; clang/libomp-dev/valgrind/libbenchmark-tools/
# python3-scipy serve the optional parts (libomp runtime, callgrind count,
# compare.py) but are installed as well so one command gives every figure.
PKGS="cmake make gcc g++ pkg-config libck-dev libtbb-dev clang libomp-dev \
valgrind python3 python3-matplotlib python3-scipy libbenchmark-tools"

check_packages() {
    local missing=() p
    if [ "${PERF_NO_APT:-0}" = 1 ]; then
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "perf: no dpkg; not checking packages ($PKGS)" >&2
        return 0
    fi
    for p in $PKGS; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "ok installed"; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -eq 0 ]; then
        echo "perf: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
            apt-get update
            apt-get install -y --no-install-recommends "${missing[@]}"
        fi
    else
        echo "perf: missing Debian packages; install them with:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        echo "(or set PERF_NO_APT=1 to try without them)" >&2
        exit 2
    fi
}

# ---- Build -----------------------------------------------------------------
ALL_RUNTIMES="seq weft weftfut gomp libomp tbb"
RUNTIMES=${RUNTIMES:-$ALL_RUNTIMES}

# PERF_PREBUILT=1: the binaries were built elsewhere (same architecture)
# and copied here with BUILD_DIR; keep the runtimes whose binary runs.
prebuilt() {
    local rt avail=""
    for rt in seq $RUNTIMES; do
        if [ "$rt" = seq ] && [ -n "$avail" ]; then
            continue
        fi
        if [ -x "$(bin "$rt")" ] && "$(bin "$rt")" --list >/dev/null 2>&1; then
            avail="$avail $rt"
        elif [ "$rt" = seq ] || [ "$rt" = weft ]; then
            echo "perf: $(bin "$rt") missing or does not run (PERF_PREBUILT=1)" >&2
            "$(bin "$rt")" --list >&2 || true
            exit 1
        else
            echo "perf: bench_$rt skipped (PERF_PREBUILT=1, binary missing or does not run)" >&2
        fi
    done
    case " $RUNTIMES " in
    *" seq "*) RUNTIMES=${avail# } ;;
    *) RUNTIMES=$(echo $avail | sed 's/^seq *//; s/ seq / /') ;;
    esac
}

build() {
    local log=$OUT/build.log rt avail=""
    if [ "${PERF_PREBUILT:-0}" = 1 ]; then
        prebuilt
        return 0
    fi
    echo "perf: configuring and building a Release tree in $BUILD_DIR"
    if ! cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        -DWEFT_BUILD_PERF=ON -DWEFT_BUILD_TESTS=OFF \
        -DWEFT_BUILD_EXAMPLES=OFF >"$log" 2>&1; then
        tail -30 "$log" >&2
        echo "perf: cmake configure failed (log: $log)" >&2
        exit 1
    fi
    # bench_seq also lists the workloads and prints the seeds: always built.
    for rt in seq $RUNTIMES; do
        if [ "$rt" = seq ] && [ -n "$avail" ]; then
            continue
        fi
        if cmake --build "$BUILD_DIR" --target "bench_$rt" -j "$NPROC" \
            >>"$log" 2>&1; then
            avail="$avail $rt"
        elif [ "$rt" = seq ] || [ "$rt" = weft ]; then
            grep -E "error|Error" "$log" | tail -20 >&2 || true
            echo "perf: building bench_$rt failed (log: $log)" >&2
            exit 1
        else
            echo "perf: bench_$rt not built (optional; see $log)" >&2
        fi
    done
    case " $RUNTIMES " in
    *" seq "*) RUNTIMES=${avail# } ;;
    *) RUNTIMES=$(echo $avail | sed 's/^seq *//; s/ seq / /') ;;
    esac
}

bin() { echo "$BUILD_DIR/perf/bench_$1"; }

# ---- Machine information -------------------------------------------------
machine_info() {
    local cpu
    cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
    {
        echo "date:     $(date -Iseconds)"
        echo "host:     $(hostname)"
        echo "nproc:    $NPROC"
        echo "cpu:      $cpu"
        echo "kernel:   $(uname -r)"
        echo "gcc:      $(gcc -dumpfullversion 2>/dev/null || echo '?')"
        echo "clang:    $(clang --version 2>/dev/null | head -1 || echo none)"
        echo "tbb:      $(dpkg-query -W -f='${Version}' libtbb-dev 2>/dev/null || echo '?')"
        echo "governor: $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor \
            2>/dev/null || echo n/a)"
        echo "load:     $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "commit:   $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null ||
            echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null ||
            echo ' (dirty: the build uses the working tree)')"
        echo "mode:     $MODE  size=$SIZE  threads=[$THREADS]  rounds=$REPS  reps/process=$INNER_REPS  warmup=$WARMUP"
        echo "runtimes: $RUNTIMES"
        "$(bin seq)" --workload fib --reps 1 --warmup 0 | grep '^# seeds' |
            sed 's/^# seeds/seeds:   /'
    } | tee "$OUT/machine.txt"
}

# ---- Thread-count sweep, rounds interleaved across runtimes --------------
FAILED=0

run_one() { # rt workload threads -> appends to raw.txt
    local rt=$1 w=$2 p=$3 err=$OUT/stderr.txt rc=0
    timeout "${PERF_TIMEOUT:-600}" "$(bin "$rt")" --workload "$w" \
        --threads "$p" --size "$SIZE" --reps "$INNER_REPS" --warmup "$WARMUP" \
        >>"$OUT/raw.txt" 2>"$err.tmp" || rc=$?
    cat "$err.tmp" >>"$err"
    if [ $rc -ne 0 ]; then
        FAILED=$((FAILED + 1))
        [ -t 1 ] && printf '\n'
        echo "!!!! FAILED: $rt $w threads=$p exit=$rc$([ $rc -eq 124 ] && echo ' (TIMEOUT: hang?)')" >&2
        sed 's/^/!!!!   /' "$err.tmp" >&2
        echo "FAILED runtime=$rt workload=$w threads=$p exit=$rc" >>"$OUT/raw.txt"
    fi
    rm -f "$err.tmp"
}

sweep() {
    local round w p rt i n total=0 done_=0 list rot
    read -r -a rts <<<"$RUNTIMES"
    for w in $WORKLOADS; do
        for p in $THREADS; do
            for rt in "${rts[@]}"; do
                if [ "$rt" != seq ] || [ "$p" = "$(first "$THREADS")" ]; then
                    total=$((total + 1))
                fi
            done
        done
    done
    total=$((total * REPS))
    for round in $(seq 1 "$REPS"); do
        if [ "$round" -gt 1 ]; then
            wait_quiet quietly
        fi
        foreign_begin
        # Rotate the runtime order each round so none always runs first.
        n=${#rts[@]}
        for w in $WORKLOADS; do
            for p in $THREADS; do
                for i in $(seq 0 $((n - 1))); do
                    rot=$(((i + round - 1) % n))
                    rt=${rts[$rot]}
                    if [ "$rt" = seq ] && [ "$p" != "$(first "$THREADS")" ]; then
                        continue
                    fi
                    done_=$((done_ + 1))
                    if [ -t 1 ]; then
                        printf '\r\033[K[%4d/%d] round %d/%d  %-12s %-7s P=%s' \
                            "$done_" "$total" "$round" "$REPS" "$w" "$rt" "$p"
                    fi
                    run_one "$rt" "$w" "$p"
                done
            done
        done
        foreign_end
    done
    [ -t 1 ] && printf '\r\033[K'
    return 0
}

first() { set -- $1; echo "$1"; }

# ---- callgrind: instructions per fib spawn, weft minus plain C -----------
cg_root() { case $1 in weft*) echo fib_task ;; *) echo fib ;; esac; }

callgrind() {
    local n1=${CG_N1:-18} n2=${CG_N2:-25} rt n ir f
    local outf=$OUT/callgrind.txt
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "perf: valgrind not installed; callgrind count skipped" >&2
        return 0
    fi
    : >"$OUT/callgrind.raw"
    for rt in seq weft weftfut; do
        case " $RUNTIMES " in *" $rt "*) ;; *) continue ;; esac
        for n in $n1 $n2; do
            f=$OUT/callgrind.$rt.$n.out
            valgrind --tool=callgrind --callgrind-out-file="$f" \
                "$(bin "$rt")" --workload fib --param "$n" --threads 1 \
                --reps 1 --warmup 0 >/dev/null 2>"$f.log" || {
                echo "perf: callgrind of $rt fib($n) failed:" >&2
                tail -5 "$f.log" >&2
                FAILED=$((FAILED + 1))
                continue
            }
            # Inclusive cost of the root call (fib / fib_task): everything
            # the computation ran, without the idle workers' spinning and
            # the parked main thread, whose counts vary run to run.
            ir=$(callgrind_annotate --inclusive=yes --threshold=100 "$f" \
                2>/dev/null | awk -v fn="???:$(cg_root "$rt")" \
                '$3 == fn && !done { gsub(",", "", $1); print $1; done = 1 }')
            echo "$rt $n ${ir:-0}" >>"$OUT/callgrind.raw"
        done
    done
    "$PY" "$ROOT/perf/report.py" callgrind "$OUT/callgrind.raw" | tee "$outf"
}

# ---- The machine's own ceiling for the fan-out -----------------------------
# P plain C processes at once, each on 1/P of fanout's tasks, no runtime
# and no shared memory: the speedup a runtime could reach on this machine
# at P threads (a VM whose vCPUs share a core, or a busy host, caps it
# below P). One sample per round: the slowest of the P processes. Only
# when the sweep ran fanout with seq and more than one thread.
ceiling() {
    local p n part round i t worst
    p=$(echo "$THREADS" | tr ' ' '\n' | sort -n | tail -1)
    case " $WORKLOADS " in *" fanout "*) ;; *) return 0 ;; esac
    case " $RUNTIMES " in *" seq "*) ;; *) return 0 ;; esac
    [ "$p" -gt 1 ] || return 0
    n=$(grep '^RESULT .*runtime=seq workload=fanout ' "$OUT/raw.txt" |
        head -1 | grep -o ' param=[0-9]*' | cut -d= -f2)
    [ -n "$n" ] || return 0
    part=$(((n + p - 1) / p))
    : >"$OUT/ceiling.txt"
    for round in $(seq 1 "$REPS"); do
        [ -t 1 ] && printf '\r\033[K ceiling round %d/%d' "$round" "$REPS"
        for i in $(seq 1 "$p"); do
            "$(bin seq)" --workload fanout --param "$part" --reps 1 \
                --warmup "$WARMUP" >"$OUT/ceiling.$i" 2>>"$OUT/stderr.txt" &
        done
        wait
        worst=0
        for i in $(seq 1 "$p"); do
            t=$(grep -o ' time_ns=[0-9]*' "$OUT/ceiling.$i" | cut -d= -f2)
            [ -n "$t" ] && [ "$t" -gt "$worst" ] && worst=$t
            rm -f "$OUT/ceiling.$i"
        done
        echo "CEILING workload=fanout threads=$p param=$n part=$part" \
            "time_ns=$worst" >>"$OUT/ceiling.txt"
    done
    [ -t 1 ] && printf '\r\033[K'
    return 0
}

# ---- One core busy --------------------------------------------------------
busy() {
    local spin_pid="" round rt state rts
    rts=""
    for rt in $RUNTIMES; do [ "$rt" != seq ] && rts="$rts $rt"; done
    THREADS=$NPROC
    stop_spinner() { [ -n "$spin_pid" ] && kill "$spin_pid" 2>/dev/null; spin_pid=""; }
    trap stop_spinner EXIT
    for round in $(seq 1 "$REPS"); do
        for state in idle busy; do
            if [ "$state" = busy ]; then
                yes >/dev/null &
                spin_pid=$!
                sleep 0.2
            fi
            for rt in $rts; do
                [ -t 1 ] && printf '\r\033[K round %d/%d %s %s' "$round" "$REPS" "$state" "$rt"
                : >"$OUT/one.txt"
                timeout "${PERF_TIMEOUT:-600}" "$(bin "$rt")" --workload fib \
                    --threads "$NPROC" --size "$SIZE" ${BUSY_N:+--param "$BUSY_N"} \
                    --reps 1 --warmup "$WARMUP" \
                    >"$OUT/one.txt" 2>>"$OUT/stderr.txt" || {
                    echo "!!!! FAILED: busy $state $rt" >&2
                    FAILED=$((FAILED + 1))
                }
                sed "s/^RESULT /RESULT load=$state /" "$OUT/one.txt" >>"$OUT/raw.txt"
            done
            stop_spinner
        done
    done
    [ -t 1 ] && printf '\r\033[K'
    trap - EXIT
    "$PY" "$ROOT/perf/report.py" busy "$OUT" | tee "$OUT/table.txt"
}

# ---- Optionally wait until the other processes leave the CPUs alone ------
cpu_busy_pct() { # busy share of all CPUs over one second, from /proc/stat
    local a b
    a=($(head -1 /proc/stat))
    sleep 1
    b=($(head -1 /proc/stat))
    local idle=$((b[4] + b[5] - a[4] - a[5])) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    [ "$total" -gt 0 ] || total=1
    echo $((100 - 100 * idle / total))
}

wait_quiet() {
    local limit=${QUIET_WAIT:-0} waited=0 busy
    [ "$limit" -gt 0 ] || return 0
    while :; do
        busy=$(cpu_busy_pct)
        if [ "$busy" -le "${QUIET_PCT:-10}" ]; then
            if [ -z "${1:-}" ] || [ "$waited" -gt 0 ]; then
                [ -t 1 ] && printf '\r\033[K'
                echo "perf: machine quiet (${busy}% busy) after ${waited} s"
            fi
            return 0
        fi
        if [ "$waited" -ge "$limit" ]; then
            echo "perf: still ${busy}% busy after ${waited} s; running anyway" >&2
            return 0
        fi
        sleep 4
        waited=$((waited + 5))
    done
}

# ---- How much CPU did other processes take while we measured? -----------
busy_ticks() { # all CPUs' non-idle time since boot, in clock ticks
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

child_ticks() { # CPU time of this shell's finished children, in ticks
    # `times` must run in this shell, not in a $(...) subshell, which
    # would report its own (empty) children: write to a file, then read.
    times >"$OUT/.times"
    awk -v hz="$(getconf CLK_TCK)" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) {
            split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2]
        }
        printf "%d\n", t * hz }' "$OUT/.times"
}

# Accumulated over the measured rounds only (not the quiet waits).
F_SUM_OTHER=0
F_SUM_WALL=0
F_ROUNDS=""

foreign_begin() {
    F_BUSY=$(busy_ticks)
    child_ticks >"$OUT/.ticks"
    F_CHILD=$(cat "$OUT/.ticks")
    F_T0=$(date +%s%N)
}

foreign_end() { # accumulates; appends this round's share to F_ROUNDS
    local busy child t1 other wall
    busy=$(busy_ticks)
    child_ticks >"$OUT/.ticks"
    child=$(cat "$OUT/.ticks")
    rm -f "$OUT/.ticks" "$OUT/.times"
    t1=$(date +%s%N)
    other=$((busy - F_BUSY - (child - F_CHILD)))
    [ "$other" -ge 0 ] || other=0
    # wall in ticks x CPUs: the capacity the others could have used.
    wall=$(((t1 - F_T0) * $(getconf CLK_TCK) / 1000000000 * NPROC))
    [ "$wall" -gt 0 ] || wall=1
    F_SUM_OTHER=$((F_SUM_OTHER + other))
    F_SUM_WALL=$((F_SUM_WALL + wall))
    F_ROUNDS="$F_ROUNDS $((100 * other / wall))%"
}

foreign_summary() {
    [ "$F_SUM_WALL" -gt 0 ] || F_SUM_WALL=1
    echo "$((100 * F_SUM_OTHER / F_SUM_WALL))% of the $NPROC CPUs (per round:$F_ROUNDS)"
}

# ---- Main ------------------------------------------------------------------
case "$MODE" in
quick)
    SIZE=${SIZE:-quick}
    REPS=${REPS:-5}
    if [ "$NPROC" -le 2 ]; then
        THREADS=${THREADS:-$(seq -s' ' 1 "$NPROC")}
    else
        THREADS=${THREADS:-"1 2 $NPROC"}
    fi
    ;;
full)
    SIZE=${SIZE:-full}
    REPS=${REPS:-10}
    THREADS=${THREADS:-$(seq -s' ' 1 "$NPROC")}
    ;;
combinators)
    SIZE=${SIZE:-quick}
    REPS=${REPS:-5}
    INNER_REPS=${INNER_REPS:-3}
    if [ "$NPROC" -le 2 ]; then
        THREADS=${THREADS:-$(seq -s' ' 1 "$NPROC")}
    else
        THREADS=${THREADS:-"1 2 $NPROC"}
    fi
    ;;
callgrind)
    SIZE=${SIZE:-quick}
    REPS=${REPS:-1}
    THREADS=1
    ;;
busy)
    SIZE=${SIZE:-quick}
    REPS=${REPS:-5}
    THREADS=$NPROC
    ;;
esac
WARMUP=${WARMUP:-1}
INNER_REPS=${INNER_REPS:-1}

check_packages
mkdir -p "$OUT"
: >"$OUT/raw.txt"
: >"$OUT/stderr.txt"
START=$(date +%s)
build
case "$MODE" in
combinators) # the set, and the hand-written fan-out gather_empty replaces
    WORKLOADS=${WORKLOADS:-"fanout_empty $("$(bin seq)" --list-set combinators |
        tr '\n' ' ')"} ;;
full) WORKLOADS=${WORKLOADS:-$("$(bin seq)" --list | tr '\n' ' ')} ;;
*) WORKLOADS=${WORKLOADS:-$("$(bin seq)" --list-set core | tr '\n' ' ')} ;;
esac
wait_quiet
machine_info
echo "workloads: $WORKLOADS"

case "$MODE" in
quick | full | combinators)
    sweep
    ceiling
    echo "load_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
    echo "foreign:  $(foreign_summary)" >>"$OUT/machine.txt"
    if [ "$MODE" != combinators ]; then
        callgrind >/dev/null
    fi
    "$PY" "$ROOT/perf/report.py" report "$OUT" | tee "$OUT/table.txt"
    ;;
callgrind)
    callgrind
    ;;
busy)
    busy
    ;;
esac

echo
echo "perf: $MODE finished in $(($(date +%s) - START)) s"
echo "perf: results in $OUT"
[ -f "$OUT/table.txt" ] && echo "perf:   table   $OUT/table.txt"
for f in "$OUT"/*.png; do
    [ -e "$f" ] && echo "perf:   figure  $f"
done
[ -f "$OUT/results.json" ] && echo "perf:   compare with: $PY" \
    "/usr/share/benchmark/compare.py benchmarks OLD/results.json" \
    "$OUT/results.json"
if [ "$FAILED" -ne 0 ]; then
    echo "perf: $FAILED run(s) FAILED (checksum mismatch, crash or" \
        "timeout); see above and $OUT/stderr.txt" >&2
    exit 1
fi
