--- `baton status`: one table for the fleet — host, role, online, load, Ollama models loaded, running baton
--- jobs — then the next scheduled runs and this month's spend against the budget. Hosts are probed
--- concurrently with short timeouts; an offline host shows as such, it does not stop the report.
local args = require("baton.args")

local M = {}

local LOAD = "cat /proc/loadavg 2>/dev/null || sysctl -n vm.loadavg 2>/dev/null"

--- Everything the report shows, as data.
---@return {hosts: table[], schedule: {name: string, next: string?, last: string?}[], schedule_error: string?, spend: {month: number, budget: number?, fraction: number?}}
function M.collect()
  local fleet, paths = baton.fleet, baton._paths()
  local names = {}
  for name in pairs(fleet.hosts) do names[#names + 1] = name end
  table.sort(names)

  local running = {}
  for _, job in ipairs(baton._jobs()) do
    if job.state == "running" then running[job.host] = (running[job.host] or 0) + 1 end
  end

  local probes = {}
  for i, name in ipairs(names) do
    local host = fleet.hosts[name]
    probes[i] = function()
      local info = { host = name, role = host.role or "", jobs = running[name] or 0 }
      info.online = host.ssh == false or ssh.online(name, { timeout = "3s" })
      if info.online then
        local r = ssh.run(name, LOAD, { timeout = "5s", check = false })
        info.load = r.ok and tonumber(r.stdout:match("([%d%.]+)")) or nil
      end
      if host.ollama then
        local ok, loaded = pcall(ollama.loaded, { host = name })
        if not ok then
          info.ollama = "down"
        else
          local models = {}
          for _, m in ipairs(loaded) do models[#models + 1] = m.name end
          table.sort(models)
          info.ollama = #models > 0 and table.concat(models, ",") or "none loaded"
        end
      end
      return info
    end
  end
  local hosts = baton.gather(probes, { limit = 8 })
  hosts.n = nil

  -- Next runs: the schedule file registers its jobs here without starting anything.
  local schedule_jobs, schedule_err = {}, nil
  local f = io.open(paths.schedule_file)
  if f then
    f:close()
    local ok, err = pcall(dofile, paths.schedule_file)
    if ok then
      for _, job in ipairs(schedule.jobs()) do
        schedule_jobs[#schedule_jobs + 1] = { name = job.name, next = job.next, last = job.last and job.last.outcome }
      end
      table.sort(schedule_jobs, function(a, b) return (a.next or "~") < (b.next or "~") end)
    else
      schedule_err = tostring(err)
    end
  end

  local spent = 0
  for _, row in ipairs(route.spend({ period = "month" })) do spent = spent + row.cost end
  local budget = fleet.budget and fleet.budget.monthly_usd
  return {
    hosts = hosts,
    schedule = schedule_jobs,
    schedule_error = schedule_err,
    spend = { month = spent, budget = budget, fraction = budget and budget > 0 and spent / budget or nil },
  }
end

---@param argv string[]
---@return integer exit_code
function M.main(argv)
  local a = args.parse(argv, { flags = { "json" }, usage = "baton status [--json]" })
  local s = M.collect()
  if a.json then
    print(baton.json.encode(s, { pretty = true }))
    return 0
  end
  local rows = { { "HOST", "ROLE", "ONLINE", "LOAD", "OLLAMA", "JOBS" } }
  for _, h in ipairs(s.hosts) do
    rows[#rows + 1] = { h.host, h.role, h.online and "yes" or "no", h.load and ("%.2f"):format(h.load) or "-",
      h.ollama or "-", tostring(h.jobs) }
  end
  local widths = {}
  for _, r in ipairs(rows) do for c, v in ipairs(r) do widths[c] = math.max(widths[c] or 0, #v) end end
  for _, r in ipairs(rows) do
    local cells = {}
    for c, v in ipairs(r) do cells[c] = v .. (" "):rep(widths[c] - #v) end
    print((table.concat(cells, "  "):gsub("%s+$", "")))
  end
  print()
  if s.schedule_error then
    print("schedule: " .. s.schedule_error)
  elseif #s.schedule == 0 then
    print("schedule: no jobs")
  else
    for i, j in ipairs(s.schedule) do
      if i > 5 then break end
      print(("next: %-25s %s%s"):format(j.next or "never", j.name, j.last and ("  (last: " .. j.last .. ")") or ""))
    end
  end
  if s.spend.budget then
    print(("spend: $%.2f of $%.2f this month (%.0f%%)"):format(s.spend.month, s.spend.budget, (s.spend.fraction or 0) * 100))
  else
    print(("spend: $%.2f this month (no budget)"):format(s.spend.month))
  end
  return 0
end

return M
