//! Connections to name servers and brokers.
//!
//! [`connection`] runs one task per TCP connection (reader and writer driven together) and pairs
//! responses with requests by opaque; [`pool`] keeps one connection per address, reconnecting
//! after a connection is poisoned and closing idle ones. Both are generic over
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
