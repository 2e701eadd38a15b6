//! The rule index: one row `(rule, seq)` per rule id a record matched
//! (`audit_rules` on both stores), so that "records that matched rule R,
//! newest first" reads an ordered index range instead of parsing every
//! record's `rules`. The database fills it from the `rules` column by a
//! trigger on the audit table's inserts (and the migration that made it
//! fills it from the records already there), so the writers need not know
//! it.
//!
//! Like the other query columns it is a copy the chain does not cover: a
//! row removed from it would hide a record from the rule filter. `verify`
//! therefore compares it with the records' bodies, as a multiset digest
//! ([`RuleDigest`]): the same sum over the pairs read from the bodies and
//! over the rows of the index, in any order, without sorting or keeping
//! either.
//!
//! The sum is of a keyed hash, under a key drawn at random by each process
//! and never stored: a sum of an unkeyed hash can be matched by forged rows
//! (a generalized birthday search finds a set of pairs with any given sum),
//! but without the key nobody can compute what a forged row adds.

use std::borrow::Cow;
use std::sync::LazyLock;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// This process's key for [`RuleDigest`] (`None`: no randomness; every
/// digest is then unusable, and verify says so rather than compare).
static KEY: LazyLock<Option<[u8; 32]>> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).ok().map(|()| key)
});

/// An order-independent digest of a set of `(seq, rule)` pairs: the count
/// and the wrapping sums of the two halves of a keyed 256-bit hash of each
/// pair. Two sets that differ (a pair added, removed or changed) have
/// different digests but with negligible probability, even when chosen by
/// someone who can write the database (see the module's doc).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RuleDigest {
    pairs: u64,
    sums: [u128; 2],
    /// The key could not be drawn: equal to no digest.
    unkeyed: bool,
}

impl PartialEq for RuleDigest {
    fn eq(&self, other: &RuleDigest) -> bool {
        !self.unkeyed && !other.unkeyed && self.pairs == other.pairs && self.sums == other.sums
    }
}

impl RuleDigest {
    /// Adds one pair.
    pub(crate) fn add(&mut self, seq: u64, rule: &str) {
        let Some(key) = KEY.as_ref() else {
            self.unkeyed = true;
            return;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
            self.unkeyed = true;
            return;
        };
        mac.update(&seq.to_le_bytes());
        mac.update(rule.as_bytes());
        let out = mac.finalize().into_bytes();
        let (mut low, mut high) = ([0u8; 16], [0u8; 16]);
        low.copy_from_slice(&out[..16]);
        high.copy_from_slice(&out[16..]);
        self.pairs += 1;
        self.sums[0] = self.sums[0].wrapping_add(u128::from_le_bytes(low));
        self.sums[1] = self.sums[1].wrapping_add(u128::from_le_bytes(high));
    }

    /// Adds the distinct rules of a record's canonical `rules` array (the
    /// index keeps each rule once per record). `Err` if it is not an array
    /// of strings.
    pub(crate) fn add_record(&mut self, seq: u64, rules_json: &str) -> Result<(), String> {
        let mut rules: Vec<Cow<'_, str>> =
            serde_json::from_str(rules_json).map_err(|e| format!("its rules are not a list of rule ids ({e})"))?;
        rules.sort_unstable();
        rules.dedup();
        for rule in &rules {
            self.add(seq, rule);
        }
        Ok(())
    }
}

/// The problem `verify` reports when the index and the bodies disagree,
/// at the first record where they do (`None`: could not be found).
pub(crate) fn mismatch_problem(seq: Option<u64>) -> (u64, String) {
    let problem = "the rule index (audit_rules) does not match the rules its body records (a row of the index \
                   was edited, added or removed)";
    match seq {
        Some(seq) => (seq, format!("record {seq} was changed: {problem}")),
        None => (1, format!("the rule index was changed: {problem}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_order_and_duplicates_within_a_record() {
        let mut a = RuleDigest::default();
        a.add_record(1, r#"["r1","r2"]"#).unwrap();
        a.add_record(2, r#"["r2","r2"]"#).unwrap();
        let mut b = RuleDigest::default();
        b.add(2, "r2");
        b.add(1, "r2");
        b.add(1, "r1");
        assert_eq!(a, b);
        // A pair moved to another record, removed, or renamed: different.
        let mut moved = RuleDigest::default();
        moved.add(2, "r2");
        moved.add(2, "r1");
        moved.add(1, "r2");
        assert_ne!(a, moved);
        let mut fewer = RuleDigest::default();
        fewer.add(1, "r1");
        fewer.add(1, "r2");
        assert_ne!(a, fewer);
        assert!(RuleDigest::default().add_record(1, r#"[1]"#).is_err());
    }
}
