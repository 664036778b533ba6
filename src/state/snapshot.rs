//! What a subtask's snapshot holds, as written to checkpoint storage.

use crate::api::value::Text;
use crate::ids::KeyGroup;
use crate::state::channel_state::ChannelStateSnapshot;
use crate::state::key_group::KeyGroupRange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One key's value of one state, serialized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateEntry {
    /// A `ValueState`.
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A `ListState`.
    List(Vec<Vec<u8>>),
    /// A `MapState`.
    Map(BTreeMap<Vec<u8>, Vec<u8>>),
}

impl StateEntry {
    /// "value", "list" or "map".
    pub fn kind_name(&self) -> &'static str {
        match self {
            StateEntry::Value(_) => "value",
            StateEntry::List(_) => "list",
            StateEntry::Map(_) => "map",
        }
    }
}

/// One state's entries: key group, then key.
pub type StateTable = BTreeMap<KeyGroup, BTreeMap<Text, StateEntry>>;

/// The keyed state of one operator in one subtask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateSnapshot {
    /// The job's number of key groups when the snapshot was taken.
    pub max_parallelism: u32,
    /// The key groups the subtask owned.
    pub key_group_range: KeyGroupRange,
    /// State name to table.
    pub tables: BTreeMap<String, StateTable>,
    /// Processing time (milliseconds) when it was taken: what its TTL expiry is judged at.
    pub processing_time_ms: u64,
    /// The states under a time-to-live (their values carry last-access stamps): name to TTL
    /// in milliseconds.
    pub ttl_ms: BTreeMap<String, u64>,
    /// The operator's broadcast state in this subtask, for a keyed broadcast operator.
    pub broadcast: Option<BroadcastStateSnapshot>,
    /// Raw keyed state: the bytes the function wrote per key group (see `state::raw_state`).
    pub raw: BTreeMap<KeyGroup, Vec<u8>>,
}

/// One subtask's copy of a keyed broadcast operator's broadcast state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastStateSnapshot {
    /// The subtask it was taken in.
    pub subtask_index: u32,
    /// The operator's parallelism then.
    pub parallelism: u32,
    /// State name to map: key bytes to value bytes.
    pub states: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// The broadcast elements the copy applied, in order (see `state::broadcast_state`).
    pub log: Vec<crate::api::value::Value>,
}

/// A source subtask's operator state: the next offset to read per partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffsets {
    /// Partition index to the offset of the next record to read.
    pub next_offsets: BTreeMap<u32, u64>,
}

/// The state of one operator of a chain in a subtask's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorSnapshot {
    /// A source's offsets (operator list state, union-redistributed by partition).
    Source(SourceOffsets),
    /// A keyed operator's state.
    Keyed(KeyedStateSnapshot),
    /// A committing sink's operator state: what it pre-committed and not yet committed.
    Sink(SinkStateSnapshot),
    /// A user function's operator list states (`CheckpointedFunction`).
    Operator(OperatorStateSnapshot),
}

/// How operator list state is redistributed when parallelism changes (Flink's
/// `OperatorStateHandle.Mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redistribution {
    /// `SPLIT_DISTRIBUTE`: the elements of all subtasks are split evenly over the new ones.
    EvenSplit,
    /// `UNION`: every new subtask gets the elements of all subtasks.
    Union,
    /// `BROADCAST`: every subtask holds the same state; new subtask `i` gets old subtask
    /// `i % old_parallelism`'s copy (broadcast state, in canonical savepoints).
    Broadcast,
}

/// One named list state: its mode and elements (serialized).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorList {
    /// How it is redistributed.
    pub mode: Redistribution,
    /// Its elements.
    pub elements: Vec<Vec<u8>>,
}

/// One subtask's operator state of one operator, as snapshotted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStateSnapshot {
    /// The subtask that wrote it.
    pub subtask_index: u32,
    /// The operator's parallelism then.
    pub parallelism: u32,
    /// Its list states by name.
    pub lists: BTreeMap<String, OperatorList>,
}

/// A committing sink subtask's state (restored by the same subtask index).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStateSnapshot {
    /// The sink subtask.
    pub subtask_index: u32,
    /// What its transactional ids and committer keys start with (`job-uid-index`): a sink
    /// subtask that takes this state over (after a rescale or a job change) clears up after
    /// it under this prefix, as Flink's `KafkaWriter` aborts the recovered prefixes' ids.
    pub prefix: String,
    /// Two-phase commit: the sequence number of the next transaction; every transactional id
    /// from it on belongs to transactions opened after this checkpoint (aborted on recovery).
    pub next_transaction: u64,
    /// Pre-committed work per checkpoint, oldest first.
    pub pending: Vec<PendingCommit>,
}

/// Work pre-committed for a checkpoint, committed when a checkpoint at least as new completes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// The checkpoint whose barrier pre-committed it.
    pub checkpoint_id: u64,
    /// What to commit.
    pub content: PendingContent,
}

/// What a pending commit holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingContent {
    /// A broker transaction, resumed by its identity to commit it (Flink's committable).
    Transaction {
        /// The transactional id.
        transactional_id: String,
        /// The producer that ran it.
        identity: crate::services::transaction_table::ProducerIdentity,
        /// Records in it.
        records: u64,
    },
    /// A write-ahead batch: the records themselves.
    Batch {
        /// Serialized records.
        records: crate::services::record_batch::RecordBatch,
    },
}

/// Everything one subtask wrote for one checkpoint: operator uid to its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStateSnapshot {
    /// The checkpoint it belongs to.
    pub checkpoint_id: u64,
    /// State by operator uid; stateless operators are absent.
    pub operators: BTreeMap<String, OperatorSnapshot>,
    /// In-flight data of an unaligned checkpoint; `None` for an aligned one.
    pub channel_state: Option<ChannelStateSnapshot>,
}

/// A key's state as the checker compares it: key to state name to entry.
pub type LogicalKeyedState = BTreeMap<Text, BTreeMap<String, StateEntry>>;

/// In a key-ordered view, the state name raw keyed state is shown under: one entry per key
/// group, under the pseudo key `raw_key_group_key(key group)` (raw state belongs to a key
/// group, not to a key).
pub const RAW_KEYED_STATE: &str = "_raw";

/// The pseudo key a key group's raw keyed state is shown under in a key-ordered view:
/// `⟨raw key group N⟩` (mathematical angle brackets, which no generated or parsed key holds).
pub fn raw_key_group_key(key_group: KeyGroup) -> Text {
    Text::from(format!("\u{27e8}raw key group {}\u{27e9}", key_group.0))
}

impl KeyedStateSnapshot {
    /// Adds this snapshot's entries to a key-ordered view (key groups flattened away; raw
    /// keyed state under one pseudo key per key group).
    pub fn merge_into(&self, view: &mut LogicalKeyedState) {
        for (key_group, bytes) in &self.raw {
            view.entry(raw_key_group_key(*key_group))
                .or_default()
                .insert(
                    RAW_KEYED_STATE.to_string(),
                    StateEntry::Value(bytes.clone()),
                );
        }
        for (state_name, table) in &self.tables {
            for entries in table.values() {
                for (key, entry) in entries {
                    view.entry(key.clone())
                        .or_default()
                        .insert(state_name.clone(), entry.clone());
                }
            }
        }
    }
}
