//! GET_CONSUMER_LIST_BY_GROUP (38) response and the CONSUME_MESSAGE_DIRECTLY (309) reply
//! (reference 2.5, 2.11).

use serde::{Deserialize, Serialize};

/// The client ids of a group's live members; rebalance sorts them and finds itself by index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConsumerListByGroupResponseBody {
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

java_enum! {
    /// How a directly consumed message went (Java `CMResult`).
    pub enum CMResult {
        Success = "CR_SUCCESS",
        Later = "CR_LATER",
        Rollback = "CR_ROLLBACK",
        Commit = "CR_COMMIT",
        ThrowException = "CR_THROW_EXCEPTION",
        ReturnNull = "CR_RETURN_NULL",
    }
}

/// Our reply when an admin tool asks us to run the listener on one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeMessageDirectlyResult {
    /// True when the group consumes orderly.
    #[serde(default)]
    pub order: bool,
    #[serde(default = "default_true")]
    pub auto_commit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_result: Option<CMResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    /// Sic: Java's spelling.
    #[serde(default)]
    pub spent_time_mills: i64,
}

/// CHECK_CLIENT_CONFIG (46) body: asks the broker whether it can evaluate a non-TAG (SQL92)
/// subscription before the consumer relies on it; the broker answers an error when property
/// filtering is off or the expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckClientRequestBody {
    pub client_id: String,
    pub group: String,
    pub subscription_data: super::heartbeat::SubscriptionData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// GET_CONSUMER_STATUS_FROM_CLIENT (221) reply: this client's offsets of one topic (Java
/// `GetConsumerStatusBody`). `consumerTable` is only filled by the broker when it aggregates
/// several clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConsumerStatusBody {
    #[serde(default, with = "super::mq_map")]
    pub message_queue_table: std::collections::BTreeMap<
        crate::protocol::types::MessageQueue,
        crate::protocol::types::QueueOffset,
    >,
    #[serde(default)]
    pub consumer_table: std::collections::BTreeMap<String, serde_json::Value>,
}

fn default_true() -> bool {
    true
}

impl Default for ConsumeMessageDirectlyResult {
    /// Java's field defaults: not orderly, auto-commit, no result yet.
    fn default() -> Self {
        Self {
            order: false,
            auto_commit: true,
            consume_result: None,
            remark: None,
            spent_time_mills: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn consumer_id_list() {
        let body = br#"{"consumerIdList":["10.0.0.2@b","10.0.0.1@a"]}"#;
        let decoded = GetConsumerListByGroupResponseBody::decode(body).unwrap();
        assert_eq!(decoded.consumer_id_list, ["10.0.0.2@b", "10.0.0.1@a"]);
        assert_eq!(&decoded.encode()[..], &body[..]);
        assert!(
            GetConsumerListByGroupResponseBody::decode(b"{}").unwrap().consumer_id_list.is_empty()
        );
    }

    #[test]
    fn reference_consume_directly_reply() {
        let result = ConsumeMessageDirectlyResult {
            consume_result: Some(CMResult::Success),
            spent_time_mills: 3,
            ..ConsumeMessageDirectlyResult::default()
        };
        // Reference 2.11, verbatim.
        assert_eq!(
            &result.encode()[..],
            br#"{"autoCommit":true,"consumeResult":"CR_SUCCESS","order":false,"spentTimeMills":3}"#
        );
        let with_remark = ConsumeMessageDirectlyResult {
            consume_result: Some(CMResult::ThrowException),
            remark: Some("boom".into()),
            ..result
        };
        let written: Value = serde_json::from_slice(&with_remark.encode()).unwrap();
        assert_eq!(written["remark"], json!("boom"));
        assert_eq!(written["consumeResult"], json!("CR_THROW_EXCEPTION"));
        assert_eq!(
            ConsumeMessageDirectlyResult::decode(&with_remark.encode()).unwrap(),
            with_remark
        );
        assert_eq!(
            ConsumeMessageDirectlyResult::decode(b"{}").unwrap(),
            ConsumeMessageDirectlyResult::default()
        );
    }

    #[test]
    fn cm_result_names_and_ordinals() {
        let names: Vec<&str> = CMResult::ALL.iter().map(|r| r.java_name()).collect();
        assert_eq!(
            names,
            [
                "CR_SUCCESS",
                "CR_LATER",
                "CR_ROLLBACK",
                "CR_COMMIT",
                "CR_THROW_EXCEPTION",
                "CR_RETURN_NULL"
            ]
        );
        assert_eq!(serde_json::from_value::<CMResult>(json!(5)).unwrap(), CMResult::ReturnNull);
    }
}
