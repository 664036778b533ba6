//! The input a run reads: records per source partition, generated from the workload seed
//! (`rand_chacha`) or given as text. Each key lives in one partition, so per-key order is
//! defined and the oracle can compare against it.

use crate::api::value::{Text, Value};
use crate::state::key_group::java_string_hash;
use compact_str::format_compact;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

/// Where the records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Whitespace-separated words, one record each, in order.
    Text(String),
    /// `records` words drawn from `keys` distinct ones with the generator seeded by `seed`.
    Generated {
        /// How many records.
        records: u64,
        /// How many distinct keys.
        keys: u64,
        /// The generator's seed.
        seed: u64,
    },
}

/// A workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Its records.
    pub kind: WorkloadKind,
    /// Partitions of the input topic.
    pub partitions: u32,
    /// Source pacing per partition; 0 = unpaced.
    pub records_per_second: u64,
}

/// The partition a word's records go to.
pub fn partition_of(word: &str, partitions: u32) -> u32 {
    java_string_hash(word).rem_euclid(partitions as i32) as u32
}

impl Workload {
    /// How many records the input holds. No operator of the built-in jobs sees more records
    /// than this on one subtask (each emits at most one record per record it reads).
    pub fn record_count(&self) -> u64 {
        match &self.kind {
            WorkloadKind::Text(text) => text.split_whitespace().count() as u64,
            WorkloadKind::Generated { records, .. } => *records,
        }
    }

    /// The records of each partition, in offset order.
    pub fn generate(&self) -> Vec<Vec<Value>> {
        assert!(self.partitions > 0);
        let mut partitions = vec![Vec::new(); self.partitions as usize];
        if let WorkloadKind::Generated { records, .. } = &self.kind {
            // About each partition's share, with room for the keys' uneven spread.
            let share = usize::try_from(*records).unwrap_or(0) / partitions.len();
            partitions
                .iter_mut()
                .for_each(|p| p.reserve(share + share / 8));
        }
        let mut push = |word: Text, partition: usize| partitions[partition].push(Value::Str(word));
        match &self.kind {
            WorkloadKind::Text(text) => text
                .split_whitespace()
                .for_each(|word| push(word.into(), partition_of(word, self.partitions) as usize)),
            WorkloadKind::Generated {
                records,
                keys,
                seed,
            } => {
                let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                // Each distinct word is formatted and placed once, not once per record (a
                // lookup table: nothing iterates it, so its hash order reaches no output).
                let mut vocabulary: FxHashMap<u64, (Text, usize)> = FxHashMap::default();
                for _ in 0..*records {
                    let key = rng.gen_range(0..*keys);
                    let (word, partition) = vocabulary.entry(key).or_insert_with(|| {
                        let word = format_compact!("k{key}");
                        let partition = partition_of(&word, self.partitions) as usize;
                        (word, partition)
                    });
                    push(word.clone(), *partition);
                }
            }
        }
        partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_and_keeps_keys_in_one_partition() {
        let workload = Workload {
            kind: WorkloadKind::Generated {
                records: 1000,
                keys: 50,
                seed: 7,
            },
            partitions: 3,
            records_per_second: 0,
        };
        let first = workload.generate();
        assert_eq!(first, workload.generate());
        assert_eq!(first.iter().map(Vec::len).sum::<usize>(), 1000);
        for (index, records) in first.iter().enumerate() {
            for record in records {
                assert_eq!(partition_of(record.as_str().unwrap(), 3) as usize, index);
            }
        }
    }
}
