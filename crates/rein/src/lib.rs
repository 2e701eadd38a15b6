//! Rein: a control plane for AI agents.
//!
//! Every governed action has a typed contract; declarative policies over
//! the action, the actor and a snapshot of external state decide `allow`,
//! `block` or `require_approval`. This crate is the stable entry point; it
//! re-exports the engine's public API.
//!
//! ```
//! use rein::{Effect, Policy, Request};
//! use serde_json::json;
//!
//! let policy = Policy::from_yaml_str(r#"
//! default: allow
//! contracts:
//!   actor: {role: {type: enum, values: [agent, admin]}}
//!   actions:
//!     refund:
//!       input: {amount: {type: number, min: 0}}
//! rules:
//!   - id: large_refund
//!     action: refund
//!     when: input.amount > 1000 && actor.role != "admin"
//!     effect: block
//!     reason: refunds over 1000 need an admin
//! "#)?;
//! let request = Request::new("refund")
//!     .input(json!({"amount": 1500}))
//!     .actor(json!({"role": "agent"}));
//! let decision = policy.decide(&request);
//! assert_eq!(decision.effect(), Effect::Block);
//! assert_eq!(decision.rules(), ["large_refund"]);
//! # Ok::<(), rein::LoadError>(())
//! ```

#![deny(missing_docs)]

pub use rein_engine::{
    normalize_path, Approval, Basis, Decision, Diagnostic, Effect, Explanation, LoadError, Obligation, Outcome, Phase,
    Policy, Prepared, Request, RequestError, RuleError, RuleTrace, Severity, Step, Violation,
};

/// Policy test files (`rein test`): parse and run them from code.
pub mod testing {
    pub use rein_engine::testing::*;
}

/// The enforcement runtime (feature `runtime`, on by default): decisions
/// recorded in the audit log before they are answered, approvals, outcomes
/// and replay, over a [`store`].
#[cfg(feature = "runtime")]
pub mod runtime {
    pub use rein_runtime::*;
}

/// What the runtime keeps: the hash-chained audit log and approvals, with
/// the embedded SQLite backend (feature `runtime`).
#[cfg(feature = "runtime")]
pub mod store {
    pub use rein_store::*;
}
