-- nightly_ci.lua — the nightly test run on the server host.
--
-- For each configured repo (with a `test` command), on the CI host: clone it when missing, fetch, check out
-- the tip of its branch, run the test command with the repo's timeout and keep everything in
--   <ci.dir>/logs/<repo>/<stamp>/{checkout.log, commit, test.log, result}     (`latest` points at the run)
-- and one line per run in <ci.dir>/results.tsv. When a repo fails, the tail of its log goes to `route`
-- (task `bug_hunting`) for a first-pass diagnosis by a tool-using agent (read-only tools on the CI host:
-- read_log, git_log, git_show, read_file confined to the clone; at most 6 model calls), stored next to the
-- log as `diagnosis.md` with the list of tools it used (never the model's thinking).
-- Ends with an error when any repo failed, so a scheduled run is recorded as failed.
-- Meant for `schedule.cron` (see examples/schedule.lua).
--
-- Fleet: the CI host is `ci.host` from the routines file, else the one host with role "server".
-- Config: routines.lua next to the fleet file (or $BATON_ROUTINES, or --config FILE):
--   repos = { app = { url = "git@github.com:me/app.git", branch = "main", test = "cargo test", timeout = "30m" } },
--   ci = { host = "brain", dir = "~/.baton/ci", tail = 60 },
--
-- Arguments: [REPO…] only these repos · --host NAME the CI host · --config FILE · --no-diagnosis
--            · --online-timeout DURATION how long to wait for the CI host (default: 2m)
local args = require("baton.args")
local routines = require("baton.routines")

local a = args.parse(baton.args, {
  flags = { "no-diagnosis" },
  options = { host = 1, config = 1, ["online-timeout"] = 1 },
  usage = "nightly_ci.lua [REPO…] [--host NAME] [--config FILE] [--no-diagnosis] [--online-timeout 2m]",
})
local cfg = routines.load(a.config)
local host = routines.host("server", a.host or cfg.ci.host)
local repos = routines.ci_repos(cfg, a)
if #repos == 0 then error(cfg.file .. ": no repo has a test command", 0) end
ssh.wait_online(host, { timeout = a.online_timeout or "2m" })

-- A step: a resumed run (`baton resume`) keeps the stamp, so its run folders do not change.
local stamp = baton.step("stamp", routines.stamp)

-- Read-only tools for the diagnosis agent, all on the CI host: the run's log, the clone's history and files.
-- read_file is confined to the clone: absolute paths outside it, `..` and symlinks leading out are refused.
local MAX_TOOL_OUTPUT = 20000

local function tools_for(repo, logdir)
  local clone = repo.ci_path
  local function capped(text)
    if #text > MAX_TOOL_OUTPUT then return text:sub(1, MAX_TOOL_OUTPUT) .. "\n[… cut at 20000 bytes]" end
    return text
  end
  local function bounded(n, default, max)
    n = math.tointeger(tonumber(n) or default) or default
    return math.max(1, math.min(n, max))
  end
  local function checked_rev(rev)
    if type(rev) ~= "string" or rev == "" or rev:sub(1, 1) == "-" or not rev:match("^[%w%._/~^@{}-]+$") then
      error(("not a revision: %s"):format(tostring(rev)), 0)
    end
    return rev
  end
  local function relative(path)
    if type(path) ~= "string" or path == "" then error("path must be a non-empty string", 0) end
    local home = clone:gsub("^~/", "")
    path = path:gsub("^" .. clone:gsub("%p", "%%%0") .. "/", ""):gsub("^" .. home:gsub("%p", "%%%0") .. "/", "")
    if path:sub(1, 1) == "/" or path:sub(1, 1) == "~" then
      error(("refused: %s is outside the repository"):format(path), 0)
    end
    for part in path:gmatch("[^/]+") do
      if part == ".." then error(("refused: %s leaves the repository (..)"):format(path), 0) end
    end
    return path
  end
  local function git(args)
    local r, out = routines.git(host, clone, args, { check = false, timeout = "60s" })
    if not r.ok then error(("git %s: %s"):format(table.concat(args, " "), r.err or ("exit " .. tostring(r.code))), 0) end
    return capped(out)
  end
  return {
    read_log = {
      description = "The last lines of the failed run's test log.",
      parameters = { type = "object", properties = { lines = { type = "integer", description = "how many lines from the end (at most 400)" } } },
      run = function(a)
        local n = bounded(a.lines, cfg.ci.tail, 400)
        local r = ssh.run(host, ("tail -n %d %s"):format(n, routines.path(logdir .. "/test.log")), { check = false, timeout = "60s" })
        if not r.ok then error("cannot read the log: " .. (r.err or ""), 0) end
        return capped(r.stdout)
      end,
    },
    git_log = {
      description = "The latest commits of the tested checkout, one line each.",
      parameters = { type = "object", properties = { n = { type = "integer", description = "how many commits (at most 50)" } } },
      run = function(a) return git({ "log", "--oneline", "-n", tostring(bounded(a.n, 10, 50)) }) end,
    },
    git_show = {
      description = "A commit (message and diff), or a file as it was at a revision when `path` is given.",
      parameters = { type = "object", properties = { rev = { type = "string" }, path = { type = "string" } }, required = { "rev" } },
      run = function(a)
        local rev = checked_rev(a.rev)
        if a.path then return git({ "show", rev .. ":" .. relative(a.path) }) end
        return git({ "show", "--stat", "--patch", rev })
      end,
    },
    read_file = {
      description = "A file of the repository as tested (a path relative to the repository root).",
      parameters = { type = "object", properties = { path = { type = "string" } }, required = { "path" } },
      run = function(a)
        local rel = relative(a.path)
        local script = ('cd %s && root=$(pwd -P) && f=$(realpath -e -- %s) || exit 4; case "$f" in "$root"/*) head -c %d -- "$f";; *) echo "refused: outside the repository" >&2; exit 3;; esac')
          :format(routines.path(clone), routines.quote(rel), MAX_TOOL_OUTPUT + 1)
        local r = ssh.run(host, script, { check = false, timeout = "60s" })
        if r.code == 3 then error(("refused: %s leads outside the repository"):format(rel), 0) end
        if not r.ok then error(("cannot read %s: %s"):format(rel, r.err or ""), 0) end
        return capped(r.stdout)
      end,
    },
  }
end

local function diagnose(repo, logdir, result)
  local log = routines.path(logdir .. "/test.log")
  local tail = ssh.run(host, ("tail -n %d %s"):format(cfg.ci.tail, log), { check = false }).stdout
  local prompt = ("The test command `%s` of the repository %q failed (%s). Here is the end of its log:\n\n%s\n\n"
    .. "Use the tools to look at the log, the recent commits and the files involved, then give a short "
    .. "first-pass diagnosis: the most likely cause, the file or test involved, and what to look at first.")
    :format(repo.test, repo.name, result, tail)
  local used = {}
  local ok, answer = pcall(baton.timeout, "10m", route.ask, "bug_hunting", prompt, {
    system = "You are a senior engineer triaging a failed CI run. Be concrete and brief.",
    tools = tools_for(repo, logdir),
    max_steps = 6,
    tool_timeout = "60s",
    on_step = function(step)
      if step.kind == "tool" then
        local args = {}
        for k, v in pairs(step.arguments or {}) do args[#args + 1] = ("%s=%s"):format(k, tostring(v)) end
        table.sort(args)
        used[#used + 1] = ("- %s(%s)%s"):format(step.name, table.concat(args, ", "), step.err and (" — " .. step.err) or "")
      end
    end,
  })
  if not ok then
    baton.log.warn("no diagnosis: no model answered", { repo = repo.name, err = tostring(answer) })
    return nil
  end
  -- `answer.text` never holds the model's thinking (it is in `answer.thinking`, which is not stored).
  local text = ("# Diagnosis of %s (%s)\n\n_by %s (%s tier); a first pass, check before trusting it_\n\n%s\n\n"
    .. "## Tools used\n\n%s\n")
    :format(repo.name, result, answer.model, answer.tier, answer.text, #used > 0 and table.concat(used, "\n") or "none")
  ssh.run(host, "cat > " .. routines.path(logdir .. "/diagnosis.md"), { stdin = text })
  return logdir .. "/diagnosis.md"
end

local failed = {}
for _, repo in ipairs(repos) do
  local logdir = routines.ci_logdir(cfg, repo, stamp)
  print(("%s: testing on %s …"):format(repo.name, host))
  -- The script bounds the test itself; this is the backstop (and the bound where GNU timeout is missing).
  local limit = routines.seconds(repo.timeout) + 120
  local run = ssh.run(host, routines.ci_script(cfg, repo, stamp), { timeout = limit, check = false })
  local result = ssh.run(host, "cat " .. routines.path(logdir .. "/result") .. " 2>/dev/null", { check = false }).stdout:gsub("%s+$", "")
  if result == "" then
    result = run.code == 124 and ("timeout after %ds"):format(limit) or ("error: %s"):format(run.err or "no result recorded")
    ssh.run(host, ("mkdir -p %s && cat > %s"):format(routines.path(logdir), routines.path(logdir .. "/result")),
      { stdin = result .. "\n", check = false })
  end
  -- A run that stopped before its test has only the checkout's log.
  local log = result:match("^error: checkout") and "checkout.log" or "test.log"
  print(("%s: %s — log %s:%s/%s"):format(repo.name, result, host, logdir, log))
  if result ~= "pass" then
    failed[#failed + 1] = ("%s (%s)"):format(repo.name, result)
    if not a.no_diagnosis and not result:match("^error") then
      local where = diagnose(repo, logdir, result)
      if where then print(("%s: diagnosis in %s:%s"):format(repo.name, host, where)) end
    end
  end
end

if #failed > 0 then
  error(("nightly_ci on %s: %d of %d repo%s failed: %s"):format(host, #failed, #repos, #repos == 1 and "" or "s",
    table.concat(failed, ", ")), 0)
end
print(#repos == 1 and ("nightly_ci on %s: %s passed"):format(host, repos[1].name)
  or ("nightly_ci on %s: all %d repos passed"):format(host, #repos))
