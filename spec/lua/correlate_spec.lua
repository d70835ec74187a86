local H = require("spec.lua.helper")

describe("image reference normalisation", function()
  local M = H.load("correlate.lua")

  it("applies Docker's defaults", function()
    assert.are.equal("docker.io/library/nginx:latest", M.normalize("nginx"))
    assert.are.equal("docker.io/library/nginx:1.25", M.normalize("nginx:1.25"))
    assert.are.equal("docker.io/bitnami/redis:7", M.normalize("bitnami/redis:7"))
    assert.are.equal("docker.io/library/nginx:latest", M.normalize("index.docker.io/library/nginx"))
    assert.are.equal("quay.io/prometheus/prometheus:v2", M.normalize("quay.io/prometheus/prometheus:v2"))
    assert.are.equal("localhost/app:latest", M.normalize("localhost/app"))
  end)

  it("keeps ports but matches without them", function()
    local r = M.parse("127.0.0.1:5001/demo/app:v1")
    assert.are.equal("127.0.0.1:5001", r.host)
    assert.are.equal("127.0.0.1/demo/app", r.key)
    assert.are.equal("v1", r.tag)
    assert.are.equal("[::1]/x", M.parse("[::1]:5000/x").key)
    assert.are.equal("registry.local/team/x", M.parse("registry.local:443/team/x@sha256:ab").key)
  end)

  it("handles digests", function()
    local r = M.parse("nginx@sha256:abcd")
    assert.are.equal("sha256:abcd", r.digest)
    assert.is_nil(r.tag)
    assert.are.equal("docker.io/library/nginx:1@sha256:abcd", M.normalize("nginx:1@sha256:abcd"))
  end)

  it("rejects what is not a reference", function()
    assert.is_nil(M.parse(""))
    assert.is_nil(M.parse(nil))
    assert.is_nil(M.parse("has space"))
    assert.is_nil(M.parse("nginx:"))
  end)
end)

describe("default correlation hook", function()
  local M, hooks = H.load("correlate.lua")

  local function pod(ns, name, node, containers, init)
    local cs = {}
    for cname, image in pairs(containers) do
      cs[#cs + 1] = { name = cname, image = image }
    end
    table.sort(cs, function(a, b) return a.name < b.name end)
    return { namespace = ns, name = name, uid = name .. "-uid", node = node, containers = cs,
             initContainers = init }
  end

  local function pulling(ns, name, image, t)
    return { namespace = ns, pod = name, reason = "Pulling", message = 'Pulling image "' .. image .. '"',
             firstTimestamp = t, lastTimestamp = t }
  end

  local function names(res)
    local out = {}
    for _, m in ipairs(res and res.matches or {}) do
      out[#out + 1] = m.namespace .. "/" .. m.pod .. "/" .. m.container
    end
    table.sort(out)
    return out
  end

  it("registers itself", function()
    assert.is_function(hooks.correlate)
  end)

  it("matches a port-less agent ref to a pod image with port and tag, using the event's ref", function()
    local pull = { node = "node-a", imageRef = "127.0.0.1/demo/app", manifestDigest = "sha256:m1", startedAt = 100 }
    local pods = {
      pod("default", "web", "node-a", { app = "127.0.0.1:5001/demo/app:v1", side = "busybox" }),
      pod("default", "other", "node-a", { main = "127.0.0.1:5001/demo/other:v1" }),
      pod("default", "elsewhere", "node-b", { app = "127.0.0.1:5001/demo/app:v1" }),
    }
    local res = M.correlate(pull, pods, { pulling("default", "web", "127.0.0.1:5001/demo/app:v1", 99) })
    assert.are.same({ "default/web/app" }, names(res))
    assert.are.equal("127.0.0.1:5001/demo/app:v1", res.imageRef)
  end)

  it("matches Docker Hub short names and init containers", function()
    local pull = { node = "n1", imageRef = "docker.io/library/nginx" }
    local pods = { pod("ns", "p", "n1", { web = "nginx" }, { { name = "init", image = "docker.io/library/nginx:1.25" } }) }
    local res = M.correlate(pull, pods, {})
    assert.are.same({ "ns/p/init", "ns/p/web" }, names(res))
    -- Two tags and no event: no tag can be claimed.
    assert.is_nil(res.imageRef)
  end)

  it("falls back to the pod's image when there is no event", function()
    local res = M.correlate({ node = "n1", imageRef = "docker.io/library/redis" },
      { pod("a", "r1", "n1", { r = "redis:7" }), pod("b", "r2", "n1", { r = "docker.io/library/redis:7" }) }, {})
    assert.are.same({ "a/r1/r", "b/r2/r" }, names(res))
    assert.are.equal("redis:7", res.imageRef)
  end)

  it("correlates several concurrent pulls on one node to their own pods", function()
    local pods = {
      pod("ns", "a", "n1", { c = "127.0.0.1:5001/demo/a:1" }),
      pod("ns", "b", "n1", { c = "127.0.0.1:5001/demo/b:1" }),
      pod("ns", "ab", "n1", { x = "127.0.0.1:5001/demo/a:1", y = "127.0.0.1:5001/demo/b:1" }),
    }
    local events = { pulling("ns", "a", "127.0.0.1:5001/demo/a:1", 10), pulling("ns", "b", "127.0.0.1:5001/demo/b:1", 10) }
    assert.are.same({ "ns/a/c", "ns/ab/x" }, names(M.correlate({ node = "n1", imageRef = "127.0.0.1/demo/a" }, pods, events)))
    assert.are.same({ "ns/ab/y", "ns/b/c" }, names(M.correlate({ node = "n1", imageRef = "127.0.0.1/demo/b" }, pods, events)))
    assert.is_nil(M.correlate({ node = "n1", imageRef = "127.0.0.1/demo/c" }, pods, events))
  end)

  it("picks the tag whose Pulling event is closest to the pull's start", function()
    local pods = {
      pod("ns", "old", "n1", { c = "nginx:1.24" }),
      pod("ns", "new", "n1", { c = "nginx:1.25" }),
    }
    local events = { pulling("ns", "old", "nginx:1.24", 1000), pulling("ns", "new", "nginx:1.25", 2000) }
    local res = M.correlate({ node = "n1", imageRef = "docker.io/library/nginx", startedAt = 2001 }, pods, events)
    assert.are.same({ "ns/new/c" }, names(res))
    assert.are.equal("nginx:1.25", res.imageRef)
    res = M.correlate({ node = "n1", imageRef = "docker.io/library/nginx", startedAt = 1000.5 }, pods, events)
    assert.are.same({ "ns/old/c" }, names(res))
  end)

  it("requires a pinned digest to be the pull's", function()
    local pods = {
      pod("ns", "pinned", "n1", { c = "nginx@sha256:aaa" }),
      pod("ns", "other", "n1", { c = "nginx@sha256:bbb" }),
    }
    local res = M.correlate({ node = "n1", imageRef = "docker.io/library/nginx", manifestDigest = "sha256:m",
                              indexDigest = "sha256:aaa" }, pods, {})
    assert.are.same({ "ns/pinned/c" }, names(res))
  end)

  it("ignores events of other pods and other images", function()
    local pods = { pod("ns", "p", "n1", { c = "app:1" }) }
    local events = {
      pulling("ns", "unrelated", "app:9", 5),
      pulling("ns", "p", "otherimage:1", 5),
      { namespace = "ns", pod = "p", reason = "Pulled", message = 'Successfully pulled image "app:2"' },
    }
    local res = M.correlate({ node = "n1", imageRef = "docker.io/library/app" }, pods, events)
    assert.are.same({ "ns/p/c" }, names(res))
    assert.are.equal("app:1", res.imageRef)
  end)

  it("returns nothing without an image ref", function()
    assert.is_nil(M.correlate({ node = "n1" }, { pod("ns", "p", "n1", { c = "app" }) }, {}))
  end)
end)
