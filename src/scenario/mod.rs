//! Scenario files: TOML, with Flink's option names where one exists (`[execution.checkpointing]
//! interval`, `[restart-strategy.fixed-delay] attempts`, `[heartbeat] timeout`, ...). A bad file
//! fails with an error naming the file, the line and the field.

mod fault_checks;
pub mod faults;
mod file;
pub mod node_name;
mod render;
pub mod stage;
pub mod toml_duration;
pub mod toml_memory;
mod user_job;
pub mod workload;

use crate::api::job::Job;
use crate::api::job_catalog::JobCatalog;
use crate::checkpoint::coordinator::CheckpointConfig;
use crate::graph::execution_graph::ExecutionGraph;
use crate::runtime::restart::RestartStrategyConfig;
use crate::scenario::faults::FaultPlan;
use crate::scenario::workload::Workload;
use crate::time::Duration;
use std::fmt;

pub use render::render_toml;
pub use user_job::UserJob;

/// What a scenario's check verdict is expected to be (`expect = "pass"` or `"fail"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// The checker passes.
    Pass,
    /// The checker fails (a scenario that proves the checker can fail).
    Fail,
    /// The restart strategy gives up and the job ends FAILED; the checker passes only if it
    /// gave up exactly as the strategy allows and what the job left is consistent.
    GaveUp,
    /// The job is lost with its job manager (no high availability, or a job manager killed for
    /// good); the checker passes only if the run shows that loss and what the job left is
    /// consistent.
    JobLost,
    /// A `cancel-job` fault cancels the job: the checker passes only if it ended CANCELED
    /// and what it left is consistent.
    Canceled,
}

impl Expectation {
    /// The name a scenario file gives it.
    pub fn name(self) -> &'static str {
        match self {
            Expectation::Pass => "pass",
            Expectation::Fail => "fail",
            Expectation::GaveUp => "gave-up",
            Expectation::JobLost => "job-lost",
            Expectation::Canceled => "canceled",
        }
    }

    /// Whether a run whose checks `passed` (or not) met this expectation.
    pub fn met(self, passed: bool) -> bool {
        match self {
            Expectation::Pass
            | Expectation::GaveUp
            | Expectation::JobLost
            | Expectation::Canceled => passed,
            Expectation::Fail => !passed,
        }
    }
}

/// A scenario, loaded and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The seed used when none is given on the command line.
    pub seed: u64,
    /// The expected verdict.
    pub expect: Expectation,
    /// The built-in job's name.
    pub job_name: String,
    /// Parallelism of the source (and what chains to it).
    pub source_parallelism: u32,
    /// `parallelism.default`: parallelism of the other operators.
    pub parallelism: u32,
    /// `pipeline.max-parallelism`, if set.
    pub max_parallelism: Option<u32>,
    /// `job.generated-uids`: the job as if written without `uid()`, every uid generated.
    pub generated_uids: bool,
    /// The input.
    pub workload: Workload,
    /// Task managers in the cluster.
    pub taskmanagers: u32,
    /// `taskmanager.numberOfTaskSlots`.
    pub slots_per_taskmanager: u32,
    /// `execution.checkpointing.*`.
    pub checkpoint: CheckpointConfig,
    /// The sink, the broker's transaction limit and the output reader.
    pub sink: crate::connectors::sink_config::SinkConfig,
    /// `restart-strategy.*`.
    pub restart: RestartStrategyConfig,
    /// `jobmanager.execution.failover-strategy`.
    pub failover: crate::runtime::failover_strategy::FailoverStrategy,
    /// `heartbeat.interval`.
    pub heartbeat_interval: Duration,
    /// `heartbeat.timeout`.
    pub heartbeat_timeout: Duration,
    /// `execution.buffer-timeout`.
    pub buffer_timeout: Duration,
    /// Simulated time by which the job must have ended, or the run is stuck.
    pub deadline: Duration,
    /// How the blobstore makes writes durable (`[blobstore]`).
    pub blobstore: crate::services::blobstore::BlobstoreConfig,
    /// `high-availability.type` is `zookeeper` or `kubernetes`: a high-availability service
    /// node elects the job manager and keeps the job and its retained checkpoints.
    pub high_availability: bool,
    /// `high-availability.standby-jobmanagers = 1`: a second job manager, `jobmanager-2`,
    /// stands by and takes over once the leader's lease lapsed.
    pub standby_jobmanager: bool,
    /// `high-availability.lease-duration`: how long a leader holds leadership after it last
    /// renewed (Kubernetes' lease duration, ZooKeeper's session timeout).
    pub ha_lease: Duration,
    /// `execution.state-recovery.path` (or `snapflow run --restore`): once the plan's
    /// `cancel-job` cancelled the job, the client submits it again from this retained
    /// checkpoint, to a fresh cluster.
    pub restore: Option<crate::ids::CheckpointId>,
    /// The faults (of the first stage, when there are several).
    pub faults: FaultPlan,
    /// The stages after the first (`[[stages]]`); empty for a single job.
    pub stages: Vec<stage::Stage>,
    /// A job of the user's own, run in place of the built-in one (`Scenario::with_job`).
    pub user_job: Option<UserJob>,
    /// The jobs `job_name` (and each stage's) is looked up in.
    pub catalog: JobCatalog,
}

/// `[job] name` of a scenario that runs a job of the user's own, given to `snapflow::check`.
pub const OWN_JOB: &str = "own";

/// Why a scenario could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// The line, from 1, if known.
    pub line: Option<usize>,
    /// What is wrong, naming the field.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Sets where the job is resubmitted from once cancelled (`snapflow run --restore`, as
    /// `execution.state-recovery.path`); `Err` names what does not fit.
    pub fn restore_from(&mut self, path: &str) -> Result<(), String> {
        let checkpoint_id = file::restore_path(path)?;
        self.restore = Some(file::check_restore(self, checkpoint_id)?);
        Ok(())
    }

    /// Loads a scenario file naming a built-in job (or `own`).
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        Scenario::load_with_jobs(path, &JobCatalog::built_in())
    }

    /// Loads a scenario file whose jobs are looked up in `catalog` (the built-in jobs and a
    /// user's own).
    pub fn load_with_jobs(
        path: &std::path::Path,
        catalog: &JobCatalog,
    ) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        file::parse(&file, &text, catalog)
    }

    /// Parses scenario text naming a built-in job; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        file::parse(file, text, &JobCatalog::built_in())
    }

    /// Parses scenario text whose jobs are looked up in `catalog`.
    pub fn parse_with_jobs(
        file: &str,
        text: &str,
        catalog: &JobCatalog,
    ) -> Result<Scenario, ScenarioError> {
        file::parse(file, text, catalog)
    }

    /// The job the scenario runs.
    pub fn job(&self) -> Job {
        if let Some(user_job) = &self.user_job {
            return user_job.job().clone();
        }
        let mut job = self
            .catalog
            .build(&self.job_name, self.source_parallelism, self.parallelism)
            .expect(
                "the loader checked the job name (a scenario of `own` job runs under snapflow::check)",
            );
        if let Some(max_parallelism) = self.max_parallelism {
            job.max_parallelism = max_parallelism;
        }
        if self.generated_uids {
            job = job.without_uids();
        }
        job
    }

    /// The job's physical plan.
    pub fn graph(&self) -> ExecutionGraph {
        ExecutionGraph::build(&self.job())
    }

    /// Stage `index` (0: the first) as a scenario of its own: its job version and its faults,
    /// no later stages.
    pub fn stage(&self, index: usize) -> Scenario {
        let mut scenario = Scenario {
            stages: Vec::new(),
            ..self.clone()
        };
        if index == 0 {
            return scenario;
        }
        let stage = &self.stages[index - 1];
        scenario.job_name = stage.job_name.clone();
        scenario.source_parallelism = stage.source_parallelism;
        scenario.parallelism = stage.parallelism;
        scenario.max_parallelism = stage.max_parallelism;
        scenario.faults = stage.faults.clone();
        scenario
    }

    /// How many jobs the scenario runs one after the other.
    pub fn stage_count(&self) -> usize {
        self.stages.len() + 1
    }

    /// The nodes of its cluster.
    pub fn nodes(&self) -> node_name::ClusterNodes {
        node_name::ClusterNodes {
            taskmanagers: self.taskmanagers,
            kv: self.sink.kind.uses_kv_store(),
            ha: self.high_availability,
            standby: self.standby_jobmanager,
        }
    }

    /// Whether checkpointing is enabled.
    pub fn checkpointing(&self) -> bool {
        self.checkpoint.interval.is_some()
    }
}
