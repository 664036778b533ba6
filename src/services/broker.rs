//! The broker node: a replayable, partitioned log (Kafka's role). Input topics are loaded
//! before the job starts; sinks append to output topics, plainly or inside transactions;
//! consumer groups commit offsets. Its storage is durable: every append is synced before it
//! is acknowledged, and the transaction table survives a restart (Kafka's transaction log).

use crate::runtime::rpc::serve;
use crate::runtime::sim_time;
use crate::services::messages::{BrokerRequest, BrokerResponse, IsolationLevel};
use crate::services::partition_log::{read_log, PartitionLog};
use crate::services::record_batch::RecordBatch;
use crate::services::transaction_table::{TransactionIndex, TransactionRecord, TransactionTable};
use crate::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Kafka's default `transaction.max.timeout.ms`.
pub const TRANSACTION_MAX_TIMEOUT_DEFAULT: Duration = Duration::from_secs(15 * 60);

/// A topic or partition the broker does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnknownPartition {
    /// No such topic.
    #[error("no topic `{topic}`")]
    Topic {
        /// The topic asked for.
        topic: String,
    },
    /// The topic has fewer partitions.
    #[error("topic `{topic}` has no partition {partition}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },
}

/// The broker's durable storage, shared by every incarnation of the node within a run.
#[derive(Clone)]
pub struct BrokerStorage {
    state: Arc<Mutex<BrokerState>>,
}

struct BrokerState {
    partitions: BTreeMap<String, Vec<PartitionLog>>,
    committed: BTreeMap<(String, String, u32), u64>,
    generations: BTreeMap<String, u32>,
    transactions: TransactionTable,
    appends: u64,
}

impl BrokerStorage {
    /// Empty storage whose transaction coordinator caps timeouts at `max_transaction_timeout`.
    pub fn new(max_transaction_timeout: Duration) -> BrokerStorage {
        BrokerStorage {
            state: Arc::new(Mutex::new(BrokerState {
                partitions: BTreeMap::new(),
                committed: BTreeMap::new(),
                generations: BTreeMap::new(),
                transactions: TransactionTable::new(max_transaction_timeout),
                appends: 0,
            })),
        }
    }

    /// Creates `topic` with `partition_count` empty partitions.
    pub fn create_topic(&self, topic: &str, partition_count: u32) {
        let mut state = self.lock();
        assert!(partition_count > 0);
        state
            .partitions
            .entry(topic.to_string())
            .or_insert_with(|| vec![PartitionLog::new(); partition_count as usize]);
    }

    /// Appends records to a partition (loading input, or a sink's plain write).
    pub fn append(
        &self,
        topic: &str,
        partition: u32,
        records: &RecordBatch,
    ) -> Result<(), UnknownPartition> {
        self.lock()
            .append(Instant::ZERO, topic, partition, records, None, None)
    }

    /// Every partition's log of `topic`, in partition order.
    pub fn read_all(&self, topic: &str) -> Vec<PartitionLog> {
        self.lock()
            .partitions
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    /// Aborts the transactions whose timeout ran out by `now`; then every transaction so far.
    pub fn transactions_at(&self, now: Instant) -> Vec<TransactionRecord> {
        let mut state = self.lock();
        state.transactions.expire(now);
        state.transactions.transactions().to_vec()
    }

    /// `transaction.max.timeout.ms`.
    pub fn max_transaction_timeout(&self) -> Duration {
        self.lock().transactions.max_timeout()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BrokerState> {
        self.state
            .lock()
            .expect("no task panics while holding the broker lock")
    }

    /// Answers one request at the broker's time `now`.
    pub fn handle(&self, now: Instant, request: BrokerRequest) -> BrokerResponse {
        let mut state = self.lock();
        match request {
            BrokerRequest::Fetch {
                topic,
                partition,
                offset,
                max_records,
                isolation,
            } => state.fetch(&topic, partition, offset, max_records, isolation),
            BrokerRequest::Append {
                topic,
                partition,
                records,
                batch,
            } => match state.append(now, &topic, partition, &records, None, batch) {
                Ok(()) => BrokerResponse::Ok,
                Err(error) => BrokerResponse::Error(error.to_string()),
            },
            BrokerRequest::InitProducer {
                transactional_id,
                timeout,
            } => BrokerResponse::Initialized(state.transactions.init_producer(
                now,
                &transactional_id,
                timeout,
            )),
            BrokerRequest::ListTransactions => {
                BrokerResponse::Transactions(state.transactions.ongoing(now))
            }
            BrokerRequest::AppendTransactional {
                transactional_id,
                identity,
                topic,
                partition,
                records,
            } => state.append_transactional(
                now,
                &transactional_id,
                identity,
                &topic,
                partition,
                &records,
            ),
            BrokerRequest::EndTransaction {
                transactional_id,
                identity,
                commit,
            } => {
                let result = if commit {
                    state.transactions.commit(now, &transactional_id, identity)
                } else {
                    state.transactions.abort(now, &transactional_id, identity)
                };
                match result {
                    Ok(()) => BrokerResponse::Ok,
                    Err(error) => BrokerResponse::Transaction(error),
                }
            }
            BrokerRequest::CommitOffset {
                group,
                topic,
                partition,
                offset,
                generation,
            } => {
                let current = state.generations.get(&group).copied().unwrap_or(0);
                if generation < current {
                    return BrokerResponse::Error(format!("fenced: group `{group}` is at generation {current}, the commit came from {generation}"));
                }
                state.generations.insert(group.clone(), generation);
                state.committed.insert((group, topic, partition), offset);
                BrokerResponse::Ok
            }
            BrokerRequest::CommittedOffset {
                group,
                topic,
                partition,
                generation,
            } => {
                let current = state.generations.entry(group.clone()).or_insert(0);
                *current = (*current).max(generation);
                BrokerResponse::Offset(state.committed.get(&(group, topic, partition)).copied())
            }
            BrokerRequest::PartitionCount { topic } => match state.partitions.get(&topic) {
                Some(partitions) => BrokerResponse::Partitions(partitions.len() as u32),
                None => BrokerResponse::Error(format!("no topic `{topic}`")),
            },
        }
    }
}

impl BrokerState {
    fn log_mut(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<&mut PartitionLog, UnknownPartition> {
        let partitions = self
            .partitions
            .get_mut(topic)
            .ok_or_else(|| UnknownPartition::Topic {
                topic: topic.to_string(),
            })?;
        partitions
            .get_mut(partition as usize)
            .ok_or_else(|| UnknownPartition::Partition {
                topic: topic.to_string(),
                partition,
            })
    }

    fn append(
        &mut self,
        now: Instant,
        topic: &str,
        partition: u32,
        records: &RecordBatch,
        transaction: Option<TransactionIndex>,
        batch: Option<String>,
    ) -> Result<(), UnknownPartition> {
        self.appends += 1;
        let append = self.appends;
        self.log_mut(topic, partition)?
            .append(records, transaction, batch, append, now);
        Ok(())
    }

    fn append_transactional(
        &mut self,
        now: Instant,
        transactional_id: &str,
        identity: crate::services::transaction_table::ProducerIdentity,
        topic: &str,
        partition: u32,
        records: &RecordBatch,
    ) -> BrokerResponse {
        if let Err(error) = self.log_mut(topic, partition) {
            return BrokerResponse::Error(error.to_string());
        }
        let index =
            match self
                .transactions
                .append(now, transactional_id, identity, records.len() as u64)
            {
                Ok(index) => index,
                Err(error) => return BrokerResponse::Transaction(error),
            };
        self.append(now, topic, partition, records, Some(index), None)
            .expect("checked above");
        BrokerResponse::Ok
    }

    fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_records: u32,
        isolation: IsolationLevel,
    ) -> BrokerResponse {
        let Some(log) = self
            .partitions
            .get(topic)
            .and_then(|p| p.get(partition as usize))
        else {
            return BrokerResponse::Error(format!("no partition {topic}/{partition}"));
        };
        let read = read_log(
            log,
            self.transactions.transactions(),
            offset,
            max_records as usize,
            isolation,
        );
        BrokerResponse::Records {
            offsets: read.offsets,
            records: read.records,
            next_offset: read.next_offset,
            end_offset: log.len() as u64,
        }
    }
}

/// The broker's main: serves requests until the node is killed.
pub async fn run_broker(storage: BrokerStorage) {
    serve(
        |request| storage.handle(sim_time::now(), request),
        BrokerResponse::Error,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::transaction_table::ProducerIdentity;

    fn commit(generation: u32, offset: u64) -> BrokerRequest {
        BrokerRequest::CommitOffset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset,
            generation,
        }
    }

    #[test]
    fn a_newer_generation_fences_commits_of_older_ones() {
        let storage = BrokerStorage::new(TRANSACTION_MAX_TIMEOUT_DEFAULT);
        storage.create_topic("t", 1);
        assert_eq!(
            storage.handle(Instant::ZERO, commit(1, 10)),
            BrokerResponse::Ok
        );
        let read = BrokerRequest::CommittedOffset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            generation: 2,
        };
        assert_eq!(
            storage.handle(Instant::ZERO, read),
            BrokerResponse::Offset(Some(10))
        );
        assert!(
            matches!(storage.handle(Instant::ZERO, commit(1, 20)), BrokerResponse::Error(e) if e.contains("fenced"))
        );
        assert_eq!(
            storage.handle(Instant::ZERO, commit(2, 20)),
            BrokerResponse::Ok
        );
    }

    #[test]
    fn fetch_reads_from_an_offset_and_reports_the_end() {
        let storage = BrokerStorage::new(TRANSACTION_MAX_TIMEOUT_DEFAULT);
        storage.create_topic("t", 2);
        storage
            .append("t", 1, &RecordBatch::of([&[1u8][..], &[2], &[3]]))
            .unwrap();
        let response = storage.handle(
            Instant::ZERO,
            BrokerRequest::Fetch {
                topic: "t".into(),
                partition: 1,
                offset: 1,
                max_records: 1,
                isolation: IsolationLevel::ReadCommitted,
            },
        );
        assert_eq!(
            response,
            BrokerResponse::Records {
                offsets: vec![1],
                records: RecordBatch::of([&[2u8][..]]),
                next_offset: 2,
                end_offset: 3
            }
        );
        assert!(matches!(
            storage.handle(
                Instant::ZERO,
                BrokerRequest::Fetch {
                    topic: "t".into(),
                    partition: 5,
                    offset: 0,
                    max_records: 1,
                    isolation: IsolationLevel::ReadUncommitted,
                }
            ),
            BrokerResponse::Error(_)
        ));
    }

    fn init(storage: &BrokerStorage, at: u64, id: &str) -> ProducerIdentity {
        match storage.handle(
            Instant::from_ms(at),
            BrokerRequest::InitProducer {
                transactional_id: id.into(),
                timeout: Duration::from_secs(10),
            },
        ) {
            BrokerResponse::Initialized(init) => init.identity,
            other => panic!("{other:?}"),
        }
    }

    fn append_in(storage: &BrokerStorage, at: u64, id: &str, identity: ProducerIdentity, byte: u8) {
        let response = storage.handle(
            Instant::from_ms(at),
            BrokerRequest::AppendTransactional {
                transactional_id: id.into(),
                identity,
                topic: "t".into(),
                partition: 0,
                records: RecordBatch::of([&[byte][..]]),
            },
        );
        assert_eq!(response, BrokerResponse::Ok);
    }

    fn end(storage: &BrokerStorage, id: &str, identity: ProducerIdentity, commit: bool) {
        let request = BrokerRequest::EndTransaction {
            transactional_id: id.into(),
            identity,
            commit,
        };
        assert_eq!(
            storage.handle(Instant::from_ms(5), request),
            BrokerResponse::Ok
        );
    }

    fn fetch(storage: &BrokerStorage, offset: u64, isolation: IsolationLevel) -> (Vec<u8>, u64) {
        let request = BrokerRequest::Fetch {
            topic: "t".into(),
            partition: 0,
            offset,
            max_records: 100,
            isolation,
        };
        match storage.handle(Instant::from_ms(6), request) {
            BrokerResponse::Records {
                records,
                next_offset,
                ..
            } => (records.iter().map(|r| r[0]).collect(), next_offset),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_committed_skips_aborted_records_and_stops_at_an_open_transaction() {
        let storage = BrokerStorage::new(TRANSACTION_MAX_TIMEOUT_DEFAULT);
        storage.create_topic("t", 1);
        let (a, b, c) = (
            init(&storage, 0, "a"),
            init(&storage, 0, "b"),
            init(&storage, 0, "c"),
        );
        append_in(&storage, 1, "a", a, 1); // offset 0: committed
        append_in(&storage, 1, "b", b, 2); // offset 1: aborted
        storage
            .append("t", 0, &RecordBatch::of([&[3u8][..]]))
            .unwrap(); // offset 2: no transaction
        append_in(&storage, 2, "c", c, 4); // offset 3: still open
        append_in(&storage, 2, "a", a, 5); // offset 4: committed, behind the open one
        end(&storage, "a", a, true);
        end(&storage, "b", b, false);
        assert_eq!(
            fetch(&storage, 0, IsolationLevel::ReadUncommitted),
            (vec![1, 2, 3, 4, 5], 5)
        );
        // The last stable offset is 3: record 5 waits behind the open transaction.
        assert_eq!(
            fetch(&storage, 0, IsolationLevel::ReadCommitted),
            (vec![1, 3], 3)
        );
        end(&storage, "c", c, true);
        assert_eq!(
            fetch(&storage, 3, IsolationLevel::ReadCommitted),
            (vec![4, 5], 5)
        );
        // A read that finds only aborted records still moves on.
        assert_eq!(fetch(&storage, 1, IsolationLevel::ReadCommitted).1, 5);
        let log = &storage.read_all("t")[0];
        let transactions = storage.transactions_at(Instant::from_ms(6));
        let skipped = read_log(log, &transactions, 1, 1, IsolationLevel::ReadCommitted);
        assert_eq!(
            (skipped.offsets, skipped.records),
            (vec![2], RecordBatch::of([&[3u8][..]]))
        );
        assert_eq!(skipped.next_offset, 3);
        assert_eq!(skipped.blocked_at, None);
    }
}
