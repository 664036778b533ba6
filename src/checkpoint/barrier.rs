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

/// How a savepoint's state is written (`flink savepoint --type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavepointFormat {
    /// `canonical` (Flink's default): per operator uid and state name, key group by key group,
    /// independent of the state backend, so a job may resume with another backend.
    #[default]
    Canonical,
    /// `native`: the state backend's own checkpoint files, faster to write and to restore.
    Native,
}

impl SavepointFormat {
    /// The name as the CLI and the scenario write it.
    pub fn name(self) -> &'static str {
        match self {
            SavepointFormat::Canonical => "canonical",
            SavepointFormat::Native => "native",
        }
    }
}

/// What a barrier snapshots (Flink's `SnapshotType` in `CheckpointOptions`): the task writes
/// its state where and how the type says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotType {
    /// A checkpoint, owned by the job: `chk-<n>/` under the checkpoint directory.
    Checkpoint,
    /// A savepoint, owned by the user: `savepoint-<n>/` under the savepoint directory.
    Savepoint {
        /// How its state is written.
        format: SavepointFormat,
        /// Stop-with-savepoint (`SAVEPOINT_TERMINATE`): the sources emit nothing after the
        /// barrier and end once it completed.
        terminate: bool,
    },
}

impl SnapshotType {
    /// Whether it is a savepoint.
    pub fn is_savepoint(self) -> bool {
        matches!(self, SnapshotType::Savepoint { .. })
    }

    /// Whether it stops the job (stop-with-savepoint).
    pub fn terminates(self) -> bool {
        matches!(
            self,
            SnapshotType::Savepoint {
                terminate: true,
                ..
            }
        )
    }
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
    /// Checkpoint or savepoint.
    pub snapshot: SnapshotType,
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
