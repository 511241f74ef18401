#!/usr/bin/env python3
"""Helpers for bench/run.sh: what each run measured, and the tables.

  report.py wrk FILE HIST            -> "rps p50_us p99_us errors" from wrk --latency output
                                        and the histogram wrk_hist.lua wrote
  report.py h2load FILE LOG          -> same from h2load output and its --log-file
  report.py table RESULTS.tsv IDLE_DIR [META]  -> Markdown tables on stdout

p50 and p99 are benchlib.percentile (nearest rank) over every response's
latency, in seconds, printed in microseconds: for wrk over its latency
histogram (whole microseconds), for h2load over its log file.
"""

import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

NAN = float("nan")


def parse_wrk(path, hist_path):
    with open(path) as f:
        w = benchlib.parse_wrk(f.read())
    pairs, complete = [], False
    if os.path.exists(hist_path):
        with open(hist_path) as f:
            pairs, complete = benchlib.parse_wrk_hist(f.read())
    if not complete:
        # One rule for every percentile: without wrk's whole histogram there
        # is no p50/p99 (wrk's own figures are not used).
        print(f"report: no complete latency histogram in {hist_path}", file=sys.stderr)
        pairs = []
    p50 = benchlib.percentile_hist(pairs, 50) * 1e6
    p99 = benchlib.percentile_hist(pairs, 99) * 1e6
    return w["rps"], p50, p99, w["errors"]


def parse_h2load(path, log):
    with open(path) as f:
        h = benchlib.parse_h2load(f.read())
    lat = []
    if os.path.exists(log):
        with open(log) as f:
            lat = benchlib.parse_h2load_log(f)
    return h["rps"], benchlib.percentile(lat, 50) * 1e6, benchlib.percentile(lat, 99) * 1e6, h["errors"]


TARGETS = ["levee", "nginx", "haproxy", "direct"]
NAMES = {"levee": "Levee", "nginx": "NGINX", "haproxy": "HAProxy", "direct": "origin direct"}
SCENARIOS = [
    ("a", "(a) HTTP/1.1 keep-alive, small response, max rate (wrk -t1 -c64), pinned"),
    ("a_shared", "(a') same as (a), unpinned (all processes share both cores)"),
    ("b", "(b) HTTP/1.1 fixed rate = 1/2 of NGINX's (a) median (h2load --h1 -c64 --rps)"),
    ("c", "(c) HTTP/2 h2c, small response, max rate (h2load -c64 -m8)"),
    ("d", "(d) HTTP/1.1, 1 MiB response (wrk -t1 -c16)"),
]


def fmt_ms(us):
    if us != us:  # nan
        return "–"
    return f"{us / 1000:.2f}"


def table(results_path, idle_dir, meta_path=None):
    rows = {}
    with open(results_path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            scen, target, rnd, rps, p50, p99, errors = line.rstrip("\n").split("\t")[:7]
            rows.setdefault((scen, target), []).append(
                (float(rps), float(p50), float(p99), int(errors))
            )

    def med(scen, target, i):
        vals = [r[i] for r in rows.get((scen, target), []) if r[i] == r[i]]
        return statistics.median(vals) if vals else float("nan")

    out = []
    if meta_path and os.path.exists(meta_path):
        out.append(open(meta_path).read().rstrip() + "\n")
    out.append("| scenario | target | req/s (median) | p50 ms | p99 ms | rounds | errors |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for scen, title in SCENARIOS:
        first = True
        for t in TARGETS:
            if (scen, t) not in rows:
                continue
            rs = rows[(scen, t)]
            rps = med(scen, t, 0)
            extra = ""
            if scen == "d":
                extra = f" ({rps:.0f} MiB/s)"
            out.append(
                f"| {title if first else ''} | {NAMES[t]} | {rps:,.0f}{extra} | {fmt_ms(med(scen, t, 1))} | "
                f"{fmt_ms(med(scen, t, 2))} | {len(rs)} | {sum(r[3] for r in rs)} |"
            )
            first = False
    out.append("")
    out.append("Ratios of medians (throughput: higher is better for Levee; p99: lower is better for Levee):")
    out.append("")
    out.append("| scenario | metric | Levee/NGINX | Levee/HAProxy | Levee/direct | NGINX/direct | HAProxy/direct |")
    out.append("|---|---|---:|---:|---:|---:|---:|")

    def ratio(a, b):
        if a != a or b != b or b == 0:
            return "–"
        return f"{a / b:.2f}"

    for scen, title in SCENARIOS:
        if (scen, "levee") not in rows:
            continue
        metrics = [("req/s", 0), ("p99", 2)] if scen in ("b", "c", "a") else [("req/s", 0)]
        for label, i in metrics:
            L, N, H, D = (med(scen, t, i) for t in TARGETS)
            out.append(
                f"| {scen} | {label} | {ratio(L, N)} | {ratio(L, H)} | {ratio(L, D)} | {ratio(N, D)} | {ratio(H, D)} |"
            )
    out.append("")

    idle = []
    for path in sorted(glob.glob(os.path.join(idle_dir, "*.json"))):
        target = os.path.basename(path).split(".")[0]
        try:
            d = json.load(open(path))
        except (OSError, ValueError):
            continue
        idle.append((target, d))
    if idle:
        out.append("(e) Memory holding idle HTTP/1.1 keep-alive connections (each sent one request, then idle):")
        out.append("")
        out.append("| proxy | connections held | closed during hold | RSS before (MiB) | peak RSS VmHWM (MiB) | KiB per connection |")
        out.append("|---|---:|---:|---:|---:|---:|")
        order = {t: i for i, t in enumerate(TARGETS)}
        for target, d in sorted(idle, key=lambda x: order.get(x[0], 99)):
            # The serving process: the one whose peak grew most (NGINX's worker).
            best = None
            for pid, after in d["after"].items():
                b = d["before"].get(pid, {})
                grow = after.get("VmHWM", 0) - b.get("VmRSS", 0)
                if best is None or grow > best[0]:
                    best = (grow, b.get("VmRSS", 0), after.get("VmHWM", 0))
            if best is None:
                continue
            held = d["opened"] - d["closed_by_server_during_hold"]
            per = best[0] / held if held else float("nan")
            out.append(
                f"| {NAMES.get(target, target)} | {held:,} of {d['requested']:,} | {d['closed_by_server_during_hold']} | "
                f"{best[1] / 1024:.1f} | {best[2] / 1024:.1f} | {per:.1f} |"
            )
        out.append("")
    print("\n".join(out))


def main():
    cmd = sys.argv[1]
    if cmd == "wrk":
        r = parse_wrk(sys.argv[2], sys.argv[3])
        print(f"{r[0]:.1f}\t{r[1]:.1f}\t{r[2]:.1f}\t{r[3]}")
    elif cmd == "h2load":
        r = parse_h2load(sys.argv[2], sys.argv[3])
        print(f"{r[0]:.1f}\t{r[1]:.1f}\t{r[2]:.1f}\t{r[3]}")
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
