//! The input side of a task (Flink's `SingleInputGate`): the checkpointed gate core (queues,
//! barrier handler, channel state) fed from the network, and the credit accounting that
//! bounds the queues.

use crate::checkpoint::barrier_protocol::Actions;
use crate::checkpoint::checkpointed_input_gate::{CheckpointedInputGate, InputItem};
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::ids::ChannelIndex;
use crate::runtime::credit::CreditReceiver;
use crate::runtime::frame_io::write_frame;
use crate::runtime::messages::{ChannelEvent, DataFrame};
use crate::runtime::task_error::{ChannelStateError, InputError};
use crate::state::channel_state::RecordBuffer;
use crate::time::Instant;
use madsim::net::TcpStream;
use tokio::io::WriteHalf;

/// A buffer in the gate. Restored channel state was never sent over the network, so it holds
/// no credit.
#[derive(Clone, Debug)]
pub struct GateBuffer {
    /// The records.
    pub buffer: RecordBuffer,
    /// Whether consuming it returns a credit to the sender.
    pub credited: bool,
}

/// The input channels of one task.
pub struct InputGate {
    /// Queues, barrier handling and channel state (sans-IO).
    pub core: CheckpointedInputGate<GateBuffer>,
    credit: CreditReceiver,
    writers: Vec<Option<WriteHalf<TcpStream>>>,
    end_received: Vec<bool>,
}

impl InputGate {
    /// A gate of `channel_count` channels whose barriers are handled in `mode`.
    pub fn new(channel_count: usize, mode: CheckpointingMode) -> InputGate {
        InputGate {
            core: CheckpointedInputGate::new(channel_count, mode),
            credit: CreditReceiver::new(channel_count),
            writers: (0..channel_count).map(|_| None).collect(),
            end_received: vec![false; channel_count],
        }
    }

    /// Replays restored input channel state ahead of anything that arrives.
    pub fn restore(&mut self, state: Vec<Vec<RecordBuffer>>) -> Result<(), ChannelStateError> {
        if state.len() != self.core.channel_count() {
            return Err(ChannelStateError::InputChannels {
                found: state.len(),
                expected: self.core.channel_count(),
            });
        }
        for (index, buffers) in state.into_iter().enumerate() {
            let buffers = buffers
                .into_iter()
                .map(|buffer| GateBuffer {
                    buffer,
                    credited: false,
                })
                .collect();
            self.core.restore(ChannelIndex(index as u16), buffers);
        }
        Ok(())
    }

    /// The connection of `channel` arrived; returns false if the channel already had one.
    pub fn connect(&mut self, channel: ChannelIndex, writer: WriteHalf<TcpStream>) -> bool {
        let slot = &mut self.writers[channel.0 as usize];
        if slot.is_some() {
            return false;
        }
        *slot = Some(writer);
        true
    }

    /// A frame arrived on `channel`; a priority barrier is handled at once and its actions
    /// returned. Protocol violations are errors that fail the task.
    pub fn on_frame(
        &mut self,
        now: Instant,
        channel: ChannelIndex,
        frame: DataFrame,
    ) -> Result<Actions, InputError> {
        let index = channel.0 as usize;
        if self.end_received[index] {
            return Err(InputError::AfterEnd { channel: channel.0 });
        }
        let item = match frame {
            DataFrame::Buffer {
                record_count,
                bytes,
                backlog,
            } => {
                self.credit
                    .on_buffer_received(channel, backlog)
                    .map_err(|_| InputError::WithoutCredit { channel: channel.0 })?;
                InputItem::Buffer(GateBuffer {
                    buffer: RecordBuffer {
                        record_count,
                        bytes,
                    },
                    credited: true,
                })
            }
            DataFrame::Event(ChannelEvent::Barrier(barrier)) => InputItem::Barrier(barrier),
            DataFrame::Event(ChannelEvent::CancelCheckpointMarker(checkpoint_id)) => {
                InputItem::CancelMarker(checkpoint_id)
            }
            DataFrame::Event(ChannelEvent::EndOfData) => InputItem::EndOfData,
            DataFrame::Event(ChannelEvent::EndOfPartition) => {
                self.end_received[index] = true;
                InputItem::EndOfPartition
            }
            DataFrame::Hello { .. } | DataFrame::Credit(_) => {
                return Err(InputError::ControlFrame { channel: channel.0 })
            }
        };
        self.core
            .on_arrival(now, channel, item)
            .map_err(InputError::Protocol)
    }

    /// Whether `channel` delivered its end of partition (a later close is normal).
    pub fn has_ended(&self, channel: ChannelIndex) -> bool {
        self.end_received[channel.0 as usize]
    }

    /// A buffer of `channel` was processed: its memory is free again.
    pub fn on_buffer_consumed(&mut self, channel: ChannelIndex, buffer: &GateBuffer) {
        if buffer.credited {
            self.credit.on_buffer_consumed(channel);
        }
    }

    /// Sends pending credit grants on connected channels.
    pub async fn send_credits(&mut self) {
        let mut held = Vec::new();
        while let Some((channel, credit)) = self.credit.poll_grant() {
            match self.writers[channel.0 as usize].as_mut() {
                // Not connected yet: the grant waits for the connection.
                None => held.push((channel, credit)),
                Some(writer) => {
                    // A producer that finished may have closed: the grant no longer matters.
                    let _ = write_frame(writer, &DataFrame::Credit(credit)).await;
                }
            }
        }
        for (channel, credit) in held {
            self.credit_hold(channel, credit);
        }
    }

    fn credit_hold(&mut self, channel: ChannelIndex, credit: u32) {
        self.credit.requeue_grant(channel, credit);
    }

    /// Buffers held in the queues.
    pub fn buffers_queued(&self) -> u32 {
        self.credit.buffers_in_use()
    }
}
