"""The FastMCP baseline for `cargo bench --bench mcp`: the Python SDK's high-level server (FastMCP, called
MCPServer since mcp 2) over stdio with the same trivial tool as benches/mcp_tools.lua."""
from mcp.server.mcpserver import MCPServer

server = MCPServer("fastmcp-baseline")


@server.tool()
def add(a: int, b: int) -> str:
    """Adds two numbers."""
    return str(a + b)


if __name__ == "__main__":
    server.run()
