-- Example override: page the owning team when a pull in a production namespace fails,
-- and stay quiet about failures elsewhere. Load it with the chart's policy.scripts value.
local prod = {}
for ns in (pulltrace.settings.prodNamespaces or "prod"):gmatch("[^,]+") do
  prod[ns] = true
end

pulltrace.on("pull.failed", function(ev)
  local pods = (ev.pull and ev.pull.pods) or {}
  for _, p in ipairs(pods) do
    if prod[p.namespace] then
      return {
        name = "PulltraceProductionPullFailed",
        severity = "critical",
        summary = "image pull failed for " .. p.namespace .. "/" .. p.name,
        labels = {namespace = p.namespace, team = pulltrace.settings.team or "platform"},
      }
    end
  end
  return nil
end)
