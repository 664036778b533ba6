//! Renders keyed state the way reports and check details show it.

use super::*;

/// Renders state entries with the job's own `describe_state`.
pub struct StateDescriber {
    chain: OperatorChain,
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
        }
    }

    /// One key's states, e.g. `{count=3}`, or `nothing`.
    pub fn describe(&self, uid: &str, entries: Option<&BTreeMap<String, StateEntry>>) -> String {
        let Some(entries) = entries else {
            return "nothing".to_string();
        };
        let parts: Vec<String> = entries
            .iter()
            .map(|(name, entry)| match entry {
                StateEntry::Value(bytes) => format!(
                    "{name}={}",
                    self.chain
                        .describe_state(uid, name, bytes)
                        .unwrap_or_default()
                ),
                other => format!("{name}=<{} state>", other.kind_name()),
            })
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// A keyed state view as `key→value` pairs, for reports.
    pub fn describe_all(&self, uid: &str, state: &LogicalKeyedState, limit: usize) -> String {
        let mut parts: Vec<String> = state
            .iter()
            .take(limit)
            .map(|(key, entries)| {
                let values: Vec<String> = entries
                    .iter()
                    .map(|(name, entry)| match entry {
                        StateEntry::Value(bytes) => self
                            .chain
                            .describe_state(uid, name, bytes)
                            .unwrap_or_default(),
                        other => format!("<{} state>", other.kind_name()),
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
