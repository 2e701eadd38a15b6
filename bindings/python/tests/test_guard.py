"""rein.Guard over an in-process rein.Policy: the decorator's semantics.

Sync and async functions; the input built from the bound arguments and
checked against the contract at decoration; resolvers called exactly once
per call; Blocked and ApprovalRequired; results checked and withheld;
a failing function reported and re-raised; audit_only never raising
because of Rein; observers; threads. (The guard over rein serve is in
test_client.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import math
import threading
from collections import Counter
from typing import Any, Dict, List, Optional

import pytest

import rein

POLICY = r"""
version: "guard-tests"
default: block
contracts:
  actor:
    id: string
    role: {type: enum, values: [agent, admin]}
  snapshot:
    fraud: bool
  actions:
    refund:
      input:
        order_id: string
        amount: {type: number, min: 0}
        currency: string
        note: {type: string, optional: true}
      output:
        refund_id: string
    lookup:
      input:
        order_id: string
    pay:
      input:
        amount: number
    read_secret:
      input: {path: string}
    send:
      input: {to: string}
rules:
  - id: small_refund
    action: refund
    when: input.amount <= 100
    effect: allow
    reason: small refunds are routine
  - id: medium_refund
    action: refund
    when: input.amount > 100 && input.amount <= 1000
    effect: require_approval
    approval: {role: support}
    reason: medium refunds need support
  - id: large_refund
    action: refund
    when: input.amount > 1000
    effect: block
    reason: refunds over 1000 are not allowed
  - id: fraud
    action: refund
    when: snapshot.fraud
    effect: block
    reason: the account is flagged
  - id: blank_note
    action: refund
    when: has(input.note) && input.note == ""
    effect: block
    reason: a note must say something
  - id: refund_id_format
    action: refund
    phase: after
    when: '!output.refund_id.startsWith("re_")'
    effect: block
    reason: unexpected refund id
  - id: card_in_error
    action: refund
    phase: after
    when: error.contains("card")
    effect: block
    reason: the error quotes a card
  - id: lookups
    action: lookup
    effect: allow
  - id: pay_ok
    action: pay
    effect: allow
  - id: pay_rate
    action: pay
    effect: block
    limit: {count: 3, window: 1h}
    reason: at most 3 payments an hour
  - id: read_ok
    action: read_secret
    effect: allow
    labels: [secret]
  - id: send_ok
    action: send
    effect: allow
  - id: no_send_after_secret
    action: send
    when: '"secret" in session.labels'
    effect: block
    reason: nothing leaves a session that read a secret
"""

ACTOR = {"id": "bot-1", "role": "agent"}
CALM = {"fraud": False}


@pytest.fixture
def policy() -> rein.Policy:
    # One per test: guards over one policy share its state (limits, sessions).
    return rein.Policy.from_yaml(POLICY, name="guard-tests.yaml")


class Counting:
    """A resolver that counts its calls and remembers what it saw."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls: List[rein.Call] = []
        self.lock = threading.Lock()

    def __call__(self, call: rein.Call) -> Any:
        with self.lock:
            self.calls.append(call)
        return self.value


def make_refund(guard: rein.Guard, result: Any = None, **kw: Any) -> Any:
    ran: List[float] = []

    @guard.action("refund", **kw)
    def refund(order_id: str, amount: float, currency: str, note: Optional[str] = None) -> Any:
        """Refunds an order."""
        ran.append(amount)
        return result if result is not None else {"refund_id": "re_1"}

    refund.ran = ran  # type: ignore[attr-defined]
    return refund


# ---- decisions and exceptions --------------------------------------------


def test_allow_runs_block_and_approval_raise_distinct_exceptions(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    refund = make_refund(guard)
    assert refund("o1", 40, "EUR") == {"refund_id": "re_1"}

    with pytest.raises(rein.Blocked) as blocked:
        refund("o1", 5000, "EUR")
    e = blocked.value
    assert isinstance(e, rein.Refused) and not isinstance(e, rein.ApprovalRequired)
    assert e.rule == "large_refund" and e.reason == "refunds over 1000 are not allowed"
    assert e.action == "refund" and e.decision is not None and e.decision.blocked
    assert e.decision_id == e.decision.decision_id
    assert "large_refund" in str(e)

    with pytest.raises(rein.ApprovalRequired) as approval:
        refund("o1", 500, "EUR")
    a = approval.value
    assert isinstance(a, rein.Refused) and not isinstance(a, rein.Blocked)
    # In-process nobody can grant it: no id, but who would have to.
    assert a.approval_id is None and a.roles == ["support"]
    assert a.decision is not None and a.decision.requires_approval
    assert refund.ran == [40]


def test_refusals_cross_a_process_boundary(policy: rein.Policy) -> None:
    import pickle

    refund = make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM))
    for amount, kind in [(5000, rein.Blocked), (500, rein.ApprovalRequired)]:
        with pytest.raises(kind) as e:
            refund("o1", amount, "EUR")
        back = pickle.loads(pickle.dumps(e.value))
        assert type(back) is kind and str(back) == str(e.value)
        assert back.decision_id == e.value.decision_id and back.action == "refund"
        assert back.decision is None  # the in-process Decision stays in its process
        if kind is rein.Blocked:
            assert back.rule == "large_refund" and back.reason == e.value.reason
        else:
            assert back.roles == ["support"] and back.approval_id is None


def test_every_reason_and_the_first_rule_are_in_blocked(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot={"fraud": True})
    refund = make_refund(guard)
    with pytest.raises(rein.Blocked) as e:
        refund("o1", 5000, "EUR")
    assert set(e.value.decision.rules) == {"large_refund", "fraud"}
    assert e.value.rule == e.value.decision.rules[0]
    assert e.value.reason == "; ".join(e.value.decision.reasons)


def test_a_contract_violation_blocks_naming_the_field(policy: rein.Policy) -> None:
    refund = make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM))
    with pytest.raises(rein.Blocked, match="input.amount") as e:
        refund("o1", -5, "EUR")
    assert e.value.decision.violation["path"] == "input.amount"
    with pytest.raises(rein.Blocked, match="input.currency"):
        refund("o1", 5, None)
    assert refund.ran == []


def test_a_value_without_json_form_blocks_with_its_path(policy: rein.Policy) -> None:
    refund = make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM))
    with pytest.raises(rein.Blocked, match=r"input\.amount") as e:
        refund("o1", math.nan, "EUR")
    assert "JSON" in e.value.reason and e.value.decision is None
    with pytest.raises(rein.Blocked, match="input.order_id"):
        refund(object(), 5, "EUR")
    assert refund.ran == []


# ---- argument mapping ----------------------------------------------------


def test_a_renamed_parameter_is_an_error_at_decoration(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    with pytest.raises(rein.GuardError) as e:

        @guard.action("refund")
        def refund(order_id: str, amt: float, currency: str, note: Optional[str] = None) -> None: ...

    text = str(e.value)
    assert "refund" in text and "`amount`" in text and "fields=" in text
    assert isinstance(e.value, TypeError)
    # An optional field too: a rule on it would silently never fire.
    with pytest.raises(rein.GuardError, match="`note`"):

        @guard.action("refund")
        def refund2(order_id: str, amount: float, currency: str, memo: Optional[str] = None) -> None: ...


def test_fields_maps_contract_fields_to_parameters(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    seen: List[Dict[str, Any]] = []
    guard.observers.append(lambda e: seen.append(e.input))

    @guard.action("refund", fields={"amount": "amt", "note": "memo"})
    def refund(order_id: str, amt: float, currency: str, memo: Optional[str] = None, extra: int = 0) -> Any:
        return {"refund_id": "re_2"}

    assert refund("o1", 50, "EUR", memo="thanks", extra=7) == {"refund_id": "re_2"}
    assert seen[0] == {"order_id": "o1", "amount": 50, "currency": "EUR", "note": "thanks"}
    with pytest.raises(rein.Blocked, match="blank_note"):
        refund("o1", 50, "EUR", memo="")
    # An optional parameter left None is left out, not sent as null.
    refund("o1", 50, "EUR")
    assert "note" not in seen[-1]

    # `None` leaves an optional field out for a function without it.
    @guard.action("refund", fields={"note": None})
    def bare(order_id: str, amount: float, currency: str) -> Any:
        return {"refund_id": "re_3"}

    assert bare("o1", 50, "EUR") == {"refund_id": "re_3"}


@pytest.mark.parametrize(
    "fields,exclude,match",
    [
        ({"amount": "amt"}, (), "`amt`, which is not a parameter"),
        ({"amount_": "amount"}, (), "`amount_`, which is not a field"),
        ({"amount": None}, (), "requires it"),
        ({}, ("amount",), "excludes `amount`"),
        ({}, ("nope",), "no parameter `nope`"),
    ],
)
def test_mapping_mistakes_are_errors_at_decoration(
    policy: rein.Policy, fields: Dict[str, Any], exclude: Any, match: str
) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    with pytest.raises(rein.GuardError, match=match):
        guard.action("refund", fields=fields, exclude=exclude)(
            lambda order_id, amount, currency, note=None: None
        )


def test_an_unknown_action_or_a_generator_is_an_error_at_decoration(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    with pytest.raises(rein.GuardError, match="no action `refnud`"):
        guard.action("refnud")(lambda order_id: None)

    def gen(order_id: str) -> Any:
        yield order_id

    with pytest.raises(rein.GuardError, match="generator"):
        guard.action("lookup")(gen)
    with pytest.raises(rein.GuardError, match="rein.Client"):
        rein.Guard(policy, wait_for_approval=5)
    with pytest.raises(rein.GuardError):
        rein.Guard(object())  # type: ignore[arg-type]


def test_the_wrapper_keeps_the_functions_face(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    refund = make_refund(guard)
    assert refund.__name__ == "refund" and refund.__doc__ == "Refunds an order."
    assert list(inspect.signature(refund).parameters) == ["order_id", "amount", "currency", "note"]

    @guard.action("lookup")
    async def lookup(order_id: str) -> str:
        return order_id

    assert inspect.iscoroutinefunction(lookup)


def test_a_call_that_does_not_fit_the_signature_raises_its_type_error(policy: rein.Policy) -> None:
    events: List[rein.DecisionEvent] = []
    refund = make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM, observers=[events.append]))
    with pytest.raises(TypeError) as e:
        refund("o1", 40)
    assert not isinstance(e.value, rein.ReinError)
    with pytest.raises(TypeError):
        refund("o1", 40, "EUR", bogus=1)
    with pytest.raises(TypeError):
        refund("o1", 40, "EUR", None, 5)
    assert events == [] and refund.ran == []
    # Keywords in any order, defaults applied.
    assert refund(currency="EUR", amount=40, order_id="o1") == {"refund_id": "re_1"}


def test_methods_and_keyword_arguments(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)

    class Shop:
        @guard.action("refund")
        def refund(self, order_id: str, *, amount: float, currency: str = "EUR", note: Optional[str] = None) -> Any:
            return {"refund_id": "re_m"}

        @guard.action("lookup")
        def lookup(self, **kwargs: Any) -> Any:
            return kwargs["order_id"]

    shop = Shop()
    assert shop.refund("o1", amount=40) == {"refund_id": "re_m"}
    with pytest.raises(rein.Blocked):
        shop.refund("o1", amount=4000)
    assert shop.lookup(order_id="o9") == "o9"
    with pytest.raises(rein.Blocked, match="order_id"):
        shop.lookup(other="o9")


# ---- resolvers -----------------------------------------------------------


def test_each_resolver_is_called_once_per_call(policy: rein.Policy) -> None:
    actor, snapshot, session = Counting(ACTOR), Counting(CALM), Counting("run-1")
    guard = rein.Guard(policy, actor=actor, snapshot=snapshot, session=session)
    refund = make_refund(guard)
    refund("o1", 40, "EUR")  # decided, run, result checked
    with pytest.raises(rein.Blocked):
        refund("o1", 4000, "EUR")
    with pytest.raises(rein.ApprovalRequired):
        refund("o1", 400, "EUR")
    with pytest.raises(rein.Blocked):
        make_refund(guard, result={"refund_id": "bad"})("o1", 40, "EUR")
    assert len(actor.calls) == len(snapshot.calls) == len(session.calls) == 4
    call = actor.calls[0]
    assert call.action == "refund" and call.args == ("o1", 40, "EUR") and call.kwargs == {}
    assert call.input == {"order_id": "o1", "amount": 40, "currency": "EUR"}
    assert call.function is not None and call.function.__name__ == "refund"


def test_a_resolver_cannot_change_what_the_function_gets(policy: rein.Policy) -> None:
    def meddling(call: rein.Call) -> Dict[str, Any]:
        call.kwargs["amount"] = 99999
        return ACTOR

    refund = make_refund(rein.Guard(policy, actor=meddling, snapshot=CALM))
    refund(order_id="o1", amount=40, currency="EUR")
    assert refund.ran == [40]


def test_a_failing_resolver_blocks_and_names_itself(policy: rein.Policy) -> None:
    def broken(call: rein.Call) -> Dict[str, Any]:
        raise KeyError("tenant")

    for kw, name in [({"actor": broken}, "actor"), ({"snapshot": broken}, "snapshot"), ({"session": broken}, "session")]:
        args = {"actor": ACTOR, "snapshot": CALM, **kw}
        refund = make_refund(rein.Guard(policy, **args))
        with pytest.raises(rein.Blocked, match=f"resolver `{name}` failed: KeyError") as e:
            refund("o1", 40, "EUR")
        assert e.value.decision is None
        assert refund.ran == []
    wrong_type = make_refund(rein.Guard(policy, actor=lambda call: ["not", "a", "dict"], snapshot=CALM))
    with pytest.raises(rein.Blocked, match="resolver `actor` returned a list"):
        wrong_type("o1", 40, "EUR")


def test_an_async_resolver_in_a_sync_call_blocks(policy: rein.Policy) -> None:
    async def actor(call: rein.Call) -> Dict[str, Any]:
        return ACTOR

    refund = make_refund(rein.Guard(policy, actor=actor, snapshot=CALM))
    with pytest.raises(rein.Blocked, match="awaitable"):
        refund("o1", 40, "EUR")


# ---- results -------------------------------------------------------------


def test_a_blocked_result_is_withheld(policy: rein.Policy) -> None:
    refund = make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM), result={"refund_id": "xx_secret"})
    with pytest.raises(rein.Blocked) as e:
        refund("o1", 40, "EUR")
    assert e.value.rule == "refund_id_format" and "xx_secret" not in str(e.value)
    assert e.value.decision.phase == "after"
    assert refund.ran == [40]
    # A result that breaks the output contract, or has no JSON form.
    for bad in ({"refund_id": 7}, {"no_id": "re_1"}, {"refund_id": math.inf}, {"refund_id": {1, 2}}):
        with pytest.raises(rein.Blocked, match="withheld|output"):
            make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM), result=bad)("o1", 40, "EUR")


def test_results_are_converted_before_the_check(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)

    @dataclasses.dataclass
    class Receipt:
        refund_id: str

    assert make_refund(guard, result=Receipt("re_d"))("o1", 40, "EUR") == Receipt("re_d")
    with pytest.raises(rein.Blocked, match="refund_id_format"):
        make_refund(guard, result=Receipt("xx"))("o1", 40, "EUR")

    class Model:  # pydantic's shape
        def model_dump(self, mode: str = "python") -> Dict[str, Any]:
            return {"refund_id": "bad"}

    with pytest.raises(rein.Blocked, match="refund_id_format"):
        make_refund(guard, result=Model())("o1", 40, "EUR")
    # output= converts; the caller still gets the original value.
    refund = make_refund(guard, result="re_text", output=lambda v: {"refund_id": v})
    assert refund("o1", 40, "EUR") == "re_text"
    broken = make_refund(guard, result="x", output=lambda v: 1 / 0)
    with pytest.raises(rein.Blocked, match="output= failed"):
        broken("o1", 40, "EUR")


def test_an_action_whose_result_is_not_checked_returns_anything(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    events: List[rein.DecisionEvent] = []
    guard.observers.append(events.append)
    marker = object()

    @guard.action("lookup")
    def lookup(order_id: str) -> object:
        return marker

    assert lookup("o1") is marker
    assert [e.phase for e in events] == ["before"]


def test_a_failing_function_is_reported_and_reraised(policy: rein.Policy) -> None:
    events: List[rein.DecisionEvent] = []
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM, observers=[events.append])

    class ProviderDown(Exception):
        pass

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Optional[str] = None) -> Any:
        raise ProviderDown(note or "down")

    with pytest.raises(ProviderDown):
        refund("o1", 40, "EUR")
    after = events[-1]
    assert after.phase == "after" and after.error == "ProviderDown: down"
    assert after.decision is not None and after.decision.allowed
    # An error text the after rules block is withheld: Blocked, with the
    # original neither in the message nor chained.
    with pytest.raises(rein.Blocked) as e:
        refund("o1", 40, "EUR", note="card 4242 4242 4242 4242 declined")
    assert e.value.rule == "card_in_error" and "4242" not in str(e.value)
    assert e.value.__cause__ is None and e.value.__context__ is None


# ---- state ---------------------------------------------------------------


def test_guards_over_one_policy_share_its_state(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM, session="run-1")

    @guard.action("pay")
    def pay(amount: float) -> float:
        return amount

    assert [pay(1.0) for _ in range(3)] == [1.0, 1.0, 1.0]
    with pytest.raises(rein.Blocked, match="pay_rate"):
        pay(1.0)
    # A guard made afresh (per request, per task) counts the same limit:
    # the policy's shared state is every guard's default.
    again = rein.Guard(policy, actor=ACTOR, snapshot=CALM, session="run-1")
    assert again.state is policy.shared_state
    with pytest.raises(rein.Blocked, match="pay_rate"):
        again.action("pay")(lambda amount: amount)(1.0)
    # Its sessions too: a label attached through one guard is seen by another.
    rein.Guard(policy, actor=ACTOR, snapshot=CALM, session="run-2").action("read_secret")(lambda path: "k")("/etc/key")
    send = rein.Guard(policy, actor=ACTOR, snapshot=CALM, session="run-2").action("send")(lambda to: "sent")
    with pytest.raises(rein.Blocked, match="nothing leaves"):
        send("x")
    # A State given to a guard is that guard's alone.
    own = rein.Guard(policy, actor=ACTOR, snapshot=CALM, session="run-2", state=rein.State())
    assert own.action("send")(lambda to: "sent")("x") == "sent"
    # The same files loaded again are another policy, with another state.
    reloaded = rein.Policy.from_yaml(POLICY, name="guard-tests.yaml")
    assert reloaded.shared_state is not policy.shared_state
    fresh = rein.Guard(reloaded, actor=ACTOR, snapshot=CALM, session="run-1")
    assert fresh.action("pay")(lambda amount: amount)(1.0) == 1.0


# ---- audit_only ----------------------------------------------------------


def test_audit_only_never_raises_because_of_rein(policy: rein.Policy, caplog: pytest.LogCaptureFixture) -> None:
    events: List[rein.DecisionEvent] = []

    def broken_resolver(call: rein.Call) -> Dict[str, Any]:
        raise RuntimeError("directory down")

    def broken_observer(event: rein.DecisionEvent) -> None:
        raise RuntimeError("metrics down")

    guard = rein.Guard(
        policy, actor=ACTOR, snapshot=CALM, audit_only=True, observers=[events.append, broken_observer]
    )
    refund = make_refund(guard, result={"refund_id": "xx_unchecked"})
    with caplog.at_level(logging.ERROR, logger="rein"):
        assert refund("o1", 5000, "EUR") == {"refund_id": "xx_unchecked"}  # blocked before and after
        assert refund("o1", 500, "EUR") == {"refund_id": "xx_unchecked"}  # approval
        assert refund("o1", math.nan, "EUR") == {"refund_id": "xx_unchecked"}  # engine refuses the input
    assert "metrics down" in caplog.text
    assert [(e.phase, e.effect) for e in events[:2]] == [("before", "block"), ("after", "block")]
    assert events[2].effect == "require_approval" and events[2].audit_only
    assert events[-1].decision is None and "JSON" in (events[-1].error or "")

    failing = rein.Guard(policy, actor=broken_resolver, snapshot=CALM, audit_only=True, observers=[events.append])
    refund2 = make_refund(failing)
    assert refund2("o1", 40, "EUR") == {"refund_id": "re_1"}
    assert "resolver `actor` failed" in (events[-1].error or "")

    # The function's own exception is still its own.
    @guard.action("lookup")
    def lookup(order_id: str) -> None:
        raise LookupError(order_id)

    with pytest.raises(LookupError):
        lookup("o1")


def test_in_enforcing_mode_a_failing_observer_blocks(policy: rein.Policy, caplog: pytest.LogCaptureFixture) -> None:
    def broken_observer(event: rein.DecisionEvent) -> None:
        if event.phase == "after":
            raise RuntimeError("metrics down")

    refund = make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM, observers=[broken_observer]))
    with caplog.at_level(logging.ERROR, logger="rein"):
        with pytest.raises(rein.Blocked, match="observer .* failed: RuntimeError: metrics down.*withheld"):
            refund("o1", 40, "EUR")
    assert refund.ran == [40]

    def broken_before(event: rein.DecisionEvent) -> None:
        raise RuntimeError("down")

    refund2 = make_refund(rein.Guard(policy, actor=ACTOR, snapshot=CALM, observers=[broken_before]))
    with pytest.raises(rein.Blocked, match="observer"):
        refund2("o1", 40, "EUR")
    assert refund2.ran == []


def test_observers_receive_every_decision(policy: rein.Policy) -> None:
    a: List[rein.DecisionEvent] = []
    b: List[rein.DecisionEvent] = []
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM, observers=[a.append, b.append])
    refund = make_refund(guard)
    refund("o1", 40, "EUR")
    with pytest.raises(rein.Blocked):
        refund("o1", 4000, "EUR")
    assert a == b
    assert [(e.phase, e.effect) for e in a] == [("before", "allow"), ("after", "allow"), ("before", "block")]
    before, after = a[0], a[1]
    assert before.action == "refund" and before.input == {"order_id": "o1", "amount": 40, "currency": "EUR"}
    assert before.error is None and before.duration_s >= 0 and not before.audit_only
    # The result's check joins the call's decision.
    assert after.decision.phase == "after" and after.decision.decision_id == before.decision.decision_id


# ---- check / require -----------------------------------------------------


def test_check_and_require(policy: rein.Policy) -> None:
    actor = Counting(ACTOR)
    guard = rein.Guard(policy, actor=actor, snapshot=CALM)
    d = guard.check("refund", {"order_id": "o1", "amount": 4000, "currency": "EUR"})
    assert d.blocked and len(actor.calls) == 1
    assert guard.check("refund", {"order_id": "o1", "amount": 40, "currency": "EUR"}, actor={"id": "x", "role": "admin"}).allowed
    assert len(actor.calls) == 1  # overridden: not called
    with pytest.raises(rein.Blocked):
        guard.require("refund", {"order_id": "o1", "amount": 4000, "currency": "EUR"})
    with pytest.raises(rein.ApprovalRequired):
        guard.require("refund", {"order_id": "o1", "amount": 400, "currency": "EUR"})
    assert guard.require("lookup", {"order_id": "o1"}).allowed
    with pytest.raises(rein.Blocked, match="resolver `actor`"):
        guard.check("lookup", {"order_id": "o1"}, actor=["bad"])


# ---- async ---------------------------------------------------------------


def test_async_functions_and_async_resolvers(policy: rein.Policy) -> None:
    counts: Counter = Counter()

    async def actor(call: rein.Call) -> Dict[str, Any]:
        counts["actor"] += 1
        await asyncio.sleep(0)
        return ACTOR

    def snapshot(call: rein.Call) -> Dict[str, Any]:
        counts["snapshot"] += 1
        return CALM

    events: List[rein.DecisionEvent] = []
    guard = rein.Guard(policy, actor=actor, snapshot=snapshot, observers=[events.append])
    results = iter([{"refund_id": "re_a"}, {"refund_id": "bad"}])

    @guard.action("refund")
    async def refund(order_id: str, amount: float, currency: str, note: Optional[str] = None) -> Any:
        await asyncio.sleep(0)
        if note == "raise":
            raise ValueError("async failure")
        if note == "card":
            raise ValueError("card 4111 1111 1111 1111 declined")
        return next(results)

    async def main() -> None:
        assert await refund("o1", 40, "EUR") == {"refund_id": "re_a"}
        with pytest.raises(rein.Blocked, match="refund_id_format"):
            await refund("o1", 40, "EUR")
        with pytest.raises(rein.Blocked, match="large_refund"):
            await refund("o1", 4000, "EUR")
        with pytest.raises(rein.ApprovalRequired):
            await refund("o1", 400, "EUR")
        with pytest.raises(ValueError, match="async failure"):
            await refund("o1", 40, "EUR", note="raise")
        assert events[-1].phase == "after" and events[-1].error == "ValueError: async failure"
        with pytest.raises(rein.Blocked) as withheld:
            await refund("o1", 40, "EUR", note="card")
        assert withheld.value.rule == "card_in_error" and "4111" not in str(withheld.value)
        assert withheld.value.__context__ is None
        # Concurrent calls each resolve once.
        again = iter([{"refund_id": "re_c"}] * 10)
        nonlocal results
        results = again
        assert await asyncio.gather(*(refund("o1", 1, "EUR") for _ in range(10))) == [{"refund_id": "re_c"}] * 10

    asyncio.run(main())
    assert counts == {"actor": 16, "snapshot": 16}

    async def broken(call: rein.Call) -> Dict[str, Any]:
        raise RuntimeError("async resolver down")

    audit = rein.Guard(policy, actor=broken, snapshot=CALM, audit_only=True)
    enforcing = rein.Guard(policy, actor=broken, snapshot=CALM)

    async def lookup(order_id: str) -> str:
        return order_id

    async def run_both() -> None:
        assert await audit.action("lookup")(lookup)("o1") == "o1"
        with pytest.raises(rein.Blocked, match="async resolver down"):
            await enforcing.action("lookup")(lookup)("o1")
        assert (await enforcing.acheck("lookup", {"order_id": "o1"}, actor=ACTOR)).allowed
        with pytest.raises(rein.Blocked):
            await enforcing.arequire("refund", {"order_id": "o1", "amount": 4000, "currency": "EUR"}, actor=ACTOR)

    asyncio.run(run_both())


# ---- threads -------------------------------------------------------------


def test_one_guard_shared_by_eight_threads(policy: rein.Policy) -> None:
    actor = Counting(ACTOR)
    guard = rein.Guard(policy, actor=actor, snapshot=CALM)
    refund = make_refund(guard)

    @guard.action("pay")
    def pay(amount: float) -> float:
        return amount

    errors: List[BaseException] = []
    outcomes: Counter = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for n in range(200):
                amount = (i * 200 + n) % 1500
                try:
                    refund("o1", amount, "EUR")
                    got = "allow"
                except rein.ApprovalRequired:
                    got = "require_approval"
                except rein.Blocked:
                    got = "block"
                want = "allow" if amount <= 100 else "require_approval" if amount <= 1000 else "block"
                assert got == want, (amount, got)
            for _ in range(5):
                try:
                    pay(1.0)
                    with lock:
                        outcomes["paid"] += 1
                except rein.Blocked:
                    with lock:
                        outcomes["refused"] += 1
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(actor.calls) == 8 * 205
    # The limit holds exactly across threads.
    assert outcomes == {"paid": 3, "refused": 37}
