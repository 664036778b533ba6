//! How a task's state comes back on restore (Flink's `StreamTaskStateInitializer`): the state
//! files of the task's vertex are read and sorted by operator (keyed state from every subtask,
//! to redistribute by key group; source offsets united; the sink's and the channel state of
//! this subtask only), and the in-flight data of an unaligned checkpoint is replayed into the
//! same channels ahead of anything new.

use crate::checkpoint::storage::StateHandle;
use crate::runtime::hooks::EngineEvent;
use crate::runtime::input_gate::InputGate;
use crate::runtime::record_writer::RecordWriter;
use crate::runtime::task_context::TaskContext;
use crate::runtime::task_error::{ChannelStateError, TaskError};
use crate::state::channel_state::ChannelStateSnapshot;
use crate::state::snapshot::{
    KeyedStateSnapshot, OperatorSnapshot, SinkStateSnapshot, SourceOffsets, TaskStateSnapshot,
};
use std::collections::BTreeMap;

/// What a task restores: keyed state by operator (every subtask's, to redistribute by key
/// group), the sources' offsets, and this subtask's own channel state and sink state.
#[derive(Default)]
pub struct RestoredState {
    /// Keyed state by operator uid, one snapshot per subtask of the vertex.
    pub keyed: BTreeMap<String, Vec<KeyedStateSnapshot>>,
    /// The sources' offsets, of every partition.
    pub offsets: Option<SourceOffsets>,
    /// This subtask's in-flight data.
    pub channel_state: Option<ChannelStateSnapshot>,
    /// This subtask's sink state.
    pub sink: Option<SinkStateSnapshot>,
}

/// Reads the state of this task's vertex (files, or inline) and sorts it by operator.
pub async fn restore_state(
    context: &TaskContext,
    states: &[StateHandle],
) -> Result<RestoredState, TaskError> {
    let storage = context.storage();
    let mut restored = RestoredState::default();
    for state in states {
        let snapshot: TaskStateSnapshot = storage.read_state(state).await?;
        for (uid, operator) in snapshot.operators {
            match operator {
                OperatorSnapshot::Keyed(state) => {
                    restored.keyed.entry(uid).or_default().push(state)
                }
                // Union redistribution: every subtask sees all offsets and keeps its partitions.
                OperatorSnapshot::Source(source) => restored
                    .offsets
                    .get_or_insert_with(SourceOffsets::default)
                    .next_offsets
                    .extend(source.next_offsets),
                // A sink's pre-committed work belongs to the subtask that pre-committed it.
                OperatorSnapshot::Sink(sink)
                    if sink.subtask_index == context.subtask.subtask_index =>
                {
                    restored.sink = Some(sink)
                }
                OperatorSnapshot::Sink(_) => {}
            }
        }
        if let Some(channel_state) = snapshot.channel_state {
            if channel_state.subtask_index == context.subtask.subtask_index {
                restored.channel_state = Some(channel_state);
            }
        }
    }
    Ok(restored)
}

/// Replays this subtask's in-flight data: input buffers go into the gate ahead of anything
/// that arrives, output buffers into the output queues ahead of any new output.
pub fn restore_channel_state(
    context: &TaskContext,
    state: ChannelStateSnapshot,
    gate: Option<&mut InputGate>,
    writer: &mut RecordWriter,
) -> Result<(), TaskError> {
    let fail = |error: ChannelStateError| TaskError::ChannelState {
        subtask: context.subtask,
        error,
    };
    let records = state.records();
    match gate {
        Some(gate) => gate.restore(state.input).map_err(fail)?,
        None if state.input.iter().all(Vec::is_empty) => {}
        None => return Err(fail(ChannelStateError::InputAtSource)),
    }
    writer.restore(state.output).map_err(fail)?;
    if records > 0 {
        let event = EngineEvent::InFlightReplayed {
            subtask: context.subtask,
            records,
        };
        context.hooks.event(&context.node_name, event);
    }
    Ok(())
}
