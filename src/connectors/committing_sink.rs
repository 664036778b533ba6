//! The skeleton every committing sink shares (Flink's `TwoPhaseCommitSinkFunction` and
//! `GenericWriteAheadSink` have the same shape), sans-IO: work pre-committed per checkpoint
//! (`PendingCommits`), committed oldest first once a checkpoint at least as new completed,
//! and recovered from a snapshot: a kind's preparation (a write-ahead sink fences its
//! committer record), the restored work committed, a kind's clean-up (a two-phase-commit sink
//! aborts the transactions opened after the checkpoint).
//!
//! A kind says how one piece of work commits as an operation: a short exchange of broker and
//! key-value requests. The skeleton runs one operation at a time; the driver (`SinkIo::drive`)
//! carries out each request it polls and feeds back the response, and reports the actions.

use crate::connectors::connector_error::ConnectorError;
use crate::connectors::pending_commits::PendingCommits;
use crate::ids::CheckpointId;
use crate::runtime::hooks::SinkAction;
use crate::services::kv_store::{KvRequest, KvResponse};
use crate::services::messages::{BrokerRequest, BrokerResponse};
use crate::state::snapshot::{PendingContent, SinkStateSnapshot};
use std::collections::VecDeque;

/// Who a sink subtask is, as its requests and errors name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkIdentity {
    /// `uid#index`, for errors and traces.
    pub label: String,
    /// `job-uid-index`: transactional ids and committer keys start with it.
    pub prefix: String,
    /// The output topic.
    pub topic: String,
    /// The partition it writes.
    pub partition: u32,
    /// The job attempt it runs in (fences zombies).
    pub attempt: u32,
}

/// A request a committing sink needs carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkRequest {
    /// Call the broker; `idempotent` calls may be retried.
    Broker {
        /// The request.
        request: BrokerRequest,
        /// Whether a retry after a lost reply is harmless.
        idempotent: bool,
    },
    /// Call the key-value store.
    Kv(KvRequest),
    /// The point between writing work and recording its commit, where a `before-commit`
    /// fault strikes.
    BeforeCommit(CheckpointId),
}

/// The answer to a `SinkRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkResponse {
    /// The broker's answer.
    Broker(BrokerResponse),
    /// The key-value store's answer.
    Kv(KvResponse),
    /// `BeforeCommit` passed.
    Passed,
}

/// One exchange of requests that commits or prepares something.
pub trait CommitOperation {
    /// The next request; `None` once the operation is done.
    fn poll_request(&mut self) -> Option<SinkRequest>;
    /// The response to the request just polled: what to report, or why the sink fails.
    fn on_response(&mut self, response: SinkResponse)
        -> Result<Option<SinkAction>, ConnectorError>;
}

/// How one kind of committing sink stores and commits its work.
pub trait CommittingKind {
    /// What one checkpoint pre-commits.
    type Work: Clone;
    /// Its operations.
    type Operation: CommitOperation;
    /// The work as the snapshot stores it.
    fn content(work: &Self::Work) -> PendingContent;
    /// What the work is called in errors (`a transaction`).
    const WORK: &'static str;
    /// The work from the snapshot; `None` when it holds another kind's.
    fn work(content: PendingContent) -> Option<Self::Work>;
    /// Commits `work`, pre-committed at `checkpoint_id`.
    fn commit(
        &self,
        sink: &SinkIdentity,
        checkpoint_id: CheckpointId,
        work: Self::Work,
    ) -> Self::Operation;
    /// What a recovery does before it commits the restored work.
    fn prepare_recovery(&self, sink: &SinkIdentity) -> Option<Self::Operation>;
    /// What a recovery does after: `next_transaction` is the restored sequence number;
    /// `taken_over` are the prefixes of other subtasks whose state this one took over.
    fn finish_recovery(
        &self,
        sink: &SinkIdentity,
        next_transaction: u64,
        taken_over: &[String],
    ) -> Option<Self::Operation>;
    /// Whether the kind can commit and clear up after another subtask's state (a rescaled
    /// or changed job); a kind that cannot refuses such a restore.
    const TAKES_OVER: bool;
}

struct Running<O> {
    // The pending checkpoint it commits; `None` for recovery work.
    commits: Option<CheckpointId>,
    operation: O,
}

/// A committing sink subtask's pre-committed work and the operation under way.
pub struct CommittingSink<K: CommittingKind> {
    kind: K,
    sink: SinkIdentity,
    pending: PendingCommits<K::Work>,
    completed: Option<CheckpointId>,
    recovery: VecDeque<K::Operation>,
    running: Option<Running<K::Operation>>,
    actions: VecDeque<SinkAction>,
}

impl<K: CommittingKind> CommittingSink<K> {
    /// A sink of `kind` with nothing pre-committed.
    pub fn new(kind: K, sink: SinkIdentity) -> Self {
        CommittingSink {
            kind,
            sink,
            pending: PendingCommits::default(),
            completed: None,
            recovery: VecDeque::new(),
            running: None,
            actions: VecDeque::new(),
        }
    }

    /// The sink's kind.
    pub fn kind(&self) -> &K {
        &self.kind
    }

    /// Who the sink is.
    pub fn identity(&self) -> &SinkIdentity {
        &self.sink
    }

    /// The barrier of `checkpoint_id` passed with `work` (if the checkpoint wrote any): the
    /// snapshot of everything pre-committed and not committed yet.
    pub fn pre_commit(
        &mut self,
        checkpoint_id: CheckpointId,
        work: Option<K::Work>,
        subtask_index: u32,
        next_transaction: u64,
    ) -> SinkStateSnapshot {
        if let Some(work) = work {
            self.pending.pre_commit(checkpoint_id, work);
        }
        let mut snapshot = self
            .pending
            .to_snapshot(subtask_index, next_transaction, K::content);
        snapshot.prefix = self.sink.prefix.clone();
        snapshot
    }

    /// Checkpoint `completed` completed: everything pre-committed at it or before commits.
    pub fn commit_up_to(&mut self, completed: CheckpointId) {
        self.completed = self.completed.max(Some(completed));
    }

    /// Recovers from `restored` (a completed checkpoint, so its work commits), before any
    /// record is written. Returns the restored transaction sequence number.
    pub fn recover(&mut self, restored: Vec<SinkStateSnapshot>) -> Result<u64, ConnectorError> {
        assert!(
            self.running.is_none() && self.pending.is_empty(),
            "recovery comes first"
        );
        let own = |state: &SinkStateSnapshot| state.prefix == self.sink.prefix;
        let next_transaction = restored
            .iter()
            .find(|state| own(state))
            .map_or(0, |state| state.next_transaction);
        let taken_over: Vec<String> = restored
            .iter()
            .filter(|state| !own(state))
            .map(|state| state.prefix.clone())
            .collect();
        if let Some(prefix) = taken_over.first().filter(|_| !K::TAKES_OVER) {
            return Err(ConnectorError::StateOfAnotherSubtask {
                label: self.sink.label.clone(),
                prefix: prefix.clone(),
            });
        }
        self.recovery.extend(self.kind.prepare_recovery(&self.sink));
        for pending in restored.into_iter().flat_map(|s| s.pending) {
            let found = match pending.content {
                PendingContent::Transaction { .. } => "a transaction",
                PendingContent::Batch { .. } => "a write-ahead batch",
            };
            let work =
                K::work(pending.content).ok_or_else(|| ConnectorError::WrongRestoredState {
                    label: self.sink.label.clone(),
                    found,
                    expected: K::WORK,
                })?;
            let checkpoint_id = CheckpointId(pending.checkpoint_id);
            let operation = self.kind.commit(&self.sink, checkpoint_id, work);
            self.recovery.push_back(operation);
        }
        let finish = self
            .kind
            .finish_recovery(&self.sink, next_transaction, &taken_over);
        self.recovery.extend(finish);
        Ok(next_transaction)
    }

    /// The next request to carry out, if any work is due.
    pub fn poll_request(&mut self) -> Option<SinkRequest> {
        loop {
            if self.running.is_none() {
                self.running = Some(self.next_operation()?);
            }
            let running = self.running.as_mut().expect("set above");
            if let Some(request) = running.operation.poll_request() {
                return Some(request);
            }
            let done = self.running.take().expect("running");
            if let Some(checkpoint_id) = done.commits {
                self.pending.committed(checkpoint_id);
            }
        }
    }

    fn next_operation(&mut self) -> Option<Running<K::Operation>> {
        if let Some(operation) = self.recovery.pop_front() {
            return Some(Running {
                commits: None,
                operation,
            });
        }
        let (checkpoint_id, work) = self.pending.next_due(self.completed?)?;
        let operation = self.kind.commit(&self.sink, checkpoint_id, work.clone());
        Some(Running {
            commits: Some(checkpoint_id),
            operation,
        })
    }

    /// The response to the request just polled.
    pub fn on_response(&mut self, response: SinkResponse) -> Result<(), ConnectorError> {
        let running = self
            .running
            .as_mut()
            .expect("a response answers a polled request");
        let action = running.operation.on_response(response)?;
        self.actions.extend(action);
        Ok(())
    }

    /// The next thing the sink did that the trace reports.
    pub fn poll_action(&mut self) -> Option<SinkAction> {
        self.actions.pop_front()
    }

    /// Whether pre-committed work waits for a completion notice.
    pub fn awaits_commit(&self) -> bool {
        !self.pending.is_empty()
    }
}
