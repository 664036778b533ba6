//! Renders keyed state the way reports and check details show it.

use super::*;
use crate::state::processing_time_journal::{JournalEntry, JOURNAL_STATE};
use crate::state::timer_service::{timer_timestamp, TIMER_STATE};

/// Renders state entries with the job's own `describe_state`.
pub struct StateDescriber {
    chain: OperatorChain,
    // (operator uid, state name) of the states under TTL: their values carry a stamp.
    ttl_states: std::collections::BTreeSet<(String, String)>,
}

impl StateDescriber {
    /// A describer for `job`'s keyed operators.
    pub fn new(job: &Job) -> StateDescriber {
        let whole = KeyGroupRange {
            start: 0,
            end: job.max_parallelism - 1,
        };
        StateDescriber {
            chain: OperatorChain::new(job, 0..job.operators.len(), whole),
            ttl_states: Default::default(),
        }
    }

    /// Values of the states `visibility` knows to be under TTL are shown without their
    /// last-access stamp, as the job's own `describe_state` reads them.
    pub fn with_ttl_states(mut self, visibility: &TtlVisibility) -> Self {
        self.ttl_states.extend(
            visibility
                .states()
                .map(|(uid, name)| (uid.to_string(), name.to_string())),
        );
        self
    }

    /// One key's states, e.g. `{count=3}`, or `nothing`.
    pub fn describe(&self, uid: &str, entries: Option<&BTreeMap<String, StateEntry>>) -> String {
        let Some(entries) = entries else {
            return "nothing".to_string();
        };
        let parts: Vec<String> = entries
            .iter()
            .map(|(name, entry)| format!("{name}={}", self.entry_text(uid, name, entry)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// One entry: a value by the job's own `describe_state`, timers by their timestamps,
    /// the journal by its length and last entry, a list or map by its size.
    fn entry_text(&self, uid: &str, name: &str, entry: &StateEntry) -> String {
        match (name, entry) {
            (TIMER_STATE, StateEntry::Map(timers)) => {
                let times: Vec<String> = timers
                    .keys()
                    .filter_map(|key| timer_timestamp(key))
                    .map(|t| format!("{t}ms"))
                    .collect();
                format!("[{}]", times.join(" "))
            }
            (JOURNAL_STATE, StateEntry::List(items)) => {
                let last = items
                    .last()
                    .and_then(|bytes| JournalEntry::decode(bytes).ok());
                format!("{} entries, last {last:?}", items.len())
            }
            (_, StateEntry::Value(bytes)) => {
                let stamped = self
                    .ttl_states
                    .contains(&(uid.to_string(), name.to_string()));
                match bytes.split_at_checked(8).filter(|_| stamped) {
                    Some((_, user)) => self.chain.describe_state(uid, name, user),
                    None => self.chain.describe_state(uid, name, bytes),
                }
                .unwrap_or_default()
            }
            (_, StateEntry::List(items)) => format!("<list of {}>", items.len()),
            (_, StateEntry::Map(map)) => format!("<map of {}>", map.len()),
        }
    }

    /// A keyed state view as `key→value` pairs, for reports (the journal left out).
    pub fn describe_all(&self, uid: &str, state: &LogicalKeyedState, limit: usize) -> String {
        let mut parts: Vec<String> = state
            .iter()
            .take(limit)
            .map(|(key, entries)| {
                let values: Vec<String> = entries
                    .iter()
                    .filter(|(name, _)| name.as_str() != JOURNAL_STATE)
                    .map(|(name, entry)| match entry {
                        StateEntry::Value(_) => self.entry_text(uid, name, entry),
                        _ => format!("{name}={}", self.entry_text(uid, name, entry)),
                    })
                    .collect();
                format!("{key}→{}", values.join("/"))
            })
            .collect();
        if state.len() > limit {
            parts.push(format!("… ({} keys in all)", state.len()));
        }
        parts.join(" ")
    }
}
