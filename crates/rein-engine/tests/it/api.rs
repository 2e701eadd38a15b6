//! The library API: decisions, contract checks, explanations, loading.

use rein_engine::{Basis, Effect, Outcome, Phase, Policy, Request};
use serde_json::json;

const REFUND: &str = r#"
version: "7"
default: allow
contracts:
  actor:
    id: string
    role: {type: enum, values: [agent, admin]}
  snapshot:
    fraud: bool
  actions:
    refund:
      input:
        amount: {type: number, min: 0, max: 10000}
        currency: {type: string, pattern: "^[A-Z]{3}$"}
        card: {type: string, sensitive: true, optional: true}
        lines: {type: list, items: {type: object, fields: {sku: string, qty: {type: int, min: 1}, secret: {type: string, sensitive: true}}}, optional: true}
      output:
        id: string
rules:
  - id: big
    action: refund
    when: input.amount > 1000 && actor.role != "admin"
    effect: block
    reason: big refunds need an admin
  - id: review
    action: refund
    when: input.amount > 500
    effect: require_approval
    approval: {role: lead, ttl: 30m}
    labels: [money]
  - id: fraud
    action: refund
    when: snapshot.fraud
    effect: block
  - id: output_check
    action: refund
    phase: after
    when: output.id == ""
    effect: block
"#;

fn policy() -> Policy {
    Policy::from_yaml_str(REFUND).unwrap()
}

fn req(amount: f64, role: &str, fraud: bool) -> Request {
    Request::new("refund")
        .input(json!({"amount": amount, "currency": "EUR"}))
        .actor(json!({"id": "a", "role": role}))
        .snapshot(json!({"fraud": fraud}))
}

#[test]
fn block_beats_approval_and_all_matches_are_listed() {
    let policy = policy();
    let d = policy.decide(&req(1500.0, "agent", false));
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.rules(), ["big", "review"]);
    // Only the rule that decided gives the reason; both stay listed.
    assert_eq!(d.reasons(), ["big refunds need an admin"]);
    assert_eq!(d.deciding_rules(), ["big"]);
    assert_eq!(d.matched_rules().len(), 2);
    assert!(d.obligations().is_empty(), "a blocked request obliges no approval");
    assert_eq!(d.labels(), ["money"]);
}

#[test]
fn approval_carries_its_obligation() {
    let policy = policy();
    let d = policy.decide(&req(700.0, "agent", false));
    assert_eq!(d.effect(), Effect::RequireApproval);
    let ob = d.obligations();
    assert_eq!(ob.len(), 1);
    assert_eq!(ob[0].rule, "review");
    assert_eq!(ob[0].approval.role, "lead");
    assert_eq!(ob[0].approval.ttl_seconds, Some(1800));
    let j = d.to_json();
    assert_eq!(j["approval"][0]["role"], "lead");
    assert_eq!(j["policy_version"].as_str().unwrap().len(), 32);
}

#[test]
fn default_applies_when_nothing_matches() {
    let policy = policy();
    let d = policy.decide(&req(10.0, "agent", false));
    assert_eq!(d.effect(), Effect::Allow);
    assert_eq!(d.basis(), &Basis::Default);
    assert!(d.rules().is_empty());
}

#[test]
fn the_default_of_the_default_is_block() {
    let p = Policy::from_yaml_str("contracts: {actions: {a: {input: {}}}}").unwrap();
    assert_eq!(p.decide(&Request::new("a")).effect(), Effect::Block);
    // ... but in phase after, an output no rule objects to passes.
    assert_eq!(p.decide(&Request::new("a").phase(Phase::After)).effect(), Effect::Allow);
}

#[test]
fn contract_violations_block_and_name_the_field() {
    let p = policy();
    let cases = [
        (json!({"amount": 5, "currency": "eur"}), "input.currency"),
        (json!({"amount": -1, "currency": "EUR"}), "input.amount"),
        (json!({"amount": "5", "currency": "EUR"}), "input.amount"),
        (json!({"currency": "EUR"}), "input.amount"),
        (json!({"amount": 5, "currency": "EUR", "extra": 1}), "input.extra"),
        (
            json!({"amount": 5, "currency": "EUR", "lines": [{"sku": "a", "qty": 0, "secret": "s"}]}),
            "input.lines[0].qty",
        ),
        (
            json!({"amount": 5, "currency": "EUR", "lines": [{"sku": "a", "qty": 1.5, "secret": "s"}]}),
            "input.lines[0].qty",
        ),
        (json!({"amount": 1e300, "currency": "EUR"}), "input.amount"),
        (json!([1, 2]), "input"),
    ];
    for (input, path) in cases {
        let r = Request::new("refund")
            .input(input.clone())
            .actor(json!({"id": "a", "role": "agent"}))
            .snapshot(json!({"fraud": false}));
        let d = p.decide(&r);
        assert_eq!(d.effect(), Effect::Block, "{input}");
        assert_eq!(
            d.violation().map(|v| v.path.as_str()),
            Some(path),
            "{input}: {:?}",
            d.reasons()
        );
        assert!(d.reasons()[0].starts_with("contract: "));
    }
    let d = p.decide(&Request::new("refnd"));
    assert_eq!(d.violation().unwrap().path, "action");
    assert!(d.violation().unwrap().message.contains("did you mean `refund`?"));
    let d = p.decide(&req(5.0, "root", false));
    assert_eq!(d.violation().unwrap().path, "actor.role");
}

#[test]
fn after_phase_checks_the_output_contract_and_after_rules() {
    let p = policy();
    let base = req(5.0, "agent", false);
    let d = p.decide(&base.clone().output(json!({"id": ""})));
    assert_eq!((d.effect(), d.rules()), (Effect::Block, vec!["output_check"]));
    assert_eq!(d.phase(), Phase::After);
    let d = p.decide(&base.clone().output(json!({"id": "r1"})));
    assert_eq!(d.effect(), Effect::Allow);
    let d = p.decide(&base.clone().output(json!({"id": 7})));
    assert_eq!(d.violation().unwrap().path, "output.id");
    let d = p.decide(&base.clone().phase(Phase::After));
    assert_eq!(d.violation().unwrap().path, "output");
    let mut before_with_output = base.output(json!({"id": "x"}));
    before_with_output.phase = Phase::Before;
    assert_eq!(p.decide(&before_with_output).violation().unwrap().path, "output");
}

/// An outcome that reports an error instead of an output: no output
/// contract to check, the after rules see `error`, rules about the output
/// do not apply (nor rules about the error to an output), and the after
/// default decides when no rule matches.
#[test]
fn error_outcomes_go_through_the_after_rules() {
    let text = format!(
        "{}{}",
        REFUND,
        r#"  - id: leaky_error
    action: refund
    phase: after
    when: error.contains("card")
    effect: block
    reason: the error text mentions a card
  - id: error_or_output
    action: refund
    phase: after
    when: error == "" || output.id == "none"
    effect: require_approval
    approval: {role: lead}
"#
    );
    let p = Policy::from_yaml_str(&text).unwrap();
    let base = req(5.0, "agent", false);

    let d = p.decide(&base.clone().error("declined: card 4111 expired"));
    assert_eq!(d.phase(), Phase::After);
    assert_eq!((d.effect(), d.rules()), (Effect::Block, vec!["leaky_error"]));
    // `output_check` reads the output, which an error outcome lacks: it does
    // not apply, and that is not an evaluation error.
    assert!(d.violation().is_none() && d.errors().is_empty(), "{:?}", d.reasons());

    let d = p.decide(&base.clone().error("timeout"));
    assert_eq!((d.effect(), d.rules()), (Effect::Allow, Vec::<&str>::new()));

    // `error == "" || output.id == "none"`: the missing side absorbs into
    // the `||` as in CEL, the other decides.
    let d = p.decide(&base.clone().error(""));
    assert_eq!(d.rules(), vec!["error_or_output"]);
    let d = p.decide(&base.clone().output(json!({"id": "none"})));
    assert_eq!(d.rules(), vec!["error_or_output"]);
    // A rule about the error does not apply to an output.
    let d = p.decide(&base.clone().output(json!({"id": "r1"})));
    assert_eq!((d.effect(), d.rules()), (Effect::Allow, Vec::<&str>::new()));

    // Both, or an error before the action ran: refused.
    let mut both = base.clone().error("x");
    both.output = Some(json!({"id": "r1"}));
    assert_eq!(p.decide(&both).violation().unwrap().path, "error");
    let mut before = base.clone().error("x");
    before.phase = Phase::Before;
    assert_eq!(p.decide(&before).violation().unwrap().path, "error");

    // `error` is for after rules only.
    let bad = REFUND.replace("when: snapshot.fraud", "when: error == \"x\"");
    let e = Policy::from_yaml_str(&bad).unwrap_err();
    assert!(e
        .render(false)
        .contains("`error` is only available in rules with `phase: after`"));
}

#[test]
fn prepared_requests_decide_like_requests() {
    let p = policy();
    let r = req(700.0, "agent", true);
    let prepared = p.prepare(&r).unwrap();
    assert_eq!(prepared.action(), "refund");
    let (a, b) = (prepared.decide(), p.decide(&r));
    assert_eq!((a.effect(), a.rules()), (b.effect(), b.rules()));
    assert!(p.prepare(&Request::new("nope")).is_err());
}

#[test]
fn explain_traces_every_rule_and_subexpression() {
    let e = policy().explain(&req(1500.0, "admin", false));
    assert_eq!(e.decision.effect(), Effect::RequireApproval);
    let big = e.rules.iter().find(|r| r.id == "big").unwrap();
    assert_eq!(big.outcome, Outcome::NotMatched);
    let step = |expr: &str| big.steps.iter().find(|s| s.expr == expr).map(|s| s.value.clone());
    assert_eq!(step("input.amount"), Some(json!(1500.0)));
    assert_eq!(step("input.amount > 1000"), Some(json!(true)));
    assert_eq!(step("actor.role"), Some(json!("admin")));
    assert_eq!(step("actor.role != \"admin\""), Some(json!(false)));
    let text = e.to_string();
    assert!(text.contains("rule big (block): not matched"), "{text}");
    assert!(text.contains("rule review (require_approval): matched"), "{text}");
    assert_eq!(e.to_json()["rules"].as_array().unwrap().len(), 3);
}

#[test]
fn evaluation_errors_block_with_the_error() {
    let p = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    a:
      input: {n: int, m: map<int>, u: string}
rules:
  - id: div
    action: a
    when: 10 / input.n > 1
    effect: allow
  - id: key
    action: a
    when: input.m.limit > 3
    effect: allow
  - id: url
    action: a
    when: url(input.u).host == "x"
    effect: allow
  - id: clock
    action: a
    when: now > timestamp("2020-01-01T00:00:00Z")
    effect: allow
"#,
    )
    .unwrap();
    let d = p.decide(&Request::new("a").input(json!({"n": 0, "m": {}, "u": "::"})));
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.basis(), &Basis::EvalError);
    let errs: Vec<String> = d.errors().into_iter().map(|e| e.rule).collect();
    assert_eq!(errs, ["div", "key", "url", "clock"]);
    let reasons = d.reasons().join("\n");
    assert!(reasons.contains("division by zero"), "{reasons}");
    assert!(reasons.contains("no key `limit`"), "{reasons}");
    assert!(reasons.contains("the request carries no time"), "{reasons}");
    let ok = p.decide(
        &Request::new("a")
            .input(json!({"n": 2, "m": {"limit": 5}, "u": "https://x/"}))
            .time("2026-01-01T00:00:00Z".parse().unwrap()),
    );
    assert_eq!(ok.effect(), Effect::Allow, "{:?}", ok.reasons());
}

/// Evaluation that must fail (and so block) whatever the operand order or
/// the number types: found by review as ways to get `allow`.
#[test]
fn errors_are_not_dodged_by_operand_order_floats_or_size() {
    let p = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    charge:
      input: {price: number, quantity: int, l: list<string>, t: list<string>, cwd: string, u: string}
      output: {receipt_url: string}
rules:
  - id: left
    action: charge
    phase: after
    when: error.contains("card") || url(output.receipt_url).host != "pay.example.com"
    effect: block
  - id: right
    action: charge
    phase: after
    when: url(output.receipt_url).host != "pay.example.com" || error.contains("card")
    effect: block
  - id: unit_price
    action: charge
    when: input.price / input.quantity < 1.0
    effect: block
  - id: built
    action: charge
    when: input.l.map(p, input.cwd + "/" + p).exists(q, q.startsWith("/etc"))
    effect: block
  - id: scan
    action: charge
    when: input.l.exists(x, x in input.t)
    effect: block
  - id: host
    action: charge
    when: url(input.u).host == "evil.example"
    effect: block
"#,
    )
    .unwrap();
    let input = |quantity: i64, n: usize, cwd_len: usize, u: &str| {
        json!({"price": 0.5, "quantity": quantity, "l": vec!["x"; n], "t": vec!["y"; n],
               "cwd": "c".repeat(cwd_len), "u": u})
    };
    let after = |url: &str| {
        let mut r = Request::new("charge")
            .input(input(1, 1, 1, "https://a/"))
            .output(json!({"receipt_url": url}));
        r.phase = rein_engine::Phase::After;
        p.decide(&r)
    };
    // An unparsable URL fails both rules, with the missing `error` on either side.
    let d = after("not a url");
    assert_eq!(d.effect(), Effect::Block, "{:?}", d.reasons());
    let failed: Vec<String> = d.errors().into_iter().map(|e| e.rule).collect();
    assert_eq!(failed, ["left", "right"]);
    assert_eq!(after("https://pay.example.com/r").effect(), Effect::Allow);

    let before = |i: serde_json::Value| p.decide(&Request::new("charge").input(i));
    let zero = before(input(0, 1, 1, "https://a/"));
    assert_eq!(zero.effect(), Effect::Block);
    assert!(
        zero.reasons().join("\n").contains("division by zero"),
        "{:?}",
        zero.reasons()
    );
    assert_eq!(
        before(input(1, 1, 1, "https://a/")).effect(),
        Effect::Block,
        "0.5 per unit is under 1.0"
    );

    // Building or scanning too much stops within the budget, quickly.
    let started = std::time::Instant::now();
    let big = before(input(1, 40_000, 500_000, "https://a/"));
    assert_eq!(big.effect(), Effect::Block);
    let reasons = big.reasons().join("\n");
    assert!(reasons.contains("evaluation stopped after"), "{reasons}");
    let failed: Vec<String> = big.errors().into_iter().map(|e| e.rule).collect();
    assert!(
        failed.contains(&"built".to_string()) && failed.contains(&"scan".to_string()),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A final dot names the same host.
    let dotted =
        before(json!({"price": 2.0, "quantity": 1, "l": [], "t": [], "cwd": "", "u": "https://evil.example./x"}));
    assert_eq!(
        dotted.matched_rules().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["host"]
    );
}

/// `double()` of a request string: a number too large for a double is an
/// error, not an infinity that passes every `<`; a spelt-out infinity (what
/// `rein convert` writes for Actra's `.inf`) is kept.
#[test]
fn double_refuses_numbers_too_large_but_keeps_spelt_infinities() {
    let p = Policy::from_yaml_str(
        "default: block\ncontracts:\n  actions:\n    a:\n      input: {s: string}\nrules:\n  - id: small\n    action: a\n    when: double(input.s) < 1000.0\n    effect: allow\n",
    )
    .unwrap();
    let d = |s: &str| p.decide(&Request::new("a").input(json!({ "s": s })));
    let huge = d("-1e400");
    assert_eq!(huge.effect(), Effect::Block);
    assert!(
        huge.reasons().join(" ").contains("too large for a number"),
        "{:?}",
        huge.reasons()
    );
    assert_eq!(d("NaN").effect(), Effect::Block);
    assert_eq!(d("-Infinity").effect(), Effect::Allow);
    assert_eq!(d("12.5").effect(), Effect::Allow);
}

#[test]
fn version_is_stable_and_order_independent() {
    let a = "contracts: {actions: {a: {input: {}}}}\n";
    let b = "rules: [{id: r, action: a, effect: allow}]\n";
    let p1 = Policy::from_sources([("1.yaml", a), ("2.yaml", b)]).unwrap();
    let p2 = Policy::from_sources([("x.yaml", b), ("y.yaml", a)]).unwrap();
    assert_eq!(p1.version(), p2.version());
    let p3 = Policy::from_sources([
        ("1.yaml", a),
        ("2.yaml", "rules: [{id: r, action: a, effect: block}]\n"),
    ])
    .unwrap();
    assert_ne!(p1.version(), p3.version());
}

#[test]
fn version_labels_are_kept_as_written_and_merged_across_files() {
    let a = "version: 1.10\ncontracts: {actions: {a: {input: {}}}}\n";
    let b = "version: hooks-2\nrules: [{id: r, action: a, effect: allow}]\n";
    let c = "version: 1.10\nrules: [{id: s, action: a, effect: allow}]\n";
    let none = "rules: [{id: t, action: a, effect: allow}]\n";
    let one = Policy::from_sources([("a.yaml", a), ("n.yaml", none)]).unwrap();
    // As written, not as the float it reads as.
    assert_eq!(one.version_label(), Some("1.10"));
    let d = one.decide(&Request::new("a"));
    assert_eq!(d.policy_version_label(), Some("1.10"));
    assert_eq!(d.to_json()["policy_version_label"], "1.10");
    // Distinct labels, sorted, whatever the order of the files.
    let p1 = Policy::from_sources([("a.yaml", a), ("b.yaml", b), ("c.yaml", c)]).unwrap();
    let p2 = Policy::from_sources([("c.yaml", c), ("b.yaml", b), ("a.yaml", a)]).unwrap();
    assert_eq!(p1.version_label(), Some("1.10 + hooks-2"));
    assert_eq!(p2.version_label(), p1.version_label());
    // No label: none in the decision either.
    let p = Policy::from_sources([("n.yaml", "contracts: {actions: {a: {input: {}}}}\n"), ("m.yaml", none)]).unwrap();
    assert_eq!(p.version_label(), None);
    let d = p.decide(&Request::new("a"));
    assert!(d.to_json().get("policy_version_label").is_none());
}

#[test]
fn sensitive_fields_are_listed_for_redaction() {
    assert_eq!(
        policy().sensitive_fields("refund"),
        ["input.card", "input.lines[].secret"]
    );
    assert!(policy().sensitive_fields("nope").is_empty());
}

/// A sensitive field's violation says what is wrong without repeating the
/// value: the reasons are recorded in clear, the value only as a hash.
#[test]
fn violations_of_sensitive_fields_do_not_repeat_the_value() {
    let p = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    pay:
      input:
        pin: {type: int, sensitive: true, min: 0, max: 9999}
        tier: {type: enum, values: [gold, silver], sensitive: true}
        dob: {type: timestamp, sensitive: true}
        note: {type: int, max: 5, optional: true}
"#,
    )
    .unwrap();
    let ok = json!({"pin": 1, "tier": "gold", "dob": "2000-01-01T00:00:00Z"});
    for (field, value, says) in [
        ("pin", json!(123456), "must be at most 9999"),
        ("pin", json!(12.75), "must be a whole number"),
        ("pin", json!(1e20), "is too large for an int"),
        ("tier", json!("platinum-SECRET"), "must be one of"),
        ("dob", json!("1985-07-04 secret"), "is not an RFC 3339 timestamp"),
    ] {
        let mut input = ok.clone();
        input[field] = value.clone();
        let d = p.decide(&Request::new("pay").input(input));
        let v = d.violation().unwrap_or_else(|| panic!("{field}: no violation"));
        assert!(v.message.contains(says), "{field}: {}", v.message);
        let shown = value.to_string();
        let bare = shown.trim_matches('"');
        assert!(!v.message.contains(bare), "{field}: {}", v.message);
        assert!(d.reasons().iter().all(|r| !r.contains(bare)), "{:?}", d.reasons());
    }
    // A field that is not sensitive still says what it got.
    let mut input = ok;
    input["note"] = json!(77);
    let d = p.decide(&Request::new("pay").input(input));
    assert!(d.violation().unwrap().message.contains("got 77"));
}

#[test]
fn policy_is_send_sync_and_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<rein_engine::Decision>();
    let p = policy();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let p = p.clone();
            std::thread::spawn(move || p.decide(&req(f64::from(i) * 400.0, "agent", false)).effect())
        })
        .collect();
    let effects: Vec<Effect> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        effects,
        [Effect::Allow, Effect::Allow, Effect::RequireApproval, Effect::Block]
    );
}

#[test]
fn hostile_requests_get_clear_errors_not_panics() {
    // Deep nesting is refused by the JSON reader, with a message.
    let deep = format!(
        "{{\"action\": \"refund\", \"input\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let err = Request::from_json_str(&deep).unwrap_err().to_string();
    assert!(err.contains("recursion limit"), "{err}");
    // Huge numbers and overlong strings meet the contract.
    let p = policy();
    let d = p.decide(&Request::new("refund").input(json!({"amount": 5, "currency": "E".repeat(1_000_000)})));
    assert_eq!(d.violation().unwrap().path, "input.currency");
    let d = p.decide(
        &Request::from_json_str(r#"{"action":"refund","input":{"amount":1e999,"currency":"EUR"}}"#).unwrap_or_default(),
    );
    assert_eq!(d.effect(), Effect::Block);
}

#[test]
fn glob_and_path_functions_cannot_be_dodged() {
    let p = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    file.read: {input: {path: string}}
rules:
  - id: env
    action: file.read
    when: input.path.glob("**/.env")
    effect: block
  - id: etc
    action: file.read
    when: input.path.under("/etc")
    effect: block
"#,
    )
    .unwrap();
    let effect = |path: &str| {
        p.decide(&Request::new("file.read").input(json!({"path": path})))
            .effect()
    };
    for blocked in [
        ".env",
        "./.env",
        "a/../.env",
        "/home/u/project/.env",
        "/home/u//project/./.env",
        "/etc/passwd",
        "/tmp/../etc/shadow",
        "/etc",
    ] {
        assert_eq!(effect(blocked), Effect::Block, "{blocked}");
    }
    for allowed in [".env.example", "/etc2/x", "/home/u/env", "/home/u/.environment"] {
        assert_eq!(effect(allowed), Effect::Allow, "{allowed}");
    }
}

#[test]
fn files_and_directories_load_with_clear_errors() {
    let dir = std::env::temp_dir().join(format!("rein-load-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.yaml"), "contracts: {actions: {a: {input: {}}}}\n").unwrap();
    std::fs::write(dir.join("sub/b.yml"), "rules: [{id: r, action: a, effect: allow}]\n").unwrap();
    std::fs::write(dir.join("a.test.yaml"), "not: a policy\n").unwrap();
    let p = Policy::load(&[&dir]).unwrap();
    assert_eq!(p.decide(&Request::new("a")).effect(), Effect::Allow);
    let err = Policy::load(&[dir.join("missing.yaml")]).unwrap_err().to_string();
    assert!(err.contains("cannot read") && err.contains("missing.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Nested comprehensions over request lists are bounded: a condition has a
/// budget of comprehension steps, and over it the rule blocks with an
/// evaluation error instead of running for minutes.
#[test]
fn nested_comprehensions_have_a_step_budget() {
    let p = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    sum:
      input:
        xs: list<int>
rules:
  - id: pairs
    action: sum
    when: input.xs.exists(x, input.xs.exists(y, x + y < 0))
    effect: block
"#,
    )
    .unwrap();
    let xs = |n: i64| Request::new("sum").input(json!({ "xs": (0..n).collect::<Vec<i64>>() }));
    // 300 x 300 = 90,000 steps: decided.
    let d = p.decide(&xs(300));
    assert_eq!((d.effect(), d.errors().len()), (Effect::Allow, 0));
    // 2,000 x 2,000 = 4,000,000 steps: over the budget, blocked.
    let started = std::time::Instant::now();
    let d = p.decide(&xs(2000));
    assert_eq!(d.effect(), Effect::Block);
    let errors = d.errors();
    assert!(
        errors[0].message.contains("evaluation stopped after 1000000 steps"),
        "{errors:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn per_call_is_for_top_level_request_fields_only() {
    let ok = Policy::from_yaml_str(
        "contracts:\n  snapshot: {call: {type: string, per_call: true}}\n  actions:\n    a:\n      input: {id: {type: string, per_call: true}, n: int}\n",
    )
    .unwrap();
    assert_eq!(ok.per_call_fields("a"), ["input.id", "snapshot.call"]);
    assert_eq!(ok.per_call_fields("unknown"), ["snapshot.call"]);
    for (policy, field) in [
        (
            "contracts:\n  actions:\n    a:\n      input:\n        o: {type: object, fields: {id: {type: string, per_call: true}}}\n",
            "`id`",
        ),
        (
            "contracts:\n  actions:\n    a:\n      input: {n: int}\n      output: {id: {type: string, per_call: true}}\n",
            "`id` of the output of `a`",
        ),
        ("contracts:\n  actor: {id: {type: string, per_call: yes}}\n", "`per_call`"),
    ] {
        let e = Policy::from_yaml_str(policy).unwrap_err();
        let text = format!("{:?}", e.diagnostics());
        assert!(text.contains("per_call") && text.contains(field), "{policy}: {text}");
    }
}

#[test]
fn may_match_decides_on_what_a_shell_glob_could_name() {
    let policy = Policy::from_yaml_str(
        r#"
default: allow
contracts:
  actions:
    read:
      input: {paths: {type: list, items: string}}
rules:
  - id: secrets
    action: read
    when: input.paths.exists(p, p.mayMatchIgnoreCase("**/.ssh/**") || p.mayMatchIgnoreCase("**/.env"))
    effect: block
  - id: exact_case
    action: read
    when: input.paths.exists(p, p.mayMatch("**/ID_*.key") || p.globIgnoreCase("**/secret.txt"))
    effect: require_approval
"#,
    )
    .unwrap();
    let effect = |paths: serde_json::Value| {
        policy
            .decide(&Request::new("read").input(json!({"paths": paths})))
            .effect()
    };
    assert_eq!(effect(json!(["/home/u/.ss?/id_*"])), Effect::Block);
    assert_eq!(effect(json!(["/p/.en?"])), Effect::Block);
    assert_eq!(effect(json!(["/p/.ENV"])), Effect::Block);
    assert_eq!(effect(json!(["/home/u/.\u{17F}sh/x"])), Effect::Block);
    assert_eq!(effect(json!(["/p/src/*.rs", "/p/README.md"])), Effect::Allow);
    // `*.rs` could be `ID_x.rs`, but never `ID_x.key`.
    assert_eq!(effect(json!(["/p/ID_?.key"])), Effect::RequireApproval);
    assert_eq!(effect(json!(["/p/id_?.key"])), Effect::Allow);
    assert_eq!(effect(json!(["/p/x/../SECRET.txt"])), Effect::RequireApproval);

    // The pattern is checked at load, with its position.
    for (call, message) in [
        (r#"input.p.mayMatch("a[")"#, "invalid glob pattern"),
        (r#"input.p.mayMatchIgnoreCase("{a")"#, "invalid glob pattern"),
        (r#"input.p.globIgnoreCase(input.p)"#, "must be a string literal"),
        (r#"input.n.mayMatch("*")"#, "applies to strings"),
    ] {
        let text = format!(
            "contracts: {{actions: {{a: {{input: {{p: string, n: int}}}}}}}}\nrules: [{{id: r, action: a, effect: block, when: '{call}'}}]\n"
        );
        let e = Policy::from_yaml_str(&text).unwrap_err().to_string();
        assert!(e.contains(message), "{call}: {e}");
        assert!(e.contains("<string>:2:"), "{call}: {e}");
    }
}

#[test]
fn reasons_are_those_of_the_deciding_effect_in_rule_order() {
    let policy = Policy::from_yaml_str(
        r#"
contracts:
  actor: {suspended: bool}
  actions:
    create_issue:
      input: {title: string}
rules:
  - {id: issues_fine, action: create_issue, effect: allow, reason: issues are fine}
  - {id: review, action: create_issue, effect: require_approval, when: 'input.title.contains("urgent")', reason: urgent issues are reviewed}
  - {id: suspended, action: create_issue, effect: block, when: actor.suspended, reason: the actor is suspended}
  - {id: also_fine, action: create_issue, effect: allow, reason: titles are fine}
  - {id: no_urgent_spam, action: create_issue, effect: block, when: 'input.title.contains("!!!")', reason: no shouting}
"#,
    )
    .unwrap();
    let decide = |title: &str, suspended: bool| {
        policy.decide(
            &Request::new("create_issue")
                .input(json!({ "title": title }))
                .actor(json!({ "suspended": suspended })),
        )
    };
    let d = decide("urgent!!!", true);
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.reasons(), ["the actor is suspended", "no shouting"]);
    assert_eq!(
        d.rules(),
        ["issues_fine", "review", "suspended", "also_fine", "no_urgent_spam"]
    );
    assert_eq!(d.to_json()["reasons"], json!(["the actor is suspended", "no shouting"]));
    assert_eq!(d.to_json()["rules"].as_array().unwrap().len(), 5);
    let d = decide("urgent", false);
    assert_eq!(d.effect(), Effect::RequireApproval);
    assert_eq!(d.reasons(), ["urgent issues are reviewed"]);
    assert_eq!(d.deciding_rules(), ["review"]);
    let d = decide("fine", false);
    assert_eq!(d.reasons(), ["issues are fine", "titles are fine"]);
    // Explain still shows every rule, matched or not.
    let e = policy.explain(
        &Request::new("create_issue")
            .input(json!({"title": "x"}))
            .actor(json!({"suspended": true})),
    );
    let text = e.to_string();
    assert!(text.contains("reason: the actor is suspended"), "{text}");
    assert!(!text.contains("reason: issues are fine"), "{text}");
    assert!(text.contains("rule issues_fine (allow): matched"), "{text}");
    assert!(text.contains("rule review (require_approval): not matched"), "{text}");
}

/// A test file given where a policy is expected is named as such, not
/// reported key by key as a policy with unknown keys.
#[test]
fn a_test_file_given_as_a_policy_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), "default: block\n").unwrap();
    for name in ["policy.test.yaml", "policy.test.yml"] {
        let test = dir.path().join(name);
        std::fs::write(&test, "policy: policy.yaml\ncases: []\n").unwrap();
        let e = rein_engine::Policy::load(&[&test]).unwrap_err().to_string();
        assert!(e.contains("is a policy test file"), "{e}");
        assert!(e.contains("rein test"), "{e}");
        assert!(!e.contains("unknown key"), "{e}");
    }
    // A directory still leaves them out and loads its policies.
    assert!(rein_engine::Policy::load(&[dir.path()]).is_ok());
}

#[test]
fn input_fields_list_the_contract_in_declaration_order() {
    let p = policy();
    let (fields, extra_ignored) = p.input_fields("refund").unwrap();
    let got: Vec<(&str, bool, &str)> = fields
        .iter()
        .map(|f| (f.name.as_str(), f.optional, f.ty.as_str()))
        .collect();
    assert_eq!(got[0], ("amount", false, "number"));
    assert_eq!(got[1], ("currency", false, "string"));
    assert_eq!(got[2], ("card", true, "string"));
    assert_eq!(got[3].0, "lines");
    assert!(got[3].1 && got[3].2.starts_with("list<"), "{:?}", got[3]);
    assert_eq!(got.len(), 4);
    // A native contract refuses undeclared fields.
    assert!(!extra_ignored);
    assert!(p.input_fields("refnd").is_none());
    // An Actra schema's action drops them (as Actra does), every field
    // optional.
    let actra = Policy::from_actra_strs(
        "version: 1\nactions:\n  refund:\n    fields:\n      amount: number\nactor:\n  fields:\n    role: string\nsnapshot:\n  fields:\n    flag: boolean\n",
        "version: 1\nrules: []\n",
        None,
    )
    .unwrap();
    let (fields, extra_ignored) = actra.input_fields("refund").unwrap();
    assert!(extra_ignored);
    assert_eq!(
        fields.iter().map(|f| (f.name.as_str(), f.optional)).collect::<Vec<_>>(),
        [("amount", true)]
    );
}

#[test]
fn checks_output_says_whether_a_result_is_looked_at() {
    let p = Policy::from_yaml_str(
        "default: allow\ncontracts:\n  actions:\n    a: {input: {x: int}}\n    b: {input: {x: int}, output: {y: int}}\nrules:\n  - {id: late, action: a, phase: after, when: 'input.x > 1', effect: block}\n",
    )
    .unwrap();
    // An `after` rule, or an output contract, makes a result checked.
    assert!(p.checks_output("a"));
    assert!(p.checks_output("b"));
    assert!(!p.checks_output("unknown"));
    let bare = Policy::from_yaml_str(
        "default: allow\ncontracts:\n  actions:\n    c: {input: {x: int}}\nrules:\n  - {id: r, action: c, effect: allow}\n",
    )
    .unwrap();
    assert!(!bare.checks_output("c"));
    // A default for the after phase that is not `allow` checks every result.
    let strict = Policy::from_yaml_str(
        "default: {before: allow, after: block}\ncontracts:\n  actions:\n    c: {input: {x: int}}\nrules:\n  - {id: r, action: c, effect: allow}\n",
    )
    .unwrap();
    assert!(strict.checks_output("c"));
}

#[test]
fn decision_weight_grows_with_the_rules_an_action_evaluates() {
    let p = policy();
    let before = p.decision_weight("refund", Phase::Before);
    let after = p.decision_weight("refund", Phase::After);
    // Three `before` rules, each with a condition of a few nodes.
    assert!(before > 3 * 3, "{before}");
    assert!(after >= 1 && after < before, "{after} vs {before}");
    assert_eq!(p.decision_weight("unknown", Phase::Before), 0);
    let many = Policy::from_yaml_str(&format!(
        "contracts: {{actions: {{a: {{input: {{x: int}}}}}}}}\nrules:\n{}",
        (0..50)
            .map(|i| format!("  - {{id: r{i}, action: a, when: 'input.x > {i}', effect: block}}\n"))
            .collect::<String>()
    ))
    .unwrap();
    let w = many.decision_weight("a", Phase::Before);
    assert!((50 * 3..=50 * 5).contains(&w), "{w}");
}
