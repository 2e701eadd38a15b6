//! `rein init codex`: write Rein's hooks into Codex's hook configuration,
//! merged into what is there, showing the diff.

use clap::Args;

/// Arguments of `rein init codex`.
#[derive(Args, Debug)]
pub struct CodexArgs {}

/// Runs `rein init codex`.
pub fn run(_args: CodexArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("rein init codex is not built yet")
}
