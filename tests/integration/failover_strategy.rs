//! Goal: `jobmanager.execution.failover-strategy = "region"` restarts only the pipelined
//! region of a failed task: on the forward job (four pipelines that exchange no data) two
//! overlapping failures restart their regions each on its own delay, a lost task manager its
//! one, and the pipeline nobody touched runs in its first attempt from start to end, while
//! `"full"` restarts every task each time; exactly-once holds for both.
//! Method: run `scenarios/failover-region.toml` and `failover-full.toml` (the same plan) and
//! read the engine's failover, deployment and task-finished events.

use crate::common;
use snapflow::ids::{AttemptNumber, SubtaskId, VertexId};
use snapflow::runtime::hooks::EngineEvent;
use snapflow::sim::{run_scenario, ScenarioRun};
use std::collections::BTreeMap;

fn pipeline(index: u32) -> SubtaskId {
    SubtaskId {
        vertex_id: VertexId(0),
        subtask_index: index,
    }
}

fn run(file: &str) -> ScenarioRun {
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);
    run
}

/// The region each failover restarted (`None`: the job) and the tasks each redeployment
/// deployed, in order.
type Failovers = (Vec<Option<Vec<SubtaskId>>>, Vec<Option<Vec<SubtaskId>>>);

fn failovers(run: &ScenarioRun) -> Failovers {
    let mut failed = Vec::new();
    let mut deployed = Vec::new();
    for recorded in &run.faulty.events {
        match &recorded.event {
            EngineEvent::FailingOver { region, .. } => failed.push(region.clone()),
            EngineEvent::Deploying {
                attempt, region, ..
            } if *attempt > AttemptNumber(1) => deployed.push(region.clone()),
            _ => {}
        }
    }
    (failed, deployed)
}

fn finished_in(run: &ScenarioRun) -> BTreeMap<SubtaskId, AttemptNumber> {
    run.faulty
        .events
        .iter()
        .filter_map(|recorded| match &recorded.event {
            EngineEvent::TaskFinished {
                subtask, attempt, ..
            } => Some((*subtask, *attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn region_failover_restarts_only_the_failed_pipelines_and_full_restarts_all() {
    let region = run("scenarios/failover-region.toml");
    let restarted = vec![
        Some(vec![pipeline(1)]),
        Some(vec![pipeline(0)]),
        Some(vec![pipeline(2)]),
    ];
    assert_eq!(
        failovers(&region),
        (restarted.clone(), restarted),
        "{}",
        region.report
    );
    assert_eq!(
        finished_in(&region),
        BTreeMap::from([
            (pipeline(0), AttemptNumber(3)),
            (pipeline(1), AttemptNumber(2)),
            (pipeline(2), AttemptNumber(4)),
            (pipeline(3), AttemptNumber(1)),
        ]),
        "pipeline 3 never stopped\n{}",
        region.report
    );
    assert!(region
        .report
        .contains("region failover restarted only v0#1"));

    let full = run("scenarios/failover-full.toml");
    assert_eq!(failovers(&full), (vec![None; 3], vec![None; 3]));
    assert!(finished_in(&full).values().all(|a| *a == AttemptNumber(4)));
    // Replaying the failed pipelines instead of all four appends fewer aborted records.
    assert!(region.faulty.output.appended() < full.faulty.output.appended());
}
