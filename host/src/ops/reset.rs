//! `reset-offset`: moving a group's offsets of a topic through the broker's own reset
//! (INVOKE_BROKER_TO_RESET_OFFSET, 222), as Java's `mqadmin resetOffsetByTime` does.
//!
//! Why the broker's reset and not UPDATE_CONSUMER_OFFSET: a running consumer keeps committing
//! its own position and would overwrite a written offset within seconds. The broker's reset
//! reaches running consumers: a 5.x broker (`useServerSideResetOffset`, on by default) answers
//! each queue's next pull of the group with PULL_OFFSET_MOVED to the new offset; a 4.x broker
//! pushes RESET_CONSUMER_CLIENT_OFFSET (220) to every connected member. Our consumer follows
//! both (queue task `OffsetIllegal`, handler `ResetOffsets`), as Java's does.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::{BrokerClient, ClientError, DEFAULT_RPC_TIMEOUT, NameServerClient, body_error};
use crate::protocol::body::ResetOffsetBody;
use crate::protocol::header::ResetOffsetRequestHeader;
use crate::protocol::{
    EpochMillis, MessageQueue, QueueOffset, RemotingCommand, RequestCode, ResponseCode,
};

/// Where to move the offsets (`--to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The oldest stored message of each queue.
    First,
    /// The end of each queue: skip everything stored.
    Last,
    /// The first message stored at or after this instant.
    Time(SystemTime),
}

impl FromStr for ResetTo {
    type Err = String;

    /// `first`, `last`, an RFC 3339 instant (`2026-12-05T17:00:00Z`), epoch milliseconds, or a
    /// duration ago (`10m ago`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "first" => return Ok(Self::First),
            "last" => return Ok(Self::Last),
            _ => {}
        }
        if let Some(ago) = s.strip_suffix("ago") {
            let d = humantime::parse_duration(ago.trim()).map_err(|e| format!("{s:?}: {e}"))?;
            return SystemTime::now()
                .checked_sub(d)
                .map(Self::Time)
                .ok_or_else(|| format!("{s:?} is before the epoch"));
        }
        if let Ok(ms) = s.parse::<u64>() {
            return Ok(Self::Time(UNIX_EPOCH + Duration::from_millis(ms)));
        }
        humantime::parse_rfc3339_weak(s).map(Self::Time).map_err(|_| {
            format!(
                "{s:?} is not first, last, an instant like 2026-12-05T17:00:00Z, epoch \
                 milliseconds, or a duration ago like \"10m ago\""
            )
        })
    }
}

impl ResetTo {
    /// The request's `timestamp`: the broker reads 0 as "the first stored" (every message is
    /// later) and -1 as "the end of the queue".
    pub fn timestamp(self) -> EpochMillis {
        match self {
            Self::First => EpochMillis(0),
            Self::Last => EpochMillis(-1),
            Self::Time(t) => EpochMillis(
                t.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ),
        }
    }
}

/// Resets `group`'s offsets of `topic` on every master serving it; returns the new offset of
/// every queue, as the brokers report them.
pub async fn reset_offset(
    namesrv: &NameServerClient,
    broker: &BrokerClient,
    group: &str,
    topic: &str,
    to: ResetTo,
) -> Result<BTreeMap<MessageQueue, QueueOffset>, ClientError> {
    let route = namesrv.route(topic).await?.ok_or_else(|| ClientError::NoRoute(topic.into()))?;
    let mut table = BTreeMap::new();
    for data in &route.broker_datas {
        let addr = data.master_addr().ok_or_else(|| ClientError::NoMaster {
            topic: topic.to_owned(),
            broker: data.broker_name.clone(),
        })?;
        let header = ResetOffsetRequestHeader {
            topic: topic.to_owned(),
            group: group.to_owned(),
            timestamp: to.timestamp(),
            // Java's tool forces: rewinding is the point, not only skipping ahead.
            is_force: true,
            queue_id: None,
            offset: None,
        };
        let request = RequestCode::InvokeBrokerToResetOffset;
        let cmd = RemotingCommand::request(request, &header);
        let resp = broker
            .request_expecting(addr, cmd, &[ResponseCode::Success], DEFAULT_RPC_TIMEOUT)
            .await?;
        let body = ResetOffsetBody::decode(&resp.body).map_err(body_error(addr, request))?;
        table.extend(body.offset_table);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_into_broker_timestamps() {
        let table = [
            ("first", 0),
            ("last", -1),
            ("1700000000123", 1_700_000_000_123),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.5Z", 1_700_000_000_500),
        ];
        for (text, ms) in table {
            assert_eq!(text.parse::<ResetTo>().unwrap().timestamp(), EpochMillis(ms), "{text}");
        }
        let ago = "10m ago".parse::<ResetTo>().unwrap().timestamp().0;
        let now = ResetTo::Time(SystemTime::now()).timestamp().0;
        assert!((now - ago - 600_000).abs() < 5_000, "{now} {ago}");
        for bad in ["yesterday", "10 parsecs ago", "-5"] {
            let e = bad.parse::<ResetTo>().unwrap_err();
            assert!(e.contains(bad.trim_end_matches(" ago")), "{e}");
        }
    }
}
