//! Goal: prove the checker can fail. With checkpointing disabled a task-manager kill loses
//! keyed state; the checker must report the lost counts and print the replay command.
//! Method: run `scenarios/no-checkpoint-crash.toml` and inspect the verdict and report.

use crate::common;

use snapflow::sim::run_scenario;

#[test]
fn disabled_checkpointing_with_a_kill_fails_the_check_and_prints_the_replay() {
    let file = "scenarios/no-checkpoint-crash.toml";
    let scenario = common::load(file);
    assert!(!scenario.checkpointing());
    let run = run_scenario(&scenario, scenario.seed, file);
    let failure = run.verdict.first_failure().expect("the checker fails");
    assert_eq!(failure.name, "final keyed state equals the oracle's");
    assert!(
        failure.detail.contains("expected {count="),
        "{}",
        failure.detail
    );
    assert!(run.report.contains("first difference:"), "{}", run.report);
    assert!(
        run.report.contains(&format!(
            "replay: cargo run --release -- run {file} --seed {}",
            scenario.seed
        )),
        "{}",
        run.report
    );
    assert!(
        run.report.contains("kill taskmanager-2"),
        "the plan is printed:\n{}",
        run.report
    );
    // The failure-free run of the same job still agrees with the reference: the loss is the fault's.
    assert!(run
        .verdict
        .checks
        .iter()
        .any(|c| c.name == "oracle run agrees with the reference" && c.passed));
}
