---@meta
-- LuaLS type stubs for the `baton` global (runtime helpers). Checked against the registered API by
-- tests/it/stubs.rs: every function here exists at run time and every registered function is here.

---@class baton
baton = {}

---Command-line arguments after the playbook path (`baton run FILE ARGS…`).
---@type string[]
baton.args = {}

---The loaded fleet with defaults applied (read-only).
---@type baton.FleetView
baton.fleet = {}

---@class baton.FleetView
---@field source string? the fleet file, nil for the built-in default
---@field hosts table<string, baton.Host> always with `local` (this machine, `ssh = false`), as `ssh.run("local", …)` knows it, even when the fleet file names no such host
---@field tiers baton.Tier[] lowest first
---@field tasks table<string, {tier: string, model: string?, prompt: string?}> `prompt`: the instruction `baton ask TASK` puts first (unset: the kind's default)
---@field budget {monthly_usd: number, alert_at: number}?
---@field openrouter {base_url: string, key_env: string, key_set: boolean}
---@field ssh_config string?

---@class baton.Host
---@field ssh string|false destination, or false for this machine (default: the host's name)
---@field ssh_config string?
---@field known_hosts "strict"|"accept-new" (default: "strict")
---@field role string?
---@field tags string[]?
---@field ollama string? Ollama URL
---@field ollama_parallel integer (default: 4)

---@class baton.Tier
---@field name string
---@field provider "ollama"|"openrouter"
---@field host string?
---@field model string?
---@field models table<string, string>? role → model
---@field price {input: number, output: number}? USD per million tokens

---A duration: seconds, or a string such as "250ms", "30s", "5m", "6h", "1d", "1h30m".
---@alias baton.Duration number|string

---The value of an environment variable, or `default` when it is unset.
---@param name string
---@param default string?
---@return string?
function baton.env(name, default) end

---Waits without blocking other coroutines.
---@param dur baton.Duration
function baton.sleep(dur) end

---Seconds on a monotonic clock, for measuring intervals.
---@return number
function baton.clock() end

---Wall-clock seconds since the Unix epoch (with fractions).
---@return number
function baton.now() end

---A coroutine started by `baton.spawn`.
---@class baton.Task
local Task = {}

---Waits for the task; returns its values or re-raises its error. Inside the task itself it raises
---`task waits on itself` (it would never finish).
---@return any ...
function Task:wait() end

---Cancels the task at its next wait (its processes are killed).
---
---```lua
---local t = baton.spawn(function() baton.sleep(60) end)
---t:cancel()
---print(t:status()) -- "cancelled"
---```
function Task:cancel() end

---@return "running"|"done"|"failed"|"cancelled"
function Task:status() end

---Starts `fn(...)` as its own coroutine at once.
---
---Calls that wait (`baton.exec`, `baton.sleep`, `ssh.run`, …) also work inside your own coroutines
---(`coroutine.wrap`, `coroutine.resume`): the wait passes through to baton's driver and the coroutine goes
---on when the call is done. Where the code resuming the coroutine cannot yield (a `table.sort` comparator,
---a metamethod called by C), the call raises an error naming itself; use `baton.spawn` there.
---@param fn fun(...): any
---@param ... any
---@return baton.Task
function baton.spawn(fn, ...) end

---@class baton.GatherOpts
---@field limit integer? at most this many at once (default: all)
---@field check boolean? raise on the first failure (default: true); false returns {ok, value|err} per entry

---Runs functions (and awaits tasks) concurrently; returns their first results in order, plus `n`.
---@param list (fun(): any|baton.Task)[]
---@param opts baton.GatherOpts?
---@return table results
function baton.gather(list, opts) end

---Calls `fn(...)`; if it is not done within `dur`, cancels it and raises `timed out after 5s`. A loop that
---never waits (`while true do end`, a spinning `table.sort` comparator) is stopped too.
---@param dur baton.Duration
---@param fn fun(...): any
---@return any ...
function baton.timeout(dur, fn, ...) end

---@class baton.ExecOpts
---@field cwd string?
---@field env table<string, string>? merged over the inherited environment
---@field stdin string?
---@field timeout baton.Duration? kills the process group; code 124 (default: none)
---@field check boolean? raise on a non-zero exit (default: true)
---@field on_line fun(stream: "stdout"|"stderr", line: string)? called live for each line; a line over 16 MiB stops the process and raises

---@class baton.Result
---@field ok boolean code == 0
---@field code integer? exit code (124 on timeout)
---@field signal integer? the signal that killed it
---@field stdout string
---@field stderr string
---@field duration number seconds
---@field err string? why it failed, when ok is false

---Runs a local process: a string runs through `sh -c`, a list is argv (no shell). The call returns when
---the process has exited and its output pipes are closed, so a background child that keeps them open
---(`"sleep 30 & echo hi"`) is waited for; redirect its output (`"sleep 30 >/dev/null 2>&1 & echo hi"`) to
---return at once and leave it running. A timeout kills the whole process group, background children too.
---@param cmd string|string[]
---@param opts baton.ExecOpts?
---@return baton.Result
function baton.exec(cmd, opts) end

---A value rendered as the REPL shows it.
---@param value any
---@param depth integer? nesting shown before `{…}`, at most 128 (default: 4)
---@return string
function baton.inspect(value, depth) end

baton.log = {}

---@param msg string
---@param fields table?
function baton.log.debug(msg, fields) end

---@param msg string
---@param fields table?
function baton.log.info(msg, fields) end

---@param msg string
---@param fields table?
function baton.log.warn(msg, fields) end

---@param msg string
---@param fields table?
function baton.log.error(msg, fields) end

---The id of this run (`nil` in the REPL): `baton runs show ID` lists its steps, `baton resume ID`
---finishes it after a crash.
---@type string?
baton.run_id = nil

---Runs `fn(...)` as one journaled step of the run: what it returns (values that round-trip through JSON:
---no functions or handles) is kept, and when the run is resumed after a crash a step that finished returns
---that without calling `fn` again. Calls that cross a boundary (`ssh.run`, `route.ask`, `sync.push`,
---`baton.exec`…) are journaled on their own already; a step is for Lua work that must not be done twice
---(appending to a file) or must not change on resume (the time, a random pick). The calls inside a step are
---journaled under it, so a step cut short does not repeat those that finished. Outside a run (the REPL)
---it just calls `fn`.
---```lua
---local stamp = baton.step("stamp", function() return os.date("%Y%m%d-%H%M%S") end)  -- the same on resume
---baton.step("log", function(line)
---  local f = assert(io.open("deploys.log", "a")); f:write(line, "\n"); f:close()
---end, "deployed " .. stamp)
---```
---@param name string a name for the step list (`baton runs show`); not empty or only blanks
---@param fn fun(...): any
---@param ... any arguments for `fn`
---@return any ...
function baton.step(name, fn, ...) end

---Pauses the run until someone answers: the run is recorded `paused`, the fleet's notify channels get
---`message` with the run id and the commands to answer, and this process ends (exit 0), holding nothing.
---`baton runs approve RUN [--answer TEXT]` or `baton runs deny RUN [--reason TEXT]`, from any process
---sharing the state dir, records the answer and resumes the run in the foreground: what ran before is
---replayed from the journal, and here `approve` returns `true, answer` or `false, reason`. In the REPL,
---which has no run to pause, it asks on the terminal (`y`/`yes`: true). The pause ends the process through
---an error, and it sticks: if a `pcall` catches it, plain Lua after it still runs, but the next journaled
---call (`ssh.run`, `baton.exec`, a model call …), `baton.step` or `baton.approve` raises the pause again,
---and the run ends paused however the script ends; nothing that was to wait for the answer runs before it.
---A `baton.step` whose body caught it does not finish either: on resume its body runs again and gets the
---answer.
---```lua
---local ok, note = baton.approve("deploy v2 to prod? (3 hosts)")
---if not ok then print("not deployed: " .. (note or "denied")) return end
---ssh.run("prod1", "deploy v2")
---```
---@param message string the question, as the notification shows it; not empty or only blanks
---@param opts table? (reserved)
---@return boolean approved
---@return string? text the `--answer` or `--reason` given
function baton.approve(message, opts) end

baton.json = {}

---JSON null as decoded values show it.
baton.json.null = nil

---Encodes a value as JSON; tables nested more than 128 deep raise an error.
---@param value any
---@param opts {pretty: boolean?}? (default: compact)
---@return string
function baton.json.encode(value, opts) end

---Decodes JSON; a JSON list decodes to a table marked as a list (see `baton.json.array`), so an empty one
---encodes back as `[]`.
---@param text string
---@return any
function baton.json.decode(text) end

---Marks `list` (or a new empty table) as a JSON list and returns it: encoded, an empty one is `[]`, not `{}`
---(a plain empty table cannot say which it is, and encodes as an object).
---```lua
---local gpus = baton.json.array()                    -- stays [] when nothing is added
---print(baton.json.encode({ host = "studio", gpus = gpus }))   --> {"gpus":[],"host":"studio"}
---```
---@param list table? (default: a new table)
---@return table list
function baton.json.array(list) end

---@class baton.NotifyOpts
---@field priority "min"|"low"|"default"|"high"|"urgent"|integer|nil ntfy priority 1-5; desktop urgency follows it (default: "default")
---@field tags string[]|nil ntfy tags (emoji short codes such as "warning") (default: none)
---@field click string|nil URL opened when the notification is clicked (default: none)
---@field to string[]|nil only these channels: "ntfy", "webhook", "desktop", "command" (default: every configured channel)
---@field check boolean|nil raise when any channel fails (default: false: failures are logged and returned)
---@field timeout number|string|nil time each channel gets (default: "10s")

---@class baton.NotifyDelivery
---@field channel string
---@field ok boolean
---@field err string|nil why the channel failed (never holds a token)

--- Sends a notification to every channel of the fleet's `notify` table at once: ntfy (`POST url/topic`,
--- Title/Priority/Tags/Click headers, bearer token from `token_env`), webhook (JSON `{title, body, priority,
--- tags, click}` with the fleet's headers), desktop (`notify-send` / `osascript`), command (argv + `--`, title
--- and body as the three last arguments, and `BATON_NOTIFY_TITLE`/`_BODY`/`_PRIORITY`/`_TAGS`/`_CLICK`).
--- With no channel configured it logs a warning and returns `{}` (raises with `check = true`).
---@param title string
---@param body string|nil (default: "")
---@param opts baton.NotifyOpts|nil
---@return baton.NotifyDelivery[]
function baton.notify(title, body, opts) end
