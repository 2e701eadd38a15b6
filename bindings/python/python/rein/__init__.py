"""Rein for Python."""
from rein._native import (
    Decision,
    Diagnostic,
    Explanation,
    Obligation,
    Policy,
    State,
    __version__,
)
from rein.errors import InputError, PolicyError, ReinError

__all__ = [
    "Decision",
    "Diagnostic",
    "Explanation",
    "InputError",
    "Obligation",
    "Policy",
    "PolicyError",
    "ReinError",
    "State",
    "__version__",
]
