//! Shared by the integration tests: the real `z3`, or a skip.

#![allow(dead_code, clippy::panic)]

use rein_analysis::{Solver, SolverConfig, SolverError};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The solver the tests use (`REIN_Z3` or `z3` on the PATH), or `None`
/// with a SKIPPED note when it is missing; missing under `CI=true` is a
/// failure (`.ci/run` installs it).
pub fn solver() -> Option<Solver> {
    solver_with(Duration::from_secs(10))
}

/// The same with a per-query timeout.
pub fn solver_with(timeout: Duration) -> Option<Solver> {
    let program = std::env::var_os("REIN_Z3").map_or_else(|| PathBuf::from("z3"), PathBuf::from);
    match Solver::new(SolverConfig { program, timeout }) {
        Ok(s) => Some(s),
        Err(e @ SolverError::Missing { .. }) => {
            let under_ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!under_ci, "z3 missing under CI=true: {e}");
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A file of the corpus.
pub fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name)
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
