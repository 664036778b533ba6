//! The user-function traits and closure types operators are built from.

use crate::api::value::{Text, Value};
use crate::state::broadcast_state::{BroadcastContext, ReadOnlyBroadcastContext};
use crate::state::heap_backend::{KeyedStateAccess, StateError};
use crate::state::operator_state::OperatorStateStore;
use crate::state::raw_state::{RawKeyedStateInput, RawKeyedStateOutput};
use std::fmt;
use std::sync::Arc;

/// A one-to-one transformation (`map`).
pub type MapFunction = Arc<dyn Fn(Value) -> Value + Send + Sync>;
/// A one-to-many transformation (`flatMap`): pushes zero or more results.
pub type FlatMapFunction = Arc<dyn Fn(Value, &mut Vec<Value>) + Send + Sync>;
/// A predicate (`filter`): keeps the records it returns true for.
pub type FilterFunction = Arc<dyn Fn(&Value) -> bool + Send + Sync>;
/// Extracts the key of a record (`keyBy`). Keys are strings, hashed as Java hashes strings;
/// a key of up to 24 bytes is held inline (no allocation per record).
pub type KeySelector = Arc<dyn Fn(&Value) -> Text + Send + Sync>;
/// Builds a fresh instance of a keyed process function for each subtask (as Flink
/// deserializes one function object per subtask).
pub type KeyedProcessFactory = Arc<dyn Fn() -> Box<dyn KeyedProcessFunction> + Send + Sync>;

/// Selects the broadcast side of a connected stream: the records it returns true for are
/// broadcast elements, sent to every subtask of the operator after it.
pub type BroadcastSelector = Arc<dyn Fn(&Value) -> bool + Send + Sync>;
/// Builds a fresh instance of a keyed broadcast process function for each subtask.
pub type KeyedBroadcastFactory =
    Arc<dyn Fn() -> Box<dyn KeyedBroadcastProcessFunction> + Send + Sync>;

/// Builds a fresh instance of a checkpointed function for each subtask.
pub type CheckpointedFactory = Arc<dyn Fn() -> Box<dyn CheckpointedFunction> + Send + Sync>;

/// A non-keyed function with operator state (Flink's `ProcessFunction` implementing
/// `CheckpointedFunction`): `initialize_state` runs once before the first record or
/// snapshot, with the state restored for this subtask (even-split lists redistributed, union
/// lists whole); `snapshot_state` runs at every snapshot and writes what the function holds
/// into the store.
pub trait CheckpointedFunction: Send {
    /// `initializeState`: reads the restored lists (`state.is_restored()`).
    fn initialize_state(&mut self, state: &mut OperatorStateStore) -> Result<(), UserError>;

    /// Handles one record.
    fn process_element(&mut self, value: Value, out: &mut Vec<Value>) -> Result<(), UserError>;

    /// `snapshotState`: writes the function's state into the lists.
    fn snapshot_state(&mut self, state: &mut OperatorStateStore) -> Result<(), UserError>;
}

/// An error raised by user code; it fails the task, as an exception in Flink does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<StateError> for UserError {
    fn from(error: StateError) -> Self {
        UserError(error.to_string())
    }
}

/// Flink's `KeyedProcessFunction`: called once per record with the record's key in scope,
/// reaching keyed state through descriptors by name.
pub trait KeyedProcessFunction: Send {
    /// Handles one record. State reached through `state` is scoped to the record's key.
    fn process_element(
        &mut self,
        value: Value,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError>;

    /// Whether it reads processing time: registers timers, reads the clock or uses state
    /// with a time-to-live. Such a function's records and timers are journaled (see
    /// `state::processing_time_journal`) so that the check can replay the times; reading
    /// processing time without declaring it is an error.
    fn uses_processing_time(&self) -> bool {
        false
    }

    /// `onTimer`: the key's processing-time timer for `timestamp` fired; state reached
    /// through `state` is the key's. Timers are registered through `state`.
    fn on_timer(
        &mut self,
        timestamp: u64,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let _ = (timestamp, state, out);
        Ok(())
    }

    /// Renders one state value for reports. The default shows its size only.
    fn describe_state(&self, state_name: &str, bytes: &[u8]) -> String {
        format!("{state_name}:<{} bytes>", bytes.len())
    }

    /// Raw keyed state (Flink's raw keyed state of a custom operator): at every snapshot,
    /// writes what the function keeps in its own structures into `output`, key group by key
    /// group (`output.key_group_of(key)`), so that it moves with its key groups. The default
    /// writes nothing.
    fn snapshot_raw_keyed_state(&self, output: &mut RawKeyedStateOutput) -> Result<(), UserError> {
        let _ = output;
        Ok(())
    }

    /// Restores raw keyed state: runs once, before the first record, in a restored subtask,
    /// with the bytes of the key groups it owns.
    fn restore_raw_keyed_state(&mut self, input: RawKeyedStateInput<'_>) -> Result<(), UserError> {
        let _ = input;
        Ok(())
    }
}

/// Flink's `KeyedBroadcastProcessFunction`: a keyed stream connected to a broadcast stream.
/// Keyed elements are handled with the key's state and the broadcast state read only;
/// broadcast elements, which every subtask receives, with the broadcast state read and
/// written. Every subtask must reach the same broadcast state whatever order its broadcast
/// elements arrive in (Flink's rule, checked at every aligned cut).
pub trait KeyedBroadcastProcessFunction: Send {
    /// `processElement`: one keyed element, with its key's state and the broadcast state.
    fn process_element(
        &mut self,
        value: Value,
        state: &mut KeyedStateAccess<'_>,
        broadcast: &ReadOnlyBroadcastContext<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError>;

    /// `processBroadcastElement`: one broadcast element, in every subtask. It updates the
    /// broadcast state; it emits nothing (what it would emit depends on how many subtasks
    /// run, which the check does not model).
    fn process_broadcast_element(
        &mut self,
        value: Value,
        broadcast: &mut BroadcastContext<'_>,
    ) -> Result<(), UserError>;

    /// Whether it reads processing time (as `KeyedProcessFunction::uses_processing_time`).
    fn uses_processing_time(&self) -> bool {
        false
    }

    /// `onTimer`, as `KeyedProcessFunction::on_timer` (the broadcast state is not reachable).
    fn on_timer(
        &mut self,
        timestamp: u64,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let _ = (timestamp, state, out);
        Ok(())
    }

    /// Renders one keyed state value for reports. The default shows its size only.
    fn describe_state(&self, state_name: &str, bytes: &[u8]) -> String {
        format!("{state_name}:<{} bytes>", bytes.len())
    }

    /// Raw keyed state (Flink's raw keyed state of a custom operator): at every snapshot,
    /// writes what the function keeps in its own structures into `output`, key group by key
    /// group (`output.key_group_of(key)`), so that it moves with its key groups. The default
    /// writes nothing.
    fn snapshot_raw_keyed_state(&self, output: &mut RawKeyedStateOutput) -> Result<(), UserError> {
        let _ = output;
        Ok(())
    }

    /// Restores raw keyed state: runs once, before the first record, in a restored subtask,
    /// with the bytes of the key groups it owns.
    fn restore_raw_keyed_state(&mut self, input: RawKeyedStateInput<'_>) -> Result<(), UserError> {
        let _ = input;
        Ok(())
    }
}
