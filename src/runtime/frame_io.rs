//! Length-prefixed postcard frames on a madsim TCP stream (data channels and control).

use crate::codec::{decode_message, encode_message_into};
use crate::limits::FRAME_SIZE_BYTES_MAX;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Writes one frame and flushes it onto the wire (madsim sends on flush).
pub async fn write_frame<W: AsyncWrite + Unpin, F: Serialize>(
    writer: &mut W,
    frame: &F,
) -> std::io::Result<()> {
    write_frame_via(writer, frame, &mut Vec::new()).await
}

/// `write_frame`, the frame built in `scratch` (its contents replaced): a writer that keeps one
/// allocates nothing per frame once it held its largest frame.
pub async fn write_frame_via<W: AsyncWrite + Unpin, F: Serialize>(
    writer: &mut W,
    frame: &F,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    scratch.clear();
    scratch.extend_from_slice(&[0; 4]);
    encode_message_into(frame, scratch);
    let length = scratch.len() - 4;
    assert!(
        length <= FRAME_SIZE_BYTES_MAX,
        "our own frames stay within the limit"
    );
    scratch[..4].copy_from_slice(&(length as u32).to_le_bytes());
    writer.write_all(scratch).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` is a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, F: DeserializeOwned>(
    reader: &mut R,
) -> std::io::Result<Option<F>> {
    read_frame_via(reader, &mut Vec::new()).await
}

/// `read_frame`, the frame's bytes read into `scratch` (its contents replaced): a reader that
/// keeps one allocates only what the decoded frame owns.
pub async fn read_frame_via<R: AsyncRead + Unpin, F: DeserializeOwned>(
    reader: &mut R,
    scratch: &mut Vec<u8>,
) -> std::io::Result<Option<F>> {
    let mut length = [0u8; 4];
    match reader.read_exact(&mut length).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(length) as usize;
    if length > FRAME_SIZE_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {length} bytes exceeds {FRAME_SIZE_BYTES_MAX}"),
        ));
    }
    scratch.clear();
    scratch.resize(length, 0);
    reader.read_exact(scratch).await?;
    decode_message(scratch)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
