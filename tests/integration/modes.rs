//! Goal: the checkpointing mode changes what survives a failure, as in Flink. Under
//! at-least-once a snapshot may hold records that came after its barrier on a faster channel,
//! so after a restore they are counted twice; under exactly-once (aligned) the same plan leaves
//! keyed state equal to the oracle's.
//! Under at-most-once nothing is checkpointed: what was in flight at a failure is lost, and
//! nothing is written twice.
//! Method: run `scenarios/at-least-once-kills.toml` (a clogged channel skews barrier arrival,
//! then a task manager dies), then the same file with `mode = "EXACTLY_ONCE"`; run
//! `scenarios/at-most-once-kills.toml`.

use crate::common;

use snapflow::scenario::Scenario;
use snapflow::sim::checker::Guarantee;
use snapflow::sim::run_scenario;

#[test]
fn at_least_once_loses_nothing_but_may_count_twice_where_exactly_once_does_not() {
    let file = "scenarios/at-least-once-kills.toml";
    let text = std::fs::read_to_string(common::root().join(file)).expect("readable");
    let at_least_once = Scenario::parse(file, &text).unwrap();
    let run = run_scenario(&at_least_once, at_least_once.seed, file);
    assert_eq!(run.verdict.guarantee, Guarantee::AtLeastOnce);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(
        !run.verdict
            .checks
            .iter()
            .any(|c| c.name.contains("consistent cut")),
        "no cut check under at-least-once"
    );
    let note = run
        .verdict
        .notes
        .first()
        .expect("the state difference is noted");
    assert!(
        !note.starts_with("final keyed state differs from the oracle's on 0 "),
        "the skewed barriers should double-count: {note}"
    );
    assert!(
        run.report.contains("record(s) the oracle never produced"),
        "{}",
        run.report
    );

    let exactly_once_text = text.replace("mode = \"AT_LEAST_ONCE\"", "mode = \"EXACTLY_ONCE\"");
    let exactly_once = Scenario::parse(file, &exactly_once_text).unwrap();
    let run = run_scenario(&exactly_once, exactly_once.seed, file);
    assert_eq!(run.verdict.guarantee, Guarantee::ExactlyOnce);
    assert!(
        run.verdict.passed(),
        "the same plan under exactly-once keeps state exact:\n{}",
        run.report
    );
}

#[test]
fn at_most_once_writes_nothing_twice_and_counts_what_it_lost() {
    let file = "scenarios/at-most-once-kills.toml";
    let scenario = common::load(file);
    let run = run_scenario(&scenario, scenario.seed, file);
    assert_eq!(run.verdict.guarantee, Guarantee::AtMostOnce);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(
        run.faulty.checkpoints.is_empty(),
        "at-most-once takes no checkpoints"
    );
    assert!(run.faulty.restarts > 0, "the plan fails the job over");
    let sink = run.verdict.checks.last().expect("the sink check");
    let lost = run.faulty.sink_output.len() < 12_000;
    assert!(
        lost && sink.detail.contains("none twice"),
        "records in flight at a failure are lost: {}",
        sink.detail
    );
}
