#!/usr/bin/env bash
# Burst benchmark (issue 16): a burst of 10x the upstream's capacity for
# 30 s, through Levee's async route (the embedded queue, durability fsync
# and os), NGINX (limit_req with a burst queue) and HAProxy (the server
# queue, bounded, with timeout queue), each in front of the same upstream
# of fixed capacity that records every Idempotency-Key; then how many jobs
# per second an async route accepts when nothing drains (embedded fsync and
# os; JetStream with three gateways when the binary has that backend).
# Everything on 127.0.0.1. See RELIABILITY.md ("Burst absorption").
#
#   bash bench/async/run.sh             # full run: about 21 min + build (each Levee drain is ~5 min)
#   QUICK=1 bash bench/async/run.sh     # smoke run: 10 s burst, 4 s accept runs, about 8 min
#   QUICK=1 BURST_PROXIES="levee nginx" ACCEPT_BACKENDS=fsync SKIP_INSTALL=1 \
#     LEVEE_BIN=path bash bench/async/run.sh   # shortest check
#
# Knobs (environment):
#   CONCURRENCY=4 SERVICE_MS=20   the upstream: requests at once, service time
#                                 (capacity C = CONCURRENCY / SERVICE_MS = 200/s)
#   LOAD=10 BURST_SECONDS=30      the burst: LOAD x C requests per second (Poisson)
#   BODY_BYTES=256                each request's POST body
#   CLIENT_TIMEOUT=60             a client's patience, per request (s)
#   QUEUE_WAIT=30                 longest wait in NGINX's and HAProxy's queue (s):
#                                 NGINX burst and HAProxy's queue bound = C x QUEUE_WAIT
#   UPSTREAM_TIMEOUT=10s          every proxy's wait for the upstream's answer
#   BURST_PROXIES="levee levee-os levee-jetstream nginx haproxy"
#                                 levee: durability fsync; levee-os: durability os;
#                                 levee-jetstream: three gateways on one nats-server
#                                 (only when the binary has the backend)
#   CLUSTER_LIMIT=CONCURRENCY     Levee's fixed concurrency limit on the cluster (a
#                                 value above CONCURRENCY lets the upstream hold a
#                                 short queue of its own, as NGINX's pacing does)
#   ROUTE_CONCURRENCY=64          the async route's `concurrency` (deliveries in flight
#                                 per gateway; 64 is the default)
#   DRAIN_MAX=900                 longest wait for a drain (s)
#   CALIBRATE=1                   first measure the upstream's real ceiling, alone
#   ACCEPT=1                      run the accept-rate part (0: skip)
#   ACCEPT_BACKENDS="fsync os jetstream"
#   ACCEPT_SECONDS=10 ACCEPT_CONNS=64   wrk -t1 -c ACCEPT_CONNS for that long
#   ACCEPT_WORKERS=1              Levee's worker_threads in the accept part
#   ACCEPT_ROUNDS=3               runs per backend (the report gives the median)
#   SEED=1                        the burst's schedule
#   PIN=1                         proxies, upstream and nats-server on CPU 0,
#                                 load generators on CPU 1
#   PORT_BASE=31000               ports PORT_BASE+0..+999 (bench/overload uses 30000)
#   LEVEE_BIN=path                skip the build (LEVEE_REV=text describes it)
#   SKIP_INSTALL=1                do not apt-get nginx, haproxy, wrk, nats-server
#   BURST_OUT=dir                 output directory (default bench/async/out)
# Raw outputs go to bench/async/out/ (gitignored); the Markdown tables are
# printed at the end and written to out/summary.md; report.py recomputes them.
# Shared code: bench/lib.sh, bench/benchlib.py, bench/overload/upstream.py
# (the upstream) and bench/overload/load.py (the metrics sampler).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AS="$ROOT/bench/async"
OV="$ROOT/bench/overload"
OUT="${BURST_OUT:-$AS/out}"
QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  BURST_SECONDS="${BURST_SECONDS:-10}"; ACCEPT_SECONDS="${ACCEPT_SECONDS:-4}"
else
  BURST_SECONDS="${BURST_SECONDS:-30}"; ACCEPT_SECONDS="${ACCEPT_SECONDS:-10}"
fi
CONCURRENCY="${CONCURRENCY:-4}"
CLUSTER_LIMIT="${CLUSTER_LIMIT:-$CONCURRENCY}"
ROUTE_CONCURRENCY="${ROUTE_CONCURRENCY:-64}"
SERVICE_MS="${SERVICE_MS:-20}"
LOAD="${LOAD:-10}"
BODY_BYTES="${BODY_BYTES:-256}"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-60}"
QUEUE_WAIT="${QUEUE_WAIT:-30}"
UPSTREAM_TIMEOUT="${UPSTREAM_TIMEOUT:-10s}"
BURST_PROXIES="${BURST_PROXIES-levee levee-os levee-jetstream nginx haproxy}"
DRAIN_MAX="${DRAIN_MAX:-900}"
CALIBRATE="${CALIBRATE:-1}"
ACCEPT="${ACCEPT:-1}"
ACCEPT_BACKENDS="${ACCEPT_BACKENDS-fsync os jetstream}"
ACCEPT_CONNS="${ACCEPT_CONNS:-64}"
ACCEPT_WORKERS="${ACCEPT_WORKERS:-1}"
ACCEPT_ROUNDS="${ACCEPT_ROUNDS:-3}"
SEED="${SEED:-1}"
PIN="${PIN:-1}"
PORT_BASE="${PORT_BASE:-31000}"

PROXY_PORT=$((PORT_BASE + 0))
LEVEE_ADMIN_PORT=$((PORT_BASE + 901))
CTL_PORT=$((PORT_BASE + 100))
UP=$((PORT_BASE + 101))
NATS_PORT=$((PORT_BASE + 422))

LOG_TAG=burst PY=python3
# log, die, install_missing, levee_bin, ports_free, port_free, wait_port,
# wait_answers, http_get, pin, stop_pid, set_cleanup_traps, haproxy_*,
# versions, machine_line
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

for p in $BURST_PROXIES; do
  case "$p" in levee|levee-os|levee-jetstream|nginx|haproxy) ;;
    *) die "unknown proxy $p (levee levee-os levee-jetstream nginx haproxy)";; esac
done
[[ "$ACCEPT" == 1 ]] && for b in $ACCEPT_BACKENDS; do
  case "$b" in fsync|os|jetstream) ;; *) die "unknown accept backend $b (fsync os jetstream)";; esac
done

CAPACITY=$(python3 -c "print(round($CONCURRENCY * 1000 / $SERVICE_MS, 3))")
RATE=$(python3 -c "print(round($CAPACITY * $LOAD, 3))")
NGINX_RATE="$(python3 -c "print(round($CAPACITY))")r/s"
BURST=$(python3 -c "print(round($CAPACITY * $QUEUE_WAIT))")
# Levee's queue must hold the whole burst (docs/async.md: max_jobs, default 100000).
MAX_JOBS=$(python3 -c "print(max(100000, round($RATE * $BURST_SECONDS * 1.2)))")

# Thousands of clients wait at once in NGINX's and HAProxy's queues: each
# holds a descriptor in the generator and in the proxy (HAProxy reserves two
# per connection for its maxconn).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
MAXCONN=$((BURST + 3000))
((2 * MAXCONN + 200 <= NOFILE)) ||
  die "ulimit -n is $NOFILE: HAProxy needs $((2 * MAXCONN + 200)) for a queue of $BURST (lower QUEUE_WAIT)"

# ---------------------------------------------------------------- tools
wants_proxy() { [[ " $BURST_PROXIES " == *" $1 "* ]]; }
wants_accept() { [[ "$ACCEPT" == 1 && " $ACCEPT_BACKENDS " == *" $1 "* ]]; }
need=()
wants_proxy nginx && ! have nginx && need+=("$NGINX_PKG")
wants_proxy haproxy && ! have haproxy && need+=(haproxy)
[[ "$ACCEPT" == 1 ]] && ! have wrk && need+=(wrk)
have python3 || need+=(python3)
[[ "$PIN" == 1 ]] && ! have taskset && need+=(util-linux)
install_missing strict "${need[@]}"
if { wants_proxy levee-jetstream || wants_accept jetstream; } && ! have nats-server; then
  install_missing lenient nats-server
fi

levee_bin

# ---------------------------------------------------------------- layout
RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW"
ports_free $PROXY_PORT $((PROXY_PORT + 1)) $((PROXY_PORT + 2)) $LEVEE_ADMIN_PORT $((LEVEE_ADMIN_PORT + 1)) \
  $((LEVEE_ADMIN_PORT + 2)) $CTL_PORT $UP $NATS_PORT

JOBS_SECTION=""
WORKERS=1
render() { # template run-dir [proxy-port admin-port]
  sed -e "s|@RUN@|$2|g" -e "s|@PROXY_PORT@|${3:-$PROXY_PORT}|g" -e "s|@LEVEE_ADMIN_PORT@|${4:-$LEVEE_ADMIN_PORT}|g" \
    -e "s|@UP@|$UP|g" -e "s|@NGINX_USER@|$NGINX_USER|g" -e "s|@CONCURRENCY@|$CONCURRENCY|g" \
    -e "s|@CLUSTER_LIMIT@|$CLUSTER_LIMIT|g" -e "s|@ROUTE_CONCURRENCY@|$ROUTE_CONCURRENCY|g" -e "s|@UPSTREAM_TIMEOUT@|$UPSTREAM_TIMEOUT|g" -e "s|@QUEUE_WAIT@|$QUEUE_WAIT|g" \
    -e "s|@CLIENT_TIMEOUT@|$CLIENT_TIMEOUT|g" -e "s|@RATE@|$NGINX_RATE|g" -e "s|@BURST@|$BURST|g" \
    -e "s|@MAX_JOBS@|$MAX_JOBS|g" -e "s|@MAXCONN@|$MAXCONN|g" -e "s|@NOFILE@|$NOFILE|g" \
    -e "s|@WORKER_CONNS@|$((NOFILE - 1000))|g" -e "s|@WORKERS@|$WORKERS|g" \
    -e "s|@JOBS_SECTION@|$JOBS_SECTION|g" "$1"
}

# The [jobs] table of each backend, with literal "\n"s that render's sed turns into lines.
# shellcheck disable=SC2028
jobs_section() { # backend run-dir
  case "$1" in
    fsync|os) echo "[jobs]\\nbackend = \"embedded\"\\npath = \"$2/jobs.db\"\\ndurability = \"$1\"" ;;
    jetstream) echo "[jobs]\\nbackend = \"jetstream\"\\n\\n[jobs.jetstream]\\nurl = \"nats://127.0.0.1:$NATS_PORT\"\\nstream_prefix = \"BENCH\"" ;;
  esac
}

set_levee() { # proxy run-dir: the [jobs] table of its config
  case "$1" in
    levee) JOBS_SECTION=$(jobs_section fsync "$2") ;;
    levee-os) JOBS_SECTION=$(jobs_section os "$2") ;;
    levee-jetstream) JOBS_SECTION=$(jobs_section jetstream "$2") ;;
  esac
}

template() { # proxy
  case "$1" in
    levee|levee-os|levee-jetstream) echo "$AS/conf/levee.toml.in" ;;
    accept) echo "$AS/conf/levee-accept.toml.in" ;;
    nginx) echo "$AS/conf/nginx.conf.in" ;;
    haproxy) echo "$AS/conf/haproxy.cfg.in" ;;
  esac
}

# Check every config before spending time on runs.
CHK="$OUT/check"
rm -rf "$CHK"; mkdir -p "$CHK/tmp"
check_levee() { # name: $CHK/name.toml is rendered
  "$LEVEE_BIN" check -c "$CHK/$1.toml" >"$CHK/$1.check.log" 2>&1 || { cat "$CHK/$1.check.log" >&2; die "$1 config"; }
}
for p in $BURST_PROXIES; do
  case "$p" in
    levee*) set_levee "$p" "$CHK"; render "$(template "$p")" "$CHK" >"$CHK/$p.toml"; check_levee "$p" ;;
    nginx) render "$(template nginx)" "$CHK" >"$CHK/nginx.conf"
      nginx -t -q -c "$CHK/nginx.conf" -e "$CHK/nginx.error.log" >"$CHK/nginx.check.log" 2>&1 ||
        { cat "$CHK/nginx.check.log" >&2; die "nginx config"; } ;;
    haproxy) render "$(template haproxy)" "$CHK" >"$CHK/haproxy.cfg"
      haproxy -c -q -f "$CHK/haproxy.cfg" >"$CHK/haproxy.check.log" 2>&1 ||
        { cat "$CHK/haproxy.check.log" >&2; die "haproxy config"; } ;;
  esac
done
if [[ "$ACCEPT" == 1 ]]; then
  for b in $ACCEPT_BACKENDS; do
    JOBS_SECTION=$(jobs_section "$b" "$CHK"); WORKERS=$ACCEPT_WORKERS
    render "$(template accept)" "$CHK" >"$CHK/accept-$b.toml"
    check_levee "accept-$b"
  done
fi

# ---------------------------------------------------------------- processes
UP_PID=""; PROXY_PIDS=(); NATS_PID=""

cleanup() {
  local p
  for p in "${PROXY_PIDS[@]}"; do stop_pid "$p"; done
  PROXY_PIDS=()
  stop_pid "$UP_PID"; UP_PID=""
  stop_pid "$NATS_PID"; NATS_PID=""
}
set_cleanup_traps

start_upstream() { # run-dir concurrency service-ms
  local p
  for p in $CTL_PORT $UP; do port_free "$p" || die "port $p is still in use"; done
  pin 0 "$PY" "$OV/upstream.py" --port "$UP" --control-port "$CTL_PORT" \
    --concurrency "$2" --service-ms "$3" --dedup >"$1/upstream.log" 2>&1 &
  UP_PID=$!
  wait_port "$CTL_PORT" && wait_port "$UP" || die "upstream did not start"
}

start_nats() { # run-dir
  port_free "$NATS_PORT" || die "port $NATS_PORT is still in use"
  mkdir -p "$1/nats"
  pin 0 nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$1/nats" >"$1/nats.log" 2>&1 &
  NATS_PID=$!
  wait_port "$NATS_PORT" || die "nats-server did not start (see $1/nats.log)"
}

start_levee() { # config run-dir index: 0 for the first gateway; fails (1) if it exits or never listens
  local i="$3" port=$((PROXY_PORT + $3)) admin=$((LEVEE_ADMIN_PORT + $3))
  port_free "$port" && port_free "$admin" || die "proxy port $port or $admin is still in use"
  RUST_LOG="${RUST_LOG:-info}" pin 0 "$LEVEE_BIN" run -c "$1" >"$2/levee$i.log" 2>&1 &
  PROXY_PIDS+=($!)
  wait_port "$port" || return 1
  # Up and accepting: the warm-up requests are jobs too (202).
  wait_answers "http://127.0.0.1:$port/warmup" 3 || return 1
}

start_proxy() { # proxy run-dir
  local p="$1" d="$2"
  mkdir -p "$d/tmp"
  case "$p" in
    levee*)
      # levee-jetstream: three gateways sharing one nats-server's queue.
      local i n=1
      [[ "$p" == levee-jetstream ]] && { n=3; start_nats "$d"; }
      set_levee "$p" "$d"
      for ((i = 0; i < n; i++)); do
        render "$(template "$p")" "$d" $((PROXY_PORT + i)) $((LEVEE_ADMIN_PORT + i)) >"$d/levee$i.toml"
        start_levee "$d/levee$i.toml" "$d" "$i" || die "$p gateway $i did not start (see $d)"
      done ;;
    nginx)
      render "$(template nginx)" "$d" >"$d/nginx.conf"
      pin 0 nginx -c "$d/nginx.conf" -e "$d/nginx.error.log" >"$d/nginx.out" 2>&1 &
      PROXY_PIDS+=($!)
      wait_port "$PROXY_PORT" || die "nginx did not start (see $d)"
      wait_answers "http://127.0.0.1:$PROXY_PORT/warmup" 3 || die "nginx does not answer (see $d)" ;;
    haproxy)
      render "$(template haproxy)" "$d" >"$d/haproxy.cfg"
      haproxy_stats_socket "$d/haproxy.cfg" "$d"
      pin 0 haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
      PROXY_PIDS+=($!)
      wait_port "$PROXY_PORT" || die "haproxy did not start (see $d)"
      wait_answers "http://127.0.0.1:$PROXY_PORT/warmup" 3 || die "haproxy does not answer (see $d)" ;;
  esac
}

alive() { # name run-dir: every proxy process still running (a crash is a finding)
  local p
  for p in "${PROXY_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || { log "  WARNING: $1 (pid $p) exited during the run, see $2"; echo "exited" >"$2/proxy-exited"; }
  done
}

drop_queue_files() { # run-dir: the queue's own files (the embedded SQLite file, the
  # nats-server store) are hundreds of MB per run and the report does not read them
  rm -rf "$1"/jobs.db "$1"/jobs.db-* "$1/nats"
}

levee_memory() { # run-dir: VmHWM and VmRSS of each Levee process still running
  local p i=0
  for p in "${PROXY_PIDS[@]}"; do
    grep -E '^(VmHWM|VmRSS)' "/proc/$p/status" >"$1/levee$i.memory" 2>/dev/null || true
    i=$((i + 1))
  done
}

levee_metrics() { # run-dir count suffix
  local i
  for ((i = 0; i < $2; i++)); do
    http_get "http://127.0.0.1:$((LEVEE_ADMIN_PORT + i))/metrics" >"$1/levee$i.$3.metrics" 2>/dev/null || true
  done
}

# Does this binary run the JetStream backend? `levee check` only reads the
# config: start one gateway against a nats-server and see.
JETSTREAM=0
JETSTREAM_WHY=""
probe_jetstream() {
  local d="$RAW/jetstream-probe"
  mkdir -p "$d"
  have nats-server || { JETSTREAM_WHY="nats-server is not installed"; return; }
  start_upstream "$d" 1 3600000
  start_nats "$d"
  JOBS_SECTION=$(jobs_section jetstream "$d"); WORKERS=1
  render "$(template accept)" "$d" >"$d/levee0.toml"
  if start_levee "$d/levee0.toml" "$d" 0; then
    JETSTREAM=1
  else
    JETSTREAM_WHY=$(grep -m1 -E '^error|ERROR' "$d/levee0.log" | sed 's/\x1b\[[0-9;]*m//g' || true)
    JETSTREAM_WHY="${JETSTREAM_WHY:-levee did not start}"
  fi
  cleanup
  echo "{\"supported\": $([[ $JETSTREAM == 1 ]] && echo true || echo false), \"why\": $(printf '%s' "$JETSTREAM_WHY" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >"$d/result.json"
  log "JetStream backend: $([[ $JETSTREAM == 1 ]] && echo "runs" || echo "not available: $JETSTREAM_WHY")"
}
if wants_proxy levee-jetstream || wants_accept jetstream; then probe_jetstream; fi

# ---------------------------------------------------------------- runs
burst_args() { # run-dir: the generator's common arguments
  echo --rate "$RATE" --seconds "$BURST_SECONDS" --body-bytes "$BODY_BYTES" --timeout "$CLIENT_TIMEOUT" \
    --seed "$SEED" --upstream-ctl "http://127.0.0.1:$CTL_PORT" --drain-max "$DRAIN_MAX" --out "$1/burst.json"
}

run_calibrate() { # the upstream alone, its places always full: its real ceiling
  local d="$RAW/calibrate" secs=3
  [[ "$QUICK" == 1 ]] && secs=2
  mkdir -p "$d"
  start_upstream "$d" "$CONCURRENCY" "$SERVICE_MS"
  http_get "http://127.0.0.1:$CTL_PORT/reset" >/dev/null
  # shellcheck disable=SC2046
  (pin 1 "$PY" "$AS/burst.py" --url "http://127.0.0.1:$UP/work" $(burst_args "$d") \
    --rate "$(python3 -c "print($CAPACITY * 3)")" --seconds "$secs" 2>"$d/burst.log") ||
    { cat "$d/burst.log" >&2; die "calibration failed"; }
  http_get "http://127.0.0.1:$CTL_PORT/dump" >"$d/upstream.json"
  echo "{\"part\": \"calibrate\", \"capacity\": $CAPACITY, \"concurrency\": $CONCURRENCY, \"service_ms\": $SERVICE_MS}" >"$d/meta.json"
  cleanup
  log "  calibration: $("$PY" "$AS/report.py" --one "$d")"
}

run_burst() { # proxy
  local p="$1" d="$RAW/burst.$1" urls=() sample=() n=0 i
  mkdir -p "$d"
  start_upstream "$d" "$CONCURRENCY" "$SERVICE_MS"
  start_proxy "$p" "$d"
  case "$p" in
    levee|levee-os) n=1 ;;
    levee-jetstream) n=3 ;;
  esac
  if ((n > 0)); then
    for ((i = 0; i < n; i++)); do
      urls+=(--url "http://127.0.0.1:$((PROXY_PORT + i))/work")
      sample+=(--sample "http://127.0.0.1:$((LEVEE_ADMIN_PORT + i))/metrics")
    done
    sample+=(--jobs)
    # The warm-up jobs must reach the upstream before it forgets them.
    for _ in $(seq 50); do
      http_get "http://127.0.0.1:$CTL_PORT/stats" | grep -q '"present_now": 0' && break
      sleep 0.1
    done
    sleep 0.5
  else
    urls=(--url "http://127.0.0.1:$PROXY_PORT/work")
  fi
  http_get "http://127.0.0.1:$CTL_PORT/reset" >/dev/null
  ((n > 0)) && levee_metrics "$d" "$n" before
  # shellcheck disable=SC2046
  (pin 1 "$PY" "$AS/burst.py" "${urls[@]}" "${sample[@]}" $(burst_args "$d") 2>"$d/burst.log") ||
    { cat "$d/burst.log" >&2; die "load generator failed ($d)"; }
  http_get "http://127.0.0.1:$CTL_PORT/dump" >"$d/upstream.json"
  ((n > 0)) && { levee_metrics "$d" "$n" after; levee_memory "$d"; }
  [[ "$p" == haproxy ]] && haproxy_stat "$d"
  alive "$p" "$d"
  cat >"$d/meta.json" <<EOF
{"part": "burst", "proxy": "$p", "gateways": $((n > 0 ? n : 1)), "capacity": $CAPACITY, "concurrency": $CONCURRENCY,
 "service_ms": $SERVICE_MS, "load": $LOAD, "rate": $RATE, "seconds": $BURST_SECONDS, "client_timeout": $CLIENT_TIMEOUT,
 "queue_wait": $QUEUE_WAIT, "burst": $BURST, "body_bytes": $BODY_BYTES}
EOF
  cleanup
  drop_queue_files "$d"
  log "  burst $p: $("$PY" "$AS/report.py" --one "$d")"
}

run_accept() { # backend (fsync | os | jetstream) round
  local b="$1" d="$RAW/accept.$1.r$2" n=1 i pids=()
  mkdir -p "$d"
  [[ "$b" == jetstream ]] && n=3
  # An upstream that holds its one place for an hour: nothing drains.
  start_upstream "$d" 1 3600000
  [[ "$b" == jetstream ]] && start_nats "$d"
  JOBS_SECTION=$(jobs_section "$b" "$d"); WORKERS=$ACCEPT_WORKERS
  for ((i = 0; i < n; i++)); do
    render "$(template accept)" "$d" $((PROXY_PORT + i)) $((LEVEE_ADMIN_PORT + i)) >"$d/levee$i.toml"
    start_levee "$d/levee$i.toml" "$d" "$i" || die "accept $b: gateway $i did not start (see $d)"
  done
  levee_metrics "$d" "$n" before
  local conns=$(((ACCEPT_CONNS + n - 1) / n))
  for ((i = 0; i < n; i++)); do
    WRK_HIST="$d/wrk$i.hist" WRK_HIST_LUA="$BENCH_DIR/wrk_hist.lua" BODY_BYTES="$BODY_BYTES" \
      pin 1 timeout $((ACCEPT_SECONDS + 60)) wrk -t1 -c"$conns" -d"${ACCEPT_SECONDS}s" --timeout 10s --latency \
      -s "$AS/conf/post.lua" "http://127.0.0.1:$((PROXY_PORT + i))/work" >"$d/wrk$i.txt" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  levee_metrics "$d" "$n" after
  levee_memory "$d"
  alive "accept $b" "$d"
  cat >"$d/meta.json" <<EOF
{"part": "accept", "backend": "$b", "round": $2, "gateways": $n, "seconds": $ACCEPT_SECONDS, "conns": $ACCEPT_CONNS,
 "workers": $ACCEPT_WORKERS, "body_bytes": $BODY_BYTES}
EOF
  cleanup
  drop_queue_files "$d"
  log "  accept $b, round $2: $("$PY" "$AS/report.py" --one "$d")"
}

# ---------------------------------------------------------------- meta
{
  machine_line
  v="$("$LEVEE_BIN" --version) ($(levee_rev))"
  wants_proxy nginx && v+=", $(nginx_version)"
  wants_proxy haproxy && v+=", HAProxy $(haproxy_version)"
  [[ "$ACCEPT" == 1 ]] && v+=", $(wrk_version)"
  have nats-server && v+=", $(first_line nats-server --version)"
  v+=", $($PY --version)"
  echo "Versions: $v."
  echo "Settings: upstream CONCURRENCY=$CONCURRENCY x SERVICE_MS=$SERVICE_MS ms (C = $CAPACITY req/s); burst LOAD=$LOAD x C = $RATE req/s for BURST_SECONDS=$BURST_SECONDS s, BODY_BYTES=$BODY_BYTES; CLIENT_TIMEOUT=$CLIENT_TIMEOUT s; QUEUE_WAIT=$QUEUE_WAIT s (NGINX rate $NGINX_RATE burst $BURST, HAProxy queue bound $BURST); UPSTREAM_TIMEOUT=$UPSTREAM_TIMEOUT; Levee max_jobs $MAX_JOBS, cluster limit $CLUSTER_LIMIT, route concurrency $ROUTE_CONCURRENCY; accept: wrk -t1 -c$ACCEPT_CONNS for $ACCEPT_SECONDS s x $ACCEPT_ROUNDS rounds, Levee worker_threads $ACCEPT_WORKERS; SEED=$SEED, PIN=$PIN; date $(date -u +%Y-%m-%dT%H:%MZ); load average at start $(loadavg)."
  if wants_proxy levee-jetstream || wants_accept jetstream; then
    echo "JetStream backend: $([[ $JETSTREAM == 1 ]] && echo "runs in this binary" || echo "not available in this binary ($JETSTREAM_WHY)")."
  fi
} >"$OUT/meta.md"
cat "$OUT/meta.md" >&2

START=$(date +%s)
if [[ "$CALIBRATE" == 1 ]]; then
  log "calibration: the upstream alone at 3x C"
  run_calibrate
fi
for p in $BURST_PROXIES; do
  if [[ "$p" == levee-jetstream && "$JETSTREAM" != 1 ]]; then
    log "burst levee-jetstream: skipped (JetStream backend not available)"
    continue
  fi
  log "burst ${LOAD}x C for $BURST_SECONDS s: $p"
  run_burst "$p"
done
if [[ "$ACCEPT" == 1 ]]; then
  log "accept rate: wrk -t1 -c$ACCEPT_CONNS POST for $ACCEPT_SECONDS s, nothing drains"
  for b in $ACCEPT_BACKENDS; do
    if [[ "$b" == jetstream && "$JETSTREAM" != 1 ]]; then
      log "accept jetstream: skipped (JetStream backend not available)"
      continue
    fi
    for ((r = 1; r <= ACCEPT_ROUNDS; r++)); do run_accept "$b" "$r"; done
  done
fi
echo "Load average at the end: $(loadavg); wall time $(($(date +%s) - START)) s." >>"$OUT/meta.md"

"$PY" "$AS/report.py" "$OUT" | tee "$OUT/summary.md"
