//! Slot placement and task deployment descriptors (Flink's slot assignment and
//! `TaskDeploymentDescriptor`), sans-IO. The job master computes each task's descriptor once
//! per attempt from the execution graph: which key groups it owns, which upstream subtask
//! feeds each input channel, where each output channel goes and at which of the consumer's
//! input channels it arrives, and the state it restores. A task needs the graph after that only
//! for its operators' code (Flink ships it in the job's jar the same way).

use crate::checkpoint::coordinator::CompletedCheckpoint;
use crate::checkpoint::state_assignment::state_handles;
use crate::checkpoint::storage::StateHandle;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::{ChannelIndex, SubtaskId, TaskManagerId};
use crate::state::key_group::{key_group_range, KeyGroupRange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Where a task restores its state from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreHandle {
    /// The completed checkpoint restored.
    pub checkpoint_id: crate::ids::CheckpointId,
    /// The state of every subtask of this task's vertex (keyed state is redistributed by key
    /// group, source offsets by partition).
    pub states: Vec<StateHandle>,
}

/// One output channel of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChannel {
    /// The consuming subtask.
    pub target: SubtaskId,
    /// The consumer's input channel this output feeds.
    pub channel: ChannelIndex,
    /// The consumer's task manager's data address.
    pub address: SocketAddr,
}

/// One task to run, as the job master deploys it (Flink's `TaskDeploymentDescriptor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDeployment {
    /// The subtask.
    pub subtask: SubtaskId,
    /// Its vertex's parallelism.
    pub parallelism: u32,
    /// The key groups it owns.
    pub key_groups: KeyGroupRange,
    /// For each input channel, in order: the producing subtask.
    pub inputs: Vec<SubtaskId>,
    /// Its output channels, in order.
    pub outputs: Vec<OutputChannel>,
    /// The state to start from; `None` on a fresh start.
    pub restore: Option<RestoreHandle>,
}

/// A registered task manager's slots, as placement sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOffer {
    /// The task manager.
    pub taskmanager: TaskManagerId,
    /// Its slots.
    pub slots: u32,
    /// Its data-plane address.
    pub data_address: SocketAddr,
}

/// Where each subtask runs.
pub type Placement = BTreeMap<SubtaskId, TaskManagerId>;

/// The slots the job needs: with Flink's default slot sharing, the largest parallelism.
pub fn slots_needed(graph: &ExecutionGraph) -> u32 {
    graph
        .vertices
        .iter()
        .map(|v| v.parallelism)
        .max()
        .unwrap_or(1)
}

/// Places subtask i of every vertex in slot i (Flink's default slot sharing), slots taken from
/// the offers in order; `None` while the offers hold too few slots.
pub fn place(graph: &ExecutionGraph, offers: &[SlotOffer]) -> Option<Placement> {
    let slots: Vec<TaskManagerId> = offers
        .iter()
        .flat_map(|offer| std::iter::repeat_n(offer.taskmanager, offer.slots as usize))
        .collect();
    if (slots.len() as u32) < slots_needed(graph) {
        return None;
    }
    let placement: Placement = graph
        .subtasks()
        .into_iter()
        .map(|subtask| (subtask, slots[subtask.subtask_index as usize]))
        .collect();
    Some(placement)
}

/// Every task's descriptor, grouped by the task manager that runs it.
pub fn descriptors(
    graph: &ExecutionGraph,
    placement: &Placement,
    offers: &[SlotOffer],
    restore: Option<&CompletedCheckpoint>,
) -> BTreeMap<TaskManagerId, Vec<TaskDeployment>> {
    let address = |taskmanager: TaskManagerId| {
        offers
            .iter()
            .find(|offer| offer.taskmanager == taskmanager)
            .map(|offer| offer.data_address)
            .expect("placement uses offered task managers only")
    };
    let mut per_taskmanager: BTreeMap<TaskManagerId, Vec<TaskDeployment>> = BTreeMap::new();
    for (subtask, taskmanager) in placement {
        let parallelism = graph.vertex(subtask.vertex_id).parallelism;
        let outputs = graph
            .output_channels(*subtask)
            .into_iter()
            .map(|target| OutputChannel {
                target,
                channel: graph.channel_index(*subtask, target),
                address: address(placement[&target]),
            })
            .collect();
        per_taskmanager
            .entry(*taskmanager)
            .or_default()
            .push(TaskDeployment {
                subtask: *subtask,
                parallelism,
                key_groups: key_group_range(
                    graph.job.max_parallelism,
                    parallelism,
                    subtask.subtask_index,
                ),
                inputs: graph.input_channels(*subtask),
                outputs,
                restore: restore.map(|checkpoint| restore_handle(graph, checkpoint, *subtask)),
            });
    }
    per_taskmanager
}

/// The state files a subtask restores from, matched by operator uid.
fn restore_handle(
    graph: &ExecutionGraph,
    checkpoint: &CompletedCheckpoint,
    subtask: SubtaskId,
) -> RestoreHandle {
    RestoreHandle {
        checkpoint_id: checkpoint.checkpoint_id,
        states: state_handles(graph, checkpoint, subtask),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::jobs::word_count;
    use crate::checkpoint::coordinator::TaskAck;
    use crate::ids::CheckpointId;
    use crate::time::{Duration, Instant};

    fn offer(id: u32, slots: u32) -> SlotOffer {
        SlotOffer {
            taskmanager: TaskManagerId(id),
            slots,
            data_address: SocketAddr::from(([10, 0, 0, id as u8], 7001)),
        }
    }

    #[test]
    fn too_few_slots_place_nothing() {
        let graph = ExecutionGraph::build(&word_count(2, 3));
        assert_eq!(slots_needed(&graph), 3);
        assert_eq!(place(&graph, &[offer(1, 2)]), None);
    }

    #[test]
    fn subtask_i_of_every_vertex_shares_slot_i() {
        let graph = ExecutionGraph::build(&word_count(2, 3));
        let placement = place(&graph, &[offer(1, 2), offer(2, 2)]).expect("4 slots for 3");
        assert_eq!(placement[&SubtaskId::new(0, 0)], TaskManagerId(1));
        assert_eq!(placement[&SubtaskId::new(1, 0)], TaskManagerId(1));
        assert_eq!(placement[&SubtaskId::new(0, 1)], TaskManagerId(1));
        assert_eq!(placement[&SubtaskId::new(1, 2)], TaskManagerId(2));
    }

    #[test]
    fn descriptors_carry_channels_key_groups_and_the_vertex_state() {
        let graph = ExecutionGraph::build(&word_count(2, 3));
        let offers = [offer(1, 2), offer(2, 2)];
        let placement = place(&graph, &offers).expect("enough slots");
        let ack = |path: &str, uid: &str| TaskAck {
            state: StateHandle::File(path.to_string()),
            state_size_bytes: 1,
            alignment_duration: Duration::ZERO,
            unaligned: false,
            in_flight_bytes: 0,
            operators: vec![uid.to_string()],
            chain: Vec::new(),
        };
        let checkpoint = CompletedCheckpoint {
            checkpoint_id: CheckpointId(4),
            created_at: Instant::ZERO,
            acked_at: Instant::ZERO,
            acks: [
                (SubtaskId::new(0, 0), ack("s0", "source")),
                (SubtaskId::new(1, 0), ack("c0", "counter")),
                (SubtaskId::new(1, 2), ack("c2", "counter")),
            ]
            .into_iter()
            .collect(),
            max_parallelism: 128,
            savepoint: None,
        };
        let all = descriptors(&graph, &placement, &offers, Some(&checkpoint));
        let on_2 = &all[&TaskManagerId(2)];
        assert_eq!(on_2.len(), 1);
        let counter = &on_2[0];
        assert_eq!(counter.subtask, SubtaskId::new(1, 2));
        assert_eq!(
            counter.inputs,
            vec![SubtaskId::new(0, 0), SubtaskId::new(0, 1)]
        );
        assert!(counter.outputs.is_empty());
        assert_eq!(
            counter.key_groups,
            key_group_range(graph.job.max_parallelism, 3, 2)
        );
        let restore = counter.restore.as_ref().expect("restores");
        assert_eq!(restore.checkpoint_id, CheckpointId(4));
        let paths: Vec<&str> = restore
            .states
            .iter()
            .filter_map(StateHandle::path)
            .collect();
        assert_eq!(paths, vec!["c0", "c2"]);
        let split = all[&TaskManagerId(1)]
            .iter()
            .find(|d| d.subtask == SubtaskId::new(0, 1))
            .expect("source 1 on task manager 1");
        assert_eq!(split.outputs.len(), 3);
        assert_eq!(split.outputs[2].target, SubtaskId::new(1, 2));
        assert_eq!(split.outputs[2].channel, ChannelIndex(1));
        assert_eq!(split.outputs[2].address, offers[1].data_address);
    }
}
