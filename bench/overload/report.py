#!/usr/bin/env python3
"""Metrics of the overload benchmark (stdlib only).

  report.py OUT_DIR          Markdown tables for every run under OUT_DIR/raw
  report.py --one RUN_DIR    one line for one run (run.sh prints it)
  report.py --json OUT_DIR   the metrics as JSON

Overload runs (raw/ov.x<load>.<proxy>.r<round>/) hold meta.json (run.sh),
load.json (load.py) and upstream.json (upstream.py /dump); rate-limit runs
(raw/rl.<proxy>/) the same. Times are seconds from the start of the
client's schedule (t0). Definitions (also in RELIABILITY.md, "Overload"):

- Only the overload phase counts (the warm-up at C/2 before it does not):
  requests whose *scheduled* send time falls in it.
- Success: a 2xx answer within the client timeout. Anything else (a 429,
  502, 503 or 504, a transport error, no answer in time) is a failure.
- Goodput: successful answers received per second during the phase (by
  the time the answer arrived), divided by the upstream's capacity C
  (concurrency / service time). At most 1; the Python upstream's timer
  overshoot keeps its real ceiling a few percent lower.
- Success per class and per tenant: successful / sent within the group.
- p99 ok: the 99th percentile of the latency of successful requests, from
  the scheduled send time to the end of the response. Every percentile here
  is nearest rank (bench/benchlib.py percentile, the rule of every report).
- Upstream served/s: requests the upstream finished during the phase (by
  end time), divided by its length; "wasted": those finished after the
  proxy had closed the connection (nobody read the answer).
- Rate-limit accuracy: admitted (2xx) over the run against R x T + burst
  (a full bucket at the start, then R per second), and R against the
  admitted rate after the first second.
"""

import json
import os
import re
import sys
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import benchlib  # noqa: E402
from benchlib import msum, parse_metrics  # noqa: E402, F401
from benchlib import percentile as pctl  # noqa: E402  (nearest rank; the rule of every report)

PROXY_ORDER = ["levee", "levee-fixed", "nginx", "haproxy"]
PROXY_TITLE = {
    "levee": "Levee (gradient)",
    "levee-fixed": "Levee (fixed)",
    "nginx": "NGINX",
    "haproxy": "HAProxy",
}
RL_ORDER = ["levee", "levee-redis", "nginx", "haproxy", "haproxy-admitted"]
RL_TITLE = {
    "levee": "Levee, local",
    "levee-redis": "Levee, global: 3 gateways, one Redis",
    "nginx": "NGINX `limit_req`",
    "haproxy": "HAProxy stick table (track, then deny)",
    "haproxy-admitted": "HAProxy stick table (deny, then track: admitted only)",
}


def read_json(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def metrics_file(d, name):
    return benchlib.metrics_file(os.path.join(d, name))


def haproxy_stats(d):
    rows = benchlib.read_haproxy_stat_file(os.path.join(d, "haproxy.stat.csv"))
    if rows is None:
        return None
    return {(row.get("pxname"), row.get("svname")): row for row in rows}


NGINX_PATTERNS = [
    ("limiting requests", "limit_req refusals"),
    ("limiting connections", "limit_conn refusals"),
    ("no live upstreams", "max_conns full (no live upstreams)"),
]


def nginx_log(d):
    return benchlib.nginx_error_counts(os.path.join(d, "nginx.error.log"), NGINX_PATTERNS)


def levee_log_problems(d):
    """Lines of Levee's logs that look like trouble (panics, errors)."""
    n = 0
    for name in sorted(os.listdir(d)):
        if name.startswith("levee") and name.endswith(".log"):
            with open(os.path.join(d, name), errors="replace") as f:
                n += sum(1 for line in f if benchlib.levee_log_is_problem(line))
    return n


# ---------------------------------------------------------------- overload


def compute_overload(d):
    meta = read_json(d, "meta.json")
    load = read_json(d, "load.json")
    up = read_json(d, "upstream.json")
    ph = next(p for p in load["phases"] if p["label"] == "overload")
    a, b = ph["start"], ph["end"]
    secs = b - a
    t, lat, status, err = load["t"], load["latency"], load["status"], load["error"]
    cls, ten, lag = load["class"], load["tenant"], load["lag"]
    idx = [i for i in range(len(t)) if a <= t[i] < b]
    ok = {i for i in idx if err[i] is None and 200 <= status[i] < 300}
    cap = float(meta["capacity"])

    def rate(sel):
        sel = list(sel)
        return (sum(1 for i in sel if i in ok) / len(sel)) if sel else float("nan")

    by_class = {name: rate(i for i in idx if cls[i] == k) for k, name in enumerate(load["classes"])}
    by_tenant = {name: rate(i for i in idx if ten[i] == k) for k, name in enumerate(load["tenants"])}
    default_k = load["classes"].index("default") if "default" in load["classes"] else None
    default_by_tenant = {
        name: rate(i for i in idx if ten[i] == k and cls[i] == default_k) for k, name in enumerate(load["tenants"])
    }
    ok_lat = [lat[i] for i in ok]
    # Goodput counts successful answers by the time they *arrived*, within
    # the phase: what the clients got per second while the overload lasted
    # (a proxy's queue keeps serving for a while after the last arrival).
    done_ok = sum(
        1
        for i in range(len(t))
        if err[i] is None and 200 <= status[i] < 300 and lat[i] is not None and a <= t[i] + lat[i] < b
    )
    crit_k = load["classes"].index("critical") if "critical" in load["classes"] else None
    crit_lat = [lat[i] for i in ok if cls[i] == crit_k]
    failures = Counter((err[i] or str(status[i])) for i in idx if i not in ok)

    t0 = load["t0"]
    ends = [x - t0 for x in up["end"]]
    in_phase = [k for k, x in enumerate(ends) if a <= x < b]
    served = len(in_phase)
    wasted = sum(1 for k in in_phase if not up["delivered"][k])
    # Time requests spent inside the upstream beyond their service time (its queue).
    up_wait = [up["start"][k] - up["arrival"][k] for k in in_phase]

    res = {
        "proxy": meta["proxy"],
        "load": meta["load"],
        "round": meta["round"],
        "capacity": cap,
        "seconds": secs,
        "sent": len(idx),
        "offered_per_s": len(idx) / secs,
        "ok": len(ok),
        "ok_per_s": len(ok) / secs,
        "ok_done_per_s": done_ok / secs,
        "goodput": done_ok / secs / cap,
        "by_class": by_class,
        "by_tenant": by_tenant,
        "default_by_tenant": default_by_tenant,
        "p50_ok_ms": pctl(ok_lat, 50) * 1000,
        "p99_ok_ms": pctl(ok_lat, 99) * 1000,
        "max_ok_ms": max(ok_lat) * 1000 if ok_lat else float("nan"),
        "p99_ok_critical_ms": pctl(crit_lat, 99) * 1000,
        "failures": dict(failures.most_common()),
        "upstream_served_per_s": served / secs,
        "upstream_wasted": wasted,
        "upstream_peak_present": up["stats"]["peak_present"],
        "upstream_wait_p99_ms": pctl(up_wait, 99) * 1000,
        "send_lag_p99_ms": pctl([lag[i] for i in idx], 99) * 1000,
        "send_lag_max_ms": max(lag[i] for i in idx) * 1000 if idx else 0.0,
        "connections_peak": load["summary"].get("connections_peak"),
        "proxy_exited": os.path.exists(os.path.join(d, "proxy-exited")),
    }
    own = []
    if meta["proxy"].startswith("levee"):
        limits, queued = [], []
        for s in load.get("samples", []):
            if "lines" not in s or not (a <= s["t"] < b):
                continue
            m = parse_metrics(s["lines"])
            limits += [v for n, l, v in m if n == "levee_cluster_concurrency_limit"]
            queued += [v for n, l, v in m if n == "levee_cluster_queued_requests"]
        res["levee_limit"] = (
            {"median": pctl(limits, 50), "min": min(limits), "max": max(limits)} if limits else None
        )
        res["levee_queued_max"] = max(queued) if queued else None
        m = metrics_file(d, "levee0.metrics")
        shed = Counter()
        for n, l, v in m:
            if n == "levee_cluster_shed_total" and v:
                shed[l.get("reason", "?")] += v
        res["levee_shed"] = dict(shed)
        res["levee_log_problems"] = levee_log_problems(d)
        if res["levee_limit"]:
            L = res["levee_limit"]
            own.append(f"limit median {L['median']:.0f} (range {L['min']:.0f}–{L['max']:.0f})")
        if res["levee_queued_max"] is not None:
            own.append(f"queued ≤ {res['levee_queued_max']:.0f}")
        if shed:
            own.append("shed " + ", ".join(f"{k} {v:.0f}" for k, v in shed.most_common()))
        if res["levee_log_problems"]:
            own.append(f"ERROR/panic log lines {res['levee_log_problems']}")
    elif meta["proxy"] == "haproxy":
        st = haproxy_stats(d)
        if st:
            be = st.get(("app", "BACKEND"), {})
            sv = st.get(("app", "s1"), {})
            res["haproxy"] = {k: be.get(k) for k in ("qmax", "qtime", "hrsp_5xx", "econ", "eresp")}
            res["haproxy"]["server_qmax"] = sv.get("qmax")
            own.append(f"queue max {be.get('qmax')} (server {sv.get('qmax')}), backend 5xx {be.get('hrsp_5xx')}")
    elif meta["proxy"] == "nginx":
        res["nginx"] = nginx_log(d)
        own.append(", ".join(f"{k} {v}" for k, v in res["nginx"].items()) or "–")
    res["own"] = "; ".join(own) or "–"
    return res


# ---------------------------------------------------------------- rate limit


def compute_ratelimit(d):
    meta = read_json(d, "meta.json")
    load = read_json(d, "load.json")
    ph = load["phases"][0]
    a, b = ph["start"], ph["end"]
    secs = b - a
    t, lat, status, err, tgt = load["t"], load["latency"], load["status"], load["error"], load["target"]
    idx = [i for i in range(len(t)) if a <= t[i] < b]
    ok = [i for i in idx if err[i] is None and 200 <= status[i] < 300]
    limited = [i for i in idx if err[i] is None and status[i] == 429]
    other = Counter((err[i] or str(status[i])) for i in idx if i not in set(ok) and i not in set(limited))
    R, burst = float(meta["rate"]), float(meta["burst"])
    expected = R * secs + burst
    per_sec = Counter(int(t[i] - a) for i in ok)
    steady = [per_sec.get(s, 0) for s in range(1, int(secs))]
    after_first = sum(steady) / len(steady) if steady else float("nan")
    n_gw = int(meta.get("gateways", 1))
    per_gw = [sum(1 for i in ok if tgt[i] == g) for g in range(n_gw)]
    res = {
        "proxy": meta["proxy"],
        "rate": R,
        "burst": burst,
        "seconds": secs,
        "gateways": n_gw,
        "sent": len(idx),
        "offered_per_s": len(idx) / secs,
        "admitted": len(ok),
        "admitted_per_s": len(ok) / secs,
        "expected": expected,
        "error": (len(ok) - expected) / expected,
        "after_first_per_s": after_first,
        "after_first_error": (after_first - R) / R,
        "per_second_min": min(steady) if steady else None,
        "per_second_max": max(steady) if steady else None,
        "limited": len(limited),
        "other": dict(other),
        "per_gateway": per_gw,
        "p50_ms": pctl([lat[i] for i in idx if lat[i] is not None], 50) * 1000,
        "p99_ms": pctl([lat[i] for i in idx if lat[i] is not None], 99) * 1000,
        "send_lag_max_ms": max(load["lag"]) * 1000 if load["lag"] else 0.0,
        "proxy_exited": os.path.exists(os.path.join(d, "proxy-exited")),
    }
    if meta["proxy"].startswith("levee"):
        ms = [metrics_file(d, f"levee{g}.metrics") for g in range(n_gw)]
        res["levee"] = {
            "allowed": sum(msum(m, "levee_ratelimit_decisions_total", result="allowed") for m in ms),
            "limited": sum(msum(m, "levee_ratelimit_decisions_total", result="limited") for m in ms),
            "redis_decisions": sum(msum(m, "levee_redis_decisions_total") for m in ms),
            "redis_failures": sum(msum(m, "levee_redis_failures_total") for m in ms),
            "redis_fallback": sum(msum(m, "levee_redis_fallback_decisions_total") for m in ms),
            "log_problems": levee_log_problems(d),
        }
    return res


# ---------------------------------------------------------------- micro


def micro(out):
    """Per benchmark: criterion's median (and slope) in ns, from the
    estimates.json files run.sh copies to OUT/micro/<group>/...; else the
    point estimate of criterion's text output."""
    base = os.path.join(out, "micro")
    res = {}
    for root, _, files in sorted(os.walk(base)):
        if "estimates.json" in files and os.path.basename(root) == "new":
            with open(os.path.join(root, "estimates.json")) as f:
                e = json.load(f)
            name = os.path.relpath(os.path.dirname(root), base)
            slope = (e.get("slope") or {}).get("point_estimate")
            res[name] = {"median_ns": e["median"]["point_estimate"], "slope_ns": slope, "mean_ns": e["mean"]["point_estimate"]}
    if res:
        return dict(sorted(res.items()))
    path = os.path.join(base, "criterion.txt")
    if not os.path.exists(path):
        return {}
    unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}
    name = None
    with open(path, errors="replace") as f:
        for line in f:
            s = line.strip()
            m = re.match(r"^(?:(\S+)\s+)?time:\s+\[(\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\]", s)
            if m and (m.group(1) or name):
                res[m.group(1) or name] = {"median_ns": None, "slope_ns": float(m.group(4)) * unit.get(m.group(5), 1.0)}
                continue
            if s and " " not in s and "/" in s:
                name = s
    return res


# ---------------------------------------------------------------- output


def runs(out):
    raw = os.path.join(out, "raw")
    ov, rl = [], []
    for name in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
        d = os.path.join(raw, name)
        if not (os.path.exists(os.path.join(d, "load.json")) and os.path.exists(os.path.join(d, "meta.json"))):
            continue
        try:
            if name.startswith("ov."):
                ov.append(compute_overload(d))
            elif name.startswith("rl."):
                rl.append(compute_ratelimit(d))
        except (KeyError, ValueError, OSError, StopIteration) as e:
            print(f"report: skipping {d}: {e!r}", file=sys.stderr)
    ov.sort(key=lambda r: (r["load"], PROXY_ORDER.index(r["proxy"]) if r["proxy"] in PROXY_ORDER else 99, r["round"]))
    rl.sort(key=lambda r: RL_ORDER.index(r["proxy"]) if r["proxy"] in RL_ORDER else 99)
    return ov, rl


def f2(x):
    return "–" if x != x else f"{x:.2f}"


def fms(x):
    if x != x:
        return "–"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def fx(x):
    return f"{x:g}×"


def fout(o):
    return ", ".join(f"{k} ×{v}" for k, v in o.items()) if o else "–"


def markdown(out):
    ov, rl = runs(out)
    lines = []
    meta = os.path.join(out, "meta.md")
    if os.path.exists(meta):
        with open(meta) as f:
            lines += [l.rstrip() for l in f if l.strip()]
        lines.append("")
    multi = len({r["round"] for r in ov}) > 1
    rnd = lambda r: f" (round {r['round']})" if multi else ""  # noqa: E731
    title = lambda r: PROXY_TITLE.get(r["proxy"], r["proxy"]) + rnd(r)  # noqa: E731
    if ov:
        cap = ov[0]["capacity"]
        lines += [
            f"Overload: goodput is successful responses per second ÷ the upstream's capacity C = {cap:g} req/s; "
            "success rates are successful / sent per class and per tenant; p99 ok is the latency of successful "
            "requests; failures are counted by status or client error.",
            "",
            "| load | proxy | goodput | critical | default | sheddable | tenant a | tenant b | tenant abuser | p99 ok ms | failures |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        last = None
        for r in ov:
            ld = fx(r["load"]) if r["load"] != last else ""
            last = r["load"]
            c, tn = r["by_class"], r["by_tenant"]
            crash = " **(exited)**" if r["proxy_exited"] else ""
            lines.append(
                f"| {ld} | {title(r)}{crash} | {f2(r['goodput'])} | {f2(c.get('critical', float('nan')))} "
                f"| {f2(c.get('default', float('nan')))} | {f2(c.get('sheddable', float('nan')))} "
                f"| {f2(tn.get('a', float('nan')))} | {f2(tn.get('b', float('nan')))} | {f2(tn.get('abuser', float('nan')))} "
                f"| {fms(r['p99_ok_ms'])} | {fout(r['failures'])} |"
            )
        lines += [
            "",
            "Details: offered and successful requests per second; p50 and p99 of successful critical requests; "
            "success of the default class per tenant (a / b / abuser); what the upstream finished per second, "
            "how many of those answers nobody read (wasted), the most requests it held at once and the p99 of "
            "their wait inside it; the proxy's own view; the load generator's send lag (p99 / max).",
            "",
            "| load | proxy | offered/s | ok/s | p50 ok ms | p99 ok critical ms | default class: a / b / abuser | upstream served/s | wasted | upstream peak held | upstream wait p99 ms | proxy's own view | send lag ms |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|",
        ]
        for r in ov:
            dt = r["default_by_tenant"]
            lines.append(
                f"| {fx(r['load'])} | {title(r)} | {r['offered_per_s']:.0f} | {r['ok_per_s']:.0f} | {fms(r['p50_ok_ms'])} "
                f"| {fms(r['p99_ok_critical_ms'])} | {f2(dt.get('a', float('nan')))} / {f2(dt.get('b', float('nan')))} / {f2(dt.get('abuser', float('nan')))} "
                f"| {r['upstream_served_per_s']:.0f} | {r['upstream_wasted']} | {r['upstream_peak_present']} | {fms(r['upstream_wait_p99_ms'])} "
                f"| {r['own']} | {r['send_lag_p99_ms']:.1f} / {r['send_lag_max_ms']:.1f} |"
            )
    if rl:
        r0 = rl[0]
        lines += [
            "",
            f"Rate-limit accuracy: a limit of {r0['rate']:g} requests per second (burst {r0['burst']:g}) for everything, "
            f"offered about {r0['offered_per_s'] / r0['rate']:.1f}× that (Poisson) for {r0['seconds']:g} s. "
            "Expected admitted = rate × seconds + burst (a full bucket at the start).",
            "",
            "| limiter | configured/s | offered/s | admitted | expected | error | admitted/s after the first second | error | per-second min–max | 429s | other outcomes | p50 / p99 ms (all answers) | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|---|",
        ]
        for r in rl:
            notes = []
            if r["gateways"] > 1:
                notes.append("admitted per gateway " + " / ".join(str(x) for x in r["per_gateway"]))
            lv = r.get("levee")
            if lv:
                if r["proxy"] == "levee-redis":
                    notes.append(
                        f"Redis decisions {lv['redis_decisions']:.0f}, failures {lv['redis_failures']:.0f}, "
                        f"local fallback decisions {lv['redis_fallback']:.0f}"
                    )
                if lv["log_problems"]:
                    notes.append(f"ERROR/panic log lines {lv['log_problems']}")
            if r["proxy_exited"]:
                notes.append("**a proxy exited**")
            lines.append(
                f"| {RL_TITLE.get(r['proxy'], r['proxy'])} | {r['rate']:g} | {r['offered_per_s']:.0f} | {r['admitted']} "
                f"| {r['expected']:.0f} | {r['error'] * 100:+.1f}% | {r['after_first_per_s']:.1f} | {r['after_first_error'] * 100:+.1f}% "
                f"| {r['per_second_min']}–{r['per_second_max']} | {r['limited']} | {fout(r['other'])} "
                f"| {fms(r['p50_ms'])} / {fms(r['p99_ms'])} | {'; '.join(notes) or '–'} |"
            )
    mc = micro(out)
    if mc:
        lines += [
            "",
            "Per-decision cost (cargo bench -p levee-policy --bench balancers; criterion, ns per iteration):",
            "",
            "| benchmark | median ns | slope ns |",
            "|---|---:|---:|",
        ]
        for k, v in mc.items():
            med = "–" if v.get("median_ns") is None else f"{v['median_ns']:.3g}"
            slope = "–" if v.get("slope_ns") is None else f"{v['slope_ns']:.3g}"
            lines.append(f"| `{k}` | {med} | {slope} |")
    return "\n".join(lines) + "\n"


def one_line(d):
    name = os.path.basename(os.path.normpath(d))
    if name.startswith("rl."):
        r = compute_ratelimit(d)
        return (
            f"admitted {r['admitted']} of {r['sent']} ({r['admitted_per_s']:.1f}/s; expected {r['expected']:.0f}, "
            f"error {r['error'] * 100:+.1f}%; after 1 s {r['after_first_per_s']:.1f}/s), 429 ×{r['limited']}, "
            f"other {fout(r['other'])}, p99 {fms(r['p99_ms'])} ms"
        )
    r = compute_overload(d)
    c, tn = r["by_class"], r["by_tenant"]
    return (
        f"goodput {f2(r['goodput'])} ({r['ok_per_s']:.0f}/s of {r['offered_per_s']:.0f}/s); "
        f"class c/d/s {f2(c.get('critical', float('nan')))}/{f2(c.get('default', float('nan')))}/{f2(c.get('sheddable', float('nan')))}; "
        f"tenant a/b/abuser {f2(tn.get('a', float('nan')))}/{f2(tn.get('b', float('nan')))}/{f2(tn.get('abuser', float('nan')))}; "
        f"p99 ok {fms(r['p99_ok_ms'])} ms; failures {fout(r['failures'])}; {r['own']}; lag max {r['send_lag_max_ms']:.0f} ms"
    )


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--one":
        print(one_line(args[1]))
    elif len(args) == 2 and args[0] == "--json":
        ov, rl = runs(args[1])
        json.dump({"overload": ov, "ratelimit": rl, "micro": micro(args[1])}, sys.stdout, indent=1)
        print()
    elif len(args) == 1:
        sys.stdout.write(markdown(args[0]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
