//! A fixed number of appends, for instruction counts under valgrind (the
//! machine's noise does not change them), with or without state writes.
//!
//! ```text
//! cargo bench -p rein-store --bench append_count --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/append_count-… APPENDS TASKS state|plain
//! ```
//! Run it with two counts of appends and subtract: the difference over the
//! difference in appends is the cost of one append, set-up excluded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use rein_store::{SqliteStore, Store};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let appends: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let tasks: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let with_state = args.get(2).is_some_and(|a| a == "state");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = common::bench_dir();
    let store = Arc::new(SqliteStore::open(dir.path().join("count.db")).unwrap());
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let store = Arc::clone(&store);
                let n = appends / tasks + u64::from(t < appends % tasks);
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
        for h in handles {
            h.await.unwrap();
        }
        store.close().await.unwrap();
    });
}
