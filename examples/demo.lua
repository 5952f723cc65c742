-- baton's main job on any machine, no config needed: look at the fleet, check every host at once, and show
-- where each kind of AI task would go.
--   baton run examples/demo.lua
local fleet = baton.fleet
print(("fleet: %s"):format(fleet.source or "built-in default"))

-- Check every host concurrently (at most 4 at a time). Hosts with `ssh = false` run here.
local names = {}
for name in pairs(fleet.hosts) do names[#names + 1] = name end
table.sort(names)

local checks = {}
for i, name in ipairs(names) do
  checks[i] = function()
    local host = fleet.hosts[name]
    if host.ssh ~= false then
      return ("%-12s %-12s ssh %s"):format(name, host.role or "", tostring(host.ssh))
    end
    local started = baton.clock()
    local r = baton.exec({ "sh", "-c", "uname -sm; uptime | sed 's/.*load average/load/'; df -h / | awk 'NR==2 {print $4 \" free on /\"}'" },
      { timeout = "10s", check = false })
    local facts = r.ok and r.stdout:gsub("\n+$", ""):gsub("\n", " · ") or ("check failed: " .. (r.err or "?"))
    return ("%-12s %-12s %s (%.0f ms)"):format(name, host.role or "", facts, (baton.clock() - started) * 1000)
  end
end
for _, line in ipairs(baton.gather(checks, { limit = 4 })) do print(line) end

-- Where would each kind of task go?
print("\ntiers (lowest first):")
for _, tier in ipairs(fleet.tiers) do
  local models = {}
  for role, model in pairs(tier.models or {}) do models[#models + 1] = role .. "=" .. model end
  table.sort(models)
  print(("  %-8s %-10s %s"):format(tier.name, tier.provider, tier.model or table.concat(models, " ")))
end
if fleet.budget then
  print(("budget: $%s a month, alert at %d%%"):format(fleet.budget.monthly_usd, math.floor(fleet.budget.alert_at * 100)))
end
