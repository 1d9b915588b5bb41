//! Counters a metrics layer can read: per queue, lock-free, written by the queue's own task.
//!
//! Rates (TPS) are left to the reader: it samples the monotonic counters twice and divides, which
//! keeps the hot path to a few relaxed atomic adds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::protocol::{MessageQueue, QueueOffset};

/// Live counters of one queue.
#[derive(Debug, Default)]
pub struct QueueStats {
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
    pub(crate) fn add_pull(&self, rt: Duration, messages: usize) {
        self.pulls.fetch_add(1, Ordering::Relaxed);
        self.pull_rt_micros.fetch_add(micros(rt), Ordering::Relaxed);
        self.pulled_messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.last_pull_ms.store(crate::protocol::EpochMillis::now().0, Ordering::Relaxed);
    }

    pub(crate) fn add_consume(&self, rt: Duration, ok: usize, failed: usize) {
        self.consumed_ok.fetch_add(ok as u64, Ordering::Relaxed);
        self.consumed_failed.fetch_add(failed as u64, Ordering::Relaxed);
        self.consume_rt_micros.fetch_add(micros(rt), Ordering::Relaxed);
        self.last_consume_ms.store(crate::protocol::EpochMillis::now().0, Ordering::Relaxed);
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
