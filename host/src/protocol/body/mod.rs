//! RocketMQ's JSON request and response bodies, as pure codecs.
//!
//! The Java side writes every body with fastjson, which is not quite JSON: maps keyed by numbers
//! or by objects come out with bare keys (`{0:"…"}`, `{{"brokerName":…}:42}`), see reference 1.8.
//! serde_json rejects those, so every body is read through [`json::parse_lenient`], which turns
//! a bare key into a string key, and only then mapped onto the typed struct with serde.
//!
//! Encoding: [`json::to_fastjson`] writes standard JSON with fields in alphabetical order, except
//! that a map keyed by [`MessageQueue`] gets bare object keys, because that is what the Java
//! tools (fastjson) read back for `Map<MessageQueue, _>`. [`json::to_json`] writes strict JSON.
//! Every body type has `decode(&[u8])` (lenient) and `encode() -> Bytes` (fastjson form), so a
//! caller never has to pick.
//!
//! [`MessageQueue`]: crate::protocol::types::MessageQueue

#[macro_use]
mod java_enum;

pub mod assignment;
pub mod batch_ack;
pub mod cluster_info;
pub mod consumer;
pub mod heartbeat;
pub mod json;
pub mod lock;
pub mod mq_map;
pub mod reset_offset;
pub mod route;
pub mod running_info;

use bytes::Bytes;

pub use assignment::{
    MessageQueueAssignment, MessageRequestMode, QueryAssignmentRequestBody,
    QueryAssignmentResponseBody, SetMessageRequestModeRequestBody,
};
pub use batch_ack::{AckBits, BatchAck, BatchAckMessageRequestBody, batch_ack_bodies};
pub use cluster_info::ClusterInfo;
pub use consumer::{
    CMResult, CheckClientRequestBody, ConsumeMessageDirectlyResult,
    GetConsumerListByGroupResponseBody, GetConsumerStatusBody,
};
pub use heartbeat::{
    ConsumeFromWhere, ConsumeType, ConsumerData, ExpressionType, HeartbeatData, MessageModel,
    ProducerData, SubscriptionData, java_string_hash,
};
pub use json::{from_fastjson, parse_lenient, to_fastjson, to_json};
pub use lock::{LockBatchRequestBody, LockBatchResponseBody, UnlockBatchRequestBody};
pub use reset_offset::{OffsetSerializeWrapper, ResetOffsetBody};
pub use route::{BrokerData, MAX_ROUTE_QUEUES, QueueData, TopicRouteData, perm};
pub use running_info::{ConsumeStatus, ConsumerRunningInfo, ProcessQueueInfo};

/// Why a JSON body could not be read. Every variant says what was wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The bytes are not JSON, not even fastjson's dialect of it.
    #[error("malformed JSON body at byte {pos}: {problem}")]
    Syntax { pos: usize, problem: String },
    /// Arrays/objects nest deeper than [`json::MAX_DEPTH`]; refused so a hostile body cannot
    /// exhaust the stack.
    #[error("JSON body nests deeper than {max} levels at byte {pos}")]
    TooDeep { pos: usize, max: usize },
    /// Valid JSON, but not the shape of the body type we asked for.
    #[error("JSON body does not fit {target}: {source}")]
    Shape {
        target: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Well-formed and the right shape, but a value the host cannot act on safely.
    #[error("{target}: {problem}")]
    OutOfRange { target: &'static str, problem: String },
    /// A key of a `Map<MessageQueue, _>` is neither an object text nor Java's `toString` form.
    #[error("bad MessageQueue map key {key:?}: {problem}")]
    MessageQueueKey { key: String, problem: String },
}

/// Gives each body type `decode` (lenient, fastjson quirks accepted) and `encode` (fastjson
/// form), so the choice of codec lives here once instead of at every call site.
macro_rules! json_bodies {
    ($($ty:ty),+ $(,)?) => {
        $(
            impl $ty {
                /// Reads the body as a Java peer writes it (fastjson's bare keys accepted).
                pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
                    json::from_fastjson(body)
                }

                /// Writes the body as fastjson would (see [`json::to_fastjson`]).
                pub fn encode(&self) -> Bytes {
                    json::to_fastjson(self)
                }
            }
        )+
    };
}

json_bodies!(
    BatchAckMessageRequestBody,
    CheckClientRequestBody,
    ClusterInfo,
    ConsumeMessageDirectlyResult,
    QueryAssignmentRequestBody,
    QueryAssignmentResponseBody,
    ConsumerRunningInfo,
    GetConsumerListByGroupResponseBody,
    GetConsumerStatusBody,
    HeartbeatData,
    LockBatchRequestBody,
    LockBatchResponseBody,
    ResetOffsetBody,
    SetMessageRequestModeRequestBody,
    UnlockBatchRequestBody,
);
