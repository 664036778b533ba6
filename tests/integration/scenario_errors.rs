//! Goal: a malformed scenario fails with a message naming the file, the line and the field.
//! Method: parse broken variants of a valid file and inspect the errors.

use snapflow::api::job_catalog::JobCatalog;
use snapflow::scenario::Scenario;

const VALID: &str = r#"name = "t"

[job]
name = "wordcount"
parallelism = 2

[workload]
records = 10
keys = 3
partitions = 1

[cluster]
taskmanagers = 1
numberOfTaskSlots = 2

[execution.checkpointing]
interval = "100ms"
"#;

fn error_of(text: &str) -> String {
    Scenario::parse("bad.toml", text)
        .expect_err("the file is malformed")
        .to_string()
}

#[test]
fn the_valid_file_loads() {
    let scenario = Scenario::parse("ok.toml", VALID).unwrap();
    assert_eq!(scenario.parallelism, 2);
}

#[test]
fn a_scenario_names_a_job_of_the_catalog_it_is_loaded_with() {
    let text = VALID.replace("name = \"wordcount\"", "name = \"mine\"");
    let error = error_of(&text);
    assert!(
        error.contains(
            "job.name: no job `mine` (there are: forward, passthrough, state-zoo, wordcount;"
        ),
        "{error}"
    );
    let catalog = JobCatalog::built_in().with("mine", |_, parallelism| {
        snapflow::api::jobs::passthrough(1, parallelism)
    });
    let scenario = Scenario::parse_with_jobs("mine.toml", &text, &catalog).unwrap();
    let job = scenario.job();
    assert_eq!(job.name, "passthrough");
    assert_eq!(
        job.operators.last().unwrap().parallelism,
        2,
        "[job] parallelism"
    );
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let error = error_of(&VALID.replace("interval = \"100ms\"", "intervall = \"100ms\""));
    assert!(error.starts_with("bad.toml:17:"), "{error}");
    assert!(error.contains("intervall"), "{error}");
}

#[test]
fn bad_duration_names_the_value() {
    let error = error_of(&VALID.replace("\"100ms\"", "\"100 parsecs\""));
    assert!(error.starts_with("bad.toml:17:"), "{error}");
    assert!(
        error.contains("parsecs") && error.contains("interval = "),
        "{error}"
    );
}

#[test]
fn unknown_job_names_the_field_and_the_choices() {
    let error = error_of(&VALID.replace("name = \"wordcount\"", "name = \"pagerank\""));
    assert!(error.starts_with("bad.toml:4:"), "{error}");
    assert!(
        error.contains("job.name") && error.contains("wordcount"),
        "{error}"
    );
}

#[test]
fn wrong_type_and_missing_section_are_reported() {
    let error = error_of(&VALID.replace("parallelism = 2", "parallelism = \"two\""));
    assert!(error.starts_with("bad.toml:5:"), "{error}");
    let error =
        error_of(&VALID.replace("[cluster]\ntaskmanagers = 1\nnumberOfTaskSlots = 2\n", ""));
    assert!(error.contains("cluster"), "{error}");
}

#[test]
fn a_fault_on_an_unknown_operator_names_its_line() {
    let text =
        format!("{VALID}\n[[faults]]\nkind = \"fail-task\"\nsubtask = \"countr#0\"\nat = \"1s\"\n");
    let error = error_of(&text);
    assert!(
        error.starts_with("bad.toml:19:"),
        "the fault's table starts there: {error}"
    );
    assert!(error.contains("countr"), "{error}");
}

#[test]
fn unsupported_mode_is_refused_by_name() {
    let text = VALID.replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\nmode = \"AT_MOST_ONCE\"",
    );
    let error = error_of(&text);
    assert!(error.contains("execution.checkpointing.mode"), "{error}");
}

#[test]
fn a_clog_needs_two_distinct_known_nodes() {
    let base =
        format!("{VALID}\n[[faults]]\nkind = \"clog-link\"\nduration = \"1s\"\nat = \"1s\"\n");
    let error = error_of(&format!("{base}from = \"broker\"\nto = \"broker\"\n"));
    assert!(error.contains("both `broker`"), "{error}");
    let error = error_of(&format!(
        "{base}from = \"broker\"\nto = \"taskmanager-9\"\n"
    ));
    assert!(error.contains("no node `taskmanager-9`"), "{error}");
}

#[test]
fn limits_are_enforced_with_the_field_named() {
    let error = error_of(&VALID.replace("numberOfTaskSlots = 2", "numberOfTaskSlots = 100000"));
    assert!(error.contains("cluster.numberOfTaskSlots"), "{error}");
    let error = error_of(&VALID.replace("parallelism = 2", "parallelism = 0"));
    assert!(error.contains("job.parallelism"), "{error}");
    let error =
        error_of(&VALID.replace("records = 10", "records = 10\nseed = 99999999999999999999"));
    assert!(error.starts_with("bad.toml:9:"), "{error}");
}

#[test]
fn sink_settings_are_checked_with_the_line_named() {
    let unknown = error_of(&format!("{VALID}\n[sink]\nkind = \"exactly-once\"\n"));
    assert!(unknown.starts_with("bad.toml:20:"), "{unknown}");
    assert!(
        unknown.contains("sink.kind") && unknown.contains("two-phase-commit"),
        "{unknown}"
    );
    let without_checkpoints = error_of(&format!(
        "{}\n[sink]\nkind = \"two-phase-commit\"\n",
        VALID.replace("interval = \"100ms\"", "")
    ));
    assert!(
        without_checkpoints.contains("needs exactly-once checkpointing"),
        "{without_checkpoints}"
    );
    let isolation = error_of(&format!(
        "{VALID}\n[reader]\nisolation-level = \"serializable\"\n"
    ));
    assert!(
        isolation.starts_with("bad.toml:20:") && isolation.contains("read_committed"),
        "{isolation}"
    );
    let zero = error_of(&format!(
        "{VALID}\n[broker]\ntransaction-max-timeout = \"0ms\"\n"
    ));
    assert!(zero.contains("broker.transaction-max-timeout"), "{zero}");
}

#[test]
fn end_to_end_faults_name_what_is_wrong() {
    let two_phase = format!("{VALID}\n[sink]\nkind = \"two-phase-commit\"\n");
    let not_a_sink = error_of(&format!(
        "{two_phase}\n[[faults]]\nkind = \"kill-taskmanager\"\ntaskmanager = 1\nbefore-commit = {{ subtask = \"split#0\", checkpoint = 2 }}\n"
    ));
    assert!(
        not_a_sink.contains("before-commit: the subtask must run a two-phase-commit"),
        "{not_a_sink}"
    );
    let plain_sink = error_of(&format!(
        "{VALID}\n[[faults]]\nkind = \"kill-taskmanager\"\ntaskmanager = 1\nbefore-commit = {{ subtask = \"sink#0\", checkpoint = 2 }}\n"
    ));
    assert!(plain_sink.contains("before-commit"), "{plain_sink}");
    let no_delay = error_of(&format!(
        "{two_phase}\n[[faults]]\nkind = \"delay-notices\"\nat = \"1s\"\n"
    ));
    assert!(
        no_delay.contains("\"delay-notices\": missing field `delay`"),
        "{no_delay}"
    );
    // The kv store runs only for a sink that writes to it.
    let no_kv = error_of(&format!(
        "{two_phase}\n[[faults]]\nkind = \"clog-link\"\nfrom = \"kv\"\nto = \"broker\"\nduration = \"1s\"\nat = \"1s\"\n"
    ));
    assert!(no_kv.contains("no node `kv`"), "{no_kv}");
    let idempotent = format!("{VALID}\n[sink]\nkind = \"idempotent\"\n\n[[faults]]\nkind = \"clog-link\"\nfrom = \"kv\"\nto = \"taskmanager-1\"\nduration = \"1s\"\nat = \"1s\"\n");
    assert!(Scenario::parse("ok.toml", &idempotent).is_ok());
}

// Robustness (issue 9): settings a loader used to accept although the run could not honour them.

#[test]
fn node_names_are_accepted_only_in_canonical_form() {
    let base =
        format!("{VALID}\n[[faults]]\nkind = \"clog-link\"\nduration = \"1s\"\nat = \"1s\"\nto = \"broker\"\n");
    for name in [
        "taskmanager-01",
        "taskmanager-+1",
        "taskmanager-0",
        " taskmanager-1",
    ] {
        let error = error_of(&format!("{base}from = \"{name}\"\n"));
        assert!(
            error.contains(&format!("from: no node `{name}`"))
                && error.contains("the nodes are jobmanager, broker, blobstore, taskmanager-1"),
            "{error}"
        );
    }
    assert!(Scenario::parse("ok.toml", &format!("{base}from = \"taskmanager-1\"\n")).is_ok());
}

#[test]
fn a_pace_that_would_overflow_is_refused() {
    let error = error_of(&VALID.replace(
        "partitions = 1",
        "partitions = 1024\nrecords-per-second = 9223372036854775807",
    ));
    assert!(error.contains("workload.records-per-second"), "{error}");
}

#[test]
fn a_job_larger_than_the_cluster_is_refused_with_slots_named() {
    let error = error_of(
        &VALID
            .replace("parallelism = 2", "parallelism = 4")
            .replace("numberOfTaskSlots = 2", "numberOfTaskSlots = 1"),
    );
    assert!(
        error.contains("needs 4 slots") && error.contains("cluster has 1"),
        "{error}"
    );
}

#[test]
fn zero_durations_that_cannot_run_are_refused() {
    let deadline = error_of(&format!("{VALID}\n[simulation]\ndeadline = \"0ms\"\n"));
    assert!(deadline.contains("simulation.deadline"), "{deadline}");
    let heartbeat = error_of(&format!(
        "{VALID}\n[heartbeat]\ninterval = \"0ms\"\ntimeout = \"1s\"\n"
    ));
    assert!(heartbeat.contains("heartbeat.interval"), "{heartbeat}");
    let sub_millisecond = error_of(&VALID.replace(
        "[execution.checkpointing]",
        "[execution]\nbuffer-timeout = \"1us\"\n\n[execution.checkpointing]",
    ));
    assert!(
        sub_millisecond.contains("execution.buffer-timeout: 1us is neither 0"),
        "{sub_millisecond}"
    );
    let timeout = error_of(&VALID.replace(
        "interval = \"100ms\"",
        "interval = \"100ms\"\ntimeout = \"5ms\"",
    ));
    assert!(
        timeout.contains("execution.checkpointing.timeout must be at least 10ms"),
        "{timeout}"
    );
    // Flink's `setBufferTimeout(0)`: flush after every record. It runs (regression scenario
    // buffer-timeout-zero), so the loader takes it.
    let flush_always = VALID.replace(
        "[execution.checkpointing]",
        "[execution]\nbuffer-timeout = \"0ms\"\n\n[execution.checkpointing]",
    );
    assert!(Scenario::parse("ok.toml", &flush_always).is_ok());
}

#[test]
fn faults_that_could_never_fire_are_refused() {
    let late = error_of(&format!(
        "{VALID}\n[simulation]\ndeadline = \"10s\"\n\n[[faults]]\nkind = \"fail-task\"\nsubtask = \"counter#0\"\nat = \"10s\"\n"
    ));
    assert!(late.contains("not before the deadline"), "{late}");
    let too_many = error_of(&format!(
        "{VALID}\n[[faults]]\nkind = \"fail-task\"\nsubtask = \"counter#0\"\non-record = {{ subtask = \"counter#0\", count = 11 }}\n"
    ));
    assert!(
        too_many.contains("more records than the whole input holds (10)"),
        "{too_many}"
    );
    let no_checkpoints = error_of(&format!(
        "{}\n[[faults]]\nkind = \"fail-task\"\nsubtask = \"counter#0\"\nafter-checkpoint = 1\n",
        VALID.replace("interval = \"100ms\"", "")
    ));
    assert!(
        no_checkpoints.contains("checkpointing is off"),
        "{no_checkpoints}"
    );
}

#[test]
fn a_record_larger_than_a_network_message_allows_is_refused() {
    let huge = "x".repeat(snapflow::limits::RECORD_SIZE_BYTES_MAX + 1);
    let error = error_of(&VALID.replace(
        "records = 10\nkeys = 3",
        &format!("text = \"hello {huge}\""),
    ));
    assert!(
        error.contains("workload.text: word 2 is a record of")
            && error.contains(&format!(
                "at most {}",
                snapflow::limits::RECORD_SIZE_BYTES_MAX
            )),
        "{error}"
    );
}

#[test]
fn a_bare_number_is_milliseconds_in_every_duration_field() {
    let bare = VALID.replace("interval = \"100ms\"", "interval = 250\ntimeout = 60000")
        + "\n[heartbeat]\ninterval = 100\ntimeout = 500\n\n[simulation]\ndeadline = 30000\n";
    let scenario = Scenario::parse("ok.toml", &bare).unwrap();
    assert_eq!(
        scenario.checkpoint.interval,
        Some(snapflow::time::Duration::from_ms(250))
    );
    assert_eq!(
        scenario.checkpoint.timeout,
        snapflow::time::Duration::from_secs(60)
    );
    assert_eq!(
        scenario.heartbeat_timeout,
        snapflow::time::Duration::from_ms(500)
    );
    assert_eq!(scenario.deadline, snapflow::time::Duration::from_secs(30));
    let negative = error_of(&VALID.replace("interval = \"100ms\"", "interval = -5"));
    assert!(negative.contains("a duration is text"), "{negative}");
}

#[test]
fn a_fault_with_an_unknown_field_or_two_triggers_is_refused() {
    let unknown = error_of(&format!(
        "{VALID}\n[[faults]]\nkind = \"fail-task\"\nsubtask = \"counter#0\"\nat = \"1s\"\nrestart-after = \"1s\"\n"
    ));
    assert!(
        unknown.starts_with("bad.toml:19:")
            && unknown.contains("`restart-after` is not a field of a \"fail-task\" fault"),
        "{unknown}"
    );
    let two = error_of(&format!(
        "{VALID}\n[[faults]]\nkind = \"fail-task\"\nsubtask = \"counter#0\"\nat = \"1s\"\nafter-checkpoint = 2\n"
    ));
    assert!(two.contains("give exactly one of `at`"), "{two}");
    let unknown_kind = error_of(&format!(
        "{VALID}\n[[faults]]\nkind = \"crash-everything\"\nat = \"1s\"\n"
    ));
    assert!(
        unknown_kind.contains("crash-everything") && unknown_kind.contains("kill-taskmanager"),
        "{unknown_kind}"
    );
}

#[test]
fn restart_strategies_load_with_flink_defaults_and_bad_settings_are_refused() {
    use snapflow::runtime::restart::{ExponentialDelayConfig, RestartStrategyConfig};
    use snapflow::time::Duration;
    let with = |section: &str| format!("{VALID}\n[restart-strategy]\n{section}\n");
    let loaded = Scenario::parse("ok.toml", &with("type = \"exponential-delay\"")).unwrap();
    assert_eq!(
        loaded.restart,
        RestartStrategyConfig::ExponentialDelay(ExponentialDelayConfig::default())
    );
    let rate = Scenario::parse("ok.toml", &with("type = \"failurerate\"")).unwrap();
    assert_eq!(
        rate.restart,
        RestartStrategyConfig::FailureRate {
            max_failures_per_interval: 1,
            failure_rate_interval: Duration::from_secs(60),
            delay: Duration::from_secs(1),
        }
    );
    let error = error_of(&with("type = \"backoff\""));
    assert!(
        error.contains("bad.toml:") && error.contains("`backoff` is not a restart strategy"),
        "{error}"
    );
    let error = error_of(&with(
        "type = \"fixed-delay\"\n\n[restart-strategy.failure-rate]\ndelay = \"1s\"",
    ));
    assert!(error.contains("restart-strategy.failure-rate: this section configures failure-rate, but restart-strategy.type is `fixed-delay`"), "{error}");
    let error = error_of(&with(
        "type = \"exponential-delay\"\n\n[restart-strategy.exponential-delay]\njitter-factor = 1.5",
    ));
    assert!(
        error.contains("exponential-delay.jitter-factor must be between 0 and 1 (it is 1.5)"),
        "{error}"
    );
    let error = error_of(&with(
        "type = \"failure-rate\"\n\n[restart-strategy.failure-rate]\nmax-failures-per-interval = 0",
    ));
    assert!(
        error.contains("max-failures-per-interval must be at least 1"),
        "{error}"
    );
    let no_checkpoints = VALID.replace("[execution.checkpointing]\ninterval = \"100ms\"\n", "");
    let error =
        error_of(&no_checkpoints.replace("name = \"t\"", "name = \"t\"\nexpect = \"gave-up\""));
    assert!(
        error.contains("expect: \"gave-up\" needs exactly-once checkpointing"),
        "{error}"
    );
}

#[test]
fn corrupting_a_checkpoint_needs_checkpointing() {
    let no_checkpoints = VALID.replace("[execution.checkpointing]\ninterval = \"100ms\"\n", "");
    let error = error_of(&format!(
        "{no_checkpoints}\n[[faults]]\nkind = \"corrupt-checkpoint\"\nat = \"1s\"\n"
    ));
    assert!(
        error.contains("corrupt-checkpoint: needs checkpointing"),
        "{error}"
    );
}

/// The recovery and storage keys of issue 12 name the field and the choices.
#[test]
fn recovery_and_storage_keys_are_checked_with_the_choices_named() {
    let with = |extra: &str| format!("{VALID}{extra}");
    let storage = error_of(&with("storage = \"s3\"\n"));
    assert!(
        storage.starts_with("bad.toml:18:")
            && storage.contains("`s3` is not \"jobmanager\" or \"filesystem\""),
        "{storage}"
    );
    let size = error_of(&with(
        "storage = \"jobmanager\"\nmax-state-size = \"5 parsecs\"\n",
    ));
    assert!(size.contains("`parsecs` is not a unit"), "{size}");
    let mixed = error_of(&with("storage = \"jobmanager\"\ndir = \"x\"\n"));
    assert!(mixed.contains("options of filesystem storage"), "{mixed}");
    let retention = error_of(&with("externalized-checkpoint-retention = \"KEEP\"\n"));
    assert!(retention.contains("RETAIN_ON_CANCELLATION"), "{retention}");
    let ha = error_of(&with("\n[high-availability]\ntype = \"etcd\"\n"));
    assert!(ha.contains("high-availability.type: `etcd`"), "{ha}");
    let latency = error_of(&with("\n[blobstore]\nsync-latency = \"2min\"\n"));
    assert!(latency.contains("blobstore.sync-latency"), "{latency}");
    let canceled = error_of(&VALID.replace("name = \"t\"", "name = \"t\"\nexpect = \"canceled\""));
    assert!(canceled.contains("cancel-job"), "{canceled}");
    let lost = error_of(&VALID.replace("name = \"t\"", "name = \"t\"\nexpect = \"job-lost\""));
    assert!(lost.contains("kill-jobmanager"), "{lost}");
    let failover = error_of(&with(
        "\n[jobmanager.execution]\nfailover-strategy = \"restart-all\"\n",
    ));
    assert!(
        failover.starts_with("bad.toml:20:")
            && failover.contains("`restart-all` is not \"region\" or \"full\""),
        "{failover}"
    );
    let forward = error_of(&VALID.replace(
        "name = \"wordcount\"\nparallelism = 2",
        "name = \"forward\"\nparallelism = 2\nsource-parallelism = 1",
    ));
    assert!(
        forward.contains("job.source-parallelism: 1 differs from job.parallelism 2"),
        "{forward}"
    );
}

#[test]
fn stages_that_cannot_resume_are_refused_naming_the_field() {
    let staged = |stage: &str, extra: &str| {
        format!(
            "{}savepoint-dir = \"savepoints\"\n{extra}\n[[faults]]\nkind = \"stop-with-savepoint\"\nat = \"1s\"\n\n[[stages]]\n{stage}\n",
            VALID
        )
    };
    let ok = staged("parallelism = 1\nstate-recovery.path = \"savepoint\"", "");
    let scenario = Scenario::parse("ok.toml", &ok).expect("valid");
    assert_eq!(scenario.stage_count(), 2);
    assert_eq!(scenario.stage(1).parallelism, 1);
    let error = error_of(&staged("state-recovery.path = \"chk-3\"", ""));
    assert!(
        error.contains("stages[2]: state-recovery.path: `chk-3`"),
        "{error}"
    );
    let error = error_of(&staged("state-recovery.path = \"checkpoint\"", ""));
    assert!(
        error.contains("stage 1 must end with a cancel-job fault"),
        "{error}"
    );
    let error = error_of(&staged(
        "job = \"wordcounter\"\nstate-recovery.path = \"savepoint\"",
        "",
    ));
    assert!(
        error.contains("stages[2]: job: no job `wordcounter` (there are: forward, passthrough, state-zoo, wordcount)"),
        "{error}"
    );
    let wal = "\n[sink]\nkind = \"write-ahead-log\"\n";
    let error = error_of(&format!(
        "{}{wal}",
        staged("parallelism = 3\nstate-recovery.path = \"savepoint\"", "")
    ));
    assert!(
        error.contains("write-ahead sink keeps its batches"),
        "{error}"
    );
    let no_dir = staged("state-recovery.path = \"savepoint\"", "")
        .replace("savepoint-dir = \"savepoints\"\n", "");
    let error = error_of(&no_dir);
    assert!(
        error.contains("needs execution.checkpointing.savepoint-dir"),
        "{error}"
    );
}
