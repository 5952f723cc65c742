-- Tools served by `baton mcp serve` in the tests (driven by tests/mcp/client.py) and the bench.
local counter = 0

mcp.tool{
  name = "add",
  description = "Adds two numbers.",
  parameters = {
    type = "object",
    properties = { a = { type = "integer" }, b = { type = "integer" } },
    required = { "a", "b" },
  },
  run = function(args) return tostring(args.a + args.b) end,
}

mcp.tool{
  name = "info",
  description = "A table result (sent as JSON).",
  run = function() return { fleet = "test", hosts = { "a", "b" } } end,
}

mcp.tool{
  name = "boom",
  description = "Always fails.",
  parameters = { type = "object", properties = { why = { type = "string" } } },
  run = function(args) error("boom: " .. (args.why or "no reason")) end,
}

mcp.tool{
  name = "noisy",
  description = "Prints and logs, then answers.",
  run = function()
    print("printed by noisy")
    baton.log.info("logged by noisy")
    io.stderr:write("stderr by noisy\n")
    io.write("io.write by noisy\n")
    io.stdout:write("io.stdout by noisy\n")
    os.execute("echo os.execute by noisy")
    return "quiet answer"
  end,
}

local arrived = 0

mcp.tool{
  name = "slow",
  description = "Sleeps (or, with `together`, waits until that many calls have arrived, ~10 s at most), "
    .. "returning when it started and ended (seconds since the epoch).",
  parameters = { type = "object", properties = { seconds = { type = "number" }, together = { type = "integer" } } },
  run = function(args)
    local started = baton.now()
    arrived = arrived + 1
    if args.together then
      for _ = 1, 1000 do if arrived >= args.together then break end baton.sleep(0.01) end
    else
      baton.sleep(args.seconds or 0.3)
    end
    return { started = started, ended = baton.now() }
  end,
}

mcp.tool{
  name = "spin",
  description = "Counts forever without ever waiting (stopped only by cancellation or its timeout).",
  run = function() while true do counter = counter + 1 end end,
}

mcp.tool{
  name = "spin_briefly",
  description = "Like spin, with a 300ms timeout.",
  timeout = "300ms",
  run = function() while true do counter = counter + 1 end end,
}

mcp.tool{
  name = "count",
  description = "How far spin has counted.",
  run = function() return tostring(counter) end,
}
