//! Python values to JSON and back, by hand and strictly.
//!
//! Not through a generic serde bridge: serde_json turns a NaN into `null`,
//! and a generic bridge would take a `set`, a `bytes` or an object with
//! `__dict__` somehow. A value with no exact JSON form is an `InputError`
//! that names where it is (`input.items[2]`), never a guess: a guess could
//! turn a request that should be refused into one that passes.

use crate::errors::input_error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use rein_engine::{ContractValue, Node, Violation};
use serde_json::{Map, Number, Value as Json};
use std::borrow::Cow;
use std::cell::Cell;

/// Deepest nesting of lists and dicts taken: deeper is an `InputError`
/// (and a list that holds itself stops here instead of recursing forever).
pub(crate) const MAX_DEPTH: usize = 64;

/// Most values (scalars, lists and dicts, counted along every path) one
/// conversion takes: a list holding the one below twice, 40 levels deep,
/// is 40 objects under the depth bound but 2**40 leaves to write (it ran
/// the process out of memory).
pub(crate) const MAX_VALUES: usize = 1_000_000;

thread_local! {
    /// Values the conversion running on this thread may still take.
    static VALUES_LEFT: Cell<usize> = const { Cell::new(0) };
}

/// Runs one whole conversion with a full [`MAX_VALUES`] budget; the
/// budget of a conversion it interrupts (Python code a datetime runs may
/// convert too) is restored after.
fn with_budget<T>(work: impl FnOnce() -> T) -> T {
    let outer = VALUES_LEFT.with(|left| left.replace(MAX_VALUES));
    let out = work();
    VALUES_LEFT.with(|left| left.set(outer));
    out
}

/// Takes one value from the budget; false when it is spent.
fn take_value() -> bool {
    VALUES_LEFT.with(|left| match left.get() {
        0 => false,
        n => {
            left.set(n - 1);
            true
        }
    })
}

/// One step of the path to a value that failed, kept only on failure.
enum Segment {
    Key(String),
    Index(usize),
}

/// Why a value has no JSON form, and where (innermost segment first,
/// pushed while the error climbs back up).
struct Unfit {
    path: Vec<Segment>,
    message: String,
    /// Not an error: the value holds something whose conversion runs
    /// Python code (a datetime's `utcoffset`), so it must be converted
    /// again with every dict copied first (see [`Walk`]).
    needs_copies: bool,
}

/// How dicts are walked.
///
/// Fast: in place, which is safe while no Python code runs (only C
/// functions of the value types are called, none of which can change a
/// dict). Python code could change a dict being walked (pyo3 then
/// panics), so the first value whose conversion would run some (a
/// datetime: its `tzinfo` may be any Python class) restarts the whole
/// conversion with `Copied`: each dict's items are copied to a list before
/// they are walked, so a change made meanwhile is simply not seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    Fast,
    Copied,
}

impl Unfit {
    fn new(message: String) -> Unfit {
        Unfit {
            path: Vec::new(),
            message,
            needs_copies: false,
        }
    }

    fn at(mut self, segment: Segment) -> Unfit {
        self.path.push(segment);
        self
    }

    /// `root.a[2].b: message`.
    fn render(&self, root: &str) -> String {
        let mut out = root.to_string();
        for segment in self.path.iter().rev() {
            match segment {
                Segment::Key(k) if is_identifier(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Key(k) => {
                    out.push('[');
                    out.push_str(&Json::String(k.clone()).to_string());
                    out.push(']');
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        format!("{out}: {}", self.message)
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Converts `value` to JSON; `root` names it in errors (`input`, `actor`).
pub(crate) fn to_json(value: &Bound<'_, PyAny>, root: &str) -> PyResult<Json> {
    let result = match with_budget(|| convert(value, 0, Walk::Fast)) {
        Err(e) if e.needs_copies => with_budget(|| convert(value, 0, Walk::Copied)),
        other => other,
    };
    result.map_err(|e| input_error(value.py(), e.render(root)))
}

/// Converts an optional mapping argument: `None` is JSON `null` (the
/// engine reads it as an empty object).
pub(crate) fn opt_to_json(value: Option<&Bound<'_, PyAny>>, root: &str) -> PyResult<Json> {
    match value {
        None => Ok(Json::Null),
        Some(v) => to_json(v, root),
    }
}

/// A text argument (`action`, `session`...): a `str`, else an
/// `InputError` naming the argument.
pub(crate) fn text_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<String> {
    let text = match value.cast::<PyString>() {
        Ok(s) => string(s),
        Err(_) => Err(Unfit::new(format!("expected str, got `{}`", type_name(value)))),
    };
    text.map_err(|e| input_error(value.py(), e.render(name)))
}

/// [`text_arg`] for an optional argument: `None` is none.
pub(crate) fn opt_text_arg(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<String>> {
    value.map(|v| text_arg(v, name)).transpose()
}

fn convert(value: &Bound<'_, PyAny>, depth: usize, walk: Walk) -> Result<Json, Unfit> {
    if !take_value() {
        return Err(Unfit::new(format!(
            "more than {MAX_VALUES} values in all (a value held in many places counts each time)"
        )));
    }
    if value.is_none() {
        return Ok(Json::Null);
    }
    // Exact types first: they are nearly every value, and `bool` must be
    // seen before `int` (it is one).
    if let Ok(s) = value.cast_exact::<PyString>() {
        return string(s).map(Json::String);
    }
    if let Ok(b) = value.cast_exact::<PyBool>() {
        return Ok(Json::Bool(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        return int(value);
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        let x = f.value();
        return Number::from_f64(x)
            .map(Json::Number)
            .ok_or_else(|| Unfit::new(format!("float {} has no JSON form", float_text(x))));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return string(s).map(Json::String);
    }
    if let Ok(d) = value.cast::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        let mut map = Map::new();
        let mut entry = |k: Bound<'_, PyAny>, v: Bound<'_, PyAny>| -> Result<(), Unfit> {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(Unfit::new(format!(
                    "a dict key of type `{}` ({}) has no JSON form: keys must be str",
                    type_name(&k),
                    short_repr(&k)
                )));
            };
            let key = string(key)?;
            match convert(&v, depth + 1, walk) {
                Ok(j) => {
                    map.insert(key, j);
                    Ok(())
                }
                Err(e) => Err(e.at(Segment::Key(key))),
            }
        };
        match walk {
            Walk::Fast => {
                for (k, v) in d.iter() {
                    entry(k, v)?;
                }
            }
            Walk::Copied => {
                let items = d
                    .items()
                    .iter()
                    .map(|item| item.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Unfit::new(format!("the dict could not be read: {e}")))?;
                for (k, v) in items {
                    entry(k, v)?;
                }
            }
        }
        return Ok(Json::Object(map));
    }
    if let Ok(l) = value.cast::<PyList>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        let mut out = Vec::with_capacity(l.len());
        for (i, v) in l.iter().enumerate() {
            out.push(convert(&v, depth + 1, walk).map_err(|e| e.at(Segment::Index(i)))?);
        }
        return Ok(Json::Array(out));
    }
    if let Ok(t) = value.cast::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep());
        }
        let mut out = Vec::with_capacity(t.len());
        for (i, v) in t.iter().enumerate() {
            out.push(convert(&v, depth + 1, walk).map_err(|e| e.at(Segment::Index(i)))?);
        }
        return Ok(Json::Array(out));
    }
    if is_datetime(value) {
        if walk == Walk::Fast {
            return Err(Unfit {
                needs_copies: true,
                ..Unfit::new(String::new())
            });
        }
        return datetime_text(value).map(Json::String);
    }
    Err(Unfit::new(format!(
        "a value of type `{}` has no JSON form (give None, bool, int, float, str, list, tuple, dict with str \
         keys, or a datetime with a time zone){}",
        type_name(value),
        conversion_hint(value)
    )))
}

/// A Python value read in place by the engine's contract check
/// ([`rein_engine::ContractValue`]), without building JSON first.
///
/// It reads what [`to_json`] converts, the same way (bool before int, ints
/// of 64 bits, finite floats, str with str keys, the same depth bound), and
/// nothing else: every other value (a datetime, whose conversion runs
/// Python code; anything [`to_json`] refuses) is [`Node::Unreadable`],
/// which the check refuses, and the caller then converts the request with
/// [`to_json`] and checks that, which raises the `InputError` or gives the
/// violation. Only the C functions of the value types run while a dict is
/// walked in place, as in [`Walk::Fast`].
pub(crate) struct Source<'a, 'py> {
    value: Bound<'py, PyAny>,
    depth: usize,
    /// Values read so far in the request, against [`MAX_READ_IN_PLACE`].
    read: &'a Cell<usize>,
}

/// The most values one request is read in place for: a list holding
/// another twice, nested under a contract of nested lists, would otherwise
/// be walked exponentially. Past it the value is unreadable here, and the
/// JSON conversion, with its own bound, says what is wrong.
const MAX_READ_IN_PLACE: usize = 1_000_000;

impl<'a, 'py> Source<'a, 'py> {
    /// A root argument (`input`, `actor`, `snapshot`); `read` counts the
    /// values read in the whole request.
    pub(crate) fn root(value: &Bound<'py, PyAny>, read: &'a Cell<usize>) -> Source<'a, 'py> {
        Source {
            value: value.clone(),
            depth: 0,
            read,
        }
    }

    fn child(&self, value: Bound<'py, PyAny>) -> Source<'a, 'py> {
        Source {
            value,
            depth: self.depth + 1,
            read: self.read,
        }
    }
}

/// A violation that only says "fall back": never shown, since the caller
/// then converts and checks the JSON, which says what is wrong.
fn unreadable() -> Violation {
    Violation {
        path: String::new(),
        message: "has no exact JSON form".into(),
    }
}

impl ContractValue for Source<'_, '_> {
    fn node(&self) -> Node<'_> {
        let read = self.read.get() + 1;
        if read > MAX_READ_IN_PLACE {
            return Node::Unreadable;
        }
        self.read.set(read);
        let value = &self.value;
        if value.is_none() {
            return Node::Null;
        }
        if let Ok(s) = value.cast_exact::<PyString>() {
            return text(s).map_or(Node::Unreadable, Node::Str);
        }
        if let Ok(b) = value.cast_exact::<PyBool>() {
            return Node::Bool(b.is_true());
        }
        if value.is_instance_of::<PyInt>() {
            return match int(value) {
                Ok(Json::Number(n)) => Node::Number(n),
                _ => Node::Unreadable,
            };
        }
        if let Ok(f) = value.cast::<PyFloat>() {
            return Number::from_f64(f.value()).map_or(Node::Unreadable, Node::Number);
        }
        if let Ok(s) = value.cast::<PyString>() {
            return text(s).map_or(Node::Unreadable, Node::Str);
        }
        let len = if let Ok(d) = value.cast::<PyDict>() {
            Node::Object(d.len())
        } else if let Ok(l) = value.cast::<PyList>() {
            Node::List(l.len())
        } else if let Ok(t) = value.cast::<PyTuple>() {
            Node::List(t.len())
        } else {
            return Node::Unreadable;
        };
        if self.depth >= MAX_DEPTH {
            return Node::Unreadable;
        }
        len
    }

    fn item(&self, i: usize) -> Option<Self> {
        let item = if let Ok(l) = self.value.cast::<PyList>() {
            l.get_item(i).ok()?
        } else {
            self.value.cast::<PyTuple>().ok()?.get_item(i).ok()?
        };
        Some(self.child(item))
    }

    fn entries(&self, visit: &mut dyn FnMut(&str, Self) -> Result<(), Violation>) -> Result<(), Violation> {
        let Ok(d) = self.value.cast::<PyDict>() else {
            return Err(unreadable());
        };
        for (k, v) in d.iter() {
            let key = k.cast::<PyString>().map_err(|_| unreadable())?;
            let key = text(key).ok_or_else(unreadable)?;
            visit(&key, self.child(v))?;
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "a Python value"
    }

    fn shown(&self) -> String {
        String::new()
    }

    fn is_readable(&self) -> bool {
        // A budget of its own: outside one the walk would refuse at once
        // (and every such request would take the slower JSON path).
        with_budget(|| convert(&self.value, self.depth, Walk::Fast)).is_ok()
    }
}

fn too_deep() -> Unfit {
    Unfit::new(format!("nested deeper than {MAX_DEPTH} lists and dicts"))
}

fn string(s: &Bound<'_, PyString>) -> Result<String, Unfit> {
    // A lone surrogate (`"\ud800"`) has no UTF-8 form, hence no JSON one.
    text(s)
        .map(Cow::into_owned)
        .ok_or_else(|| Unfit::new("a str that is not valid Unicode (a lone surrogate) has no JSON form".into()))
}

#[cfg(not(windows))]
extern "C" {
    /// Exported by every CPython since 3.3, in the limited API from 3.10
    /// (why pyo3 declares it only there for an abi3-py39 build). Python 3.9
    /// exports it too, except through Windows' `python3.dll`, which holds
    /// only the limited API.
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::os::raw::c_char;
}

/// A str's UTF-8 text, borrowed from the str (CPython keeps it: an ASCII
/// str is its own UTF-8), where pyo3's `to_cow` copies it into a new bytes
/// object and then a `String` on an abi3-py39 build. `None` for a str with
/// no UTF-8 form (a lone surrogate).
fn text<'a>(s: &'a Bound<'_, PyString>) -> Option<Cow<'a, str>> {
    #[cfg(not(windows))]
    {
        let mut size: pyo3::ffi::Py_ssize_t = 0;
        // SAFETY: `s` is a live str and the GIL is held (a `Bound`); the
        // text lives in the str, which `'a` keeps alive; CPython returns
        // valid UTF-8 or NULL with an exception set.
        unsafe {
            let data = PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size);
            if data.is_null() {
                drop(PyErr::take(s.py()));
                return None;
            }
            let bytes = std::slice::from_raw_parts(data.cast::<u8>(), usize::try_from(size).ok()?);
            Some(Cow::Borrowed(std::str::from_utf8_unchecked(bytes)))
        }
    }
    #[cfg(windows)]
    {
        s.to_cow().ok()
    }
}

/// An int that fits 64 bits (signed, or unsigned above `i64::MAX`): a
/// larger one would lose digits in the engine.
fn int(value: &Bound<'_, PyAny>) -> Result<Json, Unfit> {
    if let Ok(i) = value.extract::<i64>() {
        return Ok(Json::Number(i.into()));
    }
    if let Ok(u) = value.extract::<u64>() {
        return Ok(Json::Number(u.into()));
    }
    Err(Unfit::new(format!(
        "int {} is outside the 64-bit range JSON numbers are read with",
        short_repr(value)
    )))
}

fn float_text(x: f64) -> &'static str {
    if x.is_nan() {
        "nan"
    } else if x > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// How to turn the objects users most often pass (dataclasses, pydantic
/// models) into a dict: they are not converted implicitly, since which
/// fields they dump, and as what, is theirs to choose.
fn conversion_hint(value: &Bound<'_, PyAny>) -> &'static str {
    if value.hasattr("model_dump").unwrap_or(false) {
        ": pass `value.model_dump(mode=\"json\")`"
    } else if value.hasattr("__dataclass_fields__").unwrap_or(false) {
        ": pass `dataclasses.asdict(value)`"
    } else {
        ""
    }
}

/// `repr(value)`, cut to 60 characters: it goes in a message.
fn short_repr(value: &Bound<'_, PyAny>) -> String {
    let text = value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".to_string());
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

static DATETIME: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Imports what conversion needs once, when the module loads: an import
/// runs Python code, which must not happen while a dict is walked.
pub(crate) fn prepare(py: Python<'_>) -> PyResult<()> {
    DATETIME.import(py, "datetime", "datetime").map(|_| ())
}

/// By the value's type alone: `isinstance` may read a `__class__` the
/// value defines, which would run Python code (see [`Walk`]).
fn is_datetime(value: &Bound<'_, PyAny>) -> bool {
    DATETIME
        .import(value.py(), "datetime", "datetime")
        .and_then(|ty| value.get_type().is_subclass(ty))
        .unwrap_or(false)
}

/// A datetime with a time zone as RFC 3339 text (`isoformat`, or in UTC
/// when its offset has seconds, which RFC 3339 cannot write). A naive
/// datetime names no instant: refused rather than read in some zone.
fn datetime_text(value: &Bound<'_, PyAny>) -> Result<String, Unfit> {
    let failed = |e: PyErr| Unfit::new(format!("the datetime could not be read: {e}"));
    let offset = value.call_method0("utcoffset").map_err(failed)?;
    if offset.is_none() {
        return Err(Unfit::new(
            "a datetime without a time zone (naive) names no instant: give it a tzinfo".into(),
        ));
    }
    let seconds: f64 = offset
        .call_method0("total_seconds")
        .and_then(|s| s.extract())
        .map_err(failed)?;
    let value = if seconds.fract() != 0.0 || seconds % 60.0 != 0.0 {
        let utc = PyModule::import(value.py(), "datetime")
            .and_then(|m| m.getattr("timezone"))
            .and_then(|tz| tz.getattr("utc"))
            .map_err(failed)?;
        value.call_method1("astimezone", (utc,)).map_err(failed)?
    } else {
        value.clone()
    };
    value
        .call_method0("isoformat")
        .and_then(|s| s.extract::<String>())
        .map_err(failed)
}

/// JSON to Python: dict, list, int, float, str, bool, None.
pub(crate) fn to_py<'py>(py: Python<'py>, value: &Json) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Json::Null => py.None().into_bound(py),
        Json::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Json::String(s) => PyString::new(py, s).into_any(),
        Json::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Json::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_as_python_reads_them() {
        let e = Unfit::new("bad".into())
            .at(Segment::Index(2))
            .at(Segment::Key("items".into()));
        assert_eq!(e.render("input"), "input.items[2]: bad");
        let e = Unfit::new("bad".into()).at(Segment::Key("a b".into()));
        assert_eq!(e.render("actor"), "actor[\"a b\"]: bad");
        assert!(is_identifier("_x1") && !is_identifier("1x") && !is_identifier("") && !is_identifier("a-b"));
    }
}
