#!/usr/bin/env bash
# A CI job that proves a service against its SLOs: start the service behind
# Levee, put load on it with thresholds, run a short chaos experiment, and
# fail the build on any breach. Here the service is `levee demo` (its own
# upstreams in process); in a real pipeline, start your service and
# `levee run -c levee.toml` instead, and point the URLs at them.
#
#   bash examples/ci/pipeline.sh            # 10 s of load
#   DURATION=3s bash examples/ci/pipeline.sh
#
# Knobs: LEVEE (the binary, default `levee` on PATH), DURATION, RATE,
# OUT (where JUnit and journals go, default a temporary directory).
# Exit codes: 0 all held; `levee load`'s 99 when a threshold failed;
# `levee chaos run`'s 1/3/4 when the experiment deviated, aborted or could
# not run; anything else when the service did not start.
set -euo pipefail

LEVEE="${LEVEE:-levee}"
DURATION="${DURATION:-10s}"
RATE="${RATE:-50}"
OUT="${OUT:-$(mktemp -d)}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN=$(free_port)

"$LEVEE" demo --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN" --no-traffic >"$OUT/demo.log" 2>&1 &
DEMO=$!
trap 'kill "$DEMO" 2>/dev/null || true; wait "$DEMO" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null || { cat "$OUT/demo.log" >&2; echo "the service did not start" >&2; exit 2; }

echo "== load: $RATE req/s for $DURATION, thresholds from the SLO the route promises"
"$LEVEE" load "http://127.0.0.1:$PORT/recommendations/" --rate "$RATE" --duration "$DURATION" \
  --threshold 'http_req_failed: rate<0.05' \
  --threshold 'http_req_duration: p(99)<1000' \
  --out "junit=$OUT/load.junit.xml"

echo "== chaos: the hypothesis must hold while the route is slowed"
sed "s/\${PORT}/$PORT/g" "$HERE/experiment.toml" >"$OUT/experiment.toml"
"$LEVEE" chaos run "$OUT/experiment.toml" --admin "http://127.0.0.1:$ADMIN" --journal "$OUT/chaos.journal.json"

echo "== held: JUnit and journal in $OUT"
