//! A model-checking harness for the barrier handler, shared by the `barrier_alignment` fuzz
//! target and the test that replays its corpus on stable Rust.
//!
//! It decodes arbitrary bytes into a gate: a channel count, a checkpointing mode and an
//! interleaving of per-channel events (buffers with sequence numbers, barriers, cancel markers,
//! end of partition, timer ticks). It drives the handler as the task does — an item is
//! delivered only from a channel the handler does not block — and checks, against a model of
//! DESIGN §5, that:
//! - no record is lost or duplicated: each channel's buffers are delivered once, in order, and
//!   once every channel has ended, everything sent has been delivered;
//! - under exactly-once, no record behind barrier n on a channel is released before checkpoint
//!   n (or a newer one) triggers or aborts;
//! - a trigger happens only when every open channel has delivered that barrier (aligned) or has
//!   seen it (at-least-once);
//! - triggered ids strictly increase, and each checkpoint triggers or aborts at most once;
//! - every protocol error the handler reports is justified by the input, and it never panics.

use crate::checkpoint::barrier::{Barrier, BarrierKind};
use crate::checkpoint::barrier_handler::{Action, BarrierHandler, ProtocolError};
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::ids::{ChannelIndex, CheckpointId};
use crate::time::{Duration, Instant};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::{BTreeSet, VecDeque};
use std::fmt;

/// Channels of a generated gate, at most.
const CHANNELS_MAX: usize = 8;
/// Steps of a generated scenario, at most (bounds the work per input).
const STEPS_MAX: usize = 4096;

/// The mode a scenario runs the handler in.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeChoice {
    /// Exactly-once, aligned.
    Aligned,
    /// At-least-once, tracked.
    AtLeastOnce,
}

/// What an upstream sends on its channel.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// A buffer of records.
    Buffer,
    /// Barrier of this checkpoint id (small ids make collisions and reorderings likely).
    Barrier(u8),
    /// Cancel marker of this checkpoint id.
    Cancel(u8),
    /// End of partition.
    End,
}

/// One step of the interleaving.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The upstream of `channel` sends an item (queued in the gate).
    Send {
        /// The channel, modulo the channel count.
        channel: u8,
        /// The item.
        item: Item,
    },
    /// The task reads the next item of `channel`, if the handler lets it.
    Deliver {
        /// The channel, modulo the channel count.
        channel: u8,
    },
    /// Simulated time passes.
    Tick {
        /// Milliseconds.
        advance_ms: u8,
    },
}

/// A generated gate scenario.
#[derive(Arbitrary, Clone, Debug)]
pub struct GateScenario {
    /// Channels, minus one, modulo `CHANNELS_MAX`.
    pub channels: u8,
    /// The mode.
    pub mode: ModeChoice,
    /// The interleaving.
    pub steps: Vec<Step>,
}

/// A broken invariant, with the step it broke at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Index of the step (or `steps.len()` for the final drain).
    pub step: usize,
    /// What broke.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}: {}", self.step, self.message)
    }
}

/// Decodes `bytes` into a scenario and checks it. Bytes that do not decode are no scenario.
pub fn check_bytes(bytes: &[u8]) -> Result<(), Violation> {
    let Ok(scenario) = GateScenario::arbitrary_take_rest(Unstructured::new(bytes)) else {
        return Ok(());
    };
    check_scenario(&scenario)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queued {
    Buffer(u64),
    Barrier(CheckpointId),
    Cancel(CheckpointId),
    End,
}

/// The model of one gate and what it has seen.
struct Model {
    mode: ModeChoice,
    handler: BarrierHandler,
    now: Instant,
    queues: Vec<VecDeque<Queued>>,
    sent: Vec<u64>,
    delivered: Vec<u64>,
    ended: Vec<bool>,
    last_barrier: Vec<Option<CheckpointId>>,
    awaiting: Vec<Option<CheckpointId>>,
    barrier_newest: Option<CheckpointId>,
    finished: BTreeSet<CheckpointId>,
    triggered_last: Option<CheckpointId>,
    all_ended_announced: bool,
    failed: bool,
}

/// Runs `scenario` against the model.
pub fn check_scenario(scenario: &GateScenario) -> Result<(), Violation> {
    let channel_count = (scenario.channels as usize % CHANNELS_MAX) + 1;
    let mode = match scenario.mode {
        ModeChoice::Aligned => CheckpointingMode::ExactlyOnce,
        ModeChoice::AtLeastOnce => CheckpointingMode::AtLeastOnce,
    };
    let mut model = Model {
        mode: scenario.mode,
        handler: BarrierHandler::new(channel_count, mode),
        now: Instant::ZERO,
        queues: vec![VecDeque::new(); channel_count],
        sent: vec![0; channel_count],
        delivered: vec![0; channel_count],
        ended: vec![false; channel_count],
        last_barrier: vec![None; channel_count],
        awaiting: vec![None; channel_count],
        barrier_newest: None,
        finished: BTreeSet::new(),
        triggered_last: None,
        all_ended_announced: false,
        failed: false,
    };
    for (index, step) in scenario.steps.iter().take(STEPS_MAX).enumerate() {
        let at = |message: String| Violation {
            step: index,
            message,
        };
        match *step {
            Step::Send { channel, item } => model.send(channel as usize % channel_count, item),
            Step::Deliver { channel } => model
                .deliver(channel as usize % channel_count)
                .map_err(at)?,
            Step::Tick { advance_ms } => {
                model.now = model.now.add(Duration::from_ms(advance_ms as u64))
            }
        }
        if model.failed {
            return Ok(()); // The task failed on a justified protocol error: nothing more to check.
        }
    }
    model.drain().map_err(|message| Violation {
        step: scenario.steps.len().min(STEPS_MAX),
        message,
    })
}

impl Model {
    fn send(&mut self, channel: usize, item: Item) {
        let queued = match item {
            Item::Buffer => {
                self.sent[channel] += 1;
                Queued::Buffer(self.sent[channel])
            }
            Item::Barrier(id) => Queued::Barrier(CheckpointId(id as u64 + 1)),
            Item::Cancel(id) => Queued::Cancel(CheckpointId(id as u64 + 1)),
            Item::End => Queued::End,
        };
        self.queues[channel].push_back(queued);
    }

    /// Delivers the head of `channel` if the handler allows, checking every invariant.
    fn deliver(&mut self, channel: usize) -> Result<(), String> {
        let index = ChannelIndex(channel as u16);
        if self.handler.is_blocked(index) {
            if self.mode == ModeChoice::AtLeastOnce {
                return Err(format!("at-least-once blocked channel {channel}"));
            }
            return Ok(()); // The task does not read a blocked channel.
        }
        let Some(item) = self.queues[channel].pop_front() else {
            return Ok(());
        };
        let result = match item {
            Queued::Buffer(sequence) => return self.on_buffer(channel, sequence),
            Queued::Barrier(checkpoint_id) => self.handler.on_barrier(
                self.now,
                index,
                Barrier {
                    checkpoint_id,
                    timestamp: Instant::ZERO,
                    kind: self.barrier_kind(),
                },
            ),
            Queued::Cancel(checkpoint_id) => self.handler.on_cancel_marker(index, checkpoint_id),
            Queued::End => self.handler.on_end_of_partition(self.now, index),
        };
        match result {
            Ok(actions) => self.after(channel, item, actions),
            Err(error) => self.justify(channel, item, error),
        }
    }

    fn barrier_kind(&self) -> BarrierKind {
        match self.mode {
            ModeChoice::Aligned => BarrierKind::Aligned,
            ModeChoice::AtLeastOnce => BarrierKind::AtLeastOnce,
        }
    }

    fn on_buffer(&mut self, channel: usize, sequence: u64) -> Result<(), String> {
        if self.ended[channel] {
            self.failed = true; // Data after end of partition: the gate fails the task.
            return Ok(());
        }
        if self.delivered[channel] + 1 != sequence {
            return Err(format!(
                "channel {channel} delivered buffer {sequence} after {}",
                self.delivered[channel]
            ));
        }
        self.delivered[channel] = sequence;
        if let (ModeChoice::Aligned, Some(pending)) = (self.mode, self.awaiting[channel]) {
            return Err(format!("channel {channel} released buffer {sequence} behind barrier {pending} before checkpoint {pending} triggered or aborted"));
        }
        Ok(())
    }

    /// The handler refused an item: only input that breaks the protocol may be refused.
    fn justify(
        &mut self,
        channel: usize,
        item: Queued,
        error: ProtocolError,
    ) -> Result<(), String> {
        let justified = match (&error, item) {
            (ProtocolError::EventAfterEnd { .. }, _) => self.ended[channel],
            (ProtocolError::BarrierWentBackwards { .. }, Queued::Barrier(id)) => {
                self.last_barrier[channel].is_some_and(|last| id <= last)
            }
            _ => false,
        };
        if !justified {
            return Err(format!(
                "channel {channel}: {item:?} refused without cause: {error}"
            ));
        }
        self.failed = true;
        Ok(())
    }

    fn after(&mut self, channel: usize, item: Queued, actions: Vec<Action>) -> Result<(), String> {
        match item {
            Queued::Barrier(id) => {
                self.last_barrier[channel] = Some(id);
                // A barrier older than one another channel delivered, or of a checkpoint that
                // already triggered or aborted, is obsolete (ignored, Flink's "skipping old
                // barrier"); any other holds back this channel's records.
                let current = self.barrier_newest.is_none_or(|newest| id >= newest);
                let open = self.finished.last().is_none_or(|latest| id > *latest);
                if current && open {
                    self.awaiting[channel] = Some(id);
                }
                self.barrier_newest = self.barrier_newest.max(Some(id));
            }
            Queued::End => self.ended[channel] = true,
            Queued::Buffer(_) | Queued::Cancel(_) => {}
        }
        for action in actions {
            self.on_action(action)?;
        }
        Ok(())
    }

    fn on_action(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Block(_) | Action::UnblockAll | Action::InputStateComplete { .. } => Ok(()),
            Action::Trigger { barrier, .. } => {
                let checkpoint_id = barrier.checkpoint_id;
                if self.triggered_last >= Some(checkpoint_id) {
                    return Err(format!(
                        "checkpoint {checkpoint_id} triggered after {:?}",
                        self.triggered_last
                    ));
                }
                self.check_everyone_saw(checkpoint_id)?;
                self.triggered_last = Some(checkpoint_id);
                self.finish(checkpoint_id)
            }
            Action::Abort { checkpoint_id, .. } => self.finish(checkpoint_id),
            Action::AllInputsEnded => {
                if self.all_ended_announced || !self.ended.iter().all(|e| *e) {
                    return Err("all inputs announced ended twice or too early".to_string());
                }
                self.all_ended_announced = true;
                Ok(())
            }
        }
    }

    fn check_everyone_saw(&self, checkpoint_id: CheckpointId) -> Result<(), String> {
        for channel in 0..self.ended.len() {
            let seen = self.ended[channel] || self.last_barrier[channel] >= Some(checkpoint_id);
            if !seen {
                return Err(format!("checkpoint {checkpoint_id} triggered before channel {channel} delivered its barrier"));
            }
        }
        Ok(())
    }

    fn finish(&mut self, checkpoint_id: CheckpointId) -> Result<(), String> {
        if !self.finished.insert(checkpoint_id) {
            return Err(format!(
                "checkpoint {checkpoint_id} triggered or aborted twice"
            ));
        }
        for awaiting in self.awaiting.iter_mut() {
            if awaiting.is_some_and(|pending| pending <= checkpoint_id) {
                *awaiting = None;
            }
        }
        Ok(())
    }

    /// Every upstream ends; the task reads until nothing moves. Everything sent must arrive.
    fn drain(&mut self) -> Result<(), String> {
        for channel in 0..self.queues.len() {
            if !self.queues[channel].contains(&Queued::End) && !self.ended[channel] {
                self.queues[channel].push_back(Queued::End);
            }
        }
        let mut moved = true;
        while moved && !self.failed {
            moved = false;
            for channel in 0..self.queues.len() {
                let before = self.queues[channel].len();
                self.deliver(channel)?;
                moved |= self.queues[channel].len() < before;
            }
        }
        if self.failed {
            return Ok(());
        }
        for channel in 0..self.queues.len() {
            if !self.queues[channel].is_empty() {
                return Err(format!(
                    "channel {channel} stuck with {} item(s) after every channel ended",
                    self.queues[channel].len()
                ));
            }
            if self.delivered[channel] != self.sent[channel] {
                return Err(format!(
                    "channel {channel} delivered {} of {} buffers",
                    self.delivered[channel], self.sent[channel]
                ));
            }
        }
        if !self.all_ended_announced {
            return Err("every channel ended but the handler did not say so".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(mode: ModeChoice, channels: u8, steps: Vec<Step>) -> GateScenario {
        GateScenario {
            channels: channels - 1,
            mode,
            steps,
        }
    }

    fn send(channel: u8, item: Item) -> Step {
        Step::Send { channel, item }
    }

    fn deliver(channel: u8) -> Step {
        Step::Deliver { channel }
    }

    #[test]
    fn aligned_gate_with_interleaved_barriers_passes() {
        let steps = vec![
            send(0, Item::Buffer),
            send(0, Item::Barrier(0)),
            send(0, Item::Buffer),
            send(1, Item::Buffer),
            send(1, Item::Barrier(0)),
            deliver(0),
            deliver(0),
            deliver(0), // Blocked: the buffer behind barrier 1 waits.
            deliver(1),
            deliver(1),
            deliver(0),
        ];
        assert_eq!(
            check_scenario(&scenario(ModeChoice::Aligned, 2, steps.clone())),
            Ok(())
        );
        assert_eq!(
            check_scenario(&scenario(ModeChoice::AtLeastOnce, 2, steps)),
            Ok(())
        );
    }

    #[test]
    fn an_older_barrier_after_a_newer_one_is_obsolete() {
        let steps = vec![
            send(0, Item::Barrier(4)),
            send(1, Item::Barrier(3)),
            send(1, Item::Buffer),
            deliver(0),
            deliver(1),
            deliver(1),
        ];
        assert_eq!(
            check_scenario(&scenario(ModeChoice::Aligned, 2, steps)),
            Ok(())
        );
    }

    #[test]
    fn backwards_barriers_and_data_after_end_fail_the_task_not_the_model() {
        let steps = vec![
            send(0, Item::Barrier(3)),
            send(0, Item::Barrier(1)),
            deliver(0),
            deliver(0),
        ];
        assert_eq!(
            check_scenario(&scenario(ModeChoice::Aligned, 1, steps)),
            Ok(())
        );
        let steps = vec![
            send(0, Item::End),
            send(0, Item::Buffer),
            deliver(0),
            deliver(0),
        ];
        assert_eq!(
            check_scenario(&scenario(ModeChoice::AtLeastOnce, 1, steps)),
            Ok(())
        );
    }

    #[test]
    fn arbitrary_bytes_never_break_an_invariant() {
        // A small deterministic sweep; the fuzzer explores far more.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            let bytes: Vec<u8> = (0..256)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert_eq!(check_bytes(&bytes), Ok(()));
        }
    }
}
