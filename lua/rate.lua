-- Default rate hook: speed and ETA of a pull from its successive samples.
--
-- The speed is an exponentially weighted moving average of the instantaneous
-- rate between two samples. The weight of a sample depends on the time since
-- the previous one (alpha = 1 - 2^(-dt / halfLife)), so the result does not
-- depend on how often the agent reports. A stalled pull contributes an
-- instantaneous rate of zero, so its speed halves every half-life instead of
-- holding the last value, and its ETA grows and then becomes unknown.
local M = {}

-- Below this speed the ETA would be meaningless (years), so it is unknown.
M.MIN_RATE = 1.0

function M.new(half_life)
  assert(type(half_life) == "number" and half_life > 0, "half-life must be a positive number")

  return function(sample, state)
    local now, bytes, total = sample.now, sample.downloadedBytes, sample.totalBytes
    local result = { bytesPerSec = 0, etaSeconds = nil }

    if type(state) ~= "table" or type(state.t) ~= "number" or type(state.bytes) ~= "number" then
      -- First sample: it only sets the baseline. Bytes already present (cached
      -- layers, a resumed ingest) must not count as speed.
      state = { t = now, bytes = bytes }
    else
      local dt = now - state.t
      if dt > 0 then
        local inst = (bytes - state.bytes) / dt
        if sample.stalled or inst < 0 then
          -- A restarted ingest can go backwards; it is not negative speed.
          inst = 0
        end
        local rate
        if type(state.rate) ~= "number" then
          rate = inst
        else
          local alpha = 1 - 2 ^ (-dt / half_life)
          rate = state.rate + alpha * (inst - state.rate)
        end
        -- The host hands the hook a fresh copy of the state each call, so it
        -- is updated in place (one table fewer a call).
        state.t, state.bytes, state.rate = now, bytes, rate
      end
      result.bytesPerSec = state.rate or 0
    end

    if sample.completed then
      result.etaSeconds = 0
    elseif total ~= nil and total >= 0 then
      local left = total - bytes
      if left <= 0 then
        result.etaSeconds = 0
      elseif result.bytesPerSec >= M.MIN_RATE then
        result.etaSeconds = left / result.bytesPerSec
      end
    end
    return result, state
  end
end

-- The host always sets the built-in settings (their defaults live in its configuration table).
pulltrace.rate(M.new(pulltrace.duration(pulltrace.settings.rateHalfLife)))

return M
