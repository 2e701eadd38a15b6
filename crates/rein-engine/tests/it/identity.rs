//! Identity in the language: the reserved `actor.chain` (read by rules with
//! or without an actor contract, checked against its type in every
//! request, refused as anything but `bound: true` in a contract) and
//! `bound: true` (where it may be written, the precomputed list, the
//! reason the runtime and `rein test` give).

use rein_engine::{Basis, Effect, Policy, PolicyCache, Request};
use serde_json::{json, Value};

fn request(actor: Value) -> Request {
    Request::new("deploy").input(json!({})).actor(actor)
}

fn load_error(text: &str) -> String {
    let err = Policy::from_yaml_str(text).expect_err("should not load");
    format!("{err}\n\n{}", err.render(false))
}

/// Rules over the chain, in a policy with no actor contract and in ones
/// whose contract declares other fields (refusing or ignoring undeclared
/// ones, with `chain` named or not).
const RULES: &str = r#"
  - id: alice
    action: deploy
    when: actor.chain.exists(l, l.kind == "user" && l.id == "alice")
    effect: allow
  - id: deep
    action: deploy
    when: size(actor.chain) > 3
    effect: block
    reason: chains deeper than 3 are refused
  - id: subagent_last
    action: deploy
    when: size(actor.chain) > 0 && actor.chain[size(actor.chain) - 1].kind == "subagent"
    effect: require_approval
"#;

fn policies() -> Vec<(&'static str, Policy)> {
    let contracts = [
        ("no actor contract", ""),
        ("actor contract", "  actor:\n    id: string\n"),
        (
            "actor contract, optional id",
            "  actor:\n    id: {type: string, optional: true}\n",
        ),
        ("chain bound", "  actor:\n    id: string\n    chain: {bound: true}\n"),
        ("empty actor contract", "  actor: {}\n"),
    ];
    contracts
        .into_iter()
        .map(|(name, actor)| {
            let text =
                format!("default: block\ncontracts:\n{actor}  actions:\n    deploy: {{input: {{}}}}\nrules:{RULES}");
            (
                name,
                Policy::from_yaml_str(&text).unwrap_or_else(|e| panic!("{name}: {e}")),
            )
        })
        .collect()
}

#[test]
fn rules_read_the_chain_whatever_the_actor_contract() {
    let alice = json!([{"kind": "user", "id": "alice"}, {"kind": "agent", "id": "bot"}]);
    let alice_sub = json!([{"kind": "user", "id": "alice"}, {"kind": "subagent", "id": "r"}]);
    let deep = json!([
        {"kind": "user", "id": "alice"},
        {"kind": "agent", "id": "a"},
        {"kind": "agent", "id": "b"},
        {"kind": "subagent", "id": "c"}
    ]);
    let bob = json!([{"kind": "user", "id": "bob"}]);
    // `alice` written as another kind is not the user alice.
    let not_user = json!([{"kind": "agent", "id": "alice"}]);
    for (name, p) in policies() {
        let with_id = |chain: Value| {
            if name.starts_with("actor contract") || name == "chain bound" {
                json!({"id": "bot", "chain": chain})
            } else if name == "empty actor contract" {
                json!({"chain": chain})
            } else {
                json!({"id": "bot", "role": "anything", "chain": chain})
            }
        };
        let id_only = |actor: Value| {
            if name == "empty actor contract" {
                json!({})
            } else {
                actor
            }
        };
        let effect = |actor: Value| {
            let d = p.decide(&request(actor));
            assert!(d.violation().is_none(), "{name}: {:?}", d.reasons());
            d.effect()
        };
        assert_eq!(effect(with_id(alice.clone())), Effect::Allow, "{name}");
        assert_eq!(effect(with_id(alice_sub.clone())), Effect::RequireApproval, "{name}");
        let d = p.decide(&request(with_id(deep.clone())));
        assert_eq!(d.effect(), Effect::Block, "{name}");
        assert_eq!(d.rules().len(), 3, "{name}: {:?}", d.rules());
        assert_eq!(d.reasons(), vec!["chains deeper than 3 are refused"], "{name}");
        assert_eq!(effect(with_id(bob.clone())), Effect::Block, "{name}");
        assert_eq!(effect(with_id(not_user.clone())), Effect::Block, "{name}");
        // Absent or null: the empty list (no rule errs on it, none matches).
        for actor in [
            id_only(json!({"id": "bot"})),
            id_only(json!({"id": "bot", "chain": null})),
        ] {
            let d = p.decide(&request(actor));
            assert_eq!(d.effect(), Effect::Block, "{name}");
            assert_eq!(*d.basis(), Basis::Default, "{name}: {:?}", d.reasons());
        }
    }
}

#[test]
fn a_chain_that_does_not_fit_its_type_is_a_contract_block_naming_the_field() {
    let cases = [
        (json!("user:alice"), "actor.chain", "must be a list"),
        (json!({"kind": "user", "id": "a"}), "actor.chain", "must be a list"),
        (
            json!([{"kind": "user", "id": "a"}, "agent:b"]),
            "actor.chain[1]",
            "must be an object",
        ),
        (
            json!([{"kind": "user", "id": "a"}, {"kind": 1, "id": "b"}]),
            "actor.chain[1].kind",
            "must be a string",
        ),
        (json!([{"kind": "user"}]), "actor.chain[0].id", "is required"),
        (
            json!([{"kind": "user", "id": null}]),
            "actor.chain[0].id",
            "must be a string",
        ),
        (
            json!([{"kind": "user", "id": "a", "admin": true}]),
            "actor.chain[0].admin",
            "is not declared",
        ),
    ];
    for (name, p) in policies() {
        for (chain, path, message) in &cases {
            let actor = if name == "empty actor contract" {
                json!({"chain": chain})
            } else {
                json!({"id": "bot", "chain": chain})
            };
            let d = p.decide(&request(actor));
            assert_eq!(d.effect(), Effect::Block, "{name}: {chain}");
            let v = d
                .violation()
                .unwrap_or_else(|| panic!("{name}: {chain}: {:?}", d.reasons()));
            assert_eq!(v.path, *path, "{name}: {chain}");
            assert!(v.message.contains(message), "{name}: {chain}: {}", v.message);
        }
    }
}

#[test]
fn other_actor_fields_stay_invisible_without_an_actor_contract() {
    let text = r#"
contracts:
  actions:
    deploy: {input: {}}
rules:
  - id: admin
    action: deploy
    when: actor.role == "admin"
    effect: allow
"#;
    let e = load_error(text);
    assert!(e.contains("role"), "{e}");
    // Dropped, whatever their shape: only the chain is read.
    let p =
        Policy::from_yaml_str("default: allow\ncontracts:\n  actions:\n    deploy: {input: {}}\nrules: []\n").unwrap();
    let d = p.decide(&request(json!({"role": ["x"], "nested": {"a": 1}})));
    assert_eq!(d.effect(), Effect::Allow, "{:?}", d.reasons());
}

#[test]
fn the_actor_contract_names_chain_only_to_require_it_bound() {
    let base = |chain: &str| {
        format!("contracts:\n  actor:\n    id: string\n    chain: {chain}\n  actions:\n    deploy: {{input: {{}}}}\nrules: []\n")
    };
    // Accepted: bound with no type, bound with exactly the reserved type
    // (fields in either order), a description.
    for ok in [
        "{bound: true}",
        "{bound: false}",
        "{bound: true, description: who delegated}",
        "{type: list, items: {type: object, fields: {kind: string, id: string}}, bound: true}",
        "{type: list, items: {type: object, fields: {id: string, kind: string}}}",
        "{type: list, items: {type: object, fields: {id: string, kind: string}, extra_fields: reject}}",
    ] {
        Policy::from_yaml_str(&base(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("string", "its type is not"),
        ("list<string>", "its type is not"),
        (
            "{type: list, items: {type: object, fields: {kind: string}}}",
            "its type is not",
        ),
        (
            "{type: list, items: {type: object, fields: {kind: string, id: string, at: string}}}",
            "its type is not",
        ),
        (
            "{type: list, items: {type: object, fields: {kind: string, id: int}}}",
            "its type is not",
        ),
        (
            "{type: list, items: {type: object, fields: {kind: {type: enum, values: [user]}, id: string}}}",
            "its type is not",
        ),
        (
            "{type: list, items: {type: object, fields: {kind: string, id: string}, extra_fields: ignore}}",
            "its type is not",
        ),
        (
            "{type: list, items: {type: object, fields: {kind: string, id: string}}, max_len: 3}",
            "takes no constraints",
        ),
        ("{bound: true, optional: true}", "cannot be `optional`"),
        ("{bound: true, sensitive: true}", "cannot be `sensitive`"),
        ("{bound: true, per_call: true}", "cannot be `per_call`"),
        ("{bound: true, max_len: 3}", "takes no constraints"),
    ] {
        let e = load_error(&base(bad));
        assert!(e.contains("`actor.chain` is reserved"), "{bad}: {e}");
        assert!(e.contains(why), "{bad}: {e}");
        // File and line of the field.
        assert!(e.contains("<string>:4:"), "{bad}: {e}");
    }
    // A key a field never has is still refused by name.
    let e = load_error(&base("{bound: true, bond: 1}"));
    assert!(e.contains("unknown key `bond`"), "{e}");
}

#[test]
fn bound_applies_to_top_level_actor_fields_only() {
    for (contracts, line) in [
        ("  actions:\n    deploy:\n      input:\n        who: {type: string, bound: true}\n", 6),
        ("  snapshot:\n    env: {type: string, bound: true}\n  actions:\n    deploy: {input: {}}\n", 4),
        (
            "  actor:\n    org: {type: object, fields: {id: {type: string, bound: true}}}\n  actions:\n    deploy: {input: {}}\n",
            4,
        ),
        (
            "  actor:\n    tags: {type: list, items: {type: string, bound: true}}\n  actions:\n    deploy: {input: {}}\n",
            4,
        ),
        (
            "  actions:\n    deploy:\n      input: {}\n      output: {id: {type: string, bound: true}}\n",
            6,
        ),
    ] {
        let text = format!("default: allow\ncontracts:\n{contracts}rules: []\n");
        let e = load_error(&text);
        assert!(e.contains("`bound` cannot be set"), "{contracts}: {e}");
        assert!(e.contains(&format!("<string>:{line}:")), "{contracts}: {e}");
    }
    let e = load_error(
        "contracts:\n  actor:\n    id: {type: string, bound: yes please}\n  actions:\n    deploy: {input: {}}\nrules: []\n",
    );
    assert!(e.contains("`bound`"), "{e}");
}

const BOUND: &str = r#"
default: allow
contracts:
  actor:
    tenant: {type: string, bound: true}
    id: {type: string, bound: true}
    role: {type: string, optional: true}
    chain: {bound: true}
  actions:
    deploy: {input: {}}
rules:
  - id: alice
    action: deploy
    when: actor.chain.exists(l, l.id == "alice") && actor.tenant == "acme"
    effect: allow
"#;

#[test]
fn bound_fields_are_listed_sorted_and_judged_by_one_function() {
    let p = Policy::from_yaml_str(BOUND).unwrap();
    assert_eq!(p.bound_actor_fields(), ["chain", "id", "tenant"]);
    let none = p.unbound_required(|_| false).unwrap();
    assert_eq!(
        none,
        "actor.chain must be set by the credential; this request's credential does not bind it"
    );
    assert_eq!(
        p.unbound_required(|f| f != "tenant").as_deref(),
        Some("actor.tenant must be set by the credential; this request's credential does not bind it")
    );
    assert_eq!(p.unbound_required(|f| ["chain", "id", "tenant"].contains(&f)), None);
    // A field the credential binds that the policy does not require
    // changes nothing.
    assert_eq!(p.unbound_required(|_| true), None);
    // The decision a surface deciding through the engine gives.
    let d = p.unbound_block(rein_engine::Phase::Before, none.clone());
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(*d.basis(), Basis::Credential(none.clone()));
    assert_eq!(d.reasons(), vec![none]);
    assert!(d.rules().is_empty() && d.violation().is_none());
    assert_eq!(d.to_json()["default_applied"], json!(false));

    // A policy requiring none, or with no actor contract: nothing to bind.
    for text in [
        "contracts:\n  actor:\n    id: string\n  actions:\n    deploy: {input: {}}\nrules: []\n",
        "contracts:\n  actions:\n    deploy: {input: {}}\nrules: []\n",
    ] {
        let p = Policy::from_yaml_str(text).unwrap();
        assert!(p.bound_actor_fields().is_empty());
        assert_eq!(p.unbound_required(|_| false), None);
    }
}

#[test]
fn the_cache_keeps_the_chain_and_the_bound_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, BOUND).unwrap();
    let cache = PolicyCache::new(dir.path().join("cache"));
    let (_, first) = cache.load(&[&file]).unwrap();
    let (cached, second) = cache.load(&[&file]).unwrap();
    assert_eq!(
        (first, second),
        (rein_engine::CacheStatus::Stored, rein_engine::CacheStatus::Hit)
    );
    assert_eq!(cached.bound_actor_fields(), ["chain", "id", "tenant"]);
    let actor = json!({"tenant": "acme", "id": "bot", "chain": [{"kind": "user", "id": "alice"}]});
    let d = cached.decide(&request(actor));
    assert_eq!(d.rules(), vec!["alice"]);
    let d = cached.decide(&request(
        json!({"tenant": "acme", "id": "bot", "chain": [{"kind": "user"}]}),
    ));
    assert_eq!(d.violation().map(|v| v.path.as_str()), Some("actor.chain[0].id"));
}

#[test]
fn explanations_show_the_chain_a_rule_read() {
    let p = Policy::from_yaml_str(BOUND).unwrap();
    let actor = json!({"tenant": "acme", "id": "bot", "chain": [{"kind": "user", "id": "alice"}]});
    let e = p.explain(&request(actor));
    let rule = &e.rules[0];
    let chain = rule
        .steps
        .iter()
        .find(|s| s.expr == "actor.chain")
        .unwrap_or_else(|| panic!("{:?}", rule.steps));
    assert_eq!(chain.value, json!([{"kind": "user", "id": "alice"}]));
}

#[test]
fn a_chain_read_in_place_is_prepared_as_from_json() {
    let p = Policy::from_yaml_str(BOUND).unwrap();
    let input = json!({});
    for (actor, path) in [
        (
            json!({"tenant": "acme", "id": "bot", "chain": [{"kind": "user", "id": "alice"}]}),
            None,
        ),
        (json!({"tenant": "acme", "id": "bot"}), None),
        (
            json!({"tenant": "acme", "id": "bot", "chain": [{"kind": "user", "id": 3}]}),
            Some("actor.chain[0].id"),
        ),
    ] {
        let from_json = p.decide(&request(actor.clone()));
        let in_place = match p.prepare_before("deploy", Some(&input), Some(&actor), None, None, None) {
            Ok(prepared) => prepared.decide(),
            Err(d) => *d,
        };
        assert_eq!(in_place.to_json(), from_json.to_json(), "{actor}");
        assert_eq!(in_place.violation().map(|v| v.path.as_str()), path, "{actor}");
    }
}

#[test]
fn actra_policies_keep_their_actor_as_declared() {
    // An Actra actor field called `chain` keeps its own type, and no
    // `chain` is added to an Actra actor.
    let schema = "version: 1\nactions:\n  refund:\n    fields:\n      amount: number\nactor:\n  fields:\n    chain: string\nsnapshot:\n  fields:\n    env: string\n";
    let policy = "version: 1\nrules:\n  - id: r\n    scope: {action: refund}\n    when: {subject: {domain: actor, field: chain}, operator: equals, value: {literal: x}}\n    effect: block\n";
    let p = Policy::from_actra_strs(schema, policy, None).unwrap();
    assert!(p.bound_actor_fields().is_empty());
    let d = p.decide_actra(&json!({"action": {"type": "refund", "amount": 1}, "actor": {"chain": "x"}}));
    assert_eq!(d.effect(), Effect::Block);
    assert_eq!(d.rules(), vec!["r"]);
    let d = p.decide_actra(
        &json!({"action": {"type": "refund", "amount": 1}, "actor": {"chain": [{"kind": "user", "id": "a"}]}}),
    );
    assert!(d.violation().is_some(), "{:?}", d.reasons());
}

#[test]
fn converting_an_actra_actor_field_called_chain_is_refused() {
    let schema = "version: 1\nactions:\n  refund:\n    fields:\n      amount: number\nactor:\n  fields:\n    chain: string\nsnapshot:\n  fields:\n    env: string\n";
    let policy = "version: 1\nrules: []\n";
    let e = rein_engine::actra::convert_strs(schema, policy).expect_err("should not convert");
    let text = format!("{e}");
    assert!(text.contains("actor field `chain` has no native spelling"), "{text}");
}

/// Small JSON values biased towards chains: links with `kind`/`id`, other
/// keys, wrong types.
fn arb_chain() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        "[a-z:]{0,4}".prop_map(Value::from),
    ];
    let key = prop_oneof![Just("kind".to_string()), Just("id".to_string()), "[a-z]{1,3}"];
    let link =
        proptest::collection::btree_map(key, scalar.clone(), 0..4).prop_map(|m| Value::Object(m.into_iter().collect()));
    let good = ("[a-z]{1,4}", "[a-z]{1,4}").prop_map(|(k, i)| json!({"kind": k, "id": i}));
    let item = prop_oneof![3 => good, 2 => link, 1 => scalar.clone()];
    prop_oneof![
        1 => scalar,
        4 => proptest::collection::vec(item, 0..4).prop_map(Value::Array),
    ]
}

/// Whether a value fits the reserved type (or stands for the empty list).
fn fits_chain(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.iter().all(|l| {
            l.as_object().is_some_and(|o| {
                o.len() == 2 && o.get("kind").is_some_and(Value::is_string) && o.get("id").is_some_and(Value::is_string)
            })
        }),
        _ => false,
    }
}

proptest::proptest! {
    /// Whatever a request holds as `actor.chain`, under every actor
    /// contract: accepted exactly when it fits the reserved type (a
    /// refusal names a path under `actor.chain`), and an accepted chain
    /// is what the rules read.
    #[test]
    fn any_chain_is_accepted_exactly_when_it_fits(chain in arb_chain()) {
        for (name, p) in policies() {
            let actor = if name == "empty actor contract" {
                json!({"chain": chain})
            } else {
                json!({"id": "bot", "chain": chain})
            };
            let d = p.decide(&request(actor));
            match d.violation() {
                Some(v) => {
                    proptest::prop_assert!(!fits_chain(&chain), "{name}: {chain} refused: {v}");
                    proptest::prop_assert!(v.path.starts_with("actor.chain"), "{name}: {v}");
                }
                None => {
                    proptest::prop_assert!(fits_chain(&chain), "{name}: {chain} accepted");
                    let alice = chain.as_array().is_some_and(|l| l.iter().any(|l| l["kind"] == "user" && l["id"] == "alice"));
                    let links = chain.as_array().map_or(0, Vec::len);
                    let last_sub = chain.as_array().and_then(|l| l.last()).is_some_and(|l| l["kind"] == "subagent");
                    let want = if links > 3 {
                        Effect::Block
                    } else if last_sub {
                        Effect::RequireApproval
                    } else if alice {
                        Effect::Allow
                    } else {
                        Effect::Block
                    };
                    proptest::prop_assert_eq!(d.effect(), want, "{}: {}", name, chain);
                }
            }
        }
    }
}
