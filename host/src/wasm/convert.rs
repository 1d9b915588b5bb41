//! Conversions between the host's types and the WIT types of `bindings.rs`, in both directions.
//!
//! Pure functions, so the mapping rules (which properties a guest sees, how delay levels are
//! clamped, which outgoing properties are refused) are unit tested without a component.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::client::{ClientError, SendResult, SendStatus};
use crate::consumer::listener::{ConsumeContext, ConsumeMode, MessageOutcome};
use crate::protocol::MessageQueue;
use crate::protocol::message::{
    Message, MessageExt, NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, property, push_offset_msg_id,
};
use crate::remoting::RemotingError;

use super::bindings::rmq::listener::producer as wit_producer;
use super::bindings::rmq::listener::types as wit;

/// Property names RocketMQ reserves (Java `MessageConst.STRING_HASH_SET`, plus the 5.x names the
/// host knows). A guest never sees them among a message's user properties — the ones a
/// listener needs are fields of the WIT record — and may not set them on an outgoing message.
const SYSTEM_PROPERTIES: &[&str] = &[
    property::KEYS,
    property::TAGS,
    property::WAIT,
    property::DELAY,
    property::RETRY_TOPIC,
    property::REAL_TOPIC,
    property::REAL_QID,
    property::TRAN_MSG,
    property::PGROUP,
    property::MIN_OFFSET,
    property::MAX_OFFSET,
    property::BUYER_ID,
    property::ORIGIN_MESSAGE_ID,
    property::TRANSFER_FLAG,
    property::CORRECTION_FLAG,
    property::MQ2_FLAG,
    property::RECONSUME_TIME,
    property::MSG_REGION,
    property::TRACE_ON,
    property::UNIQ_KEY,
    property::EXTEND_UNIQ_INFO,
    property::MAX_RECONSUME_TIMES,
    property::CONSUME_START_TIME,
    property::INNER_NUM,
    property::INNER_BASE,
    property::TRANSACTION_ID,
    property::CLUSTER,
    property::MSG_TYPE,
    property::SHARDING_KEY,
    property::TIMER_DELIVER_MS,
    property::TIMER_DELAY_SEC,
    property::TIMER_DELAY_MS,
    property::BORN_HOST,
    property::BORN_TIMESTAMP,
    property::CRC32,
    property::DLQ_ORIGIN_TOPIC,
    property::DLQ_ORIGIN_MESSAGE_ID,
    "TRAN_PREPARED_QUEUE_OFFSET",
    "CHECK_IMMUNITY_TIME_IN_SECONDS",
    "SHARDING_KEY",
    "INSTANCE_ID",
    "CORRELATION_ID",
    "REPLY_TO_CLIENT",
    "TTL",
    "ARRIVE_TIME",
    "PUSH_REPLY_TIME",
    "TRACE_CONTEXT",
    "POP_CK",
    "POP_CK_OFFSET",
    "1ST_POP_TIME",
    "__STARTDELIVERTIME",
];

/// True for a property name RocketMQ reserves for itself.
///
/// Asked for every property of every message a guest receives, so it is one hash lookup (FNV-1a,
/// names are short) instead of a scan of ~50 names, which showed up in the per-message profile.
pub fn is_system_property(name: &str) -> bool {
    static NAMES: OnceLock<HashSet<&'static str, BuildHasherDefault<Fnv1a>>> = OnceLock::new();
    NAMES.get_or_init(|| SYSTEM_PROPERTIES.iter().copied().collect()).contains(name)
}

/// FNV-1a: a fast hash for a fixed set of short, trusted keys (not for attacker-chosen keys
/// in a growing map; this set never changes after it is built).
#[derive(Debug, Clone, Copy)]
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The WIT context for a call.
pub fn context(ctx: &ConsumeContext, max_reconsume_times: u32) -> wit::ConsumeContext {
    wit::ConsumeContext {
        mode: match ctx.mode {
            ConsumeMode::Concurrently => wit::ConsumeMode::Concurrently,
            ConsumeMode::Orderly => wit::ConsumeMode::Orderly,
        },
        consumer_group: ctx.group.to_string(),
        queue: queue(&ctx.queue),
        max_reconsume_times,
    }
}

fn queue(q: &MessageQueue) -> wit::MessageQueue {
    wit::MessageQueue {
        topic: q.topic.clone(),
        broker_name: q.broker_name.clone(),
        queue_id: u32::try_from(q.queue_id.0).unwrap_or_default(),
    }
}

/// A batch too large for the guest's 32-bit spans (over 4 GiB of message data): never sent, the
/// call fails as if the guest had hit its memory cap, long before which it would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a batch of {bytes} bytes of message data does not fit 32-bit spans")]
pub struct BatchTooLarge {
    pub bytes: usize,
}

/// A batch encoded for the guest: fixed-size records of integers and spans, and the bytes the
/// spans point into — every body in message order, then every text. Lowering it into the guest
/// is two guest allocations and one copy of each byte (`lower::BatchView`), where a record of
/// strings and lists cost a dozen allocations per message in the guest and as many lifts and
/// frees.
///
/// The bodies stay in the pulled messages: the data's first `body_bytes` are theirs, copied
/// straight into guest memory when the batch is lowered, never into a host buffer first (that
/// second copy of every body was ~2 % of a fresh call's instructions at batch 32, ~0.5 µs).
#[derive(Debug)]
pub struct Encoded<'a> {
    pub messages: Vec<wit::Message>,
    /// Whose bodies open the data, in order.
    pub bodies: &'a [MessageExt],
    /// Their bodies' total length: where the text starts in the data.
    pub body_bytes: usize,
    /// Every text the spans name (topics, ids, keys, tags, properties, hosts); its spans start
    /// after the bodies.
    pub text: Vec<u8>,
}

impl Encoded<'_> {
    /// Length of the data the spans index: the bodies, then the text.
    pub fn data_len(&self) -> usize {
        self.body_bytes + self.text.len()
    }

    /// The data as one buffer, as the guest receives it (lowering writes the parts straight
    /// into guest memory instead).
    #[cfg(test)]
    pub fn data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data_len());
        for m in self.bodies {
            out.extend_from_slice(&m.body);
        }
        out.extend_from_slice(&self.text);
        out
    }
}

/// The guest's view of `messages` (see [`Encoded`]).
pub fn batch(messages: &[MessageExt]) -> Result<Encoded<'_>, BatchTooLarge> {
    let body_bytes: usize = messages.iter().map(|m| m.body.len()).sum();
    let mut out = Encoder {
        data: Data {
            base: body_bytes,
            text: Vec::with_capacity(messages.len() * ESTIMATED_TEXT_PER_MESSAGE),
        },
        next_body: 0,
        messages: Vec::with_capacity(messages.len()),
        last_topic: None,
        last_born_host: None,
        last_store_host: None,
    };
    for m in messages {
        out.message(m);
    }
    let bytes = body_bytes + out.data.text.len();
    if u32::try_from(bytes).is_err() {
        return Err(BatchTooLarge { bytes });
    }
    Ok(Encoded { messages: out.messages, bodies: messages, body_bytes, text: out.data.text })
}

/// Text bytes per message besides the body, for the buffer's first allocation: a topic, two
/// ids, two hosts, a tag and a few keys and properties.
const ESTIMATED_TEXT_PER_MESSAGE: usize = 192;

/// Appends messages' texts to one buffer and lays their bodies out before it. Spans wrap past
/// 4 GiB; [`batch`] refuses such a batch.
///
/// Values that repeat from one message to the next (the topic, the store host, usually the born
/// host) are written once and their span shared ([`write_once`]): spans are read-only views, so
/// two messages may point at the same bytes.
///
/// [`write_once`]: Data::write_once
struct Encoder<'a> {
    data: Data,
    /// Where the next body starts in the data.
    next_body: usize,
    messages: Vec<wit::Message>,
    last_topic: Option<(&'a str, wit::Span)>,
    last_born_host: Option<(SocketAddr, wit::Span)>,
    last_store_host: Option<(SocketAddr, wit::Span)>,
}

/// The text part of a batch's data, which starts `base` bytes in (after the bodies).
struct Data {
    base: usize,
    text: Vec<u8>,
}

impl Data {
    /// The span of whatever `write` appends.
    fn span_of(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> wit::Span {
        let start = self.text.len();
        write(&mut self.text);
        span(self.base + start, self.text.len() - start)
    }

    fn text(&mut self, s: &str) -> wit::Span {
        self.span_of(|d| d.extend_from_slice(s.as_bytes()))
    }

    /// The span of what `write` appends for `value`, or the previous value's span when `value`
    /// is the same as the last one written for this field (`last`).
    fn write_once<K: PartialEq + Copy>(
        &mut self,
        last: &mut Option<(K, wit::Span)>,
        value: K,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> wit::Span {
        match *last {
            Some((prev, span)) if prev == value => span,
            _ => {
                let span = self.span_of(write);
                *last = Some((value, span));
                span
            }
        }
    }
}

fn span(start: usize, len: usize) -> wit::Span {
    #[allow(clippy::cast_possible_truncation, reason = "batch() refuses data over u32::MAX")]
    wit::Span { start: start as u32, len: len as u32 }
}

impl<'a> Encoder<'a> {
    fn message(&mut self, m: &'a MessageExt) {
        let data = &mut self.data;
        let topic = data.write_once(&mut self.last_topic, m.topic.as_str(), |d| {
            d.extend_from_slice(m.topic.as_bytes());
        });
        let offset_id = data.span_of(|d| push_offset_msg_id(d, m.store_host, m.commit_log_offset));
        // One pass over the properties: the three a record carries as fields, and the user
        // properties in RocketMQ's encoding (a map, so sorted by name).
        let (mut keys, mut tags, mut uniq) = (None, None, None);
        let properties = data.span_of(|d| {
            for (k, v) in m.properties.iter() {
                match k {
                    property::KEYS => keys = Some(v),
                    property::TAGS => tags = Some(v),
                    property::UNIQ_KEY => uniq = Some(v),
                    _ if is_system_property(k) => {}
                    _ => {
                        d.extend_from_slice(k.as_bytes());
                        d.push(NAME_VALUE_SEPARATOR as u8);
                        d.extend_from_slice(v.as_bytes());
                        d.push(PROPERTY_SEPARATOR as u8);
                    }
                }
            }
        });
        let msg_id = uniq.map_or(offset_id, |id| data.text(id));
        let keys = data.text(keys.unwrap_or_default());
        let tags = tags.map(|t| data.text(t));
        let body = span(self.next_body, m.body.len());
        self.next_body += m.body.len();
        let born_host = data.write_once(&mut self.last_born_host, m.born_host, |d| {
            push_socket_addr(d, m.born_host);
        });
        let store_host = data.write_once(&mut self.last_store_host, m.store_host, |d| {
            push_socket_addr(d, m.store_host);
        });
        self.messages.push(wit::Message {
            queue_offset: u64::try_from(m.queue_offset.0).unwrap_or_default(),
            born_timestamp: u64::try_from(m.born_timestamp.0).unwrap_or_default(),
            store_timestamp: u64::try_from(m.store_timestamp.0).unwrap_or_default(),
            reconsume_times: u32::try_from(m.reconsume_times).unwrap_or_default(),
            topic,
            msg_id,
            offset_msg_id: offset_id,
            keys,
            tags,
            properties,
            body,
            born_host,
            store_host,
        });
    }
}

/// `addr.to_string()` appended to `out`, without the formatting machinery for IPv4 (two of
/// these per message showed up in the per-message profile).
fn push_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u32::from(octet));
            }
            out.push(b':');
            push_decimal(out, u32::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + u8::try_from(n % 10).expect("a digit");
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Property naming the plugin version (content hash prefix) that decided a DLQ outcome.
pub const PROP_VERSION: &str = "RMQ_WASM_VERSION";
/// Property naming why the sandbox stopped a call (an `AbortKind` name).
pub const PROP_ABORT: &str = "RMQ_WASM_ABORT";
/// Property with the fuel the isolated call used.
pub const PROP_FUEL_USED: &str = "RMQ_WASM_FUEL_USED";
/// Property naming the plugin (its listener name).
pub const PROP_PLUGIN: &str = "RMQ_WASM_PLUGIN";

/// Longest guest-supplied text kept in a `listener-error` message or a dead-letter reason
/// (bytes): both are logged, and a reason is stored in the DLQ copy's properties.
pub const MAX_GUEST_TEXT: usize = 1024;

/// Guest text made safe to log and store: control characters (newlines, terminal escapes) are
/// written as escapes (`\n`, `\u{1b}`), so a plugin cannot forge log lines, and the result is cut
/// to at most `max` bytes (plus a marker) at a character boundary. Returns whether it was cut.
pub fn guest_text(s: &str, max: usize) -> (String, bool) {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            out.push_str(" …[truncated]");
            return (out, true);
        }
    }
    (out, false)
}

/// A guest outcome as the consumer's outcome. Delay levels are clamped into 1..=18, as the WIT
/// promises; a dead letter records its reason and the plugin version.
pub fn outcome(o: wit::MessageOutcome, plugin: &str, version: &str) -> MessageOutcome {
    match o {
        wit::MessageOutcome::Success => MessageOutcome::Success,
        wit::MessageOutcome::RetryLater(level) => {
            MessageOutcome::RetryLater { delay_level: level.map(|l| i32::from(l.clamp(1, 18))) }
        }
        wit::MessageOutcome::DeadLetter(reason) => MessageOutcome::DeadLetter {
            reason: reason
                .map_or_else(|| "listener".to_owned(), |r| guest_text(&r, MAX_GUEST_TEXT).0),
            properties: vec![
                (PROP_PLUGIN.to_owned(), plugin.to_owned()),
                (PROP_VERSION.to_owned(), version.to_owned()),
            ],
        },
    }
}

/// An outgoing guest message as a producer message, or why it is refused (`invalid`).
pub fn outgoing(m: wit_producer::OutgoingMessage) -> Result<Message, String> {
    if m.topic.trim().is_empty() {
        return Err("empty topic".to_owned());
    }
    let mut msg = Message::new(m.topic, m.body);
    if let Some(tags) = m.tags.filter(|t| !t.is_empty()) {
        msg = msg.with_tags(tags);
    }
    if !m.keys.is_empty() {
        msg = msg.with_keys(m.keys);
    }
    for (k, v) in m.properties {
        if is_system_property(&k) {
            return Err(format!("property {k} is reserved by RocketMQ"));
        }
        msg = msg.with_property(k, v);
    }
    msg.properties.validate().map_err(|e| e.to_string())?;
    Ok(msg)
}

/// A send result as the guest's receipt.
pub fn receipt(r: SendResult) -> wit_producer::SendReceipt {
    wit_producer::SendReceipt {
        status: match r.status {
            SendStatus::Ok => wit_producer::SendStatus::Ok,
            SendStatus::FlushDiskTimeout => wit_producer::SendStatus::FlushDiskTimeout,
            SendStatus::FlushSlaveTimeout => wit_producer::SendStatus::FlushSlaveTimeout,
            SendStatus::SlaveNotAvailable => wit_producer::SendStatus::SlaveNotAvailable,
        },
        msg_id: r.msg_id,
        offset_msg_id: r.offset_msg_id,
        queue: queue(&r.queue),
        queue_offset: u64::try_from(r.queue_offset.0).unwrap_or_default(),
    }
}

/// A send failure as the guest's error: `timeout` only for a broker that did not answer, so a
/// guest can tell "try again" from "the broker said no".
pub fn produce_error(e: &ClientError) -> wit_producer::ProduceError {
    match e {
        ClientError::InvalidMessage(reason) => wit_producer::ProduceError::Invalid(reason.clone()),
        ClientError::Remoting(
            RemotingError::Timeout { .. } | RemotingError::ConnectTimeout { .. },
        ) => wit_producer::ProduceError::Timeout,
        other => wit_producer::ProduceError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::Properties;
    use crate::protocol::{QueueId, QueueOffset};

    #[test]
    fn guest_text_escapes_control_characters_and_is_bounded() {
        let table: [(&str, usize, &str, bool); 6] = [
            ("plain", 100, "plain", false),
            ("two\nlines", 100, "two\\nlines", false),
            ("\u{1b}[31mred", 100, "\\u{1b}[31mred", false),
            ("tab\there", 100, "tab\\there", false),
            ("abcdef", 3, "abc …[truncated]", true),
            ("aéé", 4, "aé …[truncated]", true),
        ];
        for (input, max, expected, cut) in table {
            assert_eq!(guest_text(input, max), (expected.to_owned(), cut), "{input:?}");
        }
        // An escape is never split: it is kept whole or dropped whole.
        assert_eq!(guest_text("ab\n", 3), ("ab …[truncated]".to_owned(), true));
    }

    #[test]
    fn a_dead_letter_reason_is_sanitised_and_capped() {
        let long = format!("line1\nFAKE LOG LINE {}", "x".repeat(5000));
        let MessageOutcome::DeadLetter { reason, .. } =
            outcome(wit::MessageOutcome::DeadLetter(Some(long)), "p", "v")
        else {
            panic!("a dead letter")
        };
        assert!(reason.starts_with("line1\\nFAKE LOG LINE"), "{reason}");
        assert!(!reason.contains('\n'));
        assert!(reason.len() <= MAX_GUEST_TEXT + " …[truncated]".len(), "{}", reason.len());
    }

    /// The text of `span` in `data` (an [`Encoded::data`]).
    fn text(data: &[u8], span: wit::Span) -> &str {
        let start = span.start as usize;
        std::str::from_utf8(&data[start..start + span.len as usize]).unwrap()
    }

    #[test]
    fn guests_see_user_properties_only_and_the_ids() {
        let mut properties = Properties::new();
        properties.insert(property::KEYS, "k1 k2");
        properties.insert(property::TAGS, "TagA");
        properties.insert(property::UNIQ_KEY, "UNIQ");
        properties.insert(property::CONSUME_START_TIME, "1");
        properties.insert("colour", "blue");
        properties.insert("size", "");
        let m = MessageExt {
            topic: "t".into(),
            properties,
            queue_id: QueueId(3),
            queue_offset: QueueOffset(42),
            reconsume_times: 2,
            body: bytes::Bytes::from_static(b"hi"),
            ..MessageExt::default()
        };
        let b = batch(std::slice::from_ref(&m)).unwrap();
        let d = b.data();
        let [w] = b.messages.as_slice() else { panic!("one message: {:?}", b.messages) };
        assert_eq!(text(&d, w.properties), "colour\u{1}blue\u{2}size\u{1}\u{2}");
        assert_eq!(text(&d, w.keys), "k1 k2");
        assert_eq!(w.tags.map(|t| text(&d, t)), Some("TagA"));
        assert_eq!(text(&d, w.msg_id), "UNIQ");
        assert_eq!(text(&d, w.topic), "t");
        assert_eq!((w.queue_offset, w.reconsume_times), (42, 2));
        assert_eq!(text(&d, w.body), "hi");
    }

    #[test]
    fn hosts_and_ids_are_formatted_like_java_and_spans_do_not_overlap() {
        let m = MessageExt {
            born_host: "10.0.255.7:54321".parse().unwrap(),
            store_host: "[::1]:10911".parse().unwrap(),
            ..MessageExt::default()
        };
        let untagged = MessageExt { body: bytes::Bytes::from_static(b"second"), ..m.clone() };
        let pair = [m.clone(), untagged.clone()];
        let b = batch(&pair).unwrap();
        let d = b.data();
        let [w, second] = b.messages.as_slice() else { panic!("two messages") };
        assert_eq!(text(&d, w.born_host), "10.0.255.7:54321");
        assert_eq!(text(&d, w.store_host), "[::1]:10911");
        assert_eq!(text(&d, w.offset_msg_id), m.offset_msg_id());
        let span = |s: wit::Span| (s.start, s.len);
        assert_eq!(span(w.msg_id), span(w.offset_msg_id), "no UNIQ_KEY: the offset id");
        assert!(w.tags.is_none());
        assert_eq!((text(&d, w.keys), text(&d, w.properties)), ("", ""));
        assert_eq!(text(&d, second.body), "second");
        // Repeated values are written once and their spans shared.
        assert_eq!(span(second.topic), span(w.topic));
        assert_eq!(span(second.store_host), span(w.store_host));
        let other = MessageExt { topic: "u".into(), born_host: "10.0.0.1:1".parse().unwrap(), ..m };
        let pair = [untagged, other];
        let b = batch(&pair).unwrap();
        let d = b.data();
        let [first, other] = b.messages.as_slice() else { panic!("two messages") };
        assert_eq!((text(&d, first.topic), text(&d, other.topic)), ("", "u"));
        assert_eq!(
            (text(&d, first.born_host), text(&d, other.born_host)),
            ("10.0.255.7:54321", "10.0.0.1:1")
        );
        assert_eq!(span(first.store_host), span(other.store_host));
        let default = [MessageExt::default()];
        let zero = batch(&default).unwrap();
        assert_eq!(text(&zero.data(), zero.messages[0].born_host), "0.0.0.0:0");
        assert!(batch(&[]).unwrap().messages.is_empty());
    }

    /// The data opens with the bodies, back to back in message order (lowering copies them there
    /// straight from the messages), and every text span points past them.
    #[test]
    fn bodies_open_the_data_and_texts_follow_them() {
        let m = |body: &'static [u8]| MessageExt {
            topic: "t".into(),
            body: bytes::Bytes::from_static(body),
            ..MessageExt::default()
        };
        let msgs = [m(b"ab"), m(b""), m(b"cde")];
        let b = batch(&msgs).unwrap();
        let bodies: Vec<_> = b.messages.iter().map(|w| (w.body.start, w.body.len)).collect();
        assert_eq!(bodies, [(0, 2), (2, 0), (2, 3)]);
        let d = b.data();
        assert_eq!(d.len(), b.data_len());
        assert_eq!(&d[..5], b"abcde");
        assert_eq!(&d[5..], b.text.as_slice());
        for w in &b.messages {
            for s in [w.topic, w.msg_id, w.offset_msg_id, w.keys, w.properties, w.born_host] {
                assert!(s.start >= 5 && (s.start + s.len) as usize <= d.len(), "{s:?}");
            }
        }
        assert_eq!(text(&d, b.messages[2].topic), "t");
    }

    #[test]
    fn every_reserved_name_is_a_system_property_and_nothing_else() {
        assert!(SYSTEM_PROPERTIES.iter().all(|p| is_system_property(p)));
        for user in ["colour", "", "keys", "TAGS ", "ZZZ", "AAA"] {
            assert!(!is_system_property(user), "{user}");
        }
    }

    #[test]
    fn delay_levels_are_clamped_and_dead_letters_carry_the_version() {
        let o = outcome(wit::MessageOutcome::RetryLater(Some(40)), "p", "v");
        assert_eq!(o, MessageOutcome::RetryLater { delay_level: Some(18) });
        let o = outcome(wit::MessageOutcome::RetryLater(Some(0)), "p", "v");
        assert_eq!(o, MessageOutcome::RetryLater { delay_level: Some(1) });
        assert_eq!(outcome(wit::MessageOutcome::RetryLater(None), "p", "v"), MessageOutcome::RETRY);
        let MessageOutcome::DeadLetter { reason, properties } =
            outcome(wit::MessageOutcome::DeadLetter(None), "p", "abc")
        else {
            panic!("not a dead letter");
        };
        assert_eq!(reason, "listener");
        assert!(properties.contains(&(PROP_VERSION.to_owned(), "abc".to_owned())));
    }

    #[test]
    fn outgoing_messages_may_not_set_reserved_properties() {
        let m = |props: Vec<(String, String)>| wit_producer::OutgoingMessage {
            topic: "out".into(),
            tags: Some("T".into()),
            keys: vec!["a".into(), "b".into()],
            properties: props,
            body: b"x".to_vec(),
        };
        let ok = outgoing(m(vec![("colour".into(), "red".into())])).unwrap();
        assert_eq!(ok.tags(), Some("T"));
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(ok.property("colour"), Some("red"));
        let err = outgoing(m(vec![(property::DELAY.into(), "3".into())])).unwrap_err();
        assert!(err.contains("DELAY"), "{err}");
        let mut empty = m(vec![]);
        empty.topic = " ".into();
        assert!(outgoing(empty).is_err());
    }
}
