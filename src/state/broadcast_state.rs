//! Broadcast state (Flink's `BroadcastState` of a `KeyedBroadcastProcessFunction`): map
//! states every subtask of the operator holds a copy of, written only by the broadcast
//! elements (each of which reaches every subtask) and read by the keyed elements.
//!
//! Each subtask checkpoints its own copy; on restore, new subtask `i` takes the copy of old
//! subtask `i % old_parallelism` (Flink's `RoundRobinOperatorStateRepartitioner` for
//! `BROADCAST` mode): one copy per new subtask, never a merge.
//!
//! Broadcast elements reach the subtasks over different channels, so each subtask applies
//! them in its own order, and a keyed element sees whatever its subtask had applied when it
//! arrived. Neither is a function of the input, so for the check each copy carries its
//! application log — the broadcast elements it applied, in order — and the digest of that
//! log; the keyed operator's journal records, per keyed element, the digest its subtask had.
//! A reference evaluation then hands every keyed element the broadcast state the run's
//! subtask held (the log prefix with that digest, folded through the same function), and
//! checks separately that every copy applied exactly the broadcast elements its cut holds.

use crate::api::value::Value;
pub use crate::state::snapshot::BroadcastStateSnapshot;
use crate::state::state_descriptor::MapStateDescriptor;
use crate::state::state_error::StateError;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// The digest of an empty application log.
pub const EMPTY_LOG_DIGEST: u64 = 0xcbf2_9ce4_8422_2325;

/// One subtask's copy of an operator's broadcast states, with its application log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastStateStore {
    states: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    log: Vec<Value>,
    digest: u64,
}

/// A `BroadcastState<K, V>` as a broadcast element sees it: read and write.
pub struct BroadcastMapState<'s, K, V> {
    map: &'s mut BTreeMap<Vec<u8>, Vec<u8>>,
    name: &'static str,
    marker: PhantomData<fn() -> (K, V)>,
}

/// A `ReadOnlyBroadcastState<K, V>` as a keyed element sees it.
pub struct ReadOnlyBroadcastMapState<'s, K, V> {
    map: Option<&'s BTreeMap<Vec<u8>, Vec<u8>>>,
    name: &'static str,
    marker: PhantomData<fn() -> (K, V)>,
}

/// What `processBroadcastElement` reaches the broadcast states through.
pub struct BroadcastContext<'s> {
    store: &'s mut BroadcastStateStore,
}

/// What `processElement` reaches the broadcast states through (read only).
pub struct ReadOnlyBroadcastContext<'s> {
    store: &'s BroadcastStateStore,
}

impl BroadcastStateStore {
    /// An empty store (nothing applied).
    pub fn new() -> BroadcastStateStore {
        BroadcastStateStore {
            digest: EMPTY_LOG_DIGEST,
            ..BroadcastStateStore::default()
        }
    }

    /// The digest of the application log: which broadcast elements, in which order.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The broadcast elements applied, in order.
    pub fn log(&self) -> &[Value] {
        &self.log
    }

    /// The states by name: key bytes to value bytes.
    pub fn states(&self) -> &BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>> {
        &self.states
    }

    /// Records that `element` is being applied (before the function runs on it).
    pub fn log_applied(&mut self, element: &Value) {
        self.digest = chain_digest(self.digest, element);
        self.log.push(element.clone());
    }

    /// The read-write view a broadcast element is handled with.
    pub fn context(&mut self) -> BroadcastContext<'_> {
        BroadcastContext { store: self }
    }

    /// The read-only view a keyed element is handled with.
    pub fn read_only(&self) -> ReadOnlyBroadcastContext<'_> {
        ReadOnlyBroadcastContext { store: self }
    }

    /// What a snapshot of subtask `subtask_index` of `parallelism` holds.
    pub fn snapshot(&self, subtask_index: u32, parallelism: u32) -> BroadcastStateSnapshot {
        BroadcastStateSnapshot {
            subtask_index,
            parallelism,
            states: self.states.clone(),
            log: self.log.clone(),
        }
    }

    /// The copy subtask `index` restores from the snapshots of every old subtask: old
    /// subtask `index % old_parallelism`'s (Flink's rule for broadcast state).
    pub fn assign(
        snapshots: &[&BroadcastStateSnapshot],
        index: u32,
    ) -> Result<BroadcastStateStore, StateError> {
        let Some(first) = snapshots.first() else {
            return Ok(BroadcastStateStore::new());
        };
        let old_parallelism = first.parallelism;
        let wanted = index % old_parallelism;
        let found = snapshots
            .iter()
            .find(|s| s.subtask_index == wanted)
            .ok_or_else(|| {
                StateError(format!(
                    "the broadcast state of old subtask {wanted} of {old_parallelism} is missing from the snapshot"
                ))
            })?;
        Ok(BroadcastStateStore::restored(found))
    }

    /// The store a snapshot holds (its digest recomputed from its log).
    pub fn restored(snapshot: &BroadcastStateSnapshot) -> BroadcastStateStore {
        BroadcastStateStore {
            states: snapshot.states.clone(),
            digest: log_digest(&snapshot.log),
            log: snapshot.log.clone(),
        }
    }
}

/// The digest after applying `element` to a log whose digest was `digest` (FNV-1a over the
/// element's encoding, chained).
pub fn chain_digest(digest: u64, element: &Value) -> u64 {
    let bytes = postcard::to_allocvec(element).expect("values always encode");
    bytes.iter().fold(digest, |hash, byte| {
        (hash ^ *byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The digest of a whole application log.
pub fn log_digest(log: &[Value]) -> u64 {
    log.iter().fold(EMPTY_LOG_DIGEST, chain_digest)
}

impl BroadcastContext<'_> {
    /// `getBroadcastState(descriptor)`.
    pub fn state<K, V>(
        &mut self,
        descriptor: &MapStateDescriptor<K, V>,
    ) -> BroadcastMapState<'_, K, V> {
        let map = self
            .store
            .states
            .entry(descriptor.name.to_string())
            .or_default();
        BroadcastMapState {
            map,
            name: descriptor.name,
            marker: PhantomData,
        }
    }
}

impl ReadOnlyBroadcastContext<'_> {
    /// `getBroadcastState(descriptor)`, read only.
    pub fn state<K, V>(
        &self,
        descriptor: &MapStateDescriptor<K, V>,
    ) -> ReadOnlyBroadcastMapState<'_, K, V> {
        ReadOnlyBroadcastMapState {
            map: self.store.states.get(descriptor.name),
            name: descriptor.name,
            marker: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> BroadcastMapState<'_, K, V> {
    /// `get(key)`.
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        get(Some(self.map), self.name, key)
    }

    /// `contains(key)`.
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(&encode(key))
    }

    /// `put(key, value)`.
    pub fn put(&mut self, key: &K, value: &V) {
        self.map.insert(encode(key), encode(value));
    }

    /// `putAll(entries)`.
    pub fn put_all(&mut self, entries: &[(K, V)]) {
        for (key, value) in entries {
            self.put(key, value);
        }
    }

    /// `remove(key)`.
    pub fn remove(&mut self, key: &K) {
        self.map.remove(&encode(key));
    }

    /// `entries()`, in key-encoding order.
    pub fn entries(&self) -> Result<Vec<(K, V)>, StateError> {
        entries(Some(self.map), self.name)
    }

    /// `isEmpty()`.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `clear()`.
    pub fn clear(&mut self) {
        self.map.clear();
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>
    ReadOnlyBroadcastMapState<'_, K, V>
{
    /// `get(key)`.
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        get(self.map, self.name, key)
    }

    /// `contains(key)`.
    pub fn contains(&self, key: &K) -> bool {
        self.map.is_some_and(|m| m.contains_key(&encode(key)))
    }

    /// `immutableEntries()`, in key-encoding order.
    pub fn entries(&self) -> Result<Vec<(K, V)>, StateError> {
        entries(self.map, self.name)
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_none_or(BTreeMap::is_empty)
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("state values are serde types that always encode")
}

fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, StateError> {
    postcard::from_bytes(bytes).map_err(|e| {
        StateError(format!(
            "broadcast state `{name}` does not decode as the descriptor's type: {e}"
        ))
    })
}

fn get<K: Serialize, V: DeserializeOwned>(
    map: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
    name: &str,
    key: &K,
) -> Result<Option<V>, StateError> {
    map.and_then(|m| m.get(&encode(key)))
        .map(|bytes| decode(name, bytes))
        .transpose()
}

fn entries<K: DeserializeOwned, V: DeserializeOwned>(
    map: Option<&BTreeMap<Vec<u8>, Vec<u8>>>,
    name: &str,
) -> Result<Vec<(K, V)>, StateError> {
    map.into_iter()
        .flatten()
        .map(|(k, v)| Ok((decode(name, k)?, decode(name, v)?)))
        .collect()
}

/// Every application log a run's snapshots and final state hold, per operator uid, so that
/// a reference evaluation can find the broadcast state a journal's digest names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastLineages {
    // Per uid: digest of a log prefix to (log index, prefix length).
    prefixes: BTreeMap<String, BTreeMap<u64, (usize, usize)>>,
    logs: BTreeMap<String, Vec<Vec<Value>>>,
}

impl BroadcastLineages {
    /// Adds `log`, a copy of operator `uid`'s broadcast state, with every prefix of it.
    pub fn add(&mut self, uid: &str, log: &[Value]) {
        let prefixes = self.prefixes.entry(uid.to_string()).or_default();
        if prefixes.contains_key(&log_digest(log)) {
            return; // A prefix of a log already held (or the same log).
        }
        let logs = self.logs.entry(uid.to_string()).or_default();
        let index = logs.len();
        let mut digest = EMPTY_LOG_DIGEST;
        prefixes.entry(digest).or_insert((index, 0));
        for (position, element) in log.iter().enumerate() {
            digest = chain_digest(digest, element);
            prefixes.insert(digest, (index, position + 1));
        }
        logs.push(log.to_vec());
    }

    /// Adds every lineage of `other`.
    pub fn extend(&mut self, other: &BroadcastLineages) {
        for (uid, logs) in &other.logs {
            for log in logs {
                self.add(uid, log);
            }
        }
    }

    /// The broadcast elements, in order, whose log has `digest` in operator `uid`.
    pub fn prefix(&self, uid: &str, digest: u64) -> Option<&[Value]> {
        if digest == EMPTY_LOG_DIGEST {
            return Some(&[]);
        }
        let (index, length) = *self.prefixes.get(uid)?.get(&digest)?;
        Some(&self.logs[uid][index][..length])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: MapStateDescriptor<String, i64> = MapStateDescriptor::new("rules");

    fn store_with(log: &[&str]) -> BroadcastStateStore {
        let mut store = BroadcastStateStore::new();
        for (n, element) in log.iter().enumerate() {
            let value = Value::Str((*element).into());
            store.log_applied(&value);
            store
                .context()
                .state(&RULES)
                .put(&element.to_string(), &(n as i64));
        }
        store
    }

    #[test]
    fn map_operations_read_back_through_both_views() {
        let mut store = store_with(&["a", "b"]);
        let mut context = store.context();
        let mut rules = context.state(&RULES);
        assert_eq!(rules.get(&"b".to_string()).unwrap(), Some(1));
        rules.remove(&"a".to_string());
        rules.put_all(&[("c".to_string(), 7)]);
        assert!(!rules.contains(&"a".to_string()));
        let read = store.read_only();
        let rules = read.state(&RULES);
        assert_eq!(
            rules.entries().unwrap(),
            vec![("b".to_string(), 1), ("c".to_string(), 7)]
        );
        assert!(!rules.is_empty());
        assert!(read
            .state(&MapStateDescriptor::<String, i64>::new("other"))
            .is_empty());
    }

    #[test]
    fn restore_takes_the_copy_of_old_subtask_index_modulo_old_parallelism() {
        let old = [
            store_with(&["a"]).snapshot(0, 2),
            store_with(&["b"]).snapshot(1, 2),
        ];
        let refs: Vec<&BroadcastStateSnapshot> = old.iter().rev().collect();
        for (index, wanted) in [(0, "a"), (1, "b"), (2, "a"), (3, "b")] {
            let store = BroadcastStateStore::assign(&refs, index).unwrap();
            assert_eq!(store.log(), &[Value::Str(wanted.into())]);
            assert_eq!(store.digest(), store_with(&[wanted]).digest());
        }
        assert!(
            BroadcastStateStore::assign(&refs[..1], 0).is_err(),
            "old 0 missing"
        );
        assert_eq!(
            BroadcastStateStore::assign(&[], 3).unwrap(),
            BroadcastStateStore::new()
        );
    }

    #[test]
    fn lineages_find_every_prefix_and_tell_orders_apart() {
        let ab = store_with(&["a", "b"]);
        let ba = store_with(&["b", "a"]);
        assert_ne!(ab.digest(), ba.digest(), "the order is in the digest");
        let mut lineages = BroadcastLineages::default();
        lineages.add("op", ab.log());
        lineages.add("op", ba.log());
        lineages.add("op", &ab.log()[..1]);
        let a = store_with(&["a"]).digest();
        assert_eq!(lineages.prefix("op", a).unwrap(), &ab.log()[..1]);
        assert_eq!(lineages.prefix("op", ba.digest()).unwrap(), ba.log());
        assert_eq!(
            lineages.prefix("op", EMPTY_LOG_DIGEST).unwrap(),
            &[] as &[Value]
        );
        assert!(lineages.prefix("op", 42).is_none());
        assert!(lineages.prefix("other", a).is_none());
    }
}
