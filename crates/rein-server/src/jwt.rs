//! JWT bearer tokens verified against configured issuers (`issuers:` in
//! the tokens file): signature by the issuer's keys (a JWKS file, or a
//! JWKS URL fetched and cached), audience, expiry, allowed algorithms,
//! and a claim mapping to the token's role and bound actor fields.
//!
//! (Being built in issue 14: until then no issuer can be configured and
//! every JWT is refused.)

use crate::auth::{AuthRefusal, Identity};
use std::sync::Arc;

/// The configured JWT issuers; none by default.
#[derive(Clone, Debug, Default)]
pub struct Issuers {}

impl Issuers {
    /// Verifies `token` against the issuer its `iss` names.
    pub fn verify(&self, _token: &str) -> Result<Arc<Identity>, AuthRefusal> {
        Err(AuthRefusal::Invalid("no JWT issuer is configured".into()))
    }
}

/// Whether `presented` has the shape of a JWT (three base64url parts).
pub fn looks_like(presented: &str) -> bool {
    let mut parts = 0;
    for part in presented.split('.') {
        parts += 1;
        if part
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return false;
        }
    }
    parts == 3
}
