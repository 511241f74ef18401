#!/usr/bin/env python3
"""Reliability metrics of the fault scenarios (stdlib only).

  report.py OUT_DIR          Markdown tables for every run under OUT_DIR/raw
  report.py --one RUN_DIR    one line for one run (run.sh prints it)
  report.py --json OUT_DIR   the metrics as JSON

Each run directory holds meta.json (run.sh), load.json (load.py) and
upstream.json (upstream.py /dump). Times are seconds from the start of the
client's schedule (t0); the fault and heal times are the moments the load
generator actually sent the control requests.

Definitions (also in RELIABILITY.md):

- A client request *fails* when it gets no 2xx response: any other status,
  a transport error, or no complete response within the client timeout.
- Phases, by scheduled send time: steady [0, fault), fault [fault, heal),
  healed [heal, end).
- Error rate: failed / sent, per phase and for the whole run.
- p99: the 99th percentile of the latency of every request sent in the
  window, failures included (a failure counts its time to failure, a
  timeout counts the client timeout), measured from the scheduled send time.
  "p99 ok" counts successful requests only.
- Retry amplification: requests received by the three upstreams (health
  checks excluded) / client requests sent; per phase, upstream requests are
  attributed by arrival time and client requests by scheduled time.
- p50 / p99 / p99.9 per phase use the same rule (nearest rank).
- Time to zero errors (from fault): the scheduled send time of the last
  failed request of the fault phase minus the fault time; 0 when no request
  failed; "never" when a request sent in the last second of the fault phase
  failed (errors had not stopped). The same from the heal time, over the
  healed phase.

The freeze scenario (one endpoint's process stopped with SIGSTOP, then
SIGCONT) has its own tables. A frozen endpoint records nothing while it is
stopped; after SIGCONT it reads what the kernel buffered for it, with each
request's x-bench-id, so:

- Sent to the frozen endpoint while frozen: the upstream requests it read
  after SIGCONT that belong to client requests scheduled before the heal
  (attempts; retries of one client request count once each).
- Stopped getting new requests after: by the scheduled send time of those
  client requests, the end of the first run of them with no gap of 1 s or
  more, minus the fault time; "never" when that run reaches the last second
  of the fault. Requests after that gap (a probe when an ejection ends, for
  example) are counted as "later". A retry is sent up to a per-try timeout
  after its scheduled time, so this is early by up to that much.
- Traffic again after SIGCONT: the first request scheduled after the heal
  that the endpoint received, from the heal time.
- Share at the end: the frozen endpoint's share of the client requests
  scheduled in the last 2 s of the run (1/3 is an even share of three).
- For amplification, the frozen endpoint's requests count in the phase of
  their client request's scheduled time, not of the thaw that read them.

The region drill (six endpoints: a primary region of three, endpoints 0-2,
and a secondary region of three, 3-5; the whole primary region is dead for
the fault) has its own tables too:

- Time to fail over: from the kill to the scheduled send time of the last
  failed request of the burst that starts with the kill: failed requests of
  the fault phase, each less than 1 s after the kill or after the previous
  one; 0 when there are none. Failed requests of the fault phase after it
  are "later errors" (a proxy trying the dead region again, for example);
  the time to zero errors from the fault (above) is the last failed
  request of the whole fault phase.
- Time to fail back: upstream arrivals (health checks excluded) are counted
  per region in windows of W (1 s, and 0.1 s) aligned on the restore
  (heal) time, whole windows only. It is the start of the first window
  from which on every window that holds arrivals has at least 90% of them
  at the primary region, to the end of the run, minus the heal time;
  "not within the run" when the last window is below 90%. Its resolution
  is W.
- Secondary's share after fail back: the secondary region's share of the
  upstream arrivals from the fail-back time (1 s windows) to the end of the
  run; also its share in the steady phase and in the last 2 s.
- Primary: first request after restore: from the heal time to the first
  arrival at a primary endpoint.
"""

import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import benchlib  # noqa: E402
from benchlib import percentile as pctl  # noqa: E402  (nearest rank; the rule of every report)

SCENARIO_ORDER = ["dead", "hang", "503", "all503", "freeze", "region"]
PROXY_ORDER = ["levee", "levee-cb", "nginx", "haproxy"]
SCENARIO_TITLE = {
    "dead": "(1) one of 3 endpoints dies (connection refused)",
    "hang": "(2) one of 3 endpoints hangs (accepts, never answers)",
    "503": "(3) one of 3 endpoints answers 503 to everything",
    "all503": "(4) all 3 endpoints answer 503 for a while",
    "freeze": "(5) one of 3 endpoints freezes (SIGSTOP: connections stay open, nothing answers)",
    "region": "(6) region drill: the primary region (3 of 6 endpoints) dies, then comes back",
}
BALANCER_ORDER = ["rr", "lr"]
BALANCER_TITLE = {"rr": "round robin", "lr": "least requests"}
# Each proxy's name for its least-requests balancer.
LEAST_NAME = {"levee": "least_request", "levee-cb": "least_request", "nginx": "least_conn", "haproxy": "leastconn"}
STOP_GAP = 1.0  # s without a new request: the frozen endpoint stopped getting them
FAILBACK_SHARE = 0.9  # the primary region's share of arrivals that counts as failed back
FAILBACK_WINDOWS = (1.0, 0.1)  # s; the first is the headline figure
PROXY_TITLE = {"levee": "Levee", "levee-cb": "Levee + breakers", "nginx": "NGINX", "haproxy": "HAProxy"}


def load_run(d):
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(d, "load.json")) as f:
        load = json.load(f)
    with open(os.path.join(d, "upstream.json")) as f:
        up = json.load(f)
    return meta, load, up


def levee_metrics(d):
    path = os.path.join(d, "levee.metrics")
    if not os.path.exists(path):
        return None
    m = benchlib.metrics_file(path)
    return {
        "retries": float(benchlib.msum(m, "levee_retries_total")),
        "budget_exhausted": float(benchlib.msum(m, "levee_retry_budget_exhausted_total")),
        "breaker_opened": float(benchlib.msum(m, "levee_circuit_breaker_opened_total")),
    }


def haproxy_stats(d):
    rows = benchlib.read_haproxy_stat_file(os.path.join(d, "haproxy.stat.csv"))
    if rows is None:
        return None
    out = {}
    for row in rows:
        # Servers only: the BACKEND row repeats their totals (counting it
        # doubled the retries and redispatches of earlier reports).
        if row.get("pxname") == "app" and row.get("svname") not in ("BACKEND", "FRONTEND"):
            out[row["svname"]] = {
                k: row.get(k) for k in ("status", "wretr", "wredis", "chkdown", "downtime", "hrsp_5xx", "eresp", "econ")
            }
    return out


def levee_log_events(d):
    """Outlier and health transitions Levee logged (counts)."""
    path = os.path.join(d, "levee.log")
    c = Counter()
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f:
                if "outlier ejected" in line:
                    c["ejections"] += 1
                elif "panic mode" in line:
                    c["panic-mode entries"] += 1
                elif benchlib.levee_log_is_problem(line):
                    c["errors_logged"] += 1
    return dict(c)


NGINX_PATTERNS = [
    ("no live upstreams", '"no live upstreams" log lines'),
    ("temporarily disabled", '"temporarily disabled" log lines'),
]


def nginx_log_events(d):
    return benchlib.nginx_error_counts(os.path.join(d, "nginx.error.log"), NGINX_PATTERNS)


def frozen_endpoint(arrivals, ids, sched, t_fault, t_heal, end):
    """What the frozen endpoint was sent, from the x-bench-id of the requests
    it read after SIGCONT (see the module doc). arrivals are relative to t0,
    in arrival order; sched is the client's schedule."""
    n = len(sched)
    stuck = []  # scheduled times of the attempts it was sent while frozen
    attributed = []
    back = None
    late = []  # requests scheduled in the last 2 s of the run it received
    for x, i in zip(arrivals, ids):
        known = 0 <= i < n
        if known and x >= t_heal and sched[i] < t_heal:
            stuck.append(sched[i])
            attributed.append(sched[i])
            continue
        attributed.append(x)
        if known and sched[i] >= t_heal:
            if back is None:
                back = x - t_heal
            if sched[i] >= end - 2.0:
                late.append(i)
    stuck.sort()
    stopped, later = None, 0
    during = [x for x in stuck if x >= t_fault]
    if during:
        k = 0
        while k + 1 < len(during) and during[k + 1] - during[k] < STOP_GAP:
            k += 1
        last = during[k]
        later = len(during) - k - 1
        stopped = None if last >= t_heal - 1.0 else max(0.0, last - t_fault)
    else:
        stopped = 0.0
    first_second = sum(1 for x in stuck if t_fault <= x < t_fault + 1.0)
    in_last = sum(1 for x in sched if x >= end - 2.0)
    return {
        "attributed": attributed,
        "sent_while_frozen": len(stuck),
        "client_requests_while_frozen": len(set(i for x, i in zip(arrivals, ids) if 0 <= i < n and x >= t_heal and sched[i] < t_heal)),
        "before_fault": sum(1 for x in stuck if x < t_fault),
        "first_second": first_second,
        "stopped_after": stopped,
        "later": later,
        "back_after": back,
        "share_at_end": len(set(late)) / in_last if in_last else float("nan"),
    }


def failback_time(primary, secondary, t_heal, end, width, share=FAILBACK_SHARE):
    """Time to fail back (see the module doc): arrivals (seconds from t0) at
    the primary and secondary regions; windows of `width` from t_heal, whole
    windows only. The start of the first window from which on every window
    with arrivals has at least `share` of them at the primary, minus
    t_heal; None when the last window with arrivals is below it (or no
    window has any)."""
    n = int((end - t_heal) / width + 1e-9)
    if n <= 0:
        return None
    p = [0] * n
    s = [0] * n
    for xs, acc in ((primary, p), (secondary, s)):
        for x in xs:
            if x >= t_heal:
                k = int((x - t_heal) / width)
                if k < n:
                    acc[k] += 1
    first = None  # the earliest window of the all-passing stretch at the end
    for k in range(n - 1, -1, -1):
        tot = p[k] + s[k]
        if tot == 0:
            continue
        if p[k] / tot < share:
            break
        first = k
    return None if first is None else first * width


def share_in(part, other, a, b):
    """part's share of the arrivals in [a, b) (NaN without any)."""
    x = sum(1 for t in part if a <= t < b)
    y = sum(1 for t in other if a <= t < b)
    return x / (x + y) if x + y else float("nan")


def failover_burst(failed_times, t_fault, gap=STOP_GAP):
    """The burst of failures that starts with the kill (see the module doc):
    (time to fail over, later failures) from the scheduled times of the
    fault phase's failed requests."""
    last = t_fault
    burst = 0
    xs = sorted(failed_times)
    for x in xs:
        if x - last >= gap:
            break
        last = x
        burst += 1
    return last - t_fault, len(xs) - burst


def region_metrics(primary, secondary, t_fault, t_heal, end):
    """The region drill's figures from the arrivals (seconds from t0) at the
    primary and secondary regions (see the module doc)."""
    res = {}
    for w in FAILBACK_WINDOWS:
        res[f"failback_{w:g}s"] = failback_time(primary, secondary, t_heal, end, w)
    fb = res[f"failback_{FAILBACK_WINDOWS[0]:g}s"]
    res["secondary_share_after_failback"] = float("nan") if fb is None else share_in(secondary, primary, t_heal + fb, end)
    res["secondary_share_steady"] = share_in(secondary, primary, 0.0, t_fault)
    res["secondary_share_fault"] = share_in(secondary, primary, t_fault, t_heal)
    res["secondary_share_healed"] = share_in(secondary, primary, t_heal, end)
    res["secondary_share_last2s"] = share_in(secondary, primary, end - 2.0, end)
    back = [x for x in primary if x >= t_heal]
    res["primary_back_after"] = (min(back) - t_heal) if back else None
    res["primary_in_fault"] = sum(1 for x in primary if t_fault <= x < t_heal)
    # The primary region's share per second after the restore (the shape of
    # the fail back; the last column of the details table).
    series = []
    k = 0
    while t_heal + (k + 1) * 1.0 <= end + 1e-9:
        a = t_heal + k * 1.0
        x = share_in(primary, secondary, a, a + 1.0)
        series.append(None if x != x else round(x, 3))
        k += 1
    res["primary_share_per_second_after_heal"] = series
    return res


def compute(d):
    meta, load, up = load_run(d)
    t0 = load["t0"]
    t = load["t"]
    lat = load["latency"]
    status = load["status"]
    err = load["error"]
    n = len(t)
    end = float(load["duration"])
    ev = {e["label"]: e for e in load["events"]}
    t_fault = ev["fault"]["t_sent"]
    t_heal = ev["heal"]["t_sent"]
    failed = [not (err[i] is None and 200 <= status[i] < 300) for i in range(n)]
    freeze = meta["scenario"] == "freeze"

    def window(a, b):
        return [i for i in range(n) if a <= t[i] < b]

    arrivals = []
    health = 0
    per_ep = []
    faulty = []
    frozen = None
    for k, ep in enumerate(up["endpoints"]):
        rel = [x - t0 for x in ep["arrivals"]]
        if freeze and k == 0:
            frozen = frozen_endpoint(rel, ep.get("ids") or [], t, t_fault, t_heal, end)
            rel = frozen["attributed"]
        arrivals.extend(rel)
        health += len(ep["health_arrivals"])
        per_ep.append(len(rel))
        if k == 0:
            faulty = sorted(rel)
    arrivals.sort()

    def upstream_in(a, b):
        return sum(1 for x in arrivals if a <= x < b)

    phases = {
        "all": (float("-inf"), float("inf")),
        "steady": (0.0, t_fault),
        "fault": (t_fault, t_heal),
        "healed": (t_heal, end),
    }
    res = {
        "proxy": meta["proxy"],
        "balancer": meta.get("balancer", "rr"),
        "scenario": meta["scenario"],
        "round": meta["round"],
        "rate": meta["rate"],
        "sent": n,
        "t_fault": t_fault,
        "t_heal": t_heal,
        "end": end,
        "upstream_requests": len(arrivals),
        "upstream_per_endpoint": per_ep,
        "health_checks": health,
        "send_lag_max_ms": max(load["lag"]) * 1000 if n else 0.0,
        "send_lag_p99_ms": pctl(load["lag"], 99) * 1000 if n else 0.0,
        "connections_peak": load["summary"].get("connections_peak"),
    }
    if frozen is not None:
        res["frozen"] = {k: v for k, v in frozen.items() if k != "attributed"}
        res["faulty_in_fault"] = frozen["sent_while_frozen"]
        res["faulty_back_after"] = frozen["back_after"]
    elif meta["scenario"] not in ("all503", "region"):
        # The faulty endpoint (the first): requests it received while faulty,
        # and how long after healing it received proxied traffic again.
        res["faulty_in_fault"] = sum(1 for x in faulty if t_fault <= x < t_heal)
        back = [x for x in faulty if x >= t_heal]
        res["faulty_back_after"] = (back[0] - t_heal) if back else None
    for name, (a, b) in phases.items():
        idx = window(a, b)
        k = len(idx)
        f = sum(1 for i in idx if failed[i])
        ok_lat = [lat[i] for i in idx if not failed[i]]
        all_lat = [lat[i] for i in idx if lat[i] is not None]
        if name == "all":
            ups = len(arrivals)
        else:
            ups = upstream_in(a, b)
        res[name] = {
            "sent": k,
            "failed": f,
            "error_rate": f / k if k else float("nan"),
            "p50_ms": pctl(all_lat, 50) * 1000,
            "p99_ms": pctl(all_lat, 99) * 1000,
            "p999_ms": pctl(all_lat, 99.9) * 1000,
            "p99_ok_ms": pctl(ok_lat, 99) * 1000,
            "max_ms": max(all_lat) * 1000 if all_lat else float("nan"),
            "upstream": ups,
            "amplification": ups / k if k else float("nan"),
            "outcomes": dict(
                Counter((err[i] or str(status[i])) for i in idx if failed[i]).most_common()
            ),
        }

    def time_to_zero(a, b):
        last = None
        for i in range(n):
            if a <= t[i] < b and failed[i]:
                last = t[i]
        if last is None:
            return 0.0
        if last >= b - 1.0:
            return None
        return last - a

    res["ttz_fault"] = time_to_zero(t_fault, t_heal)
    res["ttz_heal"] = time_to_zero(t_heal, end)
    if meta["scenario"] == "region":
        prim = set(meta.get("primary", [0, 1, 2]))
        p_arr = sorted(x - t0 for k, ep in enumerate(up["endpoints"]) if k in prim for x in ep["arrivals"])
        s_arr = sorted(x - t0 for k, ep in enumerate(up["endpoints"]) if k not in prim for x in ep["arrivals"])
        res["region"] = region_metrics(p_arr, s_arr, t_fault, t_heal, end)
        res["region"]["failback_delay"] = meta.get("failback_delay")
        fails = [t[i] for i in range(n) if t_fault <= t[i] < t_heal and failed[i]]
        res["region"]["failover"], res["region"]["later_failures"] = failover_burst(fails, t_fault)
    res["levee"] = levee_metrics(d)
    res["haproxy"] = haproxy_stats(d)
    if meta["proxy"].startswith("levee"):
        res["log"] = levee_log_events(d)
    elif meta["proxy"] == "nginx":
        res["log"] = nginx_log_events(d)
    return res


def fmt_pct(x):
    if x != x:
        return "–"
    if x == 0:
        return "0"
    if x < 0.001:
        return "<0.1%"
    return f"{x * 100:.1f}%"


def fmt_ms(x):
    if x != x:
        return "–"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def fmt_ttz(x):
    return "never" if x is None else f"{x:.2f} s"


def fmt_count(x):
    return "–" if x is None else str(x)


def fmt_back(r):
    if "faulty_back_after" not in r:
        return "–"
    x = r["faulty_back_after"]
    return "not within the run" if x is None else f"{x:.1f} s"


def fmt_outcomes(o):
    if not o:
        return "–"
    return ", ".join(f"{k} ×{v}" for k, v in o.items())


def runs(out):
    raw = os.path.join(out, "raw")
    res = []
    for name in sorted(os.listdir(raw)) if os.path.isdir(raw) else []:
        d = os.path.join(raw, name)
        if os.path.exists(os.path.join(d, "load.json")) and os.path.exists(os.path.join(d, "upstream.json")):
            try:
                res.append(compute(d))
            except (KeyError, ValueError, OSError) as e:
                print(f"report: skipping {d}: {e}", file=sys.stderr)
    order = lambda r: (  # noqa: E731
        SCENARIO_ORDER.index(r["scenario"]) if r["scenario"] in SCENARIO_ORDER else 99,
        BALANCER_ORDER.index(r["balancer"]) if r["balancer"] in BALANCER_ORDER else 99,
        PROXY_ORDER.index(r["proxy"]) if r["proxy"] in PROXY_ORDER else 99,
        r["round"],
    )
    return sorted(res, key=order)


def proxy_label(r):
    name = PROXY_TITLE.get(r["proxy"], r["proxy"])
    if r["balancer"] == "lr":
        name += f", {LEAST_NAME.get(r['proxy'], 'least requests')}"
    return name


def balancer_name(r):
    if r["balancer"] == "lr":
        return LEAST_NAME.get(r["proxy"], "least requests")
    return {"levee": "round_robin", "levee-cb": "round_robin", "haproxy": "roundrobin"}.get(r["proxy"], "round robin")


def fmt_stopped(f):
    if f["sent_while_frozen"] == 0:
        return "got none"
    x = f["stopped_after"]
    return "never" if x is None else f"{x:.2f} s"


def fmt_latencies(ph):
    return f"{fmt_ms(ph['p50_ms'])} / {fmt_ms(ph['p99_ms'])} / {fmt_ms(ph['p999_ms'])}"


def own_counters(r):
    own = []
    if r.get("levee"):
        own.append(f"retries {r['levee']['retries']:.0f}, budget refusals {r['levee']['budget_exhausted']:.0f}")
        if r["levee"]["breaker_opened"]:
            own.append(f"breakers opened {r['levee']['breaker_opened']:.0f}")
    if r.get("haproxy"):
        wretr = sum(int(v.get("wretr") or 0) for v in r["haproxy"].values())
        wredis = sum(int(v.get("wredis") or 0) for v in r["haproxy"].values())
        downs = sum(int(v.get("chkdown") or 0) for v in r["haproxy"].values())
        own.append(f"retries {wretr}, redispatches {wredis}, UP→DOWN transitions {downs}")
    if r.get("log"):
        own.append(", ".join(f"{k} {v}" for k, v in r["log"].items()))
    return "; ".join(own) or "–"


def freeze_markdown(rs, rnd):
    """The freeze scenario's own tables: latency tails and the frozen
    endpoint's side."""
    lines = [
        f"{SCENARIO_TITLE['freeze']}. Client side: requests by scheduled send time; errors include client timeouts; latency of every request (failures at their time to failure), nearest rank.",
        "",
        "| proxy | balancer | requests, fault / whole run | errors, fault phase | errors, whole run | p50 / p99 / p99.9 ms, fault phase | p50 / p99 / p99.9 ms, whole run | failures (fault; healed) | max send lag ms |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rs:
        f, a, h = r["fault"], r["all"], r["healed"]
        lines.append(
            f"| {PROXY_TITLE.get(r['proxy'], r['proxy'])}{rnd(r)} | {balancer_name(r)} | {f['sent']} / {a['sent']} "
            f"| {fmt_pct(f['error_rate'])} ({f['failed']}) | {fmt_pct(a['error_rate'])} ({a['failed']}) "
            f"| {fmt_latencies(f)} | {fmt_latencies(a)} | {fmt_outcomes(f['outcomes'])}; {fmt_outcomes(h['outcomes'])} "
            f"| {r['send_lag_max_ms']:.1f} |"
        )
    lines += [
        "",
        "The frozen endpoint's side (from the x-bench-id of what it read after SIGCONT; see Definitions).",
        "",
        "| proxy | balancer | sent to it while frozen (client requests) | of which in the first second | stopped getting new requests after | later | traffic again after SIGCONT | its share, last 2 s | amplification, fault phase | upstream requests per endpoint | proxy's own counters |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rs:
        z = r["frozen"]
        lines.append(
            f"| {PROXY_TITLE.get(r['proxy'], r['proxy'])}{rnd(r)} | {balancer_name(r)} "
            f"| {z['sent_while_frozen']} ({z['client_requests_while_frozen']}) | {z['first_second']} | {fmt_stopped(z)} | {z['later']} "
            f"| {fmt_back(r)} | {fmt_pct(z['share_at_end'])} | {r['fault']['amplification']:.2f} "
            f"| {' / '.join(str(x) for x in r['upstream_per_endpoint'])} | {own_counters(r)} |"
        )
    return lines


def fmt_fb(x):
    return "not within the run" if x is None else f"{x:.1f} s"


def fmt_after(x):
    return "–" if x is None else f"{x:.2f} s"


def region_markdown(rs, rnd):
    """The region drill's own tables."""
    w0, w1 = FAILBACK_WINDOWS
    lines = [
        f"{SCENARIO_TITLE['region']}. Client side: requests by scheduled send time; errors include client timeouts. "
        f"Time to fail over: from the kill to the last failed request of the burst that starts with it. Time to fail back: from the restore "
        f"until the primary region carries at least {FAILBACK_SHARE:.0%} of upstream arrivals in every {w0:g} s "
        f"({w1:g} s) window to the end of the run (see Definitions).",
        "",
        f"| proxy | balancer | errors, fault phase | errors, whole run | p99 ms, fault phase | p99 ms, whole run | time to fail over | later errors, fault phase | last failed request (from kill) | time to fail back, {w0:g} s windows | {w1:g} s windows | secondary's share after fail back |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        f, a, g = r["fault"], r["all"], r["region"]
        lines.append(
            f"| {PROXY_TITLE.get(r['proxy'], r['proxy'])}{rnd(r)} | {balancer_name(r)} "
            f"| {fmt_pct(f['error_rate'])} ({f['failed']}/{f['sent']}) | {fmt_pct(a['error_rate'])} ({a['failed']}) "
            f"| {fmt_ms(f['p99_ms'])} | {fmt_ms(a['p99_ms'])} | {g['failover']:.2f} s | {g['later_failures']} | {fmt_ttz(r['ttz_fault'])} "
            f"| {fmt_fb(g[f'failback_{w0:g}s'])} | {fmt_fb(g[f'failback_{w1:g}s'])} | {fmt_pct(g['secondary_share_after_failback'])} |"
        )
    lines += [
        "",
        "Details: failures by outcome in the fault and healed phases; the secondary region's share of upstream arrivals (steady phase, healed phase, last 2 s); the first request a primary endpoint got after the restore; amplification; upstream requests per endpoint (primary p1 / p2 / p3, then secondary s1 / s2 / s3); health-check requests; the proxy's own counters; the primary region's share per second after the restore; the load generator's worst send lag.",
        "",
        "| proxy | balancer | fault phase: failures | healed phase: failures | secondary's share, steady / healed / last 2 s | primary: first request after restore | amplification, fault phase | upstream requests per endpoint | health-check requests | proxy's own counters | primary's share per second after restore | max send lag ms |",
        "|---|---|---|---|---:|---:|---:|---|---:|---|---|---:|",
    ]
    for r in rs:
        f, h, g = r["fault"], r["healed"], r["region"]
        pe = r["upstream_per_endpoint"]
        series = " ".join("–" if x is None else f"{x * 100:.0f}" for x in g["primary_share_per_second_after_heal"])
        lines.append(
            f"| {PROXY_TITLE.get(r['proxy'], r['proxy'])}{rnd(r)} | {balancer_name(r)} "
            f"| {fmt_outcomes(f['outcomes'])} | {fmt_outcomes(h['outcomes'])} "
            f"| {fmt_pct(g['secondary_share_steady'])} / {fmt_pct(g['secondary_share_healed'])} / {fmt_pct(g['secondary_share_last2s'])} "
            f"| {fmt_after(g['primary_back_after'])} | {f['amplification']:.2f} "
            f"| {' / '.join(str(x) for x in pe[:3])} \\| {' / '.join(str(x) for x in pe[3:])} "
            f"| {r['health_checks']} | {own_counters(r)} | {series} | {r['send_lag_max_ms']:.1f} |"
        )
    return lines


def markdown(out):
    everything = runs(out)
    lines = []
    meta = os.path.join(out, "meta.md")
    if os.path.exists(meta):
        with open(meta) as f:
            lines += [l.rstrip() for l in f if l.strip()]
        lines.append("")
    multi = len({r["round"] for r in everything}) > 1
    rnd = lambda r: f" (round {r['round']})" if multi else ""  # noqa: E731
    frozen = [r for r in everything if r["scenario"] == "freeze"]
    region = [r for r in everything if r["scenario"] == "region"]
    rs = [r for r in everything if r["scenario"] not in ("freeze", "region")]
    if not rs:
        if frozen or not region:
            lines += freeze_markdown(frozen, rnd)
        if region:
            lines += ([""] if frozen else []) + region_markdown(region, rnd)
        return "\n".join(lines) + "\n"
    lines += [
        "| scenario | proxy | errors, fault phase | errors, whole run | p99 ms, fault phase | p99 ms, whole run | amplification, fault phase | amplification, whole run | time to zero errors (from fault) | time to zero errors (from heal) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    last = None
    for r in rs:
        scen = SCENARIO_TITLE.get(r["scenario"], r["scenario"]) if r["scenario"] != last else ""
        last = r["scenario"]
        f, a = r["fault"], r["all"]
        lines.append(
            f"| {scen} | {proxy_label(r)}{rnd(r)} | {fmt_pct(f['error_rate'])} ({f['failed']}/{f['sent']}) "
            f"| {fmt_pct(a['error_rate'])} | {fmt_ms(f['p99_ms'])} | {fmt_ms(a['p99_ms'])} "
            f"| {f['amplification']:.2f} | {a['amplification']:.2f} | {fmt_ttz(r['ttz_fault'])} | {fmt_ttz(r['ttz_heal'])} |"
        )
    lines += [
        "",
        "Details: failures by outcome (status code or client error) in the fault and healed phases; latency of successful requests; upstream requests per endpoint over the whole run (the first endpoint is the faulty one in scenarios 1-3; a refused connection is not a request); health-check requests; the proxy's own counters and log lines; the load generator's worst send lag (scheduled to actual send).",
        "",
        "| scenario | proxy | fault phase: failures | healed phase: failures | p50 / p99 ok ms, fault phase | p99 ms, steady phase | upstream requests per endpoint | faulty endpoint: requests while faulty | faulty endpoint: traffic again after heal | health-check requests | proxy's own counters | max send lag ms |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in rs:
        f, h, s = r["fault"], r["healed"], r["steady"]
        lines.append(
            f"| {r['scenario']} | {proxy_label(r)}{rnd(r)} | {fmt_outcomes(f['outcomes'])} | {fmt_outcomes(h['outcomes'])} "
            f"| {fmt_ms(f['p50_ms'])} / {fmt_ms(f['p99_ok_ms'])} | {fmt_ms(s['p99_ms'])} "
            f"| {' / '.join(str(x) for x in r['upstream_per_endpoint'])} | {fmt_count(r.get('faulty_in_fault'))} | {fmt_back(r)} "
            f"| {r['health_checks']} | {own_counters(r)} "
            f"| {r['send_lag_max_ms']:.1f} |"
        )
    if frozen:
        lines += [""] + freeze_markdown(frozen, rnd)
    if region:
        lines += [""] + region_markdown(region, rnd)
    return "\n".join(lines) + "\n"


def one_line(d):
    r = compute(d)
    f, a = r["fault"], r["all"]
    if r["scenario"] == "region":
        g = r["region"]
        return (
            f"errors fault {fmt_pct(f['error_rate'])} ({f['failed']}/{f['sent']}), whole {fmt_pct(a['error_rate'])}; "
            f"p99 fault {fmt_ms(f['p99_ms'])} ms, whole {fmt_ms(a['p99_ms'])} ms; "
            f"fail over {g['failover']:.2f} s (later errors {g['later_failures']}, last {fmt_ttz(r['ttz_fault'])}); fail back {fmt_fb(g['failback_1s'])} (1 s), {fmt_fb(g['failback_0.1s'])} (0.1 s); "
            f"secondary share after {fmt_pct(g['secondary_share_after_failback'])}, last 2 s {fmt_pct(g['secondary_share_last2s'])}; "
            f"failures {fmt_outcomes(f['outcomes'])}; healed {fmt_outcomes(r['healed']['outcomes'])}"
        )
    if r["scenario"] == "freeze":
        z = r["frozen"]
        return (
            f"errors fault {fmt_pct(f['error_rate'])} ({f['failed']}/{f['sent']}), whole {fmt_pct(a['error_rate'])}; "
            f"p50/p99/p99.9 fault {fmt_latencies(f)} ms, whole {fmt_latencies(a)} ms; "
            f"frozen endpoint sent {z['sent_while_frozen']} while frozen, stopped after {fmt_stopped(z)} "
            f"(later {z['later']}), back {fmt_back(r)} after SIGCONT; failures {fmt_outcomes(f['outcomes'])}"
        )
    return (
        f"errors fault {fmt_pct(f['error_rate'])} ({f['failed']}/{f['sent']}), whole {fmt_pct(a['error_rate'])}; "
        f"p99 fault {fmt_ms(f['p99_ms'])} ms, whole {fmt_ms(a['p99_ms'])} ms; "
        f"amplification fault {f['amplification']:.2f}, whole {a['amplification']:.2f}; "
        f"zero errors {fmt_ttz(r['ttz_fault'])} after fault, {fmt_ttz(r['ttz_heal'])} after heal; "
        f"failures {fmt_outcomes(f['outcomes'])}"
    )


def main():
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--one":
        print(one_line(args[1]))
    elif len(args) == 2 and args[0] == "--json":
        json.dump(runs(args[1]), sys.stdout, indent=1)
        print()
    elif len(args) == 1:
        sys.stdout.write(markdown(args[0]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
