//! One subtask's side of checkpointing (Flink's `SubtaskCheckpointCoordinator`), sans-IO.
//!
//! After the synchronous part of a snapshot (operator state captured, barrier broadcast), a
//! snapshot is *pending* until its channel state is complete:
//! - the input side: for an unaligned barrier at a task with inputs, the buffers received
//!   before each channel's barrier, handed over by the gate when the last barrier arrived;
//! - the output side: an unaligned barrier overtook the output queues at once (what it
//!   overtook is output state); an aligned-with-timeout barrier waits in the output queues
//!   and, if its deadline passes while it still waits in some queue, turns unaligned there
//!   and overtakes what is ahead of it; if it left every queue in time, nothing was overtaken.
//!
//! A complete snapshot is handed out for upload; the upload's result becomes an ack or a
//! decline. A trigger reaching a task that ended its input is declined; a source at the end
//! of its input waits here for the final checkpoint (FLIP-147).

use crate::checkpoint::barrier::{Barrier, SnapshotType};
use crate::checkpoint::coordinator::{DeclineReason, TaskAck};
use crate::checkpoint::storage::{StateHandle, StorageError};
use crate::ids::CheckpointId;
use crate::state::channel_state::{ChannelStateSnapshot, OutputChannelState, RecordBuffer};
use crate::state::snapshot::{OperatorSnapshot, TaskStateSnapshot};
use crate::time::{Duration, Instant};
use std::collections::BTreeMap;

/// The output queues, as the core needs them: the record writer's, or a model's.
pub trait OutputQueues {
    /// Checkpoint `checkpoint_id`'s barrier turns unaligned where it still waits behind
    /// buffers and overtakes them; returns, per channel, what it overtook.
    fn overtake_barrier(&mut self, checkpoint_id: CheckpointId) -> OutputChannelState;
    /// Whether checkpoint `checkpoint_id`'s barrier still waits in some output queue.
    fn barrier_queued(&self, checkpoint_id: CheckpointId) -> bool;
}

/// What the synchronous part of a snapshot produced.
#[derive(Debug)]
pub struct SyncSnapshot {
    /// The barrier, as the task forwarded it.
    pub barrier: Barrier,
    /// How long the task aligned before it (zero at a source).
    pub alignment_duration: Duration,
    /// Operator state by uid.
    pub operators: BTreeMap<String, OperatorSnapshot>,
    /// What an unaligned barrier overtook in the output queues (empty otherwise).
    pub output: OutputChannelState,
}

/// A snapshot ready to be written to checkpoint storage.
#[derive(Debug)]
pub struct Upload {
    /// The checkpoint.
    pub checkpoint_id: CheckpointId,
    /// Checkpoint or savepoint: where and how it is written.
    pub snapshot_type: SnapshotType,
    /// What to write.
    pub snapshot: TaskStateSnapshot,
}

/// What the task answers the coordinator once an upload ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The task's part is durable.
    Acknowledge(TaskAck),
    /// The task could not take its part.
    Decline(DeclineReason),
}

/// Where a durable snapshot is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Where the snapshot is.
    pub state: StateHandle,
    /// Its size.
    pub state_size_bytes: u64,
}

#[derive(Debug)]
enum InputState {
    NotNeeded,
    Collecting,
    Complete(Vec<Vec<RecordBuffer>>),
}

#[derive(Debug)]
struct PendingSnapshot {
    snapshot_type: SnapshotType,
    operators: BTreeMap<String, OperatorSnapshot>,
    alignment_duration: Duration,
    unaligned: bool,
    input: InputState,
    output: OutputChannelState,
    // While an aligned-with-timeout barrier may still wait in an output queue: when it turns
    // unaligned there.
    output_deadline: Option<Instant>,
}

impl PendingSnapshot {
    fn is_complete(&self) -> bool {
        self.output_deadline.is_none() && !matches!(self.input, InputState::Collecting)
    }
}

#[derive(Clone, Debug)]
struct UploadMeta {
    alignment_duration: Duration,
    unaligned: bool,
    in_flight_bytes: u64,
    operators: Vec<String>,
}

/// One subtask's pending and uploading snapshots.
#[derive(Debug)]
pub struct SubtaskCheckpointCoordinator {
    subtask_index: u32,
    has_inputs: bool,
    pending: BTreeMap<CheckpointId, PendingSnapshot>,
    uploading: BTreeMap<CheckpointId, UploadMeta>,
    input_ended: bool,
    awaiting_final_checkpoint: bool,
    chain: Vec<String>,
}

impl SubtaskCheckpointCoordinator {
    /// The coordinator of subtask `subtask_index`; `has_inputs` is false at a source.
    pub fn new(subtask_index: u32, has_inputs: bool) -> Self {
        SubtaskCheckpointCoordinator {
            subtask_index,
            has_inputs,
            pending: BTreeMap::new(),
            uploading: BTreeMap::new(),
            input_ended: false,
            awaiting_final_checkpoint: false,
            chain: Vec::new(),
        }
    }

    /// The uids of the task's operators, which every ack names (a restore maps state to
    /// operators by them, and keeps in-flight data only for an unchanged chain).
    pub fn with_chain(mut self, chain: Vec<String>) -> Self {
        self.chain = chain;
        self
    }

    /// A source is triggered: `Err` when it must decline (its input ended, so it forwards no
    /// barrier: Flink's `NOT_ALL_REQUIRED_TASKS_RUNNING`).
    pub fn on_source_trigger(&self) -> Result<(), DeclineReason> {
        assert!(!self.has_inputs, "only sources are triggered");
        if self.input_ended {
            return Err(DeclineReason::TaskNotRunning);
        }
        Ok(())
    }

    /// The synchronous part of a snapshot is done and its barrier forwarded.
    pub fn on_snapshot_taken(&mut self, sync: SyncSnapshot) {
        let SyncSnapshot {
            barrier,
            alignment_duration,
            operators,
            output,
        } = sync;
        assert!(
            !self.input_ended,
            "no barrier is forwarded after end of input"
        );
        assert!(
            barrier.is_unaligned() || output.iter().all(Vec::is_empty),
            "only an unaligned barrier overtakes output at once"
        );
        let input = if barrier.is_unaligned() && self.has_inputs {
            InputState::Collecting
        } else {
            InputState::NotNeeded
        };
        assert!(
            !barrier.snapshot.is_savepoint() || !barrier.is_unaligned(),
            "a savepoint is always aligned"
        );
        let pending = PendingSnapshot {
            snapshot_type: barrier.snapshot,
            operators,
            alignment_duration,
            unaligned: barrier.is_unaligned(),
            input,
            output,
            output_deadline: barrier.alignment_deadline(),
        };
        let previous = self.pending.insert(barrier.checkpoint_id, pending);
        assert!(previous.is_none(), "a checkpoint triggers once per task");
    }

    /// The gate handed over the input channel state of an unaligned checkpoint.
    pub fn on_input_state_complete(
        &mut self,
        checkpoint_id: CheckpointId,
        input: Vec<Vec<RecordBuffer>>,
    ) {
        let pending = self
            .pending
            .get_mut(&checkpoint_id)
            .expect("an unaligned trigger came first");
        assert!(matches!(pending.input, InputState::Collecting));
        pending.input = InputState::Complete(input);
    }

    /// The checkpoint was aborted: its pending snapshot is dropped (an upload under way still
    /// reports; the coordinator ignores it).
    pub fn on_abort(&mut self, checkpoint_id: CheckpointId) {
        self.pending.remove(&checkpoint_id);
    }

    /// The earliest output-side alignment deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .values()
            .filter_map(|p| p.output_deadline)
            .min()
    }

    /// Time passed: barriers past their deadline that still wait in an output queue overtake
    /// what is ahead of them, which becomes output channel state.
    pub fn on_timer(&mut self, now: Instant, outputs: &mut dyn OutputQueues) {
        for (checkpoint_id, pending) in &mut self.pending {
            if pending.output_deadline.is_some_and(|due| now >= due) {
                let overtaken = outputs.overtake_barrier(*checkpoint_id);
                assert_eq!(
                    overtaken.len(),
                    pending.output.len(),
                    "one state per channel"
                );
                for (channel, buffers) in pending.output.iter_mut().zip(overtaken) {
                    channel.extend(buffers);
                }
                pending.unaligned |= pending.output.iter().any(|c| !c.is_empty());
                pending.output_deadline = None;
            }
        }
    }

    /// The next snapshot whose channel state is complete, to upload. An aligned barrier that
    /// left every output queue before its deadline overtook nothing.
    pub fn poll_upload(&mut self, outputs: &dyn OutputQueues) -> Option<Upload> {
        for (checkpoint_id, pending) in &mut self.pending {
            if pending.output_deadline.is_some() && !outputs.barrier_queued(*checkpoint_id) {
                pending.output_deadline = None;
            }
        }
        let checkpoint_id = *self
            .pending
            .iter()
            .find(|(_, pending)| pending.is_complete())?
            .0;
        let pending = self.pending.remove(&checkpoint_id).expect("found");
        let input = match pending.input {
            InputState::Complete(state) => state,
            InputState::NotNeeded => Vec::new(),
            InputState::Collecting => unreachable!("only complete snapshots upload"),
        };
        let channel_state = ChannelStateSnapshot {
            subtask_index: self.subtask_index,
            input,
            output: pending.output,
        };
        let meta = UploadMeta {
            alignment_duration: pending.alignment_duration,
            unaligned: pending.unaligned,
            in_flight_bytes: channel_state.bytes(),
            operators: pending.operators.keys().cloned().collect(),
        };
        let previous = self.uploading.insert(checkpoint_id, meta);
        assert!(previous.is_none(), "a snapshot uploads once");
        Some(Upload {
            checkpoint_id,
            snapshot_type: pending.snapshot_type,
            snapshot: TaskStateSnapshot {
                checkpoint_id: checkpoint_id.0,
                operators: pending.operators,
                channel_state: pending.unaligned.then_some(channel_state),
            },
        })
    }

    /// An upload ended: what to report to the coordinator.
    pub fn on_upload_done(
        &mut self,
        checkpoint_id: CheckpointId,
        result: Result<Uploaded, StorageError>,
    ) -> Report {
        let meta = self
            .uploading
            .remove(&checkpoint_id)
            .expect("an upload ends once, after it started");
        match result {
            Ok(Uploaded {
                state,
                state_size_bytes,
            }) => Report::Acknowledge(TaskAck {
                state,
                state_size_bytes,
                alignment_duration: meta.alignment_duration,
                unaligned: meta.unaligned,
                in_flight_bytes: meta.in_flight_bytes,
                operators: meta.operators,
                chain: self.chain.clone(),
            }),
            Err(error) => Report::Decline(DeclineReason::SnapshotFailed(error.to_string())),
        }
    }

    /// The task ended its input: no barrier follows.
    pub fn on_end_of_input(&mut self) {
        assert!(!self.input_ended, "input ends once");
        self.input_ended = true;
        self.awaiting_final_checkpoint = false;
    }

    /// A source read all its input and the sink commits on checkpoints: it keeps answering
    /// triggers until the final checkpoint completed.
    pub fn await_final_checkpoint(&mut self) {
        assert!(!self.has_inputs && !self.input_ended);
        self.awaiting_final_checkpoint = true;
    }

    /// Whether a source waits for the final checkpoint (it reads nothing meanwhile).
    pub fn is_awaiting_final_checkpoint(&self) -> bool {
        self.awaiting_final_checkpoint
    }

    /// Whether any snapshot is pending or uploading.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.uploading.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::barrier::BarrierKind;
    use std::collections::BTreeSet;

    const CHANNELS: usize = 2;

    /// Output queues as a model: which barriers still wait, and what is ahead of them.
    #[derive(Default)]
    struct Queues {
        queued: BTreeSet<CheckpointId>,
        ahead: BTreeMap<CheckpointId, OutputChannelState>,
        overtaken: Vec<CheckpointId>,
    }

    impl OutputQueues for Queues {
        fn overtake_barrier(&mut self, checkpoint_id: CheckpointId) -> OutputChannelState {
            assert!(
                self.queued.remove(&checkpoint_id),
                "only a queued barrier overtakes"
            );
            self.overtaken.push(checkpoint_id);
            self.ahead
                .remove(&checkpoint_id)
                .unwrap_or_else(|| vec![Vec::new(); CHANNELS])
        }

        fn barrier_queued(&self, checkpoint_id: CheckpointId) -> bool {
            self.queued.contains(&checkpoint_id)
        }
    }

    fn buffer(records: u32) -> RecordBuffer {
        RecordBuffer {
            record_count: records,
            bytes: vec![7; records as usize * 10],
        }
    }

    fn barrier(id: u64, kind: BarrierKind) -> Barrier {
        Barrier {
            snapshot: crate::checkpoint::barrier::SnapshotType::Checkpoint,
            checkpoint_id: CheckpointId(id),
            timestamp: Instant::from_ms(100),
            kind,
        }
    }

    fn taken(barrier: Barrier, output: OutputChannelState) -> SyncSnapshot {
        SyncSnapshot {
            barrier,
            alignment_duration: Duration::from_ms(3),
            operators: BTreeMap::new(),
            output,
        }
    }

    fn no_output() -> OutputChannelState {
        vec![Vec::new(); CHANNELS]
    }

    fn uploaded() -> Result<Uploaded, StorageError> {
        Ok(Uploaded {
            state: StateHandle::File("chk-1/v1-0".into()),
            state_size_bytes: 64,
        })
    }

    fn ack(report: Report) -> TaskAck {
        match report {
            Report::Acknowledge(ack) => ack,
            Report::Decline(reason) => panic!("declined: {reason:?}"),
        }
    }

    #[test]
    fn an_aligned_snapshot_uploads_at_once_without_channel_state() {
        let mut core = SubtaskCheckpointCoordinator::new(1, true);
        let queues = Queues::default();
        core.on_snapshot_taken(taken(barrier(1, BarrierKind::Aligned), no_output()));
        let upload = core.poll_upload(&queues).expect("complete");
        assert_eq!(upload.snapshot.channel_state, None);
        assert!(core.poll_upload(&queues).is_none());
        let ack = ack(core.on_upload_done(CheckpointId(1), uploaded()));
        assert!(!ack.unaligned);
        assert_eq!(ack.alignment_duration, Duration::from_ms(3));
        assert_eq!(ack.state_size_bytes, 64);
        assert!(core.is_idle());
    }

    #[test]
    fn an_unaligned_snapshot_waits_for_its_input_state_and_persists_both_sides() {
        let mut core = SubtaskCheckpointCoordinator::new(1, true);
        let queues = Queues::default();
        let output = vec![vec![buffer(2)], Vec::new()];
        core.on_snapshot_taken(taken(barrier(1, BarrierKind::Unaligned), output));
        assert!(
            core.poll_upload(&queues).is_none(),
            "input state still collecting"
        );
        core.on_input_state_complete(CheckpointId(1), vec![Vec::new(), vec![buffer(3)]]);
        let upload = core.poll_upload(&queues).expect("complete");
        let state = upload.snapshot.channel_state.expect("unaligned");
        assert_eq!(state.subtask_index, 1);
        assert_eq!(state.records(), 5);
        let ack = ack(core.on_upload_done(CheckpointId(1), uploaded()));
        assert!(ack.unaligned);
        assert_eq!(ack.in_flight_bytes, 50);
    }

    #[test]
    fn an_unaligned_snapshot_at_a_source_has_only_output_state() {
        let mut core = SubtaskCheckpointCoordinator::new(0, false);
        let queues = Queues::default();
        let output = vec![vec![buffer(1)], vec![buffer(1)]];
        core.on_snapshot_taken(taken(barrier(1, BarrierKind::Unaligned), output));
        let upload = core
            .poll_upload(&queues)
            .expect("no input side at a source");
        let state = upload.snapshot.channel_state.expect("unaligned");
        assert!(state.input.is_empty());
        assert_eq!(state.records(), 2);
    }

    #[test]
    fn a_timed_out_barrier_still_queued_overtakes_what_is_ahead_of_it() {
        let mut core = SubtaskCheckpointCoordinator::new(0, false);
        let kind = BarrierKind::AlignedTimeoutable {
            timeout: Duration::from_ms(50),
        };
        let mut queues = Queues::default();
        queues.queued.insert(CheckpointId(1));
        queues
            .ahead
            .insert(CheckpointId(1), vec![vec![buffer(4)], Vec::new()]);
        core.on_snapshot_taken(taken(barrier(1, kind), no_output()));
        assert_eq!(core.poll_timeout(), Some(Instant::from_ms(150)));
        assert!(
            core.poll_upload(&queues).is_none(),
            "the barrier still waits"
        );
        core.on_timer(Instant::from_ms(149), &mut queues);
        assert!(queues.overtaken.is_empty(), "not due yet");
        core.on_timer(Instant::from_ms(150), &mut queues);
        assert_eq!(queues.overtaken, vec![CheckpointId(1)]);
        assert_eq!(core.poll_timeout(), None);
        let upload = core.poll_upload(&queues).expect("overtaken: complete");
        let state = upload.snapshot.channel_state.expect("it turned unaligned");
        assert_eq!(state.output[0], vec![buffer(4)]);
        assert!(ack(core.on_upload_done(CheckpointId(1), uploaded())).unaligned);
    }

    #[test]
    fn a_timeoutable_barrier_that_left_every_queue_in_time_stays_aligned() {
        let mut core = SubtaskCheckpointCoordinator::new(0, false);
        let kind = BarrierKind::AlignedTimeoutable {
            timeout: Duration::from_ms(50),
        };
        let mut queues = Queues::default();
        core.on_snapshot_taken(taken(barrier(1, kind), no_output()));
        let upload = core
            .poll_upload(&queues)
            .expect("the barrier left the queues");
        assert_eq!(upload.snapshot.channel_state, None);
        core.on_timer(Instant::from_ms(500), &mut queues);
        assert!(queues.overtaken.is_empty(), "nothing left to overtake");
        assert!(!ack(core.on_upload_done(CheckpointId(1), uploaded())).unaligned);
    }

    #[test]
    fn a_timed_out_barrier_with_nothing_ahead_stays_aligned() {
        let mut core = SubtaskCheckpointCoordinator::new(0, false);
        let kind = BarrierKind::AlignedTimeoutable {
            timeout: Duration::from_ms(50),
        };
        let mut queues = Queues::default();
        queues.queued.insert(CheckpointId(1));
        core.on_snapshot_taken(taken(barrier(1, kind), no_output()));
        core.on_timer(Instant::from_ms(150), &mut queues);
        let upload = core.poll_upload(&queues).expect("complete");
        assert_eq!(upload.snapshot.channel_state, None);
    }

    #[test]
    fn snapshots_upload_in_checkpoint_order_and_an_abort_drops_only_the_pending_one() {
        let mut core = SubtaskCheckpointCoordinator::new(1, true);
        let queues = Queues::default();
        core.on_snapshot_taken(taken(barrier(1, BarrierKind::Aligned), no_output()));
        core.on_snapshot_taken(taken(barrier(2, BarrierKind::Aligned), no_output()));
        core.on_snapshot_taken(taken(barrier(3, BarrierKind::Unaligned), no_output()));
        let first = core.poll_upload(&queues).expect("1");
        assert_eq!(first.checkpoint_id, CheckpointId(1));
        core.on_abort(CheckpointId(1)); // Already uploading: its report still comes.
        core.on_abort(CheckpointId(3));
        let second = core.poll_upload(&queues).expect("2");
        assert_eq!(second.checkpoint_id, CheckpointId(2));
        assert!(core.poll_upload(&queues).is_none(), "3 was aborted");
        ack(core.on_upload_done(CheckpointId(1), uploaded()));
        let disk_full = StorageError::WriteRefused {
            path: "chk-2/v1-1".into(),
            response: "disk full".into(),
        };
        let failed = core.on_upload_done(CheckpointId(2), Err(disk_full));
        assert_eq!(
            failed,
            Report::Decline(DeclineReason::SnapshotFailed(
                "chk-2/v1-1: blobstore refused the write: disk full".into()
            ))
        );
        assert!(core.is_idle());
    }

    #[test]
    fn a_source_declines_after_its_input_ended_and_waits_for_the_final_checkpoint_before() {
        let mut core = SubtaskCheckpointCoordinator::new(0, false);
        assert_eq!(core.on_source_trigger(), Ok(()));
        core.await_final_checkpoint();
        assert!(core.is_awaiting_final_checkpoint());
        assert_eq!(
            core.on_source_trigger(),
            Ok(()),
            "it answers triggers while waiting"
        );
        core.on_end_of_input();
        assert!(!core.is_awaiting_final_checkpoint());
        assert_eq!(core.on_source_trigger(), Err(DeclineReason::TaskNotRunning));
    }
}
