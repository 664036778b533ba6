//! One simulated run: a madsim runtime built from the seed, the cluster's nodes, the fault
//! injector, and what the checker needs collected at the end.

use crate::api::jobs::{INPUT_TOPIC, OUTPUT_TOPIC};
use crate::api::value::Value;
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::{CheckpointId, TaskManagerId};
use crate::limits::HARNESS_SIGNALS_CAPACITY;
use crate::runtime::control_plane::{ControlPlane, CONTROL_PORT};
use crate::runtime::hooks::JobOutcome;
use crate::runtime::jobmanager::{run_jobmanager, JobManagerSetup, JobSubmission, RestoreFrom};
use crate::runtime::leadership::LeaderTerm;
use crate::runtime::messages::ControlMessage;
use crate::runtime::rpc::REQUEST_PORT;
use crate::runtime::sim_time;
use crate::runtime::task_context::{OffsetCommit, Services, TaskConfig};
use crate::runtime::taskmanager::{run_taskmanager, TaskManagerSetup};
use crate::scenario::faults::{FaultAction, FaultTrigger};
use crate::scenario::node_name::NodeName;
use crate::scenario::stage::StageRestore;
use crate::scenario::Scenario;
use crate::services::blobstore::run_blobstore;
use crate::services::broker::{run_broker, BrokerStorage};
use crate::services::disk::{CrashLoss, Disk};
use crate::services::high_availability::{run_ha_service, HaStorage};
use crate::services::kv_store::{run_kv_store, KvStorage};
use crate::services::messages::IsolationLevel;
use crate::services::record_batch::RecordBatch;
use crate::sim::observer::{
    NoticeDelayWindow, ObservedCheckpoint, Observer, ObserverRef, RecordedEvent, Signal,
    SlowLinkWindow, SlowWindow,
};
use crate::sim::sink_output::SinkOutput;
use crate::sim::trace::trace_hash;
use crate::sim::ttl_visibility::TtlVisibility;
use crate::state::snapshot::{BroadcastStateSnapshot, LogicalKeyedState};
use crate::time::{Duration, Instant};
use futures::channel::mpsc::{channel, Receiver};
use futures::{FutureExt, StreamExt};
use madsim::runtime::Handle;
use madsim::task::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The harness node's address, outside the cluster's (`NodeName::ip`).
const HARNESS_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 9, 1));
/// How long after the job's end checkpoint storage is listed: time for the snapshot writes of
/// cancelled tasks to end and delete what they wrote.
const CHECKPOINT_CLEANUP_GRACE: Duration = Duration::from_ms(100);
/// Kafka's default `auto.commit.interval.ms`.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// Wait for an RPC answer inside the cluster.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// A deployment whose tasks are not all running by then fails over.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client waits before it asks again for a stop that failed.
const STOP_RETRY_DELAY: Duration = Duration::from_ms(500);

/// The leadership term whose block numbers the attempts and checkpoints of the job the
/// client submitted `submission`-th (0: the first): each job keeps clear of the earlier ones'.
fn stage_term(submission: usize) -> LeaderTerm {
    LeaderTerm(LeaderTerm::FIRST.0 + submission as u64)
}

/// Everything a run leaves for the checker and the report.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// Whether faults were injected.
    pub with_faults: bool,
    /// How the job ended and when; `None` if it was still running at the deadline.
    pub outcome: Option<(Instant, JobOutcome)>,
    /// Completed checkpoints with their decoded state.
    pub checkpoints: Vec<ObservedCheckpoint>,
    /// Final keyed state per operator uid (of the attempt that finished), as visible: what
    /// had expired under a state TTL is left out.
    pub final_state: BTreeMap<String, LogicalKeyedState>,
    /// What the final state leaves out as expired: the reference is held to the same rule.
    pub final_visibility: TtlVisibility,
    /// Final broadcast state per keyed broadcast operator uid: each subtask's copy.
    pub final_broadcast: BTreeMap<String, Vec<BroadcastStateSnapshot>>,
    /// The output topic as the scenario's reader sees it (its isolation level), partition by
    /// partition.
    pub sink_output: RecordBatch,
    /// Everything the sink left outside the job: the output log with each record's
    /// transaction and batch, the broker's transactions, the key-value store.
    pub output: SinkOutput,
    /// Failures that caused a failover.
    pub failures: Vec<(Instant, String)>,
    /// Every file checkpoint storage holds at the end of the run.
    pub checkpoint_files: Vec<String>,
    /// Restarts.
    pub restarts: u32,
    /// Per fault of the plan, when it fired; `None` if it never did (empty without faults).
    pub faults_fired: Vec<Option<Instant>>,
    /// The engine's events, in order (what tests match).
    pub events: Vec<RecordedEvent>,
    /// The trace.
    pub trace: Vec<String>,
    /// Its hash.
    pub trace_hash: u64,
}

fn services(standby: bool) -> Services {
    Services {
        jobmanager: SocketAddr::new(NodeName::JobManager.ip(), CONTROL_PORT),
        standby_jobmanager: standby
            .then(|| SocketAddr::new(NodeName::StandbyJobManager.ip(), CONTROL_PORT)),
        broker: SocketAddr::new(NodeName::Broker.ip(), REQUEST_PORT),
        blobstore: SocketAddr::new(NodeName::Blobstore.ip(), REQUEST_PORT),
        kv: SocketAddr::new(NodeName::Kv.ip(), REQUEST_PORT),
    }
}

// Mixed into the run's seed for the restart strategy's jitter generator.
const RESTART_JITTER_SALT: u64 = 0x5245_5354_4152_5421;

/// The seed of the restart strategy's jitter in the run of `seed`: derived without a draw
/// from the simulator's generator, so it moves no other random choice of the run.
pub fn restart_seed(seed: u64) -> u64 {
    seed ^ RESTART_JITTER_SALT
}

/// One hop of a message on the simulated network takes a latency drawn uniformly from this
/// range (from the run's seeded generator): a LAN in one data centre, as a Flink cluster runs
/// on, rather than madsim's default of 1–10 ms.
pub const HOP_LATENCY: std::ops::Range<std::time::Duration> =
    std::time::Duration::from_micros(50)..std::time::Duration::from_micros(500);

fn network_config() -> madsim::Config {
    let mut config = madsim::Config::default();
    config.net.send_latency = HOP_LATENCY;
    config
}

/// Runs `scenario` under `seed`, with its faults or without (the oracle run).
/// `input` is the workload's records per partition (`scenario.workload.generate()`).
pub fn simulate(
    scenario: &Scenario,
    input: &[Vec<Value>],
    seed: u64,
    with_faults: bool,
) -> RunResult {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, network_config());
    let scenario = scenario.clone();
    let broker_storage = load_input(&scenario, input);
    let kv_storage = KvStorage::default();
    let (result, observer) = runtime.block_on(async move {
        run_cluster(scenario, broker_storage, kv_storage, seed, with_faults).await
    });
    drop(runtime);
    // A task that outlives its runtime keeps its whole node alive: seeds run in one process, so
    // one leak per seed is memory that grows without bound over a sweep.
    assert!(
        observer.released(),
        "seed {seed}: a task of the run outlived its runtime"
    );
    result
}

async fn run_cluster(
    scenario: Scenario,
    broker_storage: BrokerStorage,
    kv_storage: KvStorage,
    seed: u64,
    with_faults: bool,
) -> (RunResult, ObserverRef) {
    let graph = Arc::new(scenario.graph());
    let blob_disk = Disk::new();
    let (signal_sender, signals) = channel(HARNESS_SIGNALS_CAPACITY);
    let observer = Observer::new(blob_disk.clone(), signal_sender);
    observer.trace(
        "harness",
        format!(
            "seed {seed}, scenario `{}`, faults {}",
            scenario.name,
            if with_faults { "on" } else { "off" }
        ),
    );
    let submission = JobSubmission::new(graph.clone());
    let nodes = start_nodes(
        &scenario,
        seed,
        submission.clone(),
        &Storages {
            broker: broker_storage.clone(),
            kv: kv_storage.clone(),
            blob_disk: blob_disk.clone(),
            ha: HaStorage::new(scenario.ha_lease),
        },
        &observer,
    );
    // Every stage's faults, numbered on from one stage to the next; without faults none, and
    // no stage after the first (the failure-free run is one uninterrupted job).
    let stages = if with_faults {
        (0..scenario.stage_count())
            .map(|index| scenario.stage(index).faults)
            .collect()
    } else {
        vec![Default::default()]
    };
    let faults: Vec<(usize, crate::scenario::faults::Fault)> = stages
        .iter()
        .enumerate()
        .flat_map(
            |(stage, plan): (usize, &crate::scenario::faults::FaultPlan)| {
                plan.faults.iter().map(move |f| (stage, f.clone()))
            },
        )
        .collect();
    let node_ids: Vec<NodeId> = nodes.by_name.values().copied().collect();
    // The harness's node has an address of its own: the client's `flink cancel` comes from it.
    let harness = Handle::current()
        .create_node()
        .name("harness")
        .ip(HARNESS_IP)
        .build();
    let mut injector = Injector {
        blob_disk: blob_disk.clone(),
        graph: graph.clone(),
        fired_at: vec![None; faults.len()],
        faults,
        stage: 0,
        stop: None,
        stage_starts: Vec::new(),
        client: Arc::default(),
        nodes,
        observer: observer.clone(),
        harness: harness.clone(),
    };
    injector.arm_stage();
    let mut signals = signals;
    let deadline = Instant(scenario.deadline.0);
    injector.run(&mut signals, deadline).await;
    if let Some(checkpoint_id) = scenario.restore.filter(|_| with_faults) {
        let path = scenario.checkpoint.storage.metadata_path(checkpoint_id);
        let restore = (checkpoint_id, path, false);
        if injector.resubmit(&submission, restore, graph.clone()).await {
            injector.run(&mut signals, deadline).await;
        }
    }
    for (index, stage) in scenario.stages.iter().enumerate().filter(|_| with_faults) {
        let Some(restore) = injector.stage_restore(&scenario, stage) else {
            break;
        };
        let graph = Arc::new(scenario.stage(index + 1).graph());
        if !injector.resubmit(&submission, restore, graph.clone()).await {
            break;
        }
        injector.graph = graph;
        injector.stage = index + 1;
        injector.arm_stage();
        injector.run(&mut signals, deadline).await;
    }
    let faults_fired = injector.fired_at.clone();
    let output = SinkOutput::collect(&broker_storage, &kv_storage, sim_time::now());
    let mut result = collect(
        seed,
        with_faults,
        &observer,
        output,
        scenario.sink.isolation,
        &injector.graph,
        &injector.stage_starts,
    );
    // Tasks cancelled as the job ended may still be writing a snapshot, which they delete
    // once written: checkpoint storage is listed after that settled.
    sim_time::sleep(CHECKPOINT_CLEANUP_GRACE).await;
    result.checkpoint_files = blob_disk.paths();
    tear_down(node_ids.into_iter().chain([harness.id()])).await;
    result.faults_fired = faults_fired;
    (result, observer.downgrade())
}

fn load_input(scenario: &Scenario, partitions: &[Vec<Value>]) -> BrokerStorage {
    let storage = BrokerStorage::new(scenario.sink.broker_transaction_max_timeout);
    storage.create_topic(INPUT_TOPIC, partitions.len() as u32);
    for (partition, records) in partitions.iter().enumerate() {
        let mut encoded = RecordBatch::with_capacity(records.len(), 0);
        records.iter().for_each(|record| encoded.push_value(record));
        storage
            .append(INPUT_TOPIC, partition as u32, &encoded)
            .expect("topic just created");
    }
    // A partition per sink subtask, in the stage that runs the most of them.
    let sink_parallelism = (0..scenario.stage_count())
        .map(|stage| {
            scenario
                .stage(stage)
                .job()
                .operators
                .last()
                .expect("a sink")
                .parallelism
        })
        .max()
        .expect("one stage at least");
    storage.create_topic(OUTPUT_TOPIC, sink_parallelism);
    storage
}

/// Node ids by name.
struct Nodes {
    by_name: BTreeMap<NodeName, NodeId>,
}

impl Nodes {
    /// Creates node `name` at its address; `main` runs at its start and at every restart.
    fn start<F, Fut>(&mut self, name: NodeName, main: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let node = Handle::current()
            .create_node()
            .name(name.to_string())
            .ip(name.ip())
            .init(main)
            .build();
        self.by_name.insert(name, node.id());
    }
}

/// The durable storage of the service nodes, which outlives their restarts.
struct Storages {
    broker: BrokerStorage,
    kv: KvStorage,
    blob_disk: Disk,
    ha: HaStorage,
}

fn start_nodes(
    scenario: &Scenario,
    seed: u64,
    submission: JobSubmission,
    storages: &Storages,
    observer: &Observer,
) -> Nodes {
    let mut nodes = Nodes {
        by_name: BTreeMap::new(),
    };
    let storage = storages.broker.clone();
    nodes.start(NodeName::Broker, move || run_broker(storage.clone()));
    if scenario.sink.kind.uses_kv_store() {
        let kv = storages.kv.clone();
        nodes.start(NodeName::Kv, move || run_kv_store(kv.clone()));
    }
    let (disk, config) = (storages.blob_disk.clone(), scenario.blobstore);
    nodes.start(NodeName::Blobstore, move || {
        run_blobstore(disk.clone(), config)
    });
    if scenario.high_availability {
        let storage = storages.ha.clone();
        nodes.start(NodeName::Ha, move || run_ha_service(storage.clone()));
    }
    let jobmanager = JobManagerSetup {
        name: NodeName::JobManager.to_string(),
        address: SocketAddr::new(NodeName::JobManager.ip(), CONTROL_PORT),
        lease_duration: scenario.ha_lease,
        checkpoint: scenario.checkpoint.clone(),
        restart: scenario.restart.clone(),
        restart_seed: restart_seed(seed),
        failover: scenario.failover,
        heartbeat_interval: scenario.heartbeat_interval,
        heartbeat_timeout: scenario.heartbeat_timeout,
        deploy_timeout: DEPLOY_TIMEOUT,
        rpc_timeout: RPC_TIMEOUT,
        services: services(scenario.standby_jobmanager),
        hooks: Arc::new(observer.clone()),
        final_checkpoint: scenario.sink.kind.commits_on_checkpoints(),
        high_availability: scenario
            .high_availability
            .then(|| SocketAddr::new(NodeName::Ha.ip(), REQUEST_PORT)),
        submission: submission.clone(),
    };
    if scenario.standby_jobmanager {
        let standby = JobManagerSetup {
            name: NodeName::StandbyJobManager.to_string(),
            address: SocketAddr::new(NodeName::StandbyJobManager.ip(), CONTROL_PORT),
            ..jobmanager.clone()
        };
        nodes.start(NodeName::StandbyJobManager, move || {
            run_jobmanager(standby.clone())
        });
    }
    nodes.start(NodeName::JobManager, move || {
        run_jobmanager(jobmanager.clone())
    });
    let task_config = TaskConfig {
        buffer_timeout: scenario.buffer_timeout,
        source_records_per_second: scenario.workload.records_per_second,
        checkpointing_mode: scenario.checkpoint.mode,
        offset_commit: match (scenario.checkpoint.mode, scenario.checkpointing()) {
            (CheckpointingMode::AtMostOnce, _) => OffsetCommit::OnRead,
            (_, true) => OffsetCommit::InCheckpoints,
            (_, false) => OffsetCommit::Periodic(AUTO_COMMIT_INTERVAL),
        },
        rpc_timeout: RPC_TIMEOUT,
        sink: scenario.sink.clone(),
        checkpoint_storage: scenario.checkpoint.storage.clone(),
    };
    for index in 1..=scenario.taskmanagers {
        let setup = TaskManagerSetup {
            taskmanager: TaskManagerId(index),
            slots: scenario.slots_per_taskmanager,
            address: NodeName::TaskManager(index).ip(),
            graph: submission.graph.clone(),
            services: services(scenario.standby_jobmanager),
            task_config: task_config.clone(),
            heartbeat_interval: scenario.heartbeat_interval,
            heartbeat_timeout: scenario.heartbeat_timeout,
            hooks: Arc::new(observer.clone()),
        };
        nodes.start(NodeName::TaskManager(index), move || {
            run_taskmanager(setup.clone())
        });
    }
    nodes
}

struct Injector {
    // The blobstore's disk: a crash loses or tears what it had not synced.
    blob_disk: Disk,
    // The current stage's job.
    graph: Arc<ExecutionGraph>,
    // Every stage's faults with their stage, in plan order (one numbering over the run).
    faults: Vec<(usize, crate::scenario::faults::Fault)>,
    // The stage running.
    stage: usize,
    // A stop-with-savepoint asked for and not done: asked again when it fails.
    stop: Option<FaultAction>,
    // When each stage after the first was submitted.
    stage_starts: Vec<Instant>,
    // The client (`flink` CLI) on the harness node, once it sent a first request.
    client: Arc<std::sync::Mutex<Option<ControlPlane>>>,
    nodes: Nodes,
    observer: Observer,
    /// Per fault, when it fired.
    fired_at: Vec<Option<Instant>>,
    /// The node the injector's delayed actions run on, killed with the cluster at the end.
    harness: madsim::runtime::NodeHandle,
}

impl Injector {
    /// Injects the plan's faults until the job ends or the deadline passes; returns when each
    /// fault fired.
    async fn run(&mut self, signals: &mut Receiver<Signal>, deadline: Instant) {
        loop {
            let next_timed = self.next_timed();
            let wake = next_timed.map_or(deadline, |(_, at)| at.min(deadline));
            futures::select_biased! {
                signal = signals.next() => match signal {
                    Some(Signal::JobTerminated) | None => return,
                    Some(Signal::CheckpointCompleted(checkpoint_id)) => self.on_checkpoint(checkpoint_id.0),
                    Some(Signal::RecordTriggerFired(index)) => self.fire(index),
                    Some(Signal::SavepointFailed) => self.ask_stop_again(),
                },
                _ = sim_time::sleep_until(wake).fuse() => {
                    if sim_time::now() >= deadline {
                        self.observer.trace("harness", "deadline passed: the job is stuck");
                        return;
                    }
                    if let Some((index, _)) = next_timed {
                        self.fire(index);
                    }
                }
            }
        }
    }

    /// Arms the record and commit triggers of the current stage's faults; a commit trigger's
    /// checkpoint counts in the stage's own numbering.
    fn arm_stage(&self) {
        let base = self.checkpoint_base();
        for (index, (stage, fault)) in self.faults.iter().enumerate() {
            if *stage != self.stage {
                continue;
            }
            match &fault.trigger {
                FaultTrigger::OnRecord { subtask, count } => self.observer.arm_record_trigger(
                    subtask
                        .resolve(&self.graph)
                        .expect("the loader resolved it"),
                    *count,
                    index,
                ),
                FaultTrigger::BeforeCommit {
                    subtask,
                    checkpoint,
                } => self.observer.arm_commit_trigger(
                    subtask
                        .resolve(&self.graph)
                        .expect("the loader resolved it"),
                    CheckpointId(base + checkpoint - 1),
                    index,
                ),
                FaultTrigger::At(_) | FaultTrigger::AfterCheckpoint(_) => {}
            }
        }
    }

    /// The id of the current stage's first checkpoint: each job numbers its checkpoints in a
    /// block of its own.
    fn checkpoint_base(&self) -> u64 {
        stage_term(self.stage).first_checkpoint_id().0
    }

    /// What the next stage resumes from, once this one ended as the plan says: the savepoint
    /// it was stopped with, or its newest retained checkpoint. `None` (traced) when it did
    /// not end so.
    fn stage_restore(
        &self,
        scenario: &Scenario,
        stage: &crate::scenario::stage::Stage,
    ) -> Option<(CheckpointId, String, bool)> {
        let outcome = self.observer.outcome().map(|(_, outcome, _)| outcome);
        let newest = self.observer.newest_snapshot(stage.restore);
        let storage = &scenario.checkpoint.storage;
        let path = match (stage.restore, &outcome, newest) {
            (StageRestore::Savepoint, Some(JobOutcome::Finished), Some(id)) => storage
                .savepoint_directory(id)
                .map(|dir| format!("{dir}_metadata")),
            (StageRestore::Checkpoint, Some(JobOutcome::Canceled), Some(id)) => {
                Some(storage.metadata_path(id))
            }
            _ => None,
        };
        let Some((path, id)) = path.zip(newest) else {
            self.observer.trace(
                "harness",
                format!(
                    "stage {} ended {outcome:?} with no {} to resume from: no next stage",
                    self.stage + 1,
                    stage.restore.name()
                ),
            );
            return None;
        };
        Some((id, path, stage.ignore_unclaimed))
    }

    /// The job ended (stopped or cancelled): the client submits `graph` (the same job, or the
    /// next stage's version of it) from `restore` (`flink run -s <path> [-n]`) to a fresh
    /// cluster (a new job manager and new task managers); the broker, the key-value store and
    /// checkpoint storage live on. False (nothing resubmitted) when the job ended otherwise.
    async fn resubmit(
        &mut self,
        submission: &JobSubmission,
        (checkpoint_id, path, ignore_unclaimed): (CheckpointId, String, bool),
        graph: Arc<ExecutionGraph>,
    ) -> bool {
        let ended = matches!(
            self.observer.outcome(),
            Some((_, JobOutcome::Canceled | JobOutcome::Finished, _))
        );
        if !ended {
            self.observer.trace(
                "harness",
                "the job did not end stopped or cancelled: nothing to resubmit",
            );
            return false;
        }
        self.stop = None;
        self.observer.trace(
            "harness",
            format!("resubmitting the job from {path} to a fresh cluster"),
        );
        self.stage_starts.push(sim_time::now());
        // As at the run's end: tasks cancelled while writing a snapshot delete it once
        // written, before their cluster goes.
        sim_time::sleep(CHECKPOINT_CLEANUP_GRACE).await;
        let handle = Handle::current();
        let cluster: Vec<NodeId> = self
            .nodes
            .by_name
            .iter()
            .filter(|(name, _)| {
                matches!(
                    name,
                    NodeName::JobManager | NodeName::StandbyJobManager | NodeName::TaskManager(_)
                )
            })
            .map(|(_, id)| *id)
            .collect();
        for node in &cluster {
            handle.kill(*node);
        }
        let resubmissions = self.observer.begin_job();
        let restore = RestoreFrom {
            path,
            checkpoint_id,
            ignore_unclaimed,
            numbering: stage_term(resubmissions),
        };
        submission.resubmit(restore, graph);
        for node in &cluster {
            handle.restart(*node);
        }
        true
    }

    /// The current stage's faults not fired yet, with their index.
    fn unfired(&self) -> impl Iterator<Item = (usize, &crate::scenario::faults::Fault)> {
        self.faults
            .iter()
            .enumerate()
            .filter(|(index, (stage, _))| *stage == self.stage && self.fired_at[*index].is_none())
            .map(|(index, (_, fault))| (index, fault))
    }

    fn next_timed(&self) -> Option<(usize, Instant)> {
        self.unfired()
            .filter_map(|(index, fault)| match fault.trigger {
                FaultTrigger::At(at) => Some((index, at)),
                _ => None,
            })
            .min_by_key(|(index, at)| (*at, *index))
    }

    /// A checkpoint completed: the faults due after it (in the stage's own numbering) fire.
    fn on_checkpoint(&mut self, checkpoint_id: u64) {
        let Some(number) = (checkpoint_id + 1).checked_sub(self.checkpoint_base()) else {
            return; // An earlier job's, reported late.
        };
        let due: Vec<usize> = self
            .unfired()
            .filter(|(_, fault)| matches!(fault.trigger, FaultTrigger::AfterCheckpoint(n) if number >= n))
            .map(|(index, _)| index)
            .collect();
        for index in due {
            self.fire(index);
        }
    }

    /// Sends `message` to the job manager(s) from the client outside the cluster, `after` a
    /// delay, unless the job ended meanwhile.
    fn ask_jobmanager(&self, message: ControlMessage, after: Duration) {
        let observer = self.observer.clone();
        let client = self.client.clone();
        self.harness.spawn(async move {
            if after > Duration::ZERO {
                sim_time::sleep(after).await;
                if observer.outcome().is_some() {
                    return;
                }
            }
            // One client for the run: its control port binds once on the harness node.
            let bound = client.lock().expect("never poisoned").clone();
            let control = match bound {
                Some(control) => control,
                None => match ControlPlane::listen().await {
                    Ok((control, _)) => {
                        *client.lock().expect("never poisoned") = Some(control.clone());
                        control
                    }
                    Err(error) => {
                        let what = format!("the client could not bind its control port: {error}");
                        return observer.trace("harness", what);
                    }
                },
            };
            // To every job manager: the one that leads answers.
            let services = services(true);
            control.send(services.jobmanager, &message).await;
            if let Some(standby) = services.standby_jobmanager {
                control.send(standby, &message).await;
            }
        });
    }

    /// A savepoint failed: a stop still wanted is asked again a little later, as a user
    /// whose `flink stop` failed runs it again.
    fn ask_stop_again(&self) {
        let Some(FaultAction::StopWithSavepoint { drain, format }) = self.stop.clone() else {
            return;
        };
        self.observer.trace(
            "harness",
            format!("the stop failed: asking again in {STOP_RETRY_DELAY}"),
        );
        let message = ControlMessage::TriggerSavepoint {
            format,
            terminate: true,
            drain,
        };
        self.ask_jobmanager(message, STOP_RETRY_DELAY);
    }

    /// Kills a node now and restarts it `restart_after` later, if given: a new process whose
    /// durable storage (the broker's log, the blobstore's synced files, the high-availability
    /// service's contents) survived.
    fn kill(&self, handle: &Handle, name: NodeName, restart_after: Option<Duration>) {
        let node = self.nodes.by_name[&name];
        handle.kill(node);
        if name == NodeName::Blobstore {
            for loss in self.blob_disk.crash(madsim::rand::random::<u64>) {
                let what = match loss {
                    CrashLoss::Lost(path) => format!("blobstore crash lost unsynced {path}"),
                    CrashLoss::Torn { path, kept } => {
                        format!("blobstore crash tore unsynced {path} after {kept} byte(s)")
                    }
                };
                self.observer.trace("harness", what);
            }
        }
        let Some(delay) = restart_after else {
            return;
        };
        let observer = self.observer.clone();
        self.harness.spawn(async move {
            sim_time::sleep(delay).await;
            observer.trace("harness", format!("restart {name}"));
            // madsim's restart of a live node keeps its sockets bound: kill first.
            let handle = Handle::current();
            handle.kill(node);
            handle.restart(node);
        });
    }

    /// Stops every task of a node for `duration` (madsim's node pause); it then resumes as
    /// the same instance.
    fn pause(&self, handle: &Handle, name: NodeName, duration: Duration) {
        let node = self.nodes.by_name[&name];
        handle.pause(node);
        let observer = self.observer.clone();
        self.harness.spawn(async move {
            sim_time::sleep(duration).await;
            observer.trace("harness", format!("resume {name}"));
            Handle::current().resume(node);
        });
    }

    fn fire(&mut self, index: usize) {
        if self.fired_at[index].is_some() {
            return;
        }
        self.fired_at[index] = Some(sim_time::now());
        let fault = self.faults[index].1.clone();
        self.observer.trace(
            "harness",
            format!("fault {}: {} ({})", index + 1, fault.action, fault.trigger),
        );
        let handle = Handle::current();
        match fault.action {
            FaultAction::KillTaskManager {
                taskmanager,
                restart_after,
            } => self.kill(&handle, NodeName::TaskManager(taskmanager), restart_after),
            FaultAction::KillJobManager { restart_after } => {
                self.kill(&handle, NodeName::JobManager, restart_after)
            }
            FaultAction::ClogLink {
                from,
                to,
                duration,
                one_way,
            } => {
                let (a, b) = (self.nodes.by_name[&from], self.nodes.by_name[&to]);
                let net = madsim::net::NetSim::current();
                net.clog_link(a, b);
                if !one_way {
                    net.clog_link(b, a);
                }
                let observer = self.observer.clone();
                self.harness.spawn(async move {
                    sim_time::sleep(duration).await;
                    let net = madsim::net::NetSim::current();
                    net.unclog_link(a, b);
                    let arrow = if one_way { "->" } else { "<->" };
                    if !one_way {
                        net.unclog_link(b, a);
                    }
                    observer.trace("harness", format!("unclog {from} {arrow} {to}"));
                });
            }
            FaultAction::SlowLink {
                from,
                to,
                latency,
                duration,
            } => {
                let start = sim_time::now();
                let window = SlowLinkWindow {
                    source: from.ip(),
                    target: to.ip(),
                    latency,
                    from: start,
                    until: duration.map(|d| start.add(d)),
                };
                self.observer.add_slow_link(window);
            }
            FaultAction::SlowOperator {
                uid,
                per_record,
                duration,
            } => {
                let from = sim_time::now();
                self.observer.add_slow_window(SlowWindow {
                    uid,
                    per_record,
                    from,
                    until: duration.map(|d| from.add(d)),
                });
            }
            FaultAction::FailTask { subtask } => {
                self.observer.request_task_failure(
                    subtask
                        .resolve(&self.graph)
                        .expect("the loader resolved it"),
                );
            }
            FaultAction::LoseNotice { subtask } => self.observer.lose_next_notice(
                subtask
                    .resolve(&self.graph)
                    .expect("the loader resolved it"),
            ),
            FaultAction::DelayNotices { delay, duration } => {
                let from = sim_time::now();
                self.observer.add_notice_delay(NoticeDelayWindow {
                    delay,
                    from,
                    until: duration.map(|d| from.add(d)),
                });
            }
            FaultAction::PauseTaskManager {
                taskmanager,
                duration,
            } => self.pause(&handle, NodeName::TaskManager(taskmanager), duration),
            FaultAction::PauseJobManager { duration } => {
                self.pause(&handle, NodeName::JobManager, duration)
            }
            FaultAction::CorruptCheckpoint => match self.observer.corrupt_newest_checkpoint() {
                Some(path) => self.observer.trace("harness", format!("corrupt {path}")),
                None => self
                    .observer
                    .trace("harness", "corrupt: no completed checkpoint yet"),
            },
            FaultAction::RestartBroker { restart_after } => {
                self.kill(&handle, NodeName::Broker, Some(restart_after))
            }
            FaultAction::RestartBlobstore { restart_after } => {
                self.kill(&handle, NodeName::Blobstore, Some(restart_after))
            }
            // The client's `flink cancel`, from outside the cluster's nodes.
            FaultAction::CancelJob => {
                self.ask_jobmanager(ControlMessage::CancelJob, Duration::ZERO)
            }
            FaultAction::FailBlobstoreWrites { duration } => {
                let until = sim_time::now().add(duration);
                self.blob_disk.fail_writes_until(until);
            }
            FaultAction::Savepoint { format } => {
                let message = ControlMessage::TriggerSavepoint {
                    format,
                    terminate: false,
                    drain: false,
                };
                self.ask_jobmanager(message, Duration::ZERO)
            }
            FaultAction::StopWithSavepoint { drain, format } => {
                self.stop = Some(fault.action.clone());
                let message = ControlMessage::TriggerSavepoint {
                    format,
                    terminate: true,
                    drain,
                };
                self.ask_jobmanager(message, Duration::ZERO)
            }
        }
    }
}

/// Kills every node so that madsim drops their tasks. madsim frees a task only when its future
/// completes or is dropped; a runtime that is dropped with tasks still parked keeps them (each
/// task's info holds its own waker), so without this every seed leaked its whole cluster.
async fn tear_down(nodes: impl Iterator<Item = NodeId>) {
    let handle = Handle::current();
    for node in nodes {
        handle.kill(node);
    }
    // The kill wakes each task; the executor drops a killed node's task when it next polls it.
    madsim::task::yield_now().await;
}

fn collect(
    seed: u64,
    with_faults: bool,
    observer: &Observer,
    output: SinkOutput,
    isolation: IsolationLevel,
    graph: &ExecutionGraph,
    stage_starts: &[Instant],
) -> RunResult {
    let outcome = observer.outcome();
    let mut final_state: BTreeMap<String, LogicalKeyedState> = BTreeMap::new();
    let mut final_visibility = TtlVisibility::default();
    let mut final_broadcast: BTreeMap<String, Vec<BroadcastStateSnapshot>> = BTreeMap::new();
    if let Some((_, JobOutcome::Finished, attempt)) = &outcome {
        let finals = observer.final_states(*attempt);
        for keyed in finals.values() {
            for (uid, snapshot) in keyed {
                snapshot.merge_into(final_state.entry(uid.clone()).or_default());
                if let Some(broadcast) = &snapshot.broadcast {
                    let copies = final_broadcast.entry(uid.clone()).or_default();
                    copies.push(broadcast.clone());
                }
            }
        }
        final_visibility = TtlVisibility::of(
            finals
                .values()
                .flat_map(|keyed| keyed.iter().map(|(uid, s)| (uid.as_str(), s))),
        );
        final_visibility.apply(&mut final_state);
    }
    for uid in graph.keyed_operator_uids() {
        final_state.entry(uid).or_default();
    }
    let sink_output = output.read_staged(isolation, stage_starts);
    let trace = observer.take_trace_lines();
    RunResult {
        seed,
        with_faults,
        outcome: outcome.map(|(at, outcome, _)| (at, outcome)),
        checkpoints: observer.take_checkpoints(),
        final_state,
        final_visibility,
        final_broadcast,
        sink_output,
        output,
        failures: observer.failures(),
        checkpoint_files: Vec::new(),
        restarts: observer.restarts(),
        faults_fired: Vec::new(),
        events: observer.take_events(),
        trace_hash: trace_hash(&trace),
        trace,
    }
}
