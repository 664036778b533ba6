//! The heap keyed state backend: working state in task-manager memory, full-copy snapshots.
//!
//! Values are kept serialized (postcard), so a snapshot is a plain copy of the tables and the
//! restored state is byte-for-byte what was snapshotted.

use crate::api::value::Text;
use crate::ids::KeyGroup;
use crate::state::key_group::{key_group_for_key, KeyGroupRange};
use crate::state::processing_time_journal::{JournalEntry, JOURNAL_STATE};
use crate::state::raw_state::{restore_raw_keyed, RawKeyedStateOutput};
use crate::state::snapshot::{KeyedStateSnapshot, StateEntry, StateTable};
use crate::state::state_descriptor::ValueStateDescriptor;
use crate::state::state_map::{HashedKey, StateMap};
use crate::state::state_ttl::{self, StateTtlConfig, StateVisibility, UpdateType};
use crate::state::timer_service::{timer_key, timer_timestamp, TimerQueue, TIMER_STATE};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

pub use crate::state::state_error::StateError;

/// One state's working entries: per owned key group (indexed from the range's start), key to
/// entry. A hash table with a fixed hasher: a lookup compares the key once, where an ordered
/// map compared strings at every level. Order is restored at snapshot time.
struct WorkingTable {
    name: String,
    groups: Vec<StateMap>,
    // Its time-to-live, once a descriptor with one reached it (or a snapshot said it has one).
    ttl: Option<StateTtlConfig>,
    // Where incremental TTL cleanup goes on: a key group and how many of its keys were seen.
    cleanup_cursor: (usize, usize),
}

impl WorkingTable {
    /// Incremental TTL cleanup: checks the next `entries` keys (going round the key groups)
    /// and drops the values expired at `now`.
    fn clean_up_incrementally(&mut self, entries: u32, ttl_ms: u64, now: u64) {
        let mut left = entries as usize;
        // Bounded: at most one pass over the groups per call.
        for _ in 0..=self.groups.len() {
            if left == 0 {
                return;
            }
            let (group, seen) = self.cleanup_cursor;
            let keys: Vec<Text> = self.groups[group]
                .iter()
                .map(|(key, _)| key)
                .skip(seen)
                .take(left)
                .cloned()
                .collect();
            left -= keys.len();
            let mut kept = keys.len();
            for key in keys {
                let entries = &mut self.groups[group];
                let live = entries
                    .get_mut(HashedKey::new(&key))
                    .is_some_and(|entry| state_ttl::retain_live(entry, ttl_ms, now));
                if !live {
                    entries.remove(HashedKey::new(&key));
                    kept -= 1;
                }
            }
            let seen = seen + kept;
            self.cleanup_cursor = if seen >= self.groups[group].len() {
                ((group + 1) % self.groups.len(), 0)
            } else {
                (group, seen)
            };
        }
    }
}

/// All keyed state of one keyed operator in one subtask.
pub struct HeapKeyedStateBackend {
    max_parallelism: u32,
    key_group_range: KeyGroupRange,
    // A handful of states per operator, in registration order: found by a short scan.
    tables: Vec<WorkingTable>,
    // Processing time in milliseconds, as the operator last set it.
    now_ms: u64,
    // The function declared it reads processing time (timers, TTL); otherwise reading it is
    // an error, since no journal records it for the check.
    clock_declared: bool,
    timers: TimerQueue,
    // A reference evaluation: time jumps between keys, so only per-key (lazy) cleanup runs.
    replaying: bool,
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
            now_ms: 0,
            clock_declared: false,
            timers: TimerQueue::default(),
            replaying: false,
        }
    }

    /// A reference evaluation replays the run's times key by key, not in global time
    /// order: cleanup across keys (incremental, full snapshot) would drop values still live
    /// at another key's time, so only lazy cleanup on read runs. What the run cleaned up
    /// and this did not is expired, which the checker leaves out on both sides.
    pub fn replay_times(&mut self) {
        self.replaying = true;
    }

    /// The function reads processing time: timers and TTL may be used.
    pub fn declare_processing_time(&mut self) {
        self.clock_declared = true;
    }

    /// Whether the function declared it reads processing time.
    pub fn reads_processing_time(&self) -> bool {
        self.clock_declared
    }

    /// Sets processing time (milliseconds).
    pub fn set_processing_time(&mut self, now_ms: u64) {
        debug_assert!(
            self.replaying || now_ms >= self.now_ms,
            "the clock went back"
        );
        self.now_ms = now_ms;
    }

    /// Processing time as last set.
    pub fn processing_time(&self) -> u64 {
        self.now_ms
    }

    /// The earliest registered timer's timestamp.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.next_timestamp()
    }

    /// Takes the earliest timer due at `now_ms`, unregistering it: its timestamp and key.
    pub fn pop_due_timer(&mut self, now_ms: u64) -> Option<(u64, Text)> {
        let (timestamp, key_group, key) = self.timers.pop_due(now_ms)?;
        let group = (key_group - self.key_group_range.start) as usize;
        let table = self.table_mut(TIMER_STATE);
        let entries = &mut table.groups[group];
        let hashed = HashedKey::new(&key);
        if let Some(StateEntry::Map(timers)) = entries.get_mut(hashed) {
            timers.remove(&timer_key(timestamp));
            if timers.is_empty() {
                entries.remove(hashed);
            }
        }
        Some((timestamp, key))
    }

    /// An empty raw keyed state output for this backend's key groups.
    pub fn raw_output(&self) -> RawKeyedStateOutput {
        RawKeyedStateOutput::new(self.max_parallelism, self.key_group_range)
    }

    /// The raw keyed state of `snapshots` in this backend's key groups.
    pub fn raw_restored(
        &self,
        snapshots: &[KeyedStateSnapshot],
    ) -> Result<BTreeMap<KeyGroup, Vec<u8>>, StateError> {
        restore_raw_keyed(snapshots.iter().map(|s| &s.raw), self.key_group_range)
    }

    /// Appends `entry` to `key`'s processing-time journal.
    pub fn journal(&mut self, key: &str, entry: JournalEntry) -> Result<(), StateError> {
        let mut access = self.access(key)?;
        match access.slot(JOURNAL_STATE, || StateEntry::List(Vec::new()))? {
            StateEntry::List(items) => items.push(entry.encode()),
            _ => unreachable!("slot checked the kind"),
        }
        Ok(())
    }

    /// How many entries `key`'s journal holds.
    pub fn journal_len(&mut self, key: &str) -> Result<usize, StateError> {
        let access = self.access(key)?;
        Ok(match access.entry(JOURNAL_STATE) {
            Some(StateEntry::List(items)) => items.len(),
            _ => 0,
        })
    }

    /// `key`'s registered timer with the smallest timestamp.
    pub fn first_timer_of(&mut self, key: &str) -> Result<Option<u64>, StateError> {
        let access = self.access(key)?;
        Ok(match access.entry(TIMER_STATE) {
            Some(StateEntry::Map(timers)) => timers.keys().next().and_then(|k| timer_timestamp(k)),
            _ => None,
        })
    }

    /// Incremental TTL cleanup of the states that run it on every record.
    pub fn on_record(&mut self) {
        if self.replaying {
            return;
        }
        let now = self.now_ms;
        for table in &mut self.tables {
            if let Some(ttl) = table.ttl {
                if let Some(cleanup) = ttl.cleanup_incremental.filter(|c| c.every_record) {
                    table.clean_up_incrementally(cleanup.entries, ttl.ttl_ms, now);
                }
            }
        }
    }

    /// Scopes state access to `key`. Fails if the key's group is not owned here, which means
    /// the record was routed to the wrong subtask.
    // Always inlined: returned through the stack, its result cost a store-forwarding stall
    // per record.
    #[inline(always)]
    pub fn access<'a>(&'a mut self, key: &'a str) -> Result<KeyedStateAccess<'a>, StateError> {
        let key_group = key_group_for_key(key, self.max_parallelism);
        if !self.key_group_range.contains(key_group) {
            return Err(self.outside_range(key, key_group));
        }
        Ok(KeyedStateAccess {
            group: (key_group.0 - self.key_group_range.start) as usize,
            backend: self,
            key: HashedKey::new(key),
        })
    }

    // Out of line, so that `access` stays small enough to inline into the per-record path.
    #[cold]
    fn outside_range(&self, key: &str, key_group: KeyGroup) -> StateError {
        StateError(format!(
            "key `{key}` is in key group {} outside this subtask's range {}..={}",
            key_group.0, self.key_group_range.start, self.key_group_range.end
        ))
    }

    fn group_count(&self) -> usize {
        (self.key_group_range.end - self.key_group_range.start + 1) as usize
    }

    #[inline]
    fn table(&self, name: &str) -> Option<&WorkingTable> {
        self.tables.iter().find(|table| table.name == name)
    }

    fn table_mut(&mut self, name: &str) -> &mut WorkingTable {
        let index = match self.tables.iter().position(|table| table.name == name) {
            Some(index) => index,
            None => {
                let groups = (0..self.group_count())
                    .map(|_| StateMap::default())
                    .collect();
                self.tables.push(WorkingTable {
                    name: name.to_string(),
                    groups,
                    ttl: None,
                    cleanup_cursor: (0, 0),
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[index]
    }

    /// A full copy of the state (the synchronous part of a heap snapshot), in key order. A
    /// state with `cleanupFullSnapshot` leaves out what has expired.
    pub fn snapshot(&self) -> KeyedStateSnapshot {
        let mut tables = BTreeMap::new();
        let mut ttl_ms = BTreeMap::new();
        for table in &self.tables {
            let clean = table
                .ttl
                .filter(|ttl| ttl.cleanup_full_snapshot && !self.replaying);
            let mut snapshot_table = StateTable::new();
            for (offset, entries) in table.groups.iter().enumerate() {
                if entries.is_empty() {
                    continue;
                }
                let key_group = KeyGroup(self.key_group_range.start + offset as u32);
                let sorted: BTreeMap<Text, StateEntry> = entries
                    .iter()
                    .filter_map(|(key, entry)| {
                        let mut entry = entry.clone();
                        let live = clean.is_none_or(|ttl| {
                            state_ttl::retain_live(&mut entry, ttl.ttl_ms, self.now_ms)
                        });
                        live.then(|| (key.clone(), entry))
                    })
                    .collect();
                if !sorted.is_empty() {
                    snapshot_table.insert(key_group, sorted);
                }
            }
            if let Some(ttl) = table.ttl {
                ttl_ms.insert(table.name.clone(), ttl.ttl_ms);
            }
            tables.insert(table.name.clone(), snapshot_table);
        }
        KeyedStateSnapshot {
            max_parallelism: self.max_parallelism,
            key_group_range: self.key_group_range,
            tables,
            processing_time_ms: self.now_ms,
            ttl_ms,
            broadcast: None,
            raw: BTreeMap::new(),
        }
    }

    /// Restores from the snapshots of any subtasks of the same operator, keeping exactly the
    /// key groups this subtask owns (so parallelism may differ from the snapshot's).
    pub fn restore(&mut self, snapshots: &[KeyedStateSnapshot]) -> Result<(), StateError> {
        assert!(self.tables.is_empty(), "restore runs on a fresh backend");
        assert!(self.timers.is_empty(), "restore runs on a fresh backend");
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
                if let Some(&ttl_ms) = snapshot.ttl_ms.get(state_name) {
                    let table = self.table_mut(state_name);
                    table.ttl.get_or_insert(StateTtlConfig::new(ttl_ms));
                }
            }
            // Processing time never goes back, across restores too.
            self.now_ms = self.now_ms.max(snapshot.processing_time_ms);
        }
        self.index_timers()
    }

    /// Rebuilds the due order from the restored timer state.
    fn index_timers(&mut self) -> Result<(), StateError> {
        let Some(table) = self.table(TIMER_STATE) else {
            return Ok(());
        };
        let start = self.key_group_range.start;
        let mut due = Vec::new();
        for (offset, entries) in table.groups.iter().enumerate() {
            for (key, entry) in entries.iter() {
                let StateEntry::Map(timers) = entry else {
                    return Err(kind_mismatch(TIMER_STATE, "map", entry));
                };
                for timer in timers.keys() {
                    let timestamp = timer_timestamp(timer).ok_or_else(|| {
                        StateError(format!("key `{key}`: a timer of {} bytes", timer.len()))
                    })?;
                    due.push((timestamp, start + offset as u32, key.clone()));
                }
            }
        }
        for (timestamp, key_group, key) in due {
            self.timers.insert(timestamp, key_group, &key);
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
            .map(StateMap::len)
            .sum()
    }
}

/// State access for one key, handed to a keyed process function.
pub struct KeyedStateAccess<'a> {
    backend: &'a mut HeapKeyedStateBackend,
    key: HashedKey<'a>,
    // The key's group, as an index into the backend's owned groups.
    group: usize,
}

impl KeyedStateAccess<'_> {
    /// The key in scope.
    pub fn key(&self) -> &str {
        self.key.text()
    }

    /// This key's entry of state `name`, if any.
    #[inline]
    pub(crate) fn entry(&self, name: &str) -> Option<&StateEntry> {
        self.backend.table(name)?.groups[self.group].get(self.key)
    }

    #[inline]
    fn entries_mut(&mut self, name: &str) -> &mut StateMap {
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
        let entry = self.entries_mut(name).get_or_insert_with(key, empty);
        let wanted = empty();
        if std::mem::discriminant(entry) != std::mem::discriminant(&wanted) {
            return Err(kind_mismatch(name, wanted.kind_name(), entry));
        }
        Ok(entry)
    }

    /// Processing time in milliseconds (`TimerService.currentProcessingTime()`).
    pub fn current_processing_time(&self) -> Result<u64, StateError> {
        self.clock("the current processing time")?;
        Ok(self.backend.now_ms)
    }

    /// `TimerService.registerProcessingTimeTimer(timestamp)`: `on_timer` runs for this key
    /// once processing time reaches `timestamp`; registering the same time twice fires once.
    pub fn register_processing_time_timer(&mut self, timestamp: u64) -> Result<(), StateError> {
        self.clock("a processing-time timer")?;
        match self.slot(TIMER_STATE, || StateEntry::Map(BTreeMap::new()))? {
            StateEntry::Map(timers) => timers.insert(timer_key(timestamp), Vec::new()),
            _ => unreachable!("slot checked the kind"),
        };
        let key_group = self.backend.key_group_range.start + self.group as u32;
        self.backend
            .timers
            .insert(timestamp, key_group, self.key.text());
        Ok(())
    }

    /// `TimerService.deleteProcessingTimeTimer(timestamp)`.
    pub fn delete_processing_time_timer(&mut self, timestamp: u64) -> Result<(), StateError> {
        self.clock("a processing-time timer")?;
        let key = self.key;
        let entries = self.entries_mut(TIMER_STATE);
        if let Some(StateEntry::Map(timers)) = entries.get_mut(key) {
            timers.remove(&timer_key(timestamp));
            if timers.is_empty() {
                entries.remove(key);
            }
        }
        let key_group = self.backend.key_group_range.start + self.group as u32;
        self.backend.timers.remove(timestamp, key_group, key.text());
        Ok(())
    }

    fn clock(&self, what: &str) -> Result<(), StateError> {
        if self.backend.clock_declared {
            return Ok(());
        }
        Err(StateError(format!(
            "{what} reads processing time, but the function does not declare `uses_processing_time()`"
        )))
    }

    /// Processing time for an access to state `name` under `ttl`: registers the state's TTL
    /// and runs its incremental cleanup, if any.
    pub(crate) fn ttl_now(&mut self, name: &str, ttl: &StateTtlConfig) -> Result<u64, StateError> {
        self.clock(&format!("state `{name}` has a time-to-live, which"))?;
        let now = self.backend.now_ms;
        let replaying = self.backend.replaying;
        let table = self.backend.table_mut(name);
        table.ttl = Some(*ttl);
        if let Some(cleanup) = ttl.cleanup_incremental.filter(|_| !replaying) {
            table.clean_up_incrementally(cleanup.entries, ttl.ttl_ms, now);
        }
        Ok(now)
    }

    /// This key's entry of state `name`, to change in place.
    pub(crate) fn entry_mut(&mut self, name: &str) -> Option<&mut StateEntry> {
        let (group, key) = (self.group, self.key);
        self.backend
            .tables
            .iter_mut()
            .find(|table| table.name == name)?
            .groups[group]
            .get_mut(key)
    }

    /// `ValueState.value()`.
    pub fn value<T: DeserializeOwned>(
        &mut self,
        descriptor: &ValueStateDescriptor<T>,
    ) -> Result<Option<T>, StateError> {
        read_value(self, descriptor.name, descriptor.ttl.as_ref())
    }

    /// `ValueState.update(value)`.
    pub fn update<T: Serialize>(
        &mut self,
        descriptor: &ValueStateDescriptor<T>,
        value: &T,
    ) -> Result<(), StateError> {
        write_value(self, descriptor.name, descriptor.ttl.as_ref(), value)
    }

    /// `ValueState.clear()` (works for every kind of state).
    pub fn clear(&mut self, name: &str) {
        let key = self.key;
        self.entries_mut(name).remove(key);
    }
}

/// Reads a value entry (value, reducing and aggregating state) under the state's TTL: an
/// expired value is cleaned up and returned only under `ReturnExpiredIfNotCleanedUp`; a live
/// one is renewed under `OnReadAndWrite`.
pub(crate) fn read_value<T: DeserializeOwned>(
    access: &mut KeyedStateAccess<'_>,
    name: &str,
    ttl: Option<&StateTtlConfig>,
) -> Result<Option<T>, StateError> {
    let Some(ttl) = ttl else {
        // Without TTL: decoded in place, no allocation beyond the value's own.
        return match access.entry(name) {
            None => Ok(None),
            Some(StateEntry::Value(bytes)) => decode(name, bytes).map(Some),
            Some(other) => Err(kind_mismatch(name, "value", other)),
        };
    };
    let now = access.ttl_now(name, ttl)?;
    let Some(entry) = access.entry_mut(name) else {
        return Ok(None);
    };
    let StateEntry::Value(bytes) = entry else {
        return Err(kind_mismatch(name, "value", entry));
    };
    let (last_access, user) = state_ttl::split(name, bytes)?;
    let value: T = decode(name, user)?;
    if ttl.expired(last_access, now) {
        access.clear(name);
        return Ok(
            (ttl.visibility == StateVisibility::ReturnExpiredIfNotCleanedUp).then_some(value),
        );
    }
    if ttl.update_type == UpdateType::OnReadAndWrite {
        state_ttl::restamp(bytes, now);
    }
    Ok(Some(value))
}

/// Writes a value entry, stamped with processing time under a TTL.
pub(crate) fn write_value<T: Serialize>(
    access: &mut KeyedStateAccess<'_>,
    name: &str,
    ttl: Option<&StateTtlConfig>,
    value: &T,
) -> Result<(), StateError> {
    let now = ttl.map(|ttl| access.ttl_now(name, ttl)).transpose()?;
    match access.slot(name, || StateEntry::Value(Vec::new()))? {
        // Encodes into the entry's own buffer: an update of an existing key allocates nothing.
        StateEntry::Value(bytes) => {
            bytes.clear();
            if let Some(now) = now {
                bytes.extend_from_slice(&now.to_le_bytes());
            }
            crate::codec::encode_message_into(value, bytes);
        }
        _ => unreachable!("slot checked the kind"),
    }
    Ok(())
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
        let mut world = backend.access("world").unwrap();
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
