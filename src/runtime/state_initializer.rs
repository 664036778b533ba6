//! How a task's state comes back on restore (Flink's `StreamTaskStateInitializer`): the state
//! files holding state of the task's operators are read and sorted by operator uid (keyed
//! state from every old subtask, to redistribute by key group; source offsets united, each
//! subtask keeping its partitions; the sink's pre-committed work of the old subtasks this one
//! takes over; the channel state of this subtask only), and the in-flight data of an
//! unaligned checkpoint is replayed into the same channels ahead of anything new.

use crate::checkpoint::state_assignment::sink_takes_over;
use crate::checkpoint::storage::StateHandle;
use crate::runtime::hooks::EngineEvent;
use crate::runtime::input_gate::InputGate;
use crate::runtime::record_writer::RecordWriter;
use crate::runtime::task_context::TaskContext;
use crate::runtime::task_error::{ChannelStateError, TaskError};
use crate::state::channel_state::ChannelStateSnapshot;
use crate::state::operator_state::OperatorStateSnapshot;
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
    /// The sink states this subtask takes over: its own, and when scaled down those of old
    /// subtasks beyond the new parallelism.
    pub sink: Vec<SinkStateSnapshot>,
    /// User functions' operator state by uid, one snapshot per old subtask (redistributed by
    /// the chain: even split or union).
    pub operator: BTreeMap<String, Vec<OperatorStateSnapshot>>,
}

/// Reads the state of this task's vertex (files, or inline) and sorts it by operator.
pub async fn restore_state(
    context: &TaskContext,
    parallelism: u32,
    states: &[StateHandle],
) -> Result<RestoredState, TaskError> {
    let storage = context.storage();
    let vertex = context.graph.vertex(context.subtask.vertex_id);
    let chain = &context.graph.job.operators[vertex.operator_range.clone()];
    let ours = |uid: &str| chain.iter().any(|operator| operator.uid == uid);
    let index = context.subtask.subtask_index;
    let mut restored = RestoredState::default();
    for state in states {
        let snapshot: TaskStateSnapshot = storage.read_state(state).await?;
        for (uid, operator) in snapshot.operators {
            if !ours(&uid) {
                continue; // Another chain's state in the same file.
            }
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
                // A sink's pre-committed work goes to the subtask that takes its old one over.
                OperatorSnapshot::Sink(sink)
                    if sink_takes_over(sink.subtask_index, index, parallelism) =>
                {
                    restored.sink.push(sink)
                }
                OperatorSnapshot::Sink(_) => {}
                OperatorSnapshot::Operator(state) => {
                    restored.operator.entry(uid).or_default().push(state)
                }
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
