//! The harness's view into a run: the trace, fault triggers that depend on engine progress,
//! and what the checker needs (completed checkpoints, final task state). Engine code reports
//! here; it never reads anything back that changes its behaviour except injected faults.

use crate::checkpoint::coordinator::CompletedCheckpoint;
use crate::checkpoint::storage::StateHandle;
use crate::ids::{AttemptNumber, CheckpointId, SubtaskId};
use crate::limits::HARNESS_SIGNALS_CAPACITY;
use crate::runtime::hooks::{EngineEvent, RecordFate, RecordProbe, RunHooks};
use crate::runtime::hooks::{JobOutcome, NoticeFate};
use crate::runtime::leadership::LeaderTerm;
use crate::runtime::sim_time;
use crate::scenario::stage::StageRestore;
use crate::services::disk::Disk;
use crate::state::savepoint_format::decode_task_state;
use crate::state::snapshot::{KeyedStateSnapshot, TaskStateSnapshot};
use crate::time::{Duration, Instant};
use futures::channel::mpsc::Sender;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};

/// What the injector and the harness are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A checkpoint completed.
    CheckpointCompleted(CheckpointId),
    /// The record trigger of fault `fault_index` fired.
    RecordTriggerFired(usize),
    /// The job reached a terminal status.
    JobTerminated,
    /// A savepoint (or the stop it belongs to) failed.
    SavepointFailed,
}

/// Each task's state, decoded, or the error reading or decoding its file.
pub type TaskStates = BTreeMap<SubtaskId, Result<TaskStateSnapshot, String>>;

/// A checkpoint as the checker sees it: its metadata and every task's state.
#[derive(Clone, Debug)]
pub struct ObservedCheckpoint {
    /// The stage whose job took it (0: the first job).
    pub stage: usize,
    /// The coordinator's record (a savepoint's too).
    pub checkpoint: CompletedCheckpoint,
    // Each task's state file as it was when the checkpoint completed (its name and bytes), or
    // the error reading it. Decoded on the first look: the failure-free run's checkpoints are
    // rarely looked at, and decoding them all cost 3% of a checked seed.
    files: BTreeMap<SubtaskId, Result<(String, Vec<u8>), String>>,
    decoded: OnceLock<TaskStates>,
}

impl ObservedCheckpoint {
    /// Each task's state file, decoded, or the error reading it.
    pub fn task_states(&self) -> &TaskStates {
        self.decoded.get_or_init(|| {
            let decode = |(name, bytes): &(String, Vec<u8>)| {
                decode_task_state(name, bytes).map_err(|e| e.to_string())
            };
            self.files
                .iter()
                .map(|(subtask, file)| {
                    (
                        *subtask,
                        file.as_ref().map_err(Clone::clone).and_then(decode),
                    )
                })
                .collect()
        })
    }

    /// `task_states`, to alter (the checker's own tests corrupt a snapshot this way).
    pub fn task_states_mut(&mut self) -> &mut TaskStates {
        self.task_states();
        self.decoded.get_mut().expect("decoded above")
    }
}

/// A slow-operator fault while it is in force.
#[derive(Clone, Debug)]
pub struct SlowWindow {
    /// The operator uid slowed.
    pub uid: String,
    /// Processing time added per record.
    pub per_record: Duration,
    /// From when.
    pub from: Instant,
    /// Until when (exclusive); `None` for the rest of the run.
    pub until: Option<Instant>,
}

/// A slow-link fault while it is in force: data frames from `source` to `target` arrive this
/// much later.
#[derive(Clone, Debug)]
pub struct SlowLinkWindow {
    /// The sending node's address.
    pub source: std::net::IpAddr,
    /// The receiving node's address.
    pub target: std::net::IpAddr,
    /// Latency added per frame.
    pub latency: Duration,
    /// From when.
    pub from: Instant,
    /// Until when (exclusive); `None` for the rest of the run.
    pub until: Option<Instant>,
}

/// A delay-notices fault while it is in force.
#[derive(Clone, Debug)]
pub struct NoticeDelayWindow {
    /// The delay added.
    pub delay: Duration,
    /// From when.
    pub from: Instant,
    /// Until when (exclusive); `None` for the rest of the run.
    pub until: Option<Instant>,
}

#[derive(Clone, Debug)]
struct CommitTrigger {
    subtask: SubtaskId,
    checkpoint_id: CheckpointId,
    fault_index: usize,
    fired: bool,
}

#[derive(Clone, Debug)]
struct RecordTrigger {
    subtask: SubtaskId,
    count: u64,
    fault_index: usize,
    fired: bool,
}

/// An engine event as the harness recorded it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// When.
    pub at: Instant,
    /// On which node (`jobmanager`, `taskmanager-2`).
    pub node: String,
    /// What.
    pub event: EngineEvent,
}

#[derive(Default)]
struct ObserverState {
    trace: Vec<String>,
    events: Vec<RecordedEvent>,
    // The job manager elected last (with high availability): a deposed one that has not
    // learnt it yet reports nothing the checker takes for the job's.
    leader: Option<String>,
    // Each subtask's record count (over the run) and the count the hooks want to hear from.
    probes: BTreeMap<SubtaskId, Arc<RecordProbe>>,
    record_triggers: Vec<RecordTrigger>,
    fail_requests: BTreeSet<SubtaskId>,
    slow_windows: Vec<SlowWindow>,
    slow_links: Vec<SlowLinkWindow>,
    commit_triggers: Vec<CommitTrigger>,
    notices_to_lose: BTreeSet<SubtaskId>,
    notice_delays: Vec<NoticeDelayWindow>,
    signals: Option<Sender<Signal>>,
    checkpoints: Vec<ObservedCheckpoint>,
    final_states: BTreeMap<(AttemptNumber, SubtaskId), BTreeMap<String, KeyedStateSnapshot>>,
    failures: Vec<(Instant, String)>,
    restarts: u32,
    outcome: Option<(Instant, JobOutcome, AttemptNumber)>,
    // Jobs submitted before the current one (the stage it runs).
    stage: usize,
}

/// A handle to the run's observer; cheap to clone into every node.
#[derive(Clone)]
pub struct Observer {
    state: Arc<Mutex<ObserverState>>,
    blob_disk: Disk,
}

/// A weak reference to a run's observer.
pub struct ObserverRef(std::sync::Weak<Mutex<ObserverState>>);

impl ObserverRef {
    /// Whether every clone of the observer is gone. Every node and task of a run holds one, so
    /// once the run's runtime is dropped this says whether madsim freed all of them.
    pub fn released(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl Observer {
    /// An observer that reads checkpoint files from `blob_disk` and signals on `signals`.
    pub fn new(blob_disk: Disk, signals: Sender<Signal>) -> Observer {
        let state = ObserverState {
            signals: Some(signals),
            ..ObserverState::default()
        };
        Observer {
            state: Arc::new(Mutex::new(state)),
            blob_disk,
        }
    }

    /// A reference that does not keep the observer alive: it tells whether every clone is gone.
    pub fn downgrade(&self) -> ObserverRef {
        ObserverRef(Arc::downgrade(&self.state))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ObserverState> {
        self.state
            .lock()
            .expect("no task panics while holding the observer lock")
    }

    fn signal(state: &mut ObserverState, signal: Signal) {
        if let Some(signals) = &mut state.signals {
            match signals.try_send(signal) {
                Ok(()) => {}
                // The injector ended (the run is over): nobody listens any more.
                Err(error) if error.is_disconnected() => {}
                Err(error) => panic!(
                    "more than {HARNESS_SIGNALS_CAPACITY} signals wait for the injector: {error}"
                ),
            }
        }
    }

    /// Appends a trace line stamped with the simulated time and the node.
    pub fn trace(&self, node: &str, line: impl AsRef<str>) {
        let stamped = format!(
            "{:>9} {node}: {}",
            sim_time::now().to_string(),
            line.as_ref()
        );
        self.lock().trace.push(stamped);
    }

    /// The engine's events so far, in order; the run is over, so they move out.
    pub fn take_events(&self) -> Vec<RecordedEvent> {
        std::mem::take(&mut self.lock().events)
    }

    /// The trace, moved out at the run's end.
    pub fn take_trace_lines(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().trace)
    }

    /// Arms a trigger: fault `fault_index` fires when `subtask` begins its `count`-th record
    /// (counted over the whole run, all attempts).
    pub fn arm_record_trigger(&self, subtask: SubtaskId, count: u64, fault_index: usize) {
        let mut state = self.lock();
        state.record_triggers.push(RecordTrigger {
            subtask,
            count,
            fault_index,
            fired: false,
        });
        Self::attend(&mut state, subtask);
    }

    fn probe(state: &mut ObserverState, subtask: SubtaskId) -> Arc<RecordProbe> {
        if let Some(probe) = state.probes.get(&subtask) {
            return probe.clone();
        }
        let probe = Arc::new(RecordProbe::default());
        state.probes.insert(subtask, probe.clone());
        Self::attend(state, subtask);
        probe
    }

    /// Tells `subtask`'s probe from which record on the hooks must hear of each: at once
    /// while a slow operator or a failure request may apply, else at the next armed trigger.
    fn attend(state: &mut ObserverState, subtask: SubtaskId) {
        let Some(probe) = state.probes.get(&subtask) else {
            return; // Created later: attended then.
        };
        let from = if !state.slow_windows.is_empty() || state.fail_requests.contains(&subtask) {
            0
        } else {
            state
                .record_triggers
                .iter()
                .filter(|t| !t.fired && t.subtask == subtask)
                .map(|t| t.count)
                .min()
                .unwrap_or(u64::MAX)
        };
        probe.attend_from(from);
    }

    /// Arms a trigger: fault `fault_index` fires when the sink `subtask` is about to record
    /// checkpoint `checkpoint_id` as committed.
    pub fn arm_commit_trigger(
        &self,
        subtask: SubtaskId,
        checkpoint_id: CheckpointId,
        fault_index: usize,
    ) {
        self.lock().commit_triggers.push(CommitTrigger {
            subtask,
            checkpoint_id,
            fault_index,
            fired: false,
        });
    }

    /// The next completion notice to `subtask` is lost.
    pub fn lose_next_notice(&self, subtask: SubtaskId) {
        self.lock().notices_to_lose.insert(subtask);
    }

    /// Adds a delay-notices window.
    pub fn add_notice_delay(&self, window: NoticeDelayWindow) {
        self.lock().notice_delays.push(window);
    }

    /// Adds a slow-operator window.
    pub fn add_slow_window(&self, window: SlowWindow) {
        let mut state = self.lock();
        state.slow_windows.push(window);
        let subtasks: Vec<SubtaskId> = state.probes.keys().copied().collect();
        for subtask in subtasks {
            Self::attend(&mut state, subtask);
        }
    }

    /// Adds a slow-link window.
    pub fn add_slow_link(&self, window: SlowLinkWindow) {
        self.lock().slow_links.push(window);
    }

    /// Flips one byte in the middle of a state file of the newest completed checkpoint (the
    /// first in path order), durably; returns its path.
    pub fn corrupt_newest_checkpoint(&self) -> Option<String> {
        let path = {
            let state = self.lock();
            let newest = state.checkpoints.last()?;
            newest
                .checkpoint
                .acks
                .values()
                .filter_map(|ack| ack.state.path())
                .min()?
                .to_string()
        };
        let mut bytes = self.blob_disk.read(&path)?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        self.blob_disk.write(&path, bytes);
        self.blob_disk.sync();
        Some(path)
    }

    /// Makes `subtask` fail at its next record.
    pub fn request_task_failure(&self, subtask: SubtaskId) {
        let mut state = self.lock();
        state.fail_requests.insert(subtask);
        Self::attend(&mut state, subtask);
    }

    /// The job manager completed a checkpoint: the checker reads its files now, before a
    /// later checkpoint may subsume them.
    fn on_checkpoint_completed(&self, checkpoint: &CompletedCheckpoint) {
        let mut files = BTreeMap::new();
        for (subtask, ack) in &checkpoint.acks {
            let file = match &ack.state {
                StateHandle::File(path) => match self.blob_disk.read(path) {
                    None => Err(format!("{path}: missing from checkpoint storage")),
                    Some(bytes) => Ok((path.clone(), bytes)),
                },
                StateHandle::Inline { name, bytes } => Ok((name.clone(), bytes.clone())),
                StateHandle::Relative(name) => Err(format!("{name}: a relative handle in memory")),
            };
            files.insert(*subtask, file);
        }
        let mut state = self.lock();
        let stage = state.stage;
        state.checkpoints.push(ObservedCheckpoint {
            stage,
            checkpoint: checkpoint.clone(),
            files,
            decoded: OnceLock::new(),
        });
        if checkpoint.savepoint.is_none() {
            let signal = Signal::CheckpointCompleted(checkpoint.checkpoint_id);
            Self::signal(&mut state, signal);
        }
    }

    /// Completed checkpoints in completion order, moved out at the run's end.
    pub fn take_checkpoints(&self) -> Vec<ObservedCheckpoint> {
        std::mem::take(&mut self.lock().checkpoints)
    }

    /// A task finished with this keyed state (by operator uid).
    fn on_task_finished(
        &self,
        attempt: AttemptNumber,
        subtask: SubtaskId,
        keyed: BTreeMap<String, KeyedStateSnapshot>,
    ) {
        self.lock().final_states.insert((attempt, subtask), keyed);
    }

    /// The final keyed state of each subtask in the job that ended in `attempt`: its newest
    /// finished task up to that attempt (after a region failover the tasks of the last
    /// deployment ran in different attempts).
    pub fn final_states(
        &self,
        attempt: AttemptNumber,
    ) -> BTreeMap<SubtaskId, BTreeMap<String, KeyedStateSnapshot>> {
        let state = self.lock();
        let mut newest: BTreeMap<
            SubtaskId,
            (AttemptNumber, &BTreeMap<String, KeyedStateSnapshot>),
        > = BTreeMap::new();
        // Only the current job's tasks: an earlier stage's may share a subtask id.
        let first = LeaderTerm(LeaderTerm::FIRST.0 + state.stage as u64).first_attempt();
        for ((a, subtask), keyed) in &state.final_states {
            let ours = first <= *a && *a <= attempt;
            if ours && newest.get(subtask).is_none_or(|(seen, _)| seen < a) {
                newest.insert(*subtask, (*a, keyed));
            }
        }
        newest
            .into_iter()
            .map(|(subtask, (_, keyed))| (subtask, keyed.clone()))
            .collect()
    }

    /// The job failed over.
    fn on_failure(&self, reason: &str) {
        let now = sim_time::now();
        self.lock().failures.push((now, reason.to_string()));
    }

    /// The job was redeployed after a failure.
    fn on_restart(&self) {
        self.lock().restarts += 1;
    }

    /// The job reached a terminal status in `attempt`.
    fn on_job_terminated(&self, outcome: JobOutcome, attempt: AttemptNumber) {
        let now = sim_time::now();
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.outcome = Some((now, outcome, attempt));
            Self::signal(&mut state, Signal::JobTerminated);
        }
    }

    /// A new job begins (resubmitted after the earlier one ended): its end is awaited anew.
    /// Returns how many jobs were submitted before it.
    pub fn begin_job(&self) -> usize {
        let mut state = self.lock();
        state.outcome = None;
        state.stage += 1;
        state.stage
    }

    /// The newest savepoint (the stop's, when the job was stopped) or checkpoint the current
    /// job completed.
    pub fn newest_snapshot(&self, wanted: StageRestore) -> Option<CheckpointId> {
        let state = self.lock();
        let ours = state.checkpoints.iter().filter(|c| c.stage == state.stage);
        let newest = match wanted {
            StageRestore::Savepoint => ours
                .filter(|c| c.checkpoint.savepoint.is_some())
                .max_by_key(|c| {
                    let terminate = c.checkpoint.savepoint.is_some_and(|s| s.terminate);
                    (terminate, c.checkpoint.checkpoint_id)
                }),
            StageRestore::Checkpoint => ours
                .filter(|c| c.checkpoint.savepoint.is_none())
                .max_by_key(|c| c.checkpoint.checkpoint_id),
        };
        newest.map(|c| c.checkpoint.checkpoint_id)
    }

    /// How the job ended, when, and in which attempt.
    pub fn outcome(&self) -> Option<(Instant, JobOutcome, AttemptNumber)> {
        self.lock().outcome.clone()
    }

    /// Failures seen.
    pub fn failures(&self) -> Vec<(Instant, String)> {
        self.lock().failures.clone()
    }

    /// Restarts done.
    pub fn restarts(&self) -> u32 {
        self.lock().restarts
    }
}

impl RunHooks for Observer {
    fn event(&self, node: &str, event: EngineEvent) {
        if event.is_traced() {
            self.trace(node, event.to_string());
        }
        self.lock().events.push(RecordedEvent {
            at: sim_time::now(),
            node: node.to_string(),
            event: event.clone(),
        });
        match event {
            EngineEvent::LeaderElected { .. } => self.lock().leader = Some(node.to_string()),
            // A deposed leader resuming may complete a checkpoint it had made durable before the
            // takeover: the new leader may already have subsumed (deleted) it, and its notices
            // are refused. Only the leader's completions are the job's.
            EngineEvent::CheckpointCompleted { .. }
                if self.lock().leader.as_deref().is_some_and(|l| l != node) => {}
            EngineEvent::CheckpointCompleted { checkpoint } => {
                self.on_checkpoint_completed(&checkpoint)
            }
            EngineEvent::SavepointCompleted { .. }
                if self.lock().leader.as_deref().is_some_and(|l| l != node) => {}
            EngineEvent::SavepointCompleted { checkpoint, .. } => {
                self.on_checkpoint_completed(&checkpoint)
            }
            EngineEvent::SavepointFailed { .. } => {
                Self::signal(&mut self.lock(), Signal::SavepointFailed)
            }
            EngineEvent::TaskFinished {
                subtask,
                attempt,
                keyed,
                ..
            } => self.on_task_finished(attempt, subtask, keyed),
            EngineEvent::FailingOver { reason, .. } => self.on_failure(&reason),
            // A new leader restarts the whole job from its checkpoint: for the checker, the
            // job failed over (whatever failed meanwhile, no job master saw it).
            EngineEvent::JobRecovered { term, .. } => {
                self.on_failure(&format!("job-manager failover: {term} recovered the job"))
            }
            // The resubmitted job restores an earlier job's checkpoint: for the checker, the
            // job failed over to it.
            EngineEvent::JobRestoredFromCheckpoint {
                checkpoint_id,
                savepoint,
                ..
            } => {
                let what = if savepoint { "savepoint" } else { "checkpoint" };
                self.on_failure(&format!(
                    "the job was resubmitted from {what} {checkpoint_id}"
                ))
            }
            EngineEvent::Restarting { .. } => self.on_restart(),
            EngineEvent::JobFinished { attempt } => {
                self.on_job_terminated(JobOutcome::Finished, attempt)
            }
            EngineEvent::JobCanceled { attempt } => {
                self.on_job_terminated(JobOutcome::Canceled, attempt)
            }
            EngineEvent::JobFailed {
                attempt,
                reason,
                why,
                ..
            } => self.on_job_terminated(JobOutcome::Failed(format!("{reason}; {why}")), attempt),
            _ => {}
        }
    }

    fn record_probe(&self, subtask: SubtaskId) -> Arc<RecordProbe> {
        Self::probe(&mut self.lock(), subtask)
    }

    fn on_record_begin(&self, subtask: SubtaskId, count: u64) -> RecordFate {
        let mut state = self.lock();
        let mut fired = Vec::new();
        for trigger in state.record_triggers.iter_mut() {
            if !trigger.fired && trigger.subtask == subtask && trigger.count == count {
                trigger.fired = true;
                fired.push(trigger.fault_index);
            }
        }
        for fault_index in &fired {
            Self::signal(&mut state, Signal::RecordTriggerFired(*fault_index));
        }
        let fail = state.fail_requests.remove(&subtask);
        Self::attend(&mut state, subtask);
        RecordFate {
            fail,
            fault_fired: !fired.is_empty(),
        }
    }
    fn slowdown(&self, uids: &[String], now: Instant) -> Duration {
        let state = self.lock();
        let active = state.slow_windows.iter().filter(|w| {
            uids.contains(&w.uid) && w.from <= now && w.until.is_none_or(|until| now < until)
        });
        Duration(active.map(|w| w.per_record.0).sum())
    }
    // A lost-notice fault takes a notice the job manager sent for a completion, not a
    // heartbeat's repeat.
    fn notice_fate(&self, subtask: SubtaskId, now: Instant, repeat: bool) -> NoticeFate {
        let mut state = self.lock();
        if !repeat && state.notices_to_lose.remove(&subtask) {
            return NoticeFate::Lost;
        }
        let delay: u64 = state
            .notice_delays
            .iter()
            .filter(|w| w.from <= now && w.until.is_none_or(|until| now < until))
            .map(|w| w.delay.0)
            .sum();
        if delay > 0 {
            NoticeFate::Delayed(Duration(delay))
        } else {
            NoticeFate::Deliver
        }
    }
    fn link_latency(
        &self,
        source: std::net::IpAddr,
        target: std::net::IpAddr,
        now: Instant,
    ) -> Duration {
        let state = self.lock();
        let active = state.slow_links.iter().filter(|w| {
            w.source == source
                && w.target == target
                && w.from <= now
                && w.until.is_none_or(|until| now < until)
        });
        Duration(active.map(|w| w.latency.0).sum())
    }
    fn on_before_commit(&self, subtask: SubtaskId, checkpoint_id: CheckpointId) -> bool {
        let mut state = self.lock();
        let mut fired = Vec::new();
        for trigger in state.commit_triggers.iter_mut() {
            if !trigger.fired
                && trigger.subtask == subtask
                && trigger.checkpoint_id == checkpoint_id
            {
                trigger.fired = true;
                fired.push(trigger.fault_index);
            }
        }
        for fault_index in &fired {
            Self::signal(&mut state, Signal::RecordTriggerFired(*fault_index));
        }
        !fired.is_empty()
    }
}
