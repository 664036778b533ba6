//! The disk model: a store that outlives a node's tasks, where data written but not synced is
//! lost when the node is killed. madsim's own file system keeps every byte across a kill, so
//! snapflow keeps its own (DESIGN §3). Nothing here touches the real disk.

use crate::time::Instant;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct DiskState {
    durable: BTreeMap<String, Vec<u8>>,
    unsynced: BTreeMap<String, Vec<u8>>,
    // An injected fault: writes fail with an I/O error until then.
    writes_fail_until: Option<Instant>,
}

/// What a crash did to a file that was written but not synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashLoss {
    /// The file is gone (or back to its last synced content).
    Lost(String),
    /// Only its first `kept` bytes reached the disk: a torn write.
    Torn {
        /// The file.
        path: String,
        /// Bytes that survived.
        kept: usize,
    },
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

    /// Makes one written file durable (an `fsync` of it); a file synced already is left as is.
    pub fn sync_path(&self, path: &str) {
        let mut state = self.lock();
        if let Some(bytes) = state.unsynced.remove(path) {
            state.durable.insert(path.to_string(), bytes);
        }
    }

    /// Writes fail with an I/O error until `until` (a full or failing disk).
    pub fn fail_writes_until(&self, until: Instant) {
        self.lock().writes_fail_until = Some(until);
    }

    /// Whether a write at `now` fails.
    pub fn writes_fail(&self, now: Instant) -> bool {
        self.lock()
            .writes_fail_until
            .is_some_and(|until| now < until)
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

    /// Deletes one file, durably at once.
    pub fn delete(&self, path: &str) {
        let mut state = self.lock();
        state.durable.remove(path);
        state.unsynced.remove(path);
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

    /// The node crashed: each write not synced is lost or torn (a prefix of it reached the
    /// disk), as `draw` decides per file, in path order.
    pub fn crash(&self, mut draw: impl FnMut() -> u64) -> Vec<CrashLoss> {
        let mut state = self.lock();
        let unsynced = std::mem::take(&mut state.unsynced);
        let mut losses = Vec::new();
        for (path, bytes) in unsynced {
            let choice = draw();
            if choice.is_multiple_of(2) || bytes.is_empty() {
                losses.push(CrashLoss::Lost(path));
                continue;
            }
            let kept = ((choice >> 1) % bytes.len() as u64) as usize;
            state.durable.insert(path.clone(), bytes[..kept].to_vec());
            losses.push(CrashLoss::Torn { path, kept });
        }
        losses
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
        disk.write("c", vec![3, 4, 5, 6]);
        disk.write("d", vec![7]);
        disk.sync_path("d");
        let mut draws = [2u64, 1 + (3 << 1)].into_iter();
        let losses = disk.crash(|| draws.next().expect("one draw per unsynced file"));
        assert_eq!(
            losses,
            vec![
                CrashLoss::Lost("b".into()),
                CrashLoss::Torn {
                    path: "c".into(),
                    kept: 3
                }
            ]
        );
        assert_eq!(disk.read("a"), Some(vec![1]));
        assert_eq!(disk.read("b"), None);
        assert_eq!(disk.read("c"), Some(vec![3, 4, 5]));
        assert_eq!(disk.read("d"), Some(vec![7]));
        assert!(disk.crash(|| unreachable!("nothing unsynced")).is_empty());
    }

    #[test]
    fn writes_fail_inside_the_window_only() {
        let disk = Disk::new();
        disk.fail_writes_until(Instant::from_ms(100));
        assert!(disk.writes_fail(Instant::from_ms(99)));
        assert!(!disk.writes_fail(Instant::from_ms(100)));
    }
}
