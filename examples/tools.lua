-- The fleet as tools for an AI agent: copy this file next to your fleet file as `tools.lua` and run
-- `baton mcp serve` (or register it with Claude Code: `claude mcp add baton -- baton mcp serve`).
--
-- Safe by construction: every tool is a fixed operation with typed arguments. No tool takes a command line,
-- a program's arguments or a shell: an argument is a host name checked against HOSTS, a path checked against
-- ROOTS after resolving it where it lives (symbolic links followed), a number, or a name from JOBS. Nothing
-- here deletes files or kills jobs. See "What a served tool can reach" in README.md before widening it.
-- Output printed by a tool goes to stderr (stdout carries the protocol); an error becomes an error result.

local gpu = require("baton.gpu")

-- Fleet hosts the tools may reach (`local` is this machine). Any other host is refused.
local HOSTS = { brain = true, engine = true }
-- Folders the tools may read and write, on this machine and on every allowed host; `~` is the home folder
-- of the machine the path is on, and a relative path is relative to it. A path is allowed when its real
-- path (on the host where it lives, every link followed) is a root or inside one.
local ROOTS = { "~/src" }
-- What `job_spawn` may start, by name: a fixed argv and folder (under ROOTS). Nothing else can be started.
local JOBS = {
  -- train = { argv = { "python3", "train.py", "--epochs", "3" }, cwd = "~/src/model" },
}
-- The most an `ask` may cost the tiers it reaches: never above this tier.
local ASK_MAX_TIER = "cheap"
-- Bounds on what a tool reads back.
local MAX_LOG_LINES, MAX_COMMITS, MAX_OUTPUT = 1000, 200, 256 * 1024

local function object(properties, required)
  return { type = "object", properties = properties or {}, required = required }
end

-- A value from the client as an error echoes it: control characters escaped as Lua's %q writes them (a
-- newline or an ESC cannot forge a line or drive a terminal), cut to 200 bytes.
local function shown(v)
  local s = tostring(v)
  if #s > 200 then s = s:sub(1, 200) .. "... (" .. (#s - 200) .. " more bytes)" end
  return (string.format("%q", s):sub(2, -2):gsub("\\\n", "\\n"))
end

local function host_arg(tool, host)
  if type(host) ~= "string" or not HOSTS[host] then
    error(tool .. ": host " .. shown(host) .. " is not allowed")
  end
  return host
end

local function int_arg(tool, name, v, default, max)
  if v == nil then return default end
  local n = math.tointeger(v)
  if not n or n < 1 or n > max then
    error(tool .. ": " .. name .. " must be an integer from 1 to " .. max .. ", got " .. shown(v))
  end
  return n
end

-- The real paths of ROOTS on `host`, resolved there (a root that does not exist allows nothing).
local function roots_on(host)
  local out = {}
  for _, root in ipairs(ROOTS) do
    local ok, real = pcall(sync.realpath, host, root)
    if ok then out[#out + 1] = real end
  end
  return out
end

-- `path` on `host` resolved where it lives (links followed); an error unless it is a root or inside one.
-- `missing_ok`: a path that does not exist yet (a destination) resolves through its nearest existing folder.
local function inside_roots(tool, host, path, missing_ok)
  if type(path) ~= "string" or path == "" then error(tool .. ": path must be a non-empty string") end
  if path:sub(1, 1) ~= "/" and path:sub(1, 1) ~= "~" then path = "~/" .. path end
  local ok, real = pcall(sync.realpath, host, path, { missing_ok = missing_ok })
  if not ok then error(tool .. ": cannot resolve " .. shown(path) .. " on " .. host .. ": " .. tostring(real)) end
  for _, root in ipairs(roots_on(host)) do
    if real == root or real:sub(1, #root + 1) == root .. "/" then return real end
  end
  error(tool .. ": " .. shown(path) .. " on " .. host .. " is outside the allowed roots (it is " .. shown(real) .. ")")
end

local function cut(text)
  if #text <= MAX_OUTPUT then return text end
  return text:sub(1, MAX_OUTPUT) .. "\n… (" .. (#text - MAX_OUTPUT) .. " more bytes)"
end

-- git in an allowed repository, with settings that could run programs switched off.
local function git(tool, host, repo, args)
  local dir = inside_roots(tool, host, repo, false)
  local argv = { "git", "--no-pager", "-c", "core.fsmonitor=false", "-c", "core.pager=cat",
    "-c", "diff.external=", "-C", dir }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = ssh.run(host, argv, { timeout = "60s", check = false, env = { GIT_TERMINAL_PROMPT = "0" } })
  if not r.ok then error(tool .. ": git failed in " .. dir .. ": " .. (r.err or r.stderr)) end
  return cut(r.stdout)
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
    local host = host_arg("gpu_status", args.host)
    local probe = [[if command -v nvidia-smi >/dev/null 2>&1; then echo nvidia; ]]
      .. [[elif [ "$(uname -s)" = Darwin ]; then echo apple; else echo none; fi]]
    local kind = ssh.run(host, probe, { timeout = "20s" }).stdout:match("%a+")
    if kind == "nvidia" then
      local list = ssh.run(host, gpu.NVIDIA_GPUS, { timeout = "20s" }).stdout
      local apps = ssh.run(host, gpu.NVIDIA_APPS, { timeout = "20s", check = false }).stdout
      return { host = host, kind = kind, gpus = gpu.parse_nvidia(list, apps) }
    elseif kind == "apple" then
      local gpus, err = gpu.parse_apple(ssh.run(host, gpu.APPLE, { timeout = "20s" }).stdout)
      if not gpus then error(err) end
      return { host = host, kind = kind, gpus = gpus }
    end
    return { host = host, kind = "none", gpus = {} }
  end,
}

mcp.tool{
  name = "disk_memory",
  description = "Disk space (df -hP), memory (free -h, or vm_stat on macOS) and uptime of a host.",
  parameters = object({ host = { type = "string" } }, { "host" }),
  timeout = "60s",
  run = function(args)
    local host = host_arg("disk_memory", args.host)
    local opts = { timeout = "20s", check = false }
    local mem = [[if command -v free >/dev/null 2>&1; then free -h; else vm_stat; fi]]
    return {
      host = host,
      disk = ssh.run(host, { "df", "-hP" }, opts).stdout,
      memory = ssh.run(host, mem, opts).stdout,
      uptime = ssh.run(host, { "uptime" }, opts).stdout,
    }
  end,
}

mcp.tool{
  name = "git_status",
  description = "git status (short, with the branch) of a repository under the allowed roots of a host.",
  parameters = object({
    host = { type = "string" },
    repo = { type = "string", description = "repository folder, e.g. ~/src/project" },
  }, { "host", "repo" }),
  run = function(args)
    local host = host_arg("git_status", args.host)
    return git("git_status", host, args.repo, { "status", "--porcelain=v1", "--branch" })
  end,
}

mcp.tool{
  name = "git_log",
  description = "The latest commits (hash, date, author, subject) of a repository under the allowed roots.",
  parameters = object({
    host = { type = "string" },
    repo = { type = "string" },
    count = { type = "integer", description = "how many commits (default 20, at most 200)" },
  }, { "host", "repo" }),
  run = function(args)
    local host = host_arg("git_log", args.host)
    local n = int_arg("git_log", "count", args.count, 20, MAX_COMMITS)
    return git("git_log", host, args.repo,
      { "log", "--no-decorate", "--date=short", "--format=%h %ad %an %s", "-n", tostring(n) })
  end,
}

mcp.tool{
  name = "git_diff",
  description = "The uncommitted changes (or, with staged, the staged ones) of a repository under the "
    .. "allowed roots.",
  parameters = object({
    host = { type = "string" },
    repo = { type = "string" },
    staged = { type = "boolean" },
  }, { "host", "repo" }),
  run = function(args)
    local host = host_arg("git_diff", args.host)
    local a = { "diff", "--no-ext-diff", "--no-textconv", "--no-color" }
    if args.staged == true then a[#a + 1] = "--staged" end
    return git("git_diff", host, args.repo, a)
  end,
}

mcp.tool{
  name = "job_spawn",
  description = "Starts one of the jobs listed in tools.lua (JOBS: the Heavy AI Task, a batch of "
    .. "inference) detached on a host; it survives disconnects. Returns its id for job_status and job_tail.",
  parameters = object({
    host = { type = "string" },
    job = { type = "string", description = "a job name from JOBS in tools.lua" },
  }, { "host", "job" }),
  run = function(args)
    local host = host_arg("job_spawn", args.host)
    local spec = type(args.job) == "string" and JOBS[args.job]
    if not spec then error("job_spawn: no job named " .. shown(args.job) .. " in JOBS") end
    local cwd = spec.cwd and inside_roots("job_spawn", host, spec.cwd, false)
    local job = ssh.spawn(host, spec.argv, { cwd = cwd })
    return { id = job.id, host = job.host, log = job.log }
  end,
}

-- A registered job on an allowed host.
local function job_arg(tool, id)
  if type(id) ~= "string" then error(tool .. ": id must be a string") end
  local job = ssh.job(id)
  host_arg(tool, job.host)
  return job
end

mcp.tool{
  name = "job_status",
  description = "State of a detached job: running, exited (with its code) or lost.",
  parameters = object({ id = { type = "string" } }, { "id" }),
  run = function(args) return job_arg("job_status", args.id):status() end,
}

mcp.tool{
  name = "job_tail",
  description = "The last lines of a detached job's log.",
  parameters = object({ id = { type = "string" }, lines = { type = "integer", description = "default 50" } }, { "id" }),
  run = function(args)
    local n = int_arg("job_tail", "lines", args.lines, 50, MAX_LOG_LINES)
    return table.concat(job_arg("job_tail", args.id):tail(n), "\n")
  end,
}

mcp.tool{
  name = "sync_push",
  description = "Copies a local folder under the allowed roots to a folder under the allowed roots of a host, "
    .. "with rsync over the host's ssh master. Never deletes; replaced files are backed up on the host; "
    .. "symbolic links leading out of the folder are not copied.",
  parameters = object({
    path = { type = "string", description = "local folder, under an allowed root" },
    host = { type = "string" },
    remote_path = { type = "string", description = "folder on the host, under an allowed root" },
    dry_run = { type = "boolean" },
  }, { "path", "host", "remote_path" }),
  timeout = "30m",
  run = function(args)
    local host = host_arg("sync_push", args.host)
    local from = inside_roots("sync_push", "local", args.path, false)
    local to = inside_roots("sync_push", host, args.remote_path, true)
    local r = sync.push(from, host .. ":" .. to,
      { delete = false, backup = true, links = "safe", dry_run = args.dry_run == true })
    return { files = r.files, bytes = r.bytes, changes = #r.changes, dry_run = r.dry_run }
  end,
}

mcp.tool{
  name = "sync_pull",
  description = "Copies a folder under the allowed roots of a host to a local folder under the allowed roots. "
    .. "Never deletes; replaced files are backed up; symbolic links leading out of the folder are not copied.",
  parameters = object({
    host = { type = "string" },
    remote_path = { type = "string", description = "folder on the host, under an allowed root" },
    path = { type = "string", description = "local folder, under an allowed root" },
    dry_run = { type = "boolean" },
  }, { "host", "remote_path", "path" }),
  timeout = "30m",
  run = function(args)
    local host = host_arg("sync_pull", args.host)
    local from = inside_roots("sync_pull", host, args.remote_path, false)
    local to = inside_roots("sync_pull", "local", args.path, true)
    local r = sync.pull(host .. ":" .. from, to,
      { delete = false, backup = true, links = "safe", dry_run = args.dry_run == true })
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
