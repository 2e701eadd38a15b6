//! `Decision`, `Obligation` and `Explanation`: the engine's answers, read
//! lazily (an attribute is built when it is read, not for every decision).

use crate::convert::to_py;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rein_engine::Effect;
use std::sync::OnceLock;

/// What a `require_approval` decision asks for.
#[pyclass(frozen, module = "rein._native")]
pub struct Obligation {
    /// The rule that asked.
    #[pyo3(get)]
    rule: String,
    /// The role its approver must hold.
    #[pyo3(get)]
    role: String,
    /// How long a grant holds, in seconds (None: the server's default).
    #[pyo3(get)]
    ttl_seconds: Option<u64>,
}

#[pymethods]
impl Obligation {
    fn __repr__(&self) -> String {
        format!(
            "Obligation(rule={:?}, role={:?}, ttl_seconds={})",
            self.rule,
            self.role,
            self.ttl_seconds.map_or("None".to_string(), |t| t.to_string())
        )
    }
}

/// The answer to one request. Immutable.
#[pyclass(frozen, module = "rein._native")]
pub struct Decision {
    /// Owns its policy: a Python object outlives any borrow.
    pub(crate) inner: rein_engine::Decision<'static>,
    /// Made when first read, unless given: most decisions' ids are never
    /// read, and a UUID v7 costs a clock read, random bits and a string.
    /// Once read it stays (a `OnceLock`, also across threads).
    id: OnceLock<String>,
}

impl Decision {
    pub(crate) fn new(inner: rein_engine::Decision<'_>, id: String) -> Decision {
        Decision {
            inner: inner.into_owned(),
            id: OnceLock::from(id),
        }
    }

    /// A decision whose id is made when first read (nothing was recorded
    /// under it yet).
    pub(crate) fn with_lazy_id(inner: rein_engine::Decision<'_>) -> Decision {
        Decision {
            inner: inner.into_owned(),
            id: OnceLock::new(),
        }
    }

    fn id(&self) -> &str {
        self.id.get_or_init(crate::new_decision_id)
    }
}

#[pymethods]
impl Decision {
    /// A fresh UUID v7 per decision, or the `decision_id` given to `decide` (what the audit log
    /// or a rein serve would call it; in-process it names the decision for observers and
    /// exceptions, and with a `State` it is the id the decision's writes are recorded under).
    #[getter]
    fn decision_id(&self) -> &str {
        self.id()
    }

    /// `"allow"`, `"block"` or `"require_approval"`.
    #[getter]
    fn effect(&self) -> &'static str {
        self.inner.effect().as_str()
    }

    /// `effect == "allow"`.
    #[getter]
    fn allowed(&self) -> bool {
        self.inner.effect() == Effect::Allow
    }

    /// `effect == "block"`.
    #[getter]
    fn blocked(&self) -> bool {
        self.inner.effect() == Effect::Block
    }

    /// `effect == "require_approval"`.
    #[getter]
    fn requires_approval(&self) -> bool {
        self.inner.effect() == Effect::RequireApproval
    }

    /// `"before"` or `"after"`.
    #[getter]
    fn phase(&self) -> &'static str {
        self.inner.phase().as_str()
    }

    /// Every rule whose condition held, in policy order (the CLI's `rules`): also rules that
    /// allowed when the effect is `block`.
    #[getter]
    fn rules(&self) -> Vec<&str> {
        self.inner.rules()
    }

    /// The matched rules whose own effect is the decision's (empty when the decision rests on
    /// the default, the contract or an error).
    #[getter]
    fn deciding_rules(&self) -> Vec<&str> {
        self.inner.deciding_rules()
    }

    /// Why: the reason of each deciding rule (a limit's use before it), or the default, the
    /// contract violation or the evaluation error.
    #[getter]
    fn reasons(&self) -> Vec<String> {
        self.inner.reasons()
    }

    /// No rule matched; the policy's default decided.
    #[getter]
    fn default_applied(&self) -> bool {
        *self.inner.basis() == rein_engine::Basis::Default
    }

    /// One per rule that asked for approval (empty unless `require_approval`).
    #[getter]
    fn obligations(&self) -> Vec<Obligation> {
        self.inner
            .obligations()
            .into_iter()
            .map(|o| Obligation {
                rule: o.rule,
                role: o.approval.role,
                ttl_seconds: o.approval.ttl_seconds,
            })
            .collect()
    }

    /// Every role an approver must hold, without repeats (empty unless `require_approval`).
    #[getter]
    fn approval_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = Vec::new();
        for o in self.inner.obligations() {
            if !roles.contains(&o.approval.role) {
                roles.push(o.approval.role);
            }
        }
        roles
    }

    /// Session labels the matched rules attach (sorted, no repeats).
    #[getter]
    fn labels(&self) -> Vec<&str> {
        self.inner.labels()
    }

    /// `{"path": ..., "message": ...}` when the request broke its contract.
    #[getter]
    fn violation<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(v) = self.inner.violation() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("path", &v.path)?;
        d.set_item("message", &v.message)?;
        Ok(Some(d))
    }

    /// `{"rule": ..., "message": ...}` per rule whose condition could not be evaluated (the
    /// decision is then `block`).
    #[getter]
    fn errors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for e in self.inner.errors() {
            let d = PyDict::new(py);
            d.set_item("rule", e.rule)?;
            d.set_item("message", e.message)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// For a refusal by limits only: whole seconds until they leave room.
    #[getter]
    fn retry_after_seconds(&self) -> Option<u64> {
        self.inner.retry_after_seconds()
    }

    /// The hash of the policy that decided.
    #[getter]
    fn policy_version(&self) -> &str {
        self.inner.policy_version()
    }

    /// The `version` its author wrote, if any.
    #[getter]
    fn policy_version_label(&self) -> Option<&str> {
        self.inner.policy_version_label()
    }

    /// Exactly `rein check`'s JSON for this decision (plus `decision_id`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut json = self.inner.to_json();
        if let Some(map) = json.as_object_mut() {
            map.insert("decision_id".into(), self.id().into());
        }
        to_py(py, &json)
    }

    /// A decision is neither true nor false: `if decision:` would read an
    /// object as "allowed". Test `decision.allowed`.
    fn __bool__(&self) -> PyResult<bool> {
        Err(PyTypeError::new_err(
            "a Decision has no truth value: test `decision.allowed` (or `.blocked`, `.requires_approval`)",
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "Decision(effect={:?}, rules={:?}, reasons={:?}, decision_id={:?})",
            self.inner.effect().as_str(),
            self.inner.rules(),
            self.inner.reasons(),
            self.id()
        )
    }
}

/// A decision with the trace of every rule considered.
#[pyclass(frozen, module = "rein._native")]
pub struct Explanation {
    pub(crate) inner: rein_engine::Explanation,
    /// The decision, built once (it is an attribute users compare by
    /// identity, e.g. `e.decision is e.decision`).
    pub(crate) decision: Py<Decision>,
}

#[pymethods]
impl Explanation {
    /// The decision (with a fresh `decision_id`; nothing was recorded).
    #[getter]
    fn decision(&self, py: Python<'_>) -> Py<Decision> {
        self.decision.clone_ref(py)
    }

    /// One per rule considered, in policy order: `id`, `effect`, `condition` (its source text,
    /// None for none), `outcome` (`{"result": "matched" | "not_matched" | "error", "error":
    /// ...}`) and `steps` (`[{"expr": ..., "value": ...}]`, each sub-expression's value). Empty
    /// when the request broke its contract.
    #[getter]
    fn rules<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.to_json()["rules"])
    }

    /// `rein explain --json`'s form: `{"decision": ..., "rules": ...}` (the decision without
    /// `decision_id`).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.to_json())
    }

    /// The text `rein explain` prints.
    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            // `rules` as in a Decision's repr (those that matched), so a count
            // of the rules considered is not read as a count that matched.
            "Explanation(effect={:?}, rules={:?}, considered={})",
            self.inner.decision.effect().as_str(),
            self.inner.decision.rules(),
            self.inner.rules.len()
        )
    }
}
