//! Channel state of an unaligned checkpoint (Flink's `InputChannelStateHandle` and
//! `ResultSubpartitionStateHandle`): the in-flight buffers a barrier overtook, persisted with
//! the subtask's snapshot and replayed into the same channels first on restore.

use serde::{Deserialize, Serialize};

/// A buffer of records serialized back to back, as it travels on a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBuffer {
    /// Records in it.
    pub record_count: u32,
    /// The bytes (postcard writes a byte slice exactly as it writes a sequence of bytes; this
    /// only reads it back as one slice).
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Output channel state: per output channel, the buffers a barrier overtook.
pub type OutputChannelState = Vec<Vec<RecordBuffer>>;

/// One subtask's in-flight data at an unaligned checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStateSnapshot {
    /// The subtask it belongs to: channel state is restored by the same subtask, not
    /// redistributed.
    pub subtask_index: u32,
    /// Per input channel, buffers received before that channel's barrier and not processed
    /// before the snapshot.
    pub input: Vec<Vec<RecordBuffer>>,
    /// Per output channel, buffers the forwarded barrier overtook.
    pub output: Vec<Vec<RecordBuffer>>,
}

impl ChannelStateSnapshot {
    /// Bytes of in-flight data persisted.
    pub fn bytes(&self) -> u64 {
        self.input
            .iter()
            .chain(&self.output)
            .flatten()
            .map(|buffer| buffer.bytes.len() as u64)
            .sum()
    }

    /// Records of in-flight data persisted.
    pub fn records(&self) -> u64 {
        self.input
            .iter()
            .chain(&self.output)
            .flatten()
            .map(|buffer| buffer.record_count as u64)
            .sum()
    }

    /// Whether nothing was in flight.
    pub fn is_empty(&self) -> bool {
        self.input.iter().chain(&self.output).all(Vec::is_empty)
    }
}
