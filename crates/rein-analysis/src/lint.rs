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
    /// Every request the contract accepts gets the default effect.
    AlwaysDefault,
    /// An `allow` rule targets every action or a wide glob while the
    /// default is stricter.
    WideAllow,
    /// Some request matches both an allow (or approval) rule and a block
    /// rule; the block wins. Shown with a confirmed example.
    Conflict,
}

/// One problem found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// Its kind.
    pub kind: Kind,
    /// The action it is about (`None` when it holds for every action the
    /// rule targets).
    pub action: Option<String>,
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
}

impl Finding {
    /// The finding as a warning diagnostic, rendered like load warnings.
    pub fn diagnostic(&self) -> Diagnostic {
        let mut d = match &self.site {
            Some((file, span)) => Diagnostic::error(file, *span, self.message.clone()).warning(),
            None => Diagnostic::general(self.message.clone()).warning(),
        };
        if let Some(h) = &self.help {
            d = d.with_help(h.clone());
        }
        d
    }
}

/// A question the solver could not answer in time.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Unknown {
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

/// Lints the `before` rules of every action of `policy`.
pub fn lint(policy: &Policy, solver: &mut Solver) -> LintReport {
    let mut logic = Logic::new();
    let models = analysis::lower(policy, &mut logic);
    let sites = analysis::rule_sites(policy);
    let mut report = LintReport::default();
    let mut never: Vec<(String, usize, Vec<String>, bool)> = Vec::new();
    for m in &models {
        lint_action(policy, &logic, m, &sites, solver, &mut report, &mut never);
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
                action: (actions.len() == 1).then(|| actions.first().cloned().unwrap_or_default()),
                rule: Some(id.clone()),
                other: None,
                message: format!(
                    "rule `{id}` can never match: no request its contract accepts satisfies its condition"
                ),
                help: Some("check the condition against the contract's types and bounds, or remove the rule".into()),
                example: None,
                location: location(&site),
                site,
            });
        } else {
            for a in actions {
                report.findings.push(Finding {
                    kind: Kind::NeverMatches,
                    action: Some(a.clone()),
                    rule: Some(id.clone()),
                    other: None,
                    message: format!("rule `{id}` can never match for action `{a}`"),
                    help: Some("narrow the rule's `action:` or fix its condition for this action".into()),
                    example: None,
                    location: location(&site),
                    site: site.clone(),
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
    report.solver = solver.stats;
    report
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
    report: &mut LintReport,
    never: &mut Vec<(String, usize, Vec<String>, bool)>,
) {
    let d = m.contract.clone();
    let with = |parts: Vec<Term>| {
        let mut all = vec![d.clone()];
        all.extend(parts);
        Term::and(all)
    };
    let unknown = |report: &mut LintReport, rule: Option<&str>, question: String, reason: String| {
        report.unknown.push(Unknown {
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
                unknown(report, Some(&r.id), "can the rule match?".into(), why);
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
                unknown(report, Some(&r.id), "can the rule decide?".into(), why);
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
                unknown(report, Some(&r.id), "does the rule decide when it fails?".into(), why);
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
            action: Some(m.action.clone()),
            rule: Some(r.id.clone()),
            other,
            message,
            help: Some("narrow the overriding rule, or remove this one".into()),
            example: None,
            location: location(&site),
            site,
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
                let message = match kind {
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
                        unknown(report, Some(&dup.id), "does the rule decide when it fails?".into(), why);
                        continue;
                    }
                }
                if let Some(flag) = reported.get_mut(k) {
                    *flag = true;
                }
                let site = site_of(policy, dup, sites);
                report.findings.push(Finding {
                    kind,
                    action: Some(m.action.clone()),
                    rule: Some(dup.id.clone()),
                    other: Some(orig.id.clone()),
                    message,
                    help: Some("remove one of them, or merge their conditions".into()),
                    example: None,
                    location: location(&site),
                    site,
                });
            }
        }
    }
    // 4. An action no rule can move off its default.
    match solver.check(logic, &with(vec![Term::not(dec.effect(m.default).clone())]), &[]) {
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
                action: Some(m.action.clone()),
                rule: None,
                other: None,
                message,
                help: Some("add a rule for the action, or remove it from the contracts".into()),
                example: None,
                site: None,
                location: None,
            });
        }
        Answer::Sat(_) => {}
        Answer::Unknown(why) => unknown(report, None, "does any request escape the default?".into(), why),
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
                            kind: Kind::Conflict,
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
                                "for example {}; if that is intended, exclude it from `{}`'s condition",
                                ex.request, a.id
                            )),
                            example: Some(ex.request),
                            location: location(&site),
                            site,
                        });
                    }
                    crate::Found::None => {}
                    crate::Found::Unconfirmed(why) | crate::Found::Unknown(why) => unknown(
                        report,
                        Some(&a.id),
                        format!("does rule `{}` conflict with rule `{}`?", a.id, b.id),
                        why,
                    ),
                }
            }
        }
    }
}
