//! "What may this actor do?": the policy evaluated partially, with the
//! actor, the snapshot, the `tool:` facts and the action's name known and
//! the input (and `now`) unknown.
//!
//! Every condition is folded: what reads only known values is evaluated
//! (with the evaluator of decisions, so errors are the same errors), what
//! reads the input is kept as CEL text. The boolean structure (`&&`, `||`,
//! `!`, `?:`) is kept as three formulas per condition: when it is *true*,
//! when it is *false*, and when it is *defined* (not an error). CEL's
//! error-absorbing `&&` and `||` need all three: `e || x` is true when `x`
//! is, an error otherwise, so it is never false; and a decision with an
//! erroring rule blocks. Each formula is a positive combination of
//! atoms and negated atoms, so printed as CEL it is true exactly when the
//! formula holds: an error anywhere in it can only make it not true.
//!
//! Per action, the rules combine by the policy's algorithm into the
//! formula "the decision is `allow`" and the formula "the decision is
//! `require_approval`"; everything else blocks. Both are printed as CEL
//! over `input` (and `now`) and compiled back by the checker against the
//! action's contract before they are shown: a residual the checker refuses
//! makes the action "not analysable", never a verdict.
//!
//! What this module cannot know is said, not guessed: an action whose
//! rules read limits or the session "depends on state" (naming the rules);
//! a known value that cannot be written as CEL (an object) makes the
//! action "not analysable". The analysis is of phase `before`, for
//! requests that carry a time (the runtime stamps every request).

use crate::ast::{Combining, Effect, Phase};
use crate::check::expr::{ExprChecker, Scope};
use crate::contract::{check_root_from, Violation};
use crate::diagnostics::Severity;
use crate::eval::{eval_condition, eval_value, steps_used, Env, EvalError, Frame, NoTrace, MAX_STEPS};
use crate::ir::{ActionIr, Builtin, CmpOp, CompiledPolicy, MacroKind, Node, NodeKind, Root, Step};
use crate::policy::Policy;
use crate::source::SourceFile;
use crate::types::{ObjectType, Type};
use crate::value::Value;
use std::rc::Rc;
use std::sync::Arc;

/// What an actor may do under a policy: one answer per action.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WhatCan {
    /// The policy's version hash.
    #[serde(rename = "policy_version")]
    pub version: String,
    /// The policy's `version` label, if it has one.
    #[serde(rename = "policy_version_label", skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// One answer per action, in the policy's order of actions.
    pub actions: Vec<ActionAnswer>,
}

impl WhatCan {
    /// Keeps the actions `pattern` names: an action's name, or a glob as a
    /// rule's `action:` takes it (`file.*`). An invalid glob is an error.
    pub fn retain_actions(&mut self, pattern: &str) -> Result<(), String> {
        let matcher = globset::Glob::new(pattern)
            .map_err(|e| format!("invalid action glob `{pattern}`: {}", e.kind()))?
            .compile_matcher();
        self.actions
            .retain(|a| a.action == pattern || matcher.is_match(a.action.as_str()));
        Ok(())
    }
}

/// What an actor may do with one action.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ActionAnswer {
    /// The action's name.
    pub action: String,
    /// The summary, for grouping.
    pub status: Status,
    /// When the decision is `allow`.
    pub allowed: Residual,
    /// When the decision is `require_approval`.
    pub approval: Residual,
    /// The rules whose outcome depends on state (limits, session facts):
    /// with any, `allowed` and `approval` are not given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_rules: Vec<String>,
    /// Why the action could not be analysed, or why the asker's
    /// credential refuses it (`POST /v1/what-can`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One action's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Allowed for every input.
    AlwaysAllowed,
    /// Allowed for some inputs (see `allowed`); may also need approval for
    /// others.
    AllowedWhen,
    /// Never allowed outright, but approval is asked for some inputs.
    NeedsApproval,
    /// Blocked for every input.
    NeverAllowed,
    /// Some rule reads limits or the session: not known statically.
    DependsOnState,
    /// A residual could not be written as CEL the checker accepts.
    NotAnalysable,
}

impl Status {
    /// The word used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::AlwaysAllowed => "always_allowed",
            Status::AllowedWhen => "allowed_when",
            Status::NeedsApproval => "needs_approval",
            Status::NeverAllowed => "never_allowed",
            Status::DependsOnState => "depends_on_state",
            Status::NotAnalysable => "not_analysable",
        }
    }
}

/// When one effect is the decision, over the unknown input.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "cel")]
pub enum Residual {
    /// For every input that meets the contract.
    Always,
    /// For no input.
    Never,
    /// Exactly for the inputs this CEL condition holds for (an error
    /// counts as not holding).
    When(String),
    /// Not known (the action depends on state or could not be analysed).
    Unknown,
}

impl Residual {
    /// The condition, for `When`.
    pub fn cel(&self) -> Option<&str> {
        match self {
            Residual::When(c) => Some(c),
            _ => None,
        }
    }
}

/// A residual compiled back by the checker against an action's contract,
/// to evaluate it on inputs.
pub struct CompiledResidual {
    policy: Arc<CompiledPolicy>,
    action: u32,
    node: Node,
}

impl std::fmt::Debug for CompiledResidual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledResidual")
            .field("action", &self.action)
            .finish()
    }
}

impl CompiledResidual {
    /// Whether the residual holds for an input at a time: the input is
    /// checked against the action's contract first (a violation is an
    /// error), and an evaluation error is an error. A caller reads an
    /// error as "does not hold".
    pub fn holds(&self, input: &serde_json::Value, now: jiff::Timestamp) -> Result<bool, String> {
        let action = self
            .policy
            .actions
            .get(self.action as usize)
            .ok_or("internal: unknown action")?;
        let input = check_root_from(Some(input), &action.input, "input").map_err(|v| v.to_string())?;
        let env = Env {
            input: &input,
            output: None,
            actor: &[],
            snapshot: &[],
            tool: action.tool_values(),
            action: &action.name,
            now: Some(now),
            error: None,
            state: None,
            session: None,
        };
        let mut frame = Frame {
            locals: Vec::new(),
            tracer: &mut NoTrace,
        };
        eval_condition(&self.node, &env, &mut frame).map_err(|e| e.0)
    }
}

impl Policy {
    /// What `actor` (with `snapshot`) may do, per action (phase `before`):
    /// the policy evaluated with the input unknown. The actor and the
    /// snapshot are checked against their contracts first; a violation is
    /// the error (it names the field).
    pub fn what_can(&self, actor: &serde_json::Value, snapshot: &serde_json::Value) -> Result<WhatCan, Violation> {
        let p = self.compiled();
        let actor = check_root_from(Some(actor), &p.actor, "actor")?;
        let snapshot = check_root_from(Some(snapshot), &p.snapshot, "snapshot")?;
        let actions = p.actions.iter().map(|ir| answer(p, ir, &actor, &snapshot)).collect();
        Ok(WhatCan {
            version: p.version_hash.clone(),
            version_label: p.version_label.clone(),
            actions,
        })
    }

    /// Compiles a CEL condition against an action's contract (as a rule's
    /// `when` of phase `before` is checked, without session functions), to
    /// evaluate it on inputs: what a residual of [`Policy::what_can`]
    /// means. The error lists the checker's messages.
    pub fn compile_residual(&self, action: &str, cel: &str) -> Result<CompiledResidual, String> {
        let p = self.compiled();
        let id = *p
            .action_index
            .get(action)
            .ok_or_else(|| format!("the policy has no action `{action}`"))?;
        let ir = p.actions.get(id as usize).ok_or("internal: unknown action")?;
        let node = check_cel(p, ir, cel)?;
        Ok(CompiledResidual {
            policy: self.compiled_arc(),
            action: id,
            node,
        })
    }
}

/// Parses and type-checks `cel` as a condition of `action`.
fn check_cel(p: &CompiledPolicy, action: &ActionIr, cel: &str) -> Result<Node, String> {
    let expr = crate::syntax::cel::parse(cel).map_err(|e| e.to_string())?;
    let file = SourceFile::new("residual", cel);
    let mut diags = Vec::new();
    let scope = Scope {
        action: action.name(),
        phase: Phase::Before,
        input: &action.input,
        output: None,
        actor: &p.actor,
        snapshot: &p.snapshot,
        tool: action.tool.as_ref().map(|t| &t.ty),
        tool_refused: false,
        actions: &[],
        max_window: p.max_window,
    };
    let mut checker = ExprChecker::new(&file, &mut diags, scope);
    let node = checker.condition(&expr);
    let session = checker.session.reads;
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.message.clone())
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if session {
        return Err("a residual cannot read the session".into());
    }
    Ok(node)
}

fn answer(p: &CompiledPolicy, ir: &ActionIr, actor: &[Value], snapshot: &[Value]) -> ActionAnswer {
    let name = ir.name().to_string();
    let rule_id = |r: u32| p.rules.get(r as usize).map_or("?".to_string(), |i| i.id.clone());
    if ir.state_before.reads || ir.state_before.session_rule.is_some() {
        let mut rules: Vec<String> = ir
            .before
            .iter()
            .filter(|r| r.limit.is_some() || r.cond.as_ref().is_some_and(reads_state))
            .map(|r| rule_id(r.rule))
            .collect();
        if let Some(r) = ir.state_before.session_rule {
            let id = rule_id(r);
            if !rules.contains(&id) {
                rules.push(id);
            }
        }
        return ActionAnswer {
            action: name,
            status: Status::DependsOnState,
            allowed: Residual::Unknown,
            approval: Residual::Unknown,
            state_rules: rules,
            error: None,
        };
    }
    SIMPLIFY_WORK.with(|w| w.set(0));
    let folded = fold_rules(p, ir, actor, snapshot);
    let not_analysable = |why: String| ActionAnswer {
        action: name.clone(),
        status: Status::NotAnalysable,
        allowed: Residual::Unknown,
        approval: Residual::Unknown,
        state_rules: Vec::new(),
        error: Some(why),
    };
    let folded = match folded {
        Ok(f) => f,
        Err(why) => return not_analysable(why),
    };
    let (allowed, approval) = match p.combining {
        Combining::DenyOverrides => deny_overrides(&folded, p.default),
        Combining::FirstMatch => first_match(&folded, p.default),
    };
    if simplify_budget_spent() {
        return not_analysable(format!(
            "simplifying the residual took more than {MAX_SIMPLIFY_WORK} steps (too many rules on one action)"
        ));
    }
    if allowed.size() + approval.size() > MAX_RESIDUAL_NODES {
        return not_analysable(format!("the residual would have more than {MAX_RESIDUAL_NODES} terms"));
    }
    let mut residuals = Vec::new();
    for f in [&allowed, &approval] {
        let r = match f {
            F::True => Residual::Always,
            F::False => Residual::Never,
            other => {
                let text = other.print();
                // The promise is that the checker accepts it back: checked
                // here, so that a residual it refuses is never shown.
                if let Err(e) = check_cel(p, ir, &text) {
                    return not_analysable(format!("the residual `{text}` does not check: {e}"));
                }
                Residual::When(text)
            }
        };
        residuals.push(r);
    }
    let approval = residuals.pop().unwrap_or(Residual::Unknown);
    let allowed = residuals.pop().unwrap_or(Residual::Unknown);
    let status = match (&allowed, &approval) {
        (Residual::Always, _) => Status::AlwaysAllowed,
        (Residual::When(_), _) => Status::AllowedWhen,
        (_, Residual::When(_) | Residual::Always) => Status::NeedsApproval,
        _ => Status::NeverAllowed,
    };
    ActionAnswer {
        action: name,
        status,
        allowed,
        approval,
        state_rules: Vec::new(),
        error: None,
    }
}

/// Each `before` rule of the action folded, with its effect.
fn fold_rules(p: &CompiledPolicy, ir: &ActionIr, actor: &[Value], snapshot: &[Value]) -> Fold<Vec<(Effect, Tri)>> {
    let env = Env {
        input: &[],
        output: None,
        actor,
        snapshot,
        tool: ir.tool_values(),
        action: &ir.name,
        now: None,
        error: None,
        state: None,
        session: None,
    };
    let mut folder = Folder {
        env: &env,
        input: &ir.input,
        guards: Vec::new(),
        known_steps: 0,
        charges: false,
        keep_loops: false,
    };
    ir.before
        .iter()
        .map(|r| {
            let info = p.rules.get(r.rule as usize);
            let effect = info.map_or(Effect::Block, |i| i.effect);
            let tri = match &r.cond {
                None => Tri::constant(true),
                Some(c) => {
                    let mut tri = folder.fold_rule(c, false)?;
                    let id = info.map_or("?", |i| i.id.as_str());
                    // A decision gives a condition one budget of evaluation
                    // steps. Each known part was evaluated here on a budget
                    // of its own: together they may be over it.
                    if folder.known_steps >= MAX_STEPS {
                        return Err(format!(
                            "together, the known parts of rule `{id}` reach the budget of evaluation steps of a condition"
                        ));
                    }
                    if folder.known_steps > 0 && folder.charges {
                        // The known loops spent steps the residual would
                        // not: written out instead (when they can be), so
                        // that the residual spends them as the decision
                        // does. See docs/what-can.md for the budget.
                        if let Ok(kept) = folder.fold_rule(c, true) {
                            tri = kept;
                        }
                    }
                    tri
                }
            };
            Ok((effect, tri))
        })
        .collect()
}

/// Deny-overrides: any error blocks; `block` beats `require_approval`
/// beats `allow`; with no match, the default.
fn deny_overrides(rules: &[(Effect, Tri)], default: Effect) -> (F, F) {
    let of = |e: Effect| rules.iter().filter(move |(x, _)| *x == e).map(|(_, t)| t);
    let no_block = F::and(of(Effect::Block).map(|t| t.f.clone()).collect());
    let no_approval = F::and(of(Effect::RequireApproval).map(|t| t.f.clone()).collect());
    let allow_defined = F::and(of(Effect::Allow).map(|t| t.d.clone()).collect());
    let approval_defined = F::and(of(Effect::RequireApproval).map(|t| t.d.clone()).collect());
    let some_allow = F::or(of(Effect::Allow).map(|t| t.t.clone()).collect());
    let no_allow = F::and(of(Effect::Allow).map(|t| t.f.clone()).collect());
    let some_approval = F::or(of(Effect::RequireApproval).map(|t| t.t.clone()).collect());
    let allowed = F::and(vec![
        no_block.clone(),
        no_approval,
        if default == Effect::Allow { F::True } else { some_allow },
        allow_defined.clone(),
    ]);
    let approval = F::and(vec![
        no_block,
        F::or(vec![
            some_approval,
            if default == Effect::RequireApproval {
                no_allow
            } else {
                F::False
            },
        ]),
        approval_defined,
        allow_defined,
    ]);
    (allowed, approval)
}

/// Actra's first match: rules in order, the first that holds decides; an
/// error blocks; with no match, the default. As `r1 ? e1 : r2 ? e2 : …`.
fn first_match(rules: &[(Effect, Tri)], default: Effect) -> (F, F) {
    let chain = |want: Effect| {
        let mut acc = F::constant(default == want);
        for (effect, t) in rules.iter().rev() {
            acc = F::or(vec![
                F::and(vec![t.t.clone(), F::constant(*effect == want)]),
                F::and(vec![t.f.clone(), acc]),
            ]);
        }
        acc
    };
    (chain(Effect::Allow), chain(Effect::RequireApproval))
}

/// True when the expression reads the session.
fn reads_state(node: &Node) -> bool {
    matches!(
        node.kind,
        NodeKind::SessionId
            | NodeKind::SessionLabels
            | NodeKind::SessionHasLabel { .. }
            | NodeKind::SessionCount { .. }
            | NodeKind::SessionSum { .. }
            | NodeKind::SessionCalls { .. }
            | NodeKind::HashedCmp { .. }
    ) || node.children().into_iter().any(reads_state)
}

/// A condition folded: the formulas for "true", "false" and "defined".
#[derive(Clone, Debug)]
struct Tri {
    t: F,
    f: F,
    d: F,
    /// How many terms `t`, `f` and `d` would have unsimplified (saturating):
    /// what the nesting costs whatever the simplifications save.
    raw: [u64; 3],
}

impl Tri {
    fn constant(b: bool) -> Tri {
        Tri {
            t: F::constant(b),
            f: F::constant(!b),
            d: F::True,
            raw: [1; 3],
        }
    }

    /// A condition that certainly errors: never true, never false.
    fn error() -> Tri {
        Tri {
            t: F::False,
            f: F::False,
            d: F::False,
            raw: [1; 3],
        }
    }

    fn atom(text: String, negated: Option<String>, may_error: bool) -> Tri {
        Tri::atom_with_bound(text, negated, may_error, None)
    }

    fn atom_with_bound(text: String, negated: Option<String>, may_error: bool, bound: Option<Bound>) -> Tri {
        let atom = Rc::new(Atom {
            text,
            negated,
            may_error,
            bound,
        });
        let pos = F::Lit(atom.clone(), true);
        let neg = F::Lit(atom, false);
        let (d, raw_d) = if may_error {
            (F::or(vec![pos.clone(), neg.clone()]), 3)
        } else {
            (F::True, 1)
        };
        Tri {
            t: pos,
            f: neg,
            d,
            raw: [1, 1, raw_d],
        }
    }
}

/// An expression over the unknown input, as CEL text.
#[derive(Debug)]
struct Atom {
    text: String,
    /// Its negation written without `!`, where that means the same
    /// (`a > b` for `a <= b`).
    negated: Option<String>,
    /// It may evaluate to an error (a conservative judgement).
    may_error: bool,
    /// For `x <= c` and `x < c` with `c` a number: the bound it sets on
    /// `x` when true (its negation sets the complementary one).
    bound: Option<Bound>,
}

/// A bound on an expression over the input by a number.
#[derive(Clone, Debug, PartialEq)]
struct Bound {
    /// The bounded expression, as written.
    subject: String,
    /// `x <= c` / `x < c` (else `x >= c` / `x > c`).
    upper: bool,
    /// `<=` / `>=`.
    inclusive: bool,
    value: f64,
}

impl Bound {
    /// The bound of the negation: `!(x <= c)` is `x > c` (the values
    /// compared are never NaN, see the comparison atoms).
    fn complement(&self) -> Bound {
        Bound {
            subject: self.subject.clone(),
            upper: !self.upper,
            inclusive: !self.inclusive,
            value: self.value,
        }
    }

    /// Every value within `self` is within `other`.
    fn implies(&self, other: &Bound) -> bool {
        if self.subject != other.subject || self.upper != other.upper {
            return false;
        }
        let tighter = if self.upper {
            self.value < other.value
        } else {
            self.value > other.value
        };
        tighter || (self.value == other.value && (other.inclusive || !self.inclusive))
    }

    /// No value is within both.
    fn excludes(&self, other: &Bound) -> bool {
        if self.subject != other.subject || self.upper == other.upper {
            return false;
        }
        let (upper, lower) = if self.upper { (self, other) } else { (other, self) };
        upper.value < lower.value || (upper.value == lower.value && !(upper.inclusive && lower.inclusive))
    }
}

/// A positive boolean combination of atoms and negated atoms.
#[derive(Clone, Debug)]
enum F {
    True,
    False,
    /// An atom (`true`: as is; `false`: negated).
    Lit(Rc<Atom>, bool),
    And(Vec<F>),
    Or(Vec<F>),
}

impl F {
    fn constant(b: bool) -> F {
        if b {
            F::True
        } else {
            F::False
        }
    }

    /// How many nodes it has (to tell that a simplification did something).
    fn size(&self) -> usize {
        match self {
            F::And(items) | F::Or(items) => 1 + items.iter().map(F::size).sum::<usize>(),
            _ => 1,
        }
    }

    /// The bound the literal sets when true, if it is a numeric bound.
    fn bound(&self) -> Option<Bound> {
        match self {
            F::Lit(a, pos) => a.bound.as_ref().map(|b| if *pos { b.clone() } else { b.complement() }),
            _ => None,
        }
    }

    fn lit_key(&self) -> Option<(&str, bool, bool)> {
        match self {
            F::Lit(a, pos) => Some((a.text.as_str(), *pos, a.may_error)),
            _ => None,
        }
    }

    /// `&&` of the items, simplified: constants, nesting, repeats, a
    /// two-valued atom beside its negation, and `a && (!a || b)`.
    fn and(items: Vec<F>) -> F {
        F::combine(items, true)
    }

    /// `||` of the items, simplified as [`F::and`].
    fn or(items: Vec<F>) -> F {
        F::combine(items, false)
    }

    fn combine(items: Vec<F>, is_and: bool) -> F {
        // For `&&`: `True` is neutral and `False` absorbs; dually for `||`.
        let (neutral, absorbing) = if is_and {
            (F::True, F::False)
        } else {
            (F::False, F::True)
        };
        let mut out: Vec<F> = Vec::new();
        let mut flat = Vec::new();
        for item in items {
            match (item, is_and) {
                (F::And(inner), true) | (F::Or(inner), false) => flat.extend(inner),
                (other, _) => flat.push(other),
            }
        }
        // Presence tests first (`has(x) && …`, `!has(x) || …`): they
        // never err and guard what follows, so the simplifications below
        // can use them wherever they were written.
        let is_guard = |f: &F| matches!(f, F::Lit(a, pos) if *pos == is_and && a.text.starts_with("has("));
        let (guards, rest): (Vec<F>, Vec<F>) = flat.into_iter().partition(is_guard);
        // The passes below compare items pairwise: charged as such, and
        // skipped once the budget is spent (the answer is then refused).
        let n = guards.len() + rest.len();
        if !spend(n.saturating_mul(n)) {
            let items: Vec<F> = guards.into_iter().chain(rest).collect();
            return if is_and { F::And(items) } else { F::Or(items) };
        }
        for item in guards.into_iter().chain(rest) {
            match item {
                F::True | F::False if matches!((&item, &neutral), (F::True, F::True) | (F::False, F::False)) => {}
                F::True | F::False => return absorbing,
                lit @ F::Lit(..) => {
                    let (text, pos, may_error) = lit.lit_key().unwrap_or(("", true, true));
                    if out.iter().any(|o| o.lit_key() == Some((text, pos, may_error))) {
                        continue;
                    }
                    // A two-valued atom and its negation: `a && !a` is
                    // false, `a || !a` true.
                    if !may_error && out.iter().any(|o| o.lit_key() == Some((text, !pos, false))) {
                        return absorbing;
                    }
                    out.push(lit);
                }
                other => out.push(other),
            }
        }
        // Bounds on one expression: in `&&`, a bound implied by another
        // goes, and two that exclude each other are false; in `||`, a bound
        // that implies another goes.
        let bounds: Vec<Option<Bound>> = out.iter().map(F::bound).collect();
        let mut dropped = vec![false; out.len()];
        for i in 0..out.len() {
            for j in 0..out.len() {
                let (Some(x), Some(y)) = (&bounds[i], &bounds[j]) else {
                    continue;
                };
                if i == j || dropped[i] || dropped[j] {
                    continue;
                }
                if is_and && x.excludes(y) {
                    return absorbing;
                }
                // `x` implies `y`: `&&` keeps `x`, `||` keeps `y`.
                if x.implies(y) {
                    dropped[if is_and { j } else { i }] = true;
                }
            }
        }
        let out: Vec<F> = out
            .into_iter()
            .zip(dropped)
            .filter(|(_, d)| !d)
            .map(|(f, _)| f)
            .collect();
        // `a && (!a || b)` is `a && b`, and `a || (!a && b)` is `a || b`,
        // for a two-valued atom `a` written before.
        let mut result: Vec<F> = Vec::with_capacity(out.len());
        // A nested item that became an atom is deduplicated by one more
        // pass (each pass that changes something makes the formula smaller).
        let mut again = false;
        for item in out {
            let item = match item {
                composite @ (F::And(_) | F::Or(_)) => {
                    let before = composite.size();
                    if !spend(before.saturating_mul(result.len().max(1))) {
                        result.push(composite);
                        continue;
                    }
                    let simplified = assume(composite, &result, is_and);
                    again |= simplified.size() != before;
                    simplified
                }
                other => other,
            };
            match item {
                F::True | F::False if matches!((&item, &neutral), (F::True, F::True) | (F::False, F::False)) => {}
                F::True | F::False => return absorbing,
                other => result.push(other),
            }
        }
        if again {
            return F::combine(result, is_and);
        }
        // `a && (a || b)` is `a`, and `a || (a && b)` is `a`, wherever
        // `a` stands (a nested item never guards its siblings, so dropping
        // one keeps every `has` guard in place).
        let top: Vec<(String, bool, bool)> = result
            .iter()
            .filter_map(|i| i.lit_key().map(|(t, p, e)| (t.to_string(), p, e)))
            .collect();
        result.retain(|item| match item {
            F::Or(inner) if is_and => !inner.iter().any(|i| {
                i.lit_key()
                    .is_some_and(|(t, p, e)| top.iter().any(|(tt, tp, te)| tt == t && *tp == p && *te == e))
            }),
            F::And(inner) if !is_and => !inner.iter().any(|i| {
                i.lit_key()
                    .is_some_and(|(t, p, e)| top.iter().any(|(tt, tp, te)| tt == t && *tp == p && *te == e))
            }),
            _ => true,
        });
        match result.len() {
            0 => neutral,
            1 => result.pop().unwrap_or(neutral),
            _ if is_and => F::And(result),
            _ => F::Or(result),
        }
    }

    /// The formula as CEL.
    fn print(&self) -> String {
        match self {
            F::True => "true".into(),
            F::False => "false".into(),
            F::Lit(a, true) => a.text.clone(),
            F::Lit(a, false) => {
                if let Some(n) = &a.negated {
                    n.clone()
                } else if is_simple(&a.text) {
                    format!("!{}", a.text)
                } else {
                    format!("!({})", a.text)
                }
            }
            F::And(items) => items
                .iter()
                .map(|i| match i {
                    F::Or(_) => format!("({})", i.print()),
                    _ => i.print(),
                })
                .collect::<Vec<_>>()
                .join(" && "),
            F::Or(items) => items
                .iter()
                .map(|i| match i {
                    F::And(_) => format!("({})", i.print()),
                    _ => i.print(),
                })
                .collect::<Vec<_>>()
                .join(" || "),
        }
    }
}

/// `item` where the atoms written before it in an `&&` (`is_and`) or
/// an `||` are known: beside `a && …`, `a` is true and its negation
/// false; beside `a || …`, `a` is not true, so false when two-valued (and
/// its negation then true). Atoms keep the guards they had: the ones
/// replaced stand before.
fn assume(item: F, before: &[F], is_and: bool) -> F {
    let mut item = item;
    for known in before {
        let Some((text, pos, may_error)) = known.lit_key() else {
            continue;
        };
        item = substitute(item, text, pos, is_and, may_error);
    }
    item
}

/// Replaces the atom `text` in `f`: the literal of polarity `pos` by
/// `value`, its negation by `!value` where that follows (always when it
/// is true; when it is false only for a two-valued atom).
fn substitute(f: F, text: &str, pos: bool, value: bool, may_error: bool) -> F {
    substitute_changed(f, text, pos, value, may_error).0
}

/// [`substitute`], and whether anything was replaced. A node in which
/// nothing was replaced is returned as it was, not rebuilt: it is already
/// simplified, and re-simplifying every unchanged node re-ran the
/// substitutions of its children, which grew exponentially with nesting.
fn substitute_changed(f: F, text: &str, pos: bool, value: bool, may_error: bool) -> (F, bool) {
    // Each node visited is charged, and left as it is once the budget is
    // spent.
    if !spend(1) {
        return (f, false);
    }
    match f {
        F::Lit(a, p) if a.text == text => {
            if p == pos {
                (F::constant(value), true)
            } else if value || !may_error {
                (F::constant(!value), true)
            } else {
                (F::Lit(a, p), false)
            }
        }
        F::And(items) => substitute_items(items, true, text, pos, value, may_error),
        F::Or(items) => substitute_items(items, false, text, pos, value, may_error),
        other => (other, false),
    }
}

/// [`substitute_changed`] in the items of an `&&` (`is_and`) or an `||`:
/// rebuilt (and simplified) only when an item changed.
fn substitute_items(items: Vec<F>, is_and: bool, text: &str, pos: bool, value: bool, may_error: bool) -> (F, bool) {
    let mut changed = false;
    let items: Vec<F> = items
        .into_iter()
        .map(|i| {
            let (i, c) = substitute_changed(i, text, pos, value, may_error);
            changed |= c;
            i
        })
        .collect();
    match (changed, is_and) {
        (false, true) => (F::And(items), false),
        (false, false) => (F::Or(items), false),
        (true, true) => (F::and(items), true),
        (true, false) => (F::or(items), true),
    }
}

/// True when the text needs no parentheses after `!`: a path, a call, a
/// literal (no operator outside brackets and quotes).
fn is_simple(text: &str) -> bool {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ' ' | '!' | '-' | '?' if depth == 0 => return false,
            _ => {}
        }
    }
    true
}

/// A folded value: known (a value or an error) or CEL text over the input.
enum Pv {
    Known(Result<Value, EvalError>),
    Text {
        text: String,
        /// Needs no parentheses as an operand.
        atom: bool,
        may_error: bool,
    },
}

struct Folder<'e, 'a> {
    env: &'e Env<'a>,
    input: &'a Arc<ObjectType>,
    /// Input paths a `has(...)` before this point proves present.
    guards: Vec<Vec<u32>>,
    /// Evaluation steps the known parts of the condition took.
    known_steps: u64,
    /// The residual itself spends evaluation steps (a loop, `in` over a
    /// list, text or lists joined).
    charges: bool,
    /// Known parts that spend evaluation steps are written out, not
    /// evaluated.
    keep_loops: bool,
}

type Fold<T> = Result<T, String>;

/// Refuses formulas over [`MAX_RESIDUAL_NODES`] before they are combined
/// (combining simplifies, at a cost that grows faster than their size).
fn within_budget(parts: &[&Tri]) -> Fold<()> {
    let size: usize = parts.iter().map(|t| t.t.size() + t.f.size() + t.d.size()).sum();
    if size > MAX_RESIDUAL_NODES {
        return Err(format!(
            "the residual would have more than {MAX_RESIDUAL_NODES} terms (nested conditions)"
        ));
    }
    Ok(())
}

/// Sums of term counts, for [`Tri::raw`]; refused past
/// [`MAX_RAW_TERMS`] in all, before the formulas are combined.
fn raw_terms(parts: [&[u64]; 3]) -> Fold<[u64; 3]> {
    let sum = |p: &[u64]| p.iter().fold(0u64, |a, b| a.saturating_add(*b));
    let raw = [sum(parts[0]), sum(parts[1]), sum(parts[2])];
    if sum(&raw) > MAX_RAW_TERMS {
        return Err(format!(
            "the residual would have more than {MAX_RAW_TERMS} terms before simplification (nested conditions)"
        ));
    }
    Ok(raw)
}

/// Most terms a condition's three formulas may have before simplification.
/// Folding copies a ternary's condition into each branch's formulas, so
/// nesting multiplies the terms at each level; simplifying may shrink the
/// result, but the work it takes grows with what it simplifies (16 levels
/// of `(x != i && …) ? … : …` took seconds). Far over any policy written
/// by hand.
const MAX_RAW_TERMS: u64 = 1_000_000;

/// Most work (items compared, terms rewritten) simplifying one action's
/// formulas may take: the simplifications compare items pairwise and
/// rewrite them against the ones before, so a few thousand rules on one
/// action took minutes. Past it the action is not analysable.
const MAX_SIMPLIFY_WORK: u64 = 30_000_000;

thread_local! {
    /// The simplification work spent on the action being answered.
    static SIMPLIFY_WORK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Spends `n` units of simplification work; false once the budget is gone
/// (the simplifications then stop, and the action is not analysable).
fn spend(n: usize) -> bool {
    SIMPLIFY_WORK.with(|w| {
        let total = w.get().saturating_add(n as u64);
        w.set(total);
        total <= MAX_SIMPLIFY_WORK
    })
}

fn simplify_budget_spent() -> bool {
    SIMPLIFY_WORK.with(|w| w.get() > MAX_SIMPLIFY_WORK)
}

/// Most terms a condition's folded formulas (or an action's combined
/// residual) may have: past it the action is not analysable rather than
/// costing the caller (an agent on `POST /v1/what-can`) time and memory
/// exponential in the policy's nesting.
pub(crate) const MAX_RESIDUAL_NODES: usize = 10_000;

impl Folder<'_, '_> {
    /// Folds one rule's condition from a fresh start.
    fn fold_rule(&mut self, cond: &Node, keep_loops: bool) -> Fold<Tri> {
        self.guards.clear();
        self.known_steps = 0;
        self.charges = false;
        self.keep_loops = keep_loops;
        self.bool(cond)
    }

    /// Folds a boolean node into its three formulas, refused past
    /// [`MAX_RESIDUAL_NODES`]: a ternary's condition is copied into each
    /// branch's formulas, so nesting ternaries in conditions doubles the
    /// size at each level (21 levels took a minute and 3 GB).
    fn bool(&mut self, node: &Node) -> Fold<Tri> {
        let tri = self.fold_bool(node)?;
        within_budget(&[&tri])?;
        Ok(tri)
    }

    fn fold_bool(&mut self, node: &Node) -> Fold<Tri> {
        match &node.kind {
            NodeKind::And(a, b) => {
                let ta = self.bool(a)?;
                let mark = self.guards.len();
                self.facts(a, true);
                let tb = self.bool(b);
                self.guards.truncate(mark);
                let tb = tb?;
                within_budget(&[&ta, &tb])?;
                let [at, af, _] = ta.raw;
                let [bt, bf, bd] = tb.raw;
                Ok(Tri {
                    raw: raw_terms([&[1, at, bt], &[1, af, bf], &[2, af, at, bd, bf]])?,
                    t: F::and(vec![ta.t.clone(), tb.t.clone()]),
                    f: F::or(vec![ta.f.clone(), tb.f.clone()]),
                    d: F::or(vec![ta.f, F::and(vec![ta.t, tb.d]), tb.f]),
                })
            }
            NodeKind::Or(a, b) => {
                let ta = self.bool(a)?;
                let mark = self.guards.len();
                self.facts(a, false);
                let tb = self.bool(b);
                self.guards.truncate(mark);
                let tb = tb?;
                within_budget(&[&ta, &tb])?;
                let [at, af, _] = ta.raw;
                let [bt, bf, bd] = tb.raw;
                Ok(Tri {
                    raw: raw_terms([&[1, at, bt], &[1, af, bf], &[2, at, af, bd, bt]])?,
                    t: F::or(vec![ta.t.clone(), tb.t.clone()]),
                    f: F::and(vec![ta.f.clone(), tb.f.clone()]),
                    d: F::or(vec![ta.t, F::and(vec![ta.f, tb.d]), tb.t]),
                })
            }
            NodeKind::Not(x) => {
                let t = self.bool(x)?;
                let [rt, rf, rd] = t.raw;
                Ok(Tri {
                    t: t.f,
                    f: t.t,
                    d: t.d,
                    raw: [rf, rt, rd],
                })
            }
            NodeKind::Cmp { op, lhs, rhs } => {
                let Pv::Text { may_error, .. } = self.value(node)? else {
                    return self.known_bool(node);
                };
                let (a, b) = (self.operand(lhs)?, self.operand(rhs)?);
                // One atom for a comparison and its negation, so that
                // `x > 1` and `x <= 1` are recognised as opposites. Only
                // where the negation means the same: `==`/`!=` always,
                // orderings between values of one ordered kind (values
                // are never NaN: requests refuse it, arithmetic errs).
                let ordered = |t: &Type| {
                    matches!(
                        t,
                        Type::Int | Type::Number | Type::String | Type::Timestamp | Type::Duration
                    )
                };
                let same_kind = (lhs.ty.is_numeric() && rhs.ty.is_numeric())
                    || std::mem::discriminant(&lhs.ty) == std::mem::discriminant(&rhs.ty);
                let flippable =
                    matches!(op, CmpOp::Eq | CmpOp::Ne) || (ordered(&lhs.ty) && ordered(&rhs.ty) && same_kind);
                let sym = |op: CmpOp| match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                let write = |op: CmpOp| format!("{a} {} {b}", sym(op));
                if !flippable {
                    return Ok(Tri::atom(write(*op), None, may_error));
                }
                let (canon, negation, positive) = match op {
                    CmpOp::Eq => (CmpOp::Eq, CmpOp::Ne, true),
                    CmpOp::Ne => (CmpOp::Eq, CmpOp::Ne, false),
                    CmpOp::Le => (CmpOp::Le, CmpOp::Gt, true),
                    CmpOp::Gt => (CmpOp::Le, CmpOp::Gt, false),
                    CmpOp::Lt => (CmpOp::Lt, CmpOp::Ge, true),
                    CmpOp::Ge => (CmpOp::Lt, CmpOp::Ge, false),
                };
                // `x <= c`, `c <= x`… with `c` a number: a bound on `x`.
                let number = |n: &Node, folder: &mut Self| match folder.value(n) {
                    Ok(Pv::Known(Ok(Value::Int(i)))) if i.unsigned_abs() < (1 << 53) => Some(i as f64),
                    Ok(Pv::Known(Ok(Value::Float(f)))) if f.is_finite() => Some(f),
                    _ => None,
                };
                let bound = match (canon, number(rhs, self), number(lhs, self)) {
                    (CmpOp::Le | CmpOp::Lt, Some(c), None) => Some(Bound {
                        subject: a.clone(),
                        upper: true,
                        inclusive: canon == CmpOp::Le,
                        value: c,
                    }),
                    (CmpOp::Le | CmpOp::Lt, None, Some(c)) => Some(Bound {
                        subject: b.clone(),
                        upper: false,
                        inclusive: canon == CmpOp::Le,
                        value: c,
                    }),
                    _ => None,
                };
                let tri = Tri::atom_with_bound(write(canon), Some(write(negation)), may_error, bound);
                Ok(if positive {
                    tri
                } else {
                    let [rt, rf, rd] = tri.raw;
                    Tri {
                        t: tri.f,
                        f: tri.t,
                        d: tri.d,
                        raw: [rf, rt, rd],
                    }
                })
            }
            NodeKind::Cond { cond, then, otherwise } if matches!(node.ty, Type::Bool) => {
                let tc = self.bool(cond)?;
                let mark = self.guards.len();
                self.facts(cond, true);
                let tt = self.bool(then);
                self.guards.truncate(mark);
                self.facts(cond, false);
                let to = self.bool(otherwise);
                self.guards.truncate(mark);
                let (tt, to) = (tt?, to?);
                within_budget(&[&tc, &tc, &tc, &tt, &to])?;
                let [ct, cf, _] = tc.raw;
                Ok(Tri {
                    raw: raw_terms([
                        &[3, ct, tt.raw[0], cf, to.raw[0]],
                        &[3, ct, tt.raw[1], cf, to.raw[1]],
                        &[3, ct, tt.raw[2], cf, to.raw[2]],
                    ])?,
                    t: F::or(vec![F::and(vec![tc.t.clone(), tt.t]), F::and(vec![tc.f.clone(), to.t])]),
                    f: F::or(vec![F::and(vec![tc.t.clone(), tt.f]), F::and(vec![tc.f.clone(), to.f])]),
                    d: F::or(vec![F::and(vec![tc.t, tt.d]), F::and(vec![tc.f, to.d])]),
                })
            }
            _ => self.known_bool(node),
        }
    }

    /// A boolean node folded as a value: a known boolean, a certain
    /// error, or an atom.
    fn known_bool(&mut self, node: &Node) -> Fold<Tri> {
        Ok(match self.value(node)? {
            Pv::Known(Ok(Value::Bool(b))) => Tri::constant(b),
            // Not a boolean where one is needed: an evaluation error.
            Pv::Known(_) => Tri::error(),
            Pv::Text { text, may_error, .. } => Tri::atom(text, None, may_error),
        })
    }

    /// Records the input paths `node` proves present when it is `when`
    /// (as the checker's guards do).
    fn facts(&mut self, node: &Node, when: bool) {
        match &node.kind {
            NodeKind::Has { base, steps } if when => {
                if let NodeKind::Path {
                    root: Root::Input,
                    path,
                } = &base.kind
                {
                    let mut full: Vec<u32> = path.to_vec();
                    for s in steps.iter() {
                        match s {
                            Step::Field(i) => full.push(*i),
                            Step::Key(_) => break,
                        }
                    }
                    while !full.is_empty() {
                        self.guards.push(full.clone());
                        full.pop();
                    }
                }
            }
            NodeKind::Not(x) => self.facts(x, !when),
            NodeKind::And(a, b) if when => {
                self.facts(a, true);
                self.facts(b, true);
            }
            NodeKind::Or(a, b) if !when => {
                self.facts(a, false);
                self.facts(b, false);
            }
            _ => {}
        }
    }

    /// True when every field on the input path is required or guarded.
    fn input_path_present(&self, path: &[u32]) -> bool {
        let mut ty: &ObjectType = self.input;
        for (k, idx) in path.iter().enumerate() {
            let Some(field) = ty.fields.get(*idx as usize) else {
                return false;
            };
            if field.optional && !self.guards.iter().any(|g| g.as_slice() == &path[..=k]) {
                return false;
            }
            if k + 1 < path.len() {
                match &field.ty {
                    Type::Object(o) => ty = o,
                    _ => return false,
                }
            }
        }
        true
    }

    /// Folds a node to a value or CEL text.
    fn value(&mut self, node: &Node) -> Fold<Pv> {
        if known(node, &mut Vec::new()) && !(self.keep_loops && spends_steps(node)) {
            let mut frame = Frame {
                locals: Vec::new(),
                tracer: &mut NoTrace,
            };
            let value = eval_value(node, self.env, &mut frame).map(|v| v.into_owned());
            self.known_steps = self.known_steps.saturating_add(steps_used());
            return Ok(Pv::Known(value));
        }
        let text = |text: String, atom: bool, may_error: bool| Ok(Pv::Text { text, atom, may_error });
        match &node.kind {
            NodeKind::Path {
                root: Root::Input,
                path,
            } => {
                let mut out = String::from("input");
                let mut ty: &ObjectType = self.input;
                for (k, idx) in path.iter().enumerate() {
                    let field = ty.fields.get(*idx as usize).ok_or("internal: field out of range")?;
                    out.push('.');
                    out.push_str(&field.name);
                    if k + 1 < path.len() {
                        match &field.ty {
                            Type::Object(o) => ty = o,
                            _ => return Err("internal: path through a non-object".into()),
                        }
                    }
                }
                let present = self.input_path_present(path);
                text(out, true, !present)
            }
            NodeKind::Now => text("now".into(), true, false),
            NodeKind::Local(i) => text(format!("v{i}"), true, false),
            NodeKind::Select { operand, index } => {
                let name = match &operand.ty {
                    Type::Object(o) => o.fields.get(*index as usize).map(|f| f.name.clone()),
                    _ => None,
                }
                .ok_or("internal: a field of a non-object")?;
                self.strict(&[operand], |t| (format!("{}.{name}", t[0]), true, true))
            }
            NodeKind::MapGet { operand, key } => self.strict(&[operand], |t| (format!("{}.{key}", t[0]), true, true)),
            NodeKind::Index { operand, index } => {
                self.strict(&[operand, index], |t| (format!("{}[{}]", t[0], t[1]), true, true))
            }
            NodeKind::Has { base, steps } => {
                let mut suffix = String::new();
                let mut ty = base.ty.clone();
                for s in steps.iter() {
                    match (s, &ty) {
                        (Step::Field(i), Type::Object(o)) => {
                            let f = o.fields.get(*i as usize).ok_or("internal: field out of range")?;
                            suffix.push('.');
                            suffix.push_str(&f.name);
                            ty = f.ty.clone();
                        }
                        (Step::Key(k), Type::Map(inner)) => {
                            suffix.push('.');
                            suffix.push_str(k);
                            ty = (**inner).clone();
                        }
                        _ => return Err("internal: a `has` step that does not fit its type".into()),
                    }
                }
                // `has` on a path walks it in place and never errors.
                let from_path = matches!(base.kind, NodeKind::Path { .. });
                match self.value(base)? {
                    Pv::Known(Err(e)) => Ok(Pv::Known(Err(e))),
                    Pv::Known(Ok(_)) => Err("internal: `has` on a known value was not folded".into()),
                    Pv::Text { text: t, may_error, .. } => {
                        text(format!("has({t}{suffix})"), true, may_error && !from_path)
                    }
                }
            }
            NodeKind::Not(x) => self.strict(&[x], |t| (format!("!{}", paren(&t[0])), false, false)),
            NodeKind::Neg(x) => self.strict(&[x], |t| (format!("-{}", paren(&t[0])), false, true)),
            NodeKind::And(a, b) | NodeKind::Or(a, b) => {
                let is_or = matches!(node.kind, NodeKind::Or(..));
                let (va, vb) = (self.value(a)?, self.value(b)?);
                match (va, vb) {
                    (Pv::Known(Ok(Value::Bool(x))), _) | (_, Pv::Known(Ok(Value::Bool(x)))) if x == is_or => {
                        Ok(Pv::Known(Ok(Value::Bool(x))))
                    }
                    (Pv::Known(Ok(Value::Bool(_))), other) | (other, Pv::Known(Ok(Value::Bool(_)))) => Ok(other),
                    (Pv::Known(_), _) | (_, Pv::Known(_)) => {
                        Err("a known error inside a loop over the input cannot be written as CEL".into())
                    }
                    (
                        Pv::Text {
                            text: ta,
                            may_error: ea,
                            ..
                        },
                        Pv::Text {
                            text: tb,
                            may_error: eb,
                            ..
                        },
                    ) => {
                        let op = if is_or { "||" } else { "&&" };
                        let wrap = |t: String| if mixes(&t, op) { format!("({t})") } else { t };
                        text(format!("{} {op} {}", wrap(ta), wrap(tb)), false, ea || eb)
                    }
                }
            }
            NodeKind::Cond { cond, then, otherwise } => match self.value(cond)? {
                Pv::Known(Ok(Value::Bool(true))) => self.value(then),
                Pv::Known(Ok(Value::Bool(false))) => self.value(otherwise),
                Pv::Known(other) => Ok(Pv::Known(other.and(Err(EvalError("expected a boolean".into()))))),
                Pv::Text { text: c, may_error, .. } => {
                    let t = self.printable(then)?;
                    let o = self.printable(otherwise)?;
                    text(format!("({c}) ? ({}) : ({})", t.0, o.0), false, may_error || t.1 || o.1)
                }
            },
            NodeKind::Cmp { op, lhs, rhs } => {
                let sym = match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                self.strict_children(&[lhs, rhs], false, |t| {
                    format!("{} {sym} {}", paren(&t[0]), paren(&t[1]))
                })
            }
            NodeKind::Arith { op, lhs, rhs } => {
                self.charges = true;
                let sym = match op {
                    crate::ir::ArithOp::Add => "+",
                    crate::ir::ArithOp::Sub => "-",
                    crate::ir::ArithOp::Mul => "*",
                    crate::ir::ArithOp::Div => "/",
                    crate::ir::ArithOp::Rem => "%",
                };
                self.strict(&[lhs, rhs], |t| {
                    (format!("{} {sym} {}", paren(&t[0]), paren(&t[1])), false, true)
                })
            }
            NodeKind::In { elem, coll } => {
                self.charges = true;
                self.strict_children(&[elem, coll], false, |t| {
                    format!("{} in {}", paren(&t[0]), paren(&t[1]))
                })
            }
            NodeKind::InStrings { elem, set } => {
                let mut items: Vec<&String> = set.iter().collect();
                items.sort();
                let list = items.iter().map(|s| string_literal(s)).collect::<Vec<_>>().join(", ");
                self.strict_children(&[elem], false, |t| format!("{} in [{list}]", paren(&t[0])))
            }
            NodeKind::Call { func, args } => self.call(*func, args),
            NodeKind::Matches { operand, regex } => {
                let pat = string_literal(regex.source());
                self.strict_children(&[operand], true, |t| format!("{}.matches({pat})", paren(&t[0])))
            }
            NodeKind::Glob { operand, matcher } => {
                let pat = string_literal(matcher.source());
                self.strict_children(&[operand], true, |t| format!("{}.glob({pat})", paren(&t[0])))
            }
            NodeKind::GlobOverlap {
                operand,
                automaton,
                operand_is_glob,
                ignore_case,
            } => {
                let name = match (operand_is_glob, ignore_case) {
                    (true, false) => "mayMatch",
                    (true, true) => "mayMatchIgnoreCase",
                    (false, _) => "globIgnoreCase",
                };
                let pat = string_literal(automaton.source());
                self.strict_children(&[operand], true, |t| format!("{}.{name}({pat})", paren(&t[0])))
            }
            NodeKind::List(items) => {
                let refs: Vec<&Node> = items.iter().collect();
                self.strict_children(&refs, true, |t| format!("[{}]", t.join(", ")))
            }
            NodeKind::MapLit(entries) => {
                let refs: Vec<&Node> = entries.iter().flat_map(|(k, v)| [k, v]).collect();
                self.strict(&refs, |t| {
                    let pairs: Vec<String> = t.chunks(2).map(|kv| format!("{}: {}", kv[0], kv[1])).collect();
                    (format!("{{{}}}", pairs.join(", ")), true, true)
                })
            }
            NodeKind::Comprehension { kind, range, var, body } => {
                self.charges = true;
                let range = match self.value(range)? {
                    Pv::Known(Err(e)) => return Ok(Pv::Known(Err(e))),
                    Pv::Known(Ok(v)) => literal(&v)?,
                    Pv::Text { text, atom, .. } => {
                        if atom {
                            text
                        } else {
                            format!("({text})")
                        }
                    }
                };
                // Guards do not reach into the body: its reads are judged
                // alone (a loop may also run out of steps: may error).
                let saved = std::mem::take(&mut self.guards);
                let body = self.printable(body);
                self.guards = saved;
                let (body, _) = body?;
                let name = match kind {
                    MacroKind::Exists => "exists",
                    MacroKind::All => "all",
                    MacroKind::ExistsOne => "exists_one",
                    MacroKind::Filter => "filter",
                    MacroKind::Map => "map",
                };
                text(format!("{range}.{name}(v{var}, {body})"), true, true)
            }
            NodeKind::Path { root: Root::Output, .. } | NodeKind::ErrorText => {
                Err("reads the outcome, which phase `before` has not".into())
            }
            _ => Err("reads state, which is not known statically".into()),
        }
    }

    /// An operand as CEL text, in parentheses unless it is simple.
    fn operand(&mut self, node: &Node) -> Fold<String> {
        Ok(match self.value(node)? {
            Pv::Known(Ok(v)) => literal(&v)?,
            Pv::Known(Err(e)) => return Err(format!("internal: a certain error ({}) in an operand", e.0)),
            Pv::Text { text, atom, .. } => {
                if atom {
                    text
                } else {
                    format!("({text})")
                }
            }
        })
    }

    /// A node as CEL text with its "may error"; a known error cannot be
    /// written.
    fn printable(&mut self, node: &Node) -> Fold<(String, bool)> {
        match self.value(node)? {
            Pv::Known(Ok(v)) => Ok((literal(&v)?, false)),
            Pv::Known(Err(e)) => Err(format!("a certain error ({}) cannot be written as CEL here", e.0)),
            Pv::Text { text, may_error, .. } => Ok((text, may_error)),
        }
    }

    /// An operator that evaluates every operand (an operand's error is
    /// its error): known operands become literals.
    fn strict(&mut self, operands: &[&Node], build: impl FnOnce(&[String]) -> (String, bool, bool)) -> Fold<Pv> {
        let mut texts = Vec::with_capacity(operands.len());
        let mut any_error = false;
        for n in operands {
            match self.value(n)? {
                Pv::Known(Err(e)) => return Ok(Pv::Known(Err(e))),
                Pv::Known(Ok(v)) => texts.push(literal(&v)?),
                Pv::Text { text, atom, may_error } => {
                    any_error |= may_error;
                    texts.push(if atom { text } else { format!("({text})") });
                }
            }
        }
        let (text, atom, may_error) = build(&texts);
        Ok(Pv::Text {
            text,
            atom,
            may_error: may_error || any_error,
        })
    }

    /// [`Folder::strict`] for an operator that errs only through its
    /// operands.
    fn strict_children(&mut self, operands: &[&Node], atom: bool, build: impl FnOnce(&[String]) -> String) -> Fold<Pv> {
        self.strict(operands, |t| (build(t), atom, false))
    }

    fn call(&mut self, func: Builtin, args: &[Node]) -> Fold<Pv> {
        let refs: Vec<&Node> = args.iter().collect();
        let method = |name: &'static str| {
            move |t: &[String]| {
                let rest = t.get(1..).unwrap_or_default().join(", ");
                format!("{}.{name}({rest})", t.first().map_or("", |s| s.as_str()))
            }
        };
        let function = |name: &'static str| move |t: &[String]| format!("{name}({})", t.join(", "));
        let part = |name: &'static str| move |t: &[String]| format!("{}.{name}", t.first().map_or("", |s| s.as_str()));
        match func {
            Builtin::Size => self.strict_children(&refs, true, function("size")),
            Builtin::StartsWith => self.strict_children(&refs, true, method("startsWith")),
            Builtin::EndsWith => self.strict_children(&refs, true, method("endsWith")),
            Builtin::Contains => self.strict_children(&refs, true, method("contains")),
            Builtin::LowerAscii => self.strict_children(&refs, true, method("lowerAscii")),
            Builtin::UpperAscii => self.strict_children(&refs, true, method("upperAscii")),
            Builtin::Trim => self.strict_children(&refs, true, method("trim")),
            Builtin::NormalizePath => self.strict_children(&refs, true, method("normalize")),
            Builtin::Under => self.strict_children(&refs, true, method("under")),
            Builtin::ToString => self.strict_children(&refs, true, function("string")),
            Builtin::CidrContains => {
                let name = if matches!(args.first().map(|a| &a.ty), Some(Type::Cidr)) {
                    "containsIP"
                } else {
                    "inCidr"
                };
                self.strict_children(&refs, true, method(name))
            }
            Builtin::UrlHost => self.strict_children(&refs, true, part("host")),
            Builtin::UrlScheme => self.strict_children(&refs, true, part("scheme")),
            Builtin::UrlPort => self.strict_children(&refs, true, part("port")),
            Builtin::UrlPath => self.strict_children(&refs, true, part("path")),
            Builtin::UrlQuery => self.strict_children(&refs, true, part("query")),
            // Conversions of text fail on text that is not a number, a
            // time, a URL...
            other => {
                let name = match other {
                    Builtin::ToInt => "int",
                    Builtin::ToNumber => "double",
                    Builtin::ToTimestamp => "timestamp",
                    Builtin::ToDuration => "duration",
                    Builtin::ParseUrl => "url",
                    Builtin::ParseIp => "ip",
                    _ => "cidr",
                };
                self.strict(&refs, |t| (function(name)(t), true, true))
            }
        }
    }
}

/// True when `text`, as an operand of the logical operator `op`, needs
/// parentheses: it holds the other logical operator or a `?:` outside
/// brackets and quotes (comparisons and `!` bind tighter).
fn mixes(text: &str, op: &str) -> bool {
    let other = if op == "||" { "&&" } else { "||" };
    let bytes = text.as_bytes();
    let (mut depth, mut in_str, mut escaped) = (0i32, false, false);
    for (i, &c) in bytes.iter().enumerate() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'?' if depth == 0 => return true,
            _ if depth == 0 && bytes[i..].starts_with(other.as_bytes()) => return true,
            _ => {}
        }
    }
    false
}

/// Wraps operator text in parentheses when used as an operand.
fn paren(text: &str) -> String {
    if is_simple(text) {
        text.to_string()
    } else {
        format!("({text})")
    }
}

/// True when the node reads nothing unknown: not the input, `now`, the
/// outcome, the session, nor a loop variable bound outside it.
fn known(node: &Node, bound: &mut Vec<u32>) -> bool {
    match &node.kind {
        NodeKind::Path { root, .. } => !matches!(root, Root::Input | Root::Output),
        NodeKind::Now
        | NodeKind::ErrorText
        | NodeKind::SessionId
        | NodeKind::SessionLabels
        | NodeKind::SessionHasLabel { .. }
        | NodeKind::SessionCount { .. }
        | NodeKind::SessionSum { .. }
        | NodeKind::SessionCalls { .. }
        | NodeKind::HashedCmp { .. } => false,
        NodeKind::Local(v) => bound.contains(v),
        NodeKind::Comprehension { range, var, body, .. } => {
            if !known(range, bound) {
                return false;
            }
            bound.push(*var);
            let k = known(body, bound);
            bound.pop();
            k
        }
        _ => node.children().into_iter().all(|c| known(c, bound)),
    }
}

/// True when evaluating the node charges evaluation steps: a loop, `in`
/// over a collection, arithmetic (joining text or lists).
fn spends_steps(node: &Node) -> bool {
    matches!(
        node.kind,
        NodeKind::Comprehension { .. } | NodeKind::In { .. } | NodeKind::Arith { .. }
    ) || node.children().into_iter().any(spends_steps)
}

/// A known value as a CEL literal.
fn literal(v: &Value) -> Fold<String> {
    Ok(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) if *i == i64::MIN => format!("({} - 1)", i64::MIN + 1),
        Value::Int(i) if *i < 0 => format!("({i})"),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => "double(\"NaN\")".into(),
        Value::Float(f) if f.is_infinite() => {
            if *f > 0.0 {
                "double(\"inf\")".into()
            } else {
                "double(\"-inf\")".into()
            }
        }
        Value::Float(f) => {
            let mut s = format!("{f:?}");
            if !s.contains(['.', 'e', 'E']) {
                s.push_str(".0");
            }
            if *f < 0.0 || s.starts_with('-') {
                format!("({s})")
            } else {
                s
            }
        }
        Value::Str(s) => string_literal(s),
        Value::Timestamp(t) => format!("timestamp({})", string_literal(&t.to_string())),
        Value::Duration(d) => format!("duration({})", string_literal(&crate::value::format_duration(*d))),
        Value::Url(u) => format!("url({})", string_literal(u.as_str())),
        Value::Ip(ip) => format!("ip({})", string_literal(&ip.to_string())),
        Value::Cidr(ip, n) => format!("cidr({})", string_literal(&format!("{ip}/{n}"))),
        Value::List(items) => {
            let items: Fold<Vec<String>> = items.iter().map(literal).collect();
            format!("[{}]", items?.join(", "))
        }
        Value::Map(m) => {
            let items: Fold<Vec<String>> = m
                .iter()
                .map(|(k, v)| Ok(format!("{}: {}", string_literal(k), literal(v)?)))
                .collect();
            format!("{{{}}}", items?.join(", "))
        }
        Value::Object(_) => return Err("an object of the actor or snapshot cannot be written as a CEL literal".into()),
        Value::Absent => return Err("internal: an unset field as a value".into()),
    })
}

/// A string as a CEL literal (double quotes, escapes for quotes,
/// backslashes and control characters).
fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod prop;
#[cfg(test)]
mod tests;
