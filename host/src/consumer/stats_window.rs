//! The per-minute and per-hour windows of the running-info answer (`mqadmin consumerStatus`,
//! the RocketMQ Dashboard), as Java's `ConsumerStatsManager` keeps them.
//!
//! Java's `StatsItemSet` samples each cumulative `(value, times)` pair every 10 s and keeps the
//! last 7 samples (one minute), and every 10 min keeping 7 (one hour); a figure is the
//! difference between the first and last sample of its window: a rate is `Δvalue / Δt`, a
//! response time `Δvalue / Δtimes`. So `pullTPS` is the last minute's rate, not an average since
//! start, and falls to 0 a minute after traffic stops. Java's figures per topic:
//!
//! | field | window | value / times |
//! |---|---|---|
//! | `pullRT` | minute | pull round trips (ms) / pulls |
//! | `pullTPS` | minute | pulled messages / s |
//! | `consumeRT` | minute, the hour's when the minute saw no call | call time (ms) / calls |
//! | `consumeOKTPS`, `consumeFailedTPS` | minute | messages / s |
//! | `consumeFailedMsgs` | hour | failed messages (a sum) |
//!
//! One difference from Java: a window ends at the request (the counters read then), not at its
//! last sample, so a figure is at most 10 s newer than Java's and not 0 during the first 10 s;
//! it still covers the last 60–70 s (10–11 min for the hour), never the time since start.
//!
//! The windows are plain data and functions here; the consumer's request task owns them and
//! samples its topics' life-long counters ([`TopicStatsSnapshot`]) on Java's schedule.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::stats::TopicStatsSnapshot;
use crate::protocol::body::ConsumeStatus;

/// Java samples the minute window every 10 s …
pub(crate) const MINUTE_SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// … and the hour window every 10 min (every 60th minute sample).
pub(crate) const HOUR_SAMPLE_EVERY_TICKS: u32 = 60;
/// Samples kept per window: 7 samples 10 s (10 min) apart span one minute (one hour).
pub(crate) const SAMPLES_KEPT: usize = 7;

/// One sample of a topic's counters, at a time in ms (any origin: only differences count).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub at_ms: i64,
    pub counters: TopicStatsSnapshot,
}

/// Appends `point`, keeping the last [`SAMPLES_KEPT`] (Java: `if (size > 7) removeFirst()`).
pub(crate) fn push(window: &mut VecDeque<Point>, point: Point) {
    window.push_back(point);
    while window.len() > SAMPLES_KEPT {
        window.pop_front();
    }
}

/// What one counter did over a window (Java `StatsSnapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Delta {
    /// Δvalue.
    pub sum: f64,
    /// Δvalue per second (0 over an empty span, where Java would divide by zero).
    pub tps: f64,
    /// Δvalue / Δtimes (0 when nothing happened).
    pub avgpt: f64,
}

/// The difference of one `(value, times)` pair read from the window's oldest sample to `now`
/// (nothing sampled yet: no difference).
pub(crate) fn delta(
    window: &VecDeque<Point>,
    now: &Point,
    read: impl Fn(&TopicStatsSnapshot) -> (f64, u64),
) -> Delta {
    let (first, last) = (window.front().unwrap_or(now), now);
    let (v0, t0) = read(&first.counters);
    let (v1, t1) = read(&last.counters);
    let sum = v1 - v0;
    let span_ms = last.at_ms - first.at_ms;
    let tps = if span_ms > 0 { sum * 1_000.0 / span_ms as f64 } else { 0.0 };
    let times = t1.saturating_sub(t0);
    let avgpt = if times > 0 { sum / times as f64 } else { 0.0 };
    Delta { sum, tps, avgpt }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// One topic's `ConsumeStatus` from its minute and hour windows and its counters `now` (the
/// table in the module docs).
pub(crate) fn consume_status(
    minute: &VecDeque<Point>,
    hour: &VecDeque<Point>,
    now: &Point,
) -> ConsumeStatus {
    let pull_rt = delta(minute, now, |c| (ms(c.pull_rt_total), c.pulls));
    let pulled = delta(minute, now, |c| (c.pulled_messages as f64, c.pulls));
    let consume_rt =
        |w| delta(w, now, |c: &TopicStatsSnapshot| (ms(c.consume_rt_total), c.consume_calls));
    let mut rt = consume_rt(minute);
    if rt.sum == 0.0 {
        rt = consume_rt(hour);
    }
    let ok = delta(minute, now, |c| (c.outcomes.success as f64, c.consume_calls));
    let failed = delta(minute, now, |c| (c.outcomes.failed() as f64, c.consume_calls));
    let failed_hour = delta(hour, now, |c| (c.outcomes.failed() as f64, c.consume_calls));
    ConsumeStatus {
        pull_rt: pull_rt.avgpt,
        pull_tps: pulled.tps,
        consume_rt: rt.avgpt,
        consume_ok_tps: ok.tps,
        consume_failed_tps: failed.tps,
        consume_failed_msgs: failed_hour.sum as i64,
    }
}

/// Every topic's windows, owned by the consumer's request task.
#[derive(Debug, Default)]
pub(crate) struct StatsWindows {
    minute: BTreeMap<String, VecDeque<Point>>,
    hour: BTreeMap<String, VecDeque<Point>>,
    ticks: u32,
}

impl StatsWindows {
    /// One minute-window sample of every topic (call every [`MINUTE_SAMPLE_EVERY`], the first
    /// at start); every [`HOUR_SAMPLE_EVERY_TICKS`]th call, the first included, samples the
    /// hour window too.
    pub fn sample<'a>(
        &mut self,
        at_ms: i64,
        topics: impl Iterator<Item = (&'a str, TopicStatsSnapshot)>,
    ) {
        let hourly = self.ticks.is_multiple_of(HOUR_SAMPLE_EVERY_TICKS);
        self.ticks = self.ticks.wrapping_add(1);
        for (topic, counters) in topics {
            let point = Point { at_ms, counters };
            push(self.minute.entry(topic.to_owned()).or_default(), point);
            if hourly {
                push(self.hour.entry(topic.to_owned()).or_default(), point);
            }
        }
    }

    /// The status of every topic, its windows ending at its counters `now` (at `at_ms`).
    pub fn status<'a>(
        &self,
        at_ms: i64,
        now: impl Iterator<Item = (&'a str, TopicStatsSnapshot)>,
    ) -> BTreeMap<String, ConsumeStatus> {
        let empty = VecDeque::new();
        now.map(|(topic, counters)| {
            let now = Point { at_ms, counters };
            let minute = self.minute.get(topic).unwrap_or(&empty);
            let hour = self.hour.get(topic).unwrap_or(&empty);
            (topic.to_owned(), consume_status(minute, hour, &now))
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::stats::OutcomeCounts;

    /// Counters after `pulls` pulls of `pulled` messages taking `pull_ms` in all, `calls` calls
    /// taking `call_ms`, with `ok`/`failed` messages.
    fn c(
        pulls: u64,
        pulled: u64,
        pull_ms: u64,
        calls: u64,
        call_ms: u64,
        ok: u64,
        failed: u64,
    ) -> TopicStatsSnapshot {
        TopicStatsSnapshot {
            pulls,
            pull_rt_total: Duration::from_millis(pull_ms),
            pulled_messages: pulled,
            consume_calls: calls,
            consume_rt_total: Duration::from_millis(call_ms),
            outcomes: OutcomeCounts { success: ok, retry: failed, dead_letter: 0 },
            flow_control_pauses: 0,
        }
    }

    /// `(at_ms, counters)`.
    type Sample = (i64, TopicStatsSnapshot);
    /// Samples, oldest first.
    type Samples = Vec<Sample>;

    fn window(points: &[(i64, TopicStatsSnapshot)]) -> VecDeque<Point> {
        let mut w = VecDeque::new();
        for &(at_ms, counters) in points {
            push(&mut w, Point { at_ms, counters });
        }
        w
    }

    #[test]
    fn a_window_keeps_seven_samples_and_measures_first_to_last() {
        // 10 samples 10 s apart, 100 messages per 10 s: only the last 7 (60 s) are kept.
        let points: Vec<_> =
            (0..10).map(|i| (i * 10_000, c(i as u64, 100 * i as u64, 0, 0, 0, 0, 0))).collect();
        let w = window(&points);
        assert_eq!(w.len(), 7);
        assert_eq!(w.front().unwrap().at_ms, 30_000);
        let d = delta(&w, w.back().unwrap(), |c| (c.pulled_messages as f64, c.pulls));
        assert_eq!(d, Delta { sum: 600.0, tps: 10.0, avgpt: 100.0 });
    }

    #[test]
    fn consume_status_table() {
        let zero = c(0, 0, 0, 0, 0, 0, 0);
        let busy = c(60, 600, 120, 300, 1_500, 570, 30);
        let steady = ConsumeStatus {
            pull_rt: 2.0,
            pull_tps: 10.0,
            consume_rt: 5.0,
            consume_ok_tps: 9.5,
            consume_failed_tps: 0.5,
            consume_failed_msgs: 0,
        };
        // (name, minute samples, hour samples, counters at the request, expected)
        let table: Vec<(&str, Samples, Samples, Sample, ConsumeStatus)> = vec![
            ("nothing sampled yet", vec![], vec![], (0, busy), ConsumeStatus::default()),
            (
                "steady minute",
                vec![(0, zero), (30_000, c(30, 300, 60, 150, 750, 285, 15))],
                vec![(60_000, busy)],
                (60_000, busy),
                steady,
            ),
            (
                // Java would answer 0 until its second sample, 10 s after start.
                "the window ends at the request, not at the last sample",
                vec![(0, zero)],
                vec![(0, zero)],
                (10_000, c(10, 100, 20, 50, 250, 95, 5)),
                ConsumeStatus { consume_failed_msgs: 5, ..steady },
            ),
            (
                // The minute is quiet: rates are 0 (not the average since start), consumeRT
                // falls back to the hour's, and the hour still counts its failures.
                "quiet minute after a busy hour",
                vec![(600_000, busy), (660_000, busy)],
                vec![(0, zero), (600_000, busy)],
                (665_000, busy),
                ConsumeStatus { consume_rt: 5.0, consume_failed_msgs: 30, ..Default::default() },
            ),
        ];
        for (name, minute, hour, (at_ms, counters), expected) in table {
            let now = Point { at_ms, counters };
            assert_eq!(consume_status(&window(&minute), &window(&hour), &now), expected, "{name}");
        }
    }

    #[test]
    fn the_hour_window_is_sampled_every_sixtieth_tick() {
        let mut w = StatsWindows::default();
        for tick in 0..=HOUR_SAMPLE_EVERY_TICKS {
            let n = u64::from(tick);
            w.sample(i64::from(tick) * 10_000, [("T", c(n, n, 0, n, 0, 0, n))].into_iter());
        }
        // Hour samples at tick 0 and tick 60 (600 s apart): 60 failures.
        assert_eq!(w.hour["T"].len(), 2);
        assert_eq!(w.minute["T"].len(), SAMPLES_KEPT);
        let now = c(60, 60, 0, 60, 0, 0, 60);
        let status = w.status(600_000, [("T", now)].into_iter());
        assert_eq!(status["T"].consume_failed_msgs, 60);
        assert_eq!(status["T"].consume_failed_tps, 0.1);
    }
}
