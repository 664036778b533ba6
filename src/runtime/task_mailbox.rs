//! What reaches a task's mailbox (Flink's `TaskMailbox`): network input and credit, control
//! messages from the job manager, and the completions of its own background uploads.

use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::storage::StorageError;
use crate::checkpoint::subtask_checkpoint::Uploaded;
use crate::ids::{ChannelIndex, CheckpointId};
use crate::limits::TASK_MAILBOX_CAPACITY;
use crate::runtime::messages::DataFrame;
use futures::channel::mpsc;
use madsim::net::TcpStream;
use tokio::io::WriteHalf;

/// Where a task's inputs are sent.
pub type MailboxSender = mpsc::Sender<TaskInput>;
/// Where a task reads its inputs.
pub type Mailbox = mpsc::Receiver<TaskInput>;

/// A task's mailbox, bounded by `TASK_MAILBOX_CAPACITY`.
pub fn mailbox() -> (MailboxSender, Mailbox) {
    mpsc::channel(TASK_MAILBOX_CAPACITY)
}

/// What reaches a task's mailbox.
pub enum TaskInput {
    /// An input channel's connection arrived; credits go back through `writer`.
    InputConnected {
        /// The channel.
        channel: ChannelIndex,
        /// The write half, for credit frames.
        writer: WriteHalf<TcpStream>,
    },
    /// A frame arrived on an input channel.
    Frame {
        /// The channel.
        channel: ChannelIndex,
        /// The frame.
        frame: DataFrame,
    },
    /// An input channel closed.
    InputClosed {
        /// The channel.
        channel: ChannelIndex,
        /// The error, if it did not close cleanly.
        error: Option<String>,
    },
    /// Credit for an output channel.
    Credit {
        /// The output channel.
        output: usize,
        /// Buffers granted.
        credit: u32,
    },
    /// An output channel closed.
    OutputClosed {
        /// The output channel.
        output: usize,
    },
    /// The coordinator triggers a checkpoint (sources only).
    Trigger(Barrier),
    /// A checkpoint completed.
    CheckpointComplete(CheckpointId),
    /// A checkpoint was aborted (a source stopped at a stop-with-savepoint barrier resumes).
    CheckpointAborted(CheckpointId),
    /// The final checkpoint completed: a source waiting at the end of its input ends it.
    FinishSource,
    /// Stop-with-savepoint with drain: a source ends its input now.
    EndInput,
    /// The asynchronous part of a snapshot ended.
    UploadDone {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Where the snapshot is, or why the upload failed.
        result: Result<Uploaded, StorageError>,
    },
}
