//! Operator state of a non-keyed function (Flink's `OperatorStateStore` as a
//! `CheckpointedFunction` sees it): named list states, each redistributed on restore by its
//! mode — even split (`getListState`) or union (`getUnionListState`).

pub use crate::state::snapshot::{OperatorList, OperatorStateSnapshot, Redistribution};
use crate::state::state_descriptor::ListStateDescriptor;
use crate::state::state_error::StateError;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// The list states a function registered, as it reads and writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorStateStore {
    lists: BTreeMap<String, OperatorList>,
    restored: bool,
}

/// The list raw operator state is kept in.
pub const RAW_OPERATOR_STATE: &str = "_raw-operator-state";

/// Raw operator state: partitions of bytes.
pub struct RawOperatorState<'s> {
    list: &'s mut OperatorList,
}

impl RawOperatorState<'_> {
    /// The partitions restored or written so far.
    pub fn partitions(&self) -> &[Vec<u8>] {
        &self.list.elements
    }

    /// `startNewPartition()` and its bytes.
    pub fn add_partition(&mut self, bytes: Vec<u8>) {
        self.list.elements.push(bytes);
    }

    /// Drops every partition (before writing a snapshot's anew).
    pub fn clear(&mut self) {
        self.list.elements.clear();
    }
}

/// A `ListState<T>` of operator state.
pub struct OperatorListState<'s, T> {
    list: &'s mut OperatorList,
    name: &'static str,
    marker: PhantomData<fn() -> T>,
}

impl OperatorStateStore {
    /// `isRestored()`: whether it came from a snapshot.
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// `getListState(descriptor)`: even-split redistribution.
    pub fn list_state<T>(
        &mut self,
        descriptor: &ListStateDescriptor<T>,
    ) -> Result<OperatorListState<'_, T>, StateError> {
        self.get(descriptor.name, Redistribution::EvenSplit)
    }

    /// `getUnionListState(descriptor)`: union redistribution.
    pub fn union_list_state<T>(
        &mut self,
        descriptor: &ListStateDescriptor<T>,
    ) -> Result<OperatorListState<'_, T>, StateError> {
        self.get(descriptor.name, Redistribution::Union)
    }

    /// Raw operator state (Flink's `getRawOperatorStateOutput()` and
    /// `getRawOperatorStateInputs()`): partitions of bytes the function writes at a snapshot
    /// and reads back on restore; redistributed as whole partitions by even split, as Flink
    /// redistributes raw operator state. Kept as the list `_raw-operator-state`.
    pub fn raw_operator_state(&mut self) -> RawOperatorState<'_> {
        let list = self
            .lists
            .entry(RAW_OPERATOR_STATE.to_string())
            .or_insert(OperatorList {
                mode: Redistribution::EvenSplit,
                elements: Vec::new(),
            });
        RawOperatorState { list }
    }

    fn get<T>(
        &mut self,
        name: &'static str,
        mode: Redistribution,
    ) -> Result<OperatorListState<'_, T>, StateError> {
        let list = self.lists.entry(name.to_string()).or_insert(OperatorList {
            mode,
            elements: Vec::new(),
        });
        if list.mode != mode {
            return Err(StateError(format!(
                "operator list state `{name}` is {:?} but is asked for as {mode:?}",
                list.mode
            )));
        }
        Ok(OperatorListState {
            list,
            name,
            marker: PhantomData,
        })
    }

    /// What a snapshot of subtask `subtask_index` of `parallelism` holds.
    pub fn snapshot(&self, subtask_index: u32, parallelism: u32) -> OperatorStateSnapshot {
        OperatorStateSnapshot {
            subtask_index,
            parallelism,
            lists: self.lists.clone(),
        }
    }

    /// The state subtask `index` of `parallelism` restores from the snapshots of every old
    /// subtask (Flink's `RoundRobinOperatorStateRepartitioner`): a union list gets every
    /// element; an even-split list, at unchanged parallelism, the subtask's own elements,
    /// otherwise its contiguous share of all elements in old-subtask order.
    pub fn assign(
        snapshots: &[OperatorStateSnapshot],
        index: u32,
        parallelism: u32,
    ) -> OperatorStateStore {
        assert!(index < parallelism);
        let mut ordered: Vec<&OperatorStateSnapshot> = snapshots.iter().collect();
        ordered.sort_by_key(|s| s.subtask_index);
        let unchanged = ordered.iter().all(|s| s.parallelism == parallelism)
            && ordered.len() == parallelism as usize;
        let mut lists: BTreeMap<String, OperatorList> = BTreeMap::new();
        for snapshot in &ordered {
            for (name, list) in &snapshot.lists {
                let all = lists.entry(name.clone()).or_insert(OperatorList {
                    mode: list.mode,
                    elements: Vec::new(),
                });
                let own = snapshot.subtask_index == index;
                if list.mode == Redistribution::Union || !unchanged || own {
                    all.elements.extend(list.elements.iter().cloned());
                }
            }
        }
        for list in lists.values_mut() {
            if list.mode == Redistribution::EvenSplit && !unchanged {
                list.elements = share(std::mem::take(&mut list.elements), index, parallelism);
            }
        }
        OperatorStateStore {
            lists,
            restored: !snapshots.is_empty(),
        }
    }
}

/// Subtask `index`'s contiguous share of `elements` over `parallelism` (sizes differ by one at
/// most, the larger first).
fn share(elements: Vec<Vec<u8>>, index: u32, parallelism: u32) -> Vec<Vec<u8>> {
    let (count, parts) = (elements.len(), parallelism as usize);
    let (base, extra) = (count / parts, count % parts);
    let index = index as usize;
    let start = index * base + index.min(extra);
    let len = base + usize::from(index < extra);
    elements.into_iter().skip(start).take(len).collect()
}

impl<T: Serialize + DeserializeOwned> OperatorListState<'_, T> {
    /// `get()`: the elements.
    pub fn get(&self) -> Result<Vec<T>, StateError> {
        self.list
            .elements
            .iter()
            .map(|bytes| {
                postcard::from_bytes(bytes).map_err(|e| {
                    StateError(format!(
                        "operator list state `{}` does not decode as the descriptor's type: {e}",
                        self.name
                    ))
                })
            })
            .collect()
    }

    /// `add(value)`.
    pub fn add(&mut self, value: &T) {
        self.list.elements.push(encode(value));
    }

    /// `update(values)`: replaces the elements.
    pub fn update(&mut self, values: &[T]) {
        self.list.elements = values.iter().map(encode).collect();
    }

    /// `clear()`.
    pub fn clear(&mut self) {
        self.list.elements.clear();
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("state values are serde types that always encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUFFER: ListStateDescriptor<u32> = ListStateDescriptor::new("buffer");
    const SEEN: ListStateDescriptor<u32> = ListStateDescriptor::new("seen");

    fn subtask(
        index: u32,
        parallelism: u32,
        buffered: &[u32],
        seen: &[u32],
    ) -> OperatorStateSnapshot {
        let mut store = OperatorStateStore::default();
        store.list_state(&BUFFER).unwrap().update(buffered);
        store.union_list_state(&SEEN).unwrap().update(seen);
        store.snapshot(index, parallelism)
    }

    fn read(store: &mut OperatorStateStore) -> (Vec<u32>, Vec<u32>) {
        let buffered = store.list_state(&BUFFER).unwrap().get().unwrap();
        let seen = store.union_list_state(&SEEN).unwrap().get().unwrap();
        (buffered, seen)
    }

    #[test]
    fn even_split_divides_and_union_gives_all() {
        let old = [
            subtask(1, 2, &[3, 4, 5], &[20]),
            subtask(0, 2, &[1, 2], &[10]),
        ];
        let mut parts: Vec<(Vec<u32>, Vec<u32>)> = (0..3)
            .map(|index| read(&mut OperatorStateStore::assign(&old, index, 3)))
            .collect();
        assert_eq!(parts[0], (vec![1, 2], vec![10, 20]));
        assert_eq!(parts[1], (vec![3, 4], vec![10, 20]));
        assert_eq!(parts[2], (vec![5], vec![10, 20]));
        let mut same = OperatorStateStore::assign(&old, 1, 2);
        assert!(same.is_restored());
        parts = vec![read(&mut same)];
        assert_eq!(
            parts[0],
            (vec![3, 4, 5], vec![10, 20]),
            "its own at the same parallelism"
        );
    }

    #[test]
    fn raw_operator_state_partitions_are_split_whole() {
        let old: Vec<OperatorStateSnapshot> = (0..2)
            .map(|index| {
                let mut store = OperatorStateStore::default();
                let mut raw = store.raw_operator_state();
                raw.add_partition(vec![index as u8; 3]);
                raw.add_partition(vec![10 + index as u8]);
                store.snapshot(index, 2)
            })
            .collect();
        let parts: Vec<Vec<Vec<u8>>> = (0..4)
            .map(|index| {
                let mut store = OperatorStateStore::assign(&old, index, 4);
                store.raw_operator_state().partitions().to_vec()
            })
            .collect();
        assert_eq!(parts[0], vec![vec![0, 0, 0]]);
        assert_eq!(parts[1], vec![vec![10]]);
        assert_eq!(parts[2], vec![vec![1, 1, 1]]);
        assert_eq!(parts[3], vec![vec![11]]);
        let mut same = OperatorStateStore::assign(&old, 1, 2);
        assert_eq!(
            same.raw_operator_state().partitions(),
            &[vec![1, 1, 1], vec![11]]
        );
    }

    #[test]
    fn a_list_asked_for_in_the_other_mode_is_an_error() {
        let mut store = OperatorStateStore::default();
        store.list_state(&BUFFER).unwrap().add(&1);
        assert!(store.union_list_state(&BUFFER).is_err());
        assert!(!store.is_restored());
    }
}
