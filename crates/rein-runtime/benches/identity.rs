//! The identity step every decision takes before its rules
//! (`rein_runtime::identity::bind`): bound fields and the chain set on the
//! actor, the body checked against them, the action against the scope of
//! every delegated link, and the policy's required bound fields. Issue 14
//! asks that it add at most 1 µs per decision in process.
//!
//! Each timed iteration binds one fresh copy of the request (the copy is
//! made outside the timed region, and the result dropped outside it), so
//! what is timed is the step alone:
//! * `none`: no credential (hooks, the MCP gateway, the library), the
//!   policy requiring nothing: what every decision without a credential
//!   pays;
//! * `typical`: a delegated sub-agent's credential: three bound fields
//!   (`id`, `role`, `tenant`), a chain of three links, scopes on two of
//!   them; the body names one field of its own (`ticket`);
//! * `typical_bare`: the same credential, the body naming no actor field
//!   (the bound actor is copied whole);
//! * `typical_required`: the same, under a policy that requires `id` and
//!   `tenant` bound (`contracts.actor.<f>: {bound: true}`);
//! * `none_required`: no credential under that policy (blocked: the
//!   reason is built);
//! * `decide`: `Policy::decide` of the bound request, for scale.
//!
//! With mimalloc, the allocator of the `rein` binary, where the runtime
//! runs (`rein serve`, `rein hook`, `rein mcp gateway`): most of the step
//! is allocating the bound values set on the actor and the record's
//! `actor_source`. The credential is built once, as the server's are, and
//! bound many times: what it prepares on its first use
//! (`Credential::prepared`) is reused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rein_engine::{Policy, Request};
use rein_runtime::identity::bind;
use rein_runtime::{ActionScope, ChainLink, Credential};
use serde_json::json;
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The policy, with `BOUND` standing for what its actor fields say of
/// binding (nothing, or `bound: true`).
const POLICY: &str = r#"
default: allow
contracts:
  actor:
    id: {type: string, optional: true BOUND}
    role: {type: string, optional: true}
    tenant: {type: string, optional: true BOUND}
    ticket: {type: string, optional: true}
  actions:
    file.read:
      input: {path: string}
rules:
  - id: no_etc
    action: file.read
    when: input.path.startsWith("/etc/")
    effect: block
  - id: subagents_read_home_only
    action: file.read
    when: size(actor.chain) > 2 && !input.path.startsWith("/home/")
    effect: block
"#;

fn credential() -> Credential {
    Credential {
        fields: json!({"id": "researcher", "role": "agent", "tenant": "acme"})
            .as_object()
            .unwrap()
            .clone(),
        chain: Some(
            ["user:alice", "agent:support-bot", "subagent:researcher"]
                .iter()
                .map(|l| ChainLink::parse(l).unwrap())
                .collect(),
        ),
        scopes: vec![
            (1, ActionScope::parse("file.*,web.*").unwrap()),
            (2, ActionScope::parse("file.read,web.get").unwrap()),
        ],
        ..Credential::default()
    }
}

fn request() -> Request {
    Request::new("file.read")
        .input(json!({"path": "/home/alice/notes.md"}))
        .actor(json!({"ticket": "T-1234"}))
}

fn bare_request() -> Request {
    Request::new("file.read").input(json!({"path": "/home/alice/notes.md"}))
}

fn bench(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(&POLICY.replace(" BOUND", "")).unwrap();
    let required = Policy::from_yaml_str(&POLICY.replace(" BOUND", ", bound: true")).unwrap();
    assert_eq!(required.bound_actor_fields(), ["id", "tenant"]);
    let credential = credential();
    let mut g = c.benchmark_group("identity");
    g.measurement_time(Duration::from_secs(5));

    // Checked once before timing: what is timed does what it should.
    let mut r = request();
    assert_eq!(bind(&policy, &mut r, Some(&credential)).refusal, None);
    assert_eq!(r.actor["chain"][2]["id"], "researcher");
    assert_eq!(policy.decide(&r).effect(), rein_engine::Effect::Allow);
    let mut r = request();
    assert_eq!(bind(&required, &mut r, Some(&credential)).refusal, None);
    assert!(bind(&required, &mut request(), None).refusal.is_some());

    let mut r = bare_request();
    assert_eq!(bind(&policy, &mut r, Some(&credential)).refusal, None);
    assert_eq!(r.actor["tenant"], "acme");

    for (name, policy, credential, request) in [
        ("none", &policy, None, request as fn() -> Request),
        ("typical", &policy, Some(&credential), request),
        ("typical_bare", &policy, Some(&credential), bare_request),
        ("typical_required", &required, Some(&credential), request),
        ("none_required", &required, None, request),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                request,
                |mut r| {
                    let binding = bind(policy, &mut r, credential);
                    (r, black_box(binding))
                },
                BatchSize::SmallInput,
            )
        });
    }
    let mut bound = request();
    bind(&policy, &mut bound, Some(&credential));
    g.bench_function("decide", |b| b.iter(|| policy.decide(black_box(&bound))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
