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

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(text) => write!(f, "{text}"),
            Value::Int(number) => write!(f, "{number}"),
            Value::Pair(pair) => write!(f, "({},{})", pair.0, pair.1),
        }
    }
}
