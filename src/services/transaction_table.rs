//! The broker's transaction coordinator (Kafka's `TransactionStateManager`), sans-IO: every
//! call takes the broker's clock. A transactional id maps to a producer id and an epoch;
//! initializing the id again bumps the epoch, aborts what the old epoch left open and fences
//! it. A transaction begins with its first append and is aborted by the broker once it is
//! older than its timeout, which the broker caps at `transaction.max.timeout.ms`.

use crate::time::{Duration, Instant};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A producer's identity for one transactional id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerIdentity {
    /// Assigned once per transactional id.
    pub producer_id: u64,
    /// Bumped on every initialization (and on a timeout abort): older epochs are fenced.
    pub epoch: u32,
}

/// What `init_producer` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitResult {
    /// The identity to use from now on.
    pub identity: ProducerIdentity,
    /// Whether the transactional id was never seen before (how an aborter knows it has gone
    /// past the last id a previous attempt used).
    pub fresh: bool,
    /// The timeout the broker applies: the requested one capped at its maximum.
    pub timeout: Duration,
}

/// Why a transaction was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    /// Its producer asked.
    Requested,
    /// Its transactional id was initialized again (a new producer fenced this one).
    Fenced,
    /// It was open longer than its timeout.
    TimedOut {
        /// The timeout the broker applied.
        timeout: Duration,
    },
}

/// Where a transaction stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionStatus {
    /// Records appended, not decided.
    Open,
    /// Committed: read-committed consumers see its records.
    Committed {
        /// When.
        at: Instant,
    },
    /// Aborted: its records are never visible to read-committed consumers.
    Aborted {
        /// When.
        at: Instant,
        /// Why.
        reason: AbortReason,
    },
}

/// One transaction, kept for the whole run so the checker can explain every record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRecord {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer that ran it.
    pub identity: ProducerIdentity,
    /// Its first append.
    pub started_at: Instant,
    /// The timeout it ran under.
    pub timeout: Duration,
    /// Records appended.
    pub records: u64,
    /// Where it stands.
    pub status: TransactionStatus,
}

/// Index of a transaction in the table, which log entries carry.
pub type TransactionIndex = usize;

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransactionError {
    /// The transactional id was never initialized.
    UnknownTransactionalId(String),
    /// A newer producer owns the id (or the broker bumped the epoch on a timeout).
    Fenced {
        /// The id.
        transactional_id: String,
        /// The epoch that asked.
        epoch: u32,
        /// The id's current epoch.
        current: u32,
    },
    /// Commit of a transaction the broker had aborted.
    Aborted {
        /// The id.
        transactional_id: String,
        /// Why it was aborted.
        reason: AbortReason,
    },
    /// No transaction of this producer to end.
    NoTransaction(String),
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::UnknownTransactionalId(id) => {
                write!(f, "unknown transactional id `{id}`")
            }
            TransactionError::Fenced {
                transactional_id,
                epoch,
                current,
            } => write!(
                f,
                "producer fenced: `{transactional_id}` is at epoch {current}, the request came from epoch {epoch}"
            ),
            TransactionError::Aborted {
                transactional_id,
                reason: AbortReason::TimedOut { timeout },
            } => write!(
                f,
                "transaction `{transactional_id}` was aborted by the broker: open longer than its timeout {timeout}"
            ),
            TransactionError::Aborted {
                transactional_id,
                reason,
            } => write!(f, "transaction `{transactional_id}` was aborted ({reason:?})"),
            TransactionError::NoTransaction(id) => write!(f, "`{id}` has no transaction to end"),
        }
    }
}

#[derive(Clone, Debug)]
struct ProducerEntry {
    identity: ProducerIdentity,
    timeout: Duration,
    // The transaction this epoch has open or last ended.
    current: Option<TransactionIndex>,
}

/// The broker's transactions and producers.
#[derive(Clone, Debug)]
pub struct TransactionTable {
    max_timeout: Duration,
    next_producer_id: u64,
    producers: BTreeMap<String, ProducerEntry>,
    transactions: Vec<TransactionRecord>,
}

impl TransactionTable {
    /// An empty table; the broker aborts any transaction older than `max_timeout`.
    pub fn new(max_timeout: Duration) -> TransactionTable {
        assert!(max_timeout > Duration::ZERO);
        TransactionTable {
            max_timeout,
            next_producer_id: 1000,
            producers: BTreeMap::new(),
            transactions: Vec::new(),
        }
    }

    /// `transaction.max.timeout.ms`.
    pub fn max_timeout(&self) -> Duration {
        self.max_timeout
    }

    /// Every transaction so far, by index.
    pub fn transactions(&self) -> &[TransactionRecord] {
        &self.transactions
    }

    /// Transactional ids whose current transaction is ongoing at `now`, in order.
    pub fn ongoing(&mut self, now: Instant) -> Vec<String> {
        self.expire(now);
        self.producers
            .iter()
            .filter(|(_, entry)| {
                entry
                    .current
                    .is_some_and(|i| self.transactions[i].status == TransactionStatus::Open)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Initializes `transactional_id` (Kafka's `InitProducerId`): a new id gets a producer id
    /// and epoch 0; a known one gets its epoch bumped, and what the old epoch left open is
    /// aborted.
    pub fn init_producer(
        &mut self,
        now: Instant,
        transactional_id: &str,
        requested_timeout: Duration,
    ) -> InitResult {
        self.expire(now);
        let timeout = requested_timeout.min(self.max_timeout);
        if let Some(entry) = self.producers.get_mut(transactional_id) {
            let open = entry.current.take();
            entry.identity.epoch += 1;
            entry.timeout = timeout;
            let identity = entry.identity;
            if let Some(index) = open {
                self.abort_if_open(index, now, AbortReason::Fenced);
            }
            return InitResult {
                identity,
                fresh: false,
                timeout,
            };
        }
        let identity = ProducerIdentity {
            producer_id: self.next_producer_id,
            epoch: 0,
        };
        self.next_producer_id += 1;
        self.producers.insert(
            transactional_id.to_string(),
            ProducerEntry {
                identity,
                timeout,
                current: None,
            },
        );
        InitResult {
            identity,
            fresh: true,
            timeout,
        }
    }

    /// Registers `records` appended by the producer; the first append begins a transaction.
    /// Returns the transaction the records belong to.
    pub fn append(
        &mut self,
        now: Instant,
        transactional_id: &str,
        identity: ProducerIdentity,
        records: u64,
    ) -> Result<TransactionIndex, TransactionError> {
        self.expire(now);
        let entry = self.current_entry(transactional_id, identity)?;
        let open = entry
            .current
            .filter(|index| self.transactions[*index].status == TransactionStatus::Open);
        let index = match open {
            Some(index) => index,
            None => {
                let timeout = entry.timeout;
                self.transactions.push(TransactionRecord {
                    transactional_id: transactional_id.to_string(),
                    identity,
                    started_at: now,
                    timeout,
                    records: 0,
                    status: TransactionStatus::Open,
                });
                let index = self.transactions.len() - 1;
                self.producers
                    .get_mut(transactional_id)
                    .expect("checked above")
                    .current = Some(index);
                index
            }
        };
        self.transactions[index].records += records;
        Ok(index)
    }

    /// Commits the transaction of `identity` (Flink resumes a pre-committed transaction with
    /// the stored identity). Committing a committed transaction again succeeds: a recovery
    /// may repeat a commit whose answer was lost.
    pub fn commit(
        &mut self,
        now: Instant,
        transactional_id: &str,
        identity: ProducerIdentity,
    ) -> Result<(), TransactionError> {
        self.expire(now);
        let index = self.transaction_of(transactional_id, identity)?;
        let record = &mut self.transactions[index];
        match record.status {
            TransactionStatus::Open => {
                record.status = TransactionStatus::Committed { at: now };
                Ok(())
            }
            TransactionStatus::Committed { .. } => Ok(()),
            TransactionStatus::Aborted { reason, .. } => Err(TransactionError::Aborted {
                transactional_id: transactional_id.to_string(),
                reason,
            }),
        }
    }

    /// Aborts the open transaction of `identity`, if any.
    pub fn abort(
        &mut self,
        now: Instant,
        transactional_id: &str,
        identity: ProducerIdentity,
    ) -> Result<(), TransactionError> {
        self.expire(now);
        self.current_entry(transactional_id, identity)?;
        if let Some(index) = self.producers[transactional_id].current {
            self.abort_if_open(index, now, AbortReason::Requested);
        }
        Ok(())
    }

    /// Aborts every open transaction past its timeout, as of `now`, and bumps its producer's
    /// epoch (Kafka fences a producer whose transaction timed out). Each abort is stamped with
    /// the instant its timeout ran out.
    pub fn expire(&mut self, now: Instant) {
        for index in 0..self.transactions.len() {
            let record = &self.transactions[index];
            let deadline = record.started_at.add(record.timeout);
            if record.status != TransactionStatus::Open || now < deadline {
                continue;
            }
            let reason = AbortReason::TimedOut {
                timeout: record.timeout,
            };
            let id = record.transactional_id.clone();
            self.transactions[index].status = TransactionStatus::Aborted {
                at: deadline,
                reason,
            };
            let entry = self
                .producers
                .get_mut(&id)
                .expect("a transaction's producer");
            if entry.current == Some(index) {
                entry.identity.epoch += 1;
                entry.current = None;
            }
        }
    }

    fn abort_if_open(&mut self, index: TransactionIndex, now: Instant, reason: AbortReason) {
        let record = &mut self.transactions[index];
        if record.status == TransactionStatus::Open {
            record.status = TransactionStatus::Aborted { at: now, reason };
        }
    }

    fn current_entry(
        &self,
        transactional_id: &str,
        identity: ProducerIdentity,
    ) -> Result<&ProducerEntry, TransactionError> {
        let entry = self
            .producers
            .get(transactional_id)
            .ok_or_else(|| TransactionError::UnknownTransactionalId(transactional_id.into()))?;
        let stale = entry.identity.producer_id != identity.producer_id
            || entry.identity.epoch != identity.epoch;
        if stale {
            return Err(TransactionError::Fenced {
                transactional_id: transactional_id.to_string(),
                epoch: identity.epoch,
                current: entry.identity.epoch,
            });
        }
        Ok(entry)
    }

    /// The latest transaction run by exactly `identity`.
    fn transaction_of(
        &self,
        transactional_id: &str,
        identity: ProducerIdentity,
    ) -> Result<TransactionIndex, TransactionError> {
        let entry = self
            .producers
            .get(transactional_id)
            .ok_or_else(|| TransactionError::UnknownTransactionalId(transactional_id.into()))?;
        let found = self
            .transactions
            .iter()
            .rposition(|t| t.transactional_id == transactional_id && t.identity == identity);
        match found {
            Some(index) => Ok(index),
            None if identity.epoch < entry.identity.epoch => Err(TransactionError::Fenced {
                transactional_id: transactional_id.to_string(),
                epoch: identity.epoch,
                current: entry.identity.epoch,
            }),
            None => Err(TransactionError::NoTransaction(
                transactional_id.to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_ms(n)
    }

    fn table() -> TransactionTable {
        TransactionTable::new(Duration::from_secs(60))
    }

    #[test]
    fn append_begins_a_transaction_and_commit_ends_it_once() {
        let mut table = table();
        let init = table.init_producer(ms(0), "t-0", Duration::from_secs(10));
        assert!(init.fresh);
        let index = table.append(ms(1), "t-0", init.identity, 3).unwrap();
        assert_eq!(table.append(ms(2), "t-0", init.identity, 2), Ok(index));
        assert_eq!(table.transactions()[index].records, 5);
        table.commit(ms(5), "t-0", init.identity).unwrap();
        assert_eq!(
            table.transactions()[index].status,
            TransactionStatus::Committed { at: ms(5) }
        );
        // A repeated commit (a recovery resuming it) succeeds and changes nothing.
        table.commit(ms(9), "t-0", init.identity).unwrap();
        assert_eq!(
            table.transactions()[index].status,
            TransactionStatus::Committed { at: ms(5) }
        );
        // The next append begins a new transaction.
        assert_eq!(table.append(ms(10), "t-0", init.identity, 1), Ok(index + 1));
    }

    #[test]
    fn a_commit_without_a_transaction_is_fenced_only_for_an_older_epoch() {
        let mut table = table();
        let old = table
            .init_producer(ms(0), "t-0", Duration::from_secs(10))
            .identity;
        let current = table
            .init_producer(ms(1), "t-0", Duration::from_secs(10))
            .identity;
        // The current producer began nothing: there is no transaction to commit, and it is
        // not fenced (it owns the id).
        assert_eq!(
            table.commit(ms(2), "t-0", current),
            Err(TransactionError::NoTransaction("t-0".to_string()))
        );
        assert_eq!(
            table.commit(ms(2), "t-0", old),
            Err(TransactionError::Fenced {
                transactional_id: "t-0".to_string(),
                epoch: old.epoch,
                current: current.epoch,
            })
        );
    }

    #[test]
    fn a_new_epoch_fences_the_zombie_and_aborts_what_it_left_open() {
        let mut table = table();
        let old = table
            .init_producer(ms(0), "t-0", Duration::from_secs(10))
            .identity;
        let index = table.append(ms(1), "t-0", old, 4).unwrap();
        let new = table.init_producer(ms(2), "t-0", Duration::from_secs(10));
        assert!(!new.fresh);
        assert_eq!(new.identity.epoch, old.epoch + 1);
        assert_eq!(new.identity.producer_id, old.producer_id);
        assert_eq!(
            table.transactions()[index].status,
            TransactionStatus::Aborted {
                at: ms(2),
                reason: AbortReason::Fenced
            }
        );
        let fenced = table.append(ms(3), "t-0", old, 1).unwrap_err();
        assert!(
            matches!(
                fenced,
                TransactionError::Fenced {
                    epoch: 0,
                    current: 1,
                    ..
                }
            ),
            "{fenced}"
        );
        assert!(matches!(
            table.commit(ms(3), "t-0", old),
            Err(TransactionError::Aborted { .. })
        ));
        assert!(table.abort(ms(3), "t-0", old).is_err());
    }

    #[test]
    fn a_committed_transaction_is_still_committed_by_a_recovery_with_its_identity() {
        let mut table = table();
        let first = table
            .init_producer(ms(0), "t-0", Duration::from_secs(10))
            .identity;
        table.append(ms(1), "t-0", first, 1).unwrap();
        table.commit(ms(2), "t-0", first).unwrap();
        // The recovery commits with the identity stored in the checkpoint.
        assert_eq!(table.commit(ms(3), "t-0", first), Ok(()));
        let unknown = ProducerIdentity {
            producer_id: first.producer_id,
            epoch: 7,
        };
        assert!(matches!(
            table.commit(ms(3), "t-0", unknown),
            Err(TransactionError::NoTransaction(_))
        ));
        assert!(matches!(
            table.commit(ms(3), "nope", first),
            Err(TransactionError::UnknownTransactionalId(_))
        ));
    }

    #[test]
    fn the_broker_caps_the_timeout_and_aborts_at_the_deadline() {
        let mut table = TransactionTable::new(Duration::from_secs(2));
        let init = table.init_producer(ms(0), "t-0", Duration::from_secs(3600));
        assert_eq!(init.timeout, Duration::from_secs(2));
        let index = table.append(ms(500), "t-0", init.identity, 10).unwrap();
        table.expire(ms(2499));
        assert_eq!(table.transactions()[index].status, TransactionStatus::Open);
        table.expire(ms(9000));
        let timed_out = AbortReason::TimedOut {
            timeout: Duration::from_secs(2),
        };
        assert_eq!(
            table.transactions()[index].status,
            TransactionStatus::Aborted {
                at: ms(2500),
                reason: timed_out
            }
        );
        // Its commit fails and says why; the producer is fenced by the bumped epoch.
        let error = table.commit(ms(9000), "t-0", init.identity).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("open longer than its timeout 2000ms"),
            "{error}"
        );
        assert!(matches!(
            table.append(ms(9001), "t-0", init.identity, 1),
            Err(TransactionError::Fenced { .. })
        ));
    }

    #[test]
    fn a_transaction_committed_in_time_is_not_expired_later() {
        let mut table = TransactionTable::new(Duration::from_secs(1));
        let init = table.init_producer(ms(0), "t-0", Duration::from_secs(1));
        let index = table.append(ms(0), "t-0", init.identity, 1).unwrap();
        table.commit(ms(999), "t-0", init.identity).unwrap();
        table.expire(ms(5000));
        assert!(matches!(
            table.transactions()[index].status,
            TransactionStatus::Committed { .. }
        ));
    }

    #[test]
    fn requested_abort_ends_the_open_transaction() {
        let mut table = table();
        let init = table.init_producer(ms(0), "t-0", Duration::from_secs(1));
        let index = table.append(ms(0), "t-0", init.identity, 1).unwrap();
        table.abort(ms(3), "t-0", init.identity).unwrap();
        assert_eq!(
            table.transactions()[index].status,
            TransactionStatus::Aborted {
                at: ms(3),
                reason: AbortReason::Requested
            }
        );
        // Aborting with nothing open is fine (an aborter probing ids).
        table.abort(ms(4), "t-0", init.identity).unwrap();
    }
}
