//! The blobstore node: durable checkpoint storage ("filesystem" checkpoint storage). A put is
//! written and synced before it is acknowledged, so an acknowledged file survives a kill.

use crate::runtime::rpc::serve;
use crate::services::disk::Disk;
use crate::services::messages::{BlobRequest, BlobResponse};

/// Answers one request against `disk`.
pub fn handle(disk: &Disk, request: BlobRequest) -> BlobResponse {
    match request {
        BlobRequest::Put { path, bytes } => {
            disk.write(&path, bytes);
            disk.sync();
            BlobResponse::Stored
        }
        BlobRequest::Get { path } => BlobResponse::Data(disk.read(&path)),
        BlobRequest::DeleteDirectory { directory } => {
            disk.delete_directory(&directory);
            BlobResponse::Stored
        }
    }
}

/// The blobstore's main: serves requests until the node is killed.
pub async fn run_blobstore(disk: Disk) {
    serve(|request| handle(&disk, request), BlobResponse::Error).await;
}
