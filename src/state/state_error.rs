//! Why a keyed state access failed.

use std::fmt;

/// Why a state access failed: a key outside the subtask's key groups, a state used as
/// another kind, a value that does not decode, processing time read undeclared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError(pub String);

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state error: {}", self.0)
    }
}
