//! Delegation tokens: minted by this server for a sub-agent from a
//! parent credential (`POST /v1/tokens/delegate`, `rein token delegate`),
//! signed with the server's Ed25519 key, narrowing the parent's actions,
//! lifetime and bound fields, and extending its chain by one link.
//!
//! (Being built in issue 14: until then no delegation token is accepted.)

use crate::auth::{AuthRefusal, Identity, Tokens};
use std::sync::Arc;

/// The prefix of every delegation token, so that one is never taken for
/// a JWT of another issuer or for a static token.
pub const PREFIX: &str = "rein_d1.";

/// Verifies delegation tokens (the server's public key).
#[derive(Clone, Debug, Default)]
pub struct Verifier {}

impl Verifier {
    /// Verifies `token`, whose parent credentials must still be accepted
    /// by `tokens`.
    pub fn verify(&self, _token: &str, _tokens: &Tokens) -> Result<Arc<Identity>, AuthRefusal> {
        Err(AuthRefusal::Invalid(
            "delegation tokens are not enabled on this server".into(),
        ))
    }
}

/// Whether `presented` is meant as a delegation token.
pub fn looks_like(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}
