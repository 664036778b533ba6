//! Goal: the checkpoint storage choice behaves as Flink's three setups do. Filesystem storage
//! under `dir` writes there, and state below `data-inline-threshold` travels inline in
//! `_metadata` (no state file) yet restores; jobmanager storage writes no file, declines a
//! snapshot over `max-state-size` with the size and the limit named, and loses every
//! checkpoint with the job manager, which a run with high availability shows as a restart
//! from scratch and a wrong output.
//! Method: run the scenarios and inspect the blobstore's files, the acks and the report.

use crate::common;
use snapflow::checkpoint::coordinator::ExternalizedCheckpointRetention;
use snapflow::checkpoint::storage::StateHandle;
use snapflow::runtime::hooks::EngineEvent;
use snapflow::scenario::faults::{Fault, FaultAction, FaultTrigger};
use snapflow::scenario::Expectation;
use snapflow::sim::run_scenario;
use snapflow::time::Instant;

#[test]
fn inline_state_under_a_directory_leaves_one_metadata_file_per_checkpoint_and_restores() {
    let file = "scenarios/checkpoint-dir-inline-state.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(run.faulty.restarts >= 2, "{}", run.report);
    // A finished job keeps no checkpoint; cancelled with RETAIN_ON_CANCELLATION it keeps its
    // newest, whose files are then listed.
    assert!(run.faulty.checkpoint_files.is_empty());
    let mut scenario = scenario;
    scenario.checkpoint.retention = ExternalizedCheckpointRetention::RetainOnCancellation;
    scenario.expect = Expectation::Canceled;
    scenario.faults.faults.push(Fault {
        action: FaultAction::CancelJob,
        trigger: FaultTrigger::At(Instant::from_ms(4_000)),
    });
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(!run.faulty.checkpoint_files.is_empty());
    for path in &run.faulty.checkpoint_files {
        let name = path
            .strip_prefix("flink/checkpoints/wordcount/chk-")
            .unwrap_or_else(|| panic!("{path} is not under the directory"));
        assert!(name.ends_with("/_metadata"), "only metadata files: {path}");
    }
    for observed in &run.faulty.checkpoints {
        for ack in observed.checkpoint.acks.values() {
            assert!(matches!(ack.state, StateHandle::Inline { .. }), "{ack:?}");
        }
    }
}

#[test]
fn jobmanager_storage_declines_state_over_its_limit_naming_size_and_limit() {
    let file = "scenarios/jobmanager-storage-over-limit.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(run.faulty.checkpoints.is_empty(), "{}", run.report);
    assert!(run.faulty.checkpoint_files.is_empty());
    assert!(
        run.report.contains(
            "more than jobmanager checkpoint storage's max-state-size of 1024 bytes: use filesystem checkpoint storage"
        ),
        "{}",
        run.report
    );
}

#[test]
fn jobmanager_storage_loses_its_checkpoints_with_the_job_manager() {
    let file = "scenarios/jobmanager-storage-kill-ha.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(!run.verdict.passed(), "expected to fail:\n{}", run.report);
    assert!(run.faulty.checkpoint_files.is_empty());
    assert!(
        !run.faulty.checkpoints.is_empty(),
        "checkpoints did complete"
    );
    assert!(run.faulty.events.iter().any(|r| matches!(
        r.event,
        EngineEvent::JobRecovered {
            checkpoint_id: None,
            ..
        }
    )));
}
