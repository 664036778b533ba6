//! The two-phase-commit sink (Flink's `TwoPhaseCommitSinkFunction`, as its Kafka sink runs
//! it): records of one checkpoint go into one broker transaction; the barrier pre-commits it
//! (its identity goes into the snapshot) and the next transaction begins with the next
//! record; the completion notice commits it. Recovery commits what the restored checkpoint
//! pre-committed, resuming each transaction by its stored identity, then aborts every
//! transaction opened after that checkpoint by initializing its id again, which also fences
//! a zombie still writing with it (Flink's `TransactionAborter`).

use crate::connectors::pending_commits::PendingCommits;
use crate::connectors::sink_io::SinkIo;
use crate::ids::CheckpointId;
use crate::limits::LINGERING_TRANSACTIONS_MAX;
use crate::runtime::hooks::SinkAction;
use crate::services::messages::{BrokerRequest, BrokerResponse};
use crate::services::transaction_table::{ProducerIdentity, TransactionError};
use crate::state::snapshot::{PendingContent, SinkStateSnapshot};
use crate::time::Duration;

/// A transaction the sink writes into or pre-committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// `prefix-sequence`.
    pub transactional_id: String,
    /// The producer running it.
    pub identity: ProducerIdentity,
    /// Records appended.
    pub records: u64,
}

/// One subtask's two-phase-commit sink.
pub struct TwoPhaseCommitSink {
    timeout: Duration,
    next_transaction: u64,
    current: Option<Transaction>,
    pending: PendingCommits<Transaction>,
}

impl TwoPhaseCommitSink {
    /// A sink whose producer asks for `transaction.timeout.ms` = `timeout`.
    pub fn new(timeout: Duration) -> TwoPhaseCommitSink {
        TwoPhaseCommitSink {
            timeout,
            next_transaction: 0,
            current: None,
            pending: PendingCommits::default(),
        }
    }

    fn transactional_id(io: &SinkIo, sequence: u64) -> String {
        format!("{}-{sequence}", io.prefix)
    }

    /// Appends into the current transaction, beginning one if none is open.
    pub async fn write(&mut self, io: &SinkIo, records: Vec<Vec<u8>>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            let transactional_id = Self::transactional_id(io, self.next_transaction);
            let (identity, _) = init_producer(io, &transactional_id, self.timeout).await?;
            self.current = Some(Transaction {
                transactional_id,
                identity,
                records: 0,
            });
        }
        let current = self.current.as_mut().expect("just opened");
        let count = records.len() as u64;
        let request = BrokerRequest::AppendTransactional {
            transactional_id: current.transactional_id.clone(),
            identity: current.identity,
            topic: io.topic.clone(),
            partition: io.partition,
            records,
        };
        // Not retried: the broker would append a retried batch twice.
        match io.broker(&request, false).await? {
            BrokerResponse::Ok => {
                current.records += count;
                Ok(())
            }
            BrokerResponse::Transaction(error) => Err(format!("{}: {error}", io.label)),
            other => Err(format!("{}: broker refused append: {other:?}", io.label)),
        }
    }

    /// The barrier passed: the open transaction (if it holds records) is pre-committed for
    /// `checkpoint_id`; the next record opens the next one.
    pub fn pre_commit(&mut self, io: &SinkIo, checkpoint_id: CheckpointId) -> SinkStateSnapshot {
        if let Some(transaction) = self.current.take() {
            assert!(transaction.records > 0, "a transaction opens with a record");
            self.pending.pre_commit(checkpoint_id, transaction);
            self.next_transaction += 1;
        }
        self.pending
            .to_snapshot(io.subtask.subtask_index, self.next_transaction, |t| {
                PendingContent::Transaction {
                    transactional_id: t.transactional_id.clone(),
                    identity: t.identity,
                    records: t.records,
                }
            })
    }

    /// Commits every transaction pre-committed at `completed` or before, oldest first.
    pub async fn commit_up_to(
        &mut self,
        io: &SinkIo,
        completed: CheckpointId,
    ) -> Result<(), String> {
        while let Some((checkpoint_id, transaction)) = self.pending.next_due(completed) {
            let transaction = transaction.clone();
            commit(io, checkpoint_id, &transaction).await?;
            self.pending.committed(checkpoint_id);
        }
        Ok(())
    }

    /// Commits the restored checkpoint's transactions, then aborts those opened after it.
    pub async fn recover(
        &mut self,
        io: &SinkIo,
        restored: Option<SinkStateSnapshot>,
    ) -> Result<(), String> {
        if let Some(state) = restored {
            self.next_transaction = state.next_transaction;
            for pending in state.pending {
                let PendingContent::Transaction {
                    transactional_id,
                    identity,
                    records,
                } = pending.content
                else {
                    return Err(format!(
                        "{}: the restored state holds a write-ahead batch, not a transaction",
                        io.label
                    ));
                };
                let transaction = Transaction {
                    transactional_id,
                    identity,
                    records,
                };
                commit(io, CheckpointId(pending.checkpoint_id), &transaction).await?;
            }
        }
        self.abort_lingering(io).await
    }

    /// Initializes every id from `next_transaction` on until one the broker has never seen:
    /// each initialization aborts what an earlier attempt left open under that id.
    async fn abort_lingering(&self, io: &SinkIo) -> Result<(), String> {
        let first = self.next_transaction;
        for sequence in first..first + LINGERING_TRANSACTIONS_MAX {
            let transactional_id = Self::transactional_id(io, sequence);
            let (_, fresh) = init_producer(io, &transactional_id, self.timeout).await?;
            if fresh {
                if sequence > first {
                    io.report(SinkAction::FencedLingering {
                        count: sequence - first,
                        first: Self::transactional_id(io, first),
                    });
                }
                return Ok(());
            }
        }
        Err(format!(
            "{}: more than {LINGERING_TRANSACTIONS_MAX} lingering transactional ids",
            io.label
        ))
    }

    /// Whether pre-committed transactions wait for a notice.
    pub fn awaits_commit(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Records in the open transaction.
    pub fn uncovered_records(&self) -> u64 {
        self.current.as_ref().map_or(0, |t| t.records)
    }
}

async fn init_producer(
    io: &SinkIo,
    transactional_id: &str,
    timeout: Duration,
) -> Result<(ProducerIdentity, bool), String> {
    let request = BrokerRequest::InitProducer {
        transactional_id: transactional_id.to_string(),
        timeout,
    };
    // Retried: initializing twice only bumps the epoch once more.
    match io.broker(&request, true).await? {
        BrokerResponse::Initialized(init) => Ok((init.identity, init.fresh)),
        other => Err(format!(
            "{}: broker answered InitProducer with {other:?}",
            io.label
        )),
    }
}

/// Commits one pre-committed transaction. A transaction the broker aborted (its timeout ran
/// out, or a producer initialized its id again) cannot be committed any more: its records
/// are lost, which is traced and not retried (Flink logs it and goes on, or every recovery
/// would fail again).
async fn commit(
    io: &SinkIo,
    checkpoint_id: CheckpointId,
    transaction: &Transaction,
) -> Result<(), String> {
    io.before_commit(checkpoint_id).await;
    let request = BrokerRequest::EndTransaction {
        transactional_id: transaction.transactional_id.clone(),
        identity: transaction.identity,
        commit: true,
    };
    // Retried: committing a committed transaction again succeeds.
    match io.broker(&request, true).await? {
        BrokerResponse::Ok => {
            io.report(SinkAction::Committed {
                transactional_id: transaction.transactional_id.clone(),
                records: transaction.records,
                checkpoint_id,
            });
            Ok(())
        }
        BrokerResponse::Transaction(error @ TransactionError::Aborted { .. }) => {
            io.report(SinkAction::CommitLost {
                checkpoint_id,
                error: error.to_string(),
                records: transaction.records,
            });
            Ok(())
        }
        BrokerResponse::Transaction(error) => Err(format!(
            "{}: commit of checkpoint {checkpoint_id} failed: {error}",
            io.label
        )),
        other => Err(format!(
            "{}: broker answered a commit with {other:?}",
            io.label
        )),
    }
}
