--- Shared pieces of the ready playbooks in `scripts/`: the routines config file, picking fleet hosts by role,
--- shell quoting, git steps on any host, and the CI run script (checkout, test with a timeout, keep the log).
--- ```lua
--- local routines = require("baton.routines")
--- local cfg = routines.load(a.config)            -- routines.lua next to the fleet file, or --config FILE
--- local server = routines.host("server", a.host or cfg.ci.host)
--- ```
local M = {}

-- ---------------------------------------------------------------------------------------------------------
-- The routines config file
-- ---------------------------------------------------------------------------------------------------------

-- The schema: key → default (or a type name for required / optional values without a default).
local SCHEMA = {
  repo = { path = "string?", branch = "main", url = "string?", ci_path = "string?", test = "string?", timeout = "30m" },
  ci = { host = "string?", dir = "~/.baton/ci", tail = 60 },
  gpu = {
    host = "string?", local_path = "string?", remote_path = "string?", main = "main", branch = "validation",
    validate = "string?", timeout = "2h", local_worktree = "string?", remote_worktree = "string?",
  },
}

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return table.concat(out, ", ")
end

local function check_table(file, where, value, schema)
  if type(value) ~= "table" then
    error(("%s: %s must be a table, got %s"):format(file, where, type(value)), 0)
  end
  local out = {}
  for k, v in pairs(value) do
    local want = schema[k]
    if want == nil then
      error(("%s: %s.%s: unknown key (known: %s)"):format(file, where, tostring(k), keys(schema)), 0)
    end
    local ty = type(want) == "string" and want:match("^(%a+)%?$") or type(want)
    local duration_ok = k == "timeout" and type(v) == "number"
    if type(v) ~= ty and not duration_ok then
      error(("%s: %s.%s must be a %s, got %s"):format(file, where, k, ty, type(v)), 0)
    end
    out[k] = v
  end
  for k, default in pairs(schema) do
    if out[k] == nil and not (type(default) == "string" and default:match("^%a+%?$")) then out[k] = default end
  end
  return out
end

--- Where the routines file is looked for when no path is given: `$BATON_ROUTINES`, else `routines.lua` next
--- to the fleet file (or in `$XDG_CONFIG_HOME/baton/` with the built-in fleet).
---@return string
function M.default_path()
  local env = baton.env("BATON_ROUTINES")
  if env and env ~= "" then return env end
  local dir = baton.fleet.source and baton.fleet.source:match("^(.*)/[^/]*$")
  if not dir then
    local config = baton.env("XDG_CONFIG_HOME")
    if not config or config == "" then config = (baton.env("HOME") or ".") .. "/.config" end
    dir = config .. "/baton"
  end
  return dir .. "/routines.lua"
end

--- Loads and checks the routines file (`path`, else `M.default_path()`). Unknown keys are errors. Returns
--- `{repos = { {name, path, branch, url, ci_path, test, timeout}… } sorted by name, ci = {…}, gpu = {…}, file}`.
---@param path string? (default: M.default_path())
---@return {repos: {name: string, path: string?, branch: string, url: string?, ci_path: string, test: string?, timeout: string}[], ci: {host: string?, dir: string, tail: integer}, gpu: table?, file: string}
function M.load(path)
  local file = path or M.default_path()
  local chunk, err = loadfile(file, "t")
  if not chunk then
    if not io.open(file, "r") then
      error(("no routines config at %s: create it (see README, \"Playbooks\"), set BATON_ROUTINES or pass --config FILE"):format(file), 0)
    end
    error(err, 0)
  end
  local ok, raw = pcall(baton.timeout, 5, chunk)   -- a file that never finishes is an error, not a hang
  if not ok then error(("%s: %s"):format(file, tostring(raw)), 0) end
  if type(raw) ~= "table" then error(("%s: must return a table, got %s"):format(file, type(raw)), 0) end
  local cfg = check_table(file, "routines", raw, { repos = {}, ci = {}, gpu = {} })
  local out = { file = file, repos = {} }
  out.ci = check_table(file, "ci", cfg.ci, SCHEMA.ci)
  out.gpu = check_table(file, "gpu", cfg.gpu, SCHEMA.gpu)
  for name, repo in pairs(cfg.repos) do
    local r = check_table(file, "repos." .. tostring(name), repo, SCHEMA.repo)
    r.name = name
    r.ci_path = r.ci_path or ("%s/src/%s"):format(out.ci.dir, name)
    out.repos[#out.repos + 1] = r
  end
  table.sort(out.repos, function(a, b) return a.name < b.name end)
  return out
end

-- ---------------------------------------------------------------------------------------------------------
-- Hosts
-- ---------------------------------------------------------------------------------------------------------

local function fleet_names()
  local names = {}
  for name in pairs(baton.fleet.hosts) do names[#names + 1] = name end
  table.sort(names)
  return names
end

--- The fleet hosts that have `role`, sorted by name.
---@param role string
---@return string[]
function M.with_role(role)
  local out = {}
  for _, name in ipairs(fleet_names()) do
    if baton.fleet.hosts[name].role == role then out[#out + 1] = name end
  end
  return out
end

--- The host to use for `role`: `override` when given (it must be a fleet host, or `local`), else the one
--- fleet host with that role. Raises naming the role and the fix when there is none or several.
---@param role string?
---@param override string? a fleet host name, or "local"
---@return string host
function M.host(role, override)
  if override then
    if override ~= "local" and not baton.fleet.hosts[override] then
      error(("unknown fleet host %q (fleet hosts: %s)"):format(override, table.concat(fleet_names(), ", ")), 0)
    end
    return override
  end
  local found = M.with_role(role)
  if #found == 1 then return found[1] end
  if #found == 0 then
    error(("no fleet host has role %q: set role = %q on one in the fleet file, or pass --host NAME"):format(role, role), 0)
  end
  error(("several fleet hosts have role %q (%s): pass --host NAME"):format(role, table.concat(found, ", ")), 0)
end

-- ---------------------------------------------------------------------------------------------------------
-- Shell and git
-- ---------------------------------------------------------------------------------------------------------

--- `s` quoted for a POSIX shell.
---@param s any
---@return string
function M.quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

--- A path for a POSIX shell: quoted, with a leading `~/` kept as `"$HOME"/…` so it still expands.
---@param p string
---@return string
function M.path(p)
  local rest = p:match("^~/(.*)$")
  if rest then return '"$HOME"/' .. M.quote(rest) end
  if p == "~" then return '"$HOME"' end
  return M.quote(p)
end

--- A local path with a leading `~/` expanded to `$HOME`.
---@param p string
---@return string
function M.expand(p)
  local rest = p:match("^~/(.*)$")
  if rest then return (baton.env("HOME") or "") .. "/" .. rest end
  return p
end

--- Runs `git -C path ARGS…` on `host` (`local` for this machine). Returns the result (`check = false`:
--- look at `ok`); trimmed stdout as a second value.
---@param host string fleet host, or "local"
---@param path string
---@param args string[] git arguments
---@param opts baton.ExecOpts?
---@return baton.Result result
---@return string stdout trimmed
function M.git(host, path, args, opts)
  -- argv words are not expanded by a shell: `~/` is this machine's home locally, the login folder remotely.
  local h = baton.fleet.hosts[host]
  local here = host == "local" and not h or (h and h.ssh == false)
  local dir = here and M.expand(path) or path:gsub("^~/", "")
  local argv = { "git", "-C", dir }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  opts = opts or {}
  local r = ssh.run(host, argv, {
    env = { GIT_TERMINAL_PROMPT = "0", LC_ALL = "C" },
    timeout = opts.timeout or "10m",
    check = false,
  })
  if not r.ok and opts.check ~= false then
    error(("git %s in %s on %s: %s"):format(table.concat(args, " "), path, host, r.err or ("exit " .. tostring(r.code))), 0)
  end
  return r, (r.stdout:gsub("%s+$", ""))
end

--- Merges `rev` into the checked-out branch of `path` on `host`. On a conflict the merge is aborted (the
--- tree is left as it was) and an error lists the conflicting files.
---@param host string
---@param path string
---@param rev string
---@param message string?
function M.merge(host, path, rev, message)
  local r = M.git(host, path, { "merge", "--no-edit", "-m", message or ("Merge " .. rev), rev }, { check = false })
  if r.ok then return end
  local _, files = M.git(host, path, { "diff", "--name-only", "--diff-filter=U" }, { check = false })
  local merging = M.git(host, path, { "rev-parse", "-q", "--verify", "MERGE_HEAD" }, { check = false }).ok
  if merging then M.git(host, path, { "merge", "--abort" }) end
  if files ~= "" then
    error(("%s: merging %s into %s conflicts in %s; merge aborted, nothing changed"):format(
      host, rev, path, files:gsub("\n", ", ")), 0)
  end
  error(("%s: git merge %s in %s failed: %s"):format(host, rev, path, r.err or ""), 0)
end

-- ---------------------------------------------------------------------------------------------------------
-- CI runs
-- ---------------------------------------------------------------------------------------------------------

--- The timestamp used for run folders: `20261121-023000`.
---@return string
function M.stamp()
  return os.date("%Y%m%d-%H%M%S")
end

--- The log folder of one CI run of `repo` (under the routines `ci.dir`).
---@return string
function M.ci_logdir(cfg, repo, stamp)
  return ("%s/logs/%s/%s"):format(cfg.ci.dir, repo.name, stamp)
end

local UNITS = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400 }

--- Whole seconds in a duration: a number, or a string such as "90s", "30m", "1h30m".
local function seconds(d)
  if type(d) == "number" then return math.floor(d) end
  local total, matched = 0, ""
  for n, unit in tostring(d):gmatch("(%d+%.?%d*)(%a+)") do
    if not UNITS[unit] then error(("bad duration %q"):format(d), 0) end
    total, matched = total + tonumber(n) * UNITS[unit], matched .. n .. unit
  end
  if matched ~= d then
    if tonumber(d) then return math.floor(tonumber(d)) end
    error(("bad duration %q (use e.g. \"90s\", \"30m\", \"2h\")"):format(d), 0)
  end
  return math.floor(total)
end
M.seconds = seconds

--- A POSIX shell script that runs one CI pass of `repo` on a host: clone `repo.url` into `repo.ci_path` when
--- missing, fetch, check out `origin/<branch>` (detached, forced, untracked files removed), run `repo.test`
--- with the repo's timeout (GNU `timeout` when the host has it), and keep in `logdir`: `checkout.log`,
--- `commit`, `test.log`, `result` (`pass`, `fail (exit N)`, `timeout after Ns`, `error: checkout failed: …`).
--- Whatever happened, it points `<ci.dir>/logs/<repo>/latest` at the run and appends `stamp repo commit
--- result` to `<ci.dir>/results.tsv` (commit `-` when the checkout failed, whose log is `checkout.log`), and
--- prints `repo: result` as its last line. Exits with the test's code (3 when the checkout failed).
---@return string script a POSIX shell script
function M.ci_script(cfg, repo, stamp)
  local D = M.path(M.ci_logdir(cfg, repo, stamp))
  local P = M.path(repo.ci_path)
  local secs = seconds(repo.timeout)
  local clone = repo.url and ("git clone -q %s %s || exit 1; "):format(M.quote(repo.url), P)
    or ("echo 'no clone at %s and no url configured' >&2; exit 1; "):format(repo.ci_path)
  local lines = {
    "export GIT_TERMINAL_PROMPT=0",
    ("D=%s; mkdir -p \"$D\" || exit 3"):format(D),
    -- record RESULT COMMIT: the run's result, `latest` and its results.tsv line, whatever the stage.
    -- It also prints `repo: result`, the line a detached CI job's log (and its notification) ends with.
    ("record() { echo \"$1\" > \"$D/result\"; ln -sfn %s %s/latest; printf '%%s\\t%%s\\t%%s\\t%%s\\n' %s %s \"$2\" \"$1\" >> %s/results.tsv; printf '%%s: %%s\\n' %s \"$1\"; }"):format(
      M.quote(stamp), M.path(("%s/logs/%s"):format(cfg.ci.dir, repo.name)), M.quote(stamp), M.quote(repo.name),
      M.path(cfg.ci.dir), M.quote(repo.name)),
    ("( if [ ! -d %s/.git ]; then %sfi; cd %s && git fetch -q origin && git checkout -q --force --detach %s && git clean -q -fd ) > \"$D/checkout.log\" 2>&1 </dev/null"):format(
      P, clone, P, M.quote("origin/" .. repo.branch)),
    "if [ $? -ne 0 ]; then record \"error: checkout failed: $(tail -n 3 \"$D/checkout.log\" | tr '\\n' ' ' | sed 's/ *$//')\" -; exit 3; fi",
    ("cd %s || { record 'error: checkout failed: no clone' -; exit 3; }"):format(P),
    "git rev-parse HEAD > \"$D/commit\"",
    ("if command -v timeout >/dev/null 2>&1; then timeout -k 10 %d sh -c %s; else sh -c %s; fi > \"$D/test.log\" 2>&1 </dev/null"):format(
      secs, M.quote(repo.test), M.quote(repo.test)),
    "code=$?",
    ("case $code in 0) r=pass;; 124) r='timeout after %ds';; *) r=\"fail (exit $code)\";; esac"):format(secs),
    "record \"$r\" \"$(cat \"$D/commit\")\"",
    "exit $code",
  }
  return table.concat(lines, "\n")
end

--- The repos of `cfg` that CI can run (they have a `test` command), restricted to `names` when given.
---@param names string[]?
---@return table[] repos
function M.ci_repos(cfg, names)
  local out, wanted = {}, nil
  if names and #names > 0 then
    wanted = {}
    for _, n in ipairs(names) do wanted[n] = true end
  end
  for _, r in ipairs(cfg.repos) do
    if r.test and (not wanted or wanted[r.name]) then out[#out + 1] = r end
  end
  if wanted then
    for n in pairs(wanted) do
      local known = false
      for _, r in ipairs(out) do known = known or r.name == n end
      if not known then error(("%s: no repo %q with a test command"):format(cfg.file, n), 0) end
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------------------
-- Branch names
-- ---------------------------------------------------------------------------------------------------------

--- Raises `<file>: <key> …` unless `name` can be given to git as a branch name in an argv word: not empty,
--- no leading '-' (git would read it as an option), no whitespace or control characters.
---@param file string the routines file, for the message
---@param key string the config key, e.g. "gpu.branch"
---@param name string
function M.check_branch(file, key, name)
  if name == "" or name:sub(1, 1) == "-" or name:find("[%s%c]") then
    error(("%s: %s = %q is not a usable branch name (it may not be empty, start with '-' or hold spaces)"):format(
      file, key, name), 0)
  end
end

return M
