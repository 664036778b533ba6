//! The jobs shipped with snapflow, which scenarios name. Each is ordinary user code written
//! with the builder, as a Flink user would write it.

use crate::api::functions::{
    CheckpointedFunction, KeyedBroadcastProcessFunction, KeyedProcessFunction, UserError,
};
use crate::api::job::{Job, JobBuilder};
use crate::api::value::Value;
use crate::ids::KeyGroup;
use crate::state::broadcast_state::{BroadcastContext, ReadOnlyBroadcastContext};
use crate::state::heap_backend::KeyedStateAccess;
use crate::state::operator_state::OperatorStateStore;
use crate::state::raw_state::{RawKeyedStateInput, RawKeyedStateOutput};
use crate::state::snapshot::RAW_KEYED_STATE;
use crate::state::state_descriptor::{
    AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};
use crate::state::state_ttl::{StateTtlConfig, StateVisibility, UpdateType};
use std::collections::BTreeMap;

/// The topic every built-in job reads.
pub const INPUT_TOPIC: &str = "input";
/// The topic every built-in job writes.
pub const OUTPUT_TOPIC: &str = "output";

const COUNT: ValueStateDescriptor<i64> = ValueStateDescriptor::new("count");

/// The key's count, one more than before (`ValueState<i64>`).
fn next_count(state: &mut KeyedStateAccess<'_>) -> Result<i64, UserError> {
    let count = state.value(&COUNT)?.unwrap_or(0) + 1;
    state.update(&COUNT, &count)?;
    Ok(count)
}

/// Counts words: keeps a running count per word in `ValueState<i64>` and emits `(word, count)`.
struct CountWords;

impl KeyedProcessFunction for CountWords {
    fn process_element(
        &mut self,
        value: Value,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let count = next_count(state)?;
        out.push(Value::pair(value, Value::Int(count)));
        Ok(())
    }

    fn describe_state(&self, state_name: &str, bytes: &[u8]) -> String {
        match postcard::from_bytes::<i64>(bytes) {
            Ok(count) if state_name == COUNT.name => count.to_string(),
            _ => format!("{state_name}:<{} bytes>", bytes.len()),
        }
    }
}

const MILESTONES: ListStateDescriptor<i64> = ListStateDescriptor::new("milestones");
const RESIDUES: MapStateDescriptor<String, i64> = MapStateDescriptor::new("residues");
const TOTAL: ReducingStateDescriptor<i64> = ReducingStateDescriptor::new("total", add_i64);
const MEAN: AggregatingStateDescriptor<i64, (i64, i64), i64> = AggregatingStateDescriptor::new(
    "mean",
    || (0, 0),
    |value, (sum, count)| (sum + value, count + 1),
    |(sum, count)| sum / count.max(&1),
);

fn add_i64(a: i64, b: i64) -> i64 {
    a + b
}

/// Records of the key within 250 ms of the last write (TTL defaults, cleaned up
/// incrementally on every record and in full snapshots).
const RECENT: ValueStateDescriptor<i64> = ValueStateDescriptor::new("recent").with_ttl(
    StateTtlConfig::new(250)
        .cleanup_incrementally(4, true)
        .cleanup_full_snapshot(),
);
/// Residues touched within 300 ms, renewed on read (`OnReadAndWrite`).
const TOUCHED: MapStateDescriptor<String, i64> = MapStateDescriptor::new("touched").with_ttl(
    StateTtlConfig::new(300)
        .update_type(UpdateType::OnReadAndWrite)
        .cleanup_full_snapshot(),
);
/// Counts added within 200 ms; an expired one is still read once (lazy cleanup only, so what
/// a read returns depends on the key's own history alone).
const ECHOES: ListStateDescriptor<i64> = ListStateDescriptor::new("echoes")
    .with_ttl(StateTtlConfig::new(200).visibility(StateVisibility::ReturnExpiredIfNotCleanedUp));
/// Timers fired for the key.
const FIRED: ValueStateDescriptor<i64> = ValueStateDescriptor::new("fired");
/// A record sets a timer this long after it, rounded up to the grid below (so that records
/// close together share one timer, as registering a timer twice fires it once).
const TIMER_DELAY_MS: u64 = 150;
const TIMER_GRID_MS: u64 = 50;

/// Every kind of keyed state on each record of its key, so that every property test and
/// sweep that runs it exercises them all under faults: a `ValueState` count; a `ListState`
/// of milestones (every fifth count; past four it is replaced by its last two); a `MapState`
/// of counts per residue mod 3 (the entry of residue 0 removed every seventh count); a
/// `ReducingState` sum of the counts; an `AggregatingState` mean of them; three states
/// under TTL (`recent`, `touched`, `echoes`: each update type, visibility and cleanup); and a
/// processing-time timer per record, 150 ms on, whose firing counts in `fired` and emits
/// `(word, -fired)`. It emits `(word, digest)` per record, the digest a function of all of
/// them, so output and state both show a difference in any. It is connected to a broadcast
/// stream, the `first:<word>` announcements of `first-seen`: broadcast state counts the
/// words announced per length, and each record's digest includes the count for its own
/// length as its subtask saw it then. And it keeps a tally of each key's records in a field
/// of its own, checkpointed as raw keyed state (written per key group, restored for the key
/// groups its subtask owns), whose last digit goes into the digest.
#[derive(Default)]
struct StateZoo {
    tally: BTreeMap<String, u64>,
}

/// Words announced by `first-seen`, counted per length (broadcast state).
const ANNOUNCED: MapStateDescriptor<i64, i64> = MapStateDescriptor::new("announced-by-length");
/// What `first-seen` puts in front of a word it announces.
const ANNOUNCEMENT: &str = "first:";

fn is_announcement(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| text.starts_with(ANNOUNCEMENT))
}

impl StateZoo {
    /// The TTL states' part of the digest.
    fn time_to_live(state: &mut KeyedStateAccess<'_>, count: i64) -> Result<i64, UserError> {
        let recent = state.value_state(&RECENT).value()?.unwrap_or(0) + 1;
        state.value_state(&RECENT).update(&recent)?;
        let mut touched = state.map_state(&TOUCHED);
        let residue = format!("r{}", count % 3);
        let before = touched.get(&residue)?.unwrap_or(0);
        touched.put(&residue, &(before + 1))?;
        let touched_total: i64 = touched.values()?.iter().sum();
        let mut echoes = state.list_state(&ECHOES);
        let heard = echoes.get()?.len() as i64;
        echoes.add(&count)?;
        Ok(recent * 10_000 + touched_total * 100 + heard)
    }
}

impl KeyedBroadcastProcessFunction for StateZoo {
    fn process_element(
        &mut self,
        value: Value,
        state: &mut KeyedStateAccess<'_>,
        broadcast: &ReadOnlyBroadcastContext<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let length = value.as_str().map_or(0, str::len) as i64;
        let announced = broadcast.state(&ANNOUNCED).get(&length)?.unwrap_or(0);
        let count = next_count(state)?;
        let tally = self.tally.entry(state.key().to_string()).or_default();
        *tally += 1;
        let tally_digit = (*tally % 10) as i64;
        let mut milestones = state.list_state(&MILESTONES);
        if count % 5 == 0 {
            milestones.add(&count)?;
        }
        let mut held = milestones.get()?;
        if held.len() > 4 {
            held.drain(..held.len() - 2);
            milestones.update(&held)?;
        }
        let mut residues = state.map_state(&RESIDUES);
        let residue = format!("r{}", count % 3);
        let seen = residues.get(&residue)?.unwrap_or(0);
        residues.put(&residue, &(seen + 1))?;
        if count % 7 == 0 && residues.contains(&"r0".to_string())? {
            residues.remove(&"r0".to_string())?;
        }
        let residue_total: i64 = residues.values()?.iter().sum();
        state.reducing_state(&TOTAL).add(count)?;
        let total = state.reducing_state(&TOTAL).get()?.unwrap_or(0);
        state.aggregating_state(&MEAN).add(&count)?;
        let mean = state.aggregating_state(&MEAN).get()?.unwrap_or(0);
        let timed = Self::time_to_live(state, count)?;
        let now = state.current_processing_time()?;
        let at = (now + TIMER_DELAY_MS).div_ceil(TIMER_GRID_MS) * TIMER_GRID_MS;
        state.register_processing_time_timer(at)?;
        let digest = announced * 1_000_000_000_000
            + tally_digit * 100_000_000_000
            + count * 1_000_000
            + held.iter().sum::<i64>() * 10_000
            + residue_total * 100
            + (total + mean) % 100;
        out.push(Value::pair(
            value,
            Value::Pair(Box::new((Value::Int(digest), Value::Int(timed)))),
        ));
        Ok(())
    }

    fn process_broadcast_element(
        &mut self,
        announcement: Value,
        broadcast: &mut BroadcastContext<'_>,
    ) -> Result<(), UserError> {
        let word_length = announcement.as_str().map_or(0, str::len) - ANNOUNCEMENT.len();
        let mut announced = broadcast.state(&ANNOUNCED);
        let before = announced.get(&(word_length as i64))?.unwrap_or(0);
        announced.put(&(word_length as i64), &(before + 1));
        Ok(())
    }

    fn uses_processing_time(&self) -> bool {
        true
    }

    fn snapshot_raw_keyed_state(&self, output: &mut RawKeyedStateOutput) -> Result<(), UserError> {
        let mut groups: BTreeMap<KeyGroup, Vec<(&str, u64)>> = BTreeMap::new();
        for (key, tally) in &self.tally {
            let group = output.key_group_of(key);
            groups.entry(group).or_default().push((key, *tally));
        }
        for (group, tallies) in groups {
            let bytes = postcard::to_allocvec(&tallies).expect("tallies always encode");
            output.write(group, &bytes)?;
        }
        Ok(())
    }

    fn restore_raw_keyed_state(&mut self, input: RawKeyedStateInput<'_>) -> Result<(), UserError> {
        for (group, bytes) in input.key_groups() {
            let tallies: Vec<(String, u64)> = postcard::from_bytes(bytes)
                .map_err(|e| UserError(format!("raw keyed state of key group {}: {e}", group.0)))?;
            self.tally.extend(tallies);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: u64,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let fired = state.value_state(&FIRED).value()?.unwrap_or(0) + 1;
        state.value_state(&FIRED).update(&fired)?;
        out.push(Value::pair(
            Value::Str(state.key().into()),
            Value::Int(-fired),
        ));
        Ok(())
    }

    fn describe_state(&self, state_name: &str, bytes: &[u8]) -> String {
        match state_name {
            "count" | "total" | "fired" | "recent" => postcard::from_bytes::<i64>(bytes)
                .map_or_else(
                    |_| format!("{state_name}:?"),
                    |v| format!("{state_name}={v}"),
                ),
            "mean" => postcard::from_bytes::<(i64, i64)>(bytes).map_or_else(
                |_| "mean:?".to_string(),
                |(sum, count)| format!("mean={sum}/{count}"),
            ),
            // Raw keyed state: the key group's tallies.
            RAW_KEYED_STATE => postcard::from_bytes::<Vec<(String, u64)>>(bytes).map_or_else(
                |_| format!("raw:<{} bytes>", bytes.len()),
                |tallies| {
                    let shown: Vec<String> =
                        tallies.iter().map(|(k, n)| format!("{k}:{n}")).collect();
                    format!("tally {}", shown.join(" "))
                },
            ),
            _ => format!("{state_name}:<{} bytes>", bytes.len()),
        }
    }
}

/// Splits a line into its words.
fn split_words(line: Value, out: &mut Vec<Value>) {
    match line {
        // A line that is one word already (the generated workloads) passes as it is.
        Value::Str(text) if !text.is_empty() && !text.contains(char::is_whitespace) => {
            out.push(Value::Str(text))
        }
        Value::Str(text) => out.extend(text.split_whitespace().map(|word| Value::Str(word.into()))),
        _ => {}
    }
}

/// `(word, length)`: one output record per input word.
fn tag_with_length(word: Value) -> Value {
    let length = word.as_str().map_or(0, str::len) as i64;
    Value::pair(word, Value::Int(length))
}

/// `source -> split -> keyBy(word)`: the front both built-in jobs share. The source and the
/// split chain at `source_parallelism`; what follows runs at `parallelism`.
fn words_keyed_by_word(name: &str, source_parallelism: u32, parallelism: u32) -> JobBuilder {
    JobBuilder::new(name, parallelism)
        .source("source", INPUT_TOPIC)
        .set_parallelism(source_parallelism)
        .flat_map("split", split_words)
        .set_parallelism(source_parallelism)
        .key_by(|word| word.as_str().unwrap_or_default().into())
}

/// `source -> split -> keyBy(word) -> counter -> sink`: the word count every Flink user knows.
pub fn word_count(source_parallelism: u32, counter_parallelism: u32) -> Job {
    words_keyed_by_word("wordcount", source_parallelism, counter_parallelism)
        .process("counter", || Box::new(CountWords))
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("the built-in word count is a valid job")
}

/// `source -> split -> keyBy(word) -> tag -> sink`: a stateless job whose output is one
/// `(word, length)` record per input word, so each output record stands for one input record
/// (what at-most-once is checked on: a stateful job's output repeats after state is lost).
pub fn passthrough(source_parallelism: u32, parallelism: u32) -> Job {
    words_keyed_by_word("passthrough", source_parallelism, parallelism)
        .map("tag", tag_with_length)
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("the built-in passthrough is a valid job")
}

/// `source -> split -> tag -> sink`, every edge forward at one parallelism: the passthrough
/// without its keyBy. Its pipelines exchange no data, so each is a pipelined region of its own
/// and region failover restarts only the failed one.
pub fn forward(parallelism: u32) -> Job {
    JobBuilder::new("forward", parallelism)
        .source("source", INPUT_TOPIC)
        .flat_map("split", split_words)
        .map("tag", tag_with_length)
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("the built-in forward job is a valid job")
}

/// Operator state in a user function (`CheckpointedFunction`): remembers every word it has
/// passed in a union list state and, the first time it sees a word, also emits
/// `first:<word>`. Union redistribution gives every subtask all words after a restore, so a
/// rescale that moves a word's partition to another subtask still knows it; restored as an
/// even split, the word would be "first" twice.
struct FirstSightings {
    seen: std::collections::BTreeSet<String>,
    // The words this instance announced (and those it was handed on restore): raw operator
    // state, one partition per word, redistributed as an even split.
    announced: Vec<String>,
}

const SEEN_WORDS: ListStateDescriptor<String> = ListStateDescriptor::new("seen-words");

impl CheckpointedFunction for FirstSightings {
    fn initialize_state(&mut self, state: &mut OperatorStateStore) -> Result<(), UserError> {
        self.seen = state
            .union_list_state(&SEEN_WORDS)?
            .get()?
            .into_iter()
            .collect();
        for partition in state.raw_operator_state().partitions() {
            let word = std::str::from_utf8(partition).map_err(|e| {
                UserError(format!("a raw operator state partition is not a word: {e}"))
            })?;
            self.announced.push(word.to_string());
        }
        Ok(())
    }

    fn process_element(&mut self, word: Value, out: &mut Vec<Value>) -> Result<(), UserError> {
        let text = word.as_str().unwrap_or_default();
        if self.seen.insert(text.to_string()) {
            out.push(Value::Str(format!("{ANNOUNCEMENT}{text}").as_str().into()));
            self.announced.push(text.to_string());
        }
        out.push(word);
        Ok(())
    }

    fn snapshot_state(&mut self, state: &mut OperatorStateStore) -> Result<(), UserError> {
        let seen: Vec<String> = self.seen.iter().cloned().collect();
        state.union_list_state(&SEEN_WORDS)?.update(&seen);
        let mut raw = state.raw_operator_state();
        raw.clear();
        for word in &self.announced {
            raw.add_partition(word.as_bytes().to_vec());
        }
        Ok(())
    }
}

/// `source -> split -> first-seen -> keyBy(word).connect(announcements) -> zoo -> sink`:
/// every kind of keyed state in one keyed broadcast operator (`zoo`), with broadcast state
/// fed by the announcements of the user function in front of it (`first-seen`, operator
/// state in a union list), for the property tests and sweeps.
pub fn state_zoo(source_parallelism: u32, parallelism: u32) -> Job {
    JobBuilder::new("state-zoo", parallelism)
        .source("source", INPUT_TOPIC)
        .set_parallelism(source_parallelism)
        .flat_map("split", split_words)
        .set_parallelism(source_parallelism)
        .process_checkpointed("first-seen", || {
            Box::new(FirstSightings {
                seen: Default::default(),
                announced: Vec::new(),
            })
        })
        .set_parallelism(source_parallelism)
        .key_by(|word| word.as_str().unwrap_or_default().into())
        .connect_broadcast(is_announcement)
        .process_broadcast("zoo", || Box::<StateZoo>::default())
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("the built-in state zoo is a valid job")
}

/// Names of the built-in jobs, for error messages.
pub const JOB_NAMES: &[&str] = &["wordcount", "passthrough", "forward", "state-zoo"];

/// Builds the built-in job called `name` with the given parallelism.
pub fn by_name(name: &str, source_parallelism: u32, parallelism: u32) -> Option<Job> {
    match name {
        "wordcount" => Some(word_count(source_parallelism, parallelism)),
        "passthrough" => Some(passthrough(source_parallelism, parallelism)),
        // Forward edges need one parallelism throughout (the scenario checks it).
        "forward" => Some(forward(parallelism)),
        "state-zoo" => Some(state_zoo(source_parallelism, parallelism)),
        _ => None,
    }
}
