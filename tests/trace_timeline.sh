#!/bin/sh
# trace_timeline.sh - perf/trace_timeline.py draws a trace that weft wrote.
#
# Usage: tests/trace_timeline.sh EXAMPLE SCRIPT WORKDIR
#
# Runs EXAMPLE (example_quicksort) with --trace into WORKDIR/trace.json,
# then SCRIPT (perf/trace_timeline.py) on it with /usr/bin/python3, and
# checks that a PNG came out and that the script found events.
# Registered in CTest by examples/CMakeLists.txt (label "unit", default
# configuration). Exit 77 (CTest SKIP_RETURN_CODE) when /usr/bin/python3
# cannot import matplotlib: tests/run.sh installs python3-matplotlib for
# the default configuration, so CI does run it.
set -eu

if [ $# -ne 3 ]; then
    echo "usage: $0 EXAMPLE SCRIPT WORKDIR" >&2
    exit 2
fi
example=$1
script=$2
dir=$3
py=/usr/bin/python3

if [ ! -x "$py" ] || ! "$py" -c 'import matplotlib' 2>/dev/null; then
    echo "trace_timeline: skipped: $py cannot import matplotlib" \
        "(apt-get install python3-matplotlib)"
    exit 77
fi

mkdir -p "$dir"
rm -f "$dir/trace.json" "$dir/trace.png"
"$example" --trace "$dir/trace.json" 100000
out=$("$py" "$script" "$dir/trace.json" --out "$dir/trace.png")
echo "$out"

n=$(echo "$out" | sed -n 's/^trace_timeline: \([0-9]*\) events.*/\1/p')
if [ -z "$n" ] || [ "$n" -eq 0 ]; then
    echo "trace_timeline: FAILED: the script found no events" >&2
    exit 1
fi
sig=$(head -c 8 "$dir/trace.png" | od -An -tx1 | tr -d ' \n')
if [ "$sig" != 89504e470d0a1a0a ]; then
    echo "trace_timeline: FAILED: $dir/trace.png is not a PNG ($sig)" >&2
    exit 1
fi
echo "trace_timeline: ok ($n events drawn into $dir/trace.png)"
