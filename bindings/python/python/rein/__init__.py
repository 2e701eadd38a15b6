"""Rein for Python: decide what AI agents may do, before they do it.

- `rein.Policy`: the engine in-process (load, decide, explain, check
  outputs); a `rein.Decision` per request.
- `rein.Guard`: a decorator that decides before a function runs and checks
  what it returns, raising `rein.Blocked` or `rein.ApprovalRequired`.
- `rein.Client` / `rein.AsyncClient`: the same through `rein serve`, so
  that many processes share limits, sessions, approvals and one audit log.
"""

from rein._native import (
    Decision,
    Diagnostic,
    Explanation,
    Obligation,
    Policy,
    State,
    __version__,
)
from rein.client import AsyncClient, Client, RemoteDecision
from rein.errors import (
    ApprovalRequired,
    Blocked,
    GuardError,
    InputError,
    PolicyError,
    Refused,
    ReinError,
)
from rein.guard import Call, DecisionEvent, Guard

__all__ = [
    "ApprovalRequired",
    "AsyncClient",
    "Blocked",
    "Call",
    "Client",
    "Decision",
    "DecisionEvent",
    "Diagnostic",
    "Explanation",
    "Guard",
    "GuardError",
    "InputError",
    "Obligation",
    "Policy",
    "PolicyError",
    "Refused",
    "ReinError",
    "RemoteDecision",
    "State",
    "__version__",
]
