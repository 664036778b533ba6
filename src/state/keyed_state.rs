//! The keyed state a function reaches for the key in scope, one handle per kind, with
//! Flink's methods: `ValueState`, `ListState`, `MapState`, `ReducingState`,
//! `AggregatingState`. Every handle reads and writes the backend's serialized entries, so
//! each kind snapshots and restores by key group as the backend does. An emptied list or map
//! is removed, as no state: `get` of an absent list is empty, of an absent map value `None`.
//!
//! Under a time-to-live (`with_ttl` on the descriptor) a value, each list element and each
//! map entry carries its last-access time; reads apply the TTL's visibility and clean up
//! what expired (lazy cleanup), and renew under `OnReadAndWrite`. Reads take `&mut self` for
//! that reason, as Flink's TTL state writes on read.

use crate::state::heap_backend::{
    decode, encode, kind_mismatch, read_value, write_value, KeyedStateAccess, StateError,
};
use crate::state::snapshot::StateEntry;
use crate::state::state_descriptor::{
    AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};
use crate::state::state_ttl::{self, StateTtlConfig, StateVisibility, UpdateType};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// A map state's entries as the backend holds them: encoded key to encoded value.
type EncodedMap = BTreeMap<Vec<u8>, Vec<u8>>;
/// Map entries as a read returns them: encoded key and the user's encoded value.
type EncodedEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// `ValueState<T>` of the key in scope.
pub struct ValueState<'s, 'a, T> {
    access: &'s mut KeyedStateAccess<'a>,
    descriptor: &'s ValueStateDescriptor<T>,
}

/// `ListState<T>` of the key in scope.
pub struct ListState<'s, 'a, T> {
    access: &'s mut KeyedStateAccess<'a>,
    name: &'static str,
    ttl: Option<StateTtlConfig>,
    marker: PhantomData<fn() -> T>,
}

/// `MapState<K, V>` of the key in scope; iterated in the order of the keys' encoding.
pub struct MapState<'s, 'a, K, V> {
    access: &'s mut KeyedStateAccess<'a>,
    name: &'static str,
    ttl: Option<StateTtlConfig>,
    marker: PhantomData<fn() -> (K, V)>,
}

/// `ReducingState<T>` of the key in scope.
pub struct ReducingState<'s, 'a, T> {
    access: &'s mut KeyedStateAccess<'a>,
    name: &'static str,
    reduce: fn(T, T) -> T,
    ttl: Option<StateTtlConfig>,
}

/// `AggregatingState<IN, OUT>` of the key in scope, holding the accumulator `ACC`.
pub struct AggregatingState<'s, 'a, IN, ACC, OUT> {
    access: &'s mut KeyedStateAccess<'a>,
    descriptor: &'s AggregatingStateDescriptor<IN, ACC, OUT>,
}

impl<'a> KeyedStateAccess<'a> {
    /// `getState(descriptor)`.
    pub fn value_state<'s, T>(
        &'s mut self,
        descriptor: &'s ValueStateDescriptor<T>,
    ) -> ValueState<'s, 'a, T> {
        ValueState {
            access: self,
            descriptor,
        }
    }

    /// `getListState(descriptor)`.
    pub fn list_state<'s, T>(
        &'s mut self,
        descriptor: &ListStateDescriptor<T>,
    ) -> ListState<'s, 'a, T> {
        ListState {
            access: self,
            name: descriptor.name,
            ttl: descriptor.ttl,
            marker: PhantomData,
        }
    }

    /// `getMapState(descriptor)`.
    pub fn map_state<'s, K, V>(
        &'s mut self,
        descriptor: &MapStateDescriptor<K, V>,
    ) -> MapState<'s, 'a, K, V> {
        MapState {
            access: self,
            name: descriptor.name,
            ttl: descriptor.ttl,
            marker: PhantomData,
        }
    }

    /// `getReducingState(descriptor)`.
    pub fn reducing_state<'s, T>(
        &'s mut self,
        descriptor: &ReducingStateDescriptor<T>,
    ) -> ReducingState<'s, 'a, T> {
        ReducingState {
            access: self,
            name: descriptor.name,
            reduce: descriptor.reduce,
            ttl: descriptor.ttl,
        }
    }

    /// `getAggregatingState(descriptor)`.
    pub fn aggregating_state<'s, IN, ACC, OUT>(
        &'s mut self,
        descriptor: &'s AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> AggregatingState<'s, 'a, IN, ACC, OUT> {
        AggregatingState {
            access: self,
            descriptor,
        }
    }
}

impl<T: Serialize + DeserializeOwned> ValueState<'_, '_, T> {
    /// `value()`: `None` when unset (or expired).
    pub fn value(&mut self) -> Result<Option<T>, StateError> {
        self.access.value(self.descriptor)
    }

    /// `update(value)`.
    pub fn update(&mut self, value: &T) -> Result<(), StateError> {
        self.access.update(self.descriptor, value)
    }

    /// `clear()`.
    pub fn clear(&mut self) {
        self.access.clear(self.descriptor.name)
    }
}

/// The live elements of a stamped list or map, what a read returns of them, and whether any
/// was dropped or renewed (so the entry must be written back).
struct Swept<E> {
    kept: Vec<E>,
    returned: Vec<E>,
    changed: bool,
}

/// Applies `ttl` at `now` to stamped elements (`bytes` picks each one's stamped bytes).
fn sweep<E: Clone>(
    name: &str,
    ttl: &StateTtlConfig,
    now: u64,
    elements: impl Iterator<Item = E>,
    bytes: fn(&mut E) -> &mut Vec<u8>,
) -> Result<Swept<E>, StateError> {
    let mut swept = Swept {
        kept: Vec::new(),
        returned: Vec::new(),
        changed: false,
    };
    for mut element in elements {
        let (last_access, _) = state_ttl::split(name, bytes(&mut element))?;
        if ttl.expired(last_access, now) {
            swept.changed = true;
            if ttl.visibility == StateVisibility::ReturnExpiredIfNotCleanedUp {
                swept.returned.push(element);
            }
            continue;
        }
        if ttl.update_type == UpdateType::OnReadAndWrite {
            state_ttl::restamp(bytes(&mut element), now);
            swept.changed = true;
        }
        swept.returned.push(element.clone());
        swept.kept.push(element);
    }
    Ok(swept)
}

fn user_bytes<'b>(name: &str, bytes: &'b [u8], ttl: bool) -> Result<&'b [u8], StateError> {
    if ttl {
        Ok(state_ttl::split(name, bytes)?.1)
    } else {
        Ok(bytes)
    }
}

impl<T: Serialize + DeserializeOwned> ListState<'_, '_, T> {
    fn items(&mut self) -> Result<&mut Vec<Vec<u8>>, StateError> {
        match self
            .access
            .slot(self.name, || StateEntry::List(Vec::new()))?
        {
            StateEntry::List(items) => Ok(items),
            _ => unreachable!("slot checked the kind"),
        }
    }

    /// The stored elements, TTL applied: what a read sees.
    fn read(&mut self) -> Result<Vec<Vec<u8>>, StateError> {
        let items = match self.access.entry(self.name) {
            None => return Ok(Vec::new()),
            Some(StateEntry::List(items)) => items,
            Some(other) => return Err(kind_mismatch(self.name, "list", other)),
        };
        let Some(ttl) = self.ttl else {
            return Ok(items.clone());
        };
        let now = self.access.ttl_now(self.name, &ttl)?;
        let Some(StateEntry::List(items)) = self.access.entry(self.name) else {
            return Ok(Vec::new()); // Incremental cleanup took it.
        };
        let swept = sweep(self.name, &ttl, now, items.iter().cloned(), |b| b)?;
        if swept.changed {
            if swept.kept.is_empty() {
                self.clear();
            } else {
                *self.items()? = swept.kept;
            }
        }
        Ok(swept.returned)
    }

    fn stored(&mut self, value: &T) -> Result<Vec<u8>, StateError> {
        let bytes = encode(value);
        Ok(match self.ttl {
            Some(ttl) => state_ttl::stamp(self.access.ttl_now(self.name, &ttl)?, &bytes),
            None => bytes,
        })
    }

    /// `get()`: the elements in the order added; empty when unset.
    pub fn get(&mut self) -> Result<Vec<T>, StateError> {
        let ttl = self.ttl.is_some();
        self.read()?
            .iter()
            .map(|bytes| decode(self.name, user_bytes(self.name, bytes, ttl)?))
            .collect()
    }

    /// `add(value)`.
    pub fn add(&mut self, value: &T) -> Result<(), StateError> {
        let bytes = self.stored(value)?;
        self.items()?.push(bytes);
        Ok(())
    }

    /// `addAll(values)`; adding none changes nothing.
    pub fn add_all(&mut self, values: &[T]) -> Result<(), StateError> {
        if values.is_empty() {
            return Ok(());
        }
        let encoded = values
            .iter()
            .map(|value| self.stored(value))
            .collect::<Result<Vec<_>, _>>()?;
        self.items()?.extend(encoded);
        Ok(())
    }

    /// `update(values)`: replaces the list; an empty one clears it.
    pub fn update(&mut self, values: &[T]) -> Result<(), StateError> {
        self.clear();
        self.add_all(values)
    }

    /// `clear()`.
    pub fn clear(&mut self) {
        self.access.clear(self.name)
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<'_, '_, K, V> {
    fn map(&self) -> Result<Option<&EncodedMap>, StateError> {
        match self.access.entry(self.name) {
            None => Ok(None),
            Some(StateEntry::Map(map)) => Ok(Some(map)),
            Some(other) => Err(kind_mismatch(self.name, "map", other)),
        }
    }

    fn map_mut(&mut self) -> Result<&mut EncodedMap, StateError> {
        match self
            .access
            .slot(self.name, || StateEntry::Map(BTreeMap::new()))?
        {
            StateEntry::Map(map) => Ok(map),
            _ => unreachable!("slot checked the kind"),
        }
    }

    /// The stored entries (all of them, or the one under `only`), TTL applied: what a read
    /// sees, with the user's value bytes.
    fn read(&mut self, only: Option<&[u8]>) -> Result<EncodedEntries, StateError> {
        let Some(map) = self.map()? else {
            return Ok(Vec::new());
        };
        let selected = |map: &EncodedMap| -> EncodedEntries {
            match only {
                Some(key) => map
                    .get_key_value(key)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .into_iter()
                    .collect(),
                None => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }
        };
        let Some(ttl) = self.ttl else {
            return Ok(selected(map));
        };
        let now = self.access.ttl_now(self.name, &ttl)?;
        let Some(map) = self.map()? else {
            return Ok(Vec::new()); // Incremental cleanup took it.
        };
        let chosen = selected(map);
        let swept = sweep(self.name, &ttl, now, chosen.iter().cloned(), |e| &mut e.1)?;
        if swept.changed {
            let map = self.map_mut()?;
            for (key, _) in &chosen {
                map.remove(key);
            }
            map.extend(swept.kept);
            if map.is_empty() {
                self.clear();
            }
        }
        swept
            .returned
            .into_iter()
            .map(|(key, bytes)| Ok((key, state_ttl::split(self.name, &bytes)?.1.to_vec())))
            .collect()
    }

    /// `get(key)`.
    pub fn get(&mut self, key: &K) -> Result<Option<V>, StateError> {
        let found = self.read(Some(&encode(key)))?;
        found
            .first()
            .map(|(_, bytes)| decode(self.name, bytes))
            .transpose()
    }

    fn stored(&mut self, value: &V) -> Result<Vec<u8>, StateError> {
        let bytes = encode(value);
        Ok(match self.ttl {
            Some(ttl) => state_ttl::stamp(self.access.ttl_now(self.name, &ttl)?, &bytes),
            None => bytes,
        })
    }

    /// `put(key, value)`.
    pub fn put(&mut self, key: &K, value: &V) -> Result<(), StateError> {
        let (key, value) = (encode(key), self.stored(value)?);
        self.map_mut()?.insert(key, value);
        Ok(())
    }

    /// `putAll(entries)`.
    pub fn put_all(&mut self, entries: &[(K, V)]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let encoded = entries
            .iter()
            .map(|(key, value)| Ok((encode(key), self.stored(value)?)))
            .collect::<Result<Vec<_>, StateError>>()?;
        self.map_mut()?.extend(encoded);
        Ok(())
    }

    /// `remove(key)`; the last removal removes the map.
    pub fn remove(&mut self, key: &K) -> Result<(), StateError> {
        if self.map()?.is_none() {
            return Ok(());
        }
        let map = self.map_mut()?;
        map.remove(&encode(key));
        if map.is_empty() {
            self.clear();
        }
        Ok(())
    }

    /// `contains(key)`.
    pub fn contains(&mut self, key: &K) -> Result<bool, StateError> {
        Ok(!self.read(Some(&encode(key)))?.is_empty())
    }

    /// `keys()`.
    pub fn keys(&mut self) -> Result<Vec<K>, StateError> {
        Ok(self.entries()?.into_iter().map(|(key, _)| key).collect())
    }

    /// `values()`.
    pub fn values(&mut self) -> Result<Vec<V>, StateError> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }

    /// `entries()`.
    pub fn entries(&mut self) -> Result<Vec<(K, V)>, StateError> {
        self.read(None)?
            .iter()
            .map(|(key, value)| Ok((decode(self.name, key)?, decode(self.name, value)?)))
            .collect()
    }

    /// `isEmpty()`.
    pub fn is_empty(&mut self) -> Result<bool, StateError> {
        Ok(self.read(None)?.is_empty())
    }

    /// `clear()`.
    pub fn clear(&mut self) {
        self.access.clear(self.name)
    }
}

impl<T: Serialize + DeserializeOwned> ReducingState<'_, '_, T> {
    /// `get()`: the reduction of everything added; `None` when nothing was.
    pub fn get(&mut self) -> Result<Option<T>, StateError> {
        read_value(self.access, self.name, self.ttl.as_ref())
    }

    /// `add(value)`: reduced with the value held.
    pub fn add(&mut self, value: T) -> Result<(), StateError> {
        let reduced = match self.get()? {
            Some(held) => (self.reduce)(held, value),
            None => value,
        };
        write_value(self.access, self.name, self.ttl.as_ref(), &reduced)
    }

    /// `clear()`.
    pub fn clear(&mut self) {
        self.access.clear(self.name)
    }
}

impl<IN, ACC: Serialize + DeserializeOwned, OUT> AggregatingState<'_, '_, IN, ACC, OUT> {
    fn accumulator(&mut self) -> Result<Option<ACC>, StateError> {
        let descriptor = self.descriptor;
        read_value(self.access, descriptor.name, descriptor.ttl.as_ref())
    }

    /// `get()`: the result over the accumulator; `None` when nothing was added.
    pub fn get(&mut self) -> Result<Option<OUT>, StateError> {
        Ok(self
            .accumulator()?
            .map(|accumulator| (self.descriptor.get_result)(&accumulator)))
    }

    /// `add(value)`: folded into the accumulator (created on the first).
    pub fn add(&mut self, value: &IN) -> Result<(), StateError> {
        let held = self
            .accumulator()?
            .unwrap_or_else(self.descriptor.create_accumulator);
        let accumulator = (self.descriptor.add)(value, held);
        let descriptor = self.descriptor;
        write_value(
            self.access,
            descriptor.name,
            descriptor.ttl.as_ref(),
            &accumulator,
        )
    }

    /// `clear()`.
    pub fn clear(&mut self) {
        self.access.clear(self.descriptor.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::heap_backend::HeapKeyedStateBackend;
    use crate::state::key_group::key_group_range;

    const VISITS: MapStateDescriptor<String, u64> = MapStateDescriptor::new("visits");
    const EVENTS: ListStateDescriptor<String> = ListStateDescriptor::new("events");
    const MAX: ReducingStateDescriptor<i64> = ReducingStateDescriptor::new("max", i64::max);
    /// An average: the accumulator is (sum, count).
    const AVERAGE: AggregatingStateDescriptor<i64, (i64, u64), f64> =
        AggregatingStateDescriptor::new(
            "average",
            || (0, 0),
            |value, (sum, count)| (sum + value, count + 1),
            |(sum, count)| *sum as f64 / *count as f64,
        );
    const LAST: ValueStateDescriptor<String> = ValueStateDescriptor::new("last");

    fn backend() -> HeapKeyedStateBackend {
        HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0))
    }

    #[test]
    fn list_state_adds_replaces_and_clears() {
        let mut backend = backend();
        let mut access = backend.access("user-1").unwrap();
        let mut events = access.list_state(&EVENTS);
        assert_eq!(events.get().unwrap(), Vec::<String>::new());
        events.add(&"a".into()).unwrap();
        events.add_all(&["b".into(), "c".into()]).unwrap();
        assert_eq!(events.get().unwrap(), vec!["a", "b", "c"]);
        events.update(&["z".into()]).unwrap();
        assert_eq!(events.get().unwrap(), vec!["z"]);
        events.update(&[]).unwrap();
        assert_eq!(backend.entry_count(), 0, "an empty update clears");
        let mut access = backend.access("user-1").unwrap();
        access.list_state(&EVENTS).add(&"x".into()).unwrap();
        access.list_state(&EVENTS).clear();
        assert_eq!(backend.entry_count(), 0);
    }

    #[test]
    fn map_state_has_flinks_methods() {
        let mut backend = backend();
        let mut access = backend.access("user-1").unwrap();
        let mut visits = access.map_state(&VISITS);
        assert!(visits.is_empty().unwrap());
        visits.put(&"/b".into(), &2).unwrap();
        visits
            .put_all(&[("/a".into(), 1), ("/c".into(), 3)])
            .unwrap();
        assert_eq!(visits.get(&"/a".into()).unwrap(), Some(1));
        assert!(visits.contains(&"/c".into()).unwrap());
        assert!(!visits.contains(&"/d".into()).unwrap());
        assert_eq!(visits.keys().unwrap(), vec!["/a", "/b", "/c"]);
        assert_eq!(visits.values().unwrap(), vec![1, 2, 3]);
        visits.remove(&"/b".into()).unwrap();
        assert_eq!(
            visits.entries().unwrap(),
            vec![("/a".to_string(), 1), ("/c".to_string(), 3)]
        );
        assert!(!visits.is_empty().unwrap());
        visits.remove(&"/a".into()).unwrap();
        visits.remove(&"/c".into()).unwrap();
        assert!(visits.is_empty().unwrap());
        assert_eq!(backend.entry_count(), 0, "the last removal removes the map");
    }

    #[test]
    fn reducing_and_aggregating_state_fold_what_is_added() {
        let mut backend = backend();
        let mut access = backend.access("sensor-1").unwrap();
        assert_eq!(access.reducing_state(&MAX).get().unwrap(), None);
        for value in [3, 9, 4] {
            access.reducing_state(&MAX).add(value).unwrap();
            access.aggregating_state(&AVERAGE).add(&value).unwrap();
        }
        assert_eq!(access.reducing_state(&MAX).get().unwrap(), Some(9));
        assert_eq!(
            access.aggregating_state(&AVERAGE).get().unwrap(),
            Some(16.0 / 3.0)
        );
        access.aggregating_state(&AVERAGE).clear();
        assert_eq!(access.aggregating_state(&AVERAGE).get().unwrap(), None);
        let mut last = access.value_state(&LAST);
        last.update(&"x".into()).unwrap();
        assert_eq!(last.value().unwrap(), Some("x".to_string()));
    }

    #[test]
    fn every_kind_snapshots_and_restores_by_key_group() {
        let mut whole = backend();
        for index in 0..60 {
            let key = format!("k{index}");
            let mut access = whole.access(&key).unwrap();
            access.list_state(&EVENTS).add(&key).unwrap();
            access.map_state(&VISITS).put(&key, &index).unwrap();
            access.reducing_state(&MAX).add(index as i64).unwrap();
            access
                .aggregating_state(&AVERAGE)
                .add(&(index as i64))
                .unwrap();
        }
        let snapshot = whole.snapshot();
        let mut parts: Vec<HeapKeyedStateBackend> = (0..3)
            .map(|subtask| {
                let mut part = HeapKeyedStateBackend::new(128, key_group_range(128, 3, subtask));
                part.restore(std::slice::from_ref(&snapshot)).unwrap();
                part
            })
            .collect();
        assert_eq!(parts.iter().map(|p| p.entry_count()).sum::<usize>(), 4 * 60);
        let owner = |key: &str| {
            let group = crate::state::key_group::key_group_for_key(key, 128);
            crate::state::key_group::subtask_for_key_group(128, 3, group) as usize
        };
        let mut access = parts[owner("k7")].access("k7").unwrap();
        assert_eq!(access.list_state(&EVENTS).get().unwrap(), vec!["k7"]);
        assert_eq!(
            access.map_state(&VISITS).get(&"k7".into()).unwrap(),
            Some(7)
        );
        assert_eq!(access.reducing_state(&MAX).get().unwrap(), Some(7));
        assert_eq!(access.aggregating_state(&AVERAGE).get().unwrap(), Some(7.0));
    }

    #[test]
    fn a_state_used_as_another_kind_is_an_error() {
        let mut backend = backend();
        let mut access = backend.access("k").unwrap();
        access.list_state(&EVENTS).add(&"a".into()).unwrap();
        let as_map: MapStateDescriptor<String, u64> = MapStateDescriptor::new("events");
        let error = access.map_state(&as_map).put(&"a".into(), &1).unwrap_err();
        assert_eq!(
            error.0,
            "state `events` is used as map state but holds list state"
        );
    }

    mod time_to_live {
        use super::*;
        use crate::state::state_ttl::IncrementalCleanup;

        const TTL: u64 = 100;
        const SEEN: ValueStateDescriptor<i64> =
            ValueStateDescriptor::new("seen").with_ttl(StateTtlConfig::new(TTL));
        const SEEN_READ_RENEWS: ValueStateDescriptor<i64> = ValueStateDescriptor::new("seen")
            .with_ttl(StateTtlConfig::new(TTL).update_type(UpdateType::OnReadAndWrite));
        const SEEN_STALE: ValueStateDescriptor<i64> = ValueStateDescriptor::new("seen").with_ttl(
            StateTtlConfig::new(TTL).visibility(StateVisibility::ReturnExpiredIfNotCleanedUp),
        );

        fn clocked() -> HeapKeyedStateBackend {
            let mut backend = backend();
            backend.declare_processing_time();
            backend
        }

        fn at<R>(
            backend: &mut HeapKeyedStateBackend,
            now: u64,
            key: &str,
            body: impl FnOnce(&mut KeyedStateAccess<'_>) -> R,
        ) -> R {
            backend.set_processing_time(now);
            body(&mut backend.access(key).unwrap())
        }

        #[test]
        fn on_create_and_write_counts_writes_only() {
            let mut backend = clocked();
            at(&mut backend, 0, "k", |s| {
                s.value_state(&SEEN).update(&1).unwrap()
            });
            let read = at(&mut backend, 60, "k", |s| {
                s.value_state(&SEEN).value().unwrap()
            });
            assert_eq!(read, Some(1));
            let read = at(&mut backend, 100, "k", |s| {
                s.value_state(&SEEN).value().unwrap()
            });
            assert_eq!(read, None, "a read does not renew it: expired at 0 + 100");
            assert_eq!(backend.entry_count(), 0, "the read cleaned it up");
        }

        #[test]
        fn on_read_and_write_renews_on_every_read() {
            let mut backend = clocked();
            let state = &SEEN_READ_RENEWS;
            at(&mut backend, 0, "k", |s| {
                s.value_state(state).update(&1).unwrap()
            });
            let read = at(&mut backend, 60, "k", |s| {
                s.value_state(state).value().unwrap()
            });
            assert_eq!(read, Some(1));
            let read = at(&mut backend, 150, "k", |s| {
                s.value_state(state).value().unwrap()
            });
            assert_eq!(read, Some(1), "renewed at 60, it lives until 160");
            let read = at(&mut backend, 240, "k", |s| {
                s.value_state(state).value().unwrap()
            });
            assert_eq!(read, Some(1), "renewed at 150");
            let read = at(&mut backend, 340, "k", |s| {
                s.value_state(state).value().unwrap()
            });
            assert_eq!(read, None, "renewed at 240, expired at 340");
        }

        #[test]
        fn return_expired_if_not_cleaned_up_returns_it_once() {
            let mut backend = clocked();
            at(&mut backend, 0, "k", |s| {
                s.value_state(&SEEN_STALE).update(&7).unwrap()
            });
            let read = at(&mut backend, 500, "k", |s| {
                s.value_state(&SEEN_STALE).value().unwrap()
            });
            assert_eq!(read, Some(7), "expired, but still held");
            let read = at(&mut backend, 500, "k", |s| {
                s.value_state(&SEEN_STALE).value().unwrap()
            });
            assert_eq!(read, None, "the first read cleaned it up");
        }

        #[test]
        fn list_map_reducing_and_aggregating_expire_by_element() {
            const LIST: ListStateDescriptor<i64> =
                ListStateDescriptor::new("list").with_ttl(StateTtlConfig::new(TTL));
            const MAP: MapStateDescriptor<String, i64> =
                MapStateDescriptor::new("map").with_ttl(StateTtlConfig::new(TTL));
            const SUM: ReducingStateDescriptor<i64> =
                ReducingStateDescriptor::new("sum", |a, b| a + b)
                    .with_ttl(StateTtlConfig::new(TTL));
            const MEAN: AggregatingStateDescriptor<i64, (i64, u64), f64> =
                AVERAGE.with_ttl(StateTtlConfig::new(TTL));
            let mut backend = clocked();
            at(&mut backend, 0, "k", |s| {
                s.list_state(&LIST).add(&1).unwrap();
                s.map_state(&MAP).put(&"a".into(), &1).unwrap();
                s.reducing_state(&SUM).add(5).unwrap();
                s.aggregating_state(&MEAN).add(&4).unwrap();
            });
            at(&mut backend, 50, "k", |s| {
                s.list_state(&LIST).add(&2).unwrap();
                s.map_state(&MAP).put(&"b".into(), &2).unwrap();
                s.reducing_state(&SUM).add(1).unwrap(); // Writes: renewed at 50.
            });
            at(&mut backend, 120, "k", |s| {
                assert_eq!(s.list_state(&LIST).get().unwrap(), vec![2]);
                assert_eq!(s.map_state(&MAP).keys().unwrap(), vec!["b".to_string()]);
                assert!(!s.map_state(&MAP).contains(&"a".into()).unwrap());
                assert_eq!(s.reducing_state(&SUM).get().unwrap(), Some(6));
                assert_eq!(s.aggregating_state(&MEAN).get().unwrap(), None);
            });
            at(&mut backend, 200, "k", |s| {
                assert!(s.list_state(&LIST).get().unwrap().is_empty());
                assert!(s.map_state(&MAP).is_empty().unwrap());
                assert_eq!(s.reducing_state(&SUM).get().unwrap(), None);
            });
            assert_eq!(backend.entry_count(), 0, "reads cleaned everything up");
        }

        #[test]
        fn full_snapshot_cleanup_leaves_expired_values_out_of_the_snapshot_only() {
            const CLEANED: ValueStateDescriptor<i64> = ValueStateDescriptor::new("seen")
                .with_ttl(StateTtlConfig::new(TTL).cleanup_full_snapshot());
            for (state, in_snapshot) in [(&SEEN, 2), (&CLEANED, 1)] {
                let mut backend = clocked();
                at(&mut backend, 0, "old", |s| {
                    s.value_state(state).update(&1).unwrap()
                });
                at(&mut backend, 90, "new", |s| {
                    s.value_state(state).update(&2).unwrap()
                });
                backend.set_processing_time(150);
                let snapshot = backend.snapshot();
                let held: usize = snapshot.tables["seen"].values().map(BTreeMap::len).sum();
                assert_eq!(held, in_snapshot);
                assert_eq!(backend.entry_count(), 2, "the working state keeps both");
                assert_eq!(snapshot.ttl_ms["seen"], TTL);
                assert_eq!(snapshot.processing_time_ms, 150);
            }
        }

        #[test]
        fn incremental_cleanup_checks_the_next_keys_on_access_and_on_every_record() {
            const SWEPT: ValueStateDescriptor<i64> = ValueStateDescriptor::new("seen")
                .with_ttl(StateTtlConfig::new(TTL).cleanup_incrementally(2, false));
            const SWEPT_PER_RECORD: ValueStateDescriptor<i64> = ValueStateDescriptor::new("seen")
                .with_ttl(StateTtlConfig::new(TTL).cleanup_incrementally(2, true));
            for (state, per_record) in [(&SWEPT, false), (&SWEPT_PER_RECORD, true)] {
                let mut backend = clocked();
                for key in 0..10 {
                    let key = format!("k{key}");
                    at(&mut backend, 0, &key, |s| {
                        s.value_state(state).update(&1).unwrap()
                    });
                }
                backend.set_processing_time(500);
                backend.on_record();
                let after_record = backend.entry_count();
                assert_eq!(after_record, if per_record { 8 } else { 10 });
                // Each access checks two more keys, so five accesses clear all ten.
                for _ in 0..5 {
                    at(&mut backend, 500, "fresh", |s| {
                        s.value_state(state).value().unwrap()
                    });
                }
                assert_eq!(backend.entry_count(), 0);
            }
            assert_eq!(
                SWEPT.ttl.unwrap().cleanup_incremental,
                Some(IncrementalCleanup {
                    entries: 2,
                    every_record: false
                })
            );
        }

        #[test]
        fn state_with_a_ttl_needs_a_function_that_declares_processing_time() {
            let mut backend = backend();
            let error = backend
                .access("k")
                .unwrap()
                .value_state(&SEEN)
                .update(&1)
                .unwrap_err();
            assert!(error.0.contains("uses_processing_time"), "{error}");
        }
    }
}
