---@meta
-- LuaLS type stubs for the `ollama` global: Ollama's native API (NDJSON streaming). Checked against the
-- registered API by tests/it/stubs.rs.
--
-- `host` everywhere: a fleet host name that has `ollama = URL`, or a URL. Default: the first fleet host with
-- Ollama, else `$OLLAMA_HOST`, else "http://127.0.0.1:11434".
-- Per endpoint at most `ollama_parallel` (default: 4) chat/generate/embed requests are in flight; the rest
-- wait in baton's queue (see `ollama.queue`).
-- Failures raise `ollama.chat(engine, qwen2.5-coder:32b): connection refused` (the server's `{"error": …}`
-- text, also mid-stream; "model not found … (try ollama.pull)"; timeout). With `check = false`, chat and
-- generate return `{ok = false, err}` instead (and `ok = true` on success).
-- Each chat/generate call is a ledger row (task and tier nil), written before the request; it costs
-- nothing and is never refused for budget unless a fleet tier serving the model has a `price` above zero:
-- then it is paid like a cloud call (its worst case, with `options.num_predict` or 4096 tokens of answer,
-- is reserved against the budget, and a call that does not fit is refused: "over budget: …").

---@class ollama
ollama = {}

---@class ollama.Message
---@field role "system"|"user"|"assistant"|"tool"
---@field content string? (default: "")
---@field images string[]? base64 images for multimodal models
---@field tool_calls llm.ToolCall[]? an assistant message's tool calls (sent with object arguments)
---@field tool_call_id string? a tool message: the call it answers
---@field name string? a tool message: the tool (sent as `tool_name`)
---@field thinking string? an assistant message's reasoning
---@field reasoning_details table? OpenRouter's reasoning blocks (not sent to Ollama)

---A tool offered to a model. The clients (`ollama.chat`, `openrouter.chat`) only report the calls a model
---asks for; `route.ask` runs them.
---@class llm.Tool
---@field name string? (default: its key, when tools are given as a map name → tool)
---@field description string? what it does, for the model (default: "")
---@field parameters table? a JSON Schema (default: an object without properties)
---@field run (fun(args: table): string|table)? `route.ask` runs it in the script's Lua state; a table result is sent as JSON, an error as "error: …"

---@alias llm.Tools llm.Tool[]|table<string, llm.Tool>

---@class llm.ToolCall
---@field id string made up ("call_…") when the server sends none
---@field name string
---@field arguments table an object (a string that is not JSON stays a string)

---@class ollama.ChatRequest
---@field model string
---@field messages ollama.Message[]
---@field host string? fleet host name or URL (default: the first fleet host with Ollama)
---@field format "json"|table? "json" or a JSON schema for structured output
---@field options table? passed through: num_ctx, temperature, num_predict, seed, …
---@field keep_alive string|number? how long the model stays loaded ("5m", 0 unloads)
---@field on_token fun(chunk: string)? called with each streamed piece as it arrives; may yield
---@field timeout baton.Duration? longest wait for the first byte and between pieces; keep-alive blank lines do not count as pieces (default: 120s)
---@field deadline baton.Duration? the whole call: queueing, retries, Retry-After waits and the stream (default: 10m)
---@field check boolean? raise on failure (default: true)
---@field tools llm.Tools? offered to the model; calls come back in `tool_calls`, never run (default: none)
---@field schema table? a JSON Schema: sent as `format`; the answer is decoded into `data`, and raises when it is not JSON or does not match (checked: type, properties, required, additionalProperties, items, enum, const, minimum/maximum and their exclusive forms, minLength/maxLength, minItems/maxItems, anyOf, and annotations such as title and description; any other keyword raises at once, naming it and its place) (default: none)
---@field think boolean|"low"|"medium"|"high"? reasoning models: think first; the thinking goes to `thinking` (default: the server's)
---@field on_thinking fun(chunk: string)? called with each piece of the thinking (also of an inline `<think>` block)
---@field content_tool_calls boolean? when tools are offered, read an answer that is only a JSON tool call (`{"name", "arguments"}`) as a tool call (default: true)

---@class ollama.GenerateRequest
---@field model string
---@field prompt string
---@field system string?
---@field host string?
---@field options table?
---@field keep_alive string|number?
---@field on_token fun(chunk: string)?
---@field timeout baton.Duration? (default: 120s)
---@field deadline baton.Duration? (default: 10m)
---@field check boolean? (default: true)

---@class ollama.Result
---@field text string the whole answer
---@field model string
---@field host string fleet host name (or URL)
---@field tokens_in integer prompt tokens (`prompt_eval_count`)
---@field tokens_out integer generated tokens (`eval_count`)
---@field duration number seconds (`total_duration`)
---@field tokens_per_s number `eval_count / eval_duration`
---@field done_reason string "stop", "length", … as the server said
---@field finish_reason string "tool_calls" when the model asked for tools (Ollama may still say "stop"), else `done_reason`
---@field tool_calls llm.ToolCall[] chat only: the calls the model asked for (empty when none)
---@field message ollama.Message chat only: the assistant message to append to continue the conversation
---@field thinking string? the reasoning (`message.thinking`, or an inline `<think>…</think>` block, removed from `text`)
---@field data any? with `schema`: the decoded answer
---@field ok boolean? only with `check = false`
---@field err string? only with `check = false`, on failure

---Chat completion (`/api/chat`), streamed.
---@param request ollama.ChatRequest
---@return ollama.Result
function ollama.chat(request) end

---Completion from a prompt (`/api/generate`), streamed.
---
---```lua
---local r = ollama.generate({model = "qwen2.5-coder:7b", prompt = "A haiku about rsync."})
---print(r.text)
---print(("%d tokens at %.1f tokens/s"):format(r.tokens_out, r.tokens_per_s))
---```
---@param request ollama.GenerateRequest
---@return ollama.Result
function ollama.generate(request) end

---Embeddings (`/api/embed`): one vector per input.
---
---```lua
---local e = ollama.embed({model = "nomic-embed-text", input = {"first note", "second note"}})
---print(#e.embeddings, #e.embeddings[1]) -- 2 vectors, and their length
---```
---@param request {model: string, input: string|string[], host: string?}
---@return {model: string, embeddings: number[][]}
function ollama.embed(request) end

---@class ollama.HostOpts
---@field host string? fleet host name or URL (default: the first fleet host with Ollama)

---Installed models (`/api/tags`): `{name, model, size, digest, modified_at, details}` each.
---@param opts ollama.HostOpts?
---@return table[]
function ollama.models(opts) end

---Models loaded in memory (`/api/ps`): `{name, model, size, size_vram, expires_at, details}` each.
---@param opts ollama.HostOpts?
---@return table[]
function ollama.loaded(opts) end

---A model's details (`/api/show`): `{details, capabilities, parameters, template, model_info, …}`.
---@param model string
---@param opts ollama.HostOpts?
---@return table
function ollama.show(model, opts) end

---The server's version string (`/api/version`).
---@param opts ollama.HostOpts?
---@return string
function ollama.version(opts) end

---Whether the server answers within 2 seconds. Never raises for a down server.
---@param opts ollama.HostOpts?
---@return boolean
function ollama.online(opts) end

---@class ollama.Progress
---@field status string "pulling manifest", "pulling <digest>", "verifying sha256 digest", "success", …
---@field digest string?
---@field total integer? bytes
---@field completed integer? bytes

---Downloads a model (`/api/pull`). Without `on_progress`, draws a progress bar when stderr is a terminal.
---
---```lua
---ollama.pull("qwen2.5-coder:7b", {host = "brain", on_progress = function(p)
---  if p.total and p.completed then print(p.status, ("%d%%"):format(100 * p.completed // p.total)) end
---end})
---```
---@param model string
---@param opts {host: string?, on_progress: fun(p: ollama.Progress)?}?
---@return string status "success"
function ollama.pull(model, opts) end

---Requests to this endpoint running and waiting in baton's queue (this process).
---@param opts ollama.HostOpts?
---@return {running: integer, waiting: integer}
function ollama.queue(opts) end
