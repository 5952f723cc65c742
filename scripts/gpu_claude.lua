-- gpu_claude.lua — a task for Claude Code on the GPU machine: wake it, push the working tree there, run Claude
-- Code on the task in the pushed folder (the GPU's tools allowed), pull the tree back, notify.
--
--   1. wait for the GPU host to come online (woken with Wake-on-LAN when the fleet gives it a `mac`);
--   2. push DIR (default: the current folder) to REMOTE_DIR on it (default: ~/baton-work/<name of DIR>),
--      honouring .batonignore / .stignore, nothing deleted;
--   3. `claude.run` the task there, its text and tool calls printed as they come; budgeted like every
--      claude.run (the fleet budget caps it, `--max-usd` lowers the cap);
--   4. pull REMOTE_DIR back into DIR (nothing deleted here; `--no-pull` skips it), whatever the run's outcome;
--   5. with --notify, tell the fleet's notify channels how it went.
-- Durable: every step is journaled, so a laptop that sleeps midway finishes with `baton resume RUN` (the id
-- is in `baton runs`) without pushing again or running Claude Code a second time. To go on with the same
-- conversation later, pass the printed session id with --resume.
--
-- Fleet: the GPU host is --host NAME, else the one host with role "gpu". Claude Code must be installed and
-- logged in there (`npm install -g @anthropic-ai/claude-code`).
--
-- Arguments:
--   TASK…                      the prompt (several words are joined with spaces)
--   --host NAME                the GPU host (default: the fleet host with role "gpu")
--   --dir DIR                  the local tree to push (default: the current folder)
--   --remote-dir DIR           where it goes on the host (default: ~/baton-work/<name of DIR>)
--   --model NAME               Claude Code's model (default: its own)
--   --max-turns N              stop after N turns
--   --max-usd USD              the most this run may spend
--   --allow LIST               the tools allowed, comma-separated (default: Read,Edit,Write,Glob,Grep,
--                              Bash(nvidia-smi:*),Bash(python:*),Bash(python3:*))
--   --resume SESSION           continue a previous conversation
--   --online-timeout DURATION  how long to wait for the host (default: 10m)
--   --no-pull                  leave the results on the host
--   --notify                   notify when done
-- Example: baton run gpu_claude.lua --max-usd 3 -- "Profile train.py on the GPU and make the data loader faster"
local args = require("baton.args")
local routines = require("baton.routines")

local usage = "gpu_claude.lua [--host NAME] [--dir DIR] [--remote-dir DIR] [--model NAME] [--max-turns N] "
  .. "[--max-usd USD] [--allow LIST] [--resume SESSION] [--online-timeout DUR] [--no-pull] [--notify] [--] TASK…"
local a = args.parse(baton.args, {
  flags = { "notify", "no-pull" },
  options = { host = 1, dir = 1, ["remote-dir"] = 1, model = 1, ["max-turns"] = 1, ["max-usd"] = 1, allow = 1,
    resume = 1, ["online-timeout"] = 1 },
  usage = usage,
})
local task = table.concat(a, " ")
if task:match("^%s*$") then error("gpu_claude: no task given\nusage: " .. usage, 0) end
local function number(name, v)
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or n < 0 then error(("gpu_claude: --%s must be a number ≥ 0, got %q"):format(name, v), 0) end
  return n
end
local max_turns, max_usd = number("max-turns", a.max_turns), number("max-usd", a.max_usd)
local allowed = {}
for t in (a.allow or "Read,Edit,Write,Glob,Grep,Bash(nvidia-smi:*),Bash(python:*),Bash(python3:*)"):gmatch("[^,]+") do
  allowed[#allowed + 1] = t:match("^%s*(.-)%s*$")
end

local host = routines.host("gpu", a.host)
local dir = a.dir or "."
local cwd = baton.exec({ "pwd" }).stdout:gsub("%s+$", "")
local abs = dir:sub(1, 1) == "/" and dir or (cwd .. "/" .. dir)
local name = abs:gsub("/%.?$", ""):gsub("/+$", ""):match("([^/]+)$") or "work"
local remote_dir = a.remote_dir or ("~/baton-work/" .. name)

local wakeable = baton.fleet.hosts[host] and baton.fleet.hosts[host].mac ~= nil
print(("waiting for %s to be online%s …"):format(host, wakeable and " (waking it)" or ""))
ssh.wait_online(host, { timeout = a.online_timeout or "10m", wake = wakeable })
ssh.run(host, "mkdir -p " .. routines.path(remote_dir))
local pushed = sync.push(dir, ("%s:%s"):format(host, remote_dir))
print(("pushed %s to %s:%s (%d files)"):format(dir, host, remote_dir, pushed.files))

local r = claude.run(task, {
  host = host, cwd = remote_dir, model = a.model, max_turns = max_turns, max_usd = max_usd,
  allowed_tools = allowed, resume = a.resume, check = false,
  on_event = function(ev)
    if ev.type == "text" then print(ev.text)
    elseif ev.type == "tool_use" then
      print(("[%s] %s"):format(ev.name, type(ev.input) == "table" and (ev.input.command or ev.input.file_path or "") or ""))
    end
  end,
})

local pulled
if not a.no_pull then
  pulled = sync.pull(("%s:%s"):format(host, remote_dir), dir)
  print(("pulled %s:%s into %s (%d files)"):format(host, remote_dir, dir, pulled.files))
end

local summary = r.ok
  and ("Claude Code finished on %s: $%.2f, %d turns (session %s)"):format(host, r.cost, r.turns, tostring(r.session_id))
  or ("Claude Code failed on %s: %s"):format(host, r.err)
print(summary)
if r.session_id then print(("continue with: --resume %s"):format(r.session_id)) end
if a.notify then
  baton.notify("baton: gpu_claude " .. (r.ok and "done" or "failed"), summary .. (r.text and ("\n\n" .. r.text) or ""),
    { priority = r.ok and "default" or "high", tags = { r.ok and "white_check_mark" or "x" } })
end
if not r.ok then error(summary, 0) end
