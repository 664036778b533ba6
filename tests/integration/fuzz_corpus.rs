//! Goal: every input the fuzzer kept (and every crash turned into a corpus file) keeps passing
//! the barrier-handler model on stable Rust, inside `cargo test`.
//! Method: replay each file of `fuzz/corpus/barrier_alignment/` through the same check the
//! fuzz target runs.

use crate::common;

use snapflow::sim::gate_model::check_bytes;

#[test]
fn every_corpus_input_passes_the_barrier_handler_model() {
    let folder = common::root().join("fuzz/corpus/barrier_alignment");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("the corpus folder exists")
        .map(|e| e.expect("readable").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 16,
        "the seed corpus is present: {} files",
        files.len()
    );
    for file in files {
        let bytes = std::fs::read(&file).expect("readable corpus file");
        if let Err(violation) = check_bytes(&bytes) {
            panic!("{}: {violation}", file.display());
        }
    }
}
