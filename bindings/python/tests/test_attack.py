"""The Python SDK attacked: what an agent (its arguments, its tools'
results) or something answering the client in place of `rein serve` can
do to make a guarded call run without an allow, a refused result reach its
caller, or the SDK hang, blow up or fail open.

Each test names the hole it closes (or the attack it shows fails)."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from typing import Any, Callable, List

import pytest

import rein
from rein.client import to_json_value

from test_guard import ACTOR, CALM, POLICY


@pytest.fixture
def policy() -> rein.Policy:
    # One per test: guards over one policy share its state (limits, sessions).
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


# ---- the guard's configuration ---------------------------------------------


@pytest.mark.parametrize("flag", ["false", "False", "0", "no", 0, 1, None, [], "true"])
def test_audit_only_takes_a_bool_only(policy: rein.Policy, flag: Any) -> None:
    """Hole: `audit_only=os.environ.get("REIN_AUDIT_ONLY", "false")` turned
    enforcement off (`bool("false")` is True). Anything but a bool is a
    GuardError, so a setting read as text cannot switch enforcement off."""
    with pytest.raises(rein.GuardError, match="audit_only"):
        rein.Guard(policy, audit_only=flag)


def test_audit_only_bools_still_work(policy: rein.Policy) -> None:
    assert rein.Guard(policy, audit_only=True).audit_only is True
    assert rein.Guard(policy, audit_only=False).audit_only is False
    assert rein.Guard(policy).audit_only is False


def test_a_parameter_named_as_a_mapped_field_is_a_guard_error(policy: rein.Policy) -> None:
    """Hole: with fields={"amount": "amount_eur"} on a function that also
    has a parameter `amount`, the decision read `amount_eur` while the body
    could pay `amount`, which no rule saw. Ambiguous: a GuardError."""
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    with pytest.raises(rein.GuardError, match="amount"):

        @guard.action("refund", fields={"amount": "amount_eur"})
        def refund(order_id: str, amount: float, currency: str, amount_eur: float = 0, note: Any = None) -> dict:
            return {"refund_id": "re_1"}

    # Mapped away, with no parameter of the field's name: fine.
    @guard.action("refund", fields={"amount": "amount_eur"})
    def refund2(order_id: str, amount_eur: float, currency: str, note: Any = None) -> dict:
        return {"refund_id": "re_1"}

    assert refund2("o", 5, "EUR") == {"refund_id": "re_1"}
    with pytest.raises(rein.Blocked):
        refund2("o", 5000, "EUR")


# ---- what the guarded function raises or returns ----------------------------


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def test_an_exception_that_cannot_be_printed_is_still_checked(policy: rein.Policy) -> None:
    """Hole: a function's exception whose `str()` raised skipped the check
    of the result (the after phase never ran, no outcome was recorded) and
    surfaced as the RuntimeError of its `__str__`. Now it is checked (as
    its type's name) and re-raised as itself."""
    events: List[rein.DecisionEvent] = []
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM, observers=[events.append])

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> dict:
        raise _Unprintable()

    with pytest.raises(_Unprintable):
        refund("o", 5, "EUR")
    assert [e.phase for e in events] == ["before", "after"]
    assert events[1].decision is not None and "_Unprintable" in (events[1].error or "")


def test_a_resolver_whose_exception_cannot_be_printed_blocks(policy: rein.Policy) -> None:
    ran: List[Any] = []

    def actor(call: rein.Call) -> dict:
        raise _Unprintable()

    guard = rein.Guard(policy, actor=actor, snapshot=CALM)

    @guard.action("lookup")
    def lookup(order_id: str) -> dict:
        ran.append(1)
        return {}

    with pytest.raises(rein.Blocked, match="_Unprintable"):
        lookup("o")
    assert ran == []


# ---- a process answering the client instead of rein serve -----------------


class _FakeServer:
    """A loopback TCP server that answers each connection with `handler`
    (given the socket, after reading the request head)."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.handler = handler
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            self.handler(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


ALLOW = (
    b'{"decision_id":"d1","effect":"allow","phase":"before","rules":["r"],"matched":[],'
    b'"reasons":[],"audit_seq":1,"policy_version":"v"}'
)


def _trickle(conn: socket.socket) -> None:
    """Headers at once, then a body of a byte every 0.2 s: each read is
    well within a 1 s timeout, the whole answer never."""
    body = ALLOW + b" " * 10_000
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(len(body)):
        conn.sendall(body[i : i + 1])
        time.sleep(0.2)


def _huge(conn: socket.socket) -> None:
    """A 200 whose body never ends (chunks of spaces)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    for _ in range(100_000):  # 6.5 GB
        conn.sendall(frame)


def test_a_server_answering_a_byte_at_a_time_is_blocked_within_the_timeout() -> None:
    """Hole: httpx's timeout bounds each read, not the call: an answer
    trickling a byte at a time held the guarded call for ever (here 10,000
    bytes at 0.2 s each: 33 minutes). `timeout` now bounds the whole call."""
    server = _FakeServer(_trickle)
    try:
        client = rein.Client(server.url, token="t", timeout=1.0)
        started = time.perf_counter()
        with pytest.raises(rein.Blocked, match="within"):
            client.decide("refund", {"amount": 1})
        assert time.perf_counter() - started < 4
        # An outage: fail_open covers it (documented), but only when asked.
        assert client.decide("refund", {"amount": 1}, fail_open=True).degraded
    finally:
        server.close()


def test_an_async_client_answered_a_byte_at_a_time_is_blocked_within_the_timeout() -> None:
    server = _FakeServer(_trickle)

    async def main() -> None:
        async with rein.AsyncClient(server.url, token="t", timeout=1.0) as client:
            started = time.perf_counter()
            with pytest.raises(rein.Blocked, match="within"):
                await client.decide("refund", {"amount": 1})
            assert time.perf_counter() - started < 4

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_a_server_sending_an_endless_body_is_blocked_without_reading_it_all() -> None:
    """Hole: the whole answer was read into memory, however large."""
    server = _FakeServer(_huge)
    try:
        client = rein.Client(server.url, token="t", timeout=30.0)
        started = time.perf_counter()
        with pytest.raises(rein.Blocked, match="larger than"):
            client.decide("refund", {"amount": 1})
        assert time.perf_counter() - started < 10
        with pytest.raises(rein.ReinError, match="larger than"):
            client.approval("a1")
    finally:
        server.close()


def test_an_async_client_sent_an_endless_body_is_blocked() -> None:
    server = _FakeServer(_huge)

    async def main() -> None:
        async with rein.AsyncClient(server.url, token="t", timeout=30.0) as client:
            with pytest.raises(rein.Blocked, match="larger than"):
                await client.decide("refund", {"amount": 1})

    try:
        asyncio.run(main())
    finally:
        server.close()


def _redirect(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/v1/decide\r\nContent-Length: 0\r\n\r\n")


def test_a_redirect_is_not_followed_and_is_no_outage() -> None:
    """A 3xx is not followed (the token would go with it) and is not an
    outage: fail_open does not turn it into an allow."""
    server = _FakeServer(_redirect)
    try:
        client = rein.Client(server.url, token="t", timeout=2.0)
        for fail_open in (False, True):
            with pytest.raises(rein.Blocked, match="307"):
                client.decide("refund", {"amount": 1}, fail_open=fail_open)
    finally:
        server.close()


@pytest.mark.parametrize("flag", ["false", "0", 1, None])
def test_fail_open_takes_a_bool_only(flag: Any) -> None:
    """Hole: `fail_open="false"` (a setting read as text) failed open. A
    non-bool is refused before anything is sent."""
    client = rein.Client("http://127.0.0.1:1", token="t", timeout=0.5)
    with pytest.raises(rein.Blocked):
        client.decide("refund", {"amount": 1})
    with pytest.raises(TypeError, match="fail_open"):
        client.decide("refund", {"amount": 1}, fail_open=flag)
    with pytest.raises(TypeError, match="fail_open"):
        client.outcome("d1", {"refund_id": "x"}, fail_open=flag)


# ---- observers ------------------------------------------------------------


def _mock_server(outcome_effect: str) -> rein.Client:
    """A Client over a mock `rein serve`: decide allows, outcome answers
    `outcome_effect`."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/decide":
            body = {"decision_id": "d1", "effect": "allow", "phase": "before", "audit_seq": 1}
        else:
            body = {
                "decision_id": "d1",
                "effect": outcome_effect,
                "phase": "after",
                "audit_seq": 2,
                "reasons": ["withheld"],
                "matched": [{"id": "no_leak", "effect": outcome_effect}],
            }
        return httpx.Response(200, json=body)

    return rein.Client("http://rein.test", token="t", transport=httpx.MockTransport(handler))


def _forger(event: rein.DecisionEvent) -> None:
    """An observer that rewrites what it is shown (raising AttributeError
    when the decision is read-only)."""
    if event.decision is not None:
        event.decision.effect = "allow"


def _quiet_forger(event: rein.DecisionEvent) -> None:
    """`_forger`, which does not fail the call when it cannot forge."""
    try:
        _forger(event)
    except AttributeError:
        pass


def test_an_observer_that_rewrites_the_decision_cannot_release_a_withheld_result() -> None:
    """Hole: the guard read the outcome's effect after the observers had
    seen (and could rewrite) the decision: a RemoteDecision's `effect` set
    to allow by an observer released a result the server withheld."""
    guard = rein.Guard(_mock_server("block"), observers=[_quiet_forger])

    @guard.action("lookup")
    def lookup(order_id: str) -> dict:
        return {"secret": "s3cr3t"}

    with pytest.raises(rein.Blocked, match="withheld"):
        lookup("o")


def test_an_observer_that_rewrites_the_decision_cannot_release_it_async() -> None:
    guard = rein.Guard(_mock_server("block"), observers=[_quiet_forger])

    @guard.action("lookup")
    async def lookup(order_id: str) -> dict:
        return {"secret": "s3cr3t"}

    with pytest.raises(rein.Blocked, match="withheld"):
        asyncio.run(lookup("o"))


def test_limits_hold_under_threads(policy: rein.Policy) -> None:
    """8 threads racing for a limit of 3 an hour: exactly 3 run."""
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    ran: List[float] = []

    @guard.action("pay")
    def pay(amount: float) -> None:
        ran.append(amount)

    outcomes: List[str] = []

    def worker() -> None:
        for _ in range(5):
            try:
                pay(1)
                outcomes.append("ran")
            except rein.Blocked:
                outcomes.append("blocked")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ran") == 3 and len(ran) == 3 and outcomes.count("blocked") == 37


def test_require_is_not_fooled_by_an_observer_either() -> None:
    """`require` reads the decision after `check` showed it to the
    observers: a decision is read-only, so nothing they do changes it."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"decision_id": "d1", "effect": "block", "phase": "before", "audit_seq": 1, "reasons": ["no"]}
        )

    client = rein.Client("http://rein.test", token="t", transport=httpx.MockTransport(handler))
    seen: List[str] = []

    def forger(event: rein.DecisionEvent) -> None:
        try:
            _forger(event)
        except AttributeError as e:
            seen.append(str(e))

    guard = rein.Guard(client, observers=[forger])
    with pytest.raises(rein.Blocked):
        guard.require("lookup", {"order_id": "o"})
    assert seen and "read-only" in seen[0]
    d = client.decide("lookup", {"order_id": "o"})
    with pytest.raises(AttributeError):
        del d.effect
    import pickle

    back = pickle.loads(pickle.dumps(d))
    assert back.effect == "block" and back.decision_id == "d1" and back.reasons == ["no"]


# ---- what is decorated ------------------------------------------------------


def test_an_async_staticmethod_and_an_async_callable_object_are_guarded_as_async(policy: rein.Policy) -> None:
    """Hole: `@guard.action` above `@staticmethod` on an async function, or
    on an object whose `__call__` is async, was taken for a sync function:
    the guard returned an un-run coroutine (its result unchecked; here
    blocked only because the policy checks it), and the static method was
    given `self` when called on an instance."""
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)
    ran: List[float] = []

    class Tools:
        @guard.action("refund")
        @staticmethod
        async def refund(order_id: str, amount: float, currency: str, note: Any = None) -> dict:
            ran.append(amount)
            return {"refund_id": "re_1"}

        @guard.action("lookup")
        @staticmethod
        def lookup(order_id: str) -> dict:
            ran.append(0)
            return {"order_id": order_id}

    class AsyncTool:
        async def __call__(self, order_id: str, amount: float, currency: str, note: Any = None) -> dict:
            ran.append(amount)
            return {"refund_id": "re_2"}

    tool = guard.action("refund")(AsyncTool())
    assert inspect.iscoroutinefunction(Tools.refund) and inspect.iscoroutinefunction(tool)

    async def main() -> None:
        assert await Tools.refund("o", 5, "EUR") == {"refund_id": "re_1"}
        assert await Tools().refund("o", 6, "EUR") == {"refund_id": "re_1"}
        assert await tool("o", 7, "EUR") == {"refund_id": "re_2"}
        for call in (Tools.refund, tool):
            with pytest.raises(rein.Blocked, match="large_refund"):
                await call("o", 5000, "EUR")

    asyncio.run(main())
    assert Tools().lookup("o") == {"order_id": "o"}
    assert ran == [5, 6, 7, 0]


def test_a_generator_behind_a_callable_object_is_refused(policy: rein.Policy) -> None:
    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM)

    class Rows:
        def __call__(self, order_id: str):  # type: ignore[no-untyped-def]
            yield order_id

    with pytest.raises(rein.GuardError, match="generator"):
        guard.action("lookup")(Rows())
    with pytest.raises(rein.GuardError, match="generator"):
        guard.action("lookup")(staticmethod(Rows().__call__))


def test_an_observer_that_redacts_the_input_does_not_change_what_is_checked(policy: rein.Policy) -> None:
    """Hole: observers were given the input dict the guard checks the
    result with (and, through a client, decides again with once an approval
    is granted): a logging observer redacting a field changed the request
    of the after phase."""
    seen: List[Any] = []

    def redact(event: rein.DecisionEvent) -> None:
        seen.append((event.phase, dict(event.input or {})))
        if event.input is not None:
            event.input["note"] = "***"
            event.input["amount"] = 0

    guard = rein.Guard(policy, actor=ACTOR, snapshot=CALM, observers=[redact])

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> dict:
        return {"refund_id": "re_1"}

    assert refund("o", 50, "EUR", note="card 4111") == {"refund_id": "re_1"}
    assert [phase for phase, _ in seen] == ["before", "after"]
    assert seen[1][1] == {"order_id": "o", "amount": 50, "currency": "EUR", "note": "card 4111"}
