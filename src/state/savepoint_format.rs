//! The canonical savepoint format (Flink's unified savepoint format, FLINK-20976): one
//! subtask's state laid out per operator uid and state name, keyed state key group by key
//! group with a CRC-32 per key group, operator state as named list state with its
//! redistribution mode. It depends on no backend's layout, so a savepoint restores into any
//! backend and any parallelism. A native savepoint writes the backend's checkpoint file
//! (`TaskStateSnapshot`) instead.

use crate::api::value::Text;
use crate::codec::{decode, CodecError, FileKind};
use crate::ids::KeyGroup;
use crate::state::key_group::KeyGroupRange;
use crate::state::snapshot::{
    BroadcastStateSnapshot, KeyedStateSnapshot, OperatorSnapshot, SinkStateSnapshot, SourceOffsets,
    StateEntry, StateTable, TaskStateSnapshot,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The source's partition offsets: union list state, `(partition, next offset)` elements.
pub const SOURCE_OFFSETS_STATE: &str = "partition-offsets";
/// A committing sink's pre-committed work: split list state, one element per subtask.
pub const SINK_COMMITTABLES_STATE: &str = "sink-committables";
/// A broadcast state copy's application log (see `state::broadcast_state`).
pub const BROADCAST_LOG_STATE: &str = "_snapflow/broadcast-log";

pub use crate::state::operator_state::Redistribution;
use crate::state::operator_state::{OperatorList, OperatorStateSnapshot};

/// One named operator list state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListState {
    /// Its name.
    pub name: String,
    /// How it is redistributed.
    pub mode: Redistribution,
    /// Its elements, serialized.
    pub elements: Vec<Vec<u8>>,
}

/// A keyed state's name and kind, which key-group entries refer to by index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMeta {
    /// The state's name (its descriptor's).
    pub name: String,
    /// "value", "list" or "map".
    pub kind: String,
    /// Its time-to-live in milliseconds, when its values carry last-access stamps.
    pub ttl_ms: Option<u64>,
}

/// One key group's entries, with their checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupBlock {
    /// The key group.
    pub key_group: u32,
    /// `(state index, key, entry)`, by state then key.
    pub entries: Vec<(u32, Text, StateEntry)>,
    /// CRC-32 of the entries' encoding.
    pub checksum: u32,
}

/// An operator's keyed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalKeyedState {
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// The key groups the subtask owned.
    pub key_group_range: KeyGroupRange,
    /// The states, in order.
    pub states: Vec<StateMeta>,
    /// Processing time (milliseconds) when it was taken.
    pub processing_time_ms: u64,
    /// Key group by key group, ascending; empty key groups are absent.
    pub key_groups: Vec<KeyGroupBlock>,
    /// Raw keyed state, key group by key group: `(key group, bytes, CRC-32 of the bytes)`.
    pub raw: Vec<(u32, Vec<u8>, u32)>,
}

/// One operator's state in a subtask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalOperatorState {
    /// The operator's uid.
    pub uid: String,
    /// Its keyed state, if keyed.
    pub keyed: Option<CanonicalKeyedState>,
    /// Its operator list states.
    pub lists: Vec<ListState>,
    /// For a user function's operator state: the subtask that wrote it and the parallelism
    /// then (what redistribution needs).
    pub function_subtask: Option<(u32, u32)>,
}

/// One subtask's part of a canonical savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalTaskState {
    /// The savepoint's id.
    pub checkpoint_id: u64,
    /// Its operators' state, by uid.
    pub operators: Vec<CanonicalOperatorState>,
}

/// Why a canonical savepoint file cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A key group's checksum does not match its entries.
    #[error("operator `{uid}`: key group {key_group}: checksum mismatch")]
    KeyGroupChecksum {
        /// The operator.
        uid: String,
        /// The key group.
        key_group: u32,
    },
    /// An entry names a state the operator does not list.
    #[error("operator `{uid}`: key group {key_group}: state index {index} out of range")]
    StateIndex {
        /// The operator.
        uid: String,
        /// The key group.
        key_group: u32,
        /// The index.
        index: u32,
    },
    /// A list element does not decode.
    #[error("operator `{uid}`: list state `{name}`: {reason}")]
    ListElement {
        /// The operator.
        uid: String,
        /// The state.
        name: String,
        /// Why.
        reason: String,
    },
    /// The operator holds no state snapflow knows how to restore.
    #[error("operator `{uid}`: {reason}")]
    Shape {
        /// The operator.
        uid: String,
        /// What is wrong.
        reason: String,
    },
}

fn checksum(entries: &[(u32, Text, StateEntry)]) -> u32 {
    let bytes = postcard::to_allocvec(entries).expect("state entries always encode");
    crc32fast::hash(&bytes)
}

fn encode_element<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("operator state always encodes")
}

/// Writes a task snapshot in the canonical format (aligned: it has no channel state).
pub fn to_canonical(snapshot: &TaskStateSnapshot) -> CanonicalTaskState {
    assert!(
        snapshot.channel_state.is_none(),
        "a savepoint is aligned: it holds no in-flight data"
    );
    let operators = snapshot
        .operators
        .iter()
        .map(|(uid, operator)| canonical_operator(uid, operator))
        .collect();
    CanonicalTaskState {
        checkpoint_id: snapshot.checkpoint_id,
        operators,
    }
}

fn canonical_operator(uid: &str, operator: &OperatorSnapshot) -> CanonicalOperatorState {
    if let OperatorSnapshot::Operator(state) = operator {
        let lists = state
            .lists
            .iter()
            .map(|(name, list)| ListState {
                name: name.clone(),
                mode: list.mode,
                elements: list.elements.clone(),
            })
            .collect();
        return CanonicalOperatorState {
            uid: uid.to_string(),
            keyed: None,
            lists,
            function_subtask: Some((state.subtask_index, state.parallelism)),
        };
    }
    if let OperatorSnapshot::Keyed(KeyedStateSnapshot {
        broadcast: Some(broadcast),
        ..
    }) = operator
    {
        return canonical_keyed_broadcast(uid, operator, broadcast);
    }
    let (keyed, lists) = match operator {
        OperatorSnapshot::Operator(_) => unreachable!("handled above"),
        OperatorSnapshot::Keyed(keyed) => (Some(canonical_keyed(keyed)), Vec::new()),
        OperatorSnapshot::Source(offsets) => {
            let elements = offsets
                .next_offsets
                .iter()
                .map(|(partition, offset)| encode_element(&(*partition, *offset)))
                .collect();
            let list = ListState {
                name: SOURCE_OFFSETS_STATE.to_string(),
                mode: Redistribution::Union,
                elements,
            };
            (None, vec![list])
        }
        OperatorSnapshot::Sink(sink) => {
            let list = ListState {
                name: SINK_COMMITTABLES_STATE.to_string(),
                mode: Redistribution::EvenSplit,
                elements: vec![encode_element(sink)],
            };
            (None, vec![list])
        }
    };
    CanonicalOperatorState {
        uid: uid.to_string(),
        keyed,
        lists,
        function_subtask: None,
    }
}

/// A keyed broadcast operator: its keyed state, and its broadcast states as lists of
/// `(key, value)` elements in `Broadcast` mode with the copy's application log beside them.
fn canonical_keyed_broadcast(
    uid: &str,
    operator: &OperatorSnapshot,
    broadcast: &BroadcastStateSnapshot,
) -> CanonicalOperatorState {
    let OperatorSnapshot::Keyed(keyed) = operator else {
        unreachable!("called for keyed state")
    };
    let mut lists: Vec<ListState> = broadcast
        .states
        .iter()
        .map(|(name, map)| ListState {
            name: name.clone(),
            mode: Redistribution::Broadcast,
            elements: map.iter().map(|entry| encode_element(&entry)).collect(),
        })
        .collect();
    lists.push(ListState {
        name: BROADCAST_LOG_STATE.to_string(),
        mode: Redistribution::Broadcast,
        elements: broadcast.log.iter().map(encode_element).collect(),
    });
    CanonicalOperatorState {
        uid: uid.to_string(),
        keyed: Some(canonical_keyed(keyed)),
        lists,
        function_subtask: Some((broadcast.subtask_index, broadcast.parallelism)),
    }
}

fn canonical_keyed(keyed: &KeyedStateSnapshot) -> CanonicalKeyedState {
    let states: Vec<StateMeta> = keyed
        .tables
        .iter()
        .map(|(name, table)| StateMeta {
            name: name.clone(),
            kind: table
                .values()
                .flat_map(BTreeMap::values)
                .next()
                .map_or("value", StateEntry::kind_name)
                .to_string(),
            ttl_ms: keyed.ttl_ms.get(name).copied(),
        })
        .collect();
    let mut by_group: BTreeMap<KeyGroup, Vec<(u32, Text, StateEntry)>> = BTreeMap::new();
    for (index, table) in keyed.tables.values().enumerate() {
        for (key_group, entries) in table {
            let block = by_group.entry(*key_group).or_default();
            for (key, entry) in entries {
                block.push((index as u32, key.clone(), entry.clone()));
            }
        }
    }
    let key_groups = by_group
        .into_iter()
        .map(|(key_group, entries)| KeyGroupBlock {
            key_group: key_group.0,
            checksum: checksum(&entries),
            entries,
        })
        .collect();
    CanonicalKeyedState {
        max_parallelism: keyed.max_parallelism,
        key_group_range: keyed.key_group_range,
        processing_time_ms: keyed.processing_time_ms,
        states,
        key_groups,
        raw: keyed
            .raw
            .iter()
            .map(|(group, bytes)| (group.0, bytes.clone(), crc32fast::hash(bytes)))
            .collect(),
    }
}

/// Reads a canonical savepoint file back into the engine's snapshot form, checking every key
/// group's checksum.
pub fn from_canonical(state: CanonicalTaskState) -> Result<TaskStateSnapshot, CanonicalError> {
    let mut operators = BTreeMap::new();
    for operator in state.operators {
        let uid = operator.uid.clone();
        operators.insert(uid, restore_operator(operator)?);
    }
    Ok(TaskStateSnapshot {
        checkpoint_id: state.checkpoint_id,
        operators,
        channel_state: None,
    })
}

fn restore_operator(operator: CanonicalOperatorState) -> Result<OperatorSnapshot, CanonicalError> {
    let CanonicalOperatorState {
        uid,
        keyed,
        lists,
        function_subtask,
    } = operator;
    let shape = |reason: &str| CanonicalError::Shape {
        uid: uid.clone(),
        reason: reason.to_string(),
    };
    if let (Some(keyed), Some((subtask_index, parallelism))) = (&keyed, function_subtask) {
        if subtask_index >= parallelism {
            return Err(shape("a broadcast state copy names no valid subtask"));
        }
        let broadcast = restore_broadcast(&uid, &lists, subtask_index, parallelism)?;
        let mut keyed = restore_keyed(&uid, keyed.clone())?;
        keyed.broadcast = Some(broadcast);
        return Ok(OperatorSnapshot::Keyed(keyed));
    }
    if let Some((subtask_index, parallelism)) = function_subtask {
        if keyed.is_some() || subtask_index >= parallelism {
            return Err(shape("a function's operator state names no valid subtask"));
        }
        let lists = lists
            .into_iter()
            .map(|list| {
                let state = OperatorList {
                    mode: list.mode,
                    elements: list.elements,
                };
                (list.name, state)
            })
            .collect();
        return Ok(OperatorSnapshot::Operator(OperatorStateSnapshot {
            subtask_index,
            parallelism,
            lists,
        }));
    }
    match (keyed, lists.as_slice()) {
        (Some(keyed), []) => Ok(OperatorSnapshot::Keyed(restore_keyed(&uid, keyed)?)),
        (None, [list]) if list.name == SOURCE_OFFSETS_STATE => {
            let mut offsets = SourceOffsets::default();
            for element in &list.elements {
                let (partition, offset): (u32, u64) = decode_element(&uid, list, element)?;
                offsets.next_offsets.insert(partition, offset);
            }
            Ok(OperatorSnapshot::Source(offsets))
        }
        (None, [list]) if list.name == SINK_COMMITTABLES_STATE => match list.elements.as_slice() {
            [element] => Ok(OperatorSnapshot::Sink(decode_element::<SinkStateSnapshot>(
                &uid, list, element,
            )?)),
            _ => Err(shape("sink-committables holds one element per subtask")),
        },
        _ => Err(shape(
            "expected keyed state, or one list state named partition-offsets or sink-committables",
        )),
    }
}

fn restore_broadcast(
    uid: &str,
    lists: &[ListState],
    subtask_index: u32,
    parallelism: u32,
) -> Result<BroadcastStateSnapshot, CanonicalError> {
    let mut broadcast = BroadcastStateSnapshot {
        subtask_index,
        parallelism,
        states: BTreeMap::new(),
        log: Vec::new(),
    };
    for list in lists {
        if list.mode != Redistribution::Broadcast {
            return Err(CanonicalError::Shape {
                uid: uid.to_string(),
                reason: format!(
                    "list state `{}` of a keyed broadcast operator is {:?}, not Broadcast",
                    list.name, list.mode
                ),
            });
        }
        if list.name == BROADCAST_LOG_STATE {
            for element in &list.elements {
                broadcast.log.push(decode_element(uid, list, element)?);
            }
            continue;
        }
        let map = broadcast.states.entry(list.name.clone()).or_default();
        for element in &list.elements {
            let (key, value): (Vec<u8>, Vec<u8>) = decode_element(uid, list, element)?;
            map.insert(key, value);
        }
    }
    Ok(broadcast)
}

fn decode_element<T: serde::de::DeserializeOwned>(
    uid: &str,
    list: &ListState,
    element: &[u8],
) -> Result<T, CanonicalError> {
    postcard::from_bytes(element).map_err(|error| CanonicalError::ListElement {
        uid: uid.to_string(),
        name: list.name.clone(),
        reason: error.to_string(),
    })
}

fn restore_keyed(
    uid: &str,
    keyed: CanonicalKeyedState,
) -> Result<KeyedStateSnapshot, CanonicalError> {
    let mut tables: Vec<StateTable> = vec![StateTable::new(); keyed.states.len()];
    for block in keyed.key_groups {
        if checksum(&block.entries) != block.checksum {
            return Err(CanonicalError::KeyGroupChecksum {
                uid: uid.to_string(),
                key_group: block.key_group,
            });
        }
        for (index, key, entry) in block.entries {
            let table = tables
                .get_mut(index as usize)
                .ok_or(CanonicalError::StateIndex {
                    uid: uid.to_string(),
                    key_group: block.key_group,
                    index,
                })?;
            table
                .entry(KeyGroup(block.key_group))
                .or_default()
                .insert(key, entry);
        }
    }
    let mut raw = BTreeMap::new();
    for (key_group, bytes, checksum) in keyed.raw {
        if crc32fast::hash(&bytes) != checksum {
            return Err(CanonicalError::KeyGroupChecksum {
                uid: uid.to_string(),
                key_group,
            });
        }
        raw.insert(KeyGroup(key_group), bytes);
    }
    let ttl_ms = keyed
        .states
        .iter()
        .filter_map(|meta| Some((meta.name.clone(), meta.ttl_ms?)))
        .collect();
    let tables = keyed
        .states
        .into_iter()
        .map(|meta| meta.name)
        .zip(tables)
        .collect();
    Ok(KeyedStateSnapshot {
        max_parallelism: keyed.max_parallelism,
        key_group_range: keyed.key_group_range,
        tables,
        processing_time_ms: keyed.processing_time_ms,
        ttl_ms,
        broadcast: None,
        raw,
    })
}

/// A subtask's state file, checkpoint (native) or canonical savepoint, told apart by its
/// magic and decoded to the engine's snapshot form.
pub fn decode_task_state(path: &str, bytes: &[u8]) -> Result<TaskStateSnapshot, CodecError> {
    if bytes.get(0..4) != Some(&FileKind::CanonicalSavepoint.magic()[..]) {
        return decode(FileKind::TaskState, path, bytes);
    }
    let canonical: CanonicalTaskState = decode(FileKind::CanonicalSavepoint, path, bytes)?;
    from_canonical(canonical).map_err(|error| CodecError {
        path: path.to_string(),
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> TaskStateSnapshot {
        let mut count = StateTable::new();
        count.entry(KeyGroup(3)).or_default().insert(
            Text::from("a"),
            StateEntry::Value(postcard::to_allocvec(&2i64).unwrap()),
        );
        count.entry(KeyGroup(90)).or_default().insert(
            Text::from("b"),
            StateEntry::Value(postcard::to_allocvec(&5i64).unwrap()),
        );
        let keyed = KeyedStateSnapshot {
            max_parallelism: 128,
            key_group_range: KeyGroupRange { start: 0, end: 127 },
            tables: BTreeMap::from([("count".to_string(), count)]),
            processing_time_ms: 1_234,
            ttl_ms: BTreeMap::from([("count".to_string(), 60_000)]),
            broadcast: None,
            raw: BTreeMap::from([(KeyGroup(5), vec![1, 2, 3])]),
        };
        let offsets = SourceOffsets {
            next_offsets: BTreeMap::from([(0, 17), (2, 4)]),
        };
        TaskStateSnapshot {
            checkpoint_id: 7,
            operators: BTreeMap::from([
                ("counter".to_string(), OperatorSnapshot::Keyed(keyed)),
                ("source".to_string(), OperatorSnapshot::Source(offsets)),
                (
                    "sink".to_string(),
                    OperatorSnapshot::Sink(SinkStateSnapshot {
                        subtask_index: 1,
                        next_transaction: 3,
                        ..SinkStateSnapshot::default()
                    }),
                ),
            ]),
            channel_state: None,
        }
    }

    #[test]
    fn canonical_round_trips_key_group_by_key_group() {
        let canonical = to_canonical(&snapshot());
        let counter = &canonical.operators[0];
        assert_eq!(counter.uid, "counter");
        let keyed = counter.keyed.as_ref().expect("keyed");
        let groups: Vec<u32> = keyed.key_groups.iter().map(|b| b.key_group).collect();
        assert_eq!(groups, vec![3, 90]);
        assert_eq!(keyed.states[0].name, "count");
        assert_eq!(canonical.operators[2].lists[0].mode, Redistribution::Union);
        assert_eq!(from_canonical(canonical), Ok(snapshot()));
    }

    #[test]
    fn a_functions_operator_state_round_trips_with_its_subtask() {
        use crate::state::operator_state::OperatorList;
        let mut snapshot = snapshot();
        let lists = BTreeMap::from([(
            "seen".to_string(),
            OperatorList {
                mode: Redistribution::Union,
                elements: vec![vec![1], vec![2]],
            },
        )]);
        let state = OperatorStateSnapshot {
            subtask_index: 1,
            parallelism: 2,
            lists,
        };
        snapshot
            .operators
            .insert("first-seen".to_string(), OperatorSnapshot::Operator(state));
        let canonical = to_canonical(&snapshot);
        assert_eq!(from_canonical(canonical), Ok(snapshot));
    }

    #[test]
    fn a_corrupt_key_group_is_named() {
        let mut canonical = to_canonical(&snapshot());
        let keyed = canonical.operators[0].keyed.as_mut().expect("keyed");
        keyed.key_groups[1].entries[0].1 = Text::from("c");
        assert_eq!(
            from_canonical(canonical).unwrap_err().to_string(),
            "operator `counter`: key group 90: checksum mismatch"
        );
    }
}
