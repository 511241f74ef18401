#!/usr/bin/env python3
"""Metrics of the burst benchmark (stdlib only).

  report.py OUT_DIR          Markdown tables for every run under OUT_DIR/raw
  report.py --one RUN_DIR    one line for one run (run.sh prints it)
  report.py --json OUT_DIR   the metrics as JSON (with the per-second series)

Runs (bench/async/run.sh):
- raw/calibrate/: the upstream alone at 3x C; its real ceiling.
- raw/burst.<proxy>/: burst.json (burst.py), upstream.json (the upstream's
  /dump), levee*.{before,after}.metrics, haproxy.stat.csv.
- raw/accept.<backend>/: wrk*.txt and wrk*.hist (wrk with bench/wrk_hist.lua),
  levee*.{before,after}.metrics.
Times are seconds from the start of the burst's schedule (t0, on the
monotonic clock the upstream also uses). Definitions (also in
RELIABILITY.md, "Burst absorption"):

- Served (eventually): for NGINX and HAProxy, a 2xx answer within the
  client's timeout. For Levee, a job the upstream received (its x-req
  number is among the upstream's records) whose client got a 202. Lost:
  sent minus served (refused at once, timed out, or never delivered).
- Time to drain: from the burst's first scheduled request to the end of the
  last request the upstream served.
- Backlog window (Levee): from the first delivery's start to the last
  delivery's start; during it jobs were waiting. Delivery rate: deliveries
  the upstream finished in the window per second, against C and against the
  upstream's measured ceiling (the calibration run: the upstream alone with
  its places always taken). Occupancy: the share of the upstream's
  place-seconds in the window spent serving.
- Duplicates: upstream records of a job beyond the first (same
  Idempotency-Key); the de-duplicating upstream answers them without
  serving them again.
- Completion: from the client's 202 to the end of the job's first delivery
  at the upstream; Levee's own histogram (acceptance to settle) is given as
  its bucket bound.
- Accept rate: jobs Levee acknowledged (levee_jobs_submitted_total
  result="accepted", summed over gateways) during the wrk run, per second of
  the run. Latency percentiles: of every wrk response, nearest rank over
  wrk's histogram.
Every percentile is nearest rank (bench/benchlib.py percentile).
"""

import json
import math
import os
import re
import sys
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import benchlib  # noqa: E402
from benchlib import msum  # noqa: E402
from benchlib import percentile as pctl  # noqa: E402  (nearest rank; the rule of every report)

BURST_ORDER = ["levee", "levee-os", "levee-jetstream", "nginx", "haproxy"]
BURST_TITLE = {
    "levee": "Levee async, embedded fsync",
    "levee-os": "Levee async, embedded os",
    "levee-jetstream": "Levee async, JetStream (3 gateways)",
    "nginx": "NGINX `limit_req` burst",
    "haproxy": "HAProxy server queue",
}
ACCEPT_ORDER = ["fsync", "os", "jetstream"]
ACCEPT_TITLE = {
    "fsync": "embedded, durability fsync",
    "os": "embedded, durability os",
    "jetstream": "JetStream, 3 gateways, one nats-server",
}
# Issue 16's targets for the accept rate (jobs per second).
ACCEPT_TARGET = {"fsync": 5000, "os": 50000, "jetstream": 5000}


def read_json(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def metrics(d, name):
    return benchlib.metrics_file(os.path.join(d, name))


def gateway_metrics(d, n, which):
    out = []
    for i in range(n):
        out.extend(metrics(d, f"levee{i}.{which}.metrics"))
    return out


def ms(x):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1000:.0f}"


def secs(x, nd=1):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def hist_quantile(ms_, name, q, **labels):
    """The bucket bound (le) at quantile q of a Prometheus histogram, as
    text: "≤ le", or "> largest finite bound" when it is in +Inf."""
    buckets = []
    for n, l, v in ms_:
        if n == name + "_bucket" and all(l.get(k) == x for k, x in labels.items()):
            le = l.get("le")
            buckets.append((math.inf if le == "+Inf" else float(le), v))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    finite = [le for le, _ in buckets if le != math.inf]
    for le, c in buckets:
        if c >= q * total:
            return f"> {finite[-1]:g}" if le == math.inf and finite else f"≤ {le:g}"
    return None


def diff_metrics(after, before):
    """after - before, per (name, labels)."""
    b = {(n, tuple(sorted(l.items()))): v for n, l, v in before}
    return [(n, l, v - b.get((n, tuple(sorted(l.items()))), 0.0)) for n, l, v in after]


# ---------------------------------------------------------------- upstream


def upstream_records(up, t0):
    """The upstream's records as tuples (arrival, start, end, req, key, dup,
    delivered), times from t0."""
    n = len(up.get("end", []))
    key = up.get("key") or [-1] * n
    req = up.get("req") or [-1] * n
    dup = up.get("dup") or [0] * n
    return [
        (up["arrival"][i] - t0, up["start"][i] - t0, up["end"][i] - t0, req[i], key[i], dup[i], up["delivered"][i])
        for i in range(n)
    ]


def served_in(recs, a, b, concurrency):
    """(finished per second, occupancy) of the upstream over [a, b]:
    services (not de-duplicated answers) that ended in it, and the share of
    its place-seconds spent serving."""
    if b <= a:
        return float("nan"), float("nan")
    real = [r for r in recs if not r[5]]
    done = sum(1 for r in real if a <= r[2] <= b)
    busy = sum(max(0.0, min(r[2], b) - max(r[1], a)) for r in real)
    return done / (b - a), busy / (concurrency * (b - a))


def per_second(recs, until):
    """Services the upstream finished in each second [k, k+1), k = 0.. until."""
    bins = [0] * (int(math.ceil(until)) + 1 if until and until > 0 else 1)
    for r in recs:
        if r[5]:
            continue
        k = int(math.floor(r[2]))
        if 0 <= k < len(bins):
            bins[k] += 1
    return bins


# ---------------------------------------------------------------- calibration


def calibrate(d):
    meta = read_json(d, "meta.json") or {}
    up = read_json(d, "upstream.json")
    load = read_json(d, "burst.json")
    if not up or not load:
        return None
    recs = upstream_records(up, load["t0"])
    if not recs:
        return None
    # The places are all taken from the first second (3x C) until the last
    # request starts: skip the first 0.5 s of ramp.
    a = min(r[1] for r in recs) + 0.5
    b = max(r[1] for r in recs)
    rate, occ = served_in(recs, a, b, meta.get("concurrency", 4))
    svc = [r[2] - r[1] for r in recs]
    return {
        "capacity": meta.get("capacity"),
        "concurrency": meta.get("concurrency", 4),
        "ceiling_per_s": rate,
        "ceiling_share": rate / meta["capacity"] if meta.get("capacity") else None,
        "occupancy": occ,
        "service_ms_p50": pctl(svc, 50) * 1000,
        "service_ms_p99": pctl(svc, 99) * 1000,
        "window_s": b - a,
    }


# ---------------------------------------------------------------- burst


def burst(d, ceiling=None):
    meta = read_json(d, "meta.json")
    load = read_json(d, "burst.json")
    up = read_json(d, "upstream.json")
    if not meta or not load or not up:
        return None
    cap = meta["capacity"]
    conc = meta["concurrency"]
    n = len(load["t"])
    t, lat, st, err = load["t"], load["latency"], load["status"], load["error"]
    ok = [i for i in range(n) if err[i] is None and 200 <= st[i] < 300]
    okset = set(ok)
    outcomes = Counter(benchlib.outcome(st[i], err[i]) for i in range(n))
    recs = [r for r in upstream_records(up, load["t0"]) if r[3] >= 0]
    jobs = bool(load.get("jobs"))
    last_end = max((r[2] for r in recs), default=float("nan"))
    res = {
        "proxy": meta["proxy"],
        "title": BURST_TITLE.get(meta["proxy"], meta["proxy"]),
        "jobs": jobs,
        "sent": n,
        "offered_per_s": meta["rate"],
        "seconds": meta["seconds"],
        "capacity": cap,
        "ok_2xx": len(ok),
        "outcomes": dict(outcomes),
        "answer_p50_ms": pctl([lat[i] for i in ok], 50) * 1000,
        "answer_p99_ms": pctl([lat[i] for i in ok], 99) * 1000,
        "answer_max_ms": max((lat[i] for i in ok), default=float("nan")) * 1000,
        "send_lag_p99_ms": load["summary"]["send_lag_p99_ms"],
        "send_lag_max_ms": load["summary"]["send_lag_max_ms"],
        "connections_peak": load["summary"]["connections_peak"],
        "drained": load.get("drained"),
        "upstream_records": len(recs),
        "upstream_peak_held": (up.get("stats") or {}).get("peak_present"),
        "drain_s": last_end,
        "proxy_exited": os.path.exists(os.path.join(d, "proxy-exited")),
    }
    first_by_req = {}
    for r in recs:
        if r[3] not in first_by_req or r[2] < first_by_req[r[3]][2]:
            first_by_req[r[3]] = r
    if jobs:
        keys = {r[4] for r in recs if r[4] >= 0}
        keys_per_req = Counter()
        for req, k in {(r[3], r[4]) for r in recs}:
            keys_per_req[req] += 1
        delivered_ok = [i for i in ok if i in first_by_req]
        extra = [q for q in first_by_req if q not in okset]
        res.update(
            {
                "accepted": len(ok),
                "delivered_jobs": len(keys),
                "delivered_of_accepted": len(delivered_ok),
                "missing": len(ok) - len(delivered_ok),
                "extra": len(extra),
                "duplicates": len(recs) - len(keys),
                "requests_with_two_jobs": sum(1 for c in keys_per_req.values() if c > 1),
                "served": len(delivered_ok),
            }
        )
        comp = [first_by_req[i][2] - (t[i] + lat[i]) for i in delivered_ok]
        res["completion_p50_s"] = pctl(comp, 50)
        res["completion_p99_s"] = pctl(comp, 99)
        res["completion_max_s"] = max(comp, default=float("nan"))
        res["completion_mean_s"] = sum(comp) / len(comp) if comp else float("nan")
        real = [r for r in recs if not r[5]]
        a = min((r[1] for r in real), default=0.0)
        b = max((r[1] for r in real), default=0.0)
        rate, occ = served_in(recs, a, b, conc)
        res.update({"backlog_from_s": a, "backlog_to_s": b, "delivery_per_s": rate, "occupancy": occ})
        series = per_second(recs, b)
        inner = series[int(math.ceil(a)) + 1 : int(math.floor(b))]
        res["delivery_min_1s"] = min(inner) if inner else None
        # Levee's own view.
        gw = meta.get("gateways", 1)
        m = diff_metrics(gateway_metrics(d, gw, "after"), gateway_metrics(d, gw, "before"))
        res["levee"] = {
            "accepted": msum(m, "levee_jobs_submitted_total", result="accepted"),
            "full": msum(m, "levee_jobs_submitted_total", result="full"),
            "submit_error": msum(m, "levee_jobs_submitted_total", result="error"),
            "delivered": msum(m, "levee_job_deliveries_total", result="delivered"),
            "retried": msum(m, "levee_job_deliveries_total", result="retried"),
            "not_sent": msum(m, "levee_job_deliveries_total", result="not_sent"),
            "stale": msum(m, "levee_job_deliveries_total", result="stale"),
            "dead": msum(m, "levee_job_deliveries_total", result="dead"),
            "completion_p50_le": hist_quantile(m, "levee_job_completion_seconds", 0.50),
            "completion_p99_le": hist_quantile(m, "levee_job_completion_seconds", 0.99),
            "completion_mean_s": msum(m, "levee_job_completion_seconds_sum")
            / max(1.0, msum(m, "levee_job_completion_seconds_count")),
        }
        after = gateway_metrics(d, gw, "after")
        res["levee"]["queued_after"] = msum(after, "levee_jobs", state="queued")
        res["levee"]["delivering_after"] = msum(after, "levee_jobs", state="delivering")
        peak_q, peak_age = 0.0, 0.0
        for s in load.get("samples", []):
            if "lines" not in s:
                continue
            pm = benchlib.parse_metrics(s["lines"])
            peak_q = max(peak_q, msum(pm, "levee_jobs", state="queued") + msum(pm, "levee_jobs", state="delivering"))
            peak_age = max(peak_age, max((v for nm, _, v in pm if nm == "levee_jobs_oldest_age_seconds"), default=0))
        res["levee"]["backlog_peak"] = peak_q
        res["levee"]["oldest_age_peak_s"] = peak_age
        res["levee"]["problems"] = levee_problems(d, gw)
        res["levee"]["peak_rss_kb"] = levee_memory_kb(d, gw)
    else:
        served = len(ok)
        refused = sum(c for o, c in outcomes.items() if o in ("429", "502", "503", "504"))
        timeouts = outcomes.get("timeout", 0)
        res.update(
            {
                "served": served,
                "refused": refused,
                "timed_out": timeouts,
                "other_errors": n - served - refused - timeouts,
                "upstream_wasted": sum(1 for r in recs if not r[6]),
                "upstream_for_lost": sum(1 for q in first_by_req if q not in okset),
                "last_ok_s": max((t[i] + lat[i] for i in ok), default=float("nan")),
            }
        )
        real = [r for r in recs if not r[5]]
        a = min((r[1] for r in real), default=0.0)
        b = max((r[1] for r in real), default=0.0)
        rate, occ = served_in(recs, a, b, conc)
        res.update({"backlog_from_s": a, "backlog_to_s": b, "delivery_per_s": rate, "occupancy": occ})
        res["nginx_limited"] = benchlib.nginx_error_counts(
            os.path.join(d, "nginx.error.log"), [("limiting requests", "limited")]
        ).get("limited")
        rows = benchlib.read_haproxy_stat_file(os.path.join(d, "haproxy.stat.csv"))
        if rows:
            srv = next((r for r in rows if r.get("svname") == "BACKEND"), {})
            res["haproxy"] = {"qmax": srv.get("qmax"), "qlimit": srv.get("qlimit"), "hrsp_5xx": srv.get("hrsp_5xx")}
    res["share_served"] = res["served"] / n if n else float("nan")
    res["lost"] = n - res["served"]
    res["delivery_share_of_c"] = res["delivery_per_s"] / cap
    if ceiling:
        res["delivery_share_of_ceiling"] = res["delivery_per_s"] / ceiling
    res["series"] = per_second(recs, last_end if not math.isnan(last_end) else 0)
    return res


def levee_memory_kb(d, n):
    """The largest VmHWM (peak resident memory, kB) of the gateways."""
    peak = None
    for i in range(n):
        path = os.path.join(d, f"levee{i}.memory")
        if os.path.exists(path):
            with open(path) as f:
                m = re.search(r"VmHWM:\s+(\d+)", f.read())
            if m:
                peak = max(peak or 0, int(m.group(1)))
    return peak


def levee_problems(d, n):
    count = 0
    for i in range(n):
        path = os.path.join(d, f"levee{i}.log")
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                count += sum(1 for line in f if benchlib.levee_log_is_problem(line))
    return count


# ---------------------------------------------------------------- accept


def accept(d):
    meta = read_json(d, "meta.json")
    if not meta:
        return None
    n = meta.get("gateways", 1)
    m = diff_metrics(gateway_metrics(d, n, "after"), gateway_metrics(d, n, "before"))
    rps, errors, pairs, complete = 0.0, 0, [], True
    for i in range(n):
        p = os.path.join(d, f"wrk{i}.txt")
        if os.path.exists(p):
            with open(p) as f:
                w = benchlib.parse_wrk(f.read())
            rps += w["rps"]
            errors += w["errors"]
        h = os.path.join(d, f"wrk{i}.hist")
        if os.path.exists(h):
            with open(h) as f:
                pp, c = benchlib.parse_wrk_hist(f.read())
            pairs += pp
            complete = complete and c
    accepted = msum(m, "levee_jobs_submitted_total", result="accepted")
    b = meta["backend"]
    return {
        "backend": b,
        "title": ACCEPT_TITLE.get(b, b),
        "gateways": n,
        "seconds": meta["seconds"],
        "conns": meta["conns"],
        "accepted": accepted,
        "accepted_per_s": accepted / meta["seconds"],
        "full": msum(m, "levee_jobs_submitted_total", result="full"),
        "submit_error": msum(m, "levee_jobs_submitted_total", result="error"),
        "wrk_rps": rps,
        "wrk_errors": errors,
        "p50_ms": benchlib.percentile_hist(pairs, 50) * 1000,
        "p99_ms": benchlib.percentile_hist(pairs, 99) * 1000,
        "hist_complete": complete,
        "target_per_s": ACCEPT_TARGET.get(b),
        "problems": levee_problems(d, n),
        "peak_rss_kb": levee_memory_kb(d, n),
        "proxy_exited": os.path.exists(os.path.join(d, "proxy-exited")),
    }


def accept_rounds(runs):
    """One row per backend: the median round (by accepted jobs/s; the lower
    middle one for an even count) and the range over the rounds."""
    runs = sorted(runs, key=lambda r: r["accepted_per_s"])
    med = dict(runs[(len(runs) - 1) // 2])
    med["rounds"] = len(runs)
    med["per_round"] = [r["accepted_per_s"] for r in runs]
    med["problems"] = sum(r["problems"] for r in runs)
    med["any_exited"] = any(r["proxy_exited"] for r in runs)
    return med


# ---------------------------------------------------------------- output


def collect(out):
    raw = os.path.join(out, "raw")
    cal = calibrate(os.path.join(raw, "calibrate")) if os.path.isdir(os.path.join(raw, "calibrate")) else None
    ceiling = cal["ceiling_per_s"] if cal else None
    bursts, accepts = [], []
    for p in BURST_ORDER:
        d = os.path.join(raw, f"burst.{p}")
        if os.path.isdir(d):
            r = burst(d, ceiling)
            if r:
                bursts.append(r)
    for b in ACCEPT_ORDER:
        runs = []
        for name in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
            if name == f"accept.{b}" or name.startswith(f"accept.{b}.r"):
                r = accept(os.path.join(raw, name))
                if r:
                    runs.append(r)
        if runs:
            accepts.append(accept_rounds(runs))
    probe = read_json(os.path.join(raw, "jetstream-probe"), "result.json")
    return {"calibration": cal, "bursts": bursts, "accepts": accepts, "jetstream_probe": probe}


def one(d):
    name = os.path.basename(d.rstrip("/"))
    if name == "calibrate":
        c = calibrate(d)
        return (
            f"ceiling {c['ceiling_per_s']:.1f}/s = {c['ceiling_share']:.3f} C, occupancy {c['occupancy']:.3f}, "
            f"service p50 {c['service_ms_p50']:.2f} ms"
            if c
            else "no data"
        )
    if name.startswith("accept."):
        a = accept(d)
        return (
            f"{a['accepted_per_s']:.0f} accepted/s (wrk {a['wrk_rps']:.0f}/s, {a['wrk_errors']} non-2xx/errors), "
            f"p50 {a['p50_ms']:.2f} ms p99 {a['p99_ms']:.2f} ms"
        )
    r = burst(d)
    if r is None:
        return "no data"
    line = f"sent {r['sent']}, outcomes {r['outcomes']}, served {r['served']} ({r['share_served']:.3f})"
    if r["jobs"]:
        line += (
            f", delivered jobs {r['delivered_jobs']}, missing {r['missing']}, duplicates {r['duplicates']}, "
            f"drain {r['drain_s']:.1f} s, delivery {r['delivery_per_s']:.1f}/s ({r['delivery_share_of_c']:.3f} C), "
            f"completion p99 {r['completion_p99_s']:.1f} s"
        )
    else:
        line += f", last answer {secs(r['last_ok_s'])} s, upstream {r['delivery_per_s']:.1f}/s"
    return line + f", send lag p99 {r['send_lag_p99_ms']} ms"


def window_means(series, width, count):
    out = []
    for k in range(count):
        chunk = series[k * width : (k + 1) * width]
        out.append(sum(chunk) / width if chunk else 0.0)
    return out


def markdown(res):
    lines = []
    cal = res["calibration"]
    if cal:
        lines += [
            "### Upstream ceiling (calibration)",
            "",
            f"The upstream alone at 3× C, its {cal['concurrency']} places always taken: {cal['ceiling_per_s']:.1f} req/s = "
            f"{cal['ceiling_share']:.3f} C (C = {cal['capacity']:g}/s), place occupancy {cal['occupancy']:.3f}, "
            f"service time p50 {cal['service_ms_p50']:.2f} ms, p99 {cal['service_ms_p99']:.2f} ms.",
            "",
        ]
    b = res["bursts"]
    if b:
        lines += [
            "### Burst",
            "",
            "| proxy | sent | answered at once | served (eventually) | lost | time to drain s | "
            "upstream served/s while a backlog existed | ÷ C | ÷ ceiling | occupancy | duplicates | "
            "client wait p50 / p99 ms | completion p50 / p99 / max s |",
            "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in b:
            if r["jobs"]:
                at_once = f"202 ×{r['accepted']}" + (
                    f", {', '.join(f'{k} ×{v}' for k, v in sorted(r['outcomes'].items()) if k != '202')}"
                    if len(r["outcomes"]) > 1
                    else ""
                )
                lost = f"{r['lost']} (never delivered {r['missing']}, not accepted {r['sent'] - r['accepted']})"
                comp = (
                    f"{secs(r['completion_p50_s'])} / {secs(r['completion_p99_s'])} / {secs(r['completion_max_s'])}"
                )
                dups = str(r["duplicates"])
            else:
                at_once = ", ".join(
                    f"{k} ×{v}" for k, v in sorted(r["outcomes"].items()) if k not in ("200", "timeout")
                ) or "–"
                lost = f"{r['lost']} (refused {r['refused']}, timed out {r['timed_out']}, other {r['other_errors']})"
                comp = "–"
                dups = "–"
            share_ceiling = r.get("delivery_share_of_ceiling")
            lines.append(
                f"| {r['title']} | {r['sent']} | {at_once} | {r['served']} ({r['share_served']:.3f}) | {lost} | "
                f"{secs(r['drain_s'])} | {r['delivery_per_s']:.1f} | {r['delivery_share_of_c']:.3f} | "
                f"{'–' if share_ceiling is None else f'{share_ceiling:.3f}'} | {r['occupancy']:.3f} | {dups} | "
                f"{ms(r['answer_p50_ms'] / 1000)} / {ms(r['answer_p99_ms'] / 1000)} | {comp} |"
            )
        lines += [""]
        # Upstream load over time.
        width = max(5, int(b[0]["seconds"]))
        longest = max(len(r["series"]) for r in b)
        count = int(math.ceil(longest / width))
        heads = [f"{k * width}–{(k + 1) * width} s" for k in range(count)]
        lines += [
            "### Upstream load over time (requests it served per second, mean per window from the burst's start)",
            "",
            "| proxy | " + " | ".join(heads) + " |",
            "|---|" + "---:|" * count,
        ]
        for r in b:
            means = window_means(r["series"], width, count)
            lines.append(f"| {r['title']} | " + " | ".join(f"{x:.0f}" for x in means) + " |")
        lines += [""]
        # Details.
        lines += [
            "### Details",
            "",
            "| proxy | backlog window s | slowest second while a backlog existed | Levee's counters | "
            "backlog peak / oldest job peak s | Levee's completion histogram p50 / p99 / mean s | upstream peak held | proxy's own view | peak client connections | send lag p99 / max ms |",
            "|---|---|---:|---|---|---|---:|---|---:|---|",
        ]
        for r in b:
            lv = r.get("levee")
            if lv:
                counters = (
                    f"accepted {lv['accepted']:.0f}, full {lv['full']:.0f}, errors {lv['submit_error']:.0f}; delivered "
                    f"{lv['delivered']:.0f}, retried {lv['retried']:.0f}, not sent {lv['not_sent']:.0f}, "
                    f"stale {lv['stale']:.0f}, dead {lv['dead']:.0f}; left queued {lv['queued_after']:.0f}; "
                    f"ERROR/panic log lines {lv['problems']}; peak RSS "
                    + ("–" if lv["peak_rss_kb"] is None else f"{lv['peak_rss_kb'] / 1024:.0f} MB")
                )
                peaks = f"{lv['backlog_peak']:.0f} / {lv['oldest_age_peak_s']:.0f}"
                hist = (
                    f"{lv['completion_p50_le']} / {lv['completion_p99_le']} / mean {secs(lv['completion_mean_s'])} "
                    f"(client-side mean {secs(r['completion_mean_s'])})"
                )
                own = f"extra deliveries (no 202) {r['extra']}, requests with two jobs {r['requests_with_two_jobs']}"
                slowest = "–" if r.get("delivery_min_1s") is None else str(r["delivery_min_1s"])
            else:
                counters, peaks, hist, slowest = "–", "–", "–", "–"
                own = f"upstream work for lost requests {r['upstream_for_lost']}, answers nobody read {r['upstream_wasted']}"
                if r.get("nginx_limited") is not None:
                    own += f"; error log 'limiting requests' {r['nginx_limited']}"
                if r.get("haproxy"):
                    h = r["haproxy"]
                    own += f"; server qmax {h['qmax']}, qlimit {h['qlimit']}, 5xx {h['hrsp_5xx']}"
                own += f"; last 2xx at {secs(r['last_ok_s'])} s"
            if r["proxy_exited"]:
                own += "; **the proxy exited during the run**"
            lines.append(
                f"| {r['title']} | {secs(r['backlog_from_s'])}–{secs(r['backlog_to_s'])} | {slowest} | {counters} | "
                f"{peaks} | {hist} | {r['upstream_peak_held']} | {own} | {r['connections_peak']} | {r['send_lag_p99_ms']} / {r['send_lag_max_ms']} |"
            )
        lines += [""]
    a = res["accepts"]
    probe = res.get("jetstream_probe")
    if a or probe:
        lines += [
            "### Accept rate (nothing drains)",
            "",
            "| backend | gateways | accepted jobs/s (median) | rounds: min–max | issue 16's target | met end to end | "
            "wrk responses/s | non-2xx or errors | 202 p50 / p99 ms | queue full / store errors | peak RSS MB "
            "(jobs held) | ERROR/panic lines |",
            "|---|---:|---:|---|---:|---|---:|---:|---|---|---|---:|",
        ]
        for r in a:
            tgt = r["target_per_s"]
            met = "–" if tgt is None else ("yes" if r["accepted_per_s"] >= tgt else "no")
            rss = "–" if r["peak_rss_kb"] is None else f"{r['peak_rss_kb'] / 1024:.0f} ({r['accepted']:,.0f})"
            lines.append(
                f"| {r['title']} | {r['gateways']} | {r['accepted_per_s']:,.0f} | "
                f"{min(r['per_round']):,.0f}–{max(r['per_round']):,.0f} ({r['rounds']}) | {tgt:,} | {met} | "
                f"{r['wrk_rps']:,.0f} | {r['wrk_errors']} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} | "
                f"{r['full']:.0f} / {r['submit_error']:.0f} | {rss} | {r['problems']}"
                + (" (a gateway exited)" if r["any_exited"] else "")
                + " |"
            )
        if probe and not probe.get("supported") and not any(r["backend"] == "jetstream" for r in a):
            lines.append(
                f"| {ACCEPT_TITLE['jetstream']} | 3 | not built in this binary | – | 5,000 | – | – | – | – | – | – | – |"
            )
            lines += ["", f"JetStream probe: {probe.get('why')}"]
        lines += [""]
    return "\n".join(lines)


def main(argv):
    if len(argv) == 2 and argv[0] == "--one":
        print(one(argv[1]))
        return 0
    if len(argv) == 2 and argv[0] == "--json":
        print(json.dumps(collect(argv[1]), indent=1, default=str))
        return 0
    if len(argv) == 1:
        out = argv[0]
        meta = os.path.join(out, "meta.md")
        if os.path.exists(meta):
            with open(meta) as f:
                print(f.read())
        print(markdown(collect(out)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
