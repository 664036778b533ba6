//! Goal: a job cancelled with RETAIN_ON_CANCELLATION can be submitted again from a retained
//! checkpoint (`flink run -s <dir>/chk-N/_metadata`, the scenario's
//! `execution.state-recovery.path` or `snapflow run --restore`): the new job reads the
//! checkpoint's `_metadata`, restores it without claiming it (its files outlive the new job),
//! numbers its attempts and checkpoints in a block of its own, and the committed output is
//! exact across both jobs when the checkpoint is the newest; an older one repeats output and
//! the checker says so; a checkpoint that is not retained fails the new job by name.
//! Method: run `scenarios/restore-retained-checkpoint.toml`, `restore-older-checkpoint.toml`
//! and the first with other paths; read the engine's events and the files left in storage.

use crate::common;
use snapflow::ids::{AttemptNumber, CheckpointId};
use snapflow::runtime::hooks::EngineEvent;
use snapflow::sim::{run_scenario, ScenarioRun};

const FILE: &str = "scenarios/restore-retained-checkpoint.toml";

fn restored(run: &ScenarioRun) -> Vec<(CheckpointId, String)> {
    run.faulty
        .events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            EngineEvent::JobRestoredFromCheckpoint {
                checkpoint_id,
                path,
                ..
            } => Some((*checkpoint_id, path.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_resubmitted_job_restores_the_newest_retained_checkpoint_exactly_once_without_claiming_it() {
    let scenario = common::load(FILE);
    let run = run_scenario(&scenario, scenario.seed, FILE);
    assert!(run.verdict.passed(), "{}", run.report);
    assert_eq!(
        restored(&run),
        vec![(CheckpointId(9), "chk-9/_metadata".to_string())]
    );
    let new_job_deploys: Vec<_> = run
        .faulty
        .events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            EngineEvent::Deploying {
                attempt, restore, ..
            } if *attempt > AttemptNumber(1000) => Some((*attempt, *restore)),
            _ => None,
        })
        .collect();
    assert_eq!(
        new_job_deploys,
        vec![(AttemptNumber(1001), Some(CheckpointId(9)))]
    );
    // The cancelled job's retained checkpoints stay whole; the finished new job deleted its own.
    let directories: std::collections::BTreeSet<&str> = run
        .faulty
        .checkpoint_files
        .iter()
        .map(|path| path.split('/').next().expect("a path"))
        .collect();
    assert_eq!(
        directories.into_iter().collect::<Vec<_>>(),
        vec!["chk-7", "chk-8", "chk-9"],
        "{:?}",
        run.faulty.checkpoint_files
    );
}

#[test]
fn an_older_checkpoint_repeats_committed_output_and_a_missing_one_fails_by_name() {
    let older = "scenarios/restore-older-checkpoint.toml";
    let scenario = common::load(older);
    let run = run_scenario(&scenario, scenario.seed, older);
    assert!(!run.verdict.passed(), "{}", run.report);
    // What checkpoints 8 and 9 committed (the input read after 7, up to 9) is committed again.
    let repeated =
        common::records_read_at(&run.faulty, 9) - common::records_read_at(&run.faulty, 7);
    let committed = scenario.workload.record_count() + repeated;
    assert!(
        run.report
            .contains(&format!("{committed} records committed")),
        "{committed} records committed\n{}",
        run.report
    );

    let mut missing = common::load(FILE);
    missing
        .restore_from("flink/ckpts/chk-11/_metadata")
        .expect("valid path");
    let run = run_scenario(&missing, missing.seed, FILE);
    assert!(!run.verdict.passed());
    assert!(
        run.report
            .contains("cannot restore from chk-11/_metadata; chk-11/_metadata: missing"),
        "{}",
        run.report
    );
}

#[test]
fn a_restore_names_what_it_needs() {
    let mut scenario = common::load(FILE);
    let bad = scenario
        .restore_from("savepoint-1")
        .expect_err("no checkpoint");
    assert!(bad.contains("`savepoint-1` names no checkpoint"), "{bad}");
    scenario.faults.faults.pop(); // The cancel.
    let uncancelled = scenario.restore_from("chk-9").expect_err("never cancelled");
    assert!(
        uncancelled.contains("RETAIN_ON_CANCELLATION"),
        "{uncancelled}"
    );
    let text = std::fs::read_to_string(common::root().join(FILE)).expect("readable");
    let with_ha = text.replace(
        "[sink]",
        "[high-availability]\ntype = \"zookeeper\"\n\n[sink]",
    );
    let error = snapflow::scenario::Scenario::parse("ha.toml", &with_ha)
        .expect_err("not built")
        .to_string();
    assert!(
        error.contains("execution.state-recovery.path") && error.contains("high availability"),
        "{error}"
    );
}
