//! snapflow: a stream-processing engine with Apache Flink's state and fault-tolerance
//! semantics, run whole inside a deterministic simulation (madsim).
//!
//! The protocols are sans-IO cores (`checkpoint::barrier_handler`, `checkpoint::coordinator`,
//! `runtime::job_master`, `runtime::credit`, `runtime::restart`); `runtime` drives them on madsim nodes; `sim` builds
//! the cluster, injects faults and checks each run against a failure-free one.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use sim::user_check::{check, CheckFailure};

pub mod api {
    //! The dataflow API jobs are written with.
    pub mod functions;
    pub mod job;
    pub mod job_catalog;
    pub mod jobs;
    pub mod value;
    pub mod value_serializer;
}
pub mod checkpoint {
    //! Checkpointing: barriers, the barrier handler, the coordinator.
    pub mod barrier;
    pub mod barrier_aligner;
    pub mod barrier_handler;
    pub mod barrier_protocol;
    pub mod barrier_tracker;
    pub mod checkpointed_input_gate;
    pub mod coordinator;
    pub mod final_checkpoint;
    pub mod state_assignment;
    pub mod storage;
    pub mod subtask_checkpoint;
}
pub mod cli;
pub mod codec;
pub mod connectors {
    //! What jobs use to reach the outside world: the source reader and the sinks (plain,
    //! two-phase commit, write-ahead log, idempotent), what they pre-committed, and their
    //! settings.
    pub mod committing_sink;
    pub mod connector_error;
    pub mod pending_commits;
    pub mod sink_config;
    pub mod sink_io;
    pub mod sink_writer;
    pub mod source_reader;
    pub mod two_phase_commit_sink;
    pub mod write_ahead_sink;
}
pub mod graph {
    //! From the logical job to subtasks and channels.
    pub mod execution_graph;
    pub mod pipelined_region;
}
pub mod ids;
pub mod limits;
pub mod runtime {
    //! The thin async drivers on madsim: tasks, task managers, the job manager, the network.
    pub mod checkpoint_responder;
    pub mod control_plane;
    pub mod credit;
    pub mod deployment;
    pub mod failover_strategy;
    pub mod frame_io;
    pub mod hooks;
    pub mod input_gate;
    pub mod job_master;
    pub mod job_status;
    pub mod jobmanager;
    pub mod leadership;
    pub mod messages;
    pub mod network_input;
    pub mod operator_chain;
    pub mod record_writer;
    pub mod restart;
    pub mod result_partition;
    pub mod rpc;
    pub mod sim_time;
    pub mod sink_operator;
    pub mod source_operator;
    pub mod state_initializer;
    pub mod task;
    pub mod task_context;
    pub mod task_error;
    pub mod task_mailbox;
    pub mod task_setup;
    pub mod taskmanager;
}
pub mod scenario;
pub mod sim;
pub mod services {
    //! The external systems on their own nodes: the broker (with its transaction table), the
    //! blobstore, the key-value store, their wire messages, and the disk model they write to.
    pub mod blobstore;
    pub mod broker;
    pub mod disk;
    pub mod high_availability;
    pub mod kv_store;
    pub mod messages;
    pub mod partition_log;
    pub mod record_batch;
    pub mod transaction_table;
}
pub mod state {
    //! Keyed state, key groups and the snapshot format.
    pub mod broadcast_state;
    pub mod channel_state;
    pub mod heap_backend;
    pub mod key_group;
    pub mod keyed_state;
    pub mod operator_state;
    pub mod processing_time_journal;
    pub mod raw_state;
    pub mod savepoint_format;
    pub mod snapshot;
    pub mod state_descriptor;
    pub mod state_error;
    pub mod state_map;
    pub mod state_ttl;
    pub mod timer_service;
}
pub mod time;
