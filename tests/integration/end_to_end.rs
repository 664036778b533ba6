//! Goal: each end-to-end scenario shows its lesson (DESIGN §8, §9), measured on what the sink
//! left in the broker and the key-value store, not only on the verdict:
//! - two-phase commit read committed is exact under kills between pre-commit and commit, a
//!   lost notice and a broker restart;
//! - the same run read uncommitted sees the records of aborted transactions;
//! - a broker that caps the sink's transaction timeout loses exactly the records of the
//!   pre-committed transactions it aborted, and the same faults lose nothing when the
//!   timeouts are set right;
//! - the write-ahead sink repeats exactly the batch caught between its write and its
//!   committer record, and a lost notice only delays a batch;
//! - the idempotent sink's values jump back after a recovery and end equal.
//!
//! Method: run each scenario file (with its oracle run) and inspect the run's sink output,
//! the engine's events, which faults fired, and the verdict.

use crate::common;

use snapflow::ids::CheckpointId;
use snapflow::runtime::hooks::{EngineEvent, SinkAction};
use snapflow::services::messages::IsolationLevel;
use snapflow::services::transaction_table::TransactionStatus;
use snapflow::sim::oracle::evaluate;
use snapflow::sim::sink_output::{deduplicate_batches, first_per_key_difference, jump_backs};
use snapflow::sim::{run_scenario, ScenarioRun};

fn run(file: &str) -> ScenarioRun {
    let scenario = common::load(file);
    run_scenario(&scenario, scenario.seed, file)
}

fn oracle_output(file: &str) -> snapflow::services::record_batch::RecordBatch {
    let scenario = common::load(file);
    evaluate(
        &scenario.job(),
        &scenario.workload.generate(),
        None,
        &Default::default(),
    )
    .expect("the reference evaluates")
    .sink
}

fn events(run: &ScenarioRun) -> impl Iterator<Item = &EngineEvent> {
    run.faulty.events.iter().map(|recorded| &recorded.event)
}

fn failed_detail(run: &ScenarioRun) -> String {
    run.verdict
        .first_failure()
        .map(|check| check.detail.clone())
        .unwrap_or_else(|| panic!("the run should fail:\n{}", run.report))
}

#[test]
fn two_phase_commit_read_committed_is_exact_under_every_fault() {
    let file = "scenarios/e2e-2pc.toml";
    let run = run(file);
    assert!(run.verdict.passed(), "{}", run.report);
    // Every fault landed: the kill between pre-commit and commit, the kill while a sink was
    // about to commit, the lost notice, the broker restart.
    assert!(
        run.faulty.faults_fired.iter().all(Option::is_some),
        "{}",
        run.report
    );
    assert!(events(&run).any(|e| matches!(e, EngineEvent::NoticeLost { .. })));
    assert!(run.faulty.restarts >= 2, "{}", run.report);
    let output = &run.faulty.output;
    let aborted = output.records_in(|s| matches!(s, TransactionStatus::Aborted { .. }));
    assert!(aborted > 0, "recoveries aborted the open transactions");
    assert_eq!(output.appended(), 12_000 + aborted);
    let committed = output.read(IsolationLevel::ReadCommitted);
    assert_eq!(
        first_per_key_difference(&oracle_output(file), &committed),
        None
    );
}

#[test]
fn read_uncommitted_sees_the_records_of_aborted_transactions() {
    let file = "scenarios/e2e-read-uncommitted.toml";
    let run = run(file);
    let detail = failed_detail(&run);
    let output = &run.faulty.output;
    let aborted = output.records_in(|s| matches!(s, TransactionStatus::Aborted { .. }));
    assert!(aborted > 0);
    assert!(
        detail.contains(&format!(
            "the reader (read_uncommitted) saw {aborted} record(s) of aborted transactions"
        )),
        "{detail}"
    );
    assert_eq!(run.faulty.sink_output.len(), 12_000 + aborted);
    // The same log read committed is exactly the oracle's output.
    let committed = output.read(IsolationLevel::ReadCommitted);
    assert_eq!(
        first_per_key_difference(&oracle_output(file), &committed),
        None
    );
}

#[test]
fn a_capped_transaction_timeout_loses_exactly_the_aborted_pre_committed_records() {
    let file = "scenarios/e2e-txn-timeout.toml";
    let run = run(file);
    let detail = failed_detail(&run);
    let expected = oracle_output(file).len();
    let read = run.faulty.sink_output.len();
    let lost = expected - read;
    assert!(lost > 0);
    assert!(
        detail.contains(&format!(
            "{lost} record(s) lost (the reader has {read} of {expected})"
        )),
        "{detail}"
    );
    assert!(detail.contains("timed out after 1000ms"), "{detail}");
    assert!(
        detail.contains("the sink asked for transaction.timeout.ms 3600000ms"),
        "{detail}"
    );
    // The aborted transactions named hold exactly the lost records.
    let named: u64 = run
        .faulty
        .output
        .transactions
        .iter()
        .filter(|t| detail.contains(&format!("`{}` ({} records", t.transactional_id, t.records)))
        .map(|t| t.records)
        .sum();
    assert_eq!(named, lost as u64, "{detail}");

    let fixed_file = "scenarios/e2e-txn-timeout-fixed.toml";
    let fixed = common::load(fixed_file);
    assert_eq!(
        fixed.faults,
        common::load(file).faults,
        "the same faults, only the timeouts differ"
    );
    let fixed_run = run_scenario(&fixed, fixed.seed, fixed_file);
    assert!(fixed_run.verdict.passed(), "{}", fixed_run.report);
    assert_eq!(fixed_run.faulty.sink_output.len(), expected);
}

#[test]
fn the_write_ahead_sink_repeats_only_the_batch_caught_before_its_committer_record() {
    let file = "scenarios/e2e-wal-duplicate.toml";
    let run = run(file);
    assert!(run.verdict.passed(), "{}", run.report);
    let (kept, batches) = deduplicate_batches(&run.faulty.output.logs);
    let repeated: Vec<_> = batches.iter().filter(|b| b.copies > 1).collect();
    assert_eq!(repeated.len(), 1, "{batches:?}");
    assert_eq!(repeated[0].label, "sink#0 checkpoint 3");
    assert_eq!(repeated[0].copies, 2);
    assert_eq!(
        run.faulty.output.appended(),
        kept.len() + repeated[0].records
    );
    assert!(run
        .verdict
        .notes
        .iter()
        .any(|n| n.contains("batch `sink#0 checkpoint 3`") && n.contains("written 2 times")));
    // The notice of checkpoint 6 to sink#1 was lost; its batch was written once, later.
    assert!(events(&run).any(|e| matches!(
        e,
        EngineEvent::NoticeLost { checkpoint_id: CheckpointId(6), subtask }
            if subtask.to_string() == "v1#1"
    )));
    let written = events(&run)
        .filter(|e| {
            matches!(e, EngineEvent::Sink {
                label,
                action: SinkAction::BatchWritten { checkpoint_id: CheckpointId(6), .. },
            } if label == "sink#1")
        })
        .count();
    assert_eq!(written, 1);
}

#[test]
fn idempotent_values_jump_back_after_a_recovery_and_end_equal() {
    let file = "scenarios/e2e-idempotent-jumpback.toml";
    let run = run(file);
    assert!(run.verdict.passed(), "{}", run.report);
    assert!(run.faulty.restarts >= 1);
    let jumps = jump_backs(&run.faulty.output.kv_history);
    assert!(!jumps.is_empty());
    let first_failure = run.faulty.failures[0].0;
    assert!(jumps.iter().all(|j| j.at > first_failure));
    assert!(run
        .verdict
        .notes
        .iter()
        .any(|n| n.contains("jumped back to an earlier value")));
    assert!(jump_backs(&run.oracle.output.kv_history).is_empty());
    assert_eq!(run.faulty.output.kv, run.oracle.output.kv);
}
