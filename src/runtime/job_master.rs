//! The job master (Flink's `JobMaster` with its scheduler and execution-graph state), sans-IO:
//! the job status machine, execution attempts and their task states, heartbeat failure
//! detection, slot placement and deployment, failover through the restart strategy, filtering
//! of reports from cancelled attempts, and the checkpoint coordinator with the choice of
//! barrier kind. Inputs carry `now`; what the job manager node must do comes out of
//! `poll_command`, in order. Nothing here sleeps, sends or spawns.

use crate::checkpoint::barrier::{Barrier, BarrierKind, SavepointFormat, SnapshotType};
use crate::checkpoint::coordinator::{
    CheckpointConfig, CheckpointCoordinator, CheckpointingMode, CompletedCheckpoint, Output,
    SavepointInfo,
};
use crate::checkpoint::final_checkpoint::{EndOfData, FinalCheckpoint};
use crate::checkpoint::state_assignment::assign;
use crate::graph::execution_graph::ExecutionGraph;
use crate::graph::pipelined_region::PipelinedRegions;
use crate::ids::{AttemptNumber, CheckpointId, SubtaskId, TaskManagerId};
use crate::runtime::deployment::{descriptors, place, Placement, SlotOffer};
use crate::runtime::failover_strategy::{FailoverStrategy, Restart};
use crate::runtime::hooks::{EngineEvent, TaskManagerLoss};
use crate::runtime::job_status::{ExecutionState, JobStatus};
use crate::runtime::leadership::LeaderTerm;
use crate::runtime::messages::{ControlMessage, DeployScope, Heartbeat, TaskStatus};
use crate::runtime::restart::{RestartDecision, RestartStrategy, RestartStrategyConfig};
use crate::time::{Duration, Instant};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

/// The job master's options.
#[derive(Clone, Debug)]
pub struct JobMasterConfig {
    /// Checkpointing options.
    pub checkpoint: CheckpointConfig,
    /// The restart strategy.
    pub restart: RestartStrategyConfig,
    /// `jobmanager.execution.failover-strategy`.
    pub failover: FailoverStrategy,
    /// This job manager's control endpoint, announced on its heartbeats.
    pub address: SocketAddr,
    /// Seeds the restart strategy's jitter.
    pub restart_seed: u64,
    /// `heartbeat.interval`: how often liveness is checked.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`: a task manager silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// A deployment whose tasks are not all running by then fails.
    pub deploy_timeout: Duration,
    /// The sink commits on checkpoints: the job ends with a final checkpoint taken after
    /// every source read all its input, and the sources end once it completed (FLIP-147).
    pub final_checkpoint: bool,
    /// High availability: a checkpoint completes only once its pointer is in the completed
    /// checkpoint store of the high-availability service.
    pub high_availability: bool,
}

/// What the job manager node must carry out, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Send `message` to the control listener at `to`.
    Send {
        /// A task manager's control address.
        to: SocketAddr,
        /// The message.
        message: ControlMessage,
    },
    /// Write the checkpoint's `_metadata`, then call `on_metadata_written`.
    WriteMetadata(CompletedCheckpoint),
    /// Add the checkpoint (its `_metadata` written) to the completed checkpoint store of the
    /// high-availability service, then call `on_checkpoint_stored`. The node waits for the
    /// service before anything else, as Flink's coordinator waits for ZooKeeper: nothing can
    /// abort the checkpoint in between.
    StoreCheckpoint(CompletedCheckpoint),
    /// Delete the checkpoint's files from checkpoint storage (before the next command: a
    /// run that ends right after leaves no discarded file behind).
    DiscardCheckpoint(CheckpointId),
    /// Report this event.
    Event(EngineEvent),
}

/// A task as the job master tracks it: the attempt it runs in (after a region failover the
/// tasks of one job run in different attempts) and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execution {
    /// The attempt that deployed it.
    pub attempt: AttemptNumber,
    /// Its state.
    pub state: ExecutionState,
}

/// Regions failed over while the rest of the job runs on (the job stays RUNNING, as in
/// Flink).
#[derive(Clone, Debug)]
struct RegionRestart {
    tasks: BTreeSet<SubtaskId>,
    // Where they ran: a task manager still registered takes them back.
    previous: Placement,
    phase: RegionPhase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegionPhase {
    /// The restart strategy's delay runs until `at`.
    Waiting { at: Instant },
    /// Too few free slots to place the tasks.
    WaitingForResources,
    /// Deployed; not every task reported running by `deadline`.
    Deploying { deadline: Instant },
}

#[derive(Clone, Debug)]
struct Registration {
    instance: u64,
    slots: u32,
    control_address: SocketAddr,
    data_address: SocketAddr,
    last_heartbeat_at: Instant,
}

/// The job master of one job.
pub struct JobMaster {
    graph: Arc<ExecutionGraph>,
    config: JobMasterConfig,
    // The leadership term: its fencing token rides on every heartbeat, and it owns the
    // attempt numbers and checkpoint ids this job master uses.
    term: LeaderTerm,
    taskmanagers: BTreeMap<TaskManagerId, Registration>,
    status: JobStatus,
    // The newest attempt deployed: with region failover, older tasks may run on beside it.
    attempt: AttemptNumber,
    placement: Placement,
    executions: BTreeMap<SubtaskId, Execution>,
    regions: PipelinedRegions,
    // Region failovers in progress, each on its own delay, while the rest of the job runs.
    region_restarts: Vec<RegionRestart>,
    coordinator: CheckpointCoordinator,
    restart: RestartStrategy,
    final_checkpoint: FinalCheckpoint,
    liveness_check_at: Instant,
    commands: VecDeque<Command>,
    // A stop-with-savepoint under way.
    stop: Option<StopWithSavepoint>,
}

/// Whether a failover may restore `checkpoint`: every checkpoint, and stop-with-savepoint's
/// savepoint (its completion committed the sinks), but no plain savepoint.
fn recovers_from(checkpoint: &CompletedCheckpoint) -> bool {
    checkpoint
        .savepoint
        .is_none_or(|savepoint| savepoint.terminate)
}

/// A stop-with-savepoint under way (`flink stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StopWithSavepoint {
    format: SavepointFormat,
    drain: bool,
    // Once triggered; with drain, only after every source ended its input.
    savepoint: Option<CheckpointId>,
    // Once complete: the sources end, and its notice repeats on heartbeats.
    completed: bool,
}

impl JobMaster {
    /// A job master for `graph`, started at `now` as the only (or first) leader, waiting for
    /// task managers.
    pub fn new(graph: Arc<ExecutionGraph>, config: JobMasterConfig, now: Instant) -> JobMaster {
        JobMaster::submitted(graph, config, now, LeaderTerm::FIRST)
    }

    /// A job master for `graph` just submitted to the leader of `term`.
    pub fn submitted(
        graph: Arc<ExecutionGraph>,
        config: JobMasterConfig,
        now: Instant,
        term: LeaderTerm,
    ) -> JobMaster {
        let mut master = JobMaster::with_term(graph, config, now, term, Vec::new());
        let job = master.graph.job.name.clone();
        master.event(EngineEvent::JobStarted { job });
        master
    }

    /// The job master of a job recovered from high availability by the leader of `term`:
    /// `restored` are the retained checkpoints read back from their `_metadata`, oldest
    /// first; the first deployment restores the newest.
    pub fn recovered(
        graph: Arc<ExecutionGraph>,
        config: JobMasterConfig,
        now: Instant,
        term: LeaderTerm,
        restored: Vec<CompletedCheckpoint>,
    ) -> JobMaster {
        let checkpoint_id = restored.last().map(|c| c.checkpoint_id);
        let mut master = JobMaster::with_term(graph, config, now, term, restored);
        let job = master.graph.job.name.clone();
        master.event(EngineEvent::JobRecovered {
            job,
            term,
            checkpoint_id,
        });
        master
    }

    /// The job master of a new job submitted from another job's retained checkpoint
    /// (`flink run -s <path>`): the first deployment restores `checkpoint`, read from its
    /// `_metadata` at `path`; its files stay the other job's (NO_CLAIM). The job numbers its
    /// attempts and checkpoints in `term`'s block, clear of the other job's.
    ///
    /// The state is matched to the job's operators by uid, whatever their parallelism; state
    /// no operator claims fails the submission unless `ignore_unclaimed` (Flink's
    /// `--allowNonRestoredState`), as do a changed max parallelism and in-flight data that
    /// would need redistributing.
    pub fn restored(
        graph: Arc<ExecutionGraph>,
        config: JobMasterConfig,
        now: Instant,
        term: LeaderTerm,
        checkpoint: CompletedCheckpoint,
        path: String,
        ignore_unclaimed: bool,
    ) -> JobMaster {
        let assignment = match assign(&graph, &checkpoint, ignore_unclaimed) {
            Ok(assignment) => assignment,
            Err(error) => {
                return JobMaster::unrestorable(graph, config, now, term, path, error.to_string())
            }
        };
        let checkpoint_id = checkpoint.checkpoint_id;
        let savepoint = checkpoint.savepoint.is_some();
        let mut coordinator = CheckpointCoordinator::restored_from(
            config.checkpoint.clone(),
            term.first_checkpoint_id(),
            checkpoint,
        );
        coordinator.set_max_parallelism(graph.job.max_parallelism);
        let mut master = JobMaster::with_term(graph, config, now, term, Vec::new());
        master.coordinator = coordinator;
        let job = master.graph.job.name.clone();
        master.event(EngineEvent::JobRestoredFromCheckpoint {
            job,
            checkpoint_id,
            path,
            savepoint,
            assignment,
        });
        master
    }

    /// A job submitted from a checkpoint that cannot be read: it fails at once, naming why
    /// (Flink's submission fails likewise; starting empty would lose the state silently).
    pub fn unrestorable(
        graph: Arc<ExecutionGraph>,
        config: JobMasterConfig,
        now: Instant,
        term: LeaderTerm,
        path: String,
        reason: String,
    ) -> JobMaster {
        let mut master = JobMaster::submitted(graph, config, now, term);
        master.fail_for_good(now, format!("cannot restore from {path}"), reason);
        master
    }

    fn with_term(
        graph: Arc<ExecutionGraph>,
        config: JobMasterConfig,
        now: Instant,
        term: LeaderTerm,
        restored: Vec<CompletedCheckpoint>,
    ) -> JobMaster {
        let sources = graph.source_subtasks().into_iter().collect();
        let mut coordinator = CheckpointCoordinator::recovered(
            config.checkpoint.clone(),
            term.first_checkpoint_id(),
            restored,
        );
        coordinator.set_max_parallelism(graph.job.max_parallelism);
        JobMaster {
            coordinator,
            restart: RestartStrategy::new(config.restart.clone(), config.restart_seed),
            final_checkpoint: FinalCheckpoint::new(config.final_checkpoint, sources),
            liveness_check_at: now.add(config.heartbeat_interval),
            taskmanagers: BTreeMap::new(),
            status: JobStatus::WaitingForResources,
            // Before its first deployment: every attempt of an earlier term is older.
            attempt: AttemptNumber(term.first_attempt().0 - 1),
            term,
            placement: BTreeMap::new(),
            executions: BTreeMap::new(),
            regions: PipelinedRegions::of(&graph),
            region_restarts: Vec::new(),
            commands: VecDeque::new(),
            stop: None,
            config,
            graph,
        }
    }

    /// The leadership term.
    pub fn term(&self) -> LeaderTerm {
        self.term
    }

    /// The job's status.
    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// The newest attempt (0 before the first deployment).
    pub fn attempt(&self) -> AttemptNumber {
        self.attempt
    }

    /// Where the current attempt's tasks run.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Each deployed task's attempt and state.
    pub fn executions(&self) -> &BTreeMap<SubtaskId, Execution> {
        &self.executions
    }

    /// The next command to carry out.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When `on_timers` must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let status_deadline = match self.status {
            JobStatus::Deploying { deadline } => Some(deadline),
            JobStatus::Restarting { at } => Some(at),
            _ => None,
        };
        let region_deadline = self
            .region_restarts
            .iter()
            .filter_map(|r| match r.phase {
                RegionPhase::Waiting { at } => Some(at),
                RegionPhase::Deploying { deadline } => Some(deadline),
                RegionPhase::WaitingForResources => None,
            })
            .min();
        [
            Some(self.liveness_check_at),
            status_deadline,
            region_deadline,
            self.coordinator.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Time passed: checkpoint triggers and timeouts, liveness, deployment and restart deadlines.
    pub fn on_timers(&mut self, now: Instant) {
        self.coordinator.on_timeout(now);
        if now >= self.liveness_check_at {
            self.liveness_check_at = now.add(self.config.heartbeat_interval);
            self.check_liveness(now);
        }
        match self.status {
            JobStatus::Deploying { deadline } if now >= deadline => self.fail_over(
                now,
                "deployment timed out: not every task reported running".to_string(),
                BTreeSet::new(),
            ),
            JobStatus::Restarting { at } if now >= at => {
                self.status = JobStatus::WaitingForResources;
                self.try_deploy(now);
            }
            _ => {}
        }
        let timed_out = self
            .region_restarts
            .iter()
            .any(|r| matches!(r.phase, RegionPhase::Deploying { deadline } if now >= deadline));
        if timed_out {
            // A region that cannot start fails the job over whole.
            self.fail_over(
                now,
                "region deployment timed out: not every task reported running".to_string(),
                BTreeSet::new(),
            );
        }
        let due: Vec<usize> = (0..self.region_restarts.len())
            .filter(|i| matches!(self.region_restarts[*i].phase, RegionPhase::Waiting { at } if now >= at))
            .collect();
        for index in due {
            self.try_deploy_regions(now, index);
        }
        self.drain_coordinator(now);
    }

    /// A control message arrived.
    pub fn on_control(&mut self, now: Instant, message: ControlMessage) {
        match message {
            ControlMessage::Heartbeat(heartbeat) => self.on_heartbeat(now, heartbeat),
            ControlMessage::TaskStatusChanged {
                attempt,
                subtask,
                status,
            } => self.on_task_status(now, attempt, subtask, status),
            ControlMessage::AcknowledgeCheckpoint {
                attempt,
                subtask,
                checkpoint_id,
                ack,
            } if self.is_current(attempt, subtask) => {
                self.coordinator.on_ack(now, subtask, checkpoint_id, ack)
            }
            ControlMessage::DeclineCheckpoint {
                attempt,
                subtask,
                checkpoint_id,
                reason,
            } if self.is_current(attempt, subtask) => {
                self.coordinator.on_decline(now, checkpoint_id, reason)
            }
            ControlMessage::EndOfData { attempt, subtask } => {
                self.on_end_of_data(now, attempt, subtask)
            }
            ControlMessage::CancelJob => self.on_cancel_job(now),
            ControlMessage::TriggerSavepoint {
                format,
                terminate,
                drain,
            } => self.on_savepoint_request(now, format, terminate, drain),
            // Acks and declines of an earlier attempt are expected after a failover.
            ControlMessage::AcknowledgeCheckpoint { .. }
            | ControlMessage::DeclineCheckpoint { .. } => {}
            other => self.event(EngineEvent::UnexpectedMessage {
                message: format!("{other:?}"),
            }),
        }
        self.drain_coordinator(now);
    }

    /// The `_metadata` write asked for by `Command::WriteMetadata` ended (with high
    /// availability, the checkpoint's pointer is stored too); `Err` says why it failed.
    pub fn on_metadata_written(
        &mut self,
        now: Instant,
        checkpoint: CompletedCheckpoint,
        result: Result<(), String>,
    ) {
        let pending = self.coordinator.is_pending(checkpoint.checkpoint_id);
        match result {
            // Only a checkpoint still in flight gets a pointer: one aborted meanwhile had its
            // files deleted, and a pointer to it would send the next leader to nothing. A plain
            // savepoint is never restored by a failover, so it gets none.
            Ok(()) if self.config.high_availability && pending && recovers_from(&checkpoint) => {
                self.commands
                    .push_back(Command::StoreCheckpoint(checkpoint))
            }
            result => self.on_checkpoint_stored(now, checkpoint, result),
        }
    }

    /// The checkpoint is durable and, with high availability, in the completed checkpoint
    /// store (`Command::StoreCheckpoint`); `Err` says why not.
    pub fn on_checkpoint_stored(
        &mut self,
        now: Instant,
        checkpoint: CompletedCheckpoint,
        result: Result<(), String>,
    ) {
        match result {
            Ok(()) => self.coordinator.on_metadata_written(now, checkpoint),
            Err(reason) => {
                self.coordinator
                    .on_metadata_failed(now, checkpoint.checkpoint_id, reason)
            }
        }
        self.drain_coordinator(now);
    }

    fn event(&mut self, event: EngineEvent) {
        self.commands.push_back(Command::Event(event));
    }

    /// Whether a report of `subtask` in `attempt` counts: that task is the one deployed.
    /// Until the next deploy, a failed attempt keeps its number, and its tasks (zombies until
    /// their cancel arrives) still report under it; failing over forgets them.
    fn is_current(&self, attempt: AttemptNumber, subtask: SubtaskId) -> bool {
        self.status.is_active()
            && self
                .executions
                .get(&subtask)
                .is_some_and(|execution| execution.attempt == attempt)
    }

    fn send(&mut self, to: SocketAddr, message: ControlMessage) {
        self.commands.push_back(Command::Send { to, message });
    }

    /// To every registered task manager, hosting tasks or not.
    fn send_to_every_taskmanager(&mut self, message: &ControlMessage) {
        let addresses: Vec<SocketAddr> = self
            .taskmanagers
            .values()
            .map(|tm| tm.control_address)
            .collect();
        for address in addresses {
            self.send(address, message.clone());
        }
    }

    fn check_liveness(&mut self, now: Instant) {
        let heartbeat = ControlMessage::JobManagerHeartbeat {
            leader: self.config.address,
            term: self.term,
            final_completed: self.stop_completed().or_else(|| {
                self.final_checkpoint
                    .completed_final(self.coordinator.latest_completed().map(|c| c.checkpoint_id))
            }),
        };
        self.send_to_every_taskmanager(&heartbeat);
        let timeout = self.config.heartbeat_timeout;
        let lost: Vec<TaskManagerId> = self
            .taskmanagers
            .iter()
            .filter(|(_, tm)| now.since(tm.last_heartbeat_at) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for taskmanager in lost {
            self.on_taskmanager_lost(now, taskmanager, TaskManagerLoss::NoHeartbeat { timeout });
        }
    }

    fn on_taskmanager_lost(
        &mut self,
        now: Instant,
        taskmanager: TaskManagerId,
        loss: TaskManagerLoss,
    ) {
        self.taskmanagers.remove(&taskmanager);
        let reason = format!("{taskmanager} {loss}");
        self.event(EngineEvent::TaskManagerLost { taskmanager, loss });
        let hosted: BTreeSet<SubtaskId> = self
            .placement
            .iter()
            .filter(|(_, tm)| **tm == taskmanager)
            .map(|(subtask, _)| *subtask)
            .collect();
        if !hosted.is_empty() && self.status.is_active() {
            self.fail_over(now, reason, hosted);
        }
    }

    fn on_end_of_data(&mut self, now: Instant, attempt: AttemptNumber, subtask: SubtaskId) {
        if !self.is_current(attempt, subtask) {
            return; // From a cancelled attempt.
        }
        let event = match self.final_checkpoint.on_end_of_data(subtask) {
            Ok(EndOfData::AllSourcesAtEnd) if self.final_checkpoint.is_draining() => {
                self.event(EngineEvent::AllSourcesAtEnd);
                return self.trigger_stop_savepoint(now);
            }
            Ok(EndOfData::AllSourcesAtEnd) => EngineEvent::AllSourcesAtEnd,
            Ok(EndOfData::Recorded | EndOfData::Repeated) => return,
            Err(error) => EngineEvent::EndOfDataIgnored {
                error: error.to_string(),
            },
        };
        self.event(event);
    }

    fn on_heartbeat(&mut self, now: Instant, heartbeat: Heartbeat) {
        let Heartbeat {
            taskmanager,
            instance,
            slots,
            data_address,
            control_address,
            tasks,
        } = heartbeat;
        let known_instance = self.taskmanagers.get(&taskmanager).map(|tm| tm.instance);
        if known_instance.is_some_and(|known| known != instance) {
            // The process restarted: the old instance and its tasks are gone.
            self.on_taskmanager_lost(now, taskmanager, TaskManagerLoss::Restarted);
        }
        let registration = self
            .taskmanagers
            .entry(taskmanager)
            .or_insert_with(|| Registration {
                instance,
                slots,
                control_address,
                data_address,
                last_heartbeat_at: now,
            });
        let registered = registration.last_heartbeat_at == now && known_instance != Some(instance);
        registration.last_heartbeat_at = now;
        if registered {
            self.on_registered(taskmanager, slots, control_address);
        }
        for (attempt, subtask, status) in tasks {
            self.on_task_status(now, attempt, subtask, status);
        }
        if self.status == JobStatus::WaitingForResources {
            self.try_deploy(now);
        }
        let waiting: Vec<usize> = (0..self.region_restarts.len())
            .filter(|i| self.region_restarts[*i].phase == RegionPhase::WaitingForResources)
            .collect();
        for index in waiting {
            self.try_deploy_regions(now, index);
        }
    }

    fn on_registered(&mut self, taskmanager: TaskManagerId, slots: u32, address: SocketAddr) {
        self.event(EngineEvent::TaskManagerRegistered { taskmanager, slots });
        // A task manager given up for lost may come back with tasks of an attempt that failed
        // over: they are zombies, so cancel them (Flink frees such slots likewise).
        let hosts_current = self.placement.values().any(|tm| *tm == taskmanager);
        if self.attempt.0 > 0 && !hosts_current {
            let attempt = self.attempt;
            self.send(address, ControlMessage::Cancel { attempt });
        }
    }

    fn on_task_status(
        &mut self,
        now: Instant,
        attempt: AttemptNumber,
        subtask: SubtaskId,
        status: TaskStatus,
    ) {
        if !self.is_current(attempt, subtask) {
            return; // A report from a cancelled attempt.
        }
        let known = self.executions[&subtask].state;
        match status {
            TaskStatus::Failed(reason) => {
                let failed = BTreeSet::from([subtask]);
                return self.fail_over(now, format!("task {subtask} failed: {reason}"), failed);
            }
            TaskStatus::CheckpointUnreadable {
                checkpoint_id,
                reason,
            } => return self.on_checkpoint_unreadable(now, subtask, checkpoint_id, reason),
            TaskStatus::Running if known == ExecutionState::Deploying => {
                self.set_state(subtask, ExecutionState::Running);
            }
            TaskStatus::Finished if known != ExecutionState::Finished => {
                self.set_state(subtask, ExecutionState::Finished);
                self.coordinator.on_task_finished(now, subtask);
                if self.all_in(ExecutionState::Finished) {
                    return self.on_all_finished(now);
                }
            }
            TaskStatus::Running | TaskStatus::Finished => return,
        }
        let all_started = !self
            .executions
            .values()
            .any(|e| e.state == ExecutionState::Deploying);
        if known == ExecutionState::Deploying && !self.region_restarts.is_empty() {
            return self.on_region_task_running(now);
        }
        if matches!(self.status, JobStatus::Deploying { .. }) && all_started {
            self.status = JobStatus::Running;
            self.event(EngineEvent::JobRunning {
                attempt: self.attempt,
            });
            let tasks = self.executions.keys().copied().collect();
            self.coordinator.start(now, tasks);
        }
    }

    fn set_state(&mut self, subtask: SubtaskId, state: ExecutionState) {
        self.executions
            .get_mut(&subtask)
            .expect("a deployed task")
            .state = state;
    }

    fn all_in(&self, state: ExecutionState) -> bool {
        self.executions.values().all(|e| e.state == state)
    }

    /// A redeployed task runs: a region failover whose tasks all run is done; once none is
    /// left the job is whole and checkpointing resumes.
    fn on_region_task_running(&mut self, now: Instant) {
        let executions = &self.executions;
        let (done, restarting): (Vec<RegionRestart>, Vec<RegionRestart>) =
            std::mem::take(&mut self.region_restarts)
                .into_iter()
                .partition(|r| {
                    matches!(r.phase, RegionPhase::Deploying { .. })
                        && r.tasks.iter().all(|t| {
                            executions
                                .get(t)
                                .is_some_and(|e| e.state == ExecutionState::Running)
                        })
                });
        self.region_restarts = restarting;
        for restart in done {
            let attempt = restart
                .tasks
                .iter()
                .filter_map(|t| self.executions.get(t).map(|e| e.attempt))
                .max()
                .expect("deployed tasks");
            let tasks = restart.tasks.into_iter().collect();
            self.event(EngineEvent::RegionsRunning { attempt, tasks });
        }
        if self.region_restarts.is_empty() {
            let tasks = self.executions.keys().copied().collect();
            self.coordinator.start(now, tasks);
        }
    }

    fn on_all_finished(&mut self, now: Instant) {
        let attempt = self.attempt;
        self.terminate(
            now,
            JobStatus::Finished,
            EngineEvent::JobFinished { attempt },
        );
    }

    /// The job ends with `status`: checkpointing stops, the retained checkpoints are kept or
    /// discarded as the retention policy says (the discards before the terminal event, which
    /// the node holds until they are done), then `event` reports the end.
    fn terminate(&mut self, now: Instant, status: JobStatus, event: EngineEvent) {
        assert!(status.is_terminal());
        let finished = status == JobStatus::Finished;
        let failed = status == JobStatus::Failed;
        let (kept, discarded) = self.coordinator.shut_down(now, finished, failed);
        self.status = status;
        self.drain_coordinator(now);
        if !(kept.is_empty() && discarded.is_empty()) {
            let policy = self.config.checkpoint.retention.name();
            self.event(EngineEvent::CheckpointsAtJobEnd {
                kept,
                discarded,
                policy,
            });
        }
        self.event(event);
    }

    /// The user cancelled the job (`flink cancel`): its tasks are cancelled and it ends
    /// CANCELED, whatever it was doing.
    fn on_cancel_job(&mut self, now: Instant) {
        if self.status.is_terminal() {
            return;
        }
        self.cancel_tasks();
        let attempt = self.attempt;
        self.terminate(
            now,
            JobStatus::Canceled,
            EngineEvent::JobCanceled { attempt },
        );
    }

    fn offers(&self) -> Vec<SlotOffer> {
        self.taskmanagers
            .iter()
            .map(|(id, tm)| SlotOffer {
                taskmanager: *id,
                slots: tm.slots,
                data_address: tm.data_address,
            })
            .collect()
    }

    fn try_deploy(&mut self, now: Instant) {
        assert_eq!(self.status, JobStatus::WaitingForResources);
        let offers = self.offers();
        let Some(placement) = place(&self.graph, &offers) else {
            return;
        };
        if !self.next_attempt(now) {
            return;
        }
        self.placement.clear();
        self.executions.clear();
        self.deploy(placement, DeployScope::Job);
        self.status = JobStatus::Deploying {
            deadline: now.add(self.config.deploy_timeout),
        };
    }

    /// Numbers the next attempt; false (and the job failed) when the term has none left.
    fn next_attempt(&mut self, now: Instant) -> bool {
        if self.attempt >= self.term.last_attempt() {
            if self.status.is_active() {
                self.cancel_tasks();
            }
            self.fail_for_good(
                now,
                "deployment".to_string(),
                format!(
                    "{} used all its attempt numbers ({} restarts)",
                    self.term,
                    crate::runtime::leadership::ATTEMPTS_PER_TERM - 1
                ),
            );
            return false;
        }
        self.attempt = AttemptNumber(self.attempt.0 + 1);
        true
    }

    /// Deploys the tasks of `placement` in the (new) current attempt, restoring the latest
    /// completed checkpoint.
    fn deploy(&mut self, placement: Placement, scope: DeployScope) {
        let offers = self.offers();
        let restore = self.coordinator.latest_completed();
        let per_taskmanager = descriptors(&self.graph, &placement, &offers, restore);
        let attempt = self.attempt;
        self.event(EngineEvent::Deploying {
            attempt,
            taskmanagers: per_taskmanager.len(),
            restore: restore.map(|c| c.checkpoint_id),
            region: (scope == DeployScope::Regions).then(|| placement.keys().copied().collect()),
        });
        for (taskmanager, tasks) in per_taskmanager {
            let to = self.taskmanagers[&taskmanager].control_address;
            self.send(
                to,
                ControlMessage::Deploy {
                    attempt,
                    tasks,
                    scope,
                },
            );
        }
        let deploying = Execution {
            attempt,
            state: ExecutionState::Deploying,
        };
        for (subtask, taskmanager) in placement {
            self.executions.insert(subtask, deploying);
            self.placement.insert(subtask, taskmanager);
        }
    }

    /// Places the restarting regions' tasks in free slots (slot sharing: the tasks of one
    /// subtask index share a slot), preferring where they ran; `None` while too few slots
    /// are free.
    fn place_regions(
        &self,
        tasks: &BTreeSet<SubtaskId>,
        previous: &Placement,
    ) -> Option<Placement> {
        let mut slot_of_index: BTreeMap<u32, TaskManagerId> = self
            .placement
            .iter()
            .map(|(subtask, tm)| (subtask.subtask_index, *tm))
            .collect();
        let used = |slots: &BTreeMap<u32, TaskManagerId>, tm: TaskManagerId| {
            slots.values().filter(|t| **t == tm).count() as u32
        };
        let mut placement = Placement::new();
        for task in tasks {
            let taskmanager = match slot_of_index.get(&task.subtask_index) {
                Some(shared) => *shared,
                None => {
                    let free = |tm: &TaskManagerId| {
                        self.taskmanagers
                            .get(tm)
                            .is_some_and(|r| used(&slot_of_index, *tm) < r.slots)
                    };
                    let before = previous.get(task).copied().filter(|tm| free(tm));
                    let any = || self.taskmanagers.keys().copied().find(|tm| free(tm));
                    before.or_else(any)?
                }
            };
            slot_of_index.insert(task.subtask_index, taskmanager);
            placement.insert(*task, taskmanager);
        }
        Some(placement)
    }

    /// The restart delay of region failover `index` passed (or slots freed up): deploy its
    /// tasks.
    fn try_deploy_regions(&mut self, now: Instant, index: usize) {
        let Some(restart) = self.region_restarts.get(index) else {
            return; // A full failover meanwhile dropped it.
        };
        let Some(placement) = self.place_regions(&restart.tasks, &restart.previous) else {
            self.region_restarts[index].phase = RegionPhase::WaitingForResources;
            return;
        };
        if !self.next_attempt(now) {
            return;
        }
        self.deploy(placement, DeployScope::Regions);
        let deadline = now.add(self.config.deploy_timeout);
        self.region_restarts[index].phase = RegionPhase::Deploying { deadline };
    }

    /// `failed` tasks (none: the job as a whole) failed: the failover strategy says what
    /// restarts.
    fn fail_over(&mut self, now: Instant, reason: String, failed: BTreeSet<SubtaskId>) {
        match self.restart_scope(&failed) {
            Restart::Job => self.fail_over_job(now, reason),
            Restart::Regions(tasks) => self.fail_over_regions(now, reason, tasks),
        }
    }

    /// What a failure of `failed` restarts. Region failover needs the job running: while a
    /// whole deployment is under way, or once the job is finishing (a final checkpoint
    /// triggered, a task finished), the job restarts whole. Regions restarting already go on
    /// each on its own.
    fn restart_scope(&self, failed: &BTreeSet<SubtaskId>) -> Restart {
        let steady = self.status == JobStatus::Running
            && self.stop.is_none()
            && !self.final_checkpoint.is_finishing()
            && !self
                .executions
                .values()
                .any(|e| e.state == ExecutionState::Finished);
        if !steady {
            return Restart::Job;
        }
        self.config.failover.to_restart(&self.regions, failed)
    }

    /// Region failover: `tasks` (whole regions) are cancelled and restart from the latest
    /// completed checkpoint after the restart strategy's delay; the other tasks run on.
    /// Pending checkpoints are aborted (the failed tasks never acknowledge them).
    fn fail_over_regions(&mut self, now: Instant, reason: String, tasks: BTreeSet<SubtaskId>) {
        let attempt = tasks
            .iter()
            .filter_map(|t| self.executions.get(t).map(|e| e.attempt))
            .max()
            .unwrap_or(self.attempt);
        self.event(EngineEvent::FailingOver {
            attempt,
            reason: reason.clone(),
            region: Some(tasks.iter().copied().collect()),
        });
        self.coordinator.stop(now);
        let mut previous = Placement::new();
        for task in &tasks {
            self.executions.remove(task);
            if let Some(taskmanager) = self.placement.remove(task) {
                previous.insert(*task, taskmanager);
            }
        }
        let hosts: BTreeSet<TaskManagerId> = previous.values().copied().collect();
        for taskmanager in hosts {
            let subtasks = previous
                .iter()
                .filter(|(_, tm)| **tm == taskmanager)
                .map(|(subtask, _)| *subtask)
                .collect();
            if let Some(address) = self
                .taskmanagers
                .get(&taskmanager)
                .map(|r| r.control_address)
            {
                let attempt = self.attempt;
                self.send(address, ControlMessage::CancelTasks { attempt, subtasks });
            }
        }
        self.final_checkpoint.reset_sources(&tasks);
        // A region redeployed and failing again before it ran restarts anew.
        self.region_restarts.retain(|r| r.tasks.is_disjoint(&tasks));
        match self.restart.on_failure(now, &reason) {
            RestartDecision::RestartAt(at) => {
                self.event(EngineEvent::Restarting {
                    failed_at: now,
                    restart_at: at,
                });
                self.region_restarts.push(RegionRestart {
                    tasks,
                    previous,
                    phase: RegionPhase::Waiting { at },
                });
            }
            RestartDecision::GiveUp(why) => {
                self.cancel_tasks();
                self.fail_for_good(now, reason, why)
            }
        }
    }

    /// Full failover: every task is cancelled; the job restarts whole after the restart
    /// strategy's delay.
    fn fail_over_job(&mut self, now: Instant, reason: String) {
        self.cancel_attempt(now, &reason);
        match self.restart.on_failure(now, &reason) {
            RestartDecision::RestartAt(at) => {
                self.event(EngineEvent::Restarting {
                    failed_at: now,
                    restart_at: at,
                });
                self.status = JobStatus::Restarting { at };
            }
            RestartDecision::GiveUp(why) => self.fail_for_good(now, reason, why),
        }
    }

    /// A task could not read checkpoint `checkpoint_id` (a file corrupt or missing): it is
    /// never restored again; the job falls back to the newest intact retained checkpoint, or
    /// fails when there is none (restoring nothing would lose its state silently).
    fn on_checkpoint_unreadable(
        &mut self,
        now: Instant,
        subtask: SubtaskId,
        checkpoint_id: CheckpointId,
        reason: String,
    ) {
        self.coordinator.drop_completed(checkpoint_id);
        let fallback = self.coordinator.latest_completed().map(|c| c.checkpoint_id);
        self.event(EngineEvent::CheckpointUnusable {
            checkpoint_id,
            reason: reason.clone(),
            fallback,
        });
        let failure = format!("task {subtask} could not restore: {reason}");
        if fallback.is_some() {
            // Every task restores the fallback, so the whole job restarts.
            return self.fail_over(now, failure, BTreeSet::new());
        }
        self.cancel_attempt(now, &failure);
        let why = format!(
            "no intact retained checkpoint to fall back to from checkpoint {checkpoint_id}"
        );
        self.fail_for_good(now, failure, why);
    }

    /// The job ends FAILED without a restart.
    fn fail_for_good(&mut self, now: Instant, reason: String, why: String) {
        let event = EngineEvent::JobFailed {
            failed_at: now,
            attempt: self.attempt,
            reason,
            why,
        };
        self.terminate(now, JobStatus::Failed, event);
    }

    /// Ends the current attempt: its checkpoints stop, its tasks are cancelled.
    fn cancel_attempt(&mut self, now: Instant, reason: &str) {
        assert!(
            self.status.is_active(),
            "only a deployed attempt fails over"
        );
        self.event(EngineEvent::FailingOver {
            attempt: self.attempt,
            reason: reason.to_string(),
            region: None,
        });
        self.coordinator.stop(now);
        if let Some(stop) = self.stop.take() {
            // A triggered savepoint still pending is reported failed by its abort; otherwise
            // the stop fails here: before its savepoint (a drain), or after it, while the job
            // finished.
            if stop.completed || stop.savepoint.is_none() {
                self.event(EngineEvent::SavepointFailed {
                    checkpoint_id: stop.savepoint,
                    reason: format!("the job failed over while it stopped: {reason}"),
                });
            }
        }
        self.cancel_tasks();
    }

    /// Every task of the current attempt (and older) is told to cancel.
    fn cancel_tasks(&mut self) {
        let cancel = ControlMessage::Cancel {
            attempt: self.attempt,
        };
        self.send_to_every_taskmanager(&cancel);
        self.placement.clear();
        self.executions.clear();
        self.region_restarts.clear();
        self.final_checkpoint.reset();
    }

    fn drain_coordinator(&mut self, now: Instant) {
        while let Some(output) = self.coordinator.poll_output() {
            match output {
                Output::Trigger { checkpoint_id, .. }
                    if checkpoint_id > self.term.last_checkpoint_id() =>
                {
                    let why = format!("{} used all its checkpoint ids", self.term);
                    let failure = format!("checkpoint {checkpoint_id} not triggered");
                    self.cancel_attempt(now, &failure);
                    return self.fail_for_good(now, failure, why);
                }
                Output::Trigger {
                    checkpoint_id,
                    timestamp,
                    snapshot,
                } => {
                    // The final checkpoint aligns, like a savepoint: no barrier overtakes the
                    // last records, so the sinks' last transactions hold them all.
                    let final_checkpoint = self.final_checkpoint.on_trigger(checkpoint_id);
                    let kind = self.barrier_kind(final_checkpoint || snapshot.is_savepoint());
                    let event = match snapshot {
                        SnapshotType::Checkpoint => EngineEvent::CheckpointTriggered {
                            checkpoint_id,
                            final_checkpoint,
                        },
                        SnapshotType::Savepoint { format, terminate } => {
                            EngineEvent::SavepointTriggered {
                                checkpoint_id,
                                format,
                                terminate,
                            }
                        }
                    };
                    self.event(event);
                    let barrier = Barrier {
                        checkpoint_id,
                        timestamp,
                        kind,
                        snapshot,
                    };
                    for subtask in self.graph.source_subtasks() {
                        self.send_to_task(subtask, |attempt| ControlMessage::TriggerCheckpoint {
                            attempt,
                            subtask,
                            barrier,
                        });
                    }
                }
                Output::WriteMetadata(checkpoint) => {
                    self.commands.push_back(Command::WriteMetadata(checkpoint))
                }
                Output::Completed(checkpoint_id) => {
                    let checkpoint = self
                        .coordinator
                        .latest_completed()
                        .expect("just completed")
                        .clone();
                    self.event(EngineEvent::CheckpointCompleted { checkpoint });
                    self.broadcast(|attempt| ControlMessage::NotifyCheckpointComplete {
                        attempt,
                        checkpoint_id,
                    });
                    if self.final_checkpoint.on_completed(checkpoint_id) {
                        for subtask in self.graph.source_subtasks() {
                            self.send_to_task(subtask, |attempt| ControlMessage::FinishSource {
                                attempt,
                                subtask,
                            });
                        }
                    }
                }
                Output::Aborted {
                    checkpoint_id,
                    cause,
                } => {
                    self.event(EngineEvent::CheckpointAborted {
                        checkpoint_id,
                        cause,
                    });
                    self.broadcast(|attempt| ControlMessage::NotifyCheckpointAborted {
                        attempt,
                        checkpoint_id,
                    });
                }
                Output::SavepointCompleted(checkpoint) => self.on_savepoint_completed(checkpoint),
                Output::SavepointFailed {
                    checkpoint_id,
                    reason,
                } => {
                    // Savepoints run one at a time: a failure before completion is the stop's.
                    if self.stop.is_some_and(|stop| !stop.completed) {
                        self.stop = None;
                    }
                    self.event(EngineEvent::SavepointFailed {
                        checkpoint_id,
                        reason,
                    });
                }
                Output::FailJob(reason) => {
                    if self.status.is_active() {
                        // A checkpoint failure fails the job over whole, as in Flink.
                        self.fail_over(now, reason, BTreeSet::new());
                    }
                }
                Output::Discard(checkpoint_id) => self
                    .commands
                    .push_back(Command::DiscardCheckpoint(checkpoint_id)),
            }
        }
    }

    /// Aligned barriers for a savepoint or the final checkpoint (never timing out to
    /// unaligned), except in at-least-once mode, whose tasks only track barriers.
    fn barrier_kind(&self, aligned: bool) -> BarrierKind {
        match self.config.checkpoint.mode {
            CheckpointingMode::AtLeastOnce => BarrierKind::AtLeastOnce,
            _ if aligned => BarrierKind::Aligned,
            _ => self.config.checkpoint.barrier_kind(),
        }
    }

    /// The client asks for a savepoint, or to stop the job with one. A request that cannot
    /// be served is answered with `SavepointFailed` (what the CLI prints); the job runs on.
    fn on_savepoint_request(
        &mut self,
        now: Instant,
        format: SavepointFormat,
        terminate: bool,
        drain: bool,
    ) {
        let refused = if self.config.checkpoint.storage.savepoint_dir.is_none() {
            Some("no savepoint directory: set execution.checkpointing.savepoint-dir".to_string())
        } else if self.status != JobStatus::Running {
            Some(format!("the job is {:?}, not running", self.status))
        } else if self.stop.is_some() {
            Some("a stop-with-savepoint is already under way".to_string())
        } else {
            None
        };
        if let Some(reason) = refused {
            let checkpoint_id = None;
            return self.event(EngineEvent::SavepointFailed {
                checkpoint_id,
                reason,
            });
        }
        if !terminate {
            let savepoint = SavepointInfo {
                format,
                terminate: false,
            };
            if let Err(refused) = self.coordinator.trigger_savepoint(now, savepoint) {
                let reason = refused.to_string();
                self.event(EngineEvent::SavepointFailed {
                    checkpoint_id: None,
                    reason,
                });
            }
            return;
        }
        self.stop = Some(StopWithSavepoint {
            format,
            drain,
            savepoint: None,
            completed: false,
        });
        if !drain {
            return self.trigger_stop_savepoint(now);
        }
        self.final_checkpoint.drain();
        self.event(EngineEvent::DrainingSources);
        for subtask in self.graph.source_subtasks() {
            self.send_to_task(subtask, |attempt| ControlMessage::EndInput {
                attempt,
                subtask,
            });
        }
    }

    /// Triggers the stop's savepoint: at once, or with drain once every source ended.
    fn trigger_stop_savepoint(&mut self, now: Instant) {
        let Some(stop) = self.stop else {
            return;
        };
        let savepoint = SavepointInfo {
            format: stop.format,
            terminate: true,
        };
        let next = self.coordinator.next_checkpoint_id();
        match self.coordinator.trigger_savepoint(now, savepoint) {
            Ok(()) => {
                self.stop = Some(StopWithSavepoint {
                    savepoint: Some(next),
                    ..stop
                })
            }
            Err(refused) => {
                self.stop = None;
                let reason = refused.to_string();
                self.event(EngineEvent::SavepointFailed {
                    checkpoint_id: None,
                    reason,
                });
            }
        }
    }

    /// A savepoint is durable. Stop-with-savepoint's completion is notified to every task
    /// (the sinks commit) and the sources end; a plain one notifies nothing (Flink 1.15+).
    fn on_savepoint_completed(&mut self, checkpoint: CompletedCheckpoint) {
        let checkpoint_id = checkpoint.checkpoint_id;
        let directory = self
            .config
            .checkpoint
            .storage
            .savepoint_directory(checkpoint_id)
            .expect("a savepoint is triggered only with a savepoint directory");
        let terminate = checkpoint.savepoint.is_some_and(|s| s.terminate);
        self.event(EngineEvent::SavepointCompleted {
            checkpoint,
            directory,
        });
        let Some(stop) = self.stop.as_mut().filter(|_| terminate) else {
            return;
        };
        stop.completed = true;
        stop.savepoint = Some(checkpoint_id);
        self.broadcast(|attempt| ControlMessage::NotifyCheckpointComplete {
            attempt,
            checkpoint_id,
        });
        for subtask in self.graph.source_subtasks() {
            self.send_to_task(subtask, |attempt| ControlMessage::FinishSource {
                attempt,
                subtask,
            });
        }
    }

    /// The stop's savepoint, once complete (its notice repeats on heartbeats, as the final
    /// checkpoint's: no later checkpoint's notice would reach a sink that lost it).
    fn stop_completed(&self) -> Option<CheckpointId> {
        self.stop.filter(|stop| stop.completed)?.savepoint
    }

    /// To the deployed task of `subtask`, addressed to its attempt.
    fn send_to_task(
        &mut self,
        subtask: SubtaskId,
        message: impl Fn(AttemptNumber) -> ControlMessage,
    ) {
        let address = self
            .placement
            .get(&subtask)
            .and_then(|id| self.taskmanagers.get(id))
            .map(|tm| tm.control_address);
        let attempt = self.executions.get(&subtask).map(|e| e.attempt);
        if let (Some(address), Some(attempt)) = (address, attempt) {
            self.send(address, message(attempt));
        }
    }

    /// To every task manager that hosts a deployed task, once per attempt it hosts.
    fn broadcast(&mut self, message: impl Fn(AttemptNumber) -> ControlMessage) {
        let hosts: BTreeSet<(TaskManagerId, AttemptNumber)> = self
            .placement
            .iter()
            .map(|(subtask, tm)| (*tm, self.executions[subtask].attempt))
            .collect();
        for (taskmanager, attempt) in hosts {
            if let Some(address) = self
                .taskmanagers
                .get(&taskmanager)
                .map(|tm| tm.control_address)
            {
                self.send(address, message(attempt));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::jobs::word_count;
    use crate::checkpoint::coordinator::{CheckpointingMode, TaskAck};
    use crate::checkpoint::state_assignment::StateAssignment;
    use crate::ids::CheckpointId;

    const INTERVAL_MS: u64 = 100;
    const RESTART_DELAY_MS: u64 = 500;
    const HEARTBEAT_TIMEOUT_MS: u64 = 5_000;
    const DEPLOY_TIMEOUT_MS: u64 = 10_000;

    fn config() -> JobMasterConfig {
        JobMasterConfig {
            checkpoint: CheckpointConfig {
                interval: Some(Duration::from_ms(INTERVAL_MS)),
                ..CheckpointConfig::default()
            },
            restart: RestartStrategyConfig::FixedDelay {
                attempts: 2,
                delay: Duration::from_ms(RESTART_DELAY_MS),
            },
            restart_seed: 1,
            failover: FailoverStrategy::Region,
            address: SocketAddr::from(([10, 0, 0, 1], 7002)),
            heartbeat_interval: Duration::from_ms(1_000),
            heartbeat_timeout: Duration::from_ms(HEARTBEAT_TIMEOUT_MS),
            deploy_timeout: Duration::from_ms(DEPLOY_TIMEOUT_MS),
            final_checkpoint: false,
            high_availability: false,
        }
    }

    fn control_address(tm: u32) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, tm as u8], 7002))
    }

    /// A job master for the word count at parallelism 2 (two slots), and the clock.
    struct Harness {
        master: JobMaster,
        now: Instant,
    }

    impl Harness {
        fn new(config: JobMasterConfig) -> Harness {
            Harness::with_job(config, word_count(2, 2))
        }

        fn with_job(config: JobMasterConfig, job: crate::api::job::Job) -> Harness {
            let graph = Arc::new(ExecutionGraph::build(&job));
            let mut master = JobMaster::new(graph, config, Instant::ZERO);
            let started = master.poll_command();
            assert!(matches!(
                started,
                Some(Command::Event(EngineEvent::JobStarted { .. }))
            ));
            Harness {
                master,
                now: Instant::ZERO,
            }
        }

        fn at(&mut self, ms: u64) -> &mut Self {
            assert!(Instant::from_ms(ms) >= self.now, "time moves forward");
            self.now = Instant::from_ms(ms);
            self
        }

        fn heartbeat(&mut self, tm: u32, instance: u64, slots: u32) -> Vec<Command> {
            let heartbeat = Heartbeat {
                taskmanager: TaskManagerId(tm),
                instance,
                slots,
                data_address: SocketAddr::from(([10, 0, 0, tm as u8], 7001)),
                control_address: control_address(tm),
                tasks: Vec::new(),
            };
            self.control(ControlMessage::Heartbeat(heartbeat))
        }

        fn control(&mut self, message: ControlMessage) -> Vec<Command> {
            self.master.on_control(self.now, message);
            self.drain()
        }

        fn timers(&mut self) -> Vec<Command> {
            self.master.on_timers(self.now);
            self.drain()
        }

        fn drain(&mut self) -> Vec<Command> {
            std::iter::from_fn(|| self.master.poll_command()).collect()
        }

        /// The attempt of `task`'s deployed execution (the newest if none is deployed).
        fn attempt_of(&self, task: SubtaskId) -> AttemptNumber {
            self.master
                .executions()
                .get(&task)
                .map_or(self.master.attempt(), |e| e.attempt)
        }

        fn status(&mut self, index: (u32, u32), status: TaskStatus) -> Vec<Command> {
            let attempt = self.attempt_of(SubtaskId::new(index.0, index.1));
            self.control(ControlMessage::TaskStatusChanged {
                attempt,
                subtask: SubtaskId::new(index.0, index.1),
                status,
            })
        }

        /// Two task managers of one slot each register; every task reports running.
        fn running(&mut self) {
            self.heartbeat(1, 11, 1);
            self.heartbeat(2, 22, 1);
            for task in self.master.executions().keys().copied().collect::<Vec<_>>() {
                self.status((task.vertex_id.0, task.subtask_index), TaskStatus::Running);
            }
            assert_eq!(self.master.status(), JobStatus::Running);
        }

        /// Runs to the next trigger and acks it from every task; returns the checkpoint the
        /// job master asks to write the `_metadata` of.
        fn ack_next_checkpoint(&mut self) -> CompletedCheckpoint {
            // The next timers up to the trigger (a liveness check may come first).
            let checkpoint_id = (0..8)
                .find_map(|_| {
                    self.now = self.master.poll_timeout().expect("a trigger is due");
                    events(&self.timers()).iter().find_map(|e| match e {
                        EngineEvent::CheckpointTriggered { checkpoint_id, .. } => {
                            Some(*checkpoint_id)
                        }
                        _ => None,
                    })
                })
                .expect("the timers triggered a checkpoint");
            self.ack_all(checkpoint_id)
        }

        /// Every task acks `checkpoint_id`; returns the `_metadata` the last ack asks for.
        fn ack_all(&mut self, checkpoint_id: CheckpointId) -> CompletedCheckpoint {
            let mut commands = Vec::new();
            for task in self.master.executions().keys().copied().collect::<Vec<_>>() {
                let attempt = self.attempt_of(task);
                commands.extend(self.control(ControlMessage::AcknowledgeCheckpoint {
                    attempt,
                    subtask: task,
                    checkpoint_id,
                    ack: ack(task),
                }));
            }
            commands
                .into_iter()
                .find_map(|c| match c {
                    Command::WriteMetadata(checkpoint) => Some(checkpoint),
                    _ => None,
                })
                .expect("the last ack asks for the metadata")
        }

        /// Runs to the next trigger and completes that checkpoint.
        fn complete_next_checkpoint(&mut self) -> (CheckpointId, Vec<Command>) {
            let checkpoint = self.ack_next_checkpoint();
            let checkpoint_id = checkpoint.checkpoint_id;
            self.master
                .on_metadata_written(self.now, checkpoint, Ok(()));
            (checkpoint_id, self.drain())
        }
    }

    /// Asks for a savepoint and acks it at every task; returns what its completion sent.
    fn savepoint(h: &mut Harness, terminate: bool) -> Vec<Command> {
        let mut config = config();
        config.checkpoint.storage.savepoint_dir = Some("savepoints".into());
        h.master.config.checkpoint = config.checkpoint;
        let request = ControlMessage::TriggerSavepoint {
            format: SavepointFormat::Canonical,
            terminate,
            drain: false,
        };
        let triggered = h.control(request);
        let checkpoint_id = events(&triggered)
            .iter()
            .find_map(|e| match e {
                EngineEvent::SavepointTriggered { checkpoint_id, .. } => Some(*checkpoint_id),
                _ => None,
            })
            .expect("triggered at once: nothing in flight");
        let barriers = sent_picked(&triggered, |m| match m {
            ControlMessage::TriggerCheckpoint { barrier, .. } => Some(barrier),
            _ => None,
        });
        assert!(barriers
            .iter()
            .all(|(_, b)| b.kind == BarrierKind::Aligned && b.snapshot.terminates() == terminate));
        let written = h.ack_all(checkpoint_id);
        assert!(written.savepoint.is_some());
        h.master.on_metadata_written(h.now, written, Ok(()));
        h.drain()
    }

    #[test]
    fn a_plain_savepoint_notifies_nothing_and_a_stop_commits_then_ends_the_sources() {
        let mut h = Harness::new(config());
        h.running();
        let plain = savepoint(&mut h, false);
        assert!(events(&plain)
            .iter()
            .any(|e| matches!(e, EngineEvent::SavepointCompleted { directory, .. } if directory.starts_with("savepoints/savepoint-"))));
        let notified = |commands: &[Command]| {
            sent(commands)
                .iter()
                .any(|(_, m)| matches!(m, ControlMessage::NotifyCheckpointComplete { .. }))
        };
        let finished = |commands: &[Command]| {
            sent(commands)
                .iter()
                .filter(|(_, m)| matches!(m, ControlMessage::FinishSource { .. }))
                .count()
        };
        assert!(!notified(&plain), "Flink 1.15+: no side effects");
        assert_eq!(finished(&plain), 0);
        let stop = savepoint(&mut h, true);
        assert!(notified(&stop), "the stop's savepoint commits");
        assert_eq!(finished(&stop), 2, "then both sources end");
        let refused = h.control(ControlMessage::TriggerSavepoint {
            format: SavepointFormat::Native,
            terminate: false,
            drain: false,
        });
        assert!(events(&refused).iter().any(|e| matches!(e, EngineEvent::SavepointFailed { reason, .. } if reason.contains("already under way"))));
    }

    fn ack(task: SubtaskId) -> TaskAck {
        TaskAck {
            state: crate::checkpoint::storage::StateHandle::File(format!("state-{task}")),
            state_size_bytes: 8,
            alignment_duration: Duration::ZERO,
            unaligned: false,
            in_flight_bytes: 0,
            operators: vec![if task.vertex_id.0 == 0 {
                "source"
            } else {
                "counter"
            }
            .into()],
            chain: Vec::new(),
        }
    }

    fn events(commands: &[Command]) -> Vec<EngineEvent> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Event(event) => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    fn sent(commands: &[Command]) -> Vec<(SocketAddr, ControlMessage)> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::Send { to, message } => Some((*to, message.clone())),
                _ => None,
            })
            .collect()
    }

    /// What `pick` takes from each control message sent, with its address.
    fn sent_picked<T>(
        commands: &[Command],
        pick: impl Fn(ControlMessage) -> Option<T>,
    ) -> Vec<(SocketAddr, T)> {
        sent(commands)
            .into_iter()
            .filter_map(|(to, message)| pick(message).map(|picked| (to, picked)))
            .collect()
    }

    fn deploys(commands: &[Command]) -> Vec<(SocketAddr, AttemptNumber, Vec<SubtaskId>)> {
        sent_picked(commands, |message| match message {
            ControlMessage::Deploy { attempt, tasks, .. } => {
                Some((attempt, tasks.iter().map(|t| t.subtask).collect()))
            }
            _ => None,
        })
        .into_iter()
        .map(|(to, (attempt, tasks))| (to, attempt, tasks))
        .collect()
    }

    fn cancels(commands: &[Command]) -> Vec<(SocketAddr, AttemptNumber)> {
        sent_picked(commands, |message| match message {
            ControlMessage::Cancel { attempt } => Some(attempt),
            _ => None,
        })
    }

    fn cancelled_tasks(commands: &[Command]) -> Vec<(SocketAddr, AttemptNumber, Vec<SubtaskId>)> {
        sent_picked(commands, |message| match message {
            ControlMessage::CancelTasks { attempt, subtasks } => Some((attempt, subtasks)),
            _ => None,
        })
        .into_iter()
        .map(|(to, (attempt, subtasks))| (to, attempt, subtasks))
        .collect()
    }

    fn notices(commands: &[Command]) -> Vec<(SocketAddr, AttemptNumber)> {
        sent_picked(commands, |message| match message {
            ControlMessage::NotifyCheckpointComplete { attempt, .. } => Some(attempt),
            _ => None,
        })
    }

    /// The forward job at parallelism 2 (two pipelined regions) under `failover`, running,
    /// with one checkpoint completed; then pipeline 1 fails.
    fn forward_job_fails_in_pipeline_1(
        failover: FailoverStrategy,
    ) -> (Harness, CheckpointId, Vec<Command>) {
        let config = JobMasterConfig {
            failover,
            ..config()
        };
        let mut h = Harness::with_job(config, crate::api::jobs::forward(2));
        h.running();
        let (checkpoint_id, _) = h.complete_next_checkpoint();
        let failed_at = h.now.as_ms() + 10;
        let failed = h
            .at(failed_at)
            .status((0, 1), TaskStatus::Failed("boom".into()));
        (h, checkpoint_id, failed)
    }

    #[test]
    fn region_failover_restarts_only_the_failed_pipeline_and_the_other_runs_on() {
        let (mut h, checkpoint_id, failed) =
            forward_job_fails_in_pipeline_1(FailoverStrategy::Region);
        let (kept, restarted) = (SubtaskId::new(0, 0), SubtaskId::new(0, 1));
        assert!(matches!(
            &events(&failed)[..],
            [EngineEvent::FailingOver { region: Some(tasks), .. }, EngineEvent::Restarting { .. }]
                if tasks == &vec![restarted]
        ));
        assert!(cancels(&failed).is_empty(), "the other pipeline runs on");
        assert_eq!(
            cancelled_tasks(&failed),
            vec![(control_address(2), AttemptNumber(1), vec![restarted])]
        );
        assert_eq!(h.master.status(), JobStatus::Running);
        assert_eq!(
            h.master.executions().keys().collect::<Vec<_>>(),
            vec![&kept]
        );

        let restart_at = h.master.poll_timeout().expect("the restart is due");
        h.now = restart_at;
        let redeployed = h.timers();
        assert_eq!(
            deploys(&redeployed),
            vec![(control_address(2), AttemptNumber(2), vec![restarted])]
        );
        assert!(events(&redeployed).contains(&EngineEvent::Deploying {
            attempt: AttemptNumber(2),
            taskmanagers: 1,
            restore: Some(checkpoint_id),
            region: Some(vec![restarted]),
        }));
        // A late report of the failed task's attempt is not the deployed task's.
        let stale = h.control(ControlMessage::TaskStatusChanged {
            attempt: AttemptNumber(1),
            subtask: restarted,
            status: TaskStatus::Failed("late".into()),
        });
        assert!(stale.is_empty(), "{stale:?}");

        let running = h.status((0, 1), TaskStatus::Running);
        assert!(events(&running).contains(&EngineEvent::RegionsRunning {
            attempt: AttemptNumber(2),
            tasks: vec![restarted],
        }));
        assert_eq!(h.attempt_of(kept), AttemptNumber(1));
        assert_eq!(h.attempt_of(restarted), AttemptNumber(2));
        // Checkpoints resume across both attempts: each task is addressed in its own.
        let (_, completed) = h.complete_next_checkpoint();
        assert_eq!(
            notices(&completed),
            vec![
                (control_address(1), AttemptNumber(1)),
                (control_address(2), AttemptNumber(2))
            ]
        );
    }

    #[test]
    fn full_failover_restarts_every_task_of_the_same_job() {
        let (mut h, _, failed) = forward_job_fails_in_pipeline_1(FailoverStrategy::Full);
        assert!(matches!(
            &events(&failed)[..],
            [
                EngineEvent::FailingOver { region: None, .. },
                EngineEvent::Restarting { .. }
            ]
        ));
        assert_eq!(cancels(&failed).len(), 2);
        assert!(cancelled_tasks(&failed).is_empty());
        let restart_at = h.master.poll_timeout().expect("the restart is due");
        h.now = restart_at;
        assert_eq!(deploys(&h.timers()).len(), 2);
    }

    #[test]
    fn a_second_region_failing_while_the_first_restarts_restarts_on_its_own() {
        let (mut h, _, _) = forward_job_fails_in_pipeline_1(FailoverStrategy::Region);
        let first_restart_at = h.master.poll_timeout().expect("a restart is due");
        let failed_again_at = h.now.as_ms() + 50;
        let again = h
            .at(failed_again_at)
            .status((0, 0), TaskStatus::Failed("boom again".into()));
        assert!(matches!(
            &events(&again)[..],
            [EngineEvent::FailingOver { region: Some(tasks), .. }, EngineEvent::Restarting { .. }]
                if tasks == &vec![SubtaskId::new(0, 0)]
        ));
        assert!(cancels(&again).is_empty(), "no full failover");
        assert!(h.master.executions().is_empty());
        // Each region redeploys at its own restart time, in an attempt of its own.
        h.now = first_restart_at;
        let first = h.timers();
        assert_eq!(
            deploys(&first),
            vec![(
                control_address(2),
                AttemptNumber(2),
                vec![SubtaskId::new(0, 1)]
            )]
        );
        h.now = h.master.poll_timeout().expect("the second restart is due");
        let second = h.timers();
        assert_eq!(
            deploys(&second),
            vec![(
                control_address(1),
                AttemptNumber(3),
                vec![SubtaskId::new(0, 0)]
            )]
        );
        let one_running = h.status((0, 1), TaskStatus::Running);
        assert!(events(&one_running).contains(&EngineEvent::RegionsRunning {
            attempt: AttemptNumber(2),
            tasks: vec![SubtaskId::new(0, 1)],
        }));
        // Checkpointing resumes only once every region runs.
        let later = h.now.as_ms() + 3 * INTERVAL_MS;
        let waited = h.at(later).timers();
        assert!(!events(&waited)
            .iter()
            .any(|e| matches!(e, EngineEvent::CheckpointTriggered { .. })));
        let both_running = h.status((0, 0), TaskStatus::Running);
        assert!(
            events(&both_running).contains(&EngineEvent::RegionsRunning {
                attempt: AttemptNumber(3),
                tasks: vec![SubtaskId::new(0, 0)],
            })
        );
        let (_, completed) = h.complete_next_checkpoint();
        assert_eq!(
            notices(&completed),
            vec![
                (control_address(1), AttemptNumber(3)),
                (control_address(2), AttemptNumber(2))
            ]
        );
    }

    #[test]
    fn waits_for_enough_slots_then_deploys_subtask_i_to_slot_i() {
        let mut h = Harness::new(config());
        let first = h.heartbeat(1, 11, 1);
        assert_eq!(
            events(&first),
            vec![EngineEvent::TaskManagerRegistered {
                taskmanager: TaskManagerId(1),
                slots: 1
            }]
        );
        assert!(
            deploys(&first).is_empty(),
            "one slot for a job that needs two"
        );
        assert_eq!(h.master.status(), JobStatus::WaitingForResources);
        let second = h.at(40).heartbeat(2, 22, 1);
        assert_eq!(
            deploys(&second),
            vec![
                (
                    control_address(1),
                    AttemptNumber(1),
                    vec![SubtaskId::new(0, 0), SubtaskId::new(1, 0)]
                ),
                (
                    control_address(2),
                    AttemptNumber(1),
                    vec![SubtaskId::new(0, 1), SubtaskId::new(1, 1)]
                ),
            ]
        );
        assert_eq!(
            h.master.status(),
            JobStatus::Deploying {
                deadline: Instant::from_ms(40 + DEPLOY_TIMEOUT_MS)
            }
        );
        assert!(h
            .master
            .executions()
            .values()
            .all(|e| e.state == ExecutionState::Deploying));
    }

    #[test]
    fn runs_once_every_task_reports_and_triggers_the_configured_barrier_at_the_sources() {
        let mut unaligned = config();
        unaligned.checkpoint.unaligned = true;
        unaligned.checkpoint.aligned_checkpoint_timeout = Duration::from_ms(30);
        let mut h = Harness::new(unaligned);
        h.heartbeat(1, 11, 1);
        h.heartbeat(2, 22, 1);
        for (i, task) in [(0, 0), (0, 1), (1, 0)].into_iter().enumerate() {
            let commands = h.at(10 + i as u64).status(task, TaskStatus::Running);
            assert!(events(&commands).is_empty(), "not every task runs yet");
        }
        let last = h.at(20).status((1, 1), TaskStatus::Running);
        assert_eq!(
            events(&last),
            vec![EngineEvent::JobRunning {
                attempt: AttemptNumber(1)
            }]
        );
        assert_eq!(
            h.master.poll_timeout(),
            Some(Instant::from_ms(20 + INTERVAL_MS))
        );
        let triggered = h.at(20 + INTERVAL_MS).timers();
        let triggers: Vec<(SocketAddr, SubtaskId, BarrierKind)> = sent(&triggered)
            .into_iter()
            .filter_map(|(to, message)| match message {
                ControlMessage::TriggerCheckpoint {
                    subtask, barrier, ..
                } => Some((to, subtask, barrier.kind)),
                _ => None,
            })
            .collect();
        let kind = BarrierKind::AlignedTimeoutable {
            timeout: Duration::from_ms(30),
        };
        assert_eq!(
            triggers,
            vec![
                (control_address(1), SubtaskId::new(0, 0), kind),
                (control_address(2), SubtaskId::new(0, 1), kind)
            ]
        );
    }

    #[test]
    fn the_final_checkpoint_aligns_and_its_completion_finishes_the_sources() {
        let mut final_config = config();
        final_config.final_checkpoint = true;
        final_config.checkpoint.unaligned = true;
        let mut h = Harness::new(final_config);
        h.running();
        let attempt = h.master.attempt();
        let first = h.control(ControlMessage::EndOfData {
            attempt,
            subtask: SubtaskId::new(0, 0),
        });
        assert!(first.is_empty(), "one source is still reading");
        let stale = h.control(ControlMessage::EndOfData {
            attempt: AttemptNumber(0),
            subtask: SubtaskId::new(0, 1),
        });
        assert!(
            stale.is_empty(),
            "a cancelled attempt's report counts for nothing"
        );
        let all = h.control(ControlMessage::EndOfData {
            attempt,
            subtask: SubtaskId::new(0, 1),
        });
        assert_eq!(events(&all), vec![EngineEvent::AllSourcesAtEnd]);
        h.now = h.master.poll_timeout().expect("trigger");
        let triggered = h.timers();
        assert!(sent(&triggered).iter().all(|(_, m)| matches!(
            m,
            ControlMessage::TriggerCheckpoint { barrier, .. } if barrier.kind == BarrierKind::Aligned
        )));
        assert!(
            events(&triggered).contains(&EngineEvent::CheckpointTriggered {
                checkpoint_id: CheckpointId(1),
                final_checkpoint: true
            })
        );
        // `complete_next_checkpoint` cannot be reused: the trigger already fired.
        let mut completed = Vec::new();
        for task in h.master.executions().keys().copied().collect::<Vec<_>>() {
            completed.extend(h.control(ControlMessage::AcknowledgeCheckpoint {
                attempt,
                subtask: task,
                checkpoint_id: CheckpointId(1),
                ack: ack(task),
            }));
        }
        let Some(Command::WriteMetadata(checkpoint)) = completed.pop() else {
            panic!("the last ack asks for the metadata");
        };
        h.master.on_metadata_written(h.now, checkpoint, Ok(()));
        let notices: Vec<ControlMessage> = sent(&h.drain()).into_iter().map(|(_, m)| m).collect();
        let finish = ControlMessage::FinishSource {
            attempt,
            subtask: SubtaskId::new(0, 0),
        };
        assert!(notices.contains(&finish));
        assert_eq!(
            notices
                .iter()
                .filter(|m| matches!(m, ControlMessage::NotifyCheckpointComplete { .. }))
                .count(),
            2,
            "one notice per task manager that hosts tasks"
        );
    }

    #[test]
    fn an_unreadable_checkpoint_is_dropped_and_recovery_falls_back_or_fails() {
        let mut two_retained = config();
        two_retained.checkpoint.retained = 2;
        let mut h = Harness::new(two_retained);
        h.running();
        let (older, _) = h.complete_next_checkpoint();
        let (newest, _) = h.complete_next_checkpoint();
        let failed_at = h.now.as_ms() + 5;
        let unreadable = TaskStatus::CheckpointUnreadable {
            checkpoint_id: newest,
            reason: "chk-2/1-0.state: checksum mismatch".into(),
        };
        let failed = h.at(failed_at).status((1, 0), unreadable);
        assert!(
            events(&failed).iter().any(|e| matches!(
                e,
                EngineEvent::CheckpointUnusable { checkpoint_id, fallback: Some(fallback), .. }
                    if *checkpoint_id == newest && *fallback == older
            )),
            "{failed:?}"
        );
        let redeployed = h.at(failed_at + RESTART_DELAY_MS).timers();
        assert!(events(&redeployed).contains(&EngineEvent::Deploying {
            attempt: AttemptNumber(2),
            taskmanagers: 2,
            restore: Some(older),
            region: None,
        }));

        // With nothing older retained the job fails rather than restore nothing.
        let mut h = Harness::new(config());
        h.running();
        let (only, _) = h.complete_next_checkpoint();
        let unreadable = TaskStatus::CheckpointUnreadable {
            checkpoint_id: only,
            reason: "gone".into(),
        };
        let failed = h.at(h.now.as_ms() + 5).status((1, 0), unreadable);
        assert_eq!(h.master.status(), JobStatus::Failed);
        assert!(events(&failed)
            .iter()
            .any(|e| matches!(e, EngineEvent::JobFailed { .. })));
    }

    #[test]
    fn with_high_availability_only_a_checkpoint_still_in_flight_is_stored_then_completed() {
        let ha = JobMasterConfig {
            high_availability: true,
            ..config()
        };
        let mut h = Harness::new(ha);
        h.running();
        let checkpoint = h.ack_next_checkpoint();
        h.master
            .on_metadata_written(h.now, checkpoint.clone(), Ok(()));
        let asked = h.drain();
        assert_eq!(asked, vec![Command::StoreCheckpoint(checkpoint.clone())]);
        h.master.on_checkpoint_stored(h.now, checkpoint, Ok(()));
        assert!(events(&h.drain())
            .iter()
            .any(|e| matches!(e, EngineEvent::CheckpointCompleted { .. })));
        // A failover aborts the next checkpoint while its `_metadata` is written: no pointer
        // to the files its abort deletes, and the late file goes too.
        let aborted = h.ack_next_checkpoint();
        let failed_at = h.now.as_ms() + 1;
        h.at(failed_at)
            .status((1, 0), TaskStatus::Failed("boom".into()));
        h.master.on_metadata_written(h.now, aborted.clone(), Ok(()));
        let after = h.drain();
        assert!(
            !after
                .iter()
                .any(|c| matches!(c, Command::StoreCheckpoint(_))),
            "{after:?}"
        );
        assert!(after.contains(&Command::DiscardCheckpoint(aborted.checkpoint_id)));
    }

    #[test]
    fn a_new_leader_restores_the_newest_recovered_checkpoint_with_numbers_of_its_own_term() {
        let mut old = Harness::new(config());
        old.running();
        old.complete_next_checkpoint();
        old.complete_next_checkpoint();
        let newest = old
            .master
            .coordinator
            .latest_completed()
            .expect("two completed");
        let retained = vec![newest.clone()];
        let newest = newest.checkpoint_id;
        assert_eq!(newest, CheckpointId(2));
        let graph = Arc::new(ExecutionGraph::build(&word_count(2, 2)));
        let term = LeaderTerm(2);
        let master = JobMaster::recovered(graph, config(), old.now, term, retained);
        let mut h = Harness {
            master,
            now: old.now,
        };
        assert_eq!(
            events(&h.drain()),
            vec![EngineEvent::JobRecovered {
                job: "wordcount".into(),
                term,
                checkpoint_id: Some(newest)
            }]
        );
        // The old leader's tasks still run on the task managers: cancelled at registration.
        let registered = h.heartbeat(1, 11, 1);
        assert_eq!(
            cancels(&registered),
            vec![(control_address(1), AttemptNumber(1000))]
        );
        let deployed = h.heartbeat(2, 22, 1);
        assert!(events(&deployed).contains(&EngineEvent::Deploying {
            attempt: AttemptNumber(1001),
            taskmanagers: 2,
            restore: Some(newest),
            region: None,
        }));
        for task in h.master.executions().keys().copied().collect::<Vec<_>>() {
            h.status((task.vertex_id.0, task.subtask_index), TaskStatus::Running);
        }
        let (checkpoint_id, _) = h.complete_next_checkpoint();
        assert_eq!(checkpoint_id, CheckpointId(1_000_001));
        let liveness_at = h.master.liveness_check_at.as_ms();
        let heartbeats = h.at(liveness_at).timers();
        assert!(sent(&heartbeats).iter().any(|(_, m)| matches!(
            m,
            ControlMessage::JobManagerHeartbeat {
                term: LeaderTerm(2),
                ..
            }
        )));
    }

    #[test]
    fn a_job_resubmitted_from_a_checkpoint_restores_it_in_its_own_block_and_never_deletes_it() {
        let mut old = Harness::new(config());
        old.running();
        old.complete_next_checkpoint();
        let checkpoint = old
            .master
            .coordinator
            .latest_completed()
            .expect("one")
            .clone();
        let graph = Arc::new(ExecutionGraph::build(&word_count(2, 2)));
        let path = "chk-1/_metadata".to_string();
        let master = JobMaster::restored(
            graph.clone(),
            config(),
            old.now,
            LeaderTerm(2),
            checkpoint,
            path.clone(),
            false,
        );
        let mut h = Harness {
            master,
            now: old.now,
        };
        assert_eq!(
            events(&h.drain()),
            vec![EngineEvent::JobRestoredFromCheckpoint {
                job: "wordcount".into(),
                checkpoint_id: CheckpointId(1),
                path,
                savepoint: false,
                assignment: StateAssignment {
                    rescaled: [("counter".into(), (2, 2)), ("source".into(), (2, 2))].into(),
                    ..StateAssignment::default()
                },
            }]
        );
        h.heartbeat(1, 11, 1);
        let deployed = h.heartbeat(2, 22, 1);
        assert!(events(&deployed).contains(&EngineEvent::Deploying {
            attempt: AttemptNumber(1001),
            taskmanagers: 2,
            restore: Some(CheckpointId(1)),
            region: None,
        }));
        for task in h.master.executions().keys().copied().collect::<Vec<_>>() {
            h.status((task.vertex_id.0, task.subtask_index), TaskStatus::Running);
        }
        // Subsumed by the new job's checkpoints (num-retained 1): never discarded.
        let (first, completed) = h.complete_next_checkpoint();
        assert_eq!(first, CheckpointId(1_000_001));
        assert!(!completed.contains(&Command::DiscardCheckpoint(CheckpointId(1))));

        // A checkpoint that cannot be read fails the new job at once, naming why.
        let mut failed = Harness {
            master: JobMaster::unrestorable(
                graph,
                config(),
                old.now,
                LeaderTerm(2),
                "chk-9/_metadata".into(),
                "missing".into(),
            ),
            now: old.now,
        };
        assert_eq!(failed.master.status(), JobStatus::Failed);
        assert!(events(&failed.drain()).iter().any(|e| matches!(
            e,
            EngineEvent::JobFailed { reason, why, .. }
                if reason == "cannot restore from chk-9/_metadata" && why == "missing"
        )));
    }

    #[test]
    fn a_failed_task_fails_over_and_the_next_attempt_restores_the_latest_checkpoint() {
        let mut h = Harness::new(config());
        h.running();
        let (checkpoint_id, completed) = h.complete_next_checkpoint();
        assert!(matches!(
            events(&completed)[..],
            [EngineEvent::CheckpointCompleted { .. }]
        ));
        let failed_at = h.now.as_ms() + 5;
        let failed = h
            .at(failed_at)
            .status((1, 0), TaskStatus::Failed("boom".into()));
        assert!(matches!(
            &events(&failed)[..],
            [EngineEvent::FailingOver { attempt: AttemptNumber(1), reason, region: None }, EngineEvent::Restarting { .. }]
                if reason.contains("boom")
        ));
        assert_eq!(
            cancels(&failed),
            vec![
                (control_address(1), AttemptNumber(1)),
                (control_address(2), AttemptNumber(1))
            ]
        );
        let at = Instant::from_ms(failed_at + RESTART_DELAY_MS);
        assert_eq!(h.master.status(), JobStatus::Restarting { at });
        assert!(h.at(at.as_ms() - 1).timers().iter().all(|c| !matches!(
            c,
            Command::Send {
                message: ControlMessage::Deploy { .. },
                ..
            }
        )));
        let redeployed = h.at(at.as_ms()).timers();
        assert_eq!(deploys(&redeployed).len(), 2);
        assert!(events(&redeployed).contains(&EngineEvent::Deploying {
            attempt: AttemptNumber(2),
            taskmanagers: 2,
            restore: Some(checkpoint_id),
            region: None,
        }));
        let restore = sent(&redeployed)
            .into_iter()
            .find_map(|(_, m)| match m {
                ControlMessage::Deploy { tasks, .. } => Some(tasks[1].restore.clone()),
                _ => None,
            })
            .flatten()
            .expect("restores");
        let paths: Vec<&str> = restore
            .states
            .iter()
            .filter_map(crate::checkpoint::storage::StateHandle::path)
            .collect();
        assert_eq!(
            paths,
            vec![
                format!("state-{}", SubtaskId::new(1, 0)),
                format!("state-{}", SubtaskId::new(1, 1))
            ]
        );
    }

    #[test]
    fn reports_and_acks_of_a_cancelled_attempt_are_ignored() {
        let mut h = Harness::new(config());
        h.running();
        h.status((0, 0), TaskStatus::Failed("first".into()));
        h.at(RESTART_DELAY_MS).timers();
        assert_eq!(h.master.attempt(), AttemptNumber(2));
        let stale_failure = h.control(ControlMessage::TaskStatusChanged {
            attempt: AttemptNumber(1),
            subtask: SubtaskId::new(0, 1),
            status: TaskStatus::Failed("late".into()),
        });
        assert!(stale_failure.is_empty());
        let stale_ack = h.control(ControlMessage::AcknowledgeCheckpoint {
            attempt: AttemptNumber(1),
            subtask: SubtaskId::new(0, 1),
            checkpoint_id: CheckpointId(1),
            ack: ack(SubtaskId::new(0, 1)),
        });
        assert!(stale_ack.is_empty());
        assert!(matches!(h.master.status(), JobStatus::Deploying { .. }));
    }

    #[test]
    fn a_silent_task_manager_is_lost_after_the_heartbeat_timeout() {
        let mut h = Harness::new(config());
        h.running();
        let mut lost = Vec::new();
        for second in 1..=6 {
            h.at(second * 1_000).heartbeat(1, 11, 1);
            lost.extend(h.timers());
        }
        assert!(events(&lost).contains(&EngineEvent::TaskManagerLost {
            taskmanager: TaskManagerId(2),
            loss: TaskManagerLoss::NoHeartbeat {
                timeout: Duration::from_ms(HEARTBEAT_TIMEOUT_MS)
            }
        }));
        assert!(matches!(h.master.status(), JobStatus::Restarting { .. }));
        assert_eq!(
            cancels(&lost),
            vec![(control_address(1), AttemptNumber(1))],
            "the lost task manager is not addressed"
        );
    }

    #[test]
    fn a_task_manager_back_from_the_dead_is_told_to_cancel_its_zombies() {
        let mut h = Harness::new(config());
        let deployed = h.heartbeat(1, 11, 2);
        assert_eq!(
            deploys(&deployed).len(),
            1,
            "one task manager offers the two slots"
        );
        let silence_ends = HEARTBEAT_TIMEOUT_MS + 1_000;
        let lost = h.at(silence_ends).timers();
        assert!(events(&lost).contains(&EngineEvent::TaskManagerLost {
            taskmanager: TaskManagerId(1),
            loss: TaskManagerLoss::NoHeartbeat {
                timeout: Duration::from_ms(HEARTBEAT_TIMEOUT_MS)
            }
        }));
        // The same process: only the link was down. Its tasks run an attempt that failed over.
        let back = h.at(silence_ends + 10).heartbeat(1, 11, 2);
        assert_eq!(cancels(&back), vec![(control_address(1), AttemptNumber(1))]);
        assert!(
            deploys(&back).is_empty(),
            "the restart delay has not passed"
        );
        let redeployed = h.at(silence_ends + RESTART_DELAY_MS).timers();
        assert_eq!(
            deploys(&redeployed),
            vec![(
                control_address(1),
                AttemptNumber(2),
                vec![
                    SubtaskId::new(0, 0),
                    SubtaskId::new(0, 1),
                    SubtaskId::new(1, 0),
                    SubtaskId::new(1, 1)
                ]
            )]
        );
    }

    #[test]
    fn a_restarted_task_manager_process_is_a_loss() {
        let mut h = Harness::new(config());
        h.running();
        let restarted = h.at(50).heartbeat(2, 23, 1);
        assert_eq!(
            events(&restarted)[0],
            EngineEvent::TaskManagerLost {
                taskmanager: TaskManagerId(2),
                loss: TaskManagerLoss::Restarted
            }
        );
        assert!(matches!(h.master.status(), JobStatus::Restarting { .. }));
    }

    #[test]
    fn the_job_fails_when_the_restart_strategy_gives_up() {
        let mut no_restart = config();
        no_restart.restart = RestartStrategyConfig::None;
        let mut h = Harness::new(no_restart);
        h.running();
        let failed = h.status((1, 1), TaskStatus::Failed("bad record".into()));
        assert!(matches!(
            events(&failed).last(),
            Some(EngineEvent::JobFailed { reason, why, .. })
                if reason.contains("bad record") && why.contains("none")
        ));
        assert_eq!(h.master.status(), JobStatus::Failed);
        assert!(h.master.status().is_terminal());
    }

    #[test]
    fn a_deployment_not_running_by_its_deadline_fails_over() {
        let mut patient = config();
        patient.heartbeat_timeout = Duration::from_ms(2 * DEPLOY_TIMEOUT_MS);
        let mut h = Harness::new(patient);
        h.heartbeat(1, 11, 1);
        h.heartbeat(2, 22, 1);
        h.status((0, 0), TaskStatus::Running);
        assert!(events(&h.at(DEPLOY_TIMEOUT_MS - 1).timers()).is_empty());
        let timed_out = h.at(DEPLOY_TIMEOUT_MS).timers();
        assert!(events(&timed_out).iter().any(|e| matches!(
            e,
            EngineEvent::FailingOver { reason, .. } if reason.contains("deployment timed out")
        )));
    }

    #[test]
    fn the_job_finishes_when_every_task_finished_and_checkpointing_stops() {
        let mut h = Harness::new(config());
        h.running();
        for task in [(0, 0), (0, 1), (1, 0)] {
            h.status(task, TaskStatus::Finished);
            assert_eq!(h.master.status(), JobStatus::Running);
        }
        let finished = h.status((1, 1), TaskStatus::Finished);
        assert_eq!(
            events(&finished),
            vec![EngineEvent::JobFinished {
                attempt: AttemptNumber(1)
            }]
        );
        assert_eq!(h.master.status(), JobStatus::Finished);
        assert!(h.master.status().is_terminal());
    }

    #[test]
    fn at_least_once_triggers_at_least_once_barriers_and_unknown_messages_are_reported() {
        let mut at_least_once = config();
        at_least_once.checkpoint.mode = CheckpointingMode::AtLeastOnce;
        let mut h = Harness::new(at_least_once);
        h.running();
        h.now = h.master.poll_timeout().expect("trigger");
        assert!(sent(&h.timers()).iter().all(|(_, m)| matches!(
            m,
            ControlMessage::TriggerCheckpoint { barrier, .. }
                if barrier.kind == BarrierKind::AtLeastOnce
        )));
        let odd = h.control(ControlMessage::FinishSource {
            attempt: AttemptNumber(1),
            subtask: SubtaskId::new(0, 0),
        });
        assert!(matches!(
            events(&odd)[..],
            [EngineEvent::UnexpectedMessage { .. }]
        ));
    }

    #[test]
    fn end_of_data_from_a_failed_attempt_before_the_redeploy_is_ignored() {
        let mut final_config = config();
        final_config.final_checkpoint = true;
        let mut h = Harness::new(final_config);
        h.running();
        h.status((1, 0), TaskStatus::Failed("boom".into()));
        assert!(matches!(h.master.status(), JobStatus::Restarting { .. }));
        // The failed attempt's sources run on as zombies until their cancel arrives; their
        // reports still carry the attempt number the job master has not replaced yet.
        for index in 0..2 {
            let late = h.control(ControlMessage::EndOfData {
                attempt: AttemptNumber(1),
                subtask: SubtaskId::new(0, index),
            });
            assert!(late.is_empty(), "{late:?}");
        }
        h.at(RESTART_DELAY_MS).timers();
        for task in h.master.executions().keys().copied().collect::<Vec<_>>() {
            h.status((task.vertex_id.0, task.subtask_index), TaskStatus::Running);
        }
        h.now = h.master.poll_timeout().expect("a trigger");
        let triggered = h.timers();
        assert!(
            events(&triggered).contains(&EngineEvent::CheckpointTriggered {
                checkpoint_id: CheckpointId(1),
                final_checkpoint: false
            }),
            "the new attempt's sources have not reached their end: {triggered:?}"
        );
    }
}
