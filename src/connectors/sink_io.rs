//! What a sink subtask needs to reach the outside world (the broker, the key-value store) and
//! to report what it did, shared by every kind of sink.

use crate::connectors::committing_sink::{
    CommittingKind, CommittingSink, SinkIdentity, SinkRequest, SinkResponse,
};
use crate::connectors::connector_error::ConnectorError;
use crate::ids::{CheckpointId, SubtaskId};
use crate::runtime::hooks::{EngineEvent, Hooks, SinkAction};
use crate::runtime::rpc::Rpc;
use crate::runtime::sim_time;
use crate::services::kv_store::{KvRequest, KvResponse};
use crate::services::messages::{BrokerRequest, BrokerResponse};
use crate::services::record_batch::RecordBatch;
use crate::state::snapshot::SinkStateSnapshot;
use crate::time::Duration;
use std::net::SocketAddr;

/// What a sink needs to reach the outside world, and to name itself.
#[derive(Clone)]
pub struct SinkIo {
    /// The task manager's request endpoint.
    pub rpc: Rpc,
    /// The broker.
    pub broker: SocketAddr,
    /// The key-value store.
    pub kv: SocketAddr,
    /// Wait for an answer.
    pub timeout: Duration,
    /// The sink subtask.
    pub subtask: SubtaskId,
    /// How users name it: `sink#0`.
    pub label: String,
    /// The job attempt it runs in: its generation where writers fence each other.
    pub attempt: u32,
    /// Prefix of its transactional ids and committer keys: `job-uid-index`.
    pub prefix: String,
    /// The output topic.
    pub topic: String,
    /// The output partition (the subtask index).
    pub partition: u32,
    /// Where the sink reports events and asks for faults.
    pub hooks: Hooks,
    /// The node, for traces.
    pub node_name: String,
}

impl SinkIo {
    /// Calls the broker; a refusal becomes an error naming the sink.
    pub async fn broker(
        &self,
        request: &BrokerRequest,
        idempotent: bool,
    ) -> Result<BrokerResponse, ConnectorError> {
        self.rpc
            .call(self.broker, request, self.timeout, idempotent)
            .await
            .map_err(|source| ConnectorError::Call {
                label: self.label.clone(),
                service: "broker",
                source,
            })
    }

    /// Calls the key-value store (every call is idempotent).
    pub async fn kv(&self, request: &KvRequest) -> Result<KvResponse, ConnectorError> {
        let label = self.label.clone();
        match self.rpc.call(self.kv, request, self.timeout, true).await {
            Ok(KvResponse::Error(error)) => Err(ConnectorError::KvRefused { label, error }),
            Ok(response) => Ok(response),
            Err(source) => Err(ConnectorError::Call {
                label,
                service: "kv store",
                source,
            }),
        }
    }

    /// Appends records outside any transaction. Not retried: a retry after a lost reply would
    /// write twice on its own.
    pub async fn append(
        &self,
        records: RecordBatch,
        batch: Option<String>,
    ) -> Result<(), ConnectorError> {
        let request = BrokerRequest::Append {
            topic: self.topic.clone(),
            partition: self.partition,
            records,
            batch,
        };
        match self.broker(&request, false).await? {
            BrokerResponse::Ok => Ok(()),
            other => Err(ConnectorError::Refused {
                label: self.label.clone(),
                request: "append",
                response: format!("{other:?}"),
            }),
        }
    }

    /// Who the sink is, as its requests name it.
    pub fn identity(&self) -> SinkIdentity {
        SinkIdentity {
            label: self.label.clone(),
            prefix: self.prefix.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            attempt: self.attempt,
        }
    }

    /// Commits everything `sink` pre-committed at `completed` or before, oldest first.
    pub async fn commit_up_to<K: CommittingKind>(
        &self,
        sink: &mut CommittingSink<K>,
        completed: CheckpointId,
    ) -> Result<(), ConnectorError> {
        sink.commit_up_to(completed);
        self.drive(sink).await
    }

    /// Recovers `sink` from `restored` before any record is written; returns the restored
    /// transaction sequence number.
    pub async fn recover<K: CommittingKind>(
        &self,
        sink: &mut CommittingSink<K>,
        restored: Vec<SinkStateSnapshot>,
    ) -> Result<u64, ConnectorError> {
        let next_transaction = sink.recover(restored)?;
        self.drive(sink).await?;
        Ok(next_transaction)
    }

    /// Carries out what a committing sink asks, one request at a time, and reports what it
    /// did, until it has nothing more due.
    pub async fn drive<K: CommittingKind>(
        &self,
        sink: &mut CommittingSink<K>,
    ) -> Result<(), ConnectorError> {
        while let Some(request) = sink.poll_request() {
            let response = match request {
                SinkRequest::Broker {
                    request,
                    idempotent,
                } => SinkResponse::Broker(self.broker(&request, idempotent).await?),
                SinkRequest::Kv(request) => SinkResponse::Kv(self.kv(&request).await?),
                SinkRequest::BeforeCommit(checkpoint_id) => {
                    self.before_commit(checkpoint_id).await;
                    SinkResponse::Passed
                }
            };
            sink.on_response(response)?;
            while let Some(action) = sink.poll_action() {
                self.report(action);
            }
        }
        Ok(())
    }

    /// Reports what this sink did outside the job.
    pub fn report(&self, action: SinkAction) {
        let event = EngineEvent::Sink {
            label: self.label.clone(),
            action,
        };
        self.hooks.event(&self.node_name, event);
    }

    /// Fires a `before-commit` fault trigger if one is armed here, and yields so the injector
    /// acts before the commit is recorded.
    pub async fn before_commit(&self, checkpoint_id: CheckpointId) {
        if self.hooks.on_before_commit(self.subtask, checkpoint_id) {
            sim_time::yield_now().await;
        }
    }
}
