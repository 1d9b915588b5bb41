//! Dead letters of a group (`%DLQ%<group>`): listing them with why they died, and re-delivering
//! chosen ones once each.
//!
//! Where a resent letter goes: the group's retry topic `%RETRY%<group>`, not the origin topic.
//! Every member of the group (ours and Java's) subscribes to its retry topic and restores the
//! origin topic from `RETRY_TOPIC` before the listener sees the message, so only the group that
//! gave up on the message gets it again; a send to the origin topic would hand a copy to every
//! other group subscribed there, which had consumed it already. That is also what the broker's
//! own send-back does, and why Java's `mqadmin` and the Dashboard re-deliver to one group only
//! (`consumeMessageDirectly` pushes it to one client of the group, which needs that client
//! online and bypasses retries; the retry topic needs neither). The copy starts with a reconsume
//! count of 0, so it gets the group's whole retry budget again.
//!
//! Once each: the copy carries [`PROP_RESENT_FROM`], naming the dead letter it came from. A
//! resend first reads that property from every message still stored in the retry topic and the
//! DLQ (a resent copy that died again carries it into the DLQ) and skips the letters named
//! there. The ledger is the broker's own store, so two operators (or a rerun after a crash
//! mid-way) see the same one; it lasts as long as the copies are retained, which is at least as
//! long as the letters they name.

use std::collections::BTreeSet;
use std::str::FromStr;

use crate::client::{ClientError, Producer};
use crate::consumer::listener::DLQ_REASON;
use crate::protocol::message::{Message, MessageExt, property};
use crate::protocol::{EpochMillis, QueueOffset};
use crate::wasm::{PROP_ABORT, PROP_FUEL_USED, PROP_PLUGIN, PROP_VERSION};

use super::reader::TopicReader;

/// Property of a resent copy: the dead letter it re-delivers (see [`DeadLetter::id`]).
pub const PROP_RESENT_FROM: &str = "RMQ_WASM_RESENT_FROM";

/// Property the host stamps on a dead letter: the queue and offset it was consumed from.
pub use crate::consumer::listener::DLQ_CONSUMED_AT as PROP_CONSUMED_AT;

/// Properties of a dead letter that describe its death, not the message: a resent copy drops
/// them, so a second death is not reported with the first one's reason.
const DEATH_PROPERTIES: [&str; 6] =
    [DLQ_REASON, PROP_ABORT, PROP_FUEL_USED, PROP_PLUGIN, PROP_VERSION, PROP_CONSUMED_AT];

/// The broker's default `retryMaxTimes` of a subscription group.
const DEFAULT_RETRY_MAX_TIMES: i32 = 16;

/// `%DLQ%<group>`.
pub fn dlq_topic(group: &str) -> String {
    format!("%DLQ%{group}")
}

/// `%RETRY%<group>`.
pub fn retry_topic(group: &str) -> String {
    format!("%RETRY%{group}")
}

/// One dead letter as stored, with the facts an operator asks about.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub broker_name: String,
    pub msg: MessageExt,
}

impl DeadLetter {
    /// Names this letter for the resend ledger: `<broker>/<queue>:<offset>` in the DLQ.
    pub fn id(&self) -> String {
        format!("{}/{}:{}", self.broker_name, self.msg.queue_id, self.msg.queue_offset)
    }

    pub fn offset(&self) -> QueueOffset {
        self.msg.queue_offset
    }

    /// Why it died: the listener's reason, `poison` for an isolated abort, or none when the
    /// broker moved it (retries used up).
    pub fn reason(&self) -> Option<&str> {
        self.msg.property(DLQ_REASON)
    }

    pub fn plugin(&self) -> Option<&str> {
        self.msg.property(PROP_PLUGIN)
    }

    pub fn version(&self) -> Option<&str> {
        self.msg.property(PROP_VERSION)
    }

    pub fn abort(&self) -> Option<&str> {
        self.msg.property(PROP_ABORT)
    }

    pub fn fuel_used(&self) -> Option<u64> {
        self.msg.property(PROP_FUEL_USED).and_then(|f| f.parse().ok())
    }

    /// The topic it was first sent to.
    pub fn origin_topic(&self) -> Option<&str> {
        [property::RETRY_TOPIC, property::DLQ_ORIGIN_TOPIC, property::REAL_TOPIC]
            .into_iter()
            .find_map(|k| self.msg.property(k))
    }

    /// The id the producer got for the original message.
    pub fn origin_msg_id(&self) -> Option<&str> {
        [property::ORIGIN_MESSAGE_ID, property::DLQ_ORIGIN_MESSAGE_ID]
            .into_iter()
            .find_map(|k| self.msg.property(k))
    }

    /// Where the host consumed it last (see [`PROP_CONSUMED_AT`]).
    pub fn consumed_at(&self) -> Option<&str> {
        self.msg.property(PROP_CONSUMED_AT)
    }

    /// The letter this one is a resent copy of, when it died again after a resend.
    pub fn resent_from(&self) -> Option<&str> {
        self.msg.property(PROP_RESENT_FROM)
    }

    pub fn stored(&self) -> EpochMillis {
        self.msg.store_timestamp
    }

    /// The copy for `%RETRY%<group>`: body, flag and properties of the letter, minus its
    /// death's properties, with a fresh id, a reconsume count of 0 and [`PROP_RESENT_FROM`].
    /// `None` when the letter names no origin topic (the consumer could not restore it).
    pub fn resend_copy(&self, group: &str) -> Option<Message> {
        let origin = self.origin_topic()?.to_owned();
        let mut copy = Message::new(retry_topic(group), self.msg.body.clone());
        copy.flag = self.msg.flag;
        copy.properties = self.msg.properties.clone();
        for key in DEATH_PROPERTIES
            .into_iter()
            .chain([property::UNIQ_KEY, property::DELAY])
            .chain([property::REAL_TOPIC, property::REAL_QID, property::CONSUME_START_TIME])
        {
            copy.properties.remove(key);
        }
        copy.properties.insert(property::RETRY_TOPIC, origin);
        copy.properties.insert(property::RECONSUME_TIME, "0");
        // The send's retry limit, explicit rather than left to the broker's group config: the
        // letter's own record of the group's limit (our consumer writes it), else the broker's
        // default `retryMaxTimes`.
        if copy.properties.get(property::MAX_RECONSUME_TIMES).is_none() {
            copy.properties
                .insert(property::MAX_RECONSUME_TIMES, DEFAULT_RETRY_MAX_TIMES.to_string());
        }
        if copy.properties.get(property::ORIGIN_MESSAGE_ID).is_none() {
            copy.properties.insert(property::ORIGIN_MESSAGE_ID, self.msg.msg_id());
        }
        copy.properties.insert(PROP_RESENT_FROM, self.id());
        Some(copy)
    }
}

/// Which letters a resend takes (`--filter`); several must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `key=K`: one of its keys is K.
    Key(String),
    /// `tag=T`: its tag is T.
    Tag(String),
    /// `reason~TEXT`: its reason contains TEXT.
    ReasonContains(String),
    /// `abort=KIND`: the sandbox stopped it with this abort kind.
    Abort(String),
    /// `id=ID`: its DLQ id, original message id or message id.
    Id(String),
}

impl FromStr for Filter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(text) = s.strip_prefix("reason~") {
            return Ok(Self::ReasonContains(text.to_owned()));
        }
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!(
                "filter {s:?} is not key=K, tag=T, reason~TEXT, abort=KIND or id=ID"
            ));
        };
        let value = value.to_owned();
        match key {
            "key" => Ok(Self::Key(value)),
            "tag" => Ok(Self::Tag(value)),
            "abort" => Ok(Self::Abort(value)),
            "id" => Ok(Self::Id(value)),
            other => Err(format!(
                "filter {s:?}: unknown field {other:?} (use key=, tag=, reason~, abort= or id=)"
            )),
        }
    }
}

impl Filter {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        match self {
            Self::Key(k) => letter.msg.keys().any(|key| key == k),
            Self::Tag(t) => letter.msg.tags() == Some(t.as_str()),
            Self::ReasonContains(text) => {
                letter.reason().is_some_and(|r| r.contains(text.as_str()))
            }
            Self::Abort(kind) => letter.abort() == Some(kind.as_str()),
            Self::Id(id) => {
                letter.id() == *id
                    || letter.origin_msg_id() == Some(id.as_str())
                    || letter.msg.msg_id() == *id
            }
        }
    }
}

/// What a resend decided for each letter it looked at.
#[derive(Debug, Default)]
pub struct ResendReport {
    /// Sent now: the letter's id and the copy's message id.
    pub sent: Vec<(String, String)>,
    /// Matched, but resent before (the ledger names them).
    pub already_resent: Vec<String>,
    /// Matched, but naming no origin topic: they cannot be re-delivered to the group.
    pub no_origin: Vec<String>,
    /// Letters the filters did not choose.
    pub not_chosen: usize,
}

/// Dead letters and resends of one group.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    reader: TopicReader,
    group: String,
}

impl DeadLetters {
    pub fn new(reader: TopicReader, group: impl Into<String>) -> Self {
        Self { reader, group: group.into() }
    }

    /// Up to `count` letters, oldest first per queue (none when the group never dead-lettered).
    pub async fn list(&self, count: usize) -> Result<Vec<DeadLetter>, ClientError> {
        let queues = match self.reader.queues(&dlq_topic(&self.group)).await {
            Ok(q) => q,
            Err(ClientError::NoRoute(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for q in &queues {
            if out.len() >= count {
                break;
            }
            let (min, _) = self.reader.bounds(q).await?;
            let msgs = self.reader.read(q, min, count - out.len()).await?;
            out.extend(
                msgs.into_iter()
                    .map(|msg| DeadLetter { broker_name: q.queue.broker_name.clone(), msg }),
            );
        }
        Ok(out)
    }

    /// The ids of letters already resent: [`PROP_RESENT_FROM`] of every message stored in the
    /// retry topic and the DLQ.
    pub async fn ledger(&self) -> Result<BTreeSet<String>, ClientError> {
        let mut resent = BTreeSet::new();
        for topic in [retry_topic(&self.group), dlq_topic(&self.group)] {
            for m in self.reader.read_all(&topic).await? {
                if let Some(id) = m.property(PROP_RESENT_FROM) {
                    resent.insert(id.to_owned());
                }
            }
        }
        Ok(resent)
    }

    /// Re-delivers every letter matching all `filters` and not resent before to the group's
    /// retry topic (nothing is sent with `dry_run`); the report says what happened to each.
    pub async fn resend(
        &self,
        producer: &Producer,
        filters: &[Filter],
        dry_run: bool,
    ) -> Result<ResendReport, ClientError> {
        let letters = self.list(usize::MAX).await?;
        let ledger = self.ledger().await?;
        let mut report = ResendReport::default();
        for letter in letters {
            if !filters.iter().all(|f| f.matches(&letter)) {
                report.not_chosen += 1;
                continue;
            }
            let id = letter.id();
            if ledger.contains(&id) {
                report.already_resent.push(id);
                continue;
            }
            let Some(copy) = letter.resend_copy(&self.group) else {
                report.no_origin.push(id);
                continue;
            };
            let msg_id = if dry_run { String::new() } else { producer.send(copy).await?.msg_id };
            report.sent.push((id, msg_id));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QueueId;

    fn letter(props: &[(&str, &str)]) -> DeadLetter {
        let mut msg = MessageExt {
            topic: "%DLQ%g".into(),
            queue_id: QueueId(0),
            queue_offset: QueueOffset(5),
            body: bytes::Bytes::from_static(b"hello"),
            ..MessageExt::default()
        };
        for (k, v) in props {
            msg.properties.insert(*k, *v);
        }
        DeadLetter { broker_name: "broker-a".into(), msg }
    }

    #[test]
    fn filters_parse_and_match() {
        let l = letter(&[
            (property::KEYS, "k1 k2"),
            (property::TAGS, "TagA"),
            (DLQ_REASON, "poison"),
            (PROP_ABORT, "trap"),
            (property::ORIGIN_MESSAGE_ID, "ORIG"),
        ]);
        let table = [
            ("key=k2", true),
            ("key=k3", false),
            ("tag=TagA", true),
            ("tag=TagB", false),
            ("reason~poi", true),
            ("reason~fuel", false),
            ("abort=trap", true),
            ("abort=fuel", false),
            ("id=broker-a/0:5", true),
            ("id=ORIG", true),
            ("id=other", false),
        ];
        for (text, expected) in table {
            let f: Filter = text.parse().unwrap();
            assert_eq!(f.matches(&l), expected, "{text}");
        }
        for bad in ["nonsense", "colour=red"] {
            let e = bad.parse::<Filter>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        assert!(!Filter::ReasonContains("x".into()).matches(&letter(&[])), "no reason");
    }

    #[test]
    fn a_resend_copy_goes_to_the_retry_topic_with_a_fresh_budget_and_its_origin() {
        let l = letter(&[
            (property::RETRY_TOPIC, "orders"),
            (property::ORIGIN_MESSAGE_ID, "ORIG"),
            (property::RECONSUME_TIME, "17"),
            (property::MAX_RECONSUME_TIMES, "3"),
            (property::UNIQ_KEY, "DLQCOPY"),
            (property::KEYS, "k1"),
            (DLQ_REASON, "poison"),
            (PROP_ABORT, "trap"),
            (PROP_FUEL_USED, "12"),
            (PROP_PLUGIN, "p"),
            (PROP_VERSION, "abc"),
            (PROP_CONSUMED_AT, "orders@b/0:3"),
            ("USER", "u"),
        ]);
        let copy = l.resend_copy("g").unwrap();
        assert_eq!(copy.topic, "%RETRY%g");
        assert_eq!(&copy.body[..], b"hello");
        let p = &copy.properties;
        assert_eq!(p.get(property::RETRY_TOPIC), Some("orders"));
        assert_eq!(p.get(property::ORIGIN_MESSAGE_ID), Some("ORIG"));
        assert_eq!(p.get(property::RECONSUME_TIME), Some("0"));
        assert_eq!(p.get(PROP_RESENT_FROM), Some("broker-a/0:5"));
        assert_eq!((p.get(property::KEYS), p.get("USER")), (Some("k1"), Some("u")));
        assert_eq!(p.get(property::MAX_RECONSUME_TIMES), Some("3"), "the letter's limit kept");
        for gone in DEATH_PROPERTIES.into_iter().chain([property::UNIQ_KEY]) {
            assert_eq!(p.get(gone), None, "{gone}");
        }
        assert!(letter(&[]).resend_copy("g").is_none(), "no origin topic, no resend");
        let real = letter(&[(property::REAL_TOPIC, "orders")]).resend_copy("g").unwrap();
        assert_eq!(real.properties.get(property::RETRY_TOPIC), Some("orders"));
        assert_eq!(
            real.properties.get(property::MAX_RECONSUME_TIMES),
            Some("16"),
            "a limit always"
        );
    }

    #[test]
    fn the_view_reads_the_hosts_properties() {
        let l = letter(&[
            (DLQ_REASON, "poison"),
            (PROP_FUEL_USED, "1234"),
            (property::DLQ_ORIGIN_TOPIC, "t"),
            (property::DLQ_ORIGIN_MESSAGE_ID, "M"),
            (PROP_RESENT_FROM, "broker-a/0:1"),
        ]);
        assert_eq!(l.reason(), Some("poison"));
        assert_eq!(l.fuel_used(), Some(1234));
        assert_eq!((l.origin_topic(), l.origin_msg_id()), (Some("t"), Some("M")));
        assert_eq!(l.resent_from(), Some("broker-a/0:1"));
        assert_eq!(l.id(), "broker-a/0:5");
    }
}
