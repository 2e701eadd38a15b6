"""The exceptions Rein raises. Every one is a `ReinError`."""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["ReinError", "PolicyError", "InputError"]


class ReinError(Exception):
    """Base of everything Rein raises."""


class PolicyError(ReinError):
    """A policy failed to load.

    `diagnostics` lists every problem found (`rein.Diagnostic`: file, line,
    column, message, hint); `str(error)` renders them all as the CLI does,
    without colours.
    """

    def __init__(self, message: str, diagnostics: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.diagnostics: list[Any] = list(diagnostics)


class InputError(ReinError, TypeError):
    """A Python value with no exact JSON form (a NaN, a set, an int beyond
    64 bits, a naive datetime, a non-str dict key...). The message names
    where it is: `input.items[2]: float nan has no JSON form`."""
