//! A broadcast-rules job, written as a Flink user writes one (Flink's "broadcast state
//! pattern") and tested under the simulator: one topic carries both events and rules. A rule
//! `(category, threshold)` announces how many events of a category a user may send before an
//! alert; the rules are broadcast to every subtask and kept in broadcast state
//! (`MapState<category, threshold>`, the highest threshold announced for a category wins, so
//! every subtask reaches the same rules whatever order they arrive in). Events `(user,
//! category)` are keyed by user; each user's count per category is `MapState`, and when it
//! reaches the category's threshold the job emits an alert and starts counting again.
//! `cargo test --example broadcast_rules` checks it under `examples/broadcast-rules.toml`
//! (a task-manager kill and a task failure, exactly-once end to end) for three seeds.

use snapflow::api::functions::{KeyedBroadcastProcessFunction, UserError};
use snapflow::api::job::{Job, JobBuilder};
use snapflow::api::job_catalog::JobCatalog;
use snapflow::api::jobs::{INPUT_TOPIC, OUTPUT_TOPIC};
use snapflow::api::value::Value;
use snapflow::state::broadcast_state::{BroadcastContext, ReadOnlyBroadcastContext};
use snapflow::state::heap_backend::KeyedStateAccess;
use snapflow::state::state_descriptor::MapStateDescriptor;

/// The rules: category to threshold (broadcast state).
const THRESHOLDS: MapStateDescriptor<i64, i64> = MapStateDescriptor::new("thresholds");
/// A user's events per category since the last alert (keyed state).
const COUNTS: MapStateDescriptor<i64, i64> = MapStateDescriptor::new("counts");

/// Counts each user's events per category and alerts at the category's threshold.
struct ThresholdAlerts;

impl KeyedBroadcastProcessFunction for ThresholdAlerts {
    fn process_element(
        &mut self,
        event: Value,
        state: &mut KeyedStateAccess<'_>,
        rules: &ReadOnlyBroadcastContext<'_>,
        out: &mut Vec<Value>,
    ) -> Result<(), UserError> {
        let (user, category) = fields(&event)?;
        let mut counts = state.map_state(&COUNTS);
        let count = counts.get(&category)?.unwrap_or(0) + 1;
        match rules.state(&THRESHOLDS).get(&category)? {
            Some(threshold) if count >= threshold => {
                counts.remove(&category)?;
                out.push(Value::pair(
                    Value::Str(format!("alert:{user}").into()),
                    Value::Int(category * 1_000 + count),
                ));
            }
            _ => counts.put(&category, &count)?,
        }
        Ok(())
    }

    fn process_broadcast_element(
        &mut self,
        rule: Value,
        rules: &mut BroadcastContext<'_>,
    ) -> Result<(), UserError> {
        let (category, threshold) = rule_fields(&rule)?;
        let mut thresholds = rules.state(&THRESHOLDS);
        let highest = thresholds.get(&category)?.unwrap_or(0).max(threshold);
        thresholds.put(&category, &highest);
        Ok(())
    }
}

/// A rule is `("rule", (category, threshold))`.
fn is_rule(value: &Value) -> bool {
    value.first().and_then(Value::as_str) == Some("rule")
}

fn rule_fields(rule: &Value) -> Result<(i64, i64), UserError> {
    match rule {
        Value::Pair(pair) => match &pair.1 {
            Value::Pair(fields) => Ok((
                fields.0.as_int().unwrap_or_default(),
                fields.1.as_int().unwrap_or_default(),
            )),
            _ => Err(UserError(format!(
                "a rule is (\"rule\", (category, threshold)), not {rule}"
            ))),
        },
        _ => Err(UserError(format!("a rule is a pair, not {rule}"))),
    }
}

/// An event is `(user, category)`.
fn fields(event: &Value) -> Result<(String, i64), UserError> {
    match event {
        Value::Pair(pair) => Ok((
            pair.0.as_str().unwrap_or_default().to_string(),
            pair.1.as_int().unwrap_or_default(),
        )),
        _ => Err(UserError(format!(
            "an event is (user, category), not {event}"
        ))),
    }
}

/// A generated word (`k17`) and its position become a rule (one record in 25) or an event.
fn parse(word: Value) -> Value {
    let n: i64 = word
        .as_str()
        .unwrap_or_default()
        .bytes()
        .fold(0, |n, b| (n * 31 + b as i64) % 1_000_003);
    if n % 25 == 0 {
        let r = n / 25;
        let rule = Value::pair(Value::Int(r % 4), Value::Int(2 + (r / 4) % 5));
        return Value::pair(Value::Str("rule".into()), rule);
    }
    Value::pair(
        Value::Str(format!("user-{}", n % 9).into()),
        Value::Int(n % 4),
    )
}

/// `source -> parse -> keyBy(user).connect(rules.broadcast) -> alerts -> sink`.
pub fn broadcast_rules(parallelism: u32) -> Job {
    JobBuilder::new("broadcast-rules", parallelism)
        .source("source", INPUT_TOPIC)
        .map("parse", parse)
        .key_by(|event| match event {
            Value::Pair(pair) => pair.0.as_str().unwrap_or_default().into(),
            _ => Default::default(),
        })
        .connect_broadcast(is_rule)
        .process_broadcast("alerts", || Box::new(ThresholdAlerts))
        .sink("sink", OUTPUT_TOPIC)
        .build()
        .expect("a valid job")
}

/// The example's scenario, with this job in its catalog.
#[cfg(test)]
fn scenario() -> snapflow::scenario::Scenario {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/broadcast-rules.toml");
    snapflow::scenario::Scenario::load_with_jobs(std::path::Path::new(path), &catalog())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The built-in jobs and this one, which scenario files name `broadcast-rules`.
fn catalog() -> JobCatalog {
    JobCatalog::built_in().with("broadcast-rules", |_, parallelism| {
        broadcast_rules(parallelism)
    })
}

/// `cargo run --example broadcast_rules -- run examples/broadcast-rules.toml` runs the scenario as `snapflow run`
/// does (report, verdict, trace hash); `-- sweep examples/broadcast-rules.toml --seeds 100` sweeps it.
fn main() -> std::process::ExitCode {
    snapflow::cli::main_with(catalog())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_follow_the_broadcast_rules_exactly_once_under_faults() {
        let passed = snapflow::check(broadcast_rules(2), &scenario(), 0..3)
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(passed, 3);
    }

    /// The check can fail: the rule Flink's documentation warns about. A function whose
    /// broadcast state depends on the order broadcast elements arrive in (here the last rule
    /// for a category wins) lets its subtasks drift apart, since each receives the rules of
    /// the several upstream subtasks interleaved its own way; after a rescale the copies a
    /// subtask restores would hold different rules.
    #[test]
    fn broadcast_state_that_depends_on_arrival_order_is_caught() {
        struct LastRuleWins;
        impl KeyedBroadcastProcessFunction for LastRuleWins {
            fn process_element(
                &mut self,
                event: Value,
                state: &mut KeyedStateAccess<'_>,
                rules: &ReadOnlyBroadcastContext<'_>,
                out: &mut Vec<Value>,
            ) -> Result<(), UserError> {
                ThresholdAlerts.process_element(event, state, rules, out)
            }

            fn process_broadcast_element(
                &mut self,
                rule: Value,
                rules: &mut BroadcastContext<'_>,
            ) -> Result<(), UserError> {
                let (category, threshold) = rule_fields(&rule)?;
                rules.state(&THRESHOLDS).put(&category, &threshold);
                Ok(())
            }
        }
        let job = JobBuilder::new("broadcast-rules-last-wins", 2)
            .source("source", INPUT_TOPIC)
            .map("parse", parse)
            .key_by(|event| {
                event
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into()
            })
            .connect_broadcast(is_rule)
            .process_broadcast("alerts", || Box::new(LastRuleWins))
            .sink("sink", OUTPUT_TOPIC)
            .build()
            .expect("a valid job");
        let failure = snapflow::check(job, &scenario(), 0..3).unwrap_err();
        let text = failure.to_string();
        assert!(
            text.contains("depends on the order broadcast elements arrive in"),
            "{text}"
        );
    }
}
