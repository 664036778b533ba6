//! The job's status and its tasks' execution states (Flink's `JobStatus` and
//! `ExecutionState`), as the job master tracks them.

use crate::time::Instant;

/// The job's status (Flink's `JobStatus`, with the scheduler's waiting states made explicit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Too few slots are registered to place the job.
    WaitingForResources,
    /// An attempt is deployed; not every task reported running by `deadline`.
    Deploying {
        /// When the deployment fails.
        deadline: Instant,
    },
    /// Every task of the attempt runs (or finished).
    Running,
    /// Failed over; the next attempt is placed at `at`.
    Restarting {
        /// When the restart strategy lets the job redeploy.
        at: Instant,
    },
    /// Every task finished. Terminal.
    Finished,
    /// The restart strategy gave up. Terminal.
    Failed,
    /// Cancelled by the user (`flink cancel`). Terminal.
    Canceled,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// Whether an attempt is deployed (a failure then fails it over).
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Deploying { .. } | JobStatus::Running)
    }
}

/// A task as the job master tracks it within one attempt (Flink's `ExecutionState`, the
/// states that matter here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionState {
    /// Sent to its task manager, not reported running yet.
    Deploying,
    /// Running.
    Running,
    /// Consumed all its input.
    Finished,
}
