//! Everything that crosses the simulated network: control messages between the job manager
//! and task managers, and the frames of a data channel.

use crate::checkpoint::barrier::{Barrier, SavepointFormat};
use crate::checkpoint::coordinator::{DeclineReason, TaskAck};
use crate::ids::{AttemptNumber, ChannelIndex, CheckpointId, SubtaskId, TaskManagerId};
use crate::runtime::deployment::TaskDeployment;
use crate::runtime::leadership::LeaderTerm;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// What a task manager reports of a task in its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Deployed and running.
    Running,
    /// Ended normally: all input consumed.
    Finished,
    /// Failed with this reason.
    Failed(String),
    /// Could not restore its checkpoint: a file is corrupt or missing.
    CheckpointUnreadable {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Why, naming the file.
        reason: String,
    },
}

/// A task manager's heartbeat. Registration rides on every heartbeat, so a task manager
/// registers with its first, and status reports repeat until the job manager has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Which task manager.
    pub taskmanager: TaskManagerId,
    /// Random per process start, so the job manager tells a restarted one apart.
    pub instance: u64,
    /// Slots offered (`taskmanager.numberOfTaskSlots`).
    pub slots: u32,
    /// Its data-plane address.
    pub data_address: SocketAddr,
    /// Its control listener's address.
    pub control_address: SocketAddr,
    /// Tasks it runs, with their attempt.
    pub tasks: Vec<(AttemptNumber, SubtaskId, TaskStatus)>,
}

/// Control traffic (Flink's RPC gateways), one way over the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMessage {
    /// Liveness, the slots offered, and the status of the tasks it runs.
    Heartbeat(Heartbeat),
    /// The job manager is alive (Flink's job-manager-to-task-manager heartbeat). A task
    /// manager that hears none for `heartbeat.timeout` cancels its tasks. Once the final
    /// checkpoint completed, it repeats its notice: no later checkpoint's notice would reach
    /// a committing sink whose notice was lost (FLIP-147 keeps checkpointing instead).
    JobManagerHeartbeat {
        /// The sender's leadership term (Flink's fencing token): a task manager follows the
        /// newest term it hears and refuses an older one.
        term: LeaderTerm,
        /// The final checkpoint, once completed.
        final_completed: Option<CheckpointId>,
        /// The sender's control endpoint: where the task managers that follow it send.
        leader: SocketAddr,
    },
    /// A source read all its input and waits for the final checkpoint.
    EndOfData {
        /// The task's attempt.
        attempt: AttemptNumber,
        /// The source subtask.
        subtask: SubtaskId,
    },
    /// The final checkpoint completed: the source ends its input.
    FinishSource {
        /// The attempt addressed.
        attempt: AttemptNumber,
        /// The source subtask.
        subtask: SubtaskId,
    },
    /// Run these tasks of `attempt`; cancel the older tasks `scope` says.
    Deploy {
        /// The job attempt.
        attempt: AttemptNumber,
        /// The tasks for this task manager.
        tasks: Vec<TaskDeployment>,
        /// What the deployment replaces.
        scope: DeployScope,
    },
    /// Cancel every task of `attempt` and older.
    Cancel {
        /// The newest attempt to cancel.
        attempt: AttemptNumber,
    },
    /// Cancel the tasks of `subtasks` of `attempt` and older (region failover: the other
    /// tasks run on).
    CancelTasks {
        /// The newest attempt to cancel.
        attempt: AttemptNumber,
        /// The subtasks whose tasks end.
        subtasks: Vec<SubtaskId>,
    },
    /// Start checkpoint `checkpoint_id` at a source task.
    TriggerCheckpoint {
        /// The attempt the trigger is for.
        attempt: AttemptNumber,
        /// The source subtask.
        subtask: SubtaskId,
        /// The barrier to inject.
        barrier: Barrier,
    },
    /// A task's part of a checkpoint is durable.
    AcknowledgeCheckpoint {
        /// The task's attempt.
        attempt: AttemptNumber,
        /// The task.
        subtask: SubtaskId,
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Where its state is.
        ack: TaskAck,
    },
    /// A task could not take its part of a checkpoint.
    DeclineCheckpoint {
        /// The task's attempt.
        attempt: AttemptNumber,
        /// The task.
        subtask: SubtaskId,
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Why.
        reason: DeclineReason,
    },
    /// The checkpoint completed.
    NotifyCheckpointComplete {
        /// The attempt addressed.
        attempt: AttemptNumber,
        /// The checkpoint.
        checkpoint_id: CheckpointId,
    },
    /// The checkpoint was aborted.
    NotifyCheckpointAborted {
        /// The attempt addressed.
        attempt: AttemptNumber,
        /// The checkpoint.
        checkpoint_id: CheckpointId,
    },
    /// Cancel the job (`flink cancel`, sent by the client to the job manager).
    CancelJob,
    /// Take a savepoint (`flink savepoint`), or stop the job with one (`flink stop`), sent by
    /// the client to the job manager.
    TriggerSavepoint {
        /// `--type`: canonical or native.
        format: SavepointFormat,
        /// Stop the job once the savepoint completed (`flink stop`).
        terminate: bool,
        /// `flink stop --drain`: the sources end their input first and every operator
        /// finishes; the savepoint is the job's final checkpoint.
        drain: bool,
    },
    /// Stop-with-savepoint with drain: the source ends its input now, as if it were read to
    /// its end, and waits for the final checkpoint.
    EndInput {
        /// The attempt addressed.
        attempt: AttemptNumber,
        /// The source subtask.
        subtask: SubtaskId,
    },
    /// A task changed status (sent at once; heartbeats repeat it).
    TaskStatusChanged {
        /// The task's attempt.
        attempt: AttemptNumber,
        /// The task.
        subtask: SubtaskId,
        /// Its new status.
        status: TaskStatus,
    },
}

/// An event that travels in band on a data channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelEvent {
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The checkpoint was aborted upstream.
    CancelCheckpointMarker(CheckpointId),
    /// The producer will send no more records (FLIP-147's `EndOfData`): once every input
    /// channel said so, a task's operators are finished, its processing-time timers stop, and
    /// it says so downstream; the final checkpoint's barrier and the end of partition follow.
    EndOfData,
    /// The producer has no more data: the channel ends normally.
    EndOfPartition,
}

/// A frame on a data channel (one TCP connection per channel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataFrame {
    /// First frame from the producer: names the channel.
    Hello {
        /// The producer's attempt.
        attempt: AttemptNumber,
        /// The producer.
        source: SubtaskId,
        /// The consumer.
        target: SubtaskId,
        /// The consumer's input channel this connection feeds.
        channel: ChannelIndex,
    },
    /// A buffer of serialized records.
    Buffer {
        /// Records in it.
        record_count: u32,
        /// Concatenated postcard records (one byte string on the wire, not a sequence of bytes).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Buffers queued behind it at the producer.
        backlog: u32,
    },
    /// An in-band event.
    Event(ChannelEvent),
    /// Consumer to producer: this many more buffers may be sent.
    Credit(u32),
}

/// What a deployment replaces on the task manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeployScope {
    /// The whole job restarts: every task of an older attempt is cancelled.
    Job,
    /// Region failover: only the older tasks of the deployed subtasks are cancelled; the
    /// other regions' tasks run on under their own attempts.
    Regions,
}
