//! Job-manager leadership (Flink's leader election and `JobMasterId` fencing token), sans-IO.
//!
//! Each election grants a new term. A term owns a block of attempt numbers and a block of
//! checkpoint ids, so a new leader never reuses a number its predecessor may still have in
//! flight: a zombie task's ack or state file can never be taken for the new leader's. (Flink
//! gives every execution graph a fresh random id and keeps the checkpoint-id counter in
//! ZooKeeper, bumped per trigger; a block reserved per term gives the same guarantee without
//! the trigger waiting for the high-availability service.)
//!
//! Without high availability there is one leader, term 1, whose blocks start at 1: the numbers
//! a single job manager has always used.

use crate::ids::{AttemptNumber, CheckpointId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Where a task manager sends what is for the job manager: the control endpoint of the
/// newest leader it heard (Flink's leader retrieval), shared by the task manager and its
/// tasks.
#[derive(Clone, Debug)]
pub struct LeaderAddress(Arc<Mutex<SocketAddr>>);

impl LeaderAddress {
    /// Starts at `initial`, the job manager the cluster was configured with.
    pub fn new(initial: SocketAddr) -> LeaderAddress {
        LeaderAddress(Arc::new(Mutex::new(initial)))
    }

    /// The leader's endpoint.
    pub fn get(&self) -> SocketAddr {
        *self.0.lock().expect("never poisoned")
    }

    /// A newer leader announced itself at `address`.
    pub fn set(&self, address: SocketAddr) {
        *self.0.lock().expect("never poisoned") = address;
    }
}

/// Attempt numbers one term owns (its restarts are at most this many minus one).
pub const ATTEMPTS_PER_TERM: u32 = 1000;
/// Checkpoint ids one term owns.
pub const CHECKPOINT_IDS_PER_TERM: u64 = 1_000_000;

/// A leadership term: the fencing token every job-manager command carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaderTerm(pub u64);

impl fmt::Display for LeaderTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "term {}", self.0)
    }
}

impl LeaderTerm {
    /// The only term of a cluster without high availability, and the first of one with it.
    pub const FIRST: LeaderTerm = LeaderTerm(1);

    /// The first attempt number this term deploys.
    pub fn first_attempt(self) -> AttemptNumber {
        let block = u32::try_from(self.0 - 1)
            .ok()
            .and_then(|index| index.checked_mul(ATTEMPTS_PER_TERM))
            .expect("terms fit the attempt numbers");
        AttemptNumber(block + 1)
    }

    /// The last attempt number this term may deploy.
    pub fn last_attempt(self) -> AttemptNumber {
        AttemptNumber(self.first_attempt().0 + ATTEMPTS_PER_TERM - 1)
    }

    /// The first checkpoint id this term triggers.
    pub fn first_checkpoint_id(self) -> CheckpointId {
        CheckpointId((self.0 - 1) * CHECKPOINT_IDS_PER_TERM + 1)
    }

    /// The last checkpoint id this term may trigger.
    pub fn last_checkpoint_id(self) -> CheckpointId {
        CheckpointId(self.first_checkpoint_id().0 + CHECKPOINT_IDS_PER_TERM - 1)
    }

    /// The term an attempt number belongs to.
    pub fn of_attempt(attempt: AttemptNumber) -> LeaderTerm {
        assert!(attempt.0 > 0, "attempt 0 is never deployed");
        LeaderTerm(u64::from((attempt.0 - 1) / ATTEMPTS_PER_TERM) + 1)
    }
}

/// What a task manager does with a message from the leader of `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceDecision {
    /// From the leader it follows.
    Accept,
    /// From a new leader: follow it, and cancel every task of the older terms (their job
    /// master lost leadership; the new one deploys its own attempts).
    NewLeader {
        /// The term followed until now, if any.
        previous: Option<LeaderTerm>,
    },
    /// From a deposed leader: refused.
    Fenced {
        /// The term followed.
        current: LeaderTerm,
    },
}

/// A task manager's view of who leads: the newest term heard. Flink's task executor likewise
/// connects to one job-master leader at a time and rejects a stale leader's fencing token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaderFence {
    current: Option<LeaderTerm>,
}

impl LeaderFence {
    /// A message from the leader of `term` arrived.
    pub fn observe(&mut self, term: LeaderTerm) -> FenceDecision {
        match self.current {
            Some(current) if term < current => FenceDecision::Fenced { current },
            Some(current) if term == current => FenceDecision::Accept,
            previous => {
                self.current = Some(term);
                FenceDecision::NewLeader { previous }
            }
        }
    }

    /// The term followed, if a leader was heard.
    pub fn current(&self) -> Option<LeaderTerm> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_term_numbers_from_one_and_later_terms_from_their_own_block() {
        let first = LeaderTerm::FIRST;
        assert_eq!(first.first_attempt(), AttemptNumber(1));
        assert_eq!(first.last_attempt(), AttemptNumber(1000));
        assert_eq!(first.first_checkpoint_id(), CheckpointId(1));
        let third = LeaderTerm(3);
        assert_eq!(third.first_attempt(), AttemptNumber(2001));
        assert_eq!(third.first_checkpoint_id(), CheckpointId(2_000_001));
        assert_eq!(LeaderTerm(2).last_checkpoint_id(), CheckpointId(2_000_000));
        for term in [LeaderTerm(1), LeaderTerm(2), LeaderTerm(7)] {
            assert_eq!(LeaderTerm::of_attempt(term.first_attempt()), term);
            assert_eq!(LeaderTerm::of_attempt(term.last_attempt()), term);
            assert!(term.last_attempt() < LeaderTerm(term.0 + 1).first_attempt());
        }
    }

    #[test]
    fn a_fence_follows_the_newest_leader_and_refuses_older_ones() {
        let mut fence = LeaderFence::default();
        assert_eq!(
            fence.observe(LeaderTerm(1)),
            FenceDecision::NewLeader { previous: None }
        );
        assert_eq!(fence.observe(LeaderTerm(1)), FenceDecision::Accept);
        assert_eq!(
            fence.observe(LeaderTerm(3)),
            FenceDecision::NewLeader {
                previous: Some(LeaderTerm(1))
            }
        );
        assert_eq!(
            fence.observe(LeaderTerm(2)),
            FenceDecision::Fenced {
                current: LeaderTerm(3)
            }
        );
        assert_eq!(fence.current(), Some(LeaderTerm(3)));
    }
}
