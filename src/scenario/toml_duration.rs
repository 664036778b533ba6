//! Durations and instants as scenario files write them: text as Flink writes durations
//! (`250ms`, `10s`, `2min`) or a bare number of milliseconds, as Flink's configuration reads
//! both; written back as text that reads back to the same value.

use crate::time::{parse_duration, Duration};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration field of a scenario file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TomlDuration(pub Duration);

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Milliseconds(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for TomlDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let parsed = match DurationValue::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "a duration is text such as \"250ms\" or a whole number of milliseconds",
            )
        })? {
            DurationValue::Milliseconds(ms) => ms
                .checked_mul(1_000_000)
                .map(Duration)
                .ok_or_else(|| format!("{ms} ms is too long a duration")),
            DurationValue::Text(text) => parse_duration(&text).map_err(|e| e.to_string()),
        };
        parsed.map(TomlDuration).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TomlDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// `#[serde(with)]` for a `Duration` field.
pub mod duration {
    use crate::scenario::toml_duration::TomlDuration;
    use crate::time::Duration;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes it as text.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        TomlDuration(*value).serialize(serializer)
    }

    /// Reads text or milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        TomlDuration::deserialize(deserializer).map(|d| d.0)
    }
}

/// `#[serde(with)]` for an optional `Duration` field (absent when `None`).
pub mod optional_duration {
    use crate::scenario::toml_duration::TomlDuration;
    use crate::time::Duration;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes it as text.
    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.map(TomlDuration).serialize(serializer)
    }

    /// Reads text or milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<TomlDuration>::deserialize(deserializer).map(|d| d.map(|d| d.0))
    }
}

/// `#[serde(with)]` for an `Instant` field: the time since the run started, as a duration.
pub mod instant {
    use crate::scenario::toml_duration::TomlDuration;
    use crate::time::Instant;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes it as the duration since the start.
    pub fn serialize<S: Serializer>(value: &Instant, serializer: S) -> Result<S::Ok, S::Error> {
        TomlDuration(value.since(Instant::ZERO)).serialize(serializer)
    }

    /// Reads text or milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Instant, D::Error> {
        TomlDuration::deserialize(deserializer).map(|d| Instant(d.0 .0))
    }
}
