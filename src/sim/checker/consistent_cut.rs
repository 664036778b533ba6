//! Exactly-once: every completed checkpoint is a consistent cut — its keyed state, with its
//! in-flight data replayed, equals the reference over exactly the input its offsets name.

use super::broadcast_copies::compare_copies;
use super::journals::{journal_tables, snapshot_journals};
use super::*;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::SubtaskId;
use crate::runtime::hooks::EngineEvent;
use crate::sim::observer::ObservedCheckpoint;
use crate::sim::ttl_visibility::TtlVisibility;
use crate::state::operator_state::Redistribution;
use crate::state::processing_time_journal::JOURNAL_STATE;
use crate::state::snapshot::{BroadcastStateSnapshot, KeyedStateSnapshot, TaskStateSnapshot};

/// `reference` advances through the snapshots' offsets, switching to each stage's job version
/// at the snapshot the stage restored; the caller finishes it. A snapshot off that line (a
/// plain savepoint, which no failover restores, or a checkpoint its stage took after the one
/// the next stage resumed from) is checked against a fresh reference of its own.
pub(super) fn consistent_cuts(
    versions: &[Job],
    input: &[Vec<Value>],
    reference: &mut IncrementalReference,
    faulty: &RunResult,
    describer: &StateDescriber,
) -> Result<String, String> {
    let boundaries = stage_boundaries(versions, faulty)?;
    let mut stage = 0;
    for observed in &faulty.checkpoints {
        while stage < observed.stage {
            enter_stage(versions, reference, &boundaries, stage + 1)?;
            stage += 1;
        }
        let cut = Cut::of(version(versions, stage), observed)?;
        let checkpoint_id = observed.checkpoint.checkpoint_id;
        if on_the_line(observed, &boundaries) {
            reference
                .advance_to(&cut.offsets)
                .map_err(|e| format!("{}: {e}", cut.name))?;
            cut.compare(version(versions, stage), reference, describer)?;
            continue;
        }
        // Off the line, the snapshot's own journal holds the times of the history it has.
        let mut journals = reference.stage_journals()[..stage.min(boundaries.len())].to_vec();
        journals.push(snapshot_journals(observed, |_| true)?);
        let mut fresh = IncrementalReference::new(&versions[0], input, &journals);
        for next in 1..=stage {
            enter_stage(versions, &mut fresh, &boundaries, next)?;
        }
        fresh
            .advance_to(&cut.offsets)
            .map_err(|e| format!("{}: {e}", cut.name))?;
        cut.compare(version(versions, stage), &mut fresh, describer)
            .map_err(|e| format!("{e} (snapshot {checkpoint_id}, checked on its own)"))?;
    }
    while stage < boundaries.len() {
        enter_stage(versions, reference, &boundaries, stage + 1)?;
        stage += 1;
    }
    let savepoints = faulty
        .checkpoints
        .iter()
        .filter(|c| c.checkpoint.savepoint.is_some())
        .count();
    let checkpoints = faulty.checkpoints.len() - savepoints;
    let and_savepoints = match savepoints {
        0 => String::new(),
        n => format!(" and {n} savepoint(s)"),
    };
    Ok(format!(
        "{checkpoints} checkpoint(s){and_savepoints} (in-flight data replayed) equal the reference over their source offsets"
    ))
}

/// The job version stage `stage` runs (a resubmission of the same job repeats the last).
pub(super) fn version(versions: &[Job], stage: usize) -> &Job {
    versions
        .get(stage)
        .unwrap_or_else(|| versions.last().expect("one job at least"))
}

/// Where each stage after the first began: the snapshot it restored and that snapshot's
/// offsets, in stage order.
pub(super) struct Boundary {
    pub(super) checkpoint_id: crate::ids::CheckpointId,
    offsets: BTreeMap<u32, u64>,
}

pub(super) fn stage_boundaries(
    versions: &[Job],
    faulty: &RunResult,
) -> Result<Vec<Boundary>, String> {
    let restored = faulty
        .events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            EngineEvent::JobRestoredFromCheckpoint { checkpoint_id, .. } => Some(*checkpoint_id),
            _ => None,
        });
    let mut boundaries = Vec::new();
    for checkpoint_id in restored {
        let stage = boundaries.len();
        let observed = faulty
            .checkpoints
            .iter()
            .find(|c| c.checkpoint.checkpoint_id == checkpoint_id)
            .ok_or_else(|| {
                format!(
                    "stage {} restored snapshot {checkpoint_id}, which never completed",
                    stage + 2
                )
            })?;
        let cut = Cut::of(version(versions, observed.stage), observed)?;
        boundaries.push(Boundary {
            checkpoint_id,
            offsets: cut.offsets,
        });
    }
    Ok(boundaries)
}

/// `reference` reaches the snapshot stage `next` restored, and runs that stage's job on.
pub(super) fn enter_stage(
    versions: &[Job],
    reference: &mut IncrementalReference,
    boundaries: &[Boundary],
    next: usize,
) -> Result<(), String> {
    let boundary = &boundaries[next - 1];
    reference.advance_to(&boundary.offsets).map_err(|e| {
        format!(
            "stage {} resumed from {}: {e}",
            next + 1,
            boundary.checkpoint_id
        )
    })?;
    let (before, after) = (version(versions, next - 1), version(versions, next));
    if before.operators[0].uid != after.operators[0].uid {
        return Err(format!(
            "stage {}: the source's uid changed from `{}` to `{}`, so its offsets were not restored: the checker follows sources by uid",
            next + 1,
            before.operators[0].uid,
            after.operators[0].uid
        ));
    }
    reference.switch_to(after)
}

/// Whether the line of restored state passes through `observed`: every checkpoint up to
/// the one the next stage resumed from, and the savepoint a stage resumed from; not a
/// plain savepoint (no failover restores it) nor a checkpoint taken after the next stage's
/// restore point.
fn on_the_line(observed: &ObservedCheckpoint, boundaries: &[Boundary]) -> bool {
    let checkpoint_id = observed.checkpoint.checkpoint_id;
    let next = boundaries.get(observed.stage);
    if next.is_some_and(|b| b.checkpoint_id == checkpoint_id) {
        return true;
    }
    let plain_savepoint = observed.checkpoint.savepoint.is_some_and(|s| !s.terminate);
    !plain_savepoint && next.is_none_or(|b| checkpoint_id < b.checkpoint_id)
}

/// An operator list state's mode and its elements across a cut's subtasks.
type ListElements<'a> = (Redistribution, Vec<&'a Vec<u8>>);

/// One snapshot's source offsets and task states, as the check reads them.
struct Cut<'a> {
    name: String,
    offsets: BTreeMap<u32, u64>,
    states: BTreeMap<SubtaskId, &'a TaskStateSnapshot>,
}

impl<'a> Cut<'a> {
    fn of(job: &Job, observed: &'a ObservedCheckpoint) -> Result<Cut<'a>, String> {
        let checkpoint_id = observed.checkpoint.checkpoint_id;
        let name = match observed.checkpoint.savepoint {
            Some(_) => format!("savepoint {checkpoint_id}"),
            None => format!("checkpoint {checkpoint_id}"),
        };
        let source_uid = &job.operators[0].uid;
        let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
        let mut states = BTreeMap::new();
        for (subtask, state) in observed.task_states() {
            let state = state
                .as_ref()
                .map_err(|e| format!("{name}: {subtask}: {e}"))?;
            for (uid, operator) in &state.operators {
                match operator {
                    OperatorSnapshot::Source(source) if uid == source_uid => {
                        offsets.extend(source.next_offsets.iter().map(|(p, o)| (*p, *o)))
                    }
                    OperatorSnapshot::Source(_) => {
                        return Err(format!("{name}: source state under uid `{uid}`"))
                    }
                    OperatorSnapshot::Keyed(_)
                    | OperatorSnapshot::Sink(_)
                    | OperatorSnapshot::Operator(_) => {}
                }
            }
            states.insert(*subtask, state);
        }
        Ok(Cut {
            name,
            offsets,
            states,
        })
    }

    /// Its keyed state equals what `reference` reached (once the reference fired the timers
    /// the run fired after each key's last record before the snapshot).
    fn compare(
        &self,
        job: &Job,
        reference: &mut IncrementalReference,
        describer: &StateDescriber,
    ) -> Result<(), String> {
        let in_flight = self
            .states
            .values()
            .any(|state| holds_in_flight_data(state));
        // With in-flight data the logical state is the snapshots' with that data replayed,
        // at the times the run's journal gives.
        let logical = match in_flight {
            true => Some(
                logical_keyed_state(job, &self.states, reference.journals())
                    .map_err(|e| format!("{}: {e}", self.name))?,
            ),
            false => None,
        };
        let lengths = journal_lengths(
            logical
                .as_ref()
                .map_or_else(|| self.journal_view(), Clone::clone),
        );
        reference
            .settle_timers(&lengths)
            .map_err(|e| format!("{}: {e}", self.name))?;
        self.compare_operator_state(job, in_flight, reference)?;
        // In-flight broadcast elements have reached some copies and not others yet.
        if !in_flight {
            let copies = broadcast_copies(&self.states);
            compare_copies(&self.name, &copies, &reference.broadcast())?;
        }
        // Without in-flight data the snapshots are the logical state: compared in place.
        let snapshots = keyed_snapshots(&self.states);
        if !in_flight && reference.equals(&snapshots) {
            return Ok(());
        }
        let visibility = TtlVisibility::of(
            snapshots
                .iter()
                .flat_map(|(uid, parts)| parts.iter().map(move |s| (*uid, *s))),
        );
        let mut keyed = logical.unwrap_or_else(|| self.keyed_view());
        visibility.apply(&mut keyed);
        let mut expected = reference
            .keyed()
            .map_err(|e| format!("{}: {e}", self.name))?;
        visibility.apply(&mut expected);
        compare_keyed(
            &format!("{} (offsets {:?})", self.name, self.offsets),
            &expected,
            &keyed,
            describer,
        )
        .map(|_| ())
    }

    /// Its user functions' operator state against the reference's: the elements of an
    /// even-split list across all subtasks as a multiset, of a union list as a set (each
    /// subtask restores, and may snapshot again, all of them). Skipped for a function after a
    /// network input when the cut holds in-flight data (which would have to run through it
    /// first); a function in the source's chain has none in front of it.
    fn compare_operator_state(
        &self,
        job: &Job,
        in_flight: bool,
        reference: &mut IncrementalReference,
    ) -> Result<(), String> {
        let mut run: BTreeMap<&str, BTreeMap<&str, ListElements>> = BTreeMap::new();
        for state in self.states.values() {
            for (uid, operator) in &state.operators {
                let OperatorSnapshot::Operator(snapshot) = operator else {
                    continue;
                };
                for (name, list) in &snapshot.lists {
                    let lists = run.entry(uid.as_str()).or_default();
                    let entry = lists
                        .entry(name.as_str())
                        .or_insert((list.mode, Vec::new()));
                    entry.1.extend(list.elements.iter());
                }
            }
        }
        if run.is_empty() {
            return Ok(());
        }
        let source_chain = ExecutionGraph::build(job).vertices[0]
            .operator_range
            .clone();
        let expected = reference.operator_state()?;
        for (uid, lists) in run {
            let at_source = job.operators[source_chain.clone()]
                .iter()
                .any(|o| o.uid == uid);
            if in_flight && !at_source {
                continue;
            }
            let wanted = expected.get(uid).map(|s| &s.lists);
            for (name, (mode, mut elements)) in lists {
                let mut reference_elements: Vec<&Vec<u8>> = wanted
                    .and_then(|lists| lists.get(name))
                    .map(|list| list.elements.iter().collect())
                    .unwrap_or_default();
                elements.sort();
                reference_elements.sort();
                if mode == Redistribution::Union {
                    elements.dedup();
                    reference_elements.dedup();
                }
                if elements != reference_elements {
                    let first = elements
                        .iter()
                        .zip(&reference_elements)
                        .position(|(a, b)| a != b)
                        .unwrap_or(elements.len().min(reference_elements.len()));
                    return Err(format!(
                        "{} (offsets {:?}): operator `{uid}` list state `{name}` ({mode:?}): the subtasks hold {} element(s), the reference {}; they differ from sorted element {first} on",
                        self.name,
                        self.offsets,
                        elements.len(),
                        reference_elements.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Its processing-time journals per operator uid (no copy of the rest of the state).
    fn journal_view(&self) -> BTreeMap<String, LogicalKeyedState> {
        let snapshots = keyed_snapshots(&self.states);
        journal_tables(
            snapshots
                .iter()
                .flat_map(|(uid, parts)| parts.iter().map(move |s| (*uid, *s))),
        )
    }

    /// Its keyed state per operator uid, key groups flattened away.
    fn keyed_view(&self) -> BTreeMap<String, LogicalKeyedState> {
        let mut view: BTreeMap<String, LogicalKeyedState> = BTreeMap::new();
        for (uid, parts) in keyed_snapshots(&self.states) {
            for snapshot in parts {
                snapshot.merge_into(view.entry(uid.to_string()).or_default());
            }
        }
        view
    }
}

/// How long each key's processing-time journal is in `keyed` (per uid).
fn journal_lengths(
    keyed: BTreeMap<String, LogicalKeyedState>,
) -> BTreeMap<String, BTreeMap<crate::api::value::Text, usize>> {
    keyed
        .into_iter()
        .map(|(uid, keys)| {
            let lengths = keys
                .into_iter()
                .filter_map(|(key, states)| match states.get(JOURNAL_STATE) {
                    Some(StateEntry::List(items)) => Some((key, items.len())),
                    _ => None,
                })
                .collect();
            (uid, lengths)
        })
        .collect()
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

/// Each keyed broadcast operator's broadcast state copies, across the checkpoint's subtasks.
fn broadcast_copies<'a>(
    states: &BTreeMap<SubtaskId, &'a TaskStateSnapshot>,
) -> BTreeMap<&'a str, Vec<&'a BroadcastStateSnapshot>> {
    let mut copies: BTreeMap<&str, Vec<&BroadcastStateSnapshot>> = BTreeMap::new();
    for (uid, snapshots) in keyed_snapshots(states) {
        for snapshot in snapshots {
            if let Some(copy) = &snapshot.broadcast {
                copies.entry(uid).or_default().push(copy);
            }
        }
    }
    copies
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
