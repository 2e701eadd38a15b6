//! Argument definitions and dispatch.

mod actra;
mod approvals;
mod audit;
mod check;
mod completions;
mod diff;
mod hook;
mod init;
mod init_codex;
mod init_cursor;
mod init_gemini;
mod init_policy;
mod limits;
mod lint;
mod mcp;
mod mcp_gateway;
mod mcp_wrap;
mod migrate;
mod plan;
mod policy;
mod remote;
mod serve;
mod settings_file;
mod test;
mod token;
mod validate;
mod what_can;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rein_engine::{CacheStatus, LoadError, Policy, PolicyCache};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Exit code for `allow` (and success).
pub const EXIT_ALLOW: u8 = 0;
/// Exit code for `block` (and test failures).
pub const EXIT_BLOCK: u8 = 1;
/// Exit code for usage errors, unreadable input and policies that fail to load.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for `require_approval`.
pub const EXIT_APPROVAL: u8 = 3;

/// Rein: a control plane for AI agents. Policies over typed execution
/// contracts decide whether each action may run.
#[derive(Parser, Debug)]
#[command(
    name = "rein",
    version,
    propagate_version = true,
    after_help = "A first policy: `rein init policy my-policy`, then `rein validate my-policy` and \
                  `rein test my-policy`. Every command has --help."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to colour diagnostics and `rein serve`'s log: `auto` colours
    /// only a terminal, and not when NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

/// The `--color` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    // Plain comments: doc comments here would turn `--help` into a list of
    // the three values on every command.
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether to colour stderr. `auto` follows <https://no-color.org>: a
    /// NO_COLOR that is set and not empty turns colour off.
    pub fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stderr().is_terminal() && !no_color_env(),
        }
    }

    /// The `--color` of a command line, read before clap parses it, so
    /// that clap's own help and errors follow it too (`auto` when absent
    /// or not readable: clap then reports the bad value).
    pub fn from_args(args: &[std::ffi::OsString]) -> Color {
        let mut choice = Color::Auto;
        let mut words = args.iter().skip(1).map(|a| a.to_str().unwrap_or_default());
        while let Some(word) = words.next() {
            if word == "--" {
                break;
            }
            let value = match word.strip_prefix("--color") {
                Some("") => words.next().unwrap_or_default(),
                Some(rest) => match rest.strip_prefix('=') {
                    Some(v) => v,
                    None => continue,
                },
                None => continue,
            };
            choice = match value {
                "always" => Color::Always,
                "never" => Color::Never,
                _ => Color::Auto,
            };
        }
        choice
    }

    /// The same choice for clap's output.
    pub fn for_clap(self) -> clap::ColorChoice {
        match self {
            Color::Auto if no_color_env() => clap::ColorChoice::Never,
            Color::Auto => clap::ColorChoice::Auto,
            Color::Always => clap::ColorChoice::Always,
            Color::Never => clap::ColorChoice::Never,
        }
    }
}

fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load and type-check policy files; print every problem found.
    ///
    /// Exits 0 when the policy loads, 2 otherwise.
    Validate(validate::ValidateArgs),
    /// Decide one request (or a stream of them with --batch) and print the
    /// decision as JSON.
    ///
    /// Exit code: 0 allow, 1 block, 3 require_approval, 2 usage or load
    /// error. With --batch it is 0 once every line was answered.
    Check(check::CheckArgs),
    /// Decide one request and show, rule by rule, what matched and the value
    /// of every sub-expression.
    ///
    /// Exit code: as `check` (0 allow, 1 block, 3 require_approval, 2 usage
    /// or load error).
    Explain(check::ExplainArgs),
    /// Run policy test files (`*.test.yaml`): requests with expected
    /// decisions. Prints `N passed, N failed`; exits 1 on any failure.
    Test(test::TestArgs),
    /// Run the decision server: HTTP API for decisions, outcomes, approvals
    /// and the audit log, on the embedded SQLite store.
    ///
    /// The policy is reloaded on SIGHUP and `POST /v1/policy/reload` (a
    /// policy that does not load is refused; the old one keeps serving).
    /// Each version served (at start, on reload, on rollback) is recorded
    /// in the audit log and its sources kept: `rein policy history`.
    /// `--shadow` decides a candidate policy beside it, recorded and never
    /// answered (docs/shadow.md). Stops cleanly on SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Find what a policy gets wrong without running it. Warnings: rules
    /// that can never match, rules shadowed by others, duplicates,
    /// over-wide allows. Notes: conflicts between allow and block (with an
    /// example input), actions left to the default. Each finding names its
    /// check; `--allow`, `--note`, `--warn` set a check's level (by
    /// default warnings: never-matches, shadowed, duplicate, redundant,
    /// wide-allow; notes: redundant-base, always-default, conflict; off:
    /// approval-conflict). Needs the
    /// Z3 solver (`apt-get install z3`, or `--solver PATH`); questions it
    /// cannot answer in `--solver-timeout` are listed as unknown.
    ///
    /// Exit code: 0 no warning (notes do not count), 1 warnings, 2 usage
    /// or load error, or no solver.
    Lint(lint::LintArgs),
    /// Compare two policies by meaning: per action, example requests whose
    /// decision changes (found by Z3, confirmed by both policies), and the
    /// rules, contracts and defaults that changed.
    ///
    /// Exit code: 0 same decisions (proved), 1 decisions change or may
    /// change, 2 usage or load error, or no solver.
    Diff(diff::DiffArgs),
    /// Before enforcing a new policy: replay recorded traffic under it and
    /// print what would change, per action and rule; fails past the limits
    /// given (`--max-new-blocks`, `--fail-on`), to gate CI.
    ///
    /// Exit code: 0 within every gate, 1 a gate exceeded (named on stderr),
    /// 2 usage error, a policy that does not load, or records that cannot
    /// be read.
    Plan(plan::PlanArgs),
    /// What may this actor do? Every action, for an actor (and snapshot):
    /// always allowed, never, or allowed when a condition over the input
    /// holds, and which need approval.
    ///
    /// Exit codes: 0 answered; 2 the policy did not load, or the actor or
    /// snapshot is not JSON or breaks its contract (the field is named).
    WhatCan(what_can::WhatCanArgs),
    /// The versions a server has served: history, their kept sources
    /// (show), and rollback to one.
    Policy(policy::PolicyCmdArgs),
    /// Inspect the audit log: verify the hash chain, query, export,
    /// replay recorded requests under another policy, and report where
    /// decisions made in shadow differed from the enforced ones.
    Audit(audit::AuditArgs),
    /// List, grant and deny approvals.
    Approvals(approvals::ApprovalsArgs),
    /// Mint delegation tokens for sub-agents through a running `rein
    /// serve` (`rein token delegate`): a parent token's chain plus one
    /// link, with narrower actions, lifetime and bound fields.
    Token(token::TokenArgs),
    /// List and reset the limit buckets of stateful rules (`limit:`): what
    /// each bucket used in its window and when it frees up.
    Limits(limits::LimitsArgs),
    /// Answer one coding-agent hook event (stdin → stdout): Claude Code,
    /// Codex CLI or Gemini CLI. Tool calls are decided as Rein actions
    /// (shell commands part by part) and recorded; every error is a refusal.
    Hook(hook::HookArgs),
    /// The MCP gateway: put Rein between MCP clients and servers, so that
    /// every tool call is decided on its typed arguments (`rein mcp
    /// gateway`), and set it up (`contracts`, `pin`, `wrap`).
    Mcp(mcp::McpArgs),
    /// Copy a SQLite store (audit log, approvals, state, policy versions)
    /// into PostgreSQL for several replicas, verbatim, and verify the copy.
    ///
    /// Exit code: 0 copied and verified, 1 the copy does not match, 2 usage
    /// error or a store that cannot be read or written.
    Migrate(migrate::MigrateArgs),
    /// Print the native policy that decides as an Actra schema and policy
    /// do (`--actra-schema SCHEMA --policy POLICY`).
    Convert(actra::ConvertArgs),
    /// Set a coding agent up to ask Rein before it acts (`rein init
    /// claude-code|codex|gemini|cursor` writes Rein's hooks into the agent's
    /// hook configuration), or start a policy (`rein init policy DIR`).
    Init(init::InitArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or
    /// PowerShell.
    ///
    /// bash: `rein completions bash >
    /// ~/.local/share/bash-completion/completions/rein`; zsh: `rein
    /// completions zsh > ~/.zfunc/_rein` (with `fpath+=(~/.zfunc)` before
    /// `compinit` in ~/.zshrc); fish: `rein completions fish >
    /// ~/.config/fish/completions/rein.fish`. Then open a new shell.
    Completions(completions::CompletionsArgs),
}

/// The policy files every deciding command takes, as arguments or with
/// `--policy` (or both: they are merged); at least one.
#[derive(Args, Debug)]
#[group(id = "policy_files", required = true, multiple = true)]
pub struct PolicyArgs {
    /// Policy files or directories (all `.yaml`/`.yml` files below,
    /// except `*.test.yaml`), merged into one policy.
    #[arg(value_name = "POLICY")]
    given: Vec<PathBuf>,
    /// The same, as an option (any number of times; merged with the
    /// arguments).
    #[arg(long = "policy", short = 'p', num_args = 1.., value_name = "POLICY")]
    flagged: Vec<PathBuf>,
}

impl PolicyArgs {
    /// Every policy path given, arguments first.
    pub fn paths(&self) -> Vec<PathBuf> {
        [self.given.as_slice(), self.flagged.as_slice()].concat()
    }
}

/// Where `check`, `explain` and `test` keep compiled policies between
/// runs: the cache `rein hook` uses.
#[derive(Args, Debug, Default)]
pub struct CacheArgs {
    /// Where compiled policies are kept between runs, keyed by the policy
    /// texts and this executable (an edited file is compiled again).
    /// Default: `$XDG_CACHE_HOME/rein/policies` (or
    /// `~/.cache/rein/policies`), shared with `rein hook`. Policies with
    /// `--governance` or `--actra-schema` are compiled on every run.
    #[arg(long, value_name = "DIR", env = "REIN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile the policy on every run instead of using the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

impl CacheArgs {
    /// The cache chosen; `None` with `--no-cache`, or when there is no
    /// home to keep it in.
    pub fn cache(&self) -> Option<PolicyCache> {
        choose_cache(self.cache_dir.as_deref(), self.no_cache)
    }
}

/// The compiled-policy cache a command uses: none with `no_cache`, `dir`
/// when given, else the default (`None` when there is no home to keep it
/// in). Shared by `rein hook` and [`CacheArgs`].
pub fn choose_cache(dir: Option<&std::path::Path>, no_cache: bool) -> Option<PolicyCache> {
    match (dir, no_cache) {
        (_, true) => None,
        (Some(dir), false) => Some(PolicyCache::new(dir)),
        (None, false) => PolicyCache::default_dir().map(PolicyCache::new),
    }
}

/// Loads native policy files through `cache` when there is one (the
/// compiled policy of exactly these texts, else compiled and stored), as
/// [`Policy::load`] otherwise. Diagnostics are not printed. A cache that
/// could not be used is said on stderr, as `rein hook` does: the policy was
/// compiled, so the decision is the same, only slower.
pub fn load_native(paths: &[PathBuf], cache: Option<&PolicyCache>) -> Result<Policy, LoadError> {
    let Some(cache) = cache else {
        return Policy::load(paths);
    };
    let (policy, status) = cache.load(paths)?;
    if let CacheStatus::Failed(why) = status {
        eprintln!("rein: policy cache: {why}");
    }
    Ok(policy)
}

/// The policy a cache gave (see [`PolicyCache::open`]), after saying on
/// stderr what [`load_native`] says: that the cache could not be used
/// (the policy was compiled, so the decision is the same), then the
/// policy's warnings; or the diagnostics of a policy that did not load
/// (`None`).
pub fn report_cached(result: Result<(Policy, CacheStatus), LoadError>, color: bool) -> Option<Policy> {
    match result {
        Ok((policy, status)) => {
            if let CacheStatus::Failed(why) = status {
                eprintln!("rein: policy cache: {why}");
            }
            print_diagnostics(policy.warnings(), color, Format::Human);
            Some(policy)
        }
        Err(e) => {
            print_diagnostics(e.diagnostics(), color, Format::Human);
            None
        }
    }
}

/// How to print diagnostics.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Source snippets with carets.
    Human,
    /// One JSON object per diagnostic, one per line.
    Json,
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let color = cli.color.enabled();
    match cli.command {
        Command::Validate(args) => validate::run(args, color),
        Command::Check(args) => check::run_check(args, color),
        Command::Explain(args) => check::run_explain(args, color),
        Command::Test(args) => test::run(args, color),
        Command::Serve(args) => serve::run(args, color),
        Command::Lint(args) => lint::run(args, color),
        Command::Diff(args) => diff::run(args, color),
        Command::Plan(args) => plan::run(args, color),
        Command::WhatCan(args) => what_can::run(args, color),
        Command::Policy(args) => policy::run(args, color),
        Command::Audit(args) => audit::run(args, color),
        Command::Approvals(args) => approvals::run(args),
        Command::Limits(args) => limits::run(args),
        Command::Token(args) => token::run(args),
        Command::Hook(args) => hook::run(args),
        Command::Mcp(args) => mcp::run(args, color),
        Command::Migrate(args) => migrate::run(args),
        Command::Convert(args) => actra::run_convert(args, color),
        Command::Init(args) => init::run(args, color),
        Command::Completions(args) => completions::run(args),
    }
}

/// `text` safe to print on a terminal: control characters (newlines,
/// escape sequences) and the Unicode controls that reorder text (bidi
/// overrides and isolates) are shown escaped, `\u{1b}`. Audit records hold
/// what agents sent (action names, actor ids); printed raw, such a value
/// could forge table rows or drive the auditor's terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Loads a policy, printing diagnostics (and warnings) to stderr.
pub fn load_policy(paths: &[PathBuf], color: bool, format: Format) -> Result<Policy, LoadError> {
    let result = Policy::load(paths);
    match &result {
        Ok(p) => print_diagnostics(p.warnings(), color, format),
        Err(e) => print_diagnostics(e.diagnostics(), color, format),
    }
    result
}

fn print_diagnostics(diags: &[rein_engine::Diagnostic], color: bool, format: Format) {
    if diags.is_empty() {
        return;
    }
    match format {
        Format::Human => eprint!("{}", rein_engine::diagnostics::render_all(diags, color)),
        Format::Json => {
            for d in diags {
                eprintln!("{}", d.to_json());
            }
        }
    }
}

/// The first 12 hex digits of a version hash, as the commands print it.
pub(crate) fn short_version(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_what_could_drive_a_terminal() {
        assert_eq!(printable("refund"), "refund");
        assert_eq!(printable("naïve – ok"), "naïve – ok");
        assert_eq!(printable("a\nb"), "a\\u{a}b");
        assert_eq!(printable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(printable("tab\there\r"), "tab\\u{9}here\\u{d}");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(printable("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }
}
