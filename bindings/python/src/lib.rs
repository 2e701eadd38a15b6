//! `rein._native`: the engine for Python (the contract is
//! `python/rein/_native.pyi`).
//!
//! Python values are converted to JSON under the GIL (`convert`); the
//! engine prepares, decides and explains with the GIL released (for a
//! decision, when it is heavy enough to gain from it: see
//! `RELEASE_GIL_FROM_WEIGHT`), so threads sharing one `Policy` decide in
//! parallel.

mod convert;
mod decision;
mod errors;
mod state;

use convert::{opt_text_arg, opt_to_json, text_arg, to_json, Source};
use decision::{Decision, Explanation, Obligation};
use errors::{input_error, policy_error, Diagnostic};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use rein_engine::{LoadError, Phase, Request};
use state::State;
use std::cell::Cell;
use std::collections::HashSet;
use std::path::PathBuf;

/// A loaded, type-checked policy. Immutable and safe to share across threads. Loading,
/// explaining, deciding with a `State` and deciding an action with many rules release the GIL
/// (a decision of a few microseconds keeps it: handing the GIL to a waiting thread and back
/// costs more than it gains).
#[pyclass(frozen, module = "rein._native")]
struct Policy {
    inner: rein_engine::Policy,
    /// The actions whose `before` decisions are heavy enough to release the
    /// GIL for (see [`RELEASE_GIL_FROM_WEIGHT`]).
    heavy_before: HashSet<String>,
    /// The same for `after` decisions.
    heavy_after: HashSet<String>,
    /// The State guards over this policy share unless given one, made on
    /// first use ([`Policy::shared_state`]).
    shared_state: PyOnceLock<Py<State>>,
}

/// The [`rein_engine::Policy::decision_weight`] from which a decision runs
/// with the GIL released. Releasing it costs little alone, but when other
/// threads wait for it each release hands it over (a wake-up on another
/// core, then a wait to get it back): measured on 2 cores with 4 threads
/// deciding in a loop, decisions of a few microseconds ran at 0.4x one
/// thread's throughput when released, 1.0x when not; from about 150
/// three-comparison rules on the action (weight ~1,800, ~6 µs) releasing
/// wins, and at 1,000 rules it gives 1.9x.
const RELEASE_GIL_FROM_WEIGHT: usize = 1500;

impl Policy {
    fn new(inner: rein_engine::Policy) -> Policy {
        let heavy = |phase| {
            inner
                .actions()
                .filter(|a| inner.decision_weight(a, phase) >= RELEASE_GIL_FROM_WEIGHT)
                .map(str::to_string)
                .collect()
        };
        Policy {
            heavy_before: heavy(Phase::Before),
            heavy_after: heavy(Phase::After),
            shared_state: PyOnceLock::new(),
            inner,
        }
    }

    /// Whether deciding `request` (with `state` or not) runs without the
    /// GIL: a heavy decision, or one that may wait for the state's lock
    /// (never wait for a lock while holding the GIL).
    fn releases_gil(&self, action: &str, phase: Phase, state: bool) -> bool {
        let heavy = match phase {
            Phase::Before => &self.heavy_before,
            Phase::After => &self.heavy_after,
        };
        state || (!heavy.is_empty() && heavy.contains(action))
    }

    /// Runs `work` with the GIL released when `release`, else holding it.
    fn run<T: Send>(py: Python<'_>, release: bool, work: impl FnOnce() -> T + Send) -> T {
        if release {
            py.detach(work)
        } else {
            work()
        }
    }
}

/// A new decision id: UUID v7 (time-ordered, as `rein serve` names its
/// decisions).
fn new_decision_id() -> String {
    // Without uuid's process-wide context (a mutex every thread would take
    // for ids that sort within a millisecond): 74 random bits keep them
    // unique, and nothing orders decisions by their ids in-process.
    let id = uuid::Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext));
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text).to_string()
}

fn loaded(py: Python<'_>, result: Result<rein_engine::Policy, LoadError>) -> PyResult<Policy> {
    result.map(Policy::new).map_err(|e| policy_error(py, &e))
}

/// `time` as a timestamp: RFC 3339 text or a datetime with a time zone;
/// `None` is now (what `rein check` stamps a request without one with).
fn request_time(py: Python<'_>, time: Option<&Bound<'_, PyAny>>) -> PyResult<jiff::Timestamp> {
    let Some(time) = time else {
        return Ok(jiff::Timestamp::now());
    };
    let text = if time.is_instance_of::<PyString>() {
        text_arg(time, "time")?
    } else {
        match to_json(time, "time")? {
            serde_json::Value::String(s) => s,
            _ => {
                return Err(input_error(
                    py,
                    "time: give RFC 3339 text or a datetime with a time zone".to_string(),
                ))
            }
        }
    };
    Request::parse_time(&text).map_err(|e| input_error(py, e))
}

/// The parts of a request every call takes.
struct Parts<'a, 'py> {
    action: &'a Bound<'py, PyAny>,
    input: Option<&'a Bound<'py, PyAny>>,
    actor: Option<&'a Bound<'py, PyAny>>,
    snapshot: Option<&'a Bound<'py, PyAny>>,
    session: Option<&'a Bound<'py, PyAny>>,
    time: Option<&'a Bound<'py, PyAny>>,
}

impl Parts<'_, '_> {
    fn request(self, py: Python<'_>) -> PyResult<Request> {
        Ok(Request {
            action: text_arg(self.action, "action")?,
            input: opt_to_json(self.input, "input")?,
            actor: opt_to_json(self.actor, "actor")?,
            snapshot: opt_to_json(self.snapshot, "snapshot")?,
            output: None,
            error: None,
            session: opt_text_arg(self.session, "session")?,
            time: Some(request_time(py, self.time)?),
            phase: Phase::Before,
        })
    }
}

/// True when deciding `request` reads or writes state.
fn needs_state(policy: &rein_engine::Policy, action: &str, phase: Phase) -> bool {
    policy.uses_state() && policy.action_state(action, phase).any()
}

/// Why a request decided in process is blocked before any rule: a Python
/// caller holds no credential, so an actor field the policy requires bound
/// (`bound: true`) is never set by one (the runtime's check, with no
/// credential).
fn unbound(policy: &rein_engine::Policy, phase: Phase) -> Option<rein_engine::Decision<'_>> {
    policy
        .unbound_required(|_| false)
        .map(|why| policy.unbound_block(phase, why))
}

/// Decides as `rein check` does (with `--state` when `state` is given):
/// contract check, then the rules, reading and writing the state when the
/// action's rules need it. Runs without the GIL.
fn decide_request<'p>(
    policy: &'p rein_engine::Policy,
    request: &Request,
    state: Option<&State>,
    decision_id: &str,
) -> rein_engine::Decision<'p> {
    if let Some(refused) = unbound(policy, request.phase) {
        return refused;
    }
    match policy.prepare(request) {
        Err(refused) => *refused,
        Ok(prepared) => match state {
            Some(state) if needs_state(policy, &request.action, request.phase) => {
                let time = request.time.unwrap_or_else(jiff::Timestamp::now);
                state.decide(policy, &prepared, decision_id, time)
            }
            _ => prepared.decide(),
        },
    }
}

/// Explains as `rein explain` does (with `--state`: reading it, writing
/// nothing).
fn explain_request(policy: &rein_engine::Policy, request: &Request, state: Option<&State>) -> rein_engine::Explanation {
    if let Some(refused) = unbound(policy, request.phase) {
        return rein_engine::Explanation {
            decision: refused.into_owned(),
            rules: Vec::new(),
        };
    }
    match policy.prepare(request) {
        Err(refused) => rein_engine::Explanation {
            decision: refused.into_owned(),
            rules: Vec::new(),
        },
        Ok(prepared) => match state {
            Some(state) if needs_state(policy, &request.action, request.phase) => state.explain(&prepared),
            _ => prepared.explain(),
        },
    }
}

impl Policy {
    /// [`Policy::decide`]'s fast path: the engine's contract check reads
    /// the Python values in place (`convert::Source`) instead of JSON
    /// converted from them. `None` when anything does not pass (an
    /// argument of the wrong type, a value with no JSON form, a request
    /// that breaks its contract): the caller then converts and decides as
    /// before, which raises the same `InputError` or gives the same
    /// violation as without this path.
    fn decide_in_place(
        &self,
        py: Python<'_>,
        parts: &Parts<'_, '_>,
        state: Option<&State>,
        decision_id: Option<&Bound<'_, PyAny>>,
    ) -> Option<Decision> {
        let action = text_arg(parts.action, "action").ok()?;
        let session = opt_text_arg(parts.session, "session").ok()?;
        let time = request_time(py, parts.time).ok()?;
        let decision_id = opt_text_arg(decision_id, "decision_id").ok()?;
        let policy = &self.inner;
        // Refused by the JSON path, as there (`decide_request`).
        if !policy.bound_actor_fields().is_empty() {
            return None;
        }
        let read = Cell::new(0);
        let prepared = policy
            .prepare_before(
                &action,
                parts.input.map(|v| Source::root(v, &read)),
                parts.actor.map(|v| Source::root(v, &read)),
                parts.snapshot.map(|v| Source::root(v, &read)),
                session.as_deref(),
                Some(time),
            )
            .ok()?;
        let release = self.releases_gil(&action, Phase::Before, state.is_some());
        // The prepared request moves in, so that it is freed without the
        // GIL too.
        Some(Policy::run(py, release, move || match state {
            // The state records the decision's writes under its id.
            Some(state) if needs_state(policy, &action, Phase::Before) => {
                let id = decision_id.unwrap_or_else(new_decision_id);
                Decision::new(state.decide(policy, &prepared, &id, time), id)
            }
            _ => match decision_id {
                Some(id) => Decision::new(prepared.decide(), id),
                None => Decision::with_lazy_id(prepared.decide()),
            },
        }))
    }
}

#[pymethods]
impl Policy {
    /// A Policy is made by loading one; `rein.Policy(...)` says how.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Policy> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "a Policy is loaded, not constructed: rein.Policy.load(path, ...) reads files or folders, \
             rein.Policy.from_yaml(text) a text, rein.Policy.load_actra(schema, policy) Actra's files",
        ))
    }

    /// Loads and merges policy files or folders (all `.yaml`/`.yml` below, except
    /// `*.test.yaml`), as `rein check` does, with `governance` (an Actra governance file)
    /// enforced on their rules. Raises `PolicyError` carrying every diagnostic.
    #[staticmethod]
    #[pyo3(signature = (*paths, governance=None))]
    fn load(py: Python<'_>, paths: Vec<PathBuf>, governance: Option<PathBuf>) -> PyResult<Policy> {
        let result = py.detach(|| match &governance {
            Some(g) => rein_engine::Policy::load_governed(&paths, g),
            None => rein_engine::Policy::load(&paths),
        });
        loaded(py, result)
    }

    /// One native policy from text; `name` is the file name messages use. Raises `PolicyError`.
    #[staticmethod]
    #[pyo3(signature = (text, *, name="<string>"))]
    fn from_yaml(py: Python<'_>, text: String, name: &str) -> PyResult<Policy> {
        let name = name.to_string();
        let result = py.detach(|| rein_engine::Policy::from_sources([(name, text)]));
        loaded(py, result)
    }

    /// Actra's schema, policy and governance files, unchanged, decided with Actra's semantics
    /// (first match, then global rules, then allow). Decide with `decide_actra`. Raises
    /// `PolicyError`.
    #[staticmethod]
    #[pyo3(signature = (schema, policy, governance=None))]
    fn load_actra(py: Python<'_>, schema: PathBuf, policy: PathBuf, governance: Option<PathBuf>) -> PyResult<Policy> {
        let result = py.detach(|| rein_engine::Policy::load_actra(&schema, &policy, governance.as_deref()));
        loaded(py, result)
    }

    /// Actra's files as text (named `schema.yaml`, `policy.yaml`, `governance.yaml` in
    /// diagnostics).
    #[staticmethod]
    #[pyo3(signature = (schema, policy, governance=None))]
    fn from_actra(py: Python<'_>, schema: String, policy: String, governance: Option<String>) -> PyResult<Policy> {
        let result = py.detach(|| rein_engine::Policy::from_actra_strs(&schema, &policy, governance.as_deref()));
        loaded(py, result)
    }

    /// A hash of the policy's sources, in every decision.
    #[getter]
    fn version(&self) -> &str {
        self.inner.version()
    }

    /// The `version` its author wrote, if any.
    #[getter]
    fn version_label(&self) -> Option<&str> {
        self.inner.version_label()
    }

    /// The actions with contracts.
    #[getter]
    fn actions(&self) -> Vec<&str> {
        self.inner.actions().collect()
    }

    /// Number of rules.
    #[getter]
    fn rule_count(&self) -> usize {
        self.inner.rule_count()
    }

    /// Whether some decision reads or writes state (limits, sessions): give those a `State`.
    #[getter]
    fn uses_state(&self) -> bool {
        self.inner.uses_state()
    }

    /// The `State` every `rein.Guard` over this policy uses when it is given
    /// none: one per loaded policy, made on first use, so that guards made per
    /// request or per task still count the same limits and sessions. Loading
    /// the files again gives another policy with another state.
    #[getter]
    fn shared_state(&self, py: Python<'_>) -> PyResult<Py<State>> {
        self.shared_state
            .get_or_try_init(py, || Py::new(py, State::py_new()?))
            .map(|state| state.clone_ref(py))
    }

    /// Warnings found while loading (the policy loaded).
    #[getter]
    fn warnings(&self) -> Vec<Diagnostic> {
        self.inner.warnings().iter().map(Diagnostic::from).collect()
    }

    /// `(name, optional, type)` of each top-level input field of `action`'s contract, in order;
    /// None for an unknown action.
    fn input_fields(&self, action: &str) -> Option<Vec<(String, bool, String)>> {
        self.inner
            .input_fields(action)
            .map(|(fields, _)| fields.into_iter().map(|f| (f.name, f.optional, f.ty)).collect())
    }

    /// Whether undeclared input fields are dropped (else they break the contract). False for an
    /// unknown action.
    fn extra_fields_ignored(&self, action: &str) -> bool {
        self.inner.input_fields(action).is_some_and(|(_, ignored)| ignored)
    }

    /// Whether a result of `action` is checked at all (output contract, `after` rules or a
    /// non-allow `after` default).
    fn checks_output(&self, action: &str) -> bool {
        self.inner.checks_output(action)
    }

    /// Decides a request before the action runs, as `rein check` does (with `state`, as `rein
    /// check --state`). A request that does not fit its contract is a `block` decision naming
    /// the violation; a value that has no JSON form raises `InputError`. `time` (RFC 3339 text
    /// or a datetime with a time zone) is what `now` reads, the current time by default. A text
    /// argument that is not a `str` raises `InputError` too. The GIL is released while the
    /// engine decides, when the action has enough rules to gain from it (or `state` is given).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (action, input=None, *, actor=None, snapshot=None, session=None, time=None, state=None, decision_id=None))]
    fn decide(
        &self,
        py: Python<'_>,
        action: &Bound<'_, PyAny>,
        input: Option<&Bound<'_, PyAny>>,
        actor: Option<&Bound<'_, PyAny>>,
        snapshot: Option<&Bound<'_, PyAny>>,
        session: Option<&Bound<'_, PyAny>>,
        time: Option<&Bound<'_, PyAny>>,
        state: Option<&Bound<'_, State>>,
        decision_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let state = state.map(|s| s.get());
        let parts = Parts {
            action,
            input,
            actor,
            snapshot,
            session,
            time,
        };
        if let Some(decision) = self.decide_in_place(py, &parts, state, decision_id) {
            return Ok(decision);
        }
        let request = parts.request(py)?;
        let decision_id = opt_text_arg(decision_id, "decision_id")?;
        let policy = &self.inner;
        let release = self.releases_gil(&request.action, request.phase, state.is_some());
        // The request moves in, so that it is freed without the GIL too.
        Ok(Policy::run(py, release, move || {
            let id = decision_id.unwrap_or_else(new_decision_id);
            let decision = decide_request(policy, &request, state, &id);
            Decision::new(decision, id)
        }))
    }

    /// Decides Actra's request shape `{"action": {"type": ..}, "actor": .., "snapshot": ..}`
    /// (what `rein check --actra-schema` reads).
    fn decide_actra(&self, py: Python<'_>, input: &Bound<'_, PyAny>) -> PyResult<Decision> {
        let json = to_json(input, "request")?;
        let policy = &self.inner;
        Ok(py.detach(move || Decision::new(policy.decide_actra(&json), new_decision_id())))
    }

    /// `decide_actra` with the trace, as `rein explain --actra-schema`.
    fn explain_actra(&self, py: Python<'_>, input: &Bound<'_, PyAny>) -> PyResult<Explanation> {
        let json = to_json(input, "request")?;
        let policy = &self.inner;
        let (inner, id) = py.detach(move || (policy.explain_actra(&json), new_decision_id()));
        let decision = Py::new(py, Decision::new(inner.decision.clone(), id))?;
        Ok(Explanation { inner, decision })
    }

    /// As `decide` (or `check_output` when `output` or `error` is given), with the trace of
    /// every rule, as `rein explain` gives it; reads `state` but writes nothing to it.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (action, input=None, *, actor=None, snapshot=None, session=None, time=None, state=None, output=None, error=None))]
    fn explain(
        &self,
        py: Python<'_>,
        action: &Bound<'_, PyAny>,
        input: Option<&Bound<'_, PyAny>>,
        actor: Option<&Bound<'_, PyAny>>,
        snapshot: Option<&Bound<'_, PyAny>>,
        session: Option<&Bound<'_, PyAny>>,
        time: Option<&Bound<'_, PyAny>>,
        state: Option<&Bound<'_, State>>,
        output: Option<&Bound<'_, PyAny>>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Explanation> {
        let mut request = Parts {
            action,
            input,
            actor,
            snapshot,
            session,
            time,
        }
        .request(py)?;
        if output.is_some() || error.is_some() {
            request.phase = Phase::After;
            request.output = output.map(|o| to_json(o, "output")).transpose()?;
            request.error = opt_text_arg(error, "error")?;
        }
        let state = state.map(|s| s.get());
        let policy = &self.inner;
        let (inner, id) = py.detach(|| (explain_request(policy, &request, state), new_decision_id()));
        let decision = Py::new(py, Decision::new(inner.decision.clone(), id))?;
        Ok(Explanation { inner, decision })
    }

    /// Checks an action's result (or the `error` it reported instead) against the output
    /// contract and `after` rules; `block` means withhold it. `output=None` is no output: for
    /// an action with an output contract that breaks it (block), unless `error` says why there
    /// is none. `decision_id` is the `before` decision's, so the output joins the session's
    /// record of that call (with `state`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (action, input=None, output=None, *, error=None, actor=None, snapshot=None, session=None, time=None, state=None, decision_id=None))]
    fn check_output(
        &self,
        py: Python<'_>,
        action: &Bound<'_, PyAny>,
        input: Option<&Bound<'_, PyAny>>,
        output: Option<&Bound<'_, PyAny>>,
        error: Option<&Bound<'_, PyAny>>,
        actor: Option<&Bound<'_, PyAny>>,
        snapshot: Option<&Bound<'_, PyAny>>,
        session: Option<&Bound<'_, PyAny>>,
        time: Option<&Bound<'_, PyAny>>,
        state: Option<&Bound<'_, State>>,
        decision_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Decision> {
        let mut request = Parts {
            action,
            input,
            actor,
            snapshot,
            session,
            time,
        }
        .request(py)?;
        request.phase = Phase::After;
        request.output = output.map(|o| to_json(o, "output")).transpose()?;
        request.error = opt_text_arg(error, "error")?;
        let decision_id = opt_text_arg(decision_id, "decision_id")?;
        let state = state.map(|s| s.get());
        let policy = &self.inner;
        let release = self.releases_gil(&request.action, request.phase, state.is_some());
        // The request moves in, so that it is freed without the GIL too.
        Ok(Policy::run(py, release, move || {
            let id = decision_id.unwrap_or_else(new_decision_id);
            let decision = decide_request(policy, &request, state, &id);
            Decision::new(decision, id)
        }))
    }

    fn __repr__(&self) -> String {
        format!(
            "<Policy version={} rules={} actions={}>",
            self.inner.version(),
            self.inner.rule_count(),
            self.inner.actions().count()
        )
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    convert::prepare(m.py())?;
    m.add_class::<Policy>()?;
    m.add_class::<Decision>()?;
    m.add_class::<Explanation>()?;
    m.add_class::<Obligation>()?;
    m.add_class::<Diagnostic>()?;
    m.add_class::<State>()?;
    Ok(())
}
