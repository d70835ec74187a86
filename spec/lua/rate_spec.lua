local H = require("spec.lua.helper")

describe("default rate hook", function()
  local M, hooks = H.load("rate.lua", { rateHalfLife = "10s" })

  local function feed(fn, samples)
    local state, res
    for _, s in ipairs(samples) do
      res, state = fn(s, state)
    end
    return res, state
  end

  it("registers itself", function()
    assert.is_function(hooks.rate)
  end)

  it("first sample only sets the baseline (cached bytes are not speed)", function()
    local res, state = hooks.rate({ now = 100, downloadedBytes = 5e6, totalBytes = 10e6 }, nil)
    assert.are.equal(0, res.bytesPerSec)
    assert.is_nil(res.etaSeconds)
    assert.are.same({ t = 100, bytes = 5e6 }, state)
  end)

  it("converges to a constant rate and computes the ETA", function()
    local fn = M.new(5)
    local samples = {}
    -- Irregular first rate, then a steady 1 MB/s for 60 s.
    samples[1] = { now = 0, downloadedBytes = 0, totalBytes = 200e6 }
    samples[2] = { now = 1, downloadedBytes = 5e6, totalBytes = 200e6 }
    local bytes = 5e6
    for t = 2, 61 do
      bytes = bytes + 1e6
      samples[#samples + 1] = { now = t, downloadedBytes = bytes, totalBytes = 200e6 }
    end
    local res = feed(fn, samples)
    -- After 12 half-lives the initial 5 MB/s error has shrunk by 2^-12.
    assert.is_true(math.abs(res.bytesPerSec - 1e6) < 4e6 * 2 ^ -11)
    assert.is_true(math.abs(res.etaSeconds - (200e6 - bytes) / res.bytesPerSec) < 1e-6)
  end)

  it("weights by elapsed time, not by number of samples", function()
    local fn = M.new(10)
    local a = feed(fn, {
      { now = 0, downloadedBytes = 0 }, { now = 1, downloadedBytes = 1e6 },
      { now = 11, downloadedBytes = 1e6 + 3e6 * 10 },
    })
    local samples = { { now = 0, downloadedBytes = 0 }, { now = 1, downloadedBytes = 1e6 } }
    for i = 1, 10 do
      samples[#samples + 1] = { now = 1 + i, downloadedBytes = 1e6 + 3e6 * i }
    end
    local b = feed(fn, samples)
    -- One half-life at 3 MB/s from 1 MB/s: halfway, whatever the sampling.
    assert.is_true(math.abs(a.bytesPerSec - 2e6) < 1)
    assert.is_true(math.abs(b.bytesPerSec - 2e6) < 1)
  end)

  it("decays towards zero while stalled instead of holding the last speed", function()
    local fn = M.new(10)
    local res, state = feed(fn, {
      { now = 0, downloadedBytes = 0, totalBytes = 100e6 },
      { now = 1, downloadedBytes = 4e6, totalBytes = 100e6 },
    })
    assert.are.equal(4e6, res.bytesPerSec)
    res, state = fn({ now = 11, downloadedBytes = 4e6, totalBytes = 100e6, stalled = true }, state)
    assert.is_true(math.abs(res.bytesPerSec - 2e6) < 1)
    res, state = fn({ now = 31, downloadedBytes = 4e6, totalBytes = 100e6, stalled = true }, state)
    assert.is_true(math.abs(res.bytesPerSec - 0.5e6) < 1)
    local eta_half = res.etaSeconds
    assert.is_true(math.abs(eta_half - 96e6 / 0.5e6) < 1e-6)
    -- Far into the stall the speed is below a byte per second: the ETA is unknown.
    res = fn({ now = 31 + 10 * 30, downloadedBytes = 4e6, totalBytes = 100e6, stalled = true }, state)
    assert.is_true(res.bytesPerSec < 1)
    assert.is_nil(res.etaSeconds)
  end)

  it("treats bytes moving while flagged stalled as no progress", function()
    local fn = M.new(10)
    local res = feed(fn, {
      { now = 0, downloadedBytes = 0 }, { now = 1, downloadedBytes = 1e6 },
      { now = 11, downloadedBytes = 2e6, stalled = true },
    })
    assert.is_true(math.abs(res.bytesPerSec - 0.5e6) < 1)
  end)

  it("gives no ETA while the total is unknown", function()
    local res = feed(M.new(10), {
      { now = 0, downloadedBytes = 0 }, { now = 1, downloadedBytes = 1e6 },
    })
    assert.are.equal(1e6, res.bytesPerSec)
    assert.is_nil(res.etaSeconds)
  end)

  it("says ETA 0 when complete and never reports negative speed", function()
    local fn = M.new(10)
    local res, state = feed(fn, {
      { now = 0, downloadedBytes = 5e6, totalBytes = 10e6 },
      { now = 1, downloadedBytes = 1e6, totalBytes = 10e6 }, -- ingest restarted
    })
    assert.are.equal(0, res.bytesPerSec)
    res = fn({ now = 2, downloadedBytes = 10e6, totalBytes = 10e6, completed = true }, state)
    assert.are.equal(0, res.etaSeconds)
    assert.is_true(res.bytesPerSec > 0)
  end)

  it("ignores samples that do not move forward in time", function()
    local fn = M.new(10)
    local res, state = feed(fn, {
      { now = 0, downloadedBytes = 0 }, { now = 1, downloadedBytes = 1e6 },
    })
    local res2, state2 = fn({ now = 1, downloadedBytes = 9e6 }, state)
    assert.are.equal(res.bytesPerSec, res2.bytesPerSec)
    assert.are.same(state, state2)
  end)

  it("rejects a non-positive half-life", function()
    assert.has_error(function() M.new(0) end)
  end)
end)
