//! Timestamps and usage periods. All times are UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A UTC instant with microsecond precision.
///
/// Microseconds because PostgreSQL's `timestamptz` keeps no more: truncating on creation makes a value read back
/// from either backend equal to the value written.
///
/// Printed one way everywhere (`Display`, `Debug` and serde): RFC 3339 in UTC with exactly six fractional digits,
/// `2026-01-31T12:00:00.123450Z`, so the REST API, the live stream and webhook bodies never print one instant two
/// ways. Reading accepts any RFC 3339 instant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(DateTime<Utc>);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // chrono's own serde form drops trailing zero digits, so one instant would print with 0 to 9 of them.
        serializer.collect_str(self)
    }
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.trunc_subsecs(6))
    }

    pub const fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// The usage period (calendar month, UTC) this instant falls in.
    pub fn period(&self) -> UsagePeriod {
        UsagePeriod { year: self.0.year(), month: self.0.month() }
    }

    pub fn date(&self) -> NaiveDate {
        self.0.date_naive()
    }

    pub fn checked_add(&self, duration: chrono::Duration) -> Option<Self> {
        self.0.checked_add_signed(duration).map(Self::from_datetime)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self::from_datetime(at)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(ts: Timestamp) -> Self {
        ts.0
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A calendar month in UTC: the unit quotas reset on and usage is recorded by. Written `YYYY-MM`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsagePeriod {
    year: i32,
    month: u32,
}

impl UsagePeriod {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1970..=9999).contains(&year)).then_some(Self { year, month })
    }

    pub const fn year(&self) -> i32 {
        self.year
    }

    pub const fn month(&self) -> u32 {
        self.month
    }

    /// The first instant of the period.
    pub fn start(&self) -> Timestamp {
        Timestamp(Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC))
    }

    /// The period after this one; its start is when this period's quota resets.
    pub fn next(&self) -> Self {
        if self.month == 12 {
            Self { year: self.year + 1, month: 1 }
        } else {
            Self { year: self.year, month: self.month + 1 }
        }
    }
}

impl fmt::Display for UsagePeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl fmt::Debug for UsagePeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a `YYYY-MM` period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usage period (YYYY-MM): {0:?}")]
pub struct PeriodParseError(pub String);

impl FromStr for UsagePeriod {
    type Err = PeriodParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PeriodParseError(s.to_owned());
        let (year, month) = s.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year = year.parse().map_err(|_| bad())?;
        let month = month.parse().map_err(|_| bad())?;
        Self::new(year, month).ok_or_else(bad)
    }
}

impl Serialize for UsagePeriod {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UsagePeriod {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_microseconds_only() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 1, 2, 3).single().expect("valid")
            + chrono::Duration::nanoseconds(123_456_789);
        let ts = Timestamp::from(at);
        assert_eq!(ts.as_datetime().timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn period_rolls_over_at_year_end() {
        let dec = UsagePeriod::new(2026, 12).expect("valid");
        assert_eq!(dec.next().to_string(), "2027-01");
        assert_eq!(dec.next().start().to_string(), "2027-01-01T00:00:00.000000Z");
    }

    #[test]
    fn period_parses_only_its_own_form() {
        assert_eq!("2026-03".parse::<UsagePeriod>().expect("valid").to_string(), "2026-03");
        for bad in ["2026-13", "2026-3", "26-03", "2026/03", "", "2026-00"] {
            assert!(bad.parse::<UsagePeriod>().is_err(), "{bad:?} must be refused");
        }
    }
}
