//! HEART_BEAT (34) request body: who we are and what each of our groups subscribes to
//! (reference 2.3). The broker filters consume queues with the `codeSet` we send here, so a
//! wrong hash silently skips messages; see [`java_string_hash`].

use serde::{Deserialize, Serialize};

use crate::protocol::types::EpochMillis;

/// Java's `String.hashCode()`: `h = 31*h + u` over the UTF-16 code units, wrapping at `i32`.
///
/// The broker stores each message's tag as this hash in the consume queue and compares it with
/// the subscription's `codeSet`, so it must match Java bit for bit, including for non-ASCII
/// tags (UTF-16 units, not bytes or chars).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

java_enum! {
    /// How a consumer gets messages (`ConsumeType`). A push consumer is `CONSUME_PASSIVELY`.
    pub enum ConsumeType {
        Actively = "CONSUME_ACTIVELY",
        Passively = "CONSUME_PASSIVELY",
        Pop = "CONSUME_POP",
    }
}

java_enum! {
    /// Whether a group shares its queues among members or every member gets every message.
    #[derive(Default)]
    pub enum MessageModel {
        Broadcasting = "BROADCASTING",
        /// `DefaultMQPushConsumer`'s default.
        #[default]
        Clustering = "CLUSTERING",
    }
}

java_enum! {
    /// Where a newly assigned queue with no stored offset starts (reference 4.10).
    #[derive(Default)]
    pub enum ConsumeFromWhere {
        /// `DefaultMQPushConsumer`'s default.
        #[default]
        LastOffset = "CONSUME_FROM_LAST_OFFSET",
        /// Deprecated in Java; behaves as `LastOffset`.
        LastOffsetAndFromMinWhenBootFirst = "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
        /// Deprecated in Java; behaves as `LastOffset`.
        MinOffset = "CONSUME_FROM_MIN_OFFSET",
        /// Deprecated in Java; behaves as `LastOffset`.
        MaxOffset = "CONSUME_FROM_MAX_OFFSET",
        FirstOffset = "CONSUME_FROM_FIRST_OFFSET",
        Timestamp = "CONSUME_FROM_TIMESTAMP",
    }
}

java_enum! {
    /// The language of a subscription expression. A plain string in Java (`ExpressionType`).
    #[derive(Default)]
    pub enum ExpressionType {
        /// Java treats a missing expression type as TAG.
        #[default]
        Tag = "TAG",
        Sql92 = "SQL92",
    }
}

/// The heartbeat body, sent to every broker (masters and slaves) every 30 s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    /// Our client id, `ip@instance`. Java spells it `clientID`.
    #[serde(rename = "clientID", default)]
    pub client_id: String,
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
    /// 0 = a v1 heartbeat, which every broker understands; v2 is opt-in in Java and unused here.
    #[serde(default)]
    pub heartbeat_fingerprint: i32,
    /// Java field `isWithoutSub`, written `withoutSub` after its getter `isWithoutSub()`.
    #[serde(default, alias = "isWithoutSub")]
    pub without_sub: bool,
}

/// A producer group this client belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

/// A consumer group this client belongs to, with its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub group_name: String,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    #[serde(default)]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(default)]
    pub unit_mode: bool,
}

/// One topic subscription of a group. Built with [`SubscriptionData::new`], which computes the
/// tag set and the hash codes the broker filters by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    /// Legacy class filtering; always false for us.
    #[serde(default)]
    pub class_filter_mode: bool,
    pub topic: String,
    /// The expression as given (`"*"` when subscribing to everything).
    #[serde(default)]
    pub sub_string: String,
    /// TAG: the tags, or empty for everything. SQL92: empty.
    #[serde(default)]
    pub tags_set: Vec<String>,
    /// [`java_string_hash`] of each tag, deduplicated (a Java `Set<Integer>`).
    #[serde(default)]
    pub code_set: Vec<i32>,
    /// When the subscription was last changed; the broker keeps the newest.
    #[serde(default)]
    pub sub_version: EpochMillis,
    #[serde(default)]
    pub expression_type: ExpressionType,
}

/// Java's `SubscriptionData.SUB_ALL`.
pub const SUB_ALL: &str = "*";

impl SubscriptionData {
    /// A TAG subscription (Java `FilterAPI.buildSubscriptionData`): `"TagA || TagB"` is split on
    /// `||`, each tag trimmed, empty ones dropped. `"*"` or an empty expression (after trimming)
    /// means every message: `subString` becomes `"*"` and the sets stay empty. `subVersion` is
    /// now.
    pub fn new(topic: impl Into<String>, expression: &str) -> Self {
        let mut data =
            Self { topic: topic.into(), sub_version: EpochMillis::now(), ..Self::default() };
        // Java checks only "" and "*" exactly; " * " would give it a literal tag "*" that
        // matches nothing. Trimming first avoids that trap.
        if expression.trim().is_empty() || expression.trim() == SUB_ALL {
            data.sub_string = SUB_ALL.to_owned();
            return data;
        }
        data.sub_string = expression.to_owned();
        for tag in expression.split("||").map(str::trim).filter(|t| !t.is_empty()) {
            if !data.tags_set.iter().any(|t| t == tag) {
                data.tags_set.push(tag.to_owned());
            }
            let code = java_string_hash(tag);
            if !data.code_set.contains(&code) {
                data.code_set.push(code);
            }
        }
        data
    }

    /// An SQL92 subscription: the expression is kept verbatim for the broker to evaluate; no
    /// tags, no codes.
    pub fn sql92(topic: impl Into<String>, expression: &str) -> Self {
        Self {
            topic: topic.into(),
            sub_string: expression.to_owned(),
            sub_version: EpochMillis::now(),
            expression_type: ExpressionType::Sql92,
            ..Self::default()
        }
    }

    /// [`new`](Self::new) or [`sql92`](Self::sql92) by type.
    pub fn with_type(
        topic: impl Into<String>,
        expression_type: ExpressionType,
        expression: &str,
    ) -> Self {
        match expression_type {
            ExpressionType::Tag => Self::new(topic, expression),
            ExpressionType::Sql92 => Self::sql92(topic, expression),
        }
    }

    /// True when this subscription takes every message of the topic.
    pub fn is_sub_all(&self) -> bool {
        self.expression_type == ExpressionType::Tag && self.tags_set.is_empty()
    }

    /// The client-side re-filter after a pull (reference 3.2 step 3): the broker only compared
    /// hash codes, so with a non-empty tag set keep a message only if its `TAGS` property is
    /// exactly one of the tags; a message without tags is dropped. Everything passes when the
    /// tag set is empty (`*`, SQL92) or in class-filter mode.
    pub fn matches_tag(&self, tag: Option<&str>) -> bool {
        if self.tags_set.is_empty() || self.class_filter_mode {
            return true;
        }
        tag.is_some_and(|tag| self.tags_set.iter().any(|t| t == tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Reference 2.3, verbatim.
    const CONSUMER_EXAMPLE: &str = r#"{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000001,"tagsSet":[],"topic":"%RETRY%G"}],"unitMode":false}"#;

    fn example_consumer() -> ConsumerData {
        let mut sub = SubscriptionData::new("T", "TagA");
        sub.sub_version = EpochMillis(1_700_000_000_000);
        let mut retry = SubscriptionData::new("%RETRY%G", "*");
        retry.sub_version = EpochMillis(1_700_000_000_001);
        ConsumerData {
            group_name: "G".into(),
            consume_type: ConsumeType::Passively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            subscription_data_set: vec![sub, retry],
            unit_mode: false,
        }
    }

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        // Overflows i32 and wraps, as Java does.
        assert_eq!(java_string_hash("hello world"), 1_794_106_052);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Non-ASCII hashes UTF-16 units: 'é' is one unit (0xE9), '😀' two (0xD83D 0xDE00).
        assert_eq!(java_string_hash("é"), 0xE9);
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn reference_consumer_example_serializes_exactly() {
        let written: Value =
            serde_json::from_slice(&crate::protocol::body::to_fastjson(&example_consumer()))
                .unwrap();
        let want: Value = serde_json::from_str(CONSUMER_EXAMPLE).unwrap();
        assert_eq!(written, want);
        // fastjson form: fields alphabetical, byte for byte the reference text.
        assert_eq!(
            &crate::protocol::body::to_fastjson(&example_consumer())[..],
            CONSUMER_EXAMPLE.as_bytes()
        );
        // And the strict encoder agrees on the value.
        let strict: Value =
            serde_json::from_slice(&crate::protocol::body::to_json(&example_consumer())).unwrap();
        assert_eq!(strict, want);
    }

    #[test]
    fn reference_consumer_example_decodes() {
        let decoded: ConsumerData =
            crate::protocol::body::from_fastjson(CONSUMER_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(decoded, example_consumer());
    }

    #[test]
    fn heartbeat_body() {
        let hb = HeartbeatData {
            client_id: "10.0.0.9@123#456".into(),
            producer_data_set: vec![ProducerData { group_name: "CLIENT_INNER_PRODUCER".into() }],
            consumer_data_set: vec![example_consumer()],
            heartbeat_fingerprint: 0,
            without_sub: false,
        };
        let written: Value = serde_json::from_slice(&hb.encode()).unwrap();
        assert_eq!(written["clientID"], json!("10.0.0.9@123#456"));
        assert_eq!(written["withoutSub"], json!(false));
        assert_eq!(written["heartbeatFingerprint"], json!(0));
        assert_eq!(written["producerDataSet"], json!([{"groupName": "CLIENT_INNER_PRODUCER"}]));
        assert_eq!(
            written["consumerDataSet"][0],
            serde_json::from_str::<Value>(CONSUMER_EXAMPLE).unwrap()
        );
        assert_eq!(written.as_object().unwrap().len(), 5);
        assert_eq!(HeartbeatData::decode(&hb.encode()).unwrap(), hb);
        // 4.x has neither fingerprint nor withoutSub; 5.x fastjson2 may spell it isWithoutSub.
        let old = HeartbeatData::decode(
            br#"{"clientID":"c","consumerDataSet":[],"producerDataSet":[],"isWithoutSub":true}"#,
        )
        .unwrap();
        assert!(old.without_sub);
        assert_eq!(old.heartbeat_fingerprint, 0);
    }

    #[test]
    fn tag_expressions() {
        let s = SubscriptionData::new("T", " TagA || TagB ||  || TagA||TagC ");
        assert_eq!(s.sub_string, " TagA || TagB ||  || TagA||TagC ");
        assert_eq!(s.tags_set, ["TagA", "TagB", "TagC"]);
        assert_eq!(s.code_set, ["TagA", "TagB", "TagC"].map(java_string_hash));
        assert_eq!(s.expression_type, ExpressionType::Tag);
        assert!(!s.class_filter_mode);
        assert!(s.sub_version.0 > 1_700_000_000_000);
        for all in ["*", "", "  ", " * "] {
            let s = SubscriptionData::new("T", all);
            assert_eq!(s.sub_string, "*", "{all:?}");
            assert!(s.tags_set.is_empty() && s.code_set.is_empty() && s.is_sub_all());
        }
        // Two tags with the same hash: both tags kept, one code (Java's Set<Integer>).
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        let s = SubscriptionData::new("T", "Aa||BB");
        assert_eq!(s.tags_set, ["Aa", "BB"]);
        assert_eq!(s.code_set, [java_string_hash("Aa")]);
    }

    #[test]
    fn sql92_keeps_the_expression() {
        let s = SubscriptionData::with_type("T", ExpressionType::Sql92, "a > 1 || b = 'x'");
        assert_eq!(s.sub_string, "a > 1 || b = 'x'");
        assert!(s.tags_set.is_empty() && s.code_set.is_empty());
        assert!(!s.is_sub_all());
        assert!(s.matches_tag(None) && s.matches_tag(Some("any")));
        let written: Value =
            serde_json::from_slice(&crate::protocol::body::to_fastjson(&s)).unwrap();
        assert_eq!(written["expressionType"], json!("SQL92"));
    }

    #[test]
    fn client_side_tag_filter() {
        let s = SubscriptionData::new("T", "TagA || TagB");
        assert!(s.matches_tag(Some("TagA")) && s.matches_tag(Some("TagB")));
        assert!(!s.matches_tag(Some("TagC")) && !s.matches_tag(None));
        // Hash collision: the broker lets "BB" through for "Aa"; the client must drop it.
        let s = SubscriptionData::new("T", "Aa");
        assert!(!s.matches_tag(Some("BB")));
        let all = SubscriptionData::new("T", "*");
        assert!(all.matches_tag(None) && all.matches_tag(Some("x")));
        let class =
            SubscriptionData { class_filter_mode: true, ..SubscriptionData::new("T", "TagA") };
        assert!(class.matches_tag(Some("other")));
    }

    #[test]
    fn enums_by_name_and_ordinal() {
        let from = |v: Value| serde_json::from_value::<ConsumeFromWhere>(v);
        assert_eq!(from(json!("CONSUME_FROM_TIMESTAMP")).unwrap(), ConsumeFromWhere::Timestamp);
        assert_eq!(from(json!(4)).unwrap(), ConsumeFromWhere::FirstOffset);
        assert_eq!(from(json!(0)).unwrap(), ConsumeFromWhere::LastOffset);
        assert!(
            from(json!(6)).is_err() && from(json!(-1)).is_err() && from(json!("LAST")).is_err()
        );
        assert!(from(json!(null)).is_err() && from(json!(1.5)).is_err());
        assert_eq!(
            serde_json::from_value::<MessageModel>(json!(1)).unwrap(),
            MessageModel::Clustering
        );
        assert_eq!(
            serde_json::from_value::<ConsumeType>(json!(1)).unwrap(),
            ConsumeType::Passively
        );
        assert_eq!(
            serde_json::to_value(MessageModel::Broadcasting).unwrap(),
            json!("BROADCASTING")
        );
        assert_eq!(ConsumeType::Pop.to_string(), "CONSUME_POP");
        assert_eq!(ExpressionType::from_java_name("SQL92"), Some(ExpressionType::Sql92));
        for (i, v) in ConsumeFromWhere::ALL.iter().enumerate() {
            assert_eq!(ConsumeFromWhere::from_ordinal(i as u64), Some(*v));
            assert_eq!(ConsumeFromWhere::from_java_name(v.java_name()), Some(*v));
        }
    }
}
