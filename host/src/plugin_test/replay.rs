//! Replaying a fixture through a [`WasmListener`] — the production listener, limits and all —
//! in batches the way a consumer forms them (consecutive messages of one queue, at most
//! `batch` of them), and reporting per message what happened.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::expect::Observed;
use super::logs::{LogCapture, LogLine};
use super::sends::{RecordedSend, RecordingProducer};
use crate::consumer::listener::{
    ConsumeContext, ConsumeMode, ListenerError, MessageListener as _, MessageOutcome,
};
use crate::protocol::MessageQueue;
use crate::protocol::message::MessageExt;
use crate::wasm::{PROP_ABORT, WasmListener};

/// One batch call and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// Fixture indexes of the batch's messages.
    pub first: usize,
    pub len: usize,
    /// Fuel the call burnt (isolation re-runs included).
    pub fuel_used: u64,
    #[serde(with = "humantime_serde")]
    pub elapsed: Duration,
    pub logs: Vec<LogLine>,
    pub sends: Vec<RecordedSend>,
    /// One per message of the batch, in order.
    pub outcomes: Vec<Observed>,
}

/// What the replay needs besides the listener.
#[derive(Debug)]
pub struct Replay<'a> {
    pub listener: &'a WasmListener,
    pub group: Arc<str>,
    pub mode: ConsumeMode,
    pub batch: NonZeroUsize,
    pub logs: &'a LogCapture,
    pub sends: &'a RecordingProducer,
}

impl Replay<'_> {
    /// Runs every message of `messages` (with the broker each was read from), one batch call at
    /// a time, in order; `on_call` sees each call's report as it ends (progress).
    pub async fn run(
        &self,
        messages: &[(MessageExt, String)],
        mut on_call: impl FnMut(&CallReport),
    ) -> Vec<CallReport> {
        let mut reports = Vec::new();
        for (first, len) in batches(messages, self.batch) {
            let (msg, broker) = &messages[first];
            let ctx = ConsumeContext {
                group: Arc::clone(&self.group),
                queue: MessageQueue::new(&msg.topic, broker, msg.queue_id),
                mode: self.mode,
            };
            let batch: Vec<MessageExt> =
                messages[first..first + len].iter().map(|(m, _)| m.clone()).collect();
            self.logs.take();
            self.sends.take();
            let fuel_before = self.listener.stats().counters.fuel_used;
            let started = Instant::now();
            let result = self.listener.consume(&ctx, &batch).await;
            let elapsed = started.elapsed();
            let report = CallReport {
                first,
                len,
                fuel_used: self.listener.stats().counters.fuel_used.saturating_sub(fuel_before),
                elapsed,
                logs: self.logs.take(),
                sends: self.sends.take(),
                outcomes: observe(len, result),
            };
            on_call(&report);
            reports.push(report);
        }
        reports
    }
}

/// `(first, len)` of each batch: runs of consecutive messages of one queue (topic, broker,
/// queue id), at most `max` long — what a consumer hands one listener call.
pub fn batches(messages: &[(MessageExt, String)], max: NonZeroUsize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, (m, broker)) in messages.iter().enumerate() {
        let joins = out.last().is_some_and(|&(first, len)| {
            let (f, fb) = &messages[first];
            len < max.get() && f.topic == m.topic && fb == broker && f.queue_id == m.queue_id
        });
        match out.last_mut() {
            Some((_, len)) if joins => *len += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// A call's result as one observation per message.
pub fn observe(len: usize, result: Result<Vec<MessageOutcome>, ListenerError>) -> Vec<Observed> {
    match result {
        Ok(outcomes) => {
            let mut out: Vec<Observed> = outcomes.into_iter().take(len).map(observed).collect();
            out.resize(len, Observed::Retry { delay_level: None });
            out
        }
        Err(ListenerError::Aborted { kind, detail }) => {
            vec![Observed::Abort { abort: kind.as_str().to_owned(), detail }; len]
        }
        Err(ListenerError::Failed(message)) => vec![Observed::Error { message }; len],
    }
}

fn observed(o: MessageOutcome) -> Observed {
    match o {
        MessageOutcome::Success => Observed::Success,
        MessageOutcome::RetryLater { delay_level } => Observed::Retry { delay_level },
        MessageOutcome::DeadLetter { reason, properties } => {
            let abort = properties.into_iter().find(|(k, _)| k == PROP_ABORT).map(|(_, v)| v);
            Observed::DeadLetter { reason, abort }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::listener::AbortKind;
    use crate::protocol::QueueId;

    fn msg(topic: &str, queue: i32) -> MessageExt {
        MessageExt { topic: topic.into(), queue_id: QueueId(queue), ..MessageExt::default() }
    }

    #[test]
    fn batches_are_runs_of_one_queue_up_to_the_size() {
        let m = |t, q, b: &str| (msg(t, q), b.to_owned());
        let fixture = [
            m("T", 0, "a"),
            m("T", 0, "a"),
            m("T", 0, "a"),
            m("T", 1, "a"),
            m("T", 1, "b"),
            m("U", 1, "b"),
            m("U", 1, "b"),
        ];
        let n = |n| NonZeroUsize::new(n).unwrap();
        assert_eq!(batches(&fixture, n(2)), [(0, 2), (2, 1), (3, 1), (4, 1), (5, 2)]);
        assert_eq!(batches(&fixture, n(32)), [(0, 3), (3, 1), (4, 1), (5, 2)]);
        assert_eq!(batches(&fixture, n(1)).len(), 7);
        assert!(batches(&[], n(4)).is_empty());
    }

    #[test]
    fn call_results_become_one_observation_per_message() {
        let retry = Observed::Retry { delay_level: None };
        let poison = MessageOutcome::DeadLetter {
            reason: "poison".into(),
            properties: vec![(PROP_ABORT.into(), "fuel".into())],
        };
        let table = [
            (Ok(vec![MessageOutcome::Success]), vec![Observed::Success, retry.clone()]),
            (
                Ok(vec![MessageOutcome::RetryLater { delay_level: Some(4) }, poison]),
                vec![
                    Observed::Retry { delay_level: Some(4) },
                    Observed::DeadLetter { reason: "poison".into(), abort: Some("fuel".into()) },
                ],
            ),
            (
                Err(ListenerError::Aborted { kind: AbortKind::Timeout, detail: "5s".into() }),
                vec![Observed::Abort { abort: "timeout".into(), detail: "5s".into() }; 2],
            ),
            (
                Err(ListenerError::Failed("db down".into())),
                vec![Observed::Error { message: "db down".into() }; 2],
            ),
        ];
        for (result, expected) in table {
            assert_eq!(observe(2, result.clone()), expected, "{result:?}");
        }
    }
}
