//! What the loader checks of each fault beyond its syntax: that its trigger can fire in this
//! run (before the deadline, with checkpoints, within the input, at a committing sink) and
//! that its action names what exists (task managers, nodes of this cluster, operator uids,
//! subtasks).

use crate::graph::execution_graph::ExecutionGraph;
use crate::scenario::faults::{FaultAction, FaultTrigger, SubtaskRef};
use crate::scenario::node_name::{ClusterNodes, NodeName};
use crate::scenario::Scenario;
use crate::time::{Duration, Instant};

/// A trigger must be able to fire in this run.
pub fn check_trigger(
    trigger: &FaultTrigger,
    scenario: &Scenario,
    graph: &ExecutionGraph,
) -> Result<(), String> {
    match trigger {
        FaultTrigger::At(at) if at.since(Instant::ZERO) >= scenario.deadline => Err(format!(
            "at: {} is not before the deadline {} (simulation.deadline): the fault could never fire",
            at.since(Instant::ZERO),
            scenario.deadline
        )),
        FaultTrigger::AfterCheckpoint(_) if !scenario.checkpointing() => Err("after-checkpoint: checkpointing is off (no `[execution.checkpointing] interval`): the fault could never fire".to_string()),
        FaultTrigger::At(_) | FaultTrigger::AfterCheckpoint(_) => Ok(()),
        FaultTrigger::BeforeCommit { subtask, .. } => {
            let id = subtask
                .resolve(graph)
                .map_err(|e| format!("before-commit.subtask: {e}"))?;
            let runs_sink =
                graph.vertex(id.vertex_id).operator_range.end == graph.job.operators.len();
            if !runs_sink || !scenario.sink.kind.commits_on_checkpoints() {
                return Err("before-commit: the subtask must run a two-phase-commit or write-ahead-log sink".to_string());
            }
            Ok(())
        }
        FaultTrigger::OnRecord { subtask, count } => {
            subtask
                .resolve(graph)
                .map_err(|e| format!("on-record.subtask: {e}"))?;
            let records = scenario.workload.record_count();
            if *count == 0 {
                return Err("on-record.count: records count from 1".to_string());
            }
            if *count > records {
                return Err(format!("on-record.count: {count} is more records than the whole input holds ({records}): the fault could never fire"));
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
) -> Result<(), String> {
    let subtask = |subtask: &SubtaskRef| {
        subtask
            .resolve(graph)
            .map(|_| ())
            .map_err(|e| format!("subtask: {e}"))
    };
    match action {
        FaultAction::KillTaskManager { taskmanager, .. }
            if !(1..=scenario.taskmanagers).contains(taskmanager) =>
        {
            Err(format!(
                "taskmanager: {taskmanager} is not in 1..={}",
                scenario.taskmanagers
            ))
        }
        FaultAction::KillTaskManager { .. } | FaultAction::RestartBroker { .. } => Ok(()),
        FaultAction::ClogLink { from, to, .. } | FaultAction::SlowLink { from, to, .. } => {
            check_link(*from, *to, scenario)
        }
        FaultAction::SlowOperator { uid, .. }
            if !graph.job.operators.iter().any(|o| &o.uid == uid) =>
        {
            Err(format!("operator: no operator with uid `{uid}`"))
        }
        FaultAction::SlowOperator { .. } => Ok(()),
        FaultAction::FailTask { subtask: target } => subtask(target),
        FaultAction::LoseNotice { .. } if !scenario.checkpointing() => {
            Err("lose-notice needs checkpointing".to_string())
        }
        FaultAction::LoseNotice { subtask: target } => subtask(target),
        FaultAction::DelayNotices { delay, .. } if *delay == Duration::ZERO => {
            Err("delay-notices needs `delay` longer than 0".to_string())
        }
        FaultAction::DelayNotices { .. } => Ok(()),
    }
}

/// A link joins two distinct nodes of the cluster.
fn check_link(from: NodeName, to: NodeName, scenario: &Scenario) -> Result<(), String> {
    let cluster = ClusterNodes {
        taskmanagers: scenario.taskmanagers,
        kv: scenario.sink.kind.uses_kv_store(),
    };
    from.check(cluster).map_err(|e| format!("from: {e}"))?;
    to.check(cluster).map_err(|e| format!("to: {e}"))?;
    if from == to {
        return Err(format!(
            "a link joins two nodes, `from` and `to` are both `{from}`"
        ));
    }
    Ok(())
}
