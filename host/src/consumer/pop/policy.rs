//! POP's pure decisions, with Java's numbers (`DefaultMQPushConsumerImpl`,
//! `ConsumeMessagePopConcurrentlyService`; see `docs/pop.md`).

use std::time::Duration;

use crate::consumer::listener::MessageOutcome;
use crate::consumer::policy::should_send_to_dlq;
use crate::protocol::body::ConsumeFromWhere;

/// Java's `popDelayLevel`: the invisible time of the n-th failed attempt when the listener asks
/// for no delay level, in seconds (10 s, 30 s, 1 min, … 2 h).
pub const POP_RETRY_DELAYS_SECS: [u64; 16] =
    [10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200];

/// The broker's `messageDelayLevel` (levels 1..=18), the meaning a listener's delay level has in
/// pull mode — kept in POP mode so a listener's outcome means the same in both.
pub const BROKER_DELAY_LEVELS_SECS: [u64; 18] =
    [1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800, 3600, 7200];

/// How long a message that must be consumed again stays invisible: the listener's delay level
/// as the broker's table reads it (clamped to 1..=18), or, without one, Java POP's table by the
/// message's reconsume times (clamped to its last entry).
pub fn retry_invisible_time(delay_level: Option<i32>, reconsume_times: i32) -> Duration {
    let secs = match delay_level.filter(|l| *l > 0) {
        Some(level) => {
            let i = usize::try_from(level - 1).unwrap_or(0).min(BROKER_DELAY_LEVELS_SECS.len() - 1);
            BROKER_DELAY_LEVELS_SECS[i]
        }
        None => {
            let i =
                usize::try_from(reconsume_times).unwrap_or(0).min(POP_RETRY_DELAYS_SECS.len() - 1);
            POP_RETRY_DELAYS_SECS[i]
        }
    };
    Duration::from_secs(secs)
}

/// POP_MESSAGE's `initMode` (`ConsumeInitMode`): where a group with no offset on the broker
/// starts — the first offset only for CONSUME_FROM_FIRST_OFFSET, the last otherwise (Java
/// `RebalancePushImpl.getConsumeInitMode`).
pub fn init_mode(from: ConsumeFromWhere) -> i32 {
    const MIN: i32 = 0;
    const MAX: i32 = 1;
    if from == ConsumeFromWhere::FirstOffset { MIN } else { MAX }
}

/// How many messages the next pop may ask for: the batch size, within what the queue's
/// waiting-for-ack budget has left; `None` while the queue is at its threshold (count or bytes).
pub fn pop_budget(
    batch: u32,
    threshold: u32,
    waiting: usize,
    waiting_bytes: u64,
    max_bytes: u64,
) -> Option<i32> {
    let left = usize::try_from(threshold).unwrap_or(usize::MAX).saturating_sub(waiting);
    if left == 0 || waiting_bytes >= max_bytes {
        return None;
    }
    i32::try_from(left.min(batch as usize)).ok()
}

/// What an orderly POP job does with one consumed message; decided in queue-offset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderlyStep {
    /// Consumed: ack it.
    Ack,
    /// The listener gave up on it: its DLQ copy with the reason, then ack.
    DeadLetter { reason: String, properties: Vec<(String, String)> },
    /// It failed again with its retries used up (by the broker's count): the broker's DLQ
    /// (send-back with delay level -1), then ack.
    Exhausted,
}

/// The steps for the settled head of an orderly batch — `(outcome, reconsume times)` per
/// message in offset order — and the index of the first message to consume again, if any:
/// it and everything after it wait, so that nothing overtakes it. A failure with
/// `reconsume_times >= max` goes to the DLQ instead and the walk goes on.
pub fn orderly_plan(
    consumed: impl IntoIterator<Item = (MessageOutcome, i32)>,
    max_reconsume_times: i32,
) -> (Vec<OrderlyStep>, Option<usize>) {
    let mut steps = Vec::new();
    for (i, (outcome, reconsume_times)) in consumed.into_iter().enumerate() {
        steps.push(match outcome {
            MessageOutcome::Success => OrderlyStep::Ack,
            MessageOutcome::DeadLetter { reason, properties } => {
                OrderlyStep::DeadLetter { reason, properties }
            }
            MessageOutcome::RetryLater { .. }
                if should_send_to_dlq(reconsume_times, max_reconsume_times) =>
            {
                OrderlyStep::Exhausted
            }
            MessageOutcome::RetryLater { .. } => return (steps, Some(i)),
        });
    }
    (steps, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orderly_plans() {
        let ok = MessageOutcome::Success;
        let retry = MessageOutcome::RETRY;
        let dead = MessageOutcome::DeadLetter { reason: "bad".into(), properties: vec![] };
        let dlq = OrderlyStep::DeadLetter { reason: "bad".into(), properties: vec![] };
        use OrderlyStep::{Ack, Exhausted};
        let cases = [
            (vec![(ok.clone(), 0), (ok.clone(), 0)], vec![Ack, Ack], None),
            // The first retry stops the walk: the success after it waits with it.
            (vec![(ok.clone(), 0), (retry.clone(), 2), (ok.clone(), 0)], vec![Ack], Some(1)),
            (vec![(retry.clone(), 0), (ok.clone(), 0)], vec![], Some(0)),
            // Retries used up (3 of 3): dead-lettered, and the walk goes on.
            (vec![(retry.clone(), 3), (ok.clone(), 0)], vec![Exhausted, Ack], None),
            (vec![(retry.clone(), 9), (retry.clone(), 1)], vec![Exhausted], Some(1)),
            (vec![(dead.clone(), 0), (ok.clone(), 0)], vec![dlq.clone(), Ack], None),
            (vec![], vec![], None),
        ];
        for (consumed, steps, again) in cases {
            let label = format!("{consumed:?}");
            assert_eq!(orderly_plan(consumed, 3), (steps, again), "{label}");
        }
        // Java's orderly default: retry for ever.
        assert_eq!(orderly_plan([(retry, 1_000_000)], i32::MAX), (vec![], Some(0)));
    }

    #[test]
    fn retry_invisible_times() {
        let s = Duration::from_secs;
        let cases = [
            (None, 0, s(10)),
            (None, 1, s(30)),
            (None, 15, s(7200)),
            (None, 99, s(7200)),
            (None, -1, s(10)),
            (Some(0), 2, s(60)),
            (Some(1), 5, s(1)),
            (Some(3), 0, s(10)),
            (Some(18), 0, s(7200)),
            (Some(40), 0, s(7200)),
            (Some(-1), 0, s(10)),
        ];
        for (level, times, expected) in cases {
            assert_eq!(retry_invisible_time(level, times), expected, "{level:?} {times}");
        }
    }

    #[test]
    fn init_modes() {
        assert_eq!(init_mode(ConsumeFromWhere::FirstOffset), 0);
        assert_eq!(init_mode(ConsumeFromWhere::LastOffset), 1);
        assert_eq!(init_mode(ConsumeFromWhere::Timestamp), 1);
    }

    #[test]
    fn pop_budgets() {
        let mib = 1 << 20;
        let cases = [
            ((32, 96, 0, 0), Some(32)),
            ((32, 96, 80, 0), Some(16)),
            ((32, 96, 96, 0), None),
            ((32, 96, 200, 0), None),
            ((32, 96, 0, 100 * mib), None),
            ((1, 96, 0, 0), Some(1)),
        ];
        for ((batch, threshold, waiting, bytes), expected) in cases {
            assert_eq!(pop_budget(batch, threshold, waiting, bytes, 100 * mib), expected);
        }
    }
}
