"""The integrations under examples/python/, each run as its own process
(offline) as a user would run it: the allowed calls' results and the
refused calls' reasons must reach the client or the model, and a refused
call must not have run."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "python"


def needs(module: str) -> None:
    """The framework an example uses. `.ci/python` installs every one; an
    interpreter without it skips the example, except under CI=true."""
    if importlib.util.find_spec(module) is None:
        assert os.environ.get("CI") != "true", f"{module} is not installed: run bash .ci/python"
        pytest.skip(f"{module} is not installed (bash .ci/python installs it)")


def run_example(relative: str) -> list[str]:
    """The example's standard output, line by line; it must exit 0."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / relative)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        # No proxy, key or tracing endpoint: the examples need none, and
        # a library trying the network must fail here, not pass.
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(ROOT / "target"),
            "NO_PROXY": "*",
            "OPENAI_AGENTS_DISABLE_TRACING": "1",
        },
    )
    assert done.returncode == 0, f"{relative} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout.splitlines()


def only(lines: list[str], *parts: str) -> str:
    """The one line holding every part."""
    found = [line for line in lines if all(part in line for part in parts)]
    assert len(found) == 1, f"expected one line with {parts}, got {found} in:\n" + "\n".join(lines)
    return found[0]


def test_fastmcp_server_refusals_reach_the_client_as_tool_errors():
    needs("fastmcp")
    lines = run_example("fastmcp-server/server.py")
    assert "tools: lookup_order, refund" in lines
    # Allowed: the lookup and the 40 EUR refund ran and returned.
    assert "result:" in only(lines, "ord_abc123", "delivered")
    assert "result:" in only(lines, "re_1001")
    # Refused: each reason reached the client as an isError result.
    over = only(lines, "refund_over_order_total")
    assert over.strip().startswith("isError: Refused by policy: `refund` blocked by `refund_over_order_total`")
    assert "refunds cannot add up to more than the order cost" in over
    currency = only(lines, "refund_in_order_currency")
    assert currency.strip().startswith("isError:")
    assert "a refund is paid in the order's currency" in currency
    approval = only(lines, "needs approval")
    assert approval.strip().startswith("isError:")
    assert "approver role: support" in approval and "refunds over 100 need a support lead" in approval
    assert only(lines, "already_refunded").strip().startswith("isError:")
    # The refused refunds never ran.
    assert lines[-1] == "refunds issued: [('ord_abc123', 40.0, 'EUR')]"


def test_fastmcp_server_over_stdio_sends_the_refusal_as_a_tool_error():
    """The same server as a separate process over stdio (`--stdio`, as an
    MCP host runs it), driven by FastMCP's client."""
    needs("fastmcp")
    import asyncio

    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    async def session():
        transport = StdioTransport(
            command=sys.executable,
            args=[str(EXAMPLES / "fastmcp-server" / "server.py"), "--stdio"],
            env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT / "target")},
            cwd=str(ROOT),
        )
        async with Client(transport) as client:
            over = await client.call_tool(
                "refund", {"order_id": "ord_jkl012", "amount": 60, "currency": "EUR"}, raise_on_error=False
            )
            small = await client.call_tool(
                "refund", {"order_id": "ord_abc123", "amount": 6, "currency": "EUR"}, raise_on_error=False
            )
            return over, small

    over, small = asyncio.run(asyncio.wait_for(session(), timeout=60))
    assert over.is_error
    assert over.content[0].text == (
        "Refused by policy: `refund` blocked by `refund_over_order_total`: "
        "refunds cannot add up to more than the order cost"
    )
    assert not small.is_error
    assert small.structured_content == {"refund_id": "re_1001"}


def test_langchain_refusals_reach_the_model_as_tool_message_errors():
    needs("langchain_core")
    lines = run_example("langchain-tools/agent.py")
    listing = only(lines, "model reads run_command [success]")
    assert "README.md" in listing and ".env" in listing
    assert "A tiny project." in only(lines, "model reads read_file [success]")
    secret = only(lines, "model reads read_file [error]")
    assert "blocked by `workspace_reads`" not in secret  # the deciding rule comes first
    assert "secrets stay out of the model's context" in secret
    assert "sk-live" not in "\n".join(lines)
    rm = only(lines, "model reads run_command [error]")
    assert "Refused by policy: `shell.run` blocked by `no_deleting_or_permissions`" in rm
    assert "deleting files and changing permissions is not for the agent" in rm
    assert lines[-2].startswith("model: ")
    # rm -rf . did not run.
    assert lines[-1] == "workspace still holds: .env, README.md, src"


def test_openai_agents_refusals_reach_the_model_as_tool_output():
    needs("agents")
    lines = run_example("openai-agents/agent.py")
    assert only(lines, "model reads call_1").endswith("wrote 12 characters to notes/summary.md")
    approval = only(lines, "model reads call_2")
    assert "Refused by policy: `file.write` needs approval (approver role: maintainer)" in approval
    assert "changing the configuration needs a maintainer" in approval
    delete = only(lines, "model reads call_3")
    assert "Refused by policy: `file.delete` blocked by `no_deletes`" in delete
    assert "deleting files is for people" in delete
    assert lines[-2].startswith("model: Notes written")
    # Neither the config write nor the delete ran.
    assert lines[-1] == "workspace holds: notes/summary.md"


@pytest.mark.parametrize("example", ["fastmcp-server", "langchain-tools", "openai-agents"])
def test_each_example_has_a_policy_with_tests(example):
    folder = EXAMPLES / example
    assert (folder / "policy.yaml").is_file()
    assert (folder / "policy.test.yaml").is_file()
