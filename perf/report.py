#!/usr/bin/python3
"""perf/report.py - turn perf/run.sh's raw RESULT lines into tables and plots.

usage: report.py report OUTDIR      table.txt (stdout), results.csv,
                                    reps.csv, results.json, weft_workers.csv,
                                    speedup.png, speedup_seq.png, overhead.png,
                                    latency.png (when latency workloads ran)
       report.py callgrind RAWFILE  instructions per fib spawn (stdout)
       report.py busy OUTDIR        the one-core-busy comparison (stdout)

Only the standard library and matplotlib (plots are skipped without it).
results.json follows Google Benchmark's JSON schema, so two runs compare
with /usr/share/benchmark/compare.py (libbenchmark-tools).
"""
import csv
import datetime
import json
import os
import socket
import sys

RUNTIME_ORDER = ["seq", "weft", "weftfut", "gomp", "libomp", "tbb"]
WEFT_FIELDS = ["spawned", "executed", "stolen", "steal_failed", "injected",
               "parks"]


def parse_raw(path):
    rows, failed = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0] not in ("RESULT", "FAILED"):
                continue
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            if parts[0] == "FAILED":
                failed.append(kv)
                continue
            for k in ("threads", "rep", "time_ns", "cpu_ns", "tasks",
                      "checksum", "verified", "param",
                      "total_ns") + tuple(WEFT_FIELDS):
                if k in kv:
                    kv[k] = int(kv[k])
            rows.append(kv)
    return rows, failed


def percentile(xs, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(xs):
    return percentile(xs, 0.5)


def rt_key(rt):
    return (RUNTIME_ORDER.index(rt) if rt in RUNTIME_ORDER else 99, rt)


def group(rows):
    g = {}
    for r in rows:
        g.setdefault((r["workload"], r["runtime"], r["threads"]), []).append(r)
    return g


def check_checksums(rows):
    """Every runtime must agree with seq on every workload (loudly)."""
    ref = {}
    for r in rows:
        if r["runtime"] == "seq":
            ref.setdefault(r["workload"], r["checksum"])
    bad = []
    for r in rows:
        want = ref.get(r["workload"])
        if want is not None and r["checksum"] != want:
            bad.append(r)
    return bad


def is_latency(rows_or_stat):
    """Latency workloads: time_ns is the measured latency, not the run."""
    if isinstance(rows_or_stat, dict):
        return rows_or_stat.get("metric") == "latency"
    return any(r.get("metric") == "latency" for r in rows_or_stat)


def summarize(rows):
    g = group(rows)
    tseq = {}
    for (w, rt, p), rs in g.items():
        if rt == "seq":
            tseq[w] = median([r["time_ns"] for r in rs])
    t1 = {}
    for (w, rt, p), rs in g.items():
        if p == 1:
            t1[(w, rt)] = median([r["time_ns"] for r in rs])
    stats = []
    for (w, rt, p), rs in g.items():
        times = [r["time_ns"] for r in rs]
        med = median(times)
        tasks = rs[0]["tasks"]
        s = {
            "workload": w, "runtime": rt, "threads": p, "reps": len(rs),
            "param": rs[0].get("param"), "size": rs[0].get("size"),
            "median_ns": med, "p10_ns": percentile(times, 0.1),
            "p90_ns": percentile(times, 0.9), "min_ns": min(times),
            "cpu_ns": median([r["cpu_ns"] for r in rs]), "tasks": tasks,
            "ns_per_task": med / tasks if tasks else float("nan"),
        }
        s["cpu_per_wall"] = s["cpu_ns"] / med if med else float("nan")
        if is_latency(rs):
            # time_ns is a latency: scaling and per-task figures do not
            # apply; the run's own wall time goes along as total_ns.
            s["metric"] = "latency"
            tot = [r["total_ns"] for r in rs if "total_ns" in r]
            s["total_ns"] = median(tot) if tot else float("nan")
            s["cpu_per_wall"] = (s["cpu_ns"] / s["total_ns"]
                                 if tot and s["total_ns"] else float("nan"))
            s["ns_per_task"] = float("nan")
            for k in ("speedup_t1", "eff_t1", "speedup_seq", "eff_seq",
                      "overhead_ns_per_task"):
                s[k] = float("nan")
            if rt == "weft":
                for k in WEFT_FIELDS:
                    vals = [r[k] for r in rs if k in r]
                    s[k] = median(vals) if vals else float("nan")
            stats.append(s)
            continue
        base1 = t1.get((w, rt))
        s["speedup_t1"] = base1 / med if base1 else float("nan")
        s["eff_t1"] = s["speedup_t1"] / p
        bs = tseq.get(w)
        s["speedup_seq"] = bs / med if bs else float("nan")
        s["eff_seq"] = s["speedup_seq"] / p
        if p == 1 and bs is not None and tasks and rt != "seq":
            s["overhead_ns_per_task"] = (med - bs) / tasks
        else:
            s["overhead_ns_per_task"] = float("nan")
        if rt == "weft":
            for k in WEFT_FIELDS:
                vals = [r[k] for r in rs if k in r]
                s[k] = median(vals) if vals else float("nan")
        stats.append(s)
    stats.sort(key=lambda s: (workload_order(s["workload"]),
                              rt_key(s["runtime"]), s["threads"]))
    return stats


WORKLOADS = ["fib", "nqueens", "uts", "fanout", "fanout_empty", "gather",
             "reduce", "matmul", "gather_empty", "pfor_empty", "gather_each",
             "failfast", "cancel"]


def workload_order(w):
    return WORKLOADS.index(w) if w in WORKLOADS else 99


def fmt(x, spec):
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return format(x, spec)


def fmt_count(x):
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return "%.1f%s" % (x / div, unit)
    return "%d" % x


def print_table(stats, out):
    hdr = ("%-12s %-6s %3s %9s %9s %9s %6s %5s %6s %5s %8s %8s %5s %7s %6s"
           % ("workload", "rt", "P", "median_ms", "p10_ms", "p90_ms",
              "T1/TP", "eff", "Ts/TP", "eff_s", "ns/task", "ovh/task",
              "cpu/w", "steals", "parks"))
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    last = None
    for s in stats:
        if s.get("metric") == "latency":
            continue
        if last is not None and s["workload"] != last:
            print("", file=out)
        last = s["workload"]
        print("%-12s %-6s %3d %9s %9s %9s %6s %5s %6s %5s %8s %8s %5s %7s %6s"
              % (s["workload"], s["runtime"], s["threads"],
                 fmt(s["median_ns"] / 1e6, ".3f"),
                 fmt(s["p10_ns"] / 1e6, ".3f"), fmt(s["p90_ns"] / 1e6, ".3f"),
                 fmt(s["speedup_t1"], ".2f"), fmt(s["eff_t1"], ".2f"),
                 fmt(s["speedup_seq"], ".2f"), fmt(s["eff_seq"], ".2f"),
                 fmt(s["ns_per_task"], ".1f"),
                 fmt(s["overhead_ns_per_task"], ".1f"),
                 fmt(s["cpu_per_wall"], ".2f"),
                 fmt_count(s.get("stolen")), fmt_count(s.get("parks"))),
              file=out)


def print_latency_table(stats, out):
    """Latency workloads: median/p10/p90 in microseconds, and each
    runtime's median over weft's at the same thread count (same run)."""
    lat = [s for s in stats if s.get("metric") == "latency"]
    if not lat:
        return
    hdr = ("%-10s %-6s %3s %4s %10s %10s %10s %10s %8s %8s %9s"
           % ("latency", "rt", "P", "n", "median_us", "p10_us", "p90_us",
              "min_us", "rt/weft", "run_ms", "steals"))
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    last = None
    for s in lat:
        if last is not None and s["workload"] != last:
            print("", file=out)
        last = s["workload"]
        wf = lookup(stats, s["workload"], "weft", s["threads"])
        ratio = (s["median_ns"] / wf["median_ns"]
                 if wf and wf["median_ns"] else float("nan"))
        print("%-10s %-6s %3d %4d %10s %10s %10s %10s %8s %8s %9s"
              % (s["workload"], s["runtime"], s["threads"], s["reps"],
                 fmt(s["median_ns"] / 1e3, ".1f"),
                 fmt(s["p10_ns"] / 1e3, ".1f"),
                 fmt(s["p90_ns"] / 1e3, ".1f"),
                 fmt(s["min_ns"] / 1e3, ".1f"), fmt(ratio, ".2f"),
                 fmt(s["total_ns"] / 1e6, ".1f"),
                 fmt_count(s.get("stolen"))),
              file=out)
    print("failfast: from the failing leaf's return to the root's end, every "
          "task stopped; cancel: from the\ncancel call to the group's join "
          "returning. rt/weft > 1: slower than weft. run_ms: the whole run "
          "(median).", file=out)


def lookup(stats, w, rt, p):
    for s in stats:
        if s["workload"] == w and s["runtime"] == rt and s["threads"] == p:
            return s
    return None


def read_ceiling(outdir):
    """run.sh's ceiling step: (threads, [time_ns per round]) or None."""
    path = os.path.join(outdir, "ceiling.txt")
    if not os.path.exists(path):
        return None
    p, times = None, []
    with open(path) as f:
        for line in f:
            kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
            if "threads" in kv and int(kv.get("time_ns", "0")) > 0:
                p = int(kv["threads"])
                times.append(int(kv["time_ns"]))
    return (p, times) if times else None


def print_headlines(stats, cg, out, ceiling=None):
    """The figures the design brief (section 9) asks for, one column per
    runtime."""
    rts = sorted({s["runtime"] for s in stats if s["runtime"] != "seq"},
                 key=rt_key)
    ps = sorted({s["threads"] for s in stats})
    pmax = ps[-1] if ps else 1
    lines = []

    def val(w, rt, p, key, spec):
        s = lookup(stats, w, rt, p)
        return fmt(s[key], spec) if s else "-"

    def ratio(w, rt, pa, pb):
        a, b = lookup(stats, w, rt, pa), lookup(stats, w, rt, pb)
        if not a or not b or not b["median_ns"]:
            return "-"
        return "%.2f" % (a["median_ns"] / b["median_ns"])

    def seq_ratio(w, rt, p, inverse=False):
        a, sq = lookup(stats, w, rt, p), lookup(stats, w, "seq", 1)
        if not a or not sq:
            return "-"
        r = a["median_ns"] / sq["median_ns"]
        return "%.2f" % (1 / r if inverse else r)

    lines.append(("fib overhead ns/spawn, P=1 ((T1-Tseq)/spawns)",
                  [val("fib", rt, 1, "overhead_ns_per_task", ".2f")
                   for rt in rts]))
    lines.append(("fib T1/Tseq", [seq_ratio("fib", rt, 1) for rt in rts]))
    for w in ("fib", "nqueens", "uts", "fanout"):
        lines.append(("%s T1/T%d (speedup)" % (w, pmax),
                      [ratio(w, rt, 1, pmax) for rt in rts]))
    sq = lookup(stats, "fanout", "seq", 1)
    if ceiling and sq and ceiling[0] == pmax:
        # The same for every runtime: the machine's, not a runtime's.
        c = "%.2f" % (sq["median_ns"] / median(ceiling[1]))
        lines.append(("fanout ceiling Tseq/T%d (%d plain C processes)"
                      % (pmax, pmax), [c for rt in rts]))
    for p in sorted({1, pmax}):
        lines.append(("fanout_empty (1M spawn+gather) ns/task, P=%d" % p,
                      [val("fanout_empty", rt, p, "ns_per_task", ".1f")
                       for rt in rts]))
    lines.append(("nqueens overhead ns/task, P=1",
                  [val("nqueens", rt, 1, "overhead_ns_per_task", ".1f")
                   for rt in rts]))
    lines.append(("gather overhead ns/task, P=1",
                  [val("gather", rt, 1, "overhead_ns_per_task", ".1f")
                   for rt in rts]))
    lines.append(("uts T1/Tseq", [seq_ratio("uts", rt, 1) for rt in rts]))
    lines.append(("reduce Tseq/T%d" % pmax,
                  [seq_ratio("reduce", rt, pmax, inverse=True)
                   for rt in rts]))
    lines.append(("matmul Tseq/T%d" % pmax,
                  [seq_ratio("matmul", rt, pmax, inverse=True)
                   for rt in rts]))
    # The combinator set (run.sh combinators / full); only the lines of
    # workloads that ran.
    comb = []
    for p in sorted({1, pmax}):
        comb.append(("gather_empty (1M, one gather) ns/task, P=%d" % p,
                      [val("gather_empty", rt, p, "ns_per_task", ".1f")
                       for rt in rts]))
    for p in sorted({1, pmax}):
        comb.append(("pfor_empty (1M, grain 1) ns/index, P=%d" % p,
                      [val("pfor_empty", rt, p, "ns_per_task", ".1f")
                       for rt in rts]))
    for p in sorted({1, pmax}):
        comb.append(("gather_each (1M, one bulk gather) ns/index, P=%d" % p,
                      [val("gather_each", rt, p, "ns_per_task", ".1f")
                       for rt in rts]))
    for w in ("failfast", "cancel"):
        for p in sorted({1, pmax}):
            comb.append(("%s latency us (median), P=%d" % (w, p),
                          [fmt(lookup(stats, w, rt, p)["median_ns"] / 1e3,
                               ".1f") if lookup(stats, w, rt, p) else "-"
                           for rt in rts]))
    if any(s["workload"] == "gather_empty" for s in stats) and \
            any(s["workload"] == "fanout_empty" for s in stats):
        for p in sorted({1, pmax}):
            g, f = (lookup(stats, "gather_empty", "weft", p),
                    lookup(stats, "fanout_empty", "weft", p))
            comb.append(("weft gather_empty / fanout_empty time, P=%d" % p,
                         ["%.2f" % (g["median_ns"] / f["median_ns"])
                          if g and f and rt == "weft" else "-"
                          for rt in rts]))
    lines += comb
    # Only the lines of workloads that ran (a WORKLOADS subset, or the
    # combinators mode, leaves the others empty).
    lines = [l for l in lines if any(v != "-" for v in l[1])] or lines
    width = max(len(l[0]) for l in lines)
    print("%-*s %s" % (width, "headline figures (medians)",
                       " ".join("%9s" % rt for rt in rts)), file=out)
    for name, vals in lines:
        print("%-*s %s" % (width, name, " ".join("%9s" % v for v in vals)),
              file=out)
    if cg:
        print("", file=out)
        print(cg.rstrip(), file=out)


def print_weft_workers(rows, out, csv_path):
    wrows = [r for r in rows if r["runtime"] == "weft" and "workers" in r]
    with open(csv_path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["workload", "threads", "rep", "worker"] + WEFT_FIELDS)
        for r in wrows:
            for i, grp in enumerate(r["workers"].split(",")):
                wr.writerow([r["workload"], r["threads"], r["rep"], i] +
                            grp.split(":"))
    if not wrows:
        return
    pmax = max(r["threads"] for r in wrows)
    print("weft per-worker counters at P=%d, from the repetition with the "
          "median time\n(per worker: executed/stolen/steal_failed/parks; "
          "medians per field would mix repetitions\nin which the workers "
          "swapped roles)" % pmax, file=out)
    by_w = {}
    for r in wrows:
        if r["threads"] == pmax:
            by_w.setdefault(r["workload"], []).append(r)
    for w in sorted(by_w, key=workload_order):
        rs = sorted(by_w[w], key=lambda r: r["time_ns"])
        r = rs[(len(rs) - 1) // 2]
        per = []
        for i, grp in enumerate(r["workers"].split(",")):
            c = [int(x) for x in grp.split(":")]
            per.append("w%d %s/%s/%s/%s" % (i, fmt_count(c[1]),
                                             fmt_count(c[2]),
                                             fmt_count(c[3]),
                                             fmt_count(c[5])))
        print("  %-12s %s" % (w, "  ".join(per)), file=out)


def write_csv(stats, rows, outdir):
    keys = ["workload", "runtime", "threads", "size", "param", "reps",
            "median_ns", "p10_ns", "p90_ns", "min_ns", "cpu_ns",
            "cpu_per_wall", "tasks", "ns_per_task", "overhead_ns_per_task",
            "speedup_t1", "eff_t1", "speedup_seq", "eff_seq", "metric",
            "total_ns"] + WEFT_FIELDS
    with open(os.path.join(outdir, "results.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        wr.writeheader()
        for s in stats:
            wr.writerow(s)
    rkeys = ["workload", "runtime", "threads", "size", "param", "rep",
             "time_ns", "cpu_ns", "tasks", "checksum", "metric",
             "total_ns"] + WEFT_FIELDS
    with open(os.path.join(outdir, "reps.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=rkeys, extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow(r)


def machine_context(outdir):
    info = {}
    path = os.path.join(outdir, "machine.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info[k.strip()] = v.strip()
    return info


def write_json(stats, rows, outdir):
    """Google Benchmark JSON: one iteration entry per repetition (so
    compare.py runs its U test), then median/mean/stddev aggregates."""
    info = machine_context(outdir)
    try:
        load = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        load = []
    ctx = {
        "date": info.get("date", datetime.datetime.now().isoformat()),
        "host_name": socket.gethostname(),
        "executable": "perf/run.sh",
        "num_cpus": os.cpu_count(),
        "mhz_per_cpu": 0,
        "cpu_scaling_enabled": False,
        "caches": [],
        "load_avg": load,
        "library_build_type": "release",
        "json_schema_version": 1,
        "weft_cpu_model": info.get("cpu", ""),
        "weft_kernel": info.get("kernel", ""),
        "weft_commit": info.get("commit", ""),
        "weft_mode": info.get("mode", ""),
    }
    g = group(rows)
    benches = []
    fam = {}
    for s in stats:
        w, rt, p = s["workload"], s["runtime"], s["threads"]
        name = "%s/%s/threads:%d" % (w, rt, p)
        fi = fam.setdefault((w, rt), len(fam))
        inst = sorted(t for (ww, rr, t) in g if ww == w and rr == rt).index(p)
        reps = sorted(g[(w, rt, p)], key=lambda r: r["rep"])
        common = {"family_index": fi, "per_family_instance_index": inst,
                  "run_name": name, "repetitions": len(reps), "threads": p,
                  "time_unit": "ns"}
        for i, r in enumerate(reps):
            e = {"name": name, "run_type": "iteration", "repetition_index": i,
                 "iterations": 1, "real_time": float(r["time_ns"]),
                 "cpu_time": float(r["cpu_ns"]), "tasks": r["tasks"]}
            e.update(common)
            for k in WEFT_FIELDS:
                if k in r:
                    e[k] = r[k]
            benches.append(e)
        times = [float(r["time_ns"]) for r in reps]
        cpus = [float(r["cpu_ns"]) for r in reps]
        mean_t, mean_c = sum(times) / len(times), sum(cpus) / len(cpus)

        def sd(xs, m):
            if len(xs) < 2:
                return 0.0
            return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5

        for agg, rt_, ct in (("mean", mean_t, mean_c),
                             ("median", median(times), median(cpus)),
                             ("stddev", sd(times, mean_t), sd(cpus, mean_c))):
            e = {"name": name + "_" + agg, "run_type": "aggregate",
                 "aggregate_name": agg, "aggregate_unit": "time",
                 "iterations": len(reps), "real_time": rt_, "cpu_time": ct}
            e.update(common)
            benches.append(e)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"context": ctx, "benchmarks": benches}, f, indent=1)


def plots(stats, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not available: no plots)", file=sys.stderr)
        return
    lat_ws = sorted({s["workload"] for s in stats
                     if s.get("metric") == "latency"}, key=workload_order)
    ws = sorted({s["workload"] for s in stats
                 if s.get("metric") != "latency"}, key=workload_order)
    rts = sorted({s["runtime"] for s in stats if s["runtime"] != "seq"},
                 key=rt_key)
    ps = sorted({s["threads"] for s in stats})
    colors = {"weft": "C3", "weftfut": "C4", "gomp": "C0", "libomp": "C2", "tbb": "C1",
              "seq": "gray"}
    if lat_ws:
        latency_plot(plt, stats, lat_ws, ps, colors, outdir)
    if not ws:
        return
    for key, fname, title in (
            ("speedup_t1", "speedup.png", "speedup T1/TP (own 1-thread time)"),
            ("speedup_seq", "speedup_seq.png",
             "speedup Tseq/TP (vs plain sequential C)")):
        ncol = 4
        nrow = (len(ws) + ncol - 1) // ncol
        fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.3 * nrow),
                                 squeeze=False)
        for ax, w in zip(axes.flat, ws):
            for rt in rts:
                pts = [(s["threads"], s[key]) for s in stats
                       if s["workload"] == w and s["runtime"] == rt]
                pts.sort()
                if pts:
                    ax.plot([p for p, _ in pts], [v for _, v in pts],
                            marker="o", label=rt, color=colors.get(rt))
            ax.plot(ps, ps, linestyle=":", color="gray", label="ideal")
            ax.set_title(w)
            ax.set_xlabel("threads")
            ax.set_xticks(ps)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(ws):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize="small")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, fname), dpi=110)
        plt.close(fig)

    # Per-task overhead only means something with many tasks: on reduce
    # and matmul (10^3 tasks or fewer) it is run-to-run noise divided by a
    # small count.
    ws = [w for w in ws
          if any(s["workload"] == w and s["tasks"] >= 10000 for s in stats)]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(len(rts), 1)
    for i, rt in enumerate(rts):
        xs, ys = [], []
        for j, w in enumerate(ws):
            s = lookup(stats, w, rt, 1)
            if s and s["overhead_ns_per_task"] == s["overhead_ns_per_task"]:
                xs.append(j + (i - (len(rts) - 1) / 2) * width)
                ys.append(s["overhead_ns_per_task"])
        ax.bar(xs, ys, width, label=rt, color=colors.get(rt))
    ax.set_xticks(range(len(ws)))
    ax.set_xticklabels(ws)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylabel("ns per task (symlog)")
    ax.set_title("overhead per task at 1 thread: (T1 - Tseq) / tasks "
                 "(workloads with 10^4 tasks or more)")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=max(len(rts), 1), loc="upper center",
              bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "overhead.png"), dpi=110)
    plt.close(fig)


def latency_plot(plt, stats, ws, ps, colors, outdir):
    """latency.png: one panel per latency workload, median latency against
    threads per runtime, p10..p90 as error bars, log scale."""
    rts = sorted({s["runtime"] for s in stats if s["workload"] in ws},
                 key=rt_key)
    fig, axes = plt.subplots(1, len(ws), figsize=(5.5 * len(ws), 4),
                             squeeze=False)
    for ax, w in zip(axes.flat, ws):
        for i, rt in enumerate(rts):
            pts = sorted((s["threads"], s) for s in stats
                         if s["workload"] == w and s["runtime"] == rt)
            if not pts:
                continue
            xs = [p + (i - (len(rts) - 1) / 2) * 0.04 for p, _ in pts]
            ys = [s["median_ns"] / 1e3 for _, s in pts]
            lo = [max(y - s["p10_ns"] / 1e3, 0) for y, (_, s) in
                  zip(ys, pts)]
            hi = [max(s["p90_ns"] / 1e3 - y, 0) for y, (_, s) in
                  zip(ys, pts)]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3,
                        label=rt, color=colors.get(rt))
        ax.set_title("%s latency (median, p10..p90)" % w)
        ax.set_xlabel("threads")
        ax.set_ylabel("microseconds (log)")
        ax.set_xticks(ps)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "latency.png"), dpi=110)
    plt.close(fig)


def fib_spawns(n):
    a, b = 0, 1
    for _ in range(n + 1):
        a, b = b, a + b
    return a - 1 if n >= 2 else 0  # fib(n + 1) - 1


def callgrind_text(path):
    ir = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[2].isdigit():
                ir.setdefault(p[0], {})[int(p[1])] = int(p[2])
    out = []
    per = {}
    for rt, d in sorted(ir.items(), key=lambda kv: rt_key(kv[0])):
        if len(d) < 2:
            continue
        n1, n2 = sorted(d)[:2]
        ds = fib_spawns(n2) - fib_spawns(n1)
        per[rt] = (d[n2] - d[n1]) / ds
        out.append("  %-5s %8.1f instructions per spawn (fib(%d) - fib(%d): "
                   "%d spawns, %d instructions)"
                   % (rt, per[rt], n2, n1, ds, d[n2] - d[n1]))
    head = ("callgrind, 1 worker, noise-free: instructions per fib spawn, "
            "inclusive cost of the root call\n(seq: per spawn-equivalent, "
            "i.e. the plain calls that replace one spawn)")
    lines = [head] + out
    for rt, what in (("weft", "frames"), ("weftfut", "futures")):
        if "seq" in per and rt in per:
            lines.append("  %s - seq = %.1f instructions of overhead per "
                         "spawn (%s)" % (rt, per[rt] - per["seq"], what))
    return "\n".join(lines) + "\n"


def cmd_report(outdir):
    rows, failed = parse_raw(os.path.join(outdir, "raw.txt"))
    if not rows:
        print("no results in %s/raw.txt" % outdir)
        return 1
    bad = check_checksums(rows)
    stats = summarize(rows)
    cg = None
    cgraw = os.path.join(outdir, "callgrind.raw")
    if os.path.exists(cgraw):
        cg = callgrind_text(cgraw)
    out = sys.stdout
    print_table(stats, out)
    print("", file=out)
    if any(s.get("metric") == "latency" for s in stats):
        print_latency_table(stats, out)
        print("", file=out)
    foreign = machine_context(outdir).get("foreign")
    if foreign:
        pct = float(foreign.split("%")[0])
        print("noise check: other processes used %s during the sweep%s"
              % (foreign, "" if pct < 5 else
                 "  *** 5% or more: timings are unreliable, rerun on a "
                 "quiet machine (QUIET_WAIT=600) ***"), file=out)
    noise = [r["cpu_ns"] / r["time_ns"] for r in rows
             if r["runtime"] == "seq" and r["time_ns"] > 1000000]
    if noise:
        m = median(noise)
        print("noise check: plain C (one thread) got %.2f of a core, median "
              "over its runs%s" % (m, "" if m >= 0.95 else
                                   "  *** below 0.95: other processes "
                                   "competed for the CPUs; timings are "
                                   "unreliable ***"), file=out)
        print("", file=out)
    print("T1/TP: speedup over the same runtime at 1 thread; Ts/TP: over "
          "plain sequential C; eff = speedup / P; ovh/task = (T1 - Tseq) / "
          "tasks; cpu/w = process CPU time / wall time (reads low below "
          "~10 ms); "
          "steals, parks: weft totals per run.", file=out)
    print("", file=out)
    ceiling = read_ceiling(outdir)
    if ceiling:
        print("fanout ceiling: %d processes of plain C at once, each on 1/%d "
              "of the tasks (no runtime, nothing shared), the slowest of "
              "them, median of %d rounds: the speedup this machine allows "
              "at P=%d." % (ceiling[0], ceiling[0], len(ceiling[1]),
                            ceiling[0]), file=out)
        print("", file=out)
    print_headlines(stats, cg, out, ceiling)
    print("", file=out)
    print_weft_workers(rows, out, os.path.join(outdir, "weft_workers.csv"))
    write_csv(stats, rows, outdir)
    write_json(stats, rows, outdir)
    plots(stats, outdir)
    rc = 0
    if failed:
        print("", file=out)
        for f in failed:
            print("!!!! FAILED RUN: %s" % " ".join("%s=%s" % kv
                                                   for kv in f.items()),
                  file=out)
        rc = 1
    if bad:
        print("", file=out)
        for r in bad:
            print("!!!! CHECKSUM MISMATCH vs seq: runtime=%s workload=%s "
                  "threads=%d rep=%d checksum=%d"
                  % (r["runtime"], r["workload"], r["threads"], r["rep"],
                     r["checksum"]), file=out)
        rc = 1
    return rc


def cmd_busy(outdir):
    rows, failed = parse_raw(os.path.join(outdir, "raw.txt"))
    t = {}
    for r in rows:
        t.setdefault((r["runtime"], r.get("load", "idle")), []).append(r)
    rts = sorted({rt for rt, _ in t}, key=rt_key)
    p = rows[0]["threads"] if rows else 0
    print("one core busy: fib (%s) at P=%d; 'busy' runs beside a spinning "
          "'yes > /dev/null'" % (rows[0]["param"] if rows else "?", p))
    print("%-7s %10s %10s %10s %10s %10s %8s %8s" % (
        "rt", "idle_ms", "busy_ms", "p10_busy", "p90_busy", "busy/idle",
        "steals", "parks"))
    for rt in rts:
        idle = [r["time_ns"] for r in t.get((rt, "idle"), [])]
        busy = [r["time_ns"] for r in t.get((rt, "busy"), [])]
        if not idle or not busy:
            continue
        br = t.get((rt, "busy"), [])
        steals = median([r["stolen"] for r in br]) if "stolen" in br[0] \
            else float("nan")
        parks = median([r["parks"] for r in br]) if "parks" in br[0] \
            else float("nan")
        print("%-7s %10.2f %10.2f %10.2f %10.2f %10.2f %8s %8s" % (
            rt, median(idle) / 1e6, median(busy) / 1e6,
            percentile(busy, 0.1) / 1e6, percentile(busy, 0.9) / 1e6,
            median(busy) / median(idle), fmt_count(steals),
            fmt_count(parks)))
    print("(with one of %d cores taken, a runtime that adapts perfectly gets "
          "about %.2fx its idle time: the spinner holds a fair share)"
          % (os.cpu_count(), (p + 1) / p if p else 0))
    for f in failed:
        print("!!!! FAILED RUN: %s" % f)
    return 1 if failed else 0


def main(argv):
    if len(argv) != 3 or argv[1] not in ("report", "callgrind", "busy"):
        print(__doc__, file=sys.stderr)
        return 64
    if argv[1] == "report":
        return cmd_report(argv[2])
    if argv[1] == "callgrind":
        sys.stdout.write(callgrind_text(argv[2]))
        return 0
    return cmd_busy(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
