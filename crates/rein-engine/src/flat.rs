//! The flat form of an action's conditions: what a decision runs.
//!
//! The tree IR ([`crate::ir::Node`]) is what the checker builds, what
//! `explain` traces and what the cache stores; every node is a separate
//! heap allocation, large (kind, span, type), and an action's rules are
//! scattered over the heap in load order. A [`Program`] holds all the
//! rules of one action and phase in one `Vec` of small fixed-size
//! instructions with their operands inline (which root and slot a field is
//! read from, int/float/bool constants), strings in the program's own
//! table: a decision touches memory proportional to its action's rules,
//! not to the policy.
//!
//! Exact by construction: the flat evaluator computes, per rule, true,
//! false or not known ([`Tri`]). It answers only where the tree evaluator's
//! answer is certain: both operands present and read in place, and `&&` /
//! `||` absorbing as CEL's do (`false && x` is false and `true || x` true
//! whatever `x` is, an error included: Kleene's three-valued logic, which
//! is what [`crate::eval`]'s error absorption computes). An absent field,
//! a root the request lacks, an operand of an unexpected kind where the
//! answer depends on it, or an operation outside the flat subset (regex,
//! glob, arithmetic, comprehension, calls other than the string tests,
//! session functions, ...) is not known, and the tree evaluator
//! ([`crate::eval::eval_condition`]) decides that rule, error texts
//! included. A rule whose whole condition is outside the subset is marked
//! tree-only when the program is built.
//!
//! Programs are built from the tree IR when a policy is compiled and when
//! one is read from the cache (they are not stored in it).

use crate::ast::{Combining, Effect, Phase};
use crate::decision::Matched;
use crate::eval::{compare, eval_condition, Env, EvalError, Frame, Tracer};
use crate::ir::{ActionIr, Builtin, CmpOp, CompiledPolicy, CompiledRule, Node, NodeKind, Root, RuleInfo, Step};
use crate::value::Value;

/// A three-valued outcome: the tree evaluator's boolean where it is
/// certain, [`Tri::Unknown`] where only the tree evaluator can tell (it may
/// be true, false or an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tri {
    False,
    True,
    Unknown,
}

impl Tri {
    #[inline(always)]
    fn of(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }

    #[inline(always)]
    fn not(self) -> Tri {
        match self {
            Tri::False => Tri::True,
            Tri::True => Tri::False,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

/// Where a value is read from: a root of the request, the action's `tool:`
/// facts, or the action's name.
const SRC_INPUT: u8 = 0;
const SRC_OUTPUT: u8 = 1;
const SRC_ACTOR: u8 = 2;
const SRC_SNAPSHOT: u8 = 3;
const SRC_TOOL: u8 = 4;
const SRC_ACTION: u8 = 5;

/// How a rule is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No condition: it always holds.
    Always,
    /// Its condition is in the program after the header.
    Flat,
    /// Its condition is wholly outside the flat subset: the tree decides.
    Tree,
}

/// The string tests evaluated in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrTest {
    StartsWith,
    EndsWith,
    Contains,
}

/// One instruction. A read is `src` (see `SRC_*`), `depth` field steps and
/// `at`: the slot when `depth` is 1, else where the steps start in
/// [`Program::paths`] (`depth` 0: the action's name). Composite nodes are
/// followed by their operands (pre-order); `end` is the index just past
/// the node's last operand, where evaluation resumes when it
/// short-circuits.
#[derive(Clone, Copy, Debug)]
enum Insn {
    /// A rule: `pos` is its position in the action's rules of this phase,
    /// `rule` its index in [`CompiledPolicy::rules`]; its condition (for
    /// [`Mode::Flat`]) runs up to `end`, an implicit `&&` of the nodes
    /// there.
    Rule {
        mode: Mode,
        effect: Effect,
        pos: u32,
        rule: u32,
        end: u32,
    },
    /// `&&` of the nodes up to `end`.
    And { end: u32 },
    /// `||` of the nodes up to `end`.
    Or { end: u32 },
    /// `!` of the next node.
    Not,
    /// A boolean constant.
    Const(bool),
    /// A subexpression outside the flat subset.
    Unknown,
    /// A boolean field used as a condition.
    Truthy { src: u8, depth: u8, at: u32 },
    /// A field compared with an int constant (the field on the left).
    Int {
        op: CmpOp,
        src: u8,
        depth: u8,
        at: u32,
        k: i64,
    },
    /// A field compared with a float constant.
    Float {
        op: CmpOp,
        src: u8,
        depth: u8,
        at: u32,
        k: f64,
    },
    /// A field compared with a boolean constant.
    Bool {
        op: CmpOp,
        src: u8,
        depth: u8,
        at: u32,
        k: bool,
    },
    /// A field compared with a string constant: `len` bytes at `off` in
    /// [`Program::strings`].
    Str {
        op: CmpOp,
        src: u8,
        depth: u8,
        at: u32,
        off: u32,
        len: u32,
    },
    /// `field.startsWith(k)` and friends, `k` a string constant.
    StrTest {
        test: StrTest,
        src: u8,
        depth: u8,
        at: u32,
        off: u32,
        len: u32,
    },
    /// `field in ["a", ...]`: `count` members from `first` in
    /// [`Program::members`], sorted.
    InSet {
        src: u8,
        depth: u8,
        at: u32,
        first: u32,
        count: u32,
    },
    /// `has(...)`: from the root `src`, `count` steps from `first` in
    /// [`Program::steps`].
    Has { src: u8, first: u32, count: u32 },
    /// Any other comparison of two operands read in place: indices into
    /// [`Program::operands`].
    Cmp { op: CmpOp, a: u32, b: u32 },
}

// Small enough that a rule of three comparisons spans one cache line.
const _: () = assert!(std::mem::size_of::<Insn>() <= 16);

/// An operand of the general comparison.
#[derive(Debug)]
enum Operand {
    Read { src: u8, depth: u8, at: u32 },
    Const(Value),
}

/// One step of `has(...)`.
#[derive(Debug)]
enum HasStep {
    Field(u32),
    /// A map key: `len` bytes at `off` in [`Program::strings`].
    Key {
        off: u32,
        len: u32,
    },
}

/// The rules of one action and phase, flat. Built by [`Program::build`].
/// One cache line (the code and tables are elsewhere): what a decision
/// reads of its action is this and little else.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Program {
    /// The rules, each a header and its condition, in rule order.
    code: Vec<Insn>,
    /// How many rules `code` holds (checked against the tree's).
    rules: u32,
    /// The string constants, one after the other.
    strings: String,
    /// What fewer rules read, boxed (`None` when all empty) so that a
    /// program stays small: an action holds four, and a decision reads
    /// one among its action's other fields, fewer cache lines apart.
    tables: Option<Box<Tables>>,
    /// [`Program::every`] may decide the action's rules of this phase
    /// alone: they neither read nor write state, the action has no shadow
    /// rules for the phase, the policy combines natively, and this program
    /// covers the rules. Set by [`build_all`] (the policy is not changed
    /// after), false for any other program.
    pub fast: bool,
}

/// The tables of a [`Program`] besides its code and strings.
#[derive(Debug, Default)]
struct Tables {
    /// Field positions of paths deeper than one step.
    paths: Vec<u32>,
    /// Members of literal string sets: ranges of `strings`.
    members: Vec<(u32, u32)>,
    /// Steps of `has(...)`.
    steps: Vec<HasStep>,
    /// Operands of general comparisons.
    operands: Vec<Operand>,
}

impl Tables {
    const EMPTY: Tables = Tables {
        paths: Vec::new(),
        members: Vec::new(),
        steps: Vec::new(),
        operands: Vec::new(),
    };

    fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.members.is_empty() && self.steps.is_empty() && self.operands.is_empty()
    }
}

static NO_TABLES: Tables = Tables::EMPTY;

/// The flat programs of one action, one per rule list.
#[derive(Debug, Default)]
pub(crate) struct ActionPrograms {
    pub before: Program,
    pub after: Program,
    pub shadow_before: Program,
    pub shadow_after: Program,
}

/// Builds the flat programs of every action of `policy` (after it was
/// compiled, or read from the cache).
pub(crate) fn build_all(policy: &mut CompiledPolicy) {
    let infos = &policy.rules;
    let native = policy.combining == Combining::DenyOverrides;
    for action in &mut policy.actions {
        action.flat = build_action(action, infos, native);
    }
}

fn build_action(action: &ActionIr, infos: &[RuleInfo], native: bool) -> ActionPrograms {
    let program = |phase: Phase| {
        let rules = action.rules(phase);
        let mut p = Program::build(rules, infos);
        let needs = action.state(phase);
        p.fast = native && !needs.reads && !needs.writes && action.shadow_rules(phase).is_empty() && p.covers(rules);
        p
    };
    ActionPrograms {
        before: program(Phase::Before),
        after: program(Phase::After),
        shadow_before: Program::build(&action.shadow_before, infos),
        shadow_after: Program::build(&action.shadow_after, infos),
    }
}

impl Program {
    /// The flat program of `rules` (one action's, one phase), their effects
    /// read from `infos`.
    pub fn build(rules: &[CompiledRule], infos: &[RuleInfo]) -> Program {
        let mut p = Program::default();
        for (pos, rule) in rules.iter().enumerate() {
            let effect = infos.get(rule.rule as usize).map_or(Effect::Block, |r| r.effect);
            let header = p.code.len();
            p.code.push(Insn::Unknown);
            let mode = match &rule.cond {
                None => Mode::Always,
                Some(cond) => {
                    p.conjuncts(cond);
                    // A condition with no known part is the tree's alone.
                    if p.code[header + 1..].iter().all(|i| matches!(i, Insn::Unknown)) {
                        p.code.truncate(header + 1);
                        Mode::Tree
                    } else {
                        Mode::Flat
                    }
                }
            };
            p.code[header] = Insn::Rule {
                mode,
                effect,
                pos: u32::try_from(pos).unwrap_or(u32::MAX),
                rule: rule.rule,
                end: p.here(),
            };
        }
        // Offsets are u32: a table past that would be cut short and read
        // the wrong entry. Such a program (gigabytes of one action's
        // constants, far past any policy the loader reads) is not used: an
        // empty one covers no rule, so the tree decides them all.
        let sizes = [
            rules.len(),
            p.code.len(),
            p.t().paths.len(),
            p.strings.len(),
            p.t().members.len(),
            p.t().steps.len(),
            p.t().operands.len(),
        ];
        if sizes.iter().any(|&n| u32::try_from(n).is_err()) {
            return Program::default();
        }
        p.rules = u32::try_from(rules.len()).unwrap_or(u32::MAX);
        if p.tables.as_deref().is_some_and(Tables::is_empty) {
            p.tables = None;
        }
        p
    }

    /// True when this program was built from `rules` (the same count):
    /// otherwise the caller uses the tree alone.
    #[inline]
    pub fn covers(&self, rules: &[CompiledRule]) -> bool {
        self.rules as usize == rules.len()
    }

    /// The tables, empty when there are none.
    #[inline(always)]
    fn t(&self) -> &Tables {
        self.tables.as_deref().unwrap_or(&NO_TABLES)
    }

    /// The tables, to add to while building.
    fn tm(&mut self) -> &mut Tables {
        self.tables.get_or_insert_with(Box::default)
    }

    fn here(&self) -> u32 {
        u32::try_from(self.code.len()).unwrap_or(u32::MAX)
    }

    /// Emits the operands of an `&&` chain one after the other (the caller
    /// has emitted the `And` or the rule header that joins them).
    fn conjuncts(&mut self, node: &Node) {
        match &node.kind {
            NodeKind::And(a, b) => {
                self.conjuncts(a);
                self.conjuncts(b);
            }
            _ => self.node(node),
        }
    }

    fn disjuncts(&mut self, node: &Node) {
        match &node.kind {
            NodeKind::Or(a, b) => {
                self.disjuncts(a);
                self.disjuncts(b);
            }
            _ => self.node(node),
        }
    }

    /// Emits one node of boolean type (and its operands).
    fn node(&mut self, node: &Node) {
        match &node.kind {
            NodeKind::And(..) | NodeKind::Or(..) => {
                let at = self.code.len();
                self.code.push(Insn::Unknown);
                let is_or = matches!(node.kind, NodeKind::Or(..));
                if is_or {
                    self.disjuncts(node);
                } else {
                    self.conjuncts(node);
                }
                let end = self.here();
                self.code[at] = if is_or { Insn::Or { end } } else { Insn::And { end } };
            }
            NodeKind::Not(x) => {
                self.code.push(Insn::Not);
                self.node(x);
            }
            NodeKind::Const(Value::Bool(b)) => self.code.push(Insn::Const(*b)),
            NodeKind::Cmp { op, lhs, rhs } => {
                let insn = self.comparison(*op, lhs, rhs);
                self.code.push(insn);
            }
            NodeKind::InStrings { elem, set } => {
                let insn = match self.read_of(elem) {
                    Some((src, depth, at)) => {
                        let mut sorted: Vec<&String> = set.iter().collect();
                        sorted.sort();
                        let first = u32::try_from(self.tm().members.len()).unwrap_or(u32::MAX);
                        for s in sorted {
                            let range = self.string(s);
                            self.tm().members.push(range);
                        }
                        let count = u32::try_from(set.len()).unwrap_or(u32::MAX);
                        Insn::InSet {
                            src,
                            depth,
                            at,
                            first,
                            count,
                        }
                    }
                    None => Insn::Unknown,
                };
                self.code.push(insn);
            }
            NodeKind::Has { base, steps } => {
                let insn = match &base.kind {
                    NodeKind::Path { root, path } => {
                        let first = u32::try_from(self.tm().steps.len()).unwrap_or(u32::MAX);
                        for idx in path.iter() {
                            self.tm().steps.push(HasStep::Field(*idx));
                        }
                        for step in steps.iter() {
                            let s = match step {
                                Step::Field(i) => HasStep::Field(*i),
                                Step::Key(k) => {
                                    let (off, len) = self.string(k);
                                    HasStep::Key { off, len }
                                }
                            };
                            self.tm().steps.push(s);
                        }
                        let count = u32::try_from(path.len() + steps.len()).unwrap_or(u32::MAX);
                        Insn::Has {
                            src: source(*root),
                            first,
                            count,
                        }
                    }
                    _ => Insn::Unknown,
                };
                self.code.push(insn);
            }
            NodeKind::Call { func, args } => {
                let test = match func {
                    Builtin::StartsWith => Some(StrTest::StartsWith),
                    Builtin::EndsWith => Some(StrTest::EndsWith),
                    Builtin::Contains => Some(StrTest::Contains),
                    _ => None,
                };
                let insn = match (test, &args[..]) {
                    (Some(test), [s, k]) => match (self.read_of(s), &k.kind) {
                        (Some((src, depth, at)), NodeKind::Const(Value::Str(k))) => {
                            let (off, len) = self.string(k);
                            Insn::StrTest {
                                test,
                                src,
                                depth,
                                at,
                                off,
                                len,
                            }
                        }
                        _ => Insn::Unknown,
                    },
                    _ => Insn::Unknown,
                };
                self.code.push(insn);
            }
            _ => match self.read_of(node) {
                Some((src, depth, at)) => self.code.push(Insn::Truthy { src, depth, at }),
                None => self.code.push(Insn::Unknown),
            },
        }
    }

    /// A comparison: specialised when one side is a field and the other a
    /// scalar constant, general when both are read in place, not known
    /// otherwise.
    fn comparison(&mut self, op: CmpOp, lhs: &Node, rhs: &Node) -> Insn {
        let scalar = |n: &Node| match &n.kind {
            NodeKind::Const(k @ (Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Str(_))) => Some(k.clone()),
            _ => None,
        };
        let (read, konst, op) = match (self.read_of(lhs), scalar(lhs), self.read_of(rhs), scalar(rhs)) {
            (Some(r), _, _, Some(k)) => (r, k, op),
            // `k < x` is `x > k`: comparing scalars is antisymmetric.
            (_, Some(k), Some(r), _) => (r, k, flip(op)),
            _ => {
                let (Some(a), Some(b)) = (self.operand_of(lhs), self.operand_of(rhs)) else {
                    return Insn::Unknown;
                };
                self.tm().operands.push(a);
                self.tm().operands.push(b);
                let n = u32::try_from(self.tm().operands.len()).unwrap_or(u32::MAX);
                return Insn::Cmp {
                    op,
                    a: n.saturating_sub(2),
                    b: n.saturating_sub(1),
                };
            }
        };
        let (src, depth, at) = read;
        match konst {
            Value::Int(k) => Insn::Int { op, src, depth, at, k },
            Value::Float(k) => Insn::Float { op, src, depth, at, k },
            Value::Bool(k) => Insn::Bool { op, src, depth, at, k },
            Value::Str(k) => {
                let (off, len) = self.string(&k);
                Insn::Str {
                    op,
                    src,
                    depth,
                    at,
                    off,
                    len,
                }
            }
            _ => Insn::Unknown,
        }
    }

    /// An operand read in place, or a constant.
    fn operand_of(&mut self, node: &Node) -> Option<Operand> {
        if let NodeKind::Const(v) = &node.kind {
            return Some(Operand::Const(v.clone()));
        }
        self.read_of(node)
            .map(|(src, depth, at)| Operand::Read { src, depth, at })
    }

    /// A value read in place: a path from a root through object fields, or
    /// the action's name.
    fn read_of(&mut self, node: &Node) -> Option<(u8, u8, u32)> {
        match &node.kind {
            NodeKind::ActionName => Some((SRC_ACTION, 0, 0)),
            NodeKind::Path { root, path } => {
                let depth = u8::try_from(path.len()).ok().filter(|d| *d > 0)?;
                if depth == 1 {
                    return Some((source(*root), 1, path[0]));
                }
                let at = u32::try_from(self.tm().paths.len()).ok()?;
                self.tm().paths.extend_from_slice(path);
                Some((source(*root), depth, at))
            }
            _ => None,
        }
    }

    /// Appends `s` to the string table.
    fn string(&mut self, s: &str) -> (u32, u32) {
        let off = self.strings.len();
        self.strings.push_str(s);
        (
            u32::try_from(off).unwrap_or(u32::MAX),
            u32::try_from(s.len()).unwrap_or(u32::MAX),
        )
    }
}

fn source(root: Root) -> u8 {
    match root {
        Root::Input => SRC_INPUT,
        Root::Output => SRC_OUTPUT,
        Root::Actor => SRC_ACTOR,
        Root::Snapshot => SRC_SNAPSHOT,
        Root::Tool => SRC_TOOL,
    }
}

/// The operator with its operands swapped.
fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Eq => CmpOp::Eq,
        CmpOp::Ne => CmpOp::Ne,
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
    }
}

/// `a op b` for two totally ordered values.
#[inline(always)]
fn ordered<T: Ord + ?Sized>(op: CmpOp, a: &T, b: &T) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// One rule as the flat program saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlatOutcome {
    /// Its position in the action's rules of this phase.
    pub pos: u32,
    /// Its index in [`CompiledPolicy::rules`].
    pub rule: u32,
    /// Its effect.
    pub effect: Effect,
    /// Its outcome, where the flat program knows it.
    pub outcome: Tri,
}

/// The roots a program reads, by `SRC_*`, gathered once per decision so
/// that a read is an index rather than a match on the source (`None`: a
/// root the request lacks).
pub(crate) struct Roots<'e> {
    fields: [Option<&'e [Value]>; 5],
    action: &'e Value,
}

impl<'e> Roots<'e> {
    #[inline(always)]
    fn of(env: &Env<'e>) -> Roots<'e> {
        // In `SRC_*` order.
        Roots {
            fields: [
                Some(env.input),
                env.output,
                Some(env.actor),
                Some(env.snapshot),
                Some(env.tool),
            ],
            action: env.action,
        }
    }

    /// The fields of a source (`None` for the action's name, a root the
    /// request lacks and a source that does not exist).
    #[inline(always)]
    fn fields(&self, src: u8) -> Option<&'e [Value]> {
        self.fields.get(usize::from(src)).copied().flatten()
    }
}

/// The rules of a program, each with its outcome: see [`Program::run`].
pub(crate) struct Run<'p, 'e> {
    program: &'p Program,
    roots: Roots<'e>,
    pc: usize,
}

impl Iterator for Run<'_, '_> {
    type Item = FlatOutcome;

    #[inline(always)]
    fn next(&mut self) -> Option<FlatOutcome> {
        let Insn::Rule {
            mode,
            effect,
            pos,
            rule,
            end,
        } = *self.program.code.get(self.pc)?
        else {
            // Every rule starts with its header; anything else is a bug,
            // and the tree must not be skipped: stop, so the caller's
            // count check falls back (see `Program::covers`).
            return None;
        };
        let start = self.pc + 1;
        self.pc = end as usize;
        let outcome = match mode {
            Mode::Always => Tri::True,
            Mode::Tree => Tri::Unknown,
            Mode::Flat => self.program.all(start, end as usize, &self.roots),
        };
        Some(FlatOutcome {
            pos,
            rule,
            effect,
            outcome,
        })
    }
}

impl Program {
    /// Runs every rule in order.
    #[inline]
    pub fn run<'p, 'e>(&'p self, env: &Env<'e>) -> Run<'p, 'e> {
        Run {
            program: self,
            roots: Roots::of(env),
            pc: 0,
        }
    }

    /// `&&` (`OR` false) or `||` (`OR` true) of the nodes from `pc` to
    /// `end`, in Kleene's logic: the decisive value (false for `&&`, true
    /// for `||`) wins whatever else is unknown, as `eval` absorbs errors.
    #[inline(always)]
    fn junction<const OR: bool>(&self, mut pc: usize, end: usize, env: &Roots<'_>) -> Tri {
        let decisive = Tri::of(OR);
        let mut unknown = false;
        while pc < end {
            let (t, next) = self.eval(pc, env);
            if t == decisive {
                return decisive;
            }
            unknown |= t == Tri::Unknown;
            // Always forward, whatever the code says: no loop can hang.
            pc = next.max(pc + 1);
        }
        if unknown {
            Tri::Unknown
        } else {
            decisive.not()
        }
    }

    /// `&&` of the nodes from `pc` to `end`: a rule's top level, inlined.
    #[inline(always)]
    fn all(&self, pc: usize, end: usize, env: &Roots<'_>) -> Tri {
        self.junction::<false>(pc, end, env)
    }

    /// `&&` below the top of a condition, not inlined.
    #[inline(never)]
    fn all_nested(&self, pc: usize, end: usize, env: &Roots<'_>) -> Tri {
        self.junction::<false>(pc, end, env)
    }

    /// `||` of the nodes from `pc` to `end`.
    #[inline(never)]
    fn any(&self, pc: usize, end: usize, env: &Roots<'_>) -> Tri {
        self.junction::<true>(pc, end, env)
    }

    /// The node at `pc`, and where the next node starts. The comparisons
    /// policies are mostly made of (a field with an int or a string) are
    /// here; every other node is [`Program::eval_other`], out of line, so
    /// that this stays small enough to inline into the rule loop.
    #[inline(always)]
    fn eval(&self, pc: usize, env: &Roots<'_>) -> (Tri, usize) {
        let Some(insn) = self.code.get(pc) else {
            return (Tri::Unknown, usize::MAX);
        };
        let t = match *insn {
            Insn::Int { op, src, depth, at, k } => match self.read(env, src, depth, at) {
                Some(Value::Int(x)) => Tri::of(ordered(op, x, &k)),
                Some(v) => Tri::of(compare(op, v, &Value::Int(k))),
                None => Tri::Unknown,
            },
            Insn::Str {
                op,
                src,
                depth,
                at,
                off,
                len,
            } => match (self.read(env, src, depth, at), self.str_bytes(off, len)) {
                // Strings order as their UTF-8 bytes do.
                (Some(Value::Str(x)), Some(k)) => Tri::of(ordered(op, x.as_bytes(), k)),
                // Another kind never equals nor orders with a string.
                (Some(_), Some(_)) => Tri::of(op == CmpOp::Ne),
                _ => Tri::Unknown,
            },
            Insn::And { end } => return (self.all_nested(pc + 1, end as usize, env), end as usize),
            _ => return self.eval_other(pc, env),
        };
        (t, pc + 1)
    }

    /// [`Program::eval`] of every other node.
    #[inline(never)]
    fn eval_other(&self, pc: usize, env: &Roots<'_>) -> (Tri, usize) {
        let Some(insn) = self.code.get(pc) else {
            return (Tri::Unknown, usize::MAX);
        };
        let t = match *insn {
            // Not reached from `eval`; here for completeness.
            Insn::Int { .. } | Insn::Str { .. } | Insn::And { .. } => return self.eval(pc, env),
            Insn::Or { end } => return (self.any(pc + 1, end as usize, env), end as usize),
            Insn::Not => {
                let (t, next) = self.eval_boxed(pc + 1, env);
                return (t.not(), next);
            }
            Insn::Const(b) => Tri::of(b),
            Insn::Unknown | Insn::Rule { .. } => Tri::Unknown,
            Insn::Truthy { src, depth, at } => match self.read(env, src, depth, at) {
                Some(Value::Bool(b)) => Tri::of(*b),
                _ => Tri::Unknown,
            },
            Insn::Float { op, src, depth, at, k } => match self.read(env, src, depth, at) {
                Some(v) => Tri::of(compare(op, v, &Value::Float(k))),
                None => Tri::Unknown,
            },
            Insn::Bool { op, src, depth, at, k } => match self.read(env, src, depth, at) {
                Some(v) => Tri::of(compare(op, v, &Value::Bool(k))),
                None => Tri::Unknown,
            },
            Insn::StrTest {
                test,
                src,
                depth,
                at,
                off,
                len,
            } => match (self.read(env, src, depth, at), self.str_at(off, len)) {
                (Some(Value::Str(x)), Some(k)) => Tri::of(match test {
                    StrTest::StartsWith => x.starts_with(k),
                    StrTest::EndsWith => x.ends_with(k),
                    StrTest::Contains => x.contains(k),
                }),
                // Not a string: the tree reports the error.
                _ => Tri::Unknown,
            },
            Insn::InSet {
                src,
                depth,
                at,
                first,
                count,
            } => match self.read(env, src, depth, at) {
                Some(Value::Str(x)) => self.in_set(x, first, count),
                Some(_) => Tri::False,
                None => Tri::Unknown,
            },
            Insn::Has { src, first, count } => self.has(env, src, first, count),
            Insn::Cmp { op, a, b } => match (self.operand(env, a), self.operand(env, b)) {
                (Some(a), Some(b)) => Tri::of(compare(op, a, b)),
                _ => Tri::Unknown,
            },
        };
        (t, pc + 1)
    }

    /// [`Program::eval`] not inlined: the operand of `!`, so that the
    /// recursion has a frame.
    #[inline(never)]
    fn eval_boxed(&self, pc: usize, env: &Roots<'_>) -> (Tri, usize) {
        self.eval(pc, env)
    }

    /// The value a read names, if present: `None` for an absent field, a
    /// missing root or a path through a value that is not an object (the
    /// tree evaluator's errors).
    #[inline(always)]
    fn read<'e>(&self, env: &Roots<'e>, src: u8, depth: u8, at: u32) -> Option<&'e Value> {
        let v = if depth == 1 {
            env.fields(src)?.get(at as usize)?
        } else {
            self.read_deep(env, src, depth, at)?
        };
        match v {
            Value::Absent => None,
            v => Some(v),
        }
    }

    /// [`Program::read`] of the action's name (`depth` 0) or of a path of
    /// two steps or more.
    #[inline(never)]
    fn read_deep<'e>(&self, env: &Roots<'e>, src: u8, depth: u8, at: u32) -> Option<&'e Value> {
        if src == SRC_ACTION {
            return Some(env.action);
        }
        let mut fields = env.fields(src)?;
        let path = self.t().paths.get(at as usize..at as usize + depth as usize)?;
        let (last, init) = path.split_last()?;
        for idx in init {
            match fields.get(*idx as usize)? {
                Value::Object(inner) => fields = inner,
                _ => return None,
            }
        }
        fields.get(*last as usize)
    }

    fn operand<'a>(&'a self, env: &Roots<'a>, i: u32) -> Option<&'a Value> {
        match self.t().operands.get(i as usize)? {
            Operand::Const(v) => Some(v),
            Operand::Read { src, depth, at } => self.read(env, *src, *depth, *at),
        }
    }

    #[inline(always)]
    fn str_at(&self, off: u32, len: u32) -> Option<&str> {
        self.strings.get(off as usize..off as usize + len as usize)
    }

    /// [`Program::str_at`] as bytes, without its checks of character
    /// boundaries: the table holds whole strings, one after the other, so
    /// a range the builder made is one string's bytes.
    #[inline(always)]
    fn str_bytes(&self, off: u32, len: u32) -> Option<&[u8]> {
        self.strings.as_bytes().get(off as usize..off as usize + len as usize)
    }

    /// Membership in a sorted set of strings.
    fn in_set(&self, x: &str, first: u32, count: u32) -> Tri {
        let Some(members) = self.t().members.get(first as usize..first as usize + count as usize) else {
            return Tri::Unknown;
        };
        let found = members.binary_search_by(|&(off, len)| self.str_at(off, len).unwrap_or_default().cmp(x));
        Tri::of(found.is_ok())
    }

    /// `has(...)`: false at the first absent field or missing key, as the
    /// tree evaluator walks it.
    fn has(&self, env: &Roots<'_>, src: u8, first: u32, count: u32) -> Tri {
        let (Some(fields), Some(steps)) = (
            env.fields(src),
            self.t().steps.get(first as usize..first as usize + count as usize),
        ) else {
            return Tri::Unknown;
        };
        let Some((head, rest)) = steps.split_first() else {
            return Tri::True;
        };
        let HasStep::Field(i) = head else {
            return Tri::False;
        };
        let mut cur = match fields.get(*i as usize) {
            Some(Value::Absent) | None => return Tri::False,
            Some(v) => v,
        };
        for step in rest {
            let next = match (step, cur) {
                (HasStep::Field(i), Value::Object(fields)) => fields.get(*i as usize),
                (HasStep::Key { off, len }, Value::Map(m)) => match self.str_at(*off, *len) {
                    Some(k) => m.get(k),
                    None => return Tri::Unknown,
                },
                _ => None,
            };
            match next {
                Some(Value::Absent) | None => return Tri::False,
                Some(v) => cur = v,
            }
        }
        Tri::True
    }
}

/// What [`Program::every`] found: every rule decided by the flat program.
pub(crate) struct Every {
    /// The rules that held, by index in [`CompiledPolicy::rules`], in rule
    /// order.
    pub matched: Matched,
    /// The strongest effect among them.
    pub effect: Option<Effect>,
}

// A program is one cache line.
const _: () = assert!(std::mem::size_of::<Program>() == 64);

impl Program {
    /// Native combining over the flat program alone: every rule of `rules`
    /// (the rules this program was built from) in order, the rules that
    /// held and their strongest effect. `None` as soon as a rule is not
    /// known to the flat program (its condition is the tree's, or the
    /// answer depends on what only the tree can tell: it may be an error)
    /// or the program is out of step with `rules`: the caller then decides
    /// with [`Program::outcomes`] and the tree evaluator, from the start.
    /// The decision's fast path: one loop over the code, no per-rule
    /// bookkeeping besides the matches.
    ///
    /// Only for a program marked [`Program::fast`], which covers its rules
    /// (checked when it was built): the rules themselves are not read.
    #[inline]
    pub fn every(&self, env: &Env<'_>) -> Option<Every> {
        if !self.fast {
            return None;
        }
        let roots = Roots::of(env);
        let mut matched = Matched::new();
        let mut effect: Option<Effect> = None;
        let mut pc = 0;
        let mut pos: u32 = 0;
        while let Some(insn) = self.code.get(pc) {
            let Insn::Rule {
                mode,
                effect: rule_effect,
                pos: at,
                rule,
                end,
            } = *insn
            else {
                return None;
            };
            let end = end as usize;
            // In step with the rules, and always forward.
            if at != pos || end <= pc {
                return None;
            }
            let holds = match mode {
                Mode::Always => true,
                Mode::Tree => return None,
                Mode::Flat => match self.all(pc + 1, end, &roots) {
                    Tri::True => true,
                    Tri::False => false,
                    Tri::Unknown => return None,
                },
            };
            if holds {
                matched.push(rule);
                effect = Some(effect.map_or(rule_effect, |cur| cur.max(rule_effect)));
            }
            pc = end;
            pos += 1;
        }
        (pos == self.rules).then_some(Every { matched, effect })
    }
}

/// The rules of one action and phase, each with its effect and what the
/// flat program knows of its outcome (see [`Program::outcomes`]).
pub(crate) struct Outcomes<'a, 'e> {
    /// The flat run; `None` once it stopped or disagreed with the rules.
    flat: Option<Run<'a, 'e>>,
    rules: &'a [CompiledRule],
    infos: &'a [RuleInfo],
    /// The position of the next rule.
    next: usize,
}

/// One rule as [`Outcomes`] yields it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RuleOutcome {
    /// Its position in the action's rules of this phase.
    pub pos: usize,
    /// Its index in [`CompiledPolicy::rules`].
    pub rule: u32,
    /// Its effect.
    pub effect: Effect,
    /// What the flat program knows of its outcome; [`Tri::Unknown`] for a
    /// rule the tree evaluator must decide.
    pub known: Tri,
}

impl Program {
    /// Every rule of `rules` (the rules this program was built from), in
    /// order, with what the flat program knows of it; `flat` false (a
    /// traced decision, whose every step `explain` shows) leaves every
    /// rule to the tree evaluator.
    #[inline]
    pub fn outcomes<'a, 'e>(
        &'a self,
        rules: &'a [CompiledRule],
        infos: &'a [RuleInfo],
        env: &Env<'e>,
        flat: bool,
    ) -> Outcomes<'a, 'e> {
        Outcomes {
            flat: (flat && self.covers(rules)).then(|| self.run(env)),
            rules,
            infos,
            next: 0,
        }
    }
}

impl Iterator for Outcomes<'_, '_> {
    type Item = RuleOutcome;

    #[inline(always)]
    fn next(&mut self) -> Option<RuleOutcome> {
        let pos = self.next;
        if pos >= self.rules.len() {
            return None;
        }
        self.next = pos + 1;
        if let Some(run) = &mut self.flat {
            match run.next() {
                Some(o) if o.pos as usize == pos => {
                    return Some(RuleOutcome {
                        pos,
                        rule: o.rule,
                        effect: o.effect,
                        known: o.outcome,
                    })
                }
                // Out of step with the rules (a bug): the tree decides
                // this rule and every later one; none is skipped.
                _ => self.flat = None,
            }
        }
        let rule = self.rules.get(pos).map_or(u32::MAX, |r| r.rule);
        Some(RuleOutcome {
            pos,
            rule,
            effect: self.infos.get(rule as usize).map_or(Effect::Block, |r| r.effect),
            known: Tri::Unknown,
        })
    }
}

/// A rule's outcome: what the flat program knows, else the tree
/// evaluator's answer.
#[inline(always)]
pub(crate) fn resolve<T: Tracer>(
    o: &RuleOutcome,
    rules: &[CompiledRule],
    env: &Env<'_>,
    frame: &mut Frame<'_, T>,
) -> Result<bool, EvalError> {
    match o.known {
        Tri::True => Ok(true),
        Tri::False => Ok(false),
        Tri::Unknown => tree_outcome(rules.get(o.pos), env, frame),
    }
}

/// The tree evaluator's outcome of a rule (kept out of line: the flat
/// program decides most rules).
#[inline(never)]
fn tree_outcome<T: Tracer>(
    rule: Option<&CompiledRule>,
    env: &Env<'_>,
    frame: &mut Frame<'_, T>,
) -> Result<bool, EvalError> {
    match rule.map(|r| &r.cond) {
        Some(None) => Ok(true),
        Some(Some(cond)) => eval_condition(cond, env, frame),
        None => Err(EvalError("internal: a rule is missing".into())),
    }
}

#[cfg(test)]
mod tests {
    //! The flat evaluator against the tree evaluator on random conditions,
    //! well-typed or not, over random values of every kind (absent fields,
    //! missing roots, NaN, nested objects, maps): wherever the flat program
    //! answers, the tree evaluator answers the same.

    use super::*;
    use crate::eval::{eval_condition, EvalError, Frame, NoTrace};
    use crate::ir::{ArithOp, CompiledRule, Node, NodeKind, Root, Step};
    use crate::source::Span;
    use crate::types::Type;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A value of a request or a constant, before it becomes a [`Value`].
    #[derive(Clone, Debug)]
    enum V {
        Absent,
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(&'static str),
        List(Vec<i64>),
        Map(Vec<(&'static str, i64)>),
        Object(Vec<V>),
    }

    impl V {
        fn value(&self) -> Value {
            match self {
                V::Absent => Value::Absent,
                V::Null => Value::Null,
                V::Bool(b) => Value::Bool(*b),
                V::Int(i) => Value::Int(*i),
                V::Float(f) => Value::Float(*f),
                V::Str(s) => Value::Str((*s).into()),
                V::List(l) => Value::List(l.iter().map(|i| Value::Int(*i)).collect()),
                V::Map(m) => Value::Map(
                    m.iter()
                        .map(|(k, v)| ((*k).to_string(), Value::Int(*v)))
                        .collect::<BTreeMap<_, _>>(),
                ),
                V::Object(fields) => Value::Object(fields.iter().map(V::value).collect()),
            }
        }
    }

    /// An operand: a path, a constant or the action's name.
    #[derive(Clone, Debug)]
    enum O {
        Path(u8, Vec<u32>),
        Const(V),
        Action,
        /// Something outside the flat subset (`a + b`).
        Sum(Box<O>, Box<O>),
    }

    #[derive(Clone, Debug)]
    enum G {
        Const(bool),
        Cmp(u8, O, O),
        InSet(O, Vec<&'static str>),
        Has(u8, Vec<u32>, Option<&'static str>),
        StrTest(u8, O, &'static str),
        Truthy(O),
        Not(Box<G>),
        And(Box<G>, Box<G>),
        Or(Box<G>, Box<G>),
    }

    const STRS: [&str; 5] = ["", "a", "ab", "b", "act"];

    fn scalar() -> impl Strategy<Value = V> {
        prop_oneof![
            Just(V::Null),
            any::<bool>().prop_map(V::Bool),
            (-3i64..4).prop_map(V::Int),
            Just(V::Int(i64::MAX)),
            prop_oneof![
                (-3i64..4).prop_map(|i| i as f64 / 2.0),
                Just(f64::NAN),
                Just(9.007_199_254_740_993e15)
            ]
            .prop_map(V::Float),
            prop::sample::select(STRS.to_vec()).prop_map(V::Str),
            prop::collection::vec(-2i64..3, 0..3).prop_map(V::List),
            prop::collection::vec((prop::sample::select(vec!["k1", "k2"]), -2i64..3), 0..3).prop_map(V::Map),
        ]
    }

    fn value() -> impl Strategy<Value = V> {
        prop_oneof![
            2 => Just(V::Absent),
            6 => scalar(),
            2 => prop::collection::vec(prop_oneof![Just(V::Absent), scalar()], 0..4).prop_map(V::Object),
        ]
    }

    fn fields() -> impl Strategy<Value = Vec<V>> {
        prop::collection::vec(value(), 0..4)
    }

    fn operand() -> impl Strategy<Value = O> {
        let leaf = prop_oneof![
            4 => ((0u8..5), prop::collection::vec(0u32..4, 1..3)).prop_map(|(r, p)| O::Path(r, p)),
            3 => scalar().prop_map(O::Const),
            1 => Just(O::Action),
        ];
        leaf.prop_recursive(1, 3, 2, |inner| {
            (inner.clone(), inner).prop_map(|(a, b)| O::Sum(Box::new(a), Box::new(b)))
        })
    }

    fn condition() -> impl Strategy<Value = G> {
        let leaf = prop_oneof![
            1 => any::<bool>().prop_map(G::Const),
            6 => ((0u8..6), operand(), operand()).prop_map(|(op, a, b)| G::Cmp(op, a, b)),
            2 => (operand(), prop::collection::vec(prop::sample::select(STRS.to_vec()), 0..4))
                .prop_map(|(e, s)| G::InSet(e, s)),
            2 => ((0u8..5), prop::collection::vec(0u32..4, 0..3), prop::option::of(prop::sample::select(vec!["k1", "k3"])))
                .prop_map(|(r, p, k)| G::Has(r, p, k)),
            1 => ((0u8..3), operand(), prop::sample::select(STRS.to_vec())).prop_map(|(t, o, k)| G::StrTest(t, o, k)),
            1 => operand().prop_map(G::Truthy),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|g| G::Not(Box::new(g))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| G::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| G::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    fn node(kind: NodeKind) -> Node {
        Node {
            kind,
            span: Span::default(),
            ty: Type::Bool,
        }
    }

    fn root(r: u8) -> Root {
        [Root::Input, Root::Output, Root::Actor, Root::Snapshot, Root::Tool][r as usize % 5]
    }

    fn op(o: u8) -> CmpOp {
        [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge][o as usize % 6]
    }

    fn operand_node(o: &O) -> Node {
        node(match o {
            O::Path(r, p) => NodeKind::Path {
                root: root(*r),
                path: p.clone().into_boxed_slice(),
            },
            O::Const(v) => NodeKind::Const(v.value()),
            O::Action => NodeKind::ActionName,
            O::Sum(a, b) => NodeKind::Arith {
                op: ArithOp::Add,
                lhs: Box::new(operand_node(a)),
                rhs: Box::new(operand_node(b)),
            },
        })
    }

    fn tree(g: &G) -> Node {
        node(match g {
            G::Const(b) => NodeKind::Const(Value::Bool(*b)),
            G::Cmp(o, a, b) => NodeKind::Cmp {
                op: op(*o),
                lhs: Box::new(operand_node(a)),
                rhs: Box::new(operand_node(b)),
            },
            G::InSet(e, set) => NodeKind::InStrings {
                elem: Box::new(operand_node(e)),
                set: set.iter().map(|s| (*s).to_string()).collect(),
            },
            G::Has(r, path, key) => {
                // The last path step is `has`'s own step, as the checker
                // splits it; a key step reads a map.
                let (base, mut steps): (Vec<u32>, Vec<Step>) = match path.split_last() {
                    Some((last, init)) => (init.to_vec(), vec![Step::Field(*last)]),
                    None => (Vec::new(), Vec::new()),
                };
                steps.extend(key.map(|k| Step::Key(k.to_string())));
                NodeKind::Has {
                    base: Box::new(node(NodeKind::Path {
                        root: root(*r),
                        path: base.into_boxed_slice(),
                    })),
                    steps: steps.into_boxed_slice(),
                }
            }
            G::StrTest(t, o, k) => NodeKind::Call {
                func: [Builtin::StartsWith, Builtin::EndsWith, Builtin::Contains][*t as usize % 3],
                args: vec![operand_node(o), node(NodeKind::Const(Value::Str((*k).into())))].into_boxed_slice(),
            },
            G::Truthy(o) => return operand_node(o),
            G::Not(a) => NodeKind::Not(Box::new(tree(a))),
            G::And(a, b) => NodeKind::And(Box::new(tree(a)), Box::new(tree(b))),
            G::Or(a, b) => NodeKind::Or(Box::new(tree(a)), Box::new(tree(b))),
        })
    }

    struct Request {
        input: Vec<Value>,
        output: Option<Vec<Value>>,
        actor: Vec<Value>,
        snapshot: Vec<Value>,
        tool: Vec<Value>,
        action: Value,
        error: Option<Value>,
    }

    fn request() -> impl Strategy<Value = Parts> {
        (
            fields(),
            prop::option::of(fields()),
            fields(),
            fields(),
            fields(),
            prop::sample::select(STRS.to_vec()),
            any::<bool>(),
        )
    }

    type Parts = (Vec<V>, Option<Vec<V>>, Vec<V>, Vec<V>, Vec<V>, &'static str, bool);

    fn build((input, output, actor, snapshot, tool, action, error): &Parts) -> Request {
        let vals = |f: &Vec<V>| f.iter().map(V::value).collect::<Vec<_>>();
        Request {
            input: vals(input),
            output: output.as_ref().map(vals),
            actor: vals(actor),
            snapshot: vals(snapshot),
            tool: vals(tool),
            action: Value::Str((*action).into()),
            error: error.then(|| Value::Str("failed".into())),
        }
    }

    fn env(r: &Request) -> Env<'_> {
        Env {
            input: &r.input,
            output: r.output.as_deref(),
            actor: &r.actor,
            snapshot: &r.snapshot,
            tool: &r.tool,
            action: &r.action,
            now: None,
            error: r.error.as_ref(),
            state: None,
            session: None,
        }
    }

    /// The flat program's outcome of one condition, and the tree's.
    fn both(cond: Node, r: &Request) -> (Tri, Result<bool, EvalError>) {
        let rules = [CompiledRule {
            rule: 0,
            cond: Some(cond),
            limit: None,
        }];
        let program = Program::build(&rules, &[]);
        let env = env(r);
        let outcomes: Vec<RuleOutcome> = program.outcomes(&rules, &[], &env, true).collect();
        assert_eq!(outcomes.len(), 1);
        let Some(Some(cond)) = rules.first().map(|r| r.cond.as_ref()) else {
            unreachable!()
        };
        let mut frame = Frame {
            locals: Vec::new(),
            tracer: &mut NoTrace,
        };
        (outcomes[0].known, eval_condition(cond, &env, &mut frame))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

        #[test]
        fn flat_answers_only_what_the_tree_answers(g in condition(), requests in prop::collection::vec(request(), 1..4)) {
            for parts in &requests {
                let r = build(parts);
                let (flat, tree) = both(tree(&g), &r);
                match flat {
                    Tri::True => prop_assert_eq!(tree, Ok(true), "{:?}", g),
                    Tri::False => prop_assert_eq!(tree, Ok(false), "{:?}", g),
                    Tri::Unknown => {}
                }
            }
        }
    }

    fn info(effect: Effect) -> RuleInfo {
        RuleInfo {
            id: String::new(),
            effect,
            reason: None,
            approval: None,
            labels: Vec::new(),
            file: 0,
            when_span: None,
            limit: None,
            shadow: false,
        }
    }

    const EFFECTS: [Effect; 3] = [Effect::Allow, Effect::RequireApproval, Effect::Block];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1500, .. ProptestConfig::default() })]

        /// The decision's fast path: where [`Program::every`] answers, the
        /// tree evaluator answers every rule without an error, the rules
        /// that hold are those it lists, in order, and its effect is the
        /// strongest of theirs.
        #[test]
        fn every_answers_only_what_the_tree_answers(
            conds in prop::collection::vec((prop::option::weighted(0.9, condition()), 0usize..3), 1..7),
            parts in request(),
        ) {
            let infos: Vec<RuleInfo> = conds.iter().map(|(_, e)| info(EFFECTS[*e])).collect();
            let rules: Vec<CompiledRule> = conds
                .iter()
                .enumerate()
                .map(|(i, (g, _))| CompiledRule {
                    rule: u32::try_from(i).unwrap_or(u32::MAX),
                    cond: g.as_ref().map(tree),
                    limit: None,
                })
                .collect();
            let mut program = Program::build(&rules, &infos);
            let r = build(&parts);
            let env = env(&r);
            // Only a program marked fast is run.
            prop_assert!(program.every(&env).is_none());
            program.fast = true;
            let Some(every) = program.every(&env) else {
                return Ok(());
            };
            let mut frame = Frame {
                locals: Vec::new(),
                tracer: &mut NoTrace,
            };
            let mut matched = Vec::new();
            let mut effect: Option<Effect> = None;
            for (rule, info) in rules.iter().zip(&infos) {
                let holds = match &rule.cond {
                    None => Ok(true),
                    Some(c) => eval_condition(c, &env, &mut frame),
                };
                prop_assert!(holds.is_ok(), "{:?}: {:?}", rule.cond, holds);
                if holds == Ok(true) {
                    matched.push(rule.rule);
                    effect = Some(effect.map_or(info.effect, |e| e.max(info.effect)));
                }
            }
            prop_assert_eq!(every.matched.to_vec(), matched);
            prop_assert_eq!(every.effect, effect);
        }
    }

    /// The fast path decides the comparisons policies are made of, and
    /// leaves a program with a rule only the tree can decide to the tree.
    #[test]
    fn every_decides_common_rules_and_leaves_the_rest() {
        let r = build(&(
            vec![V::Int(3), V::Str("ab")],
            None,
            vec![],
            vec![],
            vec![],
            "act",
            false,
        ));
        let path = |p: &[u32]| O::Path(0, p.to_vec());
        let rule = |i: u32, g: &G| CompiledRule {
            rule: i,
            cond: Some(tree(g)),
            limit: None,
        };
        let holds = G::Cmp(4, path(&[0]), O::Const(V::Int(2)));
        let fails = G::Cmp(0, path(&[1]), O::Const(V::Str("b")));
        let infos = [info(Effect::Allow), info(Effect::Block), info(Effect::RequireApproval)];
        let rules = [rule(0, &holds), rule(1, &fails), rule(2, &holds)];
        let mut program = Program::build(&rules, &infos);
        program.fast = true;
        let env = env(&r);
        let every = program.every(&env).expect("decided flat");
        assert_eq!(every.matched.to_vec(), vec![0, 2]);
        assert_eq!(every.effect, Some(Effect::RequireApproval));
        // A sum is the tree's: the whole decision goes to the slow path.
        let sum = G::Cmp(
            0,
            O::Sum(Box::new(path(&[0])), Box::new(path(&[0]))),
            O::Const(V::Int(6)),
        );
        let rules = [rule(0, &holds), rule(1, &sum)];
        let mut program = Program::build(&rules, &infos);
        program.fast = true;
        assert!(program.every(&env).is_none());
    }

    /// The subset is not empty in practice: the comparisons policies are
    /// made of are decided flat, whatever they hold.
    #[test]
    fn common_conditions_are_decided_flat() {
        let r = build(&(
            vec![
                V::Int(3),
                V::Str("ab"),
                V::Bool(true),
                V::Object(vec![V::Float(1.5), V::Absent]),
            ],
            None,
            vec![V::Str("a")],
            vec![],
            vec![],
            "act",
            false,
        ));
        let path = |r: u8, p: &[u32]| O::Path(r, p.to_vec());
        let cases = [
            G::Cmp(4, path(0, &[0]), O::Const(V::Int(2))),
            G::Cmp(2, O::Const(V::Int(2)), path(0, &[0])),
            G::Cmp(0, path(0, &[1]), O::Const(V::Str("ab"))),
            G::Cmp(1, path(2, &[0]), O::Const(V::Str("admin"))),
            G::Cmp(3, path(0, &[3, 0]), O::Const(V::Float(2.0))),
            G::Cmp(0, O::Action, O::Const(V::Str("act"))),
            G::Cmp(0, path(0, &[0]), path(0, &[0])),
            G::Truthy(path(0, &[2])),
            G::InSet(path(0, &[1]), vec!["a", "ab"]),
            G::Has(0, vec![3, 0], None),
            G::StrTest(0, path(0, &[1]), "a"),
            G::Not(Box::new(G::Has(0, vec![3, 1], None))),
            // Absorbed: `false && x` whatever `x` is.
            G::And(
                Box::new(G::Cmp(0, path(0, &[0]), O::Const(V::Int(9)))),
                Box::new(G::Cmp(
                    0,
                    O::Sum(Box::new(path(0, &[0])), Box::new(path(0, &[0]))),
                    O::Const(V::Int(6)),
                )),
            ),
        ];
        for g in &cases {
            let (flat, tree) = both(tree(g), &r);
            assert_ne!(flat, Tri::Unknown, "{g:?}");
            assert_eq!(tree, Ok(flat == Tri::True), "{g:?}");
        }
    }
}
