//! Goal: any fault plan keeps each checkpointing mode's promise (DESIGN §9): under
//! exactly-once (aligned, unaligned, aligned with timeout) the final keyed state equals the
//! oracle's, every completed checkpoint is a consistent cut (unaligned: with its in-flight data
//! replayed) and every oracle record reaches the sink; under at-least-once every oracle record
//! reaches the sink; under at-most-once no record is written twice.
//! Method: proptest generates the cluster shape, parallelism, checkpoint interval, workload
//! (10,000 records over 100-300 keys) and a fault plan: task-manager kills, clogged links
//! between any two nodes, user-code failures, slow operators and slow links, at times or on
//! triggers. Each case runs with and without faults under its seed and is checked. A failure
//! shrinks to a minimal plan, written as a scenario file to replay and keep in
//! `scenarios/regressions/`. One property per mode, so each reports its own wall time.
//! End to end: exactly-once (aligned or unaligned) with the two-phase-commit sink read with
//! read_committed, under kills (also between pre-commit and commit), lost and late completion
//! notices, broker restarts and clogged links: the committed output equals the oracle's, each
//! key's records in order.
//! The write-ahead-log and idempotent sinks run under the same mix, each checked by its row.
//! `SNAPFLOW_PROPTEST_CASES` raises the case count (default 16, to keep `cargo test` fast);
//! the cases are the same every run unless `SNAPFLOW_PROPTEST_SEED` says otherwise.

use crate::common;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use snapflow::runtime::failover_strategy::FailoverStrategy;
use snapflow::scenario::faults::{Fault, FaultAction, FaultTrigger, SubtaskRef};
use snapflow::scenario::node_name::NodeName;
use snapflow::scenario::{render_toml, Expectation, Scenario};
use snapflow::sim::run_scenario;
use snapflow::time::{Duration, Instant};

const RECORDS: u64 = 10_000;

fn subtask(uid: &str, index: u32) -> SubtaskRef {
    SubtaskRef {
        uid: uid.to_string(),
        index,
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_ms(ms)
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    parallelism: u32,
    source_parallelism: u32,
    partitions: u32,
    taskmanagers: u32,
    interval_ms: u64,
    /// One of `MODES`; the checker applies the mode's row of DESIGN §9. At-most-once runs the
    /// stateless `passthrough` job (its output can be compared record for record) with no
    /// checkpoints and a fixed-delay restart strategy.
    mode: &'static str,
    /// Aligned-with-timeout only: the aligned-checkpoint timeout.
    alignment_timeout_ms: u64,
    keys: u64,
    workload_seed: u64,
    /// `[blobstore] sync-latency`: a blobstore crash loses or tears the writes still syncing.
    sync_latency_ms: u64,
    faults: Vec<Fault>,
    /// `[sink] kind`; a two-phase-commit sink is read with read_committed.
    sink: &'static str,
    /// Committing sinks only: every task manager has slots for the whole job and the restart
    /// delay is short, so a new attempt may run beside zombies of the old one.
    restart_delay_ms: u64,
    /// The job: `wordcount`, or (end-to-end cases) `forward`, whose pipelines are pipelined
    /// regions of their own, so region failover restarts only the failed ones beside running
    /// ones. At-most-once runs `passthrough` whatever this says.
    job: &'static str,
}

/// When a fault happens. Triggers and failures aim at the keyed operator, written `counter`
/// (the at-most-once job names it `tag`: `scenario_of` renames it).
fn trigger(parallelism: u32) -> impl Strategy<Value = FaultTrigger> {
    let per_subtask = RECORDS / parallelism as u64;
    prop_oneof![
        (100u64..4_000).prop_map(|at| FaultTrigger::At(Instant::from_ms(at))),
        (1u64..12).prop_map(FaultTrigger::AfterCheckpoint),
        (0..parallelism, 1..per_subtask / 2).prop_map(|(index, count)| FaultTrigger::OnRecord {
            subtask: subtask("counter", index),
            count
        }),
    ]
}

fn kill(taskmanagers: u32, parallelism: u32) -> impl Strategy<Value = Fault> {
    (1..=taskmanagers, trigger(parallelism), 50u64..2_000).prop_map(
        |(taskmanager, trigger, restart_after_ms)| Fault {
            action: FaultAction::KillTaskManager {
                taskmanager,
                restart_after: Some(ms(restart_after_ms)),
            },
            trigger,
        },
    )
}

/// A service node down for `down_ms`, then restarted (`action` names which).
fn service_restart(
    down_ms: std::ops::Range<u64>,
    parallelism: u32,
    action: fn(Duration) -> FaultAction,
) -> impl Strategy<Value = Fault> {
    (down_ms, trigger(parallelism)).prop_map(move |(down, trigger)| Fault {
        action: action(ms(down)),
        trigger,
    })
}

/// Checkpoint storage failing: the blobstore crashes (losing or tearing the writes still
/// syncing) and restarts, or its writes fail with I/O errors for a time.
fn storage_fault(parallelism: u32) -> impl Strategy<Value = Fault> {
    let outage = service_restart(100..1_500, parallelism, |restart_after| {
        FaultAction::RestartBlobstore { restart_after }
    });
    let write_failures = service_restart(50..1_500, parallelism, |duration| {
        FaultAction::FailBlobstoreWrites { duration }
    });
    prop_oneof![outage, write_failures]
}

/// The job manager killed and restarted; the scenario turns high availability on for it, so
/// the new leader recovers the job.
fn jobmanager_kill(parallelism: u32) -> impl Strategy<Value = Fault> {
    (trigger(parallelism), 50u64..2_000).prop_map(|(trigger, restart_after_ms)| Fault {
        action: FaultAction::KillJobManager {
            restart_after: Some(ms(restart_after_ms)),
        },
        trigger,
    })
}

fn any_node(taskmanagers: u32) -> impl Strategy<Value = NodeName> {
    prop_oneof![
        Just(NodeName::JobManager),
        Just(NodeName::Broker),
        Just(NodeName::Blobstore),
        (1..=taskmanagers).prop_map(NodeName::TaskManager),
    ]
}

/// Any fault of the engine-core plan: kills, clogged links (between any two nodes), and
/// failures in user code, mixed.
fn any_fault(
    taskmanagers: u32,
    parallelism: u32,
    source_parallelism: u32,
) -> impl Strategy<Value = Fault> {
    let clog = (
        any_node(taskmanagers),
        any_node(taskmanagers),
        10u64..1_500,
        trigger(parallelism),
    )
        .prop_filter("a link joins two nodes", |(from, to, ..)| from != to)
        .prop_map(|(from, to, duration_ms, trigger)| Fault {
            action: FaultAction::ClogLink {
                from,
                to,
                duration: ms(duration_ms),
                one_way: false,
            },
            trigger,
        });
    let fail = (
        prop_oneof![
            (0..parallelism).prop_map(|i| subtask("counter", i)),
            (0..source_parallelism).prop_map(|i| subtask("split", i))
        ],
        trigger(parallelism),
    )
        .prop_map(|(subtask, trigger)| Fault {
            action: FaultAction::FailTask { subtask },
            trigger,
        });
    let slow_operator = (
        prop::sample::select(vec!["split", "counter", "sink"]),
        50u64..2_000,
        100u64..3_000,
        trigger(parallelism),
    )
        .prop_map(|(uid, per_record_us, duration_ms, trigger)| Fault {
            action: FaultAction::SlowOperator {
                uid: uid.to_string(),
                per_record: Duration::from_us(per_record_us),
                duration: Some(ms(duration_ms)),
            },
            trigger,
        });
    // Data frames travel between task managers; with one task manager the slowed link is
    // the broker's (it carries no data frames, so the fault is a no-op there).
    let slow_link = (
        1..=taskmanagers,
        1..=taskmanagers,
        1u64..200,
        100u64..3_000,
        trigger(parallelism),
    )
        .prop_map(move |(from, to, latency_ms, duration_ms, trigger)| {
            let to = match (from == to, taskmanagers) {
                (false, _) => NodeName::TaskManager(to),
                (true, 1) => NodeName::Broker,
                (true, _) => NodeName::TaskManager(from % taskmanagers + 1),
            };
            Fault {
                action: FaultAction::SlowLink {
                    from: NodeName::TaskManager(from),
                    to,
                    latency: ms(latency_ms),
                    duration: Some(ms(duration_ms)),
                },
                trigger,
            }
        });
    // A pause past the heartbeat timeout leaves zombies that resume; a blobstore outage
    // makes checkpoints expire (the scenarios tolerate none, so it fails the job over).
    let pause = (0..=taskmanagers, 100u64..2_000, trigger(parallelism)).prop_map(
        |(node, duration_ms, trigger)| Fault {
            // Node 0 is the job manager.
            action: match node {
                0 => FaultAction::PauseJobManager {
                    duration: ms(duration_ms),
                },
                taskmanager => FaultAction::PauseTaskManager {
                    taskmanager,
                    duration: ms(duration_ms),
                },
            },
            trigger,
        },
    );
    prop_oneof![
        2 => kill(taskmanagers, parallelism),
        2 => clog,
        1 => fail,
        1 => slow_operator,
        1 => slow_link,
        1 => pause,
        1 => storage_fault(parallelism),
        1 => jobmanager_kill(parallelism)
    ]
}

/// The faults of the end-to-end layer beside kills and clogged links: a kill while a sink is
/// about to commit, a lost notice, late notices (well inside the broker's transaction
/// timeout), a broker restart.
fn end_to_end_fault(taskmanagers: u32, parallelism: u32) -> impl Strategy<Value = Fault> {
    let kill_before_commit = (1..=taskmanagers, 0..parallelism, 1u64..12, 50u64..1_000).prop_map(
        |(taskmanager, index, checkpoint, restart_after_ms)| Fault {
            action: FaultAction::KillTaskManager {
                taskmanager,
                restart_after: Some(ms(restart_after_ms)),
            },
            trigger: FaultTrigger::BeforeCommit {
                subtask: subtask("sink", index),
                checkpoint,
            },
        },
    );
    let lose_notice = (0..parallelism, trigger(parallelism)).prop_map(|(index, trigger)| Fault {
        action: FaultAction::LoseNotice {
            subtask: subtask("sink", index),
        },
        trigger,
    });
    let delay_notices = (10u64..3_000, 100u64..3_000, trigger(parallelism)).prop_map(
        |(delay_ms, duration_ms, trigger)| Fault {
            action: FaultAction::DelayNotices {
                delay: ms(delay_ms),
                duration: Some(ms(duration_ms)),
            },
            trigger,
        },
    );
    let restart_broker = service_restart(50..2_000, parallelism, |restart_after| {
        FaultAction::RestartBroker { restart_after }
    });
    // A task manager the job manager no longer hears, while it still hears the job manager,
    // keeps its tasks running after the failover: zombies whose sinks the recovery must fence.
    let zombie = (1..=taskmanagers, 600u64..2_000, trigger(parallelism)).prop_map(
        |(taskmanager, duration_ms, trigger)| Fault {
            action: FaultAction::ClogLink {
                from: NodeName::TaskManager(taskmanager),
                to: NodeName::JobManager,
                duration: ms(duration_ms),
                one_way: true,
            },
            trigger,
        },
    );
    prop_oneof![
        3 => kill(taskmanagers, parallelism),
        2 => kill_before_commit,
        1 => lose_notice,
        1 => delay_notices,
        1 => restart_broker,
        1 => zombie,
        1 => jobmanager_kill(parallelism),
        1 => storage_fault(parallelism),
    ]
}

/// Exactly-once with one of `sinks`, aligned or unaligned, under the end-to-end fault mix.
fn end_to_end_case(sinks: &'static [&'static str]) -> impl Strategy<Value = Case> {
    (
        case(false, &MODES[0..2]),
        1u32..=3,
        1u32..=4,
        prop::sample::select(sinks),
        prop::sample::select(vec!["wordcount", "state-zoo", "forward"]),
    )
        .prop_flat_map(|(base, taskmanagers, parallelism, sink, job)| {
            let faults = prop::collection::vec(end_to_end_fault(taskmanagers, parallelism), 1..=4);
            let delay = prop::sample::select(vec![0u64, 20, 100, 1000]);
            (Just(base), faults, delay).prop_map(move |(base, faults, restart_delay_ms)| {
                // Forward edges need one parallelism throughout.
                let source_parallelism = if job == "forward" {
                    parallelism
                } else {
                    base.source_parallelism.min(parallelism)
                };
                Case {
                    restart_delay_ms,
                    taskmanagers,
                    parallelism,
                    source_parallelism,
                    partitions: base.partitions - base.source_parallelism + source_parallelism,
                    faults,
                    sink,
                    job,
                    ..base
                }
            })
        })
}

/// Every mode a property runs: exactly-once in its three variants, then the weaker two.
const MODES: [&str; 5] = [
    "ALIGNED",
    "UNALIGNED",
    "ALIGNED_TIMEOUT",
    "AT_LEAST_ONCE",
    "AT_MOST_ONCE",
];

fn case(mixed: bool, modes: &'static [&'static str]) -> impl Strategy<Value = Case> {
    (1u32..=4, 1u32..=3, 1u32..=4).prop_flat_map(
        move |(parallelism, taskmanagers, source_parallelism)| {
            let source_parallelism = source_parallelism.min(parallelism);
            let faults = if mixed {
                prop::collection::vec(
                    any_fault(taskmanagers, parallelism, source_parallelism),
                    1..=4,
                )
                .boxed()
            } else {
                prop::collection::vec(kill(taskmanagers, parallelism), 1..=3).boxed()
            };
            let settings = (
                0..i64::MAX as u64,
                prop::sample::select(vec![100u64, 150, 200, 300, 500]),
                100u64..=300,
                0..i64::MAX as u64,
                0u32..=2,
                prop::sample::select(modes),
                prop::sample::select(vec![10u64, 30, 80, 200]),
                prop::sample::select(vec![0u64, 0, 1, 5]),
            );
            (settings, faults).prop_map(
                move |(
                    (
                        seed,
                        interval_ms,
                        keys,
                        workload_seed,
                        extra_partitions,
                        mode,
                        alignment_timeout_ms,
                        sync_latency_ms,
                    ),
                    faults,
                )| Case {
                    sync_latency_ms,
                    alignment_timeout_ms,
                    seed,
                    parallelism,
                    source_parallelism,
                    partitions: source_parallelism + extra_partitions,
                    taskmanagers,
                    interval_ms,
                    mode,
                    keys,
                    workload_seed,
                    faults,
                    sink: "plain",
                    restart_delay_ms: 0,
                    // A third of the cases run every kind of keyed state.
                    job: if seed % 3 == 0 {
                        "state-zoo"
                    } else {
                        "wordcount"
                    },
                },
            )
        },
    )
}

fn scenario_text(case: &Case) -> String {
    let end_to_end = case.sink != "plain";
    let slots = if end_to_end {
        case.parallelism
    } else {
        case.parallelism.div_ceil(case.taskmanagers)
    };
    // About four simulated seconds of input, whatever the partitioning.
    let rate = RECORDS / (case.partitions as u64 * 4);
    let at_most_once = case.mode == "AT_MOST_ONCE";
    let job = if at_most_once {
        "passthrough"
    } else {
        case.job
    };
    // At-most-once takes no checkpoints; without them Flink's default restart strategy is none.
    let checkpointing = if at_most_once {
        format!("mode = \"{}\"\n\n[restart-strategy]\ntype = \"fixed-delay\"\n\n[restart-strategy.fixed-delay]\nattempts = 1000\ndelay = \"1s\"", case.mode)
    } else {
        let (mode, alignment) = match case.mode {
            "ALIGNED" => ("EXACTLY_ONCE", String::new()),
            "UNALIGNED" => ("EXACTLY_ONCE", "\nunaligned = true".to_string()),
            "ALIGNED_TIMEOUT" => (
                "EXACTLY_ONCE",
                format!(
                    "\nunaligned = true\naligned-checkpoint-timeout = \"{}ms\"",
                    case.alignment_timeout_ms
                ),
            ),
            other => (other, String::new()),
        };
        let restart = if end_to_end {
            format!("\n\n[restart-strategy]\ntype = \"fixed-delay\"\n\n[restart-strategy.fixed-delay]\nattempts = 1000\ndelay = \"{}ms\"", case.restart_delay_ms)
        } else {
            String::new()
        };
        format!(
            "interval = \"{}ms\"\nmode = \"{mode}\"{alignment}{restart}",
            case.interval_ms
        )
    };
    let mut text = format!(
        "name = \"property-checkpointing\"\nseed = {}\n\n[job]\nname = \"{job}\"\nparallelism = {}\nsource-parallelism = {}\n\n\
         [workload]\nrecords = {RECORDS}\nkeys = {}\nseed = {}\npartitions = {}\nrecords-per-second = {rate}\n\n\
         [cluster]\ntaskmanagers = {}\nnumberOfTaskSlots = {slots}\n\n[execution.checkpointing]\n{checkpointing}\n\n\
         [heartbeat]\ninterval = \"100ms\"\ntimeout = \"500ms\"\n\n[simulation]\ndeadline = \"120s\"\n",
        case.seed, case.parallelism, case.source_parallelism, case.keys, case.workload_seed, case.partitions, case.taskmanagers
    );
    let jobmanager_killed = case
        .faults
        .iter()
        .any(|f| matches!(f.action, FaultAction::KillJobManager { .. }));
    // Half the cases that pause the job manager run a standby beside it, which takes over
    // once the paused leader's lease lapsed; the leader resuming is then fenced.
    let standby = case.seed.is_multiple_of(2)
        && case
            .faults
            .iter()
            .any(|f| matches!(f.action, FaultAction::PauseJobManager { .. }));
    if jobmanager_killed || standby {
        text.push_str("\n[high-availability]\ntype = \"zookeeper\"\n");
    }
    if standby {
        text.push_str("standby-jobmanagers = 1\nlease-duration = \"500ms\"\n");
    }
    if case.sync_latency_ms > 0 {
        text.push_str(&format!(
            "\n[blobstore]\nsync-latency = \"{}ms\"\n",
            case.sync_latency_ms
        ));
    }
    if end_to_end {
        text.push_str(&format!(
            "\n[sink]\nkind = \"{}\"\n\n[reader]\nisolation-level = \"read_committed\"\n",
            case.sink
        ));
    }
    text
}

/// The case's faults as the job runs them: the at-most-once job's keyed operator is `tag`,
/// and without checkpoints a fault meant after checkpoint n lands when it would have been
/// taken; the idempotent sink commits nothing, so before-commit becomes the completion.
fn faults_of(case: &Case) -> Vec<Fault> {
    let at_most_once = case.mode == "AT_MOST_ONCE";
    // The job's keyed (or, without one, last mapping) operator.
    let keyed_uid = match case.job {
        _ if at_most_once => "tag",
        "forward" => "tag",
        "state-zoo" => "zoo",
        _ => "counter",
    };
    let keyed = |subtask: &SubtaskRef| match subtask.uid.as_str() {
        "counter" => SubtaskRef {
            uid: keyed_uid.to_string(),
            index: subtask.index,
        },
        _ => subtask.clone(),
    };
    case.faults
        .iter()
        .map(|fault| {
            let trigger = match &fault.trigger {
                FaultTrigger::AfterCheckpoint(n) if at_most_once => {
                    FaultTrigger::At(Instant::from_ms(n * case.interval_ms))
                }
                FaultTrigger::OnRecord { subtask, count } => FaultTrigger::OnRecord {
                    subtask: keyed(subtask),
                    count: *count,
                },
                FaultTrigger::BeforeCommit { checkpoint, .. } if case.sink == "idempotent" => {
                    FaultTrigger::AfterCheckpoint(*checkpoint)
                }
                other => other.clone(),
            };
            let action = match &fault.action {
                FaultAction::FailTask { subtask } => FaultAction::FailTask {
                    subtask: keyed(subtask),
                },
                FaultAction::SlowOperator {
                    uid,
                    per_record,
                    duration,
                } if uid == "counter" => FaultAction::SlowOperator {
                    uid: keyed_uid.to_string(),
                    per_record: *per_record,
                    duration: *duration,
                },
                other => other.clone(),
            };
            Fault { action, trigger }
        })
        .collect()
}

/// The case as a scenario: its settings read from TOML, its faults set as the model they
/// are, then rendered and read back, so the loader checks them as it checks a file's.
fn scenario_of(case: &Case, name: &str) -> Scenario {
    let text = scenario_text(case);
    let mut scenario = Scenario::parse(name, &text)
        .unwrap_or_else(|e| panic!("generated scenario invalid: {e}\n{text}"));
    scenario.faults.faults = faults_of(case);
    let rendered = render_toml(&scenario);
    Scenario::parse(name, &rendered)
        .unwrap_or_else(|e| panic!("generated faults invalid: {e}\n{rendered}"))
}

/// The generator's seed: fixed by default, so `cargo test` (and CI) runs the same cases every
/// time; `SNAPFLOW_PROPTEST_SEED=<n>` picks other cases, `=random` new ones each run.
pub(crate) fn rng_seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("SNAPFLOW_PROPTEST_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(seed) => RngSeed::Fixed(
            seed.parse()
                .expect("SNAPFLOW_PROPTEST_SEED is a number or `random`"),
        ),
        Err(_) => RngSeed::Fixed(0),
    }
}

pub(crate) fn cases() -> u32 {
    std::env::var("SNAPFLOW_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// Writes the failing case where the developer finds it, to replay and keep.
pub(crate) fn keep_failure(scenario: &Scenario, name: &str) -> std::path::PathBuf {
    let folder = common::root().join("target/snapflow-regressions");
    std::fs::create_dir_all(&folder).expect("target is writable");
    let path = folder.join(format!("{name}.toml"));
    std::fs::write(&path, render_toml(scenario)).expect("target is writable");
    path
}

fn check_case(case: &Case, name: &str) -> Result<(), TestCaseError> {
    let scenario = scenario_of(case, name);
    assert_eq!(scenario.expect, Expectation::Pass);
    let file = format!("target/snapflow-regressions/{name}.toml");
    let run = run_scenario(&scenario, case.seed, &file);
    if !run.verdict.passed() {
        let path = keep_failure(&scenario, name);
        prop_assert!(false, "divergence; scenario written to {}; replay with `cargo run --release -- run {} --seed {}`\n{}", path.display(), path.display(), case.seed, run.report);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), rng_seed: rng_seed(), failure_persistence: None, max_shrink_iters: 200, ..ProptestConfig::default() })]

    /// The engine-core property: 1-3 task-manager kills at times or on triggers, any mode.
    #[test]
    fn checkpointing_modes_survive_random_task_manager_kills(case in case(false, &MODES)) {
        check_case(&case, "property-kills")?;
    }

    /// Exactly-once, aligned, under the mixed plan (swarm: every fault kind).
    #[test]
    fn aligned_survives_mixed_faults(case in case(true, &MODES[0..1])) {
        check_case(&case, "property-aligned")?;
    }

    /// Exactly-once, unaligned: restores replay persisted in-flight data.
    #[test]
    fn unaligned_survives_mixed_faults(case in case(true, &MODES[1..2])) {
        check_case(&case, "property-unaligned")?;
    }

    /// Exactly-once, aligned turning unaligned after a timeout.
    #[test]
    fn aligned_timeout_survives_mixed_faults(case in case(true, &MODES[2..3])) {
        check_case(&case, "property-aligned-timeout")?;
    }

    /// At-least-once: every oracle record reaches the sink.
    #[test]
    fn at_least_once_survives_mixed_faults(case in case(true, &MODES[3..4])) {
        check_case(&case, "property-at-least-once")?;
    }

    /// At-most-once: nothing written twice.
    #[test]
    fn at_most_once_survives_mixed_faults(case in case(true, &MODES[4..5])) {
        check_case(&case, "property-at-most-once")?;
    }

    /// End to end: the two-phase-commit sink's committed output equals the oracle's.
    #[test]
    fn two_phase_commit_output_equals_the_oracle(case in end_to_end_case(&["two-phase-commit"])) {
        check_case(&case, "property-two-phase-commit")?;
    }

    /// End to end: the write-ahead sink repeats only batches caught in its window, the
    /// idempotent sink's store ends equal.
    #[test]
    fn write_ahead_and_idempotent_sinks_keep_their_promise(case in end_to_end_case(&["write-ahead-log", "idempotent"])) {
        check_case(&case, "property-wal-idempotent")?;
    }
}

#[test]
fn generated_scenarios_render_back_to_the_same_scenario() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for index in 0..40 {
        let case = if index % 2 == 0 {
            case(true, &MODES).boxed()
        } else {
            end_to_end_case(&["two-phase-commit", "write-ahead-log", "idempotent"]).boxed()
        }
        .new_tree(&mut runner)
        .expect("a case")
        .current();
        let scenario = scenario_of(&case, "generated");
        assert_eq!(
            scenario.faults.faults,
            faults_of(&case),
            "the faults load as generated"
        );
        let again =
            Scenario::parse("rendered", &render_toml(&scenario)).expect("renders valid TOML");
        assert_eq!(again, scenario, "every field survives rendering");
    }
}

#[test]
fn every_field_of_a_scenario_survives_rendering() {
    // The fields a generated case leaves at their defaults, set: a saved replay file must
    // keep them all (`num-retained` and `max-parallelism` used to be dropped).
    let text = scenario_text(
        &case(true, &MODES)
            .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
            .expect("a case")
            .current(),
    )
    .replace(
        "[execution.checkpointing]\n",
        "[pipeline]\nmax-parallelism = 256\n\n[jobmanager.execution]\nfailover-strategy = \"full\"\n\n[high-availability]\ntype = \"kubernetes\"\n\n[blobstore]\nfsync = false\nwriteback-delay = \"2s\"\n\n[execution.checkpointing]\nnum-retained = 3\nmin-pause = \"20ms\"\ntolerable-failed-checkpoints = 2\n",
    );
    let scenario = Scenario::parse("set", &text).expect("valid");
    assert!(scenario.high_availability && !scenario.blobstore.fsync);
    assert_eq!(scenario.max_parallelism, Some(256));
    assert_eq!(scenario.checkpoint.retained, 3);
    assert_eq!(scenario.failover, FailoverStrategy::Full);
    let again = Scenario::parse("rendered", &render_toml(&scenario)).expect("renders valid TOML");
    assert_eq!(again, scenario);
}
