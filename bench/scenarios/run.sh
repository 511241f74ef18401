#!/usr/bin/env bash
# Fault-injection reliability benchmark: the same faults, under the same
# open-model load, against Levee, NGINX and HAProxy, each in front of three
# fault-injectable upstreams. Everything on 127.0.0.1. See RELIABILITY.md.
#
#   bash bench/scenarios/run.sh            # full run: 4 scenarios x 4 proxies x 30 s (~9 min + build)
#   QUICK=1 bash bench/scenarios/run.sh    # smoke run: 10 s per run (~2.5 min + build)
#   SCENARIOS=freeze PROXIES="levee nginx haproxy" BALANCERS="rr lr" bash bench/scenarios/run.sh
#                                          # the frozen endpoint, round robin and least request (~3.5 min + build)
#   QUICK=1 SCENARIOS=freeze PROXIES="levee nginx haproxy" SKIP_INSTALL=1 LEVEE_BIN=path \
#     bash bench/scenarios/run.sh          # shortest check (~1 min)
#   SCENARIOS=region PROXIES="levee levee-cb nginx haproxy" ROUNDS=3 HEAL=15 bash bench/scenarios/run.sh
#                                          # the region drill (RELIABILITY.md, issue 17; ~8 min + build)
#
# Knobs (environment):
#   RATE=400             client requests per second (Poisson arrivals)
#   STEADY=5 FAULT=15 HEAL=10
#                        seconds before the fault, with the fault, after healing
#   ALL503=5             seconds the "all503" fault lasts (the run keeps the
#                        same total length; the rest is recovery)
#   CLIENT_TIMEOUT=2     per-request client timeout (s), counted as an error
#   LATENCY_MS=0         fixed latency of the upstreams' normal answers
#   SCENARIOS="dead hang 503 all503"   (also: freeze, one endpoint's process
#                        stopped with SIGSTOP for the fault, then SIGCONT;
#                        region, the region drill: six endpoints in two
#                        regions, the three primary ones dead for the fault,
#                        configs in conf/region/)
#   FAILBACK_DELAY=0s    region: Levee's locality.failback_delay
#   PROXIES="levee levee-cb nginx haproxy"
#   BALANCERS="rr"       rr: round robin; lr: least requests (Levee
#                        least_request, NGINX least_conn, HAProxy leastconn)
#   ROUNDS=1             repeat every (scenario, proxy) run
#   PIN=1                proxy on CPU 0, upstreams and load generator on CPU 1
#   PORT_BASE=29000      ports PORT_BASE+0..+999 (bench/run.sh uses 28000)
#   LEVEE_BIN=path       skip the build (LEVEE_REV=text describes it in the
#                        report);  SKIP_INSTALL=1  skip apt-get
#   SCEN_OUT=dir         output directory (default bench/scenarios/out)
# Raw outputs go to bench/scenarios/out/ (gitignored); the Markdown table is
# printed at the end and written to bench/scenarios/out/summary.md.
# Shared code: bench/lib.sh (shell), bench/benchlib.py (Python; percentiles
# are nearest rank, the rule of every report).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SC="$ROOT/bench/scenarios"
OUT="${SCEN_OUT:-$SC/out}"
QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
  STEADY="${STEADY:-2}"; FAULT="${FAULT:-5}"; HEAL="${HEAL:-3}"; ALL503="${ALL503:-2}"
else
  STEADY="${STEADY:-5}"; FAULT="${FAULT:-15}"; HEAL="${HEAL:-10}"; ALL503="${ALL503:-5}"
fi
RATE="${RATE:-400}"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-2}"
LATENCY_MS="${LATENCY_MS:-0}"
FAILBACK_DELAY="${FAILBACK_DELAY:-0s}"
SCENARIOS="${SCENARIOS:-dead hang 503 all503}"
PROXIES="${PROXIES:-levee levee-cb nginx haproxy}"
BALANCERS="${BALANCERS:-rr}"
ROUNDS="${ROUNDS:-1}"
PIN="${PIN:-1}"
PORT_BASE="${PORT_BASE:-29000}"
TOTAL=$((STEADY + FAULT + HEAL))

PROXY_PORT=$((PORT_BASE + 0))
LEVEE_ADMIN_PORT=$((PORT_BASE + 901))
CTL_PORT=$((PORT_BASE + 100))
UP1=$((PORT_BASE + 101)); UP2=$((PORT_BASE + 102)); UP3=$((PORT_BASE + 103))
# The region drill's secondary region.
UP4=$((PORT_BASE + 104)); UP5=$((PORT_BASE + 105)); UP6=$((PORT_BASE + 106))

LOG_TAG=scenarios PY=python3
# log, die, install_missing, levee_bin, ports_free, port_free, wait_port,
# wait_answers, http_get, pin, stop_pid, set_cleanup_traps, haproxy_*,
# versions, machine_line
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

for s in $SCENARIOS; do
  case "$s" in dead|hang|503|all503|freeze|region) ;; *) die "unknown scenario $s (dead hang 503 all503 freeze region)";; esac
done
for p in $PROXIES; do
  case "$p" in levee|levee-cb|nginx|haproxy) ;; *) die "unknown proxy $p (levee levee-cb nginx haproxy)";; esac
done
for b in $BALANCERS; do
  case "$b" in rr|lr) ;; *) die "unknown balancer $b (rr lr)";; esac
done
((ALL503 <= FAULT)) || die "ALL503 ($ALL503) must not exceed FAULT ($FAULT)"

# ---------------------------------------------------------------- tools
need=()
[[ " $PROXIES " == *" nginx "* ]] && ! have nginx && need+=("$NGINX_PKG")
[[ " $PROXIES " == *" haproxy "* ]] && ! have haproxy && need+=(haproxy)
have python3 || need+=(python3)
[[ "$PIN" == 1 ]] && ! have taskset && need+=(util-linux)
install_missing strict "${need[@]}"

# ---------------------------------------------------------------- build
# levee-cb: Levee with circuit breakers as well (conf/levee-cb.toml.in).
has_levee() { [[ " $PROXIES " == *" levee "* || " $PROXIES " == *" levee-cb "* ]]; }
if has_levee; then levee_bin; fi

# ---------------------------------------------------------------- layout
RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW"

ports_free $PROXY_PORT $LEVEE_ADMIN_PORT $CTL_PORT $UP1 $UP2 $UP3
has_region() { [[ " $SCENARIOS " == *" region "* ]]; }
if has_region; then ports_free $UP4 $UP5 $UP6; fi

# The config templates of a scenario: conf/region/ for the region drill
# (six endpoints in two regions), conf/ for the others.
conf_dir() { # scenario
  if [[ "$1" == region ]]; then echo "$SC/conf/region"; else echo "$SC/conf"; fi
}
# The template sets the selected scenarios use.
CONF_SETS=()
for s in $SCENARIOS; do
  if [[ "$s" == region ]]; then c=region; else c=default; fi
  [[ " ${CONF_SETS[*]-} " == *" $c "* ]] || CONF_SETS+=("$c")
done

# The balancer, in each proxy's terms: rr (round robin, the default) or lr
# (fewest requests, or connections, in flight).
balancer_lines() { # rr|lr: sets LEVEE_BALANCER, NGINX_BALANCER, HAPROXY_BALANCER
  case "$1" in
    rr) LEVEE_BALANCER=round_robin; NGINX_BALANCER=""; HAPROXY_BALANCER=roundrobin ;;
    lr) LEVEE_BALANCER=least_request; NGINX_BALANCER="least_conn;"; HAPROXY_BALANCER=leastconn ;;
  esac
}

render() { # template run-dir balancer
  local LEVEE_BALANCER NGINX_BALANCER HAPROXY_BALANCER
  balancer_lines "$3"
  sed -e "s|@RUN@|$2|g" -e "s|@PROXY_PORT@|$PROXY_PORT|g" -e "s|@LEVEE_ADMIN_PORT@|$LEVEE_ADMIN_PORT|g" \
    -e "s|@UP1@|$UP1|g" -e "s|@UP2@|$UP2|g" -e "s|@UP3@|$UP3|g" -e "s|@NGINX_USER@|$NGINX_USER|g" \
    -e "s|@UP4@|$UP4|g" -e "s|@UP5@|$UP5|g" -e "s|@UP6@|$UP6|g" -e "s|@FAILBACK_DELAY@|$FAILBACK_DELAY|g" \
    -e "s|@LEVEE_BALANCER@|$LEVEE_BALANCER|g" -e "s|@NGINX_BALANCER@|$NGINX_BALANCER|g" \
    -e "s|@HAPROXY_BALANCER@|$HAPROXY_BALANCER|g" "$1"
}

# Check every config once before spending time on runs.
CHK="$OUT/check"
rm -rf "$CHK"; mkdir -p "$CHK/tmp"
for cs in "${CONF_SETS[@]}"; do
  cd_=$(conf_dir "$cs"); pre=""
  [[ "$cs" == region ]] && pre="region."
  for b in $BALANCERS; do
    for p in $PROXIES; do
      case "$p" in
        levee|levee-cb)
          render "$cd_/$p.toml.in" "$CHK" "$b" >"$CHK/$pre$p.$b.toml"
          "$LEVEE_BIN" check -c "$CHK/$pre$p.$b.toml" >"$CHK/$pre$p.$b.check.log" 2>&1 || { cat "$CHK/$pre$p.$b.check.log" >&2; die "$pre$p config ($b)"; } ;;
        nginx)
          render "$cd_/nginx.conf.in" "$CHK" "$b" >"$CHK/${pre}nginx.$b.conf"
          nginx -t -q -c "$CHK/${pre}nginx.$b.conf" -e "$CHK/nginx.error.log" >"$CHK/${pre}nginx.$b.check.log" 2>&1 || { cat "$CHK/${pre}nginx.$b.check.log" >&2; die "${pre}nginx config ($b)"; } ;;
        haproxy)
          render "$cd_/haproxy.cfg.in" "$CHK" "$b" >"$CHK/${pre}haproxy.$b.cfg"
          haproxy -c -q -f "$CHK/${pre}haproxy.$b.cfg" >"$CHK/${pre}haproxy.$b.check.log" 2>&1 || { cat "$CHK/${pre}haproxy.$b.check.log" >&2; die "${pre}haproxy config ($b)"; } ;;
      esac
    done
  done
done

# ---------------------------------------------------------------- processes
UP_PID=""; PROXY_PID=""; UP_PIDFILE=""

cleanup() {
  stop_pid "$PROXY_PID"; PROXY_PID=""
  stop_pid "$UP_PID"; UP_PID=""
  # The endpoint processes of the freeze scenario: their supervisor (UP_PID)
  # stops them, and the kernel kills them if it dies; this is in case both
  # failed (SIGKILL also ends a stopped process). Only pids that are still
  # our upstream.py are touched.
  if [[ -n "$UP_PIDFILE" && -f "$UP_PIDFILE" ]]; then
    local pid
    while read -r pid; do
      if [[ -n "$pid" ]] && grep -qa "upstream.py" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$UP_PIDFILE"
  fi
  UP_PIDFILE=""
}
set_cleanup_traps

start_upstreams() { # run-dir scenario
  local p extra=() ports="$UP1,$UP2,$UP3"
  # The region drill: three primary endpoints, then three secondary ones.
  [[ "$2" == region ]] && ports+=",$UP4,$UP5,$UP6"
  for p in $CTL_PORT ${ports//,/ }; do port_free "$p" || die "port $p is still in use"; done
  # The freeze scenario stops one endpoint's process, so each endpoint is
  # its own process there; the other scenarios keep the one process they
  # were measured with.
  if [[ "$2" == freeze ]]; then
    UP_PIDFILE="$1/upstream.pids"
    extra=(--process-per-endpoint --pidfile "$UP_PIDFILE")
  fi
  pin 1 "$PY" "$SC/upstream.py" --ports "$ports" --control-port "$CTL_PORT" \
    --latency-ms "$LATENCY_MS" "${extra[@]}" >"$1/upstream.log" 2>&1 &
  UP_PID=$!
  wait_port "$CTL_PORT" || die "upstreams did not start"
  for p in ${ports//,/ }; do wait_port "$p" || die "upstreams did not start"; done
}

start_proxy() { # proxy run-dir balancer scenario
  local p="$1" d="$2" b="$3" cdir
  cdir=$(conf_dir "$4")
  mkdir -p "$d/tmp"
  port_free "$PROXY_PORT" && port_free "$LEVEE_ADMIN_PORT" || die "proxy port $PROXY_PORT or $LEVEE_ADMIN_PORT is still in use"
  case "$p" in
    levee|levee-cb)
      render "$cdir/$p.toml.in" "$d" "$b" >"$d/levee.toml"
      RUST_LOG="${RUST_LOG:-info}" pin 0 "$LEVEE_BIN" run -c "$d/levee.toml" >"$d/levee.log" 2>&1 & ;;
    nginx)
      render "$cdir/nginx.conf.in" "$d" "$b" >"$d/nginx.conf"
      pin 0 nginx -c "$d/nginx.conf" -e "$d/nginx.error.log" >"$d/nginx.out" 2>&1 & ;;
    haproxy)
      render "$cdir/haproxy.cfg.in" "$d" "$b" >"$d/haproxy.cfg"
      # A stats socket, to save the servers' state at the end of the run.
      haproxy_stats_socket "$d/haproxy.cfg" "$d"
      pin 0 haproxy -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 & ;;
  esac
  PROXY_PID=$!
  wait_port "$PROXY_PORT" || die "$p did not start (see $d)"
  # Up and routing: a few requests must succeed.
  wait_answers "http://127.0.0.1:$PROXY_PORT/warmup" 6 || die "$p does not answer (see $d)"
}

proxy_state() { # proxy run-dir: the proxy's own view at the end of the run
  case "$1" in
    levee|levee-cb)
      http_get "http://127.0.0.1:$LEVEE_ADMIN_PORT/metrics" >"$2/levee.metrics" 2>/dev/null || true
      http_get "http://127.0.0.1:$LEVEE_ADMIN_PORT/api/v1/clusters" >"$2/levee.clusters.json" 2>/dev/null || true ;;
    haproxy) haproxy_stat "$2" ;;
  esac
}

set_events() { # scenario: sets EV, the --at arguments of load.py
  local ctl="http://127.0.0.1:$CTL_PORT" heal=$((STEADY + FAULT))
  case "$1" in
    dead|hang|503)
      EV=(--at "$STEADY:fault:$ctl/mode?ep=0&mode=$1" --at "$heal:heal:$ctl/mode?ep=0&mode=normal") ;;
    all503)
      EV=(--at "$STEADY:fault:$ctl/mode?ep=all&mode=503" --at "$((STEADY + ALL503)):heal:$ctl/mode?ep=all&mode=normal") ;;
    freeze)
      EV=(--at "$STEADY:fault:$ctl/signal?ep=0&sig=STOP" --at "$heal:heal:$ctl/signal?ep=0&sig=CONT") ;;
    region)
      # The whole primary region (endpoints 0-2) dies, then comes back.
      EV=(--at "$STEADY:fault:$ctl/mode?ep=0,1,2&mode=dead" --at "$heal:heal:$ctl/mode?ep=0,1,2&mode=normal") ;;
  esac
}

region_meta() { # scenario: the region drill's extra meta.json fields
  [[ "$1" == region ]] && printf ', "primary": [0, 1, 2], "secondary": [3, 4, 5], "failback_delay": "%s"' "$FAILBACK_DELAY"
  return 0
}

run_one() { # proxy scenario round balancer
  local p="$1" s="$2" r="$3" b="$4" d="$RAW/$2.$1.$4.r$3"
  mkdir -p "$d"
  start_upstreams "$d" "$s"
  start_proxy "$p" "$d" "$b" "$s"
  http_get "http://127.0.0.1:$CTL_PORT/reset" >/dev/null
  local EV=()
  set_events "$s"
  (pin 1 "$PY" "$SC/load.py" --url "http://127.0.0.1:$PROXY_PORT/" --rate "$RATE" --duration "$TOTAL" \
    --timeout "$CLIENT_TIMEOUT" --seed "$r" "${EV[@]}" --out "$d/load.json" 2>"$d/load.log") ||
    { cat "$d/load.log" >&2; die "load generator failed ($d)"; }
  # After the heal (SIGCONT in the freeze scenario): give a thawed endpoint
  # a moment to read what was buffered for it before counting.
  [[ "$s" == freeze ]] && sleep 1
  http_get "http://127.0.0.1:$CTL_PORT/dump" >"$d/upstream.json"
  proxy_state "$p" "$d"
  cat >"$d/meta.json" <<EOF
{"proxy": "$p", "balancer": "$b", "scenario": "$s", "round": $r, "rate": $RATE, "steady": $STEADY, "fault": $FAULT,
 "heal": $HEAL, "all503": $ALL503, "total": $TOTAL, "client_timeout": $CLIENT_TIMEOUT$(region_meta "$s")}
EOF
  cleanup
  log "  $s $p ($b) round $r: $("$PY" "$SC/report.py" --one "$d")"
}

# ---------------------------------------------------------------- meta
{
  machine_line
  v=""
  # LEVEE_REV describes a binary built elsewhere (LEVEE_BIN); by default the
  # tree's commit, and whether the crates differ from it.
  if has_levee; then v+="$("$LEVEE_BIN" --version) ($(levee_rev)), "; fi
  if [[ " $PROXIES " == *" nginx "* ]]; then v+="$(nginx_version), "; fi
  if [[ " $PROXIES " == *" haproxy "* ]]; then v+="HAProxy $(haproxy_version), "; fi
  v+="$($PY --version)"
  echo "Versions: $v."
  rs=""
  if has_region; then rs=", FAILBACK_DELAY=$FAILBACK_DELAY (Levee, region drill)"; fi
  echo "Settings: RATE=$RATE req/s (Poisson), BALANCERS=$BALANCERS, STEADY=$STEADY s, FAULT=$FAULT s, HEAL=$HEAL s, ALL503=$ALL503 s, CLIENT_TIMEOUT=$CLIENT_TIMEOUT s, LATENCY_MS=$LATENCY_MS, ROUNDS=$ROUNDS, PIN=$PIN$rs; date $(date -u +%Y-%m-%dT%H:%MZ); load average at start $(loadavg)."
} >"$OUT/meta.md"
cat "$OUT/meta.md" >&2

START=$(date +%s)
# Every (proxy, balancer) pair is one entry of the rotation.
PLIST=()
for b in $BALANCERS; do
  for p in $PROXIES; do PLIST+=("$p:$b"); done
done
np=${#PLIST[@]}
k=0
for ((r = 1; r <= ROUNDS; r++)); do
  for s in $SCENARIOS; do
    log "scenario $s, round $r"
    # Rotate the proxies' order, so that none always goes first.
    for ((i = 0; i < np; i++)); do
      pb="${PLIST[$(((i + k) % np))]}"
      run_one "${pb%%:*}" "$s" "$r" "${pb##*:}"
    done
    k=$((k + 1))
  done
done
echo "Load average at the end: $(loadavg); wall time $(($(date +%s) - START)) s." >>"$OUT/meta.md"

"$PY" "$SC/report.py" "$OUT" | tee "$OUT/summary.md"
