//! Deterministic workloads for benchmarking Rein against Cedar.
//!
//! [`Workload::generate`] builds, from a seed, a set of rules spread over
//! actions (ten rules per action) and a pool of requests, in a neutral form
//! ([`Rule`], [`GenRequest`]) that renders to both engines:
//!
//! * Rein: [`Workload::rein_yaml`] (native policy, `default: allow`) and
//!   [`GenRequest::rein_json`];
//! * Cedar: [`Workload::cedar_policies`] (one policy set) or
//!   [`Workload::cedar_policies_for`] (one set per action),
//!   [`Workload::cedar_schema`] and [`GenRequest::cedar_context`].
//!
//! The two renderings decide identically, and [`Workload::expected`] is a
//! third, independent evaluator of the neutral form that the benches use to
//! check both engines before timing anything.
//!
//! [`floor::Floor`] is the hand-written, hash-indexed evaluator of the same
//! neutral form that the decide bench times as the floor every engine is
//! measured against.
//!
//! # Semantics being matched
//!
//! Rein: deny-overrides over the rules of the request's action, `default:
//! allow`; an action without a contract is blocked by the contract check.
//! Only `allow` and `block` rules are generated (no `require_approval`), so
//! a request is blocked exactly when its action is unknown or one of its
//! action's `block` rules matches; `allow` rules never change the outcome
//! but are still evaluated, as Rein evaluates every rule of the action.
//!
//! Cedar: `forbid` for each Rein `block` rule, `permit ... when` for each
//! Rein `allow` rule, plus one base policy `permit(principal, action in
//! Action::"known", resource)` where every declared action is a member of
//! the action group `known`. Cedar denies when a `forbid` matches or no
//! `permit` does, so a request is allowed exactly when its action is known
//! and no `forbid` matches. No generated condition can error (every field
//! is always present and typed), so Cedar's skip-on-error never applies.
//!
//! All data sits in Cedar's `context` (`context.input.amount`,
//! `context.actor.level`, ...), mirroring Rein's roots; the entity store
//! only holds the action hierarchy.

use serde_json::{json, Map, Value as Json};
use std::fmt::Write as _;

pub mod floor;

/// Rules per action: a workload of `n` rules has `ceil(n / 10)` actions.
pub const RULES_PER_ACTION: usize = 10;
/// Of every ten rules of an action, this many are `block` rules.
pub const BLOCK_RULES_PER_TEN: usize = 3;
/// Share of requests, among those naming a known action, that the
/// generator aims to have blocked by a rule.
pub const TARGET_BLOCK_SHARE: f64 = 0.10;
/// Share of requests that name an action the policy does not know.
pub const UNKNOWN_ACTION_SHARE: f64 = 0.10;
/// How far an action's exact block share may be from [`TARGET_BLOCK_SHARE`]
/// before its block rules are redrawn.
pub const BLOCK_SHARE_TOLERANCE: f64 = 0.01;
const CALIBRATION_ATTEMPTS: usize = 200;

/// A small, fast, deterministic PRNG (xorshift64*). Not for cryptography.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> XorShift {
        // Mix the seed so nearby seeds diverge at once; the state must not be 0.
        let s = seed ^ 0x9E37_79B9_7F4A_7C15;
        XorShift(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`; the tiny modulo bias does not matter here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a field lives: Rein's `input` / `actor` / `snapshot`, which are
/// Cedar's `context.input` / `context.actor` / `context.snapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    /// The action's arguments.
    Input,
    /// Who asks.
    Actor,
    /// External state.
    Snapshot,
}

impl Root {
    /// The root's name in both languages.
    pub fn name(self) -> &'static str {
        match self {
            Root::Input => "input",
            Root::Actor => "actor",
            Root::Snapshot => "snapshot",
        }
    }
}

/// The values a field takes in generated requests.
#[derive(Clone, Copy, Debug)]
pub enum Domain {
    /// An integer in `0..n` (Rein `int`, Cedar `Long`).
    Int(i64),
    /// One of these strings (Rein `string`, Cedar `String`).
    Str(&'static [&'static str]),
}

/// A field of the generated contracts.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Its root.
    pub root: Root,
    /// Its name.
    pub name: &'static str,
    /// Its values.
    pub domain: Domain,
}

const KINDS: &[&str] = &["full", "partial", "credit", "manual"];
const TARGETS: &[&str] = &["orders", "users", "billing", "search", "files", "mail", "chat", "infra"];
const ROLES: &[&str] = &["agent", "support", "admin", "viewer"];
const TEAMS: &[&str] = &["red", "blue", "green", "gold", "teal", "gray", "pink", "plum"];
const REGIONS: &[&str] = &["eu", "us", "apac", "latam"];

/// Every field, grouped by root in declaration order. Every action has the
/// same input fields (each action still gets its own contract).
pub const FIELDS: &[Field] = &[
    Field {
        root: Root::Input,
        name: "amount",
        domain: Domain::Int(1000),
    },
    Field {
        root: Root::Input,
        name: "count",
        domain: Domain::Int(100),
    },
    Field {
        root: Root::Input,
        name: "kind",
        domain: Domain::Str(KINDS),
    },
    Field {
        root: Root::Input,
        name: "target",
        domain: Domain::Str(TARGETS),
    },
    Field {
        root: Root::Actor,
        name: "level",
        domain: Domain::Int(10),
    },
    Field {
        root: Root::Actor,
        name: "role",
        domain: Domain::Str(ROLES),
    },
    Field {
        root: Root::Actor,
        name: "team",
        domain: Domain::Str(TEAMS),
    },
    Field {
        root: Root::Snapshot,
        name: "region",
        domain: Domain::Str(REGIONS),
    },
    Field {
        root: Root::Snapshot,
        name: "load",
        domain: Domain::Int(100),
    },
    Field {
        root: Root::Snapshot,
        name: "incidents",
        domain: Domain::Int(10),
    },
];

/// A comparison operator, spelled the same in CEL and Cedar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// The operator's spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// A field's value in a request, or a literal in a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    /// An integer.
    Int(i64),
    /// A string.
    Str(&'static str),
}

impl Val {
    fn render(self, out: &mut String) {
        // Generated strings are plain lower-case words: no escaping needed.
        let _ = match self {
            Val::Int(i) => write!(out, "{i}"),
            Val::Str(s) => write!(out, "\"{s}\""),
        };
    }

    fn to_json(self) -> Json {
        match self {
            Val::Int(i) => json!(i),
            Val::Str(s) => json!(s),
        }
    }
}

/// `<field> <op> <literal>`.
#[derive(Clone, Copy, Debug)]
pub struct Cmp {
    /// Index into [`FIELDS`].
    pub field: usize,
    /// The operator (only `==` / `!=` for strings).
    pub op: Op,
    /// The literal, of the field's type.
    pub lit: Val,
}

impl Cmp {
    /// Whether the comparison holds for `value` (the field's value).
    pub fn holds(&self, value: Val) -> bool {
        match (value, self.lit) {
            (Val::Int(a), Val::Int(b)) => match self.op {
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                Op::Ge => a >= b,
                Op::Eq => a == b,
                Op::Ne => a != b,
            },
            (Val::Str(a), Val::Str(b)) => match self.op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                // Never generated: Cedar has no string ordering.
                _ => false,
            },
            _ => false,
        }
    }
}

/// The two effects the workload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rein `allow` / Cedar `Allow`.
    Allow,
    /// Rein `block` / Cedar `Deny`.
    Block,
}

/// One generated rule: a conjunction of 2–3 comparisons.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its id (`r00042`).
    pub id: String,
    /// Index into [`Workload::actions`].
    pub action: usize,
    /// Rein `allow` (Cedar `permit`) or `block` (Cedar `forbid`).
    pub effect: Verdict,
    /// The conjuncts.
    pub when: Vec<Cmp>,
}

/// One generated request.
#[derive(Clone, Debug)]
pub struct GenRequest {
    /// The action's name; unknown names start with `unknown_`.
    pub action: String,
    /// Index into [`Workload::actions`], or `None` for an unknown action.
    pub known: Option<usize>,
    /// The value of each field of [`FIELDS`], by index.
    pub values: Vec<Val>,
}

impl GenRequest {
    fn root_json(&self, root: Root) -> Json {
        let mut m = Map::new();
        for (f, v) in FIELDS.iter().zip(&self.values) {
            if f.root == root {
                m.insert(f.name.to_string(), v.to_json());
            }
        }
        Json::Object(m)
    }

    /// The Rein request: `{"action", "input", "actor", "snapshot"}`.
    pub fn rein_json(&self) -> Json {
        json!({
            "action": self.action,
            "input": self.root_json(Root::Input),
            "actor": self.root_json(Root::Actor),
            "snapshot": self.root_json(Root::Snapshot),
        })
    }

    /// The Cedar context: `{"input", "actor", "snapshot"}`.
    pub fn cedar_context(&self) -> Json {
        json!({
            "input": self.root_json(Root::Input),
            "actor": self.root_json(Root::Actor),
            "snapshot": self.root_json(Root::Snapshot),
        })
    }

    /// The Cedar action entity id (`Action::"act_0003"`).
    pub fn cedar_action(&self) -> String {
        format!("Action::\"{}\"", self.action)
    }
}

/// A generated policy and request pool.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The seed it was generated from.
    pub seed: u64,
    /// Action names (`act_0000`, ...).
    pub actions: Vec<String>,
    /// The rules, in file order (round-robin over actions).
    pub rules: Vec<Rule>,
    /// For each action, the indices of its rules.
    pub rules_by_action: Vec<Vec<usize>>,
    /// The request pool.
    pub requests: Vec<GenRequest>,
}

/// The Cedar principal of every request.
pub const CEDAR_PRINCIPAL: &str = "User::\"agent\"";
/// The Cedar resource of every request.
pub const CEDAR_RESOURCE: &str = "Resource::\"system\"";

impl Workload {
    /// Generates `rules` rules over `ceil(rules / 10)` actions and a pool of
    /// `requests` requests. The same arguments give the same workload.
    pub fn generate(rules: usize, requests: usize, seed: u64) -> Workload {
        let mut rng = XorShift::new(seed);
        let n_actions = rules.div_ceil(RULES_PER_ACTION).max(1);
        let width = digits(n_actions.saturating_sub(1)).max(4);
        let actions: Vec<String> = (0..n_actions).map(|i| format!("act_{i:0width$}")).collect();

        // Which rules of each action block: BLOCK_RULES_PER_TEN of every ten,
        // at positions rotated by a per-action offset.
        let offsets: Vec<usize> = (0..n_actions).map(|_| rng.below(RULES_PER_ACTION)).collect();
        let mut rules_by_action: Vec<Vec<usize>> = vec![Vec::new(); n_actions];
        let mut effects = Vec::with_capacity(rules);
        for i in 0..rules {
            let a = i % n_actions;
            let j = i / n_actions;
            let block = (j + offsets[a]) % RULES_PER_ACTION < BLOCK_RULES_PER_TEN;
            effects.push((a, if block { Verdict::Block } else { Verdict::Allow }));
            rules_by_action[a].push(i);
        }
        // Conditions, action by action. A block rule should match with
        // probability p such that the action's `b` block rules together
        // block about TARGET_BLOCK_SHARE of its requests (1 - (1 - p)^b =
        // share if they were independent); as they share fields, the exact
        // share of each candidate set is computed and the set redrawn until
        // it is within BLOCK_SHARE_TOLERANCE of the target.
        let mut whens: Vec<Vec<Cmp>> = vec![Vec::new(); rules];
        for rs in &rules_by_action {
            let (block, allow): (Vec<usize>, Vec<usize>) = rs.iter().partition(|&&r| effects[r].1 == Verdict::Block);
            for &r in &allow {
                let n = 2 + rng.below(2);
                whens[r] = conjunction(&mut rng, n, None);
            }
            if block.is_empty() {
                continue;
            }
            let p = 1.0 - (1.0 - TARGET_BLOCK_SHARE).powf(1.0 / block.len() as f64);
            let mut best: Option<(f64, Vec<Vec<Cmp>>)> = None;
            for _ in 0..CALIBRATION_ATTEMPTS {
                let set: Vec<Vec<Cmp>> = block
                    .iter()
                    .map(|_| {
                        let n = 2 + rng.below(2);
                        conjunction(&mut rng, n, Some(p))
                    })
                    .collect();
                let miss = match union_probability(&set) {
                    Some(share) => (share - TARGET_BLOCK_SHARE).abs(),
                    None => 0.0, // too many block rules to compute: take the first draw
                };
                if best.as_ref().is_none_or(|(m, _)| miss < *m) {
                    best = Some((miss, set));
                }
                if miss <= BLOCK_SHARE_TOLERANCE {
                    break;
                }
            }
            if let Some((_, set)) = best {
                for (&r, when) in block.iter().zip(set) {
                    whens[r] = when;
                }
            }
        }

        let id_width = digits(rules.saturating_sub(1)).max(5);
        let rules: Vec<Rule> = effects
            .into_iter()
            .zip(whens)
            .enumerate()
            .map(|(i, ((action, effect), when))| Rule {
                id: format!("r{i:0id_width$}"),
                action,
                effect,
                when,
            })
            .collect();

        let requests = (0..requests)
            .map(|k| {
                let known = if rng.unit() < UNKNOWN_ACTION_SHARE {
                    None
                } else {
                    Some(rng.below(n_actions))
                };
                let action = match known {
                    Some(a) => actions[a].clone(),
                    None => format!("unknown_{k:04}"),
                };
                let values = FIELDS
                    .iter()
                    .map(|f| match f.domain {
                        Domain::Int(n) => Val::Int(rng.below(n as usize) as i64),
                        Domain::Str(vals) => Val::Str(vals[rng.below(vals.len())]),
                    })
                    .collect();
                GenRequest { action, known, values }
            })
            .collect();

        Workload {
            seed,
            actions,
            rules,
            rules_by_action,
            requests,
        }
    }

    /// The decision both engines must reach, from the neutral form.
    pub fn expected(&self, req: &GenRequest) -> Verdict {
        let Some(a) = req.known else {
            return Verdict::Block;
        };
        let blocked = self.rules_by_action[a]
            .iter()
            .map(|&r| &self.rules[r])
            .any(|rule| rule.effect == Verdict::Block && rule.when.iter().all(|c| c.holds(req.values[c.field])));
        if blocked {
            Verdict::Block
        } else {
            Verdict::Allow
        }
    }

    /// The Rein policy: contracts for every action, the rules, `default: allow`.
    pub fn rein_yaml(&self) -> String {
        let mut out = String::with_capacity(200 + self.actions.len() * 120 + self.rules.len() * 120);
        let _ = writeln!(
            out,
            "# Generated by rein-bench: {} rules over {} actions, seed {}.",
            self.rules.len(),
            self.actions.len(),
            self.seed
        );
        out.push_str("version: \"bench\"\ndefault: allow\n\ncontracts:\n");
        for root in [Root::Actor, Root::Snapshot] {
            let _ = writeln!(out, "  {}:", root.name());
            rein_fields(&mut out, root, "    ");
        }
        out.push_str("  actions:\n");
        for a in &self.actions {
            let _ = writeln!(out, "    {a}:\n      input:");
            rein_fields(&mut out, Root::Input, "        ");
        }
        out.push_str("\nrules:\n");
        for r in &self.rules {
            let _ = writeln!(out, "  - id: {}\n    action: {}", r.id, self.actions[r.action]);
            // Single-quoted YAML: the condition holds `"` but never `'`.
            out.push_str("    when: '");
            condition(&mut out, &r.when, "");
            let effect = match r.effect {
                Verdict::Allow => "allow",
                Verdict::Block => "block",
            };
            let _ = writeln!(out, "'\n    effect: {effect}");
        }
        out
    }

    /// All rules as one Cedar policy set (text), with the base permit.
    pub fn cedar_policies(&self) -> String {
        let mut out = String::with_capacity(100 + self.rules.len() * 160);
        cedar_base(&mut out);
        for r in &self.rules {
            self.cedar_rule(&mut out, r);
        }
        out
    }

    /// The Cedar policy set for one action: its rules and the base permit.
    pub fn cedar_policies_for(&self, action: usize) -> String {
        let mut out = String::new();
        cedar_base(&mut out);
        for &r in self.rules_by_action.get(action).map(Vec::as_slice).unwrap_or_default() {
            self.cedar_rule(&mut out, &self.rules[r]);
        }
        out
    }

    fn cedar_rule(&self, out: &mut String, r: &Rule) {
        let kind = match r.effect {
            Verdict::Allow => "permit",
            Verdict::Block => "forbid",
        };
        let _ = write!(
            out,
            "@id(\"{}\")\n{kind} (principal, action == Action::\"{}\", resource)\nwhen {{ ",
            r.id, self.actions[r.action]
        );
        condition(out, &r.when, "context.");
        out.push_str(" };\n");
    }

    /// The Cedar schema equivalent to the Rein contracts: one action per
    /// Rein action, each a member of the group `known`.
    pub fn cedar_schema(&self) -> String {
        let mut out = String::from("entity User;\nentity Resource;\n");
        for (root, ty) in [
            (Root::Input, "Input"),
            (Root::Actor, "Actor"),
            (Root::Snapshot, "Snapshot"),
        ] {
            let _ = write!(out, "type {ty} = {{");
            let mut first = true;
            for f in FIELDS.iter().filter(|f| f.root == root) {
                let t = match f.domain {
                    Domain::Int(_) => "Long",
                    Domain::Str(_) => "String",
                };
                let _ = write!(out, "{}\"{}\": {t}", if first { " " } else { ", " }, f.name);
                first = false;
            }
            out.push_str(" };\n");
        }
        out.push_str("action \"known\";\n");
        for a in &self.actions {
            let _ = writeln!(
                out,
                "action \"{a}\" in [\"known\"] appliesTo {{ principal: [User], resource: [Resource], \
                 context: {{ \"input\": Input, \"actor\": Actor, \"snapshot\": Snapshot }} }};"
            );
        }
        out
    }
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn rein_fields(out: &mut String, root: Root, indent: &str) {
    for f in FIELDS.iter().filter(|f| f.root == root) {
        let t = match f.domain {
            Domain::Int(_) => "int",
            Domain::Str(_) => "string",
        };
        let _ = writeln!(out, "{indent}{}: {t}", f.name);
    }
}

fn cedar_base(out: &mut String) {
    out.push_str("@id(\"known_actions\")\npermit (principal, action in Action::\"known\", resource);\n");
}

/// `a > 1 && b == "x"`, each field written `<prefix><root>.<name>`.
fn condition(out: &mut String, when: &[Cmp], prefix: &str) {
    for (i, c) in when.iter().enumerate() {
        if i > 0 {
            out.push_str(" && ");
        }
        let f = &FIELDS[c.field];
        let _ = write!(out, "{prefix}{}.{} {} ", f.root.name(), f.name, c.op.symbol());
        c.lit.render(out);
    }
}

/// `n` comparisons over distinct fields. With `target = Some(p)`, their
/// conjunction holds with probability close to `p` over uniform requests;
/// with `None`, operators and literals are uniform.
fn conjunction(rng: &mut XorShift, n: usize, target: Option<f64>) -> Vec<Cmp> {
    let mut fields: Vec<usize> = Vec::with_capacity(n);
    while fields.len() < n.min(FIELDS.len()) {
        let f = rng.below(FIELDS.len());
        if !fields.contains(&f) {
            fields.push(f);
        }
    }
    let mut remaining = target;
    let mut out = Vec::with_capacity(n);
    for (k, &field) in fields.iter().enumerate() {
        let domain = FIELDS[field].domain;
        let cmp = match remaining {
            None => uniform_cmp(rng, field, domain),
            Some(p) => {
                // Spread what is left of the target over the comparisons left.
                let q = p.powf(1.0 / (fields.len() - k) as f64);
                let (cmp, got) = targeted_cmp(rng, field, domain, q);
                remaining = Some((p / got).min(1.0));
                cmp
            }
        };
        out.push(cmp);
    }
    out
}

/// The exact probability, over uniform requests, that at least one of the
/// conjunctions holds (inclusion–exclusion; fields are independent, so each
/// intersection is a product over fields). `None` past 12 conjunctions.
pub fn union_probability(conjs: &[Vec<Cmp>]) -> Option<f64> {
    let b = conjs.len();
    if b > 12 {
        return None;
    }
    let mut total = 0.0;
    for mask in 1u32..(1 << b) {
        let mut p = 1.0;
        for (fi, f) in FIELDS.iter().enumerate() {
            let cmps: Vec<&Cmp> = (0..b)
                .filter(|k| mask >> k & 1 == 1)
                .flat_map(|k| conjs[k].iter())
                .filter(|c| c.field == fi)
                .collect();
            if cmps.is_empty() {
                continue;
            }
            let (hits, size) = match f.domain {
                Domain::Int(n) => (
                    (0..n).filter(|&v| cmps.iter().all(|c| c.holds(Val::Int(v)))).count(),
                    n as usize,
                ),
                Domain::Str(vals) => (
                    vals.iter()
                        .filter(|&&v| cmps.iter().all(|c| c.holds(Val::Str(v))))
                        .count(),
                    vals.len(),
                ),
            };
            p *= hits as f64 / size as f64;
        }
        total += if mask.count_ones() % 2 == 1 { p } else { -p };
    }
    Some(total)
}

fn uniform_cmp(rng: &mut XorShift, field: usize, domain: Domain) -> Cmp {
    match domain {
        Domain::Int(n) => {
            let ops = [Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Eq, Op::Ne];
            Cmp {
                field,
                op: ops[rng.below(ops.len())],
                lit: Val::Int(rng.below(n as usize) as i64),
            }
        }
        Domain::Str(vals) => Cmp {
            field,
            op: if rng.below(2) == 0 { Op::Eq } else { Op::Ne },
            lit: Val::Str(vals[rng.below(vals.len())]),
        },
    }
}

/// A comparison that holds with probability about `q`; returns it with its
/// exact probability over uniform values.
fn targeted_cmp(rng: &mut XorShift, field: usize, domain: Domain, q: f64) -> (Cmp, f64) {
    match domain {
        Domain::Int(n) => {
            // `m` of the `n` values satisfy it.
            let m = ((q * n as f64).round() as i64).clamp(1, n);
            let (op, lit) = match rng.below(4) {
                0 => (Op::Lt, m),
                1 => (Op::Le, m - 1),
                2 => (Op::Gt, n - 1 - m),
                _ => (Op::Ge, n - m),
            };
            (
                Cmp {
                    field,
                    op,
                    lit: Val::Int(lit),
                },
                m as f64 / n as f64,
            )
        }
        Domain::Str(vals) => {
            let v = Val::Str(vals[rng.below(vals.len())]);
            let one = 1.0 / vals.len() as f64;
            if q > 0.5 {
                (
                    Cmp {
                        field,
                        op: Op::Ne,
                        lit: v,
                    },
                    1.0 - one,
                )
            } else {
                (
                    Cmp {
                        field,
                        op: Op::Eq,
                        lit: v,
                    },
                    one,
                )
            }
        }
    }
}
