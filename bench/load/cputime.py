#!/usr/bin/env python3
"""Runs a command and writes the CPU seconds it used (user + system, its
children included) to a file: how much of the one core a load generator
spent, so tools that both saturate the origin can still be compared by
CPU per request.

    cputime.py OUT_FILE COMMAND [ARGS...]
"""
import resource
import subprocess
import sys

out, cmd = sys.argv[1], sys.argv[2:]
code = subprocess.call(cmd)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write(f"{r.ru_utime + r.ru_stime:.3f} {r.ru_utime:.3f} {r.ru_stime:.3f}\n")
sys.exit(code)
