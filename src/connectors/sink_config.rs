//! How the job's sink delivers to the outside world (Flink's `DeliveryGuarantee` and the
//! sink flavours of the end-to-end exactly-once story), and how its output is read.

use crate::services::messages::IsolationLevel;
use crate::time::Duration;

/// Flink's default `transaction.timeout.ms` for its Kafka producer (one hour).
pub const TRANSACTION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3600);

/// The sink's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// Appends straight through: records written before a failure are written again.
    Plain,
    /// A broker transaction per checkpoint: pre-committed at the barrier, committed on the
    /// completion notice (Flink's `TwoPhaseCommitSinkFunction` / `KafkaSink` exactly-once).
    TwoPhaseCommit,
    /// Records of a checkpoint kept in state and written when it completes, with a committer
    /// record per checkpoint (Flink's `GenericWriteAheadSink` + `CheckpointCommitter`).
    WriteAheadLog,
    /// Upserts `(key, value)` into the key-value store.
    Idempotent,
}

impl SinkKind {
    /// The scenario file's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Plain => "plain",
            SinkKind::TwoPhaseCommit => "two-phase-commit",
            SinkKind::WriteAheadLog => "write-ahead-log",
            SinkKind::Idempotent => "idempotent",
        }
    }

    /// Parses the scenario file's spelling.
    pub fn parse(text: &str) -> Option<SinkKind> {
        [
            SinkKind::Plain,
            SinkKind::TwoPhaseCommit,
            SinkKind::WriteAheadLog,
            SinkKind::Idempotent,
        ]
        .into_iter()
        .find(|kind| kind.name() == text)
    }

    /// Whether the sink writes to the key-value store (which then runs as a node).
    pub fn uses_kv_store(self) -> bool {
        matches!(self, SinkKind::WriteAheadLog | SinkKind::Idempotent)
    }

    /// Whether the sink commits on checkpoint completion, so the job must end with a final
    /// checkpoint that commits its last records (FLIP-147).
    pub fn commits_on_checkpoints(self) -> bool {
        matches!(self, SinkKind::TwoPhaseCommit | SinkKind::WriteAheadLog)
    }
}

/// The sink's settings and the output reader's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// Which sink.
    pub kind: SinkKind,
    /// The two-phase-commit sink's `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// The broker's `transaction.max.timeout.ms`.
    pub broker_transaction_max_timeout: Duration,
    /// How the output topic is read (`isolation.level`).
    pub isolation: IsolationLevel,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            kind: SinkKind::Plain,
            transaction_timeout: TRANSACTION_TIMEOUT_DEFAULT,
            broker_transaction_max_timeout:
                crate::services::broker::TRANSACTION_MAX_TIMEOUT_DEFAULT,
            isolation: IsolationLevel::ReadUncommitted,
        }
    }
}
