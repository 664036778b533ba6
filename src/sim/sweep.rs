//! `snapflow sweep`: a scenario under many seeds, the seeds spread over worker threads. Each
//! seed is a simulation of its own (its own madsim runtime, its own state), so seeds share
//! nothing and a worker thread changes no result: the outcomes come back in seed order,
//! exactly as a serial sweep gives them. The threads are the harness's, outside every
//! simulation.

use crate::api::value::Value;
use crate::scenario::Scenario;
use crate::sim::{check_scenario_with_input, Runs};
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

/// One of `count` disjoint parts of a seed range (`--shard K/N`): the seeds at offsets
/// `index`, `index + count`, `index + 2 count`, ... from the range's start, so N machines or CI
/// jobs with shards 1/N .. N/N cover the range once between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// From 0.
    pub index: u64,
    /// At least 1.
    pub count: u64,
}

impl Shard {
    /// The whole range.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `K/N` (1 ≤ K ≤ N).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let refuse = || format!("`{text}` is not a shard: write K/N with 1 <= K <= N (e.g. 2/4)");
        let (k, n) = text.split_once('/').ok_or_else(refuse)?;
        let (k, n): (u64, u64) = (
            k.parse().map_err(|_| refuse())?,
            n.parse().map_err(|_| refuse())?,
        );
        if k == 0 || k > n {
            return Err(refuse());
        }
        Ok(Shard {
            index: k - 1,
            count: n,
        })
    }

    /// The offset from the range's start of this shard's `nth` seed, if it fits in `span`.
    fn offset(self, nth: u64, span: u64) -> Option<u64> {
        let offset = nth.checked_mul(self.count)?.checked_add(self.index)?;
        (offset <= span).then_some(offset)
    }
}

/// Runs `scenario` under the seeds of `shard` within `seeds` on `jobs` worker threads and hands
/// each outcome to `on_outcome` in seed order, as soon as it and every earlier seed are done.
pub fn sweep(
    scenario: &Scenario,
    seeds: RangeInclusive<u64>,
    shard: Shard,
    jobs: usize,
    mut on_outcome: impl FnMut(SeedOutcome),
) {
    let (first, last) = (*seeds.start(), *seeds.end());
    // Offsets from `first`, so nothing passes `u64::MAX` even at the range's end.
    let next = AtomicU64::new(0);
    let span = last - first;
    let (sender, receiver) = mpsc::channel::<SeedOutcome>();
    // The input depends on the workload alone, not on the seed: generated once for all seeds.
    let input = &scenario.workload.generate();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || loop {
                let nth = next.fetch_add(1, Ordering::Relaxed);
                let Some(offset) = shard.offset(nth, span) else {
                    return;
                };
                if sender
                    .send(run_seed(scenario, input, first + offset))
                    .is_err()
                {
                    return;
                }
            });
        }
        drop(sender);
        let mut waiting = BTreeMap::new();
        let mut due = 0;
        for outcome in receiver {
            waiting.insert(outcome.seed, outcome);
            while let Some(outcome) = shard
                .offset(due, span)
                .and_then(|offset| waiting.remove(&(first + offset)))
            {
                on_outcome(outcome);
                due += 1;
            }
        }
        assert!(waiting.is_empty(), "every seed's outcome was handed on");
    });
}

// No report is rendered: a sweep prints a failing seed's replay command, not its report.
fn run_seed(scenario: &Scenario, input: &[Vec<Value>], seed: u64) -> SeedOutcome {
    let run = check_scenario_with_input(scenario, input, seed, Runs::Serial, &|_| {});
    let passed = run.verdict.passed();
    SeedOutcome {
        seed,
        passed,
        met: scenario.expect.met(passed),
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
    fn shards_split_a_range_into_disjoint_parts_that_cover_it() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 1, count: 4 }));
        for bad in ["0/4", "5/4", "2", "a/b", "1/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let span = 9; // Ten seeds.
        let mut covered = Vec::new();
        for k in 1..=3 {
            let shard = Shard::parse(&format!("{k}/3")).expect("valid");
            covered.extend((0..).map_while(|nth| shard.offset(nth, span)));
        }
        covered.sort();
        assert_eq!(covered, (0..=span).collect::<Vec<_>>());
        assert_eq!(Shard::ALL.offset(u64::MAX, u64::MAX), Some(u64::MAX));
        assert_eq!(
            Shard { index: 1, count: 2 }.offset(u64::MAX, u64::MAX),
            None
        );
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
