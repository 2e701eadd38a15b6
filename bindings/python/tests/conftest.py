"""Shared helpers of the pytest suite: where the repository and the `rein`
binary are, running the CLI, and reading YAML as Rein reads it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
"""The repository's root."""

EXAMPLES = REPO / "examples"


def rein_bin() -> Path:
    """The `rein` binary: env `REIN_BIN`, else `target/debug/rein` of the
    repository (built by `cargo build -p rein-cli`)."""
    return Path(os.environ.get("REIN_BIN", REPO / "target" / "debug" / "rein"))


@pytest.fixture(scope="session")
def rein_binary() -> Path:
    """The `rein` binary; the tests that use it skip nothing: a missing
    binary fails them, naming how to build it."""
    path = rein_bin()
    if not path.is_file():
        pytest.fail(f"no rein binary at {path}: run `cargo build -p rein-cli` or set REIN_BIN")
    return path


def run_rein(args: Sequence[Any], stdin: Optional[str] = None, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Runs `rein ARGS` (no colours), returning the finished process."""
    if not rein_bin().is_file():
        pytest.fail(f"no rein binary at {rein_bin()}: run `cargo build -p rein-cli` or set REIN_BIN")
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(
        [str(rein_bin()), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=120,
    )


def check_batch(policy_args: Sequence[Any], requests: Sequence[Any]) -> list[dict]:
    """Decides `requests` with one `rein check --batch` run; one decision
    (the CLI's JSON) per request."""
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    done = run_rein(["check", *policy_args, "--batch"], stdin=lines)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(out) == len(requests), done.stdout
    return out


class _Yaml12Loader(yaml.SafeLoader):
    """Reads scalars as Rein's YAML reader does (YAML 1.2's core schema):
    `yes`/`on` stay strings, timestamps stay text, `0o17` is octal."""


_Yaml12Loader.yaml_implicit_resolvers = {}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _int12(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _int12)


def load_yaml(path: Path) -> Any:
    """A YAML file read with YAML 1.2's core schema, as Rein reads it."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader)


def policy_test_files() -> list[Path]:
    """Every policy test file (`*.test.yaml`) under examples/ and policies/."""
    return sorted([*EXAMPLES.rglob("*.test.yaml"), *(REPO / "policies").rglob("*.test.yaml")])
