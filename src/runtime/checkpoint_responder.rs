//! How a task answers the checkpoint coordinator (Flink's `CheckpointResponder` and
//! `AsyncCheckpointRunnable`): a complete snapshot is written to checkpoint storage in the
//! background while the task keeps processing (or kept inline, by the storage's rules), and
//! the result comes back through the task's mailbox; acks and declines go to the job manager.

use crate::checkpoint::barrier::SnapshotType;
use crate::checkpoint::coordinator::{DeclineReason, TaskAck};
use crate::checkpoint::storage::{StateHandle, StorageError};
use crate::checkpoint::subtask_checkpoint::{Upload, Uploaded};
use crate::codec::{encode, FileKind};
use crate::ids::CheckpointId;
use crate::runtime::messages::ControlMessage;
use crate::runtime::task_context::TaskContext;
use crate::runtime::task_mailbox::{MailboxSender, TaskInput};
use crate::state::savepoint_format::to_canonical;
use futures::SinkExt;

/// Writes `upload` in the background (or keeps it inline); `TaskInput::UploadDone` reports
/// how it went.
pub fn spawn_upload(context: &TaskContext, upload: Upload, mut inbox: MailboxSender) {
    let Upload {
        checkpoint_id,
        snapshot_type,
        snapshot,
    } = upload;
    let config = &context.config.checkpoint_storage;
    let file = config.snapshot_file(checkpoint_id, snapshot_type, context.subtask);
    let Some((path, kind)) = file else {
        // The job manager triggers no savepoint without a savepoint directory.
        unreachable!("a savepoint barrier reached a task without a savepoint directory");
    };
    let bytes = match kind {
        FileKind::CanonicalSavepoint => encode(kind, &to_canonical(&snapshot)),
        _ => encode(kind, &snapshot),
    };
    let state_size_bytes = bytes.len() as u64;
    // A savepoint is a self-contained directory of files, whatever the checkpoint storage.
    let in_file = match snapshot_type {
        SnapshotType::Savepoint { .. } => Ok(true),
        SnapshotType::Checkpoint => config.placement(state_size_bytes),
    };
    let storage = context.storage();
    madsim::task::spawn(async move {
        let state = match in_file {
            Ok(true) => storage
                .write_bytes(&path, bytes)
                .await
                .map(|_| StateHandle::File(path)),
            Ok(false) => Ok(StateHandle::Inline { name: path, bytes }),
            Err(reason) => Err(StorageError::TooLarge { path, reason }),
        };
        let written = state
            .as_ref()
            .ok()
            .and_then(|s| s.path().map(str::to_string));
        let result = state.map(|state| Uploaded {
            state,
            state_size_bytes,
        });
        let done = TaskInput::UploadDone {
            checkpoint_id,
            result,
        };
        if inbox.send(done).await.is_err() {
            // The task was cancelled while its snapshot was written: nobody will acknowledge
            // the file, so it is deleted here (Flink's `AsyncCheckpointRunnable` discards the
            // state of a cancelled snapshot).
            if let Some(path) = written {
                let _ = storage.delete(&path).await;
            }
        }
    });
}

/// The task's part of `checkpoint_id` is durable.
pub async fn acknowledge(context: &TaskContext, checkpoint_id: CheckpointId, ack: TaskAck) {
    let message = ControlMessage::AcknowledgeCheckpoint {
        attempt: context.attempt,
        subtask: context.subtask,
        checkpoint_id,
        ack,
    };
    context.send_to_jobmanager(&message).await;
}

/// The task cannot take its part of `checkpoint_id`.
pub async fn decline(context: &TaskContext, checkpoint_id: CheckpointId, reason: DeclineReason) {
    let message = ControlMessage::DeclineCheckpoint {
        attempt: context.attempt,
        subtask: context.subtask,
        checkpoint_id,
        reason,
    };
    context.send_to_jobmanager(&message).await;
}
