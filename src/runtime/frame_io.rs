//! Length-prefixed postcard frames on a madsim TCP stream (data channels and control).

use crate::codec::{decode_message, encode_message};
use crate::limits::FRAME_SIZE_BYTES_MAX;
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Writes one frame and flushes it onto the wire (madsim sends on flush).
pub async fn write_frame<W: AsyncWrite + Unpin, F: Serialize>(
    writer: &mut W,
    frame: &F,
) -> std::io::Result<()> {
    let bytes = encode_message(frame);
    assert!(
        bytes.len() <= FRAME_SIZE_BYTES_MAX,
        "our own frames stay within the limit"
    );
    writer
        .write_all(&(bytes.len() as u32).to_le_bytes())
        .await?;
    writer.write_all(&bytes).await?;
    writer.flush().await
}

/// Reads one frame; `Ok(None)` is a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, F: DeserializeOwned>(
    reader: &mut R,
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
    let mut bytes = vec![0u8; length];
    reader.read_exact(&mut bytes).await?;
    decode_message(&bytes)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
