#!/usr/bin/env bash
# End-to-end benchmark: Levee vs NGINX vs HAProxy in front of one shared NGINX
# origin, plus the origin measured directly. Everything on 127.0.0.1.
#
#   bash bench/run.sh                 # full run (3 rounds x 8 s per run, ~11 min)
#   QUICK=1 bash bench/run.sh         # 1 round x 3 s, 2,000 idle connections (~2 min)
#
# Knobs (environment): ROUNDS, DURATION (seconds per run), IDLE_CONNS, PIN (1:
# proxy on CPU 0, origin and load generator on CPU 1; 0: no pinning),
# PORT_BASE (default 28000), LEVEE_BIN (skip the build), SKIP_INSTALL=1,
# SCENARIOS (subset of "a a_shared b c d e"; b needs a), HOLD=SECONDS (after
# the warm-up, keep the servers up that long for profiling, then go on).
# Shortest run: QUICK=1 SCENARIOS=a SKIP_INSTALL=1 LEVEE_BIN=path (~1 min).
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
SCENARIOS="${SCENARIOS:-a a_shared b c d e}"   # a subset, e.g. SCENARIOS="a c"
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

ORIGIN_PORT=$((PORT_BASE + 81))      # HTTP/1.1
ORIGIN_H2_PORT=$((PORT_BASE + 82))   # h2c (prior knowledge)
LEVEE_PORT=$((PORT_BASE + 0))        # HTTP/1.1 and h2c on one port
LEVEE_ADMIN_PORT=$((PORT_BASE + 901))
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
printf '# scenario\ttarget\tround\trps\tp50_us\tp99_us\terrors\n' >"$RESULTS"
head -c 1048576 /dev/urandom >"$RUN/www/1m"
chmod 644 "$RUN/www/1m"

ports_free $ORIGIN_PORT $ORIGIN_H2_PORT $LEVEE_PORT $LEVEE_ADMIN_PORT $NGINX_PORT $NGINX_H2_PORT $HAPROXY_PORT $HAPROXY_H2_PORT
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
nginx_common() { # $1: name
  cat <<EOF
$NGINX_USER
worker_processes 1;
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

{
  nginx_common nginx
  cat <<EOF
events { worker_connections $((NOFILE - 100)); }
http {
$(nginx_http_common nginx)
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
} >"$RUN/nginx.conf"

cat >"$RUN/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $((IDLE_CONNS + 100))
  ulimit-n $NOFILE
  # maxconn is sized for the idle-connection test; HAProxy reserves two
  # descriptors per connection and would refuse to start where the hard
  # limit is 20,000. Idle clients need one each, so only warn.
  no strict-limits
  pidfile $RUN/haproxy.pid
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

cat >"$RUN/levee.toml" <<EOF
[admin]
listen = "127.0.0.1:$LEVEE_ADMIN_PORT"
[runtime]
access_log = false
worker_threads = 1
watch_config = false
[[listeners]]
name = "bench"
listen = "127.0.0.1:$LEVEE_PORT"
[listeners.limits]
max_connections = 20000
idle_timeout = "75s"
header_read_timeout = "75s"
[[routes]]
name = "all"
cluster = "origin"
match = { path = { prefix = "/" } }
[[clusters]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN_PORT"]
protocol = "http1"
balancer = { kind = "round_robin" }
pool = { max_idle_per_endpoint = 1024, idle_timeout = "90s" }
EOF

nginx -t -q -c "$RUN/origin.conf" -e "$RUN/origin.error.log" >/dev/null 2>"$RUN/origin.test.log" || { cat "$RUN/origin.test.log" >&2; die "origin config"; }
nginx -t -q -c "$RUN/nginx.conf" -e "$RUN/nginx.error.log" >/dev/null 2>"$RUN/nginx.test.log" || { cat "$RUN/nginx.test.log" >&2; die "nginx config"; }
haproxy -c -q -f "$RUN/haproxy.cfg" >"$RUN/haproxy.test.log" 2>&1 || { cat "$RUN/haproxy.test.log" >&2; die "haproxy config"; }
"$LEVEE_BIN" check -c "$RUN/levee.toml" >"$RUN/levee.check.log" 2>&1 || { cat "$RUN/levee.check.log" >&2; die "levee config"; }

# ---------------------------------------------------------------- processes
declare -A PID=()

start() { # $1 name
  case "$1" in
    origin) nginx -c "$RUN/origin.conf" -e "$RUN/origin.error.log" >"$RUN/origin.out" 2>&1 & ;;
    nginx) nginx -c "$RUN/nginx.conf" -e "$RUN/nginx.error.log" >"$RUN/nginx.out" 2>&1 & ;;
    haproxy) haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.out" 2>&1 & ;;
    levee) RUST_LOG="${RUST_LOG:-warn}" "$LEVEE_BIN" run -c "$RUN/levee.toml" >"$RUN/levee.out" 2>&1 & ;;
  esac
  PID[$1]=$!
}

stop() { # $1 name
  stop_pid "${PID[$1]:-}"
  unset "PID[$1]"
}

cleanup() {
  local n
  for n in levee nginx haproxy origin; do stop "$n"; done
}
set_cleanup_traps

listening() { # port...
  local p
  for p in "$@"; do wait_port "$p" || die "nothing listening on $p"; done
}

# The process and its children (NGINX's worker), all threads.
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
    for n in levee nginx haproxy; do set_affinity $PROXY_CPU "$n"; done
  else
    for n in origin levee nginx haproxy; do set_affinity 0,1 "$n"; done
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
    nginx:h1) echo $NGINX_PORT ;; nginx:h2) echo $NGINX_H2_PORT ;;
    haproxy:h1) echo $HAPROXY_PORT ;; haproxy:h2) echo $HAPROXY_H2_PORT ;;
    direct:h1) echo $ORIGIN_PORT ;; direct:h2) echo $ORIGIN_H2_PORT ;;
  esac
}

TARGETS=(levee nginx haproxy direct)
# Round r runs the targets rotated by r, so no proxy always goes first.
order() { # $1 round
  local i n=${#TARGETS[@]}
  for ((i = 0; i < n; i++)); do echo "${TARGETS[$(((i + $1) % n))]}"; done
}

record() { # scenario target round "rps p50 p99 errors"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
  log "  $1 $2 round $3: $(echo "$4" | awk -F'\t' '{printf "%.0f req/s, p50 %.0f us, p99 %.0f us, errors %s", $1, $2, $3, $4}')"
}

run_wrk() { # scenario target round conns path
  local f="$RAW/$1.$2.r$3.txt" hist="$RAW/$1.$2.r$3.hist" port; port=$(port_of "$2" h1)
  # wrk_hist.lua writes wrk's latency histogram, for report.py's percentiles.
  WRK_HIST="$hist" loadgen "$2" timeout $((DURATION + 60)) wrk -t1 -c"$4" -d"${DURATION}s" --timeout 5s --latency \
    -s "$BENCH/wrk_hist.lua" "http://127.0.0.1:$port$5" >"$f" 2>&1 || true
  record "$1" "$2" "$3" "$("$PY" "$BENCH/report.py" wrk "$f" "$hist")"
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

start_all() {
  start origin; listening $ORIGIN_PORT
  start levee; start nginx; start haproxy
  listening $LEVEE_PORT $NGINX_PORT $HAPROXY_PORT $NGINX_H2_PORT $HAPROXY_H2_PORT
  local t
  for t in levee nginx haproxy direct; do
    http_get "http://127.0.0.1:$(port_of "$t" h1)/" >/dev/null || die "$t does not answer"
  done
}

# ---------------------------------------------------------------- meta
{
  machine_line
  echo "Versions: $(nginx_version), HAProxy $(haproxy_version), $(wrk_version), $(h2load_version), Levee $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Settings: rounds=$ROUNDS, ${DURATION}s per run, PIN=$PIN, idle connections=$IDLE_CONNS, date $(date -u +%Y-%m-%dT%H:%MZ), load average at start $(loadavg)."
} >"$OUT/meta.md"
cat "$OUT/meta.md" >&2

start_all
log "all servers up: origin :$ORIGIN_PORT, levee :$LEVEE_PORT, nginx :$NGINX_PORT/:$NGINX_H2_PORT, haproxy :$HAPROXY_PORT/:$HAPROXY_H2_PORT"
pin_mode "$PIN"
# Warm-up: connections, pools, page cache.
for t in "${TARGETS[@]}"; do
  loadgen "$t" timeout 20 wrk -t1 -c64 -d1s "http://127.0.0.1:$(port_of "$t" h1)/" >/dev/null 2>&1 || true
  loadgen "$t" timeout 20 wrk -t1 -c4 -d1s "http://127.0.0.1:$(port_of "$t" h1)/1m" >/dev/null 2>&1 || true
done

if [[ -n "${HOLD:-}" ]]; then
  log "holding for ${HOLD}s (levee pid ${PID[levee]})"; sleep "$HOLD"
fi

if want a; then
log "(a) HTTP/1.1 small responses, max rate"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r); do run_wrk a "$t" $r 64 /; sleep 1; done
done
fi

if [[ "$PIN" == 1 ]] && want a_shared; then
  log "(a') the same, unpinned"
  pin_mode 0
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in $(order $r); do run_wrk a_shared "$t" $r 64 /; sleep 1; done
  done
  pin_mode 1
fi

if want b; then
NGINX_MAX=$(median_rps a nginx)
RATE=$(awk -v m="$NGINX_MAX" 'BEGIN { r = int(m / 2 / 64); if (r < 1) r = 1; print r }')
log "(b) fixed rate: $((RATE * 64)) req/s (64 connections x $RATE req/s; NGINX max was $NGINX_MAX)"
echo "$((RATE * 64))" >"$OUT/fixed_rate.txt"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r); do run_h2load b "$t" $r h1 -c64 --rps "$RATE"; sleep 1; done
done
fi

if want c; then
log "(c) HTTP/2 h2c small responses, max rate"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r); do run_h2load c "$t" $r h2 -c64 -m8; sleep 1; done
done
fi

if want d; then
log "(d) 1 MiB responses"
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $(order $r); do run_wrk d "$t" $r 16 /1m; sleep 1; done
done
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
