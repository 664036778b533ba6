//! Identifier newtypes. Fields repeat the noun (`checkpoint_id`), never a bare `id`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A checkpoint's id. Ids grow across the whole job, also across restarts, as in Flink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

/// A job vertex: one operator chain in the physical plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VertexId(pub u32);

/// One parallel instance of a job vertex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubtaskId {
    /// The vertex this subtask runs.
    pub vertex_id: VertexId,
    /// Its index among the vertex's parallel instances.
    pub subtask_index: u32,
}

impl SubtaskId {
    /// Subtask `index` of vertex `vertex`.
    pub const fn new(vertex: u32, index: u32) -> SubtaskId {
        SubtaskId {
            vertex_id: VertexId(vertex),
            subtask_index: index,
        }
    }
}

/// The index of an input channel within one task's input gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelIndex(pub u16);

/// A deployment of the whole job. Every failover deploys a new attempt; messages that carry
/// an older attempt are stale and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttemptNumber(pub u32);

/// A task manager, numbered from 1 as its node name `taskmanager-N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskManagerId(pub u32);

/// The key group a key belongs to: the unit in which keyed state moves between subtasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyGroup(pub u32);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SubtaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}#{}", self.vertex_id.0, self.subtask_index)
    }
}

impl fmt::Display for TaskManagerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "taskmanager-{}", self.0)
    }
}

impl fmt::Display for AttemptNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt-{}", self.0)
    }
}
