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

-- Where would each kind of AI task go? route.pick decides without calling anything.
print("\nrouting (route.pick):")
if not fleet.openrouter.key_set then
  print(("  (no $%s: only the local tier exists; cloud tiers appear when it is set)"):format(fleet.openrouter.key_env))
end
for _, kind in ipairs({ "commit_message", "bug_hunting", "code_review", "architecture", "something_new" }) do
  local ok, p = pcall(route.pick, kind)
  if ok then
    print(("  %-16s -> %-8s %-10s %-28s %s"):format(kind, p.tier, p.provider, p.model, p.reason))
  else
    print(("  %-16s -> %s"):format(kind, tostring(p)))
  end
end

-- Is the local tier up? route.ask would escalate past it when it is not.
for name, host in pairs(fleet.hosts) do
  if host.ollama then
    print(("\nollama on %s (%s): %s"):format(name, host.ollama, ollama.online({ host = name }) and "online" or "not reachable"))
  end
end
if fleet.budget then
  local spent = 0
  for _, row in ipairs(route.spend({ period = "month" })) do spent = spent + row.cost end
  print(("budget: $%.2f of $%.2f spent this month, alert at %d%%"):format(spent, fleet.budget.monthly_usd,
    math.floor(fleet.budget.alert_at * 100)))
end
