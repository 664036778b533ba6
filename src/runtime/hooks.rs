//! What the engine tells, and asks, whoever runs it (DESIGN §1: the one rule of direction).
//!
//! The engine reports what happens as structured `EngineEvent`s and asks `RunHooks` at the few
//! points where an injected fault may act (a record begins, a completion notice travels, a data
//! frame crosses a link, a sink is about to record a commit). The simulation harness implements
//! the trait: it records, hashes and renders the events and injects its faults through the
//! answers. The engine never names the harness; a run without faults answers "nothing".

use crate::checkpoint::barrier::SavepointFormat;
use crate::checkpoint::barrier_protocol::AbortReason;
use crate::checkpoint::coordinator::{AbortCause, CompletedCheckpoint};
use crate::checkpoint::state_assignment::StateAssignment;
use crate::ids::{AttemptNumber, CheckpointId, SubtaskId, TaskManagerId};
use crate::runtime::leadership::LeaderTerm;
use crate::state::snapshot::KeyedStateSnapshot;
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The hooks of one run, shared by every node.
pub type Hooks = Arc<dyn RunHooks>;

/// The engine's side of the interface to whoever runs it.
pub trait RunHooks: Send + Sync {
    /// Something happened on `node` (`jobmanager`, `taskmanager-2`).
    fn event(&self, node: &str, event: EngineEvent);
    /// The probe through which `subtask` counts its records (one per subtask for the whole
    /// run, every attempt sharing it).
    fn record_probe(&self, subtask: SubtaskId) -> Arc<RecordProbe>;
    /// `subtask` begins its `count`-th record (over the run), and the probe asked for it.
    fn on_record_begin(&self, subtask: SubtaskId, count: u64) -> RecordFate;
    /// Processing time added per record to a chain of these operator uids at `now`.
    fn slowdown(&self, uids: &[String], now: Instant) -> Duration;
    /// What becomes of a checkpoint-completion notice on its way into `subtask`; `repeat`
    /// is the job manager's repetition of the final checkpoint's notice.
    fn notice_fate(&self, subtask: SubtaskId, now: Instant, repeat: bool) -> NoticeFate;
    /// Latency added to a data frame from `source` to `target` sent at `now`.
    fn link_latency(&self, source: IpAddr, target: IpAddr, now: Instant) -> Duration;
    /// A committing sink is about to record `checkpoint_id` as committed: whether a fault
    /// fires here (the sink then yields so the fault lands first).
    fn on_before_commit(&self, subtask: SubtaskId, checkpoint_id: CheckpointId) -> bool;
}

/// A subtask's record count and from which count on the harness wants to hear of each
/// record. A record the harness does not want costs two atomic operations, no lock and no
/// call (the per-record path with no fault armed).
#[derive(Debug)]
pub struct RecordProbe {
    begun: AtomicU64,
    attend_from: AtomicU64,
}

impl Default for RecordProbe {
    fn default() -> Self {
        RecordProbe {
            begun: AtomicU64::new(0),
            attend_from: AtomicU64::new(u64::MAX),
        }
    }
}

impl RecordProbe {
    /// A record begins: its count over the run, if the harness wants to hear of it.
    pub fn begin(&self) -> Option<u64> {
        let count = self.begun.fetch_add(1, Ordering::Relaxed) + 1;
        (count >= self.attend_from.load(Ordering::Relaxed)).then_some(count)
    }

    /// The harness wants to hear of every record from `count` on (`u64::MAX`: of none).
    pub fn attend_from(&self, count: u64) {
        self.attend_from.store(count, Ordering::Relaxed);
    }

    /// Records begun so far.
    pub fn begun(&self) -> u64 {
        self.begun.load(Ordering::Relaxed)
    }
}

/// What the hooks decide when a record begins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordFate {
    /// The record fails, as an exception in user code would.
    pub fail: bool,
    /// A fault fired on this record: the task yields so it lands while the record is in
    /// processing.
    pub fault_fired: bool,
}

/// What becomes of a checkpoint-completion notice on its way into a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeFate {
    /// It arrives now.
    Deliver,
    /// It is lost.
    Lost,
    /// It arrives this much later.
    Delayed(Duration),
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every task finished.
    Finished,
    /// The restart strategy gave up.
    Failed(String),
    /// Cancelled.
    Canceled,
}

/// Why the job manager gave a task manager up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskManagerLoss {
    /// No heartbeat within `heartbeat.timeout`.
    NoHeartbeat {
        /// The timeout.
        timeout: Duration,
    },
    /// It registered again as a new process: the old one and its tasks are gone.
    Restarted,
}

/// Everything the engine reports, in the order it happens. `Display` renders the trace line.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    /// The job manager started the job.
    JobStarted {
        /// The job's name.
        job: String,
    },
    /// A job manager was elected leader by the high-availability service.
    LeaderElected {
        /// Its term (its fencing token).
        term: LeaderTerm,
    },
    /// The new leader recovered the job from the high-availability service.
    JobRecovered {
        /// The job's name.
        job: String,
        /// The leader's term.
        term: LeaderTerm,
        /// The retained checkpoint it restores, read from its `_metadata`; `None` starts over.
        checkpoint_id: Option<CheckpointId>,
    },
    /// A new leader deleted checkpoint directories no leader retains any more (subsumed or in
    /// flight when an earlier leader died, before it could delete them).
    OrphanedCheckpointsRemoved {
        /// The checkpoints.
        checkpoint_ids: Vec<CheckpointId>,
    },
    /// A job manager started and knows no job to run: without high availability, the job
    /// of a job manager that died is lost with it.
    NoJobToRecover {
        /// Why.
        reason: String,
    },
    /// A job manager learned that a newer leader took over: it stops leading.
    LeadershipLost {
        /// Its term.
        term: LeaderTerm,
        /// The leader's.
        current: LeaderTerm,
    },
    /// Another job manager leads with a live lease: this one stands by.
    StandingBy {
        /// The leader.
        leader: String,
        /// Its term.
        term: LeaderTerm,
    },
    /// A task manager refused a message of a deposed leader.
    StaleLeaderFenced {
        /// The sender's term.
        term: LeaderTerm,
        /// The term followed.
        current: LeaderTerm,
    },
    /// A task manager follows a new leader and cancelled the tasks of the old one.
    NewLeaderFollowed {
        /// The new term.
        term: LeaderTerm,
        /// Tasks cancelled.
        cancelled: usize,
    },
    /// A task manager registered.
    TaskManagerRegistered {
        /// Which.
        taskmanager: TaskManagerId,
        /// Its slots.
        slots: u32,
    },
    /// The job manager gave a task manager up.
    TaskManagerLost {
        /// Which.
        taskmanager: TaskManagerId,
        /// Why.
        loss: TaskManagerLoss,
    },
    /// The job manager deploys an attempt.
    Deploying {
        /// The attempt.
        attempt: AttemptNumber,
        /// Task managers it deploys to.
        taskmanagers: usize,
        /// The checkpoint it restores, if any.
        restore: Option<CheckpointId>,
        /// The tasks a region failover redeploys (`None`: every task of the job).
        region: Option<Vec<SubtaskId>>,
    },
    /// A new job was submitted from a retained checkpoint of an earlier job
    /// (`flink run -s <path>`).
    JobRestoredFromCheckpoint {
        /// The job's name.
        job: String,
        /// The checkpoint or savepoint it restores.
        checkpoint_id: CheckpointId,
        /// Its `_metadata`.
        path: String,
        /// Whether it is a savepoint.
        savepoint: bool,
        /// How its state maps onto the job's operators.
        assignment: StateAssignment,
    },
    /// A savepoint was triggered (by the user, or by stop-with-savepoint).
    SavepointTriggered {
        /// Its id (from the checkpoint ids).
        checkpoint_id: CheckpointId,
        /// Canonical or native.
        format: SavepointFormat,
        /// Whether it stops the job.
        terminate: bool,
    },
    /// A savepoint is durable: its `_metadata` is in its directory.
    SavepointCompleted {
        /// Its metadata (files as written, not relative).
        checkpoint: CompletedCheckpoint,
        /// Its directory.
        directory: String,
    },
    /// A savepoint asked for did not complete (or the stop it belongs to failed after it).
    SavepointFailed {
        /// Its id, if it was triggered.
        checkpoint_id: Option<CheckpointId>,
        /// Why.
        reason: String,
    },
    /// Stop-with-savepoint with drain: the sources are told to end their input.
    DrainingSources,
    /// The tasks a region failover redeployed all run: the job is whole again.
    RegionsRunning {
        /// The attempt that redeployed them.
        attempt: AttemptNumber,
        /// The tasks.
        tasks: Vec<SubtaskId>,
    },
    /// Every task of the attempt runs.
    JobRunning {
        /// The attempt.
        attempt: AttemptNumber,
    },
    /// Every task finished.
    JobFinished {
        /// The attempt that finished.
        attempt: AttemptNumber,
    },
    /// The job was cancelled.
    JobCanceled {
        /// The attempt cancelled.
        attempt: AttemptNumber,
    },
    /// What became of the retained checkpoints when the job ended.
    CheckpointsAtJobEnd {
        /// Kept (externalized).
        kept: Vec<CheckpointId>,
        /// Deleted.
        discarded: Vec<CheckpointId>,
        /// `externalized-checkpoint-retention`.
        policy: &'static str,
    },
    /// The job fails over.
    FailingOver {
        /// The attempt that failed.
        attempt: AttemptNumber,
        /// Why.
        reason: String,
        /// The tasks a region failover restarts (`None`: every task of the job).
        region: Option<Vec<SubtaskId>>,
    },
    /// The restart strategy restarts the job. The times are the job master's own (its clock
    /// when it failed over, and the redeployment time the strategy chose); the trace shows
    /// neither, events are stamped when the harness hears of them.
    Restarting {
        /// When the job master failed the attempt over.
        failed_at: Instant,
        /// When the strategy lets it redeploy.
        restart_at: Instant,
    },
    /// The restart strategy gave up: the job failed.
    JobFailed {
        /// When the job master failed the attempt over (its own clock).
        failed_at: Instant,
        /// The last attempt.
        attempt: AttemptNumber,
        /// The failure that ended it.
        reason: String,
        /// Why the strategy gave up.
        why: String,
    },
    /// Every source read all its input: the next checkpoint is the final one.
    AllSourcesAtEnd,
    /// A report the final-checkpoint tracker refused.
    EndOfDataIgnored {
        /// Why.
        error: String,
    },
    /// The coordinator triggered a checkpoint.
    CheckpointTriggered {
        /// Which.
        checkpoint_id: CheckpointId,
        /// Whether it is the final checkpoint.
        final_checkpoint: bool,
    },
    /// A checkpoint completed.
    CheckpointCompleted {
        /// Its metadata.
        checkpoint: CompletedCheckpoint,
    },
    /// The coordinator aborted a checkpoint.
    CheckpointAborted {
        /// Which.
        checkpoint_id: CheckpointId,
        /// Why.
        cause: AbortCause,
    },
    /// A task could not read a retained checkpoint (a file corrupt or missing): it is never
    /// restored; recovery falls back to `fallback`, or the job fails.
    CheckpointUnusable {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Why, naming the file.
        reason: String,
        /// The newest intact retained checkpoint, if any.
        fallback: Option<CheckpointId>,
    },
    /// Deleting a discarded checkpoint's files failed; they stay behind.
    CheckpointDiscardFailed {
        /// Which.
        checkpoint_id: CheckpointId,
        /// Why.
        error: String,
    },
    /// A control message nobody expected (a correct system may produce some: stale attempts).
    UnexpectedMessage {
        /// The message, as `Debug` renders it.
        message: String,
    },
    /// A task manager process started.
    TaskManagerStarted {
        /// Its slots.
        slots: u32,
    },
    /// A task manager stopped hearing the job manager and cancelled its tasks.
    JobManagerLost {
        /// `heartbeat.timeout`.
        timeout: Duration,
        /// The newest attempt it cancelled (and every older one).
        attempt: AttemptNumber,
    },
    /// A completion notice to a task was lost.
    NoticeLost {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// The task.
        subtask: SubtaskId,
    },
    /// A task runs.
    TaskRunning {
        /// The task.
        subtask: SubtaskId,
        /// Its attempt.
        attempt: AttemptNumber,
        /// The checkpoint it restored, if any.
        restored: Option<CheckpointId>,
    },
    /// A task restored in-flight records (unaligned channel state) and replays them first.
    InFlightReplayed {
        /// The task.
        subtask: SubtaskId,
        /// How many records.
        records: u64,
    },
    /// A task's barrier handler aborted a checkpoint.
    TaskAbortedCheckpoint {
        /// The task.
        subtask: SubtaskId,
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Why.
        reason: AbortReason,
    },
    /// A source read all its input and waits for the final checkpoint.
    SourceAwaitsFinalCheckpoint {
        /// The source task.
        subtask: SubtaskId,
    },
    /// A task finished; its final keyed state goes with it.
    TaskFinished {
        /// The task.
        subtask: SubtaskId,
        /// Its attempt.
        attempt: AttemptNumber,
        /// Records it read.
        records_in: u64,
        /// Records it emitted.
        records_out: u64,
        /// Records its sink wrote.
        records_written: u64,
        /// Final keyed state per operator uid.
        keyed: BTreeMap<String, KeyedStateSnapshot>,
    },
    /// A task failed.
    TaskFailed {
        /// The task.
        subtask: SubtaskId,
        /// Its attempt.
        attempt: AttemptNumber,
        /// Why.
        reason: String,
    },
    /// A sink did something outside the job (`label` names it: `sink#0`).
    Sink {
        /// The sink subtask as users name it.
        label: String,
        /// What it did.
        action: SinkAction,
    },
}

/// What a sink did outside the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkAction {
    /// A recovering two-phase-commit sink aborted the transactions earlier attempts left
    /// open, fencing their producers.
    FencedLingering {
        /// How many transactions.
        count: u64,
        /// The first of them.
        first: String,
    },
    /// It committed a transaction.
    Committed {
        /// The transactional id.
        transactional_id: String,
        /// Records in it.
        records: u64,
        /// The checkpoint it belongs to.
        checkpoint_id: CheckpointId,
    },
    /// It could not commit a pre-committed transaction: its records are lost.
    CommitLost {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Why.
        error: String,
        /// Records lost.
        records: u64,
    },
    /// A write-ahead sink wrote a checkpoint's batch and recorded it.
    BatchWritten {
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Records in it.
        records: u64,
    },
}

impl fmt::Display for TaskManagerLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskManagerLoss::NoHeartbeat { timeout } => {
                write!(f, "lost: no heartbeat for {timeout}")
            }
            TaskManagerLoss::Restarted => write!(f, "restarted: its previous instance is gone"),
        }
    }
}

impl fmt::Display for EngineEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineEvent::JobStarted { job } => write!(f, "started job `{job}`"),
            EngineEvent::LeaderElected { term } => write!(f, "elected leader, {term}"),
            EngineEvent::JobRecovered {
                job,
                term,
                checkpoint_id: Some(id),
            } => write!(
                f,
                "{term} recovered job `{job}` from checkpoint {id} (its _metadata)"
            ),
            EngineEvent::JobRecovered {
                job,
                term,
                checkpoint_id: None,
            } => write!(
                f,
                "{term} recovered job `{job}` with no retained checkpoint: it starts over"
            ),
            EngineEvent::NoJobToRecover { reason } => write!(f, "no job to run: {reason}"),
            EngineEvent::OrphanedCheckpointsRemoved { checkpoint_ids } => {
                let ids: Vec<String> = checkpoint_ids.iter().map(|id| id.to_string()).collect();
                write!(
                    f,
                    "deleted the directories of checkpoints no leader retains: {}",
                    ids.join(", ")
                )
            }
            EngineEvent::LeadershipLost { term, current } => {
                write!(f, "{term} deposed by {current}: stops leading")
            }
            EngineEvent::StaleLeaderFenced { term, current } => {
                write!(f, "refused a message of {term}: following {current}")
            }
            EngineEvent::NewLeaderFollowed { term, cancelled } => write!(
                f,
                "follows the leader of {term}; cancelled {cancelled} task(s) of the old leader"
            ),
            EngineEvent::TaskManagerRegistered { taskmanager, slots } => {
                write!(f, "{taskmanager} registered with {slots} slot(s)")
            }
            EngineEvent::TaskManagerLost { taskmanager, loss } => write!(f, "{taskmanager} {loss}"),
            EngineEvent::Deploying {
                attempt,
                taskmanagers,
                restore,
                region,
            } => {
                write!(f, "deploying {attempt} to {taskmanagers} task manager(s)")?;
                if let Some(checkpoint_id) = restore {
                    write!(f, " from checkpoint {checkpoint_id}")?;
                }
                match region {
                    Some(tasks) => write!(f, ": the tasks {}", subtask_list(tasks)),
                    None => Ok(()),
                }
            }
            EngineEvent::JobRunning { attempt } => write!(f, "job running in {attempt}"),
            EngineEvent::JobRestoredFromCheckpoint {
                job,
                checkpoint_id,
                path,
                savepoint,
                assignment,
            } => {
                let what = if *savepoint { "savepoint" } else { "checkpoint" };
                write!(
                    f,
                    "submitted job `{job}` from {what} {checkpoint_id} ({path}), not claiming it"
                )?;
                for (uid, (old, new)) in &assignment.rescaled {
                    if old != new {
                        write!(f, "; `{uid}` rescaled {old} -> {new}")?;
                    }
                }
                for uid in &assignment.dropped {
                    write!(f, "; state of `{uid}` dropped")?;
                }
                for uid in &assignment.empty {
                    write!(f, "; `{uid}` starts empty")?;
                }
                Ok(())
            }
            EngineEvent::SavepointTriggered {
                checkpoint_id,
                format,
                terminate,
            } => {
                let what = if *terminate { "stop-with-savepoint" } else { "savepoint" };
                write!(f, "{what} {checkpoint_id} triggered ({})", format.name())
            }
            EngineEvent::SavepointCompleted {
                checkpoint,
                directory,
            } => write!(
                f,
                "savepoint {} completed: {directory} ({} bytes)",
                checkpoint.checkpoint_id,
                checkpoint.state_size_bytes()
            ),
            EngineEvent::SavepointFailed {
                checkpoint_id,
                reason,
            } => match checkpoint_id {
                Some(id) => write!(f, "savepoint {id} failed: {reason}"),
                None => write!(f, "savepoint failed: {reason}"),
            },
            EngineEvent::DrainingSources => write!(f, "stop with drain: sources end their input"),
            EngineEvent::StandingBy { leader, term } => {
                write!(f, "standing by: {leader} leads in {term}")
            }
            EngineEvent::RegionsRunning { attempt, tasks } => write!(
                f,
                "region failover done: {} running in {attempt}",
                subtask_list(tasks)
            ),
            EngineEvent::JobFinished { attempt } => write!(f, "job finished in {attempt}"),
            EngineEvent::JobCanceled { attempt } => write!(f, "job cancelled in {attempt}"),
            EngineEvent::CheckpointsAtJobEnd {
                kept,
                discarded,
                policy,
            } => {
                let ids = |ids: &[CheckpointId]| {
                    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
                    if ids.is_empty() {
                        "none".to_string()
                    } else {
                        ids.join(", ")
                    }
                };
                write!(
                    f,
                    "job ended: retained checkpoints kept: {}; deleted: {} ({policy})",
                    ids(kept),
                    ids(discarded)
                )
            }
            EngineEvent::FailingOver {
                attempt,
                reason,
                region,
            } => {
                write!(f, "failing over {attempt}: {reason}")?;
                match region {
                    Some(tasks) => write!(f, "; region failover restarts {}", subtask_list(tasks)),
                    None => Ok(()),
                }
            }
            EngineEvent::Restarting { .. } => write!(f, "restarting"),
            EngineEvent::JobFailed { why, .. } => write!(f, "job failed: {why}"),
            EngineEvent::AllSourcesAtEnd => write!(
                f,
                "every source read all its input: the next checkpoint is the final one"
            ),
            EngineEvent::EndOfDataIgnored { error } => write!(f, "ignored: {error}"),
            EngineEvent::CheckpointTriggered {
                checkpoint_id,
                final_checkpoint,
            } => {
                let note = if *final_checkpoint { " (final)" } else { "" };
                write!(f, "checkpoint {checkpoint_id} triggered{note}")
            }
            EngineEvent::CheckpointCompleted { checkpoint } => write!(
                f,
                "checkpoint {} completed ({} bytes)",
                checkpoint.checkpoint_id,
                checkpoint.state_size_bytes()
            ),
            EngineEvent::CheckpointAborted {
                checkpoint_id,
                cause,
            } => write!(f, "checkpoint {checkpoint_id} aborted: {cause:?}"),
            EngineEvent::CheckpointUnusable {
                checkpoint_id,
                reason,
                fallback: Some(fallback),
            } => write!(f, "checkpoint {checkpoint_id} is unusable ({reason}); falling back to checkpoint {fallback}"),
            EngineEvent::CheckpointUnusable {
                checkpoint_id,
                reason,
                fallback: None,
            } => write!(f, "checkpoint {checkpoint_id} is unusable ({reason}); no intact retained checkpoint to fall back to"),
            EngineEvent::CheckpointDiscardFailed {
                checkpoint_id,
                error,
            } => write!(f, "checkpoint {checkpoint_id}'s files stay behind: {error}"),
            EngineEvent::UnexpectedMessage { message } => write!(f, "ignored unexpected {message}"),
            EngineEvent::TaskManagerStarted { slots } => write!(f, "started with {slots} slot(s)"),
            EngineEvent::JobManagerLost { timeout, attempt } => write!(
                f,
                "jobmanager lost: no heartbeat for {timeout}; failing {attempt} and older"
            ),
            EngineEvent::NoticeLost {
                checkpoint_id,
                subtask,
            } => write!(
                f,
                "completion notice of checkpoint {checkpoint_id} to {subtask} lost"
            ),
            EngineEvent::TaskRunning {
                subtask,
                attempt,
                restored,
            } => {
                write!(f, "{subtask} {attempt} running")?;
                match restored {
                    Some(checkpoint_id) => write!(f, " from checkpoint {checkpoint_id}"),
                    None => Ok(()),
                }
            }
            EngineEvent::InFlightReplayed { subtask, records } => {
                write!(f, "{subtask} replays {records} in-flight records")
            }
            EngineEvent::TaskAbortedCheckpoint {
                subtask,
                checkpoint_id,
                reason,
            } => write!(f, "{subtask} aborts checkpoint {checkpoint_id} ({reason:?})"),
            EngineEvent::SourceAwaitsFinalCheckpoint { subtask } => write!(
                f,
                "{subtask} reached the end of its input; waits for the final checkpoint"
            ),
            EngineEvent::TaskFinished {
                subtask,
                records_in,
                records_out,
                records_written,
                ..
            } => write!(
                f,
                "{subtask} finished: {records_in} records in, {records_out} out, {records_written} written"
            ),
            EngineEvent::TaskFailed {
                subtask,
                attempt,
                reason,
            } => write!(f, "{subtask} {attempt} failed: {reason}"),
            EngineEvent::Sink { label, action } => write!(f, "{label} {action}"),
        }
    }
}

impl fmt::Display for SinkAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkAction::FencedLingering { count, first } => write!(
                f,
                "aborted {count} transaction(s) earlier attempts left open, fencing their producers, from `{first}`"
            ),
            SinkAction::Committed {
                transactional_id,
                records,
                checkpoint_id,
            } => write!(
                f,
                "committed `{transactional_id}` ({records} records, checkpoint {checkpoint_id})"
            ),
            SinkAction::CommitLost {
                checkpoint_id,
                error,
                records,
            } => write!(
                f,
                "cannot commit checkpoint {checkpoint_id}: {error}; its {records} records are lost"
            ),
            SinkAction::BatchWritten {
                checkpoint_id,
                records,
            } => write!(
                f,
                "wrote the batch of checkpoint {checkpoint_id} ({records} records) and recorded it"
            ),
        }
    }
}

impl EngineEvent {
    /// Whether the event is a line of the trace. A restart is only counted: the trace shows
    /// the deployment that follows it.
    pub fn is_traced(&self) -> bool {
        !matches!(self, EngineEvent::Restarting { .. })
    }
}

/// `a, b, c`, for the trace.
fn subtask_list(subtasks: &[SubtaskId]) -> String {
    let names: Vec<String> = subtasks.iter().map(ToString::to_string).collect();
    names.join(", ")
}
