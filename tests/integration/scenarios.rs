//! Goal: every shipped scenario (and every kept regression) gives the verdict it expects, and
//! gives the same trace hash when run twice with the same seed (determinism).
//! Method: run each file through `run_scenario` twice and compare verdicts and hashes.

use crate::common;

use snapflow::sim::run_scenario;

#[test]
fn every_scenario_meets_its_expectation_and_is_deterministic() {
    let files = common::scenario_files();
    assert!(
        files.len() >= 3,
        "the shipped scenarios are found: {files:?}"
    );
    for file in files {
        let scenario = common::load(&file);
        let first = run_scenario(&scenario, scenario.seed, &file);
        let second = run_scenario(&scenario, scenario.seed, &file);
        assert_eq!(
            first.faulty.trace_hash, second.faulty.trace_hash,
            "{file}: faulty run is not deterministic"
        );
        assert_eq!(
            first.oracle.trace_hash, second.oracle.trace_hash,
            "{file}: oracle run is not deterministic"
        );
        assert_eq!(
            first.report, second.report,
            "{file}: report differs between identical runs"
        );
        let passed = first.verdict.passed();
        assert!(
            scenario.expect.met(passed),
            "{file} should {}:\n{}",
            scenario.expect.name(),
            first.report
        );
    }
}

#[test]
fn another_seed_changes_the_trace() {
    let scenario = common::load("scenarios/wordcount-parallel-kills.toml");
    let input = scenario.workload.generate();
    let one = snapflow::sim::cluster::simulate(&scenario, &input, 1, true);
    let two = snapflow::sim::cluster::simulate(&scenario, &input, 2, true);
    assert_ne!(
        one.trace_hash, two.trace_hash,
        "the seed must reach the simulation"
    );
}

/// Every shipped scenario, rendered (as a failure's replay file is) and read back, is the same
/// scenario: every fault kind and trigger the files use survives the one serde model.
#[test]
fn every_scenario_renders_back_to_itself() {
    for file in common::scenario_files() {
        let scenario = common::load(&file);
        let rendered = snapflow::scenario::render_toml(&scenario);
        let again = snapflow::scenario::Scenario::parse(&file, &rendered)
            .unwrap_or_else(|e| panic!("{file} renders invalid TOML: {e}\n{rendered}"));
        assert_eq!(again, scenario, "{file}:\n{rendered}");
    }
}

/// Seeds spread over worker threads give what a serial sweep gives, in seed order: each seed
/// is a simulation of its own, and no thread reaches into another's.
#[test]
fn a_sweep_on_two_threads_gives_what_a_serial_sweep_gives() {
    let scenario = common::load("scenarios/wordcount-crash.toml");
    let collect = |jobs| {
        let mut outcomes = Vec::new();
        let all = snapflow::sim::sweep::Shard::ALL;
        snapflow::sim::sweep::sweep(&scenario, 5..=10, all, jobs, |outcome| {
            outcomes.push(outcome)
        });
        outcomes
    };
    let serial = collect(1);
    let seeds: Vec<u64> = serial.iter().map(|o| o.seed).collect();
    assert_eq!(seeds, vec![5, 6, 7, 8, 9, 10]);
    assert!(serial.iter().all(|o| o.passed && o.met), "{serial:?}");
    assert_eq!(collect(2), serial);
    assert_eq!(collect(4), serial);
}

/// The two runs of a check side by side give what they give one after the other: the same
/// report (verdict, checkpoints, fault plan) and the same traces, down to their hashes.
#[test]
fn runs_side_by_side_give_what_runs_one_after_the_other_give() {
    use snapflow::sim::{run_scenario_staged, Runs, Stage};
    let scenario = common::load("scenarios/e2e-2pc.toml");
    let run = |runs| {
        let ended = std::sync::Mutex::new(Vec::new());
        let run = run_scenario_staged(&scenario, 3, "e2e-2pc.toml", runs, &|stage| {
            ended.lock().unwrap().push(stage)
        });
        let mut ended = ended.into_inner().unwrap();
        ended.sort_by_key(|stage| *stage as u8);
        let all = [
            Stage::Input,
            Stage::FaultyRun,
            Stage::OracleRun,
            Stage::Check,
        ];
        assert_eq!(ended, all);
        run
    };
    let (serial, concurrent) = (run(Runs::Serial), run(Runs::Concurrent));
    assert!(serial.verdict.passed(), "{}", serial.report);
    assert_eq!(concurrent.report, serial.report);
    assert_eq!(concurrent.faulty.trace, serial.faulty.trace);
    assert_eq!(concurrent.oracle.trace, serial.oracle.trace);
    assert_eq!(concurrent.faulty.trace_hash, serial.faulty.trace_hash);
}
