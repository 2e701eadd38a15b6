//! `Tokens::verify`, the first thing every request costs: a static token
//! of the tokens file beside a JWT (RS256 and EdDSA) of a configured
//! issuer, repeated (the verified-token cache) and presented for the first
//! time (the signature checked).
//!
//! `cargo bench -p rein-server --bench auth`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rein_server::Tokens;
use serde_json::json;
use std::hint::black_box;
use std::path::{Path, PathBuf};

const STATIC: &str = "agent-token-0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

fn key(name: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(fixture(name)).unwrap();
    match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    }
}

fn jwk(name: &str, alg: Algorithm, kid: &str) -> serde_json::Value {
    let mut jwk = Jwk::from_encoding_key(&key(name, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn token(name: &str, alg: Algorithm, kid: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({
        "iss": "https://login.example.com/", "aud": "rein", "sub": "alice",
        "exp": now + 86_400, "iat": now, "tenant": "acme", "groups": ["staff"],
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, &claims, &key(name, alg)).unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let keys = [
        jwk("jwt-rsa-1.pem", Algorithm::RS256, "r1"),
        jwk("jwt-ed25519.pem", Algorithm::EdDSA, "e1"),
    ];
    std::fs::write(&jwks, json!({ "keys": keys }).to_string()).unwrap();
    let text = [
        "tokens:".to_string(),
        format!("  - {{name: bot, role: agent, token: {STATIC}}}"),
        "  - {name: ops, role: admin, token: admin-token-0123456789abcdef}".into(),
        "issuers:".into(),
        "  - name: corp".into(),
        "    issuer: https://login.example.com/".into(),
        "    audience: rein".into(),
        format!("    jwks_file: \"{}\"", jwks.display()),
        "    actor: {sub: id, tenant: tenant}".into(),
        "    roles_claim: groups".into(),
        "    roles: {rein-admins: admin}".into(),
    ]
    .join("\n");
    let tokens = Tokens::parse("tokens.yaml", &text).unwrap();
    let rs256 = token("jwt-rsa-1.pem", Algorithm::RS256, "r1");
    let eddsa = token("jwt-ed25519.pem", Algorithm::EdDSA, "e1");
    tokens.verify(&rs256).unwrap();
    tokens.verify(&eddsa).unwrap();

    let mut group = c.benchmark_group("verify");
    group.bench_function("static", |b| b.iter(|| tokens.verify(black_box(STATIC)).unwrap()));
    group.bench_function("jwt_rs256_cached", |b| {
        b.iter(|| tokens.verify(black_box(&rs256)).unwrap())
    });
    group.bench_function("jwt_eddsa_cached", |b| {
        b.iter(|| tokens.verify(black_box(&eddsa)).unwrap())
    });
    // A fresh `Tokens` each time: an empty cache, the signature checked.
    // Its setup (reading the file) is not timed, nor is dropping it.
    for (name, jwt) in [("jwt_rs256_first", &rs256), ("jwt_eddsa_first", &eddsa)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || Tokens::parse("tokens.yaml", &text).unwrap(),
                |fresh| {
                    let identity = fresh.verify(black_box(jwt)).unwrap();
                    (fresh, identity)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
