//! `rein test`

use super::{CacheArgs, EXIT_ALLOW, EXIT_BLOCK};
use clap::Args;
use rein_engine::testing::{read_test_file, run_cases, TestFile};
use rein_engine::{LoadError, Policy, PolicyCache};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Test files, or directories searched for `*.test.yaml` / `*.test.yml`
    /// (a test file names its policy; give the tests, not the policy).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Also list the cases that passed.
    #[arg(long, short = 'v')]
    verbose: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn run(args: TestArgs, color: bool) -> anyhow::Result<u8> {
    let cache = args.cache.cache();
    let mut out = std::io::stdout().lock();
    let mut files = Vec::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for p in &args.paths {
        if p.is_dir() {
            let mut found = Vec::new();
            find_tests(p, &mut found, 0);
            found.sort();
            // A run that tested nothing must not pass: a directory named
            // by mistake, or tests renamed away from `*.test.yaml`, would
            // otherwise turn CI green.
            if found.is_empty() {
                println!("FAIL {}: holds no test file (*.test.yaml or *.test.yml)", p.display());
                failed += 1;
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    for file in &files {
        let shown = file.display();
        let test = match read_test_file(file) {
            Ok(t) => t,
            Err(_) if file.is_file() && !is_test_file_name(file) => {
                // Most likely a policy given where its tests were meant:
                // say so, rather than list every key of the policy as an
                // error of a test file.
                writeln!(
                    out,
                    "FAIL {shown}: not a test file (a test file is named *.test.yaml and has `policy:` and \
                     `cases:`); to check a policy, run `rein validate {shown}`"
                )?;
                failed += 1;
                continue;
            }
            Err(e) => {
                eprint!("{}", e.render(color));
                writeln!(out, "FAIL {shown}: the test file did not load")?;
                failed += 1;
                continue;
            }
        };
        let policy = match load_policy(&test, cache.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                eprint!("{}", e.render(color));
                writeln!(
                    out,
                    "FAIL {shown}: its policy did not load ({} cases not run)",
                    test.cases.len()
                )?;
                failed += test.cases.len().max(1);
                continue;
            }
        };
        for result in run_cases(&policy, &test) {
            if result.passed() {
                passed += 1;
                if args.verbose {
                    writeln!(out, "ok   {shown}:{}: {}", result.line, result.name)?;
                }
            } else {
                failed += 1;
                writeln!(out, "FAIL {shown}:{}: {}", result.line, result.name)?;
                for f in &result.failures {
                    writeln!(out, "       {f}")?;
                }
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 { EXIT_ALLOW } else { EXIT_BLOCK })
}

/// The policy `test` names: a native one without governance through the
/// cache, any other as [`TestFile::load_policy`] loads it.
fn load_policy(test: &TestFile, cache: Option<&PolicyCache>) -> Result<Policy, LoadError> {
    match (&test.actra, &test.governance) {
        (None, None) => super::load_native(&test.policy, cache),
        _ => test.load_policy(),
    }
}

/// Whether `path` is named as a test file (`*.test.yaml`, `*.test.yml`).
fn is_test_file_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

fn find_tests(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 16 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_tests(&path, out, depth + 1);
        } else if is_test_file_name(&path) {
            out.push(path);
        }
    }
}
