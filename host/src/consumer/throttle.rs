//! A log throttle: the first event logs at once, repeats within the period are counted and
//! reported with the next one that logs.
//!
//! Why: a queue whose pulls keep failing (NO_PERMISSION, SUBSCRIPTION_NOT_EXIST, a broker that
//! is down) fails every second; logged at debug it is invisible, logged every time it floods.
//! An operator needs it at WARN, once per period per queue, with how many were suppressed.

use std::time::Duration;

use tokio::time::Instant;

/// Per-source state of a throttled log line.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Whether an event at `now` should be logged, at most once per `period`; when it should,
    /// also how many were suppressed since the last one that was.
    pub fn admit(&mut self, now: Instant, period: Duration) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// The condition cleared (e.g. a pull succeeded): the next event logs at once.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_once_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = Throttle::default();
        // (seconds after t0, expected)
        let table = [
            (0, Some(0)),
            (1, None),
            (29, None),
            (30, Some(2)),
            (31, None),
            (59, None),
            (60, Some(2)),
            (200, Some(0)),
        ];
        for (at, expected) in table {
            assert_eq!(t.admit(t0 + s(at), s(30)), expected, "at {at} s");
        }
        t.reset();
        assert_eq!(t.admit(t0 + s(201), s(30)), Some(0), "a reset admits at once");
    }
}
