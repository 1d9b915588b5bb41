//! The buffer of one owned queue: pulled messages waiting for, or in, consumption (Java
//! `ProcessQueue`, reference 4.4).
//!
//! It decides the one number that must never be wrong: the offset that may be committed. A
//! concurrent consumer finishes messages out of order, so the committable offset is the smallest
//! offset still buffered; committing anything later would lose the unfinished message on a
//! restart or rebalance. An orderly consumer commits whole batches it took from the head.
//!
//! One queue task owns its `ProcessQueue` outright (no locks inside, unlike Java's, which three
//! threads share), so every method is a plain `&mut self` call. Nothing here reads a clock: the
//! consume-timeout sweep gets `now` from its caller, which keeps the type deterministic under test
//! and `tokio::time::pause`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::message::MessageExt;
use crate::protocol::types::QueueOffset;

/// Orderly: a lock not renewed for this long is treated as lost on the client side, well before
/// the broker's own 60 s expiry (`rocketmq.client.rebalance.lockMaxLiveTime`).
pub const LOCK_MAX_LIVE_TIME: Duration = Duration::from_secs(30);

/// Java looks at no more than this many head messages per consume-timeout sweep.
pub const EXPIRED_SCAN_LIMIT: usize = 16;

/// When the listener call for a chunk of buffered messages started: stamped by the consume job
/// once it holds a consume permit, read by the queue task's consume-timeout sweep. Java sets
/// `CONSUME_START_TIME` as it invokes the listener: time spent waiting for a permit behind busy
/// listeners is not consuming, and counting it would expire (and redeliver) a healthy backlog.
#[derive(Debug, Default)]
pub struct ConsumeStart(std::sync::OnceLock<Instant>);

impl ConsumeStart {
    /// Records the start; later calls keep the first.
    pub fn stamp(&self, now: Instant) {
        let _ = self.0.set(now);
    }

    /// The start, once stamped.
    pub fn get(&self) -> Option<Instant> {
        self.0.get().copied()
    }
}

/// A buffered message and the start of its current listener call. The start lives beside the
/// message rather than in its properties (Java writes `CONSUME_START_TIME` into the message) so
/// the buffer's copy stays exactly what the broker sent.
#[derive(Debug, Clone)]
struct Cached {
    msg: MessageExt,
    consume_started: Option<Arc<ConsumeStart>>,
}

impl Cached {
    fn body_len(&self) -> u64 {
        self.msg.body.len() as u64
    }
}

/// The per-queue message buffer. See the module documentation.
#[derive(Debug, Default)]
pub struct ProcessQueue {
    /// Pulled, not yet consumed (concurrent: also in flight) messages.
    msgs: BTreeMap<QueueOffset, Cached>,
    /// Orderly: messages taken by the running consume call, until commit or rollback.
    consuming: BTreeMap<QueueOffset, Cached>,
    /// Sum of body lengths over both trees.
    size_bytes: u64,
    /// The highest offset ever put; the commit offset once everything is consumed is one past it.
    queue_offset_max: Option<QueueOffset>,
    /// Orderly: a consume call is scheduled or running for this queue (Java `consuming`).
    dispatched: bool,
}

impl ProcessQueue {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    // --- buffering ------------------------------------------------------------------------------

    /// Buffers a pulled batch (Java `putMessage`). Offsets already buffered are skipped, so a
    /// repeated pull cannot count a message twice.
    ///
    /// Returns whether an orderly consume call should be scheduled now: true when there is
    /// something to consume and no call is scheduled or running yet. The flag stays set until
    /// [`take`](Self::take) finds the buffer empty. Concurrent consumers ignore the result; they
    /// dispatch every pulled batch.
    pub fn put(&mut self, messages: &[MessageExt]) -> bool {
        for msg in messages {
            let offset = msg.queue_offset;
            if self.msgs.contains_key(&offset) || self.consuming.contains_key(&offset) {
                continue;
            }
            let cached = Cached { msg: msg.clone(), consume_started: None };
            self.size_bytes += cached.body_len();
            self.msgs.insert(offset, cached);
            self.queue_offset_max =
                Some(self.queue_offset_max.map_or(offset, |max| max.max(offset)));
        }
        let dispatch = !self.msgs.is_empty() && !self.dispatched;
        if dispatch {
            self.dispatched = true;
        }
        dispatch
    }

    /// Concurrent: these buffered messages go to a listener call (again) whose start `start`
    /// records once it begins; the consume-timeout sweep measures from there.
    pub fn mark_consume_started(&mut self, offsets: &[QueueOffset], start: &Arc<ConsumeStart>) {
        for offset in offsets {
            if let Some(cached) = self.msgs.get_mut(offset) {
                cached.consume_started = Some(Arc::clone(start));
            }
        }
    }

    /// Concurrent: drops consumed (or settled) messages and returns the offset that may now be
    /// committed (Java `removeMessage`):
    ///
    /// - `None` if the buffer was already empty: nothing is known, commit nothing;
    /// - otherwise the smallest offset still buffered — a message that has not finished keeps
    ///   the commit point at itself, however many later ones are done;
    /// - or, with the buffer now empty, one past the highest offset ever buffered.
    ///
    /// Offsets not in the buffer are ignored. The caller updates the offset store
    /// increase-only.
    pub fn remove(&mut self, offsets: &[QueueOffset]) -> Option<QueueOffset> {
        let highest = self.msgs.keys().next_back().copied()?;
        for offset in offsets {
            if let Some(cached) = self.msgs.remove(offset) {
                self.size_bytes -= cached.body_len();
            }
        }
        match self.msgs.keys().next() {
            Some(first) => Some(*first),
            None => Some(self.queue_offset_max.unwrap_or(highest).max(highest).next()),
        }
    }

    /// Concurrent consume timeout (Java `cleanExpiredMsg`): the leading messages whose listener
    /// call started more than `consume_timeout` before `now`, at most [`EXPIRED_SCAN_LIMIT`].
    ///
    /// Only the head matters, because only the head pins the commit offset; the scan stops at
    /// the first message that is not expired (or not started). The caller sends each one back
    /// with [`DelayLevel::CONSUME_TIMEOUT`] and, if that worked, [`remove`](Self::remove)s it.
    /// Java retries a failed send-back of the same head up to 16 times in one sweep; stopping
    /// at the first failure instead is equivalent, as the next sweep tries again.
    ///
    /// [`DelayLevel::CONSUME_TIMEOUT`]: super::policy::DelayLevel::CONSUME_TIMEOUT
    pub fn expired_heads(&self, now: Instant, consume_timeout: Duration) -> Vec<MessageExt> {
        self.msgs
            .values()
            .take(EXPIRED_SCAN_LIMIT)
            .take_while(|cached| {
                cached
                    .consume_started
                    .as_ref()
                    .and_then(|start| start.get())
                    .is_some_and(|started| now.saturating_duration_since(started) > consume_timeout)
            })
            .map(|cached| cached.msg.clone())
            .collect()
    }

    // --- orderly --------------------------------------------------------------------------------

    /// Orderly: moves up to `n` messages from the head of the buffer into the consuming set and
    /// returns them, in offset order (Java `takeMessages`). An empty result ends the dispatch,
    /// so the next [`put`](Self::put) schedules a new consume call.
    pub fn take(&mut self, n: usize) -> Vec<MessageExt> {
        let mut taken = Vec::with_capacity(n.min(self.msgs.len()));
        while taken.len() < n {
            let Some((offset, cached)) = self.msgs.pop_first() else { break };
            taken.push(cached.msg.clone());
            self.consuming.insert(offset, cached);
        }
        if taken.is_empty() {
            self.dispatched = false;
        }
        taken
    }

    /// Orderly: the consuming set is done; forget it and return the offset to commit, one past
    /// its last message, or `None` if nothing was being consumed (Java `commit`). The caller
    /// stores it with increase-only off: orderly offsets are exact, not a lower bound.
    pub fn commit(&mut self) -> Option<QueueOffset> {
        let last = self.consuming.keys().next_back().copied()?;
        let released: u64 = self.consuming.values().map(Cached::body_len).sum();
        self.size_bytes -= released;
        self.consuming.clear();
        Some(last.next())
    }

    /// Orderly: puts these messages back for another attempt — the caller has already increased
    /// their reconsume times, and those copies replace the buffered ones (Java
    /// `makeMessageToConsumeAgain`).
    pub fn make_to_consume_again(&mut self, messages: Vec<MessageExt>) {
        for msg in messages {
            let offset = msg.queue_offset;
            let cached = Cached { msg, consume_started: None };
            let added = cached.body_len();
            let replaced = self.consuming.remove(&offset).or_else(|| self.msgs.remove(&offset));
            if let Some(old) = replaced {
                self.size_bytes -= old.body_len();
            }
            self.size_bytes += added;
            self.msgs.insert(offset, cached);
        }
    }

    // --- figures --------------------------------------------------------------------------------

    /// Buffered messages, the consuming set included (what flow control counts).
    pub fn cached_count(&self) -> usize {
        self.msgs.len() + self.consuming.len()
    }

    /// Buffered body bytes, the consuming set included.
    pub fn cached_size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Last minus first buffered offset (the consuming set excluded), 0 when empty.
    pub fn max_span(&self) -> u64 {
        match (self.msgs.keys().next(), self.msgs.keys().next_back()) {
            (Some(first), Some(last)) => (last.0 - first.0).unsigned_abs(),
            _ => 0,
        }
    }

    /// Whether no message is buffered or being consumed.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty() && self.consuming.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn msg(offset: i64, body_len: usize) -> MessageExt {
        MessageExt {
            queue_offset: QueueOffset(offset),
            body: Bytes::from(vec![b'x'; body_len]),
            ..MessageExt::default()
        }
    }

    fn msgs(offsets: impl IntoIterator<Item = i64>) -> Vec<MessageExt> {
        offsets.into_iter().map(|o| msg(o, 10)).collect()
    }

    fn offs(offsets: &[i64]) -> Vec<QueueOffset> {
        offsets.iter().copied().map(QueueOffset).collect()
    }

    fn keys(list: &[MessageExt]) -> Vec<i64> {
        list.iter().map(|m| m.queue_offset.0).collect()
    }

    #[test]
    fn put_counts_new_messages_only() {
        let mut pq = ProcessQueue::new();
        assert!(pq.put(&[msg(10, 100), msg(11, 50)]));
        assert_eq!((pq.cached_count(), pq.cached_size_bytes()), (2, 150));
        // A repeated pull does not double-count, and does not dispatch again.
        assert!(!pq.put(&[msg(11, 50), msg(12, 1)]));
        assert_eq!((pq.cached_count(), pq.cached_size_bytes()), (3, 151));
        assert_eq!(pq.max_span(), 2);
        // An empty batch on an empty buffer dispatches nothing.
        assert!(!ProcessQueue::new().put(&[]));
    }

    #[test]
    fn remove_follows_java_remove_message() {
        // (buffered offsets, removed offsets, commit offset, left buffered)
        type Row = (&'static [i64], &'static [i64], Option<i64>, &'static [i64]);
        let table: &[Row] = &[
            // Empty buffer: nothing to say.
            (&[], &[5], None, &[]),
            (&[], &[], None, &[]),
            // Everything done: one past the highest offset ever buffered.
            (&[3, 4, 5], &[3, 4, 5], Some(6), &[]),
            // Head done: the next unfinished message.
            (&[3, 4, 5], &[3], Some(4), &[4, 5]),
            // Out of order: later ones done, the head still pins the offset.
            (&[3, 4, 5], &[4, 5], Some(3), &[3]),
            (&[3, 4, 5], &[5], Some(3), &[3, 4]),
            // Unknown offsets are ignored.
            (&[3, 4], &[9], Some(3), &[3, 4]),
            (&[3, 7], &[3], Some(7), &[7]),
            // Non-empty buffer, nothing removed: still the head.
            (&[8], &[], Some(8), &[8]),
        ];
        for &(buffered, removed, expected, left) in table {
            let mut pq = ProcessQueue::new();
            pq.put(&msgs(buffered.iter().copied()));
            let got = pq.remove(&offs(removed));
            assert_eq!(got, expected.map(QueueOffset), "{buffered:?} − {removed:?}");
            assert_eq!(pq.cached_count(), left.len());
            assert_eq!(pq.cached_size_bytes(), 10 * left.len() as u64);
        }
    }

    #[test]
    fn commit_offset_never_passes_an_unconsumed_message() {
        let mut pq = ProcessQueue::new();
        pq.put(&msgs(0..10));
        // Completion order 9, 1, 2, 0, 5, 3, 4, 8, 6, 7: the offset moves only when the smallest
        // unfinished message finishes.
        let steps =
            [(9, 0), (1, 0), (2, 0), (0, 3), (5, 3), (3, 4), (4, 6), (8, 6), (6, 7), (7, 10)];
        for (done, commit) in steps {
            assert_eq!(pq.remove(&[QueueOffset(done)]), Some(QueueOffset(commit)), "after {done}");
        }
        // Empty again: nothing more to commit until the next pull.
        assert_eq!(pq.remove(&[QueueOffset(7)]), None);
        pq.put(&msgs([10]));
        assert_eq!(pq.remove(&[QueueOffset(10)]), Some(QueueOffset(11)));
    }

    #[test]
    fn orderly_take_and_commit() {
        let mut pq = ProcessQueue::new();
        assert!(pq.put(&msgs(0..5)));
        assert_eq!(keys(&pq.take(2)), [0, 1]);
        // Taken messages still count for flow control, but not for the span.
        assert_eq!((pq.cached_count(), pq.max_span()), (5, 2));
        assert_eq!(pq.commit(), Some(QueueOffset(2)));
        assert_eq!((pq.cached_count(), pq.cached_size_bytes()), (3, 30));
        assert_eq!(pq.commit(), None, "nothing taken since");

        assert_eq!(keys(&pq.take(10)), [2, 3, 4]);
        assert_eq!(pq.commit(), Some(QueueOffset(5)));
        assert!(pq.is_empty());
        assert_eq!(pq.cached_size_bytes(), 0);
    }

    #[test]
    fn orderly_dispatch_flag() {
        let mut pq = ProcessQueue::new();
        assert!(pq.put(&msgs([0])), "first batch schedules a consume call");
        assert!(!pq.put(&msgs([1])), "one call at a time");
        assert_eq!(keys(&pq.take(5)), [0, 1]);
        assert!(!pq.put(&msgs([2])), "the running call has not seen an empty buffer yet");
        assert_eq!(keys(&pq.take(5)), [2]);
        assert!(pq.take(5).is_empty(), "empty take ends the dispatch");
        assert!(pq.put(&msgs([3])), "so the next batch schedules a new call");
    }

    #[test]
    fn make_to_consume_again_replaces_taken_copies() {
        let mut pq = ProcessQueue::new();
        pq.put(&msgs(0..3));
        let mut taken = pq.take(2);
        for m in &mut taken {
            m.reconsume_times += 1;
        }
        let again: Vec<MessageExt> =
            taken.iter().filter(|m| m.queue_offset.0 == 1).cloned().collect();
        pq.make_to_consume_again(again);
        // Offset 0 stays taken; 1 is back at the head, with its new reconsume count.
        assert_eq!((pq.cached_count(), pq.cached_size_bytes()), (3, 30));
        assert_eq!(pq.commit(), Some(QueueOffset(1)));
        let next = pq.take(1);
        assert_eq!((next[0].queue_offset, next[0].reconsume_times), (QueueOffset(1), 1));
        // A different body size is accounted for.
        pq.make_to_consume_again(vec![msg(1, 25)]);
        assert_eq!(pq.cached_size_bytes(), 35);
    }

    #[test]
    fn expired_heads_only_at_the_front() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(15 * 60);
        let later = t0 + timeout + Duration::from_millis(1);
        let mut pq = ProcessQueue::new();
        pq.put(&msgs(0..5));
        assert!(pq.expired_heads(later, timeout).is_empty(), "nothing started yet");

        pq.mark_consume_started(&offs(&[0, 1, 3, 4]), &started_at(t0));
        let waiting = Arc::new(ConsumeStart::default());
        pq.mark_consume_started(&offs(&[2]), &waiting);
        // 0 and 1 are stuck; 2's call still waits for a permit (not consuming, whatever the
        // time) and stops the scan, so 3 and 4 wait their turn.
        assert_eq!(keys(&pq.expired_heads(later, timeout)), [0, 1]);
        // Once 2's call starts, the clock runs from there.
        waiting.stamp(t0 + Duration::from_secs(60));
        waiting.stamp(t0); // the first stamp stays
        assert_eq!(keys(&pq.expired_heads(later, timeout)), [0, 1]);
        assert_eq!(
            keys(&pq.expired_heads(later + Duration::from_secs(60), timeout)),
            [0, 1, 2, 3, 4]
        );
        // Exactly at the timeout: not yet (Java compares with >).
        assert!(pq.expired_heads(t0 + timeout, timeout).is_empty());

        // Restarting the call resets the clock.
        pq.mark_consume_started(&offs(&[0]), &started_at(t0 + timeout));
        assert!(pq.expired_heads(later, timeout).is_empty());
    }

    fn started_at(t: Instant) -> Arc<ConsumeStart> {
        let start = Arc::new(ConsumeStart::default());
        start.stamp(t);
        start
    }

    #[test]
    fn expired_heads_scan_at_most_sixteen() {
        let t0 = Instant::now();
        let mut pq = ProcessQueue::new();
        pq.put(&msgs(0..40));
        pq.mark_consume_started(&offs(&(0..40).collect::<Vec<_>>()), &started_at(t0));
        let stuck = pq.expired_heads(t0 + Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(keys(&stuck), (0..16).collect::<Vec<_>>());
        let stuck_offsets: Vec<QueueOffset> = stuck.iter().map(|m| m.queue_offset).collect();
        let commit = pq.remove(&stuck_offsets);
        assert_eq!(commit, Some(QueueOffset(16)));
    }

    #[test]
    fn flow_figures_and_flow_control_together() {
        use super::super::config::ConsumerConfig;
        use super::super::policy::{FlowControlReason, FlowLimits, flow_control_check};
        let limits = FlowLimits::new(&ConsumerConfig::new("G"), 1);
        let mut pq = ProcessQueue::new();
        pq.put(&msgs(0..1000));
        let check = |pq: &ProcessQueue| {
            flow_control_check(pq.cached_count(), pq.cached_size_bytes(), pq.max_span(), &limits)
        };
        assert_eq!(check(&pq), None);
        pq.put(&msgs([1000]));
        assert_eq!(check(&pq), Some(FlowControlReason::CachedCount { count: 1001, limit: 1000 }));
        pq.remove(&offs(&(1..1000).collect::<Vec<_>>()));
        pq.put(&msgs([2001]));
        // 0, 1000 and 2001 are left: the span trips.
        assert_eq!(check(&pq), Some(FlowControlReason::Span { span: 2001, limit: 2000 }));
    }
}
