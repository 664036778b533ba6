//! Fuzzes the barrier handler: arbitrary bytes become a gate scenario (channels, mode, an
//! interleaving of buffers, barriers, cancel markers, end of partition and timer ticks), and
//! every invariant of `snapflow::sim::gate_model` must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = snapflow::sim::gate_model::check_bytes(data) {
        panic!("barrier handler invariant broken: {violation}");
    }
});
