//! Programs that run another program: `sudo`, `env`, `timeout`, `nice`,
//! `nohup`, `xargs`, `command`, `builtin`, `exec`, `time`, `setsid`,
//! `stdbuf`, `ionice`, `doas`, `chroot`, `taskset`, `flock`, `setpriv`,
//! `chrt`, `unshare`, `prlimit`, `watch`, `parallel`, `script`, `busybox`,
//! `toybox`, and the shells' `-c`.
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
    /// The wrapper runs a shell command string (`flock -c`, `script -c`,
    /// `watch`, `parallel`).
    Shell(ShellString),
}

/// A command string a wrapper hands to a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShellString {
    /// The string, or why it cannot be read (not literal).
    pub(crate) script: Result<String, String>,
    /// How the part names the wrapper in `via` (`flock -c`).
    pub(crate) via: String,
    /// The wrapper adds arguments to the command (`parallel ::: a b`).
    pub(crate) adds_args: bool,
    /// Text the wrapper replaces by its input (`parallel`'s `{}`).
    pub(crate) replace: Option<String>,
    /// Files the wrapper itself writes (`script`'s typescript, `flock`'s
    /// lock file).
    pub(crate) writes: Vec<String>,
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
    /// The wrapped program runs in this directory (`env -C dir`, `sudo -D
    /// dir`), or in one that cannot be told (`sudo -i`, `chroot`): why.
    pub(crate) chdir: Option<Result<String, String>>,
}

impl Default for ShellString {
    fn default() -> Self {
        ShellString {
            script: Err("no command string".to_owned()),
            via: String::new(),
            adds_args: false,
            replace: None,
            writes: Vec::new(),
        }
    }
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

const TASKSET: Spec = Spec {
    short_flag: "acphV",
    long_flag: &["all-tasks", "cpu-list", "pid", "help", "version"],
    ..NONE
};

const FLOCK: Spec = Spec {
    short_value: "Ewc",
    short_flag: "sxeunoFhV",
    long_value: &["conflict-exit-code", "timeout", "wait", "command"],
    long_flag: &[
        "shared",
        "exclusive",
        "unlock",
        "nonblock",
        "nb",
        "close",
        "no-fork",
        "verbose",
        "help",
        "version",
    ],
    ..NONE
};

const SETPRIV: Spec = Spec {
    short_flag: "dhV",
    long_value: &[
        "inh-caps",
        "ambient-caps",
        "bounding-set",
        "groups",
        "ruid",
        "euid",
        "reuid",
        "rgid",
        "egid",
        "regid",
        "securebits",
        "pdeathsig",
        "selinux-label",
        "apparmor-profile",
        "landlock-access",
        "landlock-rule",
        "seccomp-filter",
    ],
    long_flag: &[
        "dump",
        "nnp",
        "no-new-privs",
        "keep-groups",
        "clear-groups",
        "init-groups",
        "reset-env",
        "help",
        "version",
    ],
    ..NONE
};

const CHRT: Spec = Spec {
    short_value: "TPD",
    short_flag: "abdefiormRpvhV",
    long_value: &["sched-runtime", "sched-period", "sched-deadline"],
    long_flag: &[
        "all-tasks",
        "batch",
        "deadline",
        "ext",
        "fifo",
        "idle",
        "other",
        "rr",
        "reset-on-fork",
        "max",
        "pid",
        "verbose",
        "help",
        "version",
    ],
    ..NONE
};

const UNSHARE: Spec = Spec {
    short_value: "wRSGl",
    short_flag: "muinpUCTfrcV",
    long_value: &[
        "wd",
        "root",
        "setuid",
        "setgid",
        "map-user",
        "map-group",
        "map-users",
        "map-groups",
        "propagation",
        "setgroups",
        "monotonic",
        "boottime",
        "load-interp",
    ],
    long_flag: &[
        "mount",
        "uts",
        "ipc",
        "net",
        "pid",
        "user",
        "cgroup",
        "time",
        "fork",
        "kill-child",
        "mount-proc",
        "mount-binfmt",
        "map-root-user",
        "map-current-user",
        "map-auto",
        "keep-caps",
        "help",
        "version",
    ],
    ..NONE
};

const PRLIMIT: Spec = Spec {
    short_value: "po",
    short_flag: "hV",
    short_attached: "cdefilmnqrstuvxy",
    long_value: &["pid", "output"],
    long_flag: &[
        "noheadings",
        "raw",
        "verbose",
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "help",
        "version",
    ],
    ..NONE
};

const WATCH: Spec = Spec {
    short_value: "nq",
    short_flag: "bcCegptxwrhv",
    short_attached: "d",
    long_value: &["interval", "equexit"],
    long_flag: &[
        "beep",
        "color",
        "no-color",
        "differences",
        "errexit",
        "chgexit",
        "precise",
        "no-title",
        "no-wrap",
        "no-linewrap",
        "no-rerun",
        "exec",
        "help",
        "version",
    ],
    ..NONE
};

const PARALLEL: Spec = Spec {
    short_value: "jnNPdIaC",
    short_flag: "kXmq0uvtr",
    long_value: &[
        "jobs",
        "max-args",
        "max-procs",
        "max-replace-args",
        "delimiter",
        "replace",
        "arg-file",
        "colsep",
        "halt",
        "halt-on-error",
        "joblog",
        "results",
        "tmpdir",
        "timeout",
        "retries",
        "delay",
        "block",
        "tag-string",
    ],
    long_flag: &[
        "keep-order",
        "xargs",
        "quote",
        "null",
        "ungroup",
        "line-buffer",
        "lb",
        "group",
        "tag",
        "verbose",
        "dry-run",
        "bar",
        "progress",
        "eta",
        "will-cite",
        "no-notice",
        "shuf",
        "no-run-if-empty",
        "help",
        "version",
    ],
    ..NONE
};

const SCRIPT: Spec = Spec {
    short_value: "cETBIOm",
    short_flag: "aefqhV",
    short_attached: "t",
    long_value: &[
        "command",
        "echo",
        "log-timing",
        "log-io",
        "log-in",
        "log-out",
        "logging-format",
        "output-limit",
    ],
    long_flag: &[
        "append", "return", "flush", "force", "quiet", "timing", "help", "version",
    ],
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
        "taskset" => &TASKSET,
        "flock" => &FLOCK,
        "setpriv" => &SETPRIV,
        "chrt" => &CHRT,
        "unshare" => &UNSHARE,
        "prlimit" => &PRLIMIT,
        "watch" => &WATCH,
        "parallel" => &PARALLEL,
        "script" => &SCRIPT,
        "busybox" | "toybox" => return Some(multicall(words)),
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
            if opts.has(&["i", "login"]) {
                t.chdir = Some(Err(
                    "sudo -i runs the command in the target user's home directory".to_owned()
                ));
            } else if let Some(dir) = opts.values(&["D", "chdir"]).last() {
                t.chdir = Some(Ok(dir.to_owned()));
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
            if let Some(dir) = opts.values(&["C", "chdir"]).last() {
                t.chdir = Some(Ok(dir.to_owned()));
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
            t.chdir = Some(Err("chroot: every path is read inside the new root".to_owned()));
            through_or_itself(words, t)
        }
        "taskset" => {
            if opts.has(&["p", "pid"]) {
                return Some(Peel::Itself);
            }
            // The CPU mask or list comes before the command.
            if words.get(t.next).is_none() {
                return Some(Peel::Itself);
            }
            t.next += 1;
            through_or_itself(words, t)
        }
        "chrt" => {
            if opts.has(&["p", "pid", "m", "max"]) {
                return Some(Peel::Itself);
            }
            // The priority comes before the command.
            if words.get(t.next).is_none() {
                return Some(Peel::Itself);
            }
            t.next += 1;
            through_or_itself(words, t)
        }
        "flock" => {
            // `flock [options] FILE|DIR (-c STRING | COMMAND…)` or `flock
            // [options] FD`.
            let Some(lock) = words.get(t.next) else {
                return Some(Peel::Itself);
            };
            let lock_file = lock.literal.clone();
            // `-c STRING` may come before or after the lock file.
            let after = words
                .get(t.next + 1)
                .filter(|w| w.literal == "-c" || w.literal == "--command");
            let command = match after {
                Some(_) => match words.get(t.next + 2) {
                    Some(w) => Some(w.literal.as_str()),
                    None => return Some(Peel::Unknown("flock -c without a command string".to_owned())),
                },
                None => opts.values(&["c", "command"]).last(),
            };
            if let Some(command) = command {
                let literal = words
                    .iter()
                    .find(|w| w.literal == command)
                    .is_none_or(WordInfo::is_literal);
                return Some(Peel::Shell(ShellString {
                    script: if literal {
                        Ok(command.to_owned())
                    } else {
                        Err("flock -c runs a command string that is not literal".to_owned())
                    },
                    via: "flock -c".to_owned(),
                    writes: vec![lock_file],
                    ..ShellString::default()
                }));
            }
            if lock_file.chars().all(|c| c.is_ascii_digit()) && t.next + 1 == words.len() {
                return Some(Peel::Itself);
            }
            t.writes.push(lock_file);
            t.next += 1;
            through_or_itself(words, t)
        }
        "setpriv" if opts.has(&["d", "dump"]) => Peel::Itself,
        "unshare" => {
            if opts.has(&["R", "root"]) {
                t.chdir = Some(Err("unshare --root: every path is read inside the new root".to_owned()));
            } else if let Some(dir) = opts.values(&["w", "wd"]).last() {
                t.chdir = Some(Ok(dir.to_owned()));
            }
            through_or_itself(words, t)
        }
        "prlimit" if opts.has(&["p", "pid"]) => Peel::Itself,
        "watch" => {
            if opts.has(&["x", "exec"]) {
                return Some(through_or_itself(words, t));
            }
            // watch joins its arguments with spaces and runs them with `sh -c`.
            let Some(rest) = words.get(t.next..).filter(|r| !r.is_empty()) else {
                return Some(Peel::Itself);
            };
            Peel::Shell(ShellString {
                script: joined("watch", rest),
                via: "watch".to_owned(),
                ..ShellString::default()
            })
        }
        "parallel" => parallel(words, &opts),
        "script" => {
            let file = words.get(t.next).map(|w| w.literal.clone());
            let mut writes = vec![file.unwrap_or_else(|| "typescript".to_owned())];
            writes.extend(
                opts.values(&["T", "B", "I", "O", "log-timing", "log-io", "log-in", "log-out"])
                    .map(str::to_owned),
            );
            match opts.values(&["c", "command"]).last() {
                Some(command) => {
                    let literal = words
                        .iter()
                        .find(|w| w.literal == command)
                        .is_none_or(WordInfo::is_literal);
                    Peel::Shell(ShellString {
                        script: if literal {
                            Ok(command.to_owned())
                        } else {
                            Err("script -c runs a command string that is not literal".to_owned())
                        },
                        via: "script -c".to_owned(),
                        writes,
                        ..ShellString::default()
                    })
                }
                // An interactive shell, reading the terminal.
                None => Peel::Unknown("script starts an interactive shell".to_owned()),
            }
        }
        _ => through_or_itself(words, t),
    };
    Some(peel)
}

/// `busybox APPLET args…`, `toybox APPLET args…`: the applet is the
/// program (`busybox sh -c …`, `busybox rm -rf …`).
fn multicall(words: &[WordInfo]) -> Peel {
    match words.get(1) {
        None => Peel::Itself,
        Some(w) if w.literal.starts_with('-') => Peel::Itself,
        Some(_) => Peel::Through(Through {
            next: 1,
            ..Through::default()
        }),
    }
}

/// Words joined by spaces into a shell command string (`watch`,
/// `parallel`), or why not.
fn joined(wrapper: &str, words: &[WordInfo]) -> Result<String, String> {
    if let Some(w) = words.iter().find(|w| !w.is_literal()) {
        return Err(format!(
            "{wrapper} runs a command string that is not literal: {}",
            w.literal
        ));
    }
    Ok(words.iter().map(|w| w.literal.as_str()).collect::<Vec<_>>().join(" "))
}

/// GNU `parallel [options] command ::: arguments`: the command, its words
/// joined, runs in a shell once per argument. Without a command, the
/// input lines are the commands; with `-S`, they run on other hosts.
fn parallel(words: &[WordInfo], opts: &Options) -> Peel {
    let rest = words.get(opts.next..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|w| w.literal.starts_with(":::"))
        .unwrap_or(rest.len());
    let command = rest.get(..end).unwrap_or_default();
    if command.is_empty() {
        return Peel::Unknown("parallel runs the lines of its input as commands".to_owned());
    }
    let replace = opts.values(&["I", "replace"]).last().unwrap_or("{}").to_owned();
    Peel::Shell(ShellString {
        script: joined("parallel", command),
        via: "parallel".to_owned(),
        adds_args: true,
        replace: Some(replace),
        writes: opts.values(&["joblog", "results"]).map(str::to_owned).collect(),
    })
}

/// Shells whose `-c` string is analysed as a command line of its own.
pub(crate) fn is_shell(program: &str) -> bool {
    matches!(
        program,
        "sh" | "bash" | "zsh" | "dash" | "ksh" | "mksh" | "ash" | "rbash" | "yash" | "posh" | "lksh" | "oksh" | "fish"
    )
}

/// Shells whose syntax is not bash's: a `-c` string is analysed only when
/// it is made of plain words and separators, which they read as bash does.
pub(crate) fn foreign_syntax(program: &str, script: &str) -> Option<String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || " \t\n-_./=:,+@%;|&~".contains(c);
    match program {
        "fish" if !script.chars().all(plain) => {
            Some("fish -c: fish reads quotes, parentheses and variables unlike bash".to_owned())
        }
        // `((` opens an arithmetic command in bash, two subshells in a
        // POSIX sh (dash runs `((rm x))`).
        "sh" | "dash" | "ash" | "posh" | "yash"
            if script
                .match_indices("((")
                .any(|(i, _)| !script.get(..i).is_some_and(|b| b.ends_with('$'))) =>
        {
            Some(format!(
                "{program}: `((` is two subshells in a POSIX shell and arithmetic in bash"
            ))
        }
        // zsh glob qualifiers run code (`*(e:'cmd':)`, `*(+func)`).
        "zsh" if script.contains("(e") || script.contains("(+") || script.contains("=(") => {
            Some("zsh -c: a glob qualifier or =(…) the analysis does not read".to_owned())
        }
        _ => None,
    }
}

/// How a shell was asked to get its commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShellCall {
    /// `-c`: `words[i]` is the command string.
    Command(usize),
    /// No script named: commands come from standard input.
    Stdin,
    /// A script file is run: `words[i]`.
    Script(usize),
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
        if text == "-" {
            // `bash -`: the end of the options, as `--`.
            i += 1;
            break;
        }
        if !(text.starts_with('-') || plus) || text == "+" {
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
        ShellCall::Script(i)
    }
}

/// `su [options] [user]`: the index of the word holding the `-c` command
/// string, if any, and whether it is a login shell (which starts in the
/// user's home directory).
pub(crate) fn su_command(words: &[WordInfo]) -> Result<(Option<usize>, bool), String> {
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
    let mut login = false;
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let text = w.literal.as_str();
        login |= matches!(text, "-" | "-l" | "--login");
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
        other => Ok((other, login)),
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
        assert_eq!(shell_call("sh", &words("sh -x run.sh")), ShellCall::Script(2));
        assert_eq!(shell_call("sh", &words("sh -")), ShellCall::Stdin);
        assert_eq!(shell_call("bash", &words("bash - x.sh")), ShellCall::Script(2));
        assert!(matches!(shell_call("sh", &words("sh -c")), ShellCall::Unknown(_)));
    }
}
