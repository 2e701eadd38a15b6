//! Differential tests against the real bash, skipped when bash is absent.
//!
//! Generated command lines whose only programs are `printf M<n>` (and
//! `cat`, `echo`, `true`), nested in every construct the analysis splits,
//! are run by bash; every marker bash prints must belong to a `printf`
//! part. Listing more than runs (`false && printf M1`) is fine; missing one
//! is the failure this test exists for. Likewise every file bash creates
//! (in a scratch directory) must be in some part's `writes`. An analysis
//! that is not understood passes: the policy asks a human for those.

use std::process::Command;

use proptest::prelude::*;
use rein_shell::analyze;

/// Single-quotes `s` for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line built from printf leaves.
fn line() -> impl Strategy<Value = String> {
    let leaf = (0u32..1000).prop_flat_map(|n| {
        prop::sample::select(vec![
            format!("printf M{n}"),
            format!("env A=1 printf M{n}"),
            format!("timeout 5 printf M{n}"),
            format!("nice -n 1 printf M{n}"),
            format!("command printf M{n}"),
            format!("X=1 printf M{n}"),
            format!("\\printf M{n}"),
            format!("'printf' M{n}"),
            format!("p\"\"rintf M{n}"),
        ])
    });
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} || {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}; {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} | {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}\n{b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} & {b}; wait")),
            inner.clone().prop_map(|a| format!("( {a} )")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("{{ {a}; }}")),
            inner.clone().prop_map(|a| format!("if true; then {a}; fi")),
            inner.clone().prop_map(|a| format!("if false; then :; else {a}; fi")),
            inner.clone().prop_map(|a| format!("for i in 1; do {a}; done")),
            inner.clone().prop_map(|a| format!("case x in x) {a};; esac")),
            inner.clone().prop_map(|a| format!("f() {{ {a}; }}; f")),
            inner.clone().prop_map(|a| format!("echo \"$({a})\"")),
            inner.clone().prop_map(|a| format!("echo $( {a} )")),
            inner.clone().prop_map(|a| format!("x=$({a}); echo \"$x\"")),
            inner.clone().prop_map(|a| format!("cat <({a})")),
            inner.clone().prop_map(|a| format!("bash -c {}", quote(&a))),
            inner.clone().prop_map(|a| format!("sh -c {}", quote(&a))),
            inner.clone().prop_map(|a| format!("eval {}", quote(&a))),
            // A here-document ends at its delimiter line, so what follows
            // goes on the next line; delimiters differ by nesting.
            inner
                .clone()
                .prop_map(|a| format!("bash <<'E{n}'\n{a}\nE{n}\ntrue", n = a.len())),
            inner
                .clone()
                .prop_map(|a| format!("echo \"$(cat <<'D{n}'\n(x) don't\nD{n}\n{a}\n)\"", n = a.len())),
            inner.clone().prop_map(|a| format!("time {a}")),
            inner.clone().prop_map(|a| format!("! {a}")),
        ]
    })
}

/// A command line whose commands write files `f<n>` through redirections.
fn writing_line() -> impl Strategy<Value = String> {
    let leaf = (0u32..100).prop_flat_map(|n| {
        prop::sample::select(vec![
            format!("printf x > f{n}"),
            format!("printf x >> f{n}"),
            format!("printf x &> f{n}"),
            format!("printf x 2>&1 >f{n}"),
            format!("printf x >| f{n}"),
            format!("> f{n}"),
            format!("printf x 1> f{n}"),
            format!("env A=1 printf x > f{n}"),
            format!("printf x > \"f{n}\""),
        ])
    });
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}; {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} | {b}")),
            inner.clone().prop_map(|a| format!("( {a} )")),
            inner.clone().prop_map(|a| format!("{{ {a}; }} > g")),
            inner.clone().prop_map(|a| format!("if true; then {a}; fi 2> h")),
            inner.clone().prop_map(|a| format!("bash -c {}", quote(&a))),
            inner.clone().prop_map(|a| format!("echo \"$({a})\"")),
            inner.clone().prop_map(|a| format!("for i in 1; do {a}; done >> g")),
        ]
    })
}

fn bash_available() -> bool {
    Command::new("bash").arg("-c").arg("true").status().is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_printf_bash_runs_is_a_part(line in line()) {
        if !bash_available() {
            return Ok(());
        }
        let dir = std::env::temp_dir();
        let out = Command::new("bash").arg("-c").arg(&line).current_dir(&dir).output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        let a = analyze(&line);
        // Not understood is a safe answer (the policy asks for approval);
        // brush-parser refuses a few valid forms (a `case` inside `( )`).
        if !a.understood {
            return Ok(());
        }
        let listed: Vec<&str> = a
            .parts
            .iter()
            .filter(|p| p.program == "printf")
            .filter_map(|p| p.args.first().map(String::as_str))
            .collect();
        for marker in printed.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| w.starts_with('M')) {
            // Markers run together when printed without newlines: split them.
            for m in marker.split('M').filter(|m| !m.is_empty()) {
                let m = format!("M{m}");
                prop_assert!(listed.contains(&m.as_str()), "bash ran printf {m} in {line:?}; parts: {listed:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Every file bash creates is in the `writes` of some part.
    #[test]
    fn every_file_bash_writes_is_in_writes(line in writing_line()) {
        if !bash_available() {
            return Ok(());
        }
        let dir = std::env::temp_dir().join(format!("rein-shell-diff-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("bash").arg("-c").arg(&line).current_dir(&dir).output().unwrap();
        let mut created: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        created.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        let a = analyze(&line);
        if !a.understood {
            return Ok(());
        }
        for file in created {
            prop_assert!(
                a.parts.iter().any(|p| p.writes.contains(&file)),
                "bash wrote {file} in {line:?}; writes: {:?}",
                a.parts.iter().map(|p| &p.writes).collect::<Vec<_>>()
            );
        }
    }
}
