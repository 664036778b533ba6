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

/// A checkpoint whose keyed state was altered after the run (one count changed, or one key
/// added) fails the consistent-cut row, naming the checkpoint and the key.
#[test]
fn a_checkpoint_with_altered_keyed_state_is_not_a_consistent_cut() {
    use snapflow::sim::checker::{check_run, ExpectedEnd, Guarantee};
    use snapflow::state::snapshot::{OperatorSnapshot, StateEntry};

    let file = "scenarios/wordcount-crash.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    let input = scenario.workload.generate();
    let recheck = |faulty: &snapflow::sim::cluster::RunResult| {
        let verdict = check_run(
            &ExpectedEnd {
                ending: snapflow::sim::checker::Ending::Finishes,
                restart: scenario.restart.clone(),
                seed: snapflow::sim::cluster::restart_seed(scenario.seed),
            },
            Guarantee::ExactlyOnce,
            &scenario.sink,
            &[scenario.job()],
            &input,
            faulty,
            &run.oracle,
        );
        let cut = verdict
            .checks
            .iter()
            .find(|c| c.name == "every completed checkpoint is a consistent cut")
            .expect("the row")
            .clone();
        assert!(!cut.passed, "an altered checkpoint passed: {}", cut.detail);
        cut.detail
    };
    let alter = |edit: &dyn Fn(&mut snapflow::state::snapshot::StateTable)| {
        let mut faulty = run.faulty.clone();
        let observed = faulty.checkpoints.first_mut().expect("a checkpoint");
        let state = observed
            .task_states_mut()
            .values_mut()
            .find_map(|state| {
                let state = state.as_mut().ok()?;
                state
                    .operators
                    .values_mut()
                    .find_map(|operator| match operator {
                        OperatorSnapshot::Keyed(keyed) if !keyed.tables.is_empty() => Some(keyed),
                        _ => None,
                    })
            })
            .expect("a subtask with keyed state");
        edit(state.tables.get_mut("count").expect("the count state"));
        faulty
    };
    let changed = alter(&|table| {
        let entry = table
            .values_mut()
            .flat_map(|entries| entries.values_mut())
            .next()
            .expect("an entry");
        *entry = StateEntry::Value(postcard::to_allocvec(&999i64).unwrap());
    });
    let detail = recheck(&changed);
    assert!(
        detail.starts_with("checkpoint 1 (offsets") && detail.contains("count=999"),
        "{detail}"
    );
    let added = alter(&|table| {
        let (_, entries) = table.iter_mut().next().expect("a key group");
        entries.insert("zz-extra".into(), StateEntry::Value(vec![2]));
    });
    let detail = recheck(&added);
    assert!(detail.contains("key `zz-extra`"), "{detail}");
}

/// A corrupt newest checkpoint is never restored: with an older one retained the job falls
/// back to it and stays exactly-once; with none the job fails and the checker says so.
#[test]
fn a_corrupt_checkpoint_is_refused_by_its_checksum_and_recovery_falls_back() {
    let file = "scenarios/corrupt-checkpoint-fallback.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    let unusable = run
        .faulty
        .trace
        .iter()
        .find(|line| line.contains("is unusable"));
    let unusable = unusable.expect("the corrupt checkpoint is reported");
    assert!(
        unusable.contains("chk-8/0-0.state: checksum mismatch")
            && unusable.contains("falling back to checkpoint 7"),
        "{unusable}"
    );
    assert!(run
        .faulty
        .trace
        .iter()
        .any(|line| line.contains("from checkpoint 7")));

    let file = "scenarios/corrupt-checkpoint-no-fallback.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    let failure = run
        .verdict
        .first_failure()
        .expect("no checkpoint left: the job fails");
    assert!(
        failure
            .detail
            .contains("no intact retained checkpoint to fall back to"),
        "{}",
        failure.detail
    );
}
