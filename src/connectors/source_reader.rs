//! A source subtask's read position over its broker partitions, paced to the workload's rate.
//! Its offsets are the operator state a checkpoint takes.

use crate::connectors::connector_error::ConnectorError;
use crate::limits::SOURCE_FETCH_RECORDS_MAX;
use crate::runtime::rpc::Rpc;
use crate::services::messages::IsolationLevel;
use crate::services::messages::{BrokerRequest, BrokerResponse};
use crate::services::record_batch::RecordBatch;
use crate::state::snapshot::SourceOffsets;
use crate::time::{Duration, Instant};
use std::net::SocketAddr;

struct PartitionCursor {
    partition: u32,
    next_offset: u64,
    // Fetched visible records with their offsets, and where the fetch left off (past any
    // skipped records of aborted transactions).
    fetched: Fetched,
    fetched_up_to: u64,
    end_offset: Option<u64>,
}

/// The last fetch's visible records and how many of them were emitted.
#[derive(Default)]
struct Fetched {
    offsets: Vec<u64>,
    records: RecordBatch,
    emitted: usize,
}

impl Fetched {
    fn is_empty(&self) -> bool {
        self.emitted == self.offsets.len()
    }
}

impl PartitionCursor {
    fn is_done(&self) -> bool {
        self.fetched.is_empty() && self.end_offset.is_some_and(|end| self.next_offset >= end)
    }
}

/// Reads one subtask's partitions of a topic.
pub struct SourceReader {
    topic: String,
    partitions: Vec<PartitionCursor>,
    cursor: usize,
    started_at: Instant,
    emitted: u64,
    records_per_second: u64,
    commit_group: Option<(String, u32)>,
}

impl SourceReader {
    /// A reader of `partitions` from the given next offsets, emitting `records_per_second`
    /// per partition (0 = as fast as backpressure allows).
    pub fn new(
        topic: &str,
        offsets: &SourceOffsets,
        partitions: &[u32],
        records_per_second_per_partition: u64,
        now: Instant,
    ) -> SourceReader {
        let partitions = partitions
            .iter()
            .map(|&partition| PartitionCursor {
                partition,
                next_offset: offsets.next_offsets.get(&partition).copied().unwrap_or(0),
                fetched: Fetched::default(),
                fetched_up_to: 0,
                end_offset: None,
            })
            .collect::<Vec<_>>();
        let records_per_second = records_per_second_per_partition
            .checked_mul(partitions.len() as u64)
            .expect("RECORDS_PER_SECOND_MAX times the partitions fits a u64 (limits.rs)");
        SourceReader {
            topic: topic.to_string(),
            partitions,
            cursor: 0,
            started_at: now,
            emitted: 0,
            records_per_second,
            commit_group: None,
        }
    }

    /// At-most-once: from now on each fetched batch's end offset is committed to the broker
    /// for consumer `group` before any record of the batch is handed out;
    /// `generation` is the job attempt: a zombie of an older attempt is fenced by the broker.
    pub fn commit_on_read(&mut self, group: &str, generation: u32) {
        self.commit_group = Some((group.to_string(), generation));
    }

    /// The offsets to snapshot: the next record to read per partition.
    pub fn offsets(&self) -> SourceOffsets {
        SourceOffsets {
            next_offsets: self
                .partitions
                .iter()
                .map(|p| (p.partition, p.next_offset))
                .collect(),
        }
    }

    /// Whether every partition is read to its end.
    pub fn is_done(&self) -> bool {
        self.partitions.iter().all(PartitionCursor::is_done)
    }

    /// How many records are due at `now` under the rate.
    pub fn records_due(&self, now: Instant) -> u64 {
        if self.records_per_second == 0 {
            return u64::MAX;
        }
        let elapsed = now.since(self.started_at).0 as u128;
        let allowed = (elapsed * self.records_per_second as u128 / 1_000_000_000) as u64 + 1;
        allowed.saturating_sub(self.emitted)
    }

    /// When the next record is due, if pacing applies.
    pub fn next_due_at(&self) -> Option<Instant> {
        if self.records_per_second == 0 || self.is_done() {
            return None;
        }
        let nanos =
            (self.emitted as u128 * 1_000_000_000).div_ceil(self.records_per_second as u128);
        Some(self.started_at.add(Duration(nanos as u64)))
    }

    /// The next record, round robin over partitions, fetching from the broker when a
    /// partition's prefetched records run out. `Ok(None)` when all partitions are done.
    pub async fn next_record(
        &mut self,
        rpc: &Rpc,
        broker: SocketAddr,
        rpc_timeout: Duration,
    ) -> Result<Option<&[u8]>, ConnectorError> {
        let mut chosen = None;
        for _ in 0..self.partitions.len() {
            let index = self.cursor;
            self.cursor = (self.cursor + 1) % self.partitions.len();
            if self.partitions[index].is_done() {
                continue;
            }
            if self.partitions[index].fetched.is_empty() {
                self.fetch(index, rpc, broker, rpc_timeout).await?;
            }
            if !self.partitions[index].fetched.is_empty() {
                chosen = Some(index);
                break;
            }
        }
        let Some(index) = chosen else {
            return Ok(None);
        };
        Ok(Some(self.take(index)))
    }

    /// The next record without a fetch: `Some` when the partition whose turn it is has
    /// records fetched already (what [`next_record`](Self::next_record) would return then),
    /// `None` when the next record needs `next_record`.
    pub fn next_fetched(&mut self) -> Option<&[u8]> {
        let index = self.cursor;
        // A subtask may own no partition (more source subtasks than partitions).
        let partition = self.partitions.get(index)?;
        if partition.is_done() || partition.fetched.is_empty() {
            return None;
        }
        self.cursor = (index + 1) % self.partitions.len();
        Some(self.take(index))
    }

    /// Takes the next fetched record of partition `index`.
    fn take(&mut self, index: usize) -> &[u8] {
        let cursor = &mut self.partitions[index];
        let next = cursor.fetched.emitted;
        cursor.fetched.emitted += 1;
        cursor.next_offset = cursor.fetched.offsets[next] + 1;
        if cursor.fetched.is_empty() {
            cursor.next_offset = cursor.next_offset.max(cursor.fetched_up_to);
        }
        self.emitted += 1;
        cursor.fetched.records.get(next).expect("a fetched record")
    }

    async fn fetch(
        &mut self,
        index: usize,
        rpc: &Rpc,
        broker: SocketAddr,
        rpc_timeout: Duration,
    ) -> Result<(), ConnectorError> {
        let cursor = &mut self.partitions[index];
        let request = BrokerRequest::Fetch {
            topic: self.topic.clone(),
            partition: cursor.partition,
            offset: cursor.next_offset,
            max_records: SOURCE_FETCH_RECORDS_MAX,
            // Only what committed transactions wrote: a job reading a topic another job
            // writes with a two-phase-commit sink stays exactly-once end to end.
            isolation: IsolationLevel::ReadCommitted,
        };
        match rpc.call(broker, &request, rpc_timeout, true).await? {
            BrokerResponse::Records {
                offsets,
                records,
                next_offset,
                end_offset,
            } => {
                if cursor.next_offset > end_offset {
                    return Err(ConnectorError::OffsetPastEnd {
                        offset: cursor.next_offset,
                        end_offset,
                        topic: self.topic.clone(),
                        partition: cursor.partition,
                    });
                }
                if offsets.len() != records.len() {
                    return Err(ConnectorError::SourceRefused {
                        request: "fetch",
                        topic: self.topic.clone(),
                        partition: cursor.partition,
                        response: format!(
                            "{} offsets for {} records",
                            offsets.len(),
                            records.len()
                        ),
                    });
                }
                cursor.end_offset = Some(end_offset);
                cursor.fetched_up_to = next_offset;
                if records.is_empty() {
                    cursor.next_offset = next_offset; // Only skipped records, or none.
                }
                let (partition, batch_end) = (cursor.partition, next_offset);
                if let (Some((group, generation)), false) = (&self.commit_group, records.is_empty())
                {
                    // Committed before emitting: a failure after this point loses the batch
                    // rather than reading it twice.
                    let commit = BrokerRequest::CommitOffset {
                        group: group.clone(),
                        topic: self.topic.clone(),
                        partition,
                        offset: batch_end,
                        generation: *generation,
                    };
                    match rpc.call(broker, &commit, rpc_timeout, true).await? {
                        BrokerResponse::Ok => {}
                        other => {
                            return Err(ConnectorError::SourceRefused {
                                request: "the offset commit",
                                topic: self.topic.clone(),
                                partition,
                                response: format!("{other:?}"),
                            })
                        }
                    }
                }
                debug_assert!(self.partitions[index].fetched.is_empty());
                self.partitions[index].fetched = Fetched {
                    offsets,
                    records,
                    emitted: 0,
                };
                Ok(())
            }
            BrokerResponse::Error(error) => Err(ConnectorError::SourceRefused {
                request: "fetch",
                topic: self.topic.clone(),
                partition: cursor.partition,
                response: error,
            }),
            other => Err(ConnectorError::SourceUnexpected {
                request: "a fetch",
                response: format!("{other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_releases_records_at_the_rate() {
        let reader = SourceReader::new("t", &SourceOffsets::default(), &[0], 10, Instant::ZERO);
        assert_eq!(reader.records_due(Instant::ZERO), 1);
        assert_eq!(reader.records_due(Instant::from_ms(250)), 3);
        assert_eq!(reader.next_due_at(), Some(Instant::ZERO));
    }

    #[test]
    fn a_reader_of_no_partition_has_nothing_fetched() {
        // More source subtasks than partitions leaves some with none.
        let mut idle = SourceReader::new("t", &SourceOffsets::default(), &[], 0, Instant::ZERO);
        assert_eq!(idle.next_fetched(), None);
        let mut fresh =
            SourceReader::new("t", &SourceOffsets::default(), &[0, 1], 0, Instant::ZERO);
        assert_eq!(fresh.next_fetched(), None, "nothing fetched yet");
    }
}
