//! Checkpoint storage as Flink's `FileSystemCheckpointStorage` lays it out: `chk-<n>/` holds one
//! state file per subtask and a `_metadata` file. Every file carries the codec envelope (magic,
//! version, checksum), so a corrupt or foreign file is refused with its path.

use crate::codec::{decode, encode, CodecError, FileKind};
use crate::ids::{CheckpointId, SubtaskId};
use crate::runtime::rpc::{Rpc, RpcError};
use crate::services::messages::{BlobRequest, BlobResponse};
use crate::time::Duration;
use serde::{de::DeserializeOwned, Serialize};
use std::net::SocketAddr;

/// Path of a subtask's state file in checkpoint `checkpoint_id`.
pub fn task_state_path(checkpoint_id: CheckpointId, subtask: SubtaskId) -> String {
    format!(
        "chk-{}/{}-{}.state",
        checkpoint_id.0, subtask.vertex_id.0, subtask.subtask_index
    )
}

/// The directory of checkpoint `checkpoint_id`, holding all its files.
pub fn checkpoint_directory(checkpoint_id: CheckpointId) -> String {
    format!("chk-{}/", checkpoint_id.0)
}

/// Path of checkpoint `checkpoint_id`'s metadata.
pub fn metadata_path(checkpoint_id: CheckpointId) -> String {
    format!("chk-{}/_metadata", checkpoint_id.0)
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
        let bytes = encode(kind, value);
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

    /// Deletes checkpoint `checkpoint_id`'s directory (`chk-<n>/`) and every file in it.
    pub async fn discard(&self, checkpoint_id: CheckpointId) -> Result<(), StorageError> {
        let directory = checkpoint_directory(checkpoint_id);
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

    /// Reads and checks a file of `kind`.
    pub async fn read<T: DeserializeOwned>(
        &self,
        kind: FileKind,
        path: &str,
    ) -> Result<T, StorageError> {
        let request = BlobRequest::Get {
            path: path.to_string(),
        };
        match self.call(&request).await? {
            BlobResponse::Data(Some(bytes)) => Ok(decode(kind, path, &bytes)?),
            BlobResponse::Data(None) => Err(StorageError::Missing {
                path: path.to_string(),
            }),
            other => Err(StorageError::Unexpected {
                path: path.to_string(),
                response: format!("{other:?}"),
            }),
        }
    }
}
