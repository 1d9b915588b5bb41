//! GET_ROUTEINFO_BY_TOPIC (105) response: which brokers serve a topic, with how many queues
//! (reference 2.2, 4.2).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{BodyError, json};
use crate::protocol::types::{MessageQueue, QueueId};

/// The broker id of a master in `brokerAddrs` (Java `MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// The most queues a route may make a consumer or producer list: the sum of `readQueueNums`
/// over its queue sets, of `writeQueueNums`, and of the counts in `orderTopicConf`, each.
///
/// Every listed queue becomes a [`MessageQueue`] at each rebalance, so a name server (hostile or
/// misconfigured) announcing `readQueueNums` 2^31-1 made the host ask for 120 GB and abort. Real
/// topics have a few brokers of 4 to 256 queues; 65,536 leaves them ample room.
pub const MAX_ROUTE_QUEUES: i64 = 65_536;

/// Queue permission bits (`PermName`): a queue set is readable (consumers may pull) and/or
/// writable (producers may send).
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;

    /// Consumers may pull from queues with this permission.
    pub fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }

    /// Producers may send to queues with this permission.
    pub fn is_writable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }

    /// Java's `PermName.perm2String`, e.g. `"RW-"` for 6; handy in logs.
    pub fn to_display(perm: i32) -> String {
        let flag = |bit: i32, c: char| if perm & bit == bit { c } else { '-' };
        [flag(READ, 'R'), flag(WRITE, 'W'), flag(INHERIT, 'X')].iter().collect()
    }
}

/// A topic's route as the name server reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    /// `"brokerA:4;brokerB:4"`, only for topics with order configuration on the name server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    pub queue_datas: Vec<QueueData>,
    #[serde(default)]
    pub broker_datas: Vec<BrokerData>,
    /// Legacy class-filter servers, broker address → filter server addresses; normally empty.
    #[serde(default)]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// 5.x static/logical topics only. Kept opaque: a push consumer does not use it, but a
    /// change in it is still a route change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

impl TopicRouteData {
    /// Reads the body as a name server writes it (fastjson's bare keys accepted), refusing queue
    /// counts beyond [`MAX_ROUTE_QUEUES`] with a [`BodyError::OutOfRange`] naming the queue set
    /// or `orderTopicConf` item that crosses it.
    pub fn decode(body: &[u8]) -> Result<Self, BodyError> {
        let route: Self = json::from_fastjson(body)?;
        route.check_queue_counts()?;
        Ok(route)
    }

    /// Writes the body as fastjson would (see [`json::to_fastjson`]).
    pub fn encode(&self) -> Bytes {
        json::to_fastjson(self)
    }

    /// The [`MAX_ROUTE_QUEUES`] check of [`Self::decode`].
    fn check_queue_counts(&self) -> Result<(), BodyError> {
        let over = |problem: String| BodyError::OutOfRange { target: "route data", problem };
        let (mut read, mut write) = (0_i64, 0_i64);
        for (i, qd) in self.queue_datas.iter().enumerate() {
            for (field, count, total) in [
                ("readQueueNums", qd.read_queue_nums, &mut read),
                ("writeQueueNums", qd.write_queue_nums, &mut write),
            ] {
                *total += i64::from(count.max(0));
                if *total > MAX_ROUTE_QUEUES {
                    return Err(over(format!(
                        "queueDatas[{i}] (broker `{}`): {field} {count} takes the route over \
                         {MAX_ROUTE_QUEUES} queues",
                        qd.broker_name
                    )));
                }
            }
        }
        let mut ordered = 0_i64;
        for (item, _, count) in self.order_conf_items() {
            ordered += i64::from(count.max(0));
            if ordered > MAX_ROUTE_QUEUES {
                return Err(over(format!(
                    "orderTopicConf item `{item}` takes the route over {MAX_ROUTE_QUEUES} queues"
                )));
            }
        }
        Ok(())
    }

    /// The `broker:count` items of `orderTopicConf` that parse, as `(item, broker, count)`;
    /// others are skipped, as Java skips them.
    fn order_conf_items(&self) -> impl Iterator<Item = (&str, &str, i32)> {
        self.order_topic_conf.as_deref().unwrap_or_default().split(';').filter_map(|item| {
            let (broker, count) = item.split_once(':')?;
            Some((item, broker, count.trim().parse::<i32>().ok()?))
        })
    }

    /// The queues a consumer rebalances over (Java `topicRouteData2TopicSubscribeInfo`):
    /// `0..readQueueNums` of every readable queue set, sorted as Java's `MessageQueue` sorts.
    pub fn subscribe_queues(&self, topic: &str) -> Vec<MessageQueue> {
        let mut queues: Vec<MessageQueue> = self
            .queue_datas
            .iter()
            .filter(|qd| perm::is_readable(qd.perm))
            .flat_map(|qd| {
                (0..qd.read_queue_nums.max(0))
                    .map(move |i| MessageQueue::new(topic, qd.broker_name.as_str(), QueueId(i)))
            })
            .collect();
        queues.sort();
        queues.dedup();
        queues
    }

    /// The queues a producer may send to (Java `topicRouteData2TopicPublishInfo`).
    ///
    /// With `orderTopicConf` set, exactly the `broker:count` pairs it lists, in its order.
    /// Otherwise `0..writeQueueNums` of every writable queue set whose broker has a known
    /// master, sorted.
    pub fn publish_queues(&self, topic: &str) -> Vec<MessageQueue> {
        if self.order_topic_conf.as_deref().is_some_and(|c| !c.is_empty()) {
            return self
                .order_conf_items()
                .flat_map(|(_, broker, count)| {
                    (0..count.max(0)).map(move |i| MessageQueue::new(topic, broker, QueueId(i)))
                })
                .collect();
        }
        let mut queues: Vec<MessageQueue> = self
            .queue_datas
            .iter()
            .filter(|qd| perm::is_writable(qd.perm) && self.master_addr(&qd.broker_name).is_some())
            .flat_map(|qd| {
                (0..qd.write_queue_nums.max(0))
                    .map(move |i| MessageQueue::new(topic, qd.broker_name.as_str(), QueueId(i)))
            })
            .collect();
        queues.sort();
        queues.dedup();
        queues
    }

    /// The broker set with this name, if the route has it.
    pub fn broker(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_datas.iter().find(|bd| bd.broker_name == broker_name)
    }

    /// The master address of this broker set, if the route has one.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.broker(broker_name)?.master_addr()
    }

    /// Sorts `queueDatas` and `brokerDatas` by broker name, as Java does before comparing an
    /// old route with a new one, so that `==` means "the route did not change".
    pub fn normalize(&mut self) {
        self.queue_datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        self.broker_datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    }
}

/// One broker set's share of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "QueueDataWire")]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    /// [`perm`] bits.
    pub perm: i32,
    /// Written `topicSysFlag`; name servers before 4.9.0 spell it `topicSynFlag`, read as well.
    pub topic_sys_flag: i32,
}

impl QueueData {
    pub fn is_readable(&self) -> bool {
        perm::is_readable(self.perm)
    }

    pub fn is_writable(&self) -> bool {
        perm::is_writable(self.perm)
    }
}

/// Reads both spellings of the flag without serde's "duplicate field" error should a writer
/// ever send both (an alias would reject that).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueDataWire {
    broker_name: String,
    #[serde(default)]
    read_queue_nums: i32,
    #[serde(default)]
    write_queue_nums: i32,
    #[serde(default)]
    perm: i32,
    #[serde(default)]
    topic_sys_flag: Option<i32>,
    #[serde(default)]
    topic_syn_flag: Option<i32>,
}

impl From<QueueDataWire> for QueueData {
    fn from(w: QueueDataWire) -> Self {
        Self {
            broker_name: w.broker_name,
            read_queue_nums: w.read_queue_nums,
            write_queue_nums: w.write_queue_nums,
            perm: w.perm,
            topic_sys_flag: w.topic_sys_flag.or(w.topic_syn_flag).unwrap_or(0),
        }
    }
}

/// One broker set: a master and its slaves, by broker id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    #[serde(default)]
    pub cluster: String,
    pub broker_name: String,
    /// Broker id → `"ip:port"`; id [`MASTER_ID`] (0) is the master. fastjson writes the ids as
    /// bare numbers (`{0:"…"}`), newer name servers as strings; both parse to `i64`.
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    /// 5.x only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    /// 5.x only: a slave may act as master while the master is down.
    #[serde(default)]
    pub enable_acting_master: bool,
}

impl BrokerData {
    /// The master's address (id 0), if the set has a live master.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }

    /// The master if known, else the replica with the lowest id: where offset queries and
    /// updates go (reference 4.2).
    pub fn master_or_any_addr(&self) -> Option<&str> {
        self.master_addr().or_else(|| self.broker_addrs.values().next().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Reference 2.2, verbatim: the 4.x form with bare broker-id keys.
    const ROUTE_4X: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    /// The same route in the standard form (request version >= 401 / acceptStandardJsonOnly).
    const ROUTE_STANDARD: &str = r#"{"brokerDatas":[{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    fn expected() -> TopicRouteData {
        TopicRouteData {
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_sys_flag: 0,
            }],
            broker_datas: vec![BrokerData {
                cluster: "DefaultCluster".into(),
                broker_name: "broker-a".into(),
                broker_addrs: BTreeMap::from([
                    (0, "10.0.0.1:10911".into()),
                    (1, "10.0.0.2:10911".into()),
                ]),
                zone_name: None,
                enable_acting_master: false,
            }],
            filter_server_table: BTreeMap::new(),
            topic_queue_mapping_by_broker: None,
        }
    }

    #[test]
    fn reference_route_bare_keys() {
        let route = TopicRouteData::decode(ROUTE_4X.as_bytes()).unwrap();
        assert_eq!(route, expected());
        assert_eq!(route.master_addr("broker-a"), Some("10.0.0.1:10911"));
        assert_eq!(route.master_addr("broker-b"), None);
    }

    #[test]
    fn reference_route_standard_keys() {
        assert_eq!(TopicRouteData::decode(ROUTE_STANDARD.as_bytes()).unwrap(), expected());
        // serde_json alone can read the standard form too, so it is genuinely standard.
        assert_eq!(serde_json::from_str::<TopicRouteData>(ROUTE_STANDARD).unwrap(), expected());
    }

    #[test]
    fn encode_matches_the_standard_form() {
        let written: Value = serde_json::from_slice(&expected().encode()).unwrap();
        let mut want: Value = serde_json::from_str(ROUTE_STANDARD).unwrap();
        want["brokerDatas"][0]["enableActingMaster"] = json!(false);
        assert_eq!(written, want);
    }

    #[test]
    fn five_x_fields_and_unknown_fields() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{"0":"a:1"},"brokerName":"b","cluster":"c","enableActingMaster":true,"zoneName":"z","newThing":[1]}],
            "queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":2,"writeQueueNums":2,"topicSysFlag":0}],
            "topicQueueMappingByBroker":{"b":{"x":1}},"orderTopicConf":"b:2","futureField":{}}"#;
        let route = TopicRouteData::decode(body).unwrap();
        assert_eq!(route.broker_datas[0].zone_name.as_deref(), Some("z"));
        assert!(route.broker_datas[0].enable_acting_master);
        assert_eq!(route.topic_queue_mapping_by_broker, Some(json!({"b": {"x": 1}})));
        assert_eq!(route.order_topic_conf.as_deref(), Some("b:2"));
    }

    #[test]
    fn topic_syn_flag_is_read_as_topic_sys_flag() {
        let old = br#"{"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":1,"writeQueueNums":1,"topicSynFlag":3}]}"#;
        assert_eq!(TopicRouteData::decode(old).unwrap().queue_datas[0].topic_sys_flag, 3);
        let both =
            br#"{"queueDatas":[{"brokerName":"b","perm":6,"topicSynFlag":3,"topicSysFlag":5}]}"#;
        assert_eq!(TopicRouteData::decode(both).unwrap().queue_datas[0].topic_sys_flag, 5);
        // Written with the current spelling only.
        let written =
            String::from_utf8(TopicRouteData::decode(old).unwrap().encode().to_vec()).unwrap();
        assert!(
            written.contains(r#""topicSysFlag":3"#) && !written.contains("topicSynFlag"),
            "{written}"
        );
    }

    fn qd(broker: &str, read: i32, write: i32, perm: i32) -> QueueData {
        QueueData {
            broker_name: broker.into(),
            read_queue_nums: read,
            write_queue_nums: write,
            perm,
            topic_sys_flag: 0,
        }
    }

    fn bd(broker: &str, ids: &[i64]) -> BrokerData {
        BrokerData {
            cluster: "c".into(),
            broker_name: broker.into(),
            broker_addrs: ids.iter().map(|&id| (id, format!("{broker}:{id}"))).collect(),
            ..BrokerData::default()
        }
    }

    fn names(queues: &[MessageQueue]) -> Vec<String> {
        queues.iter().map(|q| format!("{}/{}", q.broker_name, q.queue_id)).collect()
    }

    #[test]
    fn subscribe_queues_are_readable_and_sorted() {
        let route = TopicRouteData {
            queue_datas: vec![
                qd("b", 2, 8, perm::READ | perm::WRITE),
                qd("a", 3, 1, perm::READ),
                qd("w", 4, 4, perm::WRITE),
                qd("z", 0, 4, perm::READ),
            ],
            broker_datas: vec![bd("a", &[1]), bd("b", &[0])],
            ..TopicRouteData::default()
        };
        let queues = route.subscribe_queues("T");
        assert_eq!(names(&queues), ["a/0", "a/1", "a/2", "b/0", "b/1"]);
        assert!(queues.iter().all(|q| q.topic == "T"));
    }

    #[test]
    fn publish_queues_are_writable_with_a_master() {
        let route = TopicRouteData {
            queue_datas: vec![
                qd("b", 2, 2, 6),
                qd("a", 3, 1, 6),
                qd("r", 4, 4, perm::READ),
                qd("s", 4, 4, 6), // slave only
                qd("x", 4, 4, 6), // no broker data
            ],
            broker_datas: vec![bd("a", &[0, 1]), bd("b", &[0]), bd("r", &[0]), bd("s", &[1])],
            ..TopicRouteData::default()
        };
        assert_eq!(names(&route.publish_queues("T")), ["a/0", "b/0", "b/1"]);
        let ordered = TopicRouteData { order_topic_conf: Some("b:2;a:1;bad;c:x".into()), ..route };
        assert_eq!(names(&ordered.publish_queues("T")), ["b/0", "b/1", "a/0"]);
    }

    #[test]
    fn broker_addresses() {
        assert_eq!(bd("a", &[0, 1]).master_addr(), Some("a:0"));
        assert_eq!(bd("a", &[2, 1]).master_addr(), None);
        assert_eq!(bd("a", &[2, 1]).master_or_any_addr(), Some("a:1"));
        assert_eq!(bd("a", &[]).master_or_any_addr(), None);
    }

    #[test]
    fn perm_bits() {
        assert!(perm::is_readable(6) && perm::is_writable(6));
        assert!(perm::is_readable(4) && !perm::is_writable(4));
        assert!(!perm::is_readable(2) && perm::is_writable(2));
        assert_eq!(perm::to_display(6), "RW-");
        assert_eq!(perm::to_display(7), "RWX");
        assert!(qd("a", 1, 1, 4).is_readable() && !qd("a", 1, 1, 4).is_writable());
    }

    #[test]
    fn normalize_makes_routes_comparable() {
        let mut one = TopicRouteData {
            queue_datas: vec![qd("b", 1, 1, 6), qd("a", 1, 1, 6)],
            broker_datas: vec![bd("b", &[0]), bd("a", &[0])],
            ..TopicRouteData::default()
        };
        let mut two = TopicRouteData {
            queue_datas: vec![qd("a", 1, 1, 6), qd("b", 1, 1, 6)],
            broker_datas: vec![bd("a", &[0]), bd("b", &[0])],
            ..TopicRouteData::default()
        };
        assert_ne!(one, two);
        one.normalize();
        two.normalize();
        assert_eq!(one, two);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for body in [ROUTE_4X, ROUTE_STANDARD] {
            for end in 0..body.len() {
                let cut = &body.as_bytes()[..end];
                assert!(TopicRouteData::decode(cut).is_err(), "accepted {:?}", &body[..end]);
            }
        }
    }

    #[test]
    fn bad_broker_id_is_a_shape_error() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{x:"a"},"brokerName":"b"}]}"#;
        assert!(matches!(
            TopicRouteData::decode(body),
            Err(crate::protocol::body::BodyError::Shape { .. })
        ));
    }

    /// Queue counts a consumer or producer would expand into one `MessageQueue` each. Found by
    /// the `route_data` fuzz target: a count of 467,440,737 in `orderTopicConf` made
    /// `publish_queues` ask for 26 GB, and `readQueueNums` 2^31-1 makes `subscribe_queues`
    /// (every rebalance) ask for 120 GB; the allocation failure aborted the process.
    #[test]
    fn queue_counts_beyond_the_limit_are_refused() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"queueDatas":[{"brokerName":"b","perm":4,"readQueueNums":2147483647}]}"#,
                "queueDatas[0] (broker `b`): readQueueNums 2147483647",
            ),
            (
                br#"{"brokerDatas":[{"brokerAddrs":{0:"a:1"},"brokerName":"b"}],"queueDatas":[{"brokerName":"b","perm":2,"writeQueueNums":2147483647}]}"#,
                "queueDatas[0] (broker `b`): writeQueueNums 2147483647",
            ),
            (
                br#"{"queueDatas":[{"brokerName":"a","perm":6,"readQueueNums":40000},{"brokerName":"b","perm":6,"readQueueNums":40000}]}"#,
                "queueDatas[1] (broker `b`): readQueueNums 40000",
            ),
            (br#"{"orderTopicConf":"a:8;b:2147483647"}"#, "orderTopicConf item `b:2147483647`"),
            // The fuzzer's own find, as it wrote it and minimised: serde reads a struct from an
            // array too, so this is `orderTopicConf` ":467440737" (empty broker name), and
            // `publish_queues` asked for 26 GB.
            (b"[\n\n\":467440737\t\t\n\"]\n\n\n", "orderTopicConf item `:467440737"),
            (br#"[":467440737"]"#, "orderTopicConf item `:467440737`"),
        ];
        for (body, named) in cases {
            let err = TopicRouteData::decode(body).unwrap_err();
            assert!(matches!(err, crate::protocol::body::BodyError::OutOfRange { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(named) && text.contains("65536"), "{text}");
        }
        // Up to the limit is fine, and the queue lists are as long as the route says.
        let at_limit = br#"{"brokerDatas":[{"brokerAddrs":{0:"a:1"},"brokerName":"b"}],"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":65536,"writeQueueNums":65536}],"orderTopicConf":"b:65536"}"#;
        let route = TopicRouteData::decode(at_limit).unwrap();
        assert_eq!(route.subscribe_queues("T").len(), 65_536);
        assert_eq!(route.publish_queues("T").len(), 65_536);
    }
}
