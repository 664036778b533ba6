//! The task's side of checkpointing (the I/O around the sans-IO `SubtaskCheckpointCoordinator`,
//! as Flink's `SubtaskCheckpointCoordinatorImpl` does it): carrying out the barrier handler's
//! actions, the synchronous snapshot with the barrier forwarded, triggers at a source, the
//! alignment timers of the gate and the outputs, and the uploads with their acks or declines.

use super::Task;
use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_protocol::{Action, Actions};
use crate::checkpoint::storage::StorageError;
use crate::checkpoint::subtask_checkpoint::{Report, SyncSnapshot, Uploaded};
use crate::ids::CheckpointId;
use crate::runtime::checkpoint_responder::{acknowledge, decline, spawn_upload};
use crate::runtime::hooks::EngineEvent;
use crate::runtime::messages::ChannelEvent;
use crate::runtime::network_input::NetworkInput;
use crate::runtime::task_error::TaskError;
use crate::time::{Duration, Instant};

impl Task {
    /// The next alignment deadline: the gate's pending checkpoint, or a barrier waiting in an
    /// output queue.
    pub(super) fn timer_due_at(&self) -> Option<Instant> {
        let gate = self.input.as_ref().and_then(NetworkInput::timer_due_at);
        let processing_timer = self.chain.next_timer().map(Instant::from_ms);
        [gate, self.checkpoints.poll_timeout(), processing_timer]
            .into_iter()
            .flatten()
            .min()
    }

    /// Aligned checkpoints past their deadline turn unaligned, at the gate and at the outputs.
    pub(super) async fn on_timers(&mut self, now: Instant) -> Result<(), TaskError> {
        self.advance_processing_time(now).await?;
        if let Some(input) = self.input.as_mut() {
            let actions = input.on_timer(now)?;
            self.handle_actions(actions).await?;
        }
        self.checkpoints.on_timer(now, &mut self.writer);
        Ok(())
    }

    /// Uploads every pending snapshot whose channel state is complete.
    pub(super) fn upload_ready(&mut self) {
        while let Some(upload) = self.checkpoints.poll_upload(&self.writer) {
            spawn_upload(&self.context, upload, self.inbox_sender.clone());
        }
    }

    /// Carries out what the barrier handler decided, in order.
    pub(super) async fn handle_actions(&mut self, actions: Actions) -> Result<(), TaskError> {
        for action in actions {
            match action {
                Action::Block(_) | Action::UnblockAll => {} // The gate asks the handler directly.
                Action::Trigger {
                    barrier,
                    alignment_duration,
                } => {
                    self.snapshot_and_forward(barrier, alignment_duration)
                        .await?;
                    if let Some(input) = self.input.as_mut() {
                        input.persist_unconsumed(&barrier);
                    }
                }
                Action::InputStateComplete { checkpoint_id } => {
                    let input = self
                        .input
                        .as_mut()
                        .expect("only a gate completes input state");
                    let state = input.take_input_state(checkpoint_id);
                    self.checkpoints
                        .on_input_state_complete(checkpoint_id, state);
                }
                Action::Abort {
                    checkpoint_id,
                    reason,
                } => {
                    self.context.event(EngineEvent::TaskAbortedCheckpoint {
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
    ) -> Result<(), TaskError> {
        // Everything before the barrier goes to the sink first: the plain sink writes it (which
        // makes it at-least-once), a committing sink puts it in the checkpoint's transaction
        // or batch.
        self.write_sink().await?;
        let sink = self.sink.as_mut();
        let sink_state = sink.and_then(|sink| sink.pre_commit(barrier.checkpoint_id));
        let offsets = self.source.as_ref().map(|source| source.reader.offsets());
        let operators = self
            .chain
            .snapshot_operators(offsets, sink_state)
            .map_err(|error| TaskError::UserFunction {
                subtask: self.context.subtask,
                message: error.to_string(),
            })?;
        let output = self.writer.broadcast_barrier(barrier);
        if barrier.snapshot.terminates() {
            self.stop_timers_for(barrier.checkpoint_id);
        }
        self.checkpoints.on_snapshot_taken(SyncSnapshot {
            barrier,
            alignment_duration,
            operators,
            output,
        });
        Ok(())
    }

    pub(super) async fn on_trigger(&mut self, barrier: Barrier) -> Result<(), TaskError> {
        if self.source.is_none() {
            return Err(TaskError::TriggerAtNonSource {
                subtask: self.context.subtask,
            });
        }
        if let Err(reason) = self.checkpoints.on_source_trigger() {
            decline(&self.context, barrier.checkpoint_id, reason).await;
            return Ok(());
        }
        self.snapshot_and_forward(barrier, Duration::ZERO).await?;
        if barrier.snapshot.terminates() {
            self.stopped_at = Some(barrier.checkpoint_id);
        }
        self.upload_ready();
        Ok(())
    }

    pub(super) async fn on_upload_done(
        &mut self,
        checkpoint_id: CheckpointId,
        result: Result<Uploaded, StorageError>,
    ) {
        match self.checkpoints.on_upload_done(checkpoint_id, result) {
            Report::Acknowledge(ack) => acknowledge(&self.context, checkpoint_id, ack).await,
            Report::Decline(reason) => decline(&self.context, checkpoint_id, reason).await,
        }
    }
}
