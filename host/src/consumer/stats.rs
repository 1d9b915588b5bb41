//! Counters a metrics layer can read: per queue (live while the queue is owned) and per topic
//! (for the consumer's life), lock-free, written by the queue's own task and its consume jobs.
//!
//! Rates (TPS) are left to the reader: it samples the monotonic counters twice and divides
//! (`/metrics` scrapers do; the running-info answer keeps Java's one-minute windows, see
//! [`super::stats_window`]), which keeps the hot path to a few relaxed atomic adds and, per
//! listener call, two histogram observations.
//!
//! Why two levels: a queue's counters vanish when the queue is rebalanced away, so sums over the
//! owned queues go down; Prometheus counters and Java's per-topic TPS windows must not. Each
//! queue's counters hold their topic's [`TopicStats`] (resolved once when the queue is
//! assigned, never looked up per message) and add to both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

use crate::protocol::{MessageQueue, QueueOffset};

/// Buckets of the consume-time histograms, in milliseconds: the RocketMQ 5.x clients'
/// `rocketmq_process_time` / `rocketmq_await_time` boundaries.
pub const TIME_BUCKETS_MS: [f64; 7] = [1.0, 5.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0];

/// How a listener call's messages ended, as the listener decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub success: u64,
    pub retry: u64,
    pub dead_letter: u64,
}

impl OutcomeCounts {
    /// Counted in one pass.
    pub fn of(outcomes: &[super::listener::MessageOutcome]) -> Self {
        use super::listener::MessageOutcome as O;
        let mut c = Self::default();
        for o in outcomes {
            match o {
                O::Success => c.success += 1,
                O::RetryLater { .. } => c.retry += 1,
                O::DeadLetter { .. } => c.dead_letter += 1,
            }
        }
        c
    }

    pub fn failed(&self) -> u64 {
        self.retry + self.dead_letter
    }
}

/// Counters of one subscribed topic over the consumer's life (monotonic), and its consume-time
/// histograms.
#[derive(Debug)]
pub struct TopicStats {
    pulls: AtomicU64,
    pull_rt_micros: AtomicU64,
    pulled_messages: AtomicU64,
    consume_calls: AtomicU64,
    consume_rt_micros: AtomicU64,
    outcome_success: AtomicU64,
    outcome_retry: AtomicU64,
    outcome_dead_letter: AtomicU64,
    flow_control_pauses: AtomicU64,
    /// Listener call duration, ms.
    process_time: Histogram,
    /// Time a batch waited for a consume permit (a free listener slot) before its call, ms.
    await_time: Histogram,
    pull_rt: Histogram,
}

impl Default for TopicStats {
    fn default() -> Self {
        Self {
            pulls: AtomicU64::new(0),
            pull_rt_micros: AtomicU64::new(0),
            pulled_messages: AtomicU64::new(0),
            consume_calls: AtomicU64::new(0),
            consume_rt_micros: AtomicU64::new(0),
            outcome_success: AtomicU64::new(0),
            outcome_retry: AtomicU64::new(0),
            outcome_dead_letter: AtomicU64::new(0),
            flow_control_pauses: AtomicU64::new(0),
            process_time: Histogram::new(TIME_BUCKETS_MS),
            await_time: Histogram::new(TIME_BUCKETS_MS),
            pull_rt: Histogram::new(TIME_BUCKETS_MS),
        }
    }
}

impl TopicStats {
    /// The monotonic counters.
    pub fn snapshot(&self) -> TopicStatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TopicStatsSnapshot {
            pulls: get(&self.pulls),
            pull_rt_total: Duration::from_micros(get(&self.pull_rt_micros)),
            pulled_messages: get(&self.pulled_messages),
            consume_calls: get(&self.consume_calls),
            consume_rt_total: Duration::from_micros(get(&self.consume_rt_micros)),
            outcomes: OutcomeCounts {
                success: get(&self.outcome_success),
                retry: get(&self.outcome_retry),
                dead_letter: get(&self.outcome_dead_letter),
            },
            flow_control_pauses: get(&self.flow_control_pauses),
        }
    }

    /// Listener call durations (ms), one observation per call.
    pub fn process_time(&self) -> &Histogram {
        &self.process_time
    }

    /// Waits for a consume permit before a call (ms), one observation per call.
    pub fn await_time(&self) -> &Histogram {
        &self.await_time
    }

    /// Pull round trips (ms), one observation per pull answered.
    pub fn pull_rt(&self) -> &Histogram {
        &self.pull_rt
    }
}

/// A copy of one topic's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicStatsSnapshot {
    pub pulls: u64,
    pub pull_rt_total: Duration,
    pub pulled_messages: u64,
    /// Listener calls (a call consumes a batch).
    pub consume_calls: u64,
    pub consume_rt_total: Duration,
    /// Messages by the listener's decision (a dead letter includes a Wasm poison message).
    pub outcomes: OutcomeCounts,
    pub flow_control_pauses: u64,
}

fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Live counters of one queue.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// The queue's topic, for the consumer's life.
    pub(crate) topic: Arc<TopicStats>,
    pub pulls: AtomicU64,
    pub pull_errors: AtomicU64,
    pub pull_rt_micros: AtomicU64,
    pub pulled_messages: AtomicU64,
    pub consumed_ok: AtomicU64,
    pub consumed_failed: AtomicU64,
    pub consume_rt_micros: AtomicU64,
    pub flow_control_pauses: AtomicU64,
    pub cached_count: AtomicU64,
    pub cached_bytes: AtomicU64,
    /// The largest cached count seen, so tests and operators can check flow control held.
    pub cached_count_high_water: AtomicU64,
    pub next_offset: AtomicI64,
    pub committed_offset: AtomicI64,
    pub max_offset: AtomicI64,
    /// Records skipped because they could not be decoded (each logged at ERROR).
    pub skipped_records: AtomicU64,
    /// Wall-clock ms of the last pull and consume, for the admin tools' running info.
    pub last_pull_ms: AtomicI64,
    pub last_consume_ms: AtomicI64,
    /// POP (see `consumer::pop`): acks sent, acks or invisible-time changes that failed (the
    /// message comes back after its invisible time), retries by invisible-time change, and
    /// messages whose invisible time passed before they were settled (not acked late: the
    /// broker delivers them again).
    pub pop_acks: AtomicU64,
    pub pop_settle_failures: AtomicU64,
    pub pop_retries: AtomicU64,
    pub pop_expired: AtomicU64,
}

impl QueueStats {
    /// Counters of a queue of the topic whose life-long counters are `topic`.
    pub(crate) fn new(topic: Arc<TopicStats>) -> Self {
        Self { topic, ..Self::default() }
    }

    pub(crate) fn add_pull(&self, rt: Duration, messages: usize) {
        self.pulls.fetch_add(1, Ordering::Relaxed);
        self.pull_rt_micros.fetch_add(micros(rt), Ordering::Relaxed);
        self.pulled_messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.last_pull_ms.store(crate::protocol::EpochMillis::now().0, Ordering::Relaxed);
        let t = &*self.topic;
        t.pulls.fetch_add(1, Ordering::Relaxed);
        t.pull_rt_micros.fetch_add(micros(rt), Ordering::Relaxed);
        t.pulled_messages.fetch_add(messages as u64, Ordering::Relaxed);
        t.pull_rt.observe(millis_f64(rt));
    }

    /// One listener call: how long it waited for its permit, how long it ran, what it decided.
    pub(crate) fn add_consume(&self, waited: Duration, rt: Duration, outcomes: OutcomeCounts) {
        self.consumed_ok.fetch_add(outcomes.success, Ordering::Relaxed);
        self.consumed_failed.fetch_add(outcomes.failed(), Ordering::Relaxed);
        self.consume_rt_micros.fetch_add(micros(rt), Ordering::Relaxed);
        self.last_consume_ms.store(crate::protocol::EpochMillis::now().0, Ordering::Relaxed);
        let t = &*self.topic;
        t.consume_calls.fetch_add(1, Ordering::Relaxed);
        t.consume_rt_micros.fetch_add(micros(rt), Ordering::Relaxed);
        t.outcome_success.fetch_add(outcomes.success, Ordering::Relaxed);
        t.outcome_retry.fetch_add(outcomes.retry, Ordering::Relaxed);
        t.outcome_dead_letter.fetch_add(outcomes.dead_letter, Ordering::Relaxed);
        t.process_time.observe(millis_f64(rt));
        t.await_time.observe(millis_f64(waited));
    }

    /// Flow control held a pull back.
    pub(crate) fn add_flow_control_pause(&self) {
        self.flow_control_pauses.fetch_add(1, Ordering::Relaxed);
        self.topic.flow_control_pauses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_cache(&self, count: usize, bytes: u64) {
        self.cached_count.store(count as u64, Ordering::Relaxed);
        self.cached_bytes.store(bytes, Ordering::Relaxed);
        self.cached_count_high_water.fetch_max(count as u64, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> QueueStatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let next = self.next_offset.load(Ordering::Relaxed);
        let max = self.max_offset.load(Ordering::Relaxed);
        QueueStatsSnapshot {
            pulls: get(&self.pulls),
            pull_errors: get(&self.pull_errors),
            pull_rt_total: Duration::from_micros(get(&self.pull_rt_micros)),
            pulled_messages: get(&self.pulled_messages),
            consumed_ok: get(&self.consumed_ok),
            consumed_failed: get(&self.consumed_failed),
            consume_rt_total: Duration::from_micros(get(&self.consume_rt_micros)),
            flow_control_pauses: get(&self.flow_control_pauses),
            cached_count: get(&self.cached_count),
            cached_bytes: get(&self.cached_bytes),
            cached_count_high_water: get(&self.cached_count_high_water),
            next_offset: QueueOffset(next),
            committed_offset: QueueOffset(self.committed_offset.load(Ordering::Relaxed)),
            max_offset: QueueOffset(max),
            lag: (max - next).max(0),
            pop_acks: get(&self.pop_acks),
            pop_settle_failures: get(&self.pop_settle_failures),
            pop_retries: get(&self.pop_retries),
            pop_expired: get(&self.pop_expired),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A copy of one queue's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatsSnapshot {
    pub pulls: u64,
    pub pull_errors: u64,
    pub pull_rt_total: Duration,
    pub pulled_messages: u64,
    pub consumed_ok: u64,
    pub consumed_failed: u64,
    pub consume_rt_total: Duration,
    pub flow_control_pauses: u64,
    pub cached_count: u64,
    pub cached_bytes: u64,
    pub cached_count_high_water: u64,
    pub next_offset: QueueOffset,
    pub committed_offset: QueueOffset,
    pub max_offset: QueueOffset,
    /// Messages in the queue past the next pull offset (max − next).
    pub lag: i64,
    pub pop_acks: u64,
    pub pop_settle_failures: u64,
    pub pop_retries: u64,
    pub pop_expired: u64,
}

/// Every owned queue's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    pub queues: BTreeMap<MessageQueue, QueueStatsSnapshot>,
}

impl ConsumerStats {
    /// Sum of messages consumed successfully over all owned queues.
    pub fn consumed_ok(&self) -> u64 {
        self.queues.values().map(|q| q.consumed_ok).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// What recording costs the consume path, beside a bare relaxed atomic add in the same run
    /// (printed, not asserted: a measurement; debug builds inflate both).
    #[test]
    fn recording_a_pull_and_a_call_cost() {
        let q = QueueStats::new(Arc::default());
        let n: u32 = 200_000;
        let outcomes = OutcomeCounts { success: 1, retry: 0, dead_letter: 0 };
        let started = Instant::now();
        for _ in 0..n {
            q.add_pull(Duration::from_micros(300), 1);
            q.add_consume(Duration::from_micros(5), Duration::from_micros(40), outcomes);
        }
        let recording = started.elapsed() / n;
        let bare = AtomicU64::new(0);
        let started = Instant::now();
        for _ in 0..n {
            bare.fetch_add(std::hint::black_box(1), Ordering::Relaxed);
        }
        let atomic = started.elapsed() / n;
        println!(
            "hot path: a pull + a listener call record in {recording:?} (one relaxed atomic add: \
             {atomic:?}, ratio {:.1})",
            recording.as_secs_f64() / atomic.as_secs_f64().max(1e-12)
        );
        let s = q.topic.snapshot();
        assert_eq!((s.pulls, s.consume_calls, s.outcomes.success), (n.into(), n.into(), n.into()));
    }
}
