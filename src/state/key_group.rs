//! Keys to key groups to subtasks, exactly as Flink's `KeyGroupRangeAssignment` computes them,
//! so a Flink user can predict which subtask owns a key.

use crate::ids::KeyGroup;
use crate::limits::{MAX_PARALLELISM_DEFAULT_MIN, MAX_PARALLELISM_UPPER_BOUND};
use serde::{Deserialize, Serialize};

/// A contiguous, inclusive range of key groups owned by one subtask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group in the range.
    pub start: u32,
    /// Last key group in the range (inclusive).
    pub end: u32,
}

impl KeyGroupRange {
    /// Whether `key_group` falls in this range.
    pub fn contains(&self, key_group: KeyGroup) -> bool {
        self.start <= key_group.0 && key_group.0 <= self.end
    }
}

/// Java's `String.hashCode()` over UTF-16 code units, which Flink hashes string keys with.
pub fn java_string_hash(text: &str) -> i32 {
    let step = |hash: i32, unit: i32| hash.wrapping_mul(31).wrapping_add(unit);
    // An ASCII byte is its own UTF-16 code unit: no decoding (most keys, on every record).
    if text.is_ascii() {
        return text
            .bytes()
            .fold(0, |hash, byte| step(hash, i32::from(byte)));
    }
    text.encode_utf16()
        .fold(0, |hash, unit| step(hash, i32::from(unit)))
}

/// Flink's `MathUtils.murmurHash(int)`.
pub fn murmur_hash(code: i32) -> i32 {
    let mut code = code.wrapping_mul(0xcc9e_2d51_u32 as i32);
    code = code.rotate_left(15);
    code = code.wrapping_mul(0x1b87_3593);
    code = code.rotate_left(13);
    code = code.wrapping_mul(5).wrapping_add(0xe654_6b64_u32 as i32);
    code ^= 4;
    code = bit_mix(code);
    if code >= 0 {
        code
    } else if code != i32::MIN {
        -code
    } else {
        0
    }
}

fn bit_mix(input: i32) -> i32 {
    let mut value = input as u32;
    value ^= value >> 16;
    value = value.wrapping_mul(0x85eb_ca6b);
    value ^= value >> 13;
    value = value.wrapping_mul(0xc2b2_ae35);
    value ^= value >> 16;
    value as i32
}

/// The key group of a string key.
pub fn key_group_for_key(key: &str, max_parallelism: u32) -> KeyGroup {
    assert!(max_parallelism > 0);
    let hash = murmur_hash(java_string_hash(key)) as u32;
    // A power of two (the default 128) takes a mask: the same remainder without a division,
    // which twice per record (routing, then state access) was a visible share of a record.
    let key_group = match max_parallelism.is_power_of_two() {
        true => hash & (max_parallelism - 1),
        false => hash % max_parallelism,
    };
    KeyGroup(key_group)
}

/// The subtask that owns `key_group` (Flink's `computeOperatorIndexForKeyGroup`).
pub fn subtask_for_key_group(max_parallelism: u32, parallelism: u32, key_group: KeyGroup) -> u32 {
    assert!(key_group.0 < max_parallelism);
    assert!(parallelism > 0 && parallelism <= max_parallelism);
    ((key_group.0 as u64 * parallelism as u64) / max_parallelism as u64) as u32
}

/// The key groups subtask `subtask_index` owns (Flink's `computeKeyGroupRangeForOperatorIndex`).
pub fn key_group_range(
    max_parallelism: u32,
    parallelism: u32,
    subtask_index: u32,
) -> KeyGroupRange {
    assert!(subtask_index < parallelism);
    let max = max_parallelism as u64;
    let parallelism = parallelism as u64;
    let index = subtask_index as u64;
    let start = (index * max).div_ceil(parallelism);
    let end = ((index + 1) * max - 1) / parallelism;
    KeyGroupRange {
        start: start as u32,
        end: end as u32,
    }
}

/// Flink's default max parallelism: 1.5 × parallelism rounded up to a power of two, at least
/// 128 and at most 32768.
pub fn default_max_parallelism(parallelism: u32) -> u32 {
    let wanted = (parallelism + parallelism / 2).max(1).next_power_of_two();
    wanted.clamp(MAX_PARALLELISM_DEFAULT_MIN, MAX_PARALLELISM_UPPER_BOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_java() {
        // Values from the JVM: "hello".hashCode() and "flink".hashCode().
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("flink"), 97_520_992);
    }

    /// Computed by Flink 2.3's own `KeyGroupRangeAssignment.assignToKeyGroup(key, max)` (the
    /// `flink-dist` jar of PyPI's `apache-flink-libraries`, on the JVM), for max parallelism
    /// 128, 4096 and 32768. Rescaling and savepoint compatibility depend on exactly these.
    const FLINK_KEY_GROUPS: [(&str, [u32; 3]); 14] = [
        ("", [94, 2526, 31198]),
        ("hello", [35, 2723, 31395]),
        ("flink", [98, 226, 16610]),
        ("k0", [97, 1633, 5729]),
        ("k1", [19, 3091, 15379]),
        ("k999", [108, 876, 25452]),
        ("world", [66, 3394, 23874]),
        ("Grüße", [115, 1523, 9715]),
        ("naïve", [16, 1424, 26000]),
        ("日本語", [27, 2587, 6683]),
        ("😀", [54, 3254, 7350]),
        ("a😀b", [113, 2033, 14321]),
        ("ключ", [67, 1731, 18115]),
        ("the quick brown fox", [80, 3536, 19920]),
    ];

    #[test]
    fn key_groups_are_flinks() {
        for (key, expected) in FLINK_KEY_GROUPS {
            for (max_parallelism, key_group) in [128, 4096, 32768].into_iter().zip(expected) {
                assert_eq!(
                    key_group_for_key(key, max_parallelism),
                    KeyGroup(key_group),
                    "key {key:?}, max parallelism {max_parallelism}"
                );
            }
        }
    }

    /// A power-of-two maximum takes the mask, any other the remainder: since `m` divides
    /// `3m`, the key group under `3m` (a remainder) reduced mod `m` is the one under `m`.
    #[test]
    fn the_mask_and_the_remainder_agree() {
        for word in 0..2000 {
            let key = format!("k{word}é");
            for max_parallelism in [1u32, 2, 128, 4096, 32768] {
                let masked = key_group_for_key(&key, max_parallelism).0;
                let divided = key_group_for_key(&key, 3 * max_parallelism).0 % max_parallelism;
                assert_eq!(
                    masked, divided,
                    "key {key:?}, max parallelism {max_parallelism}"
                );
            }
        }
    }

    #[test]
    fn ranges_and_owners_are_flinks() {
        // Flink's computeKeyGroupRangeForOperatorIndex(max, p, p - 1) and
        // computeOperatorIndexForKeyGroup(max, p, max / 2 + 1), from the same jar.
        let flink = [
            (128, 3, (86, 127), 1),
            (128, 7, (110, 127), 3),
            (128, 64, (126, 127), 32),
            (4096, 3, (2731, 4095), 1),
            (4096, 7, (3511, 4095), 3),
            (4096, 64, (4032, 4095), 32),
            (32768, 3, (21846, 32767), 1),
            (32768, 7, (28087, 32767), 3),
            (32768, 64, (32256, 32767), 32),
        ];
        for (max, parallelism, (start, end), owner) in flink {
            assert_eq!(
                key_group_range(max, parallelism, parallelism - 1),
                KeyGroupRange { start, end }
            );
            assert_eq!(
                subtask_for_key_group(max, parallelism, KeyGroup(max / 2 + 1)),
                owner
            );
        }
    }

    #[test]
    fn ranges_partition_all_key_groups_consistently() {
        for parallelism in 1..=7 {
            let mut next = 0;
            for index in 0..parallelism {
                let range = key_group_range(128, parallelism, index);
                assert_eq!(range.start, next);
                for key_group in range.start..=range.end {
                    assert_eq!(
                        subtask_for_key_group(128, parallelism, KeyGroup(key_group)),
                        index
                    );
                }
                next = range.end + 1;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn default_max_parallelism_is_flinks() {
        assert_eq!(default_max_parallelism(1), 128);
        assert_eq!(default_max_parallelism(100), 256);
        assert_eq!(default_max_parallelism(30_000), 32_768);
    }
}
