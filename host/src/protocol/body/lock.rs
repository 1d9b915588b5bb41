//! LOCK_BATCH_MQ (41) / UNLOCK_BATCH_MQ (42) bodies: orderly consumers lock their queues on the
//! master before consuming them (reference 2.9).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::protocol::types::MessageQueue;

/// Asks the master to lock these queues for `client_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    pub consumer_group: String,
    /// Spelled `clientId` here, unlike the heartbeat's `clientID`.
    pub client_id: String,
    /// 5.x strict mode only: do not fan out to the other replicas.
    #[serde(default)]
    pub only_this_broker: bool,
    #[serde(default)]
    pub mq_set: BTreeSet<MessageQueue>,
}

/// The subset of the requested queues now locked by this client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", default)]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// Releases locks; the broker only releases those held by `client_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    #[serde(default)]
    pub only_this_broker: bool,
    #[serde(default)]
    pub mq_set: BTreeSet<MessageQueue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::QueueId;
    use serde_json::Value;

    /// Reference 2.9, verbatim.
    const LOCK_EXAMPLE: &str = r#"{"clientId":"cid","consumerGroup":"G","mqSet":[{"brokerName":"b","queueId":0,"topic":"T"}],"onlyThisBroker":false}"#;

    fn example() -> LockBatchRequestBody {
        LockBatchRequestBody {
            consumer_group: "G".into(),
            client_id: "cid".into(),
            only_this_broker: false,
            mq_set: BTreeSet::from([MessageQueue::new("T", "b", QueueId(0))]),
        }
    }

    #[test]
    fn reference_lock_body() {
        assert_eq!(&example().encode()[..], LOCK_EXAMPLE.as_bytes());
        assert_eq!(LockBatchRequestBody::decode(LOCK_EXAMPLE.as_bytes()).unwrap(), example());
        let strict: Value =
            serde_json::from_slice(&crate::protocol::body::to_json(&example())).unwrap();
        assert_eq!(strict, serde_json::from_str::<Value>(LOCK_EXAMPLE).unwrap());
    }

    #[test]
    fn unlock_body_has_the_same_shape() {
        let unlock = UnlockBatchRequestBody {
            consumer_group: "G".into(),
            client_id: "cid".into(),
            only_this_broker: false,
            mq_set: example().mq_set,
        };
        assert_eq!(&unlock.encode()[..], LOCK_EXAMPLE.as_bytes());
        assert_eq!(UnlockBatchRequestBody::decode(LOCK_EXAMPLE.as_bytes()).unwrap(), unlock);
    }

    #[test]
    fn lock_response() {
        let body = br#"{"lockOKMQSet":[{"brokerName":"b","queueId":1,"topic":"T"},{"brokerName":"b","queueId":0,"topic":"T"}]}"#;
        let resp = LockBatchResponseBody::decode(body).unwrap();
        let ids: Vec<i32> = resp.lock_ok_mq_set.iter().map(|q| q.queue_id.0).collect();
        assert_eq!(ids, [0, 1]);
        assert_eq!(LockBatchResponseBody::decode(b"{}").unwrap(), LockBatchResponseBody::default());
        assert!(resp.encode().starts_with(br#"{"lockOKMQSet":[{"brokerName":"b","queueId":0"#));
    }
}
