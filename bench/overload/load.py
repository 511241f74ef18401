#!/usr/bin/env python3
"""Open-model load with priority classes and tenants, for the overload benchmark.

The same generator as bench/scenarios/load.py (the connection pool,
response parser, schedule, timed request and launch loop are both files'
imports from bench/benchlib.py): every request goes out at
its scheduled time whatever happened to earlier ones, latency runs from the
*scheduled* send time to the end of the response (no coordinated omission),
and a request without a complete response --timeout seconds after its
scheduled time is a "timeout" error. What it adds:

- phases: --phase LABEL:RATE:SECONDS (repeatable) run one after the other,
  each with Poisson (or uniform) arrivals at its own rate; e.g. a warm-up
  below capacity, then the overload;
- a priority class and a tenant per request, drawn independently with a
  fixed seed from --classes and --tenants (NAME:WEIGHT,...), sent as the
  headers x-priority and x-tenant (an empty list sends no header);
- several targets (--url repeated): requests go to them in turn (round
  robin), each with its own pool of keep-alive connections;
- --sample URL: a Prometheus endpoint (Levee's admin /metrics) read every
  --sample-every seconds on the same clock; the lines whose metric name
  starts with one of --sample-prefix are kept.

Output (--out): one JSON document with the schedule start (t0, on
time.monotonic()), the phases, and per request: scheduled offset (s),
latency (s), status (0 on a transport error), error code (null when a
response arrived), send lag (s), class index, tenant index and target index.
A summary per phase goes to stderr (percentiles: nearest rank,
benchlib.percentile).
"""

import argparse
import asyncio
import json
import os
import random
import sys
from collections import Counter
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import Pool, control_get, launch, outcome, percentile, schedule, timed_request  # noqa: E402


def parse_mix(spec):
    """"a:20,b:20,abuser:60" -> (names, weights); "" -> ([], [])."""
    names, weights = [], []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.partition(":")
        names.append(name)
        weights.append(float(w or 1))
    return names, weights


async def sampler(url, every, prefixes, t0, out, stop):
    """Read a metrics endpoint every `every` seconds until `stop` is set."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time() - t0
        try:
            status, body = await control_get(url, timeout=2.0)
            lines = [l for l in body.splitlines() if l.startswith(tuple(prefixes))]
            out.append({"t": round(t, 3), "lines": lines})
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            out.append({"t": round(t, 3), "error": repr(e)})
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


async def run(args):
    loop = asyncio.get_running_loop()
    targets = []
    for url in args.url:
        u = urlsplit(url)
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        targets.append((u, path, Pool(u.hostname, u.port or 80, args.max_conns)))

    classes, cw = parse_mix(args.classes)
    tenants, tw = parse_mix(args.tenants)

    def request_bytes(u, path, cls, tenant):
        head = f"GET {path} HTTP/1.1\r\nhost: {u.netloc}\r\nuser-agent: levee-overload\r\n"
        if cls is not None:
            head += f"x-priority: {classes[cls]}\r\n"
        if tenant is not None:
            head += f"x-tenant: {tenants[tenant]}\r\n"
        return (head + "\r\n").encode()

    reqs = {}
    for k, (u, path, _) in enumerate(targets):
        for c in range(len(classes)) if classes else [None]:
            for tn in range(len(tenants)) if tenants else [None]:
                reqs[(k, c, tn)] = request_bytes(u, path, c, tn)

    # Warm connections, so the first second does not measure connects.
    for _, _, pool in targets:
        await pool.warm(args.warm_conns)

    # The schedule: phases one after the other.
    phases, offsets, start = [], [], 0.0
    for k, spec in enumerate(args.phase):
        label, rate, secs = spec.split(":")
        rate, secs = float(rate), float(secs)
        seq = schedule(rate, secs, args.arrivals, args.seed * 1000 + k)
        phases.append({"label": label, "rate": rate, "start": start, "end": start + secs, "first": len(offsets)})
        offsets.extend(start + x for x in seq)
        start += secs
    duration = start
    n = len(offsets)
    rnd = random.Random(args.seed)
    cls_of = rnd.choices(range(len(classes)), cw, k=n) if classes else [None] * n
    ten_of = rnd.choices(range(len(tenants)), tw, k=n) if tenants else [None] * n
    tgt_of = [i % len(targets) for i in range(n)]
    lat = [None] * n
    status = [0] * n
    err = [None] * n
    lag = [0.0] * n

    async def one(i, target):
        k = tgt_of[i]
        data = reqs[(k, cls_of[i], ten_of[i])]
        status[i], err[i], lat[i] = await timed_request(targets[k][2], data, target, args.timeout)

    t0 = loop.time() + 0.05
    samples, stop = [], asyncio.Event()
    sample_tasks = [
        loop.create_task(sampler(url, args.sample_every, args.sample_prefix, t0, samples, stop)) for url in args.sample
    ]
    await launch(offsets, t0, one, lag)
    stop.set()
    if sample_tasks:
        await asyncio.wait(sample_tasks)
    wall = loop.time() - t0
    for _, _, pool in targets:
        pool.close_idle()

    def ok(i):
        return err[i] is None and 200 <= status[i] < 300

    summary = {"wall_s": round(wall, 3), "phases": []}
    for k, ph in enumerate(phases):
        last = phases[k + 1]["first"] if k + 1 < len(phases) else n
        idx = range(ph["first"], last)
        m = len(idx)
        good = [lat[i] for i in idx if ok(i)]
        lags = [lag[i] for i in idx]
        summary["phases"].append(
            {
                "label": ph["label"],
                "offered_rate": ph["rate"],
                "sent": m,
                "ok_2xx": len(good),
                "ok_per_s": round(len(good) / (ph["end"] - ph["start"]), 1),
                "ok_p99_ms": round(percentile(good, 99) * 1000, 1),
                "send_lag_p99_ms": round(percentile(lags, 99) * 1000, 2),
                "send_lag_max_ms": round(max(lags) * 1000, 2) if lags else 0,
                "outcomes": dict(Counter(outcome(status[i], err[i]) for i in idx)),
            }
        )
    summary["connections_peak"] = sum(p.peak for _, _, p in targets)
    summary["connections_opened"] = sum(p.opened for _, _, p in targets)
    print("load: " + json.dumps(summary), file=sys.stderr)
    if args.out:
        doc = {
            "urls": args.url,
            "phases": phases,
            "duration": duration,
            "arrivals": args.arrivals,
            "seed": args.seed,
            "timeout": args.timeout,
            "classes": classes,
            "class_weights": cw,
            "tenants": tenants,
            "tenant_weights": tw,
            "t0": t0,
            "summary": summary,
            "t": [round(x, 6) for x in offsets],
            "latency": [None if x is None else round(x, 6) for x in lat],
            "status": status,
            "error": err,
            "lag": [round(x, 6) for x in lag],
            "class": cls_of,
            "tenant": ten_of,
            "target": tgt_of,
            "samples": samples,
        }
        with open(args.out, "w") as f:
            json.dump(doc, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", action="append", required=True, help="target (repeat for round robin)")
    ap.add_argument("--phase", action="append", required=True, metavar="LABEL:RATE:SECONDS")
    ap.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0, help="per-request client timeout (s)")
    ap.add_argument("--classes", default="critical:10,default:45,sheddable:45")
    ap.add_argument("--tenants", default="a:20,b:20,abuser:60")
    ap.add_argument("--max-conns", type=int, default=4096, help="per target")
    ap.add_argument("--warm-conns", type=int, default=32, help="per target")
    ap.add_argument("--sample", action="append", default=[], metavar="URL")
    ap.add_argument("--sample-every", type=float, default=0.5)
    ap.add_argument("--sample-prefix", action="append", default=[])
    ap.add_argument("--out")
    args = ap.parse_args()
    if not args.sample_prefix:
        args.sample_prefix = ["levee_cluster_", "levee_ratelimit_", "levee_redis_"]
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
