//! One task per POP assignment (a topic on one broker: a queue, or queue id -1 for all of its
//! queues): pop (long poll) → filter → consume jobs → ack / change invisible time.
//!
//! Unlike a pull queue task it keeps no offset: the broker tracks what the group consumed and
//! what is in flight, so any number of members can pop the same queues. What it owns is the
//! count and bytes of its messages waiting for their ack — POP's flow control (Java's
//! `PopProcessQueue.waitAckCounter`): while over the threshold it does not pop, and the next
//! finished job wakes it.
//!
//! Orderly (`order = true`, one task per queue): one pop at a time, its messages consumed in
//! offset order by one job, the next pop only once that job has settled them — and, when a
//! message is to be consumed again, only after the pause its invisible time was changed to.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::orderly::consume_popped_orderly;
use super::policy::{init_mode, pop_budget};
use super::settle::{PopDone, consume_popped};
use crate::client::{ClientError, PopResult, PopStatus, PoppedMessage};
use crate::consumer::config::ConsumeMode;
use crate::consumer::consume::JobScope;
use crate::consumer::policy::{PULL_DELAY_WHEN_EXCEPTION, clamp_suspend_time};
use crate::consumer::queue_task::{QueueTaskHandle, StopReason, far_future};
use crate::consumer::shared::Shared;
use crate::consumer::stats::QueueStats;
use crate::consumer::throttle::Throttle;
use crate::protocol::body::{ExpressionType, SubscriptionData};
use crate::protocol::header::PopMessageRequestHeader;
use crate::protocol::message::property;
use crate::protocol::{EpochMillis, MessageQueue};

/// Java's margin over the poll time before the client gives up on a pop.
const POP_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// How long a task being rebalanced away waits for its running jobs to settle; the rest comes
/// back to the group after its invisible time.
const REMOVAL_DRAIN: Duration = Duration::from_secs(3);

/// How often a task whose pops keep failing says so.
const POP_ERROR_LOG_PERIOD: Duration = Duration::from_secs(30);

type PopFuture = Pin<Box<dyn Future<Output = (Result<PopResult, ClientError>, Duration)> + Send>>;

/// Starts the POP task of `queue` (queue id -1: all the topic's queues on that broker).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    queue: MessageQueue,
    parent: &CancellationToken,
) -> QueueTaskHandle {
    // Counted with its topic's life-long counters, as pulled queues are (/metrics, running info).
    let stats = Arc::new(QueueStats::new(shared.topic_stats(&queue.topic)));
    let (stop, stop_rx) = tokio::sync::watch::channel(None);
    let scope = JobScope::new(&shared, &queue, &stats);
    let span = tracing::info_span!(target: crate::SPAN_TARGET, "queue", topic = %queue.topic, broker = %queue.broker_name, queue_id = queue.queue_id.0, pop = true);
    let task = PopTask {
        orderly: shared.consume_mode() == ConsumeMode::Orderly,
        pause: Duration::ZERO,
        shared,
        scope,
        queue,
        jobs: JoinSet::new(),
        waiting: 0,
        waiting_bytes: 0,
        stats: Arc::clone(&stats),
        errors: Throttle::default(),
    };
    let join = tokio::spawn(task.run(stop_rx, parent.child_token()).instrument(span));
    QueueTaskHandle::from_parts(stats, stop, join)
}

struct PopTask {
    /// Orderly POP: one pop in flight or being consumed at a time.
    orderly: bool,
    /// Orderly: the longest pause asked by the jobs of the current pop.
    pause: Duration,
    shared: Arc<Shared>,
    scope: JobScope,
    queue: MessageQueue,
    jobs: JoinSet<PopDone>,
    /// Messages popped and not yet settled, and their body bytes.
    waiting: usize,
    waiting_bytes: u64,
    stats: Arc<QueueStats>,
    errors: Throttle,
}

impl PopTask {
    async fn run(
        mut self,
        mut stop: tokio::sync::watch::Receiver<Option<StopReason>>,
        cancel: CancellationToken,
    ) {
        let mut pop: Option<PopFuture> = None;
        let mut next_pop_at = Instant::now();
        let reason = loop {
            if pop.is_none() && Instant::now() >= next_pop_at {
                match self.start_pop() {
                    Ok(Some(fut)) => pop = Some(fut),
                    // Over the threshold: the next finished job wakes the loop.
                    Ok(None) => {
                        self.stats.flow_control_pauses.fetch_add(1, Ordering::Relaxed);
                        next_pop_at = far_future();
                    }
                    Err(delay) => next_pop_at = Instant::now() + delay,
                }
            }
            tokio::select! {
                biased;
                // Abrupt stop (the consumer dropped): nothing more is settled; the broker
                // delivers every message still waiting after its invisible time.
                _ = cancel.cancelled() => {
                    self.jobs.abort_all();
                    return;
                }
                changed = stop.changed() => {
                    let reason = if changed.is_ok() { *stop.borrow() } else { Some(StopReason::Removed) };
                    if let Some(reason) = reason { break reason; }
                }
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    match done {
                        Ok(done) => self.release(done),
                        Err(e) => tracing::error!(queue = %self.queue, error = %e, "POP consume job failed"),
                    }
                    if self.orderly {
                        // The pop is settled once all of its jobs are.
                        if self.jobs.is_empty() {
                            let wait = std::mem::take(&mut self.pause).max(self.shared.config.pull_interval);
                            next_pop_at = Instant::now() + wait;
                        }
                    } else if next_pop_at == far_future() {
                        next_pop_at = Instant::now();
                    }
                }
                (result, rt) = async { pop.as_mut().expect("guarded").await }, if pop.is_some() => {
                    pop = None;
                    next_pop_at = Instant::now() + self.on_pop(result, rt);
                    if self.orderly && !self.jobs.is_empty() {
                        next_pop_at = far_future();
                    }
                }
                _ = sleep_until(next_pop_at), if pop.is_none() && next_pop_at != far_future() => {}
            }
        };
        // A pop in flight is dropped: what the broker popped for it comes back after the
        // invisible time.
        drop(pop);
        let deadline = match reason {
            StopReason::Shutdown { deadline } => deadline,
            StopReason::Removed => Instant::now() + REMOVAL_DRAIN,
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            () = async { while self.jobs.join_next().await.is_some() {} } => {}
            () = sleep_until(deadline) => {}
        }
        self.jobs.abort_all();
    }

    /// The next pop, or `Ok(None)` while flow control holds it back, or `Err(delay)` when it
    /// cannot be sent yet.
    fn start_pop(&self) -> Result<Option<PopFuture>, Duration> {
        let cfg = &self.shared.config;
        let Some(max) = pop_budget(
            cfg.pop_batch_size,
            cfg.pop_threshold_for_queue,
            self.waiting,
            self.waiting_bytes,
            u64::from(cfg.pull_threshold_size_for_queue_mib) << 20,
        ) else {
            return Ok(None);
        };
        let Some(sub) = self.shared.subscription(&self.queue.topic) else {
            return Err(PULL_DELAY_WHEN_EXCEPTION);
        };
        let Some(addr) = self.shared.routes.master_addr(&self.queue.broker_name) else {
            return Err(PULL_DELAY_WHEN_EXCEPTION);
        };
        let header = pop_header(&self.shared, &self.queue, &sub, max);
        let broker = Arc::clone(&self.shared.broker);
        let broker_name = self.queue.broker_name.clone();
        let timeout = cfg.broker_suspend_max + POP_TIMEOUT_MARGIN;
        Ok(Some(Box::pin(async move {
            let started = Instant::now();
            let result = broker.pop(&addr, &broker_name, &header, timeout).await;
            (result, started.elapsed())
        })))
    }

    /// Handles a pop result: starts consume jobs; returns how long to wait before the next pop.
    fn on_pop(&mut self, result: Result<PopResult, ClientError>, rt: Duration) -> Duration {
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = self.errors.admit(Instant::now(), POP_ERROR_LOG_PERIOD) {
                    tracing::warn!(queue = %self.queue, error = %e, suppressed, "pop failed");
                }
                return PULL_DELAY_WHEN_EXCEPTION;
            }
        };
        self.errors.reset();
        if let Some(e) = &result.undecodable {
            self.stats.skipped_records.fetch_add(1, Ordering::Relaxed);
            tracing::error!(queue = %self.queue, error = %e, "a popped record could not be decoded; it comes back after its invisible time");
        }
        match result.status {
            PopStatus::Found => {}
            PopStatus::NoNewMsg => return Duration::ZERO,
            PopStatus::PollingFull => return PULL_DELAY_WHEN_EXCEPTION,
        }
        self.stats.add_pull(rt, result.messages.len());
        let (wanted, unwanted) = self.filter(result.messages);
        if !unwanted.is_empty() {
            // Java acks what the tag filter drops; a job with no listener call does that here.
            self.spawn_job(unwanted, false);
        }
        let batch = self.shared.config.consume_message_batch_max_size as usize;
        if self.orderly {
            if !wanted.is_empty() {
                let pause = clamp_suspend_time(None, self.shared.config.suspend_current_queue_time);
                self.hold(&wanted);
                self.jobs.spawn(consume_popped_orderly(self.scope.clone(), wanted, batch, pause));
            }
            return self.shared.config.pull_interval;
        }
        let mut wanted = wanted.into_iter().peekable();
        while wanted.peek().is_some() {
            self.spawn_job(wanted.by_ref().take(batch).collect(), true);
        }
        self.shared.config.pull_interval
    }

    /// Splits the popped messages by the subscription's tags (the broker filtered by tag hash
    /// only); the second list is acked without consuming.
    fn filter(&self, msgs: Vec<PoppedMessage>) -> (Vec<PoppedMessage>, Vec<PoppedMessage>) {
        match self.shared.subscription(&self.queue.topic) {
            Some(sub) if sub.expression_type == ExpressionType::Tag => msgs
                .into_iter()
                .partition(|p| sub.matches_tag(p.message.properties.get(property::TAGS))),
            _ => (msgs, Vec::new()),
        }
    }

    fn spawn_job(&mut self, batch: Vec<PoppedMessage>, consume: bool) {
        self.hold(&batch);
        let scope = self.scope.clone();
        if consume {
            self.jobs.spawn(consume_popped(scope, batch));
        } else {
            self.jobs.spawn(super::settle::ack_unwanted(scope, batch));
        }
    }

    /// Counts `batch` as waiting for its ack.
    fn hold(&mut self, batch: &[PoppedMessage]) {
        let held = PopDone::of(batch);
        self.waiting += held.count;
        self.waiting_bytes += held.bytes;
        self.stats.set_cache(self.waiting, self.waiting_bytes);
    }

    fn release(&mut self, done: PopDone) {
        self.pause = self.pause.max(done.pause);
        self.waiting = self.waiting.saturating_sub(done.count);
        self.waiting_bytes = self.waiting_bytes.saturating_sub(done.bytes);
        self.stats.set_cache(self.waiting, self.waiting_bytes);
    }
}

/// POP_MESSAGE for `queue` asking for up to `max` messages (Java `PullAPIWrapper.popAsync`).
pub(crate) fn pop_header(
    shared: &Shared,
    queue: &MessageQueue,
    sub: &SubscriptionData,
    max: i32,
) -> PopMessageRequestHeader {
    let cfg = &shared.config;
    PopMessageRequestHeader {
        consumer_group: shared.group.to_string(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        max_msg_nums: max,
        invisible_time: i64::try_from(cfg.pop_invisible_time.as_millis()).unwrap_or(60_000),
        // The long poll, as for pulls (Java: 15 s for both). A message revived into the POP
        // retry topic does not wake a pop suspended on the topic: retries wait for it to end.
        poll_time: i64::try_from(cfg.broker_suspend_max.as_millis()).unwrap_or(15_000),
        born_time: EpochMillis::now(),
        init_mode: init_mode(cfg.consume_from_where),
        exp_type: Some(match sub.expression_type {
            ExpressionType::Sql92 => "SQL92".into(),
            _ => "TAG".into(),
        }),
        exp: Some(sub.sub_string.clone()),
        order: Some(shared.consume_mode() == ConsumeMode::Orderly),
        attempt_id: None,
        bname: Some(queue.broker_name.clone()),
    }
}
