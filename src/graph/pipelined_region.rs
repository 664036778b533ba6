//! Pipelined regions (Flink's `SchedulingPipelinedRegion`): the sets of subtasks connected by
//! pipelined data exchanges. Every exchange in a streaming job is pipelined, so a region is a
//! connected component of the subtask graph: a failure anywhere in it stops the data flowing
//! through all of it, and nothing outside it is touched. Region failover restarts regions.

use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::SubtaskId;
use std::collections::{BTreeMap, BTreeSet};

/// The pipelined regions of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelinedRegions {
    // Region number of each subtask; numbers are dense, in order of each region's first subtask.
    region_of: BTreeMap<SubtaskId, usize>,
    regions: Vec<BTreeSet<SubtaskId>>,
}

impl PipelinedRegions {
    /// The regions of `graph`'s subtasks.
    pub fn of(graph: &ExecutionGraph) -> PipelinedRegions {
        let subtasks = graph.subtasks();
        let mut region_of: BTreeMap<SubtaskId, usize> = BTreeMap::new();
        let mut regions: Vec<BTreeSet<SubtaskId>> = Vec::new();
        for start in &subtasks {
            if region_of.contains_key(start) {
                continue;
            }
            let number = regions.len();
            let mut region = BTreeSet::new();
            let mut frontier = vec![*start];
            while let Some(subtask) = frontier.pop() {
                if region_of.insert(subtask, number).is_some() {
                    continue;
                }
                region.insert(subtask);
                frontier.extend(graph.input_channels(subtask));
                frontier.extend(graph.output_channels(subtask));
            }
            regions.push(region);
        }
        let regions = PipelinedRegions { region_of, regions };
        regions.assert_partition(&subtasks);
        regions
    }

    /// Every subtask is in exactly one region.
    fn assert_partition(&self, subtasks: &[SubtaskId]) {
        let total: usize = self.regions.iter().map(BTreeSet::len).sum();
        assert_eq!(total, subtasks.len(), "regions partition the subtasks");
        assert_eq!(self.region_of.len(), subtasks.len());
        assert!(self.regions.iter().all(|r| !r.is_empty()));
    }

    /// How many regions there are.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// How many subtasks the job has.
    pub fn subtask_count(&self) -> usize {
        self.region_of.len()
    }

    /// Whether the job has no region (never: a job has a source).
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The subtasks of every region that holds one of `failed`: what region failover
    /// restarts. A subtask the job does not have is ignored.
    pub fn to_restart(&self, failed: &BTreeSet<SubtaskId>) -> BTreeSet<SubtaskId> {
        let numbers: BTreeSet<usize> = failed
            .iter()
            .filter_map(|subtask| self.region_of.get(subtask).copied())
            .collect();
        numbers
            .into_iter()
            .flat_map(|number| self.regions[number].iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::jobs::{forward, word_count};

    #[test]
    fn a_keyed_job_is_one_region_a_failure_anywhere_restarts_all() {
        let graph = ExecutionGraph::build(&word_count(2, 3));
        let regions = PipelinedRegions::of(&graph);
        assert_eq!(regions.len(), 1);
        let restart = regions.to_restart(&BTreeSet::from([SubtaskId::new(1, 2)]));
        assert_eq!(restart, graph.subtasks().into_iter().collect());
    }

    #[test]
    fn a_forward_job_has_a_region_per_pipeline_and_restarts_only_the_failed_ones() {
        let graph = ExecutionGraph::build(&forward(3));
        let regions = PipelinedRegions::of(&graph);
        assert_eq!(regions.len(), 3);
        assert_eq!(
            regions.to_restart(&BTreeSet::from([SubtaskId::new(0, 1)])),
            BTreeSet::from([SubtaskId::new(0, 1)])
        );
        assert_eq!(
            regions.to_restart(&BTreeSet::from([
                SubtaskId::new(0, 0),
                SubtaskId::new(0, 2)
            ])),
            BTreeSet::from([SubtaskId::new(0, 0), SubtaskId::new(0, 2)])
        );
        assert!(regions.to_restart(&BTreeSet::new()).is_empty());
        assert!(regions
            .to_restart(&BTreeSet::from([SubtaskId::new(7, 0)]))
            .is_empty());
    }
}
