-- warm_models.lua — the morning warm-up: load the local tier models so the first request of the day is fast.
--
-- For every fleet tier with provider "ollama", each of its models (`model`, or every entry of `models`) is
-- loaded on the tier's Ollama host with a long `keep_alive` (an empty generate request: Ollama loads the
-- model and keeps it in memory), one model at a time per host, hosts in parallel. A model that is not
-- pulled is reported (or pulled first with --pull); an Ollama that does not answer is reported. Then the
-- models loaded on each host are listed. Ends with an error when anything could not be loaded.
--
-- Fleet: the Ollama hosts are the tiers' `host` entries (hosts with `ollama = URL`, usually role "inference").
--
-- Arguments: [HOST…] only these Ollama hosts · --keep-alive DURATION (default: 10h) · --pull
local args = require("baton.args")

local a = args.parse(baton.args, {
  flags = { "pull" },
  options = { ["keep-alive"] = 1 },
  usage = "warm_models.lua [HOST…] [--keep-alive 10h] [--pull]",
})
local keep_alive = a.keep_alive or "10h"

-- host → list of models, from the fleet's ollama tiers.
local wanted = {}
for _, h in ipairs(a) do wanted[h] = true end
local by_host, hosts = {}, {}
for _, tier in ipairs(baton.fleet.tiers) do
  local host = tier.host
  if tier.provider == "ollama" and host and (#a == 0 or wanted[host]) then
    if not by_host[host] then
      by_host[host] = {}
      hosts[#hosts + 1] = host
    end
    local models = {}
    if tier.model then models[#models + 1] = tier.model end
    for _, m in pairs(tier.models or {}) do models[#models + 1] = m end
    table.sort(models)
    for _, m in ipairs(models) do
      local seen = false
      for _, x in ipairs(by_host[host]) do seen = seen or x == m end
      if not seen then table.insert(by_host[host], m) end
    end
  end
end
if #hosts == 0 then error("no ollama tier in the fleet" .. (#a > 0 and (" on " .. table.concat(a, ", ")) or ""), 0) end

local problems = {}

local function warm(host)
  if not ollama.online({ host = host }) then
    problems[#problems + 1] = ("%s: Ollama does not answer"):format(host)
    print(("%s: offline"):format(host))
    return
  end
  local installed = {}
  for _, m in ipairs(ollama.models({ host = host })) do
    installed[m.name] = true
    installed[(m.name:gsub(":latest$", ""))] = true
  end
  for _, model in ipairs(by_host[host]) do
    if not installed[model] and a.pull then
      print(("%s: pulling %s …"):format(host, model))
      ollama.pull(model, { host = host, on_progress = function() end })
      installed[model] = true
    end
    if not installed[model] then
      problems[#problems + 1] = ("%s: %s is not pulled (run with --pull, or ollama pull %s)"):format(host, model, model)
      print(("%s: %s not pulled"):format(host, model))
    else
      local t0 = baton.clock()
      local r = ollama.generate({ host = host, model = model, prompt = "", keep_alive = keep_alive, check = false })
      if r.ok then
        print(("%s: %s loaded in %.1fs, kept for %s"):format(host, model, baton.clock() - t0, keep_alive))
      else
        problems[#problems + 1] = ("%s: %s: %s"):format(host, model, r.err)
        print(("%s: %s FAILED: %s"):format(host, model, r.err))
      end
    end
  end
  local loaded = {}
  for _, m in ipairs(ollama.loaded({ host = host })) do loaded[#loaded + 1] = m.name end
  print(("%s: loaded now: %s"):format(host, #loaded > 0 and table.concat(loaded, ", ") or "(none)"))
end

local tasks = {}
for _, host in ipairs(hosts) do tasks[#tasks + 1] = function() warm(host) end end
baton.gather(tasks)

if #problems > 0 then
  error(("warm_models: %d problem%s:\n  %s"):format(#problems, #problems == 1 and "" or "s", table.concat(problems, "\n  ")), 0)
end
