//! Exactly-once aligned barrier handling (Flink's `SingleCheckpointBarrierHandler` with aligned
//! barriers). Sans-IO.
//!
//! Rules (DESIGN §5): a channel that delivered barrier n is blocked until barrier n arrived on
//! every open channel; then the checkpoint triggers and all channels unblock. A barrier older
//! than the current checkpoint, or of one already triggered or aborted, is ignored. A newer
//! barrier during alignment aborts the pending checkpoint (subsumed) and starts the new one.
//! A cancel marker aborts the pending checkpoint if its id is newer, or equal; a cancel for a
//! future id makes that id's barriers obsolete. A channel that ends counts as aligned. Every
//! abort is announced downstream with a cancel marker.

use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_handler::{
    AbortReason, Action, Actions, GateChannels, ProtocolError,
};
use crate::ids::{ChannelIndex, CheckpointId};
use crate::time::Instant;

#[derive(Clone, Copy, Debug)]
struct Alignment {
    barrier: Barrier,
    started_at: Instant,
}

/// Aligns checkpoint barriers across the input channels of one task.
#[derive(Clone, Debug)]
pub struct BarrierAligner {
    channel_blocked: Vec<bool>,
    channels: GateChannels,
    blocked_count: usize,
    open_count: usize,
    pending: Option<Alignment>,
    // The newest checkpoint this gate triggered, aborted or saw cancelled; barriers up to it
    // are obsolete.
    checkpoint_id_latest: Option<CheckpointId>,
}

impl BarrierAligner {
    /// A handler for a gate of `channel_count` channels, all open.
    pub fn new(channel_count: usize) -> Self {
        // GateChannels::new checks the channel count.
        BarrierAligner {
            channel_blocked: vec![false; channel_count],
            channels: GateChannels::new(channel_count),
            blocked_count: 0,
            open_count: channel_count,
            pending: None,
            checkpoint_id_latest: None,
        }
    }

    /// Whether the task may read `channel` now.
    pub fn is_blocked(&self, channel: ChannelIndex) -> bool {
        self.channel_blocked[channel.0 as usize]
    }

    /// The checkpoint being aligned, if any.
    pub fn pending_checkpoint(&self) -> Option<CheckpointId> {
        self.pending
            .map(|alignment| alignment.barrier.checkpoint_id)
    }

    /// A barrier arrived on `channel`.
    pub fn on_barrier(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        barrier: Barrier,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        assert!(
            !self.is_blocked(channel),
            "the task never reads a blocked channel"
        );
        let index = channel.0 as usize;
        self.channels
            .record_barrier(channel, barrier.checkpoint_id)?;
        let mut actions = Actions::new();
        match self.pending {
            Some(alignment) if barrier.checkpoint_id < alignment.barrier.checkpoint_id => {
                return Ok(actions)
            }
            Some(alignment) if barrier.checkpoint_id > alignment.barrier.checkpoint_id => {
                self.abort_pending(AbortReason::Subsumed, &mut actions);
                self.start(now, barrier);
            }
            Some(_) => {}
            None if self.is_obsolete(barrier.checkpoint_id) => return Ok(actions),
            None => self.start(now, barrier),
        }
        self.channel_blocked[index] = true;
        self.blocked_count += 1;
        actions.push(Action::Block(channel));
        self.trigger_if_aligned(now, &mut actions);
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
            Some(alignment) if checkpoint_id >= alignment.barrier.checkpoint_id => {
                self.abort_pending(AbortReason::CancelMarker, &mut actions);
                if checkpoint_id > alignment.barrier.checkpoint_id {
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
        self.channels.end(channel);
        self.open_count -= 1;
        let mut actions = Actions::new();
        self.trigger_if_aligned(now, &mut actions);
        if self.open_count == 0 {
            assert!(
                self.pending.is_none(),
                "an alignment with no open channels has triggered"
            );
            actions.push(Action::AllInputsEnded);
        }
        Ok(actions)
    }

    fn is_obsolete(&self, checkpoint_id: CheckpointId) -> bool {
        self.checkpoint_id_latest
            .is_some_and(|latest| checkpoint_id <= latest)
    }

    fn start(&mut self, now: Instant, barrier: Barrier) {
        assert!(self.pending.is_none());
        assert_eq!(self.blocked_count, 0);
        self.pending = Some(Alignment {
            barrier,
            started_at: now,
        });
    }

    fn trigger_if_aligned(&mut self, now: Instant, actions: &mut Actions) {
        let Some(alignment) = self.pending else {
            return;
        };
        if self.blocked_count < self.open_count {
            return;
        }
        assert_eq!(self.blocked_count, self.open_count);
        let checkpoint_id = alignment.barrier.checkpoint_id;
        assert!(
            self.checkpoint_id_latest < Some(checkpoint_id),
            "triggered ids strictly increase"
        );
        self.checkpoint_id_latest = Some(checkpoint_id);
        self.pending = None;
        actions.push(Action::Trigger {
            barrier: alignment.barrier,
            alignment_duration: now.since(alignment.started_at),
        });
        self.unblock_all(actions);
    }

    fn abort_pending(&mut self, reason: AbortReason, actions: &mut Actions) {
        let alignment = self
            .pending
            .take()
            .expect("abort needs a pending checkpoint");
        let checkpoint_id = alignment.barrier.checkpoint_id;
        self.checkpoint_id_latest = self.checkpoint_id_latest.max(Some(checkpoint_id));
        self.unblock_all(actions);
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

    fn unblock_all(&mut self, actions: &mut Actions) {
        if self.blocked_count > 0 {
            self.channel_blocked
                .iter_mut()
                .for_each(|blocked| *blocked = false);
            self.blocked_count = 0;
            actions.push(Action::UnblockAll);
        }
        assert!(self.channel_blocked.iter().all(|blocked| !blocked));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::barrier::BarrierKind;
    use crate::time::Duration;

    fn barrier(checkpoint_id: u64) -> Barrier {
        Barrier {
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
}
