//! Goal: a job manager killed with high availability on is succeeded by a leader of a newer
//! term that recovers the job from the newest retained checkpoint (read back from its
//! `_metadata`), with attempt numbers and checkpoint ids of its own term, and exactly-once
//! holds; without high availability the job is lost and the run says so.
//! Method: run `scenarios/jobmanager-kill-ha.toml` and `-no-ha.toml` and read the engine's
//! events; run the no-HA file again expecting it to pass, which must fail naming the loss.

use crate::common;
use snapflow::ids::{AttemptNumber, CheckpointId};
use snapflow::runtime::hooks::EngineEvent;
use snapflow::runtime::leadership::LeaderTerm;
use snapflow::scenario::Expectation;
use snapflow::sim::run_scenario;
use snapflow::time::Instant;

#[test]
fn each_new_leader_recovers_the_newest_completed_checkpoint_in_a_term_of_its_own() {
    let file = "scenarios/jobmanager-kill-ha.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    let mut newest_completed: Option<CheckpointId> = None;
    let mut term = LeaderTerm::FIRST;
    let mut recoveries = Vec::new();
    for recorded in &run.faulty.events {
        match &recorded.event {
            EngineEvent::LeaderElected { term: elected } => {
                assert!(*elected > term || *elected == LeaderTerm::FIRST);
                term = *elected;
            }
            EngineEvent::JobRecovered {
                term: recovering,
                checkpoint_id,
                ..
            } => {
                assert_eq!(*recovering, term);
                assert_eq!(
                    *checkpoint_id, newest_completed,
                    "{term} restores the newest completed checkpoint\n{}",
                    run.report
                );
                recoveries.push(*checkpoint_id);
            }
            EngineEvent::CheckpointCompleted { checkpoint } => {
                let id = checkpoint.checkpoint_id;
                assert!(id >= term.first_checkpoint_id() && id <= term.last_checkpoint_id());
                newest_completed = Some(id);
            }
            EngineEvent::Deploying { attempt, .. } => {
                assert!(*attempt >= term.first_attempt() && *attempt <= term.last_attempt());
                assert_eq!(LeaderTerm::of_attempt(*attempt), term);
            }
            _ => {}
        }
    }
    assert_eq!(
        recoveries,
        vec![Some(CheckpointId(4)), Some(CheckpointId(1_000_005))],
        "{}",
        run.report
    );
    assert_eq!(term, LeaderTerm(3));
    assert!(run.faulty.events.iter().any(|r| matches!(
        r.event,
        EngineEvent::Deploying {
            attempt: AttemptNumber(2001),
            ..
        }
    )));
    assert!(run.report.contains("job managers: 3 leader(s) elected"));
    assert_eq!(
        run.faulty.checkpoint_files,
        Vec::<String>::new(),
        "no file outlives the job"
    );
}

#[test]
fn without_high_availability_the_job_is_lost_and_a_run_expecting_it_to_pass_fails() {
    let file = "scenarios/jobmanager-kill-no-ha.toml";
    let mut scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(run.faulty.outcome.is_none(), "{}", run.report);
    assert!(run.report.contains("knew no job"), "{}", run.report);
    scenario.expect = Expectation::Pass;
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(!run.verdict.passed(), "{}", run.report);
    let finished = run
        .verdict
        .checks
        .iter()
        .find(|c| c.name == "job finished")
        .expect("the row");
    assert!(
        !finished.passed && finished.detail.contains("the job was lost"),
        "{finished:?}"
    );
}

/// A paused job manager resumes as the same instance: it gives up the task managers it could
/// not hear, fails over once, and the job restores the newest checkpoint.
#[test]
fn a_paused_job_manager_fails_the_job_over_once_on_resume() {
    let file = "scenarios/pause-jobmanager.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert_eq!(run.faulty.restarts, 1, "{}", run.report);
    let lost_jobmanager = run
        .faulty
        .events
        .iter()
        .filter(|r| matches!(r.event, EngineEvent::JobManagerLost { .. }))
        .count();
    assert_eq!(lost_jobmanager, 2, "both task managers gave it up");
    assert!(run.faulty.events.iter().any(|r| matches!(
        r.event,
        EngineEvent::Deploying {
            restore: Some(CheckpointId(4)),
            ..
        }
    )));
}

#[test]
fn a_standby_takes_over_once_the_paused_leaders_lease_lapsed_and_the_old_leader_is_fenced() {
    let file = "scenarios/standby-takeover.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    let (paused_at, resumed_at) = (Instant::from_ms(1_500), Instant::from_ms(4_500));
    let at = |node: &str, wanted: fn(&EngineEvent) -> bool| -> Vec<Instant> {
        run.faulty
            .events
            .iter()
            .filter(|r| r.node == node && wanted(&r.event))
            .map(|r| r.at)
            .collect()
    };
    let standby_elected = at("jobmanager-2", |e| {
        matches!(
            e,
            EngineEvent::LeaderElected {
                term: LeaderTerm(2)
            }
        )
    });
    assert_eq!(standby_elected.len(), 1, "{}", run.report);
    // Not while the leader renewed its lease: only once it stood still past it.
    assert!(
        standby_elected[0] > paused_at && standby_elected[0] < resumed_at,
        "{}",
        run.report
    );
    assert_eq!(
        at("jobmanager-2", |e| matches!(
            e,
            EngineEvent::StandingBy { .. }
        ))
        .len(),
        1
    );
    let fenced: Vec<_> = run
        .faulty
        .events
        .iter()
        .filter_map(|r| match &r.event {
            EngineEvent::StaleLeaderFenced { term, current } => Some((r.at, *term, *current)),
            _ => None,
        })
        .collect();
    assert!(
        !fenced.is_empty(),
        "the resumed leader's commands are refused"
    );
    assert!(fenced
        .iter()
        .all(|(when, term, current)| *when >= resumed_at
            && *term == LeaderTerm(1)
            && *current == LeaderTerm(2)));
    let deposed = at("jobmanager", |e| {
        matches!(e, EngineEvent::LeadershipLost { .. })
    });
    assert_eq!(deposed.len(), 1);
    // The old leader completes nothing once the standby took over.
    assert!(run.faulty.events.iter().all(|r| !(r.node == "jobmanager"
        && r.at > standby_elected[0]
        && matches!(r.event, EngineEvent::CheckpointCompleted { .. }))));
    assert!(run.report.contains("jobmanager-2: elected leader, term 2"));
}
