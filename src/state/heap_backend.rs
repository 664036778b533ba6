//! The heap keyed state backend: working state in task-manager memory, full-copy snapshots.
//!
//! Values are kept serialized (postcard), so a snapshot is a plain copy of the tables and the
//! restored state is byte-for-byte what was snapshotted.

use crate::api::value::Text;
use crate::ids::KeyGroup;
use crate::state::key_group::{key_group_for_key, KeyGroupRange};
use crate::state::snapshot::{KeyedStateSnapshot, StateEntry, StateTable};
use crate::state::state_descriptor::ValueStateDescriptor;
use rustc_hash::FxHashMap;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Why a state access failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError(pub String);

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state error: {}", self.0)
    }
}

/// One state's working entries: per owned key group (indexed from the range's start), key to
/// entry. A hash map with a fixed hasher: a lookup hashes the key once and compares it once,
/// where an ordered map compared strings at every level. Order is restored at snapshot time.
struct WorkingTable {
    name: String,
    groups: Vec<FxHashMap<Text, StateEntry>>,
}

/// All keyed state of one keyed operator in one subtask.
pub struct HeapKeyedStateBackend {
    max_parallelism: u32,
    key_group_range: KeyGroupRange,
    // A handful of states per operator, in registration order: found by a short scan.
    tables: Vec<WorkingTable>,
}

impl HeapKeyedStateBackend {
    /// An empty backend owning `key_group_range` of `max_parallelism` key groups.
    pub fn new(max_parallelism: u32, key_group_range: KeyGroupRange) -> Self {
        assert!(key_group_range.start <= key_group_range.end);
        assert!(key_group_range.end < max_parallelism);
        HeapKeyedStateBackend {
            max_parallelism,
            key_group_range,
            tables: Vec::new(),
        }
    }

    /// Scopes state access to `key`. Fails if the key's group is not owned here, which means
    /// the record was routed to the wrong subtask.
    pub fn access<'a>(&'a mut self, key: &'a str) -> Result<KeyedStateAccess<'a>, StateError> {
        let key_group = key_group_for_key(key, self.max_parallelism);
        if !self.key_group_range.contains(key_group) {
            return Err(StateError(format!(
                "key `{key}` is in key group {} outside this subtask's range {}..={}",
                key_group.0, self.key_group_range.start, self.key_group_range.end
            )));
        }
        Ok(KeyedStateAccess {
            group: (key_group.0 - self.key_group_range.start) as usize,
            backend: self,
            key,
        })
    }

    fn group_count(&self) -> usize {
        (self.key_group_range.end - self.key_group_range.start + 1) as usize
    }

    fn table(&self, name: &str) -> Option<&WorkingTable> {
        self.tables.iter().find(|table| table.name == name)
    }

    fn table_mut(&mut self, name: &str) -> &mut WorkingTable {
        let index = match self.tables.iter().position(|table| table.name == name) {
            Some(index) => index,
            None => {
                let groups = (0..self.group_count())
                    .map(|_| FxHashMap::default())
                    .collect();
                self.tables.push(WorkingTable {
                    name: name.to_string(),
                    groups,
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[index]
    }

    /// A full copy of the state (the synchronous part of a heap snapshot), in key order.
    pub fn snapshot(&self) -> KeyedStateSnapshot {
        let mut tables = BTreeMap::new();
        for table in &self.tables {
            let mut snapshot_table = StateTable::new();
            for (offset, entries) in table.groups.iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                let key_group = KeyGroup(self.key_group_range.start + offset as u32);
                let sorted = entries
                    .iter()
                    .map(|(key, entry)| (key.clone(), entry.clone()))
                    .collect();
                snapshot_table.insert(key_group, sorted);
            }
            tables.insert(table.name.clone(), snapshot_table);
        }
        KeyedStateSnapshot {
            max_parallelism: self.max_parallelism,
            key_group_range: self.key_group_range,
            tables,
        }
    }

    /// Restores from the snapshots of any subtasks of the same operator, keeping exactly the
    /// key groups this subtask owns (so parallelism may differ from the snapshot's).
    pub fn restore(&mut self, snapshots: &[KeyedStateSnapshot]) -> Result<(), StateError> {
        assert!(self.tables.is_empty(), "restore runs on a fresh backend");
        let mut claimed: BTreeMap<(&str, KeyGroup), ()> = BTreeMap::new();
        for snapshot in snapshots {
            if snapshot.max_parallelism != self.max_parallelism {
                return Err(StateError(format!(
                    "snapshot has max parallelism {}, the job has {}; it cannot change across restores",
                    snapshot.max_parallelism, self.max_parallelism
                )));
            }
            for (state_name, table) in &snapshot.tables {
                let start = self.key_group_range.start;
                let owned = KeyGroup(start)..=KeyGroup(self.key_group_range.end);
                for (key_group, entries) in table.range(owned) {
                    // A corrupt or mixed-up checkpoint: refuse it rather than merge silently.
                    if claimed.insert((state_name, *key_group), ()).is_some() {
                        return Err(StateError(format!(
                            "two snapshots claim key group {} of state `{state_name}`",
                            key_group.0
                        )));
                    }
                    let group =
                        &mut self.table_mut(state_name).groups[(key_group.0 - start) as usize];
                    group.extend(
                        entries
                            .iter()
                            .map(|(key, entry)| (Text::from(key.as_str()), entry.clone())),
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether this state equals the union of `snapshots` (of disjoint key groups): every
    /// entry found under its state, key group and key, and no entry more. Allocates nothing,
    /// so the checker compares each checkpoint with the reference at the cost of a lookup per
    /// key.
    pub fn equals_snapshots(&self, snapshots: &[&KeyedStateSnapshot]) -> bool {
        let snapshot_entries: usize = snapshots
            .iter()
            .flat_map(|snapshot| snapshot.tables.values())
            .flat_map(|table| table.values())
            .map(BTreeMap::len)
            .sum();
        if snapshot_entries != self.entry_count() {
            return false;
        }
        self.tables.iter().all(|table| {
            table.groups.iter().enumerate().all(|(offset, entries)| {
                let key_group = KeyGroup(self.key_group_range.start + offset as u32);
                entries.iter().all(|(key, entry)| {
                    let found = snapshots.iter().find_map(|snapshot| {
                        snapshot.tables.get(&table.name)?.get(&key_group)?.get(key)
                    });
                    found == Some(entry)
                })
            })
        })
    }

    /// Number of (state, key) entries held.
    pub fn entry_count(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|table| &table.groups)
            .map(FxHashMap::len)
            .sum()
    }
}

/// State access for one key, handed to a keyed process function.
pub struct KeyedStateAccess<'a> {
    backend: &'a mut HeapKeyedStateBackend,
    key: &'a str,
    // The key's group, as an index into the backend's owned groups.
    group: usize,
}

impl KeyedStateAccess<'_> {
    /// The key in scope.
    pub fn key(&self) -> &str {
        self.key
    }

    /// This key's entry of state `name`, if any.
    pub(crate) fn entry(&self, name: &str) -> Option<&StateEntry> {
        self.backend.table(name)?.groups[self.group].get(self.key)
    }

    fn entries_mut(&mut self, name: &str) -> &mut FxHashMap<Text, StateEntry> {
        let group = self.group;
        &mut self.backend.table_mut(name).groups[group]
    }

    /// This key's entry of state `name`, created by `empty` if absent; an entry of another
    /// kind is an error, never overwritten.
    pub(crate) fn slot(
        &mut self,
        name: &str,
        empty: fn() -> StateEntry,
    ) -> Result<&mut StateEntry, StateError> {
        let key = self.key;
        let entries = self.entries_mut(name);
        if !entries.contains_key(key) {
            entries.insert(Text::from(key), empty());
        }
        let entry = entries.get_mut(key).expect("inserted above");
        let wanted = empty();
        if entry.kind_name() != wanted.kind_name() {
            return Err(kind_mismatch(name, wanted.kind_name(), entry));
        }
        Ok(entry)
    }

    /// `ValueState.value()`.
    pub fn value<T: DeserializeOwned>(
        &self,
        descriptor: &ValueStateDescriptor<T>,
    ) -> Result<Option<T>, StateError> {
        match self.entry(descriptor.name) {
            None => Ok(None),
            Some(StateEntry::Value(bytes)) => decode(descriptor.name, bytes).map(Some),
            Some(other) => Err(kind_mismatch(descriptor.name, "value", other)),
        }
    }

    /// `ValueState.update(value)`.
    pub fn update<T: Serialize>(
        &mut self,
        descriptor: &ValueStateDescriptor<T>,
        value: &T,
    ) -> Result<(), StateError> {
        match self.slot(descriptor.name, || StateEntry::Value(Vec::new()))? {
            // Encodes into the entry's own buffer: an update of an existing key allocates nothing.
            StateEntry::Value(bytes) => {
                bytes.clear();
                *bytes = postcard::to_extend(value, std::mem::take(bytes))
                    .expect("state values are serde types that always encode");
            }
            _ => unreachable!("slot checked the kind"),
        }
        Ok(())
    }

    /// `ValueState.clear()` (works for every kind of state).
    pub fn clear(&mut self, name: &str) {
        let key = self.key;
        self.entries_mut(name).remove(key);
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("state values are serde types that always encode")
}

pub(crate) fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|e| {
        StateError(format!(
            "state `{name}` does not decode as the descriptor's type: {e}"
        ))
    })
}

pub(crate) fn kind_mismatch(name: &str, wanted: &str, found: &StateEntry) -> StateError {
    StateError(format!(
        "state `{name}` is used as {wanted} state but holds {} state",
        found.kind_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::key_group::key_group_range;
    use crate::state::state_descriptor::{ListStateDescriptor, MapStateDescriptor};

    const COUNT: ValueStateDescriptor<i64> = ValueStateDescriptor::new("count");
    const SEEN: ListStateDescriptor<String> = ListStateDescriptor::new("seen");
    const LAST: MapStateDescriptor<String, i64> = MapStateDescriptor::new("last");

    #[test]
    fn value_list_and_map_state_are_scoped_by_key() {
        let mut backend = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        let mut hello = backend.access("hello").unwrap();
        hello.update(&COUNT, &2).unwrap();
        hello.list_state(&SEEN).add(&"a".to_string()).unwrap();
        hello.map_state(&LAST).put(&"x".to_string(), &7).unwrap();
        let world = backend.access("world").unwrap();
        assert_eq!(world.value(&COUNT).unwrap(), None);
        let mut hello = backend.access("hello").unwrap();
        assert_eq!(hello.value(&COUNT).unwrap(), Some(2));
        assert_eq!(
            hello.list_state(&SEEN).get().unwrap(),
            vec!["a".to_string()]
        );
        assert_eq!(
            hello.map_state(&LAST).get(&"x".to_string()).unwrap(),
            Some(7)
        );
    }

    #[test]
    fn restore_redistributes_by_key_group() {
        let mut whole = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        for index in 0..100 {
            whole
                .access(&format!("k{index}"))
                .unwrap()
                .update(&COUNT, &index)
                .unwrap();
        }
        let snapshot = whole.snapshot();
        let mut total = 0;
        for subtask in 0..3 {
            let mut part = HeapKeyedStateBackend::new(128, key_group_range(128, 3, subtask));
            part.restore(std::slice::from_ref(&snapshot)).unwrap();
            total += part.entry_count();
        }
        assert_eq!(total, 100);
    }

    #[test]
    fn state_equals_exactly_the_snapshots_that_hold_it() {
        let mut whole = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        for index in 0..100 {
            let key = format!("k{index}");
            whole.access(&key).unwrap().update(&COUNT, &index).unwrap();
        }
        let snapshot = whole.snapshot();
        assert!(whole.equals_snapshots(&[&snapshot]));
        let parts: Vec<KeyedStateSnapshot> = (0..3)
            .map(|subtask| {
                let mut part = HeapKeyedStateBackend::new(128, key_group_range(128, 3, subtask));
                part.restore(std::slice::from_ref(&snapshot)).unwrap();
                part.snapshot()
            })
            .collect();
        assert!(whole.equals_snapshots(&parts.iter().collect::<Vec<_>>()));
        assert!(
            !whole.equals_snapshots(&[&parts[0], &parts[1]]),
            "a part missing"
        );
        let mut more = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        more.restore(std::slice::from_ref(&snapshot)).unwrap();
        more.access("extra").unwrap().update(&COUNT, &1).unwrap();
        assert!(
            !whole.equals_snapshots(&[&more.snapshot()]),
            "an entry more"
        );
        whole.access("k7").unwrap().update(&COUNT, &8).unwrap();
        assert!(!whole.equals_snapshots(&[&snapshot]), "a value differs");
    }

    #[test]
    fn wrong_key_group_and_wrong_kind_are_errors() {
        let mut backend = HeapKeyedStateBackend::new(128, KeyGroupRange { start: 0, end: 0 });
        // Bounded searches: a broken hash must fail this test, not hang it.
        let key_outside = (0..10_000)
            .map(|i| format!("k{i}"))
            .find(|k| key_group_for_key(k, 128).0 != 0)
            .expect("some key outside key group 0");
        assert!(backend.access(&key_outside).is_err());
        let key_inside = (0..10_000)
            .map(|i| format!("k{i}"))
            .find(|k| key_group_for_key(k, 128).0 == 0)
            .expect("some key in key group 0");
        let mut access = backend.access(&key_inside).unwrap();
        access.update(&COUNT, &1).unwrap();
        let as_list: ListStateDescriptor<i64> = ListStateDescriptor::new("count");
        assert!(access.list_state(&as_list).get().is_err());
    }

    #[test]
    fn two_snapshots_of_one_key_group_are_refused() {
        let mut backend = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        backend.access("hello").unwrap().update(&COUNT, &1).unwrap();
        let snapshot = backend.snapshot();
        let mut fresh = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        let error = fresh
            .restore(&[snapshot.clone(), snapshot])
            .expect_err("the key group is claimed twice");
        assert!(
            error.0.contains("two snapshots claim key group"),
            "{}",
            error.0
        );
    }
}
