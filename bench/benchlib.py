#!/usr/bin/env python3
"""Code shared by the benchmark harnesses (stdlib only, python3).

bench/run.sh and bench/report.py, bench/scenarios/* and bench/overload/*
import this module; each script puts bench/ on sys.path relative to its own
location, so it works from any working directory:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import benchlib

What lives here, and only here:

- percentile(): THE percentile of every report. Definition: nearest rank.
  Of n samples sorted ascending, the p-th percentile (0 < p <= 100) is the
  sample of 1-based rank ceil(p / 100 * n); p = 0 gives the smallest. No
  interpolation: the result is always one of the samples. Empty input gives
  NaN. percentile_hist() is the same rule over (value, count) pairs, for
  tools that only hand out a histogram (wrk). Callers pass latencies in
  seconds and convert the result for display (x 1000 for ms, x 1e6 for us).
- Parsers of what the tools and proxies write: wrk's text output and the
  histogram dumped by WRK_HIST_LUA, h2load's text output and --log-file,
  NGINX's error log, Levee's text log, HAProxy's "show stat" CSV (and
  reading it from the stats socket), Prometheus text (Levee's /metrics).
- CPU time: a process's user and system time from /proc/PID/stat (every
  thread), bench/load/cputime.py's file, CPU per request.
- The open-model HTTP/1.1 load generator's parts (bench/scenarios/load.py
  and bench/overload/load.py): the keep-alive connection and its response
  parser, the connection pool, the arrival schedule, one timed request with
  its error classification, the launch loop, and a one-shot control GET.
- The fault/capacity upstreams' parts (bench/scenarios/upstream.py and
  bench/overload/upstream.py): the request-head parser, splitting a byte
  stream into requests, and the JSON control protocol.

Command line (for the shell scripts):

  benchlib.py haproxy-stat SOCKET     print HAProxy's "show stat" CSV
  benchlib.py wrk-lua                 print the path of the wrk histogram script

Self-check: python3 -m unittest discover -s bench -p 'test_*.py'
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import socket
import sys
from collections import Counter
from typing import Awaitable, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

NAN = float("nan")
HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- percentiles


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest rank: the sample of 1-based rank ceil(p/100 * n) of the sorted
    values (the smallest for p = 0); NaN when there are none."""
    v = sorted(values)
    if not v:
        return NAN
    k = max(0, min(len(v) - 1, math.ceil(p / 100.0 * len(v)) - 1))
    return v[k]


def percentile_hist(pairs: Iterable[tuple[float, int]], p: float) -> float:
    """percentile() over a histogram: (value, count) pairs, any order, as if
    each value were repeated count times."""
    h = sorted((v, c) for v, c in pairs if c > 0)
    n = sum(c for _, c in h)
    if n == 0:
        return NAN
    rank = max(1, min(n, math.ceil(p / 100.0 * n)))
    seen = 0
    for v, c in h:
        seen += c
        if seen >= rank:
            return v
    return h[-1][0]


# ---------------------------------------------------------------- wrk, h2load

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}

# A wrk script whose done() writes wrk's latency histogram, "value_us count"
# per line, to $WRK_HIST (then "complete" or "incomplete" on the last line:
# it gives up after 20 s of CPU, see there).
WRK_HIST_LUA = os.path.join(HERE, "wrk_hist.lua")


def duration_s(text: str) -> float:
    """wrk's "1.23ms", "850.00us", "2.00s" -> seconds (NaN if unparsable)."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else NAN


def parse_wrk(text: str) -> dict:
    """wrk --latency output: requests/s, requests completed ("N requests
    in"; 0 when absent), errors (non-2xx/3xx and socket errors), and wrk's
    own percentiles in seconds (informational: reports use
    percentile_hist() over the WRK_HIST_LUA dump instead)."""
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    rps = float(m.group(1)) if m else NAN
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    requests = int(m.group(1)) if m else 0
    wrk_pct = {}
    for m in re.finditer(r"^\s+(50|75|90|99)(?:\.000)?%\s+(\S+)", text, re.M):
        wrk_pct[int(m.group(1))] = duration_s(m.group(2))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "requests": requests, "errors": errors, "wrk_pct": wrk_pct}


def parse_wrk_hist(text: str) -> tuple[list[tuple[float, int]], bool]:
    """The WRK_HIST_LUA dump -> ([(latency_s, count)], complete)."""
    pairs, complete = [], False
    for line in text.splitlines():
        parts = line.split()
        if parts == ["complete"]:
            complete = True
        elif len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            pairs.append((int(parts[0]) * 1e-6, int(parts[1])))
    return pairs, complete


def parse_h2load(text: str) -> dict:
    """h2load output: requests/s, requests done (after its warm-up; 0 when
    absent) and errors (failed, errored, timeout, 4xx, 5xx)."""
    m = re.search(r"finished in [0-9.]+\w*, ([0-9.]+) req/s", text)
    rps = float(m.group(1)) if m else NAN
    errors, requests = 0, 0
    m = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text
    )
    if m:
        requests = int(m.group(1))
        errors += sum(int(x) for x in m.groups()[1:])
    m = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "requests": requests, "errors": errors}


def parse_h2load_log(lines: Iterable[str]) -> list[float]:
    """h2load --log-file lines ("start_us<TAB>status<TAB>elapsed_us") ->
    latencies in seconds."""
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            try:
                out.append(float(parts[2]) * 1e-6)
            except ValueError:
                pass
    return out


# ---------------------------------------------------------------- CPU time


def parse_proc_stat(text: str) -> tuple[int, int]:
    """/proc/PID/stat -> (utime, stime) in clock ticks: the whole process,
    every thread (the live ones and those that have exited). The command
    name (field 2) may hold spaces and parentheses, so the fields are
    counted from the last ")": utime and stime are fields 14 and 15."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state).
    return int(rest[11]), int(rest[12])


def proc_cpu(pids: Iterable[int], proc: str = "/proc") -> tuple[float, float]:
    """(user, system) CPU seconds so far of the processes pids, summed; a
    process that is gone counts 0."""
    hz = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        try:
            with open(f"{proc}/{pid}/stat") as f:
                u, s = parse_proc_stat(f.read())
        except (OSError, ValueError, IndexError):
            continue
        user += u
        system += s
    return user / hz, system / hz


def parse_cputime(text: str) -> dict:
    """bench/load/cputime.py's file -> {"command": (total, user, system),
    "pids": (total, user, system) or None}, CPU seconds. The first line is
    the command's own (its children included); a second line "pids
    PID,PID total user system" is what the processes given with --pids
    spent while the command ran."""
    out = {"command": None, "pids": None}
    for line in text.splitlines():
        parts = line.split()
        try:
            if len(parts) == 3 and out["command"] is None:
                out["command"] = tuple(float(x) for x in parts)
            elif len(parts) == 5 and parts[0] == "pids":
                out["pids"] = tuple(float(x) for x in parts[2:])
        except ValueError:
            pass
    return out


def cpu_us_per_request(cpu_s: float, requests: float) -> float:
    """CPU microseconds per request; NaN without requests or CPU figure."""
    if not requests or requests <= 0 or cpu_s != cpu_s:
        return NAN
    return cpu_s * 1e6 / requests


# ---------------------------------------------------------------- proxy logs

NGINX_ERROR = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(\w+)\] (\d+)#(\d+): (?:\*(\d+) )?(.*)$")


def parse_nginx_error_line(line: str) -> dict | None:
    """One line of NGINX's error_log ("2026/12/04 00:04:47 [warn]
    3792#3792: *29 message, client: ...") -> {time, level, pid, conn,
    message}; None for anything else (continuation lines)."""
    m = NGINX_ERROR.match(line.rstrip("\n"))
    if not m:
        return None
    return {
        "time": m.group(1),
        "level": m.group(2),
        "pid": int(m.group(3)),
        "conn": int(m.group(5)) if m.group(5) else None,
        "message": m.group(6),
    }


def nginx_error_counts(path: str, patterns: Sequence[tuple[str, str]]) -> dict:
    """Count the lines of an NGINX error log whose message contains each
    (substring, label) of patterns (a line counts once per label it
    matches). {} when the file does not exist."""
    c: Counter = Counter()
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            for line in f:
                e = parse_nginx_error_line(line)
                if e is None:
                    continue
                for sub, label in patterns:
                    if sub in e["message"]:
                        c[label] += 1
    return dict(c)


LEVEE_LOG = re.compile(r"^(\S+Z)\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+([\w:]+): (.*)$")


def parse_levee_log_line(line: str) -> dict | None:
    """One line of Levee's text log (tracing's default format:
    "2026-12-04T00:04:09.790270Z  WARN levee_proxy::cluster: outlier
    ejected cluster=app ...") -> {time, level, target, message}; None for
    anything else (a panic's message, for example)."""
    m = LEVEE_LOG.match(line.rstrip("\n"))
    if not m:
        return None
    return {"time": m.group(1), "level": m.group(2), "target": m.group(3), "message": m.group(4)}


def levee_log_is_problem(line: str) -> bool:
    """An ERROR line or a panic."""
    if "panicked" in line:
        return True
    e = parse_levee_log_line(line)
    return e is not None and e["level"] == "ERROR"


# ---------------------------------------------------------------- HAProxy stats


def parse_haproxy_stat(text: str) -> list[dict]:
    """HAProxy's "show stat" CSV ("# pxname,svname,..." then one line per
    proxy and server) -> one dict per row, by column name (values as text)."""
    lines = [l for l in text.splitlines() if l]
    if not lines or not lines[0].startswith("# "):
        return []
    cols = lines[0][2:].split(",")
    return [dict(zip(cols, l.split(","))) for l in lines[1:]]


def read_haproxy_stat_file(path: str) -> list[dict] | None:
    """parse_haproxy_stat() of a saved file; None when missing or empty."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = parse_haproxy_stat(f.read())
    return rows or None


def haproxy_show_stat(sock_path: str, timeout: float = 5.0) -> str:
    """The "show stat" CSV, read from HAProxy's stats socket."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    return data.decode()


# ---------------------------------------------------------------- Prometheus

METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)")


def parse_metrics(lines: Iterable[str]) -> list[tuple[str, dict, float]]:
    """[(name, {label: value}, value)] from Prometheus text lines."""
    out = []
    for line in lines:
        if line.startswith("#"):
            continue
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(4))))
        except ValueError:
            pass
    return out


def metrics_file(path: str) -> list[tuple[str, dict, float]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return parse_metrics(f.read().splitlines())


def msum(metrics, name: str, **want: str) -> float:
    """Sum of the samples of metric `name` whose labels include `want`."""
    return sum(v for n, l, v in metrics if n == name and all(l.get(k) == x for k, x in want.items()))


# ---------------------------------------------------------------- load generator


class ProtocolError(Exception):
    pass


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


class Pool:
    """Keep-alive connections to one host:port, at most max_conns open."""

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

    async def warm(self, n: int) -> None:
        """Open n idle connections, so the first second does not measure connects."""
        warm = []
        for _ in range(n):
            try:
                warm.append(await self.connect())
            except OSError as e:
                print(f"load: warm-up connect failed: {e}", file=sys.stderr)
                break
        self.idle.extend(warm)

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

    def close_idle(self):
        for c in self.idle:
            c.abort()


def schedule(rate: float, duration: float, kind: str, seed: int) -> list[float]:
    """Send offsets (s) over [0, duration): Poisson arrivals at `rate` per
    second (fixed seed), or evenly spaced ("uniform")."""
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


async def timed_request(pool: Pool, data: bytes, target: float, timeout: float) -> tuple[int, str | None, float]:
    """Send data on a pooled connection; the request was scheduled at loop
    time `target` and must be complete by target + timeout. Returns (status,
    error, latency s from target). status is 0 and error one of "timeout",
    "refused", "protocol", "closed", "connect" when no response arrived;
    errors keep their time to failure (the client timeout for timeouts)."""
    loop = asyncio.get_running_loop()
    conn = None

    async def attempt():
        nonlocal conn
        conn = await pool.acquire()
        return await conn.send(data)

    try:
        remaining = target + timeout - loop.time()
        st = await asyncio.wait_for(attempt(), max(remaining, 0.001))
        lat = loop.time() - target
        pool.release(conn)
        return st, None, lat
    except asyncio.TimeoutError:
        err = "timeout"
    except ConnectionRefusedError:
        err = "refused"
    except ProtocolError:
        err = "protocol"
    except ConnectionResetError:
        err = "closed"
    except OSError:
        err = "connect" if conn is None else "closed"
    lat = min(loop.time() - target, timeout) if err == "timeout" else loop.time() - target
    if conn is not None:
        pool.discard(conn)
    return 0, err, lat


async def launch(offsets: Sequence[float], t0: float, one: Callable[[int, float], Awaitable[None]], lag: list) -> None:
    """The open-model loop: start one(i, t0 + offsets[i]) at its scheduled
    time whatever happened to earlier requests (everything due, up to half a
    millisecond early, at once), record each send lag (s) in lag[i], and
    wait for all of them."""
    loop = asyncio.get_running_loop()
    tasks: set = set()
    n = len(offsets)
    i = 0
    while i < n:
        now = loop.time()
        target = t0 + offsets[i]
        if target > now:
            await asyncio.sleep(target - now)
            now = loop.time()
        while i < n and t0 + offsets[i] <= now + 0.0005:
            tt = t0 + offsets[i]
            lag[i] = max(0.0, now - tt)
            task = loop.create_task(one(i, tt))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
    if tasks:
        await asyncio.wait(tasks)


async def control_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """One GET on its own connection (control requests, metrics): (status, body)."""
    u = urlsplit(url)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port or 80), timeout)
    target = u.path + ("?" + u.query if u.query else "")
    writer.write(f"GET {target} HTTP/1.1\r\nhost: {u.netloc}\r\nconnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), timeout)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode("utf-8", "replace")


def outcome(status: int, err: str | None) -> str:
    """A request's outcome as reports count it: its status, or its error."""
    return str(status) if err is None else err


# ---------------------------------------------------------------- upstream servers

MAX_HEAD = 64 * 1024


def parse_head(head: bytes) -> tuple[bytes, bytes, bytes, dict]:
    """(method, path, version, headers dict with lower-case names) from a request head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    method = parts[0] if parts else b""
    path = parts[1] if len(parts) > 1 else b"/"
    version = parts[2] if len(parts) > 2 else b"HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        k, sep, v = line.partition(b":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return method, path, version, headers


def take_requests(buf: bytearray, transport) -> Iterator[tuple[bytes, dict, bool]]:
    """Take the complete requests (head and Content-Length body) out of buf
    one by one, yielding (path, headers, close) for each; aborts the
    transport when an incomplete head grows past MAX_HEAD."""
    while True:
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            if len(buf) > MAX_HEAD:
                transport.abort()
            return
        _, path, version, headers = parse_head(bytes(buf[:i]))
        try:
            clen = int(headers.get(b"content-length", b"0"))
        except ValueError:
            clen = 0
        total = i + 4 + clen
        if len(buf) < total:
            return
        del buf[:total]
        close = headers.get(b"connection", b"").lower() == b"close" or version == b"HTTP/1.0"
        yield path, headers, close


def response_bytes(status: int, reason: str, body: bytes, ctype: str = "text/plain") -> bytes:
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
    )


class Control(asyncio.Protocol):
    """The upstreams' control port: one GET per connection, answered with
    the JSON of `await app.control(target)` (400 and {"error"} when it
    raises); /quit sets app.stop shortly after answering."""

    def __init__(self, app):
        self.app = app
        self.buf = bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            return
        _, path, _, _ = parse_head(bytes(self.buf[:i]))
        asyncio.get_running_loop().create_task(self.answer(path.decode("latin-1")))

    async def answer(self, target):
        try:
            status, body = 200, await self.app.control(target)
        except Exception as e:  # noqa: BLE001 - reported to the caller
            status, body = 400, {"error": str(e)}
        data = json.dumps(body).encode()
        reason = b"OK" if status == 200 else b"Bad Request"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % (status, reason, len(data))
            + data
        )
        self.transport.close()
        if target.startswith("/quit"):
            asyncio.get_running_loop().call_later(0.05, self.app.stop.set)


# ---------------------------------------------------------------- command line


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "haproxy-stat":
        sys.stdout.write(haproxy_show_stat(argv[1]))
        return 0
    if len(argv) == 1 and argv[0] == "wrk-lua":
        print(WRK_HIST_LUA)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
