"""What a newcomer meets first: help() texts, messages of the usual
mistakes, and whether each says what to do next."""

from __future__ import annotations

import ast
import dataclasses
import pydoc

import pytest

import rein
from conftest import EXAMPLES, REPO

REFUND = EXAMPLES / "refund" / "policy.yaml"
STUB = REPO / "bindings" / "python" / "python" / "rein" / "_native.pyi"


def stub_docstrings() -> dict[str, str]:
    """The docstring of each class of `_native.pyi` and of each of its
    methods and attributes, by `Class` and `Class.member`."""
    docs: dict[str, str] = {}
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs[node.name] = ast.get_docstring(node) or ""
        for i, member in enumerate(node.body):
            if isinstance(member, ast.FunctionDef) and not member.name.startswith("__"):
                docs[f"{node.name}.{member.name}"] = ast.get_docstring(member) or ""
            elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                after = node.body[i + 1] if i + 1 < len(node.body) else None
                text = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else ""
                docs[f"{node.name}.{member.target.id}"] = str(text)
    return docs


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", sorted(stub_docstrings()))
def test_help_says_what_the_stub_says(name: str) -> None:
    # help(rein.Policy.decide) reads the compiled docstring, an IDE the
    # stub's: both must tell a user the same (what raises, what blocks).
    obj: object = rein._native
    for part in name.split("."):
        obj = getattr(obj, part)
    assert words(obj.__doc__ or "") == words(stub_docstrings()[name])


def test_the_stub_declares_everything_the_module_has() -> None:
    documented = stub_docstrings()
    for name in dir(rein._native):
        value = getattr(rein._native, name)
        if isinstance(value, type):
            assert name in documented, f"class {name} is not in _native.pyi"
            for member in dir(value):
                if not member.startswith("_"):
                    assert f"{name}.{member}" in documented, f"{name}.{member} is not in _native.pyi"


def test_constructing_a_policy_says_how_to_load_one() -> None:
    with pytest.raises(TypeError) as caught:
        rein.Policy("examples/refund/policy.yaml")  # type: ignore[call-arg]
    assert "rein.Policy.load(" in str(caught.value)
    assert "rein.Policy.from_yaml(" in str(caught.value)


def test_a_misspelt_action_at_decoration_names_the_closest_one() -> None:
    guard = rein.Guard(rein.Policy.load(REFUND))
    with pytest.raises(rein.GuardError) as caught:

        @guard.action("refnd")
        def refund(order_id: str, amount: float, currency: str) -> None: ...

    assert "did you mean `refund`?" in str(caught.value)


def test_a_dataclass_or_model_as_input_says_how_to_convert_it() -> None:
    @dataclasses.dataclass
    class Refund:
        order_id: str
        amount: float
        currency: str

    policy = rein.Policy.load(REFUND)
    with pytest.raises(rein.InputError) as caught:
        policy.decide("refund", Refund("ord_abc123", 5, "EUR"))  # type: ignore[arg-type]
    assert "dataclasses.asdict(" in str(caught.value)

    class Model:
        """Quacks like a pydantic model."""

        def model_dump(self) -> dict[str, object]:
            return {}

    with pytest.raises(rein.InputError) as caught:
        policy.decide("refund", {"order_id": Model()})
    assert "input.order_id" in str(caught.value)
    assert ".model_dump(mode=\"json\")" in str(caught.value)


def test_help_of_the_guard_shows_no_object_addresses() -> None:
    text = pydoc.render_doc(rein.Guard, renderer=pydoc.plaintext)
    assert "object at 0x" not in text
    text = pydoc.render_doc(rein.Client, renderer=pydoc.plaintext)
    assert "object at 0x" not in text


def test_the_decorator_without_a_name_says_how_to_write_it() -> None:
    guard = rein.Guard(rein.Policy.load(REFUND))
    with pytest.raises(rein.GuardError) as caught:

        @guard.action  # type: ignore[arg-type]
        def refund(order_id: str, amount: float, currency: str) -> None: ...

    assert '@guard.action("<action>") above `refund`' in str(caught.value)


def test_a_remote_decision_reads_like_an_in_process_one() -> None:
    client = rein.Client("http://127.0.0.1:9", token="t", timeout=0.5)
    degraded = client.decide("refund", {"amount": 1}, actor={"id": "a"}, fail_open=True)
    assert repr(degraded).startswith('RemoteDecision(effect="allow", rules=[], reasons=["fail-open: ')
    assert repr(degraded).endswith("decision_id=None, degraded=True)")
    local = rein.Policy.load(REFUND).decide("refund", {"amount": 1})
    assert repr(local).startswith('Decision(effect="block", rules=[], reasons=["contract: ')


def test_an_explanation_repr_names_the_matched_rules_not_a_count() -> None:
    policy = rein.Policy.load(REFUND)
    explained = policy.explain(
        "refund",
        {"order_id": "ord_abc123", "amount": 500, "currency": "EUR"},
        actor={"id": "a1", "role": "agent"},
        snapshot={"fraud_flag": False, "refunds_today": 0, "account_age_days": 400},
    )
    assert repr(explained) == (
        f'Explanation(effect="require_approval", rules=["medium_refund_needs_support"], '
        f"considered={len(explained.rules)})"
    )


def test_the_readme_samples_before_client_mode_run_as_written(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The package README's samples are run from the repository's root, one
    # after the other in one namespace, as it tells a reader to (the client's
    # need a running server: test_client.py covers those calls).
    import re

    readme = (REPO / "bindings" / "python" / "README.md").read_text(encoding="utf-8")
    before_client = readme.split("\n## Client mode\n")[0]
    blocks = re.findall(r"```python\n(.*?)```", before_client, re.S)
    assert len(blocks) >= 8
    monkeypatch.chdir(REPO)
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "Decision(effect=\"allow\", rules=[\"small_refund\"]" in printed
    assert "`refund` blocked by `large_refund`: refunds over 1000 need an admin" in printed
    assert "policy.yaml:9:17" in printed
    assert namespace["d"].retry_after_seconds == 86400  # type: ignore[attr-defined]


def test_a_call_that_does_not_fit_the_signature_names_the_function() -> None:
    guard = rein.Guard(rein.Policy.load(REFUND), actor={"id": "a1", "role": "agent"})
    ran = []

    @guard.action("refund", fields={"note": None})
    def refund(order_id: str, amount: float, currency: str) -> None:
        ran.append(order_id)

    with pytest.raises(TypeError, match=r"\brefund\(\) missing a required argument: 'currency'$"):
        refund("ord_abc123", 5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"\brefund\(\) got an unexpected keyword argument 'bogus'$"):
        refund("ord_abc123", 5, "EUR", bogus=1)  # type: ignore[call-arg]
    assert ran == []
