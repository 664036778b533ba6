//! Bringing a deployed task up (Flink's `Task.doRun` up to `invoke`): its state restored, the
//! operator chain built on its key groups, the source opened at its offsets, the network input
//! set up, the output channels connected, in-flight data replayed, and the sink recovered.

use crate::checkpoint::storage::StorageError;
use crate::runtime::deployment::TaskDeployment;
use crate::runtime::network_input::NetworkInput;
use crate::runtime::operator_chain::OperatorChain;
use crate::runtime::record_writer::RecordWriter;
use crate::runtime::result_partition::connect_output;
use crate::runtime::sim_time;
use crate::runtime::sink_operator::SinkOperator;
use crate::runtime::source_operator::SourceOperator;
use crate::runtime::state_initializer::{restore_channel_state, restore_state, RestoredState};
use crate::runtime::task_context::TaskContext;
use crate::runtime::task_error::TaskError;
use crate::runtime::task_mailbox::MailboxSender;

/// The parts of a running task.
pub struct TaskParts {
    /// Its operators.
    pub chain: OperatorChain,
    /// Its network input; `None` at a source.
    pub input: Option<NetworkInput>,
    /// Its output channels.
    pub writer: RecordWriter,
    /// Its source; `None` unless the chain starts with one.
    pub source: Option<SourceOperator>,
    /// Its sink; `None` unless the chain ends in one.
    pub sink: Option<SinkOperator>,
}

/// Sets up the task `deployment` describes; credit from its consumers reaches `inbox`.
pub async fn set_up(
    context: &TaskContext,
    deployment: &TaskDeployment,
    inbox: MailboxSender,
) -> Result<TaskParts, TaskError> {
    let graph = context.graph.clone();
    let vertex = graph.vertex(context.subtask.vertex_id);
    let operators = vertex.operator_range.clone();
    let mut chain = OperatorChain::new(&graph.job, operators, deployment.key_groups);
    chain.set_subtask(context.subtask.subtask_index, deployment.parallelism);
    let restored = match &deployment.restore {
        Some(restore) => {
            match restore_state(context, deployment.parallelism, &restore.states).await {
                // A checksum, a version or a file that is gone: never restored silently.
                Err(TaskError::Storage(
                    error @ (StorageError::Corrupt(_) | StorageError::Missing { .. }),
                )) => {
                    return Err(TaskError::CheckpointUnreadable {
                        subtask: context.subtask,
                        checkpoint_id: restore.checkpoint_id,
                        error,
                    })
                }
                other => other?,
            }
        }
        None => RestoredState::default(),
    };
    let RestoredState {
        keyed,
        offsets,
        channel_state,
        sink: sink_state,
        operator,
    } = restored;
    chain.restore_keyed(&keyed)?;
    chain.restore_operator_state(&operator);
    let mut source = match vertex.input_pattern {
        None => Some(SourceOperator::open(context, deployment.parallelism, offsets).await?),
        Some(_) => None,
    };
    let mode = context.config.checkpointing_mode;
    let mut input = (!deployment.inputs.is_empty())
        .then(|| NetworkInput::new(context.subtask, deployment.inputs.clone(), mode));
    let targets = deployment.outputs.iter().map(|o| o.target).collect();
    let downstream = graph
        .vertices
        .get(context.subtask.vertex_id.0 as usize + 1)
        .map(|v| graph.partitioning_into(v.vertex_id));
    let mut writer = RecordWriter::new(
        targets,
        downstream,
        context.subtask.subtask_index,
        graph.job.max_parallelism,
    );
    for (index, output) in deployment.outputs.iter().enumerate() {
        let stream_writer = connect_output(context, index, *output, inbox.clone()).await?;
        writer.connect(index, stream_writer);
    }
    if let Some(state) = channel_state {
        let gate = input.as_mut().map(|input| &mut input.gate);
        restore_channel_state(context, state, gate, &mut writer)?;
    }
    let mut sink = SinkOperator::open(context, &mut chain);
    if let Some(sink) = sink.as_mut() {
        sink.recover(sink_state).await?;
    }
    if let Some(source) = source.as_mut() {
        source.start(context, sim_time::now());
    }
    Ok(TaskParts {
        chain,
        input,
        writer,
        source,
        sink,
    })
}
