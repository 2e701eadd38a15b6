//! The audit chain: how a record is encoded and hashed, and how a chain is
//! checked. This page is the specification; anyone can re-implement the
//! check from it, without Rein, to audit an exported log.
//!
//! # Canonical encoding
//!
//! A record's *canonical* text is the JSON of the object
//!
//! ```text
//! {"seq": N, ...every field of AuditEntry...}
//! ```
//!
//! written so that one record has exactly one encoding:
//!
//! - keys sorted at every level, by their UTF-8 bytes;
//! - no whitespace at all;
//! - numbers and strings as `serde_json` writes them: integers in decimal,
//!   floats in their shortest round-trip form, strings with `"` `\` and the
//!   control characters escaped (`\b \t \n \f \r`, the others as `\u00xx` in
//!   lower-case hex) and everything else, non-ASCII included, written as is;
//! - every field of the first version always present: an absent option is
//!   `null`, so the encoding is total and stable (an entry with
//!   `output: Some(null)` encodes like `output: None`);
//! - the fields added later, `client`, `policy_version_label`,
//!   `actor_source` (an object of strings), `shadow` and `activation`
//!   (JSON values) and `trace` (a string), present only when set: a record written before they
//!   existed encodes (and hashes) as it did then.
//!
//! The top-level keys are therefore, in order: `action`, (`activation`), `actor`, (`actor_source`), `approval`,
//! (`client`), `decision_id`, `effect`, `error`, `input`, `latency_us`,
//! `output`, `phase`, `policy_version`, (`policy_version_label`), `reasons`, `rules`,
//! `seq`, `session`, (`shadow`), `snapshot`, `time`, (`trace`). See [`canonical`].
//!
//! # Activation records
//!
//! Besides decisions (phase `before`), outcomes (`after`) and approval
//! decisions (`approval`), the chain holds a record each time a policy
//! version starts serving (phase `activate`; see [`crate::versions`]): at
//! a server's start, on each successful reload (SIGHUP or
//! `POST /v1/policy/reload`) and on each rollback. Such a record has its
//! own `decision_id` (no other record shares it), `action` `rein:policy`,
//! `effect` `allow`, `actor` `{"id": <by>}`, `input` and `snapshot`
//! `null`, no rules, the version as `policy_version` (and
//! `policy_version_label`), a sentence in `reasons`, and `activation`:
//!
//! ```text
//! {"version": "<hash>", "label": "<version: label>" | null,
//!  "previous": "<hash of the version it replaced>" | null,
//!  "by": "<admin token name>" | "sighup" | "start",
//!  "cause": "start" | "reload" | "rollback",
//!  "files": ["<source name>", …],
//!  "diagnostics": [<load warning as Diagnostic::to_json>, …]}
//! ```
//!
//! At start, `previous` is the version the log's last activation record
//! named (the one served before the restart), if any. A reload or rollback
//! that is refused writes no record (nothing changed; the server logs and
//! counts it). The record is appended before the new version decides
//! anything, so every decision of a version follows its activation in the
//! chain; decisions already under way finish on the version they started
//! with (each record's `policy_version` says which).
//!
//! # Hashes
//!
//! ```text
//! hash = lower-case hex( SHA-256( prev_hash + "\n" + canonical ) )
//! ```
//!
//! where `prev_hash` is the hash of the record before (as 64 lower-case hex
//! characters) and, for the first record (`seq` 1), [`GENESIS`]: 64 zeros.
//! Records are numbered from 1 without gaps. See [`record_hash`].
//!
//! # Chain head
//!
//! Next to the records the store keeps the *chain head*: the `seq` and
//! `hash` of the newest record, written in the same transaction as the
//! records. Without it, deleting the newest records would leave a shorter
//! chain that still checks.
//!
//! # Checking a chain
//!
//! [`Verifier`] (or [`verify`]) walks the stored rows in `seq` order and
//! reports the first one that does not fit:
//!
//! - **changed**: the row's body does not hash to its stored hash;
//! - **removed**: a sequence number is missing, or the chain head names more
//!   records than are present;
//! - **inserted**: a row is not covered by the chain head, or the row after
//!   it links over it to the one before;
//! - **reordered** (or inserted/removed and renumbered): a row's `prev_hash`
//!   is not the hash of the row before it, or sequence numbers do not
//!   increase strictly.
//!
//! What the chain proves, and what not: anyone who can write the database
//! can also recompute every hash after the record they change, and the head.
//! The chain makes tampering *evident* to whoever kept an earlier head
//! (`seq`, `hash`), e.g. exported it elsewhere: a kept head must still be
//! in the chain with the same hash. Only the body, `prev_hash` and `hash` are
//! covered; the store's query columns are copies taken from the body, and
//! the store's `verify` derives them from every body again and reports a
//! record whose columns were edited (its queries refuse to return a record
//! whose body does not match the filters that selected it).
//!
//! # The `shadow` field
//!
//! Set on a `before` or `after` record when something ran in shadow beside
//! the enforced decision: the enforced policy's `mode: shadow` rules (when
//! the action has some for the phase), a candidate policy (`rein serve
//! --shadow`), or both. It is a [`crate::ShadowRecord`], encoded like any
//! JSON value above (its absent options are left out, not `null`):
//!
//! ```text
//! {"enforced": EFFECT,                      // the enforced policy's effect, before any approval step
//!  "rules": {"effect": EFFECT,               // with the shadow rules enforced
//!            "rules": [ID…], "deciding": [ID…], ("errors": [ID…])},
//!  "candidate": {"policy_version": HASH, ("policy_version_label": TEXT),
//!                "effect": EFFECT, "basis": "rules"|"default"|"contract"|"eval_error"
//!                                           |"state"|"credential"|"error",
//!                "rules": [ID…], "deciding": [ID…], ("errors": [ID…]),
//!                ("violation": FIELD_PATH), ("shadow_rules": {…as "rules"…}),
//!                ("error": TEXT)}}
//! ```
//!
//! Only effects, rule ids, a field path, the basis and Rein's own error
//! texts: no reason or evaluation message, which may quote a sensitive
//! value. A candidate that failed (panicked, or could not read the state)
//! has `basis: "error"` and `effect: "block"`. Nothing in it was enforced.
//!
//! # Times
//!
//! Times are kept as fixed-width UTC text, `YYYY-MM-DDTHH:MM:SS.ffffffZ`
//! (microseconds, see [`format_time`]), so that comparing the text compares
//! the times.

use std::fmt::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{AuditEntry, StoreError, Verification};

/// The `prev_hash` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical text of the record `seq` holding `entry` (see the
/// [module documentation](self)). This is the text the store keeps as the
/// record's body and hashes.
pub fn canonical(seq: u64, entry: &AuditEntry) -> String {
    CanonicalParts::new(entry).with_seq(seq)
}

/// `lower-hex(SHA-256(prev_hash + "\n" + canonical))`: the hash of a record.
pub fn record_hash(prev_hash: &str, canonical: &str) -> String {
    let hex = record_hash_hex(prev_hash, canonical);
    // The buffer only ever holds ASCII hex digits.
    String::from_utf8_lossy(&hex).into_owned()
}

/// The canonical JSON of any value: keys sorted at every level by their
/// UTF-8 bytes, no whitespace, `serde_json`'s number and string formatting.
pub fn canonical_value(v: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_value(&mut out, v);
    out
}

/// `t` as fixed-width UTC text, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, truncated to
/// microseconds, so that times compare correctly as strings. Times before
/// year 0 (which `jiff` can represent, but no audit record has) are clamped
/// to `0000-01-01T00:00:00.000000Z` to keep the width fixed.
pub fn format_time(t: jiff::Timestamp) -> String {
    let dt = jiff::tz::TimeZone::UTC.to_datetime(t);
    if dt.year() < 0 {
        return "0000-01-01T00:00:00.000000Z".to_owned();
    }
    // Digits written in place: this runs for every decision, and the
    // formatting machinery of `format!` cost more than the conversion.
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, u32::try_from(dt.year()).unwrap_or(0));
    put(5, 2, u32::try_from(dt.month()).unwrap_or(0));
    put(8, 2, u32::try_from(dt.day()).unwrap_or(0));
    put(11, 2, u32::try_from(dt.hour()).unwrap_or(0));
    put(14, 2, u32::try_from(dt.minute()).unwrap_or(0));
    put(17, 2, u32::try_from(dt.second()).unwrap_or(0));
    put(20, 6, u32::try_from(dt.subsec_nanosecond() / 1000).unwrap_or(0));
    // Only ASCII digits were written into an ASCII template.
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an RFC 3339 time (any offset, any precision) and returns it in
/// the fixed form of [`format_time`]. Used to normalise query bounds and
/// approval times before comparing them as text.
pub fn parse_time(s: &str) -> Result<String, StoreError> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .map(format_time)
        .map_err(|e| StoreError(format!("`{s}` is not an RFC 3339 time: {e}")))
}

/// The canonical text of an entry, without its `seq`: everything before
/// the number and everything after. Since `seq` is the only part that
/// depends on the record's place in the chain, callers encode the entry
/// concurrently and the single writer only splices in the number.
#[derive(Clone, Debug)]
pub(crate) struct CanonicalParts {
    /// `{"action":…,"rules":[…],"seq":`
    pub head: String,
    /// `,"session":…,"snapshot":…,"time":"…"}`
    pub tail: String,
}

impl CanonicalParts {
    /// Encodes every field of `entry`.
    pub fn new(entry: &AuditEntry) -> Self {
        // Destructured so that adding a field to `AuditEntry` fails to
        // compile here instead of silently leaving it out of the hash.
        let AuditEntry {
            decision_id,
            time,
            phase,
            action,
            input,
            actor,
            snapshot,
            output,
            error,
            session,
            effect,
            rules,
            reasons,
            policy_version,
            latency_us,
            approval,
            client,
            policy_version_label,
            actor_source,
            shadow,
            activation,
            trace,
        } = entry;
        // Sized for a typical decision, so that it is written without
        // growing.
        let mut head = String::with_capacity(1024);
        // Keys in byte order; see the module documentation.
        head.push_str("{\"action\":");
        write_str(&mut head, action);
        if let Some(activation) = activation {
            head.push_str(",\"activation\":");
            write_value(&mut head, activation);
        }
        head.push_str(",\"actor\":");
        write_value(&mut head, actor);
        if let Some(sources) = actor_source {
            // A BTreeMap iterates its keys in byte order: canonical.
            head.push_str(",\"actor_source\":{");
            for (i, (field, source)) in sources.iter().enumerate() {
                if i > 0 {
                    head.push(',');
                }
                write_str(&mut head, field);
                head.push(':');
                write_str(&mut head, source);
            }
            head.push('}');
        }
        head.push_str(",\"approval\":");
        write_opt_str(&mut head, approval.as_deref());
        if let Some(client) = client {
            head.push_str(",\"client\":");
            write_str(&mut head, client);
        }
        head.push_str(",\"decision_id\":");
        write_str(&mut head, decision_id);
        head.push_str(",\"effect\":");
        write_str(&mut head, effect);
        head.push_str(",\"error\":");
        write_opt_str(&mut head, error.as_deref());
        head.push_str(",\"input\":");
        write_value(&mut head, input);
        head.push_str(",\"latency_us\":");
        let _ = write!(head, "{latency_us}"); // writing to a String cannot fail
        head.push_str(",\"output\":");
        match output {
            Some(v) => write_value(&mut head, v),
            None => head.push_str("null"),
        }
        head.push_str(",\"phase\":");
        write_str(&mut head, phase);
        head.push_str(",\"policy_version\":");
        write_str(&mut head, policy_version);
        if let Some(label) = policy_version_label {
            head.push_str(",\"policy_version_label\":");
            write_str(&mut head, label);
        }
        head.push_str(",\"reasons\":");
        write_str_list(&mut head, reasons);
        head.push_str(",\"rules\":");
        write_str_list(&mut head, rules);
        head.push_str(",\"seq\":");

        let mut tail = String::with_capacity(256);
        tail.push_str(",\"session\":");
        write_opt_str(&mut tail, session.as_deref());
        if let Some(shadow) = shadow {
            tail.push_str(",\"shadow\":");
            write_value(&mut tail, shadow);
        }
        tail.push_str(",\"snapshot\":");
        write_value(&mut tail, snapshot);
        tail.push_str(",\"time\":");
        write_str(&mut tail, time);
        if let Some(trace) = trace {
            tail.push_str(",\"trace\":");
            write_str(&mut tail, trace);
        }
        tail.push('}');
        CanonicalParts { head, tail }
    }

    /// The canonical text for record `seq`.
    pub fn with_seq(&self, seq: u64) -> String {
        let mut out = String::with_capacity(self.head.len() + 20 + self.tail.len());
        out.push_str(&self.head);
        let _ = write!(out, "{seq}"); // writing to a String cannot fail
        out.push_str(&self.tail);
        out
    }
}

/// The record hash as 64 lower-case hex bytes, without allocating.
pub(crate) fn record_hash_hex(prev_hash: &str, canonical: &str) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

fn write_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.push_str("null"),
    }
}

/// The canonical JSON of a list of strings (`["a","b"]`), without building
/// a `Value` first.
pub(crate) fn canonical_str_list(items: &[String]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|s| s.len() + 3).sum::<usize>());
    write_str_list(&mut out, items);
    out
}

fn write_str_list(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, s);
    }
    out.push(']');
}

/// Writes `v` canonically. Recursion depth is bounded by the value's own
/// depth, which `serde_json` limits (128) when it parses a request.
fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // `Number`'s Display is exactly what serde_json serialises.
        Value::Number(n) => {
            let _ = write!(out, "{n}"); // writing to a String cannot fail
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            // serde_json's map is a BTreeMap (already in byte order) unless
            // some crate in the build turns on `preserve_order`; only sort
            // when it is not already sorted.
            let sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a < b);
            if sorted {
                for (i, (k, v)) in map.iter().enumerate() {
                    write_member(out, i, k, v);
                }
            } else {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (k, v)) in members.into_iter().enumerate() {
                    write_member(out, i, k, v);
                }
            }
            out.push('}');
        }
    }
}

fn write_member(out: &mut String, i: usize, k: &str, v: &Value) {
    if i > 0 {
        out.push(',');
    }
    write_str(out, k);
    out.push(':');
    write_value(out, v);
}

/// Writes `s` as a JSON string exactly as serde_json does.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // Most strings need no escape: one branch-free pass (which the compiler
    // vectorises) finds out, and they are copied whole.
    let needs_escape = bytes
        .iter()
        .fold(false, |acc, &b| acc | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if !needs_escape {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes are escaped, so `start..i` is on char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Checks a chain row by row, in `seq` order, without keeping the rows:
/// feed every stored row to [`Verifier::push`] and the stored chain head to
/// [`Verifier::finish`]. The first problem found is kept; rows after it are
/// ignored (and [`Verifier::push`] returns `false` so the caller can stop
/// reading).
#[derive(Clone, Debug)]
pub struct Verifier {
    /// The `seq` the next row must have.
    next_seq: u64,
    /// Hash of the last row checked (what the next row must link to).
    prev: [u8; 64],
    /// Hash of the row before that: if a row links to this instead, the row
    /// in between was inserted.
    before_prev: [u8; 64],
    /// The first problem found.
    broken: Option<(u64, String)>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier expecting record 1 next.
    pub fn new() -> Self {
        let mut genesis = [0u8; 64];
        genesis.copy_from_slice(GENESIS.as_bytes());
        Verifier {
            next_seq: 1,
            prev: genesis,
            before_prev: [0xff; 64], // never a hex hash, so never matches
            broken: None,
        }
    }

    /// Whether a problem has been found.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Checks the next stored row. Returns `false` once the chain is known
    /// to be broken (further rows are ignored).
    pub fn push(&mut self, seq: u64, body: &str, prev_hash: &str, hash: &str) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let expected = self.next_seq;
        if seq < expected {
            return self.fail(
                seq,
                format!(
                    "record {seq} is out of order (inserted or reordered): it comes after record {}",
                    expected.saturating_sub(1)
                ),
            );
        }
        if seq > expected {
            let what = if seq == expected + 1 {
                format!("record {expected} was removed")
            } else {
                format!("records {expected} to {} were removed", seq - 1)
            };
            return self.fail(
                expected,
                format!(
                    "{what}: the record after {} is {seq}",
                    match expected - 1 {
                        0 => "the start".to_owned(),
                        n => format!("record {n}"),
                    }
                ),
            );
        }
        if prev_hash.as_bytes() != self.prev {
            if seq >= 2 && prev_hash.as_bytes() == self.before_prev {
                return self.fail(
                    seq - 1,
                    format!(
                        "record {} was inserted: record {seq} links over it to record {}",
                        seq - 1,
                        seq - 2
                    ),
                );
            }
            let before = match seq - 1 {
                0 => "the start of the chain".to_owned(),
                n => format!("record {n}"),
            };
            return self.fail(
                seq,
                format!(
                    "record {seq} does not link to {before} (inserted or reordered, or records removed and \
                     renumbered): its prev_hash is {prev_hash}, expected {}",
                    String::from_utf8_lossy(&self.prev)
                ),
            );
        }
        let computed = record_hash_hex(prev_hash, body);
        if hash.as_bytes() != computed {
            return self.fail(
                seq,
                format!(
                    "record {seq} was changed: its content hashes to {}, but its stored hash is {hash}",
                    String::from_utf8_lossy(&computed)
                ),
            );
        }
        self.before_prev = self.prev;
        self.prev = computed;
        self.next_seq = seq + 1;
        true
    }

    /// Records a row that could not even be read as text (e.g. a body that
    /// is not a string): it was changed.
    pub fn push_unreadable(&mut self, seq: u64, why: &str) {
        if self.broken.is_none() {
            self.fail(seq, format!("record {seq} was changed: {why}"));
        }
    }

    fn fail(&mut self, seq: u64, problem: String) -> bool {
        self.broken = Some((seq, problem));
        false
    }

    /// The verdict, given the stored chain head (`seq`, `hash`), or `None`
    /// if the store has no head row.
    pub fn finish(self, head: Option<(u64, &str)>) -> Verification {
        if let Some((seq, problem)) = self.broken {
            return Verification::Broken { seq, problem };
        }
        let last = self.next_seq - 1;
        match head {
            None if last == 0 => Verification::Intact { records: 0 },
            None => Verification::Broken {
                seq: last,
                problem: format!("the chain head is missing (removed), the log has {last} records"),
            },
            Some((head_seq, _)) if head_seq > last => Verification::Broken {
                seq: last + 1,
                problem: if head_seq == last + 1 {
                    format!("record {head_seq} was removed: the chain head names it, the newest record is {last}")
                } else {
                    format!(
                        "records {} to {head_seq} were removed: the chain head names {head_seq}, the newest record \
                         is {last}",
                        last + 1
                    )
                },
            },
            Some((head_seq, _)) if head_seq < last => Verification::Broken {
                seq: head_seq + 1,
                problem: format!(
                    "record {} was inserted: the chain head ends at record {head_seq}",
                    head_seq + 1
                ),
            },
            Some((_, head_hash)) if last > 0 && head_hash.as_bytes() != self.prev => Verification::Broken {
                seq: last,
                problem: format!(
                    "record {last} was changed or replaced: the chain head's hash is {head_hash}, the record \
                     hashes to {}",
                    String::from_utf8_lossy(&self.prev)
                ),
            },
            Some((_, head_hash)) if last == 0 && head_hash != GENESIS => Verification::Broken {
                seq: 1,
                problem: format!("every record was removed: the chain head's hash is {head_hash}"),
            },
            Some(_) => Verification::Intact { records: last },
        }
    }
}

/// Checks a whole chain: `rows` are the stored `(seq, body, prev_hash,
/// hash)` in `seq` order, `head` the stored chain head (`None` if absent).
pub fn verify<I, S>(rows: I, head: Option<(u64, &str)>) -> Verification
where
    I: IntoIterator<Item = (u64, S, S, S)>,
    S: AsRef<str>,
{
    let mut v = Verifier::new();
    for (seq, body, prev_hash, hash) in rows {
        if !v.push(seq, body.as_ref(), prev_hash.as_ref(), hash.as_ref()) {
            break;
        }
    }
    v.finish(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(i: u64) -> AuditEntry {
        AuditEntry {
            decision_id: format!("d{i}"),
            time: "2025-01-02T03:04:05.000006Z".into(),
            phase: "before".into(),
            action: "refund".into(),
            input: json!({"amount": i, "b": [1, 2.5, "x"], "a": {"z": null, "y": true}}),
            actor: json!({"id": "alice", "roles": ["agent"]}),
            snapshot: json!({}),
            output: None,
            error: None,
            session: Some("s1".into()),
            effect: "allow".into(),
            rules: vec!["r1".into(), "r2".into()],
            reasons: vec!["ok \"quoted\"\n".into()],
            policy_version: "abc".into(),
            latency_us: 12,
            approval: None,
            client: None,
            policy_version_label: None,
            actor_source: None,
            shadow: None,
            activation: None,
            trace: None,
        }
    }

    /// The canonical encoding equals the generic route (serialize the
    /// entry, add `seq`, sort): guards against a field being forgotten or
    /// misspelled in the hand-written encoder.
    #[test]
    fn canonical_matches_generic_encoding() {
        let mut e = entry(7);
        for _ in 0..2 {
            let mut v = serde_json::to_value(&e).unwrap();
            v.as_object_mut().unwrap().insert("seq".into(), json!(42));
            assert_eq!(canonical(42, &e), canonical_value(&v));
            e.output = Some(json!({"ok": 1.0e-7, "big": u64::MAX, "neg": -3}));
            e.error = Some("boom".into());
            e.approval = Some("ap1".into());
            e.session = None;
            e.client = Some("bot".into());
            e.policy_version_label = Some("v2 \"x\"".into());
            e.actor_source = Some(
                [("tenant", "caller"), ("id", "credential"), ("rôle\"", "credential")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.into()))
                    .collect(),
            );
            e.shadow = Some(json!({"effect": "block", "rules": ["r\"1"], "policy_version": "def"}));
            e.activation = Some(json!({"version": "abc", "by": "admin", "diagnostics": []}));
            e.trace = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        }
    }

    /// A record written before `client` and `policy_version_label` existed keeps
    /// its encoding, hence its hash.
    #[test]
    fn later_fields_are_absent_when_unset() {
        let c = canonical(1, &entry(1));
        assert!(
            !c.contains("client")
                && !c.contains("policy_version_label")
                && !c.contains("actor_source")
                && !c.contains("shadow")
                && !c.contains("activation")
                && !c.contains("trace"),
            "{c}"
        );
        // `trace` sorts last (after `time`): the body ends with it.
        let mut t = entry(1);
        t.trace = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        assert!(
            canonical(1, &t).ends_with(r#","trace":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#),
            "{}",
            canonical(1, &t)
        );
        let mut e = entry(1);
        e.client = Some("agent-1".into());
        e.policy_version_label = Some("2026-05".into());
        let c = canonical(1, &e);
        assert!(c.contains(r#""approval":null,"client":"agent-1","decision_id""#), "{c}");
        assert!(
            c.contains(r#""policy_version":"abc","policy_version_label":"2026-05","reasons""#),
            "{c}"
        );
        // `actor_source` sits between `actor` and `approval`, and is hashed:
        // a record saying a field came from the caller does not hash as
        // one saying it came from the credential.
        e.actor_source = Some([("id".to_string(), "credential".into())].into_iter().collect());
        let bound = canonical(1, &e);
        assert!(
            bound.contains(r#"["agent"]},"actor_source":{"id":"credential"},"approval":null"#),
            "{bound}"
        );
        e.actor_source = Some([("id".to_string(), "caller".into())].into_iter().collect());
        assert_ne!(record_hash(GENESIS, &bound), record_hash(GENESIS, &canonical(1, &e)));
    }

    #[test]
    fn canonical_is_sorted_compact_and_total() {
        let c = canonical(1, &entry(1));
        assert!(c.starts_with(r#"{"action":"refund","actor":{"id":"alice","roles":["agent"]},"approval":null,"#));
        assert!(c.contains(r#""input":{"a":{"y":true,"z":null},"amount":1,"b":[1,2.5,"x"]}"#));
        assert!(c.contains(r#""rules":["r1","r2"],"seq":1,"session":"s1","#));
        assert!(c.ends_with(r#""time":"2025-01-02T03:04:05.000006Z"}"#));
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut s = String::new();
        for c in (0u32..0x80).filter_map(char::from_u32) {
            s.push(c);
        }
        s.push_str("é日本\u{1F600}\u{2028}\u{7f}");
        let mut ours = String::new();
        write_str(&mut ours, &s);
        assert_eq!(ours, serde_json::to_string(&s).unwrap());
    }

    #[test]
    fn numbers_format_like_serde_json() {
        for v in [
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(1e300),
            json!(0.1),
        ] {
            assert_eq!(canonical_value(&v), serde_json::to_string(&v).unwrap());
        }
    }

    #[test]
    fn record_hash_is_sha256_of_prev_newline_body() {
        // printf '%s\n%s' "$GENESIS" '{}' | sha256sum
        let h = record_hash(GENESIS, "{}");
        let mut direct = Sha256::new();
        direct.update(format!("{GENESIS}\n{{}}").as_bytes());
        assert_eq!(h, hex(&direct.finalize()));
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn canonical_value_ignores_key_order() {
        let a = json!({"b": 1, "a": {"d": 2, "c": 3}});
        let b: Value = serde_json::from_str(r#"{"a":{"c":3,"d":2},"b":1}"#).unwrap();
        assert_eq!(canonical_value(&a), canonical_value(&b));
        assert_ne!(canonical_value(&a), canonical_value(&json!({"b": 2})));
    }

    #[test]
    fn format_time_matches_the_formatting_machinery() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2025-03-04T05:06:07.123456789+02:00",
            "9999-12-30T21:59:59.999999Z",
            "0001-02-03T04:05:06.000007Z",
            "2000-02-29T12:00:00.5Z",
        ] {
            let t: jiff::Timestamp = s.parse().unwrap();
            let dt = jiff::tz::TimeZone::UTC.to_datetime(t);
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.subsec_nanosecond() / 1000
            );
            assert_eq!(format_time(t), expected);
        }
    }

    #[test]
    fn times_are_fixed_width_utc() {
        let t: jiff::Timestamp = "2025-03-04T05:06:07.123456789+02:00".parse().unwrap();
        assert_eq!(format_time(t), "2025-03-04T03:06:07.123456Z");
        assert_eq!(
            parse_time("2025-03-04T03:06:07Z").unwrap(),
            "2025-03-04T03:06:07.000000Z"
        );
        assert_eq!(
            parse_time(" 1999-12-31T23:59:59.5-01:00").unwrap(),
            "2000-01-01T00:59:59.500000Z"
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-03-04T03:06:07").is_err(), "an offset is required");
        // String order is time order.
        assert!(parse_time("2025-03-04T03:06:07.9Z").unwrap() < parse_time("2025-03-04T03:06:08Z").unwrap());
    }

    fn chain(n: u64) -> Vec<(u64, String, String, String)> {
        let mut rows = Vec::new();
        let mut prev = GENESIS.to_owned();
        for seq in 1..=n {
            let body = canonical(seq, &entry(seq));
            let hash = record_hash(&prev, &body);
            rows.push((seq, body, prev.clone(), hash.clone()));
            prev = hash;
        }
        rows
    }

    fn head(rows: &[(u64, String, String, String)]) -> Option<(u64, &str)> {
        Some(rows.last().map_or((0, GENESIS), |r| (r.0, r.3.as_str())))
    }

    fn broken(v: Verification) -> (u64, String) {
        match v {
            Verification::Broken { seq, problem } => (seq, problem),
            other => panic!("expected broken, got {other:?}"),
        }
    }

    #[test]
    fn intact_chains_verify() {
        for n in [0, 1, 5] {
            let rows = chain(n);
            assert_eq!(verify(rows.clone(), head(&rows)), Verification::Intact { records: n });
        }
        assert_eq!(
            verify(Vec::<(u64, &str, &str, &str)>::new(), None),
            Verification::Intact { records: 0 }
        );
    }

    #[test]
    fn changed_body_is_named() {
        let mut rows = chain(5);
        let h = head(&rows).map(|(s, h)| (s, h.to_owned()));
        rows[2].1 = rows[2].1.replace("\"allow\"", "\"block\"");
        let (seq, p) = broken(verify(rows, h.as_ref().map(|(s, h)| (*s, h.as_str()))));
        assert_eq!(seq, 3);
        assert!(p.contains("changed"), "{p}");
    }

    #[test]
    fn removed_records_are_named() {
        let rows = chain(5);
        let h = (5, rows[4].3.clone());
        let mut middle = rows.clone();
        middle.remove(1);
        let (seq, p) = broken(verify(middle, Some((h.0, &h.1))));
        assert_eq!(seq, 2);
        assert!(p.contains("removed"), "{p}");

        let mut newest = rows.clone();
        newest.pop();
        let (seq, p) = broken(verify(newest, Some((h.0, &h.1))));
        assert_eq!(seq, 5);
        assert!(p.contains("removed"), "{p}");

        let (seq, p) = broken(verify(Vec::<(u64, &str, &str, &str)>::new(), Some((h.0, &h.1))));
        assert_eq!(seq, 1);
        assert!(p.contains("removed"), "{p}");

        let (seq, p) = broken(verify(rows.clone(), None));
        assert_eq!(seq, 5);
        assert!(p.contains("head is missing"), "{p}");
    }

    #[test]
    fn inserted_and_reordered_records_are_named() {
        let rows = chain(5);
        let h = (5, rows[4].3.clone());
        // A forged record 3 that links properly to 2; the old 3.. renumbered.
        let forged_body = canonical(3, &entry(99));
        let forged_hash = record_hash(&rows[1].3, &forged_body);
        let mut forged = rows[..2].to_vec();
        forged.push((3, forged_body, rows[1].3.clone(), forged_hash));
        forged.extend(rows[2..].iter().cloned().map(|(s, b, p, h)| (s + 1, b, p, h)));
        let (seq, p) = broken(verify(forged, Some((h.0, &h.1))));
        assert_eq!(seq, 3);
        assert!(p.contains("inserted"), "{p}");

        let mut swapped = rows.clone();
        let (b1, p1, h1) = (swapped[1].1.clone(), swapped[1].2.clone(), swapped[1].3.clone());
        swapped[1] = (2, swapped[3].1.clone(), swapped[3].2.clone(), swapped[3].3.clone());
        swapped[3] = (4, b1, p1, h1);
        let (seq, p) = broken(verify(swapped, Some((h.0, &h.1))));
        assert_eq!(seq, 2);
        assert!(p.contains("reordered"), "{p}");

        // A repeated sequence number (possible from any row source, not
        // from a primary key).
        let mut repeated = rows.clone();
        repeated.insert(2, rows[1].clone());
        let (seq, p) = broken(verify(repeated, Some((h.0, &h.1))));
        assert_eq!(seq, 2);
        assert!(p.contains("out of order"), "{p}");

        // Appended after the head without moving it.
        let (seq, p) = broken(verify(rows.clone(), Some((4, &rows[3].3))));
        assert_eq!(seq, 5);
        assert!(p.contains("inserted"), "{p}");
    }
}
