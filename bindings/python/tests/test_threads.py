"""One `Policy` (and one `State`) shared by threads: the same answers as
one thread, limits counted exactly once, and the GIL released while the
engine decides."""

from __future__ import annotations

import random
import sys
import threading
import time

import rein
from conftest import EXAMPLES

POLICY = rein.Policy.load(EXAMPLES / "refund" / "policy.yaml")

AGENT = {"id": "a1", "role": "agent"}


def _requests() -> list[tuple]:
    out = []
    for amount in (0, 50, 100, 101, 500, 1000, 1001, 5000, -1, 100001):
        for role in ("agent", "support", "admin", "intern"):
            for fraud in (False, True):
                snapshot = {"fraud_flag": fraud, "refunds_today": amount % 7, "account_age_days": 30}
                actor = {"id": "a1", "role": role}
                out.append(("refund", {"order_id": "ord_abc123", "amount": amount, "currency": "EUR"}, actor, snapshot))
    out.append(("order.lookup", {"order_id": "ord_abc123"}, AGENT, {"fraud_flag": False, "refunds_today": 0, "account_age_days": 1}))
    out.append(("unknown", {}, AGENT, {}))
    return out


def _answer(d: rein.Decision) -> dict:
    out = d.to_dict()
    del out["decision_id"]
    return out


def test_eight_threads_give_one_threads_answers() -> None:
    requests = _requests()
    expected = [_answer(POLICY.decide(a, i, actor=ac, snapshot=s)) for a, i, ac, s in requests]
    assert {e["effect"] for e in expected} == {"allow", "block", "require_approval"}
    failures: list[str] = []
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            order = list(range(len(requests)))
            random.Random(seed).shuffle(order)
            for _ in range(20):
                for k in order:
                    a, i, ac, s = requests[k]
                    got = _answer(POLICY.decide(a, i, actor=ac, snapshot=s))
                    if got != expected[k]:
                        failures.append(f"request {k}: {got} != {expected[k]}")
                e = POLICY.explain(*requests[order[0]][:2], actor=requests[order[0]][2], snapshot=requests[order[0]][3])
                if _answer(e.decision) != expected[order[0]]:
                    failures.append("explain differs")
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not failures, failures[:5]


def test_a_shared_state_counts_each_use_once() -> None:
    # 8 threads race for a limit of 20 a minute in one session: exactly 20
    # calls are allowed, whatever the interleaving.
    from test_policy import ACTOR, SNAPSHOT, _ls, _shell_policy

    policy = _shell_policy()
    state = rein.State()
    allowed: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        n = 0
        for _ in range(10):
            d = policy.decide(
                "shell.exec", _ls(), actor=ACTOR, snapshot=SNAPSHOT, session="run-1", time="2026-03-02T10:00:00Z", state=state
            )
            n += d.allowed
        with lock:
            allowed.append(n)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 20, allowed


def _heavy_policy() -> rein.Policy:
    rules = "".join(
        f"  - id: r{i}\n    action: a\n    when: input.text.matches('^x{{{i % 7 + 1}}}y') && input.n > {i}\n    effect: block\n"
        for i in range(400)
    )
    return rein.Policy.from_yaml("default: allow\ncontracts: {actions: {a: {input: {text: string, n: int}}}}\nrules:\n" + rules)


def test_the_gil_is_released_while_deciding() -> None:
    # With the switch interval made huge, the interpreter never takes the
    # GIL from a running thread: another thread can only run while this
    # one releases it. The deciding thread must see the counting thread
    # make progress before its loop ends; if `decide` held the GIL, the
    # counting thread could not even start before the loop finished.
    policy = _heavy_policy()
    text = "x" * 200
    counted = [0]
    seen_at: list[int] = []

    def count() -> None:
        for _ in range(1000):
            counted[0] += 1

    def decide() -> None:
        for k in range(20000):
            policy.decide("a", {"text": text, "n": 1})
            if counted[0]:
                seen_at.append(k)
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        deciding = threading.Thread(target=decide)
        counting = threading.Thread(target=count)
        deciding.start()
        counting.start()
        deciding.join()
        counting.join()
    finally:
        sys.setswitchinterval(old)
    assert seen_at, "the counting thread never ran while the other decided: the GIL was held"


def _throughput(policy: rein.Policy, threads: int, calls: int) -> float:
    text = "x" * 200

    def work() -> None:
        for _ in range(calls // threads):
            policy.decide("a", {"text": text, "n": 1})

    ts = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return calls / (time.perf_counter() - start)


def test_threads_decide_in_parallel_report() -> None:
    # Reported, not asserted: timing on a shared machine is not a test.
    # Run with `-s` to see it.
    policy = _heavy_policy()
    one = _throughput(policy, 1, 2000)
    two = _throughput(policy, 2, 2000)
    four = _throughput(policy, 4, 2000)
    print(f"\nthroughput on a 400-rule action: 1 thread {one:.0f}/s, 2 threads {two / one:.2f}x, 4 threads {four / one:.2f}x")
    assert one > 0 and two > 0 and four > 0
