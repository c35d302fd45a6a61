#!/usr/bin/python3
"""Draw a weft task trace as a PNG timeline.

Usage: /usr/bin/python3 perf/trace_timeline.py TRACE.json [--out FILE.png]

TRACE.json is what weft_executor_trace_write()/_save() or WEFT_TRACE=<path>
writes (Chrome Trace Event JSON; see include/weft/trace.h). The picture has
one horizontal lane per worker (and one for threads that are not workers,
when they recorded anything), top to bottom in lane order, and one bar per
task execution, coloured by outcome. A task that ran other tasks while it
waited contains them: nested bars are drawn thinner, on top of their parent.
Tasks that ended without running are drawn as thin ticks. A trace begun
with WEFT_TRACE_PARKS=1 also holds the times workers slept (idle, or in a
wait): those are drawn in yellow, a wait's inside the waiting task. The
title gives the number of events and of events dropped because a buffer
was full.

Needs only the standard library and matplotlib (Debian: python3-matplotlib,
which the /usr/bin/python3 interpreter sees; a python3 from elsewhere on
PATH may not). Not a benchmark and not a test: it reads a file and draws it.
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

OUTCOME_COLOURS = {
    "succeeded": "#3a923a",
    "failed": "#d62728",
    "cancelled": "#8c8c8c",
}
OTHER_COLOUR = "#1f77b4"
PARK_COLOUR = "#e8c547"


def shade(colour, depth):
    """colour lightened a little per nesting level (alternating), so that
    nested spans stand out from their parent."""
    mix = 0.18 * (depth % 2) + 0.06 * min(depth, 6)
    return tuple(c + (1.0 - c) * mix for c in to_rgb(colour))


def load(path):
    with open(path, encoding="utf-8") as fp:
        doc = json.load(fp)
    if isinstance(doc, list):  # the bare-array form of the format
        return doc, {}
    return doc.get("traceEvents", []), doc.get("otherData", {})


def lanes_and_spans(events):
    """Lane names by tid, sort keys by tid, and the complete events."""
    names = {}
    order = {}
    spans = []
    for e in events:
        ph = e.get("ph")
        if ph == "M" and e.get("name") == "thread_name":
            names[e["tid"]] = e.get("args", {}).get("name", str(e["tid"]))
        elif ph == "M" and e.get("name") == "thread_sort_index":
            order[e["tid"]] = e.get("args", {}).get("sort_index", e["tid"])
        elif ph == "X":
            spans.append(e)
    for e in spans:
        names.setdefault(e["tid"], "tid %s" % e["tid"])
    return names, order, spans


def with_depth(spans):
    """(span, depth) pairs: depth counts the spans of the same lane that
    enclose it (a task run while another one waited)."""
    out = []
    by_lane = {}
    for e in spans:
        by_lane.setdefault(e["tid"], []).append(e)
    for lane in by_lane.values():
        lane.sort(key=lambda e: (float(e["ts"]), -float(e.get("dur", 0))))
        stack = []  # end times of the open enclosing spans
        for e in lane:
            start = float(e["ts"])
            end = start + float(e.get("dur", 0))
            while stack and stack[-1] <= start and not (
                stack[-1] == start and end == start
            ):
                stack.pop()
            out.append((e, len(stack)))
            stack.append(end)
    return out


def draw(trace_path, out_path, title=None):
    events, other = load(trace_path)
    names, order, spans = lanes_and_spans(events)
    tids = sorted(names, key=lambda t: (order.get(t, t), t))
    row = {t: i for i, t in enumerate(tids)}

    t_max = max((float(e["ts"]) + float(e.get("dur", 0)) for e in spans),
                default=1.0)
    scale, unit = (1e-3, "ms") if t_max >= 10000 else (1.0, "\u00b5s")
    tick = max(t_max * scale * 0.0015, 1e-9)  # width of a zero-length span

    fig_h = 1.4 + 0.55 * max(len(tids), 1)
    fig, ax = plt.subplots(figsize=(12, fig_h))
    counts = {}
    colours = {}
    # One broken_barh call per lane, depth, colour and edge, with all of
    # its bars: one call per event took minutes for 10^5 events.
    groups = {}
    for e, depth in with_depth(spans):
        args = e.get("args", {})
        if e.get("cat") == "park":
            key = "asleep, %s" % args.get("reason", "?")
            base = PARK_COLOUR
        else:
            key = args.get("outcome", "?")
            base = OUTCOME_COLOURS.get(key, OTHER_COLOUR)
        counts[key] = counts.get(key, 0) + 1
        colours[key] = base
        x = float(e["ts"]) * scale
        w = float(e.get("dur", 0)) * scale
        groups.setdefault((depth, row[e["tid"]], base, w > 0), []).append(
            (x, max(w, tick)))
    # Shallow first, so that nested spans are drawn on top.
    for (depth, r, base, edged), bars in sorted(groups.items(),
                                               key=lambda g: g[0][:2]):
        colour = shade(base, depth)
        height = 0.8 * (0.72 ** depth)
        ax.broken_barh(bars, (r - height / 2, height), facecolors=colour,
                       edgecolors="black" if edged else colour,
                       linewidth=0.3)

    ax.set_yticks(range(len(tids)))
    ax.set_yticklabels([names[t] for t in tids])
    ax.set_ylim(len(tids) - 0.5, -0.5)  # lane 0 on top
    ax.set_xlim(0, t_max * scale * 1.01)
    ax.set_xlabel("time since the trace began (%s)" % unit)
    ax.grid(axis="x", linestyle=":", linewidth=0.5)

    dropped = other.get("dropped", 0)
    head = title or os.path.basename(trace_path)
    ax.set_title("%s: %d events on %d lanes, %d dropped"
                 % (head, len(spans), len(tids), dropped))
    handles = [Patch(facecolor=colours[k], label="%s (%d)" % (k, n))
               for k, n in sorted(counts.items())]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small")
    if not spans:
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes,
                ha="center", va="center")
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return len(spans)


def main(argv):
    ap = argparse.ArgumentParser(
        description="Draw a weft task trace (Chrome Trace Event JSON) as a "
        "PNG timeline, one lane per worker.")
    ap.add_argument("trace", help="trace JSON written by weft")
    ap.add_argument("--out", help="PNG to write (default: TRACE with .png)")
    ap.add_argument("--title", help="title (default: the trace's file name)")
    args = ap.parse_args(argv)
    out = args.out or os.path.splitext(args.trace)[0] + ".png"
    try:
        n = draw(args.trace, out, args.title)
    except (OSError, ValueError, KeyError) as exc:
        print("trace_timeline: %s: %s" % (args.trace, exc), file=sys.stderr)
        return 1
    print("trace_timeline: %d events -> %s" % (n, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
