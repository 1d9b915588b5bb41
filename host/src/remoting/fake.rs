//! A scripted fake peer (name server or broker) for unit tests, over any byte stream.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::RemotingCommand;
use crate::protocol::frame::{MAX_FRAME_LEN, decode_frame, encode_frame};

/// The other end of a connection under test: reads and writes whole commands.
#[derive(Debug)]
pub(crate) struct FakePeer<IO> {
    io: IO,
    buf: BytesMut,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> FakePeer<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self { io, buf: BytesMut::new() }
    }

    /// The next command the client sent, or `None` once it closed the stream.
    pub(crate) async fn recv(&mut self) -> Option<RemotingCommand> {
        loop {
            if let Some(cmd) =
                decode_frame(&mut self.buf, MAX_FRAME_LEN).expect("client sent a valid frame")
            {
                return Some(cmd);
            }
            if self.io.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// Sends a command to the client.
    pub(crate) async fn send(&mut self, cmd: &RemotingCommand) {
        let mut out = BytesMut::new();
        encode_frame(cmd, &mut out).expect("test command encodes");
        self.io.write_all(&out).await.expect("client is reading");
    }

    /// Sends raw bytes (for malformed-frame tests).
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("client is reading");
    }
}
