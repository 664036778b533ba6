//! The write-ahead-log sink (Flink's `GenericWriteAheadSink`): records of a checkpoint are
//! kept in its state; when the checkpoint completes the batch is written to the broker and a
//! committer record (Flink's `CheckpointCommitter`, here in the key-value store) says so, so
//! a recovery does not write it again. Between the write and the committer record lies the
//! window in which a failure makes the recovery write the batch a second time.
//!
//! As Flink's sink asks its committer at the moment it commits a checkpoint, so does this one,
//! for every batch. A recovery first takes the committer record over for its attempt (a
//! fence), so a zombie of the failed attempt can no longer record a batch: either the zombie
//! recorded it before the fence, and the recovery sees the record and skips the batch, or its
//! record is refused. What remains is inherent to a write-ahead log without transactions: a
//! zombie that read the committer before the fence appends its batch (before or after the
//! recovery's copy) and is refused at the record, leaving one copy too many; the checker names
//! such a repeat as the zombie's.

use crate::connectors::committing_sink::{
    CommitOperation, CommittingKind, CommittingSink, SinkIdentity, SinkRequest, SinkResponse,
};
use crate::connectors::connector_error::ConnectorError;
use crate::connectors::sink_io::SinkIo;
use crate::ids::CheckpointId;
use crate::runtime::hooks::SinkAction;
use crate::services::kv_store::{KvRequest, KvResponse};
use crate::services::messages::{BrokerRequest, BrokerResponse};
use crate::services::record_batch::RecordBatch;
use crate::state::snapshot::{PendingContent, SinkStateSnapshot};

/// One subtask's write-ahead sink.
pub struct WriteAheadSink {
    current: RecordBatch,
    committing: CommittingSink<WriteAheadLog>,
}

/// The write-ahead kind of committing sink: its work is a batch of records.
pub struct WriteAheadLog;

/// The header every record of a batch carries: which subtask and checkpoint wrote it.
pub fn batch_label(label: &str, checkpoint_id: CheckpointId) -> String {
    format!("{label} checkpoint {}", checkpoint_id.0)
}

impl WriteAheadSink {
    /// A sink with nothing kept yet.
    pub fn new(sink: SinkIdentity) -> WriteAheadSink {
        WriteAheadSink {
            current: RecordBatch::new(),
            committing: CommittingSink::new(WriteAheadLog, sink),
        }
    }

    /// Keeps records for the next checkpoint's batch.
    pub fn write(&mut self, records: &RecordBatch) {
        self.current.extend_from(records);
    }

    /// The barrier passed: the records since the last one become checkpoint `checkpoint_id`'s
    /// batch, and every batch not yet written is the snapshot.
    pub fn pre_commit(
        &mut self,
        subtask_index: u32,
        checkpoint_id: CheckpointId,
    ) -> SinkStateSnapshot {
        let batch = (!self.current.is_empty()).then(|| std::mem::take(&mut self.current));
        self.committing
            .pre_commit(checkpoint_id, batch, subtask_index, 0)
    }

    /// Its pre-committed batches.
    pub fn committing(&mut self) -> &mut CommittingSink<WriteAheadLog> {
        &mut self.committing
    }

    /// Fences the committer, then writes the restored checkpoint's batches (it completed)
    /// unless already recorded.
    pub async fn recover(
        &mut self,
        io: &SinkIo,
        restored: Vec<SinkStateSnapshot>,
    ) -> Result<(), ConnectorError> {
        io.recover(&mut self.committing, restored).await.map(|_| ())
    }

    /// Whether batches wait for a notice.
    pub fn awaits_commit(&self) -> bool {
        self.committing.awaits_commit()
    }

    /// Records since the last barrier.
    pub fn uncovered_records(&self) -> u64 {
        self.current.len() as u64
    }
}

fn committer_key(sink: &SinkIdentity) -> String {
    format!("checkpoint-committer/{}", sink.prefix)
}

impl CommittingKind for WriteAheadLog {
    type Work = RecordBatch;
    type Operation = WriteAheadOperation;

    fn content(records: &RecordBatch) -> PendingContent {
        PendingContent::Batch {
            records: records.clone(),
        }
    }

    const WORK: &'static str = "a write-ahead batch";

    fn work(content: PendingContent) -> Option<RecordBatch> {
        match content {
            PendingContent::Batch { records } => Some(records),
            PendingContent::Transaction { .. } => None,
        }
    }

    fn commit(
        &self,
        sink: &SinkIdentity,
        checkpoint_id: CheckpointId,
        records: RecordBatch,
    ) -> WriteAheadOperation {
        WriteAheadOperation::WriteBatch {
            sink: sink.clone(),
            checkpoint_id,
            records,
            stage: BatchStage::ReadCommitter,
        }
    }

    /// Fences the committer record for this attempt, before any batch is written.
    fn prepare_recovery(&self, sink: &SinkIdentity) -> Option<WriteAheadOperation> {
        Some(WriteAheadOperation::TakeOverCommitter {
            sink: sink.clone(),
            done: false,
        })
    }

    fn finish_recovery(
        &self,
        _: &SinkIdentity,
        _: u64,
        _: &[String],
    ) -> Option<WriteAheadOperation> {
        None
    }

    // Its committer record is the subtask's own: another subtask's batches would be written
    // under this one's key and partition.
    const TAKES_OVER: bool = false;
}

/// Where a batch write stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchStage {
    /// Asking the committer for the newest checkpoint written.
    ReadCommitter,
    /// Appending the batch to the broker.
    Append,
    /// The `before-commit` fault point.
    BeforeCommit,
    /// Recording the batch at the committer.
    Record,
    /// Done (written, or found written before).
    Done,
}

/// An operation of the write-ahead sink.
pub enum WriteAheadOperation {
    /// Writes one checkpoint's batch unless the committer recorded it, then records it.
    WriteBatch {
        /// The sink.
        sink: SinkIdentity,
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// The batch.
        records: RecordBatch,
        /// Where it stands.
        stage: BatchStage,
    },
    /// Fences the committer record for this attempt.
    TakeOverCommitter {
        /// The sink.
        sink: SinkIdentity,
        /// Whether the fence is in place.
        done: bool,
    },
}

impl CommitOperation for WriteAheadOperation {
    fn poll_request(&mut self) -> Option<SinkRequest> {
        match self {
            WriteAheadOperation::TakeOverCommitter { sink, done } => (!*done).then(|| {
                SinkRequest::Kv(KvRequest::Fence {
                    key: committer_key(sink),
                    generation: sink.attempt,
                })
            }),
            WriteAheadOperation::WriteBatch {
                sink,
                checkpoint_id,
                records,
                stage,
            } => match stage {
                BatchStage::ReadCommitter => Some(SinkRequest::Kv(KvRequest::Get {
                    key: committer_key(sink),
                })),
                // Not retried: a retry after a lost reply would write twice on its own.
                BatchStage::Append => Some(SinkRequest::Broker {
                    request: BrokerRequest::Append {
                        topic: sink.topic.clone(),
                        partition: sink.partition,
                        records: records.clone(),
                        batch: Some(batch_label(&sink.label, *checkpoint_id)),
                    },
                    idempotent: false,
                }),
                BatchStage::BeforeCommit => Some(SinkRequest::BeforeCommit(*checkpoint_id)),
                BatchStage::Record => Some(SinkRequest::Kv(KvRequest::Put {
                    writer: sink.label.clone(),
                    generation: Some(sink.attempt),
                    entries: vec![(
                        committer_key(sink),
                        crate::codec::encode_message(&checkpoint_id.0),
                    )],
                })),
                BatchStage::Done => None,
            },
        }
    }

    fn on_response(
        &mut self,
        response: SinkResponse,
    ) -> Result<Option<SinkAction>, ConnectorError> {
        match self {
            WriteAheadOperation::TakeOverCommitter { sink, done } => {
                *done = true;
                match response {
                    SinkResponse::Kv(KvResponse::Stored) => Ok(None),
                    SinkResponse::Kv(KvResponse::Fenced { current, .. }) => {
                        Err(ConnectorError::ZombieAtRecovery {
                            label: sink.label.clone(),
                            attempt: sink.attempt,
                            current,
                        })
                    }
                    other => Err(ConnectorError::Unexpected {
                        label: sink.label.clone(),
                        service: "kv store",
                        request: "a fence".to_string(),
                        response: format!("{other:?}"),
                    }),
                }
            }
            WriteAheadOperation::WriteBatch {
                sink,
                checkpoint_id,
                records,
                stage,
            } => {
                let (next, action) =
                    batch_answered(sink, *checkpoint_id, records.len(), *stage, response)?;
                *stage = next;
                Ok(action)
            }
        }
    }
}

/// The next stage of a batch write after `stage` was answered.
fn batch_answered(
    sink: &SinkIdentity,
    checkpoint_id: CheckpointId,
    records: usize,
    stage: BatchStage,
    response: SinkResponse,
) -> Result<(BatchStage, Option<SinkAction>), ConnectorError> {
    let label = &sink.label;
    match (stage, response) {
        (BatchStage::ReadCommitter, SinkResponse::Kv(KvResponse::Value(None))) => {
            Ok((BatchStage::Append, None))
        }
        (BatchStage::ReadCommitter, SinkResponse::Kv(KvResponse::Value(Some(bytes)))) => {
            let last = crate::codec::decode_message::<u64>(&bytes).map_err(|e| {
                ConnectorError::CorruptCommitter {
                    label: label.clone(),
                    error: e.to_string(),
                }
            })?;
            // Written and recorded before a failure: not again.
            let next = if last >= checkpoint_id.0 {
                BatchStage::Done
            } else {
                BatchStage::Append
            };
            Ok((next, None))
        }
        (BatchStage::Append, SinkResponse::Broker(BrokerResponse::Ok)) => {
            Ok((BatchStage::BeforeCommit, None))
        }
        (BatchStage::Append, other) => Err(ConnectorError::Refused {
            label: label.clone(),
            request: "append",
            response: format!("{other:?}"),
        }),
        (BatchStage::BeforeCommit, _) => Ok((BatchStage::Record, None)),
        (BatchStage::Record, SinkResponse::Kv(KvResponse::Stored)) => {
            let action = SinkAction::BatchWritten {
                checkpoint_id,
                records: records as u64,
            };
            Ok((BatchStage::Done, Some(action)))
        }
        (BatchStage::Record, SinkResponse::Kv(KvResponse::Fenced { current, .. })) => {
            Err(ConnectorError::ZombieAtCommit {
                label: label.clone(),
                attempt: sink.attempt,
                checkpoint_id,
                current,
            })
        }
        (stage, other) => Err(ConnectorError::Unexpected {
            label: label.clone(),
            service: "the kv store",
            request: format!("{stage:?}"),
            response: format!("{other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::snapshot::PendingCommit;

    fn identity() -> SinkIdentity {
        SinkIdentity {
            label: "sink#1".into(),
            prefix: "wordcount-sink-1".into(),
            topic: "out".into(),
            partition: 1,
            attempt: 3,
        }
    }

    fn restored(checkpoint_id: u64) -> SinkStateSnapshot {
        SinkStateSnapshot {
            subtask_index: 1,
            prefix: "wordcount-sink-1".into(),
            next_transaction: 0,
            pending: vec![PendingCommit {
                checkpoint_id,
                content: PendingContent::Batch {
                    records: RecordBatch::of([&b"a"[..], b"b"]),
                },
            }],
        }
    }

    fn committer_at(checkpoint_id: Option<u64>) -> SinkResponse {
        SinkResponse::Kv(KvResponse::Value(
            checkpoint_id.map(|id| crate::codec::encode_message(&id)),
        ))
    }

    #[test]
    fn recovery_fences_the_committer_first_and_a_fenced_recovery_is_a_zombie() {
        let mut sink = CommittingSink::new(WriteAheadLog, identity());
        sink.recover(vec![restored(4)]).expect("recovers");
        assert_eq!(
            sink.poll_request(),
            Some(SinkRequest::Kv(KvRequest::Fence {
                key: "checkpoint-committer/wordcount-sink-1".into(),
                generation: 3
            }))
        );
        let error = sink
            .on_response(SinkResponse::Kv(KvResponse::Fenced {
                generation: 3,
                current: 5,
            }))
            .expect_err("attempt 5 owns it");
        assert_eq!(
            error,
            ConnectorError::ZombieAtRecovery {
                label: "sink#1".into(),
                attempt: 3,
                current: 5
            }
        );
        assert!(
            error.to_string().contains("attempt 3 is a zombie"),
            "{error}"
        );
    }

    #[test]
    fn a_batch_the_committer_recorded_is_not_written_again() {
        let mut sink = CommittingSink::new(WriteAheadLog, identity());
        sink.recover(vec![restored(4)]).expect("recovers");
        sink.poll_request();
        sink.on_response(SinkResponse::Kv(KvResponse::Stored))
            .expect("fenced");
        assert!(matches!(
            sink.poll_request(),
            Some(SinkRequest::Kv(KvRequest::Get { .. }))
        ));
        sink.on_response(committer_at(Some(4))).expect("read");
        assert_eq!(sink.poll_request(), None, "written before the failure");
        assert_eq!(sink.poll_action(), None);
    }

    #[test]
    fn a_batch_is_appended_then_recorded_under_the_attempt() {
        let mut sink = CommittingSink::new(WriteAheadLog, identity());
        sink.pre_commit(CheckpointId(6), Some(RecordBatch::of([&b"x"[..]])), 1, 0);
        sink.commit_up_to(CheckpointId(6));
        sink.poll_request();
        sink.on_response(committer_at(Some(5)))
            .expect("older record");
        let Some(SinkRequest::Broker {
            request: BrokerRequest::Append { batch, .. },
            idempotent: false,
        }) = sink.poll_request()
        else {
            panic!("the batch is appended, without retry");
        };
        assert_eq!(batch.as_deref(), Some("sink#1 checkpoint 6"));
        sink.on_response(SinkResponse::Broker(BrokerResponse::Ok))
            .expect("appended");
        assert_eq!(
            sink.poll_request(),
            Some(SinkRequest::BeforeCommit(CheckpointId(6)))
        );
        sink.on_response(SinkResponse::Passed).expect("passes");
        let Some(SinkRequest::Kv(KvRequest::Put { generation, .. })) = sink.poll_request() else {
            panic!("the committer records the batch");
        };
        assert_eq!(generation, Some(3));
        sink.on_response(SinkResponse::Kv(KvResponse::Stored))
            .expect("recorded");
        assert_eq!(
            sink.poll_action(),
            Some(SinkAction::BatchWritten {
                checkpoint_id: CheckpointId(6),
                records: 1
            })
        );
        assert_eq!(sink.poll_request(), None);
        assert!(!sink.awaits_commit());
    }
}
