//! `snapflow sweep`: a scenario under many seeds, the seeds spread over worker threads. Each
//! seed is a simulation of its own (its own madsim runtime, its own state), so seeds share
//! nothing and a worker thread changes no result: the outcomes come back in seed order,
//! exactly as a serial sweep gives them. The threads are the harness's, outside every
//! simulation.

use crate::scenario::{Expectation, Scenario};
use crate::sim::run_scenario;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// What one seed gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// Whether every check passed.
    pub passed: bool,
    /// Whether that is what the scenario expects.
    pub met: bool,
    /// Restarts in the run with faults.
    pub restarts: u32,
    /// The trace hash of the run with faults.
    pub trace_hash: u64,
    /// The first failed check (`name: detail`), if any.
    pub first_failure: Option<String>,
}

/// Runs `scenario` under every seed of `seeds` on `jobs` worker threads and hands each outcome
/// to `on_outcome` in seed order, as soon as it and every earlier seed are done.
pub fn sweep(
    scenario: &Scenario,
    source: &str,
    seeds: RangeInclusive<u64>,
    jobs: usize,
    mut on_outcome: impl FnMut(SeedOutcome),
) {
    let (first, last) = (*seeds.start(), *seeds.end());
    // Offsets from `first`, so the counter never passes `u64::MAX` even at the range's end.
    let next = AtomicU64::new(0);
    let span = last - first;
    let (sender, receiver) = mpsc::channel::<SeedOutcome>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || loop {
                let offset = next.fetch_add(1, Ordering::Relaxed);
                if offset > span {
                    return;
                }
                if sender
                    .send(run_seed(scenario, source, first + offset))
                    .is_err()
                {
                    return;
                }
            });
        }
        drop(sender);
        let mut waiting = BTreeMap::new();
        let mut due = first;
        for outcome in receiver {
            waiting.insert(outcome.seed, outcome);
            while let Some(outcome) = waiting.remove(&due) {
                on_outcome(outcome);
                due = due.wrapping_add(1);
            }
        }
        assert!(waiting.is_empty(), "every seed's outcome was handed on");
    });
}

fn run_seed(scenario: &Scenario, source: &str, seed: u64) -> SeedOutcome {
    let run = run_scenario(scenario, seed, source);
    let passed = run.verdict.passed();
    SeedOutcome {
        seed,
        passed,
        met: match scenario.expect {
            Expectation::Pass => passed,
            Expectation::Fail => !passed,
        },
        restarts: run.faulty.restarts,
        trace_hash: run.faulty.trace_hash,
        first_failure: run
            .verdict
            .first_failure()
            .map(|check| format!("{}: {}", check.name, check.detail)),
    }
}

/// Parses a seed: an unsigned 64-bit integer, said plainly when it is not (`-5` would
/// otherwise read as a flag).
pub fn parse_seed(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!(
            "`{text}` is not a seed: a seed is an unsigned integer, 0 to {}",
            u64::MAX
        )
    })
}

/// The seeds `from .. from + count`: at least one, and none past `u64::MAX`.
pub fn seed_range(from: u64, count: u64) -> Result<RangeInclusive<u64>, String> {
    if count == 0 {
        return Err("--seeds 0: a sweep runs at least one seed".to_string());
    }
    let last = from.checked_add(count - 1).ok_or_else(|| {
        format!(
            "--from {from} --seeds {count}: the last seed would pass {}; at most {} seeds start at {from}",
            u64::MAX,
            u64::MAX - from + 1
        )
    })?;
    Ok(from..=last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_is_an_unsigned_integer() {
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        let negative = parse_seed("-5").unwrap_err();
        assert!(negative.contains("`-5` is not a seed: a seed is an unsigned integer"));
        assert!(parse_seed("18446744073709551616").is_err());
    }

    #[test]
    fn a_sweep_runs_at_least_one_seed_and_never_wraps() {
        assert!(seed_range(7, 0).unwrap_err().contains("at least one seed"));
        assert_eq!(seed_range(7, 3), Ok(7..=9));
        assert_eq!(seed_range(u64::MAX, 1), Ok(u64::MAX..=u64::MAX));
        assert_eq!(seed_range(u64::MAX - 1, 2).map(|r| r.count()), Ok(2));
        let wraps = seed_range(u64::MAX, 2).unwrap_err();
        assert!(wraps.contains("at most 1 seeds start at"), "{wraps}");
        assert!(seed_range(0, u64::MAX).is_ok());
    }
}
