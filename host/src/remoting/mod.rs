//! Connections to name servers and brokers.
//!
//! [`connection`] runs one task per TCP connection (reader and writer driven together) and pairs
//! responses with requests by opaque, and closes a connection whose peer has gone silent (a
//! request timeout, nothing read for the idle timeout); [`pool`] keeps one connection per address
//! (TCP keepalive on), reconnecting after a connection closes, and forgets an address once its
//! connection has closed. Both are generic over
//! `AsyncRead + AsyncWrite`, so unit tests drive them with `tokio::io::duplex` and a scripted peer.

pub mod connection;
pub mod error;
pub mod pool;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

pub use connection::{Connection, ConnectionConfig, HandlerReply, NotSupported, RequestHandler};
pub use error::RemotingError;
pub use pool::ConnectionPool;
