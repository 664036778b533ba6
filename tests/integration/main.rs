//! Every integration test in one binary: each file below is a module, so the engine links
//! once for all of them. A module opens with its goal and method.
//!
//! Run one group with a filter, e.g. `cargo test --release --test integration property::`.

mod architecture;
mod backpressure;
mod checker_can_fail;
mod checkpoint_storage;
mod common;
mod differential_cut;
mod end_to_end;
mod failover_strategy;
mod fuzz_corpus;
mod high_availability;
mod modes;
mod property;
mod restore;
mod retention;
mod savepoints;
mod scenario_errors;
mod scenarios;
mod slow_link;
mod staged_property;
mod storage_faults;
mod unaligned_backpressure;
mod wordcount_crash;
