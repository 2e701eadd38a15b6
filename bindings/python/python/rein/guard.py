"""`rein.Guard`: decide before a function runs, check what it returns.

    guard = rein.Guard(policy, actor=lambda call: {"id": "bot", "role": "agent"})

    @guard.action("refund")
    def refund(order_id: str, amount: float, currency: str) -> dict: ...

A call decides first (`Blocked` or `ApprovalRequired` when it may not run),
then runs the function, then, when the policy checks the action's result
(or always through `rein serve`), checks the value it returned and withholds
it (`Blocked`) when the answer is block. Nothing that fails inside Rein lets
a call through in enforcing mode: a failing resolver, observer, engine or
server is a `Blocked` naming the cause.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import functools
import inspect
import logging
import time
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from rein.client import AsyncClient, Client, _wait_done, to_json_value
from rein.errors import ApprovalRequired, Blocked, GuardError, InputError, Refused

__all__ = ["Guard", "Call", "DecisionEvent"]

log = logging.getLogger("rein")

F = TypeVar("F", bound=Callable[..., Any])
JsonValue = Any
Resolver = Union[None, Mapping[str, Any], Callable[["Call"], Any]]
SessionResolver = Union[None, str, Callable[["Call"], Any]]
Observer = Callable[["DecisionEvent"], Any]


class _Unset:
    """The default of an argument not given (its repr is what help() shows)."""

    def __repr__(self) -> str:
        return "<the guard's>"


_UNSET: Any = _Unset()
_PLAIN = (str, int, float, bool, type(None), dict, list, tuple)
# Exact types passed on as they are without a call to `_plain` (the hot
# path: most arguments are one of these).
_AS_IS = frozenset((str, int, float, bool, type(None), dict, list, tuple))


class Call:
    """One call of a guarded function, as resolvers see it.

    `input` is what is sent to the engine (the contract's fields), `args`
    and `kwargs` the call's own arguments, `function` the guarded function
    (None for `Guard.check`/`Guard.require`).
    """

    __slots__ = ("action", "input", "args", "kwargs", "function")

    action: str
    input: Dict[str, JsonValue]
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    function: Optional[Callable[..., Any]]

    def __init__(
        self,
        action: str,
        input: Dict[str, JsonValue],
        args: Tuple[Any, ...] = (),
        kwargs: Optional[Dict[str, Any]] = None,
        function: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.action = action
        self.input = input
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}
        self.function = function

    def __repr__(self) -> str:
        return f"Call(action={self.action!r}, input={self.input!r})"


class DecisionEvent:
    """What an observer receives for every decision a guard makes or tries
    to make.

    `phase` is `"before"` (may the call run?) or `"after"` (may its result
    be returned?). `decision` is None when no decision could be had, and
    then `error` says why (a resolver, the engine, the server); `error` also
    carries a failure that did not stop the call (in `audit_only` mode) or
    the function's own exception (phase after). `duration_s` is the time
    the phase took in Rein; `audit_only` tells whether the guard enforces.
    `input` is a copy of what was sent: redacting it changes no decision.
    """

    __slots__ = ("action", "phase", "decision", "input", "error", "duration_s", "audit_only")

    action: str
    phase: str
    decision: Optional[Any]
    input: Optional[Dict[str, JsonValue]]
    error: Optional[str]
    duration_s: float
    audit_only: bool

    def __init__(
        self,
        action: str,
        phase: str,
        decision: Optional[Any],
        input: Optional[Dict[str, JsonValue]],
        error: Optional[str],
        duration_s: float,
        audit_only: bool,
    ) -> None:
        self.action = action
        self.phase = phase
        self.decision = decision
        self.input = input
        self.error = error
        self.duration_s = duration_s
        self.audit_only = audit_only

    @property
    def effect(self) -> Optional[str]:
        """The decision's effect; None when there is no decision."""
        return self.decision.effect if self.decision is not None else None

    def __repr__(self) -> str:
        what = self.decision.effect if self.decision is not None else f"error={self.error!r}"
        return f"DecisionEvent({self.action!r}, {self.phase}, {what})"


def _describe(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:
        # An exception whose `__str__` fails must still be reported (and
        # its call checked), not replaced by the failure of its text.
        text = "<its text could not be read>"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _plain(value: Any) -> Any:
    """A pydantic model or a dataclass instance as plain data; anything
    else unchanged (the engine refuses what has no JSON form)."""
    if isinstance(value, _PLAIN):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except TypeError:
            return dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    legacy = getattr(value, "dict", None)
    if callable(legacy) and hasattr(value, "__fields__"):
        return legacy()
    return value


def _code_of(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What runs when `fn` is called: `fn`, or the `__call__` of an object
    that is no function, method or partial (an instance of a class with
    `__call__`)."""
    if inspect.isroutine(fn) or isinstance(fn, (functools.partial, type)):
        return fn
    call = getattr(type(fn), "__call__", None)
    return call if call is not None else fn


class _Failure(Exception):
    """Rein could not decide (a resolver, the engine, the server, an
    observer): `reason` says why."""

    def __init__(self, reason: str, decision_id: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decision_id = decision_id


class _Binder:
    """Builds a call's input from its arguments, by a plan made once at
    decoration."""

    def __init__(
        self,
        guard: "Guard",
        action: str,
        fn: Callable[..., Any],
        fields: Optional[Mapping[str, Optional[str]]],
        exclude: Iterable[str],
    ) -> None:
        self.signature = inspect.signature(fn)
        params = self.signature.parameters
        kinds = {p.kind for p in params.values()}
        self.simple = kinds <= {inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY}
        self.positional = [p.name for p in params.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        self.n_positional = len(self.positional)
        self.names = frozenset(params)
        self.n_params = len(params)
        self.defaults = [(p.name, p.default) for p in params.values() if p.default is not inspect.Parameter.empty]
        where = f"`{getattr(fn, '__qualname__', fn)}`"
        self.qualname = getattr(fn, "__qualname__", repr(fn))
        fields = dict(fields or {})
        exclude = set(exclude)
        for name in exclude:
            if name not in params:
                raise GuardError(f"{where} has no parameter `{name}` to exclude (action `{action}`)")
        var_kw = next((p.name for p in params.values() if p.kind is p.VAR_KEYWORD), None)
        var_pos = next((p.name for p in params.values() if p.kind is p.VAR_POSITIONAL), None)
        for field, param in fields.items():
            if not isinstance(field, str) or not (param is None or isinstance(param, str)):
                raise GuardError(f"fields= of `{action}` maps contract field names to parameter names (or None)")
            if param is not None and (param not in params or param in (var_kw, var_pos)) and var_kw is None:
                raise GuardError(
                    f"fields= of `{action}` maps contract field `{field}` to `{param}`, which is not a parameter "
                    f"of {where} (its parameters: {', '.join(params) or 'none'})"
                )
            if param is not None and param in exclude:
                raise GuardError(f"fields= of `{action}` maps `{field}` to `{param}`, which exclude= leaves out")
        # (field, parameter or None, from **kwargs, optional)
        self.plan: List[Tuple[str, str, bool, bool]] = []
        self.from_contract = guard._policy is not None
        if self.from_contract:
            contract = guard._policy.input_fields(action)
            if contract is None:
                known = ", ".join(guard._policy.actions[:20])
                close = difflib.get_close_matches(action, guard._policy.actions, n=1)
                hint = f": did you mean `{close[0]}`?" if close else ""
                raise GuardError(f"the policy has no action `{action}` (guarding {where}; its actions: {known}){hint}")
            names = {name for name, _, _ in contract}
            for field in fields:
                if field not in names:
                    raise GuardError(
                        f"fields= of `{action}` names `{field}`, which is not a field of its input contract "
                        f"(its fields: {', '.join(sorted(names)) or 'none'})"
                    )
            for field, optional, _ty in contract:
                if field in fields and fields[field] is None:
                    if not optional:
                        raise GuardError(
                            f"fields= of `{action}` leaves out `{field}` (None), but the contract requires it"
                        )
                    continue
                param = fields.get(field) or field
                if param != field and field in params and field not in exclude:
                    # The decision would read `param` while the body may
                    # use the parameter named as the field, which no rule
                    # saw.
                    raise GuardError(
                        f"fields= of `{action}` reads the field `{field}` from `{param}`, but {where} also has "
                        f"a parameter `{field}`: rename it, or exclude it with exclude=[{field!r}]"
                    )
                named = param in params and param not in (var_kw, var_pos)
                if param in exclude:
                    raise GuardError(
                        f"{where} excludes `{param}`, which the input contract of `{action}` reads as `{field}`"
                    )
                if named:
                    self.plan.append((field, param, False, optional))
                elif var_kw is not None:
                    self.plan.append((field, param, True, optional))
                else:
                    mapped = f" (mapped by fields= to `{param}`)" if param != field else ""
                    raise GuardError(
                        f"{where} has no parameter for the field `{field}`{mapped} of the input contract of "
                        f"`{action}`: rename the parameter, map it with fields={{{field!r}: '<parameter>'}}"
                        + (", or leave the optional field out with fields={" + repr(field) + ": None}" if optional else "")
                    )
        else:
            # Through rein serve the contract is the server's: every named
            # parameter is sent (renamed by `fields`), and the server
            # refuses what does not fit.
            renamed = {param: field for field, param in fields.items() if param is not None}
            dropped = {field for field, param in fields.items() if param is None}
            for p in params.values():
                if p.name in exclude or p.name in ("self", "cls"):
                    continue
                field = renamed.get(p.name, p.name)
                if field in dropped and p.name not in renamed:
                    continue
                if p.kind is p.VAR_KEYWORD:
                    self.plan.append(("", p.name, True, True))
                    continue
                taken = next((q for f, q, _, _ in self.plan if f == field), None)
                if taken is not None:
                    raise GuardError(
                        f"{where} would send both `{taken}` and `{p.name}` as the field `{field}` of `{action}`: "
                        "rename one, or leave one out with exclude="
                    )
                self.plan.append((field, p.name, False, p.kind is p.VAR_POSITIONAL))
        # A policy is immutable: whether it checks the result is known now.
        self.checks_output = True
        if guard._policy is not None:
            try:
                self.checks_output = bool(guard._policy.checks_output(action))
            except Exception:
                self.checks_output = True  # when in doubt, check
        self.var_kw = var_kw
        self.renamed_kw = {param: field for field, param in fields.items() if param is not None}
        self.exclude = exclude

    def bind(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Mapping[str, Any]:
        """The call's arguments by parameter, defaults applied; a call that
        does not fit the function's signature raises its `TypeError`, as
        the function would."""
        if self.simple:
            # `Signature.bind` costs microseconds; a plain signature binds
            # by hand, and anything unusual takes the full path.
            if len(args) <= self.n_positional:
                arguments = dict(zip(self.positional, args))
                fits = True
                for name, value in kwargs.items():
                    if name in arguments or name not in self.names:
                        fits = False
                        break
                    arguments[name] = value
                if fits:
                    if len(arguments) < self.n_params:
                        for name, default in self.defaults:
                            if name not in arguments:
                                arguments[name] = default
                    if len(arguments) == self.n_params:
                        return arguments
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            # As the function itself would say it, naming it.
            raise TypeError(f"{self.qualname}() {e}") from None
        bound.apply_defaults()
        return bound.arguments

    def input(self, arguments: Mapping[str, Any]) -> Dict[str, JsonValue]:
        """The input of one call (`_Failure` when a value cannot be
        converted)."""
        try:
            return self._input(arguments)
        except Exception as e:
            raise _Failure(f"the input could not be built from the arguments: {_describe(e)}") from None

    def _input(self, arguments: Mapping[str, Any]) -> Dict[str, JsonValue]:
        out: Dict[str, JsonValue] = {}
        if self.from_contract:
            for field, param, from_kw, optional in self.plan:
                if from_kw:
                    extra = arguments.get(self.var_kw or "", {})
                    if param not in extra:
                        continue
                    value = extra[param]
                else:
                    value = arguments[param]
                if value is None and optional:
                    continue
                out[field] = value if type(value) in _AS_IS else _plain(value)
            return out
        for field, param, from_kw, varargs in self.plan:
            value = arguments.get(param)
            if from_kw:
                for name, v in (value or {}).items():
                    if name in self.exclude:
                        continue
                    field = self.renamed_kw.get(name, name)
                    if field in out:
                        raise ValueError(f"two arguments give the field `{field}`")
                    out[field] = _plain(v)
            elif varargs:
                if value:
                    out[field] = [_plain(v) for v in value]
            else:
                out[field] = _plain(value)
        return out


class Guard:
    """Guards functions with a policy, in-process (`rein.Policy`) or
    through `rein serve` (`rein.Client` or `rein.AsyncClient`).

    `actor`, `snapshot` and `session` are each a constant or a callable
    taking the `rein.Call` (awaited when it returns an awaitable inside an
    async guarded function); each is called once per guarded call.
    `observers` each receive a `rein.DecisionEvent` for every decision,
    before and after. `audit_only=True` decides, reports and observes
    everything but never raises because of Rein: the function always runs
    and its value is returned (a failing resolver, observer, engine or
    server is reported in the event's `error`).

    In-process, limits and sessions are kept in `state` (a `rein.State`;
    when not given, the policy's `shared_state`, which every Guard over the
    same loaded policy shares), and approvals cannot be granted: a
    `require_approval` raises `ApprovalRequired` with no approval id.
    Through a client, `wait_for_approval=seconds` waits that long for a
    person to grant the approval the server opened (reading it every
    `approval_poll` seconds), then decides again naming it (and runs the
    function if that is allowed).

    A Guard holds no per-call state: share one across threads.
    """

    def __init__(
        self,
        engine: Any,
        *,
        actor: Resolver = None,
        snapshot: Resolver = None,
        session: SessionResolver = None,
        observers: Sequence[Observer] = (),
        audit_only: bool = False,
        state: Optional[Any] = None,
        wait_for_approval: Optional[float] = None,
        approval_poll: float = 0.5,
    ) -> None:
        self._client: Optional[Client] = None
        self._aclient: Optional[AsyncClient] = None
        self._policy: Any = None
        if isinstance(engine, Client):
            self._client = engine
        elif isinstance(engine, AsyncClient):
            self._aclient = engine
        elif all(hasattr(engine, m) for m in ("decide", "check_output", "input_fields", "checks_output")):
            self._policy = engine
        else:
            raise GuardError(
                f"rein.Guard needs a rein.Policy, rein.Client or rein.AsyncClient, not {type(engine).__name__}"
            )
        if self._policy is not None and state is None:
            # One per policy, not per Guard: a Guard made per request must
            # still count the limits the earlier ones counted.
            state = self._policy.shared_state
        if self._policy is None and state is not None:
            raise GuardError("state= is for in-process policies; through rein serve the server keeps the state")
        if wait_for_approval is not None and self._policy is not None:
            raise GuardError(
                "wait_for_approval= needs a rein.Client: an in-process decision's approval cannot be granted"
            )
        if wait_for_approval is not None and wait_for_approval < 0:
            raise ValueError("wait_for_approval must be a number of seconds, at least 0")
        for name, value in (("actor", actor), ("snapshot", snapshot)):
            if value is not None and not callable(value) and not isinstance(value, Mapping):
                raise GuardError(f"{name}= takes a dict or a callable(call) -> dict, not {type(value).__name__}")
        if session is not None and not callable(session) and not isinstance(session, str):
            raise GuardError(f"session= takes a str or a callable(call) -> str, not {type(session).__name__}")
        if not isinstance(audit_only, bool):
            # `bool("false")` is True: a setting read as text must not turn
            # enforcement off.
            raise GuardError(f"audit_only= takes True or False, not {audit_only!r}")
        self.engine = engine
        self.state = state
        self.audit_only = audit_only
        self.observers: List[Observer] = list(observers)
        self.wait_for_approval = wait_for_approval
        self.approval_poll = approval_poll
        self._actor = actor
        self._snapshot = snapshot
        self._session = session
        self._dynamic = (callable(actor), callable(snapshot), callable(session))

    def __repr__(self) -> str:
        mode = " audit_only" if self.audit_only else ""
        return f"<rein.Guard {self.engine!r}{mode}>"

    # ---- decoration -----------------------------------------------------

    def action(
        self,
        name: str,
        *,
        fields: Optional[Mapping[str, Optional[str]]] = None,
        output: Optional[Callable[[Any], Any]] = None,
        exclude: Iterable[str] = (),
    ) -> Callable[[F], F]:
        """Guards a function as action `name` (sync or async).

        The input is built from the call's bound arguments by name. With a
        `rein.Policy` it holds exactly the fields of the action's input
        contract, each from the parameter of the same name, or the one
        `fields` maps it to (`fields={"amount": "amt"}`; `None` leaves an
        optional field out); a contract field with no parameter, a `fields`
        name that is neither, or an unknown action raises `GuardError` here,
        at decoration. An optional field whose argument is None is left
        out. Through a client every parameter is sent (but `self`, `cls`
        and those in `exclude`), renamed by `fields`, and the server's
        contract refuses what does not fit.

        `output` converts the return value before it is checked (default:
        a pydantic model's `model_dump()`, a dataclass's `asdict`, anything
        else as it is); the caller still receives the original value.
        """
        if not isinstance(name, str) or not name:
            named = f" above `{getattr(name, '__name__', '')}`" if callable(name) else ""
            raise GuardError(f'guard.action needs the action\'s name: write @guard.action("<action>"){named}')
        if output is not None and not callable(output):
            raise GuardError("output= takes a callable(value) -> JSON value")

        def decorate(fn: F) -> F:
            if isinstance(fn, staticmethod):
                # Above @staticmethod: guard the function, and stay static
                # (a plain function in a class body would be given `self`).
                return staticmethod(decorate(fn.__func__))  # type: ignore[return-value]
            if not callable(fn):
                raise GuardError(f"guard.action({name!r}) decorates a function, not {type(fn).__name__}")
            where = f"`{getattr(fn, '__qualname__', fn)}`"
            code = _code_of(fn)
            if inspect.isgeneratorfunction(code) or inspect.isasyncgenfunction(code):
                raise GuardError(
                    f"{where} is a generator: its result cannot be checked before it is used; guard a "
                    "function that returns the whole result"
                )
            # An object whose `__call__` is async is async too: guarded as
            # sync, its coroutine would run after the guard had returned.
            is_async = inspect.iscoroutinefunction(code)
            if self._aclient is not None and not is_async:
                raise GuardError(f"{where} is not async: a rein.AsyncClient guards async functions (use rein.Client)")
            binder = _Binder(self, name, fn, fields, exclude)
            convert = output

            if is_async:

                @functools.wraps(fn)
                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    return await self._run_async(name, fn, binder, convert, args, kwargs)

                return guarded_async  # type: ignore[return-value]

            @functools.wraps(fn)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                return self._run(name, fn, binder, convert, args, kwargs)

            return guarded  # type: ignore[return-value]

        return decorate

    # ---- shared steps -----------------------------------------------------

    def _observe(self, event: DecisionEvent) -> Optional[str]:
        """Gives `event` to every observer; the first failure's text."""
        failed = None
        for observer in self.observers:
            try:
                observer(event)
            except Exception as e:  # an observer's bug must not pass silently
                log.exception("rein: observer %r failed on %r", observer, event)
                if failed is None:
                    failed = f"observer {getattr(observer, '__qualname__', observer)!r} failed: {_describe(e)}"
        return failed

    def _event(
        self,
        action: str,
        phase: str,
        decision: Any,
        input: Optional[Dict[str, Any]],
        error: Optional[str],
        started: float,
    ) -> Optional[str]:
        """Observes one decision (or failure); in enforcing mode, an
        observer's failure is returned to be raised."""
        if not self.observers:
            return None
        # A copy: an observer that redacts what it logs (`event.input["card"]
        # = "***"`) must not change what the result is checked with, or the
        # request a granted approval is used for.
        shown = dict(input) if input is not None else None
        event = DecisionEvent(action, phase, decision, shown, error, time.perf_counter() - started, self.audit_only)
        return self._observe(event)

    @staticmethod
    def _check_resolved(name: str, value: Any) -> Any:
        if name == "session":
            if value is not None and not isinstance(value, str):
                raise _Failure(f"resolver `session` returned a {type(value).__name__}, not a str or None")
        elif value is not None and not isinstance(value, Mapping):
            raise _Failure(f"resolver `{name}` returned a {type(value).__name__}, not a dict or None")
        return value

    def _resolve(self, name: str, resolver: Any, call: Call) -> Any:
        if not callable(resolver):
            return resolver
        try:
            value = resolver(call)
        except Exception as e:
            raise _Failure(f"resolver `{name}` failed: {_describe(e)}") from None
        if inspect.isawaitable(value):
            close = getattr(value, "close", None)
            if callable(close):
                close()  # never awaited: say so once, here, not as a warning
            raise _Failure(f"resolver `{name}` returned an awaitable in a sync call; guard an async function")
        return self._check_resolved(name, value)

    async def _resolve_async(self, name: str, resolver: Any, call: Call) -> Any:
        if not callable(resolver):
            return resolver
        try:
            value = resolver(call)
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:
            raise _Failure(f"resolver `{name}` failed: {_describe(e)}") from None
        return self._check_resolved(name, value)

    def _refusal(self, action: str, decision: Any) -> Optional[Refused]:
        """The exception a decision raises; None when it allows."""
        effect = decision.effect
        if effect == "allow":
            return None
        if effect == "require_approval":
            return ApprovalRequired.from_decision(action, decision)
        return Blocked.from_decision(action, decision)

    def _decide_policy(
        self, action: str, input: Dict[str, Any], actor: Any, snapshot: Any, session: Any
    ) -> Any:
        try:
            return self._policy.decide(
                action, input, actor=actor, snapshot=snapshot, session=session, state=self.state
            )
        except InputError as e:
            raise _Failure(f"the input has no exact JSON form: {e}") from None
        except Exception as e:
            raise _Failure(f"the engine failed: {_describe(e)}") from None

    def _check_policy(
        self,
        action: str,
        input: Dict[str, Any],
        ctx: Tuple[Any, Any, Any],
        decision_id: str,
        output: Any = _UNSET,
        error: Optional[str] = None,
    ) -> Any:
        actor, snapshot, session = ctx
        try:
            return self._policy.check_output(
                action,
                input,
                None if output is _UNSET else output,
                error=error,
                actor=actor,
                snapshot=snapshot,
                session=session,
                state=self.state,
                decision_id=decision_id,
            )
        except InputError as e:
            raise _Failure(f"the result has no exact JSON form, so it cannot be checked: {e}") from None
        except Exception as e:
            raise _Failure(f"the engine failed checking the result: {_describe(e)}") from None

    @staticmethod
    def _client_failure(e: Exception) -> _Failure:
        if isinstance(e, Blocked):
            return _Failure(e.reason, e.decision_id)
        if isinstance(e, InputError):
            return _Failure(f"the input has no exact JSON form: {e}")
        return _Failure(f"the client failed: {_describe(e)}")

    def _converted(self, convert: Optional[Callable[[Any], Any]], value: Any) -> Any:
        if convert is None:
            return value if type(value) in _AS_IS else _plain(value)
        try:
            return convert(value)
        except Exception as e:
            raise _Failure(f"output= failed converting the result: {_describe(e)}") from None

    def _approval_outcome(self, action: str, decision: Any, approval: Mapping[str, Any]) -> Optional[Refused]:
        """What a waited-for approval that was not granted raises."""
        state = approval.get("state")
        if state == "granted":
            return None
        aid = decision.approval_id
        if state == "denied":
            by = approval.get("decided_by") or "an approver"
            comment = approval.get("comment")
            why = f"approval `{aid}` was denied by `{by}`" + (f": {comment}" if comment else "")
            return Blocked(why, action=action, rule=(decision.deciding_rules or [None])[0], decision=decision)
        if state == "pending":
            if _wait_done(approval):  # pending, but past its expiry
                return Blocked(
                    f"approval `{aid}` expired before anyone granted it",
                    action=action,
                    rule=(decision.deciding_rules or [None])[0],
                    decision=decision,
                )
            return ApprovalRequired.from_decision(action, decision)
        return Blocked(f"approval `{aid}` is {state}, not granted", action=action, decision=decision)

    # ---- one call, sync ----------------------------------------------------

    def _run(
        self,
        action: str,
        fn: Callable[..., Any],
        binder: _Binder,
        convert: Optional[Callable[[Any], Any]],
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> Any:
        started = time.perf_counter()
        arguments = binder.bind(args, kwargs)
        # A copy: what a resolver does to it cannot change what the function gets.
        call = Call(action, {}, args, dict(kwargs), fn)
        decision, ctx, failure = self._before(action, binder, arguments, call, started)
        if failure is not None and not self.audit_only:
            raise failure
        try:
            value = fn(*args, **kwargs)
        except Exception as e:
            raised = e
        else:
            return self._after(action, binder, call, decision, ctx, convert, value, None)
        # Outside the `except`: a `Blocked` that withholds the error text
        # must not carry the original as its context.
        return self._after(action, binder, call, decision, ctx, convert, _UNSET, raised)

    def _before(
        self, action: str, binder: _Binder, arguments: Mapping[str, Any], call: Call, started: float
    ) -> Tuple[Any, Tuple[Any, Any, Any], Optional[Exception]]:
        """Decides a call: (decision or None, resolved context, what to raise)."""
        input = None
        decision = None
        ctx: Tuple[Any, Any, Any] = (None, None, None)
        try:
            input = call.input = binder.input(arguments)
            # (A constant needs no call: checked once, in `__init__`.)
            ctx = (
                self._resolve("actor", self._actor, call) if self._dynamic[0] else self._actor,
                self._resolve("snapshot", self._snapshot, call) if self._dynamic[1] else self._snapshot,
                self._resolve("session", self._session, call) if self._dynamic[2] else self._session,
            )
            actor, snapshot, session = ctx
            if self._policy is not None:
                decision = self._decide_policy(action, input, actor, snapshot, session)
            else:
                client = self._client
                assert client is not None
                try:
                    decision = client.decide(action, input, actor=actor, snapshot=snapshot, session=session)
                except Exception as e:
                    raise self._client_failure(e) from None
        except _Failure as f:
            failed = self._event(action, "before", None, input, f.reason, started)
            if failed is not None and not self.audit_only:
                f = _Failure(f"{f.reason}; {failed}", f.decision_id)
            return None, ctx, Blocked(f.reason, action=action, decision_id=f.decision_id)
        refusal = self._refusal(action, decision)
        failed = self._event(action, "before", decision, input, None, started)
        if (
            isinstance(refusal, ApprovalRequired)
            and self._client is not None
            and self.wait_for_approval is not None
            and decision.approval_id
            and failed is None
            and not self.audit_only  # the call runs anyway: nothing to wait for
        ):
            decision, refusal, failed = self._wait_and_decide_again(action, call, decision, ctx)
        if failed is not None and refusal is None:
            refusal = Blocked(failed, action=action, decision=decision)
        return decision, ctx, refusal

    def _wait_and_decide_again(
        self, action: str, call: Call, decision: Any, ctx: Tuple[Any, Any, Any]
    ) -> Tuple[Any, Optional[Refused], Optional[str]]:
        client = self._client
        assert client is not None and self.wait_for_approval is not None
        started = time.perf_counter()
        actor, snapshot, session = ctx
        try:
            approval = client.wait_for_approval(
                decision.approval_id, timeout=self.wait_for_approval, poll=self.approval_poll
            )
        except Exception as e:
            why = f"waiting for approval `{decision.approval_id}` failed: {_describe(e)}"
            failed = self._event(action, "before", None, call.input, why, started)
            return decision, Blocked(why, action=action, decision=decision), failed
        refusal = self._approval_outcome(action, decision, approval)
        if refusal is not None:
            return decision, refusal, None
        try:
            again = client.decide(
                action, call.input, actor=actor, snapshot=snapshot, session=session, approval=decision.approval_id
            )
        except Exception as e:
            f = self._client_failure(e)
            failed = self._event(action, "before", None, call.input, f.reason, started)
            return decision, Blocked(f.reason, action=action, decision_id=f.decision_id), failed
        refusal = self._refusal(action, again)  # before the observers see it
        failed = self._event(action, "before", again, call.input, None, started)
        return again, refusal, failed

    def _after(
        self,
        action: str,
        binder: _Binder,
        call: Call,
        decision: Any,
        ctx: Tuple[Any, Any, Any],
        convert: Optional[Callable[[Any], Any]],
        value: Any,
        raised: Optional[Exception],
    ) -> Any:
        """Checks a call's result (or its exception) and returns the value,
        or raises: the function's own exception, or `Blocked` when the
        result is withheld."""
        if decision is None or not binder.checks_output:
            if raised is not None:
                raise raised
            return value
        started = time.perf_counter()
        error = _describe(raised) if raised is not None else None
        checked = None
        failure: Optional[_Failure] = None
        try:
            out = _UNSET if raised is not None else self._converted(convert, value)
            checked = self._check(action, call.input, ctx, decision.decision_id, out, error)
        except _Failure as f:
            failure = f
        except Exception as e:  # never let a bug in Rein pass a result unchecked
            failure = _Failure(f"checking the result failed: {_describe(e)}")
        # Read before the observers see the decision.
        allowed = checked is not None and checked.effect == "allow"
        failed = self._event(
            action, "after", checked, call.input, failure.reason if failure else error, started
        )
        if self.audit_only:
            if raised is not None:
                raise raised
            return value
        if failure is not None:
            raise Blocked(
                f"{failure.reason}; the result is withheld", action=action, decision_id=decision.decision_id
            ) from None
        if not allowed:
            raise Blocked.from_decision(action, checked) from None
        if failed is not None:
            raise Blocked(f"{failed}; the result is withheld", action=action, decision=checked) from None
        if raised is not None:
            raise raised
        return value

    def _check(
        self,
        action: str,
        input: Dict[str, Any],
        ctx: Tuple[Any, Any, Any],
        decision_id: str,
        output: Any,
        error: Optional[str],
    ) -> Any:
        if self._policy is not None:
            return self._check_policy(action, input, ctx, decision_id, output, error)
        client = self._client
        assert client is not None
        try:
            if error is not None:
                return client.outcome(decision_id, error=error, action=action)
            try:
                plain = to_json_value(output, "output")
            except InputError as e:
                # Recorded as an error, so the log shows the call ran.
                client.outcome(decision_id, error=f"the result has no exact JSON form: {e}", action=action)
                raise _Failure(f"the result has no exact JSON form, so it cannot be checked: {e}") from None
            return client.outcome(decision_id, plain, action=action)
        except _Failure:
            raise
        except Exception as e:
            raise self._client_failure(e) from None

    # ---- one call, async ---------------------------------------------------

    async def _run_async(
        self,
        action: str,
        fn: Callable[..., Awaitable[Any]],
        binder: _Binder,
        convert: Optional[Callable[[Any], Any]],
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> Any:
        started = time.perf_counter()
        arguments = binder.bind(args, kwargs)
        # A copy: what a resolver does to it cannot change what the function gets.
        call = Call(action, {}, args, dict(kwargs), fn)
        decision, ctx, failure = await self._before_async(action, binder, arguments, call, started)
        if failure is not None and not self.audit_only:
            raise failure
        try:
            value = await fn(*args, **kwargs)
        except Exception as e:
            raised = e
        else:
            return await self._after_async(action, binder, call, decision, ctx, convert, value, None)
        return await self._after_async(action, binder, call, decision, ctx, convert, _UNSET, raised)

    async def _client_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """A client call from async code: awaited with an AsyncClient, in a
        worker thread with a Client (so the event loop is not blocked)."""
        if self._aclient is not None:
            return await getattr(self._aclient, method)(*args, **kwargs)
        assert self._client is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(getattr(self._client, method), *args, **kwargs))

    async def _before_async(
        self, action: str, binder: _Binder, arguments: Mapping[str, Any], call: Call, started: float
    ) -> Tuple[Any, Tuple[Any, Any, Any], Optional[Exception]]:
        input = None
        decision = None
        ctx: Tuple[Any, Any, Any] = (None, None, None)
        try:
            input = call.input = binder.input(arguments)
            ctx = (
                await self._resolve_async("actor", self._actor, call),
                await self._resolve_async("snapshot", self._snapshot, call),
                await self._resolve_async("session", self._session, call),
            )
            actor, snapshot, session = ctx
            if self._policy is not None:
                decision = self._decide_policy(action, input, actor, snapshot, session)
            else:
                try:
                    decision = await self._client_call(
                        "decide", action, input, actor=actor, snapshot=snapshot, session=session
                    )
                except Exception as e:
                    raise self._client_failure(e) from None
        except _Failure as f:
            failed = self._event(action, "before", None, input, f.reason, started)
            if failed is not None and not self.audit_only:
                f = _Failure(f"{f.reason}; {failed}", f.decision_id)
            return None, ctx, Blocked(f.reason, action=action, decision_id=f.decision_id)
        refusal = self._refusal(action, decision)
        failed = self._event(action, "before", decision, input, None, started)
        if (
            isinstance(refusal, ApprovalRequired)
            and self._policy is None
            and self.wait_for_approval is not None
            and decision.approval_id
            and failed is None
            and not self.audit_only  # the call runs anyway: nothing to wait for
        ):
            decision, refusal, failed = await self._wait_and_decide_again_async(action, call, decision, ctx)
        if failed is not None and refusal is None:
            refusal = Blocked(failed, action=action, decision=decision)
        return decision, ctx, refusal

    async def _wait_and_decide_again_async(
        self, action: str, call: Call, decision: Any, ctx: Tuple[Any, Any, Any]
    ) -> Tuple[Any, Optional[Refused], Optional[str]]:
        started = time.perf_counter()
        actor, snapshot, session = ctx
        try:
            approval = await self._client_call(
                "wait_for_approval", decision.approval_id, timeout=self.wait_for_approval, poll=self.approval_poll
            )
        except Exception as e:
            why = f"waiting for approval `{decision.approval_id}` failed: {_describe(e)}"
            failed = self._event(action, "before", None, call.input, why, started)
            return decision, Blocked(why, action=action, decision=decision), failed
        refusal = self._approval_outcome(action, decision, approval)
        if refusal is not None:
            return decision, refusal, None
        try:
            again = await self._client_call(
                "decide",
                action,
                call.input,
                actor=actor,
                snapshot=snapshot,
                session=session,
                approval=decision.approval_id,
            )
        except Exception as e:
            f = self._client_failure(e)
            failed = self._event(action, "before", None, call.input, f.reason, started)
            return decision, Blocked(f.reason, action=action, decision_id=f.decision_id), failed
        refusal = self._refusal(action, again)  # before the observers see it
        failed = self._event(action, "before", again, call.input, None, started)
        return again, refusal, failed

    async def _after_async(
        self,
        action: str,
        binder: _Binder,
        call: Call,
        decision: Any,
        ctx: Tuple[Any, Any, Any],
        convert: Optional[Callable[[Any], Any]],
        value: Any,
        raised: Optional[Exception],
    ) -> Any:
        if self._policy is not None or decision is None:
            # In-process checks are CPU work of microseconds: no await.
            return self._after(action, binder, call, decision, ctx, convert, value, raised)
        started = time.perf_counter()
        error = _describe(raised) if raised is not None else None
        checked = None
        failure: Optional[_Failure] = None
        try:
            out = _UNSET if raised is not None else self._converted(convert, value)
            checked = await self._check_async(action, call.input, decision.decision_id, out, error)
        except _Failure as f:
            failure = f
        except Exception as e:
            failure = _Failure(f"checking the result failed: {_describe(e)}")
        # Read before the observers see the decision.
        allowed = checked is not None and checked.effect == "allow"
        failed = self._event(
            action, "after", checked, call.input, failure.reason if failure else error, started
        )
        if self.audit_only:
            if raised is not None:
                raise raised
            return value
        if failure is not None:
            raise Blocked(
                f"{failure.reason}; the result is withheld", action=action, decision_id=decision.decision_id
            ) from None
        if not allowed:
            raise Blocked.from_decision(action, checked) from None
        if failed is not None:
            raise Blocked(f"{failed}; the result is withheld", action=action, decision=checked) from None
        if raised is not None:
            raise raised
        return value

    async def _check_async(
        self, action: str, input: Dict[str, Any], decision_id: str, output: Any, error: Optional[str]
    ) -> Any:
        try:
            if error is not None:
                return await self._client_call("outcome", decision_id, error=error, action=action)
            try:
                plain = to_json_value(output, "output")
            except InputError as e:
                await self._client_call(
                    "outcome", decision_id, error=f"the result has no exact JSON form: {e}", action=action
                )
                raise _Failure(f"the result has no exact JSON form, so it cannot be checked: {e}") from None
            return await self._client_call("outcome", decision_id, plain, action=action)
        except _Failure:
            raise
        except Exception as e:
            raise self._client_failure(e) from None

    # ---- imperative use ----------------------------------------------------

    def check(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Any = _UNSET,
        snapshot: Any = _UNSET,
        session: Any = _UNSET,
    ) -> Any:
        """Decides `action` with `input` and returns the decision, whatever
        its effect (observers see it). `actor`, `snapshot` and `session`
        override the guard's resolvers, which are otherwise called once.
        Raises `Blocked` when no decision can be had (a resolver, the
        engine or the server failed), even in audit_only mode. Does not
        wait for approvals. Not for an `AsyncClient` (use `acheck`)."""
        if self._aclient is not None:
            raise GuardError("this guard has a rein.AsyncClient: use `await guard.acheck(...)`")
        started = time.perf_counter()
        call = Call(action, dict(input or {}))
        try:
            ctx = (
                actor if actor is not _UNSET else self._resolve("actor", self._actor, call),
                snapshot if snapshot is not _UNSET else self._resolve("snapshot", self._snapshot, call),
                session if session is not _UNSET else self._resolve("session", self._session, call),
            )
            for name, value in zip(("actor", "snapshot", "session"), ctx):
                self._check_resolved(name, value)
            if self._policy is not None:
                decision = self._decide_policy(action, call.input, *ctx)
            else:
                assert self._client is not None
                try:
                    decision = self._client.decide(
                        action, call.input, actor=ctx[0], snapshot=ctx[1], session=ctx[2]
                    )
                except Exception as e:
                    raise self._client_failure(e) from None
        except _Failure as f:
            self._event(action, "before", None, call.input, f.reason, started)
            raise Blocked(f.reason, action=action, decision_id=f.decision_id) from None
        failed = self._event(action, "before", decision, call.input, None, started)
        if failed is not None and not self.audit_only:
            raise Blocked(failed, action=action, decision=decision)
        return decision

    def require(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Any = _UNSET,
        snapshot: Any = _UNSET,
        session: Any = _UNSET,
    ) -> Any:
        """As `check`, but raises `Blocked` or `ApprovalRequired` unless the
        decision allows (in audit_only mode it returns the decision, or
        None when none could be had). Use it before doing something the
        guard cannot wrap; report its outcome yourself if the policy
        checks results."""
        try:
            decision = self.check(action, input, actor=actor, snapshot=snapshot, session=session)
        except Blocked:
            if self.audit_only:
                return None
            raise
        refusal = self._refusal(action, decision)
        if refusal is not None and not self.audit_only:
            raise refusal
        return decision

    async def acheck(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Any = _UNSET,
        snapshot: Any = _UNSET,
        session: Any = _UNSET,
    ) -> Any:
        """`check` for async code: resolvers may be async, and the client
        (an `AsyncClient`, or a `Client` in a worker thread) is awaited."""
        started = time.perf_counter()
        call = Call(action, dict(input or {}))
        try:
            ctx = (
                actor if actor is not _UNSET else await self._resolve_async("actor", self._actor, call),
                snapshot if snapshot is not _UNSET else await self._resolve_async("snapshot", self._snapshot, call),
                session if session is not _UNSET else await self._resolve_async("session", self._session, call),
            )
            for name, value in zip(("actor", "snapshot", "session"), ctx):
                self._check_resolved(name, value)
            if self._policy is not None:
                decision = self._decide_policy(action, call.input, *ctx)
            else:
                try:
                    decision = await self._client_call(
                        "decide", action, call.input, actor=ctx[0], snapshot=ctx[1], session=ctx[2]
                    )
                except Exception as e:
                    raise self._client_failure(e) from None
        except _Failure as f:
            self._event(action, "before", None, call.input, f.reason, started)
            raise Blocked(f.reason, action=action, decision_id=f.decision_id) from None
        failed = self._event(action, "before", decision, call.input, None, started)
        if failed is not None and not self.audit_only:
            raise Blocked(failed, action=action, decision=decision)
        return decision

    async def arequire(
        self,
        action: str,
        input: Optional[Mapping[str, JsonValue]] = None,
        *,
        actor: Any = _UNSET,
        snapshot: Any = _UNSET,
        session: Any = _UNSET,
    ) -> Any:
        """`require` for async code."""
        try:
            decision = await self.acheck(action, input, actor=actor, snapshot=snapshot, session=session)
        except Blocked:
            if self.audit_only:
                return None
            raise
        refusal = self._refusal(action, decision)
        if refusal is not None and not self.audit_only:
            raise refusal
        return decision

