#!/usr/bin/env python3
"""Helpers for bench/run.sh: what each run measured, and the tables.

  report.py wrk FILE HIST [CPU]      -> "rps p50_us p99_us errors requests cpu_s" from wrk
                                        --latency output, the histogram wrk_hist.lua wrote
                                        and the file bench/load/cputime.py wrote
  report.py h2load FILE LOG          -> same from h2load output and its --log-file (cpu_s nan)
  report.py policy METRICS           -> one line: what Levee's policy stack did, from /metrics
  report.py table RESULTS.tsv IDLE_DIR [META]  -> Markdown tables on stdout

p50 and p99 are benchlib.percentile (nearest rank) over every response's
latency, in seconds, printed in microseconds: for wrk over its latency
histogram (whole microseconds), for h2load over its log file.

requests is what the load generator completed; cpu_s the CPU seconds (user
+ system, every thread) the proxy's processes spent over the run, from
/proc/PID/stat before and after it (the "pids" line of cputime.py's file;
nan without one). The table shows their quotient per round, in
microseconds, as the median over the rounds.
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
    return w["rps"], p50, p99, w["errors"], w["requests"]


def proxy_cpu_s(cpu_path):
    """The proxy's CPU seconds over the run from cputime.py's file, or nan."""
    if not cpu_path or not os.path.exists(cpu_path):
        return NAN
    with open(cpu_path) as f:
        pids = benchlib.parse_cputime(f.read())["pids"]
    return pids[0] if pids else NAN


def parse_h2load(path, log):
    with open(path) as f:
        h = benchlib.parse_h2load(f.read())
    lat = []
    if os.path.exists(log):
        with open(log) as f:
            lat = benchlib.parse_h2load_log(f)
    return (
        h["rps"],
        benchlib.percentile(lat, 50) * 1e6,
        benchlib.percentile(lat, 99) * 1e6,
        h["errors"],
        h["requests"],
    )


# What the policy stack did over a run: its counters from Levee's /metrics
# (all of them should stay 0 but the concurrency limit, on a healthy origin).
POLICY_METRICS = [
    ("retries", "levee_retries_total", {}),
    ("retry budget exhausted", "levee_retry_budget_exhausted_total", {}),
    ("rate-limited", "levee_ratelimit_decisions_total", {"result": "limited"}),
    ("rate limit allowed", "levee_ratelimit_decisions_total", {"result": "allowed"}),
    ("breaker opened", "levee_circuit_breaker_opened_total", {}),
    ("outlier ejected", "levee_endpoint_outlier_ejected", {}),
    ("shed by the concurrency limit", "levee_cluster_shed_total", {}),
    ("concurrency limit", "levee_cluster_concurrency_limit", {}),
    # The route's SLO (bench/run.sh names it), not Levee's built-in tier ones.
    ("SLO events", "levee_slo_events_total", {"slo": "bench-availability"}),
    ("SLO bad events", "levee_slo_bad_events_total", {"slo": "bench-availability"}),
]


def policy_line(metrics):
    """One line from Levee's metrics: what each part of the policy stack did."""
    if not metrics:
        return "no metrics"
    return ", ".join(f"{label} {benchlib.msum(metrics, name, **want):,.0f}" for label, name, want in POLICY_METRICS)


TARGETS = ["levee", "levee-policy", "nginx", "haproxy", "direct"]
LEVEES = ["levee", "levee-policy"]
NAMES = {
    "levee": "Levee",
    "levee-policy": "Levee, policy stack",
    "nginx": "NGINX",
    "haproxy": "HAProxy",
    "direct": "origin direct",
}
SCENARIOS = [
    ("a", "(a) HTTP/1.1 keep-alive, small response, max rate (wrk -t1 -c64), pinned"),
    ("a_shared", "(a') same as (a), unpinned (all processes share both cores)"),
    (
        "a2",
        "(a2) same as (a), two workers per proxy (Levee worker_threads = 2, NGINX worker_processes 2, "
        "HAProxy nbthread 2), unpinned: proxy, origin and wrk share both cores",
    ),
    ("b", "(b) HTTP/1.1 fixed rate = 1/2 of NGINX's (a) median (h2load --h1 -c64 --rps)"),
    ("c", "(c) HTTP/2 h2c, small response, max rate (h2load -c64 -m8)"),
    ("d", "(d) HTTP/1.1, 1 MiB response (wrk -t1 -c16)"),
]


def fmt_ms(us):
    if us != us:  # nan
        return "–"
    return f"{us / 1000:.2f}"


def fmt_us(us):
    if us != us:  # nan
        return "–"
    return f"{us:.1f}"


def ratio(a, b):
    if a != a or b != b or b == 0:
        return "–"
    return f"{a / b:.2f}"


# Columns of a results.tsv row after scenario, target and round.
RPS, P50, P99, ERRORS, CPU_US = range(5)


def read_results(path):
    """results.tsv -> {(scenario, target): [(rps, p50_us, p99_us, errors,
    cpu_us_per_request), ...]}, one tuple per round. Files written before
    the requests and cpu_s columns existed give cpu nan."""
    rows = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            scen, target, _rnd, rps, p50, p99, errors = cols[:7]
            cpu = NAN
            if len(cols) >= 9:
                cpu = benchlib.cpu_us_per_request(float(cols[8]), float(cols[7]))
            rows.setdefault((scen, target), []).append((float(rps), float(p50), float(p99), int(errors), cpu))
    return rows


def median_of(rows, scen, target, i):
    """The median of column i over the rounds (nan ones left out)."""
    vals = [r[i] for r in rows.get((scen, target), []) if r[i] == r[i]]
    return statistics.median(vals) if vals else NAN


def ratio_rows(rows):
    """The ratio table's rows: (scenario label, metric, [Levee/NGINX,
    Levee/HAProxy, Levee/direct, NGINX/direct, HAProxy/direct]) as floats
    (nan where a median is missing), for plain Levee and, where it ran,
    the policy stack."""
    out = []
    for scen, _title in SCENARIOS:
        for lv in LEVEES:
            if (scen, lv) not in rows:
                continue
            label = scen if lv == "levee" else f"{scen}, policy stack"
            metrics = [("req/s", RPS)]
            if scen in ("a", "a2", "b", "c"):
                metrics.append(("p99", P99))
            if median_of(rows, scen, lv, CPU_US) == median_of(rows, scen, lv, CPU_US):
                metrics.append(("CPU/req", CPU_US))
            for name, i in metrics:
                L, N, H, D = (median_of(rows, scen, t, i) for t in (lv, "nginx", "haproxy", "direct"))
                vals = [(L, N), (L, H), (L, D), (N, D), (H, D)]
                out.append((label, name, [a / b if b == b and b else NAN for a, b in vals]))
    return out


def table(results_path, idle_dir, meta_path=None):
    rows = read_results(results_path)

    def med(scen, target, i):
        return median_of(rows, scen, target, i)

    out = []
    if meta_path and os.path.exists(meta_path):
        out.append(open(meta_path).read().rstrip() + "\n")
    out.append("| scenario | target | req/s (median) | CPU µs/req | p50 ms | p99 ms | rounds | errors |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for scen, title in SCENARIOS:
        first = True
        for t in TARGETS:
            if (scen, t) not in rows:
                continue
            rs = rows[(scen, t)]
            rps = med(scen, t, RPS)
            extra = ""
            if scen == "d":
                extra = f" ({rps:.0f} MiB/s)"
            out.append(
                f"| {title if first else ''} | {NAMES[t]} | {rps:,.0f}{extra} | {fmt_us(med(scen, t, CPU_US))} | "
                f"{fmt_ms(med(scen, t, P50))} | {fmt_ms(med(scen, t, P99))} | {len(rs)} | {sum(r[ERRORS] for r in rs)} |"
            )
            first = False
    out.append("")
    out.append(
        "CPU µs/req: the proxy's CPU time (user + system, every thread, all its processes; /proc/PID/stat "
        "before and after each run) over the requests wrk completed, median of the rounds; "
        "measured for the wrk runs only (h2load's warm-up second would count in the CPU, not in the requests)."
    )
    out.append("")
    out.append(
        "Ratios of medians (throughput: higher is better for Levee; p99 and CPU per request: "
        "lower is better for Levee):"
    )
    out.append("")
    out.append("| scenario | metric | Levee/NGINX | Levee/HAProxy | Levee/direct | NGINX/direct | HAProxy/direct |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for label, name, vals in ratio_rows(rows):
        out.append(f"| {label} | {name} | " + " | ".join("–" if v != v else f"{v:.2f}" for v in vals) + " |")
    out.append("")

    cost = [
        (scen, [ratio(med(scen, "levee-policy", i), med(scen, "levee", i)) for i in (RPS, P99, CPU_US)])
        for scen, _ in SCENARIOS
        if (scen, "levee-policy") in rows and (scen, "levee") in rows
    ]
    if cost:
        out.append("The policy stack's cost (Levee with it / plain Levee, medians):")
        out.append("")
        out.append("| scenario | req/s | p99 | CPU/req |")
        out.append("|---|---:|---:|---:|")
        for scen, (r, p, c) in cost:
            out.append(f"| {scen} | {r} | {p} | {c} |")
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
        cpu = proxy_cpu_s(sys.argv[4] if len(sys.argv) > 4 else None)
        print(f"{r[0]:.1f}\t{r[1]:.1f}\t{r[2]:.1f}\t{r[3]}\t{r[4]}\t{cpu:.3f}")
    elif cmd == "h2load":
        r = parse_h2load(sys.argv[2], sys.argv[3])
        print(f"{r[0]:.1f}\t{r[1]:.1f}\t{r[2]:.1f}\t{r[3]}\t{r[4]}\tnan")
    elif cmd == "policy":
        print(policy_line(benchlib.metrics_file(sys.argv[2])))
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
