local H = require("spec.lua.helper")

describe("default alert hooks", function()
  local M, hooks = H.load("alerts.lua", { stallAlertAfter = "2m" })
  local pull = { id = "node-a/abc-1", node = "node-a", imageRef = "127.0.0.1/demo/app" }

  it("registers a stalled and a failed handler", function()
    assert.are.equal(1, #hooks.on["pull.stalled"])
    assert.are.equal(1, #hooks.on["pull.failed"])
  end)

  it("alerts on a stall only from the threshold on", function()
    local fn = hooks.on["pull.stalled"][1]
    assert.is_nil(fn({ pull = pull, stalledSeconds = 119.9 }))
    local a = fn({ pull = pull, stalledSeconds = 120 })
    assert.are.equal("PullStalled", a.name)
    assert.are.equal("warning", a.severity)
    assert.are.same({ node = "node-a", image = "127.0.0.1/demo/app", pull = "node-a/abc-1" }, a.labels)
    assert.truthy(a.summary:find("no progress for 2m0s", 1, true))
  end)

  it("uses the configured threshold", function()
    local fn = M.stalled(30)
    assert.is_nil(fn({ pull = pull, stalledSeconds = 29 }))
    assert.is_table(fn({ pull = pull, stalledSeconds = 30 }))
    assert.is_nil(fn({ pull = pull }))
  end)

  it("alerts on a failed pull with kubelet's message and the full image when known", function()
    local fn = hooks.on["pull.failed"][1]
    local a = fn({ pull = { id = "p", node = "n", imageRef = "docker.io/library/nginx",
                            image = "nginx:1.25" },
                   message = "Failed to pull image \"nginx:1.25\": not found" })
    assert.are.equal("PullFailed", a.name)
    assert.are.equal("critical", a.severity)
    assert.are.equal("nginx:1.25", a.labels.image)
    assert.truthy(a.summary:find("not found", 1, true))
  end)

  it("formats durations", function()
    assert.are.equal("59s", M.fmt_duration(59))
    assert.are.equal("1m0s", M.fmt_duration(60))
    assert.are.equal("1h1m1s", M.fmt_duration(3661))
  end)
end)
