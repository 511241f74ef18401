#!/usr/bin/env python3
"""An HTTP/1.1 upstream of fixed capacity, for the overload benchmark.

It serves --concurrency requests at once, each for --service-ms (a fixed
service time): its capacity is C = concurrency / service time (4 / 20 ms =
200 requests per second by default). A request that arrives while all
places are busy waits inside the upstream, in arrival order (an
asyncio.Semaphore), so beyond capacity the upstream's latency grows with its
queue and its throughput does not: the behaviour of a thread-pool server.

Work is never abandoned: a request whose client (the proxy) has gone away
while it waited is still served when its turn comes, and its answer is
dropped. Such requests are counted as "wasted": capacity spent on an answer
nobody reads, which is how an unprotected service loses goodput.

Every request is recorded with its arrival, service start and end times
(time.monotonic(), the system-wide CLOCK_MONOTONIC the load generator also
uses), its priority class and tenant (the x-priority and x-tenant headers the
generator sets), and whether its connection was still open at the end.

For the burst benchmark (bench/async/) it also records each request's
Idempotency-Key (as a number: the order in which keys were first seen; -1
without one) and the x-req header the burst's client numbers its requests
with (-1 without one). With --dedup it is an upstream that de-duplicates:
a request whose key it has already taken is answered at once, without
taking a place (recorded with "dup" 1 and no service time).

Stdlib only. Control interface (the same protocol as
bench/scenarios/upstream.py; both take it and the HTTP request parsing from
bench/benchlib.py), HTTP/1.1 on --control-port:

  GET /stats    counts (JSON)
  GET /dump     counts and every request's record (JSON)
  GET /reset    forget everything recorded so far
  GET /quit     exit

Usage: upstream.py --port 30101 --control-port 30100 --concurrency 4 --service-ms 20 [--dedup]
"""

import argparse
import asyncio
import os
import signal
import sys
import time
from array import array
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import Control, response_bytes, take_requests  # noqa: E402

CLASSES = {b"critical": 0, b"default": 1, b"sheddable": 2}
TENANTS = {b"a": 0, b"b": 1, b"abuser": 2}


class Capacity:
    """The upstream's places and its record of every request."""

    def __init__(self, concurrency, service_s, body, dedup=False):
        self.sem = asyncio.Semaphore(concurrency)
        self.dedup = dedup
        self.concurrency = concurrency
        self.service = service_s
        self.resp = response_bytes(200, "OK", body)
        self.conns = set()
        self.reset()

    def reset(self):
        self.arrival = array("d")
        self.start = array("d")
        self.end = array("d")
        self.cls = array("b")
        self.tenant = array("b")
        self.delivered = array("b")
        self.key = array("l")
        self.req = array("l")
        self.dup = array("b")
        self.keys = {}  # Idempotency-Key -> its number
        self.present = 0  # in service or waiting
        self.peak_present = 0

    def stats(self):
        n = len(self.end)
        return {
            "concurrency": self.concurrency,
            "service_ms": self.service * 1000,
            "capacity_per_s": self.concurrency / self.service,
            "arrived": len(self.arrival),
            "served": n,
            "wasted": n - sum(self.delivered),
            "keys": len(self.keys),
            "duplicates": sum(self.dup),
            "present_now": self.present,
            "peak_present": self.peak_present,
            "open_connections": len(self.conns),
        }


def req_number(value):
    """The x-req header's request number; -1 when absent or not a number."""
    try:
        return int(value) if value is not None else -1
    except ValueError:
        return -1


class UpstreamConn(asyncio.Protocol):
    """One connection; its requests are answered one after the other."""

    def __init__(self, cap):
        self.cap = cap
        self.buf = bytearray()
        self.transport = None
        self.pending = asyncio.Queue()
        self.worker = None

    def connection_made(self, transport):
        self.transport = transport
        self.cap.conns.add(self)
        self.worker = asyncio.get_running_loop().create_task(self.serve())

    def connection_lost(self, exc):
        self.cap.conns.discard(self)
        # The worker finishes the request in hand (work is not abandoned),
        # then stops.
        self.pending.put_nowait(None)

    def data_received(self, data):
        self.buf += data
        for _, headers, close in take_requests(self.buf, self.transport):
            self.pending.put_nowait(
                (
                    time.monotonic(),
                    CLASSES.get(headers.get(b"x-priority", b"critical").lower(), -1),
                    TENANTS.get(headers.get(b"x-tenant", b"").lower(), -1),
                    headers.get(b"idempotency-key"),
                    req_number(headers.get(b"x-req")),
                    close,
                )
            )

    async def serve(self):
        cap = self.cap
        while True:
            item = await self.pending.get()
            if item is None:
                return
            arrived, cls, tenant, key, req, close = item
            keyno, dup = -1, 0
            if key is not None:
                keyno = cap.keys.get(key, -1)
                if keyno < 0:
                    keyno = cap.keys[key] = len(cap.keys)
                else:
                    dup = 1
            if dup and cap.dedup:
                # Already taken: answered from what was kept, no place used.
                started = ended = time.monotonic()
            else:
                cap.present += 1
                cap.peak_present = max(cap.peak_present, cap.present)
                async with cap.sem:
                    started = time.monotonic()
                    await asyncio.sleep(cap.service)
                    ended = time.monotonic()
                cap.present -= 1
            alive = not self.transport.is_closing()
            cap.arrival.append(arrived)
            cap.start.append(started)
            cap.end.append(ended)
            cap.cls.append(cls)
            cap.tenant.append(tenant)
            cap.delivered.append(1 if alive else 0)
            cap.key.append(keyno)
            cap.req.append(req)
            cap.dup.append(dup)
            if alive:
                self.transport.write(cap.resp)
                if close:
                    self.transport.close()


class App:
    """The control interface (served by benchlib's Control protocol)."""

    def __init__(self, cap):
        self.cap = cap
        self.stop = asyncio.Event()

    async def control(self, target):
        url = urlsplit(target)
        cap = self.cap
        now = time.monotonic()
        if url.path == "/stats":
            return {"t": now, "stats": cap.stats()}
        if url.path == "/dump":
            return {
                "t": now,
                "stats": cap.stats(),
                "arrival": [round(x, 5) for x in cap.arrival],
                "start": [round(x, 5) for x in cap.start],
                "end": [round(x, 5) for x in cap.end],
                "class": list(cap.cls),
                "tenant": list(cap.tenant),
                "delivered": list(cap.delivered),
                "key": list(cap.key),
                "req": list(cap.req),
                "dup": list(cap.dup),
            }
        if url.path == "/reset":
            cap.reset()
            return {"t": now, "stats": cap.stats()}
        if url.path == "/quit":
            return {"t": now, "bye": True}
        raise ValueError(f"unknown control path {url.path}")


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=4, help="requests served at once")
    ap.add_argument("--service-ms", type=float, default=20.0, help="fixed service time of one request")
    ap.add_argument("--body-bytes", type=int, default=64, help="size of the 200 body")
    ap.add_argument(
        "--dedup", action="store_true", help="answer a repeated Idempotency-Key at once, without service"
    )
    args = ap.parse_args()

    body = (b"x" * max(0, args.body_bytes - 1)) + b"\n"
    cap = Capacity(args.concurrency, args.service_ms / 1000.0, body, args.dedup)
    app = App(cap)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: UpstreamConn(cap), args.host, args.port, reuse_address=True, backlog=4096
    )
    ctl = await loop.create_server(lambda: Control(app), args.host, args.control_port, reuse_address=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stop.set)
    print(
        f"upstream: port {args.port} control {args.control_port} concurrency {args.concurrency} "
        f"service {args.service_ms} ms (capacity {args.concurrency / args.service_ms * 1000:.0f}/s)",
        file=sys.stderr,
        flush=True,
    )
    await app.stop.wait()
    ctl.close()
    server.close()
    for c in list(cap.conns):
        c.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
