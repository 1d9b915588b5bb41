//! Frame codec (reference 1.1): `i32 totalLen | i32 (type << 24 | headerLen) | header | body`.
//!
//! Decoding distinguishes "need more bytes" (`Ok(None)`, normal on a stream) from an invalid
//! frame (`Err`): after an invalid frame the stream can no longer be trusted to be in sync, so the
//! connection that read it must be closed.

use bytes::{Buf, BufMut, BytesMut};

use super::command::{RemotingCommand, SerializeType};
use super::serialize::{HeaderCodecError, decode_header, encode_header};

/// Java's default `com.rocketmq.remoting.frameMaxLength`: 16 MiB, counting the length prefix.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Why bytes on a connection are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame length {len} (plus 4) exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("frame length {0} is too small to hold the header-length word")]
    TooSmall(usize),
    #[error("header length {header} does not fit in a frame of {total} bytes")]
    HeaderOverrun { header: usize, total: usize },
    #[error("bad header: {0}")]
    Header(#[from] HeaderCodecError),
}

/// Decodes one frame from the front of `buf`, consuming it. `Ok(None)` means more bytes are
/// needed; nothing is consumed then.
pub fn decode_frame(
    buf: &mut BytesMut,
    max_frame_len: usize,
) -> Result<Option<RemotingCommand>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let total = usize::try_from(total).map_err(|_| FrameError::NegativeLength(total))?;
    if total.saturating_add(4) > max_frame_len {
        return Err(FrameError::TooLarge { len: total, max: max_frame_len });
    }
    if total < 4 {
        return Err(FrameError::TooSmall(total));
    }
    // The header length is checked before waiting for the rest, so a garbage prefix is reported
    // as soon as its first 8 bytes arrive.
    if buf.len() < 8 {
        return Ok(None);
    }
    let word = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let kind = u8::try_from(word >> 24).unwrap_or(u8::MAX);
    let header_len = usize::try_from(word & 0x00FF_FFFF).unwrap_or(usize::MAX);
    if header_len > total - 4 {
        return Err(FrameError::HeaderOverrun { header: header_len, total });
    }
    if buf.len() < 4 + total {
        buf.reserve(4 + total - buf.len());
        return Ok(None);
    }
    buf.advance(8);
    let header = buf.split_to(header_len);
    let body = buf.split_to(total - 4 - header_len).freeze();
    let mut cmd = decode_header(kind, &header)?;
    cmd.body = body;
    Ok(Some(cmd))
}

/// Appends the frame for `cmd` to `dst`.
pub fn encode_frame(cmd: &RemotingCommand, dst: &mut BytesMut) -> Result<(), FrameError> {
    let header = encode_header(cmd)?;
    if header.len() > 0x00FF_FFFF {
        return Err(FrameError::HeaderOverrun { header: header.len(), total: header.len() });
    }
    let total = 4 + header.len() + cmd.body.len();
    if total + 4 > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len: total, max: MAX_FRAME_LEN });
    }
    let kind = u32::from(match cmd.serialize_type {
        SerializeType::Json => SerializeType::Json.byte(),
        SerializeType::RocketMq => SerializeType::RocketMq.byte(),
    });
    dst.reserve(4 + total);
    // Both fit: total is bounded by MAX_FRAME_LEN and header by 24 bits.
    dst.put_u32(u32::try_from(total).unwrap_or(u32::MAX));
    dst.put_u32((kind << 24) | u32::try_from(header.len()).unwrap_or(0));
    dst.put_slice(&header);
    dst.put_slice(&cmd.body);
    Ok(())
}
