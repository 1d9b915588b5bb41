//! Plain Rust types for everything in the `rmq:listener` world.
//!
//! They mirror the WIT records one to one (see `wit/listener.wit` for field meanings) but carry no
//! wit-bindgen code, so listener logic written against them is testable on the host target.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RocketMQ's `MessageQueue`: the topic, broker and queue a message lives in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MessageQueue {
    /// Topic name.
    pub topic: String,
    /// Broker that hosts the queue.
    pub broker_name: String,
    /// Queue id within the topic on that broker.
    pub queue_id: u32,
}

impl MessageQueue {
    /// A queue of `topic` on `broker_name`.
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: u32) -> Self {
        Self { topic: topic.into(), broker_name: broker_name.into(), queue_id }
    }
}

/// A consumed message: what a Java listener sees in `MessageExt`.
///
/// Fields are public for reading; build one (in tests) with [`Message::new`] and the `with_*`
/// methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The message's topic (the original one for redelivered messages).
    pub topic: String,
    /// Broker that stored the message.
    pub broker_name: String,
    /// Queue id within the topic.
    pub queue_id: u32,
    /// Offset of the message in its queue.
    pub queue_offset: u64,
    /// Client-generated unique id (`UNIQ_KEY`), or `offset_msg_id` when absent.
    pub msg_id: String,
    /// Broker-generated id (store host + commit-log offset).
    pub offset_msg_id: String,
    /// `KEYS`, split on spaces.
    pub keys: Vec<String>,
    /// `TAGS`, if set.
    pub tags: Option<String>,
    /// User properties in producer order (system properties excluded).
    pub properties: Vec<(String, String)>,
    /// The payload.
    pub body: Vec<u8>,
    /// Milliseconds since the Unix epoch when the producer created the message.
    pub born_timestamp_ms: u64,
    /// Milliseconds since the Unix epoch when the broker stored the message.
    pub store_timestamp_ms: u64,
    /// `ip:port` of the producer.
    pub born_host: String,
    /// `ip:port` of the broker.
    pub store_host: String,
    /// Deliveries before this one (0 on first delivery).
    pub reconsume_times: u32,
}

impl Message {
    /// A message on `topic` with `body`; every other field empty or zero.
    pub fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self { topic: topic.into(), body: body.into(), ..Self::default() }
    }

    /// Sets the tag.
    #[must_use]
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.tags = Some(tags.into());
        self
    }

    /// Adds a key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Adds a user property (replacing an earlier one with the same name).
    #[must_use]
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        set_property(&mut self.properties, name.into(), value.into());
        self
    }

    /// Sets the message id.
    #[must_use]
    pub fn with_msg_id(mut self, msg_id: impl Into<String>) -> Self {
        self.msg_id = msg_id.into();
        self
    }

    /// Sets the queue id and offset.
    #[must_use]
    pub fn with_position(mut self, queue_id: u32, queue_offset: u64) -> Self {
        self.queue_id = queue_id;
        self.queue_offset = queue_offset;
        self
    }

    /// Sets how often the message was delivered before.
    #[must_use]
    pub fn with_reconsume_times(mut self, reconsume_times: u32) -> Self {
        self.reconsume_times = reconsume_times;
        self
    }

    /// The user property `name`, if set (the last one wins if the producer set it twice).
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The tag, if set.
    pub fn tags(&self) -> Option<&str> {
        self.tags.as_deref()
    }

    /// Whether the message's tag is `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags() == Some(tag)
    }

    /// The keys (RocketMQ `KEYS`).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Whether one of the message's keys is `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// The body as UTF-8.
    pub fn body_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    /// The body as UTF-8, invalid sequences replaced by U+FFFD.
    pub fn body_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON.
    #[cfg(feature = "json")]
    pub fn body_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Whether this is a redelivery (`reconsume_times > 0`).
    pub fn is_redelivery(&self) -> bool {
        self.reconsume_times > 0
    }

    /// When the producer created the message.
    pub fn born_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.born_timestamp_ms)
    }

    /// When the broker stored the message.
    pub fn store_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.store_timestamp_ms)
    }

    /// The queue the message lives in.
    pub fn queue(&self) -> MessageQueue {
        MessageQueue::new(&self.topic, &self.broker_name, self.queue_id)
    }

    /// An outgoing copy of this message for `topic`: same tags, keys, properties and body.
    pub fn forward_to(&self, topic: impl Into<String>) -> OutgoingMessage {
        OutgoingMessage {
            topic: topic.into(),
            tags: self.tags.clone(),
            keys: self.keys.clone(),
            properties: self.properties.clone(),
            body: self.body.clone(),
        }
    }
}

fn set_property(props: &mut Vec<(String, String)>, name: String, value: String) {
    match props.iter_mut().find(|(k, _)| *k == name) {
        Some((_, v)) => *v = value,
        None => props.push((name, value)),
    }
}

/// How the host consumes the batch's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ConsumeMode {
    /// Independent messages: every outcome is honoured on its own.
    #[default]
    Concurrently,
    /// Ordered queue: outcomes apply in order; the first retry suspends the queue and redelivers
    /// that message and all after it.
    Orderly,
}

/// Per-call context (`ConsumeConcurrentlyContext` / `ConsumeOrderlyContext`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumeContext {
    /// Concurrent or orderly consumption.
    pub mode: ConsumeMode,
    /// The consumer group.
    pub consumer_group: String,
    /// The queue every message of the batch comes from.
    pub queue: MessageQueue,
    /// Redeliveries after which a retried message goes to the DLQ instead.
    pub max_reconsume_times: u32,
}

impl Default for ConsumeContext {
    fn default() -> Self {
        Self {
            mode: ConsumeMode::Concurrently,
            consumer_group: String::new(),
            queue: MessageQueue::default(),
            max_reconsume_times: 16,
        }
    }
}

impl ConsumeContext {
    /// A concurrent-mode context for `consumer_group` on `queue` (max 16 redeliveries).
    pub fn new(consumer_group: impl Into<String>, queue: MessageQueue) -> Self {
        Self { consumer_group: consumer_group.into(), queue, ..Self::default() }
    }

    /// Sets the consume mode.
    #[must_use]
    pub fn with_mode(mut self, mode: ConsumeMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the redelivery limit.
    #[must_use]
    pub fn with_max_reconsume_times(mut self, max_reconsume_times: u32) -> Self {
        self.max_reconsume_times = max_reconsume_times;
        self
    }

    /// Whether the queue is consumed in order.
    pub fn is_orderly(&self) -> bool {
        self.mode == ConsumeMode::Orderly
    }

    /// Whether a `retry-later` for `msg` would send it to the DLQ instead (its redeliveries have
    /// reached `max_reconsume_times`).
    pub fn is_last_attempt(&self, msg: &Message) -> bool {
        msg.reconsume_times >= self.max_reconsume_times
    }
}

/// A RocketMQ delay level, 1..=18 (the broker's `messageDelayLevel` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DelayLevel(u8);

/// The broker's default `messageDelayLevel` table, level 1 first.
const DELAY_TABLE: [(&str, u64); 18] = [
    ("1s", 1),
    ("5s", 5),
    ("10s", 10),
    ("30s", 30),
    ("1m", 60),
    ("2m", 120),
    ("3m", 180),
    ("4m", 240),
    ("5m", 300),
    ("6m", 360),
    ("7m", 420),
    ("8m", 480),
    ("9m", 540),
    ("10m", 600),
    ("20m", 1200),
    ("30m", 1800),
    ("1h", 3600),
    ("2h", 7200),
];

impl DelayLevel {
    /// The smallest level (1 s by default).
    pub const MIN: DelayLevel = DelayLevel(1);
    /// The largest level (2 h by default).
    pub const MAX: DelayLevel = DelayLevel(18);

    /// Level `level`, if it is in 1..=18.
    pub const fn new(level: u8) -> Option<Self> {
        if level >= 1 && level <= 18 { Some(Self(level)) } else { None }
    }

    /// The level number, 1..=18.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The delay this level means with the broker's default table.
    pub fn default_delay(self) -> Duration {
        Duration::from_secs(DELAY_TABLE[usize::from(self.0) - 1].1)
    }
}

impl fmt::Display for DelayLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, DELAY_TABLE[usize::from(self.0) - 1].0)
    }
}

/// Parses a level number (`"3"`) or a label of the default table (`"10s"`, `"1m"`, `"2h"`).
impl FromStr for DelayLevel {
    type Err = ListenerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let level = match s.parse::<u8>() {
            Ok(n) => DelayLevel::new(n),
            Err(_) => DELAY_TABLE
                .iter()
                .position(|(label, _)| *label == s)
                .and_then(|i| DelayLevel::new(u8::try_from(i + 1).ok()?)),
        };
        level.ok_or_else(|| {
            ListenerError::new(format!(
                "invalid delay level {s:?}: expected 1..=18 or one of 1s 5s 10s 30s 1m .. 10m 20m 30m 1h 2h"
            ))
        })
    }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Consumed; the offset may be committed.
    Success,
    /// Deliver again later; `None` lets the broker pick the level (3 + reconsume times).
    RetryLater(Option<DelayLevel>),
    /// Send to `%DLQ%<group>` now, with an optional reason.
    DeadLetter(Option<String>),
}

impl Outcome {
    /// Retry with the broker's default delay.
    pub fn retry() -> Self {
        Outcome::RetryLater(None)
    }

    /// Retry after `level`.
    pub fn retry_after(level: DelayLevel) -> Self {
        Outcome::RetryLater(Some(level))
    }

    /// Straight to the DLQ with `reason`.
    pub fn dead_letter(reason: impl Into<String>) -> Self {
        Outcome::DeadLetter(Some(reason.into()))
    }

    /// Whether this is [`Outcome::Success`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// The listener failed the whole batch; the host retries every message of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerError {
    /// Human-readable reason (the host logs it, truncated).
    pub message: String,
}

impl ListenerError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ListenerError {}

impl From<String> for ListenerError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for ListenerError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<ProduceError> for ListenerError {
    fn from(e: ProduceError) -> Self {
        Self::new(format!("produce failed: {e}"))
    }
}

impl From<std::str::Utf8Error> for ListenerError {
    fn from(e: std::str::Utf8Error) -> Self {
        Self::new(format!("body is not UTF-8: {e}"))
    }
}

impl From<std::io::Error> for ListenerError {
    fn from(e: std::io::Error) -> Self {
        Self::new(format!("I/O error: {e}"))
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for ListenerError {
    fn from(e: serde_json::Error) -> Self {
        Self::new(format!("JSON error: {e}"))
    }
}

/// Log levels of the host's `log` import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the listener handled.
    Warn,
    /// A failure.
    Error,
}

/// A message to send through the host's producer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutgoingMessage {
    /// Destination topic.
    pub topic: String,
    /// Tag, if any.
    pub tags: Option<String>,
    /// Keys (joined with spaces into `KEYS`).
    pub keys: Vec<String>,
    /// User properties.
    pub properties: Vec<(String, String)>,
    /// The payload.
    pub body: Vec<u8>,
}

impl OutgoingMessage {
    /// A message for `topic` with `body`.
    pub fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self { topic: topic.into(), body: body.into(), ..Self::default() }
    }

    /// Sets the tag.
    #[must_use]
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.tags = Some(tags.into());
        self
    }

    /// Adds a key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Adds a user property (replacing an earlier one with the same name).
    #[must_use]
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        set_property(&mut self.properties, name.into(), value.into());
        self
    }

    /// Sends the message through the host ([`crate::producer::send`]).
    pub fn send(&self) -> Result<SendReceipt, ProduceError> {
        crate::producer::send(self)
    }
}

/// RocketMQ's `SendStatus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SendStatus {
    /// Stored.
    #[default]
    Ok,
    /// Stored, but the broker's disk flush timed out.
    FlushDiskTimeout,
    /// Stored, but replication to the slave timed out.
    FlushSlaveTimeout,
    /// Stored, but no slave was available.
    SlaveNotAvailable,
}

/// The broker's answer to a send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendReceipt {
    /// Store status.
    pub status: SendStatus,
    /// Unique id (`UNIQ_KEY`) assigned by the host.
    pub msg_id: String,
    /// Broker-generated id.
    pub offset_msg_id: String,
    /// Queue the message went to.
    pub queue: MessageQueue,
    /// Its offset there.
    pub queue_offset: u64,
}

impl SendReceipt {
    /// A receipt for a message stored in `queue` at `queue_offset` (for fakes and tests).
    pub fn new(msg_id: impl Into<String>, queue: MessageQueue, queue_offset: u64) -> Self {
        Self { msg_id: msg_id.into(), queue, queue_offset, ..Self::default() }
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProduceError {
    /// The message is unacceptable (empty topic, reserved property, too large).
    Invalid(String),
    /// The host refused (topic not allowed, send quota used up).
    Denied(String),
    /// No answer within the host's send timeout.
    Timeout,
    /// The broker or network failed.
    Failed(String),
}

impl fmt::Display for ProduceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProduceError::Invalid(why) => write!(f, "invalid message: {why}"),
            ProduceError::Denied(why) => write!(f, "denied by host: {why}"),
            ProduceError::Timeout => f.write_str("timed out"),
            ProduceError::Failed(why) => write!(f, "send failed: {why}"),
        }
    }
}

impl std::error::Error for ProduceError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_lookup_last_wins_and_with_property_replaces() {
        let mut m = Message::new("t", "x").with_property("a", "1");
        m.properties.push(("a".into(), "2".into()));
        assert_eq!(m.property("a"), Some("2"));
        assert_eq!(m.property("b"), None);
        let m = Message::new("t", "x").with_property("a", "1").with_property("a", "3");
        assert_eq!(m.properties, vec![("a".to_string(), "3".to_string())]);
    }

    #[test]
    fn tags_keys_and_body() {
        let m =
            Message::new("t", "héllo".as_bytes()).with_tags("TagA").with_key("k1").with_key("k2");
        assert!(m.has_tag("TagA"));
        assert!(!m.has_tag("TagB"));
        assert!(m.has_key("k2"));
        assert!(!m.has_key("k3"));
        assert_eq!(m.body_str().unwrap(), "héllo");

        let bad = Message::new("t", vec![0xff, b'a']);
        assert!(bad.body_str().is_err());
        assert_eq!(bad.body_lossy(), "\u{fffd}a");
        let e: ListenerError = bad.body_str().unwrap_err().into();
        assert!(e.message.starts_with("body is not UTF-8"), "{e}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn body_json() {
        #[derive(Debug, serde::Deserialize)]
        struct Order {
            id: u32,
            retry: Option<bool>,
        }
        let m = Message::new("t", r#"{"id": 7, "retry": true}"#);
        let o: Order = m.body_json().unwrap();
        assert_eq!((o.id, o.retry), (7, Some(true)));

        let m = Message::new("t", "not json");
        let e: ListenerError = m.body_json::<Order>().unwrap_err().into();
        assert!(e.message.starts_with("JSON error"), "{e}");
    }

    #[test]
    fn timestamps_and_redelivery() {
        let mut m = Message::new("t", "");
        m.born_timestamp_ms = 1_700_000_000_123;
        assert_eq!(
            m.born_time().duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(1_700_000_000_123)
        );
        assert!(!m.is_redelivery());
        let ctx = ConsumeContext::default().with_max_reconsume_times(2);
        assert!(!ctx.is_last_attempt(&m));
        let m = m.with_reconsume_times(2);
        assert!(m.is_redelivery());
        assert!(ctx.is_last_attempt(&m));
    }

    #[test]
    fn delay_levels() {
        assert_eq!(DelayLevel::new(0), None);
        assert_eq!(DelayLevel::new(19), None);
        assert_eq!(DelayLevel::new(18), Some(DelayLevel::MAX));
        for (input, level, secs) in [
            ("1", 1, 1),
            ("3", 3, 10),
            (" 10s ", 3, 10),
            ("1m", 5, 60),
            ("20m", 15, 1200),
            ("2h", 18, 7200),
        ] {
            let d: DelayLevel = input.parse().unwrap();
            assert_eq!(d.get(), level, "{input}");
            assert_eq!(d.default_delay(), Duration::from_secs(secs), "{input}");
        }
        for bad in ["0", "19", "15s", "", "-1"] {
            assert!(bad.parse::<DelayLevel>().is_err(), "{bad:?}");
        }
        assert_eq!(DelayLevel::MIN.to_string(), "1 (1s)");
    }

    #[test]
    fn forward_copies_payload_and_metadata() {
        let m = Message::new("in", "body").with_tags("T").with_key("k").with_property("p", "v");
        let out = m.forward_to("out");
        assert_eq!(
            out,
            OutgoingMessage::new("out", "body")
                .with_tags("T")
                .with_key("k")
                .with_property("p", "v")
        );
    }
}
