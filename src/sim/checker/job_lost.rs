//! A job lost with its job manager (`expect = "job-lost"`): without high availability a job
//! manager that starts again knows no job, and one killed for good leaves the job to nobody.
//! The run must show exactly that, never a job that quietly finished or merely got stuck.

use super::*;
use crate::runtime::hooks::EngineEvent;

const JOBMANAGER: &str = "jobmanager";

/// How the job manager lost the job, if the run shows it: a restarted job manager that knew
/// no job, or one that fell silent for good and was given up by the task managers.
pub(super) fn job_loss(run: &RunResult) -> Option<String> {
    let last_word = run.events.iter().rev().find(|e| e.node == JOBMANAGER);
    if let Some(recorded) = last_word {
        if let EngineEvent::NoJobToRecover { reason } = &recorded.event {
            return Some(format!(
                "the job manager started again at {} and knew no job ({reason})",
                recorded.at
            ));
        }
    }
    let silent_since = last_word.map_or(Instant::ZERO, |e| e.at);
    let given_up = run
        .events
        .iter()
        .filter(|e| e.at > silent_since)
        .filter(|e| matches!(e.event, EngineEvent::JobManagerLost { .. }))
        .count();
    (given_up > 0).then(|| {
        format!(
            "the job manager fell silent at {silent_since} for good; {given_up} task manager report(s) gave it up"
        )
    })
}

/// The job never ended, and the job manager lost it.
pub(super) fn lost_with_jobmanager(run: &RunResult) -> Result<String, String> {
    if let Some((at, outcome)) = &run.outcome {
        return Err(format!(
            "the job ended at {at} ({outcome:?}); it was expected to be lost with its job manager"
        ));
    }
    job_loss(run).ok_or_else(|| {
        "the job had not ended by the deadline, but its job manager never lost it (stuck)"
            .to_string()
    })
}
