//! The record type that flows between operators, like Flink's `Row`: small, ordered, serde.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A record's text: up to 24 bytes are held inline, so a word or a key costs no heap
/// allocation (the per-record path of a word count allocates nothing for its strings).
pub type Text = compact_str::CompactString;

/// One record (or a field of one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// A string.
    Str(Text),
    /// A signed integer.
    Int(i64),
    /// Two values, e.g. a word and its count (one allocation for both).
    Pair(Box<(Value, Value)>),
}

impl Value {
    /// A pair of two values.
    pub fn pair(first: Value, second: Value) -> Value {
        Value::Pair(Box::new((first, second)))
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The first field of a pair, if this is one.
    pub fn first(&self) -> Option<&Value> {
        match self {
            Value::Pair(pair) => Some(&pair.0),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(number) => Some(*number),
            _ => None,
        }
    }
}

// Postcard's encoding of `Value` (the one wire format): the variant index as a varint, then
// a string as a varint length and its bytes, an integer as a zigzag varint, a pair as its two
// values. Nesting deeper than this is refused rather than followed.
const ENCODED_DEPTH_MAX: u32 = 64;

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            // The tenth byte holds the 64th bit only (postcard refuses more).
            return (index < 9 || *byte <= 1).then_some((value, index + 1));
        }
    }
    None
}

// Whether `bytes` are exactly one varint.
fn is_one_varint(bytes: &[u8]) -> bool {
    varint(bytes).is_some_and(|(_, length)| length == bytes.len())
}

// How many bytes the value encoded at the start of `bytes` takes.
fn encoded_len(bytes: &[u8], depth: u32) -> Option<usize> {
    if depth > ENCODED_DEPTH_MAX {
        return None;
    }
    let (variant, at) = varint(bytes)?;
    let end = match variant {
        0 => {
            let (length, size) = varint(&bytes[at..])?;
            (at + size).checked_add(usize::try_from(length).ok()?)?
        }
        1 => at + varint(&bytes[at..])?.1,
        2 => {
            let first = at + encoded_len(&bytes[at..], depth + 1)?;
            first + encoded_len(&bytes[first..], depth + 1)?
        }
        _ => return None,
    };
    (end <= bytes.len()).then_some(end)
}

impl Value {
    /// The encoded key of an encoded record, read in place (no decode, no allocation): a
    /// pair's first field, or the whole record, as `upsert_key` keys it. `None` if the bytes
    /// are not exactly one encoded value.
    pub fn encoded_key(bytes: &[u8]) -> Option<&[u8]> {
        // The common record, a short string paired with an integer (a word and its count),
        // read without the general walk.
        if let [2, 0, length, ..] = *bytes {
            let key_end = 3 + usize::from(length);
            if length < 0x80
                && bytes.get(key_end) == Some(&1)
                && is_one_varint(&bytes[key_end + 1..])
            {
                return Some(&bytes[1..key_end]);
            }
        }
        let (variant, at) = varint(bytes)?;
        if variant != 2 {
            return (encoded_len(bytes, 0)? == bytes.len()).then_some(bytes);
        }
        // A pair: its first field is the key; both fields are walked once.
        let first = encoded_len(&bytes[at..], 1)?;
        let second = encoded_len(&bytes[at + first..], 1)?;
        (at + first + second == bytes.len()).then_some(&bytes[at..at + first])
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(text) => write!(f, "{text}"),
            Value::Int(number) => write!(f, "{number}"),
            Value::Pair(pair) => write!(f, "({},{})", pair.0, pair.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoded_key_is_the_encoding_of_the_key() {
        let long = "a word longer than a hundred and twenty-seven bytes ".repeat(4);
        let values = [
            Value::Str("hello".into()),
            Value::Str(long.as_str().into()),
            Value::Int(-70_000),
            Value::pair(Value::Str("word".into()), Value::Int(300)),
            Value::pair(Value::Str("".into()), Value::Int(i64::MIN)),
            Value::pair(Value::Str("x".repeat(127).as_str().into()), Value::Int(-1)),
            Value::pair(Value::Str("x".repeat(128).as_str().into()), Value::Int(1)),
            Value::pair(Value::Int(i64::MIN), Value::Str(long.as_str().into())),
            Value::pair(
                Value::pair(Value::Str("a".into()), Value::Int(1)),
                Value::Int(2),
            ),
        ];
        for value in values {
            let encoded = postcard::to_allocvec(&value).unwrap();
            let key = value.first().unwrap_or(&value);
            let key_encoded = postcard::to_allocvec(key).unwrap();
            assert_eq!(
                Value::encoded_key(&encoded),
                Some(&key_encoded[..]),
                "{value}"
            );
            // Not exactly one value: truncated, or with bytes after it.
            assert_eq!(Value::encoded_key(&encoded[..encoded.len() - 1]), None);
            let mut longer = encoded.clone();
            longer.push(1);
            assert_eq!(Value::encoded_key(&longer), None);
        }
        assert_eq!(Value::encoded_key(&[3]), None, "no such variant");
        assert_eq!(
            Value::encoded_key(&[2; 1000]),
            None,
            "nested past the limit"
        );
    }
}
