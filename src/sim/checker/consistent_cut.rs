//! Exactly-once: every completed checkpoint is a consistent cut — its keyed state, with its
//! in-flight data replayed, equals the reference over exactly the input its offsets name.

use super::*;
use crate::ids::SubtaskId;
use crate::state::snapshot::{KeyedStateSnapshot, TaskStateSnapshot};

/// `reference` advances through the checkpoints' offsets; the caller finishes it.
pub(super) fn consistent_cuts(
    job: &Job,
    reference: &mut IncrementalReference,
    faulty: &RunResult,
    describer: &StateDescriber,
) -> Result<String, String> {
    let source_uid = &job.operators[0].uid;
    for observed in &faulty.checkpoints {
        let checkpoint_id = observed.checkpoint.checkpoint_id;
        let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
        let mut states = BTreeMap::new();
        for (subtask, state) in &observed.task_states {
            let state = state
                .as_ref()
                .map_err(|e| format!("checkpoint {checkpoint_id}: {subtask}: {e}"))?;
            for (uid, operator) in &state.operators {
                match operator {
                    OperatorSnapshot::Source(source) if uid == source_uid => {
                        offsets.extend(source.next_offsets.iter().map(|(p, o)| (*p, *o)))
                    }
                    OperatorSnapshot::Source(_) => {
                        return Err(format!(
                            "checkpoint {checkpoint_id}: source state under uid `{uid}`"
                        ))
                    }
                    OperatorSnapshot::Keyed(_) | OperatorSnapshot::Sink(_) => {}
                }
            }
            states.insert(*subtask, state);
        }
        reference
            .advance_to(&offsets)
            .map_err(|e| format!("checkpoint {checkpoint_id}: {e}"))?;
        // Without in-flight data the snapshots are the logical state: compared in place.
        if !states.values().any(|state| holds_in_flight_data(state))
            && reference.equals(&keyed_snapshots(&states))
        {
            continue;
        }
        let keyed = logical_keyed_state(job, &states)
            .map_err(|e| format!("checkpoint {checkpoint_id}: {e}"))?;
        compare_keyed(
            &format!("checkpoint {checkpoint_id} (offsets {offsets:?})"),
            &reference.keyed(),
            &keyed,
            describer,
        )?;
    }
    Ok(format!(
        "{} checkpoint(s) (in-flight data replayed) equal the reference over their source offsets",
        faulty.checkpoints.len()
    ))
}

fn holds_in_flight_data(state: &TaskStateSnapshot) -> bool {
    state.channel_state.as_ref().is_some_and(|channels| {
        channels
            .input
            .iter()
            .chain(&channels.output)
            .any(|buffers| !buffers.is_empty())
    })
}

/// Each keyed operator's snapshots, across the checkpoint's subtasks.
fn keyed_snapshots<'a>(
    states: &BTreeMap<SubtaskId, &'a TaskStateSnapshot>,
) -> BTreeMap<&'a str, Vec<&'a KeyedStateSnapshot>> {
    let mut keyed: BTreeMap<&str, Vec<&KeyedStateSnapshot>> = BTreeMap::new();
    for state in states.values() {
        for (uid, operator) in &state.operators {
            if let OperatorSnapshot::Keyed(snapshot) = operator {
                keyed.entry(uid.as_str()).or_default().push(snapshot);
            }
        }
    }
    keyed
}
