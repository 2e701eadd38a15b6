//! Load time, Rein vs Cedar, on the same generated policies.
//!
//! What each timed region holds:
//! * `rein_load`: `Policy::from_yaml_str` on the generated YAML: YAML and
//!   CEL parsing, contract resolution, type checking of every condition
//!   against its action's contract, compilation and indexing by action,
//!   and the SHA-256 version hash of the text.
//! * `cedar_parse`: `PolicySet::from_str` on the equivalent Cedar text
//!   (parsing only; Cedar has no separate compile step).
//! * `cedar_schema_parse`: `Schema::from_cedarschema_str` (the part of
//!   Rein's load that reads contracts).
//! * `cedar_validate`: `Validator::validate` (strict mode) of the parsed
//!   set against the parsed schema: Cedar's type check. The full Cedar
//!   counterpart of `rein_load` is the sum of the three Cedar rows.
//!
//! Dropping the loaded value is kept out of every timed region.
//!
//! The bench allocates with mimalloc, as the `rein` binary does (loading
//! a policy is what `rein check`, `rein serve` and `rein hook` do at
//! start): the system allocator would time a load the product never runs.
//! Cedar's rows run on the same allocator.

// A benchmark's setup either works or must abort loudly: unwrap/expect/panic
// are the right tools here (the workspace warns on them for library code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cedar_policy::{PolicySet, Schema, ValidationMode, Validator};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rein_bench::Workload;
use rein_engine::Policy;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const SEED: u64 = 0x5EED_2026;

fn bench_load(c: &mut Criterion) {
    let mut g = c.benchmark_group("load");
    for n in SIZES {
        let w = Workload::generate(n, 0, SEED);
        let yaml = w.rein_yaml();
        let cedar_text = w.cedar_policies();
        let schema_text = w.cedar_schema();

        // Everything loads and checks cleanly before it is timed.
        let policy = Policy::from_yaml_str(&yaml)
            .unwrap_or_else(|e| panic!("generated policy ({n} rules) fails to load:\n{e:?}"));
        assert_eq!(policy.rule_count(), n);
        let pset = PolicySet::from_str(&cedar_text).unwrap();
        assert_eq!(pset.policies().count(), n + 1, "rules plus the base permit");
        let (schema, _) = Schema::from_cedarschema_str(&schema_text).unwrap();
        let validator = Validator::new(schema);
        let result = validator.validate(&pset, ValidationMode::Strict);
        assert!(
            result.validation_passed_without_warnings(),
            "cedar validation: {:?}",
            result.validation_errors().collect::<Vec<_>>()
        );
        eprintln!(
            "load/{n}: Rein YAML {} bytes; Cedar policies {} bytes + schema {} bytes",
            yaml.len(),
            cedar_text.len(),
            schema_text.len()
        );

        if n >= 1_000 {
            g.sample_size(10).measurement_time(Duration::from_secs(3));
        } else {
            g.sample_size(30).measurement_time(Duration::from_secs(2));
        }
        g.bench_function(BenchmarkId::new("rein_load", n), |b| {
            b.iter_with_large_drop(|| Policy::from_yaml_str(black_box(&yaml)).ok())
        });
        g.bench_function(BenchmarkId::new("cedar_parse", n), |b| {
            b.iter_with_large_drop(|| PolicySet::from_str(black_box(&cedar_text)).ok())
        });
        g.bench_function(BenchmarkId::new("cedar_schema_parse", n), |b| {
            b.iter_with_large_drop(|| {
                Schema::from_cedarschema_str(black_box(&schema_text))
                    .map(|(s, _)| s)
                    .ok()
            })
        });
        g.bench_function(BenchmarkId::new("cedar_validate", n), |b| {
            b.iter_with_large_drop(|| validator.validate(black_box(&pset), ValidationMode::Strict))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500));
    targets = bench_load
}
criterion_main!(benches);
