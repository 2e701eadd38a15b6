//! Points in time over the whole RFC 3339 range.
//!
//! `jiff::Timestamp` ends at 9999-12-30T22:00:00Z (its range is symmetric
//! around offsets of up to ±25:59:59), while RFC 3339 text runs to
//! `9999-12-31T23:59:59.999999999-23:59`, that is 10000-01-01T23:58:59Z. An
//! [`Instant`] holds seconds and nanoseconds since the Unix epoch and covers
//! both: it uses jiff for everything jiff can represent and its own code for
//! the last hours of year 9999.

use jiff::SignedDuration;
use std::fmt;

/// A point in time, from -9999-01-01T00:00:00Z (jiff's earliest) to
/// 10000-01-01T23:59:59.999999999Z (past the latest RFC 3339 text).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Instant {
    secs: i64,
    /// 0 to 999,999,999: with `secs` first, the derived order is time order.
    nanos: u32,
}

const NANOS_PER_SEC: i64 = 1_000_000_000;
/// -9999-01-01T00:00:00Z.
const MIN_SECS: i64 = -377_705_116_800;
/// 10000-01-01T23:59:59Z: days_from_civil(10000, 1, 1) * 86400 + 86399.
const MAX_SECS: i64 = 253_402_387_199;

impl Instant {
    /// From seconds and nanoseconds; `None` outside the range.
    fn new(secs: i64, nanos: u32) -> Option<Instant> {
        (nanos < 1_000_000_000 && (MIN_SECS..=MAX_SECS).contains(&secs)).then_some(Instant { secs, nanos })
    }

    /// Parses an RFC 3339 timestamp, by RFC 3339's grammar alone over the
    /// whole range. Not through jiff: it also reads ISO 8601 and Temporal
    /// forms a contract's `timestamp` does not promise (`20260101T000000Z`,
    /// `+01` or `+24:00` offsets, `[America/New_York]` annotations, years
    /// written with six digits), which a tool downstream may read another
    /// way or refuse.
    pub fn parse(text: &str) -> Option<Instant> {
        parse_rfc3339(text)
    }

    /// The same instant as a jiff timestamp, when jiff's range holds it
    /// (it ends at 9999-12-30T22:00:00Z).
    pub fn to_jiff(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::new(self.secs, i32::try_from(self.nanos).ok()?).ok()
    }

    /// Whole seconds since the Unix epoch (rounded towards negative
    /// infinity, as jiff's `as_second` for whole-second instants).
    pub fn as_second(self) -> i64 {
        // As jiff: the seconds part of a timestamp before the epoch with a
        // fraction is the whole second towards zero.
        let t = self.as_nanos();
        i64::try_from(t / i128::from(NANOS_PER_SEC)).unwrap_or(self.secs)
    }

    fn as_nanos(self) -> i128 {
        i128::from(self.secs) * i128::from(NANOS_PER_SEC) + i128::from(self.nanos)
    }

    fn from_nanos(n: i128) -> Option<Instant> {
        let secs = i64::try_from(n.div_euclid(i128::from(NANOS_PER_SEC))).ok()?;
        let nanos = u32::try_from(n.rem_euclid(i128::from(NANOS_PER_SEC))).ok()?;
        Instant::new(secs, nanos)
    }

    /// `self + d`, or `None` out of range.
    pub fn checked_add(self, d: SignedDuration) -> Option<Instant> {
        Instant::from_nanos(self.as_nanos().checked_add(d.as_nanos())?)
    }

    /// `self - d`, or `None` out of range.
    pub fn checked_sub(self, d: SignedDuration) -> Option<Instant> {
        Instant::from_nanos(self.as_nanos().checked_sub(d.as_nanos())?)
    }

    /// `self - earlier` (exact: the range spans far less than the largest
    /// duration).
    pub fn duration_since(self, earlier: Instant) -> SignedDuration {
        let n = self.as_nanos() - earlier.as_nanos();
        let secs = i64::try_from(n.div_euclid(i128::from(NANOS_PER_SEC))).unwrap_or(i64::MAX);
        let nanos = i32::try_from(n.rem_euclid(i128::from(NANOS_PER_SEC))).unwrap_or(0);
        SignedDuration::new(secs, nanos)
    }
}

impl From<jiff::Timestamp> for Instant {
    fn from(t: jiff::Timestamp) -> Instant {
        let n = t.as_nanosecond();
        Instant {
            secs: i64::try_from(n.div_euclid(i128::from(NANOS_PER_SEC))).unwrap_or(0),
            nanos: u32::try_from(n.rem_euclid(i128::from(NANOS_PER_SEC))).unwrap_or(0),
        }
    }
}

impl fmt::Display for Instant {
    /// As jiff writes a timestamp (`2026-01-31T12:00:00.5Z`), also past
    /// jiff's range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Ok(t) = jiff::Timestamp::new(self.secs, self.nanos as i32) {
            return write!(f, "{t}");
        }
        let days = self.secs.div_euclid(86_400);
        let in_day = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            in_day / 3600,
            in_day / 60 % 60,
            in_day % 60
        )?;
        if self.nanos != 0 {
            let digits = format!("{:09}", self.nanos);
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// RFC 3339 `date-time`: `YYYY-MM-DD` `T` (or `t`, or a space)
/// `hh:mm:ss`, an optional fraction (1 to 9 digits), `Z` (or `z`) or
/// `±hh:mm`. A leap second (`:60`) reads as `:59`, as jiff reads it.
fn parse_rfc3339(text: &str) -> Option<Instant> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !at(4, b'-') || !at(7, b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !at(13, b':') || !at(16, b':') {
        return None;
    }
    let month_days = [
        31,
        if is_leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = *month_days.get(usize::try_from(month).ok()?.checked_sub(1)?)?;
    if day < 1 || day > max_day || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if at(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        for k in 0..9 {
            let d = if k < digits { u32::from(b[i + 1 + k] - b'0') } else { 0 };
            nanos = nanos * 10 + d;
        }
        i += 1 + digits;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && at(i + 3, b':') => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = oh * 3600 + om * 60;
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
    Instant::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_range_ends_where_rfc_3339_text_ends() {
        let last = Instant::parse("9999-12-31T23:59:59.999999999-23:59").unwrap();
        assert_eq!(last.to_string(), "10000-01-01T23:58:59.999999999Z");
        let t = Instant::parse("9999-12-31T23:59:59Z").unwrap();
        assert_eq!(t.to_string(), "9999-12-31T23:59:59Z");
        assert!(t > Instant::parse("9999-12-30T22:00:00Z").unwrap());
        assert_eq!(
            t.duration_since(Instant::parse("9999-12-30T22:00:00Z").unwrap()),
            SignedDuration::from_secs(93_599)
        );
        assert_eq!(
            t.checked_add(SignedDuration::from_secs(1)).unwrap().to_string(),
            "10000-01-01T00:00:00Z"
        );
        let max = Instant::new(MAX_SECS, 999_999_999).unwrap();
        assert_eq!(max.to_string(), "10000-01-01T23:59:59.999999999Z");
        assert!(max.checked_add(SignedDuration::from_nanos(1)).is_none());
        let first = Instant::parse("0000-01-01T00:00:00+23:59").unwrap();
        assert_eq!(first.to_string(), "-000001-12-31T00:01:00Z");
        for bad in [
            "9999-12-31T23:59:59",
            "9999-12-32T00:00:00Z",
            "9999-02-29T00:00:00Z",
            "9999-12-31T24:00:00Z",
            "9999-12-31T23:59:59+24:00",
            "9999-12-31T23:59:59.Z",
            "9999-12-31T23:59:59.1234567890Z",
            "9999-12-31T23:59:59Zjunk",
            "9999-12-31",
            // ISO 8601 and Temporal forms that are not RFC 3339, within
            // jiff's range too.
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00-25:59",
            "2026-01-01T00:00:00+01",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+01:00:30",
            "2026-01-01T00:00:00Z[America/New_York]",
            "2026-01-01T00:00:00+01:00[Europe/Paris]",
            "20260101T000000Z",
            "2026-01-01T00:00Z",
            "2026-01-01T00Z",
            "+002026-01-01T00:00:00Z",
            "-000001-01-01T00:00:00Z",
            "2026-01-01T00:00:00,5Z",
            "2026-1-01T00:00:00Z",
        ] {
            assert_eq!(Instant::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Within jiff's range, the parser beyond it agrees with jiff, and
        /// so do formatting and arithmetic.
        #[test]
        fn agrees_with_jiff_where_jiff_reaches(
            secs in -62_167_219_200i64..253_402_207_200,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
            offset_minutes in -1439i64..=1439,
            step in -1_000_000_000i64..1_000_000_000,
        ) {
            let t = jiff::Timestamp::new(secs, nanos as i32).unwrap();
            let ours = Instant::from(t);
            prop_assert_eq!(ours.to_string(), t.to_string());
            let offset = jiff::tz::Offset::from_seconds((offset_minutes * 60) as i32).unwrap();
            let local = offset.to_datetime(t);
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let (oh, om) = (offset_minutes.abs() / 60, offset_minutes.abs() % 60);
            let text = format!("{}{sign}{oh:02}:{om:02}", local.strftime("%Y-%m-%dT%H:%M:%S%.f"));
            if let Ok(back) = text.parse::<jiff::Timestamp>() {
                prop_assert_eq!(parse_rfc3339(&text), Some(Instant::from(back)), "{}", text);
            }
            let (ours_utc, civil) = (Instant::new(secs, 0).unwrap(), jiff::Timestamp::from_second(secs).unwrap());
            let days = secs.div_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            let date = jiff::tz::Offset::UTC.to_datetime(civil).date();
            prop_assert_eq!((y, m, d), (i64::from(date.year()), i64::from(date.month()), i64::from(date.day())));
            prop_assert_eq!(days_from_civil(y, m, d), days);
            let d = SignedDuration::from_secs(step);
            if let Ok(sum) = t.checked_add(d) {
                prop_assert_eq!(ours.checked_add(d), Some(Instant::from(sum)));
            }
            prop_assert_eq!(ours_utc.as_second(), civil.as_second());
            prop_assert_eq!(ours.as_second(), t.as_second());
        }
    }
}
