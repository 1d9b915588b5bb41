//! GET_CONSUMER_RUNNING_INFO (307) reply: our state as `mqadmin consumerStatus` shows it
//! (reference 2.11). We write it; decoding exists for tests and tooling.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::heartbeat::SubscriptionData;
use super::json::canonical_text;
use crate::protocol::types::{EpochMillis, MessageQueue, QueueOffset};

/// A snapshot of a consumer for the admin tools.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRunningInfo {
    /// Configuration as strings (a Java `Properties`); keys like [`Self::PROP_CONSUME_TYPE`].
    /// Non-string values a Java peer may have put there are read as their text.
    #[serde(default, deserialize_with = "properties")]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub subscription_set: Vec<SubscriptionData>,
    /// Per owned queue; written with bare object keys (see [`super::mq_map`]).
    #[serde(default, with = "super::mq_map")]
    pub mq_table: BTreeMap<MessageQueue, ProcessQueueInfo>,
    /// Per topic.
    #[serde(default)]
    pub status_table: BTreeMap<String, ConsumeStatus>,
    /// 5.x: free-form user information; left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_consumer_info: BTreeMap<String, String>,
    /// A thread dump, when asked for (`jstackEnable`); we have none to give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jstack: Option<String>,
}

impl ConsumerRunningInfo {
    pub const PROP_NAMESERVER_ADDR: &'static str = "PROP_NAMESERVER_ADDR";
    pub const PROP_THREADPOOL_CORE_SIZE: &'static str = "PROP_THREADPOOL_CORE_SIZE";
    /// `"true"` for an orderly consumer. Java's constant is `PROP_CONSUME_ORDERLY`; the key
    /// itself has no underscore.
    pub const PROP_CONSUME_ORDERLY: &'static str = "PROP_CONSUMEORDERLY";
    /// A [`ConsumeType`](super::ConsumeType) name; the admin tool treats only
    /// `CONSUME_PASSIVELY` as push.
    pub const PROP_CONSUME_TYPE: &'static str = "PROP_CONSUME_TYPE";
    pub const PROP_CLIENT_VERSION: &'static str = "PROP_CLIENT_VERSION";
    /// Start time in epoch ms, as a decimal string; the admin tool parses it with
    /// `Long.parseLong`.
    pub const PROP_CONSUMER_START_TIMESTAMP: &'static str = "PROP_CONSUMER_START_TIMESTAMP";
}

/// A Java `Properties` holds `Object`s; fastjson writes non-strings as numbers, booleans, etc.
fn properties<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::Null => return None,
                Value::String(s) => s,
                other @ (Value::Bool(_) | Value::Number(_)) => other.to_string(),
                other => canonical_text(&other),
            };
            Some((key, text))
        })
        .collect())
}

/// One process queue's state (Java `ProcessQueueInfo`).
///
/// The dropped flag is written twice, as `droped` (4.x's spelling) and `dropped` (5.x's), so
/// both generations of admin tool read it; either is accepted on decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ProcessQueueInfoWire", into = "ProcessQueueInfoWire")]
pub struct ProcessQueueInfo {
    pub commit_offset: QueueOffset,
    pub cached_msg_min_offset: QueueOffset,
    pub cached_msg_max_offset: QueueOffset,
    pub cached_msg_count: i32,
    pub cached_msg_size_in_mib: i32,
    pub transaction_msg_min_offset: QueueOffset,
    pub transaction_msg_max_offset: QueueOffset,
    pub transaction_msg_count: i32,
    pub locked: bool,
    pub try_unlock_times: i64,
    pub last_lock_timestamp: EpochMillis,
    pub dropped: bool,
    pub last_pull_timestamp: EpochMillis,
    pub last_consume_timestamp: EpochMillis,
}

/// [`ProcessQueueInfo`] on the wire: both spellings of the dropped flag as optional fields, so
/// a body carrying both (our own) is not a "duplicate field" error.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessQueueInfoWire {
    #[serde(default)]
    commit_offset: QueueOffset,
    #[serde(default)]
    cached_msg_min_offset: QueueOffset,
    #[serde(default)]
    cached_msg_max_offset: QueueOffset,
    #[serde(default)]
    cached_msg_count: i32,
    #[serde(default, rename = "cachedMsgSizeInMiB")]
    cached_msg_size_in_mib: i32,
    #[serde(default)]
    transaction_msg_min_offset: QueueOffset,
    #[serde(default)]
    transaction_msg_max_offset: QueueOffset,
    #[serde(default)]
    transaction_msg_count: i32,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    try_unlock_times: i64,
    #[serde(default)]
    last_lock_timestamp: EpochMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    droped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dropped: Option<bool>,
    #[serde(default)]
    last_pull_timestamp: EpochMillis,
    #[serde(default)]
    last_consume_timestamp: EpochMillis,
}

impl From<ProcessQueueInfoWire> for ProcessQueueInfo {
    fn from(w: ProcessQueueInfoWire) -> Self {
        Self {
            commit_offset: w.commit_offset,
            cached_msg_min_offset: w.cached_msg_min_offset,
            cached_msg_max_offset: w.cached_msg_max_offset,
            cached_msg_count: w.cached_msg_count,
            cached_msg_size_in_mib: w.cached_msg_size_in_mib,
            transaction_msg_min_offset: w.transaction_msg_min_offset,
            transaction_msg_max_offset: w.transaction_msg_max_offset,
            transaction_msg_count: w.transaction_msg_count,
            locked: w.locked,
            try_unlock_times: w.try_unlock_times,
            last_lock_timestamp: w.last_lock_timestamp,
            dropped: w.dropped.or(w.droped).unwrap_or(false),
            last_pull_timestamp: w.last_pull_timestamp,
            last_consume_timestamp: w.last_consume_timestamp,
        }
    }
}

impl From<ProcessQueueInfo> for ProcessQueueInfoWire {
    fn from(p: ProcessQueueInfo) -> Self {
        Self {
            commit_offset: p.commit_offset,
            cached_msg_min_offset: p.cached_msg_min_offset,
            cached_msg_max_offset: p.cached_msg_max_offset,
            cached_msg_count: p.cached_msg_count,
            cached_msg_size_in_mib: p.cached_msg_size_in_mib,
            transaction_msg_min_offset: p.transaction_msg_min_offset,
            transaction_msg_max_offset: p.transaction_msg_max_offset,
            transaction_msg_count: p.transaction_msg_count,
            locked: p.locked,
            try_unlock_times: p.try_unlock_times,
            last_lock_timestamp: p.last_lock_timestamp,
            droped: Some(p.dropped),
            dropped: Some(p.dropped),
            last_pull_timestamp: p.last_pull_timestamp,
            last_consume_timestamp: p.last_consume_timestamp,
        }
    }
}

/// Per-topic throughput figures (Java `ConsumeStatus`; RT in ms, TPS per second).
///
/// A Java `double` that is NaN or infinite is written by fastjson (and by serde_json) as
/// `null`; it reads back as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumeStatus {
    #[serde(rename = "pullRT", default, deserialize_with = "f64_or_null")]
    pub pull_rt: f64,
    #[serde(rename = "pullTPS", default, deserialize_with = "f64_or_null")]
    pub pull_tps: f64,
    #[serde(rename = "consumeRT", default, deserialize_with = "f64_or_null")]
    pub consume_rt: f64,
    #[serde(rename = "consumeOKTPS", default, deserialize_with = "f64_or_null")]
    pub consume_ok_tps: f64,
    #[serde(rename = "consumeFailedTPS", default, deserialize_with = "f64_or_null")]
    pub consume_failed_tps: f64,
    /// Failures in the last hour.
    #[serde(rename = "consumeFailedMsgs", default)]
    pub consume_failed_msgs: i64,
}

fn f64_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::{BodyError, json::to_fastjson};
    use crate::protocol::types::QueueId;
    use serde_json::json;

    fn sample() -> ConsumerRunningInfo {
        let mq = |id| MessageQueue::new("T", "broker-a", QueueId(id));
        let pq = |id: i32| ProcessQueueInfo {
            commit_offset: QueueOffset(100 + i64::from(id)),
            cached_msg_min_offset: QueueOffset(101),
            cached_msg_max_offset: QueueOffset(132),
            cached_msg_count: 32,
            cached_msg_size_in_mib: 1,
            locked: id == 0,
            try_unlock_times: 2,
            last_lock_timestamp: EpochMillis(1_700_000_000_000),
            dropped: id == 1,
            last_pull_timestamp: EpochMillis(9_007_199_254_740_993),
            last_consume_timestamp: EpochMillis(1_700_000_000_002),
            ..ProcessQueueInfo::default()
        };
        let mut sub = SubscriptionData::new("T", "TagA || TagB");
        sub.sub_version = EpochMillis(1_700_000_000_000);
        ConsumerRunningInfo {
            properties: BTreeMap::from([
                (ConsumerRunningInfo::PROP_CONSUME_TYPE.to_owned(), "CONSUME_PASSIVELY".to_owned()),
                (ConsumerRunningInfo::PROP_CONSUME_ORDERLY.to_owned(), "false".to_owned()),
                (
                    ConsumerRunningInfo::PROP_CONSUMER_START_TIMESTAMP.to_owned(),
                    "1700000000000".to_owned(),
                ),
            ]),
            subscription_set: vec![sub, SubscriptionData::new("%RETRY%G", "*")],
            mq_table: (0..3).map(|id| (mq(id), pq(id))).collect(),
            status_table: BTreeMap::from([(
                "T".to_owned(),
                ConsumeStatus {
                    pull_rt: 1.5,
                    pull_tps: 20.25,
                    consume_rt: 0.0,
                    consume_ok_tps: 3.0,
                    consume_failed_tps: 0.125,
                    consume_failed_msgs: 7,
                },
            )]),
            user_consumer_info: BTreeMap::new(),
            jstack: None,
        }
    }

    #[test]
    fn encode_then_lenient_decode_round_trips() {
        let info = sample();
        let bytes = info.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        // fastjson form: the mqTable keys are bare objects, so strict JSON parsers refuse it ...
        assert!(
            text.contains(r#""mqTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:{"#),
            "{text}"
        );
        assert!(serde_json::from_slice::<Value>(&bytes).is_err());
        // ... and our lenient reader gets everything back.
        assert_eq!(ConsumerRunningInfo::decode(&bytes).unwrap(), info);
    }

    #[test]
    fn process_queue_info_field_names() {
        let pq = sample().mq_table.into_values().nth(1).unwrap();
        let written: Value = serde_json::from_slice(&to_fastjson(&pq)).unwrap();
        let keys: Vec<&str> = written.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cachedMsgCount",
                "cachedMsgMaxOffset",
                "cachedMsgMinOffset",
                "cachedMsgSizeInMiB",
                "commitOffset",
                "droped",
                "dropped",
                "lastConsumeTimestamp",
                "lastLockTimestamp",
                "lastPullTimestamp",
                "locked",
                "transactionMsgCount",
                "transactionMsgMaxOffset",
                "transactionMsgMinOffset",
                "tryUnlockTimes",
            ]
        );
        assert_eq!(written["droped"], json!(true));
        assert_eq!(written["dropped"], json!(true));
        assert_eq!(written["lastPullTimestamp"].as_i64(), Some(9_007_199_254_740_993));
    }

    #[test]
    fn either_dropped_spelling_is_read() {
        let read = |body: &str| serde_json::from_str::<ProcessQueueInfo>(body).unwrap().dropped;
        assert!(read(r#"{"droped":true}"#));
        assert!(read(r#"{"dropped":true}"#));
        assert!(!read(r#"{}"#));
    }

    #[test]
    fn java_style_body_decodes() {
        // Shapes a Java peer produces: bare object keys, non-string properties, null doubles,
        // 5.x-only fields, unknown fields.
        let body = br#"{"jstack":"...","mqPopTable":{},"mqTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"cachedMsgCount":0,"commitOffset":5,"droped":false,"lastConsumeTimestamp":1,"lastLockTimestamp":0,"lastPullTimestamp":2,"locked":false,"transactionMsgCount":0,"transactionMsgMaxOffset":0,"transactionMsgMinOffset":0,"tryUnlockTimes":0}},"properties":{"PROP_CONSUMER_START_TIMESTAMP":1700000000000,"PROP_CONSUMEORDERLY":false,"PROP_NAMESERVER_ADDR":"ns:9876","x":null},"statusTable":{"T":{"consumeFailedMsgs":0,"consumeFailedTPS":0.0,"consumeOKTPS":null,"consumeRT":1.0,"pullRT":2.5,"pullTPS":0.0}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}],"userConsumerInfo":{"k":"v"}}"#;
        let info = ConsumerRunningInfo::decode(body).unwrap();
        assert_eq!(
            info.properties[ConsumerRunningInfo::PROP_CONSUMER_START_TIMESTAMP],
            "1700000000000"
        );
        assert_eq!(info.properties[ConsumerRunningInfo::PROP_CONSUME_ORDERLY], "false");
        assert!(!info.properties.contains_key("x"));
        assert_eq!(info.status_table["T"].consume_ok_tps, 0.0);
        assert_eq!(info.status_table["T"].pull_rt, 2.5);
        let (mq, pq) = info.mq_table.iter().next().unwrap();
        assert_eq!(
            (mq.topic.as_str(), mq.broker_name.as_str(), mq.queue_id),
            ("T", "b", QueueId(0))
        );
        assert_eq!(pq.commit_offset, QueueOffset(5));
        assert_eq!(info.user_consumer_info["k"], "v");
        assert_eq!(info.jstack.as_deref(), Some("..."));
    }

    #[test]
    fn nan_rates_survive_encoding() {
        let mut info = sample();
        info.status_table.get_mut("T").unwrap().pull_rt = f64::NAN;
        let back = ConsumerRunningInfo::decode(&info.encode()).unwrap();
        assert_eq!(back.status_table["T"].pull_rt, 0.0);
    }

    #[test]
    fn bad_mq_key_is_reported() {
        let err = ConsumerRunningInfo::decode(br#"{"mqTable":{{"topic":"T"}:{}}}"#).unwrap_err();
        assert!(matches!(err, BodyError::Shape { .. }));
        assert!(err.to_string().contains("bad MessageQueue map key"), "{err}");
    }
}
