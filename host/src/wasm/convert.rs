//! Conversions between the host's types and the WIT types of `bindings.rs`, in both directions.
//!
//! Pure functions, so the mapping rules (which properties a guest sees, how delay levels are
//! clamped, which outgoing properties are refused) are unit tested without a component.

use crate::client::{ClientError, SendResult, SendStatus};
use crate::consumer::listener::{ConsumeContext, ConsumeMode, MessageOutcome};
use crate::protocol::MessageQueue;
use crate::protocol::message::{Message, MessageExt, property};
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
pub fn is_system_property(name: &str) -> bool {
    SYSTEM_PROPERTIES.contains(&name)
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

/// The WIT record for a consumed message. `broker_name` comes from the queue the batch was
/// pulled from (a stored record does not carry it).
pub fn message(m: &MessageExt, broker_name: &str) -> wit::Message {
    let properties = m
        .properties
        .iter()
        .filter(|(k, _)| !is_system_property(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    wit::Message {
        topic: m.topic.clone(),
        broker_name: broker_name.to_owned(),
        queue_id: u32::try_from(m.queue_id.0).unwrap_or_default(),
        queue_offset: u64::try_from(m.queue_offset.0).unwrap_or_default(),
        msg_id: m.msg_id(),
        offset_msg_id: m.offset_msg_id(),
        keys: m.keys().map(str::to_owned).collect(),
        tags: m.tags().map(str::to_owned),
        properties,
        body: m.body.to_vec(),
        born_timestamp: u64::try_from(m.born_timestamp.0).unwrap_or_default(),
        store_timestamp: u64::try_from(m.store_timestamp.0).unwrap_or_default(),
        born_host: m.born_host.to_string(),
        store_host: m.store_host.to_string(),
        reconsume_times: u32::try_from(m.reconsume_times).unwrap_or_default(),
    }
}

/// Property naming the plugin version (content hash prefix) that decided a DLQ outcome.
pub const PROP_VERSION: &str = "RMQ_WASM_VERSION";
/// Property naming why the sandbox stopped a call (an `AbortKind` name).
pub const PROP_ABORT: &str = "RMQ_WASM_ABORT";
/// Property with the fuel the isolated call used.
pub const PROP_FUEL_USED: &str = "RMQ_WASM_FUEL_USED";
/// Property naming the plugin (its listener name).
pub const PROP_PLUGIN: &str = "RMQ_WASM_PLUGIN";

/// A guest outcome as the consumer's outcome. Delay levels are clamped into 1..=18, as the WIT
/// promises; a dead letter records its reason and the plugin version.
pub fn outcome(o: wit::MessageOutcome, plugin: &str, version: &str) -> MessageOutcome {
    match o {
        wit::MessageOutcome::Success => MessageOutcome::Success,
        wit::MessageOutcome::RetryLater(level) => {
            MessageOutcome::RetryLater { delay_level: level.map(|l| i32::from(l.clamp(1, 18))) }
        }
        wit::MessageOutcome::DeadLetter(reason) => MessageOutcome::DeadLetter {
            reason: reason.unwrap_or_else(|| "listener".to_owned()),
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
    fn guests_see_user_properties_only_and_the_ids() {
        let mut properties = Properties::new();
        properties.insert(property::KEYS, "k1 k2");
        properties.insert(property::TAGS, "TagA");
        properties.insert(property::UNIQ_KEY, "UNIQ");
        properties.insert(property::CONSUME_START_TIME, "1");
        properties.insert("colour", "blue");
        let m = MessageExt {
            topic: "t".into(),
            properties,
            queue_id: QueueId(3),
            queue_offset: QueueOffset(42),
            reconsume_times: 2,
            body: bytes::Bytes::from_static(b"hi"),
            ..MessageExt::default()
        };
        let w = message(&m, "broker-a");
        assert_eq!(w.properties, vec![("colour".to_owned(), "blue".to_owned())]);
        assert_eq!(w.keys, ["k1", "k2"]);
        assert_eq!(w.tags.as_deref(), Some("TagA"));
        assert_eq!(w.msg_id, "UNIQ");
        assert_eq!((w.queue_id, w.queue_offset, w.reconsume_times), (3, 42, 2));
        assert_eq!(w.broker_name, "broker-a");
        assert_eq!(w.body, b"hi");
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
