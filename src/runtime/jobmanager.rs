//! The job manager node: the driver of the sans-IO job master. It feeds the job master control
//! messages, metadata-write completions and timer wake-ups, and carries out its commands:
//! control messages, `_metadata` writes in the background, and events for the trace.

use crate::checkpoint::coordinator::{CheckpointConfig, CompletedCheckpoint};
use crate::checkpoint::storage::{metadata_path, CheckpointStorage, StorageError};
use crate::codec::FileKind;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::CheckpointId;
use crate::limits::CONTROL_MAILBOX_CAPACITY;
use crate::runtime::control_plane::ControlPlane;
use crate::runtime::hooks::{EngineEvent, Hooks};
use crate::runtime::job_master::{Command, JobMaster, JobMasterConfig};
use crate::runtime::messages::ControlMessage;
use crate::runtime::restart::RestartStrategyConfig;
use crate::runtime::rpc::Rpc;
use crate::runtime::sim_time;
use crate::runtime::task_context::Services;
use crate::time::Duration;
use futures::channel::mpsc::{channel, Receiver, Sender};
use futures::SinkExt;
use futures::{FutureExt, StreamExt};
use std::sync::Arc;

const NODE: &str = "jobmanager";

/// What the job manager is started with.
#[derive(Clone)]
pub struct JobManagerSetup {
    /// The job's plan.
    pub graph: Arc<ExecutionGraph>,
    /// Checkpointing options.
    pub checkpoint: CheckpointConfig,
    /// The restart strategy.
    pub restart: RestartStrategyConfig,
    /// Seeds the restart strategy's jitter (exponential-delay), from the run's seed.
    pub restart_seed: u64,
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
}

enum Input {
    Control(ControlMessage),
    MetadataWritten(CompletedCheckpoint, Result<(), StorageError>),
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
        heartbeat_interval: setup.heartbeat_interval,
        heartbeat_timeout: setup.heartbeat_timeout,
        deploy_timeout: setup.deploy_timeout,
        final_checkpoint: setup.final_checkpoint,
    };
    let master = JobMaster::new(setup.graph.clone(), config, sim_time::now());
    let mut node = JobManagerNode {
        master,
        setup,
        rpc,
        control,
        inbox_sender,
        discards: Vec::new(),
    };
    node.run(&mut inbox).await;
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
    control: ControlPlane,
    inbox_sender: Sender<Input>,
    // Checkpoint deletions in flight (Flink's checkpoint cleaner): they never hold the job
    // manager up, and the job's end waits for them.
    discards: Vec<madsim::task::JoinHandle<()>>,
}

impl JobManagerNode {
    async fn run(&mut self, inbox: &mut Receiver<Input>) {
        self.carry_out_commands().await;
        while !self.master.status().is_terminal() {
            let deadline = self.master.poll_timeout();
            futures::select_biased! {
                input = inbox.next() => match input {
                    Some(Input::Control(message)) => {
                        self.master.on_control(sim_time::now(), message)
                    }
                    Some(Input::MetadataWritten(checkpoint, result)) => {
                        self.master.on_metadata_written(sim_time::now(), checkpoint, result)
                    }
                    None => return,
                },
                _ = sim_time::sleep_until_opt(deadline).fuse() => {
                    self.master.on_timers(sim_time::now())
                }
            }
            self.carry_out_commands().await;
        }
    }

    async fn carry_out_commands(&mut self) {
        while let Some(command) = self.master.poll_command() {
            match command {
                Command::Send { to, message } => self.control.send(to, &message).await,
                Command::WriteMetadata(checkpoint) => self.write_metadata(checkpoint),
                Command::DiscardCheckpoint(checkpoint_id) => self.discard(checkpoint_id),
                Command::Event(event) => {
                    if matches!(
                        event,
                        EngineEvent::JobFinished { .. } | EngineEvent::JobFailed { .. }
                    ) {
                        // The job ends once its discarded checkpoints are gone.
                        for discard in self.discards.drain(..) {
                            let _ = discard.await;
                        }
                    }
                    self.setup.hooks.event(NODE, event)
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
        self.discards.retain(|discard| !discard.is_finished());
        self.discards.push(madsim::task::spawn(async move {
            // A failed delete leaves files behind, never a wrong checkpoint: it is reported
            // and the job goes on, as Flink's checkpoint cleaner does.
            if let Err(error) = storage.discard(checkpoint_id).await {
                let error = error.to_string();
                let event = EngineEvent::CheckpointDiscardFailed {
                    checkpoint_id,
                    error,
                };
                hooks.event(NODE, event);
            }
        }));
    }

    fn write_metadata(&self, checkpoint: CompletedCheckpoint) {
        let storage = CheckpointStorage::new(
            self.rpc.clone(),
            self.setup.services.blobstore,
            self.setup.rpc_timeout,
        );
        let mut inbox = self.inbox_sender.clone();
        madsim::task::spawn(async move {
            let path = metadata_path(checkpoint.checkpoint_id);
            let result = storage
                .write(FileKind::CheckpointMetadata, &path, &checkpoint)
                .await
                .map(|_| ());
            let _ = inbox.send(Input::MetadataWritten(checkpoint, result)).await;
        });
    }
}
