//! The producer of `plugin test`: it records what the plugin sends and sends nothing, so a
//! replay needs no cluster and never writes to one. Grants and quotas still apply before a send
//! gets here (the host checks them), exactly as in production.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use crate::client::{ClientError, SendResult, SendStatus};
use crate::protocol::message::{Message, property};
use crate::protocol::{MessageQueue, QueueId, QueueOffset};
use crate::wasm::PluginProducer;

/// The broker name receipts carry: the plugin can tell nothing was sent, if it looks.
pub const RECORDING_BROKER: &str = "plugin-test";

/// One message the plugin sent, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedSend {
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    pub body_base64: String,
}

impl RecordedSend {
    fn of(m: &Message) -> Self {
        let mut properties = m.properties.to_map();
        for key in [property::TAGS, property::KEYS, property::UNIQ_KEY, property::WAIT] {
            properties.remove(key);
        }
        Self {
            topic: m.topic.clone(),
            tags: m.tags().map(str::to_owned),
            keys: m.keys().map(str::to_owned).collect(),
            properties,
            body_base64: BASE64.encode(&m.body),
        }
    }

    /// The body as text when it is UTF-8, for a person.
    pub fn body_text(&self) -> String {
        let bytes = BASE64.decode(&self.body_base64).unwrap_or_default();
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => format!("({} bytes, not UTF-8)", e.as_bytes().len()),
        }
    }
}

/// Records sends; [`RecordingProducer::take`] hands them over (one call's worth at a time).
#[derive(Debug, Default)]
pub struct RecordingProducer {
    sent: Mutex<Vec<RecordedSend>>,
    count: Mutex<i64>,
}

impl RecordingProducer {
    /// The sends recorded since the last `take`.
    pub fn take(&self) -> Vec<RecordedSend> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl PluginProducer for RecordingProducer {
    fn send(
        &self,
        msg: Message,
    ) -> Pin<Box<dyn Future<Output = Result<SendResult, ClientError>> + Send + '_>> {
        let offset = {
            let mut count = self.count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *count += 1;
            *count - 1
        };
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(RecordedSend::of(&msg));
        let result = SendResult {
            status: SendStatus::Ok,
            msg_id: format!("PLUGINTEST{offset:022X}"),
            offset_msg_id: format!("{offset:032X}"),
            queue: MessageQueue::new(msg.topic, RECORDING_BROKER, QueueId(0)),
            queue_offset: QueueOffset(offset),
        };
        Box::pin(async move { Ok(result) })
    }
}
