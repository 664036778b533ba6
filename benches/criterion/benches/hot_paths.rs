//! The engine's hot paths, one benchmark group each (issue 11): keyed state access, record
//! (de)serialization into record batches, and the checkpointed input gate with barriers.
//!
//! Run with `cargo bench --manifest-path benches/criterion/Cargo.toml`.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use snapflow::api::value::Value;
use snapflow::checkpoint::barrier::{Barrier, BarrierKind, SnapshotType};
use snapflow::checkpoint::checkpointed_input_gate::{CheckpointedInputGate, InputItem, Polled};
use snapflow::checkpoint::coordinator::CheckpointingMode;
use snapflow::ids::{ChannelIndex, CheckpointId};
use snapflow::services::record_batch::RecordBatch;
use snapflow::state::heap_backend::HeapKeyedStateBackend;
use snapflow::state::state_descriptor::ValueStateDescriptor;
use snapflow::state::key_group::key_group_range;
use snapflow::time::Instant;

const COUNT: ValueStateDescriptor<i64> = ValueStateDescriptor::new("count");
const KEYS: usize = 1000;
const RECORDS: usize = 10_000;

fn words() -> Vec<String> {
    // The word count's keys, visited in a scattered order.
    (0..RECORDS).map(|i| format!("k{}", (i * 7919) % KEYS)).collect()
}

/// `ValueState<i64>`: read, add one, write back — the word count's per-record state access.
fn state_access(c: &mut Criterion) {
    let words = words();
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("value_state_read_update", |b| {
        let mut backend = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        b.iter(|| {
            for word in &words {
                let mut state = backend.access(word).expect("owned key group");
                let count = state.value(&COUNT).expect("decodes").unwrap_or(0) + 1;
                state.update(&COUNT, &count).expect("encodes");
            }
        })
    });
    group.bench_function("snapshot_1000_keys", |b| {
        let mut backend = HeapKeyedStateBackend::new(128, key_group_range(128, 1, 0));
        for word in &words {
            backend.access(word).unwrap().update(&COUNT, &1).unwrap();
        }
        b.iter(|| black_box(backend.snapshot()))
    });
    group.finish();
}

/// Records into a batch (the sink's buffer, an append request) and back out.
fn record_serialization(c: &mut Criterion) {
    let pairs: Vec<Value> = words()
        .into_iter()
        .enumerate()
        .map(|(i, w)| Value::pair(Value::Str(w.into()), Value::Int(i as i64)))
        .collect();
    let mut encoded = RecordBatch::new();
    pairs.iter().for_each(|p| encoded.push_value(p));
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("encode_pairs_into_batch", |b| {
        let mut batch = RecordBatch::new();
        b.iter(|| {
            batch.clear();
            pairs.iter().for_each(|p| batch.push_value(p));
            black_box(batch.byte_len())
        })
    });
    group.bench_function("decode_pairs_from_batch", |b| {
        b.iter(|| {
            for bytes in encoded.iter() {
                let (value, _) = Value::decode_prefix(bytes).expect("encoded above");
                black_box(value);
            }
        })
    });
    group.bench_function("batch_wire_round_trip", |b| {
        b.iter(|| {
            let wire = postcard::to_allocvec(&encoded).expect("encodes");
            let back: RecordBatch = postcard::from_bytes(&wire).expect("decodes");
            black_box(back.len())
        })
    });
    group.finish();
}

/// Four channels, 64 buffers each between barriers, drained through the gate: aligned, and
/// unaligned (every barrier overtakes the buffers queued ahead of it).
fn gate_with_barriers(c: &mut Criterion) {
    const CHANNELS: u16 = 4;
    const BUFFERS: u32 = 64;
    const CHECKPOINTS: u64 = 16;
    let mut group = c.benchmark_group("gate");
    group.throughput(Throughput::Elements(
        (CHANNELS as u32 * BUFFERS) as u64 * CHECKPOINTS,
    ));
    for (name, kind) in [
        ("aligned", BarrierKind::Aligned),
        ("unaligned", BarrierKind::Unaligned),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || CheckpointedInputGate::<u32>::new(CHANNELS as usize, CheckpointingMode::ExactlyOnce),
                |mut gate| {
                    let now = Instant::ZERO;
                    for checkpoint in 1..=CHECKPOINTS {
                        for channel in 0..CHANNELS {
                            for buffer in 0..BUFFERS {
                                let item = InputItem::Buffer(buffer);
                                gate.on_arrival(now, ChannelIndex(channel), item).unwrap();
                            }
                            let barrier = Barrier {
                                checkpoint_id: CheckpointId(checkpoint),
                                timestamp: now,
                                kind,
                                snapshot: SnapshotType::Checkpoint,
                            };
                            let item = InputItem::Barrier(barrier);
                            black_box(gate.on_arrival(now, ChannelIndex(channel), item).unwrap());
                        }
                        while let Some(polled) = gate.poll_next(now) {
                            if let Polled::Buffer(_, buffer) = polled.unwrap() {
                                black_box(buffer);
                            }
                        }
                    }
                    gate
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(hot_paths, state_access, record_serialization, gate_with_barriers);
criterion_main!(hot_paths);
