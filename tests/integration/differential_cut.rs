//! Goal: for the same input and the same barrier positions, an aligned and an unaligned
//! checkpoint describe the same logical cut: the unaligned snapshot's state plus its persisted
//! channel state, replayed, gives the aligned snapshot's state (DESIGN §5, issue 3).
//! Method: proptest builds per-channel streams (buffers with sequence numbers and barriers
//! 1..=k at fixed positions) and two independent random interleavings of arrivals and reads.
//! One `CheckpointedInputGate` runs aligned, one unaligned; the operator's state is the list of
//! buffers it processed per channel (order matters, like list state). At each trigger the
//! state is captured; the unaligned checkpoint's input channel state is appended per channel.
//! End to end, the simulation's consistent-cut check does the same with the job's operators:
//! every unaligned checkpoint, its in-flight records replayed, equals the reference run over
//! its source offsets (tests/property.rs, tests/unaligned_backpressure.rs).

use proptest::prelude::*;
use snapflow::checkpoint::barrier::{Barrier, BarrierKind};
use snapflow::checkpoint::barrier_protocol::Action;
use snapflow::checkpoint::checkpointed_input_gate::{CheckpointedInputGate, InputItem, Polled};
use snapflow::checkpoint::coordinator::CheckpointingMode;
use snapflow::ids::{ChannelIndex, CheckpointId};
use snapflow::time::Instant;
use std::collections::{BTreeMap, VecDeque};

/// Per channel, what the operator processed, in order.
type State = Vec<Vec<u64>>;

/// Carries out a gate's actions against the operator's state.
type OnActions<'a> = dyn FnMut(Vec<Action>, &mut CheckpointedInputGate<u64>, &State) + 'a;

#[derive(Clone, Debug)]
struct Input {
    /// Per channel: buffers between consecutive barriers (k + 1 runs for k checkpoints).
    runs: Vec<Vec<u64>>,
    checkpoints: u64,
}

fn streams(input: &Input, kind: BarrierKind) -> Vec<VecDeque<InputItem<u64>>> {
    input
        .runs
        .iter()
        .map(|runs| {
            let mut items = VecDeque::new();
            let mut sequence = 0;
            for (index, run) in runs.iter().enumerate() {
                for _ in 0..*run {
                    sequence += 1;
                    items.push_back(InputItem::Buffer(sequence));
                }
                if (index as u64) < input.checkpoints {
                    items.push_back(InputItem::Barrier(Barrier {
                        checkpoint_id: CheckpointId(index as u64 + 1),
                        timestamp: Instant::ZERO,
                        kind,
                        snapshot: snapflow::checkpoint::barrier::SnapshotType::Checkpoint,
                    }));
                }
            }
            items.push_back(InputItem::EndOfPartition);
            items
        })
        .collect()
}

/// Runs one gate over the streams with the given interleaving; returns, per checkpoint, the
/// logical state: the snapshot plus, if unaligned, its channel state replayed.
fn run(input: &Input, kind: BarrierKind, schedule: &[(bool, u8)]) -> BTreeMap<u64, State> {
    let channels = input.runs.len();
    let mut pending = streams(input, kind);
    let mut gate = CheckpointedInputGate::new(channels, CheckpointingMode::ExactlyOnce);
    let mut state: State = vec![Vec::new(); channels];
    let mut snapshots: BTreeMap<u64, State> = BTreeMap::new();
    let mut logical: BTreeMap<u64, State> = BTreeMap::new();
    let mut on_actions =
        |actions: Vec<Action>, gate: &mut CheckpointedInputGate<u64>, state: &State| {
            for action in actions {
                match action {
                    Action::Trigger { barrier, .. } => {
                        snapshots.insert(barrier.checkpoint_id.0, state.clone());
                        if !barrier.is_unaligned() {
                            logical.insert(barrier.checkpoint_id.0, state.clone());
                        }
                    }
                    Action::InputStateComplete { checkpoint_id } => {
                        let in_flight = gate.take_input_state(checkpoint_id).expect("announced");
                        let mut cut = snapshots[&checkpoint_id.0].clone();
                        for (channel, buffers) in cut.iter_mut().zip(in_flight) {
                            channel.extend(buffers);
                        }
                        logical.insert(checkpoint_id.0, cut);
                    }
                    Action::Abort { checkpoint_id, .. } => panic!("nothing aborts {checkpoint_id}"),
                    _ => {}
                }
            }
        };
    let read = |gate: &mut CheckpointedInputGate<u64>,
                state: &mut State,
                on_actions: &mut OnActions|
     -> bool {
        match gate.poll_next(Instant::ZERO) {
            None => false,
            Some(Ok(Polled::Buffer(channel, sequence))) => {
                state[channel.0 as usize].push(sequence);
                true
            }
            Some(Ok(Polled::Actions(actions))) => {
                on_actions(actions, gate, state);
                true
            }
            Some(Ok(Polled::EndOfData(_))) => panic!("the model sends no end of data"),
            Some(Err(error)) => panic!("{error}"),
        }
    };
    // Barrier n + 1 leaves no source before checkpoint n completed, which needs barrier n on
    // every channel (one checkpoint at a time, as unaligned requires).
    let mut barriers_arrived = vec![0u64; channels];
    let mut arrive = |channel: usize,
                      pending: &mut Vec<VecDeque<InputItem<u64>>>,
                      gate: &mut CheckpointedInputGate<u64>,
                      state: &State,
                      on_actions: &mut OnActions|
     -> bool {
        let Some(item) = pending[channel].front() else {
            return false;
        };
        if let InputItem::Barrier(barrier) = item {
            let id = barrier.checkpoint_id.0;
            if barriers_arrived.iter().any(|arrived| *arrived + 1 < id) {
                return false;
            }
            barriers_arrived[channel] = id;
        }
        let item = pending[channel].pop_front().expect("front");
        let actions = gate
            .on_arrival(Instant::ZERO, ChannelIndex(channel as u16), item)
            .expect("a well-formed stream");
        on_actions(actions, gate, state);
        true
    };
    for &(arriving, channel) in schedule {
        let channel = channel as usize % channels;
        if arriving {
            arrive(channel, &mut pending, &mut gate, &state, &mut on_actions);
        } else {
            read(&mut gate, &mut state, &mut on_actions);
        }
    }
    let mut moved = true;
    while moved {
        moved = false;
        for channel in 0..channels {
            moved |= arrive(channel, &mut pending, &mut gate, &state, &mut on_actions);
        }
    }
    assert!(pending.iter().all(VecDeque::is_empty));
    while read(&mut gate, &mut state, &mut on_actions) {}
    logical
}

fn input() -> impl Strategy<Value = Input> {
    (1usize..=4, 1u64..=3).prop_flat_map(|(channels, checkpoints)| {
        prop::collection::vec(
            prop::collection::vec(0u64..6, checkpoints as usize + 1),
            channels,
        )
        .prop_map(move |runs| Input { runs, checkpoints })
    })
}

fn schedule() -> impl Strategy<Value = Vec<(bool, u8)>> {
    prop::collection::vec((any::<bool>(), any::<u8>()), 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn aligned_and_unaligned_checkpoints_describe_the_same_logical_cut(
        input in input(),
        aligned_schedule in schedule(),
        unaligned_schedule in schedule(),
    ) {
        let aligned = run(&input, BarrierKind::Aligned, &aligned_schedule);
        let unaligned = run(&input, BarrierKind::Unaligned, &unaligned_schedule);
        prop_assert_eq!(aligned.len() as u64, input.checkpoints, "every aligned checkpoint completed");
        prop_assert_eq!(&aligned, &unaligned);
        // The cut is at the barriers: each channel's prefix up to barrier n.
        for (checkpoint, cut) in &aligned {
            for (channel, processed) in cut.iter().enumerate() {
                let before: u64 = input.runs[channel][..*checkpoint as usize].iter().sum();
                prop_assert_eq!(processed, &(1..=before).collect::<Vec<_>>());
            }
        }
    }
}
