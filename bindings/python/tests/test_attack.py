"""The Python SDK attacked: what an agent (its arguments, its tools'
results) or something answering the client in place of `rein serve` can
do to make a guarded call run without an allow, a refused result reach its
caller, or the SDK hang, blow up or fail open.

Each test names the hole it closes (or the attack it shows fails)."""

from __future__ import annotations

import time
from typing import Any, List

import pytest

import rein
from rein.client import to_json_value

from test_guard import ACTOR, CALM, POLICY


@pytest.fixture(scope="module")
def policy() -> rein.Policy:
    return rein.Policy.from_yaml(POLICY, name="attack-tests.yaml")


def _dag(levels: int) -> list:
    """A list `levels` deep whose every level holds the one below twice:
    2**levels leaves, each reached by another path, but only `levels`
    objects. Under any depth bound, and exponential to walk."""
    node: list = []
    for _ in range(levels):
        node = [node, node]
    return node


# ---- values the agent passes ----------------------------------------------


def test_a_value_shared_many_times_is_refused_quickly_not_walked_for_ever(policy: rein.Policy) -> None:
    """Hole: a list holding the one below twice, 40 levels deep, has 2**40
    leaves: conversion ran until memory ran out (the process was killed).
    Now a value past a total number of values is an InputError, quickly."""
    started = time.perf_counter()
    with pytest.raises(rein.InputError, match="values"):
        policy.decide("refund", {"order_id": "o", "amount": 1, "currency": "EUR", "x": _dag(40)})
    with pytest.raises(rein.InputError, match="values"):
        policy.decide("refund", {"order_id": "o", "amount": 1, "currency": "EUR"}, actor={"x": _dag(40)})
    with pytest.raises(rein.InputError, match="values"):
        policy.check_output("refund", {"order_id": "o", "amount": 1, "currency": "EUR"}, {"r": _dag(40)})
    # A dict version of the same trick.
    node: dict = {}
    for _ in range(40):
        node = {"a": node, "b": node}
    with pytest.raises(rein.InputError, match="values"):
        policy.decide("refund", node)
    assert time.perf_counter() - started < 10


def test_the_client_refuses_a_value_shared_many_times_quickly() -> None:
    """The same hole in the client's own conversion (before any request)."""
    started = time.perf_counter()
    with pytest.raises(rein.InputError, match="values"):
        to_json_value({"x": _dag(40)}, "input")
    assert time.perf_counter() - started < 10


def test_a_large_but_honest_value_still_converts(policy: rein.Policy) -> None:
    """The bound on values is far above real arguments and results."""
    rows = [{"id": i, "name": f"n{i}", "ok": True} for i in range(50_000)]
    # Converted (no InputError), then decided: the output contract has no
    # `rows`, which is the engine's answer, not the converter's.
    d = policy.check_output(
        "refund", {"order_id": "o", "amount": 1, "currency": "EUR"}, {"refund_id": "re_1", "rows": rows},
        actor=ACTOR, snapshot=CALM,
    )
    assert "rows" in " ".join(d.reasons) and "values" not in " ".join(d.reasons)
    assert len(to_json_value({"rows": rows})["rows"]) == 50_000


def test_a_guarded_call_with_a_value_shared_many_times_is_blocked_and_does_not_run(policy: rein.Policy) -> None:
    ran: List[Any] = []
    guard = rein.Guard(policy, actor=ACTOR, snapshot=lambda call: {"fraud": False, "x": _dag(40)})

    @guard.action("lookup")
    def lookup(order_id: str) -> dict:
        ran.append(order_id)
        return {}

    with pytest.raises(rein.Blocked, match="values"):
        lookup("o")
    assert ran == []
