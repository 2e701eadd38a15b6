"""The engine, compiled from Rust (`bindings/python/src`).

Everything here is also exported from `rein`; import it from there.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

__version__: str

JsonValue = Any
"""A value that converts to JSON exactly: None, bool, int, float (finite),
str, list/tuple of these, dict with str keys of these. A `datetime` with a
time zone converts to its RFC 3339 text; anything else is an `InputError`."""

class Diagnostic:
    """One problem found while loading a policy."""

    severity: str
    """`"error"` or `"warning"`."""
    file: Optional[str]
    line: Optional[int]
    """1-based; None when the problem has no place in a file."""
    column: Optional[int]
    """1-based, in characters."""
    message: str
    hint: Optional[str]
    def __str__(self) -> str:
        """Rendered as the CLI renders it (no colours): place, message, the
        source line with the span marked, the hint."""

class Obligation:
    """What a `require_approval` decision asks for."""

    rule: str
    """The rule that asked."""
    role: str
    """The role its approver must hold."""
    ttl_seconds: Optional[int]
    """How long a grant holds."""

class Decision:
    """The answer to one request. Immutable."""

    decision_id: str
    """A fresh UUID v7 per decision (what the audit log or a rein serve would
    call it; in-process it names the decision for observers and exceptions)."""
    effect: str
    """`"allow"`, `"block"` or `"require_approval"`."""
    allowed: bool
    blocked: bool
    requires_approval: bool
    phase: str
    """`"before"` or `"after"`."""
    rules: list[str]
    """The rules that decided (the CLI's `rules`)."""
    reasons: list[str]
    """Why, one text per deciding rule or the contract violation."""
    default_applied: bool
    obligations: list[Obligation]
    approval_roles: list[str]
    """Every role an approver must hold (empty unless require_approval)."""
    labels: list[str]
    violation: Optional[dict[str, str]]
    """`{"path": ..., "message": ...}` when the request broke its contract."""
    retry_after_seconds: Optional[int]
    policy_version: str
    policy_version_label: Optional[str]
    def to_dict(self) -> dict[str, JsonValue]:
        """Exactly `rein check`'s JSON for this decision (plus `decision_id`)."""
    def __bool__(self) -> bool:
        """Refused: a Decision is not truthy; test `.allowed`."""

class Explanation:
    """A decision with the trace of every rule considered."""

    decision: Decision
    rules: list[dict[str, JsonValue]]
    """One per rule considered: id, effect, condition, outcome, steps."""
    def to_dict(self) -> dict[str, JsonValue]:
        """`rein explain --json`'s form."""
    def __str__(self) -> str:
        """The CLI's text form."""

class State:
    """Limits and sessions kept in memory for in-process decisions (what
    `rein check --state` keeps in a file). Thread-safe; share one per process.
    Without a State, a decision whose rules read state is `block`."""

    def __init__(self) -> None: ...
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(text: str) -> State: ...

class Policy:
    """A loaded, type-checked policy. Immutable and safe to share across
    threads; deciding releases the GIL."""

    @staticmethod
    def load(
        *paths: Union[str, os.PathLike[str]],
        governance: Optional[Union[str, os.PathLike[str]]] = None,
    ) -> Policy:
        """Loads and merges policy files or folders (all `.yaml`/`.yml` below,
        except `*.test.yaml`), as `rein check` does. Raises `PolicyError`."""
    @staticmethod
    def from_yaml(text: str, *, name: str = "<string>") -> Policy:
        """One native policy from text; `name` is the file name messages use."""
    @staticmethod
    def load_actra(
        schema: Union[str, os.PathLike[str]],
        policy: Union[str, os.PathLike[str]],
        governance: Optional[Union[str, os.PathLike[str]]] = None,
    ) -> Policy:
        """Actra's files, unchanged."""
    @staticmethod
    def from_actra(schema: str, policy: str, governance: Optional[str] = None) -> Policy:
        """Actra's files as text."""

    version: str
    version_label: Optional[str]
    actions: list[str]
    rule_count: int
    uses_state: bool
    warnings: list[Diagnostic]

    def input_fields(self, action: str) -> Optional[list[tuple[str, bool, str]]]:
        """`(name, optional, type)` of each top-level input field of `action`'s
        contract, in order; None for an unknown action."""
    def extra_fields_ignored(self, action: str) -> bool:
        """Whether undeclared input fields are dropped (else they break the
        contract). False for an unknown action."""
    def checks_output(self, action: str) -> bool:
        """Whether a result of `action` is checked at all (output contract,
        `after` rules or a non-allow `after` default)."""

    def decide(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Optional[Mapping[str, JsonValue]] = None,
        snapshot: Optional[Mapping[str, JsonValue]] = None,
        session: Optional[str] = None,
        time: Optional[Union[str, datetime.datetime]] = None,
        state: Optional[State] = None,
        decision_id: Optional[str] = None,
    ) -> Decision:
        """Decides a request before the action runs. A request that does not
        fit its contract is a `block` decision naming the violation; a value
        that has no JSON form raises `InputError`."""
    def decide_actra(self, input: Mapping[str, JsonValue]) -> Decision:
        """Decides Actra's request shape `{"action": {"type": ..}, "actor": .., "snapshot": ..}`."""
    def explain(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Optional[Mapping[str, JsonValue]] = None,
        snapshot: Optional[Mapping[str, JsonValue]] = None,
        session: Optional[str] = None,
        time: Optional[Union[str, datetime.datetime]] = None,
        state: Optional[State] = None,
        output: Optional[JsonValue] = None,
        error: Optional[str] = None,
    ) -> Explanation:
        """As `decide` (or `check_output` when `output` or `error` is given),
        with the trace; writes nothing to `state`."""
    def check_output(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        output: Optional[JsonValue] = None,
        *,
        error: Optional[str] = None,
        actor: Optional[Mapping[str, JsonValue]] = None,
        snapshot: Optional[Mapping[str, JsonValue]] = None,
        session: Optional[str] = None,
        time: Optional[Union[str, datetime.datetime]] = None,
        state: Optional[State] = None,
        decision_id: Optional[str] = None,
    ) -> Decision:
        """Checks an action's result (or the `error` it reported instead)
        against the output contract and `after` rules; `block` means withhold
        it. `decision_id` is the `before` decision's, so the output joins the
        session's record of that call."""
