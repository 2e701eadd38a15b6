//! Chain verification speed on 100,000 records.
//!
//! * `verify/sqlite_100k`: `Store::verify_audit` on a store file holding
//!   100,000 records: one read transaction streaming every row (borrowed
//!   from SQLite) through the chain verifier, i.e. SHA-256 of each body.
//! * `verify/in_memory_100k`: `chain::verify` alone on the same rows held in
//!   memory: the hashing cost without SQLite.
//!
//! Throughput is reported in records per second.
//!
//! `cargo bench -p rein-store --bench verify`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rein_store::chain;
use rein_store::{AuditQuery, SqliteStore, Store, Verification};

const RECORDS: u64 = 100_000;

fn bench_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = common::bench_dir();
    let store = Arc::new(SqliteStore::open(dir.path().join("verify.db")).unwrap());
    // Filled by 64 concurrent appenders (group commit), the normal way.
    rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in (t..RECORDS).step_by(64) {
                        store.append(common::entry(i)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert_eq!(
        rt.block_on(store.verify_audit()).unwrap(),
        Verification::Intact { records: RECORDS }
    );

    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let page = rt
            .block_on(store.query_audit(&AuditQuery {
                after_seq: Some(after),
                limit: Some(10_000),
                ..Default::default()
            }))
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        rows.extend(
            page.into_iter()
                .map(|r| (r.seq, chain::canonical(r.seq, &r.entry), r.prev_hash, r.hash)),
        );
    }
    let head = (RECORDS, rows.last().unwrap().3.clone());
    let body_bytes: usize = rows.iter().map(|r| r.1.len()).sum();
    eprintln!("mean body: {} bytes", body_bytes / rows.len());

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(RECORDS));
    g.sample_size(20);
    g.bench_function("sqlite_100k", |b| {
        b.iter(|| {
            let v = rt.block_on(store.verify_audit()).unwrap();
            assert_eq!(v, Verification::Intact { records: RECORDS });
        })
    });
    g.bench_function("in_memory_100k", |b| {
        b.iter(|| {
            let v = chain::verify(
                rows.iter().map(|(s, b, p, h)| (*s, b.as_str(), p.as_str(), h.as_str())),
                Some((head.0, head.1.as_str())),
            );
            black_box(v)
        })
    });
    g.finish();
    rt.block_on(store.close()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = bench_verify
}
criterion_main!(benches);
