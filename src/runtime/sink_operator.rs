//! The sink operator of a task whose chain ends in the sink (Flink's `SinkWriterOperator`
//! with its committer): hands the records the chain collected to the sink writer, and passes
//! on the checkpoint events the writer acts on.

use crate::connectors::connector_error::ConnectorError;
use crate::connectors::sink_io::SinkIo;
use crate::connectors::sink_writer::SinkWriter;
use crate::ids::CheckpointId;
use crate::runtime::operator_chain::OperatorChain;
use crate::runtime::task_context::TaskContext;
use crate::services::record_batch::RecordBatch;
use crate::state::snapshot::SinkStateSnapshot;

/// A task's sink writer and what it reaches the outside world through.
pub struct SinkOperator {
    writer: SinkWriter,
    io: SinkIo,
}

impl SinkOperator {
    /// The sink of `chain`, if the chain ends in one.
    pub fn open(context: &TaskContext, chain: &mut OperatorChain) -> Option<SinkOperator> {
        let uid = chain.uids().last().expect("a chain").clone();
        let topic = chain.sink()?.topic.clone();
        let index = context.subtask.subtask_index;
        let io = SinkIo {
            rpc: context.rpc.clone(),
            broker: context.services.broker,
            kv: context.services.kv,
            timeout: context.config.rpc_timeout,
            subtask: context.subtask,
            label: format!("{uid}#{index}"),
            attempt: context.attempt.0,
            prefix: format!("{}-{uid}-{index}", context.graph.job.name),
            topic,
            partition: index,
            hooks: context.hooks.clone(),
            node_name: context.node_name.clone(),
        };
        let writer = SinkWriter::new(&context.config.sink, io.identity());
        Some(SinkOperator { writer, io })
    }

    /// Recovers from the restored state: commits or aborts what an earlier attempt left.
    pub async fn recover(&mut self, state: Vec<SinkStateSnapshot>) -> Result<(), ConnectorError> {
        self.writer.recover(&self.io, state).await
    }

    /// Hands the records the chain's sink collected to the writer.
    pub async fn write_pending(&mut self, chain: &mut OperatorChain) -> Result<(), ConnectorError> {
        let buffer = chain.sink().expect("a sink operator ends the chain");
        if buffer.pending.is_empty() {
            return Ok(());
        }
        // The next batch starts with room for one like this (it is built record by record).
        let room = RecordBatch::with_capacity(buffer.pending.len(), buffer.pending.byte_len());
        let records = std::mem::replace(&mut buffer.pending, room);
        let count = records.len() as u64;
        self.writer.write(&self.io, records).await?;
        chain.sink().expect("sink").records_written += count;
        Ok(())
    }

    /// The barrier of `checkpoint_id` passed: what the sink snapshots, if it keeps state.
    pub fn pre_commit(&mut self, checkpoint_id: CheckpointId) -> Option<SinkStateSnapshot> {
        self.writer.pre_commit(&self.io, checkpoint_id)
    }

    /// Checkpoint `checkpoint_id` completed: commit what was pre-committed up to it.
    pub async fn on_checkpoint_complete(
        &mut self,
        checkpoint_id: CheckpointId,
    ) -> Result<(), ConnectorError> {
        self.writer
            .on_checkpoint_complete(&self.io, checkpoint_id)
            .await
    }

    /// Whether pre-committed work still waits for its checkpoint to complete.
    pub fn awaits_commit(&self) -> bool {
        self.writer.awaits_commit()
    }

    /// Records written after the last pre-commit (none may remain when the task finishes).
    pub fn uncovered_records(&self) -> u64 {
        self.writer.uncovered_records()
    }
}
