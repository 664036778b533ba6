//! The blobstore node: durable checkpoint storage ("filesystem" checkpoint storage). A put is
//! written and synced before it is acknowledged, so an acknowledged file survives a kill.

use crate::runtime::messages::{BlobRequest, BlobResponse};
use crate::runtime::rpc::Rpc;
use crate::sim::disk::Disk;

/// Answers one request against `disk`.
pub fn handle(disk: &Disk, request: BlobRequest) -> BlobResponse {
    match request {
        BlobRequest::Put { path, bytes } => {
            disk.write(&path, bytes);
            disk.sync();
            BlobResponse::Stored
        }
        BlobRequest::Get { path } => BlobResponse::Data(disk.read(&path)),
    }
}

/// The blobstore's main: serves requests until the node is killed.
pub async fn run_blobstore(disk: Disk) {
    let rpc = Rpc::bind()
        .await
        .expect("the control port is free on a fresh node");
    loop {
        let Ok(request) = rpc.recv_request().await else {
            continue;
        };
        let response = match crate::codec::decode_message::<BlobRequest>(&request.body) {
            Ok(body) => handle(&disk, body),
            Err(error) => BlobResponse::Error(format!("undecodable request: {error}")),
        };
        rpc.reply(&request, &response).await;
    }
}
