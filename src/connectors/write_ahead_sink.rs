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
//! zombie that appended its batch before the fence and is refused at the record leaves a copy
//! that the recovery writes again; the checker names such a repeat as the zombie's.

use crate::connectors::pending_commits::PendingCommits;
use crate::connectors::sink_io::SinkIo;
use crate::ids::CheckpointId;
use crate::runtime::hooks::SinkAction;
use crate::services::kv_store::{KvRequest, KvResponse};
use crate::state::snapshot::{PendingContent, SinkStateSnapshot};

/// One subtask's write-ahead sink.
#[derive(Default)]
pub struct WriteAheadSink {
    current: Vec<Vec<u8>>,
    pending: PendingCommits<Vec<Vec<u8>>>,
}

/// The header every record of a batch carries: which subtask and checkpoint wrote it.
pub fn batch_label(io: &SinkIo, checkpoint_id: CheckpointId) -> String {
    format!("{} checkpoint {}", io.label, checkpoint_id.0)
}

impl WriteAheadSink {
    /// Keeps records for the next checkpoint's batch.
    pub fn write(&mut self, records: Vec<Vec<u8>>) {
        self.current.extend(records);
    }

    /// The barrier passed: the records since the last one become checkpoint `checkpoint_id`'s
    /// batch, and every batch not yet written is the snapshot.
    pub fn pre_commit(&mut self, io: &SinkIo, checkpoint_id: CheckpointId) -> SinkStateSnapshot {
        if !self.current.is_empty() {
            self.pending
                .pre_commit(checkpoint_id, std::mem::take(&mut self.current));
        }
        self.pending
            .to_snapshot(io.subtask.subtask_index, 0, |records| {
                PendingContent::Batch {
                    records: records.clone(),
                }
            })
    }

    /// Writes every batch of `completed` or before that the committer has not recorded.
    pub async fn commit_up_to(
        &mut self,
        io: &SinkIo,
        completed: CheckpointId,
    ) -> Result<(), String> {
        while let Some((checkpoint_id, records)) = self.pending.next_due(completed) {
            let records = records.clone();
            write_batch(io, checkpoint_id, records).await?;
            self.pending.committed(checkpoint_id);
        }
        Ok(())
    }

    /// Writes the restored checkpoint's batches (it completed) unless already recorded.
    pub async fn recover(
        &mut self,
        io: &SinkIo,
        restored: Option<SinkStateSnapshot>,
    ) -> Result<(), String> {
        take_over_committer(io).await?;
        let Some(state) = restored else {
            return Ok(());
        };
        for pending in state.pending {
            let PendingContent::Batch { records } = pending.content else {
                return Err(format!(
                    "{}: the restored state holds a transaction, not a write-ahead batch",
                    io.label
                ));
            };
            write_batch(io, CheckpointId(pending.checkpoint_id), records).await?;
        }
        Ok(())
    }

    /// Whether batches wait for a notice.
    pub fn awaits_commit(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Records since the last barrier.
    pub fn uncovered_records(&self) -> u64 {
        self.current.len() as u64
    }
}

fn committer_key(io: &SinkIo) -> String {
    format!("checkpoint-committer/{}", io.prefix)
}

/// The committer: the newest checkpoint whose batch this subtask wrote.
async fn last_committed(io: &SinkIo) -> Result<Option<CheckpointId>, String> {
    match io
        .kv(&KvRequest::Get {
            key: committer_key(io),
        })
        .await?
    {
        KvResponse::Value(None) => Ok(None),
        KvResponse::Value(Some(bytes)) => crate::codec::decode_message::<u64>(&bytes)
            .map(|id| Some(CheckpointId(id)))
            .map_err(|e| format!("{}: corrupt committer record: {e}", io.label)),
        other => Err(format!(
            "{}: kv store answered a get with {other:?}",
            io.label
        )),
    }
}

/// Fences the committer record for this attempt, before any batch is written.
async fn take_over_committer(io: &SinkIo) -> Result<(), String> {
    let request = KvRequest::Fence {
        key: committer_key(io),
        generation: io.attempt,
    };
    match io.kv(&request).await? {
        KvResponse::Stored => Ok(()),
        KvResponse::Fenced { current, .. } => Err(format!(
            "{}: attempt {} is a zombie: attempt {current} owns the committer record",
            io.label, io.attempt
        )),
        other => Err(format!(
            "{}: kv store answered a fence with {other:?}",
            io.label
        )),
    }
}

async fn write_batch(
    io: &SinkIo,
    checkpoint_id: CheckpointId,
    records: Vec<Vec<u8>>,
) -> Result<(), String> {
    if last_committed(io)
        .await?
        .is_some_and(|last| last >= checkpoint_id)
    {
        return Ok(()); // Written and recorded before a failure.
    }
    let count = records.len();
    io.append(records, Some(batch_label(io, checkpoint_id)))
        .await?;
    io.before_commit(checkpoint_id).await;
    let request = KvRequest::Put {
        writer: io.label.clone(),
        generation: Some(io.attempt),
        entries: vec![(
            committer_key(io),
            crate::codec::encode_message(&checkpoint_id.0),
        )],
    };
    match io.kv(&request).await? {
        KvResponse::Stored => {}
        KvResponse::Fenced { current, .. } => {
            return Err(format!(
                "{}: attempt {} is a zombie: its record of checkpoint {checkpoint_id} was refused (attempt {current} owns the committer)",
                io.label, io.attempt
            ))
        }
        other => {
            return Err(format!(
                "{}: kv store answered a put with {other:?}",
                io.label
            ))
        }
    }
    io.report(SinkAction::BatchWritten {
        checkpoint_id,
        records: count as u64,
    });
    Ok(())
}
