//! One key group's entries of one state (Flink's `StateMap` inside a heap `StateTable`),
//! addressed by a key hashed once per record.
//!
//! A record touches a key's state several times (a counter reads, checks its slot, writes);
//! hashing the key string each time was a third of keyed-state access. A [`HashedKey`] carries
//! the hash from `access(key)` to every lookup. The hash is the one `FxHashMap<Text, _>` would
//! compute, and the table the same hashbrown table, so iteration order (which incremental TTL
//! cleanup follows) is what it was with the map.

use crate::api::value::Text;
use crate::state::snapshot::StateEntry;
use hashbrown::hash_table::{Entry, HashTable};
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;

/// A key with its hash, computed once.
#[derive(Clone, Copy, Debug)]
pub struct HashedKey<'a> {
    text: &'a str,
    hash: u64,
}

impl<'a> HashedKey<'a> {
    /// Hashes `text`.
    #[inline]
    pub fn new(text: &'a str) -> HashedKey<'a> {
        HashedKey {
            text,
            hash: hash_of(text),
        }
    }

    /// The key.
    pub fn text(&self) -> &'a str {
        self.text
    }

    fn matches(&self) -> impl Fn(&(Text, StateEntry)) -> bool + '_ {
        move |(key, _)| key.as_str() == self.text
    }
}

#[inline]
fn hash_of(text: &str) -> u64 {
    FxBuildHasher.hash_one(text)
}

fn rehash((key, _): &(Text, StateEntry)) -> u64 {
    hash_of(key)
}

/// One key group's entries of one state: key to entry.
#[derive(Default)]
pub struct StateMap {
    entries: HashTable<(Text, StateEntry)>,
}

impl StateMap {
    /// The key's entry.
    pub fn get(&self, key: HashedKey<'_>) -> Option<&StateEntry> {
        let found = self.entries.find(key.hash, key.matches());
        found.map(|(_, entry)| entry)
    }

    /// The key's entry, to change in place.
    pub fn get_mut(&mut self, key: HashedKey<'_>) -> Option<&mut StateEntry> {
        let found = self.entries.find_mut(key.hash, key.matches());
        found.map(|(_, entry)| entry)
    }

    /// The key's entry, created by `empty` if absent.
    pub fn get_or_insert_with(
        &mut self,
        key: HashedKey<'_>,
        empty: impl FnOnce() -> StateEntry,
    ) -> &mut StateEntry {
        let slot = match self.entries.entry(key.hash, key.matches(), rehash) {
            Entry::Occupied(occupied) => occupied.into_mut(),
            Entry::Vacant(vacant) => vacant.insert((Text::from(key.text), empty())).into_mut(),
        };
        &mut slot.1
    }

    /// Sets the key's entry.
    pub fn insert(&mut self, key: Text, entry: StateEntry) {
        let hashed = HashedKey::new(&key);
        match self.entries.entry(hashed.hash, hashed.matches(), rehash) {
            Entry::Occupied(occupied) => occupied.into_mut().1 = entry,
            Entry::Vacant(vacant) => {
                vacant.insert((key, entry));
            }
        }
    }

    /// Removes the key's entry.
    pub fn remove(&mut self, key: HashedKey<'_>) -> Option<StateEntry> {
        let found = self.entries.find_entry(key.hash, key.matches()).ok()?;
        Some(found.remove().0 .1)
    }

    /// Sets every entry of `entries` (as `HashMap::extend` does, reserving first).
    pub fn extend(&mut self, entries: impl ExactSizeIterator<Item = (Text, StateEntry)>) {
        let additional = match self.entries.is_empty() {
            true => entries.len(),
            false => entries.len().div_ceil(2),
        };
        self.entries.reserve(additional, rehash);
        entries.for_each(|(key, entry)| self.insert(key, entry));
    }

    /// How many keys have an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every key and its entry, in the table's (fixed, unsorted) order.
    pub fn iter(&self) -> impl Iterator<Item = (&Text, &StateEntry)> {
        self.entries.iter().map(|(key, entry)| (key, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustc_hash::FxHashMap;

    fn value(byte: u8) -> StateEntry {
        StateEntry::Value(vec![byte])
    }

    #[test]
    fn keeps_one_entry_per_key() {
        let mut map = StateMap::default();
        assert!(map.get(HashedKey::new("a")).is_none());
        *map.get_or_insert_with(HashedKey::new("a"), || value(1)) = value(2);
        assert_eq!(
            map.get_or_insert_with(HashedKey::new("a"), || value(9)),
            &value(2)
        );
        map.insert("b".into(), value(3));
        map.insert("b".into(), value(4));
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(HashedKey::new("b")), Some(&value(4)));
        assert_eq!(map.remove(HashedKey::new("a")), Some(value(2)));
        assert_eq!(map.remove(HashedKey::new("a")), None);
        assert_eq!(map.len(), 1);
    }

    /// Iteration order is what an `FxHashMap` gives for the same inserts and removals (what
    /// incremental TTL cleanup walks), so replacing the map changed no run.
    #[test]
    fn iterates_in_the_order_of_an_fx_hash_map() {
        let mut map = StateMap::default();
        let mut reference: FxHashMap<Text, StateEntry> = FxHashMap::default();
        for round in 0..3u32 {
            for word in 0..500u32 {
                let key = format!("w{}", word * 7 + round);
                map.insert(key.as_str().into(), value(word as u8));
                reference.insert(key.as_str().into(), value(word as u8));
                if word % 5 == 0 {
                    let gone = format!("w{}", word * 3);
                    map.remove(HashedKey::new(&gone));
                    reference.remove(gone.as_str());
                }
            }
            let ours: Vec<&Text> = map.iter().map(|(key, _)| key).collect();
            let theirs: Vec<&Text> = reference.keys().collect();
            assert_eq!(ours, theirs, "round {round}");
        }
        let mut restored = StateMap::default();
        let mut restored_reference: FxHashMap<Text, StateEntry> = FxHashMap::default();
        let sorted: Vec<(Text, StateEntry)> = {
            let mut all: Vec<_> = reference.into_iter().collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        restored.extend(sorted.clone().into_iter());
        restored_reference.extend(sorted);
        let ours: Vec<&Text> = restored.iter().map(|(key, _)| key).collect();
        let theirs: Vec<&Text> = restored_reference.keys().collect();
        assert_eq!(ours, theirs, "restored");
        // A second snapshot's key group restored into the same, non-empty map.
        let more: Vec<(Text, StateEntry)> = (0..500)
            .map(|word| (format!("m{word}").as_str().into(), value(1)))
            .collect();
        restored.extend(more.clone().into_iter());
        restored_reference.extend(more);
        let ours: Vec<&Text> = restored.iter().map(|(key, _)| key).collect();
        let theirs: Vec<&Text> = restored_reference.keys().collect();
        assert_eq!(ours, theirs, "restored twice");
    }
}
