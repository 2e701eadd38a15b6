//! Corpus tests: every `*.test.yaml` under `tests/corpus/` and the
//! repository's `examples/` passes.

use rein_engine::testing::{read_test_file, run_cases};
use rein_engine::{CacheStatus, PolicyCache};
use std::path::{Path, PathBuf};

fn test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            test_files(&path, out);
        } else if path.to_string_lossy().ends_with(".test.yaml") {
            out.push(path);
        }
    }
}

/// How the policies under test are loaded.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    Compile,
    /// Native policies through a fresh cache, twice; the cases run on the
    /// policy read back from the cache.
    FromCache,
}

fn run_dir(dir: &Path, load: Load) -> usize {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = PolicyCache::new(cache_dir.path().join("policies"));
    let mut hits = 0;
    let mut files = Vec::new();
    test_files(dir, &mut files);
    assert!(!files.is_empty(), "no test files in {}", dir.display());
    let mut failures = Vec::new();
    let mut count = 0;
    for f in files {
        let test = read_test_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut policy = test.load_policy().unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if load == Load::FromCache && test.actra.is_none() && test.governance.is_none() {
            let (_, first) = cache.load(&test.policy).unwrap();
            let (cached, second) = cache.load(&test.policy).unwrap();
            match (first, second) {
                (CacheStatus::Stored, CacheStatus::Hit) => hits += 1,
                (CacheStatus::NotCached, CacheStatus::NotCached) => assert!(!policy.warnings().is_empty()),
                other => panic!("{}: cache statuses {other:?}", f.display()),
            }
            assert_eq!(cached.version(), policy.version());
            policy = cached;
        }
        for r in run_cases(&policy, &test) {
            count += 1;
            if !r.passed() {
                failures.push(format!(
                    "{}:{} {}: {}",
                    f.display(),
                    r.line,
                    r.name,
                    r.failures.join("; ")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
    if load == Load::FromCache {
        assert!(hits > 0, "no policy under {} was read from the cache", dir.display());
    }
    count
}

#[test]
fn corpus_passes() {
    let n = run_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"),
        Load::Compile,
    );
    assert!(n >= 30, "only {n} corpus cases ran");
}

#[test]
fn corpus_passes_from_the_cache() {
    let n = run_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"),
        Load::FromCache,
    );
    assert!(n >= 30, "only {n} corpus cases ran");
}

#[test]
fn examples_pass_from_the_cache() {
    let n = run_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        Load::FromCache,
    );
    assert!(n >= 50, "only {n} example cases ran");
}

#[test]
fn examples_pass() {
    let n = run_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
        Load::Compile,
    );
    assert!(n >= 50, "only {n} example cases ran");
}
