//! `snapflow::check`: a user's own job, tested from the user's own `cargo test` under a
//! scenario that supplies the cluster, the workload and the faults. Each seed runs the job
//! with the faults and without, and the checker holds the run to the rows of the scenario's
//! consistency mode against the reference evaluation, which runs the job's own operators
//! sequentially.

use crate::api::job::Job;
use crate::scenario::{Scenario, ScenarioError};
use crate::sim::run_scenario;
use std::fmt;

/// Why `check` did not pass.
#[derive(Debug)]
pub enum CheckFailure {
    /// The scenario does not fit the job (a fault naming an operator it lacks, too few
    /// slots, another topic).
    Invalid(ScenarioError),
    /// A seed's verdict was not the scenario's `expect`.
    Diverged {
        /// The seed.
        seed: u64,
        /// The job's name.
        job: String,
        /// The run's report: plan, faults, checkpoints, verdict, first difference.
        report: String,
    },
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Invalid(error) => write!(f, "{error}"),
            CheckFailure::Diverged { seed, job, report } => write!(
                f,
                "job `{job}` diverged under seed {seed}\n{report}replay: snapflow::check(job, &scenario, [{seed}]) with the same job and scenario file"
            ),
        }
    }
}

impl std::error::Error for CheckFailure {}

/// Runs `job` under `scenario` for every seed and checks each run; returns how many seeds
/// passed, or the first that did not meet the scenario's `expect`.
pub fn check(
    job: Job,
    scenario: &Scenario,
    seeds: impl IntoIterator<Item = u64>,
) -> Result<usize, CheckFailure> {
    let scenario = scenario.with_job(job).map_err(CheckFailure::Invalid)?;
    let mut passed = 0;
    for seed in seeds {
        let run = run_scenario(&scenario, seed, &scenario.name);
        if !scenario.expect.met(run.verdict.passed()) {
            return Err(CheckFailure::Diverged {
                seed,
                job: scenario.job_name.clone(),
                report: run.report,
            });
        }
        passed += 1;
    }
    Ok(passed)
}
