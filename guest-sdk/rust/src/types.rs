//! Plain Rust types for everything in the `rmq:listener` world.
//!
//! They mirror the WIT records one to one (see `wit/listener.wit` for field meanings) but carry no
//! wit-bindgen code, so listener logic written against them is testable on the host target.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::rmq::listener::types as wit;

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

/// A consumed message: what a Java listener sees in `MessageExt`, read in place.
///
/// The host hands a batch over as fixed-size records whose text and body are spans of one byte
/// buffer (see `wit/listener.wit`); a `Message` is a view of one record and that buffer, so
/// reading a field copies nothing and a listener that looks only at tags never touches bodies.
/// Text the host sent as invalid UTF-8 (it never does) reads as empty. Build messages for native
/// tests with [`testing::TestMessage`](crate::testing::TestMessage).
#[derive(Clone, Copy)]
pub struct Message<'a> {
    record: &'a wit::Message,
    data: &'a [u8],
}

impl<'a> Message<'a> {
    /// The view of `record`, whose spans point into `data`.
    pub(crate) fn new(record: &'a wit::Message, data: &'a [u8]) -> Self {
        Self { record, data }
    }

    /// The bytes of `span`; empty when it is out of range (a host bug, never a panic).
    fn bytes(&self, span: wit::Span) -> &'a [u8] {
        let start = span.start as usize;
        self.data.get(start..start.saturating_add(span.len as usize)).unwrap_or_default()
    }

    fn text(&self, span: wit::Span) -> &'a str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    /// The message's topic (the original one for redelivered messages).
    pub fn topic(&self) -> &'a str {
        self.text(self.record.topic)
    }

    /// Offset of the message in the batch's queue ([`ConsumeContext::queue`]).
    pub fn queue_offset(&self) -> u64 {
        self.record.queue_offset
    }

    /// Client-generated unique id (`UNIQ_KEY`), or [`offset_msg_id`](Self::offset_msg_id) when
    /// the message has none.
    pub fn msg_id(&self) -> &'a str {
        self.text(self.record.msg_id)
    }

    /// Broker-generated id (store host + commit-log offset).
    pub fn offset_msg_id(&self) -> &'a str {
        self.text(self.record.offset_msg_id)
    }

    /// The keys (RocketMQ `KEYS`, split on spaces).
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.text(self.record.keys).split(' ').filter(|k| !k.is_empty())
    }

    /// Whether one of the message's keys is `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.keys().any(|k| k == key)
    }

    /// The tag, if set.
    pub fn tags(&self) -> Option<&'a str> {
        self.record.tags.map(|t| self.text(t))
    }

    /// Whether the message's tag is `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags() == Some(tag)
    }

    /// User properties, sorted by name (RocketMQ system properties excluded).
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        self.text(self.record.properties).split('\u{2}').filter_map(|pair| pair.split_once('\u{1}'))
    }

    /// The user property `name`, if set (the last one wins if the producer set it twice).
    pub fn property(&self, name: &str) -> Option<&'a str> {
        self.properties().filter(|(k, _)| *k == name).last().map(|(_, v)| v)
    }

    /// The payload.
    pub fn body(&self) -> &'a [u8] {
        self.bytes(self.record.body)
    }

    /// The body as UTF-8.
    pub fn body_str(&self) -> Result<&'a str, std::str::Utf8Error> {
        std::str::from_utf8(self.body())
    }

    /// The body as UTF-8, invalid sequences replaced by U+FFFD.
    pub fn body_lossy(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.body())
    }

    /// Whether the body contains `needle` as bytes: what a text search on a body usually means,
    /// without validating the body as UTF-8 first.
    pub fn body_contains(&self, needle: &[u8]) -> bool {
        memchr::memmem::find(self.body(), needle).is_some()
    }

    /// The body parsed as JSON.
    #[cfg(feature = "json")]
    pub fn body_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.body())
    }

    /// Deliveries before this one (0 on first delivery).
    pub fn reconsume_times(&self) -> u32 {
        self.record.reconsume_times
    }

    /// Whether this is a redelivery (`reconsume_times > 0`).
    pub fn is_redelivery(&self) -> bool {
        self.reconsume_times() > 0
    }

    /// Milliseconds since the Unix epoch when the producer created the message.
    pub fn born_timestamp_ms(&self) -> u64 {
        self.record.born_timestamp
    }

    /// Milliseconds since the Unix epoch when the broker stored the message.
    pub fn store_timestamp_ms(&self) -> u64 {
        self.record.store_timestamp
    }

    /// When the producer created the message.
    pub fn born_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.born_timestamp_ms())
    }

    /// When the broker stored the message.
    pub fn store_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.store_timestamp_ms())
    }

    /// `ip:port` of the producer.
    pub fn born_host(&self) -> &'a str {
        self.text(self.record.born_host)
    }

    /// `ip:port` of the broker that stored the message.
    pub fn store_host(&self) -> &'a str {
        self.text(self.record.store_host)
    }

    /// An outgoing copy of this message for `topic`: same tags, keys, properties and body.
    pub fn forward_to(&self, topic: impl Into<String>) -> OutgoingMessage {
        OutgoingMessage {
            topic: topic.into(),
            tags: self.tags().map(str::to_owned),
            keys: self.keys().map(str::to_owned).collect(),
            properties: self.properties().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            body: self.body().to_vec(),
        }
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic())
            .field("queue_offset", &self.queue_offset())
            .field("msg_id", &self.msg_id())
            .field("tags", &self.tags())
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("properties", &self.properties().collect::<Vec<_>>())
            .field("body_len", &self.body().len())
            .field("reconsume_times", &self.reconsume_times())
            .finish_non_exhaustive()
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
    pub fn is_last_attempt(&self, msg: &Message<'_>) -> bool {
        msg.reconsume_times() >= self.max_reconsume_times
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

    use crate::testing::{TestMessage, batch, message};

    /// Runs `f` on the views of `msgs` laid out as the host lays out a batch.
    fn with_views<const N: usize, R>(
        msgs: [TestMessage; N],
        f: impl FnOnce([Message<'_>; N]) -> R,
    ) -> R {
        let b = batch(&msgs);
        f(std::array::from_fn(|i| Message::new(&b.messages[i], &b.data)))
    }

    #[test]
    fn property_lookup_last_wins_and_with_property_replaces() {
        let mut m = message("t", "x").with_property("a", "1").with_property("é", "");
        m.sent.properties.push(("a".into(), "2".into()));
        with_views([m], |[m]| {
            assert_eq!(m.property("a"), Some("2"));
            assert_eq!(m.property("é"), Some(""));
            assert_eq!(m.property("b"), None);
            assert_eq!(m.properties().collect::<Vec<_>>(), [("a", "1"), ("a", "2"), ("é", "")]);
        });
        let m = message("t", "x").with_property("a", "1").with_property("a", "3");
        assert_eq!(m.sent.properties, vec![("a".to_string(), "3".to_string())]);
    }

    #[test]
    fn tags_keys_ids_and_body() {
        let good = message("t", "héllo").with_tags("TagA").with_key("k1").with_key("k2");
        let bad = message("u", vec![0xff, b'a']).with_msg_id("UNIQ").with_queue_offset(9);
        with_views([good, bad], |[m, bad]| {
            assert!(m.has_tag("TagA"));
            assert!(!m.has_tag("TagB"));
            assert!(m.has_key("k2"));
            assert!(!m.has_key("k3"));
            assert_eq!(m.keys().collect::<Vec<_>>(), ["k1", "k2"]);
            assert_eq!(m.body_str().unwrap(), "héllo");
            assert!(m.body_contains("llo".as_bytes()) && !m.body_contains(b"hello"));
            assert_eq!((m.topic(), bad.topic()), ("t", "u"));

            assert_eq!((bad.tags(), bad.keys().count()), (None, 0));
            assert_eq!((bad.msg_id(), bad.queue_offset()), ("UNIQ", 9));
            assert!(bad.body_str().is_err());
            assert_eq!(bad.body_lossy(), "\u{fffd}a");
            let e: ListenerError = bad.body_str().unwrap_err().into();
            assert!(e.message.starts_with("body is not UTF-8"), "{e}");
            let out = bad.forward_to("o");
            assert_eq!((out.topic.as_str(), out.body.as_slice()), ("o", &[0xff, b'a'][..]));
        });
    }

    #[test]
    fn spans_out_of_range_read_as_empty() {
        let b = batch(&[message("t", "body")]);
        let mut record = b.messages[0];
        record.body = wit::Span { start: 2, len: u32::MAX };
        record.topic = wit::Span { start: u32::MAX, len: 1 };
        let m = Message::new(&record, &b.data);
        assert_eq!((m.body(), m.topic()), (&[][..], ""));
    }

    #[cfg(feature = "json")]
    #[test]
    fn body_json() {
        #[derive(Debug, serde::Deserialize)]
        struct Order {
            id: u32,
            retry: Option<bool>,
        }
        let msgs = [message("t", r#"{"id": 7, "retry": true}"#), message("t", "not json")];
        with_views(msgs, |[m, bad]| {
            let o: Order = m.body_json().unwrap();
            assert_eq!((o.id, o.retry), (7, Some(true)));
            let e: ListenerError = bad.body_json::<Order>().unwrap_err().into();
            assert!(e.message.starts_with("JSON error"), "{e}");
        });
    }

    #[test]
    fn timestamps_and_redelivery() {
        let mut first = message("t", "");
        first.born_timestamp_ms = 1_700_000_000_123;
        let again = first.clone().with_reconsume_times(2);
        let ctx = ConsumeContext::default().with_max_reconsume_times(2);
        with_views([first, again], |[m, again]| {
            assert_eq!(
                m.born_time().duration_since(UNIX_EPOCH).unwrap(),
                Duration::from_millis(1_700_000_000_123)
            );
            assert!(!m.is_redelivery());
            assert!(!ctx.is_last_attempt(&m));
            assert!(again.is_redelivery());
            assert!(ctx.is_last_attempt(&again));
        });
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
        let m = message("in", "body").with_tags("T").with_key("k").with_property("p", "v");
        let out = with_views([m], |[m]| m.forward_to("out"));
        assert_eq!(
            out,
            OutgoingMessage::new("out", "body")
                .with_tags("T")
                .with_key("k")
                .with_property("p", "v")
        );
    }
}
