//! Exactly-once barrier handling in all three variants (Flink's
//! `SingleCheckpointBarrierHandler`): aligned, unaligned, and aligned with timeout. Sans-IO.
//!
//! Rules (DESIGN §5):
//! - Aligned: a channel that delivered barrier n is blocked until barrier n arrived on every
//!   open channel; then the checkpoint triggers and all channels unblock.
//! - Unaligned: the first barrier n triggers at once and nothing blocks; until a channel
//!   delivers its barrier n, its buffers are in-flight data of checkpoint n (the gate persists
//!   them as channel state); when every open channel has delivered it, the input channel state
//!   is complete.
//! - Aligned with timeout: aligned until the barrier's deadline (checkpoint creation plus the
//!   timeout), then unaligned for the rest of the checkpoint; a barrier that arrives already
//!   unaligned (an upstream timed out) switches too. `Aligned` barriers (savepoints) never do.
//!   A timeoutable barrier is announced when it arrives at its channel, even behind queued
//!   data (Flink's `EventAnnouncement`): the announcement starts its checkpoint and so the
//!   timer, and when the timer fires the gate pulls the barrier forward over that data, which
//!   becomes the channel's state. The channel counts as received only when the barrier is.
//! - A barrier older than the current checkpoint, or of one already triggered or aborted, is
//!   ignored. A newer barrier aborts the pending checkpoint (subsumed) and starts the new one.
//!   A cancel marker aborts the pending checkpoint if its id is newer, or equal; a cancel for a
//!   future id makes that id's barriers obsolete. A channel that ends counts as aligned. Every
//!   abort is announced downstream with a cancel marker.

use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_protocol::{
    AbortReason, Action, Actions, GateChannels, ProtocolError,
};
use crate::ids::{ChannelIndex, CheckpointId};
use crate::time::Instant;

#[derive(Clone, Copy, Debug)]
struct Pending {
    barrier: Barrier,
    started_at: Instant,
    // Triggered already: the rest of the checkpoint collects in-flight data.
    unaligned: bool,
}

/// Aligns checkpoint barriers across the input channels of one task.
#[derive(Clone, Debug)]
pub struct BarrierAligner {
    // Channels that delivered the pending checkpoint's barrier.
    received: Vec<bool>,
    channels: GateChannels,
    received_count: usize,
    open_count: usize,
    pending: Option<Pending>,
    // The newest checkpoint this gate triggered, aborted or saw cancelled; barriers up to it
    // are obsolete.
    checkpoint_id_latest: Option<CheckpointId>,
}

impl BarrierAligner {
    /// A handler for a gate of `channel_count` channels, all open.
    pub fn new(channel_count: usize) -> Self {
        // GateChannels::new checks the channel count.
        BarrierAligner {
            received: vec![false; channel_count],
            channels: GateChannels::new(channel_count),
            received_count: 0,
            open_count: channel_count,
            pending: None,
            checkpoint_id_latest: None,
        }
    }

    /// Whether the task may read `channel` now.
    pub fn is_blocked(&self, channel: ChannelIndex) -> bool {
        self.pending.is_some_and(|pending| !pending.unaligned) && self.received[channel.0 as usize]
    }

    /// The checkpoint whose in-flight data `channel` carries now: an unaligned checkpoint
    /// triggered and this open channel has not delivered its barrier yet.
    pub fn persisting(&self, channel: ChannelIndex) -> Option<CheckpointId> {
        let index = channel.0 as usize;
        let pending = self.pending.filter(|pending| pending.unaligned)?;
        let waiting = !self.received[index] && !self.channels.is_ended(index);
        waiting.then_some(pending.barrier.checkpoint_id)
    }

    /// Whether `barrier`, arriving now, is a priority event that overtakes the data queued on
    /// its channel: it is unaligned, its checkpoint runs unaligned here already, or its
    /// alignment deadline has passed.
    pub fn is_priority(&self, now: Instant, barrier: &Barrier) -> bool {
        let checkpoint_id = barrier.checkpoint_id;
        let running_unaligned = self
            .pending
            .is_some_and(|p| p.unaligned && p.barrier.checkpoint_id == checkpoint_id);
        let timed_out = is_timed_out(now, barrier);
        let live = !self.is_obsolete(checkpoint_id)
            && self
                .pending
                .is_none_or(|p| checkpoint_id >= p.barrier.checkpoint_id);
        barrier.is_unaligned() || running_unaligned || (timed_out && live)
    }

    /// The checkpoint being aligned, if any.
    pub fn pending_checkpoint(&self) -> Option<CheckpointId> {
        self.pending.map(|pending| pending.barrier.checkpoint_id)
    }

    /// When `on_timer` must run next: the pending aligned checkpoint's deadline.
    pub fn timer_due_at(&self) -> Option<Instant> {
        let pending = self.pending.filter(|pending| !pending.unaligned)?;
        pending.barrier.alignment_deadline()
    }

    /// Time passed: an aligned checkpoint past its deadline turns unaligned.
    pub fn on_timer(&mut self, now: Instant) -> Actions {
        let mut actions = Actions::new();
        if self.timer_due_at().is_some_and(|deadline| now >= deadline) {
            self.switch_to_unaligned(now, &mut actions);
            self.complete_if_aligned(now, &mut actions);
        }
        actions
    }

    /// A barrier arrived on `channel` (at the head of its queue, or overtaking it).
    pub fn on_barrier(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        barrier: Barrier,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        let index = channel.0 as usize;
        // The gate delivers a blocked channel's events only when they overtake its queue; the
        // id grew on this channel, so such a barrier subsumes the pending checkpoint.
        self.channels
            .record_barrier(channel, barrier.checkpoint_id)?;
        let mut actions = Actions::new();
        match self.pending {
            Some(pending) if barrier.checkpoint_id < pending.barrier.checkpoint_id => {
                return Ok(actions)
            }
            Some(pending) if barrier.checkpoint_id > pending.barrier.checkpoint_id => {
                self.abort_pending(AbortReason::Subsumed, &mut actions);
                self.start(now, barrier, &mut actions);
            }
            Some(pending) => {
                // Turned unaligned upstream, or arriving past its deadline before the timer
                // fired: either way it overtook its queue (`is_priority`), so the checkpoint
                // cannot stay aligned.
                if !pending.unaligned && (barrier.is_unaligned() || is_timed_out(now, &barrier)) {
                    self.switch_to_unaligned(now, &mut actions);
                }
            }
            None if self.is_obsolete(barrier.checkpoint_id) => return Ok(actions),
            None => self.start(now, barrier, &mut actions),
        }
        assert!(
            !self.received[index],
            "one barrier per checkpoint per channel"
        );
        self.received[index] = true;
        self.received_count += 1;
        if self.pending.is_some_and(|pending| !pending.unaligned) {
            actions.push(Action::Block(channel));
        }
        self.complete_if_aligned(now, &mut actions);
        Ok(actions)
    }

    /// A timeoutable barrier arrived on `channel` behind queued data: its checkpoint starts
    /// now (an older pending one is subsumed, as a newer barrier would), so its alignment timer
    /// runs while that data waits. Nothing is received or blocked until the barrier is read.
    pub fn on_announcement(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        barrier: Barrier,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        assert!(
            barrier.alignment_deadline().is_some(),
            "only timeoutable barriers are announced"
        );
        let mut actions = Actions::new();
        match self.pending {
            Some(pending) if barrier.checkpoint_id <= pending.barrier.checkpoint_id => {}
            Some(_) => {
                self.abort_pending(AbortReason::Subsumed, &mut actions);
                self.start(now, barrier, &mut actions);
            }
            None if self.is_obsolete(barrier.checkpoint_id) => {}
            None => self.start(now, barrier, &mut actions),
        }
        Ok(actions)
    }

    /// A cancel marker for `checkpoint_id` arrived on `channel`.
    pub fn on_cancel_marker(
        &mut self,
        channel: ChannelIndex,
        checkpoint_id: CheckpointId,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        let mut actions = Actions::new();
        match self.pending {
            Some(pending) if checkpoint_id >= pending.barrier.checkpoint_id => {
                self.abort_pending(AbortReason::CancelMarker, &mut actions);
                if checkpoint_id > pending.barrier.checkpoint_id {
                    self.cancel_future(checkpoint_id, &mut actions);
                }
            }
            Some(_) => {}
            None if self.is_obsolete(checkpoint_id) => {}
            None => self.cancel_future(checkpoint_id, &mut actions),
        }
        Ok(actions)
    }

    /// `channel` delivered its end of partition: it counts as aligned from now on.
    pub fn on_end_of_partition(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        assert!(
            !self.is_blocked(channel),
            "the task never reads a blocked channel"
        );
        let index = channel.0 as usize;
        self.channels.end(channel);
        self.open_count -= 1;
        if self.received[index] {
            self.received[index] = false;
            self.received_count -= 1;
        }
        let mut actions = Actions::new();
        self.complete_if_aligned(now, &mut actions);
        if self.open_count == 0 {
            assert!(
                self.pending.is_none(),
                "an alignment with no open channels has completed"
            );
            actions.push(Action::AllInputsEnded);
        }
        Ok(actions)
    }

    fn is_obsolete(&self, checkpoint_id: CheckpointId) -> bool {
        self.checkpoint_id_latest
            .is_some_and(|latest| checkpoint_id <= latest)
    }

    fn start(&mut self, now: Instant, barrier: Barrier, actions: &mut Actions) {
        assert!(self.pending.is_none());
        assert_eq!(self.received_count, 0);
        self.pending = Some(Pending {
            barrier,
            started_at: now,
            unaligned: false,
        });
        if barrier.is_unaligned() || is_timed_out(now, &barrier) {
            self.switch_to_unaligned(now, actions);
        }
    }

    fn switch_to_unaligned(&mut self, now: Instant, actions: &mut Actions) {
        let pending = self.pending.as_mut().expect("a pending checkpoint");
        assert!(!pending.unaligned, "a checkpoint turns unaligned once");
        pending.unaligned = true;
        let pending = *pending;
        self.trigger(
            now,
            pending.barrier.as_unaligned(),
            pending.started_at,
            actions,
        );
        if self.received_count > 0 {
            actions.push(Action::UnblockAll); // Blocked channels are past their barrier.
        }
    }

    fn trigger(
        &mut self,
        now: Instant,
        barrier: Barrier,
        started_at: Instant,
        actions: &mut Actions,
    ) {
        let checkpoint_id = barrier.checkpoint_id;
        assert!(
            self.checkpoint_id_latest < Some(checkpoint_id),
            "triggered ids strictly increase"
        );
        self.checkpoint_id_latest = Some(checkpoint_id);
        actions.push(Action::Trigger {
            barrier,
            alignment_duration: now.since(started_at),
        });
    }

    fn complete_if_aligned(&mut self, now: Instant, actions: &mut Actions) {
        let Some(pending) = self.pending else {
            return;
        };
        if self.received_count < self.open_count {
            return;
        }
        assert_eq!(self.received_count, self.open_count);
        self.pending = None;
        if pending.unaligned {
            actions.push(Action::InputStateComplete {
                checkpoint_id: pending.barrier.checkpoint_id,
            });
        } else {
            self.trigger(now, pending.barrier, pending.started_at, actions);
        }
        self.release_all(actions, !pending.unaligned);
    }

    fn abort_pending(&mut self, reason: AbortReason, actions: &mut Actions) {
        let pending = self
            .pending
            .take()
            .expect("abort needs a pending checkpoint");
        let checkpoint_id = pending.barrier.checkpoint_id;
        self.checkpoint_id_latest = self.checkpoint_id_latest.max(Some(checkpoint_id));
        self.release_all(actions, !pending.unaligned);
        actions.push(Action::Abort {
            checkpoint_id,
            reason,
        });
    }

    fn cancel_future(&mut self, checkpoint_id: CheckpointId, actions: &mut Actions) {
        assert!(self.pending.is_none());
        assert!(!self.is_obsolete(checkpoint_id));
        self.checkpoint_id_latest = Some(checkpoint_id);
        actions.push(Action::Abort {
            checkpoint_id,
            reason: AbortReason::CancelMarker,
        });
    }

    // Forgets which channels delivered the ended checkpoint's barrier; if they were blocked,
    // they may be read again.
    fn release_all(&mut self, actions: &mut Actions, were_blocked: bool) {
        if self.received_count > 0 && were_blocked {
            actions.push(Action::UnblockAll);
        }
        self.received.iter_mut().for_each(|r| *r = false);
        self.received_count = 0;
    }
}

fn is_timed_out(now: Instant, barrier: &Barrier) -> bool {
    barrier
        .alignment_deadline()
        .is_some_and(|deadline| now >= deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::barrier::BarrierKind;
    use crate::time::Duration;

    fn barrier(checkpoint_id: u64) -> Barrier {
        Barrier {
            snapshot: crate::checkpoint::barrier::SnapshotType::Checkpoint,
            checkpoint_id: CheckpointId(checkpoint_id),
            timestamp: Instant::ZERO,
            kind: BarrierKind::Aligned,
        }
    }

    fn channel(index: u16) -> ChannelIndex {
        ChannelIndex(index)
    }

    fn triggered(actions: &Actions) -> Option<u64> {
        actions.iter().find_map(|action| match action {
            Action::Trigger { barrier, .. } => Some(barrier.checkpoint_id.0),
            _ => None,
        })
    }

    #[test]
    fn single_channel_triggers_at_once() {
        let mut handler = BarrierAligner::new(1);
        let actions = handler
            .on_barrier(Instant::from_ms(5), channel(0), barrier(1))
            .unwrap();
        assert_eq!(triggered(&actions), Some(1));
        assert!(!handler.is_blocked(channel(0)));
    }

    #[test]
    fn blocks_until_every_channel_delivered_the_barrier() {
        let mut handler = BarrierAligner::new(3);
        let actions = handler
            .on_barrier(Instant::from_ms(10), channel(0), barrier(1))
            .unwrap();
        assert_eq!(actions, vec![Action::Block(channel(0))]);
        handler
            .on_barrier(Instant::from_ms(20), channel(2), barrier(1))
            .unwrap();
        assert!(
            handler.is_blocked(channel(0))
                && handler.is_blocked(channel(2))
                && !handler.is_blocked(channel(1))
        );
        let actions = handler
            .on_barrier(Instant::from_ms(35), channel(1), barrier(1))
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::Block(channel(1)),
                Action::Trigger {
                    barrier: barrier(1),
                    alignment_duration: Duration::from_ms(25)
                },
                Action::UnblockAll
            ]
        );
        assert!(!handler.is_blocked(channel(0)));
    }

    #[test]
    fn newer_barrier_subsumes_the_pending_checkpoint() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        let actions = handler
            .on_barrier(Instant::ZERO, channel(1), barrier(2))
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::UnblockAll,
                Action::Abort {
                    checkpoint_id: CheckpointId(1),
                    reason: AbortReason::Subsumed
                },
                Action::Block(channel(1))
            ]
        );
        assert_eq!(handler.pending_checkpoint(), Some(CheckpointId(2)));
        let actions = handler
            .on_barrier(Instant::ZERO, channel(0), barrier(2))
            .unwrap();
        assert_eq!(triggered(&actions), Some(2));
    }

    #[test]
    fn obsolete_barriers_are_ignored() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        handler
            .on_barrier(Instant::ZERO, channel(1), barrier(2))
            .unwrap(); // Subsumes 1.
        let actions = handler
            .on_barrier(Instant::ZERO, channel(0), barrier(2))
            .unwrap();
        assert_eq!(triggered(&actions), Some(2));
        // A late barrier 1 on a channel that skipped it is older than what triggered.
        let mut late = BarrierAligner::new(2);
        late.on_barrier(Instant::ZERO, channel(0), barrier(3))
            .unwrap();
        late.on_barrier(Instant::ZERO, channel(1), barrier(3))
            .unwrap();
        assert_eq!(
            late.on_barrier(Instant::ZERO, channel(0), barrier(4))
                .unwrap(),
            vec![Action::Block(channel(0))]
        );
        assert_eq!(
            late.on_barrier(Instant::ZERO, channel(1), barrier(2)),
            Err(ProtocolError::BarrierWentBackwards {
                channel: channel(1),
                previous: CheckpointId(3),
                received: CheckpointId(2)
            })
        );
    }

    #[test]
    fn barrier_older_than_pending_is_ignored_without_blocking() {
        let mut handler = BarrierAligner::new(3);
        handler
            .on_barrier(Instant::ZERO, channel(0), barrier(5))
            .unwrap();
        assert_eq!(
            handler
                .on_barrier(Instant::ZERO, channel(1), barrier(4))
                .unwrap(),
            vec![]
        );
        assert!(!handler.is_blocked(channel(1)));
    }

    #[test]
    fn cancel_marker_aborts_pending_and_is_announced_once() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        let actions = handler
            .on_cancel_marker(channel(1), CheckpointId(1))
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::UnblockAll,
                Action::Abort {
                    checkpoint_id: CheckpointId(1),
                    reason: AbortReason::CancelMarker
                }
            ]
        );
        // The same marker on the other channel and the late barrier are now obsolete.
        assert_eq!(
            handler
                .on_cancel_marker(channel(0), CheckpointId(1))
                .unwrap(),
            vec![]
        );
        assert_eq!(
            handler
                .on_barrier(Instant::ZERO, channel(1), barrier(1))
                .unwrap(),
            vec![]
        );
    }

    #[test]
    fn cancel_for_a_future_checkpoint_makes_its_barriers_obsolete() {
        let mut handler = BarrierAligner::new(2);
        let actions = handler
            .on_cancel_marker(channel(0), CheckpointId(3))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::Abort {
                checkpoint_id: CheckpointId(3),
                reason: AbortReason::CancelMarker
            }]
        );
        assert_eq!(
            handler
                .on_barrier(Instant::ZERO, channel(1), barrier(3))
                .unwrap(),
            vec![]
        );
        assert!(!handler.is_blocked(channel(1)));
        let actions = handler
            .on_barrier(Instant::ZERO, channel(1), barrier(4))
            .unwrap();
        assert_eq!(actions, vec![Action::Block(channel(1))]);
    }

    #[test]
    fn cancel_newer_than_pending_aborts_it_and_the_newer_one() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        let actions = handler
            .on_cancel_marker(channel(1), CheckpointId(2))
            .unwrap();
        assert_eq!(actions.len(), 3);
        assert_eq!(
            handler
                .on_barrier(Instant::ZERO, channel(1), barrier(2))
                .unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_channel_that_ends_during_alignment_counts_as_aligned() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        let actions = handler
            .on_end_of_partition(Instant::from_ms(3), channel(1))
            .unwrap();
        assert_eq!(triggered(&actions), Some(1));
        let actions = handler
            .on_end_of_partition(Instant::from_ms(4), channel(0))
            .unwrap();
        assert_eq!(actions, vec![Action::AllInputsEnded]);
    }

    #[test]
    fn events_after_end_or_on_unknown_channels_are_errors() {
        let mut handler = BarrierAligner::new(1);
        handler
            .on_end_of_partition(Instant::ZERO, channel(0))
            .unwrap();
        assert_eq!(
            handler.on_barrier(Instant::ZERO, channel(0), barrier(1)),
            Err(ProtocolError::EventAfterEnd {
                channel: channel(0)
            })
        );
        assert_eq!(
            handler.on_cancel_marker(channel(7), CheckpointId(1)),
            Err(ProtocolError::UnknownChannel {
                channel: channel(7)
            })
        );
    }

    fn unaligned(checkpoint_id: u64) -> Barrier {
        Barrier {
            kind: BarrierKind::Unaligned,
            ..barrier(checkpoint_id)
        }
    }

    fn timeoutable(checkpoint_id: u64, timeout_ms: u64) -> Barrier {
        Barrier {
            kind: BarrierKind::AlignedTimeoutable {
                timeout: Duration::from_ms(timeout_ms),
            },
            ..barrier(checkpoint_id)
        }
    }

    #[test]
    fn only_a_live_barrier_past_its_deadline_is_a_priority_event() {
        let late = Instant::from_ms(50);
        let mut aligner = BarrierAligner::new(2);
        assert!(aligner.is_priority(late, &timeoutable(1, 10)));
        assert!(!aligner.is_priority(Instant::from_ms(5), &timeoutable(1, 10)));
        // Checkpoint 4 aligns: an older barrier past its deadline is not live, and stays in
        // its queue (overtaking would reorder data for a checkpoint that is not running).
        aligner
            .on_barrier(Instant::from_ms(1), channel(0), timeoutable(4, 1_000))
            .unwrap();
        assert!(!aligner.is_priority(late, &timeoutable(3, 10)));
        assert!(aligner.is_priority(late, &timeoutable(5, 10)));
        // Checkpoint 7 cancelled before any barrier: its barriers are obsolete, with nothing
        // pending.
        let mut cancelled = BarrierAligner::new(2);
        cancelled
            .on_cancel_marker(channel(1), CheckpointId(7))
            .unwrap();
        assert!(!cancelled.is_priority(late, &timeoutable(7, 10)));
        assert!(cancelled.is_priority(late, &timeoutable(8, 10)));
    }

    #[test]
    fn unaligned_first_barrier_triggers_and_channels_persist_until_their_barrier() {
        let mut handler = BarrierAligner::new(3);
        let actions = handler
            .on_barrier(Instant::from_ms(1), channel(1), unaligned(1))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::Trigger {
                barrier: unaligned(1),
                alignment_duration: Duration::ZERO
            }]
        );
        assert!(
            (0..3).all(|c| !handler.is_blocked(channel(c))),
            "nothing blocks"
        );
        assert_eq!(handler.persisting(channel(0)), Some(CheckpointId(1)));
        assert_eq!(handler.persisting(channel(1)), None, "its barrier arrived");
        handler
            .on_barrier(Instant::from_ms(2), channel(0), unaligned(1))
            .unwrap();
        assert_eq!(handler.persisting(channel(0)), None);
        let actions = handler
            .on_end_of_partition(Instant::from_ms(3), channel(2))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::InputStateComplete {
                checkpoint_id: CheckpointId(1)
            }]
        );
        assert_eq!(handler.pending_checkpoint(), None);
    }

    #[test]
    fn unaligned_barriers_are_priority_while_their_checkpoint_runs() {
        let mut handler = BarrierAligner::new(2);
        assert!(handler.is_priority(Instant::ZERO, &unaligned(1)));
        assert!(!handler.is_priority(Instant::ZERO, &barrier(1)));
        handler
            .on_barrier(Instant::ZERO, channel(0), unaligned(1))
            .unwrap();
        // An aligned-kind barrier of a checkpoint already running unaligned overtakes too.
        assert!(handler.is_priority(Instant::ZERO, &timeoutable(1, 50)));
        assert!(!handler.is_priority(Instant::ZERO, &timeoutable(2, 50)));
    }

    #[test]
    fn newer_unaligned_barrier_subsumes_a_collecting_checkpoint() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::ZERO, channel(0), unaligned(1))
            .unwrap();
        let actions = handler
            .on_barrier(Instant::ZERO, channel(0), unaligned(2))
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::Abort {
                    checkpoint_id: CheckpointId(1),
                    reason: AbortReason::Subsumed
                },
                Action::Trigger {
                    barrier: unaligned(2),
                    alignment_duration: Duration::ZERO
                }
            ]
        );
        assert_eq!(handler.persisting(channel(1)), Some(CheckpointId(2)));
        assert_eq!(
            handler
                .on_barrier(Instant::ZERO, channel(1), unaligned(1))
                .unwrap(),
            vec![],
            "a barrier of the aborted checkpoint is obsolete"
        );
        let actions = handler
            .on_cancel_marker(channel(1), CheckpointId(2))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::Abort {
                checkpoint_id: CheckpointId(2),
                reason: AbortReason::CancelMarker
            }]
        );
        assert_eq!(handler.persisting(channel(1)), None);
    }

    #[test]
    fn aligned_with_timeout_switches_at_the_deadline_measured_from_creation() {
        let mut handler = BarrierAligner::new(2);
        // Created at 0, timeout 50ms: the first barrier arrives at 20ms and aligns.
        let actions = handler
            .on_barrier(Instant::from_ms(20), channel(0), timeoutable(1, 50))
            .unwrap();
        assert_eq!(actions, vec![Action::Block(channel(0))]);
        assert_eq!(handler.timer_due_at(), Some(Instant::from_ms(50)));
        assert_eq!(handler.on_timer(Instant::from_ms(49)), vec![]);
        let actions = handler.on_timer(Instant::from_ms(50));
        assert_eq!(
            actions,
            vec![
                Action::Trigger {
                    barrier: unaligned(1),
                    alignment_duration: Duration::from_ms(30)
                },
                Action::UnblockAll
            ]
        );
        assert!(!handler.is_blocked(channel(0)));
        assert_eq!(handler.persisting(channel(0)), None, "past its barrier");
        assert_eq!(handler.persisting(channel(1)), Some(CheckpointId(1)));
        assert_eq!(handler.timer_due_at(), None);
        let actions = handler
            .on_barrier(Instant::from_ms(70), channel(1), timeoutable(1, 50))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::InputStateComplete {
                checkpoint_id: CheckpointId(1)
            }]
        );
    }

    #[test]
    fn aligned_with_timeout_completing_in_time_stays_aligned() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::from_ms(10), channel(0), timeoutable(1, 50))
            .unwrap();
        let actions = handler
            .on_barrier(Instant::from_ms(30), channel(1), timeoutable(1, 50))
            .unwrap();
        assert_eq!(triggered(&actions), Some(1));
        assert!(actions
            .iter()
            .all(|a| !matches!(a, Action::Trigger { barrier, .. } if barrier.is_unaligned())));
        assert_eq!(handler.timer_due_at(), None);
    }

    #[test]
    fn a_late_first_barrier_or_an_upstream_switch_starts_unaligned() {
        let mut late = BarrierAligner::new(2);
        assert!(late.is_priority(Instant::from_ms(60), &timeoutable(1, 50)));
        let actions = late
            .on_barrier(Instant::from_ms(60), channel(0), timeoutable(1, 50))
            .unwrap();
        assert_eq!(triggered(&actions), Some(1));
        assert_eq!(late.persisting(channel(1)), Some(CheckpointId(1)));

        let mut switched = BarrierAligner::new(2);
        switched
            .on_barrier(Instant::from_ms(10), channel(0), timeoutable(1, 50))
            .unwrap();
        let actions = switched
            .on_barrier(Instant::from_ms(20), channel(1), unaligned(1))
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::Trigger {
                    barrier: unaligned(1),
                    alignment_duration: Duration::from_ms(10)
                },
                Action::UnblockAll,
                Action::InputStateComplete {
                    checkpoint_id: CheckpointId(1)
                }
            ]
        );
    }

    #[test]
    fn savepoint_barriers_never_time_out() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::from_ms(10), channel(0), barrier(1))
            .unwrap();
        assert_eq!(handler.timer_due_at(), None);
        assert_eq!(handler.on_timer(Instant::from_ms(3_600_000)), vec![]);
        assert!(handler.is_blocked(channel(0)));
    }

    #[test]
    fn a_barrier_arriving_past_its_deadline_before_the_timer_fired_switches() {
        let mut handler = BarrierAligner::new(2);
        handler
            .on_barrier(Instant::from_ms(10), channel(0), timeoutable(1, 50))
            .unwrap();
        // The task had not run its timer yet when the second barrier arrived at 60ms.
        assert!(handler.is_priority(Instant::from_ms(60), &timeoutable(1, 50)));
        let actions = handler
            .on_barrier(Instant::from_ms(60), channel(1), timeoutable(1, 50))
            .unwrap();
        assert!(
            matches!(&actions[0], Action::Trigger { barrier, .. } if barrier.is_unaligned()),
            "{actions:?}"
        );
    }
}
