//! The output side of the gate model: the task's output queues (the engine's `CreditSender`s)
//! and its `SubtaskCheckpointCoordinator`, driven as the task drives them. Every buffer the
//! task reads makes one output buffer with a unique number; triggers forward the barrier
//! (overtaking the queues when unaligned); credit steps let the downstream receive; timers
//! switch a timed-out aligned barrier still queued to unaligned.
//!
//! Checked, per checkpoint that uploaded (DESIGN §5, unaligned checkpoints):
//! - the output state of each channel is exactly the buffers emitted before the snapshot that
//!   the downstream receives after the barrier: what it received before the barrier, then the
//!   output state, is every buffer emitted before the snapshot, in order; nothing emitted
//!   after the snapshot reaches the downstream ahead of the barrier;
//! - a snapshot holds channel state exactly when its barrier was unaligned or overtook data,
//!   and its ack says unaligned exactly then, with the bytes persisted;
//! - once time has passed every deadline and the task ran its timers, every checkpoint that
//!   triggered and was not aborted has uploaded (liveness of the output-side switch).

use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::subtask_checkpoint::{
    OutputQueues, Report, SubtaskCheckpointCoordinator, SyncSnapshot, Uploaded,
};
use crate::ids::CheckpointId;
use crate::runtime::credit::{CreditSender, Outgoing};
use crate::runtime::messages::ChannelEvent;
use crate::state::channel_state::{OutputChannelState, RecordBuffer};
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet};

/// Output channels of a generated task, at most.
pub const OUTPUTS_MAX: usize = 3;

/// A buffer as the model numbers it, in the engine's buffer type.
fn numbered(number: u64) -> RecordBuffer {
    RecordBuffer {
        record_count: 1,
        bytes: number.to_le_bytes().to_vec(),
    }
}

fn number_of(buffer: &RecordBuffer) -> u64 {
    let bytes: [u8; 8] = buffer.bytes[..]
        .try_into()
        .expect("model buffers hold a u64");
    u64::from_le_bytes(bytes)
}

/// The output queues, as the task's record writer keeps them.
struct Queues {
    senders: Vec<CreditSender<RecordBuffer, ChannelEvent>>,
}

fn is_barrier_of(event: &ChannelEvent, checkpoint_id: CheckpointId) -> bool {
    matches!(event, ChannelEvent::Barrier(b) if b.checkpoint_id == checkpoint_id)
}

impl OutputQueues for Queues {
    fn overtake_barrier(&mut self, checkpoint_id: CheckpointId) -> OutputChannelState {
        self.senders
            .iter_mut()
            .map(|sender| {
                sender
                    .prioritize(
                        |event| is_barrier_of(event, checkpoint_id),
                        |event| match event {
                            ChannelEvent::Barrier(b) => ChannelEvent::Barrier(b.as_unaligned()),
                            other => other,
                        },
                    )
                    .unwrap_or_default()
            })
            .collect()
    }

    fn barrier_queued(&self, checkpoint_id: CheckpointId) -> bool {
        self.senders
            .iter()
            .any(|sender| sender.has_event(|event| is_barrier_of(event, checkpoint_id)))
    }
}

/// What a downstream received on one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Received {
    Buffer(u64),
    Barrier(CheckpointId),
    Other,
}

/// The output side of the modelled task.
pub struct OutputSide {
    queues: Queues,
    core: SubtaskCheckpointCoordinator,
    emitted: Vec<Vec<u64>>,
    next_number: u64,
    received: Vec<Vec<Received>>,
    // Per triggered checkpoint: the buffers emitted on each channel before its snapshot.
    cut: BTreeMap<CheckpointId, Vec<usize>>,
    aborted: BTreeSet<CheckpointId>,
    // Per uploaded checkpoint: its output state, per channel.
    uploaded: BTreeMap<CheckpointId, Vec<Vec<u64>>>,
}

impl OutputSide {
    /// A task with `outputs` output channels, none of them credited yet.
    pub fn new(outputs: usize) -> OutputSide {
        assert!((1..=OUTPUTS_MAX).contains(&outputs));
        OutputSide {
            queues: Queues {
                senders: (0..outputs).map(|_| CreditSender::default()).collect(),
            },
            core: SubtaskCheckpointCoordinator::new(0, true),
            emitted: vec![Vec::new(); outputs],
            next_number: 0,
            received: vec![Vec::new(); outputs],
            cut: BTreeMap::new(),
            aborted: BTreeSet::new(),
            uploaded: BTreeMap::new(),
        }
    }

    /// The task processed input buffer `sequence` of `channel`: one output buffer.
    pub fn emit(&mut self, channel: usize, sequence: u64) {
        let output = (channel + sequence as usize) % self.emitted.len();
        self.next_number += 1;
        self.emitted[output].push(self.next_number);
        self.queues.senders[output].push_buffer(numbered(self.next_number));
    }

    /// The synchronous snapshot of `barrier`, and the barrier goes on every output channel.
    pub fn on_trigger(&mut self, barrier: Barrier, alignment_duration: Duration) {
        let cut = self.emitted.iter().map(Vec::len).collect();
        self.cut.insert(barrier.checkpoint_id, cut);
        let event = ChannelEvent::Barrier(barrier);
        let output = self
            .queues
            .senders
            .iter_mut()
            .map(|sender| {
                if barrier.is_unaligned() {
                    sender.push_priority_event(event.clone())
                } else {
                    sender.push_event(event.clone());
                    Vec::new()
                }
            })
            .collect();
        self.core.on_snapshot_taken(SyncSnapshot {
            barrier,
            alignment_duration,
            operators: BTreeMap::new(),
            output,
        });
    }

    /// The gate completed `checkpoint_id`'s input state (numbered as the gate numbers them).
    pub fn on_input_state(&mut self, checkpoint_id: CheckpointId, state: &[Vec<u64>]) {
        let buffers = state
            .iter()
            .map(|channel| channel.iter().map(|n| numbered(*n)).collect())
            .collect();
        self.core.on_input_state_complete(checkpoint_id, buffers);
    }

    /// The barrier handler aborted `checkpoint_id`.
    pub fn on_abort(&mut self, checkpoint_id: CheckpointId) {
        if self.cut.contains_key(&checkpoint_id) {
            self.aborted.insert(checkpoint_id);
        }
        self.core.on_abort(checkpoint_id);
        for sender in &mut self.queues.senders {
            sender.push_event(ChannelEvent::CancelCheckpointMarker(checkpoint_id));
        }
    }

    /// The task runs its timers.
    pub fn on_timer(&mut self, now: Instant) {
        self.core.on_timer(now, &mut self.queues);
    }

    /// The downstream of `channel` grants `credit`; the task sends what it may.
    pub fn on_credit(&mut self, channel: usize, credit: u32) {
        let channel = channel % self.queues.senders.len();
        self.queues.senders[channel].on_credit(credit.max(1));
        self.send(channel);
    }

    fn send(&mut self, channel: usize) {
        while let Some((item, _backlog)) = self.queues.senders[channel].poll_send() {
            self.received[channel].push(match item {
                Outgoing::Buffer(buffer) => Received::Buffer(number_of(&buffer)),
                Outgoing::Event(ChannelEvent::Barrier(b)) => Received::Barrier(b.checkpoint_id),
                Outgoing::Event(_) => Received::Other,
            });
        }
    }

    /// Uploads what is complete, as the task does after each turn, and checks each ack.
    pub fn upload_ready(&mut self) -> Result<(), String> {
        while let Some(upload) = self.core.poll_upload(&self.queues) {
            let id = upload.checkpoint_id;
            let state = upload.snapshot.channel_state.as_ref();
            let output: Vec<Vec<u64>> = match state {
                Some(state) => state
                    .output
                    .iter()
                    .map(|channel| channel.iter().map(number_of).collect())
                    .collect(),
                None => vec![Vec::new(); self.emitted.len()],
            };
            let bytes = state.map_or(0, |s| s.bytes());
            let result = Ok(Uploaded {
                state: crate::checkpoint::storage::StateHandle::File(format!("chk-{id}")),
                state_size_bytes: 1,
            });
            let Report::Acknowledge(ack) = self.core.on_upload_done(id, result) else {
                return Err(format!("checkpoint {id}: a successful upload was declined"));
            };
            if ack.unaligned != state.is_some() || ack.in_flight_bytes != bytes {
                return Err(format!("checkpoint {id}: ack says unaligned {} with {} bytes, the snapshot holds {state:?}", ack.unaligned, ack.in_flight_bytes));
            }
            if self.uploaded.insert(id, output).is_some() {
                return Err(format!("checkpoint {id} uploaded twice"));
            }
        }
        Ok(())
    }

    /// Time passes every deadline, the timers run, every downstream takes everything; then
    /// each uploaded snapshot must be a consistent cut of the output channels.
    pub fn drain(&mut self, now: Instant) -> Result<(), String> {
        self.on_timer(now);
        self.upload_ready()?;
        for channel in 0..self.queues.senders.len() {
            self.on_credit(channel, u32::MAX / 4);
        }
        for id in self.cut.keys() {
            if !self.aborted.contains(id) && !self.uploaded.contains_key(id) {
                return Err(format!("checkpoint {id} triggered but never uploaded"));
            }
        }
        for (id, state) in &self.uploaded {
            self.check_cut(*id, state)?;
        }
        Ok(())
    }

    fn check_cut(&self, id: CheckpointId, state: &[Vec<u64>]) -> Result<(), String> {
        let cut = &self.cut[&id];
        for (channel, received) in self.received.iter().enumerate() {
            let barrier_at = received
                .iter()
                .position(|r| *r == Received::Barrier(id))
                .ok_or_else(|| format!("checkpoint {id}: no barrier on output {channel}"))?;
            let mut seen: Vec<u64> = received[..barrier_at]
                .iter()
                .filter_map(|r| match r {
                    Received::Buffer(n) => Some(*n),
                    _ => None,
                })
                .collect();
            seen.extend(&state[channel]);
            let expected = &self.emitted[channel][..cut[channel]];
            if seen != expected {
                return Err(format!("checkpoint {id} output {channel}: received before the barrier then persisted {seen:?}, emitted before the snapshot {expected:?}"));
            }
        }
        Ok(())
    }
}
