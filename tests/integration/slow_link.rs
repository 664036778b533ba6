//! Goal: a slow link lengthens barrier alignment while it lasts and loses nothing.
//! Method: run `scenarios/slow-link.toml` (80 ms added per frame from taskmanager-1 to
//! taskmanager-2 between 1 s and 3 s) and compare the alignment time of checkpoints triggered
//! inside the window with those outside it.

use crate::common;

use snapflow::sim::run_scenario;
use snapflow::time::{Duration, Instant};

#[test]
fn alignment_waits_for_the_slow_link_only_while_it_is_slow() {
    let file = "scenarios/slow-link.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    let window = Instant::from_ms(1_000)..Instant::from_ms(2_900);
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for observed in &run.faulty.checkpoints {
        let checkpoint = &observed.checkpoint;
        let alignment = checkpoint.alignment_duration_max();
        if window.contains(&checkpoint.created_at) {
            inside.push(alignment);
        } else if checkpoint.created_at >= Instant::from_ms(3_100)
            || checkpoint.created_at < window.start
        {
            outside.push(alignment);
        }
    }
    assert!(
        inside.len() >= 5 && outside.len() >= 5,
        "checkpoints on both sides: {inside:?} / {outside:?}"
    );
    assert!(
        inside.iter().all(|a| *a >= Duration::from_ms(60)),
        "alignment inside the window: {inside:?}"
    );
    assert!(
        outside.iter().all(|a| *a < Duration::from_ms(40)),
        "alignment outside the window: {outside:?}"
    );
}
