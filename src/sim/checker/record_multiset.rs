//! The plain sink's rows, compared as multisets of records: at-least-once (every oracle record,
//! duplicates counted) and at-most-once (a subset, nothing twice).

use super::*;

/// A 128-bit fingerprint of a record: two FNV-1a 64 hashes with different offsets. Sorting
/// fingerprints compares million-record outputs as multisets in well under a second.
/// Taken over a record's serialized bytes: postcard's encoding of a value is canonical.
pub(super) fn fingerprint(bytes: &[u8]) -> u128 {
    let mut low = Fnv64(0xcbf2_9ce4_8422_2325);
    let mut high = Fnv64(0x8422_2325_cbf2_9ce4);
    low.write(bytes);
    high.write(bytes);
    ((high.0 as u128) << 64) | low.0 as u128
}

pub(super) struct Fnv64(u64);

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

pub(super) fn sorted_fingerprints(records: &RecordBatch) -> Vec<u128> {
    let mut prints: Vec<u128> = records.iter().map(fingerprint).collect();
    prints.sort_unstable();
    prints
}

/// How two sorted fingerprint multisets differ.
#[derive(Default)]
pub(super) struct Differences {
    /// The first fingerprint `expected` holds more often than `actual`.
    missing: Option<u128>,
    /// The first fingerprint `actual` holds that `expected` lacks entirely.
    foreign: Option<u128>,
    /// How many of `actual`'s records `expected` lacks entirely.
    foreign_count: usize,
}

pub(super) fn multiset_differences(expected: &[u128], actual: &[u128]) -> Differences {
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

/// The record with fingerprint `print`, decoded to be shown, and its bytes.
fn find(records: &RecordBatch, print: u128) -> (Value, &[u8]) {
    let bytes = records
        .iter()
        .find(|bytes| fingerprint(bytes) == print)
        .expect("the fingerprint came from these records");
    let value = crate::codec::decode_message(bytes).expect("the sink encoded it");
    (value, bytes)
}

fn occurrences(records: &RecordBatch, bytes: &[u8]) -> usize {
    records.iter().filter(|record| *record == bytes).count()
}

pub(super) fn run_length(prints: &[u128], start: usize) -> usize {
    prints[start..]
        .iter()
        .take_while(|p| **p == prints[start])
        .count()
}

/// Every expected record reached the sink (duplicates allowed). Records the oracle never
/// produced fail the check unless `foreign_allowed` (at-least-once: a replayed record counted
/// twice makes outputs of its own; a job reading processing time: a rolled-back attempt's
/// output depends on times no reference replays).
pub(super) fn sink_covers(
    expected: &RecordBatch,
    actual: &RecordBatch,
    foreign_allowed: bool,
) -> Result<String, String> {
    let found = multiset_differences(&sorted_fingerprints(expected), &sorted_fingerprints(actual));
    if let Some(print) = found.missing {
        let (value, bytes) = find(expected, print);
        let count = occurrences(expected, bytes);
        let seen = occurrences(actual, bytes);
        return Err(format!(
            "record {value} expected {count} time(s), the sink wrote it {seen} time(s)"
        ));
    }
    if let (Some(print), false) = (found.foreign, foreign_allowed) {
        return Err(format!(
            "the sink wrote {}, which the oracle never produced",
            find(actual, print).0
        ));
    }
    let duplicates = actual.len() - expected.len() - found.foreign_count;
    let mut detail = format!("all {} records present; {duplicates} duplicate(s) (the plain sink repeats after a restore)", expected.len());
    if found.foreign_count > 0 {
        detail.push_str(&format!(
            "; {} record(s) the oracle never produced (replayed records counted twice, or written at processing times a rollback discarded)",
            found.foreign_count
        ));
    }
    Ok(detail)
}

/// Every record written is one the oracle produced (duplicates and losses allowed).
pub(super) fn only_oracle_records(
    expected: &RecordBatch,
    actual: &RecordBatch,
) -> Result<String, String> {
    let found = multiset_differences(&sorted_fingerprints(expected), &sorted_fingerprints(actual));
    if let Some(print) = found.foreign {
        return Err(format!(
            "the sink wrote {}, which the oracle never produced",
            find(actual, print).0
        ));
    }
    Ok(format!(
        "{} record(s), each one the oracle produced",
        actual.len()
    ))
}

/// At-most-once: the sink wrote no record more often than the oracle did; the records it
/// never wrote are the losses.
pub(super) fn sink_within(expected: &RecordBatch, actual: &RecordBatch) -> Result<String, String> {
    // The roles swap: every record written must be covered by the oracle's.
    let found = multiset_differences(&sorted_fingerprints(actual), &sorted_fingerprints(expected));
    if let Some(print) = found.missing {
        let (value, bytes) = find(actual, print);
        let count = occurrences(expected, bytes);
        let written = occurrences(actual, bytes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::value::Value;

    fn words(list: &[&str]) -> RecordBatch {
        let mut records = RecordBatch::new();
        list.iter()
            .for_each(|w| records.push_encoded(&Value::Str((*w).into())));
        records
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
