//! The operators of one job vertex, run back to back in one task (Flink's operator chain).

use crate::api::functions::{
    FilterFunction, FlatMapFunction, KeySelector, KeyedProcessFunction, MapFunction, UserError,
};
use crate::api::job::{Job, OperatorKind};
use crate::api::value::Value;
use crate::limits::SINK_APPEND_RECORDS_MAX;
use crate::runtime::task_error::TaskError;
use crate::services::record_batch::RecordBatch;
use crate::state::heap_backend::HeapKeyedStateBackend;
use crate::state::key_group::KeyGroupRange;
use crate::state::snapshot::{
    KeyedStateSnapshot, OperatorSnapshot, SinkStateSnapshot, SourceOffsets,
};
use std::collections::BTreeMap;
use std::ops::Range;

/// A keyed operator with its function and state.
pub struct KeyedOperator {
    /// Its uid.
    pub uid: String,
    key_selector: KeySelector,
    function: Box<dyn KeyedProcessFunction>,
    /// Its keyed state.
    pub backend: HeapKeyedStateBackend,
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

enum ChainOperator {
    SourceHead,
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
    scratch: (Vec<Value>, Vec<Value>),
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
                } => ChainOperator::Keyed(KeyedOperator {
                    uid: operator.uid.clone(),
                    key_selector: key_selector.clone(),
                    function: factory(),
                    backend: HeapKeyedStateBackend::new(job.max_parallelism, key_group_range),
                }),
                OperatorKind::Sink { topic } => ChainOperator::Sink(SinkBuffer {
                    topic: topic.clone(),
                    ..SinkBuffer::default()
                }),
            };
            operators.push(chained);
            uids.push(operator.uid.clone());
        }
        assert!(!operators.is_empty());
        OperatorChain {
            operators,
            uids,
            scratch: (Vec::new(), Vec::new()),
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
    /// flight to that operator).
    pub fn process_from(
        &mut self,
        first: usize,
        value: Value,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        // Two scratch vectors kept across calls: the per-record path allocates nothing here.
        let (mut current, mut next) = std::mem::take(&mut self.scratch);
        current.clear();
        next.clear();
        current.push(value);
        let mut result = Ok(());
        'operators: for operator in &mut self.operators[first..] {
            for value in current.drain(..) {
                result = apply(operator, value, &mut next);
                if result.is_err() {
                    break 'operators; // User code failed: the task fails, nothing is emitted.
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        if result.is_ok() {
            out.append(&mut current);
        }
        self.scratch = (current, next);
        result
    }

    /// The sink at the chain's end, if there is one.
    pub fn sink(&mut self) -> Option<&mut SinkBuffer> {
        match self.operators.last_mut() {
            Some(ChainOperator::Sink(sink)) => Some(sink),
            _ => None,
        }
    }

    /// Whether the sink holds enough records to write a batch.
    pub fn sink_batch_full(&self) -> bool {
        matches!(self.operators.last(), Some(ChainOperator::Sink(sink)) if sink.pending.len() >= SINK_APPEND_RECORDS_MAX)
    }

    /// The synchronous part of a snapshot: a copy of every keyed operator's state.
    pub fn snapshot_keyed(&self) -> BTreeMap<String, KeyedStateSnapshot> {
        self.keyed()
            .map(|keyed| (keyed.uid.clone(), keyed.backend.snapshot()))
            .collect()
    }

    /// Every operator's state by uid: the keyed operators', the source's offsets (the chain's
    /// first operator) and the sink's pre-committed work (its last).
    pub fn snapshot_operators(
        &self,
        source: Option<SourceOffsets>,
        sink: Option<SinkStateSnapshot>,
    ) -> BTreeMap<String, OperatorSnapshot> {
        let mut operators: BTreeMap<String, OperatorSnapshot> = self
            .snapshot_keyed()
            .into_iter()
            .map(|(uid, s)| (uid, OperatorSnapshot::Keyed(s)))
            .collect();
        if let Some(offsets) = source {
            operators.insert(self.uids[0].clone(), OperatorSnapshot::Source(offsets));
        }
        if let Some(state) = sink {
            let uid = self.uids.last().expect("a chain").clone();
            operators.insert(uid, OperatorSnapshot::Sink(state));
        }
        operators
    }

    /// Restores every keyed operator from the snapshots of its uid (any subtasks).
    pub fn restore_keyed(
        &mut self,
        snapshots: &BTreeMap<String, Vec<KeyedStateSnapshot>>,
    ) -> Result<(), TaskError> {
        for operator in &mut self.operators {
            if let ChainOperator::Keyed(keyed) = operator {
                let found = snapshots.get(&keyed.uid).map(Vec::as_slice).unwrap_or(&[]);
                keyed
                    .backend
                    .restore(found)
                    .map_err(|error| TaskError::KeyedState {
                        uid: keyed.uid.clone(),
                        error: error.to_string(),
                    })?;
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

fn apply(
    operator: &mut ChainOperator,
    value: Value,
    next: &mut Vec<Value>,
) -> Result<(), UserError> {
    match operator {
        ChainOperator::SourceHead => next.push(value),
        ChainOperator::Map(function) => next.push(function(value)),
        ChainOperator::FlatMap(function) => function(value, next),
        ChainOperator::Filter(function) => {
            if function(&value) {
                next.push(value);
            }
        }
        ChainOperator::Keyed(keyed) => {
            let key = (keyed.key_selector)(&value);
            let mut access = keyed.backend.access(&key)?;
            keyed.function.process_element(value, &mut access, next)?;
        }
        ChainOperator::Sink(sink) => sink.pending.push_encoded(&value),
    }
    Ok(())
}
