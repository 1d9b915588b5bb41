//! Reading a topic without consuming it: what `peek`, `dlq list` and the resend ledger share.
//!
//! Every pull here goes out under [`TOOLS_GROUP`] with only the SUBSCRIPTION bit of `sysFlag`
//! set: no COMMIT_OFFSET (the broker stores no offset for anyone), the filter `*` rides on the
//! request (no heartbeat, so the tools group never joins a rebalance), and no SUSPEND unless the
//! caller follows the topic. `TOOLS_CONSUMER` is the group Java's `mqadmin` readers use; brokers
//! create it at start, so reading needs no group to be auto-created either.

use std::str::FromStr;
use std::time::Duration;

use crate::client::{BrokerClient, ClientError, NameServerClient, PullResult, PullStatus};
use crate::protocol::header::{
    GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader, PullMessageRequestHeader,
    SearchOffsetRequestHeader, pull_sys_flag,
};
use crate::protocol::message::MessageExt;
use crate::protocol::{EpochMillis, MessageQueue, QueueId, QueueOffset};

/// The group every read is made under (Java `MixAll.TOOLS_CONSUMER_GROUP`).
pub const TOOLS_GROUP: &str = "TOOLS_CONSUMER";

/// Messages asked for per pull (Java's pull batch default).
const PULL_BATCH: i32 = 32;

/// Time for one non-suspended pull or offset query.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Where in each queue reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message still stored.
    First,
    /// The last `n` messages of each queue (`last` alone: none, only what arrives next).
    Last(u64),
    /// This queue offset (clamped into the stored range).
    Offset(QueueOffset),
}

impl FromStr for StartAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not first, last, last-N or an offset");
        match s.trim() {
            "first" => Ok(Self::First),
            "last" => Ok(Self::Last(0)),
            t => match t.strip_prefix("last-") {
                Some(n) => n.parse().map(Self::Last).map_err(|_| bad()),
                None => t
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(|n| Self::Offset(QueueOffset(n)))
                    .ok_or_else(bad),
            },
        }
    }
}

impl StartAt {
    /// The first offset to read in a queue holding `min..max` (`max` is one past the last).
    pub fn resolve(self, min: QueueOffset, max: QueueOffset) -> QueueOffset {
        let at = match self {
            Self::First => min.0,
            Self::Last(n) => max.0.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX)),
            Self::Offset(o) => o.0,
        };
        QueueOffset(at.clamp(min.0, max.0.max(min.0)))
    }
}

/// One readable queue and the broker to read it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadQueue {
    pub queue: MessageQueue,
    pub addr: String,
}

/// Reads topics through the name server's route.
#[derive(Debug, Clone)]
pub struct TopicReader {
    namesrv: NameServerClient,
    broker: BrokerClient,
}

impl TopicReader {
    pub fn new(namesrv: NameServerClient, broker: BrokerClient) -> Self {
        Self { namesrv, broker }
    }

    /// The readable queues of `topic` (the master of each broker set, or a replica without
    /// one), sorted; `NoRoute` when the name server does not know the topic.
    pub async fn queues(&self, topic: &str) -> Result<Vec<ReadQueue>, ClientError> {
        let route =
            self.namesrv.route(topic).await?.ok_or_else(|| ClientError::NoRoute(topic.into()))?;
        Ok(route
            .subscribe_queues(topic)
            .into_iter()
            .filter_map(|queue| {
                let addr = route.broker(&queue.broker_name)?.master_or_any_addr()?.to_owned();
                Some(ReadQueue { queue, addr })
            })
            .collect())
    }

    /// The stored range `min..max` of a queue.
    pub async fn bounds(&self, q: &ReadQueue) -> Result<(QueueOffset, QueueOffset), ClientError> {
        let bname = Some(q.queue.broker_name.clone());
        let min = GetMinOffsetRequestHeader {
            topic: q.queue.topic.clone(),
            queue_id: q.queue.queue_id,
            bname: bname.clone(),
        };
        let max = GetMaxOffsetRequestHeader {
            topic: q.queue.topic.clone(),
            queue_id: q.queue.queue_id,
            committed: None,
            bname,
        };
        Ok((
            self.broker.min_offset(&q.addr, &min, RPC_TIMEOUT).await?,
            self.broker.max_offset(&q.addr, &max, RPC_TIMEOUT).await?,
        ))
    }

    /// The first offset of a queue stored at or after `at` (SEARCH_OFFSET_BY_TIMESTAMP).
    pub async fn offset_at(
        &self,
        q: &ReadQueue,
        at: EpochMillis,
    ) -> Result<QueueOffset, ClientError> {
        let header = SearchOffsetRequestHeader {
            topic: q.queue.topic.clone(),
            queue_id: q.queue.queue_id,
            timestamp: at,
            boundary_type: None,
            bname: Some(q.queue.broker_name.clone()),
        };
        self.broker.search_offset(&q.addr, &header, RPC_TIMEOUT).await
    }

    /// One pull from `offset`; with `suspend`, the broker may hold it open that long for new
    /// messages (following a topic).
    pub async fn pull(
        &self,
        q: &ReadQueue,
        offset: QueueOffset,
        suspend: Option<Duration>,
    ) -> Result<PullResult, ClientError> {
        let header = read_header(&q.queue, offset, suspend);
        let timeout = suspend.map_or(RPC_TIMEOUT, |s| s + RPC_TIMEOUT);
        self.broker.pull(&q.addr, &header, timeout).await
    }

    /// Up to `limit` messages of a queue from `from` up to its current end.
    pub async fn read(
        &self,
        q: &ReadQueue,
        from: QueueOffset,
        limit: usize,
    ) -> Result<Vec<MessageExt>, ClientError> {
        let mut out = Vec::new();
        let mut offset = from;
        while out.len() < limit {
            let r = self.pull(q, offset, None).await?;
            let advanced = r.next_begin_offset > offset;
            match r.status {
                PullStatus::Found => out.extend(r.messages),
                PullStatus::NoNewMsg => break,
                PullStatus::NoMatchedMsg | PullStatus::OffsetIllegal => {}
            }
            if !advanced {
                break;
            }
            offset = r.next_begin_offset;
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Every stored message of every queue of `topic` (a missing topic reads as empty).
    pub async fn read_all(&self, topic: &str) -> Result<Vec<MessageExt>, ClientError> {
        let queues = match self.queues(topic).await {
            Ok(q) => q,
            Err(ClientError::NoRoute(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for q in &queues {
            let (min, _) = self.bounds(q).await?;
            out.extend(self.read(q, min, usize::MAX).await?);
        }
        Ok(out)
    }
}

/// A PULL_MESSAGE that commits nothing and registers nothing (see the module doc).
fn read_header(
    queue: &MessageQueue,
    offset: QueueOffset,
    suspend: Option<Duration>,
) -> PullMessageRequestHeader {
    let mut sys_flag = pull_sys_flag::SUBSCRIPTION;
    if suspend.is_some() {
        sys_flag |= pull_sys_flag::SUSPEND;
    }
    PullMessageRequestHeader {
        consumer_group: TOOLS_GROUP.to_owned(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        queue_offset: offset,
        max_msg_nums: PULL_BATCH,
        sys_flag,
        commit_offset: QueueOffset(0),
        suspend_timeout_millis: suspend
            .map_or(0, |s| i64::try_from(s.as_millis()).unwrap_or(i64::MAX)),
        subscription: Some("*".to_owned()),
        sub_version: EpochMillis(0),
        expression_type: Some("TAG".to_owned()),
        max_msg_bytes: None,
        bname: Some(queue.broker_name.clone()),
    }
}

/// Picks one queue id out of a topic's queues (`--queue N`); every one when `None`.
pub fn select_queues(queues: Vec<ReadQueue>, id: Option<i32>) -> Vec<ReadQueue> {
    match id {
        None => queues,
        Some(id) => queues.into_iter().filter(|q| q.queue.queue_id == QueueId(id)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        let table = [
            ("first", Ok(StartAt::First)),
            ("last", Ok(StartAt::Last(0))),
            ("last-10", Ok(StartAt::Last(10))),
            ("42", Ok(StartAt::Offset(QueueOffset(42)))),
            ("last-x", Err(())),
            ("-3", Err(())),
            ("middle", Err(())),
        ];
        for (text, expected) in table {
            assert_eq!(text.parse::<StartAt>().map_err(drop), expected, "{text}");
        }
        let e = "middle".parse::<StartAt>().unwrap_err();
        assert!(e.contains("\"middle\"") && e.contains("last-N"), "{e}");
    }

    #[test]
    fn start_positions_stay_in_the_stored_range() {
        let (min, max) = (QueueOffset(10), QueueOffset(20));
        let table = [
            (StartAt::First, 10),
            (StartAt::Last(0), 20),
            (StartAt::Last(3), 17),
            (StartAt::Last(100), 10),
            (StartAt::Offset(QueueOffset(15)), 15),
            (StartAt::Offset(QueueOffset(2)), 10),
            (StartAt::Offset(QueueOffset(99)), 20),
        ];
        for (start, expected) in table {
            assert_eq!(start.resolve(min, max), QueueOffset(expected), "{start:?}");
        }
        assert_eq!(StartAt::Last(5).resolve(QueueOffset(0), QueueOffset(0)), QueueOffset(0));
    }

    #[test]
    fn reads_commit_nothing_and_need_no_subscription() {
        let q = MessageQueue::new("T", "b", QueueId(1));
        let h = read_header(&q, QueueOffset(7), None);
        assert_eq!(h.sys_flag & pull_sys_flag::COMMIT_OFFSET, 0, "never commits");
        assert_eq!(h.sys_flag, pull_sys_flag::SUBSCRIPTION);
        assert_eq!((h.consumer_group.as_str(), h.suspend_timeout_millis), (TOOLS_GROUP, 0));
        let f = read_header(&q, QueueOffset(7), Some(Duration::from_secs(2)));
        assert_eq!(f.sys_flag, pull_sys_flag::SUBSCRIPTION | pull_sys_flag::SUSPEND);
        assert_eq!(f.suspend_timeout_millis, 2000);
    }
}
