//! The fault plan: which faults a run injects, and when. A plan is explicit (it is printed
//! with every run and written with every failure), so it stays meaningful after code changes
//! and shrinks by deleting faults.
//!
//! These types are the one model of a fault: serde reads them from a scenario's `[[faults]]`
//! tables and writes them back (the action tagged by `kind`, the trigger by its key), the
//! property tests generate them, `Display` prints them in reports, and the injector acts on
//! them. The loader checks them against the job and the cluster (`scenario::file`).

use crate::checkpoint::barrier::SavepointFormat;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::SubtaskId;
use crate::scenario::node_name::NodeName;
use crate::scenario::toml_duration::{duration, instant, optional_duration};
use crate::time::{Duration, Instant};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A subtask reference that names no subtask.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubtaskRefError {
    /// Not `uid#index`.
    #[error("`{text}` is not `operator-uid#subtask-index`")]
    Malformed {
        /// The text.
        text: String,
    },
    /// The index is not a number.
    #[error("`{text}`: `{index}` is not a subtask index")]
    BadIndex {
        /// The text.
        text: String,
        /// Its index part.
        index: String,
    },
    /// No operator has the uid.
    #[error("no operator with uid `{uid}` (the job has {uids})")]
    UnknownUid {
        /// The uid given.
        uid: String,
        /// The job's uids.
        uids: String,
    },
    /// The operator has fewer subtasks.
    #[error("`{subtask}`: operator `{uid}` has parallelism {parallelism}")]
    IndexOutOfRange {
        /// The reference.
        subtask: String,
        /// Its operator.
        uid: String,
        /// The operator's parallelism.
        parallelism: u32,
    },
}

/// A subtask named the way users see it: operator uid and subtask index (`counter#0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubtaskRef {
    /// An operator uid; the subtask is the one running that operator's chain.
    pub uid: String,
    /// The subtask index.
    pub index: u32,
}

impl SubtaskRef {
    /// Parses `uid#index`.
    pub fn parse(text: &str) -> Result<SubtaskRef, SubtaskRefError> {
        let (uid, index) = text
            .rsplit_once('#')
            .ok_or_else(|| SubtaskRefError::Malformed {
                text: text.to_string(),
            })?;
        let index = index.parse().map_err(|_| SubtaskRefError::BadIndex {
            text: text.to_string(),
            index: index.to_string(),
        })?;
        Ok(SubtaskRef {
            uid: uid.to_string(),
            index,
        })
    }

    /// The physical subtask, if the uid and index exist in `graph`.
    pub fn resolve(&self, graph: &ExecutionGraph) -> Result<SubtaskId, SubtaskRefError> {
        let position = graph
            .job
            .operators
            .iter()
            .position(|o| o.uid == self.uid)
            .ok_or_else(|| {
                let uids: Vec<&str> = graph.job.operators.iter().map(|o| o.uid.as_str()).collect();
                SubtaskRefError::UnknownUid {
                    uid: self.uid.clone(),
                    uids: uids.join(", "),
                }
            })?;
        let vertex = graph
            .vertices
            .iter()
            .find(|v| v.operator_range.contains(&position))
            .expect("every operator is in a vertex");
        if self.index >= vertex.parallelism {
            return Err(SubtaskRefError::IndexOutOfRange {
                subtask: self.to_string(),
                uid: self.uid.clone(),
                parallelism: vertex.parallelism,
            });
        }
        Ok(SubtaskId {
            vertex_id: vertex.vertex_id,
            subtask_index: self.index,
        })
    }
}

impl fmt::Display for SubtaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.uid, self.index)
    }
}

impl Serialize for SubtaskRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SubtaskRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SubtaskRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// When a fault happens: in a scenario file, exactly one of the keys `at`,
/// `after-checkpoint`, `on-record`, `before-commit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultTrigger {
    /// At a simulated time.
    At(#[serde(with = "instant")] Instant),
    /// Right after the first checkpoint with this id or a higher one completes.
    AfterCheckpoint(u64),
    /// When the subtask begins its `count`-th record (counted over the whole run).
    OnRecord {
        /// The subtask.
        subtask: SubtaskRef,
        /// Which record, from 1.
        count: u64,
    },
    /// When a committing sink subtask is about to record checkpoint `checkpoint` as committed:
    /// the two-phase-commit sink before it commits the checkpoint's transaction, the
    /// write-ahead sink after it wrote the checkpoint's batch and before its committer record.
    BeforeCommit {
        /// The sink subtask.
        subtask: SubtaskRef,
        /// The checkpoint.
        checkpoint: u64,
    },
}

/// What a fault does: in a scenario file, the `kind` and its fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum FaultAction {
    /// Kill `taskmanager-N`; restart it after a delay if given.
    #[serde(rename = "kill-taskmanager")]
    KillTaskManager {
        /// N.
        taskmanager: u32,
        /// Delay before the node restarts; `None` keeps it dead.
        #[serde(
            default,
            with = "optional_duration",
            skip_serializing_if = "Option::is_none"
        )]
        restart_after: Option<Duration>,
    },
    /// Kill the job manager; restart it after a delay if given. With high availability the
    /// restarted job manager is elected leader and recovers the job from its newest retained
    /// checkpoint; without, it knows no job and the job is lost.
    #[serde(rename = "kill-jobmanager")]
    KillJobManager {
        /// Delay before the node restarts; `None` keeps it dead.
        #[serde(
            default,
            with = "optional_duration",
            skip_serializing_if = "Option::is_none"
        )]
        restart_after: Option<Duration>,
    },
    /// Stop every task of `taskmanager-N` for a time (a long GC pause); it then resumes as
    /// the same instance, its tasks zombies if the job failed them over meanwhile.
    #[serde(rename = "pause-taskmanager")]
    PauseTaskManager {
        /// N.
        taskmanager: u32,
        /// How long it stands still.
        #[serde(with = "duration")]
        duration: Duration,
    },
    /// Stop the job manager for a time (a long GC pause); it resumes as the same instance
    /// and the same leader, to task managers that gave it up past the heartbeat timeout and
    /// cancelled their tasks.
    #[serde(rename = "pause-jobmanager")]
    PauseJobManager {
        /// How long it stands still.
        #[serde(with = "duration")]
        duration: Duration,
    },
    /// Clog the link between two nodes, both directions (or only `from` to `to`), for a time.
    ClogLink {
        /// One node.
        from: NodeName,
        /// The other node.
        to: NodeName,
        /// How long.
        #[serde(with = "duration")]
        duration: Duration,
        /// Only `from` to `to` (an asymmetric partition: `to` no longer hears `from`).
        #[serde(default)]
        one_way: bool,
    },
    /// Add latency to every data frame sent from one node to another, for a time.
    SlowLink {
        /// The sending node.
        from: NodeName,
        /// The receiving node.
        to: NodeName,
        /// Latency per frame.
        #[serde(with = "duration")]
        latency: Duration,
        /// How long; `None` for the rest of the run.
        #[serde(
            default,
            with = "optional_duration",
            skip_serializing_if = "Option::is_none"
        )]
        duration: Option<Duration>,
    },
    /// Add processing time per record to an operator.
    SlowOperator {
        /// Its uid.
        #[serde(rename = "operator")]
        uid: String,
        /// Time per record.
        #[serde(with = "duration")]
        per_record: Duration,
        /// How long; `None` for the rest of the run.
        #[serde(
            default,
            with = "optional_duration",
            skip_serializing_if = "Option::is_none"
        )]
        duration: Option<Duration>,
    },
    /// Make a subtask fail (an exception in user code) at its next record.
    FailTask {
        /// The subtask.
        subtask: SubtaskRef,
    },
    /// The next checkpoint-completion notice that reaches the subtask is lost.
    LoseNotice {
        /// The subtask.
        subtask: SubtaskRef,
    },
    /// Every checkpoint-completion notice reaches its task this much later, for a time.
    DelayNotices {
        /// The added delay.
        #[serde(with = "duration")]
        delay: Duration,
        /// How long; `None` for the rest of the run.
        #[serde(
            default,
            with = "optional_duration",
            skip_serializing_if = "Option::is_none"
        )]
        duration: Option<Duration>,
    },
    /// Flip one byte in a state file of the newest completed checkpoint (bit rot, a torn
    /// write): its checksum no longer holds.
    #[serde(rename = "corrupt-checkpoint")]
    CorruptCheckpoint,
    /// Kill the blobstore (checkpoint storage) and restart it: uploads and `_metadata` writes
    /// fail while it is down. What it synced survives.
    RestartBlobstore {
        /// How long it is down (1 s when not given).
        #[serde(default = "one_second", with = "duration")]
        restart_after: Duration,
    },
    /// The blobstore's writes fail with an I/O error for a time (a full or failing disk):
    /// uploads and `_metadata` writes are refused, so checkpoints are declined.
    FailBlobstoreWrites {
        /// How long.
        #[serde(with = "duration")]
        duration: Duration,
    },
    /// Cancel the job, as `flink cancel` does: it ends CANCELED, and its retained
    /// checkpoints are kept or deleted by `externalized-checkpoint-retention`.
    CancelJob,
    /// Take a savepoint, as `flink savepoint [--type native]` does: the job goes on.
    Savepoint {
        /// `canonical` (default) or `native`.
        #[serde(rename = "type", default, skip_serializing_if = "is_canonical")]
        format: SavepointFormat,
    },
    /// Stop the job with a savepoint, as `flink stop [--drain] [--type native]` does; the next
    /// stage resumes from it. A stop that fails (a failover meanwhile) is asked again, as a
    /// user would, until the job stops.
    StopWithSavepoint {
        /// `--drain`: the sources end their input first and every operator finishes.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        drain: bool,
        /// `canonical` (default) or `native`.
        #[serde(rename = "type", default, skip_serializing_if = "is_canonical")]
        format: SavepointFormat,
    },
    /// Kill the broker and restart it (its storage is durable).
    RestartBroker {
        /// How long it is down (1 s when not given).
        #[serde(default = "one_second", with = "duration")]
        restart_after: Duration,
    },
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}

fn is_canonical(format: &SavepointFormat) -> bool {
    *format == SavepointFormat::Canonical
}

/// One fault: a `[[faults]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What it does.
    #[serde(flatten)]
    pub action: FaultAction,
    /// When.
    #[serde(flatten)]
    pub trigger: FaultTrigger,
}

/// The keys a trigger is written under.
pub const TRIGGER_KEYS: [&str; 4] = ["at", "after-checkpoint", "on-record", "before-commit"];

/// Every fault of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The faults, in the scenario's order.
    pub faults: Vec<Fault>,
}

impl fmt::Display for FaultTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTrigger::At(at) => write!(f, "at {at}"),
            FaultTrigger::AfterCheckpoint(n) => write!(f, "after checkpoint {n} completes"),
            FaultTrigger::OnRecord { subtask, count } => {
                write!(f, "when {subtask} begins record {count}")
            }
            FaultTrigger::BeforeCommit {
                subtask,
                checkpoint,
            } => {
                write!(
                    f,
                    "when {subtask} is about to commit checkpoint {checkpoint}"
                )
            }
        }
    }
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultAction::KillTaskManager {
                taskmanager,
                restart_after: Some(delay),
            } => write!(
                f,
                "kill taskmanager-{taskmanager}, restart it {delay} later"
            ),
            FaultAction::KillTaskManager {
                taskmanager,
                restart_after: None,
            } => write!(f, "kill taskmanager-{taskmanager} for good"),
            FaultAction::KillJobManager {
                restart_after: Some(delay),
            } => write!(f, "kill the jobmanager, restart it {delay} later"),
            FaultAction::KillJobManager {
                restart_after: None,
            } => write!(f, "kill the jobmanager for good"),
            FaultAction::ClogLink {
                from,
                to,
                duration,
                one_way,
            } => {
                let arrow = if *one_way { "->" } else { "<->" };
                write!(f, "clog {from} {arrow} {to} for {duration}")
            }
            FaultAction::SlowLink {
                from,
                to,
                latency,
                duration: Some(duration),
            } => {
                write!(f, "slow {from} -> {to} by {latency}/frame for {duration}")
            }
            FaultAction::SlowLink {
                from,
                to,
                latency,
                duration: None,
            } => {
                write!(f, "slow {from} -> {to} by {latency}/frame")
            }
            FaultAction::SlowOperator {
                uid,
                per_record,
                duration: Some(duration),
            } => write!(f, "slow `{uid}` by {per_record}/record for {duration}"),
            FaultAction::SlowOperator {
                uid,
                per_record,
                duration: None,
            } => write!(f, "slow `{uid}` by {per_record}/record"),
            FaultAction::FailTask { subtask } => write!(f, "fail task {subtask}"),
            FaultAction::LoseNotice { subtask } => {
                write!(f, "lose the next checkpoint-completion notice to {subtask}")
            }
            FaultAction::DelayNotices {
                delay,
                duration: Some(duration),
            } => write!(f, "delay completion notices by {delay} for {duration}"),
            FaultAction::DelayNotices {
                delay,
                duration: None,
            } => write!(f, "delay completion notices by {delay}"),
            FaultAction::RestartBroker { restart_after } => {
                write!(f, "kill the broker, restart it {restart_after} later")
            }
            FaultAction::RestartBlobstore { restart_after } => {
                write!(f, "kill the blobstore, restart it {restart_after} later")
            }
            FaultAction::FailBlobstoreWrites { duration } => {
                write!(f, "fail every blobstore write for {duration}")
            }
            FaultAction::CancelJob => write!(f, "cancel the job"),
            FaultAction::Savepoint { format } => write!(f, "take a {} savepoint", format.name()),
            FaultAction::StopWithSavepoint { drain, format } => {
                let drain = if *drain { " and drain" } else { "" };
                write!(f, "stop{drain} with a {} savepoint", format.name())
            }
            FaultAction::CorruptCheckpoint => {
                write!(f, "corrupt a state file of the newest completed checkpoint")
            }
            FaultAction::PauseTaskManager {
                taskmanager,
                duration,
            } => write!(f, "pause taskmanager-{taskmanager} for {duration}"),
            FaultAction::PauseJobManager { duration } => {
                write!(f, "pause the jobmanager for {duration}")
            }
        }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return writeln!(f, "  (no faults)");
        }
        for (index, fault) in self.faults.iter().enumerate() {
            writeln!(f, "  {}. {} {}", index + 1, fault.action, fault.trigger)?;
        }
        Ok(())
    }
}
