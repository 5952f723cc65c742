--- Small assertions for playbook checks and baton's own Lua specs.
--- ```lua
--- local t = require("baton.test")
--- t.it("adds", function() t.eq(1 + 1, 2) end)
--- t.done()   -- prints "N passed, N failed" and exits 1 on any failure
--- ```
local M = {}

local passed, failed = 0, 0

local function show(v)
  return type(v) == "string" and string.format("%q", v) or baton.inspect(v)
end

--- Raises unless `actual == expected`.
---@param actual any
---@param expected any
---@param what string? what is compared, for the message
function M.eq(actual, expected, what)
  if actual ~= expected then
    error(string.format("%sexpected %s, got %s", what and (what .. ": ") or "", show(expected), show(actual)), 2)
  end
end

--- Raises unless `v` is truthy.
---@generic T
---@param v T
---@param what string?
---@return T
function M.truthy(v, what)
  if not v then
    error((what or "expected a truthy value") .. ", got " .. show(v), 2)
  end
  return v
end

--- Runs `fn(...)`, raises unless it fails; returns the error text. With `needle`, the text must contain it.
---@param needle string? text the error must contain
---@param fn fun(...): any
---@return string err the error text
function M.raises(needle, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then
    error("expected an error" .. (needle and (" containing " .. show(needle)) or "") .. ", but the call succeeded", 2)
  end
  err = tostring(err)
  if needle and not err:find(needle, 1, true) then
    error(string.format("expected an error containing %s, got %s", show(needle), show(err)), 2)
  end
  return err
end

--- Runs one named case; a failure is reported and counted, and the next case still runs.
---@param name string
---@param fn fun()
function M.it(name, fn)
  local ok, err = pcall(fn)
  if ok then
    passed = passed + 1
    print("ok   " .. name)
  else
    failed = failed + 1
    print("FAIL " .. name .. ": " .. tostring(err))
  end
end

--- Prints the tally; exits 1 when a case failed.
function M.done()
  print(string.format("%d passed, %d failed", passed, failed))
  if failed > 0 then os.exit(1) end
end

return M
