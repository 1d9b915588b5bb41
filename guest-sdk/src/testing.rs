//! A fake host for native unit tests of listener logic (not on `wasm32`).
//!
//! The state is thread-local (each `#[test]` runs on its own thread), so tests do not interfere:
//!
//! ```
//! use rmq_wasm_guest::{testing, ConsumeContext, Listener, ListenerError, Message, Outcome};
//!
//! struct Echo;
//! impl Listener for Echo {
//!     fn consume(_: &ConsumeContext, msgs: &[Message]) -> Result<Vec<Outcome>, ListenerError> {
//!         let prefix = rmq_wasm_guest::config::get_or("prefix", "");
//!         for m in msgs {
//!             rmq_wasm_guest::info!("{prefix}{}", m.body_lossy());
//!         }
//!         Ok(vec![Outcome::Success; msgs.len()])
//!     }
//! }
//!
//! testing::set_config([("prefix", "> ")]);
//! let out = testing::consume::<Echo>(&ConsumeContext::default(), &[Message::new("t", "hi")]);
//! assert_eq!(out, Ok(vec![Outcome::Success]));
//! assert_eq!(testing::logs()[0].1, "> hi");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use crate::bindings::exports::rmq::listener::handler::Guest;
use crate::types::{
    ConsumeContext, Level, ListenerError, Message, MessageQueue, Outcome, OutgoingMessage,
    ProduceError, SendReceipt,
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

/// Runs listener `L` on a batch the way the Wasm export and the host do: the context and
/// messages are converted to the WIT types and back, the outcomes come back through the WIT types
/// too, and (like the host) a short list is padded with [`Outcome::retry`] and extra outcomes
/// are dropped.
pub fn consume<L: crate::Listener>(
    ctx: &ConsumeContext,
    msgs: &[Message],
) -> Result<Vec<Outcome>, ListenerError> {
    let result = crate::__export::Adapter::<L>::consume(
        ctx.clone().into(),
        msgs.iter().cloned().map(Into::into).collect(),
    );
    let mut outcomes: Vec<Outcome> =
        result.map_err(ListenerError::from)?.into_iter().map(Into::into).collect();
    outcomes.resize(msgs.len(), Outcome::retry());
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DelayLevel, Listener, config, producer};

    /// Retries messages tagged with the configured tag, forwards the rest.
    struct RetryOrForward;

    impl Listener for RetryOrForward {
        fn consume(_ctx: &ConsumeContext, msgs: &[Message]) -> Result<Vec<Outcome>, ListenerError> {
            let tag = config::require("retry-tag")?;
            let level: Option<DelayLevel> = config::parse("delay")?;
            msgs.iter()
                .map(|m| {
                    if m.has_tag(&tag) {
                        crate::warn!("retrying {}", m.msg_id);
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
        fn consume(_: &ConsumeContext, _: &[Message]) -> Result<Vec<Outcome>, ListenerError> {
            Ok(vec![Outcome::Success])
        }
    }

    fn batch() -> Vec<Message> {
        vec![
            Message::new("in", "a").with_msg_id("1").with_tags("X"),
            Message::new("in", "b").with_msg_id("2").with_tags("Y"),
        ]
    }

    #[test]
    fn listener_runs_through_the_export_adapter() {
        set_config([("retry-tag", "X"), ("delay", "30s")]);
        let out = consume::<RetryOrForward>(&ConsumeContext::default(), &batch()).unwrap();
        assert_eq!(out, vec![Outcome::retry_after(DelayLevel::new(4).unwrap()), Outcome::Success]);
        assert_eq!(sent(), vec![batch()[1].forward_to("out")]);
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

    #[test]
    fn missing_outcomes_are_retries_like_the_host() {
        let out = consume::<OneOutcome>(&ConsumeContext::default(), &batch()).unwrap();
        assert_eq!(out, vec![Outcome::Success, Outcome::retry()]);
        let out = consume::<OneOutcome>(&ConsumeContext::default(), &batch()[..0]).unwrap();
        assert_eq!(out, vec![]);
    }
}
