//! What every barrier handler speaks, whatever its mode: the actions it asks of the task, why
//! it aborts a checkpoint, the protocol errors it refuses input with, and the per-channel
//! bookkeeping (ended channels, barrier ids growing per channel) every mode shares.

use crate::checkpoint::barrier::Barrier;
use crate::ids::{ChannelIndex, CheckpointId};
use crate::time::Duration;
use std::fmt;

/// What the task must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stop reading this channel until `UnblockAll`.
    Block(ChannelIndex),
    /// Snapshot state now, then forward the barrier downstream. An unaligned barrier means the
    /// checkpoint's input channel state is still being collected until `InputStateComplete`.
    Trigger {
        /// The barrier to forward.
        barrier: Barrier,
        /// From the first barrier of this checkpoint to the last.
        alignment_duration: Duration,
    },
    /// Every channel may be read again.
    UnblockAll,
    /// The checkpoint is aborted here: forward a cancel marker for it downstream.
    Abort {
        /// The aborted checkpoint.
        checkpoint_id: CheckpointId,
        /// Why.
        reason: AbortReason,
    },
    /// Every channel delivered the barrier of this unaligned checkpoint: its input channel
    /// state is complete.
    InputStateComplete {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
    },
    /// Every input channel has ended.
    AllInputsEnded,
}

/// Why the handler aborted a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// A newer barrier arrived during alignment.
    Subsumed,
    /// A cancel marker arrived.
    CancelMarker,
}

/// An input the handler refuses: the upstream broke the channel protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A barrier id went backwards (or repeated) on one FIFO channel.
    BarrierWentBackwards {
        /// The channel.
        channel: ChannelIndex,
        /// The id it had delivered before.
        previous: CheckpointId,
        /// The id it delivered now.
        received: CheckpointId,
    },
    /// An event arrived on a channel that had ended.
    EventAfterEnd {
        /// The channel.
        channel: ChannelIndex,
    },
    /// A channel index outside the gate.
    UnknownChannel {
        /// The channel.
        channel: ChannelIndex,
    },
}

impl std::error::Error for ProtocolError {}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BarrierWentBackwards {
                channel,
                previous,
                received,
            } => {
                write!(
                    f,
                    "channel {}: barrier {received} after barrier {previous}",
                    channel.0
                )
            }
            ProtocolError::EventAfterEnd { channel } => {
                write!(f, "channel {}: event after end of partition", channel.0)
            }
            ProtocolError::UnknownChannel { channel } => {
                write!(f, "channel {} is not in this gate", channel.0)
            }
        }
    }
}

/// The reactions to one input, in order.
pub type Actions = Vec<Action>;

/// What every mode tracks per input channel: whether it ended, and the last barrier it
/// delivered (ids only grow on one FIFO channel).
#[derive(Clone, Debug)]
pub(crate) struct GateChannels {
    ended: Vec<bool>,
    last_barrier: Vec<Option<CheckpointId>>,
}

impl GateChannels {
    pub(crate) fn new(channel_count: usize) -> Self {
        assert!(
            channel_count > 0,
            "a task without inputs has no barrier handler"
        );
        assert!(channel_count <= crate::limits::GATE_CHANNELS_MAX);
        GateChannels {
            ended: vec![false; channel_count],
            last_barrier: vec![None; channel_count],
        }
    }

    /// An event may arrive on `channel`: it exists and has not ended.
    pub(crate) fn check_open(&self, channel: ChannelIndex) -> Result<(), ProtocolError> {
        match self.ended.get(channel.0 as usize) {
            None => Err(ProtocolError::UnknownChannel { channel }),
            Some(true) => Err(ProtocolError::EventAfterEnd { channel }),
            Some(false) => Ok(()),
        }
    }

    /// Records barrier `received` on `channel`; an id that does not grow is refused.
    pub(crate) fn record_barrier(
        &mut self,
        channel: ChannelIndex,
        received: CheckpointId,
    ) -> Result<(), ProtocolError> {
        let last = &mut self.last_barrier[channel.0 as usize];
        if let Some(previous) = *last {
            if received <= previous {
                return Err(ProtocolError::BarrierWentBackwards {
                    channel,
                    previous,
                    received,
                });
            }
        }
        *last = Some(received);
        Ok(())
    }

    /// `channel` delivered its end of partition.
    pub(crate) fn end(&mut self, channel: ChannelIndex) {
        assert!(!self.ended[channel.0 as usize]);
        self.ended[channel.0 as usize] = true;
    }

    /// Whether `channel` has ended.
    pub(crate) fn is_ended(&self, channel: usize) -> bool {
        self.ended[channel]
    }

    /// Channels of the gate.
    pub(crate) fn count(&self) -> usize {
        self.ended.len()
    }

    /// Whether every channel has ended.
    pub(crate) fn all_ended(&self) -> bool {
        self.ended.iter().all(|ended| *ended)
    }
}
