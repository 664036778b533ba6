//! The high-availability service node: a stand-in for the ZooKeeper (or Kubernetes ConfigMap)
//! ensemble Flink's high-availability services use. It elects the job-manager leader, keeps the
//! submitted job (the job graph store), and keeps pointers to the job's retained completed
//! checkpoints (the completed checkpoint store) whose `_metadata` and state files live in
//! checkpoint storage. Every write carries the writer's leadership term and a deposed leader's
//! write is refused, as ZooKeeper refuses a write under a lost leader latch.
//!
//! Its contents are durable: they outlive the node's restarts, as an ensemble's quorum does.

use crate::ids::CheckpointId;
use crate::runtime::leadership::LeaderTerm;
use crate::runtime::rpc::{serve, Rpc, RpcError};
use crate::time::Duration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A retained completed checkpoint, as the completed checkpoint store points to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPointer {
    /// The checkpoint.
    pub checkpoint_id: CheckpointId,
    /// Its `_metadata` file in checkpoint storage.
    pub metadata_path: String,
}

/// The job as the high-availability service keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's name.
    pub job: String,
    /// Retained completed checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointPointer>,
    /// The terminal status the job reached, if it did: such a job is never recovered.
    pub terminated: Option<String>,
}

/// Requests to the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaRequest {
    /// Become the leader: grants the next term and returns the job to recover, if any.
    Elect,
    /// The leader of `term` submitted `job`.
    SubmitJob {
        /// The writer's term.
        term: LeaderTerm,
        /// The job's name.
        job: String,
    },
    /// The leader of `term` completed a checkpoint; keep only the newest `retain`.
    AddCheckpoint {
        /// The writer's term.
        term: LeaderTerm,
        /// The checkpoint.
        pointer: CheckpointPointer,
        /// `state.checkpoints.num-retained`.
        retain: u32,
    },
    /// The job reached a terminal status under the leader of `term`.
    JobTerminated {
        /// The writer's term.
        term: LeaderTerm,
        /// The status.
        status: String,
    },
}

/// Service replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HaResponse {
    /// Leadership granted.
    Leader {
        /// The new term.
        term: LeaderTerm,
        /// The job it must recover, if one was submitted.
        job: Option<JobRecord>,
    },
    /// Written.
    Stored,
    /// The writer was deposed: nothing was written.
    Fenced {
        /// The writer's term.
        term: LeaderTerm,
        /// The current leader's term.
        current: LeaderTerm,
    },
    /// The request could not be served.
    Error(String),
}

/// The service's durable contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HaState {
    term: Option<LeaderTerm>,
    job: Option<JobRecord>,
}

impl HaState {
    /// Answers one request.
    pub fn handle(&mut self, request: HaRequest) -> HaResponse {
        match request {
            HaRequest::Elect => {
                let term = self.term.map_or(LeaderTerm::FIRST, |t| LeaderTerm(t.0 + 1));
                self.term = Some(term);
                HaResponse::Leader {
                    term,
                    job: self.job.clone(),
                }
            }
            HaRequest::SubmitJob { term, job } => self.write(term, |state| {
                state.job.get_or_insert(JobRecord {
                    job,
                    checkpoints: Vec::new(),
                    terminated: None,
                });
                Ok(())
            }),
            HaRequest::AddCheckpoint {
                term,
                pointer,
                retain,
            } => self.write(term, |state| {
                let job = state.job.as_mut().ok_or("no job submitted")?;
                let checkpoints = &mut job.checkpoints;
                if !checkpoints.contains(&pointer) {
                    checkpoints.push(pointer);
                    checkpoints.sort_by_key(|p| p.checkpoint_id);
                }
                let excess = checkpoints.len().saturating_sub(retain.max(1) as usize);
                checkpoints.drain(..excess);
                Ok(())
            }),
            HaRequest::JobTerminated { term, status } => self.write(term, |state| {
                let job = state.job.as_mut().ok_or("no job submitted")?;
                job.terminated.get_or_insert(status);
                Ok(())
            }),
        }
    }

    fn write(
        &mut self,
        term: LeaderTerm,
        apply: impl FnOnce(&mut HaState) -> Result<(), &'static str>,
    ) -> HaResponse {
        match self.term {
            Some(current) if current == term => match apply(self) {
                Ok(()) => HaResponse::Stored,
                Err(error) => HaResponse::Error(error.to_string()),
            },
            Some(current) => HaResponse::Fenced { term, current },
            None => HaResponse::Error(format!("{term} was never granted")),
        }
    }

    /// The job as kept, for the report.
    pub fn job(&self) -> Option<&JobRecord> {
        self.job.as_ref()
    }
}

/// The service's contents, shared by every incarnation of the node within a run.
#[derive(Clone, Default)]
pub struct HaStorage {
    state: Arc<Mutex<HaState>>,
}

impl HaStorage {
    /// Answers one request.
    pub fn handle(&self, request: HaRequest) -> HaResponse {
        self.state
            .lock()
            .expect("no task panics while holding the service lock")
            .handle(request)
    }

    /// A copy of the contents.
    pub fn snapshot(&self) -> HaState {
        self.state
            .lock()
            .expect("no task panics while holding the service lock")
            .clone()
    }
}

/// The service's main: serves requests until the node is killed.
pub async fn run_ha_service(storage: HaStorage) {
    serve(|request| storage.handle(request), HaResponse::Error).await;
}

/// Why the service did not do what a job manager asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HaError {
    /// No usable answer.
    #[error("high-availability service: {0}")]
    Rpc(#[from] RpcError),
    /// The asker was deposed.
    #[error("high-availability service refused {term}: the leader is at {current}")]
    Fenced {
        /// The asker's term.
        term: LeaderTerm,
        /// The current term.
        current: LeaderTerm,
    },
    /// Any other refusal.
    #[error("high-availability service refused: {0}")]
    Refused(String),
}

/// A job manager's client of the service.
#[derive(Clone)]
pub struct HaClient {
    rpc: Rpc,
    address: SocketAddr,
    timeout: Duration,
}

impl HaClient {
    /// Talks to the service at `address`.
    pub fn new(rpc: Rpc, address: SocketAddr, timeout: Duration) -> HaClient {
        HaClient {
            rpc,
            address,
            timeout,
        }
    }

    /// Asks for leadership. A retried election whose first answer was lost grants a term
    /// nobody uses: terms only need to grow.
    pub async fn elect(&self) -> Result<(LeaderTerm, Option<JobRecord>), HaError> {
        match self.call(&HaRequest::Elect).await? {
            HaResponse::Leader { term, job } => Ok((term, job)),
            other => Err(refusal(other)),
        }
    }

    /// Writes as the leader of a term (every write is idempotent).
    pub async fn write(&self, request: &HaRequest) -> Result<(), HaError> {
        match self.call(request).await? {
            HaResponse::Stored => Ok(()),
            other => Err(refusal(other)),
        }
    }

    async fn call(&self, request: &HaRequest) -> Result<HaResponse, HaError> {
        Ok(self
            .rpc
            .call(self.address, request, self.timeout, true)
            .await?)
    }
}

fn refusal(response: HaResponse) -> HaError {
    match response {
        HaResponse::Fenced { term, current } => HaError::Fenced { term, current },
        HaResponse::Error(error) => HaError::Refused(error),
        other => HaError::Refused(format!("unexpected answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(id: u64) -> CheckpointPointer {
        CheckpointPointer {
            checkpoint_id: CheckpointId(id),
            metadata_path: format!("chk-{id}/_metadata"),
        }
    }

    fn elect(state: &mut HaState) -> (LeaderTerm, Option<JobRecord>) {
        match state.handle(HaRequest::Elect) {
            HaResponse::Leader { term, job } => (term, job),
            other => panic!("not elected: {other:?}"),
        }
    }

    #[test]
    fn each_election_grants_a_newer_term_and_hands_over_the_job_with_its_checkpoints() {
        let mut state = HaState::default();
        let (first, job) = elect(&mut state);
        assert_eq!((first, job), (LeaderTerm(1), None));
        let submit = HaRequest::SubmitJob {
            term: first,
            job: "wordcount".into(),
        };
        assert_eq!(state.handle(submit), HaResponse::Stored);
        for id in 1..=5 {
            let add = HaRequest::AddCheckpoint {
                term: first,
                pointer: pointer(id),
                retain: 3,
            };
            assert_eq!(state.handle(add.clone()), HaResponse::Stored);
            assert_eq!(state.handle(add), HaResponse::Stored, "idempotent");
        }
        let (second, job) = elect(&mut state);
        assert_eq!(second, LeaderTerm(2));
        let job = job.expect("the job was submitted");
        assert_eq!(job.checkpoints, vec![pointer(3), pointer(4), pointer(5)]);
        assert_eq!(job.terminated, None);
    }

    #[test]
    fn a_deposed_leader_writes_nothing() {
        let mut state = HaState::default();
        let (first, _) = elect(&mut state);
        let submit = HaRequest::SubmitJob {
            term: first,
            job: "wordcount".into(),
        };
        assert_eq!(state.handle(submit), HaResponse::Stored);
        let (second, _) = elect(&mut state);
        let stale = HaRequest::AddCheckpoint {
            term: first,
            pointer: pointer(9),
            retain: 1,
        };
        assert_eq!(
            state.handle(stale),
            HaResponse::Fenced {
                term: first,
                current: second
            }
        );
        let stale_end = HaRequest::JobTerminated {
            term: first,
            status: "FAILED".into(),
        };
        assert!(matches!(state.handle(stale_end), HaResponse::Fenced { .. }));
        let job = state.job().expect("submitted");
        assert!(job.checkpoints.is_empty() && job.terminated.is_none());
        let never = HaRequest::SubmitJob {
            term: LeaderTerm(7),
            job: "x".into(),
        };
        assert!(matches!(state.handle(never), HaResponse::Fenced { .. }));
    }

    #[test]
    fn a_terminated_job_keeps_its_first_terminal_status() {
        let mut state = HaState::default();
        let (term, _) = elect(&mut state);
        let no_job = HaRequest::JobTerminated {
            term,
            status: "FINISHED".into(),
        };
        assert!(matches!(state.handle(no_job.clone()), HaResponse::Error(_)));
        let submit = HaRequest::SubmitJob {
            term,
            job: "wordcount".into(),
        };
        state.handle(submit);
        assert_eq!(state.handle(no_job), HaResponse::Stored);
        let again = HaRequest::JobTerminated {
            term,
            status: "FAILED".into(),
        };
        assert_eq!(state.handle(again), HaResponse::Stored);
        assert_eq!(
            state.job().and_then(|j| j.terminated.clone()),
            Some("FINISHED".into())
        );
    }
}
