#!/usr/bin/env bash
# What a release costs on the request path: the same Levee binary in front of
# one NGINX origin, a plain route against the same route with a traffic split
# (0.01% canary, sticky by header, per-version counting) and a 1% mirror to a
# second origin, measured alternately with wrk, pinned (Levee on CPU 0, wrk
# and the origin on CPU 1), reporting req/s and Levee's CPU per request
# (user + system from /proc) for each, and the paired ratio.
#
#   LEVEE_BIN=target/release/levee bash bench/release_cost.sh
#
# With LEVEE_BIN_B set, it compares two binaries instead, both on the plain
# route (e.g. before and after a change on the request path): "plain" runs
# LEVEE_BIN, "release" runs LEVEE_BIN_B.
#
# Knobs: ROUNDS (default 5), DURATION (seconds per run, default 5),
# CONNS (default 64), PORT_BASE (default 29000). Everything on 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LEVEE_BIN="${LEVEE_BIN:-$ROOT/target/release/levee}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-64}"
PORT_BASE="${PORT_BASE:-29000}"
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; nginx -s stop -c "$OUT/origin.conf" 2>/dev/null || true; rm -rf "$OUT"' EXIT

ORIGIN=$((PORT_BASE + 81))
SHADOW=$((PORT_BASE + 82))
cat >"$OUT/origin.conf" <<EOF
worker_processes 1;
pid $OUT/origin.pid;
error_log $OUT/origin.error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN; location / { return 200 "ok"; } }
  server { listen 127.0.0.1:$SHADOW; location / { return 200 "ok"; } }
}
EOF
taskset -c 1 nginx -c "$OUT/origin.conf"

levee_config() { # name port admin_port extra
  cat <<EOF
[admin]
listen = "127.0.0.1:$3"
[runtime]
access_log = false
worker_threads = 1
watch_config = false
handover_socket = "off"
[[listeners]]
name = "bench"
listen = "127.0.0.1:$2"
[[routes]]
name = "all"
cluster = "origin"
$4
[[clusters]]
name = "origin"
endpoints = ["127.0.0.1:$ORIGIN"]
pool = { max_idle_per_endpoint = 1024 }
[[clusters]]
name = "canary"
endpoints = ["127.0.0.1:$ORIGIN"]
pool = { max_idle_per_endpoint = 1024 }
[[clusters]]
name = "shadow"
endpoints = ["127.0.0.1:$SHADOW"]
EOF
}
PLAIN_PORT=$((PORT_BASE + 1)); RELEASE_PORT=$((PORT_BASE + 2))
levee_config plain $PLAIN_PORT $((PORT_BASE + 901)) "" >"$OUT/plain.toml"
levee_config release $RELEASE_PORT $((PORT_BASE + 902)) \
  'split = { cluster = "canary", weight = 0.01, stickiness = { header = "x-user" } }
mirror = { cluster = "shadow", weight = 1 }' >"$OUT/release.toml"
if [[ -n "${LEVEE_BIN_B:-}" ]]; then
  levee_config release $RELEASE_PORT $((PORT_BASE + 902)) "" >"$OUT/release.toml"
fi
for name in plain release; do
  bin="$LEVEE_BIN"
  [[ "$name" == release && -n "${LEVEE_BIN_B:-}" ]] && bin="$LEVEE_BIN_B"
  "$bin" check -c "$OUT/$name.toml" >/dev/null
  taskset -c 0 "$bin" run -c "$OUT/$name.toml" >"$OUT/$name.log" 2>&1 &
  echo $! >"$OUT/$name.pid"
done
sleep 1
for name in plain release; do kill -0 "$(cat "$OUT/$name.pid")" 2>/dev/null || { echo "levee ($name) exited:"; cat "$OUT/$name.log"; exit 1; }; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # name port -> "rps cpu_us_per_req"
  local pid; pid=$(cat "$OUT/$1.pid")
  local before; before=$(cpu_ticks "$pid")
  local rps
  rps=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -H 'x-user: u1' "http://127.0.0.1:$2/" |
    awk '/Requests\/sec/ {print $2}')
  local after; after=$(cpu_ticks "$pid")
  local hz; hz=$(getconf CLK_TCK)
  python3 -c "r=$rps; t=($after-$before)/$hz; print(f'{r:.0f} {t/(r*$DURATION)*1e6:.2f}')"
}
# Warm both up.
run plain $PLAIN_PORT >/dev/null; run release $RELEASE_PORT >/dev/null
printf '%-6s %-10s %-14s %-10s %-14s\n' round plain_rps plain_us/req release_rps release_us/req
for i in $(seq 1 "$ROUNDS"); do
  read -r prps pcpu < <(run plain $PLAIN_PORT)
  read -r rrps rcpu < <(run release $RELEASE_PORT)
  printf '%-6s %-10s %-14s %-10s %-14s\n' "$i" "$prps" "$pcpu" "$rrps" "$rcpu"
  echo "$prps $pcpu $rrps $rcpu" >>"$OUT/rows"
done
python3 - "$OUT/rows" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
rps = statistics.median(r[2] / r[0] for r in rows)
cpu = statistics.median(r[3] / r[1] for r in rows)
print(f"median paired ratio release/plain: req/s {rps:.3f}, CPU per request {cpu:.3f}")
EOF
