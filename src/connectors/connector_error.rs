//! What can go wrong where a job meets the outside world: its source reading the broker and
//! its sinks writing the broker or the key-value store. Each error names the subtask (`label`,
//! `uid#index`) or the topic and partition it concerns.

use crate::ids::CheckpointId;
use crate::limits::LINGERING_TRANSACTIONS_MAX;
use crate::runtime::rpc::RpcError;
use crate::services::transaction_table::TransactionError;

/// Why a source or sink subtask cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectorError {
    /// A call got no usable answer.
    #[error("{label}: {service} call failed: {source}")]
    Call {
        /// The subtask.
        label: String,
        /// `broker` or `kv store`.
        service: &'static str,
        /// Why.
        source: RpcError,
    },
    /// A source's call got no usable answer.
    #[error(transparent)]
    SourceCall(#[from] RpcError),
    /// A service answered with something this request cannot get.
    #[error("{label}: {service} answered {request} with {response}")]
    Unexpected {
        /// The subtask.
        label: String,
        /// Who answered.
        service: &'static str,
        /// What was asked.
        request: String,
        /// The answer.
        response: String,
    },
    /// The broker refused a request.
    #[error("{label}: broker refused {request}: {response}")]
    Refused {
        /// The subtask.
        label: String,
        /// What was asked.
        request: &'static str,
        /// The answer.
        response: String,
    },
    /// The key-value store refused a request.
    #[error("{label}: kv store refused: {error}")]
    KvRefused {
        /// The subtask.
        label: String,
        /// Why.
        error: String,
    },
    /// The broker refused a transactional append.
    #[error("{label}: {error}")]
    Transaction {
        /// The subtask.
        label: String,
        /// Why.
        error: TransactionError,
    },
    /// Committing a pre-committed transaction failed other than by an abort.
    #[error("{label}: commit of checkpoint {checkpoint_id} failed: {error}")]
    CommitFailed {
        /// The subtask.
        label: String,
        /// The checkpoint.
        checkpoint_id: CheckpointId,
        /// Why.
        error: TransactionError,
    },
    /// A recovering write-ahead sink found a newer attempt owning its committer record.
    #[error("{label}: attempt {attempt} is a zombie: attempt {current} owns the committer record")]
    ZombieAtRecovery {
        /// The subtask.
        label: String,
        /// Its attempt.
        attempt: u32,
        /// The owner's.
        current: u32,
    },
    /// A write-ahead sink's committer record was refused: a newer attempt fenced it.
    #[error("{label}: attempt {attempt} is a zombie: its record of checkpoint {checkpoint_id} was refused (attempt {current} owns the committer)")]
    ZombieAtCommit {
        /// The subtask.
        label: String,
        /// Its attempt.
        attempt: u32,
        /// The checkpoint it recorded.
        checkpoint_id: CheckpointId,
        /// The owner's attempt.
        current: u32,
    },
    /// The committer record does not decode.
    #[error("{label}: corrupt committer record: {error}")]
    CorruptCommitter {
        /// The subtask.
        label: String,
        /// Why.
        error: String,
    },
    /// The restored sink state is of another kind of sink.
    #[error("{label}: the restored state holds {found}, not {expected}")]
    WrongRestoredState {
        /// The subtask.
        label: String,
        /// What it holds.
        found: &'static str,
        /// What this sink keeps.
        expected: &'static str,
    },
    /// The restored state holds another sink subtask's work, which this kind cannot commit.
    #[error("{label}: the restored state holds the pre-committed work of another sink subtask (`{prefix}`); the write-ahead sink keeps its batches per subtask, so its parallelism cannot change across a restore")]
    StateOfAnotherSubtask {
        /// The subtask.
        label: String,
        /// The other subtask's prefix.
        prefix: String,
    },
    /// Recovery found more open transactions of earlier attempts than the limit.
    #[error("{label}: more than {LINGERING_TRANSACTIONS_MAX} open transactions left by earlier attempts")]
    TooManyLingering {
        /// The subtask.
        label: String,
    },
    /// A record handed to the sink does not decode.
    #[error("{label}: a record does not decode: {error}")]
    UndecodableRecord {
        /// The subtask.
        label: String,
        /// Why.
        error: String,
    },
    /// A source's position lies past the end of its partition.
    #[error("source offset {offset} is past the end {end_offset} of {topic}/{partition}")]
    OffsetPastEnd {
        /// The position.
        offset: u64,
        /// The partition's end.
        end_offset: u64,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The broker refused a source's request.
    #[error("broker refused {request} of {topic}/{partition}: {response}")]
    SourceRefused {
        /// What was asked.
        request: &'static str,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The answer.
        response: String,
    },
    /// The broker answered a source's request with something else.
    #[error("broker answered {request} with {response}")]
    SourceUnexpected {
        /// What was asked.
        request: &'static str,
        /// The answer.
        response: String,
    },
}
