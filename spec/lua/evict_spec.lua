local H = require("spec.lua.helper")

describe("default eviction hook", function()
  local M, hooks = H.load("evict.lua", { historyTTL = "30m", nodeLostGrace = "2m" })
  local TTL, GRACE = 1800, 120

  it("registers itself with the settings", function()
    assert.is_function(hooks.evict)
    assert.are.equal("keep", hooks.evict({ phase = "completed", finishedAt = 1000 }, 1000 + TTL - 0.001))
    assert.are.equal("evict", hooks.evict({ phase = "completed", finishedAt = 1000 }, 1000 + TTL))
  end)

  it("evicts completed and failed pulls exactly at the TTL", function()
    local fn = M.new(TTL, GRACE)
    for _, phase in ipairs({ "completed", "failed" }) do
      local pull = { phase = phase, finishedAt = 5000, nodeLastReportAt = 5000 }
      assert.are.equal("keep", fn(pull, 5000))
      assert.are.equal("keep", fn(pull, 5000 + TTL - 1))
      assert.are.equal("evict", fn(pull, 5000 + TTL))
      assert.are.equal("evict", fn(pull, 5000 + TTL + 1))
    end
  end)

  it("keeps active pulls of a reporting node however old", function()
    local fn = M.new(TTL, GRACE)
    assert.are.equal("keep", fn({ phase = "active", startedAt = 0, nodeLastReportAt = 99999 }, 100000))
  end)

  it("marks an active pull lost when its node is silent past the grace", function()
    local fn = M.new(TTL, GRACE)
    local pull = { phase = "active", startedAt = 0, nodeLastReportAt = 1000 }
    assert.are.equal("keep", fn(pull, 1000 + GRACE - 1))
    assert.are.equal("lost", fn(pull, 1000 + GRACE))
  end)

  it("evicts lost pulls after the TTL counted from when they were lost", function()
    local fn = M.new(TTL, GRACE)
    local pull = { phase = "lost", lostAt = 2000, nodeLastReportAt = 1000 }
    assert.are.equal("keep", fn(pull, 2000 + TTL - 1))
    assert.are.equal("evict", fn(pull, 2000 + TTL))
  end)

  it("honours a zero TTL", function()
    assert.are.equal("evict", M.new(0, 0)({ phase = "completed", finishedAt = 10 }, 10))
  end)
end)
