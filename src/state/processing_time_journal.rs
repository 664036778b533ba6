//! The processing-time journal: per key, the processing time at which each of its records
//! was handled (and which record it was) and each of its timers fired, kept as hidden keyed
//! state of an operator whose function reads processing time (timers, state TTL) or broadcast
//! state (then each record's entry also names the broadcast state it saw).
//!
//! Processing time is not a function of the input, so a reference evaluation cannot derive
//! it: it replays the journal instead, handing each record the time the run handled it and
//! firing each timer where the run did, and so checks everything else (state, TTL expiry,
//! what the timers did, what was checkpointed) exactly. Being keyed state, the journal is
//! snapshotted, restored and redistributed with the rest: a restored key's journal is
//! exactly the history of the state it holds.

use crate::api::value::Text;
use crate::state::broadcast_state::BroadcastLineages;
use crate::state::snapshot::{LogicalKeyedState, StateEntry};
use crate::state::state_error::StateError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The hidden state's name.
pub const JOURNAL_STATE: &str = "_snapflow/processing-time";

/// One entry of a key's journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalEntry {
    /// A record of the key was handled at `at` (milliseconds).
    Record {
        /// Processing time when it was handled.
        at: u64,
        /// The record's fingerprint: which of the key's records it was.
        fingerprint: u64,
    },
    /// The key's timer for `timestamp` fired at `at`.
    Timer {
        /// The timer's timestamp.
        timestamp: u64,
        /// Processing time when it fired.
        at: u64,
    },
    /// A record of the key was handled by a keyed broadcast function, at `at`, with the
    /// broadcast state whose application log has digest `broadcast`.
    BroadcastRecord {
        /// Processing time when it was handled.
        at: u64,
        /// The record's fingerprint.
        fingerprint: u64,
        /// The digest of the subtask's broadcast application log then.
        broadcast: u64,
    },
}

impl JournalEntry {
    /// Its encoding as a list element.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("journal entries always encode")
    }

    /// Decodes a list element.
    pub fn decode(bytes: &[u8]) -> Result<JournalEntry, StateError> {
        postcard::from_bytes(bytes).map_err(|e| {
            StateError(format!(
                "a processing-time journal entry does not decode: {e}"
            ))
        })
    }
}

/// Per keyed operator uid, per key, the journal to replay; with the broadcast application
/// logs its entries' digests name (keyed broadcast functions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessingTimeJournals {
    /// Per keyed operator uid, per key, the journal.
    pub keys: BTreeMap<String, BTreeMap<Text, Vec<JournalEntry>>>,
    /// The broadcast states' application logs.
    pub broadcast: BroadcastLineages,
}

impl ProcessingTimeJournals {
    /// No journal.
    pub fn new() -> ProcessingTimeJournals {
        ProcessingTimeJournals::default()
    }
}

impl std::ops::Deref for ProcessingTimeJournals {
    type Target = BTreeMap<String, BTreeMap<Text, Vec<JournalEntry>>>;

    fn deref(&self) -> &Self::Target {
        &self.keys
    }
}

impl std::ops::DerefMut for ProcessingTimeJournals {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.keys
    }
}

/// The journals held in `state` (keyed state per operator uid).
pub fn journals_of(
    state: &BTreeMap<String, LogicalKeyedState>,
) -> Result<ProcessingTimeJournals, StateError> {
    let mut journals = ProcessingTimeJournals::new();
    for (uid, keys) in state {
        for (key, states) in keys {
            let Some(entry) = states.get(JOURNAL_STATE) else {
                continue;
            };
            let StateEntry::List(items) = entry else {
                return Err(StateError(format!(
                    "operator `{uid}` key `{key}`: the processing-time journal is {} state",
                    entry.kind_name()
                )));
            };
            let decoded = items
                .iter()
                .map(|bytes| JournalEntry::decode(bytes))
                .collect::<Result<Vec<_>, _>>()?;
            journals
                .entry(uid.clone())
                .or_default()
                .insert(key.clone(), decoded);
        }
    }
    Ok(journals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_are_read_from_state() {
        let entries = [
            JournalEntry::Record {
                at: 5,
                fingerprint: 77,
            },
            JournalEntry::Timer {
                timestamp: 9,
                at: 10,
            },
        ];
        let items = entries.iter().map(JournalEntry::encode).collect();
        let mut keys = LogicalKeyedState::new();
        keys.entry(Text::from("k"))
            .or_default()
            .insert(JOURNAL_STATE.to_string(), StateEntry::List(items));
        let state = BTreeMap::from([("op".to_string(), keys)]);
        let journals = journals_of(&state).unwrap();
        assert_eq!(journals["op"][&Text::from("k")], entries.to_vec());
        assert!(JournalEntry::decode(&[9, 9]).is_err());
    }
}
