//! Keyed hashing of sensitive fields before anything is stored.
//!
//! A contract marks fields as sensitive (`input.card`, `actor.email`,
//! `input.lines[].secret`); the runtime replaces each such field, wherever
//! it occurs in a request, by
//!
//! ```text
//! "hmac-sha256:" + lower-hex( HMAC-SHA256(key, canonical JSON of the original value) )
//! ```
//!
//! (canonical JSON as in [`crate::chain::canonical_value`]: keys sorted, no
//! whitespace). The same value under the same key always gives the same
//! text, so equality queries and grouping still work on redacted logs, but
//! the clear value is never stored, and without the key one cannot test
//! guesses against the log. Keep the key secret and stable: a new key makes
//! new hashes that no longer equal the old ones.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::chain::{canonical_value, hex};

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every redacted value.
pub const REDACTED_PREFIX: &str = "hmac-sha256:";

/// HMAC's block size for SHA-256, in bytes.
const BLOCK: usize = 64;

/// Replaces sensitive fields by keyed hashes (see the
/// [module documentation](self)). Cheap to share: it holds only the keyed
/// HMAC state.
#[derive(Clone)]
pub struct Redactor {
    /// The HMAC state after absorbing the key; cloned for every value.
    mac: HmacSha256,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("Redactor { .. }")
    }
}

impl Redactor {
    /// A redactor keyed with `key` (any length; at least 32 random bytes
    /// is the sensible choice).
    pub fn new(key: &[u8]) -> Self {
        // HMAC's own key preparation (RFC 2104): a key longer than the block
        // is first hashed, then the key is zero-padded to the block. Done
        // here so that construction goes through the infallible
        // fixed-length `KeyInit::new` rather than a `Result` we would have
        // to unwrap; the MAC is exactly HMAC-SHA256(key, ·).
        let mut block = [0u8; BLOCK];
        if key.len() > BLOCK {
            let digest = Sha256::digest(key);
            block[..digest.len()].copy_from_slice(&digest);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mac = <HmacSha256 as KeyInit>::new(&block.into());
        Redactor { mac }
    }

    /// The redacted form of `value`: `"hmac-sha256:<hex>"`.
    pub fn hash(&self, value: &Value) -> String {
        self.hash_bytes(canonical_value(value).as_bytes())
    }

    /// `"hmac-sha256:<hex>"` of raw bytes (a request body that is not JSON,
    /// say): whoever holds the key and a copy of the bytes can check that
    /// they are the ones recorded; nobody else learns anything from it.
    pub fn hash_bytes(&self, bytes: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        let code = mac.finalize().into_bytes();
        let mut out = String::with_capacity(REDACTED_PREFIX.len() + 64);
        out.push_str(REDACTED_PREFIX);
        out.push_str(&hex(&code));
        out
    }

    /// Replaces, inside `value` (the object named `root`, e.g. `"input"`),
    /// every field whose path is in `paths` by its keyed hash. Paths are
    /// dotted and start with the root: `input.card`, `actor.email`;
    /// `name[]` means every element of the list (or every value of the map)
    /// `name`, as in `input.lines[].secret`. Paths for other roots, and
    /// paths that lead to nothing in this value, are ignored; a present
    /// field is replaced whatever its value (`null` included).
    ///
    /// A path that is inside another listed path is covered by it: the outer
    /// value is hashed whole, as it was before any redaction.
    pub fn redact(&self, value: &mut Value, paths: &[String], root: &str) {
        let mut parsed: Vec<Vec<Segment<'_>>> = paths
            .iter()
            .filter_map(|p| {
                let segments = parse_path(p);
                match segments.first() {
                    Some(first) if first.name == root => Some(segments),
                    _ => None,
                }
            })
            .collect();
        // Outer paths first, so that a value is hashed before anything inside
        // it is (then the inner path finds a string and does nothing).
        parsed.sort_by_key(Vec::len);
        for segments in &parsed {
            if let Some((first, rest)) = segments.split_first() {
                self.apply_lists(value, first.lists, rest);
            }
        }
    }

    /// Applies `lists` levels of `[]` to `value`, then the rest of the path.
    fn apply_lists(&self, value: &mut Value, lists: usize, rest: &[Segment<'_>]) {
        if lists > 0 {
            match value {
                Value::Array(items) => items.iter_mut().for_each(|v| self.apply_lists(v, lists - 1, rest)),
                Value::Object(map) => map.values_mut().for_each(|v| self.apply_lists(v, lists - 1, rest)),
                _ => {}
            }
            return;
        }
        match rest.split_first() {
            None => *value = Value::String(self.hash(value)),
            Some((next, rest)) => {
                if let Some(child) = value.as_object_mut().and_then(|m| m.get_mut(next.name)) {
                    self.apply_lists(child, next.lists, rest);
                }
            }
        }
    }
}

/// One step of a path: a field name followed by `lists` times `[]`.
#[derive(Debug, PartialEq)]
struct Segment<'a> {
    name: &'a str,
    lists: usize,
}

fn parse_path(path: &str) -> Vec<Segment<'_>> {
    path.split('.')
        .map(|mut name| {
            let mut lists = 0;
            while let Some(stripped) = name.strip_suffix("[]") {
                name = stripped;
                lists += 1;
            }
            Segment { name, lists }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn matches_rfc_4231_vectors() {
        // RFC 4231 test case 2 (short key) and 6 (key longer than a block).
        let mut mac = Redactor::new(b"Jefe").mac;
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut mac = Redactor::new(&[0xaa; 131]).mac;
        mac.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn redacts_listed_fields_only() {
        let r = Redactor::new(b"k");
        let mut input = json!({"card": "4111 1111 1111 1111", "amount": 12, "note": "hi"});
        r.redact(&mut input, &paths(&["input.card", "actor.email"]), "input");
        let card = input["card"].as_str().unwrap();
        assert!(card.starts_with("hmac-sha256:") && card.len() == 12 + 64, "{card}");
        assert!(!card.contains("4111"));
        assert_eq!(input["amount"], 12);
        assert_eq!(input["note"], "hi");
        assert_eq!(card, r.hash(&json!("4111 1111 1111 1111")));
    }

    #[test]
    fn same_value_same_key_same_hash() {
        let a = Redactor::new(b"key-a");
        let b = Redactor::new(b"key-b");
        let v = json!({"x": 1, "y": [true, null]});
        let reordered: Value = serde_json::from_str(r#"{"y":[true,null],"x":1}"#).unwrap();
        assert_eq!(a.hash(&v), a.hash(&reordered));
        assert_ne!(a.hash(&v), b.hash(&v));
        assert_ne!(a.hash(&json!("1")), a.hash(&json!(1)), "type is part of the value");
    }

    #[test]
    fn lists_and_maps_with_brackets() {
        let r = Redactor::new(b"k");
        let mut input = json!({
            "lines": [{"secret": "s1", "qty": 1}, {"secret": "s2", "qty": 2}, {"qty": 3}],
            "tokens": {"a": {"secret": "t1"}, "b": {"secret": "t2"}},
            "nested": [["x", "y"], ["z"]],
        });
        r.redact(
            &mut input,
            &paths(&["input.lines[].secret", "input.tokens[].secret", "input.nested[][]"]),
            "input",
        );
        assert_eq!(input["lines"][0]["secret"], r.hash(&json!("s1")));
        assert_eq!(input["lines"][1]["secret"], r.hash(&json!("s2")));
        assert_eq!(input["lines"][1]["qty"], 2);
        assert!(input["lines"][2].get("secret").is_none(), "absent stays absent");
        assert_eq!(input["tokens"]["b"]["secret"], r.hash(&json!("t2")));
        assert_eq!(input["nested"][1][0], r.hash(&json!("z")));
    }

    #[test]
    fn outer_path_hashes_the_original_value() {
        let r = Redactor::new(b"k");
        let original = json!({"number": "4111", "exp": "12/29"});
        let mut a = json!({"card": original.clone()});
        let mut b = a.clone();
        r.redact(&mut a, &paths(&["input.card.number", "input.card"]), "input");
        r.redact(&mut b, &paths(&["input.card"]), "input");
        assert_eq!(a, b);
        assert_eq!(a["card"], r.hash(&original));
    }

    #[test]
    fn other_roots_and_mismatched_shapes_are_ignored() {
        let r = Redactor::new(b"k");
        let mut actor = json!({"id": "u1", "email": "a@b.c", "tags": "not-a-list"});
        let before = actor.clone();
        r.redact(
            &mut actor,
            &paths(&["actor.email", "input.missing.deep", "input.id.x", "actor"]),
            "input",
        );
        assert_eq!(actor, before);
        r.redact(
            &mut actor,
            &paths(&["actor.email", "actor.tags[].x", "actor.id.deeper"]),
            "actor",
        );
        assert_eq!(actor["email"], r.hash(&json!("a@b.c")));
        assert_eq!(actor["tags"], "not-a-list");
        assert_eq!(actor["id"], "u1");
        // The root itself.
        r.redact(&mut actor, &paths(&["actor"]), "actor");
        assert!(actor.as_str().unwrap().starts_with(REDACTED_PREFIX));
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        assert_eq!(format!("{:?}", Redactor::new(b"super-secret")), "Redactor { .. }");
    }
}
