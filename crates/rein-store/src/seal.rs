//! Encryption at rest of what an approver may need to see and the audit
//! log may not keep: the sensitive values of a request waiting for
//! approval.
//!
//! The audit log keeps sensitive fields only as keyed hashes, so a person
//! asked to approve `refund {card: …}` could not see the card. The runtime
//! therefore seals the request's sensitive values with XChaCha20-Poly1305
//! (RustCrypto's `chacha20poly1305`; a random 192-bit nonce per seal, the
//! approval's id as associated data, so a sealed copy moved to another
//! approval does not open) under a key derived from the audit key:
//!
//! ```text
//! seal key = HMAC-SHA256(audit key, "rein/approval-seal/v1")
//! sealed   = "xchacha20poly1305:" + lower-hex(nonce ‖ ciphertext ‖ tag)
//! ```
//!
//! The store keeps the sealed text beside the approval and clears it once
//! the approval is decided or expired; whoever holds the audit key can open
//! it, nobody else learns anything from it.

use crate::chain::hex;
use crate::redact::Redactor;
use crate::StoreError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The prefix of every sealed text.
pub const SEALED_PREFIX: &str = "xchacha20poly1305:";

const NONCE_BYTES: usize = 24;

/// Seals and opens approvers' copies of sensitive values (see the
/// [module documentation](self)).
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("Sealer { .. }")
    }
}

/// `HMAC-SHA256(key, label)`, the redaction MAC of `label`: for values
/// that may be public (the key's fingerprint). Never for a secret key: the
/// audit log holds this MAC of bytes an agent chooses (a refused body is
/// recorded by its keyed hash), so an agent could have it written there.
pub(crate) fn derive(key: &[u8], label: &[u8]) -> [u8; 32] {
    Redactor::new(key).mac(label)
}

/// A secret subkey: `HMAC-SHA256(label, key)`, the audit key as the
/// message under the label as key (HKDF-Extract's form), which no redaction
/// MAC (keyed by the audit key) can produce.
fn subkey(key: &[u8], label: &[u8]) -> [u8; 32] {
    Redactor::new(label).mac(key)
}

/// A fingerprint of the audit key, safe to store beside what it protects:
/// `"hmac-sha256:" + lower-hex(HMAC-SHA256(key, "rein/audit-key-fingerprint/v1"))`.
/// Equal keys give equal fingerprints; the key cannot be found from it.
pub fn key_fingerprint(key: &[u8]) -> String {
    format!(
        "{}{}",
        crate::redact::REDACTED_PREFIX,
        hex(&derive(key, b"rein/audit-key-fingerprint/v1"))
    )
}

impl Sealer {
    /// A sealer keyed from the audit key.
    pub fn new(audit_key: &[u8]) -> Sealer {
        let key = subkey(audit_key, b"rein/approval-seal/v1");
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Seals `value` (its JSON text) for the approval `id`.
    pub fn seal(&self, id: &str, value: &serde_json::Value) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| StoreError(format!("the system random generator failed: {e}")))?;
        let plain = serde_json::to_vec(value).map_err(|e| StoreError(format!("cannot encode the values: {e}")))?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| StoreError("the values could not be sealed".into()))?;
        let mut out = String::with_capacity(SEALED_PREFIX.len() + 2 * (NONCE_BYTES + sealed.len()));
        out.push_str(SEALED_PREFIX);
        out.push_str(&hex(&nonce));
        out.push_str(&hex(&sealed));
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] sealed for approval `id`. Fails if the
    /// text was altered, sealed for another approval or under another key.
    pub fn open(&self, id: &str, sealed: &str) -> Result<serde_json::Value, StoreError> {
        let bad = || {
            StoreError(format!(
                "the sealed values of approval `{id}` do not open (altered, or another key)"
            ))
        };
        let hex_text = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(bad)?;
        let bytes = unhex(hex_text).ok_or_else(bad)?;
        if bytes.len() < NONCE_BYTES {
            return Err(bad());
        }
        let (nonce, body) = bytes.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        serde_json::from_slice(&plain).map_err(|_| bad())
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn seals_and_opens_only_for_its_approval_and_key() {
        let s = Sealer::new(b"an audit key of some length");
        let v = json!({"input": {"card": "4111 1111 1111 1111"}});
        let sealed = s.seal("ap-1", &v).unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("4111"));
        assert_eq!(s.open("ap-1", &sealed).unwrap(), v);
        assert_ne!(s.seal("ap-1", &v).unwrap(), sealed, "a fresh nonce each time");
        assert!(s.open("ap-2", &sealed).is_err(), "bound to its approval");
        assert!(Sealer::new(b"another key").open("ap-1", &sealed).is_err());
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        assert!(s.open("ap-1", &String::from_utf8(altered).unwrap()).is_err());
        assert!(s.open("ap-1", "xchacha20poly1305:zz").is_err());
        assert!(s.open("ap-1", "plain").is_err());
    }

    /// The audit log holds the redaction MAC of any bytes an agent sends
    /// (a refused body is recorded by its keyed hash): the seal key must
    /// not be such a MAC, or an agent sending the label as a body would
    /// have the key written into the log.
    #[test]
    fn the_seal_key_is_no_mac_an_agent_can_have_recorded() {
        let key = b"an audit key of some length";
        let sealed = Sealer::new(key).seal("ap-1", &json!({"card": "4111"})).unwrap();
        let recorded = Redactor::new(key).mac(b"rein/approval-seal/v1");
        let forged = Sealer {
            cipher: XChaCha20Poly1305::new(&recorded.into()),
        };
        assert!(forged.open("ap-1", &sealed).is_err());
    }

    #[test]
    fn fingerprints_tell_keys_apart_and_hide_them() {
        let a = key_fingerprint(&[1; 32]);
        assert_eq!(a, key_fingerprint(&[1; 32]));
        assert_ne!(a, key_fingerprint(&[2; 32]));
        assert!(!a.contains(&hex(&[1; 32])));
        assert_eq!(format!("{:?}", Sealer::new(b"k")), "Sealer { .. }");
    }
}
