//! Fills a store with a large audit log for `bench/audit_page.sh`: varied
//! records (actors, actions, effects, rules, sessions, times) appended
//! through the store's own API, many at once, so the writer commits them
//! in large batches (the records, hashes and indexes are those a server
//! would have written).
//!
//! ```text
//! audit_fill --store FILE|postgres://... [--records N] [--policy-version HASH]
//! ```
//!
//! Appends to what the store holds until it has `N` records (default one
//! million). `--policy-version` is written into every record, so that a
//! server loading that policy can rebuild the recorded requests (the
//! record view's explanation).

// A benchmark tool either starts or aborts loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use rein_store::{AuditEntry, PostgresOptions, PostgresStore, SqliteStore, Store, StoreLocation};
use serde_json::json;

/// Appends in flight at once: the writer takes what is queued as one
/// transaction.
const IN_FLIGHT: usize = 4_096;

/// A deterministic generator (xorshift), so every run writes the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Record `i` (from 1): 2,000 actors (a few busy, most rare), 24 actions,
/// effects 90 % allow / 8 % block / 2 % require_approval, 0 to 3 of 60
/// rules, 100,000 sessions (one record in five has none), one record every
/// 30 ms from 2026-01-01.
fn entry(i: u64, policy_version: &str) -> AuditEntry {
    let mut r = Rng(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for _ in 0..3 {
        r.next();
    }
    let actor = if r.below(2) == 0 { r.below(20) } else { r.below(2_000) };
    let action = r.below(24);
    let effect = match r.below(100) {
        0..=89 => "allow",
        90..=97 => "block",
        _ => "require_approval",
    };
    let rules = (0..r.below(4)).map(|_| format!("rule-{}", r.below(60))).collect();
    let session = (r.below(5) != 0).then(|| format!("session-{}", r.below(100_000)));
    let millis = i * 30;
    let time = jiff::Timestamp::from_millisecond(1_767_225_600_000 + i64::try_from(millis).unwrap()).unwrap();
    AuditEntry {
        decision_id: format!("bench-{i:010}"),
        time: rein_store::chain::format_time(time),
        phase: if r.below(3) == 0 { "after" } else { "before" }.into(),
        action: format!("action_{action}"),
        input: json!({"amount": r.below(10_000), "currency": "EUR", "to": format!("customer-{}", r.below(50_000)),
                      "note": "a refund the customer asked for by mail", "lines": [{"sku": "a-1", "qty": 2}]}),
        actor: json!({"id": format!("agent-{actor}"), "roles": ["agent"], "tenant": "acme"}),
        snapshot: json!({"refunds_today": r.below(50)}),
        output: None,
        error: None,
        session,
        effect: effect.into(),
        rules,
        reasons: vec![format!("{effect} by the bench policy")],
        policy_version: policy_version.to_string(),
        latency_us: 20 + r.below(200),
        approval: None,
        client: Some("bench-agent".into()),
        policy_version_label: None,
        actor_source: None,
        shadow: None,
        activation: None,
        trace: None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut store_at = None;
    let mut records: u64 = 1_000_000;
    let mut policy_version = "bench".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--store" => store_at = args.next(),
            "--records" => records = args.next().context("--records N")?.parse()?,
            "--policy-version" => policy_version = args.next().context("--policy-version HASH")?,
            other => bail!("unknown argument `{other}`"),
        }
    }
    let store_at = store_at.context("--store FILE|URL")?;
    let store: Arc<dyn Store> = match StoreLocation::parse(&store_at) {
        StoreLocation::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreLocation::Postgres(url) => Arc::new(PostgresStore::open(&url, PostgresOptions::default()).await?),
    };
    let have = store.audit_len().await?;
    let start = Instant::now();
    let policy_version: Arc<str> = policy_version.into();
    let mut next = have + 1;
    while next <= records {
        let end = (next + IN_FLIGHT as u64).min(records + 1);
        let mut tasks = tokio::task::JoinSet::new();
        for i in next..end {
            let store = Arc::clone(&store);
            let pv = Arc::clone(&policy_version);
            tasks.spawn(async move { store.append(entry(i, &pv)).await.map(|_| ()) });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        next = end;
        if (next - 1) % 100_000 < IN_FLIGHT as u64 {
            eprintln!("{} records ({:.0?})", next - 1, start.elapsed());
        }
    }
    eprintln!(
        "the store holds {} records ({} appended in {:.1?})",
        store.audit_len().await?,
        records.saturating_sub(have),
        start.elapsed()
    );
    Ok(())
}
