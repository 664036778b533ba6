//! The dataflow builder jobs are written with: a chain of operators with uids and parallelism.

use crate::api::functions::{
    BroadcastSelector, CheckpointedFactory, FilterFunction, FlatMapFunction, KeySelector,
    KeyedBroadcastFactory, KeyedProcessFactory, MapFunction,
};
use crate::api::value::{Text, Value};
use crate::limits::PARALLELISM_MAX;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// How records reach an operator from the one before it.
#[derive(Clone)]
pub enum Partitioning {
    /// Subtask i feeds subtask i (chains when parallelism matches).
    Forward,
    /// By key group of the selected key (Flink's `keyBy`).
    Hash(KeySelector),
    /// Round robin over all downstream subtasks.
    Rebalance,
    /// A keyed stream connected to a broadcast stream (Flink's
    /// `keyBy(..).connect(broadcast(..))`): the records `broadcast` selects go to every
    /// downstream subtask, the others by key group.
    HashAndBroadcast {
        /// The key of a keyed record.
        key_selector: KeySelector,
        /// Which records are broadcast elements.
        broadcast: BroadcastSelector,
    },
}

impl Partitioning {
    /// A short name for plans and traces.
    pub fn name(&self) -> &'static str {
        match self {
            Partitioning::Forward => "FORWARD",
            Partitioning::Hash(_) => "HASH",
            Partitioning::Rebalance => "REBALANCE",
            Partitioning::HashAndBroadcast { .. } => "HASH+BROADCAST",
        }
    }
}

/// What an operator does.
#[derive(Clone)]
pub enum OperatorKind {
    /// Reads the named broker topic; its offsets are operator state.
    Source {
        /// The input topic.
        topic: String,
    },
    /// `map`.
    Map(MapFunction),
    /// `flatMap`.
    FlatMap(FlatMapFunction),
    /// `filter`.
    Filter(FilterFunction),
    /// A keyed process function with keyed state; needs a `key_by` before it.
    KeyedProcess {
        /// The key selector of the `key_by` in front.
        key_selector: KeySelector,
        /// Makes the function, once per subtask.
        factory: KeyedProcessFactory,
    },
    /// A keyed broadcast process function with keyed and broadcast state; needs
    /// `key_by(..).connect_broadcast(..)` in front.
    KeyedBroadcastProcess {
        /// The key selector of the `key_by` in front.
        key_selector: KeySelector,
        /// Which records are broadcast elements.
        broadcast: BroadcastSelector,
        /// Makes the function, once per subtask.
        factory: KeyedBroadcastFactory,
    },
    /// A non-keyed function with operator state (`CheckpointedFunction`).
    Checkpointed(CheckpointedFactory),
    /// Writes every record straight to the named broker topic (no guarantee of its own; it
    /// flushes on each checkpoint, which makes it at-least-once).
    Sink {
        /// The output topic.
        topic: String,
    },
}

impl OperatorKind {
    /// A short name for plans and traces.
    pub fn name(&self) -> &'static str {
        match self {
            OperatorKind::Source { .. } => "Source",
            OperatorKind::Map(_) => "Map",
            OperatorKind::FlatMap(_) => "FlatMap",
            OperatorKind::Filter(_) => "Filter",
            OperatorKind::KeyedProcess { .. } => "KeyedProcess",
            OperatorKind::KeyedBroadcastProcess { .. } => "KeyedBroadcastProcess",
            OperatorKind::Checkpointed(_) => "Checkpointed",
            OperatorKind::Sink { .. } => "Sink",
        }
    }

    /// Whether it holds keyed state (a keyed or keyed broadcast process function).
    pub fn is_keyed(&self) -> bool {
        matches!(
            self,
            OperatorKind::KeyedProcess { .. } | OperatorKind::KeyedBroadcastProcess { .. }
        )
    }
}

/// One operator of a job.
#[derive(Clone)]
pub struct Operator {
    /// Stable id; state is stored under it, as with Flink's `uid()`.
    pub uid: String,
    /// The builder was given no uid (an empty one) and generated it from the job's topology,
    /// as Flink does without `uid()`: a changed topology generates other uids, so state saved
    /// before the change no longer maps to the operator.
    pub uid_generated: bool,
    /// What it does.
    pub kind: OperatorKind,
    /// How many parallel instances run it.
    pub parallelism: u32,
    /// How records arrive from the operator before it (ignored for the source).
    pub partitioning: Partitioning,
}

/// A complete job: a linear chain of operators starting at a source and ending at a sink.
#[derive(Clone)]
pub struct Job {
    /// The job's name.
    pub name: String,
    /// The operators in order.
    pub operators: Vec<Operator>,
    /// Number of key groups; fixed for the job's lifetime.
    pub max_parallelism: u32,
}

/// Why a job definition is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError(pub String);

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid job: {}", self.0)
    }
}

impl std::error::Error for JobError {}

/// Builds a job operator by operator, Flink `DataStream` style.
pub struct JobBuilder {
    name: String,
    operators: Vec<Operator>,
    parallelism_default: u32,
    max_parallelism: Option<u32>,
    partitioning_next: Partitioning,
    key_selector: Option<KeySelector>,
}

impl JobBuilder {
    /// Starts a job whose operators run with `parallelism_default` unless told otherwise.
    pub fn new(name: &str, parallelism_default: u32) -> JobBuilder {
        JobBuilder {
            name: name.to_string(),
            operators: Vec::new(),
            parallelism_default,
            max_parallelism: None,
            partitioning_next: Partitioning::Forward,
            key_selector: None,
        }
    }

    /// Sets the number of key groups (Flink's `setMaxParallelism`).
    pub fn max_parallelism(mut self, max_parallelism: u32) -> Self {
        self.max_parallelism = Some(max_parallelism);
        self
    }

    /// Adds a source reading `topic`.
    pub fn source(self, uid: &str, topic: &str) -> Self {
        self.push(
            uid,
            OperatorKind::Source {
                topic: topic.to_string(),
            },
        )
    }

    /// Adds a `map`.
    pub fn map(self, uid: &str, function: impl Fn(Value) -> Value + Send + Sync + 'static) -> Self {
        self.push(uid, OperatorKind::Map(Arc::new(function)))
    }

    /// Adds a `flatMap`.
    pub fn flat_map(
        self,
        uid: &str,
        function: impl Fn(Value, &mut Vec<Value>) + Send + Sync + 'static,
    ) -> Self {
        self.push(uid, OperatorKind::FlatMap(Arc::new(function)))
    }

    /// Adds a `filter`.
    pub fn filter(
        self,
        uid: &str,
        function: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.push(uid, OperatorKind::Filter(Arc::new(function)))
    }

    /// Partitions the stream by key for the next operator (Flink's `keyBy`).
    pub fn key_by(mut self, selector: impl Fn(&Value) -> Text + Send + Sync + 'static) -> Self {
        let selector: KeySelector = Arc::new(selector);
        self.partitioning_next = Partitioning::Hash(selector.clone());
        self.key_selector = Some(selector);
        self
    }

    /// Distributes the stream round robin to the next operator.
    pub fn rebalance(mut self) -> Self {
        self.partitioning_next = Partitioning::Rebalance;
        self
    }

    /// Adds a keyed process function; a `key_by` must come right before it.
    pub fn process(
        mut self,
        uid: &str,
        factory: impl Fn() -> Box<dyn crate::api::functions::KeyedProcessFunction>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        let key_selector = self
            .key_selector
            .take()
            .unwrap_or_else(|| Arc::new(|_: &Value| Text::default()));
        let kind = OperatorKind::KeyedProcess {
            key_selector,
            factory: Arc::new(factory),
        };
        self.push(uid, kind)
    }

    /// Connects the keyed stream (`key_by` right before) to a broadcast stream: the records
    /// of the stream that `broadcast` selects, Flink's `keyBy(..).connect(rules.broadcast(..))`
    /// where both come from the operator before (say, rules and events read from one topic).
    /// The selected records reach every subtask of the next operator, which must be a
    /// `process_broadcast`.
    pub fn connect_broadcast(
        mut self,
        broadcast: impl Fn(&Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        let key_selector = self
            .key_selector
            .clone()
            .unwrap_or_else(|| Arc::new(|_: &Value| Text::default()));
        self.partitioning_next = Partitioning::HashAndBroadcast {
            key_selector,
            broadcast: Arc::new(broadcast),
        };
        self
    }

    /// Adds a keyed broadcast process function; `key_by(..).connect_broadcast(..)` must come
    /// right before it.
    pub fn process_broadcast(
        mut self,
        uid: &str,
        factory: impl Fn() -> Box<dyn crate::api::functions::KeyedBroadcastProcessFunction>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.key_selector = None;
        let (key_selector, broadcast): (KeySelector, BroadcastSelector) =
            match &self.partitioning_next {
                Partitioning::HashAndBroadcast {
                    key_selector,
                    broadcast,
                } => (key_selector.clone(), broadcast.clone()),
                _ => (
                    Arc::new(|_: &Value| Text::default()),
                    Arc::new(|_: &Value| false),
                ),
            };
        let kind = OperatorKind::KeyedBroadcastProcess {
            key_selector,
            broadcast,
            factory: Arc::new(factory),
        };
        self.push(uid, kind)
    }

    /// Adds a non-keyed function with operator state (`CheckpointedFunction`).
    pub fn process_checkpointed(
        self,
        uid: &str,
        factory: impl Fn() -> Box<dyn crate::api::functions::CheckpointedFunction>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.push(uid, OperatorKind::Checkpointed(Arc::new(factory)))
    }

    /// Adds a sink writing to `topic`.
    pub fn sink(self, uid: &str, topic: &str) -> Self {
        self.push(
            uid,
            OperatorKind::Sink {
                topic: topic.to_string(),
            },
        )
    }

    /// Sets the parallelism of the operator added last.
    pub fn set_parallelism(mut self, parallelism: u32) -> Self {
        if let Some(operator) = self.operators.last_mut() {
            operator.parallelism = parallelism;
        }
        self
    }

    fn push(mut self, uid: &str, kind: OperatorKind) -> Self {
        let partitioning = std::mem::replace(&mut self.partitioning_next, Partitioning::Forward);
        self.operators.push(Operator {
            uid: uid.to_string(),
            uid_generated: false,
            kind,
            parallelism: self.parallelism_default,
            partitioning,
        });
        self
    }

    /// Checks the job and returns it.
    pub fn build(self) -> Result<Job, JobError> {
        let parallelism_highest = self
            .operators
            .iter()
            .map(|o| o.parallelism)
            .max()
            .unwrap_or(1);
        let max_parallelism = self.max_parallelism.unwrap_or_else(|| {
            crate::state::key_group::default_max_parallelism(parallelism_highest)
        });
        let mut job = Job {
            name: self.name,
            operators: self.operators,
            max_parallelism,
        };
        let unset: Vec<usize> = (0..job.operators.len())
            .filter(|i| job.operators[*i].uid.is_empty())
            .collect();
        job.generate_uids(&unset);
        validate(&job)?;
        Ok(job)
    }
}

impl Job {
    /// The same job as if written without `uid()` on any operator: every uid generated.
    pub fn without_uids(mut self) -> Job {
        let all: Vec<usize> = (0..self.operators.len()).collect();
        self.generate_uids(&all);
        self
    }

    /// Gives the operators at `positions` uids generated from the topology: a hash of their
    /// position and of every operator's kind and partitioning in order (a conservative model
    /// of Flink's `StreamGraphHasherV2`, which hashes a node with its inputs and chained
    /// outputs). Any change of the topology changes every generated uid.
    fn generate_uids(&mut self, positions: &[usize]) {
        let mut topology = 0xcbf2_9ce4_8422_2325_u64;
        for operator in &self.operators {
            for byte in operator
                .kind
                .name()
                .bytes()
                .chain(operator.partitioning.name().bytes())
            {
                topology = (topology ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
        for &position in positions {
            let hash = (topology ^ position as u64).wrapping_mul(0x0100_0000_01b3);
            let operator = &mut self.operators[position];
            operator.uid = format!("{:016x}", hash);
            operator.uid_generated = true;
        }
    }
}

fn validate(job: &Job) -> Result<(), JobError> {
    let Some(first) = job.operators.first() else {
        return Err(JobError(format!("job `{}` has no operators", job.name)));
    };
    if !matches!(first.kind, OperatorKind::Source { .. }) {
        return Err(JobError(format!(
            "operator `{}` is first but is not a source",
            first.uid
        )));
    }
    let mut uids = BTreeSet::new();
    for (index, operator) in job.operators.iter().enumerate() {
        if !uids.insert(operator.uid.as_str()) {
            return Err(JobError(format!("uid `{}` is used twice", operator.uid)));
        }
        if operator.parallelism == 0 || operator.parallelism > PARALLELISM_MAX {
            return Err(JobError(format!(
                "operator `{}`: parallelism {} is outside 1..={PARALLELISM_MAX}",
                operator.uid, operator.parallelism
            )));
        }
        if operator.parallelism > job.max_parallelism {
            return Err(JobError(format!(
                "operator `{}`: parallelism {} exceeds max parallelism {}",
                operator.uid, operator.parallelism, job.max_parallelism
            )));
        }
        let is_source = matches!(operator.kind, OperatorKind::Source { .. });
        if index > 0 && is_source {
            return Err(JobError(format!(
                "operator `{}`: a source can only come first",
                operator.uid
            )));
        }
        let is_keyed = matches!(operator.kind, OperatorKind::KeyedProcess { .. });
        if is_keyed && !matches!(operator.partitioning, Partitioning::Hash(_)) {
            return Err(JobError(format!(
                "operator `{}`: a keyed process function needs key_by in front",
                operator.uid
            )));
        }
        let is_broadcast = matches!(operator.kind, OperatorKind::KeyedBroadcastProcess { .. });
        let connected = matches!(operator.partitioning, Partitioning::HashAndBroadcast { .. });
        if is_broadcast != connected {
            return Err(JobError(format!(
                "operator `{}`: key_by(..).connect_broadcast(..) goes right before a keyed broadcast process function, and only there",
                operator.uid
            )));
        }
        let is_last = index + 1 == job.operators.len();
        let is_sink = matches!(operator.kind, OperatorKind::Sink { .. });
        if is_sink != is_last {
            return Err(JobError(format!(
                "operator `{}`: the job must end in exactly one sink",
                operator.uid
            )));
        }
    }
    if job.max_parallelism == 0 || job.max_parallelism > crate::limits::MAX_PARALLELISM_UPPER_BOUND
    {
        return Err(JobError(format!(
            "max parallelism {} is outside 1..={}",
            job.max_parallelism,
            crate::limits::MAX_PARALLELISM_UPPER_BOUND
        )));
    }
    Ok(())
}
