//! The disk model: a store that outlives a node's tasks, where data written but not synced is
//! lost when the node is killed. madsim's own file system keeps every byte across a kill, so
//! snapflow keeps its own (DESIGN §3). Nothing here touches the real disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct DiskState {
    durable: BTreeMap<String, Vec<u8>>,
    unsynced: BTreeMap<String, Vec<u8>>,
}

/// One node's disk, shared by every incarnation of the node within a run.
#[derive(Clone, Default)]
pub struct Disk {
    state: Arc<Mutex<DiskState>>,
}

impl Disk {
    /// An empty disk.
    pub fn new() -> Disk {
        Disk::default()
    }

    /// Writes a file; it survives a kill only after `sync`.
    pub fn write(&self, path: &str, bytes: Vec<u8>) {
        self.lock().unsynced.insert(path.to_string(), bytes);
    }

    /// Makes every written file durable.
    pub fn sync(&self) {
        let mut state = self.lock();
        let unsynced = std::mem::take(&mut state.unsynced);
        state.durable.extend(unsynced);
    }

    /// Reads a file as the running node sees it (unsynced writes included).
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        state
            .unsynced
            .get(path)
            .or_else(|| state.durable.get(path))
            .cloned()
    }

    /// Deletes every file under `directory` (a path prefix ending in `/`), durably at once.
    pub fn delete_directory(&self, directory: &str) {
        debug_assert!(directory.ends_with('/'));
        let mut state = self.lock();
        state.durable.retain(|path, _| !path.starts_with(directory));
        state
            .unsynced
            .retain(|path, _| !path.starts_with(directory));
    }

    /// Every file's path, in order (unsynced writes included).
    pub fn paths(&self) -> Vec<String> {
        let state = self.lock();
        let mut paths: Vec<String> = state
            .durable
            .keys()
            .chain(state.unsynced.keys())
            .cloned()
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// The node was killed: unsynced writes are gone.
    pub fn lose_unsynced(&self) {
        self.lock().unsynced.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.state
            .lock()
            .expect("no task panics while holding the disk lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_on_kill() {
        let disk = Disk::new();
        disk.write("a", vec![1]);
        disk.sync();
        disk.write("b", vec![2]);
        assert_eq!(disk.read("b"), Some(vec![2]));
        disk.lose_unsynced();
        assert_eq!(disk.read("a"), Some(vec![1]));
        assert_eq!(disk.read("b"), None);
    }
}
