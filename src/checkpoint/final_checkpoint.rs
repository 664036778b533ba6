//! The final checkpoint (Flink's FLIP-147, checkpoints after tasks finish), sans-IO: a job
//! whose sink commits on checkpoints must not end before a checkpoint taken after the last
//! record commits. Sources that read all their input report it and keep answering triggers;
//! once every source has, the next triggered checkpoint is final; when a final checkpoint
//! completes, the sources end their input. A failover starts the count over.

use crate::ids::{CheckpointId, SubtaskId};
use std::collections::BTreeSet;

/// What reporting the end of a source's input changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndOfData {
    /// Recorded; other sources still read.
    Recorded,
    /// Every source is at its end: the next checkpoint is the final one.
    AllSourcesAtEnd,
    /// Already known (a repeated report).
    Repeated,
}

/// An end-of-input report that does not fit the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndOfDataError {
    /// It came from a task that reads no source.
    #[error("{subtask} reported the end of its input but is no source")]
    NotASource {
        /// The reporter.
        subtask: SubtaskId,
    },
    /// The job's sink does not commit on checkpoints.
    #[error("{subtask} reported the end of its input, but the job takes no final checkpoint")]
    NoFinalCheckpoint {
        /// The reporter.
        subtask: SubtaskId,
    },
}

/// Tracks the sources at their end and the final checkpoints of one job attempt.
#[derive(Clone, Debug)]
pub struct FinalCheckpoint {
    enabled: bool,
    // Stop-with-savepoint with drain: the sources end early and the savepoint is final,
    // whatever the sink.
    draining: bool,
    sources: BTreeSet<SubtaskId>,
    at_end: BTreeSet<SubtaskId>,
    triggered: BTreeSet<CheckpointId>,
}

impl FinalCheckpoint {
    /// A tracker for a job with `sources`; `enabled` when its sink commits on checkpoints.
    pub fn new(enabled: bool, sources: BTreeSet<SubtaskId>) -> FinalCheckpoint {
        assert!(!sources.is_empty(), "a job has a source");
        FinalCheckpoint {
            enabled,
            draining: false,
            sources,
            at_end: BTreeSet::new(),
            triggered: BTreeSet::new(),
        }
    }

    /// A source reports the end of its input.
    pub fn on_end_of_data(&mut self, subtask: SubtaskId) -> Result<EndOfData, EndOfDataError> {
        if !self.sources.contains(&subtask) {
            return Err(EndOfDataError::NotASource { subtask });
        }
        if !self.enabled && !self.draining {
            return Err(EndOfDataError::NoFinalCheckpoint { subtask });
        }
        if !self.at_end.insert(subtask) {
            return Ok(EndOfData::Repeated);
        }
        Ok(if self.at_end == self.sources {
            EndOfData::AllSourcesAtEnd
        } else {
            EndOfData::Recorded
        })
    }

    /// Checkpoint `checkpoint_id` is being triggered: whether it is a final one.
    pub fn on_trigger(&mut self, checkpoint_id: CheckpointId) -> bool {
        let last = (self.enabled || self.draining) && self.at_end == self.sources;
        if last {
            self.triggered.insert(checkpoint_id);
        }
        last
    }

    /// Checkpoint `checkpoint_id` completed: whether the sources now end their input.
    pub fn on_completed(&self, checkpoint_id: CheckpointId) -> bool {
        self.triggered.contains(&checkpoint_id)
    }

    /// The newest completed checkpoint if it is a final one (its notice is repeated).
    pub fn completed_final(&self, latest: Option<CheckpointId>) -> Option<CheckpointId> {
        latest.filter(|id| self.triggered.contains(id))
    }

    /// The job fails over: the new attempt's sources report again.
    pub fn reset(&mut self) {
        self.at_end.clear();
        self.triggered.clear();
        self.draining = false;
    }

    /// Stop-with-savepoint with drain: the sources are told to end their input, and report it
    /// whatever the sink; the next checkpoint after, the savepoint, is final.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether a drain is under way.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// A region failover restarts `subtasks`: those sources report again; the others stay
    /// at their end.
    pub fn reset_sources(&mut self, subtasks: &BTreeSet<SubtaskId>) {
        assert!(
            !self.is_finishing(),
            "region failover before the final checkpoint only"
        );
        self.at_end.retain(|source| !subtasks.contains(source));
    }

    /// Whether a final checkpoint was triggered: the job is finishing.
    pub fn is_finishing(&self) -> bool {
        !self.triggered.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VertexId;

    fn tracker() -> FinalCheckpoint {
        FinalCheckpoint::new(true, [SubtaskId::new(0, 0), SubtaskId::new(0, 1)].into())
    }

    #[test]
    fn the_first_checkpoint_after_every_source_ended_is_final() {
        let mut tracker = tracker();
        assert_eq!(
            tracker.on_end_of_data(SubtaskId::new(0, 0)),
            Ok(EndOfData::Recorded)
        );
        assert!(!tracker.on_trigger(CheckpointId(4)), "source 1 still reads");
        assert_eq!(
            tracker.on_end_of_data(SubtaskId::new(0, 0)),
            Ok(EndOfData::Repeated)
        );
        assert_eq!(
            tracker.on_end_of_data(SubtaskId::new(0, 1)),
            Ok(EndOfData::AllSourcesAtEnd)
        );
        assert!(!tracker.on_completed(CheckpointId(4)));
        assert!(tracker.on_trigger(CheckpointId(5)));
        // Checkpoint 5 aborts; 6 is final too, and its completion ends the sources.
        assert!(tracker.on_trigger(CheckpointId(6)));
        assert!(tracker.on_completed(CheckpointId(6)));
        assert_eq!(
            tracker.completed_final(Some(CheckpointId(6))),
            Some(CheckpointId(6))
        );
        assert_eq!(tracker.completed_final(Some(CheckpointId(4))), None);
    }

    #[test]
    fn a_failover_starts_over() {
        let mut tracker = tracker();
        tracker.on_end_of_data(SubtaskId::new(0, 0)).unwrap();
        tracker.on_end_of_data(SubtaskId::new(0, 1)).unwrap();
        assert!(tracker.on_trigger(CheckpointId(3)));
        tracker.reset();
        assert!(!tracker.on_trigger(CheckpointId(4)));
        assert!(!tracker.on_completed(CheckpointId(3)));
    }

    #[test]
    fn reports_from_non_sources_or_without_a_committing_sink_are_errors() {
        let mut tracker = tracker();
        let stranger = SubtaskId {
            vertex_id: VertexId(1),
            subtask_index: 0,
        };
        assert_eq!(
            tracker.on_end_of_data(stranger),
            Err(EndOfDataError::NotASource { subtask: stranger })
        );
        let mut disabled = FinalCheckpoint::new(false, [SubtaskId::new(0, 0)].into());
        assert_eq!(
            disabled.on_end_of_data(SubtaskId::new(0, 0)),
            Err(EndOfDataError::NoFinalCheckpoint {
                subtask: SubtaskId::new(0, 0)
            })
        );
        assert!(!disabled.on_trigger(CheckpointId(1)));
    }
}
