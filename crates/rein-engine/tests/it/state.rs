//! Stateful control: limits, session facts, sensitive fields of earlier
//! calls, and the fail-closed cases, decided through a small state of this
//! file's own (the library's `MemoryState` is tested beside it).

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rein_engine::state::{
    BucketKey, Decimal, LimitQuery, LimitUse, SessionCall, StateEffects, StateError, StateView, StateWrite,
};
use rein_engine::{Basis, Decision, Effect, LimitKind, Phase, Policy, Request};
use serde_json::json;
use std::str::FromStr;

/// A plain state: every write kept in a list, every read a scan.
#[derive(Default)]
struct TestState {
    uses: Vec<(BucketKey, Timestamp, Decimal, String)>,
    calls: Vec<(String, SessionCall)>,
    labels: Vec<(String, String)>,
    /// Every read fails with this.
    broken: Option<String>,
    next_id: u64,
}

impl TestState {
    fn apply(&mut self, writes: &[StateWrite]) {
        for w in writes {
            match w {
                StateWrite::Use {
                    decision_id,
                    bucket,
                    time,
                    amount,
                } => self.uses.push((bucket.clone(), *time, *amount, decision_id.clone())),
                StateWrite::Call { session, call } => self.calls.push((session.clone(), call.clone())),
                StateWrite::Output {
                    session,
                    decision_id,
                    output,
                } => {
                    for (s, c) in &mut self.calls {
                        if s == session && c.decision_id == *decision_id {
                            c.output = Some(output.clone());
                        }
                    }
                }
                StateWrite::Label { session, label, .. } => {
                    if !self.labels.contains(&(session.clone(), label.clone())) {
                        self.labels.push((session.clone(), label.clone()));
                    }
                }
            }
        }
    }

    fn check(&self) -> Result<(), StateError> {
        match &self.broken {
            Some(why) => Err(StateError(why.clone())),
            None => Ok(()),
        }
    }
}

impl StateView for TestState {
    fn limit_use(&self, q: &LimitQuery<'_>) -> Result<LimitUse, StateError> {
        self.check()?;
        let start = q.now - q.window;
        let mut in_window: Vec<(Timestamp, Decimal)> = self
            .uses
            .iter()
            .filter(|(b, t, _, _)| b == q.bucket && *t >= start && *t <= q.now)
            .map(|(_, t, a, _)| (*t, *a))
            .collect();
        in_window.sort();
        let used: Decimal = in_window.iter().map(|(_, a)| *a).sum();
        let retry_after_seconds = if used <= q.room {
            Some(0)
        } else if q.room < Decimal::ZERO {
            None
        } else {
            let mut left = used;
            let mut wait = None;
            for (t, a) in &in_window {
                left -= *a;
                if left <= q.room {
                    let frees = *t + q.window;
                    let secs = q.now.duration_until(frees).as_secs_f64().ceil();
                    wait = Some(secs.max(0.0) as u64);
                    break;
                }
            }
            wait
        };
        Ok(LimitUse {
            used,
            retry_after_seconds,
        })
    }

    fn session_labels(&self, session: &str) -> Result<Vec<String>, StateError> {
        self.check()?;
        let mut out: Vec<String> = self
            .labels
            .iter()
            .filter(|(s, _)| s == session)
            .map(|(_, l)| l.clone())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn session_calls(
        &self,
        session: &str,
        since: Timestamp,
        f: &mut dyn FnMut(&SessionCall),
    ) -> Result<(), StateError> {
        self.check()?;
        for (s, c) in &self.calls {
            if s == session && c.time >= since {
                f(c);
            }
        }
        Ok(())
    }

    fn keyed_hash(&self, value: &serde_json::Value) -> String {
        format!("test-hash:{}", blake3::hash(value.to_string().as_bytes()).to_hex())
    }
}

fn t0() -> Timestamp {
    "2026-01-01T10:00:00Z".parse().unwrap()
}

fn at(minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

/// Decides `request` with `state`, then writes what the final `effect`
/// (the decision's own unless `approve` grants a require_approval) writes.
fn send_with<'p>(
    policy: &'p Policy,
    state: &mut TestState,
    request: Request,
    approve: bool,
) -> (Decision<'p>, StateEffects) {
    let prepared = policy.prepare(&request).unwrap();
    let (decision, effects) = prepared.decide_with_state(state);
    let final_effect = if approve && decision.effect() == Effect::RequireApproval {
        Effect::Allow
    } else {
        decision.effect()
    };
    state.next_id += 1;
    let id = format!("d{}", state.next_id);
    let writes = effects.writes(&id, final_effect, request.time.unwrap());
    state.apply(&writes);
    (decision, effects)
}

fn send<'p>(policy: &'p Policy, state: &mut TestState, request: Request) -> Decision<'p> {
    send_with(policy, state, request, false).0
}

const REFUNDS: &str = r#"
default: allow
contracts:
  actor: {id: string}
  actions:
    refund:
      input:
        amount: {type: number, min: 0}
        customer: string
        note: {type: string, optional: true}
rules:
  - id: refund_rate
    action: refund
    effect: block
    limit: {count: 3, per: [actor.id], window: 1h}
    reason: at most 3 refunds an hour per agent
  - id: budget
    action: refund
    effect: require_approval
    limit:
      sum: input.amount
      max: 0.3
      per: [input.customer]
      window: 24h
    reason: the daily budget per customer
"#;

fn refund(actor: &str, customer: &str, amount: f64, time: Timestamp) -> Request {
    Request::new("refund")
        .input(json!({"amount": amount, "customer": customer}))
        .actor(json!({"id": actor}))
        .time(time)
}

#[test]
fn a_count_limit_blocks_the_call_past_it_and_says_when_room_frees_up() {
    let policy = Policy::from_yaml_str(REFUNDS).unwrap();
    let mut state = TestState::default();
    // N-1 and N pass; each call takes one unit.
    for i in 0..3 {
        let d = send(&policy, &mut state, refund("bot-1", &format!("c{i}"), 0.0, at(i)));
        assert_eq!(d.effect(), Effect::Allow, "call {i}: {:?}", d.reasons());
        assert_eq!(d.retry_after_seconds(), None);
    }
    // N+1 is over.
    let d = send(&policy, &mut state, refund("bot-1", "c9", 0.0, at(10)));
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.rules(), ["refund_rate"]);
    assert_eq!(
        d.reasons(),
        [
            "refund_rate: 3 of 3 used for actor.id=bot-1 in the last 1h",
            "at most 3 refunds an hour per agent"
        ]
    );
    // The first use (at minute 0) leaves the window at minute 60.
    assert_eq!(d.retry_after_seconds(), Some(50 * 60));
    assert_eq!(d.to_json()["retry_after_seconds"], json!(3000));
    // The refused call took nothing: still blocked, and with the same use.
    let d = send(&policy, &mut state, refund("bot-1", "c9", 0.0, at(20)));
    assert_eq!(
        d.reasons()[0],
        "refund_rate: 3 of 3 used for actor.id=bot-1 in the last 1h"
    );
    // An explanation shows what the limit found.
    let prepared = policy.prepare(&refund("bot-1", "c9", 0.0, at(20))).unwrap();
    let (explained, _) = prepared.explain_with_state(&state);
    assert_eq!(explained.decision.effect(), Effect::Block);
    let rate = explained.rules.iter().find(|r| r.id == "refund_rate").unwrap();
    let step = rate.steps.iter().find(|s| s.expr.starts_with("{count: 3")).unwrap();
    assert_eq!(
        step.value,
        json!({"bucket": "actor.id=bot-1", "used": "3", "cost": "1", "max": "3", "over": true})
    );
    assert!(rate
        .steps
        .iter()
        .any(|s| s.expr == "actor.id" && s.value == json!("bot-1")));
    // A long key is cut in the reason.
    let long = "é".repeat(500);
    let mut filled = TestState::default();
    for m in 0..4 {
        send(&policy, &mut filled, refund(&long, "c", 0.0, at(m)));
    }
    let d = send(&policy, &mut filled, refund(&long, "c", 0.0, at(5)));
    assert_eq!(d.effect(), Effect::Block);
    assert!(
        d.reasons()[0].len() < 300 && d.reasons()[0].contains("…"),
        "{}",
        d.reasons()[0]
    );
    // Another key has its own bucket.
    let d = send(&policy, &mut state, refund("bot-2", "c9", 0.0, at(20)));
    assert_eq!(d.effect(), Effect::Allow);
    // Once the first use leaves the window, one more call fits.
    let d = send(
        &policy,
        &mut state,
        refund("bot-1", "c9", 0.0, at(60) + SignedDuration::from_secs(1)),
    );
    assert_eq!(d.effect(), Effect::Allow, "{:?}", d.reasons());
    // Just inside the window of the second use (minute 1): still full.
    let d = send(
        &policy,
        &mut state,
        refund("bot-1", "c9", 0.0, at(60) + SignedDuration::from_secs(59)),
    );
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.retry_after_seconds(), Some(1));
}

#[test]
fn sums_are_exact_decimals() {
    let policy = Policy::from_yaml_str(REFUNDS).unwrap();
    let mut state = TestState::default();
    // 0.1 + 0.2 is 0.3 exactly: not over a max of 0.3.
    for (i, amount) in [0.1, 0.2].into_iter().enumerate() {
        let d = send(&policy, &mut state, refund(&format!("a{i}"), "c-7", amount, at(0)));
        assert_eq!(d.effect(), Effect::Allow, "{amount}: {:?}", d.reasons());
    }
    // Any more is over.
    let (d, effects) = send_with(&policy, &mut state, refund("a9", "c-7", 0.0001, at(1)), false);
    assert_eq!(d.effect(), Effect::RequireApproval);
    assert_eq!(
        d.reasons(),
        [
            "budget: 0.3 of 0.3 used for input.customer=c-7 in the last 24h",
            "the daily budget per customer"
        ]
    );
    // Nothing in the window will ever leave room enough... until both
    // earlier uses leave it.
    assert_eq!(d.retry_after_seconds(), Some(24 * 3600 - 60));
    // The approved re-send consumes (the budget rule counts it).
    assert!(effects
        .consume
        .iter()
        .any(|c| c.bucket.rule == "budget" && c.amount == Decimal::from_str("0.0001").unwrap()));
    let (d, _) = send_with(&policy, &mut state, refund("a9", "c-7", 0.0001, at(2)), true);
    assert_eq!(d.effect(), Effect::RequireApproval);
    let used: Decimal = state.uses.iter().filter(|u| u.0.rule == "budget").map(|u| u.2).sum();
    assert_eq!(used, Decimal::from_str("0.3001").unwrap());
    // A call larger than the whole budget can never fit.
    let d = send(&policy, &mut state, refund("a9", "c-8", 0.5, at(3)));
    assert_eq!(d.effect(), Effect::RequireApproval);
    assert_eq!(d.retry_after_seconds(), None);
    assert!(d.to_json().get("retry_after_seconds").is_none());
}

#[test]
fn an_allow_limit_allows_up_to_the_limit_and_past_it_does_not_match() {
    let policy = Policy::from_yaml_str(
        r#"
contracts:
  actions:
    shell: {input: {command: string}}
rules:
  - id: shell_rate
    action: shell
    effect: allow
    limit: {count: 2, window: 1m}
"#,
    )
    .unwrap();
    let mut state = TestState::default();
    for i in 0..2 {
        let (d, effects) = send_with(
            &policy,
            &mut state,
            Request::new("shell")
                .input(json!({"command": "ls"}))
                .time(at(0) + SignedDuration::from_secs(i)),
            false,
        );
        assert_eq!(d.effect(), Effect::Allow);
        assert_eq!(effects.consume.len(), 1);
        assert_eq!(effects.consume[0].bucket.describe(), "all");
    }
    let (d, effects) = send_with(
        &policy,
        &mut state,
        Request::new("shell")
            .input(json!({"command": "ls"}))
            .time(at(0) + SignedDuration::from_secs(5)),
        false,
    );
    // The default (block) decides; the allow rule takes nothing.
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.basis(), &Basis::Default);
    assert!(effects.consume.is_empty());
    assert_eq!(d.retry_after_seconds(), None);
    let d = send(
        &policy,
        &mut state,
        Request::new("shell")
            .input(json!({"command": "ls"}))
            .time(at(1) + SignedDuration::from_secs(1)),
    );
    assert_eq!(d.effect(), Effect::Allow);
}

#[test]
fn a_call_refused_by_another_rule_consumes_nothing() {
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    pay: {input: {amount: {type: int, min: 0}}}
rules:
  - id: rate
    action: pay
    effect: block
    limit: {count: 1, window: 1h}
  - id: big
    action: pay
    when: input.amount > 100
    effect: block
"#,
    )
    .unwrap();
    let mut state = TestState::default();
    let d = send(
        &policy,
        &mut state,
        Request::new("pay").input(json!({"amount": 500})).time(at(0)),
    );
    assert_eq!(d.rules(), ["big"]);
    assert!(state.uses.is_empty());
    let d = send(
        &policy,
        &mut state,
        Request::new("pay").input(json!({"amount": 5})).time(at(1)),
    );
    assert_eq!(d.effect(), Effect::Allow);
    let d = send(
        &policy,
        &mut state,
        Request::new("pay").input(json!({"amount": 5})).time(at(2)),
    );
    assert_eq!(d.rules(), ["rate"]);
    assert_eq!(d.retry_after_seconds(), Some(59 * 60));
    // Over the limit and too big: waiting would not help.
    let d = send(
        &policy,
        &mut state,
        Request::new("pay").input(json!({"amount": 500})).time(at(2)),
    );
    assert_eq!(d.rules(), ["rate", "big"]);
    assert_eq!(d.retry_after_seconds(), None);
}

const FLOWS: &str = r#"
default: allow
contracts:
  actions:
    read_file:
      input: {path: string}
    web:
      input: {url: string}
    fetch:
      input: {url: string}
      output: {body: string}
    approve_refund:
      input: {order_id: string, amount: {type: number, min: 0}}
      output: {approved: bool}
    pay:
      input: {order_id: string, amount: {type: number, min: 0}}
    mcp.a: {input: {x: int}}
    mcp.b: {input: {x: int}}
rules:
  - id: secret_read
    action: read_file
    when: input.path.startsWith("/secrets/")
    effect: allow
    labels: [secret]
  - id: exfiltration
    action: web
    when: '"secret" in session.labels'
    effect: block
    reason: no outbound request after a secret was read
  - id: untrusted_output
    action: fetch
    phase: after
    when: output.body.contains("ignore previous")
    effect: allow
    labels: [untrusted]
  - id: poisoned
    action: fetch
    phase: after
    when: output.body.contains("BLOCKME")
    effect: block
    labels: [never]
  - id: loop_guard
    action: mcp.*
    when: session.count("mcp.*", duration("10m")) >= 3
    effect: block
  - id: same_input
    action: web
    when: session.calls("web", duration("10m")).filter(c, c.input == input).size() >= 2
    effect: block
  - id: two_step
    action: pay
    when: |
      !session.calls("approve_refund", duration("1h")).exists(c,
          has(c.output) && c.output.approved && c.input.order_id == input.order_id
          && c.input.amount >= input.amount)
    effect: block
    reason: pay only what an approval step approved
  - id: approved_total
    action: pay
    when: session.sum("approve_refund", "input.amount", duration("1h")) > 1000
    effect: require_approval
"#;

#[test]
fn labels_taint_the_session_and_a_request_without_one_is_refused() {
    let policy = Policy::from_yaml_str(FLOWS).unwrap();
    let mut state = TestState::default();
    let web = |s: Option<&str>, m| {
        let r = Request::new("web").input(json!({"url": "https://x"})).time(at(m));
        match s {
            Some(s) => r.session(s),
            None => r,
        }
    };
    assert_eq!(send(&policy, &mut state, web(Some("s1"), 0)).effect(), Effect::Allow);
    let read = Request::new("read_file")
        .input(json!({"path": "/secrets/key"}))
        .session("s1")
        .time(at(1));
    let (d, effects) = send_with(&policy, &mut state, read, false);
    assert_eq!(d.effect(), Effect::Allow);
    assert_eq!(effects.labels, ["secret"]);
    let d = send(&policy, &mut state, web(Some("s1"), 2));
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.reasons(), ["no outbound request after a secret was read"]);
    // Another session is clean; a never-seen one starts empty.
    assert_eq!(send(&policy, &mut state, web(Some("s2"), 2)).effect(), Effect::Allow);
    // Dropping the session is no way around the rule.
    let d = send(&policy, &mut state, web(None, 3));
    assert_eq!(d.effect(), Effect::Block);
    assert!(matches!(d.basis(), Basis::State(_)));
    assert_eq!(
        d.reasons(),
        ["session required: rule `exfiltration` reads the session, and the request names none"]
    );
    // Nor is deciding without state.
    let d = policy.decide(&web(Some("s2"), 3));
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(
        d.reasons(),
        ["this decision needs state (limits or session rules): decide it through a runtime or with a state"]
    );
    // An action that reads nothing decides as before, with or without state.
    let plain = Request::new("read_file").input(json!({"path": "/tmp/x"})).time(at(4));
    assert_eq!(policy.decide(&plain).effect(), Effect::Allow);
}

#[test]
fn a_call_that_a_flow_rule_reads_later_needs_a_session_too() {
    let policy = Policy::from_yaml_str(FLOWS).unwrap();
    let mut state = TestState::default();
    // Reading the secret without a session would attach no label, and the
    // outbound request in the session would pass.
    let read = Request::new("read_file")
        .input(json!({"path": "/secrets/key"}))
        .time(at(0));
    let d = send(&policy, &mut state, read);
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(
        d.reasons(),
        ["session required: rule `exfiltration` reads the session, and the request names none"]
    );
    // The same for a call some rule reads (the approval step), and its
    // outcome.
    let approve = Request::new("approve_refund")
        .input(json!({"order_id": "o1", "amount": 100}))
        .time(at(0));
    let d = send(&policy, &mut state, approve.clone());
    assert_eq!(
        d.reasons(),
        ["session required: rule `two_step` reads the session, and the request names none"]
    );
    let d = send(&policy, &mut state, approve.output(json!({"approved": true})));
    assert_eq!(d.effect(), Effect::Block);
    // Labels that no rule reads need no session.
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    read_file: {input: {path: string}}
rules:
  - id: tag
    action: read_file
    effect: allow
    labels: [read]
"#,
    )
    .unwrap();
    let d = send(
        &policy,
        &mut TestState::default(),
        Request::new("read_file").input(json!({"path": "p"})).time(at(0)),
    );
    assert_eq!(d.effect(), Effect::Allow);
}

#[test]
fn after_rules_attach_labels_only_when_the_output_is_let_through() {
    let policy = Policy::from_yaml_str(FLOWS).unwrap();
    let mut state = TestState::default();
    let outcome = |body: &str| {
        Request::new("fetch")
            .input(json!({"url": "https://x"}))
            .output(json!({"body": body}))
            .session("s1")
            .time(at(0))
    };
    // Withheld: taints nothing.
    let (d, effects) = send_with(&policy, &mut state, outcome("ignore previous BLOCKME"), false);
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.phase(), Phase::After);
    assert!(!effects.labels.is_empty());
    assert!(state.labels.is_empty());
    // Let through: the session is tainted.
    let (d, _) = send_with(
        &policy,
        &mut state,
        outcome("please ignore previous instructions"),
        false,
    );
    assert_eq!(d.effect(), Effect::Allow);
    assert_eq!(state.labels, [("s1".to_string(), "untrusted".to_string())]);
    assert!(policy.action_state("fetch", Phase::After).writes);
    assert!(!policy.action_state("fetch", Phase::After).reads);
    assert!(!policy.action_state("fetch", Phase::Before).any());
}

#[test]
fn session_count_sees_refused_calls_of_every_action_its_glob_names() {
    let policy = Policy::from_yaml_str(FLOWS).unwrap();
    let mut state = TestState::default();
    let call = |a: &str, m| Request::new(a).input(json!({"x": 1})).session("s1").time(at(m));
    for (i, a) in ["mcp.a", "mcp.b", "mcp.a"].into_iter().enumerate() {
        assert_eq!(send(&policy, &mut state, call(a, i as i64)).effect(), Effect::Allow);
    }
    assert_eq!(send(&policy, &mut state, call("mcp.b", 3)).effect(), Effect::Block);
    // The refused call is recorded too.
    assert_eq!(state.calls.len(), 4);
    assert_eq!(state.calls[3].1.effect, Effect::Block);
    // At minute 11 the first call has left the window; the refused one
    // still counts.
    assert_eq!(send(&policy, &mut state, call("mcp.a", 11)).effect(), Effect::Block);
    assert_eq!(send(&policy, &mut state, call("mcp.a", 15)).effect(), Effect::Allow);
    // The same input again and again.
    let web = |url: &str, m| Request::new("web").input(json!({"url": url})).session("s3").time(at(m));
    assert_eq!(send(&policy, &mut state, web("a", 0)).effect(), Effect::Allow);
    assert_eq!(send(&policy, &mut state, web("a", 1)).effect(), Effect::Allow);
    assert_eq!(send(&policy, &mut state, web("b", 2)).effect(), Effect::Allow);
    assert_eq!(send(&policy, &mut state, web("a", 3)).rules(), ["same_input"]);
}

#[test]
fn session_calls_and_sum_read_earlier_inputs_and_outputs() {
    let policy = Policy::from_yaml_str(FLOWS).unwrap();
    let mut state = TestState::default();
    let pay = |order: &str, amount: f64, m| {
        Request::new("pay")
            .input(json!({"order_id": order, "amount": amount}))
            .session("s1")
            .time(at(m))
    };
    assert_eq!(send(&policy, &mut state, pay("o1", 50.0, 0)).rules(), ["two_step"]);
    let approve = Request::new("approve_refund")
        .input(json!({"order_id": "o1", "amount": 100}))
        .session("s1")
        .time(at(1));
    let (d, effects) = send_with(&policy, &mut state, approve.clone(), false);
    assert_eq!(d.effect(), Effect::Allow);
    let call = effects.call.unwrap();
    assert_eq!(call.input, json!({"order_id": "o1", "amount": 100.0}));
    // The approval's outcome is not known yet.
    assert_eq!(send(&policy, &mut state, pay("o1", 50.0, 2)).rules(), ["two_step"]);
    let outcome = approve.clone().output(json!({"approved": true})).time(at(3));
    let prepared = policy.prepare(&outcome).unwrap();
    let (_, effects) = prepared.decide_with_state(&state);
    assert_eq!(effects.output, Some(json!({"approved": true})));
    state.apply(&[StateWrite::Output {
        session: "s1".into(),
        decision_id: "d2".into(),
        output: effects.output.clone().unwrap(),
    }]);
    assert_eq!(send(&policy, &mut state, pay("o1", 50.0, 4)).effect(), Effect::Allow);
    assert_eq!(send(&policy, &mut state, pay("o1", 100.0, 4)).effect(), Effect::Allow);
    assert_eq!(send(&policy, &mut state, pay("o1", 100.5, 4)).rules(), ["two_step"]);
    assert_eq!(send(&policy, &mut state, pay("o2", 1.0, 4)).rules(), ["two_step"]);
    // Sums count allowed approvals only.
    for m in 5..20 {
        let a = Request::new("approve_refund")
            .input(json!({"order_id": "o1", "amount": 100}))
            .session("s1")
            .time(at(m));
        send(&policy, &mut state, a);
    }
    let d = send(&policy, &mut state, pay("o1", 50.0, 21));
    assert_eq!(d.rules(), ["approved_total"], "{:?}", d.reasons());
    // An hour after they were made, they leave every window.
    let d = send(&policy, &mut state, pay("o1", 50.0, 90));
    assert_eq!(d.rules(), ["two_step"]);
}

const SENSITIVE: &str = r#"
default: allow
contracts:
  actions:
    charge:
      input:
        card: {type: string, sensitive: true}
        pin: {type: int, sensitive: true, optional: true}
        amount: {type: number, min: 0}
rules:
  - id: same_card_twice
    action: charge
    when: |
      session.calls("charge", duration("1h")).exists(c, c.input.card == input.card)
    effect: require_approval
  - id: card_rate
    action: charge
    effect: block
    limit: {count: 1, per: [input.card], window: 1h}
"#;

#[test]
fn sensitive_fields_of_earlier_calls_are_compared_by_keyed_hash_and_never_kept_in_clear() {
    let policy = Policy::from_yaml_str(SENSITIVE).unwrap();
    let mut state = TestState::default();
    let charge = |card: &str, m| {
        Request::new("charge")
            .input(json!({"card": card, "amount": 5}))
            .session("s1")
            .time(at(m))
    };
    let (d, effects) = send_with(&policy, &mut state, charge("4111", 0), false);
    assert_eq!(d.effect(), Effect::Allow);
    let stored = effects.call.unwrap().input;
    let card = stored["card"].as_str().unwrap();
    assert_eq!(card, state.keyed_hash(&json!("4111")));
    assert!(!stored.to_string().contains("4111"));
    // The bucket keeps the hash of the key, not the card.
    let bucket = &state.uses[0].0;
    assert!(!bucket.id().contains("4111"), "{}", bucket.id());
    assert!(!bucket.describe().contains("4111"));
    let d = send(&policy, &mut state, charge("4111", 1));
    assert_eq!(d.rules(), ["same_card_twice", "card_rate"]);
    assert!(!d.reasons().join(" ").contains("4111"), "{:?}", d.reasons());
    assert_eq!(send(&policy, &mut state, charge("5500", 2)).effect(), Effect::Allow);
}

#[test]
fn a_state_that_fails_blocks_with_its_reason() {
    let policy = Policy::from_yaml_str(REFUNDS).unwrap();
    let state = TestState {
        broken: Some("the store is gone".into()),
        ..TestState::default()
    };
    let prepared = policy.prepare(&refund("bot", "c", 1.0, at(0))).unwrap();
    let (d, _) = prepared.decide_with_state(&state);
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.reasons(), ["state: the store is gone"]);
    let policy = Policy::from_yaml_str(FLOWS).unwrap();
    let prepared = policy
        .prepare(&Request::new("web").input(json!({"url": "u"})).session("s").time(at(0)))
        .unwrap();
    let (d, _) = prepared.decide_with_state(&state);
    assert_eq!(d.effect(), Effect::Block);
    assert!(d.reasons()[0].contains("state: the store is gone"), "{:?}", d.reasons());
    // A limit without a request time cannot be placed: blocked.
    let policy = policy_refunds();
    let prepared = policy
        .prepare(
            &Request::new("refund")
                .input(json!({"amount": 1, "customer": "c"}))
                .actor(json!({"id": "a"})),
        )
        .unwrap();
    let (d, _) = prepared.decide_with_state(&TestState::default());
    assert_eq!(d.effect(), Effect::Block);
    assert!(d.reasons()[0].contains("carries no time"), "{:?}", d.reasons());
}

fn policy_refunds() -> Policy {
    Policy::from_yaml_str(REFUNDS).unwrap()
}

#[test]
fn the_policy_lists_what_each_action_needs() {
    let policy = Policy::from_yaml_str(REFUNDS).unwrap();
    assert!(policy.uses_state());
    assert_eq!(policy.max_window(), SignedDuration::from_hours(24));
    let limits = policy.limits();
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[0].rule, "refund_rate");
    assert_eq!(limits[0].kind, LimitKind::Count);
    assert_eq!(limits[0].max, Decimal::from(3));
    assert_eq!(limits[0].window, SignedDuration::from_hours(1));
    assert_eq!(limits[1].kind, LimitKind::Sum);
    assert_eq!(limits[1].max, Decimal::from_str("0.3").unwrap());
    let s = policy.action_state("refund", Phase::Before);
    assert!(s.reads && s.writes && s.any());
    assert!(!policy.action_state("refund", Phase::After).any());
    assert!(!policy.action_state("nope", Phase::Before).any());

    let flows = Policy::from_yaml_str(FLOWS).unwrap();
    // Recorded because a rule reads its calls.
    assert!(flows.action_state("approve_refund", Phase::Before).writes);
    assert!(!flows.action_state("approve_refund", Phase::Before).reads);
    assert!(flows.action_state("approve_refund", Phase::After).writes);
    // Not named by any session function: never recorded.
    let prepared = flows
        .prepare(
            &Request::new("read_file")
                .input(json!({"path": "p"}))
                .session("s")
                .time(at(0)),
        )
        .unwrap();
    assert_eq!(prepared.session(), Some("s"));
    assert_eq!(prepared.input_json(), json!({"path": "p"}));
    let (_, effects) = prepared.decide_with_state(&TestState::default());
    assert!(effects.call.is_none());

    let stateless = Policy::from_yaml_str(STATELESS).unwrap();
    assert!(!stateless.uses_state());
    assert!(stateless.limits().is_empty());
    let w = Policy::from_yaml_str(&format!("max_window: 2h\n{STATELESS}")).unwrap();
    assert_eq!(w.max_window(), SignedDuration::from_hours(2));
}

const STATELESS: &str = r#"
default: block
contracts:
  actor: {id: string}
  actions:
    refund:
      input: {amount: {type: number, min: 0}, customer: string}
rules:
  - id: small
    action: refund
    when: input.amount <= 100
    effect: allow
  - id: odd
    action: refund
    when: input.customer.startsWith("x")
    effect: require_approval
  - id: bad
    action: refund
    when: input.amount > 5000
    effect: block
"#;

proptest! {
    #[test]
    fn a_stateless_policy_decides_the_same_with_or_without_state(
        amount in 0.0f64..10000.0,
        customer in "[a-z]{0,4}",
        session in proptest::option::of("[a-z]{1,3}"),
    ) {
        let policy = Policy::from_yaml_str(STATELESS).unwrap();
        let mut request = refund("a", &customer, amount, at(0));
        request.session = session;
        let prepared = policy.prepare(&request).unwrap();
        let plain = prepared.decide();
        let mut state = TestState::default();
        state.labels.push(("s".into(), "secret".into()));
        let (with, effects) = prepared.decide_with_state(&state);
        prop_assert_eq!(plain.to_json(), with.to_json());
        prop_assert!(effects.is_empty());
    }
}

/// Loads `rules` (and `extra` top-level keys) over a fixed set of
/// contracts and returns the rendered errors.
fn load_errors(extra: &str, rules: &str) -> String {
    let text = format!(
        r#"{extra}
contracts:
  actor: {{id: string, team: {{type: string, optional: true}}}}
  actions:
    refund:
      input:
        amount: {{type: number, min: 0}}
        signed: number
        customer: string
        tags: list<string>
        note: {{type: string, optional: true}}
        card: {{type: string, sensitive: true}}
        price: {{type: number, min: 0, sensitive: true}}
      output: {{id: string, total: {{type: number, min: 0}}, secret: {{type: int, sensitive: true}}}}
    pay:
      input: {{card: {{type: string, sensitive: true}}, pin: {{type: int, sensitive: true}}, amt: {{type: number, sensitive: true}}, n: int}}
rules:
{rules}"#
    );
    match Policy::from_yaml_str(&text) {
        Ok(_) => "loaded".to_string(),
        // The one-line list (whole messages) and the rendering (hints).
        Err(e) => format!("{e}\n{}", e.render(false)),
    }
}

#[track_caller]
fn assert_load_error(extra: &str, rules: &str, expected: &[&str]) {
    let shown = load_errors(extra, rules);
    for e in expected {
        assert!(shown.contains(e), "expected {e:?} in:\n{shown}");
    }
}

#[test]
fn limit_keys_are_all_checked() {
    let rule = |limit: &str| format!("  - id: r\n    action: refund\n    effect: block\n    limit: {limit}\n");
    assert_load_error("", &rule("{count: 5, window: 1h, per: [actor.id]}"), &["loaded"]);
    assert_load_error("", &rule("{count: 0, window: 1h}"), &["`count` must be at least 1"]);
    assert_load_error(
        "",
        &rule("{count: 2.5, window: 1h}"),
        &["expected `count` to be a whole number"],
    );
    assert_load_error("", &rule("{count: 5}"), &["has no `window`", "add e.g. `window: 1h`"]);
    assert_load_error(
        "",
        &rule("{count: 5, window: 0s}"),
        &["`0s` is not a positive duration"],
    );
    assert_load_error(
        "",
        &rule("{count: 5, window: soon}"),
        &["`soon` is not a positive duration"],
    );
    assert_load_error(
        "",
        &rule("{count: 5, sum: input.amount, max: 3, window: 1h}"),
        &["both `count` and `sum`"],
    );
    assert_load_error("", &rule("{count: 5, max: 3, window: 1h}"), &["`max` goes with `sum`"]);
    assert_load_error("", &rule("{sum: input.amount, window: 1h}"), &["a `sum` needs a `max`"]);
    assert_load_error("", &rule("{window: 1h}"), &["neither `count` nor `sum`"]);
    assert_load_error(
        "",
        &rule("{count: 1, window: 1h, every: 2}"),
        &["unknown key `every` in `limit`"],
    );
    assert_load_error(
        "",
        &rule("{sum: input.amount, max: -1, window: 1h}"),
        &["`max` must be at least 0"],
    );
    assert_load_error(
        "",
        &rule("{sum: input.amount, max: lots, window: 1h}"),
        &["expected `max` to be a number"],
    );
    assert_load_error(
        "",
        &rule("{count: 1, window: 25h}"),
        &["the window 25h is longer than the policy's `max_window` (24h)"],
    );
    assert_load_error(
        "max_window: 2h",
        &rule("{count: 1, window: 3h}"),
        &["longer than the policy's `max_window` (2h)"],
    );
    assert_load_error("max_window: 48h", &rule("{count: 1, window: 25h}"), &["loaded"]);
    assert_load_error("max_window: never", "", &["`never` is not a positive duration"]);
    // Phase after.
    assert_load_error(
        "",
        "  - id: r\n    action: refund\n    phase: after\n    effect: block\n    limit: {count: 1, window: 1h}\n",
        &["rule `r` has a `limit` but runs in phase `after`"],
    );
}

#[test]
fn limit_expressions_are_type_checked_in_the_scope_of_when() {
    let rule = |when: &str, limit: &str| {
        format!("  - id: r\n    action: refund\n{when}    effect: block\n    limit: {limit}\n")
    };
    assert_load_error(
        "",
        &rule("", "{count: 1, window: 1h, per: [input.tags]}"),
        &["a `per` key must be a string, an int or a bool, not list<string>"],
    );
    assert_load_error(
        "",
        &rule("", "{count: 1, window: 1h, per: [input.amount]}"),
        &["not number"],
    );
    assert_load_error(
        "",
        &rule("", "{count: 1, window: 1h, per: [input.nope]}"),
        &["has no field `nope`"],
    );
    assert_load_error(
        "",
        &rule("", "{count: 1, window: 1h, per: [actor.team]}"),
        &["`actor.team` is optional and may be absent here"],
    );
    assert_load_error(
        "",
        &rule(
            "    when: has(actor.team)\n",
            "{count: 1, window: 1h, per: [actor.team]}",
        ),
        &["loaded"],
    );
    assert_load_error("", &rule("", "{count: 1, window: 1h, per: [session.id]}"), &["loaded"]);
    assert_load_error(
        "",
        &rule("", "{count: 1, window: 1h, per: [sesion.id]}"),
        &["unknown variable `sesion`", "did you mean `session`?"],
    );
    assert_load_error(
        "",
        &rule("", "{sum: input.signed, max: 10, window: 1h}"),
        &["`input.signed` can go negative; give it `min: 0`"],
    );
    assert_load_error(
        "",
        &rule("", "{sum: input.customer, max: 10, window: 1h}"),
        &["`sum` adds numbers, and `input.customer` is string"],
    );
    assert_load_error(
        "",
        &rule("", "{sum: input.price, max: 10, window: 1h}"),
        &["`input.price` is sensitive"],
    );
    assert_load_error(
        "",
        &rule("", "{sum: input.amount * 2.0, max: 10, window: 1h}"),
        &["`sum` must name a numeric field of the input"],
    );
    assert_load_error("", &rule("", "{sum: input.amount, max: 0.3, window: 1h}"), &["loaded"]);
}

#[test]
fn session_functions_are_typed() {
    let when = |cond: &str| format!("  - id: r\n    action: refund\n    when: '{cond}'\n    effect: block\n");
    for ok in [
        r#"session.id == "s1""#,
        r#""secret" in session.labels"#,
        r#"session.count("re*", duration("1h")) > 2"#,
        r#"session.sum("refund", "input.amount", duration("1h")) + input.amount > 100.0"#,
        r#"session.sum("refund", "output.total", duration("1h")) > 100.0"#,
        r#"session.calls("refund", duration("1h")).exists(c, has(c.output) && c.output.id == "x" && c.effect == "allow" && c.time < now)"#,
        r#"session.calls("refund", duration("1h")).exists(c, has(c.output) && c.output.secret == 3)"#,
        r#"session.calls("pay", duration("1h")).exists(c, c.input.card == input.customer && c.input.pin != 4)"#,
    ] {
        assert_load_error("", &when(ok), &["loaded"]);
    }
    let cases: &[(&str, &[&str])] = &[
        (
            r#"session.label == "x""#,
            &["the session has no `label`", "did you mean `session.labels`?"],
        ),
        (r#"session == "x""#, &["`session` is not a value of its own"]),
        (r#"session.count > 1"#, &["`session.count` is a function"]),
        (r#"session.id() == "x""#, &["`session.id` is not a function"]),
        (
            r#"session.cont("refund", duration("1h")) > 1"#,
            &["the session has no function `cont`", "did you mean `session.count`?"],
        ),
        (
            r#"session.count("refunds", duration("1h")) > 1"#,
            &["the policy has no action `refunds`", "did you mean `refund`?"],
        ),
        (
            r#"session.count("web.*", duration("1h")) > 1"#,
            &["`web.*` matches no action of the policy"],
        ),
        (
            r#"session.count(action, duration("1h")) > 1"#,
            &["must be a string literal"],
        ),
        (r#"session.count("refund") > 1"#, &["`session.count` takes 2 arguments"]),
        (
            r#"session.count("refund", duration("25h")) > 1"#,
            &["longer than the policy's `max_window` (24h)"],
        ),
        (
            r#"session.count("refund", duration("0s")) > 1"#,
            &["a window must be longer than 0"],
        ),
        (
            r#"session.count("refund", duration(input.customer)) > 1"#,
            &["must be a constant duration"],
        ),
        (
            r#"session.sum("refund", "input.amont", duration("1h")) > 1.0"#,
            &["has no field `amont`", "did you mean `amount`?"],
        ),
        (
            r#"session.sum("refund", "input.customer", duration("1h")) > 1.0"#,
            &["`session.sum` adds numbers, and `input.customer` is string"],
        ),
        (
            r#"session.sum("refund", "input.price", duration("1h")) > 1.0"#,
            &["`input.price` is sensitive"],
        ),
        (
            r#"session.sum("refund", "amount", duration("1h")) > 1.0"#,
            &["`amount` is not a field of a call"],
        ),
        (
            r#"session.sum("pay", "output.x", duration("1h")) > 1.0"#,
            &["action `pay` declares no output contract"],
        ),
        (
            r#"session.sum("refund", "input.amount", duration("1h")) > "x""#,
            &["cannot order number and string"],
        ),
        (
            r#"session.calls("refund", duration("1h")).exists(c, c.output.id == "x")"#,
            &["`c.output` is optional and may be absent here"],
        ),
        (
            r#"session.calls("refund", duration("1h")).exists(c, c.effect == "alow")"#,
            &["`alow` is not a value of `c.effect`"],
        ),
        (
            r#"session.calls("refund", duration("1h")).exists(c, c.inputs.amount > 1.0)"#,
            &["has no field `inputs`", "did you mean `input`?"],
        ),
        // Sensitive fields of earlier calls.
        (
            r#"session.calls("pay", duration("1h")).exists(c, c.input.card.startsWith("4"))"#,
            &["`startsWith` cannot be applied to (a sensitive string of an earlier call"],
        ),
        (
            r#"session.calls("pay", duration("1h")).exists(c, c.input.card == c.input.card)"#,
            &["are both sensitive fields of earlier calls"],
        ),
        (
            r#"session.calls("pay", duration("1h")).exists(c, c.input.pin == input.customer)"#,
            &["can only be compared with a value of type int, not string"],
        ),
        (
            r#"session.calls("pay", duration("1h")).exists(c, c.input.amt == input.amount)"#,
            &["only a string, an int or a bool has one text form"],
        ),
        (
            r#"session.calls("pay", duration("1h")).exists(c, c.input.pin > 3)"#,
            &["cannot order a sensitive int"],
        ),
        (
            r#"session.calls("pay", duration("1h")).exists(c, string(c.input.card) == "x")"#,
            &["`string` cannot be applied"],
        ),
        (
            r#"session.calls("pay", duration("1h")).exists(c, c.input.card in ["x"])"#,
            &["can never be in a list<string>"],
        ),
        (
            r#"session.calls("pay", duration("1h")).exists(c, c.input == input)"#,
            &["cannot compare"],
        ),
    ];
    for (cond, expected) in cases {
        let shown = load_errors("", &when(cond));
        assert_ne!(shown, "loaded", "{cond} should not load");
        for e in *expected {
            assert!(shown.contains(e), "{cond}: expected {e:?} in:\n{shown}");
        }
    }
    // A file names itself, the line and a hint.
    let shown = load_errors("", &when(r#"session.label == "x""#));
    assert!(shown.contains("<string>:"), "{shown}");
}

#[test]
fn a_stateful_policy_read_back_from_the_cache_decides_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, format!("max_window: 36h\n{FLOWS}\n{}", &REFUNDS_RULES)).unwrap();
    let cache = rein_engine::PolicyCache::new(dir.path().join("cache"));
    let (compiled, first) = cache.load(&[&file]).unwrap();
    assert_eq!(first, rein_engine::CacheStatus::Stored);
    let (cached, second) = cache.load(&[&file]).unwrap();
    assert_eq!(second, rein_engine::CacheStatus::Hit);
    assert_eq!(cached.max_window(), SignedDuration::from_hours(36));
    assert_eq!(cached.limits(), compiled.limits());
    for policy in [compiled, cached] {
        let mut state = TestState::default();
        let pay = |amount: f64, m| {
            Request::new("pay")
                .input(json!({"order_id": "o1", "amount": amount}))
                .session("s1")
                .time(at(m))
        };
        let first = send(&policy, &mut state, pay(1.5, 0)).to_json();
        assert_eq!(first["rules"], json!(["two_step"]));
        let approve = Request::new("approve_refund")
            .input(json!({"order_id": "o1", "amount": 100}))
            .session("s1")
            .time(at(1));
        let (_, effects) = send_with(&policy, &mut state, approve.clone(), false);
        let outcome = approve.output(json!({"approved": true}));
        let (_, after) = policy.prepare(&outcome).unwrap().decide_with_state(&state);
        state.apply(&[StateWrite::Output {
            session: "s1".into(),
            decision_id: format!("d{}", state.next_id),
            output: after.output.unwrap(),
        }]);
        assert!(effects.call.is_some());
        for m in 2..5 {
            assert_eq!(send(&policy, &mut state, pay(1.5, m)).effect(), Effect::Allow);
        }
        let d = send(&policy, &mut state, pay(1.5, 5)).to_json();
        assert_eq!(d["reasons"][0], json!("pay_rate: 3 of 3 used for all in the last 1h"));
        assert_eq!(d["retry_after_seconds"], json!(57 * 60));
    }
}

/// A limit on `pay`, added to FLOWS.
const REFUNDS_RULES: &str = r#"  - id: pay_rate
    action: pay
    effect: block
    limit: {count: 3, window: 1h}
"#;

#[test]
fn max_window_must_agree_across_files() {
    let a = "max_window: 2h\ncontracts: {actions: {a: {input: {}}}}\n";
    let b = "max_window: 3h\n";
    let e = Policy::from_sources([("a.yaml", a), ("b.yaml", b)]).unwrap_err();
    assert!(
        e.to_string().contains("`max_window` is 3h here but 2h in `a.yaml`"),
        "{e}"
    );
}

proptest! {
    /// Whatever the sequence of calls, a count limit never lets more than
    /// its count through in any window, and a refused call takes nothing.
    #[test]
    fn a_count_limit_never_lets_more_through_in_any_window(
        gaps in proptest::collection::vec(0i64..1200, 1..40),
        actors in proptest::collection::vec(0u8..3, 40),
    ) {
        let policy = Policy::from_yaml_str(REFUNDS).unwrap();
        let mut state = TestState::default();
        let mut now = t0();
        let mut allowed: Vec<(u8, Timestamp)> = Vec::new();
        for (gap, actor) in gaps.iter().zip(&actors) {
            now += SignedDuration::from_secs(*gap);
            let d = send(&policy, &mut state, refund(&format!("a{actor}"), "c", 0.0, now));
            if d.effect() == Effect::Allow {
                allowed.push((*actor, now));
            } else {
                prop_assert!(d.reasons()[0].starts_with("refund_rate: 3 of 3 used"), "{:?}", d.reasons());
            }
            let in_window = allowed
                .iter()
                .filter(|(a, t)| a == actor && *t >= now - SignedDuration::from_hours(1))
                .count();
            prop_assert!(in_window <= 3);
        }
        prop_assert_eq!(state.uses.iter().filter(|u| u.0.rule == "refund_rate").count(), allowed.len());
    }
}

#[test]
fn session_labels_is_a_list_of_strings() {
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    tag: {input: {}}
    note: {input: {label: string}}
rules:
  - id: tag
    action: tag
    effect: allow
    labels: [a, b]
  - id: many
    action: note
    when: 'session.labels.size() >= 2 && session.labels.exists(l, l == "b")'
    effect: block
  - id: named
    action: note
    when: input.label in session.labels
    effect: require_approval
"#,
    )
    .unwrap();
    let mut state = TestState::default();
    let note = |label: &str, m| {
        Request::new("note")
            .input(json!({ "label": label }))
            .session("s1")
            .time(at(m))
    };
    assert_eq!(send(&policy, &mut state, note("a", 0)).effect(), Effect::Allow);
    send(&policy, &mut state, Request::new("tag").session("s1").time(at(1)));
    assert_eq!(send(&policy, &mut state, note("a", 2)).rules(), ["many", "named"]);
    assert_eq!(send(&policy, &mut state, note("c", 2)).rules(), ["many"]);
    // Labels belong to their session.
    let other = Request::new("note")
        .input(json!({"label": "a"}))
        .session("s2")
        .time(at(3));
    assert_eq!(send(&policy, &mut state, other).effect(), Effect::Allow);
}

#[test]
fn labels_no_rule_reads_keep_a_policy_stateless() {
    // Labels named only for the audit record: nothing reads them, so the
    // policy needs no state (a hook on it takes no lock, loads nothing).
    let only_named = Policy::from_yaml_str(
        r#"
contracts:
  actions:
    read_file: {input: {path: string}}
rules:
  - id: secret_read
    action: read_file
    when: input.path.startsWith("/secrets/")
    effect: block
    labels: [secret]
"#,
    )
    .unwrap();
    assert!(!only_named.uses_state());
    assert!(!only_named.action_state("read_file", Phase::Before).any());
    let d = only_named.decide(&Request::new("read_file").input(json!({"path": "/secrets/k"})));
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.labels(), vec!["secret"]);

    // The same labels, read by another rule: now they are state.
    let read = Policy::from_yaml_str(FLOWS).unwrap();
    assert!(read.action_state("read_file", Phase::Before).writes);
}
