//! Goal: the seeds' own example behaves exactly as told. One partition holds
//! `hello world hello flink hello`; checkpoint 1 is taken after offset 3 and holds hello→2,
//! world→1; the task manager dies while the fifth record is processed; recovery restores
//! checkpoint 1, replays records 4 and 5, and ends with hello→3, world→1, flink→1.
//! Method: run the scenario, assert each step on the collected run, pin report and trace.

use crate::common;

use snapflow::ids::{AttemptNumber, CheckpointId};
use snapflow::runtime::hooks::{EngineEvent, JobOutcome};
use snapflow::sim::run_scenario;
use snapflow::state::snapshot::{OperatorSnapshot, StateEntry};
use std::collections::BTreeMap;

fn count(entry: &StateEntry) -> i64 {
    match entry {
        StateEntry::Value(bytes) => postcard::from_bytes(bytes).expect("a count"),
        other => panic!("count is value state, got {other:?}"),
    }
}

#[test]
fn wordcount_crash_recovers_from_checkpoint_one() {
    let file = "scenarios/wordcount-crash.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert!(run.verdict.passed(), "{}", run.report);

    let first = run
        .faulty
        .checkpoints
        .first()
        .expect("checkpoint 1 completed");
    assert_eq!(first.checkpoint.checkpoint_id.0, 1);
    let mut offsets = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for state in first.task_states().values() {
        for operator in state.as_ref().expect("decodes").operators.values() {
            match operator {
                OperatorSnapshot::Source(source) => offsets.extend(source.next_offsets.clone()),
                OperatorSnapshot::Keyed(keyed) => {
                    let mut view = BTreeMap::new();
                    keyed.merge_into(&mut view);
                    for (word, states) in view {
                        counts.insert(word.to_string(), count(&states["count"]));
                    }
                }
                OperatorSnapshot::Sink(_) => panic!("the plain sink keeps no state"),
                OperatorSnapshot::Operator(_) => panic!("the word count has no operator state"),
            }
        }
    }
    assert_eq!(
        offsets,
        BTreeMap::from([(0, 3)]),
        "checkpoint 1 is taken after offset 3"
    );
    assert_eq!(
        counts,
        BTreeMap::from([("hello".to_string(), 2), ("world".to_string(), 1)])
    );

    assert_eq!(run.faulty.restarts, 1);
    let kill = run.faulty.faults_fired[1].expect("the kill fired");
    let restore = run
        .faulty
        .events
        .iter()
        .find(|recorded| {
            matches!(
                recorded.event,
                EngineEvent::TaskRunning {
                    attempt: AttemptNumber(2),
                    restored: Some(CheckpointId(1)),
                    ..
                }
            )
        })
        .expect("restored from checkpoint 1");
    assert!(kill < restore.at);
    assert!(
        run.faulty.events.iter().any(|recorded| matches!(
            recorded.event,
            EngineEvent::TaskFinished {
                records_in: 2,
                attempt: AttemptNumber(2),
                ..
            }
        )),
        "records 4 and 5 are replayed"
    );

    let final_counts: BTreeMap<String, i64> = run.faulty.final_state["counter"]
        .iter()
        .map(|(word, states)| (word.to_string(), count(&states["count"])))
        .collect();
    let expected = BTreeMap::from([
        ("hello".to_string(), 3),
        ("world".to_string(), 1),
        ("flink".to_string(), 1),
    ]);
    assert_eq!(final_counts, expected);
    assert!(matches!(
        run.faulty.outcome,
        Some((_, JobOutcome::Finished))
    ));

    insta::assert_snapshot!("wordcount_crash_report", run.report);
    insta::assert_snapshot!("wordcount_crash_trace", run.faulty.trace.join("\n"));
}
