//! A record's wire encoding, written and read by hand: Flink's `TypeSerializer` for our one
//! record type. The bytes are exactly postcard's encoding of `Value` (its serde derive), so a
//! record written here reads back through serde and the other way round; this path only skips
//! serde's visitor machinery, which was a fifth of a record's cost on the hot path.
//!
//! The encoding: the variant index as a varint (`u32`), then a string as a varint length and
//! its UTF-8 bytes, an integer as a zigzag varint, a pair as its two values. Nesting deeper than
//! [`ENCODED_DEPTH_MAX`] is refused rather than followed.

use crate::api::value::{Text, Value};
use std::fmt;

/// The deepest nesting of pairs a decoder follows.
pub const ENCODED_DEPTH_MAX: u32 = 64;

const VARIANT_STR: u8 = 0;
const VARIANT_INT: u8 = 1;
const VARIANT_PAIR: u8 = 2;

/// Why bytes do not decode as a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueDecodeError {
    /// The bytes end inside a record.
    Truncated,
    /// A varint is longer than its type allows, or overflows it.
    BadVarint,
    /// The variant index is not one of `Value`'s.
    BadVariant(u32),
    /// A string's bytes are not UTF-8.
    BadUtf8,
    /// Pairs nest deeper than [`ENCODED_DEPTH_MAX`].
    TooDeep,
}

impl fmt::Display for ValueDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueDecodeError::Truncated => write!(f, "the bytes end inside a record"),
            ValueDecodeError::BadVarint => write!(f, "a varint is malformed"),
            ValueDecodeError::BadVariant(index) => {
                write!(f, "variant {index} is not a string, an integer or a pair")
            }
            ValueDecodeError::BadUtf8 => write!(f, "a string is not UTF-8"),
            ValueDecodeError::TooDeep => {
                write!(f, "pairs nest deeper than {ENCODED_DEPTH_MAX}")
            }
        }
    }
}

impl std::error::Error for ValueDecodeError {}

/// A varint of at most `max_bytes` bytes whose last byte is at most `max_last` (postcard's
/// rule for a `u32` or `u64`): its value and length.
fn varint_of(
    bytes: &[u8],
    max_bytes: usize,
    max_last: u8,
) -> Result<(u64, usize), ValueDecodeError> {
    let mut value = 0u64;
    for index in 0..max_bytes {
        let byte = *bytes.get(index).ok_or(ValueDecodeError::Truncated)?;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            if index == max_bytes - 1 && byte > max_last {
                return Err(ValueDecodeError::BadVarint);
            }
            return Ok((value, index + 1));
        }
    }
    Err(ValueDecodeError::BadVarint)
}

/// A `u64` (or `usize`) varint: its value and length.
pub(crate) fn varint_u64(bytes: &[u8]) -> Result<(u64, usize), ValueDecodeError> {
    // The tenth byte holds the 64th bit only.
    varint_of(bytes, 10, 0x01)
}

/// A variant index (a `u32` varint): its value and length.
pub(crate) fn varint_variant(bytes: &[u8]) -> Result<(u32, usize), ValueDecodeError> {
    // One byte, the common case, without the loop.
    if let Some(&byte) = bytes.first() {
        if byte < 0x80 {
            return Ok((u32::from(byte), 1));
        }
    }
    // The fifth byte holds the top four bits only.
    let (value, length) = varint_of(bytes, 5, 0x0f)?;
    Ok((value as u32, length))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(number: i64) -> u64 {
    ((number << 1) ^ (number >> 63)) as u64
}

fn unzigzag(encoded: u64) -> i64 {
    ((encoded >> 1) as i64) ^ -((encoded & 1) as i64)
}

impl Value {
    /// Appends this record's encoding to `out` (no allocation beyond `out`'s growth).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(text) => {
                out.push(VARIANT_STR);
                put_varint(out, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
            Value::Int(number) => {
                out.push(VARIANT_INT);
                put_varint(out, zigzag(*number));
            }
            Value::Pair(pair) => {
                out.push(VARIANT_PAIR);
                pair.0.encode_into(out);
                pair.1.encode_into(out);
            }
        }
    }

    /// Decodes the record at the start of `bytes`: the record and how many bytes it took.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), ValueDecodeError> {
        decode_at(bytes, 0)
    }
}

fn decode_at(bytes: &[u8], depth: u32) -> Result<(Value, usize), ValueDecodeError> {
    if depth > ENCODED_DEPTH_MAX {
        return Err(ValueDecodeError::TooDeep);
    }
    let (variant, at) = varint_variant(bytes)?;
    match variant {
        0 => {
            let (length, size) = varint_u64(&bytes[at..])?;
            let start = at + size;
            let end = usize::try_from(length)
                .ok()
                .and_then(|length| start.checked_add(length))
                .filter(|end| *end <= bytes.len())
                .ok_or(ValueDecodeError::Truncated)?;
            let text =
                std::str::from_utf8(&bytes[start..end]).map_err(|_| ValueDecodeError::BadUtf8)?;
            Ok((Value::Str(Text::new(text)), end))
        }
        1 => {
            let (encoded, size) = varint_u64(&bytes[at..])?;
            Ok((Value::Int(unzigzag(encoded)), at + size))
        }
        2 => {
            let (first, first_len) = decode_at(&bytes[at..], depth + 1)?;
            let (second, second_len) = decode_at(&bytes[at + first_len..], depth + 1)?;
            Ok((Value::pair(first, second), at + first_len + second_len))
        }
        other => Err(ValueDecodeError::BadVariant(other)),
    }
}

// How many bytes the value encoded at the start of `bytes` takes (no decode, no allocation).
fn encoded_len(bytes: &[u8], depth: u32) -> Option<usize> {
    if depth > ENCODED_DEPTH_MAX {
        return None;
    }
    let (variant, at) = varint_variant(bytes).ok()?;
    let end = match variant {
        0 => {
            let (length, size) = varint_u64(&bytes[at..]).ok()?;
            (at + size).checked_add(usize::try_from(length).ok()?)?
        }
        1 => at + varint_u64(&bytes[at..]).ok()?.1,
        2 => {
            let first = at + encoded_len(&bytes[at..], depth + 1)?;
            first + encoded_len(&bytes[first..], depth + 1)?
        }
        _ => return None,
    };
    (end <= bytes.len()).then_some(end)
}

// Whether `bytes` are exactly one `u64` varint.
fn is_one_varint(bytes: &[u8]) -> bool {
    varint_u64(bytes).is_ok_and(|(_, length)| length == bytes.len())
}

impl Value {
    /// The encoded key of an encoded record, read in place (no decode, no allocation): a
    /// pair's first field, or the whole record, as `upsert_key` keys it. `None` if the bytes
    /// are not exactly one encoded value.
    pub fn encoded_key(bytes: &[u8]) -> Option<&[u8]> {
        // The common record, a short string paired with an integer (a word and its count),
        // read without the general walk.
        if let [VARIANT_PAIR, VARIANT_STR, length, ..] = *bytes {
            let key_end = 3 + usize::from(length);
            if length < 0x80
                && bytes.get(key_end) == Some(&VARIANT_INT)
                && is_one_varint(&bytes[key_end + 1..])
            {
                return Some(&bytes[1..key_end]);
            }
        }
        let (variant, at) = varint_variant(bytes).ok()?;
        if variant != u32::from(VARIANT_PAIR) {
            return (encoded_len(bytes, 0)? == bytes.len()).then_some(bytes);
        }
        // A pair: its first field is the key; both fields are walked once.
        let first = encoded_len(&bytes[at..], 1)?;
        let second = encoded_len(&bytes[at + first..], 1)?;
        (at + first + second == bytes.len()).then_some(&bytes[at..at + first])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            prop_oneof![
                Just(0i64),
                Just(-1),
                Just(63),
                Just(-64),
                Just(64),
                Just(i64::MIN)
            ]
            .prop_map(Value::Int),
            ".{0,40}".prop_map(|s| Value::Str(s.as_str().into())),
            "[a-z]{100,200}".prop_map(|s| Value::Str(s.as_str().into())),
        ];
        leaf.prop_recursive(4, 16, 2, |inner| {
            (inner.clone(), inner).prop_map(|(a, b)| Value::pair(a, b))
        })
    }

    fn postcard_prefix(bytes: &[u8]) -> Result<(Value, usize), postcard::Error> {
        postcard::take_from_bytes::<Value>(bytes)
            .map(|(value, tail)| (value, bytes.len() - tail.len()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// The hand encoding is postcard's, byte for byte, and reads back.
        #[test]
        fn encodes_as_postcard_does_and_round_trips(value in value_strategy(), tail in prop::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = vec![7u8]; // Appends after what is there.
            value.encode_into(&mut bytes);
            prop_assert_eq!(&bytes[1..], &postcard::to_allocvec(&value).unwrap()[..]);
            let length = bytes.len() - 1;
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(Value::decode_prefix(&bytes[1..]), Ok((value, length)));
        }

        /// On any bytes, the hand decoder accepts exactly what postcard accepts, with the same
        /// record and length (nesting within the limit: postcard has none).
        #[test]
        fn decodes_any_bytes_as_postcard_does(bytes in prop::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()],
            0..24,
        )) {
            let ours = Value::decode_prefix(&bytes);
            let theirs = postcard_prefix(&bytes);
            prop_assert_eq!(ours.as_ref().ok(), theirs.as_ref().ok(), "{:?}: {:?} vs {:?}", bytes, ours, theirs);
        }

        /// Every strict prefix of a record is refused (never read as a shorter record).
        #[test]
        fn a_cut_record_is_refused(value in value_strategy()) {
            let mut bytes = Vec::new();
            value.encode_into(&mut bytes);
            for cut in 0..bytes.len() {
                prop_assert!(Value::decode_prefix(&bytes[..cut]).is_err(), "cut at {}", cut);
            }
        }
    }

    #[test]
    fn varint_limits_are_postcards() {
        // A variant padded to five bytes reads; to six, or overflowing u32, it does not.
        assert_eq!(varint_variant(&[0x81, 0x80, 0x80, 0x80, 0x00]), Ok((1, 5)));
        assert_eq!(
            varint_variant(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(ValueDecodeError::BadVarint)
        );
        assert_eq!(
            varint_variant(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            Err(ValueDecodeError::BadVarint)
        );
        let mut max = vec![0xff; 9];
        max.push(0x01);
        assert_eq!(varint_u64(&max), Ok((u64::MAX, 10)));
        *max.last_mut().unwrap() = 0x02;
        assert_eq!(varint_u64(&max), Err(ValueDecodeError::BadVarint));
        assert_eq!(varint_u64(&[0x80]), Err(ValueDecodeError::Truncated));
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let mut deep = vec![VARIANT_PAIR; ENCODED_DEPTH_MAX as usize + 1];
        deep.extend_from_slice(&[VARIANT_INT, 0, VARIANT_INT, 0]);
        assert_eq!(Value::decode_prefix(&deep), Err(ValueDecodeError::TooDeep));
        assert_eq!(
            Value::decode_prefix(&[VARIANT_STR, 1, 0xff]),
            Err(ValueDecodeError::BadUtf8)
        );
        assert_eq!(
            Value::decode_prefix(&[5]),
            Err(ValueDecodeError::BadVariant(5))
        );
    }

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
