-- heavy_ai_task.lua — start a long job (inference, training) on a big machine, walk away, fetch results later.
--
-- Waits for HOST to come online, pushes the working tree there (honouring .batonignore / .stignore, nothing
-- deleted), starts COMMAND detached in the pushed folder, prints the job id and returns at once. With
-- --wait it streams the job's log until the job ends, then pulls REMOTE_DIR back into LOCAL_DIR
-- (--sync-back). Without --wait it prints the command that resumes: `baton run <this script> --job ID
-- [--sync-back REMOTE LOCAL]`, with absolute paths, to run as printed from any folder (and any machine sharing
-- the state dir): the job's record knows the folder it ran in, so REMOTE is found there whatever the
-- current folder. A job that failed says so first, even when its results cannot be fetched.
-- The job is titled `heavy_ai_task <folder>`: notifications and `baton jobs` use that name.
-- A `--wait` run cut short (the laptop slept, the terminal closed) is finished by `baton resume RUN` (the id
-- is in `baton runs`): the wait, the push and the start are journaled, so the tree is not pushed and the job
-- not started again; it goes on waiting for the same job and pulls its results.
--
-- Fleet: HOST is any fleet host (e.g. the one with role "gpu" or "inference"); it may be asleep or booting.
-- A HOST with `mac` in the fleet is woken (Wake-on-LAN) when it does not answer.
--
-- With --via-syncthing FOLDER the tree is not pushed: Syncthing already shares FOLDER between this machine
-- and HOST. The script rescans it here and waits until HOST has all of it, runs COMMAND in the folder's path
-- on HOST, and (with --wait) waits until the results have come back here. Needs Syncthing on both sides
-- (see `sync.syncthing`).
--
-- Arguments:
--   HOST [--] COMMAND…          one word is run by the host's shell; several are an argv (no shell)
--   --wait                      stream the log until the job ends, then pull the results back
--   --job ID                    resume waiting for job ID (implies --wait; HOST and COMMAND not needed)
--   --sync-back REMOTE LOCAL    after the job: pull REMOTE (relative to the pushed folder, or ~/… or /…)
--                               into LOCAL
--   --dir DIR                   the local tree to push (default: the current folder)
--   --remote-dir DIR            where it goes on HOST (default: ~/baton-work/<name of DIR>)
--   --online-timeout DURATION   how long to wait for HOST to come online (default: 10m)
--   --poll DURATION             how often to look at the job while waiting (default: 5s)
--   --notify                    tell the fleet's `notify` channels when the job ends (`baton daemon` watches it
--                               without --wait; with --wait this script notifies)
--   --via-syncthing FOLDER      move files with Syncthing (FOLDER id or label) instead of rsync
-- Example: baton run heavy_ai_task.lua studio --wait --sync-back out ./out -- python train.py --epochs 3
local args = require("baton.args")
local routines = require("baton.routines")

local usage = "heavy_ai_task.lua HOST [--wait] [--notify] [--job ID] [--sync-back REMOTE LOCAL] [--dir DIR] "
  .. "[--remote-dir DIR] [--via-syncthing FOLDER] [--online-timeout DUR] [--poll DUR] [--] COMMAND…"
local a = args.parse(baton.args, {
  flags = { "wait", "notify" },
  options = { job = 1, ["sync-back"] = 2, dir = 1, ["remote-dir"] = 1, ["online-timeout"] = 1, poll = 1,
    ["via-syncthing"] = 1 },
  usage = usage,
})

local cwd = baton.exec({ "pwd" }).stdout:gsub("%s+$", "")
-- `p` from the current folder, as an absolute path (for a command printed to be run from anywhere).
local function absolute(p)
  if p:sub(1, 1) == "/" then return p end
  return (cwd .. "/" .. p):gsub("/%./", "/"):gsub("/%.$", ""):gsub("/$", "")
end
-- A word for a shell command line: as is when plain, else single-quoted.
local function word(w)
  return w:match("^[%w%%+,./:=@_~-]+$") and w or routines.quote(w)
end

local dir = a.dir or "."
local abs = absolute(dir)
local name = abs:gsub("/+$", ""):match("([^/]+)$") or "work"
local remote_dir = a.remote_dir or ("~/baton-work/" .. name)

local job
if a.job then
  job = ssh.job(a.job)
  if a[1] and a[1] ~= job.host then error(("job %s runs on %s, not %s"):format(job.id, job.host, a[1]), 0) end
  -- The results are where the job ran, whatever folder this resume runs in.
  remote_dir = job.cwd or remote_dir
  print(("resuming job %s on %s: %s"):format(job.id, job.host, job.title or job.command))
else
  local host = a[1]
  if not host or not a[2] then error("usage: " .. usage, 0) end
  routines.host(nil, host) -- a fleet host, or an error listing them
  local cmd = { table.unpack(a, 2) }
  if #cmd == 1 then cmd = cmd[1] end
  local wakeable = baton.fleet.hosts[host].mac ~= nil
  print(("waiting for %s to be online%s …"):format(host, wakeable and " (waking it)" or ""))
  ssh.wait_online(host, { timeout = a.online_timeout or "10m", wake = wakeable })
  if a.via_syncthing then
    local here, there = sync.syncthing(), sync.syncthing(host)
    local folder = a.via_syncthing
    here:scan(folder)
    print(("waiting for Syncthing to deliver %s to %s …"):format(folder, host))
    here:wait_synced(folder, { device = there:id(), timeout = a.online_timeout or "10m" })
    for _, f in ipairs(there:folders()) do
      if f.id == folder or f.label == folder then remote_dir = f.path end
    end
    print(("%s has %s at %s"):format(host, folder, remote_dir))
  else
    ssh.run(host, "mkdir -p " .. routines.path(remote_dir))
    local pushed = sync.push(dir, ("%s:%s"):format(host, remote_dir))
    print(("pushed %s to %s:%s (%d files, %d bytes)"):format(dir, host, remote_dir, pushed.files, pushed.bytes))
  end
  -- With --wait this script tells the end itself; without, `baton daemon` watches the job.
  job = ssh.spawn(host, cmd, { cwd = remote_dir, notify = a.notify and not a.wait, title = "heavy_ai_task " .. name })
  print(("started job %s on %s (log %s)"):format(job.id, host, job.log))
  if not a.wait then
    local me = absolute((debug.getinfo(1, "S").source:gsub("^@", "")))
    local back = a.sync_back and (" --sync-back %s %s"):format(word(a.sync_back[1]), word(absolute(a.sync_back[2]))) or ""
    print(("resume with: baton run %s --job %s%s"):format(word(me), job.id, back))
    return
  end
end

local status = job:wait({ poll = a.poll or "5s", on_line = function(_, line) print(line) end })
print(("job %s on %s: %s%s"):format(job.id, job.host, status.state, status.code and (", exit " .. status.code) or ""))

if a.via_syncthing then
  local here, there = sync.syncthing(), sync.syncthing(job.host)
  there:scan(a.via_syncthing)
  print(("waiting for Syncthing to bring the results of %s back …"):format(a.via_syncthing))
  there:wait_synced(a.via_syncthing, { device = here:id(), timeout = a.online_timeout or "10m" })
end

if a.notify then
  local ok = status.state == "exited" and status.code == 0
  baton.notify(("baton: job %s on %s %s"):format(job.id, job.host, ok and "succeeded" or "failed"),
    ("%s%s\n\n%s"):format(status.state, status.code and (" " .. status.code) or "", table.concat(job:tail(10), "\n")),
    { priority = ok and "default" or "high", tags = { ok and "white_check_mark" or "x" } })
end

local failure = (status.state ~= "exited" or status.code ~= 0) and ("job %s on %s %s"):format(job.id, job.host,
  status.state == "lost" and "was lost (the process vanished without an exit record)"
    or ("exited with code " .. tostring(status.code)))

if a.sync_back then
  local from, to = a.sync_back[1], a.sync_back[2]
  if not (from:match("^/") or from:match("^~")) then from = remote_dir .. "/" .. from end
  local ok, pulled = pcall(sync.pull, ("%s:%s"):format(job.host, from), to)
  if not ok then
    -- The job's own end comes first: a missing result folder is usually its consequence.
    error(("%sthe results were not fetched: %s"):format(failure and failure .. "; " or "", tostring(pulled)), 0)
  end
  print(("pulled %s:%s into %s (%d files)"):format(job.host, from, to, pulled.files))
end

if failure then error(failure, 0) end
