//! Argument definitions and dispatch.

mod actra;
mod approvals;
mod audit;
mod check;
mod hook;
mod init;
mod remote;
mod serve;
mod test;
mod validate;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rein_engine::{LoadError, Policy};
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
#[command(name = "rein", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to colour diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
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
    Explain(check::ExplainArgs),
    /// Run policy test files (`*.test.yaml`): requests with expected
    /// decisions. Prints `N passed, N failed`; exits 1 on any failure.
    Test(test::TestArgs),
    /// Run the decision server: HTTP API for decisions, outcomes, approvals
    /// and the audit log, on the embedded SQLite store.
    Serve(serve::ServeArgs),
    /// Inspect the audit log: verify the hash chain, query, export, and
    /// replay recorded requests under another policy.
    Audit(audit::AuditArgs),
    /// List, grant and deny approvals.
    Approvals(approvals::ApprovalsArgs),
    /// Answer one coding-agent hook event (stdin → stdout): Claude Code,
    /// Codex CLI or Gemini CLI. Tool calls are decided as Rein actions
    /// (shell commands part by part) and recorded; every error is a refusal.
    Hook(hook::HookArgs),
    /// Print the native policy that decides as an Actra schema and policy
    /// do (`--actra-schema SCHEMA --policy POLICY`).
    Convert(actra::ConvertArgs),
    /// Set an agent up to ask Rein before it acts: `rein init claude-code`
    /// writes Rein's hooks into Claude Code's settings.
    Init(init::InitArgs),
}

/// The policy files every deciding command takes.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    /// Policy files or directories (all `.yaml`/`.yml` files below,
    /// except `*.test.yaml`), merged into one policy.
    #[arg(long = "policy", short = 'p', required = true, num_args = 1.., value_name = "POLICY")]
    pub policy: Vec<PathBuf>,
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
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    match cli.command {
        Command::Validate(args) => validate::run(args, color),
        Command::Check(args) => check::run_check(args, color),
        Command::Explain(args) => check::run_explain(args, color),
        Command::Test(args) => test::run(args, color),
        Command::Serve(args) => serve::run(args),
        Command::Audit(args) => audit::run(args, color),
        Command::Approvals(args) => approvals::run(args),
        Command::Hook(args) => hook::run(args),
        Command::Convert(args) => actra::run_convert(args, color),
        Command::Init(args) => init::run(args, color),
    }
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
