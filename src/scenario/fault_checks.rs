//! What the loader checks of each fault beyond its syntax: that its trigger can fire in this
//! run (before the deadline, with checkpoints, within the input, at a committing sink) and
//! that its action names what exists (task managers, nodes of this cluster, operator uids,
//! subtasks).

use crate::graph::execution_graph::ExecutionGraph;
use crate::scenario::faults::{FaultAction, FaultTrigger, SubtaskRef, SubtaskRefError};
use crate::scenario::node_name::{NodeName, NodeNameError};
use crate::scenario::Scenario;
use crate::time::{Duration, Instant};

/// A fault this run could not carry out; each names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultCheckError {
    /// A fault on checkpoints in a run that takes none.
    #[error("{fault}: needs checkpointing (execution.checkpointing.interval)")]
    NeedsCheckpointing {
        /// The fault's kind.
        fault: &'static str,
    },
    /// A savepoint without a directory to write it to.
    #[error("savepoint: needs execution.checkpointing.savepoint-dir (Flink refuses a savepoint without a target directory)")]
    NoSavepointDir,
    /// `at` is not before the deadline.
    #[error("at: {at} is not before the deadline {deadline} (simulation.deadline): the fault could never fire")]
    AfterDeadline {
        /// The trigger time.
        at: Duration,
        /// The run's deadline.
        deadline: Duration,
    },
    /// `after-checkpoint` with checkpointing off.
    #[error("after-checkpoint: checkpointing is off (no `[execution.checkpointing] interval`): the fault could never fire")]
    NoCheckpoints,
    /// A subtask reference in `field` names no subtask.
    #[error("{field}: {error}")]
    Subtask {
        /// `subtask`, `on-record.subtask`, `before-commit.subtask`.
        field: &'static str,
        /// Why.
        error: SubtaskRefError,
    },
    /// `before-commit` at a subtask without a committing sink.
    #[error("before-commit: the subtask must run a two-phase-commit or write-ahead-log sink")]
    NotACommittingSink,
    /// `on-record.count` of 0.
    #[error("on-record.count: records count from 1")]
    RecordZero,
    /// `on-record.count` beyond the input.
    #[error("on-record.count: {count} is more records than the whole input holds ({records}): the fault could never fire")]
    BeyondInput {
        /// The count.
        count: u64,
        /// Records in the input.
        records: u64,
    },
    /// `taskmanager` out of range.
    #[error("taskmanager: {taskmanager} is not in 1..={taskmanagers}")]
    NoTaskManager {
        /// The number given.
        taskmanager: u32,
        /// Task managers in the cluster.
        taskmanagers: u32,
    },
    /// A link end names no node of this cluster.
    #[error("{field}: {error}")]
    Node {
        /// `from` or `to`.
        field: &'static str,
        /// Why.
        error: NodeNameError,
    },
    /// A link from a node to itself.
    #[error("a link joins two nodes, `from` and `to` are both `{node}`")]
    SelfLink {
        /// The node.
        node: NodeName,
    },
    /// `operator` names no operator.
    #[error("operator: no operator with uid `{uid}`")]
    NoOperator {
        /// The uid.
        uid: String,
    },
    /// `lose-notice` with checkpointing off.
    #[error("lose-notice needs checkpointing")]
    NoticeWithoutCheckpoints,
    /// `delay-notices` with no delay.
    #[error("delay-notices needs `delay` longer than 0")]
    ZeroDelay,
}

/// A trigger must be able to fire in this run.
pub fn check_trigger(
    trigger: &FaultTrigger,
    scenario: &Scenario,
    graph: &ExecutionGraph,
) -> Result<(), FaultCheckError> {
    match trigger {
        FaultTrigger::At(at) if at.since(Instant::ZERO) >= scenario.deadline => {
            Err(FaultCheckError::AfterDeadline {
                at: at.since(Instant::ZERO),
                deadline: scenario.deadline,
            })
        }
        FaultTrigger::AfterCheckpoint(_) if !scenario.checkpointing() => {
            Err(FaultCheckError::NoCheckpoints)
        }
        FaultTrigger::At(_) | FaultTrigger::AfterCheckpoint(_) => Ok(()),
        FaultTrigger::BeforeCommit { subtask, .. } => {
            let id = subtask
                .resolve(graph)
                .map_err(|error| FaultCheckError::Subtask {
                    field: "before-commit.subtask",
                    error,
                })?;
            let runs_sink =
                graph.vertex(id.vertex_id).operator_range.end == graph.job.operators.len();
            if !runs_sink || !scenario.sink.kind.commits_on_checkpoints() {
                return Err(FaultCheckError::NotACommittingSink);
            }
            Ok(())
        }
        FaultTrigger::OnRecord { subtask, count } => {
            subtask
                .resolve(graph)
                .map_err(|error| FaultCheckError::Subtask {
                    field: "on-record.subtask",
                    error,
                })?;
            let records = scenario.workload.record_count();
            if *count == 0 {
                return Err(FaultCheckError::RecordZero);
            }
            if *count > records {
                let count = *count;
                return Err(FaultCheckError::BeyondInput { count, records });
            }
            Ok(())
        }
    }
}

/// An action must name what exists in this job and cluster.
pub fn check_action(
    action: &FaultAction,
    scenario: &Scenario,
    graph: &ExecutionGraph,
) -> Result<(), FaultCheckError> {
    let subtask = |subtask: &SubtaskRef| {
        subtask
            .resolve(graph)
            .map(|_| ())
            .map_err(|error| FaultCheckError::Subtask {
                field: "subtask",
                error,
            })
    };
    match action {
        FaultAction::KillTaskManager { taskmanager, .. }
        | FaultAction::PauseTaskManager { taskmanager, .. }
            if !(1..=scenario.taskmanagers).contains(taskmanager) =>
        {
            Err(FaultCheckError::NoTaskManager {
                taskmanager: *taskmanager,
                taskmanagers: scenario.taskmanagers,
            })
        }
        FaultAction::KillTaskManager { .. }
        | FaultAction::KillJobManager { .. }
        | FaultAction::PauseTaskManager { .. }
        | FaultAction::RestartBroker { .. }
        | FaultAction::FailBlobstoreWrites { .. }
        | FaultAction::CancelJob
        | FaultAction::PauseJobManager { .. }
        | FaultAction::RestartBlobstore { .. } => Ok(()),
        FaultAction::CorruptCheckpoint if !scenario.checkpointing() => {
            Err(FaultCheckError::NeedsCheckpointing {
                fault: "corrupt-checkpoint",
            })
        }
        FaultAction::CorruptCheckpoint => Ok(()),
        FaultAction::Savepoint { .. } | FaultAction::StopWithSavepoint { .. }
            if !scenario.checkpointing() =>
        {
            Err(FaultCheckError::NeedsCheckpointing { fault: "savepoint" })
        }
        FaultAction::Savepoint { .. } | FaultAction::StopWithSavepoint { .. }
            if scenario.checkpoint.storage.savepoint_dir.is_none() =>
        {
            Err(FaultCheckError::NoSavepointDir)
        }
        FaultAction::Savepoint { .. } | FaultAction::StopWithSavepoint { .. } => Ok(()),
        FaultAction::ClogLink { from, to, .. } | FaultAction::SlowLink { from, to, .. } => {
            check_link(*from, *to, scenario)
        }
        FaultAction::SlowOperator { uid, .. }
            if !graph.job.operators.iter().any(|o| &o.uid == uid) =>
        {
            Err(FaultCheckError::NoOperator { uid: uid.clone() })
        }
        FaultAction::SlowOperator { .. } => Ok(()),
        FaultAction::FailTask { subtask: target } => subtask(target),
        FaultAction::LoseNotice { .. } if !scenario.checkpointing() => {
            Err(FaultCheckError::NoticeWithoutCheckpoints)
        }
        FaultAction::LoseNotice { subtask: target } => subtask(target),
        FaultAction::DelayNotices { delay, .. } if *delay == Duration::ZERO => {
            Err(FaultCheckError::ZeroDelay)
        }
        FaultAction::DelayNotices { .. } => Ok(()),
    }
}

/// A link joins two distinct nodes of the cluster.
fn check_link(from: NodeName, to: NodeName, scenario: &Scenario) -> Result<(), FaultCheckError> {
    let cluster = scenario.nodes();
    let node = |field| move |error| FaultCheckError::Node { field, error };
    from.check(cluster).map_err(node("from"))?;
    to.check(cluster).map_err(node("to"))?;
    if from == to {
        return Err(FaultCheckError::SelfLink { node: from });
    }
    Ok(())
}
