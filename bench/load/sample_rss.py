#!/usr/bin/env python3
"""Samples a process's memory from /proc/PID/status every INTERVAL seconds.

    sample_rss.py PID INTERVAL OUT.tsv

Writes "t_s<TAB>vmrss_kib<TAB>vmhwm_kib<TAB>threads" lines (t from the start
of sampling, the first sample at t=0) until the process is gone. Standard
library only; used by bench/load/run.sh.
"""
import sys
import time


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def kib(value):
    return int(value.split()[0]) if value else -1


def main():
    pid, interval, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    start = time.monotonic()
    n = 0
    with open(out, "w") as f:
        f.write("# t_s\tvmrss_kib\tvmhwm_kib\tthreads\n")
        while True:
            try:
                s = status(pid)
            except (FileNotFoundError, ProcessLookupError):
                break
            if s.get("State", "").startswith("Z"):
                break
            t = time.monotonic() - start
            f.write(f"{t:.1f}\t{kib(s.get('VmRSS'))}\t{kib(s.get('VmHWM'))}\t{s.get('Threads', '?')}\n")
            f.flush()
            n += 1
            # Sample on a fixed grid (0, 10, 20 s, ...) without drift.
            time.sleep(max(0.0, start + n * interval - time.monotonic()))


if __name__ == "__main__":
    main()
