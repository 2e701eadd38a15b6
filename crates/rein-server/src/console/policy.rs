//! The policy pages (admins): the loaded version and its rules by action,
//! and the playground, which decides a typed request against the loaded
//! policy or a pasted draft with the explanation, and shows a draft's load
//! diagnostics. The playground explains only: it writes no audit record,
//! no state and no approval.

use super::{csrf_input, page, ConsoleError, Posted, Signed};
use crate::auth::Role;
use crate::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use rein_engine::{Diagnostic, Policy, Request, Severity};
use serde_json::Value;
use std::collections::BTreeMap;

/// Largest request text the playground takes, in bytes.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest draft policy the playground takes, in bytes.
const MAX_DRAFT_BYTES: usize = 128 * 1024;
/// Most rules the policy page lists.
const MAX_RULES_SHOWN: usize = 2000;
/// Most diagnostics of a draft shown.
const MAX_DIAGNOSTICS: usize = 100;

/// How long the playground waits for a draft: three quarters of the
/// server's request timeout, so that the page answers first.
fn playground_deadline(request_timeout: std::time::Duration) -> std::time::Duration {
    request_timeout.saturating_mul(3) / 4
}

/// The policy pages' routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/policy", get(show))
        .route("/policy/playground", get(playground).post(decide))
}

/// One rule as the policy page lists it.
struct RuleRow {
    id: String,
    effect: String,
    condition: Option<String>,
    file: String,
    line: usize,
}

/// The loaded policy's rules grouped by the action targets they name (as
/// written: names, globs, `*`).
fn rules_by_action(policy: &Policy) -> BTreeMap<String, Vec<RuleRow>> {
    let mut by: BTreeMap<String, Vec<RuleRow>> = BTreeMap::new();
    for site in rein_engine::analysis::rule_sites(policy)
        .into_iter()
        .take(MAX_RULES_SHOWN)
    {
        let text = site.file.text();
        let condition = site
            .when
            .and_then(|w| text.get(w.start as usize..w.end as usize))
            .map(str::to_string);
        let (line, _) = site.file.line_col(site.span.start as usize);
        let effect = rein_engine::compare::rule_effect(policy, &site.id).map_or("?", |e| e.as_str());
        for (target, _) in &site.targets {
            by.entry(target.clone()).or_default().push(RuleRow {
                id: site.id.clone(),
                effect: effect.to_string(),
                condition: condition.clone(),
                file: site.file.name().to_string(),
                line,
            });
        }
    }
    by
}

async fn show(State(state): State<AppState>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(Role::Admin)?;
    let policy = state.runtime().policy();
    let rules = tokio::task::spawn_blocking({
        let policy = std::sync::Arc::clone(&policy);
        move || rules_by_action(&policy)
    })
    .await
    .map_err(|e| ConsoleError::unavailable(format!("the rules could not be read: {e}")).to(&signed))?;
    let body = html! {
        dl.facts {
            dt { "Version label" } dd #policy-label { (policy.version_label().unwrap_or("(none)")) }
            dt { "Version hash" } dd #policy-hash { code { (policy.version()) } }
            dt { "Rules" } dd { (policy.rule_count()) }
            dt { "Actions" } dd { (policy.actions().collect::<Vec<_>>().join(", ")) }
        }
        p { a href="/console/policy/playground" { "Open the playground" } }
        h2 { "Rules by action" }
        @if rules.is_empty() {
            p { "No rules are listed for this policy (its files are not in Rein's own format)." }
        }
        @for (i, (action, rows)) in rules.iter().enumerate() {
            section.action aria-labelledby=(slug(i, action)) {
                h3 id=(slug(i, action)) { code { (action) } }
                div.table-wrap {
                    table.stack {
                        thead { tr { th scope="col" { "Rule" } th scope="col" { "Effect" } th scope="col" { "When" } th scope="col" { "Where" } } }
                        tbody {
                            @for r in rows {
                                tr data-rule=(r.id) {
                                    td data-label="Rule" { code { (r.id) } }
                                    td data-label="Effect" { span class={ "effect-" (r.effect) } { (r.effect) } }
                                    td data-label="When" { @if let Some(c) = &r.condition { code { (c) } } @else { span.muted { "always" } } }
                                    td data-label="Where" { (r.file) ":" (r.line) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if policy.rule_count() > MAX_RULES_SHOWN {
            p.hint { "The first " (MAX_RULES_SHOWN) " rules are listed." }
        }
    };
    Ok(page(Some(&signed), "Policy", body).into_response())
}

/// The HTML id of the `i`-th action target's heading: readable, and
/// unique by its index (`file.*` and `file-*` read alike).
fn slug(i: usize, text: &str) -> String {
    let readable: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("action-{i}-{readable}")
}

const EXAMPLE_REQUEST: &str = r#"{
  "action": "refund",
  "input": {"order_id": "ord_abc123", "amount": 50, "currency": "EUR"},
  "actor": {"id": "bot-1", "role": "agent"},
  "snapshot": {"fraud_flag": false, "refunds_today": 0, "account_age_days": 400}
}"#;

fn form(signed: &Signed, request: &str, draft: &str) -> Markup {
    html! {
        form.card method="post" action="/console/policy/playground" {
            (csrf_input(signed))
            label for="pg-request" { "Request (JSON)" }
            textarea.code #pg-request name="request" required spellcheck="false" { (request) }
            label for="pg-policy" { "Draft policy (YAML, optional)" }
            textarea.code #pg-policy name="policy" spellcheck="false" { (draft) }
            p.hint { "Empty: the loaded policy decides. Nothing is recorded: no audit record, no state, no approval." }
            button type="submit" { "Decide" }
        }
    }
}

async fn playground(signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(Role::Admin)?;
    let body = form(&signed, EXAMPLE_REQUEST, "");
    Ok(page(Some(&signed), "Playground", body).into_response())
}

/// What the playground found.
enum Result_ {
    /// The request did not parse.
    BadRequest(String),
    /// The draft did not load: its diagnostics.
    DraftInvalid(Vec<Diagnostic>),
    /// The explanation (`{"decision", "rules"}`), what decided, and the
    /// draft's warnings.
    Explained {
        json: Value,
        against: String,
        warnings: Vec<Diagnostic>,
    },
}

async fn decide(State(state): State<AppState>, posted: Posted) -> Result<Response, ConsoleError> {
    let signed = &posted.signed;
    signed.require(Role::Admin)?;
    let request_text = posted.form.get("request").unwrap_or_default();
    let draft = posted.form.get("policy").unwrap_or_default();
    if request_text.len() > MAX_REQUEST_BYTES {
        return Err(
            ConsoleError::bad_request(format!("the request is larger than {MAX_REQUEST_BYTES} bytes")).to(signed),
        );
    }
    if draft.len() > MAX_DRAFT_BYTES {
        return Err(
            ConsoleError::bad_request(format!("the draft policy is larger than {MAX_DRAFT_BYTES} bytes")).to(signed),
        );
    }
    let result = match Request::from_json_str(request_text) {
        Err(e) => Result_::BadRequest(e.to_string()),
        Ok(request) if draft.trim().is_empty() => {
            // The loaded policy, with the state as it is: explain reserves,
            // writes and records nothing.
            let explained = state.runtime().explain_bound_async(request, None, None).await;
            let policy = state.runtime().policy();
            Result_::Explained {
                json: explained.to_json(),
                against: format!(
                    "the loaded policy {} ({})",
                    policy.version_label().unwrap_or("without a label"),
                    policy.version()
                ),
                warnings: Vec::new(),
            }
        }
        Ok(request) => {
            // At most PLAYGROUND_SLOTS drafts compile at once: a draft's
            // regexes can cost seconds of CPU, and a compile cannot be
            // stopped once started.
            let Some(permit) = state.console().playground_permit() else {
                return Err(ConsoleError::unavailable(
                    "the playground is busy: other drafts are being compiled; try again in a moment",
                )
                .to(signed));
            };
            let draft = draft.to_string();
            // Compiling is CPU work: off the async threads. A draft is
            // decided without state (its limits and sessions count nothing).
            let loaded = tokio::task::spawn_blocking(move || {
                // Held until the compile ends, even when the page has
                // answered "took too long": the cap counts running work.
                let _permit = permit;
                match Policy::from_sources([("draft.yaml", draft)]) {
                    Err(e) => Result_::DraftInvalid(e.diagnostics().to_vec()),
                    Ok(policy) => Result_::Explained {
                        json: policy.explain(&request).to_json(),
                        against: format!(
                            "the draft {} ({})",
                            policy.version_label().unwrap_or("without a label"),
                            policy.version()
                        ),
                        warnings: policy.warnings().to_vec(),
                    },
                }
            });
            // Answer with a page before the server's request timeout does
            // (its answer is the API's JSON).
            let deadline = playground_deadline(state.inner.request_timeout);
            match tokio::time::timeout(deadline, loaded).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => {
                    return Err(ConsoleError::unavailable(format!("the draft could not be loaded: {e}")).to(signed))
                }
                Err(_) => {
                    return Err(ConsoleError::unavailable(format!(
                        "compiling the draft took too long (more than {} ms); simplify its patterns",
                        deadline.as_millis()
                    ))
                    .to(signed))
                }
            }
        }
    };
    let body = html! {
        (form(signed, request_text, draft))
        section aria-labelledby="result" {
            h2 #result { "Result" }
            @match &result {
                Result_::BadRequest(why) => {
                    p.error role="alert" { "The request does not parse: " (why) }
                }
                Result_::DraftInvalid(diagnostics) => {
                    p.error role="alert" { "The draft policy does not load." }
                    (diagnostic_list(diagnostics))
                }
                Result_::Explained { json, against, warnings } => {
                    (explanation(json, against))
                    @if !warnings.is_empty() {
                        h3 { "Draft warnings" }
                        (diagnostic_list(warnings))
                    }
                }
            }
        }
    };
    Ok(page(Some(signed), "Playground", body).into_response())
}

/// A load's diagnostics with their spans (file, line, column).
fn diagnostic_list(diagnostics: &[Diagnostic]) -> Markup {
    html! {
        h3 { "Diagnostics" }
        ol.diagnostics {
            @for d in diagnostics.iter().take(MAX_DIAGNOSTICS) {
                li data-severity=(severity(d.severity)) {
                    strong { (severity(d.severity)) }
                    @if let Some((file, line, column)) = d.location() {
                        " at " code.span { (file) ":" (line) ":" (column) }
                        " (line " (line) ", column " (column) ")"
                    }
                    ": " (d.message)
                    @if let Some(help) = &d.help { br; span.hint { "help: " (help) } }
                }
            }
        }
        @if diagnostics.len() > MAX_DIAGNOSTICS {
            p.hint { "The first " (MAX_DIAGNOSTICS) " diagnostics are shown." }
        }
    }
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        _ => "note",
    }
}

/// An explanation (`{"decision": ..., "rules": [...]}`), rule by rule.
pub(crate) fn explanation(json: &Value, against: &str) -> Markup {
    let decision = &json["decision"];
    let effect = decision["effect"].as_str().unwrap_or("block");
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let rules = json["rules"].as_array().cloned().unwrap_or_default();
    html! {
        dl.facts {
            dt { "Effect" } dd #effect { span class={ "effect-" (effect) } { (effect) } }
            dt { "Decided by" } dd { (against) }
            dt { "Matched rules" } dd { (list(&decision["rules"]).join(", ")) }
            dt { "Reasons" } dd { (list(&decision["reasons"]).join("; ")) }
            @if decision["default_applied"].as_bool() == Some(true) {
                dt { "Default" } dd { "no rule matched: the policy's default decided" }
            }
            @if let Some(v) = decision.get("violation") {
                dt { "Contract" } dd { code { (v.to_string()) } }
            }
        }
        h3 { "Explanation" }
        @if rules.is_empty() {
            p { "No rule was considered." }
        } @else {
            ol.explanation {
                @for r in &rules {
                    li data-rule=(r["id"].as_str().unwrap_or_default()) {
                        code { (r["id"].as_str().unwrap_or_default()) }
                        " (" (r["effect"].as_str().unwrap_or_default()) "): "
                        @match r["outcome"]["result"].as_str() {
                            Some("matched") => { strong.ok { "matched" } }
                            Some("not_matched") => { "not matched" }
                            _ => { strong.error { "error: " (r["outcome"]["error"].as_str().unwrap_or_default()) } }
                        }
                        @if r["shadow"].as_bool() == Some(true) { " (shadow)" }
                        @if let Some(c) = r["condition"].as_str() {
                            br; "when " code { (c) }
                        }
                        @if let Some(steps) = r["steps"].as_array().filter(|s| !s.is_empty()) {
                            ul.steps {
                                @for s in steps {
                                    li { code { (s["expr"].as_str().unwrap_or_default()) } " = " code { (s["value"].to_string()) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn action_ids_are_unique() {
        let targets = ["file.*", "file-*", "a.b", "a-b", "*"];
        let ids: std::collections::BTreeSet<String> =
            targets.iter().enumerate().map(|(i, t)| super::slug(i, t)).collect();
        assert_eq!(ids.len(), targets.len(), "{ids:?}");
        assert!(ids
            .iter()
            .all(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
    }
}
