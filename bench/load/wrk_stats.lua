-- wrk script for bench/load/run.sh. With WRK_DELAY_MS set (> 0), each
-- connection waits that long after an answer before its next request
-- (wrk's delay() hook): a closed loop paced to about
-- connections * 1000 / (WRK_DELAY_MS + latency) requests a second. wrk
-- times each request from its actual send, so the wait is not counted.
-- done() prints one line: "WRKSTATS requests errors duration_us p50_us p99_us max_us".
local d = tonumber(os.getenv("WRK_DELAY_MS") or "0") or 0
if d > 0 then
  function delay() return d end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("WRKSTATS %d %d %d %d %d %d\n",
    summary.requests, errors, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max))
end
