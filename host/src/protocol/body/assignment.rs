//! QUERY_ASSIGNMENT (400) bodies: a 5.x client asks the broker which queues of a topic it should
//! consume and how — by PULL, or by POP (set per topic and group by the admin's
//! SET_MESSAGE_REQUEST_MODE; the broker's default is PULL, and retry topics are always PULL).
//! In POP mode with the default `popShareQueueNum` 0 every member gets queue id -1 per broker:
//! "pop from all queues".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::MessageModel;
use crate::protocol::types::MessageQueue;

java_enum! {
    /// How a client consumes an assigned queue (Java `MessageRequestMode`).
    #[derive(Default)]
    pub enum MessageRequestMode {
        #[default]
        Pull = "PULL",
        Pop = "POP",
    }
}

/// Asks for this client's assignment of `topic`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryAssignmentRequestBody {
    pub topic: String,
    pub consumer_group: String,
    pub client_id: String,
    /// The allocation strategy's Java name (e.g. `AVG`), used by the broker in PULL mode.
    pub strategy_name: String,
    pub message_model: MessageModel,
}

/// One assigned queue and its request mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueueAssignment {
    pub message_queue: MessageQueue,
    #[serde(default)]
    pub mode: MessageRequestMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<BTreeMap<String, String>>,
}

/// The broker's answer: the assigned queues (none when the group has no such member).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryAssignmentResponseBody {
    #[serde(default)]
    pub message_queue_assignments: Vec<MessageQueueAssignment>,
}

/// SET_MESSAGE_REQUEST_MODE (401), admin → broker: how `consumer_group` consumes `topic` from
/// now on (refused for retry topics and for a group the broker does not know).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetMessageRequestModeRequestBody {
    pub topic: String,
    pub consumer_group: String,
    pub mode: MessageRequestMode,
    /// POP: how many members share each queue; 0 or ≥ members − 1: everyone pops every queue.
    #[serde(default)]
    pub pop_share_queue_num: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::QueueId;

    /// As fastjson writes `QueryAssignmentRequestBody` (fields in alphabetical order).
    const REQUEST: &str = r#"{"clientId":"cid","consumerGroup":"G","messageModel":"CLUSTERING","strategyName":"AVG","topic":"T"}"#;

    /// A 5.3 broker's answer in POP mode: queue id -1 on each broker.
    const POP_RESPONSE: &str = r#"{"messageQueueAssignments":[{"messageQueue":{"brokerName":"broker-a","queueId":-1,"topic":"T"},"mode":"POP"}]}"#;

    #[test]
    fn request_body_is_javas() {
        let body = QueryAssignmentRequestBody {
            topic: "T".into(),
            consumer_group: "G".into(),
            client_id: "cid".into(),
            strategy_name: "AVG".into(),
            message_model: MessageModel::Clustering,
        };
        assert_eq!(&body.encode()[..], REQUEST.as_bytes());
        assert_eq!(QueryAssignmentRequestBody::decode(REQUEST.as_bytes()).unwrap(), body);
    }

    #[test]
    fn set_mode_body_is_javas() {
        let body = SetMessageRequestModeRequestBody {
            topic: "T".into(),
            consumer_group: "G".into(),
            mode: MessageRequestMode::Pop,
            pop_share_queue_num: 0,
        };
        let java = r#"{"consumerGroup":"G","mode":"POP","popShareQueueNum":0,"topic":"T"}"#;
        assert_eq!(&body.encode()[..], java.as_bytes());
        assert_eq!(SetMessageRequestModeRequestBody::decode(java.as_bytes()).unwrap(), body);
    }

    #[test]
    fn response_modes_and_queues() {
        let resp = QueryAssignmentResponseBody::decode(POP_RESPONSE.as_bytes()).unwrap();
        let a = &resp.message_queue_assignments[0];
        assert_eq!(a.message_queue, MessageQueue::new("T", "broker-a", QueueId(-1)));
        assert_eq!(a.mode, MessageRequestMode::Pop);
        assert_eq!(&resp.encode()[..], POP_RESPONSE.as_bytes());
        // The mode by ordinal (fastjson reads both), a missing mode is PULL, no set is empty.
        let by_ordinal = br#"{"messageQueueAssignments":[{"messageQueue":{"brokerName":"b","queueId":0,"topic":"T"},"mode":1},{"messageQueue":{"brokerName":"b","queueId":1,"topic":"T"}}]}"#;
        let resp = QueryAssignmentResponseBody::decode(by_ordinal).unwrap();
        let modes: Vec<_> = resp.message_queue_assignments.iter().map(|a| a.mode).collect();
        assert_eq!(modes, [MessageRequestMode::Pop, MessageRequestMode::Pull]);
        assert!(
            QueryAssignmentResponseBody::decode(b"{}")
                .unwrap()
                .message_queue_assignments
                .is_empty()
        );
    }
}
