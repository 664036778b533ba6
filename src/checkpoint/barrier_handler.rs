//! The barrier handler of one task's input gate: one public sans-IO state machine for every
//! checkpointing mode, dispatching to the mode's rules. Time arrives as `now`; every reaction
//! is returned as actions for the task to carry out in order.
//!
//! - exactly-once, aligned / unaligned / aligned with timeout: `BarrierAligner` (Flink's
//!   `SingleCheckpointBarrierHandler`); the barrier's kind says which.
//! - at-least-once: `BarrierTracker` (Flink's `CheckpointBarrierTracker`): never blocks.

use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_aligner::BarrierAligner;
use crate::checkpoint::barrier_protocol::{Actions, ProtocolError};
use crate::checkpoint::barrier_tracker::BarrierTracker;
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::ids::{ChannelIndex, CheckpointId};
use crate::time::Instant;

/// The barrier handler of one input gate, in the job's checkpointing mode.
#[derive(Clone, Debug)]
pub enum BarrierHandler {
    /// Exactly-once: channels block until the barrier arrived on all of them.
    Aligned(BarrierAligner),
    /// At-least-once: barriers are counted, nothing blocks.
    Tracking(BarrierTracker),
}

impl BarrierHandler {
    /// A handler for a gate of `channel_count` open channels.
    pub fn new(channel_count: usize, mode: CheckpointingMode) -> Self {
        match mode {
            // At-most-once takes no checkpoints: only end of partition reaches the handler.
            CheckpointingMode::ExactlyOnce | CheckpointingMode::AtMostOnce => {
                BarrierHandler::Aligned(BarrierAligner::new(channel_count))
            }
            CheckpointingMode::AtLeastOnce => {
                BarrierHandler::Tracking(BarrierTracker::new(channel_count))
            }
        }
    }

    /// Whether the task may read `channel` now.
    pub fn is_blocked(&self, channel: ChannelIndex) -> bool {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.is_blocked(channel),
            BarrierHandler::Tracking(_) => false,
        }
    }

    /// The checkpoint whose in-flight data `channel` carries now (unaligned only).
    pub fn persisting(&self, channel: ChannelIndex) -> Option<CheckpointId> {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.persisting(channel),
            BarrierHandler::Tracking(_) => None,
        }
    }

    /// Whether `barrier`, arriving now, overtakes the data queued on its channel.
    pub fn is_priority(&self, now: Instant, barrier: &Barrier) -> bool {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.is_priority(now, barrier),
            BarrierHandler::Tracking(_) => false,
        }
    }

    /// When `on_timer` must run next, if ever.
    pub fn timer_due_at(&self) -> Option<Instant> {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.timer_due_at(),
            BarrierHandler::Tracking(_) => None,
        }
    }

    /// Time passed (an aligned checkpoint may time out into an unaligned one).
    pub fn on_timer(&mut self, now: Instant) -> Actions {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.on_timer(now),
            BarrierHandler::Tracking(_) => Actions::new(),
        }
    }

    /// A barrier arrived on `channel`.
    pub fn on_barrier(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        barrier: Barrier,
    ) -> Result<Actions, ProtocolError> {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.on_barrier(now, channel, barrier),
            BarrierHandler::Tracking(tracker) => tracker.on_barrier(now, channel, barrier),
        }
    }

    /// A timeoutable barrier arrived on `channel` and queued behind its data (Flink's
    /// `processBarrierAnnouncement`): its checkpoint, and its alignment timer, start now.
    pub fn on_announcement(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        barrier: Barrier,
    ) -> Result<Actions, ProtocolError> {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.on_announcement(now, channel, barrier),
            // Flink's tracker ignores announcements: at-least-once barriers never time out.
            BarrierHandler::Tracking(_) => Ok(Actions::new()),
        }
    }

    /// A cancel marker for `checkpoint_id` arrived on `channel`.
    pub fn on_cancel_marker(
        &mut self,
        channel: ChannelIndex,
        checkpoint_id: CheckpointId,
    ) -> Result<Actions, ProtocolError> {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.on_cancel_marker(channel, checkpoint_id),
            BarrierHandler::Tracking(tracker) => tracker.on_cancel_marker(channel, checkpoint_id),
        }
    }

    /// `channel` delivered its end of partition.
    pub fn on_end_of_partition(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
    ) -> Result<Actions, ProtocolError> {
        match self {
            BarrierHandler::Aligned(aligner) => aligner.on_end_of_partition(now, channel),
            BarrierHandler::Tracking(tracker) => tracker.on_end_of_partition(now, channel),
        }
    }
}
