---@meta
-- LuaLS type stubs for the `claude` global: Claude Code headless (`claude -p --output-format stream-json
-- --verbose`) on this machine or any fleet host, as a budgeted, journaled worker. Checked against the
-- registered API by tests/it/stubs.rs. No test calls Anthropic: the CLI must be installed on the host
-- (`npm install -g @anthropic-ai/claude-code`) and logged in.
--
-- The prompt goes to the CLI on stdin (no shell sees it; a prompt starting with `-` is fine); every option
-- with a value is passed as one `--flag=value` word. On a fleet host the command runs over the host's
-- multiplexed ssh connection, like `ssh.run`.
-- Budget and ledger: each run is a ledger row (provider "claude-code", the model asked for or "default",
-- tokens from `usage`, cost from the result's `total_cost_usd`, `cost_source = "provider"`), written before
-- the CLI starts and settled when it ends; a process killed mid-run leaves an `interrupted` row at its cap.
-- With a fleet budget the run's cap (`--max-budget-usd`) is what is left of the month or `max_usd`,
-- whichever is lower, and a run is refused ("over budget: …", a `budget` row, the CLI not started) when less
-- than `min_usd` is left, or when its cap is under $0.01 (the cap is passed in whole cents, and Claude Code
-- takes no cap of 0). A run that ends without a result line (killed, crashed, timed out, a malformed or
-- oversized line) is booked at its cap, and its error says so.
-- Inside a durable run (`baton run`), a finished `claude.run` is journaled: `baton resume` replays its
-- result and does not start Claude Code again. A failed one (raised) runs again on resume.
-- Failures raise `claude.run(<host>): <cause>`: Claude Code not installed (with the install hint), not
-- logged in, `subtype` "error_max_turns" ("stopped at max_turns") or "error_max_budget_usd", `is_error`,
-- a stdout line that is no stream-json object or over 8 MiB (found while it is read, never held whole: the
-- process is stopped), no result line, a timeout, ssh failures. With `check = false` they come back as `{ok = false, err}` (with the result's
-- fields when there was a result line). Misuse (a bad option, an unknown host) raises even then.

---@class claude
claude = {}

---@class claude.Options
---@field host string? a fleet host name (default: "local", this machine)
---@field cwd string? the folder Claude Code runs in, on the host (`~/…` is the host's home) (default: the login folder, or baton's folder locally)
---@field env table<string, string>? extra environment variables
---@field timeout baton.Duration? the whole run; the CLI is stopped after it (default: none)
---@field check boolean? raise on failure (default: true)
---@field model string? `--model` ("sonnet", "opus", a full model name) (default: the CLI's)
---@field max_turns integer? `--max-turns`
---@field allowed_tools string[]? `--allowedTools`, one per tool ("Read", "Bash(git diff:*)")
---@field disallowed_tools string[]? `--disallowedTools`
---@field append_system_prompt string? `--append-system-prompt`
---@field mcp_config string|table? `--mcp-config`: a path on the host, or a table sent as JSON text (`{mcpServers = {…}}`)
---@field permission_mode string? `--permission-mode` ("default", "acceptEdits", "plan", "bypassPermissions")
---@field resume string? `--resume`: a session id to continue (a previous result's `session_id`)
---@field max_usd number? the most this run may spend (USD); passed as `--max-budget-usd` (with a fleet budget: the lower of this and what is left of the month) (default: no cap without a fleet budget)
---@field min_usd number? refuse to start when the fleet budget has less than this left (default: 0.05)
---@field on_event fun(ev: claude.Event)? called with each decoded event as it arrives, in order; may yield; an error stops the run
---@field detach boolean? start it as a detached job in a tmux session on the host (`baton jobs`, `baton jobs attach`) and return a `claude.Job` at once; its `wait` gives the result (default: false). Needs tmux on the host; takes no `timeout` (give it to `wait`)

---One decoded piece of the stream. `type` says which fields it has:
---"init" {session_id, model, cwd, tools}; "text" {text}; "thinking" {text}; "tool_use" {id, name, input};
---"tool_result" {tool_use_id, content, is_error}; "result" (the fields of `claude.Result` without host,
---model and max_usd); "other" {kind, subtype} for any other line.
---@class claude.Event
---@field type "init"|"text"|"thinking"|"tool_use"|"tool_result"|"result"|"other"

---@class claude.Usage
---@field input_tokens integer
---@field output_tokens integer
---@field cache_creation_input_tokens integer
---@field cache_read_input_tokens integer

---@class claude.Result
---@field text string the result line's `result` (the final answer)
---@field session_id string? pass as `resume` to continue the conversation
---@field cost number USD, `total_cost_usd` as Claude Code reported it
---@field turns integer `num_turns`
---@field is_error boolean
---@field subtype string "success", "error_max_turns", "error_max_budget_usd", …
---@field duration number seconds (`duration_ms` / 1000)
---@field usage claude.Usage
---@field model string? the model the init line named
---@field host string
---@field max_usd number? the cap passed as `--max-budget-usd` (nil: none)
---@field ok boolean? only with `check = false`
---@field err string? only with `check = false`, on failure

---A detached run (`detach = true`). The prompt is written to a private file on the host
---(`~/.baton/claude/prompt.*`, mode 600), which the job reads as its stdin and removes; the job's log is Claude
---Code's stdout, its stderr goes to the `stderr` file. The ledger row stays open (its cap reserved) until
---`wait` reads the result; a baton process that ends before that leaves it `interrupted` at its cap.
---In a durable run the job handle is not journaled: `baton resume` past a detached `claude.run` stops with
---"cannot be replayed" (run it without `detach` there, or wrap start and wait in one `baton.step`).
---@class claude.Job
---@field id string the job id (`baton jobs`)
---@field host string
---@field tmux string the tmux session on the host (`baton jobs attach ID`)
---@field stderr string the file on the host Claude Code's stderr goes to
local Job = {}

---Waits for the run to end (polling the job's log every `poll`, default 2s; at most `timeout`, after which
---it raises and the job runs on, so `wait` can be called again), streams its events to `on_event` (or the
---one given to `claude.run`) and returns the result as `claude.run` does (raising on failure unless the run
---had `check = false`). The result is returned once; a second `wait` raises.
---@param opts {poll: baton.Duration?, timeout: baton.Duration?, on_event: fun(ev: claude.Event)?}?
---@return claude.Result
function Job:wait(opts) end

---Runs Claude Code headless with `prompt` and waits for its result.
---
---```lua
---local r = claude.run("Fix the failing test in src/parser.rs", {
---  host = "gpu", cwd = "~/src/app", model = "sonnet", max_turns = 20, max_usd = 2,
---  allowed_tools = { "Read", "Edit", "Bash(cargo test:*)" },
---  on_event = function(ev) if ev.type == "text" then print(ev.text) end end,
---})
---print(r.text, ("$%.2f in %d turns"):format(r.cost, r.turns))
---local more = claude.run("Now add a test for it", { host = "gpu", cwd = "~/src/app", resume = r.session_id })
---```
---@param prompt string
---@param opts claude.Options?
---@return claude.Result|claude.Job
function claude.run(prompt, opts) end
