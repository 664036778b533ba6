//! The wire messages of the service nodes: requests to the broker and the blobstore and their
//! replies (the key-value store's live with it).

use crate::services::record_batch::RecordBatch;
use crate::services::transaction_table::{InitResult, ProducerIdentity, TransactionError};
use crate::time::Duration;
use serde::{Deserialize, Serialize};

/// Requests to the broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerRequest {
    /// Read up to `max_records` from `offset`.
    Fetch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// First offset to read.
        offset: u64,
        /// Most records to return.
        max_records: u32,
        /// Kafka's `isolation.level`.
        isolation: IsolationLevel,
    },
    /// Append records to a partition.
    Append {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Serialized records.
        records: RecordBatch,
        /// A header carried by every record (the write-ahead sink names its batch).
        batch: Option<String>,
    },
    /// Initialize a transactional id (Kafka's `InitProducerId`).
    InitProducer {
        /// The transactional id.
        transactional_id: String,
        /// The producer's `transaction.timeout.ms`.
        timeout: Duration,
    },
    /// Append records inside the producer's transaction (the first append begins it).
    AppendTransactional {
        /// The transactional id.
        transactional_id: String,
        /// The producer.
        identity: ProducerIdentity,
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Serialized records.
        records: RecordBatch,
    },
    /// Commit or abort the producer's transaction (Kafka's `EndTxn`).
    EndTransaction {
        /// The transactional id.
        transactional_id: String,
        /// The producer.
        identity: ProducerIdentity,
        /// Commit (`true`) or abort.
        commit: bool,
    },
    /// Commit a consumer group's offset (auto-commit when checkpointing is off).
    CommitOffset {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Next offset to read.
        offset: u64,
        /// The committing consumer's generation (the job attempt); an older one than the
        /// group has seen is fenced, as Kafka fences a zombie consumer.
        generation: u32,
    },
    /// Read a consumer group's committed offset.
    CommittedOffset {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The reading consumer's generation: the group's generation becomes at least this.
        generation: u32,
    },
    /// The transactional ids whose transaction is ongoing (Kafka's `ListTransactions` with
    /// the state filter `Ongoing`).
    ListTransactions,
    /// Number of partitions of a topic.
    PartitionCount {
        /// Topic.
        topic: String,
    },
}

/// Broker replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerResponse {
    /// Records from the requested offset, and the partition's end offset.
    Records {
        /// The offset of each visible record.
        offsets: Vec<u64>,
        /// The visible records.
        records: RecordBatch,
        /// Where to read next (past skipped records of aborted transactions).
        next_offset: u64,
        /// Offset after the last record of the partition (bounded topics end).
        end_offset: u64,
    },
    /// Done.
    Ok,
    /// A committed offset, if any.
    Offset(Option<u64>),
    /// A partition count.
    Partitions(u32),
    /// A transactional id was initialized.
    Initialized(InitResult),
    /// Transactional ids with an ongoing transaction, in order.
    Transactions(Vec<String>),
    /// The transaction coordinator refused.
    Transaction(TransactionError),
    /// The request named something that does not exist.
    Error(String),
}

/// Requests to the blobstore (checkpoint storage).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobRequest {
    /// Write a file durably.
    Put {
        /// Path.
        path: String,
        /// Content (one slice on the wire).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Read a file.
    Get {
        /// Path.
        path: String,
    },
    /// The paths of every file under a directory, in order.
    List {
        /// The directory, ending in `/` (empty for the root).
        directory: String,
    },
    /// Delete one file, durably (nothing if it is not there).
    Delete {
        /// Path.
        path: String,
    },
    /// Delete every file under a directory, durably.
    DeleteDirectory {
        /// The directory, ending in `/`.
        directory: String,
    },
}

/// Blobstore replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobResponse {
    /// Written and synced.
    Stored,
    /// The file, or `None` if absent.
    Data(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The store refused.
    Error(String),
    /// Paths, in order.
    Paths(Vec<String>),
}

/// How a consumer reads transactional records (Kafka's `isolation.level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IsolationLevel {
    /// Only records of committed transactions (and non-transactional ones).
    ReadCommitted,
    /// Every record appended, whatever becomes of its transaction.
    ReadUncommitted,
}

impl IsolationLevel {
    /// Kafka's spelling.
    pub fn name(self) -> &'static str {
        match self {
            IsolationLevel::ReadCommitted => "read_committed",
            IsolationLevel::ReadUncommitted => "read_uncommitted",
        }
    }
}
