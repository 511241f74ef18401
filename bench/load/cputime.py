#!/usr/bin/env python3
"""Runs a command and writes the CPU seconds it used (user + system, its
children included) to a file: how much of the one core a load generator
spent, so tools that both saturate the origin can still be compared by
CPU per request.

    cputime.py [--pids PID,PID,...] OUT_FILE COMMAND [ARGS...]

The file's first line is "total user system" for the command. With
--pids, a second line "pids PID,PID,... total user system" gives what those
processes (a proxy and its workers, every thread of each: utime and stime
of /proc/PID/stat) spent from just before the command started to just
after it ended (bench/run.sh divides it by the requests the load
generator completed). bench/benchlib.py parse_cputime reads the file.
"""
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import benchlib  # noqa: E402

args = sys.argv[1:]
pids = []
if args and args[0] == "--pids":
    pids = [int(p) for p in args[1].split(",") if p]
    args = args[2:]
out, cmd = args[0], args[1:]
before = benchlib.proc_cpu(pids)
code = subprocess.call(cmd)
after = benchlib.proc_cpu(pids)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write(f"{r.ru_utime + r.ru_stime:.3f} {r.ru_utime:.3f} {r.ru_stime:.3f}\n")
    if pids:
        u, s = after[0] - before[0], after[1] - before[1]
        f.write(f"pids {','.join(map(str, pids))} {u + s:.3f} {u:.3f} {s:.3f}\n")
sys.exit(code)
