//! The two-phase-commit sink (Flink's `TwoPhaseCommitSinkFunction`, as its Kafka sink runs
//! it): records of one checkpoint go into one broker transaction; the barrier pre-commits it
//! (its identity goes into the snapshot) and the next transaction begins with the next
//! record; the completion notice commits it. Recovery commits what the restored checkpoint
//! pre-committed, resuming each transaction by its stored identity, then lists the
//! transactions still open under the subtask's ids and aborts each by initializing its id
//! again, which also fences a zombie still writing with it (the Kafka connector's lingering
//! transaction abort, found by `ListTransactions` as its pooling naming strategy does).
//!
//! Transactional ids are `<job>-<uid>-<subtask>-a<attempt>-<sequence>`: an attempt never
//! initializes an id another attempt used, so a zombie of a failed attempt, however late it
//! wakes, can never abort a transaction of the attempt that replaced it (with ids shared
//! across attempts, a zombie initializing an id again aborts the new attempt's pre-committed
//! transaction of that id, and a completed checkpoint's records are lost). What a zombie
//! opens after the recovery listed the open transactions hangs until the broker's timeout.

use crate::connectors::committing_sink::{
    CommitOperation, CommittingKind, CommittingSink, SinkIdentity, SinkRequest, SinkResponse,
};
use crate::connectors::connector_error::ConnectorError;
use crate::connectors::sink_io::SinkIo;
use crate::ids::CheckpointId;
use crate::limits::LINGERING_TRANSACTIONS_MAX;
use crate::runtime::hooks::SinkAction;
use crate::services::messages::{BrokerRequest, BrokerResponse};
use crate::services::record_batch::RecordBatch;
use crate::services::transaction_table::{ProducerIdentity, TransactionError};
use crate::state::snapshot::{PendingContent, SinkStateSnapshot};
use crate::time::Duration;
use std::collections::VecDeque;

/// A transaction the sink writes into or pre-committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// `prefix-a<attempt>-<sequence>`.
    pub transactional_id: String,
    /// The producer running it.
    pub identity: ProducerIdentity,
    /// Records appended.
    pub records: u64,
}

/// One subtask's two-phase-commit sink.
pub struct TwoPhaseCommitSink {
    next_transaction: u64,
    current: Option<Transaction>,
    committing: CommittingSink<TwoPhaseCommit>,
}

/// The two-phase-commit kind of committing sink: its work is a broker transaction.
pub struct TwoPhaseCommit {
    /// `transaction.timeout.ms` asked of the broker.
    pub timeout: Duration,
}

fn transactional_id(sink: &SinkIdentity, sequence: u64) -> String {
    format!("{}{}-{sequence}", ids_prefix(sink), sink.attempt)
}

/// What every transactional id of the sink subtask starts with, whatever its attempt.
fn ids_prefix(sink: &SinkIdentity) -> String {
    format!("{}-a", sink.prefix)
}

impl TwoPhaseCommitSink {
    /// A sink whose producer asks for `transaction.timeout.ms` = `timeout`.
    pub fn new(timeout: Duration, sink: SinkIdentity) -> TwoPhaseCommitSink {
        TwoPhaseCommitSink {
            next_transaction: 0,
            current: None,
            committing: CommittingSink::new(TwoPhaseCommit { timeout }, sink),
        }
    }

    /// Appends into the current transaction, beginning one if none is open.
    pub async fn write(&mut self, io: &SinkIo, records: RecordBatch) -> Result<(), ConnectorError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            let sink = self.committing.identity();
            let transactional_id = transactional_id(sink, self.next_transaction);
            let request = self.committing.kind().init_producer(&transactional_id);
            let identity = match io.broker(&request, true).await? {
                BrokerResponse::Initialized(init) => init.identity,
                other => return Err(unexpected(&io.label, "InitProducer", other)),
            };
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
            BrokerResponse::Transaction(error) => Err(ConnectorError::Transaction {
                label: io.label.clone(),
                error,
            }),
            other => Err(ConnectorError::Refused {
                label: io.label.clone(),
                request: "append",
                response: format!("{other:?}"),
            }),
        }
    }

    /// The barrier passed: the open transaction (if it holds records) is pre-committed for
    /// `checkpoint_id`; the next record opens the next one.
    pub fn pre_commit(
        &mut self,
        subtask_index: u32,
        checkpoint_id: CheckpointId,
    ) -> SinkStateSnapshot {
        let transaction = self.current.take();
        if let Some(transaction) = &transaction {
            assert!(transaction.records > 0, "a transaction opens with a record");
            self.next_transaction += 1;
        }
        self.committing.pre_commit(
            checkpoint_id,
            transaction,
            subtask_index,
            self.next_transaction,
        )
    }

    /// Its pre-committed transactions.
    pub fn committing(&mut self) -> &mut CommittingSink<TwoPhaseCommit> {
        &mut self.committing
    }

    /// Commits the restored checkpoint's transactions, then aborts those opened after it.
    pub async fn recover(
        &mut self,
        io: &SinkIo,
        restored: Vec<SinkStateSnapshot>,
    ) -> Result<(), ConnectorError> {
        self.next_transaction = io.recover(&mut self.committing, restored).await?;
        Ok(())
    }

    /// Whether pre-committed transactions wait for a notice.
    pub fn awaits_commit(&self) -> bool {
        self.committing.awaits_commit()
    }

    /// Records in the open transaction.
    pub fn uncovered_records(&self) -> u64 {
        self.current.as_ref().map_or(0, |t| t.records)
    }
}

impl TwoPhaseCommit {
    /// Initializing `transactional_id`: a fresh producer epoch, which aborts whatever an
    /// earlier producer left open under that id. Retried: initializing twice only bumps the
    /// epoch once more.
    fn init_producer(&self, transactional_id: &str) -> BrokerRequest {
        BrokerRequest::InitProducer {
            transactional_id: transactional_id.to_string(),
            timeout: self.timeout,
        }
    }
}

impl CommittingKind for TwoPhaseCommit {
    type Work = Transaction;
    type Operation = TwoPhaseOperation;

    fn content(transaction: &Transaction) -> PendingContent {
        PendingContent::Transaction {
            transactional_id: transaction.transactional_id.clone(),
            identity: transaction.identity,
            records: transaction.records,
        }
    }

    const WORK: &'static str = "a transaction";

    fn work(content: PendingContent) -> Option<Transaction> {
        match content {
            PendingContent::Transaction {
                transactional_id,
                identity,
                records,
            } => Some(Transaction {
                transactional_id,
                identity,
                records,
            }),
            PendingContent::Batch { .. } => None,
        }
    }

    fn commit(
        &self,
        sink: &SinkIdentity,
        checkpoint_id: CheckpointId,
        transaction: Transaction,
    ) -> TwoPhaseOperation {
        TwoPhaseOperation::Commit {
            label: sink.label.clone(),
            checkpoint_id,
            transaction,
            stage: CommitStage::BeforeCommit,
        }
    }

    fn prepare_recovery(&self, _: &SinkIdentity) -> Option<TwoPhaseOperation> {
        None
    }

    /// Lists the transactions still open under the subtask's ids and initializes each id
    /// again, which aborts it: what earlier attempts left open after the restored checkpoint
    /// (its own pre-committed transactions were committed first).
    fn finish_recovery(
        &self,
        sink: &SinkIdentity,
        _: u64,
        taken_over: &[String],
    ) -> Option<TwoPhaseOperation> {
        let mut prefixes = vec![ids_prefix(sink)];
        prefixes.extend(taken_over.iter().map(|prefix| format!("{prefix}-a")));
        Some(TwoPhaseOperation::AbortLingering {
            sink: sink.clone(),
            prefixes,
            timeout: self.timeout,
            open: None,
            aborted: Vec::new(),
        })
    }

    // A transaction commits by its id and producer identity, whoever opened it.
    const TAKES_OVER: bool = true;
}

/// Where a commit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitStage {
    /// The `before-commit` fault point.
    BeforeCommit,
    /// Ending the transaction with a commit.
    EndTransaction,
    /// Done.
    Done,
}

/// An operation of the two-phase-commit sink.
pub enum TwoPhaseOperation {
    /// Commits one pre-committed transaction.
    Commit {
        /// The sink's label.
        label: String,
        /// The checkpoint that pre-committed it.
        checkpoint_id: CheckpointId,
        /// The transaction.
        transaction: Transaction,
        /// Where it stands.
        stage: CommitStage,
    },
    /// Aborts the transactions earlier attempts left open.
    AbortLingering {
        /// The sink.
        sink: SinkIdentity,
        /// The id prefixes whose open transactions it aborts: its own, and those of the
        /// subtasks whose state it took over.
        prefixes: Vec<String>,
        /// The producer timeout.
        timeout: Duration,
        /// The open transactions' ids still to abort; `None` until listed.
        open: Option<VecDeque<String>>,
        /// The ids aborted so far.
        aborted: Vec<String>,
    },
}

impl CommitOperation for TwoPhaseOperation {
    fn poll_request(&mut self) -> Option<SinkRequest> {
        match self {
            TwoPhaseOperation::Commit {
                checkpoint_id,
                transaction,
                stage,
                ..
            } => match stage {
                CommitStage::BeforeCommit => Some(SinkRequest::BeforeCommit(*checkpoint_id)),
                // Retried: committing a committed transaction again succeeds.
                CommitStage::EndTransaction => Some(SinkRequest::Broker {
                    request: BrokerRequest::EndTransaction {
                        transactional_id: transaction.transactional_id.clone(),
                        identity: transaction.identity,
                        commit: true,
                    },
                    idempotent: true,
                }),
                CommitStage::Done => None,
            },
            TwoPhaseOperation::AbortLingering { timeout, open, .. } => {
                let request = match open {
                    None => BrokerRequest::ListTransactions,
                    Some(open) => BrokerRequest::InitProducer {
                        transactional_id: open.front()?.clone(),
                        timeout: *timeout,
                    },
                };
                Some(SinkRequest::Broker {
                    request,
                    idempotent: true,
                })
            }
        }
    }

    fn on_response(
        &mut self,
        response: SinkResponse,
    ) -> Result<Option<SinkAction>, ConnectorError> {
        match self {
            TwoPhaseOperation::Commit {
                label,
                checkpoint_id,
                transaction,
                stage,
            } => {
                if *stage == CommitStage::BeforeCommit {
                    *stage = CommitStage::EndTransaction;
                    return Ok(None);
                }
                *stage = CommitStage::Done;
                end_transaction_answered(label, *checkpoint_id, transaction, response)
            }
            TwoPhaseOperation::AbortLingering {
                sink,
                prefixes,
                open: open @ None,
                ..
            } => {
                let listed = match response {
                    SinkResponse::Broker(BrokerResponse::Transactions(ids)) => ids,
                    other => return Err(unexpected(&sink.label, "ListTransactions", other)),
                };
                let ours: VecDeque<String> = listed
                    .into_iter()
                    .filter(|id| prefixes.iter().any(|prefix| id.starts_with(prefix)))
                    .collect();
                if ours.len() as u64 > LINGERING_TRANSACTIONS_MAX {
                    return Err(ConnectorError::TooManyLingering {
                        label: sink.label.clone(),
                    });
                }
                *open = Some(ours);
                Ok(None)
            }
            TwoPhaseOperation::AbortLingering {
                sink,
                open: Some(open),
                aborted,
                ..
            } => {
                match response {
                    SinkResponse::Broker(BrokerResponse::Initialized(_)) => {}
                    other => return Err(unexpected(&sink.label, "InitProducer", other)),
                }
                aborted.push(open.pop_front().expect("a request was polled"));
                Ok(open.is_empty().then(|| SinkAction::FencedLingering {
                    count: aborted.len() as u64,
                    first: aborted[0].clone(),
                }))
            }
        }
    }
}

/// The broker answered `request` with something it cannot answer it with.
fn unexpected(label: &str, request: &str, response: impl std::fmt::Debug) -> ConnectorError {
    let response = format!("{response:?}");
    ConnectorError::Unexpected {
        label: label.to_string(),
        service: "broker",
        request: request.to_string(),
        response,
    }
}

/// The broker answered a commit. A transaction the broker aborted (its timeout ran out, or a
/// producer initialized its id again) cannot be committed any more: its records are lost,
/// which is traced and not retried (Flink logs it and goes on, or every recovery would fail
/// again).
fn end_transaction_answered(
    label: &str,
    checkpoint_id: CheckpointId,
    transaction: &Transaction,
    response: SinkResponse,
) -> Result<Option<SinkAction>, ConnectorError> {
    match response {
        SinkResponse::Broker(BrokerResponse::Ok) => Ok(Some(SinkAction::Committed {
            transactional_id: transaction.transactional_id.clone(),
            records: transaction.records,
            checkpoint_id,
        })),
        SinkResponse::Broker(BrokerResponse::Transaction(
            error @ TransactionError::Aborted { .. },
        )) => Ok(Some(SinkAction::CommitLost {
            checkpoint_id,
            error: error.to_string(),
            records: transaction.records,
        })),
        SinkResponse::Broker(BrokerResponse::Transaction(error)) => {
            Err(ConnectorError::CommitFailed {
                label: label.to_string(),
                checkpoint_id,
                error,
            })
        }
        other => Err(unexpected(label, "a commit", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::transaction_table::{AbortReason, InitResult};
    use crate::state::snapshot::PendingCommit;

    const TIMEOUT: Duration = Duration::from_ms(60_000);

    fn identity() -> SinkIdentity {
        SinkIdentity {
            label: "sink#0".into(),
            prefix: "wordcount-sink-0".into(),
            topic: "out".into(),
            partition: 0,
            attempt: 2,
        }
    }

    fn sink() -> CommittingSink<TwoPhaseCommit> {
        CommittingSink::new(TwoPhaseCommit { timeout: TIMEOUT }, identity())
    }

    fn transaction(sequence: u64, records: u64) -> Transaction {
        Transaction {
            transactional_id: format!("wordcount-sink-0-{sequence}"),
            identity: ProducerIdentity {
                producer_id: 7,
                epoch: 1,
            },
            records,
        }
    }

    fn initialized(fresh: bool) -> SinkResponse {
        SinkResponse::Broker(BrokerResponse::Initialized(InitResult {
            identity: ProducerIdentity {
                producer_id: 9,
                epoch: 3,
            },
            fresh,
            timeout: TIMEOUT,
        }))
    }

    fn init_of(request: Option<SinkRequest>) -> String {
        match request {
            Some(SinkRequest::Broker {
                request:
                    BrokerRequest::InitProducer {
                        transactional_id, ..
                    },
                idempotent: true,
            }) => transactional_id,
            other => panic!("expected an InitProducer, got {other:?}"),
        }
    }

    /// Answers the commit of `transaction` at its two steps with `answer`.
    fn commit_with(
        sink: &mut CommittingSink<TwoPhaseCommit>,
        checkpoint_id: u64,
        answer: BrokerResponse,
    ) -> Option<SinkAction> {
        assert_eq!(
            sink.poll_request(),
            Some(SinkRequest::BeforeCommit(CheckpointId(checkpoint_id)))
        );
        sink.on_response(SinkResponse::Passed).expect("passes");
        let Some(SinkRequest::Broker {
            request: BrokerRequest::EndTransaction { commit: true, .. },
            idempotent: true,
        }) = sink.poll_request()
        else {
            panic!("a commit ends the transaction");
        };
        sink.on_response(SinkResponse::Broker(answer))
            .expect("answered");
        sink.poll_action()
    }

    #[test]
    fn a_restored_transaction_the_broker_already_aborted_is_reported_lost_not_retried() {
        let mut sink = sink();
        let restored = SinkStateSnapshot {
            subtask_index: 0,
            prefix: "wordcount-sink-0".into(),
            next_transaction: 4,
            pending: vec![PendingCommit {
                checkpoint_id: 3,
                content: TwoPhaseCommit::content(&transaction(3, 12)),
            }],
        };
        assert_eq!(sink.recover(vec![restored]), Ok(4));
        let aborted = TransactionError::Aborted {
            transactional_id: "wordcount-sink-0-3".into(),
            reason: AbortReason::TimedOut { timeout: TIMEOUT },
        };
        let action = commit_with(&mut sink, 3, BrokerResponse::Transaction(aborted.clone()));
        assert_eq!(
            action,
            Some(SinkAction::CommitLost {
                checkpoint_id: CheckpointId(3),
                error: aborted.to_string(),
                records: 12
            })
        );
        listed(&mut sink, &[]);
        assert_eq!(sink.poll_request(), None);
    }

    /// Answers the recovery's listing of open transactions with `ids`.
    fn listed(sink: &mut CommittingSink<TwoPhaseCommit>, ids: &[&str]) {
        assert_eq!(
            sink.poll_request(),
            Some(SinkRequest::Broker {
                request: BrokerRequest::ListTransactions,
                idempotent: true
            })
        );
        let ids = ids.iter().map(|id| id.to_string()).collect();
        sink.on_response(SinkResponse::Broker(BrokerResponse::Transactions(ids)))
            .expect("listed");
    }

    #[test]
    fn recovery_aborts_every_open_transaction_of_its_subtask_whatever_the_attempt() {
        let mut sink = sink();
        let restored = SinkStateSnapshot {
            subtask_index: 0,
            prefix: "wordcount-sink-0".into(),
            next_transaction: 4,
            pending: Vec::new(),
        };
        assert_eq!(sink.recover(vec![restored]), Ok(4));
        let open = [
            "wordcount-sink-0-a1-4",
            "wordcount-sink-0-a1-5",
            "wordcount-sink-1-a1-4",
            "wordcount-sink-0-a1001-0",
            "wordcount-sink-01-a1-0",
        ];
        listed(&mut sink, &open);
        assert_eq!(init_of(sink.poll_request()), "wordcount-sink-0-a1-4");
        sink.on_response(initialized(false)).expect("aborted");
        assert_eq!(sink.poll_action(), None);
        assert_eq!(init_of(sink.poll_request()), "wordcount-sink-0-a1-5");
        sink.on_response(initialized(false)).expect("aborted");
        assert_eq!(init_of(sink.poll_request()), "wordcount-sink-0-a1001-0");
        sink.on_response(initialized(false)).expect("aborted");
        assert_eq!(
            sink.poll_action(),
            Some(SinkAction::FencedLingering {
                count: 3,
                first: "wordcount-sink-0-a1-4".into()
            })
        );
        assert_eq!(sink.poll_request(), None);
    }

    #[test]
    fn with_nothing_open_recovery_aborts_nothing_and_ids_carry_the_attempt() {
        let mut sink = sink();
        sink.recover(Vec::new()).expect("nothing restored");
        listed(&mut sink, &["wordcount-sink-1-a1-0"]);
        assert_eq!(sink.poll_request(), None);
        assert_eq!(sink.poll_action(), None);
        assert_eq!(transactional_id(&identity(), 7), "wordcount-sink-0-a2-7");
    }

    #[test]
    fn too_many_open_transactions_fail_the_recovery_with_the_sink_named() {
        let mut sink = sink();
        sink.recover(Vec::new()).expect("nothing restored");
        let open: Vec<String> = (0..=LINGERING_TRANSACTIONS_MAX)
            .map(|n| format!("wordcount-sink-0-a1-{n}"))
            .collect();
        sink.poll_request();
        let error = sink
            .on_response(SinkResponse::Broker(BrokerResponse::Transactions(open)))
            .expect_err("too many");
        assert_eq!(
            error,
            ConnectorError::TooManyLingering {
                label: "sink#0".into()
            }
        );
        assert!(
            error.to_string().starts_with("sink#0: more than"),
            "{error}"
        );
    }

    #[test]
    fn commits_wait_for_their_checkpoint_and_go_oldest_first() {
        let mut sink = sink();
        sink.recover(Vec::new()).expect("recovers");
        listed(&mut sink, &[]);
        assert_eq!(sink.poll_action(), None, "nothing lingered");
        assert_eq!(sink.poll_request(), None);
        sink.pre_commit(CheckpointId(2), Some(transaction(0, 5)), 0, 1);
        sink.pre_commit(CheckpointId(3), None, 0, 1);
        let snapshot = sink.pre_commit(CheckpointId(4), Some(transaction(1, 6)), 0, 2);
        assert_eq!(snapshot.pending.len(), 2);
        assert_eq!(sink.poll_request(), None, "nothing completed yet");
        sink.commit_up_to(CheckpointId(3));
        let committed = commit_with(&mut sink, 2, BrokerResponse::Ok);
        assert!(matches!(
            committed,
            Some(SinkAction::Committed { records: 5, .. })
        ));
        assert_eq!(sink.poll_request(), None, "4 waits for its own notice");
        assert!(sink.awaits_commit());
        sink.commit_up_to(CheckpointId(9));
        commit_with(&mut sink, 4, BrokerResponse::Ok);
        assert_eq!(sink.poll_request(), None);
        assert!(!sink.awaits_commit());
    }

    #[test]
    fn a_fenced_commit_fails_the_sink() {
        let mut sink = sink();
        sink.pre_commit(CheckpointId(2), Some(transaction(0, 5)), 0, 1);
        sink.commit_up_to(CheckpointId(2));
        sink.poll_request();
        sink.on_response(SinkResponse::Passed).expect("passes");
        sink.poll_request();
        let fenced = TransactionError::Fenced {
            transactional_id: "wordcount-sink-0-0".into(),
            epoch: 1,
            current: 2,
        };
        let error = sink
            .on_response(SinkResponse::Broker(BrokerResponse::Transaction(fenced)))
            .expect_err("a zombie");
        assert!(
            matches!(
                error,
                ConnectorError::CommitFailed {
                    checkpoint_id: CheckpointId(2),
                    error: TransactionError::Fenced { .. },
                    ..
                }
            ),
            "{error}"
        );
    }
}
