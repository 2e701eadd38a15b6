"""The in-process engine: loading (and its errors), deciding, explaining,
checking outputs, converting Python values, and State."""

from __future__ import annotations

import datetime
import enum
import json
import math
from pathlib import Path

import pytest

import rein
from conftest import EXAMPLES, REPO, run_rein

REFUND = EXAMPLES / "refund" / "policy.yaml"
REFUND_INPUT = {"order_id": "ord_abc123", "amount": 50, "currency": "EUR"}
AGENT = {"id": "a1", "role": "agent"}
CALM = {"fraud_flag": False, "refunds_today": 0, "account_age_days": 400}


@pytest.fixture(scope="module")
def refund() -> rein.Policy:
    return rein.Policy.load(REFUND)


def decide_refund(policy: rein.Policy, **input: object) -> rein.Decision:
    return policy.decide("refund", {**REFUND_INPUT, **input}, actor=AGENT, snapshot=CALM)


# ------------------------------------------------------------------ loading

TYPO_POLICY = """\
contracts:
  actions:
    refund:
      input:
        amount: number
rules:
  - id: big
    action: refund
    when: input.amout > 10
    effect: block
"""


def test_a_load_error_carries_file_line_column_and_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TYPO_POLICY)
    with pytest.raises(rein.PolicyError) as caught:
        rein.Policy.load(bad)
    error = caught.value
    assert isinstance(error, rein.ReinError)
    [d] = error.diagnostics
    assert isinstance(d, rein.Diagnostic)
    assert (d.severity, d.file, d.line, d.column) == ("error", str(bad), 9, 17)
    assert "amout" in d.message
    assert d.hint is not None and "amount" in d.hint
    assert d.to_dict() == {
        "severity": "error",
        "message": d.message,
        "file": str(bad),
        "line": 9,
        "column": 17,
        "help": d.hint,
    }
    # Rendered as the CLI renders it, without colours: the source line, a
    # caret, the hint.
    cli = run_rein(["check", bad, "--request", "-"], stdin="{}")
    assert cli.returncode == 2
    assert str(error) == cli.stderr
    assert str(d) == cli.stderr
    assert "input.amout > 10" in str(error) and "help:" in str(error)
    assert "\x1b[" not in str(error)


def test_every_diagnostic_is_carried_and_rendered(tmp_path: Path) -> None:
    bad = tmp_path / "two.yaml"
    bad.write_text(TYPO_POLICY + "  - id: other\n    action: refnd\n    effect: allow\n")
    with pytest.raises(rein.PolicyError) as caught:
        rein.Policy.load(bad)
    diags = caught.value.diagnostics
    assert len(diags) >= 2
    assert [d.line for d in diags] == sorted(d.line for d in diags)
    cli = run_rein(["check", bad, "--request", "-"], stdin="{}")
    assert str(caught.value) == cli.stderr
    for d in diags:
        assert str(d) in str(caught.value)


def test_from_yaml_names_the_text_as_told() -> None:
    with pytest.raises(rein.PolicyError) as caught:
        rein.Policy.from_yaml(TYPO_POLICY, name="inline.yaml")
    assert caught.value.diagnostics[0].file == "inline.yaml"
    with pytest.raises(rein.PolicyError) as caught:
        rein.Policy.from_yaml(TYPO_POLICY)
    assert caught.value.diagnostics[0].file == "<string>"


def test_problems_without_a_place(tmp_path: Path) -> None:
    with pytest.raises(rein.PolicyError) as caught:
        rein.Policy.load(tmp_path / "missing.yaml")
    [d] = caught.value.diagnostics
    assert d.file is None and d.line is None and d.column is None
    assert "cannot read" in d.message
    # A test file is not a policy, and an empty folder holds none.
    with pytest.raises(rein.PolicyError, match="policy test file"):
        rein.Policy.load(EXAMPLES / "refund" / "policy.test.yaml")
    with pytest.raises(rein.PolicyError, match="holds no .yaml"):
        rein.Policy.load(tmp_path)
    with pytest.raises(rein.PolicyError):
        rein.Policy.from_yaml("rules: [")


def test_a_folder_loads_as_the_cli_loads_it() -> None:
    # `*.test.yaml` beside the policy is skipped, as `rein check` skips it.
    folder = rein.Policy.load(EXAMPLES / "refund")
    file = rein.Policy.load(str(REFUND))
    assert folder.version == file.version
    assert folder.version_label == "2026-11-24.1"
    assert sorted(folder.actions) == ["order.lookup", "refund"]
    assert folder.rule_count == 11 and not folder.uses_state
    assert folder.warnings == []
    # Several files merge.
    merged = rein.Policy.load(REPO / "policies" / "agents" / "coding-agent.yaml", EXAMPLES / "exfiltration-guard" / "policy.yaml")
    assert "mcp.mail.send" in merged.actions and merged.uses_state


def test_warnings_do_not_stop_a_load() -> None:
    schema = (EXAMPLES / "actra" / "refund" / "schema.yaml").read_text()
    policy = rein.Policy.from_actra(
        schema,
        "version: 1\nrules:\n  - id: only_bob\n    scope: {actor: bob}\n"
        "    when: {subject: {domain: actor, field: role}, operator: equals, value: {literal: x}}\n    effect: block\n",
    )
    [w] = policy.warnings
    assert (w.severity, w.file, w.line) == ("warning", "policy.yaml", 4)
    assert "never apply" in w.message and w.hint
    assert "never apply" in str(w)


def test_actra_files(tmp_path: Path) -> None:
    base = EXAMPLES / "actra" / "refund"
    files = sorted(p.name for p in base.iterdir())
    assert "schema.yaml" in files and "policy.yaml" in files, files
    policy = rein.Policy.load_actra(base / "schema.yaml", base / "policy.yaml")
    from_text = rein.Policy.from_actra((base / "schema.yaml").read_text(), (base / "policy.yaml").read_text())
    assert from_text.version == policy.version
    cases = [json.loads(line) for line in _actra_requests()]
    cli = run_rein(
        ["check", "--actra-schema", base / "schema.yaml", "--policy", base / "policy.yaml", "--batch"],
        stdin="".join(json.dumps(c) + "\n" for c in cases),
    )
    assert cli.returncode == 0, cli.stderr
    for case, line in zip(cases, cli.stdout.splitlines()):
        got = policy.decide_actra(case).to_dict()
        del got["decision_id"]
        assert got == json.loads(line)
    request = {"action": {"type": "refund", "amount": 5000}, "actor": {"role": "agent"}, "snapshot": {"fraud_flag": False, "refunds_today": 0}}
    (tmp_path / "r.json").write_text(json.dumps(request))
    text = run_rein(["explain", "--actra-schema", base / "schema.yaml", "--policy", base / "policy.yaml", "--request", tmp_path / "r.json"])
    as_json = run_rein(["explain", "--json", "--actra-schema", base / "schema.yaml", "--policy", base / "policy.yaml", "--request", tmp_path / "r.json"])
    e = policy.explain_actra(request)
    assert str(e) == text.stdout and e.to_dict() == json.loads(as_json.stdout)
    assert e.decision.effect == policy.decide_actra(request).effect
    # Actra's traps are refused: a missing type or a non-string type blocks.
    assert policy.decide_actra({"action": {}}).blocked
    assert policy.decide_actra({"action": {"type": 5}}).violation["path"] == "action.type"
    with pytest.raises(rein.PolicyError):
        rein.Policy.from_actra("actions: [", "rules: []")


def _actra_requests() -> list[str]:
    import yaml  # the test file's requests, as rein test reads them

    spec = yaml.safe_load((EXAMPLES / "actra" / "refund" / "policy.test.yaml").read_text())
    return [json.dumps(c["request"]) for c in spec["cases"] if "request" in c]


# ------------------------------------------------------------------ deciding


def test_decisions_and_their_attributes(refund: rein.Policy) -> None:
    small = decide_refund(refund)
    assert (small.effect, small.allowed, small.blocked, small.requires_approval) == ("allow", True, False, False)
    assert small.rules == ["small_refund"] and small.deciding_rules == ["small_refund"]
    assert small.reasons == ["refunds up to 100 are routine"]
    assert small.phase == "before" and not small.default_applied
    assert small.obligations == [] and small.approval_roles == [] and small.violation is None
    assert small.policy_version == refund.version and small.policy_version_label == "2026-11-24.1"

    medium = decide_refund(refund, amount=500)
    assert medium.requires_approval
    [ob] = medium.obligations
    assert (ob.rule, ob.role, ob.ttl_seconds) == ("medium_refund_needs_support", "support", 1800)
    assert medium.approval_roles == ["support"]

    fraud = refund.decide("refund", REFUND_INPUT, actor=AGENT, snapshot={**CALM, "fraud_flag": True})
    assert fraud.blocked
    # Every matched rule is listed; only the deciding one gives its reason.
    assert fraud.rules == ["small_refund", "fraud_guard"] and fraud.deciding_rules == ["fraud_guard"]
    assert fraud.reasons == ["the account is flagged for fraud"]

    broken = refund.decide("refund", {**REFUND_INPUT, "amount": -1}, actor=AGENT, snapshot=CALM)
    assert broken.blocked and broken.violation["path"] == "input.amount"
    assert broken.reasons[0].startswith("contract: input.amount")

    unknown = refund.decide("refnd", {}, actor=AGENT, snapshot=CALM)
    assert unknown.blocked and unknown.violation["path"] == "action" and "refund" in unknown.reasons[0]

    nothing = rein.Policy.from_yaml("contracts: {actions: {a: {input: {}}}}\nrules: []\n").decide("a")
    assert nothing.blocked and nothing.default_applied and nothing.rules == []


def test_a_decision_has_no_truth_value(refund: rein.Policy) -> None:
    d = decide_refund(refund)
    with pytest.raises(TypeError, match="allowed"):
        bool(d)
    with pytest.raises(TypeError):
        if d:  # noqa: SIM108 (the trap this refuses)
            pass
    assert "allow" in repr(d) and d.decision_id in repr(d)


def test_decision_ids_are_fresh_uuid7_or_given(refund: rein.Policy) -> None:
    import uuid

    ids = {decide_refund(refund).decision_id for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert refund.decide("refund", REFUND_INPUT, actor=AGENT, snapshot=CALM, decision_id="d-1").decision_id == "d-1"


def test_to_dict_is_rein_checks_json(refund: rein.Policy, tmp_path: Path) -> None:
    for amount in (50, 500, 5000, -1):
        request = {"action": "refund", "input": {**REFUND_INPUT, "amount": amount}, "actor": AGENT, "snapshot": CALM}
        (tmp_path / "r.json").write_text(json.dumps(request))
        cli = run_rein(["check", REFUND, "--request", tmp_path / "r.json"])
        d = decide_refund(refund, amount=amount)
        got = d.to_dict()
        assert got.pop("decision_id") == d.decision_id
        assert got == json.loads(cli.stdout)


def test_time_is_what_now_reads() -> None:
    policy = rein.Policy.from_yaml(
        "contracts: {actions: {a: {input: {}}}}\n"
        "rules:\n  - {id: new_year, action: a, when: 'now >= timestamp(\"2027-01-01T00:00:00Z\")', effect: allow}\n"
    )
    assert policy.decide("a", time="2027-01-01T00:00:00Z").allowed
    assert policy.decide("a", time="2026-12-31T23:59:59Z").blocked
    utc = datetime.timezone.utc
    assert policy.decide("a", time=datetime.datetime(2027, 1, 1, tzinfo=utc)).allowed
    paris = datetime.timezone(datetime.timedelta(hours=1))
    assert policy.decide("a", time=datetime.datetime(2027, 1, 1, 0, 30, tzinfo=paris)).blocked
    assert policy.decide("a", time=datetime.datetime(2027, 1, 1, 1, 0, tzinfo=paris)).allowed
    for bad in ("2027-01-01", "yesterday", "2027-01-01 00:00:00"):
        with pytest.raises(rein.InputError, match="RFC 3339"):
            policy.decide("a", time=bad)
    with pytest.raises(rein.InputError, match="naive"):
        policy.decide("a", time=datetime.datetime(2027, 1, 1))
    with pytest.raises(rein.InputError):
        policy.decide("a", time=1798761600)


def test_sessions_and_contract_metadata(refund: rein.Policy) -> None:
    assert refund.input_fields("refund") == [
        ("order_id", False, "string"),
        ("amount", False, "number"),
        ("currency", False, "string"),
        ("note", True, "string"),
    ]
    assert refund.input_fields("nope") is None
    assert refund.extra_fields_ignored("refund") is False and refund.extra_fields_ignored("nope") is False
    assert refund.checks_output("refund") and not refund.checks_output("nope")
    plain = rein.Policy.from_yaml("default: allow\ncontracts: {actions: {a: {input: {x: int}}}}\nrules: []\n")
    assert not plain.checks_output("a")


# ------------------------------------------------------------------ explain and outputs


def test_explain_equals_rein_explain(refund: rein.Policy, tmp_path: Path) -> None:
    for amount in (50, 5000, -1):
        request = {"action": "refund", "input": {**REFUND_INPUT, "amount": amount}, "actor": AGENT, "snapshot": CALM}
        (tmp_path / "r.json").write_text(json.dumps(request))
        text = run_rein(["explain", REFUND, "--request", tmp_path / "r.json"]).stdout
        as_json = json.loads(run_rein(["explain", REFUND, "--json", "--request", tmp_path / "r.json"]).stdout)
        e = refund.explain("refund", {**REFUND_INPUT, "amount": amount}, actor=AGENT, snapshot=CALM)
        assert str(e) == text
        assert e.to_dict() == as_json
        assert e.rules == as_json["rules"]
        assert e.decision.effect == as_json["decision"]["effect"]
        assert e.decision is e.decision
    e = refund.explain("refund", {**REFUND_INPUT, "amount": 5000}, actor=AGENT, snapshot=CALM)
    matched = {r["id"] for r in e.rules if r["outcome"]["result"] == "matched"}
    assert matched == {"large_refund"}
    assert any(s["expr"] == "input.amount" and s["value"] == 5000 for r in e.rules for s in r["steps"])


def test_check_output(refund: rein.Policy) -> None:
    ok = refund.check_output("refund", REFUND_INPUT, {"refund_id": "re_1"}, actor=AGENT, snapshot=CALM)
    assert ok.phase == "after" and ok.allowed, ok.reasons
    odd = refund.check_output("refund", REFUND_INPUT, {"refund_id": "r-1"}, actor=AGENT, snapshot=CALM)
    assert odd.blocked and odd.rules == ["refund_id_format"]
    bad = refund.check_output("refund", REFUND_INPUT, {"refund": 1}, actor=AGENT, snapshot=CALM)
    assert bad.blocked and bad.violation["path"].startswith("output")
    missing = refund.check_output("refund", REFUND_INPUT, actor=AGENT, snapshot=CALM)
    assert missing.blocked and missing.violation["path"] == "output"
    failed = refund.check_output("refund", REFUND_INPUT, error="timeout", actor=AGENT, snapshot=CALM)
    # No output to check, and the only after rule reads one: the default.
    assert failed.phase == "after" and failed.violation is None
    assert failed.allowed and failed.default_applied
    with pytest.raises(rein.InputError, match=r"^output\.x: float nan"):
        refund.check_output("refund", REFUND_INPUT, {"x": math.nan}, actor=AGENT, snapshot=CALM)
    # The explanation of an outcome is the after phase's.
    e = refund.explain("refund", REFUND_INPUT, actor=AGENT, snapshot=CALM, output={"refund_id": "r-1"})
    assert e.decision.phase == "after"


def test_after_rules_withhold_an_output() -> None:
    policy = rein.Policy.from_yaml(
        "default: allow\n"
        "contracts: {actions: {read: {input: {path: string}, output: {text: string}}}}\n"
        "rules:\n  - id: no_keys\n    action: read\n    phase: after\n"
        "    when: output.text.contains('PRIVATE KEY')\n    effect: block\n    reason: a key would leak\n"
    )
    assert policy.checks_output("read")
    leak = policy.check_output("read", {"path": "a"}, {"text": "-----BEGIN PRIVATE KEY-----"})
    assert leak.blocked and leak.rules == ["no_keys"] and leak.reasons == ["a key would leak"]
    assert policy.check_output("read", {"path": "a"}, {"text": "hello"}).allowed


# ------------------------------------------------------------------ conversion

@pytest.fixture(scope="module")
def typed() -> rein.Policy:
    return rein.Policy.from_yaml(
        """\
default: allow
contracts:
  actions:
    a:
      input:
        n: {type: int, optional: true}
        f: {type: number, optional: true}
        s: {type: string, optional: true}
        b: {type: bool, optional: true}
        l: {type: list, items: int, optional: true}
        m: {type: map, items: string, optional: true}
rules:
  - {id: big, action: a, when: 'has(input.n) && input.n > 10', effect: block}
  - {id: truth, action: a, when: 'has(input.b) && input.b', effect: require_approval}
  - {id: instant, action: a, when: 'has(input.s) && input.s == "2026-01-01T10:00:00+00:00"', effect: require_approval}
"""
    )


def test_bool_is_not_an_int_and_int_is_not_a_bool(typed: rein.Policy) -> None:
    d = typed.decide("a", {"n": True})
    assert d.blocked and d.violation["path"] == "input.n"
    d = typed.decide("a", {"b": 1})
    assert d.blocked and d.violation["path"] == "input.b"
    assert typed.decide("a", {"b": True}).requires_approval
    assert typed.decide("a", {"n": 11}).blocked and typed.decide("a", {"n": 10}).allowed


def test_ints_of_64_bits_and_no_more(typed: rein.Policy) -> None:
    assert typed.decide("a", {"f": 2**63 - 1}).allowed
    assert typed.decide("a", {"f": -(2**63)}).allowed
    assert typed.decide("a", {"f": 2**64 - 1}).allowed
    for big in (2**64, -(2**63) - 1, 10**30):
        with pytest.raises(rein.InputError, match=r"^input\.f: int .* 64-bit"):
            typed.decide("a", {"f": big})

    class Level(enum.IntEnum):
        HIGH = 11

    assert typed.decide("a", {"n": Level.HIGH}).blocked


def test_floats_must_be_finite(typed: rein.Policy) -> None:
    assert typed.decide("a", {"f": 1.5}).allowed
    for value, text in ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")):
        with pytest.raises(rein.InputError, match=rf"^input\.l\[2\]: float {text} has no JSON form"):
            typed.decide("a", {"l": [1, 2, value]})
    # An error is an InputError, a ReinError and a TypeError.
    with pytest.raises(TypeError):
        typed.decide("a", {"f": math.nan})
    with pytest.raises(rein.ReinError):
        typed.decide("a", {"f": math.nan})


def test_keys_must_be_str(typed: rein.Policy) -> None:
    with pytest.raises(rein.InputError, match=r"^input\.m: a dict key of type `int` \(1\)"):
        typed.decide("a", {"m": {1: "x"}})
    with pytest.raises(rein.InputError, match=r"^input: a dict key of type `tuple`"):
        typed.decide("a", {("a",): 1})
    with pytest.raises(rein.InputError, match=r'^actor\["a b"\]\.c: a value of type `set`'):
        typed.decide("a", {}, actor={"a b": {"c": {1, 2}}})
    assert typed.decide("a", {"m": {"k": "v"}}).allowed


def test_datetimes_need_a_time_zone(typed: rein.Policy) -> None:
    utc = datetime.timezone.utc
    assert typed.decide("a", {"s": datetime.datetime(2026, 1, 1, 10, tzinfo=utc)}).requires_approval
    with pytest.raises(rein.InputError, match=r"^snapshot\.at: a datetime without a time zone"):
        typed.decide("a", {}, snapshot={"at": datetime.datetime(2026, 1, 1, 10)})
    # An offset with seconds, which RFC 3339 cannot write, is given in UTC.
    odd = datetime.timezone(datetime.timedelta(hours=1, seconds=1))
    e = typed.explain("a", {"s": datetime.datetime(2026, 1, 1, 11, 0, 1, tzinfo=odd)})
    assert e.decision.requires_approval
    with pytest.raises(rein.InputError, match="type `date`"):
        typed.decide("a", {"s": datetime.date(2026, 1, 1)})


def test_other_values_have_no_json_form(typed: rein.Policy) -> None:
    for value, name in ((b"x", "bytes"), (object(), "object"), (1j, "complex"), (frozenset(), "frozenset")):
        with pytest.raises(rein.InputError, match=rf"^input\.v\[0\]: a value of type `{name}` has no JSON form"):
            typed.decide("a", {"v": [value]})
    with pytest.raises(rein.InputError, match="not valid Unicode"):
        typed.decide("a", {"s": "\ud800"})
    with pytest.raises(rein.InputError, match="not valid Unicode"):
        typed.decide("a", {"\ud800": 1})


def test_tuples_are_lists_and_subclasses_keep_their_value(typed: rein.Policy) -> None:
    assert typed.decide("a", {"l": (1, 2)}).allowed

    class Name(str):
        pass

    assert typed.decide("a", {Name("s"): Name("2026-01-01T10:00:00+00:00")}).requires_approval


def test_nesting_is_bounded(typed: rein.Policy) -> None:
    deep: list = []
    inner = deep
    for _ in range(100):
        inner.append([])
        inner = inner[0]
    with pytest.raises(rein.InputError, match="nested deeper than 64"):
        typed.decide("a", {"v": deep})
    loop: list = []
    loop.append(loop)
    with pytest.raises(rein.InputError, match="nested deeper than 64"):
        typed.decide("a", {"v": loop})
    cycle: dict = {}
    cycle["self"] = cycle
    with pytest.raises(rein.InputError, match=r"^actor\.self\.self"):
        typed.decide("a", {}, actor=cycle)
    # 63 levels inside the input still convert (the input itself is one).
    ok: list = []
    inner = ok
    for _ in range(62):
        inner.append([])
        inner = inner[0]
    typed.decide("a", {"v": ok})


def test_python_code_run_by_a_value_cannot_break_the_conversion(typed: rein.Policy) -> None:
    # A tzinfo is Python code: it may change the dict being converted. The
    # conversion sees the dict as it was, or as it became, never crashes.
    d: dict = {}

    class Meddling(datetime.tzinfo):
        def utcoffset(self, dt: object) -> datetime.timedelta:
            for i in range(20):
                d[f"k{i}"] = i
            d.pop("b", None)
            return datetime.timedelta(0)

    d.update({"s": datetime.datetime(2026, 1, 1, 10, tzinfo=Meddling()), "b": 1, "l": [{"x": 1}]})
    decided = typed.decide("a", d)
    assert decided.blocked and decided.violation is not None  # `b` is not in the contract
    # A tzinfo that fails is an InputError naming the field, not a crash.

    class Failing(datetime.tzinfo):
        def utcoffset(self, dt: object) -> datetime.timedelta:
            raise RuntimeError("no zone")

    with pytest.raises(rein.InputError, match=r"^input\.m\.at: the datetime could not be read: RuntimeError: no zone"):
        typed.decide("a", {"m": {"at": datetime.datetime(2026, 1, 1, tzinfo=Failing())}})

    # An object claiming to be a datetime through `__class__` is not one,
    # and the claim is not even read.
    class Pretender:
        @property
        def __class__(self) -> type:  # type: ignore[override]
            raise AssertionError("read")

    with pytest.raises(rein.InputError, match="type `Pretender`"):
        typed.decide("a", {"s": Pretender()})


def test_text_arguments_must_be_str(typed: rein.Policy) -> None:
    with pytest.raises(rein.InputError, match=r"^session: expected str, got `int`"):
        typed.decide("a", {}, session=5)
    with pytest.raises(rein.InputError, match=r"^action: expected str, got `NoneType`"):
        typed.decide(None)  # type: ignore[arg-type]
    with pytest.raises(rein.InputError, match=r"^decision_id: expected str"):
        typed.decide("a", decision_id=b"x")  # type: ignore[arg-type]
    with pytest.raises(rein.InputError, match=r"^error: expected str"):
        typed.check_output("a", {}, error=ValueError("x"))  # type: ignore[arg-type]
    with pytest.raises(rein.InputError, match=r"^action: a str that is not valid Unicode"):
        typed.explain("\udc80")
    with pytest.raises(rein.InputError, match=r"^time: a str that is not valid Unicode"):
        typed.decide("a", time="2026-01-01T00:00:00Z\udc80")


def test_a_non_dict_input_breaks_the_contract(typed: rein.Policy) -> None:
    d = typed.decide("a", [1, 2])
    assert d.blocked and d.violation is not None


# ------------------------------------------------------------------ state

SHELL = EXAMPLES / "shell-rate" / "policy.yaml"


def _ls(root: str = "/work/project") -> dict:
    return {
        "command": "ls",
        "cwd": root,
        "dirs": [root],
        "part": "ls",
        "program": "ls",
        "path": "ls",
        "args": [],
        "operands": [],
        "writes": [],
        "reads": [],
        "stdin_from": "",
        "upstream": [],
        "via": [],
        "env": [],
        "dynamic_args": False,
        "understood": True,
        "background": False,
        "disable_sandbox": False,
        "known": True,
    }


def _shell_policy() -> rein.Policy:
    return rein.Policy.load(REPO / "policies" / "agents" / "coding-agent.yaml", SHELL)


SNAPSHOT = {"cwd": "/work/project", "project_root": "/work/project", "git_branch": "main", "home": "/home/dev"}
ACTOR = {"agent": "claude-code", "permission_mode": "default"}


def test_a_limit_holds_across_calls_with_a_state() -> None:
    policy = _shell_policy()
    assert policy.uses_state
    state = rein.State()
    at = "2026-03-02T10:00:00Z"

    def ls(session: str = "run-1", time: str = at) -> rein.Decision:
        return policy.decide("shell.exec", _ls(), actor=ACTOR, snapshot=SNAPSHOT, session=session, time=time, state=state)

    for _ in range(20):
        assert ls().allowed
    over = ls()
    assert over.blocked and "shell_commands_per_minute" in over.rules
    assert any("20 of 20 used" in r for r in over.reasons), over.reasons
    assert over.retry_after_seconds is not None and 0 < over.retry_after_seconds <= 61
    # Another session has its own budget; a minute later there is room.
    assert ls(session="run-2").allowed
    assert ls(time="2026-03-02T10:01:01Z").allowed
    # Without a state, a decision that reads state fails closed.
    stateless = policy.decide("shell.exec", _ls(), actor=ACTOR, snapshot=SNAPSHOT, session="run-1")
    assert stateless.blocked and "needs state" in stateless.reasons[0]
    # Explaining reads the state and writes nothing.
    before = state.to_json()
    assert policy.explain("shell.exec", _ls(), actor=ACTOR, snapshot=SNAPSHOT, session="run-1", time=at, state=state).decision.blocked
    assert state.to_json() == before


def test_a_state_saves_and_loads_as_rein_check_keeps_it(tmp_path: Path) -> None:
    policy = _shell_policy()
    state = rein.State()
    for _ in range(20):
        policy.decide("shell.exec", _ls(), actor=ACTOR, snapshot=SNAPSHOT, session="s", time="2026-03-02T10:00:00Z", state=state)
    copy = rein.State.from_json(state.to_json())
    decided = policy.decide("shell.exec", _ls(), actor=ACTOR, snapshot=SNAPSHOT, session="s", time="2026-03-02T10:00:10Z", state=copy)
    assert decided.blocked
    # `rein check --state` reads the same file.
    (tmp_path / "state.json").write_text(state.to_json())
    request = {"action": "shell.exec", "input": _ls(), "actor": ACTOR, "snapshot": SNAPSHOT, "session": "s", "time": "2026-03-02T10:00:10Z"}
    (tmp_path / "r.json").write_text(json.dumps(request))
    cli = run_rein(["check", REPO / "policies" / "agents" / "coding-agent.yaml", SHELL, "--state", tmp_path / "state.json", "--request", tmp_path / "r.json"])
    assert json.loads(cli.stdout)["effect"] == "block", cli.stderr
    for bad in ("", "{}", "[]", '{"format": "rein-state", "version": 99}'):
        with pytest.raises(rein.ReinError):
            rein.State.from_json(bad)
    assert "uses=20" in repr(state)


def test_session_facts_through_a_state() -> None:
    policy = rein.Policy.from_yaml(
        """\
default: allow
contracts:
  actions:
    file.read: {input: {path: string}}
    web.fetch: {input: {url: string}}
rules:
  - id: secret_read
    action: file.read
    when: input.path.endsWith(".env")
    effect: allow
    labels: [secret]
  - id: no_web_after_secret
    action: web.fetch
    when: '"secret" in session.labels'
    effect: block
    reason: this session read a secret
"""
    )
    state = rein.State()
    fetch = lambda session: policy.decide("web.fetch", {"url": "https://x"}, session=session, state=state)  # noqa: E731
    assert fetch("run-1").allowed
    read = policy.decide("file.read", {"path": "/p/.env"}, session="run-1", state=state)
    assert read.allowed and read.labels == ["secret"]
    blocked = fetch("run-1")
    assert blocked.blocked and blocked.reasons == ["this session read a secret"]
    assert fetch("run-2").allowed
    # Each State is its own: a fresh one has no label.
    assert policy.decide("web.fetch", {"url": "https://x"}, session="run-1", state=rein.State()).allowed
