//! Decision latency, Rein vs Cedar, on the same generated workload.
//!
//! For each size (10, 100, 1,000, 10,000 rules; ten rules per action) one
//! workload is generated, loaded into both engines, and every request of the
//! pool is decided by every variant below and checked against the
//! workload's own evaluator before anything is timed. Each timed iteration
//! decides the next request of the pool (cycling), so a time is the mean
//! over the request mix: ~10% unknown actions, ~10% blocked by a rule.
//!
//! What the timed region holds, per variant:
//! * `rein_prepared`: `Prepared::decide` on a request prepared beforehand
//!   (contract check and layout done outside); for an unknown action,
//!   `prepare` already returned the block decision, so only reading its
//!   effect is timed. Includes building and dropping the `Decision`.
//! * `rein_request`: `Policy::decide(&Request)`: action lookup, contract
//!   check of input/actor/snapshot (JSON values → typed values), rules.
//! * `rein_json`: `Request::from_json_str` on the request text, then
//!   `Policy::decide`.
//! * `cedar_one_set`: `Authorizer::is_authorized` with one `PolicySet`
//!   holding every rule, on a `Request` (context included) and `Entities`
//!   built beforehand. (Cedar clones the request inside `is_authorized`.)
//! * `cedar_sharded`: a `HashMap` lookup of the action's own `PolicySet`
//!   (its rules plus the base permit), then `is_authorized` as above; an
//!   action with no set is denied without calling Cedar.
//! * `cedar_sharded_json`: Rein's `rein_json` counterpart: parse the same
//!   request text with `serde_json`, shard lookup, build the action uid,
//!   `Context::from_json_value` with the schema (type-checks the context,
//!   like Rein's contract check) and `Request::new` with the schema, then
//!   `is_authorized`.

// A benchmark's setup either works or must abort loudly: unwrap/expect/panic
// are the right tools here (the workspace warns on them for library code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request as CedarRequest, Schema};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rein_bench::{Verdict, Workload, CEDAR_PRINCIPAL, CEDAR_RESOURCE};
use rein_engine::{Effect, Policy, Request};
use std::collections::HashMap;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Requests per pool; every variant cycles through the same pool.
const POOL: usize = 1_000;
const SEED: u64 = 0x5EED_2026;

fn rein_verdict(e: Effect) -> Verdict {
    match e {
        Effect::Allow => Verdict::Allow,
        Effect::Block => Verdict::Block,
        Effect::RequireApproval => panic!("the workload has no require_approval rule"),
    }
}

fn cedar_verdict(d: Decision) -> Verdict {
    match d {
        Decision::Allow => Verdict::Allow,
        Decision::Deny => Verdict::Block,
    }
}

/// Everything Cedar needs, built once per size.
struct Cedar {
    schema: Schema,
    entities: Entities,
    one_set: PolicySet,
    shards: HashMap<String, PolicySet>,
    principal: EntityUid,
    resource: EntityUid,
    /// Per pool request: its action name and the ready-made Cedar request.
    requests: Vec<(String, CedarRequest)>,
}

impl Cedar {
    fn new(w: &Workload) -> Cedar {
        let (schema, _warnings) = Schema::from_cedarschema_str(&w.cedar_schema()).expect("generated schema parses");
        // Only the action hierarchy (`act_* in known`) lives in the store.
        let entities = schema.action_entities().expect("action entities");
        let one_set = PolicySet::from_str(&w.cedar_policies()).expect("generated policies parse");
        let shards = (0..w.actions.len())
            .map(|a| {
                (
                    w.actions[a].clone(),
                    PolicySet::from_str(&w.cedar_policies_for(a)).expect("shard parses"),
                )
            })
            .collect();
        let principal = EntityUid::from_str(CEDAR_PRINCIPAL).unwrap();
        let resource = EntityUid::from_str(CEDAR_RESOURCE).unwrap();
        let requests = w
            .requests
            .iter()
            .map(|r| {
                let action = EntityUid::from_str(&r.cedar_action()).unwrap();
                // Known actions: check the context against the schema while
                // building (outside the timed region). Unknown actions have
                // no schema entry, so they are built unchecked.
                let req = if r.known.is_some() {
                    let ctx = Context::from_json_value(r.cedar_context(), Some((&schema, &action))).unwrap();
                    CedarRequest::new(principal.clone(), action, resource.clone(), ctx, Some(&schema)).unwrap()
                } else {
                    let ctx = Context::from_json_value(r.cedar_context(), None).unwrap();
                    CedarRequest::new(principal.clone(), action, resource.clone(), ctx, None).unwrap()
                };
                (r.action.clone(), req)
            })
            .collect();
        Cedar {
            schema,
            entities,
            one_set,
            shards,
            principal,
            resource,
            requests,
        }
    }

    fn sharded(&self, auth: &Authorizer, i: usize) -> Decision {
        let (action, req) = &self.requests[i];
        match self.shards.get(action) {
            Some(set) => auth.is_authorized(req, set, &self.entities).decision(),
            None => Decision::Deny,
        }
    }

    /// From request JSON text (the same text Rein reads) to a decision.
    fn sharded_json(&self, auth: &Authorizer, text: &str) -> Decision {
        let serde_json::Value::Object(mut m) = serde_json::from_str(text).unwrap() else {
            panic!("request is not an object")
        };
        let Some(serde_json::Value::String(action)) = m.remove("action") else {
            panic!("request has no action")
        };
        let Some(set) = self.shards.get(&action) else {
            return Decision::Deny;
        };
        let uid = EntityUid::from_type_name_and_id("Action".parse().unwrap(), cedar_policy::EntityId::new(&action));
        m.remove("action");
        let ctx = Context::from_json_value(serde_json::Value::Object(m), Some((&self.schema, &uid))).unwrap();
        let req = CedarRequest::new(
            self.principal.clone(),
            uid,
            self.resource.clone(),
            ctx,
            Some(&self.schema),
        )
        .unwrap();
        auth.is_authorized(&req, set, &self.entities).decision()
    }
}

fn bench_decide(c: &mut Criterion) {
    let auth = Authorizer::new();
    let mut g = c.benchmark_group("decide");
    for n in SIZES {
        let w = Workload::generate(n, POOL, SEED);
        let policy = Policy::from_yaml_str(&w.rein_yaml())
            .unwrap_or_else(|e| panic!("generated policy ({n} rules) fails to load:\n{e:?}"));
        assert_eq!(policy.rule_count(), n);
        assert!(policy.warnings().is_empty(), "warnings: {:?}", policy.warnings());
        let texts: Vec<String> = w.requests.iter().map(|r| r.rein_json().to_string()).collect();
        let requests: Vec<Request> = texts.iter().map(|t| Request::from_json_str(t).unwrap()).collect();
        let prepared: Vec<_> = requests.iter().map(|r| policy.prepare(r)).collect();
        let cedar = Cedar::new(&w);

        // Equivalence, before any timing: every variant, every request.
        let (mut unknown, mut blocked_by_rule) = (0, 0);
        for (i, r) in w.requests.iter().enumerate() {
            let want = w.expected(r);
            let rein_prep = match &prepared[i] {
                Ok(p) => p.decide().effect(),
                Err(d) => d.effect(),
            };
            let rein_req = policy.decide(&requests[i]);
            assert!(
                rein_req.errors().is_empty(),
                "rein evaluation errors: {:?}",
                rein_req.errors()
            );
            // Known actions pass the contract check; unknown ones are blocked by it.
            assert_eq!(
                rein_req.violation().is_none(),
                r.known.is_some(),
                "{:?}",
                rein_req.violation()
            );
            let rein_json = policy.decide(&Request::from_json_str(&texts[i]).unwrap()).effect();
            let resp = auth.is_authorized(&cedar.requests[i].1, &cedar.one_set, &cedar.entities);
            assert_eq!(
                resp.diagnostics().errors().count(),
                0,
                "cedar evaluation errors on request {i}"
            );
            let got = [
                ("rein prepared", rein_verdict(rein_prep)),
                ("rein request", rein_verdict(rein_req.effect())),
                ("rein json", rein_verdict(rein_json)),
                ("cedar one set", cedar_verdict(resp.decision())),
                ("cedar sharded", cedar_verdict(cedar.sharded(&auth, i))),
                (
                    "cedar sharded json",
                    cedar_verdict(cedar.sharded_json(&auth, &texts[i])),
                ),
            ];
            for (who, v) in got {
                assert_eq!(
                    v, want,
                    "{n} rules, request {i} ({}): {who} disagrees\n{}",
                    r.action, texts[i]
                );
            }
            match (r.known, want) {
                (None, _) => unknown += 1,
                (Some(_), Verdict::Block) => blocked_by_rule += 1,
                _ => {}
            }
        }
        eprintln!(
            "decide/{n}: {} actions, {n} rules; {POOL} requests: {unknown} unknown action, {blocked_by_rule} blocked by a rule; \
             all 6 variants agree with the reference on every request",
            w.actions.len()
        );

        if n >= 10_000 {
            // Cedar's one-set variant evaluates every policy: keep it short.
            g.sample_size(20);
        }
        g.bench_function(BenchmarkId::new("rein_prepared", n), |b| {
            let mut i = 0;
            b.iter(|| {
                let e = match &prepared[i % POOL] {
                    Ok(p) => black_box(p.decide()).effect(),
                    Err(d) => d.effect(),
                };
                i += 1;
                e
            })
        });
        g.bench_function(BenchmarkId::new("rein_request", n), |b| {
            let mut i = 0;
            b.iter(|| {
                let d = policy.decide(&requests[i % POOL]);
                i += 1;
                d
            })
        });
        g.bench_function(BenchmarkId::new("rein_json", n), |b| {
            let mut i = 0;
            b.iter(|| {
                let r = Request::from_json_str(&texts[i % POOL]).unwrap();
                i += 1;
                policy.decide(&r)
            })
        });
        g.bench_function(BenchmarkId::new("cedar_one_set", n), |b| {
            let mut i = 0;
            b.iter(|| {
                let resp = auth.is_authorized(&cedar.requests[i % POOL].1, &cedar.one_set, &cedar.entities);
                i += 1;
                resp
            })
        });
        g.bench_function(BenchmarkId::new("cedar_sharded", n), |b| {
            let mut i = 0;
            b.iter(|| {
                let d = cedar.sharded(&auth, i % POOL);
                i += 1;
                d
            })
        });
        g.bench_function(BenchmarkId::new("cedar_sharded_json", n), |b| {
            let mut i = 0;
            b.iter(|| {
                let d = cedar.sharded_json(&auth, &texts[i % POOL]);
                i += 1;
                d
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_decide
}
criterion_main!(benches);
