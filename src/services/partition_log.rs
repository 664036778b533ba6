//! One partition's log as the broker keeps it: the records of every append back to back, and
//! per append request the header Kafka puts on a record batch (its transaction, the writer's
//! batch label, when it was appended). Memory is the records' bytes plus one offset each.

use crate::services::messages::IsolationLevel;
use crate::services::record_batch::RecordBatch;
use crate::services::transaction_table::{TransactionIndex, TransactionRecord, TransactionStatus};
use crate::time::Instant;

/// What every record of one append request shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendHeader {
    /// The offset of the append's first record.
    pub first_offset: u64,
    /// The transaction it was appended in, if any.
    pub transaction: Option<TransactionIndex>,
    /// The batch label the writer gave it (the write-ahead sink's `sink#0 checkpoint 3`).
    pub batch: Option<String>,
    /// Which append request wrote it, counted over the broker's life.
    pub append: u64,
    /// When the broker appended it.
    pub appended_at: Instant,
}

/// One record of the log with its append's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEntry<'a> {
    /// Its offset.
    pub offset: u64,
    /// The serialized record.
    pub bytes: &'a [u8],
    /// Its append's header.
    pub header: &'a AppendHeader,
}

/// A partition's records, in offset order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionLog {
    records: RecordBatch,
    // In offset order; an append of no records leaves no header.
    appends: Vec<AppendHeader>,
}

impl PartitionLog {
    /// An empty log.
    pub fn new() -> Self {
        PartitionLog::default()
    }

    /// Records in the log (its end offset).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends `records` as one append request.
    pub fn append(
        &mut self,
        records: &RecordBatch,
        transaction: Option<TransactionIndex>,
        batch: Option<String>,
        append: u64,
        appended_at: Instant,
    ) {
        if records.is_empty() {
            return;
        }
        debug_assert!(self.appends.last().is_none_or(|last| last.append < append));
        self.appends.push(AppendHeader {
            first_offset: self.len() as u64,
            transaction,
            batch,
            append,
            appended_at,
        });
        self.records.extend_from(records);
    }

    /// The records from `offset` on, each with its header.
    pub fn entries_from(&self, offset: u64) -> impl Iterator<Item = LogEntry<'_>> + '_ {
        let start = (offset as usize).min(self.len());
        // The append holding `start`: the last one beginning at or before it.
        let mut header = self
            .appends
            .partition_point(|h| h.first_offset <= start as u64)
            .saturating_sub(1);
        (start..self.len()).map(move |index| {
            while self
                .appends
                .get(header + 1)
                .is_some_and(|next| next.first_offset <= index as u64)
            {
                header += 1;
            }
            LogEntry {
                offset: index as u64,
                bytes: self.records.get(index).expect("in range"),
                header: &self.appends[header],
            }
        })
    }

    /// Every record, each with its header.
    pub fn entries(&self) -> impl Iterator<Item = LogEntry<'_>> + '_ {
        self.entries_from(0)
    }

    /// The append headers, in offset order.
    pub fn appends(&self) -> &[AppendHeader] {
        &self.appends
    }
}

/// What a consumer reads from one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRead {
    /// The offset of each visible record.
    pub offsets: Vec<u64>,
    /// The visible records.
    pub records: RecordBatch,
    /// Where to read next.
    pub next_offset: u64,
    /// Read committed only: the last stable offset, if an open transaction holds the reader
    /// there.
    pub blocked_at: Option<u64>,
}

/// What a consumer at `isolation` reads from `log` at `offset`: up to `max` visible records
/// and where to go on. Read committed, as Kafka: nothing at or past the last stable offset
/// (the first record of a transaction still open), and no record of an aborted transaction.
pub fn read_log(
    log: &PartitionLog,
    transactions: &[TransactionRecord],
    offset: u64,
    max: usize,
    isolation: IsolationLevel,
) -> LogRead {
    // Room for every record this read can return, reserved once instead of grown by doubling.
    let start = (offset as usize).min(log.len());
    let end = start + max.min(log.len() - start);
    let mut read = LogRead {
        next_offset: start as u64,
        offsets: Vec::with_capacity(end - start),
        records: RecordBatch::with_capacity(end - start, log.records.byte_len_of(start..end)),
        blocked_at: None,
    };
    for entry in log.entries_from(offset) {
        if read.offsets.len() >= max {
            break;
        }
        let status = entry
            .header
            .transaction
            .map(|index| transactions[index].status);
        let visible = match (status, isolation) {
            (None, _) | (Some(_), IsolationLevel::ReadUncommitted) => true,
            (Some(TransactionStatus::Committed { .. }), _) => true,
            (Some(TransactionStatus::Aborted { .. }), _) => false,
            (Some(TransactionStatus::Open), IsolationLevel::ReadCommitted) => {
                read.blocked_at = Some(entry.offset);
                break;
            }
        };
        if visible {
            read.offsets.push(entry.offset);
            read.records.push(entry.bytes);
        }
        read.next_offset = entry.offset + 1;
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_their_appends_header_from_any_offset() {
        let mut log = PartitionLog::new();
        log.append(
            &RecordBatch::of([&b"a"[..], b"b"]),
            None,
            None,
            1,
            Instant::ZERO,
        );
        log.append(&RecordBatch::new(), None, None, 2, Instant::ZERO);
        log.append(
            &RecordBatch::of([&b"c"[..]]),
            Some(0),
            Some("x".into()),
            3,
            Instant::from_ms(5),
        );
        assert_eq!(log.len(), 3);
        let from_one: Vec<(u64, &[u8], u64)> = log
            .entries_from(1)
            .map(|e| (e.offset, e.bytes, e.header.append))
            .collect();
        assert_eq!(from_one, vec![(1, &b"b"[..], 1), (2, &b"c"[..], 3)]);
        assert_eq!(log.entries_from(9).count(), 0);
        assert_eq!(log.appends().len(), 2);
    }
}
