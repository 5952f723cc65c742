--- What `baton status` shows: per host its role, whether it is online, its load, the Ollama models loaded and
--- the running baton jobs; then the next scheduled runs and this month's spend against the budget (the larger
--- of the ledger's and the provider's, with what calls under way hold and what interrupted calls cost). Hosts are
--- probed concurrently with short timeouts; an offline host shows as such, it does not stop the report. The
--- CLI renders the table (`src/cli/run.rs`).
local M = {}

local LOAD = "cat /proc/loadavg 2>/dev/null || sysctl -n vm.loadavg 2>/dev/null"

--- The Syncthing folders of a host whose fleet entry has `syncthing = {…}`: each folder's id, label, state
--- ("idle", "syncing", "error", …), the bytes this instance still needs and its error count; `{error = …}`
--- when the API cannot be read.
---@param host string
---@return {folders: table[]?, error: string?}
function M.syncthing(host)
  local ok, folders = pcall(function()
    local st = sync.syncthing(host)
    local out = baton.json.array()
    for _, f in ipairs(st:folders()) do
      local s = st:status(f.id)
      out[#out + 1] = {
        id = f.id, label = f.label, state = s.state, need_bytes = s.need_bytes, errors = s.errors,
      }
    end
    return out
  end)
  if ok then return { folders = folders } end
  return { error = tostring(folders) }
end

--- Everything the report shows, as data.
---@return {hosts: table[], schedule: {name: string, next: string?, last: string?}[], schedule_error: string?, spend: {month: number, held: number, interrupted: number, provider: number?, budget: number?, fraction: number?}}
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
      -- Offline with a MAC: asleep, and `ssh.wake` can bring it up; without one it is simply down.
      info.wakeable = not info.online and host.mac ~= nil
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
          info.ollama_models = baton.json.array(models)
        end
      end
      if host.syncthing and info.online then info.syncthing = M.syncthing(name) end
      return info
    end
  end
  local hosts = baton.gather(probes, { limit = 8 })
  hosts.n = nil
  baton.json.array(hosts)   -- lists stay lists in `baton status --json`, even when empty

  -- Next runs: the schedule file registers its jobs here without starting anything.
  local schedule_jobs, schedule_err = baton.json.array(), nil
  local f = io.open(paths.schedule_file)
  if f then
    f:close()
    local ok, err = pcall(baton.timeout, 5, dofile, paths.schedule_file)   -- a file that never finishes: an error
    if ok then
      for _, job in ipairs(schedule.jobs()) do
        schedule_jobs[#schedule_jobs + 1] = { name = job.name, next = job.next, last = job.last and job.last.outcome }
      end
      table.sort(schedule_jobs, function(a, b) return (a.next or "~") < (b.next or "~") end)
    else
      schedule_err = tostring(err)
    end
  end

  local b = route.budget()
  local budget = b.budget and b.budget.monthly_usd
  return {
    hosts = hosts,
    schedule = schedule_jobs,
    schedule_error = schedule_err,
    spend = {
      month = b.spent,
      held = b.ledger.held,
      interrupted = b.ledger.interrupted,
      provider = b.provider and b.provider.usage_monthly,
      budget = budget,
      fraction = budget and budget > 0 and b.spent / budget or nil,
    },
  }
end

return M
