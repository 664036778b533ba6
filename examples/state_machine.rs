//! The seeds' state machine, written as a Flink user writes it and tested under the
//! simulator: each record is an order event `(order, event)`; the job keys events by order
//! and walks each order through created → paid → shipped → delivered in a `ValueState`,
//! emitting every transition, an alert for an event the state does not allow, and clearing
//! the state on a terminal event (delivered, cancelled). An order that stalls for 400 ms of
//! processing time times out: a processing-time timer, re-registered on every step, emits
//! the timeout and clears the state. An order's events come from many input partitions, so
//! its order is the run's own; the check follows it (the processing-time journal records
//! which record came when). `cargo test --example state_machine` checks it under
//! `examples/state-machine.toml` for three seeds.

use snapflow::api::functions::{KeyedProcessFunction, UserError};
use snapflow::api::job::{Job, JobBuilder};
use snapflow::api::job_catalog::JobCatalog;
use snapflow::api::jobs::{INPUT_TOPIC, OUTPUT_TOPIC};
use snapflow::api::value::Value;
use snapflow::state::heap_backend::KeyedStateAccess;
use snapflow::state::state_descriptor::ValueStateDescriptor;

/// Where an order is: an index into `STEPS`.
const STEP: ValueStateDescriptor<usize> = ValueStateDescriptor::new("step");
/// The timeout timer set for the order's current step.
const DEADLINE: ValueStateDescriptor<u64> = ValueStateDescriptor::new("deadline");
/// The events that move an order on, in order; the last is terminal.
const STEPS: [&str; 4] = ["created", "paid", "shipped", "delivered"];
/// How long an order may stay in one step.
const TIMEOUT_MS: u64 = 400;

/// Walks each order through its steps.
struct OrderStateMachine;

impl OrderStateMachine {
    fn clear(state: &mut KeyedStateAccess<'_>) -> Result<(), UserError> {
        if let Some(deadline) = state.value_state(&DEADLINE).value()? {
            state.delete_processing_time_timer(deadline)?;
        }
        state.value_state(&STEP).clear();
        state.value_state(&DEADLINE).clear();
        Ok(())
    }
}

impl KeyedProcessFunction for OrderStateMachine {
    fn process_element(
        &mut self,
        event: Value,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let Value::Pair(pair) = event else {
            return Err(UserError(format!("an event is (order, kind), not {event}")));
        };
        let (order, kind) = *pair;
        let kind = kind.as_str().unwrap_or_default().to_string();
        let at = state.value_state(&STEP).value()?;
        let expected = at.map_or(0, |step| step + 1);
        let report = |what: String| Value::pair(order.clone(), Value::Str(what.as_str().into()));
        if kind == "cancelled" && at.is_some() {
            Self::clear(state)?;
            out.push(report("cancelled".to_string()));
            return Ok(());
        }
        if STEPS.get(expected) != Some(&kind.as_str()) {
            let from = at.map_or("nothing", |step| STEPS[step]);
            out.push(report(format!("invalid: {kind} after {from}")));
            return Ok(());
        }
        if expected == STEPS.len() - 1 {
            Self::clear(state)?;
            out.push(report(kind));
            return Ok(());
        }
        if let Some(deadline) = state.value_state(&DEADLINE).value()? {
            state.delete_processing_time_timer(deadline)?;
        }
        let deadline = state.current_processing_time()? + TIMEOUT_MS;
        state.register_processing_time_timer(deadline)?;
        state.value_state(&DEADLINE).update(&deadline)?;
        state.value_state(&STEP).update(&expected)?;
        out.push(report(kind));
        Ok(())
    }

    fn uses_processing_time(&self) -> bool {
        true
    }

    fn on_timer(
        &mut self,
        _timestamp: u64,
        state: &mut KeyedStateAccess<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let step = state.value_state(&STEP).value()?.unwrap_or(0);
        state.value_state(&STEP).clear();
        state.value_state(&DEADLINE).clear();
        let order = Value::Str(state.key().into());
        let what = format!("timed out after {}", STEPS[step]);
        out.push(Value::pair(order, Value::Str(what.as_str().into())));
        Ok(())
    }
}

/// An order event from a generated word (`k17`): thirteen orders, five kinds of event.
fn order_event(word: Value) -> Value {
    let n: u64 = word
        .as_str()
        .unwrap_or_default()
        .bytes()
        .fold(0, |n, b| n * 31 + b as u64);
    let order = format!("order-{}", n % 13);
    let kind = ["created", "paid", "shipped", "delivered", "cancelled"][(n / 13 % 5) as usize];
    Value::pair(Value::Str(order.as_str().into()), Value::Str(kind.into()))
}

/// `source -> event -> keyBy(order) -> orders -> sink`, every operator with its uid.
pub fn state_machine(parallelism: u32) -> Job {
    JobBuilder::new("state-machine", parallelism)
        .source("source", INPUT_TOPIC)
        .map("event", order_event)
        .key_by(|event| match event {
            Value::Pair(pair) => pair.0.as_str().unwrap_or_default().into(),
            _ => Default::default(),
        })
        .process("orders", || Box::new(OrderStateMachine))
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("a valid job")
}

/// The example's scenario, with this job in its catalog.
#[cfg(test)]
fn scenario() -> snapflow::scenario::Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/state-machine.toml");
    snapflow::scenario::Scenario::load_with_jobs(std::path::Path::new(path), &catalog())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The built-in jobs and this one, which scenario files name `state-machine`.
fn catalog() -> JobCatalog {
    JobCatalog::built_in().with("state-machine", |_, parallelism| state_machine(parallelism))
}

/// `cargo run --example state_machine -- run examples/state-machine.toml` runs the scenario as `snapflow run`
/// does (report, verdict, trace hash); `-- sweep examples/state-machine.toml --seeds 100` sweeps it.
fn main() -> std::process::ExitCode {
    snapflow::cli::main_with(catalog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_walk_their_steps_exactly_once_under_faults() {
        let passed = snapflow::check(state_machine(2), &scenario(), 0..3)
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(passed, 3);
    }

    /// The check can fail: a timeout kept in a field of the function (a deadline per order)
    /// instead of a timer in state. A failover loses the field while the state it guards
    /// is restored, so orders that should time out do not.
    #[test]
    fn a_timeout_kept_outside_state_is_caught() {
        struct FieldDeadlines(std::collections::BTreeMap<String, u64>);
        impl KeyedProcessFunction for FieldDeadlines {
            fn process_element(
                &mut self,
                event: Value,
                state: &mut KeyedStateAccess<'_>,
                out: &mut Vec<Value>,
            ) -> Result<(), UserError> {
                let now = state.current_processing_time()?;
                let key = state.key().to_string();
                let expired = self.0.get(&key).is_some_and(|deadline| *deadline <= now);
                let step = state.value_state(&STEP).value()?.unwrap_or(0);
                if expired {
                    state.value_state(&STEP).clear();
                    out.push(Value::pair(event, Value::Str("timed out".into())));
                    return Ok(());
                }
                state.value_state(&STEP).update(&(step + 1))?;
                self.0.insert(key, now + TIMEOUT_MS);
                out.push(Value::pair(event, Value::Int(step as i64)));
                Ok(())
            }
            fn uses_processing_time(&self) -> bool {
                true
            }
        }
        let job = JobBuilder::new("deadlines-in-a-field", 2)
            .source("source", INPUT_TOPIC)
            .map("event", order_event)
            .key_by(|event| match event {
                Value::Pair(pair) => pair.0.as_str().unwrap_or_default().into(),
                _ => Default::default(),
            })
            .process("orders", || Box::new(FieldDeadlines(Default::default())))
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
