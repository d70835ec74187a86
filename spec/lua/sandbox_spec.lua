-- The specs run the default scripts inside the server's sandbox (helper.lua): what a script
-- cannot do in the server, it cannot do in a spec either.
local H = require("spec.lua.helper")

local function load_error(name, source)
  local ok, err = pcall(H.load_source, name, source)
  assert.is_false(ok, name .. " loaded")
  return tostring(err)
end

describe("the sandbox the specs run in", function()
  it("rejects a script that uses io while it loads", function()
    local err = load_error("uses_io.lua", 'local f = io.open("/etc/hostname")\n')
    assert.truthy(err:find("uses_io.lua:1: undefined global 'io'", 1, true), err)
  end)

  it("fails a hook that uses io when it runs", function()
    local _, hooks = H.load_source("io_hook.lua",
      'pulltrace.rate(function(s) io.write("x") return { bytesPerSec = 0 } end)\n')
    local ok, err = pcall(hooks.rate, { now = 1, downloadedBytes = 0 }, nil)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("io_hook.lua:1: undefined global 'io'", 1, true), err)
  end)

  it("has no require, dofile, loadfile, package or debug, and only os.clock/time/date", function()
    for _, g in ipairs({ "require", "dofile", "loadfile", "package", "debug" }) do
      local err = load_error(g .. ".lua", "local x = " .. g .. "\n")
      assert.truthy(err:find("undefined global '" .. g .. "'", 1, true), err)
    end
    local m = H.load_source("os.lua", [[
      return { execute = os.execute, getenv = os.getenv, time = os.time, dump = string.dump,
               binary = load(string.char(27) .. "Lua") }
    ]])
    assert.is_nil(m.execute)
    assert.is_nil(m.getenv)
    assert.is_function(m.time)
    assert.is_nil(m.dump)
    assert.is_nil(m.binary)
  end)

  it("registers hooks only while the script loads", function()
    local _, hooks = H.load_source("late.lua",
      "pulltrace.on('pull.failed', function() pulltrace.rate(function() end) end)\n")
    local ok, err = pcall(hooks.on["pull.failed"][1], {})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("only be registered while the script loads", 1, true), err)
  end)

  it("hands scripts the server's defaults of the built-in settings", function()
    local _, hooks = H.load("evict.lua")
    -- historyTTL defaults to 30m in the policy's configuration table.
    assert.are.equal("keep", hooks.evict({ phase = "completed", finishedAt = 0 }, 1799.9))
    assert.are.equal("evict", hooks.evict({ phase = "completed", finishedAt = 0 }, 1800))
    local m = H.load_source("settings.lua", "return pulltrace.settings")
    assert.are.equal("2m", m.nodeLostGrace)
    assert.are.equal("10s", m.rateHalfLife)
  end)

  it("is the server's: pulltrace-server --check-policy refuses the same script", function()
    local server = os.getenv("PT_SERVER_BINARY")
    if not server then
      pending("PT_SERVER_BINARY is not set (ctest sets it)")
      return
    end
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    local f = assert(io.open(dir .. "/uses_io.lua", "w"))
    f:write('local f = io.open("/etc/hostname")\n')
    f:close()
    local p = assert(io.popen("'" .. server .. "' --check-policy " .. dir .. " 2>&1"))
    local out = p:read("a")
    local _, _, code = p:close()
    os.execute("rm -rf " .. dir)
    assert.are.equal(1, code)
    assert.truthy(out:find("uses_io.lua:1: undefined global 'io'", 1, true), out)
  end)
end)
