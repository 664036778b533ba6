//! The two-phase-commit sink's row: the reader's view of the output topic equals the oracle's
//! output per key, in order; a loss is explained by the broker's aborts.

use super::*;

/// Transactions the run left open: nobody commits them, so the broker aborts each at its
/// timeout; until then they hold read_committed readers at the last stable offset.
fn hanging_note(output: &SinkOutput) -> Option<String> {
    let last = output
        .hanging
        .iter()
        .map(|t| t.started_at.add(t.timeout))
        .max()?;
    let each: Vec<String> = output
        .hanging
        .iter()
        .map(|t| {
            format!(
                "`{}` (epoch {}, {} records, opened at {})",
                t.transactional_id, t.identity.epoch, t.records, t.started_at
            )
        })
        .collect();
    Some(format!(
        "{} transaction(s) hung open when the run ended (nobody commits them: a zombie's, or a failed attempt's); they held read_committed readers back until the broker timed them out, the last at {last}; the output is read after that: {}",
        output.hanging.len(),
        each.join(", ")
    ))
}

/// Two-phase commit: the reader's view equals the oracle's output per key, in order. A
/// difference is explained by the transactions behind it.
pub(super) fn transactional_output(
    sink: &SinkConfig,
    expected: &ExpectedOutput<'_>,
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
    notes.extend(hanging_note(output));
    let Some(difference) = expected.first_difference(&faulty.sink_output) else {
        return Ok(format!(
            "{} records, each key in the oracle's order; {transactions}",
            expected.records().len()
        ));
    };
    let mut why = vec![difference];
    if sink.isolation == IsolationLevel::ReadUncommitted && aborted + open > 0 {
        why.push(format!(
            "the reader (read_uncommitted) saw {aborted} record(s) of aborted transactions and {open} of open ones"
        ));
    }
    let lost = lost_to_aborts(output, &pre_committed(faulty));
    if lost.0 > 0 {
        why.push(format!(
            "{} record(s) lost (the reader has {} of {}): the broker aborted {} pre-committed transaction(s) (transaction.max.timeout.ms {}; the sink asked for transaction.timeout.ms {}, which the broker caps): {}",
            lost.0, faulty.sink_output.len(), expected.records().len(), lost.1.len(), output.max_transaction_timeout, sink.transaction_timeout, lost.1.join(", ")
        ));
    }
    Err(why.join("; "))
}

/// The transactions some completed checkpoint holds as pre-committed.
pub(super) fn pre_committed(run: &RunResult) -> BTreeSet<(String, ProducerIdentity)> {
    let mut found = BTreeSet::new();
    for observed in &run.checkpoints {
        for state in observed.task_states().values().flatten() {
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
pub(super) fn lost_to_aborts(
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
