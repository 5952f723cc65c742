---@meta
-- MCP (Model Context Protocol) both ways. `mcp.connect` reaches any MCP server and makes its tools Lua
-- tool tables (usable directly in `route.ask(task, prompt, {tools = …})`); `mcp.tool` registers a Lua
-- function as a tool that `baton mcp serve [FILE]` offers to agents such as Claude Code.
--
-- Servers come from the fleet file's `mcp` table, or a spec given inline:
--   mcp = {
--     git   = { command = {"uvx", "mcp-server-git"}, env = {…}, cwd = "~/src", host = "brain" },
--     files = { url = "http://brain:8000/mcp", headers = { Authorization = "Bearer …" } },
--   }
-- A `command` server speaks MCP on its stdin/stdout: on this machine, or with `host` on that fleet host
-- through its ssh master (no port opened). A `url` server is reached with Streamable HTTP.

---@class mcp
mcp = {}

---@class mcp.Spec
---@field command string[]|nil argv of a stdio server
---@field env table<string,string>|nil variables for the server (default: none added)
---@field cwd string|nil its working directory (default: the current one, or the login directory on a host)
---@field host string|nil fleet host to run it on through its ssh master (default: this machine)
---@field url string|nil Streamable HTTP endpoint, instead of `command`
---@field headers table<string,string>|nil sent with every HTTP request (default: none); never shown or logged

---@class mcp.ConnectOpts
---@field timeout number|string|nil time for the server to start and answer `initialize` (default: "30s")

--- Connects to an MCP server: a fleet `mcp` name (one connection per name, shared by every coroutine and
--- closed when the script ends) or a spec table (a new connection each time).
--- Raises `mcp.connect(git): <cause>` (unknown name, cannot start, server exited with its stderr tail, timeout).
---@param server string|mcp.Spec
---@param opts mcp.ConnectOpts|nil
---@return mcp.Handle
function mcp.connect(server, opts) end

---@class mcp.Handle
---@field name string the fleet name, or the program / URL host of an inline spec
local Handle = {}

---@class mcp.Tool
---@field name string
---@field description string
---@field parameters table JSON Schema of the arguments
---@field run fun(args: table|nil): string|table calls the tool (timeout 60s); returns its text (its structured result when it gave no text); raises `mcp.run(git, git_log): <message>` when the tool reports an error. The table itself is callable too: `tool(args)`.

--- The server's tools, each a tool table as `route.ask` takes them.
---@return mcp.Tool[]
function Handle:tools() end

---@class mcp.CallOpts
---@field timeout number|string|nil give up (and cancel the call on the server) after this long (default: "60s")

---@class mcp.Result
---@field text string the text parts of the result, joined by newlines
---@field content table[] every content block as the server sent it (`{type = "text", text = …}`, images …)
---@field data any|nil the structured result, when the server gave one
---@field is_error boolean the tool reported an error (the message is in `text`); this does not raise

--- Calls one tool. Raises `mcp:call(git, name): <cause>` for an unknown tool, a timeout or a server that exited.
---@param name string
---@param args table|nil named arguments (default: none)
---@param opts mcp.CallOpts|nil
---@return mcp.Result
function Handle:call(name, args, opts) end

--- Ends the session: closes the server's stdin and stops it (killed after 3 s).
function Handle:close() end

---@class mcp.ToolSpec
---@field name string 1 to 64 letters, digits, `_`, `-` or `.`
---@field description string|nil what the tool does, for the agent (default: "")
---@field parameters table|nil JSON Schema of the arguments, `{type = "object", properties = {…}, required = {…}}` (default: no arguments)
---@field run fun(args: table): string|table|nil the tool; the whole baton API is available. A string is sent as text, a table as JSON (and as the structured result); an error becomes an `isError` result with its message.
---@field timeout number|string|nil stop the call after this long and answer with an error (default: "60s")

--- Registers a tool for `baton mcp serve`. Calls run concurrently, each as its own coroutine; a call the
--- client cancels is stopped. `print` inside a tool goes to stderr (stdout carries the protocol).
---@param tool mcp.ToolSpec
function mcp.tool(tool) end
