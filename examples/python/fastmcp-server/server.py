"""A FastMCP server whose tools Rein guards, driven by an MCP client.

    python examples/python/fastmcp-server/server.py            # the demo: a client calls the tools
    python examples/python/fastmcp-server/server.py --stdio    # serve over stdio for a real MCP host

Each tool is a plain function, sync or async, under `@guard.action(...)`,
registered with `@mcp.tool()`. The guard decides with `policy.yaml` before the function runs
(and checks a refund's result after it); a refusal becomes a FastMCP
`ToolError`, which the client receives as the tool's result with `isError`
set, so the model reads why its call was refused. The demo runs the server
and FastMCP's client in one process, offline.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import pathlib
import sys
from typing import Any, Callable, Dict, List, Tuple, TypeVar

from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

import rein

HERE = pathlib.Path(__file__).resolve().parent
F = TypeVar("F", bound=Callable[..., Any])

# What the shop's database would answer.
ORDERS: Dict[str, Dict[str, Any]] = {
    "ord_abc123": {"status": "delivered", "total": 120.0, "currency": "EUR"},
    "ord_def456": {"status": "shipped", "total": 500.0, "currency": "EUR"},
    "ord_ghi789": {"status": "refunded", "total": 80.0, "currency": "EUR"},  # refunded elsewhere
    "ord_jkl012": {"status": "delivered", "total": 30.0, "currency": "EUR"},
}
REFUNDS: List[Tuple[str, float, str]] = []


def order_facts(call: rein.Call) -> Dict[str, Any]:
    """The snapshot the rules read, looked up once per call. An unknown
    order raises, and a resolver that raises blocks the call. (Two refunds
    decided at the same moment see the same sum: the payment system must
    hold the line as well.)"""
    order_id = call.input["order_id"]
    order = ORDERS[order_id]
    return {
        "order_total": order["total"],
        "order_currency": order["currency"],
        "refunded_so_far": sum(amount for refunded, amount, _ in REFUNDS if refunded == order_id),
        "order_status": order["status"],
    }


policy = rein.Policy.load(HERE / "policy.yaml")
guard = rein.Guard(
    policy,
    actor={"id": "support-bot", "role": "agent"},
    snapshot=order_facts,
)


def refusals_as_tool_errors(fn: F) -> F:
    """Rein's refusal as the tool's error. FastMCP sends a `ToolError`'s
    text to the client (also with `mask_error_details=True`, which hides
    every other exception's text), marked `isError`."""

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except rein.Refused as refusal:
                raise ToolError(f"Refused by policy: {refusal}") from refusal

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except rein.Refused as refusal:
            raise ToolError(f"Refused by policy: {refusal}") from refusal

    return wrapper  # type: ignore[return-value]


mcp = FastMCP("support-desk", mask_error_details=True)


@mcp.tool()
@refusals_as_tool_errors
@guard.action("order.lookup")
async def lookup_order(order_id: str) -> dict:
    """Look up an order's status and total."""
    await asyncio.sleep(0)  # where a real server would query its database
    return {"order_id": order_id, **ORDERS[order_id]}


@mcp.tool()
@refusals_as_tool_errors
@guard.action("refund")
def refund(order_id: str, amount: float, currency: str) -> dict:
    """Refund part or all of an order."""
    REFUNDS.append((order_id, amount, currency))
    return {"refund_id": f"re_{1000 + len(REFUNDS)}"}


async def demo() -> None:
    calls = [
        ("lookup_order", {"order_id": "ord_abc123"}),
        ("refund", {"order_id": "ord_abc123", "amount": 40, "currency": "EUR"}),
        ("refund", {"order_id": "ord_abc123", "amount": 90, "currency": "EUR"}),
        ("refund", {"order_id": "ord_jkl012", "amount": 20, "currency": "USD"}),
        ("refund", {"order_id": "ord_def456", "amount": 400, "currency": "EUR"}),
        ("refund", {"order_id": "ord_ghi789", "amount": 20, "currency": "EUR"}),
    ]
    async with Client(mcp) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(tool.name for tool in tools))
        for name, arguments in calls:
            print(f"\ncall {name} {json.dumps(arguments)}")
            result = await client.call_tool(name, arguments, raise_on_error=False)
            text = " ".join(block.text for block in result.content if hasattr(block, "text"))
            if result.is_error:
                print(f"  isError: {text}")
            else:
                print(f"  result: {text}")
    print(f"\nrefunds issued: {REFUNDS}")


if __name__ == "__main__":
    if "--stdio" in sys.argv[1:]:
        mcp.run(transport="stdio")
    else:
        asyncio.run(demo())
