//! The one envelope for every persisted file: magic, format version, CRC-32 and a postcard
//! payload. A file that fails any of those checks is refused with an error naming the file.

use serde::{de::DeserializeOwned, Serialize};
use std::fmt;

/// Format version of every file snapflow writes. Bumped on any incompatible change.
pub const FORMAT_VERSION: u16 = 8;

/// What a file holds; each kind has its own magic so one cannot be read as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A checkpoint's `_metadata`.
    CheckpointMetadata,
    /// One subtask's state in a checkpoint (or a native savepoint).
    TaskState,
    /// One subtask's state in a canonical savepoint.
    CanonicalSavepoint,
}

impl FileKind {
    /// The four bytes a file of this kind starts with.
    pub fn magic(self) -> [u8; 4] {
        match self {
            FileKind::CheckpointMetadata => *b"SFCM",
            FileKind::TaskState => *b"SFTS",
            FileKind::CanonicalSavepoint => *b"SFSP",
        }
    }
}

/// Why a persisted file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    /// The file's path in checkpoint storage.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for CodecError {}

const HEADER_SIZE_BYTES: usize = 4 + 2 + 4;

/// Encodes `value` as a file of `kind`.
pub fn encode<T: Serialize>(kind: FileKind, value: &T) -> Vec<u8> {
    let payload = postcard::to_allocvec(value).expect("serde types of snapflow always encode");
    let mut bytes = Vec::with_capacity(HEADER_SIZE_BYTES + payload.len());
    bytes.extend_from_slice(&kind.magic());
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}

/// Decodes a file of `kind` read from `path`, checking magic, version and checksum.
pub fn decode<T: DeserializeOwned>(
    kind: FileKind,
    path: &str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let error = |reason: String| CodecError {
        path: path.to_string(),
        reason,
    };
    if bytes.len() < HEADER_SIZE_BYTES {
        return Err(error(format!(
            "truncated: {} bytes, the header alone is {HEADER_SIZE_BYTES}",
            bytes.len()
        )));
    }
    if bytes[0..4] != kind.magic() {
        return Err(error(format!(
            "bad magic {:?}, expected {:?} ({kind:?})",
            &bytes[0..4],
            kind.magic()
        )));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(error(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    let checksum = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let payload = &bytes[HEADER_SIZE_BYTES..];
    if crc32fast::hash(payload) != checksum {
        return Err(error("checksum mismatch: the file is corrupt".to_string()));
    }
    postcard::from_bytes(payload).map_err(|e| error(format!("payload does not decode: {e}")))
}

/// Encodes a wire message (no file envelope: the transport is reliable and framed).
pub fn encode_message<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("serde types of snapflow always encode")
}

/// Appends the encoding of `value` to `bytes` (the hot path: no buffer of its own per record).
pub fn encode_message_into<T: Serialize>(value: &T, bytes: &mut Vec<u8>) {
    postcard::serialize_with_flavor(value, AppendTo(bytes))
        .expect("serde types of snapflow always encode");
}

/// A postcard output that appends to a borrowed vector. `postcard::to_extend` takes the vector
/// by value and hands it back inside a `Result`, a move through the stack per call that cost
/// a store-forwarding stall per state update on the hot path.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // A varint's few bytes pushed one by one: a `memcpy` call costs more than they do.
        match data.len() {
            0..=10 => data.iter().for_each(|byte| self.0.push(*byte)),
            _ => self.0.extend_from_slice(data),
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes a wire message.
pub fn decode_message<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_corruption() {
        let bytes = encode(FileKind::TaskState, &vec![1u32, 2, 3]);
        let back: Vec<u32> = decode(FileKind::TaskState, "chk-1/x", &bytes).unwrap();
        assert_eq!(back, vec![1, 2, 3]);

        let mut corrupt = bytes.clone();
        *corrupt.last_mut().unwrap() ^= 0xff;
        let error = decode::<Vec<u32>>(FileKind::TaskState, "chk-1/x", &corrupt).unwrap_err();
        assert!(error.reason.contains("checksum"), "{error}");

        let error = decode::<Vec<u32>>(FileKind::CheckpointMetadata, "chk-1/_metadata", &bytes)
            .unwrap_err();
        assert!(error.reason.contains("magic"), "{error}");
        let error = decode::<Vec<u32>>(FileKind::TaskState, "p", &bytes[..3]).unwrap_err();
        assert!(error.reason.starts_with("truncated: 3 bytes"), "{error}");
    }
}
