//! Stages of a scenario (`[[stages]]`): after the first job ends (stopped with a savepoint,
//! or cancelled with its checkpoints retained) the client submits a new version of the job
//! from that savepoint or checkpoint (`flink run -s <path> [-n]`), to a fresh cluster. Each
//! stage has its own job version and its own faults.

use crate::scenario::faults::FaultPlan;
use std::fmt;

/// What a stage resumes from: its `state-recovery.path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageRestore {
    /// `"savepoint"`: the savepoint the stage before was stopped with (or its newest).
    Savepoint,
    /// `"checkpoint"`: the newest checkpoint the stage before retained when cancelled.
    Checkpoint,
}

impl StageRestore {
    /// The name a scenario file gives it.
    pub fn name(self) -> &'static str {
        match self {
            StageRestore::Savepoint => "savepoint",
            StageRestore::Checkpoint => "checkpoint",
        }
    }
}

/// A stage after the first: the job version it runs, where it resumes from, its faults.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The built-in job it runs (operators added or removed by uid against the stage before).
    pub job_name: String,
    /// Parallelism of the source (and what chains to it).
    pub source_parallelism: u32,
    /// Parallelism of the other operators.
    pub parallelism: u32,
    /// `pipeline.max-parallelism`, if set (inherited from the stage before when not given).
    pub max_parallelism: Option<u32>,
    /// What it resumes from.
    pub restore: StageRestore,
    /// `state-recovery.ignore-unclaimed-state` (Flink's `--allowNonRestoredState`, `-n`).
    pub ignore_unclaimed: bool,
    /// Its faults.
    pub faults: FaultPlan,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`, parallelism {} (source {}), from the {}",
            self.job_name,
            self.parallelism,
            self.source_parallelism,
            self.restore.name()
        )?;
        if self.ignore_unclaimed {
            write!(f, ", ignoring unclaimed state")?;
        }
        Ok(())
    }
}
