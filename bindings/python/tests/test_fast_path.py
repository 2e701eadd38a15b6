"""`Policy.decide` checks the contract on the Python values in place, and
falls back to converting them to JSON when anything does not pass;
`Policy.explain` always converts. Both must answer alike on every input."""

from __future__ import annotations

import datetime
import math
import uuid

import pytest

import rein

POLICY = """\
default: allow
contracts:
  actor: {id: string, role: {type: enum, values: [agent, human]}}
  actions:
    a:
      input:
        n: {type: int, optional: true, min: 0, max: 100}
        f: {type: number, optional: true}
        s: {type: string, optional: true, max_len: 5}
        at: {type: timestamp, optional: true}
        tags: {type: list, items: string, optional: true, max_len: 2}
        m: {type: map, items: int, optional: true, min_len: 1}
        o: {type: object, optional: true, fields: {k: int}}
    loose:
      input:
        x: {type: int}
        o: {type: object, optional: true, fields: {k: int}, extra_fields: ignore}
rules:
  - {id: big, action: a, when: 'has(input.n) && input.n > 10', effect: block}
  - {id: agent, action: a, when: 'actor.role == "agent" && has(input.f) && input.f >= 1.5', effect: require_approval}
  - {id: x, action: loose, when: 'input.x == 1', effect: block}
"""

ACTOR = {"id": "a1", "role": "agent"}

CASES = [
    ("a", {}, ACTOR),
    ("a", None, ACTOR),
    ("a", {"n": 11}, ACTOR),
    ("a", {"n": 10, "f": 1.5}, ACTOR),
    ("a", {"n": 10, "f": 2}, ACTOR),
    ("a", {"n": 101}, ACTOR),
    ("a", {"n": -1}, ACTOR),
    ("a", {"n": 1.0}, ACTOR),
    ("a", {"n": True}, ACTOR),
    ("a", {"n": None, "s": None}, ACTOR),
    ("a", {"s": "abcdef"}, ACTOR),
    ("a", {"s": 5}, ACTOR),
    ("a", {"at": "2026-01-01T00:00:00Z"}, ACTOR),
    ("a", {"at": "yesterday"}, ACTOR),
    ("a", {"tags": ("x", "y")}, ACTOR),
    ("a", {"tags": ["x", "y", "z"]}, ACTOR),
    ("a", {"tags": ["x", 1]}, ACTOR),
    ("a", {"m": {}}, ACTOR),
    ("a", {"m": {"k": 1, "j": "2"}}, ACTOR),
    ("a", {"o": {"k": 1}}, ACTOR),
    ("a", {"o": {"k": 1, "z": 2}}, ACTOR),
    ("a", {"o": [1]}, ACTOR),
    ("a", {"nn": 1, "zz": 2}, ACTOR),
    ("a", [], ACTOR),
    ("a", {}, {"id": "a1", "role": "boss"}),
    ("a", {}, {"id": "a1"}),
    ("a", {}, None),
    ("b", {}, ACTOR),
    ("loose", {"x": 1, "o": {"k": 1, "y": [1, {"z": None}]}}, ACTOR),
    ("loose", {"x": 1, "y": 2}, ACTOR),
    ("loose", {"x": 2}, ACTOR),
    ("loose", {}, ACTOR),
]


@pytest.fixture(scope="module")
def policy() -> rein.Policy:
    return rein.Policy.from_yaml(POLICY)


@pytest.mark.parametrize("action,input,actor", CASES)
def test_decide_answers_as_the_json_path(policy: rein.Policy, action, input, actor) -> None:
    d = policy.decide(action, input, actor=actor)
    e = policy.explain(action, input, actor=actor).decision
    assert (d.effect, d.rules, d.reasons, d.violation) == (e.effect, e.rules, e.reasons, e.violation)


def test_an_ignored_field_must_still_have_a_json_form(policy: rein.Policy) -> None:
    o = {"k": 1}
    assert policy.decide("loose", {"x": 1, "o": o}).blocked
    with pytest.raises(rein.InputError, match=r"^input\.o\.y\[1\]: float nan has no JSON form"):
        policy.decide("loose", {"x": 1, "o": {**o, "y": [1, math.nan]}})
    with pytest.raises(rein.InputError, match=r"^input\.o\.y: a datetime without a time zone"):
        policy.decide("loose", {"x": 1, "o": {**o, "y": datetime.datetime(2026, 1, 1)}})
    with pytest.raises(rein.InputError, match=r"^input\.o: a dict key of type `int`"):
        policy.decide("loose", {"x": 1, "o": {**o, 2: 3}})


def test_a_datetime_is_read_through_the_json_path(policy: rein.Policy) -> None:
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    d = policy.decide("a", {"at": at, "n": 11}, actor=ACTOR)
    assert d.blocked and d.rules == ["big"]


def test_a_decision_id_is_made_once_and_kept(policy: rein.Policy) -> None:
    d = policy.decide("a", {}, actor=ACTOR)
    first = d.decision_id
    assert uuid.UUID(first).version == 7
    assert d.decision_id == first and d.to_dict()["decision_id"] == first and first in repr(d)
    assert policy.decide("a", {}, actor=ACTOR).decision_id != first
    assert policy.decide("a", {}, actor=ACTOR, decision_id="mine").decision_id == "mine"


CHAIN_POLICY = """\
default: block
contracts:
  actor: {id: string}
  actions:
    a: {input: {}}
rules:
  - {id: alice, action: a, when: 'actor.chain.exists(l, l.kind == "user" && l.id == "alice")', effect: allow}
  - {id: deep, action: a, when: 'size(actor.chain) > 2', effect: block}
"""

ALICE = {"kind": "user", "id": "alice"}


@pytest.mark.parametrize(
    "chain,effect,violation",
    [
        ([ALICE], "allow", None),
        ((ALICE, {"kind": "agent", "id": "bot"}), "allow", None),
        ([ALICE, ALICE, ALICE], "block", None),
        ([{"kind": "user", "id": "bob"}], "block", None),
        (None, "block", None),
        ([], "block", None),
        ("user:alice", "block", "actor.chain"),
        ([ALICE, {"kind": "agent", "id": 7}], "block", "actor.chain[1].id"),
        ([{**ALICE, "admin": True}], "block", "actor.chain[0].admin"),
        ([ALICE, "agent:bot"], "block", "actor.chain[1]"),
    ],
)
def test_the_reserved_chain_is_read_in_place_as_through_json(chain, effect, violation) -> None:
    """`actor.chain` (absent or None: empty) under an actor contract that
    does not name it: read in place as through JSON, and a chain that does
    not fit its type names the link."""
    policy = rein.Policy.from_yaml(CHAIN_POLICY)
    actor = {"id": "bot", "chain": chain}
    d = policy.decide("a", {}, actor=actor)
    e = policy.explain("a", {}, actor=actor).decision
    assert (d.effect, d.rules, d.reasons, d.violation) == (e.effect, e.rules, e.reasons, e.violation)
    assert d.effect == effect
    assert (d.violation or {}).get("path") == violation
