//! Why a task fails (and with it, its attempt): the runtime layer's errors. Each names the
//! subtask and what broke; the job manager receives the text as the failure's reason.

use crate::checkpoint::barrier_protocol::ProtocolError;
use crate::checkpoint::storage::StorageError;
use crate::connectors::connector_error::ConnectorError;
use crate::ids::SubtaskId;
use crate::runtime::rpc::RpcError;
use std::net::SocketAddr;

/// What is wrong with what arrived on an input channel.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Data or an event after the channel's end of partition.
    #[error("input channel {channel}: data after end of partition")]
    AfterEnd {
        /// The channel.
        channel: u16,
    },
    /// More buffers than credit granted.
    #[error("input channel {channel}: buffer sent without credit")]
    WithoutCredit {
        /// The channel.
        channel: u16,
    },
    /// A frame that belongs to the other direction or to the handshake.
    #[error("input channel {channel}: unexpected control frame")]
    ControlFrame {
        /// The channel.
        channel: u16,
    },
    /// The barrier handler refused an input.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A second connection for one channel.
    #[error("input channel {channel} connected twice")]
    ConnectedTwice {
        /// The channel.
        channel: u16,
    },
    /// A record of a buffer does not decode.
    #[error("corrupt buffer on input channel {channel}: {error}")]
    CorruptBuffer {
        /// The channel.
        channel: u16,
        /// Why.
        error: String,
    },
    /// A buffer holds bytes beyond its records.
    #[error("a buffer on input channel {channel} holds more bytes than its {records} records")]
    TrailingBytes {
        /// The channel.
        channel: u16,
        /// Records it announced.
        records: u32,
    },
    /// A buffer with no record.
    #[error("an empty buffer on input channel {channel} from {upstream}")]
    EmptyBuffer {
        /// The channel.
        channel: u16,
        /// Its producer.
        upstream: SubtaskId,
    },
    /// A second end of data on one channel.
    #[error("a second end of data on input channel {channel} from {upstream}")]
    RepeatedEndOfData {
        /// The channel.
        channel: u16,
        /// Its producer.
        upstream: SubtaskId,
    },
}

/// Restored channel state that does not fit the task.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelStateError {
    /// Input state for another number of channels.
    #[error("input channel state has {found} channels, the task has {expected}")]
    InputChannels {
        /// In the state.
        found: usize,
        /// At the task.
        expected: usize,
    },
    /// Output state for another number of channels.
    #[error("output channel state has {found} channels, the task has {expected}")]
    OutputChannels {
        /// In the state.
        found: usize,
        /// At the task.
        expected: usize,
    },
    /// Input state for a source.
    #[error("a source has no input channels")]
    InputAtSource,
}

/// Why a task fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// A `fail-task` fault: an exception in user code, injected.
    #[error("{subtask}: injected failure while processing record {record}")]
    InjectedFailure {
        /// The subtask.
        subtask: SubtaskId,
        /// The record it began.
        record: u64,
    },
    /// A file of the checkpoint being restored is corrupt or missing: the checkpoint cannot
    /// be restored (the job master falls back to an older one).
    #[error("{subtask}: checkpoint {checkpoint_id} cannot be restored: {error}")]
    CheckpointUnreadable {
        /// The subtask.
        subtask: SubtaskId,
        /// The checkpoint.
        checkpoint_id: crate::ids::CheckpointId,
        /// What is wrong, naming the file.
        error: StorageError,
    },
    /// A user function returned an error.
    #[error("{subtask}: user function failed: {message}")]
    UserFunction {
        /// The subtask.
        subtask: SubtaskId,
        /// What the function said.
        message: String,
    },
    /// What arrived on an input channel is wrong.
    #[error("{subtask}: {error}")]
    Input {
        /// The subtask.
        subtask: SubtaskId,
        /// What.
        error: InputError,
    },
    /// Network input reached a source (which has no input channels).
    #[error("{subtask}: a source task got {what}")]
    InputAtSource {
        /// The subtask.
        subtask: SubtaskId,
        /// What arrived.
        what: &'static str,
    },
    /// An input channel closed before its end of partition.
    #[error("{subtask}: input channel from {upstream} broke: {reason}")]
    InputBroke {
        /// The subtask.
        subtask: SubtaskId,
        /// Its producer.
        upstream: SubtaskId,
        /// Why.
        reason: String,
    },
    /// An output channel closed before the task ended.
    #[error("{subtask}: output channel to {target} broke")]
    OutputClosed {
        /// The subtask.
        subtask: SubtaskId,
        /// The consumer.
        target: SubtaskId,
    },
    /// Writing to an output channel failed.
    #[error("output channel to {target} broke: {reason}")]
    OutputWrite {
        /// The consumer.
        target: SubtaskId,
        /// Why.
        reason: String,
    },
    /// The hello frame of a new output channel could not be written.
    #[error("channel to {target}: {reason}")]
    Hello {
        /// The consumer.
        target: SubtaskId,
        /// Why.
        reason: String,
    },
    /// An output channel's consumer could not be reached.
    #[error("{subtask}: cannot connect channel to {target} at {address}: {reason}")]
    Connect {
        /// The subtask.
        subtask: SubtaskId,
        /// The consumer.
        target: SubtaskId,
        /// Its task manager.
        address: SocketAddr,
        /// The last error.
        reason: String,
    },
    /// The restored channel state does not fit.
    #[error("{subtask}: restoring channel state: {error}")]
    ChannelState {
        /// The subtask.
        subtask: SubtaskId,
        /// What does not fit.
        error: ChannelStateError,
    },
    /// Keyed state could not be restored.
    #[error("operator `{uid}`: {error}")]
    KeyedState {
        /// The operator.
        uid: String,
        /// Why.
        error: String,
    },
    /// A trigger reached a task that is not a source.
    #[error("{subtask}: a trigger reached a task that is not a source")]
    TriggerAtNonSource {
        /// The subtask.
        subtask: SubtaskId,
    },
    /// Records reached a committing sink after the final checkpoint.
    #[error("{subtask}: {records} records reached the sink after the final checkpoint")]
    UncoveredRecords {
        /// The subtask.
        subtask: SubtaskId,
        /// How many.
        records: u64,
    },
    /// A source record does not decode.
    #[error("{subtask}: a source record does not decode: {error}")]
    UndecodableSourceRecord {
        /// The subtask.
        subtask: SubtaskId,
        /// Why.
        error: String,
    },
    /// The broker answered a partition count with something else.
    #[error("broker answered a partition count with {response}")]
    PartitionCount {
        /// The answer.
        response: String,
    },
    /// The task manager dropped the task's mailbox.
    #[error("the task manager dropped the task")]
    Dropped,
    /// The source or the sink failed.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// Checkpoint storage failed (restoring).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

impl TaskError {
    /// An input error at `subtask`.
    pub fn input(subtask: SubtaskId, error: impl Into<InputError>) -> TaskError {
        TaskError::Input {
            subtask,
            error: error.into(),
        }
    }
}
