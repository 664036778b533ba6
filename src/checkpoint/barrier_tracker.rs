//! At-least-once barrier tracking (Flink's `CheckpointBarrierTracker`). Sans-IO.
//!
//! Rules (DESIGN §5): nothing ever blocks; records after a barrier may already be in the state
//! when the snapshot is taken. Checkpoint n triggers once barrier n has been seen on every open
//! channel. Several checkpoints may be pending at once; when one triggers, older pending ones
//! are dropped silently (Flink's `processBarrier` polls them off without a notice: the trigger
//! of a newer checkpoint subsumes them). A barrier of a checkpoint already triggered or aborted
//! is ignored. A cancel marker aborts every older pending checkpoint and then its own, each
//! announced downstream once and in id order (Flink's `processCancellationBarrier` notifies an
//! abort for each). A channel that ends counts as having seen every barrier.

use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_protocol::{
    AbortReason, Action, Actions, GateChannels, ProtocolError,
};
use crate::ids::{ChannelIndex, CheckpointId};
use crate::limits::CHECKPOINTS_IN_FLIGHT_MAX;
use crate::time::Instant;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
struct Tracked {
    barrier: Barrier,
    first_seen_at: Instant,
    seen: Vec<bool>,
}

/// Counts barriers per checkpoint across the channels of one gate; never blocks.
#[derive(Clone, Debug)]
pub struct BarrierTracker {
    channels: GateChannels,
    pending: BTreeMap<CheckpointId, Tracked>,
    // The newest checkpoint triggered or aborted here; barriers up to it are obsolete.
    checkpoint_id_latest: Option<CheckpointId>,
}

impl BarrierTracker {
    /// A tracker for a gate of `channel_count` channels, all open.
    pub fn new(channel_count: usize) -> Self {
        // GateChannels::new checks the channel count.
        BarrierTracker {
            channels: GateChannels::new(channel_count),
            pending: BTreeMap::new(),
            checkpoint_id_latest: None,
        }
    }

    /// Checkpoints seen on some channels and not yet triggered or dropped.
    pub fn pending_checkpoints(&self) -> Vec<CheckpointId> {
        self.pending.keys().copied().collect()
    }

    /// A barrier arrived on `channel`.
    pub fn on_barrier(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        barrier: Barrier,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        let index = channel.0 as usize;
        self.channels
            .record_barrier(channel, barrier.checkpoint_id)?;
        if self.is_obsolete(barrier.checkpoint_id) {
            return Ok(Actions::new());
        }
        let channel_count = self.channels.count();
        let tracked = self
            .pending
            .entry(barrier.checkpoint_id)
            .or_insert_with(|| Tracked {
                barrier,
                first_seen_at: now,
                seen: vec![false; channel_count],
            });
        tracked.seen[index] = true;
        // Bounded like the coordinator's in-flight checkpoints: the oldest gives way.
        while self.pending.len() > CHECKPOINTS_IN_FLIGHT_MAX as usize {
            self.pending.pop_first();
        }
        Ok(self.trigger_complete(now))
    }

    /// A cancel marker for `checkpoint_id` arrived on `channel`.
    pub fn on_cancel_marker(
        &mut self,
        channel: ChannelIndex,
        checkpoint_id: CheckpointId,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        if self.is_obsolete(checkpoint_id) {
            return Ok(Actions::new());
        }
        let older: Vec<CheckpointId> = self
            .pending
            .range(..checkpoint_id)
            .map(|(pending_id, _)| *pending_id)
            .collect();
        self.pending
            .retain(|pending_id, _| *pending_id > checkpoint_id);
        self.checkpoint_id_latest = Some(checkpoint_id);
        let actions: Actions = older
            .into_iter()
            .chain([checkpoint_id])
            .map(|aborted| Action::Abort {
                checkpoint_id: aborted,
                reason: AbortReason::CancelMarker,
            })
            .collect();
        assert!(actions
            .windows(2)
            .all(|pair| abort_id(&pair[0]) < abort_id(&pair[1])));
        Ok(actions)
    }

    /// `channel` delivered its end of partition: it counts as having seen every barrier.
    pub fn on_end_of_partition(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
    ) -> Result<Actions, ProtocolError> {
        self.channels.check_open(channel)?;
        self.channels.end(channel);
        let mut actions = self.trigger_complete(now);
        if self.channels.all_ended() {
            assert!(
                self.pending.is_empty(),
                "with every channel ended, every pending checkpoint triggered"
            );
            actions.push(Action::AllInputsEnded);
        }
        Ok(actions)
    }
}

fn abort_id(action: &Action) -> CheckpointId {
    match action {
        Action::Abort { checkpoint_id, .. } => *checkpoint_id,
        other => unreachable!("only aborts are listed here, not {other:?}"),
    }
}

impl BarrierTracker {
    fn is_obsolete(&self, checkpoint_id: CheckpointId) -> bool {
        self.checkpoint_id_latest
            .is_some_and(|latest| checkpoint_id <= latest)
    }

    /// Triggers the newest pending checkpoint every open channel has seen, dropping the older
    /// ones.
    fn trigger_complete(&mut self, now: Instant) -> Actions {
        let channels = &self.channels;
        let complete = self
            .pending
            .iter()
            .rev()
            .find(|(_, tracked)| {
                tracked
                    .seen
                    .iter()
                    .enumerate()
                    .all(|(channel, seen)| *seen || channels.is_ended(channel))
            })
            .map(|(checkpoint_id, _)| *checkpoint_id);
        let Some(checkpoint_id) = complete else {
            return Actions::new();
        };
        let tracked = self.pending.remove(&checkpoint_id).expect("found above");
        self.pending
            .retain(|pending_id, _| *pending_id > checkpoint_id);
        assert!(
            self.checkpoint_id_latest < Some(checkpoint_id),
            "triggered ids strictly increase"
        );
        self.checkpoint_id_latest = Some(checkpoint_id);
        vec![Action::Trigger {
            barrier: tracked.barrier,
            alignment_duration: now.since(tracked.first_seen_at),
        }]
    }
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
            kind: BarrierKind::AtLeastOnce,
        }
    }

    fn channel(index: u16) -> ChannelIndex {
        ChannelIndex(index)
    }

    #[test]
    fn never_blocks_and_triggers_when_every_channel_saw_the_barrier() {
        let mut tracker = BarrierTracker::new(2);
        assert_eq!(
            tracker
                .on_barrier(Instant::from_ms(1), channel(0), barrier(1))
                .unwrap(),
            vec![]
        );
        let actions = tracker
            .on_barrier(Instant::from_ms(4), channel(1), barrier(1))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::Trigger {
                barrier: barrier(1),
                alignment_duration: Duration::from_ms(3)
            }]
        );
    }

    #[test]
    fn a_newer_trigger_drops_older_pending_checkpoints_silently() {
        let mut tracker = BarrierTracker::new(2);
        tracker
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        tracker
            .on_barrier(Instant::ZERO, channel(0), barrier(2))
            .unwrap();
        assert_eq!(
            tracker.pending_checkpoints(),
            vec![CheckpointId(1), CheckpointId(2)]
        );
        let actions = tracker
            .on_barrier(Instant::ZERO, channel(1), barrier(2))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::Trigger {
                barrier: barrier(2),
                alignment_duration: Duration::ZERO
            }]
        );
        assert_eq!(tracker.pending_checkpoints(), vec![]);
        assert_eq!(
            tracker.on_barrier(Instant::ZERO, channel(1), barrier(1)),
            Err(ProtocolError::BarrierWentBackwards {
                channel: channel(1),
                previous: CheckpointId(2),
                received: CheckpointId(1)
            })
        );
    }

    #[test]
    fn barriers_of_triggered_checkpoints_are_obsolete() {
        let mut tracker = BarrierTracker::new(3);
        tracker
            .on_barrier(Instant::ZERO, channel(0), barrier(2))
            .unwrap();
        tracker
            .on_barrier(Instant::ZERO, channel(1), barrier(2))
            .unwrap();
        tracker
            .on_barrier(Instant::ZERO, channel(2), barrier(2))
            .unwrap();
        assert_eq!(
            tracker
                .on_barrier(Instant::ZERO, channel(0), barrier(3))
                .unwrap(),
            vec![]
        );
        let mut late = BarrierTracker::new(2);
        late.on_cancel_marker(channel(0), CheckpointId(5)).unwrap();
        assert_eq!(
            late.on_barrier(Instant::ZERO, channel(1), barrier(4))
                .unwrap(),
            vec![]
        );
        assert_eq!(late.pending_checkpoints(), vec![]);
    }

    fn abort(checkpoint_id: u64) -> Action {
        Action::Abort {
            checkpoint_id: CheckpointId(checkpoint_id),
            reason: AbortReason::CancelMarker,
        }
    }

    #[test]
    fn cancel_marker_aborts_its_checkpoint_and_older_ones_once() {
        let mut tracker = BarrierTracker::new(2);
        tracker
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        tracker
            .on_barrier(Instant::ZERO, channel(0), barrier(2))
            .unwrap();
        let actions = tracker
            .on_cancel_marker(channel(1), CheckpointId(2))
            .unwrap();
        assert_eq!(
            actions,
            vec![abort(1), abort(2)],
            "each pending one, in order"
        );
        assert_eq!(tracker.pending_checkpoints(), vec![]);
        assert_eq!(
            tracker
                .on_cancel_marker(channel(0), CheckpointId(2))
                .unwrap(),
            vec![]
        );
    }

    #[test]
    fn cancel_marker_announces_every_older_pending_checkpoint_and_keeps_newer_ones() {
        let mut tracker = BarrierTracker::new(3);
        for checkpoint_id in [3, 5, 7, 9] {
            tracker
                .on_barrier(Instant::ZERO, channel(0), barrier(checkpoint_id))
                .unwrap();
        }
        let actions = tracker
            .on_cancel_marker(channel(1), CheckpointId(6))
            .unwrap();
        assert_eq!(actions, vec![abort(3), abort(5), abort(6)]);
        assert_eq!(
            tracker.pending_checkpoints(),
            vec![CheckpointId(7), CheckpointId(9)]
        );
        // A second marker for the same checkpoint, or an older one, announces nothing again.
        assert_eq!(
            tracker
                .on_cancel_marker(channel(2), CheckpointId(6))
                .unwrap(),
            vec![]
        );
        assert_eq!(
            tracker
                .on_cancel_marker(channel(2), CheckpointId(5))
                .unwrap(),
            vec![]
        );
        let actions = tracker
            .on_cancel_marker(channel(2), CheckpointId(9))
            .unwrap();
        assert_eq!(actions, vec![abort(7), abort(9)]);
    }

    #[test]
    fn an_ended_channel_counts_as_seen() {
        let mut tracker = BarrierTracker::new(2);
        tracker
            .on_barrier(Instant::ZERO, channel(0), barrier(1))
            .unwrap();
        let actions = tracker
            .on_end_of_partition(Instant::ZERO, channel(1))
            .unwrap();
        assert!(matches!(actions[..], [Action::Trigger { .. }]));
        let actions = tracker
            .on_end_of_partition(Instant::ZERO, channel(0))
            .unwrap();
        assert_eq!(actions, vec![Action::AllInputsEnded]);
        assert_eq!(
            tracker.on_barrier(Instant::ZERO, channel(0), barrier(2)),
            Err(ProtocolError::EventAfterEnd {
                channel: channel(0)
            })
        );
    }
}
