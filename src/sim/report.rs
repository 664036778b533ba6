//! The report `snapflow run` prints: plan, faults, checkpoints, failures, records, final
//! state, the verdict and the trace hash.

use crate::checkpoint::barrier::BarrierKind;
use crate::checkpoint::coordinator::CheckpointingMode;
use crate::connectors::sink_config::{SinkConfig, SinkKind};
use crate::runtime::hooks::EngineEvent;
use crate::runtime::restart::RestartStrategyConfig;
use crate::scenario::Scenario;
use crate::sim::checker::{StateDescriber, Verdict};
use crate::sim::cluster::RunResult;
use crate::sim::observer::ObservedCheckpoint;
use crate::state::snapshot::PendingContent;
use crate::state::snapshot::{LogicalKeyedState, OperatorSnapshot};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Keys shown per keyed operator of a checkpoint in the report.
const CHECKPOINT_KEYS_MAX: usize = 4;
/// Keys shown per keyed operator in the report.
const REPORT_KEYS_MAX: usize = 12;

/// Renders the report of a checked run.
pub fn render(
    scenario: &Scenario,
    source: &str,
    input_records: usize,
    faulty: &RunResult,
    verdict: &Verdict,
) -> String {
    let job = scenario.job();
    let graph = scenario.graph();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "scenario `{}` ({source}), seed {}",
        scenario.name, faulty.seed
    );
    let _ = writeln!(
        text,
        "job `{}`, max parallelism {}:",
        job.name, job.max_parallelism
    );
    text.push_str(&graph.describe());
    let _ = writeln!(text, "mode: {}", mode_line(scenario));
    render_fault_plan(&mut text, scenario, faulty);
    render_stages(&mut text, scenario, faulty);
    let describer = StateDescriber::new(&job).with_ttl_states(&faulty.final_visibility);
    render_checkpoints(&mut text, faulty, &describer);
    render_checkpoint_fates(&mut text, faulty);
    let _ = writeln!(text, "failures: {}", faulty.failures.len());
    for (at, reason) in &faulty.failures {
        let _ = writeln!(text, "  {at} {reason}");
    }
    let _ = writeln!(
        text,
        "restarts: {} (failover strategy {})",
        faulty.restarts,
        scenario.failover.name()
    );
    render_restart_delays(&mut text, &scenario.restart, faulty);
    render_leadership(&mut text, faulty);
    let written = match scenario.sink.kind {
        SinkKind::Idempotent => format!(
            "{} upserts into {} kv keys",
            faulty.output.kv_history.len(),
            faulty.output.kv.len()
        ),
        SinkKind::Plain => format!("{} written by the sink", faulty.sink_output.len()),
        SinkKind::WriteAheadLog => {
            format!("{} appended to the output topic", faulty.output.appended())
        }
        SinkKind::TwoPhaseCommit => format!(
            "{} appended to the output topic, {} read {}",
            faulty.output.appended(),
            faulty.sink_output.len(),
            scenario.sink.isolation.name()
        ),
    };
    let _ = writeln!(
        text,
        "records: {input_records} read from the input topic, {written}"
    );
    for (uid, state) in &faulty.final_state {
        let _ = writeln!(
            text,
            "final state `{uid}`: {}",
            describer.describe_all(uid, state, REPORT_KEYS_MAX)
        );
    }
    let _ = writeln!(
        text,
        "check: {} ({} rules)",
        if verdict.passed() { "PASS" } else { "FAIL" },
        verdict.guarantee.name()
    );
    for check in &verdict.checks {
        let _ = writeln!(
            text,
            "  [{}] {}: {}",
            if check.passed { "ok" } else { "FAILED" },
            check.name,
            check.detail
        );
    }
    for note in &verdict.notes {
        let _ = writeln!(text, "  [note] {note}");
    }
    let _ = writeln!(
        text,
        "trace: {} lines, hash {:016x}",
        faulty.trace.len(),
        faulty.trace_hash
    );
    text
}

/// Job-manager leadership and recovery, when a job manager started more than once or with
/// high availability: who led, from which checkpoint each leader recovered, which job was lost.
fn render_leadership(text: &mut String, faulty: &RunResult) {
    let lines: Vec<String> = faulty
        .events
        .iter()
        .filter(|recorded| {
            matches!(
                recorded.event,
                EngineEvent::LeaderElected { .. }
                    | EngineEvent::JobRecovered { .. }
                    | EngineEvent::NoJobToRecover { .. }
                    | EngineEvent::LeadershipLost { .. }
                    | EngineEvent::StandingBy { .. }
                    | EngineEvent::CheckpointUnusable { .. }
            ) && recorded.node.starts_with("jobmanager")
        })
        .map(|recorded| format!("  {} {}: {}", recorded.at, recorded.node, recorded.event))
        .collect();
    let elected = faulty
        .events
        .iter()
        .filter(|r| matches!(r.event, EngineEvent::LeaderElected { .. }))
        .count();
    let lost = lines.iter().any(|l| l.contains("no job to run"));
    if elected > 1 || lost {
        let _ = writeln!(text, "job managers: {elected} leader(s) elected");
        lines.iter().for_each(|line| {
            let _ = writeln!(text, "{line}");
        });
    }
}

/// The plan, each fault with whether and when it fired: a plan that did nothing makes a PASS
/// meaningless, so the report never leaves it to be guessed.
fn render_fault_plan(text: &mut String, scenario: &Scenario, faulty: &RunResult) {
    let _ = writeln!(text, "fault plan:");
    // One numbering over every stage's faults, as the run fires them.
    let faults: Vec<(usize, &crate::scenario::faults::Fault)> = std::iter::once(&scenario.faults)
        .chain(scenario.stages.iter().map(|s| &s.faults))
        .enumerate()
        .flat_map(|(stage, plan)| plan.faults.iter().map(move |f| (stage, f)))
        .collect();
    if faults.is_empty() {
        let _ = writeln!(text, "  (no faults)");
    }
    for (index, (stage, fault)) in faults.into_iter().enumerate() {
        if !scenario.stages.is_empty() {
            let _ = write!(text, "  [stage {}]", stage + 1);
        }
        let fired = match faulty.faults_fired.get(index).copied().flatten() {
            Some(at) => format!("fired at {at}"),
            None => "NEVER FIRED".to_string(),
        };
        let _ = writeln!(
            text,
            "  {}. {} {}: {fired}",
            index + 1,
            fault.action,
            fault.trigger
        );
    }
}

/// Each stage of a staged run (or a resubmission): the job version, what it resumed from
/// (savepoint or checkpoint, its size and path) and how the state was redistributed over it:
/// key-group ranges per keyed subtask, partitions per source subtask, the sink subtasks that
/// took over others' transactions, state dropped, operators started empty.
fn render_stages(text: &mut String, scenario: &Scenario, faulty: &RunResult) {
    let restores: Vec<&EngineEvent> = faulty
        .events
        .iter()
        .map(|recorded| &recorded.event)
        .filter(|event| matches!(event, EngineEvent::JobRestoredFromCheckpoint { .. }))
        .collect();
    if scenario.stages.is_empty() && restores.is_empty() {
        return;
    }
    let _ = writeln!(text, "stages:");
    let first = scenario.stage(0);
    let _ = writeln!(
        text,
        "  1. `{}`, parallelism {} (source {}), from empty state",
        first.job_name, first.parallelism, first.source_parallelism
    );
    render_uid_warning(text, &first.job());
    for (index, event) in restores.into_iter().enumerate() {
        let EngineEvent::JobRestoredFromCheckpoint {
            checkpoint_id,
            path,
            savepoint,
            assignment,
            ..
        } = event
        else {
            continue;
        };
        let stage = scenario.stage((index + 1).min(scenario.stages.len()));
        let size = faulty
            .checkpoints
            .iter()
            .find(|c| c.checkpoint.checkpoint_id == *checkpoint_id)
            .map_or("?".to_string(), |c| {
                c.checkpoint.state_size_bytes().to_string()
            });
        let format = faulty
            .checkpoints
            .iter()
            .find(|c| c.checkpoint.checkpoint_id == *checkpoint_id)
            .and_then(|c| c.checkpoint.savepoint)
            .map_or(String::new(), |s| format!(" {}", s.format.name()));
        let what = if *savepoint {
            "savepoint"
        } else {
            "checkpoint"
        };
        let _ = writeln!(
            text,
            "  {}. `{}`, parallelism {} (source {}), from{format} {what} {checkpoint_id} ({size} B, {path})",
            index + 2,
            stage.job_name,
            stage.parallelism,
            stage.source_parallelism
        );
        render_redistribution(text, &stage, assignment);
    }
}

/// How the restored state spreads over the stage's subtasks.
fn render_redistribution(
    text: &mut String,
    stage: &Scenario,
    assignment: &crate::checkpoint::state_assignment::StateAssignment,
) {
    let job = stage.job();
    let partitions = stage.workload.partitions;
    for operator in &job.operators {
        let Some((old, new)) = assignment.rescaled.get(&operator.uid) else {
            continue;
        };
        let spread: Vec<String> = (0..operator.parallelism)
            .map(|index| match operator.kind {
                crate::api::job::OperatorKind::Source { .. } => {
                    let owned = crate::graph::execution_graph::ExecutionGraph::source_partitions(
                        index,
                        operator.parallelism,
                        partitions,
                    );
                    let owned: Vec<String> = owned.iter().map(|p| format!("p{p}")).collect();
                    format!("#{index} {}", owned.join(","))
                }
                crate::api::job::OperatorKind::Sink { .. } => {
                    let taken: Vec<String> = (0..*old)
                        .filter(|o| {
                            crate::checkpoint::state_assignment::sink_takes_over(
                                *o,
                                index,
                                operator.parallelism,
                            )
                        })
                        .map(|o| format!("#{o}"))
                        .collect();
                    format!(
                        "#{index}<-{}",
                        if taken.is_empty() {
                            "nothing".to_string()
                        } else {
                            taken.join(",")
                        }
                    )
                }
                crate::api::job::OperatorKind::Checkpointed(_) => format!("#{index}"),
                _ => {
                    let range = crate::state::key_group::key_group_range(
                        job.max_parallelism,
                        operator.parallelism,
                        index,
                    );
                    format!("#{index} kg {}..={}", range.start, range.end)
                }
            })
            .collect();
        let how = match operator.kind {
            crate::api::job::OperatorKind::Source { .. } => "offsets (union), partitions",
            crate::api::job::OperatorKind::Sink { .. } => "transactions taken over",
            crate::api::job::OperatorKind::Checkpointed(_) => {
                "operator list state (even split: shares in old-subtask order; union: all to each)"
            }
            _ => "key groups",
        };
        let _ = writeln!(
            text,
            "     `{}` {old} -> {new} subtask(s), {how}: {}",
            operator.uid,
            spread.join("; ")
        );
    }
    for uid in &assignment.dropped {
        let _ = writeln!(
            text,
            "     `{uid}`: its state is dropped (ignore-unclaimed-state)"
        );
    }
    for uid in &assignment.empty {
        let _ = writeln!(text, "     `{uid}`: no state in the snapshot, starts empty");
    }
    render_uid_warning(text, &job);
}

/// The seeds' advice: without explicit uids a changed topology does not map its state.
fn render_uid_warning(text: &mut String, job: &crate::api::job::Job) {
    let generated: Vec<&str> = job
        .operators
        .iter()
        .filter(|o| o.uid_generated)
        .map(|o| o.uid.as_str())
        .collect();
    if !generated.is_empty() {
        let _ = writeln!(
            text,
            "     warning: operator(s) without an explicit uid ({}): their generated uids change with the topology, so their state will not map after a change; set uid() on every stateful operator",
            generated.join(", ")
        );
    }
}

fn mode_line(scenario: &Scenario) -> String {
    let checkpointing = match scenario.checkpoint.interval {
        Some(interval) => match scenario.checkpoint.mode {
            CheckpointingMode::ExactlyOnce => match scenario.checkpoint.barrier_kind() {
                BarrierKind::Unaligned => format!(
                    "exactly-once, unaligned checkpoints (in-flight data persisted) every {interval}"
                ),
                BarrierKind::AlignedTimeoutable { timeout } => format!(
                    "exactly-once, aligned checkpoints turning unaligned {timeout} after creation, every {interval}"
                ),
                _ => format!("exactly-once, aligned checkpoints every {interval}"),
            },
            CheckpointingMode::AtLeastOnce => format!(
                "at-least-once, barriers tracked (never aligned), checkpoints every {interval}"
            ),
            CheckpointingMode::AtMostOnce => {
                unreachable!("the loader refuses an interval with at-most-once")
            }
        },
        None if scenario.checkpoint.mode == CheckpointingMode::AtMostOnce => {
            "at-most-once: no checkpoints, the source commits offsets as it reads".to_string()
        }
        None => "checkpointing disabled (source auto-commits offsets)".to_string(),
    };
    let restart = match &scenario.restart {
        RestartStrategyConfig::None => "restart none".to_string(),
        RestartStrategyConfig::FixedDelay { attempts, delay } => {
            format!("restart fixed-delay ({attempts} attempts, {delay})")
        }
        other => format!("restart {other}"),
    };
    format!(
        "{checkpointing}; {restart}; {}",
        sink_summary(&scenario.sink)
    )
}

/// Each failover and the redeployment after it, with the delay; for exponential-delay, the
/// formula's backoff beside it (the n-th restart since the start; a reset after a quiet
/// `reset-backoff-threshold` would start n over).
fn render_restart_delays(text: &mut String, restart: &RestartStrategyConfig, run: &RunResult) {
    // Each failover's time by the tasks it restarts (`None`: the job): region failovers may
    // overlap, each redeployed on its own.
    let mut failed_at: Vec<(Option<Vec<crate::ids::SubtaskId>>, crate::time::Instant)> = Vec::new();
    let mut restarts = 0;
    for recorded in &run.events {
        match &recorded.event {
            EngineEvent::FailingOver { region, .. } => {
                failed_at.retain(|(r, _)| r.is_some() && region.is_some());
                failed_at.push((region.clone(), recorded.at));
            }
            EngineEvent::Deploying {
                attempt, region, ..
            } => {
                let Some(index) = failed_at.iter().position(|(r, _)| r == region) else {
                    continue;
                };
                let (_, failed) = failed_at.remove(index);
                let delay = recorded.at.since(failed);
                let _ = write!(
                    text,
                    "  {attempt} deployed at {} ({delay} after the failure at {failed})",
                    recorded.at
                );
                if let Some(tasks) = region {
                    let names: Vec<String> = tasks.iter().map(ToString::to_string).collect();
                    let _ = write!(
                        text,
                        "; region failover restarted only {}",
                        names.join(", ")
                    );
                }
                if let RestartStrategyConfig::ExponentialDelay(c) = restart {
                    let formula =
                        c.initial_backoff.as_ms() as f64 * c.backoff_multiplier.powi(restarts);
                    let _ = write!(
                        text,
                        "; formula {}ms × {}^{restarts} = {formula:.0}ms, jitter ±{}%, within [{}, {}]",
                        c.initial_backoff.as_ms(),
                        c.backoff_multiplier,
                        c.jitter_factor * 100.0,
                        c.initial_backoff,
                        c.max_backoff
                    );
                }
                text.push('\n');
                restarts += 1;
            }
            _ => {}
        }
    }
}

fn sink_summary(sink: &SinkConfig) -> String {
    let reader = sink.isolation.name();
    match sink.kind {
        SinkKind::Plain => "plain sink".to_string(),
        SinkKind::TwoPhaseCommit => format!(
            "two-phase-commit sink (transaction.timeout.ms {}, broker transaction.max.timeout.ms {}), reader {reader}",
            sink.transaction_timeout, sink.broker_transaction_max_timeout
        ),
        SinkKind::WriteAheadLog => "write-ahead-log sink (committer records in the kv store)".to_string(),
        SinkKind::Idempotent => "idempotent sink (upserts into the kv store)".to_string(),
    }
}

fn render_checkpoints(text: &mut String, run: &RunResult, describer: &StateDescriber) {
    let _ = writeln!(text, "checkpoints completed: {}", run.checkpoints.len());
    if run.checkpoints.is_empty() {
        return;
    }
    let _ = writeln!(
        text,
        "  {:>4} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "id", "triggered", "duration", "size", "alignment", "in-flight"
    );
    for observed in &run.checkpoints {
        let checkpoint = &observed.checkpoint;
        let _ = writeln!(
            text,
            "  {:>4} {:>10} {:>10} {:>8} B {:>10} {:>10} B{}",
            checkpoint.checkpoint_id.0,
            checkpoint.created_at.to_string(),
            checkpoint.acked_at.since(checkpoint.created_at).to_string(),
            checkpoint.state_size_bytes(),
            checkpoint.alignment_duration_max().to_string(),
            checkpoint.in_flight_bytes(),
            if checkpoint.unaligned() {
                " unaligned"
            } else {
                ""
            }
        );
        let _ = writeln!(text, "       {}", checkpoint_contents(observed, describer));
    }
}

/// Every checkpoint that did not complete, with its fate: expired at its timeout, declined,
/// subsumed, aborted by a failover.
fn render_checkpoint_fates(text: &mut String, run: &RunResult) {
    let mut triggered = BTreeMap::new();
    let mut fates = Vec::new();
    for recorded in &run.events {
        match &recorded.event {
            EngineEvent::CheckpointTriggered { checkpoint_id, .. } => {
                triggered.insert(*checkpoint_id, recorded.at);
            }
            EngineEvent::CheckpointAborted {
                checkpoint_id,
                cause,
            } => fates.push((*checkpoint_id, recorded.at, cause.clone())),
            _ => {}
        }
    }
    let _ = writeln!(text, "checkpoints not completed: {}", fates.len());
    for (checkpoint_id, at, cause) in fates {
        let since = triggered.get(&checkpoint_id).map_or(String::new(), |t| {
            format!(", {} after its trigger", at.since(*t))
        });
        let _ = writeln!(text, "  {checkpoint_id:>4} ended at {at}{since}: {cause:?}");
    }
}

/// A checkpoint's source offsets and a few keys of its keyed state.
fn checkpoint_contents(observed: &ObservedCheckpoint, describer: &StateDescriber) -> String {
    let mut offsets = BTreeMap::new();
    let mut keyed: BTreeMap<String, LogicalKeyedState> = BTreeMap::new();
    let (mut pending, mut pending_records) = (0, 0);
    for state in observed.task_states().values() {
        let Ok(state) = state else {
            return "unreadable state (see the check)".to_string();
        };
        for (uid, operator) in &state.operators {
            match operator {
                OperatorSnapshot::Source(source) => {
                    offsets.extend(source.next_offsets.iter().map(|(p, o)| (*p, *o)))
                }
                OperatorSnapshot::Keyed(snapshot) => {
                    snapshot.merge_into(keyed.entry(uid.clone()).or_default())
                }
                OperatorSnapshot::Operator(_) => {}
                OperatorSnapshot::Sink(sink) => {
                    pending += sink.pending.len();
                    pending_records += sink
                        .pending
                        .iter()
                        .map(|p| match &p.content {
                            PendingContent::Transaction { records, .. } => *records,
                            PendingContent::Batch { records } => records.len() as u64,
                        })
                        .sum::<u64>();
                }
            }
        }
    }
    let offsets: Vec<String> = offsets
        .iter()
        .map(|(partition, offset)| format!("p{partition}={offset}"))
        .collect();
    let mut parts = vec![format!("offsets {}", offsets.join(" "))];
    if pending > 0 {
        parts.push(format!(
            "sink: {pending} pre-committed, {pending_records} records"
        ));
    }
    for (uid, state) in &keyed {
        parts.push(format!(
            "{uid}: {}",
            describer.describe_all(uid, state, CHECKPOINT_KEYS_MAX)
        ));
    }
    parts.join("; ")
}
