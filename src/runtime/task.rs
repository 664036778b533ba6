//! One subtask's life: restore, connect, then the mailbox loop that moves records from the
//! input gate (or the source) through the operator chain to the record writer, and turns
//! barrier-handler actions into snapshots. Protocol decisions live in the sans-IO cores
//! (barrier handler, credit accounting); this driver only moves events and bounds each turn.

use crate::api::value::Value;
use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_protocol::{Action, Actions};
use crate::checkpoint::checkpointed_input_gate::Polled;
use crate::checkpoint::coordinator::{CheckpointingMode, DeclineReason};
use crate::checkpoint::storage::{task_state_path, CheckpointStorage};
use crate::checkpoint::subtask_checkpoint::{
    Report, SubtaskCheckpointCoordinator, SyncSnapshot, Upload, Uploaded,
};
use crate::codec::FileKind;
use crate::connectors::sink_config::SinkConfig;
use crate::connectors::sink_io::SinkIo;
use crate::connectors::sink_writer::SinkWriter;
use crate::connectors::source_reader::SourceReader;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::{AttemptNumber, ChannelIndex, CheckpointId, SubtaskId};
use crate::limits::{
    CHANNEL_CONNECT_ATTEMPTS_MAX, TASK_RECORDS_PER_TURN_MAX, TASK_TURN_DURATION_MAX,
};
use crate::runtime::control_plane::ControlPlane;
use crate::runtime::deployment::{OutputChannel, TaskDeployment};
use crate::runtime::frame_io::{read_frame, write_frame};
use crate::runtime::hooks::{EngineEvent, Hooks, RecordFate};
use crate::runtime::input_gate::{GateBuffer, InputGate};
use crate::runtime::messages::{ChannelEvent, ControlMessage, DataFrame, TaskStatus};
use crate::runtime::operator_chain::OperatorChain;
use crate::runtime::record_writer::RecordWriter;
use crate::runtime::rpc::Rpc;
use crate::runtime::sim_time;
use crate::services::messages::{BrokerRequest, BrokerResponse};
use crate::state::channel_state::{ChannelStateSnapshot, RecordBuffer};
use crate::state::snapshot::{
    KeyedStateSnapshot, OperatorSnapshot, SinkStateSnapshot, SourceOffsets, TaskStateSnapshot,
};
use crate::time::{Duration, Instant};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{FutureExt, StreamExt};
use madsim::net::TcpStream;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::WriteHalf;

/// Addresses of the cluster's services.
#[derive(Clone, Copy, Debug)]
pub struct Services {
    /// The job manager's control endpoint.
    pub jobmanager: SocketAddr,
    /// The broker's endpoint.
    pub broker: SocketAddr,
    /// The blobstore's endpoint.
    pub blobstore: SocketAddr,
    /// The key-value store's endpoint.
    pub kv: SocketAddr,
}

/// Runtime options every task uses.
#[derive(Clone, Debug)]
pub struct TaskConfig {
    /// `execution.buffer-timeout`: a partly filled buffer is sent after this long.
    pub buffer_timeout: Duration,
    /// Source pacing per partition; 0 = as fast as backpressure allows.
    pub source_records_per_second: u64,
    /// `execution.checkpointing.mode`: how the input gate handles barriers.
    pub checkpointing_mode: CheckpointingMode,
    /// Where a source keeps its read position.
    pub offset_commit: OffsetCommit,
    /// Wait for an RPC answer.
    pub rpc_timeout: Duration,
    /// The job's sink.
    pub sink: SinkConfig,
}

/// Where a source keeps its read position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetCommit {
    /// Checkpointing is on: offsets are operator state; nothing is committed to the broker.
    InCheckpoints,
    /// Checkpointing is off: Kafka's auto-commit every interval (`auto.commit.interval.ms`).
    Periodic(Duration),
    /// At-most-once: a fetched batch's end offset is committed before any of it is emitted, so
    /// a restart never reads a record twice.
    OnRead,
}

/// What reaches a task's mailbox.
pub enum TaskInput {
    /// An input channel's connection arrived; credits go back through `writer`.
    InputConnected {
        /// The channel.
        channel: ChannelIndex,
        /// The write half, for credit frames.
        writer: WriteHalf<TcpStream>,
    },
    /// A frame arrived on an input channel.
    Frame {
        /// The channel.
        channel: ChannelIndex,
        /// The frame.
        frame: DataFrame,
    },
    /// An input channel closed.
    InputClosed {
        /// The channel.
        channel: ChannelIndex,
        /// The error, if it did not close cleanly.
        error: Option<String>,
    },
    /// Credit for an output channel.
    Credit {
        /// The output channel.
        output: usize,
        /// Buffers granted.
        credit: u32,
    },
    /// An output channel closed.
    OutputClosed {
        /// The output channel.
        output: usize,
    },
    /// The coordinator triggers a checkpoint (sources only).
    Trigger(Barrier),
    /// A checkpoint completed.
    CheckpointComplete(CheckpointId),
    /// The final checkpoint completed: a source waiting at the end of its input ends it.
    FinishSource,
    /// The asynchronous part of a snapshot ended.
    UploadDone {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Where the snapshot is, or why the upload failed.
        result: Result<Uploaded, String>,
    },
}

/// Everything a task needs from its task manager.
#[derive(Clone)]
pub struct TaskContext {
    /// The job attempt.
    pub attempt: AttemptNumber,
    /// This subtask.
    pub subtask: SubtaskId,
    /// The physical plan (the job's code is on every task manager).
    pub graph: Arc<ExecutionGraph>,
    /// Where the services are.
    pub services: Services,
    /// The task manager's request endpoint (broker and blobstore calls).
    pub rpc: Rpc,
    /// The task manager's control plane (acks, declines, status to the job manager).
    pub control: ControlPlane,
    /// Where the task reports events and asks for faults.
    pub hooks: Hooks,
    /// Runtime options.
    pub config: TaskConfig,
    /// The task manager's node name, for traces.
    pub node_name: String,
}

impl TaskContext {
    fn storage(&self) -> CheckpointStorage {
        CheckpointStorage::new(
            self.rpc.clone(),
            self.services.blobstore,
            self.config.rpc_timeout,
        )
    }
}

struct Task {
    context: TaskContext,
    chain: OperatorChain,
    gate: Option<InputGate>,
    // The producer of each input channel.
    upstream: Vec<SubtaskId>,
    writer: RecordWriter,
    source: Option<SourceReader>,
    inbox_sender: UnboundedSender<TaskInput>,
    scratch: Vec<Value>,
    ended: bool,
    commit_due_at: Instant,
    records_in: u64,
    checkpoints: SubtaskCheckpointCoordinator,
    // The buffer being read, a record at a time.
    partial: Option<PartialBuffer>,
    // The sink, when this task's chain ends in it.
    sink: Option<(SinkWriter, SinkIo)>,
}

/// A buffer the task reads a record at a time, so its mailbox (and a priority barrier in it)
/// is served between records.
struct PartialBuffer {
    channel: ChannelIndex,
    buffer: GateBuffer,
    offset: usize,
    remaining: u32,
}

impl PartialBuffer {
    fn new(channel: ChannelIndex, buffer: GateBuffer) -> Self {
        let remaining = buffer.buffer.record_count;
        PartialBuffer {
            channel,
            buffer,
            offset: 0,
            remaining,
        }
    }

    fn next_record(&mut self) -> Result<Value, String> {
        assert!(self.remaining > 0);
        let bytes = &self.buffer.buffer.bytes[self.offset..];
        let (value, tail) = postcard::take_from_bytes::<Value>(bytes)
            .map_err(|e| format!("corrupt buffer on input channel {}: {e}", self.channel.0))?;
        self.offset = self.buffer.buffer.bytes.len() - tail.len();
        self.remaining -= 1;
        if self.remaining == 0 && !tail.is_empty() {
            return Err(format!(
                "a buffer on input channel {} holds more bytes than its {} records",
                self.channel.0, self.buffer.buffer.record_count
            ));
        }
        Ok(value)
    }

    fn is_consumed(&self) -> bool {
        self.remaining == 0
    }

    /// The records not read yet, as a buffer of their own.
    fn rest(&self) -> RecordBuffer {
        RecordBuffer {
            record_count: self.remaining,
            bytes: self.buffer.buffer.bytes[self.offset..].to_vec(),
        }
    }
}

/// Runs a task to its end. `Ok` means all input was consumed; `Err` fails the job over.
pub async fn run_task(
    context: TaskContext,
    deployment: TaskDeployment,
    mut inbox: UnboundedReceiver<TaskInput>,
    inbox_sender: UnboundedSender<TaskInput>,
) -> Result<(), String> {
    let mut task = Task::deploy(context, &deployment, inbox_sender).await?;
    let running = ControlMessage::TaskStatusChanged {
        attempt: task.context.attempt,
        subtask: task.context.subtask,
        status: TaskStatus::Running,
    };
    task.context
        .control
        .send(task.context.services.jobmanager, &running)
        .await;
    task.run(&mut inbox).await?;
    task.finish(&mut inbox).await
}

impl Task {
    fn event(&self, event: EngineEvent) {
        self.context.hooks.event(&self.context.node_name, event);
    }

    async fn deploy(
        context: TaskContext,
        deployment: &TaskDeployment,
        inbox_sender: UnboundedSender<TaskInput>,
    ) -> Result<Task, String> {
        let graph = context.graph.clone();
        let vertex = graph.vertex(context.subtask.vertex_id);
        let operators = vertex.operator_range.clone();
        let mut chain = OperatorChain::new(&graph.job, operators, deployment.key_groups);
        let restored = match &deployment.restore {
            Some(restore) => restore_state(&context, &restore.state_paths).await?,
            None => RestoredState::default(),
        };
        let RestoredState {
            keyed,
            offsets,
            channel_state,
            sink: sink_state,
        } = restored;
        chain.restore_keyed(&keyed)?;
        let source = match vertex.input_pattern {
            None => Some(open_source(&context, deployment.parallelism, offsets).await?),
            Some(_) => None,
        };
        let input_count = deployment.inputs.len();
        let mut gate = (input_count > 0)
            .then(|| InputGate::new(input_count, context.config.checkpointing_mode));
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
            let stream_writer =
                connect_output(&context, index, *output, inbox_sender.clone()).await?;
            writer.connect(index, stream_writer);
        }
        if let Some(state) = channel_state {
            restore_channel_state(&context, state, gate.as_mut(), &mut writer)?;
        }
        let mut sink = open_sink(&context, &mut chain);
        if let Some((writer, io)) = sink.as_mut() {
            writer.recover(io, sink_state).await?;
        }
        let commit_due_at = match context.config.offset_commit {
            OffsetCommit::Periodic(interval) => sim_time::now().add(interval),
            OffsetCommit::InCheckpoints | OffsetCommit::OnRead => Instant(u64::MAX),
        };
        let running = EngineEvent::TaskRunning {
            subtask: context.subtask,
            attempt: context.attempt,
            restored: deployment.restore.as_ref().map(|r| r.checkpoint_id),
        };
        context.hooks.event(&context.node_name, running);
        let checkpoints =
            SubtaskCheckpointCoordinator::new(context.subtask.subtask_index, input_count > 0);
        Ok(Task {
            context,
            chain,
            gate,
            upstream: deployment.inputs.clone(),
            writer,
            source,
            inbox_sender,
            scratch: Vec::new(),
            ended: false,
            commit_due_at,
            records_in: 0,
            checkpoints,
            partial: None,
            sink,
        })
    }

    async fn run(&mut self, inbox: &mut UnboundedReceiver<TaskInput>) -> Result<(), String> {
        // A buffer timeout of 0 flushes after every record (Flink's `setBufferTimeout(0)`): no
        // flush timer then, since a deadline equal to now would never let time advance.
        let buffer_timeout = self.context.config.buffer_timeout;
        let mut flush_due_at =
            (buffer_timeout > Duration::ZERO).then(|| sim_time::now().add(buffer_timeout));
        while !self.ended {
            while let Ok(input) = inbox.try_recv() {
                self.on_input(input).await?;
            }
            let worked = self.step().await?;
            let now = sim_time::now();
            if flush_due_at.map_or(worked, |due| now >= due) {
                self.writer.flush();
                self.write_sink().await?;
                flush_due_at = flush_due_at.map(|_| now.add(buffer_timeout));
            }
            self.auto_commit(now).await;
            self.on_timers(now).await?;
            self.send_ready().await?;
            self.upload_ready();
            if self.ended {
                break;
            }
            if worked {
                sim_time::yield_now().await;
                continue;
            }
            let deadline = [flush_due_at, self.source_due_at(), self.timer_due_at()]
                .into_iter()
                .flatten()
                .min();
            futures::select_biased! {
                input = inbox.next() => match input {
                    Some(input) => self.on_input(input).await?,
                    None => return Err("the task manager dropped the task".to_string()),
                },
                _ = sim_time::sleep_until_opt(deadline).fuse() => {}
            }
        }
        Ok(())
    }

    /// The next alignment deadline: the gate's pending checkpoint, or a barrier waiting in an
    /// output queue.
    fn timer_due_at(&self) -> Option<Instant> {
        let gate = self.gate.as_ref().and_then(|gate| gate.core.timer_due_at());
        [gate, self.checkpoints.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Aligned checkpoints past their deadline turn unaligned, at the gate and at the outputs.
    async fn on_timers(&mut self, now: Instant) -> Result<(), String> {
        let gate_due = self
            .gate
            .as_ref()
            .and_then(|gate| gate.core.timer_due_at())
            .is_some_and(|due| now >= due);
        if gate_due {
            let actions = self
                .gate
                .as_mut()
                .expect("gate")
                .core
                .on_timer(now)
                .map_err(|e| format!("{}: {e}", self.context.subtask))?;
            self.handle_actions(actions).await?;
        }
        self.checkpoints.on_timer(now, &mut self.writer);
        Ok(())
    }

    /// Uploads every pending snapshot whose channel state is complete.
    fn upload_ready(&mut self) {
        while let Some(upload) = self.checkpoints.poll_upload(&self.writer) {
            self.upload(upload);
        }
    }

    fn source_due_at(&self) -> Option<Instant> {
        if self.writer.is_backpressured() || self.checkpoints.is_awaiting_final_checkpoint() {
            return None; // Credit arriving in the mailbox wakes the task.
        }
        self.source.as_ref().and_then(SourceReader::next_due_at)
    }

    /// Does a bounded amount of work; returns whether there was any.
    async fn step(&mut self) -> Result<bool, String> {
        if self.writer.is_backpressured() {
            return Ok(false);
        }
        if self.checkpoints.is_awaiting_final_checkpoint() {
            return Ok(false);
        }
        if self.source.is_some() {
            return self.step_source().await;
        }
        self.step_gate().await
    }

    async fn step_source(&mut self) -> Result<bool, String> {
        let now = sim_time::now();
        let due = self
            .source
            .as_ref()
            .expect("source task")
            .records_due(now)
            .min(TASK_RECORDS_PER_TURN_MAX as u64);
        let mut emitted = 0;
        while emitted < due && !self.writer.is_backpressured() {
            let (rpc, broker, timeout) = (
                self.context.rpc.clone(),
                self.context.services.broker,
                self.context.config.rpc_timeout,
            );
            let source = self.source.as_mut().expect("source task");
            let Some(bytes) = source.next_record(&rpc, broker, timeout).await? else {
                break;
            };
            let value: Value = crate::codec::decode_message(&bytes)
                .map_err(|e| format!("source record does not decode: {e}"))?;
            self.process_record(value).await?;
            emitted += 1;
        }
        if self.source.as_ref().expect("source task").is_done() {
            if self.context.config.sink.kind.commits_on_checkpoints() {
                self.await_final_checkpoint().await;
            } else {
                self.end_of_input().await?;
            }
            return Ok(true);
        }
        Ok(emitted > 0)
    }

    /// Reads records from the gate, a record at a time, for one turn.
    async fn step_gate(&mut self) -> Result<bool, String> {
        let started_at = sim_time::now();
        let mut records = 0;
        while records < TASK_RECORDS_PER_TURN_MAX
            && sim_time::now().since(started_at) < TASK_TURN_DURATION_MAX
            && !self.writer.is_backpressured()
            && !self.ended
        {
            if let Some(partial) = self.partial.as_mut() {
                let value = partial
                    .next_record()
                    .map_err(|e| format!("{}: {e}", self.context.subtask))?;
                if partial.is_consumed() {
                    let partial = self.partial.take().expect("present");
                    self.gate
                        .as_mut()
                        .expect("gate")
                        .on_buffer_consumed(partial.channel, &partial.buffer);
                }
                self.process_record(value).await?;
                records += 1;
                continue;
            }
            let gate = self
                .gate
                .as_mut()
                .expect("a task without source has inputs");
            let Some(polled) = gate.core.poll_next(sim_time::now()) else {
                break;
            };
            match polled.map_err(|e| format!("{}: {e}", self.context.subtask))? {
                Polled::Buffer(channel, buffer) => {
                    self.partial = Some(PartialBuffer::new(channel, buffer));
                }
                Polled::Actions(actions) => {
                    self.handle_actions(actions).await?;
                    records += 1;
                }
            }
        }
        Ok(records > 0)
    }

    async fn process_record(&mut self, value: Value) -> Result<(), String> {
        self.records_in += 1;
        let hooks = &self.context.hooks;
        let RecordFate { fail, fault_fired } = hooks.on_record_begin(self.context.subtask);
        if fail {
            return Err(format!(
                "{}: injected failure while processing record {}",
                self.context.subtask, self.records_in
            ));
        }
        if fault_fired {
            sim_time::yield_now().await; // Lets the injector act while this record is in processing.
        }
        let slowdown = hooks.slowdown(self.chain.uids(), sim_time::now());
        if slowdown > Duration::ZERO {
            sim_time::sleep(slowdown).await;
        }
        let mut out = std::mem::take(&mut self.scratch);
        self.chain
            .process(value, &mut out)
            .map_err(|e| format!("{}: user function failed: {e}", self.context.subtask))?;
        for value in out.drain(..) {
            self.writer.emit(&value);
        }
        self.scratch = out;
        if self.context.config.buffer_timeout == Duration::ZERO {
            self.writer.flush();
        }
        if self.chain.sink_batch_full() {
            self.write_sink().await?;
        }
        Ok(())
    }

    /// Carries out what the barrier handler decided, in order.
    async fn handle_actions(&mut self, actions: Actions) -> Result<(), String> {
        for action in actions {
            match action {
                Action::Block(_) | Action::UnblockAll => {} // The gate asks the handler directly.
                Action::Trigger {
                    barrier,
                    alignment_duration,
                } => {
                    self.snapshot_and_forward(barrier, alignment_duration)
                        .await?;
                    self.persist_unconsumed(&barrier);
                }
                Action::InputStateComplete { checkpoint_id } => {
                    let state = self
                        .gate
                        .as_mut()
                        .and_then(|gate| gate.core.take_input_state(checkpoint_id))
                        .expect("the gate announced it");
                    let buffers = state
                        .into_iter()
                        .map(|channel| channel.into_iter().map(|b| b.buffer).collect())
                        .collect();
                    self.checkpoints
                        .on_input_state_complete(checkpoint_id, buffers);
                }
                Action::Abort {
                    checkpoint_id,
                    reason,
                } => {
                    self.event(EngineEvent::TaskAbortedCheckpoint {
                        subtask: self.context.subtask,
                        checkpoint_id,
                        reason,
                    });
                    self.checkpoints.on_abort(checkpoint_id);
                    self.writer
                        .broadcast_event(ChannelEvent::CancelCheckpointMarker(checkpoint_id));
                }
                Action::AllInputsEnded => self.end_of_input().await?,
            }
        }
        Ok(())
    }

    /// The synchronous part of a snapshot, then the barrier goes downstream. The upload runs
    /// in the background once the channel state is complete, while the task keeps processing.
    async fn snapshot_and_forward(
        &mut self,
        barrier: Barrier,
        alignment_duration: Duration,
    ) -> Result<(), String> {
        // Everything before the barrier goes to the sink first: the plain sink writes it (which
        // makes it at-least-once), a committing sink puts it in the checkpoint's transaction
        // or batch.
        self.write_sink().await?;
        let mut operators: BTreeMap<String, OperatorSnapshot> = self
            .chain
            .snapshot_keyed()
            .into_iter()
            .map(|(uid, s)| (uid, OperatorSnapshot::Keyed(s)))
            .collect();
        if let Some((writer, io)) = self.sink.as_mut() {
            if let Some(state) = writer.pre_commit(io, barrier.checkpoint_id) {
                let uid = self.chain.uids().last().expect("a chain").clone();
                operators.insert(uid, OperatorSnapshot::Sink(state));
            }
        }
        if let Some(source) = &self.source {
            let uid = self.chain.uids()[0].clone();
            operators.insert(uid, OperatorSnapshot::Source(source.offsets()));
        }
        let output = self.writer.broadcast_barrier(barrier);
        self.checkpoints.on_snapshot_taken(SyncSnapshot {
            barrier,
            alignment_duration,
            operators,
            output,
        });
        Ok(())
    }

    /// An unaligned snapshot taken in the middle of a buffer: the rest of it is in flight.
    fn persist_unconsumed(&mut self, barrier: &Barrier) {
        let (Some(partial), Some(gate)) = (self.partial.as_ref(), self.gate.as_mut()) else {
            return;
        };
        if barrier.is_unaligned() {
            let rest = GateBuffer {
                buffer: partial.rest(),
                credited: false,
            };
            gate.core
                .add_unconsumed(barrier.checkpoint_id, partial.channel, rest);
        }
    }

    /// Writes a complete snapshot to checkpoint storage in the background; the result comes
    /// back through the mailbox.
    fn upload(&mut self, upload: Upload) {
        let Upload {
            checkpoint_id,
            snapshot,
        } = upload;
        let path = task_state_path(checkpoint_id, self.context.subtask);
        let storage = self.context.storage();
        let inbox = self.inbox_sender.clone();
        madsim::task::spawn(async move {
            let result = storage
                .write(FileKind::TaskState, &path, &snapshot)
                .await
                .map(|state_size_bytes| Uploaded {
                    state_path: path,
                    state_size_bytes,
                });
            let _ = inbox.unbounded_send(TaskInput::UploadDone {
                checkpoint_id,
                result,
            });
        });
    }

    async fn on_input(&mut self, input: TaskInput) -> Result<(), String> {
        match input {
            TaskInput::InputConnected { channel, writer } => {
                let gate = self
                    .gate
                    .as_mut()
                    .ok_or("a source task got an input connection")?;
                if !gate.connect(channel, writer) {
                    return Err(format!(
                        "{}: input channel {} connected twice",
                        self.context.subtask, channel.0
                    ));
                }
            }
            TaskInput::Frame { channel, frame } => {
                let gate = self
                    .gate
                    .as_mut()
                    .ok_or("a source task got an input frame")?;
                let actions = gate
                    .on_frame(sim_time::now(), channel, frame)
                    .map_err(|e| format!("{}: {e}", self.context.subtask))?;
                self.handle_actions(actions).await?;
            }
            TaskInput::InputClosed { channel, error } => {
                let gate = self
                    .gate
                    .as_ref()
                    .ok_or("a source task got an input close")?;
                if !gate.has_ended(channel) {
                    let upstream = self.upstream[channel.0 as usize];
                    return Err(format!(
                        "{}: input channel from {upstream} broke: {}",
                        self.context.subtask,
                        error.unwrap_or_else(|| "connection closed".into())
                    ));
                }
            }
            TaskInput::Credit { output, credit } => self.writer.on_credit(output, credit),
            TaskInput::OutputClosed { output } => {
                if !self.ended {
                    return Err(format!(
                        "{}: output channel to {} broke",
                        self.context.subtask,
                        self.writer.target(output)
                    ));
                }
            }
            TaskInput::Trigger(barrier) => self.on_trigger(barrier).await?,
            TaskInput::CheckpointComplete(checkpoint_id) => {
                if let Some((writer, io)) = self.sink.as_mut() {
                    writer.on_checkpoint_complete(io, checkpoint_id).await?;
                }
            }
            TaskInput::FinishSource => {
                if self.checkpoints.is_awaiting_final_checkpoint() {
                    self.end_of_input().await?;
                }
            }
            TaskInput::UploadDone {
                checkpoint_id,
                result,
            } => self.on_upload_done(checkpoint_id, result).await,
        }
        Ok(())
    }

    async fn on_trigger(&mut self, barrier: Barrier) -> Result<(), String> {
        if self.source.is_none() {
            return Err(format!(
                "{}: a trigger reached a task that is not a source",
                self.context.subtask
            ));
        }
        if let Err(reason) = self.checkpoints.on_source_trigger() {
            self.decline(barrier.checkpoint_id, reason).await;
            return Ok(());
        }
        self.snapshot_and_forward(barrier, Duration::ZERO).await?;
        self.upload_ready();
        Ok(())
    }

    async fn on_upload_done(
        &mut self,
        checkpoint_id: CheckpointId,
        result: Result<Uploaded, String>,
    ) {
        let message = match self.checkpoints.on_upload_done(checkpoint_id, result) {
            Report::Acknowledge(ack) => ControlMessage::AcknowledgeCheckpoint {
                attempt: self.context.attempt,
                subtask: self.context.subtask,
                checkpoint_id,
                ack,
            },
            Report::Decline(reason) => return self.decline(checkpoint_id, reason).await,
        };
        self.context
            .control
            .send(self.context.services.jobmanager, &message)
            .await;
    }

    async fn decline(&mut self, checkpoint_id: CheckpointId, reason: DeclineReason) {
        let message = ControlMessage::DeclineCheckpoint {
            attempt: self.context.attempt,
            subtask: self.context.subtask,
            checkpoint_id,
            reason,
        };
        self.context
            .control
            .send(self.context.services.jobmanager, &message)
            .await;
    }

    async fn end_of_input(&mut self) -> Result<(), String> {
        assert!(!self.ended, "input ends once");
        self.checkpoints.on_end_of_input();
        self.write_sink().await?;
        self.writer.broadcast_event(ChannelEvent::EndOfPartition);
        self.ended = true;
        Ok(())
    }

    /// Sends what credit allows and returns pending credits upstream.
    async fn send_ready(&mut self) -> Result<(), String> {
        self.writer.send_ready().await?;
        if let Some(gate) = self.gate.as_mut() {
            gate.send_credits().await?;
        }
        Ok(())
    }

    /// A source read all its input and a committing sink needs a checkpoint after the last
    /// record: the source stays up, answering triggers, until the job manager says the final
    /// checkpoint completed (FLIP-147's final checkpoint).
    async fn await_final_checkpoint(&mut self) {
        self.checkpoints.await_final_checkpoint();
        self.event(EngineEvent::SourceAwaitsFinalCheckpoint {
            subtask: self.context.subtask,
        });
        let message = ControlMessage::EndOfData {
            attempt: self.context.attempt,
            subtask: self.context.subtask,
        };
        self.context
            .control
            .send(self.context.services.jobmanager, &message)
            .await;
    }

    /// After end of input: waits until every buffer is sent and every pre-committed
    /// transaction or batch is committed, then reports the final state.
    async fn finish(&mut self, inbox: &mut UnboundedReceiver<TaskInput>) -> Result<(), String> {
        if let Some((writer, _)) = &self.sink {
            let uncovered = writer.uncovered_records();
            if uncovered > 0 {
                return Err(format!(
                    "{}: {uncovered} records reached the sink after the final checkpoint",
                    self.context.subtask
                ));
            }
        }
        self.send_ready().await?;
        while !self.writer.is_drained()
            || self.sink.as_ref().is_some_and(|(w, _)| w.awaits_commit())
        {
            match inbox.next().await {
                Some(input) => self.on_input(input).await?,
                None => return Err("the task manager dropped the task".to_string()),
            }
            self.send_ready().await?;
            self.upload_ready();
        }
        let keyed: BTreeMap<String, KeyedStateSnapshot> = self.chain.snapshot_keyed();
        let records_written = self.chain.sink().map(|s| s.records_written).unwrap_or(0);
        self.event(EngineEvent::TaskFinished {
            subtask: self.context.subtask,
            attempt: self.context.attempt,
            records_in: self.records_in,
            records_out: self.writer.records_out,
            records_written,
            keyed,
        });
        Ok(())
    }

    /// Hands the sink operator's collected records to the sink.
    async fn write_sink(&mut self) -> Result<(), String> {
        let Some(buffer) = self.chain.sink() else {
            return Ok(());
        };
        if buffer.pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut buffer.pending);
        let count = records.len() as u64;
        let (writer, io) = self
            .sink
            .as_mut()
            .expect("a chain with a sink has a sink writer");
        writer.write(io, records).await?;
        self.chain.sink().expect("sink").records_written += count;
        Ok(())
    }

    /// With checkpointing off, the source commits its offsets to the broker periodically
    /// (Kafka's auto-commit); a restart resumes from them.
    async fn auto_commit(&mut self, now: Instant) {
        let OffsetCommit::Periodic(interval) = self.context.config.offset_commit else {
            return;
        };
        if now < self.commit_due_at {
            return;
        }
        self.commit_due_at = now.add(interval);
        let Some(source) = &self.source else { return };
        let topic = source_topic(&self.context);
        for (partition, offset) in source.offsets().next_offsets {
            let request = BrokerRequest::CommitOffset {
                group: consumer_group(&self.context),
                topic: topic.clone(),
                partition,
                offset,
                generation: self.context.attempt.0,
            };
            // A lost commit only means the restart re-reads a little more.
            let _ = self
                .context
                .rpc
                .call::<_, BrokerResponse>(
                    self.context.services.broker,
                    &request,
                    self.context.config.rpc_timeout,
                    true,
                )
                .await;
        }
    }
}

fn source_topic(context: &TaskContext) -> String {
    match &context.graph.job.operators[0].kind {
        crate::api::job::OperatorKind::Source { topic } => topic.clone(),
        _ => unreachable!("the job validator puts a source first"),
    }
}

fn consumer_group(context: &TaskContext) -> String {
    format!("snapflow-{}", context.graph.job.name)
}

/// Opens the source at the restored offsets, the committed ones (checkpointing off), or the
/// earliest.
async fn open_source(
    context: &TaskContext,
    parallelism: u32,
    restored: Option<SourceOffsets>,
) -> Result<SourceReader, String> {
    let topic = source_topic(context);
    let (rpc, broker, timeout) = (
        &context.rpc,
        context.services.broker,
        context.config.rpc_timeout,
    );
    let partition_count = match rpc
        .call(
            broker,
            &BrokerRequest::PartitionCount {
                topic: topic.clone(),
            },
            timeout,
            true,
        )
        .await?
    {
        BrokerResponse::Partitions(count) => count,
        other => return Err(format!("broker answered a partition count with {other:?}")),
    };
    let partitions = ExecutionGraph::source_partitions(
        context.subtask.subtask_index,
        parallelism,
        partition_count,
    );
    let mut offsets = restored.unwrap_or_default();
    if context.config.offset_commit != OffsetCommit::InCheckpoints {
        for &partition in &partitions {
            let request = BrokerRequest::CommittedOffset {
                group: consumer_group(context),
                topic: topic.clone(),
                partition,
                generation: context.attempt.0,
            };
            if let BrokerResponse::Offset(Some(offset)) =
                rpc.call(broker, &request, timeout, true).await?
            {
                offsets.next_offsets.insert(partition, offset);
            }
        }
    }
    let mut reader = SourceReader::new(
        &topic,
        &offsets,
        &partitions,
        context.config.source_records_per_second,
        sim_time::now(),
    );
    if context.config.offset_commit == OffsetCommit::OnRead {
        reader.commit_on_read(&consumer_group(context), context.attempt.0);
    }
    Ok(reader)
}

/// What a task restores: keyed state by operator (every subtask's, to redistribute by key
/// group), the sources' offsets, and this subtask's own channel state and sink state.
#[derive(Default)]
struct RestoredState {
    keyed: BTreeMap<String, Vec<KeyedStateSnapshot>>,
    offsets: Option<SourceOffsets>,
    channel_state: Option<ChannelStateSnapshot>,
    sink: Option<SinkStateSnapshot>,
}

/// The sink writer of a task whose chain ends in the sink.
fn open_sink(context: &TaskContext, chain: &mut OperatorChain) -> Option<(SinkWriter, SinkIo)> {
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
    Some((SinkWriter::new(&context.config.sink), io))
}

/// Reads the state files of this task's vertex and sorts them by operator.
async fn restore_state(context: &TaskContext, paths: &[String]) -> Result<RestoredState, String> {
    let storage = context.storage();
    let mut restored = RestoredState::default();
    for path in paths {
        let snapshot: TaskStateSnapshot = storage.read(FileKind::TaskState, path).await?;
        for (uid, operator) in snapshot.operators {
            match operator {
                OperatorSnapshot::Keyed(state) => {
                    restored.keyed.entry(uid).or_default().push(state)
                }
                // Union redistribution: every subtask sees all offsets and keeps its partitions.
                OperatorSnapshot::Source(source) => restored
                    .offsets
                    .get_or_insert_with(SourceOffsets::default)
                    .next_offsets
                    .extend(source.next_offsets),
                // A sink's pre-committed work belongs to the subtask that pre-committed it.
                OperatorSnapshot::Sink(sink)
                    if sink.subtask_index == context.subtask.subtask_index =>
                {
                    restored.sink = Some(sink)
                }
                OperatorSnapshot::Sink(_) => {}
            }
        }
        if let Some(channel_state) = snapshot.channel_state {
            if channel_state.subtask_index == context.subtask.subtask_index {
                restored.channel_state = Some(channel_state);
            }
        }
    }
    Ok(restored)
}

/// Replays this subtask's in-flight data: input buffers go into the gate ahead of anything
/// that arrives, output buffers into the output queues ahead of any new output.
fn restore_channel_state(
    context: &TaskContext,
    state: ChannelStateSnapshot,
    gate: Option<&mut InputGate>,
    writer: &mut RecordWriter,
) -> Result<(), String> {
    let fail = |e: String| format!("{}: restoring channel state: {e}", context.subtask);
    let records = state.records();
    match gate {
        Some(gate) => gate.restore(state.input).map_err(fail)?,
        None if state.input.iter().all(Vec::is_empty) => {}
        None => return Err(fail("a source has no input channels".to_string())),
    }
    writer.restore(state.output).map_err(fail)?;
    if records > 0 {
        let event = EngineEvent::InFlightReplayed {
            subtask: context.subtask,
            records,
        };
        context.hooks.event(&context.node_name, event);
    }
    Ok(())
}

/// Connects output channel `index` to its consumer and starts reading credit from it.
async fn connect_output(
    context: &TaskContext,
    index: usize,
    output: OutputChannel,
    inbox: UnboundedSender<TaskInput>,
) -> Result<WriteHalf<TcpStream>, String> {
    let OutputChannel {
        target,
        channel,
        address,
    } = output;
    let hello = DataFrame::Hello {
        attempt: context.attempt,
        source: context.subtask,
        target,
        channel,
    };
    let mut last_error = String::new();
    for _ in 0..CHANNEL_CONNECT_ATTEMPTS_MAX {
        match TcpStream::connect(address).await {
            Ok(mut stream) => {
                write_frame(&mut stream, &hello)
                    .await
                    .map_err(|e| format!("channel to {target}: {e}"))?;
                let (mut reader, writer) = tokio::io::split(stream);
                madsim::task::spawn(async move {
                    while let Ok(Some(DataFrame::Credit(credit))) = read_frame(&mut reader).await {
                        if inbox
                            .unbounded_send(TaskInput::Credit {
                                output: index,
                                credit,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    let _ = inbox.unbounded_send(TaskInput::OutputClosed { output: index });
                });
                return Ok(writer);
            }
            Err(error) => last_error = error.to_string(),
        }
        sim_time::sleep(Duration::from_ms(100)).await;
    }
    Err(format!(
        "{}: cannot connect channel to {target} at {address}: {last_error}",
        context.subtask
    ))
}
