//! The job manager node: the driver of the sans-IO job master. It feeds the job master control
//! messages, metadata-write completions and timer wake-ups, and carries out its commands:
//! control messages, `_metadata` writes in the background, and events for the trace.
//!
//! With high availability it first wins leadership, then recovers the job the service holds
//! (reading the retained checkpoints' `_metadata` back from checkpoint storage) or submits the
//! job it was given; each completed checkpoint's pointer is stored in the service before the
//! checkpoint counts as completed. Without it, a job manager that starts again knows no job.

use crate::checkpoint::coordinator::{CheckpointConfig, CompletedCheckpoint};
use crate::checkpoint::storage::{CheckpointStorage, StorageError, StorageKind};
use crate::codec::FileKind;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::CheckpointId;
use crate::limits::CONTROL_MAILBOX_CAPACITY;
use crate::runtime::control_plane::ControlPlane;
use crate::runtime::hooks::{EngineEvent, Hooks};
use crate::runtime::job_master::{Command, JobMaster, JobMasterConfig};
use crate::runtime::leadership::LeaderTerm;
use crate::runtime::messages::ControlMessage;
use crate::runtime::restart::RestartStrategyConfig;
use crate::runtime::rpc::Rpc;
use crate::runtime::sim_time::{self, Alarm};
use crate::runtime::task_context::Services;
use crate::services::high_availability::{
    CheckpointPointer, HaClient, HaError, HaRequest, JobRecord,
};
use crate::time::Duration;
use futures::channel::mpsc::{channel, Receiver, Sender};
use futures::SinkExt;
use futures::{FutureExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the job manager is started with.
#[derive(Clone)]
pub struct JobManagerSetup {
    /// Its name: the node's, and its identity as a contender for leadership.
    pub name: String,
    /// Its control endpoint, which its heartbeats announce to the task managers.
    pub address: SocketAddr,
    /// `high-availability` lease: renewed every third of it while leading.
    pub lease_duration: Duration,
    /// Checkpointing options.
    pub checkpoint: CheckpointConfig,
    /// The restart strategy.
    pub restart: RestartStrategyConfig,
    /// Seeds the restart strategy's jitter (exponential-delay), from the run's seed.
    pub restart_seed: u64,
    /// `jobmanager.execution.failover-strategy`.
    pub failover: crate::runtime::failover_strategy::FailoverStrategy,
    /// `heartbeat.interval`: how often liveness is checked.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`: a task manager silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// A deployment whose tasks are not all running by then fails.
    pub deploy_timeout: Duration,
    /// Wait for an RPC answer.
    pub rpc_timeout: Duration,
    /// Where the services are.
    pub services: Services,
    /// Where the job manager reports events and asks for faults.
    pub hooks: Hooks,
    /// The sink commits on checkpoints: the job ends with a final checkpoint taken after
    /// every source read all its input, and the sources end once it completed (FLIP-147).
    pub final_checkpoint: bool,
    /// The high-availability service, if `high-availability` is on.
    pub high_availability: Option<SocketAddr>,
    /// The client's submission of the job, taken by the job manager that runs it first.
    pub submission: JobSubmission,
}

/// The job as the client submitted it: once, to whichever job manager takes it; the client
/// may submit it again later from a retained checkpoint (`resubmit`).
#[derive(Clone)]
pub struct JobSubmission {
    taken: Arc<AtomicBool>,
    restore: Arc<Mutex<Option<RestoreFrom>>>,
    /// The job's code (its jar): what the job managers schedule and the task managers run.
    pub graph: SubmittedGraph,
}

/// The job as last submitted (in Flink, the jar in the blob server that task managers fetch
/// when they deploy a task). A resubmission may bring a new version of the job: new
/// parallelism, operators added or removed.
#[derive(Clone)]
pub struct SubmittedGraph(Arc<Mutex<Arc<ExecutionGraph>>>);

impl SubmittedGraph {
    /// The job `graph`, submitted.
    pub fn new(graph: Arc<ExecutionGraph>) -> SubmittedGraph {
        SubmittedGraph(Arc::new(Mutex::new(graph)))
    }

    /// The job as last submitted.
    pub fn current(&self) -> Arc<ExecutionGraph> {
        self.0.lock().expect("never poisoned").clone()
    }

    fn replace(&self, graph: Arc<ExecutionGraph>) {
        *self.0.lock().expect("never poisoned") = graph;
    }
}

/// Where a submission starts from: `flink run -s <path> [-n]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreFrom {
    /// The `_metadata` of the retained checkpoint or savepoint the job restores.
    pub path: String,
    /// The snapshot's id, which the `_metadata` must hold.
    pub checkpoint_id: CheckpointId,
    /// `--allowNonRestoredState`: state no operator claims is dropped, not refused.
    pub ignore_unclaimed: bool,
    /// The block of attempt numbers and checkpoint ids of the new job, clear of the earlier
    /// job's (in Flink the new job id keeps them apart).
    pub numbering: LeaderTerm,
}

impl JobSubmission {
    /// The client submits `graph`.
    pub fn new(graph: Arc<ExecutionGraph>) -> JobSubmission {
        JobSubmission {
            taken: Arc::new(AtomicBool::new(false)),
            restore: Arc::new(Mutex::new(None)),
            graph: SubmittedGraph::new(graph),
        }
    }

    /// Takes the submission: `None` if a job manager took it before, else where it starts
    /// from (`Some(None)`: empty).
    pub fn take(&self) -> Option<Option<RestoreFrom>> {
        if self.taken.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(self.restore.lock().expect("never poisoned").clone())
    }

    /// The client submits `graph` (the same job, or a new version of it) again, from
    /// `restore`.
    pub fn resubmit(&self, restore: RestoreFrom, graph: Arc<ExecutionGraph>) {
        *self.restore.lock().expect("never poisoned") = Some(restore);
        self.graph.replace(graph);
        self.taken.store(false, Ordering::Relaxed);
    }
}

enum Input {
    Control(ControlMessage),
    MetadataWritten(CompletedCheckpoint, Result<(), String>),
    /// The lease renewal was refused: a newer leader took over.
    Deposed(LeaderTerm),
}

/// The job manager's main: runs the job to a terminal status.
pub async fn run_jobmanager(setup: JobManagerSetup) {
    let rpc = Rpc::bind()
        .await
        .expect("the request port is free on a fresh node");
    let (control, messages) = ControlPlane::listen()
        .await
        .expect("the control port is free on a fresh node");
    let (inbox_sender, mut inbox) = channel(CONTROL_MAILBOX_CAPACITY);
    madsim::task::spawn(forward_control(messages, inbox_sender.clone()));
    let config = JobMasterConfig {
        checkpoint: setup.checkpoint.clone(),
        restart: setup.restart.clone(),
        restart_seed: setup.restart_seed,
        failover: setup.failover,
        address: setup.address,
        heartbeat_interval: setup.heartbeat_interval,
        heartbeat_timeout: setup.heartbeat_timeout,
        deploy_timeout: setup.deploy_timeout,
        final_checkpoint: setup.final_checkpoint,
        // Jobmanager storage keeps nothing durable to point to: its checkpoints are lost with
        // this job manager.
        high_availability: setup.high_availability.is_some()
            && setup.checkpoint.storage.kind != StorageKind::JobManager,
    };
    let ha = setup
        .high_availability
        .map(|address| HaClient::new(rpc.clone(), address, setup.rpc_timeout));
    // Until it leads it serves nothing: what arrives meanwhile (task managers' heartbeats,
    // which they repeat) is dropped, so a standby never backs their control links up.
    let master = {
        let leading = lead(&setup, &rpc, ha.as_ref(), config).fuse();
        futures::pin_mut!(leading);
        loop {
            futures::select_biased! {
                master = leading => break master,
                _ = inbox.next() => {}
            }
        }
    };
    let Some(master) = master else {
        // A job manager without a job: it serves nothing until it is killed.
        while inbox.next().await.is_some() {}
        return;
    };
    if let Some(ha) = &ha {
        let every = a_third_of(setup.lease_duration);
        let renewal = renew_lease(ha.clone(), master.term(), inbox_sender.clone(), every);
        madsim::task::spawn(renewal);
    }
    let mut node = JobManagerNode {
        master,
        setup,
        rpc,
        ha,
        control,
        inbox_sender,
        discards: Vec::new(),
        discards_at_end: Vec::new(),
        deposed: false,
    };
    node.run(&mut inbox).await;
}

/// Takes the lead of the job: the job master that runs it, or `None` when this job manager has
/// no job (it was lost with an earlier job manager, or it already ended).
async fn lead(
    setup: &JobManagerSetup,
    rpc: &Rpc,
    ha: Option<&HaClient>,
    config: JobMasterConfig,
) -> Option<JobMaster> {
    let graph = setup.submission.graph.current();
    let Some(ha) = ha else {
        match setup.submission.take() {
            Some(None) => return Some(JobMaster::new(graph, config, sim_time::now())),
            Some(Some(restore)) => return Some(restore_from(setup, rpc, config, restore).await),
            None => {}
        }
        return no_job(
            setup,
            "no high availability: a restarted job manager keeps no job".to_string(),
        );
    };
    let (term, job) = match elected(setup, ha).await {
        Ok(granted) => granted,
        Err(refused) => return no_job(setup, format!("not elected: {refused}")),
    };
    setup
        .hooks
        .event(&setup.name, EngineEvent::LeaderElected { term });
    match job {
        Some(JobRecord {
            terminated: Some(status),
            ..
        }) => no_job(setup, format!("the job already ended {status}")),
        Some(record) => {
            let restored = read_retained(setup, rpc, &record.checkpoints).await;
            remove_orphans(setup, rpc, &restored).await;
            let now = sim_time::now();
            Some(JobMaster::recovered(graph, config, now, term, restored))
        }
        None if setup.submission.take().is_some() => {
            let submit = HaRequest::SubmitJob {
                term,
                job: graph.job.name.clone(),
            };
            if let Err(refused) = until_answered(setup, || ha.write(&submit)).await {
                return no_job(setup, format!("the job could not be submitted: {refused}"));
            }
            Some(JobMaster::submitted(graph, config, sim_time::now(), term))
        }
        None => no_job(
            setup,
            "the high-availability service holds no job".to_string(),
        ),
    }
}

/// A new job from a retained checkpoint (`flink run -s`): its `_metadata` read back from
/// checkpoint storage, or the job fails at once naming why it cannot be read.
async fn restore_from(
    setup: &JobManagerSetup,
    rpc: &Rpc,
    config: JobMasterConfig,
    restore: RestoreFrom,
) -> JobMaster {
    let storage = CheckpointStorage::new(rpc.clone(), setup.services.blobstore, setup.rpc_timeout);
    let path = restore.path.clone();
    // A savepoint names its files relative to its directory, wherever that is now.
    let directory = path.trim_end_matches("_metadata").to_string();
    let graph = setup.submission.graph.current();
    let term = restore.numbering;
    loop {
        let read = storage
            .read::<CompletedCheckpoint>(FileKind::CheckpointMetadata, &path)
            .await;
        let now = sim_time::now();
        return match read {
            Ok(checkpoint) if checkpoint.checkpoint_id == restore.checkpoint_id => {
                let checkpoint = checkpoint.resolved(&directory);
                let ignore = restore.ignore_unclaimed;
                JobMaster::restored(graph, config, now, term, checkpoint, path, ignore)
            }
            Ok(other) => {
                let reason = format!("it holds checkpoint {}", other.checkpoint_id);
                JobMaster::unrestorable(graph, config, now, term, path, reason)
            }
            // Storage is down: the submission waits for it.
            Err(StorageError::Rpc(_)) => {
                sim_time::sleep(setup.rpc_timeout).await;
                continue;
            }
            Err(error) => {
                JobMaster::unrestorable(graph, config, now, term, path, error.to_string())
            }
        };
    }
}

/// Contends for leadership until elected: while another job manager holds a live lease this
/// one stands by, asking again every third of the lease.
async fn elected(
    setup: &JobManagerSetup,
    ha: &HaClient,
) -> Result<(LeaderTerm, Option<JobRecord>), HaError> {
    let mut standing_by = false;
    loop {
        match until_answered(setup, || ha.elect(&setup.name)).await {
            Err(HaError::LeaderAlive { term, contender }) => {
                if !standing_by {
                    standing_by = true;
                    let event = EngineEvent::StandingBy {
                        leader: contender,
                        term,
                    };
                    setup.hooks.event(&setup.name, event);
                }
                sim_time::sleep(a_third_of(setup.lease_duration)).await;
            }
            answer => return answer,
        }
    }
}

/// How often a leader renews its lease, and a standby asks again: well inside the lease.
fn a_third_of(lease: Duration) -> Duration {
    Duration::from_ms((lease.as_ms() / 3).max(1))
}

/// Renews the leader's lease every `every` until a renewal is refused (a newer leader took
/// over), which it reports into the job manager's mailbox. A renewal that gets no answer is
/// retried next time: the service may be down a while.
async fn renew_lease(ha: HaClient, term: LeaderTerm, mut inbox: Sender<Input>, every: Duration) {
    loop {
        sim_time::sleep(every).await;
        if let Err(HaError::Fenced { current, .. }) = ha.write(&HaRequest::Renew { term }).await {
            let _ = inbox.send(Input::Deposed(current)).await;
            return;
        }
    }
}

/// Repeats a call to the high-availability service until it answers (it may be down for a
/// while; a job manager cannot lead without it). A refusal is not retried: it is the answer.
async fn until_answered<T, F, Fut>(setup: &JobManagerSetup, call: F) -> Result<T, HaError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, HaError>>,
{
    loop {
        match call().await {
            Err(HaError::Rpc(_)) => sim_time::sleep(setup.rpc_timeout).await,
            answer => return answer,
        }
    }
}

/// This job manager runs no job, for `reason`.
fn no_job(setup: &JobManagerSetup, reason: String) -> Option<JobMaster> {
    setup
        .hooks
        .event(&setup.name, EngineEvent::NoJobToRecover { reason });
    None
}

/// Deletes the checkpoint directories in storage that the recovered job does not retain: an
/// earlier leader that died left them (it had subsumed them or had them in flight). Best
/// effort: a failure leaves files behind, never a wrong checkpoint.
async fn remove_orphans(setup: &JobManagerSetup, rpc: &Rpc, restored: &[CompletedCheckpoint]) {
    let config = &setup.checkpoint.storage;
    if config.kind == StorageKind::JobManager {
        return;
    }
    let storage = CheckpointStorage::new(rpc.clone(), setup.services.blobstore, setup.rpc_timeout);
    let Ok(present) = storage.checkpoint_directories(config).await else {
        return;
    };
    let orphans: Vec<_> = present
        .into_iter()
        .filter(|id| !restored.iter().any(|c| c.checkpoint_id == *id))
        .collect();
    for checkpoint_id in &orphans {
        let _ = storage
            .discard(config.checkpoint_directory(*checkpoint_id))
            .await;
    }
    if !orphans.is_empty() {
        let event = EngineEvent::OrphanedCheckpointsRemoved {
            checkpoint_ids: orphans,
        };
        setup.hooks.event(&setup.name, event);
    }
}

/// Reads the retained checkpoints' `_metadata`, newest first: a checkpoint whose metadata is
/// corrupt or missing is reported and skipped, so the job restores the newest intact one.
/// Returns the readable ones, oldest first.
async fn read_retained(
    setup: &JobManagerSetup,
    rpc: &Rpc,
    pointers: &[CheckpointPointer],
) -> Vec<CompletedCheckpoint> {
    let storage = CheckpointStorage::new(rpc.clone(), setup.services.blobstore, setup.rpc_timeout);
    let mut restored = Vec::new();
    let mut unusable = Vec::new();
    for pointer in pointers.iter().rev() {
        loop {
            let read = storage
                .read::<CompletedCheckpoint>(FileKind::CheckpointMetadata, &pointer.metadata_path)
                .await;
            match read {
                Ok(checkpoint) if checkpoint.checkpoint_id == pointer.checkpoint_id => {
                    let directory = pointer.metadata_path.trim_end_matches("_metadata");
                    restored.push(checkpoint.resolved(directory));
                }
                Ok(other) => unusable.push((
                    pointer.checkpoint_id,
                    format!(
                        "{}: holds checkpoint {}",
                        pointer.metadata_path, other.checkpoint_id
                    ),
                )),
                // Storage is down: recovery waits for it rather than lose the checkpoint.
                Err(StorageError::Rpc(_)) => {
                    sim_time::sleep(setup.rpc_timeout).await;
                    continue;
                }
                Err(error) => unusable.push((pointer.checkpoint_id, error.to_string())),
            }
            break;
        }
    }
    restored.reverse();
    let fallback = restored.last().map(|c| c.checkpoint_id);
    for (checkpoint_id, reason) in unusable {
        let event = EngineEvent::CheckpointUnusable {
            checkpoint_id,
            reason,
            fallback: fallback.filter(|f| *f < checkpoint_id),
        };
        setup.hooks.event(&setup.name, event);
    }
    restored
}

/// Control messages join the job manager's one mailbox, beside its own completions.
async fn forward_control(mut messages: Receiver<ControlMessage>, mut inbox: Sender<Input>) {
    while let Some(message) = messages.next().await {
        if inbox.send(Input::Control(message)).await.is_err() {
            return;
        }
    }
}

/// The job manager node: feeds the job master its inputs and carries out its commands.
struct JobManagerNode {
    master: JobMaster,
    setup: JobManagerSetup,
    rpc: Rpc,
    ha: Option<HaClient>,
    control: ControlPlane,
    inbox_sender: Sender<Input>,
    // Checkpoint deletions in flight (Flink's checkpoint cleaner): they never hold the job
    // manager up, and the job's end waits for them.
    discards: Vec<madsim::task::JoinHandle<()>>,
    // The discards of the job's end, held until high availability recorded the end.
    discards_at_end: Vec<CheckpointId>,
    // A newer leader took over: this one does nothing more.
    deposed: bool,
}

impl JobManagerNode {
    async fn run(&mut self, inbox: &mut Receiver<Input>) {
        self.carry_out_commands().await;
        let mut alarm = Alarm::default();
        while !self.master.status().is_terminal() && !self.deposed {
            let deadline = self.master.poll_timeout();
            futures::select_biased! {
                input = inbox.next() => match input {
                    Some(Input::Control(message)) => {
                        self.master.on_control(sim_time::now(), message)
                    }
                    Some(Input::MetadataWritten(checkpoint, result)) => {
                        self.master.on_metadata_written(sim_time::now(), checkpoint, result)
                    }
                    Some(Input::Deposed(current)) => return self.deposed(current),
                    None => return,
                },
                _ = alarm.wait_until(deadline).fuse() => {
                    self.master.on_timers(sim_time::now())
                }
            }
            self.carry_out_commands().await;
        }
    }

    async fn carry_out_commands(&mut self) {
        while let Some(command) = self.master.poll_command().filter(|_| !self.deposed) {
            match command {
                Command::Send { to, message } => self.control.send(to, &message).await,
                Command::WriteMetadata(checkpoint) => self.write_metadata(checkpoint),
                Command::StoreCheckpoint(checkpoint) => {
                    let result = self.store_pointer(&checkpoint).await;
                    if !self.deposed {
                        let now = sim_time::now();
                        self.master.on_checkpoint_stored(now, checkpoint, result);
                    }
                }
                // With high availability, what the job's end discards waits until the service
                // knows the job ended: a deposed leader that has not learnt it yet must never
                // delete the checkpoint the new leader restores.
                Command::DiscardCheckpoint(checkpoint_id)
                    if self.ha.is_some() && self.master.status().is_terminal() =>
                {
                    self.discards_at_end.push(checkpoint_id)
                }
                Command::DiscardCheckpoint(checkpoint_id) => self.discard(checkpoint_id),
                Command::Event(event) => {
                    let status = match event {
                        EngineEvent::JobFinished { .. } => Some("FINISHED"),
                        EngineEvent::JobFailed { .. } => Some("FAILED"),
                        EngineEvent::JobCanceled { .. } => Some("CANCELED"),
                        _ => None,
                    };
                    if let Some(status) = status {
                        // The job ends once the high-availability service knows it ended
                        // (never to recover it), and once its discarded checkpoints are gone.
                        if let Err(HaError::Fenced { current, .. }) =
                            self.job_terminated(status).await
                        {
                            return self.deposed(current);
                        }
                        for checkpoint_id in std::mem::take(&mut self.discards_at_end) {
                            self.discard(checkpoint_id);
                        }
                        for discard in self.discards.drain(..) {
                            let _ = discard.await;
                        }
                    }
                    self.setup.hooks.event(&self.setup.name, event)
                }
            }
        }
    }

    fn discard(&mut self, checkpoint_id: CheckpointId) {
        let storage = CheckpointStorage::new(
            self.rpc.clone(),
            self.setup.services.blobstore,
            self.setup.rpc_timeout,
        );
        let hooks = self.setup.hooks.clone();
        let name = self.setup.name.clone();
        let config = &self.setup.checkpoint.storage;
        if config.kind == StorageKind::JobManager {
            return; // Its state lived in the job manager's memory, now dropped.
        }
        let directory = config.checkpoint_directory(checkpoint_id);
        self.discards.retain(|discard| !discard.is_finished());
        self.discards.push(madsim::task::spawn(async move {
            // A failed delete leaves files behind, never a wrong checkpoint: it is reported
            // and the job goes on, as Flink's checkpoint cleaner does.
            if let Err(error) = storage.discard(directory).await {
                let error = error.to_string();
                let event = EngineEvent::CheckpointDiscardFailed {
                    checkpoint_id,
                    error,
                };
                hooks.event(&name, event);
            }
        }));
    }

    /// A newer leader took over: this one stops, its tasks are the new leader's to cancel.
    fn deposed(&mut self, current: LeaderTerm) {
        self.deposed = true;
        let term = self.master.term();
        let event = EngineEvent::LeadershipLost { term, current };
        self.setup.hooks.event(&self.setup.name, event);
    }

    async fn job_terminated(&self, status: &str) -> Result<(), HaError> {
        let Some(ha) = &self.ha else {
            return Ok(());
        };
        let request = HaRequest::JobTerminated {
            term: self.master.term(),
            status: status.to_string(),
        };
        ha.write(&request).await
    }

    /// Adds a checkpoint to the completed checkpoint store of the high-availability service,
    /// so a new leader finds every checkpoint whose commits were notified.
    async fn store_pointer(&mut self, checkpoint: &CompletedCheckpoint) -> Result<(), String> {
        let Some(ha) = &self.ha else {
            unreachable!("the job master asks to store only with high availability");
        };
        let add = HaRequest::AddCheckpoint {
            term: self.master.term(),
            pointer: CheckpointPointer {
                checkpoint_id: checkpoint.checkpoint_id,
                metadata_path: format!(
                    "{}_metadata",
                    self.setup
                        .checkpoint
                        .storage
                        .snapshot_directory(checkpoint.checkpoint_id, checkpoint.snapshot_type())
                        .expect("a savepoint is triggered only with a savepoint directory")
                ),
            },
            retain: self.setup.checkpoint.retained,
        };
        match ha.write(&add).await {
            Ok(()) => Ok(()),
            Err(HaError::Fenced { current, .. }) => {
                self.deposed(current);
                Err(format!("deposed by {current}"))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Writes the checkpoint's `_metadata` in the background; with jobmanager storage the
    /// checkpoint is kept in memory only, and is finalized at once.
    fn write_metadata(&self, checkpoint: CompletedCheckpoint) {
        let storage = CheckpointStorage::new(
            self.rpc.clone(),
            self.setup.services.blobstore,
            self.setup.rpc_timeout,
        );
        let mut inbox = self.inbox_sender.clone();
        let config = &self.setup.checkpoint.storage;
        let snapshot = checkpoint.snapshot_type();
        let directory = config
            .snapshot_directory(checkpoint.checkpoint_id, snapshot)
            .expect("a savepoint is triggered only with a savepoint directory");
        let path = format!("{directory}_metadata");
        // A savepoint is always files, even with jobmanager checkpoint storage.
        let in_memory = config.kind == StorageKind::JobManager && !snapshot.is_savepoint();
        let written = checkpoint.relocatable(&directory);
        madsim::task::spawn(async move {
            if in_memory {
                let _ = inbox.send(Input::MetadataWritten(checkpoint, Ok(()))).await;
                return;
            }
            let result = storage
                .write(FileKind::CheckpointMetadata, &path, &written)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string());
            let _ = inbox.send(Input::MetadataWritten(checkpoint, result)).await;
        });
    }
}
