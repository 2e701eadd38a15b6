//! The solver process: timeouts give `unknown` (never a verdict), a hung
//! solver is killed at the deadline, a missing one is a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use rein_analysis::{lint, Answer, Kind, Solver, SolverConfig, SolverError};
use rein_engine::analysis::Logic;
use rein_engine::Policy;
use std::time::{Duration, Instant};

#[test]
fn a_hard_question_past_the_timeout_is_unknown_not_never_matches() {
    let Some(mut solver) = common::solver_with(Duration::from_millis(50)) else {
        return;
    };
    let policy = Policy::load(&[common::corpus("hard.yaml")]).unwrap();
    let start = Instant::now();
    let report = lint(&policy, &mut solver);
    assert!(start.elapsed() < Duration::from_secs(20), "{:?}", start.elapsed());
    assert!(
        !report.findings.iter().any(|f| f.rule.as_deref() == Some("fermat")),
        "{:#?}",
        report.findings
    );
    // Z3 times out or gives up (nonlinear arithmetic): either way unknown.
    assert!(
        report.unknown.iter().any(|u| u.rule.as_deref() == Some("fermat")),
        "{:#?}",
        report.unknown
    );
    assert!(report.solver.unknown > 0);
    // The easy rule is still analysed: it can match.
    assert!(!report.findings.iter().any(|f| f.kind == Kind::NeverMatches));
}

#[test]
fn a_tiny_timeout_is_reported_as_a_timeout() {
    let Some(mut solver) = common::solver_with(Duration::from_millis(1)) else {
        return;
    };
    let policy = Policy::load(&[common::corpus("hard.yaml")]).unwrap();
    let report = lint(&policy, &mut solver);
    assert!(
        report.unknown.iter().any(|u| u.reason.contains("timed out")),
        "{:#?}",
        report.unknown
    );
    assert!(
        !report.findings.iter().any(|f| f.rule.as_deref() == Some("fermat")),
        "{:#?}",
        report.findings
    );
}

#[test]
fn a_solver_that_never_answers_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("z3");
    // Greets like Z3, then reads and never answers a query.
    std::fs::write(
        &fake,
        "#!/bin/sh\nwhile read -r line; do case \"$line\" in *echo*) echo ready;; esac; done\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut solver = Solver::new(SolverConfig {
        program: fake,
        timeout: Duration::from_millis(200),
    })
    .unwrap();
    let start = Instant::now();
    let answer = solver.check(&Logic::new(), &rein_engine::analysis::Term::Bool(true), &[]);
    assert!(
        matches!(&answer, Answer::Unknown(why) if why.contains("deadline")),
        "{answer:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    // The next question starts a fresh process (and is unknown again).
    assert!(matches!(
        solver.check(&Logic::new(), &rein_engine::analysis::Term::Bool(true), &[]),
        Answer::Unknown(_)
    ));
}

#[test]
fn a_missing_solver_says_how_to_get_one() {
    let err = Solver::new(SolverConfig {
        program: "/nonexistent/z3".into(),
        timeout: Duration::from_secs(1),
    })
    .err()
    .expect("no solver there");
    assert!(matches!(err, SolverError::Missing { .. }));
    let text = err.to_string();
    assert!(
        text.contains("apt-get install z3") && text.contains("--solver PATH"),
        "{text}"
    );
}

#[test]
fn true_is_sat_and_false_is_unsat() {
    let Some(mut solver) = common::solver() else { return };
    let logic = Logic::new();
    assert!(matches!(
        solver.check(&logic, &rein_engine::analysis::Term::Bool(true), &[]),
        Answer::Sat(_)
    ));
    assert!(solver
        .check(&logic, &rein_engine::analysis::Term::Bool(false), &[])
        .is_unsat());
}
