//! Goal: under backpressure an unaligned checkpoint does not wait for the queued data in front
//! of its barrier, and aligned-with-timeout switches to unaligned at its deadline.
//! Method: run the pair `backpressure-aligned.toml` / `backpressure-unaligned.toml` (the same
//! job, input and slow sink; only the mode differs) and `backpressure-aligned-timeout.toml`,
//! and compare checkpoint durations from the completed checkpoints' metadata (simulated time
//! is deterministic, so the figures are exact); `backpressure-input-backlog-timeout.toml` puts
//! the backlog in the input channel, where only barrier announcements start the timer.

use crate::common;

use snapflow::sim::cluster::simulate;
use snapflow::sim::observer::ObservedCheckpoint;
use snapflow::time::Duration;

struct Figures {
    durations: Vec<Duration>,
    in_flight_bytes: Vec<u64>,
    unaligned: Vec<bool>,
}

fn run(file: &str) -> Figures {
    let scenario = common::load(file);
    let input = scenario.workload.generate();
    let run = simulate(&scenario, &input, scenario.seed, true);
    assert!(run.checkpoints.len() >= 2, "{file}: checkpoints completed");
    let of = |f: &dyn Fn(&ObservedCheckpoint) -> _| run.checkpoints.iter().map(f).collect();
    Figures {
        durations: of(&|c| c.checkpoint.acked_at.since(c.checkpoint.created_at)),
        in_flight_bytes: run
            .checkpoints
            .iter()
            .map(|c| c.checkpoint.in_flight_bytes())
            .collect(),
        unaligned: run
            .checkpoints
            .iter()
            .map(|c| c.checkpoint.unaligned())
            .collect(),
    }
}

fn mean_ms(durations: &[Duration]) -> f64 {
    durations.iter().map(|d| d.0 as f64 / 1e6).sum::<f64>() / durations.len() as f64
}

#[test]
fn unaligned_checkpoints_complete_fifty_times_faster_than_aligned_under_backpressure() {
    let aligned = run("scenarios/backpressure-aligned.toml");
    let unaligned = run("scenarios/backpressure-unaligned.toml");
    let ratio = mean_ms(&aligned.durations) / mean_ms(&unaligned.durations);
    eprintln!(
        "aligned {:?} / unaligned {:?}: mean ratio {ratio:.1}; in-flight bytes {:?}",
        aligned.durations, unaligned.durations, unaligned.in_flight_bytes
    );
    assert!(ratio >= 50.0, "unaligned only {ratio:.1}x faster");
    let slowest_unaligned = unaligned.durations.iter().max().expect("some");
    let fastest_aligned = aligned.durations.iter().min().expect("some");
    assert!(
        slowest_unaligned.mul(20) < *fastest_aligned,
        "slowest unaligned {slowest_unaligned} vs fastest aligned {fastest_aligned}"
    );
    assert!(
        aligned.unaligned.iter().all(|u| !u) && aligned.in_flight_bytes.iter().all(|b| *b == 0)
    );
    assert!(
        unaligned.unaligned.iter().all(|u| *u) && unaligned.in_flight_bytes.iter().all(|b| *b > 0),
        "every unaligned checkpoint persisted the data its barriers overtook"
    );
}

#[test]
fn aligned_with_timeout_switches_to_unaligned_at_its_deadline() {
    let timeout = Duration::from_ms(300);
    let switched = run("scenarios/backpressure-aligned-timeout.toml");
    let aligned = run("scenarios/backpressure-aligned.toml");
    let fastest_aligned = *aligned.durations.iter().min().expect("some");
    for ((duration, unaligned), bytes) in switched
        .durations
        .iter()
        .zip(&switched.unaligned)
        .zip(&switched.in_flight_bytes)
    {
        assert!(*unaligned && *bytes > 0, "the checkpoint switched");
        assert!(
            *duration >= timeout && duration.0 < timeout.0 + fastest_aligned.0 / 4,
            "switched checkpoint took {duration}: not bounded by the {timeout} timeout (aligned: {fastest_aligned})"
        );
    }
}

/// Barrier announcements: the barrier waits in the sink's input channel, not in the producer's
/// output queue, behind about a second of records. Announced on arrival, the checkpoint times
/// out at its deadline and completes within the timeout plus a round trip and the upload;
/// before announcements, checkpoint 1 waited for the backlog (1,347 ms).
#[test]
fn a_barrier_queued_behind_an_input_backlog_times_out_at_its_deadline() {
    let timeout = Duration::from_ms(300);
    let round_trip_and_upload = Duration::from_ms(100);
    let figures = run("scenarios/backpressure-input-backlog-timeout.toml");
    eprintln!("durations {:?}", figures.durations);
    assert!(
        figures.durations.len() >= 10,
        "every interval's checkpoint completed"
    );
    for (duration, unaligned) in figures.durations.iter().zip(&figures.unaligned) {
        assert!(*unaligned, "the checkpoint switched");
        assert!(
            *duration >= timeout && duration.0 <= timeout.0 + round_trip_and_upload.0,
            "checkpoint took {duration}, more than the {timeout} timeout plus {round_trip_and_upload}"
        );
    }
}
