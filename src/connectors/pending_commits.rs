//! What a committing sink pre-committed per checkpoint and has not committed yet (the
//! `pendingCommitTransactions` of Flink's `TwoPhaseCommitSinkFunction`). A completion notice
//! for checkpoint n commits everything pre-committed at n or before: notices may be lost or
//! arrive late, and a newer checkpoint's completion implies the older ones'.

use crate::ids::CheckpointId;
use crate::state::snapshot::{PendingCommit, PendingContent, SinkStateSnapshot};
use std::collections::BTreeMap;

/// Pre-committed work by checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCommits<T> {
    by_checkpoint: BTreeMap<CheckpointId, T>,
}

impl<T> Default for PendingCommits<T> {
    fn default() -> Self {
        PendingCommits {
            by_checkpoint: BTreeMap::new(),
        }
    }
}

impl<T> PendingCommits<T> {
    /// Records `work` pre-committed at checkpoint `checkpoint_id`.
    pub fn pre_commit(&mut self, checkpoint_id: CheckpointId, work: T) {
        let newest = self.by_checkpoint.keys().next_back().copied();
        assert!(
            newest.is_none_or(|newest| newest < checkpoint_id),
            "barriers reach a task in checkpoint order"
        );
        self.by_checkpoint.insert(checkpoint_id, work);
    }

    /// The oldest pending work at or before `completed`, if any (it stays pending until
    /// `committed` says it is done, so a failure mid-commit leaves it in place).
    pub fn next_due(&self, completed: CheckpointId) -> Option<(CheckpointId, &T)> {
        self.by_checkpoint
            .iter()
            .next()
            .filter(|(id, _)| **id <= completed)
            .map(|(id, work)| (*id, work))
    }

    /// Drops the work of `checkpoint_id`, now committed.
    pub fn committed(&mut self, checkpoint_id: CheckpointId) {
        let removed = self.by_checkpoint.remove(&checkpoint_id);
        assert!(removed.is_some(), "only pending work is committed");
    }

    /// Whether anything waits for a completion notice.
    pub fn is_empty(&self) -> bool {
        self.by_checkpoint.is_empty()
    }

    /// The sink's snapshot: every pending piece of work, oldest first, as `content` stores it.
    pub fn to_snapshot(
        &self,
        subtask_index: u32,
        next_transaction: u64,
        content: impl Fn(&T) -> PendingContent,
    ) -> SinkStateSnapshot {
        SinkStateSnapshot {
            subtask_index,
            prefix: String::new(),
            next_transaction,
            pending: self
                .by_checkpoint
                .iter()
                .map(|(id, work)| PendingCommit {
                    checkpoint_id: id.0,
                    content: content(work),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_commits_everything_up_to_its_checkpoint_in_order() {
        let mut pending = PendingCommits::default();
        pending.pre_commit(CheckpointId(2), "a");
        pending.pre_commit(CheckpointId(3), "b");
        pending.pre_commit(CheckpointId(5), "c");
        // The notice of 3 was lost; the notice of 4 (a checkpoint this task never saw)
        // commits 2 and 3, not 5.
        let mut committed = Vec::new();
        while let Some((id, work)) = pending.next_due(CheckpointId(4)) {
            committed.push((id.0, *work));
            pending.committed(id);
        }
        assert_eq!(committed, vec![(2, "a"), (3, "b")]);
        assert_eq!(pending.next_due(CheckpointId(4)), None);
        assert!(!pending.is_empty());
        assert_eq!(
            pending.next_due(CheckpointId(9)),
            Some((CheckpointId(5), &"c"))
        );
    }

    #[test]
    #[should_panic(expected = "checkpoint order")]
    fn pre_commits_come_in_checkpoint_order() {
        let mut pending = PendingCommits::default();
        pending.pre_commit(CheckpointId(3), ());
        pending.pre_commit(CheckpointId(2), ());
    }
}
