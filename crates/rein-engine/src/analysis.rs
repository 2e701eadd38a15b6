//! A policy's `before` rules as logic, for static analysis (`rein lint`,
//! `rein diff`): each rule's condition and each action's contract lowered
//! into a small, solver-neutral term language that an SMT solver can read.
//!
//! Pure: no I/O and no solver here (the `rein-analysis` crate talks to
//! one). The lowering is an over-approximation by construction, so a claim
//! that no input exists is sound when the solver finds the terms
//! unsatisfiable:
//! - encoded exactly: booleans and `&&`/`||`/`!`/ternary with CEL's error
//!   absorption, ints (with overflow as an error) and their `+ - *`,
//!   comparisons of numbers (ints as SMT ints, numbers as reals; the engine
//!   compares ints and floats exactly, so reals are exact), strings with
//!   `==`, `!=`, `startsWith`, `endsWith`, `contains`, `size`, `in` over
//!   lists of constants, `has(...)` and optional fields (an absent field
//!   read is an error), the action name, `tool:` facts, and the contract's
//!   types, `min`/`max`, lengths and allowed values;
//! - anything else (regexes, globs, float arithmetic, timestamps, lists,
//!   maps, session and limit state, ...) is an *unknown*: a fresh variable
//!   for its value and another for whether it fails, shared by structurally
//!   identical subterms (the same expression reads the same request the
//!   same way), so what is not understood can take any value, never one
//!   assumed.
//!
//! Each condition is a pair of terms: `holds` (it evaluates to `true`) and
//! `fails` (its evaluation errors, which blocks the decision). A rule with a
//! limit holds only when a fresh unknown (its bucket's state) allows, and an
//! action whose rules read state may be blocked by the state whatever the
//! rules say (another unknown).
//!
//! `after` rules are not lowered: their outcome depends on which of
//! `output` and `error` the outcome carries, in ways this encoding does not
//! follow.

use crate::ast::{Combining, Effect, Phase};
use crate::ir::{ActionIr, ArithOp, Builtin, CmpOp, CompiledPolicy, Node, NodeKind, Root, Step};
use crate::source::{SourceFile, Span};
use crate::types::{Constraints, ObjectType, Type};
use crate::value::Value;
use crate::Policy;
use rustc_hash::FxHashMap;
use std::fmt::Write as _;

/// The sort of a term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sort {
    /// A boolean.
    Bool,
    /// An unbounded integer (ints are constrained to 64 bits by axioms).
    Int,
    /// A real number (a `number` field: every double is a real).
    Real,
    /// A string of Unicode code points.
    Str,
}

/// A term of the logic. Variables are indices into [`Logic::vars`].
#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    /// A boolean constant.
    Bool(bool),
    /// An integer constant.
    Int(i128),
    /// A real constant: numerator and denominator in decimal digits
    /// (denominator positive), exactly the double it came from.
    Real(String, String),
    /// A string constant.
    Str(String),
    /// A variable.
    Var(u32),
    /// Negation.
    Not(Box<Term>),
    /// Conjunction (true when empty).
    And(Vec<Term>),
    /// Disjunction (false when empty).
    Or(Vec<Term>),
    /// If-then-else.
    Ite(Box<Term>, Box<Term>, Box<Term>),
    /// Equality of two terms of one sort.
    Eq(Box<Term>, Box<Term>),
    /// `<` on ints or reals.
    Lt(Box<Term>, Box<Term>),
    /// `<=` on ints or reals.
    Le(Box<Term>, Box<Term>),
    /// Sum.
    Add(Box<Term>, Box<Term>),
    /// Difference.
    Sub(Box<Term>, Box<Term>),
    /// Product.
    Mul(Box<Term>, Box<Term>),
    /// Arithmetic negation.
    Neg(Box<Term>),
    /// An int as a real.
    ToReal(Box<Term>),
    /// The length of a string in code points.
    StrLen(Box<Term>),
    /// `prefix` is a prefix of `s`: (prefix, s).
    PrefixOf(Box<Term>, Box<Term>),
    /// `suffix` is a suffix of `s`: (suffix, s).
    SuffixOf(Box<Term>, Box<Term>),
    /// `s` contains `part`: (s, part).
    Contains(Box<Term>, Box<Term>),
}

impl Term {
    /// Conjunction, simplified when trivial.
    pub fn and(items: Vec<Term>) -> Term {
        let mut out = Vec::with_capacity(items.len());
        for t in items {
            match t {
                Term::Bool(true) => {}
                Term::Bool(false) => return Term::Bool(false),
                Term::And(inner) => out.extend(inner),
                t => out.push(t),
            }
        }
        match out.len() {
            0 => Term::Bool(true),
            1 => out.pop().unwrap_or(Term::Bool(true)),
            _ => Term::And(out),
        }
    }

    /// Disjunction, simplified when trivial.
    pub fn or(items: Vec<Term>) -> Term {
        let mut out = Vec::with_capacity(items.len());
        for t in items {
            match t {
                Term::Bool(false) => {}
                Term::Bool(true) => return Term::Bool(true),
                Term::Or(inner) => out.extend(inner),
                t => out.push(t),
            }
        }
        match out.len() {
            0 => Term::Bool(false),
            1 => out.pop().unwrap_or(Term::Bool(false)),
            _ => Term::Or(out),
        }
    }

    /// Negation, simplified when trivial.
    #[allow(clippy::should_implement_trait)]
    pub fn not(t: Term) -> Term {
        match t {
            Term::Bool(b) => Term::Bool(!b),
            Term::Not(inner) => *inner,
            t => Term::Not(Box::new(t)),
        }
    }

    /// Adds the variables the term reads (with repeats) to `out`.
    pub fn vars(&self, out: &mut Vec<u32>) {
        match self {
            Term::Bool(_) | Term::Int(_) | Term::Real(..) | Term::Str(_) => {}
            Term::Var(i) => out.push(*i),
            Term::Not(x) | Term::Neg(x) | Term::ToReal(x) | Term::StrLen(x) => x.vars(out),
            Term::And(xs) | Term::Or(xs) => xs.iter().for_each(|x| x.vars(out)),
            Term::Ite(a, b, c) => {
                a.vars(out);
                b.vars(out);
                c.vars(out);
            }
            Term::Eq(a, b)
            | Term::Lt(a, b)
            | Term::Le(a, b)
            | Term::Add(a, b)
            | Term::Sub(a, b)
            | Term::Mul(a, b)
            | Term::PrefixOf(a, b)
            | Term::SuffixOf(a, b)
            | Term::Contains(a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }

    /// Equality.
    pub fn eq(a: Term, b: Term) -> Term {
        Term::Eq(Box::new(a), Box::new(b))
    }

    /// If-then-else, simplified on a constant condition.
    pub fn ite(c: Term, t: Term, e: Term) -> Term {
        match c {
            Term::Bool(true) => t,
            Term::Bool(false) => e,
            c => Term::Ite(Box::new(c), Box::new(t), Box::new(e)),
        }
    }
}

/// Where a variable comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The value of a request field (`input.amount`).
    Field {
        /// `input`, `actor` or `snapshot`.
        root: FieldRoot,
        /// Field names from the root.
        path: Vec<String>,
    },
    /// Whether an optional field (and every optional field above it) is set.
    Present {
        /// `input`, `actor` or `snapshot`.
        root: FieldRoot,
        /// Field names from the root.
        path: Vec<String>,
    },
    /// Something the encoding does not follow: the value or the failure of
    /// an expression (described), a limit's state, the session's state.
    Unknown(String),
    /// A name for a term, defined by an axiom (`v = term`), so that a term
    /// used many times is written once.
    Definition,
}

/// The request parts a field variable can come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldRoot {
    /// `input`
    Input,
    /// `actor`
    Actor,
    /// `snapshot`
    Snapshot,
}

impl FieldRoot {
    /// Its name in conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldRoot::Input => "input",
            FieldRoot::Actor => "actor",
            FieldRoot::Snapshot => "snapshot",
        }
    }
}

/// One variable of the logic.
#[derive(Clone, Debug)]
pub struct Var {
    /// A readable, unique name (`input.amount:int`, `?input.cmd.matches(...)`).
    pub name: String,
    /// Its sort.
    pub sort: Sort,
    /// What it stands for.
    pub origin: Origin,
    /// The term it names, for a [`Origin::Definition`].
    pub definition: Option<Term>,
}

/// The variables shared by every lowered policy and the axioms they obey
/// (64-bit ranges of ints). Lower two policies into one `Logic` to compare
/// them: the same field path or the same unknown expression is the same
/// variable.
#[derive(Debug, Default)]
pub struct Logic {
    /// The variables, by index.
    pub vars: Vec<Var>,
    by_name: FxHashMap<String, u32>,
}

impl Logic {
    /// An empty logic.
    pub fn new() -> Logic {
        Logic::default()
    }

    /// What the variables a query reads obey whatever the request (ints
    /// fit 64 bits, definitions), for those variables and the ones their
    /// definitions read in turn.
    pub fn axioms_for(&self, query: &Term) -> Vec<Term> {
        let mut todo = Vec::new();
        query.vars(&mut todo);
        self.axioms_for_vars(todo)
    }

    /// [`Logic::axioms_for`] the variables given.
    pub fn axioms_for_vars(&self, mut todo: Vec<u32>) -> Vec<Term> {
        let mut seen = vec![false; self.vars.len()];
        let mut out = Vec::new();
        while let Some(i) = todo.pop() {
            match seen.get_mut(i as usize) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            let Some(v) = self.vars.get(i as usize) else { continue };
            if v.sort == Sort::Int {
                out.push(int_range(Term::Var(i)));
            }
            if let Some(d) = &v.definition {
                d.vars(&mut todo);
                out.push(Term::eq(Term::Var(i), d.clone()));
            }
        }
        out
    }

    /// `t` itself when it is small, else a new variable defined equal to it:
    /// the definition only names the term, so it constrains nothing else.
    fn define(&mut self, t: Term, sort: Sort) -> Term {
        let small = match &t {
            Term::Var(_) | Term::Bool(_) | Term::Int(_) => true,
            Term::Not(inner) => matches!(**inner, Term::Var(_)),
            _ => false,
        };
        if small {
            return t;
        }
        let name = format!("def:{}", self.vars.len());
        let v = self.var(name, sort, Origin::Definition);
        if let (Term::Var(_), Some(var)) = (&v, self.vars.last_mut()) {
            var.definition = Some(t);
        }
        v
    }

    fn var(&mut self, name: String, sort: Sort, origin: Origin) -> Term {
        if let Some(i) = self.by_name.get(&name) {
            return Term::Var(*i);
        }
        let i = u32::try_from(self.vars.len()).unwrap_or(u32::MAX);
        self.by_name.insert(name.clone(), i);
        self.vars.push(Var {
            name,
            sort,
            origin,
            definition: None,
        });
        Term::Var(i)
    }

    /// The variable of this name, if one was made.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }
}

fn int_range(t: Term) -> Term {
    Term::and(vec![
        Term::Le(Box::new(Term::Int(i64::MIN.into())), Box::new(t.clone())),
        Term::Le(Box::new(t), Box::new(Term::Int(i64::MAX.into()))),
    ])
}

/// One action's `before` rules and contract as logic.
#[derive(Debug)]
pub struct ActionModel {
    /// The action's name.
    pub action: String,
    /// The effect when no rule matches.
    pub default: Effect,
    /// Actra's first-match combining (else Rein's deny-overrides).
    pub first_match: bool,
    /// The contract's constraints on the fields the rules read (a request
    /// that breaks them is refused before any rule).
    pub contract: Term,
    /// The rules, in rule order.
    pub rules: Vec<RuleModel>,
    /// Its rules read state (limits, session facts): the state may block
    /// whatever the rules say (the unknown variable), and a decision needs a
    /// state to confirm an example.
    pub state: Option<Term>,
}

/// One rule's condition for one action.
#[derive(Debug, Clone)]
pub struct RuleModel {
    /// The rule's position in the policy (load order).
    pub index: usize,
    /// Its id.
    pub id: String,
    /// Its effect.
    pub effect: Effect,
    /// The rule matches: its condition is `true` without error (and its
    /// limit lets it apply).
    pub holds: Term,
    /// Evaluating it fails (the decision blocks).
    pub fails: Term,
    /// No unknown was needed: the terms are the condition's meaning.
    pub exact: bool,
    /// Where its condition was written (file index, span), if it has one.
    pub when: Option<(usize, Span)>,
}

/// The three possible decisions of an action, as terms (exactly one holds).
#[derive(Debug, Clone)]
pub struct Decides {
    /// The decision is `allow`.
    pub allow: Term,
    /// The decision is `require_approval`.
    pub approval: Term,
    /// The decision is `block`.
    pub block: Term,
}

impl Decides {
    /// The term for one effect.
    pub fn effect(&self, e: Effect) -> &Term {
        match e {
            Effect::Allow => &self.allow,
            Effect::RequireApproval => &self.approval,
            Effect::Block => &self.block,
        }
    }
}

impl Decides {
    /// Some request gets a different decision under `other`: what a claim
    /// that a rule can be removed must prove impossible.
    pub fn differs(&self, other: &Decides) -> Term {
        let xor = |a: &Term, b: &Term| Term::not(Term::eq(a.clone(), b.clone()));
        Term::or(vec![
            xor(&self.allow, &other.allow),
            xor(&self.approval, &other.approval),
            xor(&self.block, &other.block),
        ])
    }
}

impl ActionModel {
    /// The action's decisions with the rule at `position` (in rule order)
    /// removed. A rule "never takes effect" only when these equal
    /// [`ActionModel::decides`]: its evaluation error blocks, so a rule
    /// that never decides by matching may still decide by failing.
    pub fn decides_without(&self, position: usize) -> Decides {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != position)
            .map(|(_, r)| r.clone())
            .collect();
        ActionModel {
            action: self.action.clone(),
            default: self.default,
            first_match: self.first_match,
            contract: self.contract.clone(),
            rules,
            state: self.state.clone(),
        }
        .decides()
    }

    /// The decision of a request that meets the contract, as the engine
    /// combines the rules.
    pub fn decides(&self) -> Decides {
        let state_blocks = self.state.clone().unwrap_or(Term::Bool(false));
        if self.first_match {
            // From the last rule back: the first rule that fails or holds decides.
            let mut allow = Term::Bool(self.default == Effect::Allow);
            let mut approval = Term::Bool(self.default == Effect::RequireApproval);
            let mut block = Term::Bool(self.default == Effect::Block);
            for r in self.rules.iter().rev() {
                let (a, p, b) = (
                    Term::Bool(r.effect == Effect::Allow),
                    Term::Bool(r.effect == Effect::RequireApproval),
                    Term::Bool(r.effect == Effect::Block),
                );
                allow = Term::ite(r.fails.clone(), Term::Bool(false), Term::ite(r.holds.clone(), a, allow));
                approval = Term::ite(
                    r.fails.clone(),
                    Term::Bool(false),
                    Term::ite(r.holds.clone(), p, approval),
                );
                block = Term::ite(r.fails.clone(), Term::Bool(true), Term::ite(r.holds.clone(), b, block));
            }
            let block = Term::or(vec![state_blocks.clone(), block]);
            let allow = Term::and(vec![Term::not(state_blocks.clone()), allow]);
            let approval = Term::and(vec![Term::not(state_blocks), approval]);
            return Decides { allow, approval, block };
        }
        let holds_with = |e: Effect| {
            Term::or(
                self.rules
                    .iter()
                    .filter(|r| r.effect == e)
                    .map(|r| r.holds.clone())
                    .collect(),
            )
        };
        let none = Term::not(Term::or(self.rules.iter().map(|r| r.holds.clone()).collect()));
        let default_is = |e: Effect| Term::and(vec![none.clone(), Term::Bool(self.default == e)]);
        let block = Term::or(vec![
            state_blocks,
            Term::or(self.rules.iter().map(|r| r.fails.clone()).collect()),
            holds_with(Effect::Block),
            default_is(Effect::Block),
        ]);
        let approval = Term::and(vec![
            Term::not(block.clone()),
            Term::or(vec![
                holds_with(Effect::RequireApproval),
                default_is(Effect::RequireApproval),
            ]),
        ]);
        let allow = Term::and(vec![Term::not(block.clone()), Term::not(approval.clone())]);
        Decides { allow, approval, block }
    }
}

/// Where a rule was written, read back from the policy's sources.
#[derive(Debug, Clone)]
pub struct RuleSite {
    /// Its id.
    pub id: String,
    /// Its file.
    pub file: SourceFile,
    /// The whole rule.
    pub span: Span,
    /// Its `action:` targets as written (names, globs, `*`), with spans.
    pub targets: Vec<(String, Span)>,
    /// Its condition's span.
    pub when: Option<Span>,
}

/// Where every rule of a native policy was written (empty for a policy
/// whose files are not native, such as Actra's).
pub fn rule_sites(policy: &Policy) -> Vec<RuleSite> {
    let compiled = policy.compiled();
    let mut out = Vec::new();
    for (i, file) in compiled.files.iter().enumerate() {
        let mut diags = Vec::new();
        let parsed = crate::syntax::native::read_policy_file(file, i, &mut diags);
        for r in parsed.rules {
            out.push(RuleSite {
                id: r.id.value.clone(),
                file: file.clone(),
                span: r.span,
                targets: r.targets.iter().map(|t| (t.value.clone(), t.span)).collect(),
                when: r.when.as_ref().map(|w| w.span),
            });
        }
    }
    out
}

/// The source file of a rule's position (for diagnostics).
pub fn rule_file(policy: &Policy, rule: usize) -> Option<SourceFile> {
    let c = policy.compiled();
    let info = c.rules.get(rule)?;
    c.files.get(info.file).cloned()
}

/// The position, in load order, of the file that holds rule `rule` (its
/// index in the compiled policy): files loaded earlier are the bases later
/// ones extend.
pub fn rule_file_index(policy: &Policy, rule: usize) -> Option<usize> {
    policy.compiled().rules.get(rule).map(|info| info.file)
}

/// Lowers every action's `before` rules and contract into `logic`.
pub fn lower(policy: &Policy, logic: &mut Logic) -> Vec<ActionModel> {
    let compiled = policy.compiled();
    compiled
        .actions
        .iter()
        .map(|a| lower_action(compiled, a, logic))
        .collect()
}

fn lower_action(policy: &CompiledPolicy, action: &ActionIr, logic: &mut Logic) -> ActionModel {
    let mut l = Lowering {
        policy,
        action,
        logic,
        exact: true,
        fields: Vec::new(),
    };
    let mut rules = Vec::new();
    for rule in action.rules(Phase::Before) {
        l.exact = true;
        let info = policy.rules.get(rule.rule as usize);
        let id = info.map_or_else(|| "?".to_string(), |r| r.id.clone());
        let (mut holds, mut fails) = match &rule.cond {
            None => (Term::Bool(true), Term::Bool(false)),
            Some(cond) => {
                let c = l.lower(cond);
                match c.v {
                    V::Bool(v) => {
                        let err = l.logic.define(c.err, Sort::Bool);
                        (Term::and(vec![Term::not(err.clone()), v]), err)
                    }
                    _ => {
                        let o = l.opaque(cond);
                        match o.v {
                            V::Bool(v) => (Term::and(vec![Term::not(o.err.clone()), v]), o.err),
                            _ => (Term::Bool(false), Term::Bool(true)),
                        }
                    }
                }
            }
        };
        if let Some(limit) = &rule.limit {
            // Whether the bucket lets the rule apply, and whether reading its
            // key or cost fails, are the state's: unknowns of their own,
            // named by everything that decides them (the rule, its effect,
            // the limit's max, window, cost and keys), so that two policies
            // compared share one only when their limits are the same.
            l.exact = false;
            let effect = info.map_or(Effect::Block, |r| r.effect);
            let cost = limit.cost.as_ref().map(|c| l.canon(c));
            let per: Vec<(&str, bool)> = limit.per.iter().map(|k| (k.text.as_str(), k.hashed)).collect();
            let key = format!(
                "{id}:{effect:?}:{}:{:?}:{cost:?}:{per:?}",
                limit.max.normalize(),
                limit.window
            );
            let under = l.logic.var(
                format!("?limit:{key}"),
                Sort::Bool,
                Origin::Unknown(format!("the limit of rule `{id}`")),
            );
            let broken = l.logic.var(
                format!("?limit-error:{key}"),
                Sort::Bool,
                Origin::Unknown(format!("the limit of rule `{id}` failing")),
            );
            fails = Term::or(vec![fails, Term::and(vec![holds.clone(), broken])]);
            holds = Term::and(vec![holds, under]);
        }
        let holds = l.logic.define(holds, Sort::Bool);
        let fails = l.logic.define(fails, Sort::Bool);
        rules.push(RuleModel {
            index: rule.rule as usize,
            id,
            effect: info.map_or(Effect::Block, |r| r.effect),
            holds,
            fails,
            exact: l.exact,
            when: info.and_then(|r| r.when_span.map(|s| (r.file, s))),
        });
    }
    let state = action.state(Phase::Before).reads.then(|| {
        // Whether a session is required is part of what the state blocks.
        let session = action.state(Phase::Before).session_rule.is_some();
        l.logic.var(
            format!("?state-blocks:{}:{session}", action.name()),
            Sort::Bool,
            Origin::Unknown(format!("the state blocking `{}`", action.name())),
        )
    });
    let contract = l.contract();
    ActionModel {
        action: action.name().to_string(),
        default: policy.default,
        first_match: policy.combining == Combining::FirstMatch,
        contract,
        rules,
        state,
    }
}

/// A lowered value.
enum V {
    Bool(Term),
    Int(Term),
    Real(Term),
    Str(Term),
    /// A value of a kind not encoded; only its canonical text is known.
    Other,
}

/// A lowered expression: its value (meaningful when it does not fail) and
/// whether it fails.
struct Lowered {
    v: V,
    err: Term,
}

impl Lowered {
    fn ok(v: V) -> Lowered {
        Lowered {
            v,
            err: Term::Bool(false),
        }
    }
}

/// Highest code point Z3's strings hold: a string constant with a higher
/// one is left unknown rather than mis-encoded.
const MAX_SOLVER_CHAR: char = '\u{2FFFF}';

struct Lowering<'a> {
    policy: &'a CompiledPolicy,
    action: &'a ActionIr,
    logic: &'a mut Logic,
    /// No unknown was needed for the rule being lowered.
    exact: bool,
    /// The field variables made for this action: (var, root, field type's
    /// constraints path) to constrain by the contract.
    fields: Vec<(Term, Sort, FieldRoot, Vec<usize>)>,
}

impl<'a> Lowering<'a> {
    fn root_type(&self, root: Root) -> Option<&'a ObjectType> {
        let (policy, action): (&'a CompiledPolicy, &'a ActionIr) = (self.policy, self.action);
        match root {
            Root::Input => Some(&action.input),
            Root::Output => action.output.as_deref(),
            Root::Actor => Some(&policy.actor),
            Root::Snapshot => Some(&policy.snapshot),
            Root::Tool => action.tool.as_ref().map(|t| &*t.ty),
        }
    }

    /// The field definitions along a path.
    fn path_fields(&self, root: Root, path: &[u32]) -> Option<Vec<&'a crate::types::FieldDef>> {
        let mut ty = self.root_type(root)?;
        let mut out = Vec::new();
        for (i, idx) in path.iter().enumerate() {
            let f = ty.fields.get(*idx as usize)?;
            out.push(f);
            if i + 1 < path.len() {
                match &f.ty {
                    Type::Object(o) => ty = o,
                    _ => return None,
                }
            }
        }
        Some(out)
    }

    fn root_name(root: Root) -> &'static str {
        match root {
            Root::Input => "input",
            Root::Output => "output",
            Root::Actor => "actor",
            Root::Snapshot => "snapshot",
            Root::Tool => "tool",
        }
    }

    /// Text that names what an expression computes, the same for
    /// structurally identical expressions of this action and different for
    /// expressions that may differ.
    fn canon(&self, n: &Node) -> String {
        let mut s = String::new();
        self.canon_into(n, &mut s);
        s
    }

    fn canon_into(&self, n: &Node, s: &mut String) {
        let kids = |this: &Self, s: &mut String, nodes: &[&Node]| {
            for k in nodes {
                s.push(' ');
                this.canon_into(k, s);
            }
            s.push(')');
        };
        match &n.kind {
            NodeKind::Const(v) => {
                let _ = write!(s, "{v:?}");
            }
            NodeKind::Path { root: Root::Tool, path } => {
                // A `tool:` fact is a constant of this action: named by its
                // value, since two policies compared may set it differently.
                let mut values = self.action.tool_values();
                let mut found = None;
                for idx in path.iter() {
                    found = values.get(*idx as usize);
                    if let Some(Value::Object(inner)) = found {
                        values = inner;
                    }
                }
                let _ = write!(s, "(tool {path:?} {found:?})");
            }
            NodeKind::ActionName => {
                let _ = write!(s, "(action {:?})", self.action.name);
            }
            NodeKind::Path { root, path } => {
                s.push_str(Self::root_name(*root));
                match self.path_fields(*root, path) {
                    Some(fields) => {
                        for f in fields {
                            s.push_str(&segment(&f.name));
                        }
                    }
                    None => {
                        let _ = write!(s, ".{path:?}");
                    }
                }
            }
            NodeKind::Now => s.push_str("now"),
            NodeKind::ErrorText => s.push_str("error"),
            NodeKind::Local(i) => {
                let _ = write!(s, "${i}");
            }
            NodeKind::Select { operand, index } => {
                s.push_str("(select ");
                self.canon_into(operand, s);
                match &operand.ty {
                    Type::Object(o) => match o.fields.get(*index as usize) {
                        Some(f) => {
                            let _ = write!(s, " {})", segment(&f.name));
                        }
                        None => {
                            let _ = write!(s, " #{index})");
                        }
                    },
                    _ => {
                        let _ = write!(s, " #{index})");
                    }
                }
            }
            NodeKind::MapGet { operand, key } => {
                s.push_str("(get ");
                self.canon_into(operand, s);
                let _ = write!(s, " {key:?})");
            }
            NodeKind::Has { base, steps } => {
                s.push_str("(has ");
                self.canon_into(base, s);
                let mut ty = match &base.ty {
                    Type::Object(o) => Some(o.clone()),
                    _ => None,
                };
                for step in steps.iter() {
                    match step {
                        Step::Field(i) => {
                            let f = ty.as_ref().and_then(|o| o.fields.get(*i as usize));
                            match f {
                                Some(f) => {
                                    let _ = write!(s, " {}", segment(&f.name));
                                    ty = match &f.ty {
                                        Type::Object(o) => Some(o.clone()),
                                        _ => None,
                                    };
                                }
                                None => {
                                    let _ = write!(s, " #{i}");
                                    ty = None;
                                }
                            }
                        }
                        Step::Key(k) => {
                            let _ = write!(s, " [{k:?}]");
                            ty = None;
                        }
                    }
                }
                s.push(')');
            }
            NodeKind::InStrings { elem, set } => {
                let mut items: Vec<&String> = set.iter().collect();
                items.sort();
                let _ = write!(s, "(in-strings {items:?} ");
                self.canon_into(elem, s);
                s.push(')');
            }
            NodeKind::Matches { operand, regex } => {
                let _ = write!(s, "(matches {:?}", regex.source());
                kids(self, s, &[operand]);
            }
            NodeKind::Glob { operand, matcher } => {
                let _ = write!(s, "(glob {:?}", matcher.source());
                kids(self, s, &[operand]);
            }
            NodeKind::GlobOverlap {
                operand,
                automaton,
                operand_is_glob,
                ignore_case,
            } => {
                let _ = write!(
                    s,
                    "(glob-overlap {:?} {operand_is_glob} {ignore_case}",
                    automaton.source()
                );
                kids(self, s, &[operand]);
            }
            NodeKind::Comprehension { kind, var, range, body } => {
                let _ = write!(s, "({kind:?} ${var}");
                kids(self, s, &[range, body]);
            }
            NodeKind::Cmp { op, lhs, rhs } => {
                let _ = write!(s, "({op:?}");
                kids(self, s, &[lhs, rhs]);
            }
            NodeKind::Arith { op, lhs, rhs } => {
                let _ = write!(s, "({op:?}");
                kids(self, s, &[lhs, rhs]);
            }
            NodeKind::Call { func, args } => {
                let _ = write!(s, "({func:?}");
                kids(self, s, &args.iter().collect::<Vec<_>>());
            }
            NodeKind::SessionId => s.push_str("session.id"),
            NodeKind::SessionLabels => s.push_str("session.labels"),
            NodeKind::SessionCount { actions, window } => {
                let _ = write!(s, "(session.count {actions:?} {window:?})");
            }
            NodeKind::SessionSum {
                action,
                output,
                path,
                int,
                window,
            } => {
                let _ = write!(s, "(session.sum {action:?} {output} {path:?} {int} {window:?})");
            }
            NodeKind::SessionCalls { action, window } => {
                let _ = write!(s, "(session.calls {action:?} {window:?})");
            }
            NodeKind::HashedCmp { ne, .. } => {
                let _ = write!(s, "(hashed-cmp {ne}");
                kids(self, s, &n.children());
            }
            other => {
                // The variant's name; its children follow (the variants
                // here carry nothing else).
                let name = format!("{other:?}");
                let name = name.split(['(', ' ', '{']).next().unwrap_or("?").to_string();
                let _ = write!(s, "({name}");
                kids(self, s, &n.children());
            }
        }
    }

    /// An expression the encoding does not follow: a fresh value and a
    /// fresh failure, shared with every expression of the same text.
    fn opaque(&mut self, n: &Node) -> Lowered {
        self.exact = false;
        let key = self.canon(n);
        let sort = match &n.ty {
            Type::Bool => Some(Sort::Bool),
            Type::Int => Some(Sort::Int),
            Type::Number => Some(Sort::Real),
            Type::String => Some(Sort::Str),
            _ => None,
        };
        let err = self.logic.var(
            format!("?fails:{key}"),
            Sort::Bool,
            Origin::Unknown(format!("`{key}` failing")),
        );
        let v = match sort {
            Some(sort) => {
                let t = self.logic.var(format!("?{sort:?}:{key}"), sort, Origin::Unknown(key));
                match sort {
                    Sort::Bool => V::Bool(t),
                    Sort::Int => V::Int(t),
                    Sort::Real => V::Real(t),
                    Sort::Str => V::Str(t),
                }
            }
            None => V::Other,
        };
        Lowered { v, err }
    }

    fn constant(&mut self, v: &Value, n: &Node) -> Lowered {
        match v {
            Value::Bool(b) => Lowered::ok(V::Bool(Term::Bool(*b))),
            Value::Int(i) => Lowered::ok(V::Int(Term::Int((*i).into()))),
            Value::Float(f) => match real_const(*f) {
                Some(t) => Lowered::ok(V::Real(t)),
                None => self.opaque(n),
            },
            Value::Str(s) if s.chars().all(|c| c <= MAX_SOLVER_CHAR) => Lowered::ok(V::Str(Term::Str(s.to_string()))),
            _ => self.opaque(n),
        }
    }

    fn path(&mut self, n: &Node, root: Root, path: &[u32]) -> Lowered {
        let field_root = match root {
            Root::Input => FieldRoot::Input,
            Root::Actor => FieldRoot::Actor,
            Root::Snapshot => FieldRoot::Snapshot,
            Root::Tool => return self.tool(n, path),
            Root::Output => return self.opaque(n),
        };
        let Some(fields) = self.path_fields(root, path) else {
            return self.opaque(n);
        };
        let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
        let present = self.presence(field_root, &names, &fields);
        let Some(last) = fields.last() else {
            return self.opaque(n);
        };
        let sort = match last.ty {
            Type::Bool => Sort::Bool,
            Type::Int => Sort::Int,
            Type::Number => Sort::Real,
            Type::String => Sort::Str,
            _ => {
                // Not a scalar: its value is unknown, but whether it is set
                // is known.
                let mut o = self.opaque(n);
                o.err = Term::not(present);
                return o;
            }
        };
        let name = format!("{}:{sort:?}", path_key(field_root.as_str(), &names));
        let var = self.logic.var(
            name,
            sort,
            Origin::Field {
                root: field_root,
                path: names,
            },
        );
        let idx: Vec<usize> = path.iter().map(|i| *i as usize).collect();
        if !self.fields.iter().any(|(v, ..)| *v == var) {
            self.fields.push((var.clone(), sort, field_root, idx));
        }
        let v = match sort {
            Sort::Bool => V::Bool(var),
            Sort::Int => V::Int(var),
            Sort::Real => V::Real(var),
            Sort::Str => V::Str(var),
        };
        Lowered {
            v,
            err: Term::not(present),
        }
    }

    /// Whether every optional field along a path is set.
    fn presence(&mut self, root: FieldRoot, names: &[String], fields: &[&crate::types::FieldDef]) -> Term {
        let mut parts = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if f.optional && !f.empty_when_absent {
                let prefix = names.get(..=i).unwrap_or_default().to_vec();
                let name = format!("{}:present", path_key(root.as_str(), &prefix));
                parts.push(self.logic.var(name, Sort::Bool, Origin::Present { root, path: prefix }));
            }
        }
        Term::and(parts)
    }

    /// A `tool:` fact: a constant of the action.
    fn tool(&mut self, n: &Node, path: &[u32]) -> Lowered {
        let mut values = self.action.tool_values();
        let mut found: Option<&Value> = None;
        for idx in path {
            let v = match values.get(*idx as usize) {
                Some(v) => v,
                None => return self.opaque(n),
            };
            found = Some(v);
            if let Value::Object(inner) = v {
                values = inner;
            }
        }
        match found {
            Some(Value::Absent) => Lowered {
                v: V::Bool(Term::Bool(false)),
                err: Term::Bool(true),
            },
            Some(v) => {
                let v = v.clone();
                self.constant(&v, n)
            }
            None => self.opaque(n),
        }
    }

    fn lower(&mut self, n: &Node) -> Lowered {
        match &n.kind {
            NodeKind::Const(v) => self.constant(v, n),
            NodeKind::Path { root, path } => self.path(n, *root, path),
            NodeKind::ActionName => match self.action.name.as_str() {
                Some(s) if s.chars().all(|c| c <= MAX_SOLVER_CHAR) => Lowered::ok(V::Str(Term::Str(s.to_string()))),
                _ => self.opaque(n),
            },
            NodeKind::Has { base, steps } => self.has(n, base, steps),
            NodeKind::Not(x) => {
                let x = self.lower(x);
                match x.v {
                    V::Bool(v) => Lowered {
                        v: V::Bool(Term::not(v)),
                        err: x.err,
                    },
                    _ => self.opaque(n),
                }
            }
            NodeKind::And(a, b) | NodeKind::Or(a, b) => {
                let is_or = matches!(n.kind, NodeKind::Or(..));
                let (a, b) = (self.lower(a), self.lower(b));
                match (a.v, b.v) {
                    (V::Bool(va), V::Bool(vb)) => self.logic(is_or, va, a.err, vb, b.err),
                    _ => self.opaque(n),
                }
            }
            NodeKind::Cond { cond, then, otherwise } => {
                let c = self.lower(cond);
                let t = self.lower(then);
                let o = self.lower(otherwise);
                let V::Bool(cv) = c.v else {
                    return self.opaque(n);
                };
                let cv = self.logic.define(cv, Sort::Bool);
                let c = Lowered {
                    v: V::Bool(Term::Bool(true)),
                    err: self.logic.define(c.err, Sort::Bool),
                };
                let v = match (t.v, o.v) {
                    (V::Bool(a), V::Bool(b)) => V::Bool(Term::ite(cv.clone(), a, b)),
                    (V::Int(a), V::Int(b)) => V::Int(Term::ite(cv.clone(), a, b)),
                    (V::Real(a), V::Real(b)) => V::Real(Term::ite(cv.clone(), a, b)),
                    (V::Real(a), V::Int(b)) => V::Real(Term::ite(cv.clone(), a, Term::ToReal(Box::new(b)))),
                    (V::Int(a), V::Real(b)) => V::Real(Term::ite(cv.clone(), Term::ToReal(Box::new(a)), b)),
                    (V::Str(a), V::Str(b)) => V::Str(Term::ite(cv.clone(), a, b)),
                    _ => return self.opaque(n),
                };
                let err = Term::or(vec![
                    c.err.clone(),
                    Term::and(vec![Term::not(c.err.clone()), cv.clone(), t.err]),
                    Term::and(vec![Term::not(c.err), Term::not(cv), o.err]),
                ]);
                Lowered { v, err }
            }
            NodeKind::Cmp { op, lhs, rhs } => {
                let (a, b) = (self.lower(lhs), self.lower(rhs));
                let err = Term::or(vec![a.err, b.err]);
                let v = match (a.v, b.v) {
                    (V::Int(x), V::Int(y)) => cmp(*op, x, y),
                    (V::Real(x), V::Real(y)) => cmp(*op, x, y),
                    (V::Int(x), V::Real(y)) => cmp(*op, Term::ToReal(Box::new(x)), y),
                    (V::Real(x), V::Int(y)) => cmp(*op, x, Term::ToReal(Box::new(y))),
                    (V::Str(x), V::Str(y)) | (V::Bool(x), V::Bool(y)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => {
                        cmp(*op, x, y)
                    }
                    _ => None,
                };
                match v {
                    Some(v) => Lowered { v: V::Bool(v), err },
                    None => self.opaque(n),
                }
            }
            NodeKind::Arith { op, lhs, rhs } => {
                let (a, b) = (self.lower(lhs), self.lower(rhs));
                match (op, a.v, b.v) {
                    (ArithOp::Add | ArithOp::Sub | ArithOp::Mul, V::Int(x), V::Int(y)) => {
                        let (x, y) = (Box::new(x), Box::new(y));
                        let r = match op {
                            ArithOp::Add => Term::Add(x, y),
                            ArithOp::Sub => Term::Sub(x, y),
                            _ => Term::Mul(x, y),
                        };
                        // Overflow of 64 bits is an evaluation error.
                        let err = Term::or(vec![a.err, b.err, Term::not(int_range(r.clone()))]);
                        Lowered { v: V::Int(r), err }
                    }
                    _ => self.opaque(n),
                }
            }
            NodeKind::Neg(x) => {
                let x = self.lower(x);
                match x.v {
                    V::Int(t) => {
                        let overflow = Term::eq(t.clone(), Term::Int(i64::MIN.into()));
                        Lowered {
                            v: V::Int(Term::Neg(Box::new(t))),
                            err: Term::or(vec![x.err, overflow]),
                        }
                    }
                    V::Real(t) => Lowered {
                        v: V::Real(Term::Neg(Box::new(t))),
                        err: x.err,
                    },
                    _ => self.opaque(n),
                }
            }
            NodeKind::InStrings { elem, set } => {
                if set.iter().any(|s| s.chars().any(|c| c > MAX_SOLVER_CHAR)) {
                    return self.opaque(n);
                }
                let e = self.lower(elem);
                match e.v {
                    V::Str(t) => {
                        let mut items: Vec<&String> = set.iter().collect();
                        items.sort();
                        let v = Term::or(
                            items
                                .into_iter()
                                .map(|s| Term::eq(t.clone(), Term::Str(s.clone())))
                                .collect(),
                        );
                        Lowered {
                            v: V::Bool(v),
                            err: e.err,
                        }
                    }
                    _ => self.opaque(n),
                }
            }
            NodeKind::In { elem, coll } => self.in_list(n, elem, coll),
            NodeKind::Call { func, args } => self.call(n, *func, args),
            _ => self.opaque(n),
        }
    }

    /// CEL's `&&`/`||`: a decisive side wins over an error on the other
    /// side. Each operand is named once, so chains stay linear in size.
    fn logic(&mut self, is_or: bool, va: Term, ea: Term, vb: Term, eb: Term) -> Lowered {
        let [va, ea, vb, eb] = [va, ea, vb, eb].map(|t| self.logic.define(t, Sort::Bool));
        let decisive = |v: Term, e: Term| {
            let v = if is_or { v } else { Term::not(v) };
            Term::and(vec![Term::not(e), v])
        };
        let da = decisive(va, ea.clone());
        let db = decisive(vb, eb.clone());
        let decided = self.logic.define(Term::or(vec![da, db]), Sort::Bool);
        let err = Term::and(vec![Term::not(decided.clone()), Term::or(vec![ea, eb])]);
        let v = if is_or { decided } else { Term::not(decided) };
        Lowered { v: V::Bool(v), err }
    }

    /// `x in [constants]`: a disjunction of equalities.
    fn in_list(&mut self, n: &Node, elem: &Node, coll: &Node) -> Lowered {
        let NodeKind::List(items) = &coll.kind else {
            return self.opaque(n);
        };
        let e = self.lower(elem);
        let mut errs = vec![e.err];
        let mut alts = Vec::new();
        for item in items.iter() {
            let i = self.lower(item);
            errs.push(i.err);
            let eq = match (&e.v, i.v) {
                (V::Int(x), V::Int(y)) => Term::eq(x.clone(), y),
                (V::Real(x), V::Real(y)) => Term::eq(x.clone(), y),
                (V::Int(x), V::Real(y)) => Term::eq(Term::ToReal(Box::new(x.clone())), y),
                (V::Real(x), V::Int(y)) => Term::eq(x.clone(), Term::ToReal(Box::new(y))),
                (V::Str(x), V::Str(y)) | (V::Bool(x), V::Bool(y)) => Term::eq(x.clone(), y),
                _ => return self.opaque(n),
            };
            alts.push(eq);
        }
        Lowered {
            v: V::Bool(Term::or(alts)),
            err: Term::or(errs),
        }
    }

    fn call(&mut self, n: &Node, func: Builtin, args: &[Node]) -> Lowered {
        match (func, args) {
            (Builtin::Size, [s]) => {
                let s = self.lower(s);
                match s.v {
                    V::Str(t) => Lowered {
                        v: V::Int(Term::StrLen(Box::new(t))),
                        err: s.err,
                    },
                    _ => self.opaque(n),
                }
            }
            (Builtin::StartsWith | Builtin::EndsWith | Builtin::Contains, [s, p]) => {
                let (s, p) = (self.lower(s), self.lower(p));
                match (s.v, p.v) {
                    (V::Str(s_t), V::Str(p_t)) => {
                        let (s_t, p_t) = (Box::new(s_t), Box::new(p_t));
                        let v = match func {
                            Builtin::StartsWith => Term::PrefixOf(p_t, s_t),
                            Builtin::EndsWith => Term::SuffixOf(p_t, s_t),
                            _ => Term::Contains(s_t, p_t),
                        };
                        Lowered {
                            v: V::Bool(v),
                            err: Term::or(vec![s.err, p.err]),
                        }
                    }
                    _ => self.opaque(n),
                }
            }
            _ => self.opaque(n),
        }
    }

    /// `has(path.field...)` from a request root: every optional field
    /// along it is set.
    fn has(&mut self, n: &Node, base: &Node, steps: &[Step]) -> Lowered {
        let NodeKind::Path { root, path } = &base.kind else {
            return self.opaque(n);
        };
        let field_root = match root {
            Root::Input => FieldRoot::Input,
            Root::Actor => FieldRoot::Actor,
            Root::Snapshot => FieldRoot::Snapshot,
            _ => return self.opaque(n),
        };
        let mut full: Vec<u32> = path.to_vec();
        for s in steps {
            match s {
                Step::Field(i) => full.push(*i),
                Step::Key(_) => return self.opaque(n),
            }
        }
        let Some(fields) = self.path_fields(*root, &full) else {
            return self.opaque(n);
        };
        let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
        let present = self.presence(field_root, &names, &fields);
        Lowered::ok(V::Bool(present))
    }

    /// The contract's constraints on the field variables made.
    fn contract(&mut self) -> Term {
        let mut out = Vec::new();
        for (var, sort, root, idx) in self.fields.clone() {
            let r = match root {
                FieldRoot::Input => Root::Input,
                FieldRoot::Actor => Root::Actor,
                FieldRoot::Snapshot => Root::Snapshot,
            };
            let idx: Vec<u32> = idx.iter().map(|i| u32::try_from(*i).unwrap_or(u32::MAX)).collect();
            let Some(fields) = self.path_fields(r, &idx) else {
                continue;
            };
            let names: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
            // An absent optional field has no value to constrain: the
            // constraint holds only when it is set (else a contract whose
            // optional field admits no value would hide every request).
            let present = self.presence(root, &names, &fields);
            if let Some(f) = fields.last() {
                let c = constraint(&var, sort, &f.constraints);
                out.push(Term::or(vec![Term::not(present), c]));
            }
        }
        Term::and(out)
    }
}

/// What a field's constraints say about its value (only what is encoded
/// exactly; a `pattern` is left out, which only widens).
fn constraint(var: &Term, sort: Sort, c: &Constraints) -> Term {
    let mut out = Vec::new();
    let num = |n: crate::ast::NumberLit| match n {
        crate::ast::NumberLit::Int(i) => match sort {
            Sort::Int => Some(Term::Int(i.into())),
            _ => real_const(i as f64).filter(|_| i.unsigned_abs() <= 1 << 53),
        },
        crate::ast::NumberLit::Float(f) => match sort {
            Sort::Real => real_const(f),
            _ => None,
        },
    };
    if matches!(sort, Sort::Int | Sort::Real) {
        if let Some(min) = c.min.and_then(num) {
            out.push(Term::Le(Box::new(min), Box::new(var.clone())));
        }
        if let Some(max) = c.max.and_then(num) {
            out.push(Term::Le(Box::new(var.clone()), Box::new(max)));
        }
    }
    if sort == Sort::Str {
        let len = || Box::new(Term::StrLen(Box::new(var.clone())));
        if let Some(min) = c.min_len {
            out.push(Term::Le(Box::new(Term::Int(min.into())), len()));
        }
        if let Some(max) = c.max_len {
            out.push(Term::Le(len(), Box::new(Term::Int(max.into()))));
        }
    }
    if let Some(allowed) = &c.allowed {
        let mut alts = Vec::new();
        let mut encodable = true;
        for a in allowed {
            match (sort, a) {
                (Sort::Str, Value::Str(s)) if s.chars().all(|c| c <= MAX_SOLVER_CHAR) => {
                    alts.push(Term::eq(var.clone(), Term::Str(s.to_string())))
                }
                (Sort::Int, Value::Int(i)) => alts.push(Term::eq(var.clone(), Term::Int((*i).into()))),
                (Sort::Bool, Value::Bool(b)) => alts.push(Term::eq(var.clone(), Term::Bool(*b))),
                _ => encodable = false,
            }
        }
        if encodable {
            out.push(Term::or(alts));
        }
    }
    Term::and(out)
}

fn cmp(op: CmpOp, a: Term, b: Term) -> Option<Term> {
    let (a, b) = (Box::new(a), Box::new(b));
    Some(match op {
        CmpOp::Eq => Term::Eq(a, b),
        CmpOp::Ne => Term::not(Term::Eq(a, b)),
        CmpOp::Lt => Term::Lt(a, b),
        CmpOp::Le => Term::Le(a, b),
        CmpOp::Gt => Term::Lt(b, a),
        CmpOp::Ge => Term::Le(b, a),
    })
}

/// A finite double as an exact fraction.
fn real_const(f: f64) -> Option<Term> {
    if !f.is_finite() {
        return None;
    }
    let bits = f.to_bits();
    let negative = bits >> 63 == 1;
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (mantissa, exp2) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    let mut num = mantissa.to_string();
    let mut den = "1".to_string();
    if exp2 >= 0 {
        for _ in 0..exp2 {
            num = double_decimal(&num);
        }
    } else {
        for _ in 0..(-exp2) {
            den = double_decimal(&den);
        }
    }
    if negative && mantissa != 0 {
        num.insert(0, '-');
    }
    Some(Term::Real(num, den))
}

/// Twice a decimal number written in digits.
fn double_decimal(digits: &str) -> String {
    let mut out = Vec::with_capacity(digits.len() + 1);
    let mut carry = 0u8;
    for d in digits.bytes().rev() {
        let v = (d - b'0') * 2 + carry;
        out.push(b'0' + v % 10);
        carry = v / 10;
    }
    if carry > 0 {
        out.push(b'0' + carry);
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `.name` for a field name that is an identifier, `."name"` (quoted)
/// otherwise, so that no two paths read the same (`a.b` the field of `a`
/// and a field named `a.b` are different variables).
fn segment(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{name}")
    } else {
        format!(".{name:?}")
    }
}

/// A root and field names as one unambiguous text (`input.customer.id`).
fn path_key(root: &str, names: &[String]) -> String {
    let mut out = root.to_string();
    for n in names {
        out.push_str(&segment(n));
    }
    out
}

/// A value a solver gave a variable.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A real, as the nearest double.
    Real(f64),
    /// A string.
    Str(String),
}

/// A request for `action` built from variable values (by variable index):
/// the fields the values name are set to them, an optional field whose
/// presence variable is false is left out, and every other required field
/// gets a value its contract accepts where one is easy to find (the
/// smallest allowed number, the first allowed value, a string of the least
/// length). Deciding the request confirms or refutes what the values were
/// meant to show; nothing here guarantees the contract accepts it.
pub fn build_request(
    policy: &Policy,
    logic: &Logic,
    action: &str,
    values: &FxHashMap<u32, Literal>,
) -> Option<crate::Request> {
    let c = policy.compiled();
    let id = *c.action_index.get(action)?;
    let a = c.actions.get(id as usize)?;
    let lookup = |root: FieldRoot, path: &[String], sort: Sort| -> Option<Literal> {
        let name = format!("{}:{sort:?}", path_key(root.as_str(), path));
        values.get(&logic.find(&name)?).cloned()
    };
    let present = |root: FieldRoot, path: &[String]| -> Option<bool> {
        let name = format!("{}:present", path_key(root.as_str(), path));
        match values.get(&logic.find(&name)?) {
            Some(Literal::Bool(b)) => Some(*b),
            _ => None,
        }
    };
    let build = |root: FieldRoot, ty: &ObjectType| {
        let mut path = Vec::new();
        object_json(root, ty, &mut path, &lookup, &present)
    };
    let mut req = crate::Request::new(action)
        .input(build(FieldRoot::Input, &a.input))
        .actor(build(FieldRoot::Actor, &c.actor))
        .snapshot(build(FieldRoot::Snapshot, &c.snapshot));
    if a.state(Phase::Before).reads || a.state(Phase::Before).writes {
        // Stateful rules need a session and a time: a fixed one, so that
        // the example decides the same when run again on an empty state.
        req = req.session("rein-analysis-example");
        if let Ok(t) = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>() {
            req = req.time(t);
        }
    }
    Some(req)
}

/// A field's value from the solver's model, by root, path and sort.
type Lookup<'a> = dyn Fn(FieldRoot, &[String], Sort) -> Option<Literal> + 'a;

fn object_json(
    root: FieldRoot,
    ty: &ObjectType,
    path: &mut Vec<String>,
    lookup: &Lookup<'_>,
    present: &dyn Fn(FieldRoot, &[String]) -> Option<bool>,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for f in &ty.fields {
        path.push(f.name.clone());
        let here = if f.optional { present(root, path) } else { Some(true) };
        // An optional field the values do not mention is left out: fewer
        // fields, fewer constraints to meet.
        if here == Some(true) {
            if let Some(v) = field_json(root, f, path, lookup, present) {
                out.insert(f.name.clone(), v);
            }
        }
        path.pop();
    }
    serde_json::Value::Object(out)
}

fn field_json(
    root: FieldRoot,
    f: &crate::types::FieldDef,
    path: &mut Vec<String>,
    lookup: &Lookup<'_>,
    present: &dyn Fn(FieldRoot, &[String]) -> Option<bool>,
) -> Option<serde_json::Value> {
    use serde_json::json;
    let c = &f.constraints;
    let given = |sort| lookup(root, path, sort);
    Some(match &f.ty {
        Type::Bool => match given(Sort::Bool) {
            Some(Literal::Bool(b)) => json!(b),
            _ => first_allowed(c).unwrap_or(json!(false)),
        },
        Type::Int => match given(Sort::Int) {
            Some(Literal::Int(i)) => json!(i64::try_from(i).ok()?),
            _ => first_allowed(c).unwrap_or_else(|| match (c.min, c.max) {
                (Some(crate::ast::NumberLit::Int(m)), _) => json!(m),
                (None, Some(crate::ast::NumberLit::Int(m))) if m < 0 => json!(m),
                _ => json!(0),
            }),
        },
        Type::Number => match given(Sort::Real) {
            Some(Literal::Real(x)) => serde_json::Number::from_f64(x).map(serde_json::Value::Number)?,
            _ => match (c.min, c.max) {
                (Some(m), _) => json!(number_lit(m)),
                (None, Some(m)) if number_lit(m) < 0.0 => json!(number_lit(m)),
                _ => json!(0),
            },
        },
        Type::String => match given(Sort::Str) {
            Some(Literal::Str(s)) => json!(s),
            _ => first_allowed(c)
                .or_else(|| pattern_sample(c).map(|s| json!(s)))
                .unwrap_or_else(|| {
                    let n = usize::try_from(c.min_len.unwrap_or(0)).unwrap_or(0).min(4096);
                    json!("a".repeat(n))
                }),
        },
        Type::Object(o) => object_json(root, o, path, lookup, present),
        Type::List(_) => json!([]),
        Type::Map(_) => json!({}),
        Type::Null => serde_json::Value::Null,
        _ => return None,
    })
}

/// A short string the field's `pattern` accepts (and its lengths allow),
/// if one is easy to build: the shortest expansion of the regex, checked
/// against the regex itself.
fn pattern_sample(c: &Constraints) -> Option<String> {
    let pattern = c.pattern.as_ref()?;
    let hir = regex_syntax::parse(pattern.source()).ok()?;
    let mut out = String::new();
    shortest(&hir, &mut out, 0)?;
    let len = out.chars().count() as u64;
    let fits = c.min_len.is_none_or(|m| len >= m) && c.max_len.is_none_or(|m| len <= m);
    (fits && pattern.get().ok()?.is_match(&out)).then_some(out)
}

fn shortest(hir: &regex_syntax::hir::Hir, out: &mut String, depth: usize) -> Option<()> {
    use regex_syntax::hir::{Class, HirKind};
    if depth > 64 || out.len() > 4096 {
        return None;
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => out.push_str(std::str::from_utf8(&lit.0).ok()?),
        HirKind::Class(Class::Unicode(u)) => out.push(u.ranges().first()?.start()),
        HirKind::Class(Class::Bytes(b)) => out.push(char::from(b.ranges().first()?.start())),
        HirKind::Repetition(r) => {
            for _ in 0..r.min.min(256) {
                shortest(&r.sub, out, depth + 1)?;
            }
        }
        HirKind::Capture(cap) => shortest(&cap.sub, out, depth + 1)?,
        HirKind::Concat(items) => {
            for h in items {
                shortest(h, out, depth + 1)?;
            }
        }
        HirKind::Alternation(items) => shortest(items.first()?, out, depth + 1)?,
    }
    Some(())
}

fn number_lit(n: crate::ast::NumberLit) -> f64 {
    match n {
        crate::ast::NumberLit::Int(i) => i as f64,
        crate::ast::NumberLit::Float(f) => f,
    }
}

fn first_allowed(c: &Constraints) -> Option<serde_json::Value> {
    let v = c.allowed.as_ref()?.first()?;
    Some(match v {
        Value::Str(s) => serde_json::json!(s),
        Value::Int(i) => serde_json::json!(i),
        Value::Bool(b) => serde_json::json!(b),
        Value::Float(f) => serde_json::json!(f),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_are_exact_fractions() {
        assert_eq!(
            real_const(0.5),
            Some(Term::Real("4503599627370496".into(), "9007199254740992".into()))
        );
        assert_eq!(
            real_const(3.0),
            Some(Term::Real("6755399441055744".into(), "2251799813685248".into()))
        );
        assert_eq!(
            real_const(-2.0),
            Some(Term::Real("-4503599627370496".into(), "2251799813685248".into()))
        );
        assert_eq!(real_const(f64::NAN), None);
    }

    fn model(text: &str) -> (Logic, Vec<ActionModel>) {
        let p = Policy::from_yaml_str(text).unwrap();
        let mut logic = Logic::new();
        let m = lower(&p, &mut logic);
        (logic, m)
    }

    #[test]
    fn conditions_lower_exactly_or_to_shared_unknowns() {
        let (logic, m) = model(
            r#"
contracts:
  actions:
    refund:
      input:
        amount: {type: int, max: 100000}
        note: {type: string, optional: true}
rules:
  - {id: a, action: refund, when: "input.amount > 200000", effect: block}
  - {id: b, action: refund, when: "has(input.note) && input.note.matches('x+') && input.amount > 1", effect: block}
  - {id: c, action: refund, when: "has(input.note) && input.note.matches('x+')", effect: allow}
"#,
        );
        let r = &m[0].rules;
        assert!(r[0].exact && !r[1].exact && !r[2].exact);
        assert_eq!(logic.vars.iter().filter(|v| v.name.starts_with("?Bool:")).count(), 1);
        assert!(logic.find("input.amount:Int").is_some());
        assert_ne!(m[0].contract, Term::Bool(true));
    }
}
