//! The simulation harness: the cluster on madsim, fault injection, workload, the oracle and
//! checker, the trace and the report.

pub mod checker;
pub mod cluster;
pub mod gate_model;
pub mod logical_cut;
pub mod observer;
pub mod oracle;
pub mod report;
pub mod sink_output;
pub mod sweep;
pub mod trace;
pub mod ttl_visibility;
pub mod user_check;

use crate::api::value::Value;
use crate::scenario::{Expectation, Scenario};
use checker::Verdict;
use cluster::RunResult;

/// A scenario run with its faults, the failure-free run beside it, and the verdict.
pub struct ScenarioRun {
    /// The run with faults.
    pub faulty: RunResult,
    /// The failure-free run of the same job and workload under the same seed.
    pub oracle: RunResult,
    /// What the checker found.
    pub verdict: Verdict,
    /// The printed report.
    pub report: String,
}

/// The stages of `run_scenario`, announced as each ends (the CLI times them; the simulation
/// itself never reads a wall clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The input was generated (before either run; a sweep generates it once, before its
    /// seeds, and reports no such stage).
    Input,
    /// The run with faults ended.
    FaultyRun,
    /// The failure-free run ended.
    OracleRun,
    /// The checker ended.
    Check,
}

/// How the two runs of a check (with faults, failure-free) share the machine. Each run is a
/// simulation of its own, so where and when it runs changes none of its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// One after the other on the calling thread (a sweep's workers: the seeds fill the cores).
    Serial,
    /// Side by side, the failure-free run on a second harness thread.
    Concurrent,
}

/// Runs `scenario` under `seed` twice (with and without faults) and checks the faulty run.
/// `source` names where the scenario came from, for the report and the replay command.
pub fn run_scenario(scenario: &Scenario, seed: u64, source: &str) -> ScenarioRun {
    run_scenario_staged(scenario, seed, source, Runs::Serial, &|_| {})
}

/// `run_scenario` with the runs placed as `runs` says, calling `on_stage` as each stage ends
/// (from the thread that ran it).
pub fn run_scenario_staged(
    scenario: &Scenario,
    seed: u64,
    source: &str,
    runs: Runs,
    on_stage: &(dyn Fn(Stage) + Sync),
) -> ScenarioRun {
    let checked = check_scenario_staged(scenario, seed, runs, on_stage);
    let (faulty, verdict) = (&checked.faulty, &checked.verdict);
    let mut report = report::render(scenario, source, checked.input_records, faulty, verdict);
    if let Some(failure) = verdict.first_failure() {
        report.push_str(&format!(
            "first difference: {}: {}\n",
            failure.name, failure.detail
        ));
        if scenario.user_job.is_none() {
            report.push_str(&format!(
                "replay: cargo run --release -- run {source} --seed {seed}\n"
            ));
        }
    }
    ScenarioRun {
        faulty: checked.faulty,
        oracle: checked.oracle,
        verdict: checked.verdict,
        report,
    }
}

/// The run with faults and the failure-free run, placed as `runs` says.
fn simulate_both(
    scenario: &Scenario,
    input: &[Vec<Value>],
    seed: u64,
    runs: Runs,
    on_stage: &(dyn Fn(Stage) + Sync),
) -> (RunResult, RunResult) {
    let run = |with_faults: bool, stage: Stage| {
        let result = cluster::simulate(scenario, input, seed, with_faults);
        on_stage(stage);
        result
    };
    match runs {
        Runs::Serial => {
            let faulty = run(true, Stage::FaultyRun);
            (faulty, run(false, Stage::OracleRun))
        }
        Runs::Concurrent => std::thread::scope(|scope| {
            let oracle = scope.spawn(|| run(false, Stage::OracleRun));
            let faulty = run(true, Stage::FaultyRun);
            let oracle = oracle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (faulty, oracle)
        }),
    }
}

/// A scenario run and checked, without its report (what a sweep keeps of each seed).
pub struct CheckedRun {
    /// The run with faults.
    pub faulty: RunResult,
    /// The failure-free run.
    pub oracle: RunResult,
    /// What the checker found.
    pub verdict: Verdict,
    /// Records in the input.
    pub input_records: usize,
}

/// Runs `scenario` under `seed` with and without faults and checks it; no report is rendered.
pub fn check_scenario_staged(
    scenario: &Scenario,
    seed: u64,
    runs: Runs,
    on_stage: &(dyn Fn(Stage) + Sync),
) -> CheckedRun {
    let input = scenario.workload.generate();
    on_stage(Stage::Input);
    check_scenario_with_input(scenario, &input, seed, runs, on_stage)
}

/// `check_scenario_staged` on `input`, the scenario's workload generated already (a sweep
/// generates it once for all its seeds).
pub fn check_scenario_with_input(
    scenario: &Scenario,
    input: &[Vec<Value>],
    seed: u64,
    runs: Runs,
    on_stage: &(dyn Fn(Stage) + Sync),
) -> CheckedRun {
    let (faulty, oracle) = simulate_both(scenario, input, seed, runs, on_stage);
    let guarantee = checker::Guarantee::of(scenario);
    let end = checker::ExpectedEnd {
        ending: match scenario.expect {
            Expectation::Pass | Expectation::Fail => checker::Ending::Finishes,
            Expectation::GaveUp => checker::Ending::GivesUp,
            Expectation::JobLost => checker::Ending::Lost,
            Expectation::Canceled => checker::Ending::Canceled,
        },
        restart: scenario.restart.clone(),
        seed: cluster::restart_seed(seed),
    };
    let versions: Vec<crate::api::job::Job> = (0..scenario.stage_count())
        .map(|stage| scenario.stage(stage).job())
        .collect();
    let verdict = checker::check_run(
        &end,
        guarantee,
        &scenario.sink,
        &versions,
        input,
        &faulty,
        &oracle,
    );
    on_stage(Stage::Check);
    CheckedRun {
        faulty,
        oracle,
        verdict,
        input_records: input.iter().map(Vec::len).sum(),
    }
}
