//! A scenario written back as TOML, in the layout the loader reads: how a failing run's replay
//! file and a kept regression are written. Loading the text gives the same scenario.

use crate::checkpoint::coordinator::CheckpointingMode;
use crate::runtime::restart::RestartStrategyConfig;
use crate::scenario::faults::Fault;
use crate::scenario::workload::WorkloadKind;
use crate::scenario::Scenario;
use std::fmt::Write;

/// Writes a scenario back as TOML (for regression files), in the layout `parse` reads.
pub fn render_toml(scenario: &Scenario) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "name = {:?}", scenario.name);
    let _ = writeln!(text, "description = {:?}", scenario.description);
    let _ = writeln!(text, "seed = {}", scenario.seed);
    let _ = writeln!(text, "expect = {:?}\n", scenario.expect.name());
    let _ = writeln!(
        text,
        "[job]\nname = {:?}\nparallelism = {}\nsource-parallelism = {}\ngenerated-uids = {}\n",
        scenario.job_name,
        scenario.parallelism,
        scenario.source_parallelism,
        scenario.generated_uids
    );
    let _ = writeln!(text, "[workload]");
    match &scenario.workload.kind {
        WorkloadKind::Text(words) => {
            let _ = writeln!(text, "text = {words:?}");
        }
        WorkloadKind::Generated {
            records,
            keys,
            seed,
        } => {
            let _ = writeln!(text, "records = {records}\nkeys = {keys}\nseed = {seed}");
        }
    }
    let _ = writeln!(
        text,
        "partitions = {}\nrecords-per-second = {}\n",
        scenario.workload.partitions, scenario.workload.records_per_second
    );
    let _ = writeln!(
        text,
        "[cluster]\ntaskmanagers = {}\nnumberOfTaskSlots = {}\n",
        scenario.taskmanagers, scenario.slots_per_taskmanager
    );
    let blobstore = &scenario.blobstore;
    if *blobstore != crate::services::blobstore::BlobstoreConfig::default() {
        let _ = writeln!(
            text,
            "[blobstore]\nfsync = {}\nsync-latency = \"{}\"\nwriteback-delay = \"{}\"\n",
            blobstore.fsync, blobstore.sync_latency, blobstore.writeback_delay
        );
    }
    if scenario.high_availability {
        let _ = writeln!(
            text,
            "[high-availability]\ntype = \"zookeeper\"\nstandby-jobmanagers = {}\nlease-duration = \"{}\"\n",
            u32::from(scenario.standby_jobmanager),
            scenario.ha_lease
        );
    }
    if let Some(max_parallelism) = scenario.max_parallelism {
        let _ = writeln!(text, "[pipeline]\nmax-parallelism = {max_parallelism}\n");
    }
    let _ = writeln!(
        text,
        "[execution]\nbuffer-timeout = \"{}\"\n",
        scenario.buffer_timeout
    );
    let config = &scenario.checkpoint;
    let _ = writeln!(text, "[execution.checkpointing]");
    if let Some(interval) = config.interval {
        let _ = writeln!(text, "interval = \"{interval}\"");
    }
    let mode = match config.mode {
        CheckpointingMode::ExactlyOnce => "EXACTLY_ONCE",
        CheckpointingMode::AtLeastOnce => "AT_LEAST_ONCE",
        CheckpointingMode::AtMostOnce => "AT_MOST_ONCE",
    };
    if config.unaligned {
        let _ = writeln!(
            text,
            "unaligned = true\naligned-checkpoint-timeout = \"{}\"",
            config.aligned_checkpoint_timeout
        );
    }
    let _ = writeln!(
        text,
        "externalized-checkpoint-retention = \"{}\"",
        config.retention.name()
    );
    let storage = &config.storage;
    match storage.kind {
        crate::checkpoint::storage::StorageKind::JobManager => {
            let _ = writeln!(
                text,
                "storage = \"jobmanager\"\nmax-state-size = {}",
                storage.max_state_size_bytes
            );
        }
        crate::checkpoint::storage::StorageKind::FileSystem => {
            let _ = writeln!(
                text,
                "storage = \"filesystem\"\ndir = {:?}\ndata-inline-threshold = {}",
                storage.dir, storage.inline_threshold_bytes
            );
        }
    }
    if let Some(dir) = &storage.savepoint_dir {
        let _ = writeln!(text, "savepoint-dir = {dir:?}");
    }
    let _ = writeln!(text, "mode = \"{mode}\"\ntimeout = \"{}\"\nmin-pause = \"{}\"\nmax-concurrent-checkpoints = {}\ntolerable-failed-checkpoints = {}\nnum-retained = {}\n", config.timeout, config.min_pause, config.max_concurrent, config.tolerable_failures, config.retained);
    if let Some(checkpoint_id) = scenario.restore {
        let _ = writeln!(
            text,
            "[execution.state-recovery]\npath = \"chk-{}\"\n",
            checkpoint_id.0
        );
    }
    let _ = writeln!(
        text,
        "[jobmanager.execution]\nfailover-strategy = \"{}\"\n",
        scenario.failover.name()
    );
    let _ = writeln!(
        text,
        "[restart-strategy]\ntype = \"{}\"\n",
        scenario.restart.name()
    );
    match &scenario.restart {
        RestartStrategyConfig::None => {}
        RestartStrategyConfig::FixedDelay { attempts, delay } => {
            let _ = writeln!(
                text,
                "[restart-strategy.fixed-delay]\nattempts = {attempts}\ndelay = \"{delay}\"\n"
            );
        }
        RestartStrategyConfig::FailureRate {
            max_failures_per_interval,
            failure_rate_interval,
            delay,
        } => {
            let _ = writeln!(text, "[restart-strategy.failure-rate]\nmax-failures-per-interval = {max_failures_per_interval}\nfailure-rate-interval = \"{failure_rate_interval}\"\ndelay = \"{delay}\"\n");
        }
        RestartStrategyConfig::ExponentialDelay(c) => {
            let _ = writeln!(text, "[restart-strategy.exponential-delay]\ninitial-backoff = \"{}\"\nmax-backoff = \"{}\"\nbackoff-multiplier = {:?}\nreset-backoff-threshold = \"{}\"\njitter-factor = {:?}\nattempts-before-reset-backoff = {}\n", c.initial_backoff, c.max_backoff, c.backoff_multiplier, c.reset_backoff_threshold, c.jitter_factor, c.attempts_before_reset_backoff);
        }
    }
    let _ = writeln!(
        text,
        "[heartbeat]\ninterval = \"{}\"\ntimeout = \"{}\"\n",
        scenario.heartbeat_interval, scenario.heartbeat_timeout
    );
    let sink = &scenario.sink;
    let _ = writeln!(
        text,
        "[sink]\nkind = \"{}\"\ntransaction-timeout = \"{}\"\n\n[broker]\ntransaction-max-timeout = \"{}\"\n\n[reader]\nisolation-level = \"{}\"\n",
        sink.kind.name(),
        sink.transaction_timeout,
        sink.broker_transaction_max_timeout,
        sink.isolation.name()
    );
    let _ = writeln!(text, "[simulation]\ndeadline = \"{}\"", scenario.deadline);
    if !scenario.faults.faults.is_empty() {
        let faults = RenderedFaults {
            faults: &scenario.faults.faults,
        };
        let rendered = toml::to_string(&faults).expect("faults render as TOML");
        let _ = write!(text, "\n{rendered}");
    }
    for stage in &scenario.stages {
        let _ = writeln!(
            text,
            "\n[[stages]]\njob = {:?}\nparallelism = {}\nsource-parallelism = {}",
            stage.job_name, stage.parallelism, stage.source_parallelism
        );
        if let Some(max_parallelism) = stage.max_parallelism {
            let _ = writeln!(text, "max-parallelism = {max_parallelism}");
        }
        let _ = writeln!(
            text,
            "state-recovery.path = {:?}\nstate-recovery.ignore-unclaimed-state = {}",
            stage.restore.name(),
            stage.ignore_unclaimed
        );
        if !stage.faults.faults.is_empty() {
            let faults = RenderedFaults {
                faults: &stage.faults.faults,
            };
            let rendered = toml::to_string(&faults).expect("faults render as TOML");
            let rendered = rendered.replace("[[faults]]", "[[stages.faults]]");
            let _ = write!(text, "\n{rendered}");
        }
    }
    text
}

/// The `[[faults]]` tables, written by the same serde model that reads them.
#[derive(serde::Serialize)]
struct RenderedFaults<'a> {
    faults: &'a [Fault],
}
