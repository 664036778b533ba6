//! The key-value store node (a database an idempotent sink upserts into, and where the
//! write-ahead sink's committer records which checkpoints it wrote). It keeps the full
//! history of writes, so the checker sees transient values, not only the final ones.

use crate::runtime::rpc::serve;
use crate::runtime::sim_time;
use crate::time::Instant;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Requests to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// Set keys to values, in order (an upsert batch).
    Put {
        /// Who writes, for the history (`sink#0`).
        writer: String,
        /// Key and serialized value pairs.
        entries: Vec<(String, Vec<u8>)>,
    },
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
}

/// Store replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// Written.
    Stored,
    /// The value, or `None`.
    Value(Option<Vec<u8>>),
    /// The store refused.
    Error(String),
}

/// One write, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvWrite {
    /// When the store applied it.
    pub at: Instant,
    /// Who wrote it.
    pub writer: String,
    /// The key.
    pub key: String,
    /// The value written.
    pub value: Vec<u8>,
}

/// The store's durable contents, shared by every incarnation of the node within a run.
#[derive(Clone, Default)]
pub struct KvStorage {
    state: Arc<Mutex<KvState>>,
}

#[derive(Default)]
struct KvState {
    values: BTreeMap<String, Vec<u8>>,
    history: Vec<KvWrite>,
}

impl KvStorage {
    fn lock(&self) -> std::sync::MutexGuard<'_, KvState> {
        self.state
            .lock()
            .expect("no task panics while holding the store lock")
    }

    /// Answers one request at the store's time `now`.
    pub fn handle(&self, now: Instant, request: KvRequest) -> KvResponse {
        let mut state = self.lock();
        match request {
            KvRequest::Put { writer, entries } => {
                for (key, value) in entries {
                    state.history.push(KvWrite {
                        at: now,
                        writer: writer.clone(),
                        key: key.clone(),
                        value: value.clone(),
                    });
                    state.values.insert(key, value);
                }
                KvResponse::Stored
            }
            KvRequest::Get { key } => KvResponse::Value(state.values.get(&key).cloned()),
        }
    }

    /// The current contents.
    pub fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        self.lock().values.clone()
    }

    /// Every write so far, in the order applied.
    pub fn history(&self) -> Vec<KvWrite> {
        self.lock().history.clone()
    }
}

/// The store's main: serves requests until the node is killed.
pub async fn run_kv_store(storage: KvStorage) {
    serve(
        |request| storage.handle(sim_time::now(), request),
        KvResponse::Error,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_overwrite_and_the_history_keeps_every_value() {
        let store = KvStorage::default();
        let put = |at: u64, key: &str, value: u8| {
            store.handle(
                Instant::from_ms(at),
                KvRequest::Put {
                    writer: "sink#0".into(),
                    entries: vec![(key.into(), vec![value])],
                },
            )
        };
        assert_eq!(put(1, "a", 1), KvResponse::Stored);
        put(2, "a", 2);
        put(3, "a", 1);
        let get = store.handle(Instant::from_ms(4), KvRequest::Get { key: "a".into() });
        assert_eq!(get, KvResponse::Value(Some(vec![1])));
        let values: Vec<u8> = store.history().iter().map(|w| w.value[0]).collect();
        assert_eq!(values, vec![1, 2, 1]);
        assert_eq!(store.history()[1].at, Instant::from_ms(2));
        assert_eq!(store.contents().len(), 1);
    }
}
