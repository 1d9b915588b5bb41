//! `Map<MessageQueue, V>` fields, for `#[serde(with = "mq_map")]`.
//!
//! fastjson writes such a map with each key a bare JSON object:
//! `{{"brokerName":"b","queueId":0,"topic":"t"}:42}` (reference 1.8). [`super::json`] reads the
//! bare object into its canonical text; this module turns that text back into a
//! [`MessageQueue`], and on the way out writes each key as that canonical text, which
//! [`super::json::to_fastjson`] then writes bare again.
//!
//! Keys are also accepted as JSON strings holding the object text (what strict JSON writers,
//! including our own [`super::json::to_json`], produce) and in Java's `MessageQueue.toString`
//! form `MessageQueue [topic=t, brokerName=b, queueId=0]`, which some writers fall back to for
//! non-string keys. Anything else is a [`BodyError::MessageQueueKey`].

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::BodyError;
use super::json::{canonical_text, parse_lenient};
use crate::protocol::types::{MessageQueue, QueueId};

/// Writes the map with every key as [`key_text`].
pub fn serialize<S, V>(map: &BTreeMap<MessageQueue, V>, serializer: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    V: Serialize,
{
    serializer.collect_map(map.iter().map(|(mq, value)| (key_text(mq), value)))
}

/// Reads the map, parsing every key with [`parse_key`].
pub fn deserialize<'de, D, V>(deserializer: D) -> Result<BTreeMap<MessageQueue, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    let raw = BTreeMap::<String, V>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(key, value)| parse_key(&key).map(|mq| (mq, value)).map_err(D::Error::custom))
        .collect()
}

/// The canonical object text of a queue, fields in fastjson's alphabetical order:
/// `{"brokerName":"b","queueId":0,"topic":"t"}`.
pub fn key_text(mq: &MessageQueue) -> String {
    let mut object = Map::new();
    object.insert("brokerName".to_owned(), Value::from(mq.broker_name.as_str()));
    object.insert("queueId".to_owned(), Value::from(mq.queue_id.0));
    object.insert("topic".to_owned(), Value::from(mq.topic.as_str()));
    canonical_text(&Value::Object(object))
}

/// Reads a map key as a queue: object text (any field order or spacing) or Java's `toString`.
pub fn parse_key(key: &str) -> Result<MessageQueue, BodyError> {
    let bad = |problem: String| BodyError::MessageQueueKey { key: key.to_owned(), problem };
    let trimmed = key.trim();
    if trimmed.starts_with('{') {
        let value = parse_lenient(trimmed.as_bytes()).map_err(|e| bad(e.to_string()))?;
        return serde_json::from_value(value).map_err(|e| bad(e.to_string()));
    }
    parse_java_to_string(trimmed).ok_or_else(|| {
        bad("expected a MessageQueue object or `MessageQueue [topic=…, brokerName=…, queueId=…]`"
            .to_owned())
    })
}

/// `MessageQueue [topic=t, brokerName=b, queueId=0]`. Topic names cannot contain `,` or spaces,
/// so the first `, brokerName=` ends the topic; the last `, queueId=` ends the broker name.
fn parse_java_to_string(text: &str) -> Option<MessageQueue> {
    let inner = text.strip_prefix("MessageQueue [topic=")?.strip_suffix(']')?;
    let (topic, rest) = inner.split_once(", brokerName=")?;
    let (broker_name, queue_id) = rest.rsplit_once(", queueId=")?;
    let queue_id = queue_id.trim().parse().ok()?;
    Some(MessageQueue::new(topic, broker_name, QueueId(queue_id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::json::{from_fastjson, to_fastjson, to_json};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Table {
        #[serde(with = "super")]
        t: BTreeMap<MessageQueue, i64>,
    }

    fn mq(topic: &str, broker: &str, id: i32) -> MessageQueue {
        MessageQueue::new(topic, broker, QueueId(id))
    }

    #[test]
    fn key_text_is_alphabetical_compact_json() {
        assert_eq!(key_text(&mq("t", "b", 3)), r#"{"brokerName":"b","queueId":3,"topic":"t"}"#);
        assert_eq!(
            key_text(&mq("t\"x", "b\\", -1)),
            r#"{"brokerName":"b\\","queueId":-1,"topic":"t\"x"}"#
        );
    }

    #[test]
    fn all_key_forms_parse() {
        let want = mq("T", "broker-a", 2);
        for key in [
            r#"{"brokerName":"broker-a","queueId":2,"topic":"T"}"#,
            r#" { "topic" : "T", "queueId":2, "brokerName":"broker-a", "extra": [1] } "#,
            "MessageQueue [topic=T, brokerName=broker-a, queueId=2]",
        ] {
            assert_eq!(parse_key(key).unwrap(), want, "{key}");
        }
    }

    #[test]
    fn bad_keys_are_named_errors() {
        for key in ["", "0", "{\"topic\":\"T\"}", "{\"topic\":", "MessageQueue [topic=T]", "x"] {
            let err = parse_key(key).unwrap_err();
            assert!(matches!(&err, BodyError::MessageQueueKey { key: k, .. } if k == key), "{err}");
        }
        let err = from_fastjson::<Table>(br#"{"t":{"nope":1}}"#).unwrap_err();
        assert!(err.to_string().contains("bad MessageQueue map key \"nope\""), "{err}");
    }

    #[test]
    fn bare_and_quoted_forms_round_trip() {
        let table =
            Table { t: BTreeMap::from([(mq("t", "b", 0), 42), (mq("t", "b", 10), 1 << 60)]) };
        let bare = to_fastjson(&table);
        assert_eq!(
            &bare[..],
            br#"{"t":{{"brokerName":"b","queueId":0,"topic":"t"}:42,{"brokerName":"b","queueId":10,"topic":"t"}:1152921504606846976}}"#
        );
        assert_eq!(from_fastjson::<Table>(&bare).unwrap(), table);
        let quoted = to_json(&table);
        assert!(quoted.starts_with(br#"{"t":{"{\"brokerName\""#));
        assert_eq!(from_fastjson::<Table>(&quoted).unwrap(), table);
        assert_eq!(serde_json::from_slice::<Table>(&quoted).unwrap(), table);
    }
}
