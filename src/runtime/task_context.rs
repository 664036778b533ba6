//! What a task is given by its task manager: the cluster's service addresses, the runtime
//! options, and the endpoints it talks through (Flink's `Environment` of a task).

use crate::checkpoint::coordinator::CheckpointingMode;
use crate::checkpoint::storage::CheckpointStorage;
use crate::connectors::sink_config::SinkConfig;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::{AttemptNumber, SubtaskId};
use crate::runtime::control_plane::ControlPlane;
use crate::runtime::hooks::{EngineEvent, Hooks};
use crate::runtime::messages::ControlMessage;
use crate::runtime::rpc::Rpc;
use crate::time::Duration;
use std::net::SocketAddr;
use std::sync::Arc;

/// Addresses of the cluster's services.
#[derive(Clone, Copy, Debug)]
pub struct Services {
    /// The job manager's control endpoint (the first leader).
    pub jobmanager: SocketAddr,
    /// A standby job manager's control endpoint, with high availability.
    pub standby_jobmanager: Option<SocketAddr>,
    /// The broker's endpoint.
    pub broker: SocketAddr,
    /// The blobstore's endpoint.
    pub blobstore: SocketAddr,
    /// The key-value store's endpoint.
    pub kv: SocketAddr,
}

/// Runtime options every task uses.
#[derive(Clone, Debug)]
pub struct TaskConfig {
    /// `execution.buffer-timeout`: a partly filled buffer is sent after this long.
    pub buffer_timeout: Duration,
    /// Source pacing per partition; 0 = as fast as backpressure allows.
    pub source_records_per_second: u64,
    /// `execution.checkpointing.mode`: how the input gate handles barriers.
    pub checkpointing_mode: CheckpointingMode,
    /// Where a source keeps its read position.
    pub offset_commit: OffsetCommit,
    /// Wait for an RPC answer.
    pub rpc_timeout: Duration,
    /// The job's sink.
    pub sink: SinkConfig,
    /// Where the task's snapshots go.
    pub checkpoint_storage: crate::checkpoint::storage::CheckpointStorageConfig,
}

/// Where a source keeps its read position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetCommit {
    /// Checkpointing is on: offsets are operator state; nothing is committed to the broker.
    InCheckpoints,
    /// Checkpointing is off: Kafka's auto-commit every interval (`auto.commit.interval.ms`).
    Periodic(Duration),
    /// At-most-once: a fetched batch's end offset is committed before any of it is emitted, so
    /// a restart never reads a record twice.
    OnRead,
}

/// Everything a task needs from its task manager.
#[derive(Clone)]
pub struct TaskContext {
    /// The job attempt.
    pub attempt: AttemptNumber,
    /// This subtask.
    pub subtask: SubtaskId,
    /// The physical plan (the job's code is on every task manager).
    pub graph: Arc<ExecutionGraph>,
    /// Where the services are.
    pub services: Services,
    /// Where the leading job manager listens.
    pub jobmanager: crate::runtime::leadership::LeaderAddress,
    /// The task manager's request endpoint (broker and blobstore calls).
    pub rpc: Rpc,
    /// The task manager's control plane (acks, declines, status to the job manager).
    pub control: ControlPlane,
    /// Where the task reports events and asks for faults.
    pub hooks: Hooks,
    /// Counts the subtask's records and says which the hooks want to hear of.
    pub record_probe: Arc<crate::runtime::hooks::RecordProbe>,
    /// Runtime options.
    pub config: TaskConfig,
    /// The task manager's node name, for traces.
    pub node_name: String,
}

impl TaskContext {
    /// The checkpoint storage the task writes to and restores from.
    pub fn storage(&self) -> CheckpointStorage {
        CheckpointStorage::new(
            self.rpc.clone(),
            self.services.blobstore,
            self.config.rpc_timeout,
        )
    }
}

impl TaskContext {
    /// Sends `message` to the job manager over the task manager's control plane.
    pub async fn send_to_jobmanager(&self, message: &ControlMessage) {
        self.control.send(self.jobmanager.get(), message).await;
    }

    /// Reports `event` from this task's node.
    pub fn event(&self, event: EngineEvent) {
        self.hooks.event(&self.node_name, event);
    }
}
