#!/usr/bin/env python3
"""Open-model HTTP/1.1 load generator (stdlib only, asyncio).

Requests are sent on a fixed schedule (Poisson or uniform arrivals at --rate
per second), whatever happened to earlier requests: a slow or failed request
never delays the next one (no coordinated omission). Each request takes an
idle keep-alive connection from a pool, or opens a new one (up to
--max-conns; beyond that it waits, and the wait counts in its latency).
Latency is measured from the request's *scheduled* send time to the end of
its response, so time spent queued in the client, connecting, or waiting for
a loop that fell behind is all counted.

A request that has no complete response --timeout seconds after its
scheduled time is an error ("timeout"); its connection is closed. Other
errors: "refused" (connect refused), "connect" (other connect failure),
"closed" (the connection closed before a complete response), "protocol"
(unparsable response).

Each request carries an x-bench-id header with its index in the schedule.

--at T:LABEL:URL (repeatable) sends GET URL at T seconds after the start of
the schedule (used to inject and heal faults on the same clock); the actual
times are recorded.

Output (--out): one JSON document with the schedule start (t0, on
time.monotonic(), the system-wide CLOCK_MONOTONIC), the events, and per
request: scheduled offset (s), latency (s: to the end of the response, or to
the failure; the client timeout for timeouts), status (0 on a transport
error), error code (null when a response arrived), send lag (actual send -
scheduled, s).
A summary goes to stderr (percentiles: nearest rank, benchlib.percentile).

The connection pool, response parser, schedule, timed request and launch
loop are bench/benchlib.py's, shared with bench/overload/load.py.
"""

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import Pool, control_get, launch, outcome, percentile, schedule, timed_request  # noqa: E402


async def run(args):
    u = urlsplit(args.url)
    host, port = u.hostname, u.port or 80
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    # Every request carries its number, so that an upstream can say which
    # client request it received (upstream.py records it).
    req_head = f"GET {path} HTTP/1.1\r\nhost: {u.netloc}\r\nuser-agent: levee-scenarios\r\n".encode()
    loop = asyncio.get_running_loop()
    pool = Pool(host, port, args.max_conns)

    # Warm connections, so the first second does not measure connects.
    await pool.warm(args.warm_conns)

    offsets = schedule(args.rate, args.duration, args.arrivals, args.seed)
    n = len(offsets)
    lat = [None] * n
    status = [0] * n
    err = [None] * n
    lag = [0.0] * n

    async def one(i, target):
        data = req_head + b"x-bench-id: %d\r\n\r\n" % i
        status[i], err[i], lat[i] = await timed_request(pool, data, target, args.timeout)

    events = []
    for spec in args.at:
        t, label, url = spec.split(":", 2)
        events.append({"t": float(t), "label": label, "url": url})
    events.sort(key=lambda e: e["t"])

    async def fire(ev, at):
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        ev["t_sent"] = loop.time() - t0
        try:
            st, body = await control_get(ev["url"])
            ev["status"] = st
            ev["response"] = body[:2000]
        except Exception as e:  # noqa: BLE001 - recorded, the run goes on
            ev["status"] = 0
            ev["response"] = repr(e)
        ev["t_done"] = loop.time() - t0

    t0 = loop.time() + 0.05
    event_tasks = [loop.create_task(fire(ev, t0 + ev["t"])) for ev in events]
    await launch(offsets, t0, one, lag)
    if event_tasks:
        await asyncio.wait(event_tasks)
    wall = loop.time() - t0
    pool.close_idle()

    ok_idx = [i for i in range(n) if err[i] is None and 200 <= status[i] < 300]
    ok = len(ok_idx)
    lats = [lat[i] for i in ok_idx]
    summary = {
        "requests": n,
        "ok_2xx": ok,
        "errors": n - ok,
        "offered_rate": args.rate,
        "achieved_rate": n / args.duration if args.duration else 0,
        "ok_p50_ms": percentile(lats, 50) * 1000,
        "ok_p99_ms": percentile(lats, 99) * 1000,
        "ok_max_ms": (max(lats) * 1000) if lats else float("nan"),
        "send_lag_p99_ms": percentile(lag, 99) * 1000 if n else 0,
        "send_lag_max_ms": max(lag) * 1000 if n else 0,
        "connections_peak": pool.peak,
        "connections_opened": pool.opened,
        "wall_s": wall,
        "outcomes": dict(Counter(outcome(status[i], err[i]) for i in range(n))),
    }
    print("load: " + json.dumps(summary), file=sys.stderr)
    if args.out:
        doc = {
            "url": args.url,
            "rate": args.rate,
            "duration": args.duration,
            "arrivals": args.arrivals,
            "seed": args.seed,
            "timeout": args.timeout,
            "t0": t0,
            "events": events,
            "summary": summary,
            "t": [round(x, 6) for x in offsets],
            "latency": [None if x is None else round(x, 6) for x in lat],
            "status": status,
            "error": err,
            "lag": [round(x, 6) for x in lag],
        }
        with open(args.out, "w") as f:
            json.dump(doc, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, default=400.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of schedule")
    ap.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0, help="per-request client timeout (s)")
    ap.add_argument("--max-conns", type=int, default=1024)
    ap.add_argument("--warm-conns", type=int, default=32)
    ap.add_argument("--at", action="append", default=[], metavar="T:LABEL:URL")
    ap.add_argument("--out")
    args = ap.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
