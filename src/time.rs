//! Simulated time as the sans-IO cores see it: a `u64` nanosecond count since the run began.
//!
//! Cores never read a clock; the drivers pass `now` in. Only `runtime/` and `sim/` convert
//! from `madsim::time`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A point in simulated time, nanoseconds since the start of the run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Instant(pub u64);

/// A span of simulated time in nanoseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Duration(pub u64);

impl Instant {
    /// The start of the run.
    pub const ZERO: Instant = Instant(0);

    /// An instant `ms` milliseconds after the start.
    pub const fn from_ms(ms: u64) -> Instant {
        Instant(ms * 1_000_000)
    }

    /// Whole milliseconds since the start.
    pub const fn as_ms(self) -> u64 {
        self.0 / 1_000_000
    }

    /// This instant moved forward by `duration`, saturating at the end of time.
    pub const fn add(self, duration: Duration) -> Instant {
        Instant(self.0.saturating_add(duration.0))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);

    /// `ms` milliseconds.
    pub const fn from_ms(ms: u64) -> Duration {
        Duration(ms * 1_000_000)
    }

    /// `us` microseconds.
    pub const fn from_us(us: u64) -> Duration {
        Duration(us * 1_000)
    }

    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Duration {
        Duration(s * 1_000_000_000)
    }

    /// Whole milliseconds.
    pub const fn as_ms(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The same span as a `std::time::Duration` (for madsim's sleep and timeout).
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0)
    }

    /// This span multiplied by `factor`, saturating.
    pub const fn mul(self, factor: u64) -> Duration {
        Duration(self.0.saturating_mul(factor))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03}s",
            self.0 / 1_000_000_000,
            (self.0 / 1_000_000) % 1000
        )
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1_000_000) {
            write!(f, "{}ms", self.0 / 1_000_000)
        } else if self.0.is_multiple_of(1_000) && self.0 < 1_000_000 {
            write!(f, "{}us", self.0 / 1_000)
        } else {
            write!(
                f,
                "{}.{:03}ms",
                self.0 / 1_000_000,
                (self.0 / 1_000) % 1_000
            )
        }
    }
}

/// Parses a duration the way Flink's configuration writes them: `250ms`, `10s`, `10 min`, `1h`.
/// A bare number means milliseconds, as in Flink.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let number_end = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let not_a_duration = || DurationError::NotADuration {
        text: text.to_string(),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = whole.parse().map_err(|_| not_a_duration())?;
    let nanos_per_unit: u64 = match unit.trim() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "us" | "micro" | "micros" | "microsecond" | "microseconds" => 1_000,
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "min" | "m" | "minute" | "minutes" => 60_000_000_000,
        "h" | "hour" | "hours" => 3_600_000_000_000,
        other => {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: other.to_string(),
            })
        }
    };
    // A fraction (as `Display` writes `1.107ms`) counts to the nanosecond.
    let mut fraction_nanos = 0u64;
    let mut scale = nanos_per_unit;
    for digit in fraction.chars() {
        let digit = digit.to_digit(10).ok_or_else(not_a_duration)? as u64;
        scale /= 10;
        fraction_nanos += digit * scale;
    }
    whole
        .checked_mul(nanos_per_unit)
        .and_then(|nanos| nanos.checked_add(fraction_nanos))
        .map(Duration)
        .ok_or_else(|| DurationError::TooLong {
            text: text.to_string(),
        })
}

/// Text that is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number with a unit.
    #[error("`{text}` is not a duration (expected e.g. `250ms`, `10s`, `2min`)")]
    NotADuration {
        /// The text.
        text: String,
    },
    /// A unit Flink does not know.
    #[error("`{text}` has an unknown time unit `{unit}`")]
    UnknownUnit {
        /// The text.
        text: String,
        /// The unit.
        unit: String,
    },
    /// More nanoseconds than a `u64` holds.
    #[error("`{text}` is too long a duration")]
    TooLong {
        /// The text.
        text: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_style_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_ms(250)));
        assert_eq!(parse_duration("10 s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10min"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_ms(7)));
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("1.2.3ms").is_err());
        let odd = Duration(1_107_000);
        assert_eq!(
            parse_duration(&odd.to_string()),
            Ok(odd),
            "Display parses back"
        );
    }
}
