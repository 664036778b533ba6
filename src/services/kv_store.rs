//! The key-value store node (a database an idempotent sink upserts into, and where the
//! write-ahead sink's committer records which checkpoints it wrote). It keeps the full
//! history of writes, so the checker sees transient values, not only the final ones.
//!
//! Writers that must not overlap (the committer of a write-ahead sink subtask) fence each
//! other by generation, as a Kafka broker fences an older consumer generation: a key written
//! or fenced by generation g refuses a put from an older one, so a zombie of a failed attempt
//! cannot record a batch after the recovery took the key over.

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
        /// The writer's generation (its job attempt), if its keys are fenced; `None` for
        /// upserts that any attempt may make.
        generation: Option<u32>,
        /// Key and serialized value pairs.
        entries: Vec<(String, Vec<u8>)>,
    },
    /// Take `key` over for `generation`: from now on puts of older generations are refused.
    Fence {
        /// The key.
        key: String,
        /// The new owner's generation.
        generation: u32,
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
    /// A put of an older generation than the key's owner: nothing was written.
    Fenced {
        /// The generation that asked.
        generation: u32,
        /// The key's owner.
        current: u32,
    },
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
    /// The writer's generation, if fenced.
    pub generation: Option<u32>,
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
    // Per fenced key, the newest generation that wrote or fenced it.
    generations: BTreeMap<String, u32>,
    // Puts refused as fenced, for the checker.
    refused: Vec<KvWrite>,
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
            KvRequest::Put {
                writer,
                generation,
                entries,
            } => state.put(now, writer, generation, entries),
            KvRequest::Fence { key, generation } => {
                let current = state.generations.entry(key).or_insert(generation);
                if *current > generation {
                    return KvResponse::Fenced {
                        generation,
                        current: *current,
                    };
                }
                *current = generation;
                KvResponse::Stored
            }
            KvRequest::Get { key } => KvResponse::Value(state.values.get(&key).cloned()),
        }
    }

    /// Puts the store refused as fenced, in order.
    pub fn refused(&self) -> Vec<KvWrite> {
        self.lock().refused.clone()
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

impl KvState {
    /// A put is all or nothing: one fenced key refuses the whole batch.
    fn put(
        &mut self,
        now: Instant,
        writer: String,
        generation: Option<u32>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> KvResponse {
        let write = |key: &String, value: &Vec<u8>| KvWrite {
            at: now,
            writer: writer.clone(),
            key: key.clone(),
            value: value.clone(),
            generation,
        };
        if let Some(generation) = generation {
            let newer = entries.iter().find_map(|(key, _)| {
                self.generations
                    .get(key)
                    .filter(|current| **current > generation)
            });
            if let Some(current) = newer.copied() {
                let refused = entries.iter().map(|(key, value)| write(key, value));
                self.refused.extend(refused);
                return KvResponse::Fenced {
                    generation,
                    current,
                };
            }
            for (key, _) in &entries {
                self.generations.insert(key.clone(), generation);
            }
        }
        for (key, value) in entries {
            self.history.push(write(&key, &value));
            self.values.insert(key, value);
        }
        KvResponse::Stored
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
                    generation: None,
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

    #[test]
    fn an_older_generation_is_fenced_once_a_newer_one_took_the_key() {
        let store = KvStorage::default();
        let put = |generation: u32, value: u8| {
            store.handle(
                Instant::from_ms(u64::from(value)),
                KvRequest::Put {
                    writer: format!("sink#0 attempt-{generation}"),
                    generation: Some(generation),
                    entries: vec![("committer".into(), vec![value])],
                },
            )
        };
        assert_eq!(put(2, 1), KvResponse::Stored);
        let fence = KvRequest::Fence {
            key: "committer".into(),
            generation: 3,
        };
        assert_eq!(store.handle(Instant::from_ms(2), fence), KvResponse::Stored);
        // The zombie of attempt 2 can no longer record; attempt 3 can.
        assert_eq!(
            put(2, 3),
            KvResponse::Fenced {
                generation: 2,
                current: 3
            }
        );
        assert_eq!(put(3, 4), KvResponse::Stored);
        let stale_fence = KvRequest::Fence {
            key: "committer".into(),
            generation: 2,
        };
        assert!(matches!(
            store.handle(Instant::from_ms(5), stale_fence),
            KvResponse::Fenced { current: 3, .. }
        ));
        let values: Vec<u8> = store.history().iter().map(|w| w.value[0]).collect();
        assert_eq!(
            values,
            vec![1, 4],
            "the refused put left no trace in the values"
        );
        assert_eq!(store.refused().len(), 1);
        assert_eq!(store.refused()[0].value, vec![3]);
        // Unfenced upserts are never refused.
        let upsert = KvRequest::Put {
            writer: "sink#1".into(),
            generation: None,
            entries: vec![("k0".into(), vec![9])],
        };
        assert_eq!(
            store.handle(Instant::from_ms(6), upsert),
            KvResponse::Stored
        );
    }
}
