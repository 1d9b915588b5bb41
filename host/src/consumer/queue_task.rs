//! One task per assigned queue: it owns the queue's process queue and runs its whole cycle —
//! pull (long poll) → filter → buffer → dispatch to consume jobs → settle → commit offset.
//!
//! Owning the buffer in one task means no locks around it: consume jobs report back through the
//! task's `JoinSet`, and the task is the only writer of the queue's offset. Flow control is
//! waiting, not spinning: while the buffer is over a threshold the task does not pull, and the
//! next completed consume job wakes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::consume::{
    Completion, JobScope, LOCAL_RETRY_DELAY, OrderlyDone, consume_concurrently, consume_orderly,
    send_back,
};
use super::listener::ConsumeMode;
use super::offset_store::ReadFrom;
use super::policy::{
    self, FlowLimits, PULL_DELAY_WHEN_EXCEPTION, PullDelayReason, StartOffsetDecision, StoredOffset,
};
use super::process_queue::{ConsumeStart, ProcessQueue};
use super::shared::Shared;
use super::stats::QueueStats;
use super::throttle::Throttle;
use crate::client::{ClientError, PullResult, PullStatus};
use crate::protocol::body::{ExpressionType, MessageModel, SubscriptionData};
use crate::protocol::header::{
    GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader, PullMessageRequestHeader,
    SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader, pull_sys_flag,
};
use crate::protocol::message::{MessageExt, property};
use crate::protocol::{MessageQueue, QueueOffset, ResponseCode};

/// Why a queue task is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Rebalanced away: pending results are discarded (Java drops the process queue), the
    /// current offset is persisted for the next owner.
    Removed,
    /// Consumer shutdown: in-flight consumption may finish (until the deadline) and commit.
    Shutdown { deadline: Instant },
}

/// The owner's handle: stop the task and wait for it.
#[derive(Debug)]
pub(crate) struct QueueTaskHandle {
    pub stats: Arc<QueueStats>,
    stop: tokio::sync::watch::Sender<Option<StopReason>>,
    join: tokio::task::JoinHandle<()>,
}

impl QueueTaskHandle {
    /// Starts the task for `queue`, pulling from `start`.
    pub fn spawn(
        shared: Arc<Shared>,
        queue: MessageQueue,
        start: QueueOffset,
        parent: &CancellationToken,
    ) -> Self {
        let stats = Arc::new(QueueStats::new(shared.topic_stats(&queue.topic)));
        stats.next_offset.store(start.0, Ordering::Relaxed);
        let (stop, stop_rx) = tokio::sync::watch::channel(None);
        let scope = JobScope::new(&shared, &queue, &stats);
        let span = tracing::info_span!(target: crate::SPAN_TARGET, "queue", topic = %queue.topic, broker = %queue.broker_name, queue_id = queue.queue_id.0);
        let task = QueueTask {
            shared,
            scope,
            queue,
            next_offset: start,
            suggested_broker: 0,
            pq: ProcessQueue::new(),
            jobs: JoinSet::new(),
            stats: Arc::clone(&stats),
            orderly_running: false,
            resume_at: None,
            next_cleanup: Instant::now() + CLEANUP_PERIOD.min(Duration::from_secs(60)),
            isolating: false,
            pull_errors: Throttle::default(),
        };
        let cancel = parent.child_token();
        let join = tokio::spawn(task.run(stop_rx, cancel).instrument(span));
        Self { stats, stop, join }
    }

    /// The handle of a task spawned elsewhere (a POP task) that obeys the same stop protocol.
    pub(crate) fn from_parts(
        stats: Arc<QueueStats>,
        stop: tokio::sync::watch::Sender<Option<StopReason>>,
        join: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self { stats, stop, join }
    }

    /// Whether the task has ended on its own (it only does by a bug: a panic).
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Stops the task and waits until it has finished (offset persisted), but not forever: the
    /// scheduler awaits this, and nothing it waits on may be unbounded. Past the drain (or
    /// removal) deadline plus [`STOP_GRACE`] the task is aborted; its messages are redelivered.
    pub async fn stop(mut self, reason: StopReason) {
        let _ = self.stop.send(Some(reason));
        let drain_until = match reason {
            StopReason::Shutdown { deadline } => deadline,
            StopReason::Removed => Instant::now() + ORDERLY_REMOVAL_WAIT,
        };
        match tokio::time::timeout_at(drain_until + STOP_GRACE, &mut self.join).await {
            Ok(Err(e)) if e.is_panic() => tracing::error!(error = %e, "queue task panicked"),
            Ok(_) => {}
            Err(_) => {
                tracing::error!(?reason, "queue task did not stop in time; aborted");
                self.join.abort();
            }
        }
    }
}

/// A pull in flight; resolves to its result, its round trip and whether it went to the master.
type PullFuture = Pin<Box<dyn Future<Output = PullDone> + Send>>;

/// A finished pull.
struct PullDone {
    result: Result<PullResult, ClientError>,
    rt: Duration,
    /// False when it went to a slave (the master was gone, or suggested the slave).
    from_master: bool,
}

/// What a consume job reports back.
#[derive(Debug)]
enum JobDone {
    Concurrent(Completion),
    Orderly(OrderlyDone),
}

/// How [`QueueTask::run_or_spawn`] left a job.
enum Started {
    /// It finished in its first poll, here.
    Done(JobDone),
    /// It waits for something: it now runs as its own task in the queue's `JoinSet`.
    Spawned,
    /// It panicked in its first poll (a spawned job's panic surfaces as a `JoinError` instead).
    Panicked,
}

/// How often a queue looks for messages stuck in the listener past the consume timeout
/// (Java: every `consumeTimeout` minutes; we look more often and send back only expired ones).
const CLEANUP_PERIOD: Duration = Duration::from_secs(60);

/// How often a queue whose pulls keep failing says so (the count of the others rides along).
const PULL_ERROR_LOG_PERIOD: Duration = Duration::from_secs(30);

/// Orderly: how long to wait before retrying when the queue's lock is missing or expired.
const RELOCK_WAIT: Duration = Duration::from_secs(1);

struct QueueTask {
    shared: Arc<Shared>,
    /// Handed to every consume job of this queue.
    scope: JobScope,
    queue: MessageQueue,
    next_offset: QueueOffset,
    /// Which replica the broker suggested for the next pull.
    suggested_broker: i64,
    pq: ProcessQueue,
    jobs: JoinSet<JobDone>,
    stats: Arc<QueueStats>,
    /// Orderly: a consume job for this queue is running (at most one ever is).
    orderly_running: bool,
    /// Orderly: the queue is suspended (after a failure, or waiting for its lock) until then.
    resume_at: Option<Instant>,
    /// Concurrent: next consume-timeout sweep.
    next_cleanup: Instant,
    /// The last pull's first record could not be decoded: the next pull asks for one record,
    /// so that exactly that record is skipped.
    isolating: bool,
    /// Failed pulls are logged at WARN, at most once per [`PULL_ERROR_LOG_PERIOD`].
    pull_errors: Throttle,
}

impl QueueTask {
    async fn run(
        mut self,
        mut stop: tokio::sync::watch::Receiver<Option<StopReason>>,
        cancel: CancellationToken,
    ) {
        let mut pull: Option<PullFuture> = None;
        let mut next_pull_at = Instant::now();
        let reason = loop {
            self.maybe_start_pull(&mut pull, &mut next_pull_at);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break StopReason::Removed,
                changed = stop.changed() => {
                    let reason = if changed.is_ok() { *stop.borrow() } else { Some(StopReason::Removed) };
                    if let Some(reason) = reason { break reason; }
                }
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    match done {
                        Ok(JobDone::Concurrent(completion)) => self.settle(completion),
                        Ok(JobDone::Orderly(done)) => self.settle_orderly(done),
                        Err(e) => {
                            self.orderly_running = false;
                            tracing::error!(queue = %self.queue, error = %e, "consume job failed");
                        }
                    }
                    if next_pull_at == far_future() {
                        next_pull_at = Instant::now();
                    }
                }
                done = async { pull.as_mut().expect("guarded").await }, if pull.is_some() => {
                    pull = None;
                    let (delay, buffered) = self.on_pull(done);
                    next_pull_at = Instant::now() + delay;
                    if let Some(msgs) = buffered {
                        // Java's order: buffer, send the next pull, then consume — so the
                        // broker reads the next batch while this one is consumed, even when
                        // consumption runs right here (`run_or_spawn`). The buffered messages
                        // already count for flow control; if it holds the pull back, the next
                        // turn decides, after this consumption.
                        if delay.is_zero() && self.flow_control().is_none() {
                            self.maybe_start_pull(&mut pull, &mut next_pull_at);
                        }
                        if let Some(fut) = pull.as_mut() {
                            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                            if let std::task::Poll::Ready(done) = fut.as_mut().poll(&mut cx) {
                                // Rare (an immediate error): handled on the next turn instead.
                                pull = Some(Box::pin(std::future::ready(done)));
                            }
                        }
                        self.consume_buffered(msgs);
                    }
                }
                _ = sleep_until(next_pull_at), if pull.is_none() && next_pull_at != far_future() => {}
                _ = sleep_until(self.resume_at.unwrap_or_else(far_future)), if self.resume_at.is_some() => {
                    self.resume_at = None;
                    self.consume_orderly_next();
                }
                _ = sleep_until(self.next_cleanup), if !self.is_orderly() => {
                    self.next_cleanup = Instant::now() + CLEANUP_PERIOD;
                    self.clean_expired();
                }
            }
        };
        drop(pull);
        self.finish(reason).await;
    }

    /// Starts the next pull if none is in flight, its time has come and flow control allows;
    /// otherwise sets when to look again.
    fn maybe_start_pull(&mut self, pull: &mut Option<PullFuture>, next_pull_at: &mut Instant) {
        if pull.is_some() || Instant::now() < *next_pull_at {
            return;
        }
        match self.flow_control() {
            Some(_) if !self.jobs.is_empty() => {
                // Wait for a consume job to finish instead of polling.
                self.stats.add_flow_control_pause();
                *next_pull_at = far_future();
            }
            Some(fc) => {
                self.stats.add_flow_control_pause();
                *next_pull_at =
                    Instant::now() + policy::pull_delay_for(PullDelayReason::FlowControl(fc));
            }
            None => match self.start_pull() {
                Ok(fut) => *pull = Some(fut),
                Err(delay) => *next_pull_at = Instant::now() + delay,
            },
        }
    }

    fn flow_control(&self) -> Option<policy::FlowControlReason> {
        let owned = self.shared.owned_queue_count().max(1);
        policy::flow_control_check(
            self.pq.cached_count(),
            self.pq.cached_size_bytes(),
            self.pq.max_span(),
            &FlowLimits::new(&self.shared.config, owned),
        )
    }

    /// Builds the pull request; `Err(delay)` when it cannot be sent yet.
    fn start_pull(&mut self) -> Result<PullFuture, Duration> {
        if self.needs_lock() && !self.shared.is_locked(&self.queue) {
            return Err(policy::pull_delay_for(PullDelayReason::NotLocked));
        }
        let Some(sub) = self.shared.subscription(&self.queue.topic) else {
            return Err(policy::pull_delay_for(PullDelayReason::NoSubscription));
        };
        let Some((addr, is_master)) =
            self.shared.routes.pull_addr(&self.queue.broker_name, self.suggested_broker)
        else {
            return Err(PULL_DELAY_WHEN_EXCEPTION);
        };
        let clustering = self.shared.config.message_model == MessageModel::Clustering;
        // The committed offset rides on the pull (reference 2.7), clustering and master only.
        let commit = if clustering {
            self.shared.offsets.read_memory(&self.queue).filter(|o| o.0 > 0)
        } else {
            None
        };
        let mut sys_flag = pull_sys_flag::SUSPEND;
        if commit.is_some() && is_master {
            sys_flag |= pull_sys_flag::COMMIT_OFFSET;
        }
        let mut header =
            pull_header(&self.shared, &self.queue, &sub, self.next_offset, sys_flag, commit);
        if self.isolating {
            header.max_msg_nums = 1;
        }
        let broker = Arc::clone(&self.shared.broker);
        let timeout = self.shared.config.pull_timeout;
        Ok(Box::pin(async move {
            let started = Instant::now();
            let result = broker.pull(&addr, &header, timeout).await;
            PullDone { result, rt: started.elapsed(), from_master: is_master }
        }))
    }

    /// Handles a pull result; returns how long to wait before the next pull and the messages it
    /// buffered, which the caller consumes ([`consume_buffered`](Self::consume_buffered)).
    fn on_pull(&mut self, done: PullDone) -> (Duration, Option<Vec<MessageExt>>) {
        let PullDone { result, rt, from_master } = done;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                let delay = policy::pull_delay_for(
                    if e.response_code() == Some(ResponseCode::FlowControl) {
                        PullDelayReason::BrokerFlowControl
                    } else {
                        PullDelayReason::PullFailed
                    },
                );
                if let Some(suppressed) =
                    self.pull_errors.admit(Instant::now(), PULL_ERROR_LOG_PERIOD)
                {
                    tracing::warn!(queue = %self.queue, error = %e, ?delay, suppressed, "pull failed");
                }
                return (delay, None);
            }
        };
        self.pull_errors.reset();
        self.suggested_broker = result.suggest_which_broker_id;
        self.stats.max_offset.store(result.max_offset.0, Ordering::Relaxed);
        self.stats.add_pull(rt, result.messages.len());
        let mut buffered = None;
        let mut delay = self.shared.config.pull_interval;
        match result.status {
            PullStatus::Found => {
                self.next_offset = self.next_offset_after(&result);
                let sub = self.shared.subscription(&self.queue.topic);
                let mut msgs = result.messages;
                // The broker filtered by tag hash only; re-check the tag text (reference 3.2).
                if let Some(sub) = &sub {
                    msgs.retain(|m| sub.matches_tag(m.tags()));
                }
                // Formatted once per pull, not per message.
                let (min, max) = (result.min_offset.0.to_string(), result.max_offset.0.to_string());
                for m in &mut msgs {
                    m.properties.insert(property::MIN_OFFSET, &min);
                    m.properties.insert(property::MAX_OFFSET, &max);
                }
                if msgs.is_empty() {
                    self.correct_offset_if_idle();
                } else {
                    self.buffer(&msgs);
                    buffered = Some(msgs);
                }
            }
            PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                self.next_offset = result.next_begin_offset;
                self.correct_offset_if_idle();
                if !from_master {
                    // A slave holds no pull when it may not serve reads (`slaveReadEnable`
                    // off, the default): 4.9 answers every pull at once with no messages. Java
                    // pulls again at once, ~500 pulls/s per queue until the master is back.
                    delay = policy::pull_delay_for(PullDelayReason::ReplicaCaughtUp);
                }
            }
            PullStatus::OffsetIllegal => {
                tracing::warn!(queue = %self.queue, from = %self.next_offset, to = %result.next_begin_offset, cached = self.pq.cached_count(), "pull offset illegal: dropping the process queue and moving");
                self.restart_at(result.next_begin_offset);
            }
        }
        self.stats.next_offset.store(self.next_offset.0, Ordering::Relaxed);
        (delay, buffered)
    }

    /// Where to pull next after a FOUND answer. A body with a record that could not be decoded
    /// (corrupt on disk or on the wire) is never skipped wholesale, as Java does silently:
    ///
    /// - its good prefix is delivered, and the next pull starts right after it, at the broken
    ///   record (the broker's `nextBeginOffset` would skip every message behind it), asking for
    ///   one record only; so does the next pull after a broken first record;
    /// - a broken record that is the only one asked for is skipped alone, with an ERROR naming
    ///   the queue and offset, and counted: one bad record must not stall its queue.
    fn next_offset_after(&mut self, result: &PullResult) -> QueueOffset {
        let Some(error) = &result.undecodable else {
            self.isolating = false;
            return result.next_begin_offset;
        };
        let broken_at = match result.messages.last() {
            Some(last) => last.queue_offset.next(),
            None if !self.isolating => self.next_offset,
            None => {
                self.isolating = false;
                self.stats.skipped_records.fetch_add(1, Ordering::Relaxed);
                tracing::error!(queue = %self.queue, offset = %self.next_offset, next = %result.next_begin_offset, %error, "skipping a message record that cannot be decoded");
                return result.next_begin_offset;
            }
        };
        tracing::warn!(queue = %self.queue, offset = %broken_at, %error, "a pulled record cannot be decoded; isolating it");
        self.isolating = true;
        broken_at
    }

    /// OFFSET_ILLEGAL (reference 4.5): the queue's offsets no longer mean what they meant — the
    /// broker lost its tail (we move back) or deleted its head (we move forward). Java drops the
    /// process queue, sets the broker's offset and re-adds the queue; here the one owner task
    /// does the same in place:
    ///
    /// - the buffer is replaced, so no message of the old range is dispatched again and its
    ///   high mark cannot leak into the commits of the replay (a replay of [L, H] must not
    ///   commit H + 1 after consuming L);
    /// - the consume jobs of the old range are aborted, so their late results cannot settle
    ///   anything in the new buffer (their messages are redelivered, as for any dropped queue);
    /// - the new offset is committed exactly (not increase-only: it may go back); the periodic
    ///   persist writes it to the broker.
    fn restart_at(&mut self, offset: QueueOffset) {
        self.jobs = JoinSet::new();
        self.pq = ProcessQueue::new();
        self.orderly_running = false;
        self.resume_at = None;
        self.next_offset = offset;
        self.shared.offsets.update(&self.queue, offset, false);
        self.stats.committed_offset.store(offset.0, Ordering::Relaxed);
        self.stats.set_cache(0, 0);
    }

    /// With nothing buffered, the next pull offset is safe to commit (Java `correctTagsOffset`):
    /// it skips filtered-out messages so lag reads true.
    fn correct_offset_if_idle(&mut self) {
        if self.pq.cached_count() == 0 {
            self.shared.offsets.update(&self.queue, self.next_offset, true);
            self.stats.committed_offset.fetch_max(self.next_offset.0, Ordering::Relaxed);
        }
    }

    fn is_orderly(&self) -> bool {
        self.shared.consume_mode() == ConsumeMode::Orderly
    }

    /// Orderly clustering needs the broker lock to pull and consume; broadcasting never locks.
    fn needs_lock(&self) -> bool {
        self.is_orderly() && self.shared.config.message_model == MessageModel::Clustering
    }

    /// Puts pulled messages into the process queue.
    fn buffer(&mut self, msgs: &[MessageExt]) {
        self.pq.put(msgs);
        self.stats.set_cache(self.pq.cached_count(), self.pq.cached_size_bytes());
    }

    /// A concurrent consume job for `msgs` (after `delay`, for local retries). Their buffered
    /// copies' consume-timeout clock starts when the job's listener call does, not now.
    fn concurrent_job(
        &mut self,
        msgs: Vec<MessageExt>,
        delay: Option<Duration>,
    ) -> impl Future<Output = JobDone> + Send + 'static {
        let start = Arc::new(ConsumeStart::default());
        let offsets: Vec<QueueOffset> = msgs.iter().map(|m| m.queue_offset).collect();
        self.pq.mark_consume_started(&offsets, &start);
        let job = consume_concurrently(self.scope.clone(), msgs, delay, start);
        async move { JobDone::Concurrent(job.await) }
    }

    /// Consumes buffered messages: orderly from the head of the queue, concurrently in chunks
    /// of `consume_message_batch_max_size`.
    fn consume_buffered(&mut self, msgs: Vec<MessageExt>) {
        if self.is_orderly() {
            self.consume_orderly_next();
            return;
        }
        let batch = self.shared.config.consume_message_batch_max_size.max(1) as usize;
        // Jobs that finish in their first poll are settled together, once per pulled batch.
        let mut finished = Completion::default();
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let chunk: Vec<_> = msgs.by_ref().take(batch).collect();
            let job = self.concurrent_job(chunk, None);
            match self.run_or_spawn(job) {
                Started::Done(JobDone::Concurrent(done)) => {
                    finished.settled.extend(done.settled);
                    finished.redo.extend(done.redo);
                }
                Started::Done(JobDone::Orderly(_)) | Started::Spawned | Started::Panicked => {}
            }
        }
        if !finished.settled.is_empty() || !finished.redo.is_empty() {
            self.settle(finished);
        }
    }

    /// Starts a consume job: polls it once right here and, only if it has to wait (for a
    /// consume permit, or a listener that awaits I/O, a timer or a Wasm fuel yield), hands it to
    /// the runtime as a task of its own.
    ///
    /// Why: a listener that answers at once (the usual native no-op/fast path) then costs no
    /// task, no `JoinSet` wake-up and no extra turn of the select loop per message, which at
    /// Java's default batch size of 1 was most of the consumer's per-message CPU. Nothing else
    /// changes: the job is the same future, concurrency is still bounded by the consume
    /// permits, and a job that waits continues concurrently as before. The first poll uses a
    /// no-op waker; the runtime polls a spawned task at once, which registers the real one.
    fn run_or_spawn(&mut self, job: impl Future<Output = JobDone> + Send + 'static) -> Started {
        let mut job = Box::pin(job);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.as_mut().poll(&mut cx)))
        {
            Ok(std::task::Poll::Ready(done)) => Started::Done(done),
            Ok(std::task::Poll::Pending) => {
                // A job that waits keeps the queue's log context.
                self.jobs.spawn(job.in_current_span());
                Started::Spawned
            }
            Err(_) => {
                tracing::error!(queue = %self.queue, "consume job panicked");
                Started::Panicked
            }
        }
    }

    /// Orderly: starts the next consume job on the head of the queue, unless one is running,
    /// the queue is suspended, or its lock is missing (then it retries shortly).
    /// Batches that finish in their first poll are applied here and the loop goes on, rather
    /// than recursing through [`settle_orderly`](Self::settle_orderly) once per batch.
    fn consume_orderly_next(&mut self) {
        loop {
            if self.orderly_running || self.resume_at.is_some() || self.pq.is_empty() {
                return;
            }
            if self.needs_lock() && !self.shared.is_locked(&self.queue) {
                self.resume_at = Some(Instant::now() + RELOCK_WAIT);
                return;
            }
            let batch = self.shared.config.consume_message_batch_max_size.max(1) as usize;
            let msgs = self.pq.take(batch);
            if msgs.is_empty() {
                return;
            }
            self.orderly_running = true;
            let job = consume_orderly(self.scope.clone(), msgs);
            match self.run_or_spawn(async move { JobDone::Orderly(job.await) }) {
                Started::Done(JobDone::Orderly(done)) => {
                    if !self.apply_orderly(done) {
                        return;
                    }
                }
                Started::Done(JobDone::Concurrent(_)) | Started::Spawned => return,
                Started::Panicked => {
                    self.orderly_running = false;
                    return;
                }
            }
        }
    }

    /// Orderly: applies a finished batch, then continues or suspends the queue for a moment.
    fn settle_orderly(&mut self, done: OrderlyDone) {
        if self.apply_orderly(done) {
            self.consume_orderly_next();
        }
    }

    /// Orderly: commits the settled head exactly (not increase-only: orderly offsets are
    /// exact); returns whether consumption may go on now (false: the queue is suspended).
    fn apply_orderly(&mut self, done: OrderlyDone) -> bool {
        self.orderly_running = false;
        let suspend = !done.again.is_empty();
        if suspend {
            self.pq.make_to_consume_again(done.again);
        }
        if let Some(offset) = self.pq.commit() {
            self.shared.offsets.update(&self.queue, offset, false);
            self.stats.committed_offset.store(offset.0, Ordering::Relaxed);
        }
        self.stats.set_cache(self.pq.cached_count(), self.pq.cached_size_bytes());
        if suspend {
            let pause =
                policy::clamp_suspend_time(None, self.shared.config.suspend_current_queue_time);
            self.resume_at = Some(Instant::now() + pause);
        }
        !suspend
    }

    /// Concurrent consume timeout (Java `cleanExpiredMsg`): a message stuck in the listener
    /// longer than `consume_timeout` is sent back (delay level 3) so it no longer pins the
    /// committed offset; the stuck call's own result is ignored when it finally returns.
    fn clean_expired(&mut self) {
        let expired = self.pq.expired_heads(Instant::now(), self.shared.config.consume_timeout);
        if expired.is_empty() {
            return;
        }
        let env = Arc::clone(&self.shared.consume);
        let queue = self.queue.clone();
        self.jobs.spawn(async move {
            let mut done = Completion::default();
            for msg in expired {
                match send_back(&env, &queue, &msg, policy::DelayLevel::CONSUME_TIMEOUT.get()).await {
                    Ok(()) => {
                        tracing::warn!(%queue, offset = %msg.queue_offset, "message exceeded the consume timeout; sent back");
                        done.settled.push(msg.queue_offset);
                    }
                    Err(e) => {
                        tracing::warn!(%queue, offset = %msg.queue_offset, error = %e, "sending back an expired message failed");
                        break;
                    }
                }
            }
            JobDone::Concurrent(done)
        });
    }

    /// Applies a finished job: remove settled messages, commit the new lowest unsettled
    /// offset, and schedule local retries.
    fn settle(&mut self, done: Completion) {
        if let Some(offset) = self.pq.remove(&done.settled) {
            self.shared.offsets.update(&self.queue, offset, true);
            self.stats.committed_offset.fetch_max(offset.0, Ordering::Relaxed);
        }
        self.stats.set_cache(self.pq.cached_count(), self.pq.cached_size_bytes());
        if !done.redo.is_empty() {
            let job = self.concurrent_job(done.redo, Some(LOCAL_RETRY_DELAY));
            self.jobs.spawn(job);
        }
    }

    /// Ends the task: drains (shutdown) or discards (removal) in-flight jobs, then persists.
    async fn finish(mut self, reason: StopReason) {
        let deadline = match reason {
            // Orderly: let the running batch finish (Java waits up to 500 ms for the queue's
            // consume lock), so the next owner starts after it instead of replaying it.
            StopReason::Removed if self.is_orderly() => Instant::now() + ORDERLY_REMOVAL_WAIT,
            // Concurrent: Java drops the queue and discards pending results; the messages are
            // redelivered to the next owner.
            StopReason::Removed => Instant::now(),
            StopReason::Shutdown { deadline } => deadline,
        };
        // Commit what finishes in time, but start nothing new.
        self.resume_at = Some(far_future());
        while !self.jobs.is_empty() {
            match tokio::time::timeout_at(deadline, self.jobs.join_next()).await {
                Ok(Some(Ok(JobDone::Concurrent(mut done)))) if reason != StopReason::Removed => {
                    // No local retry now: those messages stay uncommitted and are redelivered.
                    done.redo.clear();
                    self.settle(done);
                }
                Ok(Some(Ok(JobDone::Orderly(done)))) => self.settle_orderly(done),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    if !matches!(reason, StopReason::Removed) || self.is_orderly() {
                        tracing::warn!(queue = %self.queue, pending = self.jobs.len(), ?reason, "deadline passed; abandoning in-flight messages (they will be redelivered)");
                    }
                    self.jobs.abort_all();
                    break;
                }
            }
        }
        while self.jobs.join_next().await.is_some() {}
        if let Err(e) = self.persist_confirmed().await {
            tracing::warn!(queue = %self.queue, error = %e, "persisting the offset failed");
        }
    }

    /// Writes this queue's offset and waits for the broker to accept it: the next owner reads it
    /// right after we let go of the queue, so a oneway update could arrive too late.
    async fn persist_confirmed(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.shared.config.message_model == MessageModel::Broadcasting {
            return Ok(self.shared.offsets.persist(&self.queue).await?);
        }
        let Some(offset) = self.shared.offsets.read_memory(&self.queue) else { return Ok(()) };
        let addr = self
            .shared
            .routes
            .master_or_any_addr(&self.queue.broker_name)
            .ok_or_else(|| format!("no address for broker {}", self.queue.broker_name))?;
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: self.shared.group.to_string(),
            topic: self.queue.topic.clone(),
            queue_id: self.queue.queue_id,
            commit_offset: offset,
            bname: Some(self.queue.broker_name.clone()),
        };
        self.shared
            .broker
            .update_offset(&addr, &header, self.shared.config.mq_client_api_timeout)
            .await?;
        Ok(())
    }
}

/// What a stopping queue task may take beyond its drain deadline: persisting its offset (one
/// request, 3 s by default) with room to spare.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long an orderly queue being rebalanced away waits for its running batch.
const ORDERLY_REMOVAL_WAIT: Duration = Duration::from_millis(500);

pub(crate) fn far_future() -> Instant {
    // Far enough to never fire, near enough not to overflow.
    static FAR: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *FAR.get_or_init(|| Instant::now() + Duration::from_secs(86_400 * 365))
}

/// The PULL_MESSAGE header a push consumer sends (reference 2.7).
pub(crate) fn pull_header(
    shared: &Shared,
    queue: &MessageQueue,
    sub: &SubscriptionData,
    offset: QueueOffset,
    sys_flag: i32,
    commit: Option<QueueOffset>,
) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: shared.group.to_string(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        queue_offset: offset,
        max_msg_nums: i32::try_from(shared.config.pull_batch_size).unwrap_or(32),
        sys_flag,
        commit_offset: commit.unwrap_or(QueueOffset(0)),
        suspend_timeout_millis: i64::try_from(shared.config.broker_suspend_max.as_millis())
            .unwrap_or(15_000),
        subscription: None,
        sub_version: sub.sub_version,
        expression_type: Some(match sub.expression_type {
            ExpressionType::Sql92 => "SQL92".into(),
            _ => "TAG".into(),
        }),
        max_msg_bytes: None,
        bname: Some(queue.broker_name.clone()),
    }
}

/// Where a newly assigned queue starts, and what starting there skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueStart {
    pub offset: QueueOffset,
    /// Messages the queue already holds below `offset` that this group will never see: a
    /// group with no offset starting at the last one (Java's default) skips the backlog, which
    /// surprises everyone trying a new listener on a topic with test data in it.
    pub skipped: u64,
}

impl QueueStart {
    fn at(offset: QueueOffset) -> Self {
        Self { offset, skipped: 0 }
    }
}

/// Where a newly assigned queue starts (reference 4.10): the stored offset, or the policy's
/// choice when the group has none. An error means "not now": the next rebalance retries.
pub(crate) async fn start_offset(
    shared: &Shared,
    queue: &MessageQueue,
) -> Result<QueueStart, StartOffsetError> {
    let stored = match shared.offsets.read(queue, ReadFrom::Store).await {
        Ok(Some(offset)) => StoredOffset::Found(offset),
        Ok(None) => StoredOffset::NotFound,
        Err(e) => {
            tracing::debug!(%queue, error = %e, "offset query failed");
            StoredOffset::QueryFailed
        }
    };
    let timestamp = shared.config.consume_timestamp_at(shared.started_at);
    let decision = policy::start_offset(
        shared.config.consume_from_where,
        policy::is_retry_topic(&queue.topic),
        stored,
        timestamp,
    );
    let master = || {
        shared.routes.master_addr(&queue.broker_name).ok_or_else(|| {
            StartOffsetError::Client(ClientError::NoMaster {
                topic: queue.topic.clone(),
                broker: queue.broker_name.clone(),
            })
        })
    };
    let timeout = shared.config.mq_client_api_timeout;
    match decision {
        StartOffsetDecision::Use(offset) => Ok(QueueStart::at(offset)),
        StartOffsetDecision::GiveUp => Err(StartOffsetError::QueryFailed),
        StartOffsetDecision::AskMaxOffset => {
            let addr = master()?;
            let header = GetMaxOffsetRequestHeader {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                committed: Some(true),
                bname: Some(queue.broker_name.clone()),
            };
            let max = shared.broker.max_offset(&addr, &header, timeout).await?;
            if max.0 <= 0 {
                return Ok(QueueStart::at(max));
            }
            // Only to tell the user what was skipped: a failure here must not hold the queue.
            let header = GetMinOffsetRequestHeader {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                bname: Some(queue.broker_name.clone()),
            };
            let skipped = match shared.broker.min_offset(&addr, &header, timeout).await {
                Ok(min) => u64::try_from(max.0 - min.0).unwrap_or(0),
                Err(e) => {
                    tracing::debug!(%queue, error = %e, "min offset query failed");
                    0
                }
            };
            Ok(QueueStart { offset: max, skipped })
        }
        StartOffsetDecision::AskByTimestamp(ts) => {
            let header = SearchOffsetRequestHeader {
                topic: queue.topic.clone(),
                queue_id: queue.queue_id,
                timestamp: ts,
                boundary_type: None,
                bname: Some(queue.broker_name.clone()),
            };
            Ok(QueueStart::at(shared.broker.search_offset(&master()?, &header, timeout).await?))
        }
    }
}

/// Why a queue could not be started this round.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartOffsetError {
    #[error("the stored offset could not be read")]
    QueryFailed,
    #[error(transparent)]
    Client(#[from] ClientError),
}
