//! `rein init cursor`: write Rein's hooks into Cursor's hook configuration,
//! merged into what is there, showing the diff.

use clap::Args;

/// Arguments of `rein init cursor`.
#[derive(Args, Debug)]
pub struct CursorArgs {}

/// Runs `rein init cursor`.
pub fn run(_args: CursorArgs, _color: bool) -> anyhow::Result<u8> {
    anyhow::bail!("rein init cursor is not built yet")
}
