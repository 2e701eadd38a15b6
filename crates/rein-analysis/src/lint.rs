//! `rein lint`: what a policy's `before` rules can and cannot do.
//!
//! Every claim that no input exists (a rule never matches, never takes
//! effect, is covered by another, an action always gets its default) is
//! the solver's `unsat` over the over-approximation of
//! [`rein_engine::analysis`]: sound. A conflict is shown only with an
//! example request that the engine itself decides with both rules matched;
//! anything the solver could not decide is listed as `unknown`, never as a
//! finding.

use crate::smt::{Answer, Solver};
use crate::{confirm_decision, example_json, field_vars, Example};
use rein_engine::analysis::{self, ActionModel, Logic, RuleModel, RuleSite, Term};
use rein_engine::source::{SourceFile, Span};
use rein_engine::{Diagnostic, Effect, Policy};

/// What kind of problem a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// No request the contract accepts makes the rule match.
    NeverMatches,
    /// The rule can match but never decides: other rules (or evaluation
    /// errors) always override it.
    Shadowed,
    /// Two rules with the same effect match exactly the same requests.
    Duplicate,
    /// Whenever this rule matches, another with the same effect does too.
    Redundant,
    /// Whenever this rule matches, a rule of a file loaded after its own
    /// matches too with the same effect: a shared base rule (such as the
    /// shipped agent contracts' rules) that the policy extending it covers.
    RedundantBase,
    /// Every request the contract accepts gets the default effect.
    AlwaysDefault,
    /// An `allow` rule targets every action or a wide glob while the
    /// default is stricter.
    WideAllow,
    /// Some request matches both an allow rule and a block rule; the block
    /// wins. Shown with a confirmed example.
    Conflict,
    /// Some request matches both a require_approval rule and a block rule;
    /// the block wins. Shown with a confirmed example.
    ApprovalConflict,
}

impl Kind {
    /// Every check, in the order findings are explained in the docs.
    pub const ALL: [Kind; 9] = [
        Kind::NeverMatches,
        Kind::Shadowed,
        Kind::Duplicate,
        Kind::Redundant,
        Kind::RedundantBase,
        Kind::AlwaysDefault,
        Kind::WideAllow,
        Kind::Conflict,
        Kind::ApprovalConflict,
    ];

    /// The check's name, as printed and as `--allow`/`--note`/`--warn` take it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::NeverMatches => "never-matches",
            Kind::Shadowed => "shadowed",
            Kind::Duplicate => "duplicate",
            Kind::Redundant => "redundant",
            Kind::RedundantBase => "redundant-base",
            Kind::AlwaysDefault => "always-default",
            Kind::WideAllow => "wide-allow",
            Kind::Conflict => "conflict",
            Kind::ApprovalConflict => "approval-conflict",
        }
    }

    /// The check named `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// How the check reports unless told otherwise. What is almost surely a
    /// mistake (dead, overridden or duplicated rules, an action no rule can
    /// move, allows wider than the default) is a warning. An overlap between
    /// an allow and a block is how deny-overrides policies are written on
    /// purpose (a narrow block carved out of a wide allow): a note. A block
    /// carved out of a require_approval rule is as deliberate, and the issue
    /// that asks for conflicts asks for allow against block only: off.
    pub fn default_level(self) -> Level {
        match self {
            // An action nobody wrote a rule for (shared contracts declare
            // more tools than one policy governs) gets the default on
            // purpose more often than by mistake; an action whose rules
            // cannot move it has each rule reported as dead or shadowed.
            // A base file's rule covered by the policy that extends it is
            // layering: neither file's author can remove a rule to fix it,
            // and decisions are the same.
            Kind::Conflict | Kind::AlwaysDefault | Kind::RedundantBase => Level::Note,
            Kind::ApprovalConflict => Level::Allow,
            _ => Level::Warning,
        }
    }
}

/// How a check's findings are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Not reported (and not searched for where that costs solver time).
    Allow,
    /// Reported as information; never fails the lint.
    Note,
    /// Reported as a warning; fails the lint (`rein lint` exits 1).
    Warning,
}

/// Which checks report at which level.
#[derive(Clone, Debug)]
pub struct LintConfig {
    levels: [Level; Kind::ALL.len()],
}

impl Default for LintConfig {
    fn default() -> LintConfig {
        LintConfig {
            levels: Kind::ALL.map(Kind::default_level),
        }
    }
}

impl LintConfig {
    /// The level of `kind`.
    pub fn level(&self, kind: Kind) -> Level {
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.levels.get(i).copied().unwrap_or(Level::Warning)
    }

    /// Sets the level of `kind`.
    pub fn set(&mut self, kind: Kind, level: Level) {
        if let Some(i) = Kind::ALL.iter().position(|k| *k == kind) {
            if let Some(l) = self.levels.get_mut(i) {
                *l = level;
            }
        }
    }
}

/// One problem found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// Its kind: the name of the check that found it.
    pub kind: Kind,
    /// Warning (fails the lint) or note, from the check's level.
    pub severity: Level,
    /// The action it is about (`None` when it holds for every action the
    /// rule targets, or for several: see `actions`).
    pub action: Option<String>,
    /// Every action it is about, when it was grouped over several (a
    /// conflict between the same two rules on several actions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// The rule it is about.
    pub rule: Option<String>,
    /// The other rule involved (the one that covers, duplicates or conflicts).
    pub other: Option<String>,
    /// What was found, one line.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// A request that shows it, decided by the engine as stated.
    pub example: Option<serde_json::Value>,
    /// File and span.
    #[serde(skip)]
    pub site: Option<(SourceFile, Span)>,
    /// File name and 1-based line, for tools.
    pub location: Option<(String, usize)>,
    /// For an action with no rule: its default (such findings are grouped).
    #[serde(skip)]
    pub(crate) ruleless: Option<Effect>,
}

impl Finding {
    /// The finding as a diagnostic, rendered like load warnings (a note as
    /// advice), headed by its check's name.
    pub fn diagnostic(&self) -> Diagnostic {
        let d = match &self.site {
            Some((file, span)) => Diagnostic::error(file, *span, self.message.clone()),
            None => Diagnostic::general(self.message.clone()),
        };
        let d = if self.severity == Level::Note {
            d.note()
        } else {
            d.warning()
        };
        let mut d = d.with_code(format!("lint({})", self.kind.name()));
        if let Some(h) = &self.help {
            d = d.with_help(h.clone());
        }
        d
    }
}

/// A question the solver could not answer in time.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unknown {
    /// The lint check that asked (`None` for `rein diff`'s questions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Kind>,
    /// The action.
    pub action: String,
    /// The rule asked about, if one.
    pub rule: Option<String>,
    /// What was asked.
    pub question: String,
    /// Why there is no answer (timeout, solver error, unconfirmed example).
    pub reason: String,
}

/// The outcome of linting a policy.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LintReport {
    /// Problems found (each proved, or shown by a confirmed example).
    pub findings: Vec<Finding>,
    /// Questions left open.
    pub unknown: Vec<Unknown>,
    /// Rules whose conditions needed unknowns (not encoded exactly), by id.
    pub approximated: Vec<String>,
    /// The solver's counts.
    pub solver: crate::smt::Stats,
}

/// Most pairs of rules compared for duplicates per action (each one or two
/// queries); past it the rest are listed as unknown.
pub const MAX_PAIRS: usize = 2000;

/// Lints the `before` rules of every action of `policy`, each check at its
/// default level.
pub fn lint(policy: &Policy, solver: &mut Solver) -> LintReport {
    lint_with(policy, solver, &LintConfig::default())
}

/// Lints the `before` rules of every action of `policy`, each check at the
/// level `config` gives it: findings and open questions of checks at
/// [`Level::Allow`] are left out.
pub fn lint_with(policy: &Policy, solver: &mut Solver, config: &LintConfig) -> LintReport {
    let mut logic = Logic::new();
    let models = analysis::lower(policy, &mut logic);
    let sites = analysis::rule_sites(policy);
    let mut report = LintReport::default();
    let mut never: Vec<(String, usize, Vec<String>, bool)> = Vec::new();
    for m in &models {
        lint_action(policy, &logic, m, &sites, solver, config, &mut report, &mut never);
    }
    // A rule that never matches for any action it targets is one finding;
    // one that never matches for some of them, one per action.
    for (id, index, actions, all) in never {
        let rule = models
            .iter()
            .flat_map(|m| m.rules.iter())
            .find(|r| r.index == index)
            .cloned();
        let site = rule.as_ref().and_then(|r| site_of(policy, r, &sites));
        if all {
            report.findings.push(Finding {
                kind: Kind::NeverMatches,
                severity: Level::Warning,
                actions: Vec::new(),
                action: (actions.len() == 1).then(|| actions.first().cloned().unwrap_or_default()),
                rule: Some(id.clone()),
                other: None,
                message: format!(
                    "rule `{id}` can never match: no request its contract accepts satisfies its condition"
                ),
                help: Some("check the condition against the contract's types and bounds; removing the rule changes no match, but a condition that fails to evaluate (an int overflow) still blocks".into()),
                example: None,
                location: location(&site),
                site,
                ruleless: None,
            });
        } else {
            for a in actions {
                report.findings.push(Finding {
                    kind: Kind::NeverMatches,
                    severity: Level::Warning,
                    actions: Vec::new(),
                    action: Some(a.clone()),
                    rule: Some(id.clone()),
                    other: None,
                    message: format!("rule `{id}` can never match for action `{a}`"),
                    help: Some("narrow the rule's `action:` or fix its condition for this action".into()),
                    example: None,
                    location: location(&site),
                    site: site.clone(),
                    ruleless: None,
                });
            }
        }
    }
    let mut approx: Vec<String> = models
        .iter()
        .flat_map(|m| m.rules.iter())
        .filter(|r| !r.exact)
        .map(|r| r.id.clone())
        .collect();
    approx.sort();
    approx.dedup();
    report.approximated = approx;
    group_conflicts(&mut report.findings);
    group_ruleless(&mut report.findings);
    report.findings.retain(|f| config.level(f.kind) != Level::Allow);
    for f in &mut report.findings {
        f.severity = config.level(f.kind);
    }
    report
        .unknown
        .retain(|u| u.check.is_none_or(|k| config.level(k) != Level::Allow));
    report.solver = solver.stats;
    report
}

/// One finding for every action with no rule and the same default, so
/// contracts shared by several policies do not list each tool.
fn group_ruleless(findings: &mut Vec<Finding>) {
    let (ruleless, mut rest): (Vec<Finding>, Vec<Finding>) = findings.drain(..).partition(|f| f.ruleless.is_some());
    if ruleless.len() < 2 {
        rest.extend(ruleless);
        *findings = rest;
        return;
    }
    let mut by_default: Vec<(Option<Effect>, Vec<String>)> = Vec::new();
    for f in ruleless {
        let default = f.ruleless;
        let action = f.action.unwrap_or_default();
        match by_default.iter_mut().find(|(d, _)| *d == default) {
            Some((_, actions)) => actions.push(action),
            None => by_default.push((default, vec![action])),
        }
    }
    for (default, actions) in by_default {
        let listed = actions.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
        rest.push(Finding {
            kind: Kind::AlwaysDefault,
            severity: Level::Warning,
            action: None,
            message: format!(
                "{} actions have no rule: every request gets the default `{}`: {listed}",
                actions.len(),
                default.map(effect_name).unwrap_or_default()
            ),
            actions,
            rule: None,
            other: None,
            ruleless: default,
            help: Some("add rules for the actions, or remove them from the contracts".into()),
            example: None,
            site: None,
            location: None,
        });
    }
    *findings = rest;
}

/// One conflict per pair of rules: the same two rules overlapping on
/// several actions (a rule over `refund` and `refund_*`) are one finding
/// listing the actions, with the first action's example.
fn group_conflicts(findings: &mut Vec<Finding>) {
    let mut out: Vec<Finding> = Vec::with_capacity(findings.len());
    for f in findings.drain(..) {
        let conflict = matches!(f.kind, Kind::Conflict | Kind::ApprovalConflict);
        let same = out
            .iter_mut()
            .find(|g| conflict && g.kind == f.kind && g.rule == f.rule && g.other == f.other);
        match same {
            Some(g) => {
                if g.actions.is_empty() {
                    g.actions.extend(g.action.take());
                }
                g.actions.extend(f.action);
                let (Some(a), Some(b)) = (&g.rule, &g.other) else {
                    continue;
                };
                let effect = if g.kind == Kind::Conflict {
                    "allow"
                } else {
                    "require_approval"
                };
                g.message = format!(
                    "rules `{a}` ({effect}) and `{b}` (block) both match some requests of actions {}; the block wins",
                    g.actions
                        .iter()
                        .map(|x| format!("`{x}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            None => out.push(f),
        }
    }
    *findings = out;
}

fn location(site: &Option<(SourceFile, Span)>) -> Option<(String, usize)> {
    site.as_ref()
        .map(|(f, s)| (f.name().to_string(), f.line_col(s.start as usize).0))
}

/// Where to point for a rule: its condition, or the whole rule.
fn site_of(policy: &Policy, rule: &RuleModel, sites: &[RuleSite]) -> Option<(SourceFile, Span)> {
    if let Some(file) = analysis::rule_file(policy, rule.index) {
        if let Some((_, span)) = rule.when {
            return Some((file, span));
        }
    }
    sites.iter().find(|s| s.id == rule.id).map(|s| (s.file.clone(), s.span))
}

fn effect_name(e: Effect) -> &'static str {
    e.as_str()
}

#[allow(clippy::too_many_arguments)]
fn lint_action(
    policy: &Policy,
    logic: &Logic,
    m: &ActionModel,
    sites: &[RuleSite],
    solver: &mut Solver,
    config: &LintConfig,
    report: &mut LintReport,
    never: &mut Vec<(String, usize, Vec<String>, bool)>,
) {
    let d = m.contract.clone();
    let with = |parts: Vec<Term>| {
        let mut all = vec![d.clone()];
        all.extend(parts);
        Term::and(all)
    };
    let unknown = |report: &mut LintReport, check: Kind, rule: Option<&str>, question: String, reason: String| {
        report.unknown.push(Unknown {
            check: Some(check),
            action: m.action.clone(),
            rule: rule.map(str::to_string),
            question,
            reason,
        });
    };
    // 1. Which rules can match at all.
    let mut can = Vec::with_capacity(m.rules.len());
    for r in &m.rules {
        let answer = solver.check(logic, &with(vec![r.holds.clone()]), &[]);
        let ok = match answer {
            Answer::Sat(_) => Some(true),
            Answer::Unsat => {
                match never.iter_mut().find(|(id, ..)| *id == r.id) {
                    Some(entry) => entry.2.push(m.action.clone()),
                    None => never.push((r.id.clone(), r.index, vec![m.action.clone()], true)),
                }
                Some(false)
            }
            Answer::Unknown(why) => {
                unknown(
                    report,
                    Kind::NeverMatches,
                    Some(&r.id),
                    "can the rule match?".into(),
                    why,
                );
                None
            }
        };
        if ok != Some(false) {
            // It can (or may) match here: if it never matches elsewhere,
            // that is per action.
            match never.iter_mut().find(|(id, ..)| *id == r.id) {
                Some(entry) => entry.3 = false,
                None => never.push((r.id.clone(), r.index, Vec::new(), false)),
            }
        }
        can.push(ok);
    }
    let dec = m.decides();
    // 2. Rules that can match but never decide.
    let mut shadowed = vec![false; m.rules.len()];
    for (i, r) in m.rules.iter().enumerate() {
        if can.get(i) != Some(&Some(true)) || (!m.first_match && r.effect == Effect::Block) {
            continue;
        }
        let takes_effect = if m.first_match {
            let mut parts: Vec<Term> = m
                .rules
                .iter()
                .take(i)
                .map(|e| Term::and(vec![Term::not(e.holds.clone()), Term::not(e.fails.clone())]))
                .collect();
            parts.push(r.holds.clone());
            parts.push(Term::not(m.state.clone().unwrap_or(Term::Bool(false))));
            with(parts)
        } else {
            with(vec![r.holds.clone(), dec.effect(r.effect).clone()])
        };
        match solver.check(logic, &takes_effect, &[]) {
            Answer::Sat(_) => continue,
            Answer::Unknown(why) => {
                unknown(report, Kind::Shadowed, Some(&r.id), "can the rule decide?".into(), why);
                continue;
            }
            Answer::Unsat => {}
        }
        if let Some(s) = &m.state {
            // The state alone may be what overrides it: say nothing rather
            // than blame a rule.
            if solver
                .check(logic, &with(vec![r.holds.clone(), Term::not(s.clone())]), &[])
                .is_unsat()
            {
                continue;
            }
        }
        // A rule that never decides by matching may still decide by
        // failing (an evaluation error blocks): claimed only when removing
        // it changes no decision.
        match solver.check(logic, &with(vec![dec.differs(&m.decides_without(i))]), &[]) {
            Answer::Unsat => {}
            Answer::Sat(_) => continue,
            Answer::Unknown(why) => {
                unknown(
                    report,
                    Kind::Shadowed,
                    Some(&r.id),
                    "does the rule decide when it fails?".into(),
                    why,
                );
                continue;
            }
        }
        shadowed[i] = true;
        let candidates: Vec<&RuleModel> = if m.first_match {
            m.rules.iter().take(i).collect()
        } else {
            m.rules.iter().filter(|b| b.effect > r.effect).collect()
        };
        let mut cover = None;
        for b in candidates {
            let q = with(vec![
                r.holds.clone(),
                Term::not(b.holds.clone()),
                Term::not(b.fails.clone()),
            ]);
            if solver.check(logic, &q, &[]).is_unsat() {
                cover = Some(b);
                break;
            }
        }
        let site = site_of(policy, r, sites);
        let (message, other) = match cover {
            Some(b) => (
                format!(
                    "rule `{}` ({}) never takes effect for action `{}`: whenever it matches, rule `{}` ({}) {} it",
                    r.id,
                    effect_name(r.effect),
                    m.action,
                    b.id,
                    effect_name(b.effect),
                    if m.first_match { "comes first and decides before" } else { "matches too and overrides" }
                ),
                Some(b.id.clone()),
            ),
            None => (
                format!(
                    "rule `{}` ({}) never takes effect for action `{}`: whenever it matches, other rules (or their evaluation errors) decide",
                    r.id,
                    effect_name(r.effect),
                    m.action
                ),
                None,
            ),
        };
        report.findings.push(Finding {
            kind: Kind::Shadowed,
            severity: Level::Warning,
            actions: Vec::new(),
            action: Some(m.action.clone()),
            rule: Some(r.id.clone()),
            other,
            message,
            help: Some("narrow the overriding rule, or remove this one".into()),
            example: None,
            location: location(&site),
            site,
            ruleless: None,
        });
    }
    // 3. Duplicates and rules implied by another of the same effect.
    if !m.first_match {
        let mut pairs = 0usize;
        let mut reported = vec![false; m.rules.len()];
        'outer: for (i, r) in m.rules.iter().enumerate() {
            for (j, s) in m.rules.iter().enumerate().skip(i + 1) {
                if r.effect != s.effect
                    || can.get(i) != Some(&Some(true))
                    || can.get(j) != Some(&Some(true))
                    || shadowed[i]
                    || shadowed[j]
                    || reported[i]
                    || reported[j]
                    || r.index == s.index
                {
                    continue;
                }
                pairs += 1;
                if pairs > MAX_PAIRS {
                    unknown(
                        report,
                        Kind::Duplicate,
                        None,
                        "are some rules duplicates?".into(),
                        format!("more than {MAX_PAIRS} pairs of rules to compare"),
                    );
                    break 'outer;
                }
                let s_in_r = solver.check(logic, &with(vec![s.holds.clone(), Term::not(r.holds.clone())]), &[]);
                let r_in_s = solver.check(logic, &with(vec![r.holds.clone(), Term::not(s.holds.clone())]), &[]);
                let (kind, dup, orig) = match (s_in_r.is_unsat(), r_in_s.is_unsat()) {
                    (true, true) => (Kind::Duplicate, s, r),
                    (true, false) => (Kind::Redundant, s, r),
                    (false, true) => (Kind::Redundant, r, s),
                    (false, false) => continue,
                };
                let base = |r: &RuleModel| analysis::rule_file_index(policy, r.index);
                let layered = matches!((base(dup), base(orig)), (Some(d), Some(o)) if d < o);
                let kind = if kind == Kind::Redundant && layered {
                    Kind::RedundantBase
                } else {
                    kind
                };
                let message = match kind {
                    Kind::RedundantBase => format!(
                        "rule `{}` is covered for action `{}` by rule `{}` of a file loaded after it, with the same effect ({})",
                        dup.id,
                        m.action,
                        orig.id,
                        effect_name(dup.effect)
                    ),
                    Kind::Duplicate => format!(
                        "rule `{}` duplicates rule `{}` for action `{}`: both {} exactly the same requests",
                        dup.id,
                        orig.id,
                        m.action,
                        effect_name(dup.effect)
                    ),
                    _ => format!(
                        "rule `{}` is redundant for action `{}`: whenever it matches, rule `{}` matches too with the same effect ({})",
                        dup.id,
                        m.action,
                        orig.id,
                        effect_name(dup.effect)
                    ),
                };
                let k = if std::ptr::eq(dup, s) { j } else { i };
                // As for shadowed rules: the one to remove may decide by
                // failing where the other does not.
                match solver.check(logic, &with(vec![dec.differs(&m.decides_without(k))]), &[]) {
                    Answer::Unsat => {}
                    Answer::Sat(_) => continue,
                    Answer::Unknown(why) => {
                        unknown(
                            report,
                            kind,
                            Some(&dup.id),
                            "does the rule decide when it fails?".into(),
                            why,
                        );
                        continue;
                    }
                }
                if let Some(flag) = reported.get_mut(k) {
                    *flag = true;
                }
                let site = site_of(policy, dup, sites);
                report.findings.push(Finding {
                    kind,
                    severity: Level::Warning,
                    actions: Vec::new(),
                    action: Some(m.action.clone()),
                    rule: Some(dup.id.clone()),
                    other: Some(orig.id.clone()),
                    message,
                    help: Some(if kind == Kind::RedundantBase {
                        "decisions are the same; the later file's rule may stand alone, the base's stays for the policies that rely on it".into()
                    } else {
                        "remove one of them, or merge their conditions".into()
                    }),
                    example: None,
                    location: location(&site),
                    site,
                    ruleless: None,
                });
            }
        }
    }
    // 4. An action no rule can move off its default. When every rule of
    // the action has the default's own effect (`block` every
    // `create_directory` under `default: block`), the author says so on
    // purpose: not a finding.
    let stated = !m.rules.is_empty() && m.rules.iter().all(|r| r.effect == m.default);
    let escapes = if stated {
        Answer::Sat(Default::default())
    } else {
        solver.check(logic, &with(vec![Term::not(dec.effect(m.default).clone())]), &[])
    };
    match escapes {
        Answer::Unsat => {
            let message = if m.rules.is_empty() {
                format!(
                    "action `{}` has no rule: every request gets the default `{}`",
                    m.action,
                    effect_name(m.default)
                )
            } else {
                format!(
                    "action `{}` gets the default `{}` for every request: no rule can change it",
                    m.action,
                    effect_name(m.default)
                )
            };
            report.findings.push(Finding {
                kind: Kind::AlwaysDefault,
                severity: Level::Warning,
                actions: Vec::new(),
                action: Some(m.action.clone()),
                rule: None,
                other: None,
                message,
                help: Some("add a rule for the action, or remove it from the contracts".into()),
                ruleless: m.rules.is_empty().then_some(m.default),
                example: None,
                site: None,
                location: None,
            });
        }
        Answer::Sat(_) => {}
        Answer::Unknown(why) => unknown(
            report,
            Kind::AlwaysDefault,
            None,
            "does any request escape the default?".into(),
            why,
        ),
    }
    // 5. Allow rules over many actions while the default is stricter.
    if m.default != Effect::Allow {
        for (i, r) in m.rules.iter().enumerate() {
            if r.effect != Effect::Allow || can.get(i) != Some(&Some(true)) {
                continue;
            }
            let Some(site) = sites.iter().find(|s| s.id == r.id) else {
                continue;
            };
            let wide = site
                .targets
                .iter()
                .find(|(t, _)| t == "*" || t.contains(['*', '?', '[', '{']));
            let Some((target, span)) = wide else { continue };
            if report
                .findings
                .iter()
                .any(|f| f.kind == Kind::WideAllow && f.rule.as_deref() == Some(r.id.as_str()))
            {
                continue;
            }
            let always = r.holds == Term::Bool(true);
            report.findings.push(Finding {
                kind: Kind::WideAllow,
                severity: Level::Warning,
                actions: Vec::new(),
                action: None,
                rule: Some(r.id.clone()),
                other: None,
                message: format!(
                    "rule `{}` allows {}every action matching `{target}` while the default is `{}`",
                    r.id,
                    if always { "" } else { "(under its condition) " },
                    effect_name(m.default)
                ),
                help: Some("list the actions it is meant for: an action added later is allowed too".into()),
                example: None,
                location: Some((site.file.name().to_string(), site.file.line_col(span.start as usize).0)),
                site: Some((site.file.clone(), *span)),
                ruleless: None,
            });
        }
    }
    // 6. Conflicts: a request both an allow (or approval) rule and a block
    // rule match; shown with an example the engine confirms.
    if !m.first_match {
        let wanted = field_vars(logic);
        for (i, a) in m.rules.iter().enumerate() {
            if a.effect == Effect::Block || can.get(i) != Some(&Some(true)) || shadowed[i] {
                continue;
            }
            let kind = if a.effect == Effect::Allow {
                Kind::Conflict
            } else {
                Kind::ApprovalConflict
            };
            // Each example costs queries and engine decisions: not
            // searched for when nobody will see it.
            if config.level(kind) == Level::Allow {
                continue;
            }
            for (j, b) in m.rules.iter().enumerate() {
                if b.effect != Effect::Block || can.get(j) != Some(&Some(true)) || a.index == b.index {
                    continue;
                }
                let q = with(vec![a.holds.clone(), b.holds.clone()]);
                let found = crate::find_example(solver, logic, &q, &wanted, |values| {
                    let req = analysis::build_request(policy, logic, &m.action, values)?;
                    let d = confirm_decision(policy, &req)?;
                    let rules = d.rules();
                    (d.effect() == Effect::Block && rules.contains(&a.id.as_str()) && rules.contains(&b.id.as_str()))
                        .then(|| Example {
                            request: example_json(&req),
                        })
                });
                match found {
                    crate::Found::Confirmed(ex) => {
                        let site = site_of(policy, a, sites);
                        report.findings.push(Finding {
                            kind,
                            severity: Level::Warning,
                            actions: Vec::new(),
                            action: Some(m.action.clone()),
                            rule: Some(a.id.clone()),
                            other: Some(b.id.clone()),
                            message: format!(
                                "rules `{}` ({}) and `{}` (block) both match some requests of action `{}`; the block wins",
                                a.id,
                                effect_name(a.effect),
                                b.id,
                                m.action
                            ),
                            help: Some(format!(
                                "for example {}; the block is an exception to `{}` there (narrow `{}`'s condition if it is not meant to be)",
                                ex.request, a.id, a.id
                            )),
                            example: Some(ex.request),
                            location: location(&site),
                            site,
                            ruleless: None,
                        });
                    }
                    crate::Found::None => {}
                    crate::Found::Unconfirmed(why) | crate::Found::Unknown(why) => unknown(
                        report,
                        kind,
                        Some(&a.id),
                        format!("does rule `{}` conflict with rule `{}`?", a.id, b.id),
                        why,
                    ),
                }
            }
        }
    }
}
