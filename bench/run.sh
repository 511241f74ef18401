#!/usr/bin/env bash
# End-to-end benchmark: Levee vs NGINX vs HAProxy in front of one shared NGINX
# origin, plus the origin measured directly. Everything on 127.0.0.1.
#
#   bash bench/run.sh                 # full run (3 rounds x 8 s per run, ~14 min)
#   QUICK=1 bash bench/run.sh         # 1 round x 3 s, 2,000 idle connections (~3 min)
#
# Knobs (environment): ROUNDS, DURATION (seconds per run), IDLE_CONNS, PIN (1:
# proxy on CPU 0, origin and load generator on CPU 1; 0: no pinning),
# PORT_BASE (default 28000), LEVEE_BIN (skip the build), SKIP_INSTALL=1,
# SCENARIOS (subset of "a a_shared a2 b c d e"; b needs a), HOLD=SECONDS (after
# the warm-up, keep the servers up that long for profiling, then go on).
# Shortest run: QUICK=1 SCENARIOS=a SKIP_INSTALL=1 LEVEE_BIN=path (~1 min).
#
# Scenarios (BENCHMARKS.md, "Set-up"): (a) HTTP/1.1 keep-alive, small
# response, max rate (wrk); (a') the same unpinned; (a2) the same with two
# workers per proxy (below); (b) fixed rate, half of NGINX's (a); (c) h2c;
# (d) 1 MiB responses; (e) idle connections' memory. They run in the order
# a, a', b, c, d, a2, e whatever the order in SCENARIOS.
#
# (a) and (a2) have one more target, "levee-policy": Levee with its policy
# stack on the benchmarked route and cluster (retries with a retry budget, an
# endpoint circuit breaker, outlier detection, an adaptive concurrency limit,
# a per-client rate limit far above any rate reached here, so it never
# refuses, and an availability SLO on the route with the default alerting),
# a second process beside plain Levee. Its counters (retries, rate-limited,
# shed, ...) after each of those scenarios go into the report's header.
#
# (a2) runs every proxy with two workers (Levee worker_threads = 2, NGINX
# worker_processes 2, HAProxy nbthread 2; the origin keeps its one worker)
# on fresh processes. On a two-core machine two proxy workers cannot be
# pinned apart from the origin and the load generator, so (a2) is unpinned
# whatever PIN says: proxy, origin and wrk all share both cores.
#
# CPU per request: for every wrk run (a, a', a2, d), bench/load/cputime.py
# reads the proxy's user + system time (all its processes, every thread:
# /proc/PID/stat) before and after; report.py divides the difference by the
# requests wrk completed (µs per request). Not for h2load's runs: the CPU of
# their warm-up second would count, its requests not.
#
# p50 and p99 are nearest rank (bench/benchlib.py percentile) over every
# response: wrk's latency histogram (written by bench/wrk_hist.lua) or
# h2load's --log-file. Shell helpers: bench/lib.sh.
# Raw outputs go to bench/out/ (gitignored); the Markdown table is printed at
# the end and written to bench/out/summary.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
OUT="${BENCH_OUT:-$BENCH/out}"
QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  ROUNDS="${ROUNDS:-1}"; DURATION="${DURATION:-3}"; IDLE_CONNS="${IDLE_CONNS:-2000}"
else
  ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-8}"; IDLE_CONNS="${IDLE_CONNS:-10000}"
fi
PIN="${PIN:-1}"
PORT_BASE="${PORT_BASE:-28000}"
IDLE_HOLD="${IDLE_HOLD:-5}"
SCENARIOS="${SCENARIOS:-a a_shared a2 b c d e}"   # a subset, e.g. SCENARIOS="a c"
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

ORIGIN_PORT=$((PORT_BASE + 81))      # HTTP/1.1
ORIGIN_H2_PORT=$((PORT_BASE + 82))   # h2c (prior knowledge)
LEVEE_PORT=$((PORT_BASE + 0))        # HTTP/1.1 and h2c on one port
LEVEE_ADMIN_PORT=$((PORT_BASE + 901))
LEVEE_POLICY_PORT=$((PORT_BASE + 1)) # Levee with the policy stack, (a) and (a2)
LEVEE_POLICY_ADMIN_PORT=$((PORT_BASE + 902))
NGINX_PORT=$((PORT_BASE + 10))
NGINX_H2_PORT=$((PORT_BASE + 11))
HAPROXY_PORT=$((PORT_BASE + 20))
HAPROXY_H2_PORT=$((PORT_BASE + 21))

LOG_TAG=bench PY=python3
# log, die, install_missing, levee_bin, ports_free, wait_port, http_get,
# stop_pid, set_cleanup_traps, versions, machine_line
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

# ---------------------------------------------------------------- tools
need=()
have nginx || need+=("$NGINX_PKG")
have haproxy || need+=(haproxy)
have wrk || need+=(wrk)
have h2load || need+=(nghttp2-client)
have taskset || need+=(util-linux)
have python3 || need+=(python3)
# SKIP_INSTALL=1 goes on without them (a scenario that needs one fails).
install_missing lenient "${need[@]}"
# Debian starts the packaged services where systemd runs; ours use their own
# configs and ports, so those are left alone.

# File descriptors: 10,000 idle connections need more than the usual 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ "$NOFILE" != unlimited ]] && ((NOFILE < IDLE_CONNS + 500)); then
  log "ulimit -n is $NOFILE; lowering IDLE_CONNS from $IDLE_CONNS"
  IDLE_CONNS=$((NOFILE - 500))
fi

# ---------------------------------------------------------------- build
levee_bin

# ---------------------------------------------------------------- layout
RUN="$OUT/run"
RAW="$OUT/raw"
IDLE_DIR="$OUT/idle"
rm -rf "$RUN" "$RAW" "$IDLE_DIR"
mkdir -p "$RUN/www" "$RUN/tmp" "$RAW" "$IDLE_DIR"
chmod 755 "$OUT" "$RUN" "$RUN/www"
RESULTS="$OUT/results.tsv"
# requests: what the load generator completed; cpu_s: the proxy's CPU
# seconds over the run (nan where not measured).
printf '# scenario\ttarget\tround\trps\tp50_us\tp99_us\terrors\trequests\tcpu_s\n' >"$RESULTS"
head -c 1048576 /dev/urandom >"$RUN/www/1m"
chmod 644 "$RUN/www/1m"

ports_free $ORIGIN_PORT $ORIGIN_H2_PORT $LEVEE_PORT $LEVEE_ADMIN_PORT $LEVEE_POLICY_PORT $LEVEE_POLICY_ADMIN_PORT \
  $NGINX_PORT $NGINX_H2_PORT $HAPROXY_PORT $HAPROXY_H2_PORT
# h2c (prior knowledge) on a port of its own: "listen ... http2" before 1.25.1,
# "http2 on;" from then on.
NGINX_VERSION=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
h2_listen() { # $1 port
  if [[ "$(printf '%s\n' "$NGINX_VERSION" 1.25.1 | sort -V | awk 'NR == 1')" == 1.25.1 ]]; then
    echo "listen 127.0.0.1:$1; http2 on;"
  else
    echo "listen 127.0.0.1:$1 http2;"
  fi
}

# ---------------------------------------------------------------- configs
# Each proxy's config comes in two forms: one worker (every scenario but
# a2) and two workers (a2, files named *.w2.*). Equivalent otherwise.
nginx_common() { # $1: name, $2: worker processes (default 1)
  cat <<EOF
$NGINX_USER
worker_processes ${2:-1};
worker_rlimit_nofile $NOFILE;
pid $RUN/$1.pid;
error_log $RUN/$1.error.log warn;
daemon off;
EOF
}

nginx_http_common() { # $1: name
  cat <<EOF
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path $RUN/tmp/$1-body;
  proxy_temp_path $RUN/tmp/$1-proxy;
  fastcgi_temp_path $RUN/tmp/$1-fastcgi;
  uwsgi_temp_path $RUN/tmp/$1-uwsgi;
  scgi_temp_path $RUN/tmp/$1-scgi;
EOF
}

{
  nginx_common origin
  cat <<EOF
events { worker_connections 4096; }
http {
$(nginx_http_common origin)
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $RUN/www;
    location = / { default_type text/plain; return 200 "hello\n"; }
    location = /1m { default_type application/octet-stream; }
  }
  server {
    $(h2_listen $ORIGIN_H2_PORT)
    root $RUN/www;
    location = / { default_type text/plain; return 200 "hello\n"; }
    location = /1m { default_type application/octet-stream; }
  }
}
EOF
} >"$RUN/origin.conf"

nginx_conf() { # $1: name, $2: worker processes
  nginx_common "$1" "$2"
  cat <<EOF
events { worker_connections $((NOFILE - 100)); }
http {
$(nginx_http_common "$1")
  upstream origin {
    server 127.0.0.1:$ORIGIN_PORT;
    keepalive 1024;
    keepalive_requests 1000000;
    keepalive_timeout 90s;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
  server {
    $(h2_listen $NGINX_H2_PORT)
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }
}
EOF
}
nginx_conf nginx 1 >"$RUN/nginx.conf"
nginx_conf nginx.w2 2 >"$RUN/nginx.w2.conf"

haproxy_cfg() { # $1: name, $2: threads
  cat <<EOF
global
  nbthread $2
  maxconn $((IDLE_CONNS + 100))
  ulimit-n $NOFILE
  # maxconn is sized for the idle-connection test; HAProxy reserves two
  # descriptors per connection and would refuse to start where the hard
  # limit is 20,000. Idle clients need one each, so only warn.
  no strict-limits
  pidfile $RUN/$1.pid
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 75s
  timeout server 60s
  timeout http-keep-alive 75s
  timeout http-request 75s
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  bind 127.0.0.1:$HAPROXY_H2_PORT proto h2
  default_backend origin
backend origin
  server o1 127.0.0.1:$ORIGIN_PORT pool-max-conn 1024 pool-purge-delay 90s
EOF
}
haproxy_cfg haproxy 1 >"$RUN/haproxy.cfg"
haproxy_cfg haproxy.w2 2 >"$RUN/haproxy.w2.cfg"

levee_conf() { # $1: name, $2: port, $3: admin port, $4: worker threads, $5: policy stack (0|1)
  cat <<EOF
[admin]
listen = "127.0.0.1:$3"
[runtime]
access_log = false
worker_threads = $4
watch_config = false
[[listeners]]
name = "bench"
listen = "127.0.0.1:$2"
[listeners.limits]
max_connections = 20000
idle_timeout = "75s"
header_read_timeout = "75s"
[[routes]]
name = "all"
cluster = "origin"
match = { path = { prefix = "/" } }
EOF
  # The policy stack, as a service would configure it (docs/config.md). On
  # a healthy origin none of it should act: the rate limit is far above any
  # rate reached here (about 120,000 req/s direct), so its cost is what is
  # measured. Admitted responses on a rate-limited route carry the
  # RateLimit and RateLimit-Policy headers, which is part of that cost.
  [[ "$5" == 1 ]] && cat <<EOF
retry = { attempts = 2, retry_on = ["connect-failure", "gateway-error"], budget = { ratio = "20%", min_per_second = 10, window = "10s" } }
[[routes.rate_limits]]
name = "per-client"
rate = 10000000
per = "1s"
key = ["client_ip"]
EOF
  cat <<EOF
[[clusters]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN_PORT"]
protocol = "http1"
balancer = { kind = "round_robin" }
pool = { max_idle_per_endpoint = 1024, idle_timeout = "90s" }
EOF
  # The cluster's half of the stack; the SLO's history goes to a store file
  # of its own (a plain Levee's would be levee.db in the same directory).
  [[ "$5" == 1 ]] && cat <<EOF
outlier_detection = { consecutive_5xx = 5, consecutive_gateway_errors = 5, interval = "10s", base_ejection_time = "30s" }
[clusters.circuit_breaker]
endpoint = { consecutive_failures = 5, failure_ratio = "50%", min_requests = 20, window = "10s", base_open_time = "5s" }
[clusters.concurrency]
algorithm = "gradient"
max_limit = 1000
[[slos]]
name = "bench-availability"
sli = "availability"
route = "all"
objective = "99.9%"
[store]
path = "$1.db"
EOF
  return 0
}
levee_conf levee $LEVEE_PORT $LEVEE_ADMIN_PORT 1 0 >"$RUN/levee.toml"
levee_conf levee.w2 $LEVEE_PORT $LEVEE_ADMIN_PORT 2 0 >"$RUN/levee.w2.toml"
levee_conf levee-policy $LEVEE_POLICY_PORT $LEVEE_POLICY_ADMIN_PORT 1 1 >"$RUN/levee-policy.toml"
levee_conf levee-policy.w2 $LEVEE_POLICY_PORT $LEVEE_POLICY_ADMIN_PORT 2 1 >"$RUN/levee-policy.w2.toml"

nginx -t -q -c "$RUN/origin.conf" -e "$RUN/origin.error.log" >/dev/null 2>"$RUN/origin.test.log" || { cat "$RUN/origin.test.log" >&2; die "origin config"; }
for n in nginx nginx.w2; do
  nginx -t -q -c "$RUN/$n.conf" -e "$RUN/$n.error.log" >/dev/null 2>"$RUN/$n.test.log" || { cat "$RUN/$n.test.log" >&2; die "$n config"; }
done
for n in haproxy haproxy.w2; do
  haproxy -c -q -f "$RUN/$n.cfg" >"$RUN/$n.test.log" 2>&1 || { cat "$RUN/$n.test.log" >&2; die "$n config"; }
done
for n in levee levee.w2 levee-policy levee-policy.w2; do
  "$LEVEE_BIN" check -c "$RUN/$n.toml" >"$RUN/$n.check.log" 2>&1 || { cat "$RUN/$n.check.log" >&2; die "$n config"; }
done

# ---------------------------------------------------------------- processes
declare -A PID=()
# 1: the proxies run their one-worker configs; 2: the *.w2.* ones (a2).
WORKERS=1

start() { # $1 name: with the config for WORKERS
  local c="$1"
  [[ "$WORKERS" == 2 && "$1" != origin ]] && c="$1.w2"
  case "$1" in
    origin) nginx -c "$RUN/origin.conf" -e "$RUN/origin.error.log" >"$RUN/origin.out" 2>&1 & ;;
    nginx) nginx -c "$RUN/$c.conf" -e "$RUN/$c.error.log" >"$RUN/$c.out" 2>&1 & ;;
    haproxy) haproxy -db -f "$RUN/$c.cfg" >"$RUN/$c.out" 2>&1 & ;;
    levee | levee-policy) RUST_LOG="${RUST_LOG:-warn}" "$LEVEE_BIN" run -c "$RUN/$c.toml" >"$RUN/$c.out" 2>&1 & ;;
  esac
  PID[$1]=$!
}

stop() { # $1 name
  stop_pid "${PID[$1]:-}"
  unset "PID[$1]"
}

PROXIES=(levee levee-policy nginx haproxy)
cleanup() {
  local n
  for n in "${PROXIES[@]}" origin; do stop "$n"; done
}
set_cleanup_traps

listening() { # port...
  local p
  for p in "$@"; do wait_port "$p" || die "nothing listening on $p"; done
}

# The process and its children (NGINX's workers), all threads.
pids_of() { # $1 name
  local pid="${PID[$1]}"
  # shellcheck disable=SC2046 # one word per child pid
  echo "$pid" $(pgrep -P "$pid" || true)
}

set_affinity() { # $1 cpus, $2 name
  [[ -n "${PID[$2]:-}" ]] || return 0
  local p
  for p in $(pids_of "$2"); do taskset -a -p -c "$1" "$p" >/dev/null 2>&1 || true; done
}

# Placement for the measured scenarios: with PIN=1 each proxy owns CPU 0, and
# the origin and the load generator share CPU 1 (so a proxy's result does not
# depend on how the scheduler spreads three busy processes over two cores).
# Direct runs put the load generator on CPU 0 instead.
PROXY_CPU=0; OTHER_CPU=1
pin_mode() { # $1: 1 = pinned, 0 = shared
  local n
  if [[ "$1" == 1 ]]; then
    set_affinity $OTHER_CPU origin
    for n in "${PROXIES[@]}"; do set_affinity $PROXY_CPU "$n"; done
  else
    for n in origin "${PROXIES[@]}"; do set_affinity 0,1 "$n"; done
  fi
  CUR_PIN="$1"
}

loadgen() { # $1 target, then the command
  local target="$1"; shift
  if [[ "$CUR_PIN" != 1 ]]; then "$@"
  elif [[ "$target" == direct ]]; then taskset -c $PROXY_CPU "$@"
  else taskset -c $OTHER_CPU "$@"; fi
}

port_of() { # $1 target, $2 h1|h2
  case "$1:$2" in
    levee:*) echo $LEVEE_PORT ;;
    levee-policy:*) echo $LEVEE_POLICY_PORT ;;
    nginx:h1) echo $NGINX_PORT ;; nginx:h2) echo $NGINX_H2_PORT ;;
    haproxy:h1) echo $HAPROXY_PORT ;; haproxy:h2) echo $HAPROXY_H2_PORT ;;
    direct:h1) echo $ORIGIN_PORT ;; direct:h2) echo $ORIGIN_H2_PORT ;;
  esac
}

TARGETS=(levee nginx haproxy direct)
A_TARGETS=(levee levee-policy nginx haproxy direct) # (a) and (a2)
# Round r runs the targets rotated by r, so no proxy always goes first.
order() { # $1 round, then the targets
  local r="$1"; shift
  local ts=("$@") i
  for ((i = 0; i < $#; i++)); do echo "${ts[$(((i + r) % $#))]}"; done
}

record() { # scenario target round "rps p50 p99 errors requests cpu_s"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
  log "  $1 $2 round $3: $(echo "$4" | awk -F'\t' '{
    printf "%.0f req/s, p50 %.0f us, p99 %.0f us, errors %s", $1, $2, $3, $4
    if ($6 != "nan" && $5 > 0) printf ", proxy CPU %.1f us/req", $6 * 1e6 / $5 }')"
}

run_wrk() { # scenario target round conns path
  local f="$RAW/$1.$2.r$3.txt" hist="$RAW/$1.$2.r$3.hist" cpu="$RAW/$1.$2.r$3.cpu" port pids=()
  port=$(port_of "$2" h1)
  # cputime.py reads the proxy's CPU time (all its processes) just before
  # and after wrk, and wrk's own.
  [[ "$2" != direct ]] && pids=(--pids "$(pids_of "$2" | tr ' ' ,)")
  # wrk_hist.lua writes wrk's latency histogram, for report.py's percentiles.
  WRK_HIST="$hist" loadgen "$2" "$PY" "$BENCH/load/cputime.py" "${pids[@]}" "$cpu" \
    timeout $((DURATION + 60)) wrk -t1 -c"$4" -d"${DURATION}s" --timeout 5s --latency \
    -s "$BENCH/wrk_hist.lua" "http://127.0.0.1:$port$5" >"$f" 2>&1 || true
  record "$1" "$2" "$3" "$("$PY" "$BENCH/report.py" wrk "$f" "$hist" "$cpu")"
}

run_h2load() { # scenario target round proto(h1|h2) extra-args...
  local scen="$1" target="$2" rnd="$3" proto="$4"; shift 4
  local f="$RAW/$scen.$target.r$rnd.txt" logf="$RUN/$scen.$target.r$rnd.log" port
  port=$(port_of "$target" "$proto")
  local h1=(); [[ "$proto" == h1 ]] && h1=(--h1)
  loadgen "$target" timeout $((DURATION + 30)) h2load "${h1[@]}" -t1 -D "$DURATION" --warm-up-time 1 \
    --log-file "$logf" "$@" "http://127.0.0.1:$port/" >"$f" 2>&1 || true
  record "$scen" "$target" "$rnd" "$("$PY" "$BENCH/report.py" h2load "$f" "$logf")"
  rm -f "$logf"
}

median_rps() { # scenario target
  awk -F'\t' -v s="$1" -v t="$2" '$1 == s && $2 == t { print $4 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

answering() { # target...: each answers a GET, or the run stops
  local t
  for t in "$@"; do
    http_get "http://127.0.0.1:$(port_of "$t" h1)/" >/dev/null || die "$t does not answer"
  done
}

# The policy stack's Levee runs only for the scenarios that measure it.
UP=(levee nginx haproxy)
want a && UP=(levee levee-policy nginx haproxy)

start_all() {
  start origin; listening $ORIGIN_PORT
  local t
  for t in "${UP[@]}"; do start "$t"; done
  for t in "${UP[@]}"; do listening "$(port_of "$t" h1)"; done
  listening $NGINX_H2_PORT $HAPROXY_H2_PORT
  answering "${UP[@]}" direct
}

# Stop every proxy and start the given ones with their configs for $1
# workers (fresh processes, unpinned until pin_mode).
use_workers() { # $1: 1|2, then the proxies to start
  local t
  for t in "${PROXIES[@]}"; do stop "$t"; done
  WORKERS="$1"; shift
  for t in "$@"; do start "$t"; done
  for t in "$@"; do listening "$(port_of "$t" h1)"; done
  answering "$@"
}

warm_up() { # target...: connections, pools, page cache
  local t
  for t in "$@"; do
    loadgen "$t" timeout 20 wrk -t1 -c64 -d1s "http://127.0.0.1:$(port_of "$t" h1)/" >/dev/null 2>&1 || true
    loadgen "$t" timeout 20 wrk -t1 -c4 -d1s "http://127.0.0.1:$(port_of "$t" h1)/1m" >/dev/null 2>&1 || true
  done
}

# What the policy stack did since its Levee started (warm-up included), into
# the report's header: retries, rate-limited requests, breaker trips, sheds.
policy_counters() { # scenario
  local m="$RAW/$1.levee-policy.metrics"
  http_get "http://127.0.0.1:$LEVEE_POLICY_ADMIN_PORT/metrics" >"$m" 2>/dev/null || true
  echo "Policy stack's counters after ($1), since its start: $("$PY" "$BENCH/report.py" policy "$m")." | tee -a "$OUT/meta.md" >&2
}

# ---------------------------------------------------------------- meta
{
  machine_line
  echo "Versions: $(nginx_version), HAProxy $(haproxy_version), $(wrk_version), $(h2load_version), Levee $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Settings: rounds=$ROUNDS, ${DURATION}s per run, PIN=$PIN (a2 always unpinned), idle connections=$IDLE_CONNS, scenarios \"$SCENARIOS\", date $(date -u +%Y-%m-%dT%H:%MZ), load average at start $(loadavg)."
} >"$OUT/meta.md"
cat "$OUT/meta.md" >&2

start_all
log "all servers up: origin :$ORIGIN_PORT, levee :$LEVEE_PORT$(want a && echo ", levee-policy :$LEVEE_POLICY_PORT"), nginx :$NGINX_PORT/:$NGINX_H2_PORT, haproxy :$HAPROXY_PORT/:$HAPROXY_H2_PORT"
pin_mode "$PIN"
warm_up "${UP[@]}" direct

if [[ -n "${HOLD:-}" ]]; then
  log "holding for ${HOLD}s (levee pid ${PID[levee]}$(want a && echo ", levee-policy pid ${PID[levee-policy]}"))"; sleep "$HOLD"
fi

if want a; then
log "(a) HTTP/1.1 small responses, max rate (Levee also with its policy stack)"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r "${A_TARGETS[@]}"); do run_wrk a "$t" $r 64 /; sleep 1; done
done
policy_counters a
fi

if [[ "$PIN" == 1 ]] && want a_shared; then
  log "(a') the same, unpinned"
  pin_mode 0
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in $(order $r "${TARGETS[@]}"); do run_wrk a_shared "$t" $r 64 /; sleep 1; done
  done
  pin_mode 1
fi

if want b; then
NGINX_MAX=$(median_rps a nginx)
RATE=$(awk -v m="$NGINX_MAX" 'BEGIN { r = int(m / 2 / 64); if (r < 1) r = 1; print r }')
log "(b) fixed rate: $((RATE * 64)) req/s (64 connections x $RATE req/s; NGINX max was $NGINX_MAX)"
echo "$((RATE * 64))" >"$OUT/fixed_rate.txt"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r "${TARGETS[@]}"); do run_h2load b "$t" $r h1 -c64 --rps "$RATE"; sleep 1; done
done
fi

if want c; then
log "(c) HTTP/2 h2c small responses, max rate"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r "${TARGETS[@]}"); do run_h2load c "$t" $r h2 -c64 -m8; sleep 1; done
done
fi

if want d; then
log "(d) 1 MiB responses"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r "${TARGETS[@]}"); do run_wrk d "$t" $r 16 /1m; sleep 1; done
done
fi

if want a2; then
  # Two workers per proxy on two cores: no placement keeps the proxy off the
  # cores the origin and wrk use, so this one runs unpinned (as a' does).
  log "(a2) as (a), two workers per proxy, unpinned (fresh processes)"
  use_workers 2 levee levee-policy nginx haproxy
  pin_mode 0
  warm_up levee levee-policy nginx haproxy
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in $(order $r "${A_TARGETS[@]}"); do run_wrk a2 "$t" $r 64 /; sleep 1; done
  done
  policy_counters a2
  use_workers 1 levee nginx haproxy
  pin_mode "$PIN"
fi

if want e; then
log "(e) $IDLE_CONNS idle keep-alive connections per proxy (fresh processes)"
for t in levee nginx haproxy; do
  stop "$t"; start "$t"; listening "$(port_of $t h1)"
  [[ "$PIN" == 1 ]] && set_affinity $PROXY_CPU "$t"
  sleep 0.5
  pids=$(pids_of "$t" | tr ' ' ',')
  "$PY" "$BENCH/idle_conns.py" --port "$(port_of $t h1)" --n "$IDLE_CONNS" --hold "$IDLE_HOLD" \
    --pids "$pids" --deadline 120 >"$IDLE_DIR/$t.json" 2>"$RAW/e.$t.err" || log "idle run against $t failed"
  log "  $t: $(head -c 300 "$IDLE_DIR/$t.json" 2>/dev/null || true)"
  stop "$t"
done
fi

cleanup
"$PY" "$BENCH/report.py" table "$RESULTS" "$IDLE_DIR" "$OUT/meta.md" | tee "$OUT/summary.md"
