//! Rein's policy engine: execution contracts, the native policy language,
//! its type checker and compiled evaluator.
//!
//! The pipeline is a chain of types: source text → [`syntax`] (spanned
//! YAML and CEL trees) → [`ast`] (untyped policy) → `check` (contracts
//! resolved, every condition type-checked for every action it targets) →
//! the compiled IR (private, indexed by action) → [`Policy::decide`] →
//! [`Decision`]. Nothing here does I/O except [`Policy::load`] and the
//! test-file runner reading files; deciding reads no clock and keeps no
//! state.
//!
//! ```
//! use rein_engine::{Effect, Policy, Request};
//! use serde_json::json;
//!
//! let policy = Policy::from_yaml_str(r#"
//! contracts:
//!   actions:
//!     refund:
//!       input: {amount: {type: number, min: 0}}
//! rules:
//!   - id: small_refunds
//!     action: refund
//!     when: input.amount <= 100
//!     effect: allow
//! "#).unwrap();
//! let d = policy.decide(&Request::new("refund").input(json!({"amount": 50})));
//! assert_eq!(d.effect(), Effect::Allow);
//! let d = policy.decide(&Request::new("refund").input(json!({"amount": 500})));
//! assert_eq!(d.effect(), Effect::Block); // default of the default: block
//! ```

#![deny(missing_docs)]

pub mod actra;
pub mod analysis;
pub mod ast;
mod cache;
mod check;
pub mod compare;
mod contract;
mod decision;
pub mod diagnostics;
mod eval;
mod flat;
mod globs;
mod governance;
mod instant;
mod ir;
pub mod json;
mod memory_state;
pub mod partial;
mod policy;
mod request;
mod request_text;
pub mod source;
mod sources;
pub mod state;
mod state_eval;
pub mod syntax;
pub mod testing;
mod types;
mod value;

pub use ast::{Effect, Phase};
pub use cache::{CacheStatus, Opened, PolicyCache, PolicyEntry};
pub use contract::{ContractValue, Node, Violation};
pub use decision::{Basis, Decision, MatchedRule, Obligation, RuleError, ShadowRules};
pub use diagnostics::{Diagnostic, LoadError, Severity};
pub use eval::normalize_path;
pub use ir::Approval;
pub use memory_state::{
    BucketStatus, Hasher, MemoryState, SessionLabel, SessionSnapshot, StateSize, STATE_FORMAT_VERSION,
};
pub use partial::{ActionAnswer, CompiledResidual, Residual, Status, WhatCan};
pub use policy::{ContractField, Explanation, Outcome, Policy, Prepared, RuleTrace, Step, MAX_POLICY_FILE_BYTES};
pub use request::{Request, RequestError};
pub use sources::PolicySource;
pub use state::{ActionState, LimitInfo, LimitKind, StateEffects, StateView};
