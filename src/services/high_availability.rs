//! The high-availability service node: a stand-in for the ZooKeeper (or Kubernetes ConfigMap)
//! ensemble Flink's high-availability services use. It elects the job-manager leader, keeps the
//! submitted job (the job graph store), and keeps pointers to the job's retained completed
//! checkpoints (the completed checkpoint store) whose `_metadata` and state files live in
//! checkpoint storage. Every write carries the writer's leadership term and a deposed leader's
//! write is refused, as ZooKeeper refuses a write under a lost leader latch.
//!
//! Leadership is a lease (Kubernetes' leader-election lease, ZooKeeper's session): the leader
//! renews it; a contender is elected only once it lapsed, or at once when it is the holder
//! itself come back (a restarted process of the same job manager, as a Kubernetes lease
//! holder identity). A standby job manager therefore takes over from a leader that died or
//! stands still past the lease, and the old leader, should it resume, is refused.
//!
//! Its contents are durable: they outlive the node's restarts, as an ensemble's quorum does.

use crate::ids::CheckpointId;
use crate::runtime::leadership::LeaderTerm;
use crate::runtime::rpc::{serve, Rpc, RpcError};
use crate::time::{Duration, Instant};
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
    /// Become the leader: grants the next term and returns the job to recover, if any, unless
    /// another contender holds a live lease.
    Elect {
        /// Who asks (the job manager's name): the lease holder's identity.
        contender: String,
    },
    /// The leader of `term` renews its lease.
    Renew {
        /// The writer's term.
        term: LeaderTerm,
    },
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
    /// Another contender leads, its lease live: ask again later.
    LeaderAlive {
        /// The leader's term.
        term: LeaderTerm,
        /// The leader.
        contender: String,
    },
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

/// The leader's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lease {
    holder: String,
    renewed_at: Instant,
}

/// The service's durable contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaState {
    lease_duration: Duration,
    term: Option<LeaderTerm>,
    lease: Option<Lease>,
    job: Option<JobRecord>,
}

impl HaState {
    /// An empty service whose leader holds its lease for `lease_duration` after each renewal.
    pub fn new(lease_duration: Duration) -> HaState {
        assert!(lease_duration > Duration::ZERO);
        HaState {
            lease_duration,
            term: None,
            lease: None,
            job: None,
        }
    }

    /// Answers one request arriving at `now`.
    pub fn handle(&mut self, now: Instant, request: HaRequest) -> HaResponse {
        match request {
            HaRequest::Elect { contender } => self.elect(now, contender),
            HaRequest::Renew { term } => self.write(now, term, |_| Ok(())),
            HaRequest::SubmitJob { term, job } => self.write(now, term, |state| {
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
            } => self.write(now, term, |state| {
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
            HaRequest::JobTerminated { term, status } => self.write(now, term, |state| {
                let job = state.job.as_mut().ok_or("no job submitted")?;
                job.terminated.get_or_insert(status);
                Ok(())
            }),
        }
    }

    /// Grants the next term unless another contender's lease is live.
    fn elect(&mut self, now: Instant, contender: String) -> HaResponse {
        if let (Some(term), Some(lease)) = (self.term, &self.lease) {
            let live = now.since(lease.renewed_at) <= self.lease_duration;
            if live && lease.holder != contender {
                return HaResponse::LeaderAlive {
                    term,
                    contender: lease.holder.clone(),
                };
            }
        }
        let term = self.term.map_or(LeaderTerm::FIRST, |t| LeaderTerm(t.0 + 1));
        self.term = Some(term);
        self.lease = Some(Lease {
            holder: contender,
            renewed_at: now,
        });
        HaResponse::Leader {
            term,
            job: self.job.clone(),
        }
    }

    /// A write of the leader of `term`, which also renews its lease (as any traffic keeps a
    /// ZooKeeper session alive); a deposed leader's is refused.
    fn write(
        &mut self,
        now: Instant,
        term: LeaderTerm,
        apply: impl FnOnce(&mut HaState) -> Result<(), &'static str>,
    ) -> HaResponse {
        match self.term {
            Some(current) if current == term => {
                if let Some(lease) = self.lease.as_mut() {
                    lease.renewed_at = now;
                }
                match apply(self) {
                    Ok(()) => HaResponse::Stored,
                    Err(error) => HaResponse::Error(error.to_string()),
                }
            }
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
#[derive(Clone)]
pub struct HaStorage {
    state: Arc<Mutex<HaState>>,
}

impl HaStorage {
    /// An empty service with leases of `lease_duration`.
    pub fn new(lease_duration: Duration) -> HaStorage {
        HaStorage {
            state: Arc::new(Mutex::new(HaState::new(lease_duration))),
        }
    }

    /// Answers one request arriving at `now`.
    pub fn handle(&self, now: Instant, request: HaRequest) -> HaResponse {
        self.state
            .lock()
            .expect("no task panics while holding the service lock")
            .handle(now, request)
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
    serve(
        |request| storage.handle(crate::runtime::sim_time::now(), request),
        HaResponse::Error,
    )
    .await;
}

/// Why the service did not do what a job manager asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HaError {
    /// No usable answer.
    #[error("high-availability service: {0}")]
    Rpc(#[from] RpcError),
    /// Another contender leads with a live lease.
    #[error("high-availability service: {contender} leads at {term}")]
    LeaderAlive {
        /// The leader's term.
        term: LeaderTerm,
        /// The leader.
        contender: String,
    },
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
    pub async fn elect(&self, contender: &str) -> Result<(LeaderTerm, Option<JobRecord>), HaError> {
        let request = HaRequest::Elect {
            contender: contender.to_string(),
        };
        match self.call(&request).await? {
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
        HaResponse::LeaderAlive { term, contender } => HaError::LeaderAlive { term, contender },
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

    const LEASE: Duration = Duration::from_secs(15);

    fn elect(state: &mut HaState) -> (LeaderTerm, Option<JobRecord>) {
        let elect = HaRequest::Elect {
            contender: "jobmanager".into(),
        };
        match state.handle(Instant::ZERO, elect) {
            HaResponse::Leader { term, job } => (term, job),
            other => panic!("not elected: {other:?}"),
        }
    }

    #[test]
    fn each_election_grants_a_newer_term_and_hands_over_the_job_with_its_checkpoints() {
        let mut state = HaState::new(LEASE);
        let (first, job) = elect(&mut state);
        assert_eq!((first, job), (LeaderTerm(1), None));
        let submit = HaRequest::SubmitJob {
            term: first,
            job: "wordcount".into(),
        };
        assert_eq!(state.handle(Instant::ZERO, submit), HaResponse::Stored);
        for id in 1..=5 {
            let add = HaRequest::AddCheckpoint {
                term: first,
                pointer: pointer(id),
                retain: 3,
            };
            assert_eq!(state.handle(Instant::ZERO, add.clone()), HaResponse::Stored);
            assert_eq!(
                state.handle(Instant::ZERO, add),
                HaResponse::Stored,
                "idempotent"
            );
        }
        let (second, job) = elect(&mut state);
        assert_eq!(second, LeaderTerm(2));
        let job = job.expect("the job was submitted");
        assert_eq!(job.checkpoints, vec![pointer(3), pointer(4), pointer(5)]);
        assert_eq!(job.terminated, None);
    }

    #[test]
    fn a_deposed_leader_writes_nothing() {
        let mut state = HaState::new(LEASE);
        let (first, _) = elect(&mut state);
        let submit = HaRequest::SubmitJob {
            term: first,
            job: "wordcount".into(),
        };
        assert_eq!(state.handle(Instant::ZERO, submit), HaResponse::Stored);
        let (second, _) = elect(&mut state);
        let stale = HaRequest::AddCheckpoint {
            term: first,
            pointer: pointer(9),
            retain: 1,
        };
        assert_eq!(
            state.handle(Instant::ZERO, stale),
            HaResponse::Fenced {
                term: first,
                current: second
            }
        );
        let stale_end = HaRequest::JobTerminated {
            term: first,
            status: "FAILED".into(),
        };
        assert!(matches!(
            state.handle(Instant::ZERO, stale_end),
            HaResponse::Fenced { .. }
        ));
        let job = state.job().expect("submitted");
        assert!(job.checkpoints.is_empty() && job.terminated.is_none());
        let never = HaRequest::SubmitJob {
            term: LeaderTerm(7),
            job: "x".into(),
        };
        assert!(matches!(
            state.handle(Instant::ZERO, never),
            HaResponse::Fenced { .. }
        ));
    }

    #[test]
    fn a_terminated_job_keeps_its_first_terminal_status() {
        let mut state = HaState::new(LEASE);
        let (term, _) = elect(&mut state);
        let no_job = HaRequest::JobTerminated {
            term,
            status: "FINISHED".into(),
        };
        assert!(matches!(
            state.handle(Instant::ZERO, no_job.clone()),
            HaResponse::Error(_)
        ));
        let submit = HaRequest::SubmitJob {
            term,
            job: "wordcount".into(),
        };
        state.handle(Instant::ZERO, submit);
        assert_eq!(state.handle(Instant::ZERO, no_job), HaResponse::Stored);
        let again = HaRequest::JobTerminated {
            term,
            status: "FAILED".into(),
        };
        assert_eq!(state.handle(Instant::ZERO, again), HaResponse::Stored);
        assert_eq!(
            state.job().and_then(|j| j.terminated.clone()),
            Some("FINISHED".into())
        );
    }

    #[test]
    fn a_standby_is_elected_only_once_the_leaders_lease_lapsed_and_the_old_leader_is_refused() {
        let mut state = HaState::new(LEASE);
        let (first, _) = elect(&mut state);
        let standby = |state: &mut HaState, at: u64| {
            let elect = HaRequest::Elect {
                contender: "jobmanager-2".into(),
            };
            state.handle(Instant::from_ms(at), elect)
        };
        assert_eq!(
            standby(&mut state, 10_000),
            HaResponse::LeaderAlive {
                term: first,
                contender: "jobmanager".into()
            }
        );
        // A renewal (any write) keeps the lease live past its first expiry.
        let renew = HaRequest::Renew { term: first };
        assert_eq!(
            state.handle(Instant::from_ms(14_000), renew.clone()),
            HaResponse::Stored
        );
        assert!(matches!(
            standby(&mut state, 29_000),
            HaResponse::LeaderAlive { .. }
        ));
        let HaResponse::Leader { term: second, .. } = standby(&mut state, 29_001) else {
            panic!("the lease lapsed at 29s");
        };
        assert_eq!(second, LeaderTerm(2));
        assert_eq!(
            state.handle(Instant::from_ms(29_500), renew),
            HaResponse::Fenced {
                term: first,
                current: second
            }
        );
        // The holder itself come back (a restarted process) is elected at once.
        let again = standby(&mut state, 29_600);
        assert!(
            matches!(
                again,
                HaResponse::Leader {
                    term: LeaderTerm(3),
                    ..
                }
            ),
            "{again:?}"
        );
    }
}
