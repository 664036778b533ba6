//! Checkpoint storage as Flink's `FileSystemCheckpointStorage` lays it out: `chk-<n>/` holds one
//! state file per subtask and a `_metadata` file. Every file carries the codec envelope (magic,
//! version, checksum), so a corrupt or foreign file is refused with its path.

use crate::codec::{decode, encode, FileKind};
use crate::ids::{CheckpointId, SubtaskId};
use crate::runtime::rpc::Rpc;
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

/// Path of checkpoint `checkpoint_id`'s metadata.
pub fn metadata_path(checkpoint_id: CheckpointId) -> String {
    format!("chk-{}/_metadata", checkpoint_id.0)
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
    ) -> Result<u64, String> {
        let bytes = encode(kind, value);
        let size_bytes = bytes.len() as u64;
        let request = BlobRequest::Put {
            path: path.to_string(),
            bytes,
        };
        // Idempotent: a retried put writes the same bytes again.
        match self
            .rpc
            .call(self.blobstore, &request, self.timeout, true)
            .await?
        {
            BlobResponse::Stored => Ok(size_bytes),
            other => Err(format!("{path}: blobstore refused the write: {other:?}")),
        }
    }

    /// Reads and checks a file of `kind`.
    pub async fn read<T: DeserializeOwned>(&self, kind: FileKind, path: &str) -> Result<T, String> {
        let request = BlobRequest::Get {
            path: path.to_string(),
        };
        match self
            .rpc
            .call(self.blobstore, &request, self.timeout, true)
            .await?
        {
            BlobResponse::Data(Some(bytes)) => {
                decode(kind, path, &bytes).map_err(|e| e.to_string())
            }
            BlobResponse::Data(None) => Err(format!("{path}: missing from checkpoint storage")),
            other => Err(format!("{path}: blobstore answered {other:?}")),
        }
    }
}
