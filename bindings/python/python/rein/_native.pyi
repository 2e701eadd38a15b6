"""The engine, compiled from Rust (`bindings/python/src`).

Everything here is also exported from `rein`; import it from there.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Mapping, NoReturn, Optional, Union

__version__: str
"""The package's version."""

JsonValue = Any
"""A value that converts to JSON exactly: None, bool, int, float (finite),
str, list/tuple of these, dict with str keys of these. A `datetime` with a
time zone converts to its RFC 3339 text; anything else is an `InputError`."""

class Diagnostic:
    """One problem found while loading a policy."""

    severity: str
    """`"error"` or `"warning"`."""
    file: Optional[str]
    """The file, as it was named when loading; None for a problem with no
    file (an empty file list, an unreadable path)."""
    line: Optional[int]
    """1-based; None when the problem has no place in a file."""
    column: Optional[int]
    """1-based, in characters."""
    message: str
    """What is wrong."""
    hint: Optional[str]
    """What to do instead, if the loader knows."""
    def __str__(self) -> str:
        """Rendered as the CLI renders it (no colours): place, message, the
        source line with the span marked, the hint."""
    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON form `rein validate --format json` prints: `severity`,
        `message`, and `file`, `line`, `column`, `help` when known."""

class Obligation:
    """What a `require_approval` decision asks for."""

    rule: str
    """The rule that asked."""
    role: str
    """The role its approver must hold."""
    ttl_seconds: Optional[int]
    """How long a grant holds, in seconds (None: the server's default)."""

class Decision:
    """The answer to one request. Immutable."""

    decision_id: str
    """A fresh UUID v7 per decision, or the `decision_id` given to `decide`
    (what the audit log or a rein serve would call it; in-process it names
    the decision for observers and exceptions, and with a `State` it is the
    id the decision's writes are recorded under)."""
    effect: str
    """`"allow"`, `"block"` or `"require_approval"`."""
    allowed: bool
    """`effect == "allow"`."""
    blocked: bool
    """`effect == "block"`."""
    requires_approval: bool
    """`effect == "require_approval"`."""
    phase: str
    """`"before"` or `"after"`."""
    rules: list[str]
    """Every rule whose condition held, in policy order (the CLI's `rules`):
    also rules that allowed when the effect is `block`."""
    deciding_rules: list[str]
    """The matched rules whose own effect is the decision's (empty when the
    decision rests on the default, the contract or an error)."""
    reasons: list[str]
    """Why: the reason of each deciding rule (a limit's use before it), or
    the default, the contract violation or the evaluation error."""
    default_applied: bool
    """No rule matched; the policy's default decided."""
    obligations: list[Obligation]
    """One per rule that asked for approval (empty unless
    `require_approval`)."""
    approval_roles: list[str]
    """Every role an approver must hold, without repeats (empty unless
    `require_approval`)."""
    labels: list[str]
    """Session labels the matched rules attach (sorted, no repeats)."""
    violation: Optional[dict[str, str]]
    """`{"path": ..., "message": ...}` when the request broke its contract."""
    errors: list[dict[str, str]]
    """`{"rule": ..., "message": ...}` per rule whose condition could not be
    evaluated (the decision is then `block`)."""
    retry_after_seconds: Optional[int]
    """For a refusal by limits only: whole seconds until they leave room."""
    policy_version: str
    """The hash of the policy that decided."""
    policy_version_label: Optional[str]
    """The `version` its author wrote, if any."""
    def to_dict(self) -> dict[str, JsonValue]:
        """Exactly `rein check`'s JSON for this decision (plus `decision_id`)."""
    def __bool__(self) -> NoReturn:
        """Raises `TypeError`: `if decision:` would read any decision as
        allowed. Test `.allowed` (or `.blocked`, `.requires_approval`)."""

class Explanation:
    """A decision with the trace of every rule considered."""

    decision: Decision
    """The decision (with a fresh `decision_id`; nothing was recorded)."""
    rules: list[dict[str, JsonValue]]
    """One per rule considered, in policy order: `id`, `effect`,
    `condition` (its source text, None for none), `outcome`
    (`{"result": "matched" | "not_matched" | "error", "error": ...}`) and
    `steps` (`[{"expr": ..., "value": ...}]`, each sub-expression's value).
    Empty when the request broke its contract."""
    def to_dict(self) -> dict[str, JsonValue]:
        """`rein explain --json`'s form: `{"decision": ..., "rules": ...}`
        (the decision without `decision_id`)."""
    def __str__(self) -> str:
        """The text `rein explain` prints."""

class State:
    """Limits and sessions kept in memory for in-process decisions (what
    `rein check --state` keeps in a file). Thread-safe; share one per process
    (a decision reads it, decides and records what it writes atomically, so
    two threads cannot both take a limit's last unit).
    Without a State, a decision whose rules read state is `block`.

    A decision with a State records its final effect as its own (nobody can
    grant an approval in-process): an allowed call takes its limit units and
    attaches its labels; every call of a session whose calls rules read is
    recorded. Uses older than the longest window of the policies that used
    it, and sessions idle for 24 h, are dropped (checked once a minute)."""

    def __init__(self) -> None:
        """An empty state; sensitive values are hashed with a random key."""
    def to_json(self) -> str:
        """The state as `rein check --state` saves it, JSON text. It holds
        the key sensitive values are hashed with: keep it private."""
    @staticmethod
    def from_json(text: str) -> State:
        """A state saved by `to_json` or by `rein check --state`; raises
        `ReinError` when the text is not one."""

class Policy:
    """A loaded, type-checked policy. Immutable and safe to share across
    threads. Loading, explaining, deciding with a `State` and deciding an
    action with many rules release the GIL (a decision of a few
    microseconds keeps it: handing the GIL to a waiting thread and back
    costs more than it gains)."""

    @staticmethod
    def load(
        *paths: Union[str, os.PathLike[str]],
        governance: Optional[Union[str, os.PathLike[str]]] = None,
    ) -> Policy:
        """Loads and merges policy files or folders (all `.yaml`/`.yml` below,
        except `*.test.yaml`), as `rein check` does, with `governance` (an
        Actra governance file) enforced on their rules. Raises `PolicyError`
        carrying every diagnostic."""
    @staticmethod
    def from_yaml(text: str, *, name: str = "<string>") -> Policy:
        """One native policy from text; `name` is the file name messages use.
        Raises `PolicyError`."""
    @staticmethod
    def load_actra(
        schema: Union[str, os.PathLike[str]],
        policy: Union[str, os.PathLike[str]],
        governance: Optional[Union[str, os.PathLike[str]]] = None,
    ) -> Policy:
        """Actra's schema, policy and governance files, unchanged, decided
        with Actra's semantics (first match, then global rules, then allow).
        Decide with `decide_actra`. Raises `PolicyError`."""
    @staticmethod
    def from_actra(schema: str, policy: str, governance: Optional[str] = None) -> Policy:
        """Actra's files as text (named `schema.yaml`, `policy.yaml`,
        `governance.yaml` in diagnostics)."""

    version: str
    """A hash of the policy's sources, in every decision."""
    version_label: Optional[str]
    """The `version` its author wrote, if any."""
    actions: list[str]
    """The actions with contracts."""
    rule_count: int
    """Number of rules."""
    uses_state: bool
    """Whether some decision reads or writes state (limits, sessions): give
    those a `State`."""
    warnings: list[Diagnostic]
    """Warnings found while loading (the policy loaded)."""
    shared_state: State
    """The `State` every `rein.Guard` over this policy uses when it is given
    none: one per loaded policy, made on first use, so that guards made per
    request or per task still count the same limits and sessions. Loading
    the files again gives another policy with another state."""

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
        """Decides a request before the action runs, as `rein check` does
        (with `state`, as `rein check --state`). A request that does not
        fit its contract is a `block` decision naming the violation; a value
        that has no JSON form raises `InputError`. `time` (RFC 3339 text or
        a datetime with a time zone) is what `now` reads, the current time
        by default. A text argument that is not a `str` raises `InputError`
        too. The GIL is released while the engine decides, when the action
        has enough rules to gain from it (or `state` is given)."""
    def decide_actra(self, input: Mapping[str, JsonValue]) -> Decision:
        """Decides Actra's request shape `{"action": {"type": ..}, "actor": .., "snapshot": ..}`
        (what `rein check --actra-schema` reads)."""
    def explain_actra(self, input: Mapping[str, JsonValue]) -> Explanation:
        """`decide_actra` with the trace, as `rein explain --actra-schema`."""
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
        with the trace of every rule, as `rein explain` gives it; reads
        `state` but writes nothing to it."""
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
        it. `output=None` is no output: for an action with an output
        contract that breaks it (block), unless `error` says why there is
        none. `decision_id` is the `before` decision's, so the output joins
        the session's record of that call (with `state`)."""
