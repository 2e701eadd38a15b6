"""OpenAI Agents SDK tools guarded by Rein, run by the SDK's own agent loop
with a scripted model.

    python examples/python/openai-agents/agent.py

Each tool is a function under `@guard.action(...)` made an Agents SDK tool
with `@function_tool(failure_error_function=...)`. When a tool raises, the
SDK sends the model what that function returns as the tool's output (its
default hides the error: "An error occurred while running the tool"); here
a Rein refusal is sent with its reason, any other error stays hidden. The
model is a `Model` implementation that plays a script of tool calls and
prints every tool output it is given, so `Runner` runs offline (tracing
off, no API key).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from typing import Any, List

from agents import Agent, RunContextWrapper, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

import rein

HERE = pathlib.Path(__file__).resolve().parent
WORKSPACE = pathlib.Path(tempfile.mkdtemp(prefix="rein-agents-"))

policy = rein.Policy.load(HERE / "policy.yaml")
guard = rein.Guard(policy, actor={"id": "notes-agent"})


def tool_failure(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """What the model reads when a tool raised: a refusal's reason, and
    nothing of any other error (the SDK's default)."""
    if isinstance(error, rein.Refused):
        return f"Refused by policy: {error}"
    return "An error occurred while running the tool."


@function_tool(failure_error_function=tool_failure)
@guard.action("file.write")
def write_file(path: str, content: str) -> str:
    """Write a text file of the workspace."""
    target = WORKSPACE / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)
    return f"wrote {len(content)} characters to {path}"


@function_tool(failure_error_function=tool_failure)
@guard.action("file.delete")
def delete_file(path: str) -> str:
    """Delete a file of the workspace."""
    (WORKSPACE / path).unlink()
    return f"deleted {path}"


class ScriptedModel(Model):
    """Answers each turn from a script (tool calls, then a message) and
    prints the tool outputs the agent loop sends back, as a real model
    would read them."""

    def __init__(self, turns: List[List[Any]]) -> None:
        self.turns = list(turns)
        self.printed: set = set()

    async def get_response(self, system_instructions, input, *args: Any, **kwargs: Any) -> ModelResponse:
        for item in input if isinstance(input, list) else []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                if item["call_id"] in self.printed:
                    continue
                self.printed.add(item["call_id"])
                print(f"  model reads {item['call_id']}: {item['output']}")
        output = self.turns.pop(0)
        for item in output:
            if isinstance(item, ResponseFunctionToolCall):
                print(f"tool call {item.call_id} {item.name} {item.arguments}")
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any):
        raise NotImplementedError("the example runs without streaming")


def tool_call(call_id: str, name: str, arguments: dict) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call",
        id=f"fc_{call_id}",
        call_id=call_id,
        name=name,
        arguments=json.dumps(arguments),
        status="completed",
    )


def message(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        type="message",
        id="msg_final",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def main() -> None:
    set_tracing_disabled(True)
    model = ScriptedModel(
        [
            [
                tool_call("call_1", "write_file", {"path": "notes/summary.md", "content": "Sprint done."}),
                tool_call("call_2", "write_file", {"path": "config/settings.toml", "content": "debug = true"}),
            ],
            [tool_call("call_3", "delete_file", {"path": "notes/summary.md"})],
            [message("Notes written; the config change waits for a maintainer; nothing deleted.")],
        ]
    )
    agent = Agent(
        name="notes",
        instructions="Keep the project's notes.",
        tools=[write_file, delete_file],
        model=model,
    )
    try:
        result = Runner.run_sync(agent, "Write the sprint summary, turn on debug, tidy up.")
        print(f"model: {result.final_output}")
        files = sorted(str(p.relative_to(WORKSPACE)) for p in WORKSPACE.rglob("*") if p.is_file())
        print(f"workspace holds: {', '.join(files)}")
    finally:
        shutil.rmtree(WORKSPACE)


if __name__ == "__main__":
    main()
