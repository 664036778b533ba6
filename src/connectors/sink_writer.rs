//! The job's sink as a task runs it (Flink's `SinkWriter` and its committer): writes what the
//! chain's sink operator collected, pre-commits at a barrier, commits on a completion notice,
//! and recovers what a restored checkpoint pre-committed. Which of these does anything depends
//! on the sink's kind (DESIGN §8).

use crate::api::value::Value;
use crate::connectors::committing_sink::SinkIdentity;
use crate::connectors::connector_error::ConnectorError;
use crate::connectors::sink_config::{SinkConfig, SinkKind};
use crate::connectors::sink_io::SinkIo;
use crate::connectors::two_phase_commit_sink::TwoPhaseCommitSink;
use crate::connectors::write_ahead_sink::WriteAheadSink;
use crate::ids::CheckpointId;
use crate::services::kv_store::{KvRequest, KvResponse};
use crate::services::record_batch::RecordBatch;
use crate::state::snapshot::SinkStateSnapshot;

/// The sink of one subtask, by kind.
pub enum SinkWriter {
    /// Appends straight through.
    Plain,
    /// Upserts into the key-value store.
    Idempotent,
    /// A broker transaction per checkpoint.
    TwoPhaseCommit(TwoPhaseCommitSink),
    /// Batches kept in state, written on completion.
    WriteAheadLog(WriteAheadSink),
}

impl SinkWriter {
    /// The sink `config` describes.
    pub fn new(config: &SinkConfig, sink: SinkIdentity) -> SinkWriter {
        match config.kind {
            SinkKind::Plain => SinkWriter::Plain,
            SinkKind::Idempotent => SinkWriter::Idempotent,
            SinkKind::TwoPhaseCommit => SinkWriter::TwoPhaseCommit(TwoPhaseCommitSink::new(
                config.transaction_timeout,
                sink,
            )),
            SinkKind::WriteAheadLog => SinkWriter::WriteAheadLog(WriteAheadSink::new(sink)),
        }
    }

    /// Hands over records the sink operator collected (a batch or a flush).
    pub async fn write(&mut self, io: &SinkIo, records: RecordBatch) -> Result<(), ConnectorError> {
        match self {
            SinkWriter::Plain => io.append(records, None).await,
            SinkWriter::Idempotent => upsert(io, records).await,
            SinkWriter::TwoPhaseCommit(sink) => sink.write(io, records).await,
            SinkWriter::WriteAheadLog(sink) => {
                sink.write(&records);
                Ok(())
            }
        }
    }

    /// The barrier of `checkpoint_id` passed, after everything before it was written: what
    /// the sink snapshots, if it keeps state.
    pub fn pre_commit(
        &mut self,
        io: &SinkIo,
        checkpoint_id: CheckpointId,
    ) -> Option<SinkStateSnapshot> {
        let index = io.subtask.subtask_index;
        match self {
            SinkWriter::Plain | SinkWriter::Idempotent => None,
            SinkWriter::TwoPhaseCommit(sink) => Some(sink.pre_commit(index, checkpoint_id)),
            SinkWriter::WriteAheadLog(sink) => Some(sink.pre_commit(index, checkpoint_id)),
        }
    }

    /// Checkpoint `checkpoint_id` completed: commit what was pre-committed up to it.
    pub async fn on_checkpoint_complete(
        &mut self,
        io: &SinkIo,
        checkpoint_id: CheckpointId,
    ) -> Result<(), ConnectorError> {
        match self {
            SinkWriter::Plain | SinkWriter::Idempotent => Ok(()),
            SinkWriter::TwoPhaseCommit(sink) => {
                io.commit_up_to(sink.committing(), checkpoint_id).await
            }
            SinkWriter::WriteAheadLog(sink) => {
                io.commit_up_to(sink.committing(), checkpoint_id).await
            }
        }
    }

    /// Before any record: commit what the restored checkpoint pre-committed (it completed)
    /// and clear up after the attempts that ran since.
    pub async fn recover(
        &mut self,
        io: &SinkIo,
        restored: Vec<SinkStateSnapshot>,
    ) -> Result<(), ConnectorError> {
        match self {
            SinkWriter::Plain | SinkWriter::Idempotent => Ok(()),
            SinkWriter::TwoPhaseCommit(sink) => sink.recover(io, restored).await,
            SinkWriter::WriteAheadLog(sink) => sink.recover(io, restored).await,
        }
    }

    /// Whether pre-committed work still waits for a completion notice.
    pub fn awaits_commit(&self) -> bool {
        match self {
            SinkWriter::Plain | SinkWriter::Idempotent => false,
            SinkWriter::TwoPhaseCommit(sink) => sink.awaits_commit(),
            SinkWriter::WriteAheadLog(sink) => sink.awaits_commit(),
        }
    }

    /// Records written since the last pre-commit, which no checkpoint covers yet.
    pub fn uncovered_records(&self) -> u64 {
        match self {
            SinkWriter::Plain | SinkWriter::Idempotent => 0,
            SinkWriter::TwoPhaseCommit(sink) => sink.uncovered_records(),
            SinkWriter::WriteAheadLog(sink) => sink.uncovered_records(),
        }
    }
}

/// The key an upsert writes under: a pair's first field (the word of `(word, count)`), or
/// the whole record.
pub fn upsert_key(value: &Value) -> String {
    match value {
        Value::Pair(pair) => pair.0.to_string(),
        other => other.to_string(),
    }
}

async fn upsert(io: &SinkIo, records: RecordBatch) -> Result<(), ConnectorError> {
    let mut entries = Vec::with_capacity(records.len());
    for bytes in records.iter() {
        let value: Value =
            crate::codec::decode_message(bytes).map_err(|e| ConnectorError::UndecodableRecord {
                label: io.label.clone(),
                error: e.to_string(),
            })?;
        entries.push((upsert_key(&value), bytes.to_vec()));
    }
    // Upserts are not fenced: the idempotent sink's promise is the final contents, and a
    // zombie's upsert is overwritten by the recovery's replay.
    let request = KvRequest::Put {
        writer: io.label.clone(),
        generation: None,
        entries,
    };
    match io.kv(&request).await? {
        KvResponse::Stored => Ok(()),
        other => Err(ConnectorError::Unexpected {
            label: io.label.clone(),
            service: "kv store",
            request: "a put".to_string(),
            response: format!("{other:?}"),
        }),
    }
}
