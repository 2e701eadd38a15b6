//! Properties of the analysis over generated command lines.

use proptest::prelude::*;
use rein_shell::{analyze, Analysis, MAX_PARTS};

/// Names that are plain programs: not reserved words, wrappers, shells or
/// builtins the analysis treats specially.
fn program() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,7}".prop_filter("a plain program", |p| {
        ![
            "if",
            "then",
            "else",
            "elif",
            "fi",
            "do",
            "done",
            "case",
            "esac",
            "while",
            "until",
            "for",
            "in",
            "select",
            "function",
            "time",
            "coproc",
            "sudo",
            "doas",
            "env",
            "timeout",
            "nice",
            "nohup",
            "command",
            "builtin",
            "exec",
            "xargs",
            "setsid",
            "stdbuf",
            "ionice",
            "chroot",
            "sh",
            "bash",
            "zsh",
            "dash",
            "ksh",
            "mksh",
            "ash",
            "rbash",
            "eval",
            "source",
            "trap",
            "find",
            "alias",
            "su",
            // Wrappers, shells and interpreters added with the known
            // programs, builtins that assign variables or change the
            // directory, and known programs that can be told to run code.
            "taskset",
            "flock",
            "setpriv",
            "chrt",
            "unshare",
            "prlimit",
            "watch",
            "parallel",
            "script",
            "busybox",
            "toybox",
            "fish",
            "yash",
            "posh",
            "lksh",
            "oksh",
            "cd",
            "pushd",
            "popd",
            "dirs",
            "hash",
            "enable",
            "export",
            "declare",
            "typeset",
            "local",
            "readonly",
            "read",
            "printf",
            "unset",
            "getopts",
            "mapfile",
            "readarray",
            "let",
            "shopt",
            "set",
            "awk",
            "gawk",
            "mawk",
            "nawk",
            "sed",
            "git",
            "tar",
            "rsync",
            "sort",
            "rg",
            "install",
            "wget",
            "curl",
            "make",
            "perl",
            "ruby",
            "node",
            "nodejs",
            "php",
            "lua",
            "luajit",
            "tclsh",
            "wish",
            "julia",
            "deno",
            "bun",
            "osascript",
            "pwsh",
            "irb",
            "jshell",
            "groovy",
            "guile",
            "racket",
            "sbcl",
            "elixir",
            "erl",
        ]
        .contains(&p.as_str())
            && !p.starts_with("python")
            && !p.starts_with("pypy")
    })
}

/// An argument without shell metacharacters.
fn plain_arg() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./:=,+%@-]{1,12}"
}

/// Any string, as an argument, quoted so the shell passes it through.
fn any_arg() -> impl Strategy<Value = String> {
    prop_oneof![
        plain_arg(),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect())
    ]
    .prop_filter("no NUL", |s: &String| !s.contains('\0'))
}

/// Single-quotes `s` for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A simple command: its text, program and arguments.
fn simple() -> impl Strategy<Value = (String, String, Vec<String>)> {
    (program(), prop::collection::vec(plain_arg(), 0..4)).prop_map(|(p, args)| {
        let text = std::iter::once(p.clone())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        (text, p, args)
    })
}

fn calls(a: &Analysis) -> Vec<(String, Vec<String>)> {
    a.parts.iter().map(|p| (p.program.clone(), p.args.clone())).collect()
}

fn consistent(a: &Analysis) -> bool {
    a.understood == a.parts.iter().all(|p| p.understood)
        && a.problems.len() == a.parts.iter().filter(|p| !p.understood).count()
        && a.parts.iter().all(|p| p.understood == p.reason.is_none())
        && a.parts.len() <= MAX_PARTS
        // A part whose directory is not known is not understood.
        && a.parts.iter().all(|p| !p.dirs.is_empty() || !p.understood)
        // Only a program whose name is literal can be known.
        && a.parts.iter().all(|p| !p.known || !p.program.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Never panics, and the summary agrees with the parts, on any input.
    #[test]
    fn any_text_is_analysed(s in any::<String>()) {
        let a = analyze(&s);
        prop_assert!(consistent(&a));
    }

    /// Same, on text made of the shell's own characters, which reaches far
    /// more of the grammar than random Unicode does.
    #[test]
    fn shellish_text_is_analysed(s in r#"[a-z $(){}\[\]<>|&;'"`\\=*?!#~\n-]{0,80}"#) {
        let a = analyze(&s);
        prop_assert!(consistent(&a));
    }

    /// `a && b`, `a || b`, `a; b`, `a | b`, `a & b` and `a\nb` run both.
    #[test]
    fn separators_split_into_both_commands(
        (ta, pa, aa) in simple(),
        (tb, pb, ab) in simple(),
        sep in prop::sample::select(vec![" && ", " || ", "; ", " | ", " & ", "\n"]),
    ) {
        let a = analyze(&format!("{ta}{sep}{tb}"));
        prop_assert!(a.understood);
        prop_assert_eq!(calls(&a), vec![(pa, aa), (pb, ab)]);
        prop_assert_eq!(&a.parts[0].text, &ta);
        prop_assert_eq!(&a.parts[1].text, &tb);
    }

    /// A wrapper in front changes neither the program nor its arguments,
    /// and is named in `via`.
    #[test]
    fn wrappers_do_not_change_the_inner_command(
        (text, p, args) in simple(),
        (wrapper, via) in prop::sample::select(vec![
            ("sudo", "sudo"), ("sudo -u root -E", "sudo"), ("env", "env"), ("env -i A=1", "env"),
            ("timeout 5", "timeout"), ("timeout -k 1 5s", "timeout"), ("nice", "nice"), ("nice -n 2", "nice"),
            ("nohup", "nohup"), ("command", "command"), ("exec", "exec"), ("time", "time"),
            ("time -p", "time"), ("/usr/bin/time -v", "time"), ("doas", "doas"), ("setsid", "setsid"),
            ("stdbuf -oL", "stdbuf"), ("ionice -c 3", "ionice"), ("builtin", "builtin"),
        ]),
    ) {
        let a = analyze(&format!("{wrapper} {text}"));
        prop_assert!(a.understood);
        prop_assert_eq!(calls(&a), vec![(p, args)]);
        prop_assert_eq!(a.parts[0].via.first().map(String::as_str), Some(via));
    }

    /// `bash -c` and `eval` with a quoted string see the same command.
    #[test]
    fn shell_strings_hold_the_same_command((text, p, args) in simple()) {
        for line in [format!("bash -c {}", quote(&text)), format!("eval {}", quote(&text)), format!("sudo sh -c {}", quote(&text))] {
            let a = analyze(&line);
            prop_assert!(a.understood, "{}", line);
            prop_assert_eq!(calls(&a), vec![(p.clone(), args.clone())]);
        }
    }

    /// A literal `cd` followed by `&&` moves the next command there, and
    /// a subshell keeps its `cd` to itself.
    #[test]
    fn cd_and_then_runs_in_the_directory(
        dir in "[a-z0-9_.-]{1,8}(/[a-z0-9_-]{1,8}){0,2}",
        (text, p, _) in simple(),
    ) {
        prop_assume!(dir != "-" && !dir.starts_with('-'));
        let a = analyze(&format!("cd {dir} && {text}"));
        prop_assert!(a.understood);
        prop_assert_eq!(&a.parts[1].program, &p);
        prop_assert_eq!(&a.parts[1].dirs, &vec![dir.clone()]);
        let a = analyze(&format!("(cd {dir} && true); {text}"));
        prop_assert_eq!(&a.parts[2].dirs, &vec![String::new()]);
    }

    /// Quoted arguments reach the program exactly.
    #[test]
    fn quoting_is_removed((_, p, _) in simple(), args in prop::collection::vec(any_arg(), 0..4)) {
        let line = std::iter::once(p.clone()).chain(args.iter().map(|a| quote(a))).collect::<Vec<_>>().join(" ");
        let a = analyze(&line);
        prop_assert!(a.understood);
        prop_assert_eq!(calls(&a), vec![(p, args)]);
        prop_assert!(!a.parts[0].dynamic_args);
    }

    /// A command in a substitution is a part, before the command using it.
    #[test]
    fn substitutions_are_parts((ti, pi, ai) in simple(), (to, po, _) in simple()) {
        let a = analyze(&format!("{to} \"$({ti})\""));
        prop_assert!(a.understood);
        prop_assert_eq!(calls(&a)[0].clone(), (pi, ai));
        prop_assert_eq!(&a.parts[1].program, &po);
        prop_assert!(a.parts[1].dynamic_args);
    }
}
