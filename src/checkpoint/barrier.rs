//! In-band checkpoint events: the barrier and what travels beside it.

use crate::ids::CheckpointId;
use crate::time::Instant;
use serde::{Deserialize, Serialize};

/// How a barrier is to be aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierKind {
    /// Exactly-once aligned: channels block until the barrier arrived on all of them.
    Aligned,
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
