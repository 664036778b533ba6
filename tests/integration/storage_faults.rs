//! Goal: checkpoint storage that fails is never trusted silently. Writes that fail decline
//! their checkpoint, which counts toward `tolerable-failed-checkpoints`; a crash loses or
//! tears writes not yet synced, and with `fsync` no completed checkpoint ever counted on one;
//! without it, the checksums catch the torn files, recovery falls back checkpoint by
//! checkpoint, and the committed output is wrong (the run shows why storage must be durable).
//! Method: run the `blobstore-*` scenarios and read their reports and traces.

use crate::common;
use snapflow::ids::CheckpointId;
use snapflow::runtime::hooks::EngineEvent;
use snapflow::sim::run_scenario;

/// A blobstore outage expires the checkpoints it catches, failing writes decline them with the
/// error named; either way the tolerance decides whether the job fails over, and every run
/// stays exactly-once.
#[test]
fn lost_checkpoints_are_named_and_the_tolerance_decides_the_failover() {
    for (file, restarts, named) in [
        (
            "scenarios/blobstore-outage-tolerant.toml",
            0,
            "after its trigger: Expired",
        ),
        (
            "scenarios/blobstore-outage-intolerant.toml",
            1,
            "after its trigger: Expired",
        ),
        (
            "scenarios/blobstore-write-failures-tolerant.toml",
            0,
            "write failed: I/O error",
        ),
        (
            "scenarios/blobstore-write-failures-intolerant.toml",
            2,
            "write failed: I/O error",
        ),
    ] {
        let scenario = common::load(file);
        let run = run_scenario(&scenario, scenario.seed, file);
        assert!(run.verdict.passed(), "{}", run.report);
        assert_eq!(run.faulty.restarts, restarts, "{file}\n{}", run.report);
        assert!(
            run.report.contains(named),
            "{file}: each checkpoint not completed, with its fate:\n{}",
            run.report
        );
    }
}

#[test]
fn with_fsync_a_crash_mid_sync_costs_a_retry_and_the_checkpoint_restores_whole() {
    let file = "scenarios/blobstore-crash-mid-sync.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    let trace = run.faulty.trace.join("\n");
    assert!(
        trace.contains("blobstore crash tore unsynced chk-5/"),
        "{trace}"
    );
    assert!(
        trace.contains("blobstore crash lost unsynced chk-5/"),
        "{trace}"
    );
    assert!(run.faulty.events.iter().any(|r| matches!(
        r.event,
        EngineEvent::Deploying {
            restore: Some(CheckpointId(5)),
            ..
        }
    )));
    assert!(!run
        .faulty
        .events
        .iter()
        .any(|r| matches!(r.event, EngineEvent::CheckpointUnusable { .. })));
}

#[test]
fn without_fsync_a_crash_takes_completed_checkpoints_and_exactly_once_breaks() {
    let file = "scenarios/blobstore-no-fsync-crash.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(!run.verdict.passed(), "expected to fail:\n{}", run.report);
    let unusable: Vec<CheckpointId> = run
        .faulty
        .events
        .iter()
        .filter_map(|r| match &r.event {
            EngineEvent::CheckpointUnusable { checkpoint_id, .. } => Some(*checkpoint_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        unusable,
        vec![
            CheckpointId(10),
            CheckpointId(9),
            CheckpointId(8),
            CheckpointId(7)
        ],
        "{}",
        run.report
    );
    // Each refusal names its file and why: a lost file is missing; a torn one fails its
    // checksum, or is shorter than the header (which one depends on where the tear fell).
    let reasons: Vec<&str> = run
        .faulty
        .events
        .iter()
        .filter_map(|r| match &r.event {
            EngineEvent::CheckpointUnusable { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    let lost = |reason: &&str| reason.contains("missing from checkpoint storage");
    let torn =
        |reason: &&str| reason.contains("checksum mismatch") || reason.contains("truncated: ");
    assert!(
        reasons.iter().all(|r| lost(r) || torn(r))
            && reasons.iter().any(lost)
            && reasons.iter().any(torn),
        "{reasons:#?}"
    );
    let output = run
        .verdict
        .checks
        .iter()
        .find(|c| c.name.starts_with("the reader (read_committed)"))
        .expect("the sink row");
    assert!(!output.passed, "{output:?}");
}
