//! `rein init policy`: a starter policy and its test file, to edit.

use super::EXIT_ALLOW;
use anyhow::{bail, Context};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The files written, with their text. The policy passes `rein validate`
/// and its cases pass `rein test` (checked by the tests of this crate).
const FILES: [(&str, &str); 2] = [
    ("policy.yaml", include_str!("../../templates/policy/policy.yaml")),
    (
        "policy.test.yaml",
        include_str!("../../templates/policy/policy.test.yaml"),
    ),
];

#[derive(Args, Debug)]
pub struct InitPolicyArgs {
    /// Directory to write `policy.yaml` and `policy.test.yaml` into
    /// (created if missing).
    #[arg(value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Replace the files if they exist (by default an existing file is
    /// left alone and nothing is written).
    #[arg(long)]
    force: bool,
}

/// Writes the starter files, all or none: an existing one stops the
/// command before anything is written (unless `--force`).
pub fn run(args: InitPolicyArgs) -> anyhow::Result<u8> {
    let targets: Vec<(PathBuf, &str)> = FILES.iter().map(|(name, text)| (args.dir.join(name), *text)).collect();
    if !args.force {
        let existing: Vec<String> = targets
            .iter()
            .filter(|(path, _)| path.symlink_metadata().is_ok())
            .map(|(path, _)| format!("`{}`", path.display()))
            .collect();
        if !existing.is_empty() {
            bail!(
                "{} already exist{}; nothing written (--force replaces {})",
                existing.join(" and "),
                if existing.len() == 1 { "s" } else { "" },
                if existing.len() == 1 { "it" } else { "them" },
            );
        }
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    for (path, text) in &targets {
        write(path, text, args.force)?;
    }
    let dir = args.dir.display();
    let mut out = std::io::stdout().lock();
    writeln!(out, "wrote {dir}/policy.yaml and {dir}/policy.test.yaml")?;
    writeln!(
        out,
        "next: `rein validate {dir}` type-checks the policy, `rein test {dir}` runs its cases"
    )?;
    Ok(EXIT_ALLOW)
}

/// Writes `text` to `path` as a new file; without `force`, only if nothing
/// is there (a file created since the check above is not replaced either).
/// With `force` an existing file is removed first, so that a symbolic link
/// there is replaced, not written through.
fn write(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    if force {
        match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => bail!("`{}` is a directory; nothing replaced", path.display()),
            Ok(_) => std::fs::remove_file(path).with_context(|| format!("cannot replace `{}`", path.display()))?,
            Err(_) => {}
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}
