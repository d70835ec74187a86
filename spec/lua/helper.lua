-- Loads a default policy script outside the server, with a stand-in for the
-- `pulltrace` module that records what the script registers. The default
-- scripts are pure functions of their inputs, so this is all they need.
local H = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
H.root = here .. "/../.."

-- Go-style durations, as the host's pulltrace.duration() accepts them.
function H.duration(s)
  if s == "0" then return 0 end
  local units = { ns = 1e-9, us = 1e-6, ms = 1e-3, s = 1, m = 60, h = 3600 }
  local total, rest = 0, s
  assert(type(s) == "string" and s ~= "", "invalid duration")
  while rest ~= "" do
    local num, unit, tail = rest:match("^([%d%.]+)(%a+)(.*)$")
    assert(num and units[unit], "invalid duration " .. s)
    total = total + tonumber(num) * units[unit]
    rest = tail
  end
  return total
end

function H.load(name, settings)
  local hooks = { on = {} }
  local api = {
    settings = settings or {},
    duration = H.duration,
    log = function() end,
    correlate = function(fn) hooks.correlate = fn end,
    rate = function(fn) hooks.rate = fn end,
    evict = function(fn) hooks.evict = fn end,
    on = function(ev, fn)
      hooks.on[ev] = hooks.on[ev] or {}
      table.insert(hooks.on[ev], fn)
    end,
  }
  local env = setmetatable({ pulltrace = api }, { __index = _G })
  local chunk = assert(loadfile(H.root .. "/lua/" .. name, "t", env))
  local module = chunk()
  return module, hooks
end

return H
