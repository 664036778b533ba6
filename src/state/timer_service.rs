//! Processing-time timers of a keyed operator (Flink's `InternalTimerService` for
//! processing time): a key registers a timer for a timestamp; it fires once processing time
//! reaches it, with the key in scope. Registered timers are keyed state (a map of timestamps
//! per key, under Flink's name for the timer state), so they are checkpointed, restored and
//! redistributed by key group; the due order is an index over them, rebuilt on restore.

use crate::api::value::Text;
use std::collections::BTreeSet;

/// The keyed state holding each key's registered timers.
pub const TIMER_STATE: &str = "_timer_state/processing_user-timers";

/// A timer's map key: its timestamp big-endian, so the map orders timers by time.
pub fn timer_key(timestamp: u64) -> Vec<u8> {
    timestamp.to_be_bytes().to_vec()
}

/// The timestamp a map key names, if it is one.
pub fn timer_timestamp(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Every registered timer in firing order: timestamp, then key group, then key (the order
/// is fixed so that timers due together fire the same way in every run).
#[derive(Default)]
pub struct TimerQueue {
    due: BTreeSet<(u64, u32, Text)>,
}

impl TimerQueue {
    /// Adds a timer; a timer already registered for the key and time stays one.
    pub fn insert(&mut self, timestamp: u64, group: u32, key: &str) {
        self.due.insert((timestamp, group, Text::from(key)));
    }

    /// Removes a timer, if registered.
    pub fn remove(&mut self, timestamp: u64, group: u32, key: &str) {
        self.due.remove(&(timestamp, group, Text::from(key)));
    }

    /// The earliest timestamp registered.
    pub fn next_timestamp(&self) -> Option<u64> {
        self.due.first().map(|(timestamp, _, _)| *timestamp)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, u32, Text)> {
        if self.next_timestamp()? > now {
            return None;
        }
        self.due.pop_first()
    }

    /// Number of timers registered.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_time_order_once_due() {
        let mut queue = TimerQueue::default();
        queue.insert(20, 1, "b");
        queue.insert(10, 3, "a");
        queue.insert(10, 3, "a");
        queue.insert(15, 0, "c");
        assert_eq!(queue.len(), 3);
        queue.remove(15, 0, "c");
        assert_eq!(queue.pop_due(9), None);
        assert_eq!(queue.pop_due(10), Some((10, 3, Text::from("a"))));
        assert_eq!(queue.pop_due(19), None);
        assert_eq!(queue.next_timestamp(), Some(20));
        assert_eq!(queue.pop_due(25), Some((20, 1, Text::from("b"))));
        assert!(queue.is_empty());
        assert_eq!(timer_timestamp(&timer_key(77)), Some(77));
        assert_eq!(timer_timestamp(b"x"), None);
    }
}
