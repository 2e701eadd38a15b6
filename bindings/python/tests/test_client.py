"""rein.Client and rein.AsyncClient against a real `rein serve` started by
the test (a subprocess on a free loopback port, its own folder), the guard
over a client, and the client failing closed: a dead server, a server
killed mid-test, a server that never answers, a bad token, a 5xx, an answer
that is not a decision."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import httpx
import pytest

import rein
from _server import AGENT, AGENT2, ALICE, Server, free_port

SNAPSHOT = {"fraud_flag": False, "refunds_today": 0, "account_age_days": 400}
ACTOR = {"id": "bot-1", "role": "agent"}

LIMITED = """
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input:
        amount: {type: number, min: 0}
    read_secret:
      input: {path: string}
    send:
      input: {to: string}
rules:
  - id: pay_rate
    action: pay
    effect: block
    limit: {count: 3, window: 1h}
    reason: at most 3 payments an hour
  - id: secret_read
    action: read_secret
    effect: allow
    labels: [secret]
  - id: no_send_after_secret
    action: send
    when: '"secret" in session.labels'
    effect: block
    reason: nothing leaves a session that read a secret
"""


def refund_input(amount: float) -> Dict[str, Any]:
    return {"order_id": "ord_abc123", "amount": amount, "currency": "EUR"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "serve").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "limited", LIMITED).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[rein.Client]:
    # Generous: the machine may be busy; the timeout tests set their own.
    with rein.Client(server.url, AGENT, timeout=30) as c:
        yield c


def grant_when_pending(server: Server, action: str, *, deny: bool = False, timeout: float = 15.0) -> threading.Thread:
    """A person, in another thread: waits for a pending approval of
    `action`, then grants (or denies) it through the HTTP API."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = server.call("GET", "/v1/approvals?state=pending", ALICE)
            pending = [a for a in r.json()["approvals"] if a["action"] == action]
            if pending:
                (server.deny if deny else server.grant)(pending[0]["id"])
                return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ---- decide, outcome, explain, approvals ---------------------------------


def test_decide_gives_the_three_effects_recorded(server: Server, client: rein.Client) -> None:
    allow = client.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
    assert allow.effect == "allow" and allow.allowed and not allow.blocked
    assert allow.rules == ["small_refund"]
    assert allow.reasons == ["refunds up to 100 are routine"]
    assert allow.phase == "before"
    assert allow.policy_version_label == "2026-11-24.1"
    # Record 1 is the server's activation of its policy at start.
    assert allow.audit_seq == 2 and not allow.degraded

    block = client.decide("refund", refund_input(5000), actor=ACTOR, snapshot=SNAPSHOT)
    assert block.blocked and block.rules == ["large_refund"]
    assert "need an admin" in block.reasons[0]

    pending = client.decide("refund", refund_input(500), actor=ACTOR, snapshot=SNAPSHOT)
    assert pending.requires_approval
    assert pending.approval_id and pending.approval_roles == ["support"]
    assert pending.approval_expires_at
    with pytest.raises(TypeError):
        bool(pending)

    ids = [r["decision_id"] for r in server.audit()]
    assert [allow.decision_id, block.decision_id, pending.decision_id] == ids


def test_blocked_names_the_rule_that_decided_not_one_that_allowed(client: rein.Client) -> None:
    d = client.decide("refund", {**refund_input(40), "note": "  "}, actor=ACTOR, snapshot=SNAPSHOT)
    assert d.rules == ["small_refund", "no_blank_note_on_refund"]
    assert d.deciding_rules == ["no_blank_note_on_refund"]
    assert d.matched[0] == {"id": "small_refund", "effect": "allow", "reason": "refunds up to 100 are routine"}
    ran: List[float] = []
    with pytest.raises(rein.Blocked) as e:
        guarded_refund(client, ran)("ord_abc123", 40, "EUR", note="  ")
    assert e.value.rule == "no_blank_note_on_refund" and ran == []
    assert e.value.reason == "a note, when given, must say something"


def test_a_request_that_breaks_its_contract_is_a_recorded_block(server: Server, client: rein.Client) -> None:
    d = client.decide("refund", {"order_id": "ord_abc123", "amount": "forty", "currency": "EUR"}, actor=ACTOR,
                      snapshot=SNAPSHOT)
    assert d.blocked and d.violation is not None and d.violation["path"] == "input.amount"
    d = client.decide("launch_rockets", {})
    assert d.blocked and d.violation is not None and d.violation["path"] == "action"
    assert len(server.audit()) == 2


def test_values_without_an_exact_json_form_are_refused_before_sending(client: rein.Client) -> None:
    import datetime

    for bad, where in [
        ({"amount": math.nan}, "input.amount"),
        ({"amount": math.inf}, "input.amount"),
        ({"items": [1, {2: "x"}]}, "input.items[1]"),
        ({"at": datetime.datetime(2026, 1, 1)}, "input.at"),
        ({"n": 2**64}, "input.n"),
        ({"s": {1, 2}}, "input.s"),
    ]:
        with pytest.raises(rein.InputError, match=__import__("re").escape(where)):
            client.decide("refund", bad, actor=ACTOR)


def test_outcomes_are_checked_and_recorded(server: Server, client: rein.Client) -> None:
    d = client.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
    ok = client.outcome(d.decision_id, {"refund_id": "re_1"})
    assert ok.allowed and ok.phase == "after" and ok.decision_id == d.decision_id
    again = client.outcome(d.decision_id, {"refund_id": "re_1"})
    assert again.blocked and "already reported" in again.reasons[0]

    d = client.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
    bad = client.outcome(d.decision_id, {"refund_id": "xx_1"})
    assert bad.blocked and bad.rules == ["refund_id_format"]

    d = client.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
    err = client.outcome(d.decision_id, error="payment provider down")
    assert err.allowed and err.phase == "after"
    with pytest.raises(rein.InputError):
        client.outcome(d.decision_id, {"refund_id": "re_1"}, error="both")
    after = [r for r in server.audit() if r["phase"] == "after"]
    assert len(after) == 3  # the refused duplicate is not recorded


def test_another_tokens_decision_cannot_be_reported(server: Server, client: rein.Client) -> None:
    d = client.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
    with rein.Client(server.url, AGENT2, timeout=30) as other:
        r = other.outcome(d.decision_id, {"refund_id": "re_1"})
    assert r.blocked and "another client" in r.reasons[0]


def test_explain_traces_without_recording_or_opening_anything(server: Server, client: rein.Client) -> None:
    e = client.explain("refund", refund_input(500), actor=ACTOR, snapshot=SNAPSHOT)
    assert e["decision"]["effect"] == "require_approval"
    assert e["decision"]["rules"] == ["medium_refund_needs_support"]
    traced = {r["id"]: r["outcome"]["result"] for r in e["rules"]}
    assert traced["medium_refund_needs_support"] == "matched"
    assert traced["small_refund"] == "not_matched"
    assert server.audit() == []
    assert [r["phase"] for r in server.records()] == ["activate"], "only the start's activation"
    assert server.call("GET", "/v1/approvals", ALICE).json()["approvals"] == []
    bad = client.explain("refund", {"amount": 1}, actor=ACTOR, snapshot=SNAPSHOT)
    assert bad["decision"]["effect"] == "block" and bad["decision"]["violation"]["path"].startswith("input")


def test_explain_reads_limits_and_the_tokens_session_without_counting(limited: Server) -> None:
    with rein.Client(limited.url, AGENT, timeout=30) as c:
        for _ in range(5):
            assert c.explain("pay", {"amount": 1}, actor={"id": "a"})["decision"]["effect"] == "allow"
        for _ in range(3):
            assert c.decide("pay", {"amount": 1}, actor={"id": "a"}).allowed
        e = c.explain("pay", {"amount": 1}, actor={"id": "a"})
        assert e["decision"]["effect"] == "block" and e["decision"]["rules"] == ["pay_rate"]
        c.decide("read_secret", {"path": "/k"}, actor={"id": "a"}, session="run-1")
        assert c.explain("send", {"to": "x"}, actor={"id": "a"}, session="run-1")["decision"]["effect"] == "block"
    with rein.Client(limited.url, AGENT2, timeout=30) as other:
        # Another token's session of the same name is its own.
        assert other.explain("send", {"to": "x"}, actor={"id": "a"}, session="run-1")["decision"]["effect"] == "allow"


def test_approval_read_wait_grant_and_use_once(server: Server, client: rein.Client) -> None:
    d = client.decide("refund", refund_input(500), actor=ACTOR, snapshot=SNAPSHOT)
    aid = d.approval_id
    assert aid is not None
    assert client.approval(aid)["state"] == "pending"
    started = time.monotonic()
    still = client.wait_for_approval(aid, timeout=0.4, poll=0.1)
    assert still["state"] == "pending" and 0.35 <= time.monotonic() - started < 3
    granter = grant_when_pending(server, "refund")
    granted = client.wait_for_approval(aid, timeout=15, poll=0.1)
    granter.join()
    assert granted["state"] == "granted" and granted["decided_by"] == "alice"
    used = client.decide("refund", refund_input(500), actor=ACTOR, snapshot=SNAPSHOT, approval=aid)
    assert used.allowed and any("approved by `alice`" in r for r in used.reasons)
    again = client.decide("refund", refund_input(500), actor=ACTOR, snapshot=SNAPSHOT, approval=aid)
    assert not again.allowed
    with pytest.raises(rein.ReinError, match="404"):
        client.approval("no-such-approval")
    # An approval id is a path segment, never a path.
    with pytest.raises(rein.ReinError):
        client.approval("../audit")


# ---- the guard over a client ---------------------------------------------


def refund_guard(client: Any, **kw: Any) -> rein.Guard:
    return rein.Guard(client, actor=ACTOR, snapshot=SNAPSHOT, **kw)


def test_guard_reports_every_outcome_and_withholds_a_blocked_result(server: Server, client: rein.Client) -> None:
    events: List[rein.DecisionEvent] = []
    guard = refund_guard(client, observers=[events.append])
    results = iter([{"refund_id": "re_1"}, {"refund_id": "xx_2"}])

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        return next(results)

    assert refund("ord_abc123", 40, "EUR") == {"refund_id": "re_1"}
    with pytest.raises(rein.Blocked) as blocked:
        refund("ord_abc123", 40, "EUR")
    assert blocked.value.rule == "refund_id_format"
    assert [(e.phase, e.effect) for e in events] == [
        ("before", "allow"), ("after", "allow"), ("before", "allow"), ("after", "block"),
    ]
    records = server.audit()
    assert [(r["phase"], r["effect"]) for r in records] == [
        ("before", "allow"), ("after", "allow"), ("before", "allow"), ("after", "block"),
    ]
    # Every parameter is sent; the optional note as null (absent).
    assert records[0]["input"]["amount"] == 40 and records[0]["input"]["order_id"] == "ord_abc123"


def test_guard_reports_a_failing_function_and_reraises_it(server: Server, client: rein.Client) -> None:
    guard = refund_guard(client)

    class ProviderDown(Exception):
        pass

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        raise ProviderDown("the provider is down")

    with pytest.raises(ProviderDown):
        refund("ord_abc123", 40, "EUR")
    after = [r for r in server.audit() if r["phase"] == "after"]
    assert len(after) == 1 and "the provider is down" in str(after[0])


def test_guard_waits_for_a_grant_then_runs(server: Server, client: rein.Client) -> None:
    events: List[rein.DecisionEvent] = []
    guard = refund_guard(client, wait_for_approval=15, approval_poll=0.1, observers=[events.append])
    ran: List[float] = []

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        ran.append(amount)
        return {"refund_id": "re_5"}

    granter = grant_when_pending(server, "refund")
    assert refund("ord_abc123", 500, "EUR") == {"refund_id": "re_5"}
    granter.join()
    assert ran == [500]
    assert [(e.phase, e.effect) for e in events] == [
        ("before", "require_approval"), ("before", "allow"), ("after", "allow"),
    ]
    assert any("approved by `alice`" in r for r in events[1].decision.reasons)


def test_guard_denied_or_unanswered_approvals_refuse(server: Server, client: rein.Client) -> None:
    guard = refund_guard(client, wait_for_approval=15, approval_poll=0.1)
    ran: List[float] = []

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        ran.append(amount)
        return {"refund_id": "re_5"}

    granter = grant_when_pending(server, "refund", deny=True)
    with pytest.raises(rein.Blocked, match="denied by `alice`: not today"):
        refund("ord_abc123", 500, "EUR")
    granter.join()

    impatient = refund_guard(client, wait_for_approval=0.3, approval_poll=0.1)
    refund2 = impatient.action("refund")(refund.__wrapped__)  # type: ignore[attr-defined]
    with pytest.raises(rein.ApprovalRequired) as e:
        refund2("ord_abc123", 600, "EUR")
    assert e.value.approval_id and e.value.roles == ["support"]
    assert not isinstance(e.value, rein.Blocked)

    no_wait = refund_guard(client)
    refund3 = no_wait.action("refund")(refund.__wrapped__)  # type: ignore[attr-defined]
    with pytest.raises(rein.ApprovalRequired) as e:
        refund3("ord_abc123", 700, "EUR")
    assert e.value.approval_id == e.value.decision.approval_id
    assert ran == []


def test_limits_and_sessions_are_shared_between_guards_and_clients(limited: Server) -> None:
    a = rein.Client(limited.url, AGENT, timeout=30)
    b = rein.Client(limited.url, AGENT, timeout=30)
    guards = [rein.Guard(c, actor={"id": "bot"}) for c in (a, b)]
    paid: List[float] = []
    pays = []
    for g in guards:

        @g.action("pay")
        def pay(amount: float) -> None:
            paid.append(amount)

        pays.append(pay)
    outcomes = []
    for i in range(5):
        try:
            pays[i % 2](1.0)
            outcomes.append("allow")
        except rein.Blocked as e:
            assert e.rule == "pay_rate" and "3 of 3 used" in e.reason
            outcomes.append("block")
    assert outcomes == ["allow", "allow", "allow", "block", "block"]
    assert paid == [1.0, 1.0, 1.0]

    # A session labelled through one guard is read through the other.
    sessions = [rein.Guard(c, actor={"id": "bot"}, session="run-7") for c in (a, b)]
    sessions[0].action("read_secret")(lambda path: "k")("/etc/key")
    send = sessions[1].action("send")(lambda to: None)
    with pytest.raises(rein.Blocked, match="nothing leaves a session"):
        send("x@example.com")
    a.close()
    b.close()


# ---- failing closed ------------------------------------------------------


def guarded_refund(client: Any, ran: List[float]) -> Any:
    guard = refund_guard(client)

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        ran.append(amount)
        return {"refund_id": "re_1"}

    return refund


def test_a_dead_server_blocks_with_the_cause() -> None:
    ran: List[float] = []
    with rein.Client(f"http://127.0.0.1:{free_port()}", AGENT, timeout=2) as dead:
        with pytest.raises(rein.Blocked, match="rein serve unreachable") as e:
            dead.decide("refund", refund_input(40), actor=ACTOR)
        assert e.value.decision is None and e.value.rule is None
        with pytest.raises(rein.Blocked, match="unreachable"):
            dead.outcome("0193-not-sent", {"refund_id": "re_1"})
        with pytest.raises(rein.Blocked, match="unreachable"):
            guarded_refund(dead, ran)("ord_abc123", 40, "EUR")
        # Only when asked, per call: an allow-shaped stand-in, marked.
        degraded = dead.decide("refund", refund_input(40), actor=ACTOR, fail_open=True)
        assert degraded.allowed and degraded.degraded and degraded.decision_id is None
        assert "fail-open" in degraded.reasons[0]
    assert ran == []


def test_a_server_killed_mid_test_blocks(server: Server, client: rein.Client) -> None:
    ran: List[float] = []
    refund = guarded_refund(client, ran)
    assert refund("ord_abc123", 40, "EUR") == {"refund_id": "re_1"}
    server.kill()
    with pytest.raises(rein.Blocked, match="unreachable") as e:
        refund("ord_abc123", 40, "EUR")
    assert e.value.action == "refund"
    with pytest.raises(rein.Blocked, match="unreachable"):
        client.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
    assert ran == [40]


def test_a_server_that_dies_between_decide_and_outcome_withholds_the_result(server: Server) -> None:
    client = rein.Client(server.url, AGENT, timeout=2)
    guard = refund_guard(client)

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        server.kill()
        return {"refund_id": "re_secret"}

    with pytest.raises(rein.Blocked, match="withheld") as e:
        refund("ord_abc123", 40, "EUR")
    assert "re_secret" not in str(e.value)
    client.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield listener.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    listener.close()


def test_a_server_that_never_answers_blocks_after_the_timeout(silent_port: int) -> None:
    ran: List[float] = []
    with rein.Client(f"http://127.0.0.1:{silent_port}", AGENT, timeout=0.5) as slow:
        started = time.monotonic()
        with pytest.raises(rein.Blocked, match=r"did not answer within 0\.5 s"):
            slow.decide("refund", refund_input(40), actor=ACTOR)
        assert time.monotonic() - started < 3
        with pytest.raises(rein.Blocked, match="did not answer"):
            guarded_refund(slow, ran)("ord_abc123", 40, "EUR")
        assert slow.decide("refund", refund_input(40), fail_open=True).degraded
    assert ran == []


def test_a_refused_token_blocks_even_with_fail_open(server: Server) -> None:
    with rein.Client(server.url, "not-a-token-of-this-server", timeout=30) as wrong:
        with pytest.raises(rein.Blocked, match="refused the token"):
            wrong.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
        # Many times over one kept-alive connection: the server closes it
        # after a refusal it sent without reading the body, and a request
        # already on its way must not read as an outage (fail_open: allow).
        for _ in range(150):
            with pytest.raises(rein.Blocked, match="refused the token"):
                wrong.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT, fail_open=True)
    with rein.Client(server.url, ALICE, timeout=30) as approver:
        with pytest.raises(rein.Blocked, match="needs an agent token"):
            approver.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT, fail_open=True)
    with rein.Client(server.url + "/v2", AGENT, timeout=30) as wrong_path:
        with pytest.raises(rein.Blocked, match="404"):
            wrong_path.decide("refund", refund_input(40), fail_open=True)


def answering(status: int, body: bytes, content_type: str = "application/json") -> rein.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return rein.Client("http://rein.test", AGENT, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "status,body,cause,outage",
    [
        # Rein's own failure says block: its answer, whatever fail_open says.
        (503, b'{"error": {"code": "timeout", "message": "slow"}, "effect": "block"}', "failed (503", False),
        (500, b'{"error": {"code": "internal", "message": "x"}, "effect": "block"}', "failed (500", False),
        (503, b"<html>Service Unavailable</html>", "failed (503", True),
        (502, b"<html>Bad Gateway</html>", "failed (502", True),
        (500, b"", "failed (500", True),
        (200, b"allow", "not JSON", False),
        (200, b'["allow"]', "not JSON", False),
        (200, b'{"effect": "allow"}', "not a decision", False),
        (200, b'{"effect": "allow", "decision_id": "d1"}', "audit record", False),
        (200, b'{"effect": "ALLOW", "decision_id": "d1", "audit_seq": 1}', "not a decision", False),
        (200, b'{"effect": "allow", "decision_id": "d1", "audit_seq": 1, "rules": "all"}', "not a decision", False),
        (200, b'{"effect": "block", "decision_id": "d1", "audit_seq": 1, "effect": "allow"}', "not JSON", False),
        (200, b'{"effect": "allow", "decision_id": "d1", "audit_seq": true}', "audit record", False),
        (200, b'{"effect": "allow", "decision_id": "d1", "audit_seq": 1, "matched": [{"id": 1}]}', "not a decision",
         False),
        (200, b'{"effect": "allow", "decision_id": "d1", "audit_seq": 1, "phase": "after"}', "phase `after`", False),
        (200, b'{"effect": "allow", "decision_id": "d1", "audit_seq": 1, "chain": ["user:alice"]}', "not a decision",
         False),
        (302, b"", "302", False),
        (418, b"{}", "418", False),
    ],
)
def test_answers_that_are_not_decisions_block(status: int, body: bytes, cause: str, outage: bool) -> None:
    with answering(status, body) as c:
        with pytest.raises(rein.Blocked, match=__import__("re").escape(cause)):
            c.decide("refund", refund_input(40))
        if outage:
            assert c.decide("refund", refund_input(40), fail_open=True).degraded
        else:
            with pytest.raises(rein.Blocked):
                c.decide("refund", refund_input(40), fail_open=True)


def test_a_body_the_server_refused_is_its_recorded_block() -> None:
    body = b'{"error": {"code": "invalid_request", "message": "unknown field"}, "effect": "block", ' \
           b'"decision_id": "d-9", "audit_seq": 4}'
    with answering(400, body) as c:
        d = c.decide("refund", refund_input(40))
    assert d.blocked and d.decision_id == "d-9" and "unknown field" in d.reasons[0]


def test_client_needs_a_url_and_a_token() -> None:
    with pytest.raises(ValueError):
        rein.Client("127.0.0.1:8700", AGENT)
    with pytest.raises(ValueError):
        rein.Client("http://127.0.0.1:8700", "")


# ---- asyncio -------------------------------------------------------------


def test_async_client_and_async_guard(server: Server) -> None:
    async def main() -> None:
        async with rein.AsyncClient(server.url, AGENT, timeout=30) as c:
            d = await c.decide("refund", refund_input(40), actor=ACTOR, snapshot=SNAPSHOT)
            assert d.allowed
            assert (await c.outcome(d.decision_id, {"refund_id": "re_1"})).allowed
            e = await c.explain("refund", refund_input(5000), actor=ACTOR, snapshot=SNAPSHOT)
            assert e["decision"]["effect"] == "block"

            async def actor(call: rein.Call) -> Dict[str, str]:
                await asyncio.sleep(0)
                return ACTOR

            guard = rein.Guard(c, actor=actor, snapshot=SNAPSHOT, wait_for_approval=15, approval_poll=0.1)

            @guard.action("refund")
            async def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
                await asyncio.sleep(0)
                return {"refund_id": "re_async"}

            assert await refund("ord_abc123", 40, "EUR") == {"refund_id": "re_async"}
            with pytest.raises(rein.Blocked):
                await refund("ord_abc123", 5000, "EUR")
            granter = grant_when_pending(server, "refund")
            assert await refund("ord_abc123", 500, "EUR") == {"refund_id": "re_async"}
            granter.join()
            a = await c.decide("refund", refund_input(500), actor=ACTOR, snapshot=SNAPSHOT)
            assert (await c.approval(a.approval_id))["state"] == "pending"

        with pytest.raises(rein.GuardError, match="not async"):
            rein.Guard(rein.AsyncClient(server.url, AGENT)).action("refund")(lambda order_id: None)

    asyncio.run(main())


def test_sync_client_in_an_async_function_does_not_block_the_loop(server: Server, client: rein.Client) -> None:
    guard = refund_guard(client)
    ticks: List[int] = []

    @guard.action("refund")
    async def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        return {"refund_id": "re_1"}

    async def ticker() -> None:
        for i in range(1000):
            ticks.append(i)
            await asyncio.sleep(0)

    async def main() -> None:
        t = asyncio.ensure_future(ticker())
        for _ in range(5):
            assert await refund("ord_abc123", 40, "EUR") == {"refund_id": "re_1"}
        t.cancel()

    asyncio.run(main())
    assert len(ticks) > 5


def test_async_client_fails_closed_on_a_dead_server() -> None:
    async def main() -> None:
        async with rein.AsyncClient(f"http://127.0.0.1:{free_port()}", AGENT, timeout=2) as dead:
            with pytest.raises(rein.Blocked, match="unreachable"):
                await dead.decide("refund", refund_input(40))
            assert (await dead.decide("refund", refund_input(40), fail_open=True)).degraded

    asyncio.run(main())


def test_audit_only_over_a_dead_server_runs_and_reports(tmp_path: Path) -> None:
    events: List[rein.DecisionEvent] = []
    with rein.Client(f"http://127.0.0.1:{free_port()}", AGENT, timeout=2) as dead:
        guard = rein.Guard(dead, actor=ACTOR, audit_only=True, observers=[events.append])

        @guard.action("refund")
        def refund(order_id: str, amount: float, currency: str) -> str:
            return "ran"

        assert refund("ord_abc123", 40, "EUR") == "ran"
    assert len(events) == 1 and events[0].decision is None and "unreachable" in (events[0].error or "")
    assert events[0].audit_only


def test_audit_only_over_a_server_runs_everything_and_records_it(server: Server, client: rein.Client) -> None:
    events: List[rein.DecisionEvent] = []
    # Nothing to wait for in shadow mode: the call runs anyway.
    guard = refund_guard(client, audit_only=True, wait_for_approval=30, observers=[events.append])

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str, note: Any = None) -> Dict[str, str]:
        return {"refund_id": "xx_unchecked"}

    started = time.monotonic()
    assert refund("ord_abc123", 500, "EUR") == {"refund_id": "xx_unchecked"}
    assert refund("ord_abc123", 5000, "EUR") == {"refund_id": "xx_unchecked"}
    assert time.monotonic() - started < 5
    assert [(e.phase, e.effect) for e in events] == [
        ("before", "require_approval"), ("after", "block"), ("before", "block"), ("after", "block"),
    ]
    # The server recorded that refused calls ran.
    after = [r for r in server.audit() if r["phase"] == "after"]
    assert len(after) == 2 and all("must not have run" in str(r) for r in after)


def test_waiting_ends_when_the_approval_expires() -> None:
    expired = b'{"id": "ap-1", "state": "pending", "expires_at": "2026-01-01T00:00:00.123456789Z"}'
    with answering(200, expired) as c:
        started = time.monotonic()
        got = c.wait_for_approval("ap-1", timeout=10, poll=0.05)
    assert got["state"] == "pending" and time.monotonic() - started < 2


def test_a_guard_waiting_on_an_approval_that_expires_blocks() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/decide":
            return httpx.Response(200, json={
                "decision_id": "d-1", "effect": "require_approval", "phase": "before",
                "rules": ["medium_refund_needs_support"], "reasons": ["needs support"],
                "matched": [{"id": "medium_refund_needs_support", "effect": "require_approval",
                             "reason": "needs support"}],
                "approval": {"id": "ap-1", "role": "support", "roles": ["support"],
                             "expires_at": "2026-01-01T00:00:00.5Z"},
                "policy_version": "v", "audit_seq": 1,
            })
        if request.url.path == "/v1/approvals/ap-1":
            return httpx.Response(200, json={"id": "ap-1", "state": "pending",
                                             "expires_at": "2026-01-01T00:00:00.5Z"})
        return httpx.Response(404, json={"error": {"code": "no_such_route", "message": "no"}})

    ran: List[float] = []
    with rein.Client("http://rein.test", AGENT, transport=httpx.MockTransport(handler)) as c:
        guard = rein.Guard(c, wait_for_approval=10, approval_poll=0.05)
        refund = guard.action("refund")(lambda order_id, amount: ran.append(amount))
        with pytest.raises(rein.Blocked, match="approval `ap-1` expired") as e:
            refund("ord_abc123", 500)
    assert e.value.rule == "medium_refund_needs_support" and ran == []


class Recorder:
    """A fake rein serve that records what it is sent and allows it."""

    def __init__(self) -> None:
        self.sent: List[Dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        body = json.loads(request.content)
        self.sent.append({"path": request.url.path, **body})
        return httpx.Response(200, json={
            "decision_id": body.get("decision_id", f"d-{len(self.sent)}"), "effect": "allow",
            "phase": "after" if request.url.path == "/v1/outcome" else "before",
            "rules": [], "reasons": [], "policy_version": "v", "audit_seq": len(self.sent),
        })


def test_through_a_client_every_parameter_is_sent_as_named() -> None:
    server = Recorder()
    with rein.Client("http://rein.test", AGENT, transport=httpx.MockTransport(server)) as c:
        guard = rein.Guard(c, actor={"id": "a"}, session="s")

        class Tools:
            @guard.action("refund", fields={"amount": "amt"}, exclude=("api_key",))
            def refund(self, order_id: str, amt: float, api_key: str, note: Any = None, **extra: Any) -> str:
                return "done"

        assert Tools().refund("o1", 5, "sk-secret", region="eu") == "done"
        decide, outcome = server.sent
        assert decide["path"] == "/v1/decide" and decide["action"] == "refund"
        assert decide["input"] == {"order_id": "o1", "amount": 5, "note": None, "region": "eu"}
        assert decide["actor"] == {"id": "a"} and decide["session"] == "s"
        assert outcome == {"path": "/v1/outcome", "decision_id": "d-1", "output": "done"}
        assert "sk-secret" not in str(server.sent)

        with pytest.raises(rein.GuardError, match="both `amt` and `amount`"):
            guard.action("refund", fields={"amount": "amt"})(lambda amt, amount: None)

        @guard.action("refund", fields={"amount": "amt"})
        def clash(amt: float, **extra: Any) -> None:
            return None

        with pytest.raises(rein.Blocked, match="two arguments give the field `amount`"):
            clash(1, amount=2)


def test_a_remote_refusal_pickles_with_its_decision(client: rein.Client) -> None:
    import pickle

    with pytest.raises(rein.Blocked) as e:
        guarded_refund(client, [])("ord_abc123", 5000, "EUR")
    back = pickle.loads(pickle.dumps(e.value))
    assert back.rule == "large_refund" and back.decision.deciding_rules == ["large_refund"]
    assert back.decision.decision_id == e.value.decision_id and back.decision.to_dict() == e.value.decision.to_dict()
