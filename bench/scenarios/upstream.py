#!/usr/bin/env python3
"""Fault-injectable HTTP/1.1 upstreams for the reliability scenarios.

One process serves N endpoints (one listening port each) on one asyncio loop,
plus a control port. Each endpoint counts the requests it receives, keeping
the arrival time (time.monotonic(), the system-wide CLOCK_MONOTONIC that the
load generator also uses) of every one, and the client request's number from
its x-bench-id header (load.py sends it; -1 without it), so that upstream
requests can be related to client requests per phase.

With --process-per-endpoint, each endpoint is its own OS process (a child of
this one, which keeps the control port), so that one of them can be frozen
with SIGSTOP while the others go on: its sockets stay open, the kernel still
completes TCP handshakes into its backlog and buffers what is sent to it, and
nothing answers. After SIGCONT it reads everything that was buffered, so the
requests it was sent while frozen are counted then, with the arrival time of
the thaw but their x-bench-id.

Stdlib only. Endpoint behaviour ("mode"), switchable at run time:

  normal  200 with a small body, after an optional fixed latency (--latency-ms)
  503     503 to every request (health checks included)
  hang    accept connections and read requests, never answer
  dead    close the listening socket (connects are refused) and abort every
          open connection
  Going back to normal from dead listens again on the same port.

Requests for paths starting with /healthz count separately as health checks;
they follow the mode like every other request.

Control interface (HTTP/1.1 on --control-port, one request per connection;
the protocol and the request parsing are bench/benchlib.py's, shared with
bench/overload/upstream.py):

  GET /mode?ep=0&mode=dead     ep: an endpoint index, a comma list, or "all"
  GET /stats                   counts per endpoint (JSON)
  GET /dump                    counts and arrival times per endpoint (JSON)
  GET /reset                   forget counts and arrival times
  GET /quit                    exit
  GET /signal?ep=0&sig=STOP    send SIGSTOP or SIGCONT to the endpoint's
                               process (--process-per-endpoint only)

Usage: upstream.py --ports 29101,29102,29103 --control-port 29100
       [--process-per-endpoint --pidfile FILE]
"""

import argparse
import asyncio
import ctypes
import json
import os
import signal
import sys
import time
from array import array
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import Control, response_bytes, take_requests  # noqa: E402

MODES = ("normal", "503", "hang", "dead")


class Endpoint:
    def __init__(self, index, host, port, body, latency):
        self.index = index
        self.host = host
        self.port = port
        self.latency = latency
        self.mode = "normal"
        self.server = None
        self.conns = set()
        self.arrivals = array("d")  # proxied requests
        self.ids = array("q")  # their x-bench-id, -1 without one
        self.health = array("d")  # health checks
        self.answered = {200: 0, 503: 0}
        self.resp_ok = response_bytes(200, "OK", body)
        self.resp_503 = response_bytes(503, "Service Unavailable", b"unavailable\n")

    async def listen(self):
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: UpstreamConn(self), self.host, self.port, reuse_address=True, backlog=4096
        )

    def close_all(self):
        if self.server is not None:
            self.server.close()
            self.server = None
        for c in list(self.conns):
            c.transport.abort()
        self.conns.clear()

    async def set_mode(self, mode):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        old = self.mode
        self.mode = mode
        if mode == "dead":
            self.close_all()
        elif old == "dead":
            await self.listen()

    def stats(self):
        return {
            "index": self.index,
            "port": self.port,
            "mode": self.mode,
            "requests": len(self.arrivals),
            "health_checks": len(self.health),
            "answered_200": self.answered[200],
            "answered_503": self.answered[503],
            "open_connections": len(self.conns),
        }


class UpstreamConn(asyncio.Protocol):
    def __init__(self, ep):
        self.ep = ep
        self.buf = bytearray()
        self.hung = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.ep.conns.add(self)

    def connection_lost(self, exc):
        self.ep.conns.discard(self)

    def data_received(self, data):
        self.buf += data
        for path, headers, close in take_requests(self.buf, self.transport):
            try:
                bench_id = int(headers.get(b"x-bench-id", b"-1"))
            except ValueError:
                bench_id = -1
            self.handle(path, close, bench_id)

    def handle(self, path, close, bench_id):
        ep = self.ep
        now = time.monotonic()
        if path.startswith(b"/healthz"):
            ep.health.append(now)
        else:
            ep.arrivals.append(now)
            ep.ids.append(bench_id)
        if ep.mode == "hang":
            # Responses go out in order, so nothing after this one is answered
            # either, even once the endpoint is back to normal.
            self.hung = True
        if self.hung:
            return
        if ep.mode == "503":
            status, resp = 503, ep.resp_503
        else:
            status, resp = 200, ep.resp_ok
        if ep.latency > 0:
            asyncio.get_running_loop().call_later(ep.latency, self.respond, status, resp, close)
        else:
            self.respond(status, resp, close)

    def respond(self, status, resp, close):
        if self.transport.is_closing():
            return
        self.ep.answered[status] += 1
        self.transport.write(resp)
        if close:
            self.transport.close()


class App:
    def __init__(self, endpoints):
        self.endpoints = endpoints
        self.stop = asyncio.Event()

    def select(self, spec):
        if spec in ("all", "*"):
            return self.endpoints
        return [self.endpoints[int(x)] for x in spec.split(",")]

    async def control(self, target):
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        now = time.monotonic()
        if url.path == "/mode":
            eps = self.select(q.get("ep", "all"))
            for ep in eps:
                await ep.set_mode(q["mode"])
            return {"t": now, "endpoints": [ep.stats() for ep in self.endpoints]}
        if url.path == "/stats":
            return {"t": now, "endpoints": [ep.stats() for ep in self.endpoints]}
        if url.path == "/dump":
            out = []
            for ep in self.endpoints:
                s = ep.stats()
                s["arrivals"] = [round(x, 4) for x in ep.arrivals]
                s["ids"] = list(ep.ids)
                s["health_arrivals"] = [round(x, 4) for x in ep.health]
                out.append(s)
            return {"t": now, "endpoints": out}
        if url.path == "/reset":
            for ep in self.endpoints:
                ep.arrivals = array("d")
                ep.ids = array("q")
                ep.health = array("d")
                ep.answered = {200: 0, 503: 0}
            return {"t": now, "endpoints": [ep.stats() for ep in self.endpoints]}
        if url.path == "/quit":
            return {"t": now, "bye": True}
        raise ValueError(f"unknown control path {url.path}")


async def child_get(port, target, timeout=5.0):
    """GET target on a child's control port; its JSON body, or ValueError."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    writer.write(f"GET {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    doc = json.loads(body)
    if int(head.split(b" ", 2)[1]) != 200:
        raise ValueError(doc.get("error", "child control request failed"))
    return doc


class Child:
    """One endpoint served by its own process (--process-per-endpoint)."""

    def __init__(self, index, port, proc, control_port):
        self.index = index
        self.port = port
        self.proc = proc
        self.control_port = control_port
        self.frozen = False


class Supervisor:
    """The control port of --process-per-endpoint: forwards to the children,
    signals them, and merges what they report as if one process served all."""

    def __init__(self, children):
        self.children = children
        self.stop = asyncio.Event()

    def select(self, spec):
        if spec in ("all", "*"):
            return self.children
        return [self.children[int(x)] for x in spec.split(",")]

    def refuse_if_frozen(self):
        # A stopped process cannot answer: asking it would only time out.
        frozen = [c.index for c in self.children if c.frozen]
        if frozen:
            raise ValueError(f"endpoint {frozen[0]} is frozen (SIGSTOP); send sig=CONT first")

    async def gather(self, target):
        self.refuse_if_frozen()
        out = []
        for c in self.children:
            doc = await child_get(c.control_port, target)
            ep = doc["endpoints"][0]
            ep["index"] = c.index
            out.append(ep)
        return out

    async def control(self, target):
        url = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        now = time.monotonic()
        if url.path == "/signal":
            sig = {"STOP": signal.SIGSTOP, "CONT": signal.SIGCONT}.get(q.get("sig", ""))
            if sig is None:
                raise ValueError("sig must be STOP or CONT")
            targets = self.select(q.get("ep", "all"))
            for c in targets:
                os.kill(c.proc.pid, sig)
                c.frozen = sig == signal.SIGSTOP
            return {"t": now, "signal": q["sig"], "endpoints": [{"index": c.index, "pid": c.proc.pid} for c in targets]}
        if url.path == "/mode":
            self.refuse_if_frozen()
            for c in self.select(q.get("ep", "all")):
                await child_get(c.control_port, f"/mode?ep=0&mode={q['mode']}")
            return {"t": now, "endpoints": await self.gather("/stats")}
        if url.path in ("/stats", "/dump", "/reset"):
            return {"t": now, "endpoints": await self.gather(url.path)}
        if url.path == "/quit":
            return {"t": now, "bye": True}
        raise ValueError(f"unknown control path {url.path}")

    async def shutdown(self):
        # A stopped process keeps SIGTERM pending, so wake it first.
        for c in self.children:
            if c.proc.returncode is None:
                os.kill(c.proc.pid, signal.SIGCONT)
                c.proc.terminate()
        for c in self.children:
            try:
                await asyncio.wait_for(c.proc.wait(), 3.0)
            except asyncio.TimeoutError:
                c.proc.kill()
                await c.proc.wait()


def die_with_parent(parent_pid):
    """Linux: the kernel kills this process when its parent exits, so that a
    supervisor killed with SIGKILL leaves no endpoint behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        sys.exit(1)


async def start_children(args):
    children = []
    for i, port in enumerate(args.ports.split(",")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            os.path.abspath(__file__),
            "--host", args.host,
            "--ports", port,
            "--control-port", "0",
            "--latency-ms", str(args.latency_ms),
            "--body-bytes", str(args.body_bytes),
            "--child-of", str(os.getpid()),
            stdout=asyncio.subprocess.PIPE,
        )
        line = await asyncio.wait_for(proc.stdout.readline(), 10.0)
        if not line.startswith(b"ready "):
            raise RuntimeError(f"endpoint {i} (port {port}) did not start")
        children.append(Child(i, int(port), proc, int(line.split()[1])))
    return children


async def supervise(args):
    children = []
    try:
        children = await start_children(args)
        sup = Supervisor(children)
        if args.pidfile:
            with open(args.pidfile, "w") as f:
                f.write("".join(f"{c.proc.pid}\n" for c in children))
        loop = asyncio.get_running_loop()
        ctl = await loop.create_server(lambda: Control(sup), args.host, args.control_port, reuse_address=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sup.stop.set)
        print(
            f"upstream: endpoints {args.ports}, one process each "
            f"(pids {' '.join(str(c.proc.pid) for c in children)}), control {args.control_port}",
            file=sys.stderr,
            flush=True,
        )
        await sup.stop.wait()
        ctl.close()
    finally:
        await Supervisor(children).shutdown()


async def serve(args):
    body = (b"x" * max(0, args.body_bytes - 1)) + b"\n"
    endpoints = [
        Endpoint(i, args.host, int(p), body, args.latency_ms / 1000.0)
        for i, p in enumerate(args.ports.split(","))
    ]
    for ep in endpoints:
        await ep.listen()
    app = App(endpoints)
    loop = asyncio.get_running_loop()
    ctl = await loop.create_server(lambda: Control(app), args.host, args.control_port, reuse_address=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, app.stop.set)
    if args.child_of:
        # The supervisor reads the control port it should forward to.
        print(f"ready {ctl.sockets[0].getsockname()[1]}", flush=True)
    else:
        print(
            f"upstream: endpoints {args.ports} control {args.control_port} latency {args.latency_ms} ms",
            file=sys.stderr,
            flush=True,
        )
    await app.stop.wait()
    ctl.close()
    for ep in endpoints:
        ep.close_all()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ports", required=True, help="comma-separated endpoint ports")
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency of normal answers")
    ap.add_argument("--body-bytes", type=int, default=64, help="size of the 200 body")
    ap.add_argument(
        "--process-per-endpoint", action="store_true", help="serve each endpoint from its own child process"
    )
    ap.add_argument("--pidfile", help="with --process-per-endpoint: write the children's pids here")
    ap.add_argument("--child-of", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_of:
        die_with_parent(args.child_of)
    asyncio.run(supervise(args) if args.process_per_endpoint else serve(args))


if __name__ == "__main__":
    main()
