-- wrk script (bench/run.sh passes it with -s): at the end, write wrk's
-- latency histogram to the file named by $WRK_HIST, one "value_us count"
-- line per distinct value, then "complete", so that bench/report.py computes
-- p50 and p99 with benchlib.percentile_hist (nearest rank), the rule of every
-- other report. latency(i) is wrk's i-th distinct value and its count ((0, n)
-- past the end); each call walks the histogram from the start, so the walk
-- gives up after 20 s of CPU and writes "incomplete" instead.
done = function(summary, latency, requests)
  local path = os.getenv("WRK_HIST")
  if path == nil or path == "" then return end
  local f = assert(io.open(path, "w"))
  local started = os.clock()
  local i = 1
  local state = "complete"
  while true do
    local v, c = latency(i)
    if v == 0 then break end
    f:write(string.format("%d %d\n", v, c))
    i = i + 1
    if i % 64 == 0 and os.clock() - started > 20 then state = "incomplete"; break end
  end
  f:write(state .. "\n")
  f:close()
end
