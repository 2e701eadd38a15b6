//! Differential tests against the real bash, skipped when bash is absent.
//!
//! Generated command lines whose only programs are `printf M<n>` (and
//! `cat`, `echo`, `true`), nested in every construct the analysis splits,
//! are run by bash; every marker bash prints must belong to a `printf`
//! part. Listing more than runs (`false && printf M1`) is fine; missing one
//! is the failure this test exists for. Likewise every file bash creates
//! (in a scratch directory) must be in some part's `writes`, and the
//! directory bash is in when a `printf` runs (after `cd`, `pushd`, `popd`,
//! in subshells, loops, functions) must be one of its part's `dirs`. An
//! analysis that is not understood passes: the policy asks a human for
//! those.

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
            format!("taskset 1 printf M{n}"),
            format!("taskset -c 0 printf M{n}"),
            format!("flock . printf M{n}"),
            format!("flock -c 'printf M{n}' ."),
            format!("setpriv --nnp printf M{n}"),
            format!("chrt -o 0 printf M{n}"),
            format!("prlimit --nofile=1024 printf M{n}"),
            format!("script -qc 'printf M{n}' /dev/null"),
            format!("dash -c 'printf M{n}'"),
            format!("cd / && printf M{n}"),
            format!("pushd / >/dev/null && printf M{n}"),
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

/// A command line that moves between the directories of a scratch tree
/// (`a`, `b`, `a/c`, `home`) and prints, at each `printf`, its marker and
/// the directory bash is in.
fn moving_line() -> impl Strategy<Value = String> {
    let mover = prop::sample::select(vec![
        "cd a",
        "cd b",
        "cd ..",
        "cd c",
        "cd missing",
        "cd",
        "cd ~/x",
        "cd ./a/../b",
        "cd -P a",
        "cd -- a",
        "pushd a >/dev/null",
        "pushd b >/dev/null",
        "popd >/dev/null",
        "pushd >/dev/null",
        "builtin cd a",
        "command cd b",
        "eval 'cd a'",
        "bash -c 'cd a'",
        "env -C a true",
    ])
    .prop_map(str::to_owned);
    let leaf = prop_oneof![
        (0u32..1000).prop_map(|n| format!("printf 'M{n} %s\\n' \"$PWD\"")),
        (0u32..1000).prop_map(|n| format!("env -C b bash -c 'printf \"M{n} %s\\n\" \"$PWD\"'")),
        mover,
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} && {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} || {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}; {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}; {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} | {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} & {b}; wait")),
            inner.clone().prop_map(|a| format!("( {a} )")),
            inner.clone().prop_map(|a| format!("{{ {a}; }}")),
            inner.clone().prop_map(|a| format!("! {a}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("if {a}; then {b}; fi")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("if {a}; then {b}; else {c}; fi")),
            inner.clone().prop_map(|a| format!("for i in 1 2 3; do {a}; done")),
            // Nested loops count with variables of their own.
            inner.clone().prop_map(|a| {
                let n = format!("n{}", a.len());
                format!("{n}=0; while [ ${n} -lt 3 ]; do {n}=$(({n}+1)); {a}; done")
            }),
            inner.clone().prop_map(|a| format!("case x in x) {a};; esac")),
            inner.clone().prop_map(|a| format!("echo \"$({a})\"")),
            inner.clone().prop_map(|a| format!("bash -c {}", quote(&a))),
            inner.clone().prop_map(|a| format!("eval {}", quote(&a))),
            inner.clone().prop_map(|a| format!("f() {{ {a}; }}; f")),
        ]
    })
}

/// `dir` (a `dirs` entry) as the absolute path it names from `start`,
/// `~` being `home`, with `.` and `..` read as bash's logical `cd` does.
fn resolve(start: &std::path::Path, home: &std::path::Path, dir: &str) -> std::path::PathBuf {
    let joined = if dir == "~" {
        home.to_path_buf()
    } else if let Some(rest) = dir.strip_prefix("~/") {
        home.join(rest)
    } else {
        start.join(dir)
    };
    let mut out = std::path::PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The directory bash is in when a command runs is one of that part's
    /// `dirs`.
    #[test]
    fn every_directory_bash_runs_in_is_in_dirs(line in moving_line()) {
        if !bash_available() {
            return Ok(());
        }
        let root = std::env::temp_dir().join(format!("rein-shell-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // bash's $PWD has no symlinks in it: compare with the real path.
        let root = root.canonicalize().unwrap();
        for d in ["a/c", "b/c", "a/a/c", "b/a", "b/b", "home/x/a", "home/x/b"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let home = root.join("home");
        let out = Command::new("bash")
            .arg("-c")
            .arg(&line)
            .current_dir(&root)
            .env("HOME", &home)
            .env_remove("CDPATH")
            .output()
            .unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let a = analyze(&line);
        for printed in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((marker, pwd)) = printed.split_once(' ') else { continue };
            // Markers may repeat: some part with the marker must list the
            // directory (or be not understood).
            let parts: Vec<&rein_shell::Part> = a
                .parts
                .iter()
                .filter(|p| p.program == "printf" && p.args.first().is_some_and(|m| m.starts_with(&format!("{marker} "))))
                .collect();
            prop_assert!(!parts.is_empty() || !a.understood, "bash ran {marker} in {line:?}, which is no part");
            if parts.is_empty() {
                continue;
            }
            let pwd = std::path::Path::new(pwd);
            let covered = parts.iter().any(|p| {
                !p.understood || p.dirs.iter().any(|d| resolve(&root, &home, d) == pwd)
            });
            prop_assert!(
                covered,
                "bash ran {marker} in {pwd:?} in {line:?}; the parts say {:?}",
                parts.iter().map(|p| &p.dirs).collect::<Vec<_>>()
            );
        }
    }
}
