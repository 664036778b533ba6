//! The input side of a task (Flink's `SingleInputGate`): per-channel queues of received
//! buffers and events, the barrier handler deciding which channels may be read, and the
//! credit accounting that bounds the queues.

use crate::checkpoint::barrier_handler::BarrierHandler;
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::ids::ChannelIndex;
use crate::runtime::credit::CreditReceiver;
use crate::runtime::frame_io::write_frame;
use crate::runtime::messages::{ChannelEvent, DataFrame};
use madsim::net::TcpStream;
use std::collections::VecDeque;
use tokio::io::WriteHalf;

/// Something a channel delivered.
#[derive(Clone, Debug)]
pub enum Delivered {
    /// A buffer of records.
    Buffer {
        /// Records in it.
        record_count: u32,
        /// Concatenated postcard records.
        bytes: Vec<u8>,
    },
    /// An in-band event.
    Event(ChannelEvent),
}

/// The input channels of one task.
pub struct InputGate {
    /// Decides blocking and triggering.
    pub handler: BarrierHandler,
    credit: CreditReceiver,
    queues: Vec<VecDeque<Delivered>>,
    writers: Vec<Option<WriteHalf<TcpStream>>>,
    end_received: Vec<bool>,
    cursor: usize,
}

impl InputGate {
    /// A gate of `channel_count` channels whose barriers are handled in `mode`.
    pub fn new(channel_count: usize, mode: CheckpointingMode) -> InputGate {
        InputGate {
            handler: BarrierHandler::new(channel_count, mode),
            credit: CreditReceiver::new(channel_count),
            queues: vec![VecDeque::new(); channel_count],
            writers: (0..channel_count).map(|_| None).collect(),
            end_received: vec![false; channel_count],
            cursor: 0,
        }
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

    /// A frame arrived on `channel`. Protocol violations are errors that fail the task.
    pub fn on_frame(&mut self, channel: ChannelIndex, frame: DataFrame) -> Result<(), String> {
        let index = channel.0 as usize;
        if self.end_received[index] {
            return Err(format!(
                "input channel {index}: data after end of partition"
            ));
        }
        match frame {
            DataFrame::Buffer {
                record_count,
                bytes,
                backlog,
            } => {
                self.credit
                    .on_buffer_received(channel, backlog)
                    .map_err(|_| format!("input channel {index}: buffer sent without credit"))?;
                self.queues[index].push_back(Delivered::Buffer {
                    record_count,
                    bytes,
                });
            }
            DataFrame::Event(event) => {
                self.end_received[index] |= event == ChannelEvent::EndOfPartition;
                self.queues[index].push_back(Delivered::Event(event));
            }
            DataFrame::Hello { .. } | DataFrame::Credit(_) => {
                return Err(format!("input channel {index}: unexpected control frame"))
            }
        }
        Ok(())
    }

    /// Whether `channel` delivered its end of partition (a later close is normal).
    pub fn has_ended(&self, channel: ChannelIndex) -> bool {
        self.end_received[channel.0 as usize]
    }

    /// The next item from a channel that is not blocked, round robin over channels.
    pub fn poll_next(&mut self) -> Option<(ChannelIndex, Delivered)> {
        let count = self.queues.len();
        for step in 0..count {
            let index = (self.cursor + step) % count;
            let channel = ChannelIndex(index as u16);
            if self.handler.is_blocked(channel) {
                continue;
            }
            if let Some(item) = self.queues[index].pop_front() {
                self.cursor = (index + 1) % count;
                return Some((channel, item));
            }
        }
        None
    }

    /// A buffer of `channel` was processed: its memory is free again.
    pub fn on_buffer_consumed(&mut self, channel: ChannelIndex) {
        self.credit.on_buffer_consumed(channel);
    }

    /// Sends pending credit grants on connected channels.
    pub async fn send_credits(&mut self) -> Result<(), String> {
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
        Ok(())
    }

    fn credit_hold(&mut self, channel: ChannelIndex, credit: u32) {
        self.credit.requeue_grant(channel, credit);
    }

    /// Buffers held in the queues.
    pub fn buffers_queued(&self) -> u32 {
        self.credit.buffers_in_use()
    }
}
