--- Command-line arguments for playbooks: flags, options with a fixed number of values, positionals.
--- ```lua
--- local args = require("baton.args")
--- local a = args.parse(baton.args, { flags = { "wait" }, options = { job = 1, ["sync-back"] = 2 } })
--- -- a.wait == true, a.job == "abc", a.sync_back == { "remote/dir", "local/dir" }, a[1], a[2]… positionals
--- ```
local M = {}

local function key(name) return (name:gsub("-", "_")) end

--- Parses `list` (default `baton.args`). `spec.flags`: names that take no value; `spec.options`: name →
--- how many values it takes. `--` ends options. Unknown `--names` raise an error naming the usage.
---@param list string[]? (default: baton.args)
---@param spec {flags: string[]?, options: table<string, integer>?, usage: string?}?
---@return table parsed positionals at [1..n], flags as true, options as a string or a list (dashes become underscores)
function M.parse(list, spec)
  list = list or baton.args
  spec = spec or {}
  local flags, options = {}, spec.options or {}
  for _, f in ipairs(spec.flags or {}) do flags[f] = true end
  local out, i, rest = {}, 1, false
  while i <= #list do
    local a = list[i]
    local name = (not rest) and a:match("^%-%-([%w][%w%-_]*)$")
    if a == "--" and not rest then
      rest = true
    elseif name and flags[name] then
      out[key(name)] = true
    elseif name and options[name] then
      local n = options[name]
      if i + n > #list then
        error(("--%s needs %d value%s%s"):format(name, n, n > 1 and "s" or "", spec.usage and ("\nusage: " .. spec.usage) or ""), 2)
      end
      if n == 1 then
        out[key(name)] = list[i + 1]
      else
        local vals = {}
        for j = 1, n do vals[j] = list[i + j] end
        out[key(name)] = vals
      end
      i = i + n
    elseif name then
      error(("unknown option --%s%s"):format(name, spec.usage and ("\nusage: " .. spec.usage) or ""), 2)
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

return M
