-- gpu_sync.lua — the GPU-validation day: validate the main branch on the GPU machine and bring the results home.
--
--   1. here: commit (when dirty) and push the local work on the main branch (`sync.git`);
--   2. on the GPU host (waiting for it to come online): fetch, check out the validation branch (created from
--      main the first time), merge the upstream validation branch and then the main branch into it;
--   3. run the validation command there, its output streamed here;
--   4. commit everything it produced on the validation branch and push it (`sync.git_remote`); with a local
--      worktree, fast-forward it to the pushed results (even when validation failed: that is where to look);
--   5. here: fetch and merge the validation branch into main (only when validation passed; not pushed —
--      end_of_day.lua or your next push does that).
-- Any conflict stops the run cleanly: merges and rebases are aborted, both trees stay as they were, and
-- the error names the host, the repo and the conflicting files. A failed validation still commits and pushes
-- its results (the commit says so) but is not merged back, and the script ends with an error.
-- The validation branch always tracks its own remote branch (`origin/<branch>`, never `origin/<main>`), so a
-- plain `git pull` / `git push` in it acts on the validation branch; a branch that tracked something else (as
-- older versions left it) is pointed at `origin/<branch>`, and the run says so.
--
-- Worktrees ("git worktree + ssh"): with `gpu.remote_worktree` set, validation runs in that worktree of the
-- GPU host's clone (`remote_path`, which then stays on main) instead of switching `remote_path` to the branch;
-- with `gpu.local_worktree` set, this machine keeps the validation branch checked out there, next to your
-- main checkout `local_path`. Both are optional and made by `--setup`.
--
-- --setup (run once; again whenever you like: a second run changes nothing and says so):
--   here: create the validation branch on origin from origin/<main> when origin lacks it, a local branch
--   tracking it, and the `local_worktree` on it; then, waiting for the GPU host (woken when it has a `mac`):
--   clone origin's URL (as this machine's clone names it) into `remote_path` when there is no clone yet, the
--   branch tracking `origin/<branch>` there, and the `remote_worktree` on it (when `remote_path` itself has
--   the branch checked out and is clean, it goes back to <main> first: a branch lives in one worktree).
--   Every change is printed; when there was none it prints "everything was already in place". Existing
--   branches are never moved or reset, only their upstream is set; a path that is something else is an error.
--   Setup does not validate; `validate` is not needed for it.
--
-- Fleet: the GPU host is `gpu.host` from the routines file, else the one host with role "gpu". When the fleet
-- gives it a `mac`, it is woken (Wake-on-LAN) if it does not answer.
-- Config: the `gpu` section of routines.lua next to the fleet file (or $BATON_ROUTINES, or --config FILE):
--   gpu = { local_path = "~/code/model", remote_path = "~/code/model", main = "main", branch = "validation",
--           validate = "python validate.py --out results/", timeout = "2h", host = "gpu",
--           local_worktree = "~/code/model-gpu", remote_worktree = "~/code/model-gpu" },   -- both optional
-- Branch names may not be empty or start with '-'; every config value reaches git as one argv word, never
-- through a shell.
--
-- Arguments: --setup (see above) · --host NAME the GPU host · --message TEXT commit message for local work
--            (default: a dated one) · --config FILE · --online-timeout DURATION how long to wait for the GPU
--            host (default: 10m)
local args = require("baton.args")
local routines = require("baton.routines")

local a = args.parse(baton.args, {
  flags = { "setup" },
  options = { host = 1, message = 1, config = 1, ["online-timeout"] = 1 },
  usage = "gpu_sync.lua [--setup] [--host NAME] [--message TEXT] [--config FILE] [--online-timeout 10m]",
})
local cfg = routines.load(a.config)
local g = cfg.gpu
for _, key in ipairs({ "local_path", "remote_path", "validate" }) do
  if not g[key] and not (a.setup and key == "validate") then
    error(("%s: gpu.%s is required for gpu_sync"):format(cfg.file, key), 0)
  end
end
routines.check_branch(cfg.file, "gpu.main", g.main)
routines.check_branch(cfg.file, "gpu.branch", g.branch)
if g.main == g.branch then
  error(("%s: gpu.branch and gpu.main are both %q: validation needs a branch of its own"):format(cfg.file, g.main), 0)
end
local host = routines.host("gpu", a.host or g.host)
local here = routines.expand(g.local_path)
local upstream = "origin/" .. g.branch
local today = baton.step("today", os.date, "%Y-%m-%d %H:%M")   -- unchanged when the run is resumed

local function wait_for_gpu()
  local wakeable = baton.fleet.hosts[host].mac ~= nil
  print(("waiting for %s%s …"):format(host, wakeable and " (waking it)" or ""))
  ssh.wait_online(host, { timeout = a.online_timeout or "10m", wake = wakeable })
end

local function exists(h, path, ref)
  return routines.git(h, path, { "rev-parse", "-q", "--verify", ref }, { check = false }).ok
end

-- Points the validation branch of the clone at `path` on `h` at origin/<branch>. Returns what it tracked
-- before ("" for nothing) when it changed it, nil when it already did (or origin has no such branch yet).
local function track(h, path)
  local _, up = routines.git(h, path, { "for-each-ref", "--format=%(upstream:short)", "refs/heads/" .. g.branch })
  if up == upstream or not exists(h, path, "refs/remotes/" .. upstream) then return nil end
  routines.git(h, path, { "branch", "-q", "--set-upstream-to=" .. upstream, g.branch })
  return up
end

local function tracked_note(h, before)
  if before then
    print(("%s: %s now tracks %s%s"):format(h, g.branch, upstream, before ~= "" and (" (was " .. before .. ")") or ""))
  end
end

-- ---------------------------------------------------------------------------------------------------------
-- --setup
-- ---------------------------------------------------------------------------------------------------------

local function setup()
  local changes = 0
  local function did(h, what)
    changes = changes + 1
    print(("%s: %s"):format(h, what))
  end

  -- The validation branch on `h`'s clone at `path`: created tracking origin/<branch>, or its upstream set.
  local function ensure_branch(h, path, where)
    if not exists(h, path, "refs/heads/" .. g.branch) then
      routines.git(h, path, { "branch", "-q", "--track", g.branch, upstream })
      did(h, ("created branch %s in %s, tracking %s"):format(g.branch, where, upstream))
    else
      local before = track(h, path)
      if before then
        did(h, ("%s in %s now tracks %s%s"):format(g.branch, where, upstream,
          before ~= "" and (" (was " .. before .. ")") or ""))
      end
    end
  end

  -- The worktree `wt` of the clone at `path` on `h`, on the validation branch.
  local function ensure_worktree(h, path, wt, key)
    routines.git(h, path, { "worktree", "prune" })   -- forget worktrees whose folder was deleted
    local want = sync.realpath(h, wt, { missing_ok = true })
    local _, list = routines.git(h, path, { "worktree", "list", "--porcelain" })
    local entries = {}
    for block in (list .. "\n\n"):gmatch("(.-)\n\n") do
      local p = block:match("^worktree ([^\n]+)")
      if p then entries[#entries + 1] = { path = p, branch = block:match("\nbranch ([^\n]+)") } end
    end
    local holder
    for i, e in ipairs(entries) do
      if sync.realpath(h, e.path, { missing_ok = true }) == want then
        if e.branch == "refs/heads/" .. g.branch then return end
        error(("%s: %s is already a worktree of %s, on %s, not %s: remove it (git worktree remove %s) or set gpu.%s elsewhere"):format(
          h, wt, path, e.branch and e.branch:gsub("^refs/heads/", "") or "a detached HEAD", g.branch, e.path, key), 0)
      end
      if e.branch == "refs/heads/" .. g.branch then holder = { index = i, path = e.path } end
    end
    if holder and holder.index == 1 then
      local _, dirty = routines.git(h, path, { "status", "--porcelain" })
      if dirty ~= "" then
        error(("%s: %s has %s checked out with uncommitted changes; commit or discard them, then run --setup again:\n%s"):format(
          h, path, g.branch, dirty), 0)
      end
      routines.git(h, path, { "checkout", "-q", g.main })
      did(h, ("switched %s from %s to %s (the branch moves to its worktree)"):format(path, g.branch, g.main))
    elseif holder then
      error(("%s: %s is already checked out in %s: set gpu.%s = %q, or remove that worktree (git worktree remove %s)"):format(
        h, g.branch, holder.path, key, holder.path, holder.path), 0)
    end
    routines.git(h, path, { "worktree", "add", "-q", "--", want, g.branch })
    did(h, ("added worktree %s on %s"):format(wt, g.branch))
  end

  -- Here: the branch on origin, tracked locally, and the local worktree.
  routines.git("local", here, { "fetch", "-q", "origin" })
  if not exists("local", here, "refs/remotes/" .. upstream) then
    if not exists("local", here, "refs/remotes/origin/" .. g.main) then
      error(("%s: origin has no branch %s to start %s from (set gpu.main)"):format(here, g.main, g.branch), 0)
    end
    local _, sha = routines.git("local", here, { "rev-parse", "--short", "refs/remotes/origin/" .. g.main })
    routines.git("local", here, { "push", "-q", "origin", ("refs/remotes/origin/%s:refs/heads/%s"):format(g.main, g.branch) })
    routines.git("local", here, { "fetch", "-q", "origin" })
    did("origin", ("created branch %s from %s at %s"):format(g.branch, g.main, sha))
  end
  ensure_branch("local", here, here)
  if g.local_worktree then ensure_worktree("local", here, routines.expand(g.local_worktree), "local_worktree") end

  -- The GPU host: its clone, the branch tracked there, its worktree.
  wait_for_gpu()
  local there = g.remote_path
  if not routines.git(host, there, { "rev-parse", "--git-dir" }, { check = false }).ok then
    local _, url = routines.git("local", here, { "remote", "get-url", "origin" })
    local r = ssh.run(host, { "git", "clone", "-q", "--", url, (there:gsub("^~/", "")) },
      { env = { GIT_TERMINAL_PROMPT = "0", LC_ALL = "C" }, timeout = "30m", check = false })
    if not r.ok then
      error(("%s: git clone %s %s: %s"):format(host, url, there, r.err or ("exit " .. tostring(r.code))), 0)
    end
    did(host, ("cloned %s into %s"):format(url, there))
  end
  routines.git(host, there, { "fetch", "-q", "origin" })
  ensure_branch(host, there, there)
  if g.remote_worktree then ensure_worktree(host, there, g.remote_worktree, "remote_worktree") end

  local places = {}
  if g.local_worktree then places[#places + 1] = ("%s here"):format(g.local_worktree) end
  if g.remote_worktree then places[#places + 1] = ("%s on %s"):format(g.remote_worktree, host) end
  local summary = ("%s on origin, tracked here and on %s%s"):format(g.branch, host,
    #places > 0 and ("; worktrees " .. table.concat(places, ", ")) or "")
  if changes == 0 then
    print("setup: everything was already in place (" .. summary .. "); nothing changed")
  else
    print(("setup: done, %d change%s (%s)"):format(changes, changes == 1 and "" or "s", summary))
  end
end

if a.setup then
  setup()
  return
end

-- ---------------------------------------------------------------------------------------------------------
-- The validation run
-- ---------------------------------------------------------------------------------------------------------

-- 1. Local work, pushed.
local _, branch = routines.git("local", here, { "rev-parse", "--abbrev-ref", "HEAD" })
if branch ~= g.main then
  error(("%s is on branch %s, not %s: switch to %s (or set gpu.main)"):format(here, branch, g.main, g.main), 0)
end
local r = sync.git(here, { message = a.message or ("Work in progress before GPU validation, " .. today) })
print(("local: %s, %s"):format(r.committed and "committed" or "clean", r.pushed and "pushed" or "nothing to push"))

-- 2. The validation branch on the GPU host, up to date with main.
wait_for_gpu()
local there = g.remote_worktree or g.remote_path
if g.remote_worktree then
  local head = routines.git(host, there, { "rev-parse", "--abbrev-ref", "HEAD" }, { check = false })
  if not head.ok then
    error(("%s: no worktree at %s (gpu.remote_worktree): run gpu_sync.lua --setup"):format(host, there), 0)
  end
  local on = head.stdout:gsub("%s+$", "")
  if on ~= g.branch then
    error(("%s: the worktree %s is on %s, not %s: switch it back (git -C %s switch %s) or run gpu_sync.lua --setup"):format(
      host, there, on, g.branch, there, g.branch), 0)
  end
end
local _, dirty = routines.git(host, there, { "status", "--porcelain" })
if dirty ~= "" then
  error(("%s: %s has uncommitted changes; commit or discard them first:\n%s"):format(host, there, dirty), 0)
end
routines.git(host, there, { "fetch", "-q", "origin" })
if exists(host, there, "refs/heads/" .. g.branch) then
  if not g.remote_worktree then routines.git(host, there, { "checkout", "-q", g.branch }) end
elseif exists(host, there, "refs/remotes/" .. upstream) then
  routines.git(host, there, { "checkout", "-q", "--track", "-b", g.branch, upstream })
else
  -- A new branch: not tracking main; it tracks origin/<branch> once step 4 has pushed it.
  routines.git(host, there, { "checkout", "-q", "--no-track", "-b", g.branch, "origin/" .. g.main })
end
tracked_note(host, track(host, there))
if exists(host, there, "refs/remotes/" .. upstream) then routines.merge(host, there, upstream) end
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

-- 4. Results committed and pushed on the validation branch (which then tracks origin/<branch>).
local pushed = sync.git_remote(host, there, {
  branch = g.branch,
  message = ("Validation %s: %s at %s, %s"):format(verdict, g.main, main_sha, today),
})
print(("%s: results %s and pushed to %s (%s)"):format(host, pushed.committed and "committed" or "unchanged", g.branch, pushed.head:sub(1, 10)))
tracked_note(host, track(host, there))
routines.git("local", here, { "fetch", "-q", "origin" })
if g.local_worktree then
  local wt = routines.expand(g.local_worktree)
  local head = routines.git("local", wt, { "rev-parse", "--abbrev-ref", "HEAD" }, { check = false })
  local on = head.ok and head.stdout:gsub("%s+$", "") or nil
  local ff = on == g.branch and routines.git("local", wt, { "merge", "--ff-only", "-q", upstream }, { check = false })
  if not on then
    print(("local: no worktree at %s (gpu.local_worktree) to update: run gpu_sync.lua --setup"):format(g.local_worktree))
  elseif not ff then
    print(("local: %s not updated: it is on %s, not %s"):format(g.local_worktree, on, g.branch))
  elseif ff.ok then
    print(("local: %s fast-forwarded to %s (%s)"):format(g.local_worktree, upstream, pushed.head:sub(1, 10)))
  else
    print(("local: %s not updated (%s): merge %s there yourself"):format(g.local_worktree,
      ((ff.stderr ~= "" and ff.stderr or (ff.err or "")):gsub("%s+$", ""):gsub("\n", " ")), upstream))
  end
end

if not v.ok then
  error(("validation on %s %s; results are on %s, not merged into %s:\n%s"):format(host, verdict, g.branch, g.main,
    (v.stderr ~= "" and v.stderr or v.stdout):sub(-1500)), 0)
end

-- 5. Results merged back here.
routines.merge("local", here, upstream, ("Merge validation results (%s at %s)"):format(g.main, main_sha))
print(("local: merged %s into %s in %s (not pushed)"):format(upstream, g.main, here))
