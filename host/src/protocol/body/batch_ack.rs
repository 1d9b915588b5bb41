//! BATCH_ACK_MESSAGE (200151) body (Java `BatchAckMessageRequestBody` / `BatchAck`, 5.x): the
//! acks of many popped messages in one request, one [`BatchAck`] per check point.
//!
//! A check point is what one pop took from one (topic mark, queue): its messages share the
//! handle's first five fields and its queue id, and differ only in their offset. A `BatchAck`
//! names the check point once and the acked offsets as a bit set relative to its start offset
//! (`ckQueueOffset`); the broker (`AckMessageProcessor.appendAck`) turns each set bit `i` into an
//! ack of offset `startOffset + i`, skipping offsets outside the queue. The short field names
//! (`c`, `t`, `r`, `so`, …) are Java's `@JSONField` names; fastjson writes a `java.util.BitSet`
//! (through `BitSetSerializerDeserializer`) as the base64 of `BitSet.toByteArray()`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::pop::PopHandle;

/// The widest offset span one [`BatchAck`] covers: a check point spans one pop (≤ 32 messages,
/// plus what the broker's filter skipped), far below this; a handle further from its check point
/// than this is acked on its own rather than allocating a bit set that large.
pub const MAX_ACK_SPAN: i64 = 1 << 16;

/// A set of small non-negative integers (the acked offsets minus the check point's start offset)
/// in Java `BitSet.toByteArray()` form: bit `i` is bit `i % 8` of byte `i / 8`, trailing zero
/// bytes dropped (so the empty set is no bytes, written `""`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckBits(Vec<u8>);

impl AckBits {
    /// Sets bit `i`.
    pub fn insert(&mut self, i: u32) {
        let byte = (i / 8) as usize;
        if self.0.len() <= byte {
            self.0.resize(byte + 1, 0);
        }
        self.0[byte] |= 1 << (i % 8);
    }

    /// The set bits, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(byte, bits)| {
            (0..8u32).filter(move |b| bits & (1 << b) != 0).map(move |b| byte as u32 * 8 + b)
        })
    }

    /// Java's `BitSet.valueOf(bytes)`: trailing zero bytes carry nothing.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Self {
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        Self(bytes)
    }
}

impl Serialize for AckBits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for AckBits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD.decode(&text).map_err(|e| {
            serde::de::Error::custom(format!("bit set {text:?} is not base64: {e}"))
        })?;
        Ok(Self::from_bytes(bytes))
    }
}

/// The acks of one check point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    #[serde(rename = "c")]
    pub consumer_group: String,
    /// The topic popped (not the retry topic: `retry` says which one the offsets are in).
    #[serde(rename = "t")]
    pub topic: String,
    /// The handle's topic mark: `"0"` the topic, `"1"` / `"2"` the group's POP retry topic.
    #[serde(rename = "r")]
    pub retry: String,
    /// The check point's start offset (the handle's `ckQueueOffset`).
    #[serde(rename = "so")]
    pub start_offset: i64,
    #[serde(rename = "q")]
    pub queue_id: i32,
    #[serde(rename = "rq")]
    pub revive_queue_id: i32,
    #[serde(rename = "pt")]
    pub pop_time: i64,
    #[serde(rename = "it")]
    pub invisible_time: i64,
    /// The acked offsets minus `start_offset`.
    #[serde(rename = "b")]
    pub bit_set: AckBits,
}

/// BATCH_ACK_MESSAGE's body: the acks for one broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchAckMessageRequestBody {
    pub broker_name: String,
    pub acks: Vec<BatchAck>,
}

/// The check point a handle belongs to: every handle with the same key goes into one
/// [`BatchAck`].
type CheckPoint = (String, &'static str, i32, i64, i64, i64, i32);

fn check_point(topic: &str, h: &PopHandle) -> CheckPoint {
    let invisible = i64::try_from(h.invisible_time.as_millis()).unwrap_or(i64::MAX);
    (
        topic.to_owned(),
        h.mark.wire(),
        h.queue_id.0,
        h.ck_queue_offset.0,
        h.pop_time.0,
        invisible,
        h.revive_qid,
    )
}

/// Groups the acks of `popped` (each message's popped topic and handle) into one body per broker,
/// in broker-name order; the indices of handles that cannot be batched (further than
/// [`MAX_ACK_SPAN`] from their check point, or before it) come back to be acked one by one.
pub fn batch_ack_bodies<'a>(
    group: &str,
    popped: impl IntoIterator<Item = (&'a str, &'a PopHandle)>,
) -> (Vec<BatchAckMessageRequestBody>, Vec<usize>) {
    let mut brokers: BTreeMap<&str, BTreeMap<CheckPoint, AckBits>> = BTreeMap::new();
    let mut single = Vec::new();
    for (i, (topic, h)) in popped.into_iter().enumerate() {
        let delta = h.queue_offset.0 - h.ck_queue_offset.0;
        if !(0..MAX_ACK_SPAN).contains(&delta) {
            single.push(i);
            continue;
        }
        let bits = brokers.entry(&h.broker_name).or_default();
        bits.entry(check_point(topic, h)).or_default().insert(delta as u32);
    }
    let bodies = brokers
        .into_iter()
        .map(|(broker, points)| BatchAckMessageRequestBody {
            broker_name: broker.to_owned(),
            acks: points
                .into_iter()
                .map(|((topic, retry, queue_id, start, pop_time, invisible, rq), bit_set)| {
                    BatchAck {
                        consumer_group: group.to_owned(),
                        topic,
                        retry: retry.to_owned(),
                        start_offset: start,
                        queue_id,
                        revive_queue_id: rq,
                        pop_time,
                        invisible_time: invisible,
                        bit_set,
                    }
                })
                .collect(),
        })
        .collect();
    (bodies, single)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::pop::TopicMark;
    use crate::protocol::{EpochMillis, QueueId, QueueOffset};

    fn bits(set: &[u32]) -> AckBits {
        let mut b = AckBits::default();
        for i in set {
            b.insert(*i);
        }
        b
    }

    /// Java's own output (fastjson 1.2.83 under rocketmq-remoting 5.3.3,
    /// `BatchAckMessageRequestBody.encode()`), byte for byte.
    #[test]
    fn the_body_is_written_as_java_writes_it() {
        let ack = BatchAck {
            consumer_group: "g".into(),
            topic: "t".into(),
            retry: "0".into(),
            start_offset: 100,
            queue_id: 1,
            revive_queue_id: 3,
            pop_time: 1_700_000_000_000,
            invisible_time: 60_000,
            bit_set: bits(&[0, 2, 9]),
        };
        let empty = BatchAck {
            consumer_group: "g".into(),
            topic: "t".into(),
            retry: "1".into(),
            ..BatchAck::default()
        };
        let body =
            BatchAckMessageRequestBody { broker_name: "broker-a".into(), acks: vec![ack, empty] };
        let java = r#"{"acks":[{"b":"BQI=","c":"g","it":60000,"pt":1700000000000,"q":1,"r":"0","rq":3,"so":100,"t":"t"},{"b":"","c":"g","it":0,"pt":0,"q":0,"r":"1","rq":0,"so":0,"t":"t"}],"brokerName":"broker-a"}"#;
        assert_eq!(std::str::from_utf8(&body.encode()).unwrap(), java);
        assert_eq!(BatchAckMessageRequestBody::decode(java.as_bytes()).unwrap(), body);
    }

    #[test]
    fn bit_sets_match_java_bitset_to_byte_array() {
        // (bits, Java's base64 of BitSet.toByteArray())
        let cases: [(&[u32], &str); 5] = [
            (&[], ""),
            (&[0], "AQ=="),
            (&[0, 2, 9], "BQI="),
            (&[7, 8], "gAE="),
            (&[31, 64], "AAAAgAAAAAAB"),
        ];
        for (set, java) in cases {
            let b = bits(set);
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{java}\""), "{set:?}");
            let back: AckBits = serde_json::from_str(&format!("\"{java}\"")).unwrap();
            assert_eq!(back.iter().collect::<Vec<_>>(), set, "{java}");
        }
        // Trailing zero bytes carry nothing (Java's BitSet.valueOf).
        assert_eq!(AckBits::from_bytes(vec![1, 0, 0]), bits(&[0]));
        let err = serde_json::from_str::<AckBits>("\"not base64!\"").unwrap_err();
        assert!(err.to_string().contains("not base64"), "{err}");
    }

    fn handle(broker: &str, mark: TopicMark, queue: i32, ck: i64, offset: i64) -> PopHandle {
        PopHandle {
            ck_queue_offset: QueueOffset(ck),
            pop_time: EpochMillis(1_000),
            invisible_time: Duration::from_secs(60),
            revive_qid: 2,
            mark,
            broker_name: broker.into(),
            queue_id: QueueId(queue),
            queue_offset: QueueOffset(offset),
        }
    }

    #[test]
    fn handles_group_by_broker_and_check_point() {
        let handles = [
            handle("b", TopicMark::Normal, 0, 10, 12),
            handle("a", TopicMark::Normal, 0, 10, 10),
            handle("a", TopicMark::Normal, 0, 10, 11),
            handle("a", TopicMark::Normal, 1, 4, 4),
            handle("a", TopicMark::Retry, 0, 0, 3),
            // Before its check point, and far past it: acked alone.
            handle("a", TopicMark::Normal, 0, 10, 9),
            handle("a", TopicMark::Normal, 0, 10, 10 + MAX_ACK_SPAN),
        ];
        let (bodies, single) = batch_ack_bodies("g", handles.iter().map(|h| ("t", h)));
        assert_eq!(single, [5, 6]);
        // (broker, [(retry, queue, start offset, bits)])
        type Summary = (String, Vec<(String, i32, i64, Vec<u32>)>);
        let summary: Vec<Summary> = bodies
            .iter()
            .map(|b| {
                let acks = b.acks.iter().map(|a| {
                    (a.retry.clone(), a.queue_id, a.start_offset, a.bit_set.iter().collect())
                });
                (b.broker_name.clone(), acks.collect())
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "a".to_owned(),
                    vec![
                        ("0".to_owned(), 0, 10, vec![0, 1]),
                        ("0".to_owned(), 1, 4, vec![0]),
                        ("1".to_owned(), 0, 0, vec![3]),
                    ]
                ),
                ("b".to_owned(), vec![("0".to_owned(), 0, 10, vec![2])]),
            ]
        );
        let a = &bodies[0].acks[0];
        assert_eq!((a.consumer_group.as_str(), a.topic.as_str()), ("g", "t"));
        assert_eq!((a.pop_time, a.invisible_time, a.revive_queue_id), (1_000, 60_000, 2));
    }
}
