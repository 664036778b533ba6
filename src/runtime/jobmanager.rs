//! The job manager node: tracks task managers by heartbeat, schedules the job into slots,
//! drives the checkpoint coordinator, and fails the job over with the restart strategy.
//! The protocol decisions are in the sans-IO coordinator and restart strategy; this is the
//! driver that moves their inputs and outputs.

use crate::checkpoint::barrier::{Barrier, BarrierKind};
use crate::checkpoint::coordinator::{
    CheckpointConfig, CheckpointCoordinator, CompletedCheckpoint, Output,
};
use crate::checkpoint::final_checkpoint::{EndOfData, FinalCheckpoint};
use crate::checkpoint::storage::{metadata_path, CheckpointStorage};
use crate::codec::FileKind;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::{AttemptNumber, SubtaskId, TaskManagerId};
use crate::runtime::control_plane::ControlPlane;
use crate::runtime::hooks::{EngineEvent, Hooks, TaskManagerLoss};
use crate::runtime::messages::{
    ControlMessage, Heartbeat, RestoreHandle, TaskDeployment, TaskStatus,
};
use crate::runtime::restart::{RestartDecision, RestartStrategy, RestartStrategyConfig};
use crate::runtime::rpc::Rpc;
use crate::runtime::sim_time;
use crate::runtime::task::Services;
use crate::time::{Duration, Instant};
use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
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

struct TaskManagerInfo {
    instance: u64,
    slots: u32,
    control_address: SocketAddr,
    data_address: SocketAddr,
    last_heartbeat_at: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum JobStatus {
    WaitingForResources,
    Deploying { deadline: Instant },
    Running,
    Restarting { at: Instant },
    Finished,
    Failed,
}

/// A task as the job manager tracks it within one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskState {
    Deploying,
    Running,
    Finished,
}

enum Input {
    Control(ControlMessage),
    MetadataWritten(CompletedCheckpoint, Result<(), String>),
}

struct JobMaster {
    setup: JobManagerSetup,
    rpc: Rpc,
    control: ControlPlane,
    taskmanagers: BTreeMap<TaskManagerId, TaskManagerInfo>,
    status: JobStatus,
    attempt: AttemptNumber,
    placement: BTreeMap<SubtaskId, TaskManagerId>,
    task_status: BTreeMap<SubtaskId, TaskState>,
    coordinator: CheckpointCoordinator,
    restart: RestartStrategy,
    inbox_sender: UnboundedSender<Input>,
    liveness_check_at: Instant,
    final_checkpoint: FinalCheckpoint,
}

/// The job manager's main: runs the job to a terminal status.
pub async fn run_jobmanager(setup: JobManagerSetup) {
    let rpc = Rpc::bind()
        .await
        .expect("the request port is free on a fresh node");
    let (control, messages) = ControlPlane::listen()
        .await
        .expect("the control port is free on a fresh node");
    let (inbox_sender, mut inbox) = unbounded();
    madsim::task::spawn(forward_control(messages, inbox_sender.clone()));
    setup.hooks.event(
        NODE,
        EngineEvent::JobStarted {
            job: setup.graph.job.name.clone(),
        },
    );
    let final_checkpoint = FinalCheckpoint::new(
        setup.final_checkpoint,
        setup.graph.source_subtasks().into_iter().collect(),
    );
    let mut master = JobMaster {
        coordinator: CheckpointCoordinator::new(setup.checkpoint.clone()),
        restart: RestartStrategy::new(setup.restart.clone()),
        liveness_check_at: sim_time::now().add(setup.heartbeat_interval),
        setup,
        rpc,
        control,
        taskmanagers: BTreeMap::new(),
        status: JobStatus::WaitingForResources,
        attempt: AttemptNumber(0),
        placement: BTreeMap::new(),
        task_status: BTreeMap::new(),
        inbox_sender,
        final_checkpoint,
    };
    master.run(&mut inbox).await;
}

/// Control messages join the job manager's one mailbox, beside its own completions.
async fn forward_control(
    mut messages: UnboundedReceiver<ControlMessage>,
    inbox: UnboundedSender<Input>,
) {
    while let Some(message) = messages.next().await {
        if inbox.unbounded_send(Input::Control(message)).is_err() {
            return;
        }
    }
}

impl JobMaster {
    fn event(&self, event: EngineEvent) {
        self.setup.hooks.event(NODE, event);
    }

    async fn run(&mut self, inbox: &mut UnboundedReceiver<Input>) {
        while !matches!(self.status, JobStatus::Finished | JobStatus::Failed) {
            let deadline = self.next_deadline();
            futures::select_biased! {
                input = inbox.next() => match input {
                    Some(Input::Control(message)) => self.on_control(message).await,
                    Some(Input::MetadataWritten(checkpoint, result)) => self.on_metadata_written(checkpoint, result),
                    None => return,
                },
                _ = sim_time::sleep_until_opt(deadline).fuse() => self.on_timers().await,
            }
            self.drain_coordinator().await;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let status_deadline = match self.status {
            JobStatus::Deploying { deadline } => Some(deadline),
            JobStatus::Restarting { at } => Some(at),
            _ => None,
        };
        [
            Some(self.liveness_check_at),
            status_deadline,
            self.coordinator.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_timers(&mut self) {
        let now = sim_time::now();
        self.coordinator.on_timeout(now);
        if now >= self.liveness_check_at {
            self.liveness_check_at = now.add(self.setup.heartbeat_interval);
            self.check_liveness(now).await;
        }
        match self.status.clone() {
            JobStatus::Deploying { deadline } if now >= deadline => {
                self.fail_over("deployment timed out: not every task reported running".to_string())
                    .await
            }
            JobStatus::Restarting { at } if now >= at => {
                self.status = JobStatus::WaitingForResources;
                self.try_deploy().await;
            }
            _ => {}
        }
    }

    async fn check_liveness(&mut self, now: Instant) {
        let heartbeat = ControlMessage::JobManagerHeartbeat {
            final_completed: self
                .final_checkpoint
                .completed_final(self.coordinator.latest_completed().map(|c| c.checkpoint_id)),
        };
        for tm in self.taskmanagers.values() {
            self.control.send(tm.control_address, &heartbeat).await;
        }
        let timeout = self.setup.heartbeat_timeout;
        let lost: Vec<TaskManagerId> = self
            .taskmanagers
            .iter()
            .filter(|(_, tm)| now.since(tm.last_heartbeat_at) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for taskmanager in lost {
            self.taskmanagers.remove(&taskmanager);
            self.on_taskmanager_lost(taskmanager, TaskManagerLoss::NoHeartbeat { timeout })
                .await;
        }
    }

    async fn on_taskmanager_lost(&mut self, taskmanager: TaskManagerId, loss: TaskManagerLoss) {
        let reason = format!("{taskmanager} {loss}");
        self.event(EngineEvent::TaskManagerLost { taskmanager, loss });
        let hosts_tasks = self.placement.values().any(|tm| *tm == taskmanager);
        let active = matches!(
            self.status,
            JobStatus::Deploying { .. } | JobStatus::Running
        );
        if hosts_tasks && active {
            self.fail_over(reason).await;
        }
    }

    async fn on_control(&mut self, message: ControlMessage) {
        let now = sim_time::now();
        match message {
            ControlMessage::Heartbeat(heartbeat) => self.on_heartbeat(now, heartbeat).await,
            ControlMessage::TaskStatusChanged {
                attempt,
                subtask,
                status,
            } => self.on_task_status(attempt, subtask, status).await,
            ControlMessage::AcknowledgeCheckpoint {
                attempt,
                subtask,
                checkpoint_id,
                ack,
            } if attempt == self.attempt => {
                self.coordinator.on_ack(now, subtask, checkpoint_id, ack)
            }
            ControlMessage::DeclineCheckpoint {
                attempt,
                checkpoint_id,
                reason,
                ..
            } if attempt == self.attempt => self.coordinator.on_decline(now, checkpoint_id, reason),
            ControlMessage::EndOfData { attempt, subtask } => self.on_end_of_data(attempt, subtask),
            // Acks and declines of an earlier attempt are expected after a failover.
            ControlMessage::AcknowledgeCheckpoint { .. }
            | ControlMessage::DeclineCheckpoint { .. } => {}
            other => self.event(EngineEvent::UnexpectedMessage {
                message: format!("{other:?}"),
            }),
        }
    }

    fn on_end_of_data(&mut self, attempt: AttemptNumber, subtask: SubtaskId) {
        if attempt != self.attempt {
            return; // From a cancelled attempt.
        }
        let event = match self.final_checkpoint.on_end_of_data(subtask) {
            Ok(EndOfData::AllSourcesAtEnd) => EngineEvent::AllSourcesAtEnd,
            Ok(EndOfData::Recorded | EndOfData::Repeated) => return,
            Err(error) => EngineEvent::EndOfDataIgnored {
                error: error.to_string(),
            },
        };
        self.event(event);
    }

    async fn on_heartbeat(&mut self, now: Instant, heartbeat: Heartbeat) {
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
            self.taskmanagers.remove(&taskmanager);
            self.on_taskmanager_lost(taskmanager, TaskManagerLoss::Restarted)
                .await;
        }
        let info = self
            .taskmanagers
            .entry(taskmanager)
            .or_insert_with(|| TaskManagerInfo {
                instance,
                slots,
                control_address,
                data_address,
                last_heartbeat_at: now,
            });
        let registered = info.last_heartbeat_at == now && known_instance != Some(instance);
        info.last_heartbeat_at = now;
        if registered {
            self.event(EngineEvent::TaskManagerRegistered { taskmanager, slots });
            // A task manager given up for lost may come back with tasks of an attempt that
            // failed over: they are zombies, so cancel them (Flink frees such slots likewise).
            let hosts_current = self.placement.values().any(|tm| *tm == taskmanager);
            if self.attempt.0 > 0 && !hosts_current {
                self.control
                    .send(
                        control_address,
                        &ControlMessage::Cancel {
                            attempt: self.attempt,
                        },
                    )
                    .await;
            }
        }
        for (attempt, subtask, status) in tasks {
            self.on_task_status(attempt, subtask, status).await;
        }
        if self.status == JobStatus::WaitingForResources {
            self.try_deploy().await;
        }
    }

    async fn on_task_status(
        &mut self,
        attempt: AttemptNumber,
        subtask: SubtaskId,
        status: TaskStatus,
    ) {
        if attempt != self.attempt
            || !matches!(
                self.status,
                JobStatus::Deploying { .. } | JobStatus::Running
            )
        {
            return; // A report from a cancelled attempt.
        }
        let Some(known) = self.task_status.get(&subtask).copied() else {
            return;
        };
        let now = sim_time::now();
        match status {
            TaskStatus::Failed(reason) => {
                return self
                    .fail_over(format!("task {subtask} failed: {reason}"))
                    .await
            }
            TaskStatus::Running if known == TaskState::Deploying => {
                self.task_status.insert(subtask, TaskState::Running);
            }
            TaskStatus::Finished if known != TaskState::Finished => {
                self.task_status.insert(subtask, TaskState::Finished);
                self.coordinator.on_task_finished(now, subtask);
                if self.task_status.values().all(|s| *s == TaskState::Finished) {
                    self.coordinator.stop(now);
                    self.status = JobStatus::Finished;
                    self.event(EngineEvent::JobFinished {
                        attempt: self.attempt,
                    });
                    return;
                }
            }
            TaskStatus::Running | TaskStatus::Finished => return,
        }
        let all_started = self
            .task_status
            .values()
            .all(|s| *s != TaskState::Deploying);
        if matches!(self.status, JobStatus::Deploying { .. }) && all_started {
            self.status = JobStatus::Running;
            self.event(EngineEvent::JobRunning {
                attempt: self.attempt,
            });
            self.coordinator
                .start(now, self.task_status.keys().copied().collect());
        }
    }

    /// Places subtask i of every vertex in slot i (Flink's default slot sharing), slots taken
    /// from task managers in id order.
    fn place(&self) -> Option<BTreeMap<SubtaskId, TaskManagerId>> {
        let slots_needed = self
            .setup
            .graph
            .vertices
            .iter()
            .map(|v| v.parallelism)
            .max()
            .unwrap_or(1);
        let slots: Vec<TaskManagerId> = self
            .taskmanagers
            .iter()
            .flat_map(|(id, tm)| std::iter::repeat_n(*id, tm.slots as usize))
            .collect();
        if (slots.len() as u32) < slots_needed {
            return None;
        }
        Some(
            self.setup
                .graph
                .subtasks()
                .into_iter()
                .map(|subtask| (subtask, slots[subtask.subtask_index as usize]))
                .collect(),
        )
    }

    async fn try_deploy(&mut self) {
        assert_eq!(self.status, JobStatus::WaitingForResources);
        let Some(placement) = self.place() else {
            return;
        };
        let now = sim_time::now();
        self.attempt = AttemptNumber(self.attempt.0 + 1);
        let restore = self.coordinator.latest_completed().cloned();
        let graph = self.setup.graph.clone();
        let mut per_taskmanager: BTreeMap<TaskManagerId, Vec<TaskDeployment>> = BTreeMap::new();
        for (subtask, taskmanager) in &placement {
            let outputs = graph
                .output_channels(*subtask)
                .into_iter()
                .map(|target| (target, self.taskmanagers[&placement[&target]].data_address))
                .collect();
            let restore = restore
                .as_ref()
                .map(|checkpoint| restore_handle(checkpoint, *subtask));
            per_taskmanager
                .entry(*taskmanager)
                .or_default()
                .push(TaskDeployment {
                    subtask: *subtask,
                    outputs,
                    restore,
                });
        }
        self.event(EngineEvent::Deploying {
            attempt: self.attempt,
            taskmanagers: per_taskmanager.len(),
            restore: restore.as_ref().map(|c| c.checkpoint_id),
        });
        for (taskmanager, tasks) in per_taskmanager {
            let address = self.taskmanagers[&taskmanager].control_address;
            self.control
                .send(
                    address,
                    &ControlMessage::Deploy {
                        attempt: self.attempt,
                        tasks,
                    },
                )
                .await;
        }
        self.task_status = placement
            .keys()
            .map(|subtask| (*subtask, TaskState::Deploying))
            .collect();
        self.placement = placement;
        self.status = JobStatus::Deploying {
            deadline: now.add(self.setup.deploy_timeout),
        };
    }

    async fn fail_over(&mut self, reason: String) {
        let now = sim_time::now();
        self.event(EngineEvent::FailingOver {
            attempt: self.attempt,
            reason: reason.clone(),
        });
        self.coordinator.stop(now);
        let cancel = ControlMessage::Cancel {
            attempt: self.attempt,
        };
        for tm in self.taskmanagers.values() {
            self.control.send(tm.control_address, &cancel).await;
        }
        self.placement.clear();
        self.task_status.clear();
        self.final_checkpoint.reset();
        match self.restart.on_failure(now) {
            RestartDecision::RestartAt(at) => {
                self.event(EngineEvent::Restarting);
                self.status = JobStatus::Restarting { at };
            }
            RestartDecision::GiveUp(why) => {
                self.status = JobStatus::Failed;
                self.event(EngineEvent::JobFailed {
                    attempt: self.attempt,
                    reason,
                    why,
                });
            }
        }
    }

    async fn drain_coordinator(&mut self) {
        while let Some(output) = self.coordinator.poll_output() {
            match output {
                Output::Trigger {
                    checkpoint_id,
                    timestamp,
                } => {
                    // The final checkpoint aligns, like a savepoint: no barrier overtakes the
                    // last records, so the sinks' last transactions hold them all.
                    let final_checkpoint = self.final_checkpoint.on_trigger(checkpoint_id);
                    let kind = if final_checkpoint {
                        BarrierKind::Aligned
                    } else {
                        self.setup.checkpoint.barrier_kind()
                    };
                    self.event(EngineEvent::CheckpointTriggered {
                        checkpoint_id,
                        final_checkpoint,
                    });
                    let barrier = Barrier {
                        checkpoint_id,
                        timestamp,
                        kind,
                    };
                    for subtask in self.setup.graph.source_subtasks() {
                        let message = ControlMessage::TriggerCheckpoint {
                            attempt: self.attempt,
                            subtask,
                            barrier,
                        };
                        self.send_to_task(subtask, &message).await;
                    }
                }
                Output::WriteMetadata(checkpoint) => self.write_metadata(checkpoint),
                Output::Completed(checkpoint_id) => {
                    let checkpoint = self
                        .coordinator
                        .latest_completed()
                        .expect("just completed")
                        .clone();
                    self.event(EngineEvent::CheckpointCompleted { checkpoint });
                    self.broadcast(&ControlMessage::NotifyCheckpointComplete {
                        attempt: self.attempt,
                        checkpoint_id,
                    })
                    .await;
                    if self.final_checkpoint.on_completed(checkpoint_id) {
                        for subtask in self.setup.graph.source_subtasks() {
                            let message = ControlMessage::FinishSource {
                                attempt: self.attempt,
                                subtask,
                            };
                            self.send_to_task(subtask, &message).await;
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
                    self.broadcast(&ControlMessage::NotifyCheckpointAborted {
                        attempt: self.attempt,
                        checkpoint_id,
                    })
                    .await;
                }
                Output::FailJob(reason) => {
                    if matches!(
                        self.status,
                        JobStatus::Deploying { .. } | JobStatus::Running
                    ) {
                        self.fail_over(reason).await;
                    }
                }
            }
        }
    }

    fn write_metadata(&self, checkpoint: CompletedCheckpoint) {
        let storage = CheckpointStorage::new(
            self.rpc.clone(),
            self.setup.services.blobstore,
            self.setup.rpc_timeout,
        );
        let inbox = self.inbox_sender.clone();
        madsim::task::spawn(async move {
            let path = metadata_path(checkpoint.checkpoint_id);
            let result = storage
                .write(FileKind::CheckpointMetadata, &path, &checkpoint)
                .await
                .map(|_| ());
            let _ = inbox.unbounded_send(Input::MetadataWritten(checkpoint, result));
        });
    }

    fn on_metadata_written(&mut self, checkpoint: CompletedCheckpoint, result: Result<(), String>) {
        let now = sim_time::now();
        match result {
            Ok(()) => self.coordinator.on_metadata_written(now, checkpoint),
            Err(reason) => {
                self.coordinator
                    .on_metadata_failed(now, checkpoint.checkpoint_id, reason)
            }
        }
    }

    async fn send_to_task(&self, subtask: SubtaskId, message: &ControlMessage) {
        if let Some(tm) = self
            .placement
            .get(&subtask)
            .and_then(|id| self.taskmanagers.get(id))
        {
            self.control.send(tm.control_address, message).await;
        }
    }

    async fn broadcast(&self, message: &ControlMessage) {
        let hosts: BTreeSet<TaskManagerId> = self.placement.values().copied().collect();
        for taskmanager in hosts {
            if let Some(tm) = self.taskmanagers.get(&taskmanager) {
                self.control.send(tm.control_address, message).await;
            }
        }
    }
}

/// The state files a subtask restores from: those of every subtask of its vertex.
fn restore_handle(checkpoint: &CompletedCheckpoint, subtask: SubtaskId) -> RestoreHandle {
    let state_paths = checkpoint
        .acks
        .iter()
        .filter(|(s, _)| s.vertex_id == subtask.vertex_id)
        .map(|(_, ack)| ack.state_path.clone())
        .collect();
    RestoreHandle {
        checkpoint_id: checkpoint.checkpoint_id,
        state_paths,
    }
}
