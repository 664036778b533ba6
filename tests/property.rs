//! Goal: under exactly-once aligned checkpoints, any plan of task-manager kills leaves the
//! final keyed state equal to the oracle's, every completed checkpoint a consistent cut, and
//! every oracle record in the sink.
//! Method: proptest generates the cluster shape, parallelism, checkpoint interval, workload
//! (10,000 records over 100-300 keys) and 1-3 kills at times or on triggers; each case runs
//! with and without faults under its seed and is checked. A failure shrinks to a minimal
//! plan, written as a scenario file to replay and keep in `scenarios/regressions/`.
//! `SNAPFLOW_PROPTEST_CASES` raises the case count (default 16, to keep `cargo test` fast).

mod common;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use snapflow::scenario::{render_toml, Expectation, Scenario};
use snapflow::sim::run_scenario;

const RECORDS: u64 = 10_000;

#[derive(Clone, Debug)]
enum Trigger {
    AtMs(u64),
    AfterCheckpoint(u64),
    OnRecord { subtask: u32, count: u64 },
}

#[derive(Clone, Debug)]
struct Kill {
    taskmanager: u32,
    trigger: Trigger,
    restart_after_ms: u64,
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    parallelism: u32,
    source_parallelism: u32,
    partitions: u32,
    taskmanagers: u32,
    interval_ms: u64,
    keys: u64,
    workload_seed: u64,
    kills: Vec<Kill>,
}

fn kill(taskmanagers: u32, parallelism: u32) -> impl Strategy<Value = Kill> {
    let per_subtask = RECORDS / parallelism as u64;
    let trigger = prop_oneof![
        (100u64..4_000).prop_map(Trigger::AtMs),
        (1u64..12).prop_map(Trigger::AfterCheckpoint),
        (0..parallelism, 1..per_subtask / 2)
            .prop_map(|(subtask, count)| Trigger::OnRecord { subtask, count }),
    ];
    (1..=taskmanagers, trigger, 50u64..2_000).prop_map(
        |(taskmanager, trigger, restart_after_ms)| Kill {
            taskmanager,
            trigger,
            restart_after_ms,
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    (1u32..=4, 1u32..=3).prop_flat_map(|(parallelism, taskmanagers)| {
        (
            0..i64::MAX as u64,
            1..=parallelism,
            prop::sample::select(vec![100u64, 150, 200, 300, 500]),
            100u64..=300,
            0..i64::MAX as u64,
            prop::collection::vec(kill(taskmanagers, parallelism), 1..=3),
            0u32..=2,
        )
            .prop_map(
                move |(
                    seed,
                    source_parallelism,
                    interval_ms,
                    keys,
                    workload_seed,
                    kills,
                    extra_partitions,
                )| Case {
                    seed,
                    parallelism,
                    source_parallelism,
                    partitions: source_parallelism + extra_partitions,
                    taskmanagers,
                    interval_ms,
                    keys,
                    workload_seed,
                    kills,
                },
            )
    })
}

fn scenario_text(case: &Case) -> String {
    let slots = case.parallelism.div_ceil(case.taskmanagers);
    // About four simulated seconds of input, whatever the partitioning.
    let rate = RECORDS / (case.partitions as u64 * 4);
    let mut text = format!(
        "name = \"property-exactly-once\"\nseed = {}\n\n[job]\nname = \"wordcount\"\nparallelism = {}\nsource-parallelism = {}\n\n\
         [workload]\nrecords = {RECORDS}\nkeys = {}\nseed = {}\npartitions = {}\nrecords-per-second = {rate}\n\n\
         [cluster]\ntaskmanagers = {}\nnumberOfTaskSlots = {slots}\n\n[execution.checkpointing]\ninterval = \"{}ms\"\n\n\
         [heartbeat]\ninterval = \"100ms\"\ntimeout = \"500ms\"\n\n[simulation]\ndeadline = \"120s\"\n",
        case.seed, case.parallelism, case.source_parallelism, case.keys, case.workload_seed, case.partitions, case.taskmanagers, case.interval_ms
    );
    for kill in &case.kills {
        text.push_str(&format!("\n[[faults]]\nkind = \"kill-taskmanager\"\ntaskmanager = {}\nrestart-after = \"{}ms\"\n", kill.taskmanager, kill.restart_after_ms));
        match kill.trigger {
            Trigger::AtMs(ms) => text.push_str(&format!("at = \"{ms}ms\"\n")),
            Trigger::AfterCheckpoint(n) => text.push_str(&format!("after-checkpoint = {n}\n")),
            Trigger::OnRecord { subtask, count } => text.push_str(&format!(
                "on-record = {{ subtask = \"counter#{subtask}\", count = {count} }}\n"
            )),
        }
    }
    text
}

fn cases() -> u32 {
    std::env::var("SNAPFLOW_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// Writes the failing case where the developer finds it, to replay and keep.
fn keep_failure(scenario: &Scenario) -> std::path::PathBuf {
    let folder = common::root().join("target/snapflow-regressions");
    std::fs::create_dir_all(&folder).expect("target is writable");
    let path = folder.join("property-exactly-once.toml");
    std::fs::write(&path, render_toml(scenario)).expect("target is writable");
    path
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn exactly_once_survives_random_task_manager_kills(case in case()) {
        let text = scenario_text(&case);
        let scenario = Scenario::parse("property", &text).unwrap_or_else(|e| panic!("generated scenario invalid: {e}\n{text}"));
        assert_eq!(scenario.expect, Expectation::Pass);
        let run = run_scenario(&scenario, case.seed, "target/snapflow-regressions/property-exactly-once.toml");
        if !run.verdict.passed() {
            let path = keep_failure(&scenario);
            prop_assert!(false, "divergence; scenario written to {}; replay with `cargo run --release -- run {} --seed {}`\n{}", path.display(), path.display(), case.seed, run.report);
        }
    }
}

#[test]
fn generated_scenarios_render_back_to_the_same_scenario() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..20 {
        let case = case().new_tree(&mut runner).expect("a case").current();
        let scenario = Scenario::parse("generated", &scenario_text(&case)).expect("valid");
        let again =
            Scenario::parse("rendered", &render_toml(&scenario)).expect("renders valid TOML");
        assert_eq!(
            format!("{:?}", again.faults),
            format!("{:?}", scenario.faults)
        );
        assert_eq!(again.checkpoint, scenario.checkpoint);
        assert_eq!(again.workload, scenario.workload);
    }
}
