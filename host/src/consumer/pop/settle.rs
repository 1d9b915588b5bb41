//! One POP consume job: call the listener on a batch of popped messages, then settle each by
//! its handle — ack, change its invisible time (a retry), or dead-letter then ack. The acks of a
//! batch go in one BATCH_ACK_MESSAGE per broker (one ACK_MESSAGE each where a broker refuses
//! that).
//!
//! Nothing is settled after the message's invisible time has passed: by then the broker has
//! handed it out again (perhaps to another member), so a late ack would only race that delivery.
//! Such messages are counted in `pop_expired`, never acked.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::policy::retry_invisible_time;
use crate::client::{ClientError, PoppedMessage};
use crate::consumer::consume::{JobScope, call_listener, send_back, send_to_dlq};
use crate::consumer::listener::MessageOutcome;
use crate::consumer::shared::ConsumeEnv;
use crate::protocol::EpochMillis;
use crate::protocol::body::batch_ack_bodies;
use crate::protocol::header::{AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader};
use crate::protocol::message::MessageExt;
use crate::protocol::pop::PopHandle;

/// Timeout of an ack or invisible-time change (Java `ASYNC_TIMEOUT`, 3 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a finished job gives back to its pop task: how many messages and bytes it held, and
/// (orderly) how long its queue must wait before the next pop.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PopDone {
    pub count: usize,
    pub bytes: u64,
    /// Orderly: a message is to be consumed again once its (changed) invisible time passes;
    /// a pop before then would find the queue blocked and sit out the whole long poll.
    pub pause: Duration,
}

impl PopDone {
    pub(crate) fn of(batch: &[PoppedMessage]) -> Self {
        Self {
            count: batch.len(),
            bytes: batch.iter().map(|p| p.message.body.len() as u64).sum(),
            pause: Duration::ZERO,
        }
    }
}

/// Whether `handle`'s invisible time is over at `now`.
pub(super) fn expired(handle: &PopHandle, now: EpochMillis) -> bool {
    now.0 >= handle.visible_again_at().0
}

/// Consumes `batch` and settles every message; returns what it held.
pub(crate) async fn consume_popped(scope: JobScope, batch: Vec<PoppedMessage>) -> PopDone {
    let done = PopDone::of(&batch);
    let stats = &scope.stats;
    // Java `isPopTimeout`: a batch that waited past its invisible time is not consumed at all.
    let (live, stale): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|p| !expired(&p.handle, EpochMillis::now()));
    stats.pop_expired.fetch_add(stale.len() as u64, Ordering::Relaxed);
    if live.is_empty() {
        return done;
    }
    let mut msgs: Vec<MessageExt> = live.iter().map(|p| p.message.clone()).collect();
    // `None`: shutting down; nothing settled, the broker redelivers after the invisible time.
    let Some(outcomes) = call_listener(&scope, &mut msgs, None).await else {
        return done;
    };
    // Each message's retry or dead letter is its own request, all at once (one after the other,
    // a batch of 32 waited 32 round trips before its slots freed); the acks then go together.
    let scope = &scope;
    let settles = live.iter().zip(outcomes).map(|(popped, outcome)| async move {
        if expired(&popped.handle, EpochMillis::now()) {
            stats.pop_expired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(group = %scope.env.group, handle = %popped.handle, "consumed past its invisible time; not acked (the broker redelivers it)");
            return None;
        }
        match settle(scope, popped, outcome).await {
            Ok(Settled::Ack) => Some(popped),
            Ok(Settled::Done) => None,
            Err(e) => {
                stats.pop_settle_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(group = %scope.env.group, handle = %popped.handle, error = %e, "settling a popped message failed; the broker redelivers it after its invisible time");
                None
            }
        }
    });
    let to_ack: Vec<&PoppedMessage> =
        futures_util::future::join_all(settles).await.into_iter().flatten().collect();
    let acked = ack_all(scope, &to_ack).await;
    stats.pop_acks.fetch_add(acked as u64, Ordering::Relaxed);
    done
}

/// Acks messages the subscription does not want (Java `processPopResult`: the broker filtered by
/// tag hash only, and a hash collision must not come back every invisible time).
pub(crate) async fn ack_unwanted(scope: JobScope, batch: Vec<PoppedMessage>) -> PopDone {
    let done = PopDone::of(&batch);
    let refs: Vec<&PoppedMessage> = batch.iter().collect();
    ack_all(&scope, &refs).await;
    done
}

/// What is left to do for a message once its outcome is handled.
enum Settled {
    /// Ack it (success, or its copy is in the DLQ).
    Ack,
    /// Nothing: its invisible time was changed, the broker brings it back.
    Done,
}

/// Settles one message by its outcome.
async fn settle(
    scope: &JobScope,
    popped: &PoppedMessage,
    outcome: MessageOutcome,
) -> Result<Settled, ClientError> {
    let env = &*scope.env;
    let msg = &popped.message;
    match outcome {
        MessageOutcome::Success => {}
        MessageOutcome::RetryLater { delay_level } => {
            if msg.reconsume_times < env.max_reconsume_times {
                let invisible = retry_invisible_time(delay_level, msg.reconsume_times);
                change_invisible_time(env, &popped.handle, &msg.topic, invisible).await?;
                scope.stats.pop_retries.fetch_add(1, Ordering::Relaxed);
                return Ok(Settled::Done);
            }
            // The 5.3 broker's revive service never dead-letters: past the limit the client
            // does, as the gRPC proxy does (Java's remoting client instead acks — drops — it).
            tracing::info!(group = %env.group, handle = %popped.handle, reconsume = msg.reconsume_times, "retries exhausted; sending to the DLQ");
            send_back(env, scope.queue(), msg, -1).await?;
        }
        MessageOutcome::DeadLetter { reason, properties } => {
            tracing::info!(group = %env.group, handle = %popped.handle, %reason, "listener sent message to the DLQ");
            if let Err(e) = send_to_dlq(env, scope.queue(), msg, &reason, &properties).await {
                tracing::warn!(group = %env.group, error = %e, "direct DLQ send failed; sending back to the broker's DLQ path (without the reason properties)");
                send_back(env, scope.queue(), msg, -1).await?;
            }
        }
    }
    Ok(Settled::Ack)
}

/// Acks `popped`: one BATCH_ACK_MESSAGE per broker for everything still within its invisible
/// time, falling back to one ACK_MESSAGE each for a broker that refuses or fails the batch (the
/// broker ignores an ack of an offset already acked). Returns how many were acked; failures are
/// counted in `pop_settle_failures`.
pub(super) async fn ack_all(scope: &JobScope, popped: &[&PoppedMessage]) -> usize {
    let env = &*scope.env;
    let now = EpochMillis::now();
    let (live, stale): (Vec<&PoppedMessage>, Vec<&PoppedMessage>) =
        popped.iter().partition(|p| !expired(&p.handle, now));
    scope.stats.pop_expired.fetch_add(stale.len() as u64, Ordering::Relaxed);
    let (bodies, single) =
        batch_ack_bodies(&env.group, live.iter().map(|p| (p.message.topic.as_str(), &p.handle)));
    let batches = bodies.into_iter().map(|body| {
        let members: Vec<&PoppedMessage> = live
            .iter()
            .enumerate()
            .filter(|(i, p)| p.handle.broker_name == body.broker_name && !single.contains(i))
            .map(|(_, p)| *p)
            .collect();
        async move {
            let sent = match env.routes.master_addr(&body.broker_name) {
                Some(addr) => env.broker.batch_ack(&addr, &body, SETTLE_TIMEOUT).await,
                None => Err(ClientError::NoMaster {
                    topic: members[0].message.topic.clone(),
                    broker: body.broker_name.clone(),
                }),
            };
            match sent {
                Ok(()) => members.len(),
                Err(e) => {
                    tracing::debug!(group = %env.group, broker = %body.broker_name, error = %e, "batch ack refused or failed; acking one by one");
                    ack_each(scope, &members).await
                }
            }
        }
    });
    let singles: Vec<&PoppedMessage> = single.iter().map(|i| live[*i]).collect();
    let batched: usize = futures_util::future::join_all(batches).await.into_iter().sum();
    batched + ack_each(scope, &singles).await
}

/// One ACK_MESSAGE per message, all at once; returns how many were acked.
async fn ack_each(scope: &JobScope, popped: &[&PoppedMessage]) -> usize {
    let acks = popped.iter().map(|p| async move {
        match ack(&scope.env, &p.handle, &p.message.topic).await {
            Ok(()) => true,
            Err(e) => {
                scope.stats.pop_settle_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(group = %scope.env.group, handle = %p.handle, error = %e, "ack failed; the broker redelivers the message after its invisible time");
                false
            }
        }
    });
    futures_util::future::join_all(acks).await.into_iter().filter(|ok| *ok).count()
}

/// The master of the broker that popped the message.
fn master_of(env: &ConsumeEnv, handle: &PopHandle, topic: &str) -> Result<String, ClientError> {
    env.routes.master_addr(&handle.broker_name).ok_or_else(|| ClientError::NoMaster {
        topic: topic.to_owned(),
        broker: handle.broker_name.clone(),
    })
}

/// ACK_MESSAGE for a message of `topic` (Java `DefaultMQPushConsumerImpl.ackAsync`: the real
/// topic, queue and offset come from the handle).
async fn ack(env: &ConsumeEnv, handle: &PopHandle, topic: &str) -> Result<(), ClientError> {
    let addr = master_of(env, handle, topic)?;
    let header = AckMessageRequestHeader {
        consumer_group: env.group.to_string(),
        topic: handle.mark.real_topic(topic, &env.group),
        queue_id: handle.queue_id,
        extra_info: handle.to_string(),
        offset: handle.queue_offset,
        bname: Some(handle.broker_name.clone()),
    };
    env.broker.ack(&addr, &header, SETTLE_TIMEOUT).await
}

/// CHANGE_MESSAGE_INVISIBLETIME: the broker redelivers the message `invisible` from now, with
/// its reconsume times increased.
pub(super) async fn change_invisible_time(
    env: &ConsumeEnv,
    handle: &PopHandle,
    topic: &str,
    invisible: Duration,
) -> Result<(), ClientError> {
    let addr = master_of(env, handle, topic)?;
    let header = ChangeInvisibleTimeRequestHeader {
        consumer_group: env.group.to_string(),
        topic: handle.mark.real_topic(topic, &env.group),
        queue_id: handle.queue_id,
        extra_info: handle.to_string(),
        offset: handle.queue_offset,
        invisible_time: i64::try_from(invisible.as_millis()).unwrap_or(i64::MAX),
        bname: Some(handle.broker_name.clone()),
    };
    env.broker.change_invisible_time(&addr, &header, SETTLE_TIMEOUT).await
}
