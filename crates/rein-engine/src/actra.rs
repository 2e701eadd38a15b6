//! Actra compatibility: Actra's schema, policy and governance files, read
//! unchanged and decided as Actra 0.7.8 decides them, by the same
//! evaluator as native policies.
//!
//! - [`Policy::load_actra`] and [`Policy::from_actra_strs`] load the three
//!   files; [`Policy::decide_actra`] takes Actra's request shape,
//!   `{"action": {"type": "refund", "amount": 200}, "actor": {...},
//!   "snapshot": {...}}`.
//! - [`convert`] prints the equivalent native policy.
//!
//! The reader ([`read`]) accepts what Actra accepts; the checker
//! (`check`) applies Actra's compile-time rules; lowering (`lower`) turns
//! the result into Rein's tree with
//! [`Combining::FirstMatch`](crate::ast::Combining::FirstMatch), so
//! decisions come from the one compiled evaluator. The deliberate
//! differences from Actra are listed, with their reasons, in
//! `docs/actra-compat.md`.

pub(crate) mod ast;
mod check;
mod convert;
pub(crate) mod input;
mod lower;
pub(crate) mod read;
pub(crate) mod scalars;
#[cfg(test)]
mod tests;

pub use convert::{convert, convert_strs, Conversion};

use crate::diagnostics::{Diagnostic, LoadError, Severity};
use crate::governance::{self, Mode, RuleView, ViewScope};
use crate::ir::CompiledPolicy;
use crate::policy::Policy;
use crate::source::SourceFile;
use ast::{Operand, PolicyDoc, Scope};
use std::path::Path;

/// Knobs for Rein's own differential tests against Actra; not part of the
/// stable API.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Count right-hand field references in governance (Rein's behaviour,
    /// the default); `false` reproduces Actra's left-hand-only view.
    pub governance_right_hand: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            governance_right_hand: true,
        }
    }
}

/// Reads, checks and compiles Actra files. Diagnostics (warnings too) are
/// returned either way.
pub(crate) fn compile(
    schema: &SourceFile,
    policy: &SourceFile,
    governance: Option<&SourceFile>,
    options: Options,
) -> (Option<CompiledPolicy>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let s = read::read_schema(schema, &mut diags);
    let p = read::read_policy(policy, &mut diags);
    let g = governance.map(|g| governance::read(g, &mut diags));
    if let (Some(s), Some(p)) = (&s, &p) {
        check::check(s, p, &mut diags);
    }
    if let (Some(p), Some(Some(g))) = (&p, &g) {
        let mode = Mode {
            right_hand_reads: options.governance_right_hand,
            native: false,
        };
        governance::enforce(g, &views(p), mode, &mut diags);
    }
    let has_errors = |d: &[Diagnostic]| d.iter().any(|d| d.severity == Severity::Error);
    let (Some(s), Some(p)) = (s, p) else {
        return (None, diags);
    };
    // Errors were reported; the reader only kept what it could read.
    if has_errors(&diags) {
        return (None, diags);
    }
    let files = lower::lower(&s, &p);
    let compiled = crate::check::compile(&files, &mut diags);
    if has_errors(&diags) {
        return (None, diags);
    }
    (compiled, diags)
}

/// The policy's rules as governance sees them: Actra's view has the
/// left-hand subjects on one side and `value.subject` on the other.
fn views(p: &PolicyDoc) -> Vec<RuleView> {
    p.rules
        .iter()
        .map(|r| {
            let scope = match &r.scope.value {
                Scope::Action(a) => ViewScope::Actions(vec![a.value.clone()]),
                Scope::Global(true) => ViewScope::Global,
                Scope::Global(false) => ViewScope::Actions(Vec::new()),
                Scope::Actor(_) => ViewScope::Actor,
            };
            let atoms = r.when.atoms();
            let pair = |s: &ast::Subject| (s.domain.value.clone(), s.field.value.clone());
            RuleView {
                id: r.id.value.clone(),
                effect: r.effect.value,
                scope,
                left: atoms.iter().map(|a| pair(&a.subject)).collect(),
                right: atoms
                    .iter()
                    .filter_map(|a| match &a.value {
                        Operand::Subject(s) => Some(pair(s)),
                        _ => None,
                    })
                    .collect(),
                file: p.source.clone(),
                span: r.id.span,
            }
        })
        .collect()
}

/// Loads Actra files from text (named `schema.yaml`, `policy.yaml` and
/// `governance.yaml` in diagnostics), with explicit options.
#[doc(hidden)]
pub fn load_strs_with(
    schema: &str,
    policy: &str,
    governance: Option<&str>,
    options: Options,
) -> Result<Policy, LoadError> {
    let schema = SourceFile::new("schema.yaml", schema);
    let policy = SourceFile::new("policy.yaml", policy);
    let governance = governance.map(|g| SourceFile::new("governance.yaml", g));
    Policy::from_actra_sources(&schema, &policy, governance.as_ref(), options)
}

/// Reads one file named on the command line, as a source.
pub(crate) fn read_source(path: &Path, diags: &mut Vec<Diagnostic>) -> Option<SourceFile> {
    if path.is_dir() {
        diags.push(Diagnostic::general(format!(
            "`{}` is a directory; Actra's schema, policy and governance are single files",
            path.display()
        )));
        return None;
    }
    let before = diags.len();
    let mut files = crate::policy::read_files(&[path], diags);
    if diags.len() > before {
        return None;
    }
    files.pop()
}
