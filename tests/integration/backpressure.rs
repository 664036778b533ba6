//! Goal: credit-based flow control carries backpressure from a slow consumer back to the
//! source. With the counter at 1 ms per record and an unpaced source, the source may run ahead
//! only by what the granted credits and its own bounded output queue hold, so it finishes
//! shortly before the counter — not at the start, as it does without the slow operator.
//! Method: run `scenarios/backpressure-slow-counter.toml` with and without its fault and read
//! the tasks' finish times from their `TaskFinished` events (simulated time is deterministic).

use crate::common;

use snapflow::runtime::hooks::EngineEvent;
use snapflow::sim::cluster::{simulate, RunResult};

fn finish_seconds(run: &RunResult, subtask: &str) -> f64 {
    let finished = run
        .events
        .iter()
        .find(|recorded| {
            matches!(&recorded.event, EngineEvent::TaskFinished { subtask: s, .. } if s.to_string() == subtask)
        })
        .unwrap_or_else(|| panic!("{subtask} finished:\n{}", run.trace.join("\n")));
    finished.at.0 as f64 / 1e9
}

#[test]
fn a_slow_counter_stalls_the_source() {
    let scenario = common::load("scenarios/backpressure-slow-counter.toml");
    let input = scenario.workload.generate();
    let slow = simulate(&scenario, &input, scenario.seed, true);
    let (source, counter) = (finish_seconds(&slow, "v0#0"), finish_seconds(&slow, "v1#0"));
    // 150,000 records at 1 ms each: the counter needs 150 s.
    assert!(counter >= 150.0, "counter finished at {counter}s");
    // Backpressure holds the source back to within a few seconds of the counter.
    assert!(
        source >= counter - 10.0,
        "source finished at {source}s, counter at {counter}s: no backpressure"
    );

    let fast = simulate(&scenario, &input, scenario.seed, false);
    let source_unthrottled = finish_seconds(&fast, "v0#0");
    assert!(
        source_unthrottled < 10.0,
        "without the slow counter the source is done early ({source_unthrottled}s)"
    );
    // Aligned checkpoints wait behind the queued buffers under backpressure.
    let slowest = slow
        .checkpoints
        .iter()
        .map(|c| c.checkpoint.acked_at.since(c.checkpoint.created_at))
        .max()
        .expect("checkpoints completed");
    assert!(
        slowest.as_ms() > 1_000,
        "aligned checkpoint under backpressure took only {slowest}"
    );
}
