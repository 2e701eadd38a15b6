"""A scripted MCP client on the official Python SDK (`mcp` 2.3.0), for the
gateway tests in crates/rein-cli/tests/mcp_*.rs.

    client.py --mode auto|legacy|2026-07-28 --script STEPS.json (--url URL | -- CMD ARGS...)

Connects over Streamable HTTP (`--url`) or spawns CMD over stdio, runs the
steps of STEPS.json in order and prints one JSON line per step on stdout:

    {"step": "connected", "protocol_version": ..., "server_info": ...}
    {"step": "list_tools", "tools": [<tool as listed>, ...]}
    {"step": "call", "name": N, "result": <CallToolResult as received>}
    {"step": "call", "name": N, "error": {"code": C, "message": M}}
    ...

A step is an object with "op": `list_tools`, `call` (`name`, `arguments`,
optional `meta` and `timeout` seconds), `list_resources`, `read_resource`
(`uri`), `list_prompts`, `get_prompt` (`name`, `arguments`), `sleep`
(`seconds`), `parallel` (`steps`, run at once on the session, each
after its own `delay` seconds; the line lists their `results` and the
`order` they completed in). A step may carry `expect`: `{"is_error": bool, "text_contains":
str, "text_lacks": str, "error_code": int, "error_contains": str}`; what it
does not meet is listed in the line's `expect_failed` (the Rust tests assert
it is absent, and assert on the results themselves too).

The client answers the server's requests the same way every run, so two runs
compare: sampling → the text "sampled: <last message text>", elicitation →
accept with `{"approve": true}`, roots → none. Progress notifications of a
call are listed in its line (`progress`).

The SDK's `auto` mode probes `server/discover` (2026-07-28) first and falls
back to `initialize`; `legacy` forces the handshake; a version pins the
stateless era.
"""

import argparse
import asyncio
import json
import sys
from typing import Any

import mcp.types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError


def dump(model: Any) -> Any:
    """A result as it came over the wire (aliases, no defaults filled)."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def text_of(result: dict) -> str:
    return "\n".join(b.get("text", "") for b in result.get("content", []) if b.get("type") == "text")


def check(expect: dict | None, line: dict) -> list[str]:
    if not expect:
        return []
    failed = []
    result = line.get("result")
    error = line.get("error")
    if "is_error" in expect:
        got = bool(result and result.get("isError"))
        if result is None or got != expect["is_error"]:
            failed.append(f"is_error {expect['is_error']}: got result={result!r} error={error!r}")
    if "text_contains" in expect and (result is None or expect["text_contains"] not in text_of(result)):
        failed.append(f"text contains {expect['text_contains']!r}: got {line!r}")
    if "text_lacks" in expect and expect["text_lacks"] in json.dumps(line):
        failed.append(f"text lacks {expect['text_lacks']!r}: got {line!r}")
    if "error_code" in expect and (error is None or error["code"] != expect["error_code"]):
        failed.append(f"error code {expect['error_code']}: got {line!r}")
    if "error_contains" in expect and (error is None or expect["error_contains"] not in error["message"]):
        failed.append(f"error contains {expect['error_contains']!r}: got {line!r}")
    return failed


async def sampling(_ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    last = params.messages[-1].content if params.messages else None
    said = getattr(last, "text", "") if last is not None else ""
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"sampled: {said}"),
        model="scripted-test-model",
        stop_reason="endTurn",
    )


async def elicitation(_ctx: Any, _params: Any) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"approve": True})


async def run_step(client: Client, step: dict) -> dict:
    op = step["op"]
    line: dict[str, Any] = {"step": op}
    try:
        if op == "list_tools":
            tools, cursor = [], None
            while True:
                page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                tools.extend(dump(t) for t in page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
            line["tools"] = tools
        elif op == "call":
            line["name"] = step["name"]
            progress: list[Any] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append([value, total, message])

            result = await client.call_tool(
                step["name"],
                step.get("arguments"),
                read_timeout_seconds=step.get("timeout"),
                progress_callback=on_progress if step.get("progress") else None,
                meta=step.get("meta"),
            )
            line["result"] = dump(result)
            if progress:
                line["progress"] = progress
        elif op == "list_resources":
            line["resources"] = dump(await client.list_resources(cache_mode="bypass"))
        elif op == "read_resource":
            line["uri"] = step["uri"]
            line["result"] = dump(await client.read_resource(step["uri"], cache_mode="bypass"))
        elif op == "list_prompts":
            line["prompts"] = dump(await client.list_prompts(cache_mode="bypass"))
        elif op == "get_prompt":
            line["name"] = step["name"]
            line["result"] = dump(await client.get_prompt(step["name"], step.get("arguments")))
        elif op == "sleep":
            await asyncio.sleep(step["seconds"])
        elif op == "parallel":
            # Concurrent steps on the one session; `order` lists them as
            # they completed.
            order: list[int] = []

            async def one(i: int, sub: dict) -> dict:
                if sub.get("delay"):
                    await asyncio.sleep(sub["delay"])
                done = await run_step(client, sub)
                order.append(i)
                return done

            line["results"] = list(await asyncio.gather(*(one(i, s) for i, s in enumerate(step["steps"]))))
            line["order"] = order
        else:
            raise SystemExit(f"client.py: unknown step op {op!r}")
    except MCPError as e:
        line["error"] = {"code": e.code, "message": e.error.message}
    except TimeoutError as e:
        line["error"] = {"code": None, "message": f"client timeout: {e}"}
    failed = check(step.get("expect"), line)
    if failed:
        line["expect_failed"] = failed
    return line


def emit(line: dict) -> None:
    sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")
    sys.stdout.flush()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--script", required=True)
    parser.add_argument("--url")
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    with open(args.script) as f:
        steps = json.load(f)

    if args.url:
        server: Any = args.url
    else:
        if not args.command:
            parser.error("give --url or a server command after --")
        import os

        # The SDK passes its child only a safe list of variables; the tests
        # configure what they spawn through the environment too.
        server = StdioServerParameters(command=args.command[0], args=args.command[1:], env=dict(os.environ))

    client = Client(
        server,
        mode=args.mode,
        read_timeout_seconds=args.timeout,
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        cache=None,
    )
    async with client:
        info = client.server_info
        emit(
            {
                "step": "connected",
                "protocol_version": client.protocol_version,
                "server_info": dump(info) if info is not None else None,
            }
        )
        for step in steps:
            emit(await run_step(client, step))
    emit({"step": "closed"})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
