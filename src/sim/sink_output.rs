//! What the sink left outside the job, as the checker reads it after a run: the output log
//! with each record's transaction and batch header, the broker's transactions, and the
//! key-value store with its history of writes.

use crate::api::jobs::OUTPUT_TOPIC;
use crate::api::value::Value;
use crate::connectors::sink_writer::upsert_key;
use crate::services::broker::{read_log, BrokerStorage, LogEntry};
use crate::services::kv_store::{KvStorage, KvWrite};
use crate::services::messages::IsolationLevel;
use crate::services::transaction_table::{TransactionRecord, TransactionStatus};
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

/// Prefix of the write-ahead sink's committer records in the key-value store.
pub const COMMITTER_KEY_PREFIX: &str = "checkpoint-committer/";

/// The sink's effects after a run.
#[derive(Clone, Debug, Default)]
pub struct SinkOutput {
    /// The output topic's partitions as the broker holds them: each record with its
    /// transaction, batch header and append.
    pub logs: Vec<Vec<LogEntry>>,
    /// Every transaction the broker saw, timeouts applied as of the run's end.
    pub transactions: Vec<TransactionRecord>,
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
    /// Reads the broker and the store at the end of a run (`now`).
    pub fn collect(broker: &BrokerStorage, kv: &KvStorage, now: Instant) -> SinkOutput {
        let transactions = broker.transactions_at(now);
        let logs = broker.read_all(OUTPUT_TOPIC);
        let is_upsert = |key: &str| !key.starts_with(COMMITTER_KEY_PREFIX);
        let decode = |bytes: &[u8]| -> Value {
            crate::codec::decode_message(bytes).expect("the idempotent sink writes values")
        };
        SinkOutput {
            logs,
            transactions,
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
    pub fn read(&self, isolation: IsolationLevel) -> Vec<Value> {
        self.logs
            .iter()
            .flat_map(|log| read_log(log, &self.transactions, 0, usize::MAX, isolation).records)
            .map(|(_, bytes)| decode(&bytes))
            .collect()
    }

    /// Records appended to the output topic, visible or not.
    pub fn appended(&self) -> usize {
        self.logs.iter().map(Vec::len).sum()
    }

    /// Read committed: records at or past a partition's last stable offset (held back by a
    /// transaction still open when the run ended).
    pub fn behind_open_transactions(&self) -> usize {
        self.logs
            .iter()
            .map(|log| {
                let read = read_log(
                    log,
                    &self.transactions,
                    0,
                    usize::MAX,
                    IsolationLevel::ReadCommitted,
                );
                read.blocked_at.map_or(0, |at| log.len() - at as usize)
            })
            .sum()
    }

    /// Records in transactions that ended in `wanted` (matched by status kind).
    pub fn records_in(&self, wanted: fn(&TransactionStatus) -> bool) -> usize {
        self.logs
            .iter()
            .flatten()
            .filter(|e| {
                e.transaction
                    .is_some_and(|t| wanted(&self.transactions[t].status))
            })
            .count()
    }
}

/// Records by key (a pair's first field), each key's in the order given.
pub fn per_key(values: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut keys: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for value in values {
        keys.entry(upsert_key(value)).or_default().push(value);
    }
    keys
}

/// The first difference between two outputs compared key by key, in order.
pub fn first_per_key_difference(expected: &[Value], actual: &[Value]) -> Option<String> {
    let (expected, actual) = (per_key(expected), per_key(actual));
    let keys: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for key in keys {
        let (want, got) = (
            expected.get(key).map_or(&[][..], Vec::as_slice),
            actual.get(key).map_or(&[][..], Vec::as_slice),
        );
        if want == got {
            continue;
        }
        let position = want.iter().zip(got).take_while(|(a, b)| a == b).count();
        let show = |list: &[&Value]| {
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
pub fn deduplicate_batches(logs: &[Vec<LogEntry>]) -> (Vec<Value>, Vec<BatchCopies>) {
    let records: Vec<&LogEntry> = logs.iter().flatten().collect();
    let mut batches: BTreeMap<String, BatchCopies> = BTreeMap::new();
    let mut order = Vec::new();
    let mut kept = Vec::new();
    let mut index = 0;
    while index < records.len() {
        let (label, append) = (records[index].batch.clone(), records[index].append);
        let run = records[index..]
            .iter()
            .take_while(|r| r.batch == label && r.append == append)
            .count();
        let run_records = &records[index..index + run];
        index += run;
        let Some(label) = label else {
            kept.extend(run_records.iter().map(|r| decode(&r.bytes)));
            continue;
        };
        match batches.get_mut(&label) {
            Some(batch) => {
                batch.copies += 1;
                batch.written_at.push(run_records[0].appended_at);
            }
            None => {
                kept.extend(run_records.iter().map(|r| decode(&r.bytes)));
                order.push(label.clone());
                let written_at = vec![run_records[0].appended_at];
                let (label, records, copies) = (label, run, 1);
                batches.insert(
                    label.clone(),
                    BatchCopies {
                        label,
                        records,
                        copies,
                        written_at,
                    },
                );
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

    fn pair(key: &str, n: i64) -> Value {
        Value::pair(Value::Str(key.into()), Value::Int(n))
    }

    fn record(value: Value, batch: Option<&str>, append: u64) -> LogEntry {
        LogEntry {
            bytes: crate::codec::encode_message(&value),
            transaction: None,
            batch: batch.map(str::to_string),
            append,
            appended_at: Instant::from_ms(append),
        }
    }

    #[test]
    fn per_key_order_matters_across_keys_it_does_not() {
        let expected = vec![pair("a", 1), pair("b", 1), pair("a", 2)];
        let interleaved = vec![pair("b", 1), pair("a", 1), pair("a", 2)];
        assert_eq!(first_per_key_difference(&expected, &interleaved), None);
        let swapped = vec![pair("a", 2), pair("b", 1), pair("a", 1)];
        let difference = first_per_key_difference(&expected, &swapped).unwrap();
        assert!(
            difference.contains("key `a`: record 1 is (a,1)"),
            "{difference}"
        );
        let lost = vec![pair("a", 1), pair("b", 1)];
        let difference = first_per_key_difference(&expected, &lost).unwrap();
        assert!(
            difference.contains("record 2 is (a,2) in the oracle's output, nothing"),
            "{difference}"
        );
    }

    #[test]
    fn a_batch_written_twice_is_kept_once_and_counted() {
        let log = vec![
            record(pair("a", 1), Some("sink#0 checkpoint 1"), 1),
            record(pair("a", 2), Some("sink#0 checkpoint 1"), 1),
            record(pair("a", 1), Some("sink#0 checkpoint 1"), 2),
            record(pair("a", 2), Some("sink#0 checkpoint 1"), 2),
            record(pair("a", 3), Some("sink#0 checkpoint 2"), 3),
        ];
        let (kept, batches) = deduplicate_batches(&[log]);
        assert_eq!(kept, vec![pair("a", 1), pair("a", 2), pair("a", 3)]);
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
