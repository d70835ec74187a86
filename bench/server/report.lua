-- wrk script: agents POSTing v1 reports to pulltrace-server's /api/v1/report.
--
--   wrk -t T -c C -d 10s --latency -s bench/server/report.lua \
--       http://127.0.0.1:8080/api/v1/report -- NODES PULLS LAYERS [PACE_MS] [PREFIX] [AT_ONCE]
--
-- NODES simulated nodes (split between the T threads), each with PULLS pulls of LAYERS layers
-- in flight. Every request is the next report of the thread's next node (round robin), with
-- seq + 1 and its pulls moved one step on: a pull takes STEPS reports from its first byte to
-- completedAt (the last report names completedAt), then the node starts a new pull in its
-- place, so the server sees pull.started ... pull.progress ... pull.completed and the
-- tables grow with completed pulls until their TTL. Report sizes are those of a real agent
-- (~11 KiB for 5 pulls x 8 layers).
--
-- PACE_MS > 0: each connection waits that long (+-10 %) after each answer, as an agent does
-- between reports: C connections then send about C * 1000 / PACE_MS reports/s.
-- PREFIX: node name prefix (default "bench-node"), so that runs need not share nodes.
-- AT_ONCE > 0: a pull downloads that many layers at a time, as containerd does (its
-- max_concurrent_downloads, 3 by default): the layers go in waves of AT_ONCE, each wave taking
-- an equal share of the STEPS. 0 or absent: every layer moves in every report (layer i starts
-- i-1 reports late), the most work for the server per report.
-- The summary (done()) is one JSON line starting with "WRK_JSON ".

package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local agent = require("wrk_agent")

local STEPS = 30
local MIB = 1048576

local pace = tonumber(os.getenv("PT_PACE_MS") or "0") or 0

local nodes = {}
local cursor = 0
local npulls, nlayers, at_once = 5, 8, 0
local token = os.getenv("PT_TOKEN")

local hex, rfc3339 = agent.hex, agent.rfc3339

local function new_pull(node, slot, gen, now)
  local p = {
    id = string.format("%s-%d-%d", hex(16), slot, gen),
    image = string.format("registry.example.com/team-%d/app-%d", slot, gen % 7),
    manifest = "sha256:" .. hex(64),
    started = now,
    step = 0,
    layers = {},
  }
  for i = 1, nlayers do
    p.layers[i] = {digest = "sha256:" .. hex(64), total = (i + 1) * MIB + math.random(0, MIB)}
  end
  return p
end

function init(args)
  local n = tonumber(args[1] or "500")
  npulls = tonumber(args[2] or "5")
  nlayers = tonumber(args[3] or "8")
  if args[4] and tonumber(args[4]) and tonumber(args[4]) > 0 then pace = tonumber(args[4]) end
  local prefix = args[5] or "bench-node"
  at_once = tonumber(args[6] or "0") or 0
  math.randomseed(tid * 7919 + os.time())
  local now = os.time()
  -- Nodes tid, tid + T, tid + 2T, ...: disjoint between threads (PT_THREADS = T).
  local T = tonumber(os.getenv("PT_THREADS") or "1")
  for i = tid, n, T do
    local node = {name = string.format("%s-%04d", prefix, i), seq = 0, boot = agent.boot_id(), pulls = {}, gen = 0}
    for s = 1, npulls do
      node.gen = node.gen + 1
      local p = new_pull(node, s, node.gen, now)
      p.step = math.random(0, STEPS - 1) -- stagger the pulls
      node.pulls[s] = p
    end
    nodes[#nodes + 1] = node
  end
  wrk.headers["Content-Type"] = "application/json"
  if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end

local function layer_json(l, frac_done, now, started)
  local done = math.floor(l.total * frac_done)
  if done > l.total then done = l.total end
  local state, st, up = "waiting", "null", "null"
  if done >= l.total then
    state = "done"
    st, up = '"' .. rfc3339(started) .. '"', '"' .. rfc3339(now) .. '"'
  elseif done > 0 then
    state = "downloading"
    st, up = '"' .. rfc3339(started) .. '"', '"' .. rfc3339(now) .. '"'
  end
  return string.format('{"digest":"%s","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",' ..
    '"totalBytes":%d,"downloadedBytes":%d,"state":"%s","startedAt":%s,"updatedAt":%s}',
    l.digest, l.total, done, state, st, up), done
end

local function report(node, now)
  node.seq = node.seq + 1
  local parts = {}
  for s = 1, #node.pulls do
    local p = node.pulls[s]
    if p.step > STEPS then -- completed and reported once: a new pull takes its place
      node.gen = node.gen + 1
      p = new_pull(node, s, node.gen, now)
      node.pulls[s] = p
    end
    p.step = p.step + 1
    local layers, total, done = {}, 0, 0
    for i, l in ipairs(p.layers) do
      local frac
      if at_once > 0 then
        -- Waves of at_once layers, one after the other; the last is done at step STEPS.
        local span = STEPS / math.ceil(nlayers / at_once)
        frac = (p.step - math.floor((i - 1) / at_once) * span) / span
      else
        -- Layer i starts i-1 steps late and all are done at step STEPS.
        local span = STEPS - (i - 1)
        frac = (p.step - (i - 1)) / span
      end
      if frac < 0 then frac = 0 end
      if frac > 1 then frac = 1 end
      local js, d = layer_json(l, frac, now, p.started)
      layers[i] = js
      total = total + l.total
      done = done + d
    end
    local completed = done >= total and '"' .. rfc3339(now) .. '"' or "null"
    if done >= total then p.step = STEPS + 1 end
    parts[s] = string.format('{"id":"%s","imageRef":"%s","manifestDigest":"%s","indexDigest":null,' ..
      '"startedAt":"%s","completedAt":%s,"totalKnown":true,"totalBytes":%d,"downloadedBytes":%d,' ..
      '"layers":[%s]}', p.id, p.image, p.manifest, rfc3339(p.started), completed, total, done,
      table.concat(layers, ","))
  end
  return string.format('{"schemaVersion":"v1","nodeName":"%s","agentVersion":"bench",' ..
    '"bootId":"%s","seq":%d,"timestamp":"%s","pulls":[%s],"unattributed":[]}',
    node.name, node.boot, node.seq, rfc3339(now), table.concat(parts, ","))
end

sent_n, sent_bytes = 0, 0
local max_rounds = tonumber(os.getenv("PT_ROUNDS") or "0") or 0
local answered = 0

function request()
  cursor = cursor % #nodes + 1
  local node = nodes[cursor]
  if max_rounds > 0 and node.seq >= max_rounds then
    -- Every node sent its PT_ROUNDS reports: repeat a stale one (answered "ignored")
    -- until the thread stops.
    node.seq = node.seq - 1
  end
  local body = report(node, os.time())
  sent_n = sent_n + 1
  sent_bytes = sent_bytes + #body
  return wrk.format("POST", nil, nil, body)
end

-- PT_ROUNDS = K > 0: each node sends K reports, then the thread stops (for a fixed table
-- size rather than a duration).
if max_rounds > 0 then
  function response(status, headers, body)
    answered = answered + 1
    if answered >= #nodes * max_rounds then
      wrk.thread:stop()
    end
  end
end

if pace > 0 then
  function delay()
    return math.floor(pace * (0.9 + 0.2 * math.random()))
  end
end
