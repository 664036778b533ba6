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
    /// The run with faults ended.
    FaultyRun,
    /// The failure-free run ended.
    OracleRun,
    /// The checker ended.
    Check,
}

/// Runs `scenario` under `seed` twice (with and without faults) and checks the faulty run.
/// `source` names where the scenario came from, for the report and the replay command.
pub fn run_scenario(scenario: &Scenario, seed: u64, source: &str) -> ScenarioRun {
    run_scenario_staged(scenario, seed, source, |_| {})
}

/// `run_scenario`, calling `on_stage` as each stage ends.
pub fn run_scenario_staged(
    scenario: &Scenario,
    seed: u64,
    source: &str,
    on_stage: impl FnMut(Stage),
) -> ScenarioRun {
    let checked = check_scenario_staged(scenario, seed, on_stage);
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
    mut on_stage: impl FnMut(Stage),
) -> CheckedRun {
    let input = scenario.workload.generate();
    let faulty = cluster::simulate(scenario, &input, seed, true);
    on_stage(Stage::FaultyRun);
    let oracle = cluster::simulate(scenario, &input, seed, false);
    on_stage(Stage::OracleRun);
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
        &input,
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
