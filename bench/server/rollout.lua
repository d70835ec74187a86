-- wrk script: a rollout. NODES simulated agents each pull one image (LAYERS layers) and
-- report it once a second, as pulltrace-agent does, to pulltrace-server's /api/v1/report.
--
--   wrk -t1 -c NODES -d 70s --latency --timeout 10s -s bench/server/rollout.lua \
--       http://127.0.0.1:8080/api/v1/report -- NODES [LAYERS] [STEPS] [PREFIX] [IMAGE]
--
-- One connection per node's worth of traffic: each connection waits 1 s (+-10 %) after each
-- answer, so -c NODES sends about NODES reports a second, and the script hands each request
-- to the next node in turn, so every node reports about once a second. Every node pulls the
-- same image (the same layer digests, as a DaemonSet's new image on every node): its layers
-- start one after the other and a node completes in about STEPS reports (default 45) at a
-- speed of its own (0.6x to 1.4x), so the nodes finish at different times; 1 % of the nodes
-- stall half-way (their bytes stop moving and the layers say "stalled"). A node that
-- completed reports completedAt for 10 more reports (the agent's linger), then an empty
-- report. Reports are a real agent's (~3 KiB for 8 layers: digests, media types, times).
-- The summary (done()) is one JSON line starting with "WRK_JSON ", as report.lua's.

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local agent = require("wrk_agent")

local MIB = 1048576

local nodes = {}
local cursor = 0
local nlayers, steps = 8, 45
local image, manifest, layers = nil, nil, {}

local hex, rfc3339 = agent.hex, agent.rfc3339

-- The digests are those of the image: the same on every node (derived from the image name,
-- so that every wrk thread and every run agrees).
local function digest(seed)
  local h = 0
  local t = {}
  for i = 1, 64 do
    h = (h * 31 + seed * 7 + i * 13 + #image) % 65521
    t[i] = string.format("%x", h % 16)
  end
  return "sha256:" .. table.concat(t)
end

function init(args)
  local n = tonumber(args[1] or "5000")
  nlayers = tonumber(args[2] or "8")
  steps = tonumber(args[3] or "45")
  local prefix = args[4] or "rollout-node"
  image = args[5] or "registry.example.com/platform/node-agent:v2"
  manifest = digest(0)
  for i = 1, nlayers do
    layers[i] = {digest = digest(i), total = (i % 4 + 1) * 8 * MIB + i * 4096}
  end
  math.randomseed(tid * 7919 + os.time())
  local T = tonumber(os.getenv("PT_THREADS") or "1")
  local now = os.time()
  for i = tid, n, T do
    nodes[#nodes + 1] = {
      name = string.format("%s-%05d", prefix, i), seq = 0, step = 0,
      boot = agent.boot_id(),
      speed = 0.6 + 0.8 * math.random(), stall = math.random() < 0.01,
      id = hex(16) .. "-" .. tostring(now), started = now, linger = 0,
    }
  end
  wrk.headers["Content-Type"] = "application/json"
  local token = os.getenv("PT_TOKEN")
  if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end

-- Fraction of layer i done at progress x (0..1 of the whole pull): the layers start one
-- after the other, a layer's span is half the pull.
local function layer_frac(i, x)
  local start = (i - 1) / nlayers * 0.5
  local f = (x - start) / 0.5
  if f < 0 then return 0 end
  if f > 1 then return 1 end
  return f
end

local function report(node, now)
  node.seq = node.seq + 1
  local pulls = ""
  if node.linger <= 10 then
    node.step = node.step + 1
    local x = node.step * node.speed / steps
    local stalled = node.stall and x >= 0.5
    if stalled then x = 0.5 end
    if x > 1 then x = 1 end
    local parts, total, done = {}, 0, 0
    for i, l in ipairs(layers) do
      local d = math.floor(l.total * layer_frac(i, x))
      local state, st, up = "waiting", "null", "null"
      if d >= l.total then
        state = "done"
      elseif d > 0 then
        state = stalled and "stalled" or "downloading"
      end
      if d > 0 then
        st = '"' .. rfc3339(node.started) .. '"'
        up = '"' .. rfc3339(stalled and node.started + steps / 2 or now) .. '"'
      end
      parts[i] = string.format('{"digest":"%s","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",' ..
        '"totalBytes":%d,"downloadedBytes":%d,"state":"%s","startedAt":%s,"updatedAt":%s}',
        l.digest, l.total, d, state, st, up)
      total = total + l.total
      done = done + d
    end
    local completed = "null"
    if done >= total then
      node.linger = node.linger + 1
      node.completed = node.completed or now
      completed = '"' .. rfc3339(node.completed) .. '"'
    end
    pulls = string.format('{"id":"%s","imageRef":"%s","manifestDigest":"%s","indexDigest":null,' ..
      '"startedAt":"%s","completedAt":%s,"totalKnown":true,"totalBytes":%d,"downloadedBytes":%d,' ..
      '"layers":[%s]}', node.id, image, manifest, rfc3339(node.started), completed, total, done,
      table.concat(parts, ","))
  end
  return string.format('{"schemaVersion":"v1","nodeName":"%s","agentVersion":"bench",' ..
    '"bootId":"%s","seq":%d,"timestamp":"%s","pulls":[%s],"unattributed":[]}',
    node.name, node.boot, node.seq, rfc3339(now), pulls)
end

sent_n, sent_bytes = 0, 0

function request()
  cursor = cursor % #nodes + 1
  local body = report(nodes[cursor], os.time())
  sent_n = sent_n + 1
  sent_bytes = sent_bytes + #body
  return wrk.format("POST", nil, nil, body)
end

-- The first request of each connection comes at a random point of the first second (agents
-- do not start in step); then one a second, +-10 %.
local delays = 0

function delay()
  delays = delays + 1
  if delays <= #nodes then return math.random(0, 999) end
  return math.floor(1000 * (0.9 + 0.2 * math.random()))
end
