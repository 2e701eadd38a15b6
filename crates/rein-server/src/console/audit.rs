//! The audit log pages, nested at `/console/audit` (admins only: the
//! console's router checks the role before any of these routes; each
//! handler still takes [`super::Signed`] and re-checks).
//!
//! - `/console/audit`: the filter form and the records, newest first,
//!   [`PAGE`] at a time, paged by keyset (`before={seq}`: the records
//!   below the last one shown), so a page costs the same on the millionth
//!   record as on the first (the store has an index per filter).
//! - `/console/audit/export`: the filtered set as JSON Lines (the API's
//!   export, see [`crate::audit_export`]).
//! - `/console/audit/{seq}`: one record in full, its matched rules, its
//!   explanation re-run where the recorded request can be rebuilt, and
//!   whether the chain verifies from record 1 through it.
//!
//! The chain status comes from a walk of the chain kept per store in
//! memory ([`ChainWalk`]): how far from record 1 this server has checked
//! it (each record's body against its hash, each record's link to the one
//! before) and the hash it reached. A page view asks the walk to reach its
//! record and waits a little ([`CHAIN_WAIT`]); the walk goes on in the
//! background, so the first view of a deep record on a large log may say
//! "still checking", and later views, and every record below, are
//! answered from memory. A record is never called verified on an error.

use super::{page, ConsoleError, Signed};
use crate::audit_export::{self, AuditFilters};
use crate::auth::Role;
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use rein_engine::{Outcome, Phase, Policy, Request};
use rein_store::chain::GENESIS;
use rein_store::redact::REDACTED_PREFIX;
use rein_store::{AuditQuery, AuditRecord, Store};
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Records per page of the list.
pub(crate) const PAGE: u64 = 50;
/// Records read per step of the chain walk: each is parsed whole, and a
/// record may be as large as a request body, so a step stays small.
const WALK_PAGE: u64 = 256;
/// How long a record's page waits for the chain walk to reach it before
/// it says the walk is still under way.
const CHAIN_WAIT: Duration = Duration::from_millis(100);

/// The audit pages' routes, relative to `/console/audit` (`/` is the list).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(list))
        .route("/export", get(export))
        .route("/{seq}", get(show))
}

/// The list's query: the filter form's fields and the keyset.
#[derive(Clone, Debug, Default, Deserialize)]
struct ListParams {
    since: Option<String>,
    until: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    effect: Option<String>,
    rule: Option<String>,
    session: Option<String>,
    decision_id: Option<String>,
    /// Records below this sequence number (the "Older" link).
    before: Option<String>,
}

impl ListParams {
    fn filters(&self) -> AuditFilters {
        AuditFilters {
            since: self.since.clone(),
            until: self.until.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            effect: self.effect.clone(),
            rule: self.rule.clone(),
            session: self.session.clone(),
            decision_id: self.decision_id.clone(),
            ..AuditFilters::default()
        }
    }

    /// The filters given (not empty) as `(name, value)`, in form order.
    fn given(&self) -> Vec<(&'static str, &str)> {
        [
            ("since", &self.since),
            ("until", &self.until),
            ("actor", &self.actor),
            ("action", &self.action),
            ("effect", &self.effect),
            ("rule", &self.rule),
            ("session", &self.session),
            ("decision_id", &self.decision_id),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (name, v)))
        .collect()
    }

    /// The query string of the filters given, plus `extra`.
    fn link(&self, extra: &[(&str, &str)]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.given() {
            s.append_pair(name, value);
        }
        for (name, value) in extra {
            s.append_pair(name, value);
        }
        s.finish()
    }
}

fn params(
    signed: &Signed,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<ListParams, ConsoleError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ConsoleError::bad_request(e.body_text()).to(signed))
}

async fn list(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ConsoleError> {
    signed.require(Role::Admin)?;
    let p = params(&signed, query)?;
    let before = match p.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(
            b.parse::<u64>()
                .map_err(|_| ConsoleError::bad_request("`before` must be a record number").to(&signed))?,
        ),
    };
    let mut q = p
        .filters()
        .to_query()
        .map_err(|e| ConsoleError::bad_request(e.message()).to(&signed))?;
    q.before_seq = before;
    q.descending = true;
    // One more than shown: whether an older page exists.
    q.limit = Some(PAGE + 1);
    let store = state.runtime().store();
    let mut records = store
        .query_audit(&q)
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?;
    let older = records.len() as u64 > PAGE;
    records.truncate(PAGE as usize);
    // Start checking the chain now, so that a record opened from this page
    // is likely checked already.
    if let Some(newest) = records.first() {
        ChainWalk::of(store).reach(store, newest.seq);
    }
    let body = html! {
        form.filters method="get" action="/console/audit" {
            (field("since", "Since", p.since.as_deref(), Some("RFC 3339, e.g. 2026-01-31T12:00:00Z")))
            (field("until", "Until", p.until.as_deref(), Some("RFC 3339; records before it")))
            (field("actor", "Actor", p.actor.as_deref(), None))
            (field("action", "Action", p.action.as_deref(), None))
            (field("effect", "Effect", p.effect.as_deref(), Some("allow, block or require_approval")))
            (field("rule", "Rule", p.rule.as_deref(), None))
            (field("session", "Session", p.session.as_deref(), None))
            @if let Some(d) = p.decision_id.as_deref().filter(|d| !d.is_empty()) {
                input type="hidden" name="decision_id" value=(d);
            }
            div { button type="submit" { "Filter" } }
        }
        p.pager {
            a href={ "/console/audit/export?" (p.link(&[])) } download { "Export JSON Lines" }
            @if before.is_some() {
                a href={ "/console/audit?" (p.link(&[])) } { "Newest" }
            }
        }
        @if records.is_empty() {
            p { "No records match." }
        } @else {
            div.table-wrap {
                table.stack {
                    caption.muted { "Newest first" }
                    thead { tr {
                        th scope="col" { "Record" } th scope="col" { "Time" } th scope="col" { "Phase" }
                        th scope="col" { "Action" } th scope="col" { "Actor" } th scope="col" { "Effect" }
                        th scope="col" { "Rules" } th scope="col" { "Session" }
                    } }
                    tbody {
                        @for r in &records {
                            tr data-seq=(r.seq) {
                                td data-label="Record" { a href={ "/console/audit/" (r.seq) } { (r.seq) } }
                                td data-label="Time" { (r.entry.time) }
                                td data-label="Phase" { (r.entry.phase) }
                                td data-label="Action" { (r.entry.action) }
                                td data-label="Actor" { (actor_id(r)) }
                                td data-label="Effect" { span class={ "effect-" (r.entry.effect) } { (r.entry.effect) } }
                                td data-label="Rules" { (r.entry.rules.join(", ")) }
                                td data-label="Session" { (r.entry.session.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        @if older {
            @if let Some(last) = records.last() {
                p.pager {
                    a href={ "/console/audit?" (p.link(&[("before", &last.seq.to_string())])) } rel="next" { "Older" }
                }
            }
        }
    };
    Ok(page(Some(&signed), "Audit log", body).into_response())
}

/// A labelled text input of the filter form.
fn field(name: &str, label: &str, value: Option<&str>, hint: Option<&str>) -> Markup {
    let id = format!("f-{name}");
    let hint_id = format!("{id}-hint");
    html! {
        div {
            label for=(id) { (label) }
            @if let Some(hint) = hint {
                input type="text" id=(id) name=(name) value=(value.unwrap_or("")) aria-describedby=(hint_id);
                small.hint id=(hint_id) { (hint) }
            } @else {
                input type="text" id=(id) name=(name) value=(value.unwrap_or(""));
            }
        }
    }
}

/// The actor's `id` if it is a string, else the actor as JSON.
fn actor_id(r: &AuditRecord) -> String {
    match r.entry.actor.get("id").and_then(|v| v.as_str()) {
        Some(id) => id.to_owned(),
        None if r.entry.actor.is_null() => String::new(),
        None => r.entry.actor.to_string(),
    }
}

async fn export(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ConsoleError> {
    signed.require(Role::Admin)?;
    let p = params(&signed, query)?;
    let q = p
        .filters()
        .to_query()
        .map_err(|e| ConsoleError::bad_request(e.message()).to(&signed))?;
    audit_export::export(Arc::clone(state.runtime().store()), q)
        .await
        .map_err(|e| ConsoleError::unavailable(e.message()).to(&signed))
}

async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(seq): Path<String>,
) -> Result<Response, ConsoleError> {
    signed.require(Role::Admin)?;
    let not_found = || ConsoleError::not_found(format!("there is no audit record {seq}")).to(&signed);
    let n = seq.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(not_found)?;
    let store = state.runtime().store();
    let record = store
        .query_audit(&AuditQuery {
            after_seq: Some(n - 1),
            limit: Some(1),
            ..AuditQuery::default()
        })
        .await
        .map_err(|e| ConsoleError::unavailable(e.to_string()).to(&signed))?
        .into_iter()
        .find(|r| r.seq == n)
        .ok_or_else(not_found)?;
    let chain = ChainWalk::of(store).status(store, n).await;
    let explained = explain(&state, &record).await;
    let full = serde_json::to_string_pretty(&record).unwrap_or_else(|e| format!("(cannot be shown: {e})"));
    let e = &record.entry;
    let filter_link = |name: &str, value: &str| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair(name, value);
        format!("/console/audit?{}", s.finish())
    };
    let body = html! {
        p { a href="/console/audit" { "Back to the audit log" } }
        dl.facts {
            dt { "Time" } dd { (e.time) }
            dt { "Phase" } dd { (e.phase) }
            dt { "Action" } dd { a href=(filter_link("action", &e.action)) { (e.action) } }
            dt { "Actor" } dd {
                @let id = actor_id(&record);
                @if id.is_empty() { "none" } @else { a href=(filter_link("actor", &id)) { (id) } }
            }
            dt { "Effect" } dd { span class={ "effect-" (e.effect) } { (e.effect) } }
            dt { "Session" } dd {
                @if let Some(s) = &e.session { a href=(filter_link("session", s)) { (s) } } @else { "none" }
            }
            dt { "Decision" } dd { a href=(filter_link("decision_id", &e.decision_id)) { code { (e.decision_id) } } }
            dt { "Policy version" } dd {
                code { (e.policy_version) }
                @if let Some(label) = &e.policy_version_label { " (" (label) ")" }
            }
            @if let Some(a) = &e.approval { dt { "Approval" } dd { a href={ "/console/approvals/" (super::segment(a)) } { (a) } } }
            @if let Some(c) = &e.client { dt { "Client" } dd { (c) } }
            dt { "Reasons" } dd { (e.reasons.join("; ")) }
            dt { "Hash" } dd { code { (record.hash) } }
        }
        h2 { "Matched rules" }
        @if e.rules.is_empty() {
            p { "No rule matched." }
        } @else {
            ul.rules {
                @for rule in &e.rules {
                    li { a href=(filter_link("rule", rule)) { code { (rule) } } }
                }
            }
        }
        section aria-labelledby="explanation" {
            h2 #explanation { "Explanation" }
            (explained)
        }
        section aria-labelledby="chain" {
            h2 #chain { "Chain" }
            (chain.render(n))
        }
        h2 { "Record" }
        pre.record { (full) }
    };
    Ok(page(Some(&signed), &format!("Audit record {n}"), body).into_response())
}

// ---- the explanation -----------------------------------------------------

/// The record's explanation re-run on its recorded request, or why it
/// cannot be.
async fn explain(state: &AppState, record: &AuditRecord) -> Markup {
    let e = &record.entry;
    if e.phase != "before" {
        return html! { p { "Only a decision before an action (phase before) is explained; this record's phase is " (e.phase) "." } };
    }
    let loaded = state.runtime().policy();
    let (policy, which) = if loaded.version() == e.policy_version {
        (loaded, "the loaded policy")
    } else {
        match kept_policy(state.runtime().store(), &e.policy_version).await {
            Ok(Some(policy)) => (Arc::new(policy), "a kept earlier version of the policy"),
            Ok(None) => {
                return html! { p { "It cannot be rebuilt: the policy version that decided it (" code { (e.policy_version) } ") is neither the loaded one nor kept by the store." } }
            }
            Err(why) => {
                return html! { p.error { "It cannot be rebuilt: the policy version that decided it could not be read (" (why) ")." } }
            }
        }
    };
    let mut request = Request::new(e.action.clone())
        .input(e.input.clone())
        .actor(e.actor.clone())
        .snapshot(e.snapshot.clone());
    request.session = e.session.clone();
    request.phase = Phase::Before;
    request.time = Request::parse_time(&e.time).ok();
    let redacted = has_redacted(&e.input) || has_redacted(&e.actor) || has_redacted(&e.snapshot);
    let stateful = policy.action_state(&e.action, Phase::Before).any();
    let explanation = policy.explain(&request);
    let effect = explanation.decision.effect().as_str();
    let same = effect == e.effect;
    html! {
        p {
            "Re-run on the recorded request with " (which) ": "
            strong class={ "effect-" (effect) } { (effect) }
            @if same { " (as recorded)." } @else { " — the record says " strong { (e.effect) } "." }
        }
        @if redacted {
            p.hint { "The recorded request has sensitive fields replaced by keyed hashes: the explanation ran on those redacted values, so a rule that reads one may not decide as it did." }
        }
        @if stateful {
            p.hint { "This action's rules read state (limits, sessions): it was re-run without the state of the time." }
        }
        @if e.approval.is_some() {
            p.hint { "The recorded effect reflects the approval step; the re-run shows what the rules decide." }
        }
        @let reasons = explanation.decision.reasons();
        @if !reasons.is_empty() {
            ul { @for r in &reasons { li { (r) } } }
        }
        @if explanation.rules.is_empty() {
            p { "No rule was evaluated (the request broke its contract or named an unknown action)." }
        } @else {
            div.table-wrap {
                table.stack.explain {
                    thead { tr {
                        th scope="col" { "Rule" } th scope="col" { "Effect" } th scope="col" { "Outcome" }
                        th scope="col" { "Condition and values" }
                    } }
                    tbody {
                        @for t in &explanation.rules {
                            tr data-rule=(t.id) {
                                td data-label="Rule" { code { (t.id) } @if t.shadow { " (shadow)" } }
                                td data-label="Effect" { (t.effect.as_str()) }
                                td data-label="Outcome" {
                                    @match &t.outcome {
                                        Outcome::Matched => { strong { "matched" } }
                                        Outcome::NotMatched => { "not matched" }
                                        Outcome::Error(why) => { span.error { "error: " (why) } }
                                    }
                                }
                                td data-label="Condition" {
                                    @if let Some(c) = &t.condition { code { (c) } }
                                    @if !t.steps.is_empty() {
                                        ul.steps {
                                            @for s in &t.steps {
                                                li { code { (s.expr) } " = " code { (s.value) } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The kept sources of `version`, compiled; `None` if none are kept.
async fn kept_policy(store: &Arc<dyn Store>, version: &str) -> Result<Option<Policy>, String> {
    let Some(kept) = store.policy_version(version).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || Policy::from_kept_sources(&kept.sources, &kept.version))
        .await
        .map_err(|e| e.to_string())?
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Whether `value` holds a value redacted to a keyed hash.
fn has_redacted(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.starts_with(REDACTED_PREFIX),
        serde_json::Value::Array(items) => items.iter().any(has_redacted),
        serde_json::Value::Object(fields) => fields.values().any(has_redacted),
        _ => false,
    }
}

// ---- the chain -------------------------------------------------------------

/// How far the chain of one store has been checked from record 1.
#[derive(Clone, Debug)]
struct Walked {
    /// Every record up to this one links to the one before it and hashes
    /// as stored.
    through: u64,
    /// The hash of record `through` (the genesis hash at 0).
    hash: String,
    /// The first record that does not fit, and why.
    broken: Option<(u64, String)>,
    /// The store failed (or refused a record whose body does not match
    /// its hash): the walk stopped there; the next view tries again.
    error: Option<String>,
}

/// The chain walk of one store (see the module's doc).
struct ChainWalk {
    /// The store it walks: only to tell stores apart, never kept alive.
    store: Weak<dyn Store>,
    progress: tokio::sync::watch::Sender<Walked>,
    /// The record the walk goes to.
    target: AtomicU64,
    /// Whether a walk task runs.
    running: AtomicBool,
}

/// The walks of the stores of this process (one per server, several in
/// tests).
static WALKS: Mutex<Vec<Arc<ChainWalk>>> = Mutex::new(Vec::new());

/// What a record's page says of the chain.
enum ChainStatus {
    /// Verified through the record; `newest`: nothing after it vouches
    /// for it yet (only the store's chain head, which verify reads, does).
    Verified {
        newest: bool,
    },
    Broken(u64, String),
    Failed(String),
    Checking(u64),
}

impl ChainWalk {
    /// The walk of `store`, made on first use.
    fn of(store: &Arc<dyn Store>) -> Arc<ChainWalk> {
        let mut walks = WALKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A store dropped frees its walk; a new store at the same address
        // is not mistaken for it (its walk's `Weak` no longer upgrades).
        walks.retain(|w| w.store.strong_count() > 0);
        let same = |w: &&Arc<ChainWalk>| std::ptr::addr_eq(w.store.as_ptr(), Arc::as_ptr(store));
        if let Some(w) = walks.iter().find(same) {
            return Arc::clone(w);
        }
        let walk = Arc::new(ChainWalk {
            store: Arc::downgrade(store),
            progress: tokio::sync::watch::Sender::new(Walked {
                through: 0,
                hash: GENESIS.to_owned(),
                broken: None,
                error: None,
            }),
            target: AtomicU64::new(0),
            running: AtomicBool::new(false),
        });
        walks.push(Arc::clone(&walk));
        walk
    }

    /// Makes the walk go at least to record `seq`, starting it if needed.
    fn reach(self: &Arc<Self>, store: &Arc<dyn Store>, seq: u64) {
        self.target.fetch_max(seq, Ordering::SeqCst);
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        // A failed walk is tried again from where it stopped.
        self.progress.send_modify(|w| w.error = None);
        let walk = Arc::clone(self);
        let store = Arc::clone(store);
        tokio::spawn(async move { walk.run(store).await });
    }

    async fn run(&self, store: Arc<dyn Store>) {
        loop {
            let (through, hash, done) = {
                let w = self.progress.borrow();
                (w.through, w.hash.clone(), w.broken.is_some())
            };
            if done || through >= self.target.load(Ordering::SeqCst) {
                self.running.store(false, Ordering::SeqCst);
                // A target raised meanwhile, by a view that saw the walk
                // still running, is taken up here.
                if !done && through < self.target.load(Ordering::SeqCst) && !self.running.swap(true, Ordering::SeqCst) {
                    continue;
                }
                return;
            }
            let page = store
                .query_audit(&AuditQuery {
                    after_seq: Some(through),
                    limit: Some(WALK_PAGE),
                    ..AuditQuery::default()
                })
                .await;
            let records = match page {
                Ok(records) => records,
                Err(e) => {
                    self.progress.send_modify(|w| w.error = Some(e.to_string()));
                    self.running.store(false, Ordering::SeqCst);
                    return;
                }
            };
            if records.is_empty() {
                // The target is past the newest record.
                self.target.store(through, Ordering::SeqCst);
                continue;
            }
            let (mut through, mut hash) = (through, hash);
            let mut broken = None;
            // `query_audit` has checked each body against its stored hash;
            // here each record must follow and link to the one before.
            for r in records {
                if r.seq != through + 1 {
                    broken = Some((through + 1, format!("record {} is missing", through + 1)));
                    break;
                }
                if r.prev_hash != hash {
                    broken = Some((r.seq, format!("record {} does not link to record {through}", r.seq)));
                    break;
                }
                through = r.seq;
                hash = r.hash;
            }
            self.progress.send_modify(|w| {
                w.through = through;
                w.hash = hash;
                w.broken = broken;
            });
        }
    }

    /// Whether the chain verifies from record 1 through `seq`, waiting up
    /// to [`CHAIN_WAIT`] for the walk to get there.
    ///
    /// The walk's result is from when it passed: the record and the one
    /// after it (whose `prev_hash` vouches for it) are read again now, and
    /// so is the record the walk reached last, which must still have the
    /// hash the walk saw. A record rewritten since, or one after it
    /// rewritten to match, or a rewrite reaching the newest records, is
    /// then not called verified.
    async fn status(self: &Arc<Self>, store: &Arc<dyn Store>, seq: u64) -> ChainStatus {
        // The record after this one too: it is what vouches for this one.
        self.reach(store, seq + 1);
        let mut rx = self.progress.subscribe();
        let _ = tokio::time::timeout(
            CHAIN_WAIT,
            rx.wait_for(|w| w.through > seq || w.broken.is_some() || w.error.is_some()),
        )
        .await;
        let w = rx.borrow().clone();
        match (w.broken.clone(), w.error.clone()) {
            (Some((at, why)), _) if at <= seq + 1 => ChainStatus::Broken(at, why),
            _ if w.through >= seq => match recheck(store, seq, &w).await {
                Ok(newest) => ChainStatus::Verified { newest },
                Err(status) => status,
            },
            (_, Some(e)) => ChainStatus::Failed(e),
            _ => ChainStatus::Checking(w.through),
        }
    }
}

/// Reads record `seq`, the one after it and the walk's last record again
/// (each body is checked against its stored hash by the query): `Ok(true)`
/// when `seq` is the newest record, `Ok(false)` when the next one links to
/// it; else why not.
async fn recheck(store: &Arc<dyn Store>, seq: u64, w: &Walked) -> Result<bool, ChainStatus> {
    let read = |after: u64, limit: u64| async move {
        store
            .query_audit(&AuditQuery {
                after_seq: Some(after),
                limit: Some(limit),
                ..AuditQuery::default()
            })
            .await
            .map_err(|e| ChainStatus::Failed(e.to_string()))
    };
    let pair = read(seq.saturating_sub(1), 2).await?;
    let Some(this) = pair.first().filter(|r| r.seq == seq) else {
        return Err(ChainStatus::Broken(seq, format!("record {seq} is missing now")));
    };
    let tip = read(w.through.saturating_sub(1), 1).await?;
    if w.through > 0 && tip.first().is_none_or(|r| r.seq != w.through || r.hash != w.hash) {
        return Err(ChainStatus::Broken(
            w.through,
            format!("record {} changed since the chain was checked", w.through),
        ));
    }
    match pair.get(1) {
        Some(next) if next.seq == seq + 1 && next.prev_hash == this.hash => Ok(false),
        Some(next) => Err(ChainStatus::Broken(
            next.seq,
            format!("record {} does not link to record {seq} as it is now", next.seq),
        )),
        // The newest record: the walk saw it with this hash when it was
        // the tip; it must not have changed since.
        None if w.through == seq && this.hash == w.hash => Ok(true),
        None => Err(ChainStatus::Broken(
            seq,
            format!("record {seq} changed since the chain was checked"),
        )),
    }
}

impl ChainStatus {
    fn render(&self, seq: u64) -> Markup {
        match self {
            ChainStatus::Verified { newest } => html! {
                p.ok { "verified up to here" }
                p.hint { "Every record from 1 to " (seq) " hashes as stored and links to the one before (walked by this server since it started; this record, the next one and the newest walked were read again now)." }
                @if *newest {
                    p.hint { "This is the newest record: no record after it vouches for it yet. " code { "rein audit verify" } " also checks it against the store's chain head." }
                }
            },
            ChainStatus::Broken(at, why) => html! {
                p.error { "not verified: the chain breaks at record " (at) " (" (why) "). Run a full verification (GET /v1/audit/verify)." }
            },
            ChainStatus::Failed(e) => html! {
                p.error { "not verified: the chain could not be checked (" (e) ")." }
            },
            ChainStatus::Checking(through) => html! {
                p { "not verified yet: the chain is being checked (through record " (through) " so far); reload the page to see the result." }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacted_values_are_found_at_any_depth() {
        assert!(!has_redacted(&json!({"a": 1, "b": ["x"]})));
        assert!(has_redacted(&json!({"a": {"card": format!("{REDACTED_PREFIX}00ff")}})));
        assert!(has_redacted(&json!([1, [format!("{REDACTED_PREFIX}ab")]])));
    }

    #[test]
    fn links_keep_only_the_filters_given() {
        let p = ListParams {
            actor: Some("bot 1&x".into()),
            rule: Some(String::new()),
            ..ListParams::default()
        };
        assert_eq!(p.link(&[("before", "7")]), "actor=bot+1%26x&before=7");
    }
}
