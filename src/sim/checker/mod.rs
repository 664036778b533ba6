//! The checker: compares a faulty run with the failure-free run of the same job and with the
//! reference evaluation, as DESIGN §9 lays out for exactly-once. Each check says what it
//! proved or where the first difference is.

use crate::api::job::Job;
use crate::api::value::{Text, Value};
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::connectors::sink_config::{SinkConfig, SinkKind};
use crate::connectors::sink_writer::upsert_key;
use crate::runtime::hooks::JobOutcome;
use crate::runtime::operator_chain::OperatorChain;
use crate::services::messages::IsolationLevel;
use crate::services::record_batch::RecordBatch;
use crate::services::transaction_table::{AbortReason, ProducerIdentity, TransactionStatus};
use crate::sim::cluster::RunResult;
use crate::sim::logical_cut::logical_keyed_state;
use crate::sim::oracle::{IncrementalReference, ReferenceResult};
use crate::sim::sink_output::{
    deduplicate_batches, jump_backs, per_key_prefix, BatchCopies, ExpectedOutput, SinkOutput,
};
use crate::sim::ttl_visibility::TtlVisibility;
use crate::state::key_group::KeyGroupRange;
use crate::state::snapshot::{LogicalKeyedState, OperatorSnapshot, PendingContent, StateEntry};
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;

mod broadcast_copies;
mod consistent_cut;
mod gave_up;
mod idempotent;
mod job_lost;
mod journals;
mod record_multiset;
mod state_describer;
mod two_phase_commit;
mod write_ahead;

use consistent_cut::{consistent_cuts, enter_stage, stage_boundaries};
use gave_up::{gave_up_as_allowed, gave_up_output, restarts_as_planned};
use idempotent::{compare_kv, idempotent_output, upserted};
use job_lost::{job_loss, lost_with_jobmanager};
use journals::{journals_processing_time, stage_journals};
use record_multiset::{only_oracle_records, sink_covers, sink_within};
pub use state_describer::StateDescriber;
use two_phase_commit::transactional_output;
use write_ahead::write_ahead_output;

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

/// How a faulty run is expected to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every task finishes.
    Finishes,
    /// The restart strategy gives up (`expect = "gave-up"`).
    GivesUp,
    /// The job is lost with its job manager (`expect = "job-lost"`).
    Lost,
    /// The job is cancelled (`expect = "canceled"`).
    Canceled,
}

/// How the faulty run is expected to end, and the restart strategy its restarts follow.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedEnd {
    /// How it ends.
    pub ending: Ending,
    /// The strategy.
    pub restart: crate::runtime::restart::RestartStrategyConfig,
    /// The seed of its jitter in the run.
    pub seed: u64,
}

/// Checks the faulty run against the failure-free run and the reference evaluation, by the
/// rules of `guarantee`.
///
/// `versions` are the job of each stage, in order (one for a single job): the reference runs
/// each over the input from the snapshot its stage restored, its keyed state carried over by
/// operator uid. The failure-free run is one uninterrupted run of the first.
pub fn check_run(
    end: &ExpectedEnd,
    guarantee: Guarantee,
    sink: &SinkConfig,
    versions: &[Job],
    input: &[Vec<Value>],
    faulty: &RunResult,
    oracle: &RunResult,
) -> Verdict {
    let job = &versions[0];
    let describer = StateDescriber::new(job).with_ttl_states(&faulty.final_visibility);
    // Processing time is the run's: the reference replays its journals (oracle.rs).
    let restored: Vec<_> = stage_boundaries(versions, faulty)
        .map(|boundaries| boundaries.iter().map(|b| b.checkpoint_id).collect())
        .unwrap_or_default();
    let (journals, journal_error) = match stage_journals(faulty, &restored) {
        Ok(journals) => (journals, None),
        Err(error) => (vec![Default::default()], Some(error)),
    };
    // One reference evaluation serves every row: it advances through the checkpoints' offsets
    // for the consistent-cut row, stage by stage, then on to the end of the input.
    let reads_time = journals.iter().any(|stage| !stage.is_empty());
    let mut incremental = IncrementalReference::new(job, input, &journals);
    let cuts = match guarantee {
        Guarantee::ExactlyOnce => Some(consistent_cuts(
            versions,
            input,
            &mut incremental,
            faulty,
            &describer,
        )),
        _ => None,
    };
    let staged = stage_boundaries(versions, faulty).and_then(|boundaries| {
        for next in incremental.stage() + 1..=boundaries.len() {
            enter_stage(versions, &mut incremental, &boundaries, next)?;
        }
        Ok(())
    });
    let (reference, reference_error) = match incremental.finish() {
        Ok(reference) => (reference, None),
        Err(error) => (ReferenceResult::default(), Some(error)),
    };
    // The failure-free run is the first job's: a staged run that changed the job is held to
    // the staged reference, the failure-free run to the first job's own; and a job reading
    // processing time to a reference replaying the failure-free run's own times.
    // (Without journals to find, the failure-free run's snapshots are not even decoded.)
    let oracle_journals = journals_processing_time(job)
        .then(|| stage_journals(oracle, &[]).ok())
        .flatten()
        .and_then(|mut stages| stages.pop())
        .unwrap_or_default();
    let unstaged = (versions.iter().any(|v| v.name != job.name) || !oracle_journals.is_empty())
        .then(|| crate::sim::oracle::evaluate(job, input, None, &oracle_journals));
    let first = match end.ending {
        Ending::GivesUp => check(
            "the restart strategy gave up as it allows",
            gave_up_as_allowed(faulty, &end.restart, end.seed),
        ),
        Ending::Lost => check(
            "the job was lost with its job manager",
            lost_with_jobmanager(faulty),
        ),
        Ending::Canceled => check(
            "the job was cancelled",
            match &faulty.outcome {
                Some((at, JobOutcome::Canceled)) => Ok(format!(
                    "cancelled at {at} after {} restart(s)",
                    faulty.restarts
                )),
                Some((at, other)) => Err(format!(
                    "the job ended at {at} ({other:?}); it was expected to be cancelled"
                )),
                None => Err("the job had not ended by the deadline (stuck)".to_string()),
            },
        ),
        Ending::Finishes => {
            let finished = job_finished(faulty).and_then(|detail| {
                restarts_as_planned(faulty, &end.restart, end.seed).map(|_| detail)
            });
            check("job finished", finished)
        }
    };
    // A job that did not finish left a part of the oracle's output, never more.
    let gave_up = end.ending != Ending::Finishes;
    // The reference's output is compared with the failure-free run's and the faulty run's.
    let expected = ExpectedOutput::new(&reference.sink);
    let oracle_row = match &unstaged {
        Some(Ok(own)) => oracle_agrees(
            sink,
            oracle,
            own,
            &ExpectedOutput::new(&own.sink),
            &describer,
        ),
        Some(Err(error)) => Err(format!(
            "the reference over the failure-free run's times: {error}"
        )),
        None => oracle_agrees(sink, oracle, &reference, &expected, &describer),
    };
    let mut checks = vec![
        first,
        check("oracle run agrees with the reference", oracle_row),
    ];
    if let Some(error) = journal_error.or(reference_error) {
        checks.push(check(
            "the reference replays the run's processing time",
            Err(error),
        ));
    }
    if let Err(error) = staged {
        checks.push(check(
            "every stage resumed where the one before left",
            Err(error),
        ));
    }
    let mut notes = unfired_faults(faulty);
    let sink = match guarantee {
        Guarantee::ExactlyOnce if gave_up => {
            checks.push(check(
                "every completed checkpoint is a consistent cut",
                cuts.expect("checked under exactly-once"),
            ));
            check(
                "what the failed job left is part of the oracle's output",
                gave_up_output(sink, &reference.sink, faulty),
            )
        }
        Guarantee::ExactlyOnce => {
            let final_state = compare_keyed(
                "final state",
                &visible(&reference.keyed, &faulty.final_visibility),
                &faulty.final_state,
                &describer,
            )
            .map(|keys| format!("{keys} keys equal"));
            checks.push(check("final keyed state equals the oracle's", final_state));
            if !reference.broadcast.is_empty() {
                let copies = faulty
                    .final_broadcast
                    .iter()
                    .map(|(uid, copies)| (uid.as_str(), copies.iter().collect()))
                    .collect();
                let agreed =
                    broadcast_copies::compare_copies("final state", &copies, &reference.broadcast)
                        .map(|n| {
                            format!("{n} copies applied every broadcast element once and agree")
                        });
                checks.push(check(
                    "every broadcast state copy equals the reference's",
                    agreed,
                ));
            }
            checks.push(check(
                "every completed checkpoint is a consistent cut",
                cuts.expect("checked under exactly-once"),
            ));
            exactly_once_sink_check(sink, &expected, faulty, reads_time, &mut notes)
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
        let keys: std::collections::BTreeSet<&Text> =
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
        Some((at, JobOutcome::Canceled)) => Err(format!("the job was cancelled at {at}")),
        None => Err(match job_loss(run) {
            Some(loss) => format!("the job was lost: {loss}"),
            None => "the job had not finished by the deadline (stuck)".to_string(),
        }),
    }
}

fn oracle_agrees(
    sink: &SinkConfig,
    oracle: &RunResult,
    reference: &ReferenceResult,
    expected: &ExpectedOutput<'_>,
    describer: &StateDescriber,
) -> Result<String, String> {
    job_finished(oracle).map_err(|e| format!("failure-free run: {e}"))?;
    compare_keyed(
        "failure-free run",
        &visible(&reference.keyed, &oracle.final_visibility),
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
    if let Some(difference) = expected.first_difference(&oracle.sink_output) {
        return Err(format!(
            "failure-free run: sink wrote {} records, the reference {}: {difference}",
            oracle.sink_output.len(),
            reference.sink.len()
        ));
    }
    Ok(format!(
        "{} sink records and all keyed state equal",
        reference.sink.len()
    ))
}

/// The sink row of exactly-once (DESIGN §9), by the sink's kind.
///
/// The plain sink keeps what attempts that were rolled back wrote; a job reading processing
/// time wrote there what the rolled-back times made, which no reference replays (the journal
/// of a rolled-back attempt is gone with its state), so such records are counted, not failed.
fn exactly_once_sink_check(
    sink: &SinkConfig,
    expected: &ExpectedOutput<'_>,
    faulty: &RunResult,
    reads_time: bool,
    notes: &mut Vec<String>,
) -> CheckResult {
    match sink.kind {
        SinkKind::Plain => check(
            "sink saw every oracle record",
            sink_covers(expected.records(), &faulty.sink_output, reads_time),
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
            idempotent_output(expected.records(), &faulty.output, notes),
        ),
    }
}

/// `state` as a reader sees it under `visibility` (what expired left out).
fn visible<'s>(
    state: &'s BTreeMap<String, LogicalKeyedState>,
    visibility: &TtlVisibility,
) -> std::borrow::Cow<'s, BTreeMap<String, LogicalKeyedState>> {
    if visibility.is_empty() {
        return std::borrow::Cow::Borrowed(state);
    }
    let mut state = state.clone();
    visibility.apply(&mut state);
    std::borrow::Cow::Owned(state)
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
        let all_keys: std::collections::BTreeSet<&Text> =
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
