//! `rein init gemini`: write Rein's hooks into Gemini's hook configuration,
//! merged into what is there, showing the diff.

use clap::Args;

/// Arguments of `rein init gemini`.
#[derive(Args, Debug)]
pub struct GeminiArgs {}

/// Runs `rein init gemini`.
pub fn run(_args: GeminiArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("rein init gemini is not built yet")
}
