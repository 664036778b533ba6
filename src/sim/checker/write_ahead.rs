//! The write-ahead-log sink's row: with every batch kept once the output equals the oracle's;
//! each repeated batch is explained by a failure before its committer record, or named as a
//! fenced zombie's.

use super::*;

/// Write-ahead log: with every batch kept once, the output equals the oracle's per key; the
/// batches written more than once are the duplicates, and the report names them.
pub(super) fn write_ahead_output(
    expected: &ExpectedOutput<'_>,
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
    if let Some(difference) = expected.first_difference(&kept) {
        return Err(format!("with each batch kept once: {difference}"));
    }
    Ok(format!(
        "{} records in {} batches, each key in order; {duplicates} duplicate(s) from {} batch(es) written twice",
        expected.records().len(),
        batches.len(),
        repeated.len()
    ))
}

/// Why a write-ahead batch was written again: each later copy must follow a failure that
/// came after the copy before it, with no committer record for the batch's checkpoint in
/// between (the window of DESIGN §8). Anything else is a sink bug.
pub(super) fn explain_repeat(
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
            // A zombie that read the committer before the recovery fenced it may append after
            // the recovery wrote and recorded the batch: its own record is refused after its
            // append. The later copy is then the zombie's, the write-ahead log's inherent
            // duplicate in the other order.
            let zombie_after = output.committer_refused.iter().find(|w| {
                w.key.ends_with(&key_suffix)
                    && w.at >= again
                    && w.generation < record.generation
                    && crate::codec::decode_message::<u64>(&w.value)
                        .is_ok_and(|id| id == checkpoint)
            });
            let Some(refused) = zombie_after else {
                return Err(format!(
                    "batch `{}` written again at {again} although its committer record said so at {}",
                    batch.label, record.at
                ));
            };
            why.push(format!(
                "written at {before} by the recovery (committer record at {}, generation {}), and again at {again} by a zombie that had read the committer before the recovery fenced it; its record was refused at {} (generation {} fenced)",
                record.at,
                record.generation.map_or("?".to_string(), |g| g.to_string()),
                refused.at,
                refused.generation.map_or("?".to_string(), |g| g.to_string())
            ));
            continue;
        }
        // A zombie of the failed attempt that appended before the recovery fenced the committer
        // is refused at its record: the repeat is the write-ahead log's inherent duplicate. The
        // zombie may have gone on recording batches after the failover that made it one, until
        // the recovery fenced it: its failure is the last before the refusal.
        let refused = output.committer_refused.iter().find(|w| {
            w.key.ends_with(&key_suffix)
                && before <= w.at
                && w.at <= again
                && crate::codec::decode_message::<u64>(&w.value).is_ok_and(|id| id == checkpoint)
        });
        // Otherwise the failover may reach the writer while its append is in flight, so the
        // failure can precede the append itself: it must only follow the writer's previous
        // committer record (its last completed batch) and precede the repeat.
        let previous_record = output
            .committer_history
            .iter()
            .filter(|w| w.key.ends_with(&key_suffix) && w.at <= before)
            .map(|w| w.at)
            .max()
            .unwrap_or(Instant::ZERO);
        let failure = match refused {
            Some(record) => failures.iter().rev().find(|(at, _)| *at <= record.at),
            None => failures
                .iter()
                .find(|(at, _)| previous_record <= *at && *at <= again),
        };
        let Some((failed_at, reason)) = failure else {
            return Err(format!(
                "batch `{}` written at {before} and again at {again} with no failure since the previous committer record at {previous_record}",
                batch.label
            ));
        };
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
    fn a_zombie_that_went_on_recording_after_its_failover_is_named_by_its_refusal() {
        let batch = BatchCopies {
            label: "sink#0 checkpoint 3".into(),
            records: 10,
            copies: 2,
            written_at: vec![Instant::from_ms(300), Instant::from_ms(350)],
        };
        // Failed over at 100; the zombie still recorded checkpoint 2 at 250, wrote 3's batch
        // at 300 and was refused at its record at 320.
        let failover = vec![(Instant::from_ms(100), "taskmanager-1 lost".to_string())];
        let output = SinkOutput {
            committer_history: vec![committer_write(250, 2)],
            committer_refused: vec![committer_write(320, 3)],
            ..SinkOutput::default()
        };
        let why = explain_repeat(&batch, &output, &failover).unwrap();
        assert!(
            why.contains("by a zombie of the attempt that failed at 0.100s"),
            "{why}"
        );
        let unrefused = SinkOutput {
            committer_refused: Vec::new(),
            ..output
        };
        assert!(explain_repeat(&batch, &unrefused, &failover).is_err());
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

    #[test]
    fn a_zombies_copy_after_the_recovery_recorded_is_named_only_with_its_later_refusal() {
        let batch = BatchCopies {
            label: "sink#0 checkpoint 6".into(),
            records: 10,
            copies: 2,
            written_at: vec![Instant::from_ms(841), Instant::from_ms(858)],
        };
        let failover = vec![(Instant::from_ms(702), "taskmanager-1 lost".to_string())];
        // The recovery (generation 2) wrote and recorded 6; the zombie (generation 1), which
        // read the committer before the fence, appended at 858 and was refused at 874.
        let recovery = KvWrite {
            generation: Some(2),
            ..committer_write(850, 6)
        };
        let output = SinkOutput {
            committer_history: vec![committer_write(506, 5), recovery.clone()],
            committer_refused: vec![committer_write(874, 6)],
            ..SinkOutput::default()
        };
        let why = explain_repeat(&batch, &output, &failover).unwrap();
        assert!(
            why.contains("again at 0.858s by a zombie") && why.contains("refused at 0.874s"),
            "{why}"
        );
        // Without the refusal, or with it before the copy, or from the recording generation
        // itself, the copy came despite the record: a bug.
        for refused in [vec![], vec![committer_write(855, 6)], vec![recovery]] {
            let output = SinkOutput {
                committer_refused: refused,
                ..output.clone()
            };
            let error = explain_repeat(&batch, &output, &failover).unwrap_err();
            assert!(
                error.contains("although its committer record said so"),
                "{error}"
            );
        }
    }
}
