//! The heap keyed state backend: working state in task-manager memory, full-copy snapshots.
//!
//! Values are kept serialized (postcard), so a snapshot is a plain copy of the tables and the
//! restored state is byte-for-byte what was snapshotted.

use crate::ids::KeyGroup;
use crate::state::key_group::{key_group_for_key, KeyGroupRange};
use crate::state::snapshot::{KeyedStateSnapshot, StateEntry, StateTable};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

/// Why a state access failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError(pub String);

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state error: {}", self.0)
    }
}

/// Names a `ValueState<T>`.
pub struct ValueStateDescriptor<T> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    marker: PhantomData<fn() -> T>,
}

/// Names a `ListState<T>`.
pub struct ListStateDescriptor<T> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    marker: PhantomData<fn() -> T>,
}

/// Names a `MapState<K, V>`.
pub struct MapStateDescriptor<K, V> {
    /// The state's name, unique within its operator.
    pub name: &'static str,
    marker: PhantomData<fn() -> (K, V)>,
}

impl<T> ValueStateDescriptor<T> {
    /// A descriptor for the value state called `name`.
    pub const fn new(name: &'static str) -> Self {
        ValueStateDescriptor {
            name,
            marker: PhantomData,
        }
    }
}

impl<T> ListStateDescriptor<T> {
    /// A descriptor for the list state called `name`.
    pub const fn new(name: &'static str) -> Self {
        ListStateDescriptor {
            name,
            marker: PhantomData,
        }
    }
}

impl<K, V> MapStateDescriptor<K, V> {
    /// A descriptor for the map state called `name`.
    pub const fn new(name: &'static str) -> Self {
        MapStateDescriptor {
            name,
            marker: PhantomData,
        }
    }
}

/// All keyed state of one keyed operator in one subtask.
pub struct HeapKeyedStateBackend {
    max_parallelism: u32,
    key_group_range: KeyGroupRange,
    tables: BTreeMap<String, StateTable>,
}

impl HeapKeyedStateBackend {
    /// An empty backend owning `key_group_range` of `max_parallelism` key groups.
    pub fn new(max_parallelism: u32, key_group_range: KeyGroupRange) -> Self {
        assert!(key_group_range.start <= key_group_range.end);
        assert!(key_group_range.end < max_parallelism);
        HeapKeyedStateBackend {
            max_parallelism,
            key_group_range,
            tables: BTreeMap::new(),
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
            backend: self,
            key,
            key_group,
        })
    }

    /// A full copy of the state (the synchronous part of a heap snapshot).
    pub fn snapshot(&self) -> KeyedStateSnapshot {
        KeyedStateSnapshot {
            max_parallelism: self.max_parallelism,
            key_group_range: self.key_group_range,
            tables: self.tables.clone(),
        }
    }

    /// Restores from the snapshots of any subtasks of the same operator, keeping exactly the
    /// key groups this subtask owns (so parallelism may differ from the snapshot's).
    pub fn restore(&mut self, snapshots: &[KeyedStateSnapshot]) -> Result<(), StateError> {
        assert!(self.tables.is_empty(), "restore runs on a fresh backend");
        for snapshot in snapshots {
            if snapshot.max_parallelism != self.max_parallelism {
                return Err(StateError(format!(
                    "snapshot has max parallelism {}, the job has {}; it cannot change across restores",
                    snapshot.max_parallelism, self.max_parallelism
                )));
            }
            for (state_name, table) in &snapshot.tables {
                let target = self.tables.entry(state_name.clone()).or_default();
                for (key_group, entries) in table.range(
                    KeyGroup(self.key_group_range.start)..=KeyGroup(self.key_group_range.end),
                ) {
                    // A corrupt or mixed-up checkpoint: refuse it rather than merge silently.
                    if target.insert(*key_group, entries.clone()).is_some() {
                        return Err(StateError(format!(
                            "two snapshots claim key group {} of state `{state_name}`",
                            key_group.0
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Number of (state, key) entries held.
    pub fn entry_count(&self) -> usize {
        self.tables
            .values()
            .flat_map(|table| table.values())
            .map(|entries| entries.len())
            .sum()
    }
}

/// State access for one key, handed to a keyed process function.
pub struct KeyedStateAccess<'a> {
    backend: &'a mut HeapKeyedStateBackend,
    key: &'a str,
    key_group: KeyGroup,
}

impl KeyedStateAccess<'_> {
    /// The key in scope.
    pub fn key(&self) -> &str {
        self.key
    }

    fn entry(&self, name: &str) -> Option<&StateEntry> {
        self.backend
            .tables
            .get(name)?
            .get(&self.key_group)?
            .get(self.key)
    }

    // Looks up before inserting, so the hot path (an existing key) allocates nothing.
    fn entries_mut(&mut self, name: &str) -> &mut BTreeMap<String, StateEntry> {
        if !self.backend.tables.contains_key(name) {
            self.backend
                .tables
                .insert(name.to_string(), StateTable::new());
        }
        let table = self.backend.tables.get_mut(name).expect("inserted above");
        table.entry(self.key_group).or_default()
    }

    /// This key's entry of state `name`, created by `empty` if absent; an entry of another
    /// kind is an error, never overwritten.
    fn slot(
        &mut self,
        name: &str,
        empty: fn() -> StateEntry,
    ) -> Result<&mut StateEntry, StateError> {
        let key = self.key;
        let entries = self.entries_mut(name);
        if !entries.contains_key(key) {
            entries.insert(key.to_string(), empty());
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
        *self.slot(descriptor.name, || StateEntry::Value(Vec::new()))? =
            StateEntry::Value(encode(value));
        Ok(())
    }

    /// `ValueState.clear()` (works for every kind of state).
    pub fn clear(&mut self, name: &str) {
        let key = self.key;
        self.entries_mut(name).remove(key);
    }

    /// `ListState.add(value)`.
    pub fn add<T: Serialize>(
        &mut self,
        descriptor: &ListStateDescriptor<T>,
        value: &T,
    ) -> Result<(), StateError> {
        let bytes = encode(value);
        match self.slot(descriptor.name, || StateEntry::List(Vec::new()))? {
            StateEntry::List(items) => items.push(bytes),
            _ => unreachable!("slot checked the kind"),
        }
        Ok(())
    }

    /// `ListState.get()`.
    pub fn list<T: DeserializeOwned>(
        &self,
        descriptor: &ListStateDescriptor<T>,
    ) -> Result<Vec<T>, StateError> {
        match self.entry(descriptor.name) {
            None => Ok(Vec::new()),
            Some(StateEntry::List(items)) => items
                .iter()
                .map(|bytes| decode(descriptor.name, bytes))
                .collect(),
            Some(other) => Err(kind_mismatch(descriptor.name, "list", other)),
        }
    }

    /// `MapState.put(key, value)`.
    pub fn put<K: Serialize, V: Serialize>(
        &mut self,
        descriptor: &MapStateDescriptor<K, V>,
        map_key: &K,
        value: &V,
    ) -> Result<(), StateError> {
        let (map_key, value) = (encode(map_key), encode(value));
        match self.slot(descriptor.name, || StateEntry::Map(BTreeMap::new()))? {
            StateEntry::Map(map) => map.insert(map_key, value),
            _ => unreachable!("slot checked the kind"),
        };
        Ok(())
    }

    /// `MapState.get(key)`.
    pub fn get<K: Serialize, V: DeserializeOwned>(
        &self,
        descriptor: &MapStateDescriptor<K, V>,
        map_key: &K,
    ) -> Result<Option<V>, StateError> {
        match self.entry(descriptor.name) {
            None => Ok(None),
            Some(StateEntry::Map(map)) => map
                .get(&encode(map_key))
                .map(|bytes| decode(descriptor.name, bytes))
                .transpose(),
            Some(other) => Err(kind_mismatch(descriptor.name, "map", other)),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("state values are serde types that always encode")
}

fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|e| {
        StateError(format!(
            "state `{name}` does not decode as the descriptor's type: {e}"
        ))
    })
}

fn kind_mismatch(name: &str, wanted: &str, found: &StateEntry) -> StateError {
    StateError(format!(
        "state `{name}` is used as {wanted} state but holds {} state",
        found.kind_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::key_group::key_group_range;

    const COUNT: ValueStateDescriptor<i64> = ValueStateDescriptor::new("count");
    const SEEN: ListStateDescriptor<String> = ListStateDescriptor::new("seen");
    const LAST: MapStateDescriptor<String, i64> = MapStateDescriptor::new("last");

    #[test]
    fn value_list_and_map_state_are_scoped_by_key() {
        let mut backend = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        let mut hello = backend.access("hello").unwrap();
        hello.update(&COUNT, &2).unwrap();
        hello.add(&SEEN, &"a".to_string()).unwrap();
        hello.put(&LAST, &"x".to_string(), &7).unwrap();
        let world = backend.access("world").unwrap();
        assert_eq!(world.value(&COUNT).unwrap(), None);
        let hello = backend.access("hello").unwrap();
        assert_eq!(hello.value(&COUNT).unwrap(), Some(2));
        assert_eq!(hello.list(&SEEN).unwrap(), vec!["a".to_string()]);
        assert_eq!(hello.get(&LAST, &"x".to_string()).unwrap(), Some(7));
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
        assert!(access.list(&as_list).is_err());
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
