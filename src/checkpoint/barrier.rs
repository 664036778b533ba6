//! In-band checkpoint events: the barrier and what travels beside it.

use crate::ids::CheckpointId;
use crate::time::{Duration, Instant};
use serde::{Deserialize, Serialize};

/// How a barrier is to be aligned (Flink's `CheckpointOptions.AlignmentType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierKind {
    /// Exactly-once aligned: channels block until the barrier arrived on all of them. Savepoint
    /// barriers are always of this kind, so they never time out.
    Aligned,
    /// Exactly-once, aligned until `timeout` after the checkpoint's creation, then unaligned
    /// for the rest of the checkpoint (`execution.checkpointing.aligned-checkpoint-timeout`).
    AlignedTimeoutable {
        /// Measured from the barrier's timestamp (the checkpoint's creation).
        timeout: Duration,
    },
    /// Exactly-once unaligned: a priority event that overtakes queued buffers; the data it
    /// overtakes is persisted as channel state.
    Unaligned,
    /// At-least-once: barriers are tracked, nothing blocks.
    AtLeastOnce,
}

/// A checkpoint barrier: separates the records before checkpoint n from those after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// The checkpoint it belongs to.
    pub checkpoint_id: CheckpointId,
    /// When the coordinator created the checkpoint.
    pub timestamp: Instant,
    /// How to align it.
    pub kind: BarrierKind,
}

impl Barrier {
    /// Whether it is a priority event that overtakes queued data.
    pub fn is_unaligned(&self) -> bool {
        self.kind == BarrierKind::Unaligned
    }

    /// When an aligned-with-timeout barrier turns unaligned; `None` for other kinds.
    pub fn alignment_deadline(&self) -> Option<Instant> {
        match self.kind {
            BarrierKind::AlignedTimeoutable { timeout } => Some(self.timestamp.add(timeout)),
            _ => None,
        }
    }

    /// The same barrier, unaligned (what a timed-out aligned barrier becomes).
    pub fn as_unaligned(&self) -> Barrier {
        Barrier {
            kind: BarrierKind::Unaligned,
            ..*self
        }
    }
}
