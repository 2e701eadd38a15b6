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
fn send<'p>(policy: &'p Policy, state: &mut MemoryState, id: &str, request: &Request) -> Decision<'p> {
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

/// An amount a decimal cannot hold exactly (more than 28 digits after the
/// point) was rounded, 1e-29 to 0: it would take nothing from the budget.
/// It is refused like an amount too large.
#[test]
fn an_amount_too_small_to_count_exactly_is_refused_not_rounded_to_nothing() {
    let policy = Policy::from_yaml_str(
        r#"
contracts:
  actions:
    refund:
      input: {amount: {type: number, min: 0}}
rules:
  - id: budget
    action: refund
    effect: block
    limit: {sum: input.amount, max: 1, window: 1h}
  - id: ok
    action: refund
    effect: allow
"#,
    )
    .unwrap();
    let mut state = MemoryState::with_key([1; 32]);
    let refund = |amount: f64, m| Request::new("refund").input(json!({"amount": amount})).time(at(m));
    for (i, amount) in [1e-29, 1e-300, 1.2345678901234567e-20].into_iter().enumerate() {
        let d = send(&policy, &mut state, &format!("d{i}"), &refund(amount, 0));
        assert_eq!(d.effect(), Effect::Block, "{amount}: {:?}", d.reasons());
        assert!(
            d.reasons()[0].contains("cannot be counted exactly against the limit"),
            "{:?}",
            d.reasons()
        );
    }
    // What a decimal holds is counted as it is.
    let d = send(&policy, &mut state, "d9", &refund(1e-28, 1));
    assert_eq!(d.effect(), Effect::Allow, "{:?}", d.reasons());
    assert_eq!(state.len().uses, 1);
}

/// Past its limit an `allow` rule does not match and the default decides:
/// under `default: allow` that allows the call anyway, so the limit would
/// limit nothing. A load error says so.
#[test]
fn an_allow_limit_under_a_default_allow_is_a_load_error() {
    let policy = |default: &str, effect: &str| {
        format!(
            r#"
default: {default}
contracts:
  actions:
    shell: {{input: {{command: string}}}}
rules:
  - id: shell_rate
    action: shell
    effect: {effect}
    limit: {{count: 10, window: 1m}}
"#
        )
    };
    let shown = load_error(&policy("allow", "allow"));
    assert!(
        shown.contains("rule `shell_rate` allows up to a limit, and the policy's default is `allow`"),
        "{shown}"
    );
    assert!(shown.contains("give the rule `effect: block`"), "{shown}");
    for (default, effect) in [("block", "allow"), ("require_approval", "allow"), ("allow", "block")] {
        assert_eq!(load_error(&policy(default, effect)), "loaded", "{default} {effect}");
    }
    // The default set in another file counts the same.
    let files = [
        ("defaults.yaml", "default: allow\n".to_string()),
        ("rules.yaml", policy("allow", "allow").replace("default: allow\n", "")),
    ];
    let err = Policy::from_sources(files).unwrap_err();
    assert!(err.to_string().contains("allows up to a limit"), "{err}");
}

/// `max` is read from its text as an exact decimal: a text with more digits
/// after the point than a decimal holds was rounded (32 digits of
/// `0.00…01` to 0, a budget of nothing), now it is a load error.
#[test]
fn a_max_a_decimal_cannot_hold_exactly_is_a_load_error() {
    let policy = |max: &str| {
        format!(
            r#"
contracts:
  actions:
    refund: {{input: {{amount: {{type: number, min: 0}}}}}}
rules:
  - id: budget
    action: refund
    effect: block
    limit: {{sum: input.amount, max: {max}, window: 1h}}
"#
        )
    };
    for max in [
        "0.00000000000000000000000000000001",
        "1.23456789012345678901234567890123",
        "1e-29",
    ] {
        let shown = load_error(&policy(max));
        assert!(shown.contains("cannot be read as an exact decimal"), "{max}: {shown}");
    }
    let shown = load_error(&policy(".inf"));
    assert!(shown.contains("`max` must be a finite number, not `.inf`"), "{shown}");
    for (max, want) in [
        ("1e3", "1000"),
        ("0.3", "0.3"),
        ("2.5E-2", "0.025"),
        ("1e-28", "0.0000000000000000000000000001"),
    ] {
        let p = Policy::from_yaml_str(&policy(max)).unwrap();
        assert_eq!(p.limits()[0].max.normalize().to_string(), want, "{max}");
    }
}

/// `max_window: 1000000000h` loaded, and then no state could be loaded for
/// it (the window starts before the earliest time a clock names): every
/// window is at most a year and a day.
#[test]
fn a_window_longer_than_a_year_and_a_day_is_a_load_error() {
    let policy = |top: &str, window: &str| {
        format!(
            r#"
{top}
contracts:
  actions:
    refund: {{input: {{amount: {{type: number, min: 0}}}}}}
rules:
  - id: rate
    action: refund
    effect: block
    limit: {{count: 5, window: {window}}}
"#
        )
    };
    let shown = load_error(&policy("max_window: 1000000000h", "1h"));
    assert!(
        shown.contains(
            "`max_window` `1000000000h` is longer than the longest window state is kept for (8784h, 366 days)"
        ),
        "{shown}"
    );
    let shown = load_error(&policy("max_window: 8784h", "8785h"));
    assert!(
        shown.contains("`window` `8785h` is longer than the longest window"),
        "{shown}"
    );
    let p = Policy::from_yaml_str(&policy("max_window: 8784h", "8784h")).unwrap();
    assert_eq!(p.max_window(), SignedDuration::from_hours(8784));
}

/// An empty session id was a session like any other: every run whose
/// integration sends `""` shared it, so one run's approval let another
/// run pay. An empty or blank id names no session: a rule that reads the
/// session blocks ("session required").
#[test]
fn an_empty_session_id_is_no_session() {
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    approve_payment:
      input: {order_id: string}
      output: {approved: bool}
    pay:
      input: {order_id: string}
rules:
  - id: two_step
    action: pay
    when: |
      !session.calls("approve_payment", duration("1h")).exists(c,
          has(c.output) && c.output.approved && c.input.order_id == input.order_id)
    effect: block
"#,
    )
    .unwrap();
    for blank in ["", " ", "\t"] {
        let mut state = MemoryState::with_key([1; 32]);
        // One run's approval, recorded with its output...
        let approve = Request::new("approve_payment")
            .input(json!({"order_id": "o1"}))
            .session(blank)
            .time(at(0));
        let d = send(&policy, &mut state, "d1", &approve);
        assert_eq!(d.effect(), Effect::Block, "{blank:?}: {:?}", d.reasons());
        assert!(d.reasons()[0].starts_with("session required"), "{:?}", d.reasons());
        let prepared = policy.prepare(&approve).unwrap();
        assert_eq!(prepared.session(), None);
        // ... never lets another run pay.
        let pay = Request::new("pay")
            .input(json!({"order_id": "o1"}))
            .session(blank)
            .time(at(1));
        let d = send(&policy, &mut state, "d2", &pay);
        assert_eq!(d.effect(), Effect::Block, "{blank:?}: {:?}", d.reasons());
        assert!(d.reasons()[0].starts_with("session required"), "{:?}", d.reasons());
        assert!(state.is_empty());
    }
    // A real id works as before.
    let mut state = MemoryState::with_key([1; 32]);
    let approve = Request::new("approve_payment")
        .input(json!({"order_id": "o1"}))
        .session("s1")
        .time(at(0));
    assert_eq!(send(&policy, &mut state, "d1", &approve).effect(), Effect::Allow);
    assert_eq!(state.len().calls, 1);
}

mod memory_state_model {
    use super::*;
    use proptest::prelude::*;
    use rein_engine::state::{BucketKey, Decimal, LimitQuery, StateView};

    /// What a bucket used in `[now - window, …)`, from a plain list of the
    /// writes still held.
    fn model_use(held: &[(u32, i64, u32)], bucket: u32, now: i64, window: i64) -> Decimal {
        held.iter()
            .filter(|(b, t, _)| *b == bucket && *t >= now - window)
            .map(|(_, _, a)| Decimal::from(*a))
            .sum()
    }

    fn key(b: u32) -> BucketKey {
        BucketKey {
            rule: "r".into(),
            per: vec![("actor.id".into(), format!("\"a{b}\""))],
        }
    }

    fn write(id: usize, b: u32, t: i64, amount: u32) -> StateWrite {
        StateWrite::Use {
            decision_id: format!("d{id}"),
            bucket: key(b),
            time: Timestamp::from_second(1_700_000_000 + t).unwrap(),
            amount: Decimal::from(amount),
        }
    }

    proptest! {
        /// Uses applied out of time order, some undone (several decisions
        /// share a time, a bucket and an amount: undo must take back only
        /// its own), then pruned at a later time: every window up to the
        /// pruning's `max_window` reads what a plain list says, and the
        /// retry time frees exactly enough room.
        #[test]
        fn uses_undo_and_prune_agree_with_a_plain_list(
            uses in proptest::collection::vec((0u32..3, 0i64..40, 0u32..3), 1..40),
            undo in proptest::collection::vec(any::<bool>(), 40),
            now in 20i64..60,
            max_window in 1i64..30,
            window in 1i64..30,
            room in 0u32..5,
        ) {
            let window = window.min(max_window);
            let mut state = MemoryState::with_key([3; 32]);
            // Several decisions write the same bucket, time and amount.
            let writes: Vec<StateWrite> = uses.iter().enumerate().map(|(i, &(b, t, a))| write(i, b, t, a)).collect();
            for w in writes.iter().rev() {
                state.apply(std::slice::from_ref(w));
            }
            let mut held = Vec::new();
            for (i, w) in writes.iter().enumerate() {
                if undo[i] {
                    state.undo(std::slice::from_ref(w));
                } else {
                    held.push(uses[i]);
                }
            }
            let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
            state.prune(at(now), SignedDuration::from_secs(max_window), SignedDuration::from_hours(1));
            for b in 0..3 {
                let bucket = key(b);
                let room = Decimal::from(room);
                let got = state
                    .limit_use(&LimitQuery { bucket: &bucket, window: SignedDuration::from_secs(window), now: at(now), room })
                    .unwrap();
                let want = model_use(&held, b, now, window);
                prop_assert_eq!(got.used, want, "bucket {}", b);
                match got.retry_after_seconds {
                    Some(0) => prop_assert!(want <= room),
                    Some(wait) => {
                        let wait = i64::try_from(wait).unwrap();
                        prop_assert!(want > room);
                        // At the retry time there is room, a second before not.
                        prop_assert!(model_use(&held, b, now + wait, window) <= room);
                        prop_assert!(model_use(&held, b, now + wait - 1, window) > room);
                    }
                    None => prop_assert!(false, "a room of at least 0 is always reached"),
                }
            }
        }
    }
}

/// The same with an `allow` rule that lets every call of the action
/// through: past the limit, that rule allows the call.
#[test]
fn an_allow_limit_beside_an_unconditional_allow_is_a_load_error() {
    let policy = |other: &str| {
        format!(
            r#"
contracts:
  actions:
    shell: {{input: {{command: string}}}}
    web: {{input: {{url: string}}}}
rules:
  - id: shell_rate
    action: [shell, web]
    effect: allow
    limit: {{count: 10, window: 1m}}
{other}
"#
        )
    };
    let open = "  - id: shell_allowed\n    action: shell\n    effect: allow\n";
    let shown = load_error(&policy(open));
    assert!(
        shown.contains(
            "rule `shell_rate` allows `shell` up to a limit, and rule `shell_allowed` allows every call of it"
        ),
        "{shown}"
    );
    // Once, though it targets two actions.
    assert!(shown.starts_with("policy failed to load: 1 error"), "{shown}");
    for fine in [
        "",
        "  - id: ls\n    action: shell\n    when: input.command == \"ls\"\n    effect: allow\n",
        "  - id: other_rate\n    action: shell\n    effect: allow\n    limit: {count: 5, window: 1h}\n",
        "  - id: web_allowed\n    action: web\n    phase: after\n    effect: allow\n",
    ] {
        assert_eq!(load_error(&policy(fine)), "loaded", "{fine}");
    }
}
