-- gpu_sync.lua — the GPU-validation day: validate the main branch on the GPU machine and bring the results home.
--
--   1. here: commit (when dirty) and push the local work on the main branch (`sync.git`);
--   2. on the GPU host (waiting for it to come online): fetch, check out the validation branch (created from
--      main the first time), merge the upstream validation branch and then the main branch into it;
--   3. run the validation command there, its output streamed here;
--   4. commit everything it produced on the validation branch and push it (`sync.git_remote`);
--   5. here: fetch and merge the validation branch into main (only when validation passed; not pushed —
--      end_of_day.lua or your next push does that).
-- Any conflict stops the run cleanly: merges and rebases are aborted, both trees stay as they were, and
-- the error names the host, the repo and the conflicting files. A failed validation still commits and pushes
-- its results (the commit says so) but is not merged back, and the script ends with an error.
--
-- Fleet: the GPU host is `gpu.host` from the routines file, else the one host with role "gpu". When the fleet
-- gives it a `mac`, it is woken (Wake-on-LAN) if it does not answer.
-- Config: the `gpu` section of routines.lua next to the fleet file (or $BATON_ROUTINES, or --config FILE):
--   gpu = { local_path = "~/code/model", remote_path = "~/code/model", main = "main", branch = "validation",
--           validate = "python validate.py --out results/", timeout = "2h", host = "gpu" },
--
-- Arguments: --host NAME the GPU host · --message TEXT commit message for local work (default: a dated one)
--            · --config FILE · --online-timeout DURATION how long to wait for the GPU host (default: 10m)
local args = require("baton.args")
local routines = require("baton.routines")

local a = args.parse(baton.args, {
  options = { host = 1, message = 1, config = 1, ["online-timeout"] = 1 },
  usage = "gpu_sync.lua [--host NAME] [--message TEXT] [--config FILE] [--online-timeout 10m]",
})
local cfg = routines.load(a.config)
local g = cfg.gpu
for _, key in ipairs({ "local_path", "remote_path", "validate" }) do
  if not g[key] then error(("%s: gpu.%s is required for gpu_sync"):format(cfg.file, key), 0) end
end
local host = routines.host("gpu", a.host or g.host)
local here, there = routines.expand(g.local_path), g.remote_path
local today = os.date("%Y-%m-%d %H:%M")

-- 1. Local work, pushed.
local _, branch = routines.git("local", here, { "rev-parse", "--abbrev-ref", "HEAD" })
if branch ~= g.main then
  error(("%s is on branch %s, not %s: switch to %s (or set gpu.main)"):format(here, branch, g.main, g.main), 0)
end
local r = sync.git(here, { message = a.message or ("Work in progress before GPU validation, " .. today) })
print(("local: %s, %s"):format(r.committed and "committed" or "clean", r.pushed and "pushed" or "nothing to push"))

-- 2. The validation branch on the GPU host, up to date with main.
local wakeable = baton.fleet.hosts[host].mac ~= nil
print(("waiting for %s%s …"):format(host, wakeable and " (waking it)" or ""))
ssh.wait_online(host, { timeout = a.online_timeout or "10m", wake = wakeable })
local _, dirty = routines.git(host, there, { "status", "--porcelain" })
if dirty ~= "" then
  error(("%s: %s has uncommitted changes; commit or discard them first:\n%s"):format(host, there, dirty), 0)
end
routines.git(host, there, { "fetch", "-q", "origin" })
local function exists(ref) return routines.git(host, there, { "rev-parse", "-q", "--verify", ref }, { check = false }).ok end
local upstream = "origin/" .. g.branch
if exists("refs/heads/" .. g.branch) then
  routines.git(host, there, { "checkout", "-q", g.branch })
else
  routines.git(host, there, { "checkout", "-q", "-b", g.branch, exists(upstream) and upstream or ("origin/" .. g.main) })
end
if exists(upstream) then routines.merge(host, there, upstream) end
routines.merge(host, there, "origin/" .. g.main)
local _, main_sha = routines.git(host, there, { "rev-parse", "--short", "origin/" .. g.main })
print(("%s: %s is on %s with %s at %s"):format(host, there, g.branch, g.main, main_sha))

-- 3. Validation.
print(("%s: running %s"):format(host, g.validate))
local v = ssh.run(host, g.validate, {
  cwd = there, timeout = g.timeout, check = false,
  on_line = function(_, line) print(("[%s] %s"):format(host, line)) end,
})
local verdict = v.ok and "passed" or (v.code == 124 and "timed out" or ("failed (exit " .. tostring(v.code) .. ")"))

-- 4. Results committed and pushed on the validation branch.
local pushed = sync.git_remote(host, there, {
  branch = g.branch,
  message = ("Validation %s: %s at %s, %s"):format(verdict, g.main, main_sha, today),
})
print(("%s: results %s and pushed to %s (%s)"):format(host, pushed.committed and "committed" or "unchanged", g.branch, pushed.head:sub(1, 10)))

if not v.ok then
  error(("validation on %s %s; results are on %s, not merged into %s:\n%s"):format(host, verdict, g.branch, g.main,
    (v.stderr ~= "" and v.stderr or v.stdout):sub(-1500)), 0)
end

-- 5. Results merged back here.
routines.git("local", here, { "fetch", "-q", "origin" })
routines.merge("local", here, upstream, ("Merge validation results (%s at %s)"):format(g.main, main_sha))
print(("local: merged %s into %s in %s (not pushed)"):format(upstream, g.main, here))
