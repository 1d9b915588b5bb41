//! RocketMQ's TCP remoting protocol as pure functions over bytes: no sockets, no tokio.
//!
//! Layers, bottom up: [`frame`] cuts a byte stream into commands; [`serialize`] reads and writes
//! the two header encodings; [`command`] is the envelope; [`header`] gives every request and
//! response its typed fields; [`body`] holds the JSON bodies with fastjson's quirks; [`message`]
//! reads and writes stored message records; [`acl`] signs requests. The facts all come from
//! `shared/reference/rocketmq-protocol.md`, sections 1–3 and 5.

pub mod acl;
pub mod body;
pub mod code;
pub mod command;
pub mod frame;
pub mod header;
pub mod message;
pub mod pop;
pub mod properties;
pub mod serialize;
pub mod types;

#[cfg(test)]
mod tests;

pub use code::{LanguageCode, RequestCode, ResponseCode};
pub use command::{ExtFields, RemotingCommand, SerializeType};
pub use types::{CommitLogOffset, EpochMillis, MessageQueue, Opaque, QueueId, QueueOffset};
