//! The input channels of one task with their barrier handler (Flink's `CheckpointedInputGate`
//! with the channel-state persister of its input channels). Sans-IO and generic over the
//! buffer type, so the fuzz harness drives exactly what the task runs.
//!
//! Items queue per channel as they arrive; the task reads them round robin from channels the
//! handler does not block. A barrier the handler calls priority (unaligned, or its checkpoint
//! timed out into unaligned) is handled on arrival instead: it overtakes the buffers queued on
//! its channel, and those become input channel state of its checkpoint. While an unaligned
//! checkpoint waits for a channel's barrier, every buffer read from that channel is in-flight
//! data of the checkpoint too. When a checkpoint turns unaligned mid-way, barriers already
//! queued behind buffers are pulled forward the same way. A timeoutable barrier that queues is
//! announced to the handler at once (Flink's `EventAnnouncement`), so its checkpoint's
//! alignment timer runs from its arrival, not from when the task reaches it.

use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_handler::BarrierHandler;
use crate::checkpoint::barrier_protocol::{Action, Actions, ProtocolError};
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::ids::{ChannelIndex, CheckpointId};
use crate::time::Instant;
use std::collections::VecDeque;

/// Something an input channel carries, in channel order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputItem<B> {
    /// A buffer of records.
    Buffer(B),
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// A cancel marker for a checkpoint.
    CancelMarker(CheckpointId),
    /// The channel will carry no more records (its end of data); barriers may follow.
    EndOfData,
    /// The channel's end of partition.
    EndOfPartition,
}

/// What a read produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled<B> {
    /// A buffer to process.
    Buffer(ChannelIndex, B),
    /// An event was handled; carry out these actions in order.
    Actions(Actions),
    /// The channel's end of data, in its place among the channel's items.
    EndOfData(ChannelIndex),
}

/// Input channel state of one checkpoint: per channel, the buffers to replay first on restore.
pub type InputChannelState<B> = Vec<Vec<B>>;

// The checkpoint of a barrier that overtook buffers, its channel, and the buffers.
type Overtaken<B> = (CheckpointId, ChannelIndex, Vec<B>);

#[derive(Clone, Debug)]
struct InFlight<B> {
    checkpoint_id: CheckpointId,
    channels: InputChannelState<B>,
}

/// The input gate's checkpointing core.
#[derive(Clone, Debug)]
pub struct CheckpointedInputGate<B> {
    handler: BarrierHandler,
    queues: Vec<VecDeque<InputItem<B>>>,
    // Per channel, the newest barrier that arrived (ids grow on a FIFO channel) and whether
    // the end of partition arrived.
    arrived_barrier: Vec<Option<CheckpointId>>,
    arrived_end: Vec<bool>,
    in_flight: Option<InFlight<B>>,
    completed: Option<InFlight<B>>,
    cursor: usize,
}

impl<B: Clone> CheckpointedInputGate<B> {
    /// A gate of `channel_count` open channels whose barriers are handled in `mode`.
    pub fn new(channel_count: usize, mode: CheckpointingMode) -> Self {
        CheckpointedInputGate {
            handler: BarrierHandler::new(channel_count, mode),
            queues: vec![VecDeque::new(); channel_count],
            arrived_barrier: vec![None; channel_count],
            arrived_end: vec![false; channel_count],
            in_flight: None,
            completed: None,
            cursor: 0,
        }
    }

    /// Channels of the gate.
    pub fn channel_count(&self) -> usize {
        self.queues.len()
    }

    /// The barrier handler (read only: every input goes through the gate).
    pub fn handler(&self) -> &BarrierHandler {
        &self.handler
    }

    /// Puts restored input channel state into `channel` ahead of anything that arrives.
    pub fn restore(&mut self, channel: ChannelIndex, buffers: Vec<B>) {
        let queue = &mut self.queues[channel.0 as usize];
        assert!(
            queue.is_empty(),
            "channel state is restored before any data"
        );
        queue.extend(buffers.into_iter().map(InputItem::Buffer));
    }

    /// An item arrived on `channel`. A priority barrier is handled at once, and its actions
    /// returned; everything else queues.
    pub fn on_arrival(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        item: InputItem<B>,
    ) -> Result<Actions, ProtocolError> {
        let index = channel.0 as usize;
        match self.arrived_end.get(index) {
            None => return Err(ProtocolError::UnknownChannel { channel }),
            Some(true) => return Err(ProtocolError::EventAfterEnd { channel }),
            Some(false) => {}
        }
        match item {
            InputItem::Barrier(barrier) => {
                let previous = self.arrived_barrier[index];
                if previous.is_some_and(|previous| barrier.checkpoint_id <= previous) {
                    return Err(ProtocolError::BarrierWentBackwards {
                        channel,
                        previous: previous.expect("checked"),
                        received: barrier.checkpoint_id,
                    });
                }
                self.arrived_barrier[index] = Some(barrier.checkpoint_id);
                if self.handler.is_priority(now, &barrier) {
                    return self.overtake(now, channel, barrier, self.queues[index].len());
                }
                self.queues[index].push_back(InputItem::Barrier(barrier));
                if barrier.alignment_deadline().is_some() {
                    let actions = self.handler.on_announcement(now, channel, barrier)?;
                    return self.follow(now, actions, None);
                }
            }
            InputItem::EndOfPartition => {
                self.arrived_end[index] = true;
                self.queues[index].push_back(InputItem::EndOfPartition);
            }
            other => self.queues[index].push_back(other),
        }
        Ok(Actions::new())
    }

    /// The next buffer or event from a channel that is not blocked, round robin.
    pub fn poll_next(&mut self, now: Instant) -> Option<Result<Polled<B>, ProtocolError>> {
        let count = self.queues.len();
        let index = (0..count)
            .map(|step| (self.cursor + step) % count)
            .find(|&index| {
                !self.handler.is_blocked(ChannelIndex(index as u16))
                    && !self.queues[index].is_empty()
            })?;
        self.cursor = (index + 1) % count;
        let channel = ChannelIndex(index as u16);
        let item = self.queues[index].pop_front().expect("not empty");
        let result = match item {
            InputItem::Buffer(buffer) => {
                self.persist_if_in_flight(channel, &buffer);
                return Some(Ok(Polled::Buffer(channel, buffer)));
            }
            InputItem::Barrier(barrier) => self.handler.on_barrier(now, channel, barrier),
            InputItem::CancelMarker(checkpoint_id) => {
                self.handler.on_cancel_marker(channel, checkpoint_id)
            }
            InputItem::EndOfData => return Some(Ok(Polled::EndOfData(channel))),
            InputItem::EndOfPartition => self.handler.on_end_of_partition(now, channel),
        };
        Some(
            result
                .and_then(|actions| self.follow(now, actions, None))
                .map(Polled::Actions),
        )
    }

    /// When `on_timer` must run next, if ever.
    pub fn timer_due_at(&self) -> Option<Instant> {
        self.handler.timer_due_at()
    }

    /// Time passed: a checkpoint past its alignment deadline turns unaligned.
    pub fn on_timer(&mut self, now: Instant) -> Result<Actions, ProtocolError> {
        let actions = self.handler.on_timer(now);
        self.follow(now, actions, None)
    }

    /// The input channel state of `checkpoint_id`, once `InputStateComplete` announced it.
    pub fn take_input_state(
        &mut self,
        checkpoint_id: CheckpointId,
    ) -> Option<InputChannelState<B>> {
        let completed = self
            .completed
            .take_if(|completed| completed.checkpoint_id == checkpoint_id)?;
        Some(completed.channels)
    }

    /// The task had read part of a buffer of `channel` when unaligned checkpoint
    /// `checkpoint_id` triggered: the unread rest is the oldest in-flight data of that channel
    /// (Flink persists the deserializer's unconsumed buffer the same way).
    pub fn add_unconsumed(&mut self, checkpoint_id: CheckpointId, channel: ChannelIndex, rest: B) {
        let collecting = [self.in_flight.as_mut(), self.completed.as_mut()]
            .into_iter()
            .flatten()
            .find(|state| state.checkpoint_id == checkpoint_id)
            .expect("called right after the unaligned trigger");
        collecting.channels[channel.0 as usize].insert(0, rest);
    }

    /// Buffers queued in the gate.
    pub fn buffers_queued(&self) -> usize {
        self.queues
            .iter()
            .flatten()
            .filter(|item| matches!(item, InputItem::Buffer(_)))
            .count()
    }

    // The barrier at `position` of `channel`'s queue (or arriving behind it) overtakes the
    // buffers ahead of it.
    fn overtake(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        barrier: Barrier,
        position: usize,
    ) -> Result<Actions, ProtocolError> {
        let index = channel.0 as usize;
        let overtaken: Vec<B> = self.queues[index]
            .range(..position)
            .filter_map(|item| match item {
                InputItem::Buffer(buffer) => Some(buffer.clone()),
                _ => None,
            })
            .collect();
        // Older barriers and cancel markers ahead of it are obsolete once it is handled.
        self.queues[index].retain(|item| match item {
            InputItem::Barrier(queued) => queued.checkpoint_id > barrier.checkpoint_id,
            InputItem::CancelMarker(queued) => *queued > barrier.checkpoint_id,
            _ => true,
        });
        let actions = self.handler.on_barrier(now, channel, barrier)?;
        self.follow(
            now,
            actions,
            Some((barrier.checkpoint_id, channel, overtaken)),
        )
    }

    // Carries out the actions that concern channel state, and passes all of them on.
    // `overtaken` is what a barrier just jumped over: in-flight data of its checkpoint if that
    // checkpoint is collecting, added before it can complete.
    fn follow(
        &mut self,
        now: Instant,
        actions: Actions,
        mut overtaken: Option<Overtaken<B>>,
    ) -> Result<Actions, ProtocolError> {
        let mut followed = Actions::new();
        let mut pull_forward = None;
        for action in actions {
            match &action {
                Action::Trigger { barrier, .. } if barrier.is_unaligned() => {
                    self.in_flight = Some(InFlight {
                        checkpoint_id: barrier.checkpoint_id,
                        channels: vec![Vec::new(); self.queues.len()],
                    });
                    self.add_overtaken(&mut overtaken);
                    pull_forward = Some(barrier.checkpoint_id);
                }
                Action::InputStateComplete { checkpoint_id } => {
                    self.add_overtaken(&mut overtaken);
                    let in_flight = self.in_flight.take().expect("an unaligned checkpoint");
                    assert_eq!(in_flight.checkpoint_id, *checkpoint_id);
                    self.completed = Some(in_flight);
                }
                Action::Abort { checkpoint_id, .. } => {
                    self.in_flight
                        .take_if(|in_flight| in_flight.checkpoint_id == *checkpoint_id);
                }
                _ => {}
            }
            followed.push(action);
        }
        self.add_overtaken(&mut overtaken);
        if let Some(checkpoint_id) = pull_forward {
            followed.extend(self.pull_queued_barriers_forward(now, checkpoint_id)?);
        }
        Ok(followed)
    }

    fn add_overtaken(&mut self, overtaken: &mut Option<Overtaken<B>>) {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return;
        };
        if let Some((_, channel, buffers)) =
            overtaken.take_if(|(checkpoint_id, _, _)| *checkpoint_id == in_flight.checkpoint_id)
        {
            in_flight.channels[channel.0 as usize].extend(buffers);
        }
    }

    // A checkpoint turned unaligned: its barriers already queued overtake the buffers ahead of
    // them. Only a barrier behind nothing but buffers moves; behind other events it waits its
    // turn, and the buffers before it are persisted as they are read.
    fn pull_queued_barriers_forward(
        &mut self,
        now: Instant,
        checkpoint_id: CheckpointId,
    ) -> Result<Actions, ProtocolError> {
        let mut actions = Actions::new();
        for index in 0..self.queues.len() {
            let channel = ChannelIndex(index as u16);
            if self.handler.persisting(channel) != Some(checkpoint_id) {
                continue;
            }
            let found = self.queues[index]
                .iter()
                .position(|item| !matches!(item, InputItem::Buffer(_)))
                .filter(|&position| {
                    matches!(self.queues[index][position],
                        InputItem::Barrier(barrier) if barrier.checkpoint_id == checkpoint_id)
                });
            let Some(position) = found else { continue };
            let Some(InputItem::Barrier(barrier)) = self.queues[index].remove(position) else {
                unreachable!("found above");
            };
            actions.extend(self.overtake(now, channel, barrier, position)?);
        }
        Ok(actions)
    }

    fn persist_if_in_flight(&mut self, channel: ChannelIndex, buffer: &B) {
        let Some(checkpoint_id) = self.handler.persisting(channel) else {
            return;
        };
        let in_flight = self
            .in_flight
            .as_mut()
            .expect("a persisting channel has a checkpoint collecting");
        assert_eq!(in_flight.checkpoint_id, checkpoint_id);
        in_flight.channels[channel.0 as usize].push(buffer.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::barrier::BarrierKind;
    use crate::time::Duration;

    fn barrier(checkpoint_id: u64, kind: BarrierKind) -> InputItem<u32> {
        InputItem::Barrier(Barrier {
            snapshot: crate::checkpoint::barrier::SnapshotType::Checkpoint,
            checkpoint_id: CheckpointId(checkpoint_id),
            timestamp: Instant::ZERO,
            kind,
        })
    }

    fn channel(index: u16) -> ChannelIndex {
        ChannelIndex(index)
    }

    fn drain(gate: &mut CheckpointedInputGate<u32>) -> (Vec<u32>, Vec<Action>) {
        let (mut buffers, mut actions) = (Vec::new(), Vec::new());
        while let Some(polled) = gate.poll_next(Instant::ZERO) {
            match polled.unwrap() {
                Polled::Buffer(_, buffer) => buffers.push(buffer),
                Polled::Actions(more) => actions.extend(more),
                Polled::EndOfData(_) => {}
            }
        }
        (buffers, actions)
    }

    #[test]
    fn end_of_data_is_read_in_its_place_behind_the_channels_buffers() {
        let mut gate = CheckpointedInputGate::new(1, CheckpointingMode::ExactlyOnce);
        let zero = ChannelIndex(0);
        for item in [
            InputItem::Buffer(1),
            InputItem::EndOfData,
            InputItem::Buffer(2),
        ] {
            gate.on_arrival(Instant::ZERO, zero, item).unwrap();
        }
        let mut read = Vec::new();
        while let Some(polled) = gate.poll_next(Instant::ZERO) {
            read.push(polled.unwrap());
        }
        assert_eq!(
            read,
            vec![
                Polled::Buffer(zero, 1),
                Polled::EndOfData(zero),
                Polled::Buffer(zero, 2)
            ]
        );
    }

    #[test]
    fn an_unaligned_barrier_overtakes_its_queue_and_others_persist_until_their_barrier() {
        let mut gate = CheckpointedInputGate::new(2, CheckpointingMode::ExactlyOnce);
        for (c, b) in [(0, 1), (0, 2), (1, 10)] {
            gate.on_arrival(Instant::ZERO, channel(c), InputItem::Buffer(b))
                .unwrap();
        }
        let actions = gate
            .on_arrival(
                Instant::ZERO,
                channel(0),
                barrier(1, BarrierKind::Unaligned),
            )
            .unwrap();
        assert!(matches!(actions[..], [Action::Trigger { .. }]));
        gate.on_arrival(Instant::ZERO, channel(0), InputItem::Buffer(3))
            .unwrap();
        gate.on_arrival(Instant::ZERO, channel(1), InputItem::Buffer(11))
            .unwrap();
        let (read, _) = drain(&mut gate);
        assert_eq!(
            read,
            vec![1, 10, 2, 11, 3],
            "overtaken data is still processed"
        );
        let actions = gate
            .on_arrival(
                Instant::ZERO,
                channel(1),
                barrier(1, BarrierKind::Unaligned),
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::InputStateComplete {
                checkpoint_id: CheckpointId(1)
            }]
        );
        // Channel 0: what its barrier overtook; channel 1: what was read before its barrier.
        assert_eq!(
            gate.take_input_state(CheckpointId(1)),
            Some(vec![vec![1, 2], vec![10, 11]])
        );
        assert_eq!(gate.take_input_state(CheckpointId(1)), None);
    }

    #[test]
    fn a_timed_out_alignment_pulls_queued_barriers_forward() {
        let timeoutable = BarrierKind::AlignedTimeoutable {
            timeout: Duration::from_ms(10),
        };
        let mut gate = CheckpointedInputGate::new(2, CheckpointingMode::ExactlyOnce);
        gate.on_arrival(Instant::ZERO, channel(0), barrier(1, timeoutable))
            .unwrap();
        gate.on_arrival(Instant::ZERO, channel(0), InputItem::Buffer(5))
            .unwrap();
        gate.on_arrival(Instant::ZERO, channel(1), InputItem::Buffer(20))
            .unwrap();
        assert_eq!(gate.buffers_queued(), 2, "events are not buffers");
        let (read, actions) = drain(&mut gate);
        assert_eq!(read, vec![20], "channel 0 is blocked behind its barrier");
        assert_eq!(gate.buffers_queued(), 1, "channel 0's buffer waits");
        assert_eq!(actions, vec![Action::Block(channel(0))]);
        gate.on_arrival(Instant::ZERO, channel(1), InputItem::Buffer(21))
            .unwrap();
        gate.on_arrival(Instant::ZERO, channel(1), barrier(1, timeoutable))
            .unwrap();
        assert_eq!(gate.timer_due_at(), Some(Instant::from_ms(10)));
        let actions = gate.on_timer(Instant::from_ms(10)).unwrap();
        let shape: Vec<&str> = actions
            .iter()
            .map(|action| match action {
                Action::Trigger { .. } => "trigger",
                Action::UnblockAll => "unblock",
                Action::InputStateComplete { .. } => "complete",
                _ => "other",
            })
            .collect();
        assert_eq!(shape, vec!["trigger", "unblock", "complete"], "{actions:?}");
        // Buffer 20 was processed before the snapshot; 21 was queued ahead of the barrier.
        assert_eq!(
            gate.take_input_state(CheckpointId(1)),
            Some(vec![vec![], vec![21]])
        );
        let (read, _) = drain(&mut gate);
        assert_eq!(read, vec![5, 21]);
    }

    #[test]
    fn an_announced_barrier_times_out_over_the_backlog_queued_ahead_of_it() {
        let timeoutable = BarrierKind::AlignedTimeoutable {
            timeout: Duration::from_ms(10),
        };
        let mut gate = CheckpointedInputGate::new(2, CheckpointingMode::ExactlyOnce);
        for buffer in [1, 2, 3] {
            gate.on_arrival(Instant::ZERO, channel(0), InputItem::Buffer(buffer))
                .unwrap();
        }
        assert_eq!(gate.timer_due_at(), None, "no checkpoint yet");
        // The barrier queues behind the backlog; its announcement starts the checkpoint and
        // the timer before the task reads anything.
        let actions = gate
            .on_arrival(Instant::from_ms(1), channel(0), barrier(1, timeoutable))
            .unwrap();
        assert_eq!(actions, vec![]);
        assert!(
            matches!(gate.handler(), BarrierHandler::Aligned(aligner) if aligner.pending_checkpoint() == Some(CheckpointId(1)))
        );
        assert_eq!(gate.timer_due_at(), Some(Instant::from_ms(10)));
        gate.on_arrival(Instant::from_ms(2), channel(1), InputItem::Buffer(20))
            .unwrap();
        // The task gets through one buffer of the backlog before the deadline.
        assert!(matches!(
            gate.poll_next(Instant::from_ms(5)),
            Some(Ok(Polled::Buffer(_, 1)))
        ));
        let actions = gate.on_timer(Instant::from_ms(10)).unwrap();
        assert!(
            matches!(&actions[..], [Action::Trigger { barrier, .. }] if barrier.is_unaligned()),
            "{actions:?}"
        );
        // Channel 1 persists until its barrier; channel 0's barrier overtook 2 and 3.
        gate.on_arrival(Instant::from_ms(11), channel(1), InputItem::Buffer(21))
            .unwrap();
        // The checkpoint runs unaligned, so channel 1's barrier overtakes on arrival too.
        let actions = gate
            .on_arrival(Instant::from_ms(12), channel(1), barrier(1, timeoutable))
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::InputStateComplete {
                checkpoint_id: CheckpointId(1)
            }]
        );
        let (read, _) = drain(&mut gate);
        assert_eq!(read, vec![20, 2, 21, 3], "round robin from channel 1");
        assert_eq!(
            gate.take_input_state(CheckpointId(1)),
            Some(vec![vec![2, 3], vec![20, 21]])
        );
    }

    #[test]
    fn the_unread_rest_of_a_buffer_is_the_oldest_in_flight_data() {
        let mut gate = CheckpointedInputGate::new(1, CheckpointingMode::ExactlyOnce);
        gate.on_arrival(Instant::ZERO, channel(0), InputItem::Buffer(2))
            .unwrap();
        let actions = gate
            .on_arrival(
                Instant::ZERO,
                channel(0),
                barrier(4, BarrierKind::Unaligned),
            )
            .unwrap();
        assert!(matches!(
            actions[..],
            [Action::Trigger { .. }, Action::InputStateComplete { .. }]
        ));
        gate.add_unconsumed(CheckpointId(4), channel(0), 1);
        assert_eq!(
            gate.take_input_state(CheckpointId(4)),
            Some(vec![vec![1, 2]])
        );
    }

    #[test]
    fn arrival_order_is_checked_and_restored_state_comes_first() {
        let mut gate = CheckpointedInputGate::new(1, CheckpointingMode::ExactlyOnce);
        gate.restore(channel(0), vec![7, 8]);
        gate.on_arrival(Instant::ZERO, channel(0), InputItem::Buffer(9))
            .unwrap();
        gate.on_arrival(Instant::ZERO, channel(0), barrier(3, BarrierKind::Aligned))
            .unwrap();
        assert_eq!(
            gate.on_arrival(Instant::ZERO, channel(0), barrier(2, BarrierKind::Aligned)),
            Err(ProtocolError::BarrierWentBackwards {
                channel: channel(0),
                previous: CheckpointId(3),
                received: CheckpointId(2)
            })
        );
        let (read, _) = drain(&mut gate);
        assert_eq!(read, vec![7, 8, 9]);
        gate.on_arrival(Instant::ZERO, channel(0), InputItem::EndOfPartition)
            .unwrap();
        assert_eq!(
            gate.on_arrival(Instant::ZERO, channel(0), InputItem::Buffer(1)),
            Err(ProtocolError::EventAfterEnd {
                channel: channel(0)
            })
        );
    }
}
