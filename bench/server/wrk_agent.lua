-- What the wrk scripts playing agents share (report.lua): the threads' setup,
-- random hex, the agent's time format, and the summary line (done()).
--
-- A script loads it with
--   package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
--   local agent = require("wrk_agent")
-- and counts what it sends in the globals sent_n and sent_bytes (per thread).
local M = {}

local threads = {}

-- wrk's setup(): numbers the threads (the script reads `tid` in init()).
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function M.hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(t)
end

function M.boot_id()
  return M.hex(8) .. "-" .. M.hex(4) .. "-" .. M.hex(4) .. "-" .. M.hex(4) .. "-" .. M.hex(12)
end

-- Epoch seconds as the agent writes a time: 2026-01-02T03:04:05.678Z.
function M.rfc3339(t)
  local ms = math.floor((t - math.floor(t)) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", ms)
end

-- wrk's done(): one JSON line starting with "WRK_JSON ".
function done(summary, latency, requests)
  local n, b = 0, 0
  for _, t in ipairs(threads) do
    n = n + (t:get("sent_n") or 0)
    b = b + (t:get("sent_bytes") or 0)
  end
  io.write(string.format('WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"non2xx":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"mean_body_bytes":%.0f,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    n > 0 and b / n or 0, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end

return M
