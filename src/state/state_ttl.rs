//! State time-to-live (Flink's `StateTtlConfig`): a keyed state value, list element or map
//! entry expires `ttl` milliseconds of processing time after its last access, as the update
//! type counts access.
//!
//! A value under TTL is stored as Flink's `TtlValue`: the last-access timestamp (8 bytes,
//! little-endian milliseconds) in front of the user's serialized value, so it is snapshotted,
//! restored and redistributed with the state, and an expiry is decided from state alone.

use crate::state::snapshot::StateEntry;
use crate::state::state_error::StateError;

/// When a value's last-access timestamp is renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateType {
    /// On creation and on every write (Flink's default).
    OnCreateAndWrite,
    /// On creation, every write and every read.
    OnReadAndWrite,
}

/// Whether a read may see a value that has expired but is still held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateVisibility {
    /// An expired value is never returned (Flink's default).
    NeverReturnExpired,
    /// An expired value still held is returned once; the read cleans it up.
    ReturnExpiredIfNotCleanedUp,
}

/// Incremental cleanup (Flink's `cleanupIncrementally(cleanupSize, runCleanupForEveryRecord)`):
/// every access to the state checks the next `entries` keys of it for expired values, going
/// round the state; with `every_record`, every record processed does so as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncrementalCleanup {
    /// Keys checked per trigger.
    pub entries: u32,
    /// Also trigger on every record, not only on access to this state.
    pub every_record: bool,
}

/// A keyed state's time-to-live settings. Expired values are always cleaned up lazily, when
/// read; the other strategies add to that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTtlConfig {
    /// Time to live in milliseconds of processing time.
    pub ttl_ms: u64,
    /// What renews the timestamp.
    pub update_type: UpdateType,
    /// Whether expired values may be read.
    pub visibility: StateVisibility,
    /// Full snapshots leave expired values out (`cleanupFullSnapshot`): a restore drops them.
    pub cleanup_full_snapshot: bool,
    /// `cleanupIncrementally`, when set.
    pub cleanup_incremental: Option<IncrementalCleanup>,
}

impl StateTtlConfig {
    /// `StateTtlConfig.newBuilder(ttl)` with Flink's defaults: `OnCreateAndWrite`,
    /// `NeverReturnExpired`, cleanup on read only.
    pub const fn new(ttl_ms: u64) -> StateTtlConfig {
        StateTtlConfig {
            ttl_ms,
            update_type: UpdateType::OnCreateAndWrite,
            visibility: StateVisibility::NeverReturnExpired,
            cleanup_full_snapshot: false,
            cleanup_incremental: None,
        }
    }

    /// `setUpdateType`.
    pub const fn update_type(mut self, update_type: UpdateType) -> Self {
        self.update_type = update_type;
        self
    }

    /// `setStateVisibility`.
    pub const fn visibility(mut self, visibility: StateVisibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// `cleanupFullSnapshot()`.
    pub const fn cleanup_full_snapshot(mut self) -> Self {
        self.cleanup_full_snapshot = true;
        self
    }

    /// `cleanupIncrementally(entries, every_record)`.
    pub const fn cleanup_incrementally(mut self, entries: u32, every_record: bool) -> Self {
        self.cleanup_incremental = Some(IncrementalCleanup {
            entries,
            every_record,
        });
        self
    }

    /// Whether a value last accessed at `last_access` has expired at `now` (Flink: expired
    /// once `lastAccess + ttl <= now`).
    pub fn expired(&self, last_access: u64, now: u64) -> bool {
        expired(last_access, self.ttl_ms, now)
    }
}

/// Whether a value last accessed at `last_access` under `ttl_ms` has expired at `now`.
pub fn expired(last_access: u64, ttl_ms: u64, now: u64) -> bool {
    last_access.saturating_add(ttl_ms) <= now
}

const TIMESTAMP_BYTES: usize = 8;

/// `user` stamped with `now`.
pub(crate) fn stamp(now: u64, user: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(TIMESTAMP_BYTES + user.len());
    bytes.extend_from_slice(&now.to_le_bytes());
    bytes.extend_from_slice(user);
    bytes
}

/// Renews the timestamp of a stamped value in place.
pub(crate) fn restamp(bytes: &mut [u8], now: u64) {
    bytes[..TIMESTAMP_BYTES].copy_from_slice(&now.to_le_bytes());
}

/// A stamped value's last-access timestamp and user bytes.
pub(crate) fn split<'b>(name: &str, bytes: &'b [u8]) -> Result<(u64, &'b [u8]), StateError> {
    if bytes.len() < TIMESTAMP_BYTES {
        return Err(StateError(format!(
            "state `{name}` has a time-to-live but a value of {} bytes holds no timestamp (was it written without one?)",
            bytes.len()
        )));
    }
    let (stamp, user) = bytes.split_at(TIMESTAMP_BYTES);
    let stamp = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
    Ok((stamp, user))
}

/// Whether a stamped value has expired; an unstamped one counts as live (the error surfaces
/// when it is read).
pub(crate) fn stamped_expired(bytes: &[u8], ttl_ms: u64, now: u64) -> bool {
    split("", bytes).is_ok_and(|(last_access, _)| expired(last_access, ttl_ms, now))
}

/// Drops from `entry` what has expired at `now` (the value, list elements or map entries);
/// returns whether anything is left.
pub fn retain_live(entry: &mut StateEntry, ttl_ms: u64, now: u64) -> bool {
    match entry {
        StateEntry::Value(bytes) => !stamped_expired(bytes, ttl_ms, now),
        StateEntry::List(items) => {
            items.retain(|bytes| !stamped_expired(bytes, ttl_ms, now));
            !items.is_empty()
        }
        StateEntry::Map(map) => {
            map.retain(|_, bytes| !stamped_expired(bytes, ttl_ms, now));
            !map.is_empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_expires_when_its_time_to_live_has_passed() {
        let config = StateTtlConfig::new(100);
        assert!(!config.expired(1_000, 1_099));
        assert!(config.expired(1_000, 1_100));
        assert!(!config.expired(u64::MAX - 5, u64::MAX - 1), "no overflow");
    }

    #[test]
    fn stamps_round_trip() {
        let mut bytes = stamp(42, b"abc");
        assert_eq!(split("s", &bytes).unwrap(), (42, &b"abc"[..]));
        restamp(&mut bytes, 7);
        assert_eq!(split("s", &bytes).unwrap(), (7, &b"abc"[..]));
        assert!(split("s", b"short").is_err());
        assert!(stamped_expired(&bytes, 10, 17));
        assert!(!stamped_expired(&bytes, 10, 16));
    }

    #[test]
    fn retain_live_drops_what_expired_and_keeps_the_rest() {
        let mut value = StateEntry::Value(stamp(0, b"v"));
        assert!(retain_live(&mut value, 10, 9));
        assert!(!retain_live(&mut value, 10, 10));
        let mut list = StateEntry::List(vec![stamp(0, b"a"), stamp(5, b"b")]);
        assert!(retain_live(&mut list, 10, 12));
        assert_eq!(list, StateEntry::List(vec![stamp(5, b"b")]));
        let mut map = StateEntry::Map(
            [
                (b"x".to_vec(), stamp(0, b"1")),
                (b"y".to_vec(), stamp(1, b"2")),
            ]
            .into(),
        );
        assert!(!retain_live(&mut map, 10, 11));
    }

    #[test]
    fn the_builder_sets_what_it_names() {
        let config = StateTtlConfig::new(5)
            .update_type(UpdateType::OnReadAndWrite)
            .visibility(StateVisibility::ReturnExpiredIfNotCleanedUp)
            .cleanup_full_snapshot()
            .cleanup_incrementally(3, true);
        assert_eq!(config.update_type, UpdateType::OnReadAndWrite);
        assert_eq!(
            config.visibility,
            StateVisibility::ReturnExpiredIfNotCleanedUp
        );
        assert!(config.cleanup_full_snapshot);
        assert_eq!(
            config.cleanup_incremental,
            Some(IncrementalCleanup {
                entries: 3,
                every_record: true
            })
        );
    }
}
