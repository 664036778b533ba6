//! Memory sizes as scenario files write them, after Flink's `MemorySize`: a bare number of
//! bytes, or text with a unit (`512b`, `20 kb`, `5mb`, `1gb`; units are powers of 1024).

use serde::{Deserialize, Deserializer};

/// A memory-size field of a scenario file, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TomlMemorySize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum MemoryValue {
    Bytes(u64),
    Text(String),
}

/// Parses `text` as Flink's `MemorySize.parse` does.
pub fn parse_memory_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a memory size such as \"20 kb\" or \"5mb\""))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 0,
        "k" | "kb" | "kibibytes" => 10,
        "m" | "mb" | "mebibytes" => 20,
        "g" | "gb" | "gibibytes" => 30,
        "t" | "tb" | "tebibytes" => 40,
        other => {
            return Err(format!(
                "`{text}`: `{other}` is not a unit (b, kb, mb, gb, tb)"
            ))
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

impl<'de> Deserialize<'de> for TomlMemorySize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let parsed = match MemoryValue::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("a memory size is text such as \"5mb\" or a number of bytes")
        })? {
            MemoryValue::Bytes(bytes) => Ok(bytes),
            MemoryValue::Text(text) => parse_memory_size(&text),
        };
        parsed.map(TomlMemorySize).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_flink_writes_them_and_bad_ones_name_the_problem() {
        assert_eq!(parse_memory_size("512"), Ok(512));
        assert_eq!(parse_memory_size("20 kb"), Ok(20 * 1024));
        assert_eq!(parse_memory_size("5MB"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_memory_size("1g"), Ok(1 << 30));
        assert!(parse_memory_size("5 parsecs")
            .unwrap_err()
            .contains("`parsecs`"));
        assert!(parse_memory_size("mb")
            .unwrap_err()
            .contains("not a memory size"));
        assert!(parse_memory_size("99999999999 tb")
            .unwrap_err()
            .contains("too large"));
    }
}
