//! Evaluation of compiled conditions over a contract-checked request.
//!
//! Values are borrowed from the request or the policy wherever possible
//! (`Cow::Borrowed`), so a typical comparison allocates nothing.

use crate::instant::Instant;
use crate::ir::{ArithOp, Builtin, CmpOp, MacroKind, Node, NodeKind, Root, Step};
use crate::value::Value;
use jiff::Timestamp;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::IpAddr;

/// An error while evaluating a condition. A well-typed policy meets these
/// only for values that the type system cannot see (a map key that is not
/// there, a string that is not a URL, an overflow); the decision is then
/// `block`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError(pub String);

type R<'a> = Result<Cow<'a, Value>, EvalError>;

fn fail<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError(msg.into()))
}

/// The variables a condition can read.
pub(crate) struct Env<'a> {
    pub input: &'a [Value],
    pub output: Option<&'a [Value]>,
    pub actor: &'a [Value],
    pub snapshot: &'a [Value],
    /// The action's `tool:` facts.
    pub tool: &'a [Value],
    pub action: &'a Value,
    pub now: Option<Timestamp>,
    /// The error an action reported instead of an output (phase after).
    pub error: Option<&'a Value>,
    /// What session functions read; `None` for a stateless decision.
    pub state: Option<&'a dyn crate::state::StateView>,
    /// The session the request names.
    pub session: Option<&'a str>,
}

/// Why a condition that reads `output` or `error` cannot be evaluated: the
/// outcome has the other one. Such a rule does not apply (see
/// [`eval_condition`]).
const NO_OUTPUT: &str = "no output was reported (the action reported an error)";
const NO_ERROR: &str = "no error was reported (the action returned an output)";

/// Receives every evaluated node with its value (for `explain`).
pub(crate) trait Tracer {
    /// False for the no-op tracer, so the hot path skips building what it
    /// would record.
    const ENABLED: bool = true;
    fn record(&mut self, node: &Node, value: &Result<Cow<'_, Value>, EvalError>);

    /// Receives what a rule's limit found for this call (its bucket, use,
    /// cost and whether it would go over).
    fn limit(&mut self, _span: crate::source::Span, _found: serde_json::Value) {}
}

/// The tracer of ordinary decisions: compiles to nothing.
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    const ENABLED: bool = false;
    #[inline(always)]
    fn record(&mut self, _: &Node, _: &Result<Cow<'_, Value>, EvalError>) {}
}

/// Mutable evaluation state: comprehension variables and the tracer.
pub(crate) struct Frame<'t, T: Tracer> {
    pub locals: Vec<Value>,
    pub tracer: &'t mut T,
}

/// Evaluates a boolean condition.
///
/// A rule about the output does not apply to an outcome that reported an
/// error, nor a rule about the error to one that returned an output: a
/// condition whose value depends on the root the outcome lacks is false,
/// not an evaluation error.
///
/// Each condition has a budget of [`MAX_STEPS`] comprehension steps.
pub(crate) fn eval_condition<T: Tracer>(
    node: &Node,
    env: &Env<'_>,
    frame: &mut Frame<'_, T>,
) -> Result<bool, EvalError> {
    STEPS.with(|s| s.set(0));
    match eval_bool(node, env, frame) {
        Err(e) if is_missing_side(&e) => Ok(false),
        other => other,
    }
}

/// Evaluates a node the checker typed as boolean. Conditions are mostly
/// comparisons joined by `&&`, `||` and `!`; computing those as plain
/// `bool`s, and reading a comparison's field and constant in place, skips
/// the general evaluator's value plumbing on the hot path.
fn eval_bool<'a, T: Tracer>(node: &'a Node, env: &Env<'a>, frame: &mut Frame<'_, T>) -> Result<bool, EvalError> {
    let result = match &node.kind {
        NodeKind::Cmp { op, lhs, rhs } => {
            // Anything unusual (an absent field, a computed operand) takes
            // the general path, which also reports errors.
            match (T::ENABLED, operand(lhs, env), operand(rhs, env)) {
                (false, Some(a), Some(b)) => return Ok(compare(*op, a, b)),
                _ => {
                    let a = eval(lhs, env, frame)?;
                    let b = eval(rhs, env, frame)?;
                    Ok(compare(*op, &a, &b))
                }
            }
        }
        NodeKind::And(a, b) => logic_bool(a, b, false, env, frame),
        NodeKind::Or(a, b) => logic_bool(a, b, true, env, frame),
        NodeKind::Not(x) => eval_bool(x, env, frame).map(|b| !b),
        NodeKind::InStrings { elem, set } => match operand(elem, env) {
            Some(e) if !T::ENABLED => return Ok(e.as_str().is_some_and(|s| set.contains(s))),
            _ => {
                let e = eval(elem, env, frame)?;
                Ok(e.as_str().is_some_and(|s| set.contains(s)))
            }
        },
        NodeKind::Const(Value::Bool(b)) => Ok(*b),
        _ => return eval(node, env, frame).and_then(|v| as_bool(&v)),
    };
    if T::ENABLED {
        frame
            .tracer
            .record(node, &result.clone().map(|b| Cow::Owned(Value::Bool(b))));
    }
    result
}

/// A constant, or a present field reached through objects, borrowed in
/// place; `None` for everything else.
#[inline]
fn operand<'a>(node: &'a Node, env: &Env<'a>) -> Option<&'a Value> {
    match &node.kind {
        NodeKind::Const(v) => Some(v),
        NodeKind::ActionName => Some(env.action),
        NodeKind::Path { root: r, path } => {
            let (last, init) = path.split_last()?;
            let mut fields = root(env, *r).ok()?;
            for idx in init {
                match fields.get(*idx as usize)? {
                    Value::Object(inner) => fields = inner,
                    _ => return None,
                }
            }
            match fields.get(*last as usize)? {
                Value::Absent => None,
                v => Some(v),
            }
        }
        _ => None,
    }
}

/// `&&` and `||` on booleans, with CEL's error absorption (see [`logic`]).
fn logic_bool<'a, T: Tracer>(
    a: &'a Node,
    b: &'a Node,
    is_or: bool,
    env: &Env<'a>,
    frame: &mut Frame<'_, T>,
) -> Result<bool, EvalError> {
    let decisive = is_or;
    let left = eval_bool(a, env, frame);
    if left == Ok(decisive) {
        return Ok(decisive);
    }
    let right = eval_bool(b, env, frame);
    match (left, right) {
        (_, Ok(r)) if r == decisive => Ok(decisive),
        (Err(l), Err(r)) => Err(worse(l, r)),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(_), Ok(_)) => Ok(!decisive),
    }
}

/// Of two errors of `&&`/`||`, the one that must decide. The missing side
/// of an outcome (`output` when the action reported an error, `error` when
/// it returned an output) makes a condition false, not failed; a genuine
/// error beside it must still fail the condition, whichever side it is on.
fn worse(left: EvalError, right: EvalError) -> EvalError {
    if is_missing_side(&left) {
        right
    } else {
        left
    }
}

fn is_missing_side(e: &EvalError) -> bool {
    e.0 == NO_OUTPUT || e.0 == NO_ERROR
}

fn eval<'a, T: Tracer>(node: &'a Node, env: &Env<'a>, frame: &mut Frame<'_, T>) -> R<'a> {
    let result = eval_inner(node, env, frame);
    if T::ENABLED {
        frame.tracer.record(node, &result);
    }
    result
}

fn root<'a>(env: &Env<'a>, root: Root) -> Result<&'a [Value], EvalError> {
    match root {
        Root::Input => Ok(env.input),
        Root::Actor => Ok(env.actor),
        Root::Snapshot => Ok(env.snapshot),
        Root::Tool => Ok(env.tool),
        Root::Output => env.output.ok_or_else(|| {
            EvalError(
                if env.error.is_some() {
                    NO_OUTPUT
                } else {
                    "no output was reported"
                }
                .into(),
            )
        }),
    }
}

fn eval_inner<'a, T: Tracer>(node: &'a Node, env: &Env<'a>, frame: &mut Frame<'_, T>) -> R<'a> {
    match &node.kind {
        NodeKind::Const(v) => Ok(Cow::Borrowed(v)),
        NodeKind::Path { root: r, path } => {
            let fields = root(env, *r)?;
            if path.is_empty() {
                return Ok(Cow::Owned(Value::Object(fields.to_vec())));
            }
            let mut cur = fields;
            let mut value = None;
            for (i, idx) in path.iter().enumerate() {
                let v = cur
                    .get(*idx as usize)
                    .ok_or_else(|| EvalError("field out of range".into()))?;
                if i + 1 < path.len() {
                    match v {
                        Value::Object(inner) => cur = inner,
                        Value::Absent => return fail("an optional field on this path is not set"),
                        _ => return fail("expected an object on this path"),
                    }
                } else {
                    value = Some(v);
                }
            }
            match value {
                Some(Value::Absent) | None => fail("the field is not set (guard it with `has(...)`)"),
                Some(v) => Ok(Cow::Borrowed(v)),
            }
        }
        NodeKind::ActionName => Ok(Cow::Borrowed(env.action)),
        NodeKind::Now => match env.now {
            Some(t) => Ok(Cow::Owned(Value::Timestamp(t.into()))),
            None => fail("the request carries no time, so `now` is unknown"),
        },
        NodeKind::ErrorText => env.error.map(Cow::Borrowed).ok_or_else(|| EvalError(NO_ERROR.into())),
        NodeKind::Local(i) => match frame.locals.get(*i as usize) {
            Some(v) => Ok(Cow::Owned(v.clone())),
            None => fail("internal: unbound variable"),
        },
        NodeKind::Select { operand, index } => {
            let v = eval(operand, env, frame)?;
            project(v, |v| match v {
                Value::Object(fields) => match fields.get(*index as usize) {
                    Some(Value::Absent) | None => fail("the field is not set (guard it with `has(...)`)"),
                    Some(f) => Ok(f),
                },
                other => fail(format!("expected an object, got {}", kind_of(other))),
            })
        }
        NodeKind::MapGet { operand, key } => {
            let v = eval(operand, env, frame)?;
            project(v, |v| match v {
                Value::Map(m) => m
                    .get(key)
                    .ok_or_else(|| EvalError(format!("no key `{key}` in the map (guard it with `has(...)` or `in`)"))),
                other => fail(format!("expected a map, got {}", kind_of(other))),
            })
        }
        NodeKind::Index { operand, index } => {
            let coll = eval(operand, env, frame)?;
            let idx = eval(index, env, frame)?;
            project(coll, |c| match (c, idx.as_ref()) {
                (Value::List(items), Value::Int(i)) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| items.get(i))
                    .ok_or_else(|| EvalError(format!("index {i} is out of range for a list of {} items", items.len()))),
                (Value::Map(m), Value::Str(k)) => m
                    .get(k.as_str())
                    .ok_or_else(|| EvalError(format!("no key `{k}` in the map"))),
                (c, i) => fail(format!("cannot index {} with {}", kind_of(c), kind_of(i))),
            })
        }
        NodeKind::Has { base, steps } => {
            // A path from a root is walked in place: evaluating the root as a
            // value would copy the whole object.
            if let NodeKind::Path { root: r, path } = &base.kind {
                let fields = root(env, *r)?;
                let mut cur: Option<&Value> = None;
                for idx in path.iter() {
                    let here = match cur {
                        None => fields,
                        Some(Value::Object(f)) => f,
                        Some(_) => return Ok(Cow::Owned(Value::Bool(false))),
                    };
                    match here.get(*idx as usize) {
                        Some(Value::Absent) | None => return Ok(Cow::Owned(Value::Bool(false))),
                        Some(v) => cur = Some(v),
                    }
                }
                let present = match cur {
                    None => walk_steps_from_fields(fields, steps),
                    Some(v) => walk_steps(v, steps),
                };
                return Ok(Cow::Owned(Value::Bool(present)));
            }
            let b = eval(base, env, frame)?;
            Ok(Cow::Owned(Value::Bool(walk_steps(b.as_ref(), steps))))
        }
        NodeKind::Not(x) => Ok(Cow::Owned(Value::Bool(!as_bool(eval(x, env, frame)?.as_ref())?))),
        NodeKind::Neg(x) => match eval(x, env, frame)?.as_ref() {
            Value::Int(i) => i
                .checked_neg()
                .map(|v| Cow::Owned(Value::Int(v)))
                .ok_or_else(|| EvalError("integer overflow".into())),
            Value::Float(f) => Ok(Cow::Owned(Value::Float(-f))),
            Value::Duration(d) => d
                .checked_neg()
                .map(|v| Cow::Owned(Value::Duration(v)))
                .ok_or_else(|| EvalError("duration overflow".into())),
            other => fail(format!("cannot negate {}", kind_of(other))),
        },
        NodeKind::And(a, b) => logic(a, b, false, env, frame),
        NodeKind::Or(a, b) => logic(a, b, true, env, frame),
        NodeKind::Cond { cond, then, otherwise } => {
            if as_bool(eval(cond, env, frame)?.as_ref())? {
                eval(then, env, frame)
            } else {
                eval(otherwise, env, frame)
            }
        }
        NodeKind::Cmp { op, lhs, rhs } => {
            let a = eval(lhs, env, frame)?;
            let b = eval(rhs, env, frame)?;
            Ok(Cow::Owned(Value::Bool(compare(*op, &a, &b))))
        }
        NodeKind::Arith { op, lhs, rhs } => {
            let a = eval(lhs, env, frame)?;
            let b = eval(rhs, env, frame)?;
            arith(*op, &a, &b).map(Cow::Owned)
        }
        NodeKind::In { elem, coll } => {
            let e = eval(elem, env, frame)?;
            let c = eval(coll, env, frame)?;
            let found = match c.as_ref() {
                // A scan: charged, so that `in` inside a loop over another
                // large list is bounded like a nested loop.
                Value::List(items) => {
                    charge(items.len())?;
                    items.iter().any(|i| i.equals(&e))
                }
                Value::Map(m) => match e.as_ref() {
                    Value::Str(k) => m.contains_key(k.as_str()),
                    _ => false,
                },
                other => return fail(format!("`in` needs a list or a map, got {}", kind_of(other))),
            };
            Ok(Cow::Owned(Value::Bool(found)))
        }
        NodeKind::InStrings { elem, set } => {
            let e = eval(elem, env, frame)?;
            Ok(Cow::Owned(Value::Bool(e.as_str().is_some_and(|s| set.contains(s)))))
        }
        NodeKind::Matches { operand, regex } => {
            let s = eval(operand, env, frame)?;
            let regex = regex.get().map_err(EvalError)?;
            Ok(Cow::Owned(Value::Bool(regex.is_match(str_of(&s)?))))
        }
        NodeKind::Glob { operand, matcher } => {
            let s = eval(operand, env, frame)?;
            let matcher = matcher.get().map_err(EvalError)?;
            let normalized = normalize_path(str_of(&s)?);
            Ok(Cow::Owned(Value::Bool(matcher.is_match(normalized.as_str()))))
        }
        NodeKind::GlobOverlap {
            operand,
            automaton,
            operand_is_glob,
            ignore_case,
        } => {
            let s = eval(operand, env, frame)?;
            let automaton = automaton.get().map_err(EvalError)?;
            let s = str_of(&s)?;
            let found = if *operand_is_glob {
                automaton.may_match(s, *ignore_case)
            } else {
                automaton.matches_path(&normalize_path(s), *ignore_case)
            };
            Ok(Cow::Owned(Value::Bool(found)))
        }
        NodeKind::Call { func, args } => {
            let mut vals: [Option<Cow<'a, Value>>; 2] = [None, None];
            for (slot, arg) in vals.iter_mut().zip(args.iter()) {
                *slot = Some(eval(arg, env, frame)?);
            }
            let [a, b] = vals;
            let a = a.ok_or_else(|| EvalError("internal: missing argument".into()))?;
            call(*func, a, b)
        }
        NodeKind::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items.iter() {
                out.push(eval(i, env, frame)?.into_owned());
            }
            Ok(Cow::Owned(Value::List(out)))
        }
        NodeKind::MapLit(entries) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in entries.iter() {
                let key = match eval(k, env, frame)?.into_owned() {
                    Value::Str(s) => s,
                    other => return fail(format!("map keys must be strings, got {}", kind_of(&other))),
                };
                out.insert(key.into(), eval(v, env, frame)?.into_owned());
            }
            Ok(Cow::Owned(Value::Map(out)))
        }
        NodeKind::Comprehension { kind, range, var, body } => comprehension(*kind, range, *var, body, env, frame),
        NodeKind::SessionId => match env.session {
            Some(s) => Ok(Cow::Owned(Value::Str(s.into()))),
            None => fail(crate::state_eval::NO_SESSION),
        },
        NodeKind::SessionLabels => crate::state_eval::labels(env).map(Cow::Owned),
        NodeKind::SessionHasLabel { label } => {
            let l = eval(label, env, frame)?;
            crate::state_eval::has_label(env, str_of(&l)?).map(|b| Cow::Owned(Value::Bool(b)))
        }
        NodeKind::SessionCount { actions, window } => {
            let n = crate::state_eval::count(env, actions, *window)?;
            charge(usize::try_from(n).unwrap_or(usize::MAX))?;
            Ok(Cow::Owned(Value::Int(n)))
        }
        NodeKind::SessionSum {
            action,
            output,
            path,
            int,
            window,
        } => crate::state_eval::sum(env, action, *output, path, *int, *window).map(Cow::Owned),
        NodeKind::SessionCalls { action, window } => {
            let calls = crate::state_eval::calls(env, action, *window, &node.ty)?;
            charge(calls.len())?;
            Ok(Cow::Owned(Value::List(calls)))
        }
        NodeKind::HashedCmp { ne, hashed, clear } => {
            let h = eval(hashed, env, frame)?;
            let c = eval(clear, env, frame)?;
            let equal = crate::state_eval::hashed_equals(env, &h, &c, &clear.ty)?;
            Ok(Cow::Owned(Value::Bool(equal != *ne)))
        }
    }
}

/// Evaluates a limit's key or cost expression (with a fresh step budget).
pub(crate) fn eval_value<'a, T: Tracer>(node: &'a Node, env: &Env<'a>, frame: &mut Frame<'_, T>) -> R<'a> {
    STEPS.with(|s| s.set(0));
    eval(node, env, frame)
}

/// The steps charged on this thread since the last condition or value
/// started (what `partial` adds up for the known parts of a condition).
pub(crate) fn steps_used() -> u64 {
    STEPS.with(|s| s.get())
}

/// True when every step from `start` reaches a present value.
fn walk_steps(start: &Value, steps: &[Step]) -> bool {
    let mut cur = start;
    for step in steps {
        let next = match (step, cur) {
            (Step::Field(i), Value::Object(fields)) => fields.get(*i as usize),
            (Step::Key(k), Value::Map(m)) => m.get(k),
            _ => None,
        };
        match next {
            Some(Value::Absent) | None => return false,
            Some(v) => cur = v,
        }
    }
    true
}

/// [`walk_steps`] from a root's fields.
fn walk_steps_from_fields(fields: &[Value], steps: &[Step]) -> bool {
    match steps.split_first() {
        None => true,
        Some((Step::Field(i), rest)) => match fields.get(*i as usize) {
            Some(Value::Absent) | None => false,
            Some(v) => walk_steps(v, rest),
        },
        Some((Step::Key(_), _)) => false,
    }
}

/// Narrows a borrowed-or-owned value to a part of it without cloning when
/// it is borrowed.
fn project<'a>(v: Cow<'a, Value>, f: impl for<'b> Fn(&'b Value) -> Result<&'b Value, EvalError>) -> R<'a> {
    match v {
        Cow::Borrowed(b) => f(b).map(Cow::Borrowed),
        Cow::Owned(o) => f(&o).map(|x| Cow::Owned(x.clone())),
    }
}

/// `&&` and `||` as CEL defines them: commutative with respect to errors,
/// so `false && <error>` and `<error> && false` are both `false`.
fn logic<'a, T: Tracer>(a: &'a Node, b: &'a Node, is_or: bool, env: &Env<'a>, frame: &mut Frame<'_, T>) -> R<'a> {
    let decisive = is_or;
    let left = eval(a, env, frame).and_then(|v| as_bool(&v));
    if left == Ok(decisive) {
        return Ok(Cow::Owned(Value::Bool(decisive)));
    }
    let right = eval(b, env, frame).and_then(|v| as_bool(&v));
    match (left, right) {
        (_, Ok(r)) if r == decisive => Ok(Cow::Owned(Value::Bool(decisive))),
        (Err(l), Err(r)) => Err(worse(l, r)),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(_), Ok(_)) => Ok(Cow::Owned(Value::Bool(!decisive))),
    }
}

/// Most comprehension steps (elements visited by `all`, `exists`,
/// `exists_one`, `map` and `filter`, nested ones included) one condition
/// may take. Lists come from requests: two nested comprehensions over
/// lists of 100,000 elements would be 10^10 steps. A condition over its
/// budget is an evaluation error, so its rule blocks.
pub(crate) const MAX_STEPS: u64 = 1_000_000;

thread_local! {
    /// Steps taken by the condition being evaluated on this thread (reset by
    /// [`eval_condition`]).
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Charges `n` steps to the condition being evaluated.
fn charge(n: usize) -> Result<(), EvalError> {
    let total = STEPS.with(|s| {
        let t = s.get().saturating_add(n as u64);
        s.set(t);
        t
    });
    if total > MAX_STEPS {
        return fail(format!(
            "evaluation stopped after {MAX_STEPS} steps (nested loops over large lists, or large values built)"
        ));
    }
    Ok(())
}

/// Bytes of built text that count as one step: a condition may build about
/// `MAX_STEPS * BYTES_PER_STEP` (64 MB) of strings in all, so that a `map`
/// concatenating a long request string onto each of many elements fails
/// (and blocks) instead of exhausting memory.
const BYTES_PER_STEP: usize = 64;

/// The size of `v` in steps: one per value inside it, plus its text.
fn weight(v: &Value) -> usize {
    match v {
        Value::Str(s) => 1 + s.len() / BYTES_PER_STEP,
        Value::List(items) => 1 + items.iter().map(weight).sum::<usize>(),
        Value::Map(m) => 1 + m.values().map(weight).sum::<usize>(),
        Value::Object(fields) => 1 + fields.iter().map(weight).sum::<usize>(),
        _ => 1,
    }
}

/// Charges the building of `bytes` of text to the condition's budget.
fn charge_bytes(bytes: usize) -> Result<(), EvalError> {
    charge(bytes / BYTES_PER_STEP)
}

fn comprehension<'a, T: Tracer>(
    kind: MacroKind,
    range: &'a Node,
    var: u32,
    body: &'a Node,
    env: &Env<'a>,
    frame: &mut Frame<'_, T>,
) -> R<'a> {
    let coll = eval(range, env, frame)?;
    let items: Vec<Value> = match coll.as_ref() {
        Value::List(items) => items.clone(),
        Value::Map(m) => m.keys().map(|k| Value::Str(k.into())).collect(),
        other => return fail(format!("cannot iterate over {}", kind_of(other))),
    };
    charge(items.len())?;
    let slot = var as usize;
    if frame.locals.len() <= slot {
        frame.locals.resize(slot + 1, Value::Null);
    }
    let mut count = 0usize;
    let mut first_error = None;
    let mut collected = Vec::new();
    for item in items {
        if let Some(s) = frame.locals.get_mut(slot) {
            *s = item.clone();
        }
        let r = eval(body, env, frame);
        match kind {
            MacroKind::Map => {
                let v = r?;
                // What `map` keeps is charged by its size: mapping every
                // element to a large value would otherwise copy it each time.
                charge(weight(&v))?;
                collected.push(v.into_owned())
            }
            _ => match r.and_then(|v| as_bool(&v)) {
                Ok(true) => match kind {
                    MacroKind::Exists => return Ok(Cow::Owned(Value::Bool(true))),
                    MacroKind::Filter => collected.push(item),
                    _ => count += 1,
                },
                Ok(false) => {
                    if kind == MacroKind::All {
                        return Ok(Cow::Owned(Value::Bool(false)));
                    }
                }
                // Like `&&`/`||`: a later decisive element wins over an error.
                Err(e) => match kind {
                    MacroKind::Exists | MacroKind::All => {
                        first_error.get_or_insert(e);
                    }
                    _ => return Err(e),
                },
            },
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Cow::Owned(match kind {
        MacroKind::Exists => Value::Bool(false),
        MacroKind::All => Value::Bool(true),
        MacroKind::ExistsOne => Value::Bool(count == 1),
        MacroKind::Filter | MacroKind::Map => Value::List(collected),
    }))
}

fn as_bool(v: &Value) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => fail(format!("expected a boolean, got {}", kind_of(other))),
    }
}

fn str_of(v: &Value) -> Result<&str, EvalError> {
    match v {
        Value::Str(s) => Ok(s),
        other => fail(format!("expected a string, got {}", kind_of(other))),
    }
}

/// A short name for a value's kind, for error messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Absent => "an unset field",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an int",
        Value::Float(_) => "a number",
        Value::Str(_) => "a string",
        Value::Timestamp(_) => "a timestamp",
        Value::Duration(_) => "a duration",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Object(_) => "an object",
        Value::Url(_) => "a url",
        Value::Ip(_) => "an ip address",
        Value::Cidr(..) => "a cidr range",
    }
}

/// `a op b` as the condition language defines it.
pub(crate) fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    match op {
        CmpOp::Eq => a.equals(b),
        CmpOp::Ne => !a.equals(b),
        // NaN and mixed kinds order as nothing: every ordering is false.
        CmpOp::Lt => a.compare(b) == Some(Ordering::Less),
        CmpOp::Le => matches!(a.compare(b), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => a.compare(b) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(a.compare(b), Some(Ordering::Greater | Ordering::Equal)),
    }
}

fn arith(op: ArithOp, a: &Value, b: &Value) -> Result<Value, EvalError> {
    use Value::*;
    let overflow = || EvalError("integer overflow".into());
    match (op, a, b) {
        (_, Int(x), Int(y)) => {
            let r = match op {
                ArithOp::Add => x.checked_add(*y),
                ArithOp::Sub => x.checked_sub(*y),
                ArithOp::Mul => x.checked_mul(*y),
                ArithOp::Div if *y == 0 => return fail("division by zero"),
                ArithOp::Rem if *y == 0 => return fail("modulus by zero"),
                ArithOp::Div => x.checked_div(*y),
                ArithOp::Rem => x.checked_rem(*y),
            };
            r.map(Int).ok_or_else(overflow)
        }
        (_, Int(_) | Float(_), Int(_) | Float(_)) => {
            let (x, y) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            // As for ints: dividing by zero is an error (so the rule
            // blocks), not an infinity or a NaN that every comparison
            // reads as false.
            match op {
                ArithOp::Div if y == 0.0 => return fail("division by zero"),
                ArithOp::Rem if y == 0.0 => return fail("modulus by zero"),
                _ => {}
            }
            let r = match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
                ArithOp::Rem => x % y,
            };
            if !r.is_finite() {
                return fail("the result is not a finite number (overflow)");
            }
            Ok(Float(r))
        }
        (ArithOp::Add, Str(x), Str(y)) => {
            charge_bytes(x.len() + y.len())?;
            Ok(Str(format!("{x}{y}").into()))
        }
        (ArithOp::Add, List(x), List(y)) => {
            charge(x.len() + y.len())?;
            Ok(List(x.iter().chain(y).cloned().collect()))
        }
        (ArithOp::Add, Timestamp(t), Duration(d)) | (ArithOp::Add, Duration(d), Timestamp(t)) => t
            .checked_add(*d)
            .map(Timestamp)
            .ok_or_else(|| EvalError("timestamp out of range".into())),
        (ArithOp::Sub, Timestamp(t), Duration(d)) => t
            .checked_sub(*d)
            .map(Timestamp)
            .ok_or_else(|| EvalError("timestamp out of range".into())),
        (ArithOp::Sub, Timestamp(x), Timestamp(y)) => Ok(Duration(x.duration_since(*y))),
        (ArithOp::Add, Duration(x), Duration(y)) => x
            .checked_add(*y)
            .map(Duration)
            .ok_or_else(|| EvalError("duration overflow".into())),
        (ArithOp::Sub, Duration(x), Duration(y)) => x
            .checked_sub(*y)
            .map(Duration)
            .ok_or_else(|| EvalError("duration overflow".into())),
        (op, a, b) => fail(format!("cannot apply {op:?} to {} and {}", kind_of(a), kind_of(b))),
    }
}

fn call<'a>(func: Builtin, a: Cow<'a, Value>, b: Option<Cow<'a, Value>>) -> R<'a> {
    let second = || {
        b.as_deref()
            .ok_or_else(|| EvalError("internal: missing argument".into()))
    };
    let owned = |v: Value| Ok(Cow::Owned(v));
    match func {
        Builtin::Size => {
            let n = match a.as_ref() {
                Value::Str(s) => s.chars().count(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.len(),
                other => return fail(format!("`size` does not apply to {}", kind_of(other))),
            };
            owned(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
        }
        Builtin::StartsWith => owned(Value::Bool(str_of(&a)?.starts_with(str_of(second()?)?))),
        Builtin::EndsWith => owned(Value::Bool(str_of(&a)?.ends_with(str_of(second()?)?))),
        Builtin::Contains => owned(Value::Bool(str_of(&a)?.contains(str_of(second()?)?))),
        Builtin::LowerAscii => owned(Value::Str(str_of(&a)?.to_ascii_lowercase().into())),
        Builtin::UpperAscii => owned(Value::Str(str_of(&a)?.to_ascii_uppercase().into())),
        Builtin::Trim => owned(Value::Str(str_of(&a)?.trim().into())),
        Builtin::NormalizePath => owned(Value::Str(normalize_path(str_of(&a)?).into())),
        Builtin::Under => {
            let path = normalize_path(str_of(&a)?);
            let dir = normalize_path(str_of(second()?)?);
            owned(Value::Bool(path_is_under(&path, &dir)))
        }
        Builtin::ToInt => match a.as_ref() {
            Value::Int(i) => owned(Value::Int(*i)),
            Value::Float(f) if f.is_finite() && *f >= -9.223372036854776e18 && *f < 9.223372036854776e18 => {
                owned(Value::Int(f.trunc() as i64))
            }
            Value::Str(s) => s
                .trim()
                .parse::<i64>()
                .map(|i| Cow::Owned(Value::Int(i)))
                .map_err(|_| EvalError(format!("`{s}` is not an integer"))),
            Value::Timestamp(t) => owned(Value::Int(t.as_second())),
            other => fail(format!("cannot convert {} to int", kind_of(other))),
        },
        Builtin::ToNumber => match a.as_ref() {
            Value::Int(_) | Value::Float(_) => owned(Value::Float(a.as_f64().unwrap_or(f64::NAN))),
            // NaN is not a number a rule can compare; nor is a number too
            // large for a double ("1e400" would silently become an
            // infinity). An infinity spelt out ("Infinity", "-inf": what
            // `rein convert` writes for Actra's `.inf`) is kept.
            Value::Str(s) => {
                let text = s.trim();
                let spelt_infinite = text.trim_start_matches(['+', '-']).eq_ignore_ascii_case("inf")
                    || text.trim_start_matches(['+', '-']).eq_ignore_ascii_case("infinity");
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() || spelt_infinite => owned(Value::Float(f)),
                    Ok(f) if f.is_infinite() => fail(format!("`{s}` is too large for a number")),
                    _ => fail(format!("`{s}` is not a number")),
                }
            }
            other => fail(format!("cannot convert {} to number", kind_of(other))),
        },
        Builtin::ToString => owned(Value::Str(match a.as_ref() {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string().into(),
            Value::Float(f) => f.to_string().into(),
            Value::Bool(b) => b.to_string().into(),
            Value::Timestamp(t) => t.to_string().into(),
            Value::Duration(d) => crate::value::format_duration(*d).into(),
            Value::Url(u) => u.to_string().into(),
            Value::Ip(ip) => ip.to_string().into(),
            Value::Cidr(ip, n) => format!("{ip}/{n}").into(),
            other => return fail(format!("cannot convert {} to string", kind_of(other))),
        })),
        Builtin::ToTimestamp => match a.as_ref() {
            Value::Timestamp(t) => owned(Value::Timestamp(*t)),
            Value::Str(s) => parse_timestamp(s).map(|t| Cow::Owned(Value::Timestamp(t))),
            other => fail(format!("cannot convert {} to timestamp", kind_of(other))),
        },
        Builtin::ToDuration => match a.as_ref() {
            Value::Duration(d) => owned(Value::Duration(*d)),
            Value::Str(s) => crate::value::parse_duration(s)
                .map(|d| Cow::Owned(Value::Duration(d)))
                .ok_or_else(|| EvalError(format!("`{s}` is not a duration (write e.g. `1h30m`)"))),
            other => fail(format!("cannot convert {} to duration", kind_of(other))),
        },
        Builtin::ParseUrl => {
            let s = str_of(&a)?;
            url::Url::parse(s)
                .map(|u| Cow::Owned(Value::Url(Box::new(u))))
                .map_err(|e| EvalError(format!("`{s}` is not a URL: {e}")))
        }
        Builtin::ParseIp => {
            let s = str_of(&a)?;
            parse_ip(s).map(|ip| Cow::Owned(Value::Ip(ip)))
        }
        Builtin::ParseCidr => {
            let s = str_of(&a)?;
            parse_cidr(s).map(|(ip, n)| Cow::Owned(Value::Cidr(ip, n)))
        }
        Builtin::CidrContains => match (a.as_ref(), second()?) {
            (Value::Cidr(net, bits), Value::Ip(ip)) => owned(Value::Bool(cidr_contains(*net, *bits, *ip))),
            (Value::Ip(ip), Value::Cidr(net, bits)) => owned(Value::Bool(cidr_contains(*net, *bits, *ip))),
            (x, y) => fail(format!("cannot test {} against {}", kind_of(x), kind_of(y))),
        },
        Builtin::UrlHost | Builtin::UrlScheme | Builtin::UrlPort | Builtin::UrlPath | Builtin::UrlQuery => {
            let Value::Url(u) = a.as_ref() else {
                return fail(format!("expected a url, got {}", kind_of(&a)));
            };
            owned(match func {
                // Hosts compare case-insensitively in DNS; the URL parser
                // already lower-cases them. A final dot names the same host
                // (`github.com.` is `github.com`): dropped, so that a list
                // of hosts cannot be stepped around with it.
                Builtin::UrlHost => {
                    let host = u.host_str().unwrap_or_default();
                    let host = host.strip_suffix('.').unwrap_or(host);
                    Value::Str(host.trim_start_matches('[').trim_end_matches(']').into())
                }
                Builtin::UrlScheme => Value::Str(u.scheme().into()),
                Builtin::UrlPort => Value::Int(u.port_or_known_default().map_or(0, i64::from)),
                Builtin::UrlPath => Value::Str(u.path().into()),
                _ => Value::Str(u.query().unwrap_or_default().into()),
            })
        }
    }
}

/// Parses an RFC 3339 timestamp.
pub(crate) fn parse_timestamp(s: &str) -> Result<Instant, EvalError> {
    Instant::parse(s).ok_or_else(|| {
        EvalError(format!(
            "`{s}` is not an RFC 3339 timestamp (e.g. `2026-01-31T12:00:00Z`)"
        ))
    })
}

pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, EvalError> {
    s.parse::<IpAddr>()
        .map_err(|_| EvalError(format!("`{s}` is not an IP address")))
}

pub(crate) fn parse_cidr(s: &str) -> Result<(IpAddr, u8), EvalError> {
    let bad = || EvalError(format!("`{s}` is not a CIDR range (e.g. `10.0.0.0/8`)"));
    let (addr, bits) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    let bits: u8 = bits.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(bad());
    }
    Ok((ip, bits))
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    // An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is the IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Lexical path normalisation: collapses `//` and `.`, resolves `..`
/// against the preceding part, so `a/../b`, `./b` and `b/` all read `b`.
/// An absolute path never climbs above `/`.
pub fn normalize_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn path_is_under(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path.starts_with('/');
    }
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_lexically() {
        assert_eq!(normalize_path("a/../b"), "b");
        assert_eq!(normalize_path("./b"), "b");
        assert_eq!(normalize_path("/etc/../etc//passwd"), "/etc/passwd");
        assert_eq!(normalize_path("/../../etc"), "/etc");
        assert_eq!(normalize_path("../x"), "../x");
        assert_eq!(normalize_path(""), ".");
        assert!(path_is_under("/etc/passwd", "/etc"));
        assert!(!path_is_under("/etc2/passwd", "/etc"));
        assert!(path_is_under("/etc", "/etc"));
    }

    #[test]
    fn cidr_matching() {
        let (n, b) = parse_cidr("10.0.0.0/8").unwrap();
        assert!(cidr_contains(n, b, "10.2.3.4".parse().unwrap()));
        assert!(!cidr_contains(n, b, "11.2.3.4".parse().unwrap()));
        assert!(cidr_contains(n, b, "::ffff:10.0.0.1".parse().unwrap()));
        let (n, b) = parse_cidr("fd00::/8").unwrap();
        assert!(cidr_contains(n, b, "fd12::1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        let (n, b) = parse_cidr("0.0.0.0/0").unwrap();
        assert!(cidr_contains(n, b, "1.2.3.4".parse().unwrap()));
    }
}
