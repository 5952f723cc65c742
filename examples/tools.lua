-- The fleet as tools for an AI agent: copy this file next to your fleet file as `tools.lua` and run
-- `baton mcp serve` (or register it with Claude Code: `claude mcp add baton -- baton mcp serve`).
--
-- Every tool is read-only or additive: nothing here deletes files, kills jobs or runs an arbitrary shell.
-- `run_on` runs only the programs listed below, only on the hosts listed below; edit the lists to widen it.
-- Output printed by a tool goes to stderr (stdout carries the protocol); an error becomes an error result.

local gpu = require("baton.gpu")

-- Hosts and programs `run_on` may use. A program is matched on argv[1] exactly (no shell is involved:
-- arguments are quoted word by word).
local RUN_ON_HOSTS = { brain = true, engine = true }
local RUN_ON_PROGRAMS = {
  uptime = true, df = true, free = true, ["nvidia-smi"] = true, ollama = true,
  git = true, ls = true, cat = true, tail = true,
}
-- Local folders `sync_push` may send, and where `sync_pull` may write (prefixes of the resolved path).
local SYNC_ROOTS = { (os.getenv("HOME") or "/nonexistent") .. "/src/" }
-- The most an `ask` may cost the tiers it reaches: never above this tier.
local ASK_MAX_TIER = "cheap"

local function object(properties, required)
  return { type = "object", properties = properties or {}, required = required }
end

local function allowed_path(path)
  for _, root in ipairs(SYNC_ROOTS) do
    if path:sub(1, #root) == root and not path:find("/%.%./") and not path:find("/%.%.$") then
      return true
    end
  end
  return false
end

mcp.tool{
  name = "fleet_status",
  description = "Every fleet host: online, load, loaded Ollama models, running jobs; next scheduled runs; "
    .. "this month's LLM spend against the budget.",
  timeout = "60s",
  run = function() return require("baton.status").collect() end,
}

mcp.tool{
  name = "gpu_status",
  description = "GPU memory and utilisation of a host (nvidia-smi on CUDA machines, unified memory on "
    .. "Apple silicon), with the processes using each GPU.",
  parameters = object({ host = { type = "string", description = "fleet host name" } }, { "host" }),
  timeout = "60s",
  run = function(args)
    local probe = [[if command -v nvidia-smi >/dev/null 2>&1; then echo nvidia; ]]
      .. [[elif [ "$(uname -s)" = Darwin ]; then echo apple; else echo none; fi]]
    local kind = ssh.run(args.host, probe, { timeout = "20s" }).stdout:match("%a+")
    if kind == "nvidia" then
      local list = ssh.run(args.host, gpu.NVIDIA_GPUS, { timeout = "20s" }).stdout
      local apps = ssh.run(args.host, gpu.NVIDIA_APPS, { timeout = "20s", check = false }).stdout
      return { host = args.host, kind = kind, gpus = gpu.parse_nvidia(list, apps) }
    elseif kind == "apple" then
      local gpus, err = gpu.parse_apple(ssh.run(args.host, gpu.APPLE, { timeout = "20s" }).stdout)
      if not gpus then error(err) end
      return { host = args.host, kind = kind, gpus = gpus }
    end
    return { host = args.host, kind = "none", gpus = {} }
  end,
}

mcp.tool{
  name = "run_on",
  description = "Runs an allowed program on an allowed fleet host and returns its exit code and output. "
    .. "Allowed programs: see RUN_ON_PROGRAMS in tools.lua.",
  parameters = object({
    host = { type = "string" },
    argv = { type = "array", items = { type = "string" }, description = "program and its arguments" },
    timeout = { type = "number", description = "seconds (default 60)" },
  }, { "host", "argv" }),
  timeout = "5m",
  run = function(args)
    if not RUN_ON_HOSTS[args.host] then error("run_on: host " .. tostring(args.host) .. " is not allowed") end
    local program = args.argv and args.argv[1]
    if not RUN_ON_PROGRAMS[program] then error("run_on: program " .. tostring(program) .. " is not allowed") end
    local r = ssh.run(args.host, args.argv, { timeout = args.timeout or 60, check = false })
    return { ok = r.ok, code = r.code, stdout = r.stdout, stderr = r.stderr, err = r.err }
  end,
}

mcp.tool{
  name = "job_spawn",
  description = "Starts a long task (the Heavy AI Task: training, a batch of inference) detached on a host; "
    .. "it survives disconnects. Returns its id for job_status and job_tail.",
  parameters = object({
    host = { type = "string" },
    argv = { type = "array", items = { type = "string" } },
    cwd = { type = "string" },
  }, { "host", "argv" }),
  run = function(args)
    if not RUN_ON_HOSTS[args.host] then error("job_spawn: host " .. tostring(args.host) .. " is not allowed") end
    local job = ssh.spawn(args.host, args.argv, { cwd = args.cwd })
    return { id = job.id, host = job.host, log = job.log }
  end,
}

mcp.tool{
  name = "job_status",
  description = "State of a detached job: running, exited (with its code) or lost.",
  parameters = object({ id = { type = "string" } }, { "id" }),
  run = function(args) return ssh.job(args.id):status() end,
}

mcp.tool{
  name = "job_tail",
  description = "The last lines of a detached job's log.",
  parameters = object({ id = { type = "string" }, lines = { type = "integer", description = "default 50" } }, { "id" }),
  run = function(args) return table.concat(ssh.job(args.id):tail(args.lines or 50), "\n") end,
}

mcp.tool{
  name = "sync_push",
  description = "Copies a local folder to a host with rsync over the host's ssh master. Never deletes; "
    .. "replaced files are backed up on the host.",
  parameters = object({
    path = { type = "string", description = "local folder, under an allowed root" },
    host = { type = "string" },
    remote_path = { type = "string" },
    dry_run = { type = "boolean" },
  }, { "path", "host", "remote_path" }),
  timeout = "30m",
  run = function(args)
    if not allowed_path(args.path) then error("sync_push: " .. args.path .. " is outside the allowed roots") end
    local r = sync.push(args.path, args.host .. ":" .. args.remote_path,
      { delete = false, backup = true, dry_run = args.dry_run == true })
    return { files = r.files, bytes = r.bytes, changes = #r.changes, dry_run = r.dry_run }
  end,
}

mcp.tool{
  name = "sync_pull",
  description = "Copies a folder from a host to this machine. Never deletes; replaced files are backed up.",
  parameters = object({
    host = { type = "string" },
    remote_path = { type = "string" },
    path = { type = "string", description = "local folder, under an allowed root" },
    dry_run = { type = "boolean" },
  }, { "host", "remote_path", "path" }),
  timeout = "30m",
  run = function(args)
    if not allowed_path(args.path) then error("sync_pull: " .. args.path .. " is outside the allowed roots") end
    local r = sync.pull(args.host .. ":" .. args.remote_path, args.path,
      { delete = false, backup = true, dry_run = args.dry_run == true })
    return { files = r.files, bytes = r.bytes, changes = #r.changes, dry_run = r.dry_run }
  end,
}

mcp.tool{
  name = "ask",
  description = "Asks the fleet's LLMs: the task kind picks the tier (local models first, escalating when "
    .. "needed, never above the configured ceiling), within the monthly budget.",
  parameters = object({
    kind = { type = "string", description = "task kind, e.g. code_review, commit_message, exploration" },
    prompt = { type = "string" },
  }, { "kind", "prompt" }),
  timeout = "10m",
  run = function(args)
    local r = route.ask({ kind = args.kind, max_tier = ASK_MAX_TIER }, args.prompt, { max_tokens = 2048 })
    return { text = r.text, tier = r.tier, model = r.model, cost = r.cost }
  end,
}

mcp.tool{
  name = "spend",
  description = "LLM spend from the ledger, costliest first.",
  parameters = object({
    period = { type = "string", enum = { "day", "month", "all" } },
    by = { type = "string", enum = { "tier", "model", "task" } },
  }),
  run = function(args) return { rows = route.spend({ period = args.period, by = args.by }) } end,
}
