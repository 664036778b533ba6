//! Request/response calls over madsim endpoints (datagrams), with a timeout: how tasks reach
//! the broker and the blobstore. A datagram can be lost (a clogged link drops it), so idempotent
//! calls are retried and the others fail the caller.

use crate::codec::{decode_message, encode_message};
use crate::limits::RPC_ATTEMPTS_MAX;
use crate::runtime::sim_time;
use crate::time::Duration;
use madsim::net::Endpoint;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;

/// Port of every node's request endpoint.
pub const REQUEST_PORT: u16 = 7000;
/// Port of a task manager's data-plane listener.
pub const DATA_PORT: u16 = 7001;
/// Tag of requests; replies go to a tag the caller picks at random.
const TAG_REQUEST: u64 = 2;
/// Largest datagram accepted.
const MESSAGE_SIZE_BYTES_MAX: usize = crate::limits::FRAME_SIZE_BYTES_MAX;

#[derive(Serialize, Deserialize)]
struct RequestEnvelope {
    reply_tag: u64,
    // One slice on the wire, not a sequence of bytes: a fetch reply carries hundreds of records.
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

/// Why a call got no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The endpoint failed while waiting for the answer.
    #[error("rpc to {target} failed: {error}")]
    Failed {
        /// Who was called.
        target: SocketAddr,
        /// What the endpoint said.
        error: String,
    },
    /// No answer came (a clogged link drops datagrams, a dead node answers nothing).
    #[error("rpc to {target} timed out after {attempts} attempt(s) of {timeout}")]
    TimedOut {
        /// Who was called.
        target: SocketAddr,
        /// Calls made.
        attempts: u32,
        /// The wait for each.
        timeout: Duration,
    },
    /// The answer is larger than a message may be.
    #[error("message of {size_bytes} bytes exceeds {MESSAGE_SIZE_BYTES_MAX}")]
    TooLarge {
        /// Its size.
        size_bytes: usize,
    },
    /// The answer does not decode.
    #[error("undecodable message: {error}")]
    Undecodable {
        /// Why.
        error: String,
    },
}

/// A node's request endpoint.
#[derive(Clone)]
pub struct Rpc {
    endpoint: Endpoint,
}

/// A request received by a server, with what is needed to answer it.
pub struct IncomingRequest {
    /// Who asked.
    pub from: SocketAddr,
    reply_tag: u64,
    /// The encoded request.
    pub body: Vec<u8>,
}

impl Rpc {
    /// Binds the request endpoint of the current node.
    pub async fn bind() -> io::Result<Rpc> {
        let endpoint = Endpoint::bind(("0.0.0.0", REQUEST_PORT)).await?;
        Ok(Rpc { endpoint })
    }

    /// Receives the next request.
    pub async fn recv_request(&self) -> io::Result<IncomingRequest> {
        let (payload, from) = self.endpoint.recv_from_raw(TAG_REQUEST).await?;
        let bytes = payload_bytes(payload);
        let envelope: RequestEnvelope =
            decode_message(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(IncomingRequest {
            from,
            reply_tag: envelope.reply_tag,
            body: envelope.body,
        })
    }

    /// Answers a request.
    pub async fn reply<R: Serialize>(&self, request: &IncomingRequest, response: &R) {
        let bytes = encode_message(response);
        let _ = self
            .endpoint
            .send_to(request.from, request.reply_tag, &bytes)
            .await;
    }

    /// Sends `request` and waits up to `timeout` for the reply, trying up to
    /// `RPC_ATTEMPTS_MAX` times when `idempotent`.
    pub async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        target: SocketAddr,
        request: &Q,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<R, RpcError> {
        let attempts = if idempotent { RPC_ATTEMPTS_MAX } else { 1 };
        let body = encode_message(request);
        for _ in 0..attempts {
            let reply_tag: u64 = madsim::rand::random::<u64>() | (1 << 63);
            let envelope = encode_message(&RequestEnvelope {
                reply_tag,
                body: body.clone(),
            });
            if self
                .endpoint
                .send_to(target, TAG_REQUEST, &envelope)
                .await
                .is_err()
            {
                sim_time::sleep(timeout).await;
                continue;
            }
            match madsim::time::timeout(timeout.to_std(), self.endpoint.recv_from_raw(reply_tag))
                .await
            {
                Ok(Ok((payload, _))) => return decode_payload(payload),
                Ok(Err(error)) => {
                    let error = error.to_string();
                    return Err(RpcError::Failed { target, error });
                }
                Err(_) => continue,
            }
        }
        Err(RpcError::TimedOut {
            target,
            attempts,
            timeout,
        })
    }
}

/// Serves requests of type `Q` until the node is killed: `handle` answers each; a request that
/// does not decode is answered with `undecodable(reason)`.
pub async fn serve<Q: DeserializeOwned, R: Serialize>(
    mut handle: impl FnMut(Q) -> R,
    undecodable: impl Fn(String) -> R,
) {
    let rpc = Rpc::bind()
        .await
        .expect("the control port is free on a fresh node");
    loop {
        let Ok(request) = rpc.recv_request().await else {
            continue;
        };
        let response = match decode_message::<Q>(&request.body) {
            Ok(body) => handle(body),
            Err(error) => undecodable(format!("undecodable request: {error}")),
        };
        rpc.reply(&request, &response).await;
    }
}

fn payload_bytes(payload: madsim::net::Payload) -> Vec<u8> {
    *payload
        .downcast::<Vec<u8>>()
        .expect("endpoints only carry byte vectors")
}

fn decode_payload<M: DeserializeOwned>(payload: madsim::net::Payload) -> Result<M, RpcError> {
    let bytes = payload_bytes(payload);
    if bytes.len() > MESSAGE_SIZE_BYTES_MAX {
        return Err(RpcError::TooLarge {
            size_bytes: bytes.len(),
        });
    }
    decode_message(&bytes).map_err(|e| RpcError::Undecodable {
        error: e.to_string(),
    })
}
