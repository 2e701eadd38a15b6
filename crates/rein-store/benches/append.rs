//! Amortised cost of a durable append under group commit.
//!
//! `append/concurrent/N`: N tokio tasks on a multi-thread runtime append
//! concurrently; one iteration is one append, and the time reported is
//! wall-clock time divided by the number of appends (so with N = 64 it is
//! the amortised cost per decision, not the latency of one append, which
//! is about one batch commit). Every append is durable (WAL,
//! `synchronous=FULL`) when its future resolves. The store grows across
//! iterations, as a real log does.
//!
//! `append_state/concurrent/N` is the same with the state writes of a
//! typical stateful decision (a limit use and a session call) in the
//! record's transaction (`Store::append_with_state`).
//!
//! `cargo bench -p rein-store --bench append`
//! (set `REIN_BENCH_DIR` to measure a given disk; default: the temp dir)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rein_store::{SqliteStore, Store};

fn bench_append(c: &mut Criterion) {
    bench_group(c, "append/concurrent", false);
    bench_group(c, "append_state/concurrent", true);
}

fn bench_group(c: &mut Criterion, name: &str, with_state: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for appenders in [1u64, 8, 64] {
        let dir = common::bench_dir();
        let store = Arc::new(SqliteStore::open(dir.path().join("append.db")).unwrap());
        g.bench_with_input(BenchmarkId::from_parameter(appenders), &appenders, |b, &appenders| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|t| {
                            let store = Arc::clone(&store);
                            // Spread `iters` appends over the tasks.
                            let n = iters / appenders + u64::from(t < iters % appenders);
                            tokio::spawn(async move {
                                for i in 0..n {
                                    let i = t * 1_000_000 + i;
                                    if with_state {
                                        store
                                            .append_with_state(common::entry(i), common::writes(i))
                                            .await
                                            .unwrap();
                                    } else {
                                        store.append(common::entry(i)).await.unwrap();
                                    }
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(store.close()).unwrap();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = bench_append
}
criterion_main!(benches);
