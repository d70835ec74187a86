-- Default alert hooks: a pull stalled for longer than stallAlertAfter, and a
-- failed pull. The host delivers an alert with the same name and labels at
-- most once per alertRepeat, so these handlers can be pure: they answer every
-- matching event and need not remember what they already said.
local M = {}

local function fmt_duration(s)
  s = math.floor(s + 0.5)
  local h, m, sec = s // 3600, (s % 3600) // 60, s % 60
  if h > 0 then
    return string.format("%dh%dm%ds", h, m, sec)
  elseif m > 0 then
    return string.format("%dm%ds", m, sec)
  end
  return string.format("%ds", sec)
end
M.fmt_duration = fmt_duration

local function labels_of(pull)
  return {
    node = pull.node or "",
    image = pull.image or pull.imageRef or "unknown",
    pull = pull.id or "",
  }
end

function M.stalled(threshold)
  assert(type(threshold) == "number" and threshold >= 0, "threshold must be a non-negative number")
  return function(event)
    local pull = event.pull or {}
    local stalled = event.stalledSeconds
    if type(stalled) ~= "number" or stalled < threshold then
      return nil
    end
    local labels = labels_of(pull)
    return {
      name = "PullStalled",
      severity = "warning",
      summary = string.format("pull of %s on %s has made no progress for %s",
        labels.image, labels.node, fmt_duration(stalled)),
      labels = labels,
    }
  end
end

function M.failed()
  return function(event)
    local pull = event.pull or {}
    local labels = labels_of(pull)
    local why = event.message or event.reason or "unknown reason"
    return {
      name = "PullFailed",
      severity = "critical",
      summary = string.format("pull of %s on %s failed: %s", labels.image, labels.node, why),
      labels = labels,
    }
  end
end

-- The host always sets the built-in settings (their defaults live in its configuration table).
pulltrace.on("pull.stalled", M.stalled(pulltrace.duration(pulltrace.settings.stallAlertAfter)))
pulltrace.on("pull.failed", M.failed())

return M
