//! The operators of one job vertex, run back to back in one task (Flink's operator chain).

use crate::api::functions::{
    BroadcastSelector, CheckpointedFunction, FilterFunction, FlatMapFunction, KeySelector,
    KeyedBroadcastProcessFunction, KeyedProcessFunction, MapFunction, UserError,
};
use crate::api::job::{Job, OperatorKind};
use crate::api::value::{Text, Value};
use crate::limits::SINK_APPEND_RECORDS_MAX;
use crate::runtime::task_error::TaskError;
use crate::services::record_batch::RecordBatch;
use crate::state::broadcast_state::{
    chain_digest, BroadcastLineages, BroadcastStateSnapshot, BroadcastStateStore,
};
use crate::state::heap_backend::{HeapKeyedStateBackend, KeyedStateAccess, StateError};
use crate::state::key_group::KeyGroupRange;
use crate::state::operator_state::{OperatorStateSnapshot, OperatorStateStore};
use crate::state::processing_time_journal::{JournalEntry, ProcessingTimeJournals};
use crate::state::raw_state::{RawKeyedStateInput, RawKeyedStateOutput};
use crate::state::snapshot::{
    KeyedStateSnapshot, OperatorSnapshot, SinkStateSnapshot, SourceOffsets,
};
use std::collections::BTreeMap;
use std::ops::Range;

/// What a keyed operator runs.
enum KeyedFunction {
    Process(Box<dyn KeyedProcessFunction>),
    Broadcast {
        function: Box<dyn KeyedBroadcastProcessFunction>,
        selector: BroadcastSelector,
        store: BroadcastStateStore,
    },
}

impl KeyedFunction {
    fn on_timer(
        &mut self,
        timestamp: u64,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        match self {
            KeyedFunction::Process(function) => function.on_timer(timestamp, state, out),
            KeyedFunction::Broadcast { function, .. } => function.on_timer(timestamp, state, out),
        }
    }

    fn describe_state(&self, state_name: &str, bytes: &[u8]) -> String {
        match self {
            KeyedFunction::Process(function) => function.describe_state(state_name, bytes),
            KeyedFunction::Broadcast { function, .. } => function.describe_state(state_name, bytes),
        }
    }

    fn snapshot_raw(&self, output: &mut RawKeyedStateOutput) -> Result<(), UserError> {
        match self {
            KeyedFunction::Process(function) => function.snapshot_raw_keyed_state(output),
            KeyedFunction::Broadcast { function, .. } => function.snapshot_raw_keyed_state(output),
        }
    }

    fn restore_raw(&mut self, input: RawKeyedStateInput<'_>) -> Result<(), UserError> {
        match self {
            KeyedFunction::Process(function) => function.restore_raw_keyed_state(input),
            KeyedFunction::Broadcast { function, .. } => function.restore_raw_keyed_state(input),
        }
    }
}

/// A reference evaluation's broadcast states: the run's application logs, and the states
/// their prefixes fold to (through the operator's own function), by digest.
#[derive(Default)]
struct ReplayedBroadcast {
    lineages: BroadcastLineages,
    folded: BTreeMap<u64, BroadcastStateStore>,
}

impl ReplayedBroadcast {
    /// The broadcast state whose application log has `digest`, folded from the longest
    /// prefix already folded.
    fn state(
        &mut self,
        uid: &str,
        digest: u64,
        function: &mut dyn KeyedBroadcastProcessFunction,
    ) -> Result<&BroadcastStateStore, UserError> {
        if !self.folded.contains_key(&digest) {
            let prefix = self.lineages.prefix(uid, digest).ok_or_else(|| {
                UserError(format!(
                    "operator `{uid}`: the run handled a record with broadcast state {digest:016x}, which no snapshot's application log holds"
                ))
            })?;
            let mut store = BroadcastStateStore::new();
            let mut from = 0;
            let mut chained = store.digest();
            for (position, element) in prefix.iter().enumerate() {
                chained = chain_digest(chained, element);
                if let Some(folded) = self.folded.get(&chained) {
                    (store, from) = (folded.clone(), position + 1);
                }
            }
            for element in &prefix[from..] {
                store.log_applied(element);
                function.process_broadcast_element(element.clone(), &mut store.context())?;
            }
            debug_assert_eq!(store.digest(), digest);
            self.folded.insert(digest, store);
        }
        Ok(&self.folded[&digest])
    }
}

/// A keyed operator with its function and state.
pub struct KeyedOperator {
    /// Its uid.
    pub uid: String,
    key_selector: KeySelector,
    function: KeyedFunction,
    /// Its keyed state.
    pub backend: HeapKeyedStateBackend,
    // A reference evaluation's journal to replay, per key: processing time comes from it
    // instead of the clock.
    replay: Option<BTreeMap<Text, Vec<JournalEntry>>>,
    // Replaying: records that arrived before the journal reached them, per key.
    pending: BTreeMap<Text, Vec<Value>>,
    // Replaying a keyed broadcast function: the broadcast states the run's records saw.
    replayed_broadcast: Box<ReplayedBroadcast>,
}

impl KeyedOperator {
    fn new(
        uid: String,
        key_selector: KeySelector,
        function: KeyedFunction,
        mut backend: HeapKeyedStateBackend,
    ) -> KeyedOperator {
        let journaled = match &function {
            KeyedFunction::Process(function) => function.uses_processing_time(),
            // What a keyed element does depends on the broadcast state its subtask held.
            KeyedFunction::Broadcast { .. } => true,
        };
        if journaled {
            backend.declare_processing_time();
        }
        KeyedOperator {
            uid,
            key_selector,
            function,
            backend,
            replay: None,
            pending: BTreeMap::new(),
            replayed_broadcast: Box::default(),
        }
    }

    /// Handles one record: journals it when the function reads processing time, then runs
    /// the function. Replaying, the record waits until the journal reaches it: each key's
    /// records are handled in the order the run handled them (which the input does not fix
    /// when a key's records come from several partitions). A broadcast element is applied
    /// to the broadcast state at once.
    fn process(&mut self, value: Value, out: &mut Vec<Value>) -> Result<(), UserError> {
        if let KeyedFunction::Broadcast {
            function,
            selector,
            store,
        } = &mut self.function
        {
            if selector(&value) {
                store.log_applied(&value);
                return function.process_broadcast_element(value, &mut store.context());
            }
        }
        let key = (self.key_selector)(&value);
        if !self.backend.reads_processing_time() {
            let KeyedFunction::Process(function) = &mut self.function else {
                unreachable!("a keyed broadcast function is journaled")
            };
            let mut access = self.backend.access(&key)?;
            return function.process_element(value, &mut access, out);
        }
        if self.replay.is_some() {
            self.pending.entry(key.clone()).or_default().push(value);
            return self.replay_pending(&key, out);
        }
        let at = self.backend.processing_time();
        self.handle_at(&key, value, at, None, out)
    }

    /// Handles `value` of `key` at `at`; replaying a keyed broadcast function, with the
    /// broadcast state whose log has digest `replayed` (the run's).
    fn handle_at(
        &mut self,
        key: &str,
        value: Value,
        at: u64,
        replayed: Option<u64>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        self.backend.set_processing_time(at);
        let fingerprint = fingerprint(&value);
        let entry = match &self.function {
            KeyedFunction::Process(_) => JournalEntry::Record { at, fingerprint },
            KeyedFunction::Broadcast { store, .. } => JournalEntry::BroadcastRecord {
                at,
                fingerprint,
                broadcast: replayed.unwrap_or(store.digest()),
            },
        };
        self.backend.journal(key, entry)?;
        self.backend.on_record();
        let mut access = self.backend.access(key)?;
        match &mut self.function {
            KeyedFunction::Process(function) => function.process_element(value, &mut access, out),
            KeyedFunction::Broadcast {
                function, store, ..
            } => {
                let seen = match replayed {
                    Some(digest) => {
                        self.replayed_broadcast
                            .state(&self.uid, digest, function.as_mut())?
                    }
                    None => store,
                };
                function.process_element(value, &mut access, &seen.read_only(), out)
            }
        }
    }

    /// Fires `key`'s timer for `timestamp` at `at`.
    fn fire(
        &mut self,
        key: &str,
        timestamp: u64,
        at: u64,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        self.backend.set_processing_time(at);
        self.backend
            .journal(key, JournalEntry::Timer { timestamp, at })?;
        let mut access = self.backend.access(key)?;
        self.function.on_timer(timestamp, &mut access, out)
    }

    /// Fires every timer due at `now` (live: the clock).
    fn fire_due(&mut self, now: u64, out: &mut Vec<Value>) -> Result<(), UserError> {
        self.backend.set_processing_time(now);
        while let Some((timestamp, key)) = self.backend.pop_due_timer(now) {
            self.fire(&key, timestamp, now, out)?;
        }
        Ok(())
    }

    /// `key`'s journal entries from its position (the length of the journal its state holds).
    fn replayed_from_position(&mut self, key: &str) -> Result<Vec<JournalEntry>, UserError> {
        let position = self.backend.journal_len(key)?;
        let journal = self.replay.as_ref().expect("replaying");
        Ok(journal
            .get(key)
            .and_then(|entries| entries.get(position..))
            .map(<[JournalEntry]>::to_vec)
            .unwrap_or_default())
    }

    /// Handles `key`'s waiting records as far as the journal goes: each next record entry
    /// takes the waiting record with its fingerprint, after the timers the run fired before.
    fn replay_pending(&mut self, key: &str, out: &mut Vec<Value>) -> Result<(), UserError> {
        let entries = self.replayed_from_position(key)?;
        let mut timers = Vec::new();
        for entry in entries {
            let (at, fingerprint, broadcast) = match entry {
                JournalEntry::Timer { timestamp, at } => {
                    timers.push((timestamp, at));
                    continue;
                }
                JournalEntry::Record { at, fingerprint } => (at, fingerprint, None),
                JournalEntry::BroadcastRecord {
                    at,
                    fingerprint,
                    broadcast,
                } => (at, fingerprint, Some(broadcast)),
            };
            let waiting = self.pending.get_mut(key).expect("a record waits");
            let Some(index) = waiting
                .iter()
                .position(|v| self::fingerprint(v) == fingerprint)
            else {
                return Ok(()); // The run's next record of the key has not reached us yet.
            };
            let value = waiting.remove(index);
            if waiting.is_empty() {
                self.pending.remove(key);
            }
            for (timestamp, fired_at) in timers.drain(..) {
                self.replay_timer(key, timestamp, fired_at, out)?;
            }
            if let Some(due) = self.backend.first_timer_of(key)?.filter(|t| *t <= at) {
                return Err(UserError(format!(
                    "operator `{}` key `{key}`: its timer for {due} ms had not fired when a record was handled at {at} ms",
                    self.uid
                )));
            }
            self.handle_at(key, value, at, broadcast, out)?;
            if !self.pending.contains_key(key) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Fires, as the run did, a timer the journal shows; it must be the key's earliest one
    /// and due.
    fn replay_timer(
        &mut self,
        key: &str,
        timestamp: u64,
        at: u64,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let first = self.backend.first_timer_of(key)?;
        if first != Some(timestamp) || timestamp > at {
            return Err(UserError(format!(
                "operator `{}` key `{key}`: the run fired a timer for {timestamp} ms at {at} ms, where the key's earliest timer is {first:?}",
                self.uid
            )));
        }
        self.backend.set_processing_time(at);
        self.backend
            .access(key)?
            .delete_processing_time_timer(timestamp)?;
        self.fire(key, timestamp, at, out)
    }

    /// Replays the timers each key's journal shows before its entry `lengths[key]` (or
    /// before its end, for every key, when `lengths` is `None`).
    fn replay_timers(
        &mut self,
        lengths: Option<&BTreeMap<Text, usize>>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let journal = self.replay.as_ref().expect("replaying");
        let targets: Vec<(Text, usize)> = match lengths {
            Some(lengths) => lengths.iter().map(|(k, n)| (k.clone(), *n)).collect(),
            None => journal.iter().map(|(k, e)| (k.clone(), e.len())).collect(),
        };
        for (key, target) in targets {
            let position = self.backend.journal_len(&key)?;
            let entries = self.replayed_from_position(&key)?;
            for entry in entries.into_iter().take(target.saturating_sub(position)) {
                match entry {
                    JournalEntry::Timer { timestamp, at } => {
                        self.replay_timer(&key, timestamp, at, out)?
                    }
                    JournalEntry::Record { .. } | JournalEntry::BroadcastRecord { .. } => break,
                }
            }
        }
        Ok(())
    }

    /// A record still waiting for the journal to reach it: one the run did not handle where
    /// the reference has it (a key, and how many wait).
    fn waiting(&self) -> Option<(&Text, usize)> {
        self.pending
            .iter()
            .next()
            .map(|(key, values)| (key, values.len()))
    }
}

/// A record's fingerprint in the journal: FNV-1a over its encoding (the same in the run and
/// in the reference; equal records are interchangeable).
fn fingerprint(value: &Value) -> u64 {
    let bytes = postcard::to_allocvec(value).expect("values always encode");
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ *byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Records the sink collected and has not yet written.
#[derive(Default)]
pub struct SinkBuffer {
    /// The output topic.
    pub topic: String,
    /// Serialized records waiting to be appended.
    pub pending: RecordBatch,
    /// Records appended so far.
    pub records_written: u64,
}

/// A non-keyed function with operator state, and that state.
pub struct CheckpointedOperator {
    uid: String,
    function: Box<dyn CheckpointedFunction>,
    store: OperatorStateStore,
    initialized: bool,
}

impl CheckpointedOperator {
    /// `initializeState` once, before the first record or snapshot.
    fn ensure_initialized(&mut self) -> Result<(), UserError> {
        if !std::mem::replace(&mut self.initialized, true) {
            self.function.initialize_state(&mut self.store)?;
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        index: u32,
        parallelism: u32,
    ) -> Result<OperatorStateSnapshot, UserError> {
        self.ensure_initialized()?;
        self.function.snapshot_state(&mut self.store)?;
        Ok(self.store.snapshot(index, parallelism))
    }
}

enum ChainOperator {
    SourceHead,
    Checkpointed(CheckpointedOperator),
    Map(MapFunction),
    FlatMap(FlatMapFunction),
    Filter(FilterFunction),
    Keyed(KeyedOperator),
    Sink(SinkBuffer),
}

/// The chained operators of one subtask.
pub struct OperatorChain {
    operators: Vec<ChainOperator>,
    uids: Vec<String>,
    // Per operator, where it collects what it emits for one input (kept across records: the
    // per-record path allocates nothing here).
    collected: Vec<Vec<Value>>,
    // No processing-time timer fires (end of data, or a terminating savepoint taken).
    timers_quiesced: bool,
    // A keyed operator reads processing time (fixed at construction).
    reads_time: bool,
    // Which subtask of how many this chain is.
    subtask: (u32, u32),
}

impl OperatorChain {
    /// Instantiates the operators `range` of `job` for a subtask owning `key_group_range`.
    pub fn new(job: &Job, range: Range<usize>, key_group_range: KeyGroupRange) -> OperatorChain {
        let mut operators = Vec::new();
        let mut uids = Vec::new();
        for operator in &job.operators[range] {
            let chained = match &operator.kind {
                OperatorKind::Source { .. } => ChainOperator::SourceHead,
                OperatorKind::Map(function) => ChainOperator::Map(function.clone()),
                OperatorKind::FlatMap(function) => ChainOperator::FlatMap(function.clone()),
                OperatorKind::Filter(function) => ChainOperator::Filter(function.clone()),
                OperatorKind::KeyedProcess {
                    key_selector,
                    factory,
                } => ChainOperator::Keyed(KeyedOperator::new(
                    operator.uid.clone(),
                    key_selector.clone(),
                    KeyedFunction::Process(factory()),
                    HeapKeyedStateBackend::new(job.max_parallelism, key_group_range),
                )),
                OperatorKind::KeyedBroadcastProcess {
                    key_selector,
                    broadcast,
                    factory,
                } => ChainOperator::Keyed(KeyedOperator::new(
                    operator.uid.clone(),
                    key_selector.clone(),
                    KeyedFunction::Broadcast {
                        function: factory(),
                        selector: broadcast.clone(),
                        store: BroadcastStateStore::new(),
                    },
                    HeapKeyedStateBackend::new(job.max_parallelism, key_group_range),
                )),
                OperatorKind::Checkpointed(factory) => {
                    ChainOperator::Checkpointed(CheckpointedOperator {
                        uid: operator.uid.clone(),
                        function: factory(),
                        store: OperatorStateStore::default(),
                        initialized: false,
                    })
                }
                OperatorKind::Sink { topic } => ChainOperator::Sink(SinkBuffer {
                    topic: topic.clone(),
                    ..SinkBuffer::default()
                }),
            };
            operators.push(chained);
            uids.push(operator.uid.clone());
        }
        assert!(!operators.is_empty());
        let reads_time = operators.iter().any(
            |operator| matches!(operator, ChainOperator::Keyed(k) if k.backend.reads_processing_time()),
        );
        OperatorChain {
            subtask: (0, 1),
            reads_time,
            collected: vec![Vec::new(); operators.len()],
            operators,
            uids,
            timers_quiesced: false,
        }
    }

    /// Uids of the chained operators, in order.
    pub fn uids(&self) -> &[String] {
        &self.uids
    }

    /// Runs one record through the chain; what leaves the chain's end is pushed to `out`.
    pub fn process(&mut self, value: Value, out: &mut Vec<Value>) -> Result<(), UserError> {
        self.process_from(0, value, out)
    }

    /// Runs one record through the chain from its operator `first` on (a record that was in
    /// flight to that operator). If user code fails, nothing is pushed to `out`.
    pub fn process_from(
        &mut self,
        first: usize,
        value: Value,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let emitted = out.len();
        let operators = &mut self.operators[first..];
        let result = push_through(operators, &mut self.collected[first..], value, out);
        if result.is_err() {
            out.truncate(emitted); // The task fails: what this record produced goes nowhere.
        }
        result
    }

    /// The sink at the chain's end, if there is one.
    pub fn sink(&mut self) -> Option<&mut SinkBuffer> {
        match self.operators.last_mut() {
            Some(ChainOperator::Sink(sink)) => Some(sink),
            _ => None,
        }
    }

    /// Sets processing time (milliseconds) and fires every timer due by it; what the timers
    /// emit runs through the rest of the chain, what leaves its end is pushed to `out`.
    pub fn advance_processing_time(
        &mut self,
        now_ms: u64,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        if !self.reads_time {
            return Ok(());
        }
        for index in 0..self.operators.len() {
            let mut fired = Vec::new();
            match &mut self.operators[index] {
                ChainOperator::Keyed(keyed) if keyed.backend.reads_processing_time() => {
                    match self.timers_quiesced {
                        true => keyed.backend.set_processing_time(now_ms),
                        false => keyed.fire_due(now_ms, &mut fired)?,
                    }
                }
                _ => continue,
            }
            self.emit_from(index + 1, fired, out)?;
        }
        Ok(())
    }

    /// Whether a keyed operator of the chain reads processing time.
    pub fn reads_processing_time(&self) -> bool {
        self.reads_time
    }

    /// The earliest registered timer of the chain's keyed operators (milliseconds), unless
    /// timers are quiesced.
    pub fn next_timer(&self) -> Option<u64> {
        if self.timers_quiesced {
            return None;
        }
        self.keyed().filter_map(|k| k.backend.next_timer()).min()
    }

    /// Stops (or lets run again) the processing-time timers: after the end of data none
    /// fires, as Flink quiesces the timer service when operators finish; nor after a
    /// terminating savepoint's snapshot, whose output must be the last.
    pub fn quiesce_processing_time(&mut self, quiesced: bool) {
        self.timers_quiesced = quiesced;
    }

    /// A reference evaluation: the keyed operators that read processing time take it from
    /// `journals` (per uid, per key) instead of the clock, and fire timers where it shows
    /// the run fired them.
    pub fn replay_processing_time(&mut self, journals: &ProcessingTimeJournals) {
        self.replay_broadcast(&journals.broadcast);
        for operator in &mut self.operators {
            if let ChainOperator::Keyed(keyed) = operator {
                if keyed.backend.reads_processing_time() {
                    keyed.replay = Some(journals.get(&keyed.uid).cloned().unwrap_or_default());
                    keyed.backend.replay_times();
                }
            }
        }
    }

    /// Replays the timers the journals show up to each key's entry `lengths[uid][key]` (a
    /// snapshot's journal lengths), or to their ends when `lengths` is `None`: the timers
    /// the run fired after the key's last record before that point.
    pub fn replay_timers(
        &mut self,
        lengths: Option<&BTreeMap<String, BTreeMap<Text, usize>>>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        for index in 0..self.operators.len() {
            let mut fired = Vec::new();
            match &mut self.operators[index] {
                ChainOperator::Keyed(keyed) if keyed.replay.is_some() => {
                    let wanted = match lengths {
                        Some(lengths) => match lengths.get(&keyed.uid) {
                            Some(per_key) => Some(per_key),
                            None => continue,
                        },
                        None => None,
                    };
                    keyed.replay_timers(wanted, &mut fired)?
                }
                _ => continue,
            }
            self.emit_from(index + 1, fired, out)?;
        }
        Ok(())
    }

    /// A reference evaluation's records that never matched the journal: the first
    /// operator, key and count, if any.
    pub fn unreplayed(&self) -> Option<String> {
        self.keyed().find_map(|keyed| {
            keyed.waiting().map(|(key, count)| {
                format!(
                    "operator `{}` key `{key}`: {count} record(s) the run's journal does not show it handled (next: entry {})",
                    keyed.uid,
                    keyed.replay.as_ref().and_then(|j| j.get(key)).map_or(0, Vec::len)
                )
            })
        })
    }

    fn emit_from(
        &mut self,
        first: usize,
        values: Vec<Value>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        for value in values {
            if first == self.operators.len() {
                out.push(value);
            } else {
                self.process_from(first, value, out)?;
            }
        }
        Ok(())
    }

    /// Whether the sink holds enough records to write a batch.
    pub fn sink_batch_full(&self) -> bool {
        matches!(self.operators.last(), Some(ChainOperator::Sink(sink)) if sink.pending.len() >= SINK_APPEND_RECORDS_MAX)
    }

    /// The synchronous part of a snapshot: a copy of every keyed operator's state (with its
    /// broadcast state, for a keyed broadcast function).
    pub fn snapshot_keyed(&self) -> Result<BTreeMap<String, KeyedStateSnapshot>, UserError> {
        let (index, parallelism) = self.subtask;
        self.keyed()
            .map(|keyed| {
                let mut snapshot = keyed.backend.snapshot();
                if let KeyedFunction::Broadcast { store, .. } = &keyed.function {
                    snapshot.broadcast = Some(store.snapshot(index, parallelism));
                }
                let mut raw = keyed.backend.raw_output();
                keyed.function.snapshot_raw(&mut raw)?;
                snapshot.raw = raw.into_groups();
                Ok((keyed.uid.clone(), snapshot))
            })
            .collect()
    }

    /// A reference evaluation: the keyed broadcast functions hand each keyed record the
    /// broadcast state the run's subtask held (its journal's digest, found in `lineages`).
    pub fn replay_broadcast(&mut self, lineages: &BroadcastLineages) {
        for operator in &mut self.operators {
            if let ChainOperator::Keyed(keyed) = operator {
                if matches!(keyed.function, KeyedFunction::Broadcast { .. }) {
                    keyed.replayed_broadcast.lineages = lineages.clone();
                }
            }
        }
    }

    /// A reference evaluation moving on to a new job version: each keyed broadcast function
    /// takes over the broadcast state of its uid in `previous` as it is (a reference is one
    /// subtask: nothing to redistribute, so the engine's restore is not what carries it).
    pub fn carry_broadcast(&mut self, previous: &OperatorChain) {
        let stores = previous.broadcast_states();
        for operator in &mut self.operators {
            if let ChainOperator::Keyed(keyed) = operator {
                if let KeyedFunction::Broadcast { store, .. } = &mut keyed.function {
                    if let Some(found) = stores.get(&keyed.uid) {
                        *store = (*found).clone();
                    }
                }
            }
        }
    }

    /// Each keyed broadcast function's broadcast state in this chain, by uid.
    pub fn broadcast_states(&self) -> BTreeMap<String, &BroadcastStateStore> {
        self.keyed()
            .filter_map(|keyed| match &keyed.function {
                KeyedFunction::Broadcast { store, .. } => Some((keyed.uid.clone(), store)),
                KeyedFunction::Process(_) => None,
            })
            .collect()
    }

    /// This chain is subtask `index` of `parallelism` (what its operator state snapshots
    /// say, and how restored operator state is split).
    pub fn set_subtask(&mut self, index: u32, parallelism: u32) {
        assert!(index < parallelism);
        self.subtask = (index, parallelism);
    }

    /// Every checkpointed function's operator state by uid (`snapshotState` runs).
    pub fn snapshot_operator_state(
        &mut self,
    ) -> Result<BTreeMap<String, OperatorStateSnapshot>, UserError> {
        let (index, parallelism) = self.subtask;
        let mut states = BTreeMap::new();
        for operator in &mut self.operators {
            if let ChainOperator::Checkpointed(checkpointed) = operator {
                let snapshot = checkpointed.snapshot(index, parallelism)?;
                states.insert(checkpointed.uid.clone(), snapshot);
            }
        }
        Ok(states)
    }

    /// Restores each checkpointed function's operator state from the snapshots of every old
    /// subtask of its uid, redistributed for this subtask.
    pub fn restore_operator_state(
        &mut self,
        snapshots: &BTreeMap<String, Vec<OperatorStateSnapshot>>,
    ) {
        let (index, parallelism) = self.subtask;
        for operator in &mut self.operators {
            if let ChainOperator::Checkpointed(checkpointed) = operator {
                assert!(!checkpointed.initialized, "restore comes first");
                if let Some(found) = snapshots.get(&checkpointed.uid) {
                    checkpointed.store = OperatorStateStore::assign(found, index, parallelism);
                }
            }
        }
    }

    /// Every operator's state by uid: the keyed operators', the checkpointed functions', the
    /// source's offsets (the chain's first operator) and the sink's pre-committed work (its
    /// last).
    pub fn snapshot_operators(
        &mut self,
        source: Option<SourceOffsets>,
        sink: Option<SinkStateSnapshot>,
    ) -> Result<BTreeMap<String, OperatorSnapshot>, UserError> {
        let mut operators: BTreeMap<String, OperatorSnapshot> = self
            .snapshot_keyed()?
            .into_iter()
            .map(|(uid, s)| (uid, OperatorSnapshot::Keyed(s)))
            .collect();
        for (uid, state) in self.snapshot_operator_state()? {
            operators.insert(uid, OperatorSnapshot::Operator(state));
        }
        if let Some(offsets) = source {
            operators.insert(self.uids[0].clone(), OperatorSnapshot::Source(offsets));
        }
        if let Some(state) = sink {
            let uid = self.uids.last().expect("a chain").clone();
            operators.insert(uid, OperatorSnapshot::Sink(state));
        }
        Ok(operators)
    }

    /// Restores every keyed operator from the snapshots of its uid (any subtasks).
    pub fn restore_keyed(
        &mut self,
        snapshots: &BTreeMap<String, Vec<KeyedStateSnapshot>>,
    ) -> Result<(), TaskError> {
        let index = self.subtask.0;
        for operator in &mut self.operators {
            if let ChainOperator::Keyed(keyed) = operator {
                let found = snapshots.get(&keyed.uid).map(Vec::as_slice).unwrap_or(&[]);
                let fail = |error: StateError| TaskError::KeyedState {
                    uid: keyed.uid.clone(),
                    error: error.to_string(),
                };
                keyed.backend.restore(found).map_err(fail)?;
                let raw = keyed.backend.raw_restored(found).map_err(fail)?;
                if !raw.is_empty() {
                    let restored = keyed.function.restore_raw(RawKeyedStateInput::new(&raw));
                    restored.map_err(|error| TaskError::KeyedState {
                        uid: keyed.uid.clone(),
                        error: format!("restoring raw keyed state: {error}"),
                    })?;
                }
                let copies: Vec<&BroadcastStateSnapshot> =
                    found.iter().filter_map(|s| s.broadcast.as_ref()).collect();
                match &mut keyed.function {
                    KeyedFunction::Broadcast { store, .. } => {
                        *store = BroadcastStateStore::assign(&copies, index).map_err(fail)?;
                    }
                    KeyedFunction::Process(_) if !copies.is_empty() => {
                        return Err(fail(StateError(
                            "the snapshot holds broadcast state, but the operator is no longer a keyed broadcast process function".to_string(),
                        )));
                    }
                    KeyedFunction::Process(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Renders each keyed operator's state for reports, via its own function.
    pub fn describe_state(&self, uid: &str, state_name: &str, bytes: &[u8]) -> Option<String> {
        self.keyed()
            .find(|k| k.uid == uid)
            .map(|k| k.function.describe_state(state_name, bytes))
    }

    /// Each keyed operator's uid and state backend, in chain order.
    pub fn keyed_backends(&self) -> impl Iterator<Item = (&str, &HeapKeyedStateBackend)> {
        self.keyed()
            .map(|keyed| (keyed.uid.as_str(), &keyed.backend))
    }

    fn keyed(&self) -> impl Iterator<Item = &KeyedOperator> {
        self.operators.iter().filter_map(|operator| match operator {
            ChainOperator::Keyed(keyed) => Some(keyed),
            _ => None,
        })
    }
}

/// Hands `value` to the first of `operators`, and what it emits on to the next, depth first,
/// as Flink's `ChainingOutput` calls the next operator from `collect`: each operator sees its
/// inputs in the order they were emitted, and what leaves the last goes to `out`.
fn push_through(
    operators: &mut [ChainOperator],
    collected: &mut [Vec<Value>],
    value: Value,
    out: &mut Vec<Value>,
) -> Result<(), UserError> {
    let Some((operator, rest)) = operators.split_first_mut() else {
        out.push(value);
        return Ok(());
    };
    let (buffer, rest_collected) = collected
        .split_first_mut()
        .expect("one buffer per operator");
    match operator {
        ChainOperator::SourceHead => return push_through(rest, rest_collected, value, out),
        ChainOperator::Map(function) => {
            return push_through(rest, rest_collected, function(value), out)
        }
        ChainOperator::Filter(function) => {
            return match function(&value) {
                true => push_through(rest, rest_collected, value, out),
                false => Ok(()),
            };
        }
        ChainOperator::Sink(sink) => {
            sink.pending.push_value(&value);
            return Ok(());
        }
        ChainOperator::FlatMap(function) => function(value, buffer),
        ChainOperator::Keyed(keyed) => keyed.process(value, buffer)?,
        ChainOperator::Checkpointed(checkpointed) => {
            checkpointed.ensure_initialized()?;
            checkpointed.function.process_element(value, buffer)?
        }
    }
    // One output, the common case, without a drain.
    if buffer.len() == 1 {
        let value = buffer.pop().expect("one value");
        return push_through(rest, rest_collected, value, out);
    }
    buffer
        .drain(..)
        .try_for_each(|value| push_through(rest, rest_collected, value, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::job::JobBuilder;
    use crate::state::heap_backend::KeyedStateAccess;
    use crate::state::processing_time_journal::journals_of;
    use crate::state::snapshot::LogicalKeyedState;

    /// Sets a timer 10 ms after each record; a firing emits `(key, -timestamp)`.
    struct Reminder;

    impl KeyedProcessFunction for Reminder {
        fn process_element(
            &mut self,
            value: Value,
            state: &mut KeyedStateAccess<'_>,
            out: &mut Vec<Value>,
        ) -> Result<(), UserError> {
            let now = state.current_processing_time()?;
            state.register_processing_time_timer(now + 10)?;
            out.push(value);
            Ok(())
        }

        fn uses_processing_time(&self) -> bool {
            true
        }

        fn on_timer(
            &mut self,
            timestamp: u64,
            state: &mut KeyedStateAccess<'_>,
            out: &mut Vec<Value>,
        ) -> Result<(), UserError> {
            let key = Value::Str(state.key().into());
            out.push(Value::pair(key, Value::Int(-(timestamp as i64))));
            Ok(())
        }
    }

    fn job() -> Job {
        JobBuilder::new("reminders", 1)
            .source("source", "in")
            .key_by(|v| v.as_str().unwrap_or_default().into())
            .process("reminder", || Box::new(Reminder))
            .sink("sink", "out")
            .build()
            .unwrap()
    }

    fn chain() -> OperatorChain {
        let job = job();
        let whole = KeyGroupRange {
            start: 0,
            end: job.max_parallelism - 1,
        };
        OperatorChain::new(&job, 0..job.operators.len(), whole)
    }

    fn word(text: &str) -> Value {
        Value::Str(text.into())
    }

    fn sink_records(chain: &mut OperatorChain) -> Vec<String> {
        let pending = &chain.sink().unwrap().pending;
        pending
            .iter()
            .map(|bytes| postcard::from_bytes::<Value>(bytes).unwrap().to_string())
            .collect()
    }

    /// Live: `a` at 0 and 5, `b` at 7; the clock reaches 30.
    fn live_run() -> OperatorChain {
        let mut chain = chain();
        let mut out = Vec::new();
        for (now, key) in [(0, "a"), (5, "a"), (7, "b")] {
            chain.advance_processing_time(now, &mut out).unwrap();
            chain.process(word(key), &mut out).unwrap();
        }
        chain.advance_processing_time(9, &mut out).unwrap();
        assert_eq!(
            sink_records(&mut chain),
            vec!["a", "a", "b"],
            "nothing due yet"
        );
        chain.advance_processing_time(15, &mut out).unwrap();
        chain.advance_processing_time(30, &mut out).unwrap();
        chain
    }

    #[test]
    fn timers_fire_once_due_in_time_order_through_the_rest_of_the_chain() {
        let mut chain = live_run();
        assert_eq!(
            sink_records(&mut chain),
            vec!["a", "a", "b", "(a,-10)", "(a,-15)", "(b,-17)"]
        );
        assert_eq!(chain.next_timer(), None);
    }

    #[test]
    fn registered_timers_are_state_restored_with_it() {
        let mut chain = chain();
        let mut out = Vec::new();
        chain.advance_processing_time(0, &mut out).unwrap();
        chain.process(word("a"), &mut out).unwrap();
        let snapshot = chain.snapshot_keyed().unwrap();
        let mut restored = self::chain();
        let snapshots = snapshot.into_iter().map(|(u, s)| (u, vec![s])).collect();
        restored.restore_keyed(&snapshots).unwrap();
        assert_eq!(
            restored.next_timer(),
            Some(10),
            "the restore indexed the timer"
        );
        restored.advance_processing_time(12, &mut out).unwrap();
        assert_eq!(sink_records(&mut restored), vec!["(a,-10)"]);
        restored.quiesce_processing_time(true);
        restored.process(word("b"), &mut out).unwrap();
        assert_eq!(restored.next_timer(), None, "quiesced");
    }

    fn journals(
        chain: &OperatorChain,
    ) -> crate::state::processing_time_journal::ProcessingTimeJournals {
        let mut state: BTreeMap<String, LogicalKeyedState> = BTreeMap::new();
        for (uid, snapshot) in chain.snapshot_keyed().unwrap() {
            snapshot.merge_into(state.entry(uid).or_default());
        }
        journals_of(&state).unwrap()
    }

    #[test]
    fn a_replay_of_the_journal_reaches_the_same_state_and_output() {
        let mut live = live_run();
        let journals = journals(&live);
        let mut replay = chain();
        replay.replay_processing_time(&journals);
        let mut out = Vec::new();
        // Another interleaving of the keys: each key's records follow the journal anyway.
        for key in ["b", "a", "a"] {
            replay.process(word(key), &mut out).unwrap();
        }
        replay.replay_timers(None, &mut out).unwrap();
        assert_eq!(replay.unreplayed(), None);
        assert_eq!(
            replay.snapshot_keyed().unwrap(),
            live.snapshot_keyed()
                .unwrap()
                .into_iter()
                .map(|(u, mut s)| {
                    s.processing_time_ms = 30;
                    (u, s)
                })
                .collect::<BTreeMap<_, _>>()
        );
        let by_key = |chain: &mut OperatorChain, key: &str| -> Vec<String> {
            sink_records(chain)
                .into_iter()
                .filter(|r| r.starts_with(key) || r.starts_with(&format!("({key}")))
                .collect()
        };
        assert_eq!(by_key(&mut replay, "a"), by_key(&mut live, "a"));
        assert_eq!(by_key(&mut replay, "b"), by_key(&mut live, "b"));
    }

    #[test]
    fn a_replay_refuses_a_timer_that_fired_late_or_was_never_set() {
        let live = live_run();
        let mut journals = journals(&live);
        let a = journals.get_mut("reminder").unwrap().get_mut("a").unwrap();
        // The run handled the second `a` after its first timer was due without firing it.
        let JournalEntry::Record { fingerprint, .. } = a[1] else {
            panic!("the second entry is a record");
        };
        a[1] = JournalEntry::Record {
            at: 12,
            fingerprint,
        };
        let mut replay = chain();
        replay.replay_processing_time(&journals);
        let mut out = Vec::new();
        replay.process(word("a"), &mut out).unwrap();
        let error = replay.process(word("a"), &mut out).unwrap_err();
        assert!(
            error.0.contains("its timer for 10 ms had not fired"),
            "{error}"
        );
        // A timer the reference does not hold.
        let mut journals = self::journals(&live);
        journals
            .get_mut("reminder")
            .unwrap()
            .get_mut("b")
            .unwrap()
            .insert(
                0,
                JournalEntry::Timer {
                    timestamp: 3,
                    at: 3,
                },
            );
        let mut replay = chain();
        replay.replay_processing_time(&journals);
        let error = replay.process(word("b"), &mut out).unwrap_err();
        assert!(error.0.contains("fired a timer for 3 ms"), "{error}");
        // A record the run never handled.
        let mut replay = chain();
        replay.replay_processing_time(&journals);
        replay.process(word("c"), &mut out).unwrap();
        assert!(replay.unreplayed().unwrap().contains("key `c`"));
    }

    /// Emits `(key, rules known)` per keyed record; a broadcast element `rule:<name>` is
    /// added to the broadcast state.
    struct RuleCounter;

    const KNOWN: crate::state::state_descriptor::MapStateDescriptor<String, i64> =
        crate::state::state_descriptor::MapStateDescriptor::new("known");

    impl KeyedBroadcastProcessFunction for RuleCounter {
        fn process_element(
            &mut self,
            value: Value,
            _: &mut KeyedStateAccess<'_>,
            broadcast: &crate::state::broadcast_state::ReadOnlyBroadcastContext<'_>,
            out: &mut Vec<Value>,
        ) -> Result<(), UserError> {
            let known = broadcast.state(&KNOWN).entries()?.len() as i64;
            out.push(Value::pair(value, Value::Int(known)));
            Ok(())
        }

        fn process_broadcast_element(
            &mut self,
            value: Value,
            broadcast: &mut crate::state::broadcast_state::BroadcastContext<'_>,
        ) -> Result<(), UserError> {
            broadcast
                .state(&KNOWN)
                .put(&value.as_str().unwrap_or_default().to_string(), &1);
            Ok(())
        }
    }

    fn broadcast_chain() -> OperatorChain {
        let job = JobBuilder::new("rules", 1)
            .source("source", "in")
            .key_by(|v| v.as_str().unwrap_or_default().into())
            .connect_broadcast(|v| v.as_str().is_some_and(|t| t.starts_with("rule:")))
            .process_broadcast("counter", || Box::new(RuleCounter))
            .sink("sink", "out")
            .build()
            .unwrap();
        let whole = KeyGroupRange {
            start: 0,
            end: job.max_parallelism - 1,
        };
        OperatorChain::new(&job, 0..job.operators.len(), whole)
    }

    #[test]
    fn a_replay_hands_each_keyed_record_the_broadcast_state_the_run_saw() {
        let mut live = broadcast_chain();
        let mut out = Vec::new();
        for value in ["a", "rule:x", "b", "rule:y", "a"] {
            live.process(word(value), &mut out).unwrap();
        }
        assert_eq!(sink_records(&mut live), vec!["(a,0)", "(b,1)", "(a,2)"]);
        let mut journals = journals(&live);
        let store = live.broadcast_states()["counter"].clone();
        journals.broadcast.add("counter", store.log());
        // The reference meets the rules first and the records later: it still hands each
        // record the state the run's subtask had.
        let mut replay = broadcast_chain();
        replay.replay_processing_time(&journals);
        for value in ["rule:y", "rule:x", "a", "b", "a"] {
            replay.process(word(value), &mut out).unwrap();
        }
        assert_eq!(replay.unreplayed(), None);
        assert_eq!(sink_records(&mut replay), vec!["(a,0)", "(b,1)", "(a,2)"]);
        let live_keyed = live.snapshot_keyed().unwrap();
        let replay_keyed = replay.snapshot_keyed().unwrap();
        assert_eq!(replay_keyed["counter"].tables, live_keyed["counter"].tables);
        assert_eq!(
            replay.broadcast_states()["counter"].states(),
            store.states(),
            "the same rules, in another order"
        );
        // A digest no application log holds is refused.
        let mut replay = broadcast_chain();
        let mut unknown = journals.clone();
        unknown.broadcast = Default::default();
        replay.replay_processing_time(&unknown);
        replay.process(word("a"), &mut out).unwrap();
        let error = replay.process(word("b"), &mut out).unwrap_err();
        assert!(
            error.0.contains("no snapshot's application log holds"),
            "{error}"
        );
    }

    #[test]
    fn broadcast_state_is_snapshot_per_subtask_and_restored_from_one_copy() {
        let mut live = broadcast_chain();
        live.set_subtask(1, 2);
        let mut out = Vec::new();
        live.process(word("rule:x"), &mut out).unwrap();
        let snapshot = live.snapshot_keyed().unwrap();
        let copy = snapshot["counter"].broadcast.clone().unwrap();
        assert_eq!((copy.subtask_index, copy.parallelism), (1, 2));
        let mut other = copy.clone();
        other.subtask_index = 0;
        other.log.clear();
        let mut first = snapshot["counter"].clone();
        first.broadcast = Some(other);
        first.tables.clear();
        let snapshots = BTreeMap::from([(
            "counter".to_string(),
            vec![first, snapshot["counter"].clone()],
        )]);
        for (index, expected) in [(0, 0), (1, 1), (2, 0), (3, 1)] {
            let mut restored = broadcast_chain();
            restored.set_subtask(index, 4);
            restored.restore_keyed(&snapshots).unwrap();
            let log = restored.broadcast_states()["counter"].log().len();
            assert_eq!(log, expected, "new subtask {index} takes old {}", index % 2);
        }
        let mut plain = chain();
        let renamed = snapshots
            .into_values()
            .map(|s| ("reminder".to_string(), s))
            .collect();
        let error = plain.restore_keyed(&renamed).unwrap_err().to_string();
        assert!(error.contains("no longer a keyed broadcast"), "{error}");
    }

    /// Counts records per key in a field, checkpointed as raw keyed state; `overreach`
    /// writes one key group past its subtask's range.
    #[derive(Default)]
    struct RawTally {
        tally: BTreeMap<String, u8>,
        overreach: bool,
    }

    impl KeyedProcessFunction for RawTally {
        fn process_element(
            &mut self,
            value: Value,
            state: &mut KeyedStateAccess<'_>,
            _: &mut Vec<Value>,
        ) -> Result<(), UserError> {
            let _ = value;
            *self.tally.entry(state.key().to_string()).or_default() += 1;
            Ok(())
        }

        fn snapshot_raw_keyed_state(
            &self,
            output: &mut RawKeyedStateOutput,
        ) -> Result<(), UserError> {
            for (key, n) in &self.tally {
                let group = output.key_group_of(key);
                output.write(group, &[key.len() as u8])?;
                output.write(group, key.as_bytes())?;
                output.write(group, &[*n])?;
            }
            if self.overreach {
                let past = crate::ids::KeyGroup(output.key_groups().end + 1);
                output.write(past, &[0])?;
            }
            Ok(())
        }

        fn restore_raw_keyed_state(
            &mut self,
            input: RawKeyedStateInput<'_>,
        ) -> Result<(), UserError> {
            for (_, mut bytes) in input.key_groups() {
                while let Some((&length, rest)) = bytes.split_first() {
                    let (key, rest) = rest.split_at(length as usize);
                    self.tally
                        .insert(String::from_utf8_lossy(key).into_owned(), rest[0]);
                    bytes = &rest[1..];
                }
            }
            Ok(())
        }
    }

    fn tally_chain(range: KeyGroupRange, overreach: bool) -> OperatorChain {
        let job = JobBuilder::new("tally", 1)
            .source("source", "in")
            .key_by(|v| v.as_str().unwrap_or_default().into())
            .process("tally", move || {
                Box::new(RawTally {
                    overreach,
                    ..RawTally::default()
                })
            })
            .sink("sink", "out")
            .build()
            .unwrap();
        OperatorChain::new(&job, 0..job.operators.len(), range)
    }

    #[test]
    fn raw_keyed_state_is_restored_by_the_key_groups_a_subtask_owns() {
        let whole = KeyGroupRange { start: 0, end: 127 };
        let mut live = tally_chain(whole, false);
        let mut out = Vec::new();
        for key in ["a", "b", "a", "c", "dd"] {
            live.process(word(key), &mut out).unwrap();
        }
        let snapshot = live.snapshot_keyed().unwrap().remove("tally").unwrap();
        assert!(!snapshot.raw.is_empty());
        let snapshots = BTreeMap::from([("tally".to_string(), vec![snapshot])]);
        // Rescaled to two subtasks: each restores the key groups it owns into its function's
        // field, and writes them back out unchanged; together they hold every key group once.
        let halves = [
            KeyGroupRange { start: 0, end: 63 },
            KeyGroupRange {
                start: 64,
                end: 127,
            },
        ];
        let mut together = BTreeMap::new();
        for half in halves {
            let mut chain = tally_chain(half, false);
            chain.restore_keyed(&snapshots).unwrap();
            let again = chain.snapshot_keyed().unwrap().remove("tally").unwrap();
            assert!(
                again.raw.keys().all(|g| half.contains(*g)),
                "only its own key groups"
            );
            together.extend(again.raw);
        }
        assert_eq!(together, snapshots["tally"][0].raw);
        let error = tally_chain(KeyGroupRange { start: 0, end: 63 }, true)
            .snapshot_keyed()
            .unwrap_err();
        assert!(
            error.0.contains("outside this subtask's range 0..=63"),
            "{error}"
        );
    }
}
