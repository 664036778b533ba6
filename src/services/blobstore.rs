//! The blobstore node: checkpoint storage ("filesystem" checkpoint storage) on the disk model.
//!
//! With `fsync` (the default) a put is acknowledged only once it is durable, which takes
//! `sync-latency`: a crash before that loses or tears the file, and its writer, unanswered,
//! retries or gives up, so no checkpoint ever counts a file a crash can take. Without `fsync`
//! a put is acknowledged as soon as it is written and reaches the disk `writeback-delay`
//! later (a file system that never syncs on close): a crash in between loses or tears files
//! of checkpoints that already completed.

use crate::runtime::rpc::{IncomingRequest, Rpc};
use crate::runtime::sim_time;
use crate::services::disk::Disk;
use crate::services::messages::{BlobRequest, BlobResponse};
use crate::time::Duration;

/// How the blobstore makes writes durable (`[blobstore]` in a scenario).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobstoreConfig {
    /// A put is acknowledged once durable (`true`) or once written (`false`).
    pub fsync: bool,
    /// With `fsync`: how long a write takes to become durable.
    pub sync_latency: Duration,
    /// Without `fsync`: how long a written file waits for the background writeback.
    pub writeback_delay: Duration,
}

impl Default for BlobstoreConfig {
    fn default() -> Self {
        BlobstoreConfig {
            fsync: true,
            sync_latency: Duration::ZERO,
            writeback_delay: Duration::from_secs(5),
        }
    }
}

/// Answers one request against `disk` at once; a put is written but not yet synced.
fn handle(disk: &Disk, request: BlobRequest) -> BlobResponse {
    match request {
        BlobRequest::Put { path, bytes } => {
            if disk.writes_fail(sim_time::now()) {
                return BlobResponse::Error(format!("{path}: write failed: I/O error"));
            }
            disk.write(&path, bytes);
            BlobResponse::Stored
        }
        BlobRequest::Get { path } => BlobResponse::Data(disk.read(&path)),
        BlobRequest::List { directory } => BlobResponse::Paths(
            disk.paths()
                .into_iter()
                .filter(|path| path.starts_with(&directory))
                .collect(),
        ),
        BlobRequest::Delete { path } => {
            disk.delete(&path);
            BlobResponse::Stored
        }
        BlobRequest::DeleteDirectory { directory } => {
            disk.delete_directory(&directory);
            BlobResponse::Stored
        }
    }
}

/// The blobstore's main: serves requests until the node is killed.
pub async fn run_blobstore(disk: Disk, config: BlobstoreConfig) {
    let rpc = Rpc::bind()
        .await
        .expect("the request port is free on a fresh node");
    loop {
        let Ok(request) = rpc.recv_request().await else {
            continue;
        };
        let decoded = crate::codec::decode_message::<BlobRequest>(&request.body);
        let put_path = match &decoded {
            Ok(BlobRequest::Put { path, .. }) => Some(path.clone()),
            _ => None,
        };
        let response = match decoded {
            Ok(body) => handle(&disk, body),
            Err(error) => BlobResponse::Error(format!("undecodable request: {error}")),
        };
        match (put_path, &response) {
            (Some(path), BlobResponse::Stored)
                if config.fsync && config.sync_latency == Duration::ZERO =>
            {
                disk.sync_path(&path);
                rpc.reply(&request, &response).await;
            }
            (Some(path), BlobResponse::Stored) => put_stored(&rpc, &disk, config, request, path),
            _ => rpc.reply(&request, &response).await,
        }
    }
}

/// A put was written: it becomes durable after the sync latency and is acknowledged then, or
/// it is acknowledged now and reaches the disk in the background.
fn put_stored(
    rpc: &Rpc,
    disk: &Disk,
    config: BlobstoreConfig,
    request: IncomingRequest,
    path: String,
) {
    let (rpc, disk) = (rpc.clone(), disk.clone());
    let delay = if config.fsync {
        config.sync_latency
    } else {
        config.writeback_delay
    };
    madsim::task::spawn(async move {
        if !config.fsync {
            rpc.reply(&request, &BlobResponse::Stored).await;
        }
        sim_time::sleep(delay).await;
        disk.sync_path(&path);
        if config.fsync {
            rpc.reply(&request, &BlobResponse::Stored).await;
        }
    });
}
