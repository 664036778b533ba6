//! A task's network input (Flink's `StreamTaskNetworkInput`): the input gate, and the buffer
//! being read a record at a time. It hands the task either the next record or what the
//! barrier handler decided, and names the channel and the producer in every error.

use crate::api::value::Value;
use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::barrier_protocol::Actions;
use crate::checkpoint::checkpointed_input_gate::Polled;
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::ids::{ChannelIndex, CheckpointId, SubtaskId};
use crate::runtime::input_gate::{GateBuffer, InputGate};
use crate::runtime::messages::DataFrame;
use crate::runtime::task_error::{InputError, TaskError};
use crate::state::channel_state::RecordBuffer;
use crate::time::Instant;
use madsim::net::TcpStream;
use tokio::io::WriteHalf;

/// What the input offers next.
pub enum NextInput {
    /// A record to process.
    Record(Value),
    /// The barrier handler's decisions, to carry out in order.
    Actions(Actions),
    /// Every input channel reached its end of data.
    EndOfData,
}

/// The input side of a task that is not a source.
pub struct NetworkInput {
    /// The gate: queues, barrier handling, credit.
    pub gate: InputGate,
    deserializer: Option<RecordDeserializer>,
    upstream: Vec<SubtaskId>,
    subtask: SubtaskId,
    // Which channels delivered their end of data.
    end_of_data: Vec<bool>,
}

impl NetworkInput {
    /// The input of `subtask`, one channel per producer in `upstream`.
    pub fn new(subtask: SubtaskId, upstream: Vec<SubtaskId>, mode: CheckpointingMode) -> Self {
        assert!(!upstream.is_empty(), "a source has no network input");
        NetworkInput {
            gate: InputGate::new(upstream.len(), mode),
            deserializer: None,
            end_of_data: vec![false; upstream.len()],
            upstream,
            subtask,
        }
    }

    /// The next record or barrier decision, if any is available at `now`.
    pub fn poll_next(&mut self, now: Instant) -> Result<Option<NextInput>, TaskError> {
        let subtask = self.subtask;
        loop {
            if let Some(deserializer) = self.deserializer.as_mut() {
                let value = deserializer
                    .next_record()
                    .map_err(|e| TaskError::input(subtask, e))?;
                if deserializer.is_consumed() {
                    let done = self.deserializer.take().expect("present");
                    self.gate.on_buffer_consumed(done.channel, &done.buffer);
                }
                return Ok(Some(NextInput::Record(value)));
            }
            let Some(polled) = self.gate.core.poll_next(now) else {
                return Ok(None);
            };
            match polled.map_err(|e| TaskError::input(subtask, e))? {
                Polled::Buffer(channel, buffer) => {
                    if buffer.buffer.record_count == 0 {
                        let upstream = self.upstream[channel.0 as usize];
                        let error = InputError::EmptyBuffer {
                            channel: channel.0,
                            upstream,
                        };
                        return Err(TaskError::input(subtask, error));
                    }
                    self.deserializer = Some(RecordDeserializer::new(channel, buffer));
                }
                Polled::Actions(actions) => return Ok(Some(NextInput::Actions(actions))),
                Polled::EndOfData(channel) => {
                    let index = channel.0 as usize;
                    if std::mem::replace(&mut self.end_of_data[index], true) {
                        let upstream = self.upstream[index];
                        let error = InputError::RepeatedEndOfData {
                            channel: channel.0,
                            upstream,
                        };
                        return Err(TaskError::input(subtask, error));
                    }
                    if self.end_of_data.iter().all(|ended| *ended) {
                        return Ok(Some(NextInput::EndOfData));
                    }
                }
            }
        }
    }

    /// When `on_timer` must run: an aligned checkpoint's timeout to unaligned.
    pub fn timer_due_at(&self) -> Option<Instant> {
        self.gate.core.timer_due_at()
    }

    /// Time passed: what the barrier handler decided (nothing before its timer is due).
    pub fn on_timer(&mut self, now: Instant) -> Result<Actions, TaskError> {
        if self.timer_due_at().is_none_or(|due| now < due) {
            return Ok(Actions::default());
        }
        self.gate
            .core
            .on_timer(now)
            .map_err(|e| TaskError::input(self.subtask, e))
    }

    /// The input channel state of an unaligned checkpoint, once the gate announced it complete.
    pub fn take_input_state(&mut self, checkpoint_id: CheckpointId) -> Vec<Vec<RecordBuffer>> {
        let state = self
            .gate
            .core
            .take_input_state(checkpoint_id)
            .expect("the gate announced it");
        state
            .into_iter()
            .map(|channel| channel.into_iter().map(|b| b.buffer).collect())
            .collect()
    }

    /// An unaligned snapshot taken in the middle of a buffer: the rest of it is in flight.
    pub fn persist_unconsumed(&mut self, barrier: &Barrier) {
        let Some(deserializer) = self.deserializer.as_ref() else {
            return;
        };
        if barrier.is_unaligned() {
            let rest = GateBuffer {
                buffer: deserializer.rest(),
                credited: false,
            };
            self.gate
                .core
                .add_unconsumed(barrier.checkpoint_id, deserializer.channel, rest);
        }
    }

    /// The connection of `channel` arrived.
    pub fn on_connected(
        &mut self,
        channel: ChannelIndex,
        writer: WriteHalf<TcpStream>,
    ) -> Result<(), TaskError> {
        if !self.gate.connect(channel, writer) {
            let error = InputError::ConnectedTwice { channel: channel.0 };
            return Err(TaskError::input(self.subtask, error));
        }
        Ok(())
    }

    /// A frame arrived on `channel`: what the barrier handler decided at once.
    pub fn on_frame(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        frame: DataFrame,
    ) -> Result<Actions, TaskError> {
        self.gate
            .on_frame(now, channel, frame)
            .map_err(|e| TaskError::input(self.subtask, e))
    }

    /// The connection of `channel` closed: normal after its end of partition, else the
    /// producer is gone.
    pub fn on_closed(&self, channel: ChannelIndex, error: Option<String>) -> Result<(), TaskError> {
        if self.gate.has_ended(channel) {
            return Ok(());
        }
        Err(TaskError::InputBroke {
            subtask: self.subtask,
            upstream: self.upstream[channel.0 as usize],
            reason: error.unwrap_or_else(|| "connection closed".into()),
        })
    }
}

/// A buffer read a record at a time (Flink's `RecordDeserializer`), so the task's mailbox (and
/// a priority barrier in it) is served between records.
struct RecordDeserializer {
    channel: ChannelIndex,
    buffer: GateBuffer,
    offset: usize,
    remaining: u32,
}

impl RecordDeserializer {
    fn new(channel: ChannelIndex, buffer: GateBuffer) -> Self {
        let remaining = buffer.buffer.record_count;
        RecordDeserializer {
            channel,
            buffer,
            offset: 0,
            remaining,
        }
    }

    fn next_record(&mut self) -> Result<Value, InputError> {
        assert!(self.remaining > 0);
        let channel = self.channel.0;
        let bytes = &self.buffer.buffer.bytes[self.offset..];
        let (value, used) = Value::decode_prefix(bytes).map_err(|e| InputError::CorruptBuffer {
            channel,
            error: e.to_string(),
        })?;
        let tail = &bytes[used..];
        self.offset += used;
        self.remaining -= 1;
        if self.remaining == 0 && !tail.is_empty() {
            return Err(InputError::TrailingBytes {
                channel,
                records: self.buffer.buffer.record_count,
            });
        }
        Ok(value)
    }

    fn is_consumed(&self) -> bool {
        self.remaining == 0
    }

    /// The records not read yet, as a buffer of their own.
    fn rest(&self) -> RecordBuffer {
        RecordBuffer {
            record_count: self.remaining,
            bytes: self.buffer.buffer.bytes[self.offset..].to_vec(),
        }
    }
}
