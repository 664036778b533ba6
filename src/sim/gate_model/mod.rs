//! A model-checking harness for the checkpointed input gate (queues, barrier handler, channel
//! state), shared by the `barrier_alignment` fuzz target and the test that replays its corpus
//! on stable Rust.
//!
//! It decodes arbitrary bytes into a gate: a channel count, a checkpointing mode (aligned,
//! unaligned, aligned with timeout, at-least-once) and an interleaving of per-channel arrivals
//! (buffers with sequence numbers, barriers, cancel markers, end of partition), reads by the
//! task, and timer ticks. It drives `CheckpointedInputGate` as the task does and checks,
//! against a model of DESIGN §5, that:
//! - no record is lost or duplicated: each channel's buffers are read once, in order, and once
//!   every channel has ended, everything sent has been read;
//! - an aligned trigger of checkpoint n happens exactly at barrier n on every open channel (all
//!   buffers before it read, none behind it), and while n aligns no record behind barrier n
//!   is read;
//! - an unaligned trigger of n has read no record behind barrier n on any channel, and n's
//!   input channel state is exactly the buffers before barrier n that were not read at the
//!   trigger, per channel and in order (the overtaken data);
//! - with aligned-with-timeout, a barrier is announced when it arrives, even behind queued
//!   data: once the newest arrived barrier's deadline has passed and the timer ran, its
//!   checkpoint has triggered (unaligned, over the data still queued ahead of the barrier) or
//!   ended, and its channel state is that data plus what arrived before the barrier elsewhere;
//! - at-least-once triggers only when barrier n (or a newer one) arrived on every open channel;
//! - triggered ids strictly increase, and each checkpoint triggers or aborts at most once;
//! - every protocol error the gate reports is justified by the input, and it never panics.
//!
//! The task behind the gate has output channels too (`output_side`): what it reads it emits,
//! its triggers snapshot through the engine's `SubtaskCheckpointCoordinator` and forward the
//! barrier, credit steps let the downstream receive, and each uploaded snapshot must be a
//! consistent cut of the output channels.

mod output_side;

use crate::checkpoint::barrier::{Barrier, BarrierKind};
use crate::checkpoint::barrier_handler::BarrierHandler;
use crate::checkpoint::barrier_protocol::{Action, ProtocolError};
use crate::checkpoint::checkpointed_input_gate::{CheckpointedInputGate, InputItem, Polled};
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::ids::{ChannelIndex, CheckpointId};
use crate::time::{Duration, Instant};
use arbitrary::{Arbitrary, Unstructured};
use output_side::{OutputSide, OUTPUTS_MAX};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Channels of a generated gate, at most.
const CHANNELS_MAX: usize = 8;
/// Steps of a generated scenario, at most (bounds the work per input).
const STEPS_MAX: usize = 4096;
/// The aligned-checkpoint timeout in `AlignedTimeout` mode; checkpoint n is created at 2n ms.
const ALIGNMENT_TIMEOUT: Duration = Duration::from_ms(5);

/// The mode a scenario runs the gate in.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeChoice {
    /// Exactly-once, aligned.
    Aligned,
    /// At-least-once, tracked.
    AtLeastOnce,
    /// Exactly-once, unaligned.
    Unaligned,
    /// Exactly-once, aligned until `ALIGNMENT_TIMEOUT` after creation, then unaligned.
    AlignedTimeout,
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
    /// The upstream of `channel` sends an item; it arrives at the gate.
    Send {
        /// The channel, modulo the channel count.
        channel: u8,
        /// The item.
        item: Item,
    },
    /// The task reads the gate's next item (the gate picks the channel round robin);
    /// `channel` is kept for the input format and ignored.
    Deliver {
        /// Ignored.
        channel: u8,
    },
    /// Simulated time passes (a due alignment timer waits for `Timer`, as the task serves
    /// arrivals before its timers).
    Tick {
        /// Milliseconds.
        advance_ms: u8,
    },
    /// The task runs its timers: a due alignment deadline fires.
    Timer,
    /// The downstream of output `channel` grants `credit` buffers (at least one).
    Credit {
        /// The output channel, modulo the output count.
        channel: u8,
        /// Buffers granted.
        credit: u8,
    },
}

/// A generated gate scenario.
#[derive(Arbitrary, Clone, Debug)]
pub struct GateScenario {
    /// Input channels, minus one, modulo `CHANNELS_MAX`; divided by `CHANNELS_MAX`, output
    /// channels, minus one, modulo `OUTPUTS_MAX`.
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

/// What the model knows of one channel.
#[derive(Clone, Debug, Default)]
struct ChannelModel {
    sent: u64,
    read: u64,
    end_arrived: bool,
    last_barrier: Option<CheckpointId>,
    // Checkpoint id to the number of buffers sent before its barrier on this channel.
    barrier_at: BTreeMap<CheckpointId, u64>,
}

impl ChannelModel {
    /// Buffers before barrier `checkpoint_id`: all sent if it has not arrived (yet).
    fn before_barrier(&self, checkpoint_id: CheckpointId) -> Option<u64> {
        self.barrier_at.get(&checkpoint_id).copied()
    }
}

/// The model of one gate and what it has seen.
struct Model {
    mode: ModeChoice,
    gate: CheckpointedInputGate<u64>,
    now: Instant,
    channels: Vec<ChannelModel>,
    finished: BTreeSet<CheckpointId>,
    triggered_last: Option<CheckpointId>,
    // Per unaligned checkpoint collecting: the buffers each channel had read at its trigger.
    read_at_trigger: BTreeMap<CheckpointId, Vec<u64>>,
    all_ended_announced: bool,
    failed: bool,
    output: OutputSide,
}

/// Runs `scenario` against the model.
pub fn check_scenario(scenario: &GateScenario) -> Result<(), Violation> {
    let channel_count = (scenario.channels as usize % CHANNELS_MAX) + 1;
    let output_count = (scenario.channels as usize / CHANNELS_MAX) % OUTPUTS_MAX + 1;
    let mode = match scenario.mode {
        ModeChoice::AtLeastOnce => CheckpointingMode::AtLeastOnce,
        _ => CheckpointingMode::ExactlyOnce,
    };
    let mut model = Model {
        mode: scenario.mode,
        gate: CheckpointedInputGate::new(channel_count, mode),
        now: Instant::ZERO,
        channels: vec![ChannelModel::default(); channel_count],
        finished: BTreeSet::new(),
        triggered_last: None,
        read_at_trigger: BTreeMap::new(),
        all_ended_announced: false,
        failed: false,
        output: OutputSide::new(output_count),
    };
    for (index, step) in scenario.steps.iter().take(STEPS_MAX).enumerate() {
        let result = match *step {
            Step::Send { channel, item } => model.send(channel as usize % channel_count, item),
            Step::Deliver { .. } => model.read().map(|_| ()),
            Step::Tick { advance_ms } => {
                model.now = model.now.add(Duration::from_ms(advance_ms as u64));
                Ok(())
            }
            Step::Timer => model.fire_timer(),
            Step::Credit { channel, credit } => {
                model.output.on_credit(channel as usize, credit as u32);
                Ok(())
            }
        }
        .and_then(|()| model.output.upload_ready());
        result.map_err(|message| Violation {
            step: index,
            message,
        })?;
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
    fn barrier(&self, id: u8) -> Barrier {
        let checkpoint_id = CheckpointId(id as u64 + 1);
        Barrier {
            snapshot: crate::checkpoint::barrier::SnapshotType::Checkpoint,
            checkpoint_id,
            timestamp: Instant::from_ms(2 * checkpoint_id.0),
            kind: match self.mode {
                ModeChoice::Aligned => BarrierKind::Aligned,
                ModeChoice::AtLeastOnce => BarrierKind::AtLeastOnce,
                ModeChoice::Unaligned => BarrierKind::Unaligned,
                ModeChoice::AlignedTimeout => BarrierKind::AlignedTimeoutable {
                    timeout: ALIGNMENT_TIMEOUT,
                },
            },
        }
    }

    fn send(&mut self, channel: usize, item: Item) -> Result<(), String> {
        let model = &mut self.channels[channel];
        let arriving = match item {
            Item::Buffer => {
                model.sent += 1;
                InputItem::Buffer(model.sent)
            }
            Item::Barrier(id) => InputItem::Barrier(self.barrier(id)),
            Item::Cancel(id) => InputItem::CancelMarker(CheckpointId(id as u64 + 1)),
            Item::End => InputItem::EndOfPartition,
        };
        let justified = self.justification(channel, &arriving);
        let model = &mut self.channels[channel];
        if justified.is_none() {
            match &arriving {
                InputItem::Barrier(barrier) => {
                    model.last_barrier = Some(barrier.checkpoint_id);
                    model.barrier_at.insert(barrier.checkpoint_id, model.sent);
                }
                InputItem::EndOfPartition => model.end_arrived = true,
                _ => {}
            }
        }
        match self
            .gate
            .on_arrival(self.now, ChannelIndex(channel as u16), arriving)
        {
            Ok(actions) => self.on_actions(actions),
            Err(error) => self.justify(channel, justified, error),
        }
    }

    // Why the gate may refuse this arrival, if it may.
    fn justification(&self, channel: usize, item: &InputItem<u64>) -> Option<&'static str> {
        let model = &self.channels[channel];
        if model.end_arrived {
            return Some("after end");
        }
        match item {
            InputItem::Barrier(barrier)
                if model
                    .last_barrier
                    .is_some_and(|last| barrier.checkpoint_id <= last) =>
            {
                Some("backwards")
            }
            _ => None,
        }
    }

    fn justify(
        &mut self,
        channel: usize,
        justified: Option<&'static str>,
        error: ProtocolError,
    ) -> Result<(), String> {
        let fits = matches!(
            (justified, &error),
            (Some("after end"), ProtocolError::EventAfterEnd { .. })
                | (
                    Some("backwards"),
                    ProtocolError::BarrierWentBackwards { .. }
                )
        );
        if !fits {
            return Err(format!("channel {channel}: refused without cause: {error}"));
        }
        self.failed = true;
        Ok(())
    }

    fn fire_timer(&mut self) -> Result<(), String> {
        if self.gate.timer_due_at().is_some_and(|due| self.now >= due) {
            let actions = self
                .gate
                .on_timer(self.now)
                .map_err(|e| format!("timer refused: {e}"))?;
            self.on_actions(actions)?;
        }
        self.output.on_timer(self.now);
        if self.mode == ModeChoice::AlignedTimeout {
            self.check_announced_checkpoint_timed_out()?;
        }
        Ok(())
    }

    /// The newest barrier that arrived was announced on arrival, so its alignment timer ran
    /// from then: past its deadline, its checkpoint cannot still be waiting for the task to
    /// read its way through the data queued ahead of the barrier.
    fn check_announced_checkpoint_timed_out(&self) -> Result<(), String> {
        let Some(newest) = self.channels.iter().filter_map(|c| c.last_barrier).max() else {
            return Ok(());
        };
        let deadline = self
            .barrier(u8::try_from(newest.0 - 1).expect("ids come from a u8"))
            .alignment_deadline()
            .expect("timeoutable");
        let settled = self.triggered_last >= Some(newest)
            || self.finished.last().is_some_and(|last| *last >= newest);
        if self.now >= deadline && !settled {
            return Err(format!(
                "checkpoint {newest}: its barrier arrived and its deadline {deadline} passed, but it neither triggered nor ended"
            ));
        }
        Ok(())
    }

    /// Reads the gate's next item; returns whether there was one.
    fn read(&mut self) -> Result<bool, String> {
        let Some(polled) = self.gate.poll_next(self.now) else {
            return Ok(false);
        };
        match polled {
            Ok(Polled::Buffer(channel, sequence)) => {
                self.on_buffer(channel.0 as usize, sequence)?
            }
            Ok(Polled::Actions(actions)) => self.on_actions(actions)?,
            Ok(Polled::EndOfData(_)) => {} // The model sends none.
            // Reads only pass on what arrived, and arrivals were checked.
            Err(error) => return Err(format!("a read refused an accepted arrival: {error}")),
        }
        Ok(true)
    }

    fn on_buffer(&mut self, channel: usize, sequence: u64) -> Result<(), String> {
        let model = &mut self.channels[channel];
        if model.read + 1 != sequence {
            return Err(format!(
                "channel {channel} read buffer {sequence} after {}",
                model.read
            ));
        }
        model.read = sequence;
        self.output.emit(channel, sequence);
        // While checkpoint n aligns, nothing behind its barrier may be read.
        if let BarrierHandler::Aligned(aligner) = self.gate.handler() {
            let aligning = match self.mode {
                ModeChoice::Aligned => aligner.pending_checkpoint(),
                // Aligned until the timer fires; then unaligned reads may pass the barrier.
                ModeChoice::AlignedTimeout => aligner
                    .pending_checkpoint()
                    .filter(|_| aligner.timer_due_at().is_some()),
                ModeChoice::Unaligned | ModeChoice::AtLeastOnce => None,
            };
            if let Some(pending) = aligning {
                let behind = self.channels[channel]
                    .before_barrier(pending)
                    .is_some_and(|before| sequence > before);
                if behind {
                    return Err(format!("channel {channel} read buffer {sequence} behind barrier {pending} while checkpoint {pending} aligns"));
                }
            }
        }
        Ok(())
    }

    fn on_actions(&mut self, actions: Vec<Action>) -> Result<(), String> {
        for action in actions {
            self.on_action(action)?;
        }
        Ok(())
    }

    fn on_action(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Block(_) | Action::UnblockAll => Ok(()),
            Action::Trigger {
                barrier,
                alignment_duration,
            } => {
                let checkpoint_id = barrier.checkpoint_id;
                if self.triggered_last >= Some(checkpoint_id) {
                    return Err(format!(
                        "checkpoint {checkpoint_id} triggered after {:?}",
                        self.triggered_last
                    ));
                }
                self.triggered_last = Some(checkpoint_id);
                match (self.mode, barrier.is_unaligned()) {
                    (ModeChoice::AtLeastOnce, _) => self.check_everyone_saw(checkpoint_id)?,
                    (_, false) => self.check_aligned_cut(checkpoint_id)?,
                    (_, true) => self.check_unaligned_trigger(checkpoint_id)?,
                }
                self.output.on_trigger(barrier, alignment_duration);
                self.finish(checkpoint_id)
            }
            Action::InputStateComplete { checkpoint_id } => self.check_channel_state(checkpoint_id),
            Action::Abort { checkpoint_id, .. } => {
                self.output.on_abort(checkpoint_id);
                if self.read_at_trigger.remove(&checkpoint_id).is_some() {
                    return Ok(()); // An unaligned checkpoint aborted while it collected.
                }
                self.finish(checkpoint_id)
            }
            Action::AllInputsEnded => {
                if self.all_ended_announced || !self.channels.iter().all(|c| c.end_arrived) {
                    return Err("all inputs announced ended twice or too early".to_string());
                }
                self.all_ended_announced = true;
                Ok(())
            }
        }
    }

    fn check_everyone_saw(&self, checkpoint_id: CheckpointId) -> Result<(), String> {
        for (channel, model) in self.channels.iter().enumerate() {
            let seen = model.end_arrived || model.last_barrier >= Some(checkpoint_id);
            if !seen {
                return Err(format!("checkpoint {checkpoint_id} triggered before channel {channel} delivered its barrier"));
            }
        }
        Ok(())
    }

    /// An aligned snapshot sits exactly at barrier n on every channel still open.
    fn check_aligned_cut(&self, checkpoint_id: CheckpointId) -> Result<(), String> {
        for (channel, model) in self.channels.iter().enumerate() {
            let expected = match model.before_barrier(checkpoint_id) {
                Some(before) => before,
                None if model.end_arrived => model.sent,
                None => {
                    return Err(format!("checkpoint {checkpoint_id} triggered before channel {channel} delivered its barrier"))
                }
            };
            if model.read != expected {
                return Err(format!("aligned checkpoint {checkpoint_id} triggered with channel {channel} at buffer {} instead of {expected}", model.read));
            }
        }
        Ok(())
    }

    /// An unaligned snapshot has read nothing behind barrier n on any channel.
    fn check_unaligned_trigger(&mut self, checkpoint_id: CheckpointId) -> Result<(), String> {
        for (channel, model) in self.channels.iter().enumerate() {
            if model
                .before_barrier(checkpoint_id)
                .is_some_and(|before| model.read > before)
            {
                return Err(format!("unaligned checkpoint {checkpoint_id} triggered after channel {channel} read buffer {} behind its barrier", model.read));
            }
        }
        let read = self.channels.iter().map(|c| c.read).collect();
        self.read_at_trigger.insert(checkpoint_id, read);
        Ok(())
    }

    /// The input channel state is exactly what lay between the snapshot and each barrier.
    fn check_channel_state(&mut self, checkpoint_id: CheckpointId) -> Result<(), String> {
        let read = self.read_at_trigger.remove(&checkpoint_id).ok_or_else(|| {
            format!("channel state of {checkpoint_id}, which never triggered unaligned")
        })?;
        let state = self
            .gate
            .take_input_state(checkpoint_id)
            .ok_or_else(|| format!("checkpoint {checkpoint_id} complete without its state"))?;
        for (channel, model) in self.channels.iter().enumerate() {
            let until = match model.before_barrier(checkpoint_id) {
                Some(before) => before,
                None if model.end_arrived => model.sent,
                None => {
                    return Err(format!(
                        "checkpoint {checkpoint_id} complete before channel {channel}'s barrier"
                    ))
                }
            };
            let expected: Vec<u64> = (read[channel] + 1..=until).collect();
            if state[channel] != expected {
                return Err(format!("checkpoint {checkpoint_id} channel {channel}: state {:?}, the overtaken data is {expected:?}", state[channel]));
            }
        }
        self.output.on_input_state(checkpoint_id, &state);
        Ok(())
    }

    fn finish(&mut self, checkpoint_id: CheckpointId) -> Result<(), String> {
        if !self.finished.insert(checkpoint_id) {
            return Err(format!(
                "checkpoint {checkpoint_id} triggered or aborted twice"
            ));
        }
        Ok(())
    }

    /// Every upstream ends; the task reads until nothing moves. Everything sent must arrive.
    fn drain(&mut self) -> Result<(), String> {
        for channel in 0..self.channels.len() {
            if !self.channels[channel].end_arrived {
                self.send(channel, Item::End)?;
            }
        }
        loop {
            if self.failed {
                return Ok(());
            }
            let read = self.read()?;
            if !read {
                break;
            }
        }
        if self.gate.buffers_queued() > 0 {
            return Err(format!(
                "{} buffer(s) stuck after every channel ended",
                self.gate.buffers_queued()
            ));
        }
        for (channel, model) in self.channels.iter().enumerate() {
            if model.read != model.sent {
                return Err(format!(
                    "channel {channel} read {} of {} buffers",
                    model.read, model.sent
                ));
            }
        }
        if !self.all_ended_announced {
            return Err("every channel ended but the handler did not say so".to_string());
        }
        // Past every alignment deadline: checkpoint ids are small, so 1 s is far beyond.
        self.output.drain(self.now.add(Duration::from_ms(1_000)))
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
    fn a_timed_out_aligned_barrier_overtakes_the_uncredited_output_queue() {
        // Two input channels, two outputs (channels = 1 + CHANNELS_MAX).
        let steps = vec![
            send(0, Item::Buffer),
            send(0, Item::Buffer),
            send(0, Item::Barrier(0)),
            send(1, Item::Barrier(0)),
            deliver(0),
            deliver(0),
            deliver(0),
            deliver(1), // Aligned at barrier 1: triggers, the barrier queues behind 2 buffers.
            Step::Credit {
                channel: 0,
                credit: 1,
            },
            Step::Tick { advance_ms: 10 },
            Step::Timer, // Past the deadline at 7 ms: the barrier overtakes what is queued.
            send(0, Item::Buffer),
            deliver(0),
        ];
        let scenario = GateScenario {
            channels: 1 + CHANNELS_MAX as u8,
            mode: ModeChoice::AlignedTimeout,
            steps,
        };
        assert_eq!(check_scenario(&scenario), Ok(()));
    }

    #[test]
    fn an_unaligned_barrier_persists_what_it_overtook_on_every_output() {
        let steps = vec![
            send(0, Item::Buffer),
            send(0, Item::Buffer),
            send(1, Item::Buffer),
            deliver(0),
            deliver(0),
            deliver(1),
            send(0, Item::Barrier(0)),
            send(1, Item::Buffer),
            send(1, Item::Barrier(0)),
            deliver(1),
            Step::Credit {
                channel: 1,
                credit: 3,
            },
        ];
        let scenario = GateScenario {
            channels: 1 + 2 * CHANNELS_MAX as u8,
            mode: ModeChoice::Unaligned,
            steps,
        };
        assert_eq!(check_scenario(&scenario), Ok(()));
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
