#!/usr/bin/env python3
"""Open N keep-alive connections to a proxy, send one request on each, read
the response, then hold them all idle and report the proxy's memory.

Prints one JSON object: how many connections were opened and answered, how
many were still open after the hold, and VmRSS/VmHWM (KiB) of each PID given,
read before the first connection and after the hold.

Bounded: every socket operation has a timeout, and the whole run stops after
--deadline seconds.
"""

import argparse
import json
import select
import socket
import sys
import time


def mem(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def read_response(sock):
    """Reads one HTTP/1.1 response (Content-Length or chunked)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside chunked body")
            body += chunk
    elif length is not None:
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside body")
            body += chunk
    return status


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--hold", type=float, default=5.0)
    p.add_argument("--pids", default="", help="comma-separated PIDs to measure")
    p.add_argument("--deadline", type=float, default=120.0)
    args = p.parse_args()

    pids = [int(x) for x in args.pids.split(",") if x]
    start = time.monotonic()
    before = {pid: mem(pid) for pid in pids}
    req = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: idle-conns\r\n\r\n"
    socks = []
    failed = 0
    non200 = 0
    for _ in range(args.n):
        if time.monotonic() - start > args.deadline:
            break
        try:
            s = socket.create_connection((args.host, args.port), timeout=5)
            s.sendall(req)
            if read_response(s) != 200:
                non200 += 1
            socks.append(s)
        except (OSError, ConnectionError, ValueError, IndexError):
            failed += 1
    opened = len(socks)
    opened_in = time.monotonic() - start
    time.sleep(max(0.0, min(args.hold, args.deadline - (time.monotonic() - start))))
    after = {pid: mem(pid) for pid in pids}

    # A socket the server closed is readable and reads b"" (poll, not
    # select: descriptors here go past FD_SETSIZE).
    closed = 0
    poller = select.poll()
    by_fd = {}
    for s in socks:
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    for fd, _ in poller.poll(0):
        s = by_fd[fd]
        try:
            s.setblocking(False)
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in socks:
        s.close()

    json.dump(
        {
            "requested": args.n,
            "opened": opened,
            "failed": failed,
            "non200": non200,
            "closed_by_server_during_hold": closed,
            "open_seconds": round(opened_in, 2),
            "hold_seconds": args.hold,
            "before": {str(k): v for k, v in before.items()},
            "after": {str(k): v for k, v in after.items()},
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
