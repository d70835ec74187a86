-- Loads a default policy script the way the server does: inside the server's sandbox
-- (src/policy/sandbox.c through the pulltrace_sandbox module that the build makes in
-- build/spec/lua; ctest sets LUA_CPATH_5_4 to find it). A script that uses io, require or an
-- undefined global fails here as it fails in the server.
local H = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
H.root = here .. "/../.."

local ok, sandbox = pcall(require, "pulltrace_sandbox")
if not ok then
  error("the pulltrace_sandbox module is missing: build the project and run the specs through " ..
        "ctest (ctest -R lua.policy), or set LUA_CPATH_5_4=<build>/spec/lua/?.so;;\n" .. sandbox)
end

-- Loads source as the script `name`; returns what the chunk returned and the hooks it
-- registered ({correlate =, rate =, evict =, on = {[event] = {fn, ...}}}). Like the server, it
-- hands the script every built-in setting: the spec's value, else the server's default.
function H.load_source(name, source, settings)
  local all = sandbox.defaults()
  for k, v in pairs(settings or {}) do
    all[k] = v
  end
  return sandbox.load(name, source, all)
end

-- Loads lua/<name>, the default script compiled into the server.
function H.load(name, settings)
  local f = assert(io.open(H.root .. "/lua/" .. name, "rb"))
  local source = f:read("a")
  f:close()
  return H.load_source(name, source, settings)
end

return H
