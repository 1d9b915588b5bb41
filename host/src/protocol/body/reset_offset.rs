//! RESET_CONSUMER_CLIENT_OFFSET (220) body, which is also the local offsets file of a
//! broadcasting consumer (reference 2.11, 4.9): `{"offsetTable":{<MessageQueue>:offset}}` with
//! bare object keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::types::{MessageQueue, QueueOffset};

/// New offsets, by queue. Written with bare object keys by [`ResetOffsetBody::encode`], as
/// fastjson writes `Map<MessageQueue, Long>`, so Java tools can read our offsets file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetOffsetBody {
    #[serde(default, with = "super::mq_map")]
    pub offset_table: BTreeMap<MessageQueue, QueueOffset>,
}

/// The broadcasting consumer's `offsets.json` (Java `OffsetSerializeWrapper`): the same shape.
pub type OffsetSerializeWrapper = ResetOffsetBody;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::QueueId;

    fn mq(topic: &str, broker: &str, id: i32) -> MessageQueue {
        MessageQueue::new(topic, broker, QueueId(id))
    }

    #[test]
    fn reference_reset_offset_body_with_bare_object_keys() {
        // As fastjson writes it: bare object keys, and a long above 2^53.
        let body = br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:42,{"brokerName":"b","queueId":1,"topic":"t"}:9007199254740993}}"#;
        let decoded = ResetOffsetBody::decode(body).unwrap();
        assert_eq!(
            decoded.offset_table,
            BTreeMap::from([
                (mq("t", "b", 0), QueueOffset(42)),
                (mq("t", "b", 1), QueueOffset(9_007_199_254_740_993)),
            ])
        );
        // Written back byte for byte.
        assert_eq!(&decoded.encode()[..], &body[..]);
    }

    #[test]
    fn key_field_order_and_spacing_do_not_matter() {
        let body = br#"{ "offsetTable" : { { "topic" : "t" , "queueId" : 3 , "brokerName" : "b" } : -1 } }"#;
        let decoded = ResetOffsetBody::decode(body).unwrap();
        assert_eq!(decoded.offset_table, BTreeMap::from([(mq("t", "b", 3), QueueOffset(-1))]));
    }

    #[test]
    fn offsets_file_round_trip() {
        let file = OffsetSerializeWrapper {
            offset_table: (0..4)
                .map(|i| (mq("%RETRY%G", "broker-a", i), QueueOffset(i64::from(i) * 1000)))
                .collect(),
        };
        let bytes = file.encode();
        assert_eq!(OffsetSerializeWrapper::decode(&bytes).unwrap(), file);
        assert_eq!(
            OffsetSerializeWrapper::decode(b"{}").unwrap(),
            OffsetSerializeWrapper::default()
        );
        assert_eq!(&OffsetSerializeWrapper::default().encode()[..], br#"{"offsetTable":{}}"#);
    }

    proptest::proptest! {
        #[test]
        fn any_queue_names_round_trip(
            entries in proptest::collection::vec(
                (
                    ".{0,12}",
                    "[{}\"\\\\:, a-z]{0,12}",
                    proptest::num::i32::ANY,
                    proptest::num::i64::ANY,
                ),
                0..6,
            )
        ) {
            let body = ResetOffsetBody {
                offset_table: entries
                    .into_iter()
                    .map(|(topic, broker, id, offset)| {
                        (mq(&topic, &broker, id), QueueOffset(offset))
                    })
                    .collect(),
            };
            let fastjson = body.encode();
            proptest::prop_assert_eq!(ResetOffsetBody::decode(&fastjson).unwrap(), body.clone());
            let strict = crate::protocol::body::to_json(&body);
            proptest::prop_assert_eq!(ResetOffsetBody::decode(&strict).unwrap(), body);
        }
    }
}
