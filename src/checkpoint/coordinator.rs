//! The checkpoint coordinator (Flink's `CheckpointCoordinator`): triggers checkpoints at the
//! sources, collects acknowledgements, and completes or aborts. Sans-IO: time arrives as
//! `now`; outputs queue until drained with `poll_output`; `poll_timeout` gives the next
//! deadline and an early `on_timeout` is harmless.

use crate::checkpoint::barrier::{BarrierKind, SavepointFormat, SnapshotType};
use crate::checkpoint::storage::{CheckpointStorageConfig, StateHandle};
use crate::ids::{CheckpointId, SubtaskId};
use crate::limits::{CHECKPOINTS_IN_FLIGHT_MAX, CHECKPOINTS_RETAINED_MAX, CHECKPOINT_TIME_MS_MIN};
use crate::time::{Duration, Instant};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Flink's default checkpoint timeout: 10 minutes.
pub const CHECKPOINT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(600);

/// `execution.checkpointing.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointingMode {
    /// `EXACTLY_ONCE`: barriers are aligned.
    ExactlyOnce,
    /// `AT_LEAST_ONCE`: barriers are tracked, never aligned.
    AtLeastOnce,
    /// At-most-once: no checkpoints; the source commits offsets to the broker as it reads and
    /// a restart begins from them with empty state.
    AtMostOnce,
}

/// What happens to the retained checkpoints when the job ends
/// (`execution.checkpointing.externalized-checkpoint-retention`, Flink's
/// `CheckpointProperties` discard flags). A finished job never keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalizedCheckpointRetention {
    /// `NO_EXTERNALIZED_CHECKPOINTS` (Flink's default): deleted whenever the job ends.
    NoExternalizedCheckpoints,
    /// `DELETE_ON_CANCELLATION`: kept when the job fails, deleted when it is cancelled.
    DeleteOnCancellation,
    /// `RETAIN_ON_CANCELLATION`: kept when the job fails or is cancelled.
    RetainOnCancellation,
}

impl ExternalizedCheckpointRetention {
    /// The option's value as Flink writes it.
    pub fn name(self) -> &'static str {
        match self {
            ExternalizedCheckpointRetention::NoExternalizedCheckpoints => {
                "NO_EXTERNALIZED_CHECKPOINTS"
            }
            ExternalizedCheckpointRetention::DeleteOnCancellation => "DELETE_ON_CANCELLATION",
            ExternalizedCheckpointRetention::RetainOnCancellation => "RETAIN_ON_CANCELLATION",
        }
    }

    /// Whether the retained checkpoints outlive a job that ended `failed` (else cancelled
    /// when not `finished`).
    pub fn keeps(self, finished: bool, failed: bool) -> bool {
        use ExternalizedCheckpointRetention::*;
        match (self, finished, failed) {
            (_, true, _) | (NoExternalizedCheckpoints, ..) => false,
            (DeleteOnCancellation, false, failed) => failed,
            (RetainOnCancellation, false, _) => true,
        }
    }
}

/// Checkpointing options, named and defaulted as Flink's `execution.checkpointing.*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// `interval`; `None` disables checkpointing.
    pub interval: Option<Duration>,
    /// `mode`.
    pub mode: CheckpointingMode,
    /// `timeout`: a checkpoint not complete by then is aborted.
    pub timeout: Duration,
    /// `min-pause`: time from one completion to the next trigger.
    pub min_pause: Duration,
    /// `max-concurrent-checkpoints`.
    pub max_concurrent: u32,
    /// `tolerable-failed-checkpoints`: consecutive failures tolerated before the job fails.
    pub tolerable_failures: u32,
    /// `num-retained`: completed checkpoints kept.
    pub retained: u32,
    /// `unaligned`: exactly-once barriers overtake in-flight data, which is persisted.
    pub unaligned: bool,
    /// `aligned-checkpoint-timeout`: with `unaligned`, checkpoints start aligned and turn
    /// unaligned this long after their creation; zero means unaligned from the start.
    pub aligned_checkpoint_timeout: Duration,
    /// `storage`, `dir`, `data-inline-threshold`: where checkpoints are kept.
    pub storage: CheckpointStorageConfig,
    /// `externalized-checkpoint-retention`: whether retained checkpoints outlive the job.
    pub retention: ExternalizedCheckpointRetention,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: None,
            mode: CheckpointingMode::ExactlyOnce,
            timeout: CHECKPOINT_TIMEOUT_DEFAULT,
            min_pause: Duration::ZERO,
            max_concurrent: 1,
            tolerable_failures: 0,
            retained: 1,
            unaligned: false,
            aligned_checkpoint_timeout: Duration::ZERO,
            storage: CheckpointStorageConfig::default(),
            retention: ExternalizedCheckpointRetention::NoExternalizedCheckpoints,
        }
    }
}

/// Checkpointing options that cannot run; each names the option.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointConfigError {
    /// `interval` below Flink's minimum.
    #[error("execution.checkpointing.interval must be at least {CHECKPOINT_TIME_MS_MIN}ms (Flink's minimum)")]
    IntervalTooShort,
    /// `max-concurrent-checkpoints` out of range.
    #[error("execution.checkpointing.max-concurrent-checkpoints must be in 1..={CHECKPOINTS_IN_FLIGHT_MAX}")]
    MaxConcurrent,
    /// `num-retained` out of range.
    #[error("execution.checkpointing.num-retained must be in 1..={CHECKPOINTS_RETAINED_MAX}")]
    Retained,
    /// `timeout` below Flink's minimum.
    #[error("execution.checkpointing.timeout must be at least {CHECKPOINT_TIME_MS_MIN}ms (Flink's minimum), not {timeout}")]
    TimeoutTooShort {
        /// The timeout given.
        timeout: Duration,
    },
    /// `unaligned` without exactly-once.
    #[error("execution.checkpointing.unaligned needs mode EXACTLY_ONCE: unaligned checkpoints persist in-flight data to keep exactly-once")]
    UnalignedNeedsExactlyOnce,
    /// `unaligned` with concurrent checkpoints.
    #[error("execution.checkpointing.unaligned cannot run with max-concurrent-checkpoints = {max_concurrent} (must be 1)")]
    UnalignedConcurrent {
        /// The setting given.
        max_concurrent: u32,
    },
    /// `aligned-checkpoint-timeout` without `unaligned`.
    #[error("execution.checkpointing.aligned-checkpoint-timeout needs unaligned = true: the timeout switches an aligned checkpoint to unaligned")]
    TimeoutNeedsUnaligned,
}

impl CheckpointConfig {
    /// Checks the options against each other and the limits; the error names the option.
    pub fn validate(&self) -> Result<(), CheckpointConfigError> {
        if let Some(interval) = self.interval {
            if interval < Duration::from_ms(CHECKPOINT_TIME_MS_MIN) {
                return Err(CheckpointConfigError::IntervalTooShort);
            }
        }
        if self.max_concurrent == 0 || self.max_concurrent > CHECKPOINTS_IN_FLIGHT_MAX {
            return Err(CheckpointConfigError::MaxConcurrent);
        }
        if self.retained == 0 || self.retained > CHECKPOINTS_RETAINED_MAX {
            return Err(CheckpointConfigError::Retained);
        }
        if self.timeout < Duration::from_ms(CHECKPOINT_TIME_MS_MIN) {
            let timeout = self.timeout;
            return Err(CheckpointConfigError::TimeoutTooShort { timeout });
        }
        if self.unaligned && self.mode != CheckpointingMode::ExactlyOnce {
            return Err(CheckpointConfigError::UnalignedNeedsExactlyOnce);
        }
        if self.unaligned && self.max_concurrent > 1 {
            let max_concurrent = self.max_concurrent;
            return Err(CheckpointConfigError::UnalignedConcurrent { max_concurrent });
        }
        if !self.unaligned && self.aligned_checkpoint_timeout > Duration::ZERO {
            return Err(CheckpointConfigError::TimeoutNeedsUnaligned);
        }
        Ok(())
    }

    /// The kind of barrier the sources emit.
    pub fn barrier_kind(&self) -> BarrierKind {
        match self.mode {
            CheckpointingMode::AtLeastOnce => BarrierKind::AtLeastOnce,
            _ if !self.unaligned => BarrierKind::Aligned,
            _ if self.aligned_checkpoint_timeout == Duration::ZERO => BarrierKind::Unaligned,
            _ => BarrierKind::AlignedTimeoutable {
                timeout: self.aligned_checkpoint_timeout,
            },
        }
    }

    /// Flink forces max concurrent checkpoints to 1 when a min pause is set.
    fn max_concurrent_effective(&self) -> u32 {
        if self.min_pause > Duration::ZERO {
            1
        } else {
            self.max_concurrent
        }
    }
}

/// What a subtask reports when its part of a checkpoint is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAck {
    /// Where its state is: a file in checkpoint storage, or inline.
    pub state: StateHandle,
    /// Bytes of that state.
    pub state_size_bytes: u64,
    /// Time it spent aligning barriers.
    pub alignment_duration: Duration,
    /// Whether its snapshot was taken unaligned (at once, or after the alignment timeout).
    pub unaligned: bool,
    /// Bytes of in-flight data it persisted as channel state.
    pub in_flight_bytes: u64,
    /// The uids of the operators whose state its snapshot holds (Flink's `OperatorID`s in
    /// `_metadata`): a restore maps state to operators by them.
    pub operators: Vec<String>,
    /// The uids of all the task's operators, stateless ones too, in chain order.
    pub chain: Vec<String>,
}

/// A checkpoint every task acknowledged and whose metadata is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedCheckpoint {
    /// Its id.
    pub checkpoint_id: CheckpointId,
    /// When it was triggered.
    pub created_at: Instant,
    /// When the last ack arrived.
    pub acked_at: Instant,
    /// Every subtask's ack.
    pub acks: BTreeMap<SubtaskId, TaskAck>,
    /// The job's number of key groups, which no restore may change.
    pub max_parallelism: u32,
    /// Set for a savepoint: owned by the user, never retained nor discarded by the job.
    pub savepoint: Option<SavepointInfo>,
}

/// What makes a completed snapshot a savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointInfo {
    /// How its state files are written.
    pub format: SavepointFormat,
    /// Whether it was taken by stop-with-savepoint.
    pub terminate: bool,
}

impl SavepointInfo {
    /// The barrier's snapshot type of this savepoint.
    pub fn snapshot_type(self) -> SnapshotType {
        SnapshotType::Savepoint {
            format: self.format,
            terminate: self.terminate,
        }
    }
}

impl CompletedCheckpoint {
    /// Checkpoint or savepoint.
    pub fn snapshot_type(&self) -> SnapshotType {
        self.savepoint
            .map_or(SnapshotType::Checkpoint, SavepointInfo::snapshot_type)
    }

    /// The operator uids with state in it, each with the subtasks whose state holds it.
    pub fn operator_uids(&self) -> BTreeMap<&str, Vec<SubtaskId>> {
        let mut uids: BTreeMap<&str, Vec<SubtaskId>> = BTreeMap::new();
        for (subtask, ack) in &self.acks {
            for uid in &ack.operators {
                uids.entry(uid.as_str()).or_default().push(*subtask);
            }
        }
        uids
    }

    /// As its `_metadata` is written to `directory`: a savepoint names its files relative to
    /// it (self-contained and relocatable); a checkpoint keeps their paths.
    pub fn relocatable(&self, directory: &str) -> CompletedCheckpoint {
        let mut checkpoint = self.clone();
        if checkpoint.savepoint.is_some() {
            for ack in checkpoint.acks.values_mut() {
                ack.state = ack.state.relative_to(directory);
            }
        }
        checkpoint
    }

    /// As read back from a `_metadata` in `directory`: relative names resolved against it.
    pub fn resolved(mut self, directory: &str) -> CompletedCheckpoint {
        for ack in self.acks.values_mut() {
            ack.state = ack.state.resolved(directory);
        }
        self
    }

    /// Bytes of state over all tasks.
    pub fn state_size_bytes(&self) -> u64 {
        self.acks.values().map(|ack| ack.state_size_bytes).sum()
    }

    /// In-flight bytes persisted over all tasks.
    pub fn in_flight_bytes(&self) -> u64 {
        self.acks.values().map(|ack| ack.in_flight_bytes).sum()
    }

    /// Whether some task took its snapshot unaligned.
    pub fn unaligned(&self) -> bool {
        self.acks.values().any(|ack| ack.unaligned)
    }

    /// The longest alignment of any task.
    pub fn alignment_duration_max(&self) -> Duration {
        self.acks
            .values()
            .map(|ack| ack.alignment_duration)
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// Why a checkpoint was aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortCause {
    /// It ran past the checkpoint timeout.
    Expired,
    /// A task declined it.
    Declined(DeclineReason),
    /// Its metadata could not be written.
    MetadataWriteFailed(String),
    /// A newer checkpoint completed first.
    Subsumed,
    /// The job failed over.
    JobFailover,
}

impl AbortCause {
    /// Whether Flink counts this toward `tolerable-failed-checkpoints`.
    fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            AbortCause::Expired
                | AbortCause::Declined(DeclineReason::SnapshotFailed(_))
                | AbortCause::MetadataWriteFailed(_)
        )
    }
}

/// Why a task declined a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeclineReason {
    /// The task had finished (or was not running): Flink's `NOT_ALL_REQUIRED_TASKS_RUNNING`,
    /// which does not count toward the tolerable failures.
    TaskNotRunning,
    /// Taking or writing the snapshot failed: counts as a checkpoint failure.
    SnapshotFailed(String),
}

/// What the driver must carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a trigger for this checkpoint to every source subtask.
    Trigger {
        /// The new checkpoint.
        checkpoint_id: CheckpointId,
        /// Its creation time (carried in the barriers).
        timestamp: Instant,
        /// Checkpoint or savepoint.
        snapshot: SnapshotType,
    },
    /// A savepoint completed (its `_metadata` is durable). A plain one commits nothing (Flink
    /// 1.15+: intermediate savepoints have no side effects); stop-with-savepoint's is notified
    /// to the tasks, which commits, and then the sources end.
    SavepointCompleted(CompletedCheckpoint),
    /// A savepoint asked for will not complete.
    SavepointFailed {
        /// Its id, if it was triggered.
        checkpoint_id: Option<CheckpointId>,
        /// Why.
        reason: String,
    },
    /// All tasks acked: write `_metadata`, then call `on_metadata_written`.
    WriteMetadata(CompletedCheckpoint),
    /// The checkpoint is complete: notify every task.
    Completed(CheckpointId),
    /// The checkpoint is aborted: tell every task.
    Aborted {
        /// The aborted checkpoint.
        checkpoint_id: CheckpointId,
        /// Why.
        cause: AbortCause,
    },
    /// More consecutive checkpoints failed than tolerated: fail the job over.
    FailJob(String),
    /// Delete this checkpoint's files: it was subsumed beyond `num-retained`, aborted, or a
    /// late ack shows a file written for it after it was aborted.
    Discard(CheckpointId),
}

struct PendingCheckpoint {
    snapshot: SnapshotType,
    created_at: Instant,
    tasks_waiting: BTreeSet<SubtaskId>,
    acks: BTreeMap<SubtaskId, TaskAck>,
    metadata_writing: bool,
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorCounters {
    /// Checkpoints triggered.
    pub triggered: u64,
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints aborted for any cause.
    pub aborted: u64,
    /// Acks that arrived for a checkpoint no longer pending (late or from an old attempt).
    pub acks_ignored: u64,
    /// Triggers skipped because too many were in flight or the min pause had not passed.
    pub triggers_skipped: u64,
}

/// Triggers checkpoints, collects acks, and decides completion or abort.
pub struct CheckpointCoordinator {
    config: CheckpointConfig,
    checkpoint_id_next: CheckpointId,
    tasks: BTreeSet<SubtaskId>,
    running: bool,
    pending: BTreeMap<CheckpointId, PendingCheckpoint>,
    completed: VecDeque<CompletedCheckpoint>,
    // Restored from another job's retained checkpoint without claiming it (Flink's default
    // restore mode, NO_CLAIM): its files belong to that job, never deleted by this one.
    unowned: BTreeSet<CheckpointId>,
    trigger_at: Option<Instant>,
    // A periodic trigger `max-concurrent-checkpoints` held back: it fires as soon as a
    // checkpoint leaves and the min pause has passed (Flink's queued checkpoint request).
    queued: bool,
    last_completion_at: Option<Instant>,
    failures_consecutive: u32,
    outputs: VecDeque<Output>,
    counters: CoordinatorCounters,
    // A savepoint asked for while checkpoints were in flight: it triggers once none is, and
    // no periodic checkpoint triggers meanwhile, so a savepoint never runs beside another.
    savepoint_waiting: Option<SavepointInfo>,
    max_parallelism: u32,
}

/// Why a savepoint cannot be taken now (what `flink savepoint` answers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SavepointRefused {
    /// The job's tasks are not all running.
    #[error("the job is not running (its tasks are being deployed or failing over)")]
    NotRunning,
    /// Another savepoint is in progress.
    #[error("savepoint {0} is already in progress")]
    InProgress(String),
}

impl CheckpointCoordinator {
    /// A coordinator with `config`; idle until `start`.
    pub fn new(config: CheckpointConfig) -> Self {
        config
            .validate()
            .expect("the scenario loader validated the checkpoint config");
        CheckpointCoordinator {
            config,
            checkpoint_id_next: CheckpointId(1),
            tasks: BTreeSet::new(),
            running: false,
            pending: BTreeMap::new(),
            completed: VecDeque::new(),
            unowned: BTreeSet::new(),
            trigger_at: None,
            queued: false,
            last_completion_at: None,
            failures_consecutive: 0,
            outputs: VecDeque::new(),
            counters: CoordinatorCounters::default(),
            savepoint_waiting: None,
            max_parallelism: 0,
        }
    }

    /// Records the job's number of key groups in the `_metadata` of every snapshot.
    pub fn set_max_parallelism(&mut self, max_parallelism: u32) {
        assert!(max_parallelism > 0);
        self.max_parallelism = max_parallelism;
    }

    /// A coordinator of a recovered job (Flink's completed checkpoint store read back from
    /// high availability): `restored` are the retained checkpoints, oldest first, and ids
    /// start at `first_checkpoint_id`, above any id an earlier leader used.
    pub fn recovered(
        config: CheckpointConfig,
        first_checkpoint_id: CheckpointId,
        restored: Vec<CompletedCheckpoint>,
    ) -> Self {
        assert!(
            restored
                .windows(2)
                .all(|w| w[0].checkpoint_id < w[1].checkpoint_id),
            "restored checkpoints are oldest first"
        );
        assert!(restored
            .last()
            .is_none_or(|newest| newest.checkpoint_id < first_checkpoint_id));
        let mut coordinator = CheckpointCoordinator::new(config);
        coordinator.checkpoint_id_next = first_checkpoint_id;
        // A stop-with-savepoint's savepoint is the user's: never deleted by retention.
        coordinator.unowned = restored
            .iter()
            .filter(|c| c.savepoint.is_some())
            .map(|c| c.checkpoint_id)
            .collect();
        coordinator.completed = restored.into();
        coordinator
    }

    /// A coordinator of a new job started from another job's retained checkpoint
    /// (`flink run -s`), which it does not own (NO_CLAIM): the first deployment restores it,
    /// retention never deletes its files, and ids start at `first_checkpoint_id`.
    pub fn restored_from(
        config: CheckpointConfig,
        first_checkpoint_id: CheckpointId,
        checkpoint: CompletedCheckpoint,
    ) -> Self {
        let checkpoint_id = checkpoint.checkpoint_id;
        let mut coordinator =
            CheckpointCoordinator::recovered(config, first_checkpoint_id, vec![checkpoint]);
        coordinator.unowned.insert(checkpoint_id);
        coordinator
    }

    /// Deletes a checkpoint's files, unless another job owns them.
    fn discard(&mut self, checkpoint_id: CheckpointId) {
        if !self.unowned.contains(&checkpoint_id) {
            self.outputs.push_back(Output::Discard(checkpoint_id));
        }
    }

    /// The job's tasks are all running: schedule periodic triggers.
    pub fn start(&mut self, now: Instant, tasks: BTreeSet<SubtaskId>) {
        assert!(!self.running, "start follows stop");
        assert!(self.pending.is_empty());
        assert!(!tasks.is_empty());
        self.tasks = tasks;
        self.running = true;
        self.trigger_at = self.config.interval.map(|interval| now.add(interval));
    }

    /// The job is failing over, finishing or finished: abort what is pending, trigger no more.
    pub fn stop(&mut self, now: Instant) {
        self.queued = false; // Before the aborts, which would release it.
        if self.savepoint_waiting.take().is_some() {
            self.outputs.push_back(Output::SavepointFailed {
                checkpoint_id: None,
                reason: "the job stopped running before it triggered".to_string(),
            });
        }
        let pending: Vec<CheckpointId> = self.pending.keys().copied().collect();
        for checkpoint_id in pending {
            self.abort(now, checkpoint_id, AbortCause::JobFailover);
        }
        self.running = false;
        self.trigger_at = None;
        self.queued = false;
        assert!(self.pending.is_empty());
    }

    /// The job ended (`finished`, else `failed` or cancelled): checkpointing stops for good and
    /// the retained checkpoints are discarded unless the retention policy keeps them (Flink's
    /// completed checkpoint store shut down with a globally terminal status). Returns the ids
    /// kept and the ids discarded.
    pub fn shut_down(
        &mut self,
        now: Instant,
        finished: bool,
        failed: bool,
    ) -> (Vec<CheckpointId>, Vec<CheckpointId>) {
        self.stop(now);
        let ids: Vec<CheckpointId> = self.completed.iter().map(|c| c.checkpoint_id).collect();
        if self.config.retention.keeps(finished, failed) {
            return (ids, Vec::new());
        }
        self.completed.clear();
        let (kept, discarded): (Vec<CheckpointId>, Vec<CheckpointId>) =
            ids.into_iter().partition(|id| self.unowned.contains(id));
        for checkpoint_id in &discarded {
            self.discard(*checkpoint_id);
        }
        (kept, discarded)
    }

    /// The earliest deadline: a trigger or a checkpoint expiring.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self
            .pending
            .values()
            .map(|p| p.created_at.add(self.config.timeout))
            .min();
        [self.trigger_at, expiry].into_iter().flatten().min()
    }

    /// Fires whatever is due at `now`; an early call does nothing.
    pub fn on_timeout(&mut self, now: Instant) {
        let expired: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.created_at.add(self.config.timeout) <= now)
            .map(|(checkpoint_id, _)| *checkpoint_id)
            .collect();
        for checkpoint_id in expired {
            self.abort(now, checkpoint_id, AbortCause::Expired);
        }
        if self.trigger_at.is_some_and(|at| at <= now) {
            self.trigger_periodic(now);
        }
    }

    fn trigger_periodic(&mut self, now: Instant) {
        let interval = self
            .config
            .interval
            .expect("a trigger timer implies an interval");
        let in_flight = self.pending.len() as u32;
        if self.savepoint_waiting.is_some() || self.savepoint_pending().is_some() {
            // Held until the savepoint leaves (`release_queued`).
            self.counters.triggers_skipped += 1;
            self.queued = true;
            self.trigger_at = None;
            return;
        }
        let pause_over_at = self
            .last_completion_at
            .map(|at| at.add(self.config.min_pause));
        if in_flight >= self.config.max_concurrent_effective() {
            // Queued: the checkpoint that leaves next releases it (`release_queued`).
            self.counters.triggers_skipped += 1;
            self.queued = true;
            self.trigger_at = None;
            return;
        }
        if let Some(pause_over_at) = pause_over_at.filter(|at| *at > now) {
            self.counters.triggers_skipped += 1;
            self.trigger_at = Some(pause_over_at);
            return;
        }
        self.trigger_at = Some(now.add(interval));
        self.trigger(now, SnapshotType::Checkpoint);
    }

    /// The pending savepoint, if one is in flight.
    fn savepoint_pending(&self) -> Option<CheckpointId> {
        self.pending
            .iter()
            .find(|(_, pending)| pending.snapshot.is_savepoint())
            .map(|(checkpoint_id, _)| *checkpoint_id)
    }

    /// The user asks for a savepoint (`flink savepoint`, or `flink stop` when `terminate`):
    /// aligned, and alone. It triggers at once when no checkpoint is in flight, else as soon
    /// as none is; periodic checkpoints wait for it.
    pub fn trigger_savepoint(
        &mut self,
        now: Instant,
        savepoint: SavepointInfo,
    ) -> Result<(), SavepointRefused> {
        if !self.running {
            return Err(SavepointRefused::NotRunning);
        }
        if let Some(checkpoint_id) = self.savepoint_pending() {
            return Err(SavepointRefused::InProgress(checkpoint_id.to_string()));
        }
        if self.savepoint_waiting.is_some() {
            return Err(SavepointRefused::InProgress("(waiting)".to_string()));
        }
        if self.pending.is_empty() {
            self.trigger(now, savepoint.snapshot_type());
        } else {
            self.savepoint_waiting = Some(savepoint);
        }
        Ok(())
    }

    /// A checkpoint left (completed or aborted): a queued trigger fires now, or when the min
    /// pause is over.
    fn release_queued(&mut self, now: Instant) {
        if self.running && self.pending.is_empty() {
            if let Some(savepoint) = self.savepoint_waiting.take() {
                return self.trigger(now, savepoint.snapshot_type());
            }
        }
        if !(self.queued && self.running) || self.savepoint_pending().is_some() {
            return;
        }
        self.queued = false;
        let pause_over_at = self
            .last_completion_at
            .map(|at| at.add(self.config.min_pause))
            .filter(|at| *at > now);
        match pause_over_at {
            Some(at) => self.trigger_at = Some(at),
            None => self.trigger_periodic(now),
        }
    }

    fn trigger(&mut self, now: Instant, snapshot: SnapshotType) {
        assert!(self.running);
        assert!(
            !snapshot.is_savepoint() || self.pending.is_empty(),
            "a savepoint runs alone"
        );
        let checkpoint_id = self.checkpoint_id_next;
        self.checkpoint_id_next = CheckpointId(checkpoint_id.0 + 1);
        if snapshot.terminates() {
            // Stop-with-savepoint: nothing triggers after it (a failure resumes the triggers).
            self.trigger_at = None;
            self.queued = false;
        }
        let pending = PendingCheckpoint {
            snapshot,
            created_at: now,
            tasks_waiting: self.tasks.clone(),
            acks: BTreeMap::new(),
            metadata_writing: false,
        };
        assert!(self.pending.insert(checkpoint_id, pending).is_none());
        self.counters.triggered += 1;
        self.outputs.push_back(Output::Trigger {
            checkpoint_id,
            timestamp: now,
            snapshot,
        });
    }

    /// A task finished: Flink (before FLIP-147) declines checkpoints once tasks finished, so
    /// no more are triggered and pending ones are aborted.
    pub fn on_task_finished(&mut self, now: Instant, subtask: SubtaskId) {
        if !self.running || !self.tasks.contains(&subtask) {
            return;
        }
        self.trigger_at = None;
        self.queued = false; // Before the aborts, which would release it.
        let pending: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.tasks_waiting.contains(&subtask))
            .map(|(id, _)| *id)
            .collect();
        for checkpoint_id in pending {
            self.abort(
                now,
                checkpoint_id,
                AbortCause::Declined(DeclineReason::TaskNotRunning),
            );
        }
        self.trigger_at = None;
    }

    /// A task acknowledged `checkpoint_id`.
    pub fn on_ack(
        &mut self,
        now: Instant,
        subtask: SubtaskId,
        checkpoint_id: CheckpointId,
        ack: TaskAck,
    ) {
        let Some(pending) = self.pending.get_mut(&checkpoint_id) else {
            // Late ack of an aborted checkpoint: expected; its file was written after the
            // abort discarded the others (Flink's discardSubtaskState).
            self.counters.acks_ignored += 1;
            if !self.is_retained(checkpoint_id) {
                self.outputs.push_back(Output::Discard(checkpoint_id));
            }
            return;
        };
        if !pending.tasks_waiting.remove(&subtask) {
            self.counters.acks_ignored += 1;
            return;
        }
        pending.acks.insert(subtask, ack);
        if pending.tasks_waiting.is_empty() {
            assert_eq!(pending.acks.len(), self.tasks.len());
            pending.metadata_writing = true;
            let savepoint = match pending.snapshot {
                SnapshotType::Checkpoint => None,
                SnapshotType::Savepoint { format, terminate } => {
                    Some(SavepointInfo { format, terminate })
                }
            };
            let completed = CompletedCheckpoint {
                checkpoint_id,
                created_at: pending.created_at,
                acked_at: now,
                acks: pending.acks.clone(),
                max_parallelism: self.max_parallelism,
                savepoint,
            };
            self.outputs.push_back(Output::WriteMetadata(completed));
        }
    }

    /// A task declined `checkpoint_id`.
    pub fn on_decline(&mut self, now: Instant, checkpoint_id: CheckpointId, reason: DeclineReason) {
        if self.pending.contains_key(&checkpoint_id) {
            self.abort(now, checkpoint_id, AbortCause::Declined(reason));
        }
    }

    /// The `_metadata` of `checkpoint_id` is durable: the checkpoint is complete.
    pub fn on_metadata_written(&mut self, now: Instant, checkpoint: CompletedCheckpoint) {
        let checkpoint_id = checkpoint.checkpoint_id;
        let Some(pending) = self.pending.remove(&checkpoint_id) else {
            // Aborted while its `_metadata` was being written: that file landed after the
            // abort discarded the rest.
            self.outputs.push_back(Output::Discard(checkpoint_id));
            return;
        };
        assert!(pending.metadata_writing);
        if let Some(savepoint) = checkpoint.savepoint {
            return self.savepoint_completed(now, checkpoint, savepoint);
        }
        assert!(
            self.completed
                .back()
                .is_none_or(|last| last.checkpoint_id < checkpoint_id),
            "completed ids increase"
        );
        self.completed.push_back(checkpoint);
        while self.completed.len() > self.config.retained as usize {
            let subsumed = self.completed.pop_front().expect("more than retained");
            self.discard(subsumed.checkpoint_id);
        }
        self.last_completion_at = Some(now);
        self.failures_consecutive = 0;
        self.counters.completed += 1;
        self.outputs.push_back(Output::Completed(checkpoint_id));
        let subsumed: Vec<CheckpointId> = self
            .pending
            .range(..checkpoint_id)
            .map(|(id, _)| *id)
            .collect();
        for older in subsumed {
            self.abort(now, older, AbortCause::Subsumed);
        }
        self.release_queued(now);
    }

    /// A savepoint is durable. A plain one is never a failover's restore point (Flink 1.15+:
    /// intermediate savepoints are not used for recovery). Stop-with-savepoint's is (its
    /// completion commits the sinks, so a failure while the job finishes must not go back
    /// before it), but it stays the user's: retention never deletes it. Nothing triggers
    /// after it.
    fn savepoint_completed(
        &mut self,
        now: Instant,
        checkpoint: CompletedCheckpoint,
        savepoint: SavepointInfo,
    ) {
        assert!(self.pending.is_empty(), "a savepoint runs alone");
        let checkpoint_id = checkpoint.checkpoint_id;
        self.counters.completed += 1;
        self.outputs
            .push_back(Output::SavepointCompleted(checkpoint.clone()));
        if !savepoint.terminate {
            return self.release_queued(now);
        }
        self.unowned.insert(checkpoint_id);
        self.completed.push_back(checkpoint);
        while self.completed.len() > self.config.retained as usize {
            let subsumed = self.completed.pop_front().expect("more than retained");
            self.discard(subsumed.checkpoint_id);
        }
        self.last_completion_at = Some(now);
        self.trigger_at = None;
        self.queued = false;
    }

    /// Writing the `_metadata` of `checkpoint_id` failed.
    pub fn on_metadata_failed(
        &mut self,
        now: Instant,
        checkpoint_id: CheckpointId,
        reason: String,
    ) {
        if self.pending.contains_key(&checkpoint_id) {
            self.abort(now, checkpoint_id, AbortCause::MetadataWriteFailed(reason));
        }
    }

    fn abort(&mut self, now: Instant, checkpoint_id: CheckpointId, cause: AbortCause) {
        let removed = self
            .pending
            .remove(&checkpoint_id)
            .expect("abort of a checkpoint that is not pending");
        self.counters.aborted += 1;
        // A failed savepoint fails the user's request, never the job (Flink's failure
        // manager counts checkpoints only).
        let savepoint = removed.snapshot.is_savepoint();
        let counts = cause.counts_as_failure() && !savepoint;
        if savepoint {
            self.outputs.push_back(Output::SavepointFailed {
                checkpoint_id: Some(checkpoint_id),
                reason: format!("{cause:?}"),
            });
            if removed.snapshot.terminates() && self.running && self.config.interval.is_some() {
                // The stop failed: the job runs on, checkpointing as before.
                self.trigger_at.get_or_insert(now);
            }
        }
        self.outputs.push_back(Output::Aborted {
            checkpoint_id,
            cause,
        });
        self.outputs.push_back(Output::Discard(checkpoint_id));
        if counts {
            self.failures_consecutive += 1;
            if self.failures_consecutive > self.config.tolerable_failures {
                self.failures_consecutive = 0;
                self.outputs.push_back(Output::FailJob(format!(
                    "exceeded checkpoint tolerable failure threshold ({}) at checkpoint {checkpoint_id}",
                    self.config.tolerable_failures
                )));
            }
        }
        self.release_queued(now);
    }

    /// Checkpoint `checkpoint_id` cannot be restored: it leaves the retained checkpoints
    /// (its files stay, for inspection). Returns whether it was retained.
    pub fn drop_completed(&mut self, checkpoint_id: CheckpointId) -> bool {
        let before = self.completed.len();
        self.completed.retain(|c| c.checkpoint_id != checkpoint_id);
        self.completed.len() < before
    }

    fn is_retained(&self, checkpoint_id: CheckpointId) -> bool {
        self.completed
            .iter()
            .any(|completed| completed.checkpoint_id == checkpoint_id)
    }

    /// The next queued output.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The id the next trigger takes.
    pub fn next_checkpoint_id(&self) -> CheckpointId {
        self.checkpoint_id_next
    }

    /// The newest completed checkpoint: what a failover restores.
    pub fn latest_completed(&self) -> Option<&CompletedCheckpoint> {
        self.completed.back()
    }

    /// Whether `checkpoint_id` is in flight (not yet completed, not aborted).
    pub fn is_pending(&self, checkpoint_id: CheckpointId) -> bool {
        self.pending.contains_key(&checkpoint_id)
    }

    /// Checkpoints in flight.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Counters for the report.
    pub fn counters(&self) -> CoordinatorCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks() -> BTreeSet<SubtaskId> {
        [SubtaskId::new(0, 0), SubtaskId::new(1, 0)]
            .into_iter()
            .collect()
    }

    fn ack() -> TaskAck {
        TaskAck {
            state: StateHandle::File("p".into()),
            state_size_bytes: 10,
            alignment_duration: Duration::ZERO,
            unaligned: false,
            in_flight_bytes: 0,
            operators: Vec::new(),
            chain: Vec::new(),
        }
    }

    fn config(interval_ms: u64) -> CheckpointConfig {
        CheckpointConfig {
            interval: Some(Duration::from_ms(interval_ms)),
            ..CheckpointConfig::default()
        }
    }

    /// The outputs other than discards (the retention test looks at those).
    fn drain(coordinator: &mut CheckpointCoordinator) -> Vec<Output> {
        drain_all(coordinator)
            .into_iter()
            .filter(|output| !matches!(output, Output::Discard(_)))
            .collect()
    }

    fn drain_all(coordinator: &mut CheckpointCoordinator) -> Vec<Output> {
        std::iter::from_fn(|| coordinator.poll_output()).collect()
    }

    fn discards(outputs: &[Output]) -> Vec<u64> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::Discard(id) => Some(id.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn subsumed_aborted_and_late_written_checkpoints_are_discarded() {
        let mut coordinator = CheckpointCoordinator::new(CheckpointConfig {
            retained: 2,
            ..config(100)
        });
        coordinator.start(Instant::ZERO, tasks());
        for (id, at) in [(1, 100), (2, 200), (3, 300)] {
            coordinator.on_timeout(Instant::from_ms(at));
            drain_all(&mut coordinator);
            for task in tasks() {
                coordinator.on_ack(Instant::from_ms(at + 10), task, CheckpointId(id), ack());
            }
            let outputs = drain_all(&mut coordinator);
            let Some(Output::WriteMetadata(checkpoint)) = outputs.last().cloned() else {
                panic!("all acked: {outputs:?}");
            };
            coordinator.on_metadata_written(Instant::from_ms(at + 20), checkpoint);
            let expected: Vec<u64> = if id == 3 { vec![1] } else { vec![] };
            assert_eq!(
                discards(&drain_all(&mut coordinator)),
                expected,
                "retained 2 at {id}"
            );
        }
        // Checkpoint 4 is in flight when the attempt fails over: aborted, discarded.
        coordinator.on_timeout(Instant::from_ms(400));
        drain_all(&mut coordinator);
        coordinator.stop(Instant::from_ms(410));
        assert_eq!(discards(&drain_all(&mut coordinator)), vec![4]);
        // A subtask's ack of 4 arrives after: its file was written late, discarded again. A
        // stray ack naming a retained checkpoint discards nothing.
        coordinator.on_ack(
            Instant::from_ms(420),
            SubtaskId::new(0, 0),
            CheckpointId(4),
            ack(),
        );
        coordinator.on_ack(
            Instant::from_ms(420),
            SubtaskId::new(0, 0),
            CheckpointId(3),
            ack(),
        );
        assert_eq!(discards(&drain_all(&mut coordinator)), vec![4]);
    }

    #[test]
    fn a_checkpoint_restored_without_claiming_it_is_never_discarded() {
        let other_jobs = CompletedCheckpoint {
            checkpoint_id: CheckpointId(9),
            created_at: Instant::ZERO,
            acked_at: Instant::ZERO,
            acks: tasks().into_iter().map(|t| (t, ack())).collect(),
            max_parallelism: 128,
            savepoint: None,
        };
        let config = CheckpointConfig {
            retained: 1,
            ..config(100)
        };
        let mut coordinator =
            CheckpointCoordinator::restored_from(config, CheckpointId(1_000_001), other_jobs);
        assert_eq!(
            coordinator.latest_completed().map(|c| c.checkpoint_id),
            Some(CheckpointId(9)),
            "the first deployment restores it"
        );
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        drain_all(&mut coordinator);
        complete_all(&mut coordinator, Instant::from_ms(110), 1_000_001);
        // Subsumed by the new job's first checkpoint: dropped, its files left alone.
        assert!(discards(&drain_all(&mut coordinator)).is_empty());
        assert_eq!(
            coordinator.latest_completed().map(|c| c.checkpoint_id),
            Some(CheckpointId(1_000_001))
        );
        coordinator.on_timeout(Instant::from_ms(300));
        drain_all(&mut coordinator);
        complete_all(&mut coordinator, Instant::from_ms(310), 1_000_002);
        assert_eq!(discards(&drain_all(&mut coordinator)), vec![1_000_001]);
    }

    fn complete_all(coordinator: &mut CheckpointCoordinator, now: Instant, checkpoint_id: u64) {
        for task in tasks() {
            coordinator.on_ack(now, task, CheckpointId(checkpoint_id), ack());
        }
        let outputs = drain(coordinator);
        let Some(Output::WriteMetadata(completed)) = outputs.into_iter().last() else {
            panic!("expected metadata write")
        };
        coordinator.on_metadata_written(now, completed);
    }

    const PLAIN: SavepointInfo = SavepointInfo {
        format: SavepointFormat::Canonical,
        terminate: false,
    };

    fn triggers(outputs: &[Output]) -> Vec<(u64, SnapshotType)> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::Trigger {
                    checkpoint_id,
                    snapshot,
                    ..
                } => Some((checkpoint_id.0, *snapshot)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_savepoint_runs_alone_joins_no_retention_and_holds_periodic_triggers_meanwhile() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.set_max_parallelism(128);
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        assert_eq!(
            triggers(&drain(&mut coordinator)),
            vec![(1, SnapshotType::Checkpoint)]
        );
        coordinator
            .trigger_savepoint(Instant::from_ms(120), PLAIN)
            .expect("running");
        assert!(drain(&mut coordinator).is_empty(), "waits for checkpoint 1");
        assert_eq!(
            coordinator.trigger_savepoint(Instant::from_ms(121), PLAIN),
            Err(SavepointRefused::InProgress("(waiting)".into()))
        );
        complete_all(&mut coordinator, Instant::from_ms(150), 1);
        let outputs = drain(&mut coordinator);
        assert_eq!(triggers(&outputs), vec![(2, PLAIN.snapshot_type())]);
        coordinator.on_timeout(Instant::from_ms(200));
        assert!(triggers(&drain(&mut coordinator)).is_empty(), "held");
        complete_all(&mut coordinator, Instant::from_ms(230), 2);
        let outputs = drain(&mut coordinator);
        assert!(
            matches!(&outputs[0], Output::SavepointCompleted(c) if c.checkpoint_id == CheckpointId(2) && c.max_parallelism == 128)
        );
        assert!(
            !outputs.iter().any(|o| matches!(o, Output::Completed(_))),
            "a plain savepoint notifies nothing: {outputs:?}"
        );
        assert_eq!(
            triggers(&outputs),
            vec![(3, SnapshotType::Checkpoint)],
            "released"
        );
        assert_eq!(
            coordinator.latest_completed().map(|c| c.checkpoint_id),
            Some(CheckpointId(1)),
            "no failover restores a plain savepoint"
        );
    }

    #[test]
    fn stop_with_savepoint_is_restored_by_a_failover_but_never_discarded() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.start(Instant::ZERO, tasks());
        let stop = SavepointInfo {
            terminate: true,
            ..PLAIN
        };
        coordinator
            .trigger_savepoint(Instant::from_ms(10), stop)
            .expect("running");
        assert_eq!(
            triggers(&drain(&mut coordinator)),
            vec![(1, stop.snapshot_type())]
        );
        complete_all(&mut coordinator, Instant::from_ms(50), 1);
        coordinator.on_timeout(Instant::from_ms(500));
        let outputs = drain(&mut coordinator);
        assert!(
            triggers(&outputs).is_empty(),
            "nothing after a stop: {outputs:?}"
        );
        assert_eq!(
            coordinator.latest_completed().map(|c| c.checkpoint_id),
            Some(CheckpointId(1))
        );
        let (_, discarded) = coordinator.shut_down(Instant::from_ms(600), true, false);
        assert!(
            discarded.is_empty(),
            "the user's savepoint stays: {discarded:?}"
        );
        assert!(discards(&drain_all(&mut coordinator)).is_empty());
    }

    #[test]
    fn a_savepoints_metadata_names_its_files_relative_to_its_directory() {
        let storage = CheckpointStorageConfig {
            savepoint_dir: Some("savepoints/".into()),
            ..CheckpointStorageConfig::default()
        };
        let directory = storage.savepoint_directory(CheckpointId(7)).expect("a dir");
        assert_eq!(directory, "savepoints/savepoint-7/");
        let (path, kind) = storage
            .snapshot_file(CheckpointId(7), PLAIN.snapshot_type(), SubtaskId::new(1, 0))
            .expect("a dir");
        assert_eq!(
            (path.as_str(), kind),
            (
                "savepoints/savepoint-7/1-0.state",
                crate::codec::FileKind::CanonicalSavepoint
            )
        );
        let mut written = CompletedCheckpoint {
            checkpoint_id: CheckpointId(7),
            created_at: Instant::ZERO,
            acked_at: Instant::ZERO,
            acks: BTreeMap::from([(
                SubtaskId::new(1, 0),
                TaskAck {
                    state: StateHandle::File(path),
                    ..ack()
                },
            )]),
            max_parallelism: 128,
            savepoint: Some(PLAIN),
        };
        let relocatable = written.relocatable(&directory);
        assert_eq!(
            relocatable.acks[&SubtaskId::new(1, 0)].state,
            StateHandle::Relative("1-0.state".into())
        );
        // Moved elsewhere as a whole, it resolves against where its `_metadata` is now.
        let moved = relocatable.resolved("archive/sp7/");
        assert_eq!(
            moved.acks[&SubtaskId::new(1, 0)].state,
            StateHandle::File("archive/sp7/1-0.state".into())
        );
        written.savepoint = None;
        assert_eq!(
            written.relocatable(&directory),
            written,
            "a checkpoint keeps its paths"
        );
    }

    #[test]
    fn a_failed_savepoint_fails_the_request_never_the_job() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.start(Instant::ZERO, tasks());
        coordinator
            .trigger_savepoint(Instant::from_ms(10), PLAIN)
            .expect("running");
        drain(&mut coordinator);
        let reason = DeclineReason::SnapshotFailed("disk full".into());
        coordinator.on_decline(Instant::from_ms(20), CheckpointId(1), reason);
        let outputs = drain(&mut coordinator);
        assert!(outputs.iter().any(|o| matches!(
            o,
            Output::SavepointFailed {
                checkpoint_id: Some(CheckpointId(1)),
                ..
            }
        )));
        assert!(
            !outputs.iter().any(|o| matches!(o, Output::FailJob(_))),
            "{outputs:?}"
        );
        coordinator.stop(Instant::from_ms(30));
        assert_eq!(
            coordinator.trigger_savepoint(Instant::from_ms(40), PLAIN),
            Err(SavepointRefused::NotRunning)
        );
    }

    #[test]
    fn triggers_on_the_interval_and_completes_after_all_acks_and_metadata() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.start(Instant::ZERO, tasks());
        assert_eq!(coordinator.poll_timeout(), Some(Instant::from_ms(100)));
        coordinator.on_timeout(Instant::from_ms(50));
        assert_eq!(
            drain(&mut coordinator),
            vec![],
            "an early timeout does nothing"
        );
        coordinator.on_timeout(Instant::from_ms(100));
        assert_eq!(
            drain(&mut coordinator),
            vec![Output::Trigger {
                checkpoint_id: CheckpointId(1),
                timestamp: Instant::from_ms(100),
                snapshot: SnapshotType::Checkpoint,
            }]
        );
        coordinator.on_ack(
            Instant::from_ms(110),
            SubtaskId::new(0, 0),
            CheckpointId(1),
            ack(),
        );
        assert_eq!(drain(&mut coordinator), vec![]);
        complete_all(&mut coordinator, Instant::from_ms(120), 1);
        assert_eq!(
            drain(&mut coordinator),
            vec![Output::Completed(CheckpointId(1))]
        );
        assert_eq!(
            coordinator.latest_completed().map(|c| c.checkpoint_id),
            Some(CheckpointId(1))
        );
    }

    #[test]
    fn expired_checkpoints_abort_and_fail_the_job_past_the_tolerance() {
        let mut coordinator = CheckpointCoordinator::new(CheckpointConfig {
            timeout: Duration::from_ms(30),
            ..config(100)
        });
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        drain(&mut coordinator);
        assert_eq!(coordinator.poll_timeout(), Some(Instant::from_ms(130)));
        coordinator.on_timeout(Instant::from_ms(130));
        let outputs = drain(&mut coordinator);
        assert_eq!(
            outputs[0],
            Output::Aborted {
                checkpoint_id: CheckpointId(1),
                cause: AbortCause::Expired
            }
        );
        assert!(matches!(outputs[1], Output::FailJob(_)));
        // A late ack for the aborted checkpoint is ignored and counted.
        coordinator.on_ack(
            Instant::from_ms(140),
            SubtaskId::new(0, 0),
            CheckpointId(1),
            ack(),
        );
        assert_eq!(coordinator.counters().acks_ignored, 1);
    }

    #[test]
    fn max_concurrent_and_min_pause_hold_back_triggers() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        coordinator.on_timeout(Instant::from_ms(200));
        let triggers = drain(&mut coordinator)
            .into_iter()
            .filter(|o| matches!(o, Output::Trigger { .. }))
            .count();
        assert_eq!(triggers, 1, "max concurrent 1 skips the second trigger");

        let mut paused = CheckpointCoordinator::new(CheckpointConfig {
            min_pause: Duration::from_ms(500),
            ..config(100)
        });
        paused.start(Instant::ZERO, tasks());
        paused.on_timeout(Instant::from_ms(100));
        drain(&mut paused);
        complete_all(&mut paused, Instant::from_ms(150), 1);
        drain(&mut paused);
        paused.on_timeout(Instant::from_ms(200));
        assert_eq!(drain(&mut paused), vec![]);
        assert_eq!(paused.poll_timeout(), Some(Instant::from_ms(650)));
    }

    /// A trigger held back by `max-concurrent-checkpoints` fires when the checkpoint in
    /// flight completes (after the min pause, if any), not a whole interval later.
    #[test]
    fn a_held_back_trigger_fires_as_soon_as_a_slot_frees() {
        for (min_pause, expected_at) in [(0, 250), (30, 280)] {
            let mut coordinator = CheckpointCoordinator::new(CheckpointConfig {
                min_pause: Duration::from_ms(min_pause),
                ..config(100)
            });
            coordinator.start(Instant::ZERO, tasks());
            coordinator.on_timeout(Instant::from_ms(100));
            drain(&mut coordinator);
            coordinator.on_timeout(Instant::from_ms(200));
            assert_eq!(drain(&mut coordinator), vec![], "checkpoint 1 is in flight");
            complete_all(&mut coordinator, Instant::from_ms(250), 1);
            let mut outputs = drain(&mut coordinator);
            if min_pause > 0 {
                assert!(
                    !outputs.iter().any(|o| matches!(o, Output::Trigger { .. })),
                    "{outputs:?}"
                );
                assert_eq!(
                    coordinator.poll_timeout(),
                    Some(Instant::from_ms(expected_at))
                );
                coordinator.on_timeout(Instant::from_ms(expected_at));
                outputs = drain(&mut coordinator);
            }
            let trigger = Output::Trigger {
                checkpoint_id: CheckpointId(2),
                timestamp: Instant::from_ms(expected_at),
                snapshot: SnapshotType::Checkpoint,
            };
            assert!(
                outputs.contains(&trigger),
                "min pause {min_pause}: {outputs:?}"
            );
            assert_eq!(
                coordinator.poll_timeout(),
                Some(Instant::from_ms(expected_at + 100))
            );
        }
    }

    #[test]
    fn completion_subsumes_older_pending_checkpoints() {
        let mut coordinator = CheckpointCoordinator::new(CheckpointConfig {
            max_concurrent: 2,
            ..config(100)
        });
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        coordinator.on_timeout(Instant::from_ms(200));
        drain(&mut coordinator);
        complete_all(&mut coordinator, Instant::from_ms(250), 2);
        let outputs = drain(&mut coordinator);
        assert_eq!(
            outputs,
            vec![
                Output::Completed(CheckpointId(2)),
                Output::Aborted {
                    checkpoint_id: CheckpointId(1),
                    cause: AbortCause::Subsumed
                }
            ]
        );
    }

    #[test]
    fn stop_aborts_pending_without_counting_failures_and_ids_keep_growing() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        drain(&mut coordinator);
        coordinator.stop(Instant::from_ms(120));
        assert_eq!(
            drain(&mut coordinator),
            vec![Output::Aborted {
                checkpoint_id: CheckpointId(1),
                cause: AbortCause::JobFailover
            }]
        );
        assert_eq!(coordinator.poll_timeout(), None);
        coordinator.start(Instant::from_ms(200), tasks());
        coordinator.on_timeout(Instant::from_ms(300));
        assert_eq!(
            drain(&mut coordinator),
            vec![Output::Trigger {
                checkpoint_id: CheckpointId(2),
                timestamp: Instant::from_ms(300),
                snapshot: SnapshotType::Checkpoint,
            }]
        );
    }

    #[test]
    fn declines_count_toward_tolerance_only_when_the_snapshot_failed() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        drain(&mut coordinator);
        coordinator.on_decline(
            Instant::from_ms(110),
            CheckpointId(1),
            DeclineReason::TaskNotRunning,
        );
        let outputs = drain(&mut coordinator);
        assert_eq!(
            outputs.len(),
            1,
            "no FailJob for a finished task: {outputs:?}"
        );
        coordinator.on_timeout(Instant::from_ms(200));
        drain(&mut coordinator);
        coordinator.on_decline(
            Instant::from_ms(210),
            CheckpointId(2),
            DeclineReason::SnapshotFailed("disk".into()),
        );
        assert!(matches!(
            drain(&mut coordinator).last(),
            Some(Output::FailJob(_))
        ));
    }

    #[test]
    fn a_finished_task_stops_triggering() {
        let mut coordinator = CheckpointCoordinator::new(config(100));
        coordinator.start(Instant::ZERO, tasks());
        coordinator.on_timeout(Instant::from_ms(100));
        drain(&mut coordinator);
        coordinator.on_task_finished(Instant::from_ms(150), SubtaskId::new(0, 0));
        let outputs = drain(&mut coordinator);
        assert!(matches!(
            outputs[0],
            Output::Aborted {
                cause: AbortCause::Declined(_),
                ..
            }
        ));
        assert_eq!(coordinator.poll_timeout(), None);
    }
}
