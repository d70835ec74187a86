-- Default eviction hook: how long pulls stay in the server's tables.
--
-- Completed and failed pulls stay for historyTTL so the UI and the API can
-- show recent history. An active pull whose node stopped reporting is not
-- known to be dead at once (an agent restart takes seconds), so it is marked
-- lost after nodeLostGrace and then kept like finished history for historyTTL.
local M = {}

function M.new(ttl, grace)
  assert(type(ttl) == "number" and ttl >= 0, "history TTL must be a non-negative number")
  assert(type(grace) == "number" and grace >= 0, "grace must be a non-negative number")

  return function(pull, now)
    local phase = pull.phase
    if phase == "completed" or phase == "failed" then
      local since = pull.finishedAt or pull.lastSeenAt or now
      if now - since >= ttl then
        return "evict"
      end
      return "keep"
    elseif phase == "lost" then
      local since = pull.lostAt or pull.lastSeenAt or now
      if now - since >= ttl then
        return "evict"
      end
      return "keep"
    end
    -- Active: only the node's silence makes it lost. A pull that merely left
    -- its node's report while the node still reports is the server's business
    -- (it completes or fails it).
    local last = pull.nodeLastReportAt or pull.lastSeenAt
    if last ~= nil and now - last >= grace then
      return "lost"
    end
    return "keep"
  end
end

-- The host always sets the built-in settings (their defaults live in its configuration table).
local s = pulltrace.settings
pulltrace.evict(M.new(pulltrace.duration(s.historyTTL), pulltrace.duration(s.nodeLostGrace)))

return M
