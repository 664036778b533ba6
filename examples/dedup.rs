//! A deduplicator with state TTL, written as a Flink user writes it and tested under the
//! simulator: each record is an event id (a generated word); the job keys events by id and
//! passes an id on only if it was not seen in the last second of processing time, which a
//! `ValueState<bool>` with a time-to-live remembers (`OnCreateAndWrite`,
//! `NeverReturnExpired`, cleaned up in full snapshots and incrementally), so the state
//! forgets ids by itself. It emits `(id, n)` for the n-th time the id passed.
//! `cargo test --example dedup` checks it under `examples/dedup.toml` for three seeds.

use snapflow::api::functions::{KeyedProcessFunction, UserError};
use snapflow::api::job::{Job, JobBuilder};
use snapflow::api::job_catalog::JobCatalog;
use snapflow::api::jobs::{INPUT_TOPIC, OUTPUT_TOPIC};
use snapflow::api::value::Value;
use snapflow::state::heap_backend::KeyedStateAccess;
use snapflow::state::state_descriptor::ValueStateDescriptor;
use snapflow::state::state_ttl::StateTtlConfig;

/// Seen within the time-to-live.
const SEEN: ValueStateDescriptor<bool> = ValueStateDescriptor::new("seen").with_ttl(
    StateTtlConfig::new(1_000)
        .cleanup_full_snapshot()
        .cleanup_incrementally(10, false),
);
/// How many times the id passed (no TTL: it counts across the forgetting).
const PASSED: ValueStateDescriptor<i64> = ValueStateDescriptor::new("passed");

/// Passes an id on unless it was seen within the TTL.
struct Deduplicate;

impl KeyedProcessFunction for Deduplicate {
    fn process_element(
        &mut self,
        id: Value,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        if state.value_state(&SEEN).value()?.is_some() {
            return Ok(());
        }
        state.value_state(&SEEN).update(&true)?;
        let passed = state.value_state(&PASSED).value()?.unwrap_or(0) + 1;
        state.value_state(&PASSED).update(&passed)?;
        out.push(Value::pair(id, Value::Int(passed)));
        Ok(())
    }

    fn uses_processing_time(&self) -> bool {
        true
    }
}

/// `source -> keyBy(id) -> dedup -> sink`, every operator with its uid.
pub fn dedup(parallelism: u32) -> Job {
    JobBuilder::new("dedup", parallelism)
        .source("source", INPUT_TOPIC)
        .key_by(|id| id.as_str().unwrap_or_default().into())
        .process("dedup", || Box::new(Deduplicate))
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("a valid job")
}

/// The example's scenario, with this job in its catalog.
#[cfg(test)]
fn scenario() -> snapflow::scenario::Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dedup.toml");
    snapflow::scenario::Scenario::load_with_jobs(std::path::Path::new(path), &catalog())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The built-in jobs and this one, which scenario files name `dedup`.
fn catalog() -> JobCatalog {
    JobCatalog::built_in().with("dedup", |_, parallelism| dedup(parallelism))
}

/// `cargo run --example dedup -- run examples/dedup.toml` runs the scenario as `snapflow run`
/// does (report, verdict, trace hash); `-- sweep examples/dedup.toml --seeds 100` sweeps it.
fn main() -> std::process::ExitCode {
    snapflow::cli::main_with(catalog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_pass_once_per_time_to_live_exactly_once_under_faults() {
        let passed = snapflow::check(dedup(2), &scenario(), 0..3)
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(passed, 3);
    }

    /// The check can fail: ids remembered in a field of the function with their own expiry
    /// instead of state with a TTL. A failover forgets them while the input is replayed from
    /// the checkpoint, so replayed ids pass again.
    #[test]
    fn ids_remembered_outside_state_are_caught() {
        struct FieldMemory(std::collections::BTreeMap<String, u64>);
        impl KeyedProcessFunction for FieldMemory {
            fn process_element(
                &mut self,
                id: Value,
                state: &mut KeyedStateAccess<'_>,
                out: &mut Vec<Value>,
            ) -> Result<(), UserError> {
                let now = state.current_processing_time()?;
                let key = state.key().to_string();
                if self.0.get(&key).is_some_and(|seen| now < seen + 1_000) {
                    return Ok(());
                }
                self.0.insert(key, now);
                out.push(Value::pair(id, Value::Int(1)));
                Ok(())
            }
            fn uses_processing_time(&self) -> bool {
                true
            }
        }
        let job = JobBuilder::new("dedup-in-a-field", 2)
            .source("source", INPUT_TOPIC)
            .key_by(|id| id.as_str().unwrap_or_default().into())
            .process("dedup", || Box::new(FieldMemory(Default::default())))
            .sink("sink", OUTPUT_TOPIC)
            .build()
            .expect("a valid job");
        let failure = snapflow::check(job, &scenario(), 0..3).unwrap_err();
        assert!(
            failure.to_string().contains("diverged under seed"),
            "{failure}"
        );
    }
}
