//! A task manager node: offers slots through its heartbeats, runs deployed tasks, routes
//! data-channel connections to them, and reports their status. Killing the node kills all of
//! it; a restart comes back as a new instance with no tasks.

use crate::ids::{AttemptNumber, ChannelIndex, CheckpointId, SubtaskId, TaskManagerId};
use crate::limits::TASK_MAILBOX_CAPACITY;
use crate::runtime::control_plane::{ControlPlane, CONTROL_PORT};
use crate::runtime::deployment::TaskDeployment;
use crate::runtime::frame_io::{read_frame, read_frame_via};
use crate::runtime::hooks::{EngineEvent, Hooks, NoticeFate};
use crate::runtime::leadership::{FenceDecision, LeaderAddress, LeaderFence, LeaderTerm};
use crate::runtime::messages::{ControlMessage, DataFrame, DeployScope, Heartbeat, TaskStatus};
use crate::runtime::rpc::{Rpc, DATA_PORT};
use crate::runtime::sim_time;
use crate::runtime::task::run_task;
use crate::runtime::task_context::{Services, TaskConfig, TaskContext};
use crate::runtime::task_error::TaskError;
use crate::runtime::task_mailbox::{mailbox, Mailbox, MailboxSender, TaskInput};
use crate::time::{Duration, Instant};
use futures::SinkExt;
use futures::StreamExt;
use madsim::net::{TcpListener, TcpStream};
use madsim::task::JoinHandle;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Pending connections kept for tasks not deployed yet, per task manager.
const PENDING_CONNECTIONS_MAX: usize = 4096;

/// What a task manager is started with.
#[derive(Clone)]
pub struct TaskManagerSetup {
    /// Its id.
    pub taskmanager: TaskManagerId,
    /// Slots it offers (`taskmanager.numberOfTaskSlots`).
    pub slots: u32,
    /// Its own IP (for the data address it advertises).
    pub address: std::net::IpAddr,
    /// The job's plan (its code is on the classpath of every task manager).
    pub graph: crate::runtime::jobmanager::SubmittedGraph,
    /// Where the services are.
    pub services: Services,
    /// Options for its tasks.
    pub task_config: TaskConfig,
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`: with no word from the job manager for this long, the tasks are
    /// cancelled (the job manager is lost, as Flink's task executor decides).
    pub heartbeat_timeout: Duration,
    /// Where the task manager reports events and asks for faults.
    pub hooks: Hooks,
}

struct RunningTask {
    attempt: AttemptNumber,
    inbox: MailboxSender,
    status: TaskStatus,
    handle: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct TaskManagerState {
    // Set at start to the configured job manager; each newer leader's heartbeat moves it.
    leader_address: Option<LeaderAddress>,
    attempt_newest: Option<AttemptNumber>,
    jobmanager_heard_at: Option<Instant>,
    leader: LeaderFence,
    tasks: BTreeMap<SubtaskId, RunningTask>,
    pending_connections: Vec<(AttemptNumber, SubtaskId, ChannelIndex, TcpStream)>,
}

type Shared = Arc<Mutex<TaskManagerState>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, TaskManagerState> {
    shared
        .lock()
        .expect("no task panics while holding the task manager lock")
}

/// The task manager's main: runs until the node is killed.
pub async fn run_taskmanager(setup: TaskManagerSetup) {
    let name = setup.taskmanager.to_string();
    let rpc = Rpc::bind()
        .await
        .expect("the request port is free on a fresh node");
    let (control, mut messages) = ControlPlane::listen()
        .await
        .expect("the control port is free on a fresh node");
    let listener = TcpListener::bind(("0.0.0.0", DATA_PORT))
        .await
        .expect("the data port is free on a fresh node");
    let instance: u64 = madsim::rand::random();
    let shared: Shared = Arc::new(Mutex::new(TaskManagerState {
        leader_address: Some(LeaderAddress::new(setup.services.jobmanager)),
        ..TaskManagerState::default()
    }));
    setup.hooks.event(
        &name,
        EngineEvent::TaskManagerStarted { slots: setup.slots },
    );
    madsim::task::spawn(heartbeat_loop(
        setup.clone(),
        control.clone(),
        shared.clone(),
        instance,
    ));
    let link = LinkProbe {
        hooks: setup.hooks.clone(),
        local: setup.address,
    };
    madsim::task::spawn(accept_loop(listener, shared.clone(), link));
    while let Some(message) = messages.next().await {
        for (mut inbox, input) in on_control(&setup, &rpc, &control, &shared, message) {
            // Waits while the task's mailbox is full: the control link backs up, nothing drops.
            let _ = inbox.send(input).await;
        }
    }
}

async fn heartbeat_loop(
    setup: TaskManagerSetup,
    control: ControlPlane,
    shared: Shared,
    instance: u64,
) {
    loop {
        cancel_if_jobmanager_lost(&setup, &shared);
        let tasks = {
            let state = lock(&shared);
            state
                .tasks
                .iter()
                .map(|(subtask, task)| (task.attempt, *subtask, task.status.clone()))
                .collect()
        };
        let heartbeat = ControlMessage::Heartbeat(Heartbeat {
            taskmanager: setup.taskmanager,
            instance,
            slots: setup.slots,
            data_address: SocketAddr::new(setup.address, DATA_PORT),
            control_address: SocketAddr::new(setup.address, CONTROL_PORT),
            tasks,
        });
        // To every job manager: a standby that takes over learns the task managers from
        // their heartbeats (and a deposed one keeps hearing them, and is fenced).
        control.send(setup.services.jobmanager, &heartbeat).await;
        if let Some(standby) = setup.services.standby_jobmanager {
            control.send(standby, &heartbeat).await;
        }
        sim_time::sleep(setup.heartbeat_interval).await;
    }
}

/// With no job-manager heartbeat for `heartbeat.timeout`, the job manager is lost: every task
/// is cancelled rather than left running as a zombie of an attempt that may have failed over.
fn cancel_if_jobmanager_lost(setup: &TaskManagerSetup, shared: &Shared) {
    let now = sim_time::now();
    let newest = {
        let mut state = lock(shared);
        let Some(heard_at) = state.jobmanager_heard_at else {
            return;
        };
        if now.since(heard_at) <= setup.heartbeat_timeout || state.tasks.is_empty() {
            return;
        }
        state.jobmanager_heard_at = None; // Until it is heard again.
        state
            .tasks
            .values()
            .map(|task| task.attempt)
            .max()
            .expect("tasks exist")
    };
    setup.hooks.event(
        &setup.taskmanager.to_string(),
        EngineEvent::JobManagerLost {
            timeout: setup.heartbeat_timeout,
            attempt: newest,
        },
    );
    // The tasks stay listed as failed, so a job manager that still runs this attempt learns
    // of it from the next heartbeat and fails over (else it would wait for them forever).
    let reason = format!(
        "cancelled: no job-manager heartbeat for {}",
        setup.heartbeat_timeout
    );
    let mut state = lock(shared);
    state.pending_connections.retain(|(a, ..)| *a > newest);
    for task in state.tasks.values_mut() {
        if let Some(handle) = task.handle.take() {
            handle.abort();
        }
        if task.status == TaskStatus::Running {
            task.status = TaskStatus::Failed(reason.clone());
        }
    }
}

/// Inputs for tasks' mailboxes, sent once the task manager's lock is released.
type Deliveries = Vec<(MailboxSender, TaskInput)>;

/// Acts on a control message; returns what goes to which task's mailbox.
fn on_control(
    setup: &TaskManagerSetup,
    rpc: &Rpc,
    control: &ControlPlane,
    shared: &Shared,
    message: ControlMessage,
) -> Deliveries {
    if let Some(term) = leader_term(&message) {
        if !follows(setup, shared, term) {
            return Vec::new();
        }
    }
    match message {
        ControlMessage::Deploy {
            attempt,
            tasks,
            scope,
        } => {
            deploy(setup, rpc, control, shared, attempt, tasks, scope);
            Vec::new()
        }
        ControlMessage::Cancel { attempt } => {
            cancel_up_to(shared, attempt, |_| true);
            Vec::new()
        }
        ControlMessage::CancelTasks { attempt, subtasks } => {
            cancel_up_to(shared, attempt, |subtask| subtasks.contains(&subtask));
            Vec::new()
        }
        ControlMessage::TriggerCheckpoint {
            attempt,
            subtask,
            barrier,
        } => deliver(shared, attempt, subtask, TaskInput::Trigger(barrier)),
        ControlMessage::NotifyCheckpointComplete {
            attempt,
            checkpoint_id,
        } => deliver_notice(setup, shared, Some(attempt), checkpoint_id),
        ControlMessage::NotifyCheckpointAborted {
            attempt,
            checkpoint_id,
        } => {
            let state = lock(shared);
            let addressed = state.tasks.values().filter(|task| task.attempt == attempt);
            addressed
                .map(|task| {
                    (
                        task.inbox.clone(),
                        TaskInput::CheckpointAborted(checkpoint_id),
                    )
                })
                .collect()
        }
        ControlMessage::FinishSource { attempt, subtask } => {
            deliver(shared, attempt, subtask, TaskInput::FinishSource)
        }
        ControlMessage::EndInput { attempt, subtask } => {
            deliver(shared, attempt, subtask, TaskInput::EndInput)
        }
        ControlMessage::JobManagerHeartbeat {
            final_completed,
            leader,
            ..
        } => {
            let mut state = lock(shared);
            state.jobmanager_heard_at = Some(sim_time::now());
            leader_address(&state).set(leader);
            drop(state);
            match final_completed {
                Some(checkpoint_id) => deliver_notice(setup, shared, None, checkpoint_id),
                None => Vec::new(),
            }
        }
        other => {
            setup.hooks.event(
                &setup.taskmanager.to_string(),
                EngineEvent::UnexpectedMessage {
                    message: format!("{other:?}"),
                },
            );
            Vec::new()
        }
    }
}

/// The leadership term a message of the job manager speaks for: its fencing token, or the
/// term that owns the attempt it addresses. A cancel has none: cancelling older attempts is
/// safe from any leader, and a new leader cancels the attempts before its own.
fn leader_term(message: &ControlMessage) -> Option<LeaderTerm> {
    match message {
        ControlMessage::JobManagerHeartbeat { term, .. } => Some(*term),
        ControlMessage::Deploy { attempt, .. }
        | ControlMessage::TriggerCheckpoint { attempt, .. }
        | ControlMessage::NotifyCheckpointComplete { attempt, .. }
        | ControlMessage::NotifyCheckpointAborted { attempt, .. }
        | ControlMessage::FinishSource { attempt, .. }
        | ControlMessage::EndInput { attempt, .. } => Some(LeaderTerm::of_attempt(*attempt)),
        _ => None,
    }
}

/// Whether the message of the leader of `term` is followed. A newer leader is followed at
/// once and every task of an older term is cancelled (Flink's task executor disconnects from
/// a job master that lost leadership and fails its tasks); a deposed leader is refused.
fn follows(setup: &TaskManagerSetup, shared: &Shared, term: LeaderTerm) -> bool {
    let decision = lock(shared).leader.observe(term);
    let name = setup.taskmanager.to_string();
    match decision {
        FenceDecision::Accept => true,
        FenceDecision::Fenced { current } => {
            setup
                .hooks
                .event(&name, EngineEvent::StaleLeaderFenced { term, current });
            false
        }
        FenceDecision::NewLeader { previous } => {
            let older = AttemptNumber(term.first_attempt().0 - 1);
            let cancelled = cancel_up_to(shared, older, |_| true);
            if previous.is_some() {
                setup
                    .hooks
                    .event(&name, EngineEvent::NewLeaderFollowed { term, cancelled });
            }
            true
        }
    }
}

/// Hands a checkpoint-completion notice to the tasks of `attempt` (every task for the
/// heartbeat's repeat, `attempt` = `None`), unless an injected fault loses or delays it.
fn deliver_notice(
    setup: &TaskManagerSetup,
    shared: &Shared,
    attempt: Option<AttemptNumber>,
    checkpoint_id: CheckpointId,
) -> Deliveries {
    let state = lock(shared);
    let now = sim_time::now();
    let mut deliveries = Vec::new();
    let addressed = state
        .tasks
        .iter()
        .filter(|(_, task)| attempt.is_none_or(|a| task.attempt == a));
    for (subtask, task) in addressed {
        let input = TaskInput::CheckpointComplete(checkpoint_id);
        match setup.hooks.notice_fate(*subtask, now, attempt.is_none()) {
            NoticeFate::Deliver => deliveries.push((task.inbox.clone(), input)),
            NoticeFate::Lost => setup.hooks.event(
                &setup.taskmanager.to_string(),
                EngineEvent::NoticeLost {
                    checkpoint_id,
                    subtask: *subtask,
                },
            ),
            NoticeFate::Delayed(delay) => {
                let mut inbox = task.inbox.clone();
                madsim::task::spawn(async move {
                    sim_time::sleep(delay).await;
                    let _ = inbox.send(input).await;
                });
            }
        }
    }
    deliveries
}

fn deliver(
    shared: &Shared,
    attempt: AttemptNumber,
    subtask: SubtaskId,
    input: TaskInput,
) -> Deliveries {
    let state = lock(shared);
    let task = state.tasks.get(&subtask).filter(|t| t.attempt == attempt);
    task.map(|task| (task.inbox.clone(), input))
        .into_iter()
        .collect()
}

/// Where the leading job manager listens.
fn leader_address(state: &TaskManagerState) -> &LeaderAddress {
    state
        .leader_address
        .as_ref()
        .expect("set when the task manager starts")
}

/// Cancels every task of `attempt` and older whose subtask is `chosen`; returns how many.
fn cancel_up_to(
    shared: &Shared,
    attempt: AttemptNumber,
    chosen: impl Fn(SubtaskId) -> bool,
) -> usize {
    let mut state = lock(shared);
    state.attempt_newest = state.attempt_newest.max(Some(attempt));
    let before = state.tasks.len();
    state.tasks.retain(|subtask, task| {
        let cancel = task.attempt <= attempt && chosen(*subtask);
        if cancel {
            if let Some(handle) = &task.handle {
                handle.abort();
            }
        }
        !cancel
    });
    state
        .pending_connections
        .retain(|(a, target, ..)| *a > attempt || !chosen(*target));
    before - state.tasks.len()
}

fn deploy(
    setup: &TaskManagerSetup,
    rpc: &Rpc,
    control: &ControlPlane,
    shared: &Shared,
    attempt: AttemptNumber,
    deployments: Vec<TaskDeployment>,
    scope: DeployScope,
) {
    let older = AttemptNumber(attempt.0.saturating_sub(1));
    if lock(shared).attempt_newest > Some(attempt) {
        return; // A deploy of an attempt already superseded arrived late.
    }
    match scope {
        DeployScope::Job => cancel_up_to(shared, older, |_| true),
        DeployScope::Regions => {
            let deployed: Vec<SubtaskId> = deployments.iter().map(|d| d.subtask).collect();
            cancel_up_to(shared, older, |subtask| deployed.contains(&subtask))
        }
    };
    let mut state = lock(shared);
    state.attempt_newest = Some(attempt);
    for deployment in deployments {
        let subtask = deployment.subtask;
        if state.tasks.contains_key(&subtask) {
            continue; // A duplicate deploy message.
        }
        let (sender, receiver) = mailbox();
        let context = TaskContext {
            attempt,
            subtask,
            graph: setup.graph.current(),
            services: setup.services,
            jobmanager: leader_address(&state).clone(),
            rpc: rpc.clone(),
            control: control.clone(),
            hooks: setup.hooks.clone(),
            record_probe: setup.hooks.record_probe(subtask),
            config: setup.task_config.clone(),
            node_name: setup.taskmanager.to_string(),
        };
        let task_future = supervise(
            context,
            deployment,
            receiver,
            sender.clone(),
            shared.clone(),
        );
        let handle = madsim::task::spawn(task_future);
        state.tasks.insert(
            subtask,
            RunningTask {
                attempt,
                inbox: sender.clone(),
                status: TaskStatus::Running,
                handle: Some(handle),
            },
        );
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.pending_connections)
            .into_iter()
            .partition(|(a, s, ..)| *a == attempt && *s == subtask);
        state.pending_connections = waiting;
        for (_, _, channel, stream) in ready {
            let link = LinkProbe {
                hooks: setup.hooks.clone(),
                local: setup.address,
            };
            madsim::task::spawn(read_input_channel(stream, channel, sender.clone(), link));
        }
    }
}

/// Runs a task and reports how it ended.
async fn supervise(
    context: TaskContext,
    deployment: TaskDeployment,
    receiver: Mailbox,
    sender: MailboxSender,
    shared: Shared,
) {
    let (attempt, subtask, control, jobmanager) = (
        context.attempt,
        context.subtask,
        context.control.clone(),
        context.jobmanager.clone(),
    );
    let (hooks, node) = (context.hooks.clone(), context.node_name.clone());
    let status = match run_task(context, deployment, receiver, sender).await {
        Ok(()) => TaskStatus::Finished,
        Err(error) => {
            let reason = error.to_string();
            let event = EngineEvent::TaskFailed {
                subtask,
                attempt,
                reason: reason.clone(),
            };
            hooks.event(&node, event);
            match error {
                TaskError::CheckpointUnreadable { checkpoint_id, .. } => {
                    TaskStatus::CheckpointUnreadable {
                        checkpoint_id,
                        reason,
                    }
                }
                _ => TaskStatus::Failed(reason),
            }
        }
    };
    if let Some(task) = lock(&shared)
        .tasks
        .get_mut(&subtask)
        .filter(|t| t.attempt == attempt)
    {
        task.status = status.clone();
        task.handle = None;
    }
    control
        .send(
            jobmanager.get(),
            &ControlMessage::TaskStatusChanged {
                attempt,
                subtask,
                status,
            },
        )
        .await;
}

async fn accept_loop(listener: TcpListener, shared: Shared, link: LinkProbe) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        madsim::task::spawn(route_connection(stream, shared.clone(), link.clone()));
    }
}

/// Reads the hello of a new data connection and hands it to its task (or parks it until the
/// task is deployed).
async fn route_connection(mut stream: TcpStream, shared: Shared, link: LinkProbe) {
    let hello =
        madsim::time::timeout(Duration::from_secs(10).to_std(), read_frame(&mut stream)).await;
    let Ok(Ok(Some(DataFrame::Hello {
        attempt,
        target,
        channel,
        ..
    }))) = hello
    else {
        return;
    };
    let mut state = lock(&shared);
    // A task of an older attempt may run on beside newer ones after a region failover.
    if let Some(task) = state.tasks.get(&target).filter(|t| t.attempt == attempt) {
        madsim::task::spawn(read_input_channel(
            stream,
            channel,
            task.inbox.clone(),
            link,
        ));
        return;
    }
    if state.attempt_newest > Some(attempt) {
        return; // From a cancelled attempt: dropping the stream closes it.
    }
    // For a task not deployed yet: parked until it is.
    if state.pending_connections.len() < PENDING_CONNECTIONS_MAX {
        state
            .pending_connections
            .push((attempt, target, channel, stream));
    }
}

/// Moves frames of one input channel into its task's mailbox. Frames pass a delivery stage
/// that holds each back by the link's injected latency (a slow-link fault), in order and
/// pipelined: each frame arrives that much later, not one after the other's delay.
async fn read_input_channel(
    stream: TcpStream,
    channel: ChannelIndex,
    mut inbox: MailboxSender,
    link: LinkProbe,
) {
    let peer = stream.peer_addr().map(|address| address.ip()).ok();
    let (mut reader, writer) = tokio::io::split(stream);
    let connected = TaskInput::InputConnected { channel, writer };
    if inbox.send(connected).await.is_err() {
        return;
    }
    let (mut delayed, due) = futures::channel::mpsc::channel(TASK_MAILBOX_CAPACITY);
    madsim::task::spawn(deliver_when_due(due, inbox));
    let mut deliver_at = Instant::ZERO;
    let mut scratch = Vec::new();
    loop {
        let input = match read_frame_via(&mut reader, &mut scratch).await {
            Ok(Some(frame)) => TaskInput::Frame { channel, frame },
            Ok(None) => TaskInput::InputClosed {
                channel,
                error: None,
            },
            Err(error) => TaskInput::InputClosed {
                channel,
                error: Some(error.to_string()),
            },
        };
        let closed = matches!(input, TaskInput::InputClosed { .. });
        let now = sim_time::now();
        let latency = peer.map_or(Duration::ZERO, |peer| {
            link.hooks.link_latency(peer, link.local, now)
        });
        deliver_at = deliver_at.max(now.add(latency));
        if delayed.send((deliver_at, input)).await.is_err() || closed {
            return;
        }
    }
}

async fn deliver_when_due(
    mut due: futures::channel::mpsc::Receiver<(Instant, TaskInput)>,
    mut inbox: MailboxSender,
) {
    while let Some((at, input)) = due.next().await {
        sim_time::sleep_until(at).await;
        if inbox.send(input).await.is_err() {
            return;
        }
    }
}

/// What an input reader needs to apply injected link latency.
#[derive(Clone)]
struct LinkProbe {
    hooks: Hooks,
    local: std::net::IpAddr,
}
