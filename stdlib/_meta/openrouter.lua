---@meta
-- LuaLS type stubs for the `openrouter` global: OpenAI-compatible chat completions (OpenRouter by
-- default; Ollama's /v1 and llama.cpp's server work too). Checked against the registered API by
-- tests/it/stubs.rs.
--
-- Base URL: the fleet's `openrouter.base_url`, else `$OPENROUTER_BASE_URL`, else
-- "https://openrouter.ai/api/v1". Key: `$OPENROUTER_API_KEY` (or the variable named by the fleet's
-- `openrouter.key_env`); a missing key raises an error naming the variable. The key never appears in any
-- output, error or log.
-- Retries 429, 5xx and connection errors (3 more tries, backoff from 0.5 s doubling with jitter, honouring
-- `Retry-After`); 400/401/402/403 are not retried; 402 says "insufficient credits"; a key over its own
-- limit (402 from the key limit, 403 "Key limit exceeded") says "key limit reached".
-- Calls made directly here are budgeted like `route.ask`: each one is a ledger row (task and tier nil),
-- written before the request with its worst case reserved; one whose worst case does not fit the fleet's
-- monthly budget is refused before sending ("over budget: …"). A model whose fleet tier is priced at zero
-- is free: never refused.

---@class openrouter
openrouter = {}

---@class openrouter.ChatRequest
---@field model string e.g. "anthropic/claude-sonnet-4.5"
---@field messages ollama.Message[] `{role, content}`, plus `tool_calls`, `tool_call_id`, `name`, `reasoning_details` (passed back unchanged) as the conversation needs
---@field max_tokens integer? (default: 4096 when the fleet has a budget, so the worst case is bounded; else the provider's)
---@field temperature number?
---@field on_token fun(chunk: string)? called with each streamed piece as it arrives; may yield
---@field models string[]? OpenRouter fallback models
---@field provider table? OpenRouter provider preferences, passed through
---@field timeout baton.Duration? longest wait for the first byte and between pieces; keep-alive comments do not count as pieces (default: 120s)
---@field deadline baton.Duration? the whole call: retries, Retry-After waits and the stream; a Retry-After past it fails at once (default: 10m)
---@field check boolean? raise on failure (default: true)
---@field tools llm.Tools? offered to the model, sent on every request; calls come back in `tool_calls`, never run (default: none)
---@field tool_choice "auto"|"none"|"required"|table? (default: the provider's, "auto")
---@field parallel_tool_calls boolean? (default: the provider's)
---@field schema table? a JSON Schema: sent as a strict `response_format` with `provider.require_parameters = true`; the answer is decoded into `data`, and raises when it is not JSON or does not match (checked: type, properties, required, additionalProperties, items, enum, const, minimum/maximum and their exclusive forms, minLength/maxLength, minItems/maxItems, anyOf, and annotations such as title and description; any other keyword raises at once, naming it and its place) (default: none)
---@field reasoning {effort: "low"|"medium"|"high"?, max_tokens: integer?, exclude: boolean?}? reasoning models (default: the provider's)
---@field on_thinking fun(chunk: string)? called with each piece of the reasoning (`delta.reasoning`, or an inline `<think>` block)
---@field content_tool_calls boolean? when tools are offered, read an answer that is only a JSON tool call as a tool call (default: true)

---@class openrouter.Result
---@field text string
---@field model string the model that answered
---@field id string generation id
---@field tokens_in integer
---@field tokens_out integer
---@field cost number USD (0 when `cost_source` is "unknown")
---@field cost_source "provider"|"pricing"|"estimate"|"reserved"|"unknown" reported by the API, computed from the fleet tier's price, estimated from the text when the stream reported no usage, the reserved worst case when the reported cost was implausible, or none
---@field duration number seconds
---@field finish_reason string? "stop", "length", "tool_calls", …
---@field tool_calls llm.ToolCall[] the calls the model asked for (fragments joined; empty when none)
---@field message ollama.Message the assistant message to append (tool calls and `reasoning_details` included)
---@field thinking string? the reasoning
---@field data any? with `schema`: the decoded answer
---@field ok boolean? only with `check = false`
---@field err string? only with `check = false`, on failure

---Chat completion, streamed over SSE; usage and cost come from the final chunk.
---@param request openrouter.ChatRequest
---@return openrouter.Result
function openrouter.chat(request) end

---The `/models` list: `{id, name, context_length, pricing = {prompt, completion, …}}` each (prices in USD
---per token, as strings).
---
---```lua
---for _, m in ipairs(openrouter.models()) do
---  if m.id:find("^anthropic/") then print(m.id, m.context_length, m.pricing.prompt) end
---end
---```
---@return table[]
function openrouter.models() end

---The key's credits (`/key`), in USD; `limit` and `remaining` are nil for keys without a limit.
---
---```lua
---local c = openrouter.credits()
---print(("used $%.2f, %s"):format(c.usage, c.remaining and ("$%.2f left"):format(c.remaining) or "no limit"))
---```
---@return {limit: number?, usage: number, remaining: number?}
function openrouter.credits() end
