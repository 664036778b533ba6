//! The record type that flows between operators, like Flink's `Row`: small, ordered, serde.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One record (or a field of one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Value {
    /// A string.
    Str(String),
    /// A signed integer.
    Int(i64),
    /// Two values, e.g. a word and its count.
    Pair(Box<Value>, Box<Value>),
}

impl Value {
    /// A pair of two values.
    pub fn pair(first: Value, second: Value) -> Value {
        Value::Pair(Box::new(first), Box::new(second))
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
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
            Value::Pair(first, second) => write!(f, "({first},{second})"),
        }
    }
}
