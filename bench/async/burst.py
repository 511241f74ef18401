#!/usr/bin/env python3
"""Open-model burst of POSTs, then the wait for the upstream to drain it
(the burst benchmark, bench/async/run.sh; RELIABILITY.md, "Burst
absorption").

The generator is bench/overload/load.py's, from the same parts in
bench/benchlib.py: every request goes out at its scheduled time (Poisson
arrivals at --rate for --seconds, fixed seed) whatever happened to earlier
ones, on a pool of keep-alive connections; latency runs from the
*scheduled* send time to the end of the response, and a request without a
complete response --timeout seconds after its scheduled time is a
"timeout". Each request is

    POST PATH HTTP/1.1
    content-type: application/octet-stream
    content-length: --body-bytes
    x-req: N

(to several --url in turn, when given) where N is the request's index in
the schedule: the upstream (bench/overload/upstream.py) records it, so the
report matches what the client was told (a 202 for a job, or the proxy's
answer) with what reached the upstream, and when.

After the last answer, the generator waits for the drain (at most
--drain-max seconds), polling the upstream's control port (--upstream-ctl)
every 0.5 s:
- --jobs: until the upstream has seen as many distinct Idempotency-Keys as
  there were 2xx answers (every accepted job delivered) and holds nothing;
- otherwise: until the upstream holds nothing (work whose client gave up
  is still finished, as a real server would).
Levee's metrics (--sample URL) are read every --sample-every seconds the
whole time (bench/overload/load.py's sampler).

Output (--out): one JSON document with t0 (time.monotonic()), the rate,
per request its scheduled offset, latency, status (0 on a transport error),
error and send lag, the drain's end (drain_t, seconds from t0) and the
samples. A summary goes to stderr.
"""

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "overload"))
from benchlib import Pool, control_get, launch, outcome, percentile, schedule, timed_request  # noqa: E402
from load import sampler  # noqa: E402  (bench/overload/load.py)


async def upstream_stats(ctl):
    _, body = await control_get(ctl.rstrip("/") + "/stats", timeout=5.0)
    return json.loads(body)["stats"]


async def wait_drain(ctl, jobs, expected, deadline, t0):
    """Poll the upstream until it has drained (see the module's doc) or
    `deadline` (loop time) passes: (drained, seconds from t0, last stats)."""
    loop = asyncio.get_running_loop()
    last = None
    while True:
        try:
            st = await upstream_stats(ctl)
            last = st
            idle = st["present_now"] == 0
            if idle and (not jobs or st["keys"] >= expected):
                return True, loop.time() - t0, st
        except (OSError, ValueError, asyncio.TimeoutError) as e:
            print(f"burst: upstream stats: {e!r}", file=sys.stderr)
        if loop.time() >= deadline:
            return False, loop.time() - t0, last
        await asyncio.sleep(0.5)


async def run(args):
    loop = asyncio.get_running_loop()
    body = b"x" * max(0, args.body_bytes - 1) + b"\n"
    targets = []
    for url in args.url:
        u = urlsplit(url)
        path = (u.path or "/") + ("?" + u.query if u.query else "")
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {u.netloc}\r\nuser-agent: levee-burst\r\n"
            f"content-type: application/octet-stream\r\ncontent-length: {len(body)}\r\n"
        ).encode()
        pool = Pool(u.hostname, u.port or 80, args.max_conns // len(args.url))
        await pool.warm(args.warm_conns)
        targets.append((head, pool))
    offsets = schedule(args.rate, args.seconds, args.arrivals, args.seed)
    n = len(offsets)
    lat = [None] * n
    status = [0] * n
    err = [None] * n
    lag = [0.0] * n

    async def one(i, target):
        head, pool = targets[i % len(targets)]
        data = head + b"x-req: %d\r\n\r\n" % i + body
        status[i], err[i], lat[i] = await timed_request(pool, data, target, args.timeout)

    t0 = loop.time() + 0.05
    samples, stop = [], asyncio.Event()
    tasks = [
        loop.create_task(sampler(url, args.sample_every, args.sample_prefix, t0, samples, stop)) for url in args.sample
    ]
    await launch(offsets, t0, one, lag)
    answered_t = loop.time() - t0
    for _, pool in targets:
        pool.close_idle()
    ok = sum(1 for i in range(n) if err[i] is None and 200 <= status[i] < 300)
    drained, drain_t, last = (None, None, None)
    if args.upstream_ctl:
        drained, drain_t, last = await wait_drain(
            args.upstream_ctl, args.jobs, ok, loop.time() + args.drain_max, t0
        )
        # A little more, so that late duplicates and the final gauges show.
        await asyncio.sleep(args.grace)
    stop.set()
    if tasks:
        await asyncio.wait(tasks)

    good = [lat[i] for i in range(n) if err[i] is None and 200 <= status[i] < 300]
    summary = {
        "sent": n,
        "ok_2xx": ok,
        "ok_p50_ms": round(percentile(good, 50) * 1000, 2),
        "ok_p99_ms": round(percentile(good, 99) * 1000, 2),
        "outcomes": dict(Counter(outcome(status[i], err[i]) for i in range(n))),
        "send_lag_p99_ms": round(percentile(lag, 99) * 1000, 2),
        "send_lag_max_ms": round(max(lag) * 1000, 2) if lag else 0,
        "connections_peak": sum(p.peak for _, p in targets),
        "connections_opened": sum(p.opened for _, p in targets),
        "answered_s": round(answered_t, 3),
        "drained": drained,
        "drain_s": None if drain_t is None else round(drain_t, 3),
        "upstream": last,
    }
    print("burst: " + json.dumps(summary), file=sys.stderr)
    if args.out:
        doc = {
            "urls": args.url,
            "rate": args.rate,
            "seconds": args.seconds,
            "arrivals": args.arrivals,
            "seed": args.seed,
            "timeout": args.timeout,
            "body_bytes": len(body),
            "jobs": args.jobs,
            "t0": t0,
            "summary": summary,
            "drain_t": drain_t,
            "drained": drained,
            "t": [round(x, 6) for x in offsets],
            "latency": [None if x is None else round(x, 6) for x in lat],
            "status": status,
            "error": err,
            "lag": [round(x, 6) for x in lag],
            "samples": samples,
        }
        with open(args.out, "w") as f:
            json.dump(doc, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", action="append", required=True, help="target (repeat: round robin)")
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--body-bytes", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request client timeout (s)")
    ap.add_argument("--max-conns", type=int, default=30000)
    ap.add_argument("--warm-conns", type=int, default=32)
    ap.add_argument("--upstream-ctl", help="the upstream's control URL, to wait for the drain")
    ap.add_argument("--jobs", action="store_true", help="drained when every 2xx's job reached the upstream")
    ap.add_argument("--drain-max", type=float, default=900.0, help="longest wait for the drain (s)")
    ap.add_argument("--grace", type=float, default=2.0, help="seconds recorded after the drain")
    ap.add_argument("--sample", action="append", default=[], metavar="URL")
    ap.add_argument("--sample-every", type=float, default=1.0)
    ap.add_argument("--sample-prefix", action="append", default=[])
    ap.add_argument("--out")
    args = ap.parse_args()
    if not args.sample_prefix:
        args.sample_prefix = ["levee_jobs", "levee_job_", "levee_cluster_"]
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
