//! The logical state a checkpoint describes: its keyed state, plus, for an unaligned
//! checkpoint, the in-flight records of its channel state run through the operators they were
//! headed for. For a consistent cut this equals the state a failure-free run reaches over
//! exactly the checkpoint's source offsets; and an aligned and an unaligned checkpoint at the
//! same barrier positions describe the same logical state.

use crate::api::job::Job;
use crate::api::value::Value;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::SubtaskId;
use crate::runtime::operator_chain::OperatorChain;
use crate::state::channel_state::RecordBuffer;
use crate::state::key_group::KeyGroupRange;
use crate::state::processing_time_journal::ProcessingTimeJournals;
use crate::state::snapshot::{
    KeyedStateSnapshot, LogicalKeyedState, OperatorSnapshot, TaskStateSnapshot,
};
use std::collections::BTreeMap;

/// Keyed state per operator uid after replaying the checkpoint's in-flight records.
///
/// Replayed records take their processing time from `journals` (the run's), from each key's
/// position in the journal its restored state holds.
pub fn logical_keyed_state(
    job: &Job,
    task_states: &BTreeMap<SubtaskId, &TaskStateSnapshot>,
    journals: &ProcessingTimeJournals,
) -> Result<BTreeMap<String, LogicalKeyedState>, String> {
    let whole = KeyGroupRange {
        start: 0,
        end: job.max_parallelism - 1,
    };
    let mut chain = OperatorChain::new(job, 0..job.operators.len(), whole);
    chain.replay_processing_time(journals);
    let mut keyed: BTreeMap<String, Vec<KeyedStateSnapshot>> = BTreeMap::new();
    for state in task_states.values() {
        for (uid, operator) in &state.operators {
            if let OperatorSnapshot::Keyed(snapshot) = operator {
                keyed.entry(uid.clone()).or_default().push(snapshot.clone());
            }
        }
    }
    chain.restore_keyed(&keyed).map_err(|e| e.to_string())?;
    let graph = ExecutionGraph::build(job);
    // Records nearer the sink are older, so the deepest vertex's in-flight data goes first;
    // into one vertex, a channel's received data is older than what its sender still held.
    for vertex in graph.vertices.iter().skip(1).rev() {
        let first = vertex.operator_range.start;
        let upstream = vertex.vertex_id.0 - 1;
        let mut buffers: Vec<&RecordBuffer> = Vec::new();
        for (subtask, state) in task_states {
            let Some(channels) = state.channel_state.as_ref() else {
                continue;
            };
            if subtask.vertex_id == vertex.vertex_id {
                buffers.extend(channels.input.iter().flatten());
            }
        }
        for (subtask, state) in task_states {
            let Some(channels) = state.channel_state.as_ref() else {
                continue;
            };
            if subtask.vertex_id.0 == upstream {
                buffers.extend(channels.output.iter().flatten());
            }
        }
        replay(&mut chain, first, &buffers)?;
    }
    if let Some(waiting) = chain.unreplayed() {
        return Err(format!("in-flight data: {waiting}"));
    }
    let mut logical = BTreeMap::new();
    for (uid, snapshot) in chain.snapshot_keyed().map_err(|e| e.to_string())? {
        let mut view = LogicalKeyedState::new();
        snapshot.merge_into(&mut view);
        logical.insert(uid, view);
    }
    Ok(logical)
}

fn replay(
    chain: &mut OperatorChain,
    first: usize,
    buffers: &[&RecordBuffer],
) -> Result<(), String> {
    let mut out = Vec::new();
    for buffer in buffers {
        let mut rest = buffer.bytes.as_slice();
        for _ in 0..buffer.record_count {
            let (value, tail) = postcard::take_from_bytes::<Value>(rest)
                .map_err(|e| format!("in-flight record does not decode: {e}"))?;
            rest = tail;
            chain
                .process_from(first, value, &mut out)
                .map_err(|e| e.to_string())?;
        }
        if !rest.is_empty() {
            return Err("an in-flight buffer holds more bytes than its records".to_string());
        }
    }
    // The sink's share of replayed records is output, not state.
    if let Some(sink) = chain.sink() {
        sink.pending.clear();
    }
    Ok(())
}
