"""Decisions from Python equal the CLI's on every policy test file of the
repository: each case's request is decided by `rein.Policy` and by
`rein check --batch` (one run per test file), and the two decisions are the
same JSON. Sequence cases (limits, sessions) are decided through a
`rein.State` and checked against the test file's expectations, as
`rein test` checks them."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

import rein
from conftest import REPO, check_batch, load_yaml, policy_test_files

FILES = policy_test_files()


def test_the_corpus_is_there() -> None:
    # A moved examples folder must not make this suite pass on nothing.
    assert len(FILES) >= 10, FILES


def _load(spec: dict, base: Path) -> tuple[rein.Policy, list[Any]]:
    """The policy a test file tests, and the CLI options that load it."""
    governance = spec.get("governance")
    if "actra" in spec:
        actra = spec["actra"]
        schema, policy = base / actra["schema"], base / actra["policy"]
        gov = actra.get("governance") or governance
        gov = base / gov if gov else None
        args: list[Any] = ["--actra-schema", schema, "--policy", policy]
        if gov:
            args += ["--governance", gov]
        return rein.Policy.load_actra(schema, policy, gov), args
    paths = spec["policy"] if isinstance(spec["policy"], list) else [spec["policy"]]
    paths = [base / p for p in paths]
    args = ["--policy", *paths]
    if governance:
        args += ["--governance", base / governance]
        return rein.Policy.load(*paths, governance=base / governance), args
    return rein.Policy.load(*paths), args


def _decide(policy: rein.Policy, request: dict, actra: bool, **extra: Any) -> rein.Decision:
    """Decides a test file's request with the Python API."""
    if actra:
        return policy.decide_actra(request)
    kw = dict(
        actor=request.get("actor"),
        snapshot=request.get("snapshot"),
        session=request.get("session"),
        time=request.get("time"),
        **extra,
    )
    if request.get("phase") == "after" or "output" in request or "error" in request:
        return policy.check_output(
            request["action"], request.get("input"), request.get("output"), error=request.get("error"), **kw
        )
    return policy.decide(request["action"], request.get("input"), **kw)


def _expectations(decision: rein.Decision, case: dict, where: str) -> None:
    """What `rein test` checks of a decision: effect, rules, violation,
    reason, retry_after."""
    assert decision.effect == case["expect"], f"{where}: {decision.reasons}"
    if "rules" in case:
        assert sorted(decision.rules) == sorted(case["rules"]), where
    if "violation" in case:
        assert decision.violation is not None and decision.violation["path"] == case["violation"], where
    if "reason" in case:
        assert any(case["reason"] in r for r in decision.reasons), f"{where}: {decision.reasons}"
    if "retry_after" in case:
        assert decision.retry_after_seconds == case["retry_after"], where


@pytest.mark.parametrize("test_file", FILES, ids=[str(f.relative_to(REPO)) for f in FILES])
def test_python_decides_as_the_cli(test_file: Path, rein_binary: Path) -> None:
    spec = load_yaml(test_file)
    policy, args = _load(spec, test_file.parent)
    actra = "actra" in spec
    cases = [c for c in spec["cases"] if "sequence" not in c]
    if not cases:
        pytest.skip("only sequence cases (test_sequences_through_a_state)")
    cli = check_batch(args, [c["request"] for c in cases])
    for case, expected in zip(cases, cli):
        decision = _decide(policy, case["request"], actra)
        got = decision.to_dict()
        assert got.pop("decision_id") == decision.decision_id
        assert got == expected, case["name"]
        # Attributes read the same decision.
        assert decision.effect == expected["effect"]
        assert decision.rules == expected["rules"]
        assert decision.reasons == expected["reasons"]
        assert decision.violation == expected.get("violation")
        assert decision.labels == expected.get("labels", [])
        assert decision.policy_version == expected["policy_version"] == policy.version
        if "bound" in case and any("must be set by the credential" in r for r in decision.reasons):
            # The case's expectation is for a credential binding its
            # `bound` fields; in process, and in `rein check` without
            # `--bound`, there is none, and both block alike (above).
            continue
        _expectations(decision, case, case["name"])


SEQUENCE_FILES = [f for f in FILES if any("sequence" in c for c in load_yaml(f)["cases"])]


@pytest.mark.parametrize("test_file", SEQUENCE_FILES, ids=[str(f.relative_to(REPO)) for f in SEQUENCE_FILES])
def test_sequences_through_a_state(test_file: Path) -> None:
    spec = load_yaml(test_file)
    policy, _ = _load(spec, test_file.parent)
    checked = 0
    for case in spec["cases"]:
        if "sequence" not in case:
            continue
        state = rein.State()
        clock = "2026-01-01T00:00:00Z"
        for n, step in enumerate(case["sequence"], 1):
            if step.get("approve"):
                # Nobody can grant an approval in-process; the steps after
                # a grant would decide on a state that differs from
                # `rein test`'s.
                break
            clock = step.get("at", clock)
            for send in range(1, step.get("repeat", 1) + 1):
                where = f"{case['name']}: step {n}, send {send}"
                decision_id = f"step-{n}-{send}"
                request = dict(step["request"], time=clock)
                decision = _decide(policy, request, False, state=state, decision_id=decision_id)
                assert decision.decision_id == decision_id
                _expectations(decision, step, where)
                checked += 1
                if "outcome" in step:
                    outcome = step["outcome"]
                    after = policy.check_output(
                        request["action"],
                        request.get("input"),
                        outcome.get("output"),
                        error=outcome.get("error"),
                        actor=request.get("actor"),
                        snapshot=request.get("snapshot"),
                        session=request.get("session"),
                        time=clock,
                        state=state,
                        decision_id=decision_id,
                    )
                    assert after.effect == step["expect_after"], f"{where} (after): {after.reasons}"
    assert checked > 0


def test_a_sequence_step_time_may_be_a_datetime() -> None:
    # The same instant as text or as an aware datetime decides the same.
    policy = rein.Policy.load(REPO / "examples" / "refund-budget")
    text_state, dt_state = rein.State(), rein.State()
    request = {
        "input": {"order_id": "ord_a00001", "customer_id": "cus_0001", "amount": 1000, "currency": "EUR"},
        "actor": {"id": "sam", "role": "support"},
    }
    at = datetime.datetime(2026, 3, 2, 10, tzinfo=datetime.timezone.utc)
    for _ in range(3):
        a = policy.decide("refund", request["input"], actor=request["actor"], time="2026-03-02T10:00:00Z", state=text_state)
        b = policy.decide("refund", request["input"], actor=request["actor"], time=at, state=dt_state)
        assert (a.effect, a.reasons) == (b.effect, b.reasons)
    assert a.blocked and a.retry_after_seconds == b.retry_after_seconds
