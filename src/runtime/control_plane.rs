//! Control traffic between the job manager and the task managers (Flink's RPC gateways over
//! Pekko): one-way messages on a TCP connection per destination, so they arrive in order and
//! a clogged link stalls them rather than dropping them. A message to a dead node is lost; the
//! sender reconnects once when a connection it held turned out dead (the peer restarted).

use crate::limits::CONTROL_MAILBOX_CAPACITY;
use crate::runtime::frame_io::{read_frame, write_frame};
use crate::runtime::messages::ControlMessage;
use futures::channel::mpsc::{channel, Receiver, Sender};
use futures::lock::Mutex;
use futures::SinkExt;
use madsim::net::{TcpListener, TcpStream};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::WriteHalf;

/// Port every node's control listener binds.
pub const CONTROL_PORT: u16 = 7002;

/// A node's sending side of the control plane; cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    connections: Arc<Mutex<BTreeMap<SocketAddr, WriteHalf<TcpStream>>>>,
}

impl ControlPlane {
    /// Binds this node's control listener; received messages arrive on the returned channel.
    pub async fn listen() -> std::io::Result<(ControlPlane, Receiver<ControlMessage>)> {
        let listener = TcpListener::bind(("0.0.0.0", CONTROL_PORT)).await?;
        let (sender, receiver) = channel(CONTROL_MAILBOX_CAPACITY);
        madsim::task::spawn(accept_loop(listener, sender));
        Ok((
            ControlPlane {
                connections: Arc::new(Mutex::new(BTreeMap::new())),
            },
            receiver,
        ))
    }

    /// Sends `message` to the node whose control listener is at `target`.
    pub async fn send(&self, target: SocketAddr, message: &ControlMessage) {
        // Held across the write so that messages to one target keep their order.
        let mut connections = self.connections.lock().await;
        for _ in 0..2 {
            if let Entry::Vacant(vacant) = connections.entry(target) {
                let Ok(stream) = TcpStream::connect(target).await else {
                    return; // The node is down or the link clogged: the message is lost.
                };
                vacant.insert(tokio::io::split(stream).1);
            }
            let writer = connections.get_mut(&target).expect("inserted above");
            if write_frame(writer, message).await.is_ok() {
                return;
            }
            connections.remove(&target); // Dead: the peer restarted or was killed.
        }
    }
}

async fn accept_loop(listener: TcpListener, sender: Sender<ControlMessage>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        madsim::task::spawn(read_loop(stream, sender.clone()));
    }
}

async fn read_loop(stream: TcpStream, mut sender: Sender<ControlMessage>) {
    let (mut reader, _writer) = tokio::io::split(stream);
    // An undecodable frame ends the connection: the stream cannot be resynchronised.
    while let Ok(Some(message)) = read_frame::<_, ControlMessage>(&mut reader).await {
        if sender.send(message).await.is_err() {
            return;
        }
    }
}
