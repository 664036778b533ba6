//! The failover strategy (`jobmanager.execution.failover-strategy`, Flink's
//! `FailoverStrategy`): which tasks a failure restarts.

use crate::graph::pipelined_region::PipelinedRegions;
use crate::ids::SubtaskId;
use std::collections::BTreeSet;

/// Which tasks a task failure restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailoverStrategy {
    /// `full`: every task of the job.
    Full,
    /// `region` (Flink's default): the pipelined regions that hold a failed task; the other
    /// regions run on untouched.
    #[default]
    Region,
}

impl FailoverStrategy {
    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            FailoverStrategy::Full => "full",
            FailoverStrategy::Region => "region",
        }
    }

    /// What a failure of `failed` restarts: `Restart::Regions` names the tasks when that is
    /// fewer than the whole job; everything else restarts the job. A failure that names no
    /// task (a deployment that timed out, a checkpoint failure) restarts the job, as Flink's
    /// global failover does.
    pub fn to_restart(self, regions: &PipelinedRegions, failed: &BTreeSet<SubtaskId>) -> Restart {
        if self == FailoverStrategy::Full || failed.is_empty() {
            return Restart::Job;
        }
        let tasks = regions.to_restart(failed);
        assert!(
            failed.iter().all(|f| tasks.contains(f)) || tasks.is_empty(),
            "a region holds its failed tasks"
        );
        if tasks.is_empty() || tasks.len() == regions.subtask_count() {
            Restart::Job
        } else {
            Restart::Regions(tasks)
        }
    }
}

/// What a failure restarts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Every task.
    Job,
    /// These tasks (whole regions, fewer than all).
    Regions(BTreeSet<SubtaskId>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::jobs::{forward, word_count};
    use crate::graph::execution_graph::ExecutionGraph;

    #[test]
    fn region_restarts_the_failed_region_of_a_forward_job_and_the_job_otherwise() {
        let graph = ExecutionGraph::build(&forward(3));
        let regions = PipelinedRegions::of(&graph);
        let one = BTreeSet::from([SubtaskId::new(0, 1)]);
        assert_eq!(
            FailoverStrategy::Region.to_restart(&regions, &one),
            Restart::Regions(one.clone())
        );
        assert_eq!(
            FailoverStrategy::Full.to_restart(&regions, &one),
            Restart::Job
        );
        assert_eq!(
            FailoverStrategy::Region.to_restart(&regions, &BTreeSet::new()),
            Restart::Job
        );
        let all = (0..3).map(|i| SubtaskId::new(0, i)).collect();
        assert_eq!(
            FailoverStrategy::Region.to_restart(&regions, &all),
            Restart::Job
        );
    }

    #[test]
    fn region_restarts_a_keyed_job_whole() {
        let graph = ExecutionGraph::build(&word_count(2, 2));
        let regions = PipelinedRegions::of(&graph);
        let one = BTreeSet::from([SubtaskId::new(0, 0)]);
        assert_eq!(
            FailoverStrategy::Region.to_restart(&regions, &one),
            Restart::Job
        );
    }
}
