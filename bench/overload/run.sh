#!/usr/bin/env bash
# Overload benchmark: the same overload, with priority classes and tenants,
# against Levee, NGINX and HAProxy in front of one upstream of fixed
# capacity; then the accuracy of rate limits (Levee locally and through
# Redis with three gateways, NGINX limit_req, HAProxy stick tables).
# Everything on 127.0.0.1. See RELIABILITY.md ("Overload").
#
#   bash bench/overload/run.sh            # full run, about 8 min + build (MICRO=1: +30 s)
#   QUICK=1 bash bench/overload/run.sh    # smoke run, about 3 min + build
#   QUICK=1 LOADS=5 PROXIES="levee nginx haproxy" RL_PROXIES="levee nginx" \
#     SKIP_INSTALL=1 LEVEE_BIN=path bash bench/overload/run.sh   # shortest check, ~1.5 min
#
# Knobs (environment):
#   CONCURRENCY=4 SERVICE_MS=20   the upstream: requests at once, service time
#                                 (capacity C = CONCURRENCY / SERVICE_MS)
#   LOADS="2 5 10"                offered load, in multiples of C
#   WARM=3 SETTLE=5 DURATION=20   seconds at C/2 before the overload, then
#                                 seconds of overload not counted (queues fill,
#                                 limits adapt), then seconds of overload
#                                 measured; the load goes on for CLIENT_TIMEOUT
#                                 more seconds (not counted), so the measured
#                                 requests compete with later ones to the end
#   CLIENT_TIMEOUT=2              per-request client timeout (s)
#   QUEUE_TIMEOUT=1s              longest wait in a proxy's queue
#   UPSTREAM_TIMEOUT=2s           longest wait for the upstream's answer
#   PROXIES="levee levee-fixed nginx haproxy"
#   RL=1                          run the rate-limit accuracy part (0: skip)
#   RL_PROXIES="levee levee-redis nginx haproxy haproxy-admitted"
#   RL_RATE=100 RL_BURST=10       the limit (requests per second, burst)
#   RL_LOAD=2 RL_DURATION=10      offered load (multiple of RL_RATE), seconds
#   MICRO=0                       1: also run the limiters' micro-benchmarks
#                                 (cargo bench -p levee-policy; needs an idle
#                                 machine: nothing else compiling)
#   ROUNDS=1 SEED=1               repeat each overload run; schedule seed
#   PIN=1                         proxy and upstream on CPU 0, load generator on CPU 1
#   PORT_BASE=30000               ports PORT_BASE+0..+999 (bench/scenarios uses 29000)
#   LEVEE_BIN=path                skip the build (LEVEE_REV=text describes it)
#   SKIP_INSTALL=1                do not apt-get nginx, haproxy, redis-server
#   OVERLOAD_OUT=dir              output directory (default bench/overload/out)
# Raw outputs go to bench/overload/out/ (gitignored); the Markdown tables are
# printed at the end and written to bench/overload/out/summary.md.
# Shared code: bench/lib.sh (shell), bench/benchlib.py (Python; percentiles
# are nearest rank, the rule of every report).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OV="$ROOT/bench/overload"
OUT="${OVERLOAD_OUT:-$OV/out}"
QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  WARM="${WARM:-2}"; SETTLE="${SETTLE:-2}"; DURATION="${DURATION:-6}"; RL_DURATION="${RL_DURATION:-5}"
else
  WARM="${WARM:-3}"; SETTLE="${SETTLE:-5}"; DURATION="${DURATION:-20}"; RL_DURATION="${RL_DURATION:-10}"
fi
CONCURRENCY="${CONCURRENCY:-4}"
SERVICE_MS="${SERVICE_MS:-20}"
LOADS="${LOADS:-2 5 10}"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-2}"
QUEUE_TIMEOUT="${QUEUE_TIMEOUT:-1s}"
UPSTREAM_TIMEOUT="${UPSTREAM_TIMEOUT:-2s}"
PROXIES="${PROXIES-levee levee-fixed nginx haproxy}"
RL="${RL:-1}"
RL_PROXIES="${RL_PROXIES-levee levee-redis nginx haproxy haproxy-admitted}"
RL_RATE="${RL_RATE:-100}"
RL_BURST="${RL_BURST:-10}"
RL_LOAD="${RL_LOAD:-2}"
MICRO="${MICRO:-0}"
ROUNDS="${ROUNDS:-1}"
SEED="${SEED:-1}"
PIN="${PIN:-1}"
PORT_BASE="${PORT_BASE:-30000}"

PROXY_PORT=$((PORT_BASE + 0))
LEVEE_ADMIN_PORT=$((PORT_BASE + 901))
CTL_PORT=$((PORT_BASE + 100))
UP=$((PORT_BASE + 101))
REDIS_PORT=$((PORT_BASE + 379))

LOG_TAG=overload PY=python3
# log, die, install_missing, levee_bin, ports_free, port_free, wait_port,
# wait_answers, http_get, pin, stop_pid, set_cleanup_traps, haproxy_*,
# versions, machine_line
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

for p in $PROXIES; do
  case "$p" in levee|levee-fixed|nginx|haproxy) ;; *) die "unknown proxy $p (levee levee-fixed nginx haproxy)";; esac
done
[[ "$RL" == 1 ]] && for p in $RL_PROXIES; do
  case "$p" in levee|levee-redis|nginx|haproxy|haproxy-admitted) ;;
    *) die "unknown rate-limit proxy $p (levee levee-redis nginx haproxy haproxy-admitted)";; esac
done
((RL_BURST >= 1)) || die "RL_BURST must be at least 1"

# Capacity and the derived settings (integers; NGINX takes rates per minute).
CAPACITY=$(python3 -c "print(round($CONCURRENCY * 1000 / $SERVICE_MS, 3))")
TENANT_RATE="$(python3 -c "print(round($CONCURRENCY * 1000 / $SERVICE_MS * 60 / 3))")r/m"
TENANT_BURST="${TENANT_BURST:-10}"
TENANT_CONNS=$(((CONCURRENCY + 1) / 2))

# ---------------------------------------------------------------- tools
want() { [[ " $PROXIES " == *" $1 "* ]] || { [[ "$RL" == 1 ]] && [[ " $RL_PROXIES " == *" $1 "* ]]; }; }
need=()
want nginx && ! have nginx && need+=("$NGINX_PKG")
{ want haproxy || want haproxy-admitted; } && ! have haproxy && need+=(haproxy)
want levee-redis && ! have redis-server && need+=(redis-server)
have python3 || need+=(python3)
[[ "$PIN" == 1 ]] && ! have taskset && need+=(util-linux)
install_missing strict "${need[@]}"

# ---------------------------------------------------------------- build
has_levee() { want levee || want levee-fixed || want levee-redis; }
if has_levee; then levee_bin; fi

# ---------------------------------------------------------------- layout
RAW="$OUT/raw"
rm -rf "$RAW" "$OUT/micro"
mkdir -p "$RAW"

ports_free $PROXY_PORT $((PROXY_PORT + 1)) $((PROXY_PORT + 2)) $LEVEE_ADMIN_PORT $((LEVEE_ADMIN_PORT + 1)) \
  $((LEVEE_ADMIN_PORT + 2)) $CTL_PORT $UP $REDIS_PORT

REDIS_SECTION=""
RL_GLOBAL=false
render() { # template run-dir [proxy-port admin-port]
  sed -e "s|@RUN@|$2|g" -e "s|@PROXY_PORT@|${3:-$PROXY_PORT}|g" -e "s|@LEVEE_ADMIN_PORT@|${4:-$LEVEE_ADMIN_PORT}|g" \
    -e "s|@UP@|$UP|g" -e "s|@NGINX_USER@|$NGINX_USER|g" -e "s|@CONCURRENCY@|$CONCURRENCY|g" \
    -e "s|@QUEUE_TIMEOUT@|$QUEUE_TIMEOUT|g" -e "s|@UPSTREAM_TIMEOUT@|$UPSTREAM_TIMEOUT|g" \
    -e "s|@TENANT_RATE@|$TENANT_RATE|g" -e "s|@TENANT_BURST@|$TENANT_BURST|g" -e "s|@TENANT_CONNS@|$TENANT_CONNS|g" \
    -e "s|@RL_RATE@|$RL_RATE|g" -e "s|@RL_BURST@|$RL_BURST|g" -e "s|@RL_BURST_M1@|$((RL_BURST - 1))|g" \
    -e "s|@RL_GLOBAL@|$RL_GLOBAL|g" -e "s|@REDIS_SECTION@|$REDIS_SECTION|g" "$1"
}

# Templates per (part, proxy).
template() { # part proxy
  case "$1:$2" in
    ov:levee) echo "$OV/conf/levee.toml.in" ;;
    ov:levee-fixed) echo "$OV/conf/levee-fixed.toml.in" ;;
    ov:nginx) echo "$OV/conf/nginx.conf.in" ;;
    ov:haproxy) echo "$OV/conf/haproxy.cfg.in" ;;
    rl:levee|rl:levee-redis) echo "$OV/conf/levee-rl.toml.in" ;;
    rl:nginx) echo "$OV/conf/nginx-rl.conf.in" ;;
    rl:haproxy) echo "$OV/conf/haproxy-rl.cfg.in" ;;
    rl:haproxy-admitted) echo "$OV/conf/haproxy-rl-admitted.cfg.in" ;;
  esac
}

set_redis() { # proxy: the Redis settings of a rate-limit run
  if [[ "$1" == levee-redis ]]; then
    RL_GLOBAL=true
    REDIS_SECTION="[redis]\\nurl = \"redis://127.0.0.1:$REDIS_PORT\"\\nreplicas = 3"
  else
    RL_GLOBAL=false
    REDIS_SECTION=""
  fi
}

# Check every config once before spending time on runs.
CHK="$OUT/check"
rm -rf "$CHK"; mkdir -p "$CHK/tmp"
check_one() { # part proxy
  local t name="$1.$2"
  t=$(template "$1" "$2")
  set_redis "$2"
  case "$2" in
    levee*)
      render "$t" "$CHK" >"$CHK/$name.toml"
      "$LEVEE_BIN" check -c "$CHK/$name.toml" >"$CHK/$name.check.log" 2>&1 || { cat "$CHK/$name.check.log" >&2; die "$name config"; } ;;
    nginx)
      render "$t" "$CHK" >"$CHK/$name.conf"
      nginx -t -q -c "$CHK/$name.conf" -e "$CHK/nginx.error.log" >"$CHK/$name.check.log" 2>&1 || { cat "$CHK/$name.check.log" >&2; die "$name config"; } ;;
    haproxy*)
      render "$t" "$CHK" >"$CHK/$name.cfg"
      haproxy -c -q -f "$CHK/$name.cfg" >"$CHK/$name.check.log" 2>&1 || { cat "$CHK/$name.check.log" >&2; die "$name config"; } ;;
  esac
}
for p in $PROXIES; do check_one ov "$p"; done
if [[ "$RL" == 1 ]]; then for p in $RL_PROXIES; do check_one rl "$p"; done; fi

# ---------------------------------------------------------------- processes
UP_PID=""; PROXY_PIDS=(); REDIS_PID=""

cleanup() {
  local p
  for p in "${PROXY_PIDS[@]}"; do stop_pid "$p"; done
  PROXY_PIDS=()
  stop_pid "$UP_PID"; UP_PID=""
  stop_pid "$REDIS_PID"; REDIS_PID=""
}
set_cleanup_traps

start_upstream() { # run-dir concurrency service-ms
  local p
  for p in $CTL_PORT $UP; do port_free "$p" || die "port $p is still in use"; done
  pin 0 "$PY" "$OV/upstream.py" --port "$UP" --control-port "$CTL_PORT" \
    --concurrency "$2" --service-ms "$3" >"$1/upstream.log" 2>&1 &
  UP_PID=$!
  wait_port "$CTL_PORT" && wait_port "$UP" || die "upstream did not start"
}

start_redis() { # run-dir
  port_free "$REDIS_PORT" || die "port $REDIS_PORT is still in use"
  pin 0 redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$1" --logfile "$1/redis.log" &
  REDIS_PID=$!
  wait_port "$REDIS_PORT" || die "redis-server did not start"
}

start_proxy() { # part proxy run-dir [index]: index > 0 for the 2nd and 3rd Levee
  local part="$1" p="$2" d="$3" i="${4:-0}" t
  local port=$((PROXY_PORT + i)) admin=$((LEVEE_ADMIN_PORT + i))
  mkdir -p "$d/tmp"
  port_free "$port" && port_free "$admin" || die "proxy port $port or $admin is still in use"
  t=$(template "$part" "$p")
  set_redis "$p"
  case "$p" in
    levee*)
      render "$t" "$d" "$port" "$admin" >"$d/levee$i.toml"
      RUST_LOG="${RUST_LOG:-info}" pin 0 "$LEVEE_BIN" run -c "$d/levee$i.toml" >"$d/levee$i.log" 2>&1 & ;;
    nginx)
      render "$t" "$d" >"$d/nginx.conf"
      pin 0 nginx -c "$d/nginx.conf" -e "$d/nginx.error.log" >"$d/nginx.out" 2>&1 & ;;
    haproxy*)
      render "$t" "$d" >"$d/haproxy.cfg"
      haproxy_stats_socket "$d/haproxy.cfg" "$d"
      pin 0 haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 & ;;
  esac
  PROXY_PIDS+=($!)
  wait_port "$port" || die "$p did not start (see $d)"
  # Up and routing: a few requests must succeed.
  wait_answers "http://127.0.0.1:$port/warmup" 3 || die "$p does not answer (see $d)"
}

proxy_state() { # proxy run-dir [count of Levees]
  local i
  case "$1" in
    levee*)
      for ((i = 0; i < ${3:-1}; i++)); do
        http_get "http://127.0.0.1:$((LEVEE_ADMIN_PORT + i))/metrics" >"$2/levee$i.metrics" 2>/dev/null || true
      done ;;
    haproxy*) haproxy_stat "$2" ;;
  esac
}

alive() { # proxy run-dir: every proxy process still running (a crash is a finding)
  local p
  for p in "${PROXY_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || { log "  WARNING: $1 (pid $p) exited during the run, see $2"; echo "exited" >"$2/proxy-exited"; }
  done
}

run_overload() { # proxy load round
  local p="$1" x="$2" r="$3" d="$RAW/ov.x$2.$1.r$3"
  mkdir -p "$d"
  start_upstream "$d" "$CONCURRENCY" "$SERVICE_MS"
  start_proxy ov "$p" "$d"
  http_get "http://127.0.0.1:$CTL_PORT/reset" >/dev/null
  local sample=()
  [[ "$p" == levee* ]] && sample=(--sample "http://127.0.0.1:$LEVEE_ADMIN_PORT/metrics")
  (pin 1 "$PY" "$OV/load.py" --url "http://127.0.0.1:$PROXY_PORT/work" \
    --phase "warm:$(python3 -c "print($CAPACITY / 2)"):$WARM" \
    --phase "settle:$(python3 -c "print($CAPACITY * $x)"):$SETTLE" \
    --phase "overload:$(python3 -c "print($CAPACITY * $x)"):$DURATION" \
    --phase "tail:$(python3 -c "print($CAPACITY * $x)"):$CLIENT_TIMEOUT" \
    --timeout "$CLIENT_TIMEOUT" --seed "$((SEED * 100 + r))" "${sample[@]}" --out "$d/load.json" 2>"$d/load.log") ||
    { cat "$d/load.log" >&2; die "load generator failed ($d)"; }
  http_get "http://127.0.0.1:$CTL_PORT/dump" >"$d/upstream.json"
  proxy_state "$p" "$d"
  alive "$p" "$d"
  cat >"$d/meta.json" <<EOF
{"part": "overload", "proxy": "$p", "load": $x, "round": $r, "capacity": $CAPACITY, "concurrency": $CONCURRENCY,
 "service_ms": $SERVICE_MS, "warm": $WARM, "settle": $SETTLE, "duration": $DURATION, "client_timeout": $CLIENT_TIMEOUT}
EOF
  cleanup
  log "  ${x}x $p: $("$PY" "$OV/report.py" --one "$d")"
}

run_ratelimit() { # proxy
  local p="$1" d="$RAW/rl.$1" n=1 i urls=()
  mkdir -p "$d"
  # A fast upstream: the limit, not the upstream, decides.
  start_upstream "$d" 1000 1
  if [[ "$p" == levee-redis ]]; then
    start_redis "$d"
    n=3
  fi
  for ((i = 0; i < n; i++)); do
    start_proxy rl "$p" "$d" "$i"
    urls+=(--url "http://127.0.0.1:$((PROXY_PORT + i))/work")
  done
  if [[ "$p" == levee-redis ]]; then
    for ((i = 0; i < n; i++)); do
      for _ in $(seq 50); do
        http_get "http://127.0.0.1:$((LEVEE_ADMIN_PORT + i))/metrics" 2>/dev/null | grep -q '^levee_redis_connected 1' && break
        sleep 0.1
      done
    done
  fi
  # Let the start-up requests' tokens come back.
  sleep 1
  http_get "http://127.0.0.1:$CTL_PORT/reset" >/dev/null
  local sample=()
  if [[ "$p" == levee* ]]; then
    for ((i = 0; i < n; i++)); do sample+=(--sample "http://127.0.0.1:$((LEVEE_ADMIN_PORT + i))/metrics"); done
  fi
  (pin 1 "$PY" "$OV/load.py" "${urls[@]}" --phase "limit:$((RL_RATE * RL_LOAD)):$RL_DURATION" \
    --classes "" --tenants "" --timeout "$CLIENT_TIMEOUT" --seed "$SEED" --sample-every 1 "${sample[@]}" \
    --out "$d/load.json" 2>"$d/load.log") ||
    { cat "$d/load.log" >&2; die "load generator failed ($d)"; }
  http_get "http://127.0.0.1:$CTL_PORT/dump" >"$d/upstream.json"
  proxy_state "$p" "$d" "$n"
  alive "$p" "$d"
  cat >"$d/meta.json" <<EOF
{"part": "ratelimit", "proxy": "$p", "gateways": $n, "rate": $RL_RATE, "burst": $RL_BURST, "load": $RL_LOAD,
 "duration": $RL_DURATION, "client_timeout": $CLIENT_TIMEOUT}
EOF
  cleanup
  log "  rate limit $p: $("$PY" "$OV/report.py" --one "$d")"
}

# ---------------------------------------------------------------- meta
{
  machine_line
  v=""
  if has_levee; then v+="$("$LEVEE_BIN" --version) ($(levee_rev)), "; fi
  if want nginx; then v+="$(nginx_version), "; fi
  # (haproxy -v | head -1 failed here under pipefail: SIGPIPE; see lib.sh)
  if want haproxy || want haproxy-admitted; then v+="HAProxy $(haproxy_version), "; fi
  if want levee-redis; then v+="Redis $(redis_version), "; fi
  v+="$($PY --version)"
  echo "Versions: $v."
  echo "Settings: upstream CONCURRENCY=$CONCURRENCY x SERVICE_MS=$SERVICE_MS ms (C = $CAPACITY req/s), LOADS=\"$LOADS\" x C, WARM=$WARM s at C/2, SETTLE=$SETTLE s, DURATION=$DURATION s measured, CLIENT_TIMEOUT=$CLIENT_TIMEOUT s, QUEUE_TIMEOUT=$QUEUE_TIMEOUT, UPSTREAM_TIMEOUT=$UPSTREAM_TIMEOUT, NGINX per tenant $TENANT_RATE burst $TENANT_BURST conns $TENANT_CONNS; rate limit $RL_RATE/s burst $RL_BURST at ${RL_LOAD}x for $RL_DURATION s; ROUNDS=$ROUNDS, SEED=$SEED, PIN=$PIN; date $(date -u +%Y-%m-%dT%H:%MZ); load average at start $(loadavg)."
} >"$OUT/meta.md"
cat "$OUT/meta.md" >&2

START=$(date +%s)
read -r -a PLIST <<<"$PROXIES"
np=${#PLIST[@]}
k=0
for ((r = 1; r <= ROUNDS; r++)); do
  for x in $LOADS; do
    log "overload ${x}x capacity, round $r"
    # Rotate the proxies' order, so that none always goes first.
    for ((i = 0; i < np; i++)); do
      run_overload "${PLIST[$(((i + k) % np))]}" "$x" "$r"
    done
    k=$((k + 1))
  done
done
if [[ "$RL" == 1 ]]; then
  log "rate-limit accuracy: $RL_RATE/s, burst $RL_BURST, offered ${RL_LOAD}x for $RL_DURATION s"
  for p in $RL_PROXIES; do run_ratelimit "$p"; done
fi
if [[ "$MICRO" == 1 ]]; then
  if pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; then
    log "MICRO=1: something is compiling (cargo/rustc running); the figures would be noise, skipping"
  else
    log "micro-benchmarks of the limiters (cargo bench -p levee-policy --bench balancers)"
    mkdir -p "$OUT/micro"
    (cd "$ROOT" && cargo bench -p levee-policy --bench balancers --locked -- 'ratelimit|admission|concurrency' \
      --warm-up-time 1 --measurement-time 3 >"$OUT/micro/criterion.txt" 2>&1) || log "cargo bench failed (see $OUT/micro)"
    # criterion's estimates (mean, median, slope) of each benchmark
    for g in ratelimit admission concurrency; do
      [[ -d "${CARGO_TARGET_DIR:-$ROOT/target}/criterion/$g" ]] &&
        cp -r "${CARGO_TARGET_DIR:-$ROOT/target}/criterion/$g" "$OUT/micro/" || true
    done
  fi
fi
echo "Load average at the end: $(loadavg); wall time $(($(date +%s) - START)) s." >>"$OUT/meta.md"

"$PY" "$OV/report.py" "$OUT" | tee "$OUT/summary.md"
