//! The edge: conversions between the wit-bindgen types and the SDK's plain types.
//!
//! Both directions exist for every type, so native tests can push plain values through the
//! generated export glue and back ([`crate::testing::consume`]).

use crate::bindings::rmq::listener::{log as wit_log, producer as wit_producer, types as wit};
use crate::types::{
    ConsumeContext, ConsumeMode, DelayLevel, Level, ListenerError, MessageQueue, Outcome,
    OutgoingMessage, ProduceError, SendReceipt, SendStatus,
};

impl From<wit::MessageQueue> for MessageQueue {
    fn from(q: wit::MessageQueue) -> Self {
        MessageQueue { topic: q.topic, broker_name: q.broker_name, queue_id: q.queue_id }
    }
}

impl From<MessageQueue> for wit::MessageQueue {
    fn from(q: MessageQueue) -> Self {
        wit::MessageQueue { topic: q.topic, broker_name: q.broker_name, queue_id: q.queue_id }
    }
}

impl From<wit::ConsumeMode> for ConsumeMode {
    fn from(m: wit::ConsumeMode) -> Self {
        match m {
            wit::ConsumeMode::Concurrently => ConsumeMode::Concurrently,
            wit::ConsumeMode::Orderly => ConsumeMode::Orderly,
        }
    }
}

impl From<ConsumeMode> for wit::ConsumeMode {
    fn from(m: ConsumeMode) -> Self {
        match m {
            ConsumeMode::Concurrently => wit::ConsumeMode::Concurrently,
            ConsumeMode::Orderly => wit::ConsumeMode::Orderly,
        }
    }
}

impl From<wit::ConsumeContext> for ConsumeContext {
    fn from(c: wit::ConsumeContext) -> Self {
        ConsumeContext {
            mode: c.mode.into(),
            consumer_group: c.consumer_group,
            queue: c.queue.into(),
            max_reconsume_times: c.max_reconsume_times,
        }
    }
}

impl From<ConsumeContext> for wit::ConsumeContext {
    fn from(c: ConsumeContext) -> Self {
        wit::ConsumeContext {
            mode: c.mode.into(),
            consumer_group: c.consumer_group,
            queue: c.queue.into(),
            max_reconsume_times: c.max_reconsume_times,
        }
    }
}

impl From<Outcome> for wit::MessageOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => wit::MessageOutcome::Success,
            Outcome::RetryLater(level) => {
                wit::MessageOutcome::RetryLater(level.map(DelayLevel::get))
            }
            Outcome::DeadLetter(reason) => wit::MessageOutcome::DeadLetter(reason),
        }
    }
}

/// Host side semantics: an out-of-range level is clamped into 1..=18.
impl From<wit::MessageOutcome> for Outcome {
    fn from(o: wit::MessageOutcome) -> Self {
        match o {
            wit::MessageOutcome::Success => Outcome::Success,
            wit::MessageOutcome::RetryLater(level) => Outcome::RetryLater(
                level.map(|l| DelayLevel::new(l.clamp(1, 18)).unwrap_or(DelayLevel::MIN)),
            ),
            wit::MessageOutcome::DeadLetter(reason) => Outcome::DeadLetter(reason),
        }
    }
}

impl From<ListenerError> for wit::ListenerError {
    fn from(e: ListenerError) -> Self {
        wit::ListenerError { message: e.message }
    }
}

impl From<wit::ListenerError> for ListenerError {
    fn from(e: wit::ListenerError) -> Self {
        ListenerError { message: e.message }
    }
}

impl From<Level> for wit_log::Level {
    fn from(l: Level) -> Self {
        match l {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        }
    }
}

impl From<&OutgoingMessage> for wit_producer::OutgoingMessage {
    fn from(m: &OutgoingMessage) -> Self {
        wit_producer::OutgoingMessage {
            topic: m.topic.clone(),
            tags: m.tags.clone(),
            keys: m.keys.clone(),
            properties: m.properties.clone(),
            body: m.body.clone(),
        }
    }
}

impl From<wit_producer::SendStatus> for SendStatus {
    fn from(s: wit_producer::SendStatus) -> Self {
        match s {
            wit_producer::SendStatus::Ok => SendStatus::Ok,
            wit_producer::SendStatus::FlushDiskTimeout => SendStatus::FlushDiskTimeout,
            wit_producer::SendStatus::FlushSlaveTimeout => SendStatus::FlushSlaveTimeout,
            wit_producer::SendStatus::SlaveNotAvailable => SendStatus::SlaveNotAvailable,
        }
    }
}

impl From<wit_producer::SendReceipt> for SendReceipt {
    fn from(r: wit_producer::SendReceipt) -> Self {
        SendReceipt {
            status: r.status.into(),
            msg_id: r.msg_id,
            offset_msg_id: r.offset_msg_id,
            queue: r.queue.into(),
            queue_offset: r.queue_offset,
        }
    }
}

impl From<wit_producer::ProduceError> for ProduceError {
    fn from(e: wit_producer::ProduceError) -> Self {
        match e {
            wit_producer::ProduceError::Invalid(why) => ProduceError::Invalid(why),
            wit_producer::ProduceError::Denied(why) => ProduceError::Denied(why),
            wit_producer::ProduceError::Timeout => ProduceError::Timeout,
            wit_producer::ProduceError::Failed(why) => ProduceError::Failed(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_and_levels_clamp() {
        let lvl = DelayLevel::new(4).unwrap();
        for o in [
            Outcome::Success,
            Outcome::retry(),
            Outcome::retry_after(lvl),
            Outcome::DeadLetter(None),
            Outcome::dead_letter("why"),
        ] {
            assert_eq!(Outcome::from(wit::MessageOutcome::from(o.clone())), o);
        }
        assert_eq!(
            Outcome::from(wit::MessageOutcome::RetryLater(Some(0))),
            Outcome::retry_after(DelayLevel::MIN)
        );
        assert_eq!(
            Outcome::from(wit::MessageOutcome::RetryLater(Some(200))),
            Outcome::retry_after(DelayLevel::MAX)
        );
    }
}
