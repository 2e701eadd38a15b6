//! The exceptions the native module raises, defined in Python
//! (`rein.errors`) so that users catch one hierarchy; and `Diagnostic`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use rein_engine::{LoadError, Severity};

static REIN_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static POLICY_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INPUT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `cell`'s class of `rein.errors`; if that module cannot be imported (a
/// broken install), the import error itself, so nothing passes silently.
fn raise(
    py: Python<'_>,
    cell: &PyOnceLock<Py<PyType>>,
    name: &str,
    args: impl FnOnce() -> PyResult<Py<PyAny>>,
) -> PyErr {
    match cell.import(py, "rein.errors", name) {
        Ok(ty) => match args() {
            Ok(args) => PyErr::from_type(ty.clone(), args),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// `rein.InputError(message)`: a value with no exact JSON form.
pub(crate) fn input_error(py: Python<'_>, message: String) -> PyErr {
    raise(py, &INPUT_ERROR, "InputError", || {
        Ok((message,).into_pyobject(py)?.into_any().unbind())
    })
}

/// `rein.ReinError(message)`: something else Rein refuses (a state that
/// cannot be read, a `time` that is not RFC 3339).
pub(crate) fn rein_error(py: Python<'_>, message: String) -> PyErr {
    raise(py, &REIN_ERROR, "ReinError", || {
        Ok((message,).into_pyobject(py)?.into_any().unbind())
    })
}

/// `rein.PolicyError(rendered, diagnostics)`: the policy did not load.
pub(crate) fn policy_error(py: Python<'_>, error: &LoadError) -> PyErr {
    raise(py, &POLICY_ERROR, "PolicyError", || {
        let diagnostics: Vec<Diagnostic> = error.diagnostics().iter().map(Diagnostic::from).collect();
        Ok((error.render(false), diagnostics)
            .into_pyobject(py)?
            .into_any()
            .unbind())
    })
}

/// One problem found while loading a policy.
#[pyclass(frozen, module = "rein._native")]
pub struct Diagnostic {
    /// `"error"` or `"warning"`.
    #[pyo3(get)]
    severity: &'static str,
    /// The file, as it was named when loading; None for a problem with no file (an empty file
    /// list, an unreadable path).
    #[pyo3(get)]
    file: Option<String>,
    /// 1-based; None when the problem has no place in a file.
    #[pyo3(get)]
    line: Option<usize>,
    /// 1-based, in characters.
    #[pyo3(get)]
    column: Option<usize>,
    /// What is wrong.
    #[pyo3(get)]
    message: String,
    /// What to do instead, if the loader knows.
    #[pyo3(get)]
    hint: Option<String>,
    /// As the CLI prints it, without colours.
    rendered: String,
}

impl From<&rein_engine::Diagnostic> for Diagnostic {
    fn from(d: &rein_engine::Diagnostic) -> Diagnostic {
        let (file, line, column) = match d.location() {
            Some((f, l, c)) => (Some(f), Some(l), Some(c)),
            None => (None, None, None),
        };
        Diagnostic {
            severity: match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Note => "note",
            },
            file,
            line,
            column,
            message: d.message.clone(),
            hint: d.help.clone(),
            rendered: rein_engine::diagnostics::render_all(std::slice::from_ref(d), false),
        }
    }
}

#[pymethods]
impl Diagnostic {
    fn __str__(&self) -> &str {
        &self.rendered
    }

    fn __repr__(&self) -> String {
        let place = match (&self.file, self.line, self.column) {
            (Some(f), Some(l), Some(c)) => format!("{f}:{l}:{c}: "),
            _ => String::new(),
        };
        format!("<Diagnostic {} {place}{}>", self.severity, self.message)
    }

    /// The JSON form `rein validate --format json` prints: `severity`, `message`, and `file`,
    /// `line`, `column`, `help` when known.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let d = pyo3::types::PyDict::new(py);
        d.set_item("severity", self.severity)?;
        d.set_item("message", &self.message)?;
        if let (Some(f), Some(l), Some(c)) = (&self.file, self.line, self.column) {
            d.set_item("file", f)?;
            d.set_item("line", l)?;
            d.set_item("column", c)?;
        }
        if let Some(h) = &self.hint {
            d.set_item("help", h)?;
        }
        Ok(d)
    }
}
