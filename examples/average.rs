//! A running average per key with `AggregatingState`, written as a Flink user writes it and
//! tested under the simulator: each record is a reading `(sensor, value)`; the job keys
//! readings by sensor, folds each into an `(sum, count)` accumulator and emits the sensor's
//! average so far (in thousandths, to stay an integer). `cargo test --example average`
//! checks it under `examples/average.toml` for three seeds.

use snapflow::api::functions::{KeyedProcessFunction, UserError};
use snapflow::api::job::{Job, JobBuilder};
use snapflow::api::job_catalog::JobCatalog;
use snapflow::api::jobs::{INPUT_TOPIC, OUTPUT_TOPIC};
use snapflow::api::value::Value;
use snapflow::state::heap_backend::KeyedStateAccess;
use snapflow::state::state_descriptor::AggregatingStateDescriptor;

/// The average of the readings: the accumulator is `(sum, count)`; the result in thousandths.
const AVERAGE: AggregatingStateDescriptor<i64, (i64, i64), i64> = AggregatingStateDescriptor::new(
    "average",
    || (0, 0),
    |reading, (sum, count)| (sum + reading, count + 1),
    |(sum, count)| sum * 1000 / (*count).max(1),
);

/// Emits each sensor's running average.
struct RunningAverage;

impl KeyedProcessFunction for RunningAverage {
    fn process_element(
        &mut self,
        reading: Value,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let Value::Pair(pair) = reading else {
            return Err(UserError(format!(
                "a reading is (sensor, value), not {reading}"
            )));
        };
        let (sensor, value) = *pair;
        let Value::Int(value) = value else {
            return Err(UserError("a reading's value is an integer".to_string()));
        };
        let mut average = state.aggregating_state(&AVERAGE);
        average.add(&value)?;
        let so_far = average.get()?.unwrap_or(0);
        out.push(Value::pair(sensor, Value::Int(so_far)));
        Ok(())
    }
}

/// A reading from a generated word (`k17`): five sensors, values 0..100.
fn reading(word: Value) -> Value {
    let n: i64 = word
        .as_str()
        .unwrap_or_default()
        .bytes()
        .fold(0, |n, b| (n * 31 + b as i64) % 1_000_003);
    let sensor = format!("sensor-{}", n % 5);
    Value::pair(Value::Str(sensor.as_str().into()), Value::Int(n % 100))
}

/// `source -> reading -> keyBy(sensor) -> average -> sink`.
pub fn average(parallelism: u32) -> Job {
    JobBuilder::new("average", parallelism)
        .source("source", INPUT_TOPIC)
        .map("reading", reading)
        .key_by(|reading| match reading {
            Value::Pair(pair) => pair.0.as_str().unwrap_or_default().into(),
            _ => Default::default(),
        })
        .process("average", || Box::new(RunningAverage))
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("a valid job")
}

/// The example's scenario, with this job in its catalog.
#[cfg(test)]
fn scenario() -> snapflow::scenario::Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/average.toml");
    snapflow::scenario::Scenario::load_with_jobs(std::path::Path::new(path), &catalog())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The built-in jobs and this one, which scenario files name `average`.
fn catalog() -> JobCatalog {
    JobCatalog::built_in().with("average", |_, parallelism| average(parallelism))
}

/// `cargo run --example average -- run examples/average.toml` runs the scenario as `snapflow run`
/// does (report, verdict, trace hash); `-- sweep examples/average.toml --seeds 100` sweeps it.
fn main() -> std::process::ExitCode {
    snapflow::cli::main_with(catalog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_exact_under_faults() {
        let passed = snapflow::check(average(2), &scenario(), 0..3)
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(passed, 3);
    }
}
