-- nightly_ci.lua — the nightly test run on the server host.
--
-- For each configured repo (with a `test` command), on the CI host: clone it when missing, fetch, check out
-- the tip of its branch, run the test command with the repo's timeout and keep everything in
--   <ci.dir>/logs/<repo>/<stamp>/{checkout.log, commit, test.log, result}     (`latest` points at the run)
-- and one line per run in <ci.dir>/results.tsv. When a repo fails, the tail of its log goes to `route`
-- (task `bug_hunting`) for a first-pass diagnosis, stored next to the log as `diagnosis.md`.
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

local stamp = routines.stamp()

local function diagnose(repo, logdir, result)
  local log = routines.path(logdir .. "/test.log")
  local tail = ssh.run(host, ("tail -n %d %s"):format(cfg.ci.tail, log), { check = false }).stdout
  local prompt = ("The test command `%s` of the repository %q failed (%s). Here is the end of its log:\n\n%s\n\n"
    .. "Give a short first-pass diagnosis: the most likely cause, the file or test involved, and what to look at first.")
    :format(repo.test, repo.name, result, tail)
  local ok, answer = pcall(baton.timeout, "5m", route.ask, "bug_hunting", prompt, {
    system = "You are a senior engineer triaging a failed CI run. Be concrete and brief.",
  })
  if not ok then
    baton.log.warn("no diagnosis: no model answered", { repo = repo.name, err = tostring(answer) })
    return nil
  end
  local text = ("# Diagnosis of %s (%s)\n\n_by %s (%s tier); a first pass, check before trusting it_\n\n%s\n")
    :format(repo.name, result, answer.model, answer.tier, answer.text)
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
  print(("%s: %s — log %s:%s/test.log"):format(repo.name, result, host, logdir))
  if result ~= "pass" then
    failed[#failed + 1] = ("%s (%s)"):format(repo.name, result)
    if not a.no_diagnosis and not result:match("^error") then
      local where = diagnose(repo, logdir, result)
      if where then print(("%s: diagnosis in %s:%s"):format(repo.name, host, where)) end
    end
  end
end

if #failed > 0 then
  error(("nightly_ci on %s: %d of %d repos failed: %s"):format(host, #failed, #repos, table.concat(failed, ", ")), 0)
end
print(("nightly_ci on %s: all %d repos passed"):format(host, #repos))
