//! Errors of the connection layer.

use std::sync::Arc;
use std::time::Duration;

use crate::protocol::RequestCode;
use crate::protocol::frame::FrameError;

/// Why a request did not get a response.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemotingError {
    #[error("connecting to {addr} failed: {reason}")]
    Connect { addr: String, reason: Arc<str> },
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("request {code:?} to {addr} timed out after {after:?}")]
    Timeout { addr: String, code: RequestCode, after: Duration },
    /// The connection is gone: the peer closed it, an I/O error hit it, or it read an invalid
    /// frame and was poisoned. Only this connection is affected; the pool reconnects.
    #[error("connection to {addr} closed: {reason}")]
    Closed { addr: String, reason: Arc<str> },
    #[error("request {code:?} to {addr} could not be encoded: {source}")]
    Encode { addr: String, code: RequestCode, source: FrameError },
}

impl RemotingError {
    /// True when retrying on a fresh connection may help (Java treats all of these alike:
    /// "exception → retry later").
    pub fn is_transport(&self) -> bool {
        !matches!(self, Self::Encode { .. })
    }
}
