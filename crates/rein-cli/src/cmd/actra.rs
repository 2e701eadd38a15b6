//! Actra files on the command line: the `--actra-schema` and
//! `--governance` options of `validate`, `check` and `explain`, and
//! `rein convert`.

use super::{print_diagnostics, Format, EXIT_ALLOW, EXIT_USAGE};
use clap::Args;
use rein_engine::{LoadError, Policy, PolicyCache};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options that switch a command to Actra's files, or add governance.
#[derive(Args, Debug, Default)]
pub struct ActraArgs {
    /// Read `--policy` as an Actra policy with this Actra schema file; the
    /// request is then in Actra's shape, `{"action": {"type": ..., ...},
    /// "actor": {...}, "snapshot": {...}}`.
    #[arg(long, value_name = "SCHEMA")]
    pub actra_schema: Option<PathBuf>,
    /// A governance file (Actra's format) enforced on the policy's rules
    /// when it loads; works for native policies too.
    #[arg(long, value_name = "GOVERNANCE")]
    pub governance: Option<PathBuf>,
}

impl ActraArgs {
    /// True when the policy is Actra's.
    pub fn is_actra(&self) -> bool {
        self.actra_schema.is_some()
    }
}

/// Loads the policy the options describe, printing diagnostics (and
/// warnings) to stderr.
pub fn load(policy: &[PathBuf], actra: &ActraArgs, color: bool, format: Format) -> anyhow::Result<Policy> {
    load_cached(policy, actra, None, color, format)
}

/// As [`load`], a native policy without governance through `cache` (the
/// cache keys only the policy files' texts).
pub fn load_cached(
    policy: &[PathBuf],
    actra: &ActraArgs,
    cache: Option<&PolicyCache>,
    color: bool,
    format: Format,
) -> anyhow::Result<Policy> {
    let result: Result<Policy, LoadError> = match (&actra.actra_schema, &actra.governance) {
        (Some(schema), gov) => match policy {
            [one] => Policy::load_actra(schema, one, gov.as_deref()),
            _ => anyhow::bail!(
                "an Actra policy is one file: give exactly one `--policy` with `--actra-schema` (got {})",
                policy.len()
            ),
        },
        (None, Some(gov)) => Policy::load_governed(policy, gov),
        (None, None) => super::load_native(policy, cache),
    };
    match result {
        Ok(p) => {
            print_diagnostics(p.warnings(), color, format);
            Ok(p)
        }
        Err(e) => {
            print_diagnostics(e.diagnostics(), color, format);
            Err(LoadFailed(e.error_count()).into())
        }
    }
}

/// The policy did not load; its diagnostics were printed already.
#[derive(Debug)]
pub struct LoadFailed(pub usize);

impl std::fmt::Display for LoadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        write!(
            f,
            "the policy did not load ({n} error{})",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for LoadFailed {}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("actra_policy").required(true).args(["policy", "policy_flag"])))]
pub struct ConvertArgs {
    /// The Actra schema file.
    #[arg(long, value_name = "SCHEMA")]
    actra_schema: PathBuf,
    /// The Actra policy file (one; as an argument or with --policy).
    #[arg(value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// The same, as an option.
    #[arg(long = "policy", short = 'p', id = "policy_flag", value_name = "POLICY")]
    policy_flag: Option<PathBuf>,
    /// Write the native policy to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// How to print diagnostics (on stderr).
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// `rein convert`: prints the native policy equivalent to Actra files.
pub fn run_convert(args: ConvertArgs, color: bool) -> anyhow::Result<u8> {
    // The group above requires exactly one of the two forms.
    let Some(policy) = args.policy.as_ref().or(args.policy_flag.as_ref()) else {
        anyhow::bail!("give the Actra policy file");
    };
    match rein_engine::actra::convert(&args.actra_schema, policy) {
        Ok(c) => {
            print_diagnostics(&c.warnings, color, args.format);
            write_output(args.output.as_deref(), &c.text)?;
            Ok(EXIT_ALLOW)
        }
        Err(e) => {
            print_diagnostics(e.diagnostics(), color, args.format);
            if args.format == Format::Human {
                let n = e.error_count();
                eprintln!(
                    "error: nothing was converted ({n} error{})",
                    if n == 1 { "" } else { "s" }
                );
            }
            Ok(EXIT_USAGE)
        }
    }
}

fn write_output(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            Ok(())
        }
    }
}
