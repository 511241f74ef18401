#!/usr/bin/env bash
# `levee load` against wrk and h2load (issue 14): rate accuracy, maximum rate
# on one core, latency with a stalled origin, memory over a long run. One
# NGINX origin (`return 200 "ok"`, 1 worker) pinned to CPU 1; every load
# generator pinned to CPU 0, one after the other, never two at once.
# Everything on 127.0.0.1; every run bounded in time.
#
#   bash bench/load/run.sh                         # all phases, ~18 min
#   PHASES="rate max stall" bash bench/load/run.sh # skip the 10-minute memory run
#   QUICK=1 bash bench/load/run.sh                 # smoke test: 2 s runs, 1 round, 30 s memory run
#
# Phases (in this order, sequential):
#   mem    levee load --rate 5000 --duration 600s; VmRSS sampled every 10 s
#   rate   levee load --rate R --duration 10s, h2load --h1 -c64 --rps R/64 -D 10 and
#          oha -q R -c 64 -z 10s --latency-correction, R in RATES (1000 10000 20000),
#          ROUNDS rounds, tools rotating
#   h2int  h2load again at RATES with a whole per-client rate (-c 50 --rps R/50),
#          to tell h2load's own error from that of a fractional --rps, ROUNDS rounds
#   max    wrk -t1 -c64 -d10s, h2load --h1 -t1 -c64 -D 10, oha -c 64 -z 10s,
#          levee load --vus 64, ROUNDS rounds
#   stall  the NGINX worker stopped (SIGSTOP) 1 s every 10 s during 30 s at
#          about 2,000 req/s: levee load --rate 2000, wrk -c64 paced with a
#          32 ms delay (closed loop), h2load --h1 -c64 --rps 31.25, oha -q 2000
#          -c 64 with and without --latency-correction
#
# oha is not in Debian: OHA names its binary (default: `oha` on the PATH,
# else /tmp/oha-install/bin/oha, where `cargo install oha --root
# /tmp/oha-install` puts it); without one its rows are left out.
#
# Knobs (environment): PHASES, ROUNDS (3), DURATION (10, seconds), RATES,
# MEM_RATE (5000), MEM_DURATION (600), STALL_DURATION (30), MAX_IN_FLIGHT
# (4096: at 2,000 req/s a 1 s stall holds ~2,000 requests in flight, so none
# is dropped), PORT_BASE (29500), LEVEE_BIN (default /tmp/levee-load-bench,
# else target/release/levee), LOAD_OUT (raw outputs, default
# /tmp/levee-load-out), LEVEE_REV (the commit the binary was built from, for
# meta.txt; default: the tree's HEAD), SKIP_INSTALL=1. Shell helpers come
# from bench/lib.sh; the tables from bench/load/report.py.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  ROUNDS="${ROUNDS:-1}"; DURATION="${DURATION:-2}"; MEM_DURATION="${MEM_DURATION:-30}"
  STALL_DURATION="${STALL_DURATION:-12}"
else
  ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-10}"; MEM_DURATION="${MEM_DURATION:-600}"
  STALL_DURATION="${STALL_DURATION:-30}"
fi
PHASES="${PHASES:-mem rate h2int max stall}"
RATES="${RATES:-1000 10000 20000}"
MEM_RATE="${MEM_RATE:-5000}"
MAX_IN_FLIGHT="${MAX_IN_FLIGHT:-4096}"
PORT_BASE="${PORT_BASE:-29500}"
ORIGIN_PORT=$((PORT_BASE + 1))
URL="http://127.0.0.1:$ORIGIN_PORT/"
OUT="${LOAD_OUT:-/tmp/levee-load-out}"
PIN=1
GEN_CPU=0      # load generators
ORIGIN_CPU=1   # the origin (and the stall driver, which only sleeps)
want() { [[ " $PHASES " == *" $1 "* ]]; }

LOG_TAG=load PY=python3
# log, die, have, install_missing, pin, stop_pid, wait_port, versions, machine_line
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

need=()
have nginx || need+=("$NGINX_PKG")
have wrk || need+=(wrk)
have h2load || need+=(nghttp2-client)
have taskset || need+=(util-linux)
install_missing strict "${need[@]}"

OHA="${OHA:-$(command -v oha || echo /tmp/oha-install/bin/oha)}"
if [[ ! -x "$OHA" ]]; then
  log "oha not found (cargo install oha --root /tmp/oha-install); its rows are left out"
  OHA=""
fi
oha_run() { # name, seconds, oha args...: JSON to name.json
  local name="$1" secs="$2"; shift 2
  [[ -n "$OHA" ]] || return 0
  bounded "$secs" "$OHA" --no-tui --output-format json -o "$name.json" "$@" "$URL" \
    >"$name.txt" 2>&1 || log "oha exited $?"
}

if [[ -z "${LEVEE_BIN:-}" ]]; then
  if [[ -x /tmp/levee-load-bench ]]; then LEVEE_BIN=/tmp/levee-load-bench
  else LEVEE_BIN="$ROOT/target/release/levee"; fi
fi
[[ -x "$LEVEE_BIN" ]] || die "no levee binary at $LEVEE_BIN (cargo build --release -p levee)"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

rm -rf "$OUT"
mkdir -p "$OUT"/{run,rate,h2int,max,stall,mem}
ports_free "$ORIGIN_PORT"

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  machine_line
  echo "nginx: $(nginx_version); $(wrk_version); h2load: $(h2load_version); oha: ${OHA:+$("$OHA" --version)}"
  echo "levee: $(levee_rev), binary $LEVEE_BIN"
  echo "phases: $PHASES; rounds $ROUNDS; duration ${DURATION}s; max-in-flight $MAX_IN_FLIGHT"
  echo "loadavg at start: $(loadavg)"
} | tee "$OUT/meta.txt" >&2

# ---------------------------------------------------------------- origin
cat >"$OUT/run/origin.conf" <<CONF
$NGINX_USER
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $OUT/run/origin.pid;
error_log $OUT/run/origin.error.log warn;
daemon off;
events { worker_connections $((NOFILE - 100)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path $OUT/run/tmp-body;
  proxy_temp_path $OUT/run/tmp-proxy;
  fastcgi_temp_path $OUT/run/tmp-fastcgi;
  uwsgi_temp_path $OUT/run/tmp-uwsgi;
  scgi_temp_path $OUT/run/tmp-scgi;
  server {
    listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
    location = / { default_type text/plain; return 200 "ok"; }
  }
}
CONF

ORIGIN_PID=""
WORKER_PID=""
cleanup() {
  # A stopped worker never exits: continue it before stopping the master.
  if [[ -n "$WORKER_PID" ]]; then kill -CONT "$WORKER_PID" 2>/dev/null || true; fi
  stop_pid "$ORIGIN_PID"
}
set_cleanup_traps

(pin "$ORIGIN_CPU" nginx -c "$OUT/run/origin.conf" -p "$OUT/run") &
ORIGIN_PID=$!
wait_port "$ORIGIN_PORT" || die "origin did not start (see $OUT/run/origin.error.log)"
wait_answers "$URL" 3 || die "origin does not answer"
for _ in $(seq 50); do
  WORKER_PID=$(pgrep -P "$ORIGIN_PID" | head -1 || true)
  [[ -n "$WORKER_PID" ]] && break
  sleep 0.1
done
[[ -n "$WORKER_PID" ]] || die "no NGINX worker under $ORIGIN_PID"
log "origin: master $ORIGIN_PID, worker $WORKER_PID (CPU $ORIGIN_CPU), $URL"

# Each run is bounded: its own duration plus a margin, then killed.
bounded() { # seconds, command...: timeout, pinned to the generators' CPU
  local secs="$1"; shift
  timeout -k 5 "$secs" taskset -c "$GEN_CPU" "$@"
}

levee_load() { # name, levee load args...: json to name.json, output to name.txt
  local name="$1"; shift
  bounded 1200 "$LEVEE_BIN" load "$URL" --out "json=$name.json" "$@" >"$name.txt" 2>"$name.err" || {
    local rc=$?
    log "levee load $* exited $rc (see $name.err)"
  }
}

# ---------------------------------------------------------------- mem
if want mem; then
  log "mem: levee load --rate $MEM_RATE --duration ${MEM_DURATION}s, VmRSS every 10 s"
  taskset -c "$GEN_CPU" timeout -k 5 $((MEM_DURATION + 60)) "$LEVEE_BIN" load "$URL" \
    --rate "$MEM_RATE" --duration "${MEM_DURATION}s" --max-in-flight "$MAX_IN_FLIGHT" \
    --out "json=$OUT/mem/levee.json" >"$OUT/mem/levee.txt" 2>"$OUT/mem/levee.err" &
  LOAD_PID=$!   # timeout's pid (taskset execs it); levee load is its child
  LEVEE_PID=""
  for _ in $(seq 50); do
    LEVEE_PID=$(pgrep -P "$LOAD_PID" | head -1 || true)
    [[ -n "$LEVEE_PID" ]] && break
    sleep 0.1
  done
  [[ -n "$LEVEE_PID" ]] || die "mem: levee load did not start"
  log "mem: levee load pid $LEVEE_PID ($(readlink "/proc/$LEVEE_PID/exe" || echo '?'))"
  # The sampler on the origin's CPU: one /proc read every 10 s.
  taskset -c "$ORIGIN_CPU" python3 "$HERE/sample_rss.py" "$LEVEE_PID" 10 "$OUT/mem/rss.tsv" &
  SAMPLER_PID=$!
  wait "$LOAD_PID" || log "mem: levee load exited $?"
  wait "$SAMPLER_PID" || true
  log "mem: done, loadavg $(loadavg)"
fi

# ---------------------------------------------------------------- rate
if want rate; then
  for round in $(seq "$ROUNDS"); do
    for rate in $RATES; do
      per_conn=$(python3 -c "print($rate / 64)")
      # Rotate which tool goes first, so a drift in machine load is shared.
      order="levee h2load oha"
      ((round % 3 == 2)) && order="h2load oha levee"
      ((round % 3 == 0)) && order="oha levee h2load"
      for tool in $order; do
        log "rate: round $round, $rate req/s, $tool"
        if [[ $tool == levee ]]; then
          levee_load "$OUT/rate/levee-$rate-r$round" --rate "$rate" --duration "${DURATION}s" \
            --max-in-flight "$MAX_IN_FLIGHT"
        elif [[ $tool == oha ]]; then
          oha_run "$OUT/rate/oha-$rate-r$round" $((DURATION + 30)) -q "$rate" -c 64 -z "${DURATION}s" \
            --latency-correction
        else
          bounded $((DURATION + 30)) h2load --h1 -c 64 -t 1 --rps "$per_conn" -D "$DURATION" \
            --log-file "$OUT/rate/h2load-$rate-r$round.log" "$URL" >"$OUT/rate/h2load-$rate-r$round.txt" 2>&1 ||
            log "h2load exited $?"
        fi
      done
    done
  done
  log "rate: done, loadavg $(loadavg)"
fi

# ---------------------------------------------------------------- h2int
if want h2int; then
  for round in $(seq "$ROUNDS"); do
    for rate in $RATES; do
      log "h2int: round $round, $rate req/s, h2load -c 50 --rps $((rate / 50))"
      bounded $((DURATION + 30)) h2load --h1 -c 50 -t 1 --rps $((rate / 50)) -D "$DURATION" \
        --log-file "$OUT/h2int/h2load-$rate-r$round.log" "$URL" >"$OUT/h2int/h2load-$rate-r$round.txt" 2>&1 ||
        log "h2load exited $?"
    done
  done
  log "h2int: done, loadavg $(loadavg)"
fi

# ---------------------------------------------------------------- max
ORIGIN_TICKS=0
origin_cpu() { # the worker's CPU share since the last call, from /proc (utime+stime)
  local now ticks
  now=$(date +%s.%N)
  ticks=$(awk '{print $14 + $15}' "/proc/$WORKER_PID/stat")
  if [[ -n "${ORIGIN_AT:-}" ]]; then
    python3 -c "print(f'{100 * ($ticks - $ORIGIN_TICKS) / $(getconf CLK_TCK) / ($now - $ORIGIN_AT):.0f}%')"
  fi
  ORIGIN_TICKS=$ticks ORIGIN_AT=$now
}
if want max; then
  origin_cpu >/dev/null
  for round in $(seq "$ROUNDS"); do
    order="wrk h2load oha levee"
    ((round % 3 == 2)) && order="h2load levee wrk oha"
    ((round % 3 == 0)) && order="levee oha wrk h2load"
    for tool in $order; do
      log "max: round $round, $tool"
      # The origin may be what limits the rate (its one worker busy all
      # the time), so each tool's CPU time is kept too: CPU per request.
      cpu="python3 $HERE/cputime.py $OUT/max/$tool-r$round.cpu"
      case $tool in
        wrk) WRK_DELAY_MS=0 bounded $((DURATION + 30)) $cpu wrk -t1 -c64 -d"${DURATION}s" -s "$HERE/wrk_stats.lua" "$URL" \
               >"$OUT/max/wrk-r$round.txt" 2>&1 || log "wrk exited $?" ;;
        h2load) bounded $((DURATION + 30)) $cpu h2load --h1 -t1 -c64 -D "$DURATION" \
                  --log-file "$OUT/max/h2load-r$round.log" "$URL" >"$OUT/max/h2load-r$round.txt" 2>&1 ||
                  log "h2load exited $?" ;;
        levee) bounded $((DURATION + 30)) $cpu "$LEVEE_BIN" load "$URL" --vus 64 --duration "${DURATION}s" \
                 --out "json=$OUT/max/levee-r$round.json" >"$OUT/max/levee-r$round.txt" 2>"$OUT/max/levee-r$round.err" ||
                 log "levee load exited $?" ;;
        oha) [[ -n "$OHA" ]] && { bounded $((DURATION + 30)) $cpu "$OHA" --no-tui --output-format json \
               -o "$OUT/max/oha-r$round.json" -c 64 -z "${DURATION}s" "$URL" >"$OUT/max/oha-r$round.txt" 2>&1 ||
               log "oha exited $?"; } ;;
      esac
      log "max: origin worker CPU over the run: $(origin_cpu)"
    done
  done
  log "max: done, loadavg $(loadavg)"
fi

# ---------------------------------------------------------------- stall
stall_driver() { # seconds: SIGSTOP the worker 1 s at 5 s, 15 s, 25 s, ...
  local end=$(($(date +%s) + $1)) t=5
  sleep 5
  while (($(date +%s) + 1 < end)); do
    printf '%s STOP\n' "$(date +%s.%N)" >>"$OUT/stall/stalls.log"
    kill -STOP "$WORKER_PID"
    sleep 1
    kill -CONT "$WORKER_PID"
    printf '%s CONT\n' "$(date +%s.%N)" >>"$OUT/stall/stalls.log"
    t=$((t + 10))
    sleep 9
  done
}

stalled() { # tool, command...: run it while the driver stalls the origin
  local tool="$1"; shift
  log "stall: $tool"
  echo "# $tool" >>"$OUT/stall/stalls.log"
  (pin "$ORIGIN_CPU" bash -c "$(declare -f stall_driver); OUT='$OUT' WORKER_PID=$WORKER_PID stall_driver $STALL_DURATION") &
  local driver=$!
  "$@" || log "$tool exited $?"
  wait "$driver" || true
  kill -CONT "$WORKER_PID" 2>/dev/null || true
  sleep 2   # let the origin drain its backlog before the next tool
}

if want stall; then
  : >"$OUT/stall/stalls.log"
  stalled levee levee_load "$OUT/stall/levee" --rate 2000 --duration "${STALL_DURATION}s" \
    --max-in-flight "$MAX_IN_FLIGHT"
  stalled wrk env WRK_DELAY_MS=32 timeout -k 5 $((STALL_DURATION + 30)) taskset -c "$GEN_CPU" \
    wrk -t1 -c64 -d"${STALL_DURATION}s" --timeout 10s -s "$HERE/wrk_stats.lua" "$URL" \
    >"$OUT/stall/wrk.txt" 2>&1
  stalled h2load bounded $((STALL_DURATION + 30)) h2load --h1 -c 64 -t 1 --rps 31.25 -D "$STALL_DURATION" \
    --log-file "$OUT/stall/h2load.log" "$URL" >"$OUT/stall/h2load.txt" 2>&1
  if [[ -n "$OHA" ]]; then
    stalled oha-corrected oha_run "$OUT/stall/oha-corrected" $((STALL_DURATION + 30)) -q 2000 -c 64 \
      -z "${STALL_DURATION}s" --latency-correction
    stalled oha oha_run "$OUT/stall/oha" $((STALL_DURATION + 30)) -q 2000 -c 64 -z "${STALL_DURATION}s"
  fi
  log "stall: done, loadavg $(loadavg)"
fi

echo "loadavg at end: $(loadavg)" >>"$OUT/meta.txt"
python3 "$HERE/report.py" "$OUT" | tee "$OUT/summary.md"
log "raw outputs in $OUT"
