//! One orderly POP consume job: the messages of one pop of one queue, consumed batch after
//! batch in queue-offset order, each batch settled before the next is consumed.
//!
//! The broker (`order = true`) keeps the queue's order for the whole group: it hands out the
//! queue's next messages only once every message of the pop is acked or visible again, and a
//! redelivery starts at the first unacked offset. So a message that must be consumed again is
//! not retried here: it and every later message of the pop get their invisible time changed to
//! the orderly pause, the job ends, and the broker delivers them again, in order, to whichever
//! member pops the queue next — with its redelivery count in `orderCountInfo`, which the client
//! reads as reconsume times. Why this and not the gRPC FIFO consumer's local retries:
//! `docs/pop.md`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::policy::{OrderlyStep, orderly_plan};
use super::settle::{PopDone, ack_all, change_invisible_time, expired};
use crate::client::{ClientError, PoppedMessage};
use crate::consumer::consume::{JobScope, call_listener, send_back, send_to_dlq};
use crate::protocol::EpochMillis;
use crate::protocol::message::MessageExt;

/// Consumes one pop of an orderly queue, `batch` messages a listener call; returns what it held
/// and how long the queue waits (`pause` after a failure: the orderly suspend time).
pub(crate) async fn consume_popped_orderly(
    scope: JobScope,
    mut popped: Vec<PoppedMessage>,
    batch: usize,
    pause: Duration,
) -> PopDone {
    let mut done = PopDone::of(&popped);
    // One queue per pop; the broker sends its offsets in order, but the walk relies on it.
    popped.sort_by_key(|p| p.handle.queue_offset);
    let env = &*scope.env;
    let batch = batch.max(1);
    let mut next = 0;
    while next < popped.len() {
        let chunk = &popped[next..popped.len().min(next + batch)];
        // Past the invisible time the broker may have handed the queue to another member:
        // consuming now could overtake that delivery.
        if expired(&chunk[0].handle, EpochMillis::now()) {
            let left = popped.len() - next;
            scope.stats.pop_expired.fetch_add(left as u64, Ordering::Relaxed);
            tracing::debug!(group = %env.group, queue = %scope.queue(), left, "orderly pop outlived its invisible time; the broker redelivers the rest");
            return done;
        }
        let mut msgs: Vec<MessageExt> = chunk.iter().map(|p| p.message.clone()).collect();
        // `None`: shutting down; the broker redelivers the rest after the invisible time.
        let Some(outcomes) = call_listener(&scope, &mut msgs, None).await else {
            return done;
        };
        let reconsumes = chunk.iter().map(|p| p.message.reconsume_times);
        let (steps, again) =
            orderly_plan(outcomes.into_iter().zip(reconsumes), env.max_reconsume_times);
        let mut to_ack = Vec::with_capacity(steps.len());
        let mut stop_at = again;
        for (i, (popped, step)) in chunk.iter().zip(steps).enumerate() {
            match settle(&scope, popped, step).await {
                Ok(()) => to_ack.push(popped),
                Err(e) => {
                    scope.stats.pop_settle_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(group = %env.group, handle = %popped.handle, error = %e, "dead-lettering an orderly message failed; it is consumed again");
                    stop_at = Some(i);
                    break;
                }
            }
        }
        let acked = ack_all(&scope, &to_ack).await;
        scope.stats.pop_acks.fetch_add(acked as u64, Ordering::Relaxed);
        if acked < to_ack.len() {
            // Unacked, the queue stays blocked until the pop's invisible time passes; then the
            // broker redelivers from the first unacked offset. Consuming on could only be
            // consumed again behind it.
            return done;
        }
        if let Some(i) = stop_at {
            hide_rest(&scope, &popped[next + i..], pause).await;
            done.pause = pause;
            return done;
        }
        next += chunk.len();
    }
    done
}

/// Dead-letters a message where its step says so; what is left is to ack it.
async fn settle(
    scope: &JobScope,
    popped: &PoppedMessage,
    step: OrderlyStep,
) -> Result<(), ClientError> {
    let (env, msg) = (&*scope.env, &popped.message);
    match step {
        OrderlyStep::Ack => Ok(()),
        OrderlyStep::Exhausted => {
            tracing::info!(group = %env.group, handle = %popped.handle, reconsume = msg.reconsume_times, "orderly retries exhausted; sending to the DLQ");
            send_back(env, scope.queue(), msg, -1).await
        }
        OrderlyStep::DeadLetter { reason, properties } => {
            tracing::info!(group = %env.group, handle = %popped.handle, %reason, "listener sent message to the DLQ");
            if let Err(e) = send_to_dlq(env, scope.queue(), msg, &reason, &properties).await {
                tracing::warn!(group = %env.group, error = %e, "direct DLQ send failed; sending back to the broker's DLQ path (without the reason properties)");
                send_back(env, scope.queue(), msg, -1).await?;
            }
            Ok(())
        }
    }
}

/// Makes `rest` (the message to consume again and everything after it) visible again after the
/// orderly `pause`, so the broker redelivers it then rather than after the pop's invisible
/// time. A change that fails leaves that message hidden until its invisible time: later, but
/// still in order.
async fn hide_rest(scope: &JobScope, rest: &[PoppedMessage], pause: Duration) {
    let env = &*scope.env;
    let changes = rest.iter().map(|p| async move {
        if let Err(e) = change_invisible_time(env, &p.handle, &p.message.topic, pause).await {
            scope.stats.pop_settle_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(group = %env.group, handle = %p.handle, error = %e, "orderly retry: changing the invisible time failed; the message comes back after its invisible time");
        }
    });
    futures_util::future::join_all(changes).await;
    scope.stats.pop_retries.fetch_add(1, Ordering::Relaxed);
}
