//! A job of the user's own, run under a scenario in place of a built-in one: the scenario
//! supplies the cluster, the workload and the faults (`Scenario::with_job`), the user's
//! `cargo test` checks it (`snapflow::check`).

use crate::api::job::{Job, OperatorKind};
use crate::api::jobs::{INPUT_TOPIC, OUTPUT_TOPIC};
use crate::graph::execution_graph::ExecutionGraph;
use crate::runtime::deployment::slots_needed;
use crate::scenario::{fault_checks, Scenario, ScenarioError};
use std::fmt;
use std::sync::Arc;

/// A user's job held by a scenario (compared by identity: two scenarios hold the same job
/// when they hold the same one).
#[derive(Clone)]
pub struct UserJob(Arc<Job>);

impl UserJob {
    /// The job.
    pub fn job(&self) -> &Job {
        &self.0
    }
}

impl fmt::Debug for UserJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserJob(`{}`)", self.0.name)
    }
}

impl PartialEq for UserJob {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Scenario {
    /// This scenario running `job`, a job of the user's own, in place of its `[job]`: the
    /// job keeps its own parallelism and uids; the scenario's faults are checked against it
    /// again (an `on-record` fault naming `counter#0` needs an operator `counter`). The job
    /// reads the topic `input` and writes the topic `output` (`snapflow::api::jobs`).
    pub fn with_job(&self, job: Job) -> Result<Scenario, ScenarioError> {
        let error = |message: String| ScenarioError {
            file: self.name.clone(),
            line: None,
            message,
        };
        if !self.stages.is_empty() {
            return Err(error(
                "stages: a job of your own runs in a single stage (not built yet: versions of it per stage)".to_string(),
            ));
        }
        for operator in &job.operators {
            match &operator.kind {
                OperatorKind::Source { topic } if topic != INPUT_TOPIC => {
                    return Err(error(format!("operator `{}`: the source reads `{topic}`; the scenario's workload is the topic `{INPUT_TOPIC}`", operator.uid)))
                }
                OperatorKind::Sink { topic } if topic != OUTPUT_TOPIC => {
                    return Err(error(format!("operator `{}`: the sink writes `{topic}`; the checker reads the topic `{OUTPUT_TOPIC}`", operator.uid)))
                }
                _ => {}
            }
        }
        let graph = ExecutionGraph::build(&job);
        let needed = slots_needed(&graph);
        let available = self.taskmanagers * self.slots_per_taskmanager;
        if needed > available {
            return Err(error(format!(
                "cluster: job `{}` needs {needed} slots, the cluster has {available}",
                job.name
            )));
        }
        let mut scenario = self.clone();
        scenario.job_name = job.name.clone();
        scenario.source_parallelism = job.operators[0].parallelism;
        scenario.parallelism = job.operators.last().map_or(1, |o| o.parallelism);
        scenario.max_parallelism = Some(job.max_parallelism);
        scenario.generated_uids = false;
        scenario.user_job = Some(UserJob(Arc::new(job)));
        for (index, fault) in scenario.faults.faults.iter().enumerate() {
            fault_checks::check_trigger(&fault.trigger, &scenario, &graph)
                .and_then(|()| fault_checks::check_action(&fault.action, &scenario, &graph))
                .map_err(|e| error(format!("faults[{}]: {e}", index + 1)))?;
        }
        Ok(scenario)
    }
}
