//! Kafka's record batch: the records' bytes back to back with where each one ends. It is how
//! records travel (append requests, fetch responses), how the sink collects them and how a
//! partition's log holds them: one buffer per batch, no allocation per record.

use crate::api::value::Value;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// Serialized records, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRecordBatch")]
pub struct RecordBatch {
    bytes: Vec<u8>,
    // `ends[i]` is where record `i` ends in `bytes`; record `i` starts where `i - 1` ends.
    ends: Vec<u64>,
}

// The wire form: the bytes, then each record's length (small varints, where absolute ends
// would grow with the batch). Read back, it is checked before it may index its own bytes.
#[derive(Deserialize)]
struct RawRecordBatch {
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
    lengths: Vec<u64>,
}

impl Serialize for RecordBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Lengths<'a>(&'a RecordBatch);
        impl Serialize for Lengths<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(|record| record.len() as u64))
            }
        }
        let mut raw = serializer.serialize_struct("RawRecordBatch", 2)?;
        raw.serialize_field("bytes", serde_bytes::Bytes::new(&self.bytes))?;
        raw.serialize_field("lengths", &Lengths(self))?;
        raw.end()
    }
}

impl TryFrom<RawRecordBatch> for RecordBatch {
    type Error = String;

    fn try_from(raw: RawRecordBatch) -> Result<Self, String> {
        let mut ends = Vec::with_capacity(raw.lengths.len());
        let mut end: u64 = 0;
        for (index, &length) in raw.lengths.iter().enumerate() {
            end = end
                .checked_add(length)
                .filter(|&end| end <= raw.bytes.len() as u64)
                .ok_or_else(|| {
                    format!(
                        "record batch: record {index} ({length} bytes from byte {end}) runs past its {} bytes",
                        raw.bytes.len()
                    )
                })?;
            ends.push(end);
        }
        if end != raw.bytes.len() as u64 {
            return Err(format!(
                "record batch: {} bytes trail the last record",
                raw.bytes.len() as u64 - end
            ));
        }
        Ok(RecordBatch {
            bytes: raw.bytes,
            ends,
        })
    }
}

impl RecordBatch {
    /// An empty batch.
    pub fn new() -> Self {
        RecordBatch::default()
    }

    /// A batch of `records`, in order.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut batch = RecordBatch::new();
        records.into_iter().for_each(|record| batch.push(record));
        batch
    }

    /// Records in it.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of all its records.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes of records `range` (their encodings back to back).
    pub fn byte_len_of(&self, range: std::ops::Range<usize>) -> usize {
        let offset = |index: usize| index.checked_sub(1).map_or(0, |i| self.ends[i] as usize);
        offset(range.end) - offset(range.start)
    }

    /// An empty batch with room for `records` records of `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        RecordBatch {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// Appends one record.
    pub fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len() as u64);
    }

    /// Appends a record, encoded straight into the batch's buffer.
    pub fn push_value(&mut self, value: &Value) {
        value.encode_into(&mut self.bytes);
        self.ends.push(self.bytes.len() as u64);
    }

    /// Appends `value` encoded (postcard) straight into the batch's buffer.
    pub fn push_encoded<T: Serialize>(&mut self, value: &T) {
        crate::codec::encode_message_into(value, &mut self.bytes);
        self.ends.push(self.bytes.len() as u64);
    }

    /// Appends every record of `other`.
    pub fn extend_from(&mut self, other: &RecordBatch) {
        let base = self.bytes.len() as u64;
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|end| base + end));
    }

    /// Record `index`.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let end = *self.ends.get(index)? as usize;
        let start = index.checked_sub(1).map_or(0, |i| self.ends[i] as usize);
        Some(&self.bytes[start..end])
    }

    /// The records, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|index| self.get(index).expect("in range"))
    }

    /// Records `range` as a batch of their own.
    pub fn slice(&self, range: std::ops::Range<usize>) -> RecordBatch {
        let mut batch = RecordBatch::new();
        range.for_each(|index| batch.push(self.get(index).expect("in range")));
        batch
    }

    /// Empties it, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_bytes_and_order() {
        let mut batch = RecordBatch::of([&b"ab"[..], b"", b"cde"]);
        batch.push_encoded(&7u8);
        assert_eq!(batch.len(), 4);
        assert_eq!(
            batch.iter().collect::<Vec<_>>(),
            vec![&b"ab"[..], b"", b"cde", &[7]]
        );
        let mut joined = RecordBatch::of([&b"x"[..]]);
        joined.extend_from(&batch);
        assert_eq!(joined.get(0), Some(&b"x"[..]));
        assert_eq!(joined.get(3), Some(&b"cde"[..]));
        assert_eq!(joined.get(5), None);
        assert_eq!(joined.slice(1..3), RecordBatch::of([&b"ab"[..], b""]));
    }

    #[test]
    fn a_batch_whose_ends_do_not_fit_its_bytes_is_refused() {
        let good = postcard::to_allocvec(&RecordBatch::of([&b"ab"[..], b"c"])).unwrap();
        let decoded: RecordBatch = postcard::from_bytes(&good).unwrap();
        assert_eq!(decoded.len(), 2);
        #[derive(Serialize)]
        struct Raw {
            #[serde(with = "serde_bytes")]
            bytes: Vec<u8>,
            lengths: Vec<u64>,
        }
        let raw = |lengths: Vec<u64>| {
            postcard::to_allocvec(&Raw {
                bytes: b"abc".to_vec(),
                lengths,
            })
            .unwrap()
        };
        assert_eq!(
            postcard::from_bytes::<RecordBatch>(&raw(vec![2, 1])).unwrap(),
            RecordBatch::of([&b"ab"[..], b"c"])
        );
        for lengths in [vec![2, 2], vec![4], vec![2], vec![u64::MAX, 1]] {
            assert!(postcard::from_bytes::<RecordBatch>(&raw(lengths)).is_err());
        }
    }
}
