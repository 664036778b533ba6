//! The checker: compares a faulty run with the failure-free run of the same job and with the
//! reference evaluation, as DESIGN §9 lays out for exactly-once. Each check says what it
//! proved or where the first difference is.

use crate::api::job::Job;
use crate::api::value::Value;
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::connectors::sink_config::{SinkConfig, SinkKind};
use crate::runtime::hooks::JobOutcome;
use crate::runtime::operator_chain::OperatorChain;
use crate::runtime::sink_writer::upsert_key;
use crate::services::messages::IsolationLevel;
use crate::services::transaction_table::{AbortReason, ProducerIdentity, TransactionStatus};
use crate::sim::cluster::RunResult;
use crate::sim::logical_cut::logical_keyed_state;
use crate::sim::oracle::{evaluate, IncrementalReference, ReferenceResult};
use crate::sim::sink_output::{
    deduplicate_batches, first_per_key_difference, jump_backs, BatchCopies, SinkOutput,
};
use crate::state::key_group::KeyGroupRange;
use crate::state::snapshot::{LogicalKeyedState, OperatorSnapshot, PendingContent, StateEntry};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What it proved, or the first difference.
    pub detail: String,
}

/// All checks of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The guarantee checked.
    pub guarantee: Guarantee,
    /// Each check.
    pub checks: Vec<CheckResult>,
    /// Observations that are no check (what the guarantee allows to differ).
    pub notes: Vec<String>,
}

impl Verdict {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The first failed check.
    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| !c.passed)
    }
}

fn check(name: &str, result: Result<String, String>) -> CheckResult {
    match result {
        Ok(detail) => CheckResult {
            name: name.to_string(),
            passed: true,
            detail,
        },
        Err(detail) => CheckResult {
            name: name.to_string(),
            passed: false,
            detail,
        },
    }
}

/// The guarantee a run is checked against (DESIGN §9, one row each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarantee {
    /// Exactly-once state, consistent checkpoints, every record in the sink.
    ExactlyOnce,
    /// Every record in the sink, duplicates allowed; keyed state may count replays twice.
    AtLeastOnce,
    /// No record twice: the sink output is a subset of the oracle's; losses are counted.
    AtMostOnce,
}

impl Guarantee {
    /// What the scenario's settings promise. With checkpointing disabled nothing is promised;
    /// such a run is held to exactly-once so that the checker shows what is lost.
    pub fn of(scenario: &crate::scenario::Scenario) -> Guarantee {
        match scenario.checkpoint.mode {
            CheckpointingMode::AtLeastOnce if scenario.checkpointing() => Guarantee::AtLeastOnce,
            CheckpointingMode::AtMostOnce => Guarantee::AtMostOnce,
            _ => Guarantee::ExactlyOnce,
        }
    }

    /// The report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly-once",
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::AtMostOnce => "at-most-once",
        }
    }
}

/// Faults of the plan that never fired: the run did not exercise them, which the verdict says.
fn unfired_faults(faulty: &RunResult) -> Vec<String> {
    let unfired: Vec<String> = faulty
        .faults_fired
        .iter()
        .enumerate()
        .filter(|(_, fired)| fired.is_none())
        .map(|(index, _)| (index + 1).to_string())
        .collect();
    if unfired.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "fault(s) {} never fired: this run did not exercise them",
        unfired.join(", ")
    )]
}

/// Checks the faulty run against the failure-free run and the reference evaluation, by the
/// rules of `guarantee`.
pub fn check_run(
    guarantee: Guarantee,
    sink: &SinkConfig,
    job: &Job,
    input: &[Vec<Value>],
    faulty: &RunResult,
    oracle: &RunResult,
) -> Verdict {
    let reference = evaluate(job, input, None).expect("the full input is a valid prefix");
    let describer = StateDescriber::new(job);
    let mut checks = vec![
        check("job finished", job_finished(faulty)),
        check(
            "oracle run agrees with the reference",
            oracle_agrees(sink, oracle, &reference, &describer),
        ),
    ];
    let mut notes = unfired_faults(faulty);
    let sink = match guarantee {
        Guarantee::ExactlyOnce => {
            let final_state = compare_keyed(
                "final state",
                &reference.keyed,
                &faulty.final_state,
                &describer,
            )
            .map(|keys| format!("{keys} keys equal"));
            checks.push(check("final keyed state equals the oracle's", final_state));
            checks.push(check(
                "every completed checkpoint is a consistent cut",
                consistent_cuts(job, input, faulty, &describer),
            ));
            exactly_once_sink_check(sink, &reference.sink, faulty, &mut notes)
        }
        Guarantee::AtLeastOnce => {
            notes.extend(state_difference_note(
                &reference.keyed,
                &faulty.final_state,
                "at-least-once may count replayed records twice",
            ));
            check(
                "sink saw every oracle record",
                sink_covers(&reference.sink, &faulty.sink_output, true),
            )
        }
        Guarantee::AtMostOnce => {
            notes.extend(state_difference_note(
                &reference.keyed,
                &faulty.final_state,
                "at-most-once restarts with empty state",
            ));
            check(
                "sink output is a subset of the oracle's, no record twice",
                sink_within(&reference.sink, &faulty.sink_output),
            )
        }
    };
    checks.push(sink);
    Verdict {
        guarantee,
        checks,
        notes,
    }
}

/// How far the final keyed state strayed, for guarantees that allow it; none for a job
/// without keyed state.
fn state_difference_note(
    expected: &BTreeMap<String, LogicalKeyedState>,
    actual: &BTreeMap<String, LogicalKeyedState>,
    why: &str,
) -> Option<String> {
    let (differing, total) = keys_differing(expected, actual);
    (total > 0).then(|| {
        format!(
            "final keyed state differs from the oracle's on {differing} of {total} keys ({why})"
        )
    })
}

fn keys_differing(
    expected: &BTreeMap<String, LogicalKeyedState>,
    actual: &BTreeMap<String, LogicalKeyedState>,
) -> (usize, usize) {
    let mut differing = 0;
    let mut total = 0;
    for (uid, expected_state) in expected {
        let empty = LogicalKeyedState::new();
        let actual_state = actual.get(uid).unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&String> =
            expected_state.keys().chain(actual_state.keys()).collect();
        total += keys.len();
        differing += keys
            .into_iter()
            .filter(|key| expected_state.get(*key) != actual_state.get(*key))
            .count();
    }
    (differing, total)
}

fn job_finished(run: &RunResult) -> Result<String, String> {
    match &run.outcome {
        Some((at, JobOutcome::Finished)) => Ok(format!(
            "finished at {at} after {} restart(s)",
            run.restarts
        )),
        Some((at, JobOutcome::Failed(reason))) => Err(format!("the job failed at {at}: {reason}")),
        None => Err("the job had not finished by the deadline (stuck)".to_string()),
    }
}

fn oracle_agrees(
    sink: &SinkConfig,
    oracle: &RunResult,
    reference: &ReferenceResult,
    describer: &StateDescriber,
) -> Result<String, String> {
    job_finished(oracle).map_err(|e| format!("failure-free run: {e}"))?;
    compare_keyed(
        "failure-free run",
        &reference.keyed,
        &oracle.final_state,
        describer,
    )?;
    if sink.kind == SinkKind::Idempotent {
        compare_kv(&upserted(&reference.sink), &oracle.output.kv)
            .map_err(|e| format!("failure-free run: {e}"))?;
        return Ok(format!(
            "{} kv entries and all keyed state equal",
            oracle.output.kv.len()
        ));
    }
    let same = oracle.sink_output.len() == reference.sink.len()
        && sink_covers(&reference.sink, &oracle.sink_output, false).is_ok();
    if !same {
        return Err(format!(
            "failure-free run: sink wrote {} records, the reference {}",
            oracle.sink_output.len(),
            reference.sink.len()
        ));
    }
    Ok(format!(
        "{} sink records and all keyed state equal",
        reference.sink.len()
    ))
}

fn consistent_cuts(
    job: &Job,
    input: &[Vec<Value>],
    faulty: &RunResult,
    describer: &StateDescriber,
) -> Result<String, String> {
    let source_uid = &job.operators[0].uid;
    let mut reference = IncrementalReference::new(job, input);
    for observed in &faulty.checkpoints {
        let checkpoint_id = observed.checkpoint.checkpoint_id;
        let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
        let mut states = BTreeMap::new();
        for (subtask, state) in &observed.task_states {
            let state = state
                .as_ref()
                .map_err(|e| format!("checkpoint {checkpoint_id}: {subtask}: {e}"))?;
            for (uid, operator) in &state.operators {
                match operator {
                    OperatorSnapshot::Source(source) if uid == source_uid => {
                        offsets.extend(source.next_offsets.iter().map(|(p, o)| (*p, *o)))
                    }
                    OperatorSnapshot::Source(_) => {
                        return Err(format!(
                            "checkpoint {checkpoint_id}: source state under uid `{uid}`"
                        ))
                    }
                    OperatorSnapshot::Keyed(_) | OperatorSnapshot::Sink(_) => {}
                }
            }
            states.insert(*subtask, state);
        }
        let keyed = logical_keyed_state(job, &states)
            .map_err(|e| format!("checkpoint {checkpoint_id}: {e}"))?;
        reference
            .advance_to(&offsets)
            .map_err(|e| format!("checkpoint {checkpoint_id}: {e}"))?;
        compare_keyed(
            &format!("checkpoint {checkpoint_id} (offsets {offsets:?})"),
            &reference.keyed(),
            &keyed,
            describer,
        )?;
    }
    Ok(format!(
        "{} checkpoint(s) (in-flight data replayed) equal the reference over their source offsets",
        faulty.checkpoints.len()
    ))
}

/// The sink row of exactly-once (DESIGN §9), by the sink's kind.
fn exactly_once_sink_check(
    sink: &SinkConfig,
    expected: &[Value],
    faulty: &RunResult,
    notes: &mut Vec<String>,
) -> CheckResult {
    match sink.kind {
        SinkKind::Plain => check(
            "sink saw every oracle record",
            sink_covers(expected, &faulty.sink_output, false),
        ),
        SinkKind::TwoPhaseCommit => check(
            &format!(
                "the reader ({}) sees the oracle's output, each key's records in order",
                sink.isolation.name()
            ),
            transactional_output(sink, expected, faulty, notes),
        ),
        SinkKind::WriteAheadLog => check(
            "every oracle record written, in order; repeats only of whole batches caught between their write and their committer record by a failure (or written by a zombie fenced at its committer record)",
            write_ahead_output(expected, faulty, notes),
        ),
        SinkKind::Idempotent => check(
            "final kv contents equal the oracle's",
            idempotent_output(expected, &faulty.output, notes),
        ),
    }
}

/// Two-phase commit: the reader's view equals the oracle's output per key, in order. A
/// difference is explained by the transactions behind it.
fn transactional_output(
    sink: &SinkConfig,
    expected: &[Value],
    faulty: &RunResult,
    notes: &mut Vec<String>,
) -> Result<String, String> {
    let output = &faulty.output;
    let aborted = output.records_in(|s| matches!(s, TransactionStatus::Aborted { .. }));
    let open = output.records_in(|s| *s == TransactionStatus::Open);
    let committed = output.records_in(|s| matches!(s, TransactionStatus::Committed { .. }));
    let transactions = format!(
        "{} transaction(s): {committed} records committed, {aborted} aborted, {open} still open",
        output.transactions.len()
    );
    notes.push(format!("broker: {transactions}"));
    let Some(difference) = first_per_key_difference(expected, &faulty.sink_output) else {
        return Ok(format!(
            "{} records, each key in the oracle's order; {transactions}",
            expected.len()
        ));
    };
    let mut why = vec![difference];
    let behind = output.behind_open_transactions();
    if sink.isolation == IsolationLevel::ReadCommitted && behind > 0 {
        why.push(format!(
            "{behind} record(s) lie at or past the last stable offset: a transaction still open when the run ended holds the read_committed reader"
        ));
    }
    if sink.isolation == IsolationLevel::ReadUncommitted && aborted + open > 0 {
        why.push(format!(
            "the reader (read_uncommitted) saw {aborted} record(s) of aborted transactions and {open} of open ones"
        ));
    }
    let lost = lost_to_aborts(output, &pre_committed(faulty));
    if lost.0 > 0 {
        why.push(format!(
            "{} record(s) lost (the reader has {} of {}): the broker aborted {} pre-committed transaction(s) (transaction.max.timeout.ms {}; the sink asked for transaction.timeout.ms {}, which the broker caps): {}",
            lost.0, faulty.sink_output.len(), expected.len(), lost.1.len(), output.max_transaction_timeout, sink.transaction_timeout, lost.1.join(", ")
        ));
    }
    Err(why.join("; "))
}

/// The transactions some completed checkpoint holds as pre-committed.
fn pre_committed(run: &RunResult) -> BTreeSet<(String, ProducerIdentity)> {
    let mut found = BTreeSet::new();
    for observed in &run.checkpoints {
        for state in observed.task_states.values().flatten() {
            for operator in state.operators.values() {
                let OperatorSnapshot::Sink(sink) = operator else {
                    continue;
                };
                for pending in &sink.pending {
                    if let PendingContent::Transaction {
                        transactional_id,
                        identity,
                        ..
                    } = &pending.content
                    {
                        found.insert((transactional_id.clone(), *identity));
                    }
                }
            }
        }
    }
    found
}

/// Records in pre-committed transactions the broker aborted (a checkpoint promised them, so
/// they are lost), and those transactions with why.
fn lost_to_aborts(
    output: &SinkOutput,
    pre_committed: &BTreeSet<(String, ProducerIdentity)>,
) -> (u64, Vec<String>) {
    let mut records = 0;
    let mut names = Vec::new();
    for transaction in &output.transactions {
        let promised =
            pre_committed.contains(&(transaction.transactional_id.clone(), transaction.identity));
        let TransactionStatus::Aborted { at, reason } = transaction.status else {
            continue;
        };
        if !promised {
            continue; // Opened after the checkpoint: its records were replayed.
        }
        records += transaction.records;
        let why = match reason {
            AbortReason::TimedOut { timeout } => format!("timed out after {timeout}"),
            AbortReason::Fenced => "its id was initialized again".to_string(),
            AbortReason::Requested => "its producer aborted it".to_string(),
        };
        names.push(format!(
            "`{}` ({} records, begun {}, aborted {at}: {why})",
            transaction.transactional_id, transaction.records, transaction.started_at
        ));
    }
    (records, names)
}

/// Write-ahead log: with every batch kept once, the output equals the oracle's per key; the
/// batches written more than once are the duplicates, and the report names them.
fn write_ahead_output(
    expected: &[Value],
    faulty: &RunResult,
    notes: &mut Vec<String>,
) -> Result<String, String> {
    let output = &faulty.output;
    let (kept, batches) = deduplicate_batches(&output.logs);
    let repeated: Vec<&BatchCopies> = batches.iter().filter(|b| b.copies > 1).collect();
    let duplicates: usize = repeated.iter().map(|b| b.records * (b.copies - 1)).sum();
    for batch in &repeated {
        let why = explain_repeat(batch, output, &faulty.failures)?;
        notes.push(format!(
            "batch `{}` ({} records) written {} times: {why}",
            batch.label, batch.records, batch.copies
        ));
    }
    if let Some(difference) = first_per_key_difference(expected, &kept) {
        return Err(format!("with each batch kept once: {difference}"));
    }
    Ok(format!(
        "{} records in {} batches, each key in order; {duplicates} duplicate(s) from {} batch(es) written twice",
        expected.len(),
        batches.len(),
        repeated.len()
    ))
}

/// Why a write-ahead batch was written again: each later copy must follow a failure that
/// came after the copy before it, with no committer record for the batch's checkpoint in
/// between (the window of DESIGN §8). Anything else is a sink bug.
fn explain_repeat(
    batch: &BatchCopies,
    output: &SinkOutput,
    failures: &[(Instant, String)],
) -> Result<String, String> {
    let parsed = batch
        .label
        .rsplit_once(" checkpoint ")
        .and_then(|(sink, n)| {
            let (uid, index) = sink.rsplit_once('#')?;
            Some((format!("-{uid}-{index}"), n.parse::<u64>().ok()?))
        });
    let Some((key_suffix, checkpoint)) = parsed else {
        return Err(format!(
            "batch header `{}` is not `uid#index checkpoint n`",
            batch.label
        ));
    };
    let mut why = Vec::new();
    for copies in batch.written_at.windows(2) {
        let (before, again) = (copies[0], copies[1]);
        let recorded = output.committer_history.iter().find(|w| {
            w.key.ends_with(&key_suffix)
                && w.at < again
                && crate::codec::decode_message::<u64>(&w.value).is_ok_and(|id| id >= checkpoint)
        });
        if let Some(record) = recorded {
            return Err(format!(
                "batch `{}` written again at {again} although its committer record said so at {}",
                batch.label, record.at
            ));
        }
        // The failover may reach the writer while its append is in flight, so the failure
        // can precede the append itself: it must only follow the writer's previous committer
        // record (its last completed batch) and precede the repeat.
        let previous_record = output
            .committer_history
            .iter()
            .filter(|w| w.key.ends_with(&key_suffix) && w.at <= before)
            .map(|w| w.at)
            .max()
            .unwrap_or(Instant::ZERO);
        let Some((failed_at, reason)) = failures
            .iter()
            .find(|(at, _)| previous_record <= *at && *at <= again)
        else {
            return Err(format!(
                "batch `{}` written at {before} and again at {again} with no failure since the previous committer record at {previous_record}",
                batch.label
            ));
        };
        // A zombie of the failed attempt that appended before the recovery fenced the committer
        // is refused at its record: the repeat is the write-ahead log's inherent duplicate.
        let refused = output.committer_refused.iter().find(|w| {
            w.key.ends_with(&key_suffix)
                && before <= w.at
                && crate::codec::decode_message::<u64>(&w.value).is_ok_and(|id| id == checkpoint)
        });
        why.push(match refused {
            Some(record) => format!(
                "written at {before} by a zombie of the attempt that failed at {failed_at} ({reason}); its committer record was refused at {} (generation {} fenced), the recovery wrote it again at {again}",
                record.at,
                record.generation.map_or("?".to_string(), |g| g.to_string())
            ),
            None => format!(
                "written at {before}, the failure at {failed_at} ({reason}) stopped its writer before the committer record, the recovery wrote it again at {again}"
            ),
        });
    }
    Ok(why.join("; "))
}

/// What upserting the oracle's output leaves in the store.
fn upserted(expected: &[Value]) -> BTreeMap<String, Value> {
    expected
        .iter()
        .map(|value| (upsert_key(value), value.clone()))
        .collect()
}

fn compare_kv(
    expected: &BTreeMap<String, Value>,
    actual: &BTreeMap<String, Value>,
) -> Result<(), String> {
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for key in keys {
        let (want, got) = (expected.get(key), actual.get(key));
        if want != got {
            let show = |v: Option<&Value>| v.map_or("nothing".to_string(), Value::to_string);
            return Err(format!(
                "kv key `{key}`: expected {}, the store holds {}",
                show(want),
                show(got)
            ));
        }
    }
    Ok(())
}

/// Idempotent: the store ends equal to upserting the oracle's output; values that jumped
/// back after a recovery are noted.
fn idempotent_output(
    expected: &[Value],
    output: &SinkOutput,
    notes: &mut Vec<String>,
) -> Result<String, String> {
    let jumps = jump_backs(&output.kv_history);
    if !jumps.is_empty() {
        let examples: Vec<String> = jumps
            .iter()
            .take(3)
            .map(|j| {
                format!(
                    "`{}` went back from {} to {} at {}, then forward to {}",
                    j.key, j.from, j.to, j.at, j.last
                )
            })
            .collect();
        notes.push(format!(
            "{} key(s) jumped back to an earlier value after a recovery and replayed forward, e.g. {}",
            jumps.len(),
            examples.join("; ")
        ));
    }
    compare_kv(&upserted(expected), &output.kv)?;
    Ok(format!(
        "{} keys equal after {} upserts; {} key(s) jumped back on the way",
        output.kv.len(),
        output.kv_history.len(),
        jumps.len()
    ))
}

/// A 128-bit fingerprint of a record: two FNV-1a 64 hashes with different offsets. Sorting
/// fingerprints compares million-record outputs as multisets in well under a second.
fn fingerprint(value: &Value) -> u128 {
    let mut low = Fnv64(0xcbf2_9ce4_8422_2325);
    let mut high = Fnv64(0x8422_2325_cbf2_9ce4);
    value.hash(&mut low);
    value.hash(&mut high);
    ((high.0 as u128) << 64) | low.0 as u128
}

struct Fnv64(u64);

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= *byte as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn sorted_fingerprints(values: &[Value]) -> Vec<u128> {
    let mut prints: Vec<u128> = values.iter().map(fingerprint).collect();
    prints.sort_unstable();
    prints
}

/// How two sorted fingerprint multisets differ.
#[derive(Default)]
struct Differences {
    /// The first fingerprint `expected` holds more often than `actual`.
    missing: Option<u128>,
    /// The first fingerprint `actual` holds that `expected` lacks entirely.
    foreign: Option<u128>,
    /// How many of `actual`'s records `expected` lacks entirely.
    foreign_count: usize,
}

fn multiset_differences(expected: &[u128], actual: &[u128]) -> Differences {
    let mut found = Differences::default();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        match (expected.get(i), actual.get(j)) {
            (Some(e), Some(a)) if e == a => {
                // Skip the whole run of this fingerprint on both sides.
                let (run_e, run_a) = (run_length(expected, i), run_length(actual, j));
                if run_a < run_e {
                    found.missing = found.missing.or(Some(*e));
                }
                i += run_e;
                j += run_a;
            }
            (Some(e), Some(a)) if e < a => {
                found.missing = found.missing.or(Some(*e));
                i += 1;
            }
            (Some(e), None) => {
                found.missing = found.missing.or(Some(*e));
                i += 1;
            }
            (_, Some(a)) => {
                found.foreign = found.foreign.or(Some(*a));
                found.foreign_count += 1;
                j += 1;
            }
            (None, None) => unreachable!("the loop condition"),
        }
    }
    found
}

fn run_length(prints: &[u128], start: usize) -> usize {
    prints[start..]
        .iter()
        .take_while(|p| **p == prints[start])
        .count()
}

/// Every expected record reached the sink (duplicates allowed). Records the oracle never
/// produced fail the check unless `foreign_allowed` (at-least-once: a replayed record counted
/// twice makes outputs of its own).
fn sink_covers(
    expected: &[Value],
    actual: &[Value],
    foreign_allowed: bool,
) -> Result<String, String> {
    let found = multiset_differences(&sorted_fingerprints(expected), &sorted_fingerprints(actual));
    let find = |values: &[Value], print: u128| {
        values
            .iter()
            .find(|v| fingerprint(v) == print)
            .cloned()
            .expect("the fingerprint came from these values")
    };
    if let Some(print) = found.missing {
        let value = find(expected, print);
        let count = expected.iter().filter(|v| **v == value).count();
        let seen = actual.iter().filter(|v| **v == value).count();
        return Err(format!(
            "record {value} expected {count} time(s), the sink wrote it {seen} time(s)"
        ));
    }
    if let (Some(print), false) = (found.foreign, foreign_allowed) {
        return Err(format!(
            "the sink wrote {}, which the oracle never produced",
            find(actual, print)
        ));
    }
    let duplicates = actual.len() - expected.len() - found.foreign_count;
    let mut detail = format!("all {} records present; {duplicates} duplicate(s) (the plain sink repeats after a restore)", expected.len());
    if found.foreign_count > 0 {
        detail.push_str(&format!(
            "; {} record(s) the oracle never produced (replayed records counted twice)",
            found.foreign_count
        ));
    }
    Ok(detail)
}

/// At-most-once: the sink wrote no record more often than the oracle did; the records it
/// never wrote are the losses.
fn sink_within(expected: &[Value], actual: &[Value]) -> Result<String, String> {
    // The roles swap: every record written must be covered by the oracle's.
    let found = multiset_differences(&sorted_fingerprints(actual), &sorted_fingerprints(expected));
    if let Some(print) = found.missing {
        let value = actual
            .iter()
            .find(|v| fingerprint(v) == print)
            .cloned()
            .expect("the fingerprint came from these values");
        let count = expected.iter().filter(|v| **v == value).count();
        let written = actual.iter().filter(|v| **v == value).count();
        return Err(format!(
            "record {value} written {written} time(s), the oracle produced it {count} time(s)"
        ));
    }
    let lost = expected.len() - actual.len();
    Ok(format!(
        "{} of {} records written, none twice; {lost} lost (what was in flight at a failure)",
        actual.len(),
        expected.len()
    ))
}

/// Compares keyed state per operator; returns the number of keys compared.
fn compare_keyed(
    what: &str,
    expected: &BTreeMap<String, LogicalKeyedState>,
    actual: &BTreeMap<String, LogicalKeyedState>,
    describer: &StateDescriber,
) -> Result<usize, String> {
    let mut keys = 0;
    for (uid, expected_state) in expected {
        let empty = LogicalKeyedState::new();
        let actual_state = actual.get(uid).unwrap_or(&empty);
        let all_keys: std::collections::BTreeSet<&String> =
            expected_state.keys().chain(actual_state.keys()).collect();
        for key in all_keys {
            let (wanted, got) = (expected_state.get(key), actual_state.get(key));
            if wanted != got {
                return Err(format!(
                    "{what}: operator `{uid}` key `{key}`: expected {}, got {}",
                    describer.describe(uid, wanted),
                    describer.describe(uid, got)
                ));
            }
            keys += 1;
        }
    }
    Ok(keys)
}

/// Renders state entries with the job's own `describe_state`.
pub struct StateDescriber {
    chain: OperatorChain,
}

impl StateDescriber {
    /// A describer for `job`'s keyed operators.
    pub fn new(job: &Job) -> StateDescriber {
        let whole = KeyGroupRange {
            start: 0,
            end: job.max_parallelism - 1,
        };
        StateDescriber {
            chain: OperatorChain::new(job, 0..job.operators.len(), whole),
        }
    }

    /// One key's states, e.g. `{count=3}`, or `nothing`.
    pub fn describe(&self, uid: &str, entries: Option<&BTreeMap<String, StateEntry>>) -> String {
        let Some(entries) = entries else {
            return "nothing".to_string();
        };
        let parts: Vec<String> = entries
            .iter()
            .map(|(name, entry)| match entry {
                StateEntry::Value(bytes) => format!(
                    "{name}={}",
                    self.chain
                        .describe_state(uid, name, bytes)
                        .unwrap_or_default()
                ),
                other => format!("{name}=<{} state>", other.kind_name()),
            })
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    /// A keyed state view as `key→value` pairs, for reports.
    pub fn describe_all(&self, uid: &str, state: &LogicalKeyedState, limit: usize) -> String {
        let mut parts: Vec<String> = state
            .iter()
            .take(limit)
            .map(|(key, entries)| {
                let values: Vec<String> = entries
                    .iter()
                    .map(|(name, entry)| match entry {
                        StateEntry::Value(bytes) => self
                            .chain
                            .describe_state(uid, name, bytes)
                            .unwrap_or_default(),
                        other => format!("<{} state>", other.kind_name()),
                    })
                    .collect();
                format!("{key}→{}", values.join("/"))
            })
            .collect();
        if state.len() > limit {
            parts.push(format!("… ({} keys in all)", state.len()));
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::kv_store::KvWrite;

    fn committer_write(at_ms: u64, checkpoint: u64) -> KvWrite {
        KvWrite {
            at: Instant::from_ms(at_ms),
            writer: "sink#0".into(),
            key: "checkpoint-committer/wordcount-sink-0".into(),
            value: crate::codec::encode_message(&checkpoint),
            generation: Some(1),
        }
    }

    #[test]
    fn a_repeat_after_a_zombies_refused_record_is_named_as_the_zombies() {
        let batch = BatchCopies {
            label: "sink#0 checkpoint 3".into(),
            records: 10,
            copies: 2,
            written_at: vec![Instant::from_ms(300), Instant::from_ms(320)],
        };
        let failover = vec![(Instant::from_ms(200), "taskmanager-2 lost".to_string())];
        let output = SinkOutput {
            committer_history: vec![committer_write(50, 2)],
            committer_refused: vec![committer_write(310, 3)],
            ..SinkOutput::default()
        };
        let why = explain_repeat(&batch, &output, &failover).unwrap();
        assert!(
            why.contains("by a zombie") && why.contains("refused at 0.310s (generation 1 fenced)"),
            "{why}"
        );
        // A refused record never excuses a repeat without a failover behind it.
        assert!(explain_repeat(&batch, &output, &[]).is_err());
    }

    #[test]
    fn a_repeated_batch_is_allowed_only_after_a_failure_before_its_committer_record() {
        let batch = BatchCopies {
            label: "sink#0 checkpoint 3".into(),
            records: 10,
            copies: 2,
            written_at: vec![Instant::from_ms(100), Instant::from_ms(900)],
        };
        let failure = vec![(Instant::from_ms(150), "taskmanager-1 lost".to_string())];
        let mut output = SinkOutput {
            committer_history: vec![committer_write(50, 2), committer_write(950, 3)],
            ..SinkOutput::default()
        };
        let why = explain_repeat(&batch, &output, &failure).unwrap();
        assert!(
            why.contains("the failure at 0.150s (taskmanager-1 lost)"),
            "{why}"
        );
        let error = explain_repeat(&batch, &output, &[]).unwrap_err();
        assert!(
            error.contains("with no failure since the previous committer record at 0.050s"),
            "{error}"
        );
        // A failover reaching the writer while its append was in flight comes first.
        let in_flight = vec![(Instant::from_ms(90), "failover".to_string())];
        assert!(explain_repeat(&batch, &output, &in_flight).is_ok());
        let stale = vec![(Instant::from_ms(40), "older failover".to_string())];
        assert!(explain_repeat(&batch, &output, &stale).is_err());
        // The committer said checkpoint 3 was written, and the batch came again: a bug.
        output.committer_history.insert(1, committer_write(120, 3));
        let error = explain_repeat(&batch, &output, &failure).unwrap_err();
        assert!(
            error.contains("although its committer record said so at 0.120s"),
            "{error}"
        );
    }

    fn words(list: &[&str]) -> Vec<Value> {
        list.iter().map(|w| Value::Str(w.to_string())).collect()
    }

    #[test]
    fn sink_check_allows_duplicates_but_not_losses_or_strangers() {
        let expected = words(&["a", "b", "b", "c"]);
        assert!(
            sink_covers(&expected, &words(&["c", "b", "a", "b", "b"]), false)
                .unwrap()
                .contains("1 duplicate")
        );
        let error = sink_covers(&expected, &words(&["a", "b", "c", "c"]), true).unwrap_err();
        assert!(
            error.contains("record b expected 2 time(s), the sink wrote it 1"),
            "{error}"
        );
        let error = sink_covers(&expected, &words(&["a", "b", "b", "c", "z"]), false).unwrap_err();
        assert!(error.contains("wrote z"), "{error}");
        let allowed =
            sink_covers(&expected, &words(&["a", "b", "b", "c", "z", "a"]), true).unwrap();
        assert!(
            allowed.contains("1 duplicate(s)")
                && allowed.contains("1 record(s) the oracle never produced"),
            "{allowed}"
        );
    }
}
