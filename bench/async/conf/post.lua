-- wrk script for the accept-rate part of bench/async/run.sh: every request
-- is a POST with a body of $BODY_BYTES bytes (default 256), as the burst's
-- clients send; then bench/wrk_hist.lua (named by $WRK_HIST_LUA) adds the
-- histogram dump at the end, for nearest-rank percentiles.
local n = tonumber(os.getenv("BODY_BYTES") or "256")
wrk.method = "POST"
wrk.body = string.rep("x", n - 1) .. "\n"
wrk.headers["Content-Type"] = "application/octet-stream"
local hist = os.getenv("WRK_HIST_LUA")
if hist ~= nil and hist ~= "" then dofile(hist) end
