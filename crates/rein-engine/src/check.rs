//! From the untyped tree to the compiled policy: merges files, resolves
//! contracts, expands rule targets, type-checks every condition for every
//! action it targets, and indexes rules by action.

pub(crate) mod contracts;
pub(crate) mod expr;
mod tool;

use crate::ast::LimitMeasure;
use crate::ast::{Combining, Effect, Phase, PolicyFile, Spanned};
use crate::diagnostics::{did_you_mean, Diagnostic, Severity};
use crate::ir::{ActionIr, Approval, CompiledPolicy, CompiledRule, RuleInfo};
use crate::source::SourceFile;
use crate::state::{Decimal, LimitInfo, LimitKind};
use crate::types::ObjectType;
use crate::value::Value;
pub(crate) use contracts::CHAIN_FIELD;
pub(crate) use contracts::{compile_glob, compile_regex, glob_builder};
use contracts::{open_actor, open_empty, ContractResolver};
use expr::{session_action, ExprChecker, Scope, SessionAction};
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The longest window when the policy sets no `max_window`.
pub(crate) const DEFAULT_MAX_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Compiles parsed files. Returns the policy when no error was found;
/// diagnostics (errors and warnings) go to `diags` either way.
pub(crate) fn compile(files: &[PolicyFile], diags: &mut Vec<Diagnostic>) -> Option<CompiledPolicy> {
    let sources: Vec<SourceFile> = files.iter().map(|f| f.source.clone()).collect();

    // Contracts: each of actor and snapshot declared at most once; each
    // action once. The policy files first: a contract a derived source
    // declares yields, whole, to one a policy file declares (among derived
    // sources, or among policy files, declaring one twice is an error).
    let mut actor: Option<Arc<ObjectType>> = None;
    let mut bound_actor: Vec<String> = Vec::new();
    // `actor.chain` is reserved in the native format only: Actra's files
    // load unchanged, whatever their actor declares.
    let native = files.iter().all(|f| f.combining == Combining::DenyOverrides);
    let mut snapshot: Option<Arc<ObjectType>> = None;
    let mut actions: Vec<ActionIr> = Vec::new();
    let mut action_index: FxHashMap<String, u32> = FxHashMap::default();
    let mut action_decl: Vec<(usize, crate::source::Span)> = Vec::new();
    let mut first_actor_file: Option<&PolicyFile> = None;
    let mut first_snapshot_file: Option<&PolicyFile> = None;
    // Actions whose `tool:` facts were refused (and reported).
    let mut tool_refused: rustc_hash::FxHashSet<u32> = Default::default();
    let in_order = files
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.derived)
        .chain(files.iter().enumerate().filter(|(_, f)| f.derived));
    for (fi, f) in in_order {
        let mut resolver = ContractResolver {
            file: f.source.clone(),
            diags,
        };
        if let Some(a) = &f.contracts.actor {
            match first_actor_file {
                Some(prev) if f.derived && !prev.derived => {}
                Some(prev) => resolver.diags.push(Diagnostic::error(
                    &f.source,
                    a.span,
                    format!(
                        "the actor contract is declared again (first in `{}`)",
                        prev.source.name()
                    ),
                )),
                None => {
                    first_actor_file = Some(f);
                    let (ty, bound) = resolver.actor_object(a, native);
                    actor = Some(ty);
                    bound_actor = bound;
                }
            }
        }
        if let Some(s) = &f.contracts.snapshot {
            match first_snapshot_file {
                Some(prev) if f.derived && !prev.derived => {}
                Some(prev) => resolver.diags.push(Diagnostic::error(
                    &f.source,
                    s.span,
                    format!(
                        "the snapshot contract is declared again (first in `{}`)",
                        prev.source.name()
                    ),
                )),
                None => {
                    first_snapshot_file = Some(f);
                    snapshot = Some(resolver.request_object("snapshot", s));
                }
            }
        }
        for c in &f.contracts.actions {
            if let Some(&id) = action_index.get(&c.name.value) {
                let (pf, ps) = action_decl[id as usize];
                if f.derived && !files[pf].derived {
                    continue;
                }
                let (line, _) = files[pf].source.line_col(ps.start as usize);
                resolver.diags.push(Diagnostic::error(
                    &f.source,
                    c.name.span,
                    format!(
                        "action `{}` has a contract already (in `{}` line {line})",
                        c.name.value,
                        files[pf].source.name()
                    ),
                ));
                continue;
            }
            let input = resolver.request_object(&format!("the input of `{}`", c.name.value), &c.input);
            let output = c
                .output
                .as_ref()
                .map(|o| resolver.object(&format!("the output of `{}`", c.name.value), o));
            let tool = c
                .tool
                .as_ref()
                .and_then(|t| tool::resolve(&f.source, &c.name.value, &t.value, resolver.diags));
            let id = u32::try_from(actions.len()).unwrap_or(u32::MAX);
            if c.tool.is_some() && tool.is_none() {
                tool_refused.insert(id);
            }
            action_index.insert(c.name.value.clone(), id);
            action_decl.push((fi, c.name.span));
            actions.push(ActionIr {
                name: Value::Str(c.name.value.as_str().into()),
                input,
                output,
                before: Vec::new(),
                after: Vec::new(),
                shadow_before: Vec::new(),
                shadow_after: Vec::new(),
                state_before: Default::default(),
                state_after: Default::default(),
                recorded: false,
                tool,
                flat: Default::default(),
            });
        }
    }
    let actor = actor.unwrap_or_else(|| if native { open_actor() } else { open_empty("actor") });
    let snapshot = snapshot.unwrap_or_else(|| open_empty("snapshot"));

    // The defaults: each set at most once. Before: block when unset (fail
    // closed). After: allow when unset, since the action already ran and an
    // `after` rule withholds its output only on a positive finding; the
    // output contract is checked either way.
    let default_effect = merged_default(files, |f| f.default.as_ref(), "default", diags).unwrap_or(Effect::Block);
    let default_after =
        merged_default(files, |f| f.default_after.as_ref(), "default.after", diags).unwrap_or(Effect::Allow);

    let version_label = merged_version_label(files);
    let max_window = merged_max_window(files, diags);

    // What session functions can name: every action, with the type of
    // one of its earlier calls.
    let session_actions: Vec<SessionAction> = actions
        .iter()
        .map(|a| session_action(a.name(), &a.input, a.output.as_ref()))
        .collect();
    // Per action whose calls some rule reads: the first such rule.
    let mut readers: FxHashMap<u32, u32> = FxHashMap::default();
    // The first rule that reads `session.labels`.
    let mut label_reader: Option<u32> = None;

    // Rules.
    let mut rules: Vec<RuleInfo> = Vec::new();
    let mut seen_ids: FxHashMap<&str, (usize, crate::source::Span)> = FxHashMap::default();
    let action_names: Vec<String> = actions.iter().map(|a| a.name().to_string()).collect();
    for f in files {
        for rule in &f.rules {
            let file = &f.source;
            if let Some(&(pf, ps)) = seen_ids.get(rule.id.value.as_str()) {
                let (line, _) = files[pf].source.line_col(ps.start as usize);
                diags.push(
                    Diagnostic::error(file, rule.id.span, format!("rule id `{}` is used twice", rule.id.value))
                        .with_help(format!(
                            "it was first used in `{}` line {line}; rule ids must be unique",
                            files[pf].source.name()
                        )),
                );
                continue;
            }
            seen_ids.insert(&rule.id.value, (rule.file, rule.id.span));

            // Expand targets to action ids.
            let mut targets: Vec<u32> = Vec::new();
            for t in &rule.targets {
                // A declared name is taken as written, even with glob
                // characters (Actra's action names are free text).
                if let Some(&id) = action_index.get(&t.value) {
                    targets.push(id);
                } else if t.value.contains(['*', '?', '[']) {
                    match globset::Glob::new(&t.value) {
                        Ok(g) => {
                            let m = g.compile_matcher();
                            let hits: Vec<u32> = action_names
                                .iter()
                                .enumerate()
                                .filter(|(_, n)| m.is_match(n.as_str()))
                                .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
                                .collect();
                            if hits.is_empty() {
                                diags.push(
                                    Diagnostic::error(file, t.span, format!("`{}` matches no action with a contract", t.value))
                                        .with_help("declare the actions under `contracts.actions`; a rule can only govern actions with a contract"),
                                );
                            }
                            targets.extend(hits);
                        }
                        Err(e) => diags.push(Diagnostic::error(
                            file,
                            t.span,
                            format!("invalid action glob `{}`: {}", t.value, e.kind()),
                        )),
                    }
                } else {
                    let d = Diagnostic::error(
                        file,
                        t.span,
                        format!(
                            "rule `{}` targets action `{}`, which has no contract",
                            rule.id.value, t.value
                        ),
                    );
                    let d = match did_you_mean(&t.value, action_names.iter().map(String::as_str)) {
                        // Renamed by the coding-agent hooks: say so, rather
                        // than suggest declaring an action no event carries.
                        _ if t.value == "tool.other" => d.with_help(
                            "`tool.other` was renamed: a tool Rein does not know (or a known tool with a field it does not know) is `agent.unknown_tool` (same input), a built-in tool with no effect outside the agent is `agent.internal` ({tool})",
                        ),
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d.with_help(format!(
                            "declare it under `contracts.actions` with its input fields, e.g. `{}: {{input: {{...}}}}`",
                            t.value
                        )),
                    };
                    diags.push(d);
                }
            }
            targets.sort_unstable();
            targets.dedup();

            let rule_index = u32::try_from(rules.len()).unwrap_or(u32::MAX);
            rules.push(RuleInfo {
                id: rule.id.value.clone(),
                effect: rule.effect.value,
                reason: rule.reason.clone(),
                approval: rule.approval.as_ref().map(|a| Approval {
                    role: a.role.value.clone(),
                    ttl_seconds: a.ttl_seconds.as_ref().map(|t| t.value),
                }),
                labels: rule.labels.iter().map(|l| l.value.clone()).collect(),
                file: rule.file,
                when_span: rule.when.as_ref().map(|w| w.span),
                limit: None,
                shadow: rule.shadow,
            });

            // Check the condition (and the limit, in its scope) once per
            // targeted action; the same mistake found for several actions
            // is reported once.
            let mut rule_diags: Vec<Diagnostic> = Vec::new();
            let mut limit_ok = true;
            for &aid in &targets {
                let Some(action) = actions.get(aid as usize) else {
                    continue;
                };
                let scope = Scope {
                    action: action.name(),
                    phase: rule.phase,
                    input: &action.input,
                    output: action.output.as_ref(),
                    actor: &actor,
                    snapshot: &snapshot,
                    tool: action.tool.as_ref().map(|t| &t.ty),
                    tool_refused: tool_refused.contains(&aid),
                    actions: &session_actions,
                    max_window,
                };
                let mut local = Vec::new();
                let mut checker = ExprChecker::new(file, &mut local, scope);
                let cond = rule.when.as_ref().map(|w| checker.condition(w));
                let limit = rule
                    .limit
                    .as_ref()
                    .and_then(|l| checker.limit(rule.when.as_ref(), l).map(Box::new));
                limit_ok &= rule.limit.is_none() || limit.is_some();
                let session = std::mem::take(&mut checker.session);
                for d in local {
                    if !rule_diags.iter().any(|x| x.span == d.span && x.message == d.message) {
                        rule_diags.push(d);
                    }
                }
                let compiled = CompiledRule {
                    rule: rule_index,
                    cond,
                    limit,
                };
                if rule.shadow {
                    // Kept out of the enforced lists and of what the state
                    // must hold: a shadow rule reads and writes no state,
                    // so enforcing its neighbours costs nothing more.
                    if session.reads || session.labels || !session.recorded.is_empty() {
                        let span = rule.when.as_ref().map_or(rule.span, |w| w.span);
                        let d = Diagnostic::error(
                            file,
                            span,
                            format!("rule `{}` is `mode: shadow` and reads the session", rule.id.value),
                        )
                        .with_help("a shadow rule reads no state: try it in a candidate policy (`rein serve --shadow`), or enforce the rule");
                        if !rule_diags.iter().any(|x| x.span == d.span && x.message == d.message) {
                            rule_diags.push(d);
                        }
                    }
                    if let Some(action) = actions.get_mut(aid as usize) {
                        match rule.phase {
                            Phase::Before => action.shadow_before.push(compiled),
                            Phase::After => action.shadow_after.push(compiled),
                        }
                    }
                    continue;
                }
                for &id in &session.recorded {
                    readers.entry(id).or_insert(rule_index);
                }
                if session.labels {
                    label_reader.get_or_insert(rule_index);
                }
                if let Some(action) = actions.get_mut(aid as usize) {
                    let needs = match rule.phase {
                        Phase::Before => &mut action.state_before,
                        Phase::After => &mut action.state_after,
                    };
                    if session.reads || compiled.limit.is_some() {
                        needs.reads = true;
                    }
                    // Labels are state only if some rule reads them (set
                    // below, once every rule is known): a policy that only
                    // names labels for its audit records stays stateless.
                    if compiled.limit.is_some() {
                        needs.writes = true;
                    }
                    if session.reads && needs.session_rule.is_none() {
                        needs.session_rule = Some(rule_index);
                    }
                    if !rule.labels.is_empty() && needs.labels_rule.is_none() {
                        needs.labels_rule = Some(rule_index);
                    }
                    match rule.phase {
                        Phase::Before => action.before.push(compiled),
                        Phase::After => action.after.push(compiled),
                    }
                }
            }
            // Past its limit an `allow` rule does not match, and the
            // default decides: under `default: allow` the call is allowed
            // all the same, so the limit would limit nothing.
            if let (Some(l), Effect::Allow, Effect::Allow) = (&rule.limit, rule.effect.value, default_effect) {
                diags.push(
                    Diagnostic::error(
                        file,
                        l.span,
                        format!(
                            "rule `{}` allows up to a limit, and the policy's default is `allow`: past the limit the default allows the call anyway",
                            rule.id.value
                        ),
                    )
                    .with_help("to refuse calls past the limit, give the rule `effect: block` (or `require_approval`)"),
                );
            }
            if let (Some(l), Some(info), true) = (&rule.limit, rules.last_mut(), limit_ok) {
                info.limit = Some(LimitInfo {
                    rule: info.id.clone(),
                    kind: match l.measure {
                        LimitMeasure::Count(_) => LimitKind::Count,
                        LimitMeasure::Sum { .. } => LimitKind::Sum,
                    },
                    max: match &l.measure {
                        LimitMeasure::Count(n) => Decimal::from(n.value),
                        LimitMeasure::Sum { max, .. } => max.value,
                    },
                    window: l.window.value,
                });
            }
            diags.extend(rule_diags);
        }
    }

    // An action whose calls some rule reads keeps them: its `before`
    // decisions record the call, its `after` decisions the output.
    for &id in readers.keys() {
        if let Some(a) = actions.get_mut(id as usize) {
            a.recorded = true;
            a.state_before.writes = true;
            a.state_after.writes = true;
        }
    }
    // Past its limit an `allow` rule does not match, so another `allow`
    // rule of the action without a condition or a limit lets the call
    // through all the same: the limit would limit nothing.
    let mut reported: Vec<u32> = Vec::new();
    for a in &actions {
        let is_allow = |r: &CompiledRule| rules.get(r.rule as usize).is_some_and(|i| i.effect == Effect::Allow);
        let Some(open) = a
            .before
            .iter()
            .find(|r| r.cond.is_none() && r.limit.is_none() && is_allow(r))
        else {
            continue;
        };
        let open_id = rules.get(open.rule as usize).map_or("?", |i| i.id.as_str());
        for r in &a.before {
            let (Some(limit), Some(info)) = (&r.limit, rules.get(r.rule as usize)) else {
                continue;
            };
            if info.effect != Effect::Allow || reported.contains(&r.rule) {
                continue;
            }
            let Some(source) = sources.get(info.file) else {
                continue;
            };
            reported.push(r.rule);
            diags.push(
                Diagnostic::error(
                    source,
                    limit.span,
                    format!(
                        "rule `{}` allows `{}` up to a limit, and rule `{open_id}` allows every call of it: past the limit the call is allowed anyway",
                        info.id,
                        a.name()
                    ),
                )
                .with_help("to refuse calls past the limit, give the rule `effect: block` (or `require_approval`)"),
            );
        }
    }
    // Dropping the session must not be a way around a flow rule: a call
    // that some rule reads later (as a call, or through the labels it
    // attaches) needs a session as much as a rule that reads one does.
    for (id, a) in actions.iter_mut().enumerate() {
        let reader = u32::try_from(id).ok().and_then(|id| readers.get(&id)).copied();
        for needs in [&mut a.state_before, &mut a.state_after] {
            if needs.labels_rule.is_some() && label_reader.is_some() {
                needs.writes = true;
            }
            if needs.session_rule.is_none() {
                needs.session_rule = reader.or(needs.labels_rule.and(label_reader));
            }
        }
    }
    let uses_state = actions
        .iter()
        .any(|a| a.state_before.reads || a.state_before.writes || a.state_after.reads || a.state_after.writes);

    if files.is_empty() {
        diags.push(Diagnostic::general("no policy files were given"));
    }
    let combining = files.first().map_or(Combining::DenyOverrides, |f| f.combining);
    if let Some(f) = files.iter().find(|f| f.combining != combining) {
        // Only a caller mixing native files with files read by another
        // reader gets here; the CLI never does.
        diags.push(Diagnostic::general(format!(
            "`{}` cannot be merged with `{}`: their rules combine differently",
            f.source.name(),
            files.first().map_or("", |f| f.source.name())
        )));
    }
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return None;
    }
    let contracts_fingerprint = contracts_fingerprint(&actions, &actor, &snapshot);
    let mut compiled = CompiledPolicy {
        contracts_fingerprint,
        actions,
        action_index,
        actor,
        bound_actor,
        snapshot,
        rules,
        default: default_effect,
        default_after,
        combining,
        version_hash: version_hash(files),
        version_label,
        max_window,
        uses_state,
        derived: files.iter().map(|f| f.derived).collect(),
        files: sources,
    };
    crate::flat::build_all(&mut compiled);
    Some(compiled)
}

/// BLAKE3 of what preparing a request reads of a policy: every action's
/// name, input and output contracts and `tool:` facts, in action-id order,
/// and the actor and snapshot contracts. Two policies with the same
/// fingerprint turn a request into the same action id and typed values, so
/// a request prepared by one decides under the other
/// (`Prepared::under`, shadow mode). `None` if they cannot be encoded.
fn contracts_fingerprint(
    actions: &[ActionIr],
    actor: &Arc<ObjectType>,
    snapshot: &Arc<ObjectType>,
) -> Option<[u8; 32]> {
    let parts = (
        actions
            .iter()
            .map(|a| (&a.name, &a.input, &a.output, &a.tool))
            .collect::<Vec<_>>(),
        actor,
        snapshot,
    );
    let bytes = postcard::to_stdvec(&parts).ok()?;
    Some(*blake3::hash(&bytes).as_bytes())
}

fn merged_default(
    files: &[PolicyFile],
    get: impl Fn(&PolicyFile) -> Option<&Spanned<Effect>>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Effect> {
    let mut found: Option<(Effect, &SourceFile)> = None;
    for f in files {
        let Some(d) = get(f) else { continue };
        match found {
            Some((prev, pf)) if prev != d.value => diags.push(Diagnostic::error(
                &f.source,
                d.span,
                format!("`{what}` is `{}` here but `{prev}` in `{}`", d.value, pf.name()),
            )),
            Some(_) => {}
            None => found = Some((d.value, &f.source)),
        }
    }
    found.map(|(e, _)| e)
}

/// The `max_window` the files set (all that set it must agree), else
/// [`DEFAULT_MAX_WINDOW`].
fn merged_max_window(files: &[PolicyFile], diags: &mut Vec<Diagnostic>) -> jiff::SignedDuration {
    let mut found: Option<(jiff::SignedDuration, &SourceFile)> = None;
    for f in files {
        let Some(w) = &f.max_window else { continue };
        match found {
            Some((prev, pf)) if prev != w.value => diags.push(Diagnostic::error(
                &f.source,
                w.span,
                format!(
                    "`max_window` is {} here but {} in `{}`",
                    crate::value::format_duration(w.value),
                    crate::value::format_duration(prev),
                    pf.name()
                ),
            )),
            Some(_) => {}
            None => found = Some((w.value, &f.source)),
        }
    }
    found.map_or(DEFAULT_MAX_WINDOW, |(w, _)| w)
}

/// SHA-256 over the sorted hashes of the file texts: the same files give the
/// same version whatever their order or names. A derived source's text is
/// hashed as such: the same text as a policy file means something else
/// (its contracts yield), so it must not give the same version.
fn version_hash(files: &[PolicyFile]) -> String {
    sources_version_hash(files.iter().map(|f| (f.source.text(), f.derived)))
}

/// [`version_hash`] over texts and their derived marks: what
/// `Policy::version_of` checks stored sources with.
pub(crate) fn sources_version_hash<'a>(sources: impl Iterator<Item = (&'a str, bool)>) -> String {
    let mut file_hashes: Vec<[u8; 32]> = sources
        .map(|(text, derived)| {
            let mut h = Sha256::new();
            if derived {
                h.update(b"rein-derived-source\n");
            }
            h.update(text.as_bytes());
            h.finalize().into()
        })
        .collect();
    file_hashes.sort_unstable();
    let mut h = Sha256::new();
    h.update(b"rein-policy-v1\n");
    for fh in &file_hashes {
        h.update(fh);
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The `version` labels of the files, distinct and sorted (so the order the
/// files are given in does not matter, as for the version hash), joined with
/// ` + ` (`billing-3 + hooks-1.2`); `None` when no file has one. A policy
/// split over files that each carry a label shows all of them, so none is
/// hidden behind another.
fn merged_version_label(files: &[PolicyFile]) -> Option<String> {
    let mut labels: Vec<&str> = files
        .iter()
        .filter_map(|f| f.version.as_ref())
        .map(|v| v.value.as_str())
        .collect();
    labels.sort_unstable();
    labels.dedup();
    (!labels.is_empty()).then(|| labels.join(" + "))
}
