//! The logical job expanded into what runs: operator chains (job vertices), their parallel
//! subtasks, and the channels between them.

use crate::api::job::{Job, Partitioning};
use crate::ids::{ChannelIndex, SubtaskId, VertexId};
use crate::state::key_group::{key_group_for_key, subtask_for_key_group};
use std::fmt::Write;
use std::ops::Range;

/// How a vertex's subtasks are connected to the vertex before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelPattern {
    /// Subtask i of the upstream feeds subtask i here: one channel per subtask.
    Pointwise,
    /// Every upstream subtask feeds every subtask here.
    AllToAll,
}

/// One operator chain with its parallelism.
#[derive(Clone, Debug)]
pub struct JobVertex {
    /// Its id, the position in the chain of vertices.
    pub vertex_id: VertexId,
    /// Indexes of its operators in `Job::operators`.
    pub operator_range: Range<usize>,
    /// Number of subtasks.
    pub parallelism: u32,
    /// How it is connected to the vertex before it (none for the source vertex).
    pub input_pattern: Option<ChannelPattern>,
}

/// The physical plan of a job.
#[derive(Clone)]
pub struct ExecutionGraph {
    /// The job it was built from.
    pub job: Job,
    /// Vertices in data-flow order.
    pub vertices: Vec<JobVertex>,
}

impl ExecutionGraph {
    /// Chains operators where Flink would (forward edge, same parallelism) and lays out vertices.
    pub fn build(job: &Job) -> ExecutionGraph {
        let mut vertices: Vec<JobVertex> = Vec::new();
        for (index, operator) in job.operators.iter().enumerate() {
            let chains = match vertices.last() {
                None => false,
                Some(last) => {
                    matches!(operator.partitioning, Partitioning::Forward)
                        && last.parallelism == operator.parallelism
                }
            };
            if chains {
                vertices
                    .last_mut()
                    .expect("chains implies a vertex")
                    .operator_range
                    .end = index + 1;
                continue;
            }
            let input_pattern = if vertices.is_empty() {
                None
            } else if matches!(operator.partitioning, Partitioning::Forward)
                && vertices.last().map(|v| v.parallelism) == Some(operator.parallelism)
            {
                Some(ChannelPattern::Pointwise)
            } else {
                Some(ChannelPattern::AllToAll)
            };
            let vertex_id = VertexId(vertices.len() as u32);
            vertices.push(JobVertex {
                vertex_id,
                operator_range: index..index + 1,
                parallelism: operator.parallelism,
                input_pattern,
            });
        }
        assert!(!vertices.is_empty());
        assert_eq!(
            vertices.last().map(|v| v.operator_range.end),
            Some(job.operators.len())
        );
        ExecutionGraph {
            job: job.clone(),
            vertices,
        }
    }

    /// The vertex with this id.
    pub fn vertex(&self, vertex_id: VertexId) -> &JobVertex {
        &self.vertices[vertex_id.0 as usize]
    }

    /// Every subtask of the job, vertex by vertex.
    pub fn subtasks(&self) -> Vec<SubtaskId> {
        let mut subtasks = Vec::new();
        for vertex in &self.vertices {
            for subtask_index in 0..vertex.parallelism {
                subtasks.push(SubtaskId {
                    vertex_id: vertex.vertex_id,
                    subtask_index,
                });
            }
        }
        subtasks
    }

    /// The source subtasks (those the coordinator triggers).
    pub fn source_subtasks(&self) -> Vec<SubtaskId> {
        let vertex = &self.vertices[0];
        (0..vertex.parallelism)
            .map(|subtask_index| SubtaskId {
                vertex_id: vertex.vertex_id,
                subtask_index,
            })
            .collect()
    }

    /// Upstream subtasks of `subtask`, in input-channel order.
    pub fn input_channels(&self, subtask: SubtaskId) -> Vec<SubtaskId> {
        let vertex = self.vertex(subtask.vertex_id);
        let Some(pattern) = vertex.input_pattern else {
            return Vec::new();
        };
        let upstream = &self.vertices[subtask.vertex_id.0 as usize - 1];
        connected(pattern, upstream, subtask.subtask_index)
    }

    /// Downstream subtasks of `subtask`, in output-channel order.
    pub fn output_channels(&self, subtask: SubtaskId) -> Vec<SubtaskId> {
        let Some(downstream) = self.vertices.get(subtask.vertex_id.0 as usize + 1) else {
            return Vec::new();
        };
        let pattern = downstream
            .input_pattern
            .expect("a downstream vertex has an input");
        connected(pattern, downstream, subtask.subtask_index)
    }

    /// The input channel of `target` that `source` writes into.
    pub fn channel_index(&self, source: SubtaskId, target: SubtaskId) -> ChannelIndex {
        let vertex = self.vertex(target.vertex_id);
        assert_eq!(source.vertex_id.0 + 1, target.vertex_id.0);
        match vertex.input_pattern.expect("target has an input") {
            ChannelPattern::Pointwise => ChannelIndex(0),
            ChannelPattern::AllToAll => ChannelIndex(source.subtask_index as u16),
        }
    }

    /// The partitioning of the edge into vertex `vertex_id`.
    pub fn partitioning_into(&self, vertex_id: VertexId) -> &Partitioning {
        let vertex = self.vertex(vertex_id);
        &self.job.operators[vertex.operator_range.start].partitioning
    }

    /// The source partitions subtask `subtask_index` of `parallelism` reads: round robin, as
    /// Flink's Kafka source assigns them.
    pub fn source_partitions(
        subtask_index: u32,
        parallelism: u32,
        partition_count: u32,
    ) -> Vec<u32> {
        (0..partition_count)
            .filter(|p| p % parallelism == subtask_index)
            .collect()
    }

    /// Which output channel a record goes to for a hash edge.
    pub fn hash_target(&self, key: &str, downstream_parallelism: u32) -> usize {
        let key_group = key_group_for_key(key, self.job.max_parallelism);
        subtask_for_key_group(self.job.max_parallelism, downstream_parallelism, key_group) as usize
    }

    /// The plan, one line per vertex, for reports.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for vertex in &self.vertices {
            let operators: Vec<String> = self.job.operators[vertex.operator_range.clone()]
                .iter()
                .map(|o| format!("{}[{}]", o.kind.name(), o.uid))
                .collect();
            let input = match vertex.input_pattern {
                None => String::new(),
                Some(_) => format!(" <- {}", self.partitioning_into(vertex.vertex_id).name()),
            };
            let _ = writeln!(
                text,
                "  v{}{input}: {} x{}",
                vertex.vertex_id.0,
                operators.join(" -> "),
                vertex.parallelism
            );
        }
        text
    }

    /// The uid of the keyed operators, for the checker.
    pub fn keyed_operator_uids(&self) -> Vec<String> {
        self.job
            .operators
            .iter()
            .filter(|o| o.kind.is_keyed())
            .map(|o| o.uid.clone())
            .collect()
    }
}

/// The subtasks of `other` that subtask `subtask_index` on the far side of an edge with
/// `pattern` is connected to.
fn connected(pattern: ChannelPattern, other: &JobVertex, subtask_index: u32) -> Vec<SubtaskId> {
    let at = |subtask_index| SubtaskId {
        vertex_id: other.vertex_id,
        subtask_index,
    };
    match pattern {
        ChannelPattern::Pointwise => vec![at(subtask_index)],
        ChannelPattern::AllToAll => (0..other.parallelism).map(at).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::jobs::word_count;

    #[test]
    fn word_count_chains_source_and_split_and_hashes_into_counter() {
        let graph = ExecutionGraph::build(&word_count(2, 3));
        assert_eq!(graph.vertices.len(), 2);
        assert_eq!(graph.vertices[0].operator_range, 0..2);
        assert_eq!(
            graph.vertices[1].input_pattern,
            Some(ChannelPattern::AllToAll)
        );
        let counter = SubtaskId {
            vertex_id: VertexId(1),
            subtask_index: 1,
        };
        assert_eq!(graph.input_channels(counter).len(), 2);
        let split = SubtaskId {
            vertex_id: VertexId(0),
            subtask_index: 1,
        };
        assert_eq!(graph.output_channels(split).len(), 3);
        assert_eq!(graph.channel_index(split, counter), ChannelIndex(1));
    }

    #[test]
    fn source_partitions_are_assigned_round_robin() {
        assert_eq!(ExecutionGraph::source_partitions(1, 2, 5), vec![1, 3]);
        assert_eq!(ExecutionGraph::source_partitions(0, 1, 3), vec![0, 1, 2]);
    }
}
