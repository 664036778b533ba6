//! Goal: savepoints and staged runs behave as Flink documents them. A stop-with-savepoint
//! ends the job and the next stage resumes from it with another parallelism or another
//! version of the job, state matched by operator uid; state no operator claims fails the
//! resubmission naming the uid, unless it may be dropped; the max parallelism cannot change;
//! a plain savepoint commits nothing and no failover restores it; savepoints outlive the jobs.
//! Method: run the savepoint scenarios, and variants of them built in code; read the engine's
//! events, the verdict and the files left in storage.

use crate::common;
use snapflow::checkpoint::barrier::SavepointFormat;
use snapflow::ids::CheckpointId;
use snapflow::runtime::hooks::{EngineEvent, SinkAction};
use snapflow::scenario::faults::FaultAction;
use snapflow::sim::{run_scenario, ScenarioRun};

fn run(file: &str, change: impl FnOnce(&mut snapflow::scenario::Scenario)) -> ScenarioRun {
    let mut scenario = common::load(file);
    change(&mut scenario);
    run_scenario(&scenario, scenario.seed, file)
}

fn savepoints_completed(run: &ScenarioRun) -> Vec<(CheckpointId, bool)> {
    run.faulty
        .events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            EngineEvent::SavepointCompleted { checkpoint, .. } => Some((
                checkpoint.checkpoint_id,
                checkpoint.savepoint.expect("a savepoint").terminate,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn removed_state_fails_the_resubmission_naming_the_uid_unless_it_may_be_dropped() {
    let file = "scenarios/savepoint-remove-operator.toml";
    let refused = run(file, |scenario| scenario.stages[0].ignore_unclaimed = false);
    let failure = refused.verdict.first_failure().expect("refused");
    assert!(
        failure
            .detail
            .contains("operator uid `counter` holds state in savepoint"),
        "{}",
        refused.report
    );
    let dropped = run(file, |_| {});
    assert!(dropped.verdict.passed(), "{}", dropped.report);
    assert!(
        dropped.report.contains("`counter`: its state is dropped"),
        "{}",
        dropped.report
    );
}

#[test]
fn the_max_parallelism_cannot_change_across_a_savepoint() {
    let refused = run("scenarios/savepoint-rescale-up.toml", |scenario| {
        scenario.stages[0].max_parallelism = Some(256)
    });
    let failure = refused.verdict.first_failure().expect("refused");
    assert!(
        failure.detail.contains(
            "operator `counter`: the restored state has max parallelism 128, the job 256"
        ),
        "{}",
        refused.report
    );
}

#[test]
fn a_rescaled_resume_redistributes_key_groups_partitions_and_transactions() {
    let file = "scenarios/savepoint-rescale-down.toml";
    let run = run(file, |_| {});
    assert!(run.verdict.passed(), "{}", run.report);
    for line in [
        "`source` 4 -> 1 subtask(s), offsets (union), partitions: #0 p0,p1,p2,p3",
        "`counter` 4 -> 1 subtask(s), key groups: #0 kg 0..=127",
        "`sink` 4 -> 1 subtask(s), transactions taken over: #0<-#0,#1,#2,#3",
    ] {
        assert!(run.report.contains(line), "{line}\n{}", run.report);
    }
    let up = self::run("scenarios/savepoint-rescale-up.toml", |_| {});
    assert!(up.verdict.passed(), "{}", up.report);
    assert!(
        up.report.contains(
            "`counter` 2 -> 4 subtask(s), key groups: #0 kg 0..=31; #1 kg 32..=63; #2 kg 64..=95; #3 kg 96..=127"
        ),
        "{}",
        up.report
    );
}

#[test]
fn a_plain_savepoint_commits_nothing_and_no_failover_restores_it() {
    let file = "scenarios/savepoint-then-failover.toml";
    let run = run(file, |_| {});
    assert!(run.verdict.passed(), "{}", run.report);
    let savepoints = savepoints_completed(&run);
    let [(savepoint, false)] = savepoints[..] else {
        panic!("one plain savepoint: {savepoints:?}\n{}", run.report);
    };
    let restored: Vec<CheckpointId> = run
        .faulty
        .events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            EngineEvent::Deploying {
                restore: Some(id), ..
            } => Some(*id),
            _ => None,
        })
        .collect();
    assert!(
        !restored.is_empty() && restored.iter().all(|id| *id < savepoint),
        "{restored:?} vs savepoint {savepoint}"
    );
    let committed_for_it = run.faulty.events.iter().any(|recorded| {
        matches!(&recorded.event, EngineEvent::Sink { action: SinkAction::Committed { checkpoint_id, .. }, .. } if *checkpoint_id == savepoint)
    });
    assert!(
        !committed_for_it,
        "the savepoint's completion committed\n{}",
        run.report
    );
    // The finished job deleted its checkpoints, never the user's savepoint.
    let files = &run.faulty.checkpoint_files;
    let metadata = format!("savepoints/savepoint-{}/_metadata", savepoint.0);
    assert!(files.contains(&metadata), "{files:?}");
    assert!(
        files.iter().all(|f| f.starts_with("savepoints/")),
        "{files:?}"
    );
}

#[test]
fn stop_with_savepoint_ends_the_stage_with_its_savepoint_in_either_format() {
    for format in [SavepointFormat::Canonical, SavepointFormat::Native] {
        let run = run("scenarios/savepoint-rescale-up.toml", |scenario| {
            for fault in &mut scenario.faults.faults {
                if let FaultAction::StopWithSavepoint { format: f, .. } = &mut fault.action {
                    *f = format;
                }
            }
        });
        assert!(run.verdict.passed(), "{format:?}\n{}", run.report);
        let savepoints = savepoints_completed(&run);
        assert!(
            matches!(savepoints[..], [(_, true)]),
            "{format:?}: {savepoints:?}"
        );
        assert!(
            run.report
                .contains(&format!("from {} savepoint", format.name())),
            "{}",
            run.report
        );
    }
}

#[test]
fn without_uids_a_changed_topology_does_not_map_and_the_report_warns() {
    let file = "scenarios/savepoint-generated-uids.toml";
    let run = run(file, |_| {});
    assert!(
        run.report.contains("without an explicit uid"),
        "{}",
        run.report
    );
    let failure = run.verdict.first_failure().expect("refused");
    assert!(
        failure.detail.contains("holds state in savepoint")
            && failure.detail.contains("ignore-unclaimed-state"),
        "{}",
        run.report
    );
    // Without uids but with only the parallelism changed, the generated uids still match.
    let rescaled = self::run("scenarios/savepoint-rescale-up.toml", |scenario| {
        scenario.generated_uids = true;
        scenario.stages[0].faults.faults.clear();
        scenario
            .faults
            .faults
            .retain(|f| matches!(f.action, FaultAction::StopWithSavepoint { .. }));
    });
    assert!(rescaled.verdict.passed(), "{}", rescaled.report);
}

#[test]
fn in_flight_data_of_an_unaligned_checkpoint_is_not_redistributed() {
    let refused = run(
        "scenarios/resume-from-retained-checkpoint.toml",
        |scenario| {
            scenario.checkpoint.unaligned = true;
            // Backpressure before the cancel: the retained checkpoint holds in-flight data.
            scenario.faults.faults.insert(
                0,
                snapflow::scenario::faults::Fault {
                    action: FaultAction::SlowOperator {
                        uid: "counter".into(),
                        per_record: snapflow::time::Duration::from_ms(2),
                        duration: None,
                    },
                    trigger: snapflow::scenario::faults::FaultTrigger::At(
                        snapflow::time::Instant::from_ms(500),
                    ),
                },
            );
        },
    );
    let failure = refused.verdict.first_failure().expect("refused");
    assert!(
        failure.detail.contains("holds in-flight data of an unaligned checkpoint for the chain `counter -> sink` (2 subtask(s))")
            && failure.detail.contains("snapflow does not redistribute channel state"),
        "{}",
        refused.report
    );
}
