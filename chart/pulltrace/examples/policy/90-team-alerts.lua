-- Example addition: page the owning team (critical) when a pull in a production namespace
-- fails. It adds to the built-in alerts: the built-in PullFailed (critical) still fires for
-- every failed pull, in every namespace. To alert on production failures only, replace the
-- built-in alerts with an alerts.lua instead (docs/policy.md, worked example 3).
-- Load it with the chart's policy.scripts value (docs/policy.md, "Shipping scripts with the
-- chart"); settings: prodNamespaces (comma-separated, default "prod"), team.
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
