"""A client for `rein serve`: decide, report outcomes, explain, approvals.

Many processes that decide through one server share its limits, sessions,
approvals and audit log. The client fails closed: when no decision can be
had (the server is unreachable, too slow, failing, refuses the token, or
answers something that is not a decision) `decide` raises `rein.Blocked`
naming the cause. See `Client.decide`'s `fail_open` for the one, explicit,
exception.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import re
import time as _time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote

import httpx

from rein.errors import Blocked, InputError, ReinError

__all__ = ["Client", "AsyncClient", "RemoteDecision"]

JsonValue = Any
TimeLike = Union[str, datetime.datetime]

DEFAULT_TIMEOUT = 5.0
"""Seconds a call may take, connecting included, before it is `Blocked`."""

_EFFECTS = ("allow", "block", "require_approval")
_MAX_DEPTH = 64
_MAX_VALUES = 1_000_000
"""Most values (scalars, lists and dicts, counted along every path) one
conversion takes, as the native module: a list holding the one below twice,
40 levels deep, is small in memory but has 2**40 leaves to write."""
_MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Largest answer read from the server (its answers are a few kilobytes):
a larger one is not a decision, and is not read into memory whole."""


class _Missing:
    """The default of an argument not given (its repr is what help() shows)."""

    def __repr__(self) -> str:
        return "<not given>"


_MISSING: Any = _Missing()


class RemoteDecision:
    """A decision made by `rein serve`, with the attributes of
    `rein.Decision` (the in-process one) plus what the server adds:
    `approval_id`, `approval_expires_at` and `approval` (the pending
    approval a `require_approval` opened), `audit_seq` (its audit record),
    `chain` (the delegation chain the token binds) and `degraded`.

    `default_applied` is always False and `obligations` empty: the server's
    answer does not carry them (`approval_roles` has the roles). Read-only,
    as the in-process `Decision`.
    """

    __slots__ = (
        "decision_id",
        "effect",
        "phase",
        "rules",
        "deciding_rules",
        "matched",
        "reasons",
        "default_applied",
        "obligations",
        "approval",
        "approval_id",
        "approval_roles",
        "approval_expires_at",
        "labels",
        "violation",
        "retry_after_seconds",
        "policy_version",
        "policy_version_label",
        "audit_seq",
        "chain",
        "degraded",
        "_answer",
        "_sealed",
    )

    decision_id: Optional[str]
    """The server's id of this decision (outcomes name it); None only for a
    `degraded` decision, which the server never made."""
    effect: str
    """`"allow"`, `"block"` or `"require_approval"`."""
    phase: str
    """`"before"` (decide) or `"after"` (outcome)."""
    rules: List[str]
    """Every rule that matched, in policy order."""
    deciding_rules: List[str]
    """The matched rules whose own effect is the decision's (those that
    decided); `rules` also lists those that matched with another effect."""
    matched: List[Dict[str, str]]
    """Each matched rule: `{"id", "effect", "reason"}`."""
    reasons: List[str]
    default_applied: bool
    obligations: List[Any]
    approval: Optional[Dict[str, Any]]
    """The pending approval: `{"id", "role", "roles", "expires_at"}`."""
    approval_id: Optional[str]
    approval_roles: List[str]
    approval_expires_at: Optional[str]
    labels: List[str]
    violation: Optional[Dict[str, str]]
    retry_after_seconds: Optional[int]
    policy_version: str
    policy_version_label: Optional[str]
    audit_seq: Optional[int]
    """The audit record's sequence number; None when none was written."""
    chain: List[Dict[str, str]]
    """The delegation chain the token binds, from the person down to the
    acting agent: `[{"kind", "id"}, ...]`, as rules read `actor.chain`;
    empty when the token binds none (or the server is older)."""
    degraded: bool
    """True only for the allow-shaped stand-in `fail_open=True` returns when
    the server could not be asked: nothing was decided or recorded."""

    def __init__(self, answer: Mapping[str, Any], *, degraded: bool = False) -> None:
        """Builds a decision from the server's answer (JSON object);
        raises `ValueError` when it is not one."""
        effect = answer.get("effect")
        if effect not in _EFFECTS:
            raise ValueError(f"`effect` is {effect!r}, not one of {', '.join(_EFFECTS)}")
        decision_id = answer.get("decision_id")
        if not degraded and (not isinstance(decision_id, str) or not decision_id):
            raise ValueError("no `decision_id`")
        self.decision_id = decision_id
        self.effect = effect
        self.phase = _str(answer, "phase", "before")
        if self.phase not in ("before", "after"):
            raise ValueError(f"`phase` is {self.phase!r}")
        self.rules = _str_list(answer, "rules")
        matched = _str_records(answer, "matched", ("id", "effect"), "rules")
        self.matched = matched
        self.deciding_rules = [m["id"] for m in matched if m["effect"] == effect]
        self.reasons = _str_list(answer, "reasons")
        self.default_applied = False
        self.obligations = []
        approval = answer.get("approval")
        if approval is not None and not isinstance(approval, dict):
            raise ValueError("`approval` is not an object")
        self.approval = approval
        self.approval_id = _str(approval or {}, "id", None)
        roles = _str_list(approval or {}, "roles")
        if not roles and approval and isinstance(approval.get("role"), str):
            roles = [approval["role"]]
        self.approval_roles = roles
        self.approval_expires_at = _str(approval or {}, "expires_at", None)
        self.labels = _str_list(answer, "labels")
        violation = answer.get("violation")
        self.violation = violation if isinstance(violation, dict) else None
        retry = answer.get("retry_after_seconds")
        self.retry_after_seconds = retry if isinstance(retry, int) and not isinstance(retry, bool) else None
        self.policy_version = _str(answer, "policy_version", "")
        self.policy_version_label = _str(answer, "policy_version_label", None)
        seq = answer.get("audit_seq")
        self.audit_seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        if self.effect == "allow" and not degraded and self.audit_seq is None:
            # The server answers allow only once it is recorded.
            raise ValueError("an `allow` without its audit record (`audit_seq`)")
        chain = _str_records(answer, "chain", ("kind", "id"), "{kind, id} links")
        self.chain = [{"kind": link["kind"], "id": link["id"]} for link in chain]
        self.degraded = degraded
        self._answer = dict(answer)
        self._sealed = True

    def __setattr__(self, name: str, value: Any) -> None:
        # Read-only once built, as the in-process Decision: whoever is shown
        # a decision (an observer, a resolver's caller) cannot turn a block
        # the guard has yet to act on into an allow.
        if getattr(self, "_sealed", False):
            raise AttributeError(f"a RemoteDecision is read-only (`{name}`)")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a RemoteDecision is read-only (`{name}`)")

    def __reduce__(self) -> Any:
        """Pickles as the answer it was built from."""
        return (_rebuild_decision, (self._answer, self.degraded))

    @property
    def allowed(self) -> bool:
        """Whether the effect is allow."""
        return self.effect == "allow"

    @property
    def blocked(self) -> bool:
        """Whether the effect is block."""
        return self.effect == "block"

    @property
    def requires_approval(self) -> bool:
        """Whether the effect is require_approval."""
        return self.effect == "require_approval"

    def to_dict(self) -> Dict[str, JsonValue]:
        """The server's answer as it came (plus `degraded` when set)."""
        out = dict(self._answer)
        if self.degraded:
            out["degraded"] = True
        return out

    def __bool__(self) -> bool:
        """A decision is neither true nor false: test `.allowed`. (Truth
        would read a `block` object as permission.)"""
        raise TypeError("a decision has no truth value; test `.allowed` (or `.effect`)")

    def __repr__(self) -> str:
        # The form of the in-process Decision's repr, so both read alike.
        flag = ", degraded=True" if self.degraded else ""
        return (
            f"RemoteDecision(effect={_quoted(self.effect)}, rules={_quoted_list(self.rules)}, "
            f"reasons={_quoted_list(self.reasons)}, decision_id={_quoted(self.decision_id)}{flag})"
        )


def _quoted(value: Optional[str]) -> str:
    return "None" if value is None else json.dumps(value, ensure_ascii=False)


def _quoted_list(values: List[str]) -> str:
    return "[" + ", ".join(_quoted(v) for v in values) + "]"


def _rebuild_decision(answer: Mapping[str, Any], degraded: bool) -> RemoteDecision:
    return RemoteDecision(answer, degraded=degraded)


def _str(obj: Mapping[str, Any], key: str, default: Any) -> Any:
    value = obj.get(key, default)
    if value is None or isinstance(value, str):
        return value if value is not None else default
    raise ValueError(f"`{key}` is not a string")


def _str_records(obj: Mapping[str, Any], key: str, fields: Tuple[str, ...], what: str) -> List[Dict[str, Any]]:
    """`obj[key]`: a list of objects whose `fields` are strings (absent or
    null: empty); anything else is refused, naming `what` it should be."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and all(isinstance(item.get(f), str) for f in fields) for item in value
    ):
        raise ValueError(f"`{key}` is not a list of {what}")
    return value


def _str_list(obj: Mapping[str, Any], key: str) -> List[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"`{key}` is not a list of strings")
    return list(value)


# ---- request bodies ------------------------------------------------------


def to_json_value(value: Any, path: str = "value", depth: int = 0) -> JsonValue:
    """`value` as exact JSON, by the native module's rules: a bool, an int
    that fits 64 bits, a finite float, a str, None, a list or tuple of
    these, a dict with str keys of these, a datetime with a time zone (as
    RFC 3339 text), at most 1,000,000 values in all. Anything else raises
    `InputError` naming the path."""
    return _to_json(value, path, depth, [_MAX_VALUES])


def _to_json(value: Any, path: str, depth: int, budget: List[int]) -> JsonValue:
    budget[0] -= 1
    if budget[0] < 0:
        raise InputError(f"{path}: more than {_MAX_VALUES} values in all (a value held in many places counts each time)")
    if depth > _MAX_DEPTH:
        raise InputError(f"{path}: nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return int(value)
        raise InputError(f"{path}: int {value} does not fit 64 bits")
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise InputError(f"{path}: float {value!r} has no JSON form")
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{path}[{i}]", depth + 1, budget) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InputError(f"{path}: key {k!r} is a {type(k).__name__}, not a str")
            out[k] = _to_json(v, f"{path}.{k}", depth + 1, budget)
        return out
    if isinstance(value, datetime.datetime):
        return _rfc3339(value, path)
    raise InputError(f"{path}: a {type(value).__name__} has no JSON form")


def _rfc3339(value: TimeLike, path: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InputError(f"{path}: a datetime without a time zone is ambiguous; give it a tzinfo")
        return value.isoformat()
    raise InputError(f"{path}: a {type(value).__name__} is not a time (str or datetime)")


def _decide_body(
    action: str,
    input: Optional[Mapping[str, JsonValue]],
    actor: Optional[Mapping[str, JsonValue]],
    snapshot: Optional[Mapping[str, JsonValue]],
    session: Optional[str],
    time: Optional[TimeLike],
    approval: Optional[str],
) -> bytes:
    if not isinstance(action, str):
        raise InputError(f"action: a {type(action).__name__}, not a str")
    body: Dict[str, Any] = {"action": action}
    for name, value in (("input", input), ("actor", actor), ("snapshot", snapshot)):
        if value is not None:
            if not isinstance(value, Mapping):
                raise InputError(f"{name}: a {type(value).__name__}, not a dict")
            body[name] = to_json_value(dict(value), name)
    if session is not None:
        if not isinstance(session, str):
            raise InputError(f"session: a {type(session).__name__}, not a str")
        body["session"] = session
    if time is not None:
        body["time"] = _rfc3339(time, "time")
    if approval is not None:
        if not isinstance(approval, str):
            raise InputError(f"approval: a {type(approval).__name__}, not a str")
        body["approval"] = approval
    return _dumps(body)


def _outcome_body(decision_id: str, output: Any, error: Optional[str]) -> bytes:
    if not isinstance(decision_id, str) or not decision_id:
        raise InputError("decision_id: not a decision id")
    body: Dict[str, Any] = {"decision_id": decision_id}
    if error is not None:
        if output is not _MISSING:
            raise InputError("give either `output` (the action ran) or `error` (it failed), not both")
        body["error"] = str(error)
    else:
        body["output"] = to_json_value(None if output is _MISSING else output, "output")
    return _dumps(body)


def _dumps(body: Any) -> bytes:
    return json.dumps(body, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()


# ---- answers -------------------------------------------------------------


class _NoDecision(Exception):
    """No decision could be had; `outage` tells whether the server could
    not be asked (what `fail_open` covers) rather than refused."""

    def __init__(self, cause: str, *, outage: bool, decision_id: Optional[str] = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.outage = outage
        self.decision_id = decision_id


def _unique(pairs: List[Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Read as the last one by `json`: `{"effect": "block", "effect":
            # "allow"}` must not become an allow.
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _body(response: httpx.Response) -> Any:
    """The answer's JSON; None when it is not JSON (or repeats a key)."""
    try:
        return json.loads(response.content, object_pairs_hook=_unique)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('code', '?')}: {err.get('message', '')}"
    return "no readable error"


def _read_decision(response: httpx.Response, what: str, decision_id: Optional[str] = None) -> RemoteDecision:
    """The decision in `response` (of phase `after` and for `decision_id`
    when it answers an outcome), or `_NoDecision` with why not."""
    status = response.status_code
    body = _body(response)
    if status == 200:
        if not isinstance(body, dict):
            raise _NoDecision(f"rein serve answered {what} with something that is not JSON", outage=False)
        try:
            decision = RemoteDecision(body)
        except ValueError as e:
            raise _NoDecision(f"rein serve answered {what} with something that is not a decision: {e}", outage=False)
        phase = "after" if decision_id is not None else "before"
        if decision.phase != phase or (decision_id is not None and decision.decision_id != decision_id):
            # Not the answer to this request (a proxy's cache, a mix-up).
            raise _NoDecision(
                f"rein serve answered {what} with a decision of phase `{decision.phase}` for "
                f"`{decision.decision_id}`, not this request's",
                outage=False,
            )
        return decision
    recorded = body.get("decision_id") if isinstance(body, dict) else None
    recorded = recorded if isinstance(recorded, str) else None
    if status == 401:
        raise _NoDecision(
            f"rein serve refused the token (401 {_error_text(body)}); check the token given to rein.Client",
            outage=False,
        )
    code = body["error"].get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    if status == 403 and code != "other_client":
        raise _NoDecision(
            f"rein serve refused this token the route (403 {_error_text(body)}); it needs an agent token",
            outage=False,
        )
    if status >= 500:
        # Rein's own failure answers say `block` (its timeout, a store that
        # failed, a panic): that is its answer, which no `fail_open`
        # overrides. A 5xx without it (a proxy, a crash mid-answer) is an
        # outage.
        said_block = isinstance(body, dict) and body.get("effect") == "block"
        raise _NoDecision(
            f"rein serve failed ({status} {_error_text(body)})", outage=not said_block, decision_id=recorded
        )
    if isinstance(body, dict) and body.get("effect") == "block" and recorded:
        # Refused and recorded as a `block` (a body the server could not
        # decide, an outcome reported twice or by another token).
        return RemoteDecision(
            {
                "decision_id": recorded,
                "effect": "block",
                "phase": "after" if what == "the outcome" else "before",
                "rules": [],
                "reasons": [f"rein serve refused the request ({status} {_error_text(body)})"],
                "audit_seq": body.get("audit_seq"),
                "error": body.get("error"),
            }
        )
    raise _NoDecision(f"rein serve answered {what} with {status} ({_error_text(body)})", outage=False)


def _read_json(response: httpx.Response, what: str) -> Dict[str, Any]:
    body = _body(response)
    if response.status_code == 200 and isinstance(body, dict):
        return body
    if response.status_code == 200:
        raise _NoDecision(f"rein serve answered {what} with something that is not a JSON object", outage=False)
    raise _NoDecision(
        f"rein serve answered {what} with {response.status_code} ({_error_text(body)})",
        outage=response.status_code >= 500,
    )


def _retry_once(e: Exception) -> bool:
    """Whether a failed call is sent once more, on a new connection: a
    kept-alive connection the server closed as the request went out (after
    an answer sent without reading the body, or idle too long) fails
    without an answer, and would otherwise read as an outage, which
    `fail_open` turns into an allow. A timeout is not retried (that would
    double the wait); a second failure is the answer. A request the server
    did handle before its connection broke is then decided twice: both are
    recorded, and a limit counts both (the strict side)."""
    return isinstance(e, httpx.TransportError) and not isinstance(e, httpx.TimeoutException)


def _transport_failure(e: Exception, timeout: Optional[float]) -> _NoDecision:
    if isinstance(e, httpx.TimeoutException):
        return _NoDecision(f"rein serve did not answer within {timeout} s ({type(e).__name__})", outage=True)
    return _NoDecision(f"rein serve unreachable: {type(e).__name__}: {e}", outage=True)


def _degraded(cause: str, phase: str) -> RemoteDecision:
    return RemoteDecision(
        {
            "decision_id": None,
            "effect": "allow",
            "phase": phase,
            "rules": [],
            "reasons": [f"fail-open: no decision could be had ({cause})"],
        },
        degraded=True,
    )


def _check_fail_open(fail_open: Any) -> None:
    """`fail_open` is True or False: `"false"` (a setting read as text) is
    truthy, and must not turn a refusal into an allow."""
    if not isinstance(fail_open, bool):
        raise TypeError(f"fail_open takes True or False, not {fail_open!r}")


def _settle(failure: _NoDecision, action: str, fail_open: bool, phase: str) -> RemoteDecision:
    if fail_open and failure.outage:
        return _degraded(failure.cause, phase)
    raise Blocked(failure.cause, action=action, decision_id=failure.decision_id) from None


def _wait_done(approval: Mapping[str, Any]) -> bool:
    """Whether waiting for `approval` is over: decided, or expired."""
    if approval.get("state") != "pending":
        return True
    at = _parse_time(approval.get("expires_at"))
    return at is not None and at <= datetime.datetime.now(datetime.timezone.utc)


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _parse_time(text: Any) -> Optional[datetime.datetime]:
    """An RFC 3339 time as the server writes it (nanoseconds, `Z`), which
    `fromisoformat` before Python 3.11 does not read; None if it is not one."""
    if not isinstance(text, str):
        return None
    found = _RFC3339.match(text)
    if not found:
        return None
    whole, fraction, zone = found.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    try:
        return datetime.datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}")
    except ValueError:
        return None


class _Deadline:
    """When a call must be over: httpx's timeout bounds each read, not the
    call, and an answer trickling a byte at a time would hold it for ever."""

    def __init__(self, timeout: Optional[float]) -> None:
        self.at = None if timeout is None else _time.monotonic() + timeout

    def left(self) -> Optional[float]:
        """Seconds left (at least a little, so httpx still tries once);
        None without a timeout."""
        return None if self.at is None else max(0.001, self.at - _time.monotonic())

    def check(self) -> None:
        if self.at is not None and _time.monotonic() > self.at:
            raise httpx.ReadTimeout("the answer took too long")


class _Answer:
    """An answer's body read chunk by chunk, within the deadline and
    `_MAX_ANSWER_BYTES`."""

    def __init__(self, deadline: _Deadline) -> None:
        self.deadline = deadline
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > _MAX_ANSWER_BYTES:
            raise _NoDecision(
                f"rein serve answered with more than {_MAX_ANSWER_BYTES} bytes, larger than any answer", outage=False
            )
        self.deadline.check()

    def response(self, streamed: httpx.Response) -> httpx.Response:
        return httpx.Response(
            streamed.status_code, headers=streamed.headers, content=bytes(self.data), request=streamed.request
        )


class _Base:
    def __init__(self, url: str, token: str, timeout: Optional[float]) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"rein.Client needs an http:// or https:// URL, not {url!r}")
        if not isinstance(token, str) or not token.strip():
            raise ValueError("rein.Client needs a token (a bearer token of role agent)")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            # Rein serve compresses nothing; a compressed answer would be
            # inflated a chunk at a time before `_MAX_ANSWER_BYTES` is checked.
            "Accept-Encoding": "identity",
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class Client(_Base):
    """A client for `rein serve` over HTTP, keeping connections alive.

    `token` is a bearer token of role `agent` (an approver's token can read
    and decide approvals, not decide requests). `timeout` bounds every call
    in seconds, connecting included. Thread-safe; share one per process.
    Use it as a context manager, or `close()` it.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        transport: Optional[httpx.BaseTransport] = None,
        verify: Union[bool, str] = True,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.Client(
            base_url=self.url,
            headers=self._headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _send(self, method: str, path: str, content: Optional[bytes] = None) -> httpx.Response:
        deadline = _Deadline(self.timeout)
        for attempt in (1, 2):
            try:
                with self._http.stream(method, path, content=content, timeout=deadline.left()) as response:
                    body = _Answer(deadline)
                    for chunk in response.iter_bytes():
                        body.add(chunk)
                    return body.response(response)
            except httpx.HTTPError as e:
                if attempt == 1 and _retry_once(e):
                    continue
                raise _transport_failure(e, self.timeout) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def decide(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Optional[Mapping[str, JsonValue]] = None,
        snapshot: Optional[Mapping[str, JsonValue]] = None,
        session: Optional[str] = None,
        time: Optional[TimeLike] = None,
        approval: Optional[str] = None,
        fail_open: bool = False,
    ) -> RemoteDecision:
        """Decides a request (`POST /v1/decide`); the server records it
        before answering. `approval` names a granted approval for this
        identical request.

        Raises `Blocked` naming the cause when no decision can be had: the
        server is unreachable or too slow (`timeout`), fails (5xx), refuses
        the token (401/403), or answers something that is not a decision.
        A value with no JSON form raises `InputError`.

        `fail_open=True` (dangerous): when the server cannot be asked
        (unreachable, no answer within `timeout`, a 5xx that is not Rein's
        own `block`), return an allow-shaped decision with `.degraded =
        True` instead of raising. The action then runs without any decision
        or audit record; a refused token, Rein's own failure answer (which
        says block) or an answer that is not a decision still raises.
        """
        _check_fail_open(fail_open)
        body = _decide_body(action, input, actor, snapshot, session, time, approval)
        try:
            return _read_decision(self._send("POST", "/v1/decide", body), "the decision")
        except _NoDecision as failure:
            return _settle(failure, action, fail_open, "before")

    def outcome(
        self,
        decision_id: str,
        output: Any = _MISSING,
        *,
        error: Optional[str] = None,
        action: str = "outcome",
        fail_open: bool = False,
    ) -> RemoteDecision:
        """Reports what the action of `decision_id` returned (`output`) or
        the error it raised instead (`error`), checked by the output
        contract and the `after` rules (`POST /v1/outcome`). `block` means
        withhold the output (or the error text). Fails closed as `decide`
        does (`action` names the action in the exception)."""
        _check_fail_open(fail_open)
        body = _outcome_body(decision_id, output, error)
        try:
            return _read_decision(self._send("POST", "/v1/outcome", body), "the outcome", decision_id)
        except _NoDecision as failure:
            return _settle(failure, action, fail_open, "after")

    def explain(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Optional[Mapping[str, JsonValue]] = None,
        snapshot: Optional[Mapping[str, JsonValue]] = None,
        session: Optional[str] = None,
        time: Optional[TimeLike] = None,
    ) -> Dict[str, JsonValue]:
        """How the server would decide this request now, with the trace of
        every rule (`POST /v1/explain`, `rein explain --json`'s form:
        `{"decision": ..., "rules": [...]}`). Records, reserves and opens
        nothing. Raises `Blocked` with the cause when the server cannot
        answer."""
        body = _decide_body(action, input, actor, snapshot, session, time, None)
        try:
            return _read_json(self._send("POST", "/v1/explain", body), "the explanation")
        except _NoDecision as failure:
            raise Blocked(failure.cause, action=action) from None

    def approval(self, approval_id: str) -> Dict[str, JsonValue]:
        """The approval `approval_id` (`GET /v1/approvals/{id}`): `state`
        (`pending`, `granted`, `denied`, `used`), `expires_at`,
        `decided_by`, `comment`... An agent token reads those its own
        requests opened. Raises `ReinError` when it cannot be read."""
        try:
            return _read_json(self._send("GET", f"/v1/approvals/{quote(approval_id, safe='')}"), "the approval")
        except _NoDecision as failure:
            raise ReinError(failure.cause) from None

    def wait_for_approval(self, approval_id: str, timeout: float, poll: float = 0.5) -> Dict[str, JsonValue]:
        """Polls approval `approval_id` every `poll` seconds until it is no
        longer pending (granted, denied, used) or has expired, for at most
        `timeout` seconds; returns it as last read (still `pending` when
        time ran out: the caller decides what that means)."""
        deadline = _time.monotonic() + max(0.0, timeout)
        poll = max(poll, 0.01)
        while True:
            approval = self.approval(approval_id)
            left = deadline - _time.monotonic()
            if _wait_done(approval) or left <= 0:
                return approval
            _time.sleep(min(poll, left))


class AsyncClient(_Base):
    """`Client` for asyncio code: the same calls, awaited."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: Optional[float] = DEFAULT_TIMEOUT,
        transport: Optional[httpx.AsyncBaseTransport] = None,
        verify: Union[bool, str] = True,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=self._headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, content: Optional[bytes] = None) -> httpx.Response:
        deadline = _Deadline(self.timeout)
        for attempt in (1, 2):
            try:
                # The whole exchange, headers included, within the deadline.
                return await asyncio.wait_for(self._exchange(method, path, content, deadline), deadline.left())
            except asyncio.TimeoutError:
                raise _transport_failure(httpx.ReadTimeout("the answer took too long"), self.timeout) from None
            except httpx.HTTPError as e:
                if attempt == 1 and _retry_once(e):
                    continue
                raise _transport_failure(e, self.timeout) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(
        self, method: str, path: str, content: Optional[bytes], deadline: "_Deadline"
    ) -> httpx.Response:
        async with self._http.stream(method, path, content=content, timeout=deadline.left()) as response:
            body = _Answer(deadline)
            async for chunk in response.aiter_bytes():
                body.add(chunk)
            return body.response(response)

    async def decide(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Optional[Mapping[str, JsonValue]] = None,
        snapshot: Optional[Mapping[str, JsonValue]] = None,
        session: Optional[str] = None,
        time: Optional[TimeLike] = None,
        approval: Optional[str] = None,
        fail_open: bool = False,
    ) -> RemoteDecision:
        """`Client.decide`, awaited (the same fail-closed rules)."""
        _check_fail_open(fail_open)
        body = _decide_body(action, input, actor, snapshot, session, time, approval)
        try:
            return _read_decision(await self._send("POST", "/v1/decide", body), "the decision")
        except _NoDecision as failure:
            return _settle(failure, action, fail_open, "before")

    async def outcome(
        self,
        decision_id: str,
        output: Any = _MISSING,
        *,
        error: Optional[str] = None,
        action: str = "outcome",
        fail_open: bool = False,
    ) -> RemoteDecision:
        """`Client.outcome`, awaited."""
        _check_fail_open(fail_open)
        body = _outcome_body(decision_id, output, error)
        try:
            return _read_decision(await self._send("POST", "/v1/outcome", body), "the outcome", decision_id)
        except _NoDecision as failure:
            return _settle(failure, action, fail_open, "after")

    async def explain(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Optional[Mapping[str, JsonValue]] = None,
        snapshot: Optional[Mapping[str, JsonValue]] = None,
        session: Optional[str] = None,
        time: Optional[TimeLike] = None,
    ) -> Dict[str, JsonValue]:
        """`Client.explain`, awaited."""
        body = _decide_body(action, input, actor, snapshot, session, time, None)
        try:
            return _read_json(await self._send("POST", "/v1/explain", body), "the explanation")
        except _NoDecision as failure:
            raise Blocked(failure.cause, action=action) from None

    async def approval(self, approval_id: str) -> Dict[str, JsonValue]:
        """`Client.approval`, awaited."""
        try:
            response = await self._send("GET", f"/v1/approvals/{quote(approval_id, safe='')}")
            return _read_json(response, "the approval")
        except _NoDecision as failure:
            raise ReinError(failure.cause) from None

    async def wait_for_approval(self, approval_id: str, timeout: float, poll: float = 0.5) -> Dict[str, JsonValue]:
        """`Client.wait_for_approval`, awaited (sleeps without blocking the
        event loop)."""
        deadline = _time.monotonic() + max(0.0, timeout)
        poll = max(poll, 0.01)
        while True:
            approval = await self.approval(approval_id)
            left = deadline - _time.monotonic()
            if _wait_done(approval) or left <= 0:
                return approval
            await asyncio.sleep(min(poll, left))

