//! The TOML layout of a scenario file and its translation into a `Scenario`.

use super::{fault_checks, Expectation, Scenario, ScenarioError};
use crate::api::job_catalog::JobCatalog;
use crate::checkpoint::coordinator::{
    CheckpointConfig, CheckpointConfigError, CheckpointingMode, ExternalizedCheckpointRetention,
};
use crate::checkpoint::storage::{CheckpointStorageConfig, StorageKind};
use crate::connectors::sink_config::{SinkConfig, SinkKind};
use crate::graph::execution_graph::ExecutionGraph;
use crate::ids::CheckpointId;
use crate::limits::{
    FAULTS_MAX, PARALLELISM_MAX, RECORDS_PER_SECOND_MAX, RECORD_SIZE_BYTES_MAX, TASKMANAGERS_MAX,
    WORKLOAD_PARTITIONS_MAX, WORKLOAD_RECORDS_MAX, WORKLOAD_TEXT_BYTES_MAX,
};
use crate::runtime::failover_strategy::FailoverStrategy;
use crate::runtime::restart::{ExponentialDelayConfig, RestartStrategyConfig};
use crate::scenario::faults::{Fault, FaultAction, FaultPlan, TRIGGER_KEYS};
use crate::scenario::node_name::NodeName;
use crate::scenario::stage::{Stage, StageRestore};
use crate::scenario::toml_duration::TomlDuration;
use crate::scenario::toml_memory::TomlMemorySize;
use crate::scenario::workload::{Workload, WorkloadKind};
use crate::services::blobstore::BlobstoreConfig;
use crate::services::messages::IsolationLevel;
use crate::time::Duration;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    expect: Option<Spanned<String>>,
    job: JobSection,
    workload: WorkloadSection,
    cluster: ClusterSection,
    #[serde(default)]
    execution: ExecutionSection,
    #[serde(default)]
    restart_strategy: Option<RestartSection>,
    #[serde(default)]
    jobmanager: JobManagerSection,
    #[serde(default)]
    heartbeat: HeartbeatSection,
    #[serde(default)]
    high_availability: HighAvailabilitySection,
    #[serde(default)]
    blobstore: BlobstoreSection,
    #[serde(default)]
    pipeline: PipelineSection,
    #[serde(default)]
    simulation: SimulationSection,
    #[serde(default)]
    sink: SinkSection,
    #[serde(default)]
    broker: BrokerSection,
    #[serde(default)]
    reader: ReaderSection,
    #[serde(default)]
    faults: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    stages: Vec<Spanned<StageSection>>,
}

/// A `[[stages]]` table: the next version of the job and where it resumes from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StageSection {
    job: Option<Spanned<String>>,
    parallelism: Option<u32>,
    source_parallelism: Option<u32>,
    max_parallelism: Option<u32>,
    state_recovery: StageRecoverySection,
    #[serde(default)]
    faults: Vec<Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StageRecoverySection {
    path: Spanned<String>,
    #[serde(default)]
    ignore_unclaimed_state: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SinkSection {
    kind: Option<Spanned<String>>,
    transaction_timeout: Option<TomlDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BrokerSection {
    transaction_max_timeout: Option<TomlDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ReaderSection {
    isolation_level: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct JobSection {
    name: Spanned<String>,
    parallelism: u32,
    source_parallelism: Option<u32>,
    #[serde(default)]
    generated_uids: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WorkloadSection {
    text: Option<String>,
    records: Option<u64>,
    keys: Option<u64>,
    seed: Option<u64>,
    partitions: u32,
    #[serde(default)]
    records_per_second: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ClusterSection {
    taskmanagers: u32,
    #[serde(rename = "numberOfTaskSlots")]
    number_of_task_slots: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct BlobstoreSection {
    fsync: Option<bool>,
    sync_latency: Option<TomlDuration>,
    writeback_delay: Option<TomlDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StateRecoverySection {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct JobManagerSection {
    #[serde(default)]
    execution: JobManagerExecutionSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct JobManagerExecutionSection {
    failover_strategy: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HighAvailabilitySection {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    standby_jobmanagers: Option<u32>,
    lease_duration: Option<TomlDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ExecutionSection {
    buffer_timeout: Option<TomlDuration>,
    #[serde(default)]
    state_recovery: StateRecoverySection,
    #[serde(default)]
    checkpointing: CheckpointingSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CheckpointingSection {
    interval: Option<TomlDuration>,
    mode: Option<Spanned<String>>,
    timeout: Option<TomlDuration>,
    min_pause: Option<TomlDuration>,
    max_concurrent_checkpoints: Option<u32>,
    tolerable_failed_checkpoints: Option<u32>,
    num_retained: Option<u32>,
    unaligned: Option<Spanned<bool>>,
    aligned_checkpoint_timeout: Option<TomlDuration>,
    storage: Option<Spanned<String>>,
    externalized_checkpoint_retention: Option<Spanned<String>>,
    dir: Option<String>,
    data_inline_threshold: Option<TomlMemorySize>,
    max_state_size: Option<TomlMemorySize>,
    savepoint_dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RestartSection {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    fixed_delay: Option<Spanned<FixedDelaySection>>,
    failure_rate: Option<Spanned<FailureRateSection>>,
    exponential_delay: Option<Spanned<ExponentialDelaySection>>,
}

// Each key absent takes Flink's default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FixedDelaySection {
    attempts: Option<u32>,
    delay: Option<TomlDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FailureRateSection {
    max_failures_per_interval: Option<u32>,
    failure_rate_interval: Option<TomlDuration>,
    delay: Option<TomlDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ExponentialDelaySection {
    initial_backoff: Option<TomlDuration>,
    max_backoff: Option<TomlDuration>,
    backoff_multiplier: Option<f64>,
    reset_backoff_threshold: Option<TomlDuration>,
    jitter_factor: Option<f64>,
    attempts_before_reset_backoff: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HeartbeatSection {
    interval: Option<TomlDuration>,
    timeout: Option<TomlDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PipelineSection {
    max_parallelism: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SimulationSection {
    deadline: Option<TomlDuration>,
}

/// Flink's defaults where the file is silent.
/// Kubernetes' leader-election lease (`high-availability.kubernetes.leader-election.lease-duration`).
const HA_LEASE_DEFAULT: Duration = Duration::from_secs(15);
const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);
const HEARTBEAT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(50);
const BUFFER_TIMEOUT_DEFAULT: Duration = Duration::from_ms(100);
const DEADLINE_DEFAULT: Duration = Duration::from_secs(3600);
/// The shortest period of a timer that fires while its task is idle.
const PERIOD_MIN: Duration = Duration::from_ms(1);

struct Context<'a> {
    file: &'a str,
    text: &'a str,
}

impl Context<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn error_at<T>(
        &self,
        span: std::ops::Range<usize>,
        message: String,
    ) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.to_string(),
            line: Some(self.line_of(span.start)),
            message,
        })
    }

    fn error<T>(&self, message: String) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.to_string(),
            line: None,
            message,
        })
    }
}

/// Parses and checks a scenario.
pub fn parse(file: &str, text: &str, catalog: &JobCatalog) -> Result<Scenario, ScenarioError> {
    let context = Context { file, text };
    let raw: ScenarioFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|span| context.line_of(span.start));
        let message = match line.and_then(|l| text.lines().nth(l - 1)) {
            Some(line_text) => format!("{} (in `{}`)", e.message().trim_end(), line_text.trim()),
            None => e.message().trim_end().to_string(),
        };
        ScenarioError {
            file: file.to_string(),
            line,
            message,
        }
    })?;
    let expect = match raw
        .expect
        .as_ref()
        .map(|e| (e.get_ref().as_str(), e.span()))
    {
        None | Some(("pass", _)) => Expectation::Pass,
        Some(("fail", _)) => Expectation::Fail,
        Some(("gave-up", _)) => Expectation::GaveUp,
        Some(("job-lost", _)) => Expectation::JobLost,
        Some(("canceled", _)) => Expectation::Canceled,
        Some((other, span)) => {
            return context.error_at(
                span,
                format!("expect: `{other}` is not \"pass\", \"fail\", \"gave-up\", \"job-lost\" or \"canceled\""),
            )
        }
    };
    let high_availability = match raw
        .high_availability
        .kind
        .as_ref()
        .map(|k| (k.get_ref().to_ascii_lowercase(), k.span()))
    {
        None => false,
        Some((kind, _)) if kind == "none" => false,
        Some((kind, _)) if kind == "zookeeper" || kind == "kubernetes" => true,
        Some((kind, span)) => {
            return context.error_at(
                span,
                format!(
                "high-availability.type: `{kind}` is not \"none\", \"zookeeper\" or \"kubernetes\""
            ),
            )
        }
    };
    let ha_section = &raw.high_availability;
    let standby_jobmanager = match ha_section.standby_jobmanagers.unwrap_or(0) {
        0 => false,
        1 if high_availability => true,
        1 => return context.error("high-availability.standby-jobmanagers: a standby needs high availability (type \"zookeeper\" or \"kubernetes\") to take over".to_string()),
        n => return context.error(format!("high-availability.standby-jobmanagers: {n} is more than the one standby snapflow runs (`jobmanager-2`)")),
    };
    let ha_lease = ha_section.lease_duration.map_or(HA_LEASE_DEFAULT, |d| d.0);
    if ha_lease == Duration::ZERO {
        return context.error("high-availability.lease-duration: must be above zero".to_string());
    }
    let job_name = raw.job.name.get_ref().clone();
    let own = job_name == super::OWN_JOB;
    if !own && !catalog.contains(&job_name) {
        return context.error_at(
            raw.job.name.span(),
            format!(
                "job.name: no job `{job_name}` (there are: {}; or \"{}\", a job of your own checked with snapflow::check)",
                catalog.names().join(", "),
                super::OWN_JOB
            ),
        );
    }
    let parallelism = raw.job.parallelism;
    let source_parallelism = raw.job.source_parallelism.unwrap_or(parallelism);
    for (field, value) in [
        ("job.parallelism", parallelism),
        ("job.source-parallelism", source_parallelism),
    ] {
        if value == 0 || value > PARALLELISM_MAX {
            return context.error(format!("{field}: {value} is outside 1..={PARALLELISM_MAX}"));
        }
    }
    if job_name == "forward" && source_parallelism != parallelism {
        return context.error(format!(
            "job.source-parallelism: {source_parallelism} differs from job.parallelism {parallelism}, but every edge of the `forward` job is forward, which needs one parallelism"
        ));
    }
    let failover = failover_strategy(&context, &raw.jobmanager.execution)?;
    let workload = workload(&context, &raw.workload)?;
    let checkpoint = checkpoint_config(&context, &raw.execution.checkpointing)?;
    let sink = sink_config(&context, &raw, &checkpoint)?;
    let restart = restart_strategy(
        &context,
        raw.restart_strategy.as_ref(),
        checkpoint.interval.is_some(),
    )?;
    if raw.cluster.taskmanagers == 0 || raw.cluster.taskmanagers > TASKMANAGERS_MAX {
        return context.error(format!(
            "cluster.taskmanagers: {} is outside 1..={TASKMANAGERS_MAX}",
            raw.cluster.taskmanagers
        ));
    }
    if raw.cluster.number_of_task_slots == 0 || raw.cluster.number_of_task_slots > PARALLELISM_MAX {
        return context.error(format!(
            "cluster.numberOfTaskSlots: {} is outside 1..={PARALLELISM_MAX}",
            raw.cluster.number_of_task_slots
        ));
    }
    let mut scenario = Scenario {
        name: raw.name.clone(),
        description: raw.description.clone(),
        seed: raw.seed,
        expect,
        job_name,
        source_parallelism,
        parallelism,
        max_parallelism: raw.pipeline.max_parallelism,
        generated_uids: raw.job.generated_uids,
        workload,
        taskmanagers: raw.cluster.taskmanagers,
        slots_per_taskmanager: raw.cluster.number_of_task_slots,
        checkpoint,
        sink,
        restart,
        failover,
        heartbeat_interval: raw
            .heartbeat
            .interval
            .map_or(HEARTBEAT_INTERVAL_DEFAULT, |d| d.0),
        heartbeat_timeout: raw
            .heartbeat
            .timeout
            .map_or(HEARTBEAT_TIMEOUT_DEFAULT, |d| d.0),
        buffer_timeout: raw
            .execution
            .buffer_timeout
            .map_or(BUFFER_TIMEOUT_DEFAULT, |d| d.0),
        deadline: raw.simulation.deadline.map_or(DEADLINE_DEFAULT, |d| d.0),
        high_availability,
        standby_jobmanager,
        ha_lease,
        restore: None,
        blobstore: blobstore_config(&context, &raw.blobstore)?,
        faults: FaultPlan::default(),
        stages: Vec::new(),
        user_job: None,
        catalog: catalog.clone(),
    };
    if let Some(max_parallelism) = scenario.max_parallelism {
        if max_parallelism < parallelism.max(source_parallelism)
            || max_parallelism > crate::limits::MAX_PARALLELISM_UPPER_BOUND
        {
            return context.error(format!("pipeline.max-parallelism: {max_parallelism} must be at least the parallelism and at most {}", crate::limits::MAX_PARALLELISM_UPPER_BOUND));
        }
    }
    check_times(&context, &scenario)?;
    check_slots(&context, &scenario)?;
    let unfinished = matches!(
        scenario.expect,
        Expectation::GaveUp | Expectation::JobLost | Expectation::Canceled
    );
    if unfinished
        && !(scenario.checkpointing() && scenario.checkpoint.mode == CheckpointingMode::ExactlyOnce)
    {
        // What a failed job left is only checkable against exactly-once checkpoints.
        let span = raw.expect.as_ref().expect("read from it").span();
        let expect = scenario.expect.name();
        return context.error_at(span, format!("expect: \"{expect}\" needs exactly-once checkpointing (an interval and mode EXACTLY_ONCE): what the job left is checked against its checkpoints"));
    }
    if raw.faults.len() > FAULTS_MAX {
        return context.error(format!(
            "faults: {} faults exceed the limit of {FAULTS_MAX}",
            raw.faults.len()
        ));
    }
    // A job of the user's own is checked against the faults once it is given
    // (`Scenario::with_job`).
    let graph = (!own).then(|| scenario.graph());
    for entry in &raw.faults {
        let fault = fault(&context, entry, &scenario, graph.as_ref())?;
        scenario.faults.faults.push(fault);
    }
    if own && !raw.stages.is_empty() {
        return context.error("stages: a job of your own runs in a single stage (not built yet: versions of it per stage)".to_string());
    }
    let loses_job = scenario.faults.faults.iter().any(|f| {
        matches!(f.action, FaultAction::KillJobManager { restart_after }
            if restart_after.is_none() || !scenario.high_availability)
    });
    let cancels = scenario
        .faults
        .faults
        .iter()
        .any(|f| f.action == FaultAction::CancelJob);
    if !raw.stages.is_empty() {
        stages(&context, &raw, &mut scenario)?;
    } else if let Some(path) = &raw.execution.state_recovery.path {
        let restore = restore_path(path.get_ref())
            .and_then(|checkpoint_id| check_restore(&scenario, checkpoint_id));
        match restore {
            Ok(checkpoint_id) => scenario.restore = Some(checkpoint_id),
            Err(message) => {
                return context.error_at(
                    path.span(),
                    format!("execution.state-recovery.path: {message}"),
                )
            }
        }
    } else if (scenario.expect == Expectation::Canceled) != cancels {
        let span = raw.expect.as_ref().map_or(0..0, |e| e.span());
        return context.error_at(span, "expect: \"canceled\" goes with a cancel-job fault, and a cancel-job fault with expect = \"canceled\"".to_string());
    }
    if scenario.expect == Expectation::JobLost && !loses_job {
        let span = raw.expect.as_ref().expect("read from it").span();
        return context.error_at(span, "expect: \"job-lost\" needs a kill-jobmanager fault that loses the job: without high availability, or with no restart".to_string());
    }
    Ok(scenario)
}

/// `[[stages]]`: each a job version resuming from the stage before, checked against it.
fn stages(
    context: &Context<'_>,
    raw: &ScenarioFile,
    scenario: &mut Scenario,
) -> Result<(), ScenarioError> {
    if raw.execution.state_recovery.path.is_some() {
        return context.error("execution.state-recovery.path: a staged scenario resumes each stage from the one before (`[[stages]] state-recovery.path`)".to_string());
    }
    if scenario.high_availability {
        return context.error("stages: a staged scenario with high availability is not built yet (the service would keep the stopped job)".to_string());
    }
    if !matches!(scenario.expect, Expectation::Pass | Expectation::Fail) {
        return context.error(format!("expect = \"{}\" cannot go with stages: the run ends with the last stage's job, which is checked (pass or fail)", scenario.expect.name()));
    }
    if scenario.checkpoint.mode != CheckpointingMode::ExactlyOnce || !scenario.checkpointing() {
        return context.error("stages: a staged run is checked for exactly-once across its stages: it needs checkpointing in mode EXACTLY_ONCE".to_string());
    }
    for (index, entry) in raw.stages.iter().enumerate() {
        let number = index + 2;
        let fail = |message: String| {
            context.error_at::<()>(entry.span(), format!("stages[{number}]: {message}"))
        };
        let section = entry.get_ref();
        let previous = scenario.stage(index);
        let job_name = section
            .job
            .as_ref()
            .map_or(previous.job_name.clone(), |j| j.get_ref().clone());
        if !scenario.catalog.contains(&job_name) {
            fail(format!(
                "job: no job `{job_name}` (there are: {})",
                scenario.catalog.names().join(", ")
            ))?;
        }
        let parallelism = section.parallelism.unwrap_or(previous.parallelism);
        let source_parallelism = section
            .source_parallelism
            .unwrap_or(previous.source_parallelism);
        for (field, value) in [
            ("parallelism", parallelism),
            ("source-parallelism", source_parallelism),
        ] {
            if value == 0 || value > PARALLELISM_MAX {
                fail(format!("{field}: {value} is outside 1..={PARALLELISM_MAX}"))?;
            }
        }
        if job_name == "forward" && source_parallelism != parallelism {
            fail("source-parallelism: the `forward` job needs one parallelism".to_string())?;
        }
        let max_parallelism = section.max_parallelism.or(previous.max_parallelism);
        if let Some(max) = max_parallelism {
            if max < parallelism.max(source_parallelism)
                || max > crate::limits::MAX_PARALLELISM_UPPER_BOUND
            {
                fail(format!(
                    "max-parallelism: {max} must be at least the parallelism and at most {}",
                    crate::limits::MAX_PARALLELISM_UPPER_BOUND
                ))?;
            }
        }
        let restore = match section.state_recovery.path.get_ref().as_str() {
            "savepoint" => StageRestore::Savepoint,
            "checkpoint" => StageRestore::Checkpoint,
            other => {
                return context.error_at(
                    section.state_recovery.path.span(),
                    format!("stages[{number}]: state-recovery.path: `{other}`: expected \"savepoint\" (the savepoint the stage before stopped with) or \"checkpoint\" (its newest retained checkpoint)"),
                )
            }
        };
        let ends = |wanted: fn(&FaultAction) -> bool| {
            previous.faults.faults.iter().any(|f| wanted(&f.action))
        };
        let ended = match restore {
            StageRestore::Savepoint => ends(|a| matches!(a, FaultAction::StopWithSavepoint { .. })),
            StageRestore::Checkpoint => {
                ends(|a| *a == FaultAction::CancelJob)
                    && scenario.checkpoint.retention
                        == ExternalizedCheckpointRetention::RetainOnCancellation
                    && scenario.checkpoint.storage.kind == StorageKind::FileSystem
            }
        };
        if !ended {
            let how = match restore {
                StageRestore::Savepoint => "a stop-with-savepoint fault",
                StageRestore::Checkpoint => "a cancel-job fault, externalized-checkpoint-retention = \"RETAIN_ON_CANCELLATION\" and filesystem storage",
            };
            fail(format!(
                "state-recovery.path = \"{}\": stage {} must end with {how}",
                restore.name(),
                number - 1
            ))?;
        }
        if scenario.sink.kind == SinkKind::WriteAheadLog && parallelism != previous.parallelism {
            fail(format!("parallelism: {parallelism} differs from stage {}'s {}, but the write-ahead sink keeps its batches under a committer record per subtask, so its parallelism cannot change across a restore", number - 1, previous.parallelism))?;
        }
        let mut stage = Stage {
            job_name,
            source_parallelism,
            parallelism,
            max_parallelism,
            restore,
            ignore_unclaimed: section.state_recovery.ignore_unclaimed_state,
            faults: FaultPlan::default(),
        };
        scenario.stages.push(stage.clone());
        let view = scenario.stage(number - 1);
        let graph = view.graph();
        for fault_entry in &section.faults {
            let fault = fault(context, fault_entry, &view, Some(&graph))?;
            stage.faults.faults.push(fault);
        }
        *scenario.stages.last_mut().expect("just pushed") = stage;
    }
    let last = scenario.stage(scenario.stages.len());
    if last
        .faults
        .faults
        .iter()
        .any(|f| f.action == FaultAction::CancelJob)
    {
        return context.error(
            "stages: the last stage is the job that is checked to finish: it cannot be cancelled"
                .to_string(),
        );
    }
    Ok(())
}

/// The checkpoint a restore path names: `chk-N`, under a directory or not, with or without
/// `/_metadata` (`flink run -s <dir>/chk-N/_metadata`).
pub fn restore_path(path: &str) -> Result<CheckpointId, String> {
    let trimmed = path.strip_suffix("/_metadata").unwrap_or(path);
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    name.strip_prefix("chk-")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n > 0)
        .map(CheckpointId)
        .ok_or_else(|| format!("`{path}` names no checkpoint: expected `chk-N`, `<dir>/chk-N` or `<dir>/chk-N/_metadata`"))
}

/// Whether `scenario` can be resubmitted from `checkpoint_id`: the first job must end
/// cancelled with its checkpoints retained on durable storage, and the run must end with the
/// second job.
pub fn check_restore(
    scenario: &Scenario,
    checkpoint_id: CheckpointId,
) -> Result<CheckpointId, String> {
    let cancels = scenario
        .faults
        .faults
        .iter()
        .any(|f| f.action == FaultAction::CancelJob);
    if !scenario.checkpointing() {
        return Err("a restore needs checkpointing (an interval)".to_string());
    }
    if scenario.checkpoint.storage.kind == StorageKind::JobManager {
        return Err("a restore needs filesystem checkpoint storage: jobmanager storage dies with the first job".to_string());
    }
    if scenario.checkpoint.retention != ExternalizedCheckpointRetention::RetainOnCancellation
        || !cancels
    {
        return Err("the job is resubmitted once a cancel-job fault cancelled it with externalized-checkpoint-retention = \"RETAIN_ON_CANCELLATION\": the plan and the retention must say so".to_string());
    }
    if scenario.high_availability {
        return Err("a restore with high availability is not built yet (the service would keep the cancelled job)".to_string());
    }
    if !matches!(scenario.expect, Expectation::Pass | Expectation::Fail) {
        return Err(format!("expect = \"{}\" cannot go with a restore: the run ends with the resubmitted job, which is checked (pass or fail)", scenario.expect.name()));
    }
    Ok(checkpoint_id)
}

/// `[blobstore]`: each key absent keeps the durable default (acknowledged once synced, at once).
fn blobstore_config(
    context: &Context<'_>,
    raw: &BlobstoreSection,
) -> Result<BlobstoreConfig, ScenarioError> {
    let defaults = BlobstoreConfig::default();
    let config = BlobstoreConfig {
        fsync: raw.fsync.unwrap_or(defaults.fsync),
        sync_latency: raw.sync_latency.map_or(defaults.sync_latency, |d| d.0),
        writeback_delay: raw
            .writeback_delay
            .map_or(defaults.writeback_delay, |d| d.0),
    };
    if config.writeback_delay == Duration::ZERO {
        return context.error("blobstore.writeback-delay: must be positive".to_string());
    }
    for (field, value) in [
        ("sync-latency", config.sync_latency),
        ("writeback-delay", config.writeback_delay),
    ] {
        if value > BLOBSTORE_DELAY_MAX {
            return context.error(format!(
                "blobstore.{field}: {value} is longer than {BLOBSTORE_DELAY_MAX}"
            ));
        }
    }
    Ok(config)
}

/// The longest sync latency or writeback delay a scenario may give the blobstore.
const BLOBSTORE_DELAY_MAX: Duration = Duration::from_secs(60);

/// Durations that a run could never honour: a zero heartbeat (Flink requires a positive
/// interval) and a deadline that has passed before the run starts.
fn check_times(context: &Context<'_>, scenario: &Scenario) -> Result<(), ScenarioError> {
    // Periodic timers wake their task every period even when idle: below Flink's unit of a
    // millisecond a period would spin the simulation without letting time advance in practice.
    if scenario.heartbeat_interval < PERIOD_MIN {
        return context.error(format!(
            "heartbeat.interval: {} is shorter than {PERIOD_MIN} (Flink requires a positive interval, in milliseconds)",
            scenario.heartbeat_interval
        ));
    }
    if scenario.buffer_timeout > Duration::ZERO && scenario.buffer_timeout < PERIOD_MIN {
        return context.error(format!(
            "execution.buffer-timeout: {} is neither 0 (flush after every record) nor at least {PERIOD_MIN} (Flink counts it in milliseconds)",
            scenario.buffer_timeout
        ));
    }
    if scenario.heartbeat_timeout <= scenario.heartbeat_interval {
        return context
            .error("heartbeat.timeout: must be longer than heartbeat.interval".to_string());
    }
    if scenario.deadline == Duration::ZERO {
        return context.error(
            "simulation.deadline: must be longer than 0 (the job must have time to run)"
                .to_string(),
        );
    }
    Ok(())
}

/// Slot sharing puts subtask i of every operator into slot i, so a job needs as many slots as
/// its largest parallelism; Flink fails such a job when the slots cannot be had.
fn check_slots(context: &Context<'_>, scenario: &Scenario) -> Result<(), ScenarioError> {
    let needed = scenario.parallelism.max(scenario.source_parallelism);
    let available = scenario.taskmanagers * scenario.slots_per_taskmanager;
    if needed > available {
        return context.error(format!(
            "cluster: the job needs {needed} slots (slot sharing: one slot per subtask index of its largest parallelism, {needed}) but the cluster has {available} ({} task manager(s) × {} slot(s))",
            scenario.taskmanagers, scenario.slots_per_taskmanager
        ));
    }
    Ok(())
}

fn sink_config(
    context: &Context<'_>,
    raw: &ScenarioFile,
    checkpoint: &CheckpointConfig,
) -> Result<SinkConfig, ScenarioError> {
    let mut config = SinkConfig::default();
    if let Some(kind) = &raw.sink.kind {
        config.kind = SinkKind::parse(kind.get_ref()).map_or_else(
            || context.error_at(kind.span(), format!("sink.kind: `{}` is not a sink (plain, two-phase-commit, write-ahead-log, idempotent)", kind.get_ref())),
            Ok,
        )?;
        let exactly_once =
            checkpoint.interval.is_some() && checkpoint.mode == CheckpointingMode::ExactlyOnce;
        if config.kind != SinkKind::Plain && !exactly_once {
            return context.error_at(kind.span(), format!("sink.kind: a {} sink needs exactly-once checkpointing (`[execution.checkpointing] interval`, mode EXACTLY_ONCE)", config.kind.name()));
        }
    }
    if let Some(timeout) = raw.sink.transaction_timeout {
        config.transaction_timeout = timeout.0;
    }
    if let Some(timeout) = raw.broker.transaction_max_timeout {
        config.broker_transaction_max_timeout = timeout.0;
    }
    for (field, value) in [
        ("sink.transaction-timeout", config.transaction_timeout),
        (
            "broker.transaction-max-timeout",
            config.broker_transaction_max_timeout,
        ),
    ] {
        if value == Duration::ZERO {
            return context.error(format!("{field}: must be longer than 0"));
        }
    }
    if let Some(level) = &raw.reader.isolation_level {
        config.isolation = match level.get_ref().as_str() {
            "read_committed" => IsolationLevel::ReadCommitted,
            "read_uncommitted" => IsolationLevel::ReadUncommitted,
            other => return context.error_at(level.span(), format!("reader.isolation-level: `{other}` is neither read_committed nor read_uncommitted")),
        };
    }
    Ok(config)
}

fn workload(context: &Context<'_>, raw: &WorkloadSection) -> Result<Workload, ScenarioError> {
    let kind = match (&raw.text, raw.records, raw.keys) {
        (Some(text), None, None) => {
            check_text(context, text)?;
            WorkloadKind::Text(text.clone())
        }
        (None, Some(records), Some(keys)) => {
            if records > WORKLOAD_RECORDS_MAX || keys == 0 {
                return context.error(format!(
                    "workload: records must be at most {WORKLOAD_RECORDS_MAX} and keys at least 1"
                ));
            }
            WorkloadKind::Generated {
                records,
                keys,
                seed: raw.seed.unwrap_or(0),
            }
        }
        _ => {
            return context
                .error("workload: give either `text`, or `records` and `keys`".to_string())
        }
    };
    if raw.partitions == 0 || raw.partitions > WORKLOAD_PARTITIONS_MAX {
        return context.error(format!(
            "workload.partitions: {} is outside 1..={WORKLOAD_PARTITIONS_MAX}",
            raw.partitions
        ));
    }
    if raw.records_per_second > RECORDS_PER_SECOND_MAX {
        return context.error(format!(
            "workload.records-per-second: {} exceeds {RECORDS_PER_SECOND_MAX} (one record per nanosecond of simulated time; 0 means as fast as backpressure allows)",
            raw.records_per_second
        ));
    }
    Ok(Workload {
        kind,
        partitions: raw.partitions,
        records_per_second: raw.records_per_second,
    })
}

/// Every word of a text workload is one record, and must fit the network's messages.
fn check_text(context: &Context<'_>, text: &str) -> Result<(), ScenarioError> {
    if text.len() > WORKLOAD_TEXT_BYTES_MAX {
        return context.error(format!(
            "workload.text: {} bytes exceed {WORKLOAD_TEXT_BYTES_MAX}",
            text.len()
        ));
    }
    let largest = text
        .split_whitespace()
        .enumerate()
        .max_by_key(|(_, w)| w.len());
    if let Some((index, word)) = largest {
        let bytes = crate::codec::encode_message(&crate::api::value::Value::Str(word.into())).len();
        if bytes > RECORD_SIZE_BYTES_MAX {
            return context.error(format!(
                "workload.text: word {} is a record of {bytes} bytes; a record is at most {RECORD_SIZE_BYTES_MAX} bytes (a broker fetch carries {} records in one network message of at most {} bytes)",
                index + 1,
                crate::limits::SOURCE_FETCH_RECORDS_MAX,
                crate::limits::FRAME_SIZE_BYTES_MAX
            ));
        }
    }
    Ok(())
}

fn checkpoint_config(
    context: &Context<'_>,
    raw: &CheckpointingSection,
) -> Result<CheckpointConfig, ScenarioError> {
    let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
        None | Some(("EXACTLY_ONCE", _)) => CheckpointingMode::ExactlyOnce,
        Some(("AT_LEAST_ONCE", _)) => CheckpointingMode::AtLeastOnce,
        Some(("AT_MOST_ONCE", span)) if raw.interval.is_some() => {
            return context.error_at(span, "execution.checkpointing.mode: AT_MOST_ONCE takes no checkpoints; remove `interval`".to_string())
        }
        Some(("AT_MOST_ONCE", _)) => CheckpointingMode::AtMostOnce,
        Some((other, span)) => {
            return context.error_at(span, format!("execution.checkpointing.mode: `{other}` is not a mode this build runs (EXACTLY_ONCE, AT_LEAST_ONCE, AT_MOST_ONCE)"))
        }
    };
    let defaults = CheckpointConfig::default();
    let config = CheckpointConfig {
        interval: raw.interval.map(|d| d.0),
        mode,
        timeout: raw.timeout.map_or(defaults.timeout, |d| d.0),
        min_pause: raw.min_pause.map_or(defaults.min_pause, |d| d.0),
        max_concurrent: raw
            .max_concurrent_checkpoints
            .unwrap_or(defaults.max_concurrent),
        tolerable_failures: raw
            .tolerable_failed_checkpoints
            .unwrap_or(defaults.tolerable_failures),
        retained: raw.num_retained.unwrap_or(defaults.retained),
        unaligned: raw.unaligned.as_ref().is_some_and(|u| *u.get_ref()),
        aligned_checkpoint_timeout: raw
            .aligned_checkpoint_timeout
            .map_or(defaults.aligned_checkpoint_timeout, |d| d.0),
        storage: storage_config(context, raw)?,
        retention: match raw
            .externalized_checkpoint_retention
            .as_ref()
            .map(|r| (r.get_ref().as_str(), r.span()))
        {
            None | Some(("NO_EXTERNALIZED_CHECKPOINTS", _)) => {
                ExternalizedCheckpointRetention::NoExternalizedCheckpoints
            }
            Some(("DELETE_ON_CANCELLATION", _)) => {
                ExternalizedCheckpointRetention::DeleteOnCancellation
            }
            Some(("RETAIN_ON_CANCELLATION", _)) => {
                ExternalizedCheckpointRetention::RetainOnCancellation
            }
            Some((other, span)) => {
                return context.error_at(span, format!("execution.checkpointing.externalized-checkpoint-retention: `{other}` is not NO_EXTERNALIZED_CHECKPOINTS, DELETE_ON_CANCELLATION or RETAIN_ON_CANCELLATION"))
            }
        },
    };
    match (config.validate(), &raw.unaligned) {
        (Ok(()), _) => Ok(config),
        // An error about `unaligned` points at its line.
        (
            Err(
                error @ (CheckpointConfigError::UnalignedNeedsExactlyOnce
                | CheckpointConfigError::UnalignedConcurrent { .. }),
            ),
            Some(unaligned),
        ) => context.error_at(unaligned.span(), error.to_string()),
        (Err(error), _) => context.error(error.to_string()),
    }
}

/// `storage`, `dir`, `data-inline-threshold` and `max-state-size`.
fn storage_config(
    context: &Context<'_>,
    raw: &CheckpointingSection,
) -> Result<CheckpointStorageConfig, ScenarioError> {
    let defaults = CheckpointStorageConfig::default();
    let kind = match raw.storage.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("filesystem", _)) => StorageKind::FileSystem,
        Some(("jobmanager", _)) => StorageKind::JobManager,
        Some((other, span)) => {
            return context.error_at(
                span,
                format!("execution.checkpointing.storage: `{other}` is not \"jobmanager\" or \"filesystem\""),
            )
        }
    };
    if kind == StorageKind::JobManager && (raw.dir.is_some() || raw.data_inline_threshold.is_some())
    {
        return context.error("execution.checkpointing: `dir` and `data-inline-threshold` are options of filesystem storage, not of jobmanager storage".to_string());
    }
    if kind == StorageKind::FileSystem && raw.max_state_size.is_some() {
        return context.error("execution.checkpointing.max-state-size: an option of jobmanager storage (storage = \"jobmanager\")".to_string());
    }
    let dir = raw.dir.clone().unwrap_or_default();
    if dir.contains("..") || dir.starts_with('/') && dir.len() == 1 {
        return context.error(format!(
            "execution.checkpointing.dir: `{dir}` is not a directory checkpoints can go under"
        ));
    }
    Ok(CheckpointStorageConfig {
        kind,
        dir,
        inline_threshold_bytes: raw
            .data_inline_threshold
            .map_or(defaults.inline_threshold_bytes, |m| m.0),
        max_state_size_bytes: raw
            .max_state_size
            .map_or(defaults.max_state_size_bytes, |m| m.0),
        savepoint_dir: savepoint_dir(context, raw)?,
    })
}

/// `execution.checkpointing.savepoint-dir`: a directory of the blobstore, apart from the
/// checkpoints'.
fn savepoint_dir(
    context: &Context,
    raw: &CheckpointingSection,
) -> Result<Option<String>, ScenarioError> {
    let Some(dir) = raw.savepoint_dir.clone() else {
        return Ok(None);
    };
    let checkpoints = raw.dir.clone().unwrap_or_default();
    let invalid = dir.is_empty() || dir.contains("..") || dir == "/";
    if invalid || dir.trim_end_matches('/') == checkpoints.trim_end_matches('/') {
        return context.error(format!(
            "execution.checkpointing.savepoint-dir: `{dir}` must be a directory of its own, apart from the checkpoints' (`dir`)"
        ));
    }
    Ok(Some(dir))
}

/// `jobmanager.execution.failover-strategy`: `region` (Flink's default) or `full`.
fn failover_strategy(
    context: &Context,
    raw: &JobManagerExecutionSection,
) -> Result<FailoverStrategy, ScenarioError> {
    let Some(name) = &raw.failover_strategy else {
        return Ok(FailoverStrategy::default());
    };
    match name.get_ref().as_str() {
        "region" => Ok(FailoverStrategy::Region),
        "full" => Ok(FailoverStrategy::Full),
        other => context.error_at(
            name.span(),
            format!(
                "jobmanager.execution.failover-strategy: `{other}` is not \"region\" or \"full\""
            ),
        ),
    }
}

fn restart_strategy(
    context: &Context<'_>,
    raw: Option<&RestartSection>,
    checkpointing: bool,
) -> Result<RestartStrategyConfig, ScenarioError> {
    let Some(raw) = raw else {
        // Flink's classic default: fixed-delay without limit with checkpointing, none without.
        return Ok(if checkpointing {
            RestartStrategyConfig::FixedDelay {
                attempts: i32::MAX as u32,
                delay: Duration::from_secs(1),
            }
        } else {
            RestartStrategyConfig::None
        });
    };
    // Flink's names and their aliases.
    let kind = match raw.kind.get_ref().as_str() {
        "none" | "off" | "disable" => "none",
        "fixed-delay" | "fixeddelay" => "fixed-delay",
        "failure-rate" | "failurerate" => "failure-rate",
        "exponential-delay" | "exponentialdelay" => "exponential-delay",
        other => {
            return context.error_at(raw.kind.span(), format!("restart-strategy.type: `{other}` is not a restart strategy (none, fixed-delay, failure-rate, exponential-delay)"))
        }
    };
    let sections = [
        ("fixed-delay", raw.fixed_delay.as_ref().map(Spanned::span)),
        ("failure-rate", raw.failure_rate.as_ref().map(Spanned::span)),
        (
            "exponential-delay",
            raw.exponential_delay.as_ref().map(Spanned::span),
        ),
    ];
    for (name, span) in sections {
        if let (Some(span), true) = (span, name != kind) {
            return context.error_at(span, format!("restart-strategy.{name}: this section configures {name}, but restart-strategy.type is `{kind}`"));
        }
    }
    let seconds = Duration::from_secs;
    let config = match kind {
        "none" => RestartStrategyConfig::None,
        "fixed-delay" => {
            let fixed = raw.fixed_delay.as_ref().map(Spanned::get_ref);
            RestartStrategyConfig::FixedDelay {
                attempts: fixed.and_then(|f| f.attempts).unwrap_or(1),
                delay: fixed.and_then(|f| f.delay).map_or(seconds(1), |d| d.0),
            }
        }
        "failure-rate" => {
            let rate = raw.failure_rate.as_ref().map(Spanned::get_ref);
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval: rate
                    .and_then(|r| r.max_failures_per_interval)
                    .unwrap_or(1),
                failure_rate_interval: rate
                    .and_then(|r| r.failure_rate_interval)
                    .map_or(seconds(60), |d| d.0),
                delay: rate.and_then(|r| r.delay).map_or(seconds(1), |d| d.0),
            }
        }
        _ => {
            let defaults = ExponentialDelayConfig::default();
            let exp = raw.exponential_delay.as_ref().map(Spanned::get_ref);
            let duration = |get: fn(&ExponentialDelaySection) -> Option<TomlDuration>, default| {
                exp.and_then(get).map_or(default, |d| d.0)
            };
            RestartStrategyConfig::ExponentialDelay(ExponentialDelayConfig {
                initial_backoff: duration(|e| e.initial_backoff, defaults.initial_backoff),
                max_backoff: duration(|e| e.max_backoff, defaults.max_backoff),
                backoff_multiplier: exp
                    .and_then(|e| e.backoff_multiplier)
                    .unwrap_or(defaults.backoff_multiplier),
                reset_backoff_threshold: duration(
                    |e| e.reset_backoff_threshold,
                    defaults.reset_backoff_threshold,
                ),
                jitter_factor: exp
                    .and_then(|e| e.jitter_factor)
                    .unwrap_or(defaults.jitter_factor),
                attempts_before_reset_backoff: exp
                    .and_then(|e| e.attempts_before_reset_backoff)
                    .unwrap_or(defaults.attempts_before_reset_backoff),
            })
        }
    };
    match config.validate() {
        Ok(()) => Ok(config),
        Err(error) => context.error_at(raw.kind.span(), error.to_string()),
    }
}

/// Reads one `[[faults]]` table into a fault and checks it against the job and the cluster.
fn fault(
    context: &Context<'_>,
    entry: &Spanned<toml::Table>,
    scenario: &Scenario,
    graph: Option<&ExecutionGraph>,
) -> Result<Fault, ScenarioError> {
    let fail =
        |message: String| context.error_at::<Fault>(entry.span(), format!("faults: {message}"));
    let table = entry.get_ref();
    let triggers = TRIGGER_KEYS
        .iter()
        .filter(|key| table.contains_key(**key))
        .count();
    if triggers != 1 {
        return fail(format!(
            "give exactly one of `{}`",
            TRIGGER_KEYS.join("`, `")
        ));
    }
    // Node names are checked against this cluster first, so the error names the field and
    // lists the nodes there are.
    let cluster = scenario.nodes();
    for key in ["from", "to"] {
        if let Some(toml::Value::String(name)) = table.get(key) {
            if let Err(error) = NodeName::parse(name, cluster) {
                return fail(format!("{key}: {error}"));
            }
        }
    }
    let fault: Fault = match toml::Value::Table(table.clone()).try_into() {
        Ok(fault) => fault,
        Err(error) => {
            let kind = table.get("kind").map_or("?".to_string(), |k| k.to_string());
            return fail(format!("{kind}: {}", error.message()));
        }
    };
    // Flattened tables cannot deny unknown keys themselves: a key the fault does not write
    // back is one it does not know.
    let known = toml::Table::try_from(&fault).expect("a fault renders as a table");
    if let Some(unknown) = table.keys().find(|key| !known.contains_key(*key)) {
        return fail(format!(
            "`{unknown}` is not a field of a {} fault",
            table["kind"]
        ));
    }
    let Some(graph) = graph else {
        return Ok(fault);
    };
    match fault_checks::check_trigger(&fault.trigger, scenario, graph)
        .and_then(|()| fault_checks::check_action(&fault.action, scenario, graph))
    {
        Ok(()) => Ok(fault),
        Err(error) => fail(error.to_string()),
    }
}
