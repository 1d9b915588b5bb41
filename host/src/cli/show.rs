//! How the reading commands (`peek`, `dlq list`) print a stored message: a block of labelled
//! lines for a person, or one JSON object per line for scripts. Pure functions of the message.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::protocol::EpochMillis;
use crate::protocol::message::MessageExt;

/// Output form of the reading commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Labelled lines, one block per message.
    Text,
    /// One JSON object per line (every field, the whole body).
    Json,
}

/// A body for a terminal: UTF-8 text with control characters escaped (a body cannot move the
/// cursor or forge lines), else hex; cut after `max` bytes with a note of what was left out.
pub fn body_text(body: &[u8], max: usize) -> String {
    let shown = &body[..body.len().min(max)];
    let mut out = match std::str::from_utf8(shown) {
        Ok(text) => escape(text),
        // A cut inside a multi-byte character is still text.
        Err(e) if e.error_len().is_none() && body.len() > max => {
            escape(std::str::from_utf8(&shown[..e.valid_up_to()]).unwrap_or_default())
        }
        Err(_) => format!("hex {}", hex(shown)),
    };
    if body.len() > max {
        let _ = write!(out, " …({} more bytes)", body.len() - shown.len());
    }
    out
}

fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> =
                if c.is_control() { c.escape_debug().collect() } else { vec![c] };
            escaped
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// An epoch-millisecond timestamp as RFC 3339 (UTC, milliseconds).
pub fn instant(t: EpochMillis) -> String {
    match u64::try_from(t.0) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => t.0.to_string(),
    }
}

/// The labelled block for one message pulled from `broker`.
pub fn message_text(m: &MessageExt, broker: &str, max_body: usize) -> String {
    let mut out = format!("── {} {broker}/{} offset {}\n", m.topic, m.queue_id, m.queue_offset);
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "  {label:<10} {}", escape(value));
    };
    line("msg id", &format!("{} (offset id {})", m.msg_id(), m.offset_msg_id()));
    let keys: Vec<&str> = m.keys().collect();
    if !keys.is_empty() {
        line("keys", &keys.join(" "));
    }
    if let Some(tags) = m.tags() {
        line("tags", tags);
    }
    line("born", &format!("{} from {}", instant(m.born_timestamp), m.born_host));
    line("stored", &format!("{} at {}", instant(m.store_timestamp), m.store_host));
    line("reconsume", &m.reconsume_times.to_string());
    for (k, v) in m.properties.iter() {
        line("property", &format!("{k}={v}"));
    }
    line("body", &format!("{} B {}", m.body.len(), body_text(&m.body, max_body)));
    out
}

/// Every field of a message pulled from `broker` as JSON; the body as text when it is UTF-8,
/// else as hex (`body_encoding` says which).
pub fn message_json(m: &MessageExt, broker: &str) -> Value {
    let (body, encoding) = match std::str::from_utf8(&m.body) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (hex(&m.body), "hex"),
    };
    json!({
        "topic": m.topic,
        "broker": broker,
        "queue": m.queue_id.0,
        "offset": m.queue_offset.0,
        "msg_id": m.msg_id(),
        "offset_msg_id": m.offset_msg_id(),
        "keys": m.keys().collect::<Vec<_>>(),
        "tags": m.tags(),
        "born": instant(m.born_timestamp),
        "born_host": m.born_host.to_string(),
        "stored": instant(m.store_timestamp),
        "store_host": m.store_host.to_string(),
        "reconsume_times": m.reconsume_times,
        "properties": &m.properties,
        "body_bytes": m.body.len(),
        "body": body,
        "body_encoding": encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::property;
    use crate::protocol::{QueueId, QueueOffset};

    #[test]
    fn bodies_print_as_escaped_text_or_hex() {
        let table: [(&[u8], usize, &str); 6] = [
            (b"hello", 100, "hello"),
            (b"line\nnext\x1b[31m", 100, "line\\nnext\\u{1b}[31m"),
            (b"\xff\x00\x01", 100, "hex ff0001"),
            (b"abcdef", 3, "abc …(3 more bytes)"),
            ("héllo".as_bytes(), 2, "h …(4 more bytes)"),
            (b"", 10, ""),
        ];
        for (body, max, expected) in table {
            assert_eq!(body_text(body, max), expected, "{body:?}");
        }
    }

    #[test]
    fn a_message_shows_every_field() {
        let mut m = MessageExt {
            topic: "orders".into(),
            queue_id: QueueId(3),
            queue_offset: QueueOffset(17),
            body: bytes::Bytes::from_static(b"\xfe\xff"),
            born_timestamp: EpochMillis(1_700_000_000_123),
            store_timestamp: EpochMillis(1_700_000_000_456),
            reconsume_times: 2,
            ..MessageExt::default()
        };
        m.properties.insert(property::KEYS, "k1 k2");
        m.properties.insert(property::TAGS, "TagA");
        m.properties.insert("USER", "v\n");
        let text = message_text(&m, "broker-a", 64);
        for want in [
            "── orders broker-a/3 offset 17",
            "keys       k1 k2",
            "tags       TagA",
            "born       2023-11-14T22:13:20.123Z from 0.0.0.0:0",
            "stored     2023-11-14T22:13:20.456Z",
            "reconsume  2",
            "property   USER=v\\n",
            "body       2 B hex feff",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        let j = message_json(&m, "broker-a");
        assert_eq!(j["offset"], 17);
        assert_eq!(j["body"], "feff");
        assert_eq!(j["body_encoding"], "hex");
        assert_eq!(j["properties"]["USER"], "v\n");
        assert_eq!(j["keys"], json!(["k1", "k2"]));
    }
}
