//! The seeds' URL visit count, written as a Flink user writes it and tested under the
//! simulator from this crate's own tests: each record is a visit; the job keys visits by
//! user and counts each user's visits per URL in `MapState<url, count>`, emitting
//! `((user, url), count)`. `cargo test --example url_visits` checks it under
//! `examples/url-visits.toml` (a task-manager kill and a task failure, exactly-once with the
//! two-phase-commit sink) for three seeds; `cargo run --example url_visits` prints the count
//! of seeds that passed.

use snapflow::api::functions::{KeyedProcessFunction, UserError};
use snapflow::api::job::{Job, JobBuilder};
use snapflow::api::job_catalog::JobCatalog;
use snapflow::api::jobs::{INPUT_TOPIC, OUTPUT_TOPIC};
use snapflow::api::value::Value;
use snapflow::state::heap_backend::KeyedStateAccess;
use snapflow::state::state_descriptor::MapStateDescriptor;

const VISITS: MapStateDescriptor<String, u64> = MapStateDescriptor::new("visits");

/// Counts each user's visits per URL.
struct CountVisits;

impl KeyedProcessFunction for CountVisits {
    fn process_element(
        &mut self,
        visit: Value,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let Value::Pair(pair) = visit else {
            return Err(UserError(format!("a visit is (user, url), not {visit}")));
        };
        let (user, url) = *pair;
        let url = url.as_str().unwrap_or_default().to_string();
        let mut visits = state.map_state(&VISITS);
        let count = visits.get(&url)?.unwrap_or(0) + 1;
        visits.put(&url, &count)?;
        out.push(Value::pair(
            Value::pair(user, Value::Str(url.as_str().into())),
            Value::Int(count as i64),
        ));
        Ok(())
    }
}

/// A visit from a generated word (`k17`): seven users visiting eleven pages.
fn visit(word: Value) -> Value {
    let n: u64 = word
        .as_str()
        .unwrap_or_default()
        .bytes()
        .fold(0, |n, b| n * 31 + b as u64);
    let user = format!("user-{}", n % 7);
    let url = format!("/page-{}", n % 11);
    Value::pair(
        Value::Str(user.as_str().into()),
        Value::Str(url.as_str().into()),
    )
}

/// `source -> visit -> keyBy(user) -> visits -> sink`, every operator with its uid.
pub fn url_visits(parallelism: u32) -> Job {
    JobBuilder::new("url-visits", parallelism)
        .source("source", INPUT_TOPIC)
        .map("visit", visit)
        .key_by(|visit| match visit {
            Value::Pair(pair) => pair.0.as_str().unwrap_or_default().into(),
            _ => Default::default(),
        })
        .process("visits", || Box::new(CountVisits))
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("a valid job")
}

/// The example's scenario, with this job in its catalog.
#[cfg(test)]
fn scenario() -> snapflow::scenario::Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/url-visits.toml");
    snapflow::scenario::Scenario::load_with_jobs(std::path::Path::new(path), &catalog())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The built-in jobs and this one, which scenario files name `url-visits`.
fn catalog() -> JobCatalog {
    JobCatalog::built_in().with("url-visits", |_, parallelism| url_visits(parallelism))
}

/// `cargo run --example url_visits -- run examples/url-visits.toml` runs the scenario as `snapflow run`
/// does (report, verdict, trace hash); `-- sweep examples/url-visits.toml --seeds 100` sweeps it.
fn main() -> std::process::ExitCode {
    snapflow::cli::main_with(catalog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_visits_are_counted_exactly_once_under_faults() {
        let passed = snapflow::check(url_visits(2), &scenario(), 0..3)
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(passed, 3);
    }

    /// The check can fail: the classic mistake of counting in a field of the function
    /// instead of in Flink state. Nothing checkpoints the field, so a failover restarts the
    /// counts while the input is replayed from the checkpoint; the committed output differs
    /// from the reference's.
    #[test]
    fn counts_kept_outside_state_are_caught() {
        struct FieldCounter(std::collections::BTreeMap<String, i64>);
        impl KeyedProcessFunction for FieldCounter {
            fn process_element(
                &mut self,
                visit: Value,
                _: &mut KeyedStateAccess<'_>,
                out: &mut Vec<Value>,
            ) -> Result<(), UserError> {
                let count = self.0.entry(visit.to_string()).or_default();
                *count += 1;
                out.push(Value::pair(visit, Value::Int(*count)));
                Ok(())
            }
        }
        let job = JobBuilder::new("url-visits-in-a-field", 2)
            .source("source", INPUT_TOPIC)
            .map("visit", visit)
            .key_by(|visit| match visit {
                Value::Pair(pair) => pair.0.as_str().unwrap_or_default().into(),
                _ => Default::default(),
            })
            .process("visits", || Box::new(FieldCounter(Default::default())))
            .sink("sink", OUTPUT_TOPIC)
            .build()
            .expect("a valid job");
        let failure = snapflow::check(job, &scenario(), 0..1).unwrap_err();
        let text = failure.to_string();
        assert!(
            text.contains("diverged under seed 0") && text.contains("replay: snapflow::check"),
            "{text}"
        );
    }

    #[test]
    fn a_fault_that_names_an_operator_the_job_lacks_is_refused() {
        let mut scenario = scenario();
        scenario.faults.faults[1].action = snapflow::scenario::faults::FaultAction::FailTask {
            subtask: snapflow::scenario::faults::SubtaskRef::parse("counter#0").unwrap(),
        };
        let error = snapflow::check(url_visits(2), &scenario, 0..1).unwrap_err();
        assert!(
            error.to_string().contains("no operator with uid `counter`"),
            "{error}"
        );
    }
}
