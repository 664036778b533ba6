//! One subtask's life: restore, connect, then the mailbox loop that moves records from the
//! input gate (or the source) through the operator chain to the record writer, and turns
//! barrier-handler actions into snapshots. Protocol decisions live in the sans-IO cores
//! (barrier handler, credit accounting); this driver only moves events and bounds each turn.

use crate::api::value::Value;
use crate::checkpoint::subtask_checkpoint::SubtaskCheckpointCoordinator;
use crate::connectors::source_reader::SourceReader;
use crate::ids::CheckpointId;
use crate::limits::{TASK_RECORDS_PER_TURN_MAX, TASK_TURN_DURATION_MAX};
use crate::runtime::deployment::TaskDeployment;
use crate::runtime::hooks::{EngineEvent, RecordFate};
use crate::runtime::messages::{ChannelEvent, ControlMessage, TaskStatus};
use crate::runtime::network_input::{NetworkInput, NextInput};
use crate::runtime::operator_chain::OperatorChain;
use crate::runtime::record_writer::RecordWriter;
use crate::runtime::sim_time::{self, Alarm, Clock};
use crate::runtime::sink_operator::SinkOperator;
use crate::runtime::source_operator::SourceOperator;
use crate::runtime::task_context::TaskContext;
use crate::runtime::task_error::TaskError;
use crate::runtime::task_mailbox::{Mailbox, MailboxSender, TaskInput};
use crate::runtime::task_setup::{set_up, TaskParts};
use crate::state::snapshot::KeyedStateSnapshot;
use crate::time::{Duration, Instant};
use futures::{FutureExt, StreamExt};
use std::collections::BTreeMap;

mod checkpointing;

struct Task {
    context: TaskContext,
    chain: OperatorChain,
    input: Option<NetworkInput>,
    writer: RecordWriter,
    source: Option<SourceOperator>,
    inbox_sender: MailboxSender,
    scratch: Vec<Value>,
    ended: bool,
    records_in: u64,
    checkpoints: SubtaskCheckpointCoordinator,
    // The sink, when this task's chain ends in it.
    sink: Option<SinkOperator>,
    // A source that forwarded a stop-with-savepoint barrier emits nothing more: it ends when
    // the savepoint completes, or reads on if it is aborted.
    stopped_at: Option<CheckpointId>,
    // The processing-time timers stopped at this stop-with-savepoint's snapshot; they run
    // again if it is aborted.
    timers_stopped_at: Option<CheckpointId>,
    // Every input reached its end of data (or this source did): the timers stopped for good,
    // and downstream was told.
    end_of_data: bool,
    clock: Clock,
}

/// Runs a task to its end. `Ok` means all input was consumed; `Err` fails the job over.
pub async fn run_task(
    context: TaskContext,
    deployment: TaskDeployment,
    mut inbox: Mailbox,
    inbox_sender: MailboxSender,
) -> Result<(), TaskError> {
    let mut task = Task::deploy(context, &deployment, inbox_sender).await?;
    let running = ControlMessage::TaskStatusChanged {
        attempt: task.context.attempt,
        subtask: task.context.subtask,
        status: TaskStatus::Running,
    };
    task.context.send_to_jobmanager(&running).await;
    task.run(&mut inbox).await?;
    task.finish(&mut inbox).await
}

/// What one turn of a task's work left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Turn {
    /// There was nothing to do.
    Idle,
    /// It did work and ran out of it: the task sleeps until its next deadline or mail.
    Drained,
    /// It stopped at the turn's budget with more ready: the task yields and goes on.
    MoreReady,
}

impl Task {
    async fn deploy(
        context: TaskContext,
        deployment: &TaskDeployment,
        inbox_sender: MailboxSender,
    ) -> Result<Task, TaskError> {
        let TaskParts {
            chain,
            input,
            writer,
            source,
            sink,
        } = set_up(&context, deployment, inbox_sender.clone()).await?;
        context.event(EngineEvent::TaskRunning {
            subtask: context.subtask,
            attempt: context.attempt,
            restored: deployment.restore.as_ref().map(|r| r.checkpoint_id),
        });
        let checkpoints =
            SubtaskCheckpointCoordinator::new(context.subtask.subtask_index, input.is_some())
                .with_chain(chain.uids().to_vec());
        Ok(Task {
            context,
            chain,
            input,
            writer,
            source,
            inbox_sender,
            scratch: Vec::new(),
            ended: false,
            records_in: 0,
            checkpoints,
            sink,
            stopped_at: None,
            timers_stopped_at: None,
            end_of_data: false,
            clock: Clock::current(),
        })
    }

    async fn run(&mut self, inbox: &mut Mailbox) -> Result<(), TaskError> {
        // A buffer timeout of 0 flushes after every record (Flink's `setBufferTimeout(0)`): no
        // flush timer then, since a deadline equal to now would never let time advance.
        let buffer_timeout = self.context.config.buffer_timeout;
        let mut flush_due_at =
            (buffer_timeout > Duration::ZERO).then(|| self.clock.now().add(buffer_timeout));
        let mut alarm = Alarm::default();
        while !self.ended {
            while let Ok(input) = inbox.try_recv() {
                self.on_input(input).await?;
            }
            if self.ended {
                break; // The input ended meanwhile (a source told to finish).
            }
            let turn = self.step().await?;
            let worked = turn != Turn::Idle;
            let now = self.clock.now();
            if flush_due_at.map_or(worked, |due| now >= due) {
                self.writer.flush();
                self.write_sink().await?;
                flush_due_at = flush_due_at.map(|_| now.add(buffer_timeout));
            }
            if let Some(source) = self.source.as_mut() {
                source.auto_commit(&self.context, now).await;
            }
            self.on_timers(now).await?;
            self.send_ready().await?;
            self.upload_ready();
            if self.ended {
                break;
            }
            if turn == Turn::MoreReady {
                sim_time::yield_now().await;
                continue;
            }
            // Idle, or the work ran out: sleep until the next deadline or mail. A second pass
            // now would find nothing (the mail is what it would have looked at).
            let deadline = [flush_due_at, self.source_due_at(), self.timer_due_at()]
                .into_iter()
                .flatten()
                .min();
            futures::select_biased! {
                input = inbox.next() => match input {
                    Some(input) => self.on_input(input).await?,
                    None => return Err(TaskError::Dropped),
                },
                _ = alarm.wait_until(deadline).fuse() => {}
            }
        }
        Ok(())
    }

    fn source_due_at(&self) -> Option<Instant> {
        if self.writer.is_backpressured()
            || self.checkpoints.is_awaiting_final_checkpoint()
            || self.stopped_at.is_some()
        {
            return None; // Credit arriving in the mailbox wakes the task.
        }
        self.source.as_ref().and_then(|s| s.reader.next_due_at())
    }

    /// Does a bounded amount of work.
    async fn step(&mut self) -> Result<Turn, TaskError> {
        if self.writer.is_backpressured() {
            return Ok(Turn::Idle);
        }
        if self.checkpoints.is_awaiting_final_checkpoint() || self.stopped_at.is_some() {
            return Ok(Turn::Idle);
        }
        if self.source.is_some() {
            return self.step_source().await;
        }
        self.step_gate().await
    }

    async fn step_source(&mut self) -> Result<Turn, TaskError> {
        let now = self.clock.now();
        let all_due = self.reader().records_due(now);
        let due = all_due.min(TASK_RECORDS_PER_TURN_MAX as u64);
        let mut emitted = 0;
        while emitted < due && !self.writer.is_backpressured() {
            let source = self.source.as_mut().expect("source task");
            let value = match source.poll_fetched(&self.context) {
                Some(fetched) => fetched?,
                None => match source.poll_record(&self.context).await? {
                    Some(value) => value,
                    None => break,
                },
            };
            // The per-record path, inline: a future per record cost more than the record's chain.
            if let Some(count) = self.begin_record() {
                self.probe_record(count).await?;
            }
            self.run_chain(value)?;
            if self.chain.sink_batch_full() {
                self.write_sink().await?;
            }
            emitted += 1;
        }
        if self.reader().is_done() {
            if self.context.config.sink.kind.commits_on_checkpoints() {
                self.await_final_checkpoint().await;
            } else {
                self.end_of_input().await?;
            }
            return Ok(Turn::MoreReady);
        }
        Ok(match emitted {
            0 => Turn::Idle,
            _ if emitted < all_due && !self.writer.is_backpressured() => Turn::MoreReady,
            _ => Turn::Drained,
        })
    }

    fn reader(&self) -> &SourceReader {
        &self.source.as_ref().expect("source task").reader
    }

    /// Reads records from the gate, a record at a time, for one turn.
    async fn step_gate(&mut self) -> Result<Turn, TaskError> {
        let started_at = self.clock.now();
        let mut records = 0;
        let mut outcome = Turn::Drained;
        loop {
            // One reading of the clock per record: nothing between here and the poll awaits.
            let now = self.clock.now();
            if records >= TASK_RECORDS_PER_TURN_MAX
                || now.since(started_at) >= TASK_TURN_DURATION_MAX
            {
                outcome = Turn::MoreReady;
                break;
            }
            if self.writer.is_backpressured() || self.ended {
                break;
            }
            // Timers due fire before the next record or barrier, as their mail comes first in
            // Flink's mailbox.
            if self.chain.reads_processing_time() {
                self.advance_processing_time(now).await?;
            }
            let input = self
                .input
                .as_mut()
                .expect("a task without source has inputs");
            match input.poll_next(now)? {
                None => break,
                Some(NextInput::Record(value)) => {
                    if let Some(count) = self.begin_record() {
                        self.probe_record(count).await?;
                    }
                    self.run_chain(value)?;
                    if self.chain.sink_batch_full() {
                        self.write_sink().await?;
                    }
                }
                Some(NextInput::Actions(actions)) => self.handle_actions(actions).await?,
                Some(NextInput::EndOfData) => self.on_end_of_data(),
            }
            records += 1;
        }
        Ok(if records == 0 { Turn::Idle } else { outcome })
    }

    /// A record begins: its count, if the hooks must hear of it (with no fault armed for this
    /// subtask, a record asks the hooks nothing).
    fn begin_record(&mut self) -> Option<u64> {
        self.records_in += 1;
        self.context.record_probe.begin()
    }

    /// The hooks hear of record `count`: it may fail, let a fault act while it is in
    /// processing, or be slowed down.
    async fn probe_record(&mut self, count: u64) -> Result<(), TaskError> {
        let hooks = &self.context.hooks;
        let RecordFate { fail, fault_fired } = hooks.on_record_begin(self.context.subtask, count);
        if fail {
            return Err(TaskError::InjectedFailure {
                subtask: self.context.subtask,
                record: self.records_in,
            });
        }
        if fault_fired {
            sim_time::yield_now().await; // Lets the injector act while this record is in processing.
        }
        let slowdown = hooks.slowdown(self.chain.uids(), self.clock.now());
        if slowdown > Duration::ZERO {
            sim_time::sleep(slowdown).await;
        }
        Ok(())
    }

    /// Runs one record through the chain and emits what leaves it (nothing here awaits).
    fn run_chain(&mut self, value: Value) -> Result<(), TaskError> {
        let (out, writer) = (&mut self.scratch, &mut self.writer);
        let processed = self.chain.process(value, out);
        processed.map_err(|error| TaskError::UserFunction {
            subtask: self.context.subtask,
            message: error.to_string(),
        })?;
        out.iter().for_each(|value| writer.emit(value));
        out.clear();
        if self.context.config.buffer_timeout == Duration::ZERO {
            self.writer.flush();
        }
        Ok(())
    }

    /// Processing time reaches `now`: the chain's timers due by then fire, and what they emit
    /// goes downstream.
    async fn advance_processing_time(&mut self, now: Instant) -> Result<(), TaskError> {
        if !self.chain.reads_processing_time() {
            return Ok(()); // The per-record path of a chain without timers or TTL.
        }
        let mut out = std::mem::take(&mut self.scratch);
        self.chain
            .advance_processing_time(now.as_ms(), &mut out)
            .map_err(|error| TaskError::UserFunction {
                subtask: self.context.subtask,
                message: error.to_string(),
            })?;
        let fired = !out.is_empty();
        for value in out.drain(..) {
            self.writer.emit(&value);
        }
        self.scratch = out;
        if fired && self.chain.sink_batch_full() {
            self.write_sink().await?;
        }
        Ok(())
    }

    fn network_input(&mut self, what: &'static str) -> Result<&mut NetworkInput, TaskError> {
        let subtask = self.context.subtask;
        self.input
            .as_mut()
            .ok_or(TaskError::InputAtSource { subtask, what })
    }

    async fn on_input(&mut self, input: TaskInput) -> Result<(), TaskError> {
        match input {
            TaskInput::InputConnected { channel, writer } => self
                .network_input("an input connection")?
                .on_connected(channel, writer)?,
            TaskInput::Frame { channel, frame } => {
                let now = sim_time::now();
                let input = self.network_input("an input frame")?;
                let actions = input.on_frame(now, channel, frame)?;
                if !actions.is_empty() {
                    self.advance_processing_time(now).await?;
                }
                self.handle_actions(actions).await?;
            }
            TaskInput::InputClosed { channel, error } => self
                .network_input("an input close")?
                .on_closed(channel, error)?,
            TaskInput::Credit { output, credit } => self.writer.on_credit(output, credit),
            TaskInput::OutputClosed { output } => {
                if !self.ended {
                    return Err(TaskError::OutputClosed {
                        subtask: self.context.subtask,
                        target: self.writer.target(output),
                    });
                }
            }
            TaskInput::Trigger(barrier) => self.on_trigger(barrier).await?,
            TaskInput::CheckpointComplete(checkpoint_id) => {
                if let Some(sink) = self.sink.as_mut() {
                    sink.on_checkpoint_complete(checkpoint_id).await?;
                }
            }
            TaskInput::CheckpointAborted(checkpoint_id) => {
                if self.stopped_at == Some(checkpoint_id) {
                    self.stopped_at = None; // The stop failed: the source reads on.
                }
                if self.timers_stopped_at == Some(checkpoint_id) {
                    self.timers_stopped_at = None;
                    self.chain.quiesce_processing_time(self.end_of_data);
                }
            }
            TaskInput::FinishSource => {
                let waiting = self.checkpoints.is_awaiting_final_checkpoint();
                if (waiting || self.stopped_at.is_some()) && !self.ended {
                    self.end_of_input().await?;
                }
            }
            TaskInput::EndInput => {
                let reading = !self.ended && !self.checkpoints.is_awaiting_final_checkpoint();
                if self.source.is_some() && reading {
                    self.await_final_checkpoint().await;
                }
            }
            TaskInput::UploadDone {
                checkpoint_id,
                result,
            } => self.on_upload_done(checkpoint_id, result).await,
        }
        Ok(())
    }

    /// No more records come (FLIP-147's end of data): the timers stop for good and the
    /// outputs say so, ahead of the final checkpoint's barrier and the end of partition.
    fn on_end_of_data(&mut self) {
        if std::mem::replace(&mut self.end_of_data, true) {
            return;
        }
        self.chain.quiesce_processing_time(true);
        self.writer.broadcast_event(ChannelEvent::EndOfData);
    }

    /// A terminating savepoint's snapshot was taken: nothing may follow it downstream, so
    /// the timers stop until it completes (or run again if it is aborted).
    fn stop_timers_for(&mut self, checkpoint_id: CheckpointId) {
        self.timers_stopped_at = Some(checkpoint_id);
        self.chain.quiesce_processing_time(true);
    }

    async fn end_of_input(&mut self) -> Result<(), TaskError> {
        assert!(!self.ended, "input ends once");
        self.on_end_of_data();
        self.checkpoints.on_end_of_input();
        self.write_sink().await?;
        self.writer.broadcast_event(ChannelEvent::EndOfPartition);
        self.ended = true;
        Ok(())
    }

    /// Sends what credit allows and returns pending credits upstream.
    async fn send_ready(&mut self) -> Result<(), TaskError> {
        self.writer.send_ready().await?;
        if let Some(input) = self.input.as_mut() {
            input.gate.send_credits().await;
        }
        Ok(())
    }

    /// A source read all its input and a committing sink needs a checkpoint after the last
    /// record: the source stays up, answering triggers, until the job manager says the final
    /// checkpoint completed (FLIP-147's final checkpoint).
    async fn await_final_checkpoint(&mut self) {
        self.on_end_of_data();
        self.checkpoints.await_final_checkpoint();
        self.context
            .event(EngineEvent::SourceAwaitsFinalCheckpoint {
                subtask: self.context.subtask,
            });
        let message = ControlMessage::EndOfData {
            attempt: self.context.attempt,
            subtask: self.context.subtask,
        };
        self.context.send_to_jobmanager(&message).await;
    }

    /// After end of input: waits until every buffer is sent and every pre-committed
    /// transaction or batch is committed, then reports the final state.
    async fn finish(&mut self, inbox: &mut Mailbox) -> Result<(), TaskError> {
        if let Some(sink) = &self.sink {
            let uncovered = sink.uncovered_records();
            if uncovered > 0 {
                return Err(TaskError::UncoveredRecords {
                    subtask: self.context.subtask,
                    records: uncovered,
                });
            }
        }
        self.send_ready().await?;
        while !self.writer.is_drained()
            || self.sink.as_ref().is_some_and(SinkOperator::awaits_commit)
        {
            match inbox.next().await {
                Some(input) => self.on_input(input).await?,
                None => return Err(TaskError::Dropped),
            }
            self.send_ready().await?;
            self.upload_ready();
        }
        let keyed: BTreeMap<String, KeyedStateSnapshot> =
            self.chain
                .snapshot_keyed()
                .map_err(|error| TaskError::UserFunction {
                    subtask: self.context.subtask,
                    message: error.to_string(),
                })?;
        let records_written = self.chain.sink().map(|s| s.records_written).unwrap_or(0);
        self.context.event(EngineEvent::TaskFinished {
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
    async fn write_sink(&mut self) -> Result<(), TaskError> {
        match self.sink.as_mut() {
            Some(sink) => Ok(sink.write_pending(&mut self.chain).await?),
            None => Ok(()),
        }
    }
}
