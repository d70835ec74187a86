local H = require("spec.lua.helper")

describe("default alert hooks", function()
  local M, hooks = H.load("alerts.lua", { stallAlertAfter = "2m" })
  local pull = { id = "node-a/abc-1", node = "node-a", imageRef = "127.0.0.1/demo/app" }

  it("registers a stalled, a slow and a failed handler", function()
    assert.are.equal(1, #hooks.on["pull.stalled"])
    assert.are.equal(1, #hooks.on["pull.slow"])
    assert.are.equal(1, #hooks.on["pull.failed"])
  end)

  it("turns a slow pull into PullSlow with an Event saying how slow against the usual", function()
    local a = hooks.on["pull.slow"][1]({ pull = pull, elapsedSeconds = 250.2, typicalSeconds = 49.6,
                                         typicalPulls = 23, slowFactor = 3 })
    assert.are.equal("PullSlow", a.name)
    assert.are.equal("warning", a.severity)
    assert.are.same({ node = "node-a", image = "127.0.0.1/demo/app", pull = "node-a/abc-1" }, a.labels)
    local note = "pull of 127.0.0.1/demo/app on node node-a has run 4m10s; "
      .. "pulls of this image usually take 50s (p50 of 23 pulls)"
    assert.are.equal(note, a.summary)
    assert.are.same({ reason = "PullSlow", note = note }, a.kubernetesEvent)
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

  it("asks for a Kubernetes Event naming the stalled layer and its time without a byte", function()
    local fn = hooks.on["pull.stalled"][1]
    local stalled = { id = "n/p", node = "n", imageRef = "127.0.0.1/demo/app", layers = {
      { digest = "sha256:" .. string.rep("a", 64), state = "done", totalBytes = 10, downloadedBytes = 10 },
      { digest = "sha256:" .. string.rep("b", 64), state = "stalled", totalBytes = 2048,
        downloadedBytes = 1024, updatedAt = 1000 },
    } }
    local a = fn({ pull = stalled, stalledSeconds = 120, time = 1150 })
    local k = a.kubernetesEvent
    assert.are.equal("PullStalled", k.reason)
    assert.are.equal("PullResumed", k.resolvedReason)
    assert.are.equal("layer sha256:bbbbbbbbbbbb of 127.0.0.1/demo/app has received no byte for 2m30s "
      .. "(1024 of 2048 bytes)", k.note)
    assert.truthy(k.resolvedNote:find("receiving bytes again", 1, true))
    -- Without a stalled layer (or its time) the pull's stalled time is used.
    assert.are.equal("pull of 127.0.0.1/demo/app has received no byte for 2m0s",
      M.stall_note({ pull = pull, stalledSeconds = 120 }))
  end)

  it("asks for no Kubernetes Event on a failure (kubelet reports those)", function()
    local a = hooks.on["pull.failed"][1]({ pull = pull, reason = "lost" })
    assert.is_nil(a.kubernetesEvent)
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
