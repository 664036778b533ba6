//! The reference evaluation: the job's own operators run sequentially in-process over an
//! input prefix, with no network, no parallelism and no faults. It gives the state a
//! failure-free run reaches over exactly that prefix, which is what every checkpoint and the
//! final state are compared with.
//!
//! Processing time is not a function of the input: an operator that reads it (timers, state
//! TTL) replays the run's processing-time journal (`state::processing_time_journal`), so its
//! records see the times the run handled them at and its timers fire where the run's did.

use crate::api::job::Job;
use crate::api::value::Text;
use crate::api::value::Value;
use crate::runtime::operator_chain::OperatorChain;
use crate::services::record_batch::RecordBatch;
use crate::state::key_group::KeyGroupRange;
use crate::state::processing_time_journal::ProcessingTimeJournals;
use crate::state::snapshot::{BroadcastStateSnapshot, KeyedStateSnapshot, LogicalKeyedState};
use std::collections::BTreeMap;

/// What the reference evaluation produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceResult {
    /// Keyed state per keyed operator uid.
    pub keyed: BTreeMap<String, LogicalKeyedState>,
    /// Records the sink received (serialized), in processing order.
    pub sink: RecordBatch,
    /// Broadcast state per keyed broadcast operator uid (applied in input order).
    pub broadcast: BTreeMap<String, BroadcastStateSnapshot>,
}

/// Runs the job's operators over each partition's records up to `prefix` (next offset per
/// partition; all records where absent), with processing time from `journals`.
pub fn evaluate(
    job: &Job,
    partitions: &[Vec<Value>],
    prefix: Option<&BTreeMap<u32, u64>>,
    journals: &ProcessingTimeJournals,
) -> Result<ReferenceResult, String> {
    let mut chain = whole_chain(job, journals);
    let mut leftover = Vec::new();
    for (partition, records) in partitions.iter().enumerate() {
        let limit = prefix.map_or(records.len() as u64, |p| {
            p.get(&(partition as u32)).copied().unwrap_or(0)
        });
        if limit > records.len() as u64 {
            return Err(format!(
                "offset {limit} is past the end {} of partition {partition}",
                records.len()
            ));
        }
        for value in &records[..limit as usize] {
            chain
                .process(value.clone(), &mut leftover)
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(waiting) = chain.unreplayed() {
        return Err(waiting);
    }
    if prefix.is_none() {
        chain
            .replay_timers(None, &mut leftover)
            .map_err(|e| e.to_string())?;
    }
    assert!(leftover.is_empty(), "a job ends in a sink");
    let sink = chain
        .sink()
        .map(|sink| std::mem::take(&mut sink.pending))
        .unwrap_or_default();
    let mut keyed = BTreeMap::new();
    for (uid, snapshot) in chain.snapshot_keyed().map_err(|e| e.to_string())? {
        let mut view = LogicalKeyedState::new();
        snapshot.merge_into(&mut view);
        keyed.insert(uid, view);
    }
    let broadcast = broadcast_of(&chain);
    Ok(ReferenceResult {
        keyed,
        sink,
        broadcast,
    })
}

/// The reference chain's broadcast states (it is one subtask of one).
fn broadcast_of(chain: &OperatorChain) -> BTreeMap<String, BroadcastStateSnapshot> {
    chain
        .broadcast_states()
        .into_iter()
        .map(|(uid, store)| (uid, store.snapshot(0, 1)))
        .collect()
}

/// The reference evaluation advanced prefix by prefix. Completed checkpoints' offsets never
/// go backwards per partition (a restore starts from the latest completed one), and keys live
/// in one partition, so each partition can be advanced on its own.
pub struct IncrementalReference<'a> {
    chain: OperatorChain,
    partitions: &'a [Vec<Value>],
    // Per stage, the journals its operators replay (the last serves any stage after it).
    journals: &'a [ProcessingTimeJournals],
    consumed: Vec<u64>,
    leftover: Vec<Value>,
    // What the sinks of earlier job versions received (a staged run).
    sink_before: RecordBatch,
    // Stages switched to.
    stage: usize,
}

impl<'a> IncrementalReference<'a> {
    /// A reference that has consumed nothing, with processing time from `journals` (one set
    /// per stage; at least one).
    pub fn new(
        job: &Job,
        partitions: &'a [Vec<Value>],
        journals: &'a [ProcessingTimeJournals],
    ) -> Self {
        assert!(!journals.is_empty(), "one set of journals at least");
        IncrementalReference {
            chain: whole_chain(job, &journals[0]),
            partitions,
            journals,
            consumed: vec![0; partitions.len()],
            leftover: Vec::new(),
            sink_before: RecordBatch::new(),
            stage: 0,
        }
    }

    /// The journals of every stage.
    pub fn stage_journals(&self) -> &'a [ProcessingTimeJournals] {
        self.journals
    }

    /// The journals its current stage replays.
    pub fn journals(&self) -> &'a ProcessingTimeJournals {
        &self.journals[self.stage.min(self.journals.len() - 1)]
    }

    /// The stage whose job it runs (0: the first).
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// The next stage runs `job` (a new version: operators added or removed, other
    /// parallelism) from here on: keyed state carries over by operator uid, an operator with
    /// no state starts empty, and state no operator of `job` claims is dropped (the restore
    /// refused it unless told to drop it).
    pub fn switch_to(&mut self, job: &Job) -> Result<(), String> {
        let keyed: BTreeMap<String, Vec<KeyedStateSnapshot>> = self
            .chain
            .snapshot_keyed()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(uid, snapshot)| (uid, vec![snapshot]))
            .collect();
        let next = (self.stage + 1).min(self.journals.len() - 1);
        let mut chain = whole_chain(job, &self.journals[next]);
        chain.restore_keyed(&keyed).map_err(|e| e.to_string())?;
        chain.carry_broadcast(&self.chain);
        let operator_state = self
            .chain
            .snapshot_operator_state()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(uid, snapshot)| (uid, vec![snapshot]))
            .collect();
        chain.restore_operator_state(&operator_state);
        if let Some(sink) = self.chain.sink() {
            self.sink_before
                .extend_from(&std::mem::take(&mut sink.pending));
        }
        self.chain = chain;
        self.stage += 1;
        Ok(())
    }

    /// Each partition's next offset so far.
    pub fn consumed(&self) -> BTreeMap<u32, u64> {
        (0..self.consumed.len())
            .map(|partition| (partition as u32, self.consumed[partition]))
            .collect()
    }

    /// Consumes each partition up to `prefix` (partitions absent stay where they are).
    pub fn advance_to(&mut self, prefix: &BTreeMap<u32, u64>) -> Result<(), String> {
        for (&partition, &offset) in prefix {
            let records = self
                .partitions
                .get(partition as usize)
                .ok_or_else(|| format!("no partition {partition}"))?;
            let consumed = self.consumed[partition as usize];
            if offset < consumed {
                return Err(format!("partition {partition}: offset {offset} is behind an earlier checkpoint's {consumed}"));
            }
            if offset > records.len() as u64 {
                return Err(format!(
                    "offset {offset} is past the end {} of partition {partition}",
                    records.len()
                ));
            }
            for value in &records[consumed as usize..offset as usize] {
                self.chain
                    .process(value.clone(), &mut self.leftover)
                    .map_err(|e| e.to_string())?;
            }
            self.consumed[partition as usize] = offset;
        }
        match self.chain.unreplayed() {
            Some(waiting) => Err(format!("over offsets {prefix:?}: {waiting}")),
            None => Ok(()),
        }
    }

    /// Consumes the rest of every partition: the reference over the whole input. Its sink
    /// output holds each key's records in order (keys live in one partition); across keys the
    /// order is the prefixes', which no check depends on.
    pub fn finish(mut self) -> Result<ReferenceResult, String> {
        let ends: BTreeMap<u32, u64> = (0..self.partitions.len())
            .map(|partition| (partition as u32, self.partitions[partition].len() as u64))
            .collect();
        self.advance_to(&ends)?;
        self.chain
            .replay_timers(None, &mut self.leftover)
            .map_err(|e| e.to_string())?;
        assert!(self.leftover.is_empty(), "a job ends in a sink");
        let keyed = self.keyed()?;
        let mut sink = std::mem::take(&mut self.sink_before);
        if let Some(last) = self.chain.sink() {
            sink.extend_from(&last.pending);
        }
        let broadcast = self.broadcast();
        Ok(ReferenceResult {
            keyed,
            sink,
            broadcast,
        })
    }

    /// Fires the timers the run fired after each key's last record before a snapshot whose
    /// journals are `lengths` long (per uid, per key).
    pub fn settle_timers(
        &mut self,
        lengths: &BTreeMap<String, BTreeMap<Text, usize>>,
    ) -> Result<(), String> {
        self.chain
            .replay_timers(Some(lengths), &mut self.leftover)
            .map_err(|e| e.to_string())
    }

    /// The checkpointed functions' operator state reached so far (their `snapshotState`
    /// runs).
    pub fn operator_state(
        &mut self,
    ) -> Result<BTreeMap<String, crate::state::operator_state::OperatorStateSnapshot>, String> {
        self.chain
            .snapshot_operator_state()
            .map_err(|e| e.to_string())
    }

    /// Whether the keyed state reached so far equals `snapshots` (per operator uid, the
    /// snapshots of all its subtasks): the allocation-free check of a checkpoint that agrees.
    pub fn equals(&self, snapshots: &BTreeMap<&str, Vec<&KeyedStateSnapshot>>) -> bool {
        let mut compared = 0;
        let equal = self.chain.keyed_backends().all(|(uid, backend)| {
            compared += usize::from(snapshots.contains_key(uid));
            let found = snapshots.get(uid).map_or(&[][..], Vec::as_slice);
            backend.equals_snapshots(found)
        });
        equal && compared == snapshots.len()
    }

    /// The broadcast states reached so far, per keyed broadcast operator uid.
    pub fn broadcast(&self) -> BTreeMap<String, BroadcastStateSnapshot> {
        broadcast_of(&self.chain)
    }

    /// The keyed state reached so far.
    pub fn keyed(&self) -> Result<BTreeMap<String, LogicalKeyedState>, String> {
        let mut keyed = BTreeMap::new();
        for (uid, snapshot) in self.chain.snapshot_keyed().map_err(|e| e.to_string())? {
            let mut view = LogicalKeyedState::new();
            snapshot.merge_into(&mut view);
            keyed.insert(uid, view);
        }
        Ok(keyed)
    }
}

/// The whole job in one chain owning every key group, replaying `journals`.
fn whole_chain(job: &Job, journals: &ProcessingTimeJournals) -> OperatorChain {
    let whole = KeyGroupRange {
        start: 0,
        end: job.max_parallelism - 1,
    };
    let mut chain = OperatorChain::new(job, 0..job.operators.len(), whole);
    chain.replay_processing_time(journals);
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::jobs::word_count;
    use crate::state::snapshot::StateEntry;

    #[test]
    fn word_count_over_a_prefix() {
        let words = ["hello", "world", "hello", "flink", "hello"]
            .map(|w| Value::Str(w.into()))
            .to_vec();
        let job = word_count(1, 1);
        let prefix = BTreeMap::from([(0, 3)]);
        let result = evaluate(&job, &[words], Some(&prefix), &Default::default()).unwrap();
        let counter = &result.keyed["counter"];
        assert_eq!(
            counter["hello"]["count"],
            StateEntry::Value(postcard::to_allocvec(&2i64).unwrap())
        );
        assert_eq!(counter.len(), 2);
        assert_eq!(result.sink.len(), 3);
    }
}
