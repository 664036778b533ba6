//! Checkpoint storage as Flink's `FileSystemCheckpointStorage` lays it out: `chk-<n>/` holds one
//! state file per subtask and a `_metadata` file. Every file carries the codec envelope (magic,
//! version, checksum), so a corrupt or foreign file is refused with its path.
//!
//! Which storage (`execution.checkpointing.storage`): `filesystem` writes each subtask's
//! snapshot to a file under `execution.checkpointing.dir`, unless it is smaller than
//! `data-inline-threshold`, when it travels inline in the ack and `_metadata`; `jobmanager`
//! sends every snapshot inline to the job manager, which keeps it in memory and refuses one
//! larger than `max-state-size` (Flink's `JobManagerCheckpointStorage`), and writes no files.

use crate::checkpoint::barrier::{SavepointFormat, SnapshotType};
use crate::codec::{decode, encode, CodecError, FileKind};
use crate::ids::{CheckpointId, SubtaskId};
use crate::runtime::rpc::{Rpc, RpcError};
use crate::services::messages::{BlobRequest, BlobResponse};
use crate::state::savepoint_format::decode_task_state;
use crate::state::snapshot::TaskStateSnapshot;
use crate::time::Duration;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::net::SocketAddr;

/// Where checkpoints are kept (`execution.checkpointing.storage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// `filesystem`: files in the blobstore.
    FileSystem,
    /// `jobmanager`: the job manager's memory; lost with it.
    JobManager,
}

/// Checkpoint storage options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointStorageConfig {
    /// `storage`.
    pub kind: StorageKind,
    /// `dir`: the directory checkpoints go under in the blobstore (its root when empty).
    pub dir: String,
    /// `data-inline-threshold`: a snapshot smaller than this travels inline instead of in a
    /// file. Flink's default is 20 kb; snapflow's is 0 (every snapshot a file), so the faults
    /// that corrupt and lose files have files to act on.
    pub inline_threshold_bytes: u64,
    /// `max-state-size` of jobmanager storage (Flink's `JobManagerCheckpointStorage`
    /// constructor argument): a larger snapshot declines the checkpoint.
    pub max_state_size_bytes: u64,
    /// `savepoint-dir`: where savepoints go (`savepoint-<n>/` under it); a savepoint cannot
    /// be taken without it, as in Flink. Savepoints are always files, whatever `storage`.
    pub savepoint_dir: Option<String>,
}

/// `JobManagerCheckpointStorage.DEFAULT_MAX_STATE_SIZE`.
pub const JOBMANAGER_MAX_STATE_SIZE_DEFAULT: u64 = 5 * 1024 * 1024;

impl Default for CheckpointStorageConfig {
    fn default() -> Self {
        CheckpointStorageConfig {
            kind: StorageKind::FileSystem,
            dir: String::new(),
            inline_threshold_bytes: 0,
            max_state_size_bytes: JOBMANAGER_MAX_STATE_SIZE_DEFAULT,
            savepoint_dir: None,
        }
    }
}

impl CheckpointStorageConfig {
    fn under_dir(&self, path: String) -> String {
        if self.dir.is_empty() {
            path
        } else {
            format!("{}/{path}", self.dir.trim_end_matches('/'))
        }
    }

    /// The directory of savepoint `checkpoint_id`: self-contained, its `_metadata` naming its
    /// files relative to it. `None` without a savepoint directory.
    pub fn savepoint_directory(&self, checkpoint_id: CheckpointId) -> Option<String> {
        let dir = self.savepoint_dir.as_deref()?.trim_end_matches('/');
        let name = format!("savepoint-{}/", checkpoint_id.0);
        Some(if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        })
    }

    /// The directory a snapshot's files go to, by its type.
    pub fn snapshot_directory(
        &self,
        checkpoint_id: CheckpointId,
        snapshot: SnapshotType,
    ) -> Option<String> {
        match snapshot {
            SnapshotType::Checkpoint => Some(self.checkpoint_directory(checkpoint_id)),
            SnapshotType::Savepoint { .. } => self.savepoint_directory(checkpoint_id),
        }
    }

    /// Where a subtask writes its part of a snapshot, and as which kind of file.
    pub fn snapshot_file(
        &self,
        checkpoint_id: CheckpointId,
        snapshot: SnapshotType,
        subtask: SubtaskId,
    ) -> Option<(String, FileKind)> {
        let directory = self.snapshot_directory(checkpoint_id, snapshot)?;
        let name = format!("{}-{}.state", subtask.vertex_id.0, subtask.subtask_index);
        let kind = match snapshot {
            SnapshotType::Savepoint {
                format: SavepointFormat::Canonical,
                ..
            } => FileKind::CanonicalSavepoint,
            _ => FileKind::TaskState,
        };
        Some((format!("{directory}{name}"), kind))
    }

    /// Path of a subtask's state file in checkpoint `checkpoint_id`.
    pub fn task_state_path(&self, checkpoint_id: CheckpointId, subtask: SubtaskId) -> String {
        self.under_dir(format!(
            "chk-{}/{}-{}.state",
            checkpoint_id.0, subtask.vertex_id.0, subtask.subtask_index
        ))
    }

    /// The directory of checkpoint `checkpoint_id`, holding all its files.
    pub fn checkpoint_directory(&self, checkpoint_id: CheckpointId) -> String {
        self.under_dir(format!("chk-{}/", checkpoint_id.0))
    }

    /// Path of checkpoint `checkpoint_id`'s metadata.
    pub fn metadata_path(&self, checkpoint_id: CheckpointId) -> String {
        self.under_dir(format!("chk-{}/_metadata", checkpoint_id.0))
    }

    /// How a subtask keeps a snapshot of `size_bytes` encoded bytes: in a file, inline, or
    /// (over jobmanager storage's limit) not at all, with the reason.
    pub fn placement(&self, size_bytes: u64) -> Result<bool, String> {
        match self.kind {
            StorageKind::JobManager if size_bytes > self.max_state_size_bytes => Err(format!(
                "the state is {size_bytes} bytes, more than jobmanager checkpoint storage's max-state-size of {} bytes: use filesystem checkpoint storage",
                self.max_state_size_bytes
            )),
            StorageKind::JobManager => Ok(false),
            StorageKind::FileSystem => Ok(size_bytes >= self.inline_threshold_bytes),
        }
    }
}

/// Where a subtask's part of a checkpoint is (Flink's `StreamStateHandle`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateHandle {
    /// A file in checkpoint storage (`FileStateHandle`).
    File(String),
    /// The encoded snapshot itself, codec envelope included (`ByteStreamStateHandle`).
    Inline {
        /// What it would be called as a file, for errors.
        name: String,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// A file named relative to its snapshot's directory (`RelativeFileStateHandle`): what a
    /// savepoint's `_metadata` holds, so the directory can be moved as a whole.
    Relative(String),
}

impl StateHandle {
    /// The handle as a savepoint's `_metadata` keeps it: a file under `directory` by its name.
    pub fn relative_to(&self, directory: &str) -> StateHandle {
        match self {
            StateHandle::File(path) => match path.strip_prefix(directory) {
                Some(name) => StateHandle::Relative(name.to_string()),
                None => self.clone(),
            },
            other => other.clone(),
        }
    }

    /// The handle with a relative name resolved against `directory` (where the `_metadata`
    /// was read from).
    pub fn resolved(&self, directory: &str) -> StateHandle {
        match self {
            StateHandle::Relative(name) => StateHandle::File(format!("{directory}{name}")),
            other => other.clone(),
        }
    }

    /// The file, if the state is in one.
    pub fn path(&self) -> Option<&str> {
        match self {
            StateHandle::File(path) => Some(path),
            StateHandle::Inline { .. } | StateHandle::Relative(_) => None,
        }
    }
}

impl std::fmt::Display for StateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateHandle::File(path) => write!(f, "{path}"),
            StateHandle::Inline { name, bytes } => {
                write!(f, "{name} (inline, {} bytes)", bytes.len())
            }
            StateHandle::Relative(name) => write!(f, "./{name}"),
        }
    }
}

/// Why checkpoint storage could not write or read a file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The blobstore did not answer usably.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The blobstore refused to store the file.
    #[error("{path}: blobstore refused the write: {response}")]
    WriteRefused {
        /// The file.
        path: String,
        /// Its answer.
        response: String,
    },
    /// The file is not there.
    #[error("{path}: missing from checkpoint storage")]
    Missing {
        /// The file.
        path: String,
    },
    /// The file is there but not valid (magic, version, checksum, payload).
    #[error(transparent)]
    Corrupt(#[from] CodecError),
    /// Jobmanager storage refuses a snapshot over its size limit.
    #[error("{path}: {reason}")]
    TooLarge {
        /// What the file would have been called.
        path: String,
        /// Why.
        reason: String,
    },
    /// The blobstore answered something else.
    #[error("{path}: blobstore answered {response}")]
    Unexpected {
        /// The file.
        path: String,
        /// Its answer.
        response: String,
    },
}

/// A client of the blobstore node.
#[derive(Clone)]
pub struct CheckpointStorage {
    rpc: Rpc,
    blobstore: SocketAddr,
    timeout: Duration,
}

impl CheckpointStorage {
    /// Talks to the blobstore at `blobstore` through `rpc`.
    pub fn new(rpc: Rpc, blobstore: SocketAddr, timeout: Duration) -> CheckpointStorage {
        CheckpointStorage {
            rpc,
            blobstore,
            timeout,
        }
    }

    /// Writes `value` durably as a file of `kind`; returns its size in bytes.
    pub async fn write<T: Serialize>(
        &self,
        kind: FileKind,
        path: &str,
        value: &T,
    ) -> Result<u64, StorageError> {
        self.write_bytes(path, encode(kind, value)).await
    }

    /// Writes bytes already encoded (codec envelope included) durably; returns their size.
    pub async fn write_bytes(&self, path: &str, bytes: Vec<u8>) -> Result<u64, StorageError> {
        let size_bytes = bytes.len() as u64;
        let request = BlobRequest::Put {
            path: path.to_string(),
            bytes,
        };
        // Idempotent: a retried put writes the same bytes again.
        match self.call(&request).await? {
            BlobResponse::Stored => Ok(size_bytes),
            other => Err(StorageError::WriteRefused {
                path: path.to_string(),
                response: format!("{other:?}"),
            }),
        }
    }

    /// The checkpoints that have a directory in storage (`chk-<n>/` under `dir`), in order.
    pub async fn checkpoint_directories(
        &self,
        config: &CheckpointStorageConfig,
    ) -> Result<Vec<CheckpointId>, StorageError> {
        let root = config.under_dir(String::new());
        let request = BlobRequest::List {
            directory: root.clone(),
        };
        let paths = match self.call(&request).await? {
            BlobResponse::Paths(paths) => paths,
            other => {
                return Err(StorageError::Unexpected {
                    path: root,
                    response: format!("{other:?}"),
                })
            }
        };
        let mut ids: Vec<CheckpointId> = paths
            .iter()
            .filter_map(|path| path.strip_prefix(root.as_str())?.strip_prefix("chk-"))
            .filter_map(|rest| rest.split_once('/')?.0.parse().ok())
            .map(CheckpointId)
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Deletes one file.
    pub async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let request = BlobRequest::Delete {
            path: path.to_string(),
        };
        match self.call(&request).await? {
            BlobResponse::Stored => Ok(()),
            other => Err(StorageError::Unexpected {
                path: path.to_string(),
                response: format!("{other:?}"),
            }),
        }
    }

    /// Deletes `directory` (a checkpoint's `chk-<n>/`) and every file in it.
    pub async fn discard(&self, directory: String) -> Result<(), StorageError> {
        let request = BlobRequest::DeleteDirectory {
            directory: directory.clone(),
        };
        // Idempotent: deleting again deletes nothing more.
        match self.call(&request).await? {
            BlobResponse::Stored => Ok(()),
            other => Err(StorageError::Unexpected {
                path: directory,
                response: format!("{other:?}"),
            }),
        }
    }

    // Every blobstore request is idempotent, so each is retried.
    async fn call(&self, request: &BlobRequest) -> Result<BlobResponse, StorageError> {
        let response = self
            .rpc
            .call(self.blobstore, request, self.timeout, true)
            .await?;
        Ok(response)
    }

    /// Reads and checks a subtask's state, from its file or inline.
    pub async fn read_state(
        &self,
        handle: &StateHandle,
    ) -> Result<TaskStateSnapshot, StorageError> {
        match handle {
            StateHandle::File(path) => {
                let bytes = self.read_bytes(path).await?;
                Ok(decode_task_state(path, &bytes)?)
            }
            StateHandle::Inline { name, bytes } => Ok(decode_task_state(name, bytes)?),
            StateHandle::Relative(name) => Err(StorageError::Missing {
                path: format!("{name} (relative to a savepoint directory never resolved)"),
            }),
        }
    }

    /// Reads a file's bytes, unchecked.
    async fn read_bytes(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        let request = BlobRequest::Get {
            path: path.to_string(),
        };
        match self.call(&request).await? {
            BlobResponse::Data(Some(bytes)) => Ok(bytes),
            BlobResponse::Data(None) => Err(StorageError::Missing {
                path: path.to_string(),
            }),
            other => Err(StorageError::Unexpected {
                path: path.to_string(),
                response: format!("{other:?}"),
            }),
        }
    }

    /// Reads and checks a file of `kind`.
    pub async fn read<T: DeserializeOwned>(
        &self,
        kind: FileKind,
        path: &str,
    ) -> Result<T, StorageError> {
        let bytes = self.read_bytes(path).await?;
        Ok(decode(kind, path, &bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VertexId;

    #[test]
    fn paths_go_under_the_directory_and_the_storage_decides_file_inline_or_refusal() {
        let subtask = SubtaskId {
            vertex_id: VertexId(1),
            subtask_index: 2,
        };
        let root = CheckpointStorageConfig::default();
        assert_eq!(
            root.task_state_path(CheckpointId(7), subtask),
            "chk-7/1-2.state"
        );
        assert_eq!(
            root.placement(0),
            Ok(true),
            "snapflow's default: always a file"
        );
        let under = CheckpointStorageConfig {
            dir: "flink/ckpts/".into(),
            inline_threshold_bytes: 20 * 1024,
            ..CheckpointStorageConfig::default()
        };
        assert_eq!(
            under.metadata_path(CheckpointId(3)),
            "flink/ckpts/chk-3/_metadata"
        );
        assert_eq!(
            under.checkpoint_directory(CheckpointId(3)),
            "flink/ckpts/chk-3/"
        );
        assert_eq!(under.placement(20 * 1024 - 1), Ok(false), "below: inline");
        assert_eq!(under.placement(20 * 1024), Ok(true));
        let memory = CheckpointStorageConfig {
            kind: StorageKind::JobManager,
            ..CheckpointStorageConfig::default()
        };
        assert_eq!(
            memory.placement(JOBMANAGER_MAX_STATE_SIZE_DEFAULT),
            Ok(false)
        );
        let refused = memory
            .placement(JOBMANAGER_MAX_STATE_SIZE_DEFAULT + 1)
            .unwrap_err();
        assert!(
            refused.contains("5242881 bytes") && refused.contains("5242880"),
            "{refused}"
        );
    }
}
