//! The broker node: a replayable, partitioned log (Kafka's role). Input topics are loaded
//! before the job starts; sinks append to output topics; consumer groups commit offsets.
//! Its storage is durable: every append is synced before it is acknowledged.

use crate::runtime::messages::{BrokerRequest, BrokerResponse};
use crate::runtime::rpc::serve;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The broker's durable storage, shared by every incarnation of the node within a run.
#[derive(Clone, Default)]
pub struct BrokerStorage {
    state: Arc<Mutex<BrokerState>>,
}

#[derive(Default)]
struct BrokerState {
    partitions: BTreeMap<String, Vec<Vec<Vec<u8>>>>,
    committed: BTreeMap<(String, String, u32), u64>,
    generations: BTreeMap<String, u32>,
}

impl BrokerStorage {
    /// Creates `topic` with `partition_count` empty partitions.
    pub fn create_topic(&self, topic: &str, partition_count: u32) {
        let mut state = self.lock();
        assert!(partition_count > 0);
        state
            .partitions
            .entry(topic.to_string())
            .or_insert_with(|| vec![Vec::new(); partition_count as usize]);
    }

    /// Appends records to a partition (loading input, or a sink's write).
    pub fn append(&self, topic: &str, partition: u32, records: Vec<Vec<u8>>) -> Result<(), String> {
        let mut state = self.lock();
        let partitions = state
            .partitions
            .get_mut(topic)
            .ok_or_else(|| format!("no topic `{topic}`"))?;
        let log = partitions
            .get_mut(partition as usize)
            .ok_or_else(|| format!("topic `{topic}` has no partition {partition}"))?;
        log.extend(records);
        Ok(())
    }

    /// Every record of every partition of `topic`, partition by partition.
    pub fn read_all(&self, topic: &str) -> Vec<Vec<Vec<u8>>> {
        self.lock()
            .partitions
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BrokerState> {
        self.state
            .lock()
            .expect("no task panics while holding the broker lock")
    }

    /// Answers one request.
    pub fn handle(&self, request: BrokerRequest) -> BrokerResponse {
        match request {
            BrokerRequest::Fetch {
                topic,
                partition,
                offset,
                max_records,
            } => {
                let state = self.lock();
                let Some(log) = state
                    .partitions
                    .get(&topic)
                    .and_then(|p| p.get(partition as usize))
                else {
                    return BrokerResponse::Error(format!("no partition {topic}/{partition}"));
                };
                let start = (offset as usize).min(log.len());
                let end = (start + max_records as usize).min(log.len());
                BrokerResponse::Records {
                    records: log[start..end].to_vec(),
                    end_offset: log.len() as u64,
                }
            }
            BrokerRequest::Append {
                topic,
                partition,
                records,
            } => match self.append(&topic, partition, records) {
                Ok(()) => BrokerResponse::Ok,
                Err(error) => BrokerResponse::Error(error),
            },
            BrokerRequest::CommitOffset {
                group,
                topic,
                partition,
                offset,
                generation,
            } => {
                let mut state = self.lock();
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
                let mut state = self.lock();
                let current = state.generations.entry(group.clone()).or_insert(0);
                *current = (*current).max(generation);
                BrokerResponse::Offset(state.committed.get(&(group, topic, partition)).copied())
            }
            BrokerRequest::PartitionCount { topic } => match self.lock().partitions.get(&topic) {
                Some(partitions) => BrokerResponse::Partitions(partitions.len() as u32),
                None => BrokerResponse::Error(format!("no topic `{topic}`")),
            },
        }
    }
}

/// The broker's main: serves requests until the node is killed.
pub async fn run_broker(storage: BrokerStorage) {
    serve(|request| storage.handle(request), BrokerResponse::Error).await;
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let storage = BrokerStorage::default();
        storage.create_topic("t", 1);
        assert_eq!(storage.handle(commit(1, 10)), BrokerResponse::Ok);
        let read = BrokerRequest::CommittedOffset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            generation: 2,
        };
        assert_eq!(storage.handle(read), BrokerResponse::Offset(Some(10)));
        assert!(
            matches!(storage.handle(commit(1, 20)), BrokerResponse::Error(e) if e.contains("fenced"))
        );
        assert_eq!(storage.handle(commit(2, 20)), BrokerResponse::Ok);
    }

    #[test]
    fn fetch_reads_from_an_offset_and_reports_the_end() {
        let storage = BrokerStorage::default();
        storage.create_topic("t", 2);
        storage
            .append("t", 1, vec![vec![1], vec![2], vec![3]])
            .unwrap();
        let response = storage.handle(BrokerRequest::Fetch {
            topic: "t".into(),
            partition: 1,
            offset: 1,
            max_records: 1,
        });
        assert_eq!(
            response,
            BrokerResponse::Records {
                records: vec![vec![2]],
                end_offset: 3
            }
        );
        assert!(matches!(
            storage.handle(BrokerRequest::Fetch {
                topic: "t".into(),
                partition: 5,
                offset: 0,
                max_records: 1
            }),
            BrokerResponse::Error(_)
        ));
    }
}
