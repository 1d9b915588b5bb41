//! The queue task against a scripted broker and listener, under tokio's paused clock: each test
//! plays one broker or listener behaviour that decides whether a message is lost or repeated.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::ConsumeMode;
use super::listener::MessageOutcome;
use super::queue_task::{QueueTaskHandle, StopReason};
use super::shared::Shared;
use super::testing::{Call, ScriptedBroker, ScriptedListener, eventually, next, queue, shared};
use crate::client::PullStatus;
use crate::protocol::QueueOffset;

fn committed(shared: &Shared) -> Option<i64> {
    shared.offsets.read_memory(&queue()).map(|o| o.0)
}

fn start(shared: &Arc<Shared>, at: i64) -> QueueTaskHandle {
    QueueTaskHandle::spawn(Arc::clone(shared), queue(), QueueOffset(at), &CancellationToken::new())
}

#[tokio::test(start_paused = true)]
async fn a_backward_offset_move_commits_only_what_the_replay_consumed() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, broker, listener, |_| {});
    let _task = start(&shared, 0);

    next(&mut pulls).await.found(0..10, 10);
    for _ in 0..10 {
        next(&mut calls).await.succeed();
    }
    let at_ten = next(&mut pulls).await;
    assert_eq!(at_ten.header.queue_offset, QueueOffset(10));
    eventually("offset 10 committed", || committed(&shared) == Some(10)).await;

    // The broker lost the tail of the queue: it now ends at 5, and offset 10 is out of range.
    at_ten.empty(PullStatus::OffsetIllegal, 3, 5);
    let replay = next(&mut pulls).await;
    assert_eq!(
        replay.header.queue_offset,
        QueueOffset(3),
        "the replay starts where the broker says"
    );
    replay.found(3..4, 5);
    let call = next(&mut calls).await;
    assert_eq!(call.offsets, [3]);
    call.succeed();
    let held = next(&mut pulls).await;
    assert_eq!(held.header.queue_offset, QueueOffset(4));
    // Only message 3 of the replay is consumed: committing more would skip [4, 10) after a
    // crash or a rebalance.
    eventually("the commit to follow the replay", || committed(&shared) == Some(4)).await;
    assert_eq!(committed(&shared), Some(4));
}

#[tokio::test(start_paused = true)]
async fn a_forward_offset_move_drops_the_old_range_and_its_late_results() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, broker, listener, |_| {});
    let _task = start(&shared, 0);

    next(&mut pulls).await.found(0..4, 4);
    let mut old = Vec::new();
    for _ in 0..4 {
        old.push(next(&mut calls).await);
    }
    // Messages 0..4 were deleted on the broker while the listener held them (a truncated
    // queue): the broker moves the consumer forward to 20.
    next(&mut pulls).await.empty(PullStatus::OffsetIllegal, 20, 25);
    let at_twenty = next(&mut pulls).await;
    assert_eq!(at_twenty.header.queue_offset, QueueOffset(20));
    eventually("offset 20 committed", || committed(&shared) == Some(20)).await;
    // The dropped range's listener calls end late; nothing of theirs is committed or redone.
    for call in old {
        call.answer(MessageOutcome::RETRY);
    }
    at_twenty.found(20..22, 25);
    for expected in [20, 21] {
        let call = next(&mut calls).await;
        assert_eq!(call.offsets, [expected], "only the new range is dispatched");
        call.succeed();
    }
    eventually("offset 22 committed", || committed(&shared) == Some(22)).await;
    assert!(calls.try_recv().is_err(), "no call for the dropped range");
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_running_call_finish_and_commits_it() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, Arc::clone(&broker), listener, |_| {});
    let task = start(&shared, 0);
    next(&mut pulls).await.found(0..1, 1);
    let call = next(&mut calls).await;
    let stop = tokio::spawn(
        task.stop(StopReason::Shutdown { deadline: Instant::now() + Duration::from_secs(10) }),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    call.succeed();
    tokio::time::timeout(Duration::from_secs(30), stop).await.expect("stop ends").unwrap();
    assert_eq!(committed(&shared), Some(1));
    assert!(
        broker.calls().contains(&Call::UpdateOffset { queue_id: 0, offset: 1 }),
        "the drained offset reaches the broker: {:?}",
        broker.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_past_the_consume_timeout_is_sent_back_and_stops_pinning_the_offset() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, Arc::clone(&broker), listener, |c| {
        c.consume_timeout = Duration::from_secs(60);
    });
    let _task = start(&shared, 0);
    next(&mut pulls).await.found(0..2, 2);
    let stuck = next(&mut calls).await;
    next(&mut calls).await.succeed();
    let _held = next(&mut pulls).await;
    eventually("message 1 settled", || committed(&shared) == Some(0)).await;
    // The first call never returns; after the timeout (and one sweep) it is sent back with
    // delay level 3 and the offset moves past both messages.
    broker.wait_for(|c| c.contains(&Call::SendBack { offset: 0, delay_level: 3 })).await;
    eventually("offset 2 committed", || committed(&shared) == Some(2)).await;
    drop(stuck);
}

#[tokio::test(start_paused = true)]
async fn flow_control_holds_the_next_pull_until_a_call_finishes() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, broker, listener, |c| {
        c.pull_threshold_for_queue = 3;
    });
    let _task = start(&shared, 0);
    next(&mut pulls).await.found(0..4, 100);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(next(&mut calls).await);
    }
    // Four cached messages are over the threshold (Java compares with `>`): no pull for as long as they are all in flight.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(pulls.try_recv().is_err(), "a pull went out over the flow-control threshold");
    held.pop().expect("four calls").succeed();
    let resumed = next(&mut pulls).await;
    assert_eq!(resumed.header.queue_offset, QueueOffset(4));
}

#[tokio::test(start_paused = true)]
async fn orderly_redelivers_a_batch_the_listener_asked_to_retry_after_the_suspend_time() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Orderly, broker, listener, |c| {
        c.suspend_current_queue_time = Duration::from_secs(2);
    });
    shared.set_locked(&queue(), true);
    let _task = start(&shared, 0);
    next(&mut pulls).await.found(0..2, 2);
    let first = next(&mut calls).await;
    assert_eq!(first.offsets, [0]);
    let asked_at = Instant::now();
    first.answer(MessageOutcome::RETRY);
    let again = next(&mut calls).await;
    assert_eq!(again.offsets, [0], "the same message, before any later one");
    assert!(asked_at.elapsed() >= Duration::from_secs(2), "redelivered after the suspend time");
    assert_eq!(committed(&shared), None, "nothing committed while the head is unconsumed");
    again.succeed();
    let second = next(&mut calls).await;
    assert_eq!(second.offsets, [1]);
    second.succeed();
    eventually("offset 2 committed", || committed(&shared) == Some(2)).await;
}

#[tokio::test(start_paused = true)]
async fn a_listener_panic_is_a_retry_in_both_modes() {
    // Concurrently: RECONSUME_LATER, so the message is sent back for a delayed retry and the
    // offset moves on.
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let concurrent = shared(ConsumeMode::Concurrently, Arc::clone(&broker), listener, |_| {});
    let _task = start(&concurrent, 0);
    next(&mut pulls).await.found(0..1, 1);
    next(&mut calls).await.panic();
    broker.wait_for(|c| c.iter().any(|c| matches!(c, Call::SendBack { offset: 0, .. }))).await;
    eventually("offset 1 committed", || committed(&concurrent) == Some(1)).await;

    // Orderly: SUSPEND_CURRENT_QUEUE_A_MOMENT, so the same batch comes back, uncommitted.
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let orderly = shared(ConsumeMode::Orderly, broker, listener, |_| {});
    orderly.set_locked(&queue(), true);
    let _task = start(&orderly, 0);
    next(&mut pulls).await.found(0..1, 1);
    next(&mut calls).await.panic();
    let again = next(&mut calls).await;
    assert_eq!(again.offsets, [0], "the panicked batch comes back");
    assert_eq!(committed(&orderly), None, "not committed by the panic");
    again.succeed();
    eventually("offset 1 committed", || committed(&orderly) == Some(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_record_is_isolated_and_skipped_alone() {
    let (broker, mut pulls) = ScriptedBroker::new();
    let (listener, mut calls) = ScriptedListener::new();
    let shared = shared(ConsumeMode::Concurrently, broker, listener, |_| {});
    let task = start(&shared, 0);

    // Records 0 and 1 decode, the third does not; the broker read up to offset 5.
    next(&mut pulls).await.found_then_broken(0..2, 5, 10);
    for expected in [0, 1] {
        let call = next(&mut calls).await;
        assert_eq!(call.offsets, [expected]);
        call.succeed();
    }
    // The next pull starts at the broken record, not past the messages behind it, and asks
    // for one record only, to learn exactly which offset is broken.
    let isolate = next(&mut pulls).await;
    assert_eq!(isolate.header.queue_offset, QueueOffset(2), "messages 2..5 must not be skipped");
    assert_eq!(isolate.header.max_msg_nums, 1);
    isolate.found_then_broken(2..2, 3, 10);
    // Only offset 2 is skipped; pulling goes on at 3 with the usual batch size.
    let after = next(&mut pulls).await;
    assert_eq!(after.header.queue_offset, QueueOffset(3));
    assert_eq!(after.header.max_msg_nums, 32);
    eventually("offset 3 committed", || committed(&shared) == Some(3)).await;
    assert_eq!(task.stats.skipped_records.load(std::sync::atomic::Ordering::Relaxed), 1);
}
