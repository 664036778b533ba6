//! Helpers shared by the integration tests.
// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use snapflow::scenario::Scenario;
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
