# Shell helpers shared by the benchmark scripts (bench/scenarios/run.sh,
# bench/overload/run.sh). Sourced; expects PIN (1: pin to a CPU) and PY (a
# python3) to be set by the caller.

pin() { # cpu, then the command. exec: started with `&`, $! is the command's
  # own pid (not a subshell's), so that stop_pid reaches it.
  local cpu="$1"; shift
  if [[ "$PIN" == 1 ]]; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

port_free() { # port
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

stop_pid() { # pid
  local pid="$1"
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

wait_port() { # port
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

http_get() { # url [timeout]: prints the body, fails on non-2xx
  "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())' "$1" "${2:-5}"
}
