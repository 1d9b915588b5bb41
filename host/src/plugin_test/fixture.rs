//! The message fixture: one JSON object per line (JSONL), each a consumed message with every
//! field a listener sees. `rmq-wasm capture` writes it from a real topic, `plugin test` replays
//! it; a person can write one by hand (only `topic` is required).
//!
//! Why these choices: the body is base64 so any bytes survive (`body` takes plain text instead,
//! for hand-written lines); `keys`, `tags` and `msg_id` are fields of their own, not properties,
//! because they are what a person reads and edits; every other property is kept as stored, so a
//! captured message replays exactly as the broker delivered it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::protocol::message::{MessageExt, Properties, property};
use crate::protocol::{CommitLogOffset, EpochMillis, QueueId, QueueOffset};

/// One line of a fixture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureMessage {
    pub topic: String,
    /// The broker the message was read from (the batch's queue names it).
    #[serde(default = "default_broker")]
    pub broker: String,
    #[serde(default)]
    pub queue_id: QueueId,
    /// Default: the line's index in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_offset: Option<QueueOffset>,
    /// Default: the line's index (so hand-written messages get distinct offset msg ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_log_offset: Option<CommitLogOffset>,
    /// `UNIQ_KEY`, the id a listener sees; default: the broker's offset message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// Written by `capture` for reading; derived from `store_host` and `commit_log_offset` on
    /// replay (a different value here is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_msg_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    /// Every other property, user and system, as stored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch, producer clock.
    #[serde(default)]
    pub born_timestamp: EpochMillis,
    #[serde(default = "default_host")]
    pub born_host: SocketAddr,
    /// Milliseconds since the Unix epoch, broker clock.
    #[serde(default)]
    pub store_timestamp: EpochMillis,
    #[serde(default = "default_host")]
    pub store_host: SocketAddr,
    #[serde(default)]
    pub reconsume_times: i32,
    #[serde(default)]
    pub flag: i32,
    #[serde(default)]
    pub sys_flag: i32,
    /// The body, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body as UTF-8 text, instead of `body_base64` (hand-written fixtures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn default_broker() -> String {
    "fixture".to_owned()
}

fn default_host() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

/// A fixture line that cannot be a message; names the line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct FixtureError {
    pub line: usize,
    pub reason: String,
}

impl FixtureMessage {
    /// A consumed message as a fixture line; `broker` is the broker it was read from.
    pub fn from_message(m: &MessageExt, broker: &str) -> Self {
        let mut properties = m.properties.to_map();
        let msg_id = properties.remove(property::UNIQ_KEY);
        let tags = properties.remove(property::TAGS);
        let keys = properties
            .remove(property::KEYS)
            .map(|k| k.split(' ').filter(|k| !k.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        Self {
            topic: m.topic.clone(),
            broker: broker.to_owned(),
            queue_id: m.queue_id,
            queue_offset: Some(m.queue_offset),
            commit_log_offset: Some(m.commit_log_offset),
            msg_id,
            offset_msg_id: Some(m.offset_msg_id()),
            keys,
            tags,
            properties,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host,
            store_timestamp: m.store_timestamp,
            store_host: m.store_host,
            reconsume_times: m.reconsume_times,
            flag: m.flag,
            sys_flag: m.sys_flag,
            body_base64: Some(BASE64.encode(&m.body)),
            body: None,
        }
    }

    /// The message a listener receives; `index` is the line's position (the default offset).
    pub fn to_message(&self, index: usize) -> Result<MessageExt, String> {
        let body = match (&self.body_base64, &self.body) {
            (Some(_), Some(_)) => return Err("has both body and body_base64".to_owned()),
            (Some(b64), None) => {
                Bytes::from(BASE64.decode(b64.trim()).map_err(|e| format!("body_base64: {e}"))?)
            }
            (None, Some(text)) => Bytes::from(text.clone().into_bytes()),
            (None, None) => Bytes::new(),
        };
        if self.topic.is_empty() {
            return Err("topic is empty".to_owned());
        }
        let mut properties = Properties::new();
        for (k, v) in &self.properties {
            if [property::UNIQ_KEY, property::TAGS, property::KEYS].contains(&k.as_str()) {
                return Err(format!("property {k} belongs in its own field (msg_id, tags, keys)"));
            }
            properties.insert(k.clone(), v.clone());
        }
        if let Some(id) = &self.msg_id {
            properties.insert(property::UNIQ_KEY, id.clone());
        }
        if let Some(tags) = &self.tags {
            properties.insert(property::TAGS, tags.clone());
        }
        if !self.keys.is_empty() {
            properties.insert(property::KEYS, self.keys.join(" "));
        }
        properties.validate().map_err(|e| e.to_string())?;
        let offset = i64::try_from(index).unwrap_or(i64::MAX);
        Ok(MessageExt {
            topic: self.topic.clone(),
            flag: self.flag,
            body,
            properties,
            queue_id: self.queue_id,
            queue_offset: self.queue_offset.unwrap_or(QueueOffset(offset)),
            commit_log_offset: self.commit_log_offset.unwrap_or(CommitLogOffset(offset)),
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_timestamp: self.store_timestamp,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            ..MessageExt::default()
        })
    }

    /// The line `capture` writes (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a fixture message always serializes")
    }
}

/// Parses a whole fixture (blank lines are skipped) into messages with the broker each came
/// from; the first bad line is the error.
pub fn parse_fixture(text: &str) -> Result<Vec<(MessageExt, String)>, FixtureError> {
    let mut out = Vec::new();
    for parsed in json_lines::<FixtureMessage>(text) {
        let (line, fixture) = parsed?;
        let message =
            fixture.to_message(out.len()).map_err(|reason| FixtureError { line, reason })?;
        out.push((message, fixture.broker));
    }
    Ok(out)
}

/// The JSON lines of `text`, blank ones skipped, each parsed as `T` with its line number (from
/// 1): the one reading of fixtures and of expectation files, whose errors name the line.
pub(crate) fn json_lines<T: serde::de::DeserializeOwned>(
    text: &str,
) -> impl Iterator<Item = Result<(usize, T), FixtureError>> + '_ {
    text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()).map(|(n, line)| {
        serde_json::from_str(line)
            .map(|value| (n + 1, value))
            .map_err(|e| FixtureError { line: n + 1, reason: e.to_string() })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> MessageExt {
        let mut properties = Properties::new();
        properties.insert(property::UNIQ_KEY, "7F000001ABCD");
        properties.insert(property::TAGS, "created");
        properties.insert(property::KEYS, "order-1 customer-9");
        properties.insert("region", "eu");
        properties.insert(property::RETRY_TOPIC, "orders");
        MessageExt {
            topic: "orders".into(),
            flag: 3,
            body: Bytes::from_static(b"\x00\xff{\"id\":1}"),
            properties,
            queue_id: QueueId(2),
            queue_offset: QueueOffset(41),
            commit_log_offset: CommitLogOffset(123_456),
            sys_flag: 0,
            born_timestamp: EpochMillis(1_700_000_000_000),
            born_host: "10.0.0.1:50000".parse().unwrap(),
            store_timestamp: EpochMillis(1_700_000_000_005),
            store_host: "10.0.0.2:10911".parse().unwrap(),
            reconsume_times: 2,
            ..MessageExt::default()
        }
    }

    #[test]
    fn a_captured_message_round_trips_through_a_line() {
        let m = captured();
        let line = FixtureMessage::from_message(&m, "broker-a").to_line();
        let back = parse_fixture(&line).unwrap();
        assert_eq!(back.len(), 1);
        let (r, broker) = &back[0];
        assert_eq!(broker, "broker-a");
        assert_eq!(
            (&r.topic, r.flag, &r.body, r.queue_id, r.queue_offset, r.commit_log_offset),
            (&m.topic, m.flag, &m.body, m.queue_id, m.queue_offset, m.commit_log_offset)
        );
        assert_eq!(r.properties, m.properties, "system and user properties both survive");
        assert_eq!((r.born_timestamp, r.born_host), (m.born_timestamp, m.born_host));
        assert_eq!((r.store_timestamp, r.store_host), (m.store_timestamp, m.store_host));
        assert_eq!(
            (r.reconsume_times, r.msg_id(), r.offset_msg_id()),
            (2, m.msg_id(), m.offset_msg_id())
        );
        // What a person reads in the line.
        for part in [
            r#""msg_id":"7F000001ABCD""#,
            r#""keys":["order-1","customer-9"]"#,
            r#""tags":"created""#,
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
    }

    #[test]
    fn hand_written_lines_take_defaults_and_bad_ones_name_the_line() {
        let ok = "{\"topic\":\"T\",\"body\":\"hi\"}\n\n{\"topic\":\"T\",\"keys\":[\"k\"],\"queue_id\":3}";
        let msgs = parse_fixture(ok).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((&msgs[0].0.body[..], msgs[0].0.queue_offset), (&b"hi"[..], QueueOffset(0)));
        assert_eq!((msgs[1].0.queue_id, msgs[1].0.queue_offset), (QueueId(3), QueueOffset(1)));
        assert_eq!(msgs[1].0.keys().collect::<Vec<_>>(), ["k"]);
        assert_eq!(msgs[1].1, "fixture");

        let table = [
            ("{\"body\":\"x\"}", "line 1: missing field `topic`"),
            ("{\"topic\":\"T\",\"bodi\":\"x\"}", "line 1: unknown field `bodi`"),
            (
                "{\"topic\":\"T\",\"body\":\"x\",\"body_base64\":\"eA==\"}",
                "line 1: has both body and body_base64",
            ),
            ("{\"topic\":\"T\",\"body_base64\":\"!!\"}", "line 1: body_base64: "),
            ("{\"topic\":\"\"}", "line 1: topic is empty"),
            (
                "{\"topic\":\"T\",\"properties\":{\"TAGS\":\"a\"}}",
                "line 1: property TAGS belongs in its own field",
            ),
            ("{\"topic\":\"T\",\"born_host\":\"nowhere\"}", "line 1: invalid socket address"),
            ("\n{\"topic\":\"T\"}\nnot json", "line 3: expected ident"),
        ];
        for (text, expected) in table {
            let e = parse_fixture(text).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{text}: {e}");
        }
    }
}
