//! What a reader sees of keyed state under a time-to-live, as the checker compares it.
//!
//! Expired values a backend still holds are invisible under `NeverReturnExpired`, and
//! which of them are still held depends on where cleanup ran: incremental cleanup walks a
//! subtask's own keys, a full-snapshot cleanup drops them at snapshot time, while the
//! reference holds every key in one backend. So state under TTL is compared as visible at
//! each snapshot's processing time: what expired by then is left out on both sides.

use crate::api::value::Text;
use crate::state::key_group::{key_group_for_key, KeyGroupRange};
use crate::state::snapshot::{KeyedStateSnapshot, LogicalKeyedState};
use crate::state::state_ttl::retain_live;
use std::collections::BTreeMap;

/// One keyed operator's states under TTL and each snapshot's time, by key-group range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct OperatorVisibility {
    max_parallelism: u32,
    ttl_ms: BTreeMap<String, u64>,
    times: Vec<(KeyGroupRange, u64)>,
}

/// The visibility rule of a set of snapshots (a checkpoint's, or a run's final ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TtlVisibility {
    operators: BTreeMap<String, OperatorVisibility>,
}

impl TtlVisibility {
    /// The rule of `snapshots` (operator uid and snapshot, any subtasks).
    pub fn of<'a>(snapshots: impl IntoIterator<Item = (&'a str, &'a KeyedStateSnapshot)>) -> Self {
        let mut operators: BTreeMap<String, OperatorVisibility> = BTreeMap::new();
        for (uid, snapshot) in snapshots {
            if snapshot.ttl_ms.is_empty() {
                continue;
            }
            let operator = operators.entry(uid.to_string()).or_default();
            operator.max_parallelism = snapshot.max_parallelism;
            operator
                .ttl_ms
                .extend(snapshot.ttl_ms.iter().map(|(n, t)| (n.clone(), *t)));
            operator
                .times
                .push((snapshot.key_group_range, snapshot.processing_time_ms));
        }
        TtlVisibility { operators }
    }

    /// Each (operator uid, state name) under TTL.
    pub fn states(&self) -> impl Iterator<Item = (&str, &str)> {
        self.operators.iter().flat_map(|(uid, operator)| {
            operator
                .ttl_ms
                .keys()
                .map(move |name| (uid.as_str(), name.as_str()))
        })
    }

    /// Whether no state is under TTL (nothing to leave out).
    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
    }

    /// Leaves out of `state` (per operator uid) what had expired at the processing time of
    /// the snapshot holding its key group.
    pub fn apply(&self, state: &mut BTreeMap<String, LogicalKeyedState>) {
        for (uid, operator) in &self.operators {
            let Some(keys) = state.get_mut(uid) else {
                continue;
            };
            keys.retain(|key, states| {
                if let Some(now) = operator.time_of(key) {
                    for (name, ttl_ms) in &operator.ttl_ms {
                        let live = states
                            .get_mut(name)
                            .is_some_and(|entry| retain_live(entry, *ttl_ms, now));
                        if !live {
                            states.remove(name);
                        }
                    }
                }
                !states.is_empty()
            });
        }
    }
}

impl OperatorVisibility {
    fn time_of(&self, key: &Text) -> Option<u64> {
        let group = key_group_for_key(key, self.max_parallelism);
        self.times
            .iter()
            .find(|(range, _)| range.contains(group))
            .map(|(_, time)| *time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::heap_backend::HeapKeyedStateBackend;
    use crate::state::key_group::key_group_range;
    use crate::state::state_descriptor::ValueStateDescriptor;
    use crate::state::state_ttl::StateTtlConfig;

    const SEEN: ValueStateDescriptor<u8> =
        ValueStateDescriptor::new("seen").with_ttl(StateTtlConfig::new(100));

    #[test]
    fn expired_values_are_left_out_at_the_snapshots_time() {
        let mut backend = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        backend.declare_processing_time();
        backend.set_processing_time(10);
        backend.access("old").unwrap().update(&SEEN, &1).unwrap();
        backend.set_processing_time(60);
        backend.access("new").unwrap().update(&SEEN, &2).unwrap();
        backend.set_processing_time(120);
        let snapshot = backend.snapshot();
        let mut view = LogicalKeyedState::new();
        snapshot.merge_into(&mut view);
        let mut state = BTreeMap::from([("op".to_string(), view)]);
        TtlVisibility::of([("op", &snapshot)]).apply(&mut state);
        let keys: Vec<&str> = state["op"].keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, vec!["new"], "`old` expired at 110");
    }
}
