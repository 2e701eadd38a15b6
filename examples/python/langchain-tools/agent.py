"""LangChain tools guarded by Rein, in a tool-calling loop with a scripted model.

    python examples/python/langchain-tools/agent.py

Each tool is a function under `@guard.action(...)` made a LangChain tool
with `StructuredTool.from_function(..., handle_tool_error=True)`. A refusal
is raised as LangChain's `ToolException`, which the tool turns into a
`ToolMessage` with `status="error"` and the refusal's text: the model reads
why its call was refused and the loop goes on. The model is `FakeMessagesListChatModel` from
langchain_core, scripted with the tool calls a real model could make, so
the example runs offline; it prints every tool message it is given.
"""

from __future__ import annotations

import functools
import pathlib
import shutil
import subprocess
import tempfile
from typing import Any, Callable, List, TypeVar

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool, ToolException

import rein

HERE = pathlib.Path(__file__).resolve().parent
F = TypeVar("F", bound=Callable[..., Any])

# The agent's workspace: a scratch folder, so nothing outside it is touched
# even if a command ran that should not have.
WORKSPACE = pathlib.Path(tempfile.mkdtemp(prefix="rein-langchain-"))
(WORKSPACE / "src").mkdir()
(WORKSPACE / "README.md").write_text("# demo\nA tiny project.\n")
(WORKSPACE / "src" / "app.py").write_text("print('hello')\n")
(WORKSPACE / ".env").write_text("API_KEY=sk-live-not-for-models\n")

policy = rein.Policy.load(HERE / "policy.yaml")
guard = rein.Guard(policy, actor={"id": "coding-agent"})


def refusals_as_tool_exceptions(fn: F) -> F:
    """Rein's refusal as LangChain's `ToolException`, which a tool with
    `handle_tool_error` returns to the model instead of raising."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except rein.Refused as refusal:
            raise ToolException(f"Refused by policy: {refusal}") from refusal

    return wrapper  # type: ignore[return-value]


# LangChain passes a tool argument named `args` as positional arguments, so
# the parameter is `arguments`; `fields=` maps the contract's `args` to it.
@refusals_as_tool_exceptions
@guard.action("shell.run", fields={"args": "arguments"})
def run_command(program: str, arguments: List[str]) -> str:
    """Run a program (no shell) in the workspace and return what it printed."""
    done = subprocess.run(
        [program, *arguments], cwd=WORKSPACE, capture_output=True, text=True, timeout=10, check=False
    )
    return (done.stdout + done.stderr).strip()


@refusals_as_tool_exceptions
@guard.action("file.read")
def read_file(path: str) -> str:
    """Read a text file of the workspace."""
    return (WORKSPACE / path).read_text()


# The tools the model may call, by name; `handle_tool_error` turns a
# ToolException into the ToolMessage the model reads.
TOOLS = {
    fn.__name__: StructuredTool.from_function(fn, handle_tool_error=True)
    for fn in (run_command, read_file)
}


class ScriptedModel(FakeMessagesListChatModel):
    """A chat model that answers from a script and prints the tool results
    it is given, as a real model would read them."""

    seen: int = 0

    def _generate(self, messages: List[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        for message in messages[self.seen :]:
            if isinstance(message, ToolMessage):
                print(f"  model reads {message.name} [{message.status}]: {message.content!r}")
        self.seen = len(messages)
        return super()._generate(messages, *args, **kwargs)


def call(name: str, args: dict, call_id: str) -> dict:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def main() -> None:
    model = ScriptedModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    call("run_command", {"program": "ls", "arguments": ["-a"]}, "call_1"),
                    call("read_file", {"path": "README.md"}, "call_2"),
                ],
            ),
            AIMessage(content="", tool_calls=[call("read_file", {"path": ".env"}, "call_3")]),
            AIMessage(
                content="",
                tool_calls=[call("run_command", {"program": "rm", "arguments": ["-rf", "."]}, "call_4")],
            ),
            AIMessage(content="The workspace is listed; I may not read secrets or delete files."),
        ]
    )
    messages: List[BaseMessage] = [HumanMessage("Look around the project, then clean it up.")]
    try:
        while True:
            reply = model.invoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                print(f"model: {reply.content}")
                break
            for tool_call in reply.tool_calls:
                print(f"tool call {tool_call['name']} {tool_call['args']}")
                messages.append(TOOLS[tool_call["name"]].invoke(tool_call))
        left = sorted(p.name for p in WORKSPACE.iterdir())
        print(f"workspace still holds: {', '.join(left)}")
    finally:
        shutil.rmtree(WORKSPACE)


if __name__ == "__main__":
    main()
