--- `baton doctor`: the setup checklist, checked for real. Each check is `{check, status = "ok"|"FAIL"|"skip",
--- detail, fix}`; all hosts and endpoints are probed concurrently with short timeouts.
local args = require("baton.args")

local M = {}

local function row(list, check, status, detail, fix)
  list[#list + 1] = { check = check, status = status, detail = detail or "", fix = status == "FAIL" and fix or nil }
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

--- Runs every check; returns the list of rows.
---@return {check: string, status: "ok"|"FAIL"|"skip", detail: string, fix: string?}[]
function M.checks()
  local fleet, paths, rows = baton.fleet, baton._paths(), baton.json.array()

  -- State directory: can we write a file there?
  local probe = paths.state_dir .. "/.doctor-probe"
  local made = baton.exec({ "sh", "-c", 'mkdir -p "$1" && : > "$2" && rm -f "$2"', "_", paths.state_dir, probe }, { check = false })
  row(rows, "state dir writable", made.ok and "ok" or "FAIL", paths.state_dir,
    "make " .. paths.state_dir .. " writable, or set BATON_STATE_DIR")

  -- Every host over ssh, and every Ollama endpoint, at once.
  local hosts = sorted_keys(fleet.hosts)
  local probes = {}
  for _, name in ipairs(hosts) do
    local host = fleet.hosts[name]
    probes[#probes + 1] = function()
      local reach
      if host.ssh == false then
        reach = { status = "ok", detail = "this machine" }
      else
        local ok, up = pcall(ssh.online, name, { timeout = "5s" })
        reach = (ok and up) and { status = "ok", detail = tostring(host.ssh) }
          or { status = "FAIL", detail = ok and ("no answer from " .. tostring(host.ssh)) or tostring(up) }
      end
      local models, loaded
      if host.ollama then
        if ollama.online({ host = name }) then
          local ok_listed, listed = pcall(ollama.models, { host = name })
          local ok_running, running = pcall(ollama.loaded, { host = name })
          models, loaded = {}, {}
          for _, m in ipairs(ok_listed and listed or {}) do models[m.name] = true end
          for _, m in ipairs(ok_running and running or {}) do loaded[m.name] = true end
        end
      end
      -- Claude Code, where the fleet says it is installed (`claude = true`): its version, or why not.
      local claude
      if host.claude and reach.status == "ok" then
        local r = ssh.run(name, "claude --version", { timeout = "20s", check = false })
        claude = r.ok and { version = (r.stdout:gsub("%s+$", "")) }
          or { err = r.code == 127 and "not installed" or (r.err or ("exit " .. tostring(r.code))) }
      end
      return { name = name, reach = reach, models = models, loaded = loaded, claude = claude }
    end
  end
  local results = baton.gather(probes, { limit = 8 })
  local by_host = {}
  for i = 1, results.n do
    local r = results[i]
    by_host[r.name] = r
    row(rows, "ssh " .. r.name, r.reach.status, r.reach.detail,
      ("check that `ssh %s` works: the host is up, your key is authorized, its host key is in known_hosts")
        :format(tostring(fleet.hosts[r.name].ssh)))
    if r.claude then
      row(rows, "claude " .. r.name, r.claude.version and "ok" or "FAIL", r.claude.version or r.claude.err,
        ("install Claude Code on %s (`npm install -g @anthropic-ai/claude-code`), then run `claude` there once to log in")
          :format(r.name))
    end
    local url = fleet.hosts[r.name].ollama
    if url then
      -- With the built-in fleet there is no file to fix: say how to point at Ollama, or to make one.
      local where = paths.fleet_file
        and ("fix hosts.%s.ollama in %s"):format(r.name, paths.fleet_file)
        or ("if it runs elsewhere, set OLLAMA_HOST, or create a fleet file with `baton fleet --init` (%s/fleet.lua) and set hosts.%s.ollama there")
          :format(paths.config_dir, r.name)
      row(rows, "ollama " .. r.name, r.models and "ok" or "FAIL", url,
        ("start Ollama on %s (`ollama serve`, OLLAMA_HOST=0.0.0.0 to listen on the network), or %s")
          :format(r.name, where))
    end
  end

  -- Each tier model pulled (and whether it is loaded); skipped when its endpoint is down (reported above).
  local default_ollama
  for _, name in ipairs(hosts) do
    if fleet.hosts[name].ollama then default_ollama = default_ollama or name end
  end
  local has_cloud = false
  for _, tier in ipairs(fleet.tiers) do
    if tier.provider == "ollama" then
      local host = tier.host or default_ollama
      local seen, wanted = {}, {}
      for _, m in pairs(tier.models or {}) do if not seen[m] then seen[m] = true wanted[#wanted + 1] = m end end
      if tier.model and not seen[tier.model] then wanted[#wanted + 1] = tier.model end
      table.sort(wanted)
      local info = by_host[host] or {}
      for _, model in ipairs(wanted) do
        local label = ("model %s on %s"):format(model, host)
        if not info.models then
          row(rows, label, "skip", "Ollama on " .. host .. " is not reachable")
        else
          local has = info.models[model] or info.models[model .. ":latest"]
          row(rows, label, has and "ok" or "FAIL",
            has and (info.loaded[model] and "pulled, loaded" or "pulled, not loaded") or "not pulled",
            ("pull it: ssh %s ollama pull %s (or baton: ollama.pull(%q, {host = %q}))"):format(host, model, model, host))
        end
      end
    else
      has_cloud = true
    end
  end

  -- OpenRouter: key present and credits left.
  local key_env = fleet.openrouter.key_env
  if not has_cloud then
    row(rows, "openrouter", "skip", "no openrouter tier in the fleet")
  elseif not fleet.openrouter.key_set then
    row(rows, "openrouter key", "FAIL", "$" .. key_env .. " is not set", "export " .. key_env .. "=<your key> (openrouter.ai/keys)")
  else
    row(rows, "openrouter key", "ok", "$" .. key_env .. " is set")
    local ok, credits = pcall(openrouter.credits)
    if not ok then
      row(rows, "openrouter credits", "FAIL", tostring(credits), "check the key and " .. fleet.openrouter.base_url)
    elseif credits.remaining ~= nil and credits.remaining <= 0 then
      row(rows, "openrouter credits", "FAIL", ("$%.2f used of $%.2f"):format(credits.usage or 0, credits.limit or 0),
        "add credits at openrouter.ai/settings/credits or raise the key's limit")
    else
      row(rows, "openrouter credits", "ok",
        credits.remaining and ("$%.2f left"):format(credits.remaining) or ("no limit, $%.2f used"):format(credits.usage or 0))
    end
  end

  -- Budget.
  if fleet.budget then
    row(rows, "budget", "ok", ("$%.2f a month, alert at %d%%"):format(fleet.budget.monthly_usd, math.floor(fleet.budget.alert_at * 100)))
  else
    row(rows, "budget", has_cloud and "FAIL" or "skip", "no budget", "add budget = { monthly_usd = 50, alert_at = 0.8 } to the fleet file")
  end

  -- Daemon: only expected when there is a schedule file.
  local has_schedule = io.open(paths.schedule_file) ~= nil
  local unit = io.open(paths.daemon_unit)
  if unit then unit:close() end
  local running = baton.exec({ "pgrep", "-f", "baton daemon" }, { check = false }).ok
  if not has_schedule then
    row(rows, "daemon", "skip", "no schedule file at " .. paths.schedule_file)
  else
    local status = (unit and running) and "ok" or "FAIL"
    local detail = ("%s, %s"):format(unit and "installed" or "not installed", running and "running" or "not running")
    local fix = unit and "start it: systemctl --user start baton-daemon (Linux) / launchctl load the plist (macOS)"
      or "baton daemon --install, then enable it as printed"
    row(rows, "daemon", status, detail, fix)
  end
  return rows
end

--- Prints the checklist (`--json` for JSON); returns the exit code: 1 when a check failed.
---@param argv string[]
---@return integer exit_code
function M.main(argv)
  local a = args.parse(argv, { flags = { "json" }, usage = "baton doctor [--json]" })
  local rows = M.checks()
  local failed = 0
  for _, r in ipairs(rows) do if r.status == "FAIL" then failed = failed + 1 end end
  if a.json then
    print(baton.json.encode({ checks = rows, failed = failed }, { pretty = true }))
  else
    local w = 6
    for _, r in ipairs(rows) do w = math.max(w, #r.check) end
    for _, r in ipairs(rows) do
      print(("%-4s  %-" .. w .. "s  %s"):format(r.status, r.check, r.detail))
      if r.fix then print((" "):rep(w + 8) .. "fix: " .. r.fix) end
    end
    print(failed == 0 and "\nall checks passed" or ("\n%d check(s) failed"):format(failed))
  end
  return failed == 0 and 0 or 1
end

return M
