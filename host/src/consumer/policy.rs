//! Small decisions of the push consumer, as pure functions: how long a queue waits before its
//! next pull, whether it is over its flow-control limits, where a new queue starts, which delay
//! level a retry gets and when a message is dead-lettered.
//!
//! Each one is a table in Java (reference 4.5, 4.6, 4.7, 4.8, 4.10), scattered over several
//! classes there; here each is one function with a table test, so the queue task and the
//! consume service only wire them up.

use std::fmt;
use std::time::Duration;

use super::config::{ConsumeMode, ConsumerConfig};
use crate::protocol::body::ConsumeFromWhere;
use crate::protocol::types::{EpochMillis, QueueOffset};

// ------------------------------------------------------------------------------------------------
// Topics
// ------------------------------------------------------------------------------------------------

/// Java's `MixAll.RETRY_GROUP_TOPIC_PREFIX`.
pub const RETRY_TOPIC_PREFIX: &str = "%RETRY%";

/// `%RETRY%<group>`: where the broker re-delivers the group's retried messages.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_TOPIC_PREFIX}{group}")
}

/// Whether `topic` is some group's retry topic; such queues start differently (4.10).
pub fn is_retry_topic(topic: &str) -> bool {
    topic.starts_with(RETRY_TOPIC_PREFIX)
}

// ------------------------------------------------------------------------------------------------
// Pull delays (reference 4.5)
// ------------------------------------------------------------------------------------------------

/// Java's `PULL_TIME_DELAY_MILLS_WHEN_FLOW_CONTROL`: short, because capacity comes back as soon
/// as the listener finishes a batch.
pub const PULL_DELAY_WHEN_FLOW_CONTROL: Duration = Duration::from_millis(50);
/// Java's `ClientConfig.pullTimeDelayMillsWhenException` default (very old clients used 3 s).
pub const PULL_DELAY_WHEN_EXCEPTION: Duration = Duration::from_millis(1000);
/// Java's `PULL_TIME_DELAY_MILLS_WHEN_BROKER_FLOW_CONTROL`: the broker said FLOW_CONTROL, which
/// clears quickly (its page cache was busy), so retry soon.
pub const PULL_DELAY_WHEN_BROKER_FLOW_CONTROL: Duration = Duration::from_millis(20);

/// How long a queue waits after a slave had nothing for it. A slave that serves no reads answers
/// at once instead of holding the pull, so this bounds the polling rate — two pulls a second per
/// queue — while the master is away; it is also the extra latency of a message in that time.
pub const PULL_DELAY_WHEN_REPLICA_CAUGHT_UP: Duration = Duration::from_millis(500);

/// Why a queue does not pull right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDelayReason {
    /// Over a flow-control limit of the queue.
    FlowControl(FlowControlReason),
    /// Orderly: the broker-side lock of the queue is not (yet) held.
    NotLocked,
    /// The topic has no subscription (it was just unsubscribed).
    NoSubscription,
    /// The pull failed: timeout, network error or an error code.
    PullFailed,
    /// The broker answered FLOW_CONTROL (code 20).
    BrokerFlowControl,
    /// A slave answered at once that it has nothing newer.
    ReplicaCaughtUp,
}

/// How long a queue waits before it tries to pull again, for `reason` (reference 4.5's table).
pub fn pull_delay_for(reason: PullDelayReason) -> Duration {
    match reason {
        PullDelayReason::FlowControl(_) => PULL_DELAY_WHEN_FLOW_CONTROL,
        PullDelayReason::BrokerFlowControl => PULL_DELAY_WHEN_BROKER_FLOW_CONTROL,
        PullDelayReason::ReplicaCaughtUp => PULL_DELAY_WHEN_REPLICA_CAUGHT_UP,
        PullDelayReason::NotLocked
        | PullDelayReason::NoSubscription
        | PullDelayReason::PullFailed => PULL_DELAY_WHEN_EXCEPTION,
    }
}

/// How long to wait before asking again for a subscribed topic's missing route, after
/// `attempts` earlier tries: 1 s, doubling, never longer than the regular `poll` interval.
pub fn missing_route_delay(attempts: u32, poll: Duration) -> Duration {
    Duration::from_secs(1).saturating_mul(1 << attempts.min(16)).min(poll)
}

// ------------------------------------------------------------------------------------------------
// Flow control (reference 4.5)
// ------------------------------------------------------------------------------------------------

const MIB: u64 = 1024 * 1024;

/// Which per-queue limit a queue is over. Carries the figures for the log line and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControlReason {
    /// More messages buffered than `pull_threshold_for_queue` (or its per-topic share).
    CachedCount { count: usize, limit: u32 },
    /// More whole MiB of bodies buffered than the size threshold.
    CachedSize { mib: u64, limit: u32 },
    /// Concurrent only: the buffer spans more offsets than `consume_concurrently_max_span`.
    Span { span: u64, limit: u32 },
}

impl fmt::Display for FlowControlReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CachedCount { count, limit } => {
                write!(f, "{count} cached messages exceed the limit of {limit}")
            }
            Self::CachedSize { mib, limit } => {
                write!(f, "{mib} MiB of cached messages exceed the limit of {limit} MiB")
            }
            Self::Span { span, limit } => {
                write!(f, "cached offsets span {span}, more than the limit of {limit}")
            }
        }
    }
}

/// The flow-control limits of one queue, derived from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLimits {
    pub max_cached_count: u32,
    pub max_cached_size_mib: u32,
    /// `None` for orderly consumers: a serial queue's span says nothing about a stuck message.
    pub max_span: Option<u32>,
}

impl FlowLimits {
    /// The limits of each queue while the consumer owns `owned_queues` queues (all topics,
    /// retry topic included).
    ///
    /// The per-topic thresholds, when set, replace the per-queue ones by an even share,
    /// `max(1, topic_limit / owned_queues)` — Java recomputes this in `messageQueueChanged` and
    /// keeps the old value while no queue is owned.
    pub fn new(config: &ConsumerConfig, owned_queues: usize) -> Self {
        let share = |topic_limit: Option<u32>, per_queue: u32| match topic_limit {
            Some(total) if owned_queues > 0 => {
                let owned = u32::try_from(owned_queues).unwrap_or(u32::MAX);
                (total / owned).max(1)
            }
            _ => per_queue,
        };
        Self {
            max_cached_count: share(
                config.pull_threshold_for_topic,
                config.pull_threshold_for_queue,
            ),
            max_cached_size_mib: share(
                config.pull_threshold_size_for_topic_mib,
                config.pull_threshold_size_for_queue_mib,
            ),
            max_span: match config.consume_mode {
                ConsumeMode::Concurrently => Some(config.consume_concurrently_max_span),
                ConsumeMode::Orderly => None,
            },
        }
    }
}

/// Whether a queue with this much buffered must wait before its next pull, and why; checked
/// in Java's order (count, size, span). Each limit is exceeded only when strictly above it, and
/// the size counts whole MiB (Java divides before comparing), so 100 MiB + 1 byte is still fine
/// under a 100 MiB limit.
pub fn flow_control_check(
    cached_count: usize,
    cached_size_bytes: u64,
    span: u64,
    limits: &FlowLimits,
) -> Option<FlowControlReason> {
    if cached_count > limits.max_cached_count as usize {
        return Some(FlowControlReason::CachedCount {
            count: cached_count,
            limit: limits.max_cached_count,
        });
    }
    let mib = cached_size_bytes / MIB;
    if mib > u64::from(limits.max_cached_size_mib) {
        return Some(FlowControlReason::CachedSize { mib, limit: limits.max_cached_size_mib });
    }
    match limits.max_span {
        Some(limit) if span > u64::from(limit) => Some(FlowControlReason::Span { span, limit }),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------------
// Start offset of a newly assigned queue (reference 4.10)
// ------------------------------------------------------------------------------------------------

/// What the offset store knows about a queue, read from the broker (READ_FROM_STORE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredOffset {
    /// The group has committed this offset.
    Found(QueueOffset),
    /// The group has never committed one for this queue (Java −1).
    NotFound,
    /// The query failed (Java −2 and below): nothing is known.
    QueryFailed,
}

/// Where a newly assigned queue starts pulling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffsetDecision {
    /// Start here: the stored offset, or 0 (FIRST_OFFSET, or a retry topic under LAST_OFFSET).
    /// If 0 is below the queue's minimum, the first pull answers OFFSET_MOVED and fixes it.
    Use(QueueOffset),
    /// Ask the broker for the queue's max offset (GET_MAX_OFFSET) and start there, skipping
    /// history.
    AskMaxOffset,
    /// Ask the broker for the first offset stored at or after this time
    /// (SEARCH_OFFSET_BY_TIMESTAMP).
    AskByTimestamp(EpochMillis),
    /// Do not take the queue now; the next rebalance tries again. Taking it blind could skip or
    /// redeliver a whole backlog.
    GiveUp,
}

/// Java's `computePullFromWhereWithException`. `timestamp` is what CONSUME_FROM_TIMESTAMP
/// searches for ([`ConsumerConfig::consume_timestamp_at`]). The deprecated values behave as
/// LAST_OFFSET, as in Java.
pub fn start_offset(
    consume_from_where: ConsumeFromWhere,
    is_retry_topic: bool,
    stored: StoredOffset,
    timestamp: EpochMillis,
) -> StartOffsetDecision {
    match stored {
        StoredOffset::Found(offset) => return StartOffsetDecision::Use(offset),
        StoredOffset::QueryFailed => return StartOffsetDecision::GiveUp,
        StoredOffset::NotFound => {}
    }
    match consume_from_where {
        ConsumeFromWhere::LastOffset
        | ConsumeFromWhere::LastOffsetAndFromMinWhenBootFirst
        | ConsumeFromWhere::MinOffset
        | ConsumeFromWhere::MaxOffset => {
            // A retry topic holds only this group's own failures: skipping them would lose them.
            if is_retry_topic {
                StartOffsetDecision::Use(QueueOffset(0))
            } else {
                StartOffsetDecision::AskMaxOffset
            }
        }
        ConsumeFromWhere::FirstOffset => StartOffsetDecision::Use(QueueOffset(0)),
        ConsumeFromWhere::Timestamp => {
            if is_retry_topic {
                StartOffsetDecision::AskMaxOffset
            } else {
                StartOffsetDecision::AskByTimestamp(timestamp)
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Retry, delay levels and the DLQ (reference 4.6–4.8)
// ------------------------------------------------------------------------------------------------

/// A broker delay level, 1..=18 (`messageDelayLevel`: 1s 5s 10s 30s 1m … 2h by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DelayLevel(u8);

impl DelayLevel {
    pub const MIN: Self = Self(1);
    /// The broker's highest level; higher requests are clamped to it.
    pub const MAX: Self = Self(18);
    /// The level the consume-timeout cleanup sends stuck messages back with (10 s by default).
    pub const CONSUME_TIMEOUT: Self = Self(3);

    /// The level nearest to `level` in 1..=18.
    pub fn clamped(level: i64) -> Self {
        let level = level.clamp(i64::from(Self::MIN.0), i64::from(Self::MAX.0));
        Self(u8::try_from(level).unwrap_or(Self::MAX.0))
    }

    /// The value for the wire (`delayLevel`, property `DELAY`).
    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

/// The level a retry waits at when the broker picks it: Java's `3 + reconsumeTimes` (10 s,
/// 30 s, 1 min, … 2 h), clamped to 1..=18.
fn broker_chosen_level(reconsume_times: i32) -> DelayLevel {
    DelayLevel::clamped(3 + i64::from(reconsume_times))
}

/// The delay level of Java's fallback when a send-back fails and the client re-sends the message
/// to `%RETRY%<group>` itself: always `3 + reconsume_times` (clamped), whatever the listener
/// asked for — Java's `sendMessageBack` ignores the requested level on this path.
pub fn fallback_delay_level(reconsume_times: i32) -> DelayLevel {
    broker_chosen_level(reconsume_times)
}

/// Whether a failed message with `reconsume_times` earlier retries has used them all and goes to
/// `%DLQ%<group>`; `max` is the effective limit
/// ([`effective_max_reconsume_times`](super::config::effective_max_reconsume_times)).
///
/// Orderly consumers apply this themselves (`checkReconsumeTimes`) before re-sending a message
/// to the retry topic; concurrent ones leave it to the broker, which applies the same rule to
/// the `maxReconsumeTimes` sent with the send-back.
pub fn should_send_to_dlq(reconsume_times: i32, max: i32) -> bool {
    reconsume_times >= max
}

/// Orderly: the shortest pause after SUSPEND_CURRENT_QUEUE_A_MOMENT.
pub const MIN_SUSPEND_TIME: Duration = Duration::from_millis(10);
/// Orderly: the longest pause after SUSPEND_CURRENT_QUEUE_A_MOMENT.
pub const MAX_SUSPEND_TIME: Duration = Duration::from_secs(30);

/// How long an orderly queue pauses after a failed batch: the listener's request for this call,
/// else the configured `suspend_current_queue_time`, clamped to 10 ms..=30 s either way so a
/// listener can neither spin a queue nor park it for ever (Java `submitConsumeRequestLater`).
pub fn clamp_suspend_time(requested: Option<Duration>, configured: Duration) -> Duration {
    requested.unwrap_or(configured).clamp(MIN_SUSPEND_TIME, MAX_SUSPEND_TIME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::config::effective_max_reconsume_times;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn topic_names() {
        assert_eq!(retry_topic("G"), "%RETRY%G");
        assert!(is_retry_topic("%RETRY%G"));
        assert!(!is_retry_topic("%DLQ%G"));
        assert!(!is_retry_topic("T%RETRY%"));
    }

    #[test]
    fn missing_routes_are_asked_for_with_a_doubling_delay_up_to_the_poll() {
        let poll = ms(30_000);
        let table = [(0, 1_000), (1, 2_000), (2, 4_000), (4, 16_000), (5, 30_000), (40, 30_000)];
        for (attempts, expected) in table {
            assert_eq!(missing_route_delay(attempts, poll), ms(expected), "{attempts}");
        }
        assert_eq!(missing_route_delay(3, ms(5_000)), ms(5_000), "never past the poll");
    }

    #[test]
    fn pull_delays_match_java() {
        let flow = FlowControlReason::CachedCount { count: 1001, limit: 1000 };
        let table = [
            (PullDelayReason::FlowControl(flow), ms(50)),
            (PullDelayReason::FlowControl(FlowControlReason::Span { span: 1, limit: 0 }), ms(50)),
            (PullDelayReason::NotLocked, ms(1000)),
            (PullDelayReason::NoSubscription, ms(1000)),
            (PullDelayReason::PullFailed, ms(1000)),
            (PullDelayReason::BrokerFlowControl, ms(20)),
            (PullDelayReason::ReplicaCaughtUp, ms(500)),
        ];
        for (reason, delay) in table {
            assert_eq!(pull_delay_for(reason), delay, "{reason:?}");
        }
    }

    fn limits(mode: ConsumeMode) -> FlowLimits {
        let mut config = ConsumerConfig::new("G");
        config.consume_mode = mode;
        FlowLimits::new(&config, 8)
    }

    #[test]
    fn flow_control_edges() {
        use FlowControlReason::*;
        let conc = limits(ConsumeMode::Concurrently);
        let ord = limits(ConsumeMode::Orderly);
        let table = [
            // (count, bytes, span, limits, expected)
            (0, 0, 0, conc, None),
            (1000, 0, 0, conc, None),
            (1001, 0, 0, conc, Some(CachedCount { count: 1001, limit: 1000 })),
            (0, 100 * MIB, 0, conc, None),
            (0, 101 * MIB - 1, 0, conc, None),
            (0, 101 * MIB, 0, conc, Some(CachedSize { mib: 101, limit: 100 })),
            (0, 0, 2000, conc, None),
            (0, 0, 2001, conc, Some(Span { span: 2001, limit: 2000 })),
            (0, 0, 2001, ord, None),
            (1001, 0, 0, ord, Some(CachedCount { count: 1001, limit: 1000 })),
            // Count is checked before size, size before span.
            (1001, 200 * MIB, 5000, conc, Some(CachedCount { count: 1001, limit: 1000 })),
            (1, 200 * MIB, 5000, conc, Some(CachedSize { mib: 200, limit: 100 })),
        ];
        for (count, bytes, span, limits, expected) in table {
            assert_eq!(
                flow_control_check(count, bytes, span, &limits),
                expected,
                "{count} msgs, {bytes} bytes, span {span}, {limits:?}"
            );
        }
    }

    #[test]
    fn per_topic_thresholds_split_over_owned_queues() {
        let mut config = ConsumerConfig::new("G");
        assert_eq!(FlowLimits::new(&config, 8).max_cached_count, 1000);
        config.pull_threshold_for_topic = Some(1000);
        config.pull_threshold_size_for_topic_mib = Some(10);
        let table = [
            // (owned queues, count limit, size limit)
            (0, 1000, 100), // nothing owned: per-queue values stay
            (1, 1000, 10),
            (3, 333, 3),
            (8, 125, 1),
            (20, 50, 1), // size: max(1, 10 / 20)
            (5000, 1, 1),
        ];
        for (owned, count, size) in table {
            let l = FlowLimits::new(&config, owned);
            assert_eq!((l.max_cached_count, l.max_cached_size_mib), (count, size), "{owned}");
        }
    }

    #[test]
    fn start_offset_table() {
        use ConsumeFromWhere::*;
        use StartOffsetDecision::*;
        let ts = EpochMillis(1_700_000_000_000);
        let found = StoredOffset::Found(QueueOffset(7));
        let none = StoredOffset::NotFound;
        let failed = StoredOffset::QueryFailed;
        let table = [
            // (from, retry topic?, stored, decision)
            (LastOffset, false, found, Use(QueueOffset(7))),
            (FirstOffset, false, found, Use(QueueOffset(7))),
            (Timestamp, false, found, Use(QueueOffset(7))),
            (LastOffset, false, failed, GiveUp),
            (FirstOffset, true, failed, GiveUp),
            (Timestamp, false, failed, GiveUp),
            (LastOffset, false, none, AskMaxOffset),
            (LastOffset, true, none, Use(QueueOffset(0))),
            (LastOffsetAndFromMinWhenBootFirst, false, none, AskMaxOffset),
            (MinOffset, false, none, AskMaxOffset),
            (MaxOffset, false, none, AskMaxOffset),
            (MaxOffset, true, none, Use(QueueOffset(0))),
            (FirstOffset, false, none, Use(QueueOffset(0))),
            (FirstOffset, true, none, Use(QueueOffset(0))),
            (Timestamp, false, none, AskByTimestamp(ts)),
            (Timestamp, true, none, AskMaxOffset),
        ];
        for (from, retry, stored, expected) in table {
            assert_eq!(
                start_offset(from, retry, stored, ts),
                expected,
                "{from} {retry} {stored:?}"
            );
        }
    }

    #[test]
    fn delay_levels() {
        // The fallback ignores the request and uses the broker's rule.
        for (times, expected) in [(0, 3), (5, 8), (15, 18), (100, 18)] {
            assert_eq!(fallback_delay_level(times).get(), expected, "{times}");
        }
        assert_eq!(DelayLevel::CONSUME_TIMEOUT.get(), 3);
        assert_eq!((DelayLevel::MIN.get(), DelayLevel::MAX.get()), (1, 18));
    }

    #[test]
    fn dlq_decision() {
        use ConsumeMode::*;
        let table = [
            // (reconsume times, configured max, mode, to DLQ?)
            (15, None, Concurrently, false),
            (16, None, Concurrently, true),
            (17, None, Concurrently, true),
            (1_000_000, None, Orderly, false),
            (i32::MAX - 1, None, Orderly, false),
            (i32::MAX, None, Orderly, true),
            (2, Some(3), Orderly, false),
            (3, Some(3), Orderly, true),
            (0, Some(0), Concurrently, true),
            (0, Some(1), Concurrently, false),
        ];
        for (times, max, mode, expected) in table {
            let effective = effective_max_reconsume_times(max, mode);
            assert_eq!(should_send_to_dlq(times, effective), expected, "{times} {max:?} {mode:?}");
        }
    }

    #[test]
    fn suspend_time_clamp() {
        let table = [
            (None, ms(1000), ms(1000)),
            (None, ms(0), ms(10)),
            (None, ms(60_000), ms(30_000)),
            (Some(ms(5)), ms(1000), ms(10)),
            (Some(ms(10)), ms(1000), ms(10)),
            (Some(ms(250)), ms(1000), ms(250)),
            (Some(ms(30_000)), ms(1000), ms(30_000)),
            (Some(ms(30_001)), ms(1000), ms(30_000)),
        ];
        for (requested, configured, expected) in table {
            assert_eq!(clamp_suspend_time(requested, configured), expected, "{requested:?}");
        }
    }
}
