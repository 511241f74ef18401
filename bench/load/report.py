#!/usr/bin/env python3
"""Tables for bench/load/run.sh (issue 14): reads the raw outputs in OUT and
prints Markdown. Standard library only.

    report.py OUT

OUT/rate/, OUT/h2int/, OUT/max/, OUT/stall/, OUT/mem/ as the script writes them; a
missing phase is skipped. Percentiles of h2load are nearest rank over its
--log-file (every response); wrk's come from its own histogram
(bench/load/wrk_stats.lua); levee load's from its --out json (HDR).
"""
import glob
import json
import math
import os
import re
import statistics
import sys


def nearest_rank(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def levee(path):
    with open(path) as f:
        j = json.load(f)
    lat = j.get("latency") or {}
    req = j["requests"]
    return {
        "rate": j["achieved_rate"],
        "requested": j.get("requested_rate"),
        "ok": req.get("ok", 0),
        "failed": req.get("failed", 0),
        "late": req.get("late", 0),
        "dropped": req.get("dropped", 0),
        "sent": req.get("sent", 0),
        "p50": lat.get("p50_ms", float("nan")),
        "p99": lat.get("p99_ms", float("nan")),
        "max": lat.get("max_ms", float("nan")),
        "sending_s": j.get("sending_s"),
    }


def h2load(txt, logfile):
    with open(txt) as f:
        out = f.read()
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    lat = []
    if os.path.exists(logfile):
        with open(logfile) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].strip().isdigit() and int(parts[1]) > 0:
                    lat.append(int(parts[2]) / 1000.0)
    lat.sort()
    return {
        "rate": float(m.group(2)) if m else float("nan"),
        "ok": int(r.group(4)) if r else 0,
        "failed": (int(r.group(5)) + int(r.group(6))) if r else 0,
        "p50": nearest_rank(lat, 50),
        "p99": nearest_rank(lat, 99),
        "max": lat[-1] if lat else float("nan"),
    }


def wrk(txt):
    with open(txt) as f:
        out = f.read()
    m = re.search(r"WRKSTATS (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not m:
        return None
    n, err, dur, p50, p99, mx = map(int, m.groups())
    return {"rate": n / (dur / 1e6), "ok": n - err, "failed": err,
            "p50": p50 / 1000, "p99": p99 / 1000, "max": mx / 1000}


def oha(path):
    """oha's --output-format json: its own rate and percentiles (seconds)."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        j = json.load(f)
    s = j["summary"]
    pct = j.get("latencyPercentiles") or {}
    codes = j.get("statusCodeDistribution") or {}
    ok = sum(n for c, n in codes.items() if c.startswith("2"))
    # Requests cut off by -z's end are not failures of the server.
    errors = sum(n for e, n in (j.get("errorDistribution") or {}).items()
                 if e != "aborted due to deadline")
    ms = lambda v: float("nan") if v is None else v * 1000
    return {"rate": s["requestsPerSec"], "ok": ok,
            "failed": sum(codes.values()) - ok + errors,
            "p50": ms(pct.get("p50")), "p99": ms(pct.get("p99")), "p99.9": ms(pct.get("p99.9")),
            "max": ms(s.get("slowest"))}


def med(rows, key):
    vals = [r[key] for r in rows if r is not None and not math.isnan(r[key])]
    return statistics.median(vals) if vals else float("nan")


def fmt_ms(v):
    if math.isnan(v):
        return "n/a"
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def fmt_rate(v):
    return "n/a" if math.isnan(v) else f"{v:,.0f}"


def per_round(rows, key, f):
    return " / ".join(f(r[key]) for r in rows if r is not None)


def rate_table(out):
    d = os.path.join(out, "rate")
    if not glob.glob(f"{d}/*.json"):
        return
    rates = sorted({int(re.search(r"-(\d+)-r", p).group(1)) for p in glob.glob(f"{d}/*-r*.*")})
    print("### Achieved against requested rate (open model, 10 s)\n")
    print("| requested req/s | tool | achieved req/s (median; rounds) | error | p50 ms | p99 ms | max ms | late | dropped | failed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rate in rates:
        lv = [levee(p) for p in sorted(glob.glob(f"{d}/levee-{rate}-r*.json"))]
        h2 = [h2load(p, p[:-4] + ".log") for p in sorted(glob.glob(f"{d}/h2load-{rate}-r*.txt"))]
        h2i = [h2load(p, p[:-4] + ".log") for p in sorted(glob.glob(f"{out}/h2int/h2load-{rate}-r*.txt"))]
        oh = [r for r in (oha(p) for p in sorted(glob.glob(f"{d}/oha-{rate}-r*.json"))) if r]
        for name, rows in (("levee load", lv), (f"h2load -c64 --rps {rate / 64:g}", h2),
                           (f"h2load -c50 --rps {rate // 50}", h2i),
                           (f"oha -q {rate} -c 64 --latency-correction", oh)):
            if not rows:
                continue
            a = med(rows, "rate")
            errs = [100 * (r["rate"] - rate) / rate for r in rows]
            err = f"{statistics.median(errs):+.2f}% ({' / '.join(f'{e:+.2f}' for e in errs)})"
            late = "/".join(str(r["late"]) for r in rows) if name == "levee load" else "n/a"
            dropped = "/".join(str(r["dropped"]) for r in rows) if name == "levee load" else "n/a"
            failed = "/".join(str(r["failed"]) for r in rows)
            print(f"| {rate:,} | {name} | {fmt_rate(a)} ({per_round(rows, 'rate', fmt_rate)}) | {err} | "
                  f"{fmt_ms(med(rows, 'p50'))} | {fmt_ms(med(rows, 'p99'))} | {fmt_ms(med(rows, 'max'))} | "
                  f"{late} | {dropped} | {failed} |")
    print()


def cpu_us(path, requests):
    """CPU microseconds per request from cputime.py's file, or nan."""
    if not os.path.exists(path) or not requests:
        return float("nan")
    with open(path) as f:
        return float(f.read().split()[0]) * 1e6 / requests


def max_table(out):
    d = os.path.join(out, "max")
    if not glob.glob(f"{d}/*.txt"):
        return
    w = [wrk(p) for p in sorted(glob.glob(f"{d}/wrk-r*.txt"))]
    h2 = [h2load(p, p[:-4] + ".log") for p in sorted(glob.glob(f"{d}/h2load-r*.txt"))]
    lv = [levee(p) for p in sorted(glob.glob(f"{d}/levee-r*.json"))]
    oh = [r for r in (oha(p) for p in sorted(glob.glob(f"{d}/oha-r*.json"))) if r]
    wr = med(w, "rate")
    # CPU per request, from each run's .cpu file and its own count.
    def with_cpu(tool, rows, paths):
        for r, p in zip(rows, paths):
            if r is not None:
                n = r["ok"] + r["failed"]
                r["cpu_us"] = cpu_us(re.sub(r"\.(txt|json)$", ".cpu", p), n)
        return rows
    w = with_cpu("wrk", w, sorted(glob.glob(f"{d}/wrk-r*.txt")))
    h2 = with_cpu("h2load", h2, sorted(glob.glob(f"{d}/h2load-r*.txt")))
    lv = with_cpu("levee", lv, sorted(glob.glob(f"{d}/levee-r*.json")))
    oh = with_cpu("oha", oh, sorted(p for p in glob.glob(f"{d}/oha-r*.json") if oha(p)))
    wc = med(w, "cpu_us") if all("cpu_us" in x for x in w if x) else float("nan")
    print("### Maximum rate, one core, 64 connections, 10 s\n")
    print("| tool | req/s (median; rounds) | ÷ wrk | CPU µs per request (median; rounds) | ÷ wrk | p50 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in (("wrk -t1 -c64", w), ("h2load --h1 -t1 -c64", h2), ("oha -c 64", oh),
                       ("levee load --vus 64", lv)):
        if not rows:
            continue
        r = med(rows, "rate")
        c = med(rows, "cpu_us") if all("cpu_us" in x for x in rows if x) else float("nan")
        cpu = "n/a" if math.isnan(c) else f"{c:.2f} ({per_round(rows, 'cpu_us', lambda v: f'{v:.2f}')})"
        cr = "n/a" if math.isnan(c) or math.isnan(wc) else f"{c / wc:.2f}"
        print(f"| {name} | {fmt_rate(r)} ({per_round(rows, 'rate', fmt_rate)}) | {r / wr:.2f} | {cpu} | {cr} | "
              f"{fmt_ms(med(rows, 'p50'))} | {fmt_ms(med(rows, 'p99'))} | {'/'.join(str(x['failed']) for x in rows)} |")
    print()


def stall_table(out):
    d = os.path.join(out, "stall")
    if not glob.glob(f"{d}/*.txt"):
        return
    print("### Stalled origin (1 s pause every 10 s, 30 s at about 2,000 req/s)\n")
    print("| tool | achieved req/s | p50 ms | p99 ms | p99.9 ms | max ms | late | dropped | failed |")
    print("|---|---|---|---|---|---|---|---|---|")
    p = f"{d}/levee.json"
    if os.path.exists(p):
        r = levee(p)
        with open(p) as f:
            p999 = json.load(f)["latency"].get("p99.9_ms", float("nan"))
        print(f"| levee load --rate 2000 | {fmt_rate(r['rate'])} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | "
              f"{fmt_ms(p999)} | {fmt_ms(r['max'])} | {r['late']} | {r['dropped']} | {r['failed']} |")
    p = f"{d}/wrk.txt"
    if os.path.exists(p):
        r = wrk(p)
        if r:
            print(f"| wrk -c64, paced (delay 32 ms) | {fmt_rate(r['rate'])} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | n/a | "
                  f"{fmt_ms(r['max'])} | n/a | n/a | {r['failed']} |")
    p = f"{d}/h2load.txt"
    if os.path.exists(p):
        r = h2load(p, f"{d}/h2load.log")
        lat = []
        with open(f"{d}/h2load.log") as f:
            lat = sorted(int(x.split("\t")[2]) / 1000 for x in f if x.count("\t") >= 2)
        print(f"| h2load --h1 -c64 --rps 31.25 | {fmt_rate(r['rate'])} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | "
              f"{fmt_ms(nearest_rank(lat, 99.9))} | {fmt_ms(r['max'])} | n/a | n/a | {r['failed']} |")
    for name, label in (("oha-corrected", "oha -q 2000 -c 64 --latency-correction"), ("oha", "oha -q 2000 -c 64")):
        r = oha(f"{d}/{name}.json")
        if r:
            print(f"| {label} | {fmt_rate(r['rate'])} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | "
                  f"{fmt_ms(r['p99.9'])} | {fmt_ms(r['max'])} | n/a | n/a | {r['failed']} |")
    print()


def mem_table(out):
    d = os.path.join(out, "mem")
    p = f"{d}/rss.tsv"
    if not os.path.exists(p):
        return
    rows = []
    with open(p) as f:
        for line in f:
            if line.startswith("#"):
                continue
            t, rss, hwm, thr = line.split("\t")
            rows.append((float(t), int(rss), int(hwm)))

    def at(sec):
        c = min(rows, key=lambda r: abs(r[0] - sec))
        return c

    print("### Memory, `levee load --rate 5000 --duration 600s` (VmRSS every 10 s)\n")
    print("| at | VmRSS MiB | VmHWM MiB |")
    print("|---|---|---|")
    for label, sec in (("10 s", 10), ("1 min", 60), ("5 min", 300), ("10 min (last sample)", rows[-1][0])):
        t, rss, hwm = at(sec)
        print(f"| {label} (sample at {t:.0f} s) | {rss / 1024:.1f} | {hwm / 1024:.1f} |")
    a, b, c = at(60)[1], at(300)[1], at(rows[-1][0])[1]
    print(f"\nChange 1 min → 5 min: {100 * (b - a) / a:+.1f}%; 1 min → 10 min: {100 * (c - a) / a:+.1f}%. "
          f"Min/max VmRSS after 1 min: {min((r[1] for r in rows if r[0] >= 60), default=0) / 1024:.1f} / "
          f"{max((r[1] for r in rows if r[0] >= 60), default=0) / 1024:.1f} MiB ({len(rows)} samples).")
    j = f"{d}/levee.json"
    if os.path.exists(j):
        r = levee(j)
        print(f"The run: {fmt_rate(r['rate'])} req/s achieved of 5,000, p50 {fmt_ms(r['p50'])} ms, p99 {fmt_ms(r['p99'])} ms, "
              f"max {fmt_ms(r['max'])} ms, late {r['late']}, dropped {r['dropped']}, failed {r['failed']}.")
    print()


def main():
    out = sys.argv[1]
    for f in (mem_table, rate_table, max_table, stall_table):
        f(out)


if __name__ == "__main__":
    main()
