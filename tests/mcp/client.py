"""Drives `baton mcp serve` with the official Python MCP SDK's client and prints one JSON report on stdout.

    client.py BATON TOOLS_FILE STDERR_FILE

The server's stderr goes to STDERR_FILE. Every check runs on one session, in order; the report holds what
the test asserts on.
"""
import asyncio
import json
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def text_of(result):
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def main(baton, tools_file, stderr_file):
    report = {}
    # The SDK passes only a few variables to the server; baton's own ones go through as given.
    env = {k: v for k, v in os.environ.items() if k.startswith(("BATON_", "XDG_")) or k == "HOME"}
    params = StdioServerParameters(command=baton, args=["mcp", "serve", tools_file], env=env)
    with open(stderr_file, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                report["protocol_version"] = init.protocol_version
                report["server_name"] = init.server_info.name if init.server_info else None

                tools = await session.list_tools()
                report["tools"] = {t.name: {"description": t.description, "schema": t.input_schema} for t in tools.tools}

                r = await session.call_tool("add", {"a": 2, "b": 40})
                report["add"] = {"text": text_of(r), "is_error": bool(r.is_error)}

                r = await session.call_tool("info", {})
                report["info"] = {"text": text_of(r), "structured": r.structured_content, "is_error": bool(r.is_error)}

                r = await session.call_tool("boom", {"why": "on purpose"})
                report["boom"] = {"text": text_of(r), "is_error": bool(r.is_error)}

                r = await session.call_tool("noisy", {})
                report["noisy"] = {"text": text_of(r), "is_error": bool(r.is_error)}

                # Ten calls at once: each waits until all ten have arrived, so they overlap (every one started
                # before any ended) only if the server runs them at the same time.
                results = [None] * 10

                async def slow(i):
                    res = await session.call_tool("slow", {"together": 10})
                    results[i] = json.loads(text_of(res))

                async with anyio.create_task_group() as tg:
                    for i in range(10):
                        tg.start_soon(slow, i)
                report["slow"] = results

                r = await session.call_tool("spin_briefly", {})
                report["spin_briefly"] = {"text": text_of(r), "is_error": bool(r.is_error)}

                # A call abandoned by the client (read timeout) sends notifications/cancelled: the spinning
                # tool must stop, so `count` reads the same value twice.
                try:
                    await session.call_tool("spin", {}, read_timeout_seconds=0.5)
                    report["spin"] = "returned"
                except Exception as e:  # the SDK raises on its read timeout
                    report["spin"] = f"abandoned: {type(e).__name__}"
                # Wait for the event (the count standing still), not for a guessed second: up to ~30 s.
                second = text_of(await session.call_tool("count", {}))
                for _ in range(100):
                    first = second
                    await anyio.sleep(0.3)
                    second = text_of(await session.call_tool("count", {}))
                    if first == second:
                        break
                report["count_after_cancel"] = [first, second]
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
