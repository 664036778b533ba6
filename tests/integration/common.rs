//! Helpers shared by the integration tests.
// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use snapflow::scenario::Scenario;
use snapflow::sim::cluster::RunResult;
use snapflow::state::snapshot::OperatorSnapshot;
use std::path::{Path, PathBuf};

/// The crate's root folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads a scenario by its path relative to the crate root.
pub fn load(relative: &str) -> Scenario {
    Scenario::load(&root().join(relative)).unwrap_or_else(|e| panic!("{e}"))
}

/// Every scenario file under `scenarios/` and `scenarios/regressions/`, relative paths, sorted.
pub fn scenario_files() -> Vec<String> {
    let mut files = Vec::new();
    for folder in ["scenarios", "scenarios/regressions"] {
        let Ok(entries) = std::fs::read_dir(root().join(folder)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable folder").path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(relative(&path));
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .expect("under the root")
        .display()
        .to_string()
}

/// How many input records checkpoint `id` of the first job had read: the sum of its sources'
/// next offsets over every partition.
pub fn records_read_at(run: &RunResult, id: u64) -> u64 {
    let checkpoint = run
        .checkpoints
        .iter()
        .find(|c| c.stage == 0 && c.checkpoint.checkpoint_id.0 == id)
        .unwrap_or_else(|| panic!("checkpoint {id} completed"));
    let mut read = 0;
    for state in checkpoint.task_states().values() {
        for operator in state.as_ref().expect("decodes").operators.values() {
            if let OperatorSnapshot::Source(source) = operator {
                read += source.next_offsets.values().sum::<u64>();
            }
        }
    }
    read
}
