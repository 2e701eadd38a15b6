//! Corpus tests: every `*.test.yaml` under `tests/corpus/` and the
//! repository's `examples/` passes.

use rein_engine::testing::{read_test_file, run_cases};
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

fn run_dir(dir: &Path) -> usize {
    let mut files = Vec::new();
    test_files(dir, &mut files);
    assert!(!files.is_empty(), "no test files in {}", dir.display());
    let mut failures = Vec::new();
    let mut count = 0;
    for f in files {
        let test = read_test_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let policy = test.load_policy().unwrap_or_else(|e| panic!("{}: {e}", f.display()));
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
    count
}

#[test]
fn corpus_passes() {
    let n = run_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"));
    assert!(n >= 30, "only {n} corpus cases ran");
}

#[test]
fn examples_pass() {
    let n = run_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"));
    assert!(n >= 50, "only {n} example cases ran");
}
