//! What the sink left outside the job, as the checker reads it after a run: the output log
//! with each record's transaction and batch header, the broker's transactions, and the
//! key-value store with its history of writes.

use crate::api::jobs::OUTPUT_TOPIC;
use crate::api::value::Value;
use crate::connectors::sink_writer::upsert_key;
use crate::services::broker::BrokerStorage;
use crate::services::kv_store::{KvStorage, KvWrite};
use crate::services::messages::IsolationLevel;
use crate::services::partition_log::{read_log, PartitionLog};
use crate::services::record_batch::RecordBatch;
use crate::services::transaction_table::{TransactionRecord, TransactionStatus};
use crate::time::{Duration, Instant};
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// Prefix of the write-ahead sink's committer records in the key-value store.
pub const COMMITTER_KEY_PREFIX: &str = "checkpoint-committer/";

/// The sink's effects after a run.
#[derive(Clone, Debug, Default)]
pub struct SinkOutput {
    /// The output topic's partitions as the broker holds them: each record with its
    /// transaction, batch header and append.
    pub logs: Vec<PartitionLog>,
    /// Every transaction the broker saw, timeouts applied once the hanging ones expired.
    pub transactions: Vec<TransactionRecord>,
    /// Transactions still open when the run ended, as they stood then. Nobody commits them
    /// (a zombie's, or one of an attempt that failed over): they hold read_committed readers
    /// back until the broker aborts them at their timeout, as Kafka does a hanging
    /// transaction. The output is read after that.
    pub hanging: Vec<TransactionRecord>,
    /// The broker's `transaction.max.timeout.ms`.
    pub max_transaction_timeout: Duration,
    /// The key-value store's final contents (committer records left out).
    pub kv: BTreeMap<String, Value>,
    /// Every upsert, in the order applied (committer records left out).
    pub kv_history: Vec<KvWrite>,
    /// The write-ahead sink's committer records, in the order written.
    pub committer_history: Vec<KvWrite>,
    /// Committer records the store refused because a newer attempt had fenced the writer.
    pub committer_refused: Vec<KvWrite>,
}

impl SinkOutput {
    /// Reads the broker and the store at the end of a run (`now`), the output topic once the
    /// broker timed out the transactions left hanging.
    pub fn collect(broker: &BrokerStorage, kv: &KvStorage, now: Instant) -> SinkOutput {
        let hanging: Vec<TransactionRecord> = broker
            .transactions_at(now)
            .into_iter()
            .filter(|t| t.status == TransactionStatus::Open)
            .collect();
        let settled = hanging
            .iter()
            .map(|t| t.started_at.add(t.timeout))
            .fold(now, Instant::max);
        let transactions = broker.transactions_at(settled);
        let logs = broker.read_all(OUTPUT_TOPIC);
        let is_upsert = |key: &str| !key.starts_with(COMMITTER_KEY_PREFIX);
        let decode = |bytes: &[u8]| -> Value {
            crate::codec::decode_message(bytes).expect("the idempotent sink writes values")
        };
        SinkOutput {
            logs,
            transactions,
            hanging,
            max_transaction_timeout: broker.max_transaction_timeout(),
            kv: kv
                .contents()
                .into_iter()
                .filter(|(key, _)| is_upsert(key))
                .map(|(key, bytes)| (key, decode(&bytes)))
                .collect(),
            kv_history: kv
                .history()
                .into_iter()
                .filter(|w| is_upsert(&w.key))
                .collect(),
            committer_history: kv
                .history()
                .into_iter()
                .filter(|w| !is_upsert(&w.key))
                .collect(),
            committer_refused: kv.refused(),
        }
    }

    /// The records a consumer at `isolation` reads, in log order.
    /// Read committed stops at the last stable offset, as a Kafka consumer does: what lies
    /// behind a transaction still open is not read.
    pub fn read(&self, isolation: IsolationLevel) -> RecordBatch {
        let mut records = RecordBatch::new();
        for log in &self.logs {
            let read = read_log(log, &self.transactions, 0, usize::MAX, isolation);
            records.extend_from(&read.records);
        }
        records
    }

    /// What a consumer at `isolation` read that consumed the topic while the jobs ran, stage
    /// by stage (`stage_starts`: when each job after the first was submitted): within a
    /// stage partition by partition, each record counted in the stage it was appended in.
    /// A key lives in one partition per stage, but a rescaled job may move it to another, so
    /// one read of all partitions at the end would mix its stages up.
    pub fn read_staged(&self, isolation: IsolationLevel, stage_starts: &[Instant]) -> RecordBatch {
        if stage_starts.is_empty() {
            return self.read(isolation);
        }
        let mut stages = vec![RecordBatch::new(); stage_starts.len() + 1];
        for log in &self.logs {
            let read = read_log(log, &self.transactions, 0, usize::MAX, isolation);
            let mut visible = read.offsets.iter().zip(read.records.iter()).peekable();
            for entry in log.entries() {
                let Some((offset, bytes)) = visible.peek() else {
                    break;
                };
                if **offset != entry.offset {
                    continue;
                }
                let appended_at = entry.header.appended_at;
                let stage = stage_starts.partition_point(|start| *start <= appended_at);
                stages[stage].push(bytes);
                visible.next();
            }
        }
        let mut records = RecordBatch::new();
        stages.iter().for_each(|stage| records.extend_from(stage));
        records
    }

    /// Records appended to the output topic, visible or not.
    pub fn appended(&self) -> usize {
        self.logs.iter().map(PartitionLog::len).sum()
    }

    /// Records in transactions that ended in `wanted` (matched by status kind).
    pub fn records_in(&self, wanted: fn(&TransactionStatus) -> bool) -> usize {
        self.logs
            .iter()
            .flat_map(PartitionLog::entries)
            .filter(|e| {
                e.header
                    .transaction
                    .is_some_and(|t| wanted(&self.transactions[t].status))
            })
            .count()
    }
}

/// One key's records, summarized: how many, and a hash of their bytes that depends on order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct KeyDigest {
    records: u64,
    sequence: u64,
}

fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = FxHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The hash of the key a record is compared under (a pair's first field, as `upsert_key`).
fn key_hash(encoded: &[u8]) -> u64 {
    hash_of(Value::encoded_key(encoded).expect("the sink encoded values"))
}

/// Every key's digest, in one pass over the records: memory by keys, not by records.
fn key_digests(records: &RecordBatch) -> FxHashMap<u64, KeyDigest> {
    let mut digests: FxHashMap<u64, KeyDigest> = FxHashMap::default();
    for bytes in records.iter() {
        let digest = digests.entry(key_hash(bytes)).or_default();
        digest.records += 1;
        // Rotate-xor-multiply: a swap of two records changes the result.
        digest.sequence =
            (digest.sequence.rotate_left(23) ^ hash_of(bytes)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    digests
}

/// The records of the keys whose hash is in `keys`, by key, each key's in order.
fn records_of_keys(records: &RecordBatch, keys: &FxHashSet<u64>) -> BTreeMap<String, Vec<Value>> {
    let mut found: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for bytes in records.iter() {
        if keys.contains(&key_hash(bytes)) {
            let value = decode(bytes);
            found.entry(upsert_key(&value)).or_default().push(value);
        }
    }
    found
}

/// An expected output and its per-key digests, computed at its first comparison and kept
/// for the next (the reference's output is compared with both runs' outputs).
pub struct ExpectedOutput<'a> {
    records: &'a RecordBatch,
    digests: std::cell::OnceCell<FxHashMap<u64, KeyDigest>>,
}

impl<'a> ExpectedOutput<'a> {
    /// `records`, not yet digested.
    pub fn new(records: &'a RecordBatch) -> ExpectedOutput<'a> {
        ExpectedOutput {
            records,
            digests: std::cell::OnceCell::new(),
        }
    }

    /// The expected records.
    pub fn records(&self) -> &'a RecordBatch {
        self.records
    }

    /// `first_per_key_difference(self.records(), actual)`.
    pub fn first_difference(&self, actual: &RecordBatch) -> Option<String> {
        let want = self.digests.get_or_init(|| key_digests(self.records));
        first_difference_of(self.records, want, actual)
    }
}

/// The first difference between two outputs compared key by key, in order. One pass per side
/// compares digests per key; only when some differ does a second, focused pass collect those
/// keys' records to name the first difference.
pub fn first_per_key_difference(expected: &RecordBatch, actual: &RecordBatch) -> Option<String> {
    ExpectedOutput::new(expected).first_difference(actual)
}

fn first_difference_of(
    expected: &RecordBatch,
    want: &FxHashMap<u64, KeyDigest>,
    actual: &RecordBatch,
) -> Option<String> {
    let got = key_digests(actual);
    let differing: FxHashSet<u64> = want
        .iter()
        .filter(|(key, digest)| got.get(key) != Some(digest))
        .map(|(key, _)| *key)
        .chain(got.keys().filter(|key| !want.contains_key(key)).copied())
        .collect();
    if differing.is_empty() {
        return None;
    }
    let (expected, actual) = (
        records_of_keys(expected, &differing),
        records_of_keys(actual, &differing),
    );
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for key in keys {
        let (want, got) = (
            expected.get(key).map_or(&[][..], Vec::as_slice),
            actual.get(key).map_or(&[][..], Vec::as_slice),
        );
        if want == got {
            continue; // Two keys whose hashes collide: each key's records agree.
        }
        let position = want.iter().zip(got).take_while(|(a, b)| a == b).count();
        let show = |list: &[Value]| {
            list.get(position)
                .map_or("nothing".to_string(), |v| v.to_string())
        };
        return Some(format!(
            "key `{key}`: record {} is {} in the oracle's output, {} in the reader's ({} vs {} records for this key)",
            position + 1,
            show(want),
            show(got),
            want.len(),
            got.len()
        ));
    }
    None
}

/// Each key's records in `actual` are the first records of that key in `expected`: what a
/// job that stopped early may leave, nothing lost in between, nothing twice.
pub fn per_key_prefix(expected: &RecordBatch, actual: &RecordBatch) -> Result<String, String> {
    let by_key = |records: &'_ RecordBatch| {
        let mut keys: BTreeMap<Vec<u8>, Vec<Value>> = BTreeMap::new();
        for bytes in records.iter() {
            let key = Value::encoded_key(bytes).expect("the sink encoded values");
            keys.entry(key.to_vec()).or_default().push(decode(bytes));
        }
        keys
    };
    let (want, got) = (by_key(expected), by_key(actual));
    for (key, records) in &got {
        let oracle = want.get(key).map_or(&[][..], Vec::as_slice);
        let position = records
            .iter()
            .zip(oracle)
            .take_while(|(a, b)| a == b)
            .count();
        if position < records.len() {
            let show = oracle
                .get(position)
                .map_or("nothing".to_string(), Value::to_string);
            return Err(format!(
                "record {} of key `{}` is {} in the output, {show} in the oracle's: not a prefix",
                position + 1,
                upsert_key(&records[position]),
                records[position]
            ));
        }
    }
    Ok(format!(
        "{} of {} records, each key's a prefix of the oracle's",
        actual.len(),
        expected.len()
    ))
}

/// A write-ahead batch as the output log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchCopies {
    /// Its header: `sink#0 checkpoint 3`.
    pub label: String,
    /// Records per copy.
    pub records: usize,
    /// How many times it was written.
    pub copies: usize,
    /// When each copy was appended.
    pub written_at: Vec<Instant>,
}

fn decode(bytes: &[u8]) -> Value {
    crate::codec::decode_message(bytes).expect("the sink writes values")
}

/// Splits the logs into write-ahead batches: each batch is written by one append request, so
/// a label seen in a second append was written again. Returns the output with every batch
/// kept once, and the batches.
pub fn deduplicate_batches(logs: &[PartitionLog]) -> (RecordBatch, Vec<BatchCopies>) {
    let mut batches: BTreeMap<String, BatchCopies> = BTreeMap::new();
    let mut order = Vec::new();
    let mut kept = RecordBatch::new();
    for log in logs {
        let mut entries = log.entries().peekable();
        while let Some(first) = entries.next() {
            let header = first.header;
            let mut run = vec![first.bytes];
            while let Some(entry) = entries.next_if(|e| e.header.append == header.append) {
                run.push(entry.bytes);
            }
            let Some(label) = &header.batch else {
                run.iter().for_each(|bytes| kept.push(bytes));
                continue;
            };
            match batches.get_mut(label) {
                Some(batch) => {
                    batch.copies += 1;
                    batch.written_at.push(header.appended_at);
                }
                None => {
                    run.iter().for_each(|bytes| kept.push(bytes));
                    order.push(label.clone());
                    let batch = BatchCopies {
                        label: label.clone(),
                        records: run.len(),
                        copies: 1,
                        written_at: vec![header.appended_at],
                    };
                    batches.insert(label.clone(), batch);
                }
            }
        }
    }
    let list = order.into_iter().map(|l| batches[&l].clone()).collect();
    (kept, list)
}

/// A key whose stored value went back to an earlier one (after a recovery) before moving on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JumpBack {
    /// The key.
    pub key: String,
    /// The value before the jump.
    pub from: Value,
    /// The earlier value it went back to.
    pub to: Value,
    /// When.
    pub at: Instant,
    /// The key's final value.
    pub last: Value,
}

/// Finds every jump back in the store's history: a write of a value the key held before,
/// other than the one it holds now.
pub fn jump_backs(history: &[KvWrite]) -> Vec<JumpBack> {
    let decode = |bytes: &[u8]| -> Value {
        crate::codec::decode_message(bytes).expect("the idempotent sink writes values")
    };
    let mut by_key: BTreeMap<&str, Vec<(Instant, Value)>> = BTreeMap::new();
    for write in history {
        by_key
            .entry(&write.key)
            .or_default()
            .push((write.at, decode(&write.value)));
    }
    let mut found = Vec::new();
    for (key, writes) in by_key {
        let last = writes.last().expect("a key has a write").1.clone();
        for index in 1..writes.len() {
            let (at, value) = &writes[index];
            let previous = &writes[index - 1].1;
            let seen_before = writes[..index - 1].iter().any(|(_, v)| v == value);
            if value != previous && seen_before {
                found.push(JumpBack {
                    key: key.to_string(),
                    from: previous.clone(),
                    to: value.clone(),
                    at: *at,
                    last: last.clone(),
                });
                break; // One jump per key is what the report shows.
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(values: &[Value]) -> RecordBatch {
        let mut records = RecordBatch::new();
        values.iter().for_each(|value| records.push_encoded(value));
        records
    }

    fn pair(key: &str, n: i64) -> Value {
        Value::pair(Value::Str(key.into()), Value::Int(n))
    }

    fn append(log: &mut PartitionLog, values: &[Value], batch: Option<&str>, append: u64) {
        let mut records = RecordBatch::new();
        values.iter().for_each(|value| records.push_encoded(value));
        let at = Instant::from_ms(append);
        log.append(&records, None, batch.map(str::to_string), append, at);
    }

    #[test]
    fn per_key_order_matters_across_keys_it_does_not() {
        let expected = batch(&[pair("a", 1), pair("b", 1), pair("a", 2)]);
        let interleaved = batch(&[pair("b", 1), pair("a", 1), pair("a", 2)]);
        assert_eq!(first_per_key_difference(&expected, &interleaved), None);
        let swapped = batch(&[pair("a", 2), pair("b", 1), pair("a", 1)]);
        let difference = first_per_key_difference(&expected, &swapped).unwrap();
        assert!(
            difference.contains("key `a`: record 1 is (a,1)"),
            "{difference}"
        );
        let foreign = batch(&[pair("a", 1), pair("b", 1), pair("a", 2), pair("c", 1)]);
        let difference = first_per_key_difference(&expected, &foreign).unwrap();
        assert!(
            difference.contains("key `c`: record 1 is nothing in the oracle's output, (c,1)"),
            "{difference}"
        );
        let lost = batch(&[pair("a", 1), pair("b", 1)]);
        let difference = first_per_key_difference(&expected, &lost).unwrap();
        assert!(
            difference.contains("record 2 is (a,2) in the oracle's output, nothing"),
            "{difference}"
        );
    }

    #[test]
    fn a_batch_written_twice_is_kept_once_and_counted() {
        let mut log = PartitionLog::new();
        let first = [pair("a", 1), pair("a", 2)];
        append(&mut log, &first, Some("sink#0 checkpoint 1"), 1);
        append(&mut log, &first, Some("sink#0 checkpoint 1"), 2);
        append(&mut log, &[pair("a", 3)], Some("sink#0 checkpoint 2"), 3);
        let (kept, batches) = deduplicate_batches(&[log]);
        assert_eq!(kept, batch(&[pair("a", 1), pair("a", 2), pair("a", 3)]));
        assert_eq!(batches[0].copies, 2);
        assert_eq!(batches[0].records, 2);
        assert_eq!(batches[1].copies, 1);
    }

    #[test]
    fn a_value_written_again_after_a_later_one_is_a_jump_back() {
        let write = |at: u64, n: i64| KvWrite {
            at: Instant::from_ms(at),
            writer: "sink#0".into(),
            key: "a".into(),
            value: crate::codec::encode_message(&pair("a", n)),
            generation: None,
        };
        let history = vec![
            write(1, 1),
            write(2, 2),
            write(3, 3),
            write(9, 2),
            write(10, 3),
            write(11, 4),
        ];
        let jumps = jump_backs(&history);
        assert_eq!(jumps.len(), 1);
        assert_eq!(
            (jumps[0].from.clone(), jumps[0].to.clone()),
            (pair("a", 3), pair("a", 2))
        );
        assert_eq!(jumps[0].last, pair("a", 4));
        assert!(jump_backs(&history[..3]).is_empty());
    }
}
