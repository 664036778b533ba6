//! A job whose restart strategy gave up (`expect = "gave-up"`): it must have given up exactly
//! where its strategy allows, and what it left outside must be a consistent part of the
//! oracle's output, never more.

use super::*;
use crate::ids::SubtaskId;
use crate::runtime::hooks::EngineEvent;
use crate::runtime::restart::{RestartDecision, RestartStrategy, RestartStrategyConfig};

/// The job ended FAILED, and the strategy fed the run's failures in order restarts at each
/// but the last and gives up at the last: no restart too few, none too many.
pub(super) fn gave_up_as_allowed(
    run: &RunResult,
    restart: &RestartStrategyConfig,
    seed: u64,
) -> Result<String, String> {
    let reason = match &run.outcome {
        Some((_, JobOutcome::Failed(reason))) => reason,
        Some((at, JobOutcome::Finished)) => {
            return Err(format!(
                "the job finished at {at} after {} restart(s); the restart strategy {restart} was expected to give up",
                run.restarts
            ))
        }
        Some((at, JobOutcome::Canceled)) => {
            return Err(format!("the job was cancelled at {at}"))
        }
        None => return Err("the job had not ended by the deadline (stuck)".to_string()),
    };
    match replay_restarts(run, restart, seed)? {
        true if reason.contains("restart strategy") => Ok(format!(
            "{restart} gave up at failure {} after {} restart(s), as it allows",
            run.failures.len(),
            run.restarts
        )),
        true => Err(format!(
            "the job failed, but not through its restart strategy: {reason}"
        )),
        false => Err(format!(
            "the job failed without its strategy giving up: {reason}"
        )),
    }
}

/// Every failover of the run was decided as the strategy, fed the same failures at the job
/// master's own times, decides: each restart at the time it chose (and the redeployment no
/// earlier; waiting for slots may make it later), no restart where it gives up.
pub(super) fn restarts_as_planned(
    run: &RunResult,
    restart: &RestartStrategyConfig,
    seed: u64,
) -> Result<(), String> {
    replay_restarts(run, restart, seed).map(|_| ())
}

// Replays the run's failovers through a fresh strategy; returns whether it gave up.
fn replay_restarts(
    run: &RunResult,
    restart: &RestartStrategyConfig,
    seed: u64,
) -> Result<bool, String> {
    let mut strategy = RestartStrategy::new(restart.clone(), seed);
    let mut cause = String::new();
    // The restart each failover waits for, by the tasks it restarts (`None`: the job); region
    // failovers may overlap, each on its own delay.
    let mut failed_region: Option<Vec<SubtaskId>> = None;
    let mut pending: Vec<(Option<Vec<SubtaskId>>, Instant)> = Vec::new();
    let mut failures = 0;
    // The job manager that leads: a deposed one that has not learnt it yet decides nothing
    // that takes effect (the task managers refuse its commands), so its events are skipped.
    let mut leader: Option<&str> = None;
    for recorded in &run.events {
        if let EngineEvent::LeaderElected { .. } = recorded.event {
            leader = Some(recorded.node.as_str());
        }
        if leader.is_some_and(|node| node != recorded.node) {
            continue;
        }
        match &recorded.event {
            // A new leader's job master starts with a fresh strategy, as Flink's does; so does
            // a job submitted again (`flink run -s`).
            EngineEvent::JobRecovered { .. } | EngineEvent::JobRestoredFromCheckpoint { .. } => {
                strategy = RestartStrategy::new(restart.clone(), seed);
                pending.clear();
            }
            EngineEvent::FailingOver { reason, region, .. } => {
                cause = reason.clone();
                failed_region = region.clone();
                match region {
                    // A full failover drops the region restarts under way.
                    None => pending.clear(),
                    // A region failing again before it ran restarts anew.
                    Some(tasks) => pending.retain(|(r, _)| {
                        r.as_ref()
                            .is_none_or(|r| r.iter().all(|t| !tasks.contains(t)))
                    }),
                }
            }
            EngineEvent::Restarting {
                failed_at,
                restart_at,
            } => {
                failures += 1;
                match strategy.on_failure(*failed_at, &cause) {
                    RestartDecision::RestartAt(planned) if planned == *restart_at => {
                        pending.push((failed_region.clone(), planned))
                    }
                    RestartDecision::RestartAt(planned) => {
                        return Err(format!(
                            "after failure {failures} ({failed_at}) {restart} restarts at {planned}, the job master chose {restart_at}"
                        ))
                    }
                    RestartDecision::GiveUp(why) => {
                        return Err(format!(
                            "{restart} gives up at failure {failures} ({failed_at}), but the job restarted: {why}"
                        ))
                    }
                }
            }
            EngineEvent::Deploying {
                attempt, region, ..
            } => {
                let waited = pending.iter().position(|(r, _)| r == region);
                if let Some((_, planned)) = waited.map(|i| pending.remove(i)) {
                    // Stamped when the harness heard of it, which is never before it happened.
                    if recorded.at < planned {
                        return Err(format!(
                            "{attempt} deployed at {}, before the restart time {planned}",
                            recorded.at
                        ));
                    }
                }
            }
            EngineEvent::JobFailed { failed_at, .. } => {
                failures += 1;
                return match strategy.on_failure(*failed_at, &cause) {
                    RestartDecision::GiveUp(_) => Ok(true),
                    RestartDecision::RestartAt(at) => Err(format!(
                        "the job failed at failure {failures} ({failed_at}), but {restart} restarts it at {at}"
                    )),
                };
            }
            _ => {}
        }
    }
    Ok(false)
}

/// What a failed job left: a two-phase-commit reader's view, or the write-ahead output with
/// each batch kept once, holds each key's records as a prefix of the oracle's; a plain or
/// idempotent sink holds no record the oracle never produced.
pub(super) fn gave_up_output(
    sink: &SinkConfig,
    expected: &RecordBatch,
    faulty: &RunResult,
) -> Result<String, String> {
    match sink.kind {
        SinkKind::TwoPhaseCommit => per_key_prefix(expected, &faulty.sink_output),
        SinkKind::WriteAheadLog => {
            per_key_prefix(expected, &deduplicate_batches(&faulty.output.logs).0)
        }
        SinkKind::Plain => only_oracle_records(expected, &faulty.sink_output),
        SinkKind::Idempotent => {
            let mut stored = RecordBatch::new();
            faulty
                .output
                .kv
                .values()
                .for_each(|value| stored.push_encoded(value));
            only_oracle_records(expected, &stored)
        }
    }
}
