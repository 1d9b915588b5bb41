//! Small domain newtypes shared by every layer.
//!
//! RocketMQ passes queue ids, offsets and request ids around as bare Java `int`/`long`s; mixing
//! them up compiles fine in Java and silently loses messages. The newtypes make each one its own
//! type so the compiler catches a queue id passed where an offset was meant.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A queue's index within one broker's share of a topic (`queueId` on the wire).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct QueueId(pub i32);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A logical offset in a consume queue (`queueOffset`, `commitOffset`, `nextBeginOffset`).
///
/// Negative values are meaningful in a few places of the Java API (`-1` = "none",
/// `-2` = "query failed"); those are modelled as `Option`/errors at the edges instead.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct QueueOffset(pub i64);

impl QueueOffset {
    /// The offset right after this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for QueueOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A byte position in a broker's commit log (`PHYSICALOFFSET`); send-back addresses a message by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct CommitLogOffset(pub i64);

/// The request id that pairs a response with its request on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Opaque(pub i32);

impl fmt::Display for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One queue of a topic on one broker: the unit of rebalance, pulling and offsets.
///
/// Field order gives the ordering Java's `MessageQueue.compareTo` uses (topic, broker, queue id),
/// which rebalance relies on. Serialized exactly as Java's fastjson writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: QueueId,
}

impl MessageQueue {
    pub fn new(
        topic: impl Into<String>,
        broker_name: impl Into<String>,
        queue_id: QueueId,
    ) -> Self {
        Self { topic: topic.into(), broker_name: broker_name.into(), queue_id }
    }
}

impl fmt::Display for MessageQueue {
    /// Java's `MessageQueue.toString`, which the consistent-hash allocation hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}

/// A wall-clock instant as Java writes it: milliseconds since the Unix epoch (`bornTimestamp`,
/// `storeTimestamp`, `subVersion`). Kept as an integer because it is a wire value, not a duration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EpochMillis(pub i64);

impl EpochMillis {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let since =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }
}
