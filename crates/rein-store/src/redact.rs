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
        let code = self.mac(bytes);
        let mut out = String::with_capacity(REDACTED_PREFIX.len() + 64);
        out.push_str(REDACTED_PREFIX);
        out.push_str(&hex(&code));
        out
    }

    /// The raw HMAC-SHA256 of `bytes` under the key.
    pub(crate) fn mac(&self, bytes: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// Replaces, inside `value` (the object named `root`, e.g. `"input"`),
    /// every field whose path is in `paths` by its keyed hash. Paths are
    /// dotted and start with the root: `input.card`, `actor.email`;
    /// `name[]` means every element of the list (or every value of the map)
    /// `name`, as in `input.lines[].secret`. Paths for other roots, and
    /// paths that lead to nothing in this value (an absent field, `null`),
    /// are ignored; a present field is replaced whatever its value (`null`
    /// included).
    ///
    /// A value on the way that does not have the shape the path needs (a
    /// list or a string where the path names a field, a scalar where it
    /// says `[]`) is replaced whole: nothing says what is inside it, and it
    /// may hold the sensitive value under another shape (`"input":
    /// [{"card": …}]`).
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
        // A path inside another is covered by it: the outer value is hashed
        // whole, and the inner path must not hash that hash again.
        parsed.sort();
        parsed.dedup();
        let covered: Vec<bool> = (0..parsed.len())
            .map(|i| (0..parsed.len()).any(|j| i != j && covers(&parsed[j], &parsed[i])))
            .collect();
        for (segments, _) in parsed.iter().zip(covered).filter(|(_, covered)| !covered) {
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
                Value::Null => {}
                _ => self.replace(value),
            }
            return;
        }
        match rest.split_first() {
            None => self.replace(value),
            Some((next, rest)) => match value {
                Value::Object(map) => {
                    if let Some(child) = map.get_mut(next.name) {
                        self.apply_lists(child, next.lists, rest);
                    }
                }
                Value::Null => {}
                _ => self.replace(value),
            },
        }
    }

    /// Replaces `value` by its keyed hash (once: a value already replaced
    /// is a hash string, which a later path finds and hashes no further
    /// only because outer paths run first; see [`Redactor::redact`]).
    fn replace(&self, value: &mut Value) {
        *value = Value::String(self.hash(value));
    }
}

/// Whether `outer` leads to `inner` or to a value holding it: its steps
/// are the first ones of `inner` (the last with at most as many `[]`).
fn covers(outer: &[Segment<'_>], inner: &[Segment<'_>]) -> bool {
    let Some((last, init)) = outer.split_last() else {
        return false;
    };
    if outer.len() > inner.len() || init.iter().zip(inner).any(|(a, b)| a != b) {
        return false;
    }
    let at = &inner[init.len()];
    if last.name != at.name || last.lists > at.lists {
        return false;
    }
    true
}

/// One step of a path: a field name followed by `lists` times `[]`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
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
            &paths(&["actor.email", "input.missing.deep", "actor"]),
            "input",
        );
        assert_eq!(actor, before);
        r.redact(&mut actor, &paths(&["actor.email", "actor.missing.x"]), "actor");
        assert_eq!(actor["email"], r.hash(&json!("a@b.c")));
        assert_eq!(actor["id"], "u1");
        assert_eq!(actor["tags"], "not-a-list");
        // The root itself.
        r.redact(&mut actor, &paths(&["actor"]), "actor");
        assert!(actor.as_str().unwrap().starts_with(REDACTED_PREFIX));
    }

    /// A value of the wrong shape on a sensitive path is hashed whole: it
    /// may hold the secret under another shape.
    #[test]
    fn wrong_shapes_on_a_sensitive_path_are_hashed_whole() {
        let r = Redactor::new(b"k");
        let cases = [
            ("input.card", json!([{"card": "4111"}])),
            ("input.card", json!("card 4111")),
            ("input.card", json!(4111)),
            ("input.card.number", json!({"card": ["4111"]})),
            ("input.card.number", json!({"card": "4111"})),
            ("input.lines[].secret", json!({"lines": "s3cret"})),
            ("input.lines[].secret", json!({"lines": [["s3cret"]]})),
            ("input.lines[].secret", json!({"lines": {"a": "s3cret"}})),
            ("input.tags[]", json!({"tags": "s3cret"})),
        ];
        for (path, mut value) in cases {
            let before = value.clone();
            r.redact(&mut value, &paths(&[path]), "input");
            let text = canonical_value(&value);
            assert!(
                !text.contains("4111") && !text.contains("s3cret"),
                "{path} {before}: {text}"
            );
        }
        // What has the right shape keeps the rest in clear; null and absent
        // fields are left alone.
        let mut v = json!({"card": null, "lines": [{"qty": 1}], "note": "hi"});
        let before = v.clone();
        r.redact(
            &mut v,
            &paths(&["input.card.number", "input.lines[].secret", "input.x.y"]),
            "input",
        );
        assert_eq!(v, before);
        let mut v = Value::Null;
        r.redact(&mut v, &paths(&["input.card"]), "input");
        assert_eq!(v, Value::Null);
    }

    #[test]
    fn debug_does_not_leak_the_key() {
        assert_eq!(format!("{:?}", Redactor::new(b"super-secret")), "Redactor { .. }");
    }
}
