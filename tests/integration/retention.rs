//! Goal: `num-retained` N leaves checkpoint storage holding exactly the files of the N newest
//! completed checkpoints: subsumed checkpoints are deleted, aborted ones too, and so are files
//! written late for an aborted checkpoint. When the job ends, the retained checkpoints go or
//! stay as `externalized-checkpoint-retention` says: a finished job keeps none, a cancelled
//! one keeps them only with RETAIN_ON_CANCELLATION.
//! Method: run `scenarios/retention-long-run.toml` (about 80 checkpoints, num-retained 3, a
//! task-manager kill and a user-code failure, then a cancel with RETAIN_ON_CANCELLATION) and
//! list the blobstore at the end; again with DELETE_ON_CANCELLATION; and a finished job.

use crate::common;
use snapflow::checkpoint::coordinator::ExternalizedCheckpointRetention;
use snapflow::sim::run_scenario;
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn storage_holds_exactly_the_retained_checkpoints_after_a_long_run() {
    let file = "scenarios/retention-long-run.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(
        run.report.contains("the job was cancelled: cancelled at"),
        "{}",
        run.report
    );
    let completed: Vec<u64> = run
        .faulty
        .checkpoints
        .iter()
        .map(|c| c.checkpoint.checkpoint_id.0)
        .collect();
    assert!(
        completed.len() > 50,
        "a long run: {} checkpoints",
        completed.len()
    );
    assert!(run.faulty.restarts >= 2, "{}", run.report);
    let newest: BTreeSet<u64> = completed.iter().rev().take(3).copied().collect();
    let mut files: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for path in &run.faulty.checkpoint_files {
        let (directory, name) = path.split_once('/').expect("chk-<n>/<file>");
        let id: u64 = directory
            .strip_prefix("chk-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a checkpoint file: {path}"));
        files.entry(id).or_default().push(name.to_string());
    }
    assert_eq!(
        files.keys().copied().collect::<BTreeSet<u64>>(),
        newest,
        "checkpoint storage holds {:?}",
        files.keys().collect::<Vec<_>>()
    );
    let subtasks = scenario
        .graph()
        .vertices
        .iter()
        .map(|v| v.parallelism as usize)
        .sum::<usize>();
    for (id, names) in &files {
        assert!(
            names.contains(&"_metadata".to_string()),
            "chk-{id}: {names:?}"
        );
        assert_eq!(
            names.len(),
            subtasks + 1,
            "chk-{id}: one state file per subtask: {names:?}"
        );
    }
}

#[test]
fn a_finished_job_and_a_job_cancelled_with_delete_on_cancellation_leave_no_checkpoint() {
    let file = "scenarios/retention-long-run.toml";
    let mut scenario = common::load(file);
    scenario.checkpoint.retention = ExternalizedCheckpointRetention::DeleteOnCancellation;
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert_eq!(run.faulty.checkpoint_files, Vec::<String>::new());
    let file = "scenarios/e2e-2pc.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(!run.faulty.checkpoints.is_empty());
    assert_eq!(run.faulty.checkpoint_files, Vec::<String>::new());
}
