//! Programs that run another program: `sudo`, `env`, `timeout`, `nice`,
//! `nohup`, `xargs`, `command`, `builtin`, `exec`, `time`, `setsid`,
//! `stdbuf`, `ionice`, `doas`, `chroot`, and the shells' `-c`.
//!
//! Each wrapper's options are read from a table of the options it has. An
//! option the table does not know makes the command not understood: guessing
//! whether it takes a value could make a rule look at the wrong program.

use crate::words::WordInfo;

/// What a wrapper at the start of a command line does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Peel {
    /// `words[next..]` is the command the wrapper runs.
    Through(Through),
    /// The wrapper runs no other program (`sudo -l`, `command -v x`, `env`
    /// alone): it is the part's program.
    Itself,
    /// What runs cannot be told.
    Unknown(String),
}

/// A wrapper seen through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Through {
    /// Index of the wrapped program's word.
    pub(crate) next: usize,
    /// Variables the wrapper sets (`env A=1`, `sudo A=1`).
    pub(crate) env: Vec<String>,
    /// Files the wrapper itself writes (`time -o FILE`).
    pub(crate) writes: Vec<String>,
    /// Files the wrapper itself reads (`xargs -a FILE`).
    pub(crate) reads: Vec<String>,
    /// The wrapped program gets arguments that are not on the line (`xargs`).
    pub(crate) adds_args: bool,
    /// The text the wrapper replaces by its input (`xargs -I R`).
    pub(crate) replace: Option<String>,
}

/// The options a wrapper has.
struct Spec {
    /// Short options that take a value (`-u root`, `-uroot`).
    short_value: &'static str,
    /// Short options without a value.
    short_flag: &'static str,
    /// Short options whose value, if any, is attached (`-i{}`, `-l5`).
    short_attached: &'static str,
    /// Long options that take a value (`--user root`, `--user=root`).
    long_value: &'static [&'static str],
    /// Long options without a value or with an attached one (`--preserve-env[=A,B]`).
    long_flag: &'static [&'static str],
    /// `-5`, `-n` with digits (`nice -10`).
    numeric: bool,
}

const NONE: Spec = Spec {
    short_value: "",
    short_flag: "",
    short_attached: "",
    long_value: &[],
    long_flag: &[],
    numeric: false,
};

const SUDO: Spec = Spec {
    short_value: "CDghpRrtTUu",
    short_flag: "ABbEeHiKklNnPSsVv",
    short_attached: "",
    long_value: &[
        "chdir",
        "close-from",
        "group",
        "host",
        "prompt",
        "chroot",
        "role",
        "type",
        "command-timeout",
        "other-user",
        "user",
    ],
    long_flag: &[
        "askpass",
        "bell",
        "background",
        "preserve-env",
        "edit",
        "set-home",
        "login",
        "remove-timestamp",
        "reset-timestamp",
        "list",
        "no-update",
        "non-interactive",
        "preserve-groups",
        "stdin",
        "shell",
        "version",
        "validate",
        "help",
    ],
    numeric: false,
};

const DOAS: Spec = Spec {
    short_value: "Cu",
    short_flag: "Lns",
    ..NONE
};

const ENV: Spec = Spec {
    short_value: "uCS",
    short_flag: "i0v",
    short_attached: "",
    long_value: &["unset", "chdir", "split-string"],
    long_flag: &[
        "ignore-environment",
        "null",
        "debug",
        "default-signal",
        "ignore-signal",
        "block-signal",
        "list-signal-handling",
    ],
    numeric: false,
};

const TIMEOUT: Spec = Spec {
    short_value: "sk",
    short_flag: "fpv",
    short_attached: "",
    long_value: &["signal", "kill-after"],
    long_flag: &["preserve-status", "foreground", "verbose"],
    numeric: false,
};

const NICE: Spec = Spec {
    short_value: "n",
    long_value: &["adjustment"],
    numeric: true,
    ..NONE
};

const COMMAND: Spec = Spec {
    short_flag: "pvV",
    ..NONE
};

const EXEC: Spec = Spec {
    short_value: "a",
    short_flag: "cl",
    ..NONE
};

const TIME: Spec = Spec {
    short_value: "fo",
    short_flag: "pvqa",
    short_attached: "",
    long_value: &["format", "output"],
    long_flag: &["portability", "verbose", "quiet", "append"],
    numeric: false,
};

const XARGS: Spec = Spec {
    short_value: "adEILnPs",
    short_flag: "0prtx",
    short_attached: "eil",
    long_value: &[
        "arg-file",
        "delimiter",
        "max-args",
        "max-procs",
        "max-chars",
        "process-slot-var",
    ],
    long_flag: &[
        "null",
        "interactive",
        "no-run-if-empty",
        "verbose",
        "exit",
        "open-tty",
        "show-limits",
        "eof",
        "replace",
        "max-lines",
    ],
    numeric: false,
};

const SETSID: Spec = Spec {
    short_flag: "cfw",
    long_flag: &["ctty", "fork", "wait"],
    ..NONE
};

const STDBUF: Spec = Spec {
    short_value: "ioe",
    long_value: &["input", "output", "error"],
    ..NONE
};

const IONICE: Spec = Spec {
    short_value: "cnpPu",
    short_flag: "t",
    long_value: &["class", "classdata", "pid", "pgid", "uid"],
    long_flag: &["ignore"],
    ..NONE
};

const CHROOT: Spec = Spec {
    long_value: &["userspec", "groups"],
    long_flag: &["skip-chdir"],
    ..NONE
};

/// Options read from the words after a wrapper.
struct Options {
    /// `(name, value)`: a short option as its letter, a long one without `--`.
    seen: Vec<(String, Option<String>)>,
    /// Index of the first word after the options.
    next: usize,
}

impl Options {
    fn has(&self, names: &[&str]) -> bool {
        self.seen.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    fn values<'a>(&'a self, names: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
        self.seen
            .iter()
            .filter(move |(n, _)| names.contains(&n.as_str()))
            .filter_map(|(_, v)| v.as_deref())
    }
}

/// Reads the options of `wrapper` from `words[1..]`.
fn options(wrapper: &str, words: &[WordInfo], spec: &Spec) -> Result<Options, String> {
    let mut seen = Vec::new();
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let text = w.literal.as_str();
        if !text.starts_with('-') || text == "-" {
            break;
        }
        if !w.is_literal() {
            return Err(format!("an option of {wrapper} is not literal: {text}"));
        }
        if text == "--" {
            i += 1;
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            if spec.long_value.contains(&name) {
                let value = match attached {
                    Some(v) => v,
                    None => {
                        i += 1;
                        value_word(wrapper, text, words.get(i))?
                    }
                };
                seen.push((name.to_owned(), Some(value)));
            } else if spec.long_flag.contains(&name) {
                seen.push((name.to_owned(), attached));
            } else {
                return Err(format!("unknown option {text} of {wrapper}"));
            }
            i += 1;
            continue;
        }
        // A cluster of short options: `-nE`, `-uroot`, `-10`.
        let cluster: Vec<char> = text.chars().skip(1).collect();
        if spec.numeric && cluster.iter().all(char::is_ascii_digit) {
            seen.push(("n".to_owned(), Some(cluster.iter().collect())));
            i += 1;
            continue;
        }
        let mut k = 0;
        while let Some(&c) = cluster.get(k) {
            let rest: String = cluster.iter().skip(k + 1).collect();
            if spec.short_value.contains(c) {
                let value = if rest.is_empty() {
                    i += 1;
                    value_word(wrapper, text, words.get(i))?
                } else {
                    rest
                };
                seen.push((c.to_string(), Some(value)));
                break;
            } else if spec.short_attached.contains(c) {
                seen.push((c.to_string(), Some(rest)));
                break;
            } else if spec.short_flag.contains(c) {
                seen.push((c.to_string(), None));
                k += 1;
            } else {
                return Err(format!("unknown option -{c} of {wrapper}"));
            }
        }
        i += 1;
    }
    Ok(Options { seen, next: i })
}

fn value_word(wrapper: &str, option: &str, word: Option<&WordInfo>) -> Result<String, String> {
    match word {
        Some(w) => Ok(w.literal.clone()),
        None => Err(format!("option {option} of {wrapper} has no value")),
    }
}

/// `NAME=value` words from `words[i..]`: their names and the index after them.
fn assignments(words: &[WordInfo], mut i: usize) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    while let Some(w) = words.get(i) {
        match w.literal.split_once('=') {
            Some((name, _)) if is_name(name) => names.push(name.to_owned()),
            _ => break,
        }
        i += 1;
    }
    (names, i)
}

/// A shell variable name.
pub(crate) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `Through` at `next`, or `Itself` when nothing follows.
fn through_or_itself(words: &[WordInfo], t: Through) -> Peel {
    if t.next < words.len() {
        Peel::Through(t)
    } else {
        Peel::Itself
    }
}

/// What the wrapper `program` (the basename of `words[0]`) runs, or `None`
/// when `program` is no wrapper.
pub(crate) fn peel(program: &str, words: &[WordInfo]) -> Option<Peel> {
    let spec = match program {
        "sudo" => &SUDO,
        "doas" => &DOAS,
        "env" => &ENV,
        "timeout" => &TIMEOUT,
        "nice" => &NICE,
        "nohup" | "builtin" => &NONE,
        "command" => &COMMAND,
        "exec" => &EXEC,
        "time" => &TIME,
        "xargs" => &XARGS,
        "setsid" => &SETSID,
        "stdbuf" => &STDBUF,
        "ionice" => &IONICE,
        "chroot" => &CHROOT,
        _ => return None,
    };
    let opts = match options(program, words, spec) {
        Ok(o) => o,
        Err(reason) => return Some(Peel::Unknown(reason)),
    };
    let mut t = Through {
        next: opts.next,
        ..Through::default()
    };
    let peel = match program {
        "sudo" => {
            if opts.has(&["e", "edit"]) {
                return Some(Peel::Unknown("sudo -e edits files as another user".to_owned()));
            }
            let (env, next) = assignments(words, t.next);
            t.env = env;
            t.next = next;
            through_or_itself(words, t)
        }
        "env" => {
            if opts.has(&["S", "split-string"]) {
                return Some(Peel::Unknown("env -S splits a string into a command line".to_owned()));
            }
            // `env -` is `env -i`.
            if words.get(t.next).is_some_and(|w| w.literal == "-") {
                t.next += 1;
            }
            let (env, next) = assignments(words, t.next);
            t.env = env;
            t.next = next;
            through_or_itself(words, t)
        }
        "timeout" => {
            // The duration comes before the command.
            if words.get(t.next).is_none() {
                return Some(Peel::Itself);
            }
            t.next += 1;
            through_or_itself(words, t)
        }
        "command" if opts.has(&["v", "V"]) => Peel::Itself,
        "time" => {
            t.writes = opts.values(&["o", "output"]).map(str::to_owned).collect();
            if words.first().is_some_and(|w| w.literal == "time") {
                // The keyword (`time time X=1 cmd`): assignments may follow.
                let (env, next) = assignments(words, t.next);
                t.env = env;
                t.next = next;
            }
            through_or_itself(words, t)
        }
        "xargs" => {
            t.reads = opts.values(&["a", "arg-file"]).map(str::to_owned).collect();
            t.adds_args = true;
            t.replace = opts
                .seen
                .iter()
                .find(|(n, _)| n == "I" || n == "i" || n == "replace")
                .map(|(n, v)| match v.as_deref() {
                    Some(r) if !r.is_empty() || n == "I" => r.to_owned(),
                    _ => "{}".to_owned(),
                });
            through_or_itself(words, t)
        }
        "ionice" if opts.has(&["p", "P", "u", "pid", "pgid", "uid"]) => Peel::Itself,
        "chroot" => {
            // NEWROOT, then the command (the default is an interactive shell).
            if words.get(t.next).is_none() {
                return Some(Peel::Itself);
            }
            t.next += 1;
            through_or_itself(words, t)
        }
        _ => through_or_itself(words, t),
    };
    Some(peel)
}

/// Shells whose `-c` string is analysed as a command line of its own.
pub(crate) fn is_shell(program: &str) -> bool {
    matches!(
        program,
        "sh" | "bash" | "zsh" | "dash" | "ksh" | "mksh" | "ash" | "rbash"
    )
}

/// How a shell was asked to get its commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShellCall {
    /// `-c`: `words[i]` is the command string.
    Command(usize),
    /// No script named: commands come from standard input.
    Stdin,
    /// A script file is run.
    Script,
    /// The options could not be read.
    Unknown(String),
}

/// Reads a shell's options (`bash -lc '…'`, `sh -e -x script`, `bash -o
/// pipefail -c '…'`).
pub(crate) fn shell_call(program: &str, words: &[WordInfo]) -> ShellCall {
    const LONG_FLAGS: &[&str] = &[
        "norc",
        "noprofile",
        "login",
        "posix",
        "restricted",
        "verbose",
        "noediting",
        "debugger",
        "dump-strings",
        "dump-po-strings",
        "protected",
        "version",
        "help",
    ];
    const LONG_VALUE: &[&str] = &["rcfile", "init-file"];
    let mut command = false;
    let mut stdin = false;
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let text = w.literal.as_str();
        let plus = text.starts_with('+');
        if !(text.starts_with('-') || plus) || text == "-" || text == "+" {
            break;
        }
        if !w.is_literal() {
            return ShellCall::Unknown(format!("an option of {program} is not literal: {text}"));
        }
        if text == "--" {
            i += 1;
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            if LONG_VALUE.contains(&long) {
                i += 1;
            } else if !LONG_FLAGS.contains(&long) {
                return ShellCall::Unknown(format!("unknown option {text} of {program}"));
            }
            i += 1;
            continue;
        }
        let mut takes_value = false;
        for c in text.chars().skip(1) {
            match c {
                'c' if !plus => command = true,
                's' if !plus => stdin = true,
                'o' | 'O' => takes_value = true,
                c if c.is_ascii_alphabetic() => {}
                c => return ShellCall::Unknown(format!("unknown option {c} in {text} of {program}")),
            }
        }
        if takes_value {
            i += 1;
        }
        i += 1;
    }
    if command {
        if i < words.len() {
            ShellCall::Command(i)
        } else {
            ShellCall::Unknown(format!("{program} -c without a command string"))
        }
    } else if stdin || i >= words.len() {
        ShellCall::Stdin
    } else {
        ShellCall::Script
    }
}

/// `su [options] [user]`: the index of the word holding the `-c` command
/// string, if any.
pub(crate) fn su_command(words: &[WordInfo]) -> Result<Option<usize>, String> {
    const VALUE: &[&str] = &[
        "-s",
        "--shell",
        "-g",
        "--group",
        "-G",
        "--supp-group",
        "-w",
        "--whitelist-environment",
    ];
    const FLAG: &[&str] = &[
        "-",
        "-l",
        "--login",
        "-m",
        "-p",
        "--preserve-environment",
        "-f",
        "--fast",
        "-P",
        "--pty",
    ];
    let mut command = None;
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let text = w.literal.as_str();
        if !text.starts_with('-') {
            // The user name, or arguments for the shell.
            i += 1;
            continue;
        }
        if !w.is_literal() {
            return Err(format!("an option of su is not literal: {text}"));
        }
        if text == "-c" || text == "--command" || text == "--session-command" {
            command = Some(i + 1);
            i += 2;
        } else if text.starts_with("--command=") || text.starts_with("--session-command=") {
            return Err("su --command=… is not analysed; use su -c".to_owned());
        } else if VALUE.contains(&text) {
            i += 2;
        } else if FLAG.contains(&text) || text.starts_with("--shell=") || text.starts_with("--group=") {
            i += 1;
        } else {
            return Err(format!("unknown option {text} of su"));
        }
    }
    match command {
        Some(c) if c >= words.len() => Err("su -c without a command string".to_owned()),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::words::analyze_word;

    fn words(line: &str) -> Vec<WordInfo> {
        line.split(' ')
            .map(|w| analyze_word(w, &brush_parser::ParserOptions::default(), 0))
            .collect()
    }

    fn next(line: &str) -> Option<usize> {
        let ws = words(line);
        let program = ws[0].literal.clone();
        match peel(&program, &ws) {
            Some(Peel::Through(t)) => Some(t.next),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn options_with_values_are_skipped() {
        assert_eq!(next("sudo -u root rm"), Some(3));
        assert_eq!(next("sudo -uroot -E rm"), Some(3));
        assert_eq!(next("sudo --user=root rm"), Some(2));
        assert_eq!(next("sudo -nE A=1 rm"), Some(3));
        assert_eq!(next("timeout -s KILL 5 rm"), Some(4));
        assert_eq!(next("timeout --kill-after=1 5s rm"), Some(3));
        assert_eq!(next("nice -n 5 rm"), Some(3));
        assert_eq!(next("nice -10 rm"), Some(2));
        assert_eq!(next("env -i -u X A=1 B=2 rm"), Some(6));
        assert_eq!(next("env - rm"), Some(2));
        assert_eq!(next("xargs -0 -n1 -I{} rm"), Some(4));
        assert_eq!(next("xargs -i rm"), Some(2));
        assert_eq!(next("nohup -- rm"), Some(2));
        assert_eq!(next("chroot /srv rm"), Some(2));
    }

    #[test]
    fn wrappers_without_a_command_are_the_program() {
        for line in ["sudo -l", "env", "env A=1", "timeout 5", "command -v rm", "nice"] {
            let ws = words(line);
            let program = ws[0].literal.clone();
            assert_eq!(peel(&program, &ws), Some(Peel::Itself), "{line}");
        }
    }

    #[test]
    fn unknown_options_are_not_guessed() {
        let ws = words("sudo -Z rm");
        assert!(matches!(peel("sudo", &ws), Some(Peel::Unknown(_))));
        let ws = words("env -S rm");
        assert!(matches!(peel("env", &ws), Some(Peel::Unknown(_))));
    }

    #[test]
    fn xargs_replace_string() {
        let ws = words("xargs -I% sh");
        let Some(Peel::Through(t)) = peel("xargs", &ws) else {
            panic!()
        };
        assert_eq!(t.replace.as_deref(), Some("%"));
        let ws = words("xargs -i sh");
        let Some(Peel::Through(t)) = peel("xargs", &ws) else {
            panic!()
        };
        assert_eq!(t.replace.as_deref(), Some("{}"));
    }

    #[test]
    fn shell_options() {
        assert_eq!(shell_call("bash", &words("bash -c x")), ShellCall::Command(2));
        assert_eq!(shell_call("bash", &words("bash -lc x")), ShellCall::Command(2));
        assert_eq!(
            shell_call("bash", &words("bash -o pipefail -c x")),
            ShellCall::Command(4)
        );
        assert_eq!(shell_call("bash", &words("bash --norc -e -c x")), ShellCall::Command(4));
        assert_eq!(shell_call("sh", &words("sh")), ShellCall::Stdin);
        assert_eq!(shell_call("sh", &words("sh -s a")), ShellCall::Stdin);
        assert_eq!(shell_call("sh", &words("sh -x run.sh")), ShellCall::Script);
        assert!(matches!(shell_call("sh", &words("sh -c")), ShellCall::Unknown(_)));
    }
}
