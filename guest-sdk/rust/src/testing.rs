//! A fake host for native unit tests of listener logic (not on `wasm32`).
//!
//! The state is thread-local (each `#[test]` runs on its own thread), so tests do not interfere:
//!
//! ```
//! use rmq_wasm_guest::{testing, ConsumeContext, Listener, ListenerError, Message, Outcome};
//!
//! struct Echo;
//! impl Listener for Echo {
//!     fn consume(_: &ConsumeContext, msgs: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
//!         let prefix = rmq_wasm_guest::config::get_or("prefix", "");
//!         for m in msgs {
//!             rmq_wasm_guest::info!("{prefix}{}", m.body_lossy());
//!         }
//!         Ok(vec![Outcome::Success; msgs.len()])
//!     }
//! }
//!
//! testing::set_config([("prefix", "> ")]);
//! let out = testing::consume::<Echo>(&ConsumeContext::default(), &[testing::message("t", "hi")]);
//! assert_eq!(out, Ok(vec![Outcome::Success]));
//! assert_eq!(testing::logs()[0].1, "> hi");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use crate::bindings::exports::rmq::listener::handler::Guest;
use crate::bindings::rmq::listener::types as wit;
#[cfg(doc)]
use crate::types::Message;
use crate::types::{
    ConsumeContext, Level, ListenerError, MessageQueue, Outcome, OutgoingMessage, ProduceError,
    SendReceipt,
};

type SendHook = Box<dyn FnMut(&OutgoingMessage) -> Result<SendReceipt, ProduceError>>;

/// The fake host's state.
#[derive(Default)]
pub(crate) struct FakeHost {
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) logs: Vec<(Level, String)>,
    pub(crate) sent: Vec<OutgoingMessage>,
    send_hook: Option<SendHook>,
}

impl fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeHost")
            .field("config", &self.config)
            .field("logs", &self.logs.len())
            .field("sent", &self.sent.len())
            .finish_non_exhaustive()
    }
}

thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

pub(crate) fn with_host<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

pub(crate) fn fake_send(msg: &OutgoingMessage) -> Result<SendReceipt, ProduceError> {
    // Take the hook out while it runs, so it may itself use the fake host.
    let mut hook = with_host(|h| h.send_hook.take());
    let result = match hook.as_mut() {
        Some(hook) => hook(msg),
        None => {
            let offset = with_host(|h| h.sent.len() as u64);
            Ok(SendReceipt::new(
                format!("FAKE{offset:016X}"),
                MessageQueue::new(&msg.topic, "fake-broker", 0),
                offset,
            ))
        }
    };
    with_host(|h| {
        if h.send_hook.is_none() {
            h.send_hook = hook;
        }
        if result.is_ok() {
            h.sent.push(msg.clone());
        }
    });
    result
}

/// Clears config, logs, sent messages and the send hook.
pub fn reset() {
    with_host(|h| *h = FakeHost::default());
}

/// Replaces the listener's config with `pairs`.
pub fn set_config<K, V>(pairs: impl IntoIterator<Item = (K, V)>)
where
    K: Into<String>,
    V: Into<String>,
{
    let config = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    with_host(|h| h.config = config);
}

/// Decides the result of every later [`crate::producer::send`] (by default every send succeeds
/// with a made-up receipt). Successful sends are recorded in [`sent`].
pub fn on_send(hook: impl FnMut(&OutgoingMessage) -> Result<SendReceipt, ProduceError> + 'static) {
    with_host(|h| h.send_hook = Some(Box::new(hook)));
}

/// Lines logged so far, oldest first.
pub fn logs() -> Vec<(Level, String)> {
    with_host(|h| h.logs.clone())
}

/// Messages successfully sent so far, oldest first.
pub fn sent() -> Vec<OutgoingMessage> {
    with_host(|h| h.sent.clone())
}

/// A message to hand a listener in a native test: what a producer sent (`sent`, an
/// [`OutgoingMessage`]) plus what the broker and the consumer add, built with [`message`] and the
/// `with_*` methods. [`consume`] lays a slice of them out as the host lays out a batch, so the
/// listener reads them through the same [`Message`] views it gets in Wasm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestMessage {
    /// Topic, tags, keys, user properties (laid out sorted by name, as the host does) and body.
    pub sent: OutgoingMessage,
    /// Offset in its queue.
    pub queue_offset: u64,
    /// `UNIQ_KEY`; empty: the offset msg id stands in, as on the host.
    pub msg_id: String,
    /// Broker-generated id.
    pub offset_msg_id: String,
    /// Producer clock, ms since the Unix epoch.
    pub born_timestamp_ms: u64,
    /// Broker clock, ms since the Unix epoch.
    pub store_timestamp_ms: u64,
    /// `ip:port` of the producer.
    pub born_host: String,
    /// `ip:port` of the broker.
    pub store_host: String,
    /// Deliveries before this one.
    pub reconsume_times: u32,
}

/// A test message on `topic` with `body`; every other field empty or zero.
pub fn message(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> TestMessage {
    TestMessage { sent: OutgoingMessage::new(topic, body), ..TestMessage::default() }
}

impl TestMessage {
    /// Sets the tag.
    #[must_use]
    pub fn with_tags(self, tags: impl Into<String>) -> Self {
        Self { sent: self.sent.with_tags(tags), ..self }
    }

    /// Adds a key.
    #[must_use]
    pub fn with_key(self, key: impl Into<String>) -> Self {
        Self { sent: self.sent.with_key(key), ..self }
    }

    /// Adds a user property (replacing an earlier one with the same name).
    #[must_use]
    pub fn with_property(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { sent: self.sent.with_property(name, value), ..self }
    }

    /// Sets the message id (`UNIQ_KEY`).
    #[must_use]
    pub fn with_msg_id(mut self, msg_id: impl Into<String>) -> Self {
        self.msg_id = msg_id.into();
        self
    }

    /// Sets the queue offset.
    #[must_use]
    pub fn with_queue_offset(mut self, queue_offset: u64) -> Self {
        self.queue_offset = queue_offset;
        self
    }

    /// Sets how often the message was delivered before.
    #[must_use]
    pub fn with_reconsume_times(mut self, reconsume_times: u32) -> Self {
        self.reconsume_times = reconsume_times;
        self
    }
}

/// `msgs` as the host's batch, byte for byte: fixed-size records, every text and body appended
/// to one buffer in the host's order (topic, offset msg id, user properties sorted by name,
/// `UNIQ_KEY`, keys, tags, body, born host, store host), a topic or host equal to the previous
/// message's written once and its span shared (`host/src/wasm/convert.rs::batch`).
pub(crate) fn batch(msgs: &[TestMessage]) -> wit::Batch {
    let mut data = Vec::new();
    let mut last_topic: Option<(&str, wit::Span)> = None;
    let mut last_born: Option<(&str, wit::Span)> = None;
    let mut last_store: Option<(&str, wit::Span)> = None;
    let messages = msgs
        .iter()
        .map(|m| {
            let topic = span_once(&mut data, &mut last_topic, &m.sent.topic);
            let offset_msg_id = span(&mut data, m.offset_msg_id.as_bytes());
            let mut props: Vec<&(String, String)> = m.sent.properties.iter().collect();
            props.sort_by(|a, b| a.0.cmp(&b.0));
            let properties: String =
                props.iter().map(|(k, v)| format!("{k}\u{1}{v}\u{2}")).collect();
            let properties = span(&mut data, properties.as_bytes());
            let msg_id = if m.msg_id.is_empty() {
                offset_msg_id
            } else {
                span(&mut data, m.msg_id.as_bytes())
            };
            let keys = span(&mut data, m.sent.keys.join(" ").as_bytes());
            let tags = m.sent.tags.as_ref().map(|t| span(&mut data, t.as_bytes()));
            let body = span(&mut data, &m.sent.body);
            let born_host = span_once(&mut data, &mut last_born, &m.born_host);
            let store_host = span_once(&mut data, &mut last_store, &m.store_host);
            wit::Message {
                queue_offset: m.queue_offset,
                born_timestamp: m.born_timestamp_ms,
                store_timestamp: m.store_timestamp_ms,
                reconsume_times: m.reconsume_times,
                topic,
                msg_id,
                offset_msg_id,
                keys,
                tags,
                properties,
                body,
                born_host,
                store_host,
            }
        })
        .collect();
    wit::Batch { messages, data }
}

/// Appends `bytes` to `data`: their span.
fn span(data: &mut Vec<u8>, bytes: &[u8]) -> wit::Span {
    let start = u32::try_from(data.len()).expect("a test batch under 4 GiB");
    data.extend_from_slice(bytes);
    wit::Span { start, len: u32::try_from(bytes.len()).expect("a field under 4 GiB") }
}

/// The previous message's span when `value` equals its value for this field (`last`), else a
/// new one, as the host shares a repeated topic or host.
fn span_once<'a>(
    data: &mut Vec<u8>,
    last: &mut Option<(&'a str, wit::Span)>,
    value: &'a str,
) -> wit::Span {
    match *last {
        Some((prev, s)) if prev == value => s,
        _ => {
            let s = span(data, value.as_bytes());
            *last = Some((value, s));
            s
        }
    }
}

/// Runs listener `L` on a batch the way the Wasm export and the host do: the context and
/// messages are converted to the WIT types (the messages laid out as the host lays out a batch),
/// the outcomes come back through the WIT types too, and (like the host) a short list is padded
/// with [`Outcome::retry`] and extra outcomes are dropped.
pub fn consume<L: crate::Listener>(
    ctx: &ConsumeContext,
    msgs: &[TestMessage],
) -> Result<Vec<Outcome>, ListenerError> {
    let result = crate::__export::Adapter::<L>::consume(ctx.clone().into(), batch(msgs));
    let mut outcomes: Vec<Outcome> =
        result.map_err(ListenerError::from)?.into_iter().map(Into::into).collect();
    outcomes.resize(msgs.len(), Outcome::retry());
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DelayLevel, Listener, Message, config, producer};

    /// Retries messages tagged with the configured tag, forwards the rest.
    struct RetryOrForward;

    impl Listener for RetryOrForward {
        fn consume(
            _ctx: &ConsumeContext,
            msgs: &[Message<'_>],
        ) -> Result<Vec<Outcome>, ListenerError> {
            let tag = config::require("retry-tag")?;
            let level: Option<DelayLevel> = config::parse("delay")?;
            msgs.iter()
                .map(|m| {
                    if m.has_tag(&tag) {
                        crate::warn!("retrying {}", m.msg_id());
                        return Ok(Outcome::RetryLater(level));
                    }
                    producer::send(&m.forward_to("out"))?;
                    Ok(Outcome::Success)
                })
                .collect()
        }
    }

    /// Acknowledges only the first message (Java's `ackIndex = 0`).
    struct OneOutcome;

    impl Listener for OneOutcome {
        fn consume(_: &ConsumeContext, _: &[Message<'_>]) -> Result<Vec<Outcome>, ListenerError> {
            Ok(vec![Outcome::Success])
        }
    }

    fn batch() -> Vec<TestMessage> {
        vec![
            message("in", "a").with_msg_id("1").with_tags("X"),
            message("in", "b")
                .with_msg_id("2")
                .with_tags("Y")
                .with_key("k")
                .with_property("p", "v"),
        ]
    }

    #[test]
    fn listener_runs_through_the_export_adapter() {
        set_config([("retry-tag", "X"), ("delay", "30s")]);
        let out = consume::<RetryOrForward>(&ConsumeContext::default(), &batch()).unwrap();
        assert_eq!(out, vec![Outcome::retry_after(DelayLevel::new(4).unwrap()), Outcome::Success]);
        let forwarded =
            OutgoingMessage::new("out", "b").with_tags("Y").with_key("k").with_property("p", "v");
        assert_eq!(sent(), vec![forwarded]);
        assert_eq!(logs(), vec![(Level::Warn, "retrying 1".to_string())]);
        assert_eq!(
            config::all(),
            vec![
                ("delay".to_string(), "30s".to_string()),
                ("retry-tag".to_string(), "X".to_string())
            ]
        );
    }

    #[test]
    fn config_errors_become_listener_errors() {
        let e = consume::<RetryOrForward>(&ConsumeContext::default(), &batch()).unwrap_err();
        assert_eq!(e.message, "config key retry-tag is not set");
        set_config([("retry-tag", "X"), ("delay", "19")]);
        let e = consume::<RetryOrForward>(&ConsumeContext::default(), &batch()).unwrap_err();
        assert!(e.message.starts_with("config delay = \"19\": invalid delay level"), "{e}");
    }

    #[test]
    fn produce_failures_reach_the_listener() {
        set_config([("retry-tag", "none")]);
        on_send(|m| Err(ProduceError::Denied(format!("topic {} not allowed", m.topic))));
        let e = consume::<RetryOrForward>(&ConsumeContext::default(), &batch()).unwrap_err();
        assert_eq!(e.message, "produce failed: denied by host: topic out not allowed");
        assert!(sent().is_empty());
        reset();
        assert!(config::get("retry-tag").is_none());
    }

    /// The layout `host/src/wasm/convert.rs` produces, spelled out (its own tests pin the host
    /// side): the SDKs for other languages check the same bytes.
    #[test]
    fn batches_are_laid_out_as_the_host_lays_them_out() {
        let mut a =
            message("t", "b1").with_msg_id("U").with_tags("T").with_key("k1").with_key("k2");
        a = a.with_property("z", "1").with_property("a", "2");
        a.offset_msg_id = "O1".into();
        a.born_host = "h:1".into();
        a.store_host = "s:2".into();
        let mut b = message("t", "b2");
        b.offset_msg_id = "O2".into();
        b.born_host = "h:1".into();
        b.store_host = "s:3".into();
        let out = super::batch(&[a, b]);
        assert_eq!(
            std::str::from_utf8(&out.data).unwrap(),
            "tO1a\u{1}2\u{2}z\u{1}1\u{2}Uk1 k2Tb1h:1s:2O2b2s:3"
        );
        let span = |s: wit::Span| (s.start, s.len);
        let (m, n) = (&out.messages[0], &out.messages[1]);
        assert_eq!(
            [span(m.topic), span(m.offset_msg_id), span(m.msg_id)],
            [(0, 1), (1, 2), (11, 1)]
        );
        assert_eq!(span(m.tags.unwrap()), (17, 1));
        assert_eq!([span(n.topic), span(n.born_host), span(n.msg_id)], [(0, 1), (20, 3), (26, 2)]);
        assert_eq!((span(n.store_host), n.tags.is_none(), span(n.keys)), ((30, 3), true, (28, 0)));
    }

    #[test]
    fn missing_outcomes_are_retries_like_the_host() {
        let out = consume::<OneOutcome>(&ConsumeContext::default(), &batch()).unwrap();
        assert_eq!(out, vec![Outcome::Success, Outcome::retry()]);
        let out = consume::<OneOutcome>(&ConsumeContext::default(), &batch()[..0]).unwrap();
        assert_eq!(out, vec![]);
    }
}
