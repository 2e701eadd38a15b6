"""A small MCP server on the official Python SDK (`mcp` 2.3.0, MCPServer),
serving both protocol eras, for the gateway tests.

    test_server.py [--description TEXT] [--marker-dir DIR] [--http PORT]

Tools:
- `greet(name)`: "Hello, <name>!". Its description is `--description`
  (default "Greets someone by name."), so two runs with different
  descriptions are a rug pull: pin with one, run with the other.
- `add(a, b)`: the sum, as structured content `{"result": a + b}`.
- `sleepy(seconds, tag)`: sleeps, then answers "slept <seconds>s: <tag>".
  With `--marker-dir`, every call that reaches the server writes a file
  `<tag>` there first, so a test sees which calls the upstream received.
- `confirm(question)`: asks the client through elicitation (a
  server-to-client request, handshake era) and answers with what came back.

stdio by default (configuration comes from argv: the SDK's stdio client
passes its child a filtered environment); `--http PORT` serves Streamable
HTTP at http://127.0.0.1:PORT/mcp.
"""

import argparse
import asyncio
import os

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from pydantic import BaseModel


class Approve(BaseModel):
    approve: bool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--description", default="Greets someone by name.")
    parser.add_argument("--marker-dir")
    parser.add_argument("--http", type=int)
    args = parser.parse_args()

    server = MCPServer("rein-test-server", version="1.0.0")

    def mark(tag: str) -> None:
        if args.marker_dir:
            with open(os.path.join(args.marker_dir, os.path.basename(tag)), "w") as f:
                f.write("called\n")

    @server.tool(description=args.description)
    def greet(name: str) -> str:
        mark(f"greet-{name}")
        return f"Hello, {name}!"

    @server.tool(description="Adds two integers.")
    def add(a: int, b: int) -> dict[str, int]:
        return {"result": a + b}

    @server.tool(description="Sleeps for a number of seconds, then says so.")
    async def sleepy(seconds: float, tag: str) -> str:
        mark(tag)
        await asyncio.sleep(seconds)
        return f"slept {seconds}s: {tag}"

    @server.tool(description="Asks the user to confirm, then says what they answered.")
    async def confirm(question: str, ctx: Context) -> str:
        answer = await ctx.elicit(question, Approve)
        data = answer.data.approve if answer.action == "accept" else None
        return f"{answer.action}: {data}"

    if args.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
