"""The exceptions Rein raises.

Every one derives from `ReinError`. An action that did not run (or whose
result was withheld) raises a `Refused`: `Blocked` when the answer is no,
`ApprovalRequired` when a person may still say yes. They are distinct so
that code never mistakes one for the other, and both are `Refused` so that
code may catch them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from rein._native import Diagnostic

__all__ = [
    "ReinError",
    "PolicyError",
    "InputError",
    "Refused",
    "Blocked",
    "ApprovalRequired",
    "GuardError",
]


class ReinError(Exception):
    """The base of every exception Rein raises."""


class PolicyError(ReinError):
    """A policy failed to load.

    `diagnostics` holds every problem found (file, line, column, message,
    hint); `str()` renders them as the CLI does.
    """

    diagnostics: List["Diagnostic"]

    def __init__(self, message: str, diagnostics: Iterable["Diagnostic"] = ()) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics)


class InputError(ReinError, TypeError):
    """A Python value has no exact JSON form (a NaN, a naive datetime, an
    object, a dict with non-string keys...). The message names the path,
    e.g. ``input.items[2]: float nan has no JSON form``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class Refused(ReinError):
    """The action did not run, or its result was withheld.

    `decision` is the decision that refused it, when there is one (None
    when no decision could be had: the server was unreachable, a resolver
    failed); `decision_id` names it.
    """

    action: str
    decision: Optional[Any]
    decision_id: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        action: str,
        decision: Optional[Any] = None,
        decision_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.action = action
        self.decision = decision
        if decision_id is None and decision is not None:
            decision_id = getattr(decision, "decision_id", None)
        self.decision_id = decision_id

    def __reduce__(self) -> Tuple[Any, ...]:
        """Pickles (to cross a process pool): every attribute but an
        in-process `decision`, which does not pickle; its id does."""
        state = dict(self.__dict__)
        if type(state.get("decision")).__module__ == "rein._native":
            state["decision"] = None
        return (_restore, (type(self), self.args, state))


class Blocked(Refused):
    """The answer is no: a rule blocked the action or its result, the
    request broke its contract, or no decision could be had (then `reason`
    says why, and `rule` is None)."""

    rule: Optional[str]
    reason: str

    def __init__(
        self,
        reason: str,
        *,
        action: str,
        rule: Optional[str] = None,
        decision: Optional[Any] = None,
        decision_id: Optional[str] = None,
    ) -> None:
        super().__init__(
            _message("blocked", action, rule, reason),
            action=action,
            decision=decision,
            decision_id=decision_id,
        )
        self.rule = rule
        self.reason = reason

    @classmethod
    def from_decision(cls, action: str, decision: Any) -> "Blocked":
        """The exception for a `block` decision: its first deciding rule,
        its reasons joined by "; "."""
        # The rules whose own effect is the decision's: `rules` also lists
        # those that matched and allowed.
        rules: Sequence[str] = getattr(decision, "deciding_rules", None) or []
        reasons: Sequence[str] = getattr(decision, "reasons", None) or []
        return cls(
            "; ".join(reasons) or "blocked",
            action=action,
            rule=rules[0] if rules else None,
            decision=decision,
        )


class ApprovalRequired(Refused):
    """A person must approve the action first.

    `approval_id` is the pending approval to grant (None in-process: no one
    can grant an in-process decision; use `rein serve`), `roles` the roles
    its approver must hold, `expires_at` until when it can be granted.
    """

    approval_id: Optional[str]
    roles: List[str]
    expires_at: Optional[str]
    reason: str

    def __init__(
        self,
        reason: str,
        *,
        action: str,
        approval_id: Optional[str] = None,
        roles: Iterable[str] = (),
        expires_at: Optional[str] = None,
        decision: Optional[Any] = None,
        decision_id: Optional[str] = None,
    ) -> None:
        roles = list(roles)
        who = f" (approver role: {', '.join(roles)})" if roles else ""
        where = f"; approval `{approval_id}`" if approval_id else ""
        super().__init__(
            f"`{action}` needs approval{who}: {reason}{where}",
            action=action,
            decision=decision,
            decision_id=decision_id,
        )
        self.approval_id = approval_id
        self.roles = roles
        self.expires_at = expires_at
        self.reason = reason

    @classmethod
    def from_decision(cls, action: str, decision: Any) -> "ApprovalRequired":
        """The exception for a `require_approval` decision."""
        reasons: Sequence[str] = getattr(decision, "reasons", None) or []
        return cls(
            "; ".join(reasons) or "approval required",
            action=action,
            approval_id=getattr(decision, "approval_id", None),
            roles=getattr(decision, "approval_roles", None) or [],
            expires_at=getattr(decision, "approval_expires_at", None),
            decision=decision,
        )


class GuardError(ReinError, TypeError):
    """A guard's mapping mistake, found when decorating (or at the first
    call): a contract field with no parameter, a `fields=` name that is not
    a parameter or not a field, an action the policy does not know."""


def _restore(cls: "type[Refused]", args: Tuple[Any, ...], state: Dict[str, Any]) -> Refused:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


def _message(what: str, action: str, rule: Optional[str], reason: str) -> str:
    by = f" by `{rule}`" if rule else ""
    return f"`{action}` {what}{by}: {reason}"
