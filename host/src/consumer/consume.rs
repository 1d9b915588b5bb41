//! One consume job (concurrent mode): call the listener on a batch, then settle every message —
//! commit, send back for a delayed retry, or dead-letter — before reporting to the queue task.
//!
//! Settling happens here, inside the job, so a slow send-back never stalls the queue task's
//! pull loop; the queue task only learns which offsets are settled and which messages must be
//! consumed again locally.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::time::Instant;

use super::listener::{
    ConsumeContext, DLQ_CONSUMED_AT, DLQ_REASON, ListenerError, MessageOutcome, outcomes_for,
};
use super::process_queue::ConsumeStart;
use super::shared::ConsumeEnv;
use super::stats::{OutcomeCounts, QueueStats};
use crate::client::ClientError;
use crate::protocol::body::MessageModel;
use crate::protocol::header::ConsumerSendMsgBackRequestHeader;
use crate::protocol::message::{Message, MessageExt, property};
use crate::protocol::{EpochMillis, MessageQueue, QueueOffset};

/// Java resubmits a message locally after this long when its send-back failed.
pub(crate) const LOCAL_RETRY_DELAY: Duration = Duration::from_secs(5);

/// What a finished job tells its queue task.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    /// Messages whose fate is settled: remove them from the process queue.
    pub settled: Vec<QueueOffset>,
    /// Messages that could not be handed back to the broker: consume again locally later, with
    /// their reconsume count already increased.
    pub redo: Vec<MessageExt>,
}

/// Restores what the listener should see (reference 3.2 step 5, 4.6 step 2–3): the original
/// topic of a retried message and its consume start time.
pub(crate) fn prepare_for_listener(group_retry_topic: &str, msgs: &mut [MessageExt]) {
    let now = EpochMillis::now().0.to_string();
    for m in msgs {
        if m.topic == group_retry_topic
            && let Some(original) = m.properties.get(property::RETRY_TOPIC).map(str::to_owned)
        {
            m.topic = original;
        }
        m.properties.insert(property::CONSUME_START_TIME, &now);
    }
}

/// What every consume job of one queue shares, built once by its queue task: the consumer, the
/// context the listener is given (cloned per call otherwise: two strings per message at batch
/// size 1) and the queue's counters (looked up by hash under a lock otherwise).
#[derive(Debug, Clone)]
pub(crate) struct JobScope {
    pub env: Arc<ConsumeEnv>,
    pub ctx: Arc<ConsumeContext>,
    pub stats: Arc<QueueStats>,
}

impl JobScope {
    /// The scope of the jobs of `queue` (a pulled queue or a POP assignment).
    pub fn new(
        shared: &super::shared::Shared,
        queue: &MessageQueue,
        stats: &Arc<QueueStats>,
    ) -> Self {
        Self {
            ctx: Arc::new(ConsumeContext {
                group: Arc::clone(&shared.group),
                queue: queue.clone(),
                mode: shared.consume_mode(),
            }),
            env: Arc::clone(&shared.consume),
            stats: Arc::clone(stats),
        }
    }

    pub fn queue(&self) -> &MessageQueue {
        &self.ctx.queue
    }
}

/// Calls the listener under a consume permit (the permits bound listener calls across all
/// queues, like Java's consume thread pool), after restoring what it should see; records the
/// call in the queue's stats. Returns exactly one outcome per message, or `None` when the
/// consumer is shutting down (the permits are closed).
pub(crate) async fn call_listener(
    scope: &JobScope,
    msgs: &mut [MessageExt],
    start: Option<&ConsumeStart>,
) -> Option<Vec<MessageOutcome>> {
    let env = &*scope.env;
    let queued = Instant::now();
    let _permit = env.permits.acquire().await.ok()?;
    let permitted = Instant::now();
    if let Some(start) = start {
        start.stamp(permitted);
    }
    prepare_for_listener(&env.retry_topic, msgs);
    let started = Instant::now();
    // A panicking listener failed like one that returned an error (Java: an exception thrown
    // by the listener means RECONSUME_LATER / SUSPEND_CURRENT_QUEUE_A_MOMENT): its batch is
    // consumed again. Caught here, where the outcome is decided, not where the job is polled.
    let result = AssertUnwindSafe(env.listener.consume(&scope.ctx, msgs))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(ListenerError::Failed(panic_message(panic.as_ref()))));
    let elapsed = started.elapsed();
    if let Err(e) = &result {
        let (queue, mode) = (&scope.ctx.queue, scope.ctx.mode);
        tracing::warn!(group = %env.group, %queue, ?mode, error = %e, "listener failed; the batch will be consumed again");
    }
    let outcomes = outcomes_for(msgs.len(), result);
    scope.stats.add_consume(permitted - queued, elapsed, OutcomeCounts::of(&outcomes));
    Some(outcomes)
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload");
    format!("the listener panicked: {text}")
}

/// Runs the listener on `msgs` (after `delay`, for local retries) and settles the outcomes;
/// `start` is stamped when the listener call begins (the consume-timeout clock).
pub(crate) async fn consume_concurrently(
    scope: JobScope,
    mut msgs: Vec<MessageExt>,
    delay: Option<Duration>,
    start: Arc<ConsumeStart>,
) -> Completion {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let Some(outcomes) = call_listener(&scope, &mut msgs, Some(&start)).await else {
        return Completion::default();
    };
    let mut done = Completion { settled: Vec::with_capacity(msgs.len()), redo: Vec::new() };
    if outcomes.iter().all(MessageOutcome::is_success) {
        // The common case, kept free of the settling machinery below (and of its future's size).
        done.settled.extend(msgs.iter().map(|m| m.queue_offset));
        return done;
    }
    // Settling failures awaits broker round trips; boxed so the common path above does not carry
    // that state in every job's future.
    Box::pin(settle_outcomes(&scope, msgs, outcomes, &mut done)).await;
    done
}

/// Settles a call that did not succeed for every message: send-back, DLQ, or local retry.
async fn settle_outcomes(
    scope: &JobScope,
    msgs: Vec<MessageExt>,
    outcomes: Vec<MessageOutcome>,
    done: &mut Completion,
) {
    let (env, queue) = (&*scope.env, scope.queue());
    for (msg, outcome) in msgs.into_iter().zip(outcomes) {
        match outcome {
            MessageOutcome::Success => done.settled.push(msg.queue_offset),
            // Broadcasting never retries: a failed message is only logged (Java).
            _ if env.message_model == MessageModel::Broadcasting => {
                tracing::warn!(group = %env.group, %queue, offset = %msg.queue_offset, "broadcast message failed; dropped");
                done.settled.push(msg.queue_offset);
            }
            MessageOutcome::RetryLater { delay_level } => {
                settle_retry(env, queue, msg, delay_level.unwrap_or(0), done).await;
            }
            MessageOutcome::DeadLetter { reason, properties } => {
                tracing::info!(group = %env.group, %queue, offset = %msg.queue_offset, %reason, "listener sent message to the DLQ");
                match send_to_dlq(env, queue, &msg, &reason, &properties).await {
                    Ok(()) => done.settled.push(msg.queue_offset),
                    Err(e) => {
                        tracing::warn!(group = %env.group, %queue, offset = %msg.queue_offset, error = %e, "direct DLQ send failed; sending back to the broker's DLQ path (without the reason properties)");
                        // A negative delay level makes the broker write the message to %DLQ%.
                        settle_retry(env, queue, msg, -1, done).await;
                    }
                }
            }
        }
    }
}

/// Hands a failed message back to the broker; falls back to re-sending it to the retry topic,
/// and finally to a local retry — the offset never passes it until one of them succeeds.
async fn settle_retry(
    env: &ConsumeEnv,
    queue: &MessageQueue,
    mut msg: MessageExt,
    delay_level: i32,
    done: &mut Completion,
) {
    match send_back(env, queue, &msg, delay_level).await {
        Ok(()) => done.settled.push(msg.queue_offset),
        Err(e) => {
            tracing::warn!(group = %env.group, %queue, offset = %msg.queue_offset, error = %e, "send-back failed; re-sending to the retry topic");
            match resend_to_retry_topic(env, &msg, delay_level).await {
                Ok(()) => done.settled.push(msg.queue_offset),
                Err(e) => {
                    tracing::warn!(group = %env.group, %queue, offset = %msg.queue_offset, error = %e, "retry-topic send failed; consuming again locally");
                    msg.reconsume_times += 1;
                    done.redo.push(msg);
                }
            }
        }
    }
}

/// CONSUMER_SEND_MSG_BACK to the master of the message's broker (reference 2.10).
pub(crate) async fn send_back(
    env: &ConsumeEnv,
    queue: &MessageQueue,
    msg: &MessageExt,
    delay_level: i32,
) -> Result<(), ClientError> {
    let addr = env.routes.master_addr(&queue.broker_name).ok_or_else(|| ClientError::NoMaster {
        topic: queue.topic.clone(),
        broker: queue.broker_name.clone(),
    })?;
    let header = ConsumerSendMsgBackRequestHeader {
        offset: msg.commit_log_offset,
        group: env.group.to_string(),
        delay_level,
        origin_msg_id: Some(msg.msg_id()),
        origin_topic: Some(msg.topic.clone()),
        unit_mode: false,
        max_reconsume_times: Some(env.max_reconsume_times),
        bname: Some(queue.broker_name.clone()),
    };
    env.broker.send_back(&addr, &header, Duration::from_secs(5)).await
}

/// Java's fallback when send-back fails: a new message to `%RETRY%<group>` carrying the retry
/// bookkeeping in its properties (reference 4.8).
async fn resend_to_retry_topic(
    env: &ConsumeEnv,
    msg: &MessageExt,
    delay_level: i32,
) -> Result<(), ClientError> {
    // A dead-letter request (negative level) goes past the limit, so the broker's retry-topic
    // rule sends it to %DLQ% rather than back to the listener.
    let reconsume = if delay_level < 0 {
        env.max_reconsume_times.saturating_add(1)
    } else {
        msg.reconsume_times + 1
    };
    let retry = retry_topic_copy(env, msg, reconsume);
    // Java ignores the requested level on this path: always 3 + reconsume times.
    let retry =
        retry.with_delay_level(super::policy::fallback_delay_level(msg.reconsume_times).get());
    env.producer.send(retry).await.map(drop)
}

/// A copy of `msg` for `%RETRY%<group>` carrying the retry bookkeeping in its properties, as
/// Java's send-back fallback builds it: the original topic and id, `reconsume` as its
/// reconsume count (past the group's limit, the broker stores it in `%DLQ%<group>`), and a
/// fresh id (the broker would otherwise see a duplicate of the original).
fn retry_topic_copy(env: &ConsumeEnv, msg: &MessageExt, reconsume: i32) -> Message {
    let mut copy = Message::new(env.retry_topic.as_ref(), msg.body.clone());
    copy.flag = msg.flag;
    copy.properties = msg.properties.clone();
    copy.properties.remove(property::TRAN_MSG);
    if copy.properties.get(property::RETRY_TOPIC).is_none() {
        copy.properties.insert(property::RETRY_TOPIC, &msg.topic);
    }
    copy.properties.insert(property::ORIGIN_MESSAGE_ID, msg.msg_id());
    copy.properties.insert(property::RECONSUME_TIME, reconsume.to_string());
    copy.properties.insert(property::MAX_RECONSUME_TIMES, env.max_reconsume_times.to_string());
    copy.properties.remove(property::UNIQ_KEY);
    copy
}

/// Sends a listener's dead letter to `%DLQ%<group>` with the reason and the listener's extra
/// properties (for a Wasm listener: abort kind, fuel used, plugin version).
///
/// CONSUMER_SEND_MSG_BACK cannot carry properties, and the DLQ topic may not exist yet (the
/// broker creates it on first use, and a producer cannot send to a topic without a route). So
/// the copy goes where the retry fallback goes — `%RETRY%<group>`, which exists for every
/// clustering consumer — with its reconsume count already past the limit: the broker's
/// retry-topic rule then stores it, properties and all, in `%DLQ%<group>` (creating that topic
/// if needed), exactly as it does for Java's send-back fallback. Callers fall back to
/// send-back (without the extra properties) when this fails.
pub(crate) async fn send_to_dlq(
    env: &ConsumeEnv,
    queue: &MessageQueue,
    msg: &MessageExt,
    reason: &str,
    extra: &[(String, String)],
) -> Result<(), ClientError> {
    let mut dlq = retry_topic_copy(env, msg, env.max_reconsume_times.saturating_add(1));
    // Nothing that would delay or mis-time the copy.
    for key in [
        property::DELAY,
        property::TIMER_DELIVER_MS,
        property::TIMER_DELAY_SEC,
        property::TIMER_DELAY_MS,
        property::CONSUME_START_TIME,
    ] {
        dlq.properties.remove(key);
    }
    if !reason.is_empty() {
        dlq.properties.insert(DLQ_REASON, reason);
    }
    dlq.properties.insert(
        DLQ_CONSUMED_AT,
        format!("{}@{}/{}:{}", queue.topic, queue.broker_name, queue.queue_id, msg.queue_offset),
    );
    for (k, v) in extra {
        if !v.is_empty() {
            dlq.properties.insert(k, v);
        }
    }
    dlq.properties.validate().map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
    env.producer.send(dlq).await.map(drop)
}

/// What an orderly consume job tells its queue task.
#[derive(Debug, Default)]
pub(crate) struct OrderlyDone {
    /// How many messages, from the head of the batch, are settled (consumed or dead-lettered):
    /// everything before the first message that must be consumed again.
    pub settled_prefix: usize,
    /// The messages to consume again (reconsume times already increased), in order; non-empty
    /// means the queue is suspended for a moment.
    pub again: Vec<MessageExt>,
}

/// Runs the listener on the head of an orderly queue and decides, in order, how far the queue
/// may advance (reference 4.7). A message that must be retried stops the walk: nothing after it
/// may be committed before it. A message past `max_reconsume_times` goes to the DLQ instead.
pub(crate) async fn consume_orderly(scope: JobScope, mut msgs: Vec<MessageExt>) -> OrderlyDone {
    let (env, queue) = (&*scope.env, scope.queue());
    let originals = msgs.clone();
    let Some(outcomes) = call_listener(&scope, &mut msgs, None).await else {
        return OrderlyDone { settled_prefix: 0, again: originals };
    };
    let mut done = OrderlyDone::default();
    let mut walk = originals.into_iter().zip(outcomes).enumerate();
    for (i, (msg, outcome)) in walk.by_ref() {
        let to_dlq = match outcome {
            MessageOutcome::Success => false,
            MessageOutcome::DeadLetter { reason, properties } => {
                // The listener's own dead letter keeps its reason (see `send_to_dlq`); if that
                // send fails, the broker's path below still takes it.
                if env.message_model == MessageModel::Clustering
                    && send_to_dlq(env, queue, &msg, &reason, &properties).await.is_ok()
                {
                    done.settled_prefix = i + 1;
                    continue;
                }
                true
            }
            MessageOutcome::RetryLater { .. } => {
                let exhausted = env.message_model == MessageModel::Clustering
                    && super::policy::should_send_to_dlq(
                        msg.reconsume_times,
                        env.max_reconsume_times,
                    );
                if !exhausted {
                    done.settled_prefix = i;
                    done.again.push(msg);
                    break;
                }
                true
            }
        };
        if to_dlq
            && env.message_model == MessageModel::Clustering
            && let Err(e) = send_back(env, queue, &msg, -1).await
        {
            tracing::warn!(group = %env.group, %queue, offset = %msg.queue_offset, error = %e, "DLQ send failed; the queue stays suspended");
            done.settled_prefix = i;
            done.again.push(msg);
            break;
        }
        done.settled_prefix = i + 1;
    }
    // Everything after the first retry comes again too, in order.
    done.again.extend(walk.map(|(_, (msg, _))| msg));
    for m in &mut done.again {
        m.reconsume_times += 1;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_read_as_text() {
        let cases: [(Box<dyn Any + Send>, &str); 3] = [
            (Box::new("boom"), "the listener panicked: boom"),
            (Box::new(format!("bad {}", 7)), "the listener panicked: bad 7"),
            (Box::new(42_u8), "the listener panicked: a non-string payload"),
        ];
        for (payload, expected) in cases {
            assert_eq!(panic_message(payload.as_ref()), expected);
        }
    }
}
