# shellcheck shell=bash disable=SC2034 # variables set here are for the callers
# Shell helpers shared by the benchmark scripts (bench/run.sh,
# bench/scenarios/run.sh, bench/overload/run.sh): logging, installing and
# locating the tools, the Levee binary, ports, processes, pinning, cleanup
# traps, the meta lines of the reports. Sourced, not run; the Python side is
# bench/benchlib.py.
#
# The caller sets, before sourcing: LOG_TAG (the prefix of log lines), PIN
# (1: pin to CPUs), PY (a python3; default python3). Functions that start or
# stop processes leave the bookkeeping (which pids) to the caller.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_ROOT=$(cd "$BENCH_DIR/.." && pwd)
BENCHLIB="$BENCH_DIR/benchlib.py"
PY="${PY:-python3}"
LOG_TAG="${LOG_TAG:-bench}"
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$LOG_TAG" -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools

SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; fi
NGINX_PKG=nginx-light
apt-cache show nginx-light >/dev/null 2>&1 || NGINX_PKG=nginx
# nginx runs its workers as root only when told to (the configs' @NGINX_USER@).
NGINX_USER=""
[[ $(id -u) -eq 0 ]] && NGINX_USER="user root;"

have() { # command: on PATH (which includes /usr/sbin)
  command -v "$1" >/dev/null
}

install_missing() { # strict|lenient package...: apt-get them unless SKIP_INSTALL=1
  # With SKIP_INSTALL=1, strict dies and lenient goes on without them.
  local mode="$1"; shift
  (($#)) || return 0
  if [[ "${SKIP_INSTALL:-0}" == 1 ]]; then
    [[ "$mode" == strict ]] && die "missing $* (and SKIP_INSTALL=1)"
    log "missing $* (SKIP_INSTALL=1: not installing)"
    return 0
  fi
  log "installing $*"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

levee_bin() { # sets LEVEE_BIN: as given, or built (release, target/bench)
  if [[ -z "${LEVEE_BIN:-}" ]]; then
    log "building levee (release, target/bench)"
    (cd "$BENCH_ROOT" && CARGO_TARGET_DIR=target/bench cargo build --release -p levee --locked >&2)
    LEVEE_BIN="$BENCH_ROOT/target/bench/release/levee"
  fi
  [[ -x "$LEVEE_BIN" ]] || die "no levee binary at $LEVEE_BIN"
}

# Versions, first line only. awk reads the whole output: "cmd | head -1"
# under pipefail fails when head exits first and cmd gets SIGPIPE.
first_line() { # command...: its first output line (stdout and stderr)
  "$@" 2>&1 | awk 'NR == 1' || true
}
haproxy_version() { first_line haproxy -v | awk '{print $3}'; }
nginx_version() { first_line nginx -v | sed 's/.*: //'; }    # "nginx/1.22.1"
wrk_version() { first_line wrk -v | awk '{print "wrk", $2}'; } # wrk -v exits 1
h2load_version() { first_line h2load --version; }
redis_version() { first_line redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'; }

levee_rev() { # LEVEE_REV, or the tree's commit and whether the crates differ from it
  if [[ -n "${LEVEE_REV:-}" ]]; then echo "$LEVEE_REV"; return; fi
  local rev
  rev=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
  git -C "$BENCH_ROOT" diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || rev+=" with uncommitted changes"
  echo "$rev"
}

machine_line() {
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)."
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------- ports

port_free() { # port
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ports_free() { # port...: dies naming the first one in use
  local p
  for p in "$@"; do port_free "$p" || die "port $p is in use (set PORT_BASE)"; done
}

wait_port() { # port: something listens within 10 s
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

http_get() { # url [timeout]: prints the body, fails on non-2xx
  "$PY" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())' "$1" "${2:-5}"
}

wait_answers() { # url n: n requests succeed within about 5 s
  local ok=0
  for _ in $(seq 50); do
    if http_get "$1" 2 >/dev/null 2>&1; then ok=$((ok + 1)); ((ok >= $2)) && return 0; fi
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- processes

pin() { # cpu, then the command. exec: started with `&`, $! is the command's
  # own pid (not a subshell's), so that stop_pid reaches it.
  local cpu="$1"; shift
  if [[ "$PIN" == 1 ]]; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

stop_pid() { # pid: TERM, up to 5 s, then KILL
  local pid="$1"
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

set_cleanup_traps() { # the caller's cleanup function runs on exit
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  # A closed terminal sends SIGHUP to the whole group: NGINX takes it as
  # "reload" and would outlive the script without the cleanup.
  trap 'exit 129' HUP
}

# ---------------------------------------------------------------- HAProxy

haproxy_stats_socket() { # cfg run-dir: add a stats socket (run-dir/haproxy.sock) after "pidfile"
  printf '  stats socket %s/haproxy.sock mode 600 level user\n' "$2" >"$2/haproxy.global"
  sed -i "/^  pidfile /r $2/haproxy.global" "$1"
}

haproxy_stat() { # run-dir: its HAProxy's "show stat" CSV to run-dir/haproxy.stat.csv
  "$PY" "$BENCHLIB" haproxy-stat "$1/haproxy.sock" >"$1/haproxy.stat.csv" 2>/dev/null || true
}
