//! POP consumption's handles, as pure functions (Java's `ExtraInfoUtil` and the handle-building
//! half of `MQClientAPIImpl.processPopResponse`; details and numbers in `docs/pop.md`).
//!
//! A popped message is acknowledged, or has its invisible time changed, by quoting its check
//! point handle — Java's `POP_CK` property, the `extraInfo` of ACK_MESSAGE and
//! CHANGE_MESSAGE_INVISIBLETIME: eight fields separated by single spaces,
//!
//! ```text
//! ckQueueOffset popTime invisibleTime reviveQid topicMark brokerName queueId queueOffset
//! ```
//!
//! `ckQueueOffset` is the first offset the broker popped from the message's queue in that
//! request (its check point), `topicMark` says whether the message came from the topic itself
//! (`0`) or from the group's POP retry topic (`1`: `%RETRY%<group>_<topic>`, `2`: the V2 spelling
//! `%RETRY%<group>+<topic>`). The client builds the handle from the response header's
//! `startOffsetInfo` / `msgOffsetInfo` strings (`mark queueId value;…`), which key every queue
//! the pop touched by (mark, queue id).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::header::PopMessageResponseHeader;
use super::message::MessageExt;
use super::message::property::POP_CK;
use super::types::{EpochMillis, QueueId, QueueOffset};

/// The revive queue id an orderly pop puts in its handles (Java
/// `KeyBuilder.POP_ORDER_REVIVE_QUEUE`): the broker acks and changes the invisible time of such
/// a handle orderly (`ConsumerOrderInfoManager`), with no check point in a revive queue.
pub const POP_ORDER_REVIVE_QUEUE: i32 = 999;

/// `%RETRY%`: the prefix of every retry topic.
const RETRY_PREFIX: &str = "%RETRY%";

/// Why a POP handle or info string could not be read; names the text at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PopInfoError {
    #[error("POP handle {text:?}: {problem}")]
    Handle { text: String, problem: &'static str },
    #[error("POP response {field} {text:?}: {problem}")]
    Info { field: &'static str, text: String, problem: &'static str },
    #[error(
        "POP response has no {field} entry for message at {mark}@{queue_id} offset {offset} (info {info:?})"
    )]
    Unmatched {
        field: &'static str,
        mark: TopicMark,
        queue_id: QueueId,
        offset: QueueOffset,
        info: String,
    },
}

/// Where a popped message was stored: the topic itself or the group's POP retry topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicMark {
    Normal,
    /// `%RETRY%<group>_<topic>` (the 5.x default).
    Retry,
    /// `%RETRY%<group>+<topic>` (brokers with `enableRetryTopicV2`).
    RetryV2,
}

impl TopicMark {
    /// The mark of a stored topic name (Java `ExtraInfoUtil.getRetry(topic)`).
    pub fn of_topic(topic: &str) -> Self {
        match topic.strip_prefix(RETRY_PREFIX) {
            Some(rest) if rest.contains('+') => Self::RetryV2,
            Some(_) => Self::Retry,
            None => Self::Normal,
        }
    }

    /// How the handle and `BatchAck.r` spell the mark.
    pub(crate) fn wire(self) -> &'static str {
        match self {
            Self::Normal => "0",
            Self::Retry => "1",
            Self::RetryV2 => "2",
        }
    }

    fn from_wire(s: &str) -> Option<Self> {
        match s {
            "0" => Some(Self::Normal),
            "1" => Some(Self::Retry),
            "2" => Some(Self::RetryV2),
            _ => None,
        }
    }

    /// The topic an ack or invisible-time change must name for a message of `topic` popped by
    /// `group` (Java `ExtraInfoUtil.getRealTopic`).
    pub fn real_topic(self, topic: &str, group: &str) -> String {
        match self {
            Self::Normal => topic.to_owned(),
            Self::Retry => pop_retry_topic(group, topic),
            Self::RetryV2 => format!("{RETRY_PREFIX}{group}+{topic}"),
        }
    }
}

impl fmt::Display for TopicMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire())
    }
}

/// The group's POP retry topic for `topic`, where the 5.x broker's revive service writes a
/// message whose invisible time passed unacked (Java `KeyBuilder.buildPopRetryTopicV1`).
pub fn pop_retry_topic(group: &str, topic: &str) -> String {
    format!("{RETRY_PREFIX}{group}_{topic}")
}

/// The check point handle of one popped message (`POP_CK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopHandle {
    pub ck_queue_offset: QueueOffset,
    pub pop_time: EpochMillis,
    pub invisible_time: Duration,
    pub revive_qid: i32,
    pub mark: TopicMark,
    pub broker_name: String,
    pub queue_id: QueueId,
    /// The message's own offset in its (mark, queue).
    pub queue_offset: QueueOffset,
}

impl PopHandle {
    /// Reads a handle as Java writes it; the eighth field (the message offset) is required: only
    /// brokers older than 5.0 omit it, and those do not speak POP to push consumers.
    pub fn parse(text: &str) -> Result<Self, PopInfoError> {
        let bad = |problem| PopInfoError::Handle { text: text.to_owned(), problem };
        let f: Vec<&str> = text.split(' ').collect();
        if f.len() != 8 {
            return Err(bad("expected 8 space-separated fields"));
        }
        let int = |s: &str| s.parse::<i64>().map_err(|_| bad("a numeric field is not an integer"));
        let invisible_ms = int(f[2])?;
        Ok(Self {
            ck_queue_offset: QueueOffset(int(f[0])?),
            pop_time: EpochMillis(int(f[1])?),
            invisible_time: Duration::from_millis(
                u64::try_from(invisible_ms).map_err(|_| bad("negative invisible time"))?,
            ),
            revive_qid: f[3].parse().map_err(|_| bad("revive queue id is not an integer"))?,
            mark: TopicMark::from_wire(f[4]).ok_or_else(|| bad("topic mark is not 0, 1 or 2"))?,
            broker_name: f[5].to_owned(),
            queue_id: QueueId(f[6].parse().map_err(|_| bad("queue id is not an integer"))?),
            queue_offset: QueueOffset(int(f[7])?),
        })
    }

    /// When the broker makes the message visible again (and redelivers it) unless acked.
    pub fn visible_again_at(&self) -> EpochMillis {
        EpochMillis(self.pop_time.0.saturating_add(self.invisible_time.as_millis() as i64))
    }
}

impl fmt::Display for PopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} {} {}",
            self.ck_queue_offset.0,
            self.pop_time.0,
            self.invisible_time.as_millis(),
            self.revive_qid,
            self.mark,
            self.broker_name,
            self.queue_id.0,
            self.queue_offset.0
        )
    }
}

/// One `mark queueId value` entry of an info string, the value still text.
type InfoEntries<'a> = HashMap<(TopicMark, &'a str), &'a str>;

/// Splits `startOffsetInfo` / `msgOffsetInfo` / `orderCountInfo` (`mark key value;…`), refusing
/// duplicates as Java does.
fn info_entries<'a>(field: &'static str, text: &'a str) -> Result<InfoEntries<'a>, PopInfoError> {
    let bad = |problem| PopInfoError::Info { field, text: text.to_owned(), problem };
    let mut out = HashMap::new();
    for one in text.split(';').filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = one.split(' ').collect();
        let [mark, key, value] = parts[..] else {
            return Err(bad("an entry is not `mark queueId value`"));
        };
        let mark = TopicMark::from_wire(mark).ok_or_else(|| bad("topic mark is not 0, 1 or 2"))?;
        if out.insert((mark, key), value).is_some() {
            return Err(bad("duplicate entry"));
        }
    }
    Ok(out)
}

/// `startOffsetInfo`: the check point offset per (mark, queue).
pub fn parse_start_offsets(
    text: &str,
) -> Result<HashMap<(TopicMark, QueueId), QueueOffset>, PopInfoError> {
    let field = "startOffsetInfo";
    let bad = |problem| PopInfoError::Info { field, text: text.to_owned(), problem };
    info_entries(field, text)?
        .into_iter()
        .map(|((mark, q), v)| {
            let q = q.parse().map_err(|_| bad("queue id is not an integer"))?;
            let v = v.parse().map_err(|_| bad("offset is not an integer"))?;
            Ok(((mark, QueueId(q)), QueueOffset(v)))
        })
        .collect()
}

/// `msgOffsetInfo`: the popped offsets per (mark, queue), in delivery order.
pub fn parse_msg_offsets(
    text: &str,
) -> Result<HashMap<(TopicMark, QueueId), Vec<QueueOffset>>, PopInfoError> {
    let field = "msgOffsetInfo";
    let bad = |problem| PopInfoError::Info { field, text: text.to_owned(), problem };
    info_entries(field, text)?
        .into_iter()
        .map(|((mark, q), v)| {
            let q = q.parse().map_err(|_| bad("queue id is not an integer"))?;
            let offsets = v
                .split(',')
                .map(|o| o.parse().map(QueueOffset).map_err(|_| bad("offset is not an integer")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(((mark, QueueId(q)), offsets))
        })
        .collect()
}

/// `orderCountInfo` of an orderly pop (Java `ConsumerOrderInfoManager.update`): how often the
/// broker has already delivered each popped offset of a queue. An entry's key is
/// `qo<queueId>%<offset>` for one offset (only offsets delivered before), or the bare queue id
/// with the smallest count of that pop (for old clients).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderCounts {
    per_offset: HashMap<(TopicMark, QueueId, QueueOffset), i32>,
    per_queue: HashMap<(TopicMark, QueueId), i32>,
}

impl OrderCounts {
    /// Reads the field as the 5.x broker writes it.
    pub fn parse(text: &str) -> Result<Self, PopInfoError> {
        let field = "orderCountInfo";
        let bad = |problem| PopInfoError::Info { field, text: text.to_owned(), problem };
        let mut counts = Self::default();
        for ((mark, key), value) in info_entries(field, text)? {
            let count: i32 = value.parse().map_err(|_| bad("a count is not an integer"))?;
            match key.strip_prefix("qo") {
                Some(rest) => {
                    let (queue, offset) = rest
                        .split_once('%')
                        .ok_or_else(|| bad("a key is not qo<queue>%<offset>"))?;
                    let queue = queue.parse().map_err(|_| bad("queue id is not an integer"))?;
                    let offset = offset.parse().map_err(|_| bad("offset is not an integer"))?;
                    counts.per_offset.insert((mark, QueueId(queue), QueueOffset(offset)), count);
                }
                None => {
                    let queue = key.parse().map_err(|_| bad("queue id is not an integer"))?;
                    counts.per_queue.insert((mark, QueueId(queue)), count);
                }
            }
        }
        Ok(counts)
    }

    /// The reconsume times of the message at `offset` (Java `processPopResponse`: its own
    /// count, else its queue's, and only when positive).
    pub fn reconsume_times(
        &self,
        mark: TopicMark,
        queue: QueueId,
        offset: QueueOffset,
    ) -> Option<i32> {
        self.per_offset
            .get(&(mark, queue, offset))
            .or_else(|| self.per_queue.get(&(mark, queue)))
            .copied()
            .filter(|count| *count > 0)
    }
}

/// The handle of every message of a pop response, in order (Java `processPopResponse`).
///
/// A message the broker re-encoded from the POP retry topic carries its handle already (the
/// broker sets `POP_CK` and rewrites the topic to the popped one); it is used as is. Any other
/// message, the i-th of its (mark, queue), gets that queue's check point and i-th popped offset.
/// Without `startOffsetInfo` (a broker before 5.0) the first message of each queue is its check
/// point.
pub fn pop_handles(
    msgs: &[MessageExt],
    header: &PopMessageResponseHeader,
    broker_name: &str,
) -> Result<Vec<PopHandle>, PopInfoError> {
    let starts = header.start_offset_info.as_deref().map(parse_start_offsets).transpose()?;
    let offsets = header.msg_offset_info.as_deref().map(parse_msg_offsets).transpose()?;
    let invisible_time = Duration::from_millis(u64::try_from(header.invisible_time).unwrap_or(0));
    let mut seen: HashMap<(TopicMark, QueueId), usize> = HashMap::new();
    let mut first: HashMap<(TopicMark, QueueId), QueueOffset> = HashMap::new();
    msgs.iter()
        .map(|m| {
            let given = m.properties.get(POP_CK).map(PopHandle::parse).transpose()?;
            let mark = given.as_ref().map_or_else(|| TopicMark::of_topic(&m.topic), |h| h.mark);
            let key = (mark, m.queue_id);
            let index = seen.entry(key).or_default();
            let i = *index;
            *index += 1;
            if let Some(handle) = given {
                return Ok(handle);
            }
            let unmatched = |field: &'static str| PopInfoError::Unmatched {
                field,
                mark: key.0,
                queue_id: key.1,
                offset: m.queue_offset,
                info: format!(
                    "{:?} / {:?}",
                    header.start_offset_info.as_deref().unwrap_or_default(),
                    header.msg_offset_info.as_deref().unwrap_or_default()
                ),
            };
            let (ck, offset) = match &starts {
                Some(starts) => {
                    let ck = *starts.get(&key).ok_or_else(|| unmatched("startOffsetInfo"))?;
                    let offset = offsets
                        .as_ref()
                        .and_then(|o| o.get(&key))
                        .and_then(|list| list.get(i).copied())
                        .ok_or_else(|| unmatched("msgOffsetInfo"))?;
                    (ck, offset)
                }
                None => (*first.entry(key).or_insert(m.queue_offset), m.queue_offset),
            };
            Ok(PopHandle {
                ck_queue_offset: ck,
                pop_time: header.pop_time,
                invisible_time,
                revive_qid: header.revive_qid,
                mark: key.0,
                broker_name: broker_name.to_owned(),
                queue_id: key.1,
                queue_offset: offset,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(mark: TopicMark, queue: i32, ck: i64, offset: i64) -> PopHandle {
        PopHandle {
            ck_queue_offset: QueueOffset(ck),
            pop_time: EpochMillis(1_700_000_000_000),
            invisible_time: Duration::from_secs(60),
            revive_qid: 3,
            mark,
            broker_name: "broker-a".into(),
            queue_id: QueueId(queue),
            queue_offset: QueueOffset(offset),
        }
    }

    /// Texts as `ExtraInfoUtil.buildExtraInfo(ck, popTime, invisibleTime, reviveQid, topic,
    /// brokerName, queueId, msgQueueOffset)` writes them.
    #[test]
    fn handles_read_and_write_as_java() {
        let cases = [
            ("5 1700000000000 60000 3 0 broker-a 1 7", handle(TopicMark::Normal, 1, 5, 7)),
            ("0 1700000000000 60000 3 1 broker-a 0 0", handle(TopicMark::Retry, 0, 0, 0)),
            ("9 1700000000000 60000 3 2 broker-a 2 12", handle(TopicMark::RetryV2, 2, 9, 12)),
        ];
        for (text, expected) in cases {
            let parsed = PopHandle::parse(text).unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(
            handle(TopicMark::Normal, 1, 5, 7).visible_again_at(),
            EpochMillis(1_700_000_060_000)
        );
    }

    #[test]
    fn bad_handles_name_the_text_and_the_problem() {
        let cases = [
            ("5 1700000000000 60000 3 0 broker-a 1", "expected 8 space-separated fields"),
            ("x 1700000000000 60000 3 0 broker-a 1 7", "a numeric field is not an integer"),
            ("5 1700000000000 -1 3 0 broker-a 1 7", "negative invisible time"),
            ("5 1700000000000 60000 3 7 broker-a 1 7", "topic mark is not 0, 1 or 2"),
            ("5 1700000000000 60000 3 0 broker-a q 7", "queue id is not an integer"),
        ];
        for (text, problem) in cases {
            let err = PopHandle::parse(text).unwrap_err();
            assert_eq!(err, PopInfoError::Handle { text: text.into(), problem }, "{text}");
        }
    }

    #[test]
    fn topic_marks_and_retry_topics() {
        let cases = [
            ("orders", TopicMark::Normal, "orders"),
            ("%RETRY%g_orders", TopicMark::Retry, "%RETRY%g_orders"),
            ("%RETRY%g+orders", TopicMark::RetryV2, "%RETRY%g+orders"),
        ];
        for (stored, mark, real) in cases {
            assert_eq!(TopicMark::of_topic(stored), mark, "{stored}");
            assert_eq!(mark.real_topic("orders", "g"), real);
        }
    }

    /// `buildStartOffsetInfo` / `buildMsgOffsetInfo` output, as the broker joins them.
    #[test]
    fn info_strings_parse_and_refuse_bad_entries() {
        let starts = parse_start_offsets("0 1 5;1 0 0").unwrap();
        assert_eq!(starts[&(TopicMark::Normal, QueueId(1))], QueueOffset(5));
        assert_eq!(starts[&(TopicMark::Retry, QueueId(0))], QueueOffset(0));
        let offsets = parse_msg_offsets("0 1 5,6,8").unwrap();
        assert_eq!(offsets[&(TopicMark::Normal, QueueId(1))], [5, 6, 8].map(QueueOffset));
        for (text, problem) in [
            ("0 1", "an entry is not `mark queueId value`"),
            ("0 1 5;0 1 6", "duplicate entry"),
            ("3 1 5", "topic mark is not 0, 1 or 2"),
            ("0 1 x", "offset is not an integer"),
        ] {
            assert_eq!(
                parse_start_offsets(text).unwrap_err(),
                PopInfoError::Info { field: "startOffsetInfo", text: text.into(), problem },
                "{text}"
            );
        }
    }

    fn msg(topic: &str, queue: i32, offset: i64) -> MessageExt {
        MessageExt {
            topic: topic.into(),
            queue_id: QueueId(queue),
            queue_offset: QueueOffset(offset),
            ..MessageExt::default()
        }
    }

    #[test]
    fn handles_follow_the_response_info_per_queue() {
        let header = PopMessageResponseHeader {
            pop_time: EpochMillis(1_700_000_000_000),
            invisible_time: 60_000,
            revive_qid: 3,
            rest_num: 0,
            start_offset_info: Some("0 1 5;1 0 0".into()),
            msg_offset_info: Some("0 1 5,7;1 0 0".into()),
            order_count_info: None,
        };
        let msgs = [msg("orders", 1, 5), msg("%RETRY%g_orders", 0, 0), msg("orders", 1, 7)];
        let handles = pop_handles(&msgs, &header, "broker-a").unwrap();
        assert_eq!(
            handles,
            [
                handle(TopicMark::Normal, 1, 5, 5),
                handle(TopicMark::Retry, 0, 0, 0),
                handle(TopicMark::Normal, 1, 5, 7)
            ]
        );
        // A message the broker re-encoded from the retry topic: its topic is the popped one, its
        // handle given (and its offset counts in its retry queue, as Java's sort map does).
        let mut revived = msg("orders", 0, 0);
        revived.properties.insert(POP_CK, "0 1700000000000 60000 3 1 broker-a 0 0");
        let handles = pop_handles(&[revived, msg("orders", 1, 5)], &header, "broker-a").unwrap();
        assert_eq!(
            handles,
            [handle(TopicMark::Retry, 0, 0, 0), handle(TopicMark::Normal, 1, 5, 5)]
        );
        let missing = pop_handles(&[msg("orders", 2, 1)], &header, "broker-a").unwrap_err();
        assert!(matches!(missing, PopInfoError::Unmatched { field: "startOffsetInfo", .. }));
        // A broker without the info strings: the first message of each queue is the check point.
        let old =
            PopMessageResponseHeader { start_offset_info: None, msg_offset_info: None, ..header };
        let handles = pop_handles(&[msg("orders", 1, 5), msg("orders", 1, 7)], &old, "broker-a");
        assert_eq!(
            handles.unwrap(),
            [handle(TopicMark::Normal, 1, 5, 5), handle(TopicMark::Normal, 1, 5, 7)]
        );
    }

    /// As `ConsumerOrderInfoManager.update` writes it: one `qo` entry per offset delivered
    /// before, then the queue's smallest count.
    #[test]
    fn order_counts_read_as_java_writes_them() {
        let counts = OrderCounts::parse("0 qo2%7 3;0 qo2%8 1;0 2 0").unwrap();
        let n = TopicMark::Normal;
        let cases = [
            (n, 2, 7, Some(3)),
            (n, 2, 8, Some(1)),
            // Not delivered before: the queue entry, 0, reads as none.
            (n, 2, 9, None),
            (n, 1, 7, None),
            (TopicMark::Retry, 2, 7, None),
        ];
        for (mark, queue, offset, expected) in cases {
            assert_eq!(
                counts.reconsume_times(mark, QueueId(queue), QueueOffset(offset)),
                expected,
                "{mark} {queue} {offset}"
            );
        }
        // Only the compatibility entry (an old broker): every message gets the queue's count.
        let old = OrderCounts::parse("0 1 2").unwrap();
        assert_eq!(old.reconsume_times(n, QueueId(1), QueueOffset(40)), Some(2));
        assert_eq!(OrderCounts::parse("").unwrap(), OrderCounts::default());
        for bad in ["0 qo2 3", "0 qo2%x 3", "0 2 x", "0 qox%1 1", "0 2 1;0 2 1"] {
            assert!(OrderCounts::parse(bad).is_err(), "{bad}");
        }
    }
}
