//! The processing-time journals the reference replays, stage by stage: what each keyed
//! operator's state recorded of the times the run handled its records and fired its timers.

use crate::api::job::{Job, OperatorKind};
use crate::ids::CheckpointId;
use crate::sim::cluster::RunResult;
use crate::sim::observer::ObservedCheckpoint;
use crate::state::broadcast_state::BroadcastLineages;
use crate::state::processing_time_journal::{journals_of, ProcessingTimeJournals, JOURNAL_STATE};
use crate::state::snapshot::{KeyedStateSnapshot, LogicalKeyedState, OperatorSnapshot};
use std::collections::BTreeMap;

/// Whether `job`'s state can hold journals: a keyed function that declares processing time,
/// or a keyed broadcast function (whose elements depend on the broadcast state its subtask
/// held), as the operator chain journals them. A job without either never journals: the
/// engine fails a function that reads processing time undeclared.
pub fn journals_processing_time(job: &Job) -> bool {
    job.operators.iter().any(|operator| match &operator.kind {
        OperatorKind::KeyedProcess { factory, .. } => factory().uses_processing_time(),
        OperatorKind::KeyedBroadcastProcess { .. } => true,
        _ => false,
    })
}

/// One set of journals per stage of `run`: a stage that a later one resumed from replays
/// the journals of the snapshot that stage restored (the history of the state it handed
/// on); the last stage those of the final state, or, for an operator the finished job no
/// longer has (or a run that did not finish), of the newest snapshot holding its state.
pub fn stage_journals(
    run: &RunResult,
    restored: &[CheckpointId],
) -> Result<Vec<ProcessingTimeJournals>, String> {
    let lineages = run_lineages(run);
    let mut stages = Vec::new();
    for checkpoint_id in restored {
        let observed = run
            .checkpoints
            .iter()
            .find(|c| c.checkpoint.checkpoint_id == *checkpoint_id)
            .ok_or_else(|| format!("snapshot {checkpoint_id} was restored but never completed"))?;
        stages.push(snapshot_journals(observed, |_| true)?);
    }
    let mut last = journals_of(&run.final_state).map_err(|e| format!("final state: {e}"))?;
    for observed in run.checkpoints.iter().rev() {
        let found = snapshot_journals(observed, |uid| !last.contains_key(uid))?;
        last.extend(found.keys);
    }
    stages.push(last);
    // A digest names a log prefix of whichever copy its record's subtask held: every copy
    // the run left anywhere is a candidate.
    for stage in &mut stages {
        stage.broadcast = lineages.clone();
    }
    Ok(stages)
}

/// Every broadcast application log the run's snapshots and final state hold.
pub fn run_lineages(run: &RunResult) -> BroadcastLineages {
    let mut lineages = BroadcastLineages::default();
    for observed in &run.checkpoints {
        lineages.extend(&snapshot_lineages(observed));
    }
    for (uid, copies) in &run.final_broadcast {
        for copy in copies {
            lineages.add(uid, &copy.log);
        }
    }
    lineages
}

/// The broadcast application logs one snapshot holds.
fn snapshot_lineages(observed: &ObservedCheckpoint) -> BroadcastLineages {
    let mut lineages = BroadcastLineages::default();
    for state in observed.task_states().values().flatten() {
        for (uid, operator) in &state.operators {
            if let OperatorSnapshot::Keyed(KeyedStateSnapshot {
                broadcast: Some(copy),
                ..
            }) = operator
            {
                lineages.add(uid, &copy.log);
            }
        }
    }
    lineages
}

/// The journal tables of `snapshots` (operator uid and keyed snapshot) as a keyed view:
/// only they are copied, not the rest of the state.
pub fn journal_tables<'a>(
    snapshots: impl IntoIterator<Item = (&'a str, &'a KeyedStateSnapshot)>,
) -> BTreeMap<String, LogicalKeyedState> {
    let mut view: BTreeMap<String, LogicalKeyedState> = BTreeMap::new();
    for (uid, snapshot) in snapshots {
        let Some(table) = snapshot.tables.get(JOURNAL_STATE) else {
            continue;
        };
        let keys = view.entry(uid.to_string()).or_default();
        for (key, entry) in table.values().flatten() {
            keys.entry(key.clone())
                .or_default()
                .insert(JOURNAL_STATE.to_string(), entry.clone());
        }
    }
    view
}

/// The journals one snapshot holds, of the operators `wanted`.
pub fn snapshot_journals(
    observed: &ObservedCheckpoint,
    wanted: impl Fn(&str) -> bool,
) -> Result<ProcessingTimeJournals, String> {
    let snapshots = observed
        .task_states()
        .values()
        .flatten()
        .flat_map(|state| &state.operators)
        .filter_map(|(uid, operator)| match operator {
            OperatorSnapshot::Keyed(snapshot) if wanted(uid) => Some((uid.as_str(), snapshot)),
            _ => None,
        });
    let mut journals = journals_of(&journal_tables(snapshots))
        .map_err(|e| format!("snapshot {}: {e}", observed.checkpoint.checkpoint_id))?;
    journals.broadcast = snapshot_lineages(observed);
    Ok(journals)
}
