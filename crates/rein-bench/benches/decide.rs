//! Decision latency: Rein, a hand-written floor and Cedar on the same
//! generated workload, one thread and two.
//!
//! For each size (10, 100, 1,000, 10,000 rules; ten rules per action) one
//! workload is generated, loaded into both engines and the floor, and every
//! request of the pool is decided by every variant below and checked
//! against the workload's own evaluator (`Workload::expected`) before
//! anything is timed; the floor's matched rules are also checked against
//! Rein's, so both do the same work. Each timed iteration decides the next
//! request of the pool (cycling), so a time is the mean over the request
//! mix: ~10% unknown actions, ~9% blocked by a rule.
//!
//! `REIN_DECIDE_SIZES=1000,10000` runs only those sizes (the whole run
//! takes about 4.5 minutes, a minute of it building and checking).
//!
//! Group `decide`, what the timed region holds, per variant:
//! * `floor_typed`: `Floor::decide_typed` (crates/rein-bench/src/floor.rs):
//!   a hash lookup of the action's rules, then every rule of the action over
//!   a typed request (field values by index), deny-overrides, the matched
//!   rules recorded. The least an engine could do.
//! * `floor_json`: `serde_json::from_str::<Value>` of the request text, the
//!   action lookup, each declared field read from the `Value` into its slot,
//!   then the same evaluator: the floor for deciding from JSON text.
//! * `rein_prepared`: `Prepared::decide` on a request prepared beforehand
//!   (contract check and layout done outside); for an unknown action,
//!   `prepare` already returned the block decision, so only reading its
//!   effect is timed. Includes building and dropping the `Decision`.
//! * `rein_request`: `Policy::decide(&Request)`: action lookup, contract
//!   check of input/actor/snapshot (JSON values → typed values), rules.
//! * `rein_json`: `Policy::decide_json_str` on the request text.
//! * `rein_unknown`: `Policy::decide(&Request)` on the pool's requests that
//!   name an unknown action only: the refusal by itself.
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
//!
//! Group `decide_threads` (at 1,000 and 10,000 rules): the floor's and
//! Rein's paths above, each as `<path>_1t` (one thread deciding N requests)
//! and `<path>_2t` (two threads started together on one shared `Policy` or
//! `Floor`, each deciding N requests; the time from the first thread's start
//! to the last one's end, divided by two). Both report time per decision of
//! the combined throughput, so `_1t / _2t` is the throughput ratio (2.0 =
//! perfect scaling); the bench prints it per path and size, and
//! `bench/decide_ratios.py` computes it from criterion's estimates. On a
//! machine shared with other work, the two threads compete with it: the
//! ratio is only meaningful on an otherwise idle machine.
//!
//! `cedar-policy` turns on `serde_json`'s `preserve_order`, and Cargo
//! unifies features, so here every `serde_json::Value` object is an
//! `IndexMap` (the product's are `BTreeMap`s). The JSON floor parses into
//! a tree of the product's shape instead (`floor/tree.rs`), and Rein's
//! `decide_json_str` reads its text without a `Value`, so `rein_json /
//! floor_json` compares what the product would run; `rein_request`'s
//! requests are parsed before timing.

// A benchmark's setup either works or must abort loudly: unwrap/expect/panic
// are the right tools here (the workspace warns on them for library code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request as CedarRequest, Schema};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use rein_bench::floor::{Floor, TypedRequest};
use rein_bench::{Verdict, Workload, CEDAR_PRINCIPAL, CEDAR_RESOURCE};
use rein_engine::{Effect, Policy, Request};
use std::collections::HashMap;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Sizes at which one thread is compared with two (the targets' sizes; the
/// others would only lengthen the run).
const THREAD_SIZES: [usize; 2] = [1_000, 10_000];
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

/// One size's workload rendered for every variant. (Prepared requests are
/// made where they are used: they may borrow the policy.)
struct Setup {
    n: usize,
    w: Workload,
    policy: Policy,
    /// The pool as Rein's request JSON text.
    texts: Vec<String>,
    requests: Vec<Request>,
    /// The pool's requests that name an unknown action.
    unknown: Vec<Request>,
    typed: Vec<TypedRequest>,
    floor: Floor,
    cedar: Cedar,
}

impl Setup {
    fn new(n: usize) -> Setup {
        let w = Workload::generate(n, POOL, SEED);
        let policy = Policy::from_yaml_str(&w.rein_yaml())
            .unwrap_or_else(|e| panic!("generated policy ({n} rules) fails to load:\n{e:?}"));
        assert_eq!(policy.rule_count(), n);
        assert!(policy.warnings().is_empty(), "warnings: {:?}", policy.warnings());
        let texts: Vec<String> = w.requests.iter().map(|r| r.rein_json().to_string()).collect();
        let requests: Vec<Request> = texts.iter().map(|t| Request::from_json_str(t).unwrap()).collect();
        let unknown: Vec<Request> = w
            .requests
            .iter()
            .zip(&requests)
            .filter(|(g, _)| g.known.is_none())
            .map(|(_, r)| r.clone())
            .collect();
        assert!(!unknown.is_empty(), "the pool has no unknown action");
        let typed = w.requests.iter().map(TypedRequest::from).collect();
        let floor = Floor::new(&w);
        let cedar = Cedar::new(&w);
        let s = Setup {
            n,
            w,
            policy,
            texts,
            requests,
            unknown,
            typed,
            floor,
            cedar,
        };
        s.check();
        s
    }

    /// Equivalence, before any timing: every variant, every request.
    fn check(&self) {
        let (n, w, policy, texts, cedar) = (self.n, &self.w, &self.policy, &self.texts, &self.cedar);
        let auth = Authorizer::new();
        let prepared: Vec<_> = self.requests.iter().map(|r| policy.prepare(r)).collect();
        let (mut unknown, mut blocked_by_rule) = (0, 0);
        for (i, r) in w.requests.iter().enumerate() {
            let want = w.expected(r);
            let rein_prep = match &prepared[i] {
                Ok(p) => p.decide().effect(),
                Err(d) => d.effect(),
            };
            let rein_req = policy.decide(&self.requests[i]);
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
            let rein_json = policy.decide_json_str(&texts[i]).unwrap();
            assert_eq!(rein_json.rules(), rein_req.rules(), "request {i}: json vs request");
            let floor_typed = self.floor.decide_typed(&self.typed[i]);
            let floor_json = self.floor.decide_json(&texts[i]).unwrap();
            assert_eq!(floor_json, floor_typed, "request {i}: floor from JSON vs typed");
            // The floor evaluates what Rein evaluates: the same rules match.
            let floor_rules: Vec<&str> = self
                .floor
                .matched_rules(&r.action, &floor_typed)
                .into_iter()
                .map(|k| w.rules[k].id.as_str())
                .collect();
            assert_eq!(floor_rules, rein_req.rules(), "{n} rules, request {i}: matched rules");
            let resp = auth.is_authorized(&cedar.requests[i].1, &cedar.one_set, &cedar.entities);
            assert_eq!(
                resp.diagnostics().errors().count(),
                0,
                "cedar evaluation errors on request {i}"
            );
            let got = [
                ("floor typed", floor_typed.verdict),
                ("floor json", floor_json.verdict),
                ("rein prepared", rein_verdict(rein_prep)),
                ("rein request", rein_verdict(rein_req.effect())),
                ("rein json", rein_verdict(rein_json.effect())),
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
        for r in &self.unknown {
            let d = policy.decide(r);
            assert_eq!(d.effect(), Effect::Block);
            assert!(
                d.violation().is_some(),
                "an unknown action is refused by the contract check"
            );
        }
        eprintln!(
            "decide/{n}: {} actions, {n} rules; {POOL} requests: {unknown} unknown action, {blocked_by_rule} blocked by a rule; \
             all 8 variants agree with the reference on every request, the floor's matched rules with Rein's",
            w.actions.len()
        );
    }
}

fn bench_one_thread(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, s: &Setup, auth: &Authorizer) {
    let (n, policy, texts, cedar) = (s.n, &s.policy, &s.texts, &s.cedar);
    let prepared: Vec<_> = s.requests.iter().map(|r| policy.prepare(r)).collect();
    // Cedar's one-set variant evaluates every policy: keep it short.
    g.sample_size(if n >= 10_000 { 20 } else { 100 });
    g.bench_function(BenchmarkId::new("floor_typed", n), |b| {
        let mut i = 0;
        b.iter(|| {
            let d = s.floor.decide_typed(&s.typed[i % POOL]);
            i += 1;
            d
        })
    });
    g.bench_function(BenchmarkId::new("floor_json", n), |b| {
        let mut i = 0;
        b.iter(|| {
            let d = s.floor.decide_json(&texts[i % POOL]);
            i += 1;
            d
        })
    });
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
            let d = policy.decide(&s.requests[i % POOL]);
            i += 1;
            d
        })
    });
    g.bench_function(BenchmarkId::new("rein_json", n), |b| {
        let mut i = 0;
        b.iter(|| {
            let d = policy.decide_json_str(&texts[i % POOL]);
            i += 1;
            d
        })
    });
    g.bench_function(BenchmarkId::new("rein_unknown", n), |b| {
        let mut i = 0;
        b.iter(|| {
            let d = policy.decide(&s.unknown[i % s.unknown.len()]);
            i += 1;
            d
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
            let d = cedar.sharded(auth, i % POOL);
            i += 1;
            d
        })
    });
    g.bench_function(BenchmarkId::new("cedar_sharded_json", n), |b| {
        let mut i = 0;
        b.iter(|| {
            let d = cedar.sharded_json(auth, &texts[i % POOL]);
            i += 1;
            d
        })
    });
}

/// Runs `decide(i)` for `iters` pool indices on each of `threads` threads,
/// released together by a barrier (thread `t` starts at `t * POOL /
/// threads`, so the threads decide different requests at any moment).
/// Returns the wall time from the first thread's start to the last one's
/// end, divided by `threads`: the time per decision of the combined
/// throughput. Spawning is outside the timed span.
fn time_on_threads<T>(threads: usize, iters: u64, decide: &(impl Fn(usize) -> T + Sync)) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let first = t * POOL / threads;
                    barrier.wait();
                    let start = Instant::now();
                    for k in 0..iters as usize {
                        black_box(decide((first + k) % POOL));
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    (end - start) / threads as u32
}

/// Criterion's samples of one thread-count variant: (iterations, time).
type Samples = Vec<(u64, Duration)>;

/// The median time per decision over the samples that ran at least 1 ms
/// (criterion's first warm-up calls run a handful of iterations, where a
/// thread's start-up skew would dominate).
fn median_ns(samples: &Samples) -> f64 {
    let mut per: Vec<f64> = samples
        .iter()
        .filter(|(it, d)| *it > 0 && *d >= Duration::from_millis(1))
        .map(|(it, d)| d.as_nanos() as f64 / *it as f64)
        .collect();
    if per.is_empty() {
        return f64::NAN;
    }
    per.sort_by(f64::total_cmp);
    per[per.len() / 2]
}

/// `<name>_1t` and `<name>_2t` for one path, then the ratio on stderr.
fn bench_path<T>(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    decide: impl Fn(usize) -> T + Sync,
) {
    let mut times: [Samples; 2] = Default::default();
    for (threads, samples) in [1, 2].into_iter().zip(&mut times) {
        g.bench_function(BenchmarkId::new(format!("{name}_{threads}t"), n), |b| {
            b.iter_custom(|iters| {
                let d = time_on_threads(threads, iters, &decide);
                samples.push((iters, d));
                d
            })
        });
    }
    let (one, two) = (median_ns(&times[0]), median_ns(&times[1]));
    if one.is_nan() || two.is_nan() {
        return; // no sample of 1 ms or more (criterion's --test mode)
    }
    eprintln!(
        "decide_threads/{name}/{n}: 1 thread {one:.1} ns, 2 threads {two:.1} ns per decision: \
         {:.2}x the throughput (target >= 1.9x)",
        one / two
    );
}

fn bench_threads(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, s: &Setup) {
    let (n, policy, texts) = (s.n, &s.policy, &s.texts);
    let prepared: Vec<_> = s.requests.iter().map(|r| policy.prepare(r)).collect();
    bench_path(g, "floor_typed", n, |i| s.floor.decide_typed(&s.typed[i]));
    bench_path(g, "floor_json", n, |i| s.floor.decide_json(&texts[i]));
    bench_path(g, "rein_prepared", n, |i| match &prepared[i] {
        Ok(p) => black_box(p.decide()).effect(),
        Err(d) => d.effect(),
    });
    bench_path(g, "rein_request", n, |i| policy.decide(&s.requests[i]));
    bench_path(g, "rein_json", n, |i| policy.decide_json_str(&texts[i]));
    bench_path(g, "rein_unknown", n, |i| policy.decide(&s.unknown[i % s.unknown.len()]));
}

/// The sizes to run: `REIN_DECIDE_SIZES` (comma-separated rule counts, e.g.
/// `1000,10000`, for a shorter run while working on one size), else
/// [`SIZES`].
fn sizes() -> Vec<usize> {
    match std::env::var("REIN_DECIDE_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("REIN_DECIDE_SIZES: `{n}` is not a rule count"))
            })
            .collect(),
        Err(_) => SIZES.to_vec(),
    }
}

fn bench_decide(c: &mut Criterion) {
    let started = Instant::now();
    let setups: Vec<Setup> = sizes().into_iter().map(Setup::new).collect();
    eprintln!("setup and checks: {:.1} s", started.elapsed().as_secs_f64());
    let auth = Authorizer::new();
    let mut g = c.benchmark_group("decide");
    for s in &setups {
        bench_one_thread(&mut g, s, &auth);
    }
    g.finish();
    let mut g = c.benchmark_group("decide_threads");
    g.sample_size(30);
    for s in setups.iter().filter(|s| THREAD_SIZES.contains(&s.n)) {
        bench_threads(&mut g, s);
    }
    g.finish();
    eprintln!("decide bench: {:.0} s in all", started.elapsed().as_secs_f64());
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_decide
}
criterion_main!(benches);
