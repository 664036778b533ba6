//! Every bound in one place. Relations between them are checked at compile time.

/// Bytes of serialized records one network buffer holds (Flink's default segment size).
pub const BUFFER_SIZE_BYTES: usize = 32 * 1024;
/// Credits (buffers) each input channel owns outright (Flink: buffers-per-channel = 2).
pub const CREDITS_EXCLUSIVE_PER_CHANNEL: u32 = 2;
/// Credits an input gate lends to channels with a backlog (Flink: floating-buffers-per-gate = 8).
pub const CREDITS_FLOATING_PER_GATE: u32 = 8;
/// Sealed buffers one output channel may queue before the task stops producing (backpressure).
pub const OUTPUT_QUEUE_BUFFERS_MAX: usize = 4;
/// Records a task handles in one turn before it lets other tasks of its node run.
pub const TASK_RECORDS_PER_TURN_MAX: usize = 256;
/// Simulated time a task spends in one turn before it reads its mailbox again (Flink checks
/// its mailbox between records, so a priority barrier never waits behind a slow buffer).
pub const TASK_TURN_DURATION_MAX: crate::time::Duration = crate::time::Duration::from_ms(1);
/// Records a source fetches from the broker in one request.
pub const SOURCE_FETCH_RECORDS_MAX: u32 = 512;
/// Records a sink appends to the broker in one request.
pub const SINK_APPEND_RECORDS_MAX: usize = 512;
/// Channels of one input gate; a `u16` indexes them.
pub const GATE_CHANNELS_MAX: usize = 1024;
/// Parallelism of one operator.
pub const PARALLELISM_MAX: u32 = 64;
/// Flink's upper bound on max parallelism (key groups).
pub const MAX_PARALLELISM_UPPER_BOUND: u32 = 32_768;
/// Flink's lower bound for the default max parallelism.
pub const MAX_PARALLELISM_DEFAULT_MIN: u32 = 128;
/// Checkpoints in flight at once; a trigger beyond it is skipped, not queued.
pub const CHECKPOINTS_IN_FLIGHT_MAX: u32 = 16;
/// Completed checkpoints the coordinator keeps.
pub const CHECKPOINTS_RETAINED_MAX: u32 = 64;
/// Task managers of one cluster.
pub const TASKMANAGERS_MAX: u32 = 16;
/// Faults in one plan.
pub const FAULTS_MAX: usize = 64;
/// Records of one workload.
pub const WORKLOAD_RECORDS_MAX: u64 = 50_000_000;
/// Bytes of one wire frame on a data channel or RPC message.
pub const FRAME_SIZE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Times a producer tries to connect a data channel before the task fails.
pub const CHANNEL_CONNECT_ATTEMPTS_MAX: u32 = 20;
/// Open transactions of earlier attempts one recovering two-phase-commit sink subtask aborts.
pub const LINGERING_TRANSACTIONS_MAX: u64 = 100_000;
/// Flink's minimum checkpoint interval and timeout (`CheckpointConfig.MINIMAL_CHECKPOINT_TIME`).
pub const CHECKPOINT_TIME_MS_MIN: u64 = 10;
/// Records per second one source partition may be paced at (one per nanosecond of simulated
/// time); with at most `WORKLOAD_PARTITIONS_MAX` partitions a source's rate fits a `u64`.
pub const RECORDS_PER_SECOND_MAX: u64 = 1_000_000_000;
/// Partitions of the input topic.
pub const WORKLOAD_PARTITIONS_MAX: u32 = 1024;
/// Bytes of one encoded record. A broker fetch carries `SOURCE_FETCH_RECORDS_MAX` records and
/// a sink append `SINK_APPEND_RECORDS_MAX` in one message, so this keeps both within a frame.
pub const RECORD_SIZE_BYTES_MAX: usize = 64 * 1024;
/// Bytes of a scenario's `text` workload: its distinct words are the keyed state, which one
/// snapshot message carries.
pub const WORKLOAD_TEXT_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Times an RPC is sent before the caller gives up.
pub const RPC_ATTEMPTS_MAX: u32 = 3;
/// Inputs waiting in a task's mailbox. Network input is bounded by credit and control input
/// by the checkpoints in flight, so the bound is never reached in a healthy run; a sender that
/// meets it waits (backpressure up the channel or the control link), it never drops.
pub const TASK_MAILBOX_CAPACITY: usize = 1024;
/// Messages waiting in a node's control inbox or in the job manager's mailbox.
pub const CONTROL_MAILBOX_CAPACITY: usize = 1024;
/// Signals from the engine's hooks waiting for the fault injector. The injector is runnable
/// as soon as one arrives and simulated time stands still until it ran, so only signals of
/// one instant ever wait together.
pub const HARNESS_SIGNALS_CAPACITY: usize = 1024;

const _: () = assert!(GATE_CHANNELS_MAX <= u16::MAX as usize);
const _: () = assert!(PARALLELISM_MAX as usize * PARALLELISM_MAX as usize <= GATE_CHANNELS_MAX * 4);
const _: () = assert!(MAX_PARALLELISM_DEFAULT_MIN <= MAX_PARALLELISM_UPPER_BOUND);
const _: () = assert!(PARALLELISM_MAX <= MAX_PARALLELISM_DEFAULT_MIN);
const _: () = assert!(CREDITS_EXCLUSIVE_PER_CHANNEL >= 1);
const _: () = assert!(BUFFER_SIZE_BYTES < FRAME_SIZE_BYTES_MAX);
const _: () = assert!(RECORDS_PER_SECOND_MAX
    .checked_mul(WORKLOAD_PARTITIONS_MAX as u64)
    .is_some());
// Twice the records' bytes leaves room for each record's envelope (length, transaction, batch).
const _: () =
    assert!(2 * SOURCE_FETCH_RECORDS_MAX as usize * RECORD_SIZE_BYTES_MAX <= FRAME_SIZE_BYTES_MAX);
const _: () = assert!(2 * SINK_APPEND_RECORDS_MAX * RECORD_SIZE_BYTES_MAX <= FRAME_SIZE_BYTES_MAX);
const _: () = assert!(2 * WORKLOAD_TEXT_BYTES_MAX <= FRAME_SIZE_BYTES_MAX);
