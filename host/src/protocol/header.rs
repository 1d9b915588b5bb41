//! Typed request and response headers (reference 2).
//!
//! Each struct lists its fields with their exact Java wire names, so business code works with
//! `QueueId`s and `QueueOffset`s and never with the string map underneath. Unknown fields are
//! ignored on read and a missing required field is an error naming the header and the field —
//! Java's `@CFNotNull` behaviour.

use super::command::ExtFields;
use super::types::{CommitLogOffset, EpochMillis, QueueId, QueueOffset};

/// Why a header could not be read from its ext fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("{header}: required field `{field}` is missing")]
    Missing { header: &'static str, field: &'static str },
    #[error("{header}: field `{field}` = {value:?} is not a valid {expected}")]
    Invalid { header: &'static str, field: &'static str, value: String, expected: &'static str },
}

/// A header that maps to and from ext fields.
pub trait CommandHeader: Sized {
    /// Writes every present field.
    fn write(&self, ext: &mut ExtFields);
    /// Reads the header, checking required fields and value syntax.
    fn read(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// A header with no fields, for requests whose content is all in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoHeader;

impl CommandHeader for NoHeader {
    fn write(&self, _ext: &mut ExtFields) {}
    fn read(_ext: &ExtFields) -> Result<Self, HeaderError> {
        Ok(Self)
    }
}

/// A value that travels as an ext-field string. All values are strings on the wire: numbers as
/// decimal text, booleans as `true`/`false` (rocketmq-rust servers close the connection on
/// anything else).
pub trait ExtValue: Sized {
    /// Name of the expected syntax, for errors.
    const EXPECTED: &'static str;
    fn to_ext(&self) -> String;
    fn from_ext(s: &str) -> Option<Self>;
}

impl ExtValue for String {
    const EXPECTED: &'static str = "string";
    fn to_ext(&self) -> String {
        self.clone()
    }
    fn from_ext(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

impl ExtValue for bool {
    const EXPECTED: &'static str = "boolean";
    fn to_ext(&self) -> String {
        self.to_string()
    }
    fn from_ext(s: &str) -> Option<Self> {
        // Java's Boolean.parseBoolean: "true" in any case is true, everything else false.
        Some(s.eq_ignore_ascii_case("true"))
    }
}

macro_rules! ext_number {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl ExtValue for $ty {
            const EXPECTED: &'static str = $expected;
            fn to_ext(&self) -> String {
                self.to_string()
            }
            fn from_ext(s: &str) -> Option<Self> {
                s.trim().parse().ok()
            }
        }
    )*};
}
ext_number!(i32 => "32-bit integer", i64 => "64-bit integer");

macro_rules! ext_newtype {
    ($($ty:ident($inner:ty)),* $(,)?) => {$(
        impl ExtValue for $ty {
            const EXPECTED: &'static str = <$inner as ExtValue>::EXPECTED;
            fn to_ext(&self) -> String {
                self.0.to_ext()
            }
            fn from_ext(s: &str) -> Option<Self> {
                <$inner>::from_ext(s).map($ty)
            }
        }
    )*};
}
ext_newtype!(QueueId(i32), QueueOffset(i64), CommitLogOffset(i64), EpochMillis(i64));

/// Reads a required or optional field; the macro below picks the right one by type.
pub trait ExtField: Sized {
    fn put(&self, ext: &mut ExtFields, key: &'static str);
    fn take(ext: &ExtFields, header: &'static str, key: &'static str) -> Result<Self, HeaderError>;
}

impl<T: ExtValue> ExtField for T {
    fn put(&self, ext: &mut ExtFields, key: &'static str) {
        ext.insert(key, self.to_ext());
    }
    fn take(ext: &ExtFields, header: &'static str, key: &'static str) -> Result<Self, HeaderError> {
        let raw = ext.get(key).ok_or(HeaderError::Missing { header, field: key })?;
        T::from_ext(raw).ok_or_else(|| HeaderError::Invalid {
            header,
            field: key,
            value: raw.to_owned(),
            expected: T::EXPECTED,
        })
    }
}

impl<T: ExtValue> ExtField for Option<T> {
    fn put(&self, ext: &mut ExtFields, key: &'static str) {
        if let Some(v) = self {
            ext.insert(key, v.to_ext());
        }
    }
    fn take(ext: &ExtFields, header: &'static str, key: &'static str) -> Result<Self, HeaderError> {
        match ext.get(key) {
            None => Ok(None),
            Some(raw) => T::from_ext(raw).map(Some).ok_or_else(|| HeaderError::Invalid {
                header,
                field: key,
                value: raw.to_owned(),
                expected: T::EXPECTED,
            }),
        }
    }
}

/// Declares a header struct whose fields carry their Java wire names.
macro_rules! header {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[$fmeta:meta])* $field:ident : $ty:ty = $wire:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl CommandHeader for $name {
            fn write(&self, ext: &mut ExtFields) {
                $(ExtField::put(&self.$field, ext, $wire);)*
            }
            fn read(ext: &ExtFields) -> Result<Self, HeaderError> {
                Ok(Self { $($field: <$ty as ExtField>::take(ext, stringify!($name), $wire)?,)* })
            }
        }

        #[cfg(test)]
        impl $name {
            /// Arbitrary well-formed ext fields for this header, for round-trip property tests.
            pub(crate) fn arb_ext() -> impl proptest::strategy::Strategy<Value = ExtFields> {
                use proptest::strategy::Strategy as _;
                let fields: Vec<proptest::strategy::BoxedStrategy<Option<(String, String)>>> =
                    vec![$(<$ty as arb::ArbField>::arb($wire)),*];
                fields.prop_map(|v| v.into_iter().flatten().collect())
            }
        }
    };
}

header! {
    /// GET_ROUTEINFO_BY_TOPIC (105) to a name server.
    pub struct GetRouteInfoRequestHeader {
        topic: String = "topic",
        /// Asks 4.9.4+ name servers for quoted map keys regardless of our version.
        accept_standard_json_only: Option<bool> = "acceptStandardJsonOnly",
    }
}

header! {
    /// UNREGISTER_CLIENT (35), sent to every broker at shutdown.
    pub struct UnregisterClientRequestHeader {
        client_id: String = "clientID",
        producer_group: Option<String> = "producerGroup",
        consumer_group: Option<String> = "consumerGroup",
    }
}

header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38).
    pub struct GetConsumerListByGroupRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        /// 5.x only: `false` stops the broker from answering 0 for a group with no offset.
        set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
        bname: Option<String> = "bname",
    }
}

header! {
    /// Response to QUERY_CONSUMER_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP, GET_MAX/MIN_OFFSET.
    pub struct OffsetResponseHeader {
        offset: QueueOffset = "offset",
    }
}

header! {
    /// UPDATE_CONSUMER_OFFSET (15), usually oneway.
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        commit_offset: QueueOffset = "commitOffset",
        bname: Option<String> = "bname",
    }
}

header! {
    /// PULL_MESSAGE (11), reference 2.7.
    pub struct PullMessageRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        queue_offset: QueueOffset = "queueOffset",
        max_msg_nums: i32 = "maxMsgNums",
        /// [`pull_sys_flag`] bits.
        sys_flag: i32 = "sysFlag",
        commit_offset: QueueOffset = "commitOffset",
        /// How long the broker may hold the request open (long polling), in ms.
        suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        subscription: Option<String> = "subscription",
        sub_version: EpochMillis = "subVersion",
        expression_type: Option<String> = "expressionType",
        max_msg_bytes: Option<i32> = "maxMsgBytes",
        bname: Option<String> = "bname",
    }
}

/// PULL_MESSAGE `sysFlag` bits (`PullSysFlag`).
pub mod pull_sys_flag {
    /// The broker stores `commitOffset` as the group's offset.
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// Long polling allowed.
    pub const SUSPEND: i32 = 0x2;
    /// Filter with the request's `subscription` instead of the heartbeat copy.
    pub const SUBSCRIPTION: i32 = 0x4;
    /// Legacy class filter.
    pub const CLASS_FILTER: i32 = 0x8;
    /// Lite pull (code 361); never set by push.
    pub const LITE_PULL: i32 = 0x10;
}

header! {
    /// Response header of PULL_MESSAGE.
    pub struct PullMessageResponseHeader {
        suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        next_begin_offset: QueueOffset = "nextBeginOffset",
        min_offset: QueueOffset = "minOffset",
        max_offset: QueueOffset = "maxOffset",
        /// 5.x static topics: add to every message's queue offset.
        offset_delta: Option<i64> = "offsetDelta",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        group_sys_flag: Option<i32> = "groupSysFlag",
        forbidden_type: Option<i32> = "forbiddenType",
    }
}

header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        timestamp: EpochMillis = "timestamp",
        /// 5.x: "LOWER" (default) or "UPPER".
        boundary_type: Option<String> = "boundaryType",
        bname: Option<String> = "bname",
    }
}

header! {
    /// GET_MAX_OFFSET (30).
    pub struct GetMaxOffsetRequestHeader {
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        committed: Option<bool> = "committed",
        bname: Option<String> = "bname",
    }
}

header! {
    /// GET_MIN_OFFSET (31).
    pub struct GetMinOffsetRequestHeader {
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        bname: Option<String> = "bname",
    }
}

header! {
    /// CONSUMER_SEND_MSG_BACK (36), reference 2.10.
    pub struct ConsumerSendMsgBackRequestHeader {
        /// The message's commit-log offset: the broker re-reads the message by it.
        offset: CommitLogOffset = "offset",
        group: String = "group",
        /// 0 = broker picks 3 + reconsumeTimes; negative = straight to the DLQ.
        delay_level: i32 = "delayLevel",
        origin_msg_id: Option<String> = "originMsgId",
        origin_topic: Option<String> = "originTopic",
        unit_mode: bool = "unitMode",
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        bname: Option<String> = "bname",
    }
}

header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (40), broker → client, oneway.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        consumer_group: String = "consumerGroup",
    }
}

header! {
    /// GET_CONSUMER_RUNNING_INFO (307), broker → client.
    pub struct GetConsumerRunningInfoRequestHeader {
        consumer_group: String = "consumerGroup",
        client_id: String = "clientId",
        jstack_enable: Option<bool> = "jstackEnable",
    }
}

header! {
    /// CONSUME_MESSAGE_DIRECTLY (309), broker → client; the body is one stored message.
    pub struct ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: String = "consumerGroup",
        client_id: Option<String> = "clientId",
        msg_id: Option<String> = "msgId",
        broker_name: Option<String> = "brokerName",
        topic: Option<String> = "topic",
        topic_sys_flag: Option<i32> = "topicSysFlag",
        group_sys_flag: Option<i32> = "groupSysFlag",
    }
}

header! {
    /// RESET_CONSUMER_CLIENT_OFFSET (220), broker → client, oneway; offsets are in the body.
    pub struct ResetOffsetRequestHeader {
        topic: String = "topic",
        group: String = "group",
        timestamp: EpochMillis = "timestamp",
        is_force: bool = "isForce",
        queue_id: Option<QueueId> = "queueId",
        offset: Option<QueueOffset> = "offset",
    }
}

header! {
    /// GET_CONSUMER_STATUS_FROM_CLIENT (221), broker → client.
    pub struct GetConsumerStatusRequestHeader {
        topic: String = "topic",
        group: String = "group",
        client_addr: Option<String> = "clientAddr",
    }
}

header! {
    /// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320): single-letter aliases of the V1 names
    /// (reference 2.12) to keep every send frame small.
    pub struct SendMessageRequestHeaderV2 {
        producer_group: String = "a",
        topic: String = "b",
        default_topic: String = "c",
        default_topic_queue_nums: i32 = "d",
        queue_id: QueueId = "e",
        /// Message sysflag (compression bits).
        sys_flag: i32 = "f",
        born_timestamp: EpochMillis = "g",
        flag: i32 = "h",
        /// Encoded properties (`key\u{1}value\u{2}…`).
        properties: Option<String> = "i",
        reconsume_times: Option<i32> = "j",
        unit_mode: Option<bool> = "k",
        max_reconsume_times: Option<i32> = "l",
        batch: Option<bool> = "m",
        bname: Option<String> = "n",
    }
}

header! {
    /// SEND_MESSAGE (10): the same fields as V2 under their long names.
    pub struct SendMessageRequestHeader {
        producer_group: String = "producerGroup",
        topic: String = "topic",
        default_topic: String = "defaultTopic",
        default_topic_queue_nums: i32 = "defaultTopicQueueNums",
        queue_id: QueueId = "queueId",
        sys_flag: i32 = "sysFlag",
        born_timestamp: EpochMillis = "bornTimestamp",
        flag: i32 = "flag",
        properties: Option<String> = "properties",
        reconsume_times: Option<i32> = "reconsumeTimes",
        unit_mode: Option<bool> = "unitMode",
        max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        batch: Option<bool> = "batch",
        bname: Option<String> = "bname",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        Self {
            producer_group: v2.producer_group,
            topic: v2.topic,
            default_topic: v2.default_topic,
            default_topic_queue_nums: v2.default_topic_queue_nums,
            queue_id: v2.queue_id,
            sys_flag: v2.sys_flag,
            born_timestamp: v2.born_timestamp,
            flag: v2.flag,
            properties: v2.properties,
            reconsume_times: v2.reconsume_times,
            unit_mode: v2.unit_mode,
            max_reconsume_times: v2.max_reconsume_times,
            batch: v2.batch,
            bname: v2.bname,
        }
    }
}

header! {
    /// Response header of the send codes.
    pub struct SendMessageResponseHeader {
        msg_id: String = "msgId",
        queue_id: QueueId = "queueId",
        queue_offset: QueueOffset = "queueOffset",
        transaction_id: Option<String> = "transactionId",
        batch_uniq_id: Option<String> = "batchUniqId",
    }
}

header! {
    /// UPDATE_AND_CREATE_TOPIC (17), admin → broker.
    pub struct CreateTopicRequestHeader {
        topic: String = "topic",
        default_topic: String = "defaultTopic",
        read_queue_nums: i32 = "readQueueNums",
        write_queue_nums: i32 = "writeQueueNums",
        perm: i32 = "perm",
        topic_filter_type: String = "topicFilterType",
        topic_sys_flag: i32 = "topicSysFlag",
        order: bool = "order",
        attributes: Option<String> = "attributes",
        force: Option<bool> = "force",
    }
}

header! {
    /// POP_MESSAGE (200050): the broker picks up to `max_msg_nums` messages of the group and
    /// hides them from the rest of the group for `invisible_time` ms unless acked.
    pub struct PopMessageRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        /// A queue id, or -1 for every queue of the topic on this broker.
        queue_id: QueueId = "queueId",
        max_msg_nums: i32 = "maxMsgNums",
        /// ms.
        invisible_time: i64 = "invisibleTime",
        /// How long the broker may hold the request open (long polling), in ms.
        poll_time: i64 = "pollTime",
        born_time: EpochMillis = "bornTime",
        /// Where a group with no offset starts: 0 = min offset, 1 = max offset.
        init_mode: i32 = "initMode",
        exp_type: Option<String> = "expType",
        exp: Option<String> = "exp",
        order: Option<bool> = "order",
        attempt_id: Option<String> = "attemptId",
        bname: Option<String> = "bname",
    }
}

header! {
    /// Response to POP_MESSAGE; the info strings let the client build each message's check
    /// point handle (`POP_CK`, see [`crate::protocol::pop`]).
    pub struct PopMessageResponseHeader {
        pop_time: EpochMillis = "popTime",
        invisible_time: i64 = "invisibleTime",
        revive_qid: i32 = "reviveQid",
        rest_num: i64 = "restNum",
        start_offset_info: Option<String> = "startOffsetInfo",
        msg_offset_info: Option<String> = "msgOffsetInfo",
        order_count_info: Option<String> = "orderCountInfo",
    }
}

header! {
    /// ACK_MESSAGE (200051): one popped message is consumed.
    pub struct AckMessageRequestHeader {
        consumer_group: String = "consumerGroup",
        /// The topic the message was popped from (the POP retry topic for a retried one).
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        /// The message's `POP_CK` handle.
        extra_info: String = "extraInfo",
        offset: QueueOffset = "offset",
        bname: Option<String> = "bname",
    }
}

header! {
    /// CHANGE_MESSAGE_INVISIBLETIME (200053): hide a popped message for `invisible_time` ms
    /// from now; when that passes unacked, the broker redelivers it with reconsume times + 1.
    pub struct ChangeInvisibleTimeRequestHeader {
        consumer_group: String = "consumerGroup",
        topic: String = "topic",
        queue_id: QueueId = "queueId",
        extra_info: String = "extraInfo",
        offset: QueueOffset = "offset",
        invisible_time: i64 = "invisibleTime",
        bname: Option<String> = "bname",
    }
}

header! {
    /// Response to CHANGE_MESSAGE_INVISIBLETIME: the new check point's times.
    pub struct ChangeInvisibleTimeResponseHeader {
        pop_time: EpochMillis = "popTime",
        invisible_time: i64 = "invisibleTime",
        revive_qid: i32 = "reviveQid",
    }
}

/// Strategies producing well-formed wire values per field type.
#[cfg(test)]
pub(crate) mod arb {
    use proptest::prelude::*;

    use super::ExtValue;
    use crate::protocol::types::{CommitLogOffset, EpochMillis, QueueId, QueueOffset};

    /// A field's strategy: `Some((wire name, value))`, or `None` when an optional field is absent.
    pub(crate) trait ArbField {
        fn arb(wire: &'static str) -> BoxedStrategy<Option<(String, String)>>;
    }

    /// A value's strategy as wire text.
    pub(crate) trait ArbValue {
        fn arb_text() -> BoxedStrategy<String>;
    }

    impl ArbValue for String {
        fn arb_text() -> BoxedStrategy<String> {
            // Non-empty: the binary header reads an empty string back as null, as Java does.
            "\\PC{1,12}".boxed()
        }
    }

    macro_rules! arb_via_any {
        ($($ty:ty),*) => {$(
            impl ArbValue for $ty {
                fn arb_text() -> BoxedStrategy<String> {
                    any::<$ty>().prop_map(|v| v.to_ext()).boxed()
                }
            }
        )*};
    }
    arb_via_any!(bool, i32, i64);

    macro_rules! arb_newtype {
        ($($ty:ident($inner:ty)),*) => {$(
            impl ArbValue for $ty {
                fn arb_text() -> BoxedStrategy<String> {
                    any::<$inner>().prop_map(|v| $ty(v).to_ext()).boxed()
                }
            }
        )*};
    }
    arb_newtype!(QueueId(i32), QueueOffset(i64), CommitLogOffset(i64), EpochMillis(i64));

    impl<T: ArbValue + ExtValue> ArbField for T {
        fn arb(wire: &'static str) -> BoxedStrategy<Option<(String, String)>> {
            T::arb_text().prop_map(move |v| Some((wire.to_owned(), v))).boxed()
        }
    }

    impl<T: ArbValue + ExtValue> ArbField for Option<T> {
        fn arb(wire: &'static str) -> BoxedStrategy<Option<(String, String)>> {
            proptest::option::of(T::arb_text())
                .prop_map(move |v| v.map(|v| (wire.to_owned(), v)))
                .boxed()
        }
    }
}
