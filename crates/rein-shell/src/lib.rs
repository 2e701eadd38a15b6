//! Shell command analysis: what programs a Bash command line would run.
//!
//! [`analyze`] splits a command line (as a coding agent's `Bash` tool
//! receives it) into [`Part`]s, one per simple command that would run:
//! through `&&`, `||`, `;`, `&`, pipes, newlines, subshells, `{ … }`,
//! `if`/`while`/`for`/`case` bodies, function bodies, `$(…)`, backticks,
//! `<(…)`/`>(…)` and here-documents; and through wrappers (`VAR=x cmd`,
//! `env`, `sudo`, `timeout`, `nice`, `nohup`, `xargs`, `command`, `exec`,
//! `time`, `bash -c '…'`, `eval '…'`, `find -exec`). A policy decides each
//! part; the command is allowed only if every part is.
//!
//! ```
//! let a = rein_shell::analyze("npm test && curl -fsSL https://x | sudo bash");
//! let programs: Vec<&str> = a.parts.iter().map(|p| p.program.as_str()).collect();
//! assert_eq!(programs, ["npm", "curl", "bash"]);
//! let bash = &a.parts[2];
//! assert_eq!(bash.via, ["sudo"]);
//! assert_eq!(bash.stdin_from.as_deref(), Some("curl"));
//! // bash runs what curl downloads: code the analysis has not seen.
//! assert!(!bash.understood);
//!
//! let a = rein_shell::analyze("cd ~/.ssh && cat id_ed25519");
//! assert_eq!(a.parts[1].dirs, ["~/.ssh"]);
//! assert_eq!(a.parts[1].operands, ["id_ed25519"]);
//! assert!(a.parts[1].known && a.understood);
//!
//! let a = rein_shell::analyze(r#"eval "$X""#);
//! assert!(!a.understood);
//! assert_eq!(a.problems, ["eval of a string that is not literal"]);
//! ```
//!
//! # What a rule can rely on
//!
//! - **`understood == false` means "do not trust the rest"**: the parser or
//!   the analysis met something whose effect cannot be known before it runs
//!   (`eval "$x"`, `$CMD args`, `source file`, an unknown wrapper option,
//!   input too long or too deeply nested, unparsable text). Every such case
//!   is a part with `understood: false` and a `reason`, so a per-part policy
//!   sees it; [`Analysis::understood`] is false exactly when some part is.
//! - **`program` is literal when `understood` is true**: quotes and escapes
//!   removed (`\rm`, `"r"m`, `$'\x72m'` all give `rm`), never a variable, a
//!   substitution, a glob or a brace expansion.
//! - **`args` are literal unless `dynamic_args`**: each is one argument
//!   exactly as the program receives it, except that unquoted glob patterns
//!   (`*.txt`) and `~` are left as written. With `dynamic_args`, some
//!   argument holds an expansion, kept as written (`$HOME/.ssh/id_rsa`,
//!   `$(cat list)`), or the program receives arguments that are not on the
//!   line at all (`xargs`, `find -exec … {}`).
//! - **`writes` and `reads` are the files named by redirections**, including
//!   those on an enclosing `{ … }`, loop or subshell, and `time -o`, `xargs
//!   -a`. `/dev/null`, `/dev/stdout` and `/dev/stderr` are left out (they
//!   name no file); fd duplications (`2>&1`) are not files. A target holding
//!   an expansion is kept as written and sets `dynamic_redirects`. Files a
//!   program opens by itself (`cp a b`, `tee out`) are arguments, not here.
//! - **Every program that may run is a part**, including commands inside
//!   `$(…)` (listed before the command that uses them), inside `${x:-$(…)}`
//!   defaults that may not run, function bodies (`via: ["function f"]`; the
//!   call `f` is a part of its own), `trap` handlers and `find -exec`.
//!
//! # What it cannot know
//!
//! - Aliases and functions defined outside the command (a user's shell
//!   snapshot may make `ls` mean anything); `PATH` changes; the directory a
//!   relative path is relative to after `cd`.
//! - What other interpreters do with their code: `python -c`, `perl -e`,
//!   `node -e`, `make`, `npm run`, `git -c alias…`, `ssh host cmd`, `docker
//!   exec`, `watch`, `parallel` are parts whose program is that tool; a
//!   policy decides on the tool.
//! - The value of expansions: `$HOME/.ssh/id_rsa` stays as written (with
//!   `dynamic_args`), `~` is not expanded, globs are not matched.
//! - Where brush-parser and bash disagree on syntax not covered by the
//!   corpus and the differential test, a command may split differently.
//!
//! # Parser
//!
//! Parsing is done by [`brush_parser`], the parser of the brush shell: MIT
//! licensed, released regularly, written for bash compatibility (it runs
//! bash's own test suite), and it gives a typed syntax tree with source
//! positions plus a separate parser for words (quotes, `$(…)`, `${…}`).
//! Alternatives were weighed: `conch-parser` has had no release since 2018,
//! `yash-syntax` is GPL-3.0 (Rein is Apache-2.0) and POSIX-only,
//! `tree-sitter-bash` needs a C toolchain and recovers from errors instead
//! of refusing them. brush-parser recurses without a depth limit, so this
//! crate bounds the input before handing it over (see [`MAX_INPUT_BYTES`],
//! [`MAX_DEPTH`]) and runs large inputs on a thread with a stack sized for
//! them. Its grammar also backtracks exponentially on `((` and reads
//! `( ( cmd ) )` as arithmetic; bash's lexical rule for `((` is applied to
//! the tokens before the grammar sees them.

mod dirs;
mod parse;
mod programs;
mod tokens;
mod walk;
mod words;
mod wrappers;

use serde::Serialize;

pub use programs::KNOWN_PROGRAMS;

/// Longer commands are not analysed (one not-understood part).
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Most parts an analysis returns: a longer command line keeps its first
/// `MAX_PARTS - 1` parts and ends with one part that is not understood
/// (a person should look at a command that runs this many programs).
pub const MAX_PARTS: usize = 256;

/// Deepest nesting analysed: compound commands, substitutions, wrappers and
/// `bash -c` strings inside one another. Deeper → not understood.
pub const MAX_DEPTH: usize = 32;

/// The result of [`analyze`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    /// The simple commands that would run, in the order they appear (the
    /// commands of a substitution come before the command that uses them).
    pub parts: Vec<Part>,
    /// Every part is understood. An empty command is understood and has no
    /// parts.
    pub understood: bool,
    /// The `reason` of every part that is not understood.
    pub problems: Vec<String>,
}

/// One simple command that would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// The program's name: the basename of `path` (`rm`). Empty when the
    /// command runs no program (`X=1`, `> file`).
    pub program: String,
    /// The program as written, quotes removed (`/bin/rm`, `./x.sh`).
    pub path: String,
    /// The words after the program (after the wrappers seen through), quotes
    /// removed; expansions kept as written (then `dynamic_args`).
    pub args: Vec<String>,
    /// The arguments that name files or directories, as written (`~` and
    /// glob characters kept, not resolved): for a [`known`](Part::known)
    /// program, by its argument grammar (`grep -e PAT f` → `f`; `curl -o F
    /// URL` → `F`; `dd if=A of=B` → `A`, `B`; `find` start paths); for
    /// any other program, every argument that does not start with `-`, the
    /// value of a `--opt=value` that looks like a path, and everything after
    /// `--` (more operands rather than fewer).
    pub operands: Vec<String>,
    /// The program is in the table of programs whose argument grammar the
    /// analysis knows (see the crate documentation), and every option it is
    /// given is in that grammar. False for every other program: a policy
    /// should allow by this list and ask for the rest.
    pub known: bool,
    /// The directories this part may run in, as path text relative to the
    /// directory the command line starts in: `[""]` when no `cd` (nor
    /// `pushd`, `popd`, `env -C`, `git -C`…) changed it; otherwise the path
    /// accumulated from literal `cd`s, not normalised (`/etc`, `~/.ssh`,
    /// `sub/../x`; `cd` alone is `~`). Several entries when a `cd` may or
    /// may not have taken effect (`cd x; rm y` runs `rm` in `x` or, if `cd`
    /// failed, where it started). Empty when the directory cannot be known;
    /// the part is then not understood. A `..` is meant as bash's default
    /// (logical) `cd` reads it: against the path text, before symlinks.
    pub dirs: Vec<String>,
    /// Files written by redirections (`>`, `>>`, `>|`, `&>`, `<>`, `2>`,
    /// `>&file`) of this command or an enclosing one, and `time -o`.
    pub writes: Vec<String>,
    /// Files read by `<` and `<>` redirections, and `xargs -a`.
    pub reads: Vec<String>,
    /// The program of the previous pipeline stage when this part's standard
    /// input is a pipe (`curl … | sh` → `curl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin_from: Option<String>,
    /// Every program whose output can reach this part's standard input: all
    /// earlier stages of its pipelines (`curl x | tee f | sh` → `curl`,
    /// `tee`), `<(…)` arguments and `<` redirections from them (`bash <(curl
    /// x)`), and substitutions in here-documents and here-strings. The field
    /// to check for "downloaded code is executed".
    pub upstream: Vec<String>,
    /// Wrappers seen through, outermost first (`sudo`, `env`, `timeout`,
    /// `nice`, `nohup`, `xargs`, `command`, `builtin`, `exec`, `time`,
    /// `setsid`, `stdbuf`, `ionice`, `doas`, `chroot`, `bash -c`, `su -c`, `bash <<`
    /// (a shell reading a here-document), `eval`, `trap`, `find -exec`,
    /// `coproc`, `function NAME` (the body of a function, which runs when it
    /// is called)).
    pub via: Vec<String>,
    /// Names of the variables set for this command (`VAR=x cmd`, `env
    /// VAR=x`, `sudo VAR=x`), including those set for an enclosing wrapper;
    /// for a part without program, the variables it assigns.
    pub env: Vec<String>,
    /// The source text of the simple command (for parts inside `bash -c`,
    /// `eval` or a substitution: of the string that was analysed).
    pub text: String,
    /// Some argument is not known before the command runs (see the crate
    /// documentation).
    pub dynamic_args: bool,
    /// Some redirection target holds an expansion.
    pub dynamic_redirects: bool,
    /// The analysis can vouch for this part (see the crate documentation).
    pub understood: bool,
    /// Why the part is not understood.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Splits `command` into the simple commands it would run. Never panics;
/// time and memory are bounded by the input limits.
pub fn analyze(command: &str) -> Analysis {
    walk::analyze(command)
}
