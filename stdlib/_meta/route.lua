---@meta
-- LuaLS type stubs for the `route` global: task → tier → model, escalation, budget and the cost ledger.
-- Checked against the registered API by tests/it/stubs.rs.
--
-- Tiers come from the fleet (`tiers`, lowest first; default local → cheap → premium), task kinds from
-- `tasks` (default: baton's task kinds, listed by `baton fleet`). An endpoint that refused or timed out is skipped for 30 s.
-- A call is paid when its tier's `price` is above zero; a tier without a price is paid on OpenRouter and
-- free on Ollama.
-- Budget (`budget = {monthly_usd, alert_at}`): before a paid call its worst case (prompt estimate × input
-- price + max_tokens × output price) is reserved against what is left this calendar month (UTC);
-- if it does not fit, the tier is skipped with outcome "budget". Reservations hold across coroutines and
-- across processes sharing the state database. The prompt estimate is one token per 3 bytes plus 4 per
-- message (generous on purpose). Every attempt is a ledger row.

---@class route
route = {}

---Set by the script: called once per month when spend first reaches `alert_at × monthly_usd` (a warning
---is logged either way).
---@type fun(spent: number, limit: number)?
route.on_alert = nil

---@alias route.Task string|{kind: string, min_tier: string?, max_tier: string?}

---@class route.Pick
---@field task string
---@field tier string
---@field provider "ollama"|"openrouter"
---@field host string? fleet host (ollama tiers)
---@field model string
---@field reason string why this tier

---Where a task would go now, without calling anything. An unknown kind starts at the lowest tier that is
---up; tiers cooling down are passed over.
---@param task route.Task
---@return route.Pick
function route.pick(task) end

---@class route.Attempt
---@field tier string
---@field model string
---@field outcome "ok"|"offline"|"error"|"rejected"|"budget"
---@field err string? why (the error, the rejection reason, the budget shortfall)

---@class route.Answer
---@field text string
---@field tier string
---@field provider "ollama"|"openrouter"
---@field model string
---@field cost number USD, every attempt of this ask included
---@field tokens_in integer every attempt included
---@field tokens_out integer every attempt included
---@field attempts route.Attempt[]
---@field steps route.Step[] every model call and tool call, of every attempt
---@field messages ollama.Message[] the answering attempt's whole conversation, to continue it
---@field data any? with `schema`: the decoded answer
---@field thinking string? the final answer's reasoning (never in `text`)

---@class route.Step
---@field kind "model"|"tool"
---@field step integer the model call it belongs to (1-based, per attempt)
---@field tier string
---@field name string the model, or the tool
---@field arguments table? a tool call's arguments
---@field result string? a tool's result
---@field err string? why a tool failed (also sent to the model as "error: …")
---@field duration number seconds
---@field cost number? a model call's cost (USD)
---@field tool_calls string[]? the tools a model call asked for

---@class route.AskOpts
---@field system string? system prompt
---@field accept (fun(result: route.Answer): boolean|string)? true accepts; false, nil or a reason string moves up a tier
---@field max_tier string? highest tier to try (default: the highest)
---@field max_tokens integer? answer cap; for paid tiers also the reserved worst case (default: 4096 on OpenRouter; on Ollama the model's own, and 4096 for a priced tier's worst case)
---@field on_token fun(chunk: string)? streamed pieces of every attempt, as they arrive
---@field timeout baton.Duration? each attempt's longest wait for the first byte and between pieces (default: 120s)
---@field deadline baton.Duration? each attempt's whole call, per tier (default: 10m)
---@field tools llm.Tools? offered to the model; each tool needs `run`. The calls of one step run concurrently in this Lua state (a tool may use ssh, baton.exec, route.ask…); an error, a timeout or an unknown name becomes that call's result ("error: …") (default: none)
---@field max_steps integer? model calls per attempt; an attempt that still asks for tools then fails, listing its steps, and the next tier starts afresh (default: 8)
---@field tool_timeout baton.Duration? per tool call (default: "60s")
---@field on_step fun(step: route.Step)? after each model call and each tool call
---@field schema table? a JSON Schema the answer must match (sent as Ollama's `format` / a strict `response_format`); an answer that is not JSON or does not match is rejected with the reason and the next tier tried; decoded into `data` (checked: type, properties, required, additionalProperties, items, enum, const, minimum/maximum and their exclusive forms, minLength/maxLength, minItems/maxItems, anyOf, and annotations such as title and description; any other keyword raises at once, naming it and its place) (default: none)
---@field think boolean|"low"|"medium"|"high"? Ollama tiers: think first (default: the server's)
---@field reasoning table? OpenRouter tiers: `{effort | max_tokens, exclude}` (default: the provider's)
---@field on_thinking fun(chunk: string)? streamed pieces of the reasoning
---@field content_tool_calls boolean? read an answer that is only a JSON tool call as a tool call (default: true)

---Asks the chosen tier, moving up one tier on offline, error or rejection. Raises, listing every
---attempt, when no tier is left. With `tools`, each attempt is a loop: call the model, run the tools it asks
---for, send the results, until an answer without tool calls (then `schema` and `accept` judge it) or
---`max_steps`. Every model call is a ledger row (with its step) and a budget reservation; `accept` and
---`schema` see the answer without its thinking.
---@param task route.Task
---@param prompt string|{role: string, content: string}[]
---@param opts route.AskOpts?
---@return route.Answer
function route.ask(task, prompt, opts) end

---@class route.SpendRow
---@field key string tier, model or task
---@field calls integer requests sent (tiers skipped for budget or cooldown are not calls)
---@field tokens_in integer
---@field tokens_out integer
---@field cost number USD

---Spend from the ledger, costliest first.
---@param opts {period: "day"|"month"|"all"?, by: "tier"|"model"|"task"|"script"?}? (default: period "month", by "tier")
---@return route.SpendRow[]
function route.spend(opts) end

---@class route.Budget
---@field month string the budget month, "YYYY-MM" (UTC, like the provider's)
---@field spent number USD the budget counts: the larger of this ledger's month and the provider's `usage_monthly`
---@field ledger {spent: number, held: number, interrupted: number} this state directory: settled spend (interrupted calls included, at their worst case), held by calls under way, interrupted
---@field provider {fetched: integer, usage_monthly: number?, usage_daily: number?, limit: number?, limit_remaining: number?}? OpenRouter's `/key` (nil when the endpoint has none or it could not be read)
---@field budget {monthly_usd: number, alert_at: number}? the fleet's budget
---@field alert_line number? `monthly_usd × alert_at`

---This month against the budget, from the ledger and the provider (fetched at most once a minute).
---@return route.Budget
function route.budget() end
