-- Default alert hooks: a pull stalled for longer than stallAlertAfter, a pull
-- far slower than its image usually is (pull.slow), and a failed pull. The host delivers an alert with the same name and labels at
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
      -- Written on the pull's pods, where `kubectl describe pod` shows it: kubelet only
      -- says "Pulling" while the download hangs.
      kubernetesEvent = {
        reason = "PullStalled",
        note = M.stall_note(event),
        resolvedReason = "PullResumed",
        resolvedNote = string.format("pull of %s on %s is receiving bytes again", labels.image, labels.node),
      },
    }
  end
end

-- Which layer stalled and how long it has gone without a byte (from the layer's last
-- progress, else from when the pull turned stalled).
function M.stall_note(event)
  local pull = event.pull or {}
  local image = pull.image or pull.imageRef or "unknown"
  for _, l in ipairs(pull.layers or {}) do
    if l.state == "stalled" then
      local idle = event.stalledSeconds or 0
      if type(l.updatedAt) == "number" and type(event.time) == "number" then
        idle = math.max(idle, event.time - l.updatedAt)
      end
      return string.format("layer %s of %s has received no byte for %s (%d of %d bytes)",
        string.sub(l.digest or "?", 1, 19), image, fmt_duration(idle), l.downloadedBytes or 0,
        l.totalBytes or 0)
    end
  end
  return string.format("pull of %s has received no byte for %s", image,
    fmt_duration(event.stalledSeconds or 0))
end

-- pull.slow comes once per pull, when it has run slowPullFactor times the usual
-- time of its image's pulls in the history (the host checks the settings).
function M.slow()
  return function(event)
    local pull = event.pull or {}
    local labels = labels_of(pull)
    local note = string.format("pull of %s on node %s has run %s; pulls of this image usually take %s (p50 of %d pulls)",
      labels.image, labels.node, fmt_duration(event.elapsedSeconds or 0), fmt_duration(event.typicalSeconds or 0),
      math.tointeger(event.typicalPulls) or 0)
    return {
      name = "PullSlow",
      severity = "warning",
      summary = note,
      labels = labels,
      kubernetesEvent = {reason = "PullSlow", note = note},
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
pulltrace.on("pull.slow", M.slow())
pulltrace.on("pull.failed", M.failed())

return M
