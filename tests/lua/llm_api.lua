-- The LLM API without a network: routing decisions, argument checks, the empty ledger, the missing key.
-- Runs with the built-in fleet (host `local`, Ollama on 127.0.0.1:11434, no OpenRouter key, so only the
-- `local` tier exists).
local t = require("baton.test")

t.it("route.pick follows the default task table", function()
  local p = route.pick("code_generation")
  t.eq(p.task, "code_generation") t.eq(p.tier, "local") t.eq(p.provider, "ollama")
  t.eq(p.host, "local") t.eq(p.model, "qwen2.5-coder:32b")
  t.eq(p.reason, "task code_generation → tier local")
  t.eq(route.pick("bug_hunting").model, "deepseek-r1:32b")
  local u = route.pick({ kind = "limerick" })
  t.eq(u.tier, "local")
  t.truthy(u.reason:find("unknown task kind", 1, true), "unknown kinds say so")
  -- The built-in fleet without a key has no cloud tiers: a known kind of theirs says what to set.
  local c = route.pick("code_review")
  t.eq(c.tier, "local")
  t.eq(c.reason, "task code_review → tier cheap, not configured (no $OPENROUTER_API_KEY): lowest tier that is up")
end)

t.it("misuse raises at once, naming function and argument", function()
  t.raises("route.pick: argument 1 (task) must be a task kind string or a {kind = …} table, got nil", route.pick)
  t.raises("route.pick(x): unknown tier \"cheap\" (tiers: local)", route.pick, { kind = "x", min_tier = "cheap" })
  t.raises("route.ask: argument 2 (prompt) must be a string or a list of messages, got number 5", route.ask, "lint", 5)
  t.raises("options.max_tire: unknown key, did you mean max_tier?", route.ask, "lint", "x", { max_tire = "local" })
  t.raises("route.ask: options.accept must be a function, got boolean", route.ask, "lint", "x", { accept = true })
  t.raises("route.spend: options.by must be \"tier\", \"model\", \"task\" or \"script\", got \"host\"", route.spend, { by = "host" })
  t.raises("ollama.chat: argument 1 (request) must be a table, got string \"hi\"", ollama.chat, "hi")
  t.raises("ollama.generate: options.promt: unknown key, did you mean prompt?", ollama.generate, { model = "m", promt = "x" })
  t.raises("ollama.embed: request.input must be a string or a list of strings", ollama.embed, { model = "m", input = 3 })
  t.raises("ollama.pull: argument 1 (model) must be a string, got nil", ollama.pull)
  t.raises("ollama.queue(nowhere): unknown host \"nowhere\"", ollama.queue, { host = "nowhere" })
  t.raises("openrouter.chat: argument 1 (request) must be a table, got nil", openrouter.chat)
end)

t.it("a missing key names the variable and sends nothing", function()
  local e = t.raises("no API key: set the environment variable OPENROUTER_API_KEY", openrouter.chat,
    { model = "anthropic/claude-sonnet-4.5", messages = { { role = "user", content = "hi" } } })
  t.truthy(e:find("openrouter.chat(openrouter, anthropic/claude-sonnet-4.5)", 1, true), e)
  local r = openrouter.chat({ model = "m", messages = {}, check = false })
  t.eq(r.ok, false)
  t.raises("OPENROUTER_API_KEY", openrouter.credits)
end)

t.it("the queue and the ledger start empty", function()
  local q = ollama.queue()
  t.eq(q.running, 0) t.eq(q.waiting, 0)
  t.eq(#route.spend(), 0)
  t.eq(#route.spend({ period = "all", by = "task" }), 0)
  route.on_alert = function() end -- scripts may set it
end)

t.done()
