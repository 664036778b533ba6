//! Which state each subtask of a job restores from a checkpoint or savepoint (Flink's
//! `StateAssignmentOperation`), sans-IO. State is matched to operators by uid, never by
//! position: keyed state goes to whichever subtasks own its key groups at the new
//! parallelism, operator list state by even split or union, and a committing sink's
//! pre-committed work to the sink subtasks that take over its old subtasks. The checks Flink
//! makes before it deploys anything are made here, each error naming the operator uid:
//! state that no operator claims (unless allowed to be dropped), a changed max parallelism,
//! and in-flight data of an unaligned checkpoint under a changed topology or parallelism.

use crate::api::job::OperatorKind;
use crate::checkpoint::coordinator::CompletedCheckpoint;
use crate::checkpoint::storage::StateHandle;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::{SubtaskId, VertexId};
use std::collections::{BTreeMap, BTreeSet};

/// Why a snapshot cannot be restored into a job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    /// State whose uid matches no operator of the job.
    #[error("operator uid `{uid}` holds state in {snapshot} but the job has no operator with that uid; allow the state to be dropped with ignore-unclaimed-state = true (flink run --allowNonRestoredState)")]
    Unclaimed {
        /// The uid.
        uid: String,
        /// The snapshot, for the message.
        snapshot: String,
    },
    /// The job's max parallelism differs from the snapshot's.
    #[error("operator `{uid}`: the restored state has max parallelism {restored}, the job {job}: the number of key groups cannot change across a restore")]
    MaxParallelismChanged {
        /// A keyed operator.
        uid: String,
        /// The snapshot's.
        restored: u32,
        /// The job's.
        job: u32,
    },
    /// In-flight data that would have to be redistributed.
    #[error("{snapshot} holds in-flight data of an unaligned checkpoint for the chain `{chain}` ({old} subtask(s)), which the job does not run unchanged{now}: snapflow does not redistribute channel state; restore with the same operators and parallelism, or from a savepoint (always aligned)")]
    ChannelStateRescaled {
        /// The snapshot, for the message.
        snapshot: String,
        /// The old chain's uids, joined.
        chain: String,
        /// Its old parallelism.
        old: u32,
        /// What the job has instead.
        now: String,
    },
}

/// How the snapshot's state maps onto the job, for the report and the tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateAssignment {
    /// Uids whose state is dropped (`ignore-unclaimed-state`).
    pub dropped: Vec<String>,
    /// Stateful operators of the job with no state in the snapshot: they start empty.
    pub empty: Vec<String>,
    /// Per uid with state, its parallelism in the snapshot and in the job.
    pub rescaled: BTreeMap<String, (u32, u32)>,
}

/// Checks `checkpoint` against `graph` and says how its state maps.
pub fn assign(
    graph: &ExecutionGraph,
    checkpoint: &CompletedCheckpoint,
    ignore_unclaimed: bool,
) -> Result<StateAssignment, AssignmentError> {
    let snapshot = snapshot_name(checkpoint);
    let job = &graph.job;
    let parallelism: BTreeMap<&str, u32> = job
        .operators
        .iter()
        .map(|o| (o.uid.as_str(), o.parallelism))
        .collect();
    let mut assignment = StateAssignment::default();
    for (uid, subtasks) in checkpoint.operator_uids() {
        match parallelism.get(uid) {
            Some(now) => {
                assignment
                    .rescaled
                    .insert(uid.to_string(), (subtasks.len() as u32, *now));
            }
            None if ignore_unclaimed => assignment.dropped.push(uid.to_string()),
            None => {
                return Err(AssignmentError::Unclaimed {
                    uid: uid.to_string(),
                    snapshot,
                })
            }
        }
    }
    let keyed = job.operators.iter().filter(|o| o.kind.is_keyed());
    for operator in keyed.clone() {
        let restored = checkpoint.max_parallelism;
        if assignment.rescaled.contains_key(&operator.uid) && restored != job.max_parallelism {
            return Err(AssignmentError::MaxParallelismChanged {
                uid: operator.uid.clone(),
                restored,
                job: job.max_parallelism,
            });
        }
    }
    let stateful = job.operators.iter().filter(|o| {
        matches!(
            o.kind,
            OperatorKind::KeyedProcess { .. }
                | OperatorKind::KeyedBroadcastProcess { .. }
                | OperatorKind::Source { .. }
                | OperatorKind::Checkpointed(_)
        )
    });
    assignment.empty = stateful
        .filter(|o| !assignment.rescaled.contains_key(&o.uid))
        .map(|o| o.uid.clone())
        .collect();
    check_channel_state(graph, checkpoint, &snapshot)?;
    Ok(assignment)
}

fn snapshot_name(checkpoint: &CompletedCheckpoint) -> String {
    match checkpoint.savepoint {
        Some(_) => format!("savepoint {}", checkpoint.checkpoint_id),
        None => format!("checkpoint {}", checkpoint.checkpoint_id),
    }
}

/// In-flight data restores only into the same chain at the same parallelism, fed by the
/// same upstream chain at the same parallelism (its channels are the same channels).
fn check_channel_state(
    graph: &ExecutionGraph,
    checkpoint: &CompletedCheckpoint,
    snapshot: &str,
) -> Result<(), AssignmentError> {
    if checkpoint.in_flight_bytes() == 0 {
        return Ok(());
    }
    let old = old_chains(checkpoint);
    let new: BTreeMap<Vec<String>, u32> = graph
        .vertices
        .iter()
        .map(|v| (chain_of(graph, v.vertex_id), v.parallelism))
        .collect();
    for (chain, old_parallelism) in &old {
        let now = new.get(chain).copied();
        if now != Some(*old_parallelism) {
            return Err(AssignmentError::ChannelStateRescaled {
                snapshot: snapshot.to_string(),
                chain: chain.join(" -> "),
                old: *old_parallelism,
                now: now.map_or(" (the chain is gone)".to_string(), |p| {
                    format!(" (it runs {p} subtask(s))")
                }),
            });
        }
    }
    let (old_chains, new_chains): (BTreeSet<&Vec<String>>, BTreeSet<&Vec<String>>) =
        (old.keys().collect(), new.keys().collect());
    if old_chains != new_chains {
        let added = new_chains
            .difference(&old_chains)
            .next()
            .expect("they differ");
        return Err(AssignmentError::ChannelStateRescaled {
            snapshot: snapshot.to_string(),
            chain: added.join(" -> "),
            old: 0,
            now: " (a chain the checkpoint does not know)".to_string(),
        });
    }
    Ok(())
}

/// The snapshot's chains (uids in order) with their parallelism.
fn old_chains(checkpoint: &CompletedCheckpoint) -> BTreeMap<Vec<String>, u32> {
    let mut chains: BTreeMap<Vec<String>, u32> = BTreeMap::new();
    for ack in checkpoint.acks.values() {
        *chains.entry(ack.chain.clone()).or_default() += 1;
    }
    chains
}

fn chain_of(graph: &ExecutionGraph, vertex_id: VertexId) -> Vec<String> {
    let range = graph.vertex(vertex_id).operator_range.clone();
    graph.job.operators[range]
        .iter()
        .map(|o| o.uid.clone())
        .collect()
}

/// The state files `subtask` reads: those of every old subtask whose snapshot holds state of
/// an operator of its chain (the task keeps what its key groups, partitions or sink index
/// take). In-flight data is kept only by the same subtask of the same chain.
pub fn state_handles(
    graph: &ExecutionGraph,
    checkpoint: &CompletedCheckpoint,
    subtask: SubtaskId,
) -> Vec<StateHandle> {
    let chain = chain_of(graph, subtask.vertex_id);
    let holds_ours = |ack: &&crate::checkpoint::coordinator::TaskAck| {
        ack.operators.iter().any(|uid| chain.contains(uid))
            || ack.in_flight_bytes > 0 && ack.chain == chain
    };
    checkpoint
        .acks
        .values()
        .filter(holds_ours)
        .map(|ack| ack.state.clone())
        .collect()
}

/// The old sink subtasks whose pre-committed work sink subtask `index` of `parallelism`
/// takes over: its own index and, when scaled down, those beyond the new parallelism that
/// fall to it round robin (Flink's even split of the committables).
pub fn sink_takes_over(old_index: u32, index: u32, parallelism: u32) -> bool {
    assert!(index < parallelism);
    old_index % parallelism == index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::jobs::{passthrough, word_count};
    use crate::checkpoint::coordinator::TaskAck;
    use crate::time::{Duration, Instant};

    fn ack(path: &str, operators: &[&str], chain: &[&str], in_flight_bytes: u64) -> TaskAck {
        TaskAck {
            state: StateHandle::File(path.to_string()),
            state_size_bytes: 1,
            alignment_duration: Duration::ZERO,
            unaligned: in_flight_bytes > 0,
            in_flight_bytes,
            operators: operators.iter().map(|s| s.to_string()).collect(),
            chain: chain.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Word count at parallelism 2 (source and split chained, counter and sink chained).
    fn word_count_checkpoint(in_flight_bytes: u64) -> CompletedCheckpoint {
        let source = ["source", "split"];
        let counter = ["counter", "sink"];
        CompletedCheckpoint {
            checkpoint_id: crate::ids::CheckpointId(5),
            created_at: Instant::ZERO,
            acked_at: Instant::ZERO,
            acks: BTreeMap::from([
                (SubtaskId::new(0, 0), ack("s0", &["source"], &source, 0)),
                (SubtaskId::new(0, 1), ack("s1", &["source"], &source, 0)),
                (
                    SubtaskId::new(1, 0),
                    ack("c0", &["counter"], &counter, in_flight_bytes),
                ),
                (SubtaskId::new(1, 1), ack("c1", &["counter"], &counter, 0)),
            ]),
            max_parallelism: 128,
            savepoint: None,
        }
    }

    #[test]
    fn a_rescaled_job_reads_every_old_subtask_of_its_operators() {
        let graph = ExecutionGraph::build(&word_count(2, 4));
        let checkpoint = word_count_checkpoint(0);
        let assignment = assign(&graph, &checkpoint, false).expect("assignable");
        assert_eq!(assignment.rescaled["counter"], (2, 4));
        assert!(assignment.empty.is_empty() && assignment.dropped.is_empty());
        let paths = |subtask| {
            state_handles(&graph, &checkpoint, subtask)
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(paths(SubtaskId::new(1, 3)), vec!["c0", "c1"]);
        assert_eq!(paths(SubtaskId::new(0, 1)), vec!["s0", "s1"]);
    }

    #[test]
    fn unclaimed_state_fails_naming_the_uid_unless_it_may_be_dropped() {
        let graph = ExecutionGraph::build(&passthrough(2, 2));
        let checkpoint = word_count_checkpoint(0);
        let error = assign(&graph, &checkpoint, false).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("operator uid `counter` holds state in checkpoint 5"),
            "{error}"
        );
        let assignment = assign(&graph, &checkpoint, true).expect("dropped");
        assert_eq!(assignment.dropped, vec!["counter".to_string()]);
    }

    #[test]
    fn a_new_stateful_operator_starts_empty() {
        let graph = ExecutionGraph::build(&word_count(2, 2));
        let mut checkpoint = word_count_checkpoint(0);
        checkpoint.acks.retain(|s, _| s.vertex_id.0 == 0);
        let assignment = assign(&graph, &checkpoint, false).expect("assignable");
        assert_eq!(assignment.empty, vec!["counter".to_string()]);
    }

    #[test]
    fn max_parallelism_cannot_change() {
        let job = crate::api::job::JobBuilder::new("wordcount", 2)
            .max_parallelism(256)
            .source("source", "input")
            .key_by(|v| v.as_str().unwrap_or_default().into())
            .process("counter", || unreachable!("never run"))
            .sink("sink", "output")
            .build()
            .expect("valid");
        let graph = ExecutionGraph::build(&job);
        let error = assign(&graph, &word_count_checkpoint(0), false).unwrap_err();
        assert_eq!(
            error,
            AssignmentError::MaxParallelismChanged {
                uid: "counter".into(),
                restored: 128,
                job: 256
            }
        );
    }

    #[test]
    fn in_flight_data_restores_only_into_the_same_chain_at_the_same_parallelism() {
        let same = ExecutionGraph::build(&word_count(2, 2));
        assert!(assign(&same, &word_count_checkpoint(64), false).is_ok());
        let rescaled = ExecutionGraph::build(&word_count(2, 3));
        let error = assign(&rescaled, &word_count_checkpoint(64), false).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("chain `counter -> sink` (2 subtask(s))")
                && error.to_string().contains("it runs 3 subtask(s)"),
            "{error}"
        );
        assert!(assign(&rescaled, &word_count_checkpoint(0), false).is_ok());
    }

    #[test]
    fn sink_subtasks_take_over_round_robin() {
        let takers: Vec<u32> = (0..4)
            .map(|old| (0..1).find(|new| sink_takes_over(old, *new, 1)).unwrap())
            .collect();
        assert_eq!(takers, vec![0, 0, 0, 0]);
        assert!(sink_takes_over(3, 1, 2) && !sink_takes_over(3, 0, 2));
        assert!(sink_takes_over(1, 1, 4) && !sink_takes_over(2, 1, 4));
    }
}
