//! Shadow mode against real SQLite files: the enforced answer (and record)
//! is the same with and without a candidate, on the requests of every
//! example's test file; a candidate that fails changes nothing; what the
//! records say matches a replay of the candidate over them.

// Helpers outside `#[test]` functions panic on failure too; that is the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rein_engine::testing::{read_test_file, StepOutcome};
use rein_engine::{Effect, Policy, Request};
use rein_runtime::{replay, shadow_report, Answer, ChainLink, Credential, Runtime, RuntimeConfig};
use rein_store::{AuditEntry, AuditQuery, ShadowRecord, SqliteStore, Store};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn config(trust_time: bool) -> RuntimeConfig {
    RuntimeConfig {
        hmac_key: b"shadow test key".to_vec(),
        trust_request_time: trust_time,
        ..RuntimeConfig::default()
    }
}

async fn open(db: &Path, policy: Policy, trust_time: bool) -> (Arc<Runtime>, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(db).unwrap());
    let rt = Runtime::new(policy, store.clone(), config(trust_time));
    rt.open_state().await.unwrap();
    (Arc::new(rt), store)
}

/// The native examples with a test file.
fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path().join("policy.test.yaml"))
        .filter(|p| p.exists())
        .collect();
    out.sort();
    assert!(out.len() >= 10, "only {} examples found", out.len());
    out
}

/// Candidates made from a policy's text, tried in order until one loads:
/// allow and block swapped; allow made block; the default flipped.
fn candidate(files: &[PathBuf]) -> Policy {
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read_to_string(f).unwrap()))
        .collect();
    let variants: [&dyn Fn(&str) -> String; 3] = [
        &|t| {
            t.replace("effect: allow", "effect: @@")
                .replace("effect: block", "effect: allow")
                .replace("effect: @@", "effect: block")
        },
        &|t| t.replace("effect: allow", "effect: block"),
        &|t| t.replace("default: block", "default: allow") + "\n",
    ];
    for v in variants {
        let mutated: Vec<(String, String)> = texts.iter().map(|(n, t)| (n.clone(), v(t))).collect();
        if let Ok(p) = Policy::from_sources(mutated) {
            return p;
        }
    }
    panic!("no candidate loads for {files:?}");
}

/// What the credential of a case binds, built from the request's actor.
fn credential(request: &Request, bound: Option<&[String]>) -> Option<Credential> {
    let bound = bound?;
    let mut c = Credential::default();
    for field in bound {
        if field == "chain" {
            let links = request.actor["chain"].as_array().cloned().unwrap_or_default();
            c.chain = Some(
                links
                    .iter()
                    .map(|l| {
                        ChainLink::parse(&format!(
                            "{}:{}",
                            l["kind"].as_str().unwrap(),
                            l["id"].as_str().unwrap()
                        ))
                        .unwrap()
                    })
                    .collect(),
            );
        } else if let Some(v) = request.actor.get(field) {
            c.fields.insert(field.clone(), v.clone());
        }
    }
    Some(c)
}

/// An answer without what differs between two runs (ids).
fn answer_json(a: &Answer) -> serde_json::Value {
    let mut v = serde_json::to_value(a).unwrap();
    v.as_object_mut().unwrap().remove("decision_id");
    if let Some(approval) = v.get_mut("approval").and_then(|a| a.as_object_mut()) {
        approval.remove("id");
        approval.remove("expires_at");
    }
    v
}

/// A record without what differs between two runs, and without `shadow`.
fn entry_json(e: &AuditEntry) -> serde_json::Value {
    let mut e = e.clone();
    e.decision_id.clear();
    e.time.clear();
    e.latency_us = 0;
    e.approval = e.approval.map(|_| "approval".into());
    e.shadow = None;
    serde_json::to_value(e).unwrap()
}

async fn entries(store: &SqliteStore) -> Vec<AuditEntry> {
    store
        .query_audit(&AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry)
        .collect()
}

/// Every request of a test file, in order, with its credential and the
/// outcome to report when it is allowed.
type Sent = (Request, Option<Credential>, Option<StepOutcome>);

fn requests(test: &Path) -> Vec<Sent> {
    let file = read_test_file(test).unwrap();
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let mut out = Vec::new();
    for case in &file.cases {
        match &case.sequence {
            None => {
                let mut r = case.request.clone();
                r.time.get_or_insert(start);
                let c = credential(&r, case.bound.as_deref());
                out.push((r, c, None));
            }
            Some(steps) => {
                for step in steps {
                    for _ in 0..step.repeat {
                        let mut r = step.request.clone();
                        r.time = Some(step.time);
                        let c = credential(&r, step.bound.as_deref());
                        out.push((r, c, step.outcome.as_ref().map(|(o, _)| o.clone())));
                    }
                }
            }
        }
    }
    out
}

async fn send(rt: &Runtime, (request, credential, outcome): &Sent) -> Vec<Answer> {
    let mut answers = vec![
        rt.decide_bound(request.clone(), None, Some("agent"), credential.as_ref())
            .await,
    ];
    if let (Some(outcome), Effect::Allow) = (outcome, answers[0].effect) {
        let (output, error) = match outcome {
            StepOutcome::Output(o) => (Some(o.clone()), None),
            StepOutcome::Error(e) => (None, Some(e.clone())),
        };
        let after = rt
            .outcome_bound(
                &answers[0].decision_id,
                output,
                error,
                Some("agent"),
                credential.as_ref(),
            )
            .await
            .unwrap();
        answers.push(after);
    }
    answers
}

/// The requests of every example, through a runtime without a candidate
/// and one with a candidate that disagrees: the same answers, the same
/// records but for `shadow`, and every record of the second one says what
/// the candidate decided.
#[tokio::test]
async fn the_enforced_answer_is_the_same_with_a_candidate_on_every_example() {
    let mut differed = 0;
    let mut compared = 0;
    for test in examples() {
        let file = read_test_file(&test).unwrap();
        let policy = file.load_policy().unwrap();
        let candidate = candidate(&file.policy);
        let candidate_version = candidate.version().to_string();
        let dir = tempfile::tempdir().unwrap();
        let (plain, plain_store) = open(&dir.path().join("a.db"), policy.clone(), true).await;
        let (shadowed, shadowed_store) = open(&dir.path().join("b.db"), policy, true).await;
        shadowed.set_shadow(Some(candidate));
        for sent in requests(&test) {
            let a = send(&plain, &sent).await;
            let b = send(&shadowed, &sent).await;
            let a: Vec<_> = a.iter().map(answer_json).collect();
            let b: Vec<_> = b.iter().map(answer_json).collect();
            assert_eq!(a, b, "{}: {:?}", test.display(), sent.0);
            compared += 1;
        }
        let a = entries(&plain_store).await;
        let b = entries(&shadowed_store).await;
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(entry_json(x), entry_json(y), "{}", test.display());
            assert!(x.shadow.is_none(), "no shadow without a candidate or shadow rules");
            let s: ShadowRecord = serde_json::from_value(y.shadow.clone().expect("a shadow record")).unwrap();
            let c = s.candidate.expect("the candidate's decision");
            assert_eq!(c.policy_version, candidate_version);
            if c.effect != s.enforced {
                differed += 1;
            }
        }
        assert!(matches!(
            shadowed_store.verify_audit().await.unwrap(),
            rein_store::Verification::Intact { .. }
        ));
    }
    assert!(compared >= 100, "only {compared} requests compared");
    // Not vacuous: the candidates decided differently, often.
    assert!(differed >= 30, "the candidates differed on only {differed} records");
}

const POLICY: &str = r#"
version: enforced-1
default: block
contracts:
  actor: {id: string}
  actions:
    pay:
      input: {amount: int}
      output: {ok: bool}
rules:
  - {id: small, action: pay, when: input.amount <= 100, effect: allow}
  - {id: mid, action: pay, when: input.amount > 100 && input.amount <= 1000, effect: require_approval}
  - {id: new_cap, action: pay, when: input.amount > 50, effect: block, mode: shadow}
  - {id: bad_output, action: pay, phase: after, when: '!output.ok', effect: block, mode: shadow}
"#;

/// Errs on every request: `10 / 0`.
const FAILING: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input: {amount: int}
      output: {ok: bool}
rules:
  - {id: broken, action: pay, when: '10 / (input.amount - input.amount) > 0', effect: allow}
  - {id: broken_after, action: pay, phase: after, when: '10 / (input.amount - input.amount) > 0', effect: allow}
"#;

/// Reads state: decided against the mirror, which this runtime, with a
/// stateless enforced policy, never loaded.
const STATEFUL: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input: {amount: int}
rules:
  - {id: cap, action: pay, effect: block, limit: {count: 1, window: 1h, per: [actor.id]}}
"#;

fn pay(amount: i64) -> Request {
    Request::new("pay")
        .input(json!({"amount": amount}))
        .actor(json!({"id": "bot"}))
}

fn shadow_of(e: &AuditEntry) -> ShadowRecord {
    serde_json::from_value(e.shadow.clone().unwrap()).unwrap()
}

#[tokio::test]
async fn shadow_rules_are_recorded_before_and_after_and_never_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("r.db"), Policy::from_yaml_str(POLICY).unwrap(), false).await;
    let a = rt.decide(pay(80), None).await;
    assert_eq!(a.effect, Effect::Allow);
    assert_eq!(a.rules, vec!["small"]);
    assert!(a.reasons.iter().all(|r| !r.contains("new_cap")));
    let after = rt.outcome(&a.decision_id, Some(json!({"ok": false})), None).await;
    assert_eq!(after.effect, Effect::Allow);
    let b = rt.decide(pay(500), None).await;
    assert_eq!(b.effect, Effect::RequireApproval);
    let es = entries(&store).await;
    let s = shadow_of(&es[0]);
    assert_eq!(s.enforced, "allow");
    assert!(s.candidate.is_none());
    let rules = s.rules.unwrap();
    assert_eq!(
        (rules.effect.as_str(), rules.rules.clone()),
        ("block", vec!["new_cap".to_string()])
    );
    assert_eq!(rules.deciding, vec!["new_cap"]);
    let s = shadow_of(&es[1]);
    assert_eq!(es[1].phase, "after");
    assert_eq!(s.rules.unwrap().rules, vec!["bad_output"]);
    // The record's effect is the answer's; `enforced` is the policy's,
    // before the approval step (here the same: an approval was opened).
    let s = shadow_of(&es[2]);
    assert_eq!(
        (es[2].effect.as_str(), s.enforced.as_str()),
        ("require_approval", "require_approval")
    );

    let report = shadow_report(store.as_ref(), None, None).await.unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.rules_decided, 3);
    assert_eq!(report.candidate_decided, 0);
    let lines: Vec<(&str, &str, &str, &str, &str, u64)> = report
        .differences
        .iter()
        .map(|d| {
            (
                d.source.as_str(),
                d.phase.as_str(),
                d.enforced.as_str(),
                d.shadow.as_str(),
                d.rule.as_str(),
                d.count,
            )
        })
        .collect();
    assert!(
        lines.contains(&("rules", "before", "allow", "block", "new_cap", 1)),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("rules", "before", "require_approval", "block", "new_cap", 1)),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("rules", "after", "allow", "block", "bad_output", 1)),
        "{lines:?}"
    );
    let example = &report.differences.iter().find(|d| d.phase == "after").unwrap().examples;
    assert_eq!(example, &vec![a.decision_id.clone()]);
}

#[tokio::test]
async fn a_failing_candidate_changes_no_answer_and_is_recorded_as_failing() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy::from_yaml_str(POLICY).unwrap();
    let (plain, _) = open(&dir.path().join("a.db"), policy.clone(), false).await;
    let (rt, store) = open(&dir.path().join("b.db"), policy, false).await;
    for candidate in [FAILING, STATEFUL] {
        rt.set_shadow(Some(Policy::from_yaml_str(candidate).unwrap()));
        for amount in [5, 80, 500, 5000, -1] {
            let want = plain.decide(pay(amount), None).await;
            let got = rt.decide(pay(amount), None).await;
            assert_eq!(answer_json(&want), answer_json(&got));
            if got.effect == Effect::Allow {
                let want = plain.outcome(&want.decision_id, Some(json!({"ok": true})), None).await;
                let got = rt.outcome(&got.decision_id, Some(json!({"ok": true})), None).await;
                assert_eq!(answer_json(&want), answer_json(&got));
            }
        }
    }
    let es = entries(&store).await;
    let failing: Vec<_> = es
        .iter()
        .filter(|e| e.phase == "before")
        .map(|e| shadow_of(e).candidate.unwrap())
        .collect();
    // The erring candidate: its rules failed (`eval_error`, block); the
    // stateful one: no state to read (`error`, block). Never an allow
    // (the stateful one has no after rules: its after default allows).
    assert!(failing.iter().all(|c| c.effect == "block"), "{failing:?}");
    assert!(failing
        .iter()
        .any(|c| c.basis == "eval_error" && c.errors == vec!["broken"]));
    assert!(failing
        .iter()
        .any(|c| c.basis == "error" && c.error.as_deref().unwrap_or("").contains("state not loaded")));
    let report = shadow_report(store.as_ref(), None, None).await.unwrap();
    assert!(report.candidate_errors >= 5, "{report:?}");
    // Nothing was written for the stateful candidate.
    assert!(rt.limits(jiff::Timestamp::now()).unwrap().is_empty());
    rt.set_shadow(None);
    let a = rt.decide(pay(5), None).await;
    let last = entries(&store).await.pop().unwrap();
    assert_eq!(last.decision_id, a.decision_id);
    assert!(shadow_of(&last).candidate.is_none());
}

/// The candidate's `require_approval` opens no approval; the enforced
/// one's does, as without a candidate.
#[tokio::test]
async fn a_candidate_never_opens_an_approval() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, store) = open(&dir.path().join("r.db"), Policy::from_yaml_str(POLICY).unwrap(), false).await;
    let candidate = POLICY.replace("effect: allow", "effect: require_approval");
    rt.set_shadow(Some(Policy::from_yaml_str(&candidate).unwrap()));
    let a = rt.decide(pay(10), None).await;
    assert_eq!(a.effect, Effect::Allow);
    assert!(a.approval.is_none());
    assert!(store.list_approvals(None, 100).await.unwrap().is_empty());
    let c = shadow_of(&entries(&store).await[0]).candidate.unwrap();
    assert_eq!(
        (c.effect.as_str(), c.deciding.clone()),
        ("require_approval", vec!["small".to_string()])
    );
}

/// For every stateless example without sensitive fields: the report's
/// candidate counts, per `enforced -> shadow`, are the changes a replay
/// of the same candidate over the same records counts.
#[tokio::test]
async fn report_counts_match_a_replay_of_the_candidate() {
    let mut checked = 0;
    for test in examples() {
        let file = read_test_file(&test).unwrap();
        let policy = file.load_policy().unwrap();
        let candidate = candidate(&file.policy);
        let sensitive = policy.actions().any(|a| !policy.sensitive_fields(a).is_empty());
        if policy.uses_state() || candidate.uses_state() || sensitive {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let (rt, store) = open(&dir.path().join("r.db"), policy, false).await;
        rt.set_shadow(Some(candidate.clone()));
        for (mut request, credential, _) in requests(&test) {
            request.time = None;
            rt.decide_bound(request, None, Some("agent"), credential.as_ref()).await;
        }
        let report = shadow_report(store.as_ref(), None, None).await.unwrap();
        let replayed = replay(store.as_ref(), &candidate).await.unwrap();
        let mut from_report = std::collections::BTreeMap::new();
        for d in report
            .differences
            .iter()
            .filter(|d| d.source == "candidate" && d.phase == "before")
        {
            *from_report
                .entry(format!("{} -> {}", d.enforced, d.shadow))
                .or_insert(0u64) += d.count;
        }
        assert_eq!(from_report, replayed.effect_changes, "{}", test.display());
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} examples compared");
}

const CAPPED: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    pay:
      input: {amount: int}
rules:
  - {id: cap, action: pay, effect: block, limit: {count: COUNT, window: 1h, per: [actor.id]}}
"#;

/// A stateful candidate reads the enforced policy's buckets as they were
/// before this call (not its own reservation), and writes nothing.
#[tokio::test]
async fn a_stateful_candidate_reads_the_state_before_the_call_and_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let enforced = Policy::from_yaml_str(&CAPPED.replace("COUNT", "3")).unwrap();
    let (rt, store) = open(&dir.path().join("r.db"), enforced, false).await;
    rt.set_shadow(Some(Policy::from_yaml_str(&CAPPED.replace("COUNT", "1")).unwrap()));
    for _ in 0..3 {
        assert_eq!(rt.decide(pay(5), None).await.effect, Effect::Allow);
    }
    assert_eq!(rt.decide(pay(5), None).await.effect, Effect::Block);
    let shadow: Vec<String> = entries(&store)
        .await
        .iter()
        .map(|e| shadow_of(e).candidate.unwrap().effect)
        .collect();
    // The first call: no use before it, so the candidate's cap of 1 holds
    // it (had it read the call's own reservation, it would block).
    assert_eq!(shadow, vec!["allow", "block", "block", "block"]);
    // Only the enforced policy's uses are kept: 3 allowed calls.
    let buckets = rt.limits(jiff::Timestamp::now()).unwrap();
    assert_eq!(buckets.len(), 1);
    assert_eq!(buckets[0].used.to_string(), "3", "{buckets:?}");
}
