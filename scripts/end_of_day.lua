-- end_of_day.lua — commit and push the day's work, then start CI on the server.
--
-- For each configured repo with a local `path`: when the tree is dirty, commit everything with a message
-- written by the local model (route task `commit_message`, never above its tier — no paid call for a commit
-- message; a plain "End of day …" message when no model is up; the subject is kept to 72 characters and
-- the message always has a body), then `git pull --rebase` and push (`sync.git`). When origin has a
-- conflicting change the rebase is aborted and the day's work stays in its local commit, unpushed: the
-- report says exactly that ("committed as 533e6b4, not pushed: origin/main has a conflicting change in
-- app.py; resolve with: …"), and so does every later run until it is resolved. A repo that fails is
-- reported and the others still go. Then CI is started as a detached job on the server host for the repos
-- that pushed something and have a `test` command (the same steps and log layout as nightly_ci.lua), and
-- the script prints the job id and where the results will be. Ends with an error when any step failed
-- (run by `baton daemon`, that error is the failure notification's text).
-- The CI job is started with `notify = true` and the title "end_of_day CI (app, lib)": `baton daemon`
-- watches it and sends its result to the fleet's `notify` channels when it arrives — the title, the exit
-- code and real duration, and the log's last lines, which end with one `repo: result` line per repo.
--
-- Fleet: the CI host is `ci.host` from the routines file, else the one host with role "server".
-- Config: routines.lua next to the fleet file (or $BATON_ROUTINES, or --config FILE):
--   repos = { app = { path = "~/code/app", url = "git@github.com:me/app.git", test = "cargo test" } },
--   ci = { host = "brain" },
--
-- Arguments: [REPO…] only these repos · --no-ci skip the CI trigger · --host NAME the CI host · --config FILE
local args = require("baton.args")
local routines = require("baton.routines")

local a = args.parse(baton.args, {
  flags = { "no-ci" },
  options = { host = 1, config = 1 },
  usage = "end_of_day.lua [REPO…] [--no-ci] [--host NAME] [--config FILE]",
})
local cfg = routines.load(a.config)

local wanted = {}
for _, name in ipairs(a) do wanted[name] = true end
local repos = {}
for _, r in ipairs(cfg.repos) do
  if r.path and (#a == 0 or wanted[r.name]) then
    r.path = routines.expand(r.path)
    repos[#repos + 1] = r
  end
end
if #repos == 0 then error(cfg.file .. ": no repo with a local path" .. (#a > 0 and " among " .. table.concat(a, ", ") or ""), 0) end

local SUBJECT_MAX = 72

-- The model's answer as a commit message: no thinking, fences or quotes; a subject of at most 72 characters
-- (cut at a word, the whole line moved into the body) and a body (`files` when the model gave none).
local function clean(text, files)
  text = text:gsub("<think>.-</think>", ""):gsub("```%w*", "")
  text = text:gsub("^%s+", ""):gsub("%s+$", ""):gsub('^"(.*)"$', "%1")
  if text == "" then return "" end
  local subject, body = text:match("^([^\n]*)\n?(.*)$")
  subject, body = subject:gsub("%s+$", ""), body:gsub("^%s+", "")
  if utf8.len(subject) and utf8.len(subject) > SUBJECT_MAX then
    local cut = subject:sub(1, utf8.offset(subject, SUBJECT_MAX) - 1):match("^(.*%S)%s") or
      subject:sub(1, utf8.offset(subject, SUBJECT_MAX - 1) - 1)
    body = subject .. (body ~= "" and "\n\n" .. body or "")
    subject = cut .. "…"
  end
  if body == "" then body = files end
  return subject .. "\n\n" .. body
end

-- A commit message for the changes in `path`: the local model's, else a plain one.
local function message_for(repo)
  local _, status = routines.git("local", repo.path, { "status", "--porcelain" })
  if status == "" then return nil end
  -- New files show in the diff once git knows they are coming (they are committed with everything anyway).
  routines.git("local", repo.path, { "add", "--all", "--intent-to-add" })
  local _, diff = routines.git("local", repo.path, { "diff", "HEAD", "--stat", "--patch", "--no-color" }, { check = false })
  local files = {}
  for line in status:gmatch("[^\n]+") do files[#files + 1] = line:sub(4) end
  local listed = "Changed: " .. table.concat(files, ", ", 1, math.min(20, #files)) .. (#files > 20 and ", …" or "")
  local today = baton.step("today", os.date, "%Y-%m-%d")   -- the same day when the run is resumed
  local fallback = ("End of day %s: %d file%s changed (%s%s)\n\n%s"):format(today, #files,
    #files == 1 and "" or "s", table.concat(files, ", ", 1, math.min(3, #files)), #files > 3 and ", …" or "", listed)
  local rule = baton.fleet.tasks.commit_message
  local max_tier = rule and rule.tier or (baton.fleet.tiers[1] and baton.fleet.tiers[1].name)
  local prompt = ("Write a git commit message for these changes in %q: a subject line under 72 characters in the "
    .. "imperative mood, then, if useful, a blank line and a few short bullet points. Answer with the message only.\n\n"
    .. "Files:\n%s\n\nDiff:\n%s"):format(repo.name, status, diff:sub(1, 12000))
  local ok, answer = pcall(baton.timeout, "3m", route.ask, "commit_message", prompt, {
    max_tier = max_tier,
    accept = function(r) return clean(r.text, listed) ~= "" or "empty answer" end,
  })
  if ok then return clean(answer.text, listed), answer.model end
  baton.log.warn("no model for the commit message; using a plain one", { repo = repo.name, err = tostring(answer) })
  return fallback, "fallback"
end

local failed, pushed = {}, {}
for _, repo in ipairs(repos) do
  local ok, err = pcall(function()
    local message, by = message_for(repo)
    local r = sync.git(repo.path, { message = message })
    local what = r.committed and ("committed (message by %s: %q)"):format(by, message:match("^[^\n]*")) or "nothing to commit"
    print(("%s: %s, %s, %s"):format(repo.name, what, r.pulled and "pulled" or "up to date",
      r.pushed and "pushed" or "nothing to push"))
    if r.pushed then pushed[#pushed + 1] = repo end
  end)
  if not ok then
    failed[#failed + 1] = ("%s: %s"):format(repo.name, tostring(err))
    print(("%s: FAILED: %s"):format(repo.name, tostring(err)))
  end
end

-- CI on the server for what was pushed.
local ci = {}
for _, r in ipairs(pushed) do
  if r.test then ci[#ci + 1] = r end
end
if a.no_ci or #ci == 0 then
  print(a.no_ci and "CI: skipped (--no-ci)" or "CI: not started: no repo with a test command pushed anything")
else
  local ok, err = pcall(function()
    local host = routines.host("server", a.host or cfg.ci.host)
    if not ssh.online(host, { timeout = "10s" }) then error(("CI host %s is offline; CI not started"):format(host), 0) end
    -- A step: a resumed run (`baton resume`) keeps the stamp, so its results land where it printed.
    local stamp = baton.step("stamp", routines.stamp)
    local parts = { "rc=0" }
    for _, r in ipairs(ci) do
      parts[#parts + 1] = "(\n" .. routines.ci_script(cfg, r, stamp) .. "\n) || rc=1"
    end
    parts[#parts + 1] = "exit $rc"
    local names = {}
    for _, r in ipairs(ci) do names[#names + 1] = r.name end
    -- The title heads the notification; the log ends with one `repo: result` line per repo.
    local title = ("end_of_day CI (%s)"):format(table.concat(names, ", "))
    if utf8.len(title) and utf8.len(title) > 80 then title = title:sub(1, utf8.offset(title, 79) - 1) .. "…" end
    local job = ssh.spawn(host, table.concat(parts, "\n"), { notify = true, title = title })
    print(("CI started on %s: job %s (baton jobs; log %s:%s)"):format(host, job.id, host, job.log))
    for _, r in ipairs(ci) do
      print(("  %s: results in %s:%s/ (result, test.log)"):format(r.name, host, routines.ci_logdir(cfg, r, stamp)))
    end
  end)
  if not ok then
    failed[#failed + 1] = "CI: " .. tostring(err)
    print("CI: FAILED: " .. tostring(err))
  end
end

if #failed > 0 then
  error(("end_of_day: %d problem%s:\n  %s"):format(#failed, #failed == 1 and "" or "s", table.concat(failed, "\n  ")), 0)
end
