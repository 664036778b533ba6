//! Goal: the layout keeps its two rules (DESIGN §1): the engine (`api/ graph/ state/
//! checkpoint/ runtime/ connectors/ services/`) never names the harness (`sim/ scenario/`), and no two
//! files import each other, directly or around a cycle.
//! Method: read every file under `src/`, resolve each `crate::` and `super::` path to the
//! longest module it names, build the file graph, and look for strongly connected components
//! with more than one file (Tarjan) and for engine files that reach the harness.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ENGINE: [&str; 7] = [
    "api",
    "graph",
    "state",
    "checkpoint",
    "runtime",
    "connectors",
    "services",
];
const HARNESS: [&str; 2] = ["sim", "scenario"];

/// Module path of a source file: `src/checkpoint/barrier_aligner.rs` is
/// `checkpoint::barrier_aligner`, `src/sim/mod.rs` is `sim`.
fn module_of(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts.join("::")
}

fn source_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The paths a file names: `crate::a::b` and `super::a`, one per occurrence, with code only
/// (comments and the `#[cfg(test)]` module that ends a file are skipped: in it `super` is the
/// file itself). Braced groups in `use` lines are expanded one level.
fn named_paths(text: &str, module: &str) -> Vec<String> {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let parent: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
    let mut paths = Vec::new();
    for (start, prefix) in [
        ("crate::", Vec::new()),
        ("super::", parent[..parent.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(start) {
            let after = &rest[at + start.len()..];
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(after.len());
            let path = after[..end].trim_end_matches(':');
            let mut full: Vec<String> = prefix.iter().map(|p| p.to_string()).collect();
            full.extend(
                path.split("::")
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            );
            // `use crate::a::{b, c::d}`: each member is a path of its own.
            if after[end..].starts_with('{') {
                let group =
                    &after[end + 1..after[end..].find('}').map_or(after.len(), |g| end + g)];
                for member in group.split(',') {
                    let member = member.trim();
                    let mut joined = full.clone();
                    joined.extend(
                        member
                            .split("::")
                            .map(|p| p.trim().to_string())
                            .filter(|p| !p.is_empty() && p != "self"),
                    );
                    paths.push(joined.join("::"));
                }
            }
            paths.push(full.join("::"));
            rest = &after[end..];
        }
    }
    paths
}

/// The longest known module a path names.
fn resolve<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|candidate| modules.get(&candidate))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&root, f)).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let module = module_of(&root, file);
        if module.is_empty() || module == "main" {
            continue; // The crate root and the CLI declare and use everything.
        }
        let text = std::fs::read_to_string(file).expect("readable");
        let targets: BTreeSet<String> = named_paths(&text, &module)
            .iter()
            .filter_map(|path| resolve(path, &modules))
            .filter(|target| **target != module && !target.is_empty())
            .cloned()
            .collect();
        edges.insert(module, targets);
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let next = self.index.len();
            self.index.insert(node, next);
            self.low.insert(node, next);
            self.stack.push(node);
            self.on_stack.insert(node);
            for target in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(target.as_str()) {
                    self.visit(target);
                    let low = self.low[node].min(self.low[target.as_str()]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(target.as_str()) {
                    let low = self.low[node].min(self.index[target.as_str()]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_string());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn the_engine_never_names_the_harness() {
    let graph = graph();
    let crossings: Vec<String> = graph
        .iter()
        .filter(|(module, _)| ENGINE.contains(&top(module)))
        .flat_map(|(module, targets)| {
            targets
                .iter()
                .filter(|target| HARNESS.contains(&top(target)))
                .map(move |target| format!("{module} -> {target}"))
        })
        .collect();
    assert!(
        crossings.is_empty(),
        "engine files name the harness: {crossings:#?}"
    );
}

#[test]
fn no_file_level_import_cycle() {
    let found = cycles(&graph());
    assert!(found.is_empty(), "import cycles between files: {found:#?}");
}

#[test]
fn the_checker_of_this_test_sees_a_cycle_and_a_crossing() {
    // The check must be able to fail: a made-up graph with a cycle and a crossing.
    let graph = BTreeMap::from([
        (
            "runtime::a".to_string(),
            BTreeSet::from(["runtime::b".to_string()]),
        ),
        (
            "runtime::b".to_string(),
            BTreeSet::from(["runtime::a".to_string(), "sim::c".to_string()]),
        ),
        ("sim::c".to_string(), BTreeSet::new()),
    ]);
    assert_eq!(
        cycles(&graph),
        vec![vec!["runtime::a".to_string(), "runtime::b".to_string()]]
    );
    let modules = BTreeSet::from(["sim".to_string(), "sim::observer".to_string()]);
    assert_eq!(
        resolve("sim::observer::Observer", &modules),
        Some(&"sim::observer".to_string())
    );
    let paths = named_paths(
        "use crate::sim::{observer::Observer, cluster};\n// crate::x",
        "runtime::task",
    );
    assert!(
        paths.contains(&"sim::observer::Observer".to_string()),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.starts_with('x')),
        "comments are skipped: {paths:?}"
    );
}
