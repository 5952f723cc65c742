-- The trivial tool `cargo bench --bench mcp` calls through `baton mcp serve` (the same as mcp_fastmcp.py's).
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
