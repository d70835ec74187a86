-- Default correlation hook: which pods (and containers) a pull serves.
--
-- The agent only knows `<registry host>/<repository>` for a pull: containerd
-- records the source without the port and the tag is never on the node. So a
-- pull matches a container on the same node whose image, normalised the way
-- the container runtime does it (`nginx` -> `docker.io/library/nginx:latest`),
-- has the same host (port dropped) and repository. A digest-pinned image must
-- also name the pull's manifest or index digest.
--
-- The full reference with its tag comes from kubelet's `Pulling image "..."`
-- event of a matched pod. When pods on the node ask for several tags of the
-- same repository, the Pulling event closest to the pull's start decides
-- which tag (and so which containers) this pull is.
local M = {}

-- Parses an image reference into its parts, with Docker's defaults applied.
-- Returns nil for something that is not a reference.
function M.parse(ref)
  if type(ref) ~= "string" or ref == "" or ref:find("%s") then
    return nil
  end
  local name, digest = ref:match("^([^@]+)@(.+)$")
  if not name then
    name = ref
  end
  -- A tag is a colon after the last slash (a colon before it is a port).
  local tag
  local colon = name:find(":[^:/]*$", (name:find("/[^/]*$")) or 1)
  if colon then
    tag = name:sub(colon + 1)
    name = name:sub(1, colon - 1)
    if tag == "" then
      return nil
    end
  end
  local host, repo = name:match("^([^/]+)/(.+)$")
  if not host or not (host:find("[.:]") or host == "localhost" or host:find("^%[")) then
    host, repo = "docker.io", name
  end
  host = host:lower()
  if host == "index.docker.io" or host == "registry-1.docker.io" then
    host = "docker.io"
  end
  if host == "docker.io" and not repo:find("/", 1, true) then
    repo = "library/" .. repo
  end
  if repo == "" then
    return nil
  end
  if not tag and not digest then
    tag = "latest"
  end
  -- The port is dropped for matching: containerd's distribution.source label
  -- key, and so the agent's imageRef, has none.
  local bare = host:match("^(%[.*%]):%d+$") or host:match("^([^:%[]+):%d+$") or host
  local full = host .. "/" .. repo
  if tag then
    full = full .. ":" .. tag
  end
  if digest then
    full = full .. "@" .. digest
  end
  return { host = host, bareHost = bare, repo = repo, tag = tag, digest = digest,
           key = bare .. "/" .. repo, full = full }
end

-- The fully qualified form, e.g. "docker.io/library/nginx:latest".
function M.normalize(ref)
  local r = M.parse(ref)
  return r and r.full
end

-- Pods on a node mostly share a few images (sidecars): parse each once per call.
local function memo_parse()
  local cache = {}
  return function(ref)
    if ref == nil then
      return nil
    end
    local r = cache[ref]
    if r == nil then
      r = M.parse(ref) or false
      cache[ref] = r
    end
    return r or nil
  end
end

local function event_time(ev)
  local t = ev.lastTimestamp or ev.firstTimestamp or ev.eventTime
  return type(t) == "number" and t or 0
end

function M.correlate(pull, pods, events)
  local parse = memo_parse()
  local want = parse(pull.imageRef)
  if not want then
    return nil
  end
  -- A matching reference contains the repository's last path component
  -- verbatim: a plain substring search skips most pods without parsing.
  local needle = want.repo:match("[^/]+$")
  local digests = {}
  if pull.manifestDigest then digests[pull.manifestDigest] = true end
  if pull.indexDigest then digests[pull.indexDigest] = true end

  -- Every container on the node whose image is this repository.
  local found = {}
  for _, pod in ipairs(pods or {}) do
    if pod.node == nil or pull.node == nil or pod.node == pull.node then
      for _, list in ipairs({ pod.initContainers or {}, pod.containers or {} }) do
        for _, c in ipairs(list) do
          local img = type(c.image) == "string" and c.image:find(needle, 1, true) and parse(c.image)
          if img and img.key == want.key and (not img.digest or next(digests) == nil or digests[img.digest]) then
            found[#found + 1] = { namespace = pod.namespace, pod = pod.name, container = c.name,
                                  image = c.image, full = img.full }
          end
        end
      end
    end
  end
  if #found == 0 then
    return nil
  end

  -- kubelet's Pulling events for those pods and this repository.
  local pods_found = {}
  for _, f in ipairs(found) do
    pods_found[(f.namespace or "") .. "/" .. (f.pod or "")] = true
  end
  local best
  local start = pull.startedAt
  for _, ev in ipairs(events or {}) do
    if ev.reason == "Pulling" and pods_found[(ev.namespace or "") .. "/" .. (ev.pod or "")] then
      local ref = type(ev.message) == "string" and ev.message:find(needle, 1, true)
        and ev.message:match('^Pulling image "([^"]+)"')
      local img = ref and parse(ref)
      if img and img.key == want.key then
        local t = event_time(ev)
        local score
        if type(start) == "number" and start > 0 then
          -- kubelet posts the event just before it asks for the image.
          score = math.abs(start - t)
        else
          score = -t
        end
        if not best or score < best.score then
          best = { ref = ref, full = img.full, score = score }
        end
      end
    end
  end

  local matches = {}
  local tags = {}
  for _, f in ipairs(found) do
    tags[f.full] = true
  end
  local several_tags = next(tags, next(tags)) ~= nil
  for _, f in ipairs(found) do
    -- With several tags of the repository on the node, keep the containers of
    -- the tag the event names; without an event all of them are candidates.
    if not several_tags or not best or f.full == best.full then
      matches[#matches + 1] = { namespace = f.namespace, pod = f.pod, container = f.container }
    end
  end

  local image_ref
  if best then
    image_ref = best.ref
  elseif not several_tags then
    image_ref = found[1].image
  end
  return { matches = matches, imageRef = image_ref }
end

pulltrace.correlate(M.correlate)

return M
