"""A small MCP server on the official Python SDK, for baton's client tests and the FastMCP baseline bench.

    fixture_server.py                 stdio
    fixture_server.py --http PORT     Streamable HTTP on 127.0.0.1:PORT/mcp
"""
import os
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("fixture")


@server.tool()
def echo(text: str) -> str:
    """Returns its text."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@server.tool()
def env(name: str) -> str:
    """The value of an environment variable of the server ("" when unset)."""
    return os.environ.get(name, "")


@server.tool()
def die() -> str:
    """Says why on stderr and exits with code 3, mid-call."""
    sys.stderr.write("dying now: fixture asked to exit\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
def header(name: str, ctx: Context) -> str:
    """The value of an HTTP request header ("" when absent)."""
    headers = ctx.headers or {}
    return headers.get(name.lower(), headers.get(name, ""))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
