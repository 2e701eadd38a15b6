//! Attacks on stateful control, kept as regression tests: each test shows
//! a way an agent (or a careless policy author) could get past a limit or
//! a session rule, and that it no longer works.

use jiff::{SignedDuration, Timestamp};
use rein_engine::state::StateWrite;
use rein_engine::{Decision, Effect, MemoryState, Policy, Request};
use serde_json::json;

fn t0() -> Timestamp {
    "2026-01-01T10:00:00Z".parse().unwrap()
}

fn at(minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

/// Decides `request` against `state` and applies what its own effect writes.
fn send(policy: &Policy, state: &mut MemoryState, id: &str, request: &Request) -> Decision {
    let prepared = match policy.prepare(request) {
        Ok(p) => p,
        Err(d) => return *d,
    };
    let (decision, effects) = prepared.decide_with_state(state);
    let writes: Vec<StateWrite> = effects.writes(id, decision.effect(), request.time.unwrap());
    state.apply(&writes);
    decision
}

fn load_error(policy: &str) -> String {
    match Policy::from_yaml_str(policy) {
        Ok(_) => "loaded".into(),
        Err(e) => format!("{e}\n{}", e.render(false)),
    }
}

/// `session.sum` over a field that can go negative: one call with a
/// negative amount would empty the budget a rule reads, as it would a
/// limit's `sum:`. Both need `min: 0`.
#[test]
fn session_sum_over_a_field_that_can_go_negative_is_a_load_error() {
    let policy = |field: &str, output: &str| {
        format!(
            r#"
contracts:
  actions:
    refund:
      input: {{amount: {field}, n: {{type: int, min: 1}}, nested: {{type: object, fields: {{v: int}}}}}}
      output: {{total: {output}}}
rules:
  - id: budget
    action: refund
    when: session.sum("refund", "input.amount", duration("24h")) + input.amount > 100
    effect: block
  - id: reported
    action: refund
    when: session.sum("refund", "output.total", duration("24h")) > 100
    effect: block
"#
        )
    };
    let shown = load_error(&policy("int", "{type: int, min: 0}"));
    assert!(
        shown.contains("`input.amount` can go negative; give it `min: 0`"),
        "{shown}"
    );
    let shown = load_error(&policy("{type: int, min: -5}", "{type: int, min: 0}"));
    assert!(shown.contains("`input.amount` can go negative"), "{shown}");
    let shown = load_error(&policy("{type: int, min: 0}", "number"));
    assert!(shown.contains("`output.total` can go negative"), "{shown}");
    assert!(shown.contains("min: 0"), "{shown}");
    assert_eq!(
        load_error(&policy("{type: int, min: 0}", "{type: number, min: 0.0}")),
        "loaded"
    );
    // A nested field as well.
    let nested = policy("{type: int, min: 0}", "{type: int, min: 0}").replace(
        "when: session.sum(\"refund\", \"output.total\"",
        "when: session.sum(\"refund\", \"input.nested.v\"",
    );
    assert!(load_error(&nested).contains("`input.nested.v` can go negative"));
}
