#!/usr/bin/env bash
# Issue 13's release scenarios (crates/levee/tests/release_scenarios.rs):
# real `levee run` processes, 100 requests a second, rollbacks, promotions,
# gates, blue/green and mirroring. Prints only the RESULT lines.
#
#   bash bench/release/run.sh                     # every scenario once (~1 min)
#   RELEASE_REPEAT=20 bash bench/release/run.sh c # (c) 20 times (~4 min)
#
# Argument: a test-name filter (`c` means the promotion test only).
set -euo pipefail
cd "$(dirname "$0")/../.."
filter="${1:-}"
if [ "$filter" = "c" ]; then filter="an_identical_version"; fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
start=$(date +%s)
status=0
cargo test -p levee --test release_scenarios ${filter:+"$filter"} -- --nocapture >"$out" 2>&1 || status=$?
grep -E '^RESULT|^test result|panicked' "$out" || true
echo "wall time: $(( $(date +%s) - start )) s (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
if [ "$status" -ne 0 ]; then
  echo "cargo test failed (exit $status); full output:" >&2
  cat "$out" >&2
fi
exit "$status"
