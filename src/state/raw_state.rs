//! Raw keyed state (Flink's `KeyedStateCheckpointOutputStream` /
//! `KeyGroupStatePartitionStreamProvider`): bytes a keyed function writes per key group at a
//! snapshot for state it keeps in its own structures, and reads back, for the key groups its
//! subtask owns, when it is restored. The engine does not look inside the bytes; it stores
//! them key group by key group, so they move with their key groups when parallelism changes,
//! exactly as managed keyed state does.
//!
//! Raw operator state (Flink's `OperatorStateCheckpointOutputStream`: partitions redistributed
//! round robin) is `OperatorStateStore::raw_operator_state`.

use crate::ids::KeyGroup;
use crate::state::key_group::{key_group_for_key, KeyGroupRange};
use crate::state::state_error::StateError;
use std::collections::BTreeMap;

/// What a function writes its raw keyed state into at a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawKeyedStateOutput {
    max_parallelism: u32,
    key_groups: KeyGroupRange,
    written: BTreeMap<KeyGroup, Vec<u8>>,
}

/// The raw keyed state a function is restored with: its subtask's key groups' bytes.
#[derive(Clone, Copy, Debug)]
pub struct RawKeyedStateInput<'a> {
    groups: &'a BTreeMap<KeyGroup, Vec<u8>>,
}

impl RawKeyedStateOutput {
    /// An empty output for a subtask owning `key_groups` of `max_parallelism`.
    pub fn new(max_parallelism: u32, key_groups: KeyGroupRange) -> RawKeyedStateOutput {
        RawKeyedStateOutput {
            max_parallelism,
            key_groups,
            written: BTreeMap::new(),
        }
    }

    /// The key group `key` belongs to (what to write its bytes under).
    pub fn key_group_of(&self, key: &str) -> KeyGroup {
        key_group_for_key(key, self.max_parallelism)
    }

    /// The key groups this subtask owns.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.key_groups
    }

    /// Appends `bytes` to `key_group`'s raw state (`startNewKeyGroup` then write).
    pub fn write(&mut self, key_group: KeyGroup, bytes: &[u8]) -> Result<(), StateError> {
        if !self.key_groups.contains(key_group) {
            return Err(StateError(format!(
                "raw keyed state written for key group {} outside this subtask's range {}..={}",
                key_group.0, self.key_groups.start, self.key_groups.end
            )));
        }
        self.written
            .entry(key_group)
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }

    /// What was written, key group by key group.
    pub fn into_groups(self) -> BTreeMap<KeyGroup, Vec<u8>> {
        self.written
    }
}

impl<'a> RawKeyedStateInput<'a> {
    /// The restored bytes of `groups` (already limited to the subtask's key groups).
    pub fn new(groups: &'a BTreeMap<KeyGroup, Vec<u8>>) -> RawKeyedStateInput<'a> {
        RawKeyedStateInput { groups }
    }

    /// Each key group with raw state, and its bytes, in key-group order.
    pub fn key_groups(&self) -> impl Iterator<Item = (KeyGroup, &'a [u8])> + 'a {
        self.groups
            .iter()
            .map(|(group, bytes)| (*group, bytes.as_slice()))
    }

    /// Whether nothing was restored.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// The raw keyed state of `snapshots` that falls in `key_groups`; two snapshots claiming one
/// key group is a corrupt or mixed-up checkpoint and refused.
pub fn restore_raw_keyed<'a>(
    snapshots: impl IntoIterator<Item = &'a BTreeMap<KeyGroup, Vec<u8>>>,
    key_groups: KeyGroupRange,
) -> Result<BTreeMap<KeyGroup, Vec<u8>>, StateError> {
    let mut restored = BTreeMap::new();
    let owned = KeyGroup(key_groups.start)..=KeyGroup(key_groups.end);
    for groups in snapshots {
        for (group, bytes) in groups.range(owned.clone()) {
            if restored.insert(*group, bytes.clone()).is_some() {
                return Err(StateError(format!(
                    "two snapshots claim key group {} of the raw keyed state",
                    group.0
                )));
            }
        }
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_keyed_state_is_written_and_restored_by_key_group() {
        let low = KeyGroupRange { start: 0, end: 63 };
        let high = KeyGroupRange {
            start: 64,
            end: 127,
        };
        let mut output = RawKeyedStateOutput::new(128, low);
        let group = output.key_group_of("a");
        assert!(low.contains(group) || high.contains(group));
        output.write(KeyGroup(3), b"ab").unwrap();
        output.write(KeyGroup(3), b"c").unwrap();
        output.write(KeyGroup(60), b"z").unwrap();
        let error = output.write(KeyGroup(64), b"x").unwrap_err();
        assert!(
            error.0.contains("outside this subtask's range 0..=63"),
            "{error}"
        );
        let first = output.into_groups();
        assert_eq!(first[&KeyGroup(3)], b"abc");
        let mut other = RawKeyedStateOutput::new(128, high);
        other.write(KeyGroup(100), b"q").unwrap();
        let second = other.into_groups();
        // Rescaled to two other ranges: each takes the key groups it owns.
        let left =
            restore_raw_keyed([&first, &second], KeyGroupRange { start: 0, end: 10 }).unwrap();
        assert_eq!(left.keys().copied().collect::<Vec<_>>(), vec![KeyGroup(3)]);
        let right = restore_raw_keyed(
            [&first, &second],
            KeyGroupRange {
                start: 11,
                end: 127,
            },
        )
        .unwrap();
        let input = RawKeyedStateInput::new(&right);
        let groups: Vec<(KeyGroup, &[u8])> = input.key_groups().collect();
        assert_eq!(
            groups,
            vec![(KeyGroup(60), &b"z"[..]), (KeyGroup(100), &b"q"[..])]
        );
        assert!(
            restore_raw_keyed([&first, &first], low).is_err(),
            "claimed twice"
        );
    }
}
