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
A summary goes to stderr.
"""

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


class Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.fut = None
        self.closed = False
        self.reusable = True
        self.head = None  # (status, content_length or None, chunked, close)
        self.chunk_pos = 0

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc):
        self.closed = True
        self.reusable = False
        fut = self.fut
        if fut is not None and not fut.done():
            if self.head is not None and self.head[1] is None and not self.head[2]:
                # Close-delimited body: the close ends the response.
                fut.set_result(self.head[0])
            else:
                fut.set_exception(ConnectionResetError("closed"))

    def send(self, data):
        loop = asyncio.get_running_loop()
        self.fut = loop.create_future()
        self.head = None
        self.buf.clear()
        self.transport.write(data)
        return self.fut

    def abort(self):
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data):
        if self.fut is None or self.fut.done():
            # Unsolicited bytes: the connection cannot be trusted any more.
            self.abort()
            return
        self.buf += data
        try:
            self._parse()
        except ValueError as e:
            self.abort()
            if not self.fut.done():
                self.fut.set_exception(ProtocolError(str(e)))

    def _parse(self):
        buf = self.buf
        if self.head is None:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                if len(buf) > 65536:
                    raise ValueError("response head too large")
                return
            lines = bytes(buf[:i]).split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
                raise ValueError("bad status line")
            status = int(parts[1])
            clen, chunked, close = None, False, parts[0] == b"HTTP/1.0"
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                v = v.strip().lower()
                if k == b"content-length":
                    clen = int(v)
                elif k == b"transfer-encoding" and b"chunked" in v:
                    chunked = True
                elif k == b"connection":
                    if b"close" in v:
                        close = True
                    elif b"keep-alive" in v:
                        close = False
            if status in (204, 304) or 100 <= status < 200:
                clen = 0
            self.head = (status, clen, chunked, close)
            del buf[: i + 4]
            self.chunk_pos = 0
        status, clen, chunked, close = self.head
        if chunked:
            # Walk the chunks; complete when the zero chunk and its trailer end.
            pos = self.chunk_pos
            while True:
                j = buf.find(b"\r\n", pos)
                if j < 0:
                    return
                size = int(bytes(buf[pos:j]).split(b";")[0], 16)
                if size == 0:
                    end = buf.find(b"\r\n\r\n", j)
                    if end < 0:
                        if buf[j : j + 4] == b"\r\n\r\n":
                            end = j
                        else:
                            return
                    break
                if len(buf) < j + 2 + size + 2:
                    return
                pos = j + 2 + size + 2
                self.chunk_pos = pos
        elif clen is not None:
            if len(buf) < clen:
                return
        else:
            return  # close-delimited: connection_lost completes it
        if close:
            self.reusable = False
            self.transport.close()
        self.fut.set_result(status)


class ProtocolError(Exception):
    pass


class Pool:
    def __init__(self, host, port, max_conns):
        self.host, self.port, self.max = host, port, max_conns
        self.idle = []
        self.open = 0
        self.peak = 0
        self.opened = 0
        self.freed = asyncio.Event()

    async def connect(self):
        loop = asyncio.get_running_loop()
        self.open += 1
        self.opened += 1
        self.peak = max(self.peak, self.open)
        try:
            _, conn = await loop.create_connection(Conn, self.host, self.port)
        except BaseException:
            self.open -= 1
            self.freed.set()
            raise
        return conn

    async def acquire(self):
        while True:
            while self.idle:
                conn = self.idle.pop()
                if not conn.closed:
                    return conn
                self.open -= 1
            if self.open < self.max:
                return await self.connect()
            self.freed.clear()
            await self.freed.wait()

    def release(self, conn):
        if conn.reusable and not conn.closed:
            self.idle.append(conn)
        else:
            conn.abort()
            self.open -= 1
        self.freed.set()

    def discard(self, conn):
        conn.abort()
        self.open -= 1
        self.freed.set()


def schedule(rate, duration, kind, seed):
    rnd = random.Random(seed)
    out, t = [], 0.0
    if kind == "uniform":
        n = int(rate * duration)
        return [i / rate for i in range(n)]
    while True:
        t += rnd.expovariate(rate)
        if t >= duration:
            return out
        out.append(t)


async def control_get(url, timeout=5.0):
    u = urlsplit(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port or 80), timeout)
    target = u.path + ("?" + u.query if u.query else "")
    writer.write(f"GET {target} HTTP/1.1\r\nhost: {u.netloc}\r\nconnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode("utf-8", "replace")


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
    warm = []
    for _ in range(args.warm_conns):
        try:
            warm.append(await pool.connect())
        except OSError as e:
            print(f"load: warm-up connect failed: {e}", file=sys.stderr)
            break
    pool.idle.extend(warm)

    offsets = schedule(args.rate, args.duration, args.arrivals, args.seed)
    n = len(offsets)
    lat = [None] * n
    status = [0] * n
    err = [None] * n
    lag = [0.0] * n

    async def one(i, target):
        conn = None

        async def attempt():
            nonlocal conn
            conn = await pool.acquire()
            return await conn.send(req_head + b"x-bench-id: %d\r\n\r\n" % i)

        try:
            remaining = target + args.timeout - loop.time()
            st = await asyncio.wait_for(attempt(), max(remaining, 0.001))
            status[i] = st
            lat[i] = loop.time() - target
            pool.release(conn)
            return
        except asyncio.TimeoutError:
            err[i] = "timeout"
        except ConnectionRefusedError:
            err[i] = "refused"
        except ProtocolError:
            err[i] = "protocol"
        except ConnectionResetError:
            err[i] = "closed"
        except OSError:
            err[i] = "connect" if conn is None else "closed"
        # Errors keep their time to failure (the client timeout for timeouts).
        lat[i] = min(loop.time() - target, args.timeout) if err[i] == "timeout" else loop.time() - target
        if conn is not None:
            pool.discard(conn)

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
    tasks = set()
    i = 0
    while i < n:
        now = loop.time()
        target = t0 + offsets[i]
        if target > now:
            await asyncio.sleep(target - now)
            now = loop.time()
        # Launch everything due (up to half a millisecond early).
        while i < n and t0 + offsets[i] <= now + 0.0005:
            tt = t0 + offsets[i]
            lag[i] = max(0.0, now - tt)
            task = loop.create_task(one(i, tt))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
    if tasks:
        await asyncio.wait(tasks)
    if event_tasks:
        await asyncio.wait(event_tasks)
    wall = loop.time() - t0
    for c in pool.idle:
        c.abort()

    ok = sum(1 for i in range(n) if err[i] is None and 200 <= status[i] < 300)
    lats = sorted(lat[i] for i in range(n) if lat[i] is not None and err[i] is None and 200 <= status[i] < 300)

    def pct(p):
        if not lats:
            return float("nan")
        return lats[min(len(lats) - 1, int(p / 100.0 * len(lats)))]

    lags = sorted(lag)
    summary = {
        "requests": n,
        "ok_2xx": ok,
        "errors": n - ok,
        "offered_rate": args.rate,
        "achieved_rate": n / args.duration if args.duration else 0,
        "ok_p50_ms": pct(50) * 1000,
        "ok_p99_ms": pct(99) * 1000,
        "ok_max_ms": (lats[-1] * 1000) if lats else float("nan"),
        "send_lag_p99_ms": lags[int(0.99 * (n - 1))] * 1000 if n else 0,
        "send_lag_max_ms": lags[-1] * 1000 if n else 0,
        "connections_peak": pool.peak,
        "connections_opened": pool.opened,
        "wall_s": wall,
        "outcomes": dict(
            Counter(
                (str(status[i]) if err[i] is None else err[i]) for i in range(n)
            )
        ),
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
