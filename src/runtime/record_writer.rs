//! The output side of a task (Flink's `RecordWriter` over a result partition): partitions
//! records to channels, packs them into buffers, and sends buffers as credit allows.

use crate::api::job::Partitioning;
use crate::api::value::Value;
use crate::checkpoint::barrier::Barrier;
use crate::checkpoint::subtask_checkpoint::OutputQueues;
use crate::ids::{CheckpointId, SubtaskId};
use crate::limits::{BUFFER_SIZE_BYTES, OUTPUT_QUEUE_BUFFERS_MAX};
use crate::runtime::credit::{CreditSender, Outgoing};
use crate::runtime::frame_io::write_frame_via;
use crate::runtime::messages::{ChannelEvent, DataFrame};
use crate::runtime::task_error::{ChannelStateError, TaskError};
use crate::state::channel_state::{OutputChannelState, RecordBuffer};
use crate::state::key_group::{key_group_for_key, subtask_for_key_group};
use madsim::net::TcpStream;
use tokio::io::WriteHalf;

struct OutputChannel {
    target: SubtaskId,
    sender: CreditSender<RecordBuffer, ChannelEvent>,
    building: RecordBuffer,
    // The bytes of the last buffer sent, emptied: the next buffer is built in them.
    spare: Vec<u8>,
    writer: Option<WriteHalf<TcpStream>>,
    ended: bool,
}

impl OutputChannel {
    /// Queues the buffer being built and starts the next in the spare bytes.
    fn seal(&mut self) {
        let next = RecordBuffer {
            record_count: 0,
            bytes: std::mem::take(&mut self.spare),
        };
        let sealed = std::mem::replace(&mut self.building, next);
        self.sender.push_buffer(sealed);
    }
}

enum Router {
    Forward,
    Hash {
        selector: crate::api::functions::KeySelector,
        max_parallelism: u32,
        // A keyed stream connected to a broadcast stream: what this selects goes everywhere.
        broadcast: Option<crate::api::functions::BroadcastSelector>,
    },
    Rebalance {
        next: usize,
    },
}

/// All output channels of one task.
pub struct RecordWriter {
    channels: Vec<OutputChannel>,
    router: Router,
    /// Records emitted.
    pub records_out: u64,
    /// Bytes of buffers sent.
    pub bytes_sent: u64,
    // Where each frame is encoded before it goes on the wire.
    frame: Vec<u8>,
}

impl RecordWriter {
    /// Output channels to `targets`, routed by `partitioning`. Round robin starts at the
    /// producer's own index, so the spread is deterministic.
    pub fn new(
        targets: Vec<SubtaskId>,
        partitioning: Option<&Partitioning>,
        subtask_index: u32,
        max_parallelism: u32,
    ) -> RecordWriter {
        let router = match partitioning {
            // A forward edge between different parallelisms is all-to-all: Flink rebalances it.
            None | Some(Partitioning::Forward) if targets.len() > 1 => Router::Rebalance {
                next: subtask_index as usize,
            },
            None | Some(Partitioning::Forward) => Router::Forward,
            Some(Partitioning::Hash(selector)) => Router::Hash {
                selector: selector.clone(),
                max_parallelism,
                broadcast: None,
            },
            Some(Partitioning::HashAndBroadcast {
                key_selector,
                broadcast,
            }) => Router::Hash {
                selector: key_selector.clone(),
                max_parallelism,
                broadcast: Some(broadcast.clone()),
            },
            Some(Partitioning::Rebalance) => Router::Rebalance {
                next: subtask_index as usize,
            },
        };
        let channels = targets
            .into_iter()
            .map(|target| OutputChannel {
                target,
                sender: CreditSender::default(),
                building: RecordBuffer::default(),
                spare: Vec::new(),
                writer: None,
                ended: false,
            })
            .collect();
        RecordWriter {
            channels,
            router,
            records_out: 0,
            bytes_sent: 0,
            frame: Vec::new(),
        }
    }

    /// Number of output channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The consumer of channel `index`.
    pub fn target(&self, index: usize) -> SubtaskId {
        self.channels[index].target
    }

    /// Attaches the connection of channel `index`.
    pub fn connect(&mut self, index: usize, writer: WriteHalf<TcpStream>) {
        assert!(self.channels[index].writer.is_none());
        self.channels[index].writer = Some(writer);
    }

    /// Routes and serializes one record.
    pub fn emit(&mut self, value: &Value) {
        assert!(
            !self.channels.is_empty(),
            "a task without outputs emits nothing"
        );
        let index = match &mut self.router {
            Router::Forward => 0,
            Router::Hash {
                broadcast: Some(broadcast),
                ..
            } if broadcast(value) => {
                for index in 0..self.channels.len() {
                    self.emit_to(index, value);
                }
                return;
            }
            Router::Hash {
                selector,
                max_parallelism,
                ..
            } => {
                let key_group = key_group_for_key(&selector(value), *max_parallelism);
                subtask_for_key_group(*max_parallelism, self.channels.len() as u32, key_group)
                    as usize
            }
            Router::Rebalance { next } => {
                *next = (*next + 1) % self.channels.len();
                *next
            }
        };
        self.emit_to(index, value);
    }

    fn emit_to(&mut self, index: usize, value: &Value) {
        let channel = &mut self.channels[index];
        assert!(!channel.ended, "no record after end of partition");
        value.encode_into(&mut channel.building.bytes);
        channel.building.record_count += 1;
        self.records_out += 1;
        if channel.building.bytes.len() >= BUFFER_SIZE_BYTES {
            channel.seal();
        }
    }

    /// Seals every partly filled buffer (buffer timeout, or before an event).
    pub fn flush(&mut self) {
        for channel in &mut self.channels {
            if channel.building.record_count > 0 {
                channel.seal();
            }
        }
    }

    /// Sends `event` on every channel behind the data emitted before it.
    pub fn broadcast_event(&mut self, event: ChannelEvent) {
        self.flush();
        let ends = event == ChannelEvent::EndOfPartition;
        for channel in &mut self.channels {
            channel.sender.push_event(event.clone());
            channel.ended |= ends;
        }
    }

    /// Sends `barrier` on every channel. An unaligned barrier overtakes the queued buffers,
    /// which are returned as output channel state; an aligned one queues behind them.
    pub fn broadcast_barrier(&mut self, barrier: Barrier) -> OutputChannelState {
        self.flush();
        self.channels
            .iter_mut()
            .map(|channel| {
                let event = ChannelEvent::Barrier(barrier);
                if barrier.is_unaligned() {
                    channel.sender.push_priority_event(event)
                } else {
                    channel.sender.push_event(event);
                    Vec::new()
                }
            })
            .collect()
    }

    /// Puts restored output channel state ahead of any new output.
    pub fn restore(&mut self, state: OutputChannelState) -> Result<(), ChannelStateError> {
        if state.len() != self.channels.len() {
            return Err(ChannelStateError::OutputChannels {
                found: state.len(),
                expected: self.channels.len(),
            });
        }
        for (channel, buffers) in self.channels.iter_mut().zip(state) {
            channel.sender.restore(buffers);
        }
        Ok(())
    }

    /// Whether some channel has as many buffers waiting for credit as it may: the task must
    /// stop producing until credit arrives.
    pub fn is_backpressured(&self) -> bool {
        self.channels
            .iter()
            .any(|c| c.sender.buffers_queued() >= OUTPUT_QUEUE_BUFFERS_MAX)
    }

    /// Whether every queued buffer and event has been sent.
    pub fn is_drained(&self) -> bool {
        self.channels
            .iter()
            .all(|c| c.sender.buffers_queued() == 0 && c.building.record_count == 0)
    }

    /// Credit arrived for channel `index`.
    pub fn on_credit(&mut self, index: usize, credit: u32) {
        self.channels[index].sender.on_credit(credit);
    }

    /// Sends everything that credit allows. A failed write is a broken channel.
    pub async fn send_ready(&mut self) -> Result<(), TaskError> {
        for channel in &mut self.channels {
            let Some(writer) = channel.writer.as_mut() else {
                continue;
            };
            while let Some((item, backlog)) = channel.sender.poll_send() {
                let frame = match item {
                    Outgoing::Buffer(buffer) => {
                        self.bytes_sent += buffer.bytes.len() as u64;
                        DataFrame::Buffer {
                            record_count: buffer.record_count,
                            bytes: buffer.bytes,
                            backlog,
                        }
                    }
                    Outgoing::Event(event) => DataFrame::Event(event),
                };
                write_frame_via(writer, &frame, &mut self.frame)
                    .await
                    .map_err(|e| TaskError::OutputWrite {
                        target: channel.target,
                        reason: e.to_string(),
                    })?;
                if let DataFrame::Buffer { mut bytes, .. } = frame {
                    bytes.clear();
                    channel.spare = bytes;
                }
            }
        }
        Ok(())
    }
}

impl OutputQueues for RecordWriter {
    /// Checkpoint `checkpoint_id`'s aligned barrier timed out: where it still waits behind
    /// buffers, it becomes unaligned and overtakes them; returns what it overtook.
    fn overtake_barrier(&mut self, checkpoint_id: CheckpointId) -> OutputChannelState {
        self.channels
            .iter_mut()
            .map(|channel| {
                channel
                    .sender
                    .prioritize(
                        |event| is_barrier_of(event, checkpoint_id),
                        |event| match event {
                            ChannelEvent::Barrier(barrier) => {
                                ChannelEvent::Barrier(barrier.as_unaligned())
                            }
                            other => other,
                        },
                    )
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Whether checkpoint `checkpoint_id`'s barrier still waits in some output queue.
    fn barrier_queued(&self, checkpoint_id: CheckpointId) -> bool {
        self.channels.iter().any(|channel| {
            channel
                .sender
                .has_event(|event| is_barrier_of(event, checkpoint_id))
        })
    }
}

fn is_barrier_of(event: &ChannelEvent, checkpoint_id: CheckpointId) -> bool {
    matches!(event, ChannelEvent::Barrier(barrier) if barrier.checkpoint_id == checkpoint_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VertexId;

    fn targets(count: u32) -> Vec<SubtaskId> {
        (0..count)
            .map(|subtask_index| SubtaskId {
                vertex_id: VertexId(1),
                subtask_index,
            })
            .collect()
    }

    fn records_per_channel(writer: &RecordWriter) -> Vec<u32> {
        writer
            .channels
            .iter()
            .map(|c| c.building.record_count)
            .collect()
    }

    #[test]
    fn forward_to_several_channels_rebalances_and_hash_follows_key_groups() {
        let mut forward = RecordWriter::new(targets(3), Some(&Partitioning::Forward), 0, 128);
        for index in 0..6 {
            forward.emit(&Value::Int(index));
        }
        assert_eq!(records_per_channel(&forward), vec![2, 2, 2]);

        let selector: crate::api::functions::KeySelector =
            std::sync::Arc::new(|v: &Value| v.to_string().into());
        let mut hash = RecordWriter::new(targets(4), Some(&Partitioning::Hash(selector)), 0, 128);
        for _ in 0..5 {
            hash.emit(&Value::Str("hello".into()));
        }
        let expected = crate::state::key_group::subtask_for_key_group(
            128,
            4,
            crate::state::key_group::key_group_for_key("hello", 128),
        ) as usize;
        let counts = records_per_channel(&hash);
        assert_eq!(counts[expected], 5, "{counts:?}");
        assert_eq!(hash.records_out, 5);
    }
}
