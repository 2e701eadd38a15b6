//! The audit table's filter columns (`time`, `decision_id`, `phase`,
//! `action`, `actor_id`, `session`, `effect`, `rules`): copies of fields of
//! the record's body, kept so that queries need not parse bodies.
//!
//! The chain covers only the body. So that an edit of a filter column alone
//! (which changes what a query finds) does not go unnoticed, `verify`
//! derives the columns again from every body with [`Columns::from_body`]
//! and compares; the writer derives them from the entry with
//! [`Columns::from_entry`]. Both go through the same rules, and a test
//! checks they agree.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{chain, AuditEntry};

/// The filter columns of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Columns<'a> {
    /// Fixed-width UTC time (see [`time_key`]).
    pub time: Cow<'a, str>,
    pub decision_id: Cow<'a, str>,
    pub phase: Cow<'a, str>,
    pub action: Cow<'a, str>,
    /// The actor's `id` field, if it is a string.
    pub actor_id: Option<Cow<'a, str>>,
    pub session: Option<Cow<'a, str>>,
    pub effect: Cow<'a, str>,
    /// Canonical JSON array of the matched rule ids.
    pub rules: Cow<'a, str>,
}

/// The fields of a body the columns come from, as `serde_json` reads them;
/// everything else is skipped.
#[derive(Deserialize)]
struct BodyFields<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    decision_id: Cow<'a, str>,
    #[serde(borrow)]
    phase: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow)]
    actor: &'a RawValue,
    #[serde(borrow)]
    session: Option<Cow<'a, str>>,
    #[serde(borrow)]
    effect: Cow<'a, str>,
    #[serde(borrow)]
    rules: &'a RawValue,
}

/// The `id` member of an actor object, whatever its type.
#[derive(Deserialize)]
struct ActorFields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

impl<'a> Columns<'a> {
    /// The columns of a new record, from its entry.
    pub(crate) fn from_entry(entry: &'a AuditEntry) -> Columns<'a> {
        Columns {
            time: time_key(&entry.time),
            decision_id: Cow::Borrowed(&entry.decision_id),
            phase: Cow::Borrowed(&entry.phase),
            action: Cow::Borrowed(&entry.action),
            actor_id: entry.actor.get("id").and_then(|v| v.as_str()).map(Cow::Borrowed),
            session: entry.session.as_deref().map(Cow::Borrowed),
            effect: Cow::Borrowed(&entry.effect),
            rules: Cow::Owned(chain::canonical_str_list(&entry.rules)),
        }
    }

    /// The columns a stored record must have, from its body (the canonical
    /// text of `chain`). `Err` says why the body cannot be read.
    ///
    /// `verify` runs this on every record, so bodies are read by a scanner
    /// that only looks at the top-level members it needs and skips the
    /// others without building anything; a body it does not understand
    /// (escapes in a key, anything unusual) goes to `serde_json`, which
    /// decides.
    pub(crate) fn from_body(body: &'a str) -> Result<Columns<'a>, String> {
        match scan::top_level(body) {
            Some(f) => Ok(Columns::from_fields(f)),
            None => Columns::from_body_serde(body),
        }
    }

    /// [`Columns::from_body`] through `serde_json` alone (the reference).
    fn from_body_serde(body: &'a str) -> Result<Columns<'a>, String> {
        let f: BodyFields<'a> = serde_json::from_str(body).map_err(|e| format!("its body is not a record ({e})"))?;
        let actor_id = match f.actor.get().as_bytes().first() {
            Some(b'{') => {
                let a: ActorFields<'a> =
                    serde_json::from_str(f.actor.get()).map_err(|e| format!("its actor is unreadable ({e})"))?;
                match a.id {
                    Some(raw) if raw.get().starts_with('"') => Some(Cow::Owned(
                        serde_json::from_str::<String>(raw.get())
                            .map_err(|e| format!("its actor id is unreadable ({e})"))?,
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
        Ok(Columns::from_fields(scan::Fields {
            time: f.time,
            decision_id: f.decision_id,
            phase: f.phase,
            action: f.action,
            actor_id,
            session: f.session,
            effect: f.effect,
            rules: f.rules.get(),
        }))
    }

    fn from_fields(f: scan::Fields<'a>) -> Columns<'a> {
        // A body that verified against its hash is canonical, so its rules
        // are already the canonical list the column holds.
        Columns {
            time: match f.time {
                Cow::Borrowed(t) => time_key(t),
                Cow::Owned(t) => Cow::Owned(time_key(&t).into_owned()),
            },
            decision_id: f.decision_id,
            phase: f.phase,
            action: f.action,
            actor_id: f.actor_id,
            session: f.session,
            effect: f.effect,
            rules: Cow::Borrowed(f.rules),
        }
    }

    /// The columns in table order ([`NAMES`]); `None` is SQL `NULL`.
    pub(crate) fn values(&self) -> [Option<&str>; 8] {
        [
            Some(&self.time),
            Some(&self.decision_id),
            Some(&self.phase),
            Some(&self.action),
            self.actor_id.as_deref(),
            self.session.as_deref(),
            Some(&self.effect),
            Some(&self.rules),
        ]
    }

    /// The first of the `stored` columns (in [`NAMES`] order) that differs
    /// from `self` (the columns derived from the body), as a sentence;
    /// `None` if all agree.
    pub(crate) fn mismatch(&self, stored: [Option<&str>; 8]) -> Option<String> {
        let show = |v: Option<&str>| v.map_or_else(|| "NULL".to_owned(), |s| format!("`{s}`"));
        NAMES
            .iter()
            .zip(self.values())
            .zip(stored)
            .find(|((_, want), got)| want != got)
            .map(|((name, want), got)| {
                format!(
                    "its `{name}` column is {} but its body says {} (a query column was edited)",
                    show(got),
                    show(want)
                )
            })
    }
}

/// The filter columns, in the order of [`Columns::values`].
pub(crate) const NAMES: [&str; 8] = [
    "time",
    "decision_id",
    "phase",
    "action",
    "actor_id",
    "session",
    "effect",
    "rules",
];

/// The `time` column of a record whose entry has `time`: the time in the
/// fixed-width UTC form of [`chain::format_time`], so that ranges compare
/// as text; a time that does not parse is kept as given rather than
/// refusing to record a decision.
///
/// Times the runtime writes are already in that form; they are recognised
/// by their shape and kept without parsing (the same result, which a test
/// checks, for a fraction of the cost).
pub(crate) fn time_key(time: &str) -> Cow<'_, str> {
    if is_fixed_utc(time) {
        Cow::Borrowed(time)
    } else {
        Cow::Owned(chain::parse_time(time).unwrap_or_else(|_| time.to_owned()))
    }
}

/// Whether `t` has the shape `YYYY-MM-DDTHH:MM:SS.ffffffZ` with fields in
/// range, the form `chain::format_time` writes. For such a text, parsing
/// and formatting again gives the text back, or parsing fails (a day that
/// does not exist, like February 30) and the text is kept as given: either
/// way [`time_key`] is the text itself.
fn is_fixed_utc(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() != 27 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && b[26] == b'Z'
        && (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) <= 23
        && num(14..16) <= 59
        && num(17..19) <= 59
}

/// A scanner for the top level of a record body, for speed (see
/// [`Columns::from_body`]). It understands compact JSON objects whose keys
/// have no escapes, which is every body Rein writes, and returns `None` for
/// anything else. Values it does not need are skipped by matching brackets
/// and quotes, not validated: the chain has already checked that the body
/// is the one that was hashed.
mod scan {
    use std::borrow::Cow;

    /// The members of a body the columns come from.
    pub(super) struct Fields<'a> {
        pub time: Cow<'a, str>,
        pub decision_id: Cow<'a, str>,
        pub phase: Cow<'a, str>,
        pub action: Cow<'a, str>,
        pub actor_id: Option<Cow<'a, str>>,
        pub session: Option<Cow<'a, str>>,
        pub effect: Cow<'a, str>,
        /// The raw JSON text of `rules`.
        pub rules: &'a str,
    }

    /// Reads a body written in the canonical order of `chain` (every body
    /// Rein writes): each key is where the encoding puts it, so members are
    /// matched as literal prefixes instead of parsed and looked up.
    fn canonical(body: &str) -> Option<Fields<'_>> {
        let b = body.as_bytes();
        let mut i = 0;
        // The value after the literal `key` (e.g. `,"rules":`) at `i`.
        let mut next = |key: &[u8]| -> Option<&str> {
            if !b.get(i..)?.starts_with(key) {
                return None;
            }
            let start = i + key.len();
            i = skip_value(b, start)?;
            body.get(start..i)
        };
        let action = next(b"{\"action\":")?;
        let actor = next(b",\"actor\":")?;
        next(b",\"approval\":")?;
        let decision_id = next(b",\"decision_id\":")?;
        let effect = next(b",\"effect\":")?;
        next(b",\"error\":")?;
        next(b",\"input\":")?;
        next(b",\"latency_us\":")?;
        next(b",\"output\":")?;
        let phase = next(b",\"phase\":")?;
        next(b",\"policy_version\":")?;
        next(b",\"reasons\":")?;
        let rules = next(b",\"rules\":")?;
        next(b",\"seq\":")?;
        let session = next(b",\"session\":")?;
        next(b",\"snapshot\":")?;
        let time = next(b",\"time\":")?;
        if b.get(i..)? != b"}" {
            return None;
        }
        fields([time, decision_id, phase, action, actor, session, effect, rules])
    }

    pub(super) fn top_level(body: &str) -> Option<Fields<'_>> {
        if let Some(f) = canonical(body) {
            return Some(f);
        }
        let mut f: [Option<&str>; 8] = [None; 8];
        members(body, |key, value| {
            let i = match key {
                "time" => 0,
                "decision_id" => 1,
                "phase" => 2,
                "action" => 3,
                "actor" => 4,
                "session" => 5,
                "effect" => 6,
                "rules" => 7,
                _ => return true,
            };
            // A repeated key: let serde_json say what it makes of it.
            f[i].replace(value).is_none()
        })?;
        let [time, decision_id, phase, action, actor, session, effect, rules] = f;
        fields([time?, decision_id?, phase?, action?, actor?, session?, effect?, rules?])
    }

    /// The columns' fields from the raw values of the members `time`,
    /// `decision_id`, `phase`, `action`, `actor`, `session`, `effect`,
    /// `rules`.
    fn fields(raw: [&str; 8]) -> Option<Fields<'_>> {
        let [time, decision_id, phase, action, actor, session, effect, rules] = raw;
        let actor_id = if actor.starts_with('{') {
            let mut id = None;
            members(actor, |key, value| {
                if key == "id" {
                    if id.is_some() {
                        return false;
                    }
                    id = Some(value);
                }
                true
            })?;
            match id {
                Some(v) if v.starts_with('"') => Some(string(v)?),
                _ => None,
            }
        } else {
            None
        };
        let session = match session {
            "null" => None,
            s => Some(string(s)?),
        };
        Some(Fields {
            time: string(time)?,
            decision_id: string(decision_id)?,
            phase: string(phase)?,
            action: string(action)?,
            actor_id,
            session,
            effect: string(effect)?,
            rules: Some(rules).filter(|r| r.starts_with('['))?,
        })
    }

    /// Calls `member(key, raw value)` for every member of the object
    /// `text`, until it returns `false` (then `None`). `None` if `text` is
    /// not a compact object with plain keys.
    fn members<'a>(text: &'a str, mut member: impl FnMut(&'a str, &'a str) -> bool) -> Option<()> {
        let b = text.as_bytes();
        if b.first() != Some(&b'{') || b.last() != Some(&b'}') {
            return None;
        }
        let mut i = 1;
        if b.get(i) == Some(&b'}') {
            return (i + 1 == b.len()).then_some(());
        }
        loop {
            // "key":
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let key_end = i + 1 + quote_or_backslash(&b[i + 1..])?;
            if b[key_end] != b'"' || b.get(key_end + 1) != Some(&b':') {
                return None;
            }
            let key = text.get(i + 1..key_end)?;
            let start = key_end + 2;
            let end = skip_value(b, start)?;
            if !member(key, text.get(start..end)?) {
                return None;
            }
            match b.get(end) {
                Some(b',') => i = end + 1,
                Some(b'}') if end + 1 == b.len() => return Some(()),
                _ => return None,
            }
        }
    }

    /// The index just after the value that starts at `i`.
    fn skip_value(b: &[u8], i: usize) -> Option<usize> {
        match *b.get(i)? {
            b'"' => skip_string(b, i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                loop {
                    match *b.get(j)? {
                        b'"' => {
                            j = skip_string(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            _ => {
                let len = b[i..]
                    .iter()
                    .position(|&c| matches!(c, b',' | b'}' | b']'))
                    .unwrap_or(b.len() - i);
                (len > 0).then_some(i + len)
            }
        }
    }

    /// The index just after the string that starts at `i` (a `"`).
    #[inline]
    fn skip_string(b: &[u8], i: usize) -> Option<usize> {
        let mut j = i + 1;
        loop {
            j += quote_or_backslash(b.get(j..)?)?;
            if b[j] == b'"' {
                return Some(j + 1);
            }
            j += 2; // an escape and the character it escapes
        }
    }

    /// The position of the first `"` or `\\` in `hay`. Eight bytes at a
    /// time (the classic "has a zero byte" bit trick on `u64`s): most of a
    /// body is the inside of strings, and this is where verify spends its
    /// time after SHA-256.
    #[inline]
    pub(super) fn quote_or_backslash(hay: &[u8]) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        let mut chunks = hay.chunks_exact(8);
        let mut at = 0;
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            if has_zero(v ^ (ONES * u64::from(b'"'))) | has_zero(v ^ (ONES * u64::from(b'\\'))) != 0 {
                break;
            }
            at += 8;
        }
        hay[at..].iter().position(|&c| c == b'"' || c == b'\\').map(|p| at + p)
    }

    /// The value of the JSON string literal `raw` (quotes included).
    fn string(raw: &str) -> Option<Cow<'_, str>> {
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> AuditEntry {
        AuditEntry {
            decision_id: "d\"1".into(),
            time: "2025-01-02T03:04:05.000006Z".into(),
            phase: "before".into(),
            action: "refund".into(),
            input: json!({"effect": "allow", "rules": ["x"], "time": "t"}),
            actor: json!({"name": "n", "id": "al\\ice"}),
            snapshot: json!({}),
            output: None,
            error: None,
            session: Some("s1".into()),
            effect: "block".into(),
            rules: vec!["r1".into(), "r\"2".into()],
            reasons: vec![],
            policy_version: "v".into(),
            latency_us: 1,
            approval: None,
            client: Some("agent-1".into()),
            policy_version_label: Some("v1".into()),
            actor_source: None,
            shadow: None,
            activation: None,
            trace: None,
        }
    }

    #[test]
    fn body_and_entry_give_the_same_columns() {
        let mut e = entry();
        for step in 0..5 {
            match step {
                1 => e.actor = json!({"id": 7}),
                2 => e.actor = json!(["id"]),
                3 => {
                    e.session = None;
                    e.rules.clear();
                    e.time = "2025-01-02T05:04:05+02:00".into();
                }
                4 => e.time = "not a time".into(),
                _ => {}
            }
            let body = chain::canonical(3, &e);
            assert!(
                scan::top_level(&body).is_some(),
                "step {step}: the scanner reads what Rein writes"
            );
            // The same members in another order (not what Rein writes): the
            // general scanner, with the same result.
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let mut members: Vec<String> = v
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), chain::canonical_value(v)))
                .collect();
            members.reverse();
            let shuffled = format!("{{{}}}", members.join(","));
            assert_eq!(
                Columns::from_body(&shuffled).unwrap(),
                Columns::from_entry(&e),
                "step {step}"
            );
            assert_eq!(
                Columns::from_body(&body).unwrap(),
                Columns::from_entry(&e),
                "step {step}"
            );
            assert_eq!(
                Columns::from_body_serde(&body).unwrap(),
                Columns::from_entry(&e),
                "step {step}"
            );
        }
    }

    #[test]
    fn quote_or_backslash_finds_the_first() {
        for len in 0..40 {
            for at in 0..=len {
                for c in [b'"', b'\\'] {
                    let mut hay = vec![b'a'; len];
                    if at < len {
                        hay[at] = c;
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(scan::quote_or_backslash(&hay), want, "{len} {at}");
                }
            }
        }
        // Bytes next to the targets and high bytes are not mistaken for them.
        let hay = "é\u{7f}!#[]\u{a2}\u{22c}x\"".as_bytes();
        assert_eq!(scan::quote_or_backslash(hay), Some(hay.len() - 1));
    }

    #[test]
    fn fixed_times_are_their_own_key() {
        // Shape-valid times: parsing and formatting gives the text back, or
        // parsing fails and the text is kept: the fast path is exact.
        let mut n = 0u64;
        for year in ["0000", "1970", "2024", "9999"] {
            for month in 1..=12u32 {
                for day in [1u32, 28, 29, 30, 31] {
                    for (h, m, s) in [(0u32, 0u32, 0u32), (23, 59, 59), (12, 30, 7)] {
                        let t = format!("{year}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z", n % 1_000_000);
                        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        assert!(is_fixed_utc(&t), "{t}");
                        let slow = chain::parse_time(&t).unwrap_or_else(|_| t.clone());
                        assert_eq!(time_key(&t), slow, "{t}");
                    }
                }
            }
        }
        for t in [
            "2025-01-02T03:04:05Z",
            "2025-01-02T03:04:60.000000Z",
            "2025-01-02T24:00:00.000000Z",
            "2025-01-02 03:04:05.000000Z",
            "2025-01-02T03:04:05.000000+00:00",
        ] {
            assert!(!is_fixed_utc(t), "{t}");
        }
    }

    #[test]
    fn a_changed_column_is_named() {
        let e = entry();
        let body = chain::canonical(1, &e);
        let derived = Columns::from_body(&body).unwrap();
        let from_entry = Columns::from_entry(&e);
        let mut stored = from_entry.values();
        assert_eq!(derived.mismatch(stored), None);
        stored[6] = Some("allow");
        let m = derived.mismatch(stored).unwrap();
        assert!(
            m.contains("`effect` column is `allow` but its body says `block`"),
            "{m}"
        );
        stored[6] = Some("block");
        stored[4] = None;
        let m = derived.mismatch(stored).unwrap();
        assert!(m.contains("`actor_id` column is NULL"), "{m}");
    }
}
