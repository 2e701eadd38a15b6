//! Contracts from tools: each tool's `inputSchema` and `outputSchema`
//! (JSON Schema) become the contract of action `mcp.<server>.<tool>`,
//! written as policy YAML, with the tool's facts (`tool.server`,
//! `tool.name`, `tool.annotations`) as the action's `tool` constants.
//! What cannot be mapped is reported, never dropped in silence.
//!
//! (Owner: contracts helper. Interface fixed; body to be written.)

use crate::catalog::Catalog;

/// The contracts derived for one server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Derived {
    /// Policy YAML holding only `contracts.actions` (and, when the first
    /// server, nothing else): load it as a derived source, which yields to
    /// any contract the policy declares itself.
    pub yaml: String,
    /// The actions it declares, sorted.
    pub actions: Vec<String>,
    /// What could not be mapped.
    pub unmapped: Vec<Unmapped>,
}

/// One part of a tool's schemas that has no Rein contract equivalent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmapped {
    /// The tool.
    pub tool: String,
    /// Where: `input.path`, `output.items[]`, or empty for the whole tool.
    pub path: String,
    /// What and what follows from it, e.g. "`anyOf` is not supported; a
    /// call that sets this field is refused (declare the contract in the
    /// policy to allow it)".
    pub reason: String,
}

/// Derives the contracts of every tool of `server`.
pub fn derive(server: &str, catalog: &Catalog) -> Derived {
    let _ = (server, catalog);
    todo!("contracts helper")
}
