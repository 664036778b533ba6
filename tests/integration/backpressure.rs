//! Goal: credit-based flow control carries backpressure from a slow consumer back to the
//! source. With the counter at 1 ms per record and an unpaced source, the source may run ahead
//! only by what the granted credits and its own bounded output queue hold, so it finishes
//! at most that many records (at 1 ms each) before the counter — not at the start, as it does
//! without the slow operator.
//! Method: run `scenarios/backpressure-slow-counter.toml` with and without its fault and read
//! the tasks' finish times from their `TaskFinished` events (simulated time is deterministic).

use crate::common;

use snapflow::api::value::Value;
use snapflow::limits::{
    BUFFER_SIZE_BYTES, CREDITS_EXCLUSIVE_PER_CHANNEL, CREDITS_FLOATING_PER_GATE,
    OUTPUT_QUEUE_BUFFERS_MAX,
};
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

/// The most records the source can have sent ahead of a counter that grants no more credit:
/// every buffer the counter's gate may hold, the source's output queue and the buffer it is
/// filling, each filled with the input's shortest records.
fn in_flight_records_max(input: &[Vec<Value>]) -> usize {
    let buffers = (CREDITS_EXCLUSIVE_PER_CHANNEL + CREDITS_FLOATING_PER_GATE) as usize
        + OUTPUT_QUEUE_BUFFERS_MAX
        + 1;
    let shortest = input
        .iter()
        .flatten()
        .map(|record| {
            postcard::to_allocvec(record)
                .expect("a record encodes")
                .len()
        })
        .min()
        .expect("the input has records");
    // A buffer is sent once it reaches its size, so it holds at most one record more.
    buffers * (BUFFER_SIZE_BYTES / shortest + 1)
}

#[test]
fn a_slow_counter_stalls_the_source() {
    let scenario = common::load("scenarios/backpressure-slow-counter.toml");
    let input = scenario.workload.generate();
    let slow = simulate(&scenario, &input, scenario.seed, true);
    let (source, counter) = (finish_seconds(&slow, "v0#0"), finish_seconds(&slow, "v1#0"));
    // 150,000 records at 1 ms each: the counter needs 150 s.
    assert!(counter >= 150.0, "counter finished at {counter}s");
    // Backpressure holds the source back: it leads the counter by at most what the credited
    // buffers, the output queue and the buffer being built hold, at 1 ms per record.
    let lead_max = in_flight_records_max(&input) as f64 / 1_000.0;
    assert!(
        source >= counter - lead_max,
        "source finished at {source}s, counter at {counter}s: more than {lead_max}s of records \
         in flight, no backpressure"
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
