//! The simulation harness: the cluster on madsim, fault injection, workload, the oracle and
//! checker, the trace and the report.

pub mod checker;
pub mod cluster;
pub mod disk;
pub mod faults;
pub mod observer;
pub mod oracle;
pub mod report;
pub mod trace;
pub mod workload;

use crate::scenario::Scenario;
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

/// Runs `scenario` under `seed` twice (with and without faults) and checks the faulty run.
/// `source` names where the scenario came from, for the report and the replay command.
pub fn run_scenario(scenario: &Scenario, seed: u64, source: &str) -> ScenarioRun {
    let faulty = cluster::simulate(scenario, seed, true);
    let oracle = cluster::simulate(scenario, seed, false);
    let input = scenario.workload.generate();
    let verdict = checker::check_exactly_once(&scenario.job(), &input, &faulty, &oracle);
    let mut report = report::render(scenario, source, &faulty, &verdict);
    if let Some(failure) = verdict.first_failure() {
        report.push_str(&format!(
            "first difference: {}: {}\n",
            failure.name, failure.detail
        ));
        report.push_str(&format!(
            "replay: cargo run --release -- run {source} --seed {seed}\n"
        ));
    }
    ScenarioRun {
        faulty,
        oracle,
        verdict,
        report,
    }
}
